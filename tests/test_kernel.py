"""The `Kernel` record: ``get`` semantics, pytree behaviour, the input kernel.

The input kernel is checked against brute-force loops (not einsum) in both
spatial layouts: full ``(N1, N2, H, H, W, W)`` (pairs of positions) and
diagonal ``(N1, N2, H, W)`` (same position only).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import Kernel, stax
from ntk.kernel import inputs_to_kernel

RNG = np.random.default_rng(5)
X1 = jnp.asarray(RNG.normal(size=(3, 4)))
X2 = jnp.asarray(RNG.normal(size=(2, 4)))
NET = stax.serial(stax.Dense(8, W_std=1.3, b_std=0.2), stax.Erf(), stax.Dense(1))


# ------------------------------------------------------------------ get


@pytest.mark.parametrize("x2", [None, X2], ids=["x2=None", "x2"])
def test_get_none_returns_kernel_with_all_fields(x2):
    k = NET.kernel_fn(X1, x2)
    n2 = 3 if x2 is None else 2
    assert isinstance(k, Kernel)
    assert k.nngp.shape == (3, n2) and k.ntk.shape == (3, n2) and k.cov1.shape == (3,)
    assert (k.cov2 is None) == (x2 is None) and k.x1_is_x2 == (x2 is None)
    if x2 is not None:
        assert k.cov2.shape == (2,)
    assert k.shape1 == (3, 1) and k.shape2 == (n2, 1)


@pytest.mark.parametrize("name", ["nngp", "ntk", "cov1", "cov2"])
def test_get_string_returns_that_array(name):
    k = NET.kernel_fn(X1, X2)
    out = NET.kernel_fn(X1, X2, get=name)
    assert isinstance(out, jax.Array)
    # Two compiled programs: XLA may fuse (and so round) them differently.
    np.testing.assert_allclose(out, getattr(k, name), rtol=4 * np.finfo(out.dtype).eps, atol=0)


@pytest.mark.parametrize("get", [("ntk", "nngp"), ("cov1",), ("nngp", "cov2", "ntk")])
def test_get_tuple_returns_namedtuple_with_those_fields_in_order(get):
    k = NET.kernel_fn(X1, X2)
    out = NET.kernel_fn(X1, X2, get=get)
    assert isinstance(out, tuple) and out._fields == get
    for name, value in zip(get, out):
        assert getattr(out, name) is value
        # Two compiled programs: XLA may fuse (and so round) them differently.
        np.testing.assert_allclose(value, getattr(k, name), rtol=4 * np.finfo(value.dtype).eps)


def test_get_nngp_alone_matches_full_computation():
    """Skipping the NTK (get='nngp') must not change the NNGP (beyond the
    rounding of a differently fused program)."""
    nngp = NET.kernel_fn(X1, X2, get="nngp")
    np.testing.assert_allclose(
        nngp, NET.kernel_fn(X1, X2, get=("nngp", "ntk")).nngp, rtol=4 * np.finfo(nngp.dtype).eps
    )


def test_get_cov2_is_none_when_x2_is_none():
    assert NET.kernel_fn(X1, get="cov2") is None


def test_get_applies_to_kernel_inputs_and_branch_lists():
    k = stax.Dense(5, W_std=1.1).kernel_fn(X1)
    assert isinstance(stax.Relu().kernel_fn(k, get="nngp"), jax.Array)
    outs = stax.FanOut(2).kernel_fn(k, get=("nngp",))
    assert isinstance(outs, list) and len(outs) == 2 and outs[0]._fields == ("nngp",)


# --------------------------------------------------------------- pytree


def _meta(k):
    return (k.shape1, k.shape2, k.diagonal_spatial, k.is_gaussian)


def test_kernel_is_a_pytree_of_its_arrays():
    k = stax.Dense(5).kernel_fn(X1, X2)
    leaves, treedef = jax.tree_util.tree_flatten(k)
    assert len(leaves) == 5  # nngp, ntk, cov1, cov2, chord (the input norms dropped)
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(back, Kernel) and _meta(back) == _meta(k)
    # cov2 None is an empty subtree, not a leaf
    assert len(jax.tree_util.tree_leaves(stax.Dense(5).kernel_fn(X1))) == 4


def test_tree_map_keeps_metadata():
    k = stax.Dense(5, W_std=1.2).kernel_fn(X1, X2)
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, k)
    assert isinstance(doubled, Kernel) and _meta(doubled) == _meta(k)
    np.testing.assert_allclose(doubled.nngp, 2 * k.nngp)
    np.testing.assert_allclose(doubled.cov2, 2 * k.cov2)


@pytest.mark.parametrize("x2", [None, X2], ids=["x2=None", "x2"])
def test_jit_round_trip_keeps_values_and_metadata(x2):
    k = stax.Dense(5, W_std=1.2, b_std=0.1).kernel_fn(X1, x2)
    out = jax.jit(lambda k: k)(k)
    assert isinstance(out, Kernel) and _meta(out) == _meta(k)
    for name in ("nngp", "ntk", "cov1", "cov2"):
        a, b = getattr(out, name), getattr(k, name)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_kernel_passes_through_jitted_layer_transform():
    """A Kernel can be the argument of a jitted kernel_fn (what combinators and
    user code do) and the metadata decides the static behaviour."""
    k = stax.Dense(5, W_std=1.2, b_std=0.1).kernel_fn(X1, X2)
    assert k.is_gaussian
    out = jax.jit(stax.Relu().kernel_fn)(k)
    assert isinstance(out, Kernel) and not out.is_gaussian
    np.testing.assert_allclose(out.nngp, stax.Relu().kernel_fn(k).nngp, rtol=1e-14)


# --------------------------------------------------------- input kernel


@pytest.mark.parametrize("x2", [None, X2], ids=["x2=None", "x2"])
def test_input_kernel_of_vectors_is_gram_over_features(x2):
    """Identity passes the input kernel through: ``x1 x2ᵀ / C``, NTK 0."""
    k = stax.Identity().kernel_fn(X1, x2)
    a, b = np.asarray(X1), np.asarray(X1 if x2 is None else x2)
    np.testing.assert_allclose(k.nngp, a @ b.T / 4, rtol=1e-14)
    np.testing.assert_allclose(k.cov1, np.sum(a * a, 1) / 4, rtol=1e-14)
    if x2 is not None:
        np.testing.assert_allclose(k.cov2, np.sum(b * b, 1) / 4, rtol=1e-14)
    np.testing.assert_array_equal(k.ntk, np.zeros_like(k.nngp))
    assert not k.is_gaussian


def _brute_full(a, b):
    """``K[i, j, h, h', w, w'] = Σ_c a[i, h, w, c] b[j, h', w', c] / C``."""
    n1, H, W, C = a.shape
    n2 = b.shape[0]
    out = np.zeros((n1, n2, H, H, W, W))
    for i, j, h, hh, w, ww in itertools.product(
        range(n1), range(n2), range(H), range(H), range(W), range(W)
    ):
        out[i, j, h, hh, w, ww] = a[i, h, w] @ b[j, hh, ww] / C
    return out


def _brute_diag(a, b):
    """``K[i, j, h, w] = Σ_c a[i, h, w, c] b[j, h, w, c] / C``."""
    n1, H, W, C = a.shape
    out = np.zeros((n1, b.shape[0], H, W))
    for i, j, h, w in itertools.product(range(n1), range(b.shape[0]), range(H), range(W)):
        out[i, j, h, w] = a[i, h, w] @ b[j, h, w] / C
    return out


IMG1 = RNG.normal(size=(2, 3, 2, 5))
IMG2 = RNG.normal(size=(3, 3, 2, 5))


@pytest.mark.parametrize("diagonal_spatial", [False, True])
@pytest.mark.parametrize("with_x2", [False, True])
def test_input_kernel_of_images_in_both_layouts(diagonal_spatial, with_x2):
    x2 = IMG2 if with_x2 else None
    k = inputs_to_kernel(
        jnp.asarray(IMG1),
        None if x2 is None else jnp.asarray(x2),
        diagonal_spatial=diagonal_spatial,
        compute_ntk=True,
    )
    brute = _brute_diag if diagonal_spatial else _brute_full
    other = IMG1 if x2 is None else x2
    np.testing.assert_allclose(k.nngp, brute(IMG1, other), rtol=1e-13)
    # cov1[i] is the (i, i) block of the kernel of x1 with itself
    self1 = brute(IMG1, IMG1)
    np.testing.assert_allclose(k.cov1, np.stack([self1[i, i] for i in range(2)]), rtol=1e-13)
    if with_x2:
        self2 = brute(IMG2, IMG2)
        np.testing.assert_allclose(k.cov2, np.stack([self2[i, i] for i in range(3)]), rtol=1e-13)
    else:
        assert k.cov2 is None
    assert k.ntk.shape == k.nngp.shape and not np.any(k.ntk)
    assert k.diagonal_spatial == diagonal_spatial
    assert k.shape1 == IMG1.shape and k.shape2 == (IMG1 if x2 is None else x2).shape


@pytest.mark.parametrize("diagonal_spatial", [False, True])
def test_input_kernel_of_1d_signals(diagonal_spatial):
    a, b = RNG.normal(size=(2, 4, 3)), RNG.normal(size=(3, 4, 3))
    k = inputs_to_kernel(
        jnp.asarray(a), jnp.asarray(b), diagonal_spatial=diagonal_spatial, compute_ntk=False
    )
    if diagonal_spatial:
        expected = np.einsum("ilc,jlc->ijl", a, b) / 3
    else:
        expected = np.stack([[a[i] @ b[j].T / 3 for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(k.nngp, expected, rtol=1e-13)
    assert k.ntk is None


def test_public_kernel_fn_of_images_uses_the_diagonal_layout():
    """Without pooling only same-position covariances are needed."""
    k = stax.Identity().kernel_fn(jnp.asarray(IMG1), jnp.asarray(IMG2))
    assert k.diagonal_spatial
    np.testing.assert_allclose(k.nngp, _brute_diag(IMG1, IMG2), rtol=1e-13)


def test_flattened_image_kernel_is_gram_of_flattened_vectors():
    """Flatten averages same-position covariances: ``vec(x) vec(x')ᵀ / (HWC)``."""
    k = stax.Flatten().kernel_fn(jnp.asarray(IMG1), jnp.asarray(IMG2))
    a, b = IMG1.reshape(2, -1), IMG2.reshape(3, -1)
    np.testing.assert_allclose(k.nngp, a @ b.T / a.shape[1], rtol=1e-13)
    np.testing.assert_allclose(k.cov1, np.sum(a * a, 1) / a.shape[1], rtol=1e-13)


def test_variances_and_outer_vars_broadcast_against_nngp():
    k = inputs_to_kernel(
        jnp.asarray(IMG1), jnp.asarray(IMG2), diagonal_spatial=False, compute_ntk=False
    )
    var1 = np.sum(IMG1**2, -1) / 5
    var2 = np.sum(IMG2**2, -1) / 5
    np.testing.assert_allclose(k.var1(), var1, rtol=1e-13)
    np.testing.assert_allclose(k.var2(), var2, rtol=1e-13)
    (a12, b12), (a11, b11), (a22, b22) = k.outer_vars()
    assert np.broadcast_shapes(a12.shape, b12.shape) == k.nngp.shape
    # a12[i, ., h, ., w, .] = var1[i, h, w]; b12[., j, ., h', ., w'] = var2[j, h', w']
    np.testing.assert_allclose(
        np.broadcast_to(a12, k.nngp.shape)[1, 2, 0, 1, 1, 0], var1[1, 0, 1], rtol=1e-13
    )
    np.testing.assert_allclose(
        np.broadcast_to(b12, k.nngp.shape)[1, 2, 0, 1, 1, 0], var2[2, 1, 0], rtol=1e-13
    )
    assert np.broadcast_shapes(a11.shape, b11.shape) == k.cov1.shape
    assert np.broadcast_shapes(a22.shape, b22.shape) == k.cov2.shape


# ------------------------------------------------------------ chords
# Vector kernels carry 2(sqrt(c11 c22) - c12) (`Kernel.chord`) for the angle
# of nearly collinear inputs; these check that it is the inputs' chord and
# that no layer can carry it onto kernels it changed.


@pytest.mark.parametrize("features", [3, 40], ids=["from-directions", "from-gram"])
def test_input_chord_is_the_chord_and_zero_between_duplicates(features):
    x = RNG.normal(size=(5, features)).astype(np.float32)
    x2 = np.concatenate([x[[3, 1]], RNG.normal(size=(2, features)).astype(np.float32)])
    k = inputs_to_kernel(jnp.asarray(x), jnp.asarray(x2), diagonal_spatial=True, compute_ntk=False)
    x64, y64 = x.astype(np.float64), x2.astype(np.float64)
    norms = np.linalg.norm(x64, axis=1)[:, None] * np.linalg.norm(y64, axis=1)[None]
    exact = 2 * (norms - x64 @ y64.T) / features
    np.testing.assert_allclose(k.chord, exact, rtol=64 * np.finfo(np.float32).eps, atol=1e-12)
    assert k.chord[3, 0] == 0 and k.chord[1, 1] == 0  # duplicated rows, exactly
    same = inputs_to_kernel(jnp.asarray(x), None, diagonal_spatial=True, compute_ntk=False)
    assert np.all(np.diag(same.chord) == 0)


def test_input_chord_is_zero_along_a_ray_and_resolves_inputs_of_different_norms():
    """Inputs along one ray (x, 2x) have chord exactly 0; 1-D inputs 30 and
    90 with a bias differ in angle by 7e-4 rad, which the chord keeps right
    to rounding through Dense (float32 against float64), where the squared
    distance (dominated by the norms' difference) loses it."""
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    k = inputs_to_kernel(
        jnp.asarray(x), jnp.asarray(2 * x), diagonal_spatial=True, compute_ntk=False
    )
    assert np.all(np.diag(k.chord) == 0)
    dense = stax.Dense(8, W_std=1.5, b_std=0.05).kernel_fn
    xs = np.array([[30.0], [90.0]])
    k32, k64 = (
        dense(inputs_to_kernel(jnp.asarray(xs, t), None, diagonal_spatial=True, compute_ntk=False))
        for t in (jnp.float32, jnp.float64)
    )
    chord64 = 2 * (np.sqrt(k64.cov1[:, None] * k64.cov1[None, :]) - k64.nngp)
    np.testing.assert_allclose(k64.chord, chord64, rtol=1e-9, atol=0)
    np.testing.assert_allclose(k32.chord, k64.chord, rtol=8 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("features", [3, 40], ids=["from-directions", "from-gram"])
def test_input_gradients_through_the_chord_are_finite_at_a_zero_input(features):
    """A zero row has √c_ii = 0, where the derivative of the square root is
    not finite; the chord takes the norms from the inputs instead."""
    x = jnp.asarray(RNG.normal(size=(4, features))).at[1].set(0.0)
    _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=1.3, b_std=0.2), stax.Relu(), stax.Dense(1))
    g = jax.grad(lambda x: jnp.sum(kernel_fn(x, None, "ntk")))(x)
    assert np.all(np.isfinite(g))


