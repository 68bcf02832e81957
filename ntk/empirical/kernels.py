r"""Empirical NNGP and NTK of any ``f(params, x)`` — neural-tangents' API.

For a function :math:`f(\theta, x)` (any JAX function: `ntk.stax` ``apply_fn``, Flax
linen ``lambda p, x: model.apply(p, x)``, an nnx module via `from_nnx`):

.. math::

    K(x_1, x_2) = f(\theta, x_1) \otimes f(\theta, x_2), \qquad
    \Theta(x_1, x_2) = \sum_{p} \frac{\partial f(\theta, x_1)}{\partial \theta_p}
    \otimes \frac{\partial f(\theta, x_2)}{\partial \theta_p} = J(x_1)\, J(x_2)^\top

(the NNGP and the NTK; Jacot et al. 2018, eq. 5),

both shaped by ``trace_axes`` and ``diagonal_axes`` as in neural-tangents (see
`ntk.empirical.axes`): the default ``trace_axes=(-1,)`` averages over the
logits, so ``f(x): (N, O)`` gives an ``(N1, N2)`` kernel, and
``trace_axes=()`` gives the full ``(N1, N2, O, O)`` kernel.

Implementations of the NTK (`NtkImplementation`, same values as NT):

* ``JACOBIAN_CONTRACTION``: reverse-mode Jacobians of both batches, contracted
  over the parameters;
* ``NTK_VECTOR_PRODUCTS``: for each output entry :math:`e` of ``x2`` the column
  :math:`\Theta e = J(x_1) (J(x_2)^\top e)` by a reverse pass then a forward-mode pass,
  mapped over entries in memory-bounded chunks; the Jacobian is never stored;
* ``STRUCTURED_DERIVATIVES``: for `ntk.stax` networks, layer by layer from
  Gram matrices of activations and cotangents (`ntk.empirical.structured`).
  Pass the network's `ntk.stax.Layer` (``stax.serial(...)`` itself) as ``f``. For any
  other function the whole function is one opaque layer and this is Jacobian
  contraction; so it is for a stax network with a layer that mixes examples
  (e.g. ``Index`` on the batch axis; `ntk.stax.spec.per_example`), since the
  layer-by-layer rule needs output example ``n`` to depend on input ``n`` only;
* ``AUTO`` (the default here; NT defaults to Jacobian contraction and its AUTO
  measured compiled FLOPs): structured for stax networks, otherwise the cheaper
  of the two generic methods by the cost rule of `ntk.empirical.cost`. All
  implementations compute the same numbers; only speed and memory differ.

The returned ``ntk_fn``/``nngp_fn`` are jitted: array keyword arguments are
traced, other keyword arguments (flags) are static.

Example:
  >>> import jax
  >>> from ntk import stax
  >>> from ntk.empirical import empirical_ntk_fn
  >>> x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
  >>> x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
  >>> layer = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(10))
  >>> _, params = layer.init_fn(jax.random.PRNGKey(2), x1.shape)
  >>> ntk_fn = empirical_ntk_fn(layer, trace_axes=())       # structured
  >>> ntk_fn(x1, x2, params).shape                          # (N1, N2, 10, 10)
  (3, 2, 10, 10)
  >>> ntk_fn = empirical_ntk_fn(layer.apply_fn, vmap_axes=0)  # generic, AUTO
  >>> ntk_fn(x1, None, params).shape                        # (N1, N1)
  (3, 3)
"""

from __future__ import annotations

import enum
import math
from typing import Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.empirical import batching, cost
from ntk.empirical.axes import check_axes_arg, einsum, kernel_indices, kernel_shape, outer
from ntk.empirical.structured import as_stax_layer, structured_ntk
from ntk.kernel import none_if_no_leaves, record_type
from ntk.stax.masking import MaskedArray, unmask_fn
from ntk.stax.spec import per_example

tree_map = jax.tree_util.tree_map
tree_leaves = jax.tree_util.tree_leaves

