"""What `ntk.parallel.batch` cuts its tiles from: input arrays or a `Kernel` (not public).

Input arrays are cut by rows: a tile of rows ``r`` and columns ``c`` is the
kernel of ``x1[r]`` and ``x2[c]``, the last tile of each axis padded with
copies of its last real input. A `Kernel` over ``N1 × N2`` pairs holds three
kinds of arrays, and a tile of rows ``r`` and columns ``c`` takes each kind
apart:

- per pair, ``(N1, N2, ...)``: ``nngp``, ``ntk``, ``chord`` → ``[r, c]``;
- per ``x1`` input, ``(N1, ...)``: ``cov1``, ``mask1``, ``norm1`` → ``[r]``;
- per ``x2`` input, ``(N2, ...)``: ``cov2``, ``mask2``, ``norm2`` → ``[c]``.

A kernel of ``x1`` with itself (``cov2`` None) gives its tiles the ``x1``
arrays of their columns as the ``x2`` ones, so a tile off the diagonal is
the kernel of two different inputs, as it is for arrays.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from ntk import _checks
from ntk.kernel import Kernel, is_input_pair

_PAIR = ("nngp", "ntk", "chord")
_SIDES = (("cov1", "cov2"), ("mask1", "mask2"), ("norm1", "norm2"))
#: How each array field of a `Kernel` is cut: "pair", "row" (``x1``) or "col" (``x2``).
ROLE = {**{f: "pair" for f in _PAIR}, **{a: "row" for a, _ in _SIDES}}
ROLE.update({b: "col" for _, b in _SIDES})


def leaf_roles(tree) -> tuple:
    """The role (`ROLE`) of each leaf of ``tree``, in `jax.tree_util.tree_leaves`
    order: fields of the `Kernel` objects in it by name, any other array "pair"."""
    roles: list = []
    for node in jax.tree_util.tree_leaves(tree, is_leaf=lambda n: isinstance(n, Kernel)):
        if isinstance(node, Kernel):
            paths = jax.tree_util.tree_flatten_with_path(node)[0]
            roles.extend(ROLE[path[-1].name] for path, _ in paths)
        else:
            roles.append("pair")
    return tuple(roles)


def cut(leaf, role: str, rows: slice, cols: slice):
    """The part of one output leaf that a tile of ``rows`` × ``cols`` holds."""
    if role == "pair":
        return leaf[rows, cols]
    return leaf[rows] if role == "row" else leaf[cols]


def output_shape(leaf_shape: tuple, role: str, n1: int, n2: int) -> tuple:
    """Shape of a whole output leaf, from the leaf of one pair of inputs."""
    if role == "pair":
        return (n1, n2) + tuple(leaf_shape[2:])
    return ((n1,) if role == "row" else (n2,)) + tuple(leaf_shape[1:])


def finish(result, n1: int, n2: int, x1_is_x2: bool):
    """Whole-size `Kernel` objects from those of a tile: batch sizes of
    ``shape1``/``shape2`` set, and the ``x2`` arrays dropped when the kernel is
    of ``x1`` with itself, as the unbatched ``kernel_fn`` returns it."""

    def one(k):
        if not isinstance(k, Kernel):
            return k
        changes: dict = {
            "shape1": (n1,) + tuple(k.shape1[1:]),
            "shape2": (n2,) + tuple(k.shape2[1:]),
        }
        if x1_is_x2:
            changes.update(cov2=None, mask2=None, norm2=None)
        # dataclasses.replace, not Kernel.replace: chord and the norms are kept.
        return dataclasses.replace(k, **changes)

    return jax.tree_util.tree_map(one, result, is_leaf=lambda n: isinstance(n, Kernel))


def _edge_pad(a: np.ndarray, axis: int, start: int, size: int) -> np.ndarray:
    """``a[start:start+size]`` along ``axis``, padded with copies of the last
    real entry (a copy of an input, so a padded tile stays a valid kernel)."""
    # A slice, not a copy, unless padding is needed.
    block = a[(slice(None),) * axis + (slice(start, start + size),)]
    extra = size - block.shape[axis]
    if extra <= 0:
        return block
    last = np.take(block, [-1], axis=axis)
    return np.concatenate([block, np.repeat(last, extra, axis=axis)], axis=axis)


def take_rows(x, start: int, size: int):
    """Rows ``start:start+size`` of (each of) the inputs, padded with copies
    of the last real row."""
    return jax.tree_util.tree_map(lambda a: _edge_pad(a, 0, start, size), x)


def one_row(x):
    """Shapes and dtypes of one row of (each of) the inputs ``x``."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((1,) + a.shape[1:], a.dtype), x)


