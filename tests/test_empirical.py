"""Empirical kernels against brute force; Monte Carlo against the analytic kernel.

The reference NTK is built independently of `ntk.empirical`: ``jax.jacrev`` of
each batch, a ``tensordot`` over every parameter, and the trace/diagonal
layout by explicit loops over output indices (`reference_layout`).
"""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mc import assert_within_mc
from ntk import stax
from ntk.empirical import (
    NtkImplementation,
    auto_implementation,
    empirical_kernel_fn,
    empirical_nngp_fn,
    empirical_ntk_fn,
    from_linen,
    from_nnx,
    linearize,
    monte_carlo_kernel_fn,
    taylor_expand,
)
from ntk.empirical import cost
from ntk.stax.layer import make_layer

IMPLS = [
    NtkImplementation.JACOBIAN_CONTRACTION,
    NtkImplementation.NTK_VECTOR_PRODUCTS,
    NtkImplementation.STRUCTURED_DERIVATIVES,
]
RTOL = 1e-10


# ------------------------------------------------------------ references


def reference_layout(full, shape1, shape2, trace_axes, diagonal_axes):
    """NT's kernel layout of a full kernel ``(*shape1, *shape2)``, by loops."""
    d = len(shape1)
    trace = sorted({a % d for a in trace_axes})
    diag = sorted({a % d for a in diagonal_axes})
    out_shape = []
    for i in range(d):
        if i not in trace:
            out_shape += [shape1[i]] if i in diag else [shape1[i], shape2[i]]
    out = np.zeros(out_shape)
    for o in np.ndindex(*out_shape):
        it, a, b = iter(o), [0] * d, [0] * d
        for i in range(d):
            if i in trace:
                continue
            if i in diag:
                a[i] = b[i] = next(it)
            else:
                a[i], b[i] = next(it), next(it)
        total = 0.0
        for t in itertools.product(*[range(shape1[i]) for i in trace]):
            for i, v in zip(trace, t):
                a[i] = b[i] = v
            total += full[tuple(a) + tuple(b)]
        out[o] = total / math.prod(shape1[i] for i in trace)
    return out


def brute_force_ntk(f, params, x1, x2, kw1=None, kw2=None):
    """Full NTK ``(*f(x1).shape, *f(x2).shape)`` from explicit Jacobians."""
    kw1 = kw1 or {}
    kw2 = kw1 if kw2 is None else kw2
    x2 = x1 if x2 is None else x2
    jac = jax.jit(jax.jacrev(lambda p, x, kw: f(p, x, **kw)))
    j1, j2 = jac(params, x1, kw1), jac(params, x2, kw2)
    nd = np.ndim(f(params, x1, **kw1))
    return sum(
        np.tensordot(np.asarray(a), np.asarray(b), axes=(list(range(nd, a.ndim)),) * 2)
        for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2))
    )


def assert_close(got, want, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300)
    assert err <= RTOL, f"{what}: relative error {err:.2e} > {RTOL}"


# ------------------------------------------------------------ networks


def Custom(out):
    """A parameterised leaf without a ``spec``: y = tanh(x A / √n) ⊙ c."""

    def init_fn(key, shape):
        return tuple(shape[:-1]) + (out,), (
            jax.random.normal(key, (shape[-1], out)),
            jnp.linspace(0.5, 1.5, out),
        )

    def apply_fn(p, x, **kw):
        A, c = p
        return jnp.tanh(x @ A / np.sqrt(x.shape[-1])) * jax.lax.broadcast_to_rank(c, x.ndim)

    return make_layer("Custom", init_fn, apply_fn, lambda k, **kw: k)


NETWORKS = {
    "mlp": (
        lambda: stax.serial(
            stax.Dense(6, W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.Dense(5, parameterization="standard", b_std=0.1),
            stax.Erf(),
            stax.Dense(3, b_std=0.3),
        ),
        (4, 5),
        (2, 5),
    ),
    "cnn": (
        lambda: stax.serial(
            stax.Conv(3, (3, 3), padding="SAME", b_std=0.1),
            stax.Relu(),
            stax.Conv(2, (2, 2), strides=(2, 1), W_std=1.2, parameterization="standard", b_std=0.2),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(3, b_std=0.2),
        ),
        (3, 5, 4, 2),
        (2, 5, 4, 2),
    ),
}

STRUCTURED_NETWORKS = {
    "resnet": (
        lambda: stax.serial(
            stax.Dense(5),
            stax.FanOut(2),
            stax.parallel(stax.serial(stax.Relu(), stax.Dense(5, b_std=0.3)), stax.Identity()),
            stax.FanInSum(),
            stax.Dense(2),
        ),
        (3, 4),
        (2, 4),
    ),
    "repeat": (
        lambda: stax.serial(
            stax.Dense(5),
            stax.repeat(stax.serial(stax.Relu(), stax.Dense(5, b_std=0.1)), 3),
            stax.Dense(2),
        ),
        (3, 4),
        (2, 4),
    ),
    "custom_leaf": (
        lambda: stax.serial(stax.Dense(5), Custom(4), stax.Dense(2, b_std=0.1)),
        (3, 4),
        (2, 4),
    ),
    "dense_on_images": (
        lambda: stax.serial(
            stax.Dense(4, b_std=0.1), stax.Relu(), stax.Dense(3), stax.Flatten(), stax.Dense(2)
        ),
        (3, 3, 2, 2),
        (2, 3, 2, 2),
    ),
    "circular_cnn_gap": (
        lambda: stax.serial(
            stax.Conv(4, (3, 2), padding="CIRCULAR", parameterization="standard", b_std=0.1),
            stax.Erf(),
            stax.Conv(2, (1, 1)),
            stax.GlobalAvgPool(),
            stax.Dense(2),
        ),
        (3, 4, 3, 2),
        (2, 4, 3, 2),
    ),
    "cnn_avgpool": (
        lambda: stax.serial(
            stax.Conv(3, (2, 2), padding="SAME"),
            stax.Relu(),
            stax.AvgPool((2, 2)),
            stax.Flatten(),
            stax.Dense(2),
        ),
        (2, 4, 4, 2),
        (2, 4, 4, 2),
    ),
    "list_output": (
        lambda: stax.serial(
            stax.Dense(4),
            stax.FanOut(2),
            stax.parallel(stax.Dense(2, b_std=0.1), stax.serial(stax.Relu(), stax.Dense(3))),
        ),
        (3, 4),
        (2, 4),
    ),
}


@functools.lru_cache(maxsize=None)
def network(name):
    make, shape1, shape2 = {**NETWORKS, **STRUCTURED_NETWORKS}[name]
    net = make()
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(sum(map(ord, name))), 3)
    x1 = jax.random.normal(k1, shape1)
    x2 = jax.random.normal(k2, shape2)
    _, params = net.init_fn(k3, shape1)
    return net, params, x1, x2


