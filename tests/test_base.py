"""Stage 00: tokenizer fidelity (fast, own small model) and the tiny base's measured promises."""
import json
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from zhllm import artifacts, base, corpora


@pytest.fixture(scope="module")
def small_sp(tmp_path_factory):
    out = tmp_path_factory.mktemp("sp")
    return base.train_tokenizer(corpora.english("train")[:60], out, vocab_size=800)


def test_hf_tokenizer_gives_sentencepiece_ids_and_roundtrips(small_sp, tmp_path):
    sp = spm.SentencePieceProcessor(model_file=str(small_sp))
    tok = base.hf_tokenizer(small_sp)
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    lines = [l for d in corpora.english("heldout")[:5] for l in d.splitlines()]
    lines += corpora.people_daily("heldout")[:20] + ["   indented", "a  b", "x ", "", "１９９８年 12 apples"]
    for t in (tok, reloaded):
        for line in lines:
            ids = t(line, add_special_tokens=False)["input_ids"]
            assert ids == sp.encode(line), line
            assert t.decode(ids) == line
    assert reloaded("hi")["input_ids"][0] == reloaded.bos_token_id
    assert reloaded.pad_token_id not in (None, reloaded.eos_token_id)


def test_chinese_falls_back_to_bytes(small_sp):
    tok = base.hf_tokenizer(small_sp)
    pieces = tok.convert_ids_to_tokens(tok("人民", add_special_tokens=False)["input_ids"])
    assert pieces[-6:] == ["<0xE4>", "<0xBA>", "<0xBA>", "<0xE6>", "<0xB0>", "<0x91>"]


def test_token_blocks_put_eos_between_documents(small_sp):
    tok = base.hf_tokenizer(small_sp)
    blocks = base.token_blocks(tok, ["one doc", "another doc"], block_size=4)
    stream = blocks.flatten().tolist()
    assert stream[0] == tok.bos_token_id and tok.eos_token_id in stream
    assert blocks.shape[1] == 4


def test_tiny_base_meets_its_targets():
    metrics = artifacts.read_metrics("base") if artifacts.is_built("base") else None
    metrics = metrics or json.loads((artifacts.ensure("base") / "metrics.json").read_text())
    for key in ("params", "train_tokens", "en_bpc_heldout", "en_bpc_unigram", "zh_chars_per_token",
                "seconds"):
        assert key in metrics
    assert metrics["en_bpc_heldout"] <= 0.75 * metrics["en_bpc_unigram"]
    assert metrics["zh_chars_per_token"] < 0.5
    model_dir = artifacts.stage_dir("base") / "model"
    assert (model_dir / "config.json").exists() and (model_dir / "tokenizer.json").exists()
    assert (artifacts.stage_dir("base") / "sp.model").exists()


def _pieces(sp_model: Path) -> list[tuple[str, float]]:
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]


def test_stage_00_is_deterministic(tmp_path, monkeypatch):
    """Two builds from scratch, each with its own runs folder (shorter: 12 steps, a smaller evaluation),
    give the same vocabulary (pieces and scores; the .model file also records its own path), bit-identical
    weights and the same metrics."""
    monkeypatch.setitem(base.SETTINGS, "tiny", {**base.SETTINGS["tiny"], "max_steps": 12, "warmup_steps": 4,
                                                "eval_max_chars": 5_000})
    builds, metrics = (tmp_path / "first", tmp_path / "second"), []
    for out in builds:
        monkeypatch.setenv("ZHLLM_RUNS", str(out / "runs"))  # checkpoints of its own: nothing to resume from
        metrics.append(base.build(out, "tiny"))
        metrics[-1].pop("seconds")
    assert metrics[0] == metrics[1]
    assert _pieces(builds[0] / "sp.model") == _pieces(builds[1] / "sp.model")
    first, second = (load_file(out / "model" / "model.safetensors") for out in builds)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
