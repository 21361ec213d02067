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
# # 02 · QLoRA continued pretraining (增量预训练) on Chinese text
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/notebooks/02_qlora_continued_pretraining.ipynb)
#
# **Goal.** Stage 01 gave the model Chinese tokens, but their embeddings are only averages of byte
# embeddings: the model cannot yet *use* them. Continued pretraining on Chinese text teaches it.
# We follow Firefly-LLaMA2's recipe — the base frozen in 4-bit NF4 with double quantisation
# (QLoRA, Dettmers et al. 2023), LoRA on every linear layer, and the embedding and output
# matrices trained too, with a smaller learning rate — and measure what it buys in bits per
# character, a unit that is fair across tokenizers.
#
# Reproduces: Firefly-LLaMA2's trainable-parameter counts (612.9M for 7B, 816.6M for 13B) and the
# Chinese-LLaMA-2 observation that continued pretraining is what turns a longer vocabulary into a
# better Chinese model.
#
# **Package.** This stage's code is `zhllm.cpt` (`src/zhllm/cpt/`); its docstring says what each module holds.
#
# **In this notebook you will learn**
# - the QLoRA recipe: a 4-bit NF4 base, LoRA on every linear layer, embedding and output rows trained too
# - how documents are packed into blocks with no padding
# - what continued pretraining buys in bits per character, and what the shipped long-trained model buys beyond a few minutes
#
# **Before this:** notebooks 00 and 01 (the base model, the expanded tokenizer); bits per character.
#
# **Time:** tiny: about 2 min on 2 CPU cores; colab (T4): not yet timed.

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
from transformers import AutoTokenizer, BitsAndBytesConfig, TrainingArguments

from zhllm import artifacts, corpora, cpt, evaluation, figures, runtime
from zhllm.modeling import count_parameters, load_causal_lm
from zhllm.profiles import current, pick

runtime.set_threads()
print(runtime.banner())

# %% tags=["parameters"]
PROFILE = current()          # "tiny" on a CPU, "colab" with a GPU; set ZHLLM_PROFILE to choose
CFG = {**pick(cpt.SETTINGS, PROFILE),
       # a Try-it changes a setting here, e.g. "max_steps": 100,
       }
print(artifacts.describe_builds("cpt", PROFILE))  # the earlier stages this notebook builds first, if any
CFG

# %% [markdown]
# ## 1 · Models: base, expanded (untrained), and the 4-bit training copy

# %%
start = time.time()
runtime.seed_everything(CFG["seed"])
base_dir = artifacts.ensure("base", PROFILE) / "model"          # built on demand if missing
expanded_dir = artifacts.ensure("tokenizer", PROFILE) / "model"
base_tok = AutoTokenizer.from_pretrained(base_dir)
tokenizer = AutoTokenizer.from_pretrained(expanded_dir)
new_ids = list(range(len(base_tok), len(tokenizer)))
print(f"base vocabulary {len(base_tok)}, expanded {len(tokenizer)} (+{len(new_ids)} Chinese tokens)")

# %%
zh_bpc_base, en_bpc_base = cpt.bpc_pair(load_causal_lm(str(base_dir), dtype=torch.float32),
                                        base_tok, PROFILE, CFG["eval_max_chars"])
expanded = load_causal_lm(str(expanded_dir), dtype=torch.float32)
zh_bpc_before, en_bpc_before = cpt.bpc_pair(expanded, tokenizer, PROFILE, CFG["eval_max_chars"])
print(f"held-out Chinese: base {zh_bpc_base:.3f} bpc, expanded untrained {zh_bpc_before:.3f} bpc")
print(f"held-out English: base {en_bpc_base:.3f} bpc, expanded untrained {en_bpc_before:.3f} bpc")

# %% [markdown]
# The expanded model reads Chinese in far fewer tokens, but its new rows are averages: its bits
# per character are no better yet. Now the 4-bit training copy: NF4 weights, double quantisation,
# LoRA on `q,k,v,o,gate,up,down`, and trainable embeddings.

# %% [markdown]
# ### The recipe, in view
# Three library objects are the whole QLoRA recipe: how the frozen base is stored (`BitsAndBytesConfig`),
# what trains (`LoraConfig`), and how (`TrainingArguments`). The values come from the parameters cell;
# `tests/test_notebook_recipes.py` holds these objects equal to what `zhllm demo` and
# `configs/recipes/<profile>/cpt.yaml` use.

