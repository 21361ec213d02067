"""Recipes (训练配方): one stage's training in one YAML file, read by TRL's own argument parser.

A recipe is a flat YAML mapping. Its keys are the fields of two dataclasses: the kit's arguments for the
stage (`CptArguments`, `SftArguments`, `DpoArguments`: which model, LoRA, which data) and the library's
training arguments (`transformers.TrainingArguments` for cpt, `trl.SFTConfig` for sft, `trl.DPOConfig`
for dpo). `trl.TrlParser` reads it, as TRL's own scripts do, so a key the pinned libraries no longer
accept is an error naming the file and the key, never a silent no-op. Flags after the file override it:
`zhllm train sft --config configs/recipes/tiny/sft.yaml --max_steps 10`.

`run` calls the same stage functions as the notebooks and `zhllm demo` (`cpt.train`, `sft.train`,
`dpo.make_trainer`): a recipe changes the arguments, never the training code.
"""
import argparse
import difflib
import hashlib
import json
import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import yaml

from . import artifacts, hub
from .errors import ConfigError
from .profiles import PROFILES

# ---- the kit's half of a recipe --------------------------------------------------------------------


def _help(text: str) -> dict:
    return {"metadata": {"help": text}}


@dataclass
class CptArguments:
    """Stage 02, QLoRA continued pretraining (增量预训练): the model, LoRA, embeddings and corpus."""
    profile: str = field(**_help("tiny | colab | full: which corpora the stage reads (zhllm.corpora)"))
    model_name_or_path: str = field(**_help(
        "the vocabulary-expanded model: hub name, directory, or runs/<profile>/tokenizer/model (a kit stage, "
        "built when missing)"))
    quantization: str | None = field(**_help("4bit (QLoRA: NF4 + double quantisation), 8bit, or null"))
    lora_r: int = field(**_help("LoRA rank, on every linear layer"))
    lora_alpha: int = field(**_help("LoRA scale numerator (the update is scaled by alpha / r)"))
    embeddings: str = field(**_help(
        "full (train all embedding/output rows), new_rows (only the added tokens' rows) or none"))
    embed_learning_rate: float = field(**_help("learning rate of the embedding/output rows (LoRA uses learning_rate)"))
    block_size: int = field(**_help("tokens per packed training block"))
    train_chars: int = field(**_help("Chinese characters of training text"))
    english_share: float = field(**_help("English replay, as a share of train_chars (keeps English alive)"))
    base_tokenizer: str | None = field(default=None, **_help(
        "the tokenizer before expansion; needed only for embeddings: new_rows (its length = first new id)"))


@dataclass
class SftArguments:
    """Stage 03, supervised fine-tuning (指令微调): the model to tune and its LoRA."""
    profile: str = field(**_help("tiny | colab | full"))
    model_name_or_path: str = field(**_help(
        "the model to tune: hub name, directory, or runs/<profile>/cpt/model (a kit stage, built when missing)"))
    quantization: str | None = field(**_help("4bit (QLoRA), 8bit, or null"))
    lora_r: int = field(**_help("LoRA rank, on every linear layer"))
    lora_alpha: int = field(**_help("LoRA scale numerator (the update is scaled by alpha / r)"))
    embeddings: str = field(**_help("full, new_rows or none: whether embedding rows train too"))
    pack_batches: bool = field(**_help(
        "the stage's `packing`: concatenate each batch without padding, position_ids restarting per example so "
        "no attention crosses examples (not TRL's `packing`, which repacks the dataset itself)"))
    exam_per_subject: int = field(**_help(
        "exam-format questions per subject, on training text, mixed into the data (0 = none; see zhllm.ceval.kit_exam)"))
    hub_dataset: str | None = field(default=None, **_help(
        "a hub instruction set (Alpaca/BELLE, ShareGPT or messages layout), or a local .json/.jsonl file or folder "
        "of them, added to the kit's tasks; null = none"))
    hub_rows: int = field(default=0, **_help(
        "rows of hub_dataset to use: its first ones that pass the checks (fewer in the set is an error)"))


