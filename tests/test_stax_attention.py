"""`stax.GlobalSelfAttention`: finite network, infinite-width kernels, masks.

Oracles (besides the neural-tangents golden family ``attention`` in
``tests/golden/architectures_attention.py``, checked by test_stax_golden.py):

* Monte Carlo of wide finite networks (`tests/mc.py`) for every attention
  mechanism with linear scaling, for the square-root-scaled identity, and for
  positional embeddings on images behind a Dense layer;
* a direct NumPy implementation of the forward pass (loops over examples and
  heads, the embeddings' covariance from explicit distances), for ``apply_fn``;
* truncation: padded and masked sequences give the kernel and outputs of the
  truncated ones (masked keys take no part in the attention);
* a brute-force Jacobian, for the empirical NTK of attention networks with the
  three implementations;
* Hypothesis properties: symmetry, positive semi-definiteness, block
  consistency, finiteness of values and input gradients at identical and zero
  inputs.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mc import assert_within_mc, mc_kernels

from ntk import stax
from ntk.empirical import NtkImplementation, empirical_ntk_fn
from ntk.kernel import inputs_to_kernel
from ntk.stax import spec as specs

SETTINGS = settings(
    deadline=None,
    max_examples=10,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _decay(d):
    return jnp.exp(-d / 2.0)


def _unit_rows(x):
    """Each position scaled to squared norm C, so |K(x_s, x_t)| <= 1."""
    return x * jnp.sqrt(x.shape[-1] / jnp.sum(x**2, axis=-1, keepdims=True))


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ------------------------------------------------------------ Monte Carlo

# Raw inputs straight into the attention layer: the input kernel is then
# exact, and at finite width only the key weights' fluctuations (logits
# QK·K ± O(QK·sqrt(2/n_chan_key))) bias the estimate. With unit positions
# (|K| <= 1), QK = 2 and n_chan_key = 1024 the logits' variance is at most
# 2·QK²/1024 ≈ 0.008, and the attention weights (softmax curvature <= 1/4,
# the other mechanisms piecewise linear) move the kernel by well under 1% of
# its largest entry: bias = 0.01. (600 draws agree to within 1 standard
# error of 0.3–0.7%.) Values and outputs are wide (64·4 value channels, 256
# outputs), so 40 draws give standard errors ≈ 1% (NTK) and 2% (NNGP).
X1 = _unit_rows(jax.random.normal(jax.random.PRNGKey(0), (3, 4, 3)))
X2 = _unit_rows(jax.random.normal(jax.random.PRNGKey(1), (2, 4, 3)))


@pytest.mark.parametrize("mechanism", ["SOFTMAX", "IDENTITY", "ABS", "RELU"])
def test_linear_scaling_kernels_match_monte_carlo_of_a_wide_network(mechanism):
    net = stax.serial(
        stax.GlobalSelfAttention(
            256,
            1024,
            64,
            4,
            W_key_std=2.0,
            W_value_std=1.2,
            b_std=0.3,
            attention_mechanism=mechanism,
        ),
        stax.GlobalAvgPool(),
    )
    k = net.kernel_fn(X1, X2, get=("nngp", "ntk"))
    nngp, nngp_sem, ntk, ntk_sem = mc_kernels(
        net.init_fn, net.apply_fn, X1, X2, jax.random.PRNGKey(2), 40
    )
    # The test can fail: e.g. a softmax over queries instead of keys moves the
    # NTK by 19 standard errors, QK_std ignored by 6, the NTK's 2K term by 20.
    assert np.max(ntk_sem) < 0.02 * np.max(np.abs(k.ntk))
    assert_within_mc(k.nngp, nngp, nngp_sem, bias=0.01, what=f"{mechanism} nngp")
    assert_within_mc(k.ntk, ntk, ntk_sem, bias=0.01, what=f"{mechanism} ntk")


def test_square_root_identity_kernels_match_monte_carlo_of_a_many_head_network():
    """With 1/sqrt(d) logits and raw inputs every second moment of the finite
    network is a product of independent Gaussian weights' second moments, so
    the Monte Carlo mean is unbiased at any width (bias = 0); the logits stay
    Gaussian per head and only the 256 heads average them."""
    net = stax.serial(
        stax.GlobalSelfAttention(
            256,
            16,
            4,
            256,
            linear_scaling=False,
            W_key_std=1.2,
            W_query_std=0.9,
            W_value_std=1.1,
            b_std=0.3,
            attention_mechanism="IDENTITY",
        ),
        stax.GlobalAvgPool(),
    )
    k = net.kernel_fn(X1, X2, get=("nngp", "ntk"))
    nngp, nngp_sem, ntk, ntk_sem = mc_kernels(
        net.init_fn, net.apply_fn, X1, X2, jax.random.PRNGKey(3), 40
    )
    assert np.max(ntk_sem) < 0.03 * np.max(np.abs(k.ntk))
    assert_within_mc(k.nngp, nngp, nngp_sem, what="sqrt identity nngp")
    assert_within_mc(k.ntk, ntk, ntk_sem, what="sqrt identity ntk")


def test_positional_embeddings_on_images_match_monte_carlo_behind_a_dense_layer():
    """Correlated CONCAT embeddings (Cholesky factor of exp(-d/2)) in keys and
    values, on 2×2 images, behind a Dense layer (so the input NTK enters).
    The Dense width (128) and the embeddings' channels (64) now fluctuate the
    logits too: variance ≈ QK²·κ²·(2/128 + 2/256) ≈ 0.13 (κ ≈ 1.2), a softmax
    bias of ≈ 0.25·0.13 ≈ 3% (400 draws: 1.5% NNGP, 1% NTK)."""
    x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 2, 3))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 2, 3))
    net = stax.serial(
        stax.Dense(128, W_std=1.0, b_std=0.2),
        stax.GlobalSelfAttention(
            256,
            256,
            64,
            4,
            W_key_std=2.0,
            W_value_std=1.2,
            b_std=0.3,
            pos_emb_type="CONCAT",
            pos_emb_decay_fn=_decay,
            val_pos_emb=True,
            W_pos_emb_std=0.8,
            n_chan_pos_emb=64,
        ),
        stax.GlobalAvgPool(),
    )
    k = net.kernel_fn(x1, x2, get=("nngp", "ntk"))
    nngp, nngp_sem, ntk, ntk_sem = mc_kernels(
        net.init_fn, net.apply_fn, x1, x2, jax.random.PRNGKey(7), 40
    )
    assert_within_mc(k.nngp, nngp, nngp_sem, bias=0.03, what="embeddings nngp")
    assert_within_mc(k.ntk, ntk, ntk_sem, bias=0.03, what="embeddings ntk")


# ------------------------------------------------------- the finite network


def _direct_apply(
    params,
    x,
    *,
    n_heads,
    n_key,
    n_val,
    linear_scaling,
    mechanism,
    pos_emb,
    decay,
    p_norm,
    val_pe,
    W_pe,
    QK,
    OV,
    b_std,
    mask=None,
):
    """The layer's forward pass written out per example and head in NumPy."""
    W_Q, W_K, W_V, W_out, b, pe = (None if a is None else np.asarray(a) for a in params)
    x = np.asarray(x)
    n, spatial, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    T = math.prod(spatial)
    X = x.reshape(n, T, c)
    hidden = (
        np.zeros((n, T), bool)
        if mask is None
        else np.all(np.broadcast_to(mask, x.shape), -1).reshape(n, T)
    )
    positions = list(np.ndindex(*spatial))
    if pos_emb != "NONE":
        R = np.eye(T)
        if decay is not None:
            R = np.array(
                [
                    [
                        float(decay(sum(abs(a - b) ** p_norm for a, b in zip(s, t))))
                        for t in positions
                    ]
                    for s in positions
                ]
            )
        E = np.linalg.cholesky(R) @ pe.reshape(T, -1) * W_pe
    out = np.zeros((n, T, W_out.shape[-1]))
    phi = {
        "SOFTMAX": lambda g: (
            np.exp(g - g.max(-1, keepdims=True))
            / np.exp(g - g.max(-1, keepdims=True)).sum(-1, keepdims=True)
        ),
        "IDENTITY": lambda g: g,
        "ABS": np.abs,
        "RELU": lambda g: np.maximum(g, 0),
    }[mechanism]
    for i in range(n):
        keys_in = vals_in = X[i]
        if pos_emb != "NONE":
            e = np.where(hidden[i][:, None], 0.0, E)
            keys_in = X[i] + e if pos_emb == "SUM" else np.hstack([X[i], e])
            vals_in = keys_in if val_pe else X[i]
        heads = []
        for h in range(n_heads):
            keys = keys_in @ W_K[h]
            queries = keys if linear_scaling else keys_in @ W_Q[h]
            scale = keys_in.shape[1] * (n_key if linear_scaling else np.sqrt(n_key))
            g = queries @ keys.T * QK / scale
            g = np.where(hidden[i][None, :], -1e20 if mechanism == "SOFTMAX" else 0.0, g)
            heads.append(phi(g) @ (vals_in @ W_V[h]))
        # Concatenated value-major: column v·H + h.
        cat = np.stack(heads, -1).reshape(T, n_val * n_heads)
        out[i] = cat @ W_out * OV / np.sqrt(n_val * n_heads * vals_in.shape[1])
    out = out.reshape((n,) + spatial + (-1,))
    return out if b is None else out + b_std * b