@functools.lru_cache(maxsize=None)
def full_ntk(name, same):
    net, params, x1, x2 = network(name)
    return brute_force_ntk(net.apply_fn, params, x1, None if same else x2)


# (trace_axes, diagonal_axes, vmap_axes, x2 is None)
AXES = {
    "trace_logits": ((-1,), (), None, False),
    "full": ((), (), 0, False),
    "diag_batch": ((), (0,), 0, True),
    "diag_logits": ((), (-1,), None, True),
    "variances": ((-1,), (0,), None, True),
    "trace_batch": ((0,), (), 0, True),
}


# ------------------------------------------------------------ NTK vs brute force


@pytest.mark.parametrize("axes", list(AXES))
@pytest.mark.parametrize("impl", IMPLS, ids=lambda i: i.name)
@pytest.mark.parametrize("arch", list(NETWORKS))
def test_ntk_matches_brute_force(arch, impl, axes):
    net, params, x1, x2 = network(arch)
    trace, diag, vm, same = AXES[axes]
    fx = net.apply_fn(params, x1)
    fx2 = fx if same else net.apply_fn(params, x2)
    want = reference_layout(full_ntk(arch, same), fx.shape, fx2.shape, trace, diag)
    got = empirical_ntk_fn(net, trace, diag, vm, impl)(x1, None if same else x2, params)
    assert_close(got, want, f"{arch} {impl.name} {axes}")


@pytest.mark.parametrize("arch", list(STRUCTURED_NETWORKS))
def test_structured_ntk_matches_brute_force_on_composite_networks(arch):
    net, params, x1, x2 = network(arch)
    fx1, fx2 = net.apply_fn(params, x1), net.apply_fn(params, x2)
    got = empirical_ntk_fn(net, trace_axes=(), implementation="STRUCTURED_DERIVATIVES")(
        x1, x2, params
    )
    if isinstance(fx1, list):  # one kernel per output, no cross terms
        for k, (a, b) in enumerate(zip(fx1, fx2)):
            leaf = lambda p, x, k=k: net.apply_fn(p, x)[k]
            want = reference_layout(brute_force_ntk(leaf, params, x1, x2), a.shape, b.shape, (), ())
            assert_close(got[k], want, f"{arch} output {k}")
        return
    want = reference_layout(
        brute_force_ntk(net.apply_fn, params, x1, x2), fx1.shape, fx2.shape, (), ()
    )
    assert_close(got, want, arch)


def test_structured_ntk_splits_dropout_keys_like_nt():
    net = stax.serial(stax.Dense(6), stax.Relu(), stax.Dropout(0.7), stax.Dense(2))
    x1 = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    x2 = jax.random.normal(jax.random.PRNGKey(2), (2, 4))
    _, params = net.init_fn(jax.random.PRNGKey(3), x1.shape)
    rng = jax.random.PRNGKey(4)
    # NT's rule: x1 gets `rng`, a different x2 gets fold_in(rng, 1).
    full = brute_force_ntk(
        net.apply_fn, params, x1, x2, {"rng": rng}, {"rng": jax.random.fold_in(rng, 1)}
    )
    want = reference_layout(full, (3, 2), (2, 2), (), ())
    got = empirical_ntk_fn(net, trace_axes=(), implementation="STRUCTURED_DERIVATIVES")(
        x1, x2, params, rng=rng
    )
    assert_close(got, want)


def test_generic_function_with_vmap_kwargs_matches_brute_force():
    """Plain f with a per-example keyword (vmap_axes triple) and a paired one."""

    def f(p, x, mask, scale):
        h = jnp.tanh(x @ p["W"]) * mask
        return (h @ p["V"]) * scale

    kp = jax.random.split(jax.random.PRNGKey(5), 4)
    params = {"W": jax.random.normal(kp[0], (3, 5)), "V": jax.random.normal(kp[1], (5, 2))}
    x1, x2 = jax.random.normal(kp[2], (4, 3)), jax.random.normal(kp[3], (3, 3))
    m1, m2 = jnp.arange(20.0).reshape(4, 5) % 3, jnp.arange(15.0).reshape(3, 5) % 2
    full = brute_force_ntk(
        f, params, x1, x2, {"mask": m1, "scale": 2.0}, {"mask": m2, "scale": 0.5}
    )
    want = reference_layout(full, (4, 2), (3, 2), (), ())
    for impl in (1, 2, 3, 0):
        got = empirical_ntk_fn(
            f, trace_axes=(), vmap_axes=(0, 0, {"mask": 0}), implementation=impl
        )(x1, x2, params, mask=(m1, m2), scale=(2.0, 0.5))
        assert_close(got, want, f"implementation {impl}")


