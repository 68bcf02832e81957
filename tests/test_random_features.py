"""ntk.random_features: features (Monte Carlo kernels), ridge solves, eigenstructure."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from ntk.empirical import empirical_ntk_fn
from ntk.random_features import (
    eigendecompose,
    exponents_from_sizes,
    fit_alpha,
    fit_beta,
    fourier_features,
    gaussian_features,
    inverse_trace_kappa,
    kernel_eigensystem,
    kernel_exponents,
    kernel_feature_sampler,
    krr_kappa,
    krr_risk,
    log_binned_means,
    mode_power_cv,
    mse,
    network_features,
    ntk_features,
    optimal_ridge,
    power_law_fit,
    relu_features,
    ridgeless_krr_mse,
    rf_ridge_mse,
    rf_ridge_weights,
)


def _data(n=24, d=6, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, d))


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


# ----------------------------------------------------------------- features


def test_relu_features_gram_is_monte_carlo_nngp_of_dense_relu():
    x = _data()
    k = 8192
    phi = relu_features(jax.random.PRNGKey(1), x, k, W_std=1.3, b_std=0.2)
    want = stax.serial(stax.Dense(1, W_std=1.3, b_std=0.2), stax.Relu())[2](x, x, "nngp")
    # Monte Carlo error of a mean of k i.i.d. terms: O(1/√k) ≈ 0.007 relative.
    assert _rel(phi @ phi.T, want) < 6 / math.sqrt(k)


def test_fourier_features_gram_is_monte_carlo_rbf():
    x = _data()
    k, ell = 8192, 2.0
    phi = fourier_features(jax.random.PRNGKey(2), x, k, lengthscale=ell)
    d2 = jnp.sum((x[:, None] - x[None]) ** 2, -1)
    assert _rel(phi @ phi.T, jnp.exp(-d2 / (2 * ell**2))) < 6 / math.sqrt(k)


def test_kernel_features_have_the_kernel_as_second_moment():
    """E[ΦΦᵀ] = K for Gaussian features of the ReLU NNGP matrix: the k-feature
    average has relative Frobenius error ≈ √((Tr K)² + ‖K‖²)/(√k ‖K‖) ≈ 0.03
    here (k = 20,000); allow 0.06."""
    x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    kernel = np.asarray(stax.serial(stax.Dense(1), stax.Relu())[2](x, x, "nngp"), np.float64)
    phi = np.asarray(kernel_feature_sampler(kernel)(jax.random.PRNGKey(0), 20000), np.float64)
    assert phi.shape == (40, 20000)
    assert np.linalg.norm(phi @ phi.T - kernel) / np.linalg.norm(kernel) < 0.06


def test_mode_power_cv_is_chi_square_for_gaussian_and_larger_for_relu_features():
    """Gaussian features: q ~ χ²_m/m, CV √(2/m) = 0.447 for m = 10 (the CV of
    20,000 draws is good to ≈ 1%; allow 5%). ReLU features of the same
    arc-cosine kernel spread their power over the eigenmodes more unevenly."""
    x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    kernel = np.asarray(stax.serial(stax.Dense(1), stax.Relu())[2](x, x, "nngp"), np.float64)
    k = 20000
    cv_g = mode_power_cv(kernel_feature_sampler(kernel)(jax.random.PRNGKey(0), k), kernel, 10)
    assert abs(cv_g / np.sqrt(2 / 10) - 1) < 0.05, cv_g
    relu = np.asarray(relu_features(jax.random.PRNGKey(1), x, k), np.float64)
    assert np.linalg.norm(relu @ relu.T - kernel) / np.linalg.norm(kernel) < 0.06
    assert mode_power_cv(relu, kernel, 10) > 1.3 * cv_g
    # scale-free: unnormalised features give the same spread
    assert mode_power_cv(relu * np.sqrt(k), kernel, 10) == pytest.approx(
        mode_power_cv(relu, kernel, 10), rel=1e-12
    )


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_network_features_gram_is_monte_carlo_nngp_of_the_network(arch):
    if arch == "dense":
        x = _data()
        net = stax.serial(stax.Dense(8192, W_std=1.2, b_std=0.1), stax.Erf())
    else:
        x = jax.random.normal(jax.random.PRNGKey(3), (6, 5, 5, 2))
        net = stax.serial(stax.Conv(512, (3, 3), padding="SAME"), stax.Relu())
    phi = network_features(net, jax.random.PRNGKey(4), x)
    # Flattening averages the per-position covariances (the stax Flatten kernel).
    want = stax.serial(net, stax.Flatten())[2](x, x, "nngp")
    assert _rel(phi @ phi.T, want) < 0.05


def test_ntk_features_gram_equals_empirical_ntk():
    x = _data(10, 4)
    init_fn, apply_fn, _ = stax.serial(stax.Dense(32), stax.Relu(), stax.Dense(1))
    _, params = init_fn(jax.random.PRNGKey(5), x.shape)
    phi = ntk_features(apply_fn, params, x)
    want = empirical_ntk_fn(apply_fn)(x, None, params)
    np.testing.assert_allclose(phi @ phi.T, want, rtol=1e-10, atol=1e-12)


def test_ntk_features_reject_vector_outputs():
    x = _data(4, 3)
    init_fn, apply_fn, _ = stax.Dense(3)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="one output per example"):
        ntk_features(apply_fn, params, x)


@pytest.mark.parametrize("fn", [relu_features, fourier_features])
def test_features_reject_non_matrix_inputs_and_bad_k(fn):
    with pytest.raises(ValueError, match="`x` must have shape"):
        fn(jax.random.PRNGKey(0), jnp.ones((3, 2, 2)), 4)
    with pytest.raises(ValueError, match="`k` must be an int >= 1"):
        fn(jax.random.PRNGKey(0), jnp.ones((3, 2)), 0)


# -------------------------------------------------------------------- ridge


def _problem(n, k, t=2, seed=0):
    kp, ky, kt = jax.random.split(jax.random.PRNGKey(seed), 3)
    phi = jax.random.normal(kp, (n + 7, k)) / math.sqrt(k)
    y = jax.random.normal(ky, (n + 7, t))
    return phi[:n], y[:n], phi[n:], y[n:]


@pytest.mark.parametrize("n,k", [(30, 12), (12, 30), (20, 20)])
def test_primal_and_dual_solves_agree_and_equal_the_direct_formula(n, k):
    phi, y, _, _ = _problem(n, k)
    ridges = jnp.array([1e-4, 0.1, 3.0])
    wp = rf_ridge_weights(phi, y, ridges, method="primal")
    wd = rf_ridge_weights(phi, y, ridges, method="dual")
    direct = jnp.stack([phi.T @ jnp.linalg.solve(phi @ phi.T + r * jnp.eye(n), y) for r in ridges])
    np.testing.assert_allclose(wp, wd, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(wp, direct, rtol=1e-8, atol=1e-10)


def test_ridgeless_primal_is_least_squares_when_k_below_n():
    phi, y, _, _ = _problem(40, 10)
    w = rf_ridge_weights(phi, y, jnp.array([0.0]))[0]
    np.testing.assert_allclose(w, jnp.linalg.lstsq(phi, y)[0], rtol=1e-8, atol=1e-10)


def test_ridgeless_dual_is_the_min_norm_interpolant_when_k_above_n():
    phi, y, _, _ = _problem(10, 40)
    w = rf_ridge_weights(phi, y, jnp.array([0.0]))[0]
    np.testing.assert_allclose(phi @ w, y, atol=1e-9)
    np.testing.assert_allclose(w, jnp.linalg.pinv(phi) @ y, rtol=1e-8, atol=1e-10)


def test_ridge_mse_vmaps_over_trials_and_matches_a_loop():
    probs = [_problem(15, 25, seed=s) for s in range(3)]
    stacked = [jnp.stack(p) for p in zip(*probs)]
    ridges = jnp.array([0.0, 0.01, 1.0])
    tr, te = jax.vmap(lambda a, b, c, d: rf_ridge_mse(a, b, c, d, ridges))(*stacked)
    for i, p in enumerate(probs):
        w = rf_ridge_weights(p[0], p[1], ridges)
        want = jnp.mean(jnp.sum((jnp.einsum("ak,rkt->rat", p[2], w) - p[3][None]) ** 2, -1), -1)
        np.testing.assert_allclose(te[i], want, rtol=1e-9)
    assert tr.shape == (3, 3) and float(tr[:, 0].max()) < 1e-12  # interpolation


def test_optimal_ridge_picks_the_minimum_and_skips_nan():
    ridges = jnp.array([0.0, 0.1, 1.0, 10.0])
    mse = jnp.array([[jnp.nan, 0.3, 0.2, 0.5], [0.1, 0.3, 0.2, 0.5]])
    best, val = optimal_ridge(ridges, mse)
    np.testing.assert_allclose(best, [1.0, 0.0])
    np.testing.assert_allclose(val, [0.2, 0.1])


def test_ridge_rejects_bad_shapes_and_methods():
    phi, y, _, _ = _problem(8, 4)
    with pytest.raises(ValueError, match="`y` must have shape"):
        rf_ridge_weights(phi, y[:5], jnp.array([0.1]))
    with pytest.raises(ValueError, match="method"):
        rf_ridge_weights(phi, y, jnp.array([0.1]), method="qr")


# -------------------------------------------------------------- eigen


def test_eigendecompose_reconstructs_kernel_and_target_power():
    x = _data(40, 5)
    kern = stax.serial(stax.Dense(1), stax.Relu())[2](x, x, "nngp")
    y = jnp.sin(x[:, 0])
    lam, v = eigendecompose(kern, y)
    n = x.shape[0]
    assert bool(jnp.all(jnp.diff(lam) <= 0))
    np.testing.assert_allclose(jnp.sum(lam), jnp.trace(kern) / n, rtol=1e-10)
    np.testing.assert_allclose(jnp.sum(v**2), jnp.mean(y**2), rtol=1e-10)


@pytest.mark.parametrize("alpha,beta", [(1.2, 1.4), (1.5, 1.5), (2.0, 1.2)])
def test_power_law_fits_recover_exponents(alpha, beta):
    i = np.arange(1, 5001.0)
    assert abs(fit_alpha(i**-alpha, 10, 1000) - alpha) < 1e-8
    assert abs(fit_beta(np.sqrt(i**-beta), 10, 1000) - beta) < 0.01


def test_beta_fit_averages_out_random_signs_and_scatter():
    i = np.arange(1, 5001.0)
    noise = np.random.default_rng(0).standard_normal(i.shape)  # v_i = √(i^-β)·ξ_i
    assert abs(fit_beta(np.sqrt(i**-1.4) * noise, 10, 3000) - 1.4) < 0.1


def test_inverse_trace_proxy_estimates_ridgeless_kappa():
    # Simon et al. 2021: κ ≈ (Tr K_n⁻¹)⁻¹ for a Gram of n samples.
    m, n = 3000, 200
    lam = jnp.arange(1, m + 1.0) ** -1.5
    x = jax.random.normal(jax.random.PRNGKey(8), (n, m))
    kern = (x * lam[None, :]) @ x.T
    np.testing.assert_allclose(inverse_trace_kappa(kern), krr_kappa(lam, n, 0.0), rtol=0.1)


def test_kernel_eigensystem_reconstructs_the_kernel_descending_and_clipped():
    # Rank 5 PSD kernel of 12 points: 7 zero eigenvalues, which round-off makes
    # ± 1e-15; the clipped system still reconstructs K, with orthonormal U and
    # the eigenvalues of numpy's eigvalsh (the oracle) in reverse order.
    a = np.random.default_rng(1).standard_normal((12, 5))
    kern = a @ a.T
    mu, u = kernel_eigensystem(kern)
    assert mu.dtype == u.dtype == np.float64
    assert np.all(np.diff(mu) <= 0) and np.all(mu >= 0)
    np.testing.assert_allclose(mu, np.clip(np.linalg.eigvalsh(kern)[::-1], 0, None), atol=1e-12)
    np.testing.assert_allclose(u.T @ u, np.eye(12), atol=1e-12)
    np.testing.assert_allclose((u * mu) @ u.T, kern, atol=1e-12)
    # eigenvector of each nonzero eigenvalue: K u_i = μ_i u_i
    np.testing.assert_allclose(kern @ u[:, :5], u[:, :5] * mu[:5], atol=1e-12)


def test_kernel_eigensystem_uses_the_symmetric_part():
    # eigh alone reads one triangle; a round-off asymmetry of 1e-9 must count
    # on both sides: the eigenvalues equal those of (K + Kᵀ)/2.
    kern = _KP + 1e-9 * np.triu(np.ones((6, 6)), 1)
    mu, _ = kernel_eigensystem(kern)
    sym = 0.5 * (kern + kern.T)
    np.testing.assert_allclose(mu, np.linalg.eigvalsh(sym)[::-1], rtol=1e-13)


def test_a_shared_eigensystem_gives_the_same_features_and_spread():
    # eig= is a cache: passing kernel_eigensystem(K) changes nothing, bit for bit.
    mu_u = kernel_eigensystem(_KP)
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(
        kernel_feature_sampler(_KP)(key, 50), kernel_feature_sampler(_KP, mu_u)(key, 50)
    )
    phi = np.random.default_rng(0).standard_normal((6, 40))
    assert mode_power_cv(phi, _KP, 3) == mode_power_cv(phi, _KP, 3, mu_u)


def test_kernel_feature_sampler_is_the_psd_root_times_gaussians():
    # Φ = K^{1/2} Z/√k for the sampler's own draw Z = normal(key, (N, k)), with
    # the oracle root U diag(√μ) Uᵀ (which squares to K); the kernel has rank 3,
    # so its zero modes' negative round-off must be clipped, not rooted (NaN).
    # The sampler's root is float32: relative error ~1e-7; allow 1e-5.
    a = np.random.default_rng(2).standard_normal((8, 3))
    kern = a @ a.T
    mu, u = kernel_eigensystem(kern)
    half = (u * np.sqrt(mu)) @ u.T
    np.testing.assert_allclose(half @ half, kern, atol=1e-12)
    key, k = jax.random.PRNGKey(0), 5
    phi = np.asarray(kernel_feature_sampler(kern)(key, k), np.float64)
    z = np.asarray(jax.random.normal(key, (8, k), jnp.float32), np.float64)
    np.testing.assert_allclose(phi, half @ z / np.sqrt(k), atol=1e-5 * np.abs(kern).max())


def test_log_binned_means_are_the_bin_averages_at_geometric_centres():
    values = np.random.default_rng(0).standard_normal(300) ** 2
    centres, means = log_binned_means(values, 3, 250, bins=6)
    edges = np.unique(np.round(np.geomspace(3, 251, 7)).astype(int))
    assert len(means) == len(edges) - 1 == 6
    for c, m, lo, hi in zip(centres, means, edges[:-1], edges[1:]):
        idx = np.arange(lo, hi)  # 1-based indices of the bin
        assert m == pytest.approx(np.mean(values[idx - 1]), rel=1e-12)
        assert c == pytest.approx(np.prod(idx.astype(float)) ** (1 / len(idx)), rel=1e-9)
    # bins cover 3 … 250 without gaps or overlaps
    assert edges[0] == 3 and edges[-1] == 251


def _exact_kernel(n=240, seed=0):
    """A pool kernel with exact eigenstructure: K = U diag(N λ) Uᵀ, y = √N U v,
    λ_i = i^-1.5 up to mode 50 and ∝ i^-2.5 after (continuous), v_i² = i^-1.3."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    i = np.arange(1, n + 1.0)
    lam = np.where(i <= 50, i**-1.5, 50.0 * i**-2.5)
    v = i**-0.65 * rng.choice([-1.0, 1.0], n)
    return (u * (n * lam)) @ u.T, np.sqrt(n) * u @ v


