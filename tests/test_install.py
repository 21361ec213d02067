"""What a fresh machine installs: versions any package index serves, torch left to the index."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_constraints_have_no_local_version_labels():
    """`torch==2.13.0+cpu` exists only on PyTorch's own index; a plain pin matches any build of that release."""
    pins = [line.split("#")[0].strip() for line in (REPO / "constraints.txt").read_text().splitlines()]
    labelled = [p for p in pins if re.search(r"==[^=]*\+", p)]
    assert not labelled, f"local version labels in constraints.txt: {labelled}"


def test_torch_is_not_pinned_where_colab_installs():
    """requirements.txt and the package's dependencies leave torch to the platform (Colab keeps its CUDA build)."""
    assert not re.search(r"^torch\b", (REPO / "requirements.txt").read_text(), re.M)
    deps = re.search(r"dependencies = \[(.*?)\]", (REPO / "pyproject.toml").read_text(), re.S).group(1)
    assert not re.search(r'"torch\s*==', deps)


def test_makefile_passes_the_optional_torch_index_to_the_torch_install_only():
    makefile = (REPO / "Makefile").read_text()
    torch_lines = [line for line in makefile.splitlines() if "pip install" in line and "torch==" in line]
    assert len(torch_lines) == 1 and "TORCH_INDEX_URL" in torch_lines[0]
    other = [line for line in makefile.splitlines() if "pip install" in line and "torch==" not in line]
    assert all("TORCH_INDEX_URL" not in line for line in other)
