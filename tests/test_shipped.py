"""The shipped tiny Chinese checkpoint: hashes, reproduced metrics, its program (resume), clear errors."""
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from zhllm import artifacts, shipped
from zhllm.cpt import bpc_pair, long_run
from zhllm.errors import ConfigError, StageError
from zhllm.modeling import tiny_llama


def test_every_shipped_file_matches_the_sha256_in_its_card():
    card = shipped.read_card()
    folder = shipped.models_root() / shipped.TINY_ZH
    assert sorted(card["sha256"]) == shipped.payload_files(folder), "every file is in the card, and only those"
    for rel, digest in card["sha256"].items():
        assert shipped.sha256(folder / rel) == digest, rel
    readme = (folder / "README.md").read_text()
    assert all(digest in readme for digest in card["sha256"].values()), "the README lists the same hashes"
    assert card["commit"] in readme and card["command"] in readme


def test_shipped_weights_fit_the_size_budget():
    folder = shipped.verify()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 40 * 2**20


@pytest.mark.slow
def test_card_bits_per_character_reproduce():
    """The card's held-out numbers come back from the shipped files (tolerance: other CPUs' float order)."""
    m = shipped.read_card()["metrics"]
    model_dir = shipped.model_dir()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    zh, en = bpc_pair(model, AutoTokenizer.from_pretrained(model_dir), "tiny", long_run.EVAL_CHARS)
    assert zh == pytest.approx(m["zh_bpc_heldout"], abs=0.01)
    assert en == pytest.approx(m["en_bpc_heldout"], abs=0.01)


def test_shipped_tokenizer_is_stage_01s_tokenizer():
    """Same English tokenizer and expansion code, so stage 01's live tokenizer and the shipped one agree."""
    tok = AutoTokenizer.from_pretrained(shipped.model_dir())
    live = AutoTokenizer.from_pretrained(artifacts.ensure("tokenizer") / "model")
    assert tok.get_vocab() == live.get_vocab()
    text = "中华人民共和国成立了。The model reads both."
    assert tok(text)["input_ids"] == live(text)["input_ids"]


def _copy(tmp_path, monkeypatch):
    folder = tmp_path / shipped.TINY_ZH
    shutil.copytree(shipped.models_root() / shipped.TINY_ZH, folder)
    monkeypatch.setenv("ZHLLM_MODELS", str(tmp_path))
    return folder


def test_corrupted_file_names_the_file_and_the_rebuild_command(tmp_path, monkeypatch):
    folder = _copy(tmp_path, monkeypatch)
    weights = folder / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(StageError, match=r"model\.safetensors.*sha256.*zhllm pretrain-tiny"):
        shipped.model_dir()


def test_missing_file_and_missing_card_are_named(tmp_path, monkeypatch):
    folder = _copy(tmp_path, monkeypatch)
    (folder / "model" / "tokenizer.json").unlink()
    with pytest.raises(StageError, match=r"tokenizer\.json is missing.*zhllm pretrain-tiny"):
        shipped.verify()
    (folder / "card.json").unlink()
    with pytest.raises(StageError, match=r"no card.*zhllm pretrain-tiny"):
        shipped.verify()


def test_start_model_switch(monkeypatch):
    assert artifacts.start_from("tiny") == "shipped"
    assert artifacts.start_model_dir("tiny") == shipped.model_dir()
    monkeypatch.setenv(artifacts.START_VAR, "cpt")
    assert artifacts.stage_dir("sft", "tiny").parent.name == "tiny-from-cpt"  # never mixes with the default runs
    monkeypatch.setenv(artifacts.START_VAR, "shiped")
    with pytest.raises(ConfigError, match="ZHLLM_START_FROM"):
        artifacts.start_from("tiny")
    monkeypatch.setenv(artifacts.START_VAR, "shipped")
    with pytest.raises(ConfigError, match="tiny profile"):
        artifacts.start_from("colab")


def test_interrupted_phase_resumes_to_the_uninterrupted_weights(tmp_path):
    cfg = dict(long_run.SETTINGS["smoke"], save_steps=3)
    rows = [{"input_ids": list(range(i, i + 32)), "labels": list(range(i, i + 32))} for i in range(40)]

    def fresh():
        return tiny_llama(128, hidden_size=32, num_layers=1, num_heads=2, seed=0)

    full = fresh()
    long_run.train_phase(full, rows, tmp_path / "full", 8, cfg)
    cut = fresh()
    long_run.train_phase(cut, rows, tmp_path / "cut", 8, cfg, stop_after=5)  # killed after step 5
    assert (tmp_path / "cut" / "checkpoint-3").exists() and not (tmp_path / "cut" / "checkpoint-5").exists()
    resumed = fresh()
    long_run.train_phase(resumed, rows, tmp_path / "cut", 8, cfg)
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run ends with the uninterrupted run's weights"
    assert not all(torch.equal(a[k], fresh().state_dict()[k]) for k in a), "and training changed them"


@pytest.mark.slow
def test_program_builds_a_verified_shipped_folder(tmp_path, monkeypatch):
    """A few steps of `zhllm pretrain-tiny --smoke`: every phase, the bf16 files, a card that verifies."""
    out = tmp_path / shipped.TINY_ZH
    card = long_run.build(out, tmp_path / "work", smoke=True)
    monkeypatch.setenv("ZHLLM_MODELS", str(tmp_path))
    assert shipped.verify() == out
    assert json.loads((out / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    assert card["metrics"]["chinese_tokens"] == 6 * 4 * 64
    assert card["metrics"]["params"] > card["metrics"]["non_embedding_params"] > 0
    again = long_run.build(out, tmp_path / "work", smoke=True)  # phases done: nothing retrains
    assert again["metrics"]["zh_bpc_heldout"] == card["metrics"]["zh_bpc_heldout"]
