"""Plots of stage 05: IsoFLOP curves with their minima, the frontier N_opt(C), loss contours, repeated data.

Each function draws on a matplotlib Axes you pass, so a notebook can lay figures out as it likes.
"""
import matplotlib
import numpy as np

from .laws import Law, epoch_value, power_law


def isoflop_curves(ax, data: dict, fit: dict) -> None:
    """Loss against model size, one colour per budget, with each parabola and its vertex (N_opt)."""
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(fit["budget"])))
    for color, c, coef, n_opt, l_min in zip(colors, fit["budget"], fit["coef"], fit["n_opt"], fit["loss_min"]):
        sel = data["budget"] == c
        ax.scatter(data["n"][sel], data["loss"][sel], color=color, s=18, label=f"C = {c:.1e}")
        x = np.linspace(np.log(data["n"][sel].min()) - 0.2, np.log(data["n"][sel].max()) + 0.2, 100)
        ax.plot(np.exp(x), np.polyval(coef, x), color=color, lw=1)
        ax.scatter([n_opt], [l_min], color=color, marker="*", s=160, edgecolor="black", zorder=3)
    ax.set(xscale="log", xlabel="parameters N", ylabel="held-out loss (nats/token)", title="IsoFLOP curves")
    ax.legend(fontsize=8)


def frontier(ax, fit: dict, a_boot=None) -> None:
    """N_opt against compute, the fitted power law, and the bootstrap spread of the exponent."""
    c = np.logspace(np.log10(fit["budget"].min()) - 0.3, np.log10(fit["budget"].max()) + 0.3, 50)
    ax.scatter(fit["budget"], fit["n_opt"], color="black", zorder=3, label="IsoFLOP minima")
    ax.plot(c, fit["G"] * (c / 6) ** fit["a"], label=f"N_opt ∝ C^{fit['a']:.2f}")
    if a_boot is not None and len(a_boot):
        pivot = np.exp(np.mean(np.log(fit["budget"])))
        n_pivot = fit["G"] * (pivot / 6) ** fit["a"]
        for a in np.percentile(a_boot, [2.5, 97.5]):
            ax.plot(c, n_pivot * (c / pivot) ** a, ls="--", color="grey", lw=1)
        ax.plot([], [], ls="--", color="grey", label="95% bootstrap range of a")
    ax.set(xscale="log", yscale="log", xlabel="compute C = 6ND (FLOPs)", ylabel="N_opt", title="Frontier")
    ax.legend(fontsize=8)


def contours(ax, law: Law, flops_range, n_range, points: dict | None = None, levels: int = 15) -> None:
    """Contours of the fitted L(N, D = C/6N) over compute and size, with the efficient frontier on top."""
    c = np.logspace(*np.log10(flops_range), 200)
    n = np.logspace(*np.log10(n_range), 200)
    cc, nn = np.meshgrid(c, n)
    loss = law.loss(nn, cc / (6 * nn))
    cs = ax.contour(cc, nn, loss, levels=np.quantile(loss, np.linspace(0.02, 0.9, levels)), cmap="viridis",
                    linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    n_opt, _ = law.optimal(c)
    ax.plot(c, n_opt, color="crimson", lw=2, label=f"efficient frontier, a = {law.a:.3f}")
    if points is not None:
        ax.scatter(points["flops"], points["n"], c=points["loss"], cmap="viridis", s=10, edgecolor="black",
                   linewidth=0.3)
    ax.set(xscale="log", yscale="log", xlim=flops_range, ylim=n_range, xlabel="compute C (FLOPs)",
           ylabel="parameters N", title="Loss contours L(N, C/6N)")
    ax.legend(fontsize=8, loc="upper left")


def allocation_lines(ax, laws: dict, flops_range=(1e18, 1e26)) -> None:
    """N_opt(C) of several laws on one plot: `laws` maps a label to a function C -> N_opt."""
    c = np.logspace(*np.log10(flops_range), 100)
    for label, n_opt in laws.items():
        G, a = power_law(c, n_opt(c))
        ax.plot(c, n_opt(c), label=f"{label} (a = {a:.2f})")
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="N_opt (parameters)",
           title="How big a model for a budget?")
    ax.legend(fontsize=8)


def repetition(ax, max_epochs: float = 60) -> None:
    """Muennighoff et al.: what k epochs over the same tokens are worth relative to fresh tokens."""
    epochs = np.linspace(1, max_epochs, 300)
    ax.plot(epochs, epoch_value(epochs))
    ax.axvline(4, ls="--", color="grey")
    ax.annotate(f"4 epochs: {epoch_value(4):.0%} of fresh data", (4, epoch_value(4)), xytext=(12, 0.9),
                arrowprops={"arrowstyle": "->"})
    ax.set(xscale="log", xlabel="epochs over the unique tokens", ylabel="effective / actual tokens",
           ylim=(0, 1.05), title="Repeated data (R_D* = 15.4)")