def _largest_intermediate(fn, *args):
    """Largest array size in the (nested) jaxpr of ``fn(*args)``."""

    def walk(jaxpr):
        best = 0
        for eqn in jaxpr.eqns:
            for v in eqn.outvars:
                best = max(best, int(np.prod(getattr(v.aval, "shape", ()))))
            for p in eqn.params.values():
                for sub in p if isinstance(p, (tuple, list)) else (p,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        best = max(best, walk(inner))
        return best

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


@pytest.mark.parametrize("impl", ["STRUCTURED_DERIVATIVES", "NTK_VECTOR_PRODUCTS"])
def test_structured_and_vector_products_store_no_jacobian(impl, monkeypatch):
    """No intermediate as large as one layer's Jacobian N·O·|W| (= 8·4·64·64)."""
    from ntk.empirical import kernels

    monkeypatch.setattr(kernels, "VECTOR_PRODUCTS_MEMORY", 4 * 64 * 64 * 8)  # ~4 columns
    net = stax.serial(stax.Dense(64), stax.Relu(), stax.Dense(64), stax.Relu(), stax.Dense(4))
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 64))
    _, params = net.init_fn(jax.random.PRNGKey(1), x.shape)
    fn = empirical_ntk_fn(net, trace_axes=(), vmap_axes=0, implementation=impl)
    jacobian_size = 8 * 4 * 64 * 64
    assert _largest_intermediate(lambda p: fn(x, None, p), params) < jacobian_size / 4
    jc = empirical_ntk_fn(net, trace_axes=(), implementation="JACOBIAN_CONTRACTION")
    assert _largest_intermediate(lambda p: jc(x, None, p), params) >= jacobian_size


@pytest.mark.parametrize("vmap_axes", [(0, 0), [0, 0], ((0, 0), [0, 0], {})])
def test_vmap_axes_read_lists_and_tuples_alike(vmap_axes):
    """A network of two inputs and two outputs (lists) batched with axes given
    as tuples, as NT's tests do: the kernels of the unbatched computation."""
    net = stax.serial(
        stax.parallel(stax.Dense(8), stax.Dense(8)),
        stax.parallel(stax.Relu(), stax.Erf()),
        stax.parallel(stax.Dense(2), stax.Dense(2)),
    )
    key1, key2, key3 = jax.random.split(jax.random.PRNGKey(0), 3)
    x1 = [jax.random.normal(key1, (3, 4)), jax.random.normal(key2, (3, 2))]
    x2 = [a[:2] * 0.5 for a in x1]
    _, params = net.init_fn(key3, [a.shape for a in x1])
    want = empirical_ntk_fn(net.apply_fn, trace_axes=())(x1, x2, params)
    got = empirical_ntk_fn(net.apply_fn, trace_axes=(), vmap_axes=vmap_axes)(x1, x2, params)
    assert len(got) == 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", [1, 2])
def test_pytree_outputs_get_one_kernel_each(impl):
    def f(p, x):
        h = jnp.tanh(x @ p["W"])
        return {"a": h @ p["A"], "b": jnp.sin(h @ p["B"])}

    k = jax.random.split(jax.random.PRNGKey(0), 5)
    params = {
        "W": jax.random.normal(k[0], (3, 4)),
        "A": jax.random.normal(k[1], (4, 2)),
        "B": jax.random.normal(k[2], (4, 3)),
    }
    x1, x2 = jax.random.normal(k[3], (3, 3)), jax.random.normal(k[4], (2, 3))
    got = empirical_ntk_fn(f, trace_axes=(), implementation=impl)(x1, x2, params)
    for name, o in (("a", 2), ("b", 3)):
        full = brute_force_ntk(lambda p, x: f(p, x)[name], params, x1, x2)
        assert_close(got[name], reference_layout(full, (3, o), (2, o), (), ()), name)


# ------------------------------------------------------------ Flax


def _linen_models():
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.gelu(nn.Dense(7, param_dtype=jnp.float64)(x))
            return nn.Dense(3, param_dtype=jnp.float64)(x)

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(3, (3, 3), padding="SAME", param_dtype=jnp.float64)(x))
            x = nn.Conv(2, (2, 2), strides=(2, 2), param_dtype=jnp.float64)(x)
            return nn.Dense(2, param_dtype=jnp.float64)(x.reshape(x.shape[0], -1))

    return {"mlp": (MLP(), (4, 5), (3, 5)), "cnn": (CNN(), (3, 4, 4, 2), (2, 4, 4, 2))}


