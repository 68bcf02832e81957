"""Masked inputs: variable-length sequences, padded images and graphs.

Batches of inputs of different sizes are padded to one shape; the padding is
*masked* so that it has no effect on what the network computes for the real
entries. As in neural-tangents (``examples/imdb.py``), entries equal to a
``mask_constant`` are masked::

    x = jnp.where(padding, 1e9, x)                     # mark the padding
    out = apply_fn(params, x, mask_constant=1e9)       # -> MaskedArray
    k = kernel_fn(x, None, "ntk", mask_constant=1e9)   # padding ignored

Semantics (neural-tangents'): every layer sees its input with masked entries
replaced by zeros, and passes on an output mask computed by its ``mask_fn``
(the mask is unchanged when a layer has none). In the kernel a mask is a
``Kernel.mask1``/``mask2`` that flows through the layers in the same way, and
layers whose outputs at masked positions would not be zero (affine layers,
convolutions, aggregation) zero every covariance involving a masked position
after their transform (``remask``). Layers that average over positions
(`GlobalAvgPool`, `LayerNorm`) average over the unmasked ones only.

A position (an ``(n, *s)`` entry) counts as masked in a kernel when all its
channels are: covariances average over channels, so a mask that differs
between channels cannot be represented there. Layers that mix positions or
channels therefore first collapse the channel axis of their mask (``Dense``
in neural-tangents; here also pooling and aggregation, where neural-tangents
raises instead).

With no mask anywhere (``mask_constant=None`` and plain array inputs) nothing
here runs: masks are ``None``, the wrappers call the layer directly, and the
compiled program is the unmasked one.

`MaskedArray` is what ``apply_fn`` returns for masked inputs (and accepts);
`unmask_fn` turns it into an array with zeros at masked entries, e.g. for
Monte Carlo or empirical kernels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk.kernel import Kernel, constant_mask

tree_map = jax.tree_util.tree_map


@dataclasses.dataclass(frozen=True)
class MaskedArray:
    """An array (or list of arrays) with a boolean mask (neural-tangents' type).

    Attributes:
      masked_value: the values; entries under the mask are meaningless (the
        next layer replaces them by zeros).
      mask: boolean, broadcastable to ``masked_value`` and of the same rank,
        True at masked entries.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk import stax
      >>> init_fn, apply_fn, _ = stax.Dense(4)
      >>> x = jnp.array([[1., 2.], [0., 0.]])          # the second row is padding
      >>> _, params = init_fn(jax.random.PRNGKey(0), x.shape)
      >>> out = apply_fn(params, x, mask_constant=0.)   # a MaskedArray
      >>> out.mask.tolist()                               # broadcasts over features
      [[False], [True]]
      >>> y = jnp.where(out.mask, 0., out.masked_value)
    """

    masked_value: Any
    mask: Any

    def replace(self, **changes) -> "MaskedArray":
        """A copy with the given fields replaced (`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def astuple(self) -> tuple:
        """``(masked_value, mask)``."""
        return self.masked_value, self.mask


jax.tree_util.register_dataclass(MaskedArray, data_fields=["masked_value", "mask"], meta_fields=[])


def unmask_fn(fn: Callable) -> Callable:
    """``fn`` with every `MaskedArray` in its output replaced by its values,
    zeroed at masked entries (neural-tangents' ``unmask_fn``).

    Typically ``unmask_fn(apply_fn)`` of a network called with
    ``mask_constant`` (`MaskedArray`'s example); any function will do:

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> f = stax.unmask_fn(lambda x: stax.MaskedArray(x, x < 0))
      >>> f(jnp.array([1., -2., 3.])).tolist()        # a plain array, zero if masked
      [1.0, 0.0, 3.0]
    """

    def unmasked(*args, **kwargs):
        return tree_map(_unmask, fn(*args, **kwargs), is_leaf=lambda v: isinstance(v, MaskedArray))

    unmasked.__name__ = f"unmask_fn({getattr(fn, '__name__', 'fn')})"
    unmasked.__doc__ = fn.__doc__
    return unmasked


def _unmask(v):
    if isinstance(v, MaskedArray):
        return zero_masked(v.masked_value, v.mask)
    return v


def zero_masked(x, mask):
    """``x`` with zeros where ``mask`` (None: ``x`` unchanged)."""
    if mask is None:
        return x
    return jnp.where(mask, jnp.zeros((), x.dtype), x)


# ------------------------------------------------------ the layer wrappers


def _is_branches(x) -> bool:
    return isinstance(x, (list, tuple)) and not isinstance(x, MaskedArray)


def has_masked(x) -> bool:
    """Whether ``x`` (an array, `MaskedArray` or list of them) is masked."""
    if isinstance(x, MaskedArray):
        return x.mask is not None
    if _is_branches(x):
        return any(has_masked(v) for v in x)
    return False


def split_masked(x, mask_constant):
    """``(values, masks)`` of an input: values zeroed at masked entries.

    ``x`` is an array, a `MaskedArray`, or a list of them (branches). A
    `MaskedArray` keeps its mask (``mask_constant`` is not applied to it);
    an array is masked where it equals ``mask_constant`` (None: not masked).
    """
    if _is_branches(x):
        parts = [split_masked(v, mask_constant) for v in x]
        return type(x)(p[0] for p in parts), [p[1] for p in parts]
    if isinstance(x, MaskedArray):
        value, mask = x.masked_value, x.mask
        if mask is None:
            return value, None
        check_mask_shape(mask, value, "MaskedArray")
        mask = jnp.broadcast_to(jnp.asarray(mask, bool), jnp.shape(value))
        return zero_masked(value, mask), mask
    if mask_constant is None:
        return x, None
    mask = constant_mask(x, mask_constant)
    return zero_masked(x, mask), mask


def _shapes(values):
    if _is_branches(values):
        return [tuple(v.shape) for v in values]
    return tuple(values.shape)


def _all_none(masks) -> bool:
    if isinstance(masks, list):
        return all(_all_none(m) for m in masks)
    return masks is None


def output_masks(mask_fn: Optional[Callable], masks, shapes, remask: bool):
    """The layer's output masks: ``mask_fn(masks, input_shapes)`` (identity
    when None), with the channel axis collapsed when the layer remasks."""
    out = masks if mask_fn is None else mask_fn(masks, shapes)
    if remask:
        out = _map_masks(position_mask, out)
    return out


def _map_masks(fn, masks):
    if isinstance(masks, list):
        return [_map_masks(fn, m) for m in masks]
    return None if masks is None else fn(masks)


def _attach(out, masks):
    """Pair outputs with masks: a `MaskedArray` (or a list of them)."""
    if _is_branches(out):
        if not isinstance(masks, list):
            masks = [masks] * len(out)
        return type(out)(_attach(o, m) for o, m in zip(out, masks))
    return out if masks is None else MaskedArray(out, masks)


def masked_apply(apply_fn: Callable, mask_fn: Optional[Callable], remask: bool) -> Callable:
    """``apply_fn(params, x, **kw)`` that also takes masked inputs.

    The returned function accepts ``mask_constant=`` and `MaskedArray`
    inputs. With neither it calls ``apply_fn`` unchanged. Otherwise it zeroes
    the masked entries, calls ``apply_fn(params, values, mask=masks, **kw)``
    and returns a `MaskedArray` with the output mask.
    """

    def apply(params, x, *, mask_constant=None, **kwargs):
        if mask_constant is None and not has_masked(x):
            return apply_fn(params, x, **kwargs)
        values, masks = split_masked(x, mask_constant)
        if _all_none(masks):
            return apply_fn(params, values, **kwargs)
        out = apply_fn(params, values, mask=masks, **kwargs)
        return _attach(out, output_masks(mask_fn, masks, _shapes(values), remask))

    apply.__name__ = getattr(apply_fn, "__name__", "apply_fn")
    apply.__doc__ = apply_fn.__doc__
    apply.__wrapped__ = apply_fn  # type: ignore[attr-defined]
    return apply


def _kernels_masked(k) -> bool:
    if isinstance(k, (list, tuple)):
        return any(_kernels_masked(v) for v in k)
    return isinstance(k, Kernel) and k.is_masked


def _fields(k, name):
    if isinstance(k, (list, tuple)):
        return [_fields(v, name) for v in k]
    return getattr(k, name)


def _set_masks(out, m1, m2, remask: bool):
    if isinstance(out, (list, tuple)):
        if not isinstance(m1, list):
            m1 = [m1] * len(out)
        if not isinstance(m2, list):
            m2 = [m2] * len(out)
        return type(out)(_set_masks(o, a, b, remask) for o, a, b in zip(out, m1, m2))
    if remask:
        return out.mask(m1, m2)
    return out.replace(mask1=m1, mask2=m2)


def masked_transform(transform: Callable, mask_fn: Optional[Callable], remask: bool) -> Callable:
    """A kernel transform that carries ``Kernel.mask1/mask2`` through.

    Unmasked kernels go straight to ``transform``. For masked ones the output
    masks are ``mask_fn(mask, shape)`` of the input masks (identity when
    None); with ``remask`` every covariance involving a masked output position
    is then zeroed (`Kernel.mask`). ``transform`` itself sees the input masks.
    """

    def masked(k, **kwargs):
        if not _kernels_masked(k):
            return transform(k, **kwargs)
        out = transform(k, **kwargs)
        m1 = output_masks(mask_fn, _fields(k, "mask1"), _fields(k, "shape1"), remask)
        m2 = _fields(k, "mask2")
        if not _all_none(m2):  # None: x2 is x1, and mask1 serves both
            m2 = output_masks(mask_fn, m2, _fields(k, "shape2"), remask)
        else:
            m2 = None
        return _set_masks(out, m1, m2, remask)

    masked.__name__ = getattr(transform, "__name__", "transform")
    masked.__wrapped__ = transform  # type: ignore[attr-defined]
    return masked


# ------------------------------------------------------------ mask helpers


def position_mask(mask):
    """``(N, *S, C) -> (N, *S, 1)``: a position is masked when all its
    channels are (a layer mixing channels, e.g. ``Dense``, sees it as
    padding only then)."""
    return jnp.all(mask, axis=-1, keepdims=True)


def spatial_positions(mask, input_shape) -> jax.Array:
    """``(N, *S)`` boolean position mask broadcast to the input's positions."""
    m = position_mask(mask)[..., 0]
    return jnp.broadcast_to(m, tuple(input_shape[:-1]))


def masked_mean(x, axes: tuple, mask, keepdims: bool = False):
    """Mean of ``x`` over ``axes`` counting only unmasked entries.

    ``mask`` is broadcastable to ``x``; where every entry is masked the mean
    is 0 (the sum is divided by max(count, 1), as in neural-tangents).
    """
    keep = ~jnp.broadcast_to(mask, x.shape)
    total = jnp.sum(jnp.where(keep, x, jnp.zeros((), x.dtype)), axis=axes, keepdims=keepdims)
    count = jnp.sum(keep, axis=axes, keepdims=keepdims)
    return total / jnp.maximum(count, 1).astype(total.dtype)


def and_masks(masks: list):
    """Mask of a sum/product of branches: masked where every masked branch is
    (unmasked branches are ignored), as in neural-tangents' ``FanInSum``."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out


def concat_masks(masks: list, shapes: list):
    """Mask of a channel concatenation: each branch's mask broadcast to its
    shape (all-False for an unmasked branch), concatenated on the last axis."""
    if all(m is None for m in masks):
        return None
    full = [
        jnp.zeros(tuple(s), bool) if m is None else jnp.broadcast_to(m, tuple(s))
        for m, s in zip(masks, shapes)
    ]
    return jnp.concatenate(full, axis=-1)


def flatten_mask(mask, input_shape):
    """Mask of ``Flatten``: the input-shaped mask, flattened like the input."""
    full = jnp.broadcast_to(mask, tuple(input_shape))
    return full.reshape(full.shape[0], -1)


def check_mask_shape(mask, x, name: str):
    """A mask must have the rank of its values and broadcast to them."""
    ms, xs = tuple(np.shape(mask)), tuple(np.shape(x))
    ok = len(ms) == len(xs) and all(a in (1, b) for a, b in zip(ms, xs))
    if not ok:
        raise ValueError(
            f"{name}: a `mask` must have the rank of its values and "
            f"broadcast to them; got mask shape {ms} for values of "
            f"shape {xs}."
        )


def index_mask(mask, full: tuple):
    """Mask of ``Index``: the mask indexed like the input, by ``full`` (one
    entry per axis); a collapsed channel axis (size 1) is kept whole."""
    if mask.shape[-1] == 1 and full[-1] != slice(None):
        full = full[:-1] + (0 if isinstance(full[-1], int) else slice(None),)
    return mask[full]


def dot_general_mask(mask, input_shape, other, is_lhs: bool, dimension_numbers):
    """Mask of ``DotGeneral``: an output entry is padding when no unmasked
    input entry reaches it through a non-zero entry of the constant
    (neural-tangents' ``~dot(~mask)`` with the constant's non-zeros)."""
    shape = tuple(input_shape[:-1]) + (mask.shape[-1],)
    unmasked = (~jnp.broadcast_to(mask, shape)).astype(jnp.float32)
    reach = (jnp.asarray(other) != 0).astype(jnp.float32)
    args = (reach, unmasked) if is_lhs else (unmasked, reach)
    return jax.lax.dot_general(*args, dimension_numbers) == 0


def resize_mask(mask, input_shape, out_shape, method, antialias: bool, precision):
    """Mask of ``ImageResize``: an output is padding when it only has
    contributions from padding (the unmasked indicator is resized and every
    non-zero counts as content, neural-tangents' convention)."""
    shape = tuple(input_shape[:-1]) + (mask.shape[-1],)
    unmasked = (~jnp.broadcast_to(mask, shape)).astype(jnp.float32)
    resized = jax.image.resize(
        unmasked, out_shape(shape), method, antialias=antialias, precision=precision
    )
    return resized == 0
