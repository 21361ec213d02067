"""Each .ipynb must be exactly the jupytext rendering of its .py source: no outputs, no stale cells."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from sync_notebooks import rendered  # noqa: E402

SOURCES = sorted((REPO / "notebooks").glob("*.py"))


def test_there_are_notebooks():
    assert SOURCES


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_ipynb_matches_its_source(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `make notebooks`"
    assert ipynb.read_text() == rendered(py), f"{ipynb.name} is stale: run `make notebooks`"
    cells = json.loads(ipynb.read_text())["cells"]
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.name)
def test_notebook_anatomy(py):
    text = py.read_text()
    assert "colab-badge.svg" in text, "a Colab badge"
    assert 'if "google.colab" in sys.modules' in text, "an install cell that acts only on Colab"
    assert "runtime.banner()" in text, "the version and device banner"
    assert '# %% tags=["parameters"]' in text, "a parameters cell"
    assert "## Try it" in text, "exercises at the end"
    assert "torch==" not in text, "never pin torch in what Colab installs"
