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
# # 04 · DPO preference alignment (偏好对齐), measured by an independent judge
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/notebooks/04_dpo.ipynb)
#
# **Goal.** The SFT model (指令微调) follows instructions, but nothing told it which of two possible
# answers people prefer. Direct Preference Optimization trains on pairs — a prompt, a *chosen* reply,
# a *rejected* reply — and raises the chosen reply's likelihood relative to a frozen reference model,
# with no reward model and no sampling during training. Here the prompt asks for a positive (正面)
# review, the chosen reply is a real positive review and the rejected one a real negative review that
# opens the same way. We train with TRL's `DPOTrainer` and LoRA; the reference is the SFT model itself,
# obtained by *disabling the adapter*, so no second copy of the weights is ever loaded. We then ask an
# independent judge — snownlp's sentiment classifier, which training never sees — whether the DPO
# model's sampled reviews are more positive than the SFT model's, and whether they got longer.
#
# Reproduces: DPO (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is
# Secretly a Reward Model") as used by MedicalGPT and Firefly; the implicit reward
# β·log π(y|x)/π_ref(y|x) and its held-out accuracy; DPO's length drift.
#
# **Package.** This stage's code is `zhllm.dpo` (`src/zhllm/dpo/`); its docstring says what each module holds.
#
# **In this notebook you will learn**
# - the DPO recipe in view: `LoraConfig` and `DPOConfig`
# - why the reference model costs nothing here: it is the SFT model with the adapter switched off
# - how to read reward accuracy and margins, and why an independent judge is needed beside them
#
# **Before this:** notebook 03 (the SFT model); log-probabilities of a sequence.
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
import json
import time

import matplotlib.pyplot as plt
import torch
from peft import LoraConfig
from trl import DPOConfig

from zhllm import artifacts, chat, cpt, dpo, figures, runtime
from zhllm.dpo import preferences as preference_data
from zhllm.modeling import count_parameters
from zhllm.profiles import current, pick

runtime.set_threads()
print(runtime.banner())

# %% tags=["parameters"]
PROFILE = current()          # "tiny" on a CPU, "colab" with a GPU; set ZHLLM_PROFILE to choose
CFG = {**pick(dpo.SETTINGS, PROFILE),
       # a Try-it changes a setting here, e.g. "max_steps": 100,
       }
print(artifacts.describe_builds("dpo", PROFILE))  # the earlier stages this notebook builds first, if any
CFG

# %% [markdown]
# ## 1 · The policy: the SFT model
# Built on demand if stage 03 has not run yet. Its tokenizer carries the kit's chat template, and its
# pad token differs from EOS (otherwise the EOS that ends each reply would be masked out).

# %%
start = time.time()
runtime.seed_everything(CFG["seed"])
policy_dir = artifacts.ensure("sft", PROFILE) / "model"
model, tokenizer = dpo.load_policy(policy_dir)
print(f"policy {policy_dir}: {count_parameters(model) / 1e6:.1f}M parameters; "
      f"pad {tokenizer.pad_token!r} != eos {tokenizer.eos_token!r}")

# %% [markdown]
# ## 2 · Preference data (偏好数据)
# Each row is TRL's conversational form: `prompt` (messages ending with a user turn), `chosen` and
# `rejected` (assistant turns). Every row passes the same validator as hub data would
# (`formats.validate_preference`). `pairs_for` returns the training rows and held-out sets by name.
# `reviews` holds pairs of the reviews' held-out split, never trained on: the held-out reward accuracy, the
# bag-of-characters yardstick and the judge below all read them. In the tiny profile the training pairs
# come from the reviews' train split. On colab/full they are a hub preference set's pairs mixed with
# `review_pairs` review pairs, shuffled with the seed, so the policy trains on the task it is judged on;
# a second set, `hub`, holds out `heldout_pairs` hub pairs read after the training ones (the hub set has only
# a train split).

# %%
train_rows, heldout_sets, about = preference_data.pairs_for(PROFILE, CFG)
heldout = heldout_sets["reviews"]  # the review task, which the judge and the yardstick read too
print(about)
print(json.dumps(heldout[0], ensure_ascii=False, indent=1))

# %% [markdown]
# What the model sees: the prompt rendered with the chat template (ending with the assistant header),
# then each reply and the EOS. DPO compares the log-probabilities of the two continuations only.