VECTOR_PRODUCTS_MEMORY = 2**28
"""Bytes of parameter-sized vectors NTK-vector products hold at once."""


class NtkImplementation(enum.IntEnum):
    r"""How the empirical NTK is computed (values as in neural-tangents).

    AUTO (0): structured for stax networks, else the cheaper of 1 and 2 by
      the rule in `ntk.empirical.cost`.
    JACOBIAN_CONTRACTION (1): :math:`J(x_1) J(x_2)^\top` from reverse-mode Jacobians;
      best for few outputs and weight-sharing networks (CNNs).
    NTK_VECTOR_PRODUCTS (2): columns :math:`J(x_1)(J(x_2)^\top e)` by a VJP then a JVP;
      best for many parameters relative to the forward cost (MLPs) and many
      outputs; stores no Jacobian.
    STRUCTURED_DERIVATIVES (3): layer-wise Gram products for `ntk.stax`
      networks (Novak et al. 2022's structure rules for Dense/Conv); Jacobian
      contraction for other functions.

    Example:
      All implementations compute the same kernel, here :math:`x_1 \cdot x_2` for the
      linear model :math:`x W`:

      >>> import numpy as np
      >>> from ntk.empirical import NtkImplementation, empirical_ntk_fn
      >>> [i.name for i in NtkImplementation]
      ['AUTO', 'JACOBIAN_CONTRACTION', 'NTK_VECTOR_PRODUCTS', 'STRUCTURED_DERIVATIVES']
      >>> W, x = np.ones((3, 2)), np.arange(6.).reshape(2, 3)
      >>> ntk_fn = empirical_ntk_fn(lambda W, x: x @ W, implementation="NTK_VECTOR_PRODUCTS")
      >>> bool(np.allclose(ntk_fn(x, None, W), x @ x.T))
      True
    """

    AUTO = 0
    JACOBIAN_CONTRACTION = 1
    NTK_VECTOR_PRODUCTS = 2
    STRUCTURED_DERIVATIVES = 3


DEFAULT_NTK_IMPLEMENTATION = NtkImplementation.AUTO


def check_implementation(implementation) -> NtkImplementation:
    if isinstance(implementation, str):
        key = implementation.strip().upper()
        if key in NtkImplementation.__members__:
            return NtkImplementation[key]
    elif isinstance(implementation, (int, np.integer)) and not isinstance(implementation, bool):
        if int(implementation) in {i.value for i in NtkImplementation}:
            return NtkImplementation(int(implementation))
    raise ValueError(
        f"empirical_ntk_fn: unknown `implementation` {implementation!r}; "
        f"expected one of " + ", ".join(f"{i.name} ({i.value})" for i in NtkImplementation) + "."
    )


def _resolve_f(f, name: str):
    layer = as_stax_layer(f)
    fn = layer.apply_fn if layer is not None else f
    if not callable(fn):
        raise TypeError(
            f"{name}: `f` must be a function f(params, x, **kwargs) or "
            f"an ntk.stax Layer; got {type(f).__name__}."
        )
    return layer, fn


def _check_inputs(x1, x2, name: str, params=None):
    """``x1`` given, ``x2`` None or of ``x1``'s structure; inputs and
    parameters finite (when concrete)."""
    if x1 is None:
        raise ValueError(f"{name}: `x1` must be given (x2=None means x2 = x1).")
    if x2 is not None:
        t1, t2 = jax.tree_util.tree_structure(x1), jax.tree_util.tree_structure(x2)
        if t1 != t2:  # type: ignore[operator]
            raise ValueError(
                f"{name}: `x1` and `x2` must have the same structure; got {t1} and {t2}."
            )
    for arg, tree in (("x1", x1), ("x2", x2), ("params", params)):
        for leaf in jax.tree_util.tree_leaves(tree):
            if not hasattr(leaf, "dtype"):
                leaf = np.asarray(leaf)
            if leaf.dtype == object or not (
                jnp.issubdtype(leaf.dtype, jnp.number) or jnp.issubdtype(leaf.dtype, jnp.bool_)
            ):
                raise TypeError(
                    f"{name}: `{arg}` must hold numeric arrays; got dtype {leaf.dtype}."
                )
        _checks.require_finite(tree, arg, name)


