"""Recipes and launchers: every recipe parses with the installed TRL/transformers, the tiny and colab recipes
are the stages' own settings, the accelerate configs are valid, and the README's 2-process launch line
really starts two processes that train one model."""
import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from zhllm import artifacts, cpt, dpo, recipes, sft
from zhllm.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "configs" / "recipes"
LAUNCHERS = REPO / "configs" / "accelerate"
STAGES = {"cpt": cpt, "sft": sft, "dpo": dpo}
ALL_RECIPES = sorted(RECIPES.glob("*/*.yaml"))
CONFIGS = ("single_gpu", "ddp", "fsdp2", "deepspeed_zero2", "deepspeed_zero3", "multi_node", "cpu_2proc")


def test_every_profile_has_every_stage_recipe():
    assert {p.relative_to(RECIPES).as_posix() for p in ALL_RECIPES} == \
        {f"{profile}/{stage}.yaml" for profile in ("tiny", "colab", "full") for stage in STAGES}


@pytest.mark.parametrize("path", ALL_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses_with_the_installed_libraries_and_no_deprecated_key(path):
    recipes.recipe_types(path.stem)  # import the libraries first: their own import-time warnings do not count
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kit, args = recipes.load(path, path.stem)  # on a CPU machine, load adds use_cpu (CPU overrides)
    deprecated = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not deprecated, f"{path}: {deprecated}"
    assert kit.profile == path.parent.name
    assert type(args).__name__ == {"cpt": "TrainingArguments", "sft": "SFTConfig", "dpo": "DPOConfig"}[path.stem]
    assert args.use_cpu == (not torch.cuda.is_available())


@pytest.mark.parametrize("profile", ["tiny", "colab"])
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_recipe_is_the_stage_settings(profile, stage):
    """The recipe trains exactly what the notebook and `zhllm demo` train, key by key."""
    module = STAGES[stage]
    settings = module.SETTINGS[profile]
    kit, args = recipes.load(RECIPES / profile / f"{stage}.yaml", stage)
    ours = recipes.settings(kit, args)
    assert {k: ours[k] for k in ours if k in settings} == {k: settings[k] for k in ours if k in settings}
    expected = module.training_args(settings, args.output_dir)
    # precision and device follow the machine in the stage builds (fp32 CPU, fp16 T4, bf16 A100)
    machine = {"use_cpu", "fp16", "bf16"} if profile != "tiny" or torch.cuda.is_available() else set()
    differ = {f.name: (getattr(args, f.name), getattr(expected, f.name)) for f in dataclasses.fields(args)
              if f.name not in machine and getattr(args, f.name) != getattr(expected, f.name)}
    assert not differ, f"{profile}/{stage}.yaml (recipe, settings): {differ}"


def _recipe(tmp_path, changes: dict, drop: tuple = ()) -> Path:
    """The tiny SFT recipe with some keys changed or dropped, written to a temporary file."""
    recipe = yaml.safe_load((RECIPES / "tiny" / "sft.yaml").read_text())
    recipe.update(changes)
    for key in drop:
        del recipe[key]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize("changes, drop, message", [
    ({"max_seq_length": 512}, (), "unknown key 'max_seq_length'"),  # the key TRL renamed to max_length
    ({}, ("lora_r",), "missing key(s) lora_r"),
    ({"embeddings": "some"}, (), "embeddings must be one of"),
    ({"max_steps": 1.5}, (), "max_steps must be int"),
    ({"lr_scheduler_type": "wavy"}, (), "wavy"),
    ({"lora_r": -8}, (), "lora_r must be above 0, not -8"),
    ({"learning_rate": -1.0}, (), "learning_rate must be above 0, not -1.0"),
])
def test_bad_recipe_is_a_config_error_naming_file_and_key(tmp_path, changes, drop, message):
    path = _recipe(tmp_path, changes, drop)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        recipes.load(path, "sft")
    assert str(path) in str(err.value)
    if "max_seq_length" in changes:
        assert "did you mean 'max_length'" in str(err.value)


@pytest.mark.parametrize("content, message", [
    (None, "is a folder"),
    (b"", "the recipe file is empty"),
    ("lora_r: 8\n# 中文注释\n".encode("gbk"), "not UTF-8"),
    (b"lora_r: [8\n", "not valid YAML"),
])
def test_unreadable_recipe_file_is_named(tmp_path, content, message):
    path = tmp_path / "sft.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        recipes.read(path)
    assert str(path) in str(err.value)


def test_recipe_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (RECIPES / "tiny" / "sft.yaml").read_bytes())
    assert recipes.read(path) == recipes.read(RECIPES / "tiny" / "sft.yaml")


def test_overrides_win_and_unknown_flags_are_errors():
    kit, args = recipes.load(RECIPES / "tiny" / "sft.yaml", "sft", ["--max_steps", "3", "--lora_r", "8"])
    assert (args.max_steps, kit.lora_r) == (3, 8)
    with pytest.raises(ConfigError, match="max_stepz"):
        recipes.load(RECIPES / "tiny" / "sft.yaml", "sft", ["--max_stepz", "3"])


