"""Pooling layers: window and global sums and averages (channels last).

Pooling sums each argument's window independently, so its kernel is a
separable window sum of the full spatial covariance (geometry in
`ntk.stax.spatial`); it needs covariances between different positions.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk.kernel import Kernel
from ntk.stax import spec as specs
from ntk.stax._internal import fusion_fence
from ntk.stax.layer import Layer, make_layer
from ntk.stax.masking import masked_mean, position_mask, zero_masked
from ntk.stax.linear import check_channel_axis
from ntk.stax.spatial import (
    check_padding,
    check_spatial_rank,
    edge_counts,
    pair_axes,
    positive_ints,
    require_full,
    shapes_with,
    spatial_plan,
    window_mask_fn,
    window_sum,
)


def _Pool(
    kind: str,
    window_shape,
    strides,
    padding,
    normalize_edges: bool,
    batch_axis: int,
    channel_axis: int,
) -> Layer:
    name = f"{kind}Pool({tuple(window_shape) if np.iterable(window_shape) else window_shape})"
    window = positive_ints(window_shape, "window_shape", name)
    n = len(window)
    strides = (1,) * n if strides is None else positive_ints(strides, "strides", name, n)
    padding = check_padding(padding, name)
    check_channel_axis(channel_axis, batch_axis, name)
    circular = padding == "CIRCULAR"
    by_counts = kind == "Avg" and normalize_edges and padding == "SAME"

    def plan_for(shape):
        check_spatial_rank(shape, n, name, "window")
        return spatial_plan(tuple(shape[1:-1]), window, strides, padding, name, "window")

    def counts(shape, plan):
        return [
            edge_counts(size, w, st, pads, o)
            for size, w, st, (o, pads) in zip(shape[1:-1], window, strides, plan)
        ]

    def init_fn(key, input_shape):
        plan = plan_for(tuple(input_shape))
        return ((input_shape[0],) + tuple(o for o, _ in plan) + (input_shape[-1],), ())

    def apply_fn(params, x, **kwargs):
        plan = plan_for(tuple(x.shape))
        pads: list | str  # the plan's pads, or "VALID" once wrapped
        pads = [(0, 0)] + [p for _, p in plan] + [(0, 0)]
        if circular:
            x, pads = jnp.pad(x, pads, mode="wrap"), "VALID"
        y = jax.lax.reduce_window(
            x, np.zeros((), x.dtype), jax.lax.add, (1,) + window + (1,), (1,) + strides + (1,), pads
        )
        if kind == "Sum":
            return y
        if by_counts:
            for i, c in enumerate(counts(x.shape, plan)):
                y = y / jnp.asarray(c, y.dtype).reshape((1,) * (i + 1) + (-1,) + (1,) * (n - i))
            return y
        return y / math.prod(window)

    def transform(k: Kernel, **kwargs) -> Kernel:
        plan = plan_for(k.shape1)
        require_full(k, name)
        cnt = counts(k.shape1, plan)

        def pool(m, nb):
            if m is None:
                return None
            for i, ((out, pads), w, st) in enumerate(zip(plan, window, strides)):
                for a in pair_axes(nb, i, False):
                    m = window_sum(m, (a,), w, st, pads, out, circular)
            if kind == "Sum":
                return m
            if not by_counts:
                return m * (1.0 / math.prod(window) ** 2)
            for i, c in enumerate(cnt):
                c = jnp.asarray(c, m.dtype)
                shape = [1] * m.ndim
                shape[nb + 2 * i] = shape[nb + 2 * i + 1] = c.shape[0]
                m = m / (c[:, None] * c[None, :]).reshape(shape)
            return m

        k = k.replace(
            nngp=pool(k.nngp, 2), ntk=pool(k.ntk, 2), cov1=pool(k.cov1, 1), cov2=pool(k.cov2, 1)
        )
        return k.replace(**shapes_with(k, [o for o, _ in plan], k.shape1[-1]))

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        needs_full_spatial=True,
        spec=specs.Parameterless(),
        remask=True,
        mask_fn=window_mask_fn(window, strides, padding, name),
    )


def AvgPool(
    window_shape: Sequence[int],
    strides: Optional[Sequence[int]] = None,
    padding: str = "VALID",
    normalize_edges: bool = False,
    batch_axis: int = 0,
    channel_axis: int = -1,
) -> Layer:
    r"""Average pooling over spatial windows (channels last).

    :math:`y(o) = (1/|w|) \sum_{d \in w} x(o \cdot s + d)`; with ``normalize_edges``
    and SAME padding the divisor is the number of in-image positions of the window
    (``jax.example_libraries.stax.AvgPool``), otherwise :math:`|w|` (padded
    positions count as zeros). CIRCULAR pads periodically.

    Kernel (separable: each argument has its own window):
    :math:`K'(o, o') = \sum_{d, d' \in w} K(o \cdot s + d, o' \cdot s + d')
    / (|w_o|\, |w_{o'}|)`, and the same for :math:`\Theta`. Needs the full spatial
    layout (``needs_full_spatial``).

    Example:
      >>> import jax
      >>> from ntk.stax import AvgPool, Conv, Dense, Flatten, Relu, serial
      >>> _, _, kernel_fn = serial(Conv(64, (3, 3)), Relu(), AvgPool((2, 2), (2, 2)),
      ...                          Flatten(), Dense(1))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 3))   # NHWC
      >>> kernel_fn(x, None, "nngp").shape
      (2, 2)
    """
    return _Pool("Avg", window_shape, strides, padding, normalize_edges, batch_axis, channel_axis)


def SumPool(
    window_shape: Sequence[int],
    strides: Optional[Sequence[int]] = None,
    padding: str = "VALID",
    batch_axis: int = 0,
    channel_axis: int = -1,
) -> Layer:
    r"""Sum pooling: :math:`y(o) = \sum_{d \in w} x(o \cdot s + d)`; kernel
    :math:`K'(o, o') = \sum_{d, d' \in w} K(o \cdot s + d, o' \cdot s + d')` (full
    spatial layout).

    Example:
      One window over the whole sequence sums it, so the kernel is that of the
      sums:

      >>> import jax.numpy as jnp
      >>> from ntk.stax import Flatten, SumPool, serial
      >>> x = jnp.arange(12.).reshape(2, 3, 2) / 10                 # (N, L, C)
      >>> SumPool((2,), (1,)).init_fn(None, x.shape)[0]             # windows of 2
      (2, 2, 2)
      >>> k = serial(SumPool((3,)), Flatten()).kernel_fn(x, None, "nngp")
      >>> s = x.sum(1)
      >>> bool(jnp.allclose(k, s @ s.T / 2))
      True
    """
    return _Pool("Sum", window_shape, strides, padding, False, batch_axis, channel_axis)


def _GlobalPool(kind: str, batch_axis: int, channel_axis: int) -> Layer:
    name = f"Global{kind}Pool"
    check_channel_axis(channel_axis, batch_axis, name)
    reduce = jnp.mean if kind == "Avg" else jnp.sum

    def init_fn(key, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, x, mask=None, **kwargs):
        axes = tuple(range(1, x.ndim - 1))
        if mask is not None and kind == "Avg":
            return masked_mean(x, axes, position_mask(mask))
        return reduce(x, axis=axes)

    def transform(k: Kernel, **kwargs) -> Kernel:
        if k.spatial_ndim == 0:
            return k
        require_full(k, name)
        m12, m11, m22 = k.mask_products()

        def pool(m, nb, mask):
            if m is None:
                return None
            axes = tuple(range(nb, m.ndim))
            if mask is None:
                return reduce(fusion_fence(m), axis=axes)
            if kind == "Avg":
                # The mean over unmasked position pairs: Σ K / (n1 n2).
                return masked_mean(m, axes, mask)
            return jnp.sum(zero_masked(m, mask), axis=axes)

        nngp, ntk = k.map_nngp_ntk(lambda m: pool(m, 2, m12))
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=pool(k.cov1, 1, m11),
            cov2=pool(k.cov2, 1, m22),
            shape1=(k.shape1[0], k.shape1[-1]),
            shape2=(k.shape2[0], k.shape2[-1]),
            diagonal_spatial=False,
        )

    def mask_fn(mask, input_shape):
        # Pooled over every position: padding only if all positions are.
        spatial = tuple(range(1, len(input_shape) - 1))
        return jnp.all(position_mask(mask), axis=spatial)

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        needs_full_spatial=True,
        spec=specs.Parameterless(),
        mask_fn=mask_fn,
    )


def GlobalAvgPool(batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    r"""Mean over all spatial positions: ``(N, *S, C) -> (N, C)``.

    Kernel: :math:`K'(x, x') = (1/|S|^2) \sum_{s, s'} K(x_s, x'_{s'})` (and
    :math:`\Theta` alike), the mean of the full spatial covariance (needs the full
    layout).

    Masked inputs (`ntk.stax.masking`): the mean is over the unmasked
    positions only, :math:`y = \sum_{s\ \mathrm{unmasked}} x_s / n` and
    :math:`K'(x, x') = \sum_{s, s'\ \mathrm{unmasked}} K(x_s, x'_{s'}) / (n n')` (0 if
    all are masked), as in neural-tangents; the output is masked only where every
    position is.

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.stax import GlobalAvgPool
      >>> x = jnp.arange(12.).reshape(2, 3, 2) / 10                 # (N, L, C)
      >>> m = x.mean(1)                                             # (N, C)
      >>> bool(jnp.allclose(GlobalAvgPool().kernel_fn(x, None, "nngp"), m @ m.T / 2))
      True
    """
    return _GlobalPool("Avg", batch_axis, channel_axis)


def GlobalSumPool(batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    r"""Sum over all spatial positions: :math:`K'(x, x') = \sum_{s, s'} K(x_s, x'_{s'})`.

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.stax import GlobalSumPool
      >>> x = jnp.ones((2, 3, 2))                 # (N, L, C): every K(x_s, x'_{s'}) = 1
      >>> GlobalSumPool().kernel_fn(x, None, "nngp").tolist()     # 3 × 3 position pairs
      [[9.0, 9.0], [9.0, 9.0]]
    """
    return _GlobalPool("Sum", batch_axis, channel_axis)
