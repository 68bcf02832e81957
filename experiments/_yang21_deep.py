"""Deep nonlinear MLP: its μP (feature-learning) infinite-width limit by DMFT.

A part of the ``yang21_mup`` experiment (the deep-network DMFT comparison):
`experiments.yang21_mup` mixes `DeepFields` into its Config, `FULL` / `TINY`
into its sizes and registers `deep_part` with the metric spec `METRICS`.
The limit is Bordelon & Pehlevan 2022's dynamical mean-field
theory, solved by Monte Carlo over the single-site process in discrete time
(`ntk.mup.dmft.dmft_solve`); beside it:

* finite μP MLPs of the same architecture (`ntk.mup.finite`), widths
  ``deep_widths`` × ``deep_seeds`` initialisations, trained on the same data:
  the per-network error to the limit is fitted against width (theory: slope
  −1/2 — per-network fluctuations are O(N^{-1/2}); the seed-averaged bias is
  O(1/N) and is reported too, but it is buried under the O((N·seeds)^{-1/2})
  noise of the seed mean). The limit is the mean of two independent
  solves; half the RMS of their difference is its Monte Carlo error, which
  acts like the error of one network of some width (``limit_mc_width``,
  mostly set by ``deep_jac_samples``): the widths are kept well below it, as
  widths near it would flatten the slope;
* the NTK limit (``ntk.stax`` NTK + ``ntk.predict.gradient_descent_mse_ensemble``,
  all layers trained, kernel frozen) and the NNGP limit (readout only);
* the same DMFT at ``γ₀ = 1e-4``, which must equal the NTK limit, and the
  movement of the feature kernel Φ^L and of the tangent kernel at ``γ₀``.

Data: 8 (quick) points of scikit-learn's diabetes regression set
(offline, standardised inputs and targets): the first ``deep_train`` are
trained on, the rest are test points.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import results
from experiments.registry import Result, Run
from ntk import predict
from ntk.data import diabetes
from ntk.mup import dmft, finite, ntk_limit
from ntk.power_law import loglog_slope, loglog_slope_se

DATASET = "scikit-learn diabetes (offline), standardised"


@dataclasses.dataclass(frozen=True)
class DeepFields:
    """Config fields of the deep-MLP DMFT part (defaults = quick size).

    deep_depth / deep_activation: hidden layers L and φ of the MLP.
    deep_gamma0: feature-learning strength γ₀ of the μP run.
    deep_lr / deep_steps: GD learning rate η and steps T.
    deep_train / deep_test: training and test points from the dataset.
    deep_samples / deep_jac_samples: Monte Carlo samples of the limit (and of
      its response functions) per solve; the limit is the mean of two
      independent solves, whose difference measures its Monte Carlo error.
    deep_widths / deep_seeds: finite widths and initialisations per width.
    """

    deep_depth: int = 2
    deep_activation: str = "tanh"
    deep_gamma0: float = 1.0
    deep_lr: float = 1.0
    deep_steps: int = 6
    deep_train: int = 6
    deep_test: int = 2
    deep_samples: int = 4096
    deep_jac_samples: int = 1024
    deep_widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    deep_seeds: int = 16


#: The full and tiny sizes of these fields (changes to the defaults above).
FULL = dict(
    deep_steps=12,
    deep_train=10,
    deep_test=4,
    deep_samples=16384,
    deep_jac_samples=4096,
    deep_widths=(128, 256, 512, 1024, 2048, 4096),
    deep_seeds=16,
)
TINY = dict(
    deep_steps=3,
    deep_train=4,
    deep_test=1,
    deep_samples=512,
    deep_jac_samples=256,
    deep_widths=(64, 256),
    deep_seeds=2,
)
#: ``--full --smoke``: one GD step and one initialisation per width (Monte
#: Carlo samples are an array axis of the DMFT, kept).
SMOKE = dict(deep_steps=1, deep_seeds=1)

METRICS = {
    "deep": {
        "dataset": "the data",
        "depth": "hidden layers L",
        "activation": "φ",
        "gamma0": "feature-learning strength γ₀",
        "steps": "GD steps T",
        "dmft_sweeps": "DMFT fixed-point sweeps",
        "dmft_converged": "whether DMFT converged",
        "dmft_last_residual": "its last residual",
        "dmft_seconds": "DMFT solve time",
        "loss_dmft": "train loss of the DMFT limit per step",
        "loss_ntk": "train loss of the NTK limit per step",
        "widths": "finite widths N",
        "error_per_network": "RMS |f_N − f_∞| per network, averaged over seeds, per width",
        "error_seed_mean": "RMS |mean_seeds f_N − f_∞| per width",
        "error_phiL_T": "RMS |Φ^L_T,N − Φ^L_T,∞| per network, per width",
        "slope_per_network": "log-log slope of error_per_network vs N",
        "slope_seed_mean": "log-log slope of error_seed_mean vs N",
        "slope_phiL_T": "log-log slope of error_phiL_T vs N",
        "slope_per_network_se": "standard error of slope_per_network over the deep_seeds "
        "networks per width (`loglog_slope_se`)",
        "slope_phiL_T_se": "the same for slope_phiL_T",
        "lazy_vs_ntk_max_abs": "max |f| difference of DMFT at γ₀ = 1e-4 and the NTK limit",
        "lazy_phiL_vs_nngp_rel": "relative max difference of Φ^L_T at γ₀ = 1e-4 and the NNGP",
        "lazy_phiL_movement": "‖Φ_T − Φ_0‖/‖Φ_0‖ at γ₀ = 1e-4",
        "phiL_movement": "‖Φ_T − Φ_0‖/‖Φ_0‖ at γ₀",
        "ntk_movement": "‖NTK_T − NTK_0‖/‖NTK_0‖ at γ₀",
        "phiL0_mc_error": "relative Monte Carlo error of the limit's Φ^L_0",
        "limit_mc_error_f": "RMS Monte Carlo error of the limit's f (mean of two solves: "
        "RMS of their difference / 2)",
        "limit_mc_width": "the width whose per-network error equals limit_mc_error_f "
        "(from error_per_network at the widest width, ∝ N^{-1/2})",
        "alignment_dmft_t0": "NTK–YYᵀ alignment of the limit at t = 0",
        "alignment_dmft_T": "the same at t = T",
        "f_test_dmft_T": "test predictions of the DMFT limit at T",
        "f_test_ntk_T": "of the NTK limit",
        "f_test_nngp_T": "of the NNGP limit",
        "f_test_widest_mean_T": "seed mean of the widest finite network",
    }
}


def _data(config):
    x, y = diabetes()
    idx = np.random.default_rng(0).permutation(len(x))[: config.deep_train + config.deep_test]
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    x, y = x[idx], y[idx]
    n = config.deep_train
    return x[:n], y[:n], x[n:]


def _span(widths):
    return f"{widths[0]}…{widths[-1]}" if len(widths) > 2 else str(list(widths))


def _mean_of_two_solves(first, second, y):
    """The mean of two independent DMFT solves and the RMS Monte Carlo error of its f.

    Each solve's ``f`` (train and test) carries an independent MC error of
    variance ``σ²`` per output; ``first − second`` has ``2σ²`` and the mean
    ``σ²/2``, so the mean's RMS error is ``RMS(first − second) / 2``. The
    kernels and responses are averaged alike; the loss is that of the mean f;
    the sweep history is the first solve's.
    """
    f1 = np.concatenate([np.asarray(first.f), np.asarray(first.f_test)], 1)
    f2 = np.concatenate([np.asarray(second.f), np.asarray(second.f_test)], 1)
    mc = float(np.sqrt(np.mean((f1 - f2) ** 2)) / 2)
    mean = {
        k: (getattr(first, k) + getattr(second, k)) / 2
        for k in ("f", "f_test", "phi", "g", "a", "b", "ntk")
    }
    loss = jnp.sum((mean["f"] - y[None]) ** 2, 1) / (2 * y.shape[0])
    return first._replace(**mean, loss=loss, converged=first.converged and second.converged), mc


def _finite_widths(run: Run, x, y, xt, lim, key):
    """Finite μP MLPs per width (``deep_seeds`` each, trained like the limit) and
    their RMS errors to it: per network (f), of the seed mean (f) and per
    network for the last feature kernel Φ^L at T."""
    c = run.config
    T = c.deep_steps
    fins = {}
    for n in run.progress(c.deep_widths, "N"):
        fins[n] = finite.finite_mlp_train(
            x,
            y,
            width=n,
            depth=c.deep_depth,
            activation=c.deep_activation,
            gamma0=c.deep_gamma0,
            learning_rate=c.deep_lr,
            steps=T,
            x_test=xt,
            key=jax.random.fold_in(key, n),
            n_seeds=c.deep_seeds,
            pad_to=max(c.deep_widths),
        )
    f_lim = np.concatenate([np.asarray(lim.f), np.asarray(lim.f_test)], 1)
    phiT_lim = np.asarray(lim.phi[-1, T, :, T, :])
    net, err_mean, phi = [], [], []
    for n in c.deep_widths:
        fr = fins[n]
        f_fin = np.concatenate([np.asarray(fr.f), np.asarray(fr.f_test)], 2)
        net.append(np.sqrt(np.mean((f_fin - f_lim[None]) ** 2, axis=(1, 2))))
        err_mean.append(float(np.sqrt(np.mean((f_fin.mean(0) - f_lim) ** 2))))
        phi.append(
            np.sqrt(np.mean((np.asarray(fr.phiT[:, -1]) - phiT_lim[None]) ** 2, axis=(1, 2)))
        )
    # per width × network, for the slopes' standard errors
    draws = {"net": np.asarray(net, np.float64), "phi": np.asarray(phi, np.float64)}
    err_net, err_phi = (draws[k].mean(1).tolist() for k in ("net", "phi"))
    return fins, err_net, err_mean, err_phi, draws


def deep_part(run: Run) -> Result:
    """Run the DMFT limit, finite widths, NTK/NNGP limits; save the figure."""
    c = run.config
    key = jax.random.fold_in(jax.random.PRNGKey(c.seed), 101)
    dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    x, y, xt = (jnp.asarray(a, dtype) for a in _data(c))
    L, act, T, lr, g0 = c.deep_depth, c.deep_activation, c.deep_steps, c.deep_lr, c.deep_gamma0
    k_lim, k_lazy, k_fin, k_lim2 = jax.random.split(key, 4)
    common = dict(
        depth=L,
        activation=act,
        learning_rate=lr,
        steps=T,
        x_test=xt,
        n_samples=c.deep_samples,
        n_jac_samples=c.deep_jac_samples,
        max_iter=100,
        tol=1e-5,
    )
    t0 = time.time()
    lim, lim_mc = _mean_of_two_solves(
        dmft.dmft_solve(x, y, gamma0=g0, key=k_lim, **common),
        dmft.dmft_solve(x, y, gamma0=g0, key=k_lim2, **common),
        y,
    )
    lazy = dmft.dmft_solve(x, y, gamma0=1e-4, key=k_lazy, **common)
    t_dmft = time.time() - t0

    k_tr, ntk_traj, nngp_traj, t_grid, _, flow_test = _kernel_limits(c, x, y, xt)
    (f_ntk_d, f_ntk_d_test), f_nngp_d_test = ntk_traj, nngp_traj[1]

    fins, err_net, err_mean, err_phi, draws = _finite_widths(run, x, y, xt, lim, k_fin)
    widths = np.asarray(c.deep_widths, float)
    slope_net, slope_mean, slope_phi = (
        loglog_slope(widths, e) for e in (err_net, err_mean, err_phi)
    )
    se_net, se_phi = (loglog_slope_se(widths, draws[k]) for k in ("net", "phi"))
    # error_N ≈ a N^{-1/2}: the limit's MC error is that of width a² / mc²
    mc_width = float(widths[-1] * (err_net[-1] / max(lim_mc, 1e-30)) ** 2)

    P = x.shape[0]
    lazy_vs_ntk, lazy_nngp, lazy_phi_move, phi_move, ntk_move, mc_err = _movements(
        lim, lazy, f_ntk_d, k_tr.nngp, P, T
    )
    yy = np.outer(np.asarray(y), np.asarray(y))

    def align(k):
        k = np.asarray(k)[:P, :P]
        return float(np.sum(k * yy) / (np.linalg.norm(k) * np.linalg.norm(yy)))

    align_t = [align(k) for k in lim.ntk]
    big = fins[c.deep_widths[-1]]

    metrics = dict(
        dataset=DATASET,
        depth=L,
        activation=act,
        gamma0=g0,
        steps=T,
        dmft_sweeps=int(len(lim.residuals)),
        dmft_converged=bool(lim.converged),
        dmft_last_residual=float(lim.residuals[-1]),
        dmft_seconds=t_dmft,
        loss_dmft=np.asarray(lim.loss).tolist(),
        loss_ntk=np.asarray(jnp.sum((f_ntk_d - y[None, :]) ** 2, 1) / (2 * P)).tolist(),
        widths=list(c.deep_widths),
        error_per_network=err_net,
        error_seed_mean=err_mean,
        error_phiL_T=err_phi,
        slope_per_network=slope_net,
        slope_seed_mean=slope_mean,
        slope_phiL_T=slope_phi,
        slope_per_network_se=se_net,
        slope_phiL_T_se=se_phi,
        lazy_vs_ntk_max_abs=lazy_vs_ntk,
        lazy_phiL_vs_nngp_rel=lazy_nngp,
        lazy_phiL_movement=lazy_phi_move,
        phiL_movement=phi_move,
        ntk_movement=ntk_move,
        phiL0_mc_error=mc_err,
        limit_mc_error_f=lim_mc,
        limit_mc_width=mc_width,
        alignment_dmft_t0=align_t[0],
        alignment_dmft_T=align_t[-1],
        f_test_dmft_T=np.asarray(lim.f_test[-1]).tolist(),
        f_test_ntk_T=np.asarray(f_ntk_d_test[-1]).tolist(),
        f_test_nngp_T=np.asarray(f_nngp_d_test[-1]).tolist(),
        f_test_widest_mean_T=np.asarray(big.f_test[:, -1].mean(0)).tolist(),
    )
    rows = _deep_rows(
        c,
        lim_mc,
        mc_width,
        (slope_net, se_net),
        (slope_phi, se_phi),
        lazy_vs_ntk,
        mc_err,
        lazy_phi_move,
        phi_move,
    )
    errors = (err_net, err_mean, err_phi)
    _figure(run, lim, fins, ntk_traj, nngp_traj, (t_grid, flow_test), y, errors, slope_net, align_t)
    return Result(metrics={"deep": metrics}, rows=rows, data=DATASET)


def _kernel_limits(c, x, y, xt):
    """The NTK and NNGP limits of the same network (`ntk.stax` + `ntk.predict`):
    the train kernels, discrete GD trajectories ``(f, f_test)`` of both, and the
    gradient-flow ensemble on a time grid (train and test)."""
    L, act, T, lr = c.deep_depth, c.deep_activation, c.deep_steps, c.deep_lr
    _, _, kernel_fn = ntk_limit.ntk_limit_network(L, act)
    k_tr = kernel_fn(x, x, ("nngp", "ntk"))
    k_te = kernel_fn(xt, x, ("nngp", "ntk"))
    ntk_traj = ntk_limit.ntk_limit_trajectory(k_tr.ntk, y, lr, T, k_te.ntk)
    nngp_traj = ntk_limit.ntk_limit_trajectory(k_tr.nngp, y, lr, T, k_te.nngp)
    ens = predict.gradient_descent_mse_ensemble(
        kernel_fn, x, y[:, None], learning_rate=lr, diag_reg=1e-6
    )
    t_grid = jnp.linspace(0.0, T, 4 * T + 1)
    flow = ens(t=t_grid, x_test=None, get=("ntk", "nngp"))
    flow_test = ens(t=t_grid, x_test=xt, get=("ntk", "nngp"))
    return k_tr, ntk_traj, nngp_traj, t_grid, flow, flow_test


def _movements(lim, lazy, f_ntk, nngp, P: int, T: int):
    """Scalar diagnostics of the DMFT solves: ``(max |f_lazy − f_NTK|, the lazy
    Φ^L_T's relative distance to the NNGP, the lazy and μP relative feature-kernel
    movements ‖Φ_T − Φ_0‖/‖Φ_0‖, the μP NTK movement, Φ^L_0's relative MC error)``."""
    # γ₀ → 0 against the NTK limit; kernel movement at γ₀
    lazy_vs_ntk = float(np.max(np.abs(np.asarray(lazy.f) - np.asarray(f_ntk))))
    lazy_nngp = float(
        np.max(np.abs(np.asarray(lazy.phi[-1, T, :P, T, :P]) - np.asarray(nngp)))
        / np.max(np.abs(np.asarray(nngp)))
    )
    lazy_phi_move = float(
        np.linalg.norm(lazy.phi[-1, T, :, T, :] - lazy.phi[-1, 0, :, 0, :])
        / np.linalg.norm(lazy.phi[-1, 0, :, 0, :])
    )
    phi_move = float(
        np.linalg.norm(lim.phi[-1, T, :, T, :] - lim.phi[-1, 0, :, 0, :])
        / np.linalg.norm(lim.phi[-1, 0, :, 0, :])
    )
    ntk_move = float(np.linalg.norm(lim.ntk[-1] - lim.ntk[0]) / np.linalg.norm(lim.ntk[0]))
    # Monte Carlo error of Φ^L_0: relative distance to the analytic NNGP
    mc_err = float(
        np.linalg.norm(np.asarray(lim.phi[-1, 0, :P, 0, :P]) - np.asarray(nngp))
        / np.linalg.norm(np.asarray(nngp))
    )
    return lazy_vs_ntk, lazy_nngp, lazy_phi_move, phi_move, ntk_move, mc_err


def _deep_rows(c, lim_mc, mc_width, net, phi, lazy_vs_ntk, mc_err, lazy_phi_move, phi_move):
    """The deep part's paper-vs-ours rows: width slopes, the lazy limit, feature movement."""
    act, L, g0 = c.deep_activation, c.deep_depth, c.deep_gamma0
    # The slopes' tolerance is 3 standard errors over the deep_seeds networks per
    # width (`loglog_slope_se`); widths near the limit's MC-error width
    # (limit_mc_width) would flatten them, which no standard error covers.
    (slope_net, se_net), (slope_phi, se_phi) = net, phi
    # 3× the limit's relative MC error for the lazy run (f is O(1): y is standardised).
    not_tp4 = (
        "finite μP networks converge to their limit (TP4); not in the paper's "
        "tables (the DMFT limit is Bordelon & Pehlevan 2022's)"
    )
    return [
        results.comparison(
            "deep MLP: per-network |f_N − f_∞| vs width, log-log slope",
            not_tp4,
            slope_net,
            f"{act}, L={L}, γ₀={g0}; widths {_span(c.deep_widths)}, "
            f"{c.deep_seeds} seeds each; limit = mean of 2 DMFT solves with "
            f"{c.deep_samples} MC samples ({c.deep_jac_samples} for the "
            f"responses): its MC error in f ≈ {lim_mc:.1g} RMS ≈ that of width "
            f"{mc_width:.2g}, so the widths stay below the limit's error floor; "
            f"s.e. {se_net:.3f}",
            theory=-0.5,
            **results.within_se(slope_net, -0.5, se_net),
        ),
        results.comparison(
            "deep MLP: per-network |Φ^L_T,N − Φ^L_T,∞| slope",
            not_tp4,
            slope_phi,
            f"feature kernel of the last hidden layer after training; s.e. {se_phi:.3f}",
            theory=-0.5,
            **results.within_se(slope_phi, -0.5, se_phi),
        ),
        results.comparison(
            "deep MLP: DMFT at γ₀=1e-4 vs NTK limit, max |Δf|",
            not_tp4,
            lazy_vs_ntk,
            f"MC error of the limit's kernels ≈ {mc_err:.2g} (relative)",
            theory=0.0,
            against="theory",
            within=round(3 * mc_err, 3),
        ),
        results.comparison(
            "deep MLP: feature-kernel movement ‖Φ_T−Φ_0‖/‖Φ_0‖, γ₀=1e-4 vs γ₀",
            "features move in μP, not in the NTK limit (TP4 Thm. 3.6); not in the paper's tables",
            f"{lazy_phi_move:.2g} vs {phi_move:.3g}",
            "NTK/NNGP limits: exactly 0",
            theory="0 (NTK) vs Θ(1) (μP)",
            holds=bool(lazy_phi_move < 0.01 and phi_move > 0.1),
            rule="< 0.01 at γ₀ = 1e-4 and > 0.1 at γ₀",
        ),
    ]


def _figure(run, lim, fins, ntk_traj, nngp_traj, test_flow, y, errors, slope_net, align_t):
    """The deep part's four panels. ``ntk_traj`` / ``nngp_traj``: the limits'
    discrete GD ``(f, f_test)``; ``test_flow``: ``(t_grid, flow_test)`` of the
    gradient-flow ensemble; ``errors``: ``(per network, seed mean, Φ^L_T)`` per width."""
    import matplotlib.pyplot as plt

    c = run.config
    (f_ntk, f_ntk_test), (f_nngp, f_nngp_test) = ntk_traj, nngp_traj
    t_grid, flow_test = test_flow
    err_net, err_mean, err_phi = errors
    widths = np.asarray(c.deep_widths, float)
    P = y.shape[0]
    T = c.deep_steps
    ts = np.arange(T + 1)
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    cmap = plt.get_cmap("viridis")

    ax = axes[0]
    for i, n in enumerate(c.deep_widths):
        ax.plot(
            ts,
            np.asarray(fins[n].loss).mean(0),
            color=cmap(i / len(c.deep_widths)),
            lw=1,
            label=f"μP N={n}",
        )
    ax.plot(ts, np.asarray(lim.loss), "k-", lw=2.5, label=f"DMFT limit γ₀={c.deep_gamma0}")
    ax.plot(
        ts,
        np.sum((np.asarray(f_ntk) - np.asarray(y)) ** 2, 1) / (2 * P),
        "r--",
        lw=2,
        label="NTK limit",
    )
    ax.plot(
        ts,
        np.sum((np.asarray(f_nngp) - np.asarray(y)) ** 2, 1) / (2 * P),
        "b:",
        lw=2,
        label="NNGP limit (readout only)",
    )
    ax.set_yscale("log"), ax.set_xlabel("GD step t"), ax.set_ylabel("train loss")
    ax.set_title("training loss"), ax.legend(fontsize=7)

    ax = axes[1]
    j = 0
    for i, n in enumerate(c.deep_widths):
        fr = np.asarray(fins[n].f_test)[:, :, j]
        ax.plot(ts, fr.T, color=cmap(i / len(c.deep_widths)), lw=0.6, alpha=0.6)
    ax.plot(ts, np.asarray(lim.f_test)[:, j], "k-", lw=2.5, label="DMFT limit")
    ax.plot(ts, np.asarray(f_ntk_test)[:, j], "r--", lw=2, label="NTK (discrete GD)")
    ax.plot(
        np.asarray(t_grid),
        np.asarray(flow_test.ntk)[:, j, 0],
        "r-",
        lw=0.8,
        alpha=0.6,
        label="NTK gradient flow (ntk.predict)",
    )
    ax.plot(ts, np.asarray(f_nngp_test)[:, j], "b:", lw=2, label="NNGP")
    ax.set_xlabel("GD step t"), ax.set_ylabel("f(x_test)")
    ax.set_title("test-point prediction (thin: finite nets)"), ax.legend(fontsize=7)

    ax = axes[2]
    ax.loglog(widths, err_net, "o-", label=f"per network (slope {slope_net:.2f})")
    ax.loglog(widths, err_mean, "s-", label="seed mean")
    ax.loglog(widths, err_phi, "^-", label="Φ^L_T per network")
    ref = err_net[0] * (widths / widths[0]) ** -0.5
    ax.loglog(widths, ref, "k:", label="∝ N^{-1/2}")
    ax.set_xlabel("width N"), ax.set_ylabel("rms error to DMFT limit")
    ax.set_title("finite μP → DMFT limit"), ax.legend(fontsize=7)

    ax = axes[3]
    d0 = np.asarray(lim.phi[-1, 0, :P, 0, :P])
    dT = np.asarray(lim.phi[-1, T, :P, T, :P])
    im = ax.imshow(dT - d0, cmap="RdBu_r")
    plt.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"Φ^L_T − Φ^L_0 (DMFT); NTK alignment {align_t[0]:.2f}→{align_t[-1]:.2f}")
    fig.suptitle(
        f"Deep μP MLP (L={c.deep_depth}, {c.deep_activation}) — DMFT limit vs finite "
        f"widths vs NTK/NNGP. Data: {DATASET}, {P} train points",
        fontsize=10,
    )
    fig.tight_layout()
    run.save_figure(fig, "deep_dmft.png")


