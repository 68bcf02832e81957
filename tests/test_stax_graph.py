"""Graph networks: `ntk.stax.Aggregate` with dense and sparse patterns, and masks.

Oracles: explicit sums over arcs (apply_fn), the closed-form bilinear kernel
``A1ᵀ K A2`` of the input Gram matrix, the dense implementation for the
sparse one (and the reverse), Monte Carlo of a wide finite graph network,
padding (a padded, masked graph must give what the unpadded graph gives,
whatever the arcs touching padded nodes), brute-force Jacobians for the
empirical NTK, and Hypothesis properties. The neural-tangents comparison is
``tests/golden/architectures_graph.py``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mc import assert_within_mc, mc_kernels

from ntk import stax
from ntk.empirical import empirical_ntk_fn
from ntk.stax import MaskedArray, graph, unmask_fn
from ntk.stax import spec as specs

MASK = -50.0
SETTINGS = settings(
    deadline=None, max_examples=10, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _adjacency(rng, n, v, p=0.5):
    return np.where(rng.random((n, v, v)) < p, rng.uniform(0.3, 1.5, (n, v, v)), 0.0)


def _edges(rng, n, shape, n_edges):
    """``(n, E, K, 2)`` integer edges over a ``shape`` grid of vertices."""
    return np.stack([rng.integers(0, s, (n, n_edges, 2)) for s in shape], axis=2)


def _counts(edges, shape):
    """Dense adjacency ``(n, *shape, *shape)`` counting each valid edge."""
    n = edges.shape[0]
    a = np.zeros((n,) + tuple(shape) * 2)
    for i in range(n):
        for e in edges[i]:
            tail, head = tuple(e[:, 0]), tuple(e[:, 1])
            if min(tail + head) >= 0:
                a[(i,) + tail + head] += 1
    return a


def _graph_net(width=5, impl="DENSE", readout=None):
    return stax.serial(
        stax.Dense(width, W_std=1.3, b_std=0.2),
        stax.Aggregate(implementation=impl),
        stax.Relu(),
        stax.Dense(width, W_std=1.1, b_std=0.1),
        stax.Aggregate(implementation=impl),
        stax.Relu(),
        readout or stax.GlobalAvgPool(),
        stax.Dense(2, W_std=0.9, b_std=0.3),
    )


# ------------------------------------------------------------- apply_fn


@pytest.mark.parametrize(
    "agg, shape",
    [(None, (5,)), (1, (4, 3)), (2, (4, 3)), (-2, (4, 3)), ((1, 2), (4, 3)), (None, (4, 3))],
)
def test_dense_apply_is_the_sum_over_predecessors(agg, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2,) + shape + (3,))
    d = len(shape)
    axes = (
        tuple(range(d))
        if agg is None
        else tuple(sorted((a % (d + 2)) - 1 for a in np.atleast_1d(agg)))
    )
    agg_shape = tuple(shape[i] for i in axes)
    a = rng.standard_normal((2,) + agg_shape * 2)
    out = stax.Aggregate(aggregate_axis=agg).apply_fn((), x, pattern=a)
    want = np.zeros_like(x)
    for n in range(2):
        for pos in np.ndindex(*shape):
            for src in np.ndindex(*agg_shape):
                full = list(pos)
                for i, s in zip(axes, src):
                    full[i] = s
                dst = tuple(pos[i] for i in axes)
                want[(n,) + pos] += a[(n,) + src + dst] * x[(n,) + tuple(full)]
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "agg, shape, four_d",
    [(None, (6,), False), (None, (6,), True), ((1, 2), (3, 4), False), (2, (3, 4), False)],
)
def test_sparse_apply_equals_dense_apply_of_the_edge_counts(agg, shape, four_d):
    """Repeated edges add up; edges with any negative coordinate (padding,
    including a negative tail with a valid head) are dropped."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2,) + shape + (2,))
    agg_shape = shape if agg is None else tuple(shape[a - 1] for a in np.atleast_1d(agg))
    edges = _edges(rng, 2, agg_shape, 10)
    edges[0, 0] = edges[0, 1]  # a repeated edge
    edges[0, -1] = -1  # a padding edge
    edges[1, -1, 0, 0] = -1  # a negative tail only
    sparse = edges if (four_d or len(agg_shape) > 1) else edges[:, :, 0, :]
    got = stax.Aggregate(aggregate_axis=agg, implementation="SPARSE").apply_fn(
        (), x, pattern=sparse
    )
    want = stax.Aggregate(aggregate_axis=agg).apply_fn((), x, pattern=_counts(edges, agg_shape))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_to_dense_decodes_the_pattern_in_apply_and_kernel():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 2))
    upper = np.triu(rng.random((3, 4, 4)))
    sym = lambda p: p + jnp.swapaxes(p, 1, 2)
    coded = stax.Aggregate(to_dense=sym)
    plain = stax.Aggregate()
    np.testing.assert_allclose(
        coded.apply_fn((), x, pattern=upper), plain.apply_fn((), x, pattern=sym(upper)), rtol=1e-13
    )
    k1 = coded.kernel_fn(x, None, "nngp", pattern=(upper, upper))
    k2 = plain.kernel_fn(x, None, "nngp", pattern=(sym(upper),) * 2)
    assert _rel(k1, k2) <= 1e-13


