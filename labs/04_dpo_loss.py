# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 04_dpo_loss
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
# # Lab 04 · Preference alignment: the DPO loss (直接偏好优化), checked against TRL
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/labs/student/04_dpo_loss.ipynb)
#
# **Stage:** 04 (DPO) · **Time:** one 90-minute class · **Runs on:** a laptop CPU or Colab; the
# training at the end takes seconds.
#
# Direct Preference Optimization (Rafailov et al., 2023) aligns a model with pairs of answers to the
# same prompt, one *chosen* and one *rejected*, without a separate reward model. Its loss needs only
# four numbers per pair: the log-probability of each answer under the policy being trained and
# under a frozen reference model. Stage 04 uses TRL's `DPOTrainer`; here you write the loss yourself
# and the check compares it with the code TRL runs.
#
# ## Learning goals
# By the end of this lab you can
# 1. compute a sequence's log-probability from a model's logits, over the completion tokens only;
# 2. write the DPO loss −log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])
#    and explain the role of β and of the reference model;
# 3. read DPO's *implicit rewards* and reward accuracy while a tiny model learns to prefer
#    positive reviews.
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
# | 10 min | setup, preference pairs |
# | 25 min | exercise 1: sequence log-probabilities |
# | 25 min | exercise 2: the DPO loss |
# | 10 min | train with your loss |
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
import copy

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from zhllm import corpora, labs, runtime
from zhllm.modeling import tiny_llama

runtime.set_threads(1)  # the lab's model is tiny: one thread is fastest, and the laptop stays responsive
runtime.seed_everything(0)
print(runtime.banner())

# %% tags=["parameters"]
BETA = 0.1            # DPO's temperature on the log-ratio margin
TRAIN_PAIRS = 256     # preference pairs to train on
HELDOUT_PAIRS = 128   # pairs to measure reward accuracy on
STEPS = 40            # optimizer steps
BATCH = 32            # pairs per step

# %% [markdown]
# ## 1 · Preference pairs
# The prompt asks for a positive review; the *chosen* answer is a real positive product review, the
# *rejected* one a real negative review (from the kit's offline review corpus). Each sequence is
# `<s> prompt answer </s>`; the **completion mask** is 1 on the answer and its EOS, 0 on the prompt
# and on padding — the same convention as TRL's collator.

# %%
tok = labs.lab_tokenizer()
PROMPT = "请写一条好评："


def pairs(split: str, n: int) -> list:
    rows = [(text, label) for text, label in corpora.reviews(split) if 6 <= len(text) <= 30]
    positive = [t for t, y in rows if y == 1][:n]
    negative = [t for t, y in rows if y == 0][:n]
    return list(zip(positive, negative))


def encode(answers: list) -> tuple:
    """input_ids, attention_mask and completion_mask of `<s> PROMPT answer </s>` rows, right-padded."""
    prompt = [tok.bos_token_id, *tok(PROMPT, add_special_tokens=False)["input_ids"]]
    rows = [prompt + tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in answers]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    attention = torch.zeros_like(ids)
    completion = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        attention[i, :len(row)] = 1
        completion[i, len(prompt):len(row)] = 1
    return ids, attention, completion


train_pairs, heldout_pairs = pairs("train", TRAIN_PAIRS), pairs("heldout", HELDOUT_PAIRS)
print(PROMPT, "| chosen:", train_pairs[0][0], "| rejected:", train_pairs[0][1])
ids, attention, completion = encode([train_pairs[0][0]])
print(ids.tolist(), completion.tolist(), sep="\n")

# %% [markdown]
# ## 2 · Exercise 1: sequence log-probabilities
# log π(y | x) = Σ over completion tokens of log p(token | everything before it). From logits of
# shape (batch, length, vocabulary): take `log_softmax` over the vocabulary, note that position *t*
# predicts token *t + 1* (drop the last logit, and the first id and mask entry), pick each next
# token's log-probability, multiply by the shifted completion mask and **sum** per sequence.
#
# Write `sequence_logps(logits, input_ids, completion_mask)` returning a tensor of shape (batch,).

# %% [raw]
# # BEGIN QUESTION
# name: sequence_logps
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def sequence_logps(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each sequence's completion tokens: shape (batch,)."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: log_softmax, shift by one, gather the next tokens, keep completion tokens, sum")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (token_logp * completion_mask[:, 1:]).sum(dim=1)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
print(sequence_logps(torch.zeros(1, 4, 10), torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0, 0, 1, 1]])),
      "should be 2 × log(1/10) =", 2 * torch.log(torch.tensor(0.1)).item())

# %% tags=["check"]
labs.check_sequence_logps(sequence_logps)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_sequence_logps_public(labs, sequence_logps):
    labs.check_sequence_logps(sequence_logps)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_sequence_logps_hidden(sequence_logps):
    import torch

    from zhllm import labs
    from zhllm.labs import dpo_loss as checks

    g = torch.Generator().manual_seed(1)
    with labs.kit_switched_off((checks, "_sequence_logps")):
        for _ in range(30):
            b, t, v = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(3, 16, (1,), generator=g)), 13
            logits = torch.randn(b, t, v, generator=g) * 3
            ids = torch.randint(0, v, (b, t), generator=g)
            mask = torch.zeros(b, t, dtype=torch.long)
            for row in range(b):
                start = int(torch.randint(1, t - 1, (1,), generator=g))
                mask[row, start:int(torch.randint(start + 1, t + 1, (1,), generator=g))] = 1
            logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            want = (logp * mask[:, 1:]).sum(1)
            got = torch.as_tensor(sequence_logps(logits.clone(), ids.clone(), mask.clone()), dtype=torch.float32)
            assert got.shape == want.shape, f"expected {tuple(want.shape)} numbers, got {tuple(got.shape)}"
            assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), "wrong on a new batch"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 3 · Exercise 2: the DPO loss
