"""Stage 01 — 词表扩充 (vocabulary expansion): add Chinese tokens to an English-centric tokenizer.

Notebook: notebooks/01_tokenizer_expansion.py. Lab: labs/01_tokenizer_expansion.py (checks in
`zhllm.labs.tokenizer_expansion`).
Modules:
- `expansion`: `expand` for any Hugging Face tokenizer (it picks the path below by type), the stage's
  meters (`chars_per_token`, `byte_fallback_share`, ...) and `build`, the stage for `zhllm.artifacts`;
  its names are re-exported here.
- `sentencepiece`: the SentencePiece BPE path (Llama-2 style): new pieces with their own scores, no dead pieces.
- `bytelevel`: the byte-level BPE path (GPT-2 / Llama-3 / Qwen style): more merges inside CJK byte runs.
- `embeddings`: resize a model for the expanded tokenizer and initialise the new rows (mean init, Hewitt bound).
"""
from . import bytelevel, embeddings, expansion, sentencepiece
from .expansion import (BYTE_RE, PUBLISHED_CHARS_PER_TOKEN, SETTINGS, Expansion, anchor_metrics, base_ids_unchanged,
                        build, byte_fallback_share, chars_per_token, dead_tokens, encode, english_batch,
                        english_lines, expand, find_sp_model, is_partial_token, kind, kl_after_resize,
                        load_tokenizer, roundtrip_rate, same_ids_rate, save, sp_hf_agreement, tokenizer_metrics,
                        wrap)
