"""Stage 02 — QLoRA continued pretraining (增量预训练) of the vocabulary-expanded model on Chinese text.

The Firefly-LLaMA2 / Chinese-LLaMA-2 recipe: the base weights frozen in 4-bit NF4 (double
quantisation), LoRA on every linear layer, and the embedding and output matrices trainable, because
the new Chinese rows start as mere averages. Embeddings get a smaller learning rate than LoRA.
"""
import json
import time
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from .. import artifacts, corpora, evaluation, runtime, shipped
from ..errors import ConfigError
from ..profiles import current
from ..modeling import count_parameters, load_causal_lm

SETTINGS = {
    "tiny": dict(quantization="4bit", lora_r=16, lora_alpha=32, embeddings="full", block_size=256,
                 batch_size=8, grad_accum=1, max_steps=100, learning_rate=3e-3, embed_learning_rate=1e-3,
                 warmup_steps=10, seed=0, train_chars=600_000, english_share=0.2, eval_max_chars=20_000,
                 gradient_checkpointing=False),
    # gradient_checkpointing: without it the T4 plan is 15.0 GiB, with it 8.3 GiB (zhllm.runtime.memory_plan)
    "colab": dict(quantization="4bit", lora_r=64, lora_alpha=16, embeddings="full", block_size=1024,
                  batch_size=4, grad_accum=4, max_steps=400, learning_rate=2e-4,
                  embed_learning_rate=2e-5, warmup_steps=20, seed=0, train_chars=20_000_000, english_share=0.1,
                  eval_max_chars=100_000, gradient_checkpointing=True),
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EMBEDDINGS = ["embed_tokens", "lm_head"]


def lora_config(r: int, alpha: int, embeddings: str = "full", new_token_ids: list[int] | None = None,
                dropout: float = 0.0) -> LoraConfig:
    """LoRA on all linear layers plus trainable embeddings: "full" rows, "new_rows" only, or "none".

    "full" = PEFT `modules_to_save` (a trainable copy of both matrices: Firefly, Chinese-LLaMA-2);
    "new_rows" = PEFT `trainable_token_indices` (only the new tokens' rows, far less memory).
    """
    extra = {}
    if embeddings == "full":
        extra["modules_to_save"] = EMBEDDINGS
    elif embeddings == "new_rows":
        if not new_token_ids:
            raise ConfigError("embeddings='new_rows' needs the ids of the new tokens")
        extra["trainable_token_indices"] = {name: list(new_token_ids) for name in EMBEDDINGS}
    elif embeddings != "none":
        raise ConfigError(f"embeddings must be 'full', 'new_rows' or 'none', not {embeddings!r}")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGETS,
                      task_type="CAUSAL_LM", **extra)


def load_for_training(model_dir: str | Path, quantization, cfg: dict, new_token_ids: list[int] | None = None,
                      lora: LoraConfig | None = None):
    """Load the model (4-bit NF4 by default), prepare it for k-bit training and wrap it with LoRA.

    `quantization`: None, "4bit", "8bit" or a `BitsAndBytesConfig`; `lora` defaults to `lora_config(...)`
    from the settings. Notebook 02 builds both objects in view and passes them.
    """
    model = load_causal_lm(str(model_dir), quantization=quantization)
    checkpointing = cfg.get("gradient_checkpointing", False)  # recompute activations: memory for time
    if quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = lora or lora_config(cfg["lora_r"], cfg["lora_alpha"], cfg["embeddings"], new_token_ids)
    runtime.seed_everything(cfg["seed"])  # LoRA's A matrices start random: same seed, same start
    return get_peft_model(model, lora)


def embedding_memory(vocab_size: int, hidden: int, new_tokens: int) -> dict:
    """Training memory (MiB) of the trainable embedding + output rows under each PEFT option.

    fp32 Adam: weight 4 + gradient 4 + two moments 8 = 16 bytes per trainable parameter.
    """
    full = 2 * vocab_size * hidden
    new = 2 * new_tokens * hidden
    mib = lambda n: n * 16 / 2**20  # noqa: E731
    return {"modules_to_save (all rows)": mib(full), "trainable_token_indices (new rows)": mib(new)}