def _without_masks(layer, fn, params, x, kw):
    """``(layer, fn)``, or ``(None, unmask_fn(fn))`` if ``fn`` returns masked
    outputs (`ntk.stax.MaskedArray`, from ``mask_constant=`` or masked inputs).

    The kernel is then that of the outputs with masked entries zeroed, as
    neural-tangents asks users to arrange with ``unmask_fn``; it is computed
    from the whole function (the structured method needs plain arrays at
    every layer, so it becomes Jacobian contraction).
    """
    out = jax.eval_shape(lambda p, x: fn(p, x, **kw), params, x)
    masked = isinstance(out, MaskedArray) or any(
        isinstance(o, MaskedArray)
        for o in jax.tree_util.tree_leaves(out, is_leaf=lambda o: isinstance(o, MaskedArray))
    )
    return (None, unmask_fn(fn)) if masked else (layer, fn)


def _outputs(fn, params, x1, x2, kw1, kw2):
    fx1 = jax.eval_shape(lambda p, x: fn(p, x, **kw1), params, x1)
    fx2 = fx1 if x2 is None else jax.eval_shape(lambda p, x: fn(p, x, **kw2), params, x2)
    l1, t1 = jax.tree_util.tree_flatten(fx1)
    l2, t2 = jax.tree_util.tree_flatten(fx2)
    if t1 != t2:  # type: ignore[operator]
        raise ValueError(
            f"empirical kernel: f(x1) and f(x2) must have the same structure; got {t1} and {t2}."
        )
    return fx1, fx2, l1, l2, t1


# ---------------------------------------------------------------------- NNGP


def empirical_nngp_fn(f, trace_axes=(-1,), diagonal_axes=()) -> Callable:
    r"""``nngp_fn(x1, x2, params, **kw)``: one draw of the NNGP :math:`f(x_1) \otimes f(x_2)`.

    Shape conventions as in `ntk.empirical.axes`; traced axes are averaged.
    For pytree outputs each leaf gets its own kernel (no cross terms).

    Example:
      One draw of :math:`f(x_1) f(x_2)^\top`, averaged over the outputs
      (``trace_axes=(-1,)``):

      >>> import numpy as np
      >>> from ntk.empirical import empirical_nngp_fn
      >>> f = lambda W, x: x @ W                                     # 2 outputs
      >>> W, x1, x2 = np.array([[1., 0.], [2., 1.]]), np.eye(2), np.ones((3, 2))
      >>> k = empirical_nngp_fn(f)(x1, x2, W)                        # (N1, N2)
      >>> k.shape, bool(np.allclose(k, (x1 @ W) @ (x2 @ W).T / 2))
      ((2, 3), True)
    """
    trace_axes = check_axes_arg(trace_axes, "trace_axes")
    diagonal_axes = check_axes_arg(diagonal_axes, "diagonal_axes")
    _, fn = _resolve_f(f, "empirical_nngp_fn")

    def nngp_fn(x1, x2, params, **apply_fn_kwargs):
        _check_inputs(x1, x2, "nngp_fn", params)
        kw1, kw2 = batching.split_kwargs(apply_fn_kwargs, x1, x2)
        _, fn_ = _without_masks(None, fn, params, x1, kw1)
        _, _, s1, s2, treedef = _outputs(fn_, params, x1, x2, kw1, kw2)
        for a, b in zip(s1, s2):  # shape checks before any computation
            kernel_indices(a.shape, b.shape, trace_axes, diagonal_axes)
        out1 = fn_(params, x1, **kw1)
        out2 = out1 if x2 is None else fn_(params, x2, **kw2)
        kernels = [
            outer(a, b, kernel_indices(a.shape, b.shape, trace_axes, diagonal_axes))
            for a, b in zip(tree_leaves(out1), treedef.flatten_up_to(out2))
        ]
        return treedef.unflatten(kernels)

    return jit_kernel(nngp_fn, "nngp_fn")


