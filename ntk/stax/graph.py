r"""Graph neural networks: neighbourhood aggregation (neural-tangents' `Aggregate`).

Each input ``x`` of shape ``(N, X_1, ..., X_d, C)`` comes with a graph on
the positions of some of its spatial axes, the *aggregate axes* (all spatial
axes by default; :math:`V` = the number of positions along them), given per
example as a weighted adjacency :math:`A[n, a, b]` (an arc from vertex :math:`a` to
vertex :math:`b` of weight :math:`A[n, a, b]`). Aggregation replaces every vertex by
the weighted sum of its direct predecessors,

.. math::

    y[n, b] = \sum_a A[n, a, b]\, x[n, a]
    \qquad \text{(each channel and each other position alike).}

Having no weights, the layer maps Gaussian processes to Gaussian processes,
and its kernel is the bilinear form of the two inputs' graphs (Du et al.
2019, "Graph neural tangent kernel", eq. 4–5):

.. math::

    K'(x_i, x'_j)[a, b] = \sum_{s, t} A_i[s, a]\, K(x_i, x'_j)[s, t]\, A'_j[t, b],

the same for :math:`\Theta`, and ``cov1``/``cov2`` with :math:`A_i` on both sides. It mixes
positions, so the kernel keeps covariances between positions
(``needs_full_spatial``).

Patterns. ``implementation="DENSE"``: ``pattern`` is the adjacency of shape
``(N, *S_agg, *S_agg)`` (``S_agg`` the sizes of the aggregate axes), or any
array that ``to_dense`` turns into it. ``implementation="SPARSE"``:
``pattern`` is an integer edge list ``(N, E, K, 2)`` of :math:`K`-D vertex
coordinates (``(N, E, 2)`` also allowed when :math:`K = 1`), ``[..., 0]`` the
tail (sender), ``[..., 1]`` the head (receiver); repeated edges add up, and
edges with a negative coordinate are padding and ignored (so that graphs of
different edge counts batch together). ``apply_fn`` then costs :math:`O(E)` per
example (`jax.ops.segment_sum`) instead of :math:`O(V^2)`. In the kernel, segment
sums cost :math:`O(V (E_i + E'_j))` per pair of inputs instead of the dense
:math:`O(V^3)`, but a scatter-add costs hundreds of matmul flops on CPU, so edge
lists are turned into dense edge counts there unless :math:`E < V^2 / 256`.

``apply_fn(params, x, pattern=A)`` takes one pattern; ``kernel_fn(x1, x2,
pattern=(A1, A2))`` takes one per input batch (with ``x2=None``,
``(A1, A1)``; as in neural-tangents the pair is unpacked along its first
axis, so an array stacking ``A1`` and ``A2`` works too). Graphs of different sizes
batch together by padding nodes and masking them (`ntk.stax.masking`): padded
nodes are zeroed in the layer's input and their covariances zeroed after it.

Example:
  A two-layer graph network on padded graphs (the second graph's last node is
  padding), read out by the mean over real nodes:

  >>> import jax, jax.numpy as jnp
  >>> from ntk import stax
  >>> net = stax.serial(stax.Dense(64), stax.Aggregate(), stax.Relu(),
  ...                   stax.Dense(64), stax.Aggregate(), stax.Relu(),
  ...                   stax.GlobalAvgPool(), stax.Dense(1))
  >>> features = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4))   # (N, V, C)
  >>> padded_node = jnp.array([[False, False, False], [False, False, True]])
  >>> A = jnp.ones((2, 3, 3)) - jnp.eye(3)                           # (N, V, V)
  >>> x = jnp.where(padded_node[..., None], 1e9, features)
  >>> net.kernel_fn(x, None, "ntk", pattern=(A, A), mask_constant=1e9).shape
  (2, 2)
"""

from __future__ import annotations

import enum
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.kernel import Kernel
from ntk.stax import spec as specs
from ntk.stax.layer import Layer, make_layer
from ntk.stax.linear import check_channel_axis
from ntk.stax.masking import position_mask
from ntk.stax.spatial import require_full

