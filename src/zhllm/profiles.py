"""Profiles: one notebook, three machines — `tiny` (CPU, offline), `colab` (one T4), `full` (multi-GPU).

A profile is only a name; each stage keeps its own per-profile settings in a small dict and reads
them with `pick`, so adding a stage never touches this file.
"""
import os

from .errors import ConfigError

PROFILES = ("tiny", "colab", "full")
ENV_VAR = "ZHLLM_PROFILE"
SMOKE_VAR = "ZHLLM_SMOKE"

# A smoke run: the colab or full profile's code path (hub loaders, 4-bit, the real recipes) at sizes a CPU
# finishes in a minute per stage. With $ZHLLM_SMOKE=1, `pick` replaces these keys wherever a stage has them;
# every other setting stays the profile's own. The tests run the colab notebooks this way against a local
# hub mirror (`make test-colab`); a smoke run measures nothing.
SMOKE = dict(
    # sizes of text, rows and vocabularies
    block_size=128, max_length=256, eval_max_chars=4_000, train_chars=30_000, hub_rows=24, train_pairs=24,
    heldout_pairs=8, judge_prompts=8, eval_per_task=4, exam_per_subject=5, n_new=1_000, zh_sp_vocab=5_000,
    zh_docs=3_000, zh_heldout_docs=100, en_docs=100, kl_tokens=1_024, kl_len=128, bl_new=300, bl_docs=300,
    injected_per_kind=5, raw_docs=5_000, raw_scored=64, clusters=4, select=40, real_limit=2, cot_questions=2,
    review_pairs=24,
    # steps, batches and generation lengths
    max_steps=3, sft_steps=3, warmup_steps=1, batch_size=2, grad_accum=1, sft_batch=2, max_new_tokens=16,
    cot_new_tokens=16, n_boot=50, n_boot_law=20,
)


def detect() -> str:
    """The profile to use when none is set: `colab` when a CUDA GPU is present, else `tiny`."""
    import torch

    return "colab" if torch.cuda.is_available() else "tiny"


def current(name: str | None = None) -> str:
    """The active profile: `name` if given, else $ZHLLM_PROFILE, else auto-detected."""
    name = name or os.environ.get(ENV_VAR, "").strip().lower() or detect()
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}: set {ENV_VAR} to one of {', '.join(PROFILES)} "
                          "(or leave it unset to auto-detect)")
    return name


def pick(table: dict, profile: str | None = None):
    """The entry of a per-profile settings table for the active profile.

    A table may leave out `full`; it then falls back to `colab` (same recipe, bigger machine). Under
    $ZHLLM_SMOKE the colab and full entries come back with the `SMOKE` sizes.
    """
    name = current(profile)
    if name in table:
        entry = table[name]
    elif name == "full" and "colab" in table:
        entry = table["colab"]
    else:
        raise ConfigError(f"no settings for profile {name!r}; this table has {sorted(table)}")
    if smoke() and name != "tiny":
        entry = {**entry, **{k: v for k, v in SMOKE.items() if k in entry}}
    return entry


def smoke() -> bool:
    """True when $ZHLLM_SMOKE asks for smoke sizes (see `SMOKE`)."""
    return os.environ.get(SMOKE_VAR, "").strip().lower() not in ("", "0", "false", "no")

