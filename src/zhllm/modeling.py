"""Models: the tiny Llama the kit pretrains itself, and loading a base in fp32/fp16/bf16/8-bit/4-bit."""
import functools
import types

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from . import hub
from .errors import ConfigError
from .runtime import device, dtype_for


def tiny_llama(vocab_size: int, hidden_size: int = 256, num_layers: int = 4, num_heads: int = 4,
               intermediate_size: int | None = None, max_positions: int = 1024,
               bos_token_id: int = 1, eos_token_id: int = 2, pad_token_id: int = 3,
               seed: int = 0) -> LlamaForCausalLM:
    """A small Llama-architecture model with random weights (untied input/output embeddings, as Llama-2).

    Same code path as a 7B Llama, so every later stage (LoRA, 4-bit, merging) is exercised for real.
    """
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads,
        intermediate_size=intermediate_size or _swiglu_width(hidden_size),
        max_position_embeddings=max_positions, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _swiglu_width(hidden_size: int) -> int:
    """Llama's MLP width: 2/3 of 4h, rounded up to a multiple of 64."""
    width = int(8 * hidden_size / 3)
    return (width + 63) // 64 * 64


def count_parameters(model, trainable_only: bool = False, non_embedding: bool = False) -> int:
    """Parameter count; `non_embedding` leaves out input and output embeddings (Kaplan's N)."""
    skip = set()
    if non_embedding:
        skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters()
               if id(p) not in skip and (p.requires_grad or not trainable_only))


def quantization_config(quantization: str | None, dtype: torch.dtype | None = None):
    """bitsandbytes settings for `quantization` None, "8bit" or "4bit" (NF4 + double quantisation).

    4-bit keeps the weights in NF4 and computes in `dtype` (the runtime rule: fp32 CPU, bf16 on
    compute capability >= 8, fp16 on a T4).
    """
    if quantization is None:
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype or dtype_for())
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ConfigError(f"quantization must be None, '8bit' or '4bit', not {quantization!r}")


def load_causal_lm(path: str, quantization=None, dtype: torch.dtype | None = None):
    """Load a causal LM from a hub name (through `zhllm.hub`) or directory in `dtype` (default: the runtime rule).

    `quantization`: None, "8bit", "4bit" (see `quantization_config`) or a `BitsAndBytesConfig` of your own.
    """
    dtype = dtype or dtype_for()
    if isinstance(quantization, str) or quantization is None:
        quantization = quantization_config(quantization, dtype)
    kwargs = {"dtype": dtype} if quantization is None else {"dtype": dtype, "quantization_config": quantization}
    model = AutoModelForCausalLM.from_pretrained(hub.model_path(str(path)), **kwargs)
    if quantization is None:
        model.to(device())
    return model


def labelled_logits_head(trainer) -> None:
    """Give a TRL trainer's model (SFTTrainer, DPOTrainer) an LM head that builds the logits of the labelled
    positions only, on a CPU.

    TRL patches the model with a fused LM head (`trl.trainer.utils.add_fused_lm_head`) that never materialises
    the logits: a Triton kernel on GPUs, where it saves memory, but on a CPU tiles of torch ops over every
    position, recomputed in the backward, which cost more than the logits do (`python bench/cpu_step_speed.py`
    and `--mode dpo` print seconds per step of both). Here the same call, `model(..., labels=,
    fused_lm_head=True)`, runs the decoder, then the output layer on the positions that have a label (the
    prompt's positions have none and need no logits), and returns the same per-token fields, so the trainers'
    losses and logged metrics are unchanged up to floating-point order. On CUDA this does nothing.
    """
    if torch.cuda.is_available():
        return
    from peft import PeftModel
    from trl.trainer.utils import FusedCausalLMOutput

    model = trainer.model.get_base_model() if isinstance(trainer.model, PeftModel) else trainer.model
    forward = type(model).forward

    @functools.wraps(forward)  # keeps the signature that `generate` checks model kwargs against
    def labelled_logits_forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None,
                                num_items_in_batch=None, **kwargs):
        if not fused_lm_head:  # generation and plain calls: the model's own forward
            given = dict(labels=labels, shift_labels=shift_labels, num_items_in_batch=num_items_in_batch)
            return forward(self, *args, **kwargs, **{k: v for k, v in given.items() if v is not None})
        kwargs.pop("logits_to_keep", None)
        hidden = self.get_decoder()(*args, **{**kwargs, "use_cache": False}).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        spread = lambda values: values.new_zeros(mask.shape).masked_scatter(mask, values)  # noqa: E731
        # the output layer (7,104 x 256 in tiny) runs on the labelled positions only, not on the prompts
        picked, targets = self.get_output_embeddings()(hidden[mask]).float(), labels[mask]
        log_softmax = picked.log_softmax(-1)
        log_probs = spread(log_softmax.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
        with torch.no_grad():  # the per-token statistics TRL logs
            entropy = spread(-(log_softmax.exp() * log_softmax).sum(-1))
            log_sum_sq_probs = spread(torch.logsumexp(2 * log_softmax, -1))
            mean_logits = spread(picked.mean(-1))
            is_top1 = spread(picked.argmax(-1) == targets)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / count, log_probs=log_probs, entropy=entropy,
                                   log_sum_sq_probs=log_sum_sq_probs, mean_logits=mean_logits, is_top1=is_top1,
                                   label_mask=mask)

    model.forward = types.MethodType(labelled_logits_forward, model)