APPLY_CASES = {
    "softmax_sum_decay_valpe_seq": dict(
        linear_scaling=True,
        mechanism="SOFTMAX",
        pos_emb="SUM",
        decay=_decay,
        p_norm=1,
        val_pe=True,
        shape=(2, 5, 3),
    ),
    "relu_concat_img": dict(
        linear_scaling=True,
        mechanism="RELU",
        pos_emb="CONCAT",
        decay=None,
        p_norm=2,
        val_pe=False,
        shape=(2, 3, 2, 2),
    ),
    "sqrt_identity_concat_decay_img": dict(
        linear_scaling=False,
        mechanism="IDENTITY",
        pos_emb="CONCAT",
        decay=_decay,
        p_norm=2,
        val_pe=True,
        shape=(2, 2, 3, 2),
    ),
    "abs_none_seq": dict(
        linear_scaling=True,
        mechanism="ABS",
        pos_emb="NONE",
        decay=None,
        p_norm=2,
        val_pe=False,
        shape=(3, 4, 2),
    ),
}


@pytest.mark.parametrize("case", sorted(APPLY_CASES))
@pytest.mark.parametrize("masked", [False, True])
def test_apply_fn_matches_a_direct_implementation(case, masked):
    c = dict(APPLY_CASES[case])
    shape = c.pop("shape")
    layer = stax.GlobalSelfAttention(
        5,
        3,
        2,
        2,
        linear_scaling=c["linear_scaling"],
        W_key_std=1.3,
        W_query_std=0.8,
        W_value_std=1.1,
        W_out_std=0.9,
        b_std=0.2,
        attention_mechanism=c["mechanism"],
        pos_emb_type=c["pos_emb"],
        pos_emb_p_norm=c["p_norm"],
        pos_emb_decay_fn=c["decay"],
        W_pos_emb_std=0.7,
        val_pos_emb=c["val_pe"],
    )
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(4), shape))
    _, params = layer.init_fn(jax.random.PRNGKey(5), shape)
    mask = None
    kwargs = {}
    if masked:
        mask = np.zeros(shape[:-1] + (1,), bool)
        mask[0, -1] = True
        mask[1, 0] = True
        x = np.where(mask, 0.0, x)
        kwargs = {"mask": mask}
    got = jax.jit(layer.apply_fn)(params, x, **kwargs)
    want = _direct_apply(
        params,
        x,
        n_heads=2,
        n_key=3,
        n_val=2,
        W_pe=0.7,
        QK=1.3 * 0.8,
        OV=1.1 * 0.9,
        b_std=0.2,
        mask=mask,
        **c,
    )
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_parameters_have_neural_tangents_layout():
    layer = stax.GlobalSelfAttention(
        7,
        5,
        3,
        2,
        linear_scaling=False,
        b_std=0.1,
        pos_emb_type="CONCAT",
        n_chan_pos_emb=4,
        val_pos_emb=True,
    )
    out_shape, (W_Q, W_K, W_V, W_out, b, pe) = layer.init_fn(jax.random.PRNGKey(0), (2, 3, 4, 6))
    assert out_shape == (2, 3, 4, 7)
    assert W_Q.shape == W_K.shape == (2, 10, 5)
    assert W_V.shape == (2, 10, 3) and W_out.shape == (6, 7)
    assert b.shape == (1, 1, 1, 7) and pe.shape == (1, 3, 4, 4)
    tied = stax.GlobalSelfAttention(7, 5, 3, 2)
    _, (W_Q, _, _, _, b, pe) = tied.init_fn(jax.random.PRNGKey(0), (2, 3, 6))
    assert W_Q is None and b is None and pe is None
    record = tied.kernel_fn.spec
    assert isinstance(record, specs.GlobalSelfAttention)
    assert (record.n_heads, record.attention_mechanism, record.pos_emb_type) == (
        2,
        "SOFTMAX",
        "NONE",
    )