@dataclass
class DpoArguments:
    """Stage 04, DPO (偏好对齐): the SFT model, its LoRA and the preference pairs."""
    profile: str = field(**_help("tiny | colab | full: tiny builds review pairs offline"))
    model_name_or_path: str = field(**_help(
        "the SFT model: hub name, directory, or runs/<profile>/sft/model (a kit stage, built when missing)"))
    lora_r: int = field(**_help("LoRA rank; the reference model is this model with the adapter disabled"))
    lora_alpha: int = field(**_help("LoRA scale numerator (the update is scaled by alpha / r)"))
    embeddings: str = field(**_help(
        "full or none: whether the embedding and output rows train too (a trainable copy of those matrices)"))
    train_pairs: int = field(**_help("preference pairs to train on"))
    heldout_pairs: int = field(**_help("held-out pairs (reward accuracy)"))
    hub_dataset: str | None = field(default=None, **_help(
        "a hub preference set (prompt/chosen/rejected or MedicalGPT layout), or a local .json/.jsonl file or "
        "folder of them; null = the kit's review pairs"))
    review_pairs: int = field(default=0, **_help(
        "with a hub_dataset: review train pairs mixed in, the task the held-out review pairs measure"))


CHOICES = {"profile": PROFILES, "quantization": (None, "4bit", "8bit"), "embeddings": ("full", "new_rows", "none")}


def recipe_types(stage: str) -> tuple[type, type]:
    """(the kit's arguments, the library's training arguments) of a stage's recipe."""
    if stage == "cpt":
        from transformers import TrainingArguments

        return CptArguments, TrainingArguments
    if stage == "sft":
        from trl import SFTConfig

        return SftArguments, SFTConfig
    if stage == "dpo":
        from trl import DPOConfig

        return DpoArguments, DPOConfig
    raise ConfigError(f"no recipe for stage {stage!r}; recipes exist for cpt, sft and dpo")


# ---- reading and checking a recipe -------------------------------------------------------------------


def read(path: str | Path) -> dict:
    """The recipe file as a dict; a missing, unreadable or empty file, or one that is not a YAML mapping,
    is a ConfigError naming the file (UTF-8 with or without a byte-order mark is read)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"recipe {path} is a folder; give the file, e.g. {path / 'sft.yaml'}")
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found (recipes live in configs/recipes/<profile>/<stage>.yaml)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start}); save the recipe as UTF-8") from None
    if not text.strip():
        raise ConfigError(f"{path}: the recipe file is empty")
    try:
        recipe = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(recipe, dict):
        raise ConfigError(f"{path}: a recipe must be a YAML mapping of key: value")
    return recipe


def check_keys(path: Path, recipe: dict, types: tuple[type, type], overrides=()) -> None:
    """Every key must be a field of the two dataclasses, and every required kit key must be given."""
    known = {f.name for t in types for f in fields(t) if f.init} | {"env"}  # `env`: TrlParser's env vars
    for key in recipe:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}: not a field of {types[0].__name__} or "
                              f"{types[1].__module__.split('.')[0]}.{types[1].__name__} in the installed "
                              f"version{hint}")
    given = set(recipe) | {flag[2:].split("=")[0] for flag in overrides if flag.startswith("--")}
    missing = [f.name for f in fields(types[0])
               if f.default is MISSING and f.default_factory is MISSING and f.name not in given]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)} (required by {types[0].__name__})")


def check_choices(path: Path, kit) -> None:
    """The kit's keys with a fixed set of values (profile, quantization, embeddings)."""
    for name, allowed in CHOICES.items():
        if hasattr(kit, name) and getattr(kit, name) not in allowed:
            raise ConfigError(f"{path}: {name} must be one of {allowed}, not {getattr(kit, name)!r}")