@pytest.mark.parametrize("impl", [1, 2, 0], ids=["JC", "VP", "AUTO"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_flax_linen_ntk_matches_brute_force(model, impl):
    module, s1, s2 = _linen_models()[model]
    x1 = jax.random.normal(jax.random.PRNGKey(0), s1)
    x2 = jax.random.normal(jax.random.PRNGKey(1), s2)
    f, params = from_linen(module, module.init(jax.random.PRNGKey(2), x1))
    want = reference_layout(
        brute_force_ntk(f, params, x1, x2),
        (s1[0], f(params, x1).shape[1]),
        (s2[0], f(params, x2).shape[1]),
        (),
        (),
    )
    got = empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=impl)(x1, x2, params)
    assert_close(got, want, model)


@pytest.mark.parametrize("impl", [1, 2, 3], ids=["JC", "VP", "SD"])
def test_flax_nnx_ntk_matches_brute_force(impl):
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(4, 6, param_dtype=jnp.float64, rngs=rngs)
            self.b = nnx.Linear(6, 2, param_dtype=jnp.float64, rngs=rngs)

        def __call__(self, x):
            return self.b(jnp.tanh(self.a(x)))

    f, params = from_nnx(Net(nnx.Rngs(0)))
    x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
    want = reference_layout(brute_force_ntk(f, params, x1, x2), (3, 2), (2, 2), (-1,), ())
    got = empirical_ntk_fn(f, implementation=impl)(x1, x2, params)
    assert_close(got, want)


# ------------------------------------------------------------ NNGP, kernel_fn


@pytest.mark.parametrize("axes", list(AXES))
def test_nngp_is_output_outer_product(axes):
    net, params, x1, x2 = network("cnn")
    trace, diag, _, same = AXES[axes]
    f1 = np.asarray(net.apply_fn(params, x1))
    f2 = f1 if same else np.asarray(net.apply_fn(params, x2))
    want = reference_layout(np.multiply.outer(f1, f2), f1.shape, f2.shape, trace, diag)
    got = empirical_nngp_fn(net, trace, diag)(x1, None if same else x2, params)
    assert_close(got, want, axes)


def test_kernel_fn_get_returns_what_is_asked():
    net, params, x1, x2 = network("mlp")
    kernel_fn = empirical_kernel_fn(net, trace_axes=())
    both = kernel_fn(x1, x2, None, params)
    assert both._fields == ("nngp", "ntk")
    assert_close(
        kernel_fn(x1, x2, "ntk", params),
        reference_layout(full_ntk("mlp", False), (4, 3), (2, 3), (), ()),
    )
    assert_close(both.nngp, empirical_nngp_fn(net, ())(x1, x2, params))
    only = kernel_fn(x1, x2, ("ntk",), params)
    assert only._fields == ("ntk",)
    assert_close(only.ntk, both.ntk)


# ------------------------------------------------------------ AUTO cost rule


def test_auto_picks_structured_for_stax_networks():
    net, params, x1, x2 = network("cnn")
    assert auto_implementation(net, x1, x2, params) == NtkImplementation.STRUCTURED_DERIVATIVES


def test_auto_picks_vector_products_for_wide_mlp_with_many_outputs():
    net = stax.serial(stax.Dense(256), stax.Relu(), stax.Dense(256), stax.Relu(), stax.Dense(32))
    x = jnp.ones((8, 64))
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    got = auto_implementation(net.apply_fn, x, None, params, trace_axes=(), vmap_axes=0)
    assert got == NtkImplementation.NTK_VECTOR_PRODUCTS


def test_auto_picks_jacobian_contraction_for_weight_sharing_cnn():
    net = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.Conv(8, (3, 3), padding="SAME"),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )
    x = jnp.ones((4, 16, 16, 3))
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    got = auto_implementation(net.apply_fn, x, None, params, vmap_axes=0)
    assert got == NtkImplementation.JACOBIAN_CONTRACTION


def test_auto_avoids_jacobians_over_the_memory_budget(monkeypatch):
    net = stax.serial(stax.Conv(8, (3, 3), padding="SAME"), stax.GlobalAvgPool(), stax.Dense(1))
    x = jnp.ones((4, 16, 16, 3))
    _, params = net.init_fn(jax.random.PRNGKey(0), x.shape)
    monkeypatch.setattr(cost, "JACOBIAN_MEMORY_BUDGET", 1000)
    got = auto_implementation(net.apply_fn, x, None, params, vmap_axes=0)
    assert got == NtkImplementation.NTK_VECTOR_PRODUCTS


def test_cost_rule_counts_flops_as_documented():
    c = cost.ntk_costs(
        n_params=100,
        flops1=2000.0,
        flops2=1000.0,
        size1=20,
        size2=10,
        batch1=10,
        batch2=5,
        kernel_entries=400,
        separable=True,
        same_inputs=False,
        itemsize=8,
    )
    assert c.jacobian_flops == 3 * 2 * 2000 + 3 * 2 * 1000 + 2 * 100 * 400
    assert c.jacobian_bytes == (20 + 10) * 100 * 8
    assert c.vector_products_flops == 3 * 10 * (1000 / 5 + 2000)


# ------------------------------------------------------------ Monte Carlo


def test_monte_carlo_converges_to_analytic_kernels():
    """Width 512, 40 draws: the mean agrees with kernel_fn within 5 standard
    errors plus a finite-width bias of 2% (O(depth/width) = O(2/512))."""
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(512, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(512, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(4),
    )
    x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 6))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 6))
    n = 40
    mc = monte_carlo_kernel_fn(
        init_fn, apply_fn, jax.random.PRNGKey(2), range(1, n + 1), device_count=0
    )
    means = [np.stack(k) for k in mc(x1, x2, ("nngp", "ntk"))]
    means = np.stack(means)  # (n, 2, N1, N2) running means
    counts = np.arange(1, n + 1)[:, None, None, None]
    draws = counts * means - np.concatenate([np.zeros_like(means[:1]), (counts * means)[:-1]])
    sem = draws.std(0, ddof=1) / np.sqrt(n)
    analytic = kernel_fn(x1, x2, ("nngp", "ntk"))
    assert_within_mc(analytic.nngp, means[-1, 0], sem[0], bias=0.02, what="nngp")
    assert_within_mc(analytic.ntk, means[-1, 1], sem[1], bias=0.02, what="ntk")