# ----------------------------------------------------------------------- NTK


def empirical_ntk_fn(
    f,
    trace_axes=(-1,),
    diagonal_axes=(),
    vmap_axes=None,
    implementation: Union[NtkImplementation, int] = DEFAULT_NTK_IMPLEMENTATION,
) -> Callable:
    r"""``ntk_fn(x1, x2, params, **kw)``: one draw of the empirical NTK :math:`J(x_1) J(x_2)^\top`.

    Args:
      f: ``f(params, x, **kwargs)`` returning an array or pytree, or an
        `ntk.stax.Layer` (``stax.serial(...)``), which enables the structured
        method.
      trace_axes: output axes averaged over their diagonal (default: logits).
      diagonal_axes: output axes on which only the diagonal is kept.
      vmap_axes: None, an int, or ``(in_axes, out_axes, kwargs_axes)``: promises
        that examples along these axes do not interact, so Jacobians are taken
        one example at a time (faster). Wrong if the batch interacts (batch
        norm). Not needed by the structured method (stax layers never mix
        examples).
      implementation: an `NtkImplementation` (or its int or name).

    Returns:
      ``ntk_fn(x1, x2, params, **apply_fn_kwargs)`` (``x2=None`` means ``x1``)
      returning the kernel; its shape is ``zip(f(x1).shape, f(x2).shape)``
      minus traced axes, with diagonal axes once. Keyword arguments are split
      between ``x1`` and ``x2`` like NT (pairs ``(a, b)``; ``rng`` folded).

    Example:
      A linear model :math:`x W` has the NTK :math:`(x_1 \cdot x_2) I` at any :math:`W`:

      >>> import numpy as np
      >>> from ntk.empirical import empirical_ntk_fn
      >>> f = lambda W, x: x @ W                                     # 2 outputs
      >>> W, x1, x2 = np.zeros((3, 2)), np.eye(3)[:2], np.ones((4, 3))
      >>> k = empirical_ntk_fn(f, trace_axes=())(x1, x2, W)          # (N1, N2, 2, 2)
      >>> k.shape, bool(np.allclose(k, np.einsum("ij,ab->ijab", x1 @ x2.T, np.eye(2))))
      ((2, 4, 2, 2), True)
    """
    trace_axes = check_axes_arg(trace_axes, "trace_axes")
    diagonal_axes = check_axes_arg(diagonal_axes, "diagonal_axes")
    implementation = check_implementation(implementation)
    layer, fn = _resolve_f(f, "empirical_ntk_fn")
    decisions = {}

    def ntk_fn(x1, x2, params, **apply_fn_kwargs):
        _check_inputs(x1, x2, "ntk_fn", params)
        kw1, kw2 = batching.split_kwargs(apply_fn_kwargs, x1, x2)
        layer_, fn_ = _without_masks(layer, fn, params, x1, kw1)
        fx1, fx2, s1, s2, treedef = _outputs(fn_, params, x1, x2, kw1, kw2)
        for a, b in zip(s1, s2):
            kernel_indices(a.shape, b.shape, trace_axes, diagonal_axes)
        b = batching.canonicalize_vmap_axes(vmap_axes, x1, fx1, kw1)
        impl = implementation
        if impl == NtkImplementation.AUTO:
            key = _shape_key(x1, x2, params, apply_fn_kwargs)
            if key not in decisions:
                decisions[key] = _auto(
                    layer_, fn_, params, x1, x2, kw1, kw2, b, s1, s2, trace_axes, diagonal_axes
                )
            impl = decisions[key]
        if (
            impl == NtkImplementation.STRUCTURED_DERIVATIVES
            and layer_ is not None
            and per_example(layer_)
        ):
            return structured_ntk(layer_, params, x1, x2, kw1, kw2, trace_axes, diagonal_axes)
        if impl == NtkImplementation.NTK_VECTOR_PRODUCTS:
            kernels = _vector_products(
                fn_, params, x1, x2, kw1, kw2, b, s1, s2, treedef, trace_axes, diagonal_axes
            )
        else:
            kernels = _jacobian_contraction(
                fn_, params, x1, x2, kw1, kw2, b, s1, s2, treedef, trace_axes, diagonal_axes
            )
        return treedef.unflatten(kernels)

    return jit_kernel(ntk_fn, "ntk_fn")