HP = jax.lax.Precision.HIGHEST


class AggregateImplementation(str, enum.Enum):
    r"""How `Aggregate` reads ``pattern``: a dense adjacency or an edge list.

    Example:
      The path :math:`0 \to 1 \to 2` as an edge list (``SPARSE``) and as an adjacency
      (``DENSE``) aggregates alike:

      >>> import jax, jax.numpy as jnp
      >>> from ntk import stax
      >>> x = jnp.arange(6.).reshape(1, 3, 2)                      # (N, V, C)
      >>> edges = jnp.array([[[0, 1], [1, 2]]])                    # (N, E, 2)
      >>> A = jnp.array([[[0., 1., 0.], [0., 0., 1.], [0., 0., 0.]]])  # (N, V, V)
      >>> sparse = stax.Aggregate(implementation=stax.AggregateImplementation.SPARSE)
      >>> y = jax.jit(sparse.apply_fn)((), x, pattern=edges)
      >>> y[0].tolist()                                 # y[b] = Σ_a A[a, b] x[a]
      [[0.0, 0.0], [0.0, 1.0], [2.0, 3.0]]
      >>> bool(jnp.allclose(y, stax.Aggregate().apply_fn((), x, pattern=A)))
      True
    """

    DENSE = "DENSE"
    SPARSE = "SPARSE"


