r"""Fixed linear maps over the batch and spatial axes: `DotGeneral` and `Index`.

Both layers have no parameters and act on every channel alike, so at infinite
width they map the kernel linearly. If a layer computes

.. math::

    y[n, p, c] = \sum_q A_n[p, q] \cdot x[n, q, c]

(:math:`p`, :math:`q` multi-indices of output and input positions, :math:`A_n` fixed,
possibly depending on the example :math:`n`), then the covariances over channels
transform as (the same rule as `Conv` or pooling, NT's ``Kernel.dot_general``
and ``Kernel.__getitem__``)

.. math::

    K'(x_i, p; x_j, p') = \sum_{q, q'} A_i[p, q]\, A_j[p', q']\, K(x_i, q; x_j, q'),

and :math:`\Theta` alike (no parameters are added). `Index` is the case where each
:math:`A[p]` selects one position, so :math:`K'` is :math:`K` indexed twice; `DotGeneral` contracts
and/or batches axes with a constant array.

The channel axis is the infinite-width one: these layers may not index or
contract it in the kernel regime (the finite network may), and the batch axis
must stay first, as in neural-tangents. Where neural-tangents raises only in
the next layer (a batch or channel axis moved by `DotGeneral`), these layers
raise themselves, since kernels here are channels-last (`ntk.kernel`).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ntk.kernel import Kernel
from ntk.stax import spec as specs
from ntk.stax.layer import Layer, make_layer
from ntk.stax.masking import dot_general_mask, index_mask
from ntk.stax.linear import check_channel_axis
from ntk.stax.spatial import require_full


class UnsupportedAxisError(ValueError, NotImplementedError):
    """A kernel-regime restriction on the batch or channel axis.

    Both a `ValueError` (the convention of `ntk.stax` for bad arguments) and a
    `NotImplementedError` (what neural-tangents raises for `Index`), so code
    written for either catches it.
    """


# ---------------------------------------------------------------- DotGeneral


def _dims(value, what: str, name: str) -> tuple:
    try:
        dims = tuple(value)
    except TypeError:
        dims = None
    if dims is None or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims
    ):
        raise ValueError(
            f"{name}: `dimension_numbers` {what} must be a tuple of ints; got {value!r}."
        )
    return tuple(int(d) for d in dims)


def _check_dimension_numbers(dimension_numbers, name: str) -> tuple:
    """``((lhs_c, rhs_c), (lhs_b, rhs_b))`` as tuples of ints, or ValueError."""
    try:
        (lc, rc), (lb, rb) = dimension_numbers
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: `dimension_numbers` must be ((lhs_contracting, "
            f"rhs_contracting), (lhs_batch, rhs_batch)), as for "
            f"jax.lax.dot_general; got {dimension_numbers!r}."
        ) from None
    lc, rc = _dims(lc, "lhs_contracting", name), _dims(rc, "rhs_contracting", name)
    lb, rb = _dims(lb, "lhs_batch", name), _dims(rb, "rhs_batch", name)
    if any(d < 0 for d in lc + rc + lb + rb):
        # jax.lax.dot_general rejects them, so the finite network would fail.
        raise ValueError(
            f"{name}: `dimension_numbers` must be non-negative "
            f"(as for jax.lax.dot_general); got {dimension_numbers!r}."
        )
    if len(lc) != len(rc) or len(lb) != len(rb):
        raise ValueError(
            f"{name}: `dimension_numbers` must pair lhs and rhs "
            f"dimensions one to one; got {dimension_numbers!r}."
        )
    return (lc, rc), (lb, rb)


def _check_range(dims: tuple, ndim: int, operand: str, name: str) -> tuple:
    """Dimensions of one operand: distinct and below its rank."""
    if any(d >= ndim for d in dims):
        raise ValueError(
            f"{name}: `dimension_numbers` name dimensions {dims} of "
            f"the {operand}, which has rank {ndim}."
        )
    if len(set(dims)) != len(dims):
        raise ValueError(
            f"{name}: `dimension_numbers` use a dimension of the {operand} twice: {dims}."
        )
    return dims


def _check_pair(
    contracting: tuple, batch: tuple, ndim: int, operand: str, a_dim: str, name: str, numbers
) -> tuple[tuple, tuple]:
    """Contracting and batch dimensions of one operand (``a_dim`` names one of
    its dimensions in the message): each valid, and none both."""
    contracting = _check_range(contracting, ndim, operand, name)
    batch = _check_range(batch, ndim, operand, name)
    if set(contracting) & set(batch):
        raise ValueError(f"{name}: {a_dim} is both contracted and batched in {numbers!r}.")
    return contracting, batch


def _check_constant(value, arg: str, name: str):
    if not hasattr(value, "shape"):
        value = np.asarray(value)
    if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_) or np.issubdtype(
        value.dtype, np.complexfloating
    ):
        raise TypeError(
            f"{name}: `{arg}` must be a real numeric array or number; got dtype {value.dtype}."
        )
    return value


def _check_precision(precision, name: str):
    ok = lambda p: p is None or isinstance(p, (jax.lax.Precision, str))
    if not (
        ok(precision)
        or (
            isinstance(precision, (tuple, list))
            and len(precision) == 2
            and all(ok(p) for p in precision)
        )
    ):
        raise ValueError(
            f"{name}: `precision` must be None, a jax.lax.Precision "
            f"(or its name) or a pair of them; got {precision!r}."
        )


def DotGeneral(
    *,
    lhs=None,
    rhs=None,
    dimension_numbers=(((), ()), ((), ())),
    precision: jax.lax.Precision | None = None,
    batch_axis: int = 0,
    channel_axis: int = -1,
) -> Layer:
    r"""``jax.lax.dot_general`` of the inputs with a constant (no parameters).

    ``apply_fn`` returns ``lax.dot_general(x, rhs, dimension_numbers,
    precision)`` if ``rhs`` is given, ``lax.dot_general(lhs, x, ...)`` if
    ``lhs`` is, and ``x`` if neither is. Any fixed linear map of positions can
    be written this way: weighting, differencing or mixing positions, per-
    example (``batch``) factors, scaling by a number.

    Args:
      lhs, rhs: the constant (an array or number); at most one of them. The
        inputs ``x: (N, *S, C)`` are the other operand.
      dimension_numbers: ``((lhs_contracting, rhs_contracting), (lhs_batch,
        rhs_batch))``, as for `jax.lax.dot_general`.
      precision: passed to `jax.lax.dot_general` in ``apply_fn``; the kernel is
        always computed at ``Precision.HIGHEST``.
      batch_axis, channel_axis: only 0 and -1 (channels last) are supported.

    Kernel (module docstring): with :math:`y[n, p, c] = \sum_q A_n[p, q]\, x[n, q, c]`,
    :math:`K'(p, p') = \sum_{q, q'} A_i[p, q]\, A_j[p', q']\, K(q, q')` and
    :math:`\Theta` alike; e.g. ``rhs=a`` contracting spatial axis 1 gives
    :math:`K'(\ldots) = \sum_{h, h'} a_h a_{h'} K(h, \ldots, h', \ldots)`. Contracting a
    spatial axis needs the full spatial layout; batching only does not.

    Kernel-regime restrictions (as in neural-tangents, raised here as
    ``UnsupportedAxisError``, a ValueError): the channel axis may be neither
    contracted nor batched; the batch axis may not be contracted (the output
    would have no batch axis) and, if batched, must be the first batch
    dimension; the output must keep the batch axis first and the channels
    last, so free (uncontracted, unbatched) axes of the constant are allowed
    only for ``lhs`` with the batch axis batched (they become new spatial axes
    after it). The finite ``init_fn``/``apply_fn`` accept whatever
    `jax.lax.dot_general` accepts. A constant batched with the batch axis is a
    per-example factor, so ``x1`` and ``x2`` must both have its batch size (and
    an empirical NTK must not be vmapped over the batch).

    Example:
      The difference of the two rows of ``(N, 2, W, C)`` images:

      >>> import jax, jax.numpy as jnp
      >>> from ntk.stax import DotGeneral
      >>> layer = DotGeneral(rhs=jnp.array([1., -1.]),
      ...                    dimension_numbers=(((1,), (0,)), ((), ())))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 3, 4))
      >>> y = layer.apply_fn((), x)
      >>> y.shape, bool(jnp.allclose(y, x[:, 0] - x[:, 1]))
      ((2, 3, 4), True)
    """
    name = "DotGeneral"
    check_channel_axis(channel_axis, batch_axis, name)
    (lc, rc), (lb, rb) = _check_dimension_numbers(dimension_numbers, name)
    _check_precision(precision, name)
    if lhs is not None and rhs is not None:
        raise ValueError(
            f"{name}: at most one of the constants `lhs` and `rhs` "
            f"may be given, since the other operand is the layer's "
            f"inputs; got both."
        )
    if lhs is None and rhs is None:
        if lc or lb:
            raise ValueError(
                f"{name}: `dimension_numbers` {dimension_numbers!r} "
                f"refer to a constant, but neither `lhs` nor `rhs` "
                f"was given."
            )
        return make_layer(
            name,
            lambda key, shape: (tuple(shape), ()),
            lambda params, x, **kw: x,
            lambda k, **kw: k,
            spec=specs.Parameterless(),
        )
    is_lhs = rhs is None
    other = _check_constant(lhs if is_lhs else rhs, "lhs" if is_lhs else "rhs", name)
    m = other.ndim
    in_c, o_c, in_b, o_b = (rc, lc, rb, lb) if is_lhs else (lc, rc, lb, rb)
    o_c, o_b = _check_pair(
        o_c, o_b, m, "constant", "a dimension of the constant", name, dimension_numbers
    )
    o_free = [a for a in range(m) if a not in o_c + o_b]

    def dot(x):
        o = jnp.asarray(other, x.dtype)
        lhs, rhs = (o, x) if is_lhs else (x, o)
        return jax.lax.dot_general(lhs, rhs, ((lc, rc), (lb, rb)), precision)

    def init_fn(key, input_shape):
        x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.result_type(float))
        return tuple(jax.eval_shape(dot, x).shape), ()

    def apply_fn(params, x, **kwargs):
        return dot(x)

    def plan(shape1, shape2):
        """Input dims and the output's spatial axes, ``("x", s)`` or ``("o", a)``."""
        n = len(shape1)
        ic, ib = _check_pair(in_c, in_b, n, "inputs", "an input dimension", name, dimension_numbers)
        if n - 1 in ic + ib:
            raise UnsupportedAxisError(
                f"{name}: the channel axis ({n - 1}, the infinite-width one) cannot "
                f"be contracted or batched in the kernel regime; got "
                f"dimension_numbers={dimension_numbers!r} for inputs of rank {n}."
            )
        if 0 in ic:
            raise UnsupportedAxisError(
                f"{name}: contracting the batch axis 0 is not supported in the "
                f"kernel regime: the output would have no batch axis; got "
                f"dimension_numbers={dimension_numbers!r}."
            )
        if ib and ib[0] != 0:
            raise UnsupportedAxisError(
                f"{name}: batching input axes {ib} without the batch axis 0 as the "
                f"first batch dimension would move them before the batch axis; "
                f"batch the constant with axis 0 first (a per-example constant) "
                f"or contract instead. Got dimension_numbers={dimension_numbers!r}."
            )
        if o_free and not is_lhs:
            raise UnsupportedAxisError(
                f"{name}: the uncontracted, unbatched axes {tuple(o_free)} of `rhs` "
                f"would follow the channel axis, which must stay last; contract or "
                f"batch every axis of `rhs` (or use `lhs`). Got shape "
                f"{tuple(other.shape)}, dimension_numbers={dimension_numbers!r}."
            )
        if o_free and not ib:
            raise UnsupportedAxisError(
                f"{name}: the uncontracted, unbatched axes {tuple(o_free)} of `lhs` "
                f"would come before the batch axis, which must stay first; contract "
                f"them, or batch axis 0 with a leading per-example axis of `lhs`. "
                f"Got shape {tuple(other.shape)}, dimension_numbers="
                f"{dimension_numbers!r}."
            )
        for i, a in zip(ic + ib, o_c + o_b):
            for arg, shape in (("x1", shape1), ("x2", shape2)):
                if shape[i] != other.shape[a]:
                    raise ValueError(
                        f"{name}: dimension {i} of `{arg}` (shape {tuple(shape)}) has "
                        f"size {shape[i]} but the constant's paired dimension {a} "
                        f"has size {other.shape[a]} (shape {tuple(other.shape)}); a "
                        f"constant batched with the batch axis needs x1 and x2 of "
                        f"its batch size."
                        if i == 0
                        else f"{name}: dimension {i} of `{arg}` (shape {tuple(shape)}) has "
                        f"size {shape[i]} but the constant's paired dimension {a} "
                        f"has size {other.shape[a]} (shape {tuple(other.shape)})."
                    )
        x_free = [s for s in range(1, n - 1) if s not in ic + ib]
        out = [("x", s) for s in ib[1:]]
        out += [("o", a) for a in o_free] + [("x", s) for s in x_free]
        return ic, ib, out

    def transform(k: Kernel, **kwargs) -> Kernel:
        ic, ib, out = plan(k.shape1, k.shape2)
        if ic:
            require_full(k, name)
        diag = k.diagonal_spatial
        paired = dict(zip(o_c + o_b, ic + ib))  # constant dim -> input dim
        d = k.spatial_ndim

        def apply(mat, pair_batch):
            if mat is None:
                return None
            o = jnp.asarray(other, mat.dtype)
            # Keys: input dims (ints) and the constant's free dims ("o", a).
            left: dict[int | tuple[str, int], int] = {0: 0}
            right: dict[int | tuple[str, int], int] = {0: 1 if pair_batch else 0}
            label = 2
            for s in list(range(1, d + 1)) + [("o", a) for a in o_free]:
                left[s] = label
                right[s] = label if diag else label + 1
                label += 1 if diag else 2
            batch = [0, 1] if pair_batch else [0]
            sides = lambda keys: [
                v for s in keys for v in ((left[s],) if diag else (left[s], right[s]))
            ]
            mat_in = batch + sides(range(1, d + 1))
            o_left = [left[paired[a]] if a in paired else left[("o", a)] for a in range(m)]
            o_right = [right[paired[a]] if a in paired else right[("o", a)] for a in range(m)]
            mat_out = batch + sides([s if kind == "x" else (kind, s) for kind, s in out])
            return jnp.einsum(
                o,
                o_left,
                mat,
                mat_in,
                o,
                o_right,
                mat_out,
                optimize=True,
                precision=jax.lax.Precision.HIGHEST,
            )

        def out_shape(shape):
            sizes = [shape[s] if kind == "x" else other.shape[s] for kind, s in out]
            return (shape[0],) + tuple(sizes) + (shape[-1],)

        return k.replace(
            nngp=apply(k.nngp, True),
            ntk=apply(k.ntk, True),
            cov1=apply(k.cov1, False),
            cov2=apply(k.cov2, False),
            shape1=out_shape(k.shape1),
            shape2=out_shape(k.shape2),
        )

    def mask_fn(mask, input_shape):
        return dot_general_mask(mask, input_shape, other, is_lhs, ((lc, rc), (lb, rb)))

    return make_layer(
        f"DotGeneral({'lhs' if is_lhs else 'rhs'}={tuple(other.shape)})",
        init_fn,
        apply_fn,
        transform,
        needs_full_spatial=bool(in_c),
        spec=specs.Parameterless(),
        mask_fn=mask_fn,
    )


