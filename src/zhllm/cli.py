"""The `zhllm` command line: run the pipeline, train a stage from a recipe, score C-Eval, plan compute.

    zhllm demo [--profile tiny] [--force]          every wired stage in order, then the results table
    zhllm results [--profile tiny]                 the results table of the stages already built
    zhllm train sft --config RECIPE [--key value]  one stage from a recipe (also under `accelerate launch`)
    zhllm eval ceval [--model sft] [--data DIR]    C-Eval-format scoring of a model
    zhllm plan --gpu-hours 1000 --gpu a100         the compute-optimal model size and token count
    zhllm pretrain-tiny --out models/tiny-zh-v1    rebuild the shipped tiny Chinese model (1-2 h, CPU)

Every command calls the same functions as the notebooks; nothing here trains or scores by itself.
"""
import argparse
import json
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

from . import artifacts
from .errors import ConfigError, ZhllmError
from .profiles import PROFILES, current

MODEL_STAGES = ("base", "cpt", "shipped", "sft", "dpo")
# dense bf16/fp16 tensor-core peak of one GPU, FLOP/s (vendor data sheets; SXM parts)
GPU_PEAK_FLOPS = {"t4": 65e12, "v100": 125e12, "a10": 125e12, "l4": 121e12, "4090": 165e12,
                  "a100": 312e12, "h100": 989e12, "h200": 989e12}


