"""Stage 06 — C-Eval / CMMLU (中文知识评测): the same scorer on the kit's own exam and on the real files.

Notebook: notebooks/06_ceval.py. Lab: labs/06_ceval_scoring.py (checks in `zhllm.labs.ceval_scoring`).
Modules:
- `exams`: questions and exams, loading C-Eval/CMMLU folders or the hub, and the named prompt formats
  (`FORMATS`, `render`); its names are re-exported here.
- `subjects`: the subject tables of C-Eval and CMMLU (Chinese names, categories, C-Eval Hard).
- `kit_exam`: the tiny profile's C-Eval-format exam, written from held-out corpus text; stage 03
  trains on its answer format (`format_training_rows`).
- `scoring`: letter log-probabilities in one forward pass, CoT answers, averages and intervals.
- `lmeval`: parity with lm-evaluation-harness on the same CSVs.
- `stage`: scores every stage model on the kit's exam; its `build` is the stage for `zhllm.artifacts`.
"""
from . import exams, kit_exam, lmeval, scoring, stage, subjects
from .exams import (CMMLU_HEADER, COT_OPENING, FORMATS, HUB, LAYOUTS, LETTERS, LMEVAL_HEADER, OFFICIAL_HEADER,
                    Exam, PromptFormat, Question, get_format, load_folder, load_hub, question_block, read_csv,
                    reference_dir, render, render_fitting, scored_split, shot_answer, subject_table, with_shots)
from .stage import build