def test_input_kernels_of_images_and_masked_inputs_carry_no_chords():
    images = jnp.asarray(RNG.normal(size=(2, 3, 3, 2)))
    assert inputs_to_kernel(images, None, diagonal_spatial=True, compute_ntk=False).chord is None
    masked = inputs_to_kernel(X1, X2, diagonal_spatial=True, compute_ntk=False, mask_constant=0.0)
    assert masked.chord is None


def test_replacing_a_covariance_drops_the_chord_unless_it_is_passed_too():
    k = inputs_to_kernel(X1, X2, diagonal_spatial=True, compute_ntk=True)
    assert k.chord is not None
    for field in ("nngp", "cov1", "cov2"):
        assert k.replace(**{field: 2 * getattr(k, field)}).chord is None
    assert k.replace(nngp=2 * k.nngp, chord=2 * k.chord).chord is not None
    assert k.replace(ntk=k.nngp, shape1=(3, 9)).chord is k.chord


@pytest.mark.parametrize(
    "layer,tracked",
    [
        (stax.Dense(8, W_std=1.3, b_std=0.2), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.Relu()), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.Sign()), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.Erf()), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.Sin(1.3, 0.7, 0.4)), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.Rbf(0.3)), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.Gaussian()), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.Gabor()), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.ExpNormalized()), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.RectifiedMonomial(0)), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.RectifiedMonomial(1)), True),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.RectifiedMonomial(2)), False),
        (stax.serial(stax.Dense(8, b_std=0.2), stax.Gelu()), False),
        (
            stax.serial(
                stax.FanOut(2), stax.parallel(stax.Dense(4), stax.Identity()), stax.FanInSum()
            ),
            True,
        ),
        (
            stax.serial(
                stax.FanOut(2),
                stax.parallel(
                    stax.serial(stax.Dense(8, b_std=0.2), stax.Relu()),
                    stax.serial(stax.Dense(8, W_std=1.3, b_std=0.4), stax.Erf()),
                ),
                stax.FanInProd(),
            ),
            True,
        ),
        (
            stax.serial(
                stax.FanOut(3),
                stax.parallel(
                    stax.Dense(8, b_std=0.2), stax.Dense(8, W_std=0.7), stax.Dense(8, b_std=0.9)
                ),
                stax.FanInProd(),
            ),
            True,
        ),
        (
            stax.serial(
                stax.FanOut(2),
                stax.parallel(
                    stax.serial(stax.Dense(8, b_std=0.2), stax.Relu()),
                    stax.Dense(3, W_std=0.7, b_std=0.5),
                ),
                stax.FanInConcat(),
            ),
            True,
        ),
        (
            stax.serial(
                stax.FanOut(2),
                stax.parallel(stax.serial(stax.Dense(8), stax.Gelu()), stax.Dense(8)),
                stax.FanInProd(),
            ),
            False,
        ),
        (stax.serial(stax.Dense(8, b_std=0.3), stax.LayerNorm()), True),
        (stax.serial(stax.Dense(8, b_std=0.3), stax.LayerNorm(eps=0.5)), True),
        (stax.serial(stax.Dense(8), stax.Gelu(), stax.Dense(8), stax.LayerNorm()), False),
    ],
    ids=[
        "Dense",
        "Relu",
        "Sign",
        "Erf",
        "Sin",
        "Rbf",
        "Gaussian",
        "Gabor",
        "ExpNormalized",
        "RectifiedMonomial(0)",
        "RectifiedMonomial(1)",
        "RectifiedMonomial(2)",
        "Gelu",
        "residual",
        "product",
        "product of three",
        "concatenation",
        "product with a Gelu branch",
        "LayerNorm",
        "LayerNorm(eps=0.5)",
        "LayerNorm after Gelu",
    ],
)
def test_layers_carry_the_chord_only_where_they_know_it(layer, tracked):
    """Where it is carried it equals 2(sqrt(c11 c22) - c12) of the layer's
    own output (float64, random inputs: no cancellation to speak of)."""
    k = layer.kernel_fn(X1, X2)
    assert (k.chord is not None) == tracked
    if tracked:
        chord = 2 * (np.sqrt(k.cov1[:, None] * k.cov2[None, :]) - k.nngp)
        np.testing.assert_allclose(k.chord, chord, rtol=1e-12, atol=1e-14)


