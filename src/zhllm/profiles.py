"""Profiles: one notebook, three machines — `tiny` (CPU, offline), `colab` (one T4), `full` (multi-GPU).

A profile is only a name; each stage keeps its own per-profile settings in a small dict and reads
them with `pick`, so adding a stage never touches this file.
"""
import os

from .errors import ConfigError

PROFILES = ("tiny", "colab", "full")
ENV_VAR = "ZHLLM_PROFILE"


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

    A table may leave out `full`; it then falls back to `colab` (same recipe, bigger machine).
    """
    name = current(profile)
    if name in table:
        return table[name]
    if name == "full" and "colab" in table:
        return table["colab"]
    raise ConfigError(f"no settings for profile {name!r}; this table has {sorted(table)}")