# --------------------------------------------------------------------- Index


class _Slice:
    """``Slice[1:10, :, ::-1]`` returns the index it is given,
    ``(slice(1, 10), slice(None), slice(None, None, -1))``, to pass to `Index`
    (a function argument cannot be written with ``:``).

    Example:
      >>> Slice[1:10, :, ::-1]
      (slice(1, 10, None), slice(None, None, None), slice(None, None, -1))
      >>> x = jnp.arange(24.0).reshape(2, 3, 4)
      >>> Index(Slice[..., ::2]).apply_fn((), x).shape
      (2, 3, 2)
    """

    def __getitem__(self, idx):
        return idx

    def __repr__(self):
        return "Slice"


Slice = _Slice()


def _check_idx(idx, name: str) -> tuple:
    """``idx`` as a tuple of ints, slices and at most one Ellipsis."""
    entries = idx if isinstance(idx, tuple) else (idx,)
    for e in entries:
        ok = (
            e is Ellipsis
            or isinstance(e, slice)
            or (isinstance(e, numbers.Integral) and not isinstance(e, bool))
        )
        if isinstance(e, slice):
            ok = all(
                v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool))
                for v in (e.start, e.stop, e.step)
            )
            if ok and e.step == 0:
                raise ValueError(f"{name}: slice step cannot be zero; got {idx!r}.")
        if not ok:
            raise TypeError(
                f"{name}: `idx` must be built from ints, slices and "
                f"`...` (e.g. stax.Slice[:, 1:4, ::2]); got {e!r} in "
                f"{idx!r}."
            )
    if sum(e is Ellipsis for e in entries) > 1:
        raise ValueError(f"{name}: `idx` may contain at most one `...`; got {idx!r}.")
    return tuple(int(e) if isinstance(e, numbers.Integral) else e for e in entries)


