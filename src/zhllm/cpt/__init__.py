"""Stage 02 — QLoRA continued pretraining (增量预训练) of the vocabulary-expanded model on Chinese text.

Notebook: notebooks/02_qlora_continued_pretraining.py. Lab: labs/02_packing_and_bpc.py (checks in
`zhllm.labs.packing_and_bpc`).
Modules:
- `training`: the LoRA config and 4-bit loading, packing documents into blocks, `train`, merging the
  adapter, bits-per-character before and after, and `build`, the stage for `zhllm.artifacts`;
  its names are re-exported here.
- `long_run`: the program behind `zhllm pretrain-tiny`, which builds the shipped tiny Chinese model
  (`models/tiny-zh-v1`) with stages 00, 01 and this stage's code, scaled up and resumable.
"""
from . import long_run, training
from .training import (EMBEDDINGS, LLAMA2_SHAPES, LORA_TARGETS, SETTINGS, ListDataset, bpc_pair, build,
                       embedding_memory, load_for_training, logits_as_trained, lora_config, max_abs_logit_diff, merge,
                       merge_tolerance, naive_merge,
                       optimizer, pack_documents, padding_avoided, train, trainable_parameters_from_config,
                       training_args, training_text, shipped_bpc, zh_ngram_bpc)
