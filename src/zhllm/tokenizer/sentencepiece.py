"""词表扩充 for a SentencePiece BPE base (Llama-2 style): merge Chinese pieces the right way.

The anchors (Chinese-LLaMA, Firefly) append pieces with score 0. SentencePiece merges by piece
score, so ties make the merge order undefined: SentencePiece and the Hugging Face tokenizer then
disagree, some pieces can never be produced ("dead"), and base tokenisation can shift. Here every
new piece gets its own score below the base's lowest, every multi-character piece can be built
from two pieces already present, and pieces that their own text does not encode to are dropped.
"""
import io
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

from ..errors import TokenizerError

Piece = sp_pb2.ModelProto.SentencePiece
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = (Piece.NORMAL, Piece.UNKNOWN, Piece.CONTROL,
                                                         Piece.USER_DEFINED, Piece.UNUSED, Piece.BYTE)

# CJK ideographs (main block, extension A, compatibility, extensions B+), CJK symbols and
# punctuation (、。《》「」), and full-width forms (，（）：１２３), which Chinese text uses everywhere.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F),
              (0x3000, 0x303F), (0xFF00, 0xFFEF))


def is_cjk(ch: str) -> bool:
    """True for a CJK ideograph, CJK punctuation or a full-width form."""
    return any(lo <= ord(ch) <= hi for lo, hi in CJK_RANGES)


def is_cjk_piece(piece: str) -> bool:
    """A piece we may add: only CJK characters, and digits only as single characters.

    The base splits digits (split_digits=True); a piece like "１９" would undo that for Chinese text.
    """
    if not piece or not all(is_cjk(ch) for ch in piece):
        return False
    return len(piece) == 1 or not any(unicodedata.category(ch) == "Nd" for ch in piece)


def load_proto(model_file) -> sp_pb2.ModelProto:
    """Parse a SentencePiece `.model` file into its protobuf, which we can edit and save."""
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(Path(model_file).read_bytes())
    return proto


def save_proto(proto: sp_pb2.ModelProto, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path


def processor(proto: sp_pb2.ModelProto) -> spm.SentencePieceProcessor:
    """A SentencePiece encoder for an in-memory model."""
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def check_base(proto: sp_pb2.ModelProto) -> None:
    """Refuse SentencePiece models this path does not handle, with the reason."""
    if proto.trainer_spec.model_type != sp_pb2.TrainerSpec.BPE:
        raise TokenizerError("the SentencePiece path needs a BPE model (Llama-2 style); this one is "
                             f"{sp_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type)}")
    if any(p.type == UNUSED for p in proto.pieces):
        raise TokenizerError("the SentencePiece model has UNUSED pieces, which re-segment at encode "
                             "time; the Hugging Face BPE model cannot reproduce that")


def train_chinese_sp(texts, like: sp_pb2.ModelProto, vocab_size: int, character_coverage: float = 0.9995,
                     max_sentences: int = 2_000_000) -> sp_pb2.ModelProto:
    """Train a Chinese SentencePiece BPE model with the base's normalisation and digit splitting.

    Pieces learned under the same normaliser are pieces the base will see at encode time.
    """
    norm, spec = like.normalizer_spec, like.trainer_spec
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(t for t in texts if t.strip()), model_writer=writer,
        model_type="bpe", vocab_size=vocab_size, character_coverage=character_coverage,
        normalization_rule_name=norm.name or "identity", add_dummy_prefix=norm.add_dummy_prefix,
        remove_extra_whitespaces=norm.remove_extra_whitespaces, split_digits=spec.split_digits,
        allow_whitespace_only_pieces=spec.allow_whitespace_only_pieces,
        max_sentence_length=1 << 16, input_sentence_size=max_sentences, shuffle_input_sentence=True,
        num_threads=1, minloglevel=2)  # one thread: the same pieces on every run
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(writer.getvalue())
    return proto


def splits(piece: str, vocab) -> list[tuple[str, str]]:
    """Every way to cut `piece` into two pieces that are both in `vocab`."""
    return [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]


def has_order_conflict(piece: str, vocab) -> bool:
    """True when two different splits of `piece` can compete for the same symbol.

    SentencePiece breaks a tie between equal-score merges by position (leftmost wins); the Hugging
    Face BPE model breaks it by merge rank. They can disagree only for symbols A B C with
    A+B == B+C == piece and A != B, i.e. when `piece` has a border B (a prefix that is also a
    suffix) and both splits exist, as in 哈哈哈 = 哈哈+哈 = 哈+哈哈. We simply do not add such pieces.
    """
    for k in range(1, len(piece)):
        border = piece[:k]
        if len(border) * 2 != len(piece) and piece.endswith(border):
            left, right = piece[:-k], piece[k:]
            if {left, border, right} <= vocab:
                return True
    return False


