"""Grade a folder of submitted lab notebooks offline, on a CPU, and write the scores as a CSV.

Each notebook is run in a fresh kernel and graded by Otter (`otter.api.grade_submission`, no Docker)
against its lab's autograder zip, public and hidden tests together. The lab comes from the notebook's
own metadata (the assignment name Otter wrote into the student notebook), so one folder may hold
submissions of several labs. A notebook that cannot be graded gets a row with the reason, not a crash.

Usage: python scripts/grade_labs.py SUBMISSIONS [--autograders labs/dist/autograder] [--out scores.csv]
CSV columns: student (the notebook's path inside SUBMISSIONS, without .ipynb), lab, question, score,
possible; one row per student and question, then one `total` row per student.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

FIELDS = ["student", "lab", "question", "score", "possible", "note"]


def lab_of(notebook: Path) -> str:
    """The lab a submitted notebook belongs to, from the metadata Otter Assign wrote into it."""
    try:
        return json.loads(notebook.read_text())["metadata"]["otter"]["assignment_name"]
    except (ValueError, KeyError, TypeError):
        return ""


def grade_one(notebook: Path, autograder: Path) -> list[dict]:
    """Rows (question, score, possible) for one notebook; public and hidden tests both count."""
    from otter.api import grade_submission

    results = grade_submission(str(notebook), str(autograder), quiet=True)
    rows = []
    for name in sorted(results.test_files):
        test = results.get_result(name)
        rows.append({"question": name, "score": test.score, "possible": test.possible, "note": ""})
    return rows


def grade_folder(submissions: Path, autograders: Path) -> list[dict]:
    rows = []
    for notebook in sorted(submissions.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        student = str(notebook.relative_to(submissions).with_suffix(""))
        lab = lab_of(notebook)
        autograder = autograders / f"{lab}.zip"
        if not lab or not autograder.exists():
            note = "not a lab notebook" if not lab else f"no autograder {autograder} (run `make labs`)"
            rows.append({"student": student, "lab": lab, "question": "total", "score": 0, "possible": 0,
                         "note": note})
            print(f"{student}: {note}", file=sys.stderr)
            continue
        graded = grade_one(notebook, autograder)
        total = {"question": "total", "score": sum(r["score"] for r in graded),
                 "possible": sum(r["possible"] for r in graded), "note": ""}
        rows += [{"student": student, "lab": lab, **r} for r in graded + [total]]
        print(f"{student} ({lab}): {total['score']:g} / {total['possible']:g}")
    return rows


def write_csv(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "score": f"{row['score']:g}", "possible": f"{row['possible']:g}"})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, help="folder of submitted .ipynb files (searched recursively)")
    parser.add_argument("--autograders", type=Path, default=Path("labs/dist/autograder"),
                        help="folder of the autograder zips `make labs` builds")
    parser.add_argument("--out", type=Path, default=None, help="the CSV to write (default SUBMISSIONS/scores.csv)")
    args = parser.parse_args(argv)
    rows = grade_folder(args.submissions, args.autograders)
    out = args.out or args.submissions / "scores.csv"
    write_csv(rows, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
