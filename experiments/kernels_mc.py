"""Analytic infinite-width kernels vs wide finite networks (Jacot et al. 2018, Fig. 1).

A ReLU MLP with 3 hidden layers in NTK parameterization,
``f = Dense(O) ∘ [Relu ∘ Dense(n)]×3``, ``W_std = 1``, ``b_std = 0.1`` (the
paper's β = 0.1), is evaluated on inputs on the unit circle
``x(γ) = (cos γ, sin γ)``. As the width ``n → ∞`` (Jacot et al. 2018, Thm. 1
and 2):

* the output covariance over random initialisations tends to the NNGP
  ``K(x0, x)`` — estimated here by ``f(x0) f(x)ᵀ / O`` averaged over draws;
* the empirical NTK ``Θ̂(x, x') = ⟨∂_θ f_0(x), ∂_θ f_0(x')⟩`` (gradients by
  `jax.grad`, one per input, vectorised with `jax.vmap`) tends to the
  deterministic analytic ``Θ(x, x')``.

The fluctuations of ``Θ̂`` around ``Θ`` are of order ``n^{-1/2}`` (Hanin &
Nica 2020; Dyer & Gur-Ari 2020), while its mean's bias is ``O(1/n)``; so the
relative Frobenius error ``‖Θ̂ − Θ‖_F / ‖Θ‖_F`` on a grid of angles should
fall with slope −0.5 on a log-log plot. The table reports the fitted slope
beside that prediction, and how far the Monte Carlo NNGP is from the analytic
one in standard errors.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from experiments import results
from experiments.registry import register
from ntk import stax


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the comparison.

    widths: hidden widths of the finite networks.
    n_draws: independent initialisations per width for the empirical NTK.
    nngp_draws_per_draw: the NNGP averages over ``n_draws ×
      nngp_draws_per_draw`` initialisations (forward passes only, cheap); the
      first ``n_draws`` of them also give the empirical NTKs.
    n_out: output channels ``O`` (the NNGP estimate averages over them; the
      empirical NTK is that of output 0).
    n_angles: grid points γ_k = -π + 2πk/n_angles on the circle.
    depth: hidden layers; W_std, b_std: as in `ntk.stax.Dense`.
    """

    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    n_draws: int = 8
    nngp_draws_per_draw: int = 6
    n_out: int = 64
    n_angles: int = 48
    depth: int = 3
    W_std: float = 1.0
    b_std: float = 0.1
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        # The per-input gradients take n_angles × (2 width²) floats: 2.1 GB
        # at width 2048 and 64 angles, within a 16 GB accelerator.
        return cls(widths=(128, 256, 512, 1024, 2048), n_draws=32,
                   nngp_draws_per_draw=16, n_out=128, n_angles=64)

    @classmethod
    def tiny(cls) -> "Config":
        return cls(widths=(8, 16), n_draws=2, nngp_draws_per_draw=2, n_out=4,
                   n_angles=8)

    @property
    def n_nngp_draws(self) -> int:
        return self.n_draws * self.nngp_draws_per_draw


def network(config: Config, width: int):
    """``[Dense(width), Relu] × depth + Dense(n_out)`` in NTK parameterization."""
    layers = []
    for _ in range(config.depth):
        layers += [stax.Dense(width, W_std=config.W_std, b_std=config.b_std),
                   stax.Relu()]
    layers += [stax.Dense(config.n_out, W_std=config.W_std, b_std=config.b_std)]
    return stax.serial(*layers)


def circle(n_angles: int):
    """Angles ``γ_k = -π + 2πk/n`` and the points ``(cos γ, sin γ)``, ``(n, 2)``."""
    gammas = -math.pi + 2 * math.pi * np.arange(n_angles) / n_angles
    return gammas, jnp.stack([jnp.cos(gammas), jnp.sin(gammas)], axis=1)


def empirical_ntk(apply_fn, params, x):
    """``Θ̂[i, j] = Σ_θ ∂f_0(x_i)/∂θ · ∂f_0(x_j)/∂θ`` for output channel 0.

    Per-input gradients come from `jax.grad` under `jax.vmap` (one backward
    pass per input, no Jacobian of the whole batch), then each parameter
    leaf contributes ``J_leaf J_leafᵀ``.
    """
    def f0(p, xi):
        return apply_fn(p, xi[None])[0, 0]

    grads = jax.vmap(jax.grad(f0), in_axes=(None, 0))(params, x)
    leaves = [g.reshape(x.shape[0], -1) for g in jax.tree_util.tree_leaves(grads)]
    return sum(g @ g.T for g in leaves)