def check_types(path: Path, obj, keys) -> None:
    """int/float/bool keys hold such values: argparse converts strings only, and YAML gives numbers as is."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in keys and f.type in (int, float, bool):
            wrong_bool = isinstance(value, bool) != (f.type is bool)  # True is an int to Python, not to us
            if wrong_bool or not isinstance(value, (int, float) if f.type is float else f.type):
                raise ConfigError(f"{path}: {f.name} must be {f.type.__name__}, not {value!r}")


# numeric keys and the values that make sense: (lowest, highest, whether the lowest itself is allowed)
RANGES = {**{k: (0, None, False) for k in ("lora_r", "lora_alpha", "block_size", "train_chars", "train_pairs",
                                            "heldout_pairs", "learning_rate", "embed_learning_rate",
                                            "per_device_train_batch_size", "gradient_accumulation_steps")},
          **{k: (0, None, True) for k in ("exam_per_subject", "hub_rows", "weight_decay", "max_grad_norm")},
          **{k: (0, 1, True) for k in ("english_share", "warmup_ratio")}}


def check_ranges(path: Path, obj) -> None:
    """Numeric keys within their range: YAML and argparse accept `lora_r: -8`, training would not."""
    for f in fields(obj):
        value = getattr(obj, f.name, None)
        if f.name not in RANGES or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        low, high, low_ok = RANGES[f.name]
        if value < low or (value == low and not low_ok) or (high is not None and value > high):
            allowed = f"at least {low}" if low_ok else f"above {low}"
            if high is not None:
                allowed += f" and at most {high}"
            raise ConfigError(f"{path}: {f.name} must be {allowed}, not {value!r}")


def machine_overrides() -> list[str]:
    """On a machine without CUDA, train on the CPU: the rule the stage builds follow too.

    Without `use_cpu`, processes started by `accelerate launch` on a CPU machine never join one
    process group: each trains alone, silently.
    """
    import torch

    return [] if torch.cuda.is_available() else ["--use_cpu", "true"]


def load(path: str | Path, stage: str, overrides=()) -> tuple:
    """(kit arguments, training arguments) of a recipe, with command-line `overrides` (`--key value`)."""
    from trl import TrlParser

    path = Path(path)
    types = recipe_types(stage)
    recipe = read(path)
    check_keys(path, recipe, types, overrides)
    parser = TrlParser(list(types), exit_on_error=False)
    try:
        kit, args = parser.parse_args_and_config(["--config", str(path), *machine_overrides(), *overrides])
    except (argparse.ArgumentError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    check_choices(path, kit)
    for obj in (kit, args):
        check_types(path, obj, set(recipe))
        check_ranges(path, obj)
    return kit, args


def settings(kit, args) -> dict:
    """The stage's settings dict (the keys of its SETTINGS) for the stage functions: kit keys, the seed and
    `gradient_checkpointing` (the training arguments' `activation_checkpointing`).

    `pack_batches` is SETTINGS' `packing`, renamed because SFTConfig has a `packing` key of its own.
    """
    cfg = {**asdict(kit), "seed": args.seed, "gradient_checkpointing": args.activation_checkpointing}
    if "pack_batches" in cfg:
        cfg["packing"] = cfg.pop("pack_batches")
    return cfg


# ---- running a recipe ---------------------------------------------------------------------------------

STAGE_PATH = re.compile(r"^runs/(?P<profile>[a-z]+)/(?P<stage>[a-z]+)/(?P<rest>.+)$")


def resolve_model(name: str) -> str:
    """A model path; `runs/<profile>/<stage>/...` names a kit stage, built first when missing; a hub id
    goes through `zhllm.hub` (its mirror folder when $ZHLLM_HUB_MIRROR is set).

    The stage lives under $ZHLLM_RUNS when it is set. Each machine's first process builds it while the
    others wait, so a multi-node run with node-local disks builds once per node.
    """
    match = STAGE_PATH.match(name)
    if not match or match["stage"] not in artifacts.STAGES or match["profile"] not in PROFILES:
        return hub.model_path(name)
    from accelerate import PartialState

    with PartialState().local_main_process_first():
        return str(artifacts.ensure(match["stage"], match["profile"]) / match["rest"])


def checksum(model) -> str:
    """sha256 of the trainable parameters this process holds (all of them under DDP, a shard under FSDP/ZeRO-3)."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            local = p.to_local() if hasattr(p, "to_local") else p  # an FSDP2 DTensor: this rank's shard
            digest.update(name.encode())
            digest.update(local.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _train_cpt(kit, args, cfg: dict):
    """Stage 02's steps as in `cpt.build`: LoRA (+ embeddings) on the expanded model, packed text, `cpt.train`."""
    from transformers import AutoTokenizer

    from . import cpt

    model_dir = resolve_model(kit.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    new_ids = None
    if kit.embeddings == "new_rows":
        if not kit.base_tokenizer:
            raise ConfigError("embeddings: new_rows needs base_tokenizer (the tokenizer before expansion)")
        new_ids = list(range(len(AutoTokenizer.from_pretrained(resolve_model(kit.base_tokenizer))), len(tokenizer)))
    model = cpt.load_for_training(model_dir, kit.quantization, cfg, new_ids)
    blocks = cpt.pack_documents(tokenizer, cpt.training_text(kit.profile, cfg), kit.block_size)
    before = checksum(model)
    history = cpt.train(model, blocks, args.output_dir, cfg, args=args, save_to=Path(args.output_dir) / "adapter")
    return model, tokenizer, before, history


def _train_sft(kit, args, cfg: dict):
    """Stage 03's steps as in `sft.build`: LoRA policy, conversations with assistant-only labels, `sft.train`."""
    from . import sft

    model, tokenizer = sft.load_policy(resolve_model(kit.model_name_or_path), cfg)
    examples, _ = sft.training_examples(kit.profile, cfg)
    rows, _ = sft.encode_examples(tokenizer, examples, args.max_length)
    before = checksum(model)
    history = sft.train(model, tokenizer, rows, args.output_dir, cfg, args=args,
                        save_to=Path(args.output_dir) / "adapter")
    return model, tokenizer, before, history


def _train_dpo(kit, args, cfg: dict):
    """Stage 04's steps as in `dpo.build`: the SFT policy, preference pairs, `dpo.make_trainer`; resumes."""
    from . import dpo
    from .dpo import preferences as preference_data

    model, tokenizer = dpo.load_policy(resolve_model(kit.model_name_or_path))
    cfg["max_length"] = args.max_length  # the trainer's limit is the one pairs are measured against
    train_rows, heldout, description = preference_data.pairs_for(kit.profile, cfg, tokenizer)
    print(f"[zhllm] {description}")
    trainer = dpo.make_trainer(model, tokenizer, train_rows, heldout["reviews"], cfg, args.output_dir, args=args)
    before = checksum(trainer.model)
    found = any(Path(args.output_dir).glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if found else None)
    trainer.save_model(str(Path(args.output_dir) / "adapter"))
    return trainer.model, tokenizer, before, dpo.history(trainer)


TRAINERS = {"cpt": _train_cpt, "sft": _train_sft, "dpo": _train_dpo}


def run(stage: str, kit, args) -> dict:
    """Train a stage from a recipe's arguments; writes `adapter/`, `loss.json` and `ranks/rank-<i>.json`.

    Every process writes its rank record: world size and checksums of its trainable parameters before and
    after training. Under DDP all ranks must end with the same checksum (the replicas stayed in sync).
    """
    device = args.device  # asking for it sets up this process's device and its process group
    print(f"[zhllm] process {args.process_index} of {args.world_size} on {device}", flush=True)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if args.world_size != launched:
        raise ConfigError(f"{launched} processes were launched but this one is in a group of "
                          f"{args.world_size}: the processes did not join one training run (on a machine "
                          "without a GPU they need use_cpu: true, which the kit sets unless overridden)")
    model, tokenizer, before, history = TRAINERS[stage](kit, args, settings(kit, args))
    out = Path(args.output_dir)
    record = {"rank": args.process_index, "world_size": args.world_size,
              "checksum_before": before, "checksum_after": checksum(model)}
    (out / "ranks").mkdir(parents=True, exist_ok=True)
    (out / "ranks" / f"rank-{args.process_index}.json").write_text(json.dumps(record, indent=1))
    if args.process_index == 0:
        tokenizer.save_pretrained(out / "adapter")
        (out / "loss.json").write_text(json.dumps(history))
    return record
