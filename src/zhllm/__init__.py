"""zhllm: build a Chinese LLM step by step — tokenizer expansion, QLoRA CPT, SFT, DPO, scaling, C-Eval."""

__version__ = "0.1.0"