def test_kernel_exponents_recover_the_spectrum_and_target_power_laws():
    # The pool's eigendecomposition is exact, so α is the fit of an exact power
    # law over the default modes 2 … N/5 = 48 (all below the bend at 50): 1.5 to
    # round-off; fit_range past the bend gives 2.5. β is fitted to binned
    # v_i² = i^-1.3 exactly; binning biases it by < 0.01 (measured 0.002).
    kern, y = _exact_kernel()
    key = jax.random.PRNGKey(0)
    out = kernel_exponents(kern, y, key, sizes=[30, 60], trials=1)
    assert out.fit_range == (2, 48)
    assert out.alpha == pytest.approx(1.5, abs=1e-8)
    assert out.beta == pytest.approx(1.3, abs=0.01)
    assert out.eigvals.shape == out.target_coeffs.shape == (240,)
    tail = kernel_exponents(kern, y, key, fit_range=(60, 120), sizes=[30, 60], trials=1)
    assert tail.alpha == pytest.approx(2.5, abs=1e-8)


def test_proxy_standard_errors_match_the_spread_over_subset_draws():
    # One Gaussian pool (Cov = diag(i^-1.5), v_i² = i^-1.3), 40 independent
    # draws of the subsets (4 per size): the delta-method s.e. of each draw
    # (RMS over draws) should equal the exponents' standard deviation across
    # draws. A sample sd of 40 draws is uncertain by ~11%, so the ratio must
    # sit in [0.7, 1.4] (measured: 1.12 for α, 1.10 for β over 60 draws); an
    # s.e. that forgot the 1/√trials of a mean would be twice as large.
    m, n, sizes = 2000, 240, [30, 60, 120]
    i = np.arange(1, m + 1.0)
    x = np.random.default_rng(0).standard_normal((n, m))
    kern, y = (x * i**-1.5) @ x.T, x @ i**-0.65
    draws = [
        exponents_from_sizes(kern, y, sizes, jax.random.PRNGKey(r), trials=4, n_test=120)
        for r in range(40)
    ]
    for at, se_key in ((0, "alpha_se"), (1, "beta_se")):
        spread = np.std([d[at] for d in draws], ddof=1)
        rms_se = np.sqrt(np.mean([d[2][se_key] ** 2 for d in draws]))
        assert 0.7 <= spread / rms_se <= 1.4
    assert math.isnan(
        exponents_from_sizes(kern, y, sizes, jax.random.PRNGKey(0), trials=1)[2]["alpha_se"]
    )


