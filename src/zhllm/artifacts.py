"""Stage artifacts under `runs/<profile>/<stage>/`, with `metrics.json`; missing stages are built on demand.

A stage directory counts as built once its `metrics.json` exists. Builds happen in a temporary
directory under a file lock and are moved into place at the end, so two test workers (or a
notebook and a test) asking for the same stage at once never see half an artifact.
"""
import importlib
import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from . import shipped
from .errors import ConfigError, StageError
from .profiles import current

STAGES = ("base", "tokenizer", "cpt", "sft", "dpo", "scaling", "ceval", "curation")

# stage -> "module:function"; the function takes (out_dir: Path, profile: str) and returns the metrics
# dict it also wrote. Stages not listed here are not wired yet.
BUILDERS = {
    "base": "zhllm.base:build",
    "tokenizer": "zhllm.tokenizer:build",
    "cpt": "zhllm.cpt:build",
    "sft": "zhllm.sft:build",
    "dpo": "zhllm.dpo:build",
    "scaling": "zhllm.scaling:build",
    "ceval": "zhllm.ceval:build",
    "curation": "zhllm.curation:build",
}

# stage -> the stages its notebook (and its builder) load; "start" is the model stages 03-07 start from
NEEDS = {"base": (), "tokenizer": ("base",), "cpt": ("base", "tokenizer"), "sft": ("start",), "dpo": ("sft",),
         "scaling": (), "ceval": ("base",), "curation": ("start",)}

_LOCKS: dict[str, FileLock] = {}


def runs_root() -> Path:
    """$ZHLLM_RUNS, else `runs/` of the source checkout the kit is imported from, else ./runs."""
    if os.environ.get("ZHLLM_RUNS"):
        return Path(os.environ["ZHLLM_RUNS"]).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists() and (checkout / "src" / "zhllm").is_dir():
        return checkout / "runs"
    return Path.cwd() / "runs"


START_VAR = "ZHLLM_START_FROM"


def start_from(profile: str | None = None) -> str:
    """Where stages 03-07 start: `shipped` (the tiny profile's default, `models/tiny-zh-v1`) or `cpt`.

    `cpt` is the stage-02 model built on this machine in minutes; $ZHLLM_START_FROM=cpt switches the
    tiny profile back to it. Its runs then live in `runs/tiny-from-cpt/`, so the two never mix.
    """
    profile = current(profile)
    value = os.environ.get(START_VAR, "").strip().lower() or ("shipped" if profile == "tiny" else "cpt")
    if value not in ("shipped", "cpt"):
        raise ConfigError(f"${START_VAR} must be 'shipped' or 'cpt', not {value!r}")
    if value == "shipped" and profile != "tiny":
        raise ConfigError(f"${START_VAR}=shipped: the shipped checkpoint is the tiny profile's; "
                          f"the {profile} profile starts from its own stage 02 (unset ${START_VAR})")
    return value


def start_model_dir(profile: str | None = None) -> Path:
    """The model stages 03-07 fine-tune or score: the verified shipped checkpoint, or stage 02's model."""
    if start_from(profile) == "shipped":
        return shipped.model_dir()
    return ensure("cpt", profile) / "model"


def stage_dir(stage: str, profile: str | None = None) -> Path:
    if stage not in STAGES:
        raise StageError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    profile = current(profile)
    folder = f"{profile}-from-cpt" if profile == "tiny" and start_from(profile) == "cpt" else profile
    return runs_root() / folder / stage


def checkpoint_dir(stage: str, profile: str | None = None) -> Path:
    """Where a stage's training checkpoints live until the stage completes, so a rerun resumes."""
    return stage_dir(stage, profile).parent / ".checkpoints" / stage


def clear_checkpoints(stage: str, profile: str | None = None) -> None:
    shutil.rmtree(checkpoint_dir(stage, profile), ignore_errors=True)


def is_built(stage: str, profile: str | None = None) -> bool:
    return (stage_dir(stage, profile) / "metrics.json").exists()


def builds_first(stage: str, profile: str | None = None) -> list[str]:
    """The earlier stages that running `stage` builds first because they are missing, in pipeline order."""
    missing = []

    def visit(name):
        for need in NEEDS[name]:
            if need == "start":
                if start_from(profile) == "shipped":
                    continue
                need = "cpt"
            if not is_built(need, profile) and need not in missing:
                visit(need)
                missing.append(need)

    visit(stage)
    return missing


def describe_builds(stage: str, profile: str | None = None) -> str:
    """One line for the top of a notebook: which earlier stages it will build before its own work."""
    missing = builds_first(stage, profile)
    if not missing:
        return f"every stage {stage!r} loads is built in {stage_dir(stage, profile).parent}"
    names = ", ".join(f"{s} (notebook {STAGES.index(s):02d})" for s in missing)
    return (f"builds first, since they are not in {stage_dir(stage, profile).parent} yet: {names}; each takes "
            "about as long as its own notebook. On Colab the install cell keeps runs on Google Drive.")


def _lock(stage: str, profile: str | None) -> FileLock:
    path = stage_dir(stage, profile).with_name(f".{stage}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    # one lock object per path, so the same process may re-enter it (ensure -> building)
    return _LOCKS.setdefault(str(path), FileLock(str(path)))


def write_metrics(out_dir: Path, metrics: dict) -> Path:
    """Write a flat {name: number} dict as `metrics.json`; anything else is a bug in the stage."""
    bad = {k: v for k, v in metrics.items()
           if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float))
           or (isinstance(v, float) and not math.isfinite(v))}
    if bad:
        raise StageError(f"metrics must be flat, named, finite numbers; offending entries: {bad}")
    path = Path(out_dir) / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def read_metrics(stage: str, profile: str | None = None) -> dict:
    path = stage_dir(stage, profile) / "metrics.json"
    if not path.exists():
        raise StageError(f"stage {stage!r} has no metrics at {path}; run its notebook or "
                         f"`zhllm demo`, or call zhllm.artifacts.ensure({stage!r})")
    return json.loads(path.read_text())


@contextmanager
def building(stage: str, profile: str | None = None):
    """Yield an empty temporary directory; on success it replaces `runs/<profile>/<stage>/`.

    The block must write `metrics.json` (use `write_metrics`); on error nothing is replaced.
    """
    final = stage_dir(stage, profile)
    with _lock(stage, profile):
        tmp = final.with_name(f".{stage}.building-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
            if not (tmp / "metrics.json").exists():
                raise StageError(f"stage {stage!r} finished without writing metrics.json")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)


def ensure(stage: str, profile: str | None = None, force: bool = False) -> Path:
    """The stage's directory, building it (and, through its builder, earlier stages) when missing."""
    profile = current(profile)
    if not force and is_built(stage, profile):
        return stage_dir(stage, profile)
    if stage not in BUILDERS:
        raise StageError(f"stage {stage!r} has no builder yet; wired stages: {', '.join(BUILDERS)}")
    module, func = BUILDERS[stage].split(":")
    build = getattr(importlib.import_module(module), func)
    with _lock(stage, profile):
        if not force and is_built(stage, profile):  # another worker built it while we waited
            return stage_dir(stage, profile)
        print(f"[zhllm] building stage {stage!r} for profile {profile!r} ...", flush=True)
        with building(stage, profile) as tmp:
            build(tmp, profile)
    return stage_dir(stage, profile)
