"""Combinators (serial, parallel, FanOut, FanIn*, repeat, residual blocks).

Kernels are checked against Monte Carlo estimates from wide finite networks
built by the same layers' ``apply_fn`` (`tests/mc.py`), ``repeat`` against the
``serial`` it abbreviates, and the branch bookkeeping against its errors.

Tolerances. The Monte Carlo mean has a CLT error (5 standard errors of the
mean over the draws) and, for networks with more than one hidden layer, a
finite-width bias: the hidden pre-activations of layer ℓ ≥ 2 are only
asymptotically Gaussian, and the expected empirical NNGP and NTK differ from
their limits by O(ℓ/n) relative terms (Yaida 2020, "Non-Gaussian processes and
neural networks at finite widths"; Roberts, Yaida & Hanin 2022, ch. 4–5, where
the 1/n correction to the kernel grows linearly in depth with an O(1)
activation-dependent constant; Hanin & Nica 2019 for the NTK). We allow
``BIAS_PER_LAYER / width`` per hidden layer after the first, relative to the
largest kernel entry, with ``BIAS_PER_LAYER = 2``. Networks whose branches
have a single hidden layer are exactly unbiased at any width (their hidden
pre-activations are exactly Gaussian and the readout weights independent of
them), and get no bias allowance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from ntk.kernel import inputs_to_kernel
from ntk.stax.combinators import same_kernel
from mc import assert_within_mc, mc_kernels

W, OUT, SAMPLES = 512, 256, 64
BIAS_PER_LAYER = 2.0


def _inputs():
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=(3, 4))
    x1[2] *= 0.4
    x2 = rng.normal(size=(2, 4))
    x2[0] = x1[0]
    return jnp.asarray(x1), jnp.asarray(x2)


def _residual(block):
    return stax.serial(stax.FanOut(2), stax.parallel(block, stax.Identity()), stax.FanInSum())


# name -> (network, number of hidden layers after the first on the longest path)
ARCHS = {
    "serial_relu_erf": (
        stax.serial(
            stax.Dense(W, W_std=1.5, b_std=0.1),
            stax.Relu(),
            stax.Dense(W, W_std=1.2, b_std=0.2),
            stax.Erf(),
            stax.Dense(OUT, W_std=0.8, b_std=0.3),
        ),
        1,
    ),
    "fanout_parallel_fanin_sum": (
        stax.serial(
            stax.Dense(W, W_std=1.3, b_std=0.2),
            stax.FanOut(2),
            stax.parallel(
                stax.serial(stax.Relu(), stax.Dense(W, W_std=1.1)),
                stax.serial(stax.Erf(), stax.Dense(W, W_std=0.7, b_std=0.4)),
            ),
            stax.FanInSum(),
            stax.Gelu(),
            stax.Dense(OUT),
        ),
        1,
    ),
    "fanin_prod_of_activations": (
        stax.serial(
            stax.FanOut(3),
            stax.parallel(
                stax.serial(stax.Dense(W, W_std=1.2, b_std=0.3), stax.Relu()),
                stax.serial(stax.Dense(W, W_std=0.9, b_std=0.5), stax.Erf()),
                stax.Dense(W, W_std=1.4),
            ),
            stax.FanInProd(),
            stax.Dense(OUT, W_std=1.1, b_std=0.1),
        ),
        0,
    ),
    "fanin_concat_unequal_widths": (
        stax.serial(
            stax.FanOut(2),
            stax.parallel(
                stax.serial(stax.Dense(W, W_std=1.2, b_std=0.3), stax.Relu()),
                stax.serial(stax.Dense(W // 4, W_std=2.0), stax.Sin()),
            ),
            stax.FanInConcat(),
            stax.Dense(OUT, W_std=1.3, b_std=0.2),
        ),
        0,
    ),
    "repeat_relu_dense": (
        stax.serial(
            stax.Dense(W, W_std=1.4, b_std=0.1),
            stax.repeat(stax.serial(stax.Relu(), stax.Dense(W, W_std=1.4, b_std=0.1)), 2),
            stax.Relu(),
            stax.Dense(OUT),
        ),
        2,
    ),
    "residual_block": (
        stax.serial(
            stax.Dense(W, W_std=1.0, b_std=0.1),
            _residual(stax.serial(stax.Relu(), stax.Dense(W, W_std=1.3, b_std=0.1))),
            stax.Relu(),
            stax.Dense(OUT, W_std=1.2),
        ),
        1,
    ),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_kernels_match_monte_carlo_of_wide_network(name):
    net, extra_layers = ARCHS[name]
    x1, x2 = _inputs()
    k = net.kernel_fn(x1, x2)
    nngp, nngp_sem, ntk, ntk_sem = mc_kernels(
        net.init_fn, net.apply_fn, x1, x2, jax.random.PRNGKey(7), SAMPLES
    )
    bias = BIAS_PER_LAYER * extra_layers / W
    assert_within_mc(k.nngp, nngp, nngp_sem, bias=bias, what=f"{name} nngp")
    assert_within_mc(k.ntk, ntk, ntk_sem, bias=bias, what=f"{name} ntk")


# --------------------------------------------- kernels no network can have


def _kernel_or_refusal(net, x1, x2):
    """The kernel, or None when the library refuses the architecture."""
    try:
        return net.kernel_fn(x1, x2)
    except (ValueError, NotImplementedError):
        return None


def test_fanin_sum_of_two_activation_branches_is_right_or_refused():
    """Activation outputs have non-zero means: for independent branches
    ``E[(a1+a2)(b1+b2)] = K1 + K2 + E[a1]E[b2] + E[a2]E[b1]``, so the kernel
    of the sum is not ``K1 + K2``. The library must get it right (MC) or
    refuse it, as neural-tangents does (NotImplementedError)."""
    net = stax.serial(
        stax.FanOut(2),
        stax.parallel(
            stax.serial(stax.Dense(W, b_std=0.2), stax.Relu()),
            stax.serial(stax.Dense(W, W_std=1.5), stax.Relu()),
        ),
        stax.FanInSum(),
        stax.Dense(OUT),
    )
    x1, x2 = _inputs()
    k = _kernel_or_refusal(net, x1, x2)
    if k is None:
        return
    nngp, nngp_sem, _, _ = mc_kernels(
        net.init_fn, net.apply_fn, x1, x2, jax.random.PRNGKey(8), SAMPLES, compute_ntk=False
    )
    assert_within_mc(k.nngp, nngp, nngp_sem, what="FanInSum(Relu, Relu) nngp")


def test_activation_after_fanin_concat_is_right_or_refused():
    """Concatenated channels with different variances are not identically
    distributed, so an activation after ``FanInConcat`` does not see one
    Gaussian with the channel-averaged kernel (NT marks the output as not
    Gaussian and refuses a following activation). Erf is not homogeneous, so
    the error shows (for ReLU it would cancel)."""
    net = stax.serial(
        stax.FanOut(2),
        stax.parallel(stax.Dense(W, W_std=0.3), stax.Dense(W, W_std=3.0)),
        stax.FanInConcat(),
        stax.Erf(),
        stax.Dense(OUT),
    )
    x1, x2 = _inputs()
    k = _kernel_or_refusal(net, x1, x2)
    if k is None:
        return
    nngp, nngp_sem, _, _ = mc_kernels(
        net.init_fn, net.apply_fn, x1, x2, jax.random.PRNGKey(9), SAMPLES, compute_ntk=False
    )
    assert_within_mc(k.nngp, nngp, nngp_sem, what="FanInConcat -> Erf nngp")


# ------------------------------------------------- repeat == serial(*[l]*n)

REPEAT_BLOCKS = {
    "relu_dense": lambda: stax.serial(stax.Relu(), stax.Dense(16, W_std=1.3, b_std=0.2)),
    "dense_erf": lambda: stax.serial(stax.Dense(16, W_std=0.9, b_std=0.5), stax.Erf()),
    "residual": lambda: _residual(stax.serial(stax.Relu(), stax.Dense(16, W_std=0.7))),
    "dense_std_param": lambda: stax.Dense(16, W_std=1.1, b_std=0.3, parameterization="standard"),
}


def _assert_same_kernels(a, b):
    """The two Kernels hold the same arrays, to float64 rounding over a few layers."""
    for f in ("nngp", "ntk", "cov1", "cov2"):
        va, vb = getattr(a, f), getattr(b, f)
        assert (va is None) == (vb is None), f
        if va is not None:
            np.testing.assert_allclose(va, vb, rtol=1e-12, atol=1e-14, err_msg=f)


@pytest.mark.parametrize("block", list(REPEAT_BLOCKS))
@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("with_x2", [False, True])
def test_repeat_kernel_equals_serial_of_copies(block, n, with_x2):
    head = stax.Dense(16, W_std=1.2, b_std=0.1)
    layer = REPEAT_BLOCKS[block]()
    rep = stax.serial(head, stax.repeat(layer, n))
    ser = stax.serial(head, *[layer] * n)
    x1, x2 = _inputs()
    x2 = x2 if with_x2 else None
    a, b = rep.kernel_fn(x1, x2), ser.kernel_fn(x1, x2)
    _assert_same_kernels(a, b)
    assert a.shape1 == b.shape1 and a.shape2 == b.shape2
    assert a.is_gaussian == b.is_gaussian


@pytest.mark.parametrize("block", list(REPEAT_BLOCKS))
def test_repeat_apply_equals_serial_apply_with_same_params(block):
    """repeat stacks the n copies' parameters on a leading axis; unstacked
    into a tuple they drive ``serial(*[layer]*n)`` to the same outputs."""
    n = 3
    layer = REPEAT_BLOCKS[block]()
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 16))
    shape, params = stax.repeat(layer, n).init_fn(jax.random.PRNGKey(1), x.shape)
    assert tuple(shape) == x.shape
    leaves = jax.tree_util.tree_leaves(params)
    assert leaves and all(leaf.shape[0] == n for leaf in leaves)
    per_copy = tuple(jax.tree_util.tree_map(lambda p: p[i], params) for i in range(n))
    y_rep = stax.repeat(layer, n).apply_fn(params, x)
    y_ser = stax.serial(*[layer] * n).apply_fn(per_copy, x)
    np.testing.assert_allclose(y_rep, y_ser, rtol=1e-12, atol=1e-13)


def _layer_by_layer(layers, x1, x2, diagonal_spatial=True):
    """The kernel through ``layers`` one at a time: no loop, no jit boundary."""
    k = inputs_to_kernel(x1, x2, diagonal_spatial=diagonal_spatial, compute_ntk=True)
    for layer in layers:
        k = layer.kernel_fn(k)
    return k


@pytest.mark.parametrize("block", list(REPEAT_BLOCKS))
@pytest.mark.parametrize("with_x2", [False, True])
def test_serial_of_equal_layers_built_apart_equals_them_one_by_one(block, with_x2):
    """``serial`` runs a run of equal blocks (here each one built by its own
    call, as a list comprehension makes them) as one loop carrying the NNGP
    and NTK packed; the kernels are those of the layers applied in turn."""
    layers = [stax.Dense(16, W_std=1.2, b_std=0.1)] + [REPEAT_BLOCKS[block]() for _ in range(5)]
    assert "scan" in _serial_jaxpr_after_checking_it_equals_one_by_one(layers, with_x2)


def _serial_jaxpr_after_checking_it_equals_one_by_one(layers, with_x2):
    """The jaxpr of ``serial(*layers)``'s NTK, once its kernels (with or without
    x2) have been checked against the layers applied in turn."""
    net = stax.serial(*layers)
    x1, x2 = _inputs()
    x2 = x2 if with_x2 else None
    _assert_same_kernels(net.kernel_fn(x1, x2), _layer_by_layer(layers, x1, x2))
    return str(jax.make_jaxpr(lambda x: net.kernel_fn(x, None, "ntk"))(x1))


DIFFERING = {
    "W_std": lambda i: [stax.Dense(16, W_std=1.0 + 0.1 * i, b_std=0.1), stax.Relu()],
    "activations": lambda i: [stax.Dense(16, W_std=1.3), (stax.Erf, stax.Gelu, stax.Relu)[i % 3]()],
    "residual": lambda i: [
        stax.Dense(16, W_std=1.1),
        _residual(stax.serial(stax.Relu(), stax.Dense(16, W_std=0.5 + 0.1 * i))),
    ],
}


@pytest.mark.parametrize("kind", list(DIFFERING))
@pytest.mark.parametrize("with_x2", [False, True])
def test_serial_loops_over_differing_blocks_and_equals_them_one_by_one(kind, with_x2):
    """Blocks that differ (a W_std per layer, alternating activations) but
    keep the shapes of the kernel's arrays run as one loop that switches to
    each block's layers; the kernels are those of the layers applied in turn."""
    layers = [l for i in range(6) for l in DIFFERING[kind](i)] + [stax.Dense(1)]
    jaxpr = _serial_jaxpr_after_checking_it_equals_one_by_one(layers, with_x2)
    assert "scan" in jaxpr and "cond" in jaxpr


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("with_x2", [False, True])
def test_serial_loops_over_blocks_of_different_widths_with_each_blocks_metadata(
    parameterization, with_x2
):
    """The finite widths are the kernel's metadata, not its arrays: blocks of
    different widths share a loop, each rebuilding its input Kernel with its
    own widths (which the standard parameterization's kernels depend on)."""
    layers = [
        l
        for i in range(6)
        for l in (stax.Dense(16 + 3 * i, parameterization=parameterization), stax.Relu())
    ] + [stax.Dense(1, parameterization=parameterization)]
    jaxpr = _serial_jaxpr_after_checking_it_equals_one_by_one(layers, with_x2)
    assert "scan" in jaxpr and "cond" in jaxpr


