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

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

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

    ``fan_in_width`` multiplies the input NNGP in the standard-parameterization
    NTK (unused under ``"ntk"``): the finite fan-in over ``s[0]``, i.e. the
    channel count for ``Dense`` and channels × filter size for ``Conv``, whose
    ``k.nngp`` arrives here already averaged over the filter window.
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
        is ``(in, s[1] · out)`` and the fan-in used is ``in / s[0]``.

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
    # NT widens the finite layer by s[1] only under the standard parameterization.
    out = out_dim * s[1] if parameterization == "standard" else out_dim

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

    return make_layer(name, init_fn, apply_fn, transform,
                      spec={"kind": "Dense", "W_std": W_std, "b_std": b_std,
                            "parameterization": parameterization, "s": tuple(s)})


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
                         # An entry of the flattened vector is one (position,
                         # channel) pair; the averaged kernel is not the
                         # covariance of any single entry, so an activation
                         # must not follow directly (as in NT).
                         diagonal_spatial=False, is_gaussian=False)

    return make_layer(name, init_fn, apply_fn, transform)


# --------------------------------------------------------- spatial helpers
#
# A spatial layer maps each output position o to a window of input positions
# o·stride + d - pad_lo, d < window. In the kernel, a convolution with i.i.d.
# weights shared over positions correlates the two arguments only through the
# same filter tap d, so the covariance is "shifted together" along each pair
# of spatial axes (Novak et al. 2019, "Bayesian deep CNNs with many channels
# are GPs", eq. 8; Arora et al. 2019, CNTK):
#     K'(o, o') = (1/|F|) Σ_{d ∈ F} K(o·s + d, o'·s + d),
# whereas pooling sums the two arguments' windows independently (separable):
#     K'(o, o') = Σ_{d, d'} K(o·s + d, o'·s + d') / |window|².
# Both are window sums of a padded array, one `reduce_window` per spatial axis
# (see `_window_sum`), so no shifted copies are materialised.

_PADDINGS = ("VALID", "SAME", "CIRCULAR")


def _check_padding(padding, name: str) -> str:
    p = padding.upper() if isinstance(padding, str) else None
    if p not in _PADDINGS:
        raise ValueError(f"{name}: `padding` must be one of {_PADDINGS}; got "
                         f"{padding!r}.")
    return p


def _positive_ints(values, arg: str, name: str,
                   length: Optional[int] = None) -> tuple:
    try:
        t = tuple(values)
    except TypeError:
        t = None
    ok = (t is not None and len(t) > 0
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                  and v >= 1 for v in t))
    if not ok:
        raise ValueError(f"{name}: `{arg}` must be a non-empty tuple of positive "
                         f"ints; got {values!r}.")
    if length is not None and len(t) != length:
        raise ValueError(f"{name}: `{arg}` must have one entry per spatial axis "
                         f"({length}); got {values!r}.")
    return tuple(int(v) for v in t)


