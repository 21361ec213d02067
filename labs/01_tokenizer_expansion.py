# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 01_tokenizer_expansion
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
# # Lab 01 · Tokenizer expansion (词表扩充): which Chinese pieces to add, and what they buy
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/labs/student/01_tokenizer_expansion.ipynb)
#
# **Stage:** [notebooks/01_tokenizer_expansion](../../notebooks/01_tokenizer_expansion.ipynb) ·
# **Time:** one 90-minute class · **Runs on:** a laptop CPU or Colab; every cell takes seconds.
#
# An English-centric tokenizer such as Llama-2's has almost no Chinese: a character falls back to
# its three UTF-8 bytes, so Chinese text costs about 0.7 characters per token. Chinese-LLaMA-2 added
# some 23,000 Chinese pieces and reached ~1.5. Adding pieces sounds trivial — append strings to a list —
# but a piece the tokenizer can never produce is a dead embedding row, and a piece whose merge order
# is ambiguous makes SentencePiece and the Hugging Face tokenizer disagree.
#
# ## Learning goals
# By the end of this lab you can
# 1. state the four rules a new piece must pass (new, pure Chinese, buildable by one BPE merge,
#    no merge-order conflict) and explain what breaks when each is ignored;
# 2. measure tokenizer efficiency as **characters per token** on held-out text, and say why it is
#    counted without special tokens and pooled over all texts;
# 3. read a before/after comparison: Chinese gets shorter, English stays exactly the same.
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
# | 10 min | setup, read the base tokenizer's Chinese |
# | 30 min | exercise 1: accept or reject a piece |
# | 10 min | build the expanded tokenizer with your rules |
# | 20 min | exercise 2: characters per token, before and after |
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
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from zhllm import base, corpora, labs, runtime
from zhllm import tokenizer as tokenizer_expand
from zhllm.tokenizer import sentencepiece as sp_expand
from zhllm.tokenizer.sentencepiece import has_order_conflict, is_cjk_piece

runtime.set_threads(1)  # everything here is small: one thread is fastest, and the laptop stays responsive
print(runtime.banner())

# %% tags=["parameters"]
BASE_VOCAB = 2000     # pieces in the English base tokenizer we train below
ZH_VOCAB = 6000       # pieces in the Chinese SentencePiece model the candidates come from
ZH_DOCS = 10000       # training reviews the Chinese model learns from

# %% [markdown]
# ## 1 · The base: an English SentencePiece tokenizer
# We train a small Llama-2-style tokenizer (BPE, byte fallback, digits split) on English text from
# the Python documentation, exactly as stage 00 does, and look at what it makes of Chinese.

# %%
english = corpora.english("train")
reviews = [text for text, _ in corpora.reviews("train")][:ZH_DOCS]
heldout_zh = [text for text, _ in corpora.reviews("heldout")][:500]
heldout_en = tokenizer_expand.english_lines(corpora.english("heldout"))[:300]

workdir = Path(tempfile.mkdtemp())
base_model_file = base.train_tokenizer(english, workdir, BASE_VOCAB)
base_tok = base.hf_tokenizer(base_model_file)
sample = heldout_zh[0][:20]
print(sample)
print(base_tok.convert_ids_to_tokens(base_tok(sample, add_special_tokens=False)["input_ids"]))

# %% [markdown]
# Every Chinese character became three `<0x..>` byte pieces. The candidates for new pieces come
# from a SentencePiece model trained on Chinese text (here: product reviews), under the base's own
# normalisation so its pieces are pieces the base will meet at encode time.

# %%
base_proto = sp_expand.load_proto(base_model_file)
zh_proto = sp_expand.train_chinese_sp(reviews, base_proto, ZH_VOCAB)
trained = [p.piece for p in zh_proto.pieces if p.type == sp_expand.NORMAL]
candidates = [p for p in trained if len(p) == 1] + [p for p in trained if len(p) > 1]
print(len(candidates), "candidates, e.g.", candidates[:10], candidates[-10:])

