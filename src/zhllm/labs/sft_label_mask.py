"""Lab 03 checks: the assistant-only label mask, and the masked loss."""
import random

import torch
import torch.nn.functional as F

from .common import LabCheckError, _close, _diagnose, _float, _ids, _name, _passed, _random_text, _run, lab_tokenizer

def _conversations(n: int, seed: int) -> tuple[list, list]:
    fixed = [[{"role": "user", "content": "这本书怎么样？"}, {"role": "assistant", "content": "内容很丰富，值得一读。"}],
             [{"role": "system", "content": "你是一个有帮助的助手。"}, {"role": "user", "content": "你好"},
              {"role": "assistant", "content": "你好！有什么可以帮你？"}],
             [{"role": "user", "content": "分词：我爱北京"}, {"role": "assistant", "content": "我 爱 北京"},
              {"role": "user", "content": "再来一个：质量很好"}, {"role": "assistant", "content": "质量 很 好"}]]
    rng = random.Random(seed)
    generated = []
    for _ in range(n):
        conv = [{"role": "system", "content": _random_text(rng)}] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 3)):
            conv += [{"role": "user", "content": _random_text(rng)},
                     {"role": "assistant", "content": _random_text(rng, 1)}]
        generated.append(conv)
    return fixed, generated


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted positions as (first, last)."""
    out = []
    for p in positions:
        if out and p == out[-1][1] + 1:
            out[-1] = (out[-1][0], p)
        else:
            out.append((p, p))
    return out


def _what(text: str) -> str:
    for marker, name in (("### User", "the user's turn"), ("### System", "the system prompt"),
                         ("### Assistant", "the assistant header (it is prompt: the model is given it)")):
        if marker in text:
            return name
    return "prompt or template tokens"


def check_build_labels(fn, tokenizer=None, n: int = 30, seed: int = 0) -> None:
    """`fn(tokenizer, messages) -> {"input_ids", "labels"}`: -100 everywhere but each reply and its EOS."""
    from ..chat import IGNORE, build_labels

    tok = tokenizer or lab_tokenizer()
    fixed, generated = _conversations(n, seed)
    for messages in fixed + generated:
        out = _run(fn, tok, [dict(m) for m in messages])
        if not isinstance(out, dict) or not {"input_ids", "labels"} <= set(out):
            raise LabCheckError(f"`{_name(fn)}` should return a dict with 'input_ids' and 'labels'")
        ids, labels = _ids(out["input_ids"]), _ids(out["labels"])
        want = build_labels(tok, messages)
        if ids == want["input_ids"] and labels == want["labels"]:
            continue
        if ids != want["input_ids"]:
            raise LabCheckError("your input_ids are not the chat template's rendering of the conversation: "
                                "use tokenizer.apply_chat_template(messages, tokenize=True), the same render "
                                "the model sees at inference")
        if len(labels) != len(ids):
            raise LabCheckError(f"you returned {len(labels)} labels for {len(ids)} input ids: one label per token")
        ref = want["labels"]
        shifted = [p for p, (lab, t) in enumerate(zip(labels, ids)) if lab != IGNORE and lab != t]
        if shifted:
            raise LabCheckError(f"position {shifted[0]} has label {labels[shifted[0]]} but token {ids[shifted[0]]}: "
                                "a trained position's label is its own token id (the model shifts labels itself)")
        for a, b in _runs([p for p in range(len(ids)) if ref[p] != IGNORE]):
            if all(labels[p] == IGNORE for p in range(a, b + 1)):
                raise LabCheckError(f"positions {a}-{b} ({tok.decode(ids[a:b + 1])!r}) are an assistant reply but "
                                    "all -100 in your labels: train every assistant turn, not only the last")
        dropped = [p for p in range(len(ids)) if labels[p] == IGNORE and ref[p] != IGNORE]
        eos = [p for p in dropped if ids[p] == tok.eos_token_id]
        if eos:
            raise LabCheckError(f"your labels drop the EOS that closes a reply (position {eos[0]}): keep it, or "
                                "the model never learns to stop")
        kept = _runs([p for p in range(len(ids)) if labels[p] != IGNORE and ref[p] == IGNORE])
        if kept:
            a, b = kept[0]
            text = tok.decode(ids[a:b + 1])
            after_eos = a > 0 and ids[a - 1] == tok.eos_token_id and ref[a - 1] != IGNORE
            what = "tokens after a reply's EOS belong to the template" if after_eos else f"this is {_what(text)}"
            raise LabCheckError(f"your mask keeps positions {a}-{b} ({text!r}): they should be -100, {what}; "
                                "only each reply and its EOS are trained")
        a, b = _runs(dropped)[0]
        raise LabCheckError(f"positions {a}-{b} ({tok.decode(ids[a:b + 1])!r}) are part of an assistant reply: "
                            "keep their token ids as labels, from the first token after the assistant header")
    _passed(fn, len(fixed), len(generated))


def _transformers_loss(logits, labels):
    """Reference: transformers' own causal-LM loss (shift by one, mean over trained tokens of the batch)."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    return ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1])


def _loss_cases(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for k in range(n + 2):
        b, t, v = (2, 7, 13) if k < 2 else (int(torch.randint(1, 5, (1,), generator=g)),
                                           int(torch.randint(4, 16, (1,), generator=g)), 17)
        logits = torch.randn(b, t, v, generator=g) * 3
        labels = torch.randint(0, v, (b, t), generator=g)
        for row in range(b):
            start = 2 + row if k < 2 else int(torch.randint(0, t - 2, (1,), generator=g))
            labels[row, :start] = -100
            if k == 1 or (k >= 2 and row % 2):
                labels[row, -1] = -100  # padding at the end
        cases.append((logits, labels))
    return cases[:2], cases[2:]


def check_masked_loss(fn, n: int = 30, seed: int = 0) -> None:
    """`fn(logits, labels) -> scalar`: mean cross-entropy of the next token over positions labels != -100."""
    fixed, generated = _loss_cases(n, seed)
    for logits, labels in fixed + generated:
        got = _float(_run(fn, logits.clone(), labels.clone()), fn)
        want = _transformers_loss(logits, labels).item()
        if _close(got, want, 1e-5):
            continue
        v = logits.shape[-1]
        per_token = F.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1), ignore_index=-100,
                                    reduction="none").view(labels.shape[0], -1)
        trained = (labels[:, 1:] != -100).float()
        wrong = [("you did not shift: the logits at position t predict the label at t+1 (drop the last logit "
                  "and the first label)", F.cross_entropy(logits.reshape(-1, v), labels.reshape(-1),
                                                         ignore_index=-100).item()),
                 ("you averaged over every position, masked ones included: divide by the number of trained "
                  "tokens only", (per_token.sum() / per_token.numel()).item()),
                 ("you averaged each conversation first, then the batch: transformers averages over all trained "
                  "tokens of the batch, so long replies count more",
                  ((per_token.sum(1) / trained.sum(1).clamp(min=1)).mean()).item()),
                 ("you returned the sum: the loss is the mean over trained tokens", per_token.sum().item())]
        message = _diagnose(got, wrong, lambda a, b: _close(a, b, 1e-5))
        raise LabCheckError(message or f"expected loss {want:.5f}, got {got:.5f} (labels {labels.tolist()})")
    _passed(fn, len(fixed), len(generated))
