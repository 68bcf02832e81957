"""Jacot, Gabriel & Hongler 2018, "Neural Tangent Kernel", numerical section.

The network is the paper's: L = 4 layers, ``[Dense(n), Relu] × 3 + Dense(1)``
in NTK parameterization with σ_w = 1 and bias scale β = 0.1 (``b_std``),
trained by full-batch gradient descent on ``C(f) = ‖f(X) − Y‖² / (2N)``. The
paper's claims, each measured here:

1. (Fig. 1) The empirical NTK Θ̂(x0, x), x = (cos γ, sin γ), x0 = (1, 0),
   converges to the deterministic limit Θ as the width n grows, at
   initialisation and after training: Θ̂ − Θ = O(n^{-1/2}).
2. (Fig. 2) The trained network follows the linear function-space ODE
   ∂_t f = −(η/N) Θ (f − Y): finite networks at time t are draws of the
   Gaussian process of `ntk.predict.gradient_descent_mse_ensemble`.
3. (§5, Fig. 3) Along the kernel principal components v_i (eigenvalues λ_i
   of Θ on the training set) the residual decays as exp(−η λ_i t / N):
   fastest along the top components.
4. (Quantitative) The relative Frobenius distance ‖Θ̂_0 − Θ‖/‖Θ‖ and the
   relative movement ‖Θ̂_T − Θ̂_0‖/‖Θ̂_0‖ during training both fall like
   n^{-1/2}: fitted log-log slopes beside the theory's −0.5.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments import registry, results
from experiments.registry import Result, Run
from ntk import predict, stax
from ntk.empirical import empirical_ntk_fn, empirical_ntk_row
from ntk.power_law import loglog_fit, loglog_slope


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the four measurements (the defaults are the quick size).

    fig1_widths / fig1_inits / fig1_steps: Fig. 1 (the paper: 500 and 10000,
      10 initialisations, 200 steps).
    fig2_width / fig2_inits / fig2_steps: Fig. 2 (the paper: 10000, 10, 1000).
    pc_width / pc_points / pc_dim / pc_steps: principal-component convergence
      on ``pc_points`` Gaussian inputs normalised to the sphere in ``pc_dim``.
    slope_widths / slope_inits / slope_points / slope_steps: the n^{-1/2} fits.
    learning_rate: η of gradient descent (the paper: 1.0).
    """

    fig1_widths: tuple[int, ...] = (500, 2000)
    fig1_inits: int = 3
    fig1_steps: int = 200
    fig2_width: int = 1024
    fig2_inits: int = 6
    fig2_steps: int = 1000
    pc_width: int = 1024
    pc_points: int = 32
    pc_dim: int = 4
    pc_steps: int = 400
    pc_lr_fraction: float = 0.05
    slope_widths: tuple[int, ...] = (128, 256, 512, 1024, 2048)
    slope_inits: int = 6
    slope_points: int = 8
    slope_steps: int = 50
    n_angles: int = 64
    learning_rate: float = 1.0
    b_std: float = 0.1
    seed: int = 0


SIZES = registry.Sizes(
    full=dict(fig1_widths=(500, 10000), fig1_inits=10, fig2_width=10000,
              fig2_inits=10, pc_width=4096, pc_points=128, pc_dim=8,
              pc_steps=2000, slope_widths=(64, 128, 256, 512, 1024, 2048, 4096, 8192),
              slope_inits=10, slope_points=16, n_angles=128),
    tiny=dict(fig1_widths=(32, 64), fig1_inits=2, fig1_steps=5, fig2_width=32,
              fig2_inits=2, fig2_steps=10, pc_width=32, pc_points=6,
              pc_steps=10, slope_widths=(16, 32, 64), slope_inits=2,
              slope_points=4, slope_steps=5, n_angles=8))

EXPERIMENT = registry.register(
    "jacot18", Config, sizes=SIZES, paper="Jacot, Gabriel & Hongler 2018 (NeurIPS), §6",
    description="NTK convergence with width, function-space dynamics, principal "
                "components, n^-1/2 rates",
    seconds={"tiny": 18, "quick": 70})

DATA = "synthetic: points on the unit circle (and Gaussian points on a sphere); no dataset"


def network(width: int, b_std: float):
    """L = 4: ``[Dense(n), Relu] × 3 + Dense(1)``, σ_w = 1, β = b_std."""
    layers = []
    for _ in range(3):
        layers += [stax.Dense(width, W_std=1.0, b_std=b_std), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, W_std=1.0, b_std=b_std))


