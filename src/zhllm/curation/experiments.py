"""Stage 07's experiments: short SFT runs at equal steps on curated data, scored as in stage 03.

Each arm trains a fresh LoRA on the CPT model with stage 03's settings (shorter), so arms differ only in
their data. `sft_score` is the one number that compares them; the held-out reply loss is the smooth one.
"""
import random
from pathlib import Path

import torch

from .. import chat, sft


def sft_settings(cfg: dict, profile: str | None = None) -> dict:
    """Stage 03's settings for the profile, with this stage's shorter runs (smaller batches: more updates for
    the same compute) and shorter evaluation."""
    from ..profiles import pick

    return dict(pick(sft.SETTINGS, profile), max_steps=cfg["sft_steps"], batch_size=cfg["sft_batch"],
                eval_per_task=cfg["eval_per_task"])


def raw_text_rows(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    """Plain language-modelling rows (BOS text EOS, every token in the loss), cut at `max_length`:
    how general corpus text is mixed into instruction data."""
    rows = []
    for text in texts:
        ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"],
               tokenizer.eos_token_id][:max_length]
        rows.append({"input_ids": ids, "labels": list(ids)})
    return rows


@torch.no_grad()
def reply_loss(model, tokenizer, examples: list[dict], max_length: int, batch_size: int = 16) -> float:
    """Mean loss (nats) per reply token of held-out conversations, teacher-forced, labels as in training.

    Why: it moves smoothly long before greedy replies are exactly right, so it separates short runs.
    """
    rows, _ = chat.encode_conversations(tokenizer, [e["messages"] for e in examples], max_length, source="heldout")
    model.eval()
    device = model.device
    total = tokens = 0.0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(r["input_ids"]) for r in batch)
        pad = lambda row, value: row + [value] * (width - len(row))  # noqa: E731
        ids = torch.tensor([pad(r["input_ids"], tokenizer.pad_token_id) for r in batch], device=device)
        mask = torch.tensor([pad([1] * len(r["input_ids"]), 0) for r in batch], device=device)
        labels = torch.tensor([pad(r["labels"], chat.IGNORE) for r in batch], device=device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                                   reduction="sum", ignore_index=chat.IGNORE).item()
        tokens += (labels[:, 1:] != chat.IGNORE).sum().item()
    return total / tokens


def sft_arm(model_dir: Path, examples: list[dict], heldout: list[dict], sft_cfg: dict, checkpoint_dir: Path,
            raw_texts: list[str] = ()) -> tuple[dict, list[dict]]:
    """A fresh LoRA on the CPT model, trained on `examples` (+ raw text rows) for `max_steps`, then scored on
    the held-out tasks: (task scores with stop_rate and reply_loss, loss history)."""
    model, tokenizer = sft.load_policy(model_dir, sft_cfg)
    rows, _ = sft.encode_examples(tokenizer, examples, sft_cfg["max_length"], source=checkpoint_dir.name)
    rows += raw_text_rows(tokenizer, raw_texts, sft_cfg["max_length"])
    history = sft.train(model, tokenizer, rows, checkpoint_dir, sft_cfg)
    scores, _ = sft.evaluate(model, tokenizer, heldout, sft_cfg)
    scores["reply_loss"] = reply_loss(model, tokenizer, heldout, sft_cfg["max_length"])
    return scores, history


def sft_score(scores: dict, baseline: dict) -> float:
    """The one number that compares SFT runs: the mean over tasks of (score - trivial baseline's score)."""
    return sum(scores[task] - baseline[task] for task in baseline) / len(baseline)


def arm_metrics(name: str, scores: dict, baseline: dict) -> dict:
    """sft_score_<name> plus each task's score, the stop rate and the held-out reply loss, flat."""
    out = {f"sft_score_{name}": sft_score(scores, baseline), f"sft_{name}_stop_rate": scores["stop_rate"],
           f"sft_{name}_reply_loss": scores["reply_loss"]}
    out.update({f"sft_{name}_{task}": scores[task] for task in baseline})
    return out


def mixed_corpus(texts: list[str], kept: list[int], instructions: int, share: float, seed: int = 0) -> list[str]:
    """Cleaned raw texts to mix into `instructions` instruction rows so that they are `share` of all rows,
    drawn with a fixed seed (Panda mixed general corpora into instruction data the same way)."""
    n = round(instructions * share / (1 - share))
    return [texts[i] for i in sorted(random.Random(seed).sample(kept, n))]
