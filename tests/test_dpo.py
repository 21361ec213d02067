"""Stage 04 (DPO): preference data schema and split, one model in memory, and the DPO loss doing its job.

The model here is a tiny random Llama with a byte-level BPE built in the test, so nothing depends on
earlier stages and the whole file runs in well under a minute.
"""
import copy
import time

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from zhllm import chat, corpora, dpo
from zhllm.dpo import preferences as preference_data
from zhllm.errors import DataError
from zhllm.formats import RowError, validate_preference
from zhllm.modeling import count_parameters, tiny_llama

TINY = dict(dpo.SETTINGS["tiny"], max_steps=12, batch_size=8, learning_rate=3e-3, warmup_steps=0,
            max_length=96, train_pairs=32, heldout_pairs=20)


@pytest.fixture(scope="module")
def heldout():
    return preference_data.review_pairs("heldout", 60)


@pytest.fixture(scope="module")
def train_rows():
    return preference_data.review_pairs("train", 200)


@pytest.fixture(scope="module")
def tokenizer():
    texts = [t for t, _ in corpora.reviews("train")[:2000]] + [preference_data.prompt_text("房间")]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<s>", "</s>", "<pad>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>")
    chat.set_chat_template(tok)
    return tok


def _model(tokenizer):
    return tiny_llama(len(tokenizer), hidden_size=64, num_layers=2, num_heads=2, seed=0)


# ---- data ----------------------------------------------------------------------------------------------

def test_rows_are_conversational_and_valid(heldout):
    for i, row in enumerate(heldout):
        assert set(row) == {"prompt", "chosen", "rejected"}
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert validate_preference(row, i) == row


def test_pairs_differ_only_in_sentiment(heldout):
    """Both replies open with the prompt's cue; chosen is a positive review, rejected a negative one."""
    labels = dict(corpora.reviews("heldout"))
    for row in heldout:
        cue = row["prompt"][0]["content"].split("“")[1].split("”")[0]
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert chosen.startswith(cue) and rejected.startswith(cue)
        assert labels[chosen] == 1 and labels[rejected] == 0
        assert preference_data.REVIEW_CHARS[0] <= len(chosen) <= preference_data.REVIEW_CHARS[1]


def test_heldout_reviews_never_appear_in_training_pairs(heldout, train_rows):
    every_train = preference_data.review_pairs("train", 1500)
    seen = {row[k][0]["content"] for row in every_train for k in ("chosen", "rejected")}
    assert not seen & {row[k][0]["content"] for row in heldout for k in ("chosen", "rejected")}
    assert preference_data.review_pairs("heldout", 60) == heldout, "the split is fixed"


def test_without_a_hub_set_the_pairs_are_the_review_splits_alone():
    """tiny: the training rows are exactly the reviews' train pairs, and the one held-out set their held-out pairs."""
    cfg = dict(dpo.SETTINGS["tiny"], train_pairs=40, heldout_pairs=10)
    train, heldout, about = preference_data.pairs_for("tiny", cfg)
    assert train == preference_data.review_pairs("train", 40, 0)
    assert heldout == {"reviews": preference_data.review_pairs("heldout", 10, 0)}
    assert about == "review pairs: 40 train, 10 held out"


def test_too_many_pairs_asked_is_a_clear_error():
    with pytest.raises(DataError, match="preference pairs"):
        preference_data.review_pairs("heldout", 10_000)


def test_hub_rows_are_normalised_and_bad_ones_counted(monkeypatch, tokenizer):
    rows = [{"prompt": "写一首诗", "chosen": "床前明月光", "rejected": "床前明月光"},  # identical
            {"prompt": "写一首诗", "chosen": "春眠不觉晓"},                          # no rejected
            {"system": "你是助手", "history": [["你好", "你好！"]], "question": "推荐一本书",
             "response_chosen": "《红楼梦》", "response_rejected": "不知道"}]
    monkeypatch.setattr("datasets.load_dataset", lambda name, config, split, **kwargs: rows)
    kept, report = preference_data.hub_pairs("fake/zh-dpo", tokenizer, 512, limit=1)
    assert [m["role"] for m in kept[0]["prompt"]] == ["system", "user", "assistant", "user"]
    assert kept[0]["chosen"] == [{"role": "assistant", "content": "《红楼梦》"}]
    assert report["removed"] == {"identical_pair": 1, "missing_field": 1}
    with pytest.raises(DataError, match=r"fake/zh-dpo: 2000 valid rows asked for, but the data ran out: "
                                        r"3 rows, kept 1"):
        preference_data.hub_pairs("fake/zh-dpo", tokenizer, 512, limit=2000)


def test_a_bad_row_names_its_field():
    with pytest.raises(RowError, match=r"field 'prompt\[0\]\.role'"):
        validate_preference({"prompt": [{"role": "assistant", "content": "x"}],
                             "chosen": "a", "rejected": "b"})


# ---- the trainer -----------------------------------------------------------------------------------------

