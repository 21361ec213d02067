"""Lab 06 checks: letter log-probabilities and the subject-mean average."""
import random

import torch

from ..errors import ZhllmError
from .common import (LabCheckError, _close, _diagnose, _float, _name, _passed, _random_text, _run, lab_tokenizer,
                     one_thread, tiny_model)

def _letter_prompts(n: int, seed: int) -> tuple[list, list]:
    from ..ceval import Question, render

    def prompt(question, options):
        return render(Question("lab", "0", question, tuple(options), "A"), "official_zero_shot", "评论情感")

    fixed = [prompt("“质量很好，物流也快。”这条评论的情感是？", ["正面", "负面", "中性", "无法判断"]),
             prompt("下列哪个词是地名？", ["北京", "书", "很好", "我们"])]
    rng = random.Random(seed)
    generated = [prompt(_random_text(rng, 4, 40), [_random_text(rng, 1, 6) for _ in range(4)]) for _ in range(n)]
    return fixed, generated


def lab_letter_ids(tokenizer, prompt: str) -> list[int]:
    """The token id each letter A-D adds right after `prompt` (each must be one token for the lab)."""
    from ..ceval.scoring import answer_ids

    ids = answer_ids(tokenizer, prompt)
    if any(len(v) != 1 for v in ids.values()):
        raise ZhllmError(f"a letter is not one token after this prompt: {ids}")
    return [ids[letter][0] for letter in "ABCD"]


@one_thread()
def check_letter_logprobs(fn, tokenizer=None, model=None, n: int = 10, seed: int = 0) -> None:
    """`fn(model, tokenizer, prompt, letter_ids) -> 4 floats`: log p(letter | prompt), as lm-eval scores."""
    from ..ceval.scoring import letter_logprobs

    tok = tokenizer or lab_tokenizer()
    model = model or tiny_model(len(tok), seed=seed)
    fixed, generated = _letter_prompts(n, seed)
    for prompt in fixed + generated:
        letters = lab_letter_ids(tok, prompt)
        got = _run(fn, model, tok, prompt, list(letters))
        try:
            got = [float(v) for v in (got.tolist() if torch.is_tensor(got) else got)]
        except (TypeError, ValueError):
            raise LabCheckError(f"`{_name(fn)}` should return four numbers, one per letter A-D") from None
        if len(got) != 4:
            raise LabCheckError(f"`{_name(fn)}` returned {len(got)} numbers: return one per letter A, B, C, D")
        want = letter_logprobs(model, tok, [prompt])[0][0]
        same = lambda a, b: all(_close(x, float(y), 1e-4, 1e-4) for x, y in zip(a, b))  # noqa: E731
        if same(got, want):
            continue
        with torch.no_grad():
            ids = tok(prompt)["input_ids"]
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            bare = model(input_ids=torch.tensor([ids[1:]])).logits[0, -1].float()
        wrong = [("you returned raw logits: apply log_softmax over the whole vocabulary, then pick the letters",
                  logits[-1, letters]),
                 ("you returned probabilities: take the log (log_softmax), which is what lm-eval compares",
                  torch.softmax(logits[-1], -1)[letters]),
                 ("you renormalised over the four letters only: lm-eval uses log_softmax over the whole vocabulary",
                  torch.log_softmax(logits[-1, letters], -1)),
                 ("you read the logits one position too early: the last position predicts the token after the prompt",
                  torch.log_softmax(logits[-2], -1)[letters]),
                 ("your prompt has no <s>: tokenise it the way the tokenizer does by default (lm-eval does)",
                  torch.log_softmax(bare, -1)[letters])]
        message = _diagnose(got, wrong, lambda a, b: same(a, b.tolist()))
        raise LabCheckError(message or f"expected {[round(w, 4) for w in want]}, got {[round(x, 4) for x in got]} "
                                       f"for the prompt ending {prompt[-30:]!r}")
    _passed(fn, len(fixed), len(generated))


def _official_subject_mean(results) -> float:
    """Reference: C-Eval's official average (mean of per-subject accuracies) via `ceval.scoring.summarize`."""
    from ..ceval import Exam
    from ..ceval.scoring import Result, summarize

    rows = [Result(subject, str(i), answer, pred) for i, (subject, pred, answer) in enumerate(results)]
    subjects = list(dict.fromkeys(s for s, _, _ in results))
    exam = Exam("lab", "val", {s: [] for s in subjects}, subjects={s: (s, "Other") for s in subjects})
    return summarize(rows, exam)["average"]["subject_mean"]


def check_subject_mean(fn, n: int = 40, seed: int = 0) -> None:
    """`fn(results) -> float`, results = [(subject, predicted letter or None, gold letter)]: subject mean."""
    fixed = [[("law", "A", "A"), ("law", "B", "C"), ("math", "A", "A"), ("math", "B", "B"), ("math", "C", "C"),
              ("math", "D", "A")],
             [("history", "A", "A"), ("history", None, "B"), ("art", "C", "C"), ("art", None, "D")]]
    rng = random.Random(seed)
    generated = []
    for _ in range(n):
        rows = []
        for s in range(rng.randint(1, 5)):
            skill = rng.random()  # each subject its own accuracy, each its own size: the two averages differ
            for _ in range(rng.randint(1, 30)):
                gold = rng.choice("ABCD")
                pred = gold if rng.random() < skill else rng.choice("ABCD")
                rows.append((f"subject_{s}", None if rng.random() < 0.1 else pred, gold))
        rng.shuffle(rows)
        generated.append(rows)
    for results in fixed + generated:
        got = _float(_run(fn, list(results)), fn)
        want = _official_subject_mean(results)
        if _close(got, want, 1e-9):
            continue
        answered = [r for r in results if r[1] is not None]
        per = {}
        for s, p, a in answered:
            per.setdefault(s, []).append(p == a)
        wrong = [("you pooled all questions (lm-eval's group average): C-Eval's official average is the mean of "
                  "the per-subject accuracies, so every subject counts once",
                  sum(p == a for _, p, a in results) / len(results)),
                 ("you left out unanswered questions (prediction None): they count as wrong",
                  sum(sum(v) / len(v) for v in per.values()) / len(per) if per else None),
                 ("you returned a percentage: return a fraction between 0 and 1", 100 * want)]
        message = _diagnose(got, wrong, lambda a, b: _close(a, b, 1e-9))
        raise LabCheckError(message or f"expected subject mean {want:.4f}, got {got:.4f} for {results!r}")
    _passed(fn, len(fixed), len(generated))
