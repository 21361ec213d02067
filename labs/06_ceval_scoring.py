# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 06_ceval_scoring
# init_cell: false
# check_all_cell: false
# export_cell: false
# run_tests: false
# solutions_pdf: false
# generate: true
# tests:
#   files: false
#   ok_format: false

# %% [markdown]
# # Lab 06 · C-Eval (中文知识评测): letter-logit scoring and the subject-mean average
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/labs/student/06_ceval_scoring.ipynb)
#
# **Stage:** [notebooks/06_ceval](../../notebooks/06_ceval.ipynb) · **Time:** one 90-minute class ·
# **Runs on:** a laptop CPU or Colab; every cell takes seconds.
#
# C-Eval asks four-option questions in 52 subjects. A base model is not asked to *write* an answer:
# the scorer reads, after the prompt `…答案：`, the log-probability the model gives to each of the
# tokens `A`, `B`, `C`, `D`, and the highest wins. The headline number is then an average — and
# C-Eval's official average (every subject counts once) is not lm-evaluation-harness's (every
# question counts once). Both choices move published numbers by points.
#
# ## Learning goals
# By the end of this lab you can
# 1. find the token each answer letter adds after a prompt, and explain why `A` and ` A` differ;
# 2. score a question from one forward pass: the log-softmax at the prompt's last position, read at
#    the four letters' ids;
# 3. compute C-Eval's official subject-mean average, count unanswered questions correctly, and
#    explain when it differs from the question-weighted average.
#
# ## How this lab works
# Each exercise is a function whose body is `raise NotImplementedError`. Write the body, run the
# cell, then run the **check** cell below it: it runs your function on fixed and generated cases
# and tells you, in one sentence, what to fix. When you hand the notebook in, the autograder runs
# each check again (1 point) and hidden tests on new cases (2 points), with the kit's own version
# of the exercise switched off: write the body yourself.
#
# | time | part |
# |---|---|
# | 15 min | setup, an exam, prompts and answer tokens |
# | 30 min | exercise 1: letter log-probabilities, then score the exam |
# | 25 min | exercise 2: the subject-mean average |
# | 20 min | open questions |

# %% [markdown]
# ## Setup
# On Colab this installs the kit; everywhere else it does nothing (install with `make install`).

# %%
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "zhllm @ git+https://github.com/zhllm/zhllm"], check=True)

# %%
import torch

from zhllm import ceval, labs, runtime
from zhllm.ceval import kit_exam as exam
from zhllm.ceval.scoring import answer_ids, score_exam, summarize, summary_table, wilson_interval

runtime.set_threads(1)  # the lab's model is tiny: one thread is fastest, and the laptop stays responsive
print(runtime.banner())

# %% tags=["parameters"]
SIZES = {"review_sentiment": 24, "person_names": 8, "numerals": 16}  # questions per subject: unequal on purpose
FORMAT = "official_zero_shot"

# %% [markdown]
# ## 1 · An exam in C-Eval's format
# The kit builds C-Eval-format questions from its own held-out corpora (People's Daily 1998 and
# product reviews). Subjects have different sizes on purpose: so do C-Eval's (from 12 to 55
# validation questions).

# %%
tok = labs.lab_tokenizer()
questions = {s: exam.make_questions(s, n) for s, n in SIZES.items()}
subjects = {s: exam.SUBJECTS[s][1:] for s in SIZES}  # subject -> (Chinese name, category)
lab_exam = ceval.Exam("lab", "val", questions, subjects=subjects)
q = questions["numerals"][0]
prompt = ceval.render(q, FORMAT, subjects[q.subject][0])
print(prompt, "→ gold:", q.answer)

# %% [markdown]
# The scored continuation is the letter right after `答案：`. Which token is that? Encode the prompt
# with and without the letter and keep what the letter added: with the official format the letter
# follows the colon directly (`A`); lm-evaluation-harness puts a space before it (` A`), which is
# another token.

# %%
for delimiter in ("", " "):
    ids = answer_ids(tok, prompt, delimiter)
    print(repr(delimiter), {letter: tok.convert_ids_to_tokens(v) for letter, v in ids.items()})
letter_ids = labs.lab_letter_ids(tok, prompt)  # one id per letter, for the official format
print(letter_ids)

# %% [markdown]
# ## 2 · Exercise 1: letter log-probabilities
# One forward pass scores all four options: tokenise the prompt the tokenizer's default way (with
# `<s>`, as lm-eval does), run the model, take `log_softmax` over the **whole vocabulary** at the
# **last** position (it predicts the next token), and read it at the four letter ids.
#
# Write `letter_logprobs(model, tokenizer, prompt, letter_ids)` returning four floats (A, B, C, D).