def _format(entries: tuple) -> str:
    """``(0, slice(1, None, 2), ...)`` -> ``"0, 1::2, ..."`` (for names)."""

    def one(e):
        if e is Ellipsis:
            return "..."
        if isinstance(e, int):
            return str(e)
        text = lambda v: "" if v is None else str(v)
        return f"{text(e.start)}:{text(e.stop)}" + ("" if e.step is None else f":{e.step}")

    return ", ".join(one(e) for e in entries)


def _canonical(entries: tuple, shape: tuple, name: str) -> tuple:
    """One entry per axis of ``shape`` (``...`` expanded); ints in range."""
    n = len(shape)
    named = [e for e in entries if e is not Ellipsis]
    if len(named) > n:
        raise ValueError(
            f"{name}: `idx` indexes {len(named)} axes of inputs of rank {n} (shape {tuple(shape)})."
        )
    if Ellipsis in entries:
        at = entries.index(Ellipsis)
        full = entries[:at] + (slice(None),) * (n - len(named)) + entries[at + 1 :]
    else:
        full = entries + (slice(None),) * (n - len(named))
    for axis, (e, size) in enumerate(zip(full, shape)):
        if isinstance(e, int) and not -size <= e < size:
            raise ValueError(
                f"{name}: index {e} is out of range for axis {axis} "
                f"of size {size} (shape {tuple(shape)})."
            )
    return full