def test_pattern_none_is_the_identity():
    x = np.random.default_rng(3).standard_normal((2, 4, 3))
    layer = stax.Aggregate()
    np.testing.assert_array_equal(layer.apply_fn((), x), x)
    assert (
        _rel(
            stax.serial(layer, stax.Flatten()).kernel_fn(x, None, "nngp"),
            stax.Flatten().kernel_fn(x, None, "nngp"),
        )
        <= 1e-15
    )


# ---------------------------------------------------------------- kernel


@pytest.mark.parametrize("impl", ["DENSE", "SPARSE", "SPARSE segment sums"])
def test_kernel_of_one_aggregation_is_the_bilinear_form_of_the_gram(impl, monkeypatch):
    """``K'[i, j, a, b] = Σ_{s,t} A1[i, s, a] <x1_i(s), x2_j(t)>/C A2[j, t, b]``."""
    if impl == "SPARSE segment sums":
        monkeypatch.setattr(graph, "_SPARSE_ADVANTAGE", 0)
        impl = "SPARSE"
    rng = np.random.default_rng(4)
    v, c = 5, 3
    x1, x2 = rng.standard_normal((3, v, c)), rng.standard_normal((2, v, c))
    if impl == "DENSE":
        p1, p2 = _adjacency(rng, 3, v), _adjacency(rng, 2, v)
        a1, a2 = p1, p2
    else:
        p1, p2 = _edges(rng, 3, (v,), 8), _edges(rng, 2, (v,), 8)
        a1, a2 = _counts(p1, (v,)), _counts(p2, (v,))
    k = stax.Aggregate(implementation=impl).kernel_fn(
        x1, x2, ("nngp", "cov1", "cov2"), pattern=(p1, p2)
    )
    gram = np.einsum("isc,jtc->ijst", x1, x2) / c
    want = np.einsum("isa,ijst,jtb->ijab", a1, gram, a2)
    assert _rel(k.nngp, want) <= 1e-13
    g11 = np.einsum("isc,itc->ist", x1, x1) / c
    assert _rel(k.cov1, np.einsum("isa,ist,itb->iab", a1, g11, a1)) <= 1e-13
    g22 = np.einsum("isc,itc->ist", x2, x2) / c
    assert _rel(k.cov2, np.einsum("isa,ist,itb->iab", a2, g22, a2)) <= 1e-13


@pytest.mark.parametrize("first", ["Dense", "Conv"])
@pytest.mark.parametrize("segment_sums", [True, False])
@pytest.mark.parametrize("agg", [None, 2])
def test_sparse_and_dense_kernels_agree(agg, segment_sums, first, monkeypatch):
    """Both ways of evaluating an edge list in the kernel: segment sums (forced
    by declaring no graph sparse enough for dense counts) and dense counts.
    After a Conv, on a non-square grid: neural-tangents 0.6.5 reads the edges'
    coordinates against the Conv's reversed spatial axes there (it raises for
    one axis and is wrong for both)."""
    if segment_sums:
        monkeypatch.setattr(graph, "_SPARSE_ADVANTAGE", 0)
    rng = np.random.default_rng(5)
    shape = (3, 4)
    x1, x2 = rng.standard_normal((3,) + shape + (2,)), rng.standard_normal((2,) + shape + (2,))
    agg_shape = shape if agg is None else (shape[1],)
    e1, e2 = _edges(rng, 3, agg_shape, 9), _edges(rng, 2, agg_shape, 9)
    e1[1, :3] = -1

    def net(impl):
        return stax.serial(
            stax.Dense(4, b_std=0.2) if first == "Dense" else stax.Conv(4, (2, 2), padding="SAME"),
            stax.Aggregate(aggregate_axis=agg, implementation=impl),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(1),
        )

    sparse = net("SPARSE").kernel_fn(x1, x2, ("nngp", "ntk"), pattern=(e1, e2))
    dense = net("DENSE").kernel_fn(
        x1, x2, ("nngp", "ntk"), pattern=(_counts(e1, agg_shape), _counts(e2, agg_shape))
    )
    assert _rel(sparse.nngp, dense.nngp) <= 1e-12 and _rel(sparse.ntk, dense.ntk) <= 1e-12


