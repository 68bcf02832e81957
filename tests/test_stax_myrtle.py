"""`stax.Myrtle`: the Myrtle networks and their fused kernel program.

The fused program (`ntk.stax.myrtle`) is checked against three independent
oracles: the layer-by-layer kernel of the same layers (``serial``), NT's
README network (the golden fixture, tests/golden/architectures_myrtle.py,
run by tests/test_stax_golden.py) and Monte Carlo over wide finite networks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mc import assert_within_mc, mc_kernels
from ntk import stax
from ntk.kernel import inputs_to_kernel
from ntk.stax import spec as specs


def _images(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _by_layers(layer, x1, x2):
    """The kernel of the Myrtle's layers, one transform after another."""
    run = lambda a, b: layer.kernel_fn.transform(
        inputs_to_kernel(a, b, diagonal_spatial=False, compute_ntk=True)
    )
    return jax.jit(run)(x1, x2)


# Float64 agreement of two exact computations in different orders: measured
# ~4e-16; 1e-12 leaves room for other machines' summation orders while any
# formula error (a constant, a missed bias, a wrong tap) is >= 1e-4.
@pytest.mark.parametrize(
    "depth, W_std, b_std, shape, symmetric",
    [
        (5, 1.3, 0.2, (8, 12, 2), False),
        (10, math.sqrt(2.0), 0.0, (12, 8, 1), True),
    ],
)
def test_fused_kernel_equals_the_layer_by_layer_kernel(depth, W_std, b_std, shape, symmetric):
    layer = stax.Myrtle(depth, W_std=W_std, b_std=b_std)
    x1, x2 = _images((3,) + shape, depth), _images((2,) + shape, depth + 1)
    for a, b in ((x1, None if symmetric else x2),):
        fast = layer.kernel_fn(a, b)
        slow = _by_layers(layer, a, b)
        for field in ("nngp", "ntk", "cov1", "cov2"):
            got, want = getattr(fast, field), getattr(slow, field)
            if want is None:
                assert got is None
                continue
            assert got.shape == want.shape, field
            err = np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want))
            assert err <= 1e-12, (field, err)


def test_float32_kernel_is_symmetric_and_close_to_float64():
    # Rounding of float32 through ~10 layers of ~50 operations per entry:
    # measured 2e-7 relative; 1e-5 allows for that, a wrong branch of the
    # arcsine reduction (>= 1e-3) does not pass.
    layer = stax.Myrtle(5)
    x = _images((4, 4, 4, 3), 0)
    k64 = np.asarray(layer.kernel_fn(x, None, "ntk"))
    k32 = np.asarray(layer.kernel_fn(x.astype(np.float32), None, "ntk"))
    assert k32.dtype == np.float32
    np.testing.assert_array_equal(k32, k32.T)
    assert np.max(np.abs(k32 - k64)) / np.max(np.abs(k64)) <= 1e-5


def test_fused_kernel_matches_monte_carlo_of_the_finite_network():
    # 48 channels and 48 outputs averaged, 48 draws: the standard error of
    # the NNGP and NTK estimates is a few percent; 6 standard errors plus a
    # 10% finite-width bias (O(depth/width) for a ReLU CNN of 5 layers).
    layer = stax.Myrtle(5, W_std=1.4, b_std=0.1, width=48, num_classes=48)
    x1, x2 = jnp.asarray(_images((2, 4, 4, 2), 1)), jnp.asarray(_images((1, 4, 4, 2), 2))
    nngp_m, nngp_s, ntk_m, ntk_s = mc_kernels(
        layer.init_fn, layer.apply_fn, x1, x2, jax.random.PRNGKey(5), 48
    )
    k = layer.kernel_fn(x1, x2)
    assert_within_mc(k.nngp, nngp_m, nngp_s, n_sigma=6, bias=0.1, what="nngp")
    assert_within_mc(k.ntk, ntk_m, ntk_s, n_sigma=6, bias=0.1, what="ntk")