def test_monte_carlo_tiles_and_devices_do_not_change_the_estimate():
    """5 rows in tiles of 3 (not a divisor) over 2 devices, kernel kept on host."""
    net = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(3))
    x1 = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    key = jax.random.PRNGKey(3)
    for axes, devices in (({}, 2), ({"trace_axes": (), "diagonal_axes": (0,)}, 1)):
        whole = monte_carlo_kernel_fn(net.init_fn, net, key, 1, device_count=0, **axes)
        tiled = monte_carlo_kernel_fn(
            net.init_fn,
            net,
            key,
            1,
            batch_size=3,
            device_count=devices,
            store_on_device=False,
            **axes,
        )
        a, b = whole(x1, None, ("nngp", "ntk")), tiled(x1, None, ("nngp", "ntk"))
        assert isinstance(b.ntk, np.ndarray)
        assert_close(b.nngp, a.nngp, f"nngp {axes}")
        assert_close(b.ntk, a.ntk, f"ntk {axes}")


@pytest.mark.parametrize(
    "axes, swap",
    [
        ({}, (1, 0, 3, 2, 5, 4)),  # (N1, N2, H1, H2, W1, W2)
        ({"trace_axes": (-1,), "diagonal_axes": (1,)}, (1, 0, 2, 4, 3)),  # (N1, N2, H, W1, W2)
        ({"trace_axes": (), "diagonal_axes": (-1,)}, (1, 0, 3, 2, 5, 4, 6)),  # ... C
    ],
)
def test_monte_carlo_tiles_below_the_diagonal_mirror_those_above(axes, swap):
    """With ``x2=None`` tile (j, i) is tile (i, j) with every paired axis
    swapped, as in NT's ``batch``: a network with dropout (each tile its own
    masks) still gives a symmetric train-train kernel, and a deterministic
    one gives the untiled kernel in each spatial layout."""
    conv = lambda *extra: stax.serial(
        stax.Conv(8, (2, 2), padding="SAME"), stax.Relu(), *extra, stax.Conv(2, (2, 2))
    )
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 4, 3, 2))
    key = jax.random.PRNGKey(1)
    dropout = conv(stax.Dropout(0.5, mode="train"))
    mc = monte_carlo_kernel_fn(
        dropout.init_fn, dropout, key, 1, batch_size=2, device_count=0, **axes
    )
    for name, k in zip(("nngp", "ntk"), mc(x, None, ("nngp", "ntk"))):
        k = np.asarray(k)
        scale = np.abs(k).max()
        np.testing.assert_allclose(k, k.transpose(swap), atol=1e-6 * scale, err_msg=name)
    net = conv()
    whole = monte_carlo_kernel_fn(net.init_fn, net, key, 1, device_count=0, **axes)
    tiled = monte_carlo_kernel_fn(net.init_fn, net, key, 1, batch_size=2, device_count=0, **axes)
    a, b = whole(x, None, ("nngp", "ntk")), tiled(x, None, ("nngp", "ntk"))
    assert_close(b.nngp, a.nngp, f"nngp {axes}")
    assert_close(b.ntk, a.ntk, f"ntk {axes}")


def test_monte_carlo_mean_is_the_average_of_single_draws():
    net = stax.serial(stax.Dense(8), stax.Erf(), stax.Dense(2))
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    key = jax.random.PRNGKey(1)
    ntk_fn = empirical_ntk_fn(net.apply_fn)
    draws, k = [], key
    for _ in range(3):  # NT's sampling scheme, replayed by hand
        k, sub = jax.random.split(k)
        init_key, _ = jax.random.split(sub)
        draws.append(ntk_fn(x, None, net.init_fn(init_key, x.shape)[1]))
    gen = monte_carlo_kernel_fn(net.init_fn, net, key, [1, 3], device_count=0, progress=True)(
        x, None, "ntk"
    )
    got = list(gen)
    assert len(got) == 2
    assert_close(got[0], draws[0], "1 sample")
    assert_close(got[1], np.mean(draws, 0), "3 samples")


def test_monte_carlo_takes_flax_module_apply_whose_kwargs_reject_rng():
    # Module.apply forwards **kwargs to __call__(x), which has no `rng`: the
    # estimate equals that of a wrapper that takes no keywords at all.
    from flax import linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.relu(nn.Dense(16)(x)))

    model = MLP()
    init_fn = lambda key, shape: (None, model.init(key, jnp.zeros(shape)))
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    key = jax.random.PRNGKey(1)
    got = monte_carlo_kernel_fn(init_fn, model.apply, key, 2, device_count=0)(x, None, "ntk")
    wrapped = lambda p, x: model.apply(p, x)
    want = monte_carlo_kernel_fn(init_fn, wrapped, key, 2, device_count=0)(x, None, "ntk")
    assert_close(got, want, "Module.apply vs a wrapper")


def test_monte_carlo_passes_rng_to_a_bare_stax_apply_fn_with_dropout():
    net = stax.serial(stax.Dense(32), stax.Dropout(0.5, mode="train"), stax.Relu(), stax.Dense(1))
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    key = jax.random.PRNGKey(1)
    bare = monte_carlo_kernel_fn(net.init_fn, net.apply_fn, key, 2, device_count=0)
    layer = monte_carlo_kernel_fn(net.init_fn, net, key, 2, device_count=0)
    assert_close(bare(x, None, "nngp"), layer(x, None, "nngp"), "bare apply_fn vs the Layer")


