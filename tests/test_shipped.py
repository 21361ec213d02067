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
    with pytest.raises(ConfigError, match=r"work.*other settings.*another --work"):
        long_run.build(out, tmp_path / "work", smoke=True, chinese_steps=7)  # not a mix of two runs' phases


@pytest.mark.slow
def test_program_builds_the_shape_it_is_given(tmp_path):
    """`--hidden-size/--num-layers/--num-heads/--chinese-steps`: the model and the card follow them."""
    card = long_run.build(tmp_path / "out", tmp_path / "work", smoke=True, hidden_size=32, num_layers=1,
                          num_heads=2, chinese_steps=4)
    config = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (32, 1, 2)
    assert card["settings"]["chinese_steps"] == 4 and card["metrics"]["chinese_tokens"] == 4 * 4 * 64


def test_settings_change_only_what_pretrain_tiny_can_change():
    assert long_run.settings(hidden_size=None) == long_run.SETTINGS["full"], "None keeps the default"
    assert long_run.settings(True, num_layers=2)["num_layers"] == 2
    with pytest.raises(ConfigError, match="cannot change.*block_size"):
        long_run.settings(block_size=128)
    for hidden_size, num_heads in [(100, 3), (96, 32)]:  # 96 / 32 = 3: an odd head width, which RoPE cannot rotate
        with pytest.raises(ConfigError, match=f"hidden_size {hidden_size} must be a multiple of 2 x num_heads"):
            long_run.settings(hidden_size=hidden_size, num_heads=num_heads)
    assert long_run.settings(hidden_size=96, num_heads=16)["num_heads"] == 16


def test_cli_passes_every_scalable_setting(monkeypatch, tmp_path):
    from zhllm import cli

    seen = {}
    monkeypatch.setattr(long_run, "build", lambda out, work, smoke, command, **changes: seen.update(
        changes, command=command) or {"metrics": {}})
    args = ["pretrain-tiny", "--out", str(tmp_path / "m"), "--hidden-size", "512", "--num-layers", "8",
            "--num-heads", "8", "--batch-size", "64", "--english-steps", "200", "--chinese-steps", "1200",
            "--learning-rate", "1.5e-3"]
    assert cli.main(args) == 0
    assert set(seen) - {"command"} == set(long_run.SCALABLE), "one option per scalable setting"
    assert (seen["hidden_size"], seen["chinese_steps"], seen["learning_rate"]) == (512, 1200, 1.5e-3)
    assert seen["command"] == "zhllm " + " ".join(args), "the card records the exact command"
