# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 03_sft_label_mask
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
# # Lab 03 · Instruction tuning (指令微调): the assistant-only label mask
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/labs/student/03_sft_label_mask.ipynb)
#
# **Stage:** 03 (supervised fine-tuning) · **Time:** one 90-minute class ·
# **Runs on:** a laptop CPU or Colab; every cell takes seconds.
#
# In supervised fine-tuning the model reads a whole conversation but is trained only to write the
# assistant's replies. Which tokens count is decided by the **labels**: a copy of the input ids in
# which every position that should not be learned is set to −100, the value PyTorch's
# cross-entropy skips. Get the mask wrong and the model learns to imitate users, or — a classic bug
# of early Chinese SFT recipes — never learns to stop, because the EOS after each reply was masked.
#
# ## Learning goals
# By the end of this lab you can
# 1. render a conversation with a chat template (对话模板) and find each reply's tokens by rendering
#    the prompt the model sees at inference;
# 2. build the label mask: −100 on system, user and template tokens, each reply **and its EOS** kept,
#    in every assistant turn of a multi-turn conversation;
# 3. compute the masked next-token loss exactly as transformers does, and explain why it is a
#    mean over trained tokens.
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
# | 15 min | setup, the chat template, prompts at inference |
# | 35 min | exercise 1: the label mask |
# | 20 min | exercise 2: the masked loss |
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
import torch
import torch.nn.functional as F

from zhllm import chat, labs, runtime

runtime.set_threads(1)  # the lab's model is tiny: one thread is fastest, and the laptop stays responsive
runtime.seed_everything(0)
print(runtime.banner())

# %% tags=["parameters"]
IGNORE = -100  # the label PyTorch's cross-entropy skips

# %% [markdown]
# ## 1 · The chat template
# The kit's template writes each turn as a header line and its text, turns separated by a blank
# line, and closes every assistant reply with EOS (`</s>`). The tokenizer below is a small
# Llama-2-style SentencePiece tokenizer trained on Chinese reviews, carrying that template.

# %%
tok = labs.lab_tokenizer()
conversation = [
    {"role": "system", "content": "你是一个有帮助的助手。"},
    {"role": "user", "content": "分词：我爱北京"},
    {"role": "assistant", "content": "我 爱 北京"},
    {"role": "user", "content": "再来一个：质量很好"},
    {"role": "assistant", "content": "质量 很 好"},
]
print(tok.apply_chat_template(conversation, tokenize=False))

# %% [markdown]
# At inference the model gets the conversation so far plus the assistant header (the *generation
# prompt*) and writes the reply. A reply's tokens in the training sequence are therefore what comes
# after the rendering of `messages[:k]` with `add_generation_prompt=True`, up to and including the
# EOS that closes it. The kit's template is built so the prompt's tokens are always a prefix of the
# whole conversation's tokens.

# %%
def template_ids(tokenizer, messages: list, add_generation_prompt: bool = False) -> list:
    """Token ids of the chat template's rendering of `messages`."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"])


whole = template_ids(tok, conversation)
prompt = template_ids(tok, conversation[:2], add_generation_prompt=True)
print(len(prompt), "prompt tokens;", len(whole), "tokens in all; prefix:", whole[:len(prompt)] == prompt)
print(repr(tok.decode(prompt)))

# %% [markdown]
# ## 2 · Exercise 1: the label mask
# Write `build_labels(tokenizer, messages)` returning `{"input_ids": ids, "labels": labels}`:
#
# - `ids` = `template_ids(tokenizer, messages)`;
# - `labels` is −100 everywhere except, for **every** assistant message *k*, the positions from the
#   end of its inference prompt to its EOS (inclusive), where `labels[i] = ids[i]` (not shifted: the
#   model shifts labels itself);
# - the tokens after an EOS (the blank line before the next turn) belong to the template: −100.
#
# Hint: `template_ids(tokenizer, messages[:k], add_generation_prompt=True)` tells you where reply *k*
# starts; `template_ids(tokenizer, messages[:k + 1])` contains its EOS.

# %% [raw]
# # BEGIN QUESTION
# name: build_labels
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def build_labels(tokenizer, messages: list) -> dict:
    """input_ids of the rendered conversation and labels: -100 except each reply and its EOS."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: start from all -100, then copy the ids of each reply span (prompt end to EOS)")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    ids = template_ids(tokenizer, messages)
    labels = [IGNORE] * len(ids)
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(template_ids(tokenizer, messages[:k], add_generation_prompt=True))
        upto = template_ids(tokenizer, messages[:k + 1])
        end = upto.index(tokenizer.eos_token_id, start) + 1
        labels[start:end] = ids[start:end]
    return {"input_ids": ids, "labels": labels}
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
row = build_labels(tok, conversation)
print(chat.show_labels(tok, row["input_ids"], row["labels"]))  # trained tokens are in ⟦ ⟧

