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
# # 03 · Supervised fine-tuning (指令微调) with a template and labels you can check
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/notebooks/03_sft.ipynb)
#
# **Goal.** The continued-pretrained model (stage 02) continues text; it does not answer. Supervised
# fine-tuning shows it conversations — a user turn, the reply we want — and trains it to produce the
# reply *and then stop*. Most SFT bugs are silent: the pad token set to EOS (so EOS is masked out of the
# loss and the model never stops), truncation that cuts the final EOS, a chat template at training that
# differs from the one at inference, prompt tokens left in the loss, packed examples that attend to each
# other. Each is ruled out here by construction and shown on a real example.
#
# We train with TRL's `SFTTrainer` and LoRA (QLoRA on a GPU), on an instruction set the kit builds from
# its corpora — word segmentation (分词), named entities (命名实体), sentiment (情感分类), review writing,
# and two-turn conversations — and score every task before and after against a trivial baseline.
#
# Reproduces: the assistant-only loss and EOS handling of Chinese-LLaMA-Alpaca-2 / Firefly / LLaMA-Factory
# (without their pad = EOS bug), and the "SFT teaches format and stopping" observation, measured.
#
# **Package.** This stage's code is `zhllm.sft` (`src/zhllm/sft/`); its docstring says what each module holds.
#
# **In this notebook you will learn**
# - the SFT recipe in view: `LoraConfig` and `SFTConfig` (plus `BitsAndBytesConfig` for QLoRA)
# - a chat template, a pad token different from EOS, and labels only on the replies: why each matters
# - how to tell form (stopping, reply shape) from content (right answers), each against a trivial baseline
#
# **Before this:** notebook 02 (or the shipped model, which the tiny profile starts from); the idea of a loss mask.
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

import matplotlib.pyplot as plt
import torch
from peft import LoraConfig
from transformers import BitsAndBytesConfig
from trl import SFTConfig

from zhllm import artifacts, chat, cpt, figures, formats, sft, runtime
from zhllm.sft import tasks as sft_data
from zhllm.errors import DataError
from zhllm.modeling import count_parameters
from zhllm.profiles import current, pick

runtime.set_threads()
print(runtime.banner())

# %% tags=["parameters"]
PROFILE = current()          # "tiny" on a CPU, "colab" with a GPU; set ZHLLM_PROFILE to choose
CFG = {**pick(sft.SETTINGS, PROFILE),
       # a Try-it changes a setting here, e.g. "max_steps": 100,
       }
# the model it starts from: the shipped checkpoint (tiny), or stage 02's with $ZHLLM_START_FROM=cpt
print("starts from", artifacts.start_from(PROFILE))
print(artifacts.describe_builds("sft", PROFILE))  # the earlier stages this notebook builds first, if any
CFG

# %% [markdown]
# ## 1 · Instruction data in any common shape, normalised to `messages`
# Alpaca / BELLE rows (`instruction`, `input`, `output`), ShareGPT rows (`conversations` with
# `from`/`value`, as Firefly and MOSS publish them) and plain `messages` all become one list of
# `{"role", "content"}` turns. A bad row is an error that names the row and the field; with
# `strict=False` bad rows are removed *and counted*, never dropped silently.

# %%
raw = [
    {"instruction": "把下面的句子翻译成英文。", "input": "今天天气很好。", "output": "The weather is nice today."},
    {"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！有什么可以帮你？"}]},
    {"messages": [{"role": "user", "content": "1+1=?"}, {"role": "assistant", "content": "2"}]},
    {"instruction": "写一首诗。", "output": ""},                                       # empty reply
    {"conversations": [{"from": "gpt", "value": "我先说"}, {"from": "human", "value": "好"}]},  # order
]
try:
    formats.normalize_rows(raw, source="demo rows")
except DataError as err:
    print("strict:", err)
conversations, report = formats.normalize_rows(raw, source="demo rows", strict=False)
print(formats.describe(report))
conversations[0]

