r"""Combinators: compose layers into networks (neural-tangents' names).

``serial`` chains layers; ``FanOut(n)`` copies its input into ``n`` branches,
``parallel`` applies one layer per branch, and ``FanInSum``, ``FanInProd`` and
``FanInConcat`` merge branches. Branches have independent weights, so their
outputs are independent Gaussian processes in the infinite-width limit and the
kernels of a merge follow from the branch kernels alone:

* sum: :math:`K = \sum_b K_b,\quad \Theta = \sum_b \Theta_b`
* product: :math:`K = \prod_b K_b,\quad \Theta = \sum_b \Theta_b \prod_{c \neq b} K_c`
* concat (channels :math:`C_b`): :math:`K = \sum_b C_b K_b / \sum_b C_b` (same for
  :math:`\Theta`).

A residual block is ``serial(FanOut(2), parallel(block, Identity()), FanInSum())``.

``serial`` runs a run of at least ``SCAN_MIN_REPS`` equal blocks (the same layer
objects, or layers built apart that ``same_kernel`` finds equal) as one
`jax.lax.scan` whose carry holds the NNGP and NTK as one complex array
(``pack_carry`` of `ntk.stax.layer`; a kernel with chords carries them and
the NTK, the NNGP rebuilt from them): compile time stays flat in depth, and
the two kernels cost about one. Blocks that differ but keep the shapes of the
kernel's arrays (a ``W_std`` or a width per layer, alternating activations)
loop too, each step switching to its block's layers (`jax.lax.switch`).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types

import jax
import jax.numpy as jnp
import numpy as np

from ntk.kernel import Kernel
from ntk.stax import spec as specs
from ntk.stax._internal import safe_sqrt, split_rng
from ntk.stax.layer import (
    KernelFn,
    Layer,
    as_layer,
    check_init_args,
    check_params,
    make_layer,
    pack_carry,
    unpack_carry,
)
from ntk.stax.masking import and_masks, concat_masks, has_masked


def serial(*layers) -> Layer:
    """Compose layers in sequence: ``serial(f, g)(x) = g(f(x))``.

    Example:
      >>> from ntk import stax
      >>> init_fn, apply_fn, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(),
      ...                                            stax.Dense(1))
    """
    layers = tuple(as_layer(l) for l in layers)
    n = len(layers)
    name = "serial(" + ", ".join(l.name for l in layers) + ")"
    runs = _periodic_runs(layers)

    def init_fn(key, input_shape):
        check_init_args(key, input_shape, name)
        params = []
        for layer, k in zip(layers, jax.random.split(key, max(n, 1))):
            input_shape, p = layer.init_fn(k, input_shape)
            params.append(p)
        return input_shape, tuple(params)

    def apply_fn(params, x, **kwargs):
        check_params(params, n, name)
        for layer, p, kw in zip(layers, params, split_rng(kwargs, n)):
            x = layer.apply_fn(p, x, **kw)
        return x

    def transform(k, **kwargs):
        if "rng" in kwargs:
            for layer, kw in zip(layers, split_rng(kwargs, n)):
                k = layer.kernel_fn(k, **kw)
            return k
        differing: list = []
        for block, reps in runs:
            if reps < SCAN_MIN_REPS:
                differing += list(block) * reps
                continue
            k = _apply_differing(differing, k, kwargs)
            differing = []
            k = _apply_repeated(block, reps, k, kwargs)
        return _apply_differing(differing, k, kwargs)

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        spec=specs.Serial(layers),
        **_combinator_flags(layers),
    )


#: Runs of fewer repeats are unrolled. Longer ones loop: unrolled, XLA's
#: compile time grows with the depth squared (a ReLU MLP: 1.5 s at 10 blocks,
#: 6.5 s at 20, 37 s at 40, against 0.5 s for the loop at any depth), and
#: the packed loop is also the faster at 10 blocks (the NTK of 2,000 inputs:
#: 62 ms, against 103 ms for the unrolled layers fused by XLA).
SCAN_MIN_REPS = 3


def _periodic_runs(layers, max_period: int = 8):
    """Split ``layers`` into ``(block, reps)``: maximal runs of one block
    repeated back to back, as ``serial(*[block] * depth)`` makes, or a list
    comprehension of equal layers (`same_kernel`)."""
    ids = _kernel_classes(layers)
    runs, i, n = [], 0, len(layers)
    while i < n:
        best = (1, 1)
        for p in range(1, min(max_period, (n - i) // 2) + 1):
            r = 1
            while i + (r + 1) * p <= n and ids[i + r * p : i + (r + 1) * p] == ids[i : i + p]:
                r += 1
            if r >= 2 and r * p > best[0] * best[1]:
                best = (p, r)
        p, r = best
        runs.append((layers[i : i + p], r))
        i += p * r
    return runs


def _kernel_classes(layers) -> list:
    """One int per layer, equal for layers whose kernel transforms are the same."""
    classes: dict = {}
    return [classes.setdefault(_kernel_key(layer), len(classes)) for layer in layers]


def same_kernel(a, b) -> bool:
    """Whether layers ``a`` and ``b`` have the same kernel transform: the same
    object, or built by the same code from equal arguments (closures of one
    function over equal numbers, strings, tuples, records and such closures).

    Conservative: arrays, and objects of any other type, are equal only if
    they are the same object, so a False may be wrong, a True is not.

    Example:
      >>> from ntk import stax
      >>> same_kernel(stax.Dense(8, W_std=2.0), stax.Dense(8, W_std=2.0))
      True
      >>> same_kernel(stax.Dense(8, W_std=2.0), stax.Dense(8, W_std=1.0))
      False
    """
    return a is b or _kernel_key(a) == _kernel_key(b)


def _kernel_key(layer) -> tuple:
    return _key(as_layer(layer).kernel_fn, {})


def _key(a, path: dict):
    """A hashable description of the object graph under ``a``: equal for two
    graphs built by the same code from equal values (see `same_kernel`)."""
    if isinstance(a, (bool, int, str, bytes, type(None))):
        return (type(a).__name__, a)
    if isinstance(a, (float, complex, np.generic)):
        return (type(a).__name__, repr(a))  # tells -0.0 from 0.0; NaN equals NaN
    if isinstance(a, frozenset) and all(isinstance(u, (str, int)) for u in a):
        return ("frozenset", tuple(sorted(map(repr, a))))
    if id(a) in path:  # a function whose closure holds itself: where the cycle closes
        return ("cycle", path[id(a)])
    path[id(a)] = len(path)
    try:
        return _compound_key(a, path)
    finally:
        del path[id(a)]


def _compound_key(a, path: dict):
    if isinstance(a, (tuple, list)):
        return (id(type(a)), tuple(_key(u, path) for u in a))
    if isinstance(a, dict):
        return ("dict", tuple((_key(k, path), _key(v, path)) for k, v in a.items()))
    if isinstance(a, types.FunctionType):
        cells = tuple(_key(_contents(c), path) for c in a.__closure__ or ())
        defaults = (_key(a.__defaults__, path), _key(a.__kwdefaults__, path))
        return ("function", id(a.__code__), id(a.__globals__), defaults, cells)
    if isinstance(a, functools.partial):
        return ("partial", _key((a.func, a.args, a.keywords), path))
    if isinstance(a, KernelFn):
        # Its jit caches are built from the rest.
        own = {k: v for k, v in vars(a).items() if k not in ("_jitted", "_jitted_kw")}
        return (id(type(a)), _key(own, path))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        fields = tuple(_key(getattr(a, f.name), path) for f in dataclasses.fields(a))
        return (id(type(a)), fields)
    return ("object", id(a))


_EMPTY = object()


def _contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a cell not yet assigned (a name defined later)
        return _EMPTY


def _apply_repeated(block, reps: int, k, kwargs):
    """Apply ``block`` ``reps`` (at least `SCAN_MIN_REPS`) times through `jax.lax.scan`.

    A loop keeps the program (and compile time) the size of one block. The
    first application is unrolled because it may change the kernel's metadata
    (e.g. is_gaussian).
    """
    once = functools.partial(_in_turn, block, kwargs=kwargs)
    k = once(k)
    if _signature(jax.eval_shape(once, k)) != _signature(k):
        for _ in range(reps - 1):
            k = once(k)
        return k
    return _loop(once, k, reps - 1)


def _in_turn(layers, k, kwargs):
    for layer in layers:
        k = layer.kernel_fn(k, **kwargs)
    return k


def _signature(k) -> tuple:
    """What the loop over equal blocks must keep, one step function serving
    every block: the Kernel's structure (its metadata included) and its
    arrays' shapes and dtypes."""
    leaves, tree = jax.tree_util.tree_flatten(k)
    return tree, tuple((a.shape, a.dtype) for a in leaves)


