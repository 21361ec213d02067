"""Stage 03 — supervised fine-tuning (指令微调) with TRL's SFTTrainer and LoRA.

Notebook: notebooks/03_sft.py. Lab: labs/03_sft_label_mask.py (checks in `zhllm.labs.sft_label_mask`).
Modules:
- `tasks`: the tiny profile's instruction tasks (segmentation, NER, sentiment, review, multi-turn),
  built from the corpora, with their scorers and trivial baselines.
- `training`: the LoRA policy, training examples (tasks plus C-Eval-format rows from stage 06's
  `kit_exam`), `train`, `evaluate` and `build`, the stage for `zhllm.artifacts`; its names are
  re-exported here.
The chat template and label masks (`zhllm.chat`) and the instruction row formats (`zhllm.formats`)
are in the core, because stages 04 and 07 use them too.
"""
from . import tasks, training
from .training import (SETTINGS, before_per_task, build, encode_examples, evaluate, evaluate_before_training,
                       heldout_examples, hub_examples, label_sensitivity, load_policy, merged_model, metrics_from,
                       save, train, training_args, training_examples)
