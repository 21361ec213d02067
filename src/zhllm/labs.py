"""Classroom labs (课堂实验): checks that compare a student's function with the kit's reference.

Each `check_<idea>(fn)` runs fixed and generated cases, stops at the first disagreement and raises
`LabCheckError` with one sentence the student can act on. Where a plausible mistake is known (an
off-by-one, EOS dropped from the labels, mean for sum, a flipped sign), the check computes that
wrong answer too and names the mistake when the student's output matches it. Generated cases use a
fixed seed, so a failure shows up the same way on every run.
"""
import math
import random
import tempfile
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ZhllmError

# Characters the generated cases draw from: common ideographs, CJK punctuation, Latin, full-width digits.
HANZI = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年好得就那要下以生会自着去之过家学对可里后"
POOL = HANZI + "，。！？、" + "abcXY" + "１２３"


class LabCheckError(ZhllmError):
    """A student's function disagrees with the reference; the message says what to change."""


# ---- running the student's code -----------------------------------------------------------------

def _name(fn) -> str:
    return getattr(fn, "__name__", "your function")


def _run(fn, *args):
    """Call the student's function; a stub or a crash becomes a LabCheckError that says so."""
    try:
        return fn(*args)
    except NotImplementedError as exc:
        raise LabCheckError(f"`{_name(fn)}` is not implemented yet: replace the `raise NotImplementedError` "
                            f"line with your code, run its cell, then run this check again. ({exc})") from None
    except LabCheckError:
        raise
    except Exception as exc:
        raise LabCheckError(f"`{_name(fn)}` crashed with {type(exc).__name__}: {exc}. Call it by hand on the "
                            "example above the exercise to see where.") from exc


def _passed(fn, fixed: int, generated: int) -> None:
    print(f"✓ `{_name(fn)}` passed: {fixed} fixed and {generated} generated cases agree with the kit.")


def _float(value, fn, what: str = "a number") -> float:
    try:
        return float(value.item() if torch.is_tensor(value) else value)
    except (TypeError, ValueError, RuntimeError):
        raise LabCheckError(f"`{_name(fn)}` should return {what}, not {type(value).__name__}") from None


def _close(a: float, b: float, rel: float = 1e-4, abs_: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def _diagnose(got, wrong: list, same) -> str | None:
    """The message of the first known mistake whose output equals the student's, else None."""
    for message, value in wrong:
        if value is not None and same(got, value):
            return message
    return None


def _ids(value) -> list[int]:
    if torch.is_tensor(value):
        value = value.tolist()
    return [int(v) for v in value]


# ---- shared fixtures: a small tokenizer and a tiny model, seconds to build ------------------------

@lru_cache(maxsize=None)
def lab_tokenizer(vocab_size: int = 3000):
    """A Llama-2-style tokenizer (SentencePiece BPE, byte fallback, BOS/EOS/pad) trained on reviews.

    Trained in under a second on the kit's offline review corpus; carries the kit's chat template.
    """
    import sentencepiece as spm

    from . import base, chat, corpora

    lines = [text for text, _ in corpora.reviews("train")[:8000]]
    with tempfile.TemporaryDirectory() as tmp:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=f"{tmp}/sp",
                                       vocab_size=vocab_size, **dict(base.SP_OPTIONS, character_coverage=0.99))
        tokenizer = base.hf_tokenizer(Path(tmp) / "sp.model", model_max_length=1 << 20)  # no length warnings
    chat.set_chat_template(tokenizer)
    return tokenizer


def tiny_model(vocab_size: int, hidden_size: int = 32, num_layers: int = 1, seed: int = 0, sharp: bool = True):
    """A random Llama small enough for a check; `sharp` makes its predictions far from uniform.

    At the usual init every next-token distribution is nearly uniform, so an off-by-one would change
    a log-probability by a hair; a larger output matrix makes such mistakes visible.
    """
    from .modeling import tiny_llama

    model = tiny_llama(vocab_size, hidden_size=hidden_size, num_layers=num_layers, num_heads=2,
                       max_positions=1024, seed=seed)
    if sharp:
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(seed))
    return model.eval()