GRADIENT_ACTIVATIONS = {
    "Relu": (stax.Relu(), "ntk"),
    "LeakyRelu": (stax.LeakyRelu(0.2), "ntk"),
    "Sign": (stax.Sign(), "nngp"),
    "Erf": (stax.Erf(1.3, 0.8, 0.1), "ntk"),
    "Sin": (stax.Sin(1.3, 0.7, 0.4), "ntk"),
    "Rbf": (stax.Rbf(0.3), "ntk"),
    "Gaussian": (stax.Gaussian(1.2, -0.35), "ntk"),
    "Gabor": (stax.Gabor(), "ntk"),
    "ExpNormalized": (stax.ExpNormalized(0.8, -0.5), "ntk"),
    "RectifiedMonomial(0)": (stax.RectifiedMonomial(0), "nngp"),
    "RectifiedMonomial(1)": (stax.RectifiedMonomial(1), "ntk"),
    "LayerNorm, Relu": (stax.serial(stax.LayerNorm(eps=0.1), stax.Relu()), "ntk"),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_ACTIVATIONS))
def test_gradients_through_chords_equal_those_through_the_nngp(name):
    """Input gradients of the NTK (NNGP where the derivative kernel is 0)
    with the angle taken from the chords (closed-form derivatives,
    `_one_minus_rho`) against the same network with the chords dropped at
    the input (float64; random inputs, two of them 1e-3 from others). At
    those close pairs the NNGP's own
    angle is the less accurate one, to ~eps/θ² = 2e-10 per layer; a wrong
    derivative would be off by O(1). Compiled, as a user runs them (the
    suite's XLA flags once miscompiled exactly this: see conftest.py)."""
    act, get = GRADIENT_ACTIVATIONS[name]
    _, _, kernel_fn = stax.serial(
        stax.Dense(8, W_std=1.4, b_std=0.3), act, stax.Dense(8, W_std=1.2, b_std=0.1), act
    )

    def loss(x, track):
        k = inputs_to_kernel(x, None, diagonal_spatial=True, compute_ntk=True)
        k = k if track else k.replace(chord=None)
        return jnp.sum(jnp.sin(getattr(kernel_fn(k), get)))

    x = RNG.normal(size=(6, 3))
    x = jnp.asarray(np.concatenate([x, x[:2] + 1e-3 * RNG.normal(size=(2, 3))]))
    grad = jax.jit(jax.grad(loss), static_argnums=1)
    tracked, plain = (grad(x, track) for track in (True, False))
    np.testing.assert_allclose(tracked, plain, rtol=1e-7, atol=1e-12)


