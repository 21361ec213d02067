#!/usr/bin/env python
"""IsoFLOP sweep (Chinchilla Approach 2 data): train tiny Llamas on People's Daily at fixed compute budgets.

For every budget C (in FLOPs, C = 6 N D, N counting all parameters of a model with tied embeddings)
the script trains several model sizes N, each for D = C / (6N) fresh tokens with a cosine schedule
as long as the run, and appends one row per run (final held-out loss) to a CSV. Runs already in the
CSV are skipped, so an interrupted sweep resumes where it stopped. Runs are deterministic (same
seed, same data order), so a resumed sweep equals an uninterrupted one. `zhllm.scaling` and
notebook 05 fit the result.

The sizes of a budget are those whose tokens per parameter D/N fall in --ratio-range. The default
8..800 brackets every minimum while staying off the plateau of runs with D/N < 8, which get so few
steps (a few hundred) that their loss stalls near the bigram level and stops following a parabola.

The committed sweep (src/zhllm/data/isoflop_sweep.csv, 22 runs) was made with:

    python scripts/isoflop_sweep.py --out src/zhllm/data/isoflop_sweep.csv

(one thread, the default: these models are too small for a second thread to pay off, and on a
shared 2-core machine it was 3-4x slower).
The CI-sized sweep (a few CPU seconds):

    python scripts/isoflop_sweep.py --reduced --out /tmp/sweep.csv
"""
import argparse
import sys
import time
from pathlib import Path

FULL = {"budgets": [4e10, 1e11, 2.5e11, 6e11], "per_budget": 6, "ratio_range": (8.0, 800.0),
        "batch_size": 8, "heldout_chunks": 1024, "max_paragraphs": None}
REDUCED = {"budgets": [1e9, 3e9], "per_budget": 3, "ratio_range": (0.2, 500.0), "batch_size": 4,
           "heldout_chunks": 32, "max_paragraphs": 2000}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train tiny Llama models at fixed compute budgets (IsoFLOP curves) on People's "
                    "Daily and append one CSV row per run.",
        epilog="Example: python scripts/isoflop_sweep.py --out src/zhllm/data/isoflop_sweep.csv")
    p.add_argument("--out", type=Path, required=True, help="CSV to append rows to (created if missing)")
    p.add_argument("--budgets", type=float, nargs="+",
                   help="compute budgets C in FLOPs, C = 6*N*D (default "
                        f"{' '.join(f'{b:g}' for b in FULL['budgets'])})")
    p.add_argument("--per-budget", type=int, help="model sizes per budget (default 6)")
    p.add_argument("--ratio-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="tokens-per-parameter window D/N that picks the sizes of every budget (default 8 800)")
    p.add_argument("--seq-len", type=int, default=64, help="tokens per training sequence (default 64)")
    p.add_argument("--batch-size", type=int, help="sequences per step, the same for every run (default 8)")
    p.add_argument("--beta2", type=float, default=0.99, help="AdamW beta2 (default 0.99)")
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate, same for all runs (default 1e-2)")
    p.add_argument("--vocab-size", type=int, default=512,
                   help="SentencePiece vocabulary: 256 byte-fallback pieces, 4 specials, the rest the most "
                        "frequent characters (default 512)")
    p.add_argument("--heldout-chunks", type=int, help="held-out sequences the loss is measured on (default 1024)")
    p.add_argument("--max-paragraphs", type=int,
                   help="train on the first N People's Daily paragraphs only (default: all 17,584)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data order (default 0)")
    p.add_argument("--reduced", action="store_true",
                   help="tiny budgets and 3 sizes each, for CI: exercises the code in seconds, fits nothing")
    p.add_argument("--dry-run", action="store_true", help="print the planned runs and exit")
    args = p.parse_args(argv)
    preset = REDUCED if args.reduced else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from zhllm import corpora
    from zhllm.scaling.sweep import append_row, done_ids, plan, token_chunks, train_run, train_tokenizer

    torch.set_num_threads(args.threads)
    texts = corpora.people_daily("train")[: args.max_paragraphs]
    sp = train_tokenizer(texts, vocab_size=args.vocab_size, model_type="char")
    tokenizer = f"sentencepiece-char-{sp.get_piece_size()}-bytefallback"
    train = token_chunks(sp, texts, args.seq_len, seed=args.seed)
    heldout = token_chunks(sp, corpora.people_daily("heldout"), args.seq_len, seed=args.seed)
    heldout = heldout[: args.heldout_chunks]
    runs = plan(args.budgets, sp.get_piece_size(), args.per_budget, tuple(args.ratio_range), args.seq_len,
                args.batch_size, unique_tokens=train.numel())
    print(f"{tokenizer}: {train.numel():,} training tokens, {heldout.numel():,} held-out tokens; "
          f"{len(runs)} runs planned", flush=True)
    done = done_ids(args.out)
    for run in runs:
        status = "done" if run.run_id in done else "todo"
        print(f"  {run.run_id:<22} N={run.n_params:>8,} D={run.tokens:>10,} D/N={run.tokens / run.n_params:7.1f} "
              f"batch={run.batch_size:<3} steps={run.steps:<5} {status}", flush=True)
    if args.dry_run:
        return 0
    start = time.time()
    for run in runs:
        if run.run_id in done:
            continue
        row = train_run(run, train, heldout, sp.get_piece_size(), tokenizer, lr=args.lr, beta2=args.beta2,
                        seed=args.seed)
        append_row(args.out, row)
        print(f"{row['run_id']:<22} eval_loss={row['eval_loss']:.4f} train_loss={row['train_loss']:.4f} "
              f"{row['seconds']:.1f}s", flush=True)
    print(f"sweep finished in {time.time() - start:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