@contextmanager
def one_thread():
    """Run torch on one thread inside the block: tiny models are fastest so, above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _random_text(rng, low: int = 2, high: int = 30, chars: str = HANZI + "，。！") -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))


# ---- lab 01: which Chinese pieces to add, and characters per token -------------------------------

REJECT = {
    "in_vocab": "it is already in the vocabulary, and a second copy would give one string two ids",
    "not_cjk": "it contains characters that are not Chinese (CJK ideographs, CJK punctuation or full-width "
               "forms); use sp_expand.is_cjk_piece",
    "digits": "it joins digits into one piece, which undoes the base's split_digits for Chinese text "
              "(sp_expand.is_cjk_piece rejects it)",
    "no_split": "no cut splits it into two pieces already in the vocabulary, so BPE can never build it "
                "(it would be a dead token)",
    "border": "two different splits of it compete for the same symbols (like 哈哈哈 = 哈哈+哈 = 哈+哈哈), so "
              "SentencePiece and the Hugging Face tokenizer may merge differently; use sp_expand.has_order_conflict",
}


def reject_reason(piece: str, vocab) -> str | None:
    """Why stage 01 would not add `piece` to `vocab` (a key of REJECT), or None when it would."""
    from .sp_expand import has_order_conflict, is_cjk, is_cjk_piece, splits

    if piece in vocab:
        return "in_vocab"
    if not is_cjk_piece(piece):
        return "not_cjk" if not all(is_cjk(ch) for ch in piece) else "digits"
    if len(piece) > 1 and not splits(piece, vocab):
        return "no_split"
    if len(piece) > 1 and has_order_conflict(piece, vocab):
        return "border"
    return None


def _piece_cases(n: int, seed: int):
    base = {"中", "国", "人", "民", "日", "报", "哈", "哈哈", "我", "们", "１", "９", "a", "b"}
    fixed = [("中国", base), ("中", base), ("人民日报", base), ("人民", base), ("AI", base), ("中a", base),
             ("１９", base), ("哈哈哈", base), ("好", base), ("，", base), ("我们", base | {"我们"}),
             ("人民日报", base | {"人民", "日报"})]
    rng = random.Random(seed)
    generated = []
    for _ in range(n):
        vocab = {c for c in POOL if rng.random() < 0.6}
        vocab |= {rng.choice(HANZI) + rng.choice(HANZI) for _ in range(rng.randint(0, 30))}
        length = rng.choice([1, 2, 2, 3, 3, 4])
        chars = HANZI[:12] if rng.random() < 0.7 else POOL
        generated.append(("".join(rng.choice(chars) for _ in range(length)), vocab))
    return fixed, generated


def check_accept_piece(fn, n: int = 300, seed: int = 0) -> None:
    """`fn(piece, vocab) -> bool`: True when stage 01 would add the piece (see `reject_reason`)."""
    from .sp_expand import splits

    fixed, generated = _piece_cases(n, seed)
    for piece, vocab in fixed + generated:
        got = _run(fn, piece, set(vocab))
        if not isinstance(got, (bool, np.bool_)):
            raise LabCheckError(f"`{_name(fn)}` should return True or False, not {got!r}")
        reason = reject_reason(piece, vocab)
        if got and reason:
            raise LabCheckError(f"you accepted {piece!r}, but it must be rejected: {REJECT[reason]}. "
                                f"(vocabulary: {''.join(sorted(v for v in vocab if len(v) == 1))} + "
                                f"{len([v for v in vocab if len(v) > 1])} longer pieces)")
        if not got and reason is None:
            how = f", splits as {' + '.join(splits(piece, vocab)[0])}" if len(piece) > 1 else ""
            raise LabCheckError(f"you rejected {piece!r}, but it should be accepted: it is pure CJK, not yet "
                                f"in the vocabulary{how}, and has no merge-order conflict")
    _passed(fn, len(fixed), len(generated))


def check_chars_per_token(fn, tokenizer=None, n: int = 20, seed: int = 0) -> None:
    """`fn(tokenizer, texts) -> float`: characters of text per token over all texts, no special tokens."""
    from .tokenizer_expand import chars_per_token

    tok = tokenizer or lab_tokenizer()
    fixed = [["今天天气很好，我们去公园散步。"], ["hello world", "the quick brown fox"],
             ["质量很好", "物流太慢了，包装也破了，不推荐购买。", "ok"]]
    rng = random.Random(seed)
    generated = [[_random_text(rng, 1, 60, POOL) for _ in range(rng.randint(1, 6))] for _ in range(n)]
    for texts in fixed + generated:
        got = _float(_run(fn, tok, list(texts)), fn)
        want = chars_per_token(tok, texts)
        if _close(got, want, 1e-9):
            continue
        counts = [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]
        chars = sum(map(len, texts))
        wrong = [("you returned tokens per character: divide characters by tokens", sum(counts) / chars),
                 ("you counted the special tokens too (the <s> the tokenizer adds): encode with "
                  "add_special_tokens=False, we measure the text only",
                  chars / sum(len(ids) for ids in tok(list(texts))["input_ids"])),
                 ("you averaged the ratio of each text: divide the total characters by the total tokens, "
                  "so long texts count in proportion", sum(len(t) / c for t, c in zip(texts, counts)) / len(texts))]
        message = _diagnose(got, wrong, lambda a, b: _close(a, b, 1e-9))
        raise LabCheckError(message or f"for texts {texts!r} expected {want:.6f} characters per token, got {got:.6f}")
    _passed(fn, len(fixed), len(generated))


# ---- lab 02: packing documents into blocks, and bits per character ------------------------------

def _stream(tok, texts, bos=True, eos=True, special=False) -> list[int]:
    out = []
    for text in texts:
        ids = tok(text, add_special_tokens=special)["input_ids"]
        out += [tok.bos_token_id] * bos + ids + [tok.eos_token_id] * eos
    return out


def check_pack_documents(fn, tokenizer=None, n: int = 30, seed: int = 0) -> None:
    """`fn(tokenizer, texts, block_size) -> list of blocks`: `<s> doc </s>` streams cut into full blocks."""
    from .cpt import pack_documents

    tok = tokenizer or lab_tokenizer()
    docs = ["质量很好，物流也快。", "不喜欢，退货了。", "hello", "书的内容很丰富，值得一读。", "一般般"]
    exact = len(_stream(tok, docs))
    fixed = [(docs, 8), (docs, exact), (docs[:2], 5), (docs, exact // 2 + 1), (docs, exact + 1)]
    rng = random.Random(seed)
    generated = [([_random_text(rng, 1, 25, POOL) for _ in range(rng.randint(1, 8))], rng.randint(2, 40))
                 for _ in range(n)]
    for texts, size in fixed + generated:
        got = _run(fn, tok, list(texts), size)
        try:
            got = [_ids(block) for block in got]
        except (TypeError, ValueError):
            raise LabCheckError(f"`{_name(fn)}` should return a list of blocks, each a list of token ids") from None
        want = [row["input_ids"] for row in pack_documents(tok, texts, size)]
        if got == want:
            continue
        stream = _stream(tok, texts)
        where = f"(texts {texts!r}, block_size {size}, stream of {len(stream)} tokens)"
        bad = [i for i, block in enumerate(got) if len(block) != size]
        if bad == [len(got) - 1] and len(got) == len(want) + 1:
            raise LabCheckError(f"you kept the last, partial block ({len(got[-1])} tokens): drop the remainder so "
                                f"every block is full and no padding is needed {where}")
        if bad:
            raise LabCheckError(f"block {bad[0]} has {len(got[bad[0]])} tokens: every block must hold exactly "
                                f"block_size = {size} tokens {where}")
        flat = [t for block in got for t in block]
        wrong = [("you forgot the EOS (</s>) after each document: the model must learn where a document ends",
                  _stream(tok, texts, eos=False)),
                 ("you forgot the BOS (<s>) before each document", _stream(tok, texts, bos=False)),
                 ("some documents start with two <s>: the tokenizer already adds one unless you pass "
                  "add_special_tokens=False", _stream(tok, texts, special=True))]
        message = _diagnose(flat, wrong, lambda a, b: a == b[:len(a)] and a != stream[:len(a)])
        if message:
            raise LabCheckError(f"{message} {where}")
        if flat == stream[:len(flat)]:
            raise LabCheckError(f"you made {len(got)} blocks but the stream holds {len(want)} full block(s): "
                                f"check where your loop over block starts stops (off by one?) {where}")
        k = next(i for i, (a, b) in enumerate(zip(flat + [None], stream + [None])) if a != b)
        expected, found = (stream[k] if k < len(stream) else None), (flat[k] if k < len(flat) else None)
        raise LabCheckError(f"block {k // size}, position {k % size}: expected token {expected}, got {found}; the "
                            f"stream is <s> doc </s> for every document, in order, cut every block_size tokens {where}")
    _passed(fn, len(fixed), len(generated))


def loss_to_bpc(mean_loss: float, n_tokens: int, n_chars: int) -> float:
    """Reference: a mean loss (nats per predicted token) over `n_tokens` tokens as bits per character."""
    return mean_loss * n_tokens / math.log(2) / n_chars


def check_loss_to_bpc(fn, n: int = 50, seed: int = 0) -> None:
    """`fn(mean_loss, n_tokens, n_chars) -> float`: bits per character."""
    fixed = [(2.0, 100, 150), (math.log(2), 1, 1), (5.3, 4096, 2500)]
    rng = random.Random(seed)
    generated = [(rng.uniform(0.5, 8), rng.randint(1, 10_000), rng.randint(1, 10_000)) for _ in range(n)]
    for loss, tokens, chars in fixed + generated:
        got = _float(_run(fn, loss, tokens, chars), fn)
        want = loss_to_bpc(loss, tokens, chars)
        if _close(got, want, 1e-9):
            continue
        wrong = [("your answer is in nats: divide by ln 2 to get bits", loss * tokens / chars),
                 ("you computed bits per token: multiply by the number of tokens, then divide by the "
                  "number of characters", loss / math.log(2)),
                 ("you used log10: a bit is log base 2, so divide nats by ln 2", loss * tokens / chars / math.log(10)),
                 ("you swapped tokens and characters: total bits = mean loss × tokens / ln 2, then divide "
                  "by characters", loss * chars / math.log(2) / tokens)]
        message = _diagnose(got, wrong, lambda a, b: _close(a, b, 1e-9))
        raise LabCheckError(message or f"for mean_loss={loss}, n_tokens={tokens}, n_chars={chars} expected "
                                       f"{want:.6f} bits per character, got {got:.6f}")
    _passed(fn, len(fixed), len(generated))


@torch.no_grad()
def _bpc_variant(model, tok, texts, bos=True, shift=True, per_text=False, unit=math.log(2), per="char"):
    """Bits per character computed one text at a time, with switches that reproduce common mistakes."""
    bits, chars, tokens, ratios = 0.0, 0, 0, []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        ids = [tok.bos_token_id] * bos + ids
        x = torch.tensor([ids])
        logp = torch.log_softmax(model(input_ids=x).logits.float()[0], dim=-1)
        if shift:
            nll = -logp[:-1].gather(-1, x[0, 1:, None]).sum().item()
        else:
            nll = -logp.gather(-1, x[0, :, None]).sum().item()
        bits += nll / unit
        chars += len(text)
        tokens += len(ids) - 1
        ratios.append(nll / unit / len(text))
    if per_text:
        return sum(ratios) / len(ratios)
    return bits / (chars if per == "char" else tokens)


@one_thread()
def check_bits_per_character(fn, tokenizer=None, model=None, n: int = 6, seed: int = 0) -> None:
    """`fn(model, tokenizer, texts) -> float`: total NLL of the texts in bits / their characters."""
    from .evaluation import bits_per_character

    tok = tokenizer or lab_tokenizer()
    model = model or tiny_model(len(tok), seed=seed)
    fixed = [["质量很好，物流也快。"], ["不喜欢。", "书的内容很丰富，值得一读，推荐给大家。"]]
    rng = random.Random(seed)
    generated = [[_random_text(rng, 1, 50) for _ in range(rng.randint(1, 4))] for _ in range(n)]
    for texts in fixed + generated:
        got = _float(_run(fn, model, tok, list(texts)), fn)
        want = bits_per_character(model, tok, texts)
        if _close(got, want, 1e-4):
            continue
        wrong = [("your answer is in nats: divide by ln 2", _bpc_variant(model, tok, texts, unit=1.0)),
                 ("you did not put <s> in front of each text, so its first token is never predicted: "
                  "every character must be paid for", _bpc_variant(model, tok, texts, bos=False)),
                 ("your log-probabilities are not shifted: the logits at position t predict token t+1",
                  _bpc_variant(model, tok, texts, shift=False)),
                 ("you averaged the bits per character of each text: sum the bits of all texts, then divide "
                  "by all their characters", _bpc_variant(model, tok, texts, per_text=True)),
                 ("you divided by the number of tokens: bits per character divides by characters",
                  _bpc_variant(model, tok, texts, per="token"))]
        message = _diagnose(got, wrong, lambda a, b: _close(a, b, 1e-4))
        raise LabCheckError(message or f"for texts {texts!r} expected {want:.5f} bits per character, got {got:.5f}")
    _passed(fn, len(fixed), len(generated))


# ---- lab 03: the assistant-only label mask, and the masked loss ---------------------------------

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
    from .chat import IGNORE, build_labels

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


def reference_masked_loss(logits, labels):
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
        want = reference_masked_loss(logits, labels).item()
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


# ---- lab 04: sequence log-probabilities and the DPO loss ---------------------------------------

def reference_sequence_logps(logits, input_ids, completion_mask):
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
        want = reference_sequence_logps(logits, ids, mask)
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
                         "compare with formula_dpo_loss instead") from exc


def formula_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
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
            want = float(formula_dpo_loss(pc, pr, rc, rr, beta))
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


# ---- lab 05: the Approach-3 objective and the compute-optimal split ------------------------------

def check_huber_objective(fn, n: int = 40, seed: int = 0) -> None:
    """`fn(theta, log_n, log_d, log_loss, delta) -> float`: Chinchilla's summed Huber loss in log space."""
    from .scaling import huber_objective, load_sweep

    sweep = load_sweep()
    logs = (np.log(sweep["n"]), np.log(sweep["d"]), np.log(sweep["loss"]))
    chinchilla = np.array([math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28])
    fixed = [(chinchilla, *logs, 1e-3), (np.array([10.0, 3.8, 0.9, 1.27, 0.26]), *logs, 1e-3),
             (chinchilla, *logs, 0.5)]
    rng = np.random.default_rng(seed)
    generated = []
    for _ in range(n):
        theta = np.array([rng.uniform(0, 15), rng.uniform(0, 15), rng.uniform(-1, 1.5), rng.uniform(0.1, 1.5),
                          rng.uniform(0.1, 1.5)])
        pick = rng.choice(len(sweep["n"]), size=rng.integers(3, len(sweep["n"]) + 1), replace=False)
        generated.append((theta, *(x[pick] for x in logs), float(rng.choice([1e-3, 1e-2, 0.3]))))
    for theta, log_n, log_d, log_loss, delta in fixed + generated:
        got = _float(_run(fn, theta.copy(), log_n.copy(), log_d.copy(), log_loss.copy(), delta), fn)
        want = huber_objective(theta, log_n, log_d, log_loss, delta)[0]
        if _close(got, want, 1e-6, 1e-12):
            continue
        a, b, e, alpha, beta = theta
        pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
        r = pred - log_loss
        huber = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
        wrong = [("you took the mean over runs: Chinchilla's objective is the sum", huber.mean()),
                 ("you used a squared error everywhere: Huber is quadratic only for |r| <= delta and linear "
                  "beyond, which keeps outlying runs from dominating the fit", (0.5 * r * r).sum()),
                 ("your quadratic piece lacks the 1/2: Huber is r²/2 for |r| <= delta", np.where(
                     np.abs(r) <= delta, r * r, delta * (np.abs(r) - 0.5 * delta)).sum()),
                 ("your residual compares with the loss itself: compare the predicted log loss with log L",
                  np.where(np.abs(pred - np.exp(log_loss)) <= delta, 0.5 * (pred - np.exp(log_loss)) ** 2,
                           delta * (np.abs(pred - np.exp(log_loss)) - 0.5 * delta)).sum())]
        message = _diagnose(got, wrong, lambda x, y: _close(x, float(y), 1e-6, 1e-12))
        raise LabCheckError(message or f"for theta={np.round(theta, 3).tolist()} and delta={delta} expected "
                                       f"{want:.6g}, got {got:.6g}; the prediction is log(A/N^α + B/D^β + E) "
                                       "with A = e^a, B = e^b, E = e^e")
    _passed(fn, len(fixed), len(generated))