def test_kernel_exponent_proxies_follow_the_eigenframework():
    # A pool of i.i.d. Gaussian points with Cov = diag(λ), λ_i = i^-1.5 (2000
    # modes), target v_i² = i^-1.3: every subset is an i.i.d. sample, so the
    # proxies (Tr K_n⁻¹)⁻¹ and the ridgeless test MSE scale as the theory's κ(n)
    # and E_te(n) (krr_kappa, krr_risk) over the same sizes. Monte Carlo with 4
    # subsets per size: deviations over 6 seeds were ≤ 0.02 (α) and ≤ 0.05 (β);
    # allow 0.05 and 0.1.
    m, n, sizes = 2000, 240, [30, 60, 120]
    i = np.arange(1, m + 1.0)
    lam, v = i**-1.5, i**-0.65
    x = np.random.default_rng(0).standard_normal((n, m))
    out = kernel_exponents((x * lam) @ x.T, x @ v, jax.random.PRNGKey(10), sizes=sizes, trials=4)
    kappa = [float(krr_kappa(jnp.asarray(lam), s, 0.0)) for s in sizes]
    mse = [float(krr_risk(jnp.asarray(lam), jnp.asarray(v), s, 0.0).test_mse) for s in sizes]
    alpha_theory = -np.polyfit(np.log(sizes), np.log(kappa), 1)[0]
    beta_theory = 1 - np.polyfit(np.log(sizes), np.log(mse), 1)[0]
    assert out.alpha_proxy == pytest.approx(alpha_theory, abs=0.05)
    assert out.beta_proxy == pytest.approx(beta_theory, abs=0.1)
    assert list(out.proxy["sizes"]) == sizes


