"""Stage 02: packing, exact QLoRA merge, resume after interruption, Firefly's parameter counts."""
import pytest
import torch

from zhllm import cpt
from zhllm.modeling import tiny_llama


class _Tok:
    """Character-level stand-in tokenizer: ids are code points, enough for packing arithmetic."""
    bos_token_id, eos_token_id = 1, 2

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [10 + (ord(c) % 50) for c in text]}


@pytest.mark.parametrize("shape, published", [("7B", 612.9e6), ("13B", 816.6e6)])
def test_firefly_trainable_parameter_counts(shape, published):
    # LoRA r=64 on all linear layers + embed_tokens + lm_head, vocabulary 55,296 (Firefly-LLaMA2)
    count = cpt.trainable_parameters_from_config(shape, vocab_size=55296, r=64, embeddings="full")
    assert round(count / 1e6, 1) == round(published / 1e6, 1)


def test_packing_fills_blocks_with_eos_between_documents():
    docs = ["abc", "defgh", "ij", "klmnopq"]
    blocks = cpt.pack_documents(_Tok(), docs, block_size=6)
    stream = [i for b in blocks for i in b["input_ids"]]
    assert all(len(b["input_ids"]) == 6 for b in blocks)
    assert stream[:5] == [1, *_Tok()("abc")["input_ids"], 2]
    assert stream.count(2) >= 3  # EOS closes every complete document


def test_separate_mode_restarts_positions_at_each_document():
    blocks = cpt.pack_documents(_Tok(), ["abc", "de"], block_size=9, separate=True)
    # <s> a b c </s> <s> d e </s>  -> positions 0..4 then 0..3
    assert blocks[0]["position_ids"] == [0, 1, 2, 3, 4, 0, 1, 2, 3]


def test_padding_avoided_is_the_share_padding_would_have_taken():
    share = cpt.padding_avoided(_Tok(), ["ab", "abcdef"], block_size=10)
    assert share == pytest.approx(1 - (4 + 8) / 20)


def test_memory_of_embedding_options():
    mem = cpt.embedding_memory(vocab_size=1000, hidden=64, new_tokens=100)
    full, rows = mem.values()
    assert full == pytest.approx(10 * rows)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tiny_llama(vocab_size=128, hidden_size=64, num_layers=2, num_heads=2, seed=1).save_pretrained(path)
    return path


def _cfg(**over):
    small = dict(lora_r=4, lora_alpha=8, batch_size=2, max_steps=8, warmup_steps=0, learning_rate=5e-3)
    return {**cpt.SETTINGS["tiny"], **small, **over}


def _blocks(n=40, length=16):
    g = torch.Generator().manual_seed(0)
    return [{"input_ids": (ids := torch.randint(3, 128, (length,), generator=g).tolist()),
             "labels": ids} for _ in range(n)]


def test_merge_into_dequantized_weights_is_exact(tiny_dir, tmp_path):
    model = cpt.load_for_training(tiny_dir, "4bit", _cfg())
    cpt.train(model, _blocks(), tmp_path / "ck", _cfg(max_steps=4), resume=False)
    model.save_pretrained(tmp_path / "adapter")
    ids = torch.randint(3, 128, (2, 16))
    merged = cpt.merge(model, tiny_dir, tmp_path / "adapter")
    exact = cpt.max_abs_logit_diff(model, merged, ids)
    naive = cpt.max_abs_logit_diff(model, cpt.naive_merge(tiny_dir, tmp_path / "adapter"), ids)
    tolerance = cpt.merge_tolerance(cpt.logits_as_trained(merged, ids), torch.float32)
    assert exact < tolerance < 1e-4
    assert naive > 10 * tolerance  # merging into the original fp32 weights changes the model


