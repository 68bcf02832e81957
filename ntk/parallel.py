r"""Kernels of any size: tiled, memory-bounded, sharded over all devices.

``batch(kernel_fn)`` returns a function with the same call signature that
evaluates ``kernel_fn(x1, x2, *args, **kwargs)`` tile by tile. Unlike
neural-tangents' ``nt.batch``, nothing has to divide anything: ragged last
tiles are padded with copies of a real input (so any kernel stays finite on
them) and the padding is dropped from the result.

Work is split as follows. Rows of the output are taken in blocks of
:math:`\mathtt{tile} \cdot D` inputs, :math:`D` the number of devices; within a block each device
computes its ``tile`` rows against one column tile at a time via
`jax.shard_map` over a 1-D `jax.sharding.Mesh`. Finished tiles are copied into
one host array allocated once, at its final size, so peak memory is the
output plus a few tiles — the budget ``memory_bytes`` sets the tile size. For
``x2 = None`` only tiles on or above the diagonal are computed and the rest
mirrored (:math:`K` is symmetric), one tile at a time: transposed for
``(N1, N2)`` kernels, and for the spatial kernels of an `ntk.stax` network
with the batch axes swapped (and each spatial pair of the full layout,
``diagonal_spatial=False``). The spatial axes of another function's kernel
cannot be told from their shapes, so all of its tiles are computed.
Keyword values that are plain Python values (``diagonal_spatial=False``, a
``mask_constant``) are compiled into the tile step; arrays are passed to it.

With ``store_on_device=True`` (the default) that host array is handed to JAX
with `jax.device_put`. The CPU backend adopts a 64-byte aligned host buffer
without copying it (measured with jax 0.10: the `jax.Array` then points at
the NumPy buffer), so on CPU the output exists once; on GPU/TPU it is copied
to the device once and the host array is freed on return. Inputs are never
padded or copied as a whole: only the ragged last block is padded.

Several hosts: start every process with ``jax.distributed.initialize(...)``
(coordinator address, process count and id), then call the batched function
with the same inputs on every process. The mesh spans all devices of all
hosts (`jax.devices()`), each device computes its rows, and every process
receives the whole output. See README, "Several hosts".

Long runs (``checkpoint_dir=``). Every finished tile is written to
``checkpoint_dir/tile_I_J.npz`` atomically (a temporary file in the same
directory, flushed, then renamed over the name), with a SHA-256 checksum of
its arrays; ``manifest.json`` records the job: the inputs' shapes, dtype and
SHA-256, ``get``, the tile geometry and the kernel's name. A call with the
same job and directory loads the finished tiles instead of computing them,
so an interrupted run (killed, out of time) resumes where it stopped. A tile
file that cannot be read, has the wrong shape or dtype, or fails its
checksum is computed again; a directory whose manifest describes another job
is refused (ValueError). The first tile is always computed again and
compared with its stored copy, which catches a changed kernel behind an
unchanged name (other hyperparameters, say). Only process 0 writes.

Example:
  >>> import tempfile
  >>> import jax, jax.numpy as jnp
  >>> from ntk import parallel, stax
  >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
  >>> x = jax.random.normal(jax.random.PRNGKey(0), (10, 3))
  >>> kfn = parallel.batch(kernel_fn, memory_bytes=2**30)
  >>> k = kfn(x, None, get="ntk")       # (N, N) for any N
  >>> bool(jnp.allclose(k, kernel_fn(x, None, "ntk")))
  True
  >>> tiles = tempfile.mkdtemp()
  >>> kfn = parallel.batch(kernel_fn, 4, checkpoint_dir=tiles)
  >>> k = kfn(x, None, get="ntk")       # rerun after an interruption: resumes
  >>> bool(jnp.allclose(k, kernel_fn(x, None, "ntk")))
  True
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ntk import _checks
from ntk._tile_store import TileStore, manifest
from ntk.kernel import (
    GET_NAMES,
    Kernel,
    input_pairs_symmetric,
    is_input_pair,
    none_if_no_leaves,
    record_type,
)
from ntk.stax._internal import split_static_kwargs
from ntk.stax.layer import KernelFn, flatten_inputs

_DEFAULT_BUDGET = 2**30
# Working memory of a kernel evaluation relative to its output: the dual of an
# activation keeps a handful of arrays of the output's size alive at once.
_WORKSPACE_FACTOR = 16
# PJRT's CPU client adopts host buffers aligned to 64 bytes instead of copying
# them (measured: 8-, 16- and 32-byte aligned buffers are copied).
_ALIGNMENT = 64
# `get` not passed at all, as opposed to get=None.
_OMITTED = object()


def _check_memory_bytes(memory_bytes, where: str) -> int:
    if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, numbers.Real):
        raise TypeError(
            f"{where}: `memory_bytes` must be a number of bytes > 0 "
            f"(e.g. 2**30); got {type(memory_bytes).__name__} "
            f"{memory_bytes!r}."
        )
    if not (math.isfinite(memory_bytes) and memory_bytes >= 1):  # type: ignore[operator]
        raise ValueError(
            f"{where}: `memory_bytes` must be a finite number of bytes "
            f">= 1 (e.g. 2**30 for 1 GiB); got {memory_bytes!r}."
        )
    return int(memory_bytes)  # type: ignore[call-overload]  # a checked numbers.Real


def _aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data start is 64-byte aligned.

    NumPy aligns large arrays to 16 bytes only, and JAX's CPU backend copies
    such a buffer in `jax.device_put`; an aligned one it uses in place.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % _ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _several(x) -> bool:
    """Whether ``x`` is several inputs, as for stax's ``kernel_fn`` (a list or
    tuple of arrays, possibly nested, for a network starting with
    ``parallel``); nested lists of numbers are still one array-like."""
    return (
        isinstance(x, (list, tuple))
        and not hasattr(x, "_fields")
        and any(hasattr(leaf, "shape") for leaf in jax.tree_util.tree_leaves(x))
    )


def _host_inputs(x, name: str):
    """``x`` as host arrays (`_host_input`): one array, or several inputs
    nested as given, which must share their batch size."""
    if not _several(x):
        return _host_input(x, name)
    out = jax.tree_util.tree_map(lambda a: _host_input(a, name), x)
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree_util.tree_leaves(out)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"parallel.batch: the inputs of `{name}` must share their batch size "
            f"(axis 0); got shapes {_shapes(out)}."
        )
    return out


def _shapes(x):
    return jax.tree_util.tree_map(lambda a: tuple(a.shape), x)


def _n_rows(x) -> int:
    return jax.tree_util.tree_leaves(x)[0].shape[0]


def _one_row(x):
    """Shapes and dtypes of one row of (each of) the inputs ``x``."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((1,) + a.shape[1:], a.dtype), x)


