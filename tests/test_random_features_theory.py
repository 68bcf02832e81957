"""The eigenframework (ntk.random_features.theory) against closed forms, its own
defining equations, finite differences and Monte Carlo RF regression."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mc import optimised

from ntk.random_features import (
    gaussian_features,
    krr_fitting_curve,
    krr_kappa,
    krr_risk,
    learnabilities,
    rf_kappa_gamma,
    rf_ridge_weights,
    rf_risk,
)

WIDE = jnp.logspace(0.0, -12.0, 400)  # eigenvalues spanning 12 decades


def power_law(m=2000, a=1.5, b=1.5):
    i = jnp.arange(1, m + 1, dtype=jnp.float64)
    return i**-a, jnp.sqrt(i**-b)


@pytest.mark.parametrize("n,ridge", [(10, 1e-3), (100, 0.0), (100, 1e-8), (300, 2.0)])
def test_krr_kappa_matches_closed_form_for_flat_spectrum(n, ridge):
    # M equal eigenvalues λ: n κ² + (nλ − Mλ − δ) κ − δλ = 0.
    m, lam = 200, 0.3
    b = n * lam - m * lam - ridge
    if ridge == 0.0:
        want = max(-b / n, 0.0)
    else:
        want = (-b + np.sqrt(b * b + 4 * n * ridge * lam)) / (2 * n)
    got = krr_kappa(jnp.full((m,), lam), n, ridge)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize(
    "n,k,ridge",
    [
        (64, 256, 1e-14),
        (256, 64, 1e-6),
        (100, 1000, 0.0),
        (1000, 100, 1e-3),
        (300, 300, 1.0),
        (50, 20, 1e-9),
    ],
)
def test_rf_solver_satisfies_both_equations_over_twelve_decades(n, k, ridge):
    kappa, gamma = rf_kappa_gamma(WIDE, n, k, ridge)
    L = WIDE / (WIDE + gamma)
    assert kappa > 0 and gamma > 0
    np.testing.assert_allclose(L.sum() + k * kappa / gamma, k, rtol=1e-10)
    if ridge > 0:
        np.testing.assert_allclose(L.sum() + ridge / kappa, n, rtol=1e-8)


@pytest.mark.parametrize("n,ridge", [(64, 1e-10), (200, 1e-3), (300, 0.0), (1000, 1.0)])
def test_krr_solver_satisfies_its_equation_over_twelve_decades(n, ridge):
    kappa = krr_kappa(WIDE, n, ridge)
    lhs = jnp.sum(WIDE / (WIDE + kappa)) + ridge / kappa
    np.testing.assert_allclose(lhs, n, rtol=1e-10)


@pytest.mark.parametrize("n,ridge", [(64, 0.0), (256, 1e-2), (100, 1.0)])
def test_infinite_features_equal_krr_theory(n, ridge):
    lam, v = power_law()
    krr = krr_risk(lam, v, n, ridge, 0.5)
    inf = rf_risk(lam, v, n, jnp.inf, ridge, 0.5)
    big = rf_risk(lam, v, n, 1e9, ridge, 0.5)
    np.testing.assert_allclose(inf.test_mse, krr.test_mse, rtol=1e-10)
    np.testing.assert_allclose(inf.train_mse, krr.train_mse, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(inf.gamma, krr.kappa, rtol=1e-10)
    np.testing.assert_allclose(big.test_mse, krr.test_mse, rtol=1e-6)
    np.testing.assert_allclose(big.kappa, krr.kappa, rtol=1e-6)


def test_ridgeless_underparameterised_limit_is_least_squares():
    # δ = 0, n > k: RF is least squares with k features, E_0 → n/(n − k).
    lam, v = power_law()
    th = rf_risk(lam, v, 400, 100, 0.0, 0.5)
    np.testing.assert_allclose(th.e0, 400 / 300, rtol=1e-6)
    np.testing.assert_allclose(th.train_mse / th.test_mse, (300 / 400) ** 2, rtol=1e-6)


_I = jnp.arange(1, 1001, dtype=jnp.float64)
_P0 = jnp.array([1e-2, 150.0, 300.0, 0.5, 1.5])  # ridge, n, k, σ², α


def _risk_of(p):
    lam = _I ** -p[4]
    return rf_risk(lam, jnp.sqrt(lam), p[1], p[2], p[0], p[3]).test_mse


@pytest.mark.parametrize("i,name", list(enumerate(["ridge", "n", "k", "noise", "alpha"])))
def test_gradients_are_finite_and_match_finite_differences(i, name):
    g = jax.grad(_risk_of)(_P0)[i]
    h = 1e-5 * _P0[i]
    e = jnp.zeros(5).at[i].set(h)
    fd = (_risk_of(_P0 + e) - _risk_of(_P0 - e)) / (2 * h)
    assert np.isfinite(g)
    np.testing.assert_allclose(g, fd, rtol=1e-5)


_RIDGELESS = {  # δ = 0 on either side of the interpolation threshold k = n
    "k < n, d/dk": (lambda k: rf_risk(*power_law(500), 64.0, k, 0.0, 0.1).test_mse, 32.0),
    "k < n, d/dn": (lambda n: rf_risk(*power_law(500), n, 32.0, 0.0, 0.1).test_mse, 64.0),
    "k > n, d/dk": (lambda k: rf_risk(*power_law(500), 32.0, k, 0.0, 0.1).test_mse, 64.0),
    "KRR, d/dn": (lambda n: krr_risk(*power_law(500), n, 0.0, 0.1).test_mse, 32.0),
}


@pytest.mark.parametrize("name", sorted(_RIDGELESS))
def test_ridgeless_gradients_match_finite_differences(name):
    # At δ = 0 and k < n the solution sits where z = k, the edge of the domain
    # of the n-equation: its implicit derivative must come from the k-equation.
    f, p0 = _RIDGELESS[name]
    h = 1e-3
    fd = (f(p0 + h) - f(p0 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(f)(p0), fd, rtol=1e-6)


@pytest.mark.parametrize(
    "name, f",
    [
        ("krr_kappa", lambda r: krr_kappa(power_law(500)[0], 64.0, r)),
        ("krr_risk", lambda r: krr_risk(*power_law(500), 64.0, r, 0.1).test_mse),
        ("rf_risk", lambda r: rf_risk(*power_law(500), 64.0, 32.0, r, 0.1).test_mse),
    ],
)
def test_second_derivatives_in_the_ridge_match_finite_differences(name, f):
    # Of the first derivative (itself checked above), central differences: h² error.
    g, r, h = jax.grad(f), 1e-3, 1e-6
    fd = (g(r + h) - g(r - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(g)(r), fd, rtol=1e-5)
    np.testing.assert_allclose(jax.jacfwd(g)(r), fd, rtol=1e-5)


def test_theory_is_jittable_and_vmaps_over_a_grid():
    lam, v = power_law(500)
    grid = jnp.array([[64.0, 64.0, 1e-2], [128.0, 512.0, 0.0], [512.0, 128.0, 1.0]])
    fn = jax.jit(jax.vmap(lambda p: rf_risk(lam, v, p[0], p[1], p[2], 0.5).test_mse))
    one = [rf_risk(lam, v, *p, 0.5).test_mse for p in grid]
    np.testing.assert_allclose(fn(grid), one, rtol=1e-12)


# ------------------------------------------------------- theory vs simulation

M_SIM, NOISE = 1000, 0.5


def _simulate(n, k, ridges, trials, seed):
    # Simulations in float32 (fast); the theory in float64.
    lam64, v64 = power_law(M_SIM)
    lam, v = lam64.astype(jnp.float32), v64.astype(jnp.float32)

    def trial(key):
        kx, kf, ke = jax.random.split(key, 3)
        x = jax.random.normal(kx, (n, M_SIM), jnp.float32)
        y = x @ v + jnp.sqrt(NOISE) * jax.random.normal(ke, (n,), jnp.float32)
        phi, proj = gaussian_features(kf, x, lam, k)
        w = rf_ridge_weights(phi, y, ridges.astype(jnp.float32))
        beta = w @ proj  # f̂(x) = x·β
        test = jnp.sum((beta - v[None, :]) ** 2, axis=1) + NOISE  # exact population risk
        train = jnp.mean((w @ phi.T - y[None, :]) ** 2, axis=1)
        return train, test

    keys = jax.random.split(jax.random.PRNGKey(seed), trials)
    train, test = optimised(lambda ks: jax.lax.map(trial, ks), keys)(keys)
    theory = jax.vmap(lambda r: rf_risk(lam64, v64, n, k, r, NOISE))(ridges)
    return train, test, theory


@pytest.mark.parametrize("n,k", [(64, 256), (256, 64), (128, 128)])
def test_rf_test_mse_matches_simulation_within_5_percent(n, k):
    ridges = jnp.array([1e-2, 1e-1, 1.0])
    _, test, theory = _simulate(n, k, ridges, trials=24, seed=n + k)
    rel = test.mean(0) / theory.test_mse - 1
    assert np.all(np.abs(rel) < 0.05), rel


def test_rf_train_mse_matches_simulation_at_moderate_size():
    # E_tr = (δ/nκ)² E_te carries O(1/n) finite-size corrections (≈ 3–6% here,
    # < 1% at n = 512, k = 1024); a wrong train formula misses by far more.
    ridges = jnp.array([1e-1, 1.0])
    train, _, theory = _simulate(256, 512, ridges, trials=12, seed=7)
    rel = train.mean(0) / theory.train_mse - 1
    assert np.all(np.abs(rel) < 0.1), rel


@pytest.mark.parametrize("n", [128, 256])
def test_interpolation_peak_agrees_within_monte_carlo_error(n):
    # At n = k and small δ the per-trial test MSE is right-skewed with a relative
    # spread of ~22% (n = 128) and ~14% (n = 256), so a 20-trial mean is only good
    # to ~5% / 3% (one SE); that, not the theory, is the 12.7% gap of a 20-trial
    # grid at n = k = 128, δ = 1e-3. With 400 trials the SE is ~1.1% / 0.7%: ask
    # for |z| < 4 and |rel| < 5%. Dropping the RF terms (KRR theory at the same
    # n, δ) would miss by a factor 1.7–5.7; a theory 5% off gives |z| > 5 at δ = 1e-2.
    ridges = jnp.array([1e-3, 1e-2])
    _, test, theory = _simulate(n, n, ridges, trials=400, seed=3 * n)
    test = np.asarray(test, np.float64)
    mean, se = test.mean(0), test.std(0, ddof=1) / np.sqrt(test.shape[0])
    th = np.asarray(theory.test_mse)
    z, rel = (mean - th) / se, mean / th - 1
    assert np.all(np.abs(z) < 4) and np.all(np.abs(rel) < 0.05), (z, rel)


def _flat_kappa(m, lam, n, ridge):
    # the positive root of n κ² + (nλ − Mλ − δ) κ − δλ = 0 (flat spectrum)
    b = n * lam - m * lam - ridge
    return (-b + np.sqrt(b**2 + 4 * n * ridge * lam)) / (2 * n)


def test_fitting_curve_matches_the_flat_spectrum_closed_form():
    # M equal eigenvalues λ, Σ v² = s, noise σ²: κ from the quadratic,
    # L = λ/(λ + κ), E_te = n/(n − M L²)·((1 − L)² s + σ²), E_tr/E_te = (δ/(nκ))².
    m, lam, n, s, noise = 200, 0.3, 80, 2.0, 0.5
    ridges = np.array([0.0, 1e-3, 0.1, 1.0, 10.0, 1e3])
    curve = krr_fitting_curve(jnp.full(m, lam), jnp.full(m, np.sqrt(s / m)), n, ridges, noise)
    kappa = _flat_kappa(m, lam, n, ridges)
    L = lam / (lam + kappa)
    test = n / (n - m * L**2) * ((1 - L) ** 2 * s + noise)
    np.testing.assert_allclose(curve.test_mse, test, rtol=1e-9)
    # at δ = 0 (n < M: interpolation) the theory's ((n − Σ L_i)/n)² is 0 up to
    # the round-off of n − Σ L_i (~1e-14 · n), squared: atol 1e-20
    ratio = (ridges / (n * kappa)) ** 2
    np.testing.assert_allclose(curve.train_mse, ratio * test, rtol=1e-9, atol=1e-20)
    np.testing.assert_allclose(curve.fitting_ratio, ratio, rtol=1e-9, atol=1e-20)
    assert np.all(np.diff(curve.fitting_ratio) > 0) and curve.fitting_ratio[-1] < 1


@pytest.mark.parametrize("n", [40, 150, 400])
def test_optimal_ridge_of_an_isotropic_task_is_noise_times_dimension_over_signal(n):
    # Isotropic task (M equal eigenvalues λ, Σ v² = s, noise σ²): ridge
    # regression's test risk depends on the target only through s, so the
    # Bayes-optimal ridge δ* = σ² M λ / s is optimal for every target and n
    # (Dobriban & Wager 2018, Thm. 2.1, in this normalisation). The grid has
    # 2001 ridges over 6 decades: the optimum is within one step (× 10^0.003).
    m, lam, s, noise = 100, 0.3, 2.0, 0.5
    ridges = np.geomspace(1e-3, 1e3, 2001)
    curve = krr_fitting_curve(jnp.full(m, lam), jnp.full(m, np.sqrt(s / m)), n, ridges, noise)
    want = noise * m * lam / s
    assert abs(np.log10(curve.optimal_ridge / want)) <= 0.003
    assert curve.best == int(np.argmin(np.asarray(curve.test_mse)))
    assert curve.optimal_ratio == pytest.approx(
        float(curve.train_mse[curve.best] / curve.test_mse[curve.best]), rel=1e-12
    )


@pytest.mark.parametrize("bad", [jnp.ones((3, 3)), jnp.ones((0,))])
def test_bad_eigvals_raise(bad):
    with pytest.raises(ValueError, match="eigvals"):
        rf_risk(bad, jnp.ones(3), 10, 10, 0.1)


def test_mismatched_coeffs_raise():
    with pytest.raises(ValueError, match="target_coeffs"):
        krr_risk(jnp.ones(5), jnp.ones(4), 10, 0.1)


_LAM = jnp.arange(1, 51.0) ** -1.5
_V = jnp.sqrt(_LAM)


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: rf_risk(_LAM, _V, 0, 10, 1e-2), ValueError, "`n` must be a number > 0; got 0.0"),
        (lambda: rf_risk(_LAM, _V, -5, 10, 1e-2), ValueError, "`n` must be a number > 0"),
        (lambda: rf_risk(_LAM, _V, np.nan, 10, 1e-2), ValueError, "`n` must be a number > 0"),
        (
            lambda: rf_risk(_LAM, _V, 10, 0, 1e-2),
            ValueError,
            r"`k` must be a number > 0 \(or inf\)",
        ),
        (lambda: rf_risk(_LAM, _V, 10, 10, -1e-2), ValueError, "`ridge` must be a number >= 0"),
        (
            lambda: rf_risk(_LAM, _V, 10, 10, 1e-2, -0.5),
            ValueError,
            "`noise_var` must be a number >= 0",
        ),
        (lambda: rf_risk(_LAM, _V, "ten", 10, 1e-2), TypeError, "`n` must be a numeric array"),
        (lambda: rf_risk(-_LAM, _V, 10, 10, 1e-2), ValueError, "`eigvals` must be >= 0"),
        (
            lambda: rf_risk(_LAM.at[3].set(jnp.nan), _V, 10, 10, 1e-2),
            ValueError,
            "`eigvals` must be finite",
        ),
        (
            lambda: rf_risk(_LAM, _V.at[0].set(jnp.inf), 10, 10, 1e-2),
            ValueError,
            "`target_coeffs` must be finite",
        ),
        (
            lambda: krr_risk(_LAM, _V, 10, -1.0),
            ValueError,
            "krr_risk: `ridge` must be a number >= 0",
        ),
        (lambda: krr_kappa(_LAM, 0, 1e-3), ValueError, "krr_kappa: `n` must be a number > 0"),
        (lambda: rf_kappa_gamma(_LAM, 10, -3, 1e-3), ValueError, "rf_kappa_gamma: `k`"),
        (lambda: learnabilities(_LAM, 0.0), ValueError, "`gamma` must be a number > 0"),
        (
            lambda: krr_fitting_curve(_LAM, _V, 10, np.array([1e-3, -1.0])),
            ValueError,
            r"krr_fitting_curve: `ridges` must be >= 0; got \[-1.0\]",
        ),
        (
            lambda: krr_fitting_curve(_LAM, _V, 10, np.ones((2, 2))),
            ValueError,
            r"krr_fitting_curve: `ridges` must have shape \(R,\)",
        ),
        (
            lambda: krr_fitting_curve(_LAM, _V, 10, np.ones(0)),
            ValueError,
            "krr_fitting_curve: `ridges`",
        ),
        (
            lambda: krr_fitting_curve(_LAM, _V, 0, np.ones(3)),
            ValueError,
            "`n` must be a number > 0",
        ),
        (
            lambda: krr_fitting_curve(_LAM, _V[:4], 10, np.ones(3)),
            ValueError,
            "`target_coeffs` must have shape",
        ),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_range_checks_do_not_block_tracing_and_infinite_features():
    # Traced n (vmap) skips the concrete checks; k = inf (KRR) is allowed.
    ns = jnp.array([16.0, 64.0])
    rf = jax.vmap(lambda n: rf_risk(_LAM, _V, n, jnp.inf, 1e-3, 0.1).test_mse)(ns)
    krr = jnp.stack([krr_risk(_LAM, _V, n, 1e-3, 0.1).test_mse for n in ns])
    np.testing.assert_allclose(rf, krr, rtol=1e-10)


@pytest.mark.parametrize("ridge", [1e-8, 1e-6, 1e-3])
def test_float32_fitting_ratio_falls_with_the_ridge_like_float64(ridge):
    # E_tr/E_te = (δ/(nκ))²: from ((n − z)/n)² it stopped at ~eps² in float32.
    lam64 = jnp.arange(1, 20001, dtype=jnp.float64) ** -1.2
    ratio = {}
    for dtype in (jnp.float32, jnp.float64):
        lam = lam64.astype(dtype)
        th = krr_risk(lam, jnp.sqrt(lam), 256.0, ridge)
        ratio[dtype] = float(th.train_mse) / float(th.test_mse)
    np.testing.assert_allclose(ratio[jnp.float32], ratio[jnp.float64], rtol=1e-3)
