import json
import multiprocessing as mp

import pytest

from zhllm import artifacts
from zhllm.errors import StageError


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ZHLLM_RUNS", str(tmp_path))
    return tmp_path


def test_stage_dir_layout(runs):
    assert artifacts.stage_dir("base", "tiny") == runs / "tiny" / "base"
    with pytest.raises(StageError, match="unknown stage"):
        artifacts.stage_dir("pretrain", "tiny")


def test_metrics_must_be_flat_finite_numbers(tmp_path):
    artifacts.write_metrics(tmp_path, {"a": 1, "b": 0.5})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1, "b": 0.5}
    for bad in ({"a": {"nested": 1}}, {"a": "text"}, {"a": float("nan")}, {"a": True}):
        with pytest.raises(StageError):
            artifacts.write_metrics(tmp_path, bad)


def test_building_replaces_only_on_success(runs):
    with artifacts.building("base", "tiny") as out:
        artifacts.write_metrics(out, {"x": 1})
    assert artifacts.read_metrics("base", "tiny") == {"x": 1}
    with pytest.raises(RuntimeError):
        with artifacts.building("base", "tiny") as out:
            artifacts.write_metrics(out, {"x": 2})
            raise RuntimeError("interrupted")
    assert artifacts.read_metrics("base", "tiny") == {"x": 1}
    with pytest.raises(StageError, match="without writing metrics"):
        with artifacts.building("base", "tiny"):
            pass


def test_read_missing_stage_says_how_to_build(runs):
    with pytest.raises(StageError, match="zhllm demo"):
        artifacts.read_metrics("sft", "tiny")


def _slow_builder(out_dir, profile):
    import time

    counter = out_dir.parents[1] / "builds.txt"
    with open(counter, "a") as f:
        f.write("built\n")
    time.sleep(1.0)
    artifacts.write_metrics(out_dir, {"value": 42})


def _ensure_in_subprocess(root):
    import os

    os.environ["ZHLLM_RUNS"] = root
    artifacts.BUILDERS["base"] = "tests.test_artifacts:_slow_builder"
    return artifacts.read_metrics("base", "tiny") if artifacts.ensure("base", "tiny") else None


def test_two_workers_asking_at_once_build_once(runs):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_ensure_in_subprocess, [str(runs), str(runs)])
    assert results == [{"value": 42}, {"value": 42}]
    assert (runs / "builds.txt").read_text().count("built") == 1


def test_a_notebook_says_which_missing_stages_it_builds_first(runs, monkeypatch):
    monkeypatch.delenv(artifacts.START_VAR, raising=False)
    assert artifacts.builds_first("dpo", "colab") == ["base", "tokenizer", "cpt", "sft"]
    assert artifacts.builds_first("dpo", "tiny") == ["sft"], "the tiny profile starts from the shipped model"
    artifacts.stage_dir("cpt", "colab").mkdir(parents=True)
    artifacts.write_metrics(artifacts.stage_dir("cpt", "colab"), {"seconds": 1})
    assert artifacts.builds_first("dpo", "colab") == ["sft"], "a built stage is not rebuilt, nor what it needs"
    assert "sft (notebook 03)" in artifacts.describe_builds("dpo", "colab")
    assert artifacts.builds_first("scaling", "colab") == [] and "is built" in artifacts.describe_builds("scaling", "colab")
