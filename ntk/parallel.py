"""Kernels of any size: tiled, memory-bounded, sharded over all devices.

`batch(kernel_fn)` returns a function with the same call signature that
evaluates ``kernel_fn(x1, x2, *args, **kwargs)`` tile by tile. Unlike
neural-tangents' ``nt.batch``, nothing has to divide anything: ragged last
tiles are padded with copies of a real input (so any kernel stays finite on
them) and the padding is dropped from the result.

Work is split as follows. Rows of the output are taken in blocks of
``tile · D`` inputs, ``D`` the number of devices; within a block each device
computes its ``tile`` rows against one column tile at a time via
`jax.shard_map` over a 1-D `jax.sharding.Mesh`. Finished tiles are copied into
one preallocated host array, so peak memory is the output plus a few tiles —
the budget ``memory_bytes`` sets the tile size. For ``x2 = None`` only tiles on
or above the diagonal are computed and the rest mirrored (K is symmetric).

Several hosts: start every process with ``jax.distributed.initialize(...)``
(coordinator address, process count and id), then call the batched function
with the same inputs on every process. The mesh spans all devices of all
hosts (`jax.devices()`), each device computes its rows, and every process
receives the whole output. See README, "Several hosts".

Example:
  >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
  >>> kfn = parallel.batch(kernel_fn, memory_bytes=2**30)
  >>> k = kfn(x, None, get="ntk")       # (N, N) for any N
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ntk.kernel import GET_NAMES

_DEFAULT_BUDGET = 2 ** 30
# Working memory of a kernel evaluation relative to its output: the dual of an
# activation keeps a handful of arrays of the output's size alive at once.
_WORKSPACE_FACTOR = 16


def _pad_rows(x: np.ndarray | jax.Array, n: int):
    """Pad axis 0 to ``n`` rows with copies of the last row."""
    extra = n - x.shape[0]
    if extra <= 0:
        return x
    return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)], axis=0)


def _normalise_get(get):
    if get is None:
        return ("nngp", "ntk"), True
    names = (get,) if isinstance(get, str) else tuple(get)
    for g in names:
        if g not in ("nngp", "ntk"):
            raise ValueError(f"parallel.batch: `get` must name 'nngp' and/or "
                             f"'ntk' (per-pair kernels); got {get!r}. "
                             f"({[n for n in GET_NAMES if n not in ('nngp', 'ntk')]} "
                             f"are per-input and need no tiling.)")
    return names, not isinstance(get, str)


def _devices(device_count: int):
    devices = jax.devices()
    if device_count is None or device_count < 0:
        return devices
    if device_count == 0:
        return devices[:1]
    if device_count > len(devices):
        raise ValueError(f"parallel.batch: `device_count` is {device_count} but "
                         f"only {len(devices)} devices are visible.")
    return devices[:device_count]


def choose_tile(kernel_fn: Callable, x1, x2, get: tuple, n_devices: int,
                memory_bytes: int, args=(), kwargs=None) -> int:
    """Largest tile ``t`` whose (t × t) evaluation fits the memory budget.

    The output of one input pair is measured with `jax.eval_shape` (it
    includes any spatial axes), and working memory is taken as
    ``_WORKSPACE_FACTOR`` times the output; half the budget is left for the
    tiles in flight. At least 1, at most the larger input size.
    """
    kwargs = kwargs or {}
    out = jax.eval_shape(lambda a, b: kernel_fn(a, b, get, *args, **kwargs),
                         jax.ShapeDtypeStruct((1,) + x1.shape[1:], x1.dtype),
                         jax.ShapeDtypeStruct((1,) + x2.shape[1:], x2.dtype))
    per_pair = sum(math.prod(o.shape) * np.dtype(o.dtype).itemsize
                   for o in jax.tree_util.tree_leaves(out))
    per_device = memory_bytes / 2 / max(n_devices, 1)
    t = int(math.sqrt(per_device / (_WORKSPACE_FACTOR * per_pair)))
    return max(1, min(t, max(x1.shape[0], x2.shape[0])))


def batch(kernel_fn: Callable, batch_size: int = 0, device_count: int = -1,
          store_on_device: bool = True, *, memory_bytes: Optional[int] = None,
          progress: bool = False) -> Callable:
    """Tile ``kernel_fn`` over its two batch axes and shard it over devices.

    Args:
      kernel_fn: ``kernel_fn(x1, x2, get, *args, **kwargs)`` returning arrays
        (or a tuple of them) whose first two axes are ``(N1, N2)`` — an
        analytic `ntk.stax` kernel_fn or an empirical one (``*args`` then
        carries ``params``).
      batch_size: tile size (inputs per device per step); 0 picks it from
        ``memory_bytes``. Need not divide anything.
      device_count: devices to use; -1 all, 0 the first only.
      store_on_device: return `jax.Array`s (True) or NumPy arrays (False; the
        output then never has to fit in device memory).
      memory_bytes: budget for one step on all devices (default 1 GiB).
      progress: show a progress bar over tiles.

    Returns:
      ``batched(x1, x2=None, get=None, *args, **kwargs)``; ``get=None`` returns
      a namedtuple with ``nngp`` and ``ntk``.
    """
    if not (isinstance(batch_size, int) and batch_size >= 0):
        raise ValueError(f"parallel.batch: `batch_size` must be an int >= 0; got "
                         f"{batch_size!r}.")
    devices = _devices(device_count)
    mesh = Mesh(np.asarray(devices), ("d",))
    n_dev = len(devices)
    budget = _DEFAULT_BUDGET if memory_bytes is None else int(memory_bytes)

    compiled: dict = {}

    def _step_fn(get, nargs, kw_keys):
        key = (get, nargs, kw_keys)
        if key not in compiled:
            def local(a, b, *rest):
                args, kw_vals = rest[:nargs], rest[nargs:]
                out = kernel_fn(a, b, get, *args, **dict(zip(kw_keys, kw_vals)))
                return tuple(out) if isinstance(get, tuple) else (out,)

            def step(a, b, *rest):
                specs = (PartitionSpec("d"), PartitionSpec()) + (PartitionSpec(),) * len(rest)
                return jax.shard_map(local, mesh=mesh, in_specs=specs,
                                     out_specs=PartitionSpec("d"),
                                     check_vma=False)(a, b, *rest)

            # With several processes each holds only its devices' rows, so the
            # tile is gathered to every process (an all-gather over the mesh).
            replicated = NamedSharding(mesh, PartitionSpec())
            compiled[key] = jax.jit(
                step, out_shardings=replicated if jax.process_count() > 1 else None)
        return compiled[key]

    def batched(x1, x2=None, get=None, *args, **kwargs):
        names, as_tuple = _normalise_get(get)
        x1 = jnp.asarray(x1)
        symmetric = x2 is None
        x2 = x1 if symmetric else jnp.asarray(x2)
        if x1.ndim < 2 or x2.shape[1:] != x1.shape[1:]:
            raise ValueError(f"parallel.batch: `x1` and `x2` must have shape "
                             f"(batch, ...) and agree beyond the batch axis; got "
                             f"{tuple(x1.shape)} and {tuple(x2.shape)}.")
        n1, n2 = x1.shape[0], x2.shape[0]
        # Mirroring is only safe for scalar per-pair outputs: spatial layouts
        # cannot be told apart from their shapes alone.
        pair = jax.eval_shape(lambda a, b: kernel_fn(a, b, names, *args, **kwargs),
                              jax.ShapeDtypeStruct((1,) + x1.shape[1:], x1.dtype),
                              jax.ShapeDtypeStruct((1,) + x2.shape[1:], x2.dtype))
        symmetric = symmetric and all(len(o.shape) == 2 for o in pair)
        tile = batch_size or choose_tile(kernel_fn, x1, x2, names, n_dev, budget,
                                         args, kwargs)
        rows = tile * n_dev                      # inputs per row block
        cols = tile
        n_blocks, n_cols = -(-n1 // rows), -(-n2 // cols)
        x1p = np.asarray(_pad_rows(x1, n_blocks * rows))
        x2p = np.asarray(_pad_rows(x2, n_cols * cols))
        kw_keys = tuple(sorted(kwargs))
        step = _step_fn(names, len(args), kw_keys)
        extra = tuple(args) + tuple(kwargs[k] for k in kw_keys)
        if jax.process_count() > 1:
            extra = jax.tree_util.tree_map(np.asarray, extra)
        row_sharding = NamedSharding(mesh, PartitionSpec("d"))

        outs = None
        todo = [(i, j) for i in range(n_blocks) for j in range(n_cols)
                if not symmetric or (j + 1) * cols > i * rows]
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(todo), desc="kernel tiles")
        block_i, a = -1, None
        for i, j in todo:
            if i != block_i:
                block = x1p[i * rows:(i + 1) * rows]
                a = jax.make_array_from_callback(block.shape, row_sharding,
                                                 lambda idx, block=block: block[idx])
                block_i = i
            b = x2p[j * cols:(j + 1) * cols]
            res = step(a, b, *extra)
            if outs is None:
                outs = [np.empty((n1, n2) + r.shape[2:], r.dtype) for r in res]
            r0, r1 = i * rows, min((i + 1) * rows, n1)
            c0, c1 = j * cols, min((j + 1) * cols, n2)
            for o, r in zip(outs, res):
                o[r0:r1, c0:c1] = np.asarray(r)[: r1 - r0, : c1 - c0]
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if symmetric:
            for o in outs:
                _mirror_lower(o, rows, cols)
        if store_on_device:
            outs = [jnp.asarray(o) for o in outs]
        if not as_tuple:
            return outs[0]
        from collections import namedtuple
        return namedtuple("Kernel", names)(*outs)

    return batched


def _mirror_lower(o: np.ndarray, rows: int, cols: int):
    """Fill entries below the computed band from their transposes.

    Tile (i, j) was computed iff its columns reach the block's first row, so
    entry (r, c) is missing exactly when c < start-of-block(r).
    """
    n = o.shape[0]
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        c_end = (r0 // cols) * cols            # first computed column tile
        if c_end == 0:
            continue
        o[r0:r1, :c_end] = o[:c_end, r0:r1].T
