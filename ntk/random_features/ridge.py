r"""Random-feature ridge regression: exact primal/dual solves, many ridges at once.

With normalised features :math:`\Phi` of shape (n, k) (rows :math:`\phi(x_a)`, so that
:math:`\Phi\Phi^\top` is the Monte Carlo kernel :math:`\hat{K}` on the training set), RF ridge
regression with ridge :math:`\delta` is KRR with :math:`\hat{K}` (Simon et al. 2024, Sec. 4):

.. math::

    \text{primal } (k \le n):\quad & w = (\Phi^\top \Phi + \delta I_k)^{-1} \Phi^\top y \\
    \text{dual } (k > n):\quad & w = \Phi^\top (\Phi \Phi^\top + \delta I_n)^{-1} y \\
    & \hat{f}(x) = \phi(x)^\top w = \hat{K}(x, X)\big(\hat{K}(X, X) + \delta I\big)^{-1} y.

Both are the same function for :math:`\delta > 0` (push-through identity). One symmetric
eigendecomposition of the smaller Gram :math:`\Phi^\top\Phi` or :math:`\Phi\Phi^\top` serves
every ridge: :math:`(G + \delta)^{-1} = Q \operatorname{diag}(1/(e + \delta))\, Q^\top`; at
:math:`\delta = 0` this is the pseudo-inverse (eigenvalues below
:math:`\mathtt{rcond} \cdot \max e` dropped), i.e. least squares for :math:`k < n` and
the minimum-norm interpolant for :math:`k > n`. Everything is jit/vmap-able: vmap over
trials (feature draws, training sets) outside.

    >>> import jax, jax.numpy as jnp
    >>> from ntk.random_features import rf_ridge_mse
    >>> phi = jax.random.normal(jax.random.PRNGKey(0), (50, 10))   # k = 10 features
    >>> y = phi @ jnp.arange(10.)                                  # realisable target
    >>> tr, te = rf_ridge_mse(phi[:40], y[:40], phi[40:], y[40:], jnp.logspace(-4, 1, 6))
    >>> tr.shape, bool(te[0] < 1e-4)                               # least squares is exact
    ((6,), True)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks

__all__ = ["rf_ridge_weights", "rf_ridge_mse", "optimal_ridge", "mse"]

_HP = jax.lax.Precision.HIGHEST
_METHODS = ("auto", "primal", "dual")


def _check(phi, y, ridges, method, name, arg="phi", y_arg="y"):
    phi = _checks.as_array(phi, arg, name, ndim=2, floating=True, what="(n, k)")
    if phi.shape[0] == 0 or phi.shape[1] == 0:
        raise ValueError(
            f"{name}: `{arg}` must have n >= 1 rows and k >= 1 "
            f"features; got shape {tuple(phi.shape)}."
        )
    y = _checks.as_array(y, y_arg, name, floating=True)
    if y.ndim not in (1, 2) or y.shape[0] != phi.shape[0]:
        raise ValueError(
            f"{name}: `{y_arg}` must have shape (n,) or (n, T) with n = "
            f"{phi.shape[0]} (rows of {arg}); got shape {y.shape}."
        )
    ridges = _checks.as_array(ridges, "ridges", name, ndim=1, what="(R,)", nonempty=True).astype(
        phi.dtype
    )
    c = _checks.concrete(ridges)
    if c is not None and np.any(c < 0):
        raise ValueError(f"{name}: `ridges` must be >= 0; got {c[c < 0][:5].tolist()}.")
    _checks.require_one_of(method, _METHODS, "method", name)
    return phi, y, ridges


def _inv_filter(evals, ridges, rcond):
    """``1/(e + δ)``, (R, m).

    For δ > 0 every direction is kept (the filter is bounded by 1/δ, and
    directions outside the data's span carry no signal). For δ = 0 this is the
    pseudo-inverse: eigenvalues below ``rcond · max e`` are numerically zero and
    dropped (least squares for k < n, the minimum-norm interpolant for k > n).
    """
    e = jnp.maximum(evals, 0.0)[None, :]
    r = ridges[:, None]
    keep = (r > 0) | (e > rcond * jnp.max(evals))
    s = e + r
    return jnp.where(keep, 1.0 / jnp.where(keep, s, 1.0), 0.0)


def rf_ridge_weights(phi, y, ridges, method: str = "auto", rcond=None):
    r"""Readout weights :math:`w(\delta)` for every ridge: shape (R, k) or (R, k, T).

    Args:
      phi: (n, k) training features; y: (n,) or (n, T) targets;
      ridges: (R,) ridges :math:`\delta \ge 0` (absolute, on the scale of
        :math:`\Phi\Phi^\top`).
      method: "primal" (eigh of the :math:`k \times k` :math:`\Phi^\top\Phi`), "dual" (eigh of
        the :math:`n \times n` :math:`\Phi\Phi^\top`) or "auto" (the smaller of the two).
      rcond: relative eigenvalue cutoff of the pseudo-inverse at :math:`\delta = 0`
        (default :math:`\max(n, k) \cdot \mathrm{eps}`, numpy's ``pinv`` convention). In float32
        keep ridges above ~1e-6 of the Gram's top eigenvalue for accurate solves.

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import rf_ridge_weights
        >>> w = rf_ridge_weights(jnp.eye(2), jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]))
        >>> w.round(6).tolist()                   # Φ = I: w(δ) = y / (1 + δ)
        [[1.0, 2.0], [0.5, 1.0]]
    """
    phi, y, ridges = _check(phi, y, ridges, method, "rf_ridge_weights")
    n, k = phi.shape
    if method == "auto":
        method = "primal" if k <= n else "dual"
    if rcond is None:
        rcond = max(n, k) * float(jnp.finfo(phi.dtype).eps)
    else:
        _checks.require_nonnegative(rcond, "rcond", "rf_ridge_weights")
    w = _weights(phi, y[:, None] if y.ndim == 1 else y, ridges, method, float(rcond))
    return w[..., 0] if y.ndim == 1 else w


@functools.partial(jax.jit, static_argnames=("method", "rcond"))
def _weights(phi, y2, ridges, method, rcond):
    if method == "primal":
        evals, q = jnp.linalg.eigh(jnp.matmul(phi.T, phi, precision=_HP))
        b = jnp.matmul(q.T, jnp.matmul(phi.T, y2, precision=_HP), precision=_HP)
        filt = _inv_filter(evals, ridges, rcond)  # (R, k)
        w = jnp.einsum("ij,rj,jt->rit", q, filt, b, precision=_HP)
    else:
        evals, p = jnp.linalg.eigh(jnp.matmul(phi, phi.T, precision=_HP))
        b = jnp.matmul(p.T, y2, precision=_HP)  # (n, T)
        filt = _inv_filter(evals, ridges, rcond)  # (R, n)
        alpha = jnp.einsum("ij,rj,jt->rit", p, filt, b, precision=_HP)
        w = jnp.einsum("ak,rat->rkt", phi, alpha, precision=_HP)
    return w


def mse(pred, y):
    """Mean over samples of the squared error summed over outputs.

    ``pred`` and ``y`` have the same shape, ``(n,)`` or ``(n, T)``.

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import mse
        >>> float(mse(jnp.array([[1.0, 1.0], [0.0, 0.0]]), jnp.zeros((2, 2))))   # (1 + 1 + 0)/2
        1.0
    """
    pred = _checks.as_array(pred, "pred", "mse", ndim=(1, 2), what="(n,) or (n, T)")
    y = _checks.as_array(y, "y", "mse")
    if pred.shape != y.shape:
        raise ValueError(
            f"mse: `pred` and `y` must have the same shape; got "
            f"{tuple(pred.shape)} and {tuple(y.shape)}."
        )
    err = (pred - y) ** 2
    return err.mean() if err.ndim == 1 else err.sum(-1).mean()


def rf_ridge_mse(phi_train, y_train, phi_test, y_test, ridges, method: str = "auto"):
    """Train and test MSE of RF ridge regression for every ridge: two (R,) arrays.

    MSE = mean over samples of the squared error summed over outputs.

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import rf_ridge_mse
        >>> y = jnp.array([1.0, 2.0])
        >>> train, test = rf_ridge_mse(jnp.eye(2), y, jnp.eye(2), y, jnp.array([0.0, 1.0]))
        >>> train.round(6).tolist()               # δ = 1 halves the fit: ((½)² + 1²)/2
        [0.0, 0.625]
    """
    name = "rf_ridge_mse"
    phi_train, y_train, ridges = _check(
        phi_train, y_train, ridges, method, name, "phi_train", "y_train"
    )
    phi_test = _checks.as_array(phi_test, "phi_test", name, floating=True)
    if phi_test.ndim != 2 or phi_test.shape[1] != phi_train.shape[1]:
        raise ValueError(
            f"{name}: `phi_test` must have shape (m, {phi_train.shape[1]}); "
            f"got shape {phi_test.shape}."
        )
    y_test = _checks.as_array(y_test, "y_test", name, floating=True)
    want = (phi_test.shape[0],) + tuple(y_train.shape[1:])
    if tuple(y_test.shape) != want:
        raise ValueError(
            f"{name}: `y_test` must have shape {want} (rows of phi_test, "
            f"outputs of y_train); got shape {tuple(y_test.shape)}."
        )
    w = rf_ridge_weights(phi_train, y_train, ridges, method)
    pred_tr = jnp.einsum("ak,rk...->ra...", phi_train, w, precision=_HP)
    pred_te = jnp.einsum("ak,rk...->ra...", phi_test, w, precision=_HP)
    train = jax.vmap(mse, (0, None))(pred_tr, y_train)
    test = jax.vmap(mse, (0, None))(pred_te, y_test)
    return train, test


def optimal_ridge(ridges, test_mse, axis: int = -1):
    r"""(:math:`\delta^*`, min test MSE) along ``axis`` of a ridge sweep (grid search).

    ``test_mse[..., r]`` must belong to ``ridges[r]``; works on theory curves and
    on trial means alike (select on the mean, not per trial, to avoid bias).

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import optimal_ridge
        >>> ridge, best = optimal_ridge(jnp.array([0.01, 0.1, 1.0]), jnp.array([0.5, 0.2, 0.3]))
        >>> print(ridge, best)
        0.1 0.2
    """
    name = "optimal_ridge"
    ridges = _checks.as_array(ridges, "ridges", name, ndim=1, what="(R,)", nonempty=True)
    # NaN/inf test MSEs are allowed: they are skipped (e.g. diverged trials).
    test_mse = _checks.as_array(test_mse, "test_mse", name, finite=False)
    if test_mse.ndim == 0:
        raise ValueError(
            f"{name}: `test_mse` must have an axis of {ridges.shape[0]} ridges; got a scalar."
        )
    axis = _checks.require_int(
        axis, "axis", name, minimum=-test_mse.ndim, maximum=test_mse.ndim - 1
    )
    if test_mse.shape[axis] != ridges.shape[0]:
        raise ValueError(
            f"{name}: `test_mse` must have {ridges.shape[0]} entries "
            f"along axis {axis}; got shape {test_mse.shape}."
        )
    clean = jnp.where(jnp.isfinite(test_mse), test_mse, jnp.inf)
    i = jnp.argmin(clean, axis=axis)
    return ridges[i], jnp.min(clean, axis=axis)