def circle(gammas) -> jnp.ndarray:
    gammas = jnp.asarray(gammas, jnp.float32)
    return jnp.stack([jnp.cos(gammas), jnp.sin(gammas)], axis=1)


# The paper's Fig. 2 fits four points on the circle; these angles and targets
# are ours (the paper does not list its values).
TRAIN_GAMMAS = (-2.2, -0.8, 0.6, 2.0)
TRAIN_TARGETS = (-0.4, 0.3, 0.6, -0.2)


def gradient_descent(apply_fn, params, x, y, lr: float, steps: int):
    """``steps`` full-batch GD steps on ‖f(X) − Y‖²/(2N), compiled as a loop."""
    def loss(p):
        return 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2)

    def step(p, _):
        g = jax.grad(loss)(p)
        return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), None

    return jax.lax.scan(step, params, None, length=steps)[0]


def _keys(config):
    """The PRNG keys of the four parts (Fig. 1, Fig. 2, PCs, slopes)."""
    return jax.random.split(jax.random.PRNGKey(config.seed), 4)


def _circle_grid(config):
    """Angles γ and inputs x(γ) of the plots, and the four training points."""
    gammas = np.linspace(-math.pi, math.pi, config.n_angles)
    x_train = circle(TRAIN_GAMMAS)
    y_train = jnp.asarray(TRAIN_TARGETS, jnp.float32)[:, None]
    return gammas, circle(gammas), x_train, y_train


# ------------------------------------------------------------------ Fig. 1


@EXPERIMENT.part("fig1", "Fig. 1: empirical NTK rows at init and after training",
                 metrics={"fig1_row_error_after_training":
                          "max_γ |Θ̂_T(x0, x(γ)) − Θ(x0, x(γ))| / max Θ, per width"})
def fig1(run: Run) -> Result:
    """Θ̂(x0, ·) at init and after training, per width, vs the limit."""
    config = run.config
    key = _keys(config)[0]
    gammas, grid, x_train, y_train = _circle_grid(config)
    x0 = jnp.array([1.0, 0.0])
    rows = {}
    run.steps(len(config.fig1_widths) * config.fig1_inits)
    for width in config.fig1_widths:
        init_fn, apply_fn, kernel_fn = network(width, config.b_std)
        train = jax.jit(lambda p: gradient_descent(apply_fn, p, x_train, y_train,
                                                   config.learning_rate, config.fig1_steps))
        row = jax.jit(lambda p: empirical_ntk_row(apply_fn, p, x0, grid))
        rows0, rowsT = [], []
        keys = jax.random.split(jax.random.fold_in(key, width), config.fig1_inits)
        for k in run.progress(keys, f"n={width}, init"):
            _, params = init_fn(k, grid.shape)
            rows0.append(np.asarray(row(params)))
            rowsT.append(np.asarray(row(train(params))))
        rows[width] = (np.stack(rows0), np.stack(rowsT))
    limit_row = np.asarray(network(1, config.b_std)[2](x0[None], grid, "ntk"))[0]
    row_err = {w: float(np.abs(r[1] - limit_row).max() / np.abs(limit_row).max())
               for w, r in rows.items()}

    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 4), sharey=True)
    for ax, (width, (r0, rT)) in zip(np.atleast_1d(axes), rows.items()):
        for i, (a, b) in enumerate(zip(r0, rT)):
            ax.plot(gammas, a, "C0-", lw=0.8, alpha=0.7, label="t = 0" if i == 0 else None)
            ax.plot(gammas, b, "C3--", lw=0.8, alpha=0.7,
                    label=f"t = {config.fig1_steps}" if i == 0 else None)
        ax.plot(gammas, limit_row, "k-", lw=2, label="n = ∞")
        ax.set(title=f"n = {width}", xlabel="γ")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("Θ(x0, x(γ))")
    fig.suptitle("Fig. 1: empirical NTK at initialisation and after training vs its limit")
    run.save_figure(fig, "fig1_ntk_convergence.png")

    w_lo, w_hi = config.fig1_widths[0], config.fig1_widths[-1]
    table = [results.comparison(
        f"max |Θ̂_T(x0,·) − Θ(x0,·)| / max Θ, n={w_lo} vs n={w_hi}", "shrinks with n",
        f"{row_err[w_lo]:.3f} vs {row_err[w_hi]:.3f}", "Fig. 1, after training",
        holds=row_err[w_hi] < row_err[w_lo], rule=f"error at n={w_hi} < at n={w_lo}")]
    return Result(metrics={"fig1_row_error_after_training": row_err}, rows=table, data=DATA)


