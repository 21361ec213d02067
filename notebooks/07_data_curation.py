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
# # 07 · Data curation (数据清洗与筛选): deduplicate, filter, select — and measure what it buys
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/notebooks/07_data_curation.ipynb)
#
# **Goal.** The literature says data decides: LIMA tuned a 65B model on 1,000 curated examples; "Maybe
# Only 0.5% Data Is Needed" (Chen et al. 2023) picked instruction data by clustering sentence embeddings
# (mean-pooled last hidden states, L2-normalised, K-Means, then KCenterGreedy core-set selection); Panda
# found that mixing general corpora into instruction data weakened the gain from instructions. Here we
# build the curation tools — exact and near-duplicate removal (去重), quality filters that count what they
# remove (质量过滤), and diversity selection (多样性筛选) with the kit's own model — and then test two of
# those claims at small scale, reporting whatever the numbers show.
#
# Reproduces: the selection method of "Maybe Only 0.5% Data Is Needed" (embeddings → K-Means →
# KCenterGreedy) against a random subset of the same size, and Panda's mixing question, as short SFT runs
# at equal compute. With a 7M-parameter model and a minute of training per run, these are tests of the
# *method*, not of the papers' numbers.
#
# **Package.** This stage's code is `zhllm.curation` (`src/zhllm/curation/`); its docstring says what each module holds.
#
# **In this notebook you will learn**
# - exact and near-duplicate removal (MinHash), quality filters that count what they remove
# - diversity selection with the kit's own model: embeddings, K-Means, k-center greedy
# - how to test a curation claim: equal compute, a trivial baseline, and the spread between random seeds
#
# **Before this:** notebook 03 (the SFT recipe the experiments reuse).
#
# **Time:** tiny: about 3 min on 2 CPU cores; colab (T4): not yet timed.

# %% [markdown]
# ## Setup

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
import time
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np

from zhllm import artifacts, curation, runtime, sft
from zhllm.curation import experiments as curation_sft
from zhllm.sft import tasks as sft_data
from zhllm.profiles import current, pick

runtime.set_threads()
print(runtime.banner())

# %% tags=["parameters"]
PROFILE = current()          # "tiny" on a CPU, "colab" with a GPU; set ZHLLM_PROFILE to choose
CFG = {**pick(curation.SETTINGS, PROFILE),
       # a Try-it changes a setting here, e.g. "max_steps": 100,
       }
print(artifacts.describe_builds("curation", PROFILE))  # the earlier stages this notebook builds first, if any
CFG

# %% [markdown]
# ## 1 · The candidate pool: the kit's instruction set plus injected noise
# The pool is stage 03's instruction set (train split). So that deduplication and the filters have
# something known to find, we **inject** corrupted rows — each kind of noise real instruction data has —
# and mark every one in `origin`. Every count below says how much of what was removed was injected and how
# much was real data.

# %%
start = time.time()
runtime.seed_everything(CFG["seed"])
pool, injected = curation.candidate_pool(CFG)
texts = [curation.conversation_text(e) for e in pool]
print(f"{len(pool)} rows:", dict(Counter(e["origin"] for e in pool)))
for kind in curation.NOISE:
    i = next(k for k, e in enumerate(pool) if e["origin"] == f"injected_{kind}")
    print(f"--- injected {kind}: {texts[i][:90]!r}")

# %% [markdown]
# ## 2 · Deduplication: exact, then near-duplicates by MinHash LSH
# **Exact**: texts that are equal after normalisation (NFKC, lower case, no whitespace or punctuation) —
# a re-export with half-width commas is the same row. **Near**: MinHash estimates the Jaccard similarity
# of two texts' sets of character 3-grams (shingles); LSH cuts each signature into bands, and only texts
# that share a whole band are compared. We implement MinHash with numpy (`curation.minhash_signatures`,
# one screen) rather than a library, so each step can be read.

# %%
print(curation.normalize("你好，世界！ Hello"), "==", curation.normalize("你好, 世界 hello"))
a = "今年经济工作的主要任务是保持经济稳定增长，扩大国内需求，深化改革开放"
b = a.replace("稳定", "稳健")
signatures = curation.minhash_signatures([a, b], CFG["num_perm"], CFG["shingle"], CFG["seed"])
print(f"one word changed: Jaccard {curation.jaccard(a, b):.2f}, "
      f"MinHash estimate {np.mean(signatures[0] == signatures[1]):.2f}")

