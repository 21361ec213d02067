"""Stage 05 — scaling laws (缩放定律): Chinchilla's approaches, Kaplan's forms, a compute planner.

Notebook: notebooks/05_scaling_laws.py. Lab: labs/05_chinchilla_fit.py (checks in `zhllm.labs.chinchilla_fit`).
Modules:
- `laws`: the fits (Approaches 2 and 3, bootstrap intervals), Kaplan, repeated data, `plan` and `build`,
  the stage for `zhllm.artifacts`; its names are re-exported here.
- `data`: Chinchilla's run points and the kit's own sweep CSV (`zhllm/data/isoflop_sweep.csv`).
- `sweep`: the kit's IsoFLOP sweep of tiny Llamas (`scripts/isoflop_sweep.py` runs it).
- `plots`: IsoFLOP curves, the frontier, loss contours, repeated data, drawn on an Axes you pass.
"""
from ..errors import MissingDependencyError  # notebook 05 catches it as `scaling.MissingDependencyError`
from . import data, laws, plots, sweep
from .data import chinchilla_csv, load_chinchilla, load_sweep, sweep_csv
from .laws import (CHINCHILLA_LAW, CHINCHILLA_TABLE3, GOPHER_FLOPS, KAPLAN, PF_DAY, R_D_STAR, SETTINGS,
                   START_GRID, Law, approach2, bootstrap_a2, bootstrap_laws, bootstrap_runs, build, compute_budget,
                   describe_plan, effective_tokens, envelope, epoch_metrics, epoch_value, fit_law, huber_objective,
                   interval, isoflop_minima, kaplan_loss, kaplan_n_opt, plan, power_law, regenerate_table3,
                   sweep_metrics, table3_law, table3_metrics, tokens_for)
