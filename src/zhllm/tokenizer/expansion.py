"""Stage 01, 词表扩充 (vocabulary expansion): add Chinese tokens to an English-centric tokenizer.

`expand` takes any Hugging Face tokenizer (object, path or hub name) and picks the path by its
type: SentencePiece BPE with byte fallback (Llama-2 style, `zhllm.tokenizer.sentencepiece`) or byte-level BPE
(GPT-2 / Llama-3 / Qwen style, `zhllm.tokenizer.bytelevel`). The metric helpers below measure what
the stage reports; `build` runs the whole stage for `zhllm.artifacts`.
"""
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import bytelevel as bytelevel_expand, sentencepiece as sp_expand
from ..errors import DataError, TokenizerError

# Chinese characters per token, as published (Chinese-LLaMA-2 and Qwen technical reports)
PUBLISHED_CHARS_PER_TOKEN = {"Llama-2": 0.70, "Chinese-LLaMA-2": 1.48, "Qwen": 1.57}

SETTINGS = {
    # n_new: new tokens wanted (the total is rounded up to a multiple of 64); zh_sp_vocab: size of
    # the Chinese SentencePiece model we pick pieces from; kl_*: held-out English for the KL check;
    # bl_*: the byte-level path (None = train a small GPT-2-style tokenizer on English first)
    # *_docs: how many hub documents to stream (the tiny profile's offline corpora are used whole)
    "tiny": dict(n_new=3000, zh_sp_vocab=8000, zh_docs=20000, zh_heldout_docs=2000, en_docs=2000,
                 kl_tokens=8192, kl_len=256, bl_base=None, bl_new=1000, bl_docs=3000),
    "colab": dict(n_new=20000, zh_sp_vocab=24000, zh_docs=20000, zh_heldout_docs=1000, en_docs=1000,
                  kl_tokens=16384, kl_len=512, bl_base="HuggingFaceTB/SmolLM2-135M", bl_new=4000, bl_docs=2000),
}
BYTE_RE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def load_tokenizer(name_or_path):
    """A Hugging Face tokenizer from a local directory or a hub name (through `zhllm.hub`: mirrors, offline)."""
    from transformers import AutoTokenizer

    from .. import hub

    return AutoTokenizer.from_pretrained(hub.model_path(str(name_or_path)))


