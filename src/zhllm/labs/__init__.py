"""Classroom labs (课堂实验): checks that compare a student's function with the kit's reference.

Each `check_<idea>(fn)` runs fixed and generated cases, stops at the first disagreement and raises
`LabCheckError` with one sentence the student can act on. Where a plausible mistake is known (an
off-by-one, EOS dropped from the labels, mean for sum, a flipped sign), the check computes that
wrong answer too and names the mistake when the student's output matches it. Generated cases use a
fixed seed, so a failure shows up the same way on every run.

One module per lab, named after it (`labs/NN_<name>.py` → `zhllm.labs.<name>`), and `common` for
what they share; every name is importable from `zhllm.labs` directly.
"""
from .ceval_scoring import check_letter_logprobs, check_subject_mean, lab_letter_ids, reference_subject_mean
from .chinchilla_fit import check_compute_optimal, check_huber_objective
from .common import HANZI, POOL, LabCheckError, lab_tokenizer, one_thread, tiny_model
from .dpo_loss import (check_dpo_loss, check_sequence_logps, formula_dpo_loss, reference_sequence_logps,
                       trl_dpo_loss)
from .packing_and_bpc import (_bpc_variant, check_bits_per_character, check_loss_to_bpc, check_pack_documents,
                              loss_to_bpc)
from .sft_label_mask import check_build_labels, check_masked_loss, reference_masked_loss
from .tokenizer_expansion import REJECT, check_accept_piece, check_chars_per_token, reject_reason

__all__ = [
    "HANZI", "POOL", "REJECT", "LabCheckError", "check_accept_piece", "check_bits_per_character", "check_build_labels",
    "check_chars_per_token", "check_compute_optimal", "check_dpo_loss", "check_huber_objective",
    "check_letter_logprobs", "check_loss_to_bpc", "check_masked_loss", "check_pack_documents",
    "check_sequence_logps", "check_subject_mean", "formula_dpo_loss", "lab_letter_ids", "lab_tokenizer",
    "loss_to_bpc", "one_thread", "reference_masked_loss", "reference_sequence_logps", "reference_subject_mean",
    "reject_reason", "tiny_model", "trl_dpo_loss",
]
