"""`DotGeneral` and `Index`/`Slice`: fixed linear maps of the batch and spatial axes.

Oracles, each able to disagree with the code under test:

* Exact: both layers act on every channel alike, so on the inputs themselves
  the kernel of the layer's output is the input kernel of the output arrays,
  ``K'(x_i, p; x_j, p') = <y_i(p), y_j(p')> / C`` with ``y = apply_fn(x)``
  computed by `jax.lax.dot_general` / NumPy indexing — not by the kernel code.
  The same must hold in both spatial layouts, with and without ``x2``.
* Monte Carlo kernels of wide finite networks (`tests/mc.py`), with every
  (input, position) of the output a row. Each network has one hidden
  nonlinearity, so its pre-activations are exactly Gaussian and the readout
  independent of them: the estimate is unbiased at any width and the bound is
  the CLT one, 5 standard errors of the mean.
* Brute-force Jacobians for the empirical NTK of networks using both layers.
* neural-tangents' kernels: `tests/golden/architectures_indexing.py`, checked
  in `tests/test_stax_golden.py`.
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
from mc import assert_within_mc, mc_kernels

from ntk import stax
from ntk.empirical import NtkImplementation, auto_implementation, empirical_ntk_fn
from ntk.kernel import inputs_to_kernel
from ntk.stax import spec as specs
from ntk.stax.indexing import UnsupportedAxisError

N = 3  # examples of x1 (and of x2 for per-example constants)


def _const(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1.5, 1.5, shape)


def _img(n, seed, shape=(3, 4, 2)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n,) + shape))


# name -> (layer, x2 has N rows (per-example constant), diagonal layout allowed)
LAYERS = {
    "rhs_contract_h": (
        lambda: stax.DotGeneral(rhs=_const((3,)), dimension_numbers=(((1,), (0,)), ((), ()))),
        False,
        False,
    ),
    "rhs_contract_hw": (
        lambda: stax.DotGeneral(
            rhs=_const((3, 4), 1), dimension_numbers=(((1, 2), (0, 1)), ((), ()))
        ),
        False,
        False,
    ),
    "lhs_contract_w": (
        lambda: stax.DotGeneral(lhs=_const((4,), 2), dimension_numbers=(((0,), (2,)), ((), ()))),
        False,
        False,
    ),
    "rhs_scalar": (lambda: stax.DotGeneral(rhs=-1.3), False, True),
    "rhs_per_example_positions": (
        lambda: stax.DotGeneral(
            rhs=_const((N, 3, 4), 3), dimension_numbers=(((), ()), ((0, 1, 2), (0, 1, 2)))
        ),
        True,
        True,
    ),
    # Batching (N, W) with a constant moves W before H: (N, H, W, C) -> (N, W, H, C).
    "rhs_per_example_permutes_axes": (
        lambda: stax.DotGeneral(
            rhs=_const((N, 4), 4), dimension_numbers=(((), ()), ((0, 2), (0, 1)))
        ),
        True,
        True,
    ),
    "rhs_per_example_contract": (
        lambda: stax.DotGeneral(
            rhs=_const((N, 3), 5), dimension_numbers=(((1,), (1,)), ((0,), (0,)))
        ),
        True,
        False,
    ),
    # The lhs's free axis becomes a new spatial axis after the batch axis.
    "lhs_per_example_new_axis": (
        lambda: stax.DotGeneral(lhs=_const((N, 2), 6), dimension_numbers=(((), ()), ((0,), (0,)))),
        True,
        True,
    ),
    "lhs_per_example_new_axis_contract": (
        lambda: stax.DotGeneral(
            lhs=_const((N, 2, 4), 7), dimension_numbers=(((2,), (2,)), ((0,), (0,)))
        ),
        True,
        False,
    ),
    "index_crop_stride": (lambda: stax.Index(stax.Slice[:, 1:, ::2]), False, True),
    "index_negative_steps": (lambda: stax.Index(stax.Slice[:, ::-1, -1::-3]), False, True),
    "index_int_ellipsis": (lambda: stax.Index(stax.Slice[..., 1, :]), False, True),
    "index_int_first_spatial": (lambda: stax.Index(stax.Slice[:, -1]), False, True),
    "index_batch": (lambda: stax.Index(stax.Slice[1:, ::2]), False, True),
    "index_batch_reverse": (lambda: stax.Index(stax.Slice[::-1]), False, True),
    # Any slice that keeps every channel in order is allowed (NT: only `:`).
    "index_channel_kept_whole": (lambda: stax.Index(stax.Slice[:, :, 2:, 0:2]), False, True),
}


def _oracle_cases():
    for name, (_, same_batch, diag_ok) in LAYERS.items():
        for diag in (False, True) if diag_ok else (False,):
            yield name, diag, False
        # x2=None takes the same code path but for cov2; the layers that index
        # or multiply the batch axis are where it could go wrong.
        if same_batch or name.startswith("index_batch"):
            yield name, False, True


@pytest.mark.parametrize("name,diagonal_spatial,x2_none", list(_oracle_cases()))
def test_kernel_on_inputs_is_the_input_kernel_of_the_outputs(name, diagonal_spatial, x2_none):
    make, same_batch, _ = LAYERS[name]
    layer = make()
    x1 = _img(N, 0)
    x2 = None if x2_none else _img(N if same_batch else 2, 1)
    k0 = inputs_to_kernel(x1, x2, diagonal_spatial=diagonal_spatial, compute_ntk=True)
    # Θ transforms like K; a non-zero input Θ (a valid kernel) exercises that.
    k = layer.kernel_fn(k0.replace(ntk=0.7 * k0.nngp))
    y1 = layer.apply_fn((), x1)
    y2 = None if x2_none else layer.apply_fn((), x2)
    want = inputs_to_kernel(y1, y2, diagonal_spatial=diagonal_spatial, compute_ntk=False)
    assert k.shape1 == y1.shape and k.shape2 == (y1 if x2_none else y2).shape
    assert k.shape1 == layer.init_fn(None, x1.shape)[0]
    assert k.diagonal_spatial == diagonal_spatial
    # Both sides are a few float64 sums of products of O(1) numbers.
    for got, exp, what in (
        (k.nngp, want.nngp, "nngp"),
        (k.ntk, 0.7 * want.nngp, "ntk"),
        (k.cov1, want.cov1, "cov1"),
        (k.cov2, want.cov2, "cov2"),
    ):
        if exp is None:
            assert got is None, what
            continue
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-13, err_msg=what)


def test_index_apply_fn_is_numpy_indexing():
    x = np.asarray(_img(N, 2))
    for idx in (np.s_[:, 1:, ::2], np.s_[..., 1, :], np.s_[::-1], np.s_[1:, -1]):
        np.testing.assert_array_equal(stax.Index(idx).apply_fn((), jnp.asarray(x)), x[idx])
    assert stax.Slice[1, :, 2:8:3] == (1, slice(None), slice(2, 8, 3))


def test_dot_general_without_a_constant_is_the_identity():
    # NT 0.6.5 documents this but multiplies by jnp.array(None) = NaN instead.
    layer = stax.DotGeneral()
    x1, x2 = _img(N, 3), _img(2, 4)
    k0 = inputs_to_kernel(x1, x2, diagonal_spatial=False, compute_ntk=True)
    k = layer.kernel_fn(k0.replace(ntk=0.5 * k0.nngp))
    for what in ("nngp", "cov1", "cov2"):
        np.testing.assert_array_equal(getattr(k, what), getattr(k0, what), err_msg=what)
    np.testing.assert_array_equal(k.ntk, 0.5 * k0.nngp)
    assert k.shape1 == x1.shape and k.shape2 == x2.shape
    np.testing.assert_array_equal(layer.apply_fn((), x1), x1)
    assert layer.init_fn(None, x1.shape) == (x1.shape, ())


def test_only_contractions_request_the_full_spatial_layout():
    for name, (make, _, diag_ok) in LAYERS.items():
        assert make().kernel_fn.needs_full_spatial == (not diag_ok), name


# ------------------------------------------------------------ Monte Carlo

C, OUT, SAMPLES = 64, 64, 32
MC_NETS = {
    # (N, 4, 5, 2) -> Conv -> (N, 4, 4, C) -> contract H -> (N, 4, C)
    # -> reverse positions, drop the last -> (N, 3, C) -> Dense.
    "rhs_contract_then_index": lambda: stax.serial(
        stax.Conv(C, (1, 2), W_std=1.3, b_std=0.2),
        stax.Relu(),
        stax.DotGeneral(rhs=_const((4,), 8), dimension_numbers=(((1,), (0,)), ((), ()))),
        stax.Index(stax.Slice[:, -2::-1]),
        stax.Dense(OUT, W_std=1.1, b_std=0.1),
    ),
    # Per-example lhs with a new axis, contracting W; every other example.
    "lhs_per_example_then_batch_index": lambda: stax.serial(
        stax.Conv(C, (2, 2), W_std=1.2, b_std=0.3),
        stax.Erf(),
        stax.DotGeneral(lhs=_const((N, 2, 4), 9), dimension_numbers=(((2,), (2,)), ((0,), (0,)))),
        stax.Index(stax.Slice[::2, :, 1:]),
        stax.Dense(OUT, W_std=1.4),
    ),
}


def _as_matrix(m):
    """``(N1, N2, S1, S1', ...)`` full-layout kernel -> ``(N1·|S|, N2·|S|)``."""
    d = (m.ndim - 2) // 2
    perm = [0] + [2 + 2 * i for i in range(d)] + [1] + [3 + 2 * i for i in range(d)]
    m = jnp.transpose(m, perm)
    return m.reshape(math.prod(m.shape[: 1 + d]), -1)


@pytest.mark.parametrize("name", list(MC_NETS))
def test_kernel_matches_monte_carlo_of_wide_network(name):
    layer = MC_NETS[name]()
    x1, x2 = _img(N, 10, (4, 5, 2)), _img(N, 11, (4, 5, 2))
    k = jax.jit(
        lambda a, b: layer.kernel_fn(
            inputs_to_kernel(a, b, diagonal_spatial=False, compute_ntk=True)
        )
    )(x1, x2)

    def rows(params, x):
        y = layer.apply_fn(params, x)
        return y.reshape(-1, y.shape[-1])

    nngp_m, nngp_s, ntk_m, ntk_s = mc_kernels(
        layer.init_fn, rows, x1, x2, jax.random.PRNGKey(3), SAMPLES
    )
    nngp, ntk = _as_matrix(k.nngp), _as_matrix(k.ntk)
    assert nngp.shape == nngp_m.shape
    assert_within_mc(nngp, nngp_m, nngp_s, what="nngp")
    assert_within_mc(ntk, ntk_m, ntk_s, what="ntk")


# ------------------------------------------------------------- properties

N1, N2, L = 3, 2, 4
PROPERTY_NETS = {
    "rhs_contract": lambda: stax.serial(
        stax.Conv(8, (2,), W_std=1.4, b_std=0.3),
        stax.Relu(),
        stax.DotGeneral(rhs=_const((L - 1,), 12), dimension_numbers=(((1,), (0,)), ((), ()))),
        stax.Dense(4, W_std=1.2, b_std=0.1),
        stax.Erf(),
        stax.Dense(1),
    ),
    "lhs_contract": lambda: stax.serial(
        stax.Conv(8, (2,), W_std=1.1),
        stax.Gelu(),
        stax.DotGeneral(lhs=_const((L - 1,), 13), dimension_numbers=(((0,), (1,)), ((), ()))),
        stax.Dense(1, b_std=0.2),
    ),
    "index": lambda: stax.serial(
        stax.Conv(8, (2,), W_std=1.3, b_std=0.1),
        stax.Erf(),
        stax.Index(stax.Slice[:, ::-2]),
        stax.Conv(4, (1,), W_std=1.2),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(1),
    ),
}
SETTINGS = settings(
    deadline=None,
    max_examples=10,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def compiled(name):
    """``x -> (nngp, ntk)`` of ``kernel_fn(x, None)``, compiled once per net."""
    layer = PROPERTY_NETS[name]()
    return jax.jit(lambda x: tuple(layer.kernel_fn(x, None, get=("nngp", "ntk"))))


def grid_inputs(n):
    """Inputs on a coarse grid, so zeros and repeated rows occur."""
    cell = st.integers(-10, 10).map(lambda i: i / 5)
    return st.lists(cell, min_size=n * L * 2, max_size=n * L * 2).map(
        lambda v: jnp.asarray(v, dtype=jnp.float64).reshape(n, L, 2)
    )


@SETTINGS
@given(name=st.sampled_from(sorted(PROPERTY_NETS)), x=grid_inputs(N1 + N2))
def test_kernels_are_symmetric_psd_and_finite(name, x):
    for what, k in zip(("nngp", "ntk"), compiled(name)(x)):
        k = np.asarray(k)
        assert np.all(np.isfinite(k)), what
        assert np.max(np.abs(k - k.T)) <= 1e-13 * max(np.max(np.abs(k)), 1e-300), what
        eig = np.linalg.eigvalsh((k + k.T) / 2)
        # Round-off of a sum of O(1) float64 terms, relative to the largest.
        assert eig[0] >= -1e-10 * max(eig[-1], 0.0), (what, eig)


@pytest.mark.parametrize("name", sorted(PROPERTY_NETS))
def test_kernels_are_finite_at_zero_and_identical_inputs(name):
    row = _img(1, 14, (L, 2))
    for x in (jnp.zeros((N1, L, 2)), jnp.concatenate([row] * N1)):
        for what, k in zip(("nngp", "ntk"), compiled(name)(x)):
            k = np.asarray(k)
            assert np.all(np.isfinite(k)), what
            if x.any():  # identical inputs: every entry equals the variance
                np.testing.assert_allclose(k, k[0, 0], rtol=1e-13, err_msg=what)


# ------------------------------------------------------------ empirical NTK

EMPIRICAL_NETS = {
    # Spatial only: examples stay independent, so vmap over the batch is valid.
    "spatial": (
        lambda: stax.serial(
            stax.Conv(3, (2, 2), padding="SAME", b_std=0.1),
            stax.Relu(),
            stax.DotGeneral(rhs=_const((3,), 15), dimension_numbers=(((1,), (0,)), ((), ()))),
            stax.Index(stax.Slice[:, 1:]),
            stax.DotGeneral(lhs=_const((3,), 16), dimension_numbers=(((0,), (1,)), ((), ()))),
            stax.Dense(2, W_std=1.2, b_std=0.2),
        ),
        (3, 4, 2),
        0,
    ),
    # A per-example constant: the batch must not be vmapped (it has N rows).
    "per_example": (
        lambda: stax.serial(
            stax.Dense(4, b_std=0.1),
            stax.Erf(),
            stax.DotGeneral(rhs=_const((N,), 17), dimension_numbers=(((), ()), ((0,), (0,)))),
            stax.Dense(2, parameterization="standard"),
        ),
        (5,),
        None,
    ),
    # Reordering and subsampling the batch after a parameterised layer.
    "batch_index": (
        lambda: stax.serial(
            stax.Dense(4, b_std=0.1),
            stax.Erf(),
            stax.Index(stax.Slice[::-1]),
            stax.Dense(2, W_std=1.3),
        ),
        (5,),
        None,
    ),
    "batch_subsample": (
        lambda: stax.serial(
            stax.Dense(4, b_std=0.1),
            stax.Erf(),
            stax.Index(stax.Slice[::2]),
            stax.Dense(2, W_std=1.3),
        ),
        (5,),
        None,
    ),
}
IMPLS = (
    NtkImplementation.JACOBIAN_CONTRACTION,
    NtkImplementation.NTK_VECTOR_PRODUCTS,
    NtkImplementation.STRUCTURED_DERIVATIVES,
)


def _brute_force_ntk(f, params, x1, x2):
    """``(1/O) Σ_o ⟨∂f(x1)_{i,o}, ∂f(x2)_{j,o}⟩`` (logits traced, i.e. averaged,
    as NT's default ``trace_axes=(-1,)``) from explicit Jacobians."""
    jac = jax.jit(jax.jacrev(f))
    j1, j2 = jac(params, x1), jac(params, x2)
    n_out = jax.eval_shape(f, params, x1).shape[-1]
    return (
        sum(
            np.einsum(
                "iop,jop->ij",
                np.asarray(a).reshape(a.shape[:2] + (-1,)),
                np.asarray(b).reshape(b.shape[:2] + (-1,)),
            )
            for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2))
        )
        / n_out
    )


