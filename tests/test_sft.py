"""Stage 03 training plumbing: TRL's SFTTrainer trains on exactly our assistant-only labels."""
import pytest
import torch

from zhllm import artifacts, chat, sft
from zhllm.sft import tasks as sft_data


@pytest.fixture(scope="module")
def policy():
    cfg = dict(sft.SETTINGS["tiny"], max_steps=3, batch_size=4, eval_per_task=2, max_new_tokens=8,
               lora_r=8, lora_alpha=16)
    model, tokenizer = sft.load_policy(artifacts.ensure("base") / "model", cfg)
    return model, tokenizer, cfg


def test_policy_tokenizer_has_template_and_distinct_pad(policy):
    _, tokenizer, _ = policy
    assert tokenizer.chat_template == chat.KIT_CHAT_TEMPLATE
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id


def test_trainer_batches_keep_our_labels(policy, tmp_path):
    model, tokenizer, cfg = policy
    examples, _ = sft_data.build("train", sizes={t: 4 for t in sft_data.TASKS})
    rows, report = chat.encode_conversations(tokenizer, [e["messages"] for e in examples], 512)
    assert report["kept"] == len(examples)
    batch = chat.collator(tokenizer)(rows[:2])
    for i, row in enumerate(rows[:2]):
        n = len(row["labels"])
        assert batch["labels"][i, :n].tolist() == row["labels"]
        assert (batch["labels"][i, n:] == -100).all()  # padding never trains
        assert tokenizer.eos_token_id in [t for t in row["labels"] if t != -100]
    history = sft.train(model, tokenizer, rows, tmp_path / "ck", cfg)
    assert history and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def test_labelled_logits_head_gives_trl_fused_outputs(policy, tmp_path):
    """On a CPU the kit swaps TRL's fused LM head for the labelled positions' logits: same loss and per-token fields."""
    from datasets import Dataset
    from trl import SFTTrainer

    from zhllm.modeling import labelled_logits_head

    model, tokenizer, cfg = policy
    examples, _ = sft_data.build("train", sizes={t: 2 for t in sft_data.TASKS})
    rows, _ = chat.encode_conversations(tokenizer, [e["messages"] for e in examples], 512)
    batch = chat.collator(tokenizer, packing=True)(rows[:6])
    trainer = SFTTrainer(model=model, args=sft.training_args(cfg, tmp_path), train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, data_collator=chat.collator(tokenizer, True))
    base = model.get_base_model()
    model.eval()
    outputs = []
    for swap in (False, True):
        if swap:
            labelled_logits_head(trainer)
        with torch.no_grad():
            outputs.append(model(**batch, fused_lm_head=True))
    fused, full = outputs
    assert base.forward.__func__ is not type(base).forward
    for field in ("loss", "log_probs", "entropy", "is_top1"):
        torch.testing.assert_close(getattr(full, field), getattr(fused, field), atol=1e-4, rtol=1e-4, msg=field)
    assert fused.label_mask.sum() > 0 and torch.equal(full.label_mask, fused.label_mask)


def test_evaluate_scores_every_task_and_the_stop_rate(policy):
    model, tokenizer, cfg = policy
    heldout = sft.heldout_examples(cfg)
    assert {e["task"] for e in heldout} == set(sft_data.TASKS)
    scores, replies = sft.evaluate(model, tokenizer, heldout, cfg)
    assert set(sft_data.TASKS) <= set(scores) and 0.0 <= scores["stop_rate"] <= 1.0
    assert len(replies) == len(sft_data.turn_prompts(heldout))


def test_tiny_scores_every_heldout_example():
    """The tiny readings are on the whole held-out set, not on a slice whose luck another CPU would not share."""
    every, _ = sft_data.build("heldout")
    assert sft.heldout_examples(sft.SETTINGS["tiny"]) == every
    assert max(sft_data.SIZES["heldout"].values()) <= sft.SETTINGS["tiny"]["eval_per_task"]


def test_before_sft_reads_the_first_quarter_of_each_task():
    cfg = {"eval_per_task": 40}
    full, quarter = sft.heldout_examples(cfg), sft.heldout_examples(cfg, sft.before_per_task(cfg))
    assert sft.before_per_task(cfg) == 10 and sft.before_per_task({"eval_per_task": 2}) == 1
    for task in sft_data.TASKS:
        assert [e for e in quarter if e["task"] == task] == [e for e in full if e["task"] == task][:10]


def test_an_untrained_lora_leaves_the_replies_unchanged(policy):
    """The replies before SFT are read with the adapter disabled: the same as with the new (zero) LoRA."""
    _, _, cfg = policy  # a fresh policy: the fixture's has been trained by the tests above
    model, tokenizer = sft.load_policy(artifacts.ensure("base") / "model", cfg)
    heldout = sft.heldout_examples(cfg, 1)
    with model.disable_adapter():
        disabled = sft.evaluate(model, tokenizer, heldout, cfg)
    assert sft.evaluate(model, tokenizer, heldout, cfg) == disabled


def test_metrics_are_flat_and_named_per_task():
    before = {"sentiment": 0.5, "ner": 0.1, "stop_rate": 0.0, "format_rate": 0.2}
    after = {"sentiment": 0.8, "ner": 0.3, "stop_rate": 1.0, "format_rate": 0.9}
    m = sft.metrics_from(before, after, {"sentiment": 0.5, "ner": 0.0}, 10)
    assert m["sentiment_score_after"] == 0.8 and m["ner_baseline"] == 0.0 and m["stop_rate"] == 1.0
    assert m["format_rate"] == 0.9 and m["format_rate_before"] == 0.2
    assert all(isinstance(v, (int, float)) for v in m.values())


def test_short_sft_teaches_the_cpt_model_to_stop(tmp_path):
    """EOS is in the labels, so a short SFT makes the model end its replies: held-out prompts stop with EOS.

    Sentiment only (two-character replies), 60 steps: the stopping is learnt long before the content.
    """
    cfg = dict(sft.SETTINGS["tiny"], max_steps=60, warmup_steps=5, eval_per_task=40, max_new_tokens=16)
    model, tokenizer = sft.load_policy(artifacts.ensure("cpt") / "model", cfg)
    sizes = {task: 960 if task == "sentiment" else 0 for task in sft_data.TASKS}
    examples, _ = sft_data.build("train", sizes=sizes)
    rows, _ = chat.encode_conversations(tokenizer, [e["messages"] for e in examples], cfg["max_length"])
    heldout = [e for e in sft.heldout_examples(cfg) if e["task"] == "sentiment"]
    sft.train(model, tokenizer, rows, tmp_path / "ck", cfg)
    after, replies = sft.evaluate(model, tokenizer, heldout, cfg)
    assert after["stop_rate"] >= 0.95, replies[:5]
    assert all(text in sft_data.LABELS.values() for text, _ in replies), replies[:5]


def test_label_sensitivity_is_zero_only_for_a_model_that_ignores_the_label(policy):
    """The base model reacts to the 正面/负面 character (a random-ish reader); with an output layer that
    no longer depends on the input, the two first-token distributions coincide."""
    model, tokenizer, _ = policy
    assert 0.0 < sft.label_sensitivity(model, tokenizer, "房间") <= 1.0
    head = model.get_output_embeddings()
    weight = head.weight.detach().clone()
    with torch.no_grad():
        head.weight.zero_()  # every logit 0 whatever the prompt
        assert sft.label_sensitivity(model, tokenizer, "房间") == 0.0
        head.weight.copy_(weight)
