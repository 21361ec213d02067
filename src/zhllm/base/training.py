"""Stage 00 — the base model: an English-only tokenizer and a tiny Llama the kit pretrains itself.

In the tiny profile this plays the role LLaMA-2 plays for Chinese-LLaMA-2: a capable English model
whose vocabulary has almost no Chinese, so Chinese text falls back to raw bytes (3 per character).
In colab/full the base is a hub model (TinyLlama-1.1B by default) and this stage only measures it.
"""
import json
import shutil
import tempfile
import time
from pathlib import Path

import sentencepiece as spm
import torch
from tokenizers import normalizers, pre_tokenizers, processors
from transformers import LlamaTokenizer, PreTrainedTokenizerFast, Trainer, TrainingArguments

from .. import artifacts, corpora, evaluation, hub, runtime
from .. import tokenizer as tokenizer_expand
from ..modeling import count_parameters, load_causal_lm, tiny_llama
from ..profiles import pick

SETTINGS = {
    "tiny": dict(vocab_size=4096, hidden_size=256, num_layers=4, num_heads=4, block_size=256,
                 batch_size=16, max_steps=100, learning_rate=3e-3, warmup_steps=20, seed=0,
                 eval_max_chars=40_000),
    "colab": dict(hub_model="TinyLlama/TinyLlama_v1.1", block_size=1024, batch_size=4, seed=0,
                  eval_max_chars=100_000),
}

# Llama-2's own SentencePiece settings (BPE, byte fallback, digits split, no normalisation) except one:
# no whitespace-only pieces. With them, SentencePiece merges runs of spaces by score ("a   the" ->
# "▁a ▁▁ ▁the" but "a  b" -> "▁a ▁▁ b"), which no Hugging Face pre-tokenizer reproduces, so indented
# lines would get different ids in the two libraries.
SP_OPTIONS = dict(
    model_type="bpe", byte_fallback=True, split_digits=True, normalization_rule_name="identity",
    add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=False,
    character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
    unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", pad_piece="<pad>",
    max_sentence_length=1 << 16, num_threads=1, minloglevel=2,
)


