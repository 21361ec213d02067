# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 02_packing_and_bpc
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
# # Lab 02 · Continued pretraining (增量预训练): packing documents, and bits per character
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/labs/student/02_packing_and_bpc.ipynb)
#
# **Stage:** [notebooks/02_qlora_continued_pretraining](../../notebooks/02_qlora_continued_pretraining.ipynb) ·
# **Time:** one 90-minute class · **Runs on:** a laptop CPU or Colab; the whole lab trains for seconds.
#
# Continued pretraining feeds the model long streams of Chinese text. Two small pieces of code
# decide whether that is efficient and whether its result can be judged: **packing** (documents
# concatenated and cut into full blocks, so no compute is spent on padding) and **bits per
# character** (the loss turned into a number that stays comparable when the tokenizer changes,
# which is exactly what vocabulary expansion does).
#
# ## Learning goals
# By the end of this lab you can
# 1. pack tokenised documents into fixed-size blocks with the BOS/EOS boundaries a causal LM needs,
#    and say how much padding that saves;
# 2. convert a mean token loss in nats into bits per character, and explain why loss per token
#    cannot compare two tokenizers;
# 3. compute a model's bits per character from its logits (which positions predict which tokens)
#    and compare it with a unigram baseline.
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
# | 10 min | setup |
# | 25 min | exercise 1: packing |
# | 10 min | exercise 2: a loss in bits per character |
# | 25 min | exercise 3: bits per character of a model, before and after a short training |
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

import matplotlib.pyplot as plt
import torch

from zhllm import corpora, cpt, evaluation, labs, runtime
from zhllm.modeling import tiny_llama

runtime.set_threads(1)  # the lab's models are tiny: one thread is fastest, and the laptop stays responsive
runtime.seed_everything(0)
print(runtime.banner())

# %% tags=["parameters"]
BLOCK_SIZE = 64       # tokens per training block
TRAIN_DOCS = 3000     # reviews to train on
STEPS = 60            # optimizer steps of the short training run
BATCH = 16            # blocks per step

# %% [markdown]
# ## 1 · Data and tokenizer
# A small Llama-2-style tokenizer (SentencePiece, byte fallback, `<s>` = BOS, `</s>` = EOS) trained
# on Chinese product reviews, and the reviews themselves: a training split and a held-out split
# that no training step reads.

# %%
tok = labs.lab_tokenizer()
train_texts = [text for text, _ in corpora.reviews("train")][:TRAIN_DOCS]
heldout_texts = [text for text, _ in corpora.reviews("heldout") if len(text) <= 150][:200]
print(len(tok), "tokens; BOS", tok.bos_token_id, "EOS", tok.eos_token_id)
print(train_texts[0])
print(tok(train_texts[0])["input_ids"][:20])

# %% [markdown]
# ## 2 · Exercise 1: pack documents into blocks
# Padding each review to a common length wastes compute on pad tokens. Instead, write every
# document as `<s> document </s>`, concatenate them all into one stream, and cut the stream into
# blocks of exactly `block_size` tokens. The leftover tokens at the end (less than one block) are
# dropped, so every block is full.
#
# - The tokenizer adds `<s>` by itself; encode with `add_special_tokens=False` and add BOS and EOS
#   yourself (`tokenizer.bos_token_id`, `tokenizer.eos_token_id`), or documents get two BOS and no EOS.
# - EOS matters: it is how the model learns that a document ends.
#
# Write `pack_documents(tokenizer, texts, block_size)` returning a list of blocks (lists of ids).