def test_the_merged_model_ends_whole_on_one_device(tiny_dir, tmp_path):
    from zhllm import runtime

    model = cpt.load_for_training(tiny_dir, "4bit", _cfg())
    model.save_pretrained(tmp_path / "adapter")
    merged = cpt.merge(model, tiny_dir, tmp_path / "adapter")
    assert {p.device for p in merged.parameters()} == {runtime.device()} == {merged.device}
    assert {b.device for b in merged.buffers()} <= {runtime.device()}


def test_merge_tolerance_comes_from_the_compute_dtype():
    """An fp16-compute model and its fp32 twin differ by rounding alone: more than 1e-3, within the tolerance."""
    import copy

    model = tiny_llama(vocab_size=512, hidden_size=256, num_layers=8, num_heads=4, seed=0)
    ids = torch.randint(3, 512, (1, 64), generator=torch.Generator().manual_seed(0))
    half = copy.deepcopy(model).to(torch.float16)
    diff = cpt.max_abs_logit_diff(half, model, ids)
    logits = cpt.logits_as_trained(model, ids)
    assert 1e-3 < diff < cpt.merge_tolerance(logits, torch.float16)
    assert cpt.merge_tolerance(logits, torch.float32) < 1e-4  # fp32 stays strict
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.lm_head.weight.mul_(1.1)  # a 10% error in one matrix
    assert cpt.max_abs_logit_diff(broken, model, ids) > cpt.merge_tolerance(logits, torch.float16)


def test_interrupted_training_resumes_to_the_same_result(tiny_dir, tmp_path):
    def lora_state(model):
        return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}

    full = cpt.load_for_training(tiny_dir, "4bit", _cfg())
    cpt.train(full, _blocks(), tmp_path / "full", _cfg(), resume=False)

    cfg = _cfg()
    first = cpt.load_for_training(tiny_dir, "4bit", cfg)
    cpt.train(first, _blocks(), tmp_path / "cut", cfg, stop_after=4)  # "killed" after step 4
    assert any((tmp_path / "cut").glob("checkpoint-*"))
    resumed = cpt.load_for_training(tiny_dir, "4bit", cfg)
    history = cpt.train(resumed, _blocks(), tmp_path / "cut", cfg)
    assert history, "the resumed run logged its loss"
    a, b = lora_state(full), lora_state(resumed)
    assert a.keys() == b.keys() and a
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_bigram_line_sits_between_the_unigram_and_a_memorised_text():
    from zhllm import evaluation

    train = ["人民日报社论", "人民大会堂", "日报社记者"] * 20
    held = ["人民日报记者", "大会堂"]
    uni = evaluation.unigram_bits_per_character(train, held)
    bi = evaluation.bigram_bits_per_character(train, held)
    assert 0 < bi < uni
    assert evaluation.bigram_bits_per_character(train, ["人民人民"]) < evaluation.bigram_bits_per_character(train, ["民人民人"])


class _Copier(torch.nn.Module):
    """A stand-in model whose next token is the one `period` positions back (it copies, and knows nothing)."""

    def __init__(self, period, vocab=50):
        super().__init__()
        self.period, self.vocab, self.device = period, vocab, torch.device("cpu")

    def forward(self, input_ids):
        ids = input_ids[0]
        logits = torch.zeros(1, len(ids), self.vocab)
        for i in range(len(ids)):
            logits[0, i, ids[i + 1 - self.period] if i + 1 >= self.period else 0] = 1.0
        return type("Out", (), {"logits": logits})


def test_copy_accuracy_reads_the_second_occurrence():
    from zhllm import evaluation

    class Tok:  # one token per character, "。" = 1; BOS = 2
        bos_token_id = 2

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [1 if c == "。" else 3 + "一二三四五六七八九十".index(c) for c in text]}

    texts = ["一二三四五六七八九十"]
    assert evaluation.copy_accuracy(_Copier(11), Tok(), texts) == {"first": 0.0, "second": 1.0}
    assert evaluation.copy_accuracy(_Copier(1), Tok(), texts)["second"] == 0.0