def select_pieces(zh: sp_pb2.ModelProto, base: sp_pb2.ModelProto) -> tuple[list[str], list[str], Counter]:
    """Candidate Chinese pieces in priority order: (multi-character pieces, single characters, dropped).

    Characters go in first so that multi-character pieces can be checked against them; a piece is
    kept only if it splits into two pieces already in the vocabulary, so BPE can actually build it.
    """
    vocab = {p.piece for p in base.pieces}
    trained = [p.piece for p in zh.pieces if p.type == NORMAL]  # score order: most frequent merge first
    chars, multi, dropped = [], [], Counter()
    for piece in [p for p in trained if len(p) == 1] + [p for p in trained if len(p) > 1]:
        if piece in vocab:
            dropped["already in the base"] += 1
        elif not is_cjk_piece(piece):
            dropped["not pure CJK"] += 1
        elif len(piece) > 1 and not splits(piece, vocab):
            dropped["no split into two known pieces"] += 1
        elif len(piece) > 1 and has_order_conflict(piece, vocab):
            dropped["merge-order conflict (border)"] += 1
        else:
            vocab.add(piece)
            (chars if len(piece) == 1 else multi).append(piece)
    return multi, chars, dropped


def append_pieces(base: sp_pb2.ModelProto, pieces: list[str]) -> sp_pb2.ModelProto:
    """A copy of `base` with `pieces` appended, each scored below every base piece and all distinct.

    Scores are float32 in the model file, and Llama-2 gives its whitespace pieces (▁▁) -1e9, where
    float32 steps are 64 apart: see `scores_below` for how the new scores stay distinct and ordered.
    """
    proto = sp_pb2.ModelProto()
    proto.CopyFrom(base)
    lowest = min((p.score for p in base.pieces if p.type == NORMAL), default=0.0)
    for piece, score in zip(pieces, scores_below(lowest, len(pieces))):
        proto.pieces.append(Piece(piece=piece, score=score, type=NORMAL))
    proto.trainer_spec.vocab_size = len(proto.pieces)
    return proto


def scores_below(lowest: float, n: int) -> list[float]:
    """`n` float32 scores, strictly decreasing, all below `lowest`: steps of 1, or of one float32 step.

    A step of 1 is lost to rounding once scores pass 2**24 in size (at -1e9 it would give ties, and
    SentencePiece breaks ties by position, the Hugging Face tokenizer by rank); the next float32
    down is always distinct, so below -2**24 we step by that instead.
    """
    scores, score = [], np.float32(lowest)
    floor = np.finfo(np.float32).min
    for _ in range(n):
        if score <= floor:
            raise TokenizerError(f"no room for {n} distinct float32 scores below the base's lowest score {lowest}")
        score = min(np.float32(score - np.float32(1)), np.nextafter(score, floor))
        scores.append(float(score))
    return scores


def dead_pieces(proto: sp_pb2.ModelProto, pieces: list[str]) -> list[str]:
    """The pieces among `pieces` that encoding their own text does not produce.

    A dead piece costs an embedding row that is never trained or used. The dummy prefix adds a
    lone "▁" in front of the text; we ignore it (inside a longer text the piece has no prefix).
    """
    sp = processor(proto)
    dead = []
    for piece in pieces:
        text = piece[1:] if piece.startswith("▁") else piece  # "▁本报" is "本报" at a line start
        got = sp.encode(text.replace("▁", " "), out_type=str)
        if got[:1] == ["▁"] and len(got) > 1:
            got = got[1:]
        if got != [piece]:
            dead.append(piece)
    return dead


