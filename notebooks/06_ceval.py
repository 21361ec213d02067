# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · C-Eval and CMMLU: scoring that matches the reference implementations (中文知识评测)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/notebooks/06_ceval.ipynb)
#
# **Goal.** Every Chinese LLM report quotes a C-Eval number, and the numbers are hard to compare
# because each implementation makes small, unstated choices: the official prompt says
# 以下是中国关于**…考试**的单项选择题, lm-evaluation-harness drops 考试 and scores the answer
# `" A"` with a leading space; the official average is the plain mean of the 52 subjects, lm-eval's
# weights subjects by their number of questions. Here every choice is a named prompt format, every
# average is named, the answer token ids are printed, and our scorer is checked against lm-eval
# question by question.
#
# - **tiny** (CPU, offline, < 3 min): the kit's own C-Eval-format exam (built from held-out
#   People's Daily text and reviews) scored for every stage model that exists; real C-Eval val
#   files when present beside the checkout (`../shared/data/ceval`), with lm-eval parity on all
#   1,346 val questions.
# - **colab / full**: the same calls on the hub copies (`ceval/ceval-exam`, `haonan-li/cmmlu`).
#
# Reproduces: C-Eval (Huang et al., 2023) answer-only and chain-of-thought prompts and its
# submission format; CMMLU (Li et al., 2023) prompts and categories; lm-evaluation-harness
# `ceval-valid`.
#
# **Package.** This stage's code is `zhllm.ceval` (`src/zhllm/ceval/`); its docstring says what each module holds.
#
# **In this notebook you will learn**
# - every choice that changes a C-Eval score, as a named prompt format
# - scoring by the log-probability of the answer letter, and the averages the papers quote
# - agreement with lm-evaluation-harness, question by question
#
# **Before this:** notebooks 03 and 04 (the models it scores); log-probabilities.
#
# **Time:** tiny: about 1 min on 2 CPU cores; colab (T4): not yet timed.

# %% [markdown]
# ## Setup
# On Colab this installs the kit; everywhere else it does nothing (install with `make install`).

# %% tags=["install"]
# Colab: install the kit at the versions it is tested with (Colab's own torch is kept), and keep runs/ on
# Google Drive so that stages built once survive the VM. Elsewhere this cell does nothing.
import os
import subprocess
import sys

KEEP_RUNS_ON_DRIVE = True  # False: runs/ stays on the VM and is lost when Colab recycles it
if "google.colab" in sys.modules:
    if not os.path.isdir("zhllm"):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "https://github.com/zhllm/zhllm", "zhllm"], check=True)
    with open("zhllm/constraints.txt") as f:  # the tested versions of everything but torch
        pins = [line for line in f if line.split("==")[0].strip() != "torch"]
    with open("colab-constraints.txt", "w") as f:
        f.writelines(pins)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "colab-constraints.txt", "-e", "./zhllm"],
                   check=True)
    sys.path.insert(0, os.path.abspath("zhllm/src"))
    if KEEP_RUNS_ON_DRIVE:
        from google.colab import drive

        drive.mount("/content/drive")
        os.environ["ZHLLM_RUNS"] = "/content/drive/MyDrive/zhllm/runs"

# %%
import json
import time
from collections import Counter

import matplotlib.pyplot as plt

from zhllm import artifacts, ceval, runtime
from zhllm.ceval import kit_exam as exam, stage as ceval_stage
from zhllm.ceval.scoring import (answer_ids, generate_answers, score_exam, summarize, summary_table,
                                 wilson_interval)
from zhllm.errors import MissingDependencyError
from zhllm.profiles import current, pick

runtime.set_threads()
print(runtime.banner())

