"""The random-feature simulations of ``simon24_rf`` (Simon et al. 2024).

Tasks (the synthetic Gaussian RF model and the binarised image pool with its
NNGP eigenstructure) and the simulators the experiment sweeps: for each
``(n, k)`` pair and ridge, a ridge fit on ``n`` training points with ``k``
features and its exact (synthetic) or pool (image) test and train MSE, trial by
trial, beside the eigenframework's prediction (`theory_point`); plus the
summaries the paper-vs-ours rows read (deviations, Monte Carlo errors, the
optimal-ridge envelope and its monotonicity).

The image task's random-feature setting (trials, ridge grid, weight scale,
input scaling) is resolved from the config by `image_rf_setting`: the paper's
CIFAR-10 setting (`PAPER_RF`) or ours (`OURS_RF`, the offline MNIST-5k default).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from ntk import data, stax
from ntk import random_features as rf

# The paper's binarisation of the ten classes (its rf-cifar / Gaussian-imitation runs).
POSITIVE_CLASSES = (0, 1, 7, 8, 9)


#: The image RF settings `image_rf_setting` chooses between (``config.rf_setting``).
PAPER_RF, OURS_RF = "paper", "ours"
#: The paper's RF runs on binarised CIFAR-10 (Simon et al. 2024; the authors'
#: repo dkarkada/more-is-better, scripts/rf-cifar.py and imagedata.py, and
#: the trial count and ridge grid as its k-table records them): 45 trials per
#: sweep point, 31 absolute ridges log-spaced 1e-3…1e2, of which its figures
#: plot five; W ~ N(0, 2/d) on inputs standardised by the scalar mean and std
#: of all pixels of the training set; features relu(Wx)/√k.
PAPER_RF_TRIALS = 45
PAPER_RF_RIDGES = tuple(float(r) for r in np.logspace(-3, 2, 31))
PAPER_RF_CURVE_RIDGES = (4.64e-3, 2.15e-2, 0.1, 2.15, 21.5)
PAPER_RF_W_STD = math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class ImageRF:
    """The image task's random-feature setting, as `image_rf_setting` resolves it.

    name: `PAPER_RF` or `OURS_RF`.
    trials: trials per point of the k and n sweeps (the (k, n) grid keeps
      ``config.grid_trials`` in both settings).
    ridges: the ridge grid whose minimum is the optimal-ridge envelope, in
      units of Tr K / N (``relative``) or absolute.
    curve_ridges: the five ridges drawn as curves, points of ``ridges``.
    relative: whether ``ridges`` are multiples of Tr K / N (the kernel's mean
      diagonal) or absolute values.
    w_std: features relu(W_std·ω·x/√d)/√k, ω ~ N(0, I_d): W ~ N(0, W_std²/d).
    inputs: "global" (x ← (x − m)/s with m, s the mean and std of all pixels of
      the loaded set, the paper's) or "rms" (x scaled to mean ‖x‖²/d = 1 on the
      pool, uncentred).
    """

    name: str
    trials: int
    ridges: tuple[float, ...]
    curve_ridges: tuple[float, ...]
    relative: bool
    w_std: float
    inputs: str

    def grid(self, scale: float) -> tuple[np.ndarray, list[int]]:
        """The ridges (times ``scale`` = Tr K / N when relative) and the indices
        of the curve ridges among them."""
        unit = np.asarray(self.ridges, float)
        all_r = unit * (scale if self.relative else 1.0)
        where = [int(np.argmin(np.abs(unit - r))) for r in self.curve_ridges]
        return all_r, where

    def describe(self) -> str:
        """One line for the rows' notes: the setting and where it comes from."""
        positive = np.asarray([r for r in self.ridges if r > 0])
        lo, hi = positive.min(), positive.max()
        steps = np.diff(np.log(np.sort(positive)))
        spacing = "log-spaced" if np.allclose(steps, steps.mean(), rtol=1e-3) else "from"
        zero = "0 and " if 0.0 in self.ridges else ""
        unit = " × Tr K/N" if self.relative else " (absolute)"
        inputs = {
            "global": "pixels standardised by their global mean and std",
            "rms": "inputs scaled to mean ‖x‖²/d = 1",
        }[self.inputs]
        who = "the paper's CIFAR-10 RF setting" if self.name == PAPER_RF else "our setting"
        return (
            f"{who}: {self.trials} trials, ridges {zero}{len(positive)} "
            f"{spacing} {lo:g}…{hi:g}{unit}, W ~ N(0, {self.w_std**2:.3g}/d) on {inputs}, "
            "features/√k"
        )


