"""Stage 03 — supervised fine-tuning (指令微调) with TRL's SFTTrainer and LoRA.

The data, template and label rules live in `tasks`, `zhllm.formats` and `zhllm.chat`; this module trains and
evaluates: every task scored before and after against its trivial baseline, and whether the model
stops (emits EOS) within the length limit.
"""
import json
import random
import time
from pathlib import Path

import torch
from datasets import Dataset
from peft import get_peft_model
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer

from .. import artifacts, chat, cpt, formats, runtime
from ..ceval import kit_exam as exam
from ..modeling import count_parameters, labelled_logits_head, load_causal_lm
from . import tasks as sft_data

# embeddings="full": the embedding and output rows train too (PEFT modules_to_save), as in Chinese-LLaMA-
# Alpaca-2's SFT scripts. The tiny CPT model's Chinese output rows are still nearly parallel (they started
# as averages of byte rows), and LoRA on the layers alone could not tell 正面 from 负面 (measured: loss
# stuck at ~4 nats on the reply tokens, against ~0.25 with the rows trainable). From the shipped model, fewer
# steps at a higher rate (200 at 2e-3 instead of 300 at 1e-3) scored as well or better in two thirds of the
# time, and LoRA on the layers only (embeddings "none") scored lower on every task.
SETTINGS = {
    # eval_per_task 200: every held-out example (sentiment has 200, the other tasks 100). With 40, one reply
    # moved a score by 0.025, and another floating-point order of the same training moved scores by more than
    # their margins over the baselines; a reading on the whole held-out set is a reading of the recipe.
    "tiny": dict(quantization=None, lora_r=64, lora_alpha=128, embeddings="full", max_length=192,
                 batch_size=16, max_steps=200, learning_rate=2e-3, warmup_steps=10, seed=0,
                 packing=True, eval_per_task=200, max_new_tokens=48, exam_per_subject=40,
                 hub_dataset=None, hub_rows=0),
    "colab": dict(quantization="4bit", lora_r=64, lora_alpha=16, embeddings="none", max_length=1024,
                  batch_size=8, max_steps=600, learning_rate=2e-4, warmup_steps=20, seed=0,
                  packing=True, eval_per_task=100, max_new_tokens=256, exam_per_subject=100,
                  hub_dataset="shibing624/alpaca-zh", hub_rows=5000),
}


def load_policy(model_dir: Path, cfg: dict, lora=None, quantization=None):
    """The CPT model with LoRA, and its tokenizer with the kit's chat template and a pad != EOS.

    `lora` (a `LoraConfig`) and `quantization` (a `BitsAndBytesConfig`) default to the settings';
    notebook 03 builds them in view and passes them.
    """
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chat.set_chat_template(tokenizer)
    added = chat.ensure_pad_token(tokenizer)
    quantization = quantization or cfg["quantization"]
    model = load_causal_lm(str(model_dir), quantization=quantization)
    if added:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    if quantization:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    runtime.seed_everything(cfg["seed"])
    return get_peft_model(model, lora or cpt.lora_config(cfg["lora_r"], cfg["lora_alpha"], cfg["embeddings"])), tokenizer


def hub_examples(name: str, limit: int) -> tuple[list[dict], dict]:
    """The first `limit` valid rows of a hub instruction set (Alpaca / BELLE / ShareGPT / messages), normalised.

    Rows are read in order until `limit` pass `formats.to_messages`; the bad ones are removed and counted by
    reason, and a set with fewer valid rows is an error (`formats.read_rows`). `name` may be a local .json /
    .jsonl file or a folder of them, read by `formats.read_local`."""
    conversations, report = formats.read_rows(name, limit, formats.to_messages)
    return [{"task": "hub", "messages": m} for m in conversations], report


