"""Shared test set-up: offline, tiny profile, one runs/ directory per test session, fixed threads."""
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ZHLLM_PROFILE", "tiny")
os.environ.setdefault("MPLBACKEND", "Agg")
# `make test` sets ZHLLM_RUNS so notebooks (run first) and tests share the stages they build;
# a bare `pytest` gets a fresh directory of its own instead of touching ./runs.
os.environ.setdefault("ZHLLM_RUNS", tempfile.mkdtemp(prefix="zhllm-runs-"))

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data beside the repo (C-Eval, CMMLU, Chinchilla); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (it is not part of the project)")
    return SHARED_DATA