def uses_cifar10(config) -> bool:
    """Whether the image data is CIFAR-10 (``dataset`` "cifar10", or "auto" with
    a ``data_dir``), without loading it."""
    return config.dataset == "cifar10" or (config.dataset == "auto" and bool(config.data_dir))


def image_rf_setting(config) -> ImageRF:
    """The image RF setting ``config.rf_setting`` selects ("auto": the paper's
    on CIFAR-10, ours otherwise).

    The paper's: ``config.paper_trials`` trials (45; the tiny and smoke sizes cut
    it), the `PAPER_RF_RIDGES` with curves at `PAPER_RF_CURVE_RIDGES`, W_std
    √2 on globally standardised pixels. Ours: ``config.trials`` trials, 0 and
    ``config.envelope_ridges`` ridges log-spaced 1e-4…1e2 plus ``config.ridges``
    (all × Tr K/N), W_std 1 on RMS-normalised inputs.
    """
    if config.rf_setting not in ("auto", PAPER_RF, OURS_RF):
        raise ValueError(
            f"simon24_rf: rf_setting must be 'auto', {PAPER_RF!r} or {OURS_RF!r}; "
            f"got {config.rf_setting!r}."
        )
    name = config.rf_setting
    if name == "auto":
        name = PAPER_RF if uses_cifar10(config) else OURS_RF
    if name == PAPER_RF:
        return ImageRF(
            PAPER_RF,
            config.paper_trials,
            PAPER_RF_RIDGES,
            PAPER_RF_CURVE_RIDGES,
            relative=False,
            w_std=PAPER_RF_W_STD,
            inputs="global",
        )
    unit, where = ridge_grid(config, 1.0)
    return ImageRF(
        OURS_RF,
        config.trials,
        tuple(float(r) for r in unit),
        tuple(float(unit[j]) for j in where),
        relative=True,
        w_std=1.0,
        inputs="rms",
    )


def synthetic_task(config):
    i = jnp.arange(1, config.m_modes + 1, dtype=jnp.float32)
    return i**-config.alpha, jnp.sqrt(i**-config.beta)


def load_images(config):
    """(x (N, H, W, C) in [0, 1], labels, name) — CIFAR-10 if available, else MNIST-5k."""
    if config.dataset not in ("auto", "mnist", "cifar10"):
        raise ValueError(
            f"simon24_rf: dataset must be 'auto', 'mnist' or 'cifar10'; got {config.dataset!r}."
        )
    if uses_cifar10(config):
        if not config.data_dir:
            raise ValueError(
                "simon24_rf: dataset='cifar10' needs data_dir "
                "(--data-dir DIR with the CIFAR-10 python batches)."
            )
        x, y = data.cifar10(config.data_dir)
        return x, y, "CIFAR-10"
    x, y = data.mnist_5k()
    return x, y, "MNIST-5k (offline fallback for CIFAR-10)"


