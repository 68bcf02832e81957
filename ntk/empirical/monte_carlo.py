r"""Monte Carlo NNGP and NTK: empirical kernels averaged over random initialisations.

``monte_carlo_kernel_fn(init_fn, apply_fn, key, n)`` returns
``kernel_fn(x1, x2, get)`` whose value is
:math:`(1/n) \sum_{i \le n} K_{\theta_i}(x_1, x_2)` with :math:`\theta_i` drawn by
``init_fn``: an unbiased estimate of the finite-width mean
kernel, which converges to the analytic ``kernel_fn`` of `ntk.stax` as the
width grows (Neal 1996; Lee et al. 2018; Jacot et al. 2018).

Draws follow neural-tangents: the key is split once per sample, each sample key
into ``(init_key, rng)``; ``rng`` is passed to ``apply_fn`` (for dropout) when
it accepts an ``rng`` keyword (an ``ntk.stax`` network does; a function with
``**kwargs``, such as Flax's ``Module.apply``, is tried once on shapes). The
kernel is computed in tiles of at most ``batch_size`` rows of ``x1`` and
``x2`` (any sizes — no divisibility needed), spread over ``device_count``
devices, and kept on the device or moved to host memory
(``store_on_device=False``). Tiles assume the network treats examples
independently (true of `ntk.stax`; with dropout each tile draws its own
masks). With ``x2=None`` only the tiles on and above the diagonal are
computed and each one below is the transpose of its mirror image, as
neural-tangents' ``batch`` does: the train–train kernel is symmetric even when
``apply_fn`` is stochastic, and costs about half. Long runs show a progress bar.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ntk import stax
  >>> from ntk.empirical import monte_carlo_kernel_fn
  >>> x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
  >>> x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
  >>> init_fn, apply_fn, kernel_fn = stax.serial(stax.Dense(256), stax.Relu(),
  ...                                            stax.Dense(1))
  >>> key = jax.random.PRNGKey(2)
  >>> mc = monte_carlo_kernel_fn(init_fn, apply_fn, key, [20, 200])
  >>> few, many = mc(x1, x2, "nngp")    # estimates from 20, then 200 samples
  >>> exact = kernel_fn(x1, x2, "nngp")
  >>> # One output unit: each draw's f(x1) f(x2) has a relative spread of about
  >>> # √2, so 200 draws leave ≈ 0.1 relative error; 0.35 is 3.5 standard errors.
  >>> bool(jnp.abs(many - exact).max() < 0.35 * jnp.abs(exact).max())
  True
"""

from __future__ import annotations

import collections
import inspect
import math
import sys
from typing import Iterable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.empirical.axes import canonicalize, check_axes_arg
from ntk.empirical.batching import split_kwargs
from ntk.empirical.kernels import (
    DEFAULT_NTK_IMPLEMENTATION,
    NtkImplementation,
    canonicalize_get,
    check_implementation,
    empirical_kernel_fn,
)
from ntk.empirical.structured import as_stax_layer
from ntk.kernel import input_pairs_symmetric, is_input_pair, none_if_no_leaves, record_type

PROGRESS_MIN_SAMPLES = 20
"""Runs of at least this many samples show a progress bar (when on a terminal)."""


