"""The recipe a training notebook shows is the recipe the kit runs.

Notebooks 02, 03 and 04 build their `BitsAndBytesConfig`, `LoraConfig` and `TrainingArguments` /
`SFTConfig` / `DPOConfig` in one cell tagged `recipe`, one commented argument per line. Here that cell runs
after the notebook's imports and parameters cell, in each profile, and its objects must equal what the
stage's package builds from the same settings (which `zhllm demo` runs, and which tests/test_recipes.py
holds equal to the YAML recipes).
"""
from pathlib import Path

import jupytext
import pytest

from zhllm import cpt, dpo, sft
from zhllm.modeling import quantization_config

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_recipe_cell(name: str, profile: str, monkeypatch, tmp_path, **given) -> dict:
    """Run the notebook's import cells, its parameters cell and its recipe cell; return their namespace."""
    monkeypatch.setenv("ZHLLM_PROFILE", profile)
    monkeypatch.setenv("ZHLLM_RUNS", str(tmp_path))
    cells = [c for c in jupytext.read(NOTEBOOKS / name).cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in cells]
    recipe = [i for i, t in enumerate(tags) if "recipe" in t]
    assert len(recipe) == 1, f"{name}: exactly one cell tagged 'recipe'"
    parameters = next(i for i, t in enumerate(tags) if "parameters" in t)
    namespace = dict(given)
    for cell in cells[:parameters + 1] + [cells[recipe[0]]]:
        exec(compile(cell.source, name, "exec"), namespace)
    return namespace


def same_quantization(shown, cfg):
    expected = quantization_config(cfg["quantization"])
    assert (shown is None) == (expected is None)
    if expected is not None:
        assert shown.to_dict() == expected.to_dict()


@pytest.mark.parametrize("profile", ["tiny", "colab"])
def test_cpt_recipe(profile, monkeypatch, tmp_path):
    new_ids = [7000, 7001]
    ns = run_recipe_cell("02_qlora_continued_pretraining.py", profile, monkeypatch, tmp_path, new_ids=new_ids)
    cfg = ns["CFG"]
    same_quantization(ns["quantization"], cfg)
    assert ns["lora"] == cpt.lora_config(cfg["lora_r"], cfg["lora_alpha"], cfg["embeddings"], new_ids)
    expected = cpt.training_args(cfg, ns["args"].output_dir)
    assert ns["args"].to_dict() == expected.to_dict()


@pytest.mark.parametrize("profile", ["tiny", "colab"])
def test_sft_recipe(profile, monkeypatch, tmp_path):
    ns = run_recipe_cell("03_sft.py", profile, monkeypatch, tmp_path)
    cfg = ns["CFG"]
    same_quantization(ns["quantization"], cfg)
    assert ns["lora"] == cpt.lora_config(cfg["lora_r"], cfg["lora_alpha"], cfg["embeddings"])
    assert ns["args"].to_dict() == sft.training_args(cfg, ns["args"].output_dir).to_dict()


@pytest.mark.parametrize("profile", ["tiny", "colab"])
def test_dpo_recipe(profile, monkeypatch, tmp_path):
    ns = run_recipe_cell("04_dpo.py", profile, monkeypatch, tmp_path)
    cfg = ns["CFG"]
    assert ns["lora"] == cpt.lora_config(cfg["lora_r"], cfg["lora_alpha"], cfg["embeddings"])
    assert ns["args"].to_dict() == dpo.training_args(cfg, ns["args"].output_dir).to_dict()


def test_a_changed_setting_shows_up(monkeypatch, tmp_path):
    """The check can fail: a recipe that differs from the package's is caught."""
    ns = run_recipe_cell("03_sft.py", "tiny", monkeypatch, tmp_path)
    cfg = dict(ns["CFG"], learning_rate=ns["CFG"]["learning_rate"] * 2)
    assert ns["args"].to_dict() != sft.training_args(cfg, ns["args"].output_dir).to_dict()
