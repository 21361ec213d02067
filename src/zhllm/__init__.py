"""zhllm: build a Chinese LLM step by step — tokenizer expansion, QLoRA CPT, SFT, DPO, scaling, C-Eval.

Each stage's whole logic is one subpackage named after it: `base` (00), `tokenizer` (01), `cpt` (02),
`sft` (03), `dpo` (04), `scaling` (05), `ceval` (06), `curation` (07). The core they share: `profiles`,
`runtime`, `artifacts`, `corpora`, `errors`, `evaluation`, `modeling`, `chat`, `formats`. `cli` and
`recipes` are front ends that call the stages; `labs` holds the checks of the classroom labs.
"""

__version__ = "0.1.0"