def test_serial_loops_over_each_stretch_between_changes_of_the_kernels_shape():
    """Pooling that halves the positions splits differing blocks into two
    stretches: each runs as its own loop, and the kernels are those of the
    layers applied in turn."""

    def blocks(c):
        return [
            l
            for i in range(3)
            for l in (stax.Conv(c, (3,), padding="SAME", W_std=1.0 + 0.1 * i), stax.Relu())
        ]

    layers = [*blocks(4), stax.AvgPool((2,)), *blocks(5), stax.Flatten(), stax.Dense(1)]
    net = stax.serial(*layers)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 2))
    a = net.kernel_fn(x, None, diagonal_spatial=False)
    _assert_same_kernels(a, _layer_by_layer(layers, x, None, diagonal_spatial=False))
    jaxpr = jax.make_jaxpr(lambda x: net.kernel_fn(x, None, "ntk", diagonal_spatial=False))(x)
    assert str(jaxpr).count("scan[") == 2


def test_serial_unrolls_layers_that_change_the_kernels_shape():
    """VALID convolutions shrink the positions, so the covariance of every
    pair of positions changes shape from block to block: no loop can carry it."""
    net = stax.serial(*[l for _ in range(6) for l in (stax.Conv(4, (3,)), stax.Relu())])
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 2))
    jaxpr = str(jax.make_jaxpr(lambda x: net.kernel_fn(x, None, "ntk", diagonal_spatial=False))(x))
    assert "scan" not in jaxpr


