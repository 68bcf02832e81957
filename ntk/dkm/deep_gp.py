r"""A doubly stochastic variational deep GP: the deep GP that DKMs are compared with.

Salimbeni & Deisenroth 2017, "Doubly Stochastic Variational Inference for Deep
Gaussian Processes" (NeurIPS). :math:`L` layers
:math:`f^\ell: \mathbb{R}^{D_{\ell-1}} \to \mathbb{R}^{D_\ell}`, each with :math:`D_\ell`
independent GPs sharing an SE-ARD kernel

.. math::

    k(a, b) = s^2 \exp\Big(-\tfrac{1}{2} \sum_d (a_d - b_d)^2 / \lambda_d^2\Big)
    \qquad (s^2, \lambda \text{ learned per layer}),

a mean function :math:`m_\ell(x) = x W_\ell` (hidden widths :math:`D_\ell = D_0`, the
input dimension, so the paper's fixed :math:`W_\ell` — PCA of the inputs when the width
changes — is the identity; :math:`m_L = 0`), :math:`M` inducing points :math:`Z_\ell`
(learned; all layers start at one random subset of the inputs, i.e. :math:`Z_\ell W_\ell`
as in the paper) and whitened inducing outputs :math:`u_\ell = L_Z v_\ell`,
:math:`L_Z L_Z^\top = K_{ZZ}`, :math:`v_\ell \sim \mathcal{N}(0, I)`, with
:math:`q(v_\ell^d) = \mathcal{N}(m_\ell^d, S_\ell^d)`, :math:`S = R R^\top` (:math:`R` lower
triangular, log-diagonal parameters). Given the previous layer's value :math:`x` of one
point, the layer's marginal is Gaussian (the paper's eq. 7, whitened):

.. math::

    A &= L_Z^{-1} k(Z, x), \qquad \mu^d = m_\ell(x)_d + A^\top m^d, \\
    \sigma_d^2 &= k(x, x) - A^\top A + \lVert (R^d)^\top A \rVert^2.

The bound (the paper's eq. 8) is

.. math::

    \mathrm{ELBO} &= \sum_n \mathbb{E}_q\big[\log \mathcal{N}(y_n \mid f_n^L, \sigma_y^2)\big]
    - \sum_\ell \sum_d \mathrm{KL}\big(\mathcal{N}(m, S) \,\big\|\, \mathcal{N}(0, I)\big), \\
    \mathrm{KL} &= \tfrac{1}{2} \big(\operatorname{tr} S + m^\top m - M - \log|S|\big),

the expectation by ``num_samples`` reparametrised samples :math:`\hat{f}_n^\ell = \mu + \sigma
\varepsilon` drawn layer by layer (marginals only, point by point), and in closed form at
the last layer: :math:`\mathbb{E} \log \mathcal{N}(y \mid f, \sigma_y^2) = -\tfrac{1}{2}
\log 2\pi\sigma_y^2 - \big((y - \mu)^2 + \sigma^2\big) / (2\sigma_y^2)`. For :math:`L = 1`
this is deterministic and, with :math:`Z = X`, its maximum over :math:`q` is the exact
log marginal likelihood (Titsias 2009). Minibatches scale the data term by :math:`N/B`.
Prediction moment-matches the mixture of its ``num_samples`` samples:
:math:`\mathrm{mean} = \operatorname{avg} \mu`,
:math:`\mathrm{var} = \operatorname{avg} \sigma^2 + \operatorname{var} \mu + \sigma_y^2`.

Computation is in float32 (as the paper's GPflow code); ``jitter`` is relative
to the mean diagonal as everywhere in the library when ``jitter_absolute_scale=False``,
and absolute by default here, :math:`\operatorname{chol}(K_{ZZ} + \mathtt{jitter} \cdot I)`,
as GPflow's (:math:`K_{ZZ}` has diagonal :math:`s^2`, so it is
:math:`\mathtt{jitter} / s^2` relative).

    >>> import jax, numpy as np
    >>> from ntk.dkm import deep_gp
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(20, 3)); y = np.sin(x[:, 0]); x_test = x[:5] + 0.1
    >>> params = deep_gp.fit(x, y, jax.random.PRNGKey(0), layers=2, num_inducing=8,
    ...                      steps=5)
    >>> mean, var = deep_gp.predict(params, x_test, jax.random.PRNGKey(1))
    >>> mean.shape, var.shape
    ((5,), (5,))
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk import _checks
from ntk._linalg import jittered_cholesky, require_scale_flag

__all__ = ["FIXABLE", "sqexp_ard", "elbo", "init", "adam_steps", "fit", "predict"]

#: Names accepted by ``fit(fixed=...)``: parameters held at their initial values.
FIXABLE = ("z", "kernel", "noise")


def sqexp_ard(a, b, log_amp, log_ls):
    r"""SE-ARD kernel matrix
    :math:`s^2 \exp\big(-\tfrac{1}{2} \sum_d (a_d - b_d)^2 / \lambda_d^2\big)`,
    (len(a), len(b)).

    The squared distance is expanded as :math:`|a'|^2 + |b'|^2 - 2\, a' \cdot b'` on the
    rescaled inputs :math:`a' = (a - c)/\lambda`, :math:`b' = (b - c)/\lambda` (clamped at 0
    against round-off): memory :math:`O(\operatorname{len}(a) \cdot \operatorname{len}(b))`,
    not the :math:`O(\operatorname{len}(a) \cdot \operatorname{len}(b) \cdot D)` of
    broadcast differences, so exact GPs on tens of thousands of points fit.
    The shift :math:`c` (the mean of ``b``) leaves every distance unchanged and
    keeps the norms small, since the expansion's round-off is about
    :math:`\mathrm{eps} \cdot (|a'|^2 + |b'|^2)`.
    """
    ls = jax.lax.broadcast_to_rank(jnp.exp(log_ls), 2)
    shift = jax.lax.stop_gradient(jnp.mean(b, 0, keepdims=True))
    a, b = (a - shift) / ls, (b - shift) / ls
    # full-precision matmul: TPUs default to bfloat16 passes, which would
    # swamp the distance of nearby points in the cancellation
    ab = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    d2 = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * ab
    return jnp.exp(log_amp) * jnp.exp(-0.5 * jnp.maximum(d2, 0.0))


def _sqexp_ard_self(z, log_amp, log_ls):
    """``sqexp_ard(z, z, …)`` by broadcast differences, O(M²·D) memory: K_ZZ
    must be positive definite to within the jitter, and the expansion's
    round-off (~eps·|z'|², e.g. 1e-5 in float32 for inducing points a few
    lengthscales from their mean) can exceed a jitter of 1e-5; differences
    are exact to rounding, symmetric, with the diagonal exactly s²."""
    d = (z[:, None, :] - z[None, :, :]) / jax.lax.broadcast_to_rank(jnp.exp(log_ls), 3)
    return jnp.exp(log_amp) * jnp.exp(-0.5 * jnp.sum(d * d, -1))


def _chol_factor(raw):
    """R = strictly-lower(raw) + diag(exp(diag raw)), batched over outputs."""
    diag = jnp.exp(jnp.diagonal(raw, axis1=-2, axis2=-1))
    eye = jax.lax.broadcast_to_rank(jnp.eye(raw.shape[-1], dtype=raw.dtype), raw.ndim)
    return jnp.tril(raw, -1) + diag[..., None] * eye


def _flag(value, where):
    return require_scale_flag(value, "jitter_absolute_scale", where)


def _layer(layer, x, jitter, absolute=True):
    """Marginal mean and variance (N, D_out) of one layer at inputs x (N, D_in);
    ``K_ZZ + j I`` with ``j = jitter`` (``absolute``) or ``jitter · mean(diag K_ZZ)`` (≈ s²)."""
    z = layer["z"]
    kzz = _sqexp_ard_self(z, layer["log_amp"], layer["log_ls"])
    lz = jittered_cholesky(
        kzz,
        jitter,
        relative=not absolute,
        where="deep_gp",
        arg="K_ZZ",
        scale_flag="jitter_absolute_scale",
    ).factor
    a = jax.scipy.linalg.solve_triangular(
        lz, sqexp_ard(z, x, layer["log_amp"], layer["log_ls"]), lower=True
    )  # (M, N)
    r = _chol_factor(layer["q_sqrt"])  # (D, M, M)
    mean = a.T @ layer["q_mu"] + x @ jax.lax.stop_gradient(layer["w"])
    rta = jnp.einsum("dmk,mn->dkn", r, a)  # Rᵀ A per output
    # k(x,x) − AᵀA ≥ 0 in exact arithmetic; clamp float32 round-off
    var = (
        jnp.maximum(jnp.exp(layer["log_amp"]) - jnp.sum(a**2, 0), 0.0)[:, None]
        + jnp.sum(rta**2, 1).T
    )
    return mean, var


def _kl(layer):
    r = _chol_factor(layer["q_sqrt"])
    m = layer["q_mu"].shape[0]
    return 0.5 * jnp.sum(
        jnp.sum(r**2, (1, 2))
        + jnp.sum(layer["q_mu"] ** 2, 0)
        - m
        - 2 * jnp.sum(jnp.log(jnp.diagonal(r, axis1=1, axis2=2)), 1)
    )


def _propagate(params, x, key, num_samples, jitter, chunk=None, absolute=True):
    """Last layer's marginal mean and variance, (num_samples, N, D_L), one sample path per row;
    ``chunk`` samples at a time if given (memory ∝ chunk·D·M·N, not num_samples·D·M·N)."""
    layers = params["layers"]

    def one(k):
        h = x
        for i, layer in enumerate(layers[:-1]):
            mu, var = _layer(layer, h, jitter, absolute)
            h = mu + jnp.sqrt(var) * jax.random.normal(jax.random.fold_in(k, i), mu.shape, mu.dtype)
        return _layer(layers[-1], h, jitter, absolute)

    keys = jax.random.split(key, num_samples)
    return jax.vmap(one)(keys) if chunk is None else jax.lax.map(one, keys, batch_size=chunk)


def elbo(
    params, x, y, key, num_samples=5, n_total=None, jitter=1e-5, *, jitter_absolute_scale=True
):
    r"""The ELBO above on (x, y) (a minibatch of a set of n_total points, if given);
    ``jitter`` of every :math:`K_{ZZ}` absolute if ``jitter_absolute_scale`` (the
    default), else relative to its mean diagonal (module doc)."""
    absolute = _flag(jitter_absolute_scale, "deep_gp.elbo")
    y = y.reshape(len(y), -1)
    n_total = len(x) if n_total is None else n_total
    mu, var = _propagate(params, x, key, num_samples, jitter, absolute=absolute)
    s2 = jnp.exp(params["log_noise"])
    ell = -0.5 * (jnp.log(2 * jnp.pi * s2) + ((y[None] - mu) ** 2 + var) / s2)
    kl = sum(jnp.sum(_kl(layer)) for layer in params["layers"])
    return n_total / len(x) * jnp.sum(jnp.mean(ell, 0)) - kl


def init(x, y, key, layers=2, num_inducing=100, noise_var=0.1):
    r"""Parameters: hidden widths :math:`D` = input dim, SE-ARD :math:`\lambda = \sqrt{D}`,
    :math:`s^2 = 1`, :math:`\sigma_y^2 = \mathtt{noise\_var}`; hidden
    :math:`q(v) = \mathcal{N}(0, 10^{-5} I)` (near-deterministic start, as in the paper),
    last :math:`\mathcal{N}(0, I)`."""
    x, y = _check_xy(x, y, "deep_gp.init")
    layers = _checks.require_int(layers, "layers", "deep_gp.init")
    num_inducing = _checks.require_int(num_inducing, "num_inducing", "deep_gp.init")
    _checks.require_positive(noise_var, "noise_var", "deep_gp.init")
    n, d = x.shape
    dy = y.shape[1]
    m = min(num_inducing, n)
    z = x[np.asarray(jax.random.choice(key, n, (m,), replace=False))]
    out = []
    for i in range(layers):
        last = i == layers - 1
        d_in, d_out = d, (dy if last else d)
        w = np.zeros((d_in, d_out), np.float32) if last else np.eye(d, dtype=np.float32)
        scale = 1.0 if last else 1e-5
        out.append(
            dict(
                z=jnp.asarray(z),
                w=jnp.asarray(w),
                log_amp=jnp.zeros((), jnp.float32),
                log_ls=jnp.full((d_in,), 0.5 * np.log(d_in), jnp.float32),
                q_mu=jnp.zeros((m, d_out), jnp.float32),
                q_sqrt=jnp.asarray(np.log(scale) * np.eye(m)[None].repeat(d_out, 0), jnp.float32),
            )
        )
    return dict(layers=tuple(out), log_noise=jnp.asarray(np.log(noise_var), jnp.float32))


def _mask(params, fixed):
    """1 for trained leaves, 0 for fixed ones (Adam's update is 0 where the gradient
    always is, so masking gradients holds a leaf exactly)."""
    names = dict(z="z", log_amp="kernel", log_ls="kernel", w="w")

    def leaf(path, _):
        key = str(path[-1].key) if hasattr(path[-1], "key") else ""
        group = "noise" if key == "log_noise" else names.get(key)
        return jnp.asarray(0.0 if group in fixed or group == "w" else 1.0)

    return jax.tree_util.tree_map_with_path(leaf, params)


@functools.partial(
    jax.jit, static_argnames=("steps", "batch", "num_samples", "jitter_absolute_scale")
)
def adam_steps(
    params,
    mask,
    x,
    y,
    key,
    learning_rate,
    jitter,
    *,
    steps,
    batch,
    num_samples,
    jitter_absolute_scale=True,
):
    r"""``steps`` Adam steps on :math:`-\mathrm{ELBO}/N` in one compiled scan, as `fit`
    takes them.

    Step :math:`i` draws ``batch`` of the :math:`N` rows without replacement (all of them
    when ``batch`` is None) and ``num_samples`` sample paths, and updates with the
    gradient :math:`-\mathtt{mask} \odot \nabla \mathrm{ELBO} / N` (the minibatch bound
    scaled by :math:`N/B`).
    `fit` checks its arguments and builds the mask; this is the jitted loop
    itself, e.g. to trace or cost a step with abstract arguments.

    Args:
      params: from `init`; mask: a pytree like ``params`` of scalars, 1 for
        trained leaves and 0 for fixed ones (`fit` fixes the mean functions'
        ``w`` and the groups named in its ``fixed``).
      x: ``(N, D)`` float32 inputs; y: ``(N, D_L)`` float32 targets; key: PRNG key.
      learning_rate, jitter: scalars; steps, batch, num_samples: static ints
        (``batch`` an int :math:`< N` or None); jitter_absolute_scale: static bool,
        as in `elbo`.

    Returns:
      ``(params, trace)``: the parameters after the last step and the ELBO of
      each step's minibatch, ``(steps,)``.

    Example:
      The shapes of three steps (traced, not compiled: `fit` runs them):

      >>> import jax, numpy as np
      >>> from ntk.dkm import deep_gp
      >>> rng = np.random.default_rng(0)
      >>> x = rng.normal(size=(20, 3)).astype(np.float32); y = np.sin(x[:, :1])
      >>> params = deep_gp.init(x, y, jax.random.PRNGKey(0), layers=2, num_inducing=8)
      >>> mask = jax.tree_util.tree_map(lambda a: np.float32(1.0), params)
      >>> params, trace = jax.eval_shape(
      ...     lambda p: deep_gp.adam_steps(p, mask, x, y, jax.random.PRNGKey(1),
      ...                                  0.01, 1e-5, steps=3, batch=None, num_samples=2),
      ...     params)
      >>> trace.shape
      (3,)
    """
    _flag(jitter_absolute_scale, "deep_gp.adam_steps")
    tx = optax.adam(learning_rate)
    n = len(x)

    def step(carry, k):
        p, state = carry
        kb, ks = jax.random.split(k)
        if batch is None:
            xb, yb = x, y
        else:
            idx = jax.random.choice(kb, n, (batch,), replace=False)
            xb, yb = x[idx], y[idx]
        value, g = jax.value_and_grad(elbo)(
            p, xb, yb, ks, num_samples, n, jitter, jitter_absolute_scale=jitter_absolute_scale
        )
        g = jax.tree_util.tree_map(lambda gi, mi: -gi * mi / n, g, mask)  # minimise −ELBO/N
        updates, state = tx.update(g, state, p)
        return (optax.apply_updates(p, updates), state), value

    (params, _), trace = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, steps))
    return params, trace


def fit(
    x,
    y,
    key,
    layers=2,
    num_inducing=100,
    steps=2000,
    learning_rate=0.01,
    batch_size=None,
    num_samples=5,
    noise_var=0.1,
    jitter=1e-5,
    params=None,
    fixed=(),
    return_trace=False,
    *,
    jitter_absolute_scale=True,
):
    r"""Maximise the ELBO with Adam; ``params`` (from `init`) overrides the default start,
    ``fixed`` :math:`\subseteq` ``FIXABLE`` holds inducing points / kernel / noise at their start;
    ``jitter`` absolute if ``jitter_absolute_scale`` (the default), else relative."""
    name = "deep_gp.fit"
    if isinstance(fixed, str) or not set(fixed) <= set(FIXABLE):
        raise ValueError(
            f"{name}: `fixed` must be a tuple of names among {FIXABLE}; got {fixed!r}."
        )
    _check_xy(x, y, name)
    steps = _checks.require_int(steps, "steps", name)
    _checks.require_positive(learning_rate, "learning_rate", name)
    if batch_size is not None:
        _checks.require_int(batch_size, "batch_size", name)
    num_samples = _checks.require_int(num_samples, "num_samples", name)
    _checks.require_nonnegative(jitter, "jitter", name)
    absolute = _flag(jitter_absolute_scale, name)
    k_init, k_fit = jax.random.split(key)
    if params is None:
        params = init(x, y, k_init, layers, num_inducing, noise_var)
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32).reshape(len(x), -1)
    batch = batch_size if batch_size and batch_size < len(x) else None
    params, trace = adam_steps(
        params,
        _mask(params, tuple(fixed)),
        x,
        y,
        k_fit,
        jnp.float32(learning_rate),
        jnp.float32(jitter),
        steps=steps,
        batch=batch,
        num_samples=num_samples,
        jitter_absolute_scale=absolute,
    )
    return (params, np.asarray(trace)) if return_trace else params


@functools.partial(jax.jit, static_argnames=("num_samples", "absolute"))
def _predict(params, x, key, jitter, *, num_samples, absolute=True):
    # 10 samples at a time: 100 vmapped samples of a 13-wide hidden layer at 4,000 test
    # points would hold 100·13·M·4000 floats (2 GB at M = 100)
    mu, var = _propagate(params, x, key, num_samples, jitter, chunk=10, absolute=absolute)
    return mu.mean(0), var.mean(0) + mu.var(0)


def predict(params, x_test, key, num_samples=100, jitter=1e-5, *, jitter_absolute_scale=True):
    r"""Moment-matched predictive of y: (mean, variance incl. :math:`\sigma_y^2`), each (N, D_L)
    squeezed to (N,) for one output; ``jitter`` as in `fit`."""
    absolute = _flag(jitter_absolute_scale, "deep_gp.predict")
    x_test = _checks.as_numpy(x_test, "x_test", "deep_gp.predict", ndim=2, what="(N, D)")
    d = params["layers"][0]["z"].shape[1]
    if x_test.shape[1] != d:
        raise ValueError(
            f"deep_gp.predict: `x_test` must have shape (N, {d}) like the "
            f"training inputs; got {x_test.shape}."
        )
    num_samples = _checks.require_int(num_samples, "num_samples", "deep_gp.predict")
    mean, var = _predict(
        params,
        jnp.asarray(x_test, jnp.float32),
        key,
        jnp.float32(jitter),
        num_samples=num_samples,
        absolute=absolute,
    )
    var = var + jnp.exp(params["log_noise"])
    if mean.shape[1] == 1:
        mean, var = mean[:, 0], var[:, 0]
    return np.asarray(mean, np.float64), np.asarray(var, np.float64)


def _check_xy(x, y, name):
    """Inputs ``x (N, D)`` and targets ``y (N,)`` or ``(N, D_L)`` as float32 NumPy
    arrays (``y`` as ``(N, D_L)``)."""
    x = _checks.as_numpy(x, "x", name, ndim=2, what="(N, D)", nonempty=True)
    y = _checks.as_numpy(y, "y", name, ndim=(1, 2), what="(N,) or (N, D_L)")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}: `y` must have {x.shape[0]} rows like `x`; got shape {y.shape}.")
    return x.astype(np.float32), y.reshape(len(y), -1).astype(np.float32)
