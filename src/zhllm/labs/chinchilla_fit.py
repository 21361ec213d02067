"""Lab 05 checks: the Approach-3 objective and the compute-optimal split."""
import math

import numpy as np

from .common import LabCheckError, _close, _diagnose, _float, _name, _passed, _run

def check_huber_objective(fn, n: int = 40, seed: int = 0) -> None:
    """`fn(theta, log_n, log_d, log_loss, delta) -> float`: Chinchilla's summed Huber loss in log space."""
    from ..scaling import huber_objective, load_sweep

    sweep = load_sweep()
    logs = (np.log(sweep["n"]), np.log(sweep["d"]), np.log(sweep["loss"]))
    chinchilla = np.array([math.log(406.4), math.log(410.7), math.log(1.69), 0.34, 0.28])
    fixed = [(chinchilla, *logs, 1e-3), (np.array([10.0, 3.8, 0.9, 1.27, 0.26]), *logs, 1e-3),
             (chinchilla, *logs, 0.5)]
    rng = np.random.default_rng(seed)
    generated = []
    for _ in range(n):
        theta = np.array([rng.uniform(0, 15), rng.uniform(0, 15), rng.uniform(-1, 1.5), rng.uniform(0.1, 1.5),
                          rng.uniform(0.1, 1.5)])
        pick = rng.choice(len(sweep["n"]), size=rng.integers(3, len(sweep["n"]) + 1), replace=False)
        generated.append((theta, *(x[pick] for x in logs), float(rng.choice([1e-3, 1e-2, 0.3]))))
    for theta, log_n, log_d, log_loss, delta in fixed + generated:
        got = _float(_run(fn, theta.copy(), log_n.copy(), log_d.copy(), log_loss.copy(), delta), fn)
        want = huber_objective(theta, log_n, log_d, log_loss, delta)[0]
        if _close(got, want, 1e-6, 1e-12):
            continue
        a, b, e, alpha, beta = theta
        pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
        r = pred - log_loss
        huber = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
        wrong = [("you took the mean over runs: Chinchilla's objective is the sum", huber.mean()),
                 ("you used a squared error everywhere: Huber is quadratic only for |r| <= delta and linear "
                  "beyond, which keeps outlying runs from dominating the fit", (0.5 * r * r).sum()),
                 ("your quadratic piece lacks the 1/2: Huber is r²/2 for |r| <= delta", np.where(
                     np.abs(r) <= delta, r * r, delta * (np.abs(r) - 0.5 * delta)).sum()),
                 ("your residual compares with the loss itself: compare the predicted log loss with log L",
                  np.where(np.abs(pred - np.exp(log_loss)) <= delta, 0.5 * (pred - np.exp(log_loss)) ** 2,
                           delta * (np.abs(pred - np.exp(log_loss)) - 0.5 * delta)).sum())]
        message = _diagnose(got, wrong, lambda x, y: _close(x, float(y), 1e-6, 1e-12))
        raise LabCheckError(message or f"for theta={np.round(theta, 3).tolist()} and delta={delta} expected "
                                       f"{want:.6g}, got {got:.6g}; the prediction is log(A/N^α + B/D^β + E) "
                                       "with A = e^a, B = e^b, E = e^e")
    _passed(fn, len(fixed), len(generated))


def check_compute_optimal(fn, n: int = 40, seed: int = 0) -> None:
    """`fn(law, flops) -> (n_opt, d_opt)`: the compute-optimal model size and tokens under C = 6ND."""
    from ..scaling import CHINCHILLA_LAW, Law

    fixed = [(CHINCHILLA_LAW, 5.76e23), (CHINCHILLA_LAW, 1e21), (Law(2.4, 4e4, 43.0, 1.33, 0.26), 1e15)]
    rng = np.random.default_rng(seed)
    generated = [(Law(rng.uniform(1, 3), 10 ** rng.uniform(1, 5), 10 ** rng.uniform(1, 5), rng.uniform(0.1, 1.5),
                      rng.uniform(0.1, 1.5)), 10 ** rng.uniform(12, 26)) for _ in range(n)]
    for law, flops in fixed + generated:
        out = _run(fn, law, flops)
        try:
            n_got, d_got = (float(v) for v in out)
        except (TypeError, ValueError):
            raise LabCheckError(f"`{_name(fn)}` should return two numbers, (n_opt, d_opt)") from None
        n_want, d_want = (float(v) for v in law.optimal(flops))
        if _close(n_got, n_want, 1e-6) and _close(d_got, d_want, 1e-6):
            continue
        if not _close(6 * n_got * d_got, flops, 1e-6):
            raise LabCheckError(f"your N and D spend 6·N·D = {6 * n_got * d_got:.4g} FLOPs, not the budget C = "
                                f"{flops:.4g}: every allocation must satisfy C = 6 N D")
        a = law.beta / (law.alpha + law.beta)
        G = law.G
        c6 = flops / 6
        wrong = [("your exponents are swapped: N_opt grows as (C/6)^a with a = β/(α+β), the data exponent "
                  "of the loss over the sum", c6 ** (1 - a) * G),
                 ("you inverted G: N_opt = G (C/6)^a with G = (αA / (βB))^(1/(α+β))", c6 ** a / G),
                 ("you used C instead of C/6 inside the power law", G * flops ** a)]
        message = _diagnose(n_got, wrong, lambda x, y: _close(x, y, 1e-6))
        raise LabCheckError(message or f"for C = {flops:.3g} and {law} expected N_opt = {n_want:.4g}, "
                                       f"D_opt = {d_want:.4g}; got N = {n_got:.4g}, D = {d_got:.4g}")
    _passed(fn, len(fixed), len(generated))
