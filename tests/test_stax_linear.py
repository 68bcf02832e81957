"""Linear layers: Dense, Conv, pooling, Flatten, LayerNorm, Dropout.

Oracles, each able to disagree with the code under test:

* Monte Carlo kernels of wide finite networks built from the same layers'
  ``apply_fn`` (`tests/mc.py`). For spatial outputs ``(N, *S, O)`` the rows
  ``(n, s)`` are treated as separate inputs, so every pair of positions of the
  full spatial kernel is checked, not only their mean.
* Brute force: the convolution kernel summed window by window in NumPy, and
  the kernel of pooling computed as the Gram matrix of inputs pooled in NumPy
  (pooling is linear, so both must agree exactly).
* The two spatial layouts: where no layer needs cross-position covariances,
  the diagonal layout must equal the same-position part of the full one.
* Central finite differences for gradients.

Monte Carlo tolerances. Every network here has a single hidden nonlinearity
(or none), so its hidden pre-activations are exactly Gaussian, the readout
weights are independent of them, and the Monte Carlo mean of the NNGP and NTK
is unbiased at any width: the bound is the CLT one, 5 standard errors of the
mean over the draws. LayerNorm divides by the empirical standard deviation over
its ``n`` normalised entries, whose reciprocal has an O(1/n) relative bias
(E[1/σ̂] = (1 + 3/(4n) + …)/σ for Gaussian entries); those tests allow
``2/n`` relative to the largest kernel entry.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from ntk.kernel import inputs_to_kernel
from mc import assert_within_mc, mc_kernels

C, OUT, SAMPLES = 64, 64, 32
KEY = jax.random.PRNGKey(7)


def _data(shape1, shape2, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=shape1)), jnp.asarray(rng.normal(size=shape2))


IMG = _data((3, 4, 5, 2), (2, 4, 5, 2))
SEQ = _data((3, 7, 2), (2, 7, 2), seed=1)
VEC = _data((3, 5), (2, 5), seed=2)
VOL = _data((2, 3, 3, 2, 2), (1, 3, 3, 2, 2), seed=3)


def as_matrix(m):
    """``(N1, N2, S1, S1', ...)`` full-layout kernel -> ``(N1·|S|, N2·|S|)``."""
    d = (m.ndim - 2) // 2
    perm = [0] + [2 + 2 * i for i in range(d)] + [1] + [3 + 2 * i for i in range(d)]
    m = jnp.transpose(m, perm)
    rows = math.prod(m.shape[: 1 + d])
    return m.reshape(rows, -1)


def _kernel(layer, x1, x2, diagonal_spatial):
    # One compiled program per network (eager op-by-op dispatch is much slower).
    def run(x1, x2):
        k0 = inputs_to_kernel(x1, x2, diagonal_spatial=diagonal_spatial, compute_ntk=True)
        return layer.kernel_fn(k0)

    return jax.jit(run)(x1, x2)


def full_kernel(layer, x1, x2):
    """The layer's kernel computed in the full spatial layout."""
    return _kernel(layer, x1, x2, False)


def diag_kernel(layer, x1, x2):
    """The layer's kernel computed in the diagonal (same-position) layout."""
    return _kernel(layer, x1, x2, True)


def mc_rows(layer, x1, x2, n_samples=SAMPLES, apply_kwargs=None):
    """Monte Carlo kernels with every (input, position) of the output a row."""
    init_fn, apply_fn, _ = layer

    def flat_apply(params, x, **kw):
        y = apply_fn(params, x, **kw)
        return y.reshape(-1, y.shape[-1])

    return mc_kernels(init_fn, flat_apply, x1, x2, KEY, n_samples, apply_kwargs=apply_kwargs)


def check_mc(layer, x1, x2, *, bias=1e-9, apply_kwargs=None):
    k = full_kernel(layer, x1, x2)
    nngp_m, nngp_s, ntk_m, ntk_s = mc_rows(layer, x1, x2, apply_kwargs=apply_kwargs)
    if k.spatial_ndim:
        nngp, ntk = as_matrix(k.nngp), as_matrix(k.ntk)
    else:
        nngp, ntk = k.nngp, k.ntk
    assert nngp.shape == nngp_m.shape
    assert_within_mc(nngp, nngp_m, nngp_s, bias=bias, what="nngp")
    assert_within_mc(ntk, ntk_m, ntk_s, bias=bias, what="ntk")


# ------------------------------------------------------------------ Dense


@pytest.mark.parametrize("parameterization,s", [("ntk", (1, 1)), ("standard", (2, 1))])
def test_dense_matches_monte_carlo(parameterization, s):
    layer = stax.serial(
        stax.Dense(C, W_std=1.4, b_std=0.3, parameterization=parameterization, s=s),
        stax.Relu(),
        stax.Dense(OUT, W_std=1.1, b_std=0.2, parameterization=parameterization, s=s),
    )
    check_mc(layer, *VEC)


# ------------------------------------------------------------------- Conv

CONV_ARCHS = {
    "2d_valid_standard_parameterization": (
        stax.serial(
            stax.Conv(C, (3, 3), W_std=1.5, b_std=0.2, parameterization="standard"),
            stax.Relu(),
            stax.Conv(OUT, (2, 2), W_std=1.2, b_std=0.1, parameterization="standard"),
        ),
        IMG,
    ),
    "2d_same_strides": (
        stax.serial(
            stax.Conv(C, (3, 2), strides=(2, 1), padding="SAME", W_std=1.3, b_std=0.1),
            stax.Relu(),
            stax.Conv(OUT, (2, 2), padding="SAME", W_std=1.1),
        ),
        IMG,
    ),
    "2d_circular_strides": (
        stax.serial(
            stax.Conv(C, (3, 3), strides=(1, 2), padding="CIRCULAR", W_std=1.4),
            stax.Erf(),
            stax.Conv(OUT, (2, 3), padding="CIRCULAR", W_std=1.2, b_std=0.3),
        ),
        IMG,
    ),
    "1d_same_then_circular_strides": (
        stax.serial(
            stax.Conv(C, (3,), padding="SAME", W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.Conv(OUT, (4,), strides=(2,), padding="CIRCULAR", W_std=1.2),
        ),
        SEQ,
    ),
}


@pytest.mark.parametrize("name", list(CONV_ARCHS))
def test_conv_full_spatial_kernel_matches_monte_carlo(name):
    layer, data = CONV_ARCHS[name]
    check_mc(layer, *data)


def _brute_conv_nngp(x1, x2, filt, strides, padding, W_std, b_std):
    """W²/|F| Σ_{d∈F} <x1(o·s + d), x2(o'·s + d)>/C + b², window by window."""
    x1, x2 = np.asarray(x1), np.asarray(x2)
    spatial = x1.shape[1:-1]
    pads = jax.lax.padtype_to_pads(
        spatial, filt, strides, "VALID" if padding == "VALID" else "SAME"
    )
    width = [(0, 0)] + list(pads) + [(0, 0)]
    mode = "wrap" if padding == "CIRCULAR" else "constant"
    p1, p2 = np.pad(x1, width, mode=mode), np.pad(x2, width, mode=mode)
    outs = [(n + lo + hi - f) // s + 1 for n, (lo, hi), f, s in zip(spatial, pads, filt, strides)]
    c = x1.shape[-1]
    res = np.zeros((x1.shape[0], x2.shape[0]) + tuple(o for o in outs for _ in (0, 1)))
    for o in np.ndindex(*outs):
        for o2 in np.ndindex(*outs):
            acc = 0.0
            for d in np.ndindex(*filt):
                i1 = tuple(a * s + b for a, s, b in zip(o, strides, d))
                i2 = tuple(a * s + b for a, s, b in zip(o2, strides, d))
                acc = acc + p1[(slice(None),) + i1] @ p2[(slice(None),) + i2].T / c
            idx = tuple(v for pair in zip(o, o2) for v in pair)
            res[(slice(None), slice(None)) + idx] = W_std**2 * acc / math.prod(filt)
    return res + (b_std or 0.0) ** 2


@pytest.mark.parametrize("padding", ["VALID", "SAME", "CIRCULAR"])
@pytest.mark.parametrize(
    "filt,strides,data",
    [((3, 2), (1, 1), IMG), ((2, 3), (2, 2), IMG), ((4,), (2,), SEQ), ((2, 2, 1), (1, 2, 1), VOL)],
)
def test_conv_nngp_equals_brute_force_window_sum_in_both_layouts(padding, filt, strides, data):
    layer = stax.Conv(4, filt, strides=strides, padding=padding, W_std=1.3, b_std=0.4)
    x1, x2 = data
    want = _brute_conv_nngp(x1, x2, filt, strides, padding, 1.3, 0.4)
    full = full_kernel(layer, x1, x2).nngp
    np.testing.assert_allclose(full, want, rtol=1e-12, atol=1e-12)
    diag = diag_kernel(layer, x1, x2).nngp
    same_pos = want
    for _ in filt:  # same-position entries of each spatial pair
        same_pos = np.diagonal(same_pos, axis1=2, axis2=3)
    np.testing.assert_allclose(diag, same_pos, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- pooling


def _np_pool(x, window, strides, padding, mode):
    """Pool ``(N, *S, C)`` in NumPy: 'avg', 'avg_edges' (divide by in-image
    count), 'sum'."""
    x = np.asarray(x)
    spatial = x.shape[1:-1]
    pads = jax.lax.padtype_to_pads(
        spatial, window, strides, "VALID" if padding == "VALID" else "SAME"
    )
    width = [(0, 0)] + list(pads) + [(0, 0)]
    xp = np.pad(x, width, mode="wrap" if padding == "CIRCULAR" else "constant")
    inside = np.pad(np.ones(spatial), list(pads))
    outs = [(n + lo + hi - w) // s + 1 for n, (lo, hi), w, s in zip(spatial, pads, window, strides)]
    y = np.zeros((x.shape[0],) + tuple(outs) + (x.shape[-1],))
    for o in np.ndindex(*outs):
        sl = tuple(slice(a * s, a * s + w) for a, s, w in zip(o, strides, window))
        total = xp[(slice(None),) + sl].sum(axis=tuple(range(1, 1 + len(o))))
        if mode == "avg":
            total = total / math.prod(window)
        elif mode == "avg_edges":
            total = total / inside[sl].sum()
        y[(slice(None),) + o] = total
    return y


def _gram_full(y1, y2):
    """Full-layout input kernel of (N, *S, C) arrays, built in NumPy."""
    d = y1.ndim - 2
    g = np.tensordot(y1, y2, axes=([-1], [-1])) / y1.shape[-1]  # (N1,*S,N2,*S)
    perm = [0, 1 + d] + [a for i in range(d) for a in (1 + i, 2 + d + i)]
    return np.transpose(g, perm)


POOLS = {
    "avg_valid_strides": (
        lambda: stax.AvgPool((2, 2), strides=(2, 1)),
        (2, 2),
        (2, 1),
        "VALID",
        "avg",
    ),
    "avg_same": (lambda: stax.AvgPool((3, 2), padding="SAME"), (3, 2), (1, 1), "SAME", "avg"),
    "avg_same_normalize_edges": (
        lambda: stax.AvgPool((3, 3), strides=(2, 2), padding="SAME", normalize_edges=True),
        (3, 3),
        (2, 2),
        "SAME",
        "avg_edges",
    ),
    "avg_circular": (
        lambda: stax.AvgPool((2, 3), strides=(1, 2), padding="CIRCULAR"),
        (2, 3),
        (1, 2),
        "CIRCULAR",
        "avg",
    ),
    "sum_valid": (lambda: stax.SumPool((2, 3), strides=(1, 2)), (2, 3), (1, 2), "VALID", "sum"),
    "sum_same": (lambda: stax.SumPool((2, 2), padding="SAME"), (2, 2), (1, 1), "SAME", "sum"),
    "sum_circular_1d": (
        lambda: stax.SumPool((3,), strides=(2,), padding="CIRCULAR"),
        (3,),
        (2,),
        "CIRCULAR",
        "sum",
    ),
}


@pytest.mark.parametrize("name", list(POOLS))
def test_pool_kernel_equals_gram_of_inputs_pooled_in_numpy(name):
    make, window, strides, padding, mode = POOLS[name]
    x1, x2 = SEQ if len(window) == 1 else IMG
    k = full_kernel(make(), x1, x2)
    y1 = _np_pool(x1, window, strides, padding, mode)
    y2 = _np_pool(x2, window, strides, padding, mode)
    np.testing.assert_allclose(k.nngp, _gram_full(y1, y2), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(
        k.cov1, np.einsum("ii...->i...", _gram_full(y1, y1)), rtol=1e-12, atol=1e-13
    )
    assert k.shape1 == y1.shape


@pytest.mark.parametrize("name", list(POOLS))
def test_pool_apply_fn_equals_numpy_pooling(name):
    make, window, strides, padding, mode = POOLS[name]
    x1, _ = SEQ if len(window) == 1 else IMG
    layer = make()
    np.testing.assert_allclose(
        layer.apply_fn((), x1), _np_pool(x1, window, strides, padding, mode), rtol=1e-13
    )


@pytest.mark.parametrize("kind", ["avg", "sum"])
def test_global_pool_kernel_equals_gram_of_inputs_pooled_in_numpy(kind):
    layer = stax.GlobalAvgPool() if kind == "avg" else stax.GlobalSumPool()
    x1, x2 = IMG
    reduce = np.mean if kind == "avg" else np.sum
    y1, y2 = reduce(np.asarray(x1), axis=(1, 2)), reduce(np.asarray(x2), axis=(1, 2))
    k = full_kernel(layer, x1, x2)
    np.testing.assert_allclose(k.nngp, y1 @ y2.T / x1.shape[-1], rtol=1e-12)
    assert k.shape1 == y1.shape


POOL_ARCHS = {  # pools are linear, so several can follow one nonlinearity
    "avg_same_normalize_edges_then_sum_circular": (
        stax.AvgPool((3, 2), strides=(2, 1), padding="SAME", normalize_edges=True),
        stax.SumPool((2, 2), padding="CIRCULAR"),
    ),
    "avg_circular_then_global_avg": (
        stax.AvgPool((2, 3), strides=(1, 2), padding="CIRCULAR"),
        stax.GlobalAvgPool(),
    ),
}


@pytest.mark.parametrize("name", list(POOL_ARCHS))
def test_pooling_matches_monte_carlo(name):
    layer = stax.serial(
        stax.Conv(C, (2, 2), padding="SAME", W_std=1.4, b_std=0.2),
        stax.Relu(),
        *POOL_ARCHS[name],
        stax.Dense(OUT, W_std=1.1),
    )
    check_mc(layer, *IMG)


def test_pooling_layers_request_the_full_spatial_layout():
    pools = (
        stax.AvgPool((2, 2)),
        stax.SumPool((2,)),
        stax.GlobalAvgPool(),
        stax.GlobalSumPool(),
        stax.serial(stax.Conv(2, (2, 2)), stax.SumPool((2, 2))),
    )
    for layer in pools:
        assert layer.kernel_fn.needs_full_spatial
    for layer in (stax.Conv(2, (2, 2)), stax.LayerNorm(), stax.Dropout(0.5), stax.Flatten()):
        assert not layer.kernel_fn.needs_full_spatial


# ----------------------------------------------------------------- Flatten


def test_flatten_after_conv_matches_monte_carlo():
    layer = stax.serial(
        stax.Conv(C, (3, 2), padding="CIRCULAR", W_std=1.3, b_std=0.2),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(OUT, W_std=1.2, b_std=0.1),
    )
    check_mc(layer, *IMG)


def test_flatten_output_is_not_gaussian():
    k = stax.serial(stax.Conv(2, (2, 2)), stax.Flatten())[2](IMG[0])
    assert not k.is_gaussian
    with pytest.raises(ValueError, match="Gaussian"):
        stax.serial(stax.Conv(2, (2, 2)), stax.Flatten(), stax.Relu())[2](IMG[0])


# -------------------------------------------------------------- LayerNorm


def test_layernorm_on_vectors_divides_by_root_variances():
    x1, x2 = VEC
    k0 = stax.Dense(3, W_std=1.5, b_std=0.3)[2](x1, x2)
    eps = 0.1
    k = stax.serial(stax.Dense(3, W_std=1.5, b_std=0.3), stax.LayerNorm(eps=eps))[2](x1, x2)
    want = k0.nngp / np.sqrt(np.outer(k0.cov1 + eps, k0.cov2 + eps))
    np.testing.assert_allclose(k.nngp, want, rtol=1e-13)
    np.testing.assert_allclose(
        k.ntk, k0.ntk / np.sqrt(np.outer(k0.cov1 + eps, k0.cov2 + eps)), rtol=1e-13
    )


def test_layernorm_over_spatial_axes_uses_mean_variance_over_positions():
    x1, x2 = IMG
    conv = stax.Conv(3, (2, 2), padding="SAME", W_std=1.3, b_std=0.2)
    k0 = full_kernel(conv, x1, x2)
    k = full_kernel(stax.serial(conv, stax.LayerNorm(axis=(1, 2, 3))), x1, x2)
    v1 = np.einsum("iaabb->i", k0.cov1) / 20 + 1e-12  # mean variance over 4x5 positions
    v2 = np.einsum("iaabb->i", k0.cov2) / 20 + 1e-12
    want = k0.nngp / np.sqrt(np.outer(v1, v2))[:, :, None, None, None, None]
    np.testing.assert_allclose(k.nngp, want, rtol=1e-13)


LN_ARCHS = {
    "vectors_channels": (
        stax.serial(
            stax.Dense(C, W_std=1.5, b_std=0.3),
            stax.LayerNorm(),
            stax.Relu(),
            stax.Dense(OUT, W_std=1.2),
        ),
        VEC,
        C,
    ),
    "images_channels_and_space": (
        stax.serial(
            stax.Conv(C, (2, 2), padding="SAME", W_std=1.3, b_std=0.2),
            stax.LayerNorm(axis=(1, 2, 3)),
            stax.Relu(),
            stax.Dense(OUT),
        ),
        IMG,
        C * 20,
    ),
}


@pytest.mark.parametrize("name", list(LN_ARCHS))
def test_layernorm_matches_monte_carlo(name):
    layer, data, n_normalised = LN_ARCHS[name]
    check_mc(layer, *data, bias=2.0 / n_normalised)


# ---------------------------------------------------------------- Dropout


def test_dropout_boosts_same_input_same_position_second_moments():
    x1, _ = IMG
    rate = 0.6
    conv = stax.Conv(3, (2, 2), padding="SAME", W_std=1.3)
    k0 = full_kernel(conv, x1, None)
    k = full_kernel(stax.serial(conv, stax.Dropout(rate)), x1, None)
    n, h, w = x1.shape[:3]
    same = (
        np.eye(n)[:, :, None, None, None, None] * np.eye(h)[:, :, None, None] * np.eye(w)
    )  # (N, N, H, H, W, W): same input and same position
    np.testing.assert_allclose(k.nngp, k0.nngp * (1 + (1 / rate - 1) * same), rtol=1e-13)
    np.testing.assert_allclose(k.ntk, k0.ntk * (1 + (1 / rate - 1) * same), rtol=1e-13)


def test_dropout_leaves_cross_kernel_unchanged():
    x1, x2 = VEC
    base = stax.serial(stax.Dense(4, W_std=1.3, b_std=0.1), stax.Relu())
    k0 = base[2](x1, x2)
    k = stax.serial(base, stax.Dropout(0.5))[2](x1, x2)
    np.testing.assert_allclose(k.nngp, k0.nngp, rtol=1e-14)
    np.testing.assert_allclose(k.cov1, k0.cov1 / 0.5, rtol=1e-14)


def test_dropout_kernel_with_an_equal_copy_of_x1_is_its_kernel_with_x2_none():
    # NT's convention: x2 equal to x1 is the same inputs, one mask for both,
    # so the batch diagonal is boosted by 1/rate as with x2=None.
    x1, _ = VEC
    kernel_fn = stax.serial(stax.Dense(4, W_std=1.3), stax.Relu(), stax.Dropout(0.5))[2]
    want = kernel_fn(x1, None, "ntk")
    np.testing.assert_array_equal(kernel_fn(x1, np.array(x1, copy=True), "ntk"), want)
    off = kernel_fn(x1, x1 + 1e-3, "ntk")
    assert abs(float(np.trace(want) / np.trace(off)) - 2.0) < 0.05


def test_dropout_test_mode_is_the_identity():
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(4), stax.Relu(), stax.Dropout(0.3, mode="test")
    )
    ref = stax.serial(stax.Dense(4), stax.Relu())
    x1, _ = VEC
    np.testing.assert_array_equal(kernel_fn(x1, None, "ntk"), ref[2](x1, None, "ntk"))
    _, params = init_fn(KEY, x1.shape)
    np.testing.assert_array_equal(apply_fn(params, x1), ref[1](params[:2], x1))


DROPOUT_ARCHS = {
    "vectors": (
        stax.serial(
            stax.Dense(C, W_std=1.4, b_std=0.2),
            stax.Relu(),
            stax.Dropout(0.6),
            stax.Dense(OUT, W_std=1.1),
        ),
        VEC,
    ),
    "images": (
        stax.serial(
            stax.Conv(C, (2, 2), padding="SAME", W_std=1.4),
            stax.Relu(),
            stax.Dropout(0.7),
            stax.Conv(OUT, (2, 2), padding="SAME"),
        ),
        IMG,
    ),
}


@pytest.mark.parametrize("name", list(DROPOUT_ARCHS))
def test_dropout_matches_monte_carlo(name):
    # x2 = None: both arguments see the same mask, as the kernel assumes.
    layer, (x1, _) = DROPOUT_ARCHS[name]
    check_mc(layer, x1, None, apply_kwargs=lambda key: {"rng": key})


# ------------------------------------------------------ layouts and autodiff

LAYOUT_ARCHS = {
    "conv_relu_flatten": stax.serial(
        stax.Conv(8, (3, 3), padding="SAME", W_std=1.3, b_std=0.2),
        stax.Relu(),
        stax.Conv(8, (2, 2), strides=(2, 1), W_std=1.1),
        stax.Flatten(),
        stax.Dense(1),
    ),
    "conv_circular_erf_spatial_output": stax.serial(
        stax.Conv(8, (2, 3), strides=(1, 2), padding="CIRCULAR", W_std=1.2),
        stax.Erf(),
        stax.Conv(8, (3, 2), padding="SAME", W_std=0.9, b_std=0.3),
    ),
    "standard_parameterization": stax.serial(
        stax.Conv(8, (2, 2), padding="SAME", W_std=1.3, b_std=0.2, parameterization="standard"),
        stax.Gelu(),
        stax.Conv(8, (3, 3), padding="CIRCULAR", parameterization="standard"),
        stax.Flatten(),
        stax.Dense(1, parameterization="standard"),
    ),
    "layernorm_spatial_dropout": stax.serial(
        stax.Conv(8, (2, 2), padding="SAME", W_std=1.3, b_std=0.2),
        stax.LayerNorm(axis=(1, 2, 3)),
        stax.Relu(),
        stax.Dropout(0.7),
        stax.Conv(8, (2, 2), W_std=1.2),
        stax.LayerNorm(),
        stax.Flatten(),
        stax.Dense(1),
    ),
}


def _same_position(m, n_batch):
    """Same-position entries ``(…, S1, S1', S2, S2') -> (…, S1, S2)``: each
    pass diagonalises the first pair and moves it last, restoring the order."""
    for _ in range((m.ndim - n_batch) // 2):
        m = np.diagonal(m, axis1=n_batch, axis2=n_batch + 1)
    return m


@pytest.mark.parametrize(
    "name,x2_is_none", [(n, False) for n in LAYOUT_ARCHS] + [("layernorm_spatial_dropout", True)]
)
def test_diagonal_and_full_layouts_agree(name, x2_is_none):
    layer = LAYOUT_ARCHS[name]
    x1, x2 = IMG
    x2 = None if x2_is_none else x2
    kd, kf = diag_kernel(layer, x1, x2), full_kernel(layer, x1, x2)
    assert kd.shape1 == kf.shape1
    for g, nb in (("nngp", 2), ("ntk", 2), ("cov1", 1), ("cov2", 1)):
        d, f = getattr(kd, g), getattr(kf, g)
        if f is None:
            assert d is None
            continue
        f = np.asarray(f)
        if kf.spatial_ndim:
            f = _same_position(f, nb)
        np.testing.assert_allclose(d, f, rtol=1e-12, atol=1e-14, err_msg=g)


def test_kernel_fn_is_differentiable_in_W_std_and_inputs():
    x1, _ = IMG

    def ntk_sum(w, x):
        net = stax.serial(
            stax.Conv(4, (3, 3), padding="SAME", W_std=w, b_std=0.1),
            stax.Relu(),
            stax.AvgPool((2, 2), padding="SAME", normalize_edges=True),
            stax.Conv(4, (2, 2), strides=(2, 1), padding="CIRCULAR", W_std=w),
            stax.LayerNorm(axis=(1, 2, 3)),
            stax.Dropout(0.8),
            stax.GlobalAvgPool(),
        )
        return jnp.sum(net.kernel_fn(x, None, "ntk") ** 2)

    w = jnp.asarray(1.3)
    # One compiled program: the finite differences read the primal values of
    # the reverse-mode program (the same forward computation) rather than
    # compiling a freshly built network for each of the four evaluations.
    value_and_grad = jax.jit(jax.value_and_grad(ntk_sum, argnums=(0, 1)))
    f = lambda w, x: value_and_grad(w, x)[0]
    g_w, g_x = value_and_grad(w, x1)[1]
    eps = 1e-6
    fd_w = (f(w + eps, x1) - f(w - eps, x1)) / (2 * eps)
    v = jnp.asarray(np.random.default_rng(5).normal(size=x1.shape))
    fd_x = (f(w, x1 + eps * v) - f(w, x1 - eps * v)) / (2 * eps)
    np.testing.assert_allclose(g_w, fd_w, rtol=1e-6)
    np.testing.assert_allclose(jnp.vdot(g_x, v), fd_x, rtol=1e-6)


def test_apply_fn_output_shapes_match_init_fn():
    x1, _ = IMG
    for layer in (
        stax.Conv(3, (3, 2), strides=(2, 2), padding="SAME"),
        stax.Conv(3, (2, 2), strides=(1, 2), padding="CIRCULAR"),
        stax.AvgPool((2, 3), strides=(2, 1)),
        stax.SumPool((3, 3), strides=(2, 2), padding="CIRCULAR"),
    ):
        shape, params = layer.init_fn(KEY, x1.shape)
        assert layer.apply_fn(params, x1).shape == tuple(shape)
        assert layer.kernel_fn(x1).shape1 == tuple(shape)


# ------------------------------------------------------------------ errors

BAD_CONSTRUCTORS = {
    "negative W_std": (lambda: stax.Conv(4, (3, 3), W_std=-1.0), "W_std"),
    "negative b_std": (lambda: stax.Conv(4, (3, 3), b_std=-0.1), "b_std"),
    "zero filter size": (lambda: stax.Conv(4, (0, 3)), "filter_shape"),
    "zero stride": (lambda: stax.Conv(4, (3, 3), strides=(0, 1)), "strides"),
    "stride per axis": (lambda: stax.Conv(4, (3, 3), strides=(1,)), "strides"),
    "unknown padding": (lambda: stax.Conv(4, (3, 3), padding="FULL"), "padding"),
    "channels-first layout": (
        lambda: stax.Conv(4, (3, 3), dimension_numbers=("NCHW", "OIHW", "NCHW")),
        "dimension_numbers",
    ),
    "negative pool window": (lambda: stax.AvgPool((2, -1)), "window_shape"),
    "zero pool stride": (lambda: stax.SumPool((2, 2), strides=(1, 0)), "strides"),
    "unknown pool padding": (lambda: stax.AvgPool((2, 2), padding="REFLECT"), "padding"),
    "dropout rate 0": (lambda: stax.Dropout(0.0), "rate"),
    "dropout rate > 1": (lambda: stax.Dropout(1.5), "rate"),
    "dropout mode": (lambda: stax.Dropout(0.5, mode="eval"), "mode"),
    "layernorm eps": (lambda: stax.LayerNorm(eps=-1.0), "eps"),
}


@pytest.mark.parametrize("case", list(BAD_CONSTRUCTORS))
def test_bad_hyperparameters_raise_value_error(case):
    make, match = BAD_CONSTRUCTORS[case]
    with pytest.raises(ValueError, match=match):
        make()


BAD_CALLS = {
    "conv on vectors": (stax.Conv(4, (3, 3)), VEC[0], r"Conv\(4, \(3, 3\)\).*rank 4.*rank 2"),
    "2-D filter on sequences": (stax.Conv(4, (3, 3)), SEQ[0], r"rank 4.*rank 3"),
    "1-D filter on images": (stax.Conv(4, (3,)), IMG[0], r"rank 3.*rank 4"),
    "VALID 5x5 filter on 4x5 image": (stax.Conv(4, (5, 5)), IMG[0], "no output positions"),
    "VALID pool larger than image": (
        stax.serial(stax.Conv(2, (1, 1)), stax.AvgPool((5, 2))),
        IMG[0],
        "no output positions",
    ),
    "pool window rank": (stax.AvgPool((2,)), IMG[0], r"rank 3.*rank 4"),
    "layernorm without channels": (
        stax.serial(stax.Conv(2, (2, 2)), stax.LayerNorm(axis=(1, 2))),
        IMG[0],
        "channel axis",
    ),
    "layernorm on non-Gaussian": (
        stax.serial(stax.Dense(2), stax.Relu(), stax.LayerNorm()),
        VEC[0],
        "Gaussian",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_inputs_raise_value_error_naming_layer(case):
    layer, x, match = BAD_CALLS[case]
    with pytest.raises(ValueError, match=match):
        layer.kernel_fn(x)


def test_conv_on_vectors_errors_in_init_and_apply():
    init_fn, apply_fn, _ = stax.Conv(4, (3, 3))
    with pytest.raises(ValueError, match="rank 4"):
        init_fn(KEY, VEC[0].shape)
    _, params = init_fn(KEY, IMG[0].shape)
    with pytest.raises(ValueError, match="rank 4"):
        apply_fn(params, VEC[0])
    with pytest.raises(ValueError, match="channels"):
        apply_fn(params, jnp.zeros((1, 4, 5, 3)))


def test_pooling_a_diagonal_layout_kernel_raises():
    k = inputs_to_kernel(IMG[0], None, diagonal_spatial=True, compute_ntk=True)
    with pytest.raises(ValueError, match="diagonal_spatial"):
        stax.AvgPool((2, 2)).kernel_fn(k)
    with pytest.raises(ValueError, match="diagonal_spatial"):
        stax.GlobalAvgPool().kernel_fn(k)


def test_dropout_apply_without_rng_raises():
    layer = stax.Dropout(0.5)
    with pytest.raises(ValueError, match="rng"):
        layer.apply_fn((), VEC[0])


# ------------------------------------------------------------ known NTKs

_AFFINE = {
    "Dense": (lambda **kw: stax.Dense(6, W_std=1.3, b_std=0.2, **kw), (3, 5)),
    "Conv": (lambda **kw: stax.Conv(6, (2, 2), W_std=1.3, b_std=0.2, **kw), (3, 4, 3, 2)),
    "ConvTranspose": (
        lambda **kw: stax.ConvTranspose(6, (2,), (2,), W_std=1.3, b_std=0.2, **kw),
        (3, 4, 2),
    ),
    "ConvLocal": (lambda **kw: stax.ConvLocal(6, (2,), W_std=1.3, b_std=0.2, **kw), (3, 4, 2)),
}


@pytest.mark.parametrize("diagonal_spatial", [False, True])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("name", list(_AFFINE))
def test_affine_layers_on_the_zero_input_ntk_give_the_general_rules_kernel(
    name, parameterization, diagonal_spatial
):
    """Told that the input NTK is 0, an affine layer drops the W_std² Θ term
    and under "ntk" returns Θ' = K' as the NNGP array itself; the reference
    is the general rule applied to the explicit zero NTK (flag off)."""
    make, shape = _AFFINE[name]
    layer = make(parameterization=parameterization)
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=shape), rng.normal(size=(2,) + shape[1:])
    k0 = inputs_to_kernel(x1, x2, diagonal_spatial=diagonal_spatial, compute_ntk=True)
    flags = []

    @jax.jit  # the flags live within one trace
    def both(k0_arrays):
        k = k0.replace(**k0_arrays, ntk_is_zero=True)
        fast, slow = layer.kernel_fn(k), layer.kernel_fn(k.replace(ntk_is_zero=False))
        flags.extend([fast.ntk_is_nngp, fast.ntk_is_zero, slow.ntk_is_nngp])
        return fast, slow

    fast, slow = both({"nngp": k0.nngp, "ntk": k0.ntk, "cov1": k0.cov1, "cov2": k0.cov2})
    assert flags == [parameterization == "ntk", False, False]
    # Adding the zero term is exact in floating point: the results agree to
    # the last bit up to XLA's order of summation.
    for field in ("nngp", "ntk", "cov1", "cov2"):
        np.testing.assert_allclose(getattr(fast, field), getattr(slow, field), rtol=1e-14)