def monte_carlo_kernel_fn(
    init_fn,
    apply_fn,
    key,
    n_samples: Union[int, Iterable[int]],
    batch_size: int = 0,
    device_count: int = -1,
    store_on_device: bool = True,
    trace_axes=(-1,),
    diagonal_axes=(),
    vmap_axes=None,
    implementation: Union[NtkImplementation, int] = DEFAULT_NTK_IMPLEMENTATION,
    progress: Union[bool, None] = None,
):
    r"""Monte Carlo estimator of the NNGP / NTK of ``apply_fn`` (module docstring).

    Args:
      init_fn: ``init_fn(key, input_shape) -> (output_shape, params)``.
      apply_fn: ``apply_fn(params, x, **kw)``, or the `ntk.stax.Layer` itself (then
        the structured NTK is used).
      key: PRNG key for the draws.
      n_samples: an int, or an iterable of ints — then ``kernel_fn`` returns a
        generator yielding the estimate after each of those sample counts.
      batch_size: tile size along the batch axes (0: the whole kernel at once).
      device_count: devices to spread tiles over (-1: all; 0 or 1: one).
      store_on_device: keep the kernel on the device (True) or in host memory.
      trace_axes, diagonal_axes, vmap_axes, implementation: as in
        `empirical_kernel_fn`.
      progress: show a progress bar (None: when sampling :math:`\ge 20` draws on a TTY).

    Returns:
      ``kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs)``; ``get`` as in
      `empirical_kernel_fn` (a namedtuple ``MonteCarloKernel`` for tuples).

    Example:
      A Dense layer's empirical NTK :math:`x_1 \cdot x_2 / C` does not depend on its
      weights, so any number of draws gives it exactly:

      >>> import jax, numpy as np
      >>> from ntk import stax
      >>> from ntk.empirical import monte_carlo_kernel_fn
      >>> init_fn, apply_fn, _ = stax.Dense(4)
      >>> x = np.array([[1., 2.], [3., -1.]])
      >>> mc = monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(0), 2,
      ...                            device_count=1)
      >>> bool(np.allclose(mc(x, None, "ntk"), x @ x.T / 2))
      True
    """
    name = "monte_carlo_kernel_fn"
    counts, as_generator = _canonicalize_n_samples(n_samples)
    batch_size = _checks.require_int(batch_size, "batch_size", name, minimum=0)
    device_count = _checks.require_int(device_count, "device_count", name, minimum=-1)
    _checks.require_key(key, name, "it draws the parameters")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"{name}: `progress` must be True, False or None; got {progress!r}.")
    trace_axes = check_axes_arg(trace_axes, "trace_axes")
    diagonal_axes = check_axes_arg(diagonal_axes, "diagonal_axes")
    check_implementation(implementation)
    _checks.require_callable(init_fn, "init_fn", name, "a function init_fn(key, input_shape)")
    layer = as_stax_layer(apply_fn)
    _checks.require_callable(
        apply_fn if layer is None else layer.apply_fn,
        "apply_fn",
        name,
        "a function apply_fn(params, x) or an ntk.stax Layer",
    )
    f = layer if layer is not None else apply_fn
    # True, False, or None: a **kwargs function (Flax's Module.apply, a wrapper)
    # is asked once, at the first shape probe, whether it takes `rng`.
    takes_rng = True if layer is not None else _accepts_rng(apply_fn)
    empirical = empirical_kernel_fn(f, trace_axes, diagonal_axes, vmap_axes, implementation)
    devices = jax.devices()
    if device_count > 0:
        devices = devices[:device_count]
    elif device_count == 0:
        devices = devices[:1]

    init_params = _jitted_init(init_fn)

    def one_tile(x1, x2, key, get, kwargs):
        init_key, rng = jax.random.split(key)
        params = init_params(init_key, jax.tree_util.tree_map(jnp.shape, x1))
        if takes_rng:
            kwargs = {"rng": rng, **kwargs}
        # One call per name, so that a network with several outputs (a pytree)
        # gives each name one pytree of kernels, NT's layout, rather than
        # `empirical`'s one record per output. `empirical` jits its NNGP/NTK
        # functions (static non-array kwargs).
        return tuple(empirical(x1, x2, g, params, **kwargs) for g in get)

    def sample(x1, x2, key, names, kwargs):
        tiles = _tiles(
            x1,
            x2,
            batch_size,
            len(devices),
            trace_axes,
            diagonal_axes,
            apply_fn_out_ndim(x1, kwargs),
            mirror=x2 is None and input_pairs_symmetric(kwargs),
        )
        n1 = jax.tree_util.tree_leaves(x1)[0].shape[0]
        n2 = n1 if x2 is None else jax.tree_util.tree_leaves(x2)[0].shape[0]
        results = {}
        for t, (i, j, diag_pair) in enumerate(tiles.pairs):
            dev = devices[t % len(devices)]
            a = jax.device_put(_rows(x1, tiles.rows1[i]), dev)
            b = (
                None
                if (x2 is None and diag_pair)
                else jax.device_put(_rows(x1 if x2 is None else x2, tiles.rows2[j]), dev)
            )
            kw = _tile_kwargs(kwargs, tiles.rows1[i], tiles.rows2[j], n1, n2, x2 is None, b is None)
            kw = jax.tree_util.tree_map(
                lambda v: jax.device_put(v, dev) if isinstance(v, jax.Array) else v, kw
            )
            results[(i, j)] = one_tile(a, b, jax.device_put(key, dev), names, kw)
        blocks = [_assemble(results, tiles, g, store_on_device) for g in range(len(names))]
        return blocks

    out_ndim_cache = {}

    def apply_fn_out_ndim(x1, kwargs):
        nonlocal takes_rng
        k = jax.tree_util.tree_map(jnp.shape, x1)
        k = str(k)
        if k not in out_ndim_cache:
            fn = layer.apply_fn if layer is not None else apply_fn
            init_shapes = jax.tree_util.tree_map(jnp.shape, x1)
            params = jax.eval_shape(lambda kk: init_fn(kk, init_shapes)[1], jax.random.PRNGKey(0))
            kw1, _ = split_kwargs(kwargs, x1, None)

            def out_shapes(rng: bool):
                extra = {"rng": jax.random.PRNGKey(0)} if rng else {}
                return jax.eval_shape(lambda p, x: fn(p, x, **extra, **kw1), params, x1)

            if takes_rng is None:
                try:
                    outs, takes_rng = out_shapes(True), True
                except TypeError as e:
                    if "rng" not in str(e):
                        raise
                    outs, takes_rng = out_shapes(False), False
            else:
                outs = out_shapes(takes_rng)
            out_ndim_cache[k] = [len(o.shape) for o in jax.tree_util.tree_leaves(outs)]
        return out_ndim_cache[k]

    def draws(x1, x2, get, kwargs):
        names, single = canonicalize_get(get, "monte_carlo kernel_fn")
        x2 = none_if_no_leaves(x2)
        if not jax.tree_util.tree_leaves(x1):
            raise ValueError(
                "monte_carlo kernel_fn: `x1` must be an array (or a pytree "
                f"of arrays with a leading batch axis); got {x1!r}."
            )
        total = max(counts)
        bar = _progress(total, progress)
        acc = None
        k = key
        for n in range(1, total + 1):
            k, sub = jax.random.split(k)
            s = sample(x1, x2, sub, names, kwargs)
            acc = s if acc is None else jax.tree_util.tree_map(lambda a, b: a + b, acc, s)
            bar.update(1)
            if n in counts:
                mean = jax.tree_util.tree_map(lambda a: a / n, acc)
                yield (mean[0] if single else record_type("MonteCarloKernel", tuple(names))(*mean))
        bar.close()

    if as_generator:

        def kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs):
            return draws(x1, x2, get, apply_fn_kwargs)
    else:

        def kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs):
            out = None
            for out in draws(x1, x2, get, apply_fn_kwargs):
                pass
            return out

    return kernel_fn


