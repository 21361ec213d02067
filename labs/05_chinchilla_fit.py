# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 05_chinchilla_fit
# init_cell: false
# check_all_cell: false
# export_cell: false
# run_tests: false
# solutions_pdf: false
# generate: true
# tests:
#   files: false
#   ok_format: false

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
# cell, then run the **check** cell below it: it runs your function on fixed and generated cases
# and tells you, in one sentence, what to fix. When you hand the notebook in, the autograder runs
# each check again (1 point) and hidden tests on new cases (2 points), with the kit's own version
# of the exercise switched off: write the body yourself.
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

# %% [raw]
# # BEGIN QUESTION
# name: huber_objective
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def huber_objective(theta, log_n, log_d, log_loss, delta: float = DELTA) -> float:
    """Summed Huber loss between log L and the law's LSE prediction, for parameters theta = (a, b, e, alpha, beta)."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: predicted log loss by log-sum-exp, residuals, Huber, sum")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    a, b, e, alpha, beta = theta
    predicted = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    r = predicted - log_loss
    huber = np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    return float(huber.sum())
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
chinchilla_theta = [math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28]
value = huber_objective(chinchilla_theta, log_n, log_d, log_loss)
print(f"objective of Chinchilla's published law on our sweep: {value:.4f}")

# %% tags=["check"]
labs.check_huber_objective(huber_objective)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_huber_objective_public(labs, huber_objective):
    labs.check_huber_objective(huber_objective)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_huber_objective_hidden(huber_objective):
    import numpy as np

    from zhllm import labs, scaling

    rng = np.random.default_rng(1)
    with labs.kit_switched_off((scaling, "huber_objective")):
        for _ in range(40):
            k = int(rng.integers(3, 30))
            log_n, log_d, log_loss = rng.uniform(15, 25, k), rng.uniform(18, 28, k), rng.uniform(0.5, 1.5, k)
            theta = np.array([rng.uniform(0, 15), rng.uniform(0, 15), rng.uniform(-1, 1.5), rng.uniform(0.1, 1.5),
                              rng.uniform(0.1, 1.5)])
            delta = float(rng.choice([1e-3, 1e-2, 0.3]))
            a, b, e, alpha, beta = theta
            r = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e) - log_loss
            want = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)).sum()
            got = float(huber_objective(theta.copy(), log_n.copy(), log_d.copy(), log_loss.copy(), delta))
            assert np.isclose(got, want, rtol=1e-6, atol=1e-12), f"wrong for theta={theta.round(3).tolist()}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

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

# %% [raw]
# # BEGIN QUESTION
# name: compute_optimal
# check_cell: false

# %% [raw]
# # BEGIN SOLUTION

# %%
def compute_optimal(law, flops: float) -> tuple:
    """Compute-optimal (parameters, tokens) for a budget of `flops` under the law."""
    """ # BEGIN PROMPT
    raise NotImplementedError("TODO: a = beta / (alpha + beta), G from the closed form, then N = G (C/6)^a and D = C / (6 N)")
    """ # END PROMPT
    # BEGIN SOLUTION NO PROMPT
    a = law.beta / (law.alpha + law.beta)
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    n_opt = G * (flops / 6) ** a
    return n_opt, flops / (6 * n_opt)
    # END SOLUTION


# %% [raw]
# # END SOLUTION

# %%
n_opt, d_opt = compute_optimal(scaling.CHINCHILLA_LAW, 5.76e23)  # Gopher's training budget
print(f"Chinchilla's Approach-3 law at Gopher's budget: N = {n_opt / 1e9:.0f}B parameters, "
      f"D = {d_opt / 1e12:.1f}T tokens, {d_opt / n_opt:.0f} tokens per parameter")
print("Gopher itself: 280B parameters on 0.3T tokens; Chinchilla (from Approaches 1 and 2): 70B on 1.4T")

# %% tags=["check"]
labs.check_compute_optimal(compute_optimal)

# %% [raw]
# # BEGIN TESTS

# %%
""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_compute_optimal_public(labs, compute_optimal):
    labs.check_compute_optimal(compute_optimal)


# %%
""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_compute_optimal_hidden(compute_optimal):
    import numpy as np

    from zhllm import labs
    from zhllm.scaling import Law

    rng = np.random.default_rng(1)
    with labs.kit_switched_off((Law, "optimal"), (Law, "G"), (Law, "a")):
        for _ in range(40):
            law = Law(rng.uniform(1, 3), 10 ** rng.uniform(1, 5), 10 ** rng.uniform(1, 5), rng.uniform(0.1, 1.5),
                      rng.uniform(0.1, 1.5))
            flops = 10 ** rng.uniform(12, 26)
            g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
            n = g * (flops / 6) ** (law.beta / (law.alpha + law.beta))
            got_n, got_d = (float(x) for x in compute_optimal(law, flops))
            assert np.isclose(got_n, n, rtol=1e-6) and np.isclose(got_d, flops / (6 * n), rtol=1e-6), \
                f"wrong for {law} at C={flops:.3g}"


# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

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
