"""Linear layers: affine maps, reshapes, pooling, normalisation, dropout.

Parameterizations (Jacot et al. 2018 §2; Sohl-Dickstein et al. 2020, "On the
infinite width limit of neural networks with a standard parameterization"),
for a layer with ``n`` inputs per output (fan-in) and weights ``W_ij ~ N(0, 1)``:

* ``"ntk"``:      ``y = W_std / sqrt(n) · x W + b_std · b``
* ``"standard"``: ``y = x W + b`` with ``W_ij ~ N(0, W_std² / n)``,
  ``b ~ N(0, b_std²)``.

Both give the same NNGP, ``K' = W_std² K + b_std²``. The NTK picks up each
parameter's gradient Gram: ``Θ' = W_std² Θ + K'`` under ``"ntk"`` and
``Θ' = W_std² Θ + n K + 1[b_std]`` under ``"standard"``, where ``n`` is the
finite fan-in (the width a finite network would have).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntk.kernel import Kernel
from ntk.stax.layer import Layer, check_std, make_layer

_PARAMETERIZATIONS = ("ntk", "standard")


def _check_parameterization(parameterization: str, name: str) -> str:
    p = str(parameterization).lower()
    if p not in _PARAMETERIZATIONS:
        raise ValueError(f"{name}: `parameterization` must be one of "
                         f"{_PARAMETERIZATIONS}; got {parameterization!r}.")
    return p


def _check_channel_axis(channel_axis: int, batch_axis: int, name: str):
    if channel_axis not in (-1,) or batch_axis != 0:
        raise ValueError(f"{name}: only batch_axis=0 and channel_axis=-1 "
                         f"(NHWC / (N, features)) are supported; got "
                         f"batch_axis={batch_axis}, channel_axis={channel_axis}.")


def affine_kernel(k: Kernel, W_std, b_std, parameterization: str,
                  fan_in_width: float) -> Kernel:
    """Kernel of ``W x + b`` for a Gaussian (W, b); see the module docstring.

    ``fan_in_width`` is the finite fan-in divided by the receptive field (the
    channel count), used only by the standard parameterization.
    """
    def fc(m):
        if m is None:
            return None
        m = W_std ** 2 * m
        return m if b_std is None else m + b_std ** 2

    ntk = k.ntk
    if ntk is not None:
        if parameterization == "ntk":
            ntk = fc(k.nngp) + W_std ** 2 * ntk
        else:
            ntk = fan_in_width * k.nngp + W_std ** 2 * ntk
            if b_std is not None:
                ntk = ntk + 1.0
    return k.replace(nngp=fc(k.nngp), ntk=ntk, cov1=fc(k.cov1), cov2=fc(k.cov2),
                     is_gaussian=True)


def Dense(out_dim: int, W_std: float = 1.0, b_std: float | None = None,
          batch_axis: int = 0, channel_axis: int = -1,
          parameterization: str = "ntk", s: tuple = (1, 1)) -> Layer:
    """Fully connected layer acting on the last (channel) axis.

    Args:
      out_dim: output width of the finite network (ignored by the NTK-
        parameterized kernel, which is its infinite-width limit).
      W_std: weight standard deviation σ_w (≥ 0; may be a traced array).
      b_std: bias standard deviation σ_b, or None for no bias.
      parameterization: ``"ntk"`` or ``"standard"`` (module docstring).
      s: NT's width multipliers for the standard parameterization: the weight
        is ``(s[0] · in, s[1] · out)`` and the fan-in used is ``in / s[0]``.

    Kernel: ``K' = σ_w² K + σ_b²``, ``Θ' = σ_w² Θ + K'`` (NTK parameterization).

    Example:
      >>> _, _, kernel_fn = Dense(512, W_std=1.5, b_std=0.1)
    """
    name = f"Dense({out_dim})"
    if not (isinstance(out_dim, int) and out_dim >= 1):
        raise ValueError(f"{name}: `out_dim` must be a positive int; got {out_dim!r}.")
    check_std(W_std, "W_std", name)
    check_std(b_std, "b_std", name, allow_none=True)
    parameterization = _check_parameterization(parameterization, name)
    _check_channel_axis(channel_axis, batch_axis, name)
    out = out_dim * s[1]

    def init_fn(key, input_shape):
        kw, kb = jax.random.split(key)
        fan_in = input_shape[-1]
        W = jax.random.normal(kw, (fan_in, out))
        b = None if b_std is None else jax.random.normal(kb, (out,))
        if parameterization == "standard":
            W = W * (W_std / (fan_in / s[0]) ** 0.5)
            b = None if b is None else b * b_std
        return tuple(input_shape[:-1]) + (out,), (W, b)

    def apply_fn(params, x, **kwargs):
        W, b = params
        if x.shape[-1] != W.shape[0]:
            raise ValueError(f"{name}: expected inputs with {W.shape[0]} features "
                             f"(last axis); got shape {tuple(x.shape)}.")
        y = x @ W
        if parameterization == "ntk":
            y = y * (W_std / x.shape[-1] ** 0.5)
            return y if b is None else y + b_std * b
        y = y / s[0] ** 0.5
        return y if b is None else y + b

    def transform(k: Kernel, **kwargs) -> Kernel:
        k = affine_kernel(k, W_std, b_std, parameterization,
                          k.shape1[-1] / s[0])
        return k.replace(shape1=tuple(k.shape1[:-1]) + (out,),
                         shape2=tuple(k.shape2[:-1]) + (out,))

    return make_layer(name, init_fn, apply_fn, transform)


def Identity() -> Layer:
    """The identity map (e.g. the skip branch of a residual block)."""
    return make_layer("Identity", lambda key, shape: (shape, ()),
                      lambda params, x, **kw: x, lambda k, **kw: k)


def spatial_mean(m, n_batch: int, diagonal_spatial: bool):
    """Mean over same-position entries: the kernel of a flattened image."""
    if m is None:
        return None
    if not diagonal_spatial:
        d = (m.ndim - n_batch) // 2
        for _ in range(d):
            m = jnp.diagonal(m, axis1=n_batch, axis2=n_batch + 1)
    return jnp.mean(m, axis=tuple(range(n_batch, m.ndim)))


def Flatten(batch_axis: int = 0, batch_axis_out: int = 0) -> Layer:
    """Flatten all but the batch axis: ``(N, *S, C) -> (N, prod(S) C)``.

    A following ``Dense`` then sees every (position, channel) pair as an input,
    so the kernel is the mean over same-position covariances:
    ``K'(x, x') = (1/|S|) Σ_s K(x_s, x'_s)``.
    """
    name = "Flatten"
    if batch_axis != 0 or batch_axis_out != 0:
        raise ValueError(f"{name}: only batch_axis=0 is supported; got "
                         f"batch_axis={batch_axis}, batch_axis_out={batch_axis_out}.")

    def flat(shape):
        size = 1
        for d in shape[1:]:
            size *= d
        return (shape[0], size)

    def init_fn(key, input_shape):
        return flat(tuple(input_shape)), ()

    def apply_fn(params, x, **kwargs):
        return x.reshape(x.shape[0], -1)

    def transform(k: Kernel, **kwargs) -> Kernel:
        if k.spatial_ndim == 0:
            return k
        diag = k.diagonal_spatial
        return k.replace(nngp=spatial_mean(k.nngp, 2, diag),
                         ntk=spatial_mean(k.ntk, 2, diag),
                         cov1=spatial_mean(k.cov1, 1, diag),
                         cov2=spatial_mean(k.cov2, 1, diag),
                         shape1=flat(k.shape1), shape2=flat(k.shape2),
                         diagonal_spatial=False)

    return make_layer(name, init_fn, apply_fn, transform)
