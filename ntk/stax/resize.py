r"""Image resizing (`jax.image.resize`) as a layer, with its infinite-width kernel.

Every resize method of `jax.image.resize` is linear in the image and acts on
each spatial axis separately: along an axis of size :math:`S` resized to :math:`S'`,
:math:`y(o) = \sum_i A(o, i)\, x(i)` with an :math:`(S', S)` matrix :math:`A` fixed
by the method, the sizes and (when shrinking) the antialiasing filter. The channels
are resized alike, so the covariance of the outputs is the input covariance
with :math:`A` applied to both of its arguments, on every spatial axis:

.. math::

    K'(o, o') = \sum_{i, i'} A(o, i)\, A(o', i')\, K(i, i'),

i.e. ``jax.image.resize`` applied to the full-layout covariance with each
spatial pair ``(S, S)`` resized to ``(S', S')`` (neural-tangents'
``ImageResize``; the NTK alike, since the layer has no parameters).
"""

from __future__ import annotations

from typing import Sequence, Union

import jax
import numpy as np

from ntk.kernel import Kernel
from ntk.stax import spec as specs
from ntk.stax.layer import Layer, make_layer
from ntk.stax.masking import resize_mask
from ntk.stax.linear import check_channel_axis
from ntk.stax.spatial import require_full

ResizeMethod = jax.image.ResizeMethod
_METHOD_NAMES = (
    "nearest",
    "linear",
    "bilinear",
    "trilinear",
    "triangle",
    "cubic",
    "bicubic",
    "tricubic",
    "lanczos3",
    "lanczos5",
)


def _check_method(method, name: str) -> ResizeMethod:
    if isinstance(method, ResizeMethod):
        return method
    if isinstance(method, str):
        try:
            return ResizeMethod.from_string(method)
        except ValueError:
            pass
    raise ValueError(
        f"{name}: `method` must be a jax.image.ResizeMethod or one of "
        f"{_METHOD_NAMES}; got {method!r}."
    )