def _backend_state(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(f"{type(tokenizer).__name__} has no `tokenizers` backend; vocabulary "
                             "expansion needs a fast (Rust) Hugging Face tokenizer")
    state = json.loads(backend.to_str())
    for big in ("vocab", "merges"):  # not needed to tell the kind
        state["model"].pop(big, None)
    return state


def _has_byte_level(part) -> bool:
    if not part:
        return False
    if part.get("type") == "ByteLevel":
        return True
    return any(_has_byte_level(p) for p in part.get("pretokenizers", part.get("decoders", [])))


def kind(tokenizer) -> str:
    """'sentencepiece' (BPE with byte fallback) or 'byte_level' (BPE over bytes); else a clear error."""
    state = _backend_state(tokenizer)
    model = state["model"]
    if model.get("type") == "BPE" and _has_byte_level(state.get("pre_tokenizer")):
        return "byte_level"
    if model.get("type") == "BPE" and model.get("byte_fallback"):
        return "sentencepiece"
    raise TokenizerError(
        f"cannot expand {type(tokenizer).__name__} (model {model.get('type')}, pre-tokenizer "
        f"{(state.get('pre_tokenizer') or {}).get('type')}): supported are SentencePiece BPE with byte "
        "fallback (Llama-2 style) and byte-level BPE (GPT-2, Llama-3, Qwen style). WordPiece and "
        "Unigram tokenizers (BERT, T5) are not supported.")


def find_sp_model(tokenizer, sp_model=None) -> Path:
    """The SentencePiece `.model` behind a Llama-2 style tokenizer: given, or its `vocab_file`."""
    for path in (sp_model, getattr(tokenizer, "vocab_file", None)):
        if path and str(path).endswith(".model") and Path(path).is_file():
            return Path(path)
    raise TokenizerError(f"{type(tokenizer).__name__} is a SentencePiece-style tokenizer but its "
                         "tokenizer.model was not found: pass sp_model='path/to/tokenizer.model'")


@dataclass
class Expansion:
    """The result of an expansion; `before` is the reference tokenisation the metrics compare with."""
    kind: str
    tokenizer: object  # the expanded Hugging Face tokenizer
    before: object  # for SentencePiece: the base rebuilt faithfully from its .model
    new_tokens: list
    report: dict = field(default_factory=dict)
    sp_model: object = None  # SentencePiece path: the expanded ModelProto,
    base_sp_model: object = None  # the base's,
    zh_sp_model: object = None  # and the Chinese model the pieces came from
    base: object = None  # the tokenizer as given, whose ids must all survive


def expand(tokenizer, texts, n_new: int, sp_model=None, zh_sp_vocab: int = 8000) -> Expansion:
    """Add about `n_new` Chinese tokens learned from `texts`, by the path the tokenizer's type needs."""
    if isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    how = kind(tokenizer)
    if how == "byte_level":
        backend, merges, report = bytelevel_expand.expand(tokenizer.backend_tokenizer, texts, n_new,
                                                          size=len(tokenizer))
        new = wrap(backend, like=tokenizer)
        return Expansion(how, new, tokenizer, [a + b for a, b in merges], report, base=tokenizer)
    base = sp_expand.load_proto(find_sp_model(tokenizer, sp_model))
    zh = sp_expand.train_chinese_sp(texts, base, zh_sp_vocab)
    proto, pieces, report = sp_expand.expand(base, zh, n_new)
    return Expansion(how, sp_expand.hf_tokenizer(proto, like=tokenizer),
                     sp_expand.hf_tokenizer(base, like=tokenizer), pieces, report, proto, base, zh, tokenizer)


def wrap(backend, like):
    """A Hugging Face tokenizer around `backend`, with the special tokens and template of `like`.

    Saved as a plain `TokenizersBackend`, so loading reads tokenizer.json as is; a model class such
    as LlamaTokenizer would rebuild its own pre-tokenizer on load and undo our choices.
    """
    from transformers import PreTrainedTokenizerFast

    kwargs = dict(like.special_tokens_map, chat_template=like.chat_template,
                  model_max_length=like.model_max_length, padding_side=like.padding_side)
    extra = getattr(like, "extra_special_tokens", None)
    if extra:
        kwargs["extra_special_tokens"] = extra
    return PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(backend),
                                   **{k: v for k, v in kwargs.items() if v is not None})


# ---- metrics ------------------------------------------------------------------------------------

def encode(tokenizer, lines) -> list[list[int]]:
    """Ids of each line without BOS/EOS, so counts and comparisons see only the text."""
    return tokenizer(list(lines), add_special_tokens=False)["input_ids"]


def chars_per_token(tokenizer, texts) -> float:
    """Characters of text per token: higher means shorter sequences (Llama-2 on Chinese: 0.70)."""
    return sum(map(len, texts)) / max(1, sum(map(len, encode(tokenizer, texts))))


def is_partial_token(token: str, how: str) -> bool:
    """A token that is not whole characters: a byte-fallback piece (<0xE4>) or a byte-level fragment."""
    if how == "sentencepiece":
        return bool(BYTE_RE.match(token))
    try:
        bytelevel_expand.token_bytes(token).decode("utf-8")
        return False
    except KeyError:  # not byte-level text at all, e.g. a token added with add_tokens
        return False
    except UnicodeDecodeError:
        return True


def byte_fallback_share(tokenizer, texts, how: str) -> float:
    """Fraction of tokens that are bytes rather than characters: what expansion should remove."""
    tokens = [t for ids in encode(tokenizer, texts) for t in tokenizer.convert_ids_to_tokens(ids)]
    return sum(is_partial_token(t, how) for t in tokens) / max(1, len(tokens))


def dead_tokens(tokenizer, token_ids, how: str) -> list[str]:
    """New tokens that encoding their own text does not produce, so they are never used.

    Byte-level fragments (part of a character) are merge steps, not text, and are not counted;
    a lone "▁" from SentencePiece's dummy prefix in front is ignored.
    """
    dead = []
    for i in token_ids:
        token = tokenizer.convert_ids_to_tokens(i)
        if is_partial_token(token, how):
            continue
        got = encode(tokenizer, [tokenizer.decode([i])])[0]
        if len(got) > 1 and tokenizer.convert_ids_to_tokens(got[0]) == "▁":
            got = got[1:]
        if got != [i]:
            dead.append(token)
    return dead


