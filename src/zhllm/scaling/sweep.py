"""The kit's own IsoFLOP sweep (等计算量曲线): tiny Llamas trained on People's Daily at fixed budgets C = 6ND.

Why: a scaling law you fit to numbers you made yourself teaches more than one you only read about.
Conventions: N counts ALL parameters, as Chinchilla does (Kaplan et al. 2020 leave out embeddings);
input and output embeddings are tied, so every counted parameter does its 6 FLOPs per token and
C = 6ND is the real training compute up to attention. At this size the embedding is half the model,
which is why leaving it out (the CSV keeps that count too, `n_params_nonemb`) would misstate compute
by several times. D is the number of training tokens. Each run trains once over fresh data (no token
is seen twice) with a learning-rate schedule exactly as long as the run, as Chinchilla insists.
`scripts/isoflop_sweep.py` is the command-line front end.
"""
import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError, DataError

# (hidden size, layers) ladder, N growing ~1.3x per rung at the small end, where the minima lie.
# Two layers at least: a 1-layer model cannot compose attention heads and falls off the trend.
SHAPES = ((8, 2), (12, 2), (16, 2), (20, 2), (24, 2), (28, 2), (32, 2), (40, 2), (48, 2), (48, 3),
          (64, 3), (80, 3), (96, 4), (128, 4))
COLUMNS = ("run_id", "budget", "n_params", "n_params_nonemb", "tokens", "flops", "eval_loss",
           "train_loss", "hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size",
           "tokenizer", "seq_len", "batch_size", "steps", "lr", "beta2", "epochs", "seed", "seconds", "threads")


def heads(hidden: int) -> int:
    """Attention heads: 2 for the narrowest models (head dim 4-14), else head dim 16."""
    return max(2, hidden // 16)


def mlp_width(hidden: int) -> int:
    """SwiGLU width 8/3 h rounded up to a multiple of 8 (Llama rounds to 256; too coarse for h=16)."""
    return (int(8 * hidden / 3) + 7) // 8 * 8


def non_embedding_params(hidden: int, layers: int) -> int:
    """Kaplan's N for a Llama block stack: attention 4h^2 + SwiGLU 3h*ff + two RMSNorms, plus the final norm."""
    return layers * (4 * hidden * hidden + 3 * hidden * mlp_width(hidden) + 2 * hidden) + hidden


def n_params(hidden: int, layers: int, vocab_size: int) -> int:
    """Chinchilla's N: the block stack plus one (tied) embedding matrix."""
    return non_embedding_params(hidden, layers) + vocab_size * hidden


@dataclass
class Run:
    """One point of the sweep: a model shape trained for `steps` batches of `batch_size` x `seq_len` tokens."""
    budget: float
    hidden_size: int
    num_layers: int
    n_params: int
    batch_size: int
    steps: int
    seq_len: int

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len

    @property
    def run_id(self) -> str:
        return f"C{self.budget:.2e}-h{self.hidden_size}-l{self.num_layers}"


def plan(budgets, vocab_size: int, per_budget: int = 6, ratio_range=(2.0, 400.0), seq_len: int = 64,
         batch_size: int = 8, unique_tokens: int | None = None) -> list[Run]:
    """Runs for each budget: up to `per_budget` shapes, spread over those with D/N inside `ratio_range`.

    One tokens-per-parameter window for every budget, and one batch size for every run, so that
    steps grow with D exactly as tokens do. Sizes that would need more tokens than the corpus has
    are left out (and reported), so no run ever sees a token twice.
    """
    runs = []
    for budget in sorted(budgets):
        lo, hi = (math.sqrt(budget / (6 * r)) for r in (ratio_range[1], ratio_range[0]))
        shapes = [(h, l) for h, l in SHAPES if lo <= n_params(h, l, vocab_size) <= hi]
        if unique_tokens is not None:
            fits = [(h, l) for h, l in shapes if budget / (6 * n_params(h, l, vocab_size)) <= unique_tokens]
            if len(fits) < len(shapes):
                print(f"budget {budget:.2e}: left out {len(shapes) - len(fits)} sizes that need more than "
                      f"the corpus' {unique_tokens:,} tokens")
            shapes = fits
        if len(shapes) < 3:
            raise ConfigError(f"budget {budget:.2e} leaves only {len(shapes)} model sizes with D/N in "
                              f"{ratio_range} and enough data; widen --ratio-range or lower the budget")
        pick = sorted({round(i * (len(shapes) - 1) / max(per_budget - 1, 1)) for i in range(per_budget)})
        for h, l in (shapes[i] for i in pick):
            n = n_params(h, l, vocab_size)
            steps = max(1, round(budget / (6 * n) / (batch_size * seq_len)))
            runs.append(Run(budget, h, l, n, batch_size, steps, seq_len))
    return runs


def train_tokenizer(texts: list[str], vocab_size: int = 512, model_type: str = "char",
                    max_sentences: int = 20000):
    """A SentencePiece model with byte fallback; `char` keeps the most frequent characters as pieces.

    Why char-level with a small vocabulary: characters need no merges to explain, and at this model
    size every embedding row costs as much as the blocks; rarer characters fall back to UTF-8 bytes.
    """
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, model_type=model_type, vocab_size=vocab_size,
        byte_fallback=True, character_coverage=0.98, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        input_sentence_size=max_sentences, shuffle_input_sentence=True, max_sentence_length=20000,
        num_threads=1, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=buf.getvalue())