# %% tags=["recipe"]
quantization = BitsAndBytesConfig(
    load_in_4bit=True,                            # the frozen base weights in 4 bits: 7B fits in ~4 GB
    bnb_4bit_quant_type="nf4",                    # NormalFloat4: 16 levels spaced for normally distributed weights
    bnb_4bit_use_double_quant=True,               # quantise the per-block scales too: ~0.4 bits/parameter saved
    bnb_4bit_compute_dtype=runtime.dtype_for(),   # dequantised to this for each matmul: fp32 CPU, fp16 T4, bf16 A100
) if CFG["quantization"] == "4bit" else None

lora = LoraConfig(
    r=CFG["lora_r"],                              # rank of the update B·A (Chinese-LLaMA-2: 64; tiny: 16)
    lora_alpha=CFG["lora_alpha"],                 # the update is scaled by alpha / r
    lora_dropout=0.0,                             # Chinese-LLaMA-2 uses 0.05 on billions of tokens
    target_modules=cpt.LORA_TARGETS,              # q, k, v, o, gate, up, down: every linear layer of every block
    # the new Chinese rows must train: "full" keeps a trainable copy of the embedding and output matrices,
    # "new_rows" trains only the new tokens' rows (far less memory)
    modules_to_save=cpt.EMBEDDINGS if CFG["embeddings"] == "full" else None,
    trainable_token_indices={m: new_ids for m in cpt.EMBEDDINGS} if CFG["embeddings"] == "new_rows" else None,
    task_type="CAUSAL_LM",
)

