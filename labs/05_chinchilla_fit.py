# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 05 · Scaling laws (缩放定律): the Chinchilla Approach-3 fit and the compute-optimal split
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/zhllm/zhllm/blob/main/labs/student/05_chinchilla_fit.ipynb)
#
# **Stage:** [notebooks/05_scaling_laws](../../notebooks/05_scaling_laws.ipynb) ·
# **Time:** one 90-minute class · **Runs on:** a laptop CPU or Colab; the fit takes a second.
#
# Before training a model you choose its size N and its number of training tokens D for a compute
# budget C ≈ 6 N D FLOPs. Chinchilla (Hoffmann et al., 2022) fitted a law for the final loss,
# L(N, D) = E + A / N^α + B / D^β, and found that N and D should grow about equally with compute —
# far more tokens per parameter than GPT-3 used. You will write the objective of their
# "Approach 3" fit, fit it to the kit's own small IsoFLOP sweep, and derive the compute-optimal split.
#
# ## Learning goals
# By the end of this lab you can
# 1. write Chinchilla's fitting objective: a Huber loss between log L and the law's log-sum-exp
#    prediction, and say why each choice (logs, LSE, Huber, many starting points) is there;
# 2. derive and compute the compute-optimal N and D for a budget, N_opt = G (C/6)^a with
#    a = β / (α + β);
# 3. compare a law fitted on tiny models with the published one, and say what limits it.
#
# ## How this lab works
# Each exercise is a function whose body is `raise NotImplementedError`. Write the body, run the
# cell, then run the **check** cell below it: it compares your function with the kit's reference on
# fixed and generated cases and tells you, in one sentence, what to fix.
#
# | time | part |
# |---|---|
# | 10 min | setup, the sweep |
# | 30 min | exercise 1: the Approach-3 objective, then the fit |
# | 25 min | exercise 2: the compute-optimal split |
# | 25 min | open questions |

# %% [markdown]
# ## Setup
# On Colab this installs the kit; everywhere else it does nothing (install with `make install`).

# %%
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "zhllm @ git+https://github.com/zhllm/zhllm"], check=True)

# %%
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import minimize

from zhllm import labs, runtime, scaling

print(runtime.banner())

# %% tags=["parameters"]
DELTA = 1e-3          # Huber threshold, as in the paper
STARTS = 5            # best grid points to start L-BFGS from

# %% [markdown]
# ## 1 · The data: the kit's IsoFLOP sweep
# Stage 05 trained tiny Llamas at a few compute budgets, several sizes per budget, and recorded the
# final evaluation loss of each run. N is the model size in parameters, D the training tokens.

# %%
sweep = scaling.load_sweep()
for budget in np.unique(sweep["budget"]):
    sel = sweep["budget"] == budget
    runs = zip(sweep["n"][sel], sweep["loss"][sel])
    print(f"C = {budget:.1e}:", ", ".join(f"N={n:.2g} L={loss:.3f}" for n, loss in runs))
log_n, log_d, log_loss = np.log(sweep["n"]), np.log(sweep["d"]), np.log(sweep["loss"])

# %% [markdown]
# ## 2 · Exercise 1: the Approach-3 objective
# Chinchilla fits the law in log space, with parameters θ = (a, b, e, α, β) where A = eᵃ, B = eᵇ,
# E = eᵉ — so A, B, E stay positive without constraints. The predicted log loss of a run is
#
# log L̂ = LSE(a − α log N, b − β log D, e) = log(A/N^α + B/D^β + E),
#
# (LSE = log-sum-exp: `np.logaddexp` twice, or `scipy.special.logsumexp`). The residual of a run is
# r = log L̂ − log L, and the objective is the **sum** over runs of the Huber loss of r:
# r²/2 when |r| ≤ δ, δ(|r| − δ/2) beyond — quadratic near zero, linear for outliers.
#
# Write `huber_objective(theta, log_n, log_d, log_loss, delta)` returning a float.

# %%
def huber_objective(theta, log_n, log_d, log_loss, delta: float = DELTA) -> float:
    """Summed Huber loss between log L and the law's LSE prediction, for parameters theta = (a, b, e, alpha, beta)."""
    # BEGIN SOLUTION: predicted log loss by log-sum-exp, residuals, Huber, sum
    a, b, e, alpha, beta = theta
    predicted = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    r = predicted - log_loss
    huber = np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    return float(huber.sum())
    # END SOLUTION


# %%
chinchilla_theta = [math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28]
value = huber_objective(chinchilla_theta, log_n, log_d, log_loss)
print(f"objective of Chinchilla's published law on our sweep: {value:.4f}")

# %% tags=["check"]
labs.check_huber_objective(huber_objective)

# %% [markdown]
# The objective has many local minima, so the paper started L-BFGS from a grid of points. We
# evaluate your objective on the kit's grid (`scaling.START_GRID`, 4,500 points) and start from the
# best few; scipy estimates the gradient numerically.