def _padded_graphs(rng, sizes, v, c):
    """Features ``(n, v, c)`` with nodes past ``sizes[i]`` set to ``MASK``,
    adjacency with arcs everywhere, including into and out of padded nodes."""
    x = rng.standard_normal((len(sizes), v, c))
    for i, m in enumerate(sizes):
        x[i, m:] = MASK
    return x, _adjacency(rng, len(sizes), v, 0.6)


def test_padded_masked_graphs_give_the_kernel_and_outputs_of_the_unpadded_ones():
    rng = np.random.default_rng(6)
    v, sizes1, sizes2 = 6, (4, 6, 4), (4, 4)
    x1, a1 = _padded_graphs(rng, sizes1, v, 2)
    x2, a2 = _padded_graphs(rng, sizes2, v, 2)
    net = _graph_net()
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"), pattern=(a1, a2), mask_constant=MASK)
    r1, r2 = [0, 2], [0, 1]  # the 4-node graphs
    small = net.kernel_fn(
        x1[r1, :4], x2[r2, :4], ("nngp", "ntk"), pattern=(a1[r1][:, :4, :4], a2[r2][:, :4, :4])
    )
    for g in ("nngp", "ntk"):
        assert _rel(np.asarray(getattr(k, g))[np.ix_(r1, r2)], getattr(small, g)) <= 1e-12
    _, params = net.init_fn(jax.random.PRNGKey(0), x1.shape)
    apply_fn = jax.jit(net.apply_fn, static_argnames="mask_constant")
    out = apply_fn(params, x1, pattern=a1, mask_constant=MASK)
    want = apply_fn(params, x1[r1, :4], pattern=a1[r1][:, :4, :4])
    np.testing.assert_allclose(out.masked_value[np.array(r1)], want, rtol=1e-12)


def test_graph_kernel_matches_monte_carlo_of_the_finite_network():
    """Padded graphs, residual branch (FanOut/parallel/FanInSum) around an
    aggregation, Flatten readout. Width 128, 100 draws: the CLT error of the
    mean is ≤ 14% of the largest entry (NNGP) and is covered by 5 standard
    errors; the finite-width bias, O(1/width) ≈ 1%, by 3% of the largest
    entry."""
    rng = np.random.default_rng(7)
    x1, a1 = _padded_graphs(rng, (5, 3, 4), 5, 2)
    x2, a2 = _padded_graphs(rng, (2, 5), 5, 2)
    width = 128
    net = stax.serial(
        stax.Dense(width, W_std=1.2, b_std=0.2),
        stax.FanOut(2),
        stax.parallel(
            stax.serial(stax.Relu(), stax.Aggregate(), stax.Dense(width, W_std=1.1, b_std=0.1)),
            stax.Dense(width, W_std=0.8),
        ),
        stax.FanInSum(),
        stax.Relu(),
        stax.Aggregate(),
        stax.Dense(width, b_std=0.1),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(4, W_std=0.9, b_std=0.2),
    )
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"), pattern=(a1, a2), mask_constant=MASK)
    apply_fn = unmask_fn(net.apply_fn)
    # mc_kernels applies one function to x1 (3 graphs) and x2 (2 graphs).
    nngp, nngp_sem, ntk, ntk_sem = mc_kernels(
        net.init_fn,
        lambda p, x: apply_fn(p, x, pattern=a1 if x.shape[0] == 3 else a2, mask_constant=MASK),
        x1,
        x2,
        jax.random.PRNGKey(8),
        100,
    )
    assert_within_mc(k.nngp, nngp, nngp_sem, bias=0.03, what="nngp")
    assert_within_mc(k.ntk, ntk, ntk_sem, bias=0.03, what="ntk")


# --------------------------------------------------------- empirical NTK


def _brute_force_ntk(f, params, x1, x2, kw1, kw2):
    """``Σ_θ ∂f(x1)/∂θ ⊗ ∂f(x2)/∂θ`` from explicit Jacobians, ``(N1, O, N2, O)``."""
    jac = jax.jit(lambda x, kw: jax.jacrev(lambda p: f(p, x, **kw))(params))
    j1, j2 = jac(x1, kw1), jac(x2, kw2)
    return sum(
        np.tensordot(np.asarray(a), np.asarray(b), axes=(list(range(2, a.ndim)),) * 2)
        for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2))
    )


