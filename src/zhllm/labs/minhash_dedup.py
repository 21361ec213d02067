"""Lab 07 checks: character shingles, a MinHash signature, and the Jaccard estimate it gives."""
import hashlib
import random

from .common import HANZI, POOL, LabCheckError, _close, _diagnose, _float, _name, _passed, _random_text, _run


def shingle_hash(shingle: str, seed: int) -> int:
    """The lab's family of hash functions: one 64-bit hash of a shingle per seed, the same on every machine.

    (Python's own `hash` of a string changes from run to run, so it cannot make a signature.)
    """
    salt = seed.to_bytes(8, "little")
    return int.from_bytes(hashlib.blake2b(shingle.encode("utf-8"), digest_size=8, salt=salt).digest(), "little")


def _normalize(text: str) -> str:
    from ..curation.pipeline import normalize

    return normalize(text)


def _shingles(text, n, normalize=True, stop=0, words=False):
    text = _normalize(text) if normalize else text
    if words:
        parts = text.split()
        return {" ".join(parts[i:i + n]) for i in range(len(parts) - n + 1)}
    if len(text) < n:
        return {text}
    return {text[i:i + n] for i in range(len(text) - n + 1 - stop)}


def check_shingles(fn, n: int = 40, seed: int = 0) -> None:
    """`fn(text, n) -> set of str`: the distinct character n-grams of the normalised text."""
    fixed = [("你好，世界！", 3), ("质量很好 质量很好", 2), ("ＡＢＣ abc", 3), ("好", 3), ("", 3), ("哈哈哈哈", 2),
             ("今天 天气 很好", 1)]
    rng = random.Random(seed)
    generated = [(_random_text(rng, 0, 40, POOL + "  "), rng.randint(1, 5)) for _ in range(n)]
    for text, size in fixed + generated:
        got = _run(fn, text, size)
        if isinstance(got, (list, tuple)):
            raise LabCheckError(f"`{_name(fn)}` returned a {type(got).__name__}: return a set, so a shingle that "
                                "occurs twice counts once (Jaccard compares sets)")
        if not isinstance(got, (set, frozenset)):
            raise LabCheckError(f"`{_name(fn)}` should return a set of strings, not {type(got).__name__}")
        want = _shingles(text, size)
        if got == want:
            continue
        wrong = [("you did not normalise the text first: use normalize(text) (NFKC, lower case, no spaces or "
                  "punctuation), so copies that differ only in those count as the same",
                  _shingles(text, size, normalize=False)),
                 ("you lost the last shingle: a text of length L has L - n + 1 shingles (off by one)",
                  _shingles(text, size, stop=1)),
                 ("a text shorter than n should give one shingle, the text itself, not an empty set",
                  {_normalize(text)[i:i + size] for i in range(len(_normalize(text)) - size + 1)}),
                 ("you made word shingles: Chinese has no spaces, so shingle characters",
                  _shingles(text, size, words=True))]
        message = _diagnose(got, wrong, lambda a, b: a == b)
        raise LabCheckError(message or f"for text {text!r} and n={size} expected {sorted(want)}, got "
                                       f"{sorted(got)[:20]}")
    _passed(fn, len(fixed), len(generated))


def _shingle_sets(n: int, seed: int) -> tuple[list, list]:
    fixed = [({"你好世", "好世界"}, 4), ({"质量很"}, 3), ({"abc", "bcd", "cde", "def"}, 16)]
    rng = random.Random(seed)
    generated = [({_random_text(rng, 1, 4, HANZI) for _ in range(rng.randint(1, 30))}, rng.randint(1, 64))
                 for _ in range(n)]
    return fixed, generated


def check_minhash_signature(fn, n: int = 30, seed: int = 0) -> None:
    """`fn(shingles, num_hashes) -> list of int`: for each seed k < num_hashes, the least shingle_hash(·, k)."""
    fixed, generated = _shingle_sets(n, seed)
    for shingles, k in fixed + generated:
        got = _run(fn, set(shingles), k)
        try:
            got = [int(v) for v in got]
        except (TypeError, ValueError):
            raise LabCheckError(f"`{_name(fn)}` should return a list of integers, one per hash function") from None
        if len(got) != k:
            raise LabCheckError(f"`{_name(fn)}` returned {len(got)} numbers for num_hashes={k}: one minimum per "
                                "hash function")
        want = [min(shingle_hash(s, j) for s in shingles) for j in range(k)]
        if got == want:
            continue
        wrong = [("you took the largest hash: MinHash keeps the minimum of each hash function",
                  [max(shingle_hash(s, j) for s in shingles) for j in range(k)]),
                 ("every position uses the same hash function: use seed j for position j",
                  [min(shingle_hash(s, 0) for s in shingles)] * k),
                 ("you hashed the smallest shingle: hash every shingle, then take the minimum of the hashes",
                  [shingle_hash(min(shingles), j) for j in range(k)]),
                 ("you kept the k smallest values of one hash function (a bottom-k sketch): this lab's signature "
                  "is the minimum of each of k hash functions", sorted(shingle_hash(s, 0) for s in shingles)[:k])]
        message = _diagnose(got, wrong, lambda a, b: a == b)
        raise LabCheckError(message or f"for shingles {sorted(shingles)[:5]}... and num_hashes={k} the signature "
                                       "differs: position j is min(shingle_hash(s, j) for s in shingles)")
    _passed(fn, len(fixed), len(generated))


def check_estimated_jaccard(fn, n: int = 40, seed: int = 0) -> None:
    """`fn(signature_a, signature_b) -> float`: the share of positions where the two signatures agree."""
    fixed = [([1, 2, 3, 4], [1, 5, 3, 6]), ([7, 7, 7], [7, 7, 7]), ([1, 2], [2, 1]), ([5, 5, 9, 9], [5, 9, 9, 5])]
    rng = random.Random(seed)
    generated = []
    for _ in range(n):
        k = rng.randint(1, 64)
        a = [rng.randint(0, 6) for _ in range(k)]
        generated.append((a, [x if rng.random() < 0.5 else rng.randint(0, 6) for x in a]))
    for a, b in fixed + generated:
        got = _float(_run(fn, list(a), list(b)), fn)
        want = sum(x == y for x, y in zip(a, b)) / len(a)
        if _close(got, want, 1e-12):
            continue
        sa, sb = set(a), set(b)
        wrong = [("you compared the sets of signature values: position j of both signatures comes from the same "
                  "hash function, so compare position by position", len(sa & sb) / len(sa | sb)),
                 ("you counted the agreeing positions: divide by the signature length",
                  float(sum(x == y for x, y in zip(a, b)))),
                 ("you returned the share of positions that differ: Jaccard is the share that agree",
                  1 - want)]
        message = _diagnose(got, wrong, lambda x, y: _close(x, y, 1e-12))
        raise LabCheckError(message or f"for {a} and {b} expected {want:.4f}, got {got:.4f}")
    _passed(fn, len(fixed), len(generated))