class ArraySource:
    """Input arrays ``x1`` and ``x2`` (host arrays, or trees of them for several
    inputs) cut into tiles; ``x2`` is ``x1`` itself for the kernel of ``x1``
    with itself."""

    def __init__(self, x1, x2):
        self.x1, self.x2 = x1, x2
        self.x1_is_x2 = x2 is x1
        self.n1 = jax.tree_util.tree_leaves(x1)[0].shape[0]
        self.n2 = jax.tree_util.tree_leaves(x2)[0].shape[0]
        self.meta = None
        #: The rows of a tile do not depend on its columns.
        self.rows_by_column = False

    def one_row(self):
        """``(a, b)`` of one pair of inputs, as shapes (for `jax.eval_shape`)."""
        return one_row(self.x1), one_row(self.x2)

    def probe(self):
        """One input of ``x1``, for ``kernel_fn(probe, None, None)``."""
        return one_row(self.x1)

    def manifest_inputs(self) -> tuple:
        """``(x1, x2, note)`` for `ntk._tile_store.manifest`."""
        return self.x1, None if self.x1_is_x2 else self.x2, None

    def rows(self, r0: int, rows: int, c0: int, cols: int):
        """The tile's ``a``: its rows of ``x1`` (whatever its columns)."""
        return take_rows(self.x1, r0, rows)

    def cols(self, c0: int, cols: int):
        """The tile's ``b``: its rows of ``x2``."""
        return take_rows(self.x2, c0, cols)


class _KernelPart:
    """One `Kernel` of a `KernelSource`, its arrays on the host by role."""

    def __init__(self, k: Kernel, canonical):
        try:
            fields = {
                f: canonical(np.asarray(getattr(k, f))) for f in ROLE if getattr(k, f) is not None
            }
        except _checks.TRACED:
            raise TypeError(
                "parallel.batch: the Kernel given as `x1` is traced (inside jax.jit, "
                "grad or vmap); call the batched kernel outside them, or transform "
                "the unbatched kernel_fn."
            ) from None
        self.x1_is_x2 = k.cov2 is None
        self.n1, self.n2 = (int(n) for n in np.shape(k.nngp)[:2])
        for name, a in fields.items():
            role = ROLE[name]
            if role == "pair":
                if a.shape[:2] == (self.n1, self.n2):
                    continue
                want = f"({self.n1}, {self.n2}, ...)"
            else:
                n = self.n1 if role == "row" else self.n2
                if a.ndim and a.shape[0] == n:
                    continue
                want = f"({n}, ...)"
            raise ValueError(
                f"parallel.batch: the Kernel's `{name}` must have shape {want} (one "
                f"row per input, as its nngp of shape {(self.n1, self.n2)} says); "
                f"got {a.shape}."
            )
        self.pair = {f: a for f, a in fields.items() if ROLE[f] == "pair"}
        self.row = {f: a for f, a in fields.items() if ROLE[f] == "row"}
        # The columns of a kernel of x1 with itself are inputs of x1 too.
        source = {b: a if self.x1_is_x2 else b for a, b in _SIDES}
        self.col = {b: fields[s] for b, s in source.items() if s in fields}
        self.meta = (
            tuple(k.shape1),
            tuple(k.shape2),
            bool(k.diagonal_spatial),
            bool(k.is_gaussian),
            bool(k.ntk_is_zero),
        )

    def rows(self, r0: int, rows: int, c0: int, cols: int):
        pair = {f: _edge_pad(_edge_pad(a, 0, r0, rows), 1, c0, cols) for f, a in self.pair.items()}
        return pair, {f: _edge_pad(a, 0, r0, rows) for f, a in self.row.items()}

    def cols(self, c0: int, cols: int):
        return {f: _edge_pad(a, 0, c0, cols) for f, a in self.col.items()}