def Aggregate(
    aggregate_axis=None,
    batch_axis: int = 0,
    channel_axis: int = -1,
    to_dense: Optional[Callable] = lambda p: p,
    implementation: str = AggregateImplementation.DENSE.value,
) -> Layer:
    r"""Sum of each vertex's predecessors along ``aggregate_axis`` (graph networks).

    See the module docstring for the formulas and pattern formats.

    Args:
      aggregate_axis: the input axes the graph lives on: None (all spatial
        axes), an int or a tuple of ints (never the batch or channel axis).
      batch_axis, channel_axis: 0 and -1 (channels last) only.
      to_dense: ``DENSE`` only: maps each ``pattern`` given to ``apply_fn`` /
        ``kernel_fn`` to the dense adjacency ``(N, *S_agg, *S_agg)``
        (default: the identity).
      implementation: ``"DENSE"`` or ``"SPARSE"`` (`AggregateImplementation`).

    ``apply_fn(params, x, pattern=A)``: :math:`y[n, b] = \sum_a A[n, a, b]\, x[n, a]`
    (``pattern=None``: the identity). ``kernel_fn(x1, x2, pattern=(A1, A2))``:
    :math:`K'[i, j] = A_1[i]^\top K[i, j]\, A_2[j]` on the aggregate axes.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk import stax
      >>> _, apply_fn, kernel_fn = stax.serial(stax.Dense(32), stax.Aggregate(),
      ...                                      stax.Relu(), stax.GlobalAvgPool())
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4))     # (N, V, C)
      >>> A = jnp.broadcast_to(jnp.eye(3, k=1), (2, 3, 3))           # a path, (N, V, V)
      >>> kernel_fn(x, None, "nngp", pattern=(A, A)).shape
      (2, 2)
    """
    name = "Aggregate"
    check_channel_axis(channel_axis, batch_axis, name)
    try:
        impl = AggregateImplementation(
            implementation.upper() if isinstance(implementation, str) else implementation
        )
    except ValueError:
        impl = None
    if impl is None:
        raise ValueError(
            f"{name}: `implementation` must be one of "
            f"{[i.value for i in AggregateImplementation]}; got "
            f"{implementation!r}."
        )
    if to_dense is None:
        to_dense = _identity
    if not callable(to_dense):
        raise TypeError(
            f"{name}: `to_dense` must be a function pattern -> dense "
            f"adjacency; got {type(to_dense).__name__}."
        )
    if aggregate_axis is not None:
        axes_in = (
            (aggregate_axis,) if isinstance(aggregate_axis, (int, np.integer)) else aggregate_axis
        )
        try:
            axes_in = tuple(axes_in)
        except TypeError:
            axes_in = None
        if not axes_in or not all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes_in
        ):
            raise ValueError(
                f"{name}: `aggregate_axis` must be None, an int or a "
                f"non-empty tuple of ints; got {aggregate_axis!r}."
            )

    def agg_axes(ndim: int) -> tuple:
        """Spatial indices (0-based, among the ``ndim - 2`` spatial axes)."""
        if ndim < 3:
            raise ValueError(
                f"{name}: needs inputs with at least one spatial "
                f"axis, (N, X_1, ..., C); got rank {ndim}."
            )
        if aggregate_axis is None:
            return tuple(range(ndim - 2))
        out = []
        for a in axes_in:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"{name}: `aggregate_axis` {aggregate_axis!r} is out "
                    f"of range for inputs of rank {ndim}."
                )
            a = int(a) % ndim
            if a in (0, ndim - 1):
                raise ValueError(
                    f"{name}: `aggregate_axis` must name spatial "
                    f"axes (1..{ndim - 2}), not the batch (0) or "
                    f"channel ({ndim - 1}) axis; got {aggregate_axis!r}."
                )
            out.append(a - 1)
        if len(set(out)) != len(out):
            raise ValueError(f"{name}: `aggregate_axis` has repeated axes: {aggregate_axis!r}.")
        return tuple(sorted(out))

    def graph(pattern, shape, what: str, for_kernel: bool = False):
        """The pattern as ``("dense", A (N, V, V))`` or ``("sparse", (s, r))``."""
        spatial = tuple(shape[1:-1])
        agg = agg_axes(len(shape))
        agg_shape = tuple(spatial[i] for i in agg)
        if impl is AggregateImplementation.DENSE:
            return "dense", _dense_pattern(to_dense(pattern), shape[0], agg_shape, name, what)
        senders, receivers = _sparse_pattern(pattern, shape[0], agg_shape, name, what)
        v, n_edges = math.prod(agg_shape), senders.shape[1]
        if for_kernel and v * v <= _SPARSE_ADVANTAGE * max(n_edges, 1):
            return "dense", _edge_counts(senders, receivers, v)
        return "sparse", (senders, receivers)

    def apply_fn(params, x, pattern=None, **kwargs):
        if pattern is None:
            return x
        if isinstance(pattern, (tuple, list)):
            raise TypeError(
                f"{name}: apply_fn takes one `pattern` for its input "
                f"batch; a pair (pattern1, pattern2) is for kernel_fn."
            )
        agg = agg_axes(x.ndim)
        kind, g = graph(pattern, x.shape, "pattern")
        src = tuple(1 + i for i in agg)
        xt = jnp.moveaxis(x, src, tuple(range(1, 1 + len(agg))))
        moved = xt.shape
        xt = xt.reshape(x.shape[0], math.prod(moved[1 : 1 + len(agg)]), -1)
        if kind == "dense":
            y = jnp.einsum("nar,nab->nbr", xt, g.astype(x.dtype), precision=HP)
        else:
            senders, receivers = g
            y = jax.vmap(lambda v, s, r: jax.ops.segment_sum(v[s], r, num_segments=v.shape[0]))(
                xt, senders, receivers
            )
        y = y.reshape(moved)
        return jnp.moveaxis(y, tuple(range(1, 1 + len(agg))), src)

    def transform(k: Kernel, pattern=None, **kwargs) -> Kernel:
        p1, p2 = _pattern_pair(pattern, k, name)
        if p1 is None:
            return k
        require_full(k, name)
        agg = agg_axes(len(k.shape1))
        g1 = graph(p1, k.shape1, "pattern[0]", for_kernel=True)
        g2 = g1 if k.cov2 is None else graph(p2, k.shape2, "pattern[1]", for_kernel=True)
        d = k.spatial_ndim
        nngp, ntk = k.map_nngp_ntk(lambda m: _aggregate(m, 2, agg, d, g1, g2))
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=_aggregate(k.cov1, 1, agg, d, g1, g1),
            cov2=_aggregate(k.cov2, 1, agg, d, g2, g2),
        )

    # Padded vertices: a vertex is padding when all its channels are; arcs
    # into it make its output non-zero, hence the remask.
    return make_layer(
        name,
        lambda key, shape: (tuple(shape), ()),
        apply_fn,
        transform,
        needs_full_spatial=True,
        spec=specs.Parameterless(),
        mask_fn=lambda mask, shape: position_mask(mask),
        remask=True,
        keywords=("pattern",),
    )