def _sliced_shape(full: tuple, shape: tuple) -> tuple:
    return tuple(
        len(range(*e.indices(size))) for e, size in zip(full, shape) if isinstance(e, slice)
    )


def Index(idx, batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    r"""Index the inputs as ``x[idx]`` (NumPy basic indexing), no parameters.

    Args:
      idx: ints, slices and at most one ``...``, most easily written with
        `Slice`: ``Index(Slice[:, 1:4, ::2])`` is ``x[:, 1:4, ::2]``. An int
        removes its axis.
      batch_axis, channel_axis: only 0 and -1 (channels last) are supported.

    Kernel: the covariances are indexed on both of their arguments,
    :math:`K'(x_i, p; x_j, p') = K(x_{b(i)}, s(p); x_{b(j)}, s(p'))` with :math:`b`
    the batch index and :math:`s` the spatial one (NT's ``Kernel.__getitem__``),
    and :math:`\Theta` alike, in either spatial layout.

    Kernel-regime restrictions (as in neural-tangents; raised as
    ``UnsupportedAxisError``, a ValueError and NotImplementedError): the channel
    axis (infinite width) must be left whole (``:`` or ``...``), and the batch
    axis may be sliced but not indexed with an int (it must remain). The finite
    ``init_fn``/``apply_fn`` accept any of these.

    Example:
      Every other example, the upper-left 4×4 corner, then its first row:

      >>> import jax
      >>> from ntk.stax import Index, Slice, serial
      >>> init_fn, apply_fn, kernel_fn = serial(Index(Slice[::2, :4, :4]),
      ...                                       Index(Slice[:, 0]))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 6, 3))
      >>> _, params = init_fn(jax.random.PRNGKey(1), x.shape)
      >>> bool((apply_fn(params, x) == x[::2, :4, :4][:, 0]).all())   # (N/2, 4, C)
      True
    """
    entries = _check_idx(idx, "Index")
    name = f"Index[{_format(entries)}]"
    check_channel_axis(channel_axis, batch_axis, name)

    def init_fn(key, input_shape):
        shape = tuple(input_shape)
        return _sliced_shape(_canonical(entries, shape, name), shape), ()

    def apply_fn(params, x, **kwargs):
        return x[_canonical(entries, tuple(x.shape), name)]

    def transform(k: Kernel, **kwargs) -> Kernel:
        full1 = _canonical(entries, k.shape1, name)
        full2 = _canonical(entries, k.shape2, name)
        batch, *spatial, chan = full1
        size = k.shape1[-1]
        if not (isinstance(chan, slice) and chan.indices(size) == (0, size, 1)):
            raise UnsupportedAxisError(
                f"{name}: the channel axis ({len(k.shape1) - 1}, the infinite-width "
                f"one) cannot be indexed in the kernel regime; leave it whole with "
                f"`:` or `...`."
            )
        if isinstance(batch, int):
            raise UnsupportedAxisError(
                f"{name}: indexing the batch axis with an int ({batch}) would remove "
                f"it, and kernels need one; use a slice such as "
                f"{batch}:{'' if batch == -1 else batch + 1}."
            )
        shape1 = _sliced_shape(full1, k.shape1)
        shape2 = _sliced_shape(full2, k.shape2)
        if 0 in shape1 + shape2:
            raise ValueError(
                f"{name}: selects no entries along some axis of inputs "
                f"{tuple(k.shape1)} / {tuple(k.shape2)} (output "
                f"shapes {shape1} / {shape2})."
            )
        sp = tuple(spatial) if k.diagonal_spatial else tuple(e for e in spatial for _ in range(2))
        take = lambda mat, b: None if mat is None else mat[b + sp]
        return k.replace(
            nngp=take(k.nngp, (batch, batch)),
            ntk=take(k.ntk, (batch, batch)),
            cov1=take(k.cov1, (batch,)),
            cov2=take(k.cov2, (batch,)),
            shape1=shape1,
            shape2=shape2,
        )

    # Examples stay in place only if the batch axis is left whole; an
    # ellipsis first covers it only when at most the channel axis is named.
    named = [e for e in entries if e is not Ellipsis]
    if entries and entries[0] is Ellipsis:
        keeps_batch = len(named) <= 1
    else:
        keeps_batch = not entries or entries[0] == slice(None)

    def mask_fn(mask, input_shape):
        return index_mask(mask, _canonical(entries, tuple(input_shape), name))

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        spec=specs.Parameterless(per_example=keeps_batch),
        mask_fn=mask_fn,
    )