# %% tags=["parameters"]
PROFILE = current()          # "tiny" on a CPU, "colab" with a GPU; set ZHLLM_PROFILE to choose
SETTINGS = {
    # real_subjects: C-Eval subjects the base model is scored on here (None = all 52)
    "tiny": dict(real_subjects=["computer_network", "high_school_history"], real_limit=10,
                 cot_questions=3, cot_new_tokens=40, batch_size=16, lmeval_parity=True),
    "colab": dict(real_subjects=None, real_limit=None, cot_questions=52, cot_new_tokens=256,
                  batch_size=8, lmeval_parity=True),
}
CFG = pick(SETTINGS, PROFILE)
print(artifacts.describe_builds("ceval", PROFILE))  # the earlier stages this notebook builds first, if any
CFG

# %% [markdown]
# ## 1 · Data
# ### Real C-Eval
# The C-Eval release is one CSV per subject and split: `dev/<subject>_dev.csv` (5 solved
# questions with an `explanation`, used as shots), `val/` (1,346 questions with answers) and
# `test/` (answers withheld; you submit predictions). The files are CC BY-NC-SA, so the kit never
# ships them: it reads them from `../shared/data/ceval` when present, else from the hub.

# %%
start = time.time()
try:
    CEVAL_DIR = ceval.reference_dir("ceval")
    real = ceval.load_folder(CEVAL_DIR, "val")
except MissingDependencyError as exc:
    print(exc)
    CEVAL_DIR = None
    real = ceval.load_hub("ceval", "val") if PROFILE != "tiny" else None
if real is not None:
    print(f"C-Eval {real.split}: {len(real)} questions in {len(real.questions)} subjects; "
          f"Hard = {len(real.hard)} subjects")
    for cat in ("STEM", "Social Science", "Humanities", "Other"):
        subjects = [s for s, (_, c) in real.subjects.items() if c == cat]
        n = sum(len(real.questions[s]) for s in subjects)
        print(f"  {cat:<15}{len(subjects):>3} subjects {n:>5} questions")

# %% [markdown]
# A raw row as it sits in the file, then the same row parsed. Note the `\r\n` kept inside quoted
# questions: pandas and the hub keep it too, and the tokenizer sees it.

# %%
if CEVAL_DIR is not None:
    raw = (CEVAL_DIR / "val" / "computer_network_val.csv").read_text(encoding="utf-8")
    print(raw[:230])
if real is not None:
    q_real = real.questions["computer_network"][1]
    print(q_real)
    print("\ndev shot explanation:", real.dev["computer_network"][0].explanation[:120])

# %% [markdown]
# ### CMMLU
# Same idea, another layout: `dev/<subject>.csv` and `test/<subject>.csv`, columns
# `,Question,A,B,C,D,Answer`, 67 subjects; its fifth group "China specific" overlaps the other four.

# %%
try:
    cmmlu = ceval.load_folder(ceval.reference_dir("cmmlu"), "test", subjects=["ancient_chinese"])
    q_cmmlu = cmmlu.questions["ancient_chinese"][0]
    print(cmmlu.subjects, len(cmmlu))
    print(ceval.render(q_cmmlu, "cmmlu_5shot", "古汉语", cmmlu.dev["ancient_chinese"])[-220:])
except MissingDependencyError as exc:
    print(exc)

# %% [markdown]
# ### The kit's exam (小考)
# A tiny model cannot answer real C-Eval questions (it would sit at chance, 25%; so do far larger ones:
# Chinese-LLaMA-Alpaca-2 reports 23.8 zero-shot / 26.8 five-shot on the val set for its 1.3B Chinese-Alpaca-2
# and 28.2 / 36.0 for its 7B Chinese-LLaMA-2), so stage 06 also
# builds an exam it *can* learn: eight subjects in C-Eval's four categories — person and place
# names, numerals and time words, review sentiment and word segmentation, word cloze and verbs —
# written in the official layout, with explanations in dev. Val and test come only from held-out
# text (`corpora.*("heldout")`, minus any sentence that also occurs in training text), so no
# training stage has seen them.