# %% [raw]
# # BEGIN QUESTION
# name: letter_logprobs
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def letter_logprobs(model, tokenizer, prompt: str, letter_ids: list) -> list:
    """log p(letter | prompt) for each of the four answer letters."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: one forward pass, log_softmax at the last position, read the four letter ids")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    return torch.log_softmax(logits, dim=-1)[letter_ids].tolist()
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
model = labs.tiny_model(len(tok), hidden_size=64, num_layers=2)  # untrained: expect chance (25%)
print(letter_logprobs(model, tok, prompt, letter_ids))

# %% tags=["check"]
labs.check_letter_logprobs(letter_logprobs)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_letter_logprobs_public(labs, letter_logprobs):
    labs.check_letter_logprobs(letter_logprobs)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_letter_logprobs_hidden(letter_logprobs):
    from zhllm import labs
    from zhllm.ceval import scoring
    from zhllm.labs.ceval_scoring import _letter_prompts

    tok = labs.lab_tokenizer()
    model = labs.tiny_model(len(tok), seed=1)
    _, prompts = _letter_prompts(8, seed=1)
    with labs.one_thread():
        want = [scoring.letter_logprobs(model, tok, [p])[0][0] for p in prompts]
        letters = [labs.lab_letter_ids(tok, p) for p in prompts]
        with labs.kit_switched_off((scoring, "letter_logprobs")):
            got = [[float(x) for x in letter_logprobs(model, tok, p, ids)] for p, ids in zip(prompts, letters)]
    for g, w in zip(got, want):
        assert len(g) == 4 and all(abs(x - float(y)) <= 1e-4 for x, y in zip(g, w)), "wrong on a new prompt"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# Score the whole exam with your function, predict the letter with the highest log-probability,
# and compare with the kit's scorer (batched, one pass for all four letters).

# %%
results = []
for subject, qs in questions.items():
    for question in qs:
        text = ceval.render(question, FORMAT, subjects[subject][0])
        scores = letter_logprobs(model, tok, text, labs.lab_letter_ids(tok, text))
        results.append((subject, "ABCD"[scores.index(max(scores))], question.answer))
kit = score_exam(model, tok, lab_exam, FORMAT)
same = sum(mine[1] == theirs.pred for mine, theirs in zip(results, kit))
print(f"your predictions agree with the kit's on {same} of {len(kit)} questions")

# %% [markdown]
# ## 3 · Exercise 2: the subject-mean average
# C-Eval's official average: compute each subject's accuracy, then take the plain mean over
# subjects, so a 19-question subject weighs as much as a 59-question one. A question without a
# prediction (`None`, e.g. a chain-of-thought answer with no letter) counts as **wrong**, not as
# absent. lm-evaluation-harness instead pools all questions (question-weighted).
#
# Write `subject_mean(results)`, where `results` is a list of `(subject, predicted letter or None,
# gold letter)`, returning a fraction between 0 and 1.

# %% [raw]
# # BEGIN QUESTION
# name: subject_mean
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def subject_mean(results: list) -> float:
    """C-Eval's official average: the mean over subjects of each subject's accuracy."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: per-subject accuracy (None counts as wrong), then the plain mean over subjects")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    per_subject = {}
    for subject, pred, gold in results:
        per_subject.setdefault(subject, []).append(pred == gold)
    return sum(sum(v) / len(v) for v in per_subject.values()) / len(per_subject)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
print(subject_mean([("law", "A", "A"), ("law", None, "B"), ("math", "C", "D")]), "should be 0.25")

# %% tags=["check"]
labs.check_subject_mean(subject_mean)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_subject_mean_public(labs, subject_mean):
    labs.check_subject_mean(subject_mean)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_subject_mean_hidden(subject_mean):
    import random

    from zhllm import labs
    from zhllm.ceval import scoring
    from zhllm.labs import ceval_scoring as checks

    rng = random.Random(1)
    with labs.kit_switched_off((scoring, "summarize"), (checks, "_official_subject_mean")):
        for _ in range(40):
            rows = [(f"s{rng.randint(0, 5)}", rng.choice("ABCD") if rng.random() < 0.9 else None, rng.choice("ABCD"))
                    for _ in range(rng.randint(1, 80))]
            per = {}
            for subject, pred, gold in rows:
                per.setdefault(subject, []).append(pred == gold)
            want = sum(sum(v) / len(v) for v in per.values()) / len(per)
            got = float(subject_mean(list(rows)))
            assert abs(got - want) < 1e-9, f"expected {want:.4f}, got {got:.4f}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 4 · Two averages, one model
# Our untrained model sits at chance, as it should. The kit's summary names both averages; the
# Wilson interval shows how little 48 questions can tell.

# %%
summary = summarize(kit, lab_exam)
print(summary_table(summary))
correct = sum(p == g for _, p, g in results)
low, high = wilson_interval(correct, len(results))
print(f"\nyour subject mean {subject_mean(results):.4f}; question-weighted {correct / len(results):.4f}; "
      f"95% interval of the latter [{low:.2f}, {high:.2f}]")

# %% [markdown]
# The gap is largest when accuracy differs between a large and a small subject:

# %%
skewed = ([("big", "A", "A")] * 180 + [("big", "B", "A")] * 20 +
          [("small", "A", "A")] * 8 + [("small", "B", "A")] * 12)
pooled = sum(p == g for _, p, g in skewed) / len(skewed)
print(f"subject mean {subject_mean(skewed):.3f} vs question-weighted {pooled:.3f}")

# %% [markdown]
# ## Open questions
# 1. The official C-Eval prompt scores `A`; lm-evaluation-harness scores ` A` and drops 考试 from the
#    header. For one and the same model, why can these choices change the score by several points,
#    and what would you need to publish so that others can reproduce your number?
# 2. On C-Eval's 1,346 validation questions a 95% interval is about ±2.7 points at 50% accuracy.
#    Model X beats model Y by 1.5 points. What would you do before claiming X is better — think of scoring both on the
#    same questions (a paired comparison), of CMMLU, and of which average you report?
