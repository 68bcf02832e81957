r"""The infinite-width trained ensemble: a GP at :math:`t = \infty`, numerically and in closed form.

Numerics (the reference). `trained_gp` gives the mean and covariance of the
output of infinitely wide networks trained to convergence on :math:`(I_k, Y)`
(Lee et al. 2019, eqs. 15-16 at :math:`t = \infty`, via `ntk.predict`):

.. math::

    \mu(x) = \Theta_{xd} \Theta_{dd}^{-1} Y, \qquad
    \Sigma(x, x') = K_{xx'} + \Theta_{xd} \Theta_{dd}^{-1} K_{dd} \Theta_{dd}^{-1} \Theta_{dx'}
    - \big(\Theta_{xd} \Theta_{dd}^{-1} K_{dx'} + \text{h.c.}\big),

the covariance being :math:`\Sigma \otimes I_k` (output coordinates are independent, with
the same :math:`\Sigma`, which does not depend on :math:`\pi`).

Closed form (derived here). For binary :math:`x, x'` every kernel of the
two-layer ReLU network depends only on :math:`(|x|, |x'|, x \cdot x')`: with
:math:`q = \sigma_w^2\, x \cdot x'/k + \sigma_b^2` and the arc-cosine expectations

.. math::

    K &= \sigma_w^2 \sqrt{q_{11} q_{22}}/(2\pi)\, \big(\sin\theta + (\pi - \theta) \cos\theta\big)
    + \sigma_b^2, \qquad \cos\theta = q_{12}/\sqrt{q_{11} q_{22}}, \\
    \Theta &= K + \sigma_w^2\, q_{12} (\pi - \theta)/(2\pi).

On the training set :math:`\Theta_{dd} = (a - b) I + b\, \mathbf{1}\mathbf{1}^\top` with
:math:`a = \Theta(e_i, e_i)`, :math:`b = \Theta(e_i, e_j)`; for a test input with :math:`s` ones
:math:`\Theta(x, e_i) = c_1(s)` if :math:`x_i = 1` and :math:`c_0(s)` otherwise.
Sherman–Morrison gives :math:`u(x) = \Theta_{dd}^{-1} \Theta_{dx}` with :math:`u_i = \alpha(s)`
on the ones of :math:`x` and :math:`\beta(s)` on its zeros, where, with
:math:`S = s c_1 + (k - s) c_0`,

.. math::

    \alpha(s) = \frac{c_1 - b S / (a + (k-1) b)}{a - b}, \qquad
    \beta(s) = \frac{c_0 - b S / (a + (k-1) b)}{a - b}.

Since :math:`Y` routes row :math:`i` to column :math:`\pi(i)`,

.. math::

    \mu(x) = \alpha(s)\, P_\pi x + \beta(s)\, (1 - P_\pi x):

one value on the coordinates of :math:`P_\pi x`, another off them. :math:`\alpha(1) = 1`,
:math:`\beta(1) = 0` (interpolation); for the default network :math:`\alpha(s) > 0 > \beta(s)`
for :math:`s \ge 2` (the sign structure the rounding uses). With :math:`A = K(e_i, e_i)`,
:math:`B = K(e_i, e_j)`, :math:`\kappa_1(s), \kappa_0(s)` the NNGP analogues of
:math:`c_1, c_0`, and :math:`t = x \cdot x'`, the covariance is

.. math::

    \Sigma(x, x') &= K(x, x') + (A - B)\, u \cdot u' + B \Big(\sum u\Big)\Big(\sum u'\Big)
    - K_{xd}\, u' - K_{x'd}\, u, \\
    u \cdot u' &= t\, \alpha\alpha' + (s-t)\, \alpha\beta' + (s'-t)\, \beta\alpha'
    + (k-s-s'+t)\, \beta\beta', \\
    K_{xd}\, u' &= \kappa_1(s) \big(t \alpha' + (s-t) \beta'\big)
    + \kappa_0(s) \big((s'-t) \alpha' + (k-s-s'+t) \beta'\big).

Example:
    >>> alpha, beta = mean_structure(8, jnp.arange(1, 9))
    >>> round(float(alpha[0]), 6), abs(round(float(beta[0]), 6))   # interpolation at s = 1
    (1.0, 0.0)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks, predict
from ntk.permutations.setting import (
    TIE,
    apply_permutation,
    check_binary,
    check_counts,
    check_k,
    check_perm,
    check_stds,
    check_threshold,
    network,
    training_set,
)


def trained_gp(
    perm, x_test, W_std: float = 1.0, b_std=None, compute_cov: bool = True, kernel_fn=None
):
    r""":math:`t = \infty` GP of the trained infinite-width network on ``x_test`` (via
    ntk.predict).

    Args:
      perm: permutation vector ``(k,)``.
      x_test: ``(N, k)`` inputs (any, typically binary).
      W_std, b_std: :math:`\sigma_w`, :math:`\sigma_b` of `network` (ignored if ``kernel_fn`` is
        given).
      compute_cov: also return the ``(N, N)`` covariance of one output coordinate.
      kernel_fn: optional kernel function of another architecture.

    Returns:
      mean ``(N, k)``, or ``ntk.predict.Gaussian(mean, cov)``.

    Example:
        >>> from ntk import permutations as perms
        >>> perm, x = jnp.array([1, 2, 0]), perms.binary_inputs(3)
        >>> mean = perms.trained_gp(perm, x, compute_cov=False)              # (7, 3)
        >>> bool(jnp.allclose(mean, perms.closed_form_mean(perm, x), atol=1e-6))
        True
    """
    name = "trained_gp"
    perm = check_perm(perm, name)
    k = perm.size
    x_test = _checks.as_array(x_test, "x_test", name, floating=True)
    if x_test.ndim != 2 or x_test.shape[1] != k:
        raise ValueError(f"{name}: `x_test` must have shape (N, {k}); got {x_test.shape}.")
    if kernel_fn is None:
        W_std, b_std = check_stds(W_std, b_std, name)
        kernel_fn = network(k, W_std=W_std, b_std=b_std)[2]
    else:
        _checks.require_callable(kernel_fn, "kernel_fn", name, "a kernel_fn(x1, x2, get) or None")
    x_train, y_train = training_set(perm, x_test.dtype)
    predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train)
    return predict_fn(None, x_test, "ntk", compute_cov=compute_cov)


def _relu_kernels(xp, k, n1, n2, n12, W_std, b_std):
    """``(K, Θ)`` in the array module ``xp`` (numpy: float64 whatever JAX's mode)."""
    w2, b2 = W_std**2, (0.0 if b_std is None else b_std**2)
    q11, q22, q12 = w2 * n1 / k + b2, w2 * n2 / k + b2, w2 * n12 / k + b2
    norm = xp.sqrt(q11 * q22)
    c = xp.clip(q12 / xp.where(norm > 0, norm, 1.0), -1.0, 1.0)
    theta = xp.arccos(c)
    nngp = w2 * norm / (2 * math.pi) * (xp.sqrt(1 - c**2) + (math.pi - theta) * c) + b2
    ntk = nngp + w2 * q12 * (math.pi - theta) / (2 * math.pi)
    return nngp, ntk


def _scalars_xp(xp, k, s, W_std, b_std):
    _, a = _relu_kernels(xp, k, 1.0, 1.0, 1.0, W_std, b_std)
    _, b = _relu_kernels(xp, k, 1.0, 1.0, 0.0, W_std, b_std)
    _, c1 = _relu_kernels(xp, k, s, 1.0, 1.0, W_std, b_std)
    _, c0 = _relu_kernels(xp, k, s, 1.0, 0.0, W_std, b_std)
    big_s = s * c1 + (k - s) * c0
    shift = b * big_s / (a + (k - 1) * b)
    return (c1 - shift) / (a - b), (c0 - shift) / (a - b)


def _covariance_xp(xp, k, s1, s2, t, W_std, b_std):
    a1, b1 = _scalars_xp(xp, k, s1, W_std, b_std)
    a2, b2 = _scalars_xp(xp, k, s2, W_std, b_std)
    big_a, _ = _relu_kernels(xp, k, 1.0, 1.0, 1.0, W_std, b_std)
    big_b, _ = _relu_kernels(xp, k, 1.0, 1.0, 0.0, W_std, b_std)
    kap1_1, _ = _relu_kernels(xp, k, s1, 1.0, 1.0, W_std, b_std)
    kap0_1, _ = _relu_kernels(xp, k, s1, 1.0, 0.0, W_std, b_std)
    kap1_2, _ = _relu_kernels(xp, k, s2, 1.0, 1.0, W_std, b_std)
    kap0_2, _ = _relu_kernels(xp, k, s2, 1.0, 0.0, W_std, b_std)
    kxx, _ = _relu_kernels(xp, k, s1, s2, t, W_std, b_std)
    rest = k - s1 - s2 + t
    uu = t * a1 * a2 + (s1 - t) * a1 * b2 + (s2 - t) * b1 * a2 + rest * b1 * b2
    sum1, sum2 = s1 * a1 + (k - s1) * b1, s2 * a2 + (k - s2) * b2
    kx_u2 = kap1_1 * (t * a2 + (s1 - t) * b2) + kap0_1 * ((s2 - t) * a2 + rest * b2)
    kx2_u1 = kap1_2 * (t * a1 + (s2 - t) * b1) + kap0_2 * ((s1 - t) * a1 + rest * b1)
    return kxx + (big_a - big_b) * uu + big_b * sum1 * sum2 - kx_u2 - kx2_u1


def _f(*vs):
    return tuple(jnp.asarray(v, jnp.result_type(float)) for v in vs)


def relu_kernels(k: int, n1, n2, n12, W_std: float = 1.0, b_std=None):
    r"""Closed-form :math:`(K, \Theta)` of `network` for binary inputs with
    :math:`|x| = \mathtt{n1}`, :math:`|x'| = \mathtt{n2}`, :math:`x \cdot x' = \mathtt{n12}`
    (arrays broadcast). See the module docstring.

    Example:
        >>> from ntk import permutations as perms
        >>> K, theta = perms.relu_kernels(4, 1, 1, 1)    # x = x' = e_i: q = 1/4
        >>> float(K), float(theta)                        # K = q/2, Θ = 2K
        (0.125, 0.25)
    """
    name = "relu_kernels"
    k = check_k(k, name)
    W_std, b_std = check_stds(W_std, b_std, name)
    _check_overlap(name, k, "n1", "n2", "n12", n1, n2, n12)
    return _relu_kernels_jit(k, n1, n2, n12, W_std, b_std)


@functools.partial(jax.jit, static_argnames=("k", "W_std", "b_std"))
def _relu_kernels_jit(k, n1, n2, n12, W_std, b_std):
    n1, n2, n12 = _f(n1, n2, n12)
    return _relu_kernels(jnp, k, n1, n2, n12, W_std, b_std)


def _check_overlap(name, k, a1, a2, a12, s1, s2, t):
    """Concrete ``s1, s2`` ones and an overlap ``t`` that binary vectors of
    length ``k`` can have: ``0 <= t <= min(s1, s2)``, ``s1 + s2 − t <= k``."""
    check_counts(name, k, **{a1: s1, a2: s2, a12: t})
    c = [_checks.concrete(v) for v in (s1, s2, t)]
    if any(v is None for v in c):
        return
    c1, c2, ct = np.broadcast_arrays(*c)
    bad = (ct > np.minimum(c1, c2)) | (c1 + c2 - ct > k)
    if np.any(bad):
        i = np.argwhere(bad)[0]
        i = tuple(i) if bad.ndim else ()
        raise ValueError(
            f"{name}: no binary vectors of length {k} have "
            f"{a1}={c1[i]:g} and {a2}={c2[i]:g} ones with overlap "
            f"{a12}={ct[i]:g}; need {a12} <= min({a1}, {a2}) and "
            f"{a1} + {a2} - {a12} <= k."
        )


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _scalars(k, s, W_std, b_std):
    (s,) = _f(s)
    return _scalars_xp(jnp, k, s, W_std, b_std)


def mean_structure(k: int, s, W_std: float = 1.0, b_std=None):
    r""":math:`(\alpha(s), \beta(s))`: the :math:`t = \infty` mean on / off the coordinates of
    :math:`P_\pi x`.

    Example:
        >>> from ntk import permutations as perms
        >>> alpha, beta = perms.mean_structure(6, jnp.array([2.0, 3.0]))
        >>> bool(jnp.all(alpha > 0)), bool(jnp.all(beta < 0))   # the sign structure
        (True, True)
    """
    k = check_k(k, "mean_structure")
    W_std, b_std = check_stds(W_std, b_std, "mean_structure")
    check_counts("mean_structure", k, s=s)
    return _scalars(k, s, W_std, b_std)


def closed_form_mean(perm, x, W_std: float = 1.0, b_std=None):
    r""":math:`\mu(x) = \alpha(s) P_\pi x + \beta(s)(1 - P_\pi x)` for binary ``x`` ``(N, k)``.

    Example:
        >>> from ntk import permutations as perms
        >>> perm, x = jnp.array([1, 2, 0]), perms.binary_inputs(3)
        >>> mu = perms.closed_form_mean(perm, x)                      # (7, 3)
        >>> bool(jnp.all(perms.round_outputs(mu) == perms.apply_permutation(perm, x)))
        True
    """
    perm = check_perm(perm, "closed_form_mean")
    W_std, b_std = check_stds(W_std, b_std, "closed_form_mean")
    x = check_binary(x, perm.size, "x", "closed_form_mean")
    px = apply_permutation(perm, x)
    alpha, beta = _scalars(perm.size, x.sum(-1), W_std, b_std)
    return alpha[:, None] * px + beta[:, None] * (1 - px)


def covariance_fn(k: int, s1, s2, t, W_std: float = 1.0, b_std=None):
    r"""Closed-form :math:`\Sigma(x, x')` for :math:`|x| = \mathtt{s1}`,
    :math:`|x'| = \mathtt{s2}`, :math:`x \cdot x' = t`.

    Example:
        >>> from ntk import permutations as perms
        >>> round(float(perms.covariance_fn(4, 1, 1, 1)), 6)   # a training input: no spread
        0.0
        >>> bool(perms.covariance_fn(4, 2, 2, 2) > 0)
        True
    """
    k = check_k(k, "covariance_fn")
    W_std, b_std = check_stds(W_std, b_std, "covariance_fn")
    _check_overlap("covariance_fn", k, "s1", "s2", "t", s1, s2, t)
    return _covariance(k, s1, s2, t, W_std, b_std)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _covariance(k, s1, s2, t, W_std, b_std):
    s1, s2, t = _f(s1, s2, t)
    return _covariance_xp(jnp, k, s1, s2, t, W_std, b_std)


def covariance_fn_f64(k: int, s1, s2, t, W_std: float = 1.0, b_std=None):
    """`covariance_fn` in NumPy float64 (for factorisations in float32 mode)."""
    k = check_k(k, "covariance_fn_f64")
    W_std, b_std = check_stds(W_std, b_std, "covariance_fn_f64")
    _check_overlap("covariance_fn_f64", k, "s1", "s2", "t", s1, s2, t)
    s1, s2, t = (np.asarray(v, np.float64) for v in (s1, s2, t))
    return _covariance_xp(np, k, s1, s2, t, W_std, b_std)


def covariance_grid(k: int, W_std: float = 1.0, b_std=None):
    r""":math:`\Sigma(s, s', t)` in NumPy float64 on the whole grid
    :math:`s, s', t \in 0 \ldots k` (:math:`t` clipped to :math:`\min(s, s')`),
    ``(k+1, k+1, k+1)``: one vectorised closed-form call. Entries with
    :math:`s + s' - t > k` belong to no pair of inputs; they are the formula's values, used only
    as padding."""
    k = check_k(k, "covariance_grid")
    W_std, b_std = check_stds(W_std, b_std, "covariance_grid")
    s1, s2, t = np.meshgrid(np.arange(k + 1), np.arange(k + 1), np.arange(k + 1), indexing="ij")
    t = np.minimum(t, np.minimum(s1, s2))
    return _covariance_xp(
        np, k, s1.astype(np.float64), s2.astype(np.float64), t.astype(np.float64), W_std, b_std
    )


def mean_structure_f64(k: int, s, W_std: float = 1.0, b_std=None):
    """`mean_structure` in NumPy float64."""
    k = check_k(k, "mean_structure_f64")
    W_std, b_std = check_stds(W_std, b_std, "mean_structure_f64")
    check_counts("mean_structure_f64", k, s=s)
    return _scalars_xp(np, k, np.asarray(s, np.float64), W_std, b_std)


def closed_form_variance(k: int, s, W_std: float = 1.0, b_std=None):
    r""":math:`\sigma^2(s) = \Sigma(x, x)` for an input with ``s`` ones (any output coordinate).

    Example:
        >>> from ntk import permutations as perms
        >>> var = perms.closed_form_variance(4, jnp.array([1.0, 2.0, 3.0]))
        >>> round(float(var[0]), 6), bool(jnp.all(var[1:] > 0))
        (0.0, True)
    """
    check_counts("closed_form_variance", check_k(k, "closed_form_variance"), s=s)
    return covariance_fn(k, s, s, s, W_std, b_std)


def closed_form_covariance(x1, x2=None, W_std: float = 1.0, b_std=None):
    r"""Dense :math:`\Sigma(\mathtt{x1}, \mathtt{x2})` ``(N1, N2)`` of one output coordinate,
    binary inputs.

    Example:
        >>> from ntk import permutations as perms
        >>> cov = perms.closed_form_covariance(perms.binary_inputs(3))
        >>> cov.shape, bool(jnp.allclose(cov, cov.T))
        ((7, 7), True)
    """
    name = "closed_form_covariance"
    x1 = _checks.as_array(x1, "x1", name, ndim=2, what="(N1, k)")
    k = check_k(x1.shape[1], name)
    x1 = check_binary(x1, k, "x1", name)
    x2 = x1 if x2 is None else check_binary(x2, k, "x2", name)
    s1, s2 = x1.sum(-1), x2.sum(-1)
    return covariance_fn(k, s1[:, None], s2[None, :], x1 @ x2.T, W_std, b_std)


def margins(k: int, s, W_std: float = 1.0, b_std=None, threshold=None):
    r""":math:`(\alpha - \tau, \tau - \beta, \sigma)` per number of ones ``s``: the distances of
    the mean to the rounding threshold on / off :math:`P_\pi x` and the member std (NumPy
    float64).

    Example:
        >>> from ntk import permutations as perms
        >>> on, off, std = perms.margins(8, [2, 3])
        >>> bool((on > 0).all() and (off > 0).all()), std.shape   # the mean rounds right
        (True, (2,))
    """
    tau = TIE if threshold is None else check_threshold(threshold, "margins")
    s = np.asarray(s, np.float64)
    alpha, beta = mean_structure_f64(k, s, W_std, b_std)
    var = covariance_fn_f64(k, s, s, s, W_std, b_std)
    return alpha - tau, tau - beta, np.sqrt(np.maximum(var, 0.0))