def image_task(config, key, setting: ImageRF):
    """Pool inputs (N, d) scaled as ``setting.inputs`` says, ±1 targets, and the
    eigenstructure of the NNGP of ``relu(W_std·ω·x/√d)`` (W_std = ``setting.w_std``)."""
    x, labels, name = load_images(config)
    idx = np.asarray(jax.random.permutation(key, x.shape[0]))[: config.pool]
    if setting.inputs == "global":
        # the paper's: one mean and one std over every pixel of the whole
        # loaded set (CIFAR-10's 50,000 training images), before the pool is cut
        mean, std = float(np.mean(x, dtype=np.float64)), float(np.std(x, dtype=np.float64))
        xf = (np.asarray(data.flatten(x[idx]), np.float32) - mean) / std
    else:
        xf = np.asarray(data.flatten(x[idx]), np.float32)
        xf = xf / np.sqrt(np.mean(np.sum(xf**2, 1)) / xf.shape[1])
    xf = xf.astype(np.float32)
    y = np.where(np.isin(labels[idx], POSITIVE_CLASSES), 1.0, -1.0).astype(np.float32)
    kernel = stax.serial(stax.Dense(1, W_std=setting.w_std), stax.Relu())[2](xf, xf, "nngp")
    lam, v = rf.eigendecompose(kernel, y)
    return jnp.asarray(xf), jnp.asarray(y), kernel, lam, v, name


# ------------------------------------------------------------ simulations


def masked_fit(g, y, n, k, ridges):
    """RF ridge fit on the first n rows and first k columns of unnormalised g.

    Zero rows/columns change neither ΦᵀΦ, Φᵀy nor the min-norm solution, so one
    compiled (n_max, k_max) solve serves every (n, k) (traced n, k: no recompiles).
    Returns weights (R, k_max) and the train MSE (R,).
    """
    rows = (jnp.arange(g.shape[0]) < n).astype(g.dtype)
    cols = (jnp.arange(g.shape[1]) < k).astype(g.dtype)
    phi = g * rows[:, None] * cols[None, :] / jnp.sqrt(k)
    y = y * rows
    w = rf.rf_ridge_weights(phi, y, ridges)
    train = jnp.sum((w @ phi.T - y[None, :]) ** 2 * rows[None, :], axis=1) / n
    return w, cols, train


def _pairs(ns, ks):
    nn, kk = np.meshgrid(np.asarray(ns, np.float32), np.asarray(ks, np.float32), indexing="ij")
    return jnp.asarray(nn.ravel()), jnp.asarray(kk.ravel())


def synthetic_point(lam, v, noise, ns, ks, ridges, keys):
    """RF trials on the Gaussian model: (trials, len(ns), len(ks), R) train and test MSE.

    Training sets are nested in n and feature sets nested in k (as the paper's
    runs); the test MSE is exact: f̂(x) = x·β̂ with β̂ = Λ^{1/2} Wᵀ w/√k.
    """
    m, nmax, kmax = lam.shape[0], max(ns), max(ks)
    pn, pk = _pairs(ns, ks)

    def trial(key):
        kx, kw, ke = jax.random.split(key, 3)
        x = jax.random.normal(kx, (nmax, m))
        y = x @ v + jnp.sqrt(noise) * jax.random.normal(ke, (nmax,))
        proj = jax.random.normal(kw, (kmax, m)) * jnp.sqrt(lam)[None, :]  # rows: g_j's weights
        g = x @ proj.T

        def one(n, k):
            w, cols, train = masked_fit(g, y, n, k, ridges)
            beta = (w * cols[None, :]) @ proj / jnp.sqrt(k)
            return train, jnp.sum((beta - v[None, :]) ** 2, axis=1) + noise

        return jax.lax.map(lambda nk: one(*nk), (pn, pk))

    train, test = jax.lax.map(jax.jit(trial), keys)
    shape = (keys.shape[0], len(ns), len(ks), -1)
    return train.reshape(shape), test.reshape(shape)