# ------------------------------------------------------------ known NTKs
# The input kernel's Θ = 0 and an NTK-parameterized affine layer's Θ = K let
# layers skip work (`Kernel.ntk_is_zero`, `Kernel.ntk_is_nngp`); these check
# that neither flag can outlive the arrays it describes.


def test_input_kernel_records_its_zero_ntk_only_when_it_has_one():
    k = inputs_to_kernel(X1, X2, diagonal_spatial=True, compute_ntk=True)
    assert k.ntk_is_zero and not np.any(np.asarray(k.ntk))
    assert not inputs_to_kernel(X1, X2, diagonal_spatial=True, compute_ntk=False).ntk_is_zero
    assert not Kernel(k.nngp, k.ntk, k.cov1, k.cov2, k.shape1, k.shape2).ntk_is_zero


def test_replacing_the_ntk_resets_ntk_is_zero_unless_it_is_passed_too():
    k = inputs_to_kernel(X1, X2, diagonal_spatial=True, compute_ntk=True)
    assert not k.replace(ntk=k.ntk + 1.0).ntk_is_zero
    # Even the same array: replace cannot tell what the caller did to it.
    assert not k.replace(ntk=k.ntk).ntk_is_zero
    assert k.replace(nngp=2 * k.nngp, cov1=2 * k.cov1, is_gaussian=True).ntk_is_zero
    assert k.replace(ntk=3 * k.ntk, ntk_is_zero=True).ntk_is_zero