def test_stage_paths_resolve_to_the_runs_directory_and_others_pass_through(monkeypatch, tmp_path):
    built = []
    monkeypatch.setattr(artifacts, "ensure", lambda stage, profile: built.append((stage, profile)) or
                        tmp_path / profile / stage)
    assert recipes.resolve_model("runs/tiny/cpt/model") == str(tmp_path / "tiny" / "cpt" / "model")
    assert built == [("cpt", "tiny")]
    assert recipes.resolve_model("hfl/chinese-llama-2-7b") == "hfl/chinese-llama-2-7b"
    assert recipes.resolve_model("runs/tiny/notastage/model") == "runs/tiny/notastage/model"


# ---- accelerate configs and the README -----------------------------------------------------------------

def test_accelerate_configs_load_and_use_only_known_launch_options():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import DistributedType

    options = {action.dest for action in launch_command_parser()._actions}
    assert sorted(p.stem for p in LAUNCHERS.glob("*.yaml")) == sorted(CONFIGS)
    for name in CONFIGS:
        config = load_config_from_file(str(LAUNCHERS / f"{name}.yaml"))  # rejects unknown top-level keys
        for section in (config.deepspeed_config or {}, config.fsdp_config or {}):
            assert set(section) <= options, f"{name}: {set(section) - options}"
    two = load_config_from_file(str(LAUNCHERS / "cpu_2proc.yaml"))
    # MULTI_GPU selects torchrun; a CPU distributed type would select the one-process simple launcher
    assert (two.distributed_type, two.num_processes) == (DistributedType.MULTI_GPU, 2)


def readme_launch_lines() -> list[str]:
    """The `accelerate launch ...` lines of the README's "Scale out" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Scale out", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.strip().startswith("accelerate launch")]


def test_readme_launch_lines_name_real_configs_and_recipes():
    lines = readme_launch_lines()
    assert {re.search(r"configs/accelerate/(\w+)\.yaml", line)[1] for line in lines} == set(CONFIGS)
    for line in lines:
        for path in re.findall(r"configs/\S+\.yaml", line):
            assert (REPO / path).is_file(), line
        stage, recipe = re.search(r"-m zhllm\.cli train (\w+) --config (\S+)", line).groups()
        recipes.load(REPO / recipe, stage)


# ---- two CPU processes, one model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A freshly initialised, very small Llama with a SentencePiece tokenizer, as stage 00 builds them."""
    from zhllm import base, corpora
    from zhllm.modeling import tiny_llama

    out = tmp_path_factory.mktemp("tiny_model")
    lines = [line for doc in corpora.english("train")[:60] for line in doc.splitlines() if len(line) > 20]
    tokenizer = base.hf_tokenizer(base.train_tokenizer(lines[:300], out / "sp", 400))
    tiny_llama(len(tokenizer), hidden_size=64, num_layers=2, num_heads=2).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage, extra", [
    ("cpt", ["--train_chars", "20000"]),
    ("dpo", ["--max_length", "256"]),  # the test tokenizer spells Chinese in bytes: longer rows than the kit's
])
def test_tiny_recipe_trains_through_the_command_line(stage, extra, tiny_model, tmp_path):
    """`zhllm train` runs the stage's own training code from its tiny recipe (sft: the 2-process test)."""
    from zhllm import cli

    argv = ["train", stage, "--config", str(RECIPES / "tiny" / f"{stage}.yaml"), "--model_name_or_path",
            str(tiny_model), "--max_steps", "2", "--output_dir", str(tmp_path), *extra]
    assert cli.main(argv) == 0
    record = json.loads((tmp_path / "ranks" / "rank-0.json").read_text())
    assert record["world_size"] == 1 and record["checksum_after"] != record["checksum_before"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def _launch(extra: list[str], out: Path, model: Path) -> subprocess.CompletedProcess:
    """The README's cpu_2proc line, with overrides for a 2-step run."""
    line = next(line for line in readme_launch_lines() if "cpu_2proc" in line)
    command = line.split() + ["--model_name_or_path", str(model), "--max_steps", "2", "--logging_steps", "1",
                              "--output_dir", str(out), *extra]
    command[0] = str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ZHLLM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_cpu_processes_train_one_model(tiny_model, tmp_path):
    """Proves the launch starts 2 processes in one group (world size 2, ranks 0 and 1) and that DDP keeps
    them in sync: both end with bit-identical trainable parameters, which training changed."""
    result = _launch([], tmp_path, tiny_model)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "ranks").glob("rank-*.json"))]
    assert [r["rank"] for r in records] == [0, 1]
    assert {r["world_size"] for r in records} == {2}
    assert records[0]["checksum_after"] == records[1]["checksum_after"]
    assert records[0]["checksum_after"] != records[0]["checksum_before"]
    assert len(json.loads((tmp_path / "loss.json").read_text())) == 2
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_processes_that_do_not_join_one_group_are_refused(tiny_model, tmp_path):
    """Without use_cpu on a CPU machine, torchrun's two processes would each train alone: an error instead."""
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine the processes join over NCCL")
    result = _launch(["--use_cpu", "false"], tmp_path, tiny_model)
    assert result.returncode != 0
    assert "did not join one training run" in result.stdout + result.stderr
