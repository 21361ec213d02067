"""Runtime: device, dtype, threads, seeds and the version banner every notebook prints."""
import os
import platform
import random

import numpy as np
import torch

from .errors import ConfigError


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
    from .profiles import current, smoke

    dev = device()
    lines = [f"{k:<13}{v}" for k, v in versions().items()]
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        lines.append(f"{'device':<13}{props.name} (cc {props.major}.{props.minor}, "
                     f"{props.total_memory / 2**30:.1f} GiB)")
    else:
        lines.append(f"{'device':<13}cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)")
    lines.append(f"{'dtype':<13}{str(dtype_for(dev)).replace('torch.', '')}")
    lines.append(f"{'profile':<13}{current(profile)}" + (" (smoke sizes: $ZHLLM_SMOKE)" if smoke() else ""))
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


# ---- memory plan (T4: 15 GiB) ---------------------------------------------------------------------

GIB = 2**30
T4_BUDGET_GIB = 14.5  # of a T4's 15 GiB, leaving room for the CUDA context and allocator slack
# TinyLlama-1.1B (its config.json) with stage 01's ~20k new tokens: 32,000 + 20,000 rounded up to a multiple
# of 64, plus the <pad> row stage 03 adds (again rounded to 64)
TINYLLAMA_SHAPE = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                       num_key_value_heads=4, vocab_size=52096)
LORA_TARGETS = 7  # q, k, v, o, gate, up, down
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits + an 8-bit absmax per 64 weights + an fp32 one per 256 absmax


def memory_plan(shape: dict, *, quantization: str | None, lora_r: int, embeddings: str, batch_size: int,
                seq_len: int, gradient_checkpointing: bool, compute_dtype: torch.dtype = torch.float16) -> dict:
    """Peak training memory in bytes, by component, of a Llama-shaped model with LoRA on every linear layer.

    weights: frozen base (NF4 linear layers; embeddings and norms in fp32, as prepare_model_for_kbit_training
    leaves them; or every weight in `compute_dtype`). trainable: LoRA and, with embeddings="full", the trainable
    copies of the embedding and output matrices, each with an fp32 weight, gradient and two AdamW moments
    (16 bytes). activations: what autograd keeps per layer and token (6h + 2 kv + 4 intermediate + 7 r values
    in the compute dtype, the attention's log-sum-exp and two norm scales in fp32; tests/test_memory.py
    measures it in fp32). 4-bit under fp16/bf16 autocast adds what the upcast embeddings cause: the two norm
    inputs stay fp32, and each LoRA A saves its own cast of its input (q, k, v share one input, gate and up
    another: 3 more copies). With gradient checkpointing: each layer's fp32 input plus one layer recomputed.
    logits: batch x seq x vocab, in the compute dtype, their fp32 log-softmax and its gradient.
    """
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    heads, vocab = shape["num_attention_heads"], shape["vocab_size"]
    kv = h // heads * shape["num_key_value_heads"]
    b = torch.finfo(compute_dtype).bits // 8
    linear = layers * (2 * h * h + 2 * h * kv + 3 * h * i)
    other = 2 * vocab * h + (2 * layers + 1) * h  # embeddings, output matrix, norms
    weights = linear * NF4_BYTES + other * 4 if quantization == "4bit" else (linear + other) * b
    lora = layers * lora_r * (4 * h + 2 * (h + kv) + 3 * (h + i))  # q, o; k, v; gate, up, down
    trainable = lora + (2 * vocab * h if embeddings == "full" else 0)
    tokens = batch_size * seq_len
    per_layer = tokens * (b * (6 * h + 2 * kv + 4 * i + LORA_TARGETS * lora_r) + 4 * (heads + 2))
    if quantization == "4bit" and b < 4:  # fp32 residual stream under fp16/bf16 autocast
        per_layer += tokens * ((4 - b) * 2 * h + b * 3 * h)
    kept = tokens * h * 4 * layers + per_layer if gradient_checkpointing else per_layer * layers
    plan = {"weights": weights, "trainable_weights_grads_adam": trainable * 16,
            "activations": kept + tokens * h * (4 + b),  # + the final norm's input and the output layer's
            "logits": tokens * vocab * (b + 8)}
    plan["total"] = sum(plan.values())
    return plan


def stage_memory_plan(stage: str, cfg: dict, shape: dict = TINYLLAMA_SHAPE,
                      compute_dtype: torch.dtype = torch.float16) -> dict:
    """`memory_plan` for a training stage's settings dict (cpt, sft or dpo SETTINGS[profile]), as it trains.

    cpt packs blocks of `block_size`; sft packs up to `max_length` tokens per example and checkpoints when
    4-bit; dpo runs the chosen and the rejected reply of each pair together on the unquantized policy.
    """
    if stage == "cpt":
        run = dict(quantization=cfg["quantization"], batch_size=cfg["batch_size"], seq_len=cfg["block_size"],
                   gradient_checkpointing=cfg.get("gradient_checkpointing", False))
    elif stage == "sft":
        run = dict(quantization=cfg["quantization"], batch_size=cfg["batch_size"], seq_len=cfg["max_length"],
                   gradient_checkpointing=bool(cfg["quantization"]))
    elif stage == "dpo":
        run = dict(quantization=None, batch_size=2 * cfg["batch_size"], seq_len=cfg["max_length"],
                   gradient_checkpointing=cfg["gradient_checkpointing"])
    else:
        raise ConfigError(f"no memory plan for stage {stage!r}; stages that train: cpt, sft, dpo")
    return memory_plan(shape, lora_r=cfg["lora_r"], embeddings=cfg["embeddings"], compute_dtype=compute_dtype,
                       **run)


def describe_memory_plan(plan: dict) -> str:
    """The plan as lines of GiB, for a notebook cell."""
    return "\n".join(f"{name:<30}{value / GIB:6.2f} GiB" for name, value in plan.items())
