"""Is a stage's reading a result or chance? The same stage, code and seed built with different CPU thread
counts, its metrics side by side.

    .venv/bin/python scripts/float_order_check.py                      # stage 03 (sft) with 2 and 1 threads
    .venv/bin/python scripts/float_order_check.py --stage dpo --threads 2 1

With another thread count the matrix products sum in another order, so the weights differ in their last
bits after the first step and, a few hundred steps later, the model is a different sample of the same
recipe: what another CPU would train. A reading that holds in one column and not in another was chance.
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


def build(stage: str, threads: int, runs: Path) -> dict:
    """Run `stage` with `threads` torch threads in a fresh process; its metrics.json."""
    env = dict(os.environ, ZHLLM_RUNS=str(runs), ZHLLM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               ZHLLM_PROFILE="tiny", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    subprocess.run([sys.executable, "-c", BUILD.format(stage=stage)], env=env, check=True)
    return json.loads((runs / "tiny" / stage / "metrics.json").read_text())


def verdict(metrics: dict, key: str) -> str:
    """For a task score, whether it beats the task's trivial baseline; empty for other metrics."""
    if not key.endswith("_score_after"):
        return ""
    baseline = metrics.get(key.replace("_score_after", "_baseline"))
    if baseline is None:
        return ""
    return " above" if metrics[key] > baseline else " NOT above"


def table(stage: str, runs: dict[int, dict]) -> list[str]:
    """One line per numeric metric that is not a time: its value under each thread count."""
    first = next(iter(runs.values()))
    keys = [k for k in first if isinstance(first[k], (int, float)) and "seconds" not in k]
    lines = [f"stage {stage}: " + "  ".join(f"[{t} threads: {r.get('seconds', float('nan')):.0f} s]"
                                             for t, r in runs.items())]
    lines.append(f"{'metric':<34}" + "".join(f"{str(t) + ' threads':>22}" for t in runs))
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {t: build(args.stage, t, Path(tmp) / f"threads-{t}") for t in args.threads}
    print("\n".join(table(args.stage, runs)))


if __name__ == "__main__":
    main()