def results_table(profile: str | None = None) -> str:
    """A plain-text table (stage, metric, value) of every built stage's metrics.json."""
    rows = []
    for stage in artifacts.STAGES:
        if artifacts.is_built(stage, profile):
            for key, value in artifacts.read_metrics(stage, profile).items():
                # 4 significant figures: 3.8e-06 must not print as 0.0000
                shown = f"{value:.4g}" if isinstance(value, float) else f"{value:,}"
                rows.append((stage, key, shown))
    if not rows:
        return "no stage has been built yet for this profile: run `zhllm demo`"
    widths = [max(len(r[i]) for r in rows + [("stage", "metric", "value")]) for i in range(3)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"  # noqa: E731
    return "\n".join([line(("stage", "metric", "value")), "-" * (sum(widths) + 4), *map(line, rows)])


def demo(profile: str, force: bool) -> None:
    """Build every wired stage in pipeline order (reusing built ones unless `force`), then the table."""
    for stage in artifacts.STAGES:
        if stage not in artifacts.BUILDERS:
            continue
        started = time.time()
        cached = artifacts.is_built(stage, profile) and not force
        artifacts.ensure(stage, profile, force=force)
        note = "already built (use --force to rebuild)" if cached else f"{time.time() - started:.0f} s"
        print(f"[zhllm] stage {stage:<10} {note}", flush=True)
    print(f"\nResults ({profile} profile, from runs/{profile}/<stage>/metrics.json):\n")
    print(results_table(profile))


def train(stage: str, config: str, overrides: list[str]) -> None:
    """Train one stage from a recipe; under `accelerate launch` every process runs this."""
    from . import recipes, runtime

    kit, args = recipes.load(config, stage, overrides)
    runtime.seed_everything(args.seed)
    record = recipes.run(stage, kit, args)
    if record["rank"] == 0:
        print(f"[zhllm] {stage}: trained on {record['world_size']} process(es); adapter, tokenizer and "
              f"loss.json in {args.output_dir}")


def check_eval_args(limit: int | None, batch_size: int, output: str | None) -> None:
    """Refuse bad `eval` arguments before any model is loaded or question scored."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1 (questions per subject), got {limit}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if output:
        path = Path(output)
        if path.is_dir():
            raise ConfigError(f"--output {output} is a folder; give a file name, e.g. {path / 'ceval.json'}")
        if not path.parent.is_dir():
            raise ConfigError(f"--output {output}: the folder {path.parent} does not exist; create it first")


def eval_ceval(model: str | None, data: str | None, hub: str | None, split: str | None, fmt: str | None,
               limit: int | None, batch_size: int, output: str | None, profile: str) -> None:
    """Score one model on a C-Eval-format exam; without --model, build stage 06 (every stage model)."""
    check_eval_args(limit, batch_size, output)
    if hub:  # a split the benchmark lacks (CMMLU has no val) is refused before a model loads
        from . import hub as hub_access

        split = split or ("val" if "val" in hub_access.DATASETS[hub].splits else "test")
        hub_access.check_split(hub_access.DATASETS[hub], split)
    if model is None:
        artifacts.ensure("ceval", profile)
        print("\n".join(line for line in results_table(profile).splitlines() if line.startswith("ceval")))
        return
    from transformers import AutoTokenizer

    from . import ceval, recipes
    from .ceval import kit_exam as exam, scoring as ceval_scoring, stage as ceval_stage
    from .modeling import load_causal_lm

    if model == "shipped":
        path = str(artifacts.start_model_dir(profile))
    elif model in MODEL_STAGES:
        path = str(artifacts.ensure(model, profile) / "model")
    else:
        path = recipes.resolve_model(model)
    llm, tokenizer = load_causal_lm(path).eval(), AutoTokenizer.from_pretrained(path)
    with tempfile.TemporaryDirectory() as tmp:
        if hub:
            questions = ceval.load_hub(hub, split)
        else:
            split = split or "val"
            questions = ceval.load_folder(Path(data) if data else exam.build_exam(Path(tmp) / "exam"), split)
    fmt = fmt or ceval_stage.exam_format(tokenizer)
    results = ceval_scoring.score_exam(llm, tokenizer, questions, fmt, batch_size, limit=limit)
    summary = ceval_scoring.summarize(results, questions)
    print(f"{path} on {questions.name} {split} ({len(results)} questions, format {fmt}):\n")
    print(ceval_scoring.summary_table(summary))
    if output:
        Path(output).write_text(json.dumps({"model": path, "format": fmt, "summary": summary,
                                            "predictions": [vars(r) for r in results]},
                                           ensure_ascii=False, indent=1, default=list), encoding="utf-8")
        print(f"\npredictions and summary written to {output}")


def plan(flops: float | None, gpu_hours: float | None, gpu: str, peak_tflops: float | None, mfu: float,
         unique_tokens: float | None) -> None:
    """Print the Chinchilla-optimal plan for a compute budget (FLOPs, or GPU-hours of a GPU)."""
    from . import scaling

    if flops is None:
        peak = peak_tflops * 1e12 if peak_tflops else GPU_PEAK_FLOPS[gpu]
        flops = scaling.compute_budget(gpu_hours, peak, mfu)
        print(f"{gpu_hours:,.0f} GPU-hours x {peak / 1e12:.0f} TFLOP/s peak x {mfu:.0%} utilisation:")
    print(scaling.describe_plan(scaling.plan(flops, unique_tokens)))


def _kit_keys() -> str:
    """The kit's own recipe keys per stage, for `zhllm train --help`."""
    from . import recipes

    lines = []
    for stage, kit in (("cpt", recipes.CptArguments), ("sft", recipes.SftArguments), ("dpo", recipes.DpoArguments)):
        lines.append(f"{stage} ({kit.__doc__.split(':')[0]}):")
        lines += [f"  {f.name:<20} {f.metadata['help']}" for f in fields(kit)]
    return "\n".join(lines)


TRAIN_EPILOG = """\
A recipe is a YAML file (configs/recipes/{tiny,colab,full}/{cpt,sft,dpo}.yaml). Its keys are the kit's
own (below) plus every field of the library's training arguments: transformers.TrainingArguments (cpt),
trl.SFTConfig (sft), trl.DPOConfig (dpo), as installed. A model path runs/<profile>/<stage>/model names a
kit stage and is built first when missing. Any key can be overridden after the file: --max_steps 10.

examples:
  zhllm train sft --config configs/recipes/tiny/sft.yaml
  zhllm train sft --config configs/recipes/tiny/sft.yaml --max_steps 20 --output_dir /tmp/sft
  accelerate launch --config_file configs/accelerate/ddp.yaml -m zhllm.cli train sft \\
      --config configs/recipes/full/sft.yaml        (README, "Scale out", for every launcher)

The kit's keys:
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhllm", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a Chinese LLM step by step: tokenizer expansion, QLoRA continued pretraining, "
        "SFT, DPO, scaling laws, C-Eval.\nEvery stage writes runs/<profile>/<stage>/metrics.json. "
        "Start with `zhllm demo`.\n`zhllm <command> --help` explains each command.",
        epilog="examples:\n"
        "  zhllm demo                                              the whole tiny pipeline, CPU, offline\n"
        "  zhllm train sft --config configs/recipes/tiny/sft.yaml  one stage from a recipe\n"
        "  zhllm eval ceval --model sft                            score the SFT stage on the kit's exam\n"
        "  zhllm plan --gpu-hours 1000 --gpu a100                  model size and tokens for a budget")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    profile_help = "tiny | colab | full (default: $ZHLLM_PROFILE, else colab with a GPU, tiny without)"

    text = "run every stage for a profile (tiny: CPU, offline, minutes), then print the results table"
    p = sub.add_parser("demo", help=text, description=text)
    p.add_argument("--profile", choices=PROFILES, help=profile_help)
    p.add_argument("--force", action="store_true", help="rebuild stages that already exist")

    text = "print the results table of the stages already built"
    p = sub.add_parser("results", help=text, description=text)
    p.add_argument("--profile", choices=PROFILES, help=profile_help)

    text = "train one stage (cpt, sft or dpo) from a recipe file; runs under `accelerate launch` too"
    p = sub.add_parser("train", help=text, description=text, epilog=TRAIN_EPILOG + _kit_keys(),
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="zhllm train {cpt,sft,dpo} --config RECIPE [--key value ...]")
    p.add_argument("stage", choices=("cpt", "sft", "dpo"), help="continued pretraining, SFT or DPO")
    p.add_argument("--config", required=True, metavar="RECIPE", help="the recipe YAML file")

    text = "score a model on a C-Eval-format exam (the kit's own exam unless --data/--hub)"
    p = sub.add_parser("eval", help=text, description=text)
    p.add_argument("benchmark", choices=("ceval",), help="ceval: C-Eval / CMMLU layout, letter log-probabilities")
    p.add_argument("--model", help=f"a stage ({', '.join(MODEL_STAGES)}), a directory or a hub name; "
                   "omitted: build stage 06, which scores every built stage model")
    p.add_argument("--data", help="a folder in C-Eval or CMMLU layout (<split>/<subject>_<split>.csv)")
    p.add_argument("--hub", choices=("ceval", "cmmlu"), help="download the real benchmark from the hub instead")
    p.add_argument("--split", help="the split to score (default: val; CMMLU on the hub has only dev and test, "
                   "so --hub cmmlu scores test, whose answers are published)")
    p.add_argument("--format", dest="fmt", help="a prompt format of zhllm.ceval.FORMATS (default: "
                   "chat_zero_shot for a model with a chat template, else official_zero_shot)")
    p.add_argument("--limit", type=int, help="only the first N questions of each subject")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--output", help="write the summary and every prediction to this JSON file")
    p.add_argument("--profile", choices=PROFILES, help=profile_help)

    text = "plan a run with the scaling laws: compute-optimal parameters and tokens for a budget"
    p = sub.add_parser("plan", help=text, description=text + " (Chinchilla, Hoffmann et al. 2022; "
                       "with --unique-tokens, repeated data valued as in Muennighoff et al. 2023)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--flops", type=float, help="the training budget in FLOPs, e.g. 1e21")
    budget.add_argument("--gpu-hours", type=float, help="the budget in GPU-hours (with --gpu, --mfu)")
    p.add_argument("--gpu", choices=sorted(GPU_PEAK_FLOPS), default="a100", help="GPU type (default a100)")
    p.add_argument("--peak-tflops", type=float, help="peak TFLOP/s of your GPU, instead of --gpu")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation (default 0.4)")
    p.add_argument("--unique-tokens", type=float, help="unique training tokens you have, e.g. 2e11")

    text = "rebuild the kit's shipped tiny Chinese model (English base, expansion, long Chinese pretraining)"
    p = sub.add_parser("pretrain-tiny", help=text, description=text + "; resumes from --work when restarted")
    p.add_argument("--out", required=True, help="the folder to write, e.g. models/tiny-zh-v1")
    p.add_argument("--work", help="checkpoints and phase outputs (default: <out>.work)")
    p.add_argument("--smoke", action="store_true", help="a few steps of the same program (for tests)")
    for key in ("hidden_size", "num_layers", "num_heads", "batch_size", "english_steps", "chinese_steps"):
        p.add_argument("--" + key.replace("_", "-"), type=int, help=f"{key} (default: the shipped model's)")
    p.add_argument("--learning-rate", type=float, help="peak learning rate (default: the shipped model's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "train":
            train(args.stage, args.config, extra)
            return 0
        profile = current(args.profile) if hasattr(args, "profile") else None
        if args.command == "demo":
            demo(profile, args.force)
        elif args.command == "results":
            print(results_table(profile))
        elif args.command == "pretrain-tiny":
            from .cpt import long_run

            work = args.work or f"{args.out.rstrip('/')}.work"
            changes = {key: getattr(args, key) for key in long_run.SCALABLE}
            card = long_run.build(Path(args.out), Path(work), args.smoke,
                                  command="zhllm " + " ".join(argv or sys.argv[1:]), **changes)
            print(json.dumps(card["metrics"], indent=2))
        elif args.command == "eval":
            eval_ceval(args.model, args.data, args.hub, args.split, args.fmt, args.limit, args.batch_size,
                       args.output, profile)
        else:
            plan(args.flops, args.gpu_hours, args.gpu, args.peak_tflops, args.mfu, args.unique_tokens)
    except ZhllmError as exc:
        print(f"zhllm: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
