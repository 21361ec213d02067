"""Each .ipynb carries its .py source's cells and the outputs of a tiny-profile run of exactly that source."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import sync_notebooks  # noqa: E402
from sync_notebooks import generated_problems, problems, source_sha256  # noqa: E402

SOURCES = sorted((REPO / "notebooks").glob("*.py"))


def test_there_are_notebooks():
    assert SOURCES


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_ipynb_is_an_executed_copy_of_its_source(py):
    assert problems(py) == [], "run `make notebooks` (executes every notebook in the tiny profile)"
    code = [c for c in json.loads(py.with_suffix(".ipynb").read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "every code cell ran"
    assert any(c["outputs"] for c in code), "a reader on GitHub sees the results"


def test_an_edited_source_is_caught(tmp_path):
    """The check can fail: a source edited after its notebook ran no longer matches the stored hash."""
    py = SOURCES[0]
    copy = tmp_path / py.name
    copy.write_text(py.read_text() + "\n# %%\nprint('edited')\n")
    copy.with_suffix(".ipynb").write_text(py.with_suffix(".ipynb").read_text())
    assert source_sha256(copy) != source_sha256(py)
    found = problems(copy)
    assert f"{py.stem}.ipynb's cells differ from {py.name}" in found
    assert f"{py.stem}.ipynb's outputs do not come from the current {py.name}" in found


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_notebook_anatomy(py):
    text = py.read_text()
    assert "colab-badge.svg" in text, "a Colab badge"
    assert 'if "google.colab" in sys.modules' in text, "an install cell that acts only on Colab"
    assert generated_problems(py) == [], "install cell and badge from pyproject.toml: run sync_notebooks.py --generate"
    assert "runtime.banner()" in text, "the version and device banner"
    assert '# %% tags=["parameters"]' in text, "a parameters cell"
    assert "## Try it" in text, "exercises at the end"
    assert "**In this notebook you will learn**" in text and "**Before this:**" in text and "**Time:**" in text, \
        "objectives, prerequisites and time at the top"
    assert "## Takeaways" in text and "**Lab.** `labs/student/" in text, "takeaways and the lab at the end"
    lab = text.split("**Lab.** `")[1].split("`")[0]
    assert (REPO / lab).exists(), f"the lab {lab} exists"
    assert "torch==" not in text, "never pin torch in what Colab installs"


def test_install_cell_keeps_colabs_torch_and_pins_everything_else(tmp_path, monkeypatch):
    """Run the install cell's constraint filter on the real constraints.txt, as Colab would after the clone."""
    cell = sync_notebooks.install_cell()
    code = cell[cell.index("    with open("):cell.index("    subprocess.run([sys.executable")]
    (tmp_path / "zhllm").mkdir()
    (tmp_path / "zhllm" / "constraints.txt").write_text((REPO / "constraints.txt").read_text())
    monkeypatch.chdir(tmp_path)
    exec("if True:\n" + code)
    kept = (tmp_path / "colab-constraints.txt").read_text().splitlines()
    pinned = [line.split("==")[0] for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line]
    assert "torch" in pinned and "torch" not in [line.split("==")[0] for line in kept]
    assert len([line for line in kept if "==" in line]) == len(pinned) - 1, "every other tested version is pinned"


def test_a_new_repository_address_is_caught(monkeypatch):
    monkeypatch.setattr(sync_notebooks, "repository", lambda: "https://github.com/someone/else")
    assert generated_problems(SOURCES[0]) == [f"{SOURCES[0].name}'s install cell is not the generated one",
                                              f"{SOURCES[0].name}'s Colab badge is not the generated one"]