@pytest.mark.parametrize(
    "impl", ["JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS", "STRUCTURED_DERIVATIVES"]
)
def test_empirical_ntk_of_a_graph_network_matches_brute_force(impl):
    rng = np.random.default_rng(9)
    x1, x2 = rng.standard_normal((3, 5, 2)), rng.standard_normal((2, 5, 2))
    a1, a2 = _adjacency(rng, 3, 5), _adjacency(rng, 2, 5)
    net = _graph_net(width=4)
    _, params = net.init_fn(jax.random.PRNGKey(1), x1.shape)
    want = _brute_force_ntk(net.apply_fn, params, x1, x2, {"pattern": a1}, {"pattern": a2})
    got = empirical_ntk_fn(net, trace_axes=(), implementation=impl)(
        x1, x2, params, pattern=(a1, a2)
    )
    assert _rel(np.transpose(got, (0, 2, 1, 3)), want) <= 1e-10


@pytest.mark.parametrize("impl", ["JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS"])
def test_empirical_ntk_of_padded_graphs_through_unmask_fn_matches_brute_force(impl):
    rng = np.random.default_rng(10)
    x1, a1 = _padded_graphs(rng, (5, 3, 4), 5, 2)
    x2, a2 = _padded_graphs(rng, (2, 5), 5, 2)
    net = _graph_net(width=4)
    _, params = net.init_fn(jax.random.PRNGKey(2), x1.shape)
    f = unmask_fn(net.apply_fn)
    kw1, kw2 = {"pattern": a1, "mask_constant": MASK}, {"pattern": a2, "mask_constant": MASK}
    want = _brute_force_ntk(f, params, x1, x2, kw1, kw2)
    got = empirical_ntk_fn(f, trace_axes=(), implementation=impl)(
        x1, x2, params, pattern=(a1, a2), mask_constant=MASK
    )
    assert _rel(np.transpose(got, (0, 2, 1, 3)), want) <= 1e-10


# ------------------------------------------------------------ properties


@functools.cache
def _compiled(impl: str):
    net = _graph_net(impl=impl)
    return jax.jit(
        lambda x, m, p: tuple(
            net.kernel_fn(MaskedArray(x, m), None, ("nngp", "ntk"), pattern=(p, p))
        )
    )


@st.composite
def graph_batches(draw, n=4, v=5, c=2, sparse=False):
    """Features on a coarse grid (zeros and repeated graphs occur), node
    counts ≥ 1 (the rest masked, holding junk), random arcs."""
    cell = st.integers(-10, 10).map(lambda i: i / 5)
    x = np.asarray(
        draw(st.lists(cell, min_size=n * v * c, max_size=n * v * c)), dtype=np.float64
    ).reshape(n, v, c)
    sizes = np.asarray(draw(st.lists(st.integers(1, v), min_size=n, max_size=n)))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if sparse:
        p = _edges(rng, n, (v,), 7)[:, :, 0, :]
    else:
        p = _adjacency(rng, n, v)
    if draw(st.booleans()):  # two identical graphs
        x[-1], p[-1], sizes[-1] = x[0], p[0], sizes[0]
    mask = np.broadcast_to(np.arange(v)[None, :, None] >= sizes[:, None, None], x.shape)
    return np.where(mask, 1e3, x), mask, p


@SETTINGS
@given(impl=st.sampled_from(["DENSE", "SPARSE"]), data=st.data())
def test_graph_kernels_are_symmetric_psd_and_finite(impl, data):
    x, mask, p = data.draw(graph_batches(sparse=impl == "SPARSE"))
    for name, k in zip(("nngp", "ntk"), _compiled(impl)(x, mask, p)):
        k = np.asarray(k)
        assert np.all(np.isfinite(k)), name
        assert np.max(np.abs(k - k.T)) <= 1e-12 * max(np.max(np.abs(k)), 1e-300), name
        eig = np.linalg.eigvalsh((k + k.T) / 2)
        assert eig[0] >= -1e-10 * max(eig[-1], 0.0), (name, eig)