# ------------------------------------------------------------ masking


def _masked_net():
    return stax.serial(
        stax.Conv(4, (1,), W_std=1.3, b_std=0.2),
        stax.GlobalSelfAttention(
            4, 3, 2, 2, b_std=0.2, pos_emb_type="SUM", pos_emb_decay_fn=_decay, val_pos_emb=True
        ),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(3, W_std=1.1, b_std=0.1),
    )


def test_masked_keys_give_the_kernel_of_the_truncated_sequences():
    """Trailing masked positions take no part as keys, carry no embedding, and
    are left out of the average: the kernel is that of the sequences without
    them (the embeddings' covariance restricted to the first positions is the
    covariance of the shorter sequence)."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(3, 6, 2)), rng.normal(size=(2, 6, 2))
    pad = lambda x: np.concatenate([x[:, :4], np.full_like(x[:, 4:], 5.0)], axis=1)
    net = _masked_net()
    got = net.kernel_fn(pad(x1), pad(x2), get=("nngp", "ntk"), mask_constant=5.0)
    want = net.kernel_fn(x1[:, :4], x2[:, :4], get=("nngp", "ntk"))
    assert _rel(got.nngp, want.nngp) <= 1e-12 and _rel(got.ntk, want.ntk) <= 1e-12


def test_masked_keys_give_the_outputs_of_the_truncated_sequences():
    """Per example, with different lengths: the outputs at the kept positions
    equal those of the layer applied to the truncated example, whose
    embeddings are the leading rows of the Cholesky-correlated ones."""
    layer = stax.GlobalSelfAttention(
        4, 3, 2, 2, b_std=0.2, pos_emb_type="CONCAT", pos_emb_decay_fn=_decay, val_pos_emb=True
    )
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3)))
    _, params = layer.init_fn(jax.random.PRNGKey(1), x.shape)
    lengths = (3, 5)
    padded = x.copy()
    padded[0, 3:] = 7.0
    apply_fn = jax.jit(layer.apply_fn, static_argnames="mask_constant")
    out = apply_fn(params, padded, mask_constant=7.0)
    for i, n in enumerate(lengths):
        *weights, pe = params
        short = apply_fn(tuple(weights) + (pe[:, :n],), x[i : i + 1, :n])
        np.testing.assert_allclose(out.masked_value[i, :n], short[0], rtol=1e-12, atol=1e-12)
    assert np.all(out.mask[0, 3:]) and not np.any(out.mask[1])


# ------------------------------------------------------------ errors


@pytest.mark.parametrize("mechanism", ["SOFTMAX", "ABS", "RELU"])
def test_square_root_scaling_has_no_kernel_except_for_identity(mechanism):
    layer = stax.GlobalSelfAttention(
        4, 3, 2, 2, linear_scaling=False, attention_mechanism=mechanism
    )
    x = np.ones((2, 3, 2))
    _, params = layer.init_fn(jax.random.PRNGKey(0), x.shape)
    assert layer.apply_fn(params, x).shape == (2, 3, 4)  # the finite net works
    with pytest.raises(NotImplementedError, match=f"linear_scaling=False.*{mechanism}"):
        layer.kernel_fn(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attention_mechanism="TANH"), "attention_mechanism"),
        (dict(pos_emb_type="ADD"), "pos_emb_type"),
        (dict(W_key_std=-1.0), "W_key_std"),
        (dict(b_std=-0.1), "b_std"),
        (dict(pos_emb_p_norm=0), "pos_emb_p_norm"),
        (dict(n_chan_pos_emb=0), "n_chan_pos_emb"),
        (dict(channel_axis=1), "channel_axis"),
    ],
)
def test_bad_arguments_are_value_errors_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stax.GlobalSelfAttention(4, 3, 2, 2, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(linear_scaling="yes"), "linear_scaling"),
        (dict(val_pos_emb=1), "val_pos_emb"),
        (dict(pos_emb_decay_fn=3.0), "pos_emb_decay_fn"),
    ],
)
def test_arguments_of_the_wrong_type_are_type_errors_naming_them(kwargs, match):
    with pytest.raises(TypeError, match=match):
        stax.GlobalSelfAttention(4, 3, 2, 2, **kwargs)


@pytest.mark.parametrize("args", [(0, 3, 2, 2), (4, 3, 2, 1.5), (4, -3, 2, 2)])
def test_bad_sizes_are_value_errors(args):
    with pytest.raises(ValueError, match="positive int"):
        stax.GlobalSelfAttention(*args)


def test_sum_embeddings_with_other_channels_are_a_value_error():
    layer = stax.GlobalSelfAttention(4, 3, 2, 2, pos_emb_type="SUM", n_chan_pos_emb=3)
    with pytest.raises(ValueError, match="n_chan_pos_emb"):
        layer.init_fn(jax.random.PRNGKey(0), (2, 5, 2))
    with pytest.raises(ValueError, match="n_chan_pos_emb"):
        layer.kernel_fn(np.ones((2, 5, 2)))


def test_a_diagonal_spatial_kernel_is_a_value_error():
    k = inputs_to_kernel(jnp.ones((2, 3, 2)), None, diagonal_spatial=True, compute_ntk=True)
    with pytest.raises(ValueError, match="diagonal_spatial"):
        stax.GlobalSelfAttention(4, 3, 2, 2).kernel_fn(k)


def test_enums_and_enum_names_are_accepted():
    a = stax.GlobalSelfAttention(
        4,
        3,
        2,
        2,
        attention_mechanism=stax.AttentionMechanism.RELU,
        pos_emb_type=stax.PositionalEmbedding.SUM,
    )
    b = stax.GlobalSelfAttention(4, 3, 2, 2, attention_mechanism="relu", pos_emb_type="SUM")
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 3, 2)))
    np.testing.assert_array_equal(a.kernel_fn(x, get="ntk"), b.kernel_fn(x, get="ntk"))


@pytest.mark.parametrize("linear_scaling", [True, False])
def test_nngp_alone_is_the_nngp_computed_with_the_ntk(linear_scaling):
    # Without the NTK the NNGP takes a separate code path (no stacked sandwich).
    net = stax.serial(
        stax.Conv(4, (1,)),
        stax.GlobalSelfAttention(
            4,
            3,
            2,
            2,
            linear_scaling=linear_scaling,
            attention_mechanism="IDENTITY",
            pos_emb_type="SUM",
        ),
        stax.GlobalAvgPool(),
    )
    x1 = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3, 4, 2)))
    x2 = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (2, 4, 2)))
    both = net.kernel_fn(x1, x2, get=("nngp", "ntk"))
    assert _rel(net.kernel_fn(x1, x2, get="nngp"), both.nngp) <= 1e-14


# ------------------------------------------- Θ = K after a first affine layer
# Behind an NTK-parameterized Dense/Conv on the inputs, Θ = K and attention
# evaluates one sandwich A K Aᵀ for both (`Kernel.ntk_is_nngp`). The reference
# switches that off by clearing the input kernel's `ntk_is_zero`: the layers
# then take their general rules over the explicit zero NTK.


def _attn(c, **kw):
    return stax.GlobalSelfAttention(c, 4, 3, 2, **kw)


_KNOWN_NTK_NETS = {
    "conv_softmax": stax.serial(
        stax.Conv(5, (1,)), _attn(5), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)
    ),
    "dense_embeddings": stax.serial(
        stax.Dense(5, W_std=1.2, b_std=0.1),
        _attn(
            5,
            b_std=0.3,
            pos_emb_type="CONCAT",
            n_chan_pos_emb=3,
            pos_emb_decay_fn=_decay,
            W_pos_emb_std=0.7,
            val_pos_emb=True,
        ),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(1),
    ),
    "conv_local_sum_embeddings": stax.serial(
        stax.ConvLocal(5, (2,), padding="SAME"),
        _attn(5, pos_emb_type="SUM", attention_mechanism="ABS"),
        stax.GlobalAvgPool(),
    ),
    "square_root_identity": stax.serial(
        stax.Conv(5, (1,), b_std=0.2),
        _attn(5, linear_scaling=False, attention_mechanism="IDENTITY"),
        stax.GlobalAvgPool(),
    ),
    "standard_parameterization": stax.serial(
        stax.Conv(5, (1,), parameterization="standard"), _attn(5), stax.GlobalAvgPool()
    ),
    "branches_then_attention_again": stax.serial(
        stax.Conv(5, (1,)),
        stax.FanOut(2),
        stax.parallel(_attn(5), stax.Conv(5, (1,))),
        stax.FanInSum(),
        _attn(5),
        stax.Erf(),
        stax.GlobalAvgPool(),
    ),
}


def _with_and_without_known_ntks(net, x1, x2, **kwargs):
    # One jit for both: the flags live within a trace (not across its
    # boundary), and one compilation is faster than op-by-op dispatch.
    @jax.jit
    def both(x1, x2):
        k = inputs_to_kernel(x1, x2, diagonal_spatial=False, compute_ntk=True, **kwargs)
        return net.kernel_fn(k), net.kernel_fn(k.replace(ntk_is_zero=False))

    return both(x1, x2)


@pytest.mark.parametrize(
    "with_x2, masked", [(False, False), (True, True)], ids=["x2=None", "x2-masked"]
)
@pytest.mark.parametrize("name", list(_KNOWN_NTK_NETS))
def test_one_sandwich_for_theta_equal_k_gives_the_kernels_of_two(name, with_x2, masked):
    rng = np.random.default_rng(11)
    x1 = rng.normal(size=(3, 4, 2))
    x2 = rng.normal(size=(2, 4, 2)) if with_x2 else None
    kw = {}
    if masked:  # the last position of one sequence per batch is padding
        x1[1, 3] = -1e4
        if x2 is not None:
            x2[0, 3] = -1e4
        kw["mask_constant"] = -1e4
    fast, slow = _with_and_without_known_ntks(_KNOWN_NTK_NETS[name], x1, x2, **kw)
    # Same operations on bitwise equal inputs, except A Θ Aᵀ + 2 A K Aᵀ
    # summed from one product instead of two: float64 rounding only.
    for field in ("nngp", "ntk", "cov1", "cov2"):
        a, b = getattr(fast, field), getattr(slow, field)
        assert (a is None) == (b is None)
        if a is not None:
            assert _rel(a, b) <= 1e-13, field


def test_attention_behind_a_first_affine_layer_evaluates_one_sandwich_fewer():
    """The NTK's A Θ Aᵀ (two batched matrix products) is not traced at all."""
    net = _KNOWN_NTK_NETS["conv_softmax"]
    x = np.random.default_rng(0).normal(size=(3, 4, 2))

    def products(known):
        def ntk(x):
            k = inputs_to_kernel(x, None, diagonal_spatial=False, compute_ntk=True)
            return net.kernel_fn(k if known else k.replace(ntk_is_zero=False)).ntk

        return str(jax.make_jaxpr(ntk)(x)).count("dot_general")

    assert products(False) - products(True) == 2