def test_monte_carlo_of_several_outputs_is_one_pytree_per_name():
    """NT's layout for a network with several outputs: ``get="ntk"`` gives the
    list of the outputs' kernels, a tuple of names a ``MonteCarloKernel`` of
    such lists. Dense layers on raw inputs have the empirical NTK
    W_std² x1·x2 / C + b_std² at any weights, so every draw gives it."""
    net = stax.serial(
        stax.FanOut(2),
        stax.parallel(stax.Dense(3, W_std=1.5, b_std=0.5), stax.Dense(2, W_std=0.5)),
    )
    x1 = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 3))
    want = [1.5**2 * x1 @ x2.T / 3 + 0.5**2, 0.5**2 * x1 @ x2.T / 3]
    mc = monte_carlo_kernel_fn(net.init_fn, net, jax.random.PRNGKey(2), 2, device_count=0)
    got = mc(x1, x2, "ntk")
    assert isinstance(got, list) and len(got) == 2
    for g, w, i in zip(got, want, range(2)):
        assert_close(g, w, f"output {i}")
    both = mc(x1, x2, ("nngp", "ntk"))
    assert both._fields == ("nngp", "ntk")
    assert isinstance(both.nngp, list) and isinstance(both.ntk, list)
    for g, w, i in zip(both.ntk, want, range(2)):
        assert_close(g, w, f"ntk of output {i} with both names")


def test_x2_of_nones_means_x1_for_several_inputs():
    """NT spells x2 = x1 for a tuple of inputs as a tuple of Nones. A
    ``parallel`` of Dense layers summed has the empirical NTK
    Σ_b W_b² x1_b·x2_b / C_b at any weights."""
    net = stax.serial(stax.parallel(stax.Dense(2), stax.Dense(2, W_std=2.0)), stax.FanInSum())
    a = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    b = jax.random.normal(jax.random.PRNGKey(1), (3, 5))
    want = a @ a.T / 4 + 4.0 * b @ b.T / 5
    _, params = net.init_fn(jax.random.PRNGKey(2), (a.shape, b.shape))
    for impl in IMPLS:
        got = empirical_ntk_fn(net, implementation=impl)((a, b), (None, None), params)
        assert_close(got, want, f"empirical_ntk_fn {impl.name}")
    got = empirical_kernel_fn(net)((a, b), [None, None], "ntk", params)
    assert_close(got, want, "empirical_kernel_fn")
    mc = monte_carlo_kernel_fn(net.init_fn, net, jax.random.PRNGKey(3), 1, device_count=0)
    assert_close(mc((a, b), (None, None), "ntk"), want, "monte_carlo_kernel_fn")


@pytest.mark.parametrize("with_x2", [False, True])
def test_monte_carlo_tiles_cut_per_input_keyword_pairs_with_their_inputs(with_x2):
    """Aggregate's per-input ``pattern=(for x1, for x2)`` is cut to each
    tile's rows, as NT's batching cuts it: tiles of 2 rows give the untiled
    estimate (the same draws), and a pattern of the identity (each node its
    own only neighbour) gives the estimate of the network without Aggregate."""
    net = stax.serial(
        stax.Dense(16, W_std=1.3),
        stax.Relu(),
        stax.Aggregate(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(5, 3, 2)), rng.normal(size=(3, 3, 2))
    p1 = rng.integers(0, 2, size=(5, 3, 3)).astype(float)
    p2 = rng.integers(0, 2, size=(3, 3, 3)).astype(float)
    x2_, pattern = (x2, (p1, p2)) if with_x2 else (None, (p1, None))
    key = jax.random.PRNGKey(4)
    whole = monte_carlo_kernel_fn(net.init_fn, net, key, 2, device_count=0)
    tiled = monte_carlo_kernel_fn(net.init_fn, net, key, 2, batch_size=2, device_count=0)
    a = whole(x1, x2_, ("nngp", "ntk"), pattern=pattern)
    b = tiled(x1, x2_, ("nngp", "ntk"), pattern=pattern)
    assert_close(b.nngp, a.nngp, "nngp")
    assert_close(b.ntk, a.ntk, "ntk")
    eye = (np.broadcast_to(np.eye(3), (5, 3, 3)), np.broadcast_to(np.eye(3), (3, 3, 3)))
    # Identity in Aggregate's place keeps serial's split of the key: the same draws.
    plain = stax.serial(
        stax.Dense(16, W_std=1.3), stax.Relu(), stax.Identity(), stax.GlobalAvgPool(), stax.Dense(1)
    )
    want = monte_carlo_kernel_fn(plain.init_fn, plain, key, 2, device_count=0)(x1, x2, "ntk")
    got = tiled(x1, x2, "ntk", pattern=eye)
    assert_close(got, want, "identity pattern")


# ------------------------------------------------------------ Taylor


def _quadratic():
    A = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    B = jax.random.normal(jax.random.PRNGKey(1), (4, 4))

    def f(p, x):  # degree 2 in p = {"u": (4,), "v": ()}
        return x @ A @ p["u"] + p["u"] @ B @ p["u"] * x[:, 0] + p["v"] * x.sum(1)

    p0 = {"u": jnp.array([0.3, -1.0, 0.5, 2.0]), "v": jnp.array(0.7)}
    p1 = {"u": jnp.array([1.1, 0.4, -0.8, 0.1]), "v": jnp.array(-1.3)}
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 3))
    return f, p0, p1, x


def test_linearize_is_exact_at_the_expansion_point():
    net, params, x1, _ = network("mlp")
    assert_close(linearize(net.apply_fn, params)(params, x1), net.apply_fn(params, x1))