def training_examples(profile: str, cfg: dict) -> tuple[list[dict], dict]:
    """The profile's SFT conversations and a report of where they came from.

    Always the kit's tasks (train split) and exam-format questions on training text (so the stage-06 exam
    is answered in the format it asks for, on questions it never saw); plus `hub_dataset` rows when set.
    """
    examples, report = sft_data.build("train")
    exam_rows = exam.format_training_rows(cfg["exam_per_subject"]) if cfg["exam_per_subject"] else []
    examples += [{"task": "exam", **row} for row in exam_rows]
    report["examples"]["exam"] = len(exam_rows)
    if cfg.get("hub_dataset"):
        hub, hub_report = hub_examples(cfg["hub_dataset"], cfg["hub_rows"])
        examples += hub
        report["examples"]["hub"] = len(hub)
        report["hub"] = formats.describe(hub_report)
    random.Random(cfg["seed"]).shuffle(examples)
    return examples, report


def encode_examples(tokenizer, examples: list[dict], max_length: int,
                    source: str = "sft train") -> tuple[list[dict], dict]:
    """Rows with assistant-only labels for `examples`; prints what was kept and what was removed (too long)."""
    rows, report = chat.encode_conversations(tokenizer, [e["messages"] for e in examples], max_length,
                                             source=source)
    print(formats.describe(report))
    return rows, report


def heldout_examples(cfg: dict, per_task: int | None = None) -> list[dict]:
    """A fixed slice of the held-out set: the first `per_task` (default `eval_per_task`) examples of each task."""
    per_task = per_task or cfg["eval_per_task"]
    examples, _ = sft_data.build("heldout")
    kept, seen = [], {}
    for ex in examples:
        seen[ex["task"]] = seen.get(ex["task"], 0) + 1
        if seen[ex["task"]] <= per_task:
            kept.append(ex)
    return kept