# %% tags=["check"]
labs.check_build_labels(build_labels)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_build_labels_public(labs, build_labels):
    labs.check_build_labels(build_labels)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_build_labels_hidden(build_labels):
    from zhllm import chat, labs
    from zhllm.labs.sft_label_mask import _conversations

    tok = labs.lab_tokenizer()
    _, cases = _conversations(20, seed=1)
    want = [chat.build_labels(tok, messages) for messages in cases]
    with labs.kit_switched_off((chat, "build_labels")):
        got = [build_labels(tok, [dict(m) for m in messages]) for messages in cases]
    for g, w in zip(got, want):
        assert [int(x) for x in g["input_ids"]] == w["input_ids"], "input_ids differ on a new conversation"
        assert [int(x) for x in g["labels"]] == w["labels"], "labels differ on a new conversation"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# Only a small share of a conversation is trained:

# %%
trained = sum(label != IGNORE for label in row["labels"])
print(f"{trained} of {len(row['labels'])} tokens trained ({trained / len(row['labels']):.0%})")

# %% [markdown]
# ## 3 · Exercise 2: the masked loss
# The model returns `logits` of shape (batch, length, vocabulary). The logits at position *t*
# predict the token at *t + 1*, so drop the last logit and the first label; then take the
# cross-entropy over the positions whose label is not −100, **averaged over all trained tokens of
# the batch** (not per conversation). This is what transformers computes when you pass `labels=`.
#
# Write `masked_loss(logits, labels)` returning a scalar tensor.

# %% [raw]
# # BEGIN QUESTION
# name: masked_loss
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def masked_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions with a label other than -100."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: shift by one, flatten, cross-entropy with ignore_index=-100 (mean over trained tokens)")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    vocab = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
print(masked_loss(torch.randn(1, 4, 5), torch.tensor([[IGNORE, IGNORE, 3, 1]])))

# %% tags=["check"]
labs.check_masked_loss(masked_loss)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_masked_loss_public(labs, masked_loss):
    labs.check_masked_loss(masked_loss)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_masked_loss_hidden(masked_loss):
    import torch
    from transformers.loss import loss_utils

    from zhllm import labs
    from zhllm.labs import sft_label_mask

    g = torch.Generator().manual_seed(1)
    with labs.kit_switched_off((sft_label_mask, "_transformers_loss"), (loss_utils, "ForCausalLMLoss")):
        for _ in range(30):
            b, t, v = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(3, 20, (1,), generator=g)), 23
            logits = torch.randn(b, t, v, generator=g) * 3
            labels = torch.randint(0, v, (b, t), generator=g)
            labels[torch.rand(b, t, generator=g) < 0.4] = -100
            labels[:, 1] = 5  # at least one trained token in every batch
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            want = nll / (labels[:, 1:] != -100).sum()
            got = torch.as_tensor(masked_loss(logits.clone(), labels.clone()), dtype=torch.float32).reshape(())
            assert torch.allclose(got, want, atol=1e-5), f"expected {want.item():.5f}, got {got.item():.5f}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 4 · A batch, as a trainer sees it
# Two conversations of different lengths, right-padded with the pad token (which is *not* EOS)
# and −100 labels; your loss must equal the model's own.

# %%
model = labs.tiny_model(len(tok), hidden_size=64, num_layers=2)
rows = [build_labels(tok, conversation), build_labels(tok, conversation[1:3])]
width = max(len(r["input_ids"]) for r in rows)
input_ids = torch.tensor([r["input_ids"] + [tok.pad_token_id] * (width - len(r["input_ids"])) for r in rows])
labels = torch.tensor([r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in rows])
attention_mask = (torch.arange(width) < torch.tensor([[len(r["input_ids"])] for r in rows])).long()
with torch.no_grad():
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    mine = masked_loss(out.logits, labels)
    everything = masked_loss(out.logits, input_ids.masked_fill(attention_mask == 0, IGNORE))
print(f"model's loss {out.loss.item():.4f}, yours {mine.item():.4f}")
print(f"loss if every token were trained: {everything.item():.4f}")
print("pad", tok.pad_token_id, "!= eos", tok.eos_token_id)
assert torch.allclose(out.loss, mine, atol=1e-5)

# %% [markdown]
# ## Open questions
# 1. Early instruction-tuning recipes trained on the prompt tokens too. What would the model learn
#    from the user's turns and the template, and why does that matter more when prompts are long
#    and replies short? In which situation might a small loss weight on the prompt be worth it?
# 2. Many tokenizers ship without a pad token, and a common fix is `pad_token = eos_token`. Collators
#    then set the labels of pad positions to −100 — by id. Which of the labels you kept disappears,
#    and what would you observe when the fine-tuned model generates?