def test_linearize_is_the_first_order_taylor_expansion():
    net, params, x1, _ = network("mlp")
    d = jax.tree_util.tree_map(lambda a: jnp.cos(jnp.arange(a.size).reshape(a.shape)), params)
    f_lin = linearize(net.apply_fn, params)
    at = lambda t: jax.tree_util.tree_map(lambda a, b: a + t * b, params, d)
    _, jd = jax.jvp(lambda p: net.apply_fn(p, x1), (params,), (d,))
    for t in (0.5, -2.0):
        assert_close(f_lin(at(t), x1), net.apply_fn(params, x1) + t * jd, f"t={t}")
    assert_close(taylor_expand(net.apply_fn, params, 1)(at(0.5), x1), f_lin(at(0.5), x1))
    # The remainder of a smooth function is second order: halving t quarters it.
    r = [np.abs(net.apply_fn(at(t), x1) - f_lin(at(t), x1)).max() for t in (1e-2, 5e-3)]
    assert 3.5 < r[0] / r[1] < 4.5


def test_linearize_names_parameters_of_another_width():
    net, params, x1, _ = network("mlp")
    wider = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a], axis=-1), params)
    with pytest.raises(ValueError, match=r"linearize: the new parameters must have the shapes"):
        linearize(net.apply_fn, params)(wider, x1)


def test_taylor_expand_degree_two_is_exact_on_a_quadratic():
    f, p0, p1, x = _quadratic()
    assert_close(taylor_expand(f, p0, 2)(p1, x), f(p1, x))
    first = np.asarray(taylor_expand(f, p0, 1)(p1, x))
    assert np.abs(first - np.asarray(f(p1, x))).max() > 1e-3  # degree 1 is not


# ------------------------------------------------------------ errors


def test_bad_axes_are_value_errors():
    net, params, x1, x2 = network("mlp")
    with pytest.raises(ValueError, match="trace_axes"):
        empirical_ntk_fn(net, trace_axes=(5,))(x1, x2, params)
    with pytest.raises(ValueError, match="both"):
        empirical_ntk_fn(net, trace_axes=(-1,), diagonal_axes=(1,))(x1, x2, params)
    with pytest.raises(ValueError, match="diagonal_axes"):
        empirical_nngp_fn(net, diagonal_axes="0")
    with pytest.raises(ValueError, match="diagonal axis 0"):
        empirical_ntk_fn(net, diagonal_axes=(0,))(x1, x2, params)


def test_mismatched_inputs_are_value_errors():
    net, params, x1, x2 = network("mlp")
    with pytest.raises(ValueError, match="features"):
        empirical_ntk_fn(net)(x1, x2[:, :3], params)
    with pytest.raises(ValueError, match="same structure"):
        empirical_ntk_fn(net)(x1, [x2], params)
    with pytest.raises(ValueError, match="vmap_axes"):
        empirical_ntk_fn(net.apply_fn, vmap_axes=(0, 0, {"mask": 0}))(x1, x2, params)


def test_unknown_implementation_and_get_are_value_errors():
    with pytest.raises(ValueError, match="implementation"):
        empirical_ntk_fn(lambda p, x: x, implementation=7)
    with pytest.raises(ValueError, match="implementation"):
        empirical_kernel_fn(lambda p, x: x, implementation="fastest")
    net, params, x1, x2 = network("mlp")
    with pytest.raises(ValueError, match="get"):
        empirical_kernel_fn(net)(x1, x2, "cov1", params)
    with pytest.raises(ValueError, match="n_samples"):
        monte_carlo_kernel_fn(net.init_fn, net.apply_fn, jax.random.PRNGKey(0), 0)


@pytest.mark.parametrize(
    "padding,strides,param",
    [("SAME", (1, 1), "ntk"), ("VALID", (2, 1), "standard"), ("CIRCULAR", (1, 2), "ntk")],
)
def test_conv_patches_from_spec_equal_the_layers_own(padding, strides, param):
    from ntk.empirical.structured import _patches, _patches_by_layer, _Site

    conv = stax.Conv(3, (3, 2), strides=strides, padding=padding, W_std=1.7, parameterization=param)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 6, 4))
    _, params = conv.init_fn(jax.random.PRNGKey(1), x.shape)
    site = _Site(conv, params, x, {})
    gram = lambda p: np.einsum("nhwc,mxyc->nhwmxy", p, p)  # entry order is free
    a, b = _patches(site, x), _patches_by_layer(site, x)
    assert a.shape == b.shape
    assert_close(gram(a), gram(b))


KEY_MC = jax.random.PRNGKey(0)


