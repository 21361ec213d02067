"""词表扩充 for a byte-level BPE base (GPT-2 / Llama-3 / Qwen style): continue its BPE training.

A byte-level tokenizer never needs an unknown token: Chinese text becomes UTF-8 bytes, three per
character, which merges can join. So we extend it the way it was built: pre-tokenise Chinese text
with the base's own pre-tokenizer, tokenise each pre-token with the base merges, and keep learning
merges, only inside runs of bytes that decode to CJK characters. New merges go after the base
merges and new ids after every existing id, so base tokenisation of other text is unchanged.
"""
import heapq
import json
from collections import Counter, defaultdict
from functools import lru_cache

from tokenizers import Tokenizer

from ..errors import TokenizerError
from .sentencepiece import is_cjk


@lru_cache(maxsize=1)
def byte_alphabet() -> tuple[dict[int, str], dict[str, int]]:
    """GPT-2's printable stand-in for each byte, both ways: (byte -> char, char -> byte).

    Printable Latin-1 bytes stand for themselves; the others (controls, space) are shifted to 256+
    so that every token is a readable string, e.g. a space is "Ġ".
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    to_char, shift = {}, 0
    for b in range(256):
        if b in keep:
            to_char[b] = chr(b)
        else:
            to_char[b] = chr(256 + shift)
            shift += 1
    return to_char, {c: b for b, c in to_char.items()}


def token_bytes(token: str) -> bytes:
    """The raw bytes a byte-level token stands for."""
    return bytes(byte_alphabet()[1][c] for c in token)


def readable(token: str) -> str:
    """A byte-level token as text when it is whole characters, else its bytes in hex: <e4 b8>."""
    raw = token_bytes(token)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "<" + raw.hex(" ") + ">"


def is_char_start(token: str) -> bool:
    """True when the token's first byte starts a UTF-8 character (is not a continuation byte)."""
    return not 0x80 <= token_bytes(token[:1])[0] <= 0xBF


def cjk_mask(pretoken: str) -> list[bool]:
    """For each byte of a pre-token, whether it belongs to a CJK character."""
    mask = []
    for ch in token_bytes(pretoken).decode("utf-8", errors="replace"):
        mask += [is_cjk(ch)] * len(ch.encode("utf-8"))
    return mask


def pretokens(backend: Tokenizer, texts) -> Counter:
    """Count the base tokenizer's own pre-tokens (normaliser + pre-tokenizer) over `texts`."""
    counts = Counter()
    for text in texts:
        if backend.normalizer is not None:
            text = backend.normalizer.normalize_str(text)
        counts.update(piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(text))
    return counts


def cjk_segments(backend: Tokenizer, counts: Counter) -> Counter:
    """Runs of base tokens lying wholly inside CJK bytes, counted: the training data for new merges.

    We start from the base tokenisation because base merges always outrank ours: at encode time
    they all fire first, so this is exactly the state our merges will see.
    """
    segments = Counter()
    for pretoken, count in counts.items():
        mask = cjk_mask(pretoken)
        if len(mask) != len(pretoken) or not any(mask):
            continue
        run, start = [], 0
        for token in backend.model.tokenize(pretoken):
            # token.offsets count UTF-8 bytes of the stand-in string, not text bytes: use lengths
            end = start + len(token.value)
            inside, start = all(mask[start:end]), end
            if inside:
                run.append(token.value)
                continue
            if len(run) > 1:
                segments[tuple(run)] += count
            run = []
        if len(run) > 1:
            segments[tuple(run)] += count
    return segments


def merge_pair(word: list[str], a: str, b: str) -> tuple[list[str], list[tuple[tuple[str, str], int]]]:
    """Merge every (a, b) in `word`, left to right; also return how the pair counts change.

    Only the neighbours of each merge change, so updating counts costs the number of merges, not
    the length of the word: the trick that makes BPE training fast enough for plain Python.
    """
    ab, out, changes, j, n = a + b, [], [], 0, len(word)
    while j < n:
        try:
            k = word.index(a, j)
        except ValueError:
            break
        if k + 1 == n or word[k + 1] != b:
            out.extend(word[j:k + 1])
            j = k + 1
            continue
        out.extend(word[j:k])
        if out:  # the left neighbour may itself be a fresh `ab`, which this also handles
            changes += [((out[-1], a), -1), ((out[-1], ab), 1)]
        if k + 2 < n:
            changes += [((b, word[k + 2]), -1), ((ab, word[k + 2]), 1)]
        changes.append(((a, b), -1))
        out.append(ab)
        j = k + 2
    out.extend(word[j:])
    return out, changes