# ------------------------------------------------------------------ Fig. 2


@EXPERIMENT.part("fig2", "Fig. 2: trained networks vs the limit's Gaussian process",
                 metrics={"fig2_fraction_in_band": "fraction of the finite networks' values "
                                                   "inside the limit GP's 10–90% band",
                          "fig2_z_rms": "RMS of (f_finite − mean_∞) / std_∞"})
def fig2(run: Run) -> Result:
    """Finite networks after training vs the infinite-width Gaussian process."""
    config = run.config
    key = _keys(config)[1]
    gammas, grid, x_train, y_train = _circle_grid(config)
    init_fn, apply_fn, kernel_fn = network(config.fig2_width, config.b_std)
    train = jax.jit(lambda p: gradient_descent(apply_fn, p, x_train, y_train,
                                               config.learning_rate, config.fig2_steps))
    f0, fT = [], []
    for k in run.progress(jax.random.split(key, config.fig2_inits), "init"):
        _, params = init_fn(k, grid.shape)
        f0.append(np.asarray(apply_fn(params, grid))[:, 0])
        fT.append(np.asarray(apply_fn(train(params), grid))[:, 0])
    f0, fT = np.stack(f0), np.stack(fT)
    predict_fn = predict.gradient_descent_mse_ensemble(
        kernel_fn, x_train, y_train, learning_rate=config.learning_rate)
    gp = predict_fn(t=config.fig2_steps, x_test=grid, get="ntk", compute_cov=True)
    gp_mean = np.asarray(gp.mean)[:, 0]
    gp_std = np.sqrt(np.maximum(np.diag(np.asarray(gp.covariance)), 0))
    # standardised deviation of the finite networks from the limit's Gaussian
    # process, where it has spread (the training points pin it to 0)
    spread = gp_std > 0.05 * gp_std.max()
    z = (fT[:, spread] - gp_mean[spread]) / gp_std[spread]
    inside = float(np.mean(np.abs(z) <= 1.2816))
    z_rms = float(np.sqrt(np.mean(z ** 2)))

    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (a, b) in enumerate(zip(f0, fT)):
        ax.plot(gammas, a, "C0-", lw=0.6, alpha=0.5, label="finite, t = 0" if i == 0 else None)
        ax.plot(gammas, b, "C3-", lw=0.8, alpha=0.8,
                label=f"finite, t = {config.fig2_steps}" if i == 0 else None)
    ax.plot(gammas, gp_mean, "k-", lw=2, label="n = ∞ mean")
    ax.fill_between(gammas, gp_mean - 1.2816 * gp_std, gp_mean + 1.2816 * gp_std,
                    color="k", alpha=0.15, label="n = ∞ 10–90%")
    ax.plot(TRAIN_GAMMAS, TRAIN_TARGETS, "ko", ms=6, label="training points")
    ax.set(xlabel="γ", ylabel="f(x(γ))",
           title=f"Fig. 2: n = {config.fig2_width} networks vs the infinite-width ODE")
    ax.legend(fontsize=8)
    run.save_figure(fig, "fig2_function_dynamics.png")

    # Tolerances of two standard errors, counting each network as one draw
    # (its values along the circle are strongly correlated): a fraction 0.8
    # has s.e. √(0.8·0.2/m) and an RMS of m standard normals about 1/√(2m).
    m = config.fig2_inits
    note = f"Fig. 2, n={config.fig2_width}, t={config.fig2_steps}, {m} networks"
    table = [
        results.comparison("finite nets inside the GP's 10–90% band", 0.8, round(inside, 3),
                           note, within=round(2 * math.sqrt(0.8 * 0.2 / m), 2)),
        results.comparison("RMS of (f_finite − mean_∞)/std_∞", 1.0, round(z_rms, 3),
                           "Fig. 2; 1 if finite nets are draws of the limit",
                           within=round(2 / math.sqrt(2 * m), 2)),
    ]
    metrics = {"fig2_fraction_in_band": inside, "fig2_z_rms": z_rms}
    return Result(metrics=metrics, rows=table, data=DATA)


# ------------------------------------------------------------------ Fig. 3


