"""The typed layer records (`ntk.stax.spec`) and the tools that read them.

The structured empirical NTK and `mup.parametrize` walk networks through
``kernel_fn.spec`` only: these tests rename layers to names that would fool a
name parser, declare user layers with records, and check that both tools
still give the brute-force Jacobian NTK / the right width scaling, and that a
layer whose parameters they cannot interpret is handled exactly (structured
NTK) or refused with its name (μP).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import mup, stax
from ntk.empirical import empirical_ntk_fn
from ntk.empirical import structured
from ntk.stax import spec as specs
from ntk.stax.layer import KernelFn, Layer, make_layer

# One instance of every public layer constructor (combinators wrap a Dense).
EXAMPLES = {
    "serial": lambda: stax.serial(stax.Dense(3)),
    "parallel": lambda: stax.parallel(stax.Dense(3), stax.Identity()),
    "repeat": lambda: stax.repeat(stax.serial(stax.Dense(3), stax.Relu()), 2),
    "FanOut": lambda: stax.FanOut(2),
    "FanInSum": stax.FanInSum,
    "FanInProd": stax.FanInProd,
    "FanInConcat": stax.FanInConcat,
    "Dense": lambda: stax.Dense(3),
    "Conv": lambda: stax.Conv(3, (2, 2)),
    "AvgPool": lambda: stax.AvgPool((2, 2)),
    "SumPool": lambda: stax.SumPool((2, 2)),
    "GlobalAvgPool": stax.GlobalAvgPool,
    "GlobalSumPool": stax.GlobalSumPool,
    "Flatten": stax.Flatten,
    "Identity": stax.Identity,
    "LayerNorm": stax.LayerNorm,
    "Dropout": lambda: stax.Dropout(0.5),
    "Relu": stax.Relu,
    "LeakyRelu": lambda: stax.LeakyRelu(0.1),
    "ABRelu": lambda: stax.ABRelu(-0.5, 1.0),
    "Abs": stax.Abs,
    "Erf": stax.Erf,
    "Sigmoid_like": stax.Sigmoid_like,
    "Gelu": stax.Gelu,
    "Sin": stax.Sin,
    "Cos": stax.Cos,
    "Rbf": stax.Rbf,
    "Sign": stax.Sign,
    "Exp": stax.Exp,
    "Gaussian": stax.Gaussian,
    "Monomial": lambda: stax.Monomial(2),
    "Hermite": lambda: stax.Hermite(2),
    "Polynomial": lambda: stax.Polynomial([0, 1, 1]),
    "Gabor": stax.Gabor,
    "ExpNormalized": stax.ExpNormalized,
    "RectifiedMonomial": lambda: stax.RectifiedMonomial(2),
    "Elementwise": lambda: stax.Elementwise(jnp.tanh, lambda c12, c11, c22: c12),
    "ElementwiseNumerical": lambda: stax.ElementwiseNumerical(jnp.tanh),
    "ConvTranspose": lambda: stax.ConvTranspose(3, (2, 2), (2, 2), "SAME"),
    "ConvLocal": lambda: stax.ConvLocal(3, (2, 2)),
    "ImageResize": lambda: stax.ImageResize((-1, 2, 3, -1), "linear"),
    "DotGeneral": lambda: stax.DotGeneral(rhs=2.0),
    "Index": lambda: stax.Index(stax.Slice[::2]),
    "Aggregate": stax.Aggregate,
    "GlobalSelfAttention": lambda: stax.GlobalSelfAttention(3, 2, 2, 2),
    "Myrtle": lambda: stax.Myrtle(5, width=4, num_classes=3),
}
NOT_LAYERS = {
    "ACTIVATIONS",
    "Activation",
    "Layer",
    "KernelFn",
    "make_layer",
    "spec",
    "Padding",
    "Slice",
    "AggregateImplementation",
    "MaskedArray",
    "unmask_fn",
    "AttentionMechanism",
    "PositionalEmbedding",
}


def test_every_public_layer_constructor_has_an_example_here():
    # A new layer must be added to EXAMPLES, so the next test covers it.
    assert set(stax.__all__) - NOT_LAYERS == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_public_layer_carries_a_typed_record(name):
    layer = EXAMPLES[name]()
    record = layer.kernel_fn.spec
    assert isinstance(record, specs.Spec)
    assert not isinstance(record, specs.Opaque), f"{name} is not described"
    # Records match what the layer's parameters are.
    image = name in (
        "Conv",
        "AvgPool",
        "SumPool",
        "GlobalAvgPool",
        "GlobalSumPool",
        "Flatten",
        "ConvTranspose",
        "ConvLocal",
        "ImageResize",
        "Myrtle",
    )
    shape = (2, 4, 4, 3) if image else (2, 3)
    branched = name.startswith("FanIn") or name == "parallel"
    _, params = layer.init_fn(jax.random.PRNGKey(0), [shape, shape] if branched else shape)
    if isinstance(record, specs.Parameterless):
        assert not jax.tree_util.tree_leaves(params)
    if isinstance(record, specs.Affine):
        W, b = params
        assert W.shape[-1] == 3 and b is None


def test_make_layer_rejects_an_untyped_spec():
    with pytest.raises(TypeError, match="spec"):
        make_layer("Bad", lambda k, s: (s, ()), lambda p, x: x, lambda k: k, spec={"kind": "Dense"})


def test_a_layer_without_a_record_is_opaque():
    layer = make_layer("Mine", lambda k, s: (s, ()), lambda p, x, **kw: x, lambda k, **kw: k)
    assert isinstance(layer.kernel_fn.spec, specs.Opaque)


def _renamed(layer: Layer, name: str) -> Layer:
    kfn = layer.kernel_fn
    return Layer(
        layer.init_fn,
        layer.apply_fn,
        KernelFn(kfn.transform, name, spec=kfn.spec, needs_full_spatial=kfn.needs_full_spatial),
    )


def _brute_force_ntk(apply_fn, params, x1, x2):
    """Θ = J(x1) J(x2)ᵀ from full Jacobians, (N1, N2, K, K) -> traced over K."""

    def jac(x):
        j = jax.jacobian(lambda p: apply_fn(p, x))(params)
        return jnp.concatenate(
            [a.reshape(a.shape[:2] + (-1,)) for a in jax.tree_util.tree_leaves(j)], axis=-1
        )

    j1, j2 = jac(x1), jac(x2)
    return jnp.einsum("nkp,mkp->nm", j1, j2) / j1.shape[1]


def _dense_record_net():
    """A network whose every name would mislead a name parser."""
    inner = stax.serial(stax.Dense(5, W_std=1.3, b_std=0.2), stax.Relu())
    block = _renamed(stax.repeat(_renamed(inner, "parallel(fake)"), 2), "serial(x)")
    return _renamed(
        stax.serial(stax.Dense(5, b_std=0.1), stax.Erf(), block, stax.Dense(2, W_std=0.7)),
        "repeat(Net)",
    )


def test_structured_ntk_walks_records_not_names(monkeypatch):
    net = _dense_record_net()
    x1 = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    x2 = jax.random.normal(jax.random.PRNGKey(2), (2, 4))
    _, params = net.init_fn(jax.random.PRNGKey(3), x1.shape)
    want = _brute_force_ntk(net.apply_fn, params, x1, x2)

    # Every site is a Dense: the generic per-example Jacobian must not run.
    def forbidden(*a, **k):
        raise AssertionError("generic term used for a Dense record")

    monkeypatch.setattr(structured, "_generic_term", forbidden)
    got = empirical_ntk_fn(net, implementation="STRUCTURED_DERIVATIVES")(x1, x2, params)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def _user_dense(out, W_std):
    """A user's own affine layer: y = W_std/√n · x W, declared by its record."""

    def init_fn(key, shape):
        return tuple(shape[:-1]) + (out,), (jax.random.normal(key, (shape[-1], out)), None)

    def apply_fn(params, x, **kw):
        W, _ = params
        return x @ W * (W_std / np.sqrt(x.shape[-1]))

    return make_layer(
        "UserLinear", init_fn, apply_fn, lambda k, **kw: k, spec=specs.Dense(W_std, None, "ntk")
    )


