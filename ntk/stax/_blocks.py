"""Evaluating a large spatial kernel block by block of input pairs.

With pooling, attention or graph layers every layer carries the covariance of
each pair of positions, ``N1·N2·P²`` entries (``P`` positions per input), and
each layer streams through all of it several times. On CPU, evaluating the
network on blocks of pairs of about 4 MiB per layer, one after the other, is
about twice as fast as one pass over everything at once (measured with jax
0.10 on 2 cores: the attention benchmark's NTK of 64 sequences 25 -> 13 ms,
three 3×3 Conv + Relu layers with global pooling on 64 images 8×8
320 -> 150 ms), as the loops XLA emits then work on arrays that stay in
cache.

For a network whose ``kernel_fn`` is ``pairwise`` (`ntk.stax.layer.KernelFn`)
the kernel of a block of ``x1`` against a block of ``x2`` is that block of the
full kernel, computed by the same operations, so the values do not change.
Blocks are evaluated in sequence by `jax.lax.map`, which compiles one block.
The kernel of inputs with themselves (``x2=None``) is symmetric,
``K(x_i, x_j) = K(x_j, x_i)``: when it is read out to ``(N, N)``, square
blocks on and above the diagonal are evaluated and mirrored, about half the
work.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

# The size of one layer's covariance array per block (2²⁰ float32 entries).
# Measured on the attention and convolution benchmarks with 64 and 128
# inputs: 2, 4 and 8 MiB within 10% of each other, 16 MiB up to 2x slower;
# blocks of whole rows of pairs beat square ones by 5-25%.
BLOCK_BYTES = 4 * 2**20


def _even_block(n: int, at_most: int) -> int:
    """The size of ``ceil(n / at_most)`` blocks that cover ``n`` evenly."""
    count = -(-n // max(1, at_most))
    return -(-n // count)


def _split(a, block: int):
    """``(n, ...)`` -> ``(count, block, ...)``, the last block padded by
    repeating the last row (a valid input, so the padding is finite)."""
    n = a.shape[0]
    count = -(-n // block)
    pad = count * block - n
    if pad:
        a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
    return a.reshape((count, block) + a.shape[1:])


def _per_input(value, n: int):
    """A mask/pattern broadcast to ``n`` rows, or None if it is not per input."""
    if value is None:
        return None
    shape = jnp.shape(value)
    if not shape or shape[0] not in (1, n):
        return None
    return jnp.broadcast_to(value, (n,) + tuple(shape[1:]))


def _call(fn, r: dict, c: dict, get, static: dict, options: dict):
    """``fn`` on a row block ``r`` against a column block ``c`` (dicts of
    ``"x"``, ``"mask"`` and the per-input keyword arguments)."""
    per_input = {k: (r[k], c[k]) for k in r if k not in ("x", "mask")}
    return fn(r["x"], c["x"], get, masks=(r["mask"], c["mask"]), **options, **static, **per_input)


def blockwise(fn: Callable, x1, x2, get, masks, kwargs: dict, **options) -> Optional[object]:
    """``fn(x1, x2, get, masks=..., **options, **kwargs)`` in blocks of pairs.

    ``fn`` computes the kernel of two input batches (``x2`` None: of ``x1``
    with itself) and must be pairwise. ``masks`` is the pair of input masks;
    array-valued ``kwargs`` must be per-input pairs ``(a1, a2)`` with ``x1``'s
    and ``x2``'s batch sizes (as `Aggregate`'s ``pattern``).

    Returns the ``(N1, N2, ...)`` arrays that ``get`` names, or None when
    blocking does not apply: ``get`` asks for more than ``"nngp"``/``"ntk"``,
    the kernel fits in one block, or a keyword argument is not per-input.
    """
    names = (get,) if isinstance(get, str) else get
    if not names or not set(names) <= {"nngp", "ntk"}:
        return None
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    positions = math.prod(x1.shape[1:-1])
    dtype = jnp.result_type(x1, float) if x2 is None else jnp.result_type(x1, x2, float)
    pair_bytes = positions**2 * jnp.dtype(dtype).itemsize
    if n1 * n2 * pair_bytes <= BLOCK_BYTES:
        return None

    # Masks have their input's rank and broadcast to it (`check_mask_shape`),
    # so their leading axis is 1 or the batch: always per input.
    rows = {"x": x1, "mask": _per_input(masks[0], n1)}
    cols = {
        "x": x1 if x2 is None else x2,
        "mask": _per_input(masks[0] if x2 is None else masks[1], n2),
    }
    static = {}
    for name, value in kwargs.items():
        if not jax.tree_util.tree_leaves(value):
            static[name] = value
            continue
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            return None
        first, second = value
        second = first if x2 is None or second is None else second
        a1, a2 = _per_input(first, n1), _per_input(second, n2)
        if a1 is None or a2 is None:
            return None
        rows[name], cols[name] = a1, a2

    pairs = max(1, BLOCK_BYTES // pair_bytes)
    if x2 is None:
        out = _upper_blocks(fn, rows, get, static, pairs, n1, options)
        if out is not None:
            return out
    b2 = _even_block(n2, pairs)
    b1 = _even_block(n1, pairs // b2)
    rows = {k: None if v is None else _split(v, b1) for k, v in rows.items()}
    cols = {k: None if v is None else _split(v, b2) for k, v in cols.items()}

    out = jax.lax.map(
        lambda r: jax.lax.map(lambda c: _call(fn, r, c, get, static, options), cols), rows
    )

    def assemble(o):
        # (rows, cols, b1, b2, ...) -> (N1, N2, ...)
        o = jnp.swapaxes(o, 1, 2)
        o = o.reshape((o.shape[0] * o.shape[1], o.shape[2] * o.shape[3]) + o.shape[4:])
        return o[:n1, :n2]

    return jax.tree_util.tree_map(assemble, out)


def _upper_blocks(fn, inputs: dict, get, static: dict, pairs: int, n: int, options: dict):
    """The kernel of ``inputs["x"]`` with itself from the square blocks on and
    above the diagonal, the others mirrored: ``K(x_j, x_i) = K(x_i, x_j)``
    for ``(N, N)`` outputs, which a symmetric kernel is. With ``g`` blocks a
    side this evaluates ``g (g + 1) / 2`` of the ``g²`` blocks.

    None when the output has axes beyond the two batch axes (their transpose
    would depend on the output's spatial layout) or one block covers all.
    """
    b = _even_block(n, math.isqrt(pairs))
    g = -(-n // b)
    if g < 2:
        return None
    split = {k: None if v is None else _split(v, b) for k, v in inputs.items()}

    def block(i, j):
        r = {k: None if v is None else v[i] for k, v in split.items()}
        c = {k: None if v is None else v[j] for k, v in split.items()}
        return _call(fn, r, c, get, static, options)

    shapes = jax.eval_shape(block, 0, 0)
    if any(s.ndim != 2 for s in jax.tree_util.tree_leaves(shapes)):
        return None
    rows, cols = np.triu_indices(g)
    out = jax.lax.map(lambda ij: block(*ij), (jnp.asarray(rows), jnp.asarray(cols)))

    # Block (I, J) of the full kernel is out[index[I, J]], transposed below
    # the diagonal.
    index = np.zeros((g, g), dtype=np.int32)
    index[rows, cols] = np.arange(rows.size)
    index[cols, rows] = np.arange(rows.size)
    below = jnp.asarray(np.tril(np.ones((g, g), dtype=bool), -1))[:, :, None, None]

    def assemble(o):
        full = o[jnp.asarray(index)]  # (g, g, b, b)
        full = jnp.where(below, jnp.swapaxes(full, 2, 3), full)
        full = jnp.swapaxes(full, 1, 2).reshape(g * b, g * b)
        return full[:n, :n]

    return jax.tree_util.tree_map(assemble, out)