def token_chunks(sp, texts: list[str], seq_len: int, seed: int = 0) -> torch.Tensor:
    """Paragraphs joined by EOS into one stream, cut into `seq_len` chunks, shuffled once with `seed`.

    Every run reads the same shuffled stream from its start, so a longer run sees a superset of a
    shorter run's data. Attention may cross a paragraph boundary inside a chunk, as in ordinary
    GPT/Llama pretraining on concatenated text (the EOS marks the boundary).
    """
    ids = [t for piece in sp.encode(texts) for t in piece + [sp.eos_id()]]
    n = len(ids) // seq_len
    chunks = torch.tensor(ids[: n * seq_len]).view(n, seq_len)
    return chunks[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]


def _schedule(step: int, steps: int) -> float:
    """Linear warm-up over 5% of the run, then cosine decay to 10% of the peak at the very last step."""
    warm = max(1, steps // 20)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def eval_loss(model, chunks: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats/token) over all held-out chunks."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(chunks), batch_size):
        x = chunks[i: i + batch_size]
        logits = model(input_ids=x).logits[:, :-1]
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum").item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


def tiny_llama(vocab_size: int, hidden: int, layers: int, max_positions: int, seed: int = 0):
    """A Llama with tied input/output embeddings (unlike stage 00's), so N matches the compute it costs.

    Special ids follow the sweep tokenizer: unk 0, bos 1, eos 2, pad 3.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads(hidden), num_key_value_heads=heads(hidden),
                         intermediate_size=mlp_width(hidden), max_position_embeddings=max_positions,
                         rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                         pad_token_id=3, attn_implementation="sdpa")
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def train_run(run: Run, train: torch.Tensor, heldout: torch.Tensor, vocab_size: int,
              tokenizer: str, lr: float = 1e-2, beta2: float = 0.99, seed: int = 0) -> dict:
    """Train one model of the sweep from scratch and return its CSV row (final held-out loss included).

    A plain loop rather than a Trainer (DESIGN allows it for tiny pretraining): a sweep is ~30,000
    steps of a few milliseconds each, where the Trainer's per-step callbacks, logging and
    dataloader would be a sizeable share, and 24 output directories would be noise.
    """
    model = tiny_llama(vocab_size, run.hidden_size, run.num_layers, run.seq_len, seed)
    n = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    if n != run.n_params:
        raise ConfigError(f"{run.run_id}: model has N={n}, the planner assumed {run.n_params}")
    # beta2 0.99, not the 0.95 of large-batch recipes: with 512 tokens per step the second-moment
    # estimate needs a longer memory (Porian et al. 2024)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, beta2), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, run.steps))
    start, tail = time.time(), []
    for step in range(run.steps):
        x = train[step * run.batch_size: (step + 1) * run.batch_size]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        if step >= run.steps * 0.95:
            tail.append(loss.item())
    return {"run_id": run.run_id, "budget": run.budget, "n_params": n,
            "n_params_nonemb": non_embedding_params(run.hidden_size, run.num_layers), "tokens": run.tokens,
            "flops": 6.0 * n * run.tokens, "eval_loss": eval_loss(model, heldout),
            "train_loss": sum(tail) / len(tail), "hidden_size": run.hidden_size,
            "num_layers": run.num_layers, "num_heads": heads(run.hidden_size),
            "intermediate_size": mlp_width(run.hidden_size), "vocab_size": vocab_size, "tokenizer": tokenizer,
            "seq_len": run.seq_len, "batch_size": run.batch_size, "steps": run.steps, "lr": lr, "beta2": beta2,
            "epochs": run.steps * run.batch_size / len(train), "seed": seed,
            "seconds": round(time.time() - start, 2), "threads": torch.get_num_threads()}


def append_row(path: Path, row: dict) -> None:
    """Append one run to the CSV (header written on first use), so a long sweep survives interruption."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in COLUMNS})


def done_ids(path: Path) -> set[str]:
    """Run ids already in the CSV, so a restarted sweep skips them."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "run_id" not in reader.fieldnames:
            raise DataError("not a sweep CSV (no run_id column); pass a new --out path", source=str(path))
        return {r["run_id"] for r in reader}