def pack_documents(tokenizer, texts: list[str], block_size: int, separate: bool = False) -> list[dict]:
    """Pack `<s> doc </s>` streams into full blocks of `block_size` tokens (no padding at all).

    With `separate=True` each block also carries `position_ids` that restart at every document,
    which lets attention implementations that read them (padding-free / flash-attention varlen)
    keep documents apart; plain causal attention over a block lets a document see its predecessor.
    """
    stream, positions = [], []
    for text in texts:
        ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"],
               tokenizer.eos_token_id]
        stream += ids
        positions += range(len(ids))
    blocks = []
    for start in range(0, len(stream) - block_size + 1, block_size):
        row = {"input_ids": stream[start:start + block_size],
               "labels": stream[start:start + block_size]}
        if separate:
            pos = positions[start:start + block_size]
            row["position_ids"] = _restart(pos)
        blocks.append(row)
    return blocks


def _restart(positions: list[int]) -> list[int]:
    """Positions within a block: a document cut by the block boundary restarts at 0 too."""
    out, offset = [], positions[0]
    for p in positions:
        if p == 0:
            offset = 0
        out.append(p - offset)
    return out


def padding_avoided(tokenizer, texts: list[str], block_size: int) -> float:
    """Share of a batch that would be padding if each document had its own row (cut at block_size)."""
    lengths = [min(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 2, block_size)
               for t in texts]
    return 1 - sum(lengths) / (len(lengths) * block_size)


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {k: torch.tensor(v) for k, v in self.rows[i].items()}


def optimizer(model, learning_rate: float, embed_learning_rate: float) -> torch.optim.Optimizer:
    """AdamW with two groups: LoRA at `learning_rate`, embedding/output rows at the smaller rate."""
    embed, lora = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (embed if any(e in name for e in EMBEDDINGS) else lora).append(p)
    return torch.optim.AdamW([{"params": lora, "lr": learning_rate},
                              {"params": embed, "lr": embed_learning_rate}], weight_decay=0.0)