def _samplers(init_fn, apply_fn, x):
    """Jitted ``init(key) -> params``, ``nngp(params)`` and ``ntk(params)``.

    Kept separate (rather than one function vmapped over keys) because
    compiling the parameter sampler dominates the cost at small widths and a
    vmapped sampler compiles about twice as slowly.
    """
    init = jax.jit(lambda key: init_fn(key, x.shape)[1])

    @jax.jit
    def nngp(params):
        out = apply_fn(params, x)
        return out @ out.T / out.shape[1]

    ntk = jax.jit(lambda params: empirical_ntk(apply_fn, params, x))
    return init, nngp, ntk


def fit_loglog_slope(widths, errors):
    """Least-squares slope of ``log(error)`` against ``log(width)``."""
    slope, _ = np.polyfit(np.log(np.asarray(widths, float)),
                          np.log(np.asarray(errors, float)), 1)
    return float(slope)


def bootstrap_slope_se(widths, error_draws, n_boot: int = 1000, seed: int = 0):
    """Standard error of `fit_loglog_slope` by resampling the draws of each width."""
    rng = np.random.default_rng(seed)
    draws = [np.asarray(d, float) for d in error_draws]
    slopes = [fit_loglog_slope(widths, [rng.choice(d, d.size).mean() for d in draws])
              for _ in range(n_boot)]
    return float(np.std(slopes, ddof=1))


@register("kernels_mc", Config,
          description="analytic NNGP/NTK vs Monte Carlo from finite ReLU nets on the circle",
          paper="Jacot et al. 2018, Fig. 1")
def run(config: Config, out_dir: Path) -> dict:
    gammas, x = circle(config.n_angles)
    _, _, kernel_fn = network(config, config.widths[0])
    analytic = kernel_fn(x, None, get=("nngp", "ntk"))
    nngp, ntk = np.asarray(analytic.nngp), np.asarray(analytic.ntk)
    ntk_norm = np.linalg.norm(ntk)

    key = jax.random.PRNGKey(config.seed)
    per_width = []
    for width in tqdm(config.widths, desc="kernels_mc widths", leave=False):
        init_fn, apply_fn, _ = network(config, width)
        init, nngp_of, ntk_of = _samplers(init_fn, apply_fn, x)
        key, sub = jax.random.split(key)
        ntk_draws, nngp_draws = [], []
        for i, k in enumerate(jax.random.split(sub, config.n_nngp_draws)):
            params = init(k)
            nngp_draws.append(np.asarray(nngp_of(params)))
            if i < config.n_draws:
                ntk_draws.append(np.asarray(ntk_of(params)))
        ntk_draws, nngp_draws = np.stack(ntk_draws), np.stack(nngp_draws)
        rel = np.linalg.norm(ntk_draws - ntk, axis=(1, 2)) / ntk_norm
        mc_mean = nngp_draws.mean(0)
        mc_sem = nngp_draws.std(0, ddof=1) / math.sqrt(config.n_nngp_draws)
        # max |MC - analytic| in standard errors, on the row of x0 = (1, 0)
        i0 = config.n_angles // 2
        z = np.abs(mc_mean[i0] - nngp[i0]) / np.maximum(mc_sem[i0], 1e-12)
        per_width.append({
            "width": width,
            "ntk_rel_frobenius_error_mean": float(rel.mean()),
            "ntk_rel_frobenius_error_sem": float(rel.std(ddof=1) / math.sqrt(len(rel))),
            "ntk_rel_frobenius_error_draws": rel.tolist(),
            "nngp_row_x0_mc": mc_mean[i0].tolist(),
            "nngp_row_x0_sem": mc_sem[i0].tolist(),
            "nngp_max_z": float(z.max()),
            "ntk_rows_x0": ntk_draws[:, i0].tolist(),
        })

    widths = [r["width"] for r in per_width]
    errors = [r["ntk_rel_frobenius_error_mean"] for r in per_width]
    slope = fit_loglog_slope(widths, errors)
    slope_se = bootstrap_slope_se(
        widths, [r["ntk_rel_frobenius_error_draws"] for r in per_width], seed=config.seed)
    worst_z = max(r["nngp_max_z"] for r in per_width)

    fig = _figure(config, gammas, nngp, ntk, per_width, slope)
    results.save_figure(fig, out_dir / "kernels_mc.png")

    table = [
        results.comparison("log-log slope of ‖Θ̂−Θ‖_F/‖Θ‖_F vs width",
                           "theory -0.5", round(slope, 3),
                           f"± {slope_se:.2f} (bootstrap s.e.); widths {widths[0]}.."
                           f"{widths[-1]}, {config.n_draws} draws each"),
        results.comparison(f"rel. NTK error at width {widths[-1]}", "→ 0",
                           round(errors[-1], 4), "mean over draws"),
        results.comparison("max |NNGP_MC − NNGP| / s.e. (row x0)", "≲ 4 (CLT)",
                           round(worst_z, 2),
                           f"{config.n_nngp_draws} draws × {config.n_out} outputs, "
                           f"{config.n_angles} angles × {len(widths)} widths"),
    ]
    i0 = config.n_angles // 2
    return {
        "metrics": {
            "ntk_error_loglog_slope": slope,
            "ntk_error_loglog_slope_bootstrap_se": slope_se,
            "ntk_error_loglog_slope_theory": -0.5,
            "nngp_max_z": worst_z,
            "gammas": gammas.tolist(),
            "analytic_nngp_row_x0": nngp[i0].tolist(),
            "analytic_ntk_row_x0": ntk[i0].tolist(),
            "per_width": per_width,
        },
        "paper_vs_ours": table,
        "figures": ["kernels_mc.png"],
    }


