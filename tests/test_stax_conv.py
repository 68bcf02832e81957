"""Transposed and unshared convolutions, image resizing and the Padding enum.

`ntk.stax.ConvTranspose`, `ConvLocal` (in ``ntk/stax/conv.py``) and
`ImageResize` (``ntk/stax/resize.py``); neural-tangents' values are checked in
``tests/golden/architectures_conv.py``. Oracles here, each independent of the
kernel code under test:

* Jacobian Gram. A single affine layer on raw inputs is linear in its
  parameters ``θ ~ N(0, I)`` (NTK parameterization), so its NNGP is exactly
  ``Σ_θ ∂y_c(x1)/∂θ · ∂y_c(x2)/∂θ`` for any one output channel ``c``: the
  Jacobian of the layer's own ``apply_fn`` (``jax.lax.conv_transpose``,
  ``conv_general_dilated_local``), which shares no code with the kernel. It
  checks every pair of positions, in both spatial layouts. For ImageResize
  the oracle is the Gram matrix of the resized inputs.
* Monte Carlo kernels of wide finite networks (`tests/mc.py`), every (input,
  position) of the output a row. Each network has one hidden nonlinearity, so
  its hidden pre-activations are exactly Gaussian and the readout weights are
  independent of them: the estimate is unbiased at any width. The bound is 6
  standard errors of the mean: with 32 draws the standardised error is
  Student-t with 31 degrees of freedom, P(|t| > 6) ≈ 1e-6 per entry, and a
  network here has up to ~5000 kernel entries (P(|t| > 5) ≈ 2e-5 per entry
  would fail one network in ten). A wrong fold, tap set or bias placement
  moves entries by tens of percent, i.e. tens of standard errors.
* Brute-force Jacobians for the empirical NTK; μP's base-width identity.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntk import mup, stax
from ntk.empirical import NtkImplementation, empirical_ntk_fn
from ntk.kernel import inputs_to_kernel
from ntk.stax import spec as specs
from mc import assert_within_mc, mc_kernels

C, OUT, SAMPLES = 48, 48, 32
KEY = jax.random.PRNGKey(3)


def _data(shape1, shape2, seed):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=shape1)), jnp.asarray(rng.normal(size=shape2))


IMG = _data((2, 3, 4, 2), (1, 3, 4, 2), seed=0)
SEQ = _data((2, 5, 2), (2, 5, 2), seed=1)


def _kernel(layer, x1, x2, diagonal_spatial):
    def run(x1, x2):
        k0 = inputs_to_kernel(x1, x2, diagonal_spatial=diagonal_spatial, compute_ntk=True)
        return layer.kernel_fn(k0)

    return jax.jit(run)(x1, x2)


def _interleave(g, d):
    """``(N1, *S, N2, *S)`` -> the full layout ``(N1, N2, S1, S1', ...)``."""
    perm = [0, d + 1] + [a for i in range(d) for a in (1 + i, d + 2 + i)]
    return np.transpose(g, perm)


def _same_position(full, d):
    for _ in range(d):
        full = np.diagonal(full, axis1=2, axis2=3)
    return full


def _as_matrix(m):
    """Full-layout ``(N1, N2, S1, S1', ...)`` -> ``(N1·|S|, N2·|S|)``."""
    d = (m.ndim - 2) // 2
    perm = [0] + [2 + 2 * i for i in range(d)] + [1] + [3 + 2 * i for i in range(d)]
    m = np.transpose(np.asarray(m), perm)
    return m.reshape(math.prod(m.shape[: 1 + d]), -1)


# ------------------------------------------------------- finite layers


GEOMETRIES = [((3, 2), (1, 1)), ((4, 1), (2, 1)), ((1, 2), (3, 2))]


@pytest.mark.parametrize("padding", ["VALID", "SAME", "CIRCULAR"])
def test_conv_transpose_shapes_follow_lax_conv_transpose(padding):
    # VALID/SAME output shapes are jax.lax.conv_transpose's; CIRCULAR keeps
    # SAME's (neural-tangents' convention). init_fn and apply_fn agree.
    x = IMG[0]
    for filt, strides in GEOMETRIES:
        layer = stax.ConvTranspose(5, filt, strides, padding)
        shape, (W, b) = layer.init_fn(KEY, x.shape)
        lax_padding = "VALID" if padding == "VALID" else "SAME"
        want = jax.eval_shape(
            functools.partial(
                jax.lax.conv_transpose,
                strides=strides,
                padding=lax_padding,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            ),
            x,
            W,
        ).shape
        assert shape == want == layer.apply_fn((W, b), x).shape
        assert W.shape == filt + (2, 5) and b is None


def test_conv_transpose_circular_folds_the_valid_output_periodically():
    # NT's CIRCULAR transpose: the VALID output, entry q added to output
    # (q - offset) mod (size·stride) with offset = (valid - out) // 2; here by
    # an explicit NumPy loop over the VALID output of a one-channel layer.
    x = SEQ[0][:, :, :1]
    for filt, stride in [(4, 2), (5, 1), (7, 2), (2, 3)]:
        valid = stax.ConvTranspose(1, (filt,), (stride,), "VALID")
        circ = stax.ConvTranspose(1, (filt,), (stride,), "CIRCULAR")
        _, params = valid.init_fn(KEY, x.shape)
        yv = np.asarray(valid.apply_fn(params, x))
        out = x.shape[1] * stride
        offset = (yv.shape[1] - out) // 2
        want = np.zeros((x.shape[0], out, 1))
        for q in range(yv.shape[1]):
            want[:, (q - offset) % out] += yv[:, q]
        np.testing.assert_allclose(circ.apply_fn(params, x), want, rtol=1e-12, atol=1e-12)


def test_conv_local_weights_are_per_position_and_shapes_match_nt():
    layer = stax.ConvLocal(5, (3, 2), (2, 1), "SAME", b_std=0.1)
    shape, (W, b) = layer.init_fn(KEY, IMG[0].shape)
    # NT: W (*S_out, C·|F|, out), bias (1, *S_out, out); SAME: ceil(S / s).
    assert shape == (2, 2, 4, 5) and W.shape == (2, 4, 12, 5) and b.shape == (1, 2, 4, 5)
    assert layer.apply_fn((W, b), IMG[0]).shape == shape
    # Unshared: output position (0, 0) depends only on W[0, 0].
    g = jax.grad(lambda W: layer.apply_fn((W, b), IMG[0])[:, 0, 0].sum())(W)
    assert np.count_nonzero(np.abs(np.asarray(g)).sum((-2, -1))) == 1


def test_conv_local_equals_conv_when_its_weights_are_tied():
    # Copies of one Conv filter at every position give the Conv itself; the
    # patch axis of ConvLocal's W is channel-major (C, *F).
    x = IMG[0]
    for padding, strides in [("SAME", (2, 1)), ("CIRCULAR", (1, 2))]:
        conv = stax.Conv(3, (2, 3), strides, padding, W_std=1.2)
        local = stax.ConvLocal(3, (2, 3), strides, padding, W_std=1.2)
        _, (Wc, _) = conv.init_fn(KEY, x.shape)
        _, (Wl, _) = local.init_fn(KEY, x.shape)
        tied = jnp.broadcast_to(jnp.transpose(Wc, (2, 0, 1, 3)).reshape(-1, 3), Wl.shape)
        np.testing.assert_allclose(
            local.apply_fn((tied, None), x), conv.apply_fn((Wc, None), x), rtol=1e-12, atol=1e-12
        )


# --------------------------------------- kernels against Jacobian Grams


def _jacobian_gram(layer, x1, x2):
    """``Σ_θ ∂y_0(x1)/∂θ ∂y_0(x2)/∂θ`` over weights and bias, full layout.

    A shared bias adds ``b_std²`` everywhere, a per-position one only where
    the two positions coincide (``∂y(o)/∂b(o') = b_std δ_{oo'}``): the
    Jacobian says which.
    """
    _, params = layer.init_fn(KEY, x1.shape)
    f = lambda p, x: layer.apply_fn(p, x)[..., 0]
    d = x1.ndim - 2
    j1, j2 = jax.jacrev(f)(params, x1), jax.jacrev(f)(params, x2)
    g = sum(
        jnp.tensordot(a, b, axes=(list(range(d + 1, a.ndim)),) * 2)
        for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2))
    )
    return jnp.transpose(g, [0, d + 1] + [a for i in range(d) for a in (1 + i, d + 2 + i)])