def _scaled(c):
    """A user layer whose kernel transform multiplies the kernels by ``c``."""

    def transform(k, **kw):
        return k.replace(nngp=c * k.nngp, ntk=None if k.ntk is None else c * k.ntk)

    return stax.make_layer("Scaled", lambda key, s: (s, ()), lambda p, x, **kw: x, transform)


@pytest.mark.parametrize(
    "make_a,make_b,same",
    [
        (
            lambda: stax.Dense(8, W_std=2.0, b_std=0.1),
            lambda: stax.Dense(8, W_std=2.0, b_std=0.1),
            True,
        ),
        (lambda: stax.Dense(8, W_std=2.0), lambda: stax.Dense(8, W_std=1.0), False),
        (lambda: stax.Dense(8), lambda: stax.Dense(16), False),  # the finite width is metadata
        (
            lambda: stax.Dense(8, W_std=jnp.array(2.0)),
            lambda: stax.Dense(8, W_std=jnp.array(2.0)),
            False,
        ),
        (stax.Relu, stax.Relu, True),
        (stax.Relu, lambda: stax.LeakyRelu(0.0), False),
        (stax.Erf, stax.Erf, True),
        (stax.Erf, lambda: stax.Erf(a=2.0), False),
        (lambda: _scaled(2.0), lambda: _scaled(2.0), True),
        (lambda: _scaled(2.0), lambda: _scaled(3.0), False),
        (
            lambda: stax.serial(stax.Dense(4), stax.Relu()),
            lambda: stax.serial(stax.Dense(4), stax.Relu()),
            True,
        ),
        (
            lambda: stax.serial(stax.Dense(4), stax.Relu()),
            lambda: stax.serial(stax.Dense(4), stax.Erf()),
            False,
        ),
    ],
)
def test_same_kernel_is_true_only_for_equal_constructions(make_a, make_b, same):
    """Equal arguments to one constructor give the same kernel; any other
    difference (or an array argument, compared by identity only) does not."""
    assert same_kernel(make_a(), make_b()) is same


