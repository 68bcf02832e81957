"""Convolutions: shared (`Conv`), transposed and unshared (channels last).

The kernel of a convolution averages the input covariance over the filter
taps shifted together (Novak et al. 2019, eq. 8); the geometry is in
`ntk.stax.spatial`, the affine rule in ``affine_kernel`` of `ntk.stax.linear`.
`ConvTranspose` does the same on the stride-dilated covariance; `ConvLocal`
(unshared weights) keeps only same-position covariances.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk.kernel import Kernel
from ntk.stax import spec as specs
from ntk.stax.layer import Layer, make_layer
from ntk.stax.linear import affine_kernel, affine_init, affine_output, check_affine_args
from ntk.stax.spatial import (
    check_padding,
    check_spatial_rank,
    conv_cov,
    positive_ints,
    shapes_with,
    spatial_plan,
)
from ntk.stax.spatial import (
    embed_diagonal,
    fold_axis,
    spatial_diagonal,
    transpose_axis_plan,
    transpose_conv_cov,
)
from ntk.stax.spatial import transpose_window_mask_fn, window_mask_fn


def Conv(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Optional[Sequence[int]] = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: Optional[float] = None,
    dimension_numbers: Optional[tuple] = None,
    parameterization: str = "ntk",
    s: tuple = (1, 1),
) -> Layer:
    r"""Convolution with weights shared over positions (channels last).

    Inputs are ``(N, L, C)`` for a 1-D ``filter_shape`` and NHWC ``(N, H, W, C)``
    for a 2-D one (any ``d``-D works the same way).

    Args:
      out_chan: output channels of the finite network (ignored by the
        NTK-parameterized kernel).
      filter_shape: spatial filter shape :math:`F`, e.g. ``(3, 3)``.
      strides: one positive int per spatial axis (default all 1).
      padding: ``"VALID"``, ``"SAME"`` (zeros) or ``"CIRCULAR"`` (periodic).
      W_std, b_std: weight and bias standard deviations (b_std None: no bias).
      dimension_numbers: None or the channels-last layout, e.g.
        ``("NHWC", "HWIO", "NHWC")`` (other layouts are not supported).
      parameterization: ``"ntk"``
        (:math:`y = \mathrm{W\_std}/\sqrt{C|F|} \cdot x \star W + \mathrm{b\_std}\, b`)
        or ``"standard"`` (:math:`W \sim \mathcal{N}(0, \mathrm{W\_std}^2 s[0] / (C|F|))`).
      s: NT's width multipliers (standard parameterization).

    Kernel (Novak et al. 2019, eq. 8; NTK as in ``affine_kernel`` with fan-in
    :math:`C \cdot |F|`): with
    :math:`A(K)(o, o') = (1/|F|) \sum_{d \in F} K(o \cdot s + d, o' \cdot s + d)`,
    :math:`K' = \mathrm{W\_std}^2 A(K) + \mathrm{b\_std}^2` and
    :math:`\Theta' = \mathrm{W\_std}^2 A(\Theta) + K'` ("ntk").
    Positions added by SAME padding have zero covariance; CIRCULAR wraps.

    Example:
      >>> import jax
      >>> from ntk.stax import Conv, Dense, Flatten, Relu, serial
      >>> _, _, kernel_fn = serial(Conv(64, (3, 3), padding="SAME"), Relu(),
      ...                          Flatten(), Dense(1))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))   # NHWC
      >>> kernel_fn(x, None, "ntk").shape
      (2, 2)
    """
    name, filter_shape, strides, padding, dn = _conv_args(
        "Conv", out_chan, filter_shape, strides, padding, dimension_numbers, s
    )
    parameterization = check_affine_args(W_std, b_std, parameterization, name)
    draw = affine_init(W_std, b_std, parameterization, s)
    out = out_chan * s[1] if parameterization == "standard" else out_chan
    circular = padding == "CIRCULAR"
    filter_size = math.prod(filter_shape)

    plan_for = lambda shape: _window_plan(shape, filter_shape, strides, padding, name)

    def init_fn(key, input_shape):
        plan = plan_for(tuple(input_shape))
        c = input_shape[-1]
        W, b = draw(key, filter_shape + (c, out), (out,), c * filter_size)
        out_shape = (input_shape[0],) + tuple(o for o, _ in plan) + (out,)
        return out_shape, (W, b)

    def apply_fn(params, x, **kwargs):
        W, b = params
        plan = plan_for(tuple(x.shape))
        _check_channels(x, W, name)
        pad = "VALID" if padding == "VALID" else [p for _, p in plan]
        if circular:
            assert isinstance(pad, list)  # padding "CIRCULAR": the plan's pads
            x = jnp.pad(x, [(0, 0)] + pad + [(0, 0)], mode="wrap")
            pad = "VALID"
        y = jax.lax.conv_general_dilated(x, W, strides, pad, dimension_numbers=dn)
        return affine_output(y, b, x.shape[-1] * filter_size, W_std, b_std, parameterization, s)

    def transform(k: Kernel, **kwargs) -> Kernel:
        plan = plan_for(k.shape1)
        conv = lambda m, nb: conv_cov(
            m, nb, k.diagonal_spatial, plan, filter_shape, strides, circular
        )
        k = _map_covariances(k, conv)
        k = affine_kernel(k, W_std, b_std, parameterization, k.shape1[-1] * filter_size / s[0])
        return k.replace(**shapes_with(k, [o for o, _ in plan], out))

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        spec=specs.Conv(W_std, b_std, parameterization, tuple(s), filter_shape, strides, padding),
        mask_fn=window_mask_fn(filter_shape, strides, padding, name),
        remask=True,
    )


_SPATIAL_LETTERS = "HWDABEFGJKLMPQRSTUVXYZ"


def _map_covariances(k: Kernel, conv) -> Kernel:
    """``k`` with ``conv(m, batch_ndim)`` applied to ``nngp``, ``ntk``, ``cov1``
    and ``cov2``."""
    # Linear in the covariances, so a zero NTK stays zero (and, unused by
    # affine_kernel then, its convolution is never evaluated under jit).
    nngp, ntk = k.map_nngp_ntk(lambda m: conv(m, 2))
    return k.replace(
        nngp=nngp,
        ntk=ntk,
        cov1=conv(k.cov1, 1),
        cov2=conv(k.cov2, 1),
        ntk_is_zero=k.ntk_is_zero,
    )


def _check_channels(x, W, name: str):
    """Inputs must have the ``C`` channels that ``W: (*F, C, out)`` was made for."""
    if x.shape[-1] != W.shape[-2]:
        raise ValueError(
            f"{name}: expected inputs with {W.shape[-2]} channels "
            f"(last axis); got shape {tuple(x.shape)}."
        )


def _check_conv_dimension_numbers(dimension_numbers, n: int, name: str):
    """Only channels-last layouts (``N…C``, ``…IO``, ``N…C``) are supported."""
    if dimension_numbers is None:
        return
    ok = (
        isinstance(dimension_numbers, (tuple, list))
        and len(dimension_numbers) == 3
        and all(isinstance(x, str) for x in dimension_numbers)
    )
    if ok:
        lhs, rhs, out = dimension_numbers
        ok = (
            len(lhs) == n + 2
            and lhs[0] == "N"
            and lhs[-1] == "C"
            and out == lhs
            and rhs == lhs[1:-1] + "IO"
        )
    if not ok:
        raise ValueError(
            f"{name}: only channels-last `dimension_numbers` are "
            f"supported, e.g. ('NHWC', 'HWIO', 'NHWC') for a "
            f"{n}-D filter; got {dimension_numbers!r}."
        )


def _conv_args(
    kind: str, out_chan, filter_shape, strides, padding, dimension_numbers, s
) -> tuple[str, tuple[int, ...], tuple[int, ...], str, tuple]:
    """Checked ``(name, filter_shape, strides, padding, dimension_numbers)`` of
    a `Conv`, `ConvTranspose` or `ConvLocal` (`check_affine_args` checks the rest)."""
    shown = tuple(filter_shape) if np.iterable(filter_shape) else filter_shape
    name = f"{kind}({out_chan}, {shown})"
    if not (
        isinstance(out_chan, (int, np.integer)) and not isinstance(out_chan, bool) and out_chan >= 1
    ):
        raise ValueError(f"{name}: `out_chan` must be a positive int; got {out_chan!r}.")
    # An empty filter is NT's 0-D convolution of vectors (N, C): Dense.
    filter_shape = positive_ints(filter_shape, "filter_shape", name, allow_empty=True)
    n = len(filter_shape)
    strides = (1,) * n if strides is None else positive_ints(strides, "strides", name, n)
    padding = check_padding(padding, name)
    if not (
        isinstance(s, (tuple, list))
        and len(s) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in s)
    ):
        raise ValueError(
            f"{name}: `s` must be a pair of positive ints (NT's width multipliers); got {s!r}."
        )
    _check_conv_dimension_numbers(dimension_numbers, n, name)
    # Spatial axis letters must avoid N, C, I and O, which name the batch,
    # channel and filter in/out axes.
    spec = "N" + _SPATIAL_LETTERS[:n] + "C"
    return name, filter_shape, strides, padding, (spec, spec[1:-1] + "IO", spec)


def _window_plan(shape, filter_shape, strides, padding, name: str):
    """`spatial_plan` of a `Conv` or `ConvLocal` for inputs of ``shape``."""
    check_spatial_rank(shape, len(filter_shape), name, "filter")
    return spatial_plan(tuple(shape[1:-1]), filter_shape, strides, padding, name, "filter")


def ConvTranspose(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Optional[Sequence[int]] = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: Optional[float] = None,
    dimension_numbers: Optional[tuple] = None,
    parameterization: str = "ntk",
    s: tuple = (1, 1),
) -> Layer:
    r"""Transposed convolution, ``jax.lax.conv_transpose`` (channels last).

    Finite network (neural-tangents' ``ConvTranspose``): weights
    ``W: (*filter_shape, C, out_chan)`` (``out_chan·s[1]`` in the standard
    parameterization) and bias ``b: (1, …, 1, out)``;
    :math:`y = \sigma \cdot \mathrm{conv\_transpose}(x, W, \mathrm{strides},
    \mathrm{padding}) + \beta b` with :math:`\sigma = \mathrm{W\_std}/\sqrt{C|F|}`,
    :math:`\beta = \mathrm{b\_std}` ("ntk") or :math:`\sigma = 1/\sqrt{s[0]}`,
    :math:`W \sim \mathcal{N}(0, \mathrm{W\_std}^2 s[0]/(C|F|))`,
    :math:`b \sim \mathcal{N}(0, \mathrm{b\_std}^2)` ("standard"). The
    input ``(N, *S, C)`` is dilated by the strides, padded and correlated with
    :math:`W`: output sizes :math:`S \cdot \mathrm{stride}` (SAME) or
    :math:`S \cdot \mathrm{stride} + \max(F - \mathrm{stride}, 0)` (VALID). CIRCULAR
    (neural-tangents' convention) folds the VALID output periodically onto the SAME
    grid, centred.

    Kernel: with :math:`\tilde{K}` the input covariance dilated and padded the same
    way on both arguments,
    :math:`A(K)(o, o') = (1/|F|) \sum_{d \in F} \tilde{K}(o + d, o' + d)`,
    :math:`K' = \mathrm{W\_std}^2 A(K) + \mathrm{b\_std}^2` and
    :math:`\Theta' = \mathrm{W\_std}^2 A(\Theta) + K'` ("ntk"; the standard
    parameterization as `Conv`, fan-in :math:`C|F|/s[0]`). As in neural-tangents
    the fan-in is :math:`C|F|` although, with strides, an output position sees only
    some of the taps. Both spatial layouts.

    Args: as `Conv` (``dimension_numbers``: channels-last only).

    Example:
      >>> import jax
      >>> from ntk.stax import ConvTranspose, Dense, GlobalAvgPool, Relu, serial
      >>> _, _, kernel_fn = serial(ConvTranspose(64, (3, 3), (2, 2), "SAME"),
      ...                          Relu(), GlobalAvgPool(), Dense(1))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 2))   # NHWC
      >>> kernel_fn(x, None, "ntk").shape
      (2, 2)
    """
    name, filter_shape, strides, padding, dn = _conv_args(
        "ConvTranspose", out_chan, filter_shape, strides, padding, dimension_numbers, s
    )
    parameterization = check_affine_args(W_std, b_std, parameterization, name)
    draw = affine_init(W_std, b_std, parameterization, s)
    n = len(filter_shape)
    out = out_chan * s[1] if parameterization == "standard" else out_chan
    filter_size = math.prod(filter_shape)
    lax_padding = "SAME" if padding == "SAME" else "VALID"

    def plan_for(shape):
        check_spatial_rank(shape, n, name, "filter")
        return [
            transpose_axis_plan(size, f, st, padding)
            for size, f, st in zip(shape[1:-1], filter_shape, strides)
        ]

    def init_fn(key, input_shape):
        plan = plan_for(tuple(input_shape))
        c = input_shape[-1]
        W, b = draw(key, filter_shape + (c, out), (1,) * (n + 1) + (out,), c * filter_size)
        return (input_shape[0],) + tuple(g.out for g in plan) + (out,), (W, b)

    def apply_fn(params, x, **kwargs):
        W, b = params
        plan = plan_for(tuple(x.shape))
        _check_channels(x, W, name)
        y = jax.lax.conv_transpose(x, W, strides, lax_padding, dimension_numbers=dn)
        for i, g in enumerate(plan):
            if g.circular:
                y = fold_axis(y, 1 + i, g.out, g.offset)
        return affine_output(y, b, x.shape[-1] * filter_size, W_std, b_std, parameterization, s)

    def transform(k: Kernel, **kwargs) -> Kernel:
        plan = plan_for(k.shape1)
        conv = lambda m, nb: transpose_conv_cov(
            m, nb, k.diagonal_spatial, plan, filter_shape, strides
        )
        k = _map_covariances(k, conv)
        k = affine_kernel(k, W_std, b_std, parameterization, k.shape1[-1] * filter_size / s[0])
        return k.replace(**shapes_with(k, [g.out for g in plan], out))

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        spec=specs.ConvTranspose(
            W_std, b_std, parameterization, tuple(s), filter_shape, strides, padding
        ),
        mask_fn=transpose_window_mask_fn(filter_shape, strides, padding),
        remask=True,
    )


def ConvLocal(
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Optional[Sequence[int]] = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: Optional[float] = None,
    dimension_numbers: Optional[tuple] = None,
    parameterization: str = "ntk",
    s: tuple = (1, 1),
) -> Layer:
    r"""Unshared ("locally connected") convolution: a separate filter at every
    output position, ``jax.lax.conv_general_dilated_local`` (channels last).

    Finite network (neural-tangents' ``ConvLocal``): ``W: (*S_out, C·|F|,
    out_chan)`` (the patch axis channel-major, as jax takes it) and bias
    ``b: (1, *S_out, out_chan)``, both per position; scales as `Conv`
    (:math:`\sigma = \mathrm{W\_std}/\sqrt{C|F|}`, :math:`\beta = \mathrm{b\_std}` under
    "ntk"; :math:`W \sim \mathcal{N}(0, \mathrm{W\_std}^2 s[0]/(C|F|))` under
    "standard"). As in neural-tangents the width is
    ``out_chan`` in both parameterizations (``s[1]`` does not widen it).
    Windows, strides and padding (VALID/SAME/CIRCULAR) as `Conv`.

    Kernel (Novak et al. 2019, §5.1: an LCN's GP is a CNN's without weight
    sharing): different positions have independent weights, so

    .. math::

        K'(o, o') = \delta_{oo'} \big(\mathrm{W\_std}^2 (1/|F|) \sum_{d \in F}
        K(o \cdot s + d, o \cdot s + d) + \mathrm{b\_std}^2\big)

    and :math:`\Theta'` alike — `Conv`'s kernel on the same-position covariances, zero
    between positions. It reads only same-position input covariances, so it
    never asks for the full spatial layout; given it, it returns it.

    Args: as `Conv`.

    Example:
      >>> import jax
      >>> from ntk.stax import ConvLocal, Dense, Flatten, Relu, serial
      >>> _, _, kernel_fn = serial(ConvLocal(64, (3,), (2,)), Relu(), Flatten(), Dense(1))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 3))   # (N, L, C)
      >>> kernel_fn(x, None, "ntk").shape
      (2, 2)
    """
    name, filter_shape, strides, padding, dn = _conv_args(
        "ConvLocal", out_chan, filter_shape, strides, padding, dimension_numbers, s
    )
    parameterization = check_affine_args(W_std, b_std, parameterization, name)
    draw = affine_init(W_std, b_std, parameterization, s)
    n = len(filter_shape)
    circular = padding == "CIRCULAR"
    filter_size = math.prod(filter_shape)

    plan_for = lambda shape: _window_plan(shape, filter_shape, strides, padding, name)

    def init_fn(key, input_shape):
        plan = plan_for(tuple(input_shape))
        spatial = tuple(o for o, _ in plan)
        fan_in = input_shape[-1] * filter_size
        W, b = draw(key, spatial + (fan_in, out_chan), (1,) + spatial + (out_chan,), fan_in)
        return (input_shape[0],) + spatial + (out_chan,), (W, b)

    def apply_fn(params, x, **kwargs):
        W, b = params
        plan = plan_for(tuple(x.shape))
        fan_in = x.shape[-1] * filter_size
        if W.shape[-2] != fan_in or W.shape[:-2] != tuple(o for o, _ in plan):
            raise ValueError(
                f"{name}: weights of shape {tuple(W.shape)} do not "
                f"fit inputs of shape {tuple(x.shape)} (expected "
                f"{tuple(o for o, _ in plan) + (fan_in,)} + (out,))."
            )
        pads = [p for _, p in plan]
        if circular:
            x = jnp.pad(x, [(0, 0)] + pads + [(0, 0)], mode="wrap")
            pads = [(0, 0)] * n
        y = jax.lax.conv_general_dilated_local(
            x, W, strides, pads, filter_shape, dimension_numbers=dn
        )
        return affine_output(y, b, fan_in, W_std, b_std, parameterization, s)

    def transform(k: Kernel, **kwargs) -> Kernel:
        plan = plan_for(k.shape1)
        full = not k.diagonal_spatial

        def conv(m, nb):
            if m is None:
                return None
            if full:
                m = spatial_diagonal(m, nb)
            return conv_cov(m, nb, True, plan, filter_shape, strides, circular)

        k = _map_covariances(k, conv)
        # The bias is per position too, so it joins before the embedding.
        k = affine_kernel(k, W_std, b_std, parameterization, k.shape1[-1] * filter_size / s[0])
        if full:
            nngp, ntk = k.map_nngp_ntk(lambda m: embed_diagonal(m, 2))
            k = k.replace(
                nngp=nngp,
                ntk=ntk,
                cov1=embed_diagonal(k.cov1, 1),
                cov2=embed_diagonal(k.cov2, 1),
            )
        return k.replace(**shapes_with(k, [o for o, _ in plan], out_chan))

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        spec=specs.ConvLocal(
            W_std, b_std, parameterization, tuple(s), filter_shape, strides, padding
        ),
        mask_fn=window_mask_fn(filter_shape, strides, padding, name),
        remask=True,
    )