def jit_kernel(fn: Callable, name: str = "kernel_fn") -> Callable:
    """``jax.jit`` of ``fn(x1, x2, params, **kw)``; array keyword arguments are
    traced, the others (flags such as ``train=False``) are static. Inputs are
    checked (structure, finiteness) before compilation, where they are
    concrete."""
    compiled = {}

    def wrapper(x1, x2, params, **kwargs):
        x2 = none_if_no_leaves(x2)
        _check_inputs(x1, x2, name, params)
        arrays = {k: v for k, v in kwargs.items() if _is_array_tree(v)}
        static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
        try:
            hash(static)
        except TypeError:  # unhashable configuration: run without jit
            return fn(x1, x2, params, **kwargs)
        if static not in compiled:
            compiled[static] = jax.jit(lambda a, b, p, kw: fn(a, b, p, **kw, **dict(static)))
        return compiled[static](x1, x2, params, arrays)

    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _is_array_tree(v) -> bool:
    leaves = tree_leaves(v)
    return bool(leaves) and all(isinstance(l, (jax.Array, np.ndarray)) for l in leaves)


def auto_implementation(
    f, x1, x2, params, trace_axes=(-1,), diagonal_axes=(), vmap_axes=None, **apply_fn_kwargs
) -> NtkImplementation:
    """The method ``implementation=AUTO`` uses for these arguments.

    STRUCTURED_DERIVATIVES for `ntk.stax` networks whose layers keep examples
    apart (`ntk.stax.spec.per_example`); otherwise NTK_VECTOR_PRODUCTS
    when it needs fewer FLOPs than JACOBIAN_CONTRACTION or the Jacobians would
    exceed ``JACOBIAN_MEMORY_BUDGET`` (`ntk.empirical.cost`) bytes, else
    JACOBIAN_CONTRACTION (rule and estimates in `ntk.empirical.cost`).

    Example:
      >>> import jax, numpy as np
      >>> from ntk import stax
      >>> from ntk.empirical import NtkImplementation, auto_implementation
      >>> net = stax.Dense(2)
      >>> x = np.ones((2, 3))
      >>> _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
      >>> auto_implementation(net, x, None, params).name                # a stax Layer
      'STRUCTURED_DERIVATIVES'
      >>> auto_implementation(net.apply_fn, x, None, params) in (      # any function
      ...     NtkImplementation.JACOBIAN_CONTRACTION, NtkImplementation.NTK_VECTOR_PRODUCTS)
      True
    """
    trace_axes = check_axes_arg(trace_axes, "trace_axes")
    diagonal_axes = check_axes_arg(diagonal_axes, "diagonal_axes")
    layer, fn = _resolve_f(f, "auto_implementation")
    _check_inputs(x1, x2, "auto_implementation", params)
    kw1, kw2 = batching.split_kwargs(apply_fn_kwargs, x1, x2)
    layer, fn = _without_masks(layer, fn, params, x1, kw1)
    fx1, _, s1, s2, _ = _outputs(fn, params, x1, x2, kw1, kw2)
    b = batching.canonicalize_vmap_axes(vmap_axes, x1, fx1, kw1)
    return _auto(layer, fn, params, x1, x2, kw1, kw2, b, s1, s2, trace_axes, diagonal_axes)