def test_mup_refuses_attention_by_name():
    from ntk import mup

    net = stax.serial(
        stax.Dense(8),
        stax.GlobalSelfAttention(8, 8, 8, 2),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )
    with pytest.raises(ValueError, match="GlobalSelfAttention"):
        mup.parametrize(net, "mup", base_width=4, input_shape=(1, 3, 2))


# ------------------------------------------------------------ empirical NTK


def _brute_force_ntk(apply_fn, params, x1, x2, kw):
    """``Σ_θ ∂f(x1)/∂θ ⊗ ∂f(x2)/∂θ`` from full Jacobians, ``(N1, K, N2, K)``."""
    jac = jax.jit(jax.jacrev(lambda p, x: apply_fn(p, x, **kw)))
    j1, j2 = jac(params, x1), jac(params, x2)
    return sum(
        np.tensordot(np.asarray(a), np.asarray(b), axes=(list(range(2, a.ndim)),) * 2)
        for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2))
    )


def _empirical_net():
    """Every parameter kind: separate queries (1/sqrt(d) logits; the finite
    network exists for any mechanism), keys, values, output, bias and
    correlated CONCAT embeddings in keys and values."""
    return stax.serial(
        stax.Conv(3, (1, 1), W_std=1.2, b_std=0.1),
        stax.GlobalSelfAttention(
            4,
            3,
            2,
            2,
            linear_scaling=False,
            b_std=0.2,
            pos_emb_type="CONCAT",
            pos_emb_decay_fn=_decay,
            val_pos_emb=True,
        ),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(2, b_std=0.1),
    )