def train_tokenizer(texts: list[str], out_dir: Path, vocab_size: int) -> Path:
    """Train a Llama-2-style SentencePiece model on `texts`; returns the path of `sp.model`.

    One thread keeps the result byte-identical from run to run.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [line for text in texts for line in text.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(out_dir / "sp"),
                                   vocab_size=vocab_size, **SP_OPTIONS)
    return out_dir / "sp.model"


def hf_tokenizer(sp_model: Path, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """A Hugging Face fast tokenizer that gives exactly the SentencePiece model's ids, pad != eos.

    transformers converts the vocabulary and merges; we replace its pipeline with the one that
    mirrors SentencePiece: always prepend "▁" (add_dummy_prefix), spaces -> "▁", and start a new
    word at every "▁". (The stock Metaspace(prepend_scheme="first") skips the prefix when a line
    already starts with a space, so indented lines lose a space.) Saved as a plain
    `TokenizersBackend`, so reloading keeps this pipeline instead of rebuilding Llama's.
    """
    with tempfile.TemporaryDirectory() as tmp:  # from_pretrained converts only a `tokenizer.model`
        shutil.copy(sp_model, Path(tmp) / "tokenizer.model")
        converted = LlamaTokenizer.from_pretrained(tmp, legacy=False)._tokenizer
    converted.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                                 normalizers.Replace(" ", "▁")])
    converted.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never",
                                                       split=True)
    bos = converted.token_to_id("<s>")
    converted.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=converted, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   model_max_length=model_max_length)


def token_blocks(tokenizer, texts: list[str], block_size: int) -> torch.Tensor:
    """Concatenate `<s> doc </s>` for every document and cut the stream into equal blocks.

    Classic GPT-style packing for pretraining: attention may cross a document boundary inside a
    block (the EOS marks it); stage 02 shows the mode that keeps documents apart.
    """
    stream = []
    for text in texts:
        stream += [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"],
                   tokenizer.eos_token_id]
    n = len(stream) // block_size
    return torch.tensor(stream[:n * block_size], dtype=torch.long).view(n, block_size)


class BlockDataset(torch.utils.data.Dataset):
    """Token blocks as causal-LM examples (labels = inputs; the model shifts them)."""

    def __init__(self, blocks: torch.Tensor):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def pretrain(model, blocks: torch.Tensor, checkpoint_dir: Path, *, max_steps: int, batch_size: int,
             learning_rate: float, warmup_steps: int, seed: int, **_) -> list[dict]:
    """Pretrain with the HF Trainer (cosine schedule); resumes from the last checkpoint if one exists.

    Returns the Trainer's log history (one entry per logging step, with `loss`).
    """
    args = TrainingArguments(
        output_dir=str(checkpoint_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=warmup_steps,
        weight_decay=0.1, adam_beta2=0.95, max_grad_norm=1.0, logging_steps=10,
        save_strategy="steps", save_steps=max(max_steps // 4, 1), save_total_limit=1,
        report_to=[], seed=seed, data_seed=seed, dataloader_num_workers=0, disable_tqdm=True,
        use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=BlockDataset(blocks))
    has_checkpoint = _matching_checkpoints(Path(checkpoint_dir), {
        "max_steps": max_steps, "batch_size": batch_size, "learning_rate": learning_rate,
        "seed": seed, "blocks": list(blocks.shape), "block_sum": int(blocks.sum())})
    trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    return [e for e in trainer.state.log_history if "loss" in e]


def _matching_checkpoints(checkpoint_dir: Path, run: dict) -> bool:
    """True when checkpoints of this very run exist; stale ones (other settings or data) are removed."""
    stamp = checkpoint_dir / "run.json"
    if stamp.exists() and json.loads(stamp.read_text()) != run:
        print(f"[zhllm] removing checkpoints of a different run in {checkpoint_dir}")
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(run))
    found = sorted(checkpoint_dir.glob("checkpoint-*"))
    if found:
        print(f"[zhllm] resuming from {found[-1]}")
    return bool(found)


def evaluate(model, tokenizer, profile: str | None = None) -> dict:
    """The stage-00 metrics: held-out English bits/char against the unigram baseline, Chinese chars/token."""
    cfg = pick(SETTINGS, profile)
    n = cfg["eval_max_chars"]
    en_heldout = evaluation.take_chars(corpora.english_text("heldout", profile, max_chars=n), n)
    zh_heldout = evaluation.take_chars(corpora.chinese_text("heldout", profile, max_chars=n), n)
    return {
        "en_bpc_heldout": evaluation.bits_per_character(model, tokenizer, en_heldout,
                                                        block_size=cfg["block_size"]),
        "en_bpc_unigram": evaluation.unigram_bits_per_character(
            corpora.english_text("train", profile), en_heldout),
        "zh_chars_per_token": tokenizer_expand.chars_per_token(tokenizer, zh_heldout),
        "zh_byte_fallback_share": tokenizer_expand.byte_fallback_share(tokenizer, zh_heldout,
                                                                       tokenizer_expand.kind(tokenizer)),
    }


def build(out_dir: Path, profile: str | None = None) -> dict:
    """Build stage 00 into `out_dir`: `model/` (HF model + tokenizer), `sp.model`, `metrics.json`."""
    profile, cfg = runtime.begin_stage(SETTINGS, profile)
    start = time.time()
    if profile == "tiny":
        english = corpora.english_text("train", profile)
        sp_model = train_tokenizer(english, out_dir, cfg["vocab_size"])
        tokenizer = hf_tokenizer(sp_model)
        blocks = token_blocks(tokenizer, english, cfg["block_size"])
        model = tiny_llama(len(tokenizer), cfg["hidden_size"], cfg["num_layers"], cfg["num_heads"],
                           seed=cfg["seed"])
        history = pretrain(model, blocks, artifacts.checkpoint_dir("base", profile), **cfg)
        train_tokens = cfg["max_steps"] * cfg["batch_size"] * cfg["block_size"]
        print(f"loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f} over {cfg['max_steps']} steps")
    else:
        model, tokenizer, sp_model = load_hub_base(cfg["hub_model"])
        train_tokens = 0  # pretrained by its authors; nothing trained here
    metrics = {"params": count_parameters(model), "train_tokens": train_tokens,
               **evaluate(model, tokenizer, profile)}
    metrics["seconds"] = round(time.time() - start, 1)
    save(out_dir, model, tokenizer, metrics, sp_model)
    artifacts.clear_checkpoints("base", profile)
    return metrics


def load_hub_base(name: str):
    """(model, tokenizer, SentencePiece model file or None) of a hub base model, through `zhllm.hub`.

    The `tokenizer.model` is kept because transformers 5 saves only tokenizer.json, and stage 01's
    SentencePiece path edits the `.model` itself; a byte-level BPE base has none.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hub.model_path(name))
    return load_causal_lm(name), tokenizer, hub.model_file(name, "tokenizer.model")


def save(out_dir: Path, model, tokenizer, metrics: dict, sp_model: Path | None = None) -> None:
    """Write the stage layout: `model/` (HF model + tokenizer), `sp.model` when given, `metrics.json`."""
    model.save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    if sp_model is not None and Path(sp_model).resolve() != (out_dir / "sp.model").resolve():
        shutil.copy(sp_model, out_dir / "sp.model")
    artifacts.write_metrics(out_dir, metrics)