def ImageResize(
    shape: Sequence[int],
    method: Union[str, ResizeMethod],
    antialias: bool = True,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
    batch_axis: int = 0,
    channel_axis: int = -1,
) -> Layer:
    r"""Resize images with `jax.image.resize` (neural-tangents' ``ImageResize``).

    Args:
      shape: the output shape, one entry per input axis (batch and channels
        included); ``-1`` keeps that axis's size. The kernel needs ``-1`` for
        the channel axis (resizing infinitely many channels is undefined) and
        for the batch axis (or the batch size itself); a spatial entry other
        than ``-1`` makes the network compute the full spatial layout, even if
        it equals the input size.
      method: a ``jax.image.ResizeMethod`` or its name: "nearest";
        "linear" / "bilinear" / "trilinear" / "triangle"; "cubic" /
        "bicubic" / "tricubic"; "lanczos3"; "lanczos5".
      antialias: antialiasing filter when shrinking (not for "nearest").
      precision: `jax.lax.Precision` of the resizing contractions.
      batch_axis, channel_axis: 0 and -1 (channels last) only.

    ``apply_fn(params, x) = jax.image.resize(x, shape', method, antialias,
    precision)`` with ``shape'`` the ``-1`` entries filled in from ``x``.

    Kernel (module docstring): :math:`K'(o, o') = \sum A(o, i)\, A(o', i')\, K(i, i')`
    and :math:`\Theta'` alike, per spatial axis. Differences from neural-tangents
    0.6.5, each checked against Monte Carlo in ``tests/test_stax_conv.py``:
    its kernel_fn supports "linear" and "nearest" only, but the rule holds for
    every method since each is linear, so the cubic and Lanczos kernels are
    computed too; it fails on a ``ResizeMethod`` enum (only names work); and
    after an odd number of shared convolutions its full-layout covariance is
    stored axis-reversed, which its resize ignores, so it resizes H to W's
    target and vice versa (ours follows ``apply_fn``).

    Example:
      >>> import jax
      >>> from ntk.stax import Conv, Dense, GlobalAvgPool, ImageResize, Relu, serial
      >>> _, _, kernel_fn = serial(Conv(64, (3, 3)), Relu(),
      ...                          ImageResize((-1, 8, 8, -1), "linear"),
      ...                          GlobalAvgPool(), Dense(1))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 3))   # NHWC
      >>> kernel_fn(x, None, "nngp").shape
      (2, 2)
    """
    try:
        entries = tuple(shape)
    except TypeError:
        entries = None
    shown = entries if entries is not None else shape
    name = f"ImageResize({shown}, {method!r})"
    if (
        entries is None
        or len(entries) < 2
        or not all(
            isinstance(e, (int, np.integer)) and not isinstance(e, bool) and (e == -1 or e >= 1)
            for e in entries
        )
    ):
        raise ValueError(
            f"{name}: `shape` must be a tuple of ints, one per input "
            f"axis (batch and channels included), each -1 (keep the "
            f"size) or positive; got {shape!r}."
        )
    entries = tuple(int(e) for e in entries)
    method = _check_method(method, name)
    rank = len(entries)
    if not all(isinstance(a, (int, np.integer)) for a in (batch_axis, channel_axis)):
        raise ValueError(
            f"{name}: `batch_axis` and `channel_axis` must be ints; got "
            f"{batch_axis!r}, {channel_axis!r}."
        )
    check_channel_axis(
        -1 if channel_axis % rank == rank - 1 else channel_axis, batch_axis % rank, name
    )
    needs_full = any(e != -1 for e in entries[1:-1])

    def out_shape(in_shape) -> tuple:
        in_shape = tuple(in_shape)
        if len(in_shape) != rank:
            raise ValueError(
                f"{name}: `shape` has {rank} entries but the inputs "
                f"have rank {len(in_shape)} (shape {in_shape}); give "
                f"one entry per axis, -1 to keep it."
            )
        return tuple(n if e == -1 else e for n, e in zip(in_shape, entries))

    def init_fn(key, input_shape):
        return out_shape(input_shape), ()

    def apply_fn(params, x, **kwargs):
        return jax.image.resize(
            x, out_shape(x.shape), method, antialias=antialias, precision=precision
        )

    def transform(k: Kernel, **kwargs) -> Kernel:
        new1, new2 = out_shape(k.shape1), out_shape(k.shape2)
        if entries[-1] != -1:
            raise ValueError(
                f"{name}: resizing the channel axis is not defined in "
                f"the infinite-width limit; set shape[-1] = -1 (got "
                f"{entries[-1]})."
            )
        if new1[0] != k.shape1[0] or new2[0] != k.shape2[0]:
            raise ValueError(
                f"{name}: kernel_fn cannot resize the batch axis (it "
                f"would need covariances between inputs of x1 that a "
                f"Kernel does not hold); set shape[0] = -1 (got "
                f"{entries[0]} for batches of {k.shape1[0]} and "
                f"{k.shape2[0]}). apply_fn does resize it."
            )
        spatial, new = tuple(k.shape1[1:-1]), tuple(new1[1:-1])
        if spatial == new:
            return k.replace(shape1=new1, shape2=new2)
        require_full(k, name)

        def resize(m, nb):
            if m is None:
                return None
            target = m.shape[:nb] + tuple(s for s in new for _ in (0, 1))
            return jax.image.resize(m, target, method, antialias=antialias, precision=precision)

        return k.replace(
            nngp=resize(k.nngp, 2),
            ntk=resize(k.ntk, 2),
            cov1=resize(k.cov1, 1),
            cov2=resize(k.cov2, 1),
            shape1=new1,
            shape2=new2,
        )

    def mask_fn(mask, input_shape):
        return resize_mask(mask, input_shape, out_shape, method, antialias, precision)

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        needs_full_spatial=needs_full,
        spec=specs.Parameterless(),
        mask_fn=mask_fn,
        remask=True,
    )
