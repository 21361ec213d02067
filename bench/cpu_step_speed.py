"""Seconds per training step on a CPU: TRL's defaults vs the kit's CPU levers, side by side in one run.

    python bench/cpu_step_speed.py                    # SFT: 30 steps per run, 2 rounds
    python bench/cpu_step_speed.py --mode dpo --steps 12
    python bench/cpu_step_speed.py --steps 50 --rounds 3

SFT: stage 03's tiny settings on the shipped model (`models/tiny-zh-v1`) and its training rows. DPO: stage 04's
tiny settings on stage 03's model (built first if missing) and its preference pairs. A fresh LoRA for each run,
same seed; the runs of a mode differ only in
- the LM head: TRL's fused one (a Triton kernel on GPUs, tiles of torch ops on a CPU) or the logits of the labelled
  positions only (`modeling.labelled_logits_head`, which the kit applies on a CPU);
- SFT packing: TRL's padding-free collator (the whole batch in one line) or `chat.pack_rows` (rows as wide as
  the batch's longest example).
Rounds repeat every arm in the same order, so a machine that slows down slows all of them. Prints each run, the
median seconds per step of each arm, its speed-up over TRL's defaults, and the last logged loss of each (the
arms compute the same loss on the same batches, so they agree up to floating-point order).
"""
import argparse
import statistics
import tempfile
import time

from datasets import Dataset
from trl import DPOTrainer, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from zhllm import artifacts, chat, cpt, dpo, runtime, sft
from zhllm.dpo import preferences
from zhllm.modeling import labelled_logits_head

ARMS = {  # mode: {name: (labelled logits, packing by chat.pack_rows)}
    "sft": {"TRL defaults: fused LM head, one padding-free line": (False, False),
            "fused LM head, packed rows": (False, True),
            "labelled logits, one padding-free line": (True, False),
            "kit on CPU: labelled logits, packed rows": (True, True)},
    "dpo": {"TRL defaults: fused LM head": (False, None),
            "kit on CPU: labelled logits": (True, None)},
}


def sft_trainer(rows_packed: bool, steps: int, out: str, cache: dict):
    cfg = dict(sft.SETTINGS["tiny"], max_steps=steps)
    model, tokenizer = sft.load_policy(artifacts.start_model_dir("tiny"), cfg)
    if "rows" not in cache:
        examples, _ = sft.training_examples("tiny", cfg)
        cache["rows"], _ = sft.encode_examples(tokenizer, examples, cfg["max_length"])
    collator = (chat.collator(tokenizer, packing=True) if rows_packed
                else DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True))
    return SFTTrainer(model=model, args=sft.training_args(cfg, out), processing_class=tokenizer,
                      train_dataset=Dataset.from_list(cache["rows"]), data_collator=collator)


def dpo_trainer(steps: int, out: str, cache: dict):
    cfg = dict(dpo.SETTINGS["tiny"], max_steps=steps)
    model, tokenizer = dpo.load_policy(artifacts.ensure("sft", "tiny") / "model")
    if "rows" not in cache:
        cache["rows"], _, _ = preferences.pairs_for("tiny", cfg, tokenizer)
    runtime.seed_everything(cfg["seed"])
    return DPOTrainer(model=model, args=dpo.training_args(cfg, out), processing_class=tokenizer,
                      train_dataset=Dataset.from_list(cache["rows"]),
                      peft_config=cpt.lora_config(cfg["lora_r"], cfg["lora_alpha"], cfg["embeddings"]))


def run(mode: str, labelled_logits: bool, rows_packed: bool, steps: int, cache: dict) -> tuple[float, float]:
    """Seconds per step and the last logged loss of `steps` steps of one arm."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = sft_trainer(rows_packed, steps, tmp, cache) if mode == "sft" else dpo_trainer(steps, tmp, cache)
        if labelled_logits:
            labelled_logits_head(trainer)
        start = time.perf_counter()
        trainer.train()
        seconds = (time.perf_counter() - start) / steps
    return seconds, [e for e in trainer.state.log_history if "loss" in e][-1]["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(ARMS), default="sft")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runtime.set_threads()
    arms = ARMS[args.mode]
    times, losses, cache = {name: [] for name in arms}, {}, {}
    for round_ in range(args.rounds):
        for name, (labelled, packed) in arms.items():
            seconds, losses[name] = run(args.mode, labelled, packed, args.steps, cache)
            times[name].append(seconds)
            print(f"round {round_ + 1}: {name}: {seconds:.3f} s/step, last loss {losses[name]:.4f}", flush=True)
    reference = statistics.median(times[next(iter(arms))])
    for name in arms:
        median = statistics.median(times[name])
        print(f"{args.mode} | {name}: median {median:.3f} s/step ({reference / median:.2f}x TRL defaults), "
              f"last loss {losses[name]:.4f}")


if __name__ == "__main__":
    main()