@functools.lru_cache(maxsize=None)
def _empirical_case():
    net = _empirical_net()
    x1 = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 2, 2))
    # x2 of x1's shape: one compiled Jacobian serves both.
    x2 = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 2, 2))
    _, params = net.init_fn(jax.random.PRNGKey(3), x1.shape)
    # A keyword argument of apply_fn passes through: the attention layers'
    # mask (True = masked), here the last position of every input.
    mask = np.zeros((1, 2, 2, 1), bool)
    mask[0, -1, -1] = True
    kw = {"mask": mask}
    return net, params, x1, x2, kw, _brute_force_ntk(net.apply_fn, params, x1, x2, kw)


@pytest.mark.parametrize(
    "impl",
    [
        NtkImplementation.JACOBIAN_CONTRACTION,
        NtkImplementation.NTK_VECTOR_PRODUCTS,
        NtkImplementation.STRUCTURED_DERIVATIVES,
    ],
    ids=lambda i: i.name,
)
def test_empirical_ntk_of_an_attention_network_matches_brute_force(impl):
    net, params, x1, x2, kw, want = _empirical_case()
    got = empirical_ntk_fn(net, trace_axes=(), implementation=impl)(x1, x2, params, **kw)
    got = np.transpose(np.asarray(got), (0, 2, 1, 3))  # (N1, N2, K, K) -> (N1, K, N2, K)
    assert _rel(got, want) <= 1e-10


