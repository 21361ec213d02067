"""Scaling laws (缩放定律): Chinchilla's three approaches, Kaplan's forms, repeated data, a compute planner.

Conventions: C = 6 N D training FLOPs; losses in nats per token. N counts all parameters, embeddings
included, as Chinchilla does (and so does the kit's sweep, see `zhllm.scaling.sweep`); Kaplan's
forms use non-embedding N.
Papers: Hoffmann et al. 2022 (Chinchilla), Kaplan et al. 2020, Muennighoff et al. 2023,
Besiroglu et al. 2024 (Epoch AI's refit of Chinchilla Approach 3).
"""
import contextlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from ..errors import DataError, MissingDependencyError
from .data import chinchilla_csv, load_chinchilla, load_sweep, sweep_csv  # noqa: F401 (re-exported)

# ---- the parametric law (Approach 3) ----------------------------------------------------------


@dataclass(frozen=True)
class Law:
    """L(N, D) = E + A / N^alpha + B / D^beta: irreducible loss plus a model-size and a data term."""
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n, d):
        return self.E + self.A / np.power(n, self.alpha) + self.B / np.power(d, self.beta)

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """Constant of the closed-form allocation, G = (alpha A / (beta B))^(1 / (alpha + beta))."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))

    def optimal(self, flops):
        """Compute-optimal (N, D) for C FLOPs: N = G (C/6)^a, D = (C/6)^b / G with b = 1 - a."""
        c6 = np.asarray(flops, dtype=float) / 6
        return self.G * c6 ** self.a, c6 ** (1 - self.a) / self.G


# Hoffmann et al. 2022, eq. (10): their own Approach 3 fit (the planner's default law).
CHINCHILLA_LAW = Law(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)

# Grid of starting points (in log-space parameters a = log A, b = log B, e = log E), as the paper did.
START_GRID = {"a": np.arange(0, 30, 5), "b": np.arange(0, 30, 5), "e": np.arange(-1, 1.5, 0.5),
              "alpha": np.arange(0, 2.5, 0.5), "beta": np.arange(0, 2.5, 0.5)}


def huber_objective(theta, log_n, log_d, log_loss, delta: float = 1e-3):
    """Summed Huber loss between log L and LSE(a - alpha log N, b - beta log D, e), with its gradient.

    Why log-sum-exp: it is log(A/N^alpha + B/D^beta + E) with A, B, E kept positive for free, and
    fitting log loss makes every run count equally whatever its loss level.
    """
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    w /= total  # softmax weights = d LSE / d term
    r = top + np.log(total) - log_loss
    small = np.abs(r) <= delta
    value = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)).sum()
    dr = np.where(small, r, delta * np.sign(r))
    grad = np.array([(dr * w[0]).sum(), (dr * w[1]).sum(), (dr * w[2]).sum(),
                     -(dr * w[0] * log_n).sum(), -(dr * w[1] * log_d).sum()])
    return value, grad


def _one_blas_thread():
    """Run BLAS single-threaded: L-BFGS-B's BLAS calls act on 5-vectors, where extra threads only
    add synchronisation (13x slower on a busy 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up; the fit is the same without it
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def fit_law(n, d, loss, delta: float = 1e-3, top_k: int | None = None) -> tuple[Law, float]:
    """Chinchilla Approach 3: L-BFGS from every point of START_GRID (or its `top_k` best); best fit wins.

    Returns the law and its objective. `top_k` starts only from the grid points with the lowest
    objective, which finds the same minimum far faster (used inside bootstraps).
    """
    logs = (np.log(n), np.log(d), np.log(loss))
    starts = np.array(list(itertools.product(*START_GRID.values())), dtype=float)
    if top_k is not None:
        values = [huber_objective(s, *logs, delta)[0] for s in starts]
        starts = starts[np.argsort(values)[:top_k]]
    best = None
    with _one_blas_thread():
        for start in starts:
            res = minimize(huber_objective, start, args=(*logs, delta), jac=True, method="L-BFGS-B")
            if best is None or res.fun < best.fun:
                best = res
    a, b, e, alpha, beta = (float(v) for v in best.x)
    return Law(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta), float(best.fun)


def bootstrap_runs(groups, n_boot: int, seed: int = 0, strata=None):
    """Index arrays that resample whole runs with replacement (within each stratum when given).

    Why whole runs: the rows of one run (e.g. points of one training curve) are not independent,
    so resampling rows would understate the uncertainty.
    """
    groups = np.asarray(groups)
    strata = np.zeros(len(groups), dtype=int) if strata is None else np.asarray(strata)
    rng = np.random.default_rng(seed)
    members = {}
    for i, (s, g) in enumerate(zip(strata, groups)):
        members.setdefault(s, {}).setdefault(g, []).append(i)
    for _ in range(n_boot):
        idx = []
        for runs in members.values():
            keys = list(runs)
            for k in rng.integers(0, len(keys), len(keys)):
                idx.extend(runs[keys[k]])
        yield np.array(idx)


# ---- Approaches 1 and 2: power laws of the optimum ---------------------------------------------


def power_law(flops, values) -> tuple[float, float]:
    """Least-squares fit of log(value) = log(k) + x log(C/6); returns (k, x), e.g. (G, a) for N_opt."""
    x, logk = np.polyfit(np.log(np.asarray(flops, float) / 6), np.log(values), 1)
    return math.exp(logk), float(x)


def isoflop_minima(n, loss, budget, fallback: bool = False) -> dict:
    """Approach 2: per budget, a parabola of loss in log N; its vertex is that budget's N_opt.

    Returns arrays `budget`, `n_opt`, `loss_min`, the fitted `coef` (a, b, c) and `fell_back` per
    budget. A vertex only counts when the parabola opens upwards and the vertex lies among the sizes
    tried; otherwise this raises, or with `fallback` (used by the bootstrap, where a resample may
    hold only 2 sizes or an unlucky 3) takes the best run of that budget and says so in `fell_back`.
    """
    n, loss, budget = (np.asarray(v, float) for v in (n, loss, budget))
    out = {"budget": [], "n_opt": [], "loss_min": [], "coef": [], "fell_back": []}
    for c in np.unique(budget):
        x, y = np.log(n[budget == c]), loss[budget == c]
        coef = np.polyfit(x, y, 2) if len(np.unique(x)) >= 3 else np.zeros(3)
        vertex = -coef[1] / (2 * coef[0]) if coef[0] > 0 else np.nan
        bad = not x.min() <= vertex <= x.max()  # also true for nan
        if bad and not fallback:
            raise DataError(f"budget {c:.3g}: the loss has no minimum among the sizes tried (a parabola "
                            "needs 3+ sizes and must open upwards); add sizes on both sides of the best one",
                            field="eval_loss")
        if bad:
            vertex = x[np.argmin(y)]
        out["budget"].append(c), out["n_opt"].append(math.exp(vertex)), out["coef"].append(coef)
        out["loss_min"].append(y.min() if bad else np.polyval(coef, vertex)), out["fell_back"].append(bad)
    return {k: np.array(v) for k, v in out.items()}


def approach2(n, loss, budget, fallback: bool = False) -> dict:
    """Approach 2 end to end: IsoFLOP minima, then N_opt = G (C/6)^a and D_opt = C / (6 N_opt)."""
    m = isoflop_minima(n, loss, budget, fallback)
    G, a = power_law(m["budget"], m["n_opt"])
    return m | {"G": G, "a": a, "d_opt": m["budget"] / (6 * m["n_opt"])}


def envelope(flops, n, loss, bins: int = 12) -> dict:
    """Approach 1: the lowest loss reached in each log-spaced FLOP bin, and the model size that reached it.

    Chinchilla took the envelope over whole training curves (4 schedule lengths per size); with one
    final point per run it is coarser, but the recipe is the same.
    """
    flops, n, loss = (np.asarray(v, float) for v in (flops, n, loss))
    edges = np.logspace(np.log10(flops.min()), np.log10(flops.max()) * (1 + 1e-12), bins + 1)
    best = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = np.flatnonzero((flops >= lo) & (flops < hi))
        if len(inside):
            best.append(inside[np.argmin(loss[inside])])
    best = np.array(best)
    G, a = power_law(flops[best], n[best])
    return {"flops": flops[best], "n_opt": n[best], "loss": loss[best], "G": G, "a": a}


# ---- Chinchilla's Table 3 (Approach 1) -------------------------------------------------------

# Hoffmann et al. 2022, Table 3: parameters, FLOPs, tokens, as printed.
CHINCHILLA_TABLE3 = ((400e6, 1.92e19, 8.0e9), (1e9, 1.21e20, 20.2e9), (10e9, 1.23e22, 205.1e9),
                     (67e9, 5.76e23, 1.5e12), (175e9, 3.85e24, 3.7e12), (280e9, 9.90e24, 5.9e12),
                     (520e9, 3.43e25, 11.0e12), (1e12, 1.27e26, 21.2e12), (10e12, 1.30e28, 216.2e12))
GOPHER_FLOPS = 5.76e23  # the 67B row is Gopher's compute budget, placed in the table by hand


def tokens_for(n, G: float, a: float):
    """Invert N_opt = G (C/6)^a: the tokens D = (C/6) / N at which size N is compute-optimal."""
    c6 = (np.asarray(n, float) / G) ** (1 / a)
    return c6 / n


def table3_law(rows=CHINCHILLA_TABLE3, skip=(67e9,)) -> tuple[float, float]:
    """The Approach 1 law behind Table 3, (G, a), fitted to its (parameters, FLOPs) columns.

    Why fit: the paper prints the law only as a = 0.50; two digits are too coarse to regenerate
    tokens to 3% over 4 orders of magnitude, but the unrounded law is recoverable from the table.
    """
    n, c = np.array([(r[0], r[1]) for r in rows if r[0] not in skip]).T
    return power_law(c, n)


def regenerate_table3(rows=CHINCHILLA_TABLE3, skip=(67e9,)) -> list[dict]:
    """Every row's tokens from the law, fitted with that row left out (leave-one-out), vs. the print.

    Leaving the row out makes this a real prediction, not a replay of the numbers that were fitted.
    """
    out = []
    for i, (n, c, d) in enumerate(rows):
        others = [r for j, r in enumerate(rows) if j != i]
        G, a = table3_law(others, skip)
        pred = float(tokens_for(n, G, a))
        out.append({"params": n, "flops": c, "tokens": d, "tokens_law": pred, "flops_law": 6 * n * pred,
                    "rel_err": pred / d - 1, "six_n_d": 6 * n * d, "skipped": n in skip})
    return out


# ---- Kaplan et al. 2020 -----------------------------------------------------------------------

PF_DAY = 1e15 * 86400  # FLOPs in a petaflop/s-day, Kaplan's compute unit
# Kaplan et al. Table 2, the joint fit of L(N, D) (N without embeddings, D in tokens), and Fig. 14's
# compute-efficient size N = 1.3e9 (C / PF-day)^0.73.
KAPLAN = {"alpha_n": 0.076, "n_c": 6.4e13, "alpha_d": 0.103, "d_c": 1.8e13, "n_opt_k": 1.3e9, "n_opt_x": 0.73}


def kaplan_loss(n, d):
    """Kaplan eq. (1.5): L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D, with no irreducible term."""
    k = KAPLAN
    n, d = np.asarray(n, float), np.asarray(d, float)
    return ((k["n_c"] / n) ** (k["alpha_n"] / k["alpha_d"]) + k["d_c"] / d) ** k["alpha_d"]


def kaplan_n_opt(flops):
    """Kaplan's compute-efficient size, N = 1.3e9 (C / PF-day)^0.73: mostly bigger models, few tokens."""
    return KAPLAN["n_opt_k"] * (np.asarray(flops, float) / PF_DAY) ** KAPLAN["n_opt_x"]


# ---- Muennighoff et al. 2023: repeated data ---------------------------------------------------

R_D_STAR = 15.4  # repetitions after which extra epochs are worth 1/e of fresh data


def effective_tokens(tokens, unique, r_star: float = R_D_STAR):
    """D' = U + U R* (1 - exp(-R/R*)), R = tokens/U - 1 repeats: what repeated tokens are worth as fresh ones."""
    tokens, unique = np.asarray(tokens, float), np.asarray(unique, float)
    repeats = np.maximum(tokens / unique - 1, 0)
    return np.minimum(tokens, unique) + unique * r_star * (1 - np.exp(-repeats / r_star))


def epoch_value(epochs, r_star: float = R_D_STAR):
    """Worth of `epochs` passes over the data relative to the same number of fresh tokens (1.0 = as good)."""
    epochs = np.asarray(epochs, float)
    return effective_tokens(epochs, 1.0, r_star) / epochs


# ---- planner ----------------------------------------------------------------------------------


def compute_budget(gpu_hours: float, peak_flops: float, mfu: float = 0.4) -> float:
    """Training FLOPs you can afford: GPU-hours x 3600 s x peak FLOP/s x model FLOPs utilisation."""
    return gpu_hours * 3600 * peak_flops * mfu


def plan(flops: float, unique_tokens: float | None = None, law: Law = CHINCHILLA_LAW) -> dict:
    """The compute-optimal N and D for a budget; with a unique-token limit, re-optimised under repetition.

    With too little unique text the closed form would ask for many epochs; instead we minimise
    L(N, D'(C / 6N)) over N, with D' Muennighoff's effective tokens, which favours a bigger model.
    """
    n, d = (float(v) for v in law.optimal(flops))
    if unique_tokens is not None and d > unique_tokens:
        def loss_at(log_n):
            return law.loss(math.exp(log_n), effective_tokens(flops / (6 * math.exp(log_n)), unique_tokens))
        res = minimize_scalar(loss_at, bounds=(math.log(n) - 5, math.log(n) + 5), method="bounded")
        n = math.exp(res.x)
        d = flops / (6 * n)
    d_eff = float(effective_tokens(d, unique_tokens)) if unique_tokens else d
    return {"flops": flops, "n_opt": n, "d_opt": d, "tokens_per_param": d / n,
            "epochs": d / unique_tokens if unique_tokens else 1.0, "effective_tokens": d_eff,
            "loss": float(law.loss(n, d_eff))}


def describe_plan(p: dict) -> str:
    """The plan as the lines a person reads before booking GPUs."""
    return "\n".join([f"compute budget      {p['flops']:.3g} FLOPs",
                      f"model size N_opt    {p['n_opt'] / 1e9:.3g} B parameters",
                      f"training tokens     {p['d_opt'] / 1e9:.3g} B tokens",
                      f"tokens / parameter  {p['tokens_per_param']:.1f}",
                      f"epochs              {p['epochs']:.2f}",
                      f"predicted loss      {p['loss']:.3f} nats/token"])


# ---- the kit's stage 05: fits, metrics, build -------------------------------------------------

SETTINGS = {  # bootstrap resamples per profile: enough for a 95% interval, cheap on CPU
    "tiny": {"n_boot": 1000, "n_boot_law": 40},
    "colab": {"n_boot": 2000, "n_boot_law": 200},
}


def bootstrap_a2(data: dict, n_boot: int, seed: int = 0) -> dict:
    """Approach 2's exponent a on resampled sweeps (runs drawn with replacement within each budget).

    A resampled budget whose parabola has no minimum among its sizes uses its best run instead;
    `fallback_share` says how often that happened, so a shaky interval is visible as such.
    """
    values, fell_back = [], 0
    for idx in bootstrap_runs(data["run_id"], n_boot, seed, strata=data["budget"]):
        fit = approach2(data["n"][idx], data["loss"][idx], data["budget"][idx], fallback=True)
        values.append(fit["a"])
        fell_back += int(fit["fell_back"].sum())
    return {"a": np.array(values), "fallback_share": fell_back / (n_boot * len(np.unique(data["budget"])))}


def bootstrap_laws(data: dict, n_boot: int, seed: int = 0, top_k: int = 5) -> list[Law]:
    """Approach 3 refitted on resamples of whole runs; starts from the `top_k` best grid points each time."""
    ids = data.get("run_id", np.arange(len(data["n"])))
    return [fit_law(data["n"][i], data["d"][i], data["loss"][i], top_k=top_k)[0]
            for i in bootstrap_runs(ids, n_boot, seed)]


def interval(values, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval."""
    tail = 50 * (1 - level)
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def table3_metrics() -> dict:
    """Table 3 regenerated: worst leave-one-out error (67B aside), the 67B row's, and the law itself."""
    rows = regenerate_table3()
    G, a = table3_law()
    sixty_seven = next(r for r in rows if r["skipped"])
    return {"table3_max_rel_err": max(abs(r["rel_err"]) for r in rows if not r["skipped"]),
            "table3_67b_rel_err": abs(sixty_seven["rel_err"]), "table3_a": a,
            "table3_gopher_n_opt": G * (GOPHER_FLOPS / 6) ** a}


def epoch_metrics(path=None) -> dict:
    """Approach 3 on Chinchilla's points (Epoch AI's refit); empty when the CSV is not available."""
    try:
        data = load_chinchilla(path)
    except MissingDependencyError as exc:
        print(f"skipping the Epoch AI refit: {exc}")
        return {}
    law, _ = fit_law(data["n"], data["d"], data["loss"])
    return {"epoch_E": law.E, "epoch_A": law.A, "epoch_B": law.B, "epoch_alpha": law.alpha,
            "epoch_beta": law.beta, "epoch_a": law.a}


def sweep_metrics(data: dict, n_boot: int, n_boot_law: int, seed: int = 0) -> dict:
    """Approach 2 (with its bootstrap CI, the stage's headline a) and Approach 3 on the kit's sweep."""
    fit = approach2(data["n"], data["loss"], data["budget"])
    boot = bootstrap_a2(data, n_boot, seed)
    low, high = interval(boot["a"])
    law, _ = fit_law(data["n"], data["d"], data["loss"])
    low3, high3 = interval([b.a for b in bootstrap_laws(data, n_boot_law, seed)])
    return {"sweep_a": fit["a"], "sweep_a_ci_low": low, "sweep_a_ci_high": high,
            "sweep_boot_fallback_share": boot["fallback_share"], "sweep_runs": len(data["n"]),
            "sweep_budgets": len(np.unique(data["budget"])), "sweep_a3": law.a, "sweep_a3_ci_low": low3,
            "sweep_a3_ci_high": high3, "sweep_E": law.E, "sweep_alpha": law.alpha, "sweep_beta": law.beta}


def build(out_dir: Path, profile: str | None = None) -> dict:
    """Stage 05: reproduce Table 3 and Epoch's refit, fit the committed sweep, write metrics.json."""
    import time

    from ..artifacts import write_metrics
    from ..profiles import pick

    start = time.time()
    settings = pick(SETTINGS, profile)
    sweep = sweep_metrics(load_sweep(), settings["n_boot"], settings["n_boot_law"])
    metrics = table3_metrics() | epoch_metrics() | sweep
    metrics["seconds"] = time.time() - start
    write_metrics(out_dir, metrics)
    return metrics