# With log-ratios against the reference, r_w = log π(y_w) − log π_ref(y_w) for the chosen answer and
# r_l likewise for the rejected one, the loss of a pair is
#
# −log σ(β (r_w − r_l)),
#
# averaged over the batch. It falls when the policy raises the chosen answer *relative to the
# reference* more than the rejected one. Use `F.logsigmoid` (stable for large margins) and keep the
# result a tensor: it is what we backpropagate.
#
# Write `dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)`.

# %% [raw]
# # BEGIN QUESTION
# name: dpo_loss
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean DPO (sigmoid) loss of a batch of pairs, from sequence log-probabilities."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: log-ratio margin, times beta, -logsigmoid, mean over the batch")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
example = (torch.tensor([-12.0, -30.5]), torch.tensor([-14.0, -29.0]), torch.tensor([-13.0, -31.0]),
           torch.tensor([-13.5, -30.0]))
print(f"yours {dpo_loss(*example, BETA).item():.6f}   TRL's {labs.trl_dpo_loss(*example, BETA).item():.6f}")

# %% tags=["check"]
labs.check_dpo_loss(dpo_loss)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_dpo_loss_public(labs, dpo_loss):
    labs.check_dpo_loss(dpo_loss)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_dpo_loss_hidden(dpo_loss):
    import torch
    import torch.nn.functional as F
    from trl.trainer.dpo_trainer import DPOTrainer

    from zhllm import labs
    from zhllm.labs import dpo_loss as checks

    g = torch.Generator().manual_seed(1)
    with labs.kit_switched_off((labs, "trl_dpo_loss"), (checks, "_formula_dpo_loss"), (DPOTrainer, "_compute_loss")):
        for _ in range(30):
            b = int(torch.randint(1, 9, (1,), generator=g))
            pc, pr, rc, rr = (-torch.rand(b, generator=g, dtype=torch.float64) * 80 for _ in range(4))
            beta = float(torch.empty(1).uniform_(0.01, 2.0, generator=g))
            want = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
            got = dpo_loss(pc.clone().requires_grad_(True), pr.clone(), rc.clone(), rr.clone(), beta)
            assert torch.is_tensor(got) and got.numel() == 1 and got.requires_grad, "a scalar tensor with a gradient"
            assert torch.allclose(got.detach().double().reshape(()), want, atol=1e-6), f"wrong for beta={beta:.3f}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [markdown]
# ## 4 · Train with your loss
# A tiny policy starts from random weights; the reference is a frozen copy of it (stage 04 gets the
# same reference for free by disabling the LoRA adapter). Reference log-probabilities are computed
# once. The *implicit reward* of an answer is β × its log-ratio; reward accuracy is how often the
# chosen answer's reward beats the rejected one's, on pairs the policy never trained on.

# %%
policy = tiny_llama(len(tok), hidden_size=64, num_layers=2, num_heads=2, max_positions=256, seed=0)
reference = copy.deepcopy(policy).eval().requires_grad_(False)


def batch_logps(model, answers: list) -> torch.Tensor:
    ids, attention, completion = encode(answers)
    return sequence_logps(model(input_ids=ids, attention_mask=attention).logits, ids, completion)


def reward_accuracy(pair_list: list) -> float:
    with torch.no_grad():
        chosen = batch_logps(policy, [c for c, _ in pair_list]) - batch_logps(reference, [c for c, _ in pair_list])
        rejected = batch_logps(policy, [r for _, r in pair_list]) - batch_logps(reference, [r for _, r in pair_list])
    return (BETA * chosen > BETA * rejected).float().mean().item()


with torch.no_grad():
    ref_chosen = batch_logps(reference, [c for c, _ in train_pairs])
    ref_rejected = batch_logps(reference, [r for _, r in train_pairs])
before = reward_accuracy(heldout_pairs)
optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
generator = torch.Generator().manual_seed(0)
losses = []
policy.train()
for step in range(STEPS):
    pick = torch.randint(len(train_pairs), (BATCH,), generator=generator).tolist()
    chosen = batch_logps(policy, [train_pairs[i][0] for i in pick])
    rejected = batch_logps(policy, [train_pairs[i][1] for i in pick])
    loss = dpo_loss(chosen, rejected, ref_chosen[pick], ref_rejected[pick], BETA)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
policy.eval()
after = reward_accuracy(heldout_pairs)
print(f"DPO loss {losses[0]:.3f} -> {losses[-1]:.3f} (log 2 = 0.693 at the start: policy = reference)")
print(f"held-out reward accuracy {before:.0%} -> {after:.0%} (ties count as wrong, as in TRL)")
plt.figure(figsize=(5, 2.5))
plt.plot(losses)
plt.xlabel("step")
plt.ylabel("DPO loss")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Open questions
# 1. Rerun the training with `BETA = 0.01` and with `BETA = 1.0`. How do the loss curve and the
#    implicit rewards change? DPO's derivation treats β as the strength of a KL penalty that keeps
#    the policy near the reference: what would the loss reward if you dropped the reference terms
#    altogether, and what could the policy do to the probability of *every* answer to satisfy it?
# 2. Stage 04 does not keep a second copy of the model as reference: it disables the LoRA adapter.
#    Why is that the same reference as a frozen copy taken before DPO starts? What goes wrong if the
#    SFT adapter was merged into the weights *after* the reference log-probabilities were computed,
#    or if DPO trains a fresh adapter on top of an unmerged SFT adapter?