LINEAR_CASES = [
    (padding, filt, strides, data)
    for padding in ("VALID", "SAME", "CIRCULAR")
    for filt, strides, data in [((3, 2), (1, 1), IMG), ((2, 3), (2, 2), IMG), ((4,), (2,), SEQ)]
]


@pytest.mark.parametrize("kind", ["ConvTranspose", "ConvLocal"])
@pytest.mark.parametrize("padding,filt,strides,data", LINEAR_CASES)
def test_kernel_equals_jacobian_gram_in_both_layouts(kind, padding, filt, strides, data):
    layer = getattr(stax, kind)(3, filt, strides, padding, W_std=1.3, b_std=0.4)

    @jax.jit  # one compiled program per case
    def run(x1, x2):
        kernels = [
            layer.kernel_fn(inputs_to_kernel(x1, x2, diagonal_spatial=diag, compute_ntk=True))
            for diag in (False, True)
        ]
        return kernels, _jacobian_gram(layer, x1, x2), _jacobian_gram(layer, x1, x1)

    (full, diag), want, want11 = run(*data)
    d = len(filt)
    np.testing.assert_allclose(full.nngp, want, rtol=1e-12, atol=1e-12)
    # No parameters below the layer: Θ = K for one layer on raw inputs.
    np.testing.assert_allclose(full.ntk, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(diag.nngp, _same_position(want, d), rtol=1e-12, atol=1e-12)
    cov1 = np.moveaxis(np.diagonal(_same_position(want11, d), axis1=0, axis2=1), -1, 0)
    np.testing.assert_allclose(diag.cov1, cov1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "method,antialias,shape",
    [
        ("linear", True, (-1, 6, 2, -1)),
        ("nearest", True, (-1, 2, 7, -1)),
        ("linear", False, (-1, 2, 2, -1)),
        ("cubic", True, (-1, 5, 3, -1)),
        ("lanczos3", True, (-1, -1, 6, -1)),
        ("lanczos5", False, (-1, 2, 5, -1)),
    ],
)
def test_resize_kernel_equals_gram_of_resized_inputs(method, antialias, shape):
    layer = stax.ImageResize(shape, method, antialias)
    x1, x2 = IMG
    y1, y2 = (np.asarray(layer.apply_fn((), x)) for x in (x1, x2))
    want = _interleave(np.tensordot(y1, y2, axes=([3], [3])) / x1.shape[-1], 2)
    k = _kernel(layer, x1, x2, False)
    np.testing.assert_allclose(k.nngp, want, rtol=1e-12, atol=1e-12)
    assert k.shape1 == y1.shape and k.shape2 == y2.shape


def test_resize_enum_method_and_minus_one_entries():
    # NT's convention: -1 keeps an axis; a ResizeMethod works like its name
    # (NT's kernel_fn fails on the enum with an unbound local).
    x1, x2 = IMG
    by_name = stax.ImageResize((-1, 5, -1, -1), "bilinear")
    by_enum = stax.ImageResize((-1, 5, -1, -1), jax.image.ResizeMethod.LINEAR)
    assert by_enum.init_fn(KEY, x1.shape)[0] == (2, 5, 4, 2)
    a, b = (l.kernel_fn(x1, x2, "ntk") for l in (by_name, by_enum))
    np.testing.assert_array_equal(a, b)
    keep = stax.ImageResize((-1, -1, -1, -1), "linear")
    np.testing.assert_array_equal(keep.apply_fn((), x1), x1)
    assert not keep.kernel_fn.needs_full_spatial and by_name.kernel_fn.needs_full_spatial


# ---------------------------------------------------------- Monte Carlo


def _check_mc(layer, x1, x2):
    k = _kernel(layer, x1, x2, False)
    init_fn, apply_fn, _ = layer

    def flat(p, x, **kw):
        y = apply_fn(p, x, **kw)
        return y.reshape(-1, y.shape[-1])

    nngp_m, nngp_s, ntk_m, ntk_s = mc_kernels(init_fn, flat, x1, x2, KEY, SAMPLES)
    nngp, ntk = _as_matrix(k.nngp), _as_matrix(k.ntk)
    assert nngp.shape == nngp_m.shape
    assert_within_mc(nngp, nngp_m, nngp_s, n_sigma=6, what="nngp")
    assert_within_mc(ntk, ntk_m, ntk_s, n_sigma=6, what="ntk")


MC_NETWORKS = {
    "transpose_2d_same_then_circular": (
        lambda: stax.serial(
            stax.ConvTranspose(C, (3, 2), (2, 1), "SAME", W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.ConvTranspose(OUT, (2, 3), (1, 2), "CIRCULAR", W_std=1.1, b_std=0.1),
        ),
        IMG,
    ),
    "transpose_1d_valid_then_circular_standard": (
        lambda: stax.serial(
            stax.ConvTranspose(
                C, (3,), (2,), "VALID", W_std=1.2, b_std=0.3, parameterization="standard", s=(1, 2)
            ),
            stax.Erf(),
            stax.ConvTranspose(
                OUT, (4,), (2,), "CIRCULAR", W_std=1.4, parameterization="standard", s=(2, 1)
            ),
        ),
        SEQ,
    ),
    "local_2d_same_then_circular_strided": (
        lambda: stax.serial(
            stax.ConvLocal(C, (2, 2), None, "SAME", W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.ConvLocal(OUT, (2, 3), (2, 2), "CIRCULAR", W_std=1.2, b_std=0.3),
        ),
        IMG,
    ),
    "local_1d_valid_standard_s": (
        lambda: stax.serial(
            stax.ConvLocal(
                C, (3,), (2,), "VALID", W_std=1.4, b_std=0.1, parameterization="standard", s=(2, 2)
            ),
            stax.Abs(),
            stax.ConvLocal(
                OUT, (2,), None, "SAME", W_std=0.9, b_std=0.2, parameterization="standard", s=(2, 2)
            ),
        ),
        SEQ,
    ),
    # NT applies a ConvLocal filter of shape (3, 1) as (1, 3) here: after a
    # Conv its kernel's spatial axes are reversed, and it reverses the filter
    # for Conv but not for ConvLocal. Monte Carlo shows ours is the finite
    # network's (a (1, 3) kernel fails this test by 7 standard errors).
    "local_after_conv_non_square_filter": (
        lambda: stax.serial(
            stax.Conv(C, (2, 2), padding="SAME", W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.ConvLocal(OUT, (3, 1), None, "SAME", W_std=1.2, b_std=0.1),
        ),
        IMG,
    ),
    # NT's Sign sets every entry of each input's own spatial covariance to 1,
    # also between two positions, so after pooling the next layer's variances
    # (and its Relu) are wrong: NT's kernel is about twice the finite network's.
    "sign_then_pool_then_relu": (
        lambda: stax.serial(
            stax.Conv(C, (2, 2), padding="SAME", W_std=1.3, b_std=0.2),
            stax.Sign(),
            stax.SumPool((2, 2), padding="SAME"),
            stax.Conv(C, (1, 1), W_std=1.1, b_std=0.1),
            stax.Relu(),
            stax.Conv(OUT, (1, 2), W_std=0.9),
        ),
        IMG,
    ),
    # NT's kernel resizes H by W's target here (its layout after a Conv is
    # axis-reversed); Monte Carlo shows ours is the finite network's.
    "resize_linear_after_conv_non_square": (
        lambda: stax.serial(
            stax.Conv(C, (2, 2), padding="SAME", W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.ImageResize((-1, 5, 2, -1), "linear"),
            stax.Conv(OUT, (2, 1), W_std=1.1, b_std=0.1),
        ),
        IMG,
    ),
    # No kernel in NT for cubic / Lanczos (its kernel_fn raises).
    "resize_cubic_and_lanczos3": (
        lambda: stax.serial(
            stax.Conv(C, (2, 2), padding="SAME", W_std=1.2),
            stax.Erf(),
            stax.ImageResize((-1, 6, 3, -1), "cubic"),
            stax.ImageResize((-1, 4, -1, -1), "lanczos3"),
            stax.Conv(OUT, (1, 1), W_std=1.1, b_std=0.1),
        ),
        IMG,
    ),
    "resize_nearest_1d": (
        lambda: stax.serial(
            stax.Conv(C, (2,), W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.ImageResize((-1, 7, -1), "nearest"),
            stax.ConvTranspose(OUT, (2,), (2,), "SAME"),
        ),
        SEQ,
    ),
}


@pytest.mark.parametrize("name", list(MC_NETWORKS))
def test_full_spatial_kernel_matches_monte_carlo(name):
    make, data = MC_NETWORKS[name]
    _check_mc(make(), *data)


# ------------------------------------------------------------ properties


PROPERTY_LAYERS = {
    "transpose_same_s2": lambda: stax.ConvTranspose(4, (3, 2), (2, 2), "SAME", b_std=0.1),
    "transpose_circular": lambda: stax.ConvTranspose(4, (3, 3), (2, 1), "CIRCULAR"),
    "transpose_valid": lambda: stax.ConvTranspose(4, (2, 2), (1, 2), "VALID", b_std=0.2),
    "local_circular_s2": lambda: stax.ConvLocal(4, (2, 3), (2, 2), "CIRCULAR", b_std=0.1),
    "local_same": lambda: stax.ConvLocal(4, (3, 3), None, "SAME", W_std=1.5),
    "resize_linear": lambda: stax.serial(
        stax.Conv(4, (2, 2), padding="SAME"), stax.ImageResize((-1, 5, 2, -1), "linear")
    ),
    "resize_nearest_cubic": lambda: stax.serial(
        stax.Conv(4, (2, 2), padding="SAME", b_std=0.1),
        stax.ImageResize((-1, 2, 6, -1), "nearest"),
        stax.ImageResize((-1, 4, 3, -1), "cubic"),
    ),
}
PROP_SHAPE = (3, 3, 4, 2)
SETTINGS = settings(
    deadline=None, max_examples=6, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@functools.lru_cache(maxsize=None)
def _compiled(name, pool):
    # Relu then pooling or Flatten: both layouts, a nonlinearity on top.
    tail = stax.GlobalAvgPool() if pool else stax.Flatten()
    net = stax.serial(PROPERTY_LAYERS[name](), stax.Relu(), tail, stax.Dense(1))
    return jax.jit(lambda x: net.kernel_fn(x, None, ("nngp", "ntk")))


@SETTINGS
@given(
    name=st.sampled_from(sorted(PROPERTY_LAYERS)),
    pool=st.booleans(),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 3.0),
)
def test_kernels_are_symmetric_and_positive_semidefinite(name, pool, seed, scale):
    x = scale * np.random.default_rng(seed).standard_normal(PROP_SHAPE)
    for m in _compiled(name, pool)(x):
        m = np.asarray(m)
        np.testing.assert_allclose(m, m.T, rtol=1e-12, atol=1e-14)
        assert np.linalg.eigvalsh(m).min() >= -1e-10 * np.abs(m).max()


@pytest.mark.parametrize("name", sorted(PROPERTY_LAYERS))
def test_kernels_are_finite_at_identical_and_zero_inputs(name):
    x = np.random.default_rng(0).standard_normal(PROP_SHAPE)
    x[1] = x[0]
    for inputs in (x, np.zeros(PROP_SHAPE)):
        for pool in (False, True):
            for m in _compiled(name, pool)(inputs):
                assert np.all(np.isfinite(np.asarray(m)))


# -------------------------------------------------------- empirical NTK


EMPIRICAL_NETWORKS = {
    "transpose": lambda: stax.serial(
        stax.ConvTranspose(3, (2, 2), (2, 2), "SAME", b_std=0.1),
        stax.Relu(),
        stax.ConvTranspose(2, (3, 2), (1, 2), "CIRCULAR", parameterization="standard"),
        stax.GlobalAvgPool(),
        stax.Dense(2),
    ),
    "local": lambda: stax.serial(
        stax.ConvLocal(3, (2, 2), None, "SAME", b_std=0.1),
        stax.Relu(),
        stax.ConvLocal(2, (2, 2), (2, 1), "CIRCULAR", parameterization="standard", b_std=0.2),
        stax.Flatten(),
        stax.Dense(2),
    ),
    "resize": lambda: stax.serial(
        stax.Conv(3, (2, 2), padding="SAME"),
        stax.Relu(),
        stax.ImageResize((-1, 5, 3, -1), "linear"),
        stax.Conv(2, (2, 2)),
        stax.Flatten(),
        stax.Dense(2),
    ),
}


@functools.lru_cache(maxsize=None)
def _empirical_case(name):
    """``(network, params, brute-force NTK traced over the logits)``."""
    net = EMPIRICAL_NETWORKS[name]()
    x1, x2 = IMG
    _, params = net.init_fn(KEY, x1.shape)

    @jax.jit
    def brute(params):
        jac = jax.jacrev(net.apply_fn)
        j1, j2 = jac(params, x1), jac(params, x2)
        # Full NTK (N1, O, N2, O), then NT's default: trace over the logits.
        full = sum(
            jnp.tensordot(a, b, axes=(list(range(2, a.ndim)),) * 2)
            for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2))
        )
        return jnp.einsum("aobo->ab", full) / full.shape[1]

    return net, params, np.asarray(brute(params))


IMPLS = [
    NtkImplementation.JACOBIAN_CONTRACTION,
    NtkImplementation.NTK_VECTOR_PRODUCTS,
    NtkImplementation.STRUCTURED_DERIVATIVES,
]


@pytest.mark.parametrize("impl", IMPLS, ids=lambda i: i.name)
@pytest.mark.parametrize("name", list(EMPIRICAL_NETWORKS))
def test_empirical_ntk_matches_brute_force_jacobians(name, impl):
    net, params, want = _empirical_case(name)
    x1, x2 = IMG
    got = empirical_ntk_fn(net, implementation=impl)(x1, x2, params)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


# ------------------------------------------------------------------- μP


def _mup_net(kind, width, parameterization="ntk"):
    layer = {
        "ConvTranspose": lambda: stax.ConvTranspose(
            width, (2, 2), (2, 2), "SAME", b_std=0.1, parameterization=parameterization
        ),
        "ConvLocal": lambda: stax.ConvLocal(
            width, (2, 2), None, "SAME", b_std=0.1, parameterization=parameterization
        ),
    }[kind]
    # Input layer: Dense on the channels of every position (cheapest to draw).
    return stax.serial(
        stax.Dense(width, b_std=0.1, parameterization=parameterization),
        stax.Relu(),
        layer(),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1, parameterization=parameterization),
    )


@pytest.mark.parametrize(
    "kind,parameterization",
    [("ConvTranspose", "ntk"), ("ConvTranspose", "standard"), ("ConvLocal", "ntk")],
)
def test_mup_at_base_width_is_the_native_network(kind, parameterization):
    # ConvTranspose's W is (*F, in, out) and ConvLocal's (*S, in·|F|, out):
    # their records give μP the input channel count (dividing |F| out for
    # ConvLocal), so at the base width the μP network is the native one.
    name = "mup"
    model = _mup_net(kind, 8, parameterization)
    net = mup.parametrize(model, name, base_width=8, input_shape=IMG[0].shape)
    shape = IMG[0].shape

    # One program for both networks (drawing and applying): compiling the
    # random draws dominates, and a single compilation halves it.
    @jax.jit
    def outputs(key, x):
        return (
            net.apply_fn(net.init_fn(key, shape)[1], x),
            model.apply_fn(model.init_fn(key, shape)[1], x),
        )

    got, want = outputs(KEY, IMG[0])
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("kind", ["ConvTranspose", "ConvLocal"])
def test_mup_scales_hidden_transposed_and_local_layers_with_channel_width(kind):
    # A hidden ConvTranspose / ConvLocal is affine with W (..., fan_in, out):
    # fan-in (C, resp. C·|F|) and fan-out grow linearly with the width n, so
    # μP's width multipliers must (4x from n = 16 to 64), and μP keeps a hidden
    # layer's native initialisation (TP5 Table 3: variance 1/fan_in, i.e.
    # stax's N(0, 1) weights divided by √fan_in in apply) at every width.
    mults = []
    for n in (16, 64):
        model = _mup_net(kind, n)
        net = mup.parametrize(model, "mup", base_width=16, input_shape=IMG[0].shape)
        w = jax.jit(net.init_fn, static_argnums=1)(KEY, IMG[0].shape)[1]
        W_scale, b_scale = net.info[2]
        assert (W_scale.role, b_scale.role) == ("hidden", "bias")
        mults.append((W_scale.width_mult, b_scale.width_mult))
        native = np.asarray(w[2][0] * W_scale.fwd_mult)
        # Sample variance of m standard normals: relative sd √(2/m); 5 sd.
        assert native.var() == pytest.approx(1.0, rel=5 * math.sqrt(2 / native.size))
    assert mults[1] == pytest.approx((4 * mults[0][0], 4 * mults[0][1]))


# ------------------------------------------------------------------ records


def test_records_describe_geometry_and_are_not_conv():
    # The structured empirical NTK treats `specs.Conv` as shared patches; a
    # transposed or unshared conv must not be mistaken for one.
    ct = stax.ConvTranspose(3, (2, 3), (2, 1), stax.Padding.CIRCULAR, b_std=0.1).kernel_fn.spec
    cl = stax.ConvLocal(3, (2, 2), None, "same").kernel_fn.spec
    assert isinstance(ct, specs.ConvTranspose) and isinstance(cl, specs.ConvLocal)
    assert isinstance(ct, specs.Affine) and not isinstance(ct, specs.Conv)
    assert isinstance(cl, specs.Affine) and not isinstance(cl, specs.Conv)
    assert (ct.filter_shape, ct.strides, ct.padding, ct.b_std) == ((2, 3), (2, 1), "CIRCULAR", 0.1)
    assert (cl.filter_shape, cl.strides, cl.padding) == ((2, 2), (1, 1), "SAME")


# ---------------------------------------------------------- Padding enum


def test_padding_enum_has_nts_members_and_is_accepted_everywhere():
    # End to end against NT: the golden ``conv`` family passes the enum to
    # Conv, ConvTranspose and ConvLocal. Here: every layer taking a padding
    # reads a member as its value.
    assert {p.name: p.value for p in stax.Padding} == {
        "CIRCULAR": "CIRCULAR",
        "SAME": "SAME",
        "VALID": "VALID",
    }
    for p in stax.Padding:
        for make in (stax.Conv, stax.ConvTranspose, stax.ConvLocal):
            assert make(3, (2, 2), padding=p).kernel_fn.spec.padding == p.value
    x1, x2 = IMG
    pool = lambda p: stax.serial(stax.Conv(3, (2, 2)), stax.AvgPool((2, 3), padding=p))
    np.testing.assert_array_equal(
        pool(stax.Padding.CIRCULAR).kernel_fn(x1, x2, "ntk"),
        pool("CIRCULAR").kernel_fn(x1, x2, "ntk"),
    )
    with pytest.raises(ValueError, match="padding"):
        stax.SumPool((2, 2), padding="REFLECT")


# ---------------------------------------------- 0-D filters (NT: Dense)


@pytest.mark.parametrize("make", [stax.Conv, stax.ConvTranspose, stax.ConvLocal])
def test_zero_d_filter_is_dense_on_vectors(make):
    """A filter of shape () on vectors (N, C), as NT allows: one tap, fan-in
    C, so y = W_std x W / √C + b_std b and, on raw inputs, the NNGP and NTK
    are both W_std² x1·x2 / C + b_std² (the first layer's NTK is its NNGP)."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    w_std, b_std = 1.3, 0.2
    layer = make(5, (), padding="SAME", W_std=w_std, b_std=b_std)
    shape, (W, b) = layer.init_fn(jax.random.PRNGKey(0), x1.shape)
    assert tuple(shape) == (3, 5)
    np.testing.assert_allclose(
        layer.apply_fn((W, b), x1),
        w_std * x1 @ W.reshape(4, 5) / 2.0 + b_std * b.reshape(1, 5),
        rtol=1e-12,
    )
    k = layer.kernel_fn(x1, x2, ("nngp", "ntk"))
    want = w_std**2 * x1 @ x2.T / 4 + b_std**2
    np.testing.assert_allclose(k.nngp, want, rtol=1e-12)
    np.testing.assert_allclose(k.ntk, want, rtol=1e-12)


def test_zero_d_filter_needs_vector_inputs():
    with pytest.raises(
        ValueError, match=r"Conv\(5, \(\)\): a 0-D filter needs inputs of shape \(N, C\), rank 2"
    ):
        stax.Conv(5, ()).kernel_fn(np.ones((2, 3, 3, 4)), None, "nngp")


# ------------------------------------------------------------------ errors


BAD = {
    "transpose padding": (lambda: stax.ConvTranspose(3, (2, 2), padding="FULL"), "padding"),
    "transpose strides per axis": (lambda: stax.ConvTranspose(3, (2, 2), (2,)), "strides"),
    "transpose out_chan": (lambda: stax.ConvTranspose(0, (2, 2)), "out_chan"),
    "transpose channels first": (
        lambda: stax.ConvTranspose(3, (2, 2), dimension_numbers=("NCHW", "OIHW", "NCHW")),
        "dimension_numbers",
    ),
    "transpose parameterization": (
        lambda: stax.ConvTranspose(3, (2, 2), parameterization="mup"),
        "parameterization",
    ),
    "local W_std": (lambda: stax.ConvLocal(3, (2, 2), W_std=-1.0), "W_std"),
    "local s": (lambda: stax.ConvLocal(3, (2, 2), s=(1, 0)), "`s`"),
    "local filter": (lambda: stax.ConvLocal(3, (0, 2)), "filter_shape"),
    "resize method": (lambda: stax.ImageResize((-1, 4, 4, -1), "bicubic-ish"), "method"),
    "resize shape": (lambda: stax.ImageResize((-1, 0, 4, -1), "linear"), "shape"),
    "resize axes": (
        lambda: stax.ImageResize((-1, 4, 4, -1), "linear", channel_axis=1),
        "channel_axis",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_are_rejected_by_name(case):
    make, arg = BAD[case]
    with pytest.raises(ValueError, match=arg):
        make()


def test_unsupported_kernels_say_why():
    x1, x2 = IMG
    cases = [
        # As NT: resizing the channel axis has no infinite-width limit.
        (stax.ImageResize((-1, 4, 4, 3), "linear"), "channel axis"),
        # NT's Kernel can hold x1-x1 covariances for this; ours cannot.
        (stax.ImageResize((3, 4, 4, -1), "linear"), "batch axis"),
        (stax.ImageResize((-1, 4, -1), "linear"), "rank"),
        (stax.ConvLocal(3, (4, 2)), "no output positions"),
        (stax.ConvTranspose(3, (2,)), "needs inputs of shape"),
    ]
    for layer, message in cases:
        with pytest.raises(ValueError, match=message):
            layer.kernel_fn(x1, x2)
    # A spatial resize needs covariances between positions.
    k = inputs_to_kernel(x1, x2, diagonal_spatial=True, compute_ntk=True)
    with pytest.raises(ValueError, match="diagonal_spatial=False"):
        stax.ImageResize((-1, 4, 4, -1), "linear").kernel_fn(k)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_diagonal_spatial_false_gives_nt_full_layout_consistent_with_pooling(get):
    # NT's default layout (N1, N2, H, H, W, W): its same-position entries are
    # our default output, and its mean over all position pairs is the kernel
    # of the same network followed by global average pooling.
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(3, 5, 4, 2)), rng.normal(size=(2, 5, 4, 2))
    net = stax.serial(
        stax.Conv(4, (3, 3), padding="SAME", W_std=1.4, b_std=0.1),
        stax.Relu(),
        stax.Conv(4, (2, 2), padding="SAME"),
    )
    full = np.asarray(net.kernel_fn(x1, x2, get, diagonal_spatial=False))
    assert full.shape == (3, 2, 5, 5, 4, 4)
    np.testing.assert_allclose(
        np.einsum("abhhww->abhw", full), net.kernel_fn(x1, x2, get), rtol=1e-12
    )
    pooled = stax.serial(net, stax.GlobalAvgPool()).kernel_fn(x1, x2, get)
    np.testing.assert_allclose(full.mean(axis=(2, 3, 4, 5)), pooled, rtol=1e-12)
