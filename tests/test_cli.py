import json
import re
import shlex
from pathlib import Path

import pytest

from tests.test_recipes import tiny_model  # noqa: F401 -- a fixture: a fresh tiny Llama and tokenizer
from zhllm import artifacts, cli, scaling


def test_results_table_reads_every_built_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZHLLM_RUNS", str(tmp_path))
    assert "run `zhllm demo`" in cli.results_table("tiny")
    for stage, metrics in [("base", {"params": 5310720, "en_bpc_heldout": 2.4463}),
                           ("cpt", {"merge_max_abs_logit_diff": 3.8e-06})]:
        with artifacts.building(stage, "tiny") as out:
            artifacts.write_metrics(out, metrics)
    assert cli.main(["results", "--profile", "tiny"]) == 0
    table = capsys.readouterr().out
    assert "5,310,720" in table and "params" in table
    assert "2.446" in table and "3.8e-06" in table  # small values keep their digits
    assert table.index("base") < table.index("cpt")


def test_errors_are_reported_not_raised(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZHLLM_RUNS", str(tmp_path))
    monkeypatch.setattr(artifacts, "STAGES", ("base", "sft"))
    monkeypatch.setattr(artifacts, "BUILDERS", {})
    assert cli.main(["demo", "--profile", "tiny"]) == 0  # nothing wired: an empty, explained table
    assert "no stage has been built yet" in capsys.readouterr().out
    monkeypatch.setenv("ZHLLM_PROFILE", "huge")
    assert cli.main(["results"]) == 2
    assert "unknown profile" in capsys.readouterr().err


def test_help_names_every_command_and_the_recipe_keys(capsys):
    for argv in (["--help"], ["train", "--help"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("demo", "results", "train", "eval", "plan"))
    assert "configs/recipes" in out and "embed_learning_rate" in out and "trl.SFTConfig" in out


def test_plan_prints_the_compute_optimal_split(capsys):
    assert cli.main(["plan", "--flops", "5.76e23", "--unique-tokens", "3e11"]) == 0
    assert scaling.describe_plan(scaling.plan(5.76e23, 3e11)) in capsys.readouterr().out
    assert cli.main(["plan", "--gpu-hours", "1000", "--gpu", "h100", "--mfu", "0.5"]) == 0
    assert "989 TFLOP/s peak x 50% utilisation" in capsys.readouterr().out


def test_train_reports_a_bad_recipe(tmp_path, capsys):
    assert cli.main(["train", "sft", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml not found" in capsys.readouterr().err


def test_eval_ceval_scores_a_model_directory(tiny_model, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert cli.main(["eval", "ceval", "--model", str(tiny_model), "--limit", "2", "--output", str(out)]) == 0
    assert "Average" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["format"] == "official_zero_shot" and len(saved["predictions"]) == 16  # 8 subjects x 2


@pytest.mark.parametrize("args,message", [
    (["--limit", "0"], "--limit must be at least 1"),
    (["--output", "no/such/folder/scores.json"], "does not exist"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_eval_refuses_bad_arguments_before_scoring(args, message, tmp_path, monkeypatch, capsys):
    import zhllm.modeling

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zhllm.modeling, "load_causal_lm", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr(artifacts, "ensure", lambda *a, **k: pytest.fail("built a stage"))
    for model in (["--model", str(tmp_path)], []):
        assert cli.main(["eval", "ceval", *model, *args]) == 2
        assert message in capsys.readouterr().err


def readme_commands() -> list[list[str]]:
    """Every `zhllm ...` line of the README's shell blocks (continuations joined, comments and VAR=x dropped)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)
            if words[:1] == ["zhllm"]:
                commands.append(words[1:])
    return commands


def test_every_readme_command_parses():
    commands = readme_commands()
    assert ["pretrain-tiny", "--out", "models/tiny-zh-v1"] in commands and len(commands) >= 8
    parser = cli.build_parser()
    for argv in commands:
        args, extra = parser.parse_known_args(argv)  # argparse exits on an unknown command or bad value
        assert not extra or args.command == "train", f"README: zhllm {' '.join(argv)}: unknown {extra}"