args = TrainingArguments(
    output_dir=str(artifacts.checkpoint_dir("cpt", PROFILE)),  # checkpoints, kept until the stage completes
    max_steps=CFG["max_steps"],
    learning_rate=CFG["learning_rate"],           # LoRA's rate; the embedding rows get `embed_learning_rate`
    per_device_train_batch_size=CFG["batch_size"],  # blocks of `block_size` tokens per step
    gradient_accumulation_steps=CFG["grad_accum"],  # effective batch = batch_size x grad_accum blocks
    lr_scheduler_type="cosine", warmup_steps=CFG["warmup_steps"],
    activation_checkpointing=CFG["gradient_checkpointing"],  # recompute activations: memory for time (T4: on)
    bf16=runtime.dtype_for() == torch.bfloat16, fp16=runtime.dtype_for() == torch.float16,
    logging_steps=max(1, min(10, CFG["max_steps"] // 10)),
    save_strategy="steps", save_steps=max(CFG["max_steps"] // 4, 1), save_total_limit=1,  # resume after a crash
    seed=CFG["seed"], data_seed=CFG["seed"],
    use_cpu=not torch.cuda.is_available(), report_to=[], disable_tqdm=True, dataloader_num_workers=0,
)

# %%
model = cpt.load_for_training(expanded_dir, quantization, CFG, new_ids, lora=lora)
model.print_trainable_parameters()
print(type(model.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__,
      "holds the frozen base weights")
hidden = model.get_input_embeddings().weight.shape[1]
for option, mib in cpt.embedding_memory(len(tokenizer), hidden, len(new_ids)).items():
    print(f"trainable embeddings via {option:<36} {mib:8.1f} MiB (weights + grads + Adam)")
figures.lora(d=hidden, k=hidden, r=CFG["lora_r"], alpha=CFG["lora_alpha"], quantized=quantization is not None,
             compute_dtype={torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[runtime.dtype_for()])

# %%
for shape in ("7B", "13B"):
    n = cpt.trainable_parameters_from_config(shape)
    print(f"Firefly-LLaMA2-{shape} recipe (vocab 55,296, r=64, embeddings trained): {n / 1e6:.1f}M trainable")

# %% [markdown]
# ## 2 · Data: documents packed into full blocks
# `<s> doc </s>` streams cut into blocks of `block_size` tokens: no padding at all. In plain causal
# attention a document can attend to the end of the previous one inside a block; the EOS marks
# the boundary. `pack_documents(..., separate=True)` adds position ids that restart at each
# document, which padding-free attention (flash-attention varlen) uses to keep documents apart.

# %%
texts = cpt.training_text(PROFILE, CFG)
blocks = cpt.pack_documents(tokenizer, texts, CFG["block_size"])
print(f"{len(texts)} documents -> {len(blocks)} blocks of {CFG['block_size']} tokens")
print(f"padding avoided: {cpt.padding_avoided(tokenizer, texts[:2000], CFG['block_size']):.0%} of a "
      "one-document-per-row batch would have been padding")
print(tokenizer.decode(blocks[0]["input_ids"][:80]))
separate = cpt.pack_documents(tokenizer, texts[:50], CFG["block_size"], separate=True)
print("position ids restart at documents:", separate[1]["position_ids"][:40])

# %% [markdown]
# ## 3 · Train
# Two learning rates: LoRA at `learning_rate`, the embedding and output rows at the smaller
# `embed_learning_rate`. Checkpoints are kept until the stage completes, so an interrupted run
# resumes where it stopped (rerun this cell).

# %%
train_start = time.time()
history = cpt.train(model, blocks, args.output_dir, CFG, args=args)
train_seconds = time.time() - train_start
train_tokens = CFG["max_steps"] * CFG["batch_size"] * CFG["grad_accum"] * CFG["block_size"]
print(f"{train_tokens:,} tokens in {train_seconds:.0f} s = {train_tokens / train_seconds:,.0f} tokens/s")

# %%
plt.figure(figsize=(6, 3))
plt.plot([h["step"] for h in history], [h["loss"] for h in history])
plt.xlabel("step")
plt.ylabel("loss (nats/token)")
plt.title("Continued pretraining")
plt.show()

# %% [markdown]
# ## 4 · Merge, then evaluate
# We merge the adapter into an fp32 copy of the *dequantised NF4* weights — the weights it was
# trained against — so the merged model is the trained model. The common recipe merges into the
# original fp32 weights instead; we measure how much that changes the logits.

# %%
adapter_dir = artifacts.checkpoint_dir("cpt", PROFILE) / "adapter"   # scratch until the checks pass
model.save_pretrained(adapter_dir)
merged = cpt.merge(model, expanded_dir, adapter_dir)
probe = torch.tensor([blocks[0]["input_ids"][:64]])
merge_diff = cpt.max_abs_logit_diff(model, merged, probe)
merge_tolerance = cpt.merge_tolerance(cpt.logits_as_trained(merged, probe))  # rounding of the compute dtype
naive_diff = cpt.max_abs_logit_diff(model, cpt.naive_merge(expanded_dir, adapter_dir), probe)
print(f"max |logit difference| adapter vs merged: {merge_diff:.2e} (tolerance {merge_tolerance:.1e}); "
      f"merged into original fp32 weights instead: {naive_diff:.2e}")
zh_bpc_after, en_bpc_after = cpt.bpc_pair(merged, tokenizer, PROFILE, CFG["eval_max_chars"])
lines = cpt.zh_ngram_bpc(PROFILE, CFG)          # character unigram and bigram fitted on the same text
shipped_bpc = cpt.shipped_bpc(PROFILE, CFG)     # the long-trained model the kit ships (tiny profile)
zh_bpc_unigram, zh_bpc_bigram = lines["zh_bpc_unigram"], lines["zh_bpc_bigram"]
metrics = {
    "zh_bpc_base": zh_bpc_base, "zh_bpc_before": zh_bpc_before, "zh_bpc_after": zh_bpc_after,
    **lines, **shipped_bpc, "en_bpc_base": en_bpc_base, "en_bpc_after": en_bpc_after,
    "trainable_params": count_parameters(model, trainable_only=True), "train_tokens": train_tokens,
    "tokens_per_second": train_tokens / train_seconds, "peak_memory_mb": runtime.peak_memory_mb(),
    "merge_max_abs_logit_diff": merge_diff, "merge_tolerance": merge_tolerance,
    "naive_merge_max_abs_logit_diff": naive_diff}
metrics

# %%
labels = ["base", "expanded\nuntrained", "after CPT"]
fig, ax = plt.subplots(1, 2, figsize=(8, 3))
ax[0].bar(labels, [zh_bpc_base, zh_bpc_before, zh_bpc_after], color=["grey", "orange", "green"])
ax[0].axhline(zh_bpc_unigram, color="black", ls=":", label="character unigram")
ax[0].axhline(zh_bpc_bigram, color="black", ls="--", label="character bigram")
ax[0].legend()
ax[0].set_title("held-out Chinese (bits/char)")
ax[1].bar(["base", "after CPT"], [en_bpc_base, en_bpc_after], color=["grey", "green"])
ax[1].set_title("held-out English (bits/char)")
plt.tight_layout()
plt.show()

# %% [markdown]
# **How far did it get?** The two black lines are character n-gram models fitted on the same Chinese
# training text. The dotted unigram knows which characters are frequent and nothing about which follow
# which; the dashed bigram knows which character tends to follow the previous one. A model near the
# unigram line has learnt the vocabulary's frequencies but not yet to use its context; below the bigram
# line it uses more than the previous character. The minute of QLoRA above is a demonstration of the
# mechanics: real continued pretraining runs for billions of tokens.

# %%
print(f"held-out Chinese bits/char: after CPT {zh_bpc_after:.2f}, character unigram {zh_bpc_unigram:.2f}, "
      f"character bigram {zh_bpc_bigram:.2f}, expanded untrained {zh_bpc_before:.2f}")

# %% [markdown]
# ## 5 · What ~100x the compute buys: the shipped checkpoint
# The kit ships `models/tiny-zh-v1`: the same architecture and tokenizer, trained by `zhllm pretrain-tiny`
# (the stage-00 English base trained longer, stage 01's expansion, then full-parameter continued
# pretraining on every Chinese training split with English replay) for one to two hours on 2 CPU cores.
# Stages 03-07 of the tiny profile start from it (`ZHLLM_START_FROM=cpt` switches them back to the model
# trained above). Its card records the command, commit, data, tokens and held-out metrics, and the kit
# checks every file's sha256 before loading it. How was its size chosen? With stage 05's planner:
# Chinchilla's allocation for the measured CPU speed, with Muennighoff's discount for repeated text.

# %%
if shipped_bpc:
    from zhllm import scaling, shipped

    card = shipped.read_card()
    m = card["metrics"]
    flops_per_second = 6 * m["params"] * m["chinese_tokens_per_second"]  # measured: 6 N FLOPs per token
    budget = flops_per_second * 2 * 3600                                  # two hours of this CPU
    plan = scaling.plan(budget, unique_tokens=m["chinese_unique_tokens"])
    print(scaling.describe_plan(plan))
    print(f"shipped: {m['params'] / 1e6:.2f}M parameters ({m['non_embedding_params'] / 1e6:.2f}M outside "
          f"the embeddings), {(m['english_tokens'] + m['chinese_tokens']) / 1e6:.1f}M tokens in "
          f"{m['wall_seconds'] / 60:.0f} minutes on {card['machine']}")
    print(f"live CPT above: {train_tokens / 1e6:.2f}M tokens; shipped: "
          f"{m['chinese_tokens'] / train_tokens:.0f}x as many Chinese-phase tokens")
    fig, ax = plt.subplots(figsize=(6, 3))
    names = ["expanded\nuntrained", "live CPT\n(this run)", "shipped"]
    ax.bar(names, [zh_bpc_before, zh_bpc_after, shipped_bpc["zh_bpc_shipped"]], color=["orange", "green", "navy"])
    ax.axhline(zh_bpc_unigram, color="black", ls=":", label="character unigram")
    ax.axhline(zh_bpc_bigram, color="black", ls="--", label="character bigram")
    ax.set_ylabel("held-out Chinese bits/char")
    ax.legend()
    plt.tight_layout()
    plt.show()
    print(f"held-out Chinese bits/char: shipped {shipped_bpc['zh_bpc_shipped']:.2f} vs bigram {zh_bpc_bigram:.2f} "
          f"({shipped_bpc['zh_bpc_shipped'] / zh_bpc_bigram:.2f}x); English: shipped "
          f"{shipped_bpc['en_bpc_shipped']:.2f} vs its English base {shipped_bpc['en_bpc_shipped_base']:.2f} "
          f"({shipped_bpc['en_bpc_shipped'] / shipped_bpc['en_bpc_shipped_base']:.2f}x)")

# %% [markdown]
# The same Chinese prompts, continued before and after (greedy).

# %%
for prompt in ["中国人民", "今年经济工作", "北京市"]:
    for name, m in [("before", expanded), ("after", merged)]:
        ids = tokenizer(prompt, return_tensors="pt")
        out = m.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        print(f"{name:>6}: {tokenizer.decode(out[0], skip_special_tokens=True)}")

# %% [markdown]
# **What more text has not bought: looking back.** Lower bits per character say the model predicts the
# next character better from what it knows. A different skill is copying from the context: shown a
# sentence twice, a model with induction heads predicts the second occurrence almost perfectly.
# `evaluation.copy_accuracy` measures top-1 accuracy on 100 held-out openings of 30 characters and on the
# same characters repeated after a 。. If the two numbers are close, the model does not look back, and
# notebook 03's tasks that must reproduce the input (word segmentation, entity extraction) stay out of reach
# however well it writes Chinese.

# %%
copy_texts = [t for t in corpora.people_daily("heldout") if len(t) >= 40][:100]
copy_models = [("live CPT", merged, tokenizer)]
if shipped_bpc:
    copy_models.append(("shipped", load_causal_lm(str(shipped.model_dir())),
                        AutoTokenizer.from_pretrained(shipped.model_dir())))
for name, m, tok in copy_models:
    acc = evaluation.copy_accuracy(m, tok, copy_texts)
    print(f"{name:>9}: top-1 on the first occurrence {acc['first']:.3f}, on the repeat {acc['second']:.3f}")

# %% [markdown]
# ## Check

# %%
losses = [h["loss"] for h in history]
assert all(l == l for l in losses), "loss finite"
assert merge_diff < merge_tolerance, "the merged model is the trained model"
if shipped_bpc:
    assert shipped_bpc["zh_bpc_shipped"] <= 0.9 * zh_bpc_bigram, "the shipped model is well below the bigram line"
    assert shipped_bpc["en_bpc_shipped"] <= 1.15 * shipped_bpc["en_bpc_shipped_base"], "shipped model kept its English"
results = [
    runtime.check(losses[-1] < losses[0], f"loss fell: {losses[0]:.2f} -> {losses[-1]:.2f}",
                  "a learning rate far too high or too low leaves the loss flat or rising"),
    runtime.check(zh_bpc_after <= 0.7 * zh_bpc_before and zh_bpc_after < zh_bpc_base,
                  f"Chinese improved: {zh_bpc_before:.2f} -> {zh_bpc_after:.2f} bits/char (base {zh_bpc_base:.2f})",
                  "too few steps or a tiny learning rate leave the new rows untrained"),
    runtime.check(en_bpc_after <= 1.15 * en_bpc_base,
                  f"English kept within 15%: {en_bpc_base:.2f} -> {en_bpc_after:.2f} bits/char",
                  "without English replay (english_share 0) the model forgets English"),
]

# %% [markdown]
# ## Save the stage
# Only a run whose checks all passed replaces `runs/<profile>/cpt/`, so a Try-it never changes what
# notebook 03 loads (with `ZHLLM_START_FROM=cpt`) or what later stages build on.

# %%
metrics["seconds"] = round(time.time() - start, 1)
if all(results):
    with artifacts.building("cpt", PROFILE) as out_dir:
        model.save_pretrained(out_dir / "adapter")
        merged.save_pretrained(out_dir / "model")
        tokenizer.save_pretrained(out_dir / "model")
        artifacts.write_metrics(out_dir, metrics)
    print("saved to", artifacts.stage_dir("cpt", PROFILE))
else:
    print("not saved: a check did not pass, so the next notebooks keep the stage they had")
artifacts.clear_checkpoints("cpt", PROFILE)

# %% [markdown]
# ## Try it
# Each Try-it changes one entry of `CFG` in the parameters cell; rerun the notebook from there. A run
# whose checks print a cross is not saved, so notebook 03 keeps the stage it had.
# 1. `"embeddings": "new_rows"` (PEFT `trainable_token_indices`: only the new tokens' rows train). Expect the
#    trainable-parameter count and the memory printed in section 1 to fall, and Chinese bits per
#    character to end higher: the old rows and the output layer no longer adapt.
# 2. `"english_share": 0` (no English replay). Expect English bits per character to drift up, past the 15%
#    check: the forgetting that Chinese-LLaMA-2 and Firefly accept or mitigate.
# 3. `"max_steps": 200`. Expect Chinese bits per character to fall further, still far above the shipped
#    model's: the gap is the compute.
#
# **Going further.** Interrupt the training cell half way (Kernel → Interrupt) and run it again: it resumes
# from the last checkpoint. Compare the final loss with an uninterrupted run.

# %% [markdown]
# ## Takeaways
# - The new Chinese tokens are useless until continued pretraining trains their rows and the layers that read them.
# - QLoRA trades compute for memory: 4-bit frozen weights, a small trainable update, fp16/bf16 compute.
# - Replaying some English keeps the model's English from being forgotten; measure both languages.
# - A few minutes of CPU training shows the mechanism; about 100x the compute (the shipped model) shows the outcome.
#
# **Lab.** `labs/student/02_packing_and_bpc.ipynb`: packing documents into blocks and turning a loss into bits per character. Teachers: `labs/README.md`.