def same_ids_rate(a, b) -> float:
    """Fraction of positions where two lists of id lists are identical."""
    return sum(x == y for x, y in zip(a, b, strict=True)) / max(1, len(a))


def sp_hf_agreement(proto, tokenizer, lines) -> float:
    """Fraction of lines where SentencePiece and the HF tokenizer give identical ids."""
    return same_ids_rate(sp_expand.processor(proto).encode(list(lines)), encode(tokenizer, lines))


def roundtrip_rate(tokenizer, lines) -> float:
    """Fraction of lines with decode(encode(x)) == x: nothing lost or changed by tokenising."""
    decoded = tokenizer.batch_decode(encode(tokenizer, lines), clean_up_tokenization_spaces=False)
    return sum(d == x for d, x in zip(decoded, lines)) / max(1, len(lines))


def english_lines(docs) -> list[str]:
    """Non-empty lines of English documents, leading spaces kept (they are the hard cases)."""
    return [line for doc in docs for line in doc.splitlines() if line.strip()]


def base_ids_unchanged(base, new) -> float:
    """Fraction of the base's tokens, special ones included, that keep both their id and their string.

    Anything below 1.0 breaks the model: an embedding row, a chat template or a saved dataset would
    then mean another token. Must be 1.0.
    """
    vocab, new_vocab = base.get_vocab(), new.get_vocab()
    back = new.convert_ids_to_tokens(list(vocab.values()))
    kept = sum(new_vocab.get(token) == i and again == token for (token, i), again in zip(vocab.items(), back))
    return kept / max(1, len(vocab))


def tokenizer_metrics(exp: Expansion, zh_lines, en_lines) -> dict:
    """The stage's tokenizer metrics on held-out Chinese and English lines."""
    before, after = encode(exp.before, zh_lines), encode(exp.tokenizer, zh_lines)
    n_before, n_after = sum(map(len, before)), sum(map(len, after))
    n_old = len(exp.before)
    m = {
        "zh_chars_per_token_before": chars_per_token(exp.before, zh_lines),
        "zh_chars_per_token_after": chars_per_token(exp.tokenizer, zh_lines),
        "zh_token_reduction": 1 - n_after / n_before,
        "byte_fallback_share_before": byte_fallback_share(exp.before, zh_lines, exp.kind),
        "byte_fallback_share_after": byte_fallback_share(exp.tokenizer, zh_lines, exp.kind),
        "new_tokens": len(exp.tokenizer) - n_old,
        "dead_new_tokens": len(dead_tokens(exp.tokenizer, range(n_old, len(exp.tokenizer)), exp.kind)),
        "vocab_size": len(exp.tokenizer),
        "en_lines_unchanged": same_ids_rate(encode(exp.before, en_lines), encode(exp.tokenizer, en_lines)),
        "roundtrip_rate": roundtrip_rate(exp.tokenizer, list(zh_lines) + list(en_lines)),
        "base_ids_unchanged": base_ids_unchanged(exp.base if exp.base is not None else exp.before, exp.tokenizer),
    }
    if exp.sp_model is not None:
        lines = list(zh_lines) + list(en_lines)
        m["sp_hf_agreement"] = sp_hf_agreement(exp.sp_model, exp.tokenizer, lines)
        m["base_sp_hf_agreement"] = sp_hf_agreement(exp.base_sp_model, exp.before, lines)
    return m


def anchor_metrics(exp: Expansion, zh_lines, en_lines) -> dict:
    """The same checks for the anchors' merge (same Chinese model, every piece with score 0).

    SentencePiece vs HF is compared on Chinese lines only, with the tokenizer transformers builds
    itself: there, every disagreement comes from the tied scores.
    """
    naive = sp_expand.naive_merge(exp.base_sp_model, exp.zh_sp_model)
    sp, base_sp = sp_expand.processor(naive), sp_expand.processor(exp.base_sp_model)
    stock = sp_expand.transformers_conversion(naive)
    added = [p.piece for p in naive.pieces[len(exp.base_sp_model.pieces):]]
    return {
        "anchor_new_tokens": len(added),
        "anchor_dead_new_tokens": len(sp_expand.dead_pieces(naive, added)),
        "anchor_sp_hf_agreement_zh": same_ids_rate(sp.encode(list(zh_lines)), encode(stock, zh_lines)),
        "anchor_en_lines_unchanged": same_ids_rate(base_sp.encode(list(en_lines)), sp.encode(list(en_lines))),
        "anchor_zh_chars_per_token": sum(map(len, zh_lines)) / sum(map(len, sp.encode(list(zh_lines)))),
    }


