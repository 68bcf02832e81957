"""`ntk.dkm.sampling`: the MALA sampler of wide, finite deep-GP posteriors.

The sampler is checked against the Wishart moments of the prior (no
likelihood: E[G_1] = K(G_0), Var(G_ij) = (K_ij² + K_ii K_jj)/N_1), including
the zero-padded columns that let one compilation serve every width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import dkm
from ntk.dkm import sampling


@pytest.fixture(scope="module")
def prior_sampler():
    """One compiled single-layer sampler (max width 32) shared by the widths below."""
    p, chains = 4, 8
    x = jax.random.normal(jax.random.PRNGKey(0), (p, 3), jnp.float32)
    kernel = dkm.sqexp(lengthscale=1.0)
    g0 = x @ x.T / 3
    k = np.asarray(kernel(g0), np.float64) + 1e-5 * np.eye(p)
    sample = sampling.make_dgp_sampler(
        kernel, 1, 32, noise_var=0.1, n_chains=chains, burn_in=200, n_samples=400, jitter=1e-5
    )
    return sample, g0, k, chains, 400


@pytest.mark.parametrize("width", [8, 24])
def test_sampler_without_likelihood_has_wishart_prior_moments(prior_sampler, width):
    """copies = 0: G_1 = L Z Zᵀ Lᵀ / N_1 is Wishart; mean and variance known.

    Width 8 and 24 of a 32-column sampler also check the zero-padded columns."""
    sample, g0, k, chains, n = prior_sampler
    y = jnp.zeros((k.shape[0], 1), jnp.float32)
    out = sample(
        jax.random.PRNGKey(width),
        g0,
        y,
        jnp.asarray([width]),
        0.0,
        jnp.asarray(k[None], jnp.float32),
        0.5,
    )
    mean = np.asarray(out.mean_grams, np.float64)[:, 0].mean(0)
    var = (k**2 + np.outer(np.diag(k), np.diag(k))) / width
    # MALA samples are autocorrelated: an effective sample size of chains·n/50 is
    # a conservative bound at the adapted step (τ ≈ 2/h with h ≳ 0.1 here)
    ess = chains * n / 50
    z = (mean - k) / np.sqrt(var / ess)
    assert np.max(np.abs(z)) < 4.5, z
    # E‖G − K‖² = Σ Var(G_ij): the chain's spread is the prior's, not a collapsed one
    expected = float(var.sum())
    measured = float(np.asarray(out.sq_dist, np.float64).mean())
    assert 0.7 * expected < measured < 1.3 * expected, (measured, expected)


def test_whitened_grams_are_the_feature_grams():
    # F_1 = chol(K(G_0) + jI) Z by hand (NumPy), G_1 = F Fᵀ / N: an independent product
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3))
    g0 = x @ x.T / 3
    z = rng.normal(size=(4, 7))
    kernel = dkm.sqexp()
    g1 = sampling.grams_from_whitened([jnp.asarray(z)], jnp.asarray(g0), kernel, jitter=1e-6)[0]
    c = np.linalg.cholesky(np.asarray(kernel(jnp.asarray(g0))) + 1e-6 * np.eye(4))
    f = c @ z
    np.testing.assert_allclose(g1, f @ f.T / 7, rtol=1e-10)  # float64 round-off


def test_log_posterior_is_prior_plus_copies_times_likelihood():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 2))
    g0, y = x @ x.T / 2, rng.normal(size=(5, 1))
    zs = [jnp.asarray(rng.normal(size=(5, 6))), jnp.asarray(rng.normal(size=(5, 4)))]
    kernel = dkm.sqexp()
    g2 = np.asarray(sampling.grams_from_whitened(zs, jnp.asarray(g0), kernel)[-1])
    s = np.asarray(kernel(jnp.asarray(g2))) + 0.1 * np.eye(5)
    # log N(y; 0, S) by NumPy's slogdet and solve (independent of the Cholesky route)
    ll = -0.5 * (
        y[:, 0] @ np.linalg.solve(s, y[:, 0]) + np.linalg.slogdet(s)[1] + 5 * np.log(2 * np.pi)
    )
    prior = -0.5 * sum(float(np.sum(np.asarray(z) ** 2)) for z in zs)
    got = sampling.dgp_log_posterior(zs, jnp.asarray(g0), jnp.asarray(y), kernel, 0.1, 3.0)
    np.testing.assert_allclose(float(got), prior + 3.0 * ll, rtol=1e-10)


@pytest.mark.parametrize(
    "kwargs,exc,message",
    [
        (dict(kernel=3), TypeError, "`kernel` must be a map G -> K"),
        (dict(n_layers=0), ValueError, "`n_layers` must be an int >= 1"),
        (dict(max_width=2.5), TypeError, "`max_width` must be an int"),
        (dict(noise_var=-1.0), ValueError, "`noise_var` must be a number >= 0"),
        (dict(target_accept=1.0), ValueError, r"`target_accept` must be a number in \(0, 1\)"),
        (dict(jitter=-1e-6), ValueError, "`jitter` must be a number >= 0"),
        (dict(jitter_absolute_scale=1), TypeError, "`jitter_absolute_scale` must be a bool"),
    ],
)
def test_bad_sampler_settings_are_rejected_by_name(kwargs, exc, message):
    args = dict(kernel=dkm.sqexp(), n_layers=1, max_width=8, noise_var=0.1)
    args.update(kwargs)
    with pytest.raises(exc, match=message):
        sampling.make_dgp_sampler(
            args.pop("kernel"), args.pop("n_layers"), args.pop("max_width"), **args
        )


def test_widths_beyond_the_compiled_maximum_are_rejected():
    sample = sampling.make_dgp_sampler(
        dkm.sqexp(), 1, 8, noise_var=0.1, n_chains=1, burn_in=1, n_samples=1
    )
    g0, y = jnp.eye(3), jnp.zeros((3, 1))
    with pytest.raises(ValueError, match=r"`widths` must be 1 integers in \[1, max_width=8\]"):
        sample(jax.random.PRNGKey(0), g0, y, jnp.asarray([9]), 1.0, g0[None], 0.1)


def test_concrete_singular_kernel_is_a_clear_error():
    g0 = jnp.ones((3, 3))  # K(G) = 1 1ᵀ: rank one
    with pytest.raises(ValueError, match="not positive definite.*smallest eigenvalue"):
        sampling.grams_from_whitened([jnp.ones((3, 2))], g0, lambda g: g, jitter=0.0)


def _linear_kernel_off_unit_diagonal():
    """``K(G_0) = 3 G_0`` on 4 points: definite, mean diagonal ≈ 3 (not 1, so relative
    and absolute jitter differ)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 6))
    g0 = x @ x.T / 6
    kernel = dkm.linear(weight_var=3.0)
    k = np.asarray(kernel(jnp.asarray(g0)))
    assert abs(np.mean(np.diag(k)) - 1.0) > 1.0
    return g0, kernel, k, rng


