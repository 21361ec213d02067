"""Training tokens per second and peak memory: plain HF + PEFT QLoRA vs the kit's fast configuration, one run.

    python bench/train_throughput.py                                  # tiny shape: baseline vs kit (CPU is fine)
    python bench/train_throughput.py --levers all                     # + each lever alone vs the baseline
    python bench/train_throughput.py --shape tinyllama-1.1b --levers all --steps 20    # on a GPU
    python bench/train_throughput.py --shape llama2-7b --mode dpo --steps 10             # on a GPU

Models are Llama-architecture with random weights, built from a config (no downloads): a tiny shape, and
TinyLlama-1.1B and Llama-2-7B shapes (GPU only). Data are synthetic Chinese-like token streams: characters of
a CJK vocabulary drawn with Zipf frequencies, example lengths log-normal (see `example_lengths`).

Every configuration runs in a fresh worker process (Liger and torch.compile patch modules process-wide, and a
fresh process gives each its own peak memory), the same examples in the same order, a fixed number of steps.
The first `--warmup` steps are left out of the timing. Tokens per second counts real tokens only: padding is
computed but not counted. The baseline is plain Hugging Face + PEFT QLoRA: `transformers.Trainer`, batches
padded to their longest example, the default attention (SDPA), the model's own loss, gradient checkpointing
(reentrant, the QLoRA default) and torch AdamW. Each lever changes one of those; the kit combines the levers
it adopts. A lever that cannot run here is reported as skipped with the reason, never estimated.
"""
import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# Hidden size, layers, heads, KV heads, MLP width, vocabulary; then the data and batch each shape trains on.
SHAPES = {
    "tiny": dict(hidden=128, layers=2, heads=4, kv_heads=4, mlp=384, vocab=2048,
                 max_length=256, median=64, batch_size=8),
    "tinyllama-1.1b": dict(hidden=2048, layers=22, heads=32, kv_heads=4, mlp=5632, vocab=32000,
                           max_length=2048, median=256, batch_size=8),
    "llama2-7b": dict(hidden=4096, layers=32, heads=32, kv_heads=32, mlp=11008, vocab=32000,
                      max_length=2048, median=256, batch_size=4),
}
BASELINE = dict(attn="sdpa", packing=False, checkpointing="reentrant", optim="adamw_torch", liger=False,
                sampling="random", compile=False)
LEVERS = {  # each is one change to the baseline
    "packing": dict(packing=True),                       # chat.pack_rows: examples back to back, position ids restart
    "flash_attention_2": dict(attn="flash_attention_2"),
    "eager_attention": dict(attn="eager"),               # reference: what the default SDPA already saves
    "liger": dict(liger=True),                           # RMSNorm, SwiGLU, RoPE, fused linear cross-entropy
    "no_checkpointing": dict(checkpointing="off"),
    "non_reentrant_checkpointing": dict(checkpointing="non_reentrant"),
    "paged_adamw_8bit": dict(optim="paged_adamw_8bit"),
    "bucketing": dict(sampling="group_by_length"),       # batches of similar length: less padding
    "torch_compile": dict(compile=True),
}
KIT_LEVERS = ["packing", "flash_attention_2", "liger", "paged_adamw_8bit"]
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
LORA_R, LORA_ALPHA, LEARNING_RATE = 16, 16, 2e-4  # unsloth's comparison: rank 16, all linear layers


def skip_reason(lever: str, mode: str) -> str | None:
    """Why a lever cannot be measured on this machine (None when it can)."""
    cuda = torch.cuda.is_available()
    if lever == "flash_attention_2":
        return None if cuda and importlib.util.find_spec("flash_attn") else "needs CUDA and flash-attn"
    if lever == "liger":
        return None if cuda and importlib.util.find_spec("liger_kernel") else "needs CUDA and liger-kernel"
    if lever == "paged_adamw_8bit":
        return None if cuda else "needs CUDA (bitsandbytes paged optimiser)"
    if lever == "packing" and mode == "dpo":
        return "TRL 1.16 disables padding-free DPO (it falls back to padding)"
    if lever == "bucketing" and mode == "dpo":
        return "DPO rows have no input_ids for the length-grouped sampler"
    return None


# ---- data ------------------------------------------------------------------------------------------------

