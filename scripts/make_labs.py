"""Generate each lab's student and solution notebooks from its jupytext source, with no outputs.

A source `labs/NN_topic.py` marks the model answer inside a function body:

    def f(x):
        # BEGIN SOLUTION: sum the squares
        return sum(v * v for v in x)
        # END SOLUTION

`labs/solution/NN_topic.ipynb` keeps the answer (marker lines removed); `labs/student/NN_topic.ipynb`
replaces it with `raise NotImplementedError("TODO: sum the squares")` at the same indentation.
The Colab badge points at the notebook it sits in.

Usage: python scripts/make_labs.py [--check] [labs/NN_topic.py ...]   (default: labs/*.py)
"""
import re
import sys
from pathlib import Path

import jupytext

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?::\s*(?P<hint>.*))?$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
KINDS = ("student", "solution")


class MarkerError(ValueError):
    """Unbalanced or malformed solution markers; the message names the file and the cell."""


def transform(source: str, kind: str, where: str) -> str:
    """One code cell's source in its student or solution form."""
    out, inside = [], False
    for line in source.splitlines():
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if inside:
                raise MarkerError(f"{where}: BEGIN SOLUTION inside another solution block")
            inside = True
            hint = (begin["hint"] or "write this part").strip()
            if '"' in hint or "\\" in hint:
                raise MarkerError(f"{where}: a hint may not contain double quotes or backslashes: {hint!r}")
            if kind == "student":
                out.append(f'{begin["indent"]}raise NotImplementedError("TODO: {hint}")')
        elif end:
            if not inside:
                raise MarkerError(f"{where}: END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif kind == "solution" or not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: BEGIN SOLUTION without END SOLUTION")
    return "\n".join(out)


def rendered(py: Path, kind: str) -> str:
    """The .ipynb text of one version of a lab (cell ids numbered, so the output is reproducible)."""
    notebook = jupytext.read(py)
    notebook.metadata.pop("jupytext", None)  # a generated notebook is not paired with a .py of its own
    for i, cell in enumerate(notebook.cells):
        cell.id = f"cell-{i:03d}"
        if cell.cell_type == "code":
            cell.source = transform(cell.source, kind, f"{py}, cell {i}")
        cell.source = cell.source.replace("/labs/student/", f"/labs/{kind}/")
    return jupytext.writes(notebook, fmt="ipynb")


def targets(py: Path) -> dict:
    return {kind: py.parent / kind / py.with_suffix(".ipynb").name for kind in KINDS}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    files = [Path(a) for a in argv if not a.startswith("--")] or sorted(Path("labs").glob("[0-9]*.py"))
    stale = []
    for py in files:
        for kind, ipynb in targets(py).items():
            text = rendered(py, kind)
            if ipynb.exists() and ipynb.read_text() == text:
                continue
            stale.append(ipynb)
            if not check:
                ipynb.parent.mkdir(parents=True, exist_ok=True)
                ipynb.write_text(text)
                print(f"wrote {ipynb}")
    if check and stale:
        print("stale lab notebooks (run `make labs`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