@pytest.mark.parametrize("masked", [False, True])
def test_repeat_of_a_parameterless_layer_applies_it_n_times(masked):
    """No stacked parameters to loop over: |·| applied 3 times is |·|."""
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    rep = stax.repeat(stax.Abs(), 3)
    _, params = rep.init_fn(jax.random.PRNGKey(1), x.shape)
    kw = {"mask_constant": 100.0} if masked else {}
    y = rep.apply_fn(params, x, **kw)
    y = y.masked_value if masked else y
    np.testing.assert_array_equal(y, jnp.abs(x))


def test_repeat_zero_times_is_the_identity():
    """NT's empty composition: outputs, shapes and kernels are the inputs'
    own (the NNGP of raw inputs x1 x2ᵀ / C, their NTK 0)."""
    x1, x2 = _inputs()
    rep = stax.repeat(stax.serial(stax.Dense(4, W_std=1.3), stax.Relu()), 0)
    shape, params = rep.init_fn(jax.random.PRNGKey(0), x1.shape)
    assert tuple(shape) == x1.shape
    assert jax.tree_util.tree_leaves(params) == []
    np.testing.assert_array_equal(rep.apply_fn(params, x1), x1)
    k = rep.kernel_fn(x1, x2, ("nngp", "ntk"))
    want = x1 @ x2.T / x1.shape[1]
    np.testing.assert_allclose(k.nngp, want, rtol=1e-14)
    np.testing.assert_allclose(k.ntk, 0 * want, atol=0)
    # After a Dense head the kernel is the head's: NNGP and NTK both x x2ᵀ/C.
    head = stax.Dense(4, W_std=1.0, b_std=0.0)
    k = stax.serial(head, rep).kernel_fn(x1, x2, ("nngp", "ntk"))
    np.testing.assert_allclose(k.nngp, want, rtol=1e-14)
    np.testing.assert_allclose(k.ntk, want, rtol=1e-14)