def _figure(config, gammas, nngp, ntk, per_width, slope):
    import matplotlib.pyplot as plt

    i0 = config.n_angles // 2
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(per_width)))
    fig, (ax_k, ax_t, ax_e) = plt.subplots(1, 3, figsize=(15, 4.2))

    ax_k.plot(gammas, nngp[i0], "k-", lw=2, label="analytic (∞ width)")
    for c, r in zip(colors, per_width):
        mean, sem = np.asarray(r["nngp_row_x0_mc"]), np.asarray(r["nngp_row_x0_sem"])
        ax_k.errorbar(gammas, mean, yerr=2 * sem, fmt="o", ms=2.5, color=c,
                      elinewidth=0.7, label=f"MC ±2 s.e., n={r['width']}")
    ax_k.set(title=f"NNGP K(x0, x): {config.n_nngp_draws} draws per width", xlabel="γ  (x = (cos γ, sin γ), x0 = (1, 0))")
    ax_k.legend(fontsize=7)

    ax_t.plot(gammas, ntk[i0], "k-", lw=2, label="analytic (∞ width)", zorder=5)
    for c, r in zip(colors, per_width):
        for j, row in enumerate(r["ntk_rows_x0"]):
            ax_t.plot(gammas, row, "-", color=c, lw=0.8, alpha=0.7,
                      label=f"empirical, n={r['width']}" if j == 0 else None)
    ax_t.set(title=f"NTK Θ(x0, x): {config.n_draws} initialisations per width",
             xlabel="γ")
    ax_t.legend(fontsize=7)

    widths = np.array([r["width"] for r in per_width], float)
    err = np.array([r["ntk_rel_frobenius_error_mean"] for r in per_width])
    sem = np.array([r["ntk_rel_frobenius_error_sem"] for r in per_width])
    ax_e.errorbar(widths, err, yerr=2 * sem, fmt="o", color="C0", label="measured (±2 s.e.)")
    fit = np.exp(np.polyval(np.polyfit(np.log(widths), np.log(err), 1), np.log(widths)))
    ax_e.plot(widths, fit, "C0-", label=f"fit: slope {slope:.2f}")
    anchor = np.exp(np.mean(np.log(err))) * (widths / np.exp(np.mean(np.log(widths)))) ** -0.5
    ax_e.plot(widths, anchor, "k--", label="theory: slope −0.5")
    ax_e.set(xscale="log", yscale="log", xlabel="width n",
             title="‖Θ̂ − Θ‖_F / ‖Θ‖_F on the circle grid")
    ax_e.legend(fontsize=8)
    fig.suptitle(f"{config.depth}-hidden-layer ReLU MLP, NTK parameterization, "
                 f"σ_w={config.W_std}, σ_b={config.b_std}, inputs on the unit circle")
    fig.tight_layout()
    return fig
