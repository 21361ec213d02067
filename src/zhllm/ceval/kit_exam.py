"""The tiny profile's exam (小考): a C-Eval-format exam the kit writes from its own corpora.

Eight subjects in C-Eval's four categories, four options each, dev shots with explanations, and
val/test questions built only from held-out text (`corpora.*("heldout")`), which no training stage
reads. The same questions can be made from training text (`make_questions(..., split="train")`)
for a stage that wants to teach the multiple-choice format itself.
"""
import csv
import json
import random
import re
import zlib
from functools import lru_cache
from pathlib import Path

from ..corpora import people_daily, people_daily_tagged, reviews
from .exams import LETTERS, Question

# subject -> (English name, Chinese name, category), as in C-Eval's subject_mapping.json
SUBJECTS = {
    "person_names": ("Person Names", "人名识别", "Humanities"),
    "place_names": ("Place Names", "地名识别", "Humanities"),
    "numerals": ("Numerals", "数词识别", "STEM"),
    "time_words": ("Time Words", "时间词识别", "STEM"),
    "review_sentiment": ("Review Sentiment", "评论情感", "Social Science"),
    "word_segmentation": ("Word Segmentation", "中文分词", "Social Science"),
    "word_cloze": ("Word Cloze", "词语填空", "Other"),
    "verbs": ("Verbs", "动词识别", "Other"),
}
SIZES = {"dev": 5, "val": 30, "test": 10}  # per subject
CHANCE = 0.25  # four options, answers spread evenly over A-D

# People's Daily POS tag -> what to call it in a question or an explanation
TAG_NAMES = {"nr": "人名", "ns": "地名", "nt": "机构名", "m": "数词", "t": "时间词", "v": "动词",
             "n": "名词", "vn": "名动词", "a": "形容词", "nz": "其他专名", "j": "简称", "d": "副词",
             "i": "成语", "l": "习用语", "s": "处所词", "f": "方位词", "b": "区别词", "an": "名形词",
             "q": "量词", "r": "代词"}
DEFINITIONS = {"nr": "人名是人的姓名", "ns": "地名是国家、地区、城市等地方的名称",
               "m": "数词表示数目或次序", "t": "时间词表示时间", "v": "动词表示动作、行为或变化"}
ENTITY_SUBJECTS = {"person_names": "nr", "place_names": "ns", "numerals": "m", "time_words": "t",
                   "verbs": "v"}
CLAUSE_END = {"。", "！", "？", "；"}


def _clauses(paragraph: list, min_chars: int = 8, max_chars: int = 40) -> list[list]:
    """Split a tagged paragraph at sentence-final punctuation; merge surname+given name into one nr."""
    out, current = [], []
    for word, tag in paragraph + [("。", "w")]:
        if word in CLAUSE_END:
            if min_chars <= sum(len(w) for w, _ in current) <= max_chars:
                out.append(current)
            current = []
        elif tag == "nr" and current and current[-1][1] == "nr":
            current[-1] = (current[-1][0] + word, "nr")  # 1998 People's Daily splits 江/nr 泽民/nr
        else:
            current.append((word, tag))
    return out


def _entity(clause, tag, rng):
    """'Which word in this sentence is a <tag>?' with three other-tag words of the sentence as distractors."""
    targets = [w for w, t in clause if t == tag]
    others = {w: t for w, t in clause if t in TAG_NAMES and t != tag and len(w) >= 2
              and w not in targets}
    if not targets or len(others) < 3:
        return None
    answer = rng.choice(targets)
    wrong = rng.sample(sorted(others), 3)
    text = "".join(w for w, _ in clause)
    name = TAG_NAMES[tag]
    why = (f"1. {DEFINITIONS[tag]}。\n2. “{answer}”是{name}；"
           + "、".join(f"“{w}”是{TAG_NAMES[others[w]]}" for w in wrong) + f"，都不是{name}。")
    return f"“{text}”中，属于{name}的是____", answer, wrong, why


def _cloze(clause, rng, pool):
    """A two-character noun or verb blanked out; distractors of the same tag and length from elsewhere."""
    slots = [i for i, (w, t) in enumerate(clause) if t in ("n", "v") and len(w) == 2]
    if not slots:
        return None
    i = rng.choice(slots)
    answer, tag = clause[i]
    present = {w for w, _ in clause}
    wrong = rng.sample([w for w in pool[tag] if w not in present], 3)
    left = "".join(w for w, _ in clause[:i])
    right = "".join(w for w, _ in clause[i + 1:])
    why = f"1. 原句是“{left}{answer}{right}”。\n2. 只有“{answer}”与上下文搭配恰当。"
    return f"“{left}（　）{right}”括号处应填入的词语是____", answer, wrong, why


def _segmentation(clause, rng):
    """A short comma-free stretch and its gold segmentation, against three wrong ones."""
    runs, run = [], []
    for w, t in clause + [("，", "w")]:  # stretches between punctuation marks
        if t == "w":
            if len(run) >= 3:
                runs.append(run)
            run = []
        else:
            run.append(w)
    if not runs:
        return None
    words = rng.choice(runs)
    start = rng.randrange(max(len(words) - 4, 1))
    words = words[start:start + 5]
    gold = "/".join(words)
    wrong = set()
    for _ in range(30):
        cut = list(words)
        i = rng.randrange(len(cut))
        if len(cut[i]) >= 2 and rng.random() < 0.5:  # split a word
            k = rng.randrange(1, len(cut[i]))
            cut[i:i + 1] = [cut[i][:k], cut[i][k:]]
        elif i + 1 < len(cut):  # merge two neighbours
            cut[i:i + 2] = [cut[i] + cut[i + 1]]
        if "/".join(cut) != gold:
            wrong.add("/".join(cut))
    if len(wrong) < 3:
        return None
    why = f"1. 分词要把句子切成一个个有独立意义的词。\n2. 正确的切分是“{gold}”。"
    return f"“{''.join(words)}”的正确分词是____", gold, rng.sample(sorted(wrong), 3), why


