"""Figures of the ``simon24_rf`` experiment (Simon, Karkada, Ghosh & Belkin 2024).

Each function draws one figure from a part's results and saves it with
`experiments.results.save_figure`: the MSE sweeps in k and n, the (k, n)
heatmaps, the convolutional NTK's eigenstructure and the obligatory-overfitting
curves. The ReLU-vs-Gaussian features figure is in `experiments._simon24_features`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments import _simon24_sim as rfsim
from experiments import results
from ntk import random_features as rf


def plot_sweeps(results_by_task, which, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(results_by_task), 2, figsize=(11, 4.2 * len(results_by_task)), squeeze=False
    )
    for row, (title, res) in enumerate(results_by_task.items()):
        ridges, cidx = res["ridges"], res["curve_idx"]
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(cidx)))
        for col, (key, label) in enumerate(
            [("vs_k", "k (features), n = fixed"), ("vs_n", "n (samples), k = fixed")]
        ):
            ax, s = axes[row, col], res[key]
            th = s[f"th_{which}"]
            sim = s[f"sim_{which}"].mean(0)
            for c, j in zip(colors, cidx):
                ax.plot(s["x"], th[:, j], color=c, lw=1.5, label=f"δ = {ridges[j]:.3g}")
                ax.plot(s["x"], sim[:, j], "o", color=c, ms=4)
            if which == "test":
                env_th, env_sim = rfsim.envelope(s)
                ax.plot(s["x"], env_th, "k-", lw=2.5, label="optimal δ (theory)")
                ax.plot(s["x"], env_sim, "kx", ms=7, label="optimal δ (experiment)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(f"{which} MSE")
            ax.set_title(f"{title}: {which} MSE vs {key[-1]}")
            if which == "test":
                finite = th[np.isfinite(th) & (th > 0)]
                if finite.size:
                    ax.set_ylim(
                        np.min(finite) * 0.7, min(np.max(finite), 20 * np.min(finite)) * 1.5
                    )
        axes[row, 0].legend(fontsize=7)
    fig.suptitle(f"RF regression {which} MSE: lines = eigenframework, markers = mean of trials")
    fig.tight_layout()
    results.save_figure(fig, path)


def plot_sweeps_and_heatmaps(results_by_task, out_dir) -> list[str]:
    """The ``image`` part's figures in ``out_dir``: the test and the train MSE
    sweeps (`plot_sweeps`) and the (k, n) heatmaps (`plot_heatmaps`) of every
    task; returns their file names in that order."""
    names = [f"{which}_mse_vs_k_n.png" for which in ("test", "train")]
    for which, name in zip(("test", "train"), names):
        plot_sweeps(results_by_task, which, Path(out_dir) / name)
    plot_heatmaps(results_by_task, Path(out_dir) / "heatmaps_k_n.png")
    return names + ["heatmaps_k_n.png"]


def plot_heatmaps(results_by_task, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(results_by_task), 3, figsize=(13, 4 * len(results_by_task)), squeeze=False
    )
    for row, (title, res) in enumerate(results_by_task.items()):
        title = title.split(" (offline")[0]
        g = res["grid"]
        th = np.nanmin(np.where(np.isfinite(g["th_test"]), g["th_test"], np.inf), -1)
        sim = np.min(g["sim_test"], -1)
        lo, hi = np.log10(min(th.min(), sim.min())), np.log10(max(th.max(), sim.max()))
        for col, (mat, name) in enumerate([(th, "theory"), (sim, "experiment")]):
            ax = axes[row, col]
            im = ax.imshow(np.log10(mat), origin="lower", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(f"{title}\nlog10 optimal-δ test MSE ({name})", fontsize=9)
            fig.colorbar(im, ax=ax)
        ax = axes[row, 2]
        im = ax.imshow(sim / th - 1, origin="lower", cmap="coolwarm", vmin=-0.2, vmax=0.2)
        ax.set_title(f"{title}\nexperiment / theory − 1", fontsize=9)
        fig.colorbar(im, ax=ax)
        for ax in axes[row]:
            ax.set_xticks(range(len(g["k"])), g["k"])
            ax.set_yticks(range(len(g["n"])), g["n"])
            ax.set_xlabel("k")
            ax.set_ylabel("n")
    fig.tight_layout()
    results.save_figure(fig, path)


def plot_eigen(eig, name, paper, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    i = np.arange(1, len(eig["lam"]) + 1)
    lo, hi = eig["fit_range"]
    ax = axes[0]
    ax.loglog(i, eig["lam"], ".", ms=2, label="λ_i")
    ax.loglog(
        i[lo:hi],
        eig["lam"][lo] * (i[lo:hi] / i[lo]) ** -eig["alpha"],
        "r-",
        label=f"fit α = {eig['alpha']:.2f} (paper {paper[0]})",
    )
    ax.set_xlabel("i")
    ax.legend()
    ax.set_title(f"conv NTK eigenvalues on {name}")
    ax = axes[1]
    c, m = rf.log_binned_means(eig["v"] ** 2, 1, len(eig["v"]), bins=29)
    ax.loglog(c, m, "o", label="binned v_i²")
    inside = (c >= lo) & (c <= hi) & (m > 0)
    log_c0 = np.mean(np.log(m[inside]) + eig["beta"] * np.log(c[inside])) if inside.any() else 0.0
    ax.loglog(
        i[lo:hi],
        np.exp(log_c0) * i[lo:hi] ** -eig["beta"],
        "r-",
        label=f"fit β = {eig['beta']:.2f} (paper {paper[1]})",
    )
    ax.legend()
    ax.set_xlabel("i")
    ax.set_title("target eigencoefficients")
    ax = axes[2]
    p = eig["proxy"]
    ax.loglog(p["sizes"], p["kappa"], "o-", label=f"(Tr K_n⁻¹)⁻¹: α ≈ {eig['alpha_proxy']:.2f}")
    ax.loglog(p["sizes"], p["test_mse"], "s-", label=f"ridgeless MSE: β ≈ {eig['beta_proxy']:.2f}")
    ax.set_xlabel("n")
    ax.legend()
    ax.set_title("size-based proxies (paper Sec. 5)")
    fig.tight_layout()
    results.save_figure(fig, path)


def plot_overfitting(curves, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for ax, (title, c) in zip(axes[0], curves.items()):
        ax.plot(c["th_ratio"], c["th_test"], "-", label="theory (δ varies)")
        ax.plot(c["sim_ratio"], c["sim_test"], "o", label="experiment")
        j = int(np.argmin(c["th_test"]))
        ax.plot(
            c["th_ratio"][j],
            c["th_test"][j],
            "r*",
            ms=12,
            label=f"optimum: E_tr/E_te = {c['th_opt_ratio']:.2f}",
        )
        ax.set_xlabel("fitting ratio E_tr / E_te")
        ax.set_ylabel("test MSE")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle("Obligatory overfitting: KRR test MSE vs train/test fitting ratio")
    fig.tight_layout()
    results.save_figure(fig, path)