def test_repeat_zero_times_takes_the_layers_keywords():
    # The depth of a graph network may be 0; its call still passes `pattern`.
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    pattern = np.broadcast_to(np.eye(3), (2, 3, 3))
    k = stax.repeat(stax.Aggregate(), 0).kernel_fn(x, None, "nngp", pattern=(pattern, None))
    np.testing.assert_allclose(k, np.einsum("atc,btc->abt", x, x) / 4, rtol=1e-14)
    with pytest.raises(TypeError, match="patterns"):
        stax.repeat(stax.Aggregate(), 0).kernel_fn(x, None, "nngp", patterns=(pattern, None))


def test_repeat_zero_times_still_checks_the_layer_keeps_its_shape():
    with pytest.raises(ValueError, match=r"repeat.*keep its input shape.*\(5, 3\).*\(5, 8\)"):
        stax.repeat(stax.Dense(8), 0).init_fn(jax.random.PRNGKey(0), (5, 3))


def test_repeat_rejects_shape_changing_layer_at_init():
    with pytest.raises(ValueError, match=r"repeat.*keep its input shape.*\(5, 3\).*\(5, 8\)"):
        stax.repeat(stax.Dense(8), 2).init_fn(jax.random.PRNGKey(0), (5, 3))


# ------------------------------------------------------- branch bookkeeping


def test_fanout_copies_input_and_kernel():
    x1, _ = _inputs()
    _, apply_fn, kernel_fn = stax.FanOut(3)
    ys = apply_fn((), x1)
    assert isinstance(ys, list) and len(ys) == 3 and all(y is x1 for y in ys)
    dense = stax.Dense(4, W_std=1.3)
    k = dense.kernel_fn(x1)
    ks = kernel_fn(k)
    assert len(ks) == 3 and all(kk is k for kk in ks)


@pytest.mark.parametrize("get", ["nngp", ("nngp", "ntk")])
def test_network_ending_in_branches_returns_one_selection_per_branch(get):
    x1, x2 = _inputs()
    a, b = stax.Dense(7, W_std=1.3, b_std=0.2), stax.serial(stax.Dense(7), stax.Relu())
    net = stax.serial(stax.FanOut(2), stax.parallel(a, b))
    got = net.kernel_fn(x1, x2, get)
    assert isinstance(got, list) and len(got) == 2
    for out, layer in zip(got, (a, b)):
        want = layer.kernel_fn(x1, x2, get)
        for g, w in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-14)


