"""Draw the README's pipeline picture into docs/figures/pipeline.png (run after changing zhllm.figures).

    python scripts/draw_figures.py
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from zhllm import figures  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "pipeline.png"
    figures.pipeline().savefig(path, dpi=110, metadata={"Software": None})  # no version: a rerun is identical
    print(f"wrote {path.relative_to(OUT.parents[1])} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
