r"""Output-axes conventions of empirical kernels (neural-tangents' layout).

For outputs ``f(x1)`` of shape ``(A_0, ..., A_{d-1})`` and ``f(x2)`` of shape
``(B_0, ..., B_{d-1})`` a kernel is a bilinear form over output entries,
:math:`K[a, b] = \sum_\theta \partial f(x_1)_a / \partial\theta
\cdot \partial f(x_2)_b / \partial\theta`
(NTK) or :math:`f(x_1)_a f(x_2)_b` (NNGP). Two options shrink it:

* ``trace_axes``: for each listed axis :math:`i` only the *mean* over the
  diagonal :math:`a_i = b_i` is kept,
  :math:`(1/A_i) \sum_{a_i} K[\ldots, a_i, \ldots, a_i, \ldots]` (the axis disappears);
* ``diagonal_axes``: only the diagonal :math:`a_i = b_i` is kept (the axis
  appears once).

Every other axis appears twice, interleaved in output order: for ``f(x)`` of
shape ``(N, H, O)``, ``trace_axes=(-1,)`` gives ``(N1, N2, H1, H2)`` and
``diagonal_axes=(1,), trace_axes=()`` gives ``(N1, N2, H, O1, O2)``.

All kernels here are built as one ``einsum`` whose subscripts come from
``KernelIndices``: side 1 and side 2 get their own index per free axis and share
one per traced or diagonal axis; the output lists the kept indices in the order
above. Repeated indices inside one operand are diagonals, so the same
subscripts turn a full kernel of shape ``f(x1).shape + f(x2).shape`` into the
requested layout.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

PRECISION = jax.lax.Precision.HIGHEST


def check_axes_arg(axes, arg: str) -> tuple:
    """Validate ``trace_axes``/``diagonal_axes`` before the output rank is known."""
    if isinstance(axes, int) and not isinstance(axes, bool):
        return (axes,)
    if axes is None:
        return ()
    if isinstance(axes, (tuple, list)) and all(
        isinstance(a, int) and not isinstance(a, bool) for a in axes
    ):
        return tuple(axes)
    raise ValueError(
        f"empirical kernel: `{arg}` must be an int or a tuple of ints (output axes); got {axes!r}."
    )


def canonicalize(axes: Sequence[int], ndim: int, arg: str) -> tuple:
    """Sorted non-negative axes (duplicates merged, as in neural-tangents)."""
    out = set()
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"empirical kernel: `{arg}` contains axis {a}, out "
                f"of range for outputs f(x) of rank {ndim}."
            )
        out.add(a % ndim)
    return tuple(sorted(out))


class KernelIndices(NamedTuple):
    """Einsum indices (ints) of the output axes of ``f(x1)`` and ``f(x2)``.

    ``lhs[i]``/``rhs[i]`` index axis ``i`` of the two outputs (equal for traced
    and diagonal axes), ``out`` lists the kernel's axes, ``trace_size`` is the
    product of the traced sizes (the normaliser), ``fresh`` yields unused
    indices for extra axes (parameters, activations).
    """

    lhs: tuple
    rhs: tuple
    out: tuple
    trace_size: int
    fresh: "itertools.count"


def kernel_indices(
    shape1: tuple, shape2: tuple, trace_axes, diagonal_axes, what: str = "f(x1) and f(x2)"
) -> KernelIndices:
    """Indices for outputs of shapes ``shape1``/``shape2`` (see module doc)."""
    if len(shape1) != len(shape2):
        raise ValueError(
            f"empirical kernel: {what} must have the same rank; got "
            f"shapes {tuple(shape1)} and {tuple(shape2)}."
        )
    ndim = len(shape1)
    trace = canonicalize(trace_axes, ndim, "trace_axes")
    diag = canonicalize(diagonal_axes, ndim, "diagonal_axes")
    both = set(trace) & set(diag)
    if both:
        raise ValueError(
            f"empirical kernel: axes {sorted(both)} are in both "
            f"`trace_axes` {tuple(trace_axes)} and `diagonal_axes` "
            f"{tuple(diagonal_axes)}; an axis is either traced or "
            f"diagonal."
        )
    for i in trace + diag:
        if shape1[i] != shape2[i]:
            kind = "traced" if i in trace else "diagonal"
            raise ValueError(
                f"empirical kernel: {what} must agree on {kind} axis "
                f"{i}; got shapes {tuple(shape1)} and "
                f"{tuple(shape2)}."
            )
    fresh = itertools.count()
    lhs, rhs, out = [], [], []
    for i in range(ndim):
        a = next(fresh)
        if i in trace:
            lhs.append(a)
            rhs.append(a)
        elif i in diag:
            lhs.append(a)
            rhs.append(a)
            out.append(a)
        else:
            b = next(fresh)
            lhs.append(a)
            rhs.append(b)
            out.extend((a, b))
    trace_size = math.prod(shape1[i] for i in trace)
    return KernelIndices(tuple(lhs), tuple(rhs), tuple(out), trace_size, fresh)


def einsum(*operands_and_indices, out):
    """``jnp.einsum`` in sublist form, cheapest contraction order, full precision."""
    return jnp.einsum(*operands_and_indices, out, optimize="optimal", precision=PRECISION)


def outer(a, b, idx: KernelIndices, n_extra: int = 0):
    r""":math:`\sum_{\mathrm{extra}} a[\ldots, e]\, b[\ldots, e]` in kernel layout, divided by the
    traced size.

    ``a`` and ``b`` have the output axes first, then ``n_extra`` shared trailing
    axes (e.g. parameter axes of Jacobians) that are summed.
    """
    extra = tuple(next(idx.fresh) for _ in range(n_extra))
    return einsum(a, idx.lhs + extra, b, idx.rhs + extra, out=idx.out) / idx.trace_size


def full_to_layout(full, idx: KernelIndices):
    """A full kernel of shape ``shape1 + shape2`` in layout ``idx`` (module doc)."""
    return einsum(full, idx.lhs + idx.rhs, out=idx.out) / idx.trace_size


def kernel_shape(shape1: tuple, shape2: tuple, idx: KernelIndices) -> tuple:
    sizes = dict(zip(idx.lhs, shape1)) | dict(zip(idx.rhs, shape2))
    return tuple(sizes[i] for i in idx.out)
