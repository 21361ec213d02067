"""zhllm: build a Chinese LLM step by step — tokenizer expansion, QLoRA CPT, SFT, DPO, scaling, C-Eval.

Each stage's whole logic is one subpackage named after it: `base` (00), `tokenizer` (01), `cpt` (02),
`sft` (03), `dpo` (04), `scaling` (05), `ceval` (06), `curation` (07). The core they share: `profiles`,
`runtime`, `artifacts`, `shipped`, `corpora`, `errors`, `evaluation`, `modeling`, `chat`, `formats`,
`figures` (the teaching pictures). `cli` and `recipes` are front ends that call the stages; `labs` holds the
checks of the classroom labs.
"""

import logging

__version__ = "0.1.0"

# bitsandbytes (imported by peft and by 4-bit loading) tries, on CPUs with AVX512-BF16, to download an
# optional faster 4-bit matmul from the hub and logs a warning when the optional `kernels` package is
# absent. Its own CPU kernel is used instead and works, offline; the warning gives a newcomer nothing to
# act on, so the kit raises that one logger's level before anything imports bitsandbytes.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
