"""Stage 00 — the base model: an English-only SentencePiece tokenizer and a tiny Llama pretrained on English.

Notebook: notebooks/00_base_model.py; lab: labs/00_unigram_bpc.py (the unigram bits per character the base must beat).
Modules:
- `training`: the tokenizer (`train_tokenizer`, `hf_tokenizer`), English token blocks, `pretrain`,
  `evaluate` (Chinese falls back to bytes) and `build`, the stage for `zhllm.artifacts`.
It measures its tokenizer with stage 01's meters (`zhllm.tokenizer.chars_per_token`, ...).
"""
from . import training
from .training import (SETTINGS, SP_OPTIONS, BlockDataset, build, evaluate, hf_tokenizer, load_hub_base, pretrain,
                       save,
                       token_blocks, train_tokenizer)