@EXPERIMENT.part("pc", "Fig. 3: residual along the NTK's principal components",
                 metrics={"pc_eigenvalues_top": "top 5 eigenvalues of Θ on the training set",
                          "pc_learning_rate": "η = pc_lr_fraction · N / λ₁",
                          "pc_efold_theory_top3": "N / (η λ_i), i = 1, 2, 3",
                          "pc_efold_measured_top3": "measured e-folding steps along PC 1–3",
                          "pc_efold_ratio_top3": "measured / theory along PC 1–3"})
def principal_components(run: Run) -> Result:
    """Residual along the NTK's principal components during training.

    The step is set to η = pc_lr_fraction · N / λ_1 so that even the top
    component takes several steps to decay and its rate can be resolved.
    Measures the e-folding time of the residual along PC 1–3 on the finite
    network beside the prediction, N / (η λ_i) in continuous time.
    """
    config = run.config
    k_x, k_y, k_init = jax.random.split(_keys(config)[2], 3)
    x = jax.random.normal(k_x, (config.pc_points, config.pc_dim))
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True)
    y = jax.random.normal(k_y, (config.pc_points, 1)) * 0.5
    init_fn, apply_fn, kernel_fn = network(config.pc_width, config.b_std)
    theta = np.asarray(kernel_fn(x, None, "ntk"), np.float64)
    lam, vecs = np.linalg.eigh(theta)
    lam, vecs = lam[::-1], vecs[:, ::-1]
    n = config.pc_points
    eta = config.pc_lr_fraction * n / lam[0]
    _, params = init_fn(k_init, x.shape)

    def loss(p):
        return 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2)

    @jax.jit
    def trajectory(p):
        def step(p, _):
            g = jax.grad(loss)(p)
            return jax.tree_util.tree_map(lambda a, b: a - eta * b, p, g), apply_fn(p, x)[:, 0]
        return jax.lax.scan(step, p, None, length=config.pc_steps + 1)[1]

    f = np.asarray(trajectory(params), np.float64)             # (T + 1, N)
    proj = (f - np.asarray(y)[:, 0]) @ vecs                     # (T + 1, N)
    steps = np.arange(config.pc_steps + 1)
    measured = [_efold_time(steps, np.abs(proj[:, i])) for i in range(3)]
    theory = [n / (eta * lam[i]) for i in range(3)]
    ratio = [m / t for m, t in zip(measured, theory)]

    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for i in (0, 1, 2, len(lam) - 1):
        c = f"C{min(i, 3)}"
        ax.semilogy(steps, np.abs(proj[:, i]), ".", color=c, ms=2)
        curve = np.abs(proj[0, i]) * np.abs(1 - eta * lam[i] / config.pc_points) ** steps
        ax.semilogy(steps, curve, "-", color=c, lw=1, label=f"PC {i + 1}: λ = {lam[i]:.3g}")
    ax.set(xlabel="GD step t", ylabel="|⟨f_t − Y, v_i⟩|",
           title=f"Fig. 3: residual along NTK principal components (n = {config.pc_width})")
    ax.legend(fontsize=8)
    run.save_figure(fig, "fig3_principal_components.png")

    table = [results.comparison(
        "e-folding time along PC 1, 2, 3: measured / N(ηλ_i)⁻¹", "1, 1, 1",
        ", ".join(f"{r:.2f}" for r in ratio), "fastest along the top components",
        holds=bool(measured[0] < measured[1] < measured[2]),
        rule="measured e-folding times increase from PC 1 to PC 3")]
    metrics = {"pc_eigenvalues_top": lam[:5].tolist(), "pc_learning_rate": eta,
               "pc_efold_theory_top3": theory, "pc_efold_measured_top3": measured,
               "pc_efold_ratio_top3": ratio}
    return Result(metrics=metrics, rows=table, data=DATA)


def _efold_time(steps, r) -> float:
    """First time |r| falls below |r_0|/e, interpolated in log|r|; inf if never."""
    target = np.log(r[0]) - 1
    below = np.nonzero(np.log(r) <= target)[0]
    if len(below) == 0:
        return float("inf")
    j = below[0]
    a, b = np.log(r[j - 1]), np.log(r[j])
    return float(steps[j - 1] + (a - target) / (a - b) * (steps[j] - steps[j - 1]))


# ------------------------------------------------------------------ rates