# %%
row = heldout[0]
print(chat.render(tokenizer, row["prompt"], add_generation_prompt=True) + "⟦…⟧")
print("chosen  :", chat.render(tokenizer, row["prompt"] + row["chosen"])[-60:])
print("rejected:", chat.render(tokenizer, row["prompt"] + row["rejected"])[-60:])

# %% [markdown]
# ## 3 · The trainer: one model, the reference is the adapter switched off
# We hand TRL the *plain* SFT model and a `peft_config`. TRL adds a fresh LoRA adapter (zero at the
# start, so policy = reference) and computes reference log-probabilities inside
# `with model.disable_adapter()`. `trainer.ref_model` stays `None`.
#
# In the tiny profile the embedding and output rows train too (`embeddings: full`, PEFT `modules_to_save`):
# PEFT keeps a trainable copy of those two matrices beside the originals, and switching the adapter off
# switches the copies off as well, so the reference is still exactly the SFT model. That is a copy of two
# matrices, not of the model; on colab/full only LoRA is added.

# %%
figures.dpo_pair(beta=CFG["beta"])

# %% [markdown]
# ### The recipe, in view
# `LoraConfig` says what trains; `DPOConfig` (TRL's `TrainingArguments` plus DPO's own) says how. The values
# come from the parameters cell; `tests/test_notebook_recipes.py` holds these objects equal to what
# `zhllm demo` and `configs/recipes/<profile>/dpo.yaml` use.

# %% tags=["recipe"]
lora = LoraConfig(
    r=CFG["lora_r"],                              # rank of the fresh adapter DPO trains on top of the SFT model
    lora_alpha=CFG["lora_alpha"],                 # scale alpha / r
    lora_dropout=0.0,
    target_modules=cpt.LORA_TARGETS,              # every linear layer of every block
    modules_to_save=cpt.EMBEDDINGS if CFG["embeddings"] == "full" else None,  # tiny: embedding + output rows too
    task_type="CAUSAL_LM",
)

