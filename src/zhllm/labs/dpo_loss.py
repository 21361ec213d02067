"""Lab 04 checks: sequence log-probabilities and the DPO loss."""
import warnings

import torch
import torch.nn.functional as F

from ..errors import ZhllmError
from .common import LabCheckError, _close, _diagnose, _name, _passed, _run

def _sequence_logps(logits, input_ids, completion_mask):
    """Reference: sum of log p(token | prefix) over completion tokens, one number per sequence."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (token * completion_mask[:, 1:]).sum(dim=1)


def _logps_cases(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for k in range(n + 1):
        b, t = (3, 8) if k == 0 else (int(torch.randint(1, 5, (1,), generator=g)),
                                      int(torch.randint(4, 14, (1,), generator=g)))
        logits = torch.randn(b, t, 11, generator=g) * 3
        ids = torch.randint(0, 11, (b, t), generator=g)
        mask = torch.zeros(b, t, dtype=torch.long)
        for row in range(b):
            start = 3 + row if k == 0 else int(torch.randint(1, t - 1, (1,), generator=g))
            end = t - (row % 2) if k == 0 else int(torch.randint(start + 1, t + 1, (1,), generator=g))
            mask[row, start:end] = 1  # prompt before, padding after
        cases.append((logits, ids, mask))
    return cases[:1], cases[1:]


def check_sequence_logps(fn, n: int = 30, seed: int = 0) -> None:
    """`fn(logits, input_ids, completion_mask) -> (batch,)`: summed log-probs of the completion tokens."""
    fixed, generated = _logps_cases(n, seed)
    for logits, ids, mask in fixed + generated:
        got = _run(fn, logits.clone(), ids.clone(), mask.clone())
        try:
            got = torch.as_tensor(got, dtype=torch.float32).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise LabCheckError(f"`{_name(fn)}` should return a tensor with one number per sequence") from None
        want = _sequence_logps(logits, ids, mask)
        if got.shape != want.shape:
            raise LabCheckError(f"`{_name(fn)}` returned {tuple(got.shape)} numbers for a batch of {len(want)}: one "
                                "summed log-probability per sequence")
        if torch.allclose(got, want, rtol=1e-4, atol=1e-4):
            continue
        logp = torch.log_softmax(logits.float(), dim=-1)
        token = logp.gather(-1, ids[..., None]).squeeze(-1)
        shifted = logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
        wrong = [("you did not shift: the logits at position t give the probability of token t+1",
                  (token * mask).sum(1)),
                 ("you summed over the prompt (or padding) too: use only completion tokens (completion_mask)",
                  shifted.sum(1)),
                 ("you averaged over the completion tokens: DPO uses the sum of their log-probabilities",
                  (shifted * mask[:, 1:]).sum(1) / mask[:, 1:].sum(1).clamp(min=1)),
                 ("you used raw logits: take log_softmax over the vocabulary first",
                  (logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]).sum(1))]
        message = _diagnose(got, wrong, lambda a, b: torch.allclose(a, b.float(), rtol=1e-4, atol=1e-4))
        raise LabCheckError(message or f"expected {want.tolist()}, got {got.tolist()} "
                                       f"(completion_mask {mask.tolist()})")
    _passed(fn, len(fixed), len(generated))


def trl_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """TRL's own DPO loss (`DPOTrainer._compute_loss`, loss_type "sigmoid") on given sequence log-probs.

    TRL has no standalone loss function: this runs the trainer's method with stand-ins for the
    trainer and the model, whose per-token log-probs are the given sums (one completion token each).
    """
    from collections import defaultdict
    from types import SimpleNamespace

    from trl.trainer.dpo_trainer import DPOTrainer

    pc, pr, rc, rr = (torch.as_tensor(x, dtype=torch.float64).detach().reshape(-1)
                      for x in (policy_chosen, policy_rejected, ref_chosen, ref_rejected))
    logps = torch.cat([pc, pr]).unsqueeze(1)
    outputs = SimpleNamespace(log_probs=logps, entropy=torch.zeros_like(logps), mean_logits=torch.zeros_like(logps),
                              is_top1=torch.zeros_like(logps, dtype=torch.bool), aux_loss=None)

    def model(**kwargs):
        return outputs

    model.training = True
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x,
                                  unwrap_model=lambda m: m)
    trainer = SimpleNamespace(model=model, accelerator=accelerator, aux_loss_enabled=False, ld_alpha=None,
                              precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=["sigmoid"],
                              loss_weights=[1.0], beta=beta, use_weighting=False, label_smoothing=0.0,
                              _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
                              _total_train_tokens=0, _tp_size=1)
    ones = torch.ones(2 * len(pc), 2, dtype=torch.long)
    inputs = {"input_ids": ones, "attention_mask": ones, "completion_mask": ones,
              "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    try:
        return DPOTrainer._compute_loss(trainer, model, inputs, False)
    except (AttributeError, KeyError, TypeError) as exc:
        raise ZhllmError(f"this TRL version's DPOTrainer._compute_loss differs from TRL 1.16's ({exc}); "
                         "comparing with its formula instead") from exc


def _formula_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """The DPO sigmoid loss as TRL 1.16 writes it: mean of -log σ(β((πc - rc) - (πr - rr)))."""
    delta = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * delta).mean()


def check_dpo_loss(fn, n: int = 30, seed: int = 0) -> None:
    """`fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> scalar tensor`, TRL's loss."""
    g = torch.Generator().manual_seed(seed)
    fixed = [(torch.tensor([-12.0, -30.5]), torch.tensor([-14.0, -29.0]), torch.tensor([-13.0, -31.0]),
              torch.tensor([-13.5, -30.0]), 0.1)]
    generated = []
    for _ in range(n):
        b = int(torch.randint(1, 9, (1,), generator=g))
        tensors = [-torch.rand(b, generator=g, dtype=torch.float64) * 60 for _ in range(4)]
        generated.append((*tensors, float(torch.empty(1).uniform_(0.05, 1.0, generator=g))))
    for pc, pr, rc, rr, beta in fixed + generated:
        leaf = pc.clone().requires_grad_(True)
        out = _run(fn, leaf, pr.clone(), rc.clone(), rr.clone(), beta)
        if not torch.is_tensor(out) or out.numel() != 1:
            raise LabCheckError(f"`{_name(fn)}` should return a scalar tensor (one number for the batch), got "
                                f"{type(out).__name__}{'' if not torch.is_tensor(out) else tuple(out.shape)}")
        if not out.requires_grad:
            raise LabCheckError("your loss is not connected to the policy log-probs (no gradient): build it with "
                                "torch operations, without .item(), float() or torch.tensor(...)")
        got = float(out.detach())
        try:
            want = float(trl_dpo_loss(pc, pr, rc, rr, beta))
        except ZhllmError as exc:  # another TRL version: say so, then compare with TRL 1.16's formula
            warnings.warn(str(exc), stacklevel=2)
            want = float(_formula_dpo_loss(pc, pr, rc, rr, beta))
        if _close(got, want, 1e-5):
            continue
        delta = (pc - rc) - (pr - rr)
        wrong = [("your sign is flipped: the loss must fall when the policy raises the chosen answer over the "
                  "rejected one, -log σ(β·((πc - rc) - (πr - rr)))", -F.logsigmoid(-beta * delta).mean()),
                 ("you left out β: it scales the log-ratio margin inside the sigmoid", -F.logsigmoid(delta).mean()),
                 ("you multiplied by β outside the log-sigmoid: β belongs inside, on the margin",
                  (-beta * F.logsigmoid(delta)).mean()),
                 ("you ignored the reference model: the margin is (πc - rc) - (πr - rr), log-ratios, not raw "
                  "log-probs", -F.logsigmoid(beta * (pc - pr)).mean()),
                 ("you summed over the batch: TRL takes the mean", -F.logsigmoid(beta * delta).sum())]
        message = _diagnose(got, wrong, lambda a, b: _close(a, float(b), 1e-5))
        raise LabCheckError(message or f"expected TRL's loss {want:.6f}, got {got:.6f} (beta {beta})")
    _passed(fn, len(fixed), len(generated))