def image_point(x, y, ns, ks, ridges, keys, features=None, w_std=1.0):
    """ReLU-RF trials on the pool: nested training sets, test MSE on the whole pool.

    ``features(key, k)``: the pool's normalised features ``(N, k)`` with
    ``E[ΦΦᵀ] = K`` (default: ReLU features ``relu(w_std·ω·x/√d)/√k`` of ``x``;
    `ntk.random_features.kernel_feature_sampler` gives Gaussian ones of the
    same kernel).

    The whole pool (training points included) is the right test measure: the
    theory's eigenstructure is that of the uniform measure on the pool, and its
    E_te is the risk of a fresh draw from that measure, which is a training point
    with probability n/N. MSE on held-out points only is larger by about
    N/(N − n) at small δ (train MSE ≈ 0) and overshoots the theory.
    """
    nmax, kmax = max(ns), max(ks)
    pn, pk = _pairs(ns, ks)

    def trial(key):
        kp, kf = jax.random.split(key)
        idx = jax.random.permutation(kp, x.shape[0])[:nmax]
        phi = rf.relu_features(kf, x, kmax, W_std=w_std) if features is None else features(kf, kmax)
        g_pool = phi * math.sqrt(kmax)

        def one(n, k):
            w, cols, train = masked_fit(g_pool[idx], y[idx], n, k, ridges)
            pred = (w * cols[None, :]) @ g_pool.T / jnp.sqrt(k)
            return train, jnp.mean((pred - y[None, :]) ** 2, axis=1)

        return jax.lax.map(lambda nk: one(*nk), (pn, pk))

    train, test = jax.lax.map(jax.jit(trial), keys)
    shape = (keys.shape[0], len(ns), len(ks), -1)
    return train.reshape(shape), test.reshape(shape)


def theory_point(lam, v, noise, ns, ks, ridges):
    """RF theory on the outer grid ns × ks × ridges: (test, train), each (N, K, R)."""
    fn = jax.jit(
        jax.vmap(
            jax.vmap(
                jax.vmap(lambda n, k, r: rf.rf_risk(lam, v, n, k, r, noise)[3:5], (None, None, 0)),
                (None, 0, None),
            ),
            (0, None, None),
        )
    )
    test, train = fn(
        jnp.asarray(ns, jnp.float32), jnp.asarray(ks, jnp.float32), jnp.asarray(ridges, jnp.float32)
    )
    test, train = np.asarray(test), np.asarray(train)
    # At the interpolation threshold (n = k, δ → 0) E_0 diverges; float32 can
    # return ±huge there. Mark those as undefined rather than plot them.
    bad = ~(np.isfinite(test) & (test > 0) & (test < 1e6))
    return np.where(bad, np.inf, test), np.where(bad, np.inf, train)


def trial_mean_se(values) -> np.ndarray:
    """Standard error of the mean over trials (axis 0) of ``values``; NaN with one trial.

    >>> float(trial_mean_se(np.array([1.0, 3.0])))   # sd √2, over √2 trials
    1.0
    """
    values = np.asarray(values, np.float64)
    if values.shape[0] < 2:
        return np.full(values.shape[1:], np.nan)
    return values.std(0, ddof=1) / np.sqrt(values.shape[0])


def ridge_grid(config, scale):
    """0 and ``config.envelope_ridges`` ridges log-spaced 1e-4…1e2 plus the five
    ``config.ridges``, all times ``scale``, and the indices of those five."""
    dense = np.concatenate([[0.0], np.logspace(-4, 2, config.envelope_ridges)])
    curves = np.asarray(config.ridges, float)
    all_r = np.unique(np.concatenate([dense, curves])) * scale
    where = [int(np.argmin(np.abs(all_r - r * scale))) for r in curves]
    return all_r, where


