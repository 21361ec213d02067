"""Each notebook's .ipynb from its jupytext .py source (the source of truth), with the outputs of a tiny run.

    python scripts/sync_notebooks.py --execute [files...]   run each notebook (tiny profile, offline) and
                                                            write its .ipynb with the outputs
    python scripts/sync_notebooks.py --check [files...]     exit 1 if an .ipynb does not match its source
    python scripts/sync_notebooks.py --generate [files...]  rewrite each source's install cell and Colab badge
                                                            from pyproject.toml's repository address

(default files: notebooks/*.py). An executed .ipynb records the sha256 of the source it ran
(`metadata.zhllm.source_sha256`), so a test can tell that its outputs come from the source as it is now.
Runs go to `runs/_notebooks` unless ZHLLM_RUNS is set.
"""
import hashlib
import os
import re
import sys
import tomllib
from pathlib import Path

import jupytext
import nbformat

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ZHLLM_PROFILE": "tiny"}


# Colab opens a notebook with these on a T4 GPU runtime
COLAB_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}
INSTALL_TAG = "install"
INSTALL_CELL = """\
# Colab: install the kit at the versions it is tested with (Colab's own torch is kept), and keep runs/ on
# Google Drive so that stages built once survive the VM. Elsewhere this cell does nothing.
import os
import subprocess
import sys

KEEP_RUNS_ON_DRIVE = True  # False: runs/ stays on the VM and is lost when Colab recycles it
if "google.colab" in sys.modules:
    if not os.path.isdir("zhllm"):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "{url}", "zhllm"], check=True)
    with open("zhllm/constraints.txt") as f:  # the tested versions of everything but torch
        pins = [line for line in f if line.split("==")[0].strip() != "torch"]
    with open("colab-constraints.txt", "w") as f:
        f.writelines(pins)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "colab-constraints.txt", "-e", "./zhllm"],
                   check=True)
    sys.path.insert(0, os.path.abspath("zhllm/src"))
    if KEEP_RUNS_ON_DRIVE:
        from google.colab import drive

        drive.mount("/content/drive")
        os.environ["ZHLLM_RUNS"] = "/content/drive/MyDrive/zhllm/runs\""""
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/{path}/blob/main/notebooks/{name})"


def repository() -> str:
    """The repository's address, from pyproject.toml's [project.urls] (the one place it is written)."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def badge(ipynb_name: str) -> str:
    path = repository().removeprefix("https://github.com/")
    return BADGE.format(path=path, name=ipynb_name)


def install_cell() -> str:
    return INSTALL_CELL.format(url=repository())


def generate(py: Path) -> None:
    """Rewrite py's install cell (tagged `install`) and its Colab badge from the repository's address."""
    text = py.read_text()
    header = f'# %% tags=["{INSTALL_TAG}"]\n'
    if text.count(header) != 1:
        raise SystemExit(f"{py.name}: expected one cell tagged {INSTALL_TAG!r}, found {text.count(header)}")
    start = text.index(header) + len(header)
    end = text.index("\n# %%", start)
    text = text[:start] + install_cell() + "\n" + text[end:]
    text = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)", lambda _: badge(py.with_suffix(".ipynb").name), text)
    py.write_text(text)


def generated_problems(py: Path) -> list[str]:
    """What in py's source differs from what `--generate` writes."""
    notebook = jupytext.read(py)
    installs = [c.source for c in notebook.cells if INSTALL_TAG in c.metadata.get("tags", [])]
    found = [] if installs == [install_cell()] else [f"{py.name}'s install cell is not the generated one"]
    if badge(py.with_suffix(".ipynb").name) not in notebook.cells[0].source:
        found.append(f"{py.name}'s Colab badge is not the generated one")
    return found


def source_sha256(py: Path) -> str:
    return hashlib.sha256(py.read_bytes()).hexdigest()


def from_source(py: Path) -> nbformat.NotebookNode:
    """The notebook of a .py percent source, no outputs, cell ids numbered (so it is reproducible)."""
    notebook = jupytext.read(py)
    for i, cell in enumerate(notebook.cells):
        cell.id = f"cell-{i:03d}"
    notebook.metadata.update(COLAB_METADATA)
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
    metadata = nbformat.read(ipynb, as_version=4).metadata
    if any(metadata.get(k) != v for k, v in COLAB_METADATA.items()):
        found.append(f"{ipynb.name} lacks Colab's T4 metadata")
    meta = metadata.get("zhllm", {})
    if meta.get("source_sha256") != source_sha256(py):
        found.append(f"{ipynb.name}'s outputs do not come from the current {py.name}")
    return found


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv if not a.startswith("--")] or sorted((REPO / "notebooks").glob("*.py"))
    if "--generate" in argv:
        for py in files:
            generate(py)
        return 0
    if "--execute" in argv:
        for py in files:
            execute(py)
        return 0
    found = [p for py in files for p in generated_problems(py) + problems(py)]
    if found:
        print("notebooks to re-execute (`make notebooks`):", *found, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
