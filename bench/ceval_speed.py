"""Questions per second: zhllm's C-Eval scorer vs lm-evaluation-harness, same model, same data, one run.

    python bench/ceval_speed.py                      # real C-Eval val (../shared/data/ceval) if present
    python bench/ceval_speed.py --model runs/tiny/base/model --subjects logic law

Both sides start from the CSV files and end with a prediction per question; loading the model is
left out of both timings (lm-eval gets the already-loaded model). Each side runs `--repeats` times,
alternating, and the best time counts, so neither pays for a cold cache the other does not.
Without the real files the kit's own exam (C-Eval layout) is used.
"""
import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from zhllm import ceval, runtime
from zhllm.ceval.kit_exam import build_exam
from zhllm.ceval.lmeval import FORMAT, compare, run_lmeval, tiny_chinese_model
from zhllm.ceval.scoring import score_exam
from zhllm.errors import MissingDependencyError


def data_dir(work: Path) -> Path:
    """The real C-Eval folder, else the kit's exam written to `work`."""
    try:
        return ceval.reference_dir("ceval")
    except MissingDependencyError:
        print("real C-Eval files absent: benchmarking on the kit's exam instead")
        return build_exam(work / "exam")


def ours(model, tokenizer, root: Path, subjects, batch_size: int):
    start = time.perf_counter()
    exam = ceval.load_folder(root, "val", subjects=subjects)
    results = score_exam(model, tokenizer, exam, FORMAT, batch_size=batch_size)
    return time.perf_counter() - start, results


def theirs(model, tokenizer, root: Path, subjects, batch_size: int, work: Path):
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    out = run_lmeval(lm, root, work / "tasks", subjects, batch_size)
    return out["seconds"], out["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="HF model dir (default: a tiny random Llama with a Chinese BPE)")
    parser.add_argument("--subjects", nargs="*", help="C-Eval subjects (default: all in the folder)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    # the default tiny model's 64-wide matrices gain nothing from a second thread (it only adds
    # synchronisation, badly so on a busy machine); pass --threads for a real model
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    args = parser.parse_args()
    runtime.set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = data_dir(work)
        model_dir = Path(args.model) if args.model else tiny_chinese_model(work / "model")
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        best = {"zhllm": float("inf"), "lm-eval": float("inf")}
        for _ in range(args.repeats):
            t_theirs, r_theirs = theirs(model, tokenizer, root, args.subjects, args.batch_size, work)
            t_ours, r_ours = ours(model, tokenizer, root, args.subjects, args.batch_size)
            best["lm-eval"] = min(best["lm-eval"], t_theirs)
            best["zhllm"] = min(best["zhllm"], t_ours)
        report = compare(r_ours, r_theirs)
    n = report["questions"]
    print(f"\ndata: {root}  model: {model_dir if args.model else 'tiny random Llama (Chinese BPE)'}")
    print(f"torch threads {torch.get_num_threads()}, batch size {args.batch_size}, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"{name:<8} {n} questions in {seconds:7.2f} s = {n / seconds:8.1f} questions/s")
    print(f"same prediction on {report['agreement']:.2%} of questions")
    print(f"speed ratio zhllm / lm-eval: {best['lm-eval'] / best['zhllm']:.2f}x")


if __name__ == "__main__":
    main()