# %%
grid = np.array(list(itertools.product(*scaling.START_GRID.values())), dtype=float)
values = np.array([huber_objective(t, log_n, log_d, log_loss) for t in grid])
best = None
for start in grid[np.argsort(values)[:STARTS]]:
    result = minimize(huber_objective, start, args=(log_n, log_d, log_loss), method="L-BFGS-B")
    if best is None or result.fun < best.fun:
        best = result
a, b, e, alpha, beta = best.x
law = scaling.Law(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta)
kit_law, _ = scaling.fit_law(sweep["n"], sweep["d"], sweep["loss"], top_k=STARTS)
print("your fit:", law)
print("kit's   :", kit_law)
print(f"a = β/(α+β): yours {law.a:.3f}, kit's {kit_law.a:.3f}, Chinchilla's {scaling.CHINCHILLA_LAW.a:.3f}")

# %%
plt.figure(figsize=(6, 3.5))
for budget in np.unique(sweep["budget"]):
    sel = sweep["budget"] == budget
    line = plt.scatter(sweep["n"][sel], sweep["loss"][sel], label=f"C = {budget:.0e}")
    ns = np.geomspace(sweep["n"][sel].min() / 1.5, sweep["n"][sel].max() * 1.5, 50)
    plt.plot(ns, law.loss(ns, budget / (6 * ns)), color=line.get_facecolor()[0])
plt.xscale("log")
plt.xlabel("parameters N")
plt.ylabel("eval loss")
plt.title("IsoFLOP runs and your fitted law (D = C / 6N)")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3 · Exercise 2: the compute-optimal split
# Minimising L(N, D) subject to 6 N D = C gives a closed form:
#
# N_opt = G (C/6)^a, D_opt = (C/6)^b / G, with a = β/(α+β), b = α/(α+β) = 1 − a,
# G = (αA / (βB))^(1/(α+β)).
#
# Write `compute_optimal(law, flops)` returning `(n_opt, d_opt)`; `law` has fields `E, A, B, alpha,
# beta` (use them, not `law.optimal`, which is the reference). Check: 6 · N_opt · D_opt = C.

# %%
def compute_optimal(law, flops: float) -> tuple:
    """Compute-optimal (parameters, tokens) for a budget of `flops` under the law."""
    # BEGIN SOLUTION: a = beta / (alpha + beta), G from the closed form, then N = G (C/6)^a and D = C / (6 N)
    a = law.beta / (law.alpha + law.beta)
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    n_opt = G * (flops / 6) ** a
    return n_opt, flops / (6 * n_opt)
    # END SOLUTION


# %%
n_opt, d_opt = compute_optimal(scaling.CHINCHILLA_LAW, 5.76e23)  # Gopher's training budget
print(f"Chinchilla's Approach-3 law at Gopher's budget: N = {n_opt / 1e9:.0f}B parameters, "
      f"D = {d_opt / 1e12:.1f}T tokens, {d_opt / n_opt:.0f} tokens per parameter")
print("Gopher itself: 280B parameters on 0.3T tokens; Chinchilla (from Approaches 1 and 2): 70B on 1.4T")

# %% tags=["check"]
labs.check_compute_optimal(compute_optimal)

# %% [markdown]
# Does your fitted law pick the right size at the sweep's own budgets? Compare its N_opt with the
# size of the best run at each budget (the law is only trustworthy near the data it was fitted on).
# For real budgets we use the published law: note how tokens per parameter grow with compute.

# %%
for budget in np.unique(sweep["budget"]):
    sel = sweep["budget"] == budget
    best_run = sweep["n"][sel][np.argmin(sweep["loss"][sel])]
    n_law, d_law = compute_optimal(law, budget)
    print(f"C = {budget:.1e}: best run N = {best_run:.3g}, your law's N_opt = {n_law:.3g} (D_opt = {d_law:.3g} tokens)")
for flops in (1e21, 1e23, 1e25):
    n_paper, d_paper = compute_optimal(scaling.CHINCHILLA_LAW, flops)
    print(f"C = {flops:.0e}: Chinchilla's law N = {n_paper:.3g}, D = {d_paper:.3g}, D/N = {d_paper / n_paper:.0f}")

# %% [markdown]
# ## Open questions
# 1. Compare the exponent a from our sweep with Chinchilla's ≈ 0.45. List what differs between the
#    two experiments (range of budgets, model sizes, whether N counts embeddings, how many runs, one
#    evaluation point per run). How would you find out whether the difference is real or within the
#    uncertainty of a fit on so few runs? (`scaling.bootstrap_laws` resamples whole runs.)
# 2. "Compute-optimal" minimises the loss for a *training* budget. If the model will then serve
#    trillions of tokens, each costing about 2N FLOPs, would you pick a smaller or a larger N than
#    N_opt for the same training budget? How did LLaMA and later open models choose, and what do
#    they give up?