def _host_input(x, name: str) -> np.ndarray:
    """``x`` as a host array of JAX's canonical dtype (float32 unless x64)."""
    if isinstance(x, (Kernel, dict)) or hasattr(x, "_fields"):
        if isinstance(x, Kernel):
            what = "a Kernel"
        elif hasattr(x, "_fields"):  # a batched result, such as Kernel(nngp, ntk)
            what = f"the namedtuple {type(x).__name__}{tuple(x._fields)}"
        else:
            what = "a dict of arrays"
        raise TypeError(
            f"parallel.batch: `{name}` must be an array of inputs, shape (batch, ...), "
            f"or a list or tuple of them; got {what}. Tiles are cut from input "
            "arrays only: call the unbatched kernel_fn on a Kernel."
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
    dtype = jax.dtypes.canonicalize_dtype(x.dtype)
    return x if x.dtype == dtype else x.astype(dtype)


def _sharded_rows(block, sharding):
    """(Each of) the host arrays ``block`` as a `jax.Array` split by rows over the mesh."""
    return jax.tree_util.tree_map(
        lambda b: jax.make_array_from_callback(b.shape, sharding, b.__getitem__), block
    )


def _take_rows(x, start: int, size: int):
    """Rows ``start:start+size`` of (each of) the inputs, padded with copies
    of the last real row."""

    def take(a):
        block = a[start : start + size]
        extra = size - block.shape[0]
        if extra <= 0:
            return block
        return np.concatenate([block, np.repeat(block[-1:], extra, axis=0)], axis=0)

    return jax.tree_util.tree_map(take, x)


def _is_get(get) -> bool:
    """Whether the third argument is a ``get`` (None, a name or names) rather
    than the first extra argument of a kernel function without one."""
    if get is None or isinstance(get, str):
        return True
    return isinstance(get, (tuple, list)) and bool(get) and all(isinstance(g, str) for g in get)


def _normalise_get(get):
    if get is None:
        return ("nngp", "ntk"), True
    names = (get,) if isinstance(get, str) else tuple(get)
    for g in names:
        if g not in ("nngp", "ntk"):
            raise ValueError(
                f"parallel.batch: `get` must name 'nngp' and/or "
                f"'ntk' (per-pair kernels); got {get!r}. "
                f"({[n for n in GET_NAMES if n not in ('nngp', 'ntk')]} "
                f"are per-input and need no tiling.)"
            )
    return names, not isinstance(get, str)


def _devices(device_count: int):
    devices = jax.devices()
    if isinstance(device_count, bool) or not isinstance(device_count, numbers.Integral):
        raise TypeError(
            f"parallel.batch: `device_count` must be an int (-1: all devices, "
            f"0: the first only); got {device_count!r}."
        )
    if device_count < -1:
        raise ValueError(
            f"parallel.batch: `device_count` must be -1 (all devices), 0 (the "
            f"first only) or a number of devices; got {device_count}."
        )
    if device_count == -1:
        return devices
    if device_count == 0:
        return devices[:1]
    if device_count > len(devices):
        raise ValueError(
            f"parallel.batch: `device_count` is {device_count} but "
            f"only {len(devices)} devices are visible."
        )
    return devices[:device_count]


def _input_shape(x, name: str) -> jax.ShapeDtypeStruct:
    """Shape and (canonical) dtype of an input of `choose_tile`, without
    copying arrays; lists and other array-likes are converted."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = np.asarray(x)
    if len(x.shape) < 1:
        raise ValueError(
            f"parallel.choose_tile: `{name}` must have a batch axis, shape "
            f"(batch, ...); got shape {tuple(x.shape)}."
        )
    return jax.ShapeDtypeStruct(tuple(x.shape), jax.dtypes.canonicalize_dtype(x.dtype))


def _input_shapes(x, name: str):
    """`_input_shape` of one input or of each of several."""
    if _several(x):
        return jax.tree_util.tree_map(lambda a: _input_shape(a, name), x)
    return _input_shape(x, name)


def choose_tile(
    kernel_fn: Callable, x1, x2, get: tuple, n_devices: int, memory_bytes: int, args=(), kwargs=None
) -> int:
    r"""Largest tile :math:`t` whose :math:`(t \times t)` evaluation fits the memory budget.

    The output of one input pair is measured with `jax.eval_shape` (it
    includes any spatial axes), and working memory is taken as
    ``_WORKSPACE_FACTOR`` times the output; half the budget is left for the
    tiles in flight:
    :math:`t = \big\lfloor \sqrt{\mathtt{memory\_bytes} / (2 \cdot D \cdot 16 \cdot
    \text{bytes per pair})} \big\rfloor`. At least 1, at most the larger input size.
    ``x1`` and ``x2`` may be any array-likes of shape ``(batch, ...)`` (only
    their shapes and dtypes are read); ``x2=None`` means ``x1``.

    Example:
      One float64 per pair of inputs (with ``jax_enable_x64``; in float32, 4 bytes,
      it is 90):
      :math:`t = \big\lfloor \sqrt{2^{20} / (2 \cdot 1 \cdot 16 \cdot 8)} \big\rfloor = 64`:

      >>> import numpy as np
      >>> from ntk import parallel, stax
      >>> kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1)).kernel_fn
      >>> x = np.ones((100, 3))
      >>> parallel.choose_tile(kernel_fn, x, x, ("ntk",), n_devices=1, memory_bytes=2**20)
      64
      >>> parallel.choose_tile(kernel_fn, x, x, ("ntk",), 1, 2**30)       # at most N
      100
    """
    memory_bytes = _check_memory_bytes(memory_bytes, "parallel.choose_tile")
    kwargs = kwargs or {}
    x1 = _input_shapes(x1, "x1")
    x2 = x1 if x2 is None else _input_shapes(x2, "x2")
    out = jax.eval_shape(
        lambda a, b: kernel_fn(a, b, get, *args, **kwargs), _one_row(x1), _one_row(x2)
    )
    per_pair = sum(
        math.prod(o.shape) * np.dtype(o.dtype).itemsize for o in jax.tree_util.tree_leaves(out)
    )
    per_device = memory_bytes / 2 / max(n_devices, 1)
    t = int(math.sqrt(per_device / (_WORKSPACE_FACTOR * per_pair)))
    return max(1, min(t, max(_n_rows(x1), _n_rows(x2))))


def batch(
    kernel_fn: Callable,
    batch_size: int = 0,
    device_count: int = -1,
    store_on_device: bool = True,
    *,
    memory_bytes: Optional[int] = None,
    progress: bool = False,
    checkpoint_dir=None,
) -> Callable:
    r"""Tile ``kernel_fn`` over its two batch axes and shard it over devices.

    ``batched(x1, x2)[a, b] = kernel_fn(x1[a:a+1], x2[b:b+1])[0, 0]`` for every
    pair, computed in tiles of at most :math:`\mathtt{batch\_size} \cdot D` rows ×
    ``batch_size`` columns. Peak memory is the output (once) plus the working memory of one
    step, which ``memory_bytes`` bounds.

    Args:
      kernel_fn: ``kernel_fn(x1, x2, get, *args, **kwargs)`` returning arrays
        (or a tuple of them) whose first two axes are ``(N1, N2)`` — an
        analytic `ntk.stax` kernel_fn or an empirical one (``*args`` then
        carries ``params``).
      batch_size: tile size (inputs per device per step); 0 picks it from
        ``memory_bytes``. Need not divide anything.
      device_count: devices to use; -1 all, 0 the first only.
      store_on_device: return `jax.Array` outputs (True) or NumPy arrays (False; the
        output then never has to fit in device memory).
      memory_bytes: budget in bytes for one step on all devices (default 1
        GiB); a number :math:`\ge 1`.
      progress: show a progress bar of pairs ``(a, b)`` done (with
        ``x2=None`` the pairs :math:`a \le b`), their rate and the time left;
        pairs of tiles loaded from ``checkpoint_dir`` count as done at the
        start and not in the rate.
      checkpoint_dir: None, or a directory (created if missing) where
        finished tiles are kept so that a rerun of the same job resumes
        after an interruption (module docstring, "Long runs").

    Returns:
      ``batched(x1, x2=None, get=None, *args, **kwargs)``; ``get=None`` returns
      a namedtuple with ``nngp`` and ``ntk``. A third argument that is not a
      ``get`` (a name or names) is passed on as the first of ``args`` to a
      ``kernel_fn`` without ``get``, such as ``empirical_ntk_fn(x1, x2,
      params)``, whose one array is returned, as neural-tangents' ``batch``
      does. With no third argument at all, a ``kernel_fn`` that is not an
      `ntk.stax` one and returns one array when called without ``get`` (an
      empirical kernel with its ``params`` bound by keyword, a kernel with its
      ``get`` bound by ``functools.partial``) is called without one too.
      ``x1`` and ``x2`` are arrays, or several inputs nested in lists or
      tuples (for a network starting with ``parallel``; ``x2`` nested as
      ``x1``, all inputs of one side sharing their batch size), cut into the
      same rows. A network with several outputs returns its kernels nested
      as the unbatched ``kernel_fn`` does. A `Kernel` is a TypeError (NT
      tiles that too).

    Raises:
      ValueError: ``batch_size`` not an int :math:`\ge 0`, ``memory_bytes``
        not a number :math:`\ge 1`, ``get`` not 'nngp'/'ntk', inputs of mismatched shapes,
        an empty ``x1`` or ``x2`` (zero rows: there is no kernel to tile, and
        an empty result is more often a bug upstream than intended),
        a ``checkpoint_dir`` holding another job's tiles.
      TypeError: ``checkpoint_dir`` neither None nor a path.

    Example:
      Tile sizes need not divide the input sizes (5 and 3 here):

      >>> import numpy as np
      >>> from ntk import parallel, stax
      >>> x1, x2 = np.arange(10.).reshape(5, 2), np.ones((3, 2))
      >>> kfn = parallel.batch(stax.Dense(1).kernel_fn, batch_size=2)
      >>> k = kfn(x1, x2, get="nngp")
      >>> k.shape, bool(np.allclose(k, x1 @ x2.T / 2))
      ((5, 3), True)
    """
    if not callable(kernel_fn):
        raise TypeError(
            "parallel.batch: `kernel_fn` must be a function kernel_fn(x1, x2, get, "
            f"...), e.g. a layer's .kernel_fn; got {type(kernel_fn).__name__}."
        )
    if getattr(kernel_fn, "known_pairwise", None) is False:
        raise ValueError(
            f"parallel.batch: the kernel of {getattr(kernel_fn, 'name', 'kernel_fn')} "
            "is not a function of each pair of inputs alone (Dropout's kernel of "
            "an input with itself differs from that of a copy), so tiles would "
            "change it; call kernel_fn on all the inputs at once."
        )
    if isinstance(batch_size, bool) or not (isinstance(batch_size, int) and batch_size >= 0):
        raise ValueError(f"parallel.batch: `batch_size` must be an int >= 0; got {batch_size!r}.")
    devices = _devices(device_count)
    mesh = Mesh(np.asarray(devices), ("d",))
    n_dev = len(devices)
    budget = (
        _DEFAULT_BUDGET
        if memory_bytes is None
        else _check_memory_bytes(memory_bytes, "parallel.batch")
    )
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(
            f"parallel.batch: `checkpoint_dir` must be None or a path; "
            f"got {type(checkpoint_dir).__name__}."
        )

    compiled: dict = {}

    def without_get(a, b, _get, *rest, **kw):
        # NT's `batch` also wraps kernel functions that take no `get`, such
        # as empirical_ntk_fn(x1, x2, params): one array per pair.
        return kernel_fn(a, b, *rest, **kw)

    def _step_fn(get, nargs, kw_keys, getless, paired=(), static=()):
        key = (get, nargs, kw_keys, getless, paired, static)
        fn = without_get if getless else kernel_fn
        if key not in compiled:

            def local(a, b, *rest):
                args, kw_vals = rest[:nargs], rest[nargs:]
                out = fn(a, b, get, *args, **dict(static), **dict(zip(kw_keys, kw_vals)))
                return tuple(jax.tree_util.tree_leaves(out))

            def step(a, b, *rest):
                # A per-input pair (rows of x1, rows of x2) is split like (a, b).
                pair_spec = (PartitionSpec("d"), PartitionSpec())
                kw_specs = tuple(pair_spec if k in paired else PartitionSpec() for k in kw_keys)
                specs = (
                    (PartitionSpec("d"), PartitionSpec()) + (PartitionSpec(),) * nargs + kw_specs
                )
                return jax.shard_map(
                    local, mesh=mesh, in_specs=specs, out_specs=PartitionSpec("d"), check_vma=False
                )(a, b, *rest)

            # With several processes each holds only its devices' rows, so the
            # tile is gathered to every process (an all-gather over the mesh).
            replicated = NamedSharding(mesh, PartitionSpec())
            compiled[key] = jax.jit(
                step, out_shardings=replicated if jax.process_count() > 1 else None
            )
        return compiled[key]

    def finish(outs, out_tree, names, as_tuple):
        if store_on_device:
            # On CPU this adopts the aligned host buffer instead of copying it.
            outs = [jax.device_put(o) for o in outs]
        result = jax.tree_util.tree_unflatten(out_tree, outs)
        if type(result) is tuple and len(result) == len(names):  # a plain tuple per name
            result = record_type("Kernel", tuple(names))(*result)
        if as_tuple:
            return result
        # One name: its array, for each output of a network with several.
        return jax.tree_util.tree_map(
            lambda r: r[0] if hasattr(r, "_fields") else r,
            result,
            is_leaf=lambda r: hasattr(r, "_fields"),
        )

    def batched(x1, x2=None, get=_OMITTED, *args, **kwargs):
        omitted = get is _OMITTED
        if omitted:
            get = None
        getless = not _is_get(get)
        if getless:
            args, get = (get,) + args, "ntk"  # the label of the one output
        names, as_tuple = _normalise_get(get)
        fn = without_get if getless else kernel_fn
        x1 = _host_inputs(x1, "x1")
        x2 = none_if_no_leaves(x2)
        symmetric = x2 is None
        x2 = x1 if symmetric else _host_inputs(x2, "x2")
        leaves1, leaves2 = jax.tree_util.tree_leaves(x1), jax.tree_util.tree_leaves(x2)
        # Lists and tuples nest alike, as for the stax kernel_fn.
        nested_alike = flatten_inputs(x1)[1] == flatten_inputs(x2)[1]
        if not nested_alike or any(
            a.ndim < 2 or b.shape[1:] != a.shape[1:] for a, b in zip(leaves1, leaves2)
        ):
            raise ValueError(
                f"parallel.batch: `x1` and `x2` must have shape "
                f"(batch, ...) and agree beyond the batch axis; got "
                f"{_shapes(x1)} and {_shapes(x2)}."
            )
        for name, x in [("x1", a) for a in leaves1] + [("x2", b) for b in leaves2]:
            if x.shape[0] == 0:
                raise ValueError(
                    f"parallel.batch: `{name}` must have at least one row "
                    f"(input) along the batch axis; got shape {tuple(x.shape)}."
                )
            # Tiles run compiled, where kernel_fn cannot check its inputs;
            # NaN and inf are valid only as mask constants.
            if "mask_constant" not in kwargs and jnp.issubdtype(x.dtype, jnp.inexact):
                bad = int(x.size - np.isfinite(x).sum())
                if bad:
                    raise ValueError(
                        f"parallel.batch: `{name}` must be finite; got {bad} "
                        f"NaN/inf entries of {x.size}."
                    )
        n1, n2 = _n_rows(x1), _n_rows(x2)
        symmetric = symmetric and input_pairs_symmetric(kwargs)
        paired = _per_input_pairs(kwargs, n1, n2)
        kwargs = {**kwargs, **paired}
        first = {k: (v[0][:1], v[1][:1]) for k, v in paired.items()}
        if omitted and not getless and not isinstance(kernel_fn, KernelFn):
            # NT's batch passes on exactly the arguments it is given: a kernel
            # function without `get` (an empirical one with its parameters
            # bound, kernel_fn(x1, x2) of one array) is called without one.
            if _one_array_without_get(kernel_fn, x1, x2, args, {**kwargs, **first}):
                getless, get = True, "ntk"
                names, as_tuple = _normalise_get(get)
                fn = without_get
        pair = jax.eval_shape(
            lambda a, b: fn(a, b, names, *args, **{**kwargs, **first}),
            _one_row(x1),
            _one_row(x2),
        )
        if getless and not hasattr(pair, "shape"):
            raise ValueError(
                "parallel.batch: a kernel_fn called without `get` must return one "
                f"(N1, N2, ...) array; got {type(pair).__name__}."
            )
        # Several outputs (a network ending in `parallel`) are several trees
        # of kernels: every leaf is tiled, and the result has the same tree.
        pair, out_tree = jax.tree_util.tree_flatten(pair)
        outs = [_aligned_empty((n1, n2) + o.shape[2:], o.dtype) for o in pair]
        keys = list(names) if len(outs) == len(names) else [f"out{i}" for i in range(len(outs))]
        swap = _side_swap(kernel_fn, pair, x1, args, {**kwargs, **first}) if symmetric else None
        symmetric = swap is not None
        tile = batch_size or choose_tile(
            fn, x1, x2, names, n_dev, budget, args, {**kwargs, **first}
        )
        rows = tile * n_dev  # inputs per row block
        cols = tile
        n_blocks, n_cols = -(-n1 // rows), -(-n2 // cols)
        traced, static = split_static_kwargs(kwargs)
        if static is None:  # an unhashable value: every keyword is passed
            traced, static = kwargs, ()
        kw_keys = tuple(sorted(traced))
        step = _step_fn(
            names if not getless else get,
            len(args),
            kw_keys,
            getless,
            tuple(sorted(paired)),
            static,
        )
        extra = tuple(args) + tuple(kwargs[k] for k in kw_keys)
        kw_at = {k: len(args) + kw_keys.index(k) for k in paired}
        if jax.process_count() > 1:
            extra = jax.tree_util.tree_map(np.asarray, extra)
        row_sharding = NamedSharding(mesh, PartitionSpec("d"))

        todo = [
            (i, j)
            for i in range(n_blocks)
            for j in range(n_cols)
            if not symmetric or (j + 1) * cols > i * rows
        ]

        def bounds(i, j):
            return (i * rows, min((i + 1) * rows, n1), j * cols, min((j + 1) * cols, n2))

        store = None
        if checkpoint_dir is not None:
            store = TileStore(
                checkpoint_dir,
                manifest(
                    kernel_fn,
                    x1,
                    None if x2 is x1 else x2,
                    names,
                    rows,
                    cols,
                    symmetric,
                    args,
                    kwargs,
                ),
            )
        loaded = set()
        if store is not None:
            for t in todo[1:]:
                r0, r1, c0, c1 = bounds(*t)
                tile = store.load(
                    t,
                    [(r1 - r0, c1 - c0) + o.shape[2:] for o in outs],
                    [o.dtype for o in outs],
                    keys,
                )
                if tile is not None:
                    for o, v in zip(outs, tile):
                        o[r0:r1, c0:c1] = v
                    loaded.add(t)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            def count(t):
                r0, r1, c0, c1 = bounds(*t)
                return _pairs_in(r0, r1, c0, c1, symmetric)

            bar = tqdm(
                total=sum(count(t) for t in todo),
                unit="pair",
                initial=sum(count(t) for t in loaded),
                desc="kernel pairs",
                smoothing=0.05,
            )
        block_i, a = -1, None
        for i, j in todo:
            if (i, j) in loaded:
                continue
            if i != block_i:
                a = _sharded_rows(_take_rows(x1, i * rows, rows), row_sharding)
                firsts = {}
                for k, (p1, _) in paired.items():
                    firsts[k] = _sharded_rows(_take_rows(p1, i * rows, rows), row_sharding)
                block_i = i
            tile_extra = list(extra)
            for k, (_, p2) in paired.items():
                tile_extra[kw_at[k]] = (firsts[k], _take_rows(p2, j * cols, cols))
            res = step(a, _take_rows(x2, j * cols, cols), *tile_extra)
            r0, r1, c0, c1 = bounds(i, j)
            done = [np.asarray(r)[: r1 - r0, : c1 - c0] for r in res]
            del res
            if store is not None:
                store.save((i, j), done, keys, first=(i, j) == todo[0])
            for o, v in zip(outs, done):
                o[r0:r1, c0:c1] = v
            if bar is not None:
                bar.update(_pairs_in(r0, r1, c0, c1, symmetric))
        if bar is not None:
            bar.close()
        if swap is not None:
            for o in outs:
                _mirror_lower(o, rows, cols, swap)
        return finish(outs, out_tree, names, as_tuple)

    return batched


def _one_array_without_get(kernel_fn, x1, x2, args, kwargs) -> bool:
    """Whether ``kernel_fn(x1, x2, *args, **kwargs)``, with no ``get``, returns
    one array (judged on one row of each input, without computing it); False
    when that call is a TypeError (a ``kernel_fn`` that needs its ``get``)."""
    try:
        out = jax.eval_shape(
            lambda a, b: kernel_fn(a, b, *args, **kwargs),
            _one_row(x1),
            _one_row(x2),
        )
    except TypeError:
        return False
    return isinstance(out, jax.ShapeDtypeStruct)


def _per_input_pairs(kwargs: dict, n1: int, n2: int) -> dict:
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


def _side_swap(kernel_fn, pair, x1, args, kwargs) -> Optional[tuple]:
    """The axes permutation taking the kernel of pair (b, a) to that of (a, b),
    or None when it is not known (then nothing is mirrored).

    Scalar per-pair kernels, shape ``(N1, N2)``, transpose. Spatial axes
    cannot be told apart by their shapes alone, but a `KernelFn` says how it
    stores them: once per position (``diagonal_spatial``, ``(N1, N2, H, W)``:
    only the batch axes swap) or in pairs (``(N1, N2, H1, H2, W1, W2)``:
    each pair swaps too).
    """
    ndim = {len(o.shape) for o in pair}
    if ndim == {2}:
        return (1, 0)
    if len(ndim) != 1 or not isinstance(kernel_fn, KernelFn):
        return None
    try:
        k = jax.eval_shape(
            lambda a: kernel_fn(a, None, None, *args, **kwargs),
            _one_row(x1),
        )
    except (TypeError, ValueError):
        return None
    if not isinstance(k, Kernel) or len(k.nngp.shape) != ndim.pop():
        return None
    rest = range(2, len(k.nngp.shape))
    if k.diagonal_spatial:
        return (1, 0, *rest)
    return (1, 0, *(a + 1 if a % 2 == 0 else a - 1 for a in rest))


def _mirror_lower(o: np.ndarray, rows: int, cols: int, swap: tuple = (1, 0)):
    """Fill entries below the computed band from their transposes (axes
    permuted by ``swap``, `_side_swap`).

    Tile (i, j) was computed iff its columns reach the block's first row, so
    entry (r, c) is missing exactly when c < start-of-block(r). The copy goes
    one ``rows × cols`` tile at a time: source and destination lie in the same
    array, so NumPy buffers the source, and a whole strip would cost a
    temporary of ``rows × N`` entries.
    """
    n = o.shape[0]
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        c_end = (r0 // cols) * cols  # first computed column tile
        for c0 in range(0, c_end, cols):
            c1 = min(c0 + cols, c_end)
            o[r0:r1, c0:c1] = o[c0:c1, r0:r1].transpose(swap)
        # Tiles on the diagonal were computed with both orders of a pair, which
        # round differently (a float32 kernel by ~1e-7): their part below the
        # diagonal is replaced by the transpose too, so K is exactly symmetric.
        if c_end < r1:
            below = np.arange(r0, r1)[:, None] > np.arange(c_end, r1)[None, :]
            block = o[r0:r1, c_end:r1]
            block[below] = o[c_end:r1, r0:r1].transpose(swap)[below]


def _pairs_in(r0: int, r1: int, c0: int, c1: int, symmetric: bool) -> int:
    """Pairs ``(a, b)`` of a tile that the output needs (``a ≤ b`` if symmetric)."""
    if not symmetric:
        return (r1 - r0) * (c1 - c0)
    rows = np.arange(r0, r1)
    return int(np.sum(np.clip(c1 - np.maximum(rows, c0), 0, None)))