# The structured method pairs site row n with output row n (it pulls back one
# cotangent broadcast over the batch), so it holds only if output example n
# depends on input example n alone. An Index that reorders or subsamples the
# batch declares per_example=False and the structured request falls back to
# Jacobian contraction: these cases check that the answer stays exact.
@pytest.mark.parametrize(
    "name,impl",
    [(name, impl) for name in EMPIRICAL_NETS for impl in IMPLS],
    ids=lambda v: getattr(v, "name", v),
)
def test_empirical_ntk_matches_brute_force(name, impl):
    make, shape, vmap_axes = EMPIRICAL_NETS[name]
    net = make()
    x1, x2 = _img(N, 18, shape), _img(N, 19, shape)
    _, params = net.init_fn(jax.random.PRNGKey(1), x1.shape)
    want = _brute_force_ntk(net.apply_fn, params, x1, x2)
    got = empirical_ntk_fn(net, vmap_axes=vmap_axes, implementation=impl)(x1, x2, params)
    err = np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want))
    # Exact up to float64 round-off in differently ordered sums.
    assert err <= 1e-10, err


# ----------------------------------------------------------------- errors

IMG = _img(N, 20)  # (3, 3, 4, 2)


def _kernel_error(layer, x2=None):
    return lambda: layer.kernel_fn(IMG, x2)


