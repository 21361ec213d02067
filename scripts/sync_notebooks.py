"""Regenerate each notebook's .ipynb from its jupytext .py source (the source of truth), no outputs.

Usage: python scripts/sync_notebooks.py [--check] [files...]   (default: notebooks/*.py)
"""
import sys
from pathlib import Path

import jupytext


def rendered(py: Path) -> str:
    """The .ipynb text that belongs to a .py percent source (cell ids numbered, so it is reproducible)."""
    notebook = jupytext.read(py)
    for i, cell in enumerate(notebook.cells):
        cell.id = f"cell-{i:03d}"
    return jupytext.writes(notebook, fmt="ipynb")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    files = [Path(a) for a in argv if not a.startswith("--")] or sorted(Path("notebooks").glob("*.py"))
    stale = []
    for py in files:
        ipynb = py.with_suffix(".ipynb")
        text = rendered(py)
        if ipynb.exists() and ipynb.read_text() == text:
            continue
        stale.append(ipynb)
        if not check:
            ipynb.write_text(text)
            print(f"wrote {ipynb}")
    if check and stale:
        print("stale notebooks (run `make notebooks`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
