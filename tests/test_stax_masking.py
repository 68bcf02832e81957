"""Masked (padded) inputs: `ntk.stax.masking`, ``mask_constant``, `MaskedArray`.

Oracles: truncation (a padded, masked sequence must give exactly what the
unpadded sequence gives, for networks where that equivalence holds: Dense,
SAME stride-1 convolutions, LayerNorm and GlobalAvgPool), Monte Carlo of
wide finite networks through `unmask_fn`, zeroed inputs (a masked entry is a
zero for every layer), the unwrapped layer functions (no mask: the compiled
program is the unmasked one), and Hypothesis properties. The neural-tangents
comparison is ``tests/golden/architectures_masking.py``.
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
from ntk.kernel import inputs_to_kernel
from ntk.stax import MaskedArray, unmask_fn

MASK = -7.0
SETTINGS = settings(
    deadline=None, max_examples=10, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _pad(x, lengths, value=MASK):
    """``x`` with positions ``[i, lengths[i]:]`` of axis 1 set to ``value``."""
    x = np.array(x, dtype=np.float64)
    for i, n in enumerate(lengths):
        x[i, n:] = value
    return x


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _seq_net():
    """Dense, SAME stride-1 Conv, LayerNorm over positions, GlobalAvgPool:
    for these, padding + masking is exactly truncation."""
    return stax.serial(
        stax.Dense(6, W_std=1.3, b_std=0.4),
        stax.Relu(),
        stax.Conv(5, (3,), padding="SAME", W_std=1.2, b_std=0.2),
        stax.LayerNorm(axis=(1, 2)),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(3, W_std=0.8, b_std=0.1),
    )


# ------------------------------------------------------ truncation oracle


def test_padded_masked_sequences_give_the_kernel_of_the_truncated_ones():
    rng = np.random.default_rng(0)
    T, lengths1, lengths2 = 7, (4, 4, 7, 4), (4, 7, 4)
    x1 = rng.standard_normal((4, T, 3))
    x2 = rng.standard_normal((3, T, 3))
    net = _seq_net()
    k = net.kernel_fn(_pad(x1, lengths1), _pad(x2, lengths2), ("nngp", "ntk"), mask_constant=MASK)
    for n in (4, 7):
        r1 = [i for i, m in enumerate(lengths1) if m == n]
        r2 = [j for j, m in enumerate(lengths2) if m == n]
        want = net.kernel_fn(x1[r1, :n], x2[r2, :n], ("nngp", "ntk"))
        for g in ("nngp", "ntk"):
            got = np.asarray(getattr(k, g))[np.ix_(r1, r2)]
            assert _rel(got, getattr(want, g)) <= 1e-12, (n, g)


def test_padded_masked_sequences_give_the_outputs_of_the_truncated_ones():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 2))
    lengths = (6, 2, 4)
    net = _seq_net()
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    apply_fn = jax.jit(net.apply_fn, static_argnames="mask_constant")
    out = apply_fn(params, _pad(x, lengths), mask_constant=MASK)
    assert isinstance(out, MaskedArray)
    assert out.mask.shape == (3, 1) and not np.any(out.mask)
    for i, n in enumerate(lengths):
        want = apply_fn(params, x[i : i + 1, :n])
        np.testing.assert_allclose(out.masked_value[i], want[0], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------- Monte Carlo


def _mc_net_concat_avgpool_flatten(width):
    """A Flatten readout (it averages over all positions, masked ones as
    zeros), after an AvgPool with stride and a FanInConcat that mix masked and
    unmasked positions and channels."""
    return stax.serial(
        stax.FanOut(2),
        stax.parallel(
            stax.Dense(width, W_std=1.2, b_std=0.3),
            stax.Conv(width, (2,), padding="SAME", b_std=0.2),
        ),
        stax.FanInConcat(),
        stax.Dense(width, W_std=1.1, b_std=0.2),
        stax.Relu(),
        stax.AvgPool((2,), (2,), padding="SAME"),
        stax.Dense(width, b_std=0.1),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(4, W_std=0.9, b_std=0.2),
    )


def _mc_net_circular_pool_concat_gap(width):
    """What neural-tangents 0.6.5 rejects with masks: a CIRCULAR pool (its
    masks know VALID and SAME only) and a FanInConcat of branches of
    different widths into a GlobalAvgPool (its concatenated mask has a channel
    axis, which its pooling layers refuse)."""
    return stax.serial(
        stax.Conv(width, (3,), padding="CIRCULAR", W_std=1.3, b_std=0.2),
        stax.Erf(),
        stax.AvgPool((2,), padding="CIRCULAR"),
        stax.FanOut(2),
        stax.parallel(
            stax.serial(stax.Conv(width, (1,), W_std=1.2, b_std=0.3), stax.Relu()),
            stax.serial(stax.Conv(width // 2, (2,), padding="SAME"), stax.Cos()),
        ),
        stax.FanInConcat(),
        stax.GlobalAvgPool(),
        stax.Dense(4, W_std=0.9, b_std=0.2),
    )


@pytest.mark.parametrize(
    "net_fn",
    [_mc_net_concat_avgpool_flatten, _mc_net_circular_pool_concat_gap],
    ids=lambda f: f.__name__[8:],
)
def test_masked_kernel_matches_monte_carlo_of_the_finite_network(net_fn):
    """Where truncation is no oracle (the GlobalAvgPool readout of `_seq_net`
    is checked by truncation above). Width 128, 100 draws: the CLT error of
    the mean is covered by 5 standard errors, the O(1/width) ≈ 1%
    finite-width bias by 3% of the largest entry."""
    rng = np.random.default_rng(2)
    x1 = _pad(rng.standard_normal((3, 6, 2)), (6, 3, 4))
    x2 = _pad(rng.standard_normal((2, 6, 2)), (2, 5))
    net = net_fn(128)
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"), mask_constant=MASK)
    apply_fn = unmask_fn(net.apply_fn)
    nngp, nngp_sem, ntk, ntk_sem = mc_kernels(
        net.init_fn,
        lambda p, x: apply_fn(p, x, mask_constant=MASK),
        x1,
        x2,
        jax.random.PRNGKey(3),
        100,
    )
    assert_within_mc(k.nngp, nngp, nngp_sem, bias=0.03, what="nngp")
    assert_within_mc(k.ntk, ntk, ntk_sem, bias=0.03, what="ntk")


# ------------------------------------------------ masked entries are zeros


def test_a_masked_channel_counts_as_a_zero_and_a_position_as_padding_only_if_all_channels_are():
    """Raw-input masks are elementwise; Conv, AvgPool and GlobalAvgPool see a
    position as padding only when all its channels are masked (neural-tangents
    raises here). So one masked channel of an otherwise unmasked position
    must give the kernel of the input with that entry zeroed."""
    rng = np.random.default_rng(4)
    x = _pad(rng.standard_normal((3, 6, 3)), (6, 4, 5))
    partial = x.copy()
    partial[0, 2, 1] = MASK
    partial[2, 1, 0] = MASK
    zeroed = x.copy()
    zeroed[0, 2, 1] = 0.0
    zeroed[2, 1, 0] = 0.0
    net = stax.serial(
        stax.Conv(4, (3,), padding="SAME", b_std=0.3),
        stax.Relu(),
        stax.AvgPool((2,), padding="SAME"),
        stax.GlobalAvgPool(),
        stax.Dense(2, b_std=0.1),
    )
    got = net.kernel_fn(partial, None, ("nngp", "ntk"), mask_constant=MASK)
    want = net.kernel_fn(zeroed, None, ("nngp", "ntk"), mask_constant=MASK)
    assert _rel(got.nngp, want.nngp) <= 1e-13 and _rel(got.ntk, want.ntk) <= 1e-13


def test_maskedarray_inputs_equal_mask_constant_inputs():
    rng = np.random.default_rng(5)
    x = _pad(rng.standard_normal((3, 5, 2)), (5, 2, 3))
    mask = x == MASK
    garbage = np.where(mask, 1e6, x)  # masked values must not matter
    net = _seq_net()
    _, params = net.init_fn(jax.random.PRNGKey(1), x.shape)
    apply_fn = jax.jit(net.apply_fn, static_argnames="mask_constant")
    a = apply_fn(params, x, mask_constant=MASK)
    b = apply_fn(params, MaskedArray(garbage, mask))
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.masked_value, b.masked_value, rtol=1e-13)
    ka = net.kernel_fn(x, None, "ntk", mask_constant=MASK)
    kb = net.kernel_fn(MaskedArray(garbage, mask), None, "ntk")
    assert _rel(kb, ka) <= 1e-13


def test_nan_is_a_valid_mask_constant():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 2))
    net = _seq_net()
    want = net.kernel_fn(_pad(x, (5, 2, 3)), None, "nngp", mask_constant=MASK)
    got = net.kernel_fn(_pad(x, (5, 2, 3), np.nan), None, "nngp", mask_constant=np.nan)
    assert _rel(got, want) <= 1e-14
    with pytest.raises(ValueError, match="finite"):
        net.kernel_fn(_pad(x, (5, 2, 3), np.nan), None, "nngp")


# ------------------------------------------------------ masks through layers


def test_output_masks_follow_each_layer():
    x = _pad(np.ones((2, 6, 3)), (6, 2))
    cases = {
        "Dense": (stax.Dense(4), (2, 6, 1)),
        "Conv VALID stride 2": (stax.Conv(4, (3,), strides=(2,)), (2, 2, 1)),
        "AvgPool SAME": (stax.AvgPool((2,), (2,), padding="SAME"), (2, 3, 1)),
        "GlobalAvgPool": (stax.GlobalAvgPool(), (2, 1)),
        "Flatten": (stax.Flatten(), (2, 18)),
        "Identity": (stax.Identity(), (2, 6, 3)),
        "ConvLocal SAME": (stax.ConvLocal(4, (3,), padding="SAME"), (2, 6, 1)),
        "ConvTranspose stride 2": (stax.ConvTranspose(4, (2,), (2,)), (2, 12, 1)),
        "ImageResize": (stax.ImageResize((-1, 3, -1), "linear"), (2, 3, 1)),
        "Index channel": (stax.Index(stax.Slice[:, ::2, 0]), (2, 3)),
        "DotGeneral": (
            stax.DotGeneral(rhs=np.ones(6), dimension_numbers=(((1,), (0,)), ((), ()))),
            (2, 3),
        ),
    }
    for name, (layer, shape) in cases.items():
        _, params = layer.init_fn(jax.random.PRNGKey(0), x.shape)
        out = layer.apply_fn(params, x, mask_constant=MASK)
        assert isinstance(out, MaskedArray) and out.mask.shape == shape, name
    # Conv: output o is padding iff its window's centre 2o + 1 is.
    conv = stax.Conv(4, (3,), strides=(2,))
    _, params = conv.init_fn(jax.random.PRNGKey(0), x.shape)
    mask = conv.apply_fn(params, x, mask_constant=MASK).mask[..., 0]
    np.testing.assert_array_equal(mask, [[False, False], [False, True]])
    # ConvTranspose (neural-tangents' rule): padding where any contributing
    # input is; ImageResize and DotGeneral: only where every contribution is.
    layer = stax.ConvTranspose(4, (2,), (2,))
    _, params = layer.init_fn(jax.random.PRNGKey(0), x.shape)
    mask = layer.apply_fn(params, x, mask_constant=MASK).mask[1, :, 0]
    np.testing.assert_array_equal(mask, np.arange(12) >= 4)
    resize = stax.ImageResize((-1, 4, -1), "linear").apply_fn((), x, mask_constant=MASK)
    np.testing.assert_array_equal(resize.mask[1, :, 0], [False, False, True, True])
    rows = stax.DotGeneral(
        rhs=np.r_[0.0, 0.0, 1.0, 1.0, 1.0, 1.0], dimension_numbers=(((1,), (0,)), ((), ()))
    )
    np.testing.assert_array_equal(
        rows.apply_fn((), x, mask_constant=MASK).mask[:, 0], [False, True]
    )
    # Branches: FanOut copies the mask, FanInConcat concatenates channels.
    net = stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.Dense(2)))
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    outs = net.apply_fn(params, x, mask_constant=MASK)
    assert [o.mask.shape for o in outs] == [(2, 6, 3), (2, 6, 1)]
    cat = stax.FanInConcat()
    out = cat.apply_fn((), outs)
    assert out.mask.shape == (2, 6, 5)
    np.testing.assert_array_equal(out.mask[1, :, 0], np.arange(6) >= 2)


def test_unmask_fn_zeroes_masked_entries_and_passes_arrays_through():
    out = MaskedArray(jnp.arange(4.0).reshape(2, 2), jnp.array([[True], [False]]))
    f = unmask_fn(lambda: [out, jnp.ones(2)])
    got = f()
    np.testing.assert_array_equal(got[0], [[0.0, 0.0], [2.0, 3.0]])
    np.testing.assert_array_equal(got[1], [1.0, 1.0])


def test_repeat_with_masks_equals_the_unrolled_serial():
    rng = np.random.default_rng(7)
    x = _pad(rng.standard_normal((3, 5, 2)), (5, 3, 1))
    block = stax.serial(stax.Relu(), stax.Dense(4, W_std=1.3, b_std=0.2))
    head = [stax.Dense(4, b_std=0.1)]
    tail = [stax.Relu(), stax.GlobalAvgPool(), stax.Dense(2)]
    looped = stax.serial(*head, stax.repeat(block, 3), *tail)
    unrolled = stax.serial(*head, block, block, block, *tail)
    k1 = looped.kernel_fn(x, None, "ntk", mask_constant=MASK)
    k2 = unrolled.kernel_fn(x, None, "ntk", mask_constant=MASK)
    assert _rel(k1, k2) <= 1e-13
    _, params = looped.init_fn(jax.random.PRNGKey(2), x.shape)
    out = jax.jit(lambda p: looped.apply_fn(p, x, mask_constant=MASK))(params)
    # The same parameters, laid out for the unrolled network.
    p_head, p_rep, p_tail = params[0], params[1], params[2:]
    p_unrolled = (
        p_head,
        *[jax.tree_util.tree_map(lambda a, i=i: a[i], p_rep) for i in range(3)],
        *p_tail,
    )
    want = jax.jit(lambda p: unrolled.apply_fn(p, x, mask_constant=MASK))(p_unrolled)
    np.testing.assert_allclose(out.masked_value, want.masked_value, rtol=1e-12)


# --------------------------------------------- no mask: nothing changes


def _raw(layer):
    """A leaf layer's functions without the masking wrappers."""
    return layer.apply_fn.__wrapped__, layer.kernel_fn.transform.__wrapped__