# %%
rows = CFG["num_perm"] // CFG["bands"]
s = np.linspace(0, 1, 101)
plt.figure(figsize=(5, 3))
plt.plot(s, 1 - (1 - s ** rows) ** CFG["bands"])
plt.axvline(CFG["near_threshold"], color="grey", linestyle="--")
plt.xlabel("Jaccard similarity of two texts")
plt.ylabel("P(compared)")
plt.title(f"LSH: {CFG['bands']} bands of {rows} min-hashes")
plt.show()

# %%
result = curation.dedup_and_filter(texts, CFG)   # dedup, then the cheap filters of section 3
for name in ("exact", "near"):
    removed = result[name]
    print(f"{name}: removed {len(removed)}", dict(Counter(pool[i]["origin"] for i in removed)))
real_near = [(i, j) for i, j in result["near"].items() if pool[i]["origin"] == "original"]
print(f"\nnear-duplicates inside the real set ({len(real_near)}):")
for i, j in real_near[:4]:
    print(f"  removed {texts[i][:70]!r}\n  kept    {texts[j][:70]!r}\n")

# %% [markdown]
# Near-duplicates in the real set are worth reading: the review corpus holds the same review under both
# labels (正面 and 负面), so the kit's instruction set has pairs that differ only in their answer — a
# contradiction no amount of training can fit. Dedup keeps the first of each pair; a careful curator
# would also drop the label conflict.
#
# ## 3 · Quality filters, each counting what it removes
# Rules run in order; a row failing two is counted by the first. Length: `min_chars`–`max_chars`
# characters. CJK share: at least `min_cjk_share` of the non-space characters are Chinese. Repetition:
# at most `max_repetition` of the character 3-grams repeat an earlier one.

# %%
for rule, removed in result["removed"].items():
    origins = dict(Counter(pool[i]["origin"] for i in removed))
    print(f"{rule:<11} removed {len(removed):>3}  {origins}")
    for i in [i for i in removed if pool[i]["origin"] == "original"][:2]:
        print(f"{'':<13}real: {texts[i][:80]!r}")

# %% [markdown]
# ## 4 · Perplexity filter with the kit's own model
# The CPT model of stage 02 reads every surviving row once; the same forward pass gives each row's bits
# per character (perplexity) and its embedding (the mean of the last hidden states, L2-normalised), used
# in section 6. A row is removed when its bits per character lie more than `max_bpc_mad` median absolute
# deviations above the pool's median (CCNet filters by perplexity under a model trained on Wikipedia).

# %%
model_dir = artifacts.start_model_dir(PROFILE)   # tiny: the shipped model; else stage 02 (built if missing)
model, tokenizer = curation.scorer(model_dir)
score_start = time.time()
result = curation.perplexity_filter(result, texts, CFG, model, tokenizer)
print(f"scored {len(result['bpc'])} rows in {time.time() - score_start:.0f} s; limit {result['bpc_limit']:.2f} "
      f"bits/char; removed {len(result['removed']['perplexity'])}",
      dict(Counter(pool[i]["origin"] for i in result["removed"]["perplexity"])))
for i in [i for i in result["removed"]["perplexity"] if pool[i]["origin"] == "original"][:3]:
    print(f"  real: {texts[i][:80]!r}")

# %%
plt.figure(figsize=(6, 3))
plt.hist(result["bpc"], bins=60, color="grey", label="all scored rows")
plt.axvline(result["bpc_limit"], color="red", linestyle="--", label="limit")
plt.xlabel("bits per character under the CPT model")
plt.ylabel("rows")
plt.legend()
plt.show()
metrics = {"pool_examples": len(pool), **injected, **curation.counts(result),
           **curation.injected_caught(result, pool)}
{k: v for k, v in metrics.items() if "removed" in k}

# %% [markdown]
# ## 5 · The same pass on real raw text
# People's Daily paragraphs and product reviews, no injected noise: every count is real. The reviews
# hold many exact duplicates (the same review scraped twice, boilerplate hotel replies); People's Daily
# has short captions ("图片：") that the length rule removes. The perplexity filter reads a sample of
# `raw_scored` survivors of each corpus.

