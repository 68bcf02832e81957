"""Bad input fails at the boundary with a clear error.

Each error must be a ``ValueError`` (``TypeError`` for a wrong type) whose
message names the layer or argument, what was expected and what arrived —
never a shape error from inside XLA. The messages are matched by content.
(Conv/pooling errors live in the convolution tests.)
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax

NET = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
NET_NAME = r"serial\(Dense\(8\), Relu, Dense\(1\)\)"
X = np.ones((3, 4))


# --------------------------------------------------------------- inputs


@pytest.mark.parametrize("x2_shape", [(2, 5), (2, 4, 1), (4,)])
def test_mismatched_x1_x2_feature_shapes(x2_shape):
    pattern = (
        NET_NAME + r": `x1` and `x2` must agree in all but the batch axis; "
        r"got x1 \(3, 4\) and x2 " + re.escape(repr(x2_shape))
    )
    with pytest.raises(ValueError, match=pattern):
        NET.kernel_fn(X, np.ones(x2_shape))


@pytest.mark.parametrize("x1", [np.ones(4), np.float64(2.0)], ids=["rank1", "rank0"])
def test_input_of_rank_below_two(x1):
    shape = re.escape(repr(tuple(np.shape(x1))))
    with pytest.raises(
        ValueError,
        match=NET_NAME + r": `x1` must have shape "
        r"\(batch, \.\.\., features\) with rank >= 2; got shape " + shape,
    ):
        NET.kernel_fn(x1)


def test_bfloat16_inputs_are_numbers_not_type_errors():
    # numpy does not count ml_dtypes' bfloat16 as a number; the check did.
    x = np.random.default_rng(0).normal(size=(3, 4))
    got = NET.kernel_fn(jnp.asarray(x, jnp.bfloat16), None, "nngp")
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(np.float32), NET.kernel_fn(x, None, "nngp"), rtol=3e-2)


def test_input_without_features_is_rejected():
    """``(N, 0)`` inputs have no features: the input kernel x x'ᵀ / C is 0/0.
    Today this silently returns an all-NaN kernel."""
    with pytest.raises(ValueError, match=r"`x1`.*feature.*\(3, 0\)"):
        NET.kernel_fn(np.ones((3, 0)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("arg", ["x1", "x2"])
def test_non_finite_inputs_outside_jit(bad, arg):
    x_bad = X.copy()
    x_bad[1, 2] = bad
    x1, x2 = (x_bad, None) if arg == "x1" else (X, x_bad)
    with pytest.raises(
        ValueError,
        match=NET_NAME + rf": `{arg}` must be finite; "
        r"got 1 NaN/inf entries of 12",
    ):
        NET.kernel_fn(x1, x2)


def test_non_finite_inputs_under_jit_are_not_checked_but_propagate():
    """Inside jit values are abstract: no error, and the NaN is not hidden."""
    x_bad = X.copy()
    x_bad[0, 0] = np.nan
    out = jax.jit(lambda x: NET.kernel_fn(x, get="nngp"))(x_bad)
    assert np.isnan(out[0, 0])


@pytest.mark.parametrize(
    "x1,dtype",
    [(np.array([["a", "b"]]), "<U1"), (np.ones((2, 3), bool), "bool")],
    ids=["str", "bool"],
)
def test_non_numeric_inputs_are_type_errors(x1, dtype):
    with pytest.raises(
        TypeError,
        match=NET_NAME + r": `x1` must be a numeric "
        rf"array; got dtype {dtype}",
    ):
        NET.kernel_fn(x1)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("arg", ["x1", "x2"])
def test_complex_inputs_are_type_errors(arg, dtype):
    """The kernels are second moments of real networks: a complex input is
    rejected, not silently cast to its real part."""
    x_complex = X.astype(dtype)
    x1, x2 = (x_complex, None) if arg == "x1" else (X, x_complex)
    with pytest.raises(
        TypeError,
        match=NET_NAME + rf": `{arg}` must be real .*got dtype {np.dtype(dtype).name}",
    ):
        NET.kernel_fn(x1, x2)


# ------------------------------------------------------------------ get


@pytest.mark.parametrize(
    "get,bad", [("nngq", "nngq"), (("nngp", "foo"), "foo")], ids=["str", "tuple"]
)
def test_unknown_get_name(get, bad):
    with pytest.raises(
        ValueError,
        match=rf"kernel_fn: unknown `get` name '{bad}'; "
        r"expected one of \('nngp', 'ntk', 'cov1', 'cov2', 'shape1', 'shape2'\)",
    ):
        NET.kernel_fn(X, get=get)


@pytest.mark.parametrize("get", [(), 3], ids=["empty", "int"])
def test_malformed_get(get):
    with pytest.raises(
        ValueError,
        match=r"kernel_fn: `get` must be None, a name or "
        r"a non-empty tuple of names.*got " + re.escape(repr(get)),
    ):
        NET.kernel_fn(X, get=get)


def test_unknown_get_name_on_kernel_input():
    """The check also guards the Kernel -> Kernel path used by combinators."""
    k = stax.Dense(3).kernel_fn(X)
    with pytest.raises(ValueError, match=r"unknown `get` name 'nngq'"):
        stax.Relu().kernel_fn(k, get="nngq")


# --------------------------------------------------------- hyperparameters


@pytest.mark.parametrize("arg", ["W_std", "b_std"])
@pytest.mark.parametrize("value", [-1.0, -1e-3, float("nan")])
def test_dense_rejects_negative_or_nan_std(arg, value):
    with pytest.raises(ValueError, match=rf"Dense\(8\): `{arg}` must be >= 0; got {value}"):
        stax.Dense(8, **{arg: value})


def test_dense_rejects_negative_std_given_as_concrete_array():
    with pytest.raises(ValueError, match=r"Dense\(8\): `W_std` must be >= 0; got -1.0"):
        stax.Dense(8, W_std=jnp.asarray(-1.0))


@pytest.mark.parametrize("value", [[1.0, 2.0], "1", jnp.ones(2)], ids=["list", "str", "vector"])
def test_dense_rejects_non_scalar_std(value):
    """A std must be a scalar. Today a list or string passes construction and
    fails inside the kernel with `unsupported operand type(s) for **`, and a
    length-2 array is silently broadcast against the kernel's columns."""
    with pytest.raises((TypeError, ValueError), match=r"Dense\(8\): `W_std` must be"):
        stax.Dense(8, W_std=value)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"out_dim": 0}, r"Dense\(0\): `out_dim` must be a positive int; got 0"),
        (
            {"out_dim": 8, "parameterization": "foo"},
            r"Dense\(8\): `parameterization` must be one of \('ntk', 'standard'\); got 'foo'",
        ),
    ],
    ids=["out_dim", "parameterization"],
)
def test_dense_rejects_bad_configuration(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        stax.Dense(**kwargs)


def test_dense_apply_fn_rejects_wrong_feature_count():
    _, params = NET.init_fn(jax.random.PRNGKey(0), (3, 4))
    with pytest.raises(
        ValueError,
        match=r"Dense\(8\): expected inputs with 4 features "
        r"\(last axis\); got shape \(3, 5\)",
    ):
        NET.apply_fn(params, np.ones((3, 5)))


# ----------------------------------------------------------- activations

GAUSSIAN_MSG = (
    r"the input of an activation must be Gaussian, i\.e\. come from an "
    r"affine layer.*got a kernel that is not"
)


@pytest.mark.parametrize("act", [stax.Relu, stax.Erf, stax.Gelu, stax.Sign])
def test_activation_after_activation(act):
    net = stax.serial(stax.Dense(8), stax.Relu(), act())
    with pytest.raises(ValueError, match=re.escape(act().name) + ": " + GAUSSIAN_MSG):
        net.kernel_fn(X)


def test_activation_on_raw_inputs():
    with pytest.raises(ValueError, match="Relu: " + GAUSSIAN_MSG):
        stax.Relu().kernel_fn(X)


@pytest.mark.parametrize(
    "build,pattern",
    [
        (lambda: stax.Monomial(-1), r"Monomial: `degree` must be a non-negative int; got -1"),
        (lambda: stax.Hermite(1.5), r"Hermite: `degree` must be a non-negative int; got 1\.5"),
        (
            lambda: stax.ElementwiseNumerical(jnp.tanh, 0),
            r"ElementwiseNumerical: `deg` must be a positive int; got 0",
        ),
        (lambda: stax.Elementwise(), r"Elementwise: give `fn`.*and/or `nngp_fn`.*got neither"),
        (
            lambda: stax.RectifiedMonomial(-1),
            r"RectifiedMonomial: `degree` must be a non-negative int; got -1",
        ),
        (
            lambda: stax.RectifiedMonomial(2.0),
            r"RectifiedMonomial: `degree` must be a non-negative int; got 2\.0",
        ),
        (
            lambda: stax.ExpNormalized(gamma=-0.5),
            r"ExpNormalized: `gamma` must be a number "
            r">= 0; got -0\.5",
        ),
        (
            lambda: stax.ExpNormalized(shift=float("nan")),
            r"ExpNormalized: `shift` must be a finite real number; got nan",
        ),
        (
            lambda: stax.LeakyRelu(float("nan")),
            r"LeakyRelu: `alpha` must be a finite real number; got nan",
        ),
        (lambda: stax.Rbf(gamma=-1), r"Rbf: `gamma` must be a number >= 0; got -1\.0"),
    ],
    ids=[
        "monomial",
        "hermite",
        "numerical",
        "elementwise",
        "rectified_negative",
        "rectified_float",
        "exp_normalized_gamma",
        "exp_normalized_shift",
        "leaky_relu_nan_alpha",
        "rbf_negative_gamma",
    ],
)
def test_activation_configuration_errors(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


@pytest.mark.parametrize(
    "build,pattern",
    [
        (lambda: stax.ExpNormalized(do_clip=1), r"ExpNormalized: `do_clip` must be a bool; got 1"),
        (
            lambda: stax.ExpNormalized(gamma="2"),
            r"ExpNormalized: `gamma` must be a number "
            r">= 0; got '2'",
        ),
        (
            lambda: stax.ElementwiseNumerical(np.tanh),
            r"ElementwiseNumerical: `fn` must be a "
            r"JAX-traceable function.*np\.tanh.*TracerArrayConversionError",
        ),
        (
            lambda: stax.ElementwiseNumerical(jnp.tanh, df=lambda x: 1 - np.tanh(x) ** 2),
            r"ElementwiseNumerical: `df` must be a JAX-traceable function",
        ),
        (
            lambda: stax.Elementwise(jnp.tanh, lambda c12, c11, c22: np.arcsin(c12)),
            r"Elementwise: `nngp_fn` must be a JAX-traceable function",
        ),
    ],
    ids=["do_clip", "gamma_str", "numpy_fn", "numpy_df", "numpy_nngp_fn"],
)
def test_activation_argument_type_errors(build, pattern):
    with pytest.raises(TypeError, match=pattern):
        build()


def test_exp_normalized_has_no_finite_network():
    """Like neural-tangents: the kernel is not that of an elementwise φ."""
    net = stax.serial(stax.Dense(8), stax.ExpNormalized())
    _, params = net.init_fn(jax.random.PRNGKey(0), X.shape)
    with pytest.raises(NotImplementedError, match=r"ExpNormalized.*no finite-width `fn`"):
        net.apply_fn(params, X)


# ----------------------------------------------------------- combinators


@pytest.mark.parametrize("num", [0, -1, 1.5, "2"])
def test_fanout_rejects_invalid_num(num):
    with pytest.raises(
        ValueError,
        match=r"FanOut: `num` must be a positive int; "
        r"got " + re.escape(repr(num)),
    ):
        stax.FanOut(num)


@pytest.mark.parametrize("n", [-3, 2.0, "2", True])
def test_repeat_rejects_invalid_n(n):
    with pytest.raises(
        ValueError,
        match=r"repeat: `n` must be an int >= 0; "
        r"got " + re.escape(repr(n)),
    ):
        stax.repeat(stax.Dense(3), n)


def test_combinators_reject_non_layers():
    with pytest.raises(TypeError, match=r"stax combinators take layers.*got int"):
        stax.serial(stax.Dense(3), 3)


# ------------------------------------------------ keywords and call order


@pytest.mark.parametrize("typo", ["X_test", "patterns", "diagonal"])
def test_keyword_no_layer_reads_is_a_type_error(typo):
    # It used to be passed to every transform and dropped, silently giving
    # the kernel without it (e.g. `patterns=` for Aggregate's `pattern=`).
    with pytest.raises(
        TypeError,
        match=NET_NAME + rf": got unexpected keyword argument\(s\) `{typo}`; "
        r"the layers of this network read: mask_constant, rng\.",
    ):
        NET.kernel_fn(X, None, "nngp", **{typo: 1})


def test_keyword_read_by_a_sub_layer_is_accepted_and_named():
    net = stax.serial(stax.Dense(4), stax.Aggregate(), stax.Dense(1))
    x = np.ones((2, 3, 4))
    a = np.ones((2, 3, 3))
    with_pattern = net.kernel_fn(x, None, "nngp", pattern=(a, a))
    assert not np.allclose(with_pattern, net.kernel_fn(x, None, "nngp"))
    with pytest.raises(TypeError, match=r"read: mask_constant, pattern, rng\."):
        net.kernel_fn(x, None, "nngp", patterns=(a, a))


def test_layer_without_spec_may_read_any_keyword():
    custom = stax.make_layer(
        "Custom", lambda key, shape: (shape, ()), lambda p, x, **kw: x, lambda k, **kw: k
    )
    net = stax.serial(stax.Dense(2), custom)
    assert net.kernel_fn.keywords is None
    assert net.kernel_fn(X, None, "nngp", anything=1).shape == (3, 3)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(channel_axis=0), r"`channel_axis` must be -1 .*got 0\."),
        (dict(batch_axis=1), r"`batch_axis` must be 0 .*got 1\."),
        (dict(diagonal_batch=False), r"`diagonal_batch=False` is not supported"),
        (dict(diagonal_spatial="yes"), r"`diagonal_spatial` must be True, False or None"),
    ],
)
def test_nt_layout_keywords_other_than_ours_are_rejected(kwargs, pattern):
    with pytest.raises((ValueError, TypeError), match=NET_NAME + ": " + pattern):
        NET.kernel_fn(X, None, "nngp", **kwargs)