def sweeps(config, key, task, simulate, setting: ImageRF | None = None):
    """Both sweeps (vs k at n = fixed, vs n at k = fixed) and the heatmap grid.

    ``setting``: the image task's trials and ridge grid (`image_rf_setting`);
    None (the synthetic task) takes ``config.trials`` and `ridge_grid`.
    """
    lam, v, noise, scale = task
    if setting is None:
        ridges, curve_idx = ridge_grid(config, scale)
        trials = config.trials
    else:
        ridges, curve_idx = setting.grid(scale)
        trials = setting.trials
    r = jnp.asarray(ridges, jnp.float32)
    # the interpolation peak's ridges (`deviation`): δ ≤ 1e-2·Tr K/N
    out = {"ridges": ridges, "curve_idx": curve_idx, "peak_ridge": 1e-2 * scale}
    sweep = tuple(config.sweep)
    keys = jax.random.split(key, 3)
    fixed = (config.fixed,)
    # vs k (n fixed) and vs n (k fixed): one compiled function each.
    tr, te = simulate(fixed, sweep, r, jax.random.split(keys[0], trials))
    th_te, th_tr = theory_point(lam, v, noise, fixed, sweep, ridges)
    out["vs_k"] = dict(
        x=sweep,
        sim_train=np.asarray(tr)[:, 0],
        sim_test=np.asarray(te)[:, 0],
        th_test=th_te[0],
        th_train=th_tr[0],
    )
    tr, te = simulate(sweep, fixed, r, jax.random.split(keys[1], trials))
    th_te, th_tr = theory_point(lam, v, noise, sweep, fixed, ridges)
    out["vs_n"] = dict(
        x=sweep,
        sim_train=np.asarray(tr)[:, :, 0],
        sim_test=np.asarray(te)[:, :, 0],
        th_test=th_te[:, 0],
        th_train=th_tr[:, 0],
    )
    # (k, n) grid with ≥ 20 trials: heatmaps and the theory–experiment check.
    grid = tuple(config.grid)
    _, te = simulate(grid, grid, r, jax.random.split(keys[2], config.grid_trials))
    te = np.asarray(te, np.float64)
    tes = te.mean(0)
    # Standard error of the trial mean: near n = k at small δ the per-trial
    # test MSE spreads by ~20–40% (the Gram's smallest eigenvalues), so a
    # 20-trial mean is uncertain by several percent on its own.
    se = trial_mean_se(te)
    th_te, _ = theory_point(lam, v, noise, grid, grid, ridges)
    out["grid"] = dict(n=grid, k=grid, sim_test=tes, sim_test_se=se, th_test=th_te)
    return out


def _at_curves(grid, curve_idx, *keys):
    """``(n, k, *arrays)``: the grid's n (N, 1, 1) and k (1, K, 1) and the named
    arrays at the curve ridges, (N, K, 5)."""
    n = np.asarray(grid["n"])[:, None, None]
    k = np.asarray(grid["k"])[None, :, None]
    return (n, k) + tuple(grid[key][..., curve_idx] for key in keys)


def worst(values, mask) -> float:
    """Largest of ``values`` where ``mask`` holds (NaN if it never does)."""
    return float(np.nanmax(np.where(mask, values, np.nan))) if mask.any() else float("nan")


def relative_gap(sim, th):
    """``(ok, |sim/th − 1|)``: where the theory is finite and positive, and the
    relative gap there (NaN elsewhere)."""
    ok = np.isfinite(th) & (th > 0)
    return ok, np.where(ok, np.abs(sim / np.where(ok, th, 1.0) - 1.0), np.nan)


def deviation(grid, curve_idx, ridges, peak_ridge, big=64):
    """|sim/theory − 1| over the grid and the five ridges.

    Returns (max over n, k ≥ big; the same without the interpolation threshold
    n = k at δ ≤ ``peak_ridge`` (`sweeps`: 1e−2·Tr K/N), where E_0 diverges and
    a 20-trial mean of a heavy-tailed MSE is not a stable estimate; max over n
    or k < big; the (N, K, 5) table).
    """
    n, k, sim, th = _at_curves(grid, curve_idx, "sim_test", "th_test")
    # a relative margin: a grid ridge equal to the threshold up to rounding is in
    small_ridge = (np.asarray(ridges)[curve_idx] <= peak_ridge * (1 + 1e-6))[None, None, :]
    ok, rel = relative_gap(sim, th)
    large = ok & (n >= big) & (k >= big)
    off_peak = large & ~((n == k) & small_ridge)
    small = ok & ~((n >= big) & (k >= big))
    return worst(rel, large), worst(rel, off_peak), worst(rel, small), rel