@SETTINGS
@given(data=st.data(), junk=st.floats(-1e3, 1e3))
def test_padded_nodes_change_nothing(data, junk):
    """Neither the features of masked nodes nor arcs into or out of them."""
    x, mask, p = data.draw(graph_batches())
    node_masked = mask[..., 0]
    touches = node_masked[:, :, None] | node_masked[:, None, :]
    rng = np.random.default_rng(0)
    other_p = np.where(touches, rng.uniform(0, 2, p.shape), p)
    got = _compiled("DENSE")(x, mask, p)
    want = _compiled("DENSE")(np.where(mask, junk, x), mask, other_p)
    for g, w in zip(got, want):
        assert _rel(g, w) <= 1e-12


def test_zero_features_give_finite_kernels():
    x = np.zeros((3, 5, 2))
    mask = np.zeros(x.shape, bool)
    p = np.zeros((3, 5, 5))  # no arcs at all: every output is zero
    for v in _compiled("DENSE")(x, mask, p):
        assert np.all(np.isfinite(np.asarray(v)))


# ---------------------------------------------------------------- errors


def test_bad_arguments_are_clear_errors():
    x = np.ones((2, 4, 3))
    a = np.ones((2, 4, 4))
    with pytest.raises(ValueError, match="implementation"):
        stax.Aggregate(implementation="COO")
    with pytest.raises(ValueError, match="aggregate_axis"):
        stax.Aggregate(aggregate_axis=2).apply_fn((), x, pattern=a)  # channels
    with pytest.raises(ValueError, match="aggregate_axis"):
        stax.Aggregate(aggregate_axis=(1, 1)).apply_fn((), x, pattern=a)
    with pytest.raises(ValueError, match="aggregate_axis"):
        stax.Aggregate(aggregate_axis="nodes")
    with pytest.raises(ValueError, match="channel_axis"):
        stax.Aggregate(channel_axis=1)
    with pytest.raises(ValueError, match=r"shape \(batch, \*S_agg, \*S_agg\)"):
        stax.Aggregate().apply_fn((), x, pattern=np.ones((2, 4, 5)))
    with pytest.raises(TypeError, match="pair"):
        stax.Aggregate().apply_fn((), x, pattern=(a, a))
    with pytest.raises(ValueError, match="pair"):
        stax.Aggregate().kernel_fn(x, np.ones((3, 4, 3)), "nngp", pattern=np.ones((3, 4, 4)))
    with pytest.raises(ValueError, match="pattern2"):
        stax.Aggregate().kernel_fn(x, x, "nngp", pattern=(a, None))
    sparse = stax.Aggregate(implementation="SPARSE")
    with pytest.raises(TypeError, match="integer"):
        sparse.apply_fn((), x, pattern=np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="beyond"):
        sparse.apply_fn((), x, pattern=np.full((2, 3, 2), 4))
    with pytest.raises(ValueError, match=r"\(batch, n_edges, K, 2\)"):
        sparse.apply_fn((), x, pattern=np.zeros((2, 3, 3), int))


def test_aggregate_is_a_parameterless_layer():
    layer = stax.Aggregate()
    assert isinstance(layer.kernel_fn.spec, specs.Parameterless)
    assert layer.kernel_fn.needs_full_spatial
    assert layer.init_fn(jax.random.PRNGKey(0), (2, 4, 3)) == ((2, 4, 3), ())


def test_aggregate_of_theta_equal_k_gives_the_kernels_computed_apart():
    """Behind the first Dense Θ = K, and Aggregate maps both by one linear map
    once (`Kernel.ntk_is_nngp`); the reference computes them apart (the input
    kernel's `ntk_is_zero` cleared)."""
    from ntk.kernel import inputs_to_kernel

    rng = np.random.default_rng(8)
    x1, a1 = _padded_graphs(rng, (4, 6, 5), 6, 2)
    x2, a2 = _padded_graphs(rng, (6, 3), 6, 2)
    first = stax.serial(stax.Dense(5, W_std=1.3, b_std=0.2), stax.Aggregate())
    net = _graph_net()
    marked = []

    @jax.jit  # the flags live within one trace
    def both(x1, x2, a1, a2):
        k = inputs_to_kernel(x1, x2, diagonal_spatial=False, compute_ntk=True, mask_constant=MASK)
        marked.append(first.kernel_fn(k, pattern=(a1, a2)).ntk_is_nngp)
        return (
            net.kernel_fn(k, pattern=(a1, a2)),
            net.kernel_fn(k.replace(ntk_is_zero=False), pattern=(a1, a2)),
        )

    fast, slow = both(x1, x2, a1, a2)
    assert marked == [True]
    # The same operations on equal inputs: float64 rounding at most.
    for field in ("nngp", "ntk", "cov1", "cov2"):
        assert _rel(getattr(fast, field), getattr(slow, field)) <= 1e-13, field