def test_ntk_is_zero_is_no_part_of_the_pytree():
    """tree_map may change the NTK, so the rebuilt Kernel must not claim 0;
    and the structure (jit cache key, scan carry) must not depend on it."""
    k = inputs_to_kernel(X1, X2, diagonal_spatial=True, compute_ntk=True)
    shifted = jax.tree_util.tree_map(lambda a: a + 1.0, k)
    assert not shifted.ntk_is_zero and np.all(np.asarray(shifted.ntk) == 1.0)
    assert not jax.jit(lambda k: k)(k).ntk_is_zero
    flagless = k.replace(ntk_is_zero=False)
    assert jax.tree_util.tree_structure(k) == jax.tree_util.tree_structure(flagless)


def test_ntk_is_nngp_means_the_same_array_not_equal_values():
    nngp = jnp.asarray(RNG.normal(size=(3, 2)))
    k = Kernel(nngp, nngp, jnp.ones(3), jnp.ones(2), (3, 4), (2, 4))
    assert k.ntk_is_nngp
    assert not k.replace(ntk=nngp + 0.0).ntk_is_nngp  # equal, but another array
    assert not k.replace(nngp=2 * nngp).ntk_is_nngp
    assert not k.replace(ntk=None).ntk_is_nngp


def test_mask_keeps_ntk_is_nngp_and_zeroes_both_alike():
    nngp = jnp.asarray(RNG.normal(size=(3, 2, 4)))
    k = Kernel(nngp, nngp, jnp.ones((3, 4)), jnp.ones((2, 4)), (3, 4, 5), (2, 4, 5), True)
    m1 = jnp.asarray(RNG.random((3, 4, 1)) < 0.5)
    m2 = jnp.asarray(RNG.random((2, 4, 1)) < 0.5)
    masked = k.mask(m1, m2)
    assert masked.ntk_is_nngp
    # The oracle: zero where position s of x1_i or of x2_j is masked.
    keep = ~(np.asarray(m1)[:, None, :, 0] | np.asarray(m2)[None, :, :, 0])
    np.testing.assert_array_equal(masked.nngp, np.where(keep, np.asarray(nngp), 0.0))


