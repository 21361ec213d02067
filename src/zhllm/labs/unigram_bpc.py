"""Lab 00 checks: the bits per character a character unigram and a token unigram set on held-out text."""
import math
import random
from collections import Counter

from .common import (HANZI, POOL, LabCheckError, _close, _diagnose, _float, _passed, _random_text, _run,
                     lab_tokenizer)


def _text_sets(n: int, seed: int) -> tuple[list, list]:
    fixed = [(["质量很好，物流也快。", "不喜欢，退货了。"], ["质量一般，物流很快。"]),
             (["hello world", "the quick brown fox"], ["hello fox", "你好"]),
             (["书的内容很丰富，值得一读。"], ["内容丰富", "值得", "一读再读，推荐！"])]
    rng = random.Random(seed)
    generated = [([_random_text(rng, 1, 60, POOL) for _ in range(rng.randint(1, 6))],
                  [_random_text(rng, 1, 40, HANZI + "，。ab") for _ in range(rng.randint(1, 5))]) for _ in range(n)]
    return fixed, generated


def _char_unigram(train, held, log=math.log2, unseen_slot=1, per_text=False):
    counts = Counter("".join(train))
    total = sum(counts.values()) + (len(counts) + unseen_slot if unseen_slot is not None else 0)
    per = [[-log((counts.get(ch, 0) + 1) / total) for ch in text] for text in held]
    if per_text:
        return sum(sum(bits) / len(text) for bits, text in zip(per, held) if text) / len(held)
    return sum(map(sum, per)) / sum(map(len, held))


def check_unigram_bpc(fn, n: int = 30, seed: int = 0) -> None:
    """`fn(train_texts, eval_texts) -> float`: bits per character of an add-one character unigram."""
    fixed, generated = _text_sets(n, seed)
    for train, held in fixed + generated:
        got = _float(_run(fn, list(train), list(held)), fn)
        want = _char_unigram(train, held)
        if _close(got, want, 1e-9):
            continue
        wrong = [("your answer is in nats (natural log): a bit is log base 2, so use math.log2",
                  _char_unigram(train, held, log=math.log)),
                 ("you used log10: a bit is log base 2, so use math.log2", _char_unigram(train, held, log=math.log10)),
                 ("you averaged the bits per character of each text: sum the bits of all characters, then divide "
                  "by all characters", _char_unigram(train, held, per_text=True)),
                 ("your probabilities leave no share for unseen characters: the denominator is the training "
                  "characters + one per distinct character + 1 (the slot every unseen character shares)",
                  _char_unigram(train, held, unseen_slot=0)),
                 ("you added 1 to each count but not to the total: divide by training characters + distinct "
                  "characters + 1, so the probabilities sum to one", _char_unigram(train, held, unseen_slot=None)),
                 ("you fitted the unigram on the evaluation texts: count characters in train_texts only",
                  _char_unigram(held, held))]
        message = _diagnose(got, wrong, lambda a, b: _close(a, b, 1e-9))
        raise LabCheckError(message or f"for train {train!r} and eval {held!r} expected {want:.6f} bits per "
                                       f"character, got {got:.6f}")
    _passed(fn, len(fixed), len(generated))


def _token_unigram(tok, train, held, log=math.log2, per="char", special=False, vocab=None):
    def encode(text):
        return tok(text, add_special_tokens=special)["input_ids"]

    counts = Counter(t for text in train for t in encode(text))
    total = sum(counts.values()) + (len(tok) if vocab is None else vocab(counts))
    ids = [encode(text) for text in held]
    bits = sum(-log((counts.get(t, 0) + 1) / total) for row in ids for t in row)
    return bits / (sum(map(len, held)) if per == "char" else sum(map(len, ids)))


def check_token_unigram_bpc(fn, tokenizer=None, n: int = 20, seed: int = 0) -> None:
    """`fn(tokenizer, train_texts, eval_texts) -> float`: bits per character of an add-one token unigram."""
    tok = tokenizer or lab_tokenizer()
    fixed, generated = _text_sets(n, seed)
    for train, held in fixed + generated:
        got = _float(_run(fn, tok, list(train), list(held)), fn)
        want = _token_unigram(tok, train, held)
        if _close(got, want, 1e-9):
            continue
        wrong = [("you divided by the number of tokens: that is bits per token, which changes with the tokenizer; "
                  "divide by the number of characters", _token_unigram(tok, train, held, per="token")),
                 ("your answer is in nats (natural log): a bit is log base 2, so use math.log2",
                  _token_unigram(tok, train, held, log=math.log)),
                 ("you counted the special tokens the tokenizer adds (<s>): encode with add_special_tokens=False",
                  _token_unigram(tok, train, held, special=True)),
                 ("you smoothed over the tokens seen in training only: add-one smoothing gives every one of the "
                  "len(tokenizer) ids a count, so the total is training tokens + len(tokenizer)",
                  _token_unigram(tok, train, held, vocab=len))]
        message = _diagnose(got, wrong, lambda a, b: _close(a, b, 1e-9))
        raise LabCheckError(message or f"for train {train!r} and eval {held!r} expected {want:.6f} bits per "
                                       f"character, got {got:.6f}")
    _passed(fn, len(fixed), len(generated))