# --------------------------------------------------------------- validation

_PHI = np.random.default_rng(0).normal(size=(6, 3))
_YV = np.arange(6.0)
_KP = _PHI @ _PHI.T + np.eye(6)


def _stax_fn():
    init_fn, apply_fn, _ = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
    return init_fn, apply_fn


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (
            lambda: rf_ridge_weights(_PHI, _YV, jnp.array([-1e-3, 0.1])),
            ValueError,
            r"`ridges` must be >= 0; got \[-0.001\]",
        ),
        (
            lambda: rf_ridge_mse(_PHI, _YV, _PHI, _YV, jnp.array([-1.0])),
            ValueError,
            "rf_ridge_mse: `ridges` must be >= 0",
        ),
        (
            lambda: rf_ridge_weights(_PHI, _YV, jnp.array([jnp.nan])),
            ValueError,
            "`ridges` must be finite",
        ),
        (
            lambda: rf_ridge_weights(_PHI, _YV, jnp.array([])),
            ValueError,
            "`ridges` must not be empty",
        ),
        (lambda: rf_ridge_weights(_PHI, _YV, jnp.array([0.1]), rcond=-1.0), ValueError, "`rcond`"),
        (
            lambda: rf_ridge_weights(_PHI * np.nan, _YV, jnp.array([0.1])),
            ValueError,
            "`phi` must be finite",
        ),
        (
            lambda: rf_ridge_mse(_PHI, _YV, _PHI, _YV[:4], jnp.array([0.1])),
            ValueError,
            r"`y_test` must have shape \(6,\)",
        ),
        (
            lambda: mse(jnp.ones((4, 1)), jnp.ones(4)),
            ValueError,
            "`pred` and `y` must have the same shape",
        ),
        (
            lambda: optimal_ridge(jnp.ones(3), jnp.ones((2, 3)), axis=2),
            ValueError,
            r"`axis` must be an int in \[-2, 1\]",
        ),
        (
            lambda: relu_features(jax.random.PRNGKey(0), _PHI, 4, W_std=-1.0),
            ValueError,
            "`W_std` must be a number >= 0",
        ),
        (
            lambda: fourier_features(jax.random.PRNGKey(0), _PHI, 4, lengthscale=0.0),
            ValueError,
            "`lengthscale` must be a number > 0",
        ),
        (
            lambda: fourier_features(jax.random.PRNGKey(0), _PHI, 4, lengthscale="1"),
            TypeError,
            "`lengthscale`",
        ),
        (
            lambda: gaussian_features(jax.random.PRNGKey(0), _PHI, -np.ones(3), 4),
            ValueError,
            "`eigvals` must be >= 0",
        ),
        (lambda: network_features(_stax_fn(), None, _PHI), TypeError, "`key` must be a PRNG key"),
        (
            lambda: ntk_features(
                _stax_fn()[1],
                jax.tree_util.tree_map(
                    lambda a: a * np.nan, _stax_fn()[0](jax.random.PRNGKey(0), (1, 3))[1]
                ),
                _PHI,
            ),
            ValueError,
            "`params` must be finite",
        ),
        (
            lambda: eigendecompose(_KP + np.triu(np.ones((6, 6)), 1), _YV),
            ValueError,
            "`kernel` must be symmetric",
        ),
        (
            lambda: ridgeless_krr_mse(_KP, _YV, np.array([0, 1, 6]), np.array([2])),
            ValueError,
            r"`train_idx` must index rows 0\.\.5; got out-of-range entries \[6\]",
        ),
        (
            lambda: ridgeless_krr_mse(_KP, _YV, np.array([0, 1]), np.array([-7])),
            ValueError,
            r"`test_idx` must index rows 0\.\.5; got out-of-range entries \[-7\]",
        ),
        (
            lambda: ridgeless_krr_mse(_KP, _YV, np.array([0.0, 1.0]), np.array([2])),
            TypeError,
            "`train_idx` must be an array of integer indices",
        ),
        (
            lambda: ridgeless_krr_mse(_KP, _YV, np.array([0, 1]), np.array([], int)),
            ValueError,
            "`test_idx` must hold at least one index",
        ),
        (
            lambda: ridgeless_krr_mse(_KP, _YV[:5], np.array([0]), np.array([1])),
            ValueError,
            r"`y` must have shape \(N,\) or \(N, T\) with N = 6",
        ),
        (
            lambda: fit_alpha(np.arange(1, 11.0) ** -1.5, 2, 20),
            ValueError,
            "need 1 ≤ i_min < i_max ≤ 10",
        ),
        (lambda: fit_alpha(np.arange(1, 11.0) ** -1.5, 2.5), TypeError, "`i_min` must be an int"),
        (lambda: fit_beta(np.ones(10), 1, 8, bins_per_decade=0), ValueError, "`bins_per_decade`"),
        (
            lambda: power_law_fit(np.arange(1, 5.0), np.ones(3)),
            ValueError,
            "`x` and `values` must have the same shape",
        ),
        (lambda: inverse_trace_kappa(_KP, ridge=-1.0), ValueError, "`ridge` must be a number >= 0"),
        (
            lambda: exponents_from_sizes(_KP, _YV, [2, 3], jax.random.PRNGKey(0), trials=0),
            ValueError,
            "`trials` must be an int >= 1",
        ),
        (lambda: exponents_from_sizes(_KP, _YV, [2, 3], None), TypeError, "`key`"),
        (
            lambda: kernel_feature_sampler(np.ones((3, 4))),
            ValueError,
            r"`kernel` must be square \(N, N\)",
        ),
        (
            lambda: mode_power_cv(np.ones((5, 8)), _KP, 2),
            ValueError,
            r"`phi` must have one row per pool point \(6\)",
        ),
        (lambda: mode_power_cv(np.ones((6, 8)), _KP, 7), ValueError, "`modes` must be an int"),
        (
            lambda: mode_power_cv(np.ones((6, 8)), _PHI @ _PHI.T, 4),
            ValueError,
            r"`modes` must be at most the kernel's numerical rank \(3: ",
        ),
        (
            lambda: kernel_feature_sampler(_KP, np.linalg.eigh(_KP)),
            ValueError,
            "`eig` must be kernel_eigensystem\\(kernel\\), eigenvalues in descending order",
        ),
        (
            lambda: mode_power_cv(np.ones((6, 8)), _KP, 2, (np.ones(5), np.eye(5))),
            ValueError,
            r"`eig` must hold eigenvalues \(6,\) and eigenvectors \(6, 6\)",
        ),
        (lambda: kernel_feature_sampler(_KP, "eigh"), TypeError, "`eig` must be the pair"),
        (
            lambda: kernel_feature_sampler(_KP, (np.linspace(1, -1, 6), np.eye(6))),
            ValueError,
            "`eig` must be kernel_eigensystem\\(kernel\\), eigenvalues clipped at 0",
        ),
        (
            lambda: kernel_eigensystem(_KP + np.triu(np.ones((6, 6)), 1)),
            ValueError,
            "kernel_eigensystem: `kernel` must be symmetric",
        ),
        (
            lambda: kernel_eigensystem(np.ones((3, 4))),
            ValueError,
            r"`kernel` must be square \(N, N\)",
        ),
        (
            lambda: log_binned_means(np.ones(10), 1, 10, bins=0),
            ValueError,
            "log_binned_means: `bins` must be an int >= 1",
        ),
        (
            lambda: log_binned_means(np.ones(10), 4, 11),
            ValueError,
            "log_binned_means: need 1 ≤ i_min < i_max ≤ 10",
        ),
        (
            lambda: kernel_exponents(_KP, _YV, jax.random.PRNGKey(0)),
            ValueError,
            r"`kernel` must cover at least 18 points .*; got N = 6",
        ),
        (
            lambda: kernel_exponents(
                _KP, _YV, jax.random.PRNGKey(0), fit_range=(3, 2), sizes=[2, 3]
            ),
            ValueError,
            r"`fit_range` must be a pair of ints \(i_min, i_max\) with 1 ≤ i_min < i_max ≤ 6",
        ),
        (
            lambda: kernel_exponents(_KP, _YV, jax.random.PRNGKey(0), fit_range=2, sizes=[2, 3]),
            ValueError,
            "`fit_range` must be a pair of ints",
        ),
        (lambda: kernel_exponents(_KP, _YV, None), TypeError, "kernel_exponents: `key`"),
        (
            lambda: kernel_exponents(_KP, _YV, jax.random.PRNGKey(0), sizes=[3, 6]),
            ValueError,
            r"kernel_exponents: `sizes` must be ints below N = 6 .*; got \[3, 6\]",
        ),
        (
            lambda: kernel_exponents(_KP, _YV, jax.random.PRNGKey(0), sizes=[2, 3], trials=0),
            ValueError,
            "`trials` must be an int >= 1",
        ),
        (
            lambda: kernel_exponents(_KP, _YV[:5], jax.random.PRNGKey(0)),
            ValueError,
            r"kernel_exponents: `y` must have shape \(N,\) or \(N, T\) with N = 6",
        ),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_ridgeless_krr_accepts_negative_indices_as_numpy_does():
    # -1 is row N-1 (NumPy semantics), unlike out-of-range entries, which JAX
    # would clamp silently. Oracle: the same problem with explicit indices and
    # a NumPy least-squares solve.
    got = ridgeless_krr_mse(_KP, _YV, np.array([-1, 0, 2]), np.array([-2, 1]))
    tr, te = np.array([5, 0, 2]), np.array([4, 1])
    sol = np.linalg.lstsq(_KP[np.ix_(tr, tr)], _YV[tr], rcond=None)[0]
    want = np.mean((_KP[np.ix_(te, tr)] @ sol - _YV[te]) ** 2)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_data_only_estimates_of_a_float32_kernel_compute_in_float64():
    # A steep spectrum (λ_i ∝ i^-3.5) below float32's eps·λ_max: float32
    # arithmetic made κ̂ 12x and the ridgeless MSE 1e5x too large. What is left
    # is the rounding of K itself (~10% on κ̂ here).
    from ntk.random_features import inverse_trace_kappa, ridgeless_krr_mse

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 1200)) * np.arange(1, 1201) ** (-3.5 / 2)
    y = x[:, :20] @ rng.normal(size=20)
    k64 = x @ x.T
    k32 = jnp.asarray(k64, jnp.float32)
    train, test = np.arange(200), np.arange(200, 400)
    np.testing.assert_allclose(
        float(inverse_trace_kappa(k32[:200, :200])),
        float(inverse_trace_kappa(k64[:200, :200])),
        rtol=0.2,
    )
    np.testing.assert_allclose(
        float(ridgeless_krr_mse(k32, y.astype(np.float32), train, test)),
        float(ridgeless_krr_mse(k64, y, train, test)),
        rtol=0.2,
    )