@pytest.mark.parametrize("absolute", [True, False])
def test_jitter_is_absolute_by_default_and_relative_without_the_flag(absolute):
    """jitter_absolute_scale=True (default): chol(K + jitter·I); False: chol(K +
    jitter·mean(diag K)·I), the library's relative meaning. NumPy, float64."""
    g0, kernel, k, rng = _linear_kernel_off_unit_diagonal()
    jitter = 0.1
    j = jitter if absolute else jitter * np.mean(np.diag(k))
    want = np.linalg.cholesky(k + j * np.eye(4))
    # the factor the sampler and grams_from_whitened use
    got = sampling._chol(jnp.asarray(k), jitter, "test", absolute)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # the public route: G_1 = F Fᵀ / N, F = chol(K + jI) Z
    z = rng.normal(size=(4, 5))
    flag = {} if absolute else dict(jitter_absolute_scale=False)  # default: absolute
    g1 = sampling.grams_from_whitened([jnp.asarray(z)], jnp.asarray(g0), kernel, jitter, **flag)
    f = want @ z
    np.testing.assert_allclose(g1[0], f @ f.T / 5, rtol=1e-12)


@pytest.mark.parametrize("absolute", [True, False])
def test_sampler_threads_the_jitter_flag_to_every_factorisation(monkeypatch, absolute):
    # traced, not compiled (jax.eval_shape): every K(G) the MALA step factorises
    seen = []
    real = sampling.jittered_cholesky

    def spy(*args, **kwargs):
        seen.append(kwargs["relative"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "jittered_cholesky", spy)
    flag = {} if absolute else dict(jitter_absolute_scale=False)
    sample = sampling.make_dgp_sampler(
        dkm.sqexp(), 1, 4, noise_var=0.1, n_chains=1, burn_in=1, n_samples=1, **flag
    )
    key, f64 = jax.ShapeDtypeStruct((2,), jnp.uint32), jnp.float64
    g0, y, targets = (jax.ShapeDtypeStruct(s, f64) for s in [(3, 3), (3, 1), (1, 3, 3)])
    jax.eval_shape(sample, key, g0, y, np.array([4]), 1.0, targets, 0.1)
    assert seen and set(seen) == {not absolute}


@pytest.mark.parametrize("flag", [1, "yes", None])
def test_non_bool_jitter_flag_is_rejected_by_name(flag):
    zs, g0, y = [np.ones((2, 2))], np.eye(2), np.zeros((2, 1))  # checked before any use
    with pytest.raises(TypeError, match="grams_from_whitened: `jitter_absolute_scale` must be"):
        sampling.grams_from_whitened(zs, g0, dkm.sqexp(), jitter_absolute_scale=flag)
    with pytest.raises(TypeError, match="dgp_log_posterior: `jitter_absolute_scale` must be"):
        sampling.dgp_log_posterior(zs, g0, y, dkm.sqexp(), 0.1, 1.0, jitter_absolute_scale=flag)