# %% [markdown]
# ## 2 · The kit's instruction set (tiny profile: built by code from the corpora)
# Train examples come only from the corpora's train splits, held-out ones only from held-out splits;
# every task has a trivial baseline to beat (every character a word; no entities; the majority label;
# the review's opening alone).

# %%
start = time.time()
runtime.seed_everything(CFG["seed"])
train_examples, train_report = sft.training_examples(PROFILE, CFG)
print({k: v for k, v in train_report.items() if k != "errors"})
for task in train_report["examples"]:
    example = next(e for e in train_examples if e["task"] == task)
    print(f"--- {task}")
    for message in example["messages"]:
        print(f"  {message['role']:>9}: {message['content']}")

# %% [markdown]
# ## 3 · One template for training and inference; loss only on the replies
# The CPT model is a base model, so the kit stores its own template in the tokenizer (a hub chat model
# keeps its own). The pad token must differ from EOS: collators mask padding out of the loss, and with
# pad == EOS the EOS label would go too.

# %% [markdown]
# ### The recipe, in view
# Three library objects are the whole SFT recipe: how the base weights are stored (`BitsAndBytesConfig`,
# QLoRA's 4-bit NF4; the tiny profile trains in fp32 and has none), what trains (`LoraConfig`), and how
# (`SFTConfig`, TRL's `TrainingArguments`). The values come from the parameters cell; edit them there or
# here. `tests/test_notebook_recipes.py` holds these objects equal to what `zhllm demo` and
# `configs/recipes/<profile>/sft.yaml` use.

# %% tags=["recipe"]
quantization = BitsAndBytesConfig(
    load_in_4bit=True,                            # store the frozen base weights in 4 bits (QLoRA)
    bnb_4bit_quant_type="nf4",                    # NormalFloat4: 16 levels spaced for normally distributed weights
    bnb_4bit_use_double_quant=True,               # quantise the per-block scales too: ~0.4 bits/parameter saved
    bnb_4bit_compute_dtype=runtime.dtype_for(),   # weights are dequantised to this for each matmul (fp16 on a T4)
) if CFG["quantization"] == "4bit" else None      # tiny: None, the 6.9M-parameter model trains in fp32

lora = LoraConfig(
    r=CFG["lora_r"],                              # rank of the update B·A; 8-64 is usual (tiny: 64 of 256 dims)
    lora_alpha=CFG["lora_alpha"],                 # the update is scaled by alpha / r
    lora_dropout=0.0,                             # 0.05-0.1 on large sets; 0 for a few hundred steps
    target_modules=cpt.LORA_TARGETS,              # every linear layer of every block (QLoRA's choice), not only q, v
    modules_to_save=cpt.EMBEDDINGS if CFG["embeddings"] == "full" else None,  # embedding + output rows train too
    task_type="CAUSAL_LM",
)

