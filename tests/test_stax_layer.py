"""`KernelFn`'s jit boundary: the NNGP and NTK leave it as one complex array.

The packing must be exact (bit for bit, inf and NaN included) and must make a
deep network's two kernels cost one pass: XLA's cost analysis of the compiled
program counts the flops, so the check does not depend on the machine's speed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from ntk.kernel import inputs_to_kernel, record_type
from ntk.stax import combinators
from ntk.stax.layer import pack_nngp_ntk, unpack_nngp_ntk


def _special(dtype):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 3)).astype(dtype)
    a[0, :3] = [np.inf, -np.inf, np.nan]
    a[1, 0] = -0.0
    a[1, 1] = np.finfo(dtype).tiny / 2  # subnormal
    return jnp.asarray(a)


def _bits(a):
    return np.asarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("record", ["namedtuple", "Kernel"])
def test_packing_nngp_and_ntk_round_trips_bit_for_bit(dtype, record):
    nngp, ntk = _special(dtype), _special(dtype)[::-1] * 3
    if record == "Kernel":
        x1, x2 = jnp.ones((4, 2), dtype), jnp.ones((3, 2), dtype)
        out = inputs_to_kernel(x1, x2, diagonal_spatial=True, compute_ntk=True)
        out = dataclasses.replace(out, nngp=nngp, ntk=ntk)
    else:
        out = record_type("Kernel", ("ntk", "nngp"))(ntk, nngp)
    rest, z = pack_nngp_ntk(out)
    assert rest.nngp is None and rest.ntk is None and z is not None
    back = unpack_nngp_ntk(rest, z)
    assert type(back) is type(out)
    for got, want in ((back.nngp, nngp), (back.ntk, ntk)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize(
    "fields",
    [
        ("nngp",),  # one output
        ("nngp", "ntk", "half"),  # float16 has no complex type
        ("nngp", "ntk", "shapes"),  # unequal shapes
    ],
)
def test_packing_leaves_other_results_alone(fields):
    a = jnp.ones((2, 2), jnp.float16 if "half" in fields else jnp.float32)
    b = jnp.ones((2, 3)) if "shapes" in fields else a
    names = fields[:2]
    out = record_type("Kernel", names)(*(a, b)[: len(names)])
    rest, z = pack_nngp_ntk(out)
    assert z is None and rest is out
    assert unpack_nngp_ntk(rest, z) is out


def _distinct_layers(act, depth):
    """A deep MLP whose widths and W_std all differ (the test turns serial's
    loops off, so that the program is unrolled)."""
    layers = []
    for i in range(depth):
        layers += [stax.Dense(64 + i, W_std=1.2 + 0.01 * i, b_std=0.1), act()]
    return layers + [stax.Dense(1)]


def _flops(kernel_fn, x, get):
    names = get if isinstance(get, tuple) else (get,)
    lowered = kernel_fn._jitted.lower(x, None, get=get, compute_ntk="ntk" in names)
    return lowered.compile().cost_analysis()["flops"]


@pytest.mark.parametrize("act", [stax.Relu, stax.Erf], ids=["Relu", "Erf"])
def test_both_kernels_of_a_deep_network_cost_about_one(act, monkeypatch):
    """Asked for the NNGP and the NTK of a 12-layer MLP, unrolled, XLA used to
    recompute the earlier layers inside every later layer's loop: 6-8x the
    flops of the NTK alone (the ratio grows with depth). Packed at the jit
    boundary, both cost one pass plus the NNGP's own readout (0.07% more
    here)."""
    monkeypatch.setattr(combinators, "SCAN_MIN_REPS", 10**6)
    kernel_fn = stax.serial(*_distinct_layers(act, 12)).kernel_fn
    x = jnp.ones((16, 8), jnp.float32)
    assert "scan" not in str(jax.make_jaxpr(lambda x: kernel_fn(x, None, "ntk"))(x))
    both, one = _flops(kernel_fn, x, ("nngp", "ntk")), _flops(kernel_fn, x, "ntk")
    assert both <= 1.25 * one, (both, one)


@pytest.mark.parametrize(
    "layer,name",
    [
        (stax.Dense(8), "Dense"),
        (stax.Identity(), "Identity"),
        (stax.Rbf(0.5), "Rbf"),
        (stax.serial(stax.Dense(2), stax.Relu()), "serial"),
        (stax.parallel(stax.Relu(), stax.Erf()), "parallel"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_layer_functions_are_named_after_their_constructor(layer, name):
    """NT names ``init_fn``, ``apply_fn`` and ``kernel_fn`` after the layer's
    constructor, without its arguments; code written for NT reads them."""
    assert (layer.init_fn.__name__, layer.apply_fn.__name__, layer.kernel_fn.__name__) == (
        name,
        name,
        name,
    )


def test_naming_a_layer_leaves_a_shared_init_fn_alone():
    def init_fn(key, shape):
        return shape, ()

    def transform(k, **kwargs):
        return k

    one = stax.make_layer("One", init_fn, lambda p, x, **kw: x, transform)
    two = stax.make_layer("Two(3)", init_fn, lambda p, x, **kw: x, transform)
    assert (init_fn.__name__, one.init_fn.__name__, two.init_fn.__name__) == (
        "init_fn",
        "One",
        "Two",
    )
    assert two.init_fn(jax.random.PRNGKey(0), (2, 3)) == ((2, 3), ())


@pytest.mark.parametrize("same_inputs", [False, True])
def test_get_shape1_and_shape2_are_the_output_shapes_init_fn_gives(same_inputs):
    """NT's ``get=('ntk', 'shape1', 'shape2')``: the arrays asked for, and the
    finite network's output shapes for ``x1`` and ``x2``."""
    init_fn, _, kernel_fn = stax.serial(
        stax.Conv(5, (2, 2)), stax.Relu(), stax.Flatten(), stax.Dense(3)
    )
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(2, 4, 4, 3))
    x2 = None if same_inputs else rng.normal(size=(3, 4, 4, 3))
    ntk, shape1, shape2 = kernel_fn(x1, x2, ("ntk", "shape1", "shape2"))
    key = jax.random.PRNGKey(0)
    assert shape1 == init_fn(key, x1.shape)[0]
    assert shape2 == init_fn(key, (x1 if x2 is None else x2).shape)[0]
    np.testing.assert_array_equal(ntk, kernel_fn(x1, x2, "ntk"))