def test_layers_are_nt_readme_myrtle_stages():
    # NT's README: (2, 1, 1), (2, 2, 2), (3, 3, 3) Conv+Relu per stage, SAME
    # 3x3 convolutions, 2x2 stride-2 average pooling between stages.
    for depth, factors in ((5, (2, 1, 1)), (7, (2, 2, 2)), (10, (3, 3, 3))):
        layers = stax.Myrtle(depth, W_std=1.7, b_std=0.3).kernel_fn.spec.layers
        records = [layer.kernel_fn.spec for layer in layers]
        convs = [r for r in records if isinstance(r, specs.Conv)]
        assert len(convs) == depth - 1 == sum(factors)
        assert all(
            r.filter_shape == (3, 3)
            and r.strides == (1, 1)
            and r.padding == "SAME"
            and r.W_std == 1.7
            and r.b_std == 0.3
            for r in convs
        )
        assert isinstance(records[-1], specs.Dense) and records[-1].W_std == 1.7
        # Stage lengths: convolutions between the poolings.
        names = [layer.name for layer in layers]
        pools = [i for i, n in enumerate(names) if "Pool" in n]
        bounds = [-1] + pools
        stages = [
            sum(isinstance(records[j], specs.Conv) for j in range(a + 1, b))
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        assert tuple(stages) == factors
        assert len(pools) == 3 and names[pools[-1]] == "GlobalAvgPool"


def test_finite_network_maps_mnist_sized_images_to_class_scores():
    init_fn, apply_fn, _ = stax.Myrtle(5, width=8, num_classes=10)
    out_shape, params = init_fn(jax.random.PRNGKey(0), (3, 28, 28, 1))
    assert out_shape == (3, 10)
    y = jax.jit(apply_fn)(params, jnp.ones((3, 28, 28, 1)))
    assert y.shape == (3, 10) and bool(jnp.all(jnp.isfinite(y)))


def test_gradient_with_respect_to_inputs_matches_finite_differences():
    # The derivative comes from the layers (custom_jvp); central differences
    # of the fused primal are an independent check. Step 1e-5 in float64:
    # truncation ~1e-10, rounding ~1e-11 relative.
    layer = stax.Myrtle(5, b_std=0.1)
    x = _images((2, 4, 4, 1), 3)
    direction = _images(x.shape, 4)
    f = lambda z: jnp.sum(layer.kernel_fn(z, None, "ntk"))
    # Forward mode is what the program defines; reverse mode is JAX's
    # transpose of it. The custom_jvp's primal output is the fused program,
    # so the finite difference reads it from this one compiled program too.
    jvp = jax.jit(lambda z: jax.jvp(f, (z,), (direction,)))
    h = 1e-5
    numeric = (jvp(x + h * direction)[0] - jvp(x - h * direction)[0]) / (2 * h)
    analytic = jvp(x)[1]
    assert abs(float(analytic) - float(numeric)) <= 1e-7 * abs(float(numeric))


def test_masked_inputs_use_the_layers_and_agree_with_them():
    layer = stax.Myrtle(5)
    x = _images((2, 8, 8, 1), 6)
    x[0, :2] = -1e4
    got = layer.kernel_fn(x, None, "nngp", mask_constant=-1e4)
    want = stax.serial(*layer.kernel_fn.spec.layers).kernel_fn(x, None, "nngp", mask_constant=-1e4)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(2, 30, 30, 3), (2, 32, 30, 3), (2, 32, 32), (32, 32, 3)])
def test_images_whose_sides_are_not_multiples_of_4_are_rejected(shape):
    init_fn, apply_fn, kernel_fn = stax.Myrtle(5)
    with pytest.raises(ValueError, match=r"Myrtle\(5\).*multiples of 4.*got shape"):
        kernel_fn(np.zeros(shape), None, "ntk")
    with pytest.raises(ValueError, match="multiples of 4"):
        init_fn(jax.random.PRNGKey(0), shape)
    with pytest.raises(ValueError, match="multiples of 4"):
        apply_fn(None, np.zeros(shape))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 6}, "`depth` must be one of"),
        ({"depth": True}, "`depth` must be one of"),
        ({"depth": 5, "width": 0}, "`width` must be a positive int"),
        ({"depth": 5, "num_classes": 2.5}, "`num_classes` must be a positive int"),
        ({"depth": 5, "W_std": -1.0}, "`W_std` must be >= 0"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stax.Myrtle(**kwargs)