# %% [markdown]
# ## 2 · Exercise 1: accept or reject a candidate piece
# A candidate is added only if it passes four rules, checked in this order:
#
# 1. **New** — it is not already in the vocabulary (one string, one id).
# 2. **Pure Chinese** — every character is a CJK ideograph, CJK punctuation or a full-width form,
#    and a multi-character piece has no digits (the base splits digits; `１９` would undo that).
#    `is_cjk_piece(piece)` implements exactly this rule.
# 3. **Buildable** — a multi-character piece must split into two pieces *already in the vocabulary*:
#    BPE builds a piece only by merging two existing pieces, so otherwise it is never produced.
#    A single character needs no merge: it is a symbol of its own.
# 4. **No merge-order conflict** — for 哈哈哈 with 哈 and 哈哈 in the vocabulary, both 哈哈+哈 and
#    哈+哈哈 can build it, and SentencePiece (leftmost first) and Hugging Face (by merge rank) may
#    choose differently. `has_order_conflict(piece, vocab)` detects this.
#
# Write `accept_piece(piece, vocab)`: `True` when all four rules pass. You may call `is_cjk_piece`
# and `has_order_conflict`; write the "buildable" test yourself.

# %% [raw]
# # BEGIN QUESTION
# name: accept_piece
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def accept_piece(piece: str, vocab: set) -> bool:
    """True when `piece` may be appended to `vocab` (a set of the pieces already there)."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: accept only pieces that are new, pure Chinese, buildable and free of merge-order conflicts")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    if piece in vocab or not is_cjk_piece(piece):
        return False
    if len(piece) == 1:
        return True
    buildable = any(piece[:k] in vocab and piece[k:] in vocab for k in range(1, len(piece)))
    return buildable and not has_order_conflict(piece, vocab)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
vocab = {"中", "国", "人", "民", "哈", "哈哈"}
print({p: accept_piece(p, vocab) for p in ["中国", "国", "人民日报", "AI", "哈哈哈", "好"]})

# %% tags=["check"]
labs.check_accept_piece(accept_piece)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_accept_piece_public(labs, accept_piece):
    labs.check_accept_piece(accept_piece)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_accept_piece_hidden(accept_piece):
    from zhllm.labs.tokenizer_expansion import _piece_cases
    from zhllm.tokenizer.sentencepiece import has_order_conflict, is_cjk_piece, splits

    def accepted(piece, vocab):
        if piece in vocab or not is_cjk_piece(piece):
            return False
        return len(piece) == 1 or (bool(splits(piece, vocab)) and not has_order_conflict(piece, vocab))

    fixed, generated = _piece_cases(300, seed=1)
    cases = fixed + generated
    wrong = [piece for piece, vocab in cases if bool(accept_piece(piece, set(vocab))) != accepted(piece, vocab)]
    assert not wrong, f"{len(wrong)} of {len(cases)} new pieces decided wrongly, e.g. {wrong[0]!r}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 3 · Build the expanded tokenizer with your rules
# Walk through the candidates in the Chinese model's order (characters first, so that longer pieces
# can be built from them), accept with your function, and grow the vocabulary as you go. The total
# is cut to a multiple of 64 (GPU-friendly embedding matrices). The kit then appends the pieces with
# scores below every base piece, so base merges always win and English is untouched.

# %%
vocab = {p.piece for p in base_proto.pieces}
new_pieces = []
for piece in candidates:
    if accept_piece(piece, vocab):
        vocab.add(piece)
        new_pieces.append(piece)
keep = (len(base_proto.pieces) + len(new_pieces)) // 64 * 64 - len(base_proto.pieces)
new_pieces = new_pieces[:keep]
expanded_proto = sp_expand.append_pieces(base_proto, new_pieces)
expanded_tok = sp_expand.hf_tokenizer(expanded_proto, like=base_tok)
print(f"{len(base_tok)} -> {len(expanded_tok)} tokens ({len(new_pieces)} new)")

# the anchors' way for comparison: every piece appended with score 0
naive = sp_expand.naive_merge(base_proto, zh_proto)
naive_new = [p.piece for p in naive.pieces[len(base_proto.pieces):]]
print("dead pieces with your rules:", len(sp_expand.dead_pieces(expanded_proto, new_pieces)))
print("dead pieces, append-everything with score 0:", len(sp_expand.dead_pieces(naive, naive_new)),
      "of", len(naive_new))

# %% [markdown]
# ## 4 · Exercise 2: characters per token
# Tokenizer efficiency is measured as characters of text per token, on held-out text:
# `total characters / total tokens`. Two details matter: count **only the text's tokens**
# (encode with `add_special_tokens=False`: a `<s>` is not part of the text), and **pool** over all
# texts (one long review should weigh more than one short review).
#
# Write `chars_per_token(tokenizer, texts)`.

# %% [raw]
# # BEGIN QUESTION
# name: chars_per_token
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def chars_per_token(tokenizer, texts: list) -> float:
    """Characters per token over all `texts`, special tokens not counted."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: encode without special tokens, then divide total characters by total tokens")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return sum(len(t) for t in texts) / sum(len(x) for x in ids)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