def test_a_user_layer_with_an_affine_record_takes_the_fast_path(monkeypatch):
    net = stax.serial(_user_dense(6, 1.1), stax.Relu(), _user_dense(2, 0.9))
    x1 = jax.random.normal(jax.random.PRNGKey(4), (3, 5))
    _, params = net.init_fn(jax.random.PRNGKey(5), x1.shape)
    want = _brute_force_ntk(net.apply_fn, params, x1, x1)
    monkeypatch.setattr(
        structured, "_generic_term", lambda *a, **k: (_ for _ in ()).throw(AssertionError)
    )
    got = empirical_ntk_fn(net, implementation="STRUCTURED_DERIVATIVES")(x1, None, params)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_mup_reads_records_not_names():
    plain = stax.serial(stax.Dense(32), stax.Relu(), stax.Dense(32), stax.Relu(), stax.Dense(1))
    renamed = _renamed(plain, "FancyNet")
    a = mup.parametrize(plain, "mup", base_width=8)
    b = mup.parametrize(renamed, "mup", base_width=8)
    roles = lambda p: [
        (s.role, s.width_mult)
        for s in jax.tree_util.tree_leaves(p.info, is_leaf=lambda s: isinstance(s, mup.LeafScale))
        if s is not None
    ]
    assert roles(b) == roles(a)
    assert [r for r, _ in roles(a)] == ["input", "hidden", "output"]
    # The user's affine layer is a μP layer like stax.Dense.
    user = stax.serial(_user_dense(32, 1.0), stax.Relu(), _user_dense(1, 1.0))
    assert [r for r, _ in roles(mup.parametrize(user, "mup", base_width=8))] == ["input", "output"]


def test_mup_refuses_a_parameterised_layer_it_cannot_scale_naming_it():
    def init_fn(key, shape):
        return shape, (jnp.ones(shape[-1]),)

    scale = make_layer("LearnedScale", init_fn, lambda p, x, **kw: x * p[0], lambda k, **kw: k)
    net = stax.serial(stax.Dense(16), scale, stax.Relu(), stax.Dense(1))
    with pytest.raises(ValueError, match="LearnedScale"):
        mup.parametrize(net, "mup", base_width=4)