@EXPERIMENT.part("rates", "n^-1/2 rates of the NTK's error and movement",
                 metrics={"ntk_init_error_slope": "log-log slope of RMS ‖Θ̂₀ − Θ‖/‖Θ‖ vs n",
                          "ntk_movement_slope": "log-log slope of RMS ‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖ vs n",
                          "slope_theory": "−1/2",
                          "slope_widths": "the widths n",
                          "ntk_init_error": "‖Θ̂₀ − Θ‖/‖Θ‖ per width and initialisation",
                          "ntk_movement": "‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖ per width and initialisation",
                          "ntk_init_error_rms": "RMS over initialisations, per width",
                          "ntk_movement_rms": "RMS over initialisations, per width"})
def rates(run: Run) -> Result:
    """‖Θ̂_0 − Θ‖/‖Θ‖ and ‖Θ̂_T − Θ̂_0‖/‖Θ̂_0‖ against width, and their slopes."""
    config = run.config
    key = _keys(config)[3]
    k_x, k_y = jax.random.split(key)
    gam = jax.random.uniform(k_x, (config.slope_points,), minval=-math.pi, maxval=math.pi)
    x = circle(gam)
    y = jnp.sin(2 * gam)[:, None] * 0.5
    limit = np.asarray(network(1, config.b_std)[2](x, None, "ntk"))
    err0, move = [], []
    for width in run.progress(config.slope_widths, "n"):
        init_fn, apply_fn, _ = network(width, config.b_std)
        ntk_fn = jax.jit(lambda p: empirical_ntk_fn(apply_fn)(x, None, p))  # noqa: B023
        train = jax.jit(lambda p: gradient_descent(apply_fn, p, x, y, config.learning_rate,
                                                   config.slope_steps))
        e, m = [], []
        for k in jax.random.split(jax.random.fold_in(key, width), config.slope_inits):
            _, params = init_fn(k, x.shape)
            t0 = np.asarray(ntk_fn(params))
            tT = np.asarray(ntk_fn(train(params)))
            e.append(np.linalg.norm(t0 - limit) / np.linalg.norm(limit))
            m.append(np.linalg.norm(tT - t0) / np.linalg.norm(t0))
        err0.append(e)
        move.append(m)
    err0, move = np.asarray(err0), np.asarray(move)
    widths = list(config.slope_widths)
    # root-mean-square over initialisations: the n^-1/2 law is one of the
    # standard deviation of Θ̂, which the RMS estimates without the bias of
    # averaging a norm over few draws
    rms_init, rms_move = np.sqrt((err0 ** 2).mean(1)), np.sqrt((move ** 2).mean(1))
    slope_init = loglog_slope(widths, rms_init)
    slope_move = loglog_slope(widths, rms_move)

    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    w = np.asarray(widths, float)
    for vals, slope, c, name in ((rms_init, slope_init, "C0", "‖Θ̂₀ − Θ‖/‖Θ‖"),
                                 (rms_move, slope_move, "C3", "‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖")):
        ax.plot(w, vals, "o", color=c, label=f"{name} (RMS): slope {slope:.2f}")
        fit = loglog_fit(w, vals)
        ax.plot(w, fit.prefactor * w ** fit.exponent, "-", color=c)
        ax.plot(w, vals[0] * (w / w[0]) ** -0.5, ":", color="k")
    ax.set(xscale="log", yscale="log", xlabel="width n",
           title="n^-1/2 convergence (dotted: slope −0.5)")
    ax.legend(fontsize=8)
    run.save_figure(fig, "fig4_rates.png")

    # ±0.1: the spread of a slope fitted to a handful of widths with a few
    # initialisations each (the quick size's RMS values scatter by ~10%).
    table = [
        results.comparison("slope of ‖Θ̂₀ − Θ‖/‖Θ‖ vs width", -0.5, round(slope_init, 3),
                           "theory n^-1/2", within=0.1),
        results.comparison("slope of ‖Θ̂_T − Θ̂₀‖/‖Θ̂₀‖ vs width", -0.5, round(slope_move, 3),
                           f"after {config.slope_steps} GD steps", within=0.1),
    ]
    metrics = {"ntk_init_error_slope": slope_init, "ntk_movement_slope": slope_move,
               "slope_theory": -0.5, "slope_widths": widths,
               "ntk_init_error": err0.tolist(), "ntk_movement": move.tolist(),
               "ntk_init_error_rms": rms_init.tolist(), "ntk_movement_rms": rms_move.tolist()}
    return Result(metrics=metrics, rows=table, data=DATA)
