"""Classroom labs (课堂实验): the public checks a student runs in the lab notebooks.

Each `check_<idea>(fn)` runs fixed and generated cases, stops at the first disagreement and raises
`LabCheckError` with one sentence the student can act on. Where a plausible mistake is known (an
off-by-one, EOS dropped from the labels, mean for sum, a flipped sign), the check computes that
wrong answer too and names the mistake when the student's output matches it. Generated cases use a
fixed seed, so a failure shows up the same way on every run.

The reference answers are not exported: the graded (hidden) tests carry their own, in the
autograder that `make labs` builds from `labs/NN_topic.py`, and run with the kit's own
implementations switched off (`kit_switched_off`).

One module per lab, named after it (`labs/NN_<name>.py` → `zhllm.labs.<name>`), and `common` for
what they share.
"""
from .ceval_scoring import check_letter_logprobs, check_subject_mean, lab_letter_ids
from .chinchilla_fit import check_compute_optimal, check_huber_objective
from .common import HANZI, POOL, LabCheckError, kit_switched_off, lab_tokenizer, one_thread, tiny_model
from .dpo_loss import check_dpo_loss, check_sequence_logps, trl_dpo_loss
from .minhash_dedup import check_estimated_jaccard, check_minhash_signature, check_shingles, shingle_hash
from .packing_and_bpc import check_bits_per_character, check_loss_to_bpc, check_pack_documents
from .sft_label_mask import check_build_labels, check_masked_loss
from .tokenizer_expansion import REJECT, check_accept_piece, check_chars_per_token
from .unigram_bpc import check_token_unigram_bpc, check_unigram_bpc

__all__ = [
    "HANZI", "POOL", "REJECT", "LabCheckError", "check_accept_piece", "check_bits_per_character", "check_build_labels",
    "check_chars_per_token", "check_compute_optimal", "check_dpo_loss", "check_estimated_jaccard",
    "check_huber_objective", "check_letter_logprobs", "check_loss_to_bpc", "check_masked_loss",
    "check_minhash_signature", "check_pack_documents", "check_sequence_logps", "check_shingles", "check_subject_mean",
    "check_token_unigram_bpc", "check_unigram_bpc", "kit_switched_off", "lab_letter_ids", "lab_tokenizer",
    "one_thread", "shingle_hash", "tiny_model", "trl_dpo_loss",
]
