"""jacot18's Fig. 1, Fig. 2 and Fig. 3 (MNIST) figures (the numbers are computed in
`experiments.jacot18` and `experiments._jacot18_fig3`; these only draw them)."""

from __future__ import annotations

import numpy as np

from experiments._jacot18_net import PAPER
from experiments.registry import Run
from experiments.results import PAPER_COLOR

PAPER_STYLE = dict(color=PAPER_COLOR, lw=1.0)


#: The finite networks' curves at t = 0 and after T GD steps, per figure:
#: ``(format, label, kwargs)``, ``{T}`` in a label standing for T.
FIG1_INIT_STYLES = (
    ("C0-", "t = 0", dict(lw=0.8, alpha=0.7)),
    ("C3--", "t = {T}", dict(lw=0.8, alpha=0.7)),
)
FIG2_INIT_STYLES = (
    ("C0-", "finite, t = 0", dict(lw=0.6, alpha=0.5)),
    ("C3-", "finite, t = {T}", dict(lw=0.8, alpha=0.8)),
)


def _width_panels(gammas, per_width: dict, panel_width: float, styles, steps: int):
    """``(fig, axes)``: one panel per width (``n = width``, shared y axis), on
    which each initialisation's curves ``per_width[width] = (at_0, at_T)`` are
    drawn against γ in ``styles``; only the first initialisation's are
    labelled, so the legend has one entry per style."""
    import matplotlib.pyplot as plt

    n = len(per_width)
    fig, axes = plt.subplots(1, n, figsize=(panel_width * n, 4), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (width, (at_0, at_T)) in zip(axes, per_width.items()):
        for i, curves in enumerate(zip(at_0, at_T)):
            for y, (fmt, label, kwargs) in zip(curves, styles):
                label = label.format(T=steps) if i == 0 else None
                ax.plot(gammas, y, fmt, label=label, **kwargs)
        ax.set(title=f"n = {width}", xlabel="γ")
    return fig, axes


def plot_fig1(run: Run, gammas, rows: dict, limit_row) -> None:
    """Fig. 1: per width, Θ̂(x0, x(γ)) at t = 0 and after training, with the limit."""
    config = run.config
    fig, axes = _width_panels(gammas, rows, 5.5, FIG1_INIT_STYLES, config.fig1_steps)
    for ax in axes:
        ax.plot(gammas, limit_row, "k-", lw=2, label="n = ∞")
        for j, y in enumerate(PAPER["fig1_y_range"]):
            label = "the paper's y axis (read from its plot)" if j == 0 else None
            ax.axhline(y, ls=":", label=label, **PAPER_STYLE)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("Θ(x0, x(γ))")
    fig.suptitle(
        f"Fig. 1: empirical NTK at initialisation and after {config.fig1_steps} "
        f"GD steps on f*(x) = x1·x2 ({config.fig1_points} N(0, 1) inputs) vs its limit"
    )
    run.save_figure(fig, "fig1_ntk_convergence.png")


def plot_fig2(run: Run, gammas, curves: dict, gp_mean, gp_std, train) -> None:
    """Fig. 2: per width, the finite networks at t = 0 and after training, the
    limit GP's mean and 10–90% band, and the ``train = (γ, targets)`` points."""
    config = run.config
    fig, axes = _width_panels(gammas, curves, 6, FIG2_INIT_STYLES, config.fig2_steps)
    for ax in axes:
        ax.plot(gammas, gp_mean, "k-", lw=2, label="n = ∞ mean")
        ax.fill_between(
            gammas,
            gp_mean - 1.2816 * gp_std,
            gp_mean + 1.2816 * gp_std,
            color="k",
            alpha=0.15,
            label="n = ∞ 10–90%",
        )
        ax.plot(*train, "ko", ms=6, label="training points")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("f(x(γ))")
    fig.suptitle(
        f"Fig. 2: finite networks after {config.fig2_steps} GD steps vs the "
        f"infinite-width ODE's Gaussian process"
    )
    run.save_figure(fig, "fig2_function_dynamics.png")


def plot_fig3_eigenvalues(run: Run, bars: dict) -> None:
    """Fig. 3's top three NTK eigenvalues / N: ``bars`` maps a label to three
    values (the paper's first), drawn as grouped bars on a log axis."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    width = 0.8 / len(bars)
    for j, (label, values) in enumerate(bars.items()):
        style = dict(color=PAPER_COLOR, hatch="//") if j == 0 else dict(color=f"C{j - 1}")
        xs = np.arange(3) + (j - (len(bars) - 1) / 2) * width
        ax.bar(xs, values, width, label=label, **style)
    ax.set(
        yscale="log",
        xticks=range(3),
        xticklabels=["λ1 / N", "λ2 / N", "λ3 / N"],
        title=f"Fig. 3: top NTK eigenvalues on {run.config.mnist_points} MNIST images",
    )
    ax.legend(fontsize=8)
    run.save_figure(fig, "fig3_mnist_eigenvalues.png")


def plot_fig3_pc2(run: Run, decay: dict, curves: dict, lam2: float) -> None:
    """Fig. 3: ⟨f_t − f_0, v2⟩ of each width's trials against the limit's
    0.5·(1 − e^(−λ2 t)) and the same curve at the paper's λ2 (left), and their
    deviation from the limit's GD (right); ``decay`` is a
    `experiments._jacot18_fig3.pc_decay` result (its t, gd and flow curves)."""
    import matplotlib.pyplot as plt

    config = run.config
    t = decay["t"]
    fig, (ax, ax_dev) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (width, runs) in enumerate(curves.items()):
        for j, measured in enumerate(runs):
            label = f"n = {width}" if j == 0 else None
            ax.plot(t, measured, f"C{i}-", lw=1, alpha=0.8, label=label)
            ax_dev.plot(t, measured - decay["gd"], f"C{i}-", lw=1, alpha=0.8, label=label)
    ax.plot(t, decay["flow"], "k--", lw=1.5, label=f"n = ∞: 0.5(1 − e^(−λ2 t)), λ2 = {lam2:.3g}")
    lam2_paper = PAPER["fig3_eigenvalues"][1]
    ax.plot(
        t,
        0.5 * (1 - np.exp(-lam2_paper * np.asarray(t))),
        ls=":",
        label=f"the same at the paper's λ2 = {lam2_paper}",
        **PAPER_STYLE,
    )
    ax.set(xlabel="t = η · step", ylabel="⟨f_t − f_0, v2⟩")
    ax.legend(fontsize=8)
    ax_dev.axhline(0, color="k", lw=1)
    ax_dev.set(xlabel="t = η · step", ylabel="⟨f_t − f_0, v2⟩ − limit (GD at step η)")
    ax_dev.legend(fontsize=8)
    fig.suptitle(
        f"Fig. 3: training towards f* = f_0 + 0.5·v2 (second principal component of the "
        f"limit NTK, {config.mnist_points} MNIST images), {config.pc2_trials} trial(s) per width"
    )
    run.save_figure(fig, "fig3_mnist_pc2_decay.png")


def plot_rates(run: Run, widths: list, rms: dict, slope: dict) -> None:
    """The rates part's ``fig4_rates.png``: RMS ‖Θ̂₀ − Θ‖/‖Θ‖ (ReLU) and RMS
    ‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖ (ReLU and erf) against width on log-log axes, each with
    its fitted power law and, dotted through its first point, the theory's
    slope (−1/2; −1; for ReLU's movement both, the bounds); ``rms`` and
    ``slope`` are keyed by ``(activation, "init" | "move")``."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from ntk.power_law import loglog_fit

    fig, ax = plt.subplots(figsize=(6, 4))
    w = np.asarray(widths, float)
    for key, color, name, theory in (
        (("relu", "init"), "C0", "‖Θ̂₀ − Θ‖/‖Θ‖, ReLU", (-0.5,)),
        (("relu", "move"), "C3", "‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖, ReLU", (-1.0, -0.5)),
        (("erf", "move"), "C2", "‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖, erf", (-1.0,)),
    ):
        values = rms[key]
        ax.plot(w, values, "o", color=color, label=f"{name} (RMS): slope {slope[key]:.2f}")
        fit = loglog_fit(w, values)
        ax.plot(w, fit.prefactor * w**fit.exponent, "-", color=color)
        for exponent in theory:
            ax.plot(w, values[0] * (w / w[0]) ** exponent, ":", color=color, lw=0.8)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="width n",
        title="NTK error (n^-1/2) and movement (erf n^-1, ReLU between); dotted: theory",
    )
    # the widths themselves as ticks: log axes' minor-tick labels overlap on
    # a short range and a range inside one decade has no major tick
    ax.set_xticks(w, [str(n) for n in widths])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    run.save_figure(fig, "fig4_rates.png")
