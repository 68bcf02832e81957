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
A `Kernel` given as the input is cut likewise: each tile gets the rows and
columns of its per-pair arrays and the rows (``x1``) and columns (``x2``) of
its per-input ones.

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

from ntk import _tile_inputs
from ntk._tile_store import TileStore, manifest
from ntk.kernel import (
    GET_NAMES,
    Kernel,
    input_pairs_symmetric,
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


def _sharded_rows(block, sharding):
    """(Each of) the host arrays ``block`` as a `jax.Array` split by rows over the mesh."""
    return jax.tree_util.tree_map(
        lambda b: jax.make_array_from_callback(b.shape, sharding, b.__getitem__), block
    )


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
    if _tile_inputs.several(x):
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
        lambda a, b: kernel_fn(a, b, get, *args, **kwargs),
        _tile_inputs.one_row(x1),
        _tile_inputs.one_row(x2),
    )
    return _tile_for(
        out, max(_tile_inputs.n_rows(x1), _tile_inputs.n_rows(x2)), n_devices, memory_bytes
    )


def _tile_for(out, n_max: int, n_devices: int, memory_bytes: int) -> int:
    """`choose_tile` from the output ``out`` of one pair of inputs (shapes)."""
    per_pair = sum(
        math.prod(o.shape) * np.dtype(o.dtype).itemsize for o in jax.tree_util.tree_leaves(out)
    )
    per_device = memory_bytes / 2 / max(n_devices, 1)
    t = int(math.sqrt(per_device / (_WORKSPACE_FACTOR * per_pair)))
    return max(1, min(t, n_max))


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
      ``batched(x1, x2=None, get=None, *args, **kwargs)``. With ``get=None`` (or
      no ``get``) an `ntk.stax` kernel_fn gives its whole `Kernel`, as the
      unbatched call does: the per-pair arrays (``nngp``, ``ntk``) tiled, the
      per-input ones (``cov1``, ``cov2``, masks) gathered from the tiles'
      rows and columns; other kernel functions give a namedtuple with ``nngp``
      and ``ntk``. A third argument that is not a
      ``get`` (a name or names) is passed on as the first of ``args`` to a
      ``kernel_fn`` without ``get``, such as ``empirical_ntk_fn(x1, x2,
      params)``, whose one array is returned, as neural-tangents' ``batch``
      does. With no third argument at all, a ``kernel_fn`` that is not an
      `ntk.stax` one is called without ``get`` too when that call returns
      arrays (an empirical kernel with its ``params`` bound by keyword, a
      kernel with its ``get`` bound by ``functools.partial``), nested as it
      nests them, or Kernels (a jitted stax kernel_fn), returned whole.
      ``x1`` and ``x2`` are arrays, or several inputs nested in lists or
      tuples (for a network starting with ``parallel``; ``x2`` nested as
      ``x1``, all inputs of one side sharing their batch size), cut into the
      same rows. A network with several outputs returns its kernels nested
      as the unbatched ``kernel_fn`` does. ``x1`` may also be a `Kernel`, or
      several nested in lists or tuples (then ``x2`` is None), such as a
      batched call's output: their arrays are cut into the tiles' Kernels,
      so batched pieces of a network compose,
      ``batch(readout)(batch(block)(x))`` equal to the batched
      ``serial(block, readout)``, as with neural-tangents' ``batch``.

    Raises:
      ValueError: ``batch_size`` not an int :math:`\ge 0`, ``memory_bytes``
        not a number :math:`\ge 1`, ``get`` not 'nngp'/'ntk', inputs of mismatched shapes,
        an empty ``x1`` or ``x2`` (zero rows: there is no kernel to tile, and
        an empty result is more often a bug upstream than intended),
        a ``checkpoint_dir`` holding another job's tiles.
      TypeError: ``checkpoint_dir`` neither None nor a path; Kernels as
        ``x1`` with an ``x2``, or mixed with arrays, or as ``x2``.

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

    def _call(getless, source):
        """``kernel_fn`` as the tiles call it: ``(a, b, get, *args, **kwargs)``."""

        def call(a, b, get, *args, **kw):
            if source is not None:
                # A tile of Kernel inputs: a, b are their cut arrays (`_tile_inputs`).
                a, b = _tile_inputs.tile_kernel(source, a, b), None
            if getless:
                # NT's `batch` also wraps kernel functions that take no `get`,
                # such as empirical_ntk_fn(x1, x2, params): one array per pair.
                return kernel_fn(a, b, *args, **kw)
            return kernel_fn(a, b, get, *args, **kw)

        return call

    def _step_fn(get, nargs, kw_keys, getless, paired=(), static=(), source=None, roles=()):
        key = (get, nargs, kw_keys, getless, paired, static, source, roles)
        fn = _call(getless, source)
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
                # Arrays per x2 input (a Kernel's cov2) are the same on every
                # device, which holds all the columns.
                out_specs = tuple(
                    PartitionSpec() if r == "col" else PartitionSpec("d") for r in roles
                )
                return jax.shard_map(
                    local, mesh=mesh, in_specs=specs, out_specs=out_specs, check_vma=False
                )(a, b, *rest)

            # With several processes each holds only its devices' rows, so the
            # tile is gathered to every process (an all-gather over the mesh).
            replicated = NamedSharding(mesh, PartitionSpec())
            compiled[key] = jax.jit(
                step, out_shardings=replicated if jax.process_count() > 1 else None
            )
        return compiled[key]

    def finish(outs, out_tree, names, as_tuple, whole=None):
        if store_on_device:
            # On CPU this adopts the aligned host buffer instead of copying it.
            outs = [jax.device_put(o) for o in outs]
        result = jax.tree_util.tree_unflatten(out_tree, outs)
        if whole is not None:  # Kernel objects: (N1, N2, x1 is x2)
            return _tile_inputs.finish(result, *whole)
        if as_tuple is None:  # nested as kernel_fn nests them
            return result
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
        # A stax kernel_fn's get=None is its whole Kernel, tiled field by field.
        whole = get is None and not getless and isinstance(kernel_fn, KernelFn)
        x2 = none_if_no_leaves(x2)
        if _tile_inputs.holds_kernels(x2):
            raise TypeError(
                "parallel.batch: `x2` must be input arrays; got Kernels, which are "
                "tiled only as `x1`, with x2=None (a Kernel holds both inputs' "
                "covariances)."
            )
        if _tile_inputs.holds_kernels(x1):
            if x2 is not None:
                raise TypeError(
                    f"parallel.batch: `x2` must be None when `x1` is a Kernel (it "
                    f"holds both inputs' covariances); got {type(x2).__name__}."
                )
            kernels = _tile_inputs.KernelSource(x1, _tile_inputs.canonical)
            symmetric = kernels.x1_is_x2 and input_pairs_symmetric(kwargs)
            return tile_all(
                kernels, symmetric, omitted, getless, whole, names, as_tuple, args, kwargs
            )
        x1 = _tile_inputs.host_inputs(x1, "x1")
        symmetric = x2 is None
        x2 = x1 if symmetric else _tile_inputs.host_inputs(x2, "x2")
        leaves1, leaves2 = jax.tree_util.tree_leaves(x1), jax.tree_util.tree_leaves(x2)
        # Lists and tuples nest alike, as for the stax kernel_fn.
        nested_alike = flatten_inputs(x1)[1] == flatten_inputs(x2)[1]
        if not nested_alike or any(
            a.ndim < 2 or b.shape[1:] != a.shape[1:] for a, b in zip(leaves1, leaves2)
        ):
            raise ValueError(
                f"parallel.batch: `x1` and `x2` must have shape "
                f"(batch, ...) and agree beyond the batch axis; got "
                f"{_tile_inputs.shapes(x1)} and {_tile_inputs.shapes(x2)}."
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
        src = _tile_inputs.ArraySource(x1, x2)
        symmetric = symmetric and input_pairs_symmetric(kwargs)
        return tile_all(src, symmetric, omitted, getless, whole, names, as_tuple, args, kwargs)

    def tile_all(src, symmetric, omitted, getless, whole, names, as_tuple, args, kwargs):
        """Every tile of ``src`` (`ntk._tile_inputs`), assembled."""
        n1, n2 = src.n1, src.n2
        paired = _tile_inputs.per_input_pairs(kwargs, n1, n2)
        kwargs = {**kwargs, **paired}
        first = {k: (v[0][:1], v[1][:1]) for k, v in paired.items()}
        if omitted and not isinstance(kernel_fn, KernelFn):
            # NT's batch passes on exactly the arguments it is given: a kernel
            # function called without `get` (an empirical one with its
            # parameters bound, a jitted stax kernel_fn) is called without one
            # when that gives one array or Kernels.
            out = _output_without_get(_call(True, src.meta), src, args, {**kwargs, **first})
            if _tile_inputs.holds_kernels(out):
                getless, whole = True, True
            elif out is not None and all(
                isinstance(o, jax.ShapeDtypeStruct) for o in jax.tree_util.tree_leaves(out)
            ):
                # Its kernels come back nested as that call nests them.
                getless, names, as_tuple = True, ("ntk",), None
        call_get = None if whole else names
        fn = _call(getless, src.meta)
        pair = jax.eval_shape(
            lambda a, b: fn(a, b, call_get, *args, **{**kwargs, **first}), *src.one_row()
        )
        if getless and as_tuple is not None and not whole and not hasattr(pair, "shape"):
            raise ValueError(
                "parallel.batch: a kernel_fn called without `get` must return one "
                f"(N1, N2, ...) array; got {type(pair).__name__}."
            )
        # Several outputs (a network ending in `parallel`) are several trees
        # of kernels: every leaf is tiled, and the result has the same tree.
        roles = _tile_inputs.leaf_roles(pair)
        pair, out_tree = jax.tree_util.tree_flatten(pair)
        outs = [
            _aligned_empty(_tile_inputs.output_shape(o.shape, r, n1, n2), o.dtype)
            for o, r in zip(pair, roles)
        ]
        keys = list(names) if len(outs) == len(names) else [f"out{i}" for i in range(len(outs))]
        per_pair = [o for o, r in zip(pair, roles) if r == "pair"]
        swap = None
        if symmetric:
            swap = _side_swap(kernel_fn, per_pair, src.probe(), args, {**kwargs, **first})
        symmetric = swap is not None
        tile = batch_size or _tile_for(pair, max(n1, n2), n_dev, budget)
        rows = tile * n_dev  # inputs per row block
        cols = tile
        n_blocks, n_cols = -(-n1 // rows), -(-n2 // cols)
        traced, static = split_static_kwargs(kwargs)
        if static is None:  # an unhashable value: every keyword is passed
            traced, static = kwargs, ()
        kw_keys = tuple(sorted(traced))
        step = _step_fn(
            call_get,
            len(args),
            kw_keys,
            getless,
            tuple(sorted(paired)),
            static,
            src.meta,
            roles,
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

        def parts(arrays, i, j):
            """Each output's part in tile (i, j), as a view of ``arrays``."""
            r0, r1, c0, c1 = bounds(i, j)
            return [
                _tile_inputs.cut(o, r, slice(r0, r1), slice(c0, c1)) for o, r in zip(arrays, roles)
            ]

        store = None
        if checkpoint_dir is not None:
            x1_id, x2_id, note = src.manifest_inputs()
            store = TileStore(
                checkpoint_dir,
                manifest(
                    kernel_fn,
                    x1_id,
                    x2_id,
                    ("Kernel",) if whole else names,
                    rows,
                    cols,
                    symmetric,
                    args,
                    kwargs,
                    note,
                ),
            )
        loaded = set()
        if store is not None:
            for t in todo[1:]:
                dest = parts(outs, *t)
                tile = store.load(t, [d.shape for d in dest], [o.dtype for o in outs], keys)
                if tile is not None:
                    for d, v in zip(dest, tile):
                        d[...] = v
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
            if i != block_i or src.rows_by_column:
                a = _sharded_rows(src.rows(i * rows, rows, j * cols, cols), row_sharding)
            b = src.cols(j * cols, cols)
            if i != block_i:
                firsts = {}
                for k, (p1, _) in paired.items():
                    firsts[k] = _sharded_rows(
                        _tile_inputs.take_rows(p1, i * rows, rows), row_sharding
                    )
                block_i = i
            tile_extra = list(extra)
            for k, (_, p2) in paired.items():
                tile_extra[kw_at[k]] = (firsts[k], _tile_inputs.take_rows(p2, j * cols, cols))
            res = step(a, b, *tile_extra)
            r0, r1, c0, c1 = bounds(i, j)
            # Tile (i, j) of the padded tile's own arrays: rows from 0, columns from 0.
            whole_tile = [np.asarray(r) for r in res]
            del res
            done = [
                _tile_inputs.cut(v, r, slice(0, r1 - r0), slice(0, c1 - c0))
                for v, r in zip(whole_tile, roles)
            ]
            if store is not None:
                store.save((i, j), done, keys, first=(i, j) == todo[0])
            for d, v in zip(parts(outs, i, j), done):
                d[...] = v
            if bar is not None:
                bar.update(_pairs_in(r0, r1, c0, c1, symmetric))
        if bar is not None:
            bar.close()
        if swap is not None:
            for o, r in zip(outs, roles):
                if r == "pair":
                    _mirror_lower(o, rows, cols, swap)
        return finish(outs, out_tree, names, as_tuple, (n1, n2, src.x1_is_x2) if whole else None)

    return batched


def _output_without_get(call, src, args, kwargs):
    """Shapes of ``call(a, b, None, *args, **kwargs)`` on the first pair of
    ``src`` (a ``call`` that drops ``get``), or None when that call is a
    TypeError (a ``kernel_fn`` that needs its ``get``)."""
    try:
        return jax.eval_shape(lambda a, b: call(a, b, None, *args, **kwargs), *src.one_row())
    except TypeError:
        return None


def _side_swap(kernel_fn, pair, probe, args, kwargs) -> Optional[tuple]:
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
        k = jax.eval_shape(lambda a: kernel_fn(a, None, None, *args, **kwargs), probe)
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