def _shape_key(*trees):
    leaves, treedef = jax.tree_util.tree_flatten(trees)
    return treedef, tuple((np.shape(l), str(getattr(l, "dtype", type(l)))) for l in leaves)


def _n_params(params) -> int:
    return sum(int(np.size(p)) for p in tree_leaves(params))


def _auto(
    layer, fn, params, x1, x2, kw1, kw2, b, s1, s2, trace_axes, diagonal_axes
) -> NtkImplementation:
    if layer is not None and per_example(layer):
        return NtkImplementation.STRUCTURED_DERIVATIVES
    n_params = _n_params(params)
    first = lambda x: tree_leaves(x)[0].shape[0] if tree_leaves(x) else 1
    n1 = batching.batch_size(x1, b) if b is not None else first(x1)
    n2 = n1 if x2 is None else (batching.batch_size(x2, b) if b is not None else first(x2))
    f1 = cost.forward_flops(fn, params, x1, kw1, n_params, n1)
    f2 = f1 if x2 is None else cost.forward_flops(fn, params, x2, kw2, n_params, n2)
    entries = 0
    for a, c in zip(s1, s2):
        idx = kernel_indices(a.shape, c.shape, trace_axes, diagonal_axes)
        entries += math.prod(kernel_shape(a.shape, c.shape, idx)) * idx.trace_size
    itemsize = max([np.dtype(p.dtype).itemsize for p in tree_leaves(params)] or [4])
    costs = cost.ntk_costs(
        n_params,
        f1,
        f2,
        sum(math.prod(a.shape) for a in s1),
        sum(math.prod(a.shape) for a in s2),
        n1,
        n2,
        entries,
        b is not None,
        x2 is None,
        itemsize,
    )
    if cost.prefers_vector_products(costs):
        return NtkImplementation.NTK_VECTOR_PRODUCTS
    return NtkImplementation.JACOBIAN_CONTRACTION


# ------------------------------------------------------ Jacobian contraction


def _jacobian(fn, params, x, kw, b):
    """``∂f(x)/∂θ``: a pytree (outputs) of pytrees (params) of arrays."""
    if b is None:
        return jax.jacrev(lambda p: fn(p, x, **kw))(params)
    single = batching.single_example_fn(fn, b, kw)
    one = lambda xi, kwi: jax.jacrev(lambda p: single(p, xi, kwi))(params)
    return jax.vmap(one, in_axes=(b.x_axis, b.kw_axes), out_axes=b.fx_axis)(
        x, batching.batched_kwargs(b, kw)
    )


def _jacobian_contraction(
    fn, params, x1, x2, kw1, kw2, b, s1, s2, treedef, trace_axes, diagonal_axes
):
    j1 = _jacobian(fn, params, x1, kw1, b)
    j2 = j1 if x2 is None else _jacobian(fn, params, x2, kw2, b)
    out = []
    for a, c, ja, jc in zip(s1, s2, treedef.flatten_up_to(j1), treedef.flatten_up_to(j2)):
        idx = kernel_indices(a.shape, c.shape, trace_axes, diagonal_axes)
        k = jnp.zeros(kernel_shape(a.shape, c.shape, idx), a.dtype)
        for pa, pc in zip(tree_leaves(ja), tree_leaves(jc)):
            k = k + outer(pa, pc, idx, pa.ndim - len(a.shape))
        out.append(k)
    return out


# --------------------------------------------------- NTK-vector products


