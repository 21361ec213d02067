"""Lab 02 checks: packing documents into blocks, and bits per character."""
import math
import random

import torch

from .common import (POOL, LabCheckError, _close, _diagnose, _float, _ids, _name, _passed, _random_text, _run,
                     lab_tokenizer, one_thread, tiny_model)

def _stream(tok, texts, bos=True, eos=True, special=False) -> list[int]:
    out = []
    for text in texts:
        ids = tok(text, add_special_tokens=special)["input_ids"]
        out += [tok.bos_token_id] * bos + ids + [tok.eos_token_id] * eos
    return out


def check_pack_documents(fn, tokenizer=None, n: int = 30, seed: int = 0) -> None:
    """`fn(tokenizer, texts, block_size) -> list of blocks`: `<s> doc </s>` streams cut into full blocks."""
    from ..cpt import pack_documents

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


def _loss_to_bpc(mean_loss: float, n_tokens: int, n_chars: int) -> float:
    """Reference: a mean loss (nats per predicted token) over `n_tokens` tokens as bits per character."""
    return mean_loss * n_tokens / math.log(2) / n_chars


def check_loss_to_bpc(fn, n: int = 50, seed: int = 0) -> None:
    """`fn(mean_loss, n_tokens, n_chars) -> float`: bits per character."""
    fixed = [(2.0, 100, 150), (math.log(2), 1, 1), (5.3, 4096, 2500)]
    rng = random.Random(seed)
    generated = [(rng.uniform(0.5, 8), rng.randint(1, 10_000), rng.randint(1, 10_000)) for _ in range(n)]
    for loss, tokens, chars in fixed + generated:
        got = _float(_run(fn, loss, tokens, chars), fn)
        want = _loss_to_bpc(loss, tokens, chars)
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
    from ..evaluation import bits_per_character

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