def char_tokenizer(vocab_size: int):
    """One token per character over a CJK vocabulary (from U+4E00), with <unk> <s> </s> <pad>; pad != EOS."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(0x4E00 + i) for i in range(vocab_size - len(SPECIALS))]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIALS + chars)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def example_lengths(n: int, median: int, sigma: float, max_length: int, seed: int) -> list[int]:
    """Example lengths in tokens: log-normal with this median and sigma, cut to [16, max_length].

    The kit's own tiny instruction set is log-normal with sigma 0.33 (in characters); hub sets mix one-line
    answers with essays, so the default sigma is wider (0.8: the 90th percentile is 2.8x the median).
    """
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(math.log(median), sigma, n).round(), 16, max_length).astype(int).tolist()


def token_stream(rng, n: int, vocab_size: int) -> list[int]:
    """n character ids with Zipf (1/rank) frequencies, as characters in Chinese text roughly are."""
    ranks = np.arange(1, vocab_size - len(SPECIALS) + 1)
    p = (1 / ranks) / (1 / ranks).sum()
    return (rng.choice(len(ranks), size=n, p=p) + len(SPECIALS)).tolist()


def sft_rows(lengths: list[int], vocab_size: int, seed: int) -> list[dict]:
    """`<s> prompt reply </s>` rows; labels -100 on <s> and the prompt (the first 40%), as the kit's SFT data."""
    rng, rows = np.random.default_rng(seed), []
    for length in lengths:
        ids = [1, *token_stream(rng, length - 2, vocab_size), 2]
        prompt = max(1, int(0.4 * length))
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return rows


def dpo_rows(lengths: list[int], vocab_size: int, seed: int) -> list[dict]:
    """prompt / chosen / rejected strings: the prompt 40% of a length, each completion the rest, +-30%."""
    rng, rows = np.random.default_rng(seed), []
    text = lambda n: "".join(chr(0x4E00 + i - len(SPECIALS)) for i in token_stream(rng, n, vocab_size))  # noqa: E731
    for length in lengths:
        prompt = max(4, int(0.4 * length))
        rest = max(4, length - prompt - 1)
        rows.append({"prompt": text(prompt), "chosen": text(int(rest * rng.uniform(0.7, 1.3))),
                     "rejected": text(int(rest * rng.uniform(0.7, 1.3)))})
    return rows


def padding_share(lengths: list[int], batch_size: int) -> float:
    """Share of computed tokens that are padding when batches (in order) are padded to their longest."""
    batches = [lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
    return 1 - sum(lengths) / sum(max(b) * len(b) for b in batches)


# ---- model -----------------------------------------------------------------------------------------------

def build_model_dir(shape: str, folder: Path) -> Path:
    """Random-weight model of `shape` and its tokenizer saved in `folder` (once), in the training dtype."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from zhllm import runtime
    from zhllm.modeling import tiny_llama

    if (folder / "config.json").exists():
        return folder
    hf_logging.disable_progress_bar()
    s = SHAPES[shape]
    if shape == "tiny":
        model = tiny_llama(s["vocab"], s["hidden"], s["layers"], s["heads"], s["mlp"], s["max_length"])
    else:  # built on the GPU in bf16/fp16: a 7B model in fp32 on the CPU takes minutes to initialise
        config = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                             num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                             intermediate_size=s["mlp"], max_position_embeddings=4096, rms_norm_eps=1e-5,
                             tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=3)
        with torch.device(runtime.device()):
            model = LlamaForCausalLM._from_config(config, dtype=runtime.dtype_for())
    model.to(runtime.dtype_for()).save_pretrained(folder)
    char_tokenizer(s["vocab"]).save_pretrained(folder)
    del model
    torch.cuda.empty_cache()  # the workers need the GPU memory this process would otherwise keep cached
    return folder


def enable_checkpointing(model, mode: str) -> None:
    """Gradient checkpointing: "reentrant" (the QLoRA default), "non_reentrant" or "off".

    Reentrant checkpointing only back-propagates into a segment whose input requires grad, and a frozen
    embedding's output does not: hence `enable_input_require_grads`.
    """
    if mode == "off":
        return
    model.enable_input_require_grads()
    model.gradient_checkpointing_enable({"use_reentrant": mode == "reentrant"})


def load_model(model_dir: Path, config: dict, quantization: str | None):
    """The kit's loader (4-bit NF4 + double quantisation), the attention of `config`, checkpointing set."""
    from peft import prepare_model_for_kbit_training

    from zhllm.modeling import load_causal_lm

    model = load_causal_lm(str(model_dir), quantization=quantization)
    model.set_attn_implementation(config["attn"])
    if quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    enable_checkpointing(model, config["checkpointing"])
    return model


# ---- one configuration (runs in a worker process) --------------------------------------------------------

class StepClock:
    """Trainer callback: wall time from the end of the warm-up steps to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, None, None

    def __getattr__(self, name):  # every other callback event is a no-op
        return lambda *a, **k: None

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


class CountingCollator:
    """Wraps a collator and records, per batch, real tokens (the attention mask's, else the examples' lengths)
    and computed tokens (the batch's cells, padding included)."""

    def __init__(self, collate):
        self.collate, self.real, self.computed = collate, [], []

    def __call__(self, rows):
        batch = self.collate(rows)
        ids = batch["input_ids"]
        self.real.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch
                         else sum(len(row["input_ids"]) for row in rows))
        self.computed.append(ids.numel())
        return batch


def training_args(config: dict, job: dict, out: str) -> dict:
    """TrainingArguments fields shared by SFT and DPO: the levers that are trainer settings."""
    from zhllm import runtime

    dtype = runtime.dtype_for()
    return dict(output_dir=out, max_steps=job["steps"], per_device_train_batch_size=job["batch_size"],
                learning_rate=LEARNING_RATE, optim=config["optim"], use_liger_kernel=config["liger"],
                torch_compile=config["compile"], train_sampling_strategy=config["sampling"],
                logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, seed=0, data_seed=0,
                dataloader_num_workers=0, remove_unused_columns=False, use_cpu=not torch.cuda.is_available(),
                fp16=dtype == torch.float16, bf16=dtype == torch.bfloat16)


def sft_trainer(config: dict, job: dict, out: str):
    """`transformers.Trainer` on a LoRA model with the kit's collator (padded, or packed rows with `packing`)."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from zhllm import chat, cpt

    tokenizer = AutoTokenizer.from_pretrained(job["model_dir"])
    model = load_model(Path(job["model_dir"]), config, job["quantization"])
    model = get_peft_model(model, cpt.lora_config(LORA_R, LORA_ALPHA, embeddings="none"))
    rows = sft_rows(job["lengths"], len(tokenizer), seed=1)
    return Trainer(model=model, args=TrainingArguments(**training_args(config, job, out)),
                   train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                   data_collator=chat.collator(tokenizer, packing=config["packing"]))


def dpo_trainer(config: dict, job: dict, out: str):
    """TRL's DPOTrainer as the kit's stage 04 runs it: LoRA added by TRL, the reference = adapter disabled."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from zhllm import cpt

    tokenizer = AutoTokenizer.from_pretrained(job["model_dir"])
    model = load_model(Path(job["model_dir"]), config, job["quantization"])
    args = DPOConfig(**training_args(config, job, out), max_length=job["max_length"], beta=0.1)
    rows = dpo_rows(job["lengths"], len(tokenizer), seed=1)
    return DPOTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
                      peft_config=cpt.lora_config(LORA_R, LORA_ALPHA, embeddings="none"))


