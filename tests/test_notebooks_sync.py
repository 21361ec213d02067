"""Each .ipynb carries its .py source's cells and the outputs of a tiny-profile run of exactly that source."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from sync_notebooks import problems, source_sha256  # noqa: E402

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
    assert len(problems(copy)) == 2


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_notebook_anatomy(py):
    text = py.read_text()
    assert "colab-badge.svg" in text, "a Colab badge"
    assert 'if "google.colab" in sys.modules' in text, "an install cell that acts only on Colab"
    assert "runtime.banner()" in text, "the version and device banner"
    assert '# %% tags=["parameters"]' in text, "a parameters cell"
    assert "## Try it" in text, "exercises at the end"
    assert "**In this notebook you will learn**" in text and "**Before this:**" in text and "**Time:**" in text, \
        "objectives, prerequisites and time at the top"
    assert "## Takeaways" in text and "**Lab.** `labs/student/" in text, "takeaways and the lab at the end"
    lab = text.split("**Lab.** `")[1].split("`")[0]
    assert (REPO / lab).exists(), f"the lab {lab} exists"
    assert "torch==" not in text, "never pin torch in what Colab installs"