# ------------------------------------------------------------------ plan

NOT_PLANNED = (
    "the NTK/NNGP limits (ntk.stax kernels and ntk.predict on deep_train + "
    "deep_test points) and the error bookkeeping (numpy); the DMFT solve's "
    "sweeps are counted at their cap (max_iter = 100), which bounds the "
    "sweeps of a solve that converges earlier"
)


def deep_plan(config) -> list:
    """The two DMFT solves (γ₀ and 1e-4; the jitted `ntk.mup.dmft.dmft_solver`,
    whose fixed-point sweeps are a while loop: one sweep is analysed and counted
    ``max_iter`` times) and the finite widths' GD (the jitted
    `ntk.mup.finite.finite_mlp_trainer`, deep_seeds networks vmapped; its steps
    a scan: counted deep_steps times)."""
    from experiments.plan import KEY, Step, shaped

    c = config
    dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    P, m, D = c.deep_train, c.deep_train + c.deep_test, 10  # diabetes: 10 features
    x_all, y = shaped((m, D), dtype), shaped((P,), dtype)
    s = shaped((), dtype)
    solve = dmft.dmft_solver(
        c.deep_depth,
        c.deep_steps + 1,
        m,
        P,
        c.deep_activation,
        c.deep_samples,
        c.deep_jac_samples,
        32,
        1.0,
        1e-10 if dtype == jnp.float64 else 1e-5,
        jnp.dtype(dtype).name,
    )
    steps = [
        Step(
            "DMFT solve, one sweep (γ₀ and γ₀ = 1e-4)",
            solve,
            (KEY, x_all, y, s, s, s, shaped((), jnp.int32)),
            count=2 * 100,
        )
    ]
    pad = max(c.deep_widths)
    train = finite.finite_mlp_trainer(
        pad,
        c.deep_depth,
        c.deep_activation,
        c.deep_steps,
        c.deep_seeds,
        P,
        m,
        D,
        jnp.dtype(dtype).name,
    )
    for n in c.deep_widths:
        steps.append(
            Step(
                f"finite GD, {c.deep_seeds} seeds, n={n} (padded to {pad})",
                train,
                (KEY, x_all, y, s, s, s),
                count=c.deep_steps,
            )
        )
    return steps
