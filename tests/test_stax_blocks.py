"""Blockwise evaluation of large spatial kernels (`ntk.stax._blocks`).

Oracle: the same network evaluated in one pass (a block budget larger than
the kernel). Blocks of a pairwise network are the same operations on fewer
pairs, so the two agree to rounding (float64, 1e-12), with row blocks,
column blocks and padded last blocks, masks and per-input graph patterns;
a network that is not pairwise (`Dropout` reads whether ``x2`` is ``x1``)
is never split.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk.stax._blocks as blocks
import ntk.stax.layer as layer_module
from ntk import stax

# Budgets in pairs of inputs: 3 splits x2 into padded column blocks (one row
# each), 14 keeps whole rows of 7 and splits x1 into padded blocks of 2.
BUDGETS = [3, 14]
N1, N2 = 5, 7


def _attention():
    return stax.serial(
        stax.Conv(8, (1,)),
        stax.GlobalSelfAttention(8, 8, 8, 2),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )


def _conv():
    return stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"),
        stax.Erf(),
        stax.Conv(4, (3, 3), padding="SAME", b_std=0.3),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )


def _graph():
    block = [stax.Dense(8, W_std=1.4, b_std=0.1), stax.Aggregate(), stax.Relu()]
    return stax.serial(*block, *block, stax.GlobalAvgPool(), stax.Dense(1))


def _inputs(arch, rng):
    if arch == "conv":
        shape = (4, 4, 2)
    else:
        shape = (6, 3)
    x1 = rng.normal(size=(N1,) + shape)
    x2 = rng.normal(size=(N2,) + shape)
    kwargs = {}
    if arch == "attention":
        # The last two positions of some sequences are padding.
        x1[::2, -2:] = 9.0
        x2[1::3, -2:] = 9.0
        kwargs["mask_constant"] = 9.0
    if arch == "graph":
        adjacency = lambda n: np.where(rng.random((n, 6, 6)) < 0.4, 1.0, 0.0)
        kwargs["pattern"] = (adjacency(N1), adjacency(N2))
    return jnp.asarray(x1), jnp.asarray(x2), kwargs


ARCHS = {"attention": _attention, "conv": _conv, "graph": _graph}


def _set_budget(monkeypatch, x, pairs):
    """A block budget of ``pairs`` float64 pairs of inputs shaped like ``x``
    (read when a kernel is compiled: build a fresh network after it)."""
    pair_bytes = np.prod(x.shape[1:-1]) ** 2 * 8
    monkeypatch.setattr(blocks, "BLOCK_BYTES", int(pairs * pair_bytes))


def _kernel(arch, budget_pairs, x1, x2, kwargs, get, monkeypatch):
    """The kernel of a fresh network with a budget of ``budget_pairs`` pairs."""
    _set_budget(monkeypatch, x1, budget_pairs)
    return ARCHS[arch]().kernel_fn(x1, x2, get, **kwargs)


def _spy(monkeypatch):
    """Record whether each kernel evaluation was split into blocks."""
    calls = []

    def spy(*args, **kwargs):
        out = blocks.blockwise(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(layer_module, "blockwise", spy)
    return calls


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("with_x2", [False, True])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_blockwise_kernel_equals_one_pass(arch, with_x2, budget, monkeypatch):
    x1, x2, kwargs = _inputs(arch, np.random.default_rng(0))
    if not with_x2:
        x2 = None
        if "pattern" in kwargs:
            kwargs["pattern"] = (kwargs["pattern"][0], None)
    calls = _spy(monkeypatch)
    whole = _kernel(arch, 10**9, x1, x2, kwargs, ("nngp", "ntk"), monkeypatch)
    split = _kernel(arch, budget, x1, x2, kwargs, ("nngp", "ntk"), monkeypatch)
    assert calls == [False, True]
    n2 = N1 if x2 is None else N2
    for got, want in zip(split, whole):
        assert got.shape == want.shape == (N1, n2)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_blockwise_applies_to_single_get_and_not_to_covariances(monkeypatch):
    x1, x2, _ = _inputs("conv", np.random.default_rng(1))
    calls = _spy(monkeypatch)
    whole = _kernel("conv", 10**9, x1, x2, {}, "ntk", monkeypatch)
    split = _kernel("conv", 3, x1, x2, {}, "ntk", monkeypatch)
    np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-14)
    _kernel("conv", 3, x1, x2, {}, ("nngp", "cov1"), monkeypatch)
    assert calls == [False, True, False]


def test_dropout_network_is_not_split(monkeypatch):
    """Dropout's kernel of x with itself differs from that of x with a copy
    of x: a network with it is evaluated in one pass, whatever the budget."""
    x1, _, _ = _inputs("conv", np.random.default_rng(2))
    net = lambda: stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.Dropout(0.5), stax.GlobalAvgPool()
    )
    assert not net().kernel_fn.pairwise
    calls = _spy(monkeypatch)
    _set_budget(monkeypatch, x1, 3)
    same = net().kernel_fn(x1, None, "nngp")
    # Under jit x2 cannot be compared with x1, so it is a copy (outside jit an
    # equal x2 counts as x1 itself, as in NT).
    copy = jax.jit(lambda a, b: net().kernel_fn(a, b, "nngp"))(x1, x1 + 0.0)
    assert calls == []  # never even tried
    # The boost is on the diagonal only (else the check above means nothing).
    diff = np.asarray(same) - np.asarray(copy)
    assert np.all(np.diag(diff) > 1e-3)
    np.testing.assert_allclose(diff[~np.eye(N1, dtype=bool)], 0.0, atol=1e-14)


def test_opaque_layer_is_not_pairwise():
    custom = stax.make_layer(
        "Custom", lambda key, shape: (shape, ()), lambda params, x, **kw: x, lambda k, **kw: k
    )
    assert not custom.kernel_fn.pairwise
    assert not stax.serial(stax.Conv(2, (1,)), custom).kernel_fn.pairwise
    assert stax.serial(stax.Conv(2, (1,)), stax.Relu()).kernel_fn.pairwise


def test_kernel_with_itself_is_built_from_the_blocks_above_the_diagonal(monkeypatch):
    """With ``x2=None`` and an ``(N, N)`` output only blocks (I, J), I ≤ J, are
    evaluated; those below are their transposes. Blocks of 2 (5 inputs: a
    3×3 grid with a padded last block) make the transposes non-trivial."""
    x1, _, kwargs = _inputs("graph", np.random.default_rng(3))
    kwargs["pattern"] = (kwargs["pattern"][0], None)
    upper = []
    original = blocks._upper_blocks
    monkeypatch.setattr(
        blocks, "_upper_blocks", lambda *a, **k: upper.append(original(*a, **k)) or upper[-1]
    )
    whole = _kernel("graph", 10**9, x1, None, kwargs, ("nngp", "ntk"), monkeypatch)
    split = _kernel("graph", 4, x1, None, kwargs, ("nngp", "ntk"), monkeypatch)
    assert len(upper) == 1 and upper[0] is not None
    for got, want in zip(split, whole):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_spatial_output_with_itself_is_split_into_row_blocks(monkeypatch):
    """An output that keeps its positions, ``(N, N, H, H, W, W)``, is not
    mirrored (its transpose would also swap the position axes): rows of
    blocks instead, with the same values."""
    x1, _, _ = _inputs("conv", np.random.default_rng(4))
    net = lambda: stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.AvgPool((2, 2)),
        stax.Conv(2, (1, 1)),
    )
    calls = _spy(monkeypatch)
    _set_budget(monkeypatch, x1, 10**9)
    whole = net().kernel_fn(x1, None, "ntk")
    _set_budget(monkeypatch, x1, 4)
    split = net().kernel_fn(x1, None, "ntk")
    assert calls == [False, True]
    assert split.shape == (N1, N1, 3, 3, 3, 3)
    np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-14)
