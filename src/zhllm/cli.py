"""The `zhllm` command line: run the pipeline and print what each stage measured.

    zhllm demo [--profile tiny] [--force]    every wired stage in order, then the results table
    zhllm results [--profile tiny]           the results table of the stages already built
"""
import argparse
import sys
import time

from . import artifacts
from .errors import ZhllmError
from .profiles import PROFILES, current


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zhllm", description="Build a Chinese LLM step by step: tokenizer expansion, QLoRA "
        "continued pretraining, SFT, DPO, scaling laws, C-Eval. Every stage writes "
        "runs/<profile>/<stage>/metrics.json.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [("demo", "run every stage for a profile (tiny: CPU, offline, minutes), then "
                        "print the results table"),
                       ("results", "print the results table of the stages already built")]:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--profile", choices=PROFILES, default=None,
                       help="tiny | colab | full (default: $ZHLLM_PROFILE, else auto-detect)")
        if name == "demo":
            p.add_argument("--force", action="store_true", help="rebuild stages that already exist")
    args = parser.parse_args(argv)
    try:
        profile = current(args.profile)
        if args.command == "demo":
            demo(profile, args.force)
        else:
            print(results_table(profile))
    except ZhllmError as exc:
        print(f"zhllm: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