# %%
EXAM_DIR = exam.build_exam(artifacts.checkpoint_dir("ceval", PROFILE) / "exam")
val = ceval.load_folder(EXAM_DIR, "val")
test = ceval.load_folder(EXAM_DIR, "test")
print(f"exam: {len(val)} val / {len(test)} test questions; chance = {exam.CHANCE}")
print((EXAM_DIR / "val" / "person_names_val.csv").read_text(encoding="utf-8").splitlines()[1])
for subject, (zh, cat) in val.subjects.items():
    print(f"  {subject:<18}{zh:<8}{cat}")

# %% [markdown]
# ## 2 · Prompts — every choice named
# One question, four formats. The differences are the whole story behind incomparable numbers.

# %%
for name, fmt in ceval.FORMATS.items():
    print(f"{name:<26} shots={fmt.shots} delimiter={fmt.delimiter!r:<5} {fmt.doc}")

# %%
q_show = q_real if real is not None else val.questions["person_names"][0]
shots = (real if real is not None else val).dev[q_show.subject]
zh_name = (real if real is not None else val).subjects[q_show.subject][0]
for name in ("official_zero_shot", "lmeval_ceval_valid"):
    print(f"----- {name} -----")
    print(ceval.render(q_show, name, zh_name, shots))
five = ceval.render(q_show, "official_5shot", zh_name, shots)
print(f"----- official_5shot: {len(five)} characters, ending -----\n…{five[-160:]}")
cot = ceval.render(q_show, "official_cot_5shot", zh_name, shots)
print(f"----- official_cot_5shot: first shot -----\n{cot[:cot.index(chr(10) * 2, 40)]}")

# %% [markdown]
# ### The scored answer token
# We score what the answer adds after the prompt: encode prompt+answer, drop the prompt's tokens
# (lm-eval's rule). With the base model's Llama-style tokenizer, `"A"` right after 答案： and
# `" A"` are different tokens — a model can prefer one and not the other.

# %%
base_dir = artifacts.ensure("base", PROFILE)
model, tokenizer = ceval_stage.load_stage_model("base", PROFILE)
prompt_show = ceval.render(q_show, "official_zero_shot", zh_name)
for delimiter in ("", " "):
    ids = answer_ids(tokenizer, prompt_show, delimiter)
    print(f"delimiter {delimiter!r:<4}", {k: (v, tokenizer.convert_ids_to_tokens(v)) for k, v in ids.items()})

# %% [markdown]
# ## 3 · Scoring
# One forward pass per question, batched and sorted by length; the log-probability of each
# letter's tokens decides. Each stage model that exists is scored on the exam: base models read
# the plain zero-shot prompt, chat models (SFT, DPO) the same text inside their chat template —
# the format they were trained on.

# %%
scored = {}
for stage in ceval_stage.stage_models(PROFILE):
    t0 = time.time()
    scored[stage] = ceval_stage.score_stage(stage, val, test, PROFILE, CFG["batch_size"])
    avg = scored[stage]["summary"]["average"]
    low, high = avg["ci95_question_weighted"]
    print(f"{stage:<5} {scored[stage]['format']:<19} accuracy {avg['question_weighted']:.3f} "
          f"(95% CI {low:.3f}-{high:.3f}) on {avg['n']} questions, {time.time() - t0:.0f} s; "
          f"answer ids {scored[stage]['answer_ids']}")
print()
print(summary_table(scored["base"]["summary"]))

# %% [markdown]
# **Reading the scores.** A base model reads the plain prompt and must put its probability on the right
# letter by itself; after SFT the model has seen exam-format questions on *training* text, so it knows the
# format; whether it answers the held-out questions above chance depends on what it read in pretraining.
# An interval that includes 0.25 is chance.

# %%
for stage, s in scored.items():
    avg = s["summary"]["average"]
    low, high = avg["ci95_question_weighted"]
    verdict = "above chance" if low > exam.CHANCE else "not distinguishable from chance"
    print(f"{stage:<8} {avg['question_weighted']:.3f} (95% CI {low:.3f}-{high:.3f}): {verdict}")