# %%
raw = curation.raw_corpora(CFG)
raw_results = {name: curation.clean(docs, CFG, model, tokenizer, CFG["raw_scored"]) for name, docs in raw.items()}
for name, res in raw_results.items():
    metrics.update(curation.counts(res, f"{name}_"))
    print(f"{name}: {len(raw[name])} documents ->", curation.counts(res))
    for kind, removed in [("near", res["near"]), *res["removed"].items()]:
        if removed:
            i = next(iter(removed))
            print(f"   {kind:<11} e.g. {raw[name][i][:70]!r}")

# %% [markdown]
# ## 6 · Diversity selection: embeddings → K-Means → KCenterGreedy, and a random control
# Chen et al. cluster the embeddings with K-Means, then pick inside each cluster by KCenterGreedy: start
# from the point nearest the centroid, then repeatedly add the point farthest from everything chosen so
# far. Each cluster gets one pick, and the rest of `select` in proportion to its size. The control is a random
# subset of the same size. The *coverage radius* (the largest distance from any row to its nearest chosen row)
# is what KCenterGreedy minimises; the mean distance is how close a typical row is to the subset.

# %%
embeddings, clean_rows = result["embeddings"], result["scored"]
chosen, labels = curation.diverse_selection(embeddings, CFG["select"], CFG["clusters"], CFG["seed"])
control = curation.random_selection(len(clean_rows), CFG["select"], CFG["seed"])
metrics["coverage_selected"], metrics["coverage_mean_selected"] = curation.coverage(embeddings, chosen)
metrics["coverage_random"], metrics["coverage_mean_random"] = curation.coverage(embeddings, control)
print(f"{len(chosen)} selected, {len(control)} random of {len(clean_rows)} clean rows")
print(f"distance to the nearest chosen row: largest (radius) selected {metrics['coverage_selected']:.3f}, "
      f"random {metrics['coverage_random']:.3f}; mean selected {metrics['coverage_mean_selected']:.4f}, "
      f"random {metrics['coverage_mean_random']:.4f}")
for c in range(CFG["clusters"]):   # what K-Means found: the task mix of each cluster
    tasks = Counter(pool[clean_rows[k]]["task"] for k in np.flatnonzero(labels == c))
    print(f"cluster {c:>2}: {sum(tasks.values()):>4} rows  {dict(tasks.most_common(3))}")
print("selected by task:", dict(Counter(pool[clean_rows[k]]["task"] for k in chosen)))
print("random by task:  ", dict(Counter(pool[clean_rows[k]]["task"] for k in control)))

# %%
centered = embeddings - embeddings.mean(0)
xy = centered @ np.linalg.svd(centered, full_matrices=False)[2][:2].T   # the first two principal axes
plt.figure(figsize=(6, 4))
plt.scatter(*xy.T, c=labels, s=4, cmap="tab20", alpha=0.4)
plt.scatter(*xy[control].T, s=14, facecolors="none", edgecolors="grey", label="random")
plt.scatter(*xy[chosen].T, s=14, marker="x", color="black", label="KCenterGreedy")
plt.legend()
plt.title("clean pool: CPT-model embeddings (PCA), coloured by K-Means cluster")
plt.show()

# %% [markdown]
# ## 7 · Experiment 1: SFT on the selected subset vs a random subset vs the full clean set
# Each arm trains a fresh LoRA on the CPT model with stage 03's settings for the same number of steps
# (`sft_steps` batches of `sft_batch` rows), so every arm has the same compute: the small subsets are seen
# more than once, the full set only in part (the cell prints each arm's passes over its data). Each is
# scored on stage 03's held-out tasks (up to `eval_per_task` per task: in tiny, every held-out example).
#
# **The score** `sft_score` = the mean over the five tasks of (task score − the trivial baseline's score):
# 0 means "as good as always answering the majority label, every character a word, no entities, the cue
# alone", negative means worse. We also report the stop rate and the held-out **reply loss** (nats per reply
# token, teacher-forced), which moves smoothly long before greedy answers are exactly right.

# %%
sft_cfg = curation_sft.sft_settings(CFG, PROFILE)
heldout = sft.heldout_examples(sft_cfg)
baseline = sft_data.score(heldout, sft_data.baseline_replies(heldout))
arms = {"selected": [pool[clean_rows[k]] for k in chosen], "random": [pool[clean_rows[k]] for k in control],
        "full": [pool[i] for i in clean_rows]}
