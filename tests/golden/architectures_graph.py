"""Golden architectures of the ``graph`` family: `Aggregate` (graph networks).

Same interface as ``architectures.py`` (read its docstring): ``architectures(stax)``
builds every network from ``neural_tangents.stax`` or ``ntk.stax``, ``names``,
``input_shape``, ``build``, ``draw_inputs``, ``X2_NONE``, plus
``kernel_kwargs(name, x1, x2)``: the graph ``pattern=(pattern1, pattern2)``
(one per input batch; ``(pattern1, pattern1)`` when ``x2`` is None) and, for
padded graphs, ``mask_constant``. Regenerate the fixture with
``scripts/nt_golden.py --family graph``.

Coverage: dense adjacency patterns (weighted, with self-loops) on 1-D node
sets and on 2-D inputs aggregated over one axis (positive and negative
``aggregate_axis``), both axes, or all (None); a ``to_dense`` decoder;
sparse edge lists ``(N, E, 2)`` and ``(N, E, K, 2)`` with padding edges
(both ends -1); the standard parameterization; a residual graph block
(FanOut/parallel/FanInSum); Aggregate as the first layer; readouts by
GlobalAvgPool, GlobalSumPool and Flatten; and padded graphs (padded nodes set
to ``mask_constant``) with dense and sparse patterns, including arcs into and
out of padded nodes.

``x2`` has as many rows as ``x1`` (``N2 = N1``) here: the fixture stores
``pattern`` as one array, and a pair of patterns of different batch sizes
cannot be stacked. Neural-tangents unpacks the stacked pair along its first
axis, as ``ntk`` does.

Not here: a sparse edge with a negative tail and a valid head. NT's sparse
``apply_fn``/``kernel_fn`` index the tail -1 as the last vertex; ``ntk``
treats any negative coordinate as padding and drops the edge (tested in
``tests/test_stax_graph.py``). NT also cannot take a channel-wise mask (e.g.
padded nodes of the raw input) into a layer that remasks, such as
`Aggregate` first; ``ntk`` counts a node as padding when all its channels
are, so here padded graphs start with a `Dense`.
"""

from __future__ import annotations

import zlib

import jax.numpy as jnp
import numpy as np
from _family import accessors, normal_inputs

N1 = 3
N2 = 3

GRAPH = (6, 3)  # 6 nodes, 3 features
GRID = (4, 3, 2)  # a 4 x 3 grid of nodes, 2 features

MASK = -100.0  # the value of padded nodes' features

# Real nodes of each example of x1 / x2 in the padded-graph architectures.
_N_REAL_1 = (6, 4, 2)
_N_REAL_2 = (3, 6, 5)

X2_NONE = frozenset(
    {
        "dense_1d_two_layers_gap",
        "sparse_1d_flatten",
        "dense_2d_both_axes_flatten",
        "masked_dense_1d_gap",
        "masked_sparse_1d_flatten",
    }
)


def _sym(p):
    """``to_dense`` of `dense_to_dense_symmetrized`: ``A + Aᵀ`` per graph."""
    return p + jnp.swapaxes(p, 1, 2)