def learn_merges(segments: Counter, n_merges: int, vocab) -> list[tuple[str, str]]:
    """Continue BPE: repeatedly merge the most frequent adjacent pair, `n_merges` times at most.

    Two rules keep the base intact: a merge whose result already exists is skipped (it would give a
    token two ids), and the left side must start a character, so no merge can join the
    continuation bytes of some non-Chinese character (new tokens all begin at a CJK character).
    """
    vocab = set(vocab)
    words = [list(w) for w in segments]
    freq = list(segments.values())
    counts, where = Counter(), defaultdict(set)
    for i, word in enumerate(words):
        for pair in zip(word, word[1:]):
            counts[pair] += freq[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in counts.items()]
    heapq.heapify(heap)  # most frequent first; ties broken by the pair's strings, so runs repeat
    merges = []
    while heap and len(merges) < n_merges:
        negative, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -negative or negative == 0:
            continue  # stale entry: the count changed after it was pushed
        a, b = pair
        if a + b in vocab or not is_char_start(a):
            del counts[pair]
            continue
        merges.append(pair)
        vocab.add(a + b)
        changed = set()
        for i in where.pop(pair):  # word ids that held the pair at some point (may be stale)
            words[i], changes = merge_pair(words[i], a, b)
            for p, d in changes:
                counts[p] += d * freq[i]
                changed.add(p)
                if d > 0:
                    where[p].add(i)
        counts.pop(pair, None)
        for p in changed - {pair}:
            heapq.heappush(heap, (-counts[p], p))
    return merges


def extend(base_backend: Tokenizer, merges: list[tuple[str, str]]) -> Tokenizer:
    """A copy of the base backend with `merges` appended and their tokens given fresh ids.

    New ids start after the largest existing id, special tokens included, so no id changes meaning.
    Llama-3 and Qwen keep their special tokens outside the BPE vocabulary, and `tokenizers` (0.23)
    renumbers such added tokens from the model's vocabulary size on load: once new tokens fill the
    ids after the specials' gap, <|begin_of_text|> would move onto a new token's id. Putting each
    added token into the model vocabulary under its own id pins it (no merge can produce it).
    """
    state = json.loads(base_backend.to_str())
    model = state["model"]
    for token in state.get("added_tokens", []):
        model["vocab"].setdefault(token["content"], token["id"])
    next_id = max(model["vocab"].values()) + 1
    string_merges = bool(model["merges"]) and isinstance(model["merges"][0], str)
    for a, b in merges:
        if a + b in model["vocab"]:
            raise TokenizerError(f"merge {a!r} + {b!r} would duplicate an existing token")
        model["vocab"][a + b] = next_id
        next_id += 1
        model["merges"].append(f"{a} {b}" if string_merges else [a, b])
    return Tokenizer.from_str(json.dumps(state))


def expand(base_backend: Tokenizer, texts, n_new: int, multiple: int = 64, size: int | None = None):
    """Learn about `n_new` Chinese merges, rounded so the vocabulary size is a multiple of 64.

    `size` is the base's full vocabulary size (len(tokenizer)); returns (new backend, merges, report).
    """
    size = size or base_backend.get_vocab_size(with_added_tokens=True)
    target = -(-(size + n_new) // multiple) * multiple - size
    segments = cjk_segments(base_backend, pretokens(base_backend, texts))
    merges = learn_merges(segments, target, base_backend.get_vocab(with_added_tokens=True))
    keep = (size + len(merges)) // multiple * multiple - size
    if keep <= 0:
        raise TokenizerError(f"only {len(merges)} Chinese merges found: too few for a vocabulary that is "
                             f"a multiple of {multiple}; train on more text")
    merges = merges[:keep]  # a prefix of the merge list is still a valid merge list
    report = {"segments": len(segments), "added": len(merges),
              "partial_char_tokens": sum(not _whole_chars(a + b) for a, b in merges)}
    return extend(base_backend, merges), merges, report


def _whole_chars(token: str) -> bool:
    try:
        token_bytes(token).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def train_byte_level_bpe(texts, vocab_size: int, special_tokens=("<|endoftext|>",)):
    """Train a small GPT-2-style byte-level BPE tokenizer: a stand-in base for tests and the tiny profile."""
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=special_tokens[0],
                                   bos_token=special_tokens[0])