def _carries(layers, k, kwargs) -> tuple[list, list]:
    """``(trees, sigs)`` of the kernel before each of ``layers`` and after the
    last, found by `jax.eval_shape`: the treedef of the Kernel packed for the
    carry (`pack_carry`; it holds the metadata a block rebuilds its input from)
    and its leaves' shapes and dtypes (what a loop carries)."""
    a = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), k)
    trees, sigs = [], []
    for i in range(len(layers) + 1):
        leaves, tree = jax.tree_util.tree_flatten(jax.eval_shape(pack_carry, a))
        trees.append(tree)
        sigs.append(tuple((x.shape, x.dtype) for x in leaves))
        if i < len(layers):
            a = jax.eval_shape(functools.partial(_in_turn, (layers[i],), kwargs=kwargs), a)
    return trees, sigs


def _longest_stretch(sigs, lo: int):
    """``(start, p, m)``: the most layers ``m·p`` from ``lo`` on in ``m`` blocks
    of ``p`` layers that begin and end with one signature, or None. A stretch
    of a few layers gains nothing from a loop: as for a whole sequence, at
    least `SCAN_MIN_REPS` blocks and twice as many layers."""
    n = len(sigs) - 1
    best = None
    for p in range(1, min(8, (n - lo) // SCAN_MIN_REPS) + 1):
        for start in range(lo, n - SCAN_MIN_REPS * p + 1):
            m = 0
            while start + (m + 1) * p <= n and sigs[start + (m + 1) * p] == sigs[start]:
                m += 1
            long_enough = m >= SCAN_MIN_REPS and m * p >= 2 * SCAN_MIN_REPS
            if long_enough and (best is None or m * p > best[1] * best[2]):
                best = (start, p, m)
    return best


def _apply_differing(layers, k, kwargs):
    """Apply ``layers`` in turn; each longest stretch (`_longest_stretch`) of
    blocks of up to 8 layers whose kernels keep their arrays' shapes and
    dtypes (``Dense, Relu`` pairs with a ``W_std`` or a width per layer, or
    alternating activations) runs as one loop, whose step switches to the
    block's own layers (`jax.lax.switch`).

    The loop carries the arrays only. Each block rebuilds its input Kernel
    from them with the structure and metadata (widths, flags) found for it
    by `jax.eval_shape`, so blocks whose metadata differ share the loop.
    Unrolled, such layers cost what equal ones did before they looped:
    compile time growing with the depth squared, and for GELU the run time
    too; inside a user's `jax.jit`, both kernels of an unrolled network cost
    a multiple of one (`pack_carry`).
    """
    if len(layers) < 2 * SCAN_MIN_REPS:  # too short to be worth tracing twice
        return _in_turn(layers, k, kwargs)
    trees, sigs = _carries(layers, k, kwargs)
    done = 0
    while (stretch := _longest_stretch(sigs, done)) is not None:
        start, p, m = stretch
        k = _in_turn(layers[done:start], k, kwargs)

        def branch(j, leaves, start=start, p=p):
            # Unpacked and packed inside the branch, so that XLA fuses both
            # into the block's own pass over memory.
            i = start + j * p
            k = unpack_carry(*jax.tree_util.tree_unflatten(trees[i], leaves))
            out = _in_turn(layers[i : i + p], k, kwargs)
            return jax.tree_util.tree_leaves(pack_carry(out))

        branches = [functools.partial(branch, j) for j in range(m)]

        def body(leaves, j, branches=branches):
            return jax.lax.switch(j, branches, leaves), None

        leaves = jax.tree_util.tree_leaves(pack_carry(k))
        leaves = jax.lax.scan(body, leaves, jnp.arange(m))[0]
        done = start + m * p
        k = unpack_carry(*jax.tree_util.tree_unflatten(trees[done], leaves))
    return _in_turn(layers[done:], k, kwargs)


def _loop(step, k, length: int):
    """``step`` applied ``length`` times to the Kernel ``k``, as `jax.lax.scan`.

    The loop carries the NNGP and NTK as one complex array (`pack_carry`):
    XLA then computes both in one pass over memory per step, where two
    carries cost it two passes that each recompute the step's shared terms
    (a 10-layer ReLU MLP's two kernels of 2,000 inputs: 68 ms, against 155).
    """

    def body(carry, _):
        return pack_carry(step(unpack_carry(*carry))), None

    return unpack_carry(*jax.lax.scan(body, pack_carry(k), None, length=length)[0])


def parallel(*layers) -> Layer:
    r"""Apply ``layers[b]`` to branch ``b`` of a list input (after ``FanOut``).

    Example:
      Two independent Dense branches: their NNGPs add,
      :math:`(2^2 + 1^2)\, x \cdot x' / C`:

      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> x = jnp.array([[1., 2.], [3., -1.]])
      >>> net = stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(1, W_std=2.),
      ...                                                 stax.Dense(1)), stax.FanInSum())
      >>> bool(jnp.allclose(net.kernel_fn(x, None, "nngp"), 5 * x @ x.T / 2))
      True
    """
    layers = tuple(as_layer(l) for l in layers)
    n = len(layers)
    name = "parallel(" + ", ".join(l.name for l in layers) + ")"

    def _check(xs, what):
        if not isinstance(xs, (list, tuple)) or len(xs) != n:
            got = len(xs) if isinstance(xs, (list, tuple)) else type(xs).__name__
            raise ValueError(
                f"{name}: expected a list of {n} {what} (one per "
                f"branch, e.g. from FanOut({n})); got {got}."
            )

    def init_fn(key, input_shapes):
        _check(input_shapes, "input shapes")
        outs = [l.init_fn(k, s) for l, k, s in zip(layers, jax.random.split(key, n), input_shapes)]
        return [o[0] for o in outs], tuple(o[1] for o in outs)

    def apply_fn(params, xs, **kwargs):
        check_params(params, n, name)
        _check(xs, "inputs")
        return [
            l.apply_fn(p, x, **kw) for l, p, x, kw in zip(layers, params, xs, split_rng(kwargs, n))
        ]

    def transform(ks, **kwargs):
        _check(ks, "kernels")
        return [l.kernel_fn(k, **kw) for l, k, kw in zip(layers, ks, split_rng(kwargs, n))]

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        spec=specs.Parallel(layers),
        **_combinator_flags(layers),
    )


def FanOut(num: int) -> Layer:
    """Copy the input into ``num`` branches.

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> init_fn, apply_fn, kernel_fn = stax.FanOut(3)
      >>> x = jnp.ones((2, 4))
      >>> [y.shape for y in apply_fn((), x)], init_fn(None, x.shape)[0]
      ([(2, 4), (2, 4), (2, 4)], [(2, 4), (2, 4), (2, 4)])
    """
    if not (isinstance(num, int) and num >= 1):
        raise ValueError(f"FanOut: `num` must be a positive int; got {num!r}.")
    return make_layer(
        f"FanOut({num})",
        lambda key, shape: ([shape] * num, ()),
        lambda params, x, **kw: [x] * num,
        lambda k, **kw: [k] * num,
        spec=specs.Parameterless(),
        mask_fn=lambda mask, shape: [mask] * num,
    )


def _check_branches(ks, name: str):
    if not isinstance(ks, (list, tuple)) or not ks:
        raise ValueError(
            f"{name}: expected a non-empty list of branches (e.g. "
            f"from FanOut); got {type(ks).__name__}."
        )
    return list(ks)


def _same_shapes(shapes, name):
    if any(tuple(s) != tuple(shapes[0]) for s in shapes):
        raise ValueError(
            f"{name}: all branches must have the same shape; got {[tuple(s) for s in shapes]}."
        )


def _combinator_flags(layers) -> dict:
    """`make_layer`'s flags for a combinator of ``layers``: it needs the full
    spatial layout if any layer does, is pairwise only if all are, and passes
    masks on to its layers itself."""
    return dict(
        needs_full_spatial=any(l.kernel_fn.needs_full_spatial for l in layers),
        pairwise=all(l.kernel_fn.pairwise for l in layers),
        handles_masks=True,
    )


def _same_shape_init(name):
    """``init_fn`` of a merge whose branches, and so its output, share one shape."""

    def init_fn(key, shapes):
        shapes = _check_branches(shapes, name)
        _same_shapes(shapes, name)
        return shapes[0], ()

    return init_fn


def _merged(ks: list[Kernel], name: str) -> Kernel:
    _same_shapes([k.shape1 for k in ks], name)
    _same_shapes([k.shape2 for k in ks], name)
    if len({k.diagonal_spatial for k in ks}) != 1:
        raise ValueError(f"{name}: branches disagree on spatial layout.")
    return ks[0]


def _sum(arrays):
    if any(a is None for a in arrays):
        return None
    return functools.reduce(operator.add, arrays)


def _summed_chord(ks, weights=None):
    r"""The chord (`Kernel.chord`) of a weighted sum :math:`\sum_b w_b K_b` of
    independent branches (``weights`` None: all 1): with :math:`a_b, c_b` the
    two inputs' variances in branch :math:`b`,
    :math:`S = \sqrt{\textstyle\sum_b w_b a_b \sum_b w_b c_b}` and
    :math:`T = \sum_b w_b \sqrt{a_b c_b}`,

    .. math::

        \chi = \sum_b w_b \chi_b + 2(S - T), \qquad
        S - T = \frac{\sum_{b < b'} w_b w_{b'} (\sqrt{a_b c_{b'}}
        - \sqrt{a_{b'} c_b})^2}{S + T},

    sums of non-negative terms (Lagrange's identity), so nothing cancels.
    """
    if any(k.chord is None for k in ks):
        return None
    weights = [1.0] * len(ks) if weights is None else weights
    pairs = [k.outer_vars()[0] for k in ks]
    wa = [w * a for w, (a, _) in zip(weights, pairs)]
    wc = [w * c for w, (_, c) in zip(weights, pairs)]
    ra, rc = [safe_sqrt(a) for a in wa], [safe_sqrt(c) for c in wc]
    s = safe_sqrt(_sum(wa)) * safe_sqrt(_sum(wc))
    t = _sum([x * y for x, y in zip(ra, rc)])
    den = s + t
    den = jnp.where(den > 0, den, 1)
    # Each term as m · (m / den), as in `ntk.stax.linear`'s affine chord:
    # no product of two variance-sized factors, in the values or in their
    # reverse-mode cotangents.
    gaps = [ra[i] * rc[j] - ra[j] * rc[i] for i in range(len(ks)) for j in range(i + 1, len(ks))]
    chords = _sum([w * k.chord for w, k in zip(weights, ks)])
    return chords if not gaps else chords + 2 * _sum([m * (m / den) for m in gaps])


def _product_chord(ks):
    r"""The chord (`Kernel.chord`) of a product :math:`\prod_b K_b` of
    independent branches, folded two at a time: with
    :math:`p_A = \sqrt{A_{11} A_{22}}`,

    .. math::

        2(p_A p_B - A_{12} B_{12}) = \tfrac12 \big[\chi_A (p_B + B_{12})
        + \chi_B (p_A + A_{12})\big],

    a sum of non-negative terms (:math:`|K_{12}| \le p`), so nothing cancels
    where both chords are small.
    """
    if any(k.chord is None for k in ks):
        return None

    def norms(k):
        a, c = k.outer_vars()[0]
        return safe_sqrt(a) * safe_sqrt(c)

    chord, p, k12 = ks[0].chord, norms(ks[0]), ks[0].nngp
    for k in ks[1:]:
        q = norms(k)
        chord = (chord * jnp.maximum(q + k.nngp, 0) + k.chord * jnp.maximum(p + k12, 0)) / 2
        p, k12 = p * q, k12 * k.nngp
    return chord


def _check_independent(ks, name):
    """Σ_b K_b drops the cross-covariances of branches, which vanish only when
    a branch ends in an affine layer with fresh zero-mean weights. Branches
    ending in activations share their input and are correlated."""
    if sum(not k.is_gaussian for k in ks) >= 2:
        raise ValueError(
            f"{name}: at most one branch may end without an affine "
            f"layer (Dense/Conv); got {sum(not k.is_gaussian for k in ks)} "
            f"branches ending in a nonlinearity, whose outputs are "
            f"correlated, so their kernels do not add. Put a Dense/Conv "
            f"at the end of all but one branch."
        )


def FanInSum() -> Layer:
    r"""Sum the branches: :math:`K = \sum_b K_b` and :math:`\Theta = \sum_b \Theta_b`
    (independent branches).

    Example:
      A residual block ``x + Dense(x)``: the skip and the Dense branch are
      independent, so :math:`K = x \cdot x'/C + \mathrm{W\_std}^2\, x \cdot x'/C`:

      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> x = jnp.array([[1., 2.], [3., -1.]])
      >>> net = stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(2, W_std=3.),
      ...                                                 stax.Identity()), stax.FanInSum())
      >>> bool(jnp.allclose(net.kernel_fn(x, None, "nngp"), 10 * x @ x.T / 2))
      True
    """
    name = "FanInSum"

    init_fn = _same_shape_init(name)

    def apply_fn(params, xs, **kw):
        return _sum(_check_branches(xs, name))

    def transform(ks, **kw):
        ks = _check_branches(ks, name)
        k0 = _merged(ks, name)
        _check_independent(ks, name)
        return k0.replace(
            nngp=_sum([k.nngp for k in ks]),
            ntk=_sum([k.ntk for k in ks]),
            cov1=_sum([k.cov1 for k in ks]),
            cov2=_sum([k.cov2 for k in ks]),
            is_gaussian=all(k.is_gaussian for k in ks),
            chord=_summed_chord(ks),
        )

    return make_layer(
        name, init_fn, apply_fn, transform, spec=specs.Parameterless(), mask_fn=_fan_in_mask
    )


def _fan_in_mask(masks, shapes):
    """A sum or product of branches is padding where every branch is."""
    return and_masks(_check_branches(masks, "FanIn"))


def FanInProd() -> Layer:
    r"""Multiply the branches elementwise.

    For independent centred branches
    :math:`\mathbb{E}[\prod_b u_b \prod_b v_b] = \prod_b K_b`, and by the product rule
    :math:`\Theta = \sum_b \Theta_b \prod_{c \neq b} K_c`. The output is not Gaussian.

    Example:
      The product of two independent Dense branches:
      :math:`K = (2^2\, x \cdot x'/C)(x \cdot x'/C)`, and the output is no longer
      Gaussian:

      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> x = jnp.array([[1., 2.], [3., -1.]])
      >>> branches = stax.parallel(stax.Dense(1, W_std=2.), stax.Dense(1))
      >>> k = stax.serial(stax.FanOut(2), branches, stax.FanInProd()).kernel_fn(x, None)
      >>> bool(jnp.allclose(k.nngp, 4 * (x @ x.T / 2) ** 2)), k.is_gaussian
      (True, False)
    """
    name = "FanInProd"

    init_fn = _same_shape_init(name)

    def apply_fn(params, xs, **kw):
        return functools.reduce(operator.mul, _check_branches(xs, name))

    def prod(arrays):
        if any(a is None for a in arrays):
            return None
        return functools.reduce(operator.mul, arrays)

    def transform(ks, **kw):
        ks = _check_branches(ks, name)
        k0 = _merged(ks, name)
        ntk = None
        if all(k.ntk is not None for k in ks):
            ntk = _sum(
                [
                    ks[b].ntk * prod([k.nngp for c, k in enumerate(ks) if c != b] or [1.0])
                    for b in range(len(ks))
                ]
            )
        return k0.replace(
            nngp=prod([k.nngp for k in ks]),
            ntk=ntk,
            cov1=prod([k.cov1 for k in ks]),
            cov2=prod([k.cov2 for k in ks]),
            is_gaussian=False,
            chord=_product_chord(ks),
        )

    return make_layer(
        name, init_fn, apply_fn, transform, spec=specs.Parameterless(), mask_fn=_fan_in_mask
    )


def FanInConcat(axis: int = -1) -> Layer:
    r"""Concatenate the branches along the channel axis (the only axis supported).

    A following Dense sees :math:`\sum_b C_b` channels, so the kernel is the
    channel-weighted mean :math:`K = \sum_b C_b K_b / \sum_b C_b`, and the same for
    :math:`\Theta`. The result must go through an affine layer (Dense, Conv) before an
    activation, as in NT.

    Example:
      Branches of 1 and 3 channels: :math:`K = (1 \cdot K_1 + 3 \cdot K_2) / 4`:

      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> x = jnp.array([[1., 2.], [3., -1.]])
      >>> net = stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(1),
      ...                                                 stax.Dense(3, W_std=2.)),
      ...                   stax.FanInConcat())
      >>> bool(jnp.allclose(net.kernel_fn(x, None, "nngp"), (1 + 3 * 4) / 4 * x @ x.T / 2))
      True
    """
    name = f"FanInConcat(axis={axis})"

    def _check_axis(ndim):
        if axis not in (-1, ndim - 1):
            raise ValueError(
                f"{name}: only the channel axis (-1) is supported; "
                f"got axis={axis} for rank-{ndim} inputs."
            )

    def init_fn(key, shapes):
        shapes = _check_branches(shapes, name)
        _check_axis(len(shapes[0]))
        _same_shapes([s[:-1] for s in shapes], name)
        return tuple(shapes[0][:-1]) + (sum(s[-1] for s in shapes),), ()

    def apply_fn(params, xs, **kw):
        xs = _check_branches(xs, name)
        _check_axis(xs[0].ndim)
        return jnp.concatenate(xs, axis=-1)

    def transform(ks, **kw):
        ks = _check_branches(ks, name)
        _check_axis(len(ks[0].shape1))
        _same_shapes([k.shape1[:-1] for k in ks], name)
        channels = [k.shape1[-1] for k in ks]
        total = sum(channels)

        def mean(arrays):
            if any(a is None for a in arrays):
                return None
            return _sum([c / total * a for c, a in zip(channels, arrays)])

        k0 = ks[0]
        return k0.replace(
            nngp=mean([k.nngp for k in ks]),
            ntk=mean([k.ntk for k in ks]),
            cov1=mean([k.cov1 for k in ks]),
            cov2=mean([k.cov2 for k in ks]),
            chord=_summed_chord(ks, [c / total for c in channels]),
            shape1=tuple(k0.shape1[:-1]) + (total,),
            shape2=tuple(k0.shape2[:-1]) + (total,),
            # Channels of different branches have different
            # covariances: an activation of the concatenation is
            # not a function of the averaged kernel.
            is_gaussian=False,
        )

    def mask_fn(masks, shapes):
        return concat_masks(_check_branches(masks, name), shapes)

    return make_layer(
        name, init_fn, apply_fn, transform, spec=specs.Parameterless(), mask_fn=mask_fn
    )


def repeat(layer, n: int) -> Layer:
    """``serial(*[layer] * n)`` with independent weights, compiled as a loop.

    The layer must keep its input shape (e.g. ``serial(Dense(512), Relu())``
    after a first ``Dense(512)``); compile time stays flat in ``n``. ``n = 0``
    is the identity (the empty composition), as in neural-tangents.

    Example:
      ``Dense(W_std=√2)`` then ReLU keeps every input's variance, at any depth:

      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> x = jnp.array([[1., 2.], [3., -1.]])
      >>> block = stax.serial(stax.Dense(8, W_std=2 ** 0.5), stax.Relu())
      >>> net = stax.serial(stax.Dense(8), stax.repeat(block, 3))
      >>> bool(jnp.allclose(jnp.diag(net.kernel_fn(x, None, "nngp")), (x * x).mean(1)))
      True
    """
    layer = as_layer(layer)
    if isinstance(n, bool) or not (isinstance(n, int) and n >= 0):
        raise ValueError(f"repeat: `n` must be an int >= 0; got {n!r}.")
    name = f"repeat({layer.name}, {n})"

    def checked_shape(key, input_shape):
        out_shape, _ = layer.init_fn(key, input_shape)
        if tuple(out_shape) != tuple(input_shape):
            raise ValueError(
                f"{name}: the layer must keep its input shape; "
                f"{tuple(input_shape)} -> {tuple(out_shape)}. Use "
                f"serial(*[layer] * n) instead."
            )
        return out_shape

    if n == 0:
        # The empty composition, as in NT; a parameterless layer rather than
        # zero stacked copies, so tools walking the spec see no weights. It
        # takes the layer's keywords (an Aggregate's `pattern`; any, for a
        # layer without a spec), so that a network's call does not depend on
        # its depth.
        keywords = layer.kernel_fn.keywords
        return make_layer(
            name,
            lambda key, input_shape: (checked_shape(key, input_shape), ()),
            lambda params, x, **kw: x,
            lambda k, **kw: k,
            spec=None if keywords is None else specs.Parameterless(),
            keywords=keywords or (),
        )

    def init_fn(key, input_shape):
        out_shape = checked_shape(key, input_shape)
        params = jax.vmap(lambda k: layer.init_fn(k, input_shape)[1])(jax.random.split(key, n))
        return out_shape, params

    def apply_fn(params, x, **kwargs):
        def body(x, p):
            return layer.apply_fn(p, x, **kwargs), None

        if kwargs.get("mask_constant") is not None or has_masked(x):
            # The first step turns an array into a MaskedArray and may change
            # the mask's shape (Dense collapses channels): unroll it, so the
            # loop's carry keeps one structure.
            first = jax.tree_util.tree_map(lambda a: a[0], params)
            rest = jax.tree_util.tree_map(lambda a: a[1:], params)
            x = layer.apply_fn(first, x, **kwargs)
            return jax.lax.scan(body, x, rest, length=n - 1)[0] if n > 1 else x
        # `length`: a parameterless layer (an activation, Aggregate) stacks no
        # arrays from which scan could read it.
        return jax.lax.scan(body, x, params, length=n)[0]

    def transform(k, **kwargs):
        # The first application may change metadata (e.g. is_gaussian); the
        # rest must not, so only n - 1 steps go through the loop.
        k = layer.kernel_fn(k, **kwargs)
        if n == 1:
            return k
        return _loop(lambda k: layer.kernel_fn(k, **kwargs), k, n - 1)

    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        needs_full_spatial=layer.kernel_fn.needs_full_spatial,
        spec=specs.Repeat(layer, n),
        pairwise=layer.kernel_fn.pairwise,
        handles_masks=True,
    )