# %% [markdown]
# **Which letter does each model pick?** An accuracy near 0.25 means one of two things. A model that picks
# the same letter for every question scores that letter's share of the answers and has read nothing; a
# model that spreads its picks over A-D and still scores 0.25 is guessing question by question. Small
# models lean on such letter preferences (Zheng et al. 2023, "Large Language Models Are Not Robust
# Multiple Choice Selectors"), so count the picks before reading an accuracy.

# %%
gold = Counter(r.answer for r in next(iter(scored.values()))["results"])
print(f"{'answers':<8} " + "  ".join(f"{k} {gold[k]:>3}" for k in "ABCD"))
for stage, s in scored.items():
    picks, total = Counter(r.pred for r in s["results"]), len(s["results"])
    top, n = picks.most_common(1)[0]
    share = n / total
    reading = ("one letter: its accuracy is that letter's share" if share >= 0.9 else
               "mostly one letter" if share >= 0.6 else "picks spread over the letters")
    print(f"{stage:<8} " + "  ".join(f"{k} {picks[k]:>3}" for k in "ABCD") + f"   {share:.0%} {top} "
          f"(always {top} scores {gold[top] / total:.3f}): {reading}")

# %% [markdown]
# ### The same base model on real C-Eval, three ways
# Two subjects (tiny profile) are enough to see that the format changes the number. Five shots do
# not fit the tiny model's 1,024-token context; `render_fitting` drops shots from the end and the
# count used is reported, never hidden.

# %%
if real is not None:
    rows = {}
    for fmt in ("official_5shot", "official_zero_shot", "lmeval_ceval_valid"):
        res = score_exam(model, tokenizer, real, fmt, CFG["batch_size"], subjects=CFG["real_subjects"],
                         limit=CFG["real_limit"])
        rows[fmt] = summarize(res, real)["average"]
        print(f"{fmt:<20} subject_mean {rows[fmt]['subject_mean']:.3f}  question_weighted "
              f"{rows[fmt]['question_weighted']:.3f}  shots used {sorted({r.shots for r in res})}")

# %% [markdown]
# ### Chain of thought (思维链)
# The CoT format shows the dev explanations as worked answers and lets the model write its own;
# `extract_answer` then looks for the conclusion (所以答案是C, 答案为C, 选C …). A tiny model
# writes nonsense — the point is the mechanism, which is the same for a 7B model.

# %%
cot_results = generate_answers(model, tokenizer, val, "official_cot_5shot",
                               max_new_tokens=CFG["cot_new_tokens"], subjects=["person_names"],
                               limit=CFG["cot_questions"])
for r in cot_results:
    print(f"gold {r.answer} extracted {r.pred}: {r.completion[:80]!r}")

# %% [markdown]
# ### Agreement with lm-evaluation-harness
# lm-eval's own `ceval-valid` task files, pointed at the local CSVs, against our scorer in the
# `lmeval_ceval_valid` format, on the same tiny model (random weights, byte-level BPE trained on
# People's Daily so Chinese is covered). Agreement must be exact on every question.

# %%
agreement, real_metrics = None, {}
if CEVAL_DIR is not None and CFG["lmeval_parity"]:
    scratch = artifacts.checkpoint_dir("ceval", PROFILE) / "lmeval"
    real_metrics, agreement = ceval_stage.real_ceval_metrics(scratch)
    if agreement:
        print({k: v for k, v in agreement.items() if k != "disagreements"})

# %% [markdown]
# ### Submission file
# The C-Eval site takes `{subject: {"id": "letter"}}` for the test split; here for the exam's test.

# %%
stage_last = list(scored)[-1]
print(json.dumps(scored[stage_last]["submission"], ensure_ascii=False)[:200], "…")

# %% [markdown]
# ## Check

# %%
metrics = {"exam_chance": exam.CHANCE, "exam_questions": len(val), **real_metrics}
for stage, s in scored.items():
    metrics.update(ceval_stage.stage_metrics(stage, s["summary"]))