# ------------------------------------------------------------ properties


class Arch(NamedTuple):
    mechanism: str
    linear_scaling: bool
    pos_emb: str
    val_pe: bool
    decay: bool
    has_bias: bool


# Three structures (each compiled once, standard deviations traced): the
# mechanisms and embeddings not drawn here are covered by the golden family
# and the Monte Carlo tests.
ARCHS = [
    Arch("SOFTMAX", True, "NONE", False, False, True),
    Arch("RELU", True, "SUM", True, True, False),
    Arch("IDENTITY", False, "CONCAT", True, True, True),
]
N1, N2, T, C = 3, 2, 3, 2
GET = ("nngp", "ntk", "cov1", "cov2")


def _build(arch: Arch, stds):
    """Dense -> attention -> Relu -> GlobalAvgPool -> Dense, stds traced."""
    W0, b0, wk, wv, b1, wpe = (stds[i] for i in range(6))
    return stax.serial(
        stax.Dense(3, W_std=W0, b_std=b0 if arch.has_bias else None),
        stax.GlobalSelfAttention(
            4,
            3,
            2,
            2,
            linear_scaling=arch.linear_scaling,
            W_key_std=wk,
            W_value_std=wv,
            b_std=b1 if arch.has_bias else None,
            attention_mechanism=arch.mechanism,
            pos_emb_type=arch.pos_emb,
            pos_emb_decay_fn=_decay if arch.decay else None,
            W_pos_emb_std=wpe,
            val_pos_emb=arch.val_pe,
        ),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1, W_std=1.1),
    )


