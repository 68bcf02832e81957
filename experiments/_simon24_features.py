"""ReLU against Gaussian random features of the same kernel (``simon24_rf``).

The eigenframework treats features as Gaussian. Gaussian features
``K^{1/2} Z`` of the pool kernel follow it at every ridge; ReLU features
``relu(ω·x)`` of the same (arc-cosine) kernel follow it only above a ridge
threshold or at large n, k, because they spread their power over the kernel's
eigenmodes unequally (`ntk.random_features.mode_power_cv`). The ``features`` part reruns the image
part's (k, n) grid with Gaussian features on the same training sets and
reports both.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _simon24_sim as rfsim
from experiments import results
from ntk import random_features as rf

#: Ridge (in units of Tr K / N) from which ReLU features follow the
#: eigenframework at every grid size; below it they fall short of it until
#: n and k are large (the run's ``features_*`` metrics measure how far;
#: docs/random_features.md explains why).
RIDGE_THRESHOLD = 0.05
#: Top eigenmodes over which a feature's power is measured, and features drawn.
POWER_MODES = 10
POWER_FEATURES = 4096


def _rel_dev_by_ridge(grid, big=64):
    """|sim/theory − 1| over n, k ≥ ``big``, n ≠ k, per ridge of the whole grid: (max, (N, K, R)).

    n = k is left out: at small δ the test MSE there is heavy-tailed (the
    Gram's smallest eigenvalues) and a trial mean is uncertain by 10% or more,
    for Gaussian features as well; the n = k cut is shown on its own.
    """
    n = np.asarray(grid["n"])[:, None, None]
    k = np.asarray(grid["k"])[None, :, None]
    ok, rel = rfsim.relative_gap(grid["sim_test"], grid["th_test"])
    ok = ok & (n >= big) & (k >= big) & (n != k)
    rel = np.where(ok, rel, np.nan)
    worst = np.array([rfsim.worst(rel[..., j], ok[..., j]) for j in range(rel.shape[-1])])
    return worst, rel


def feature_comparison(config, x, y, kernel, scale, ridges, relu_grid, grid_keys):
    """The image grid again with Gaussian features of the same kernel, and both
    feature kinds' eigenmode power spread (`rf.mode_power_cv`)."""
    eig = rf.kernel_eigensystem(kernel)  # one factorisation: the features and both spreads
    gauss = rf.kernel_feature_sampler(kernel, eig)
    grid = tuple(config.grid)
    if max(grid) >= 64:
        _, te = rfsim.image_point(
            x, y, grid, grid, jnp.asarray(ridges, jnp.float32), grid_keys, features=gauss
        )
        te = np.asarray(te, np.float64)
    else:
        # every comparison is over n, k ≥ 64: a smaller grid (the tiny size)
        # has nothing to compare, so the Gaussian runs are skipped
        te = np.full((2,) + relu_grid["th_test"].shape, np.nan)
    th = relu_grid["th_test"]
    g_grid = dict(
        n=grid,
        k=grid,
        sim_test=te.mean(0),
        th_test=th,
        sim_test_se=rfsim.trial_mean_se(te),
    )
    worst_relu, rel_relu = _rel_dev_by_ridge(relu_grid)
    worst_gauss, rel_gauss = _rel_dev_by_ridge(g_grid)
    kp, kr, kg = jax.random.split(grid_keys[0], 3)
    m = min(POWER_MODES, len(y))
    cv_relu = rf.mode_power_cv(rf.relu_features(kr, x, POWER_FEATURES), kernel, m, eig)
    cv_gauss = rf.mode_power_cv(gauss(kg, POWER_FEATURES), kernel, m, eig)
    rel_ridges = np.asarray(ridges) / scale
    above = rel_ridges >= RIDGE_THRESHOLD
    below = (rel_ridges > 0) & ~above
    # signed deviation along n = k at δ ≈ 1e-3·Tr K/N: the size trend
    j0 = int(np.argmin(np.abs(np.log(np.maximum(rel_ridges, 1e-30) / 1e-3))))
    diag = [
        (
            relu_grid["sim_test"][i, i, j0] / th[i, i, j0] - 1,
            g_grid["sim_test"][i, i, j0] / th[i, i, j0] - 1,
        )
        for i in range(len(grid))
    ]
    diag_se = [
        (
            relu_grid["sim_test_se"][i, i, j0] / th[i, i, j0],
            g_grid["sim_test_se"][i, i, j0] / th[i, i, j0],
        )
        for i in range(len(grid))
    ]
    return dict(
        rel_ridges=rel_ridges,
        worst_relu=worst_relu,
        worst_gauss=worst_gauss,
        rel_relu=rel_relu,
        rel_gauss=rel_gauss,
        above=above,
        below=below,
        cv_relu=cv_relu,
        cv_gauss=cv_gauss,
        modes=m,
        diag=np.asarray(diag),
        diag_se=np.asarray(diag_se),
        diag_ridge=float(rel_ridges[j0]),
        grid=grid,
        gauss_se=g_grid["sim_test_se"],
        gauss_sim=g_grid["sim_test"],
    )


def plot_features(cmp, name, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    pos = cmp["rel_ridges"] > 0
    for key, label, style in (
        ("worst_relu", "ReLU features", "o-"),
        ("worst_gauss", "Gaussian features, same kernel", "s--"),
    ):
        ax.plot(cmp["rel_ridges"][pos], cmp[key][pos], style, label=label)
    ax.axvline(RIDGE_THRESHOLD, color="k", ls=":", label=f"δ = {RIDGE_THRESHOLD}·Tr K/N")
    ax.set_xscale("log")
    ax.set_xlabel("ridge δ / (Tr K / N)")
    ax.set_ylabel("max |experiment / theory − 1|, n, k ≥ 64, n ≠ k")
    ax.set_title(f"{name}: test MSE vs the eigenframework", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    for col, style, label in (
        (0, "o-", "ReLU features"),
        (1, "s--", "Gaussian features, same kernel"),
    ):
        ax.errorbar(
            cmp["grid"],
            cmp["diag"][:, col],
            yerr=cmp["diag_se"][:, col],
            fmt=style,
            capsize=3,
            label=label + " (± 1 SE)",
        )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("n = k")
    ax.set_ylabel("experiment / theory − 1")
    ax.set_title(
        f"along n = k (interpolation peak) at δ = {cmp['diag_ridge']:.2g}·Tr K/N\n"
        f"power CV in the top {cmp['modes']} modes: ReLU {cmp['cv_relu']:.2f}, "
        f"Gaussian {cmp['cv_gauss']:.2f} (theory √(2/m) = "
        f"{math.sqrt(2 / cmp['modes']):.2f})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.suptitle(
        "ReLU random features leave the eigenframework at small ridge and small n, k; "
        "Gaussian features of the same kernel do not"
    )
    fig.tight_layout()
    results.save_figure(fig, path)
