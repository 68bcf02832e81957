r"""Kernel ridge regression simulations for the eigenframework's KRR theory.

Two exact experiments whose trial means `ntk.random_features.krr_risk`
predicts (Simon et al. 2024, Sec. 3 and the "obligatory overfitting" figure),
each for many ridges at once and ``jax.lax.map``-ped over trials:

* `gaussian_krr_mse` — the Gaussian model: :math:`x \sim \mathcal{N}(0, I_M)`, kernel
  :math:`K(x, x') = x^\top \Lambda x'` (exact features :math:`\phi(x) = \Lambda^{1/2} x`), target
  :math:`y = x^\top v + \varepsilon`, :math:`\varepsilon \sim \mathcal{N}(0, \sigma^2)`. The
  predictor is linear in :math:`x`, so the test MSE is exact:
  :math:`E_{te} = \lVert \Lambda^{1/2} w - v \rVert^2 + \sigma^2`.
* `krr_pool_mse` — a pool of :math:`N` points with kernel matrix :math:`K`: train on
  ``n`` pool points drawn without replacement, test on the whole pool (the
  uniform measure on the pool is the theory's data measure; its eigenstructure
  is `eigendecompose`'s). The solve is one ``eigh`` of the :math:`n \times n` training
  kernel: :math:`\alpha(\delta) = U \operatorname{diag}(1/(e + \delta))\, U^\top y`, with
  eigen-directions :math:`e + \delta \le 10^{-6} \cdot \max e` dropped (the pseudo-inverse at
  :math:`\delta = 0`).
* `krr_ridge_table` — the paper's optimal-ridge table on a pool kernel
  (Simon et al. 2024, Table 2): random train/test splits, label noise
  relative to the noiseless test MSE, and per noise level the optimal ridge,
  the test MSE and the fitting ratio :math:`E_{tr}/E_{te}` there (host-side NumPy,
  float64).

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

import math

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.random_features.ridge import rf_ridge_weights

__all__ = ["gaussian_krr_mse", "krr_pool_mse", "krr_ridge_table"]


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
    r"""KRR on the Gaussian model (module doc): ``(train MSE, test MSE)``, each
    ``(trials, R)``, one trial per key.

    Args:
      eigvals: ``(M,)`` kernel eigenvalues :math:`\lambda`; target_coeffs: ``(M,)`` :math:`v`.
      noise_var: label-noise variance :math:`\sigma^2 \ge 0`.
      n: training samples; ridges: ``(R,)`` ridges :math:`\delta \ge 0`; keys: ``(trials, …)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk.random_features import gaussian_krr_mse
      >>> keys = jax.random.split(jax.random.PRNGKey(0), 2)
      >>> train, test = gaussian_krr_mse(jnp.array([1.0, 0.5]), jnp.array([1.0, 0.0]), 0.0,
      ...                                8, jnp.array([0.0, 10.0]), keys)
      >>> test.shape, bool(test[:, 0].max() < 1e-10)   # n > M, no noise: ridgeless is exact
      ((2, 2), True)
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
        phi = x * jnp.sqrt(lam)[None, :]  # exact features of K
        w = rf_ridge_weights(phi, y, ridges, method="dual")
        test = jnp.sum((w * jnp.sqrt(lam)[None, :] - v[None, :]) ** 2, 1) + noise_var
        train = jnp.mean((w @ phi.T - y[None, :]) ** 2, 1)
        return train, test

    return jax.lax.map(jax.jit(trial), keys)