def before_per_task(cfg: dict) -> int:
    """Held-out examples per task for the model before SFT: a quarter. It has never seen the chat format, so
    it seldom stops or answers in a task's form and most replies run to the token limit: a quarter shows
    that at a quarter of the cost."""
    return max(1, cfg["eval_per_task"] // 4)


def evaluate_before_training(model, tokenizer, cfg: dict) -> tuple[dict, list, list[dict]]:
    """`evaluate` on the first `before_per_task` held-out examples of each task, the new adapter disabled (its
    B is zero, so the replies are the same, without LoRA's matmuls): (scores, replies, the examples read)."""
    examples = heldout_examples(cfg, before_per_task(cfg))
    with model.disable_adapter():
        scores, replies = evaluate(model, tokenizer, examples, cfg)
    return scores, replies, examples


def evaluate(model, tokenizer, examples: list[dict], cfg: dict, decoding: dict | None = None) -> tuple[dict, list]:
    """Task scores of greedy replies to every held-out turn, the stop rate, and the replies.

    `decoding` defaults to `chat.DECODING` (greedy with repetition controls); `chat.GREEDY` is plain greedy."""
    prompts = sft_data.turn_prompts(examples)
    replies = chat.generate_replies(model, tokenizer, prompts, max_new_tokens=cfg["max_new_tokens"],
                                    decoding=decoding)
    texts = [text for text, _ in replies]
    scores = sft_data.score(examples, texts)
    scores["stop_rate"] = sum(stopped for _, stopped in replies) / len(replies)
    scores["format_rate"] = sft_data.format_rate(examples, texts)
    return scores, replies


@torch.no_grad()
def label_sensitivity(model, tokenizer, cue: str) -> float:
    """Total variation between the first-token distributions for the 正面 and 负面 review prompts with `cue`.

    0 = the model ignores the one character that says which sentiment to write.
    """
    model.eval()
    probs = []
    for label in sft_data.LABELS.values():
        user = sft_data.PROMPTS["review"].format(label=label, input=cue)
        ids = torch.tensor([chat.encode_prompt(tokenizer, [{"role": "user", "content": user}])])
        probs.append(model(input_ids=ids.to(model.device)).logits[0, -1].softmax(-1))
    return 0.5 * (probs[0] - probs[1]).abs().sum().item()


def training_args(cfg: dict, checkpoint_dir: Path) -> SFTConfig:
    """TRL's SFTConfig for a profile's settings: cosine schedule, a checkpoint every quarter."""
    return SFTConfig(
        output_dir=str(checkpoint_dir), max_steps=cfg["max_steps"],
        per_device_train_batch_size=cfg["batch_size"], learning_rate=cfg["learning_rate"],
        lr_scheduler_type="cosine", warmup_steps=cfg["warmup_steps"],
        logging_steps=max(1, min(10, cfg["max_steps"] // 10)), save_strategy="steps",
        save_steps=max(cfg["max_steps"] // 4, 1), save_total_limit=1, report_to=[], seed=cfg["seed"],
        data_seed=cfg["seed"], disable_tqdm=True, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), max_length=cfg["max_length"],
        # recompute activations only where memory is short (4-bit on a GPU); on the tiny model it only costs time
        activation_checkpointing=bool(cfg["quantization"]), fp16=runtime.dtype_for() == torch.float16,
        bf16=runtime.dtype_for() == torch.bfloat16)


def train(model, tokenizer, rows: list[dict], checkpoint_dir: Path, cfg: dict, args: SFTConfig | None = None,
          save_to: Path | None = None) -> list[dict]:
    """SFTTrainer on rows that already carry assistant-only labels (TRL keeps given labels as is).

    `args` defaults to `training_args(cfg, checkpoint_dir)`; a recipe (`zhllm train sft`) passes its own.
    `save_to` saves the adapter through the Trainer, which gathers it under FSDP / DeepSpeed ZeRO-3.
    """
    args = args or training_args(cfg, checkpoint_dir)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, data_collator=chat.collator(tokenizer, cfg["packing"]))
    labelled_logits_head(trainer)  # on a CPU: cheaper there than TRL's fused LM head
    found = any(Path(args.output_dir).glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if found else None)
    if save_to:
        trainer.save_model(str(save_to))
    return [e for e in trainer.state.log_history if "loss" in e]


def metrics_from(before: dict, after: dict, baseline: dict, train_examples: int) -> dict:
    """The stage's flat metrics: T_score_before / T_score_after / T_baseline per task, stop_rate, size."""
    out = {"stop_rate": after["stop_rate"], "stop_rate_before": before["stop_rate"],
           "format_rate": after["format_rate"], "format_rate_before": before["format_rate"],
           "train_examples": train_examples}
    for task in baseline:
        out[f"{task}_score_before"] = before[task]
        out[f"{task}_score_after"] = after[task]
        out[f"{task}_baseline"] = baseline[task]
    return out


def merged_model(model, model_dir: Path, out_dir: Path, cfg: dict):
    """The trained model as plain weights: LoRA merged in place, or (4-bit) into the dequantised base."""
    if not cfg["quantization"]:
        return model.merge_and_unload()
    model.save_pretrained(out_dir / "adapter")
    return cpt.merge(model, model_dir, out_dir / "adapter")


def save(out_dir: Path, merged, tokenizer, metrics: dict, history: list[dict]) -> None:
    """Write `model/` (+ tokenizer, whose chat template later stages reuse), `loss.json`, metrics."""
    merged.save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    (out_dir / "loss.json").write_text(json.dumps(history))
    artifacts.write_metrics(out_dir, metrics)


def build(out_dir: Path, profile: str | None = None) -> dict:
    """Build stage 03 into `out_dir`: the SFT model (LoRA merged), loss curve and metrics."""
    profile, cfg = runtime.begin_stage(SETTINGS, profile)
    start = time.time()
    model_dir = artifacts.start_model_dir(profile)
    model, tokenizer = load_policy(model_dir, cfg)
    train_examples, _ = training_examples(profile, cfg)
    rows, _ = encode_examples(tokenizer, train_examples, cfg["max_length"])
    heldout = heldout_examples(cfg)
    baseline = sft_data.score(heldout, sft_data.baseline_replies(heldout))
    before, _, _ = evaluate_before_training(model, tokenizer, cfg)
    history = train(model, tokenizer, rows, artifacts.checkpoint_dir("sft", profile), cfg)
    after, _ = evaluate(model, tokenizer, heldout, cfg)
    metrics = metrics_from(before, after, baseline, len(rows))
    metrics["trainable_params"] = count_parameters(model, trainable_only=True)
    metrics["seconds"] = round(time.time() - start, 1)
    save(out_dir, merged_model(model, model_dir, out_dir, cfg), tokenizer, metrics, history)
    artifacts.clear_checkpoints("sft", profile)
    return metrics
