"""Is a stage's reading a result or chance? The same stage and code built with different CPU thread
counts, or with different seeds, its metrics side by side.

    .venv/bin/python scripts/float_order_check.py                      # stage 03 (sft) with 2 and 1 threads
    .venv/bin/python scripts/float_order_check.py --stage dpo --threads 2 1
    .venv/bin/python scripts/float_order_check.py --seeds 0 1 2        # stage 03 with seeds 0, 1, 2 (2 threads)

With another thread count the matrix products sum in another order, so the weights differ in their last
bits after the first step and, a few hundred steps later, the model is a different sample of the same
recipe: what another CPU would train. Another seed (`--seeds`: the stage's `SETTINGS["tiny"]["seed"]`, which
draws its LoRA initialisation and the order of its rows, and for stage 04 which review pairs it trains on and
holds out) is a larger change of the same kind: the spread a student who changes only the seed would see.
A reading that holds in one column and not in another was chance.
Each build runs offline, tiny profile, in a fresh process with its own temporary runs folder; a stage's
inputs (stage 03 for `dpo`) are built there too, with the same thread count.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from zhllm.artifacts import STAGES

BUILD = "from zhllm import artifacts; artifacts.ensure({stage!r}, 'tiny')"
SEED = "import importlib; importlib.import_module('zhllm.{stage}').SETTINGS['tiny']['seed'] = {seed}; "


def build(stage: str, threads: int, runs: Path, seed: int | None = None) -> dict:
    """Run `stage` with `threads` torch threads in a fresh process; its metrics.json.

    `seed` replaces the stage's own seed (its inputs, stage 03 for `dpo`, keep theirs)."""
    code = (SEED.format(stage=stage, seed=seed) if seed is not None else "") + BUILD.format(stage=stage)
    env = dict(os.environ, ZHLLM_RUNS=str(runs), ZHLLM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               ZHLLM_PROFILE="tiny", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return json.loads((runs / "tiny" / stage / "metrics.json").read_text())


def verdict(metrics: dict, key: str) -> str:
    """For a task score, whether it beats the task's trivial baseline; empty for other metrics."""
    if not key.endswith("_score_after"):
        return ""
    baseline = metrics.get(key.replace("_score_after", "_baseline"))
    if baseline is None:
        return ""
    return " above" if metrics[key] > baseline else " NOT above"


def table(stage: str, runs: dict[str, dict]) -> list[str]:
    """One line per numeric metric that is not a time: its value in each build (columns named by `runs`' keys)."""
    first = next(iter(runs.values()))
    keys = [k for k in first if isinstance(first[k], (int, float)) and "seconds" not in k]
    lines = [f"stage {stage}: " + "  ".join(f"[{name}: {r.get('seconds', float('nan')):.0f} s]"
                                             for name, r in runs.items())]
    lines.append(f"{'metric':<34}" + "".join(f"{name:>22}" for name in runs))
    for key in keys:
        cells = "".join(f"{r[key]:>12{'d' if isinstance(r[key], int) else '.3f'}}{verdict(r, key):<10}"
                        for r in runs.values())
        differs = len({round(r[key], 6) for r in runs.values()}) > 1
        lines.append(f"{key:<34}{cells}{'  differs' if differs else ''}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="sft", choices=STAGES)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="build once per seed instead (each with the first --threads value)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.seeds:
            threads = args.threads[0]
            runs = {f"seed {s}": build(args.stage, threads, Path(tmp) / f"seed-{s}", s)
                    for s in args.seeds}
        else:
            runs = {f"{t} threads": build(args.stage, t, Path(tmp) / f"threads-{t}") for t in args.threads}
    print("\n".join(table(args.stage, runs)))


if __name__ == "__main__":
    main()