def check_compute_optimal(fn, n: int = 40, seed: int = 0) -> None:
    """`fn(law, flops) -> (n_opt, d_opt)`: the compute-optimal model size and tokens under C = 6ND."""
    from .scaling import CHINCHILLA_LAW, Law

    fixed = [(CHINCHILLA_LAW, 5.76e23), (CHINCHILLA_LAW, 1e21), (Law(2.4, 4e4, 43.0, 1.33, 0.26), 1e15)]
    rng = np.random.default_rng(seed)
    generated = [(Law(rng.uniform(1, 3), 10 ** rng.uniform(1, 5), 10 ** rng.uniform(1, 5), rng.uniform(0.1, 1.5),
                      rng.uniform(0.1, 1.5)), 10 ** rng.uniform(12, 26)) for _ in range(n)]
    for law, flops in fixed + generated:
        out = _run(fn, law, flops)
        try:
            n_got, d_got = (float(v) for v in out)
        except (TypeError, ValueError):
            raise LabCheckError(f"`{_name(fn)}` should return two numbers, (n_opt, d_opt)") from None
        n_want, d_want = (float(v) for v in law.optimal(flops))
        if _close(n_got, n_want, 1e-6) and _close(d_got, d_want, 1e-6):
            continue
        if not _close(6 * n_got * d_got, flops, 1e-6):
            raise LabCheckError(f"your N and D spend 6·N·D = {6 * n_got * d_got:.4g} FLOPs, not the budget C = "
                                f"{flops:.4g}: every allocation must satisfy C = 6 N D")
        a = law.beta / (law.alpha + law.beta)
        G = law.G
        c6 = flops / 6
        wrong = [("your exponents are swapped: N_opt grows as (C/6)^a with a = β/(α+β), the data exponent "
                  "of the loss over the sum", c6 ** (1 - a) * G),
                 ("you inverted G: N_opt = G (C/6)^a with G = (αA / (βB))^(1/(α+β))", c6 ** a / G),
                 ("you used C instead of C/6 inside the power law", G * flops ** a)]
        message = _diagnose(n_got, wrong, lambda x, y: _close(x, y, 1e-6))
        raise LabCheckError(message or f"for C = {flops:.3g} and {law} expected N_opt = {n_want:.4g}, "
                                       f"D_opt = {d_want:.4g}; got N = {n_got:.4g}, D = {d_got:.4g}")
    _passed(fn, len(fixed), len(generated))


