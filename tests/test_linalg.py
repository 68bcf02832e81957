"""`ntk._linalg`: the library's one jittered positive-definite factorisation."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk._linalg import add_jitter, cholesky_fast_vjp, jitter_amount, jittered_cholesky


def _spd(n=5, seed=0):
    a = np.random.default_rng(seed).normal(size=(n, n))
    return a @ a.T / n + 0.5 * np.eye(n)


def test_relative_jitter_scales_with_the_mean_diagonal_and_absolute_does_not():
    k = _spd()
    assert float(jitter_amount(k, 1e-3)) == pytest.approx(1e-3 * np.trace(k) / 5, rel=1e-14)
    assert jitter_amount(k, 1e-3, relative=False) == 1e-3
    kj, j = add_jitter(3.0 * k, 1e-3)
    np.testing.assert_allclose(kj, 3.0 * k + 3e-3 * np.trace(k) / 5 * np.eye(5), rtol=1e-14)


@pytest.mark.parametrize("relative", [True, False])
def test_factor_reproduces_the_jittered_matrix(relative):
    k = _spd()
    factor, j = jittered_cholesky(k, 1e-2, relative=relative)
    want_j = 1e-2 * np.trace(k) / 5 if relative else 1e-2
    assert float(j) == pytest.approx(want_j, rel=1e-14)
    assert np.allclose(np.triu(factor, 1), 0.0)
    np.testing.assert_allclose(factor @ factor.T, k + want_j * np.eye(5), rtol=1e-12)


def test_failure_reports_the_smallest_eigenvalue_and_a_jitter_that_works():
    x = np.random.default_rng(1).normal(size=(4, 2))
    k = x @ x.T  # rank 2: singular
    k[0, 0] -= 0.3  # and indefinite
    with pytest.raises(ValueError) as info:
        jittered_cholesky(k, 0.0, where="f", arg="k_x", param="jitter")
    msg = str(info.value)
    lam_min = np.linalg.eigvalsh(k)[0]
    assert msg.startswith("f: the matrix `k_x` is not positive definite")
    assert f"smallest eigenvalue is {lam_min:.3g}" in msg
    suggested = float(re.search(r"e\.g\. jitter=([0-9.e+-]+)", msg).group(1))
    factor = jittered_cholesky(k, suggested).factor
    assert np.all(np.isfinite(factor))


def test_float32_suggestion_factorises_and_is_a_small_fraction_of_the_spectrum():
    # A rank-31 float32 kernel of 400 inputs (as duplicates and few features
    # make): the worst-case rounding bound, 100 n eps lambda_max, suggested a
    # jitter of the size of the mean diagonal, which swamps the kernel; the
    # suggestion must factorise in float32 and stay below 1e-3 lambda_max.
    x = np.random.default_rng(2).normal(size=(400, 30))
    k = (x @ x.T / 30 + 1.0).astype(np.float32)
    with jax.enable_x64(False):
        with pytest.raises(ValueError) as info:
            jittered_cholesky(jnp.asarray(k), 0.0)
        suggested = float(re.search(r"e\.g\. jitter=([0-9.e+-]+)", str(info.value)).group(1))
        factor = jittered_cholesky(jnp.asarray(k), suggested).factor
    assert factor.dtype == jnp.float32 and np.all(np.isfinite(factor))
    lam_max = np.linalg.eigvalsh(k.astype(np.float64))[-1]
    assert suggested * np.trace(k) / 400 <= 1e-3 * lam_max


def test_absolute_failure_names_the_amount_and_the_callers_scale_flag():
    with pytest.raises(
        ValueError,
        match=r"plus diag_reg=1e-20 is not positive definite.*"
        r"diag_reg=1e-[0-9]+ \(absolute, as "
        r"diag_reg_absolute_scale=True\)",
    ):
        jittered_cholesky(
            np.ones((3, 3)),
            1e-20,
            relative=False,
            param="diag_reg",
            scale_flag="diag_reg_absolute_scale",
        )


def test_zero_matrix_failure_says_a_relative_jitter_cannot_help():
    # A zero-readout network's NNGP is exactly zero: log10 of the needed
    # amount (0) used to fail with "math domain error".
    with pytest.raises(
        ValueError,
        match=r"`K` is identically zero.*diag_reg relative to its mean diagonal "
        r"adds nothing; pass diag_reg_absolute_scale=True",
    ):
        jittered_cholesky(
            np.zeros((3, 3)), 1e-3, param="diag_reg", scale_flag="diag_reg_absolute_scale"
        )


def test_traced_failure_propagates_nans_instead_of_raising():
    out = jax.jit(lambda k: jittered_cholesky(k, 0.0).factor)(jnp.ones((3, 3)) - 2 * jnp.eye(3))
    assert not np.all(np.isfinite(out))


def test_fast_vjp_gradient_equals_autodiff_through_the_cholesky():
    k = jnp.asarray(_spd(6, seed=2))
    w = jnp.asarray(np.random.default_rng(3).normal(size=(6, 6)))

    def loss(chol, a):
        s = 0.5 * (a + a.T)
        return jnp.sum(w * chol(s)) + jnp.sum(jnp.log(jnp.diagonal(chol(s))))

    fast = jax.grad(lambda a: loss(cholesky_fast_vjp, a))(k)
    plain = jax.grad(lambda a: loss(jnp.linalg.cholesky, a))(k)
    # two exact derivatives of the same function in float64: round-off only
    np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-12)