class KernelSource:
    """A `Kernel`, or several nested in lists or tuples (the kernels of a
    network's several inputs), given to `ntk.parallel.batch` as its input, on
    the host, cut into tiles (module docstring).

    Args:
      x: the kernel(s), each of the same ``N1 × N2`` inputs, with concrete arrays.
      canonical: maps an array to the host array of the dtype the tiles use.
    """

    def __init__(self, x, canonical):
        kernels, treedef = jax.tree_util.tree_flatten(x, is_leaf=lambda n: isinstance(n, Kernel))
        if not kernels or not all(isinstance(k, Kernel) for k in kernels):
            raise TypeError(
                "parallel.batch: `x1` mixes Kernels with arrays; give input arrays "
                "only, or Kernels only (each input's kernel)."
            )
        self.parts = [_KernelPart(k, canonical) for k in kernels]
        sizes = {(p.n1, p.n2, p.x1_is_x2) for p in self.parts}
        if len(sizes) != 1:
            raise ValueError(
                "parallel.batch: the Kernels of `x1` must be of the same inputs (the "
                "same N1 × N2 pairs, each of x1 with itself or none); got "
                f"{sorted(sizes)} as (N1, N2, x1 is x2)."
            )
        self.n1, self.n2, self.x1_is_x2 = sizes.pop()
        #: The static fields, hashable: what the compiled step is keyed on.
        self.meta = (treedef, tuple(p.meta for p in self.parts))
        #: A tile's per-pair arrays are cut by its columns too.
        self.rows_by_column = True

    def one_row(self):
        """``(a, b)`` of the first pair of inputs (for `jax.eval_shape`)."""
        return self.rows(0, 1, 0, 1), self.cols(0, 1)

    def probe(self):
        """The kernel of the first input with itself, for ``kernel_fn(probe, None, None)``."""
        return tile_kernel(self.meta, self.rows(0, 1, 0, 1), tuple({} for _ in self.parts))

    def manifest_inputs(self) -> tuple:
        """``(arrays, None, static fields)`` for `ntk._tile_store.manifest`."""
        arrays = [[p.pair, p.row, p.col] for p in self.parts]
        return arrays, None, repr(self.meta)

    def rows(self, r0: int, rows: int, c0: int, cols: int):
        """The tile's ``a``: each kernel's per-pair arrays and ``x1`` arrays
        (split by rows over devices), padded to ``rows`` × ``cols``."""
        return tuple(p.rows(r0, rows, c0, cols) for p in self.parts)

    def cols(self, c0: int, cols: int):
        """The tile's ``b``: each kernel's ``x2`` arrays, padded to ``cols``."""
        return tuple(p.cols(c0, cols) for p in self.parts)


def tile_kernel(meta: tuple, a, b):
    """The `Kernel` (or nested Kernels) of a tile from its `KernelSource.rows`
    and `KernelSource.cols` and the source's ``meta`` (inside the compiled step, where each device
    holds some rows)."""
    treedef, metas = meta
    kernels = []
    for ((pair, row), col), (shape1, shape2, diagonal, gaussian, ntk_zero) in zip(zip(a, b), metas):
        n_rows, n_cols = pair["nngp"].shape[:2]
        kernels.append(
            Kernel(
                **({f: None for f in ROLE} | pair | row | col),
                shape1=(n_rows,) + shape1[1:],
                shape2=(n_cols,) + shape2[1:],
                diagonal_spatial=diagonal,
                is_gaussian=gaussian,
                ntk_is_zero=ntk_zero,
            )
        )
    return jax.tree_util.tree_unflatten(treedef, kernels)