def _jitted_init(init_fn):
    """``(key, input_shape) -> params``, compiled once per (hashable) input shape."""
    compiled = jax.jit(lambda key, shape: init_fn(key, shape)[1], static_argnums=1)

    def init(key, shape):
        try:
            hash(shape)
        except TypeError:  # e.g. a list of shapes: run eagerly
            return init_fn(key, shape)[1]
        return compiled(key, shape)

    return init


def _canonicalize_n_samples(n_samples):
    if isinstance(n_samples, (int, np.integer)) and not isinstance(n_samples, bool):
        counts, gen = {int(n_samples)}, False
    elif isinstance(n_samples, Iterable) and not isinstance(n_samples, (str, bytes)):
        counts, gen = set(n_samples), True
    else:
        raise ValueError(
            f"monte_carlo_kernel_fn: `n_samples` must be a positive int "
            f"or an iterable of them; got {n_samples!r}."
        )
    if not counts or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in counts
    ):
        raise ValueError(
            f"monte_carlo_kernel_fn: `n_samples` must contain positive "
            f"ints only; got {n_samples!r}."
        )
    return {int(n) for n in counts}, gen


def _accepts_rng(fn) -> Optional[bool]:
    """True if ``fn`` names an ``rng`` parameter, False if it cannot take one,
    None if it takes ``**kwargs`` (or has no signature): try it."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.name == "rng" and p.kind != p.POSITIONAL_ONLY for p in params):
        return True
    return None if any(p.kind == p.VAR_KEYWORD for p in params) else False


class _Tiles(collections.namedtuple("_Tiles", "rows1 rows2 pairs layout mirror")):
    """Row ranges of x1 / x2 and the (i, j, same_rows) tile pairs to compute.

    ``layout`` is "pair" (kernel axes 0, 1 are the batches of x1, x2),
    "diagonal" (axis 0 is the shared batch) or "none" (batch traced: one tile).
    ``mirror`` is None, or (``x2=None`` in the "pair" layout) one axis
    permutation per output that turns tile (i, j) into tile (j, i): the pairs
    then hold only j >= i.
    """


def _swap_sides(ndim: int, trace: tuple, diag: tuple) -> tuple:
    """The kernel-axes permutation exchanging the x1 and x2 side of every
    axis that appears twice (`ntk.empirical.axes` layout: each such pair is
    adjacent, in output order)."""
    perm, pos = [], 0
    for i in range(ndim):
        if i in trace:
            continue
        if i in diag:
            perm.append(pos)
            pos += 1
        else:
            perm.extend((pos + 1, pos))
            pos += 2
    return tuple(perm)


def _tiles(x1, x2, batch_size, n_devices, trace_axes, diagonal_axes, out_ndims, mirror=False):
    n1 = jax.tree_util.tree_leaves(x1)[0].shape[0]
    n2 = n1 if x2 is None else jax.tree_util.tree_leaves(x2)[0].shape[0]
    layouts, swaps = set(), []
    for nd in out_ndims:
        tr = canonicalize(trace_axes, nd, "trace_axes")
        dg = canonicalize(diagonal_axes, nd, "diagonal_axes")
        layouts.add("none" if 0 in tr else "diagonal" if 0 in dg else "pair")
        swaps.append(_swap_sides(nd, tr, dg))
    if len(layouts) != 1:
        raise ValueError(
            "monte_carlo_kernel_fn: outputs disagree on how the batch "
            "axis appears in the kernel; use batch_size=0, device_count=0."
        )
    layout = layouts.pop()
    if layout == "none":
        if batch_size:
            raise ValueError(
                "monte_carlo_kernel_fn: `batch_size` needs the batch axis "
                "(0) in the kernel, but it is in `trace_axes`."
            )
        return _Tiles([(0, n1)], [(0, n2)], [(0, 0, x2 is None)], layout, None)
    size = batch_size or max(1, math.ceil(n1 / n_devices))
    rows1 = [(s, min(s + size, n1)) for s in range(0, n1, size)]
    if layout == "diagonal":
        return _Tiles(rows1, rows1, [(i, i, True) for i in range(len(rows1))], layout, None)
    size2 = batch_size or n2
    rows2 = (
        rows1
        if (x2 is None and size2 == size)
        else [(s, min(s + size2, n2)) for s in range(0, n2, size2)]
    )
    mirror = mirror and rows2 is rows1
    pairs = [
        (i, j, x2 is None and rows1[i] == rows2[j])
        for i in range(len(rows1))
        for j in range(i if mirror else 0, len(rows2))
    ]
    return _Tiles(rows1, rows2, pairs, layout, tuple(swaps) if mirror else None)


def _rows(x, rows):
    return jax.tree_util.tree_map(lambda a: a[rows[0] : rows[1]], x)


def _tile_kwargs(kwargs: dict, rows1, rows2, n1: int, n2: int, x2_is_x1: bool, tile_x2_is_x1: bool):
    """The keyword arguments of one tile: a per-input pair ``(for x1, for
    x2)`` of arrays whose leading axes are the batches of ``x1`` and ``x2``
    (`ntk.kernel.is_input_pair`, such as `Aggregate`'s ``pattern``; ``for x2``
    None means ``for x1`` when ``x2`` is None) is cut to the tile's rows, as
    the inputs are, the way NT's ``batch`` splits it; other values are shared.

    A tile on the diagonal of ``x2=None`` is computed with ``x2=None``, so its
    pair keeps None second. ``rng`` is never cut: it is a key, not rows.
    """

    def cut(a, rows, n):
        return _rows(a, rows) if np.ndim(a) and np.shape(a)[0] == n else a

    out = {}
    for k, v in kwargs.items():
        if k == "rng" or not is_input_pair(v):
            out[k] = v
            continue
        first, second = v
        if second is None and x2_is_x1:
            second = first
        out[k] = (
            cut(first, rows1, n1),
            None if tile_x2_is_x1 or second is None else cut(second, rows2, n2),
        )
    return out


def _assemble(results, tiles: _Tiles, g: int, store_on_device: bool):
    """Concatenate the tiles of kernel ``g`` (each a pytree of arrays)."""
    home = jax.devices()[0]
    move = (lambda a: jax.device_put(a, home)) if store_on_device else np.asarray
    lib = jnp if store_on_device else np

    def part(i, j):
        if (i, j) in results:
            return jax.tree_util.tree_map(move, results[(i, j)][g])
        leaves, tree = jax.tree_util.tree_flatten(part(j, i))
        mirrored = [lib.transpose(a, p) for a, p in zip(leaves, tiles.mirror, strict=True)]
        return jax.tree_util.tree_unflatten(tree, mirrored)

    cat = lambda axis: lambda *parts: lib.concatenate(parts, axis=axis)
    if tiles.layout == "none":
        return part(0, 0)
    if tiles.layout == "diagonal":
        return jax.tree_util.tree_map(cat(0), *[part(i, i) for i in range(len(tiles.rows1))])
    rows = [
        jax.tree_util.tree_map(cat(1), *[part(i, j) for j in range(len(tiles.rows2))])
        for i in range(len(tiles.rows1))
    ]
    return jax.tree_util.tree_map(cat(0), *rows)


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, progress):
    show = (
        progress
        if progress is not None
        else (total >= PROGRESS_MIN_SAMPLES and sys.stderr.isatty())
    )
    if not show:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the dev env
        return _NoBar()
    return tqdm(total=total, desc="monte carlo kernel", unit="sample")
