"""Deep kernel machines (ntk.dkm): kernels, objective, full and sparse DKMs.

Every check compares against something independent of the code under test:
ntk.stax kernels and ntk.predict GP regression (the NNGP limit), NumPy/SciPy
brute force (objective), finite differences (gradients), Monte Carlo over
sampled features (kernels), the full DKM (sparse DKM with all points
inducing), and the optimiser's own guarantees (monotone L-BFGS, unique
optimum of a deep linear DKM).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from ntk import dkm, predict, stax
from ntk.dkm import full

RELU = dkm.relu(weight_var=2.0, bias_var=0.1)


def _data(P=12, N0=3, C=2, T=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(P, N0))
    Y = np.sin(X @ rng.normal(size=(N0, C))) + 0.1 * rng.normal(size=(P, C))
    Xt = rng.normal(size=(T, N0))
    return X, Y, Xt


def _relu_stax(depth, wv=2.0, bv=0.1):
    """stax network whose NNGP is K^depth(G_0) for the relu GramKernel."""
    layers = [stax.Dense(1)]
    for _ in range(depth):
        layers += [stax.Relu(), stax.Dense(1, W_std=wv**0.5, b_std=bv**0.5)]
    return stax.serial(*layers).kernel_fn


@pytest.fixture(scope="module")
def fitted():
    """A 2-layer ν=1 full DKM fitted by L-BFGS (shared by several tests)."""
    X, Y, Xt = _data()
    model = dkm.FullDKM(RELU, num_layers=2, nu=1.0, noise_var=0.1, jitter=1e-10)
    # tol 1e-14: a relative change of 1e-12 of |L| ≈ 15 still allows a gradient
    # norm of ~2e-5, above what `test_fitted_grams_are_stationary` demands.
    params, info = model.fit(model.init(X), X, Y, max_iter=300, tol=1e-14)
    return model, params, info, (X, Y, Xt)


# ---------------------------------------------------------------- kernels


def test_relu_kernel_equals_stax_relu_dense_network():
    X, _, _ = _data(P=9, N0=4)
    G0 = X @ X.T / X.shape[1]
    ours = RELU(RELU(G0))
    ref = _relu_stax(2)(X, None, "nngp")
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["relu", "erf", "from_stax_layer"])
def test_kernel_matches_monte_carlo_over_features(name):
    # K_ij = σ_w² E[φ(f_i) φ(f_j)] + σ_b², f ~ N(0, G): sample many features.
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 4))
    G = A @ A.T / 4 + 0.1 * np.eye(4)
    n = 200_000
    F = np.linalg.cholesky(G) @ rng.normal(size=(4, n))
    if name == "relu":
        k, phi = dkm.relu(2.0, 0.3), lambda f: np.maximum(f, 0)
        wv, bv = 2.0, 0.3
    elif name == "erf":
        k, phi = dkm.from_stax("erf", weight_var=1.5, bias_var=0.2), lambda f: scipy.special.erf(f)
        wv, bv = 1.5, 0.2
    else:
        k = dkm.from_stax(stax.serial(stax.Gelu(), stax.Dense(1, W_std=1.2, b_std=0.5)))
        phi = lambda f: f * scipy.stats.norm.cdf(f)  # noqa: E731
        wv, bv = 1.44, 0.25
    Phi = phi(F)
    prod = Phi[:, None, :] * Phi[None, :, :]
    mc = wv * prod.mean(-1) + bv
    se = wv * prod.std(-1) / np.sqrt(n)
    assert np.all(np.abs(np.asarray(k(G)) - mc) < 5 * se + 1e-12)


def test_sqexp_and_normalised_gaussian_match_feature_space_formulas():
    X, _, _ = _data(P=7, N0=5)
    G = X @ X.T / 5
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1) / 5
    np.testing.assert_allclose(dkm.sqexp(1.3, 0.7)(G), 0.7 * np.exp(-d2 / (2 * 1.3**2)), rtol=1e-12)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    du2 = ((U[:, None] - U[None]) ** 2).sum(-1)
    np.testing.assert_allclose(
        dkm.normalised_gaussian(0.8, 2.0)(G), 2.0 * np.exp(-du2 / (2 * 0.8**2)), rtol=1e-12
    )


@pytest.mark.parametrize(
    "kernel",
    [
        RELU,
        dkm.sqexp(0.9),
        dkm.normalised_gaussian(),
        dkm.linear(1.5, 0.2),
        dkm.from_stax(stax.Erf()),
    ],
    ids=lambda k: k.name.split("(")[0],
)
def test_cross_block_and_diagonal_agree_with_full_kernel(kernel):
    X, _, _ = _data(P=8, N0=3)
    G = X @ X.T / 3 + 0.05 * np.eye(8)
    K = np.asarray(kernel(G))
    K12, k1, k2 = kernel.cross(G[5:, :5], np.diag(G)[5:], np.diag(G)[:5])
    np.testing.assert_allclose(K12, K[5:, :5], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k1, np.diag(K)[5:], rtol=1e-12)
    np.testing.assert_allclose(k2, np.diag(K)[:5], rtol=1e-12)
    np.testing.assert_allclose(kernel.diag(np.diag(G)), np.diag(K), rtol=1e-12)


def test_kernel_errors_name_the_argument():
    with pytest.raises(ValueError, match="square"):
        RELU(np.ones((3, 4)))
    with pytest.raises(ValueError, match="unknown activation"):
        dkm.from_stax("nope")
    with pytest.raises(ValueError, match="lengthscale"):
        dkm.sqexp(lengthscale=-1.0)


# ---------------------------------------------------------------- objective


def _np_relu(G, wv=2.0, bv=0.1):
    d = np.sqrt(np.diag(G))
    rho = np.clip(G / np.outer(d, d), -1, 1)
    th = np.arccos(rho)
    return wv / (2 * np.pi) * np.outer(d, d) * (np.sin(th) + (np.pi - th) * rho) + bv


def _np_kl(G, K):
    P = G.shape[0]
    return 0.5 * (
        np.trace(np.linalg.solve(K, G)) - P + np.linalg.slogdet(K)[1] - np.linalg.slogdet(G)[1]
    )


def test_objective_matches_numpy_brute_force():
    X, Y, _ = _data(P=6, N0=3, C=2)
    rng = np.random.default_rng(3)
    Gs = []
    for _ in range(2):
        A = rng.normal(size=(6, 9))
        Gs.append(A @ A.T / 9)
    nu, s2 = (0.7, 2.0), 0.3
    G0 = X @ X.T / 3
    K1, K2, K3 = _np_relu(G0), _np_relu(Gs[0]), _np_relu(Gs[1])
    ll = sum(
        scipy.stats.multivariate_normal(np.zeros(6), K3 + s2 * np.eye(6)).logpdf(Y[:, c])
        for c in range(2)
    )
    ref = ll - nu[0] * _np_kl(Gs[0], K1) - nu[1] * _np_kl(Gs[1], K2)
    ours = dkm.dkm_objective(Gs, X, Y, RELU, nu, s2, jitter=0.0)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_whitened_parametrisation_objective_equals_explicit_gram_objective():
    X, Y, _ = _data(P=7)
    model = dkm.FullDKM(RELU, num_layers=3, nu=(0.5, 1.0, 2.0), noise_var=0.2)
    params = model.init(X, key=jax.random.PRNGKey(0), scale=0.3)
    ours = model.objective(params, X, Y)
    ref = dkm.dkm_objective(model.grams(params, X), X, Y, RELU, model.nu, 0.2, jitter=model.jitter)
    np.testing.assert_allclose(ours, ref, rtol=1e-9)


def _assert_gradient_matches_finite_differences(f, params, seed=0, h=1e-5, rtol=1e-6, symmetric=()):
    """Directional derivatives of ``f`` along random directions: autodiff vs
    central differences (leaves at the ``symmetric`` indices get symmetric
    directions: they are used as symmetric matrices)."""
    grad = jax.grad(f)(params)
    rng = np.random.default_rng(seed)
    leaves, tree = jax.tree_util.tree_flatten(params)
    for _ in range(3):
        d = [rng.normal(size=a.shape) for a in leaves]
        d = [(v + v.T) / 2 if i in symmetric else v for i, v in enumerate(d)]
        at = lambda t: jax.tree_util.tree_unflatten(  # noqa: E731
            tree, [a + t * jnp.asarray(v) for a, v in zip(leaves, d)]
        )
        fd = (f(at(h)) - f(at(-h))) / (2 * h)
        an = sum(jnp.vdot(g, v) for g, v in zip(jax.tree_util.tree_leaves(grad), d))
        np.testing.assert_allclose(an, fd, rtol=rtol)


def test_objective_gradient_matches_finite_differences():
    X, Y, _ = _data(P=6)
    model = dkm.FullDKM(RELU, num_layers=2, nu=0.8, noise_var=0.2)
    params = model.init(X, key=jax.random.PRNGKey(1), scale=0.3)
    _assert_gradient_matches_finite_differences(lambda p: model.objective(p, X, Y), params)


def test_objective_gradient_in_nu_matches_finite_differences():
    # ν weighs the prior's KL terms: learning it differentiates through ``nu``.
    X, Y, _ = _data(P=6)
    Gs = [G * 1.05 for G in dkm.nngp_grams(X, RELU, 2)]
    f = lambda nu: dkm.dkm_objective(Gs, X, Y, RELU, nu, 0.2)
    h = 1e-6
    fd = (float(f(0.8 + h)) - float(f(0.8 - h))) / (2 * h)
    np.testing.assert_allclose(float(jax.grad(f)(0.8)), fd, rtol=1e-6)
    per_layer = jax.grad(lambda nu: dkm.dkm_objective(Gs, X, Y, RELU, nu, 0.2))
    assert per_layer(jnp.array([0.8, 0.8])).shape == (2,)


def _random_pd(P, seed):
    A = np.random.default_rng(seed).normal(size=(P, P + 2))
    return jnp.asarray(A @ A.T / (P + 2) + 0.1 * np.eye(P))


def test_cholesky_kl_value_and_gradient_match_the_explicit_gram_kl():
    K = _random_pd(6, 0)
    rng = np.random.default_rng(1)
    raw, log_diag = jnp.asarray(rng.normal(size=(6, 6))), jnp.asarray(0.3 * rng.normal(size=6))
    C = np.tril(np.asarray(raw), -1) + np.diag(np.exp(np.asarray(log_diag)))
    np.testing.assert_allclose(
        dkm.objective.cholesky_kl(K, raw, log_diag), _np_kl(C @ C.T, np.asarray(K)), rtol=1e-10
    )
    _assert_gradient_matches_finite_differences(
        lambda p: dkm.objective.cholesky_kl(*p), (K, raw, log_diag), symmetric=(0,)
    )


def test_gaussian_log_marginal_gradient_matches_finite_differences():
    K, Y = _random_pd(6, 2), jnp.asarray(np.random.default_rng(3).normal(size=(6, 2)))
    _assert_gradient_matches_finite_differences(
        lambda p: dkm.gaussian_log_marginal(p[1], p[0], 0.3), (K, Y), symmetric=(0,)
    )


def test_cholesky_coordinates_give_the_same_objective_and_invert():
    X, Y, _ = _data(P=7)
    model = dkm.FullDKM(RELU, num_layers=3, nu=(0.5, 1.0, 2.0), noise_var=0.2)
    params = model.init(X, key=jax.random.PRNGKey(0), scale=0.3)
    factors = full._to_cholesky_jit(model, params, X)
    nu = jnp.asarray(model.nu)
    np.testing.assert_allclose(
        model._cholesky_objective(factors, X, Y, nu), model.objective(params, X, Y), rtol=1e-10
    )
    back = full._to_whitened_jit(model, factors, X)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params)):
        np.testing.assert_allclose(a, np.tril(b, -1) if b.ndim == 2 else b, atol=1e-9)
    _assert_gradient_matches_finite_differences(
        lambda f: model._cholesky_objective(f, X, Y, nu), factors
    )


# ---------------------------------------------------------------- full DKM


def test_large_nu_gives_nngp_grams_and_nngp_regression():
    X, Y, Xt = _data()
    s2 = 0.1
    big = dkm.FullDKM(RELU, num_layers=2, nu=1e8, noise_var=s2, jitter=1e-10)
    # Same structure and fit settings as `fitted`: one compiled loop (ν is data).
    params, _ = big.fit(
        big.init(X, key=jax.random.PRNGKey(0), scale=0.2), X, Y, max_iter=300, tol=1e-14
    )
    for depth, G in enumerate(big.grams(params, X), start=1):
        np.testing.assert_allclose(G, _relu_stax(depth)(X, None, "nngp"), rtol=1e-5, atol=1e-6)
    kf = _relu_stax(3)
    ref = predict.gp_inference(kf(X, None, "nngp"), Y, diag_reg=s2, diag_reg_absolute_scale=True)(
        "nngp", kf(Xt, X, "nngp"), kf(Xt, None, "nngp")
    )
    pred = big.predict(params, X, Y, Xt)
    np.testing.assert_allclose(pred.mean, ref.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred.variance, np.diag(ref.covariance), rtol=1e-5, atol=1e-6)


def test_small_nu_moves_grams_away_from_nngp(fitted):
    # The contrast that makes the NNGP-limit test meaningful.
    model, params, _, (X, Y, Xt) = fitted
    G2 = np.asarray(model.grams(params, X)[1])
    ref = np.asarray(_relu_stax(2)(X, None, "nngp"))
    assert np.abs(G2 - ref).max() > 1e-2 * np.abs(ref).max()


def test_objective_rises_monotonically_under_full_batch_lbfgs(fitted):
    _, _, info, _ = fitted
    hist = info.objective
    assert info.converged and len(hist) > 5
    assert hist[-1] > hist[0] + 1.0
    assert np.all(np.diff(hist) >= -1e-10 * np.abs(hist[:-1]))


def test_fitted_grams_are_stationary(fitted):
    # At the optimum the gradient w.r.t. the Grams' parameters vanishes.
    model, params, _, (X, Y, _) = fitted
    g = jax.grad(lambda p: model.objective(p, X, Y))(params)
    assert float(optax_norm(g)) < 1e-5


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree_util.tree_leaves(tree)))


def test_gradients_finite_in_float32_for_four_layers():
    X, Y, _ = _data(P=16, N0=4)
    X32, Y32 = jnp.asarray(X, jnp.float32), jnp.asarray(Y, jnp.float32)
    X32 = X32.at[1].set(X32[0])  # a duplicated input: correlation exactly 1
    model = dkm.FullDKM(RELU, num_layers=4, nu=1.0, noise_var=0.1, jitter=1e-4)
    for seed, scale in [(0, 0.0), (1, 0.3), (2, 1.0)]:
        params = model.init(X32, key=jax.random.PRNGKey(seed), scale=scale)
        value, grad = jax.value_and_grad(lambda p: model.objective(p, X32, Y32))(params)
        leaves = jax.tree_util.tree_leaves(grad)
        assert value.dtype == jnp.float32 and all(a.dtype == jnp.float32 for a in leaves)
        assert np.isfinite(value) and all(np.all(np.isfinite(a)) for a in leaves)


def test_deep_linear_dkm_reaches_one_optimum_from_different_inits():
    X, Y, _ = _data(P=8, N0=10, C=1, seed=4)
    model = dkm.FullDKM(dkm.linear(), num_layers=3, nu=0.5, noise_var=0.1, jitter=1e-12)
    Gs = []
    for seed in range(3):
        params = model.init(X, key=jax.random.PRNGKey(seed), scale=0.5)
        params, info = model.fit(params, X, Y, max_iter=2000, tol=1e-15)
        Gs.append([np.asarray(G) for G in model.grams(params, X)])
    for other in Gs[1:]:
        for G, H in zip(Gs[0], other):
            np.testing.assert_allclose(H, G, rtol=1e-5, atol=1e-6 * np.abs(G).max())


def test_full_dkm_rejects_bad_arguments():
    with pytest.raises(ValueError, match="nu"):
        dkm.FullDKM(RELU, num_layers=2, nu=(1.0, 2.0, 3.0))
    with pytest.raises(TypeError, match="kernel"):
        dkm.FullDKM(lambda G: G)
    model = dkm.FullDKM(RELU, num_layers=1)
    X, Y, _ = _data(P=5)
    with pytest.raises(ValueError, match="Y"):
        model.objective(model.init(X), X, Y[:3])


# ---------------------------------------------------------------- sparse DKM


def test_sparse_dkm_with_all_points_inducing_equals_full_dkm(fitted):
    model, params, _, (X, Y, Xt) = fitted
    sparse = dkm.SparseDKM(
        RELU, num_layers=2, num_inducing=X.shape[0], nu=1.0, noise_var=0.1, jitter=1e-10
    )
    sp = sparse.init(X, Y, jax.random.PRNGKey(0), Z=X)
    sp = sparse.optimal_output({**sp, "layers": params["layers"]}, X, Y)
    np.testing.assert_allclose(sparse.objective(sp, X, Y), model.objective(params, X, Y), rtol=1e-7)
    a, b = model.predict(params, X, Y, Xt), sparse.predict(sp, Xt)
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(b.variance, a.variance, rtol=1e-6, atol=1e-8)
    for G, H in zip(model.grams(params, X), sparse.inducing_grams(sp)):
        np.testing.assert_allclose(H, G, rtol=1e-10)


def test_sparse_minibatch_estimates_average_to_full_batch_elbo():
    X, Y, _ = _data(P=12)
    sparse = dkm.SparseDKM(RELU, num_layers=2, num_inducing=5, nu=1.0, noise_var=0.1)
    sp = sparse.init(X, Y, jax.random.PRNGKey(1), scale=0.2)
    sp = sparse.optimal_output(sp, X, Y)
    full = sparse.objective(sp, X, Y)
    parts = [sparse.objective(sp, X[i : i + 4], Y[i : i + 4], num_data=12) for i in (0, 4, 8)]
    np.testing.assert_allclose(np.mean(parts), full, rtol=1e-12)


def test_sparse_predictions_are_pointwise_so_cost_is_linear():
    # Each test point depends only on the inducing points, never on the others.
    X, Y, Xt = _data(P=12, T=6)
    sparse = dkm.SparseDKM(RELU, num_layers=2, num_inducing=4, nu=1.0)
    sp = sparse.optimal_output(sparse.init(X, Y, jax.random.PRNGKey(2), scale=0.2), X, Y)
    whole = sparse.predict(sp, Xt)
    for i in range(3):
        one = sparse.predict(sp, Xt[i : i + 1])
        np.testing.assert_allclose(one.mean, whole.mean[i : i + 1], rtol=1e-12)
        np.testing.assert_allclose(one.variance, whole.variance[i : i + 1], rtol=1e-12)


def test_sparse_elbo_lower_bounds_exact_marginal_at_nngp():
    # At the NNGP with optimal q the ELBO is Titsias' bound on the exact GP
    # marginal likelihood with kernel K(G_L) — computed here by stax + NumPy.
    X, Y, _ = _data(P=12)
    sparse = dkm.SparseDKM(
        RELU,
        num_layers=2,
        num_inducing=6,
        nu=1.0,
        noise_var=0.1,
        jitter=1e-10,
        learn_inducing=False,
    )
    sp = sparse.optimal_output(sparse.init(X, Y, jax.random.PRNGKey(3)), X, Y)
    elbo, (ell, okl, kls) = sparse.objective(sp, X, Y, return_terms=True)
    K = np.asarray(_relu_stax(3)(X, None, "nngp"))
    exact = sum(
        scipy.stats.multivariate_normal(np.zeros(12), K + 0.1 * np.eye(12)).logpdf(Y[:, c])
        for c in range(Y.shape[1])
    )
    np.testing.assert_allclose(kls, 0.0, atol=1e-10)  # A = I: the NNGP
    assert ell - okl <= exact + 1e-8
    assert ell - okl > exact - 50.0


def test_sparse_minibatch_training_increases_elbo():
    X, Y, _ = _data(P=24)
    sparse = dkm.SparseDKM(
        RELU, num_layers=2, num_inducing=6, nu=1.0, noise_var=0.1, learn_noise=True
    )
    sp = sparse.init(X, Y, jax.random.PRNGKey(4))
    before = sparse.objective(sp, X, Y)
    sp2, info = sparse.fit(
        sp, X, Y, jax.random.PRNGKey(5), batch_size=8, steps=150, learning_rate=2e-2
    )
    assert sparse.objective(sp2, X, Y) > before + 1.0
    assert np.all(np.isfinite(info.objective))


def test_categorical_dkm_fits_and_returns_probabilities():
    X, _, Xt = _data(P=16)
    labels = jnp.asarray((X[:, 0] > 0).astype(np.int32) + (X[:, 1] > 1))
    model = dkm.FullDKM(
        RELU, num_layers=1, nu=1.0, likelihood="categorical", num_classes=3, num_samples=32
    )
    key = jax.random.PRNGKey(0)
    params = model.init(X)
    before = model.objective(params, X, labels, key=key)
    params, info = model.fit(
        params, X, labels, method="adam", learning_rate=5e-2, max_iter=100, tol=0.0, key=key
    )
    assert model.objective(params, X, labels, key=key) > before
    pred = model.predict(params, X, labels, Xt)
    np.testing.assert_allclose(pred.probs.sum(-1), 1.0, rtol=1e-10)
    assert pred.mean.shape == (5, 3) and pred.variance.shape == (5,)


# ---------------------------------------------------------------- validation


def test_float32_step_without_progress_is_a_stall_not_convergence():
    # tol = 1e-30 can only be met by a step that changes nothing: in float32
    # a relative change is either 0 or >= ~6e-8. Adam on this tiny problem
    # reaches such a step after ~120 iterations.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 2)).astype(np.float32)
    Y = np.sin(X[:, :1])
    model = dkm.FullDKM(dkm.linear(), num_layers=1, nu=1.0, noise_var=0.1, jitter=1e-4)
    _, info = model.fit(
        model.init(X), X, Y, method="adam", learning_rate=1e-2, max_iter=3000, tol=1e-30
    )
    assert info.iterations < 3000  # stopped early, i.e. on a zero change
    assert info.objective.dtype == np.float32
    assert info.objective[-1] == info.objective[-2]
    assert info.stalled and not info.converged


def _small(P=5):
    X, Y, Xt = _data(P=P)
    return X, Y, Xt


_X, _Y, _XT = _small()
_MODEL = dkm.FullDKM(RELU, num_layers=1)
_NAN_X = _X.copy()
_NAN_X[1, 1] = np.nan


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: dkm.FullDKM(RELU, nu="a"), TypeError, "`nu` must be a positive number"),
        (lambda: dkm.FullDKM(RELU, nu=float("nan")), ValueError, "`nu`"),
        (lambda: dkm.FullDKM(RELU, num_layers=0), ValueError, "`num_layers` must be an int >= 1"),
        (lambda: dkm.FullDKM(RELU, num_layers=1.5), TypeError, "`num_layers` must be an int"),
        (lambda: dkm.FullDKM(RELU, noise_var=0.0), ValueError, "`noise_var` must be a number > 0"),
        (lambda: dkm.FullDKM(RELU, noise_var="big"), TypeError, "`noise_var`"),
        (
            lambda: dkm.FullDKM(RELU, likelihood="poisson"),
            ValueError,
            "`likelihood` must be one of 'gaussian', 'categorical'; got 'poisson'",
        ),
        (lambda: dkm.FullDKM(RELU, jitter=-1e-6), ValueError, "`jitter` must be a number >= 0"),
        (lambda: dkm.FullDKM(RELU, num_samples=0), ValueError, "`num_samples`"),
        (
            lambda: dkm.FullDKM(RELU, likelihood="categorical", num_classes=1),
            ValueError,
            "`num_classes` must be an int >= 2",
        ),
        (
            lambda: _MODEL.fit(_MODEL.init(_X), _NAN_X, _Y),
            ValueError,
            "FullDKM.fit: `X` must be finite; got 1 NaN/inf",
        ),
        (lambda: _MODEL.fit(_MODEL.init(_X), _X, _Y * np.inf), ValueError, "`Y` must be finite"),
        (
            lambda: _MODEL.fit(_MODEL.init(_X), _X, _Y, method="sgd"),
            ValueError,
            "`method` must be one of 'lbfgs', 'optax-lbfgs', 'adam'",
        ),
        (lambda: _MODEL.fit(_MODEL.init(_X), _X, _Y, max_iter=0), ValueError, "`max_iter`"),
        (lambda: _MODEL.fit(_MODEL.init(_X), _X, _Y, tol=-1.0), ValueError, "`tol`"),
        (
            lambda: _MODEL.fit(_MODEL.init(_X[:4]), _X, _Y),
            ValueError,
            r"`params\['layers'\]\[0\]\['raw'\]` must have shape \(5, 5\).*got \(4, 4\)",
        ),
        (
            lambda: _MODEL.fit({"layers": []}, _X, _Y),
            ValueError,
            r"`params\['layers'\]` must hold 1 layers",
        ),
        (
            lambda: _MODEL.predict(_MODEL.init(_X), _X, _Y, _XT * np.nan),
            ValueError,
            "`X_test` must be finite",
        ),
        (lambda: _MODEL.init(_X, scale=-1.0), ValueError, "`scale` must be a number >= 0"),
        (
            lambda: dkm.FullDKM(RELU, likelihood="categorical", num_classes=2).objective(
                dkm.FullDKM(RELU, likelihood="categorical", num_classes=2).init(_X),
                _X,
                np.array([0, 1, 2, 0, 1]),
                key=jax.random.PRNGKey(0),
            ),
            ValueError,
            r"labels in \[0, 2\).*\[2\]",
        ),
        (
            lambda: dkm.dkm_objective(
                [np.triu(np.ones((5, 5))) + 5 * np.eye(5)], _X, _Y, RELU, 1.0, 0.1
            ),
            ValueError,
            r"`Gs\[0\]` must be symmetric",
        ),
        (
            lambda: dkm.dkm_objective([np.eye(4)], _X, _Y, RELU, 1.0, 0.1),
            ValueError,
            r"`Gs\[0\]` must be a square matrix \(5, 5\)",
        ),
        (lambda: dkm.gaussian_kl(np.eye(3), np.eye(4)), ValueError, "`K` must be a square"),
        (lambda: dkm.gaussian_log_marginal(_Y, np.eye(5), -0.1), ValueError, "`noise_var`"),
        (lambda: dkm.nngp_grams(_X, RELU, 0), ValueError, "`num_layers` must be an int >= 1"),
        (lambda: dkm.nngp_grams(_X, lambda G: G, 1), TypeError, "`kernel` must be an ntk.dkm"),
        (lambda: dkm.input_gram(np.ones(3)), ValueError, r"`X` must have shape \(P, N_0\)"),
        (lambda: RELU(np.triu(np.ones((3, 3)))), ValueError, "`G` must be symmetric"),
        (lambda: RELU.diag(np.array([1.0, np.nan])), ValueError, "`g` must be finite"),
        (lambda: dkm.relu(weight_var=-1.0), ValueError, "`weight_var` must be a number >= 0"),
        (lambda: dkm.sqexp(lengthscale=float("nan")), ValueError, "`lengthscale`"),
        (lambda: dkm.elementwise_kernel(3, "k"), TypeError, "`fn` must be a function"),
        (lambda: dkm.SparseDKM(RELU, num_inducing=0), ValueError, "`num_inducing`"),
        (lambda: dkm.SparseDKM(RELU, learn_noise="yes"), TypeError, "`learn_noise` must be a bool"),
        (
            lambda: dkm.SparseDKM(RELU, num_inducing=3).init(_X, _Y, None),
            TypeError,
            "`key` must be a PRNG key",
        ),
        (
            lambda: dkm.SparseDKM(RELU, num_inducing=3).predict({"inducing": np.ones((2, 3))}, _XT),
            ValueError,
            r"`params\['inducing'\]` must have shape \(3, ·\)",
        ),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_sparse_fit_settings_are_checked_before_training():
    model = dkm.SparseDKM(RELU, num_layers=1, num_inducing=3)
    params = model.init(_X, _Y, jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    for kwargs, exc, message in [
        (dict(batch_size=0), ValueError, r"`batch_size` must be an int in \[1, 5\]"),
        (dict(steps=0), ValueError, "`steps` must be an int >= 1"),
        (dict(learning_rate=-1.0), ValueError, "`learning_rate` must be a number > 0"),
        (dict(optimizer="adam"), TypeError, "`optimizer` must be an optax"),
    ]:
        with pytest.raises(exc, match=message):
            model.fit(params, _X, _Y, key, **kwargs)
    with pytest.raises(ValueError, match="`num_data` must be an int >= 5"):
        model.objective(params, _X, _Y, num_data=2)
