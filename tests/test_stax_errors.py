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
        r"expected one of \('nngp', 'ntk', 'cov1', 'cov2'\)",
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


@pytest.mark.parametrize("n", [0, -3, 2.0, "2"])
def test_repeat_rejects_invalid_n(n):
    with pytest.raises(
        ValueError,
        match=r"repeat: `n` must be a positive int; "
        r"got " + re.escape(repr(n)),
    ):
        stax.repeat(stax.Dense(3), n)


def test_combinators_reject_non_layers():
    with pytest.raises(TypeError, match=r"stax combinators take layers.*got int"):
        stax.serial(stax.Dense(3), 3)