print(chars_per_token(base_tok, ["今天天气很好"]), "characters per token")

# %% tags=["check"]
labs.check_chars_per_token(chars_per_token)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_chars_per_token_public(labs, chars_per_token):
    labs.check_chars_per_token(chars_per_token)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_chars_per_token_hidden(chars_per_token):
    import math
    import random

    from zhllm import labs
    from zhllm import tokenizer as kit

    tok = labs.lab_tokenizer()
    rng = random.Random(1)
    cases = [["".join(rng.choice(labs.POOL) for _ in range(rng.randint(1, 80))) for _ in range(rng.randint(1, 6))]
             for _ in range(20)]
    want = [kit.chars_per_token(tok, texts) for texts in cases]
    with labs.kit_switched_off((kit, "chars_per_token")):
        got = [float(chars_per_token(tok, list(texts))) for texts in cases]
    assert all(math.isclose(g, w, rel_tol=1e-9) for g, w in zip(got, want)), "wrong on new texts"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 5 · Before and after
# Chinese should get much shorter; English must tokenise to *exactly* the same ids.

# %%
before_zh, after_zh = chars_per_token(base_tok, heldout_zh), chars_per_token(expanded_tok, heldout_zh)
before_en, after_en = chars_per_token(base_tok, heldout_en), chars_per_token(expanded_tok, heldout_en)
same_en = tokenizer_expand.same_ids_rate(tokenizer_expand.encode(base_tok, heldout_en),
                                         tokenizer_expand.encode(expanded_tok, heldout_en))
print(f"Chinese: {before_zh:.2f} -> {after_zh:.2f} characters per token")
print(f"English: {before_en:.2f} -> {after_en:.2f} characters per token, identical ids on {same_en:.0%} of lines")
print(base_tok.convert_ids_to_tokens(base_tok(sample, add_special_tokens=False)["input_ids"])[:12])
print(expanded_tok.convert_ids_to_tokens(expanded_tok(sample, add_special_tokens=False)["input_ids"]))

# %%
published = tokenizer_expand.PUBLISHED_CHARS_PER_TOKEN
names = ["our base", "our expanded", *published]
values = [before_zh, after_zh, *published.values()]
plt.figure(figsize=(6, 2.8))
plt.barh(names, values, color=["grey", "tab:red"] + ["tab:blue"] * len(published))
plt.xlabel("Chinese characters per token")
plt.title("Held-out Chinese, before and after expansion (blue: published)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Open questions
# 1. The append-everything merge left hundreds of dead pieces. Each has an embedding row and an
#    output row that continued pretraining never updates, yet the softmax still spreads probability
#    over them. What does that cost at 7B scale (rows × hidden size × bytes, and at generation
#    time)? Is a dead piece harmless if the model never emits it?
# 2. A higher characters-per-token means shorter sequences, but each new piece is an embedding that
#    must be learned from scratch in stage 02. How would you choose the number of pieces to add for
#    a given amount of Chinese pretraining text? What would you measure to decide?
