"""Scoring multiple-choice exams: letter log-probabilities in one forward pass, CoT generation, averages.

The scored continuation of a prompt is `delimiter + letter`, tokenised the way lm-evaluation-harness
does it (encode prompt+answer, drop the prompt's tokens), so "A" and " A" are whatever ids the
tokenizer really gives them. When the four answers differ only in their last token — the usual
case — one forward pass per question scores all four.
"""
import logging
import math
import re
from collections import defaultdict
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .exams import LETTERS, Exam, get_format, render, render_fitting

log = logging.getLogger("zhllm.ceval")


@dataclass
class Result:
    """One scored question: the gold answer (None on a test split), the prediction and its evidence."""
    subject: str
    id: str
    answer: str | None
    pred: str | None
    logprobs: tuple = ()  # one per letter; empty for generated (CoT) answers
    completion: str = ""  # the generated text (CoT)
    prompt_tokens: int = 0
    shots: int = 0

    @property
    def correct(self) -> bool:
        return self.answer is not None and self.pred == self.answer


def _encode(tokenizer, texts: list[str], add_special_tokens) -> list[list[int]]:
    # None = the tokenizer's own default (lm-eval's choice too): a Llama tokenizer adds <s>
    kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
    return tokenizer(texts, **kwargs)["input_ids"]


def answer_ids(tokenizer, prompt: str, delimiter: str = "", add_special_tokens=None) -> dict:
    """Token ids each answer letter adds after `prompt`: {letter: [ids]} (what gets scored).

    Trailing whitespace of the prompt moves into the answer (as in lm-eval), so a prompt ending in
    a space still scores the tokenizer's " A" rather than a lone "A" after a space token.
    """
    stripped = prompt.rstrip()
    cont_prefix = prompt[len(stripped):] + delimiter
    ctx, *wholes = _encode(tokenizer, [stripped] + [stripped + cont_prefix + x for x in LETTERS],
                           add_special_tokens)
    return {letter: whole[len(ctx):] for letter, whole in zip(LETTERS, wholes)}


def _jobs(tokenizer, prompts, delimiter, add_special_tokens, max_length):
    """One forward job per distinct input: prompt ids + all but the last answer token."""
    stripped = [p.rstrip() for p in prompts]
    texts = []
    for p, s in zip(prompts, stripped):
        texts += [s] + [s + p[len(s):] + delimiter + x for x in LETTERS]
    ids = _encode(tokenizer, texts, add_special_tokens)
    jobs, lengths = [], []
    for qi in range(len(prompts)):
        ctx, *wholes = ids[5 * qi: 5 * qi + 5]
        lengths.append(len(ctx))
        groups = defaultdict(list)
        for ci, whole in enumerate(wholes):
            cont = whole[len(ctx):]
            if not cont:
                raise ConfigError(f"answer {delimiter + LETTERS[ci]!r} adds no token after prompt {qi} "
                                  "with this tokenizer (it merged into the prompt); use a delimiter")
            inp = tuple((ctx + cont[:-1])[-max_length:])  # left-truncate like lm-eval
            groups[inp].append((ci, cont))
        jobs += [(qi, list(inp), conts) for inp, conts in groups.items()]
    return jobs, lengths


