"""Runtime: device, dtype, threads, seeds and the version banner every notebook prints."""
import os
import platform
import random

import numpy as np
import torch


def device() -> torch.device:
    """CUDA when present, else CPU (the tiny profile is tuned for CPU)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype_for(dev: torch.device | str | None = None) -> torch.dtype:
    """Training dtype: fp32 on CPU, bf16 on compute capability >= 8.0, fp16 below (T4 = 7.5).

    We decide by compute capability, not `torch.cuda.is_bf16_supported()`, which answers True on a
    T4 where bf16 is emulated and slow.
    """
    dev = torch.device(dev) if dev is not None else device()
    if dev.type != "cuda":
        return torch.float32
    major, _ = torch.cuda.get_device_capability(dev)
    return torch.bfloat16 if major >= 8 else torch.float16


def set_threads(n: int | None = None) -> int:
    """Pin torch's CPU threads ($ZHLLM_THREADS, else all cores) so runs are repeatable and fast."""
    n = n or int(os.environ.get("ZHLLM_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices) so a stage run twice gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def begin_stage(settings: dict, profile: str | None = None) -> tuple[str, dict]:
    """The resolved profile and its settings, with threads pinned and seeds set: how every build starts."""
    from .profiles import current, pick

    profile = current(profile)
    cfg = pick(settings, profile)
    set_threads()
    seed_everything(cfg.get("seed", 0))
    return profile, cfg


def peak_memory_mb() -> float:
    """Peak memory so far: the GPU's allocator peak on CUDA, else this process's peak resident set."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def versions() -> dict:
    """Versions of the libraries whose APIs the kit depends on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def banner(profile: str | None = None) -> str:
    """One block of text: versions, device, memory, dtype and profile; printed by every notebook."""
    from .profiles import current

    dev = device()
    lines = [f"{k:<13}{v}" for k, v in versions().items()]
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        lines.append(f"{'device':<13}{props.name} (cc {props.major}.{props.minor}, "
                     f"{props.total_memory / 2**30:.1f} GiB)")
    else:
        lines.append(f"{'device':<13}cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)")
    lines.append(f"{'dtype':<13}{str(dtype_for(dev)).replace('torch.', '')}")
    lines.append(f"{'profile':<13}{current(profile)}")
    return "\n".join(lines)


STRICT_VAR = "ZHLLM_STRICT"


def check(ok: bool, what: str, why: str = "") -> bool:
    """Print a tick or a cross for an outcome a notebook expects; under $ZHLLM_STRICT=1 a cross fails.

    For results a Try-it may legitimately change (a knob turned, fewer steps): the student reads the cross
    and its reason and carries on; `make test` sets ZHLLM_STRICT=1, so the shipped settings must meet them.
    Invariants that no knob may break stay plain asserts.
    """
    print(f"{'✓' if ok else '✗'} {what}" + ("" if ok or not why else f" — {why}"))
    if not ok and os.environ.get(STRICT_VAR, "") == "1":
        raise AssertionError(f"{what} ({STRICT_VAR}=1: expected outcomes must hold)")
    return bool(ok)