def krr_pool_mse(kernel, y, n: int, ridges, keys):
    r"""KRR on a pool kernel (module doc): ``(train MSE, test MSE on the pool)``,
    each ``(trials, R)``, one random training set of ``n`` points per key.

    Args:
      kernel: ``(N, N)`` kernel matrix on the pool; y: ``(N,)`` targets.
      n: training points, :math:`1 \le n \le N`; ridges: ``(R,)`` ridges :math:`\delta \ge 0`
        (on the scale of ``kernel``); keys: ``(trials, …)`` PRNG keys.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk.random_features import krr_pool_mse
      >>> pool = jax.random.normal(jax.random.PRNGKey(0), (20, 2))   # a rank-2 linear kernel
      >>> keys = jax.random.split(jax.random.PRNGKey(1), 3)
      >>> train, test = krr_pool_mse(pool @ pool.T, pool[:, 0], 5, jnp.array([0.0, 100.0]), keys)
      >>> test.shape, bool(test[:, 0].max() < 1e-10)   # 5 points pin a linear target
      ((3, 2), True)
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
        return (
            jnp.mean((pred[:, idx] - y[idx][None, :]) ** 2, 1),
            jnp.mean((pred - y[None, :]) ** 2, 1),
        )

    return jax.lax.map(jax.jit(trial), keys)


def krr_ridge_table(kernel, y, rel_noises, ridges, trials: int, n_test: int, seed: int) -> dict:
    r"""The optimal-ridge table of KRR on a pool kernel against label noise.

    Simon et al. 2024 (Table 2): per relative noise level :math:`\sigma^2_{\mathrm{rel}}`, the
    ridge that minimises the trial-mean test MSE, that MSE, the fitting ratio
    :math:`E_{tr}/E_{te}` there and the test MSE at the smallest ridge.

    Each of ``trials`` random splits of the :math:`N` pool points holds out
    :math:`m` = ``n_test`` test points :math:`S` and trains on the other :math:`n = N - m`
    points :math:`T`. With :math:`K_{TT} = U \operatorname{diag}(e)\, U^\top` (:math:`e` clipped
    at 0; one ``eigh`` per split serves every ridge) and absolute ridges :math:`\delta`:

    .. math::

        f_S(\delta) &= K_{ST}\, U \operatorname{diag}\big(1/(e + \delta)\big)\, U^\top y_T,
        \qquad f_T(\delta) = U \operatorname{diag}\big(e/(e + \delta)\big)\, U^\top y_T, \\
        E_{te}(\delta) &= \lVert f_S - y_S \rVert^2 / m,
        \qquad E_{tr}(\delta) = \lVert f_T - y_T \rVert^2 / n,

    averaged over the splits. The noiseless ridgeless test MSE is
    :math:`E_0 = E_{te}(\mathtt{ridges}[0])` at :math:`\sigma^2 = 0`; for each
    :math:`\sigma^2_{\mathrm{rel}}` the targets get noise
    :math:`\sigma^2 = \sigma^2_{\mathrm{rel}} \cdot E_0`, :math:`y + \sigma \varepsilon` with
    :math:`\varepsilon \sim \mathcal{N}(0, 1)` on train and test points alike, divided by
    :math:`\sqrt{1 + \sigma^2}` (unit variance, as the paper renormalises). The splits and the
    :math:`\varepsilon` draws are the same at every noise level
    (``numpy.random.default_rng(seed)``).

    Args:
      kernel: ``(N, N)`` symmetric PSD kernel matrix on the pool.
      y: ``(N,)`` targets (the paper's: :math:`\pm 1` labels).
      rel_noises: the :math:`\sigma^2_{\mathrm{rel}} \ge 0` (the paper: 0, 1, 5, 50).
      ridges: ``(R,)`` absolute ridges :math:`\delta \ge 0`, increasing (the first is the
        "ridgeless" one).
      trials: random splits, :math:`\ge 1`.
      n_test: held-out points per split, in :math:`[1, N - 1]`.
      seed: seed of the splits and the noise draws.

    Returns:
      A dict with keys ``"noiseless_mse"`` (:math:`E_0`), ``"n_train"`` (:math:`n`) and
      ``"rows"``, which maps each :math:`\sigma^2_{\mathrm{rel}}` (a float, in the given order) to
      the floats (optimal ridge, :math:`E_{te}` there, :math:`E_{tr}/E_{te}` there, :math:`E_{te}`
      at ``ridges[0]``).

    Example:
      >>> import numpy as np
      >>> from ntk.random_features import krr_ridge_table
      >>> a = np.random.default_rng(0).standard_normal((40, 8))
      >>> y = np.sign(a[:, 0])
      >>> out = krr_ridge_table(a @ a.T / 8, y, (0, 5), np.logspace(-4, 2, 7),
      ...                       trials=3, n_test=10, seed=0)
      >>> out["n_train"], list(out["rows"])
      (30, [0.0, 5.0])
      >>> ridge, test, ratio, test_ridgeless = out["rows"][5.0]
      >>> bool(test <= test_ridgeless and 0 <= ratio)   # the optimum beats ridge 1e-4
      True
    """
    name = "krr_ridge_table"
    kernel = _checks.as_numpy(kernel, "kernel", name, ndim=2, what="(N, N)", dtype=np.float64)
    if kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"{name}: `kernel` must be square (N, N); got {kernel.shape}.")
    n_all = kernel.shape[0]
    y = _checks.as_numpy(y, "y", name, ndim=1, what="(N,)", dtype=np.float64)
    if y.shape[0] != n_all:
        raise ValueError(f"{name}: `y` must have shape ({n_all},) like the kernel; got {y.shape}.")
    ridges = _checks.as_numpy(
        ridges, "ridges", name, ndim=1, what="(R,)", dtype=np.float64, nonempty=True
    )
    if (ridges < 0).any() or (np.diff(ridges) < 0).any():
        raise ValueError(
            f"{name}: `ridges` must be >= 0 and increasing; got {ridges[:5].tolist()}."
        )
    rel_noises = [float(_checks.require_nonnegative(r, "rel_noises", name)) for r in rel_noises]
    trials = _checks.require_int(trials, "trials", name)
    n_test = _checks.require_int(n_test, "n_test", name, maximum=n_all - 1)
    seed = _checks.require_int(seed, "seed", name, minimum=0)
    n_train = n_all - n_test
    rng = np.random.default_rng(seed)
    splits = [rng.permutation(n_all) for _ in range(trials)]
    draws = [(rng.standard_normal(n_train), rng.standard_normal(n_test)) for _ in range(trials)]
    parts = []
    for order in splits:
        tr, te = order[n_test:], order[:n_test]
        lam, vec = np.linalg.eigh(kernel[np.ix_(tr, tr)])
        parts.append((tr, te, np.clip(lam, 0, None), vec, kernel[np.ix_(te, tr)] @ vec))

    def curves(noise_var):
        test, train = np.zeros(len(ridges)), np.zeros(len(ridges))
        for (tr, te, lam, vec, kv), (e_tr, e_te) in zip(parts, draws):
            scale = math.sqrt(1.0 + noise_var)
            y_tr = (y[tr] + math.sqrt(noise_var) * e_tr) / scale
            y_te = (y[te] + math.sqrt(noise_var) * e_te) / scale
            proj = vec.T @ y_tr
            shrink = 1.0 / (lam[None, :] + ridges[:, None])  # (R, n)
            pred_te = (proj * shrink) @ kv.T  # (R, m)
            pred_tr = (proj * shrink * lam) @ vec.T  # (R, n)
            test += np.mean((pred_te - y_te) ** 2, 1) / len(parts)
            train += np.mean((pred_tr - y_tr) ** 2, 1) / len(parts)
        return test, train

    e0 = float(curves(0.0)[0][0])
    rows = {}
    for rel in rel_noises:
        test, train = curves(rel * e0)
        j = int(np.argmin(test))
        rows[rel] = (float(ridges[j]), float(test[j]), float(train[j] / test[j]), float(test[0]))
    return {"noiseless_mse": e0, "n_train": n_train, "rows": rows}