assert len(val) == 30 * len(exam.SUBJECTS) and all(len(v) == 10 for v in test.questions.values())
assert all(0 <= metrics[f"exam_acc_{s}"] <= 1 for s in scored)
# equal-sized subjects: the two averages must coincide on the exam (they do not on real C-Eval)
avg = scored["base"]["summary"]["average"]
assert abs(avg["subject_mean"] - avg["question_weighted"]) < 1e-12
ids_plain, ids_space = answer_ids(tokenizer, prompt_show, ""), answer_ids(tokenizer, prompt_show, " ")
assert len(set(map(tuple, ids_plain.values()))) == 4 and ids_plain != ids_space
if CEVAL_DIR is not None:  # the official files, read whole
    assert len(real) == 1346
if agreement:
    assert agreement["questions"] == 1346 and agreement["agreement"] == 1.0, agreement["disagreements"][:5]
if "sft" in scored:
    low, high = wilson_interval(round(metrics["exam_acc_sft"] * len(val)), len(val))
    met = metrics["exam_acc_sft"] >= exam.CHANCE + 0.10
    print(f"SFT exam accuracy {metrics['exam_acc_sft']:.3f} (95% CI {low:.3f}-{high:.3f}); "
          f"target chance + 0.10 = {exam.CHANCE + 0.10:.2f}: {'met' if met else 'NOT met'}")
print("all checks passed")

# %% [markdown]
# ## Plot — accuracy by stage and category

# %%
categories = list(scored["base"]["summary"]["categories"])
width = 0.8 / len(scored)
fig, ax = plt.subplots(figsize=(7, 3))
for i, (stage, s) in enumerate(scored.items()):
    values = [s["summary"]["categories"][c]["subject_mean"] for c in categories]
    ax.bar([j + i * width for j in range(len(categories))], values, width, label=stage)
ax.axhline(exam.CHANCE, color="grey", linestyle="--", label="chance")
ax.set_xticks([j + width * (len(scored) - 1) / 2 for j in range(len(categories))], categories)
ax.set_ylabel("exam accuracy")
ax.set_ylim(0, 1)
ax.set_title("The kit's exam, by stage and category")
ax.legend()
plt.show()

# %% [markdown]
# ## Save
# `runs/<profile>/ceval/`: the exam, every prediction, the submission file, the lm-eval report and
# `metrics.json`. `zhllm.artifacts.ensure("ceval")` rebuilds the same thing without the notebook.

# %%
metrics["seconds"] = round(time.time() - start, 1)
with artifacts.building("ceval", PROFILE) as out_dir:
    ceval_stage.save(out_dir, EXAM_DIR, scored, metrics, agreement)
artifacts.clear_checkpoints("ceval", PROFILE)
print(artifacts.read_metrics("ceval", PROFILE))

# %% [markdown]
# ## Try it
# Each Try-it changes one entry of `CFG` in the parameters cell; rerun the notebook from there.
# 1. `"real_limit": None` (every val question of the chosen subjects). Expect the accuracy to move by a few
#    points and its confidence interval to narrow: 10 questions a subject say little.
# 2. `"real_subjects": ["law", "physician"]`. Expect accuracies near chance (0.25) for the base model:
#    the tiny model knows no law.
#
# **Going further.** (a) Score one subject with `official_5shot` and `lmeval_ceval_valid_5shot`: which single
# difference (header, delimiter, stripped question) moves the accuracy most? (`dataclasses.replace`
# changes one field.) (b) Write your own exam subject in `zhllm.ceval.kit_exam` (e.g. organisations, tag
# `nt`). (c) `python bench/ceval_speed.py`: where does lm-eval spend the time our scorer saves?

# %% [markdown]
# ## Takeaways
# - A C-Eval number means little without its prompt format, shot count and average.
# - The scored token ("A" or " A") is part of the format: print the token ids.
# - Check a scorer against a reference implementation question by question, not by the mean.
#
# **Lab.** `labs/student/06_ceval_scoring.ipynb`: letter log-probabilities and the subject mean. Teachers: `labs/README.md`.