# %% [raw]
# # BEGIN QUESTION
# name: pack_documents
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def pack_documents(tokenizer, texts: list, block_size: int) -> list:
    """`<s> doc </s>` for every document, concatenated, cut into full blocks of `block_size` ids."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: build one stream of BOS + ids + EOS per document, then cut it into full blocks")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    stream = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        stream += [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    return [stream[start:start + block_size] for start in range(0, len(stream) - block_size + 1, block_size)]
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
blocks = pack_documents(tok, train_texts[:3], 16)
for block in blocks[:3]:
    print(tok.decode(block))

# %% tags=["check"]
labs.check_pack_documents(pack_documents)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_pack_documents_public(labs, pack_documents):
    labs.check_pack_documents(pack_documents)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_pack_documents_hidden(pack_documents):
    import random

    from zhllm import cpt, labs

    tok = labs.lab_tokenizer()
    rng = random.Random(1)
    cases = [(["".join(rng.choice(labs.POOL) for _ in range(rng.randint(1, 40))) for _ in range(rng.randint(1, 10))],
              rng.randint(2, 64)) for _ in range(30)]
    want = [[list(row["input_ids"]) for row in cpt.pack_documents(tok, texts, size)] for texts, size in cases]
    with labs.kit_switched_off((cpt, "pack_documents")):
        got = [[[int(t) for t in block] for block in pack_documents(tok, list(texts), size)] for texts, size in cases]
    assert got == want, "the blocks differ from the reference on new documents"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# How much would padding have cost? `cpt.padding_avoided` gives the share of a batch that would be
# padding if each document had its own row of `BLOCK_SIZE` tokens.

# %%
train_blocks = pack_documents(tok, train_texts, BLOCK_SIZE)
print(f"{len(train_blocks)} blocks of {BLOCK_SIZE} tokens")
print(f"padding avoided: {cpt.padding_avoided(tok, train_texts, BLOCK_SIZE):.0%} of a padded batch")

# %% [markdown]
# ## 3 · Exercise 2: a loss in bits per character
# Trainers report the **mean cross-entropy per predicted token, in nats** (natural log). Two
# tokenizers cut the same text into different numbers of tokens, so their per-token losses cannot be
# compared. Bits per character can: total information of the text in bits, divided by its length.
#
# total nats = mean loss × number of predicted tokens; bits = nats / ln 2; bpc = bits / characters.
#
# Write `loss_to_bpc(mean_loss, n_tokens, n_chars)`.

# %% [raw]
# # BEGIN QUESTION
# name: loss_to_bpc
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def loss_to_bpc(mean_loss: float, n_tokens: int, n_chars: int) -> float:
    """Bits per character of a text whose `n_tokens` predicted tokens have mean loss `mean_loss` (nats)."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: total nats, converted to bits, divided by characters")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    return mean_loss * n_tokens / math.log(2) / n_chars
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
print(loss_to_bpc(2.0, 100, 150))

# %% tags=["check"]
labs.check_loss_to_bpc(loss_to_bpc)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_loss_to_bpc_public(labs, loss_to_bpc):
    labs.check_loss_to_bpc(loss_to_bpc)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_loss_to_bpc_hidden(loss_to_bpc):
    import math
    import random

    rng = random.Random(1)
    for _ in range(50):
        loss, tokens, chars = rng.uniform(0.1, 10), rng.randint(1, 100_000), rng.randint(1, 100_000)
        want = loss * tokens / math.log(2) / chars
        got = float(loss_to_bpc(loss, tokens, chars))
        assert math.isclose(got, want, rel_tol=1e-9), f"wrong for mean_loss={loss}, n_tokens={tokens}, n_chars={chars}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 4 · Exercise 3: bits per character of a model
# Now compute it from the model itself. For each text, feed `<s>` + the text's ids. The logits at
# position *t* are the model's prediction for the token at *t + 1*, so every text token — the first
# one included, predicted from `<s>` — is paid for exactly once:
#
# `log_probs = log_softmax(logits[:-1])`, targets `ids[1:]`, nats = −Σ log p(target).
#
# Sum the nats of **all** texts, convert to bits, divide by **all** their characters.
# Write `bits_per_character(model, tokenizer, texts)` (one text at a time is fine; use `torch.no_grad()`).