def run_config(job: dict) -> dict:
    """Train one configuration for `steps` steps; real and computed tokens, timed seconds, peak memory, losses."""
    from zhllm import runtime

    runtime.set_threads()
    runtime.seed_everything(0)
    config = {**BASELINE, **job["config"]}
    with tempfile.TemporaryDirectory() as out:
        trainer = (dpo_trainer if job["mode"] == "dpo" else sft_trainer)(config, job, out)
        trainer.data_collator = counter = CountingCollator(trainer.data_collator)
        clock = StepClock(job["warmup"])
        trainer.add_callback(clock)
        trainer.train()
    timed = slice(job["warmup"], job["steps"])  # batch k is step k + 1
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"real": sum(counter.real[timed]), "computed": sum(counter.computed[timed]),
            "seconds": clock.end - clock.start,
            "peak_mb": runtime.peak_memory_mb(), "first_loss": losses[0], "last_loss": losses[-1]}


def worker(job: dict) -> dict:
    """Run `job` in a fresh Python process; its result, or {"error": last line of its output}."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    lines = (done.stderr or done.stdout).strip().splitlines()
    return {"error": lines[-1] if lines else f"exit code {done.returncode}"}


# ---- the run: configurations side by side ----------------------------------------------------------------

def plan(levers: list[str], mode: str) -> list[tuple[str, dict | str]]:
    """(name, config changes) per configuration, or (name, skip reason); baseline first, kit last."""
    runs = [("baseline", {})]
    for lever in levers:
        reason = skip_reason(lever, mode)
        runs.append((lever, f"skipped: {reason}" if reason else LEVERS[lever]))
    kit = [lever for lever in KIT_LEVERS if not skip_reason(lever, mode)]
    runs.append(("kit: " + (" + ".join(kit) or "(no lever available)"),
                 {k: v for lever in kit for k, v in LEVERS[lever].items()}))
    return runs


def measure(runs: list[tuple[str, dict | str]], job: dict, repeats: int) -> dict[str, dict | str]:
    """Every configuration once per pass, `repeats` passes; the fastest run of each counts.

    Passes alternate the configurations, so a burst of load from another process on a shared machine
    slows one run of each rather than every run of one.
    """
    best = {}
    for _ in range(repeats):
        for name, config in runs:
            result = config if isinstance(config, str) else worker({**job, "config": config})
            if name not in best or _seconds(result) < _seconds(best[name]):
                best[name] = result
    return best


def _seconds(result: dict | str) -> float:
    return result["seconds"] if isinstance(result, dict) and "seconds" in result else math.inf


def header(args, lengths: list[int], quantization: str | None) -> str:
    """What is measured: shape, device, weights, data, timing window."""
    from zhllm import runtime

    s = SHAPES[args.shape]
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({runtime.set_threads()} threads)"
    weights = "4-bit NF4 + double quant (bitsandbytes)" if quantization else "unquantised"
    data = (f"data: {len(lengths)} examples, log-normal lengths (median {args.median}, sigma {args.sigma}, cut "
            f"to [16, {s['max_length']}])")
    if args.mode == "sft":
        data += (f"; padding to the longest in each batch of {args.batch_size} wastes "
                 f"{padding_share(lengths, args.batch_size):.0%} of the computed tokens")
    return "\n".join([
        f"shape {args.shape}: hidden {s['hidden']}, {s['layers']} layers, vocab {s['vocab']}, random weights",
        f"mode {args.mode} | device {dev} | weights {weights} | compute {str(runtime.dtype_for()).split('.')[1]}"
        f" | LoRA r={LORA_R} on all linear layers", data,
        f"timed: steps {args.warmup + 1}..{args.steps} of {args.steps}; tokens/s counts real tokens only",
    ])


def row(name: str, result: dict | str, base: dict | None) -> str:
    """One line of the table."""
    if isinstance(result, str):
        return f"{name:<46} {result}"
    if "error" in result:
        return f"{name:<46} failed: {result['error'][:150]}"
    rate = result["real"] / result["seconds"]
    line = (f"{name:<46} {result['real']:>9} {result['computed']:>9} {result['seconds']:>8.2f} {rate:>9.1f} "
            f"{result['peak_mb']:>9.0f} {result['first_loss']:>6.2f}->{result['last_loss']:<6.2f}")
    if base and "error" not in base:
        line += f" {rate / (base['real'] / base['seconds']):>6.2f}x {result['peak_mb'] / base['peak_mb']:>6.2f}x"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="tiny")
    parser.add_argument("--mode", choices=["sft", "dpo"], default="sft")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1, help="first steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=1, help="passes over all configurations; fastest counts")
    parser.add_argument("--lever", action="append", default=[], choices=list(LEVERS), help="repeatable")
    parser.add_argument("--levers", choices=["all"], help="every lever alone vs the baseline")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--median", type=int, help="median example length in tokens (default: per shape)")
    parser.add_argument("--sigma", type=float, default=0.8, help="log-normal sigma of example lengths")
    parser.add_argument("--quantization", choices=["4bit", "none"], default="4bit")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "zhllm-bench",
                        help="where the random-weight models are saved (reused across runs)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run_config(json.loads(args.worker))))
        return
    if args.shape != "tiny" and not torch.cuda.is_available():
        parser.error(f"--shape {args.shape} needs a CUDA GPU; on CPU only --shape tiny runs")
    if args.warmup >= args.steps:
        parser.error("--steps must exceed --warmup: at least one step is timed")
    s = SHAPES[args.shape]
    args.batch_size = args.batch_size or s["batch_size"]
    args.median = args.median or s["median"]
    quantization = None if args.quantization == "none" else args.quantization
    lengths = example_lengths(args.steps * args.batch_size, args.median, args.sigma, s["max_length"], seed=0)
    model_dir = build_model_dir(args.shape, args.cache / args.shape)
    job = dict(mode=args.mode, steps=args.steps, warmup=args.warmup, batch_size=args.batch_size,
               max_length=s["max_length"], lengths=lengths, model_dir=str(model_dir), quantization=quantization)
    print(header(args, lengths, quantization))
    print(f"\n{'configuration':<46} {'real tok':>9} {'computed':>9} {'seconds':>8} {'real tok/s':>9} "
          f"{'peak MB':>9} {'loss':>14} {'speed':>7} {'memory':>7}", flush=True)
    levers = list(LEVERS) if args.levers == "all" else args.lever
    results = measure(plan(levers, args.mode), job, args.repeats)
    base, kit = results["baseline"], list(results.values())[-1]
    for name, result in results.items():
        print(row(name, result, None if name == "baseline" else base))
    memory = "GPU max_memory_allocated" if torch.cuda.is_available() else "CPU peak RSS of the worker process"
    print(f"\npeak MB = {memory}; speed and memory are ratios to the baseline, measured in this run"
          f" (fastest of {args.repeats} alternating passes)")
    if "error" not in base and "error" not in kit:
        print(f"kit / baseline: {kit['real'] / kit['seconds'] / (base['real'] / base['seconds']):.2f}x tokens/s, "
              f"{kit['peak_mb'] / base['peak_mb']:.2f}x peak memory")


if __name__ == "__main__":
    main()