# ---- lab 06: letter log-probabilities and the subject-mean average -------------------------------

def _letter_prompts(n: int, seed: int) -> tuple[list, list]:
    from .ceval import Question, render

    def prompt(question, options):
        return render(Question("lab", "0", question, tuple(options), "A"), "official_zero_shot", "评论情感")

    fixed = [prompt("“质量很好，物流也快。”这条评论的情感是？", ["正面", "负面", "中性", "无法判断"]),
             prompt("下列哪个词是地名？", ["北京", "书", "很好", "我们"])]
    rng = random.Random(seed)
    generated = [prompt(_random_text(rng, 4, 40), [_random_text(rng, 1, 6) for _ in range(4)]) for _ in range(n)]
    return fixed, generated


def lab_letter_ids(tokenizer, prompt: str) -> list[int]:
    """The token id each letter A-D adds right after `prompt` (each must be one token for the lab)."""
    from .ceval_scoring import answer_ids

    ids = answer_ids(tokenizer, prompt)
    if any(len(v) != 1 for v in ids.values()):
        raise ZhllmError(f"a letter is not one token after this prompt: {ids}")
    return [ids[letter][0] for letter in "ABCD"]


@one_thread()
def check_letter_logprobs(fn, tokenizer=None, model=None, n: int = 10, seed: int = 0) -> None:
    """`fn(model, tokenizer, prompt, letter_ids) -> 4 floats`: log p(letter | prompt), as lm-eval scores."""
    from .ceval_scoring import letter_logprobs

    tok = tokenizer or lab_tokenizer()
    model = model or tiny_model(len(tok), seed=seed)
    fixed, generated = _letter_prompts(n, seed)
    for prompt in fixed + generated:
        letters = lab_letter_ids(tok, prompt)
        got = _run(fn, model, tok, prompt, list(letters))
        try:
            got = [float(v) for v in (got.tolist() if torch.is_tensor(got) else got)]
        except (TypeError, ValueError):
            raise LabCheckError(f"`{_name(fn)}` should return four numbers, one per letter A-D") from None
        if len(got) != 4:
            raise LabCheckError(f"`{_name(fn)}` returned {len(got)} numbers: return one per letter A, B, C, D")
        want = letter_logprobs(model, tok, [prompt])[0][0]
        same = lambda a, b: all(_close(x, float(y), 1e-4, 1e-4) for x, y in zip(a, b))  # noqa: E731
        if same(got, want):
            continue
        with torch.no_grad():
            ids = tok(prompt)["input_ids"]
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            bare = model(input_ids=torch.tensor([ids[1:]])).logits[0, -1].float()
        wrong = [("you returned raw logits: apply log_softmax over the whole vocabulary, then pick the letters",
                  logits[-1, letters]),
                 ("you returned probabilities: take the log (log_softmax), which is what lm-eval compares",
                  torch.softmax(logits[-1], -1)[letters]),
                 ("you renormalised over the four letters only: lm-eval uses log_softmax over the whole vocabulary",
                  torch.log_softmax(logits[-1, letters], -1)),
                 ("you read the logits one position too early: the last position predicts the token after the prompt",
                  torch.log_softmax(logits[-2], -1)[letters]),
                 ("your prompt has no <s>: tokenise it the way the tokenizer does by default (lm-eval does)",
                  torch.log_softmax(bare, -1)[letters])]
        message = _diagnose(got, wrong, lambda a, b: same(a, b.tolist()))
        raise LabCheckError(message or f"expected {[round(w, 4) for w in want]}, got {[round(x, 4) for x in got]} "
                                       f"for the prompt ending {prompt[-30:]!r}")
    _passed(fn, len(fixed), len(generated))