args = SFTConfig(
    output_dir=str(artifacts.checkpoint_dir("sft", PROFILE)),  # checkpoints, kept until the stage completes
    max_steps=CFG["max_steps"],                   # optimiser steps (tiny: about one pass over the examples)
    per_device_train_batch_size=CFG["batch_size"],  # conversations per step (packed into one row when packing)
    learning_rate=CFG["learning_rate"],           # LoRA takes ~10x a full fine-tune's rate: 2e-4 on 7B, 1e-3 tiny
    lr_scheduler_type="cosine",                   # warm up, then decay to 0 by max_steps
    warmup_steps=CFG["warmup_steps"],
    max_length=CFG["max_length"],                 # longer conversations are removed and counted, never cut
    activation_checkpointing=bool(CFG["quantization"]),  # recompute activations: memory for time (on for QLoRA)
    bf16=runtime.dtype_for() == torch.bfloat16,   # mixed precision where the GPU has bf16 (A100/H100)
    fp16=runtime.dtype_for() == torch.float16,    # ... fp16 on a T4; fp32 on a CPU
    logging_steps=max(1, min(10, CFG["max_steps"] // 10)),
    save_strategy="steps", save_steps=max(CFG["max_steps"] // 4, 1), save_total_limit=1,  # resume after a crash
    seed=CFG["seed"], data_seed=CFG["seed"],      # same seed, same LoRA start and data order
    use_cpu=not torch.cuda.is_available(), report_to=[], disable_tqdm=True, dataloader_num_workers=0,
)

# %%
model_dir = artifacts.start_model_dir(PROFILE)   # tiny: the shipped model; else stage 02 (built if missing)
model, tokenizer = sft.load_policy(model_dir, CFG, lora=lora, quantization=quantization)
model.print_trainable_parameters()
print(f"pad {tokenizer.pad_token!r} (id {tokenizer.pad_token_id}) != eos {tokenizer.eos_token!r} "
      f"(id {tokenizer.eos_token_id})")
conversation = next(e for e in train_examples if e["task"] == "multiturn")["messages"]
print(chat.render(tokenizer, conversation))

# %% [markdown]
# The training render of a conversation is exactly the inference render (the prompt up to
# `### Assistant:`) plus the reply and EOS — `build_labels` checks this token by token for every turn
# and raises otherwise. Below, the tokens that train are inside ⟦ ⟧: only the replies and their EOS.

# %%
encoded = chat.build_labels(tokenizer, conversation, CFG["max_length"])
print(chat.show_labels(tokenizer, encoded["input_ids"], encoded["labels"]))
prompt_ids = chat.encode_prompt(tokenizer, conversation[:1])
assert encoded["input_ids"][:len(prompt_ids)] == prompt_ids, "inference prompt is a prefix of training"

# %%
# too long is removed and counted, never cut: a cut would lose the EOS
rows, encode_report = sft.encode_examples(tokenizer, train_examples, CFG["max_length"])
lengths = [len(r["input_ids"]) for r in rows]
print(f"{len(rows)} rows, {sum(lengths):,} tokens, longest {max(lengths)}")

# %% [markdown]
# Three of these rows batched two ways: padded to the longest (hatched cells are waste), and packed
# back to back (`packing=True`), where position ids restart at each example and the attention mask is
# block-diagonal, so no token attends across examples. In training, `chat.pack_rows` fills rows as wide as
# the batch's longest example: attention costs each row's length squared, so one row per batch would cost
# more. Grey tokens are the prompt (label -100), orange the reply, red the EOS: only orange and red are in
# the loss.

# %%
few = sorted(rows[:12], key=lambda r: len(r["input_ids"]))[:3]
figures.packing_and_labels([r["input_ids"] for r in few], [r["labels"] for r in few],
                           tokens=[tokenizer.convert_ids_to_tokens(r["input_ids"]) for r in few],
                           eos_id=tokenizer.eos_token_id)

# %% [markdown]
# ## 4 · Before training: baselines and the untrained model

# %%
heldout = sft.heldout_examples(CFG)
baseline = sft_data.score(heldout, sft_data.baseline_replies(heldout))
# the first quarter of each task, with the new adapter disabled: its B is zero, so the model is the same
before, before_replies, before_heldout = sft.evaluate_before_training(model, tokenizer, CFG)
print(f"the untrained model read on {len(before_heldout)} of the {len(heldout)} held-out examples")
print(f"{'task':<14}{'baseline':>10}{'before':>10}")
for task in baseline:
    print(f"{task:<14}{baseline[task]:>10.3f}{before[task]:>10.3f}")
print(f"stop rate before: {before['stop_rate']:.2f}")

# %% [markdown]
# ## 5 · Train with `SFTTrainer` and LoRA
# The rows already carry their labels, and TRL keeps given labels as they are. Checkpoints are kept
# until the stage completes: rerun this cell after an interruption and it resumes.

# %%
train_start = time.time()
history = sft.train(model, tokenizer, rows, artifacts.checkpoint_dir("sft", PROFILE), CFG, args=args)
train_seconds = time.time() - train_start
print(f"{CFG['max_steps']} steps in {train_seconds:.0f} s")
plt.figure(figsize=(6, 3))
plt.plot([h["step"] for h in history], [h["loss"] for h in history])
plt.xlabel("step")
plt.ylabel("loss on reply tokens")
plt.title("SFT")
plt.show()

# %% [markdown]
# ## 6 · After training: every task against its baseline, and does it stop?

# %%
after, after_replies = sft.evaluate(model, tokenizer, heldout, CFG)
print(f"{'task':<14}{'baseline':>10}{'before':>10}{'after':>10}")
for task in baseline:
    print(f"{task:<14}{baseline[task]:>10.3f}{before[task]:>10.3f}{after[task]:>10.3f}")
print(f"stop rate: before {before['stop_rate']:.2f}, after {after['stop_rate']:.2f}")

# %%
names = list(baseline) + ["stop_rate"]
x = range(len(names))
plt.figure(figsize=(8, 3))
for shift, (label, scores) in zip((-0.27, 0, 0.27), [("baseline", baseline), ("before", before), ("after", after)]):
    plt.bar([i + shift for i in x], [scores.get(n, float("nan")) for n in names], width=0.27, label=label)
plt.xticks(list(x), names)
plt.ylabel("score")
plt.title("Held-out tasks: trivial baseline, before and after SFT")
plt.legend()
plt.show()

# %%
prompts = sft_data.turn_prompts(heldout)
tasks, before_tasks = sft_data.turn_tasks(heldout), sft_data.turn_tasks(before_heldout)
for task in sft_data.TASKS[:-1]:      # the first held-out prompt of each task, before and after
    i = tasks.index(task)
    (old, _), (new, stopped) = before_replies[before_tasks.index(task)], after_replies[i]
    print(f"[{task}] {prompts[i][-1]['content']}\n  before: {old[:70]!r}\n  after:  {new[:70]!r}"
          f"{'' if stopped else '  (no EOS within the limit)'}")

# %% [markdown]
# **Decoding is part of the recipe.** Every reply above is greedy, with the repetition controls chat
# models are served with (`chat.DECODING`): a repetition penalty on tokens already in the context and no
# 5-token sequence twice. Plain greedy decoding of the same model on the review prompts, side by side:

# %%
review_examples = [e for e in heldout if e["task"] == "review"]
print(f"decoding: {chat.DECODING}")
for name, decoding in (("plain greedy", chat.GREEDY), ("kit decoding", chat.DECODING)):
    scores, replies = sft.evaluate(model, tokenizer, review_examples, CFG, decoding=decoding)
    print(f"{name:<13} stop rate {scores['stop_rate']:.2f}, review judged as asked {scores['review']:.2f}; "
          f"first reply: {replies[0][0][:40]!r}")

# %% [markdown]
# **Does the model read the instruction?** The review prompts for 正面 and 负面 differ in one character. If
# the model used it, its first reply token would be distributed differently for the two; the total
# variation distance between the two next-token distributions says how much (0 = it ignores the label).

# %%
for cue in ("房间", "价格"):
    print(f"cue {cue}: total variation between the 正面 and 负面 prompts "
          f"{sft.label_sensitivity(model, tokenizer, cue):.3f}")
print(f"replies in their task's form: before {before['format_rate']:.2f}, after {after['format_rate']:.2f}")

# %% [markdown]
# **Reading the table.** Two things are learnt in SFT, and the table separates them. The *form* — stopping
# with EOS and replying in the task's shape (a label from the two, the NER layout 人名：…；地名：…；机构名：…,
# words joined by "/", a plain review) — comes from the instruction data alone. The *content* — the right
# label, the right words, the entities actually in the sentence — has to come from what the model learnt in
# pretraining: SFT only teaches it to show it (LIMA's "superficial alignment"). The tiny profile starts from
# the kit's long-trained checkpoint (`models/tiny-zh-v1`); with `ZHLLM_START_FROM=cpt` it starts from the
# minute-long stage-02 model instead, and the form is still learnt while the content is not.

# %%
def reading(task, target=None):
    gain = after[task] - baseline[task]
    verdict = f"{'above' if gain > 0 else 'NOT above'} its trivial baseline {baseline[task]:.3f}"
    if target is not None:
        verdict += f"; target {target}: {'met' if after[task] >= target else 'NOT met'}"
    return f"{task:<13} {before[task]:.3f} -> {after[task]:.3f}  ({verdict})"


print(f"form:    stop rate {before['stop_rate']:.2f} -> {after['stop_rate']:.2f}, "
      f"replies in their task's form {before['format_rate']:.2f} -> {after['format_rate']:.2f}")
print("content:")
for task in baseline:
    print("  " + reading(task, 0.80 if task == "sentiment" else None))

# %% [markdown]
# ## 7 · Check

# %%
losses = [h["loss"] for h in history]
assert all(l == l for l in losses), "loss finite"
results = [runtime.check(losses[-1] < losses[0], f"loss fell: {losses[0]:.2f} -> {losses[-1]:.2f}",
                         "a learning rate too small or too large, or too few steps, keeps it from falling"),
           runtime.check(after["sentiment"] > baseline["sentiment"],
                         f"sentiment accuracy {after['sentiment']:.3f} above the majority label's {baseline['sentiment']:.3f}",
                         "the label comes from what pretraining taught; too few steps leave it at the majority label")]
print(f"stop rate {after['stop_rate']:.2f} (target 0.95: {'met' if after['stop_rate'] >= 0.95 else 'NOT met'}), "
      f"reply form {after['format_rate']:.2f} (target 0.95: {'met' if after['format_rate'] >= 0.95 else 'NOT met'})")

# %% [markdown]
# ## 8 · Save the stage
# Only a run whose checks all passed replaces `runs/<profile>/sft/`, so a Try-it never changes what
# notebooks 04 and 06 load. LoRA is merged (into the dequantised 4-bit weights under QLoRA, as in stage 02) and the tokenizer is
# saved with its chat template, so stage 04 and stage 06 use exactly this template.

# %%
metrics = sft.metrics_from(before, after, baseline, len(rows))
metrics["trainable_params"] = count_parameters(model, trainable_only=True)
metrics["seconds"] = round(time.time() - start, 1)
if all(results):
    with artifacts.building("sft", PROFILE) as out_dir:
        sft.save(out_dir, sft.merged_model(model, model_dir, out_dir, CFG), tokenizer, metrics, history)
    print("saved to", artifacts.stage_dir("sft", PROFILE))
else:
    print("not saved: a check did not pass, so the next notebooks keep the stage they had")
artifacts.clear_checkpoints("sft", PROFILE)
metrics

# %% [markdown]
# ## Try it
# Each Try-it changes one entry of `CFG` in the parameters cell; rerun the notebook from there. A run
# whose checks print a cross is not saved, so notebooks 04 and 06 keep the stage they had.
# 1. `"packing": False`: one conversation per row, padded. Expect fewer tokens per second for the same
#    steps and about the same scores (the loss sees the same tokens).
# 2. `"max_steps": 100`. Expect the form first (stop rate and reply form up) and less content: task
#    scores nearer their baselines.
# 3. `"lora_r": 8, "lora_alpha": 16`. Expect fewer trainable parameters (printed in section 3); on this
#    small model the scores move little, as the LoRA paper found for large ones.
# 4. Start Jupyter with `ZHLLM_START_FROM=cpt` (see the parameters cell): the same SFT on the minute-long
#    stage-02 model. Expect the form learnt and the content near the baselines: what SFT can show depends
#    on pretraining.
#
# **Going further.** Set `tokenizer.pad_token = tokenizer.eos_token` after section 3 and force the collator
# through: the stop rate after training falls, because every EOS is masked out of the loss.

# %% [markdown]
# ## Takeaways
# - SFT teaches the form of a reply and when to stop; the content comes from what pretraining taught.
# - Pad must differ from EOS, the EOS must stay in the labels, and training and inference must render the same template.
# - Score every task against a trivial baseline: a number alone says little.
# - Packing without cross-attention between examples saves the compute padding wastes.
#
# **Lab.** `labs/student/03_sft_label_mask.ipynb`: building the label mask and the masked loss by hand. Teachers: `labs/README.md`.
