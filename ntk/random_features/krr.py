r"""Kernel ridge regression simulations for the eigenframework's KRR theory.

Two exact experiments whose trial means `ntk.random_features.krr_risk`
predicts (Simon et al. 2024, Sec. 3 and the "obligatory overfitting" figure),
each for many ridges at once and ``jax.lax.map``-ped over trials:

* `gaussian_krr_mse` — the Gaussian model: ``x ~ N(0, I_M)``, kernel
  ``K(x, x') = xᵀ Λ x'`` (exact features ``φ(x) = Λ^{1/2} x``), target
  ``y = xᵀ v + ε``, ``ε ~ N(0, σ²)``. The predictor is linear in ``x``, so the
  test MSE is exact: ``E_te = ‖Λ^{1/2} w − v‖² + σ²``.
* `krr_pool_mse` — a pool of ``N`` points with kernel matrix ``K``: train on
  ``n`` pool points drawn without replacement, test on the whole pool (the
  uniform measure on the pool is the theory's data measure; its eigenstructure
  is `eigendecompose`'s). The solve is one ``eigh`` of the ``n × n`` training
  kernel: ``α(δ) = U diag(1/(e + δ)) Uᵀ y``, with eigen-directions
  ``e + δ ≤ 10⁻⁶ · max e`` dropped (the pseudo-inverse at ``δ = 0``).

    >>> import jax, jax.numpy as jnp
    >>> from ntk.random_features import krr_pool_mse
    >>> pool = jax.random.normal(jax.random.PRNGKey(0), (300, 5))
    >>> K, y = pool @ pool.T, pool[:, 0]
    >>> keys = jax.random.split(jax.random.PRNGKey(1), 8)
    >>> train, test = krr_pool_mse(K, y, 64, jnp.logspace(-4, 0, 5), keys)
    >>> train.shape, test.shape                 # (trials, ridges)
    ((8, 5), (8, 5))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntk import _checks
from ntk.random_features.ridge import rf_ridge_weights

__all__ = ["gaussian_krr_mse", "krr_pool_mse"]


def _check_ridges_keys(ridges, keys, dtype, name):
    ridges = _checks.as_array(ridges, "ridges", name, ndim=1, what="(R,)", nonempty=True).astype(
        dtype
    )
    c = _checks.concrete(ridges)
    if c is not None and (c < 0).any():
        raise ValueError(f"{name}: `ridges` must be >= 0; got {c[c < 0][:5].tolist()}.")
    if getattr(keys, "ndim", 0) < 1 or len(keys) < 1:
        raise ValueError(
            f"{name}: `keys` must be a non-empty array of PRNG keys "
            f"(one per trial, e.g. jax.random.split(key, trials)); got "
            f"{keys!r}."
        )
    return ridges


def gaussian_krr_mse(eigvals, target_coeffs, noise_var, n: int, ridges, keys):
    """KRR on the Gaussian model (module doc): ``(train MSE, test MSE)``, each
    ``(trials, R)``, one trial per key.

    Args:
      eigvals: ``(M,)`` kernel eigenvalues ``λ``; target_coeffs: ``(M,)`` ``v``.
      noise_var: label-noise variance σ² ≥ 0.
      n: training samples; ridges: ``(R,)`` ridges δ ≥ 0; keys: ``(trials, …)``.
    """
    name = "gaussian_krr_mse"
    lam = _checks.as_array(
        eigvals, "eigvals", name, ndim=1, what="(M,)", floating=True, nonempty=True
    )
    v = _checks.as_array(target_coeffs, "target_coeffs", name, ndim=1, what="(M,)")
    if v.shape != lam.shape:
        raise ValueError(
            f"{name}: `target_coeffs` must have shape {lam.shape} like `eigvals`; got {v.shape}."
        )
    _checks.require_nonnegative(noise_var, "noise_var", name)
    n = _checks.require_int(n, "n", name)
    ridges = _check_ridges_keys(ridges, keys, lam.dtype, name)

    def trial(key):
        kx, ke = jax.random.split(key)
        x = jax.random.normal(kx, (n, lam.shape[0]))
        y = x @ v + jnp.sqrt(noise_var) * jax.random.normal(ke, (n,))
        phi = x * jnp.sqrt(lam)  # exact features of K
        w = rf_ridge_weights(phi, y, ridges, method="dual")
        test = jnp.sum((w * jnp.sqrt(lam) - v) ** 2, 1) + noise_var
        train = jnp.mean((w @ phi.T - y) ** 2, 1)
        return train, test

    return jax.lax.map(jax.jit(trial), keys)


def krr_pool_mse(kernel, y, n: int, ridges, keys):
    """KRR on a pool kernel (module doc): ``(train MSE, test MSE on the pool)``,
    each ``(trials, R)``, one random training set of ``n`` points per key.

    Args:
      kernel: ``(N, N)`` kernel matrix on the pool; y: ``(N,)`` targets.
      n: training points, ``1 ≤ n ≤ N``; ridges: ``(R,)`` ridges δ ≥ 0 (on the
        scale of ``kernel``); keys: ``(trials, …)`` PRNG keys.
    """
    name = "krr_pool_mse"
    kernel = _checks.as_array(kernel, "kernel", name, ndim=2, what="(N, N)", floating=True)
    if kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"{name}: `kernel` must be square (N, N); got {kernel.shape}.")
    y = _checks.as_array(y, "y", name, ndim=1, what="(N,)")
    if y.shape[0] != kernel.shape[0]:
        raise ValueError(
            f"{name}: `y` must have shape ({kernel.shape[0]},) like the kernel; got {y.shape}."
        )
    n = _checks.require_int(n, "n", name, maximum=kernel.shape[0])
    ridges = _check_ridges_keys(ridges, keys, kernel.dtype, name)
    evals_dtype = kernel.dtype

    def trial(key):
        idx = jax.random.permutation(key, kernel.shape[0])[:n]
        ktt = kernel[idx][:, idx]
        e, u = jnp.linalg.eigh(ktt)
        e = jnp.maximum(e, 0.0)
        b = u.T @ y[idx]
        filt = jnp.where(
            e[None] + ridges[:, None] > 1e-6 * e.max(), 1.0 / (e[None] + ridges[:, None]), 0.0
        ).astype(evals_dtype)
        alpha = (u[None] * filt[:, None, :]) @ b
        pred = alpha @ kernel[idx]
        return (jnp.mean((pred[:, idx] - y[idx]) ** 2, 1), jnp.mean((pred - y) ** 2, 1))

    return jax.lax.map(jax.jit(trial), keys)
