# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 00_unigram_bpc
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
# # Lab 00 · The base model's yardstick (基座模型): bits per character of a unigram
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/labs/student/00_unigram_bpc.ipynb)
#
# **Stage:** [notebooks/00_base_model](../../notebooks/00_base_model.ipynb) ·
# **Time:** one 90-minute class · **Runs on:** a laptop CPU or Colab; every cell takes seconds.
#
# Before a language model has learned anything it should at least beat the simplest model of text:
# a **unigram** (一元模型), which predicts every character (or token) from its frequency alone,
# ignoring what came before. Stage 00 judges the base model by how far below the unigram its
# **bits per character** (BPC, 每字符比特数) fall. Here you compute that yardstick yourself, twice: over
# characters and over tokens, and see why only "per character" compares two tokenizers fairly.
#
# ## Learning goals
# By the end of this lab you can
# 1. fit a character unigram with add-one smoothing and compute its bits per character on held-out
#    text (base-2 logarithm, pooled over all characters);
# 2. do the same over tokens and convert to bits per character, and explain why bits per token
#    cannot compare two tokenizers or two languages;
# 3. read stage 00's target ("beat the unigram by 25%") as a number of bits.
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
# | 10 min | setup, the corpora |
# | 30 min | exercise 1: a character unigram in bits per character |
# | 30 min | exercise 2: a token unigram, per token and per character |
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
import math
from collections import Counter

from zhllm import corpora, labs, runtime

runtime.set_threads(1)  # nothing here needs more than one thread
print(runtime.banner())

# %% tags=["parameters"]
ZH_DOCS = 4000        # training reviews the unigrams are fitted on
HELDOUT_DOCS = 500    # held-out reviews and English documents they are scored on

# %% [markdown]
# ## 1 · Data
# Chinese product reviews and English text from the Python documentation, each with a held-out
# split that no model is fitted on.

# %%
zh_train = [text for text, _ in corpora.reviews("train")][:ZH_DOCS]
zh_heldout = [text for text, _ in corpora.reviews("heldout")][:HELDOUT_DOCS]
en_train = corpora.english("train")
en_heldout = corpora.english("heldout")[:HELDOUT_DOCS]
print(f"Chinese: {sum(map(len, zh_train)):,} training characters, {len(set(''.join(zh_train))):,} distinct")
print(f"English: {sum(map(len, en_train)):,} training characters, {len(set(''.join(en_train))):,} distinct")
print(zh_heldout[0][:60], "|", en_heldout[0][:60])

# %% [markdown]
# ## 2 · Exercise 1: a character unigram
# Count the characters of `train_texts`. With add-one smoothing every character gets its count + 1,
# and one extra slot is shared by every character never seen in training, so
#
# p(c) = (count(c) + 1) / (N + V + 1),  N = training characters, V = distinct training characters.
#
# The unigram's bits per character on `eval_texts` is −Σ log₂ p(c) over **all** their characters,
# divided by the number of those characters. Write `unigram_bpc(train_texts, eval_texts)`.