@torch.no_grad()
def letter_logprobs(model, tokenizer, prompts: list[str], delimiter: str = "", batch_size: int = 16,
                    add_special_tokens=None) -> tuple[list[list[float]], list[int]]:
    """Log-probability of each of the four answers after each prompt, and each prompt's length in tokens.

    Jobs are sorted longest first so a batch pads little and an out-of-memory shows up at once.
    """
    max_length = getattr(model.config, "max_position_embeddings", None) or 2048
    jobs, lengths = _jobs(tokenizer, prompts, delimiter, add_special_tokens, max_length)
    order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j][1]))
    scores = [[0.0] * 4 for _ in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model.device
    for start in range(0, len(order), batch_size):
        batch = [jobs[j] for j in order[start:start + batch_size]]
        width = max(len(inp) for _, inp, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        for row, (_, inp, _) in enumerate(batch):
            input_ids[row, :len(inp)] = torch.tensor(inp)
        # only the positions that predict an answer token need the vocabulary-wide softmax
        needed = sorted({p for _, inp, conts in batch for _, cont in conts
                         for p in range(len(inp) - len(cont), len(inp))})
        column = {p: i for i, p in enumerate(needed)}
        logits = _logits_at(model, input_ids.to(device), needed)
        logp = torch.log_softmax(logits.float(), dim=-1)
        for row, (qi, inp, conts) in enumerate(batch):
            for ci, cont in conts:
                pos = range(len(inp) - len(cont), len(inp))
                scores[qi][ci] = float(sum(logp[row, column[p], t] for p, t in zip(pos, cont)))
    return scores, lengths


def _logits_at(model, input_ids, positions: list[int]) -> torch.Tensor:
    """Logits at `positions` only: [batch, len(positions), vocab], not [batch, length, vocab].

    With a 32k vocabulary and long 5-shot prompts the full tensor would take gigabytes. No
    attention mask: padding sits on the right, after every real token, so causal attention never
    sees it — and without a mask the attention kernel takes its fast causal path (lm-eval too).
    """
    index = torch.tensor(positions, device=input_ids.device)
    try:
        return model(input_ids=input_ids, logits_to_keep=index).logits
    except TypeError:  # a model class without `logits_to_keep`
        return model(input_ids=input_ids).logits[:, index]


def _argmax(values) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # ties -> first, like numpy


def score_exam(model, tokenizer, exam: Exam, fmt, batch_size: int = 16, subjects=None,
               limit: int | None = None) -> list[Result]:
    """Score every question of `exam` (optionally some subjects / the first `limit` per subject)."""
    fmt = get_format(fmt)
    if fmt.cot:
        raise ConfigError(f"{fmt.name} is a chain-of-thought format: score it with generate_answers()")
    max_tokens = getattr(model.config, "max_position_embeddings", None) or 2048
    items, prompts, shots_used = [], [], []
    for subject in subjects or exam.questions:
        zh = exam.subjects[subject][0]
        for q in exam.questions[subject][:limit]:
            prompt, n = render_fitting(q, fmt, zh, exam.shots(q), tokenizer, max_tokens)
            items.append(q)
            prompts.append(prompt)
            shots_used.append(n)
    # a chat template already holds its special tokens; plain prompts take the tokenizer's default
    special = False if fmt.chat else None
    if prompts:
        log.info("format %s: %d prompts; answer token ids %s", fmt.name, len(prompts),
                 answer_ids(tokenizer, prompts[0], fmt.delimiter, special))
    scores, lengths = letter_logprobs(model, tokenizer, prompts, fmt.delimiter, batch_size, special)
    return [Result(q.subject, q.id, q.answer, LETTERS[_argmax(s)], tuple(s), prompt_tokens=n_tok,
                   shots=n_shot)
            for q, s, n_tok, n_shot in zip(items, scores, lengths, shots_used)]


# ---- chain of thought: generate, then extract the letter ---------------------------------------

# most specific first: an explicit conclusion beats a letter mentioned along the way
ANSWER_PATTERNS = (
    r"所以答案是\s*([ABCD])",
    r"答案(?:应该)?(?:是|为|选)\s*[:：]?\s*([ABCD])",
    r"(?:故|因此|所以)\s*选\s*([ABCD])",
    r"选项\s*([ABCD])\s*(?:是)?正确",
    r"([ABCD])\s*(?:项|选项)?(?:是)?正确",
)


def extract_answer(text: str) -> str | None:
    """The letter a generated explanation concludes with; None when it never commits to one."""
    for pattern in ANSWER_PATTERNS:
        found = re.findall(pattern, text)
        if found:
            return found[-1]  # the last conclusion stated is the final one
    letters = set(re.findall(r"(?<![A-Za-z])([ABCD])(?![A-Za-z])", text))
    return letters.pop() if len(letters) == 1 else None


@torch.no_grad()
def generate_answers(model, tokenizer, exam: Exam, fmt="official_cot_5shot", max_new_tokens: int = 128,
                     batch_size: int = 8, subjects=None, limit: int | None = None) -> list[Result]:
    """Greedy generation for each question, then `extract_answer`; unanswered counts as wrong."""
    fmt = get_format(fmt)
    max_tokens = (getattr(model.config, "max_position_embeddings", None) or 2048) - max_new_tokens
    items, prompts = [], []
    for subject in subjects or exam.questions:
        for q in exam.questions[subject][:limit]:
            prompt, _ = render_fitting(q, fmt, exam.subjects[subject][0], exam.shots(q),
                                       tokenizer, max_tokens)
            items.append(q)
            prompts.append(prompt)
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # new tokens line up on the right
    old_pad = tokenizer.pad_token
    if old_pad is None:  # Llama-2 and TinyLlama ship without one; masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    device = model.device
    texts = []
    try:
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=not fmt.chat)  # a chat template has its own
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = old_side
        if old_pad is None:
            tokenizer.pad_token = None
    return [Result(q.subject, q.id, q.answer, extract_answer(t), completion=t)
            for q, t in zip(items, texts)]


# ---- averages, intervals, submission -----------------------------------------------------------

def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy; unlike the normal one it stays inside [0, 1]."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def _group(per_subject: dict, members) -> dict:
    """Both averages of a group of subjects: mean of subject accuracies, and pooled over questions."""
    members = [s for s in members if s in per_subject]
    if not members:
        return {}
    correct = sum(per_subject[s]["correct"] for s in members)
    n = sum(per_subject[s]["n"] for s in members)
    return {"subject_mean": sum(per_subject[s]["acc"] for s in members) / len(members),
            "question_weighted": correct / n, "subjects": len(members), "n": n}


def summarize(results: list[Result], exam: Exam) -> dict:
    """Per subject, per category, Hard and overall accuracy, each average named by how it is taken.

    `subject_mean` is the official C-Eval average (every subject counts once); `question_weighted`
    is lm-eval's group average (a subject counts by its number of questions).
    """
    per_subject = {}
    for subject in exam.questions:
        rs = [r for r in results if r.subject == subject and r.answer is not None]
        if rs:
            correct = sum(r.correct for r in rs)
            per_subject[subject] = {"acc": correct / len(rs), "correct": correct, "n": len(rs)}
    categories = sorted({cat for _, cat in exam.subjects.values()})
    out = {"subjects": per_subject,
           "categories": {c: _group(per_subject, [s for s, (_, cat) in exam.subjects.items() if cat == c])
                          for c in categories},
           "hard": _group(per_subject, exam.hard),
           "average": _group(per_subject, per_subject)}
    total = out["average"]
    if total:
        ok = sum(v["correct"] for v in per_subject.values())
        total["ci95_question_weighted"] = wilson_interval(ok, total["n"])
    return out


def summary_table(summary: dict) -> str:
    """A small text table: categories, Hard and the overall average, both ways."""
    lines = [f"{'group':<16}{'subjects':>9}{'questions':>10}{'subject_mean':>14}{'question_wtd':>14}"]
    rows = [*summary["categories"].items(), ("Hard", summary["hard"]), ("Average", summary["average"])]
    for name, g in rows:
        if g:
            lines.append(f"{name:<16}{g['subjects']:>9}{g['n']:>10}{g['subject_mean']:>14.4f}"
                         f"{g['question_weighted']:>14.4f}")
    return "\n".join(lines)


def submission(results: list[Result]) -> dict:
    """The official C-Eval test submission: {subject: {"<id>": "<letter>"}}; no answer -> "A"."""
    out = defaultdict(dict)
    for r in results:
        out[r.subject][str(r.id)] = r.pred or "A"  # the site expects a letter for every id
    return dict(out)


def prompt_of(exam: Exam, q, fmt, tokenizer=None) -> str:
    """The rendered prompt for one question with the format's full number of shots (for display)."""
    return render(q, fmt, exam.subjects[q.subject][0], exam.shots(q), tokenizer)
