r"""Random features: finite-network features of any `ntk.stax` net and classic families.

Every function returns *normalised* features :math:`\Phi` of shape (n, k) whose Gram
:math:`\Phi\Phi^\top` is a Monte Carlo estimate of a kernel (Simon et al. 2024, Sec. 4: the
RF kernel :math:`\hat{K} = (1/k) \sum_j g_j g_j^\top` with i.i.d. features :math:`g_j`,
:math:`\mathbb{E}[\hat{K}] = K`):

- `network_features`: the output of a randomly initialised finite `ntk.stax`
  network (its last hidden layer), divided by :math:`\sqrt{\text{its size per example}}`, so
  :math:`\mathbb{E}[\Phi\Phi^\top]` = ``kernel_fn(x, x, "nngp")`` of the same network (a Monte
  Carlo NNGP).
- `ntk_features`: parameter gradients :math:`\partial f(x)/\partial\theta` of a scalar-output
  network, so :math:`\Phi\Phi^\top` is the empirical NTK (`ntk.empirical.empirical_ntk_fn`).
- `relu_features`:
  :math:`\operatorname{relu}(\sigma_w x \cdot \omega/\sqrt{d} + \sigma_b b)/\sqrt{k}` — the
  arc-cosine kernel of degree 1 (the NNGP of ``stax.serial(Dense(k, σ_w, σ_b), Relu())``).
- `fourier_features`: :math:`\sqrt{2/k} \cos(x \cdot \omega/\ell + b)`,
  :math:`\omega \sim \mathcal{N}(0, I)`, :math:`b \sim \mathcal{U}[0, 2\pi)`: the RBF kernel
  :math:`\exp(-|x - x'|^2/(2\ell^2))` (Rahimi & Recht 2007).
- `kernel_feature_sampler`: Gaussian features :math:`K^{1/2} Z/\sqrt{k}` of any PSD
  kernel matrix on a pool, the features the eigenframework assumes (from
  its `kernel_eigensystem`).

    >>> import jax, jax.numpy as jnp
    >>> from ntk import stax
    >>> from ntk.random_features import relu_features
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    >>> phi = relu_features(jax.random.PRNGKey(1), x, k=20000)   # (n, k)
    >>> nngp = stax.serial(stax.Dense(1), stax.Relu()).kernel_fn(x, None, "nngp")
    >>> bool(jnp.allclose(phi @ phi.T, nngp, atol=0.05))        # Monte Carlo: O(k^-1/2)
    True
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ntk import _checks
from ntk.random_features import _eigensystem as _eig

__all__ = [
    "network_features",
    "ntk_features",
    "relu_features",
    "fourier_features",
    "gaussian_features",
    "kernel_feature_sampler",
]


def _matrix(x, name):
    x = _checks.as_array(
        x,
        "x",
        name,
        ndim=2,
        floating=True,
        what="(n, d) (flatten images first, e.g. ntk.data.flatten)",
    )
    if x.shape[1] == 0:
        raise ValueError(
            f"{name}: `x` must have at least one feature (d >= 1); got shape {tuple(x.shape)}."
        )
    return x


def _count(k, name):
    return _checks.require_int(k, "k", name)


def relu_features(key, x, k: int, W_std: float = 1.0, b_std: float | None = None):
    r"""ReLU random features, shape (n, k): :math:`\operatorname{relu}(\mathtt{W\_std}
    \cdot x\omega^\top/\sqrt{d} + \mathtt{b\_std} \cdot b)/\sqrt{k}`.

    :math:`\omega \sim \mathcal{N}(0, I_d)`, :math:`b \sim \mathcal{N}(0, 1)` (:math:`k` rows).
    :math:`\mathbb{E}[\Phi\Phi^\top]` is the NNGP of
    ``stax.serial(stax.Dense(k, W_std, b_std), stax.Relu())``:
    :math:`\frac{\sqrt{q q'}}{2\pi} (\sin\theta + (\pi - \theta) \cos\theta)` with
    :math:`q = \mathtt{W\_std}^2 \lVert x \rVert^2 / d + \mathtt{b\_std}^2` (and :math:`q'`)
    the pre-activation variances and :math:`\cos\theta` the pre-activations' correlation
    (Cho & Saul 2009).

        >>> import jax
        >>> from ntk.random_features import relu_features
        >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
        >>> phi = relu_features(jax.random.PRNGKey(1), x, k=8)
        >>> phi.shape, bool((phi >= 0).all())
        ((4, 8), True)
    """
    x = _matrix(x, "relu_features")
    k = _count(k, "relu_features")
    _checks.require_nonnegative(W_std, "W_std", "relu_features")
    if b_std is not None:
        _checks.require_nonnegative(b_std, "b_std", "relu_features")
    kw, kb = jax.random.split(key)
    d = x.shape[1]
    pre = (W_std / math.sqrt(d)) * (x @ jax.random.normal(kw, (d, k), x.dtype))
    if b_std is not None:
        pre = pre + b_std * jax.random.normal(kb, (k,), x.dtype)[None, :]
    return jax.nn.relu(pre) / math.sqrt(k)


def fourier_features(key, x, k: int, lengthscale: float = 1.0):
    r"""Random Fourier features (n, k) of the RBF kernel :math:`\exp(-|x-x'|^2/(2\ell^2))`.

    >>> import jax, jax.numpy as jnp
    >>> from ntk.random_features import fourier_features
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    >>> phi = fourier_features(jax.random.PRNGKey(1), x, k=20000)
    >>> rbf = jnp.exp(-0.5 * jnp.sum((x[:, None] - x[None]) ** 2, -1))
    >>> bool(jnp.allclose(phi @ phi.T, rbf, atol=0.05))       # Monte Carlo: O(k^-1/2)
    True
    """
    x = _matrix(x, "fourier_features")
    k = _count(k, "fourier_features")
    _checks.require_positive(lengthscale, "lengthscale", "fourier_features")
    kw, kb = jax.random.split(key)
    omega = jax.random.normal(kw, (x.shape[1], k), x.dtype) / lengthscale
    b = jax.random.uniform(kb, (k,), x.dtype, 0.0, 2 * math.pi)
    return math.sqrt(2.0 / k) * jnp.cos(x @ omega + b[None, :])


def gaussian_features(key, x, eigvals, k: int):
    r"""Gaussian features of a diagonal linear kernel: :math:`x \Lambda^{1/2} W^\top/\sqrt{k}`,
    (n, k).

    For inputs :math:`x \sim \mathcal{N}(0, I_M)` (the eigenfunctions :math:`\phi_i(x) = x_i`),
    :math:`\mathbb{E}[\Phi\Phi^\top] = x \Lambda x^\top`: the synthetic RF model of Simon et al.
    2024 (Sec. 4) with the prescribed spectrum :math:`\lambda_i`. Returns :math:`(\Phi, F)` with
    the projection :math:`F = W \Lambda^{1/2}/\sqrt{k}` (k, M), so a readout :math:`w` predicts
    :math:`\hat{f}(x) = x \cdot (F^\top w)`.

        >>> import jax, jax.numpy as jnp
        >>> from ntk.random_features import gaussian_features
        >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
        >>> phi, F = gaussian_features(jax.random.PRNGKey(1), x, jnp.array([1.0, 0.5, 0.25]), k=10)
        >>> phi.shape, F.shape, bool(jnp.allclose(phi, x @ F.T))
        ((4, 10), (10, 3), True)
    """
    x = _matrix(x, "gaussian_features")
    k = _count(k, "gaussian_features")
    lam = _checks.as_array(eigvals, "eigvals", "gaussian_features").astype(x.dtype)
    if lam.shape != (x.shape[1],):
        raise ValueError(
            f"gaussian_features: `eigvals` must have shape ({x.shape[1]},) "
            f"(one per input coordinate); got {lam.shape}."
        )
    c = _checks.concrete(lam)
    if c is not None and np.any(c < 0):
        raise ValueError(
            f"gaussian_features: `eigvals` must be >= 0 (a kernel "
            f"spectrum); got {c[c < 0][:5].tolist()}."
        )
    w = jax.random.normal(key, (k, lam.shape[0]), x.dtype)
    f = w * jnp.sqrt(lam)[None, :] / math.sqrt(k)
    return x @ f.T, f


def kernel_feature_sampler(kernel, eig=None):
    r"""``sample(key, k) -> Φ``: Gaussian random features of a kernel on a pool.

    :math:`\Phi = K^{1/2} Z/\sqrt{k}` with :math:`Z \sim \mathcal{N}(0, I)` of shape (N, k) and
    :math:`K^{1/2} = U \operatorname{diag}(\sqrt{\max(\lambda, 0)})\, U^\top` the PSD square root
    of the pool kernel :math:`K` (N, N), so :math:`\mathbb{E}[\Phi\Phi^\top] = K` like every
    feature family here, with features :math:`g_j = K^{1/2} z_j` that are exactly Gaussian. The
    eigenframework of Simon et al. 2024 (Sec. 4) models features this way; ReLU or other
    network features of the same kernel share its second moment but not its
    Gaussianity (see `ntk.random_features.mode_power_cv`).

    :math:`K` is factorised once (``eig``: its `kernel_eigensystem`, if already
    computed); each call then costs one :math:`(N, N) \times (N, k)` product, and ``sample``
    can be called inside ``jit`` (the root is a constant of the program).

        >>> import jax, numpy as np
        >>> from ntk.random_features import kernel_feature_sampler
        >>> a = np.random.default_rng(0).normal(size=(5, 3))
        >>> K = a @ a.T
        >>> phi = kernel_feature_sampler(K)(jax.random.PRNGKey(0), 50000)   # (5, 50000)
        >>> bool(np.allclose(phi @ phi.T, K, atol=0.1 * np.abs(K).max()))
        True
    """
    name = "kernel_feature_sampler"
    kernel = _eig.square_numpy(kernel, "kernel", name)
    evals, evecs = _eig.eigensystem_arg(eig, kernel, name)
    # the modes in ascending order: the root's sums add the small terms first
    u, s = evecs[:, ::-1], np.sqrt(evals[::-1])
    root = jnp.asarray((u * s) @ u.T, jnp.float32)

    def sample(key, k: int):
        k = _count(k, name)
        return root @ jax.random.normal(key, (root.shape[0], k), root.dtype) / math.sqrt(k)

    return sample


def _fns(network, name):
    try:
        init_fn, apply_fn = network[0], network[1]
    except (TypeError, IndexError, KeyError):
        raise TypeError(
            f"{name}: network must be an ntk.stax Layer or an "
            f"(init_fn, apply_fn[, kernel_fn]) tuple; got "
            f"{type(network).__name__}."
        ) from None
    if not (callable(init_fn) and callable(apply_fn)):
        raise TypeError(f"{name}: network must hold callables init_fn, apply_fn.")
    return init_fn, apply_fn


def network_features(network, key, x, params=None):
    r"""Features of a randomly initialised finite stax network, shape (n, size).

    ``network``: an `ntk.stax` Layer (or ``(init_fn, apply_fn)``) ending at the
    hidden layer whose activations are the features, e.g.
    ``stax.serial(stax.Dense(1024), stax.Relu())`` or a Conv stack. The output
    :math:`h(x)`, of shape ``(n, *S, C)``, is flattened and divided by
    :math:`\sqrt{|S| \cdot C}`, so :math:`\Phi\Phi^\top` is the
    Monte Carlo estimate of the network's ``kernel_fn(x, x, "nngp")`` (mean over
    channels and same-position pairs, the stax Flatten convention). Pass
    ``params`` to reuse a draw; otherwise they come from ``init_fn(key, x.shape)``.

        >>> import jax
        >>> from ntk import stax
        >>> from ntk.random_features import network_features
        >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
        >>> network_features(stax.serial(stax.Dense(64), stax.Relu()), jax.random.PRNGKey(1),
        ...                  x).shape
        (4, 64)
    """
    init_fn, apply_fn = _fns(network, "network_features")
    x = _checks.as_array(x, "x", "network_features")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"network_features: `x` must have shape (n, ...) with n >= 1 "
            f"and a feature axis; got {x.shape}."
        )
    if params is None:
        _checks.require_key(key, "network_features", "when `params` is None it draws them")
        _, params = init_fn(key, x.shape)
    h = apply_fn(params, x)
    h = h.reshape(h.shape[0], -1)
    return h / math.sqrt(h.shape[1])


def ntk_features(apply_fn, params, x):
    r"""NTK gradient features :math:`\phi(x) = \partial f(\mathtt{params}, x)/\partial\theta`
    (flattened), shape (n, P).

    :math:`f` must have one output per example ((n,) or (n, 1)); then :math:`\Phi\Phi^\top`
    equals the empirical NTK ``ntk.empirical.empirical_ntk_fn(apply_fn)(x, x, params)``,
    and RF regression on :math:`\Phi` is the linearised network trained to convergence
    with ridge (the NTK random-feature model).

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import ntk_features
        >>> x = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.0, 1.0]])
        >>> phi = ntk_features(lambda w, x: x @ w, jnp.ones(2), x)   # linear model: φ(x) = x
        >>> phi.shape, bool(jnp.allclose(phi, x))
        ((3, 2), True)
    """
    _checks.require_callable(apply_fn, "apply_fn", "ntk_features", "a function apply_fn(params, x)")
    x = _checks.as_array(x, "x", "ntk_features")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(
            f"ntk_features: `x` must have shape (n, ...) with n >= 1; got shape {tuple(x.shape)}."
        )
    _checks.require_finite(params, "params", "ntk_features")
    out = jax.eval_shape(lambda p, xx: apply_fn(p, xx), params, x[:1])
    if math.prod(out.shape) != 1:
        raise ValueError(
            f"ntk_features: the network must have one output per example; "
            f"its output for one example has shape {out.shape}."
        )
    flat, unravel = ravel_pytree(params)

    def one(xi):
        return jax.grad(lambda p: apply_fn(unravel(p), xi[None]).reshape(()))(flat)

    return jax.vmap(one)(x)
