"""jacot18's Fig. 1 and Fig. 2 figures (the numbers are computed in
`experiments.jacot18`; these only draw them)."""

from __future__ import annotations

import numpy as np

from experiments.registry import Run


def plot_fig1(run: Run, gammas, rows: dict, limit_row) -> None:
    """Fig. 1: per width, Θ̂(x0, x(γ)) at t = 0 and after training, with the limit."""
    import matplotlib.pyplot as plt

    config = run.config
    fig, axes = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 4), sharey=True)
    for ax, (width, (r0, rT)) in zip(np.atleast_1d(axes), rows.items()):
        for i, (a, b) in enumerate(zip(r0, rT)):
            ax.plot(gammas, a, "C0-", lw=0.8, alpha=0.7, label="t = 0" if i == 0 else None)
            ax.plot(
                gammas,
                b,
                "C3--",
                lw=0.8,
                alpha=0.7,
                label=f"t = {config.fig1_steps}" if i == 0 else None,
            )
        ax.plot(gammas, limit_row, "k-", lw=2, label="n = ∞")
        ax.set(title=f"n = {width}", xlabel="γ")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("Θ(x0, x(γ))")
    fig.suptitle(
        f"Fig. 1: empirical NTK at initialisation and after {config.fig1_steps} "
        f"GD steps on f*(x) = x1·x2 ({config.fig1_points} N(0, 1) inputs) vs its limit"
    )
    run.save_figure(fig, "fig1_ntk_convergence.png")


def plot_fig2(run: Run, gammas, curves: dict, gp_mean, gp_std, train) -> None:
    """Fig. 2: per width, the finite networks at t = 0 and after training, the
    limit GP's mean and 10–90% band, and the ``train = (γ, targets)`` points."""
    import matplotlib.pyplot as plt

    config = run.config
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), sharey=True)
    for ax, (width, (f0, fT)) in zip(np.atleast_1d(axes), curves.items()):
        for i, (a, b) in enumerate(zip(f0, fT)):
            ax.plot(gammas, a, "C0-", lw=0.6, alpha=0.5, label="finite, t = 0" if i == 0 else None)
            ax.plot(
                gammas,
                b,
                "C3-",
                lw=0.8,
                alpha=0.8,
                label=f"finite, t = {config.fig2_steps}" if i == 0 else None,
            )
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
        ax.set(xlabel="γ", title=f"n = {width}")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("f(x(γ))")
    fig.suptitle(
        f"Fig. 2: finite networks after {config.fig2_steps} GD steps vs the "
        f"infinite-width ODE's Gaussian process"
    )
    run.save_figure(fig, "fig2_function_dynamics.png")