def _review_items(split, rng):
    """'Which review is positive?': one positive and three negative short reviews."""
    rows = [(t, y) for t, y in reviews(split) if 8 <= len(t) <= 40 and "\n" not in t]
    pos = [t for t, y in rows if y == 1]
    neg = [t for t, y in rows if y == 0]
    rng.shuffle(pos)
    for answer in pos:
        why = "1. 好评表达满意、喜欢、推荐等正面情感。\n2. 只有这一条是好评，其余三条都表达了不满。"
        yield "下列评论中，属于好评的是____", answer, rng.sample(neg, 3), why


@lru_cache(maxsize=2)
def _paragraphs(split: str, seed: int) -> tuple:
    """Tagged paragraphs in a fixed shuffled order, and two-character nouns/verbs for cloze options."""
    paragraphs = list(people_daily_tagged(split))
    random.Random(seed).shuffle(paragraphs)
    pool = {t: sorted({w for para in paragraphs for w, tag in para if tag == t and len(w) == 2})
            for t in ("n", "v")}
    return tuple(paragraphs), pool


@lru_cache(maxsize=1)
def _train_sentences() -> frozenset:
    """Every sentence of the training text: a held-out sentence repeated there is not held out."""
    return frozenset(s for para in people_daily("train") for s in re.split("[。！？；]", para))


def _text_items(subject, split, rng, seed, dropped: dict):
    paragraphs, pool = _paragraphs(split, seed)
    seen_in_training = _train_sentences() if split == "heldout" else frozenset()
    for para in paragraphs:
        for clause in _clauses(list(para)):
            if "".join(w for w, _ in clause) in seen_in_training:
                why = "sentence also in training text"
                dropped[why] = dropped.get(why, 0) + 1
                continue  # People's Daily repeats boilerplate sentences across articles
            if subject in ENTITY_SUBJECTS:
                item = _entity(clause, ENTITY_SUBJECTS[subject], rng)
            elif subject == "word_cloze":
                item = _cloze(clause, rng, pool)
            else:
                item = _segmentation(clause, rng)
            if item:
                yield item


def make_questions(subject: str, n: int, split: str = "heldout", seed: int = 0,
                   dropped: dict | None = None) -> list[Question]:
    """`n` questions of one subject from the `split` text, the correct letters spread evenly over A-D.

    `dropped` (if given) receives how many candidate sentences were left out, by reason.
    """
    rng = random.Random(seed * 1_000_003 + zlib.crc32(subject.encode()))
    dropped = {} if dropped is None else dropped
    if subject == "review_sentiment":
        items = _review_items(split, rng)
    else:
        items = _text_items(subject, split, rng, seed, dropped)
    # each block of four questions uses every letter once, so any split is close to balanced
    positions = [k for _ in range(0, n, 4) for k in rng.sample(range(4), 4)]
    out, seen = [], set()
    for question, answer, wrong, why in items:
        if (question, answer) in seen or len({answer, *wrong}) < 4:
            why = "repeated question or options"
            dropped[why] = dropped.get(why, 0) + 1
            continue
        seen.add((question, answer))
        k = positions[len(out)]
        options = wrong[:k] + [answer] + wrong[k:]
        out.append(Question(subject, str(len(out)), question, tuple(options), LETTERS[k], why))
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} {subject} questions available from {split!r}, wanted {n}")


def build_exam(root: Path, seed: int = 0) -> Path:
    """Write the exam in the official C-Eval layout (dev/val/test CSVs + subject_mapping.json)."""
    root = Path(root)
    for split in SIZES:
        (root / split).mkdir(parents=True, exist_ok=True)
    for subject in SUBJECTS:
        dropped = {}
        questions = make_questions(subject, sum(SIZES.values()), "heldout", seed, dropped)
        print(f"[exam] {subject}: {len(questions)} questions from held-out text; candidates left out: "
              + (", ".join(f"{n} ({why})" for why, n in dropped.items()) or "none"))
        start = 0
        for split, size in SIZES.items():
            _write(root / split / f"{subject}_{split}.csv", questions[start:start + size], split)
            start += size
    mapping = {s: list(v) for s, v in SUBJECTS.items()}
    (root / "subject_mapping.json").write_text(json.dumps(mapping, ensure_ascii=False, indent=1),
                                               encoding="utf-8")
    return root


def _write(path: Path, questions: list[Question], split: str) -> None:
    """C-Eval's columns: dev has answer+explanation, val has answer, test has neither."""
    extra = {"dev": ["answer", "explanation"], "val": ["answer"], "test": []}[split]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question", *LETTERS, *extra])
        for i, q in enumerate(questions):
            row = [i, q.question, *q.options, q.answer, q.explanation][:6 + len(extra)]
            writer.writerow(row)


def format_training_rows(n_per_subject: int = 100, seed: int = 1) -> list[dict]:
    """Chat rows that teach the exam's answer format on *training* text, for the SFT stage.

    The user turn is exactly what the `chat_zero_shot` format shows at test time, the assistant
    answers with the letter alone; the content comes from `split="train"`, so val stays unseen.
    """
    from .exams import FORMATS, question_block

    fmt = FORMATS["chat_zero_shot"]
    rows = []
    for subject, (_, zh, _) in SUBJECTS.items():
        for q in make_questions(subject, n_per_subject, split="train", seed=seed):
            user = fmt.header.format(subject=zh) + question_block(q, fmt)
            rows.append({"messages": [{"role": "user", "content": user},
                                      {"role": "assistant", "content": q.answer}]})
    return rows