def _chunk(params, per_column: int, total: int) -> int:
    leaves = tree_leaves(params)
    itemsize = max([np.dtype(p.dtype).itemsize for p in leaves] or [4])
    size = (_n_params(params) + per_column) * itemsize
    return int(max(1, min(total, VECTOR_PRODUCTS_MEMORY // max(size, 1))))


def _vector_products(fn, params, x1, x2, kw1, kw2, b, s1, s2, treedef, trace_axes, diagonal_axes):
    out = []
    for k, (a, c) in enumerate(zip(s1, s2)):
        leaf = lambda tree, k=k: treedef.flatten_up_to(tree)[k]
        idx = kernel_indices(a.shape, c.shape, trace_axes, diagonal_axes)
        if b is None:
            cols = _columns_full(fn, leaf, params, x1, x2, kw1, kw2, a, c)
            labels = idx.rhs + idx.lhs
        else:
            axis = jax.tree_util.tree_leaves(b.fx_axis)[k]
            rhs_rest = idx.rhs[:axis] + idx.rhs[axis + 1 :]
            if idx.lhs[axis] == idx.rhs[axis]:  # batch traced or diagonal
                cols = _columns_paired(fn, leaf, params, x1, x2, kw1, kw2, b, a, c, axis)
                labels = (idx.lhs[axis],) + rhs_rest + idx.lhs[:axis] + idx.lhs[axis + 1 :]
            else:
                cols = _columns_separable(fn, leaf, params, x1, x2, kw1, kw2, b, a, c, axis)
                labels = (idx.rhs[axis],) + rhs_rest + idx.lhs
        out.append(einsum(cols, labels, out=idx.out) / idx.trace_size)
    return out


def _basis(i, shape, dtype):
    return jax.nn.one_hot(i, math.prod(shape), dtype=dtype).reshape(shape)


def _columns_full(fn, leaf, params, x1, x2, kw1, kw2, a, c):
    """``Θ[..., e]`` for every entry e of f(x2): array ``(*c.shape, *a.shape)``."""
    f1 = lambda p: leaf(fn(p, x1, **kw1))
    f2 = f1 if x2 is None else (lambda p: leaf(fn(p, x2, **kw2)))
    _, pull2 = jax.vjp(f2, params)
    _, push1 = jax.linearize(f1, params)

    def column(i):
        return push1(pull2(_basis(i, c.shape, c.dtype))[0])

    total = math.prod(c.shape)
    cols = jax.lax.map(
        column, jnp.arange(total), batch_size=_chunk(params, math.prod(a.shape), total)
    )
    return cols.reshape(tuple(c.shape) + tuple(a.shape))


def _columns_separable(fn, leaf, params, x1, x2, kw1, kw2, b, a, c, axis):
    """Columns from single examples m of x2: array ``(N2, *c_single, *a.shape)``."""
    x2, kw2 = (x1, kw1) if x2 is None else (x2, kw2)
    single2 = batching.single_example_fn(fn, b, kw2)
    kwb2 = batching.batched_kwargs(b, kw2)
    f1 = lambda p: leaf(fn(p, x1, **kw1))
    _, push1 = jax.linearize(f1, params)
    c_single = tuple(c.shape[:axis] + c.shape[axis + 1 :])
    per = math.prod(c_single)

    def column(i):
        m, o = jnp.divmod(i, per)
        xm, kwm = batching.take(x2, b.x_axis, m), batching.take(kwb2, b.kw_axes, m)
        _, pull = jax.vjp(lambda p: leaf(single2(p, xm, kwm)), params)
        return push1(pull(_basis(o, c_single, c.dtype))[0])

    total = c.shape[axis] * per
    cols = jax.lax.map(
        column, jnp.arange(total), batch_size=_chunk(params, math.prod(a.shape), total)
    )
    return cols.reshape((c.shape[axis],) + c_single + tuple(a.shape))


def _columns_paired(fn, leaf, params, x1, x2, kw1, kw2, b, a, c, axis):
    """Only same-example blocks (batch axis traced or diagonal):
    array ``(N, *c_single, *a_single)``."""
    x2_, kw2_ = (x1, kw1) if x2 is None else (x2, kw2)
    single1 = batching.single_example_fn(fn, b, kw1)
    single2 = batching.single_example_fn(fn, b, kw2_)
    kwb1, kwb2 = batching.batched_kwargs(b, kw1), batching.batched_kwargs(b, kw2_)
    c_single = tuple(c.shape[:axis] + c.shape[axis + 1 :])
    a_single = tuple(a.shape[:axis] + a.shape[axis + 1 :])
    per = math.prod(c_single)

    def column(i):
        n, o = jnp.divmod(i, per)
        x1n, kw1n = batching.take(x1, b.x_axis, n), batching.take(kwb1, b.kw_axes, n)
        x2n, kw2n = batching.take(x2_, b.x_axis, n), batching.take(kwb2, b.kw_axes, n)
        _, pull = jax.vjp(lambda p: leaf(single2(p, x2n, kw2n)), params)
        v = pull(_basis(o, c_single, c.dtype))[0]
        return jax.jvp(lambda p: leaf(single1(p, x1n, kw1n)), (params,), (v,))[1]

    total = c.shape[axis] * per
    cols = jax.lax.map(
        column, jnp.arange(total), batch_size=_chunk(params, math.prod(a_single), total)
    )
    return cols.reshape((c.shape[axis],) + c_single + a_single)


# ---------------------------------------------------------- joint kernel_fn


def empirical_kernel_fn(
    f,
    trace_axes=(-1,),
    diagonal_axes=(),
    vmap_axes=None,
    implementation: Union[NtkImplementation, int] = DEFAULT_NTK_IMPLEMENTATION,
) -> Callable:
    """``kernel_fn(x1, x2, get, params, **kw)``: one draw of the NNGP and/or NTK.

    ``get`` is ``"nngp"``, ``"ntk"``, a tuple of them, or None (both). A string
    returns the kernel; otherwise a namedtuple ``EmpiricalKernel`` with the
    requested fields (one per output leaf for pytree outputs). Arguments as in
    `empirical_nngp_fn` and `empirical_ntk_fn`; ``vmap_axes`` and
    ``implementation`` only affect the NTK.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> from ntk.empirical import empirical_kernel_fn
      >>> f = lambda W, x: jnp.sin(x @ W)
      >>> W, x = np.ones((3, 2)), np.arange(6.).reshape(2, 3) / 6
      >>> k = empirical_kernel_fn(f)(x, None, ("nngp", "ntk"), W)    # a namedtuple
      >>> type(k).__name__, k.nngp.shape, k.ntk.shape
      ('EmpiricalKernel', (2, 2), (2, 2))
    """
    implementation = check_implementation(implementation)
    fns = {
        "nngp": empirical_nngp_fn(f, trace_axes, diagonal_axes),
        "ntk": empirical_ntk_fn(f, trace_axes, diagonal_axes, vmap_axes, implementation),
    }

    def kernel_fn(x1, x2, get, params, **apply_fn_kwargs):
        names, single = canonicalize_get(get, "kernel_fn")
        # `fns` (`jit_kernel`) read x2 = (None, None) as x2 = x1 themselves.
        out = {g: fns[g](x1, x2, params, **apply_fn_kwargs) for g in names}
        if single:
            return out[names[0]]
        record = record_type("EmpiricalKernel", tuple(names))
        leaves = [jax.tree_util.tree_leaves(out[g]) for g in names]
        treedef = jax.tree_util.tree_structure(out[names[0]])
        return treedef.unflatten([record(*vals) for vals in zip(*leaves)])  # type: ignore[attr-defined]

    return kernel_fn


def canonicalize_get(get, name: str) -> tuple[tuple, bool]:
    """``get`` -> (names, whether a single string was given)."""
    if get is None:
        return ("nngp", "ntk"), False
    names = (get,) if isinstance(get, str) else get
    if (
        not isinstance(names, (tuple, list))
        or not names
        or any(g not in ("nngp", "ntk") for g in names)
    ):
        raise ValueError(
            f"{name}: `get` must be None, 'nngp', 'ntk' or a tuple of them; got {get!r}."
        )
    return tuple(names), isinstance(get, str)
