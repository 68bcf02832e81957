"""ntk.dkm.regression: the exact-GP baselines (NNGP = ν → ∞ DKM, SE-ARD GP).

Every prediction is checked against the closed-form GP posterior written out
in NumPy float64 (kernel matrices built independently of ntk, one solve), the
noise selection against a brute-force log marginal likelihood per grid point,
and the log predictive density against scipy.stats.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from ntk import dkm

LAYERS = 2


def _data(n=24, t=6, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + t, d))
    y = np.sin(1.5 * x[:, 0]) + 0.5 * x[:, 1] + 0.2 * rng.normal(size=n + t)
    return x[:n], y[:n], x[n:], y[n:]


def _sqexp_nngp(x, layers):
    """The NNGP kernel K(G_L) of `dkm.sqexp()`: G_0 = X Xᵀ/D, then L + 1
    maps G -> exp(−(G_ii + G_jj − 2 G_ij)/2) (L Grams, then the output)."""
    g = x @ x.T / x.shape[1]
    for _ in range(layers + 1):
        diag = np.diag(g)
        g = np.exp(-(diag[:, None] + diag[None, :] - 2 * g) / 2)
    return g


def _log_marginal(k, y, s2):
    """log N(y; 0, K + σ² I) by slogdet and solve."""
    c = k + s2 * np.eye(len(y))
    _, logdet = np.linalg.slogdet(c)
    return -0.5 * (y @ np.linalg.solve(c, y) + logdet + len(y) * np.log(2 * np.pi))


def _posterior(ktt, kst, kss_diag, y, s2):
    """Predictive mean and variance of y_* (σ² included) by one solve."""
    c = ktt + s2 * np.eye(len(y))
    sol = np.linalg.solve(c, np.column_stack([y, kst.T]))
    return kst @ sol[:, 0], kss_diag - np.sum(kst * sol[:, 1:].T, 1) + s2


def _sqexp_ard(a, b, amp, ls):
    d2 = (((a[:, None, :] - b[None, :, :]) / ls) ** 2).sum(-1)
    return amp * np.exp(-0.5 * d2)


# ---------------------------------------------------------------- NNGP regression


def test_nngp_regression_noise_maximises_the_brute_force_log_marginal_over_the_grid():
    x, y, xs, _ = _data()
    grid = np.logspace(-2.5, 0.5, 13)
    pred = dkm.nngp_regression(dkm.sqexp(), LAYERS, x, y, xs, noise_grid=grid, dtype=np.float64)
    k = _sqexp_nngp(np.concatenate([x, xs]), LAYERS)[: len(x), : len(x)]
    brute = np.array([_log_marginal(k, y, s2) for s2 in grid])
    # float64 Cholesky vs slogdet/solve of a 24 × 24 matrix with σ² ≥ 3e-3:
    # agreement to ~1e-12 relative; 1e-9 leaves room, a wrong kernel misses by O(1).
    np.testing.assert_allclose(pred.log_marginal, brute, rtol=1e-9)
    np.testing.assert_allclose(pred.noise_grid, grid, rtol=1e-15)
    best = int(np.argmax(brute))
    assert 0 < best < len(grid) - 1, best  # an interior maximum: the selection is tested
    assert pred.noise_var == grid[best]


def test_nngp_regression_equals_the_closed_form_posterior_at_the_selected_noise():
    x, y, xs, _ = _data()
    pred = dkm.nngp_regression(dkm.sqexp(), LAYERS, x, y, xs, dtype=np.float64)
    n = len(x)
    k = _sqexp_nngp(np.concatenate([x, xs]), LAYERS)
    default_grid = np.logspace(-3, 0.5, 36)
    np.testing.assert_allclose(pred.noise_grid, default_grid, rtol=1e-12)
    brute = np.array([_log_marginal(k[:n, :n], y, s2) for s2 in default_grid])
    assert pred.noise_var == pytest.approx(default_grid[np.argmax(brute)], rel=1e-12)
    mean, var = _posterior(k[:n, :n], k[n:, :n], np.diag(k)[n:], y, pred.noise_var)
    # both float64 with a condition number ≲ 1e3 (σ² ≥ 1e-3 on a unit diagonal):
    # round-off ~1e-13; 1e-9 is far below any modelling error (wrong σ², depth).
    np.testing.assert_allclose(pred.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pred.variance, var, rtol=1e-9)


def test_nngp_regression_in_float32_agrees_with_float64():
    # The default dtype (the experiment's). float32 kernels carry ~1e-7 relative
    # error, amplified by cond(K + σ² I) ≲ 1e3: 1e-3 is a safe bound, and a
    # different σ² choice or kernel would move the prediction by O(0.1).
    x, y, xs, _ = _data()
    p32 = dkm.nngp_regression(dkm.relu(), LAYERS, x, y, xs)
    p64 = dkm.nngp_regression(dkm.relu(), LAYERS, x, y, xs, dtype=np.float64)
    assert p32.noise_var == pytest.approx(p64.noise_var, rel=1e-5)
    np.testing.assert_allclose(p32.mean, p64.mean, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(p32.variance, p64.variance, rtol=1e-3)


# ---------------------------------------------------------------- SE-ARD GP


@pytest.fixture(scope="module")
def ard_fit():
    x, y, xs, _ = _data(n=40, d=3, seed=1)
    return (x, y, xs), dkm.sqexp_ard_regression(x, y, xs, maxiter=100)


def test_sqexp_ard_fit_raises_the_log_marginal_above_its_initialisation(ard_fit):
    (x, y, _), fit = ard_fit
    d = x.shape[1]
    initial = _log_marginal(_sqexp_ard(x, x, 1.0, np.full(d, np.sqrt(d))), y, 0.1 + 1e-6)
    fitted = _log_marginal(_sqexp_ard(x, x, fit.amplitude, fit.lengthscales), y, fit.noise_var)
    # on this data type-II ML gains ~18 nats over the initial hyperparameters;
    # 1 nat is far above the optimiser's float32 round-off.
    assert fitted > initial + 1.0, (initial, fitted)
    # the reported value is the optimiser's float32 evaluation of the same
    # quantity: |log p| ~ 30 with float32 round-off ~1e-6 relative per entry.
    assert fit.log_marginal == pytest.approx(fitted, rel=1e-4, abs=1e-3)


def test_sqexp_ard_posterior_equals_the_closed_form_at_the_fitted_hyperparameters(ard_fit):
    (x, y, xs), fit = ard_fit
    ktt = _sqexp_ard(x, x, fit.amplitude, fit.lengthscales)
    kst = _sqexp_ard(xs, x, fit.amplitude, fit.lengthscales)
    mean, var = _posterior(ktt, kst, np.full(len(xs), fit.amplitude), y, fit.noise_var)
    # float64 on both sides (the tests enable x64); broadcast differences here
    # against the library's expanded |a|² + |b|² − 2a·b distances: ~1e-15
    # apart, amplified by cond(K + σ² I) ≲ 1e3.
    np.testing.assert_allclose(fit.mean, mean, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(fit.variance, var, rtol=1e-9)


def test_sqexp_ard_gives_the_only_relevant_input_the_shortest_lengthscale():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 3))
    y = np.sin(2.0 * x[:, 1]) + 0.05 * rng.normal(size=60)  # only x_1 matters
    fit = dkm.sqexp_ard_regression(x, y, x[:3], maxiter=200)
    ls = fit.lengthscales
    # x_1's lengthscale is O(1) (the sine's scale); irrelevant inputs are pushed
    # towards λ → ∞. A factor 5 separates the two regimes with room to spare.
    assert ls[1] < 2.0 and ls[0] > 5 * ls[1] and ls[2] > 5 * ls[1], ls
    assert fit.noise_var < 0.01  # the noise variance is 0.0025


# ---------------------------------------------------------------- scoring


def test_gaussian_log_predictive_equals_scipy_norm_logpdf():
    rng = np.random.default_rng(3)
    y, mean = rng.normal(size=(2, 50))
    var = rng.uniform(0.01, 4.0, size=50)
    got = dkm.gaussian_log_predictive(y, mean, var)
    np.testing.assert_allclose(got, scipy.stats.norm.logpdf(y, mean, np.sqrt(var)), rtol=1e-13)


# ---------------------------------------------------------------- validation


_X, _Y, _XS, _ = _data(n=5, t=2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(kernel="sqexp"), TypeError, "`kernel` must be an ntk.dkm GramKernel"),
        (dict(layers=0), ValueError, r"`layers` must be an int >= 1; got 0"),
        (dict(y_train=_Y[:4]), ValueError, r"`y_train` must have shape \(5,\).*got \(4,\)"),
        (dict(y_train=_Y[:, None]), ValueError, r"`y_train` must have shape \(n,\)"),
        (dict(x_test=_XS[:, :2]), ValueError, r"`x_test` must have shape \(T, 3\).*got \(2, 2\)"),
        (dict(x_train=_X[:, 0]), ValueError, r"`x_train` must have shape \(n, D\)"),
        (dict(noise_grid=[0.1, -1.0]), ValueError, "`noise_grid` must hold positive"),
        (dict(noise_grid=[]), ValueError, "`noise_grid` must not be empty"),
        (dict(dtype=np.int32), TypeError, "`dtype` must be a floating dtype; got int32"),
        (dict(x_train=np.where(_X > 1, np.nan, _X)), ValueError, "`x_train` must be finite"),
    ],
)
def test_nngp_regression_rejects_bad_input_naming_the_argument(kwargs, error, match):
    args = dict(kernel=dkm.sqexp(), layers=2, x_train=_X, y_train=_Y, x_test=_XS)
    args.update(kwargs)
    with pytest.raises(error, match="nngp_regression: " + match):
        dkm.nngp_regression(**args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(maxiter=0), ValueError, r"`maxiter` must be an int >= 1; got 0"),
        (dict(maxiter=2.5), TypeError, r"`maxiter` must be an int"),
        (dict(y_train=_Y[:3]), ValueError, r"`y_train` must have shape \(5,\)"),
        (dict(x_test=np.zeros((0, 3))), ValueError, r"`x_test` must not be empty"),
    ],
)
def test_sqexp_ard_regression_rejects_bad_input_naming_the_argument(kwargs, error, match):
    args = dict(x_train=_X, y_train=_Y, x_test=_XS)
    args.update(kwargs)
    with pytest.raises(error, match="sqexp_ard_regression: " + match):
        dkm.sqexp_ard_regression(**args)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros(3), np.zeros(2), np.ones(3)), r"`mean` must have the shape of y, \(3,\); got"),
        ((np.zeros(3), np.zeros(3), np.ones(2)), r"`variance` must have the shape of y"),
        ((np.zeros(2), np.zeros(2), np.array([1.0, 0.0])), "`variance` must be positive; got"),
    ],
)
def test_gaussian_log_predictive_rejects_bad_input_naming_the_argument(args, match):
    with pytest.raises(ValueError, match="gaussian_log_predictive: " + match):
        dkm.gaussian_log_predictive(*args)