def test_repeat_of_a_dense_layer_on_the_inputs_follows_the_ntk_recursion():
    """The first Dense gives Θ = K, the next ones not; repeat's loop carry
    must take both (the flags are no part of its structure)."""
    w, b, depth = 1.2, 0.1, 3
    k = stax.repeat(stax.Dense(4, W_std=w, b_std=b), depth).kernel_fn(X1, X2)
    nngp = np.asarray(X1) @ np.asarray(X2).T / 4
    ntk = np.zeros_like(nngp)
    for _ in range(depth):  # Jacot et al. 2018: K' = w²K + b², Θ' = w²Θ + K'
        nngp = w**2 * nngp + b**2
        ntk = w**2 * ntk + nngp
    np.testing.assert_allclose(k.nngp, nngp, rtol=1e-13)
    np.testing.assert_allclose(k.ntk, ntk, rtol=1e-13)


def test_results_of_separate_calls_share_one_record_type():
    # NT caches its namedtuple classes: batches of a ragged split concatenate
    # with jax.tree.map only if every call returns the same pytree type.
    from ntk.empirical import empirical_kernel_fn

    net = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    x = jax.random.normal(jax.random.PRNGKey(0), (10, 3))
    params = net.init_fn(jax.random.PRNGKey(1), x.shape)[1]
    empirical = empirical_kernel_fn(net.apply_fn)
    for kernel_fn in (net.kernel_fn, lambda x1, x2, get: empirical(x1, x2, get, params)):
        parts = [kernel_fn(x[i : i + 4], x, ("nngp", "ntk")) for i in range(0, 10, 4)]
        whole = kernel_fn(x, x, ("nngp", "ntk"))
        joined = jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
        np.testing.assert_allclose(joined.ntk, whole.ntk, rtol=1e-12)