def mc_error(grid, curve_idx, big=64):
    """Monte Carlo size of the grid's theory–experiment gaps.

    With SE the standard error of the trial mean, returns (max over n, k ≥ big of
    z = |sim − theory|/SE; max over n, k ≥ big of SE/theory; the (N, K, 5)
    SE/theory table; the number of cells the maxima run over). The largest of
    that many |z| of pure trial noise is beyond 3 more often than a single one
    (`max_z_bound` gives the bound to hold it to); a relative deviation below
    SE/theory cannot be resolved.
    """
    n, k, sim, th, se = _at_curves(grid, curve_idx, "sim_test", "th_test", "sim_test_se")
    ok = np.isfinite(th) & (th > 0) & (se > 0)
    rel_se = np.where(ok, se / np.where(ok, th, 1.0), np.nan)
    z = np.where(ok, np.abs(sim - th) / np.where(ok, se, 1.0), np.nan)
    large = ok & (n >= big) & (k >= big)
    return worst(z, large), worst(rel_se, large), rel_se, int(large.sum())


def max_z_bound(cells: int, level: float = 0.0027) -> float:
    """The |z| that the largest of ``cells`` independent standard-normal |z|
    exceeds with probability ``level`` (Šidák): Φ⁻¹(½ + ½(1 − level)^(1/cells)).
    One cell at 0.27% is the familiar 3σ; the quick size's 45 cells at
    n, k ≥ 64 need 4.01. The cells of one (n, k) share their draws across
    ridges, so the bound is conservative for them.

        >>> round(max_z_bound(1), 2), round(max_z_bound(50), 2)
        (3.0, 4.04)
    """
    return float(stats.norm.ppf(0.5 + 0.5 * (1 - level) ** (1 / cells)))


def beyond_tolerance(grid, curve_idx, ridges, min_ridge=0.0, big=64) -> tuple[int, float]:
    """``(count, worst)``: of the (k, n) grid's cells with n, k ≥ ``big`` and a
    curve ridge ≥ ``min_ridge``, how many deviate from the theory by more than
    max(10%, 3 SE/theory), and the largest |sim/theory − 1| among them.

    A trial mean is an estimate: where its standard error is above 3.3% of the
    theory (the n = k peak at small ridge), a 10% gap is within trial noise.
    """
    n, k, sim, th = _at_curves(grid, curve_idx, "sim_test", "th_test")
    _, rel = relative_gap(sim, th)
    _, _, rel_se, _ = mc_error(grid, curve_idx, big=big)
    # a relative margin: a curve ridge equal to ``min_ridge`` up to rounding is in
    curve = np.asarray(ridges)[curve_idx] >= min_ridge * (1 - 1e-6)
    cells = (n >= big) & (k >= big) & curve[None, None, :] & np.isfinite(rel) & np.isfinite(rel_se)
    beyond = cells & (rel > np.maximum(0.1, 3 * rel_se))
    return int(beyond.sum()), worst(rel, cells)


def envelope(sweep_out):
    """Optimal-ridge test MSE (min over the ridge grid) of theory and trial means."""
    th = np.nanmin(np.where(np.isfinite(sweep_out["th_test"]), sweep_out["th_test"], np.inf), -1)
    sim = np.nanmin(sweep_out["sim_test"].mean(0), -1)
    return th, sim


def monotone(values, rtol=1e-4):
    """(is non-increasing up to rtol, largest relative increase)."""
    v = np.asarray(values, float)
    inc = (v[1:] - v[:-1]) / v[:-1]
    return bool(np.all(inc <= rtol)), float(max(inc.max(), 0.0)) if inc.size else 0.0