def holds_kernels(x) -> bool:
    """Whether ``x`` is a `Kernel` or has Kernels nested in lists or tuples."""
    nodes = jax.tree_util.tree_leaves(x, is_leaf=lambda n: isinstance(n, Kernel))
    return any(isinstance(n, Kernel) for n in nodes)


def several(x) -> bool:
    """Whether ``x`` is several inputs, as for stax's ``kernel_fn`` (a list or
    tuple of arrays, possibly nested, for a network starting with
    ``parallel``); nested lists of numbers are still one array-like."""
    return (
        isinstance(x, (list, tuple))
        and not hasattr(x, "_fields")
        and any(hasattr(leaf, "shape") for leaf in jax.tree_util.tree_leaves(x))
    )


def host_inputs(x, name: str):
    """``x`` as host arrays (`host_input`): one array, or several inputs
    nested as given, which must share their batch size."""
    if not several(x):
        return host_input(x, name)
    out = jax.tree_util.tree_map(lambda a: host_input(a, name), x)
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree_util.tree_leaves(out)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"parallel.batch: the inputs of `{name}` must share their batch size "
            f"(axis 0); got shapes {shapes(out)}."
        )
    return out


def shapes(x):
    return jax.tree_util.tree_map(lambda a: tuple(a.shape), x)


def n_rows(x) -> int:
    return jax.tree_util.tree_leaves(x)[0].shape[0]


def host_input(x, name: str) -> np.ndarray:
    """``x`` as a host array of JAX's canonical dtype (float32 unless x64)."""
    # Kernels never get here: `ntk.parallel.batch` cuts them as a `KernelSource`.
    if isinstance(x, dict) or hasattr(x, "_fields"):
        if hasattr(x, "_fields"):  # a batched result, such as Kernel(nngp, ntk)
            what = (
                f"the namedtuple {type(x).__name__}{tuple(x._fields)}; a batched "
                "result is tiled again only as a whole Kernel (get=None)"
            )
        else:
            what = "a dict of arrays"
        raise TypeError(
            f"parallel.batch: `{name}` must be an array of inputs, shape (batch, ...), "
            f"or a list or tuple of them; got {what}."
        )
    try:
        sharded = isinstance(x, jax.Array) and not x.is_fully_addressable
        x = x if sharded else np.asarray(x)
    except _checks.TRACED:
        raise TypeError(
            f"parallel.batch: `{name}` is traced (inside jax.jit, grad or vmap); the "
            "batched kernel fills a host array tile by tile and runs outside "
            "transformations (NT's batch traces; this one does not, so that the "
            "output need fit only in host memory): call it outside them, or "
            "transform the unbatched kernel_fn."
        ) from None
    if sharded:
        raise ValueError(
            f"parallel.batch: `{name}` must be addressable by this "
            f"process (pass the same host array on every process); got "
            f"a jax.Array sharded as {x.sharding}."
        )
    return canonical(x)


def canonical(x: np.ndarray) -> np.ndarray:
    """``x`` in JAX's canonical dtype (float32 unless x64)."""
    dtype = jax.dtypes.canonicalize_dtype(x.dtype)
    return x if x.dtype == dtype else x.astype(dtype)


def per_input_pairs(kwargs: dict, n1: int, n2: int) -> dict:
    """The keyword arguments given per input, as NT's ``batch`` splits them:
    a pair ``(for x1, for x2)`` of arrays whose first axes are the batches
    (``for x2`` None: the same as ``for x1``, with ``x2=None``), such as
    `Aggregate`'s ``pattern``; as host arrays, to be tiled with the inputs."""
    out = {}
    for k, v in kwargs.items():
        if not is_input_pair(v):
            continue
        p1 = np.asarray(v[0])
        p2 = p1 if v[1] is None else np.asarray(v[1])
        if p1.ndim and p2.ndim and p1.shape[0] == n1 and p2.shape[0] == n2:
            out[k] = (p1, p2)
    return out