def _axis_plan(size: int, window: int, stride: int, padding: str):
    """``(out_size, (pad_lo, pad_hi))`` of one axis, by `jax.lax`'s rules.

    VALID: ``out = floor((size - window) / stride) + 1``, no padding.
    SAME / CIRCULAR: ``out = ceil(size / stride)`` and the missing
    ``(out - 1)·stride + window - size`` positions are split low/high with the
    extra one high (zeros for SAME, periodic copies for CIRCULAR).
    """
    if padding == "VALID":
        return ((size - window) // stride + 1 if size >= window else 0), (0, 0)
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, (total // 2, total - total // 2)


def _spatial_plan(spatial: tuple, window: tuple, strides: tuple, padding: str,
                  name: str, what: str) -> list:
    plan = [_axis_plan(n, w, s, padding)
            for n, w, s in zip(spatial, window, strides)]
    if any(out < 1 for out, _ in plan):
        raise ValueError(f"{name}: {what} {window} with strides {strides} and "
                         f"padding {padding} leaves no output positions on "
                         f"spatial shape {spatial}; expected every spatial size "
                         f">= the {what} size, or padding 'SAME'/'CIRCULAR'.")
    return plan


def _check_spatial_rank(shape: tuple, n_spatial: int, name: str, what: str):
    """Inputs of a layer with an ``n_spatial``-D window must be (N, *S, C)."""
    if len(shape) != n_spatial + 2:
        axes = {1: "(N, L, C)", 2: "(N, H, W, C)"}.get(
            n_spatial, f"(N, <{n_spatial} spatial axes>, C)")
        hint = " (vectors: use Dense)" if len(shape) == 2 else ""
        raise ValueError(f"{name}: a {n_spatial}-D {what} needs inputs of shape "
                         f"{axes}, rank {n_spatial + 2}; got shape {tuple(shape)} "
                         f"of rank {len(shape)}{hint}.")


def _window_sum(m, axes: Sequence[int], window: int, stride: int,
                pads: tuple, out_size: int, circular: bool):
    """``Σ_{d < window} m̃[..., o·stride + d, ...]``, the same ``d`` on all ``axes``.

    ``m̃`` is ``m`` padded by ``pads`` on each of ``axes`` with zeros, or
    periodically (``circular``). One axis gives a window sum; an adjacent pair
    of axes gives the diagonal (shift-together) sum of a convolution kernel.

    Both are one ``reduce_window``: for a pair ``(a, a')`` of padded size ``P``
    the flat index ``a·P + a'`` moves by ``P + 1`` when both move by 1, so the
    diagonal sum is a window sum with dilation ``P + 1`` along the flattened
    pair. (Summing shifted slices instead lets XLA fuse the cheap slices into
    every consumer, recomputing them several times per layer: 2-3x slower.)
    """
    lo, hi = pads
    nd = m.ndim
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
    flat = m.reshape(m.shape[:a] + (h * p,) + m.shape[b + 1:])
    dims, dilation, padding = [1] * flat.ndim, [1] * flat.ndim, [(0, 0)] * flat.ndim
    dims[a], dilation[a] = window, p + 1
    padding[a] = (lo * p, hi * p + (window - 1) * (p + 1))
    summed = jax.lax.reduce_window(flat, zero, jax.lax.add, dims, [1] * flat.ndim,
                                   padding, window_dilation=dilation)
    summed = summed.reshape(m.shape[:a] + (p, p) + m.shape[b + 1:])
    limit, steps = list(summed.shape), [1] * nd
    for ax in (a, b):
        limit[ax], steps[ax] = stride * (out_size - 1) + 1, stride
    return jax.lax.slice(summed, [0] * nd, limit, steps)


def _pair_axes(n_batch: int, i: int, diagonal_spatial: bool) -> tuple:
    """Axes holding spatial dimension ``i`` of a covariance array."""
    if diagonal_spatial:
        return (n_batch + i,)
    return (n_batch + 2 * i, n_batch + 2 * i + 1)


def _conv_cov(m, n_batch: int, diagonal_spatial: bool, plan: list,
              filter_shape: tuple, strides: tuple, circular: bool):
    """``(1/|F|) Σ_{d∈F} m(o·s + d, o'·s + d)``, one spatial dimension at a time.

    Works in both layouts: with ``diagonal_spatial`` each dimension is one axis
    (``o = o'``); otherwise it is an interleaved pair ``(o, o')``.
    """
    if m is None:
        return None
    for i, ((out, pads), f, s) in enumerate(zip(plan, filter_shape, strides)):
        m = _window_sum(m, _pair_axes(n_batch, i, diagonal_spatial), f, s, pads,
                        out, circular)
    return m * (1.0 / math.prod(filter_shape))


def _edge_counts(size: int, window: int, stride: int, pads: tuple,
                 out: int) -> np.ndarray:
    """Number of in-image positions in each output window (SAME padding)."""
    lo = pads[0]
    starts = np.arange(out) * stride - lo
    return np.array([np.sum((s + np.arange(window) >= 0)
                            & (s + np.arange(window) < size)) for s in starts],
                    dtype=float)


def _require_full(k: Kernel, name: str):
    if k.diagonal_spatial and k.spatial_ndim > 0:
        raise ValueError(f"{name}: needs covariances between different spatial "
                         f"positions, i.e. a Kernel with diagonal_spatial=False; "
                         f"got diagonal_spatial=True. Build the input kernel with "
                         f"inputs_to_kernel(..., diagonal_spatial=False), or call "
                         f"the network's kernel_fn on arrays (it picks the layout).")


def _shapes_with(k: Kernel, spatial: tuple, channels: int) -> dict:
    return dict(shape1=(k.shape1[0],) + tuple(spatial) + (channels,),
                shape2=(k.shape2[0],) + tuple(spatial) + (channels,))


# ------------------------------------------------------------------ Conv


def Conv(out_chan: int, filter_shape: Sequence[int],
         strides: Optional[Sequence[int]] = None, padding: str = "VALID",
         W_std: float = 1.0, b_std: Optional[float] = None,
         dimension_numbers: Optional[tuple] = None,
         parameterization: str = "ntk", s: tuple = (1, 1)) -> Layer:
    """Convolution with weights shared over positions (channels last).

    Inputs are ``(N, L, C)`` for a 1-D ``filter_shape`` and NHWC ``(N, H, W, C)``
    for a 2-D one (any ``d``-D works the same way).

    Args:
      out_chan: output channels of the finite network (ignored by the
        NTK-parameterized kernel).
      filter_shape: spatial filter shape ``F``, e.g. ``(3, 3)``.
      strides: one positive int per spatial axis (default all 1).
      padding: ``"VALID"``, ``"SAME"`` (zeros) or ``"CIRCULAR"`` (periodic).
      W_std, b_std: weight and bias standard deviations (b_std None: no bias).
      dimension_numbers: None or the channels-last layout, e.g.
        ``("NHWC", "HWIO", "NHWC")`` (other layouts are not supported).
      parameterization: ``"ntk"`` (``y = W_std/sqrt(C|F|) · x ⋆ W + b_std b``)
        or ``"standard"`` (``W ~ N(0, W_std² s[0] / (C|F|))``).
      s: NT's width multipliers (standard parameterization).

    Kernel (Novak et al. 2019, eq. 8; NTK as in `affine_kernel` with fan-in
    ``C·|F|``): with ``A(K)(o, o') = (1/|F|) Σ_{d∈F} K(o·s + d, o'·s + d)``,
    ``K' = W_std² A(K) + b_std²`` and ``Θ' = W_std² A(Θ) + K'`` ("ntk").
    Positions added by SAME padding have zero covariance; CIRCULAR wraps.

    Example:
      >>> _, _, kernel_fn = serial(Conv(64, (3, 3), padding="SAME"), Relu(),
      ...                          Flatten(), Dense(1))
      >>> kernel_fn(x, None, "ntk")   # x: (N, H, W, C) -> (N, N)
    """
    name = f"Conv({out_chan}, {tuple(filter_shape) if np.iterable(filter_shape) else filter_shape})"
    if not (isinstance(out_chan, (int, np.integer)) and out_chan >= 1):
        raise ValueError(f"{name}: `out_chan` must be a positive int; got {out_chan!r}.")
    filter_shape = _positive_ints(filter_shape, "filter_shape", name)
    n = len(filter_shape)
    strides = (1,) * n if strides is None else _positive_ints(strides, "strides", name, n)
    padding = _check_padding(padding, name)
    check_std(W_std, "W_std", name)
    check_std(b_std, "b_std", name, allow_none=True)
    parameterization = _check_parameterization(parameterization, name)
    _check_conv_dimension_numbers(dimension_numbers, n, name)
    out = out_chan * s[1] if parameterization == "standard" else out_chan
    circular = padding == "CIRCULAR"
    filter_size = math.prod(filter_shape)
    # Spatial axis letters must avoid N, C, I and O, which name the batch,
    # channel and filter in/out axes.
    spec = "N" + _SPATIAL_LETTERS[:n] + "C"
    dn = (spec, spec[1:-1] + "IO", spec)

    def plan_for(shape):
        _check_spatial_rank(shape, n, name, "filter")
        return _spatial_plan(tuple(shape[1:-1]), filter_shape, strides, padding,
                             name, "filter")

    def init_fn(key, input_shape):
        plan = plan_for(tuple(input_shape))
        kw, kb = jax.random.split(key)
        fan_in = input_shape[-1] * filter_size
        W = jax.random.normal(kw, filter_shape + (input_shape[-1], out))
        b = None if b_std is None else jax.random.normal(kb, (out,))
        if parameterization == "standard":
            W = W * (W_std / (fan_in / s[0]) ** 0.5)
            b = None if b is None else b * b_std
        out_shape = (input_shape[0],) + tuple(o for o, _ in plan) + (out,)
        return out_shape, (W, b)

    def apply_fn(params, x, **kwargs):
        W, b = params
        plan = plan_for(tuple(x.shape))
        if x.shape[-1] != W.shape[-2]:
            raise ValueError(f"{name}: expected inputs with {W.shape[-2]} channels "
                             f"(last axis); got shape {tuple(x.shape)}.")
        pad = "VALID" if padding == "VALID" else [p for _, p in plan]
        if circular:
            x = jnp.pad(x, [(0, 0)] + pad + [(0, 0)], mode="wrap")
            pad = "VALID"
        y = jax.lax.conv_general_dilated(x, W, strides, pad, dimension_numbers=dn)
        if parameterization == "ntk":
            y = y * (W_std / (x.shape[-1] * filter_size) ** 0.5)
            return y if b is None else y + b_std * b
        y = y / s[0] ** 0.5
        return y if b is None else y + b

    def transform(k: Kernel, **kwargs) -> Kernel:
        plan = plan_for(k.shape1)
        conv = lambda m, nb: _conv_cov(m, nb, k.diagonal_spatial, plan,
                                       filter_shape, strides, circular)
        k = k.replace(nngp=conv(k.nngp, 2), ntk=conv(k.ntk, 2),
                      cov1=conv(k.cov1, 1), cov2=conv(k.cov2, 1))
        k = affine_kernel(k, W_std, b_std, parameterization,
                          k.shape1[-1] * filter_size / s[0])
        return k.replace(**_shapes_with(k, [o for o, _ in plan], out))

    return make_layer(name, init_fn, apply_fn, transform,
                      spec={"kind": "Conv", "W_std": W_std, "b_std": b_std,
                            "parameterization": parameterization, "s": tuple(s),
                            "filter_shape": filter_shape, "strides": strides,
                            "padding": padding})


_SPATIAL_LETTERS = "HWDABEFGJKLMPQRSTUVXYZ"


def _check_conv_dimension_numbers(dimension_numbers, n: int, name: str):
    """Only channels-last layouts (``N…C``, ``…IO``, ``N…C``) are supported."""
    if dimension_numbers is None:
        return
    ok = (isinstance(dimension_numbers, (tuple, list)) and len(dimension_numbers) == 3
          and all(isinstance(x, str) for x in dimension_numbers))
    if ok:
        lhs, rhs, out = dimension_numbers
        ok = (len(lhs) == n + 2 and lhs[0] == "N" and lhs[-1] == "C" and out == lhs
              and rhs == lhs[1:-1] + "IO")
    if not ok:
        raise ValueError(f"{name}: only channels-last `dimension_numbers` are "
                         f"supported, e.g. ('NHWC', 'HWIO', 'NHWC') for a "
                         f"{n}-D filter; got {dimension_numbers!r}.")


# --------------------------------------------------------------- pooling


def _Pool(kind: str, window_shape, strides, padding, normalize_edges: bool,
          batch_axis: int, channel_axis: int) -> Layer:
    name = (f"{kind}Pool({tuple(window_shape) if np.iterable(window_shape) else window_shape})")
    window = _positive_ints(window_shape, "window_shape", name)
    n = len(window)
    strides = (1,) * n if strides is None else _positive_ints(strides, "strides", name, n)
    padding = _check_padding(padding, name)
    _check_channel_axis(channel_axis, batch_axis, name)
    circular = padding == "CIRCULAR"
    by_counts = kind == "Avg" and normalize_edges and padding == "SAME"

    def plan_for(shape):
        _check_spatial_rank(shape, n, name, "window")
        return _spatial_plan(tuple(shape[1:-1]), window, strides, padding, name,
                             "window")

    def counts(shape, plan):
        return [_edge_counts(size, w, st, pads, o) for size, w, st, (o, pads)
                in zip(shape[1:-1], window, strides, plan)]

    def init_fn(key, input_shape):
        plan = plan_for(tuple(input_shape))
        return ((input_shape[0],) + tuple(o for o, _ in plan) + (input_shape[-1],), ())

    def apply_fn(params, x, **kwargs):
        plan = plan_for(tuple(x.shape))
        pads = [(0, 0)] + [p for _, p in plan] + [(0, 0)]
        if circular:
            x, pads = jnp.pad(x, pads, mode="wrap"), "VALID"
        y = jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add,
                                  (1,) + window + (1,), (1,) + strides + (1,), pads)
        if kind == "Sum":
            return y
        if by_counts:
            for i, c in enumerate(counts(x.shape, plan)):
                y = y / jnp.asarray(c, y.dtype).reshape((-1,) + (1,) * (n - i))
            return y
        return y / math.prod(window)

    def transform(k: Kernel, **kwargs) -> Kernel:
        plan = plan_for(k.shape1)
        _require_full(k, name)
        cnt = counts(k.shape1, plan)

        def pool(m, nb):
            if m is None:
                return None
            for i, ((out, pads), w, st) in enumerate(zip(plan, window, strides)):
                for a in _pair_axes(nb, i, False):
                    m = _window_sum(m, (a,), w, st, pads, out, circular)
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

        k = k.replace(nngp=pool(k.nngp, 2), ntk=pool(k.ntk, 2),
                      cov1=pool(k.cov1, 1), cov2=pool(k.cov2, 1))
        return k.replace(**_shapes_with(k, [o for o, _ in plan], k.shape1[-1]))

    return make_layer(name, init_fn, apply_fn, transform, needs_full_spatial=True)


def AvgPool(window_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
            padding: str = "VALID", normalize_edges: bool = False,
            batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    """Average pooling over spatial windows (channels last).

    ``y(o) = (1/|w|) Σ_{d∈w} x(o·s + d)``; with ``normalize_edges`` and SAME
    padding the divisor is the number of in-image positions of the window
    (``jax.example_libraries.stax.AvgPool``), otherwise ``|w|`` (padded
    positions count as zeros). CIRCULAR pads periodically.

    Kernel (separable: each argument has its own window):
    ``K'(o, o') = Σ_{d, d'∈w} K(o·s + d, o'·s + d') / (|w_o| |w_o'|)``, and
    the same for Θ. Needs the full spatial layout (``needs_full_spatial``).

    Example:
      >>> serial(Conv(64, (3, 3)), Relu(), AvgPool((2, 2), (2, 2)), Flatten(), Dense(1))
    """
    return _Pool("Avg", window_shape, strides, padding, normalize_edges,
                 batch_axis, channel_axis)


def SumPool(window_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
            padding: str = "VALID", batch_axis: int = 0,
            channel_axis: int = -1) -> Layer:
    """Sum pooling: ``y(o) = Σ_{d∈w} x(o·s + d)``; kernel
    ``K'(o, o') = Σ_{d, d'∈w} K(o·s + d, o'·s + d')`` (full spatial layout).
    """
    return _Pool("Sum", window_shape, strides, padding, False, batch_axis,
                 channel_axis)


def _GlobalPool(kind: str, batch_axis: int, channel_axis: int) -> Layer:
    name = f"Global{kind}Pool"
    _check_channel_axis(channel_axis, batch_axis, name)
    reduce = jnp.mean if kind == "Avg" else jnp.sum

    def init_fn(key, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, x, **kwargs):
        return reduce(x, axis=tuple(range(1, x.ndim - 1)))

    def transform(k: Kernel, **kwargs) -> Kernel:
        if k.spatial_ndim == 0:
            return k
        _require_full(k, name)

        def pool(m, nb):
            return None if m is None else reduce(m, axis=tuple(range(nb, m.ndim)))

        return k.replace(nngp=pool(k.nngp, 2), ntk=pool(k.ntk, 2),
                         cov1=pool(k.cov1, 1), cov2=pool(k.cov2, 1),
                         shape1=(k.shape1[0], k.shape1[-1]),
                         shape2=(k.shape2[0], k.shape2[-1]),
                         diagonal_spatial=False)

    return make_layer(name, init_fn, apply_fn, transform, needs_full_spatial=True)


def GlobalAvgPool(batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    """Mean over all spatial positions: ``(N, *S, C) -> (N, C)``.

    Kernel: ``K'(x, x') = (1/|S|²) Σ_{s, s'} K(x_s, x'_{s'})`` (and Θ alike),
    the mean of the full spatial covariance (needs the full layout).
    """
    return _GlobalPool("Avg", batch_axis, channel_axis)


def GlobalSumPool(batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    """Sum over all spatial positions: ``K'(x, x') = Σ_{s, s'} K(x_s, x'_{s'})``."""
    return _GlobalPool("Sum", batch_axis, channel_axis)


# ---------------------------------------------------------- normalisation


def _outer(a, b, batch_pair: bool, diagonal_spatial: bool):
    """``a[i, s] · b[j, s']`` laid out like ``nngp`` (``batch_pair``) or ``cov``.

    ``a``, ``b``: per-input arrays ``(N, *S)`` (axes may be 1 after a mean).
    """
    def shaped(v, first):
        shape = list(v.shape[:1])
        if batch_pair:
            shape = shape + [1] if first else [1] + shape
        for size in v.shape[1:]:
            if diagonal_spatial:
                shape.append(size)
            else:
                shape += [size, 1] if first else [1, size]
        return v.reshape(shape)
    return shaped(a, True) * shaped(b, False)


def LayerNorm(axis=-1, eps: float = 1e-12, batch_axis: int = 0,
              channel_axis: int = -1) -> Layer:
    """Layer normalisation ``y = (x - mean_A x) / sqrt(eps + var_A x)``.

    ``A`` (``axis``) must contain the channel axis and may add spatial axes (and,
    as in NT, the batch axis). At infinite width the mean over channels is 0 and
    the variance is deterministic: ``v(x, s) = eps + mean_{A} K(x_s, x_s)``
    (the per-input variance averaged over the normalised non-channel axes), so
    ``K'(x_s, x'_t) = K(x_s, x'_t) / sqrt(v(x, s) v(x', t))`` and Θ alike
    (neural-tangents' convention). Needs a Gaussian input kernel.
    """
    name = f"LayerNorm(axis={axis})"
    _check_channel_axis(channel_axis, batch_axis, name)
    axes_in = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if not axes_in or not all(isinstance(a, (int, np.integer)) for a in axes_in):
        raise ValueError(f"{name}: `axis` must be an int or a non-empty tuple of "
                         f"ints; got {axis!r}.")
    try:
        eps_ok = float(eps) >= 0
    except (TypeError, jax.errors.ConcretizationTypeError):
        eps_ok = True
    if not eps_ok:
        raise ValueError(f"{name}: `eps` must be >= 0; got {eps!r}.")

    def canonical(ndim):
        if any(not -ndim <= a < ndim for a in axes_in):
            raise ValueError(f"{name}: `axis` {axis!r} out of range for inputs of "
                             f"rank {ndim}.")
        return sorted({int(a) % ndim for a in axes_in})

    def init_fn(key, input_shape):
        canonical(len(input_shape))
        return tuple(input_shape), ()

    def apply_fn(params, x, **kwargs):
        ax = tuple(canonical(x.ndim))
        mean = jnp.mean(x, axis=ax, keepdims=True)
        var = jnp.var(x, axis=ax, keepdims=True)
        return (x - mean) / jnp.sqrt(eps + var)

    def transform(k: Kernel, **kwargs) -> Kernel:
        ndim = len(k.shape1)
        ax = canonical(ndim)
        if ndim - 1 not in ax:
            raise ValueError(f"{name}: the normalised axes must include the "
                             f"channel axis ({ndim - 1} or -1) for the kernel to "
                             f"converge at infinite width; got axis={axis!r}.")
        if not k.is_gaussian:
            raise ValueError(f"{name}: the input kernel must be Gaussian (LayerNorm "
                             f"directly after an affine layer such as Dense/Conv); "
                             f"got a non-Gaussian one.")
        # Axis 0 (batch) and 1..d (spatial) of (N, *S, C) index the variance
        # arrays (N, *S) the same way.
        red = tuple(a for a in ax if a != ndim - 1)
        v1 = jnp.mean(k.var1() + eps, axis=red, keepdims=True)
        v2 = jnp.mean(k.var2() + eps, axis=red, keepdims=True)
        diag = k.diagonal_spatial
        norm12 = jnp.sqrt(_outer(v1, v2, True, diag))
        return k.replace(
            nngp=k.nngp / norm12,
            ntk=None if k.ntk is None else k.ntk / norm12,
            cov1=k.cov1 / jnp.sqrt(_outer(v1, v1, False, diag)),
            cov2=None if k.cov2 is None else k.cov2 / jnp.sqrt(_outer(v2, v2, False, diag)))

    return make_layer(name, init_fn, apply_fn, transform)


# ---------------------------------------------------------------- dropout


def _same_point_mask(m, n_batch: int, diagonal_spatial: bool, pair_batch: bool):
    """Boolean array, True where both arguments of ``m`` are the same input
    (when ``pair_batch``) at the same position; None if that is every entry."""
    pairs = [(0, 1)] if pair_batch else []
    if not diagonal_spatial:
        pairs += [(a, a + 1) for a in range(n_batch, m.ndim, 2)]
    if not pairs:
        return None
    iota = lambda a: jax.lax.broadcasted_iota(jnp.int32, m.shape, a)
    mask = iota(pairs[0][0]) == iota(pairs[0][1])
    for a, b in pairs[1:]:
        mask = mask & (iota(a) == iota(b))
    return mask


def Dropout(rate: float, mode: str = "train") -> Layer:
    """Dropout with KEEP probability ``rate`` (NT's and ``jax.example_libraries``'
    convention: ``rate=1`` keeps everything).

    ``apply_fn(params, x, rng=key)`` returns ``x · m / rate`` with
    ``m ~ Bernoulli(rate)`` i.i.d. per entry (train) or ``x`` (test).

    Kernel (train; Srivastava et al. 2014, as in NT): E[m m'] / rate² is
    ``1 / rate`` for the same entry and 1 otherwise, so the second moments of
    the same input at the same position are multiplied by ``1 / rate``: all of
    ``cov1``/``cov2`` in the diagonal layout (their spatial diagonal in the full
    one), and ``nngp``/``ntk`` on their batch diagonal only when ``x2`` is
    ``x1`` (``x2=None``: one mask for both arguments). The output is not
    Gaussian. Test mode: identity.
    """
    name = f"Dropout({rate})"
    if mode not in ("train", "test"):
        raise ValueError(f"{name}: `mode` must be 'train' or 'test'; got {mode!r}.")
    try:
        rate_ok = 0.0 < float(rate) <= 1.0
    except (TypeError, ValueError):
        rate_ok = False
    if not rate_ok:
        raise ValueError(f"{name}: `rate` (the keep probability) must be in "
                         f"(0, 1]; got {rate!r}.")

    def apply_fn(params, x, **kwargs):
        if mode == "test":
            return x
        rng = kwargs.get("rng")
        if rng is None:
            raise ValueError(f"{name}: apply_fn needs a PRNG key in train mode, "
                             f"apply_fn(params, x, rng=key); got rng=None.")
        keep = jax.random.bernoulli(rng, rate, x.shape)
        return jnp.where(keep, x / rate, jnp.zeros((), x.dtype))

    def transform(k: Kernel, **kwargs) -> Kernel:
        if mode == "test":
            return k
        extra = 1.0 / rate - 1.0
        diag = k.diagonal_spatial

        def boost(m, n_batch, pair_batch):
            if m is None:
                return None
            mask = _same_point_mask(m, n_batch, diag, pair_batch)
            if mask is None:
                return m * (1.0 + extra)
            return m * (1.0 + extra * mask.astype(m.dtype))

        nngp, ntk = k.nngp, k.ntk
        if k.x1_is_x2:
            nngp, ntk = boost(nngp, 2, True), boost(ntk, 2, True)
        return k.replace(nngp=nngp, ntk=ntk, cov1=boost(k.cov1, 1, False),
                         cov2=boost(k.cov2, 1, False), is_gaussian=False)

    return make_layer(name, lambda key, shape: (tuple(shape), ()), apply_fn,
                      transform)
