"""Stage 07 — data curation (数据清洗与筛选): deduplicate, filter, select, and measure what it buys.

Notebook: notebooks/07_data_curation.py; lab: labs/07_minhash_dedup.py (shingles, MinHash signatures, Jaccard).
Modules:
- `pipeline`: exact and MinHash deduplication, counted quality filters (length, CJK share, repetition,
  perplexity), diversity selection against a random control, the noisy candidate pool and `build`,
  the stage for `zhllm.artifacts`; its names are re-exported here.
- `experiments`: short SFT runs at equal steps on each arm, scored as in stage 03 (through `zhllm.sft`).
"""
from . import experiments, pipeline
from .pipeline import (NOISE, RULES, SETTINGS, apply_filters, build, candidate_pool, cjk_share, clean,
                       conversation_text, counts, coverage, dedup_and_filter, deduplicate, diverse_selection,
                       embed_and_score, exact_duplicates, heuristic_flags, injected_caught, is_cjk, jaccard,
                       k_center_greedy, minhash_signatures, near_duplicates, noisy_copy, normalize,
                       perplexity_filter, perplexity_flags, quotas, random_selection, raw_corpora, repetition,
                       scorer, shingle_ids)