class StopAt:
    """Trainer callback that ends training after `step` steps: simulates an interrupted run in tests."""

    def __init__(self, step: int):
        self.step = step

    def __getattr__(self, name):  # every other callback event is a no-op
        return lambda *a, **k: None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def training_args(cfg: dict, checkpoint_dir: Path) -> TrainingArguments:
    """The Trainer's arguments for a profile's settings: cosine schedule, a checkpoint every quarter."""
    return TrainingArguments(
        output_dir=str(checkpoint_dir), max_steps=cfg["max_steps"], learning_rate=cfg["learning_rate"],
        per_device_train_batch_size=cfg["batch_size"], gradient_accumulation_steps=cfg["grad_accum"],
        lr_scheduler_type="cosine", warmup_steps=cfg["warmup_steps"],
        logging_steps=max(1, min(10, cfg["max_steps"] // 10)),
        save_strategy="steps", save_steps=max(cfg["max_steps"] // 4, 1), save_total_limit=1,
        report_to=[], seed=cfg["seed"], data_seed=cfg["seed"], disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=cfg.get("gradient_checkpointing", False),
        fp16=runtime.dtype_for() == torch.float16, bf16=runtime.dtype_for() == torch.bfloat16)


def train(model, blocks: list[dict], checkpoint_dir: Path, cfg: dict, stop_after: int | None = None,
          resume: bool = True, args: TrainingArguments | None = None, save_to: Path | None = None) -> list[dict]:
    """Train with the HF Trainer; resumes from the last checkpoint if present; returns the loss log.

    `args` defaults to `training_args(cfg, checkpoint_dir)`; a recipe (`zhllm train cpt`) passes its own.
    `save_to` saves the adapter through the Trainer, which gathers it under FSDP / DeepSpeed ZeRO-3.
    """
    args = args or training_args(cfg, checkpoint_dir)
    opt = optimizer(model, args.learning_rate, cfg["embed_learning_rate"])
    trainer = Trainer(model=model, args=args, train_dataset=ListDataset(blocks),
                      optimizers=(opt, None), callbacks=[StopAt(stop_after)] if stop_after else [])
    found = resume and any(Path(args.output_dir).glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if found else None)
    if save_to:
        trainer.save_model(str(save_to))
    return [e for e in trainer.state.log_history if "loss" in e]


def merge(model, model_dir: Path, adapter_dir: Path, device: torch.device | str | None = None):
    """Merge the adapter into an fp32 copy of the weights *it was trained on* (dequantised NF4).

    Merging into the original fp32 weights (the usual recipe) silently swaps the base the adapter
    learned to correct; we measure that gap too (`naive_merge`). The merge happens on the CPU and the
    merged model ends whole on `device` (default: the runtime's), never split between CPU and GPU.
    """
    import bitsandbytes as bnb

    merged = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    for name, module in model.base_model.model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
            target = merged.get_submodule(name.removesuffix(".base_layer"))
            target.weight.data = weight.to("cpu", torch.float32).reshape(target.weight.shape)
    merged = PeftModel.from_pretrained(merged, str(adapter_dir)).merge_and_unload()
    return merged.to(device or runtime.device())


def naive_merge(model_dir: Path, adapter_dir: Path):
    """The common QLoRA merge: adapter on top of the original fp32 weights (for comparison only; on the CPU)."""
    merged = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return PeftModel.from_pretrained(merged, str(adapter_dir)).merge_and_unload()


@torch.no_grad()
def logits_as_trained(model, input_ids: torch.Tensor) -> torch.Tensor:
    """fp32 logits on the CPU of `model` run in training mode (dropout is 0 here) on `input_ids`, moved to it.

    Training mode: in eval mode bitsandbytes computes 4-bit layers in bf16 on CPUs with AVX512-BF16,
    which is a different model from the fp32 one we trained.
    """
    was_training = model.training
    model.train()
    logits = model(input_ids=input_ids.to(model.device)).logits.float().cpu()
    model.train(was_training)
    return logits


def max_abs_logit_diff(model_a, model_b, input_ids: torch.Tensor) -> float:
    """Largest absolute difference between two models' logits on the same inputs, as trained."""
    return (logits_as_trained(model_a, input_ids) - logits_as_trained(model_b, input_ids)).abs().max().item()


MERGE_EPS_FACTOR = 32


def merge_tolerance(logits: torch.Tensor, compute_dtype: torch.dtype | None = None) -> float:
    """The largest logit difference a correct merge may show: 32 x eps(compute dtype) x the logits' scale.

    The adapter model computes in `compute_dtype` (fp16 on a T4, bf16 on an A100, fp32 on a CPU), the merged
    one in fp32: their logits differ by rounding alone, a few units of the compute dtype's eps relative to the
    logits' size, accumulated over the layers. 1e-3 holds for fp32 and fails every fp16 merge.
    """
    compute_dtype = compute_dtype or runtime.dtype_for()
    return MERGE_EPS_FACTOR * torch.finfo(compute_dtype).eps * max(1.0, logits.abs().max().item())


def training_text(profile: str | None, cfg: dict) -> list[str]:
    """Chinese training documents up to `train_chars`, plus `english_share` as much English (replay).

    Without replay, continued pretraining on Chinese alone makes the model forget English.
    """
    zh = evaluation.take_chars(corpora.chinese_text("train", profile, max_chars=cfg["train_chars"]),
                               cfg["train_chars"])
    en_chars = int(cfg["train_chars"] * cfg["english_share"])
    en = evaluation.take_chars(corpora.english_text("train", profile, max_chars=en_chars), en_chars)
    mixed = zh + en
    order = torch.randperm(len(mixed), generator=torch.Generator().manual_seed(cfg["seed"])).tolist()
    return [mixed[i] for i in order]


def bpc_pair(model, tokenizer, profile: str | None, max_chars: int) -> tuple[float, float]:
    """Bits per character on held-out Chinese and held-out English."""
    zh = evaluation.take_chars(corpora.chinese_text("heldout", profile, max_chars=max_chars), max_chars)
    en = evaluation.take_chars(corpora.english_text("heldout", profile, max_chars=max_chars), max_chars)
    return (evaluation.bits_per_character(model, tokenizer, zh),
            evaluation.bits_per_character(model, tokenizer, en))


def zh_ngram_bpc(profile: str | None, cfg: dict) -> dict:
    """Held-out Chinese bits per character of character n-gram models fitted on the stage's Chinese text.

    Two lines to read a model against: near the unigram line it knows which characters are frequent;
    below the bigram line it uses more than the previous character.
    """
    train = evaluation.take_chars(corpora.chinese_text("train", profile, max_chars=cfg["train_chars"]),
                                  cfg["train_chars"])
    heldout = evaluation.take_chars(corpora.chinese_text("heldout", profile, max_chars=cfg["eval_max_chars"]),
                                    cfg["eval_max_chars"])
    return {"zh_bpc_unigram": evaluation.unigram_bits_per_character(train, heldout),
            "zh_bpc_bigram": evaluation.bigram_bits_per_character(train, heldout)}


def shipped_bpc(profile: str | None, cfg: dict) -> dict:
    """The shipped long-trained model and its English base on the same held-out slices (tiny profile only)."""
    if current(profile) != "tiny":
        return {}
    zh, en = bpc_pair(load_causal_lm(str(shipped.model_dir()), dtype=torch.float32),
                      AutoTokenizer.from_pretrained(shipped.model_dir()), profile, cfg["eval_max_chars"])
    base_dir = shipped.model_dir(part="english_base")
    _, en_base = bpc_pair(load_causal_lm(str(base_dir), dtype=torch.float32),
                          AutoTokenizer.from_pretrained(base_dir), profile, cfg["eval_max_chars"])
    return {"zh_bpc_shipped": zh, "en_bpc_shipped": en, "en_bpc_shipped_base": en_base}


def build(out_dir: Path, profile: str | None = None) -> dict:
    """Build stage 02: `adapter/`, merged `model/` (+ tokenizer), `loss.json`, `metrics.json`."""
    profile, cfg = runtime.begin_stage(SETTINGS, profile)
    start = time.time()
    base_dir = artifacts.ensure("base", profile) / "model"
    expanded_dir = artifacts.ensure("tokenizer", profile) / "model"
    base_tok = AutoTokenizer.from_pretrained(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(expanded_dir)
    zh_bpc_base, en_bpc_base = bpc_pair(load_causal_lm(str(base_dir), dtype=torch.float32), base_tok,
                                        profile, cfg["eval_max_chars"])
    zh_bpc_before, _ = bpc_pair(load_causal_lm(str(expanded_dir), dtype=torch.float32), tokenizer,
                                profile, cfg["eval_max_chars"])
    model = load_for_training(expanded_dir, cfg["quantization"], cfg,
                              list(range(len(base_tok), len(tokenizer))))
    blocks = pack_documents(tokenizer, training_text(profile, cfg), cfg["block_size"])
    train_start = time.time()
    history = train(model, blocks, artifacts.checkpoint_dir("cpt", profile), cfg)
    train_seconds = time.time() - train_start
    model.save_pretrained(out_dir / "adapter")
    merged = merge(model, expanded_dir, out_dir / "adapter")
    probe = torch.tensor([blocks[0]["input_ids"][:64]])
    zh_bpc_after, en_bpc_after = bpc_pair(merged, tokenizer, profile, cfg["eval_max_chars"])
    train_tokens = cfg["max_steps"] * cfg["batch_size"] * cfg["grad_accum"] * cfg["block_size"]
    metrics = {
        "zh_bpc_base": zh_bpc_base, "zh_bpc_before": zh_bpc_before, "zh_bpc_after": zh_bpc_after,
        **zh_ngram_bpc(profile, cfg), **shipped_bpc(profile, cfg),
        "en_bpc_base": en_bpc_base, "en_bpc_after": en_bpc_after,
        "trainable_params": count_parameters(model, trainable_only=True),
        "train_tokens": train_tokens, "tokens_per_second": train_tokens / train_seconds,
        "peak_memory_mb": runtime.peak_memory_mb(),
        "merge_max_abs_logit_diff": max_abs_logit_diff(model, merged, probe),
        "merge_tolerance": merge_tolerance(logits_as_trained(merged, probe)),
        "naive_merge_max_abs_logit_diff": max_abs_logit_diff(
            model, naive_merge(expanded_dir, out_dir / "adapter"), probe),
    }
    merged.save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    (out_dir / "loss.json").write_text(json.dumps(history))
    artifacts.clear_checkpoints("cpt", profile)
    metrics["seconds"] = round(time.time() - start, 1)
    artifacts.write_metrics(out_dir, metrics)
    return metrics


# Published shapes for the parameter-accounting check (Llama-2 paper / HF configs).
LLAMA2_SHAPES = {
    "7B": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "13B": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40),
}


def trainable_parameters_from_config(shape: str, vocab_size: int = 55296, r: int = 64,
                                     embeddings: str = "full") -> int:
    """Trainable parameters of a QLoRA CPT recipe, counted by PEFT on a weightless (meta) model.

    Reproduces Firefly-LLaMA2's published 612.9M (7B) and 816.6M (13B) for a 55,296-token vocabulary.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, **LLAMA2_SHAPES[shape])
    with torch.device("meta"):
        model = get_peft_model(LlamaForCausalLM(config), lora_config(r, 16, embeddings))
    return count_parameters(model, trainable_only=True)