args = DPOConfig(
    output_dir=str(artifacts.checkpoint_dir("dpo", PROFILE)),
    beta=CFG["beta"],                             # how far from the reference the policy may move: 0.1 usual;
                                                  # the tiny policy drifts at 0.1, so it uses 0.5
    learning_rate=CFG["learning_rate"],           # DPO wants small rates: 5e-7 (full) to 5e-5 (LoRA) on 7B
    max_steps=CFG["max_steps"],                   # tiny: about one pass over the pairs
    lr_scheduler_type="cosine", warmup_steps=CFG["warmup_steps"],
    per_device_train_batch_size=CFG["batch_size"],  # pairs per step: each is two sequences, plus the reference's
    gradient_accumulation_steps=CFG["grad_accum"],
    per_device_eval_batch_size=20,
    max_length=CFG["max_length"],                 # prompt + reply tokens; longer pairs lose their end
    activation_checkpointing=CFG["gradient_checkpointing"],  # memory for time; on for the 1.1B model on a T4
    bf16=runtime.dtype_for() == torch.bfloat16, fp16=runtime.dtype_for() == torch.float16,
    logging_steps=max(1, CFG["max_steps"] // 20), save_strategy="no",
    seed=CFG["seed"], data_seed=CFG["seed"],
    use_cpu=not torch.cuda.is_available(), report_to=[], disable_tqdm=True, dataloader_num_workers=0,
)

# %%
trainer = dpo.make_trainer(model, tokenizer, train_rows, heldout, CFG, args.output_dir, args=args, lora=lora)
in_memory = dpo.parameters_in_memory(trainer.model)
print("ref_model:", trainer.ref_model)
print(f"parameters in memory: {in_memory['base']:,} (one copy of the SFT model) + {in_memory['lora']:,} (LoRA)"
      f" + {in_memory['copies']:,} (trainable copies of the embedding / output matrices)")
before = dpo.reward_stats(trainer, heldout[:20])  # a few pairs suffice: every reward is 0 here
print(f"before training: held-out reward accuracy {before['accuracy']:.2f}, margin {before['margin']:.3f} "
      "(all rewards are 0: policy = reference)")

# %% [markdown]
# ## 4 · Train
# The loss is −log σ(β·[(log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)]); TRL logs the
# implicit rewards of both replies, their margin and how often chosen beats rejected.

# %%
train_start = time.time()
trainer.train()
log = dpo.history(trainer)
print(f"trained {CFG['max_steps']} steps in {time.time() - train_start:.0f} s; "
      f"peak memory {runtime.peak_memory_mb():.0f} MiB")

# %%
steps = [h["step"] for h in log]
fig, ax = plt.subplots(1, 3, figsize=(11, 3))
ax[0].plot(steps, [h["loss"] for h in log])
ax[0].axhline(0.6931, color="grey", ls=":")
ax[0].set_title("DPO loss (log 2 at the start)")
ax[1].plot(steps, [h["rewards/chosen"] for h in log], label="chosen")
ax[1].plot(steps, [h["rewards/rejected"] for h in log], label="rejected")
ax[1].legend()
ax[1].set_title("implicit rewards")
ax[2].plot(steps, [h["rewards/accuracies"] for h in log])
ax[2].set_title("reward accuracy (train batches)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5 · Evaluate
# **Reward accuracy and margin on held-out pairs**: does the policy now rate unseen positive reviews
# above unseen negative ones, relative to the reference? On colab/full the hub set's held-out pairs are
# ranked too: what the general preferences taught, on pairs training never saw.

# %%
stats = dpo.reward_stats(trainer)
print(f"held-out reward accuracy {stats['accuracy']:.2f}, mean margin {stats['margin']:.3f}")
hub_stats = dpo.reward_stats(trainer, heldout_sets["hub"]) if "hub" in heldout_sets else None
if hub_stats is not None:
    print(f"hub held-out pairs: reward accuracy {hub_stats['accuracy']:.2f}, mean margin {hub_stats['margin']:.3f}")

# %% [markdown]
# **How separable are these pairs by their words alone?** A bag-of-characters classifier (naive Bayes on
# character 1-2-grams) trained on the same training replies ranks the same held-out pairs. It is the
# yardstick for the reward accuracy: a policy that only learnt which characters are positive lands near it.

# %%
lexical = dpo.lexical_baseline(train_rows, heldout)
print(f"held-out pair accuracy: bag-of-characters {lexical:.2f}, DPO implicit reward {stats['accuracy']:.2f}")

# %% [markdown]
# **The independent judge.** Reward accuracy is measured with the model's own log-probabilities.
# A fairer test asks something outside training: for the same held-out prompts, sample a reply from
# the SFT model (the adapter disabled) and from the DPO model with the same seed, and let snownlp's
# sentiment classifier say which replies are positive (score > 0.5).

# %%
prompts = dpo.judge_prompts(heldout, CFG["judge_prompts"])
gens = dpo.compare(trainer.model, tokenizer, prompts, CFG)
metrics = dpo.summary(stats, gens, time.time() - start, lexical, hub_stats)
print(f"judge: positive rate SFT {metrics['judge_positive_rate_sft']:.2f} -> "
      f"DPO {metrics['judge_positive_rate_dpo']:.2f}")
print(f"mean reply length (characters): SFT {metrics['mean_length_sft']:.1f} -> DPO {metrics['mean_length_dpo']:.1f}")
for i in range(5):
    print(f"\n{prompts[i][-1]['content']}\n  SFT ({gens['sft_scores'][i]:.2f}): {gens['sft'][i]}"
          f"\n  DPO ({gens['dpo_scores'][i]:.2f}): {gens['dpo'][i]}")

# %%
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
ax[0].hist([gens["sft_scores"], gens["dpo_scores"]], bins=10, range=(0, 1), label=["SFT", "DPO"])
ax[0].axvline(0.5, color="grey", ls=":")
ax[0].legend()
ax[0].set_title("judge score (snownlp, > 0.5 = positive)")
ax[1].hist([[len(t) for t in gens["sft"]], [len(t) for t in gens["dpo"]]], bins=10, label=["SFT", "DPO"])
ax[1].legend()
ax[1].set_title("reply length (characters)")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reading the numbers.** DPO sharpens a preference the policy can already express, and two measures say
# whether it did. The implicit reward (the policy's log-ratio against the reference) ranks held-out pairs;
# the bag-of-characters yardstick says how far word counts alone get on the same pairs, so a reward accuracy
# above it means the policy uses more than which characters are positive. The judge, outside training,
# says whether sampled replies changed. Length is the side effect to watch: DPO's summed log-probabilities
# can reward longer replies (more characters also give the judge more positive words).

# %%
gain = metrics["judge_positive_rate_dpo"] - metrics["judge_positive_rate_sft"]
print(f"held-out reward accuracy {metrics['reward_accuracy_heldout']:.3f} vs bag-of-characters "
      f"{lexical:.3f}: {'above' if metrics['reward_accuracy_heldout'] > lexical else 'NOT above'} the yardstick; "
      f"target 0.85 {'met' if metrics['reward_accuracy_heldout'] >= 0.85 else 'NOT met'}")
print(f"judge positive rate {metrics['judge_positive_rate_sft']:.3f} -> {metrics['judge_positive_rate_dpo']:.3f} "
      f"({gain:+.3f}; target +0.15 {'met' if gain >= 0.15 else 'NOT met'})")
print(f"mean reply length {metrics['mean_length_sft']:.1f} -> {metrics['mean_length_dpo']:.1f} characters "
      f"({metrics['mean_length_dpo'] / metrics['mean_length_sft']:.2f}x)")

# %% [markdown]
# ## 6 · Check

# %%
losses = [h["loss"] for h in log]
assert all(l == l for l in losses), "loss finite"
assert trainer.ref_model is None, "the reference is the adapter-disabled policy, not a second model"
results = [
    runtime.check(losses[-1] < losses[0], f"DPO loss fell: {losses[0]:.3f} -> {losses[-1]:.3f}",
                  "too small a learning rate or too few steps"),
    runtime.check(metrics["reward_accuracy_heldout"] > 0.5,
                  f"held-out pairs ranked better than chance: {metrics['reward_accuracy_heldout']:.3f}",
                  "the implicit reward learnt nothing that carries to unseen pairs"),
    runtime.check(gain > 0, f"the judge sees more positive replies after DPO: {gain:+.3f}",
                  "the preference did not reach sampled behaviour"),
]

# %% [markdown]
# ## 7 · Save
# The adapter, and the SFT model with the adapter merged in (`model/`, which stage 06 scores). Only a run
# whose checks passed replaces `runs/<profile>/dpo/`, so a Try-it never changes what notebook 06 loads.

# %%
if all(results):
    with artifacts.building("dpo", PROFILE) as out_dir:
        metrics["seconds"] = round(time.time() - start, 1)
        dpo.save(out_dir, trainer, tokenizer, gens, metrics)
    print("saved to", artifacts.stage_dir("dpo", PROFILE))
else:
    print("not saved: a check did not pass, so notebook 06 keeps the stage it had")
artifacts.clear_checkpoints("dpo", PROFILE)
metrics

# %% [markdown]
# ## Try it
# Each Try-it changes one entry of `CFG` in the parameters cell; rerun the notebook from there. A run
# whose checks print a cross is not saved, so notebook 06 keeps the stage it had.
# 1. `"beta": 0.1` and then `"beta": 2.0`. β is the KL leash: expect a small β to move the policy further
#    (larger length drift, the judge's rate moving more) and a large β to keep it near the SFT model.
# 2. `"embeddings": "none"` (the GPU profiles' setting: LoRA on the layers only). Expect a lower held-out
#    reward accuracy on this small model, further below the bag-of-characters yardstick.
# 3. `"max_steps": 48` (half). Expect smaller margins and a smaller gain in the judge's positive rate.
#
# **Going further.** (a) Build pairs where the chosen review is always the shorter one: does
# `mean_length_dpo` fall? (b) Train TRL's `RewardTrainer` on the same `train_rows` and compare its held-out
# accuracy with DPO's implicit reward: the first step of RLHF with PPO.

# %% [markdown]
# ## Takeaways
# - DPO needs pairs, a frozen reference and one hyperparameter, beta; no reward model and no sampling while training.
# - The implicit reward beta * log(pi / pi_ref) ranks held-out pairs; compare it with what word counts alone can do.
# - Judge the policy's own samples with a model training never saw, and watch the reply length: DPO drifts longer.
#
# **Lab.** `labs/student/04_dpo_loss.ipynb`: sequence log-probabilities and the DPO loss, checked against TRL. Teachers: `labs/README.md`.
