"""Build each lab from its Otter master notebook: the student notebook, the autograder zip, the solution.

A lab's source `labs/NN_topic.py` is an Otter Assign master notebook kept as a jupytext percent file:
raw cells hold Otter's `# ASSIGNMENT CONFIG`, `# BEGIN QUESTION` ... `# END QUESTION` and
`# BEGIN TESTS` ... `# END TESTS` blocks; inside a solution the answer sits between `# BEGIN SOLUTION NO PROMPT`
and `# END SOLUTION`, and the stub the student sees inside a string that opens on the `# BEGIN PROMPT`
line and closes on the `# END PROMPT` line.
Test cells marked hidden (in their TEST CONFIG) go only into the autograder.

Writes, per lab:
  labs/student/NN_topic.ipynb            committed: what students open (the Colab badges point here)
  labs/dist/autograder/NN_topic.zip      git-ignored: public and hidden tests, for grading
  labs/dist/solution/NN_topic.ipynb      git-ignored: the answers, for the teacher

Usage: python scripts/make_labs.py [--check] [labs/NN_topic.py ...]   (default: labs/[0-9]*.py)
  --check  only compare the student notebooks with their sources; exit 1 when one is stale
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat

DIST = "dist"


def master_notebook(py: Path) -> nbformat.NotebookNode:
    notebook = jupytext.read(py)
    notebook.metadata.pop("jupytext", None)
    return notebook


def assign(py: Path, out: Path) -> Path:
    """Run `otter assign` on the lab's master notebook; returns Otter's output folder."""
    master = out / "master" / py.with_suffix(".ipynb").name
    master.parent.mkdir(parents=True)
    nbformat.write(master_notebook(py), master)
    result = out / "result"
    done = subprocess.run([sys.executable, "-m", "otter", "assign", "--no-run-tests", "--no-pdfs",
                           str(master), str(result)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"otter assign failed on {py}:\n{done.stdout}\n{done.stderr}")
    return result


def without_prompts(source: str) -> str:
    """A solution cell without the student's stub and without Otter's solution markers."""
    out, prompt = [], False
    for line in source.splitlines():
        end = line.rstrip()
        if end.endswith("# BEGIN PROMPT") or end.endswith("# END PROMPT"):
            prompt = end.endswith("# BEGIN PROMPT")
        elif not prompt and not end.endswith(("# BEGIN SOLUTION NO PROMPT", "# END SOLUTION")):
            out.append(line)
    return "\n".join(out)


def normalized(ipynb: Path, kind: str) -> str:
    """The notebook's text with numbered cell ids, no outputs, and (for the solution) no stubs or markers."""
    notebook = nbformat.read(ipynb, as_version=4)
    for i, cell in enumerate(notebook.cells):
        cell.id = f"cell-{i:03d}"
        if cell.cell_type == "code":
            if kind == "solution":
                cell.source = without_prompts(cell.source)
            cell.outputs, cell.execution_count = [], None
    notebook.metadata = {k: v for k, v in notebook.metadata.items() if k in ("kernelspec", "otter")}
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def build(py: Path, workdir: Path) -> dict:
    """Build one lab in `workdir`: {"student": notebook text, "solution": notebook text, "autograder": zip path}."""
    result = assign(py, workdir)
    name = py.with_suffix(".ipynb").name
    (autograder,) = (result / "autograder").glob("*.zip")
    return {"student": normalized(result / "student" / name, "student"),
            "solution": normalized(result / "autograder" / name, "solution"), "autograder": autograder}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    files = [Path(a) for a in argv if not a.startswith("--")] or sorted(Path("labs").glob("[0-9]*.py"))
    stale = []
    for py in files:
        labs = py.parent
        with tempfile.TemporaryDirectory(prefix="zhllm-lab-") as workdir:
            built = build(py, Path(workdir))
            autograder = built["autograder"].read_bytes()
        student = labs / "student" / py.with_suffix(".ipynb").name
        if not student.exists() or student.read_text() != built["student"]:
            stale.append(student)
        if not check:
            for kind, path in (("student", student),
                               ("solution", labs / DIST / "solution" / student.name)):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(built[kind])
            zip_path = labs / DIST / "autograder" / py.with_suffix(".zip").name
            zip_path.parent.mkdir(parents=True, exist_ok=True)
            zip_path.write_bytes(autograder)
            print(f"built {py.stem}: {student}, {zip_path}")
    if check and stale:
        print("stale student notebooks (run `make labs`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