def reference_subject_mean(results) -> float:
    """Reference: C-Eval's official average (mean of per-subject accuracies) via `ceval_scoring.summarize`."""
    from .ceval import Exam
    from .ceval_scoring import Result, summarize

    rows = [Result(subject, str(i), answer, pred) for i, (subject, pred, answer) in enumerate(results)]
    subjects = list(dict.fromkeys(s for s, _, _ in results))
    exam = Exam("lab", "val", {s: [] for s in subjects}, subjects={s: (s, "Other") for s in subjects})
    return summarize(rows, exam)["average"]["subject_mean"]


def check_subject_mean(fn, n: int = 40, seed: int = 0) -> None:
    """`fn(results) -> float`, results = [(subject, predicted letter or None, gold letter)]: subject mean."""
    fixed = [[("law", "A", "A"), ("law", "B", "C"), ("math", "A", "A"), ("math", "B", "B"), ("math", "C", "C"),
              ("math", "D", "A")],
             [("history", "A", "A"), ("history", None, "B"), ("art", "C", "C"), ("art", None, "D")]]
    rng = random.Random(seed)
    generated = []
    for _ in range(n):
        rows = []
        for s in range(rng.randint(1, 5)):
            skill = rng.random()  # each subject its own accuracy, each its own size: the two averages differ
            for _ in range(rng.randint(1, 30)):
                gold = rng.choice("ABCD")
                pred = gold if rng.random() < skill else rng.choice("ABCD")
                rows.append((f"subject_{s}", None if rng.random() < 0.1 else pred, gold))
        rng.shuffle(rows)
        generated.append(rows)
    for results in fixed + generated:
        got = _float(_run(fn, list(results)), fn)
        want = reference_subject_mean(results)
        if _close(got, want, 1e-9):
            continue
        answered = [r for r in results if r[1] is not None]
        per = {}
        for s, p, a in answered:
            per.setdefault(s, []).append(p == a)
        wrong = [("you pooled all questions (lm-eval's group average): C-Eval's official average is the mean of "
                  "the per-subject accuracies, so every subject counts once",
                  sum(p == a for _, p, a in results) / len(results)),
                 ("you left out unanswered questions (prediction None): they count as wrong",
                  sum(sum(v) / len(v) for v in per.values()) / len(per) if per else None),
                 ("you returned a percentage: return a fraction between 0 and 1", 100 * want)]
        message = _diagnose(got, wrong, lambda a, b: _close(a, b, 1e-9))
        raise LabCheckError(message or f"expected subject mean {want:.4f}, got {got:.4f} for {results!r}")
    _passed(fn, len(fixed), len(generated))