@functools.lru_cache(maxsize=None)
def _compiled(arch: Arch):
    @jax.jit
    def kernel(x1, x2, stds):
        return tuple(_build(arch, stds).kernel_fn(x1, x2, get=GET))

    return kernel


@functools.lru_cache(maxsize=None)
def _compiled_grad(arch: Arch):
    def objective(x1, x2, stds):
        nngp, ntk, _, _ = _compiled(arch)(x1, x2, stds)
        return jnp.sum(nngp + ntk)

    return jax.jit(jax.grad(objective, argnums=(0, 1)))


@st.composite
def nets(draw):
    arch = draw(st.sampled_from(ARCHS))
    stds = draw(st.lists(st.floats(0.3, 2.0), min_size=6, max_size=6))
    return arch, jnp.asarray(stds)


def inputs(n):
    """Inputs on a coarse grid, so zeros and repeated positions occur."""
    cell = st.integers(-15, 15).map(lambda i: i / 10)
    return st.lists(cell, min_size=n * T * C, max_size=n * T * C).map(
        lambda v: jnp.asarray(v, dtype=jnp.float64).reshape(n, T, C)
    )


@SETTINGS
@given(net=nets(), x=inputs(N1 + N2))
def test_kernels_are_symmetric_and_positive_semidefinite(net, x):
    arch, stds = net
    nngp, ntk, _, cov2 = _compiled(arch)(x, None, stds)
    assert cov2 is None
    for name, k in (("nngp", nngp), ("ntk", ntk)):
        k = np.asarray(k)
        assert np.all(np.isfinite(k)), name
        assert np.max(np.abs(k - k.T)) <= 1e-12 * np.max(np.abs(k)), name
        eig = np.linalg.eigvalsh((k + k.T) / 2)
        assert eig[0] >= -1e-10 * max(eig[-1], 0.0), (name, eig)