def _identity(p):
    return p


# In the kernel, an edge list costs V·E scatter-adds per pair of inputs and a
# dense adjacency V³ matmul flops; on CPU a scatter-add costs ~100-600 matmul
# flops (measured for V = 24-256), so edge lists are turned into dense edge
# counts unless the graph is sparser than E < V² / 256.
_SPARSE_ADVANTAGE = 256


def _edge_counts(senders, receivers, v: int):
    """Dense ``(N, V, V)`` counts of the edges (padding edges, whose receiver
    is ``V``, are dropped)."""
    n = senders.shape[0]
    rows = jnp.arange(n)[:, None]
    return jnp.zeros((n, v, v)).at[rows, senders, receivers].add(1.0, mode="drop")


def _pattern_pair(pattern, k: Kernel, name: str):
    """``(pattern1, pattern2)`` from ``kernel_fn``'s ``pattern`` keyword.

    As in neural-tangents the keyword is always a pair, unpacked along its
    first axis: a tuple ``(A1, A2)`` or an array stacking two patterns.
    """
    if pattern is None:
        return None, None
    try:
        n = len(pattern)
    except TypeError:
        n = None
    if n != 2:
        raise ValueError(
            f"{name}: kernel_fn's `pattern` must be a pair "
            f"(pattern1, pattern2), one per input batch (with "
            f"x2=None: (pattern1, pattern1)); got "
            f"{type(pattern).__name__} of length {n}. A single "
            f"pattern is for apply_fn."
        )
    p1, p2 = pattern[0], pattern[1]
    if k.cov2 is None:  # x2 is x1: the first pattern serves both arguments
        p1 = p2 if p1 is None else p1
        return p1, p1
    if p1 is None and p2 is None:
        return None, None
    if p1 is None or p2 is None:
        raise ValueError(
            f"{name}: with two input batches kernel_fn needs "
            f"`pattern=(pattern1, pattern2)` with both given; got "
            f"{'pattern1' if p1 is None else 'pattern2'} = None."
        )
    return p1, p2


def _dense_pattern(a, batch: int, agg_shape: tuple, name: str, what: str):
    want = (batch,) + agg_shape + agg_shape
    shape = tuple(np.shape(a))
    if shape != want:
        raise ValueError(
            f"{name}: dense `{what}` must have shape (batch, *S_agg, "
            f"*S_agg) = {want} for inputs with aggregate axes of "
            f"sizes {agg_shape}; got shape {shape}."
        )
    v = math.prod(agg_shape)
    return jnp.asarray(a).reshape(batch, v, v)