# ---- the model side and the whole stage ---------------------------------------------------------

def english_batch(tokenizer, docs, n_tokens: int, seq_len: int):
    """Held-out English as a (rows, seq_len) id tensor of about `n_tokens` tokens, for the KL check."""
    import torch

    ids = []
    for doc in docs:
        ids += encode(tokenizer, [doc])[0]
        if len(ids) >= n_tokens:
            break
    rows = max(1, min(len(ids), n_tokens) // seq_len)
    if len(ids) < rows * seq_len:
        raise DataError(f"only {len(ids)} tokens; the KL check needs at least {seq_len}", source="held-out English")
    return torch.tensor(ids[: rows * seq_len]).view(rows, seq_len)


def kl_after_resize(base_model, old_tokenizer, new_tokenizer, batch, init: str, chunk: int = 8) -> float:
    """Mean next-token KL (nats/token) between the base and a resized copy initialised by `init`."""
    from . import embeddings

    model = copy.deepcopy(base_model)
    info = embeddings.resize(model, old_tokenizer, new_tokenizer, init=init)
    suppress = range(len(new_tokenizer), info["rows"])
    total = sum(embeddings.next_token_kl(base_model, model, batch[i:i + chunk], suppress) * len(batch[i:i + chunk])
                for i in range(0, len(batch), chunk))
    return total / len(batch)


def build(out_dir: Path, profile: str) -> dict:
    """Stage 01 for `zhllm.artifacts`: expand the base tokenizer, resize the base model, measure.

    Writes `model/` (expanded tokenizer + mean-initialised model), `sp.model` on the SentencePiece
    path, and metrics.json.
    """
    from transformers import AutoModelForCausalLM

    from .. import artifacts, corpora, profiles, runtime
    from . import embeddings

    cfg = profiles.pick(SETTINGS, profile)
    runtime.seed_everything(0)
    base_dir = artifacts.ensure("base", profile)
    base_tok = load_tokenizer(base_dir / "model")
    sp_file = base_dir / "sp.model" if (base_dir / "sp.model").exists() else None
    zh_train = corpora.chinese_text("train", profile, limit=cfg["zh_docs"])
    zh_lines = corpora.chinese_text("heldout", profile, limit=cfg["zh_heldout_docs"])
    en_docs = corpora.english_text("heldout", profile, limit=cfg["en_docs"])
    exp = expand(base_tok, zh_train, cfg["n_new"], sp_model=sp_file, zh_sp_vocab=cfg["zh_sp_vocab"])
    metrics = tokenizer_metrics(exp, zh_lines, english_lines(en_docs))
    if exp.kind == "sentencepiece":
        metrics.update(anchor_metrics(exp, zh_lines, english_lines(en_docs)))

    dev = runtime.device()
    base_model = AutoModelForCausalLM.from_pretrained(base_dir / "model", dtype=runtime.dtype_for(dev))
    base_model = base_model.to(dev).eval()
    batch = english_batch(base_tok, en_docs, cfg["kl_tokens"], cfg["kl_len"]).to(dev)
    metrics["en_kl_after_init"] = kl_after_resize(base_model, base_tok, exp.tokenizer, batch, "mean")
    metrics["en_kl_random_init"] = kl_after_resize(base_model, base_tok, exp.tokenizer, batch, "random")
    metrics["en_kl_bound_mean_init"] = embeddings.hewitt_bound(metrics["new_tokens"], len(base_tok))

    model = base_model
    embeddings.resize(model, base_tok, exp.tokenizer, init="mean")
    save(out_dir, exp, model)
    artifacts.write_metrics(out_dir, metrics)
    return metrics


def save(out_dir: Path, exp: Expansion, model) -> None:
    """Save the expanded tokenizer with the resized model (one HF dir), and the .model if any."""
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir / "model")
    exp.tokenizer.save_pretrained(out_dir / "model")
    if exp.sp_model is not None:
        sp_expand.save_proto(exp.sp_model, out_dir / "sp.model")