@pytest.mark.parametrize("with_x2", [False, True])
def test_two_input_network_kernel_equals_that_of_the_scaled_concatenated_input(with_x2):
    # parallel(Dense, Dense) + FanInSum on inputs (x, y) of sizes 4 and 5 has
    # the input kernel x·x'/4 + y·y'/5, which one Dense sees on
    # z = [x·√(9/4), y·√(9/5)]: the rest of the network is the same.
    rng = np.random.default_rng(0)
    x, y, x2, y2 = (rng.normal(size=s) for s in ((3, 4), (3, 5), (2, 4), (2, 5)))
    net = stax.serial(
        stax.parallel(stax.Dense(8), stax.Dense(8)), stax.FanInSum(), stax.Relu(), stax.Dense(1)
    )
    ref = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    z = lambda a, b: np.concatenate([a * np.sqrt(9 / 4), b * np.sqrt(9 / 5)], axis=1)
    got = net.kernel_fn([x, y], [x2, y2] if with_x2 else None, ("nngp", "ntk"))
    want = ref.kernel_fn(z(x, y), z(x2, y2) if with_x2 else None, ("nngp", "ntk"))
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-12)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-12)


def test_two_input_network_needs_as_many_x2():
    net = stax.serial(stax.parallel(stax.Dense(2), stax.Dense(2)), stax.FanInSum())
    with pytest.raises(ValueError, match=r"`x2` must be None or inputs nested as `x1` is"):
        net.kernel_fn([np.ones((2, 3)), np.ones((2, 3))], np.ones((2, 3)))


def test_nested_inputs_must_be_matched_by_x2_nested_alike():
    net = stax.parallel(stax.parallel(stax.Dense(2), stax.Dense(2)), stax.Dense(2))
    x = np.ones((2, 3))
    with pytest.raises(
        ValueError, match=r"nested as `x1` is, \[\[\*, \*\], \*\]; got \[\*, \*, \*\]"
    ):
        net.kernel_fn(([x, x], x), [x, x, x])


@pytest.mark.parametrize("same_inputs", [False, True])
def test_nested_parallel_takes_nested_inputs_and_gives_each_branch_its_own_kernel(same_inputs):
    """``parallel(parallel(A, B), C)`` fed ``([a, b], c)`` (NT's nested
    multi-input networks): each output kernel is the kernel of its branch's
    own network on its own input, nested as the inputs are."""
    x1, x2 = _inputs()
    x2 = None if same_inputs else x2
    split = lambda x: None if x is None else ([x[:, :2], x[:, 2:3]], x[:, 3:])  # noqa: E731
    a = stax.serial(stax.Dense(5, W_std=1.3), stax.Relu())
    b = stax.serial(stax.Dense(5, b_std=0.3), stax.Erf())
    c = stax.Dense(5, W_std=0.7, b_std=0.1)
    net = stax.serial(stax.parallel(stax.parallel(a, b), c))
    (ka, kb), kc = net.kernel_fn(split(x1), split(x2), "ntk")
    (xa, xb), xc = split(x1)
    (ya, yb), yc = split(x2) if x2 is not None else ((None, None), None)
    for k, layer, x, y in ((ka, a, xa, ya), (kb, b, xb, yb), (kc, c, xc, yc)):
        np.testing.assert_allclose(k, layer.kernel_fn(x, y, "ntk"), rtol=1e-14)


def test_parallel_applies_one_layer_per_branch():
    x1, _ = _inputs()
    a, b = stax.Dense(7, W_std=1.3, b_std=0.2), stax.serial(stax.Dense(7), stax.Relu())
    net = stax.serial(stax.FanOut(2), stax.parallel(a, b))
    ka, kb = net.kernel_fn(x1)
    np.testing.assert_allclose(ka.nngp, a.kernel_fn(x1, get="nngp"), rtol=1e-14)
    np.testing.assert_allclose(kb.nngp, b.kernel_fn(x1, get="nngp"), rtol=1e-14)


