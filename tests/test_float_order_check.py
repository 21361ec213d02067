"""scripts/float_order_check.py: the side-by-side table and its verdicts (the builds themselves take minutes)."""
import importlib
import importlib.util
import types
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "float_order_check.py"
spec = importlib.util.spec_from_file_location("float_order_check", SCRIPT)
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

TWO = {"review_score_after": 0.65, "review_baseline": 0.6, "stop_rate": 0.9875, "train_examples": 4108,
       "seconds": 177.2, "note": "text is left out"}
ONE = {"review_score_after": 0.525, "review_baseline": 0.6, "stop_rate": 0.9875, "train_examples": 4108,
       "seconds": 284.5, "note": "text is left out"}


def test_a_task_score_is_read_against_its_baseline():
    assert check.verdict(TWO, "review_score_after").strip() == "above"
    assert check.verdict(ONE, "review_score_after").strip() == "NOT above"
    assert check.verdict(TWO, "stop_rate") == ""
    assert check.verdict({"ner_score_after": 0.1}, "ner_score_after") == ""  # no baseline, no verdict


def test_the_table_marks_what_the_thread_count_changed():
    lines = check.table("sft", {"2 threads": TWO, "1 threads": ONE})
    assert "[2 threads: 177 s]" in lines[0] and "[1 threads: 284 s]" in lines[0]
    assert lines[1].split() == ["metric", "2", "threads", "1", "threads"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {"review_score_after", "review_baseline", "stop_rate", "train_examples"}  # no times, no text
    assert rows["review_score_after"].endswith("differs")
    assert "0.650 above" in rows["review_score_after"] and "0.525 NOT above" in rows["review_score_after"]
    assert not rows["stop_rate"].endswith("differs")


def fake_builds(monkeypatch, stage: str, metrics: str) -> list[tuple[str, dict]]:
    """Replace the build process: each call writes `metrics` where the stage would; returns (code, env) per call."""
    calls = []

    def fake_run(cmd, env, check):
        calls.append((cmd[-1], env))
        stage_dir = Path(env["ZHLLM_RUNS"]) / "tiny" / stage
        stage_dir.mkdir(parents=True)
        (stage_dir / "metrics.json").write_text(metrics)

    monkeypatch.setattr(check.subprocess, "run", fake_run)
    return calls


def test_each_build_gets_its_own_runs_folder_and_thread_count(tmp_path, monkeypatch):
    calls = fake_builds(monkeypatch, "sft", '{"stop_rate": 1.0}')
    assert check.build("sft", 1, tmp_path / "threads-1") == {"stop_rate": 1.0}
    seen = [(env["ZHLLM_RUNS"], env["ZHLLM_THREADS"], env["ZHLLM_PROFILE"], env["HF_HUB_OFFLINE"]) for _, env in calls]
    assert seen == [(str(tmp_path / "threads-1"), "1", "tiny", "1")]


def test_a_seed_build_replaces_only_the_stage_seed(tmp_path, monkeypatch):
    calls = fake_builds(monkeypatch, "dpo", '{"reward_accuracy_heldout": 0.7}')
    check.build("dpo", 2, tmp_path / "seed-3", seed=3)
    check.build("dpo", 2, tmp_path / "plain")
    codes = [code for code, _ in calls]
    imported = []  # run the seed part of the generated code against a stand-in stage module
    module = types.SimpleNamespace(SETTINGS={"tiny": {"seed": 0, "beta": 0.5}})
    monkeypatch.setattr(importlib, "import_module", lambda name: imported.append(name) or module)
    exec(codes[0].split("from zhllm import artifacts")[0], {})
    assert imported == ["zhllm.dpo"] and module.SETTINGS["tiny"] == {"seed": 3, "beta": 0.5}
    assert codes[1] == check.BUILD.format(stage="dpo")  # without a seed, the stage's own