# %% [raw]
# # BEGIN QUESTION
# name: unigram_bpc
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def unigram_bpc(train_texts: list, eval_texts: list) -> float:
    """Bits per character of eval_texts under an add-one character unigram fitted on train_texts."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: count training characters, add-one probabilities, sum -log2 p, divide by characters")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    counts = Counter("".join(train_texts))
    total = sum(counts.values()) + len(counts) + 1
    bits = sum(-math.log2((counts.get(ch, 0) + 1) / total) for text in eval_texts for ch in text)
    return bits / sum(len(text) for text in eval_texts)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
zh_char_bpc = unigram_bpc(zh_train, zh_heldout)
en_char_bpc = unigram_bpc(en_train, en_heldout)
print(f"character unigram: Chinese {zh_char_bpc:.2f} bits/char, English {en_char_bpc:.2f} bits/char")

# %% tags=["check"]
labs.check_unigram_bpc(unigram_bpc)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_unigram_bpc_public(labs, unigram_bpc):
    labs.check_unigram_bpc(unigram_bpc)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_unigram_bpc_hidden(unigram_bpc):
    import math
    import random

    from zhllm import evaluation, labs

    rng = random.Random(1)
    cases = [(["".join(rng.choice(labs.POOL) for _ in range(rng.randint(1, 80))) for _ in range(rng.randint(1, 8))],
              ["".join(rng.choice(labs.HANZI + "xyz") for _ in range(rng.randint(1, 50))) for _ in range(rng.randint(1, 5))])
             for _ in range(30)]
    want = [evaluation.unigram_bits_per_character(train, held) for train, held in cases]
    with labs.kit_switched_off((evaluation, "unigram_bits_per_character")):
        got = [float(unigram_bpc(list(train), list(held))) for train, held in cases]
    assert all(math.isclose(g, w, rel_tol=1e-9) for g, w in zip(got, want)), "wrong on new texts"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# A uniform guess over the distinct characters would cost log₂ V bits; frequencies buy the difference:

# %%
for name, train, bpc in (("Chinese", zh_train, zh_char_bpc), ("English", en_train, en_char_bpc)):
    distinct = len(set("".join(train))) + 1
    print(f"{name}: uniform {math.log2(distinct):.2f} bits/char, unigram {bpc:.2f}, "
          f"stage 00's target for a model: below {0.75 * bpc:.2f}")

# %% [markdown]
# ## 3 · Exercise 2: a token unigram
# A language model predicts **tokens**. Its loss per token depends on how much text a token holds,
# so convert it to bits per character before comparing. Fit a unigram over token ids:
# encode each text with `add_special_tokens=False`, count the ids of the training texts, and give every
# one of the `len(tokenizer)` ids a count + 1:
#
# p(t) = (count(t) + 1) / (N + len(tokenizer)),  N = training tokens.
#
# Return −Σ log₂ p(t) over the tokens of `eval_texts`, divided by their number of **characters**.

# %% [raw]
# # BEGIN QUESTION
# name: token_unigram_bpc
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def token_unigram_bpc(tokenizer, train_texts: list, eval_texts: list) -> float:
    """Bits per character of eval_texts under an add-one token unigram fitted on train_texts."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: count training token ids, add-one over len(tokenizer), sum -log2 p, divide by characters")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    counts = Counter(t for text in train_texts for t in encode(text))
    total = sum(counts.values()) + len(tokenizer)
    bits = sum(-math.log2((counts.get(t, 0) + 1) / total) for text in eval_texts for t in encode(text))
    return bits / sum(len(text) for text in eval_texts)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
tok = labs.lab_tokenizer()  # a small SentencePiece tokenizer trained on Chinese reviews (byte fallback)
zh_token_bpc = token_unigram_bpc(tok, zh_train, zh_heldout)
print(f"token unigram on Chinese: {zh_token_bpc:.2f} bits/char (character unigram {zh_char_bpc:.2f})")

# %% tags=["check"]
labs.check_token_unigram_bpc(token_unigram_bpc)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_token_unigram_bpc_public(labs, token_unigram_bpc):
    labs.check_token_unigram_bpc(token_unigram_bpc)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_token_unigram_bpc_hidden(token_unigram_bpc):
    import math
    import random
    from collections import Counter

    from zhllm import labs

    tok = labs.lab_tokenizer()
    rng = random.Random(1)
    for _ in range(20):
        train = ["".join(rng.choice(labs.POOL) for _ in range(rng.randint(1, 80))) for _ in range(rng.randint(1, 8))]
        held = ["".join(rng.choice(labs.HANZI + "xyz") for _ in range(rng.randint(1, 50))) for _ in range(rng.randint(1, 5))]
        counts = Counter(t for text in train for t in tok(text, add_special_tokens=False)["input_ids"])
        total = sum(counts.values()) + len(tok)
        bits = sum(-math.log2((counts.get(t, 0) + 1) / total)
                   for text in held for t in tok(text, add_special_tokens=False)["input_ids"])
        want = bits / sum(map(len, held))
        got = float(token_unigram_bpc(tok, list(train), list(held)))
        assert math.isclose(got, want, rel_tol=1e-9), f"expected {want:.4f} bits per character, got {got:.4f}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 4 · Per token or per character?
# The same token unigram, on Chinese and on English text, reported both ways. Bits per token mix
# two things: how predictable the text is, and how much text one token holds. This tokenizer was
# trained on Chinese and spells English almost letter by letter, so its English tokens hold less
# text than its Chinese ones: per token, the two languages look further apart than they are.

# %%
for name, train, held in (("Chinese", zh_train, zh_heldout), ("English", en_train[:300], en_heldout)):
    bpc = token_unigram_bpc(tok, train, held)
    chars_per_token = sum(map(len, held)) / sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in held)
    print(f"{name}: {chars_per_token:.2f} characters per token, {bpc * chars_per_token:.2f} bits per token, "
          f"{bpc:.2f} bits per character")

# %% [markdown]
# ## Open questions
# 1. Stage 00 asks the base model to beat the character unigram by 25% on held-out English. Why is
#    a unigram the right floor to measure against, and why must both numbers be computed on the same
#    held-out characters? What would happen to the comparison if the unigram were fitted on the
#    held-out text itself?
# 2. Two teams report a loss of 2.1 nats per token on the same Chinese test set, one with a Llama-2
#    tokenizer (about 0.7 characters per token on Chinese) and one with an expanded tokenizer (about
#    1.5). Convert both to bits per character. Which model predicts the text better, and by how much?