def _sparse_pattern(p, batch: int, agg_shape: tuple, name: str, what: str):
    """``(senders, receivers)``: flat vertex indices ``(N, E)``; padding edges
    get sender 0 and receiver ``V`` (out of range: `segment_sum` drops it)."""
    k = len(agg_shape)
    p = jnp.asarray(p)
    if not jnp.issubdtype(p.dtype, jnp.integer):
        raise TypeError(
            f"{name}: sparse `{what}` must be an integer edge list; got dtype {p.dtype}."
        )
    if p.ndim == 3 and k == 1:
        p = p[:, :, None, :]
    if p.ndim != 4 or p.shape[0] != batch or p.shape[2] != k or p.shape[3] != 2:
        raise ValueError(
            f"{name}: sparse `{what}` must have shape (batch, n_edges, "
            f"K, 2) = ({batch}, E, {k}, 2)"
            + (" or (batch, n_edges, 2)" if k == 1 else "")
            + f" for {k} aggregate axes; got shape {tuple(p.shape)}."
        )
    sizes = jnp.asarray(agg_shape, p.dtype)
    values = _checks.concrete(p)  # None when traced: the caller's values
    too_big = values is not None and bool(np.any(values >= np.asarray(agg_shape)[:, None]))
    if too_big:
        raise ValueError(
            f"{name}: sparse `{what}` has vertex coordinates beyond "
            f"the aggregate axes' sizes {agg_shape} (negative "
            f"coordinates mark padding edges)."
        )
    valid = jnp.all(p >= 0, axis=(2, 3))  # (N, E)
    strides = jnp.asarray([math.prod(agg_shape[i + 1 :]) for i in range(k)], p.dtype)
    per_axis = (1, 1, k, 1)  # p's aggregate-axis dimension
    top = jnp.reshape(sizes - 1, per_axis)
    flat = jnp.sum(jnp.clip(p, 0, top) * jnp.reshape(strides, per_axis), axis=2)
    v = math.prod(agg_shape)
    senders = jnp.where(valid, flat[..., 0], 0)
    receivers = jnp.where(valid, flat[..., 1], v)
    return senders, receivers


def _aggregate(m, nb: int, agg: tuple, d: int, g1, g2):
    """``A1ᵀ m A2`` on the aggregate axes of a covariance array.

    ``m`` has ``nb`` batch axes (2: ``nngp``, pairs ``(i, j)``; 1: ``cov``,
    one input ``i`` on both sides) and ``d`` interleaved spatial pairs.
    """
    if m is None:
        return None
    rest = [i for i in range(d) if i not in agg]
    perm = (
        list(range(nb))
        + [nb + 2 * i for i in agg]
        + [nb + 2 * i + 1 for i in agg]
        + [nb + 2 * i + j for i in rest for j in (0, 1)]
    )
    mt = jnp.transpose(m, perm)
    moved = mt.shape
    agg_sizes = moved[nb : nb + len(agg)]
    v = math.prod(agg_sizes)
    mt = mt.reshape(moved[:nb] + (v, v) + moved[nb + 2 * len(agg) :])
    out = _left(mt, nb, g1)
    out = _right(out, nb, g2)
    out = out.reshape(moved)
    return jnp.transpose(out, tuple(int(i) for i in np.argsort(perm)))


def _left(m, nb: int, g):
    """``Σ_s A[i, s, a] m[i, ..., s, t, ...]`` (axis ``nb`` is ``s``)."""
    kind, a = g
    if kind == "dense":
        spec = "isa,ijst...->ijat..." if nb == 2 else "isa,ist...->iat..."
        return jnp.einsum(spec, a.astype(m.dtype), m, precision=HP)
    senders, receivers = a
    v = m.shape[nb]

    def one(mi, s, r):  # mi: m[i] with the s axis at nb - 1
        mi = jnp.moveaxis(mi, nb - 1, 0)
        out = jax.ops.segment_sum(mi[s], r, num_segments=v)
        return jnp.moveaxis(out, 0, nb - 1)

    return jax.vmap(one)(m, senders, receivers)


def _right(m, nb: int, g):
    """``Σ_t m[i, (j,) a, t, ...] A[j, t, b]`` (axis ``nb + 1`` is ``t``; the
    pattern's batch is axis ``nb - 1``: ``j`` for nngp, ``i`` for cov)."""
    kind, a = g
    if kind == "dense":
        spec = "ijat...,jtb->ijab..." if nb == 2 else "iat...,itb->iab..."
        return jnp.einsum(spec, m, a.astype(m.dtype), precision=HP)
    senders, receivers = a
    v = m.shape[nb + 1]

    def one(mj, s, r):  # mj: m[:, j] (nngp) or m[i] (cov), t at axis nb
        mj = jnp.moveaxis(mj, nb, 0)
        out = jax.ops.segment_sum(mj[s], r, num_segments=v)
        return jnp.moveaxis(out, 0, nb)

    return jax.vmap(one, in_axes=(nb - 1, 0, 0), out_axes=nb - 1)(m, senders, receivers)
