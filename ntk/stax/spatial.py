r"""Spatial geometry of convolution and pooling kernels (channels last).

A spatial layer maps each output position :math:`o` to a window of input positions
:math:`o \cdot \mathrm{stride} + d - \mathrm{pad\_lo}`, :math:`d < \mathrm{window}`.
In the kernel, a convolution with i.i.d. weights shared over positions correlates
the two arguments only through the same filter tap :math:`d`, so the covariance is
"shifted together" along each pair of spatial axes (Novak et al. 2019, "Bayesian
deep CNNs with many channels are GPs", eq. 8; Arora et al. 2019, CNTK):

.. math::

    K'(o, o') = (1/|F|) \sum_{d \in F} K(o \cdot s + d, o' \cdot s + d),

whereas pooling sums the two arguments' windows independently (separable):

.. math::

    K'(o, o') = \sum_{d, d'} K(o \cdot s + d, o' \cdot s + d') / |\mathrm{window}|^2.

Both are window sums of a padded array, one ``reduce_window`` per spatial axis
(see ``window_sum``), so no shifted copies are materialised.

Internal to `ntk.stax`: the functions here are shared by `ntk.stax.conv` and
`ntk.stax.pooling`, not public API.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk.kernel import Kernel
from ntk.stax.masking import spatial_positions

PADDINGS = ("VALID", "SAME", "CIRCULAR")


class Padding(str, enum.Enum):
    """Padding of convolution and pooling layers (neural-tangents' enum and values).

    ``VALID``: no padding; ``SAME``: zeros, so a stride-1 layer keeps the
    spatial shape (`jax.lax`'s split, the extra position high); ``CIRCULAR``:
    periodic, as if the input were a torus. Accepted wherever a padding string
    is, e.g. ``stax.Conv(8, (3, 3), padding=stax.Padding.CIRCULAR)``; a `str`
    subclass, so ``Padding.SAME == "SAME"``.

    Example:
      Output shapes of a window of 3 on a sequence of 5:

      >>> from ntk.stax import AvgPool, Padding
      >>> Padding.SAME == "SAME", Padding("CIRCULAR") is Padding.CIRCULAR
      (True, True)
      >>> [AvgPool((3,), padding=p).init_fn(None, (2, 5, 1))[0] for p in Padding]
      [(2, 5, 1), (2, 5, 1), (2, 3, 1)]
    """

    CIRCULAR = "CIRCULAR"
    SAME = "SAME"
    VALID = "VALID"


def check_padding(padding, name: str) -> str:
    p: Optional[str]
    if isinstance(padding, Padding):
        p = padding.value
    else:
        p = padding.upper() if isinstance(padding, str) else None
    if p not in PADDINGS:
        raise ValueError(f"{name}: `padding` must be one of {PADDINGS}; got {padding!r}.")
    return p


def positive_ints(
    values, arg: str, name: str, length: Optional[int] = None, allow_empty: bool = False
) -> tuple:
    t: Optional[tuple]
    try:
        t = tuple(values)
    except TypeError:
        t = None
    ok = (
        t is not None
        and (len(t) > 0 or allow_empty)
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in t)
    )
    if not ok:
        what = "a tuple" if allow_empty else "a non-empty tuple"
        raise ValueError(f"{name}: `{arg}` must be {what} of positive ints; got {values!r}.")
    assert t is not None  # for the type checker: `ok` implies it
    if length is not None and len(t) != length:
        raise ValueError(
            f"{name}: `{arg}` must have one entry per spatial axis ({length}); got {values!r}."
        )
    return tuple(int(v) for v in t)


def axis_plan(size: int, window: int, stride: int, padding: str):
    r"""``(out_size, (pad_lo, pad_hi))`` of one axis, by `jax.lax`'s rules.

    VALID: :math:`\mathrm{out} = \lfloor (\mathrm{size} - \mathrm{window})
    / \mathrm{stride} \rfloor + 1`, no padding. SAME / CIRCULAR:
    :math:`\mathrm{out} = \lceil \mathrm{size} / \mathrm{stride} \rceil` and the missing
    :math:`(\mathrm{out} - 1) \cdot \mathrm{stride} + \mathrm{window} - \mathrm{size}`
    positions are split low/high with the extra one high (zeros for SAME, periodic
    copies for CIRCULAR).
    """
    if padding == "VALID":
        return ((size - window) // stride + 1 if size >= window else 0), (0, 0)
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, (total // 2, total - total // 2)


def spatial_plan(
    spatial: tuple,
    window: Sequence[int],
    strides: Sequence[int],
    padding: str,
    name: str,
    what: str,
) -> list:
    plan = [axis_plan(n, w, s, padding) for n, w, s in zip(spatial, window, strides)]
    if any(out < 1 for out, _ in plan):
        raise ValueError(
            f"{name}: {what} {window} with strides {strides} and "
            f"padding {padding} leaves no output positions on "
            f"spatial shape {spatial}; expected every spatial size "
            f">= the {what} size, or padding 'SAME'/'CIRCULAR'."
        )
    return plan


def check_spatial_rank(shape: tuple, n_spatial: int, name: str, what: str):
    """Inputs of a layer with an ``n_spatial``-D window must be (N, *S, C)."""
    if len(shape) != n_spatial + 2:
        axes = {0: "(N, C)", 1: "(N, L, C)", 2: "(N, H, W, C)"}.get(
            n_spatial, f"(N, <{n_spatial} spatial axes>, C)"
        )
        hint = " (vectors: use Dense)" if len(shape) == 2 else ""
        raise ValueError(
            f"{name}: a {n_spatial}-D {what} needs inputs of shape "
            f"{axes}, rank {n_spatial + 2}; got shape {tuple(shape)} "
            f"of rank {len(shape)}{hint}."
        )


def window_sum(
    m, axes: Sequence[int], window: int, stride: int, pads: tuple, out_size: int, circular: bool
):
    r""":math:`\sum_{d < \mathrm{window}} \tilde{m}[\ldots, o \cdot \mathrm{stride} + d, \ldots]`,
    the same :math:`d` on all ``axes``.

    :math:`\tilde{m}` is ``m`` padded by ``pads`` on each of ``axes`` with zeros, or
    periodically (``circular``). One axis gives a window sum; an adjacent pair
    of axes gives the diagonal (shift-together) sum of a convolution kernel.

    Both are one ``reduce_window``: for a pair :math:`(a, a')` of padded size
    :math:`P` the flat index :math:`a \cdot P + a'` moves by :math:`P + 1` when both
    move by 1, so the diagonal sum is a window sum with dilation :math:`P + 1` along
    the flattened pair. (Summing shifted slices instead lets XLA fuse the cheap slices into
    every consumer, recomputing them several times per layer: 2-3x slower.)
    """
    lo, hi = pads
    nd = m.ndim
    if window == stride == 1 and lo == hi == 0:
        return m  # a 1-tap window (1×1 convolution) is the identity
    if circular and (lo or hi):
        widths = [(0, 0)] * nd
        for a in axes:
            widths[a] = (lo, hi)
        m = jnp.pad(m, widths, mode="wrap")
        lo = hi = 0
    # A concrete (NumPy) zero selects JAX's differentiable window-sum primitive.
    zero = np.zeros((), m.dtype)
    if len(axes) == 1:
        (a,) = axes
        dims, steps, padding = [1] * nd, [1] * nd, [(0, 0)] * nd
        dims[a], steps[a], padding[a] = window, stride, (lo, hi)
        return jax.lax.reduce_window(m, zero, jax.lax.add, dims, steps, padding)
    a, b = axes
    if b != a + 1:
        raise AssertionError("shift-together axes must be adjacent")
    if lo or hi:
        # Only the second axis is padded explicitly: padding the first one by
        # whole zero rows is the same as padding the flattened pair by
        # lo·P / hi·P, which reduce_window does without a copy.
        widths = [(0, 0)] * nd
        widths[b] = (lo, hi)
        m = jnp.pad(m, widths)
    h, p = m.shape[a], m.shape[b]
    flat = m.reshape(m.shape[:a] + (h * p,) + m.shape[b + 1 :])
    dims, dilation, padding = [1] * flat.ndim, [1] * flat.ndim, [(0, 0)] * flat.ndim
    dims[a], dilation[a] = window, p + 1
    padding[a] = (lo * p, hi * p + (window - 1) * (p + 1))
    summed = jax.lax.reduce_window(
        flat, zero, jax.lax.add, dims, [1] * flat.ndim, padding, window_dilation=dilation
    )
    summed = summed.reshape(m.shape[:a] + (p, p) + m.shape[b + 1 :])
    limit, steps = list(summed.shape), [1] * nd
    for ax in (a, b):
        limit[ax], steps[ax] = stride * (out_size - 1) + 1, stride
    return jax.lax.slice(summed, [0] * nd, limit, steps)


def pair_axes(n_batch: int, i: int, diagonal_spatial: bool) -> tuple:
    """Axes holding spatial dimension ``i`` of a covariance array."""
    if diagonal_spatial:
        return (n_batch + i,)
    return (n_batch + 2 * i, n_batch + 2 * i + 1)


def conv_cov(
    m,
    n_batch: int,
    diagonal_spatial: bool,
    plan: list,
    filter_shape: tuple,
    strides: tuple,
    circular: bool,
):
    r""":math:`(1/|F|) \sum_{d \in F} m(o \cdot s + d, o' \cdot s + d)`, one spatial
    dimension at a time.

    Works in both layouts: with ``diagonal_spatial`` each dimension is one axis
    (:math:`o = o'`); otherwise it is an interleaved pair :math:`(o, o')`.
    """
    if m is None:
        return None
    for i, ((out, pads), f, s) in enumerate(zip(plan, filter_shape, strides)):
        m = window_sum(m, pair_axes(n_batch, i, diagonal_spatial), f, s, pads, out, circular)
    return m * (1.0 / math.prod(filter_shape))


def edge_counts(size: int, window: int, stride: int, pads: tuple, out: int) -> np.ndarray:
    """Number of in-image positions in each output window (SAME padding)."""
    lo = pads[0]
    starts = np.arange(out) * stride - lo
    return np.array(
        [np.sum((s + np.arange(window) >= 0) & (s + np.arange(window) < size)) for s in starts],
        dtype=float,
    )


def require_full(k: Kernel, name: str):
    if k.diagonal_spatial and k.spatial_ndim > 0:
        raise ValueError(
            f"{name}: needs covariances between different spatial "
            f"positions, i.e. a Kernel with diagonal_spatial=False; "
            f"got diagonal_spatial=True. Build the input kernel with "
            f"inputs_to_kernel(..., diagonal_spatial=False), or call "
            f"the network's kernel_fn on arrays (it picks the layout)."
        )


def shapes_with(k: Kernel, spatial: Sequence[int], channels: int) -> dict:
    return dict(
        shape1=(k.shape1[0],) + tuple(spatial) + (channels,),
        shape2=(k.shape2[0],) + tuple(spatial) + (channels,),
    )


# ------------------------------------------------- transposed convolution


class TransposeAxis(NamedTuple):
    r"""Geometry of one spatial axis of ``jax.lax.conv_transpose``.

    The input is dilated by ``stride`` (``stride - 1`` zeros between
    entries), padded by ``pads`` and correlated with the filter, giving
    ``valid_out`` positions. CIRCULAR then folds them onto
    :math:`\mathrm{out} = \mathrm{size} \cdot \mathrm{stride}` positions: entry
    :math:`q` is added to :math:`(q - \mathrm{offset}) \bmod \mathrm{out}`.
    Without a fold ``out == valid_out`` and ``offset == 0``.
    """

    out: int
    pads: tuple
    valid_out: int
    offset: int
    circular: bool = False


def transpose_axis_plan(size: int, window: int, stride: int, padding: str) -> TransposeAxis:
    r"""`TransposeAxis` by `jax.lax.conv_transpose`'s padding rule.

    SAME: ``window + stride - 2`` padded positions, low ``window - 1`` if
    ``stride > window - 1`` else half rounded up;
    :math:`\mathrm{out} = \mathrm{size} \cdot \mathrm{stride}`. VALID (and CIRCULAR
    before its fold): low ``window - 1``, in all
    ``window + stride - 2 + max(window - stride, 0)``, so
    :math:`\mathrm{out} = \mathrm{size} \cdot \mathrm{stride}
    + \max(\mathrm{window} - \mathrm{stride}, 0)`. CIRCULAR is
    neural-tangents' transpose of circular padding: the VALID output folded
    onto the SAME grid, centred (``offset = (valid_out - out) // 2``).
    """
    if padding == "SAME":
        total = window + stride - 2
        lo = window - 1 if stride > window - 1 else -(-total // 2)
    else:
        total = window + stride - 2 + max(window - stride, 0)
        lo = window - 1
    valid_out = (size - 1) * stride + 1 + total - window + 1
    if padding != "CIRCULAR":
        return TransposeAxis(valid_out, (lo, total - lo), valid_out, 0)
    out = size * stride
    return TransposeAxis(out, (lo, total - lo), valid_out, (valid_out - out) // 2, True)


def fold_axis(m, axis: int, period: int, offset: int):
    r""":math:`\mathrm{out}[j] = \sum_{q \equiv j + \mathrm{offset} \pmod{\mathrm{period}}}
    m[q]` along ``axis``.

    A zero-padded reshape to :math:`(\lceil \cdot/\mathrm{period} \rceil, \mathrm{period})`
    and a sum: every entry
    lands on exactly one output position, however many periods ``m`` spans.
    """
    size = m.shape[axis]
    lo = (-offset) % period
    blocks = -(-(lo + size) // period)
    widths = [(0, 0)] * m.ndim
    widths[axis] = (lo, blocks * period - lo - size)
    m = jnp.pad(m, widths)
    m = m.reshape(m.shape[:axis] + (blocks, period) + m.shape[axis + 1 :])
    return m.sum(axis)


def transpose_conv_cov(
    m,
    n_batch: int,
    diagonal_spatial: bool,
    plan: list,
    filter_shape: Sequence[int],
    strides: Sequence[int],
):
    r"""Covariance after a transposed convolution with i.i.d. shared weights.

    With :math:`\tilde{K}` the covariance dilated by the stride and padded as the
    input of ``conv_transpose`` is (on both axes of a pair),
    :math:`K'(o, o') = (1/|F|) \sum_{d \in F} \tilde{K}(o + d, o' + d)`: the same
    shift-together window sum as a convolution, on the dilated array
    (neural-tangents' ``_conv_kernel_*_transpose``).

    CIRCULAR folds that with period :math:`L = \mathrm{size} \cdot \mathrm{stride}` on
    both axes of a pair. Input :math:`i` sits at
    :math:`\mathrm{pad\_lo} + i \cdot \mathrm{stride}` of :math:`\tilde{K}`, a different
    residue mod :math:`L` for each :math:`i`, so the folded sum is a circular window
    sum over the input dilated to length :math:`L` and rolled by
    ``pad_lo - offset``: computed that way, like a CIRCULAR `Conv`, instead
    of folding the larger VALID result (4-5x faster in the full layout). The
    diagonal layout needs no cross-position terms: positions one period apart
    come from inputs ``size`` apart, which do not exist.
    """
    if m is None:
        return None
    zero = np.zeros((), m.dtype)
    for i, (geo, f, s) in enumerate(zip(plan, filter_shape, strides)):
        axes = pair_axes(n_batch, i, diagonal_spatial)
        config = [(0, 0, 0)] * m.ndim
        for a in axes:
            config[a] = (0, s - 1, s - 1) if geo.circular else geo.pads + (s - 1,)
        m = jax.lax.pad(m, zero, config)
        if geo.circular:
            shift = (geo.pads[0] - geo.offset) % geo.out
            for a in axes:
                m = jnp.roll(m, shift, a)
            m = window_sum(m, axes, f, 1, (0, f - 1), geo.out, True)
        else:
            m = window_sum(m, axes, f, 1, (0, 0), geo.valid_out, False)
    return m * (1.0 / math.prod(filter_shape))


# ---------------------------------------------- unshared (local) convolution


def spatial_diagonal(m, n_batch: int):
    """Full layout ``(*B, S1, S1', S2, S2', ...)`` -> same-position ``(*B, S1, S2, ...)``."""
    if m is None:
        return None
    for _ in range((m.ndim - n_batch) // 2):
        # Each pass moves the diagonal of the first pair to the end, so after
        # all passes the spatial order is restored.
        m = jnp.diagonal(m, axis1=n_batch, axis2=n_batch + 1)
    return m


def embed_diagonal(m, n_batch: int):
    """Same-position ``(*B, S1, S2, ...)`` -> full layout with zero covariance
    between different positions."""
    if m is None:
        return None
    spatial = m.shape[n_batch:]
    out = m.reshape(m.shape[:n_batch] + tuple(x for s in spatial for x in (s, 1)))
    for i, s in enumerate(spatial):
        shape = [1] * out.ndim
        shape[n_batch + 2 * i] = shape[n_batch + 2 * i + 1] = s
        out = out * jnp.eye(s, dtype=m.dtype).reshape(shape)
    return out


def window_mask_fn(window: Sequence[int], strides: Sequence[int], padding: str, name: str):
    """``mask_fn`` of a convolution or pooling (`ntk.stax.masking`).

    Output position ``o`` is masked when the centre of its window, input
    position ``o·s - pad_lo + (w - 1) // 2`` along each axis, is masked
    (neural-tangents' ``_pool_mask``); the channel axis is collapsed first
    (a position is masked when all its channels are).
    """

    def mask_fn(mask, input_shape):
        check_spatial_rank(tuple(input_shape), len(window), name, "window")
        plan = spatial_plan(tuple(input_shape[1:-1]), window, strides, padding, name, "window")
        m = spatial_positions(mask, input_shape)
        start, limit, steps = [0], [m.shape[0]], [1]
        for (out, (lo, _)), w, s in zip(plan, window, strides):
            first = -lo + (w - 1) // 2
            start.append(first)
            limit.append(first + (out - 1) * s + 1)
            steps.append(s)
        return jax.lax.slice(m, start, limit, steps)[..., None]

    return mask_fn


def transpose_window_mask_fn(window: Sequence[int], strides: Sequence[int], padding: str):
    """``mask_fn`` of a transposed convolution (`ntk.stax.masking`).

    As in neural-tangents an output position is masked when any input
    position that reaches it through the filter is (the mask, channels
    collapsed, transposed-convolved with a filter of ones); CIRCULAR takes the
    SAME geometry.
    """

    def mask_fn(mask, input_shape):
        n = len(window)
        m = spatial_positions(mask, input_shape)[..., None].astype(jnp.float32)
        spec = "N" + "HWDABEFGJKLMPQRSTUVXYZ"[:n] + "C"
        ones = jnp.ones(tuple(window) + (1, 1), jnp.float32)
        out = jax.lax.conv_transpose(
            m,
            ones,
            strides,
            "VALID" if padding == "VALID" else "SAME",
            dimension_numbers=(spec, spec[1:-1] + "IO", spec),
        )
        return out != 0

    return mask_fn