scores, histories = {}, {}
for name, examples in arms.items():
    arm_start = time.time()
    scores[name], histories[name] = curation_sft.sft_arm(model_dir, examples, heldout, sft_cfg,
                                                     artifacts.checkpoint_dir("curation", PROFILE) / name)
    metrics.update(curation_sft.arm_metrics(name, scores[name], baseline))
    passes = sft_cfg["max_steps"] * sft_cfg["batch_size"] / len(examples)
    print(f"{name:<9} {len(examples):>5} examples ({passes:.1f} passes), {time.time() - arm_start:.0f} s: "
          f"sft_score {metrics[f'sft_score_{name}']:+.3f}, reply loss {scores[name]['reply_loss']:.3f}")

# %% [markdown]
# ## 8 · Experiment 2: instructions mixed with raw corpus text vs instructions alone (Panda)
# The random subset again, now with as many cleaned People's Daily paragraphs mixed in as plain
# language-modelling rows (every token in the loss), for the same number of steps. "Instructions alone" is
# the random arm of experiment 1, the same run.

# %%
corpus = curation_sft.mixed_corpus(raw["people_daily"], raw_results["people_daily"]["kept"], CFG["select"],
                                   CFG["mix_raw_share"], CFG["seed"])
print(f"{len(arms['random'])} instructions + {len(corpus)} People's Daily paragraphs, e.g. {corpus[0][:60]!r}")
scores["mixed"], histories["mixed"] = curation_sft.sft_arm(model_dir, arms["random"], heldout, sft_cfg,
                                                       artifacts.checkpoint_dir("curation", PROFILE) / "mixed",
                                                       corpus)
metrics.update(curation_sft.arm_metrics("mixed", scores["mixed"], baseline))
metrics["mix_score_instructions_only"] = metrics["sft_score_random"]
metrics["mix_score_with_corpus"] = metrics["sft_score_mixed"]

# %%
print(f"{'task':<14}{'baseline':>9}" + "".join(f"{name:>10}" for name in scores))
for task in [*baseline, "stop_rate", "reply_loss"]:
    row = "".join(f"{s[task]:>10.3f}" for s in scores.values())
    print(f"{task:<14}{baseline.get(task, float('nan')):>9.3f}{row}")
print(f"{'sft_score':<14}{0:>9.3f}" + "".join(f"{metrics[f'sft_score_{n}']:>+10.3f}" for n in scores))
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
for name, history in histories.items():
    ax[0].plot([h["step"] for h in history], [h["loss"] for h in history], label=name)