def expand(base: sp_pb2.ModelProto, zh: sp_pb2.ModelProto, n_new: int, multiple: int = 64):
    """Append about `n_new` Chinese pieces to `base`, rounded so the vocabulary is a multiple of 64.

    Returns (expanded model, new pieces, report). Dead pieces are removed and replaced by the next
    candidates until none is left; if candidates run out, the count is rounded down instead.
    """
    check_base(base)
    multi, chars, dropped = select_pieces(zh, base)
    n_base = len(base.pieces)
    target = -(-(n_base + n_new) // multiple) * multiple - n_base
    removed: set[str] = set()
    while True:
        alive = [p for p in multi if p not in removed]
        alive_chars = [c for c in chars if c not in removed]
        while target > 0 and len(alive) + len(alive_chars) < target:
            target -= multiple
        if target <= 0:
            raise TokenizerError(f"only {len(alive) + len(alive_chars)} usable Chinese pieces: too few to "
                                 f"reach a vocabulary that is a multiple of {multiple}; train on more text")
        kept_chars = alive_chars[:target]
        pieces = alive[:target - len(kept_chars)] + kept_chars
        proto = append_pieces(base, pieces)
        vocab = {p.piece for p in proto.pieces}
        # a piece added later can create a border conflict for an earlier one, so check the final set
        bad = dead_pieces(proto, pieces) + [p for p in pieces if has_order_conflict(p, vocab)]
        if not bad:
            report = dict(dropped, **{"dead or conflicting, removed": len(removed)}, added=len(pieces))
            return proto, pieces, report
        removed.update(bad)


def hf_tokenizer(proto: sp_pb2.ModelProto, like=None):
    """A Hugging Face fast tokenizer that gives exactly the ids the SentencePiece model gives.

    transformers 5 rebuilds a Llama tokenizer with a Metaspace pre-tokenizer that drops the dummy
    prefix when a text starts with a space, and ranks merges by piece id; so we build the backend
    ourselves: the dummy prefix as a normaliser that always prepends, merges in piece-score order.
    `like` (the base's HF tokenizer) lends its chat template, length limit and padding side.
    """
    from transformers import PreTrainedTokenizerFast

    check_base(proto)
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    mergeable = {p.piece for p in proto.pieces if p.type == NORMAL}
    by_score = sorted((i for i, p in enumerate(proto.pieces) if p.type == NORMAL),
                      key=lambda i: (-proto.pieces[i].score, i))
    merges = [pair for i in by_score for pair in splits(proto.pieces[i].piece, mergeable)]
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=spec.unk_piece, fuse_unk=True,
                                   byte_fallback=spec.byte_fallback))
    steps = [normalizers.Replace(" ", "▁")]
    if norm.add_dummy_prefix:
        steps.insert(0, normalizers.Prepend("▁"))
    if norm.name not in ("", "identity") or norm.remove_extra_whitespaces:
        raise TokenizerError(f"normaliser {norm.name!r} (remove_extra_whitespaces="
                             f"{norm.remove_extra_whitespaces}) is not supported; Llama-2 uses identity")
    backend.normalizer = normalizers.Sequence(steps)
    strip = [decoders.Strip(" ", 1, 0)] if norm.add_dummy_prefix else []
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), *strip])
    backend.add_special_tokens([AddedToken(p.piece, special=True, normalized=False)
                                for p in proto.pieces if p.type in (UNKNOWN, CONTROL)])
    backend.add_tokens([AddedToken(p.piece, normalized=False) for p in proto.pieces if p.type == USER_DEFINED])

    def piece(i):
        return proto.pieces[i].piece if 0 <= i < len(proto.pieces) else None

    bos = piece(spec.bos_id)
    if like is not None and like.backend_tokenizer.post_processor is not None:
        backend.post_processor = like.backend_tokenizer.post_processor  # BOS/EOS exactly as the base adds them
    elif bos is not None:
        backend.post_processor = processors.TemplateProcessing(  # Llama-2: BOS, no EOS
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, spec.bos_id)])
    kwargs = dict(unk_token=piece(spec.unk_id), bos_token=bos, eos_token=piece(spec.eos_id),
                  pad_token=piece(spec.pad_id))
    if like is not None:
        kwargs.update(chat_template=like.chat_template, model_max_length=like.model_max_length,
                      padding_side=like.padding_side)
    return PreTrainedTokenizerFast(tokenizer_object=backend,
                                   **{k: v for k, v in kwargs.items() if v is not None})


# ---- the anchors' way, for comparison only ------------------------------------------------------

def naive_merge(base: sp_pb2.ModelProto, zh: sp_pb2.ModelProto) -> sp_pb2.ModelProto:
    """Append every Chinese-model piece the base lacks with score 0, as Chinese-LLaMA and Firefly did.

    Kept to measure what goes wrong: all new pieces tie (and outrank every base merge).
    """
    proto = append_pieces(base, [])
    vocab = {p.piece for p in base.pieces}
    for p in zh.pieces:
        if p.type == NORMAL and p.piece not in vocab:
            proto.pieces.append(Piece(piece=p.piece, score=0.0, type=NORMAL))
    proto.trainer_spec.vocab_size = len(proto.pieces)
    return proto


def transformers_conversion(proto: sp_pb2.ModelProto):
    """The tokenizer transformers itself builds from a `tokenizer.model` (LlamaTokenizer.from_pretrained)."""
    from transformers import LlamaTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        save_proto(proto, Path(tmp) / "tokenizer.model")
        return LlamaTokenizer.from_pretrained(tmp)
