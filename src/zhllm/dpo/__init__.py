"""Stage 04 — DPO preference alignment (偏好对齐) of the SFT model, with LoRA.

Notebook: notebooks/04_dpo.py. Lab: labs/04_dpo_loss.py (checks in `zhllm.labs.dpo_loss`).
Modules:
- `preferences`: preference pairs (prompt, chosen, rejected) from real reviews, or a hub set normalised
  to the same schema and mixed with them; held-out sets by name (`pairs_for`).
- `training`: the SFT policy, `make_trainer` (TRL's DPOTrainer, reference = adapter disabled), reward
  statistics, the independent judge and `build`, the stage for `zhllm.artifacts`; its names are
  re-exported here.
"""
from . import preferences, training
from .training import (SETTINGS, build, compare, history, judge, judge_prompts, lexical_baseline, load_policy,
                       make_trainer, mean_length, measure, parameters_in_memory, positive_rate, reward_stats,
                       sample_replies, save, summary, training_args)