def _mlp():
    """A small stax MLP with NumPy parameters: the checks run before any
    compilation, so the test needs no initialisation."""
    net = stax.serial(stax.Dense(3), stax.Relu(), stax.Dense(2))
    rng = np.random.default_rng(0)
    params = (
        (rng.normal(size=(4, 3)), rng.normal(size=3)),
        (),
        (rng.normal(size=(3, 2)), rng.normal(size=2)),
    )
    x1, x2 = jnp.asarray(rng.normal(size=(2, 4))), jnp.asarray(rng.normal(size=(3, 4)))
    return net, params, x1, x2


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (
            lambda n, p, x1, x2: empirical_ntk_fn(n)(x1.at[0, 0].set(jnp.nan), x2, p),
            ValueError,
            "ntk_fn: `x1` must be finite; got 1 NaN/inf",
        ),
        (
            lambda n, p, x1, x2: empirical_nngp_fn(n)(x1, x2.at[0, 0].set(jnp.inf), p),
            ValueError,
            "nngp_fn: `x2` must be finite",
        ),
        (
            lambda n, p, x1, x2: empirical_ntk_fn(n.apply_fn)(
                x1, x2, jax.tree_util.tree_map(lambda a: a * jnp.nan, p)
            ),
            ValueError,
            "ntk_fn: `params` must be finite",
        ),
        (
            lambda n, p, x1, x2: empirical_ntk_fn(n)(np.array([["a"]]), None, p),
            TypeError,
            "`x1` must hold numeric arrays",
        ),
        (
            lambda n, p, x1, x2: auto_implementation(n, x1 * jnp.nan, None, p),
            ValueError,
            "auto_implementation: `x1` must be finite",
        ),
        (
            lambda n, p, x1, x2: empirical_kernel_fn(n, implementation="fast"),
            ValueError,
            "unknown `implementation`",
        ),
        (
            lambda n, p, x1, x2: monte_carlo_kernel_fn(
                n.init_fn, n.apply_fn, KEY_MC, 2, batch_size=-1
            ),
            ValueError,
            "`batch_size` must be an int >= 0",
        ),
        (
            lambda n, p, x1, x2: monte_carlo_kernel_fn(
                n.init_fn, n.apply_fn, KEY_MC, 2, device_count=-2
            ),
            ValueError,
            "`device_count` must be an int >= -1",
        ),
        (
            lambda n, p, x1, x2: monte_carlo_kernel_fn(n.init_fn, n.apply_fn, None, 2),
            TypeError,
            "`key` must be a PRNG key",
        ),
        (
            lambda n, p, x1, x2: monte_carlo_kernel_fn(
                n.init_fn, n.apply_fn, KEY_MC, 2, progress="yes"
            ),
            TypeError,
            "`progress`",
        ),
        (
            lambda n, p, x1, x2: monte_carlo_kernel_fn(n.init_fn, 3, KEY_MC, 2),
            TypeError,
            "`apply_fn` must be a function",
        ),
        (
            lambda n, p, x1, x2: from_linen(None, [("params", p)]),
            TypeError,
            "`variables` must be the dict",
        ),
    ],
)
def test_bad_inputs_are_rejected_by_name(call, exc, message):
    net, params, x1, x2 = _mlp()
    with pytest.raises(exc, match=message):
        call(net, params, x1, x2)


def test_from_nnx_rejects_a_missing_method():
    from flax import nnx

    with pytest.raises(ValueError, match="`method` must name a method"):
        from_nnx(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), method="forward")


@pytest.mark.parametrize("impl", IMPLS, ids=lambda i: i.name)
def test_masked_stax_network_kernel_is_that_of_its_zeroed_outputs(impl):
    # With mask_constant the network returns a MaskedArray; its empirical NTK
    # is the NTK of the outputs with masked entries zeroed (stax.unmask_fn),
    # checked against a brute-force Jacobian of that function.
    net = stax.serial(
        stax.Dense(4, b_std=0.2), stax.Relu(), stax.Dense(3), stax.Flatten(), stax.Dense(2)
    )
    x = jax.random.normal(jax.random.PRNGKey(7), (3, 5, 2)).at[0, 3:].set(7.0)
    _, params = net.init_fn(jax.random.PRNGKey(8), x.shape)
    plain = stax.unmask_fn(lambda p, x: net.apply_fn(p, x, mask_constant=7.0))
    out = plain(params, x)
    want = reference_layout(
        brute_force_ntk(plain, params, x, None), out.shape, out.shape, (-1,), ()
    )
    got = empirical_ntk_fn(net, implementation=impl)(x, None, params, mask_constant=7.0)
    assert_close(got, want, f"masked {impl.name}")


def test_nt_top_level_names_are_this_librarys_functions():
    # `import ntk as nt` runs NT code that calls nt.empirical_ntk_fn, nt.batch, ...
    import ntk as nt
    from ntk import empirical, parallel

    for name in (
        "empirical_kernel_fn",
        "empirical_ntk_fn",
        "empirical_nngp_fn",
        "linearize",
        "taylor_expand",
        "monte_carlo_kernel_fn",
        "NtkImplementation",
    ):
        assert getattr(nt, name) is getattr(empirical, name), name
    assert nt.batch is parallel.batch


def test_bfloat16_inputs_and_parameters_are_numbers():
    # numpy does not count ml_dtypes' bfloat16 as a number; the checks did.
    w = jnp.arange(6.0).reshape(3, 2)
    x = jnp.array([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0]])
    got = empirical_ntk_fn(lambda p, a: a @ p)(x.astype(jnp.bfloat16), None, w.astype(jnp.bfloat16))
    assert got.dtype == jnp.bfloat16
    # f = x W is linear in W: Θ(x, x') = x·x' (averaged over the 2 outputs' trace)
    np.testing.assert_allclose(got.astype(np.float32), x @ x.T, rtol=1e-2)


def test_nnx_module_in_training_mode_is_named_with_its_stateful_layers():
    # Calling it updates Rngs/batch statistics, which failed inside the
    # kernel with flax's TraceContextError; in eval mode the kernel works.
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
            self.drop = nnx.Dropout(0.5, rngs=nnx.Rngs(1))

        def __call__(self, x):
            return self.drop(self.lin(x))

    net = Net()
    with pytest.raises(
        ValueError, match=r"from_nnx: the module is in training mode.*drop \(Dropout"
    ):
        from_nnx(net)
    net.eval()
    f, params = from_nnx(net)
    x = jnp.array([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]])
    np.testing.assert_allclose(empirical_ntk_fn(f)(x, None, params), x @ x.T + 1, rtol=1e-5)
