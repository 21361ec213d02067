"""Data for stage 05: Chinchilla's run points (Epoch AI's extraction) and the kit's own IsoFLOP sweep CSV.

The Chinchilla points are not shipped with the kit (they are another project's extraction): they are
read from a path you give, or from `../shared/data/chinchilla/` beside a source checkout.
"""
import csv
import math
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import DataError, MissingDependencyError, StageError


def chinchilla_csv(path: str | Path | None = None) -> Path:
    """Epoch AI's points extracted from Chinchilla's Figure 4: a given path, else ../shared/data beside the repo."""
    if path is None:
        path = Path(__file__).resolve().parents[4] / "shared" / "data" / "chinchilla" / "svg_extracted_data.csv"
    path = Path(path)
    if not path.exists():
        raise MissingDependencyError(
            f"Chinchilla points not found at {path}; download svg_extracted_data.csv from "
            "github.com/epoch-research/analyzing-chinchilla (data/) and pass its path")
    return path


def _read_csv(path: Path, columns: dict) -> dict:
    """Numeric columns of a CSV as arrays, with an error naming the row and field of a bad value."""
    out = {key: [] for key in columns}
    with Path(path).open(newline="") as f:
        for row_no, row in enumerate(csv.DictReader(f), start=2):
            for key, field in columns.items():
                try:
                    value = float(row[field])
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"expected a number, got {row.get(field)!r}", source=str(path),
                                    row=row_no, field=field) from None
                if not math.isfinite(value) or value <= 0:
                    raise DataError(f"expected a positive number, got {value}", source=str(path),
                                    row=row_no, field=field)
                out[key].append(value)
    return {k: np.array(v) for k, v in out.items()}


def load_chinchilla(path=None, drop_highest: int = 5) -> dict:
    """N, D = FLOP / 6N and loss of Chinchilla's runs, minus the `drop_highest` worst-loss points.

    Why drop: Epoch AI's refit leaves out the 5 highest losses, outliers of the smallest runs.
    """
    data = _read_csv(chinchilla_csv(path), {"n": "Model Size", "flops": "Training FLOP", "loss": "loss"})
    keep = np.sort(np.argsort(data["loss"])[: len(data["loss"]) - drop_highest])
    data = {k: v[keep] for k, v in data.items()}
    print(f"Chinchilla points: kept {len(keep)}, dropped the {drop_highest} highest-loss points")
    return data | {"d": data["flops"] / (6 * data["n"])}


def sweep_csv() -> Path:
    """The committed IsoFLOP sweep shipped with the package (made by scripts/isoflop_sweep.py)."""
    return Path(str(resources.files("zhllm") / "data" / "isoflop_sweep.csv"))


def load_sweep(path=None) -> dict:
    """The sweep's runs as arrays: budget, n (non-embedding), tokens d, flops, eval loss, and run ids."""
    path = Path(path) if path else sweep_csv()
    if not path.exists():
        raise StageError(f"no sweep CSV at {path}; run `python scripts/isoflop_sweep.py --out {path}`")
    data = _read_csv(path, {"budget": "budget", "n": "n_params", "d": "tokens", "flops": "flops",
                            "loss": "eval_loss"})
    with path.open(newline="") as f:
        data["run_id"] = np.array([r["run_id"] for r in csv.DictReader(f)])
    return data