def test_no_second_model(tokenizer, train_rows, heldout, tmp_path):
    """The reference is the adapter-disabled policy: no ref_model, one copy of the weights, LoRA, and trainable
    copies of the embedding and output matrices only (the tiny setting), far from a second model."""
    model = _model(tokenizer)
    one_copy = count_parameters(model)
    rows = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    trainer = dpo.make_trainer(model, tokenizer, train_rows[:16], heldout[:20], TINY, tmp_path)
    assert trainer.ref_model is None
    counted = dpo.parameters_in_memory(trainer.model)
    lora = sum(p.numel() for n, p in trainer.model.named_parameters() if "lora_" in n)
    assert counted == {"base": one_copy, "lora": lora, "copies": rows} and lora > 0
    assert rows < one_copy
    assert sum(p.numel() for p in trainer.model.parameters()) == one_copy + lora + rows
    assert count_parameters(trainer.model, trainable_only=True) == lora + rows


def test_layers_only_setting_adds_nothing_but_lora(tokenizer, train_rows, heldout, tmp_path):
    """colab/full train LoRA on the layers only: the trainer adds exactly the LoRA weights."""
    model = _model(tokenizer)
    one_copy = count_parameters(model)
    cfg = dict(TINY, embeddings="none")
    trainer = dpo.make_trainer(model, tokenizer, train_rows[:16], heldout[:20], cfg, tmp_path)
    counted = dpo.parameters_in_memory(trainer.model)
    assert counted["base"] == one_copy and counted["copies"] == 0
    assert count_parameters(trainer.model, trainable_only=True) == counted["lora"] > 0


def test_a_few_dpo_steps_raise_the_margin(tokenizer, train_rows, tmp_path):
    """On the training pairs, a few DPO steps move the chosen-vs-rejected reward margin up from zero, and
    the reference (adapter disabled) is still exactly the SFT model afterwards."""
    rows = train_rows[:32]
    model = _model(tokenizer)
    sft_model = copy.deepcopy(model).eval()
    trainer = dpo.make_trainer(model, tokenizer, rows, rows, TINY, tmp_path)
    before = dpo.reward_stats(trainer)
    trainer.train()
    after = dpo.reward_stats(trainer)
    assert abs(before["margin"]) < 1e-4, "a fresh (zero) LoRA adapter is the reference: all rewards are 0"
    assert after["margin"] > 0.05 and after["accuracy"] > 0.6
    losses = [h["loss"] for h in dpo.history(trainer)]
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0]
    ids = torch.tensor([tokenizer(rows[0]["chosen"][0]["content"])["input_ids"]])
    policy = trainer.model.eval()
    with torch.no_grad():
        with policy.disable_adapter():
            reference = policy(input_ids=ids).logits
        trained, original = policy(input_ids=ids).logits, sft_model(input_ids=ids).logits
    assert torch.equal(reference, original), "adapter disabled = the SFT model, embedding rows included"
    assert not torch.allclose(trained, original), "the trained policy moved away from it"


def test_each_heldout_set_is_ranked_in_its_own_evaluation(tokenizer, train_rows, heldout, tmp_path):
    """`measure` reports a hub held-out set's reward accuracy and margin next to the reviews', each from its own
    evaluation (TRL logs every eval set's rewards under the same keys); without a hub set, no hub entries."""
    rows = train_rows[:32]
    trainer = dpo.make_trainer(_model(tokenizer), tokenizer, rows, heldout[:20], TINY, tmp_path)
    trainer.train()
    cfg = dict(TINY, judge_prompts=2, max_new_tokens=4)
    _, metrics = dpo.measure(trainer, tokenizer, rows, {"reviews": heldout[:20], "hub": rows}, cfg, time.time())
    reviews, trained_on = dpo.reward_stats(trainer), dpo.reward_stats(trainer, rows)
    assert trained_on["margin"] > reviews["margin"] + 0.05, "the pairs trained on (standing in for hub pairs)"
    assert (metrics["reward_accuracy_heldout"], metrics["reward_margin_heldout"]) == \
        (reviews["accuracy"], reviews["margin"])
    assert (metrics["reward_accuracy_hub_heldout"], metrics["reward_margin_hub_heldout"]) == \
        (trained_on["accuracy"], trained_on["margin"])
    _, without = dpo.measure(trainer, tokenizer, rows, {"reviews": heldout[:20]}, cfg, time.time())
    assert not {"reward_accuracy_hub_heldout", "reward_margin_hub_heldout"} & set(without)
    assert without["reward_accuracy_heldout"] == reviews["accuracy"]


def test_sampling_is_reproducible_and_the_judge_reads_sentiment(tokenizer):
    model = _model(tokenizer)
    prompts = [[{"role": "user", "content": preference_data.prompt_text("房间")}]] * 3
    first = dpo.sample_replies(model, tokenizer, prompts, max_new_tokens=8, seed=1)
    assert first == dpo.sample_replies(model, tokenizer, prompts, max_new_tokens=8, seed=1)
    scores = dpo.judge(["这本书非常好看，强烈推荐！", "质量太差了，非常失望。", "", "正面。"])
    assert scores[0] > 0.5 > scores[1] and scores[2] == 0.0 and scores[3] == 0.0  # a bare label is no review
    assert dpo.positive_rate(scores) == pytest.approx(1 / 4)
    assert dpo.mean_length(["ab", "abcd"]) == 3