ax[0].set_xlabel("step")
ax[0].set_ylabel("training loss")
ax[0].legend()
ax[1].bar(list(scores), [s["reply_loss"] for s in scores.values()], color=["black", "grey", "green", "orange"])
ax[1].set_ylabel("held-out reply loss (nats/token)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 9 · Save the stage

# %%
with artifacts.building("curation", PROFILE) as out_dir:
    metrics["seconds"] = round(time.time() - start, 1)
    artifacts.write_metrics(out_dir, metrics)
artifacts.clear_checkpoints("curation", PROFILE)
{k: round(v, 3) for k, v in metrics.items() if k.startswith(("sft_score", "mix_", "dedup_", "filter_"))}

# %% [markdown]
# ## Reading the numbers
# The differences that matter, printed from this run. With n held-out examples of a task, one answer moves
# its score by 1/n and `sft_score` by a fifth of that (n = 100, 200 for sentiment, in tiny: at most 0.002 of
# `sft_score` per answer), so a difference of a few hundredths is a handful of answers; the reply loss
# averages over every reply token and is steadier.

# %%
for a, b in [("selected", "random"), ("full", "selected"), ("mixed", "random")]:
    print(f"{a:>8} - {b:<8}  sft_score {metrics[f'sft_score_{a}'] - metrics[f'sft_score_{b}']:+.3f}   "
          f"reply loss {scores[a]['reply_loss'] - scores[b]['reply_loss']:+.3f}   "
          f"stop rate {scores[a]['stop_rate'] - scores[b]['stop_rate']:+.3f}")

# %% [markdown]
# **Reading this run.** Each sentence below is built from this run's metrics. The filters are judged by the
# rows they were built to catch (the injected ones); the experiments by `sft_score` (above 0 = better than
# the trivial baseline on average) and by the reply loss, which is steadier at this size.

# %%
k = CFG["injected_per_kind"]
print(f"dedup removed {metrics['dedup_removed_injected']} of {2 * k} injected copies; "
      f"length removed {metrics['length_removed_injected']} of {k} too-short rows, CJK share "
      f"{metrics['cjk_removed_injected']} of {k} English rows, perplexity {metrics['perplexity_removed_injected']} "
      f"of {k} garbled rows")
print(f"KCenterGreedy's coverage radius {metrics['coverage_selected']:.3f} vs random {metrics['coverage_random']:.3f} "
      f"({'smaller: no row far from the selection' if metrics['coverage_selected'] < metrics['coverage_random'] else 'NOT smaller'})")
ranked = sorted(scores, key=lambda n: metrics[f"sft_score_{n}"], reverse=True)
for name in ranked:
    score = metrics[f"sft_score_{name}"]
    print(f"{name:<9} sft_score {score:+.3f} ({'above' if score > 0 else 'NOT above'} the trivial baseline), "
          f"reply loss {scores[name]['reply_loss']:.3f}")
print(f"selected vs random at equal compute: sft_score {metrics['sft_score_selected'] - metrics['sft_score_random']:+.3f}, "
      f"reply loss {scores['selected']['reply_loss'] - scores['random']['reply_loss']:+.3f} "
      f"(negative loss difference = selection helped)")
print(f"raw text mixed in (Panda) vs instructions alone: sft_score "
      f"{metrics['mix_score_with_corpus'] - metrics['mix_score_instructions_only']:+.3f}; at equal steps half "
      "the mixed arm's rows are raw text, so its instructions get half the updates")

# %% [markdown]
# What the numbers usually show at this size: the cheap rules catch what they were built for and the
# perplexity filter catches the garbled rows, and also removes real rows unlike the model's pretraining text
# (slash-separated segmentation answers, for instance: CCNet's Wikipedia-trained filter has the same bias).
# Diversity selection covers the pool better by construction; whether that buys held-out score at equal
# compute is what the selected-vs-random line measures. A difference of a few hundredths in `sft_score` is a
# handful of answers (one answer moves a task score by 1/n, n its held-out examples).

# %% [markdown]
# ## Check

# %%
assert metrics["dedup_removed_injected"] >= 0.9 * 2 * CFG["injected_per_kind"], "dedup finds the injected copies"
for rule, kind in [("length", "too_short"), ("cjk", "not_chinese"), ("perplexity", "garbled")]:
    assert metrics[f"{rule}_removed_injected"] >= 0.8 * CFG["injected_per_kind"], f"{rule} finds {kind} rows"
assert metrics["reviews_dedup_exact_removed"] > 0, "the real reviews hold duplicates"
assert metrics["coverage_selected"] < metrics["coverage_random"], "KCenterGreedy covers the pool better"
assert all(s["stop_rate"] >= 0 and np.isfinite(s["reply_loss"]) for s in scores.values())
best = max(scores, key=lambda n: metrics[f"sft_score_{n}"])
print(f"best arm at equal compute: {best}, sft_score {metrics[f'sft_score_{best}']:+.3f} "
      f"({'above' if metrics[f'sft_score_{best}'] > 0 else 'NOT above'} the trivial baseline)")
print("all checks passed")

# %% [markdown]
# ## Try it
# Each Try-it changes one entry of `CFG` in the parameters cell; rerun the notebook from there.
# 1. `"near_threshold": 0.5`. Expect near-dedup to remove more rows, some of them only rows that share a
#    prompt template rather than duplicates.
# 2. `"select": 120`, then `"select": 480`, each also with `"seed": 1`. Compare the selected-vs-random gap
#    with the gap between the two seeds' random subsets: a gap smaller than the seeds' spread is not a result.
# 3. `"mix_raw_share": 0.2`. Expect the mixed arm nearer the instructions-only arm: less raw text dilutes less.
#
# **Going further.** Give the mixed arm twice the steps so its instructions get as many updates as the
# instructions-only arm; drop the label conflicts found in section 2 and rerun experiment 1.

# %% [markdown]
# ## Takeaways
# - Count every row a filter removes and say why; silent loss is a bug.
# - Near-duplicates hide behind small edits: MinHash finds them in linear time.
# - Compare a curated subset with random subsets of the same size at the same compute, and with the spread between seeds.
#
# **Lab.** `labs/student/07_minhash_dedup.ipynb`: shingles, MinHash signatures and the Jaccard estimate. Teachers: `labs/README.md`.