def test_without_masks_the_program_is_that_of_the_unwrapped_layers():
    layers = [
        stax.Dense(4, b_std=0.1),
        stax.Relu(),
        stax.Conv(3, (2,), padding="SAME"),
        stax.AvgPool((2,)),
        stax.LayerNorm(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    ]
    net = stax.serial(*layers)
    x = jnp.ones((2, 5, 3))

    def raw_kernel(x):
        k = inputs_to_kernel(x, None, diagonal_spatial=False, compute_ntk=True)
        for layer in layers:
            k = _raw(layer)[1](k)
        return k.ntk

    def raw_apply(params, x):
        for layer, p in zip(layers, params):
            x = _raw(layer)[0](p, x)
        return x

    ours = jax.make_jaxpr(lambda x: net.kernel_fn._from_arrays(x, None, "ntk", True))(x)
    assert str(ours) == str(jax.make_jaxpr(raw_kernel)(x))
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    for kw in ({}, {"mask_constant": None}):
        ours = jax.make_jaxpr(lambda p, x, kw=kw: net.apply_fn(p, x, **kw))(params, x)
        assert str(ours) == str(jax.make_jaxpr(raw_apply)(params, x))


def test_kernel_fn_with_keyword_arguments_is_traced_once_per_static_value():
    traces = []

    def counting(k, **kw):
        traces.append(1)  # runs when traced, not when a compiled call runs
        return k

    probe = stax.make_layer("Probe", lambda key, s: (s, ()), lambda p, x, **kw: x, counting)
    net = stax.serial(stax.Dense(3, b_std=0.1), stax.Relu(), probe, stax.GlobalAvgPool())
    rng = np.random.default_rng(8)
    x = _pad(rng.standard_normal((2, 4, 2)), (4, 2))
    a = net.kernel_fn(x, None, "nngp", mask_constant=MASK)
    b = net.kernel_fn(x + 0.0, None, "nngp", mask_constant=MASK)
    assert len(traces) == 1 and _rel(a, b) == 0
    # A NumPy scalar constant is traced (a second program, reused after).
    c = net.kernel_fn(x, None, "nngp", mask_constant=np.float64(MASK))
    net.kernel_fn(x, None, "nngp", mask_constant=np.float64(MASK + 1))
    assert len(traces) == 2 and _rel(c, a) <= 1e-15
    # Inside a user's jit, the mask constant may be a tracer.
    jitted = jax.jit(lambda x, c: net.kernel_fn(x, None, "nngp", mask_constant=c))
    assert _rel(jitted(x, MASK), a) <= 1e-15


# ------------------------------------------------------------ properties


@functools.cache
def _compiled(kind: str):
    net = {
        "gap": _seq_net(),
        "flatten": stax.serial(
            stax.Conv(4, (2,), b_std=0.2),
            stax.Erf(),
            stax.Dense(3, b_std=0.1),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(2),
        ),
    }[kind]
    return jax.jit(
        lambda x1, x2: tuple(
            net.kernel_fn(
                MaskedArray(x1[0], x1[1]),
                None if x2 is None else MaskedArray(x2[0], x2[1]),
                ("nngp", "ntk"),
            )
        ),
        static_argnums=(),
    )


@st.composite
def masked_batches(draw, n, t=5, c=2):
    """Values on a coarse grid (zeros and repeated rows occur) and lengths
    ≥ 1; masked entries hold arbitrary (large) values."""
    cell = st.integers(-10, 10).map(lambda i: i / 5)
    rows = draw(st.lists(st.lists(cell, min_size=t * c, max_size=t * c), min_size=n, max_size=n))
    x = np.asarray(rows, dtype=np.float64).reshape(n, t, c)
    if draw(st.booleans()):
        x[-1] = x[0]
    lengths = draw(st.lists(st.integers(1, t), min_size=n, max_size=n))
    mask = np.arange(t)[None, :, None] >= np.asarray(lengths)[:, None, None]
    mask = np.broadcast_to(mask, x.shape)
    junk = draw(st.floats(-1e3, 1e3))
    return jnp.asarray(np.where(mask, junk, x)), jnp.asarray(mask)


@SETTINGS
@given(kind=st.sampled_from(["gap", "flatten"]), x=masked_batches(5))
def test_masked_kernels_are_symmetric_psd_and_finite(kind, x):
    nngp, ntk = _compiled(kind)(x, None)
    for name, k in (("nngp", nngp), ("ntk", ntk)):
        k = np.asarray(k)
        assert np.all(np.isfinite(k)), name
        assert np.max(np.abs(k - k.T)) <= 1e-12 * max(np.max(np.abs(k)), 1e-300), name
        eig = np.linalg.eigvalsh((k + k.T) / 2)
        assert eig[0] >= -1e-10 * max(eig[-1], 0.0), (name, eig)


@SETTINGS
@given(
    kind=st.sampled_from(["gap", "flatten"]),
    x1=masked_batches(3),
    x2=masked_batches(2),
    junk=st.floats(-1e3, 1e3),
)
def test_values_at_masked_entries_change_nothing(kind, x1, x2, junk):
    got = _compiled(kind)(x1, x2)
    other1 = (jnp.where(x1[1], junk, x1[0]), x1[1])
    other2 = (jnp.where(x2[1], -junk, x2[0]), x2[1])
    want = _compiled(kind)(other1, other2)
    for g, w in zip(got, want):
        assert _rel(g, w) <= 1e-13


def test_zero_inputs_with_masks_give_finite_kernels():
    x = jnp.zeros((3, 5, 2))
    mask = jnp.broadcast_to((jnp.arange(5) >= 2)[None, :, None], x.shape)
    for kind in ("gap", "flatten"):
        for v in _compiled(kind)((x, mask), None):
            assert np.all(np.isfinite(np.asarray(v))), kind


# ----------------------------------------------------------------- errors


def test_a_mask_that_does_not_fit_its_values_is_a_value_error():
    net = stax.serial(stax.Dense(2), stax.GlobalAvgPool())
    x = np.ones((2, 4, 3))
    with pytest.raises(ValueError, match="mask"):
        net.kernel_fn(MaskedArray(x, np.zeros((2, 3), bool)), None, "nngp")
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="mask"):
        net.apply_fn(params, MaskedArray(x, np.zeros((2, 5, 1), bool)))


def test_make_layer_rejects_a_mask_fn_that_is_not_callable():
    with pytest.raises(TypeError, match="mask_fn"):
        stax.make_layer(
            "Bad", lambda k, s: (s, ()), lambda p, x, **kw: x, lambda k, **kw: k, mask_fn="all"
        )


def test_every_nan_mask_constant_is_one_compilation_key():
    # NaN != NaN and float NaNs hash by identity: each float("nan") would
    # otherwise miss the compiled kernel and compile it again.
    from ntk.stax._internal import split_static_kwargs

    keys = [split_static_kwargs({"mask_constant": float("nan")})[1] for _ in range(2)]
    assert keys[0] == keys[1] and hash(keys[0]) == hash(keys[1])