def test_fanin_concat_is_channel_weighted_mean_of_branch_kernels():
    """Concatenating C_a and C_b channels, a following Dense averages over all
    C_a + C_b of them: ``K = (C_a K_a + C_b K_b) / (C_a + C_b)``, here with
    ``K_a = x x'ᵀ / 4`` (Identity, 4 channels) and
    ``K_b = 2² x x'ᵀ / 4 + 0.5²`` (Dense(12, 2, 0.5))."""
    x1, x2 = _inputs()
    net = stax.serial(
        stax.FanOut(2),
        stax.parallel(stax.Identity(), stax.Dense(12, W_std=2.0, b_std=0.5)),
        stax.FanInConcat(),
    )
    gram = np.asarray(x1) @ np.asarray(x2).T / 4
    expected = (4 * gram + 12 * (4 * gram + 0.25)) / 16
    k = net.kernel_fn(x1, x2)
    np.testing.assert_allclose(k.nngp, expected, rtol=1e-13)
    assert k.shape1 == (3, 16) and k.shape2 == (2, 16)


PARALLEL_ERRORS = [
    (
        "too_few_branches",
        lambda: stax.serial(
            stax.FanOut(2), stax.parallel(stax.Dense(3), stax.Dense(3), stax.Dense(3))
        ),
        r"parallel.*expected a list of 3 kernels.*got 2",
    ),
    (
        "not_a_list",
        lambda: stax.serial(stax.Dense(3), stax.parallel(stax.Dense(3), stax.Dense(3))),
        r"parallel.*expected a list of 2 kernels.*got Kernel",
    ),
    (
        "fanin_sum_without_branches",
        lambda: stax.serial(stax.Dense(3), stax.FanInSum()),
        r"FanInSum.*list of branches.*got Kernel",
    ),
    (
        "fanin_prod_without_branches",
        lambda: stax.serial(stax.Dense(3), stax.FanInProd()),
        r"FanInProd.*list of branches.*got Kernel",
    ),
    (
        "fanin_sum_shape_mismatch",
        lambda: stax.serial(
            stax.FanOut(2), stax.parallel(stax.Dense(3), stax.Dense(5)), stax.FanInSum()
        ),
        r"FanInSum.*same shape.*\(3, 3\).*\(3, 5\)",
    ),
    (
        "fanin_prod_shape_mismatch",
        lambda: stax.serial(
            stax.FanOut(2), stax.parallel(stax.Dense(3), stax.Dense(5)), stax.FanInProd()
        ),
        r"FanInProd.*same shape.*\(3, 3\).*\(3, 5\)",
    ),
    (
        "fanin_concat_non_channel_axis",
        lambda: stax.serial(
            stax.FanOut(2), stax.parallel(stax.Dense(3), stax.Dense(3)), stax.FanInConcat(axis=0)
        ),
        r"FanInConcat.*channel axis.*axis=0",
    ),
]


@pytest.mark.parametrize("case", PARALLEL_ERRORS, ids=lambda c: c[0])
def test_branch_argument_errors_name_layer_expectation_and_input(case):
    _, build, pattern = case
    x1, _ = _inputs()
    with pytest.raises(ValueError, match=pattern):
        build().kernel_fn(x1)


def test_parallel_apply_fn_rejects_wrong_branch_count():
    net = stax.parallel(stax.Dense(3), stax.Dense(3))
    _, params = net.init_fn(jax.random.PRNGKey(0), [(2, 4), (2, 4)])
    x1, _ = _inputs()
    with pytest.raises(ValueError, match=r"parallel.*expected a list of 2 inputs.*got 3"):
        net.apply_fn(params, [x1, x1, x1])


def test_several_inputs_may_mix_lists_and_tuples_and_x2_may_be_nones():
    """Lists and tuples both group inputs (``x1`` a list, ``x2`` a tuple), and
    ``x2 = (None, None)`` is ``x2 = None``, as NT reads them."""
    x1, x2 = _inputs()
    net = stax.parallel(stax.Dense(2, W_std=1.2), stax.Dense(3, b_std=0.4))
    mixed = net.kernel_fn([x1, x1 / 2], (x2, x2 / 2), "nngp")
    lists = net.kernel_fn([x1, x1 / 2], [x2, x2 / 2], "nngp")
    nones = net.kernel_fn([x1, x1 / 2], (None, None), "nngp")
    same = net.kernel_fn([x1, x1 / 2], None, "nngp")
    for a, b in zip(mixed + nones, lists + same):
        np.testing.assert_array_equal(a, b)