ERRORS = {
    "index_channel": (
        _kernel_error(stax.Index(stax.Slice[..., :1])),
        UnsupportedAxisError,
        "channel axis",
    ),
    "index_batch_int": (
        _kernel_error(stax.Index(stax.Slice[0])),
        UnsupportedAxisError,
        "batch axis with an int",
    ),
    "index_out_of_range": (
        _kernel_error(stax.Index(stax.Slice[:, 3])),
        ValueError,
        "out of range for axis 1",
    ),
    "index_too_many": (
        _kernel_error(stax.Index(stax.Slice[:, :, :, :, :])),
        ValueError,
        "indexes 5 axes",
    ),
    "index_empty": (_kernel_error(stax.Index(stax.Slice[:, 3:])), ValueError, "selects no entries"),
    "index_none": (lambda: stax.Index(stax.Slice[:, None]), TypeError, "`idx`"),
    "index_float": (lambda: stax.Index(1.5), TypeError, "`idx`"),
    "index_two_ellipses": (lambda: stax.Index(stax.Slice[..., 0, ...]), ValueError, "at most one"),
    "index_zero_step": (lambda: stax.Index(stax.Slice[::0]), ValueError, "step"),
    "index_batch_axis": (
        lambda: stax.Index(stax.Slice[:], batch_axis=1),
        ValueError,
        "batch_axis=0",
    ),
    "dot_both_constants": (lambda: stax.DotGeneral(lhs=1.0, rhs=2.0), ValueError, "at most one"),
    "dot_contract_channel": (
        _kernel_error(stax.DotGeneral(rhs=np.ones(2), dimension_numbers=(((3,), (0,)), ((), ())))),
        UnsupportedAxisError,
        "channel axis",
    ),
    "dot_batch_channel": (
        _kernel_error(
            stax.DotGeneral(rhs=np.ones((3, 2)), dimension_numbers=(((), ()), ((0, 3), (0, 1))))
        ),
        UnsupportedAxisError,
        "channel axis",
    ),
    "dot_contract_batch": (
        _kernel_error(stax.DotGeneral(rhs=np.ones(3), dimension_numbers=(((0,), (0,)), ((), ())))),
        UnsupportedAxisError,
        "contracting the batch axis",
    ),
    "dot_batch_spatial_only": (
        _kernel_error(stax.DotGeneral(rhs=np.ones(3), dimension_numbers=(((), ()), ((1,), (0,))))),
        UnsupportedAxisError,
        "before the batch axis",
    ),
    "dot_rhs_free_axis": (
        _kernel_error(
            stax.DotGeneral(rhs=np.ones((3, 5)), dimension_numbers=(((1,), (0,)), ((), ())))
        ),
        UnsupportedAxisError,
        "channel axis, which must stay last",
    ),
    "dot_lhs_free_axis": (
        _kernel_error(
            stax.DotGeneral(lhs=np.ones((5, 3)), dimension_numbers=(((1,), (1,)), ((), ())))
        ),
        UnsupportedAxisError,
        "batch axis, which must stay first",
    ),
    "dot_per_example_size": (
        _kernel_error(
            stax.DotGeneral(rhs=np.ones(3), dimension_numbers=(((), ()), ((0,), (0,)))), _img(2, 21)
        ),
        ValueError,
        "x2.*batch size",
    ),
    "dot_size_mismatch": (
        _kernel_error(stax.DotGeneral(rhs=np.ones(5), dimension_numbers=(((2,), (0,)), ((), ())))),
        ValueError,
        "dimension 2 of `x1`",
    ),
    "dot_out_of_range": (
        _kernel_error(stax.DotGeneral(rhs=np.ones(3), dimension_numbers=(((7,), (0,)), ((), ())))),
        ValueError,
        "rank 4",
    ),
    "dot_negative_dims": (
        lambda: stax.DotGeneral(rhs=np.ones(4), dimension_numbers=(((-2,), (0,)), ((), ()))),
        ValueError,
        "non-negative",
    ),
    "dot_malformed_dims": (
        lambda: stax.DotGeneral(rhs=np.ones(4), dimension_numbers=(1, 2)),
        ValueError,
        "dimension_numbers",
    ),
    "dot_unpaired_dims": (
        lambda: stax.DotGeneral(rhs=np.ones(4), dimension_numbers=(((1, 2), (0,)), ((), ()))),
        ValueError,
        "one to one",
    ),
    "dot_dims_without_constant": (
        lambda: stax.DotGeneral(dimension_numbers=(((1,), (0,)), ((), ()))),
        ValueError,
        "neither",
    ),
    "dot_complex_constant": (lambda: stax.DotGeneral(rhs=1j), TypeError, "`rhs`"),
    "dot_precision": (lambda: stax.DotGeneral(rhs=2.0, precision=3), ValueError, "`precision`"),
    "dot_channel_axis": (
        lambda: stax.DotGeneral(rhs=2.0, channel_axis=1),
        ValueError,
        "channel_axis=-1",
    ),
    "dot_contract_diagonal_layout": (
        lambda: stax.DotGeneral(
            rhs=np.ones(3), dimension_numbers=(((1,), (0,)), ((), ()))
        ).kernel_fn(inputs_to_kernel(IMG, None, diagonal_spatial=True, compute_ntk=False)),
        ValueError,
        "diagonal_spatial=False",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_arguments_raise_clear_errors(case):
    call, exc, message = ERRORS[case]
    with pytest.raises(exc, match=message):
        call()


def test_axis_restrictions_are_both_value_and_not_implemented_errors():
    # NT raises NotImplementedError (Index) or ValueError (DotGeneral) here.
    assert issubclass(UnsupportedAxisError, ValueError)
    assert issubclass(UnsupportedAxisError, NotImplementedError)


def test_finite_network_may_index_and_contract_the_channel_axis():
    # Only the kernel regime restricts the channel axis, as in NT.
    x = np.asarray(IMG)
    np.testing.assert_array_equal(stax.Index(stax.Slice[..., :1]).apply_fn((), IMG), x[..., :1])
    layer = stax.DotGeneral(rhs=np.array([1.0, -1.0]), dimension_numbers=(((3,), (0,)), ((), ())))
    np.testing.assert_allclose(layer.apply_fn((), IMG), x[..., 0] - x[..., 1])
    assert layer.init_fn(None, IMG.shape)[0] == IMG.shape[:3]


@pytest.mark.parametrize(
    "idx,keeps",
    [
        (stax.Slice[:, 1:], True),
        (stax.Slice[...], True),
        (stax.Slice[..., :], True),
        ((), True),
        (stax.Slice[::-1], False),
        (stax.Slice[1:], False),
        (stax.Slice[..., 1:, :], False),
    ],
)
def test_index_declares_whether_it_keeps_examples_apart(idx, keeps):
    # An ellipsis before two named axes may cover zero axes (then the first
    # named one is the batch axis), so it is conservatively not per-example.
    assert specs.per_example(stax.Index(idx)) is keeps


def test_auto_avoids_the_structured_method_when_a_layer_mixes_examples():
    make, shape, _ = EMPIRICAL_NETS["batch_index"]
    net = make()
    x = _img(N, 21, shape)
    _, params = net.init_fn(jax.random.PRNGKey(2), x.shape)
    assert auto_implementation(net, x, None, params) != NtkImplementation.STRUCTURED_DERIVATIVES
    make, shape, _ = EMPIRICAL_NETS["spatial"]
    net = make()
    x = _img(N, 22, shape)
    _, params = net.init_fn(jax.random.PRNGKey(3), x.shape)
    assert auto_implementation(net, x, None, params) == NtkImplementation.STRUCTURED_DERIVATIVES
