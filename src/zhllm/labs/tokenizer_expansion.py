"""Lab 01 checks: which Chinese pieces to add to the vocabulary, and characters per token."""
import random

import numpy as np

from .common import (HANZI, POOL, LabCheckError, _close, _diagnose, _float, _name, _passed, _random_text, _run,
                     lab_tokenizer)

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


def _reject_reason(piece: str, vocab) -> str | None:
    """Why stage 01 would not add `piece` to `vocab` (a key of REJECT), or None when it would."""
    from ..tokenizer.sentencepiece import has_order_conflict, is_cjk, is_cjk_piece, splits

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
    """`fn(piece, vocab) -> bool`: True when stage 01 would add the piece (see `_reject_reason`)."""
    from ..tokenizer.sentencepiece import splits

    fixed, generated = _piece_cases(n, seed)
    for piece, vocab in fixed + generated:
        got = _run(fn, piece, set(vocab))
        if not isinstance(got, (bool, np.bool_)):
            raise LabCheckError(f"`{_name(fn)}` should return True or False, not {got!r}")
        reason = _reject_reason(piece, vocab)
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
    from ..tokenizer import chars_per_token

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