def test_nt_layout_keywords_naming_our_layout_change_nothing():
    want = NET.kernel_fn(X, None, "nngp")
    got = NET.kernel_fn(
        X, None, "nngp", channel_axis=1, batch_axis=0, diagonal_batch=True, diagonal_spatial=True
    )
    np.testing.assert_array_equal(got, want)


def test_diagonal_spatial_true_is_rejected_where_pooling_needs_cross_positions():
    net = stax.serial(stax.Conv(2, (2, 2), padding="SAME"), stax.GlobalAvgPool())
    with pytest.raises(ValueError, match=r"`diagonal_spatial=True` asks for same-position"):
        net.kernel_fn(np.ones((2, 3, 3, 1)), None, "nngp", diagonal_spatial=True)


def test_string_x2_suggests_get():
    with pytest.raises(TypeError, match=r"`x2` must be an array or None; got 'ntk' .*get"):
        NET.kernel_fn(X, "ntk")


@pytest.mark.parametrize("x2", [np.ones((2, 4)), "ntk"], ids=["array", "string"])
def test_kernel_input_with_x2_is_rejected(x2):
    k = stax.Dense(1).kernel_fn(X, None)
    with pytest.raises(TypeError, match=r"`x2` must be None when `x1` is a Kernel"):
        NET.kernel_fn(k, x2)


def test_apply_fn_with_swapped_arguments_names_the_order():
    _, params = NET.init_fn(jax.random.PRNGKey(0), X.shape)
    with pytest.raises(
        TypeError,
        match=NET_NAME + r": `params` must be the parameters init_fn returned, a tuple "
        r"of 3 entries \(one per layer\); got ndarray of shape \(3, 4\) "
        r"\(the arguments are apply_fn\(params, x\)\)",
    ):
        NET.apply_fn(X, params)


@pytest.mark.parametrize("params", [None, ((), ())], ids=["none", "too-few"])
def test_apply_fn_with_wrong_params_is_a_type_error(params):
    with pytest.raises(TypeError, match=NET_NAME + r": `params` must be the parameters"):
        NET.apply_fn(params, X)


def test_init_fn_given_the_inputs_asks_for_their_shape():
    with pytest.raises(TypeError, match=NET_NAME + r": init_fn\(key, input_shape\).*pass x\.shape"):
        NET.init_fn(jax.random.PRNGKey(0), X)


def test_init_fn_given_a_seed_asks_for_a_key():
    with pytest.raises(
        TypeError, match=NET_NAME + r": init_fn\(key, input_shape\): `key` must be a PRNG key"
    ):
        NET.init_fn(0, X.shape)
