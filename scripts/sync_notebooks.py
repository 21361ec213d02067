"""Each notebook's .ipynb from its jupytext .py source (the source of truth), with the outputs of a tiny run.

    python scripts/sync_notebooks.py --execute [files...]   run each notebook (tiny profile, offline) and
                                                            write its .ipynb with the outputs
    python scripts/sync_notebooks.py --check [files...]     exit 1 if an .ipynb does not match its source

(default files: notebooks/*.py). An executed .ipynb records the sha256 of the source it ran
(`metadata.zhllm.source_sha256`), so a test can tell that its outputs come from the source as it is now.
Runs go to `runs/_notebooks` unless ZHLLM_RUNS is set.
"""
import hashlib
import os
import sys
from pathlib import Path

import jupytext
import nbformat

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ZHLLM_PROFILE": "tiny"}


def source_sha256(py: Path) -> str:
    return hashlib.sha256(py.read_bytes()).hexdigest()


def from_source(py: Path) -> nbformat.NotebookNode:
    """The notebook of a .py percent source, no outputs, cell ids numbered (so it is reproducible)."""
    notebook = jupytext.read(py)
    for i, cell in enumerate(notebook.cells):
        cell.id = f"cell-{i:03d}"
    return notebook


def cells(notebook) -> list[tuple]:
    """What a notebook's source decides: each cell's type, text and tags."""
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in notebook.cells]


def execute(py: Path, timeout: int = 900) -> None:
    """Run the notebook in the tiny profile (cwd notebooks/) and write its .ipynb with outputs and the source hash."""
    from nbclient import NotebookClient

    notebook = from_source(py)
    os.environ.update(OFFLINE)
    os.environ.setdefault("ZHLLM_RUNS", str(REPO / "runs" / "_notebooks"))
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(py.parent)}}).execute()
    notebook.metadata["zhllm"] = {"source_sha256": source_sha256(py), "profile": "tiny"}
    py.with_suffix(".ipynb").write_text(jupytext.writes(notebook, fmt="ipynb"))
    print(f"executed {py.with_suffix('.ipynb')}")


def problems(py: Path) -> list[str]:
    """What is wrong with py's .ipynb: missing, cells not its source's, outputs not from this source."""
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.exists():
        return [f"{ipynb.name} is missing"]
    found = []
    if cells(nbformat.read(ipynb, as_version=4)) != cells(from_source(py)):
        found.append(f"{ipynb.name}'s cells differ from {py.name}")
    meta = nbformat.read(ipynb, as_version=4).metadata.get("zhllm", {})
    if meta.get("source_sha256") != source_sha256(py):
        found.append(f"{ipynb.name}'s outputs do not come from the current {py.name}")
    return found


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv if not a.startswith("--")] or sorted((REPO / "notebooks").glob("*.py"))
    if "--execute" in argv:
        for py in files:
            execute(py)
        return 0
    found = [p for py in files for p in problems(py)]
    if found:
        print("notebooks to re-execute (`make notebooks`):", *found, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