# %% [raw]
# # BEGIN QUESTION
# name: bits_per_character
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def bits_per_character(model, tokenizer, texts: list) -> float:
    """Total negative log-likelihood of `texts` under `model`, in bits, per character."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: for each text, BOS + ids, sum -log p of each next token, then divide bits by characters")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    total_nats = 0.0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            total_nats -= logp.gather(-1, ids[0, 1:, None]).sum().item()
    return total_nats / math.log(2) / sum(len(t) for t in texts)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
model = tiny_llama(len(tok), hidden_size=64, num_layers=2, num_heads=2, max_positions=256, seed=0)
print(f"untrained model: {bits_per_character(model, tok, heldout_texts[:50]):.2f} bits per character")

# %% tags=["check"]
labs.check_bits_per_character(bits_per_character)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_bits_per_character_public(labs, bits_per_character):
    labs.check_bits_per_character(bits_per_character)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_bits_per_character_hidden(bits_per_character):
    import math
    import random

    from zhllm import evaluation, labs

    tok = labs.lab_tokenizer()
    model = labs.tiny_model(len(tok), seed=1)
    rng = random.Random(1)
    cases = [["".join(rng.choice(labs.HANZI + "，。") for _ in range(rng.randint(1, 60))) for _ in range(rng.randint(1, 4))]
             for _ in range(4)]
    with labs.one_thread():
        want = [evaluation.bits_per_character(model, tok, texts) for texts in cases]
        with labs.kit_switched_off((evaluation, "bits_per_character")):
            got = [float(bits_per_character(model, tok, list(texts))) for texts in cases]
    assert all(math.isclose(g, w, rel_tol=1e-4) for g, w in zip(got, want)), "wrong on new texts and a new model"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 5 · A short training run, judged in bits per character
# We train the tiny model for a few dozen steps on your packed blocks (a plain loop: this lab is about
# the loss, stage 02 uses the Hugging Face Trainer with QLoRA). The model computes the mean token
# loss itself when given `labels`; your `loss_to_bpc` turns the held-out loss into bits per
# character, which must agree with your `bits_per_character`.

# %%
data = torch.tensor(train_blocks)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
generator = torch.Generator().manual_seed(0)
losses = []
model.train()
for step in range(STEPS):
    batch = data[torch.randint(len(data), (BATCH,), generator=generator)]
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
model.eval()
plt.figure(figsize=(5, 2.5))
plt.plot(losses)
plt.xlabel("step")
plt.ylabel("train loss (nats/token)")
plt.tight_layout()
plt.show()

# %%
with torch.no_grad():
    nats, n_tokens = 0.0, 0
    for text in heldout_texts:
        ids = torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]])
        out = model(input_ids=ids, labels=ids)  # mean over the len - 1 predicted tokens
        nats += out.loss.item() * (ids.shape[1] - 1)
        n_tokens += ids.shape[1] - 1
n_chars = sum(len(t) for t in heldout_texts)
from_loss = loss_to_bpc(nats / n_tokens, n_tokens, n_chars)
direct = bits_per_character(model, tok, heldout_texts)
kit = evaluation.bits_per_character(model, tok, heldout_texts)
unigram = evaluation.unigram_bits_per_character(train_texts, heldout_texts)
print(f"held-out mean loss      {nats / n_tokens:.3f} nats per token")
print(f"bpc from the loss       {from_loss:.3f}")
print(f"bpc, your function      {direct:.3f}")
print(f"bpc, the kit            {kit:.3f}")
print(f"unigram baseline        {unigram:.3f}")
assert abs(from_loss - direct) < 1e-3 and abs(direct - kit) < 1e-3

# %% [markdown]
# ## Open questions
# 1. In a packed block, plain causal attention lets the second document attend to the end of the
#    first. When could that hurt (think of unrelated documents, and of what the model learns at a
#    document's first tokens)? `cpt.pack_documents(..., separate=True)` also returns position ids
#    that restart at every document: what else must the attention implementation do for the
#    documents to be truly separate?
# 2. After vocabulary expansion, the same Chinese text has about half as many tokens. If the model
#    were no better at all, what would happen to its loss per token, and to its bits per character?
#    Which of the two would you put in a report comparing the base and the expanded model, and why?