def _builders(stax) -> dict:
    """``name -> (thunk building the layer, input_shape, options)``."""
    s = stax

    def two_layers(readout, agg=None, impl="DENSE", parameterization="ntk"):
        return lambda: s.serial(
            s.Dense(5, W_std=1.3, b_std=0.2, parameterization=parameterization),
            s.Aggregate(aggregate_axis=agg, implementation=impl),
            s.Relu(),
            s.Dense(4, W_std=1.1, b_std=0.1, parameterization=parameterization),
            s.Aggregate(aggregate_axis=agg, implementation=impl),
            s.Relu(),
            readout(),
            s.Dense(2, W_std=0.9, b_std=0.3, parameterization=parameterization),
        )

    def one_layer(readout, agg=None, impl="DENSE", act="Relu", **kw):
        return lambda: s.serial(
            s.Dense(5, W_std=1.2, b_std=0.3),
            s.Aggregate(aggregate_axis=agg, implementation=impl, **kw),
            getattr(s, act)(),
            readout(),
            s.Dense(2, W_std=1.1),
        )

    flatten = lambda: s.Flatten()
    gap = lambda: s.GlobalAvgPool()
    gsp = lambda: s.GlobalSumPool()
    return {
        # dense adjacency, 1-D node sets
        "dense_1d_two_layers_gap": (two_layers(gap), GRAPH, {}),
        "dense_1d_erf_flatten": (one_layer(flatten, act="Erf"), GRAPH, {}),
        "dense_1d_standard_gsp": (two_layers(gsp, parameterization="standard"), GRAPH, {}),
        "dense_1d_aggregate_first": (
            lambda: s.serial(
                s.Aggregate(),
                s.Dense(5, W_std=1.4, b_std=0.2),
                s.Relu(),
                s.GlobalSumPool(),
                s.Dense(2),
            ),
            GRAPH,
            {},
        ),
        "dense_1d_residual": (
            lambda: s.serial(
                s.Dense(5, W_std=1.2, b_std=0.1),
                s.FanOut(2),
                s.parallel(
                    s.serial(s.Relu(), s.Aggregate(), s.Dense(5, b_std=0.2)), s.Dense(5, W_std=0.7)
                ),
                s.FanInSum(),
                s.Relu(),
                s.GlobalAvgPool(),
                s.Dense(2),
            ),
            GRAPH,
            {},
        ),
        "dense_to_dense_symmetrized": (one_layer(gap, to_dense=_sym), GRAPH, {}),
        # dense adjacency, 2-D inputs
        "dense_2d_axis_w_flatten": (one_layer(flatten, agg=2), GRID, {"agg": (2,)}),
        "dense_2d_axis_h_negative_gap": (one_layer(gap, agg=-3), GRID, {"agg": (1,)}),
        "dense_2d_both_axes_flatten": (one_layer(flatten, agg=(1, 2)), GRID, {"agg": (1, 2)}),
        "dense_2d_all_axes_two_layers": (two_layers(gap), GRID, {"agg": (1, 2)}),
        # sparse edge lists
        "sparse_1d_flatten": (one_layer(flatten, impl="SPARSE"), GRAPH, {"sparse": True}),
        "sparse_1d_two_layers_gap": (two_layers(gap, impl="SPARSE"), GRAPH, {"sparse": True}),
        "sparse_2d_k2_gap": (
            one_layer(gap, agg=(1, 2), impl="SPARSE"),
            GRID,
            {"sparse": True, "agg": (1, 2)},
        ),
        "sparse_2d_axis_w_k1_4d_flatten": (
            one_layer(flatten, agg=2, impl="SPARSE"),
            GRID,
            {"sparse": True, "agg": (2,), "k_axis": True},
        ),
        # padded graphs (masked nodes)
        "masked_dense_1d_gap": (two_layers(gap), GRAPH, {"masked": True}),
        "masked_dense_1d_flatten": (one_layer(flatten), GRAPH, {"masked": True}),
        "masked_sparse_1d_flatten": (
            one_layer(flatten, impl="SPARSE"),
            GRAPH,
            {"masked": True, "sparse": True},
        ),
        "masked_sparse_1d_two_layers_gsp": (
            two_layers(gsp, impl="SPARSE"),
            GRAPH,
            {"masked": True, "sparse": True},
        ),
        "masked_dense_1d_layernorm": (
            lambda: s.serial(
                s.Dense(5, W_std=1.3, b_std=0.4),
                s.Aggregate(),
                s.LayerNorm(axis=(1, 2)),
                s.Relu(),
                s.GlobalAvgPool(),
                s.Dense(2),
            ),
            GRAPH,
            {"masked": True},
        ),
    }


def draw_inputs(name: str, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``x1``, ``x2`` (``N1`` rows each); in the padded-graph
    architectures the nodes past each graph's size are set to ``MASK``."""
    x1, x2 = normal_inputs(name, input_shape, N1, N2)
    if options(name).get("masked"):
        for x, sizes in ((x1, _N_REAL_1), (x2, _N_REAL_2)):
            for i, n in enumerate(sizes):
                x[i, n:] = MASK
    return x1, x2


def dense_pattern(rng, n: int, agg_shape: tuple) -> np.ndarray:
    """Weighted adjacency with self-loops, ~half the arcs present."""
    v = int(np.prod(agg_shape))
    arcs = rng.random((n, v, v)) < 0.5
    weights = rng.uniform(0.3, 1.5, (n, v, v))
    a = np.where(arcs, weights, 0.0) + np.eye(v)
    return a.reshape((n,) + agg_shape + agg_shape)


def sparse_pattern(
    rng, n: int, agg_shape: tuple, n_edges: int = 9, k_axis: bool = False
) -> np.ndarray:
    """Edge list ``(n, E, K, 2)`` (``(n, E, 2)`` for one axis unless
    ``k_axis``), with repeated edges and the last two of graph 0 padding."""
    k = len(agg_shape)
    coords = np.stack(
        [rng.integers(0, size, (n, n_edges, 2)) for size in agg_shape], axis=2
    )  # (n, E, K, 2)
    coords[0, -2:] = -1
    if k == 1 and not k_axis:
        coords = coords[:, :, 0, :]
    return coords


def kernel_kwargs(name: str, x1: np.ndarray, x2) -> dict:
    """``pattern`` (and ``mask_constant``) of ``kernel_fn`` for ``name``."""
    opts = options(name)
    shape = x1.shape[1:]
    agg = opts.get("agg", (1,))
    agg_shape = tuple(shape[a - 1] for a in agg)
    rng = np.random.default_rng(zlib.crc32(("pattern/" + name).encode()))
    if opts.get("sparse"):
        draw = lambda n: sparse_pattern(rng, n, agg_shape, k_axis=opts.get("k_axis", False))
    else:
        draw = lambda n: dense_pattern(rng, n, agg_shape)
    p1 = draw(x1.shape[0])
    p2 = draw(N2)
    kwargs = {"pattern": (p1, p1 if x2 is None else p2)}
    if opts.get("masked"):
        kwargs["mask_constant"] = MASK
    return kwargs


names, input_shape, build, architectures, options = accessors(_builders)