@SETTINGS
@given(net=nets(), x1=inputs(N1), x2=inputs(N2))
def test_cross_kernel_is_the_off_diagonal_block_of_the_joint_kernel(net, x1, x2):
    arch, stds = net
    nngp, ntk, cov1, cov2 = _compiled(arch)(x1, x2, stds)
    joint_nngp, joint_ntk, _, _ = _compiled(arch)(jnp.concatenate([x1, x2]), None, stds)
    assert _rel(nngp, joint_nngp[:N1, N1:]) <= 1e-12
    assert _rel(ntk, joint_ntk[:N1, N1:]) <= 1e-12
    assert _rel(cov1, np.diag(joint_nngp)[:N1]) <= 1e-12
    assert _rel(cov2, np.diag(joint_nngp)[N1:]) <= 1e-12


@SETTINGS
@given(net=nets(), x1=inputs(N1), dup=st.integers(0, N1 - 1), zero=st.integers(0, N1 - 1))
def test_finite_values_and_input_gradients_at_identical_and_zero_inputs(net, x1, dup, zero):
    """A duplicated row and an all-zero input (without bias its variance is 0
    at every layer; softmax of zeros is uniform) with x2 = None — values and
    input gradients — and, as x2, copies of rows of x1 (correlation 1) and
    zeros."""
    arch, stds = net
    x1 = x1.at[(dup + 1) % N1].set(x1[dup]).at[zero].set(0.0)
    for x2 in (None, x1[:N2], jnp.zeros((N2, T, C))):
        values = _compiled(arch)(x1, x2, stds)
        for name, v in zip(GET, values):
            assert v is None or np.all(np.isfinite(v)), (name, v)
    g1, _ = _compiled_grad(arch)(x1, None, stds)
    assert np.all(np.isfinite(g1)), g1
