"""ntk.mup: abc theory (TP4 §3), parametrized networks, μP optax transforms, Flax.

Theory values are the paper's (TP4 Table 1, Thm. 3.3, Thm. 4.1); optimizer
updates are compared with hand-written per-layer updates from TP5 Table 3;
weight scales with Monte Carlo variances; the symmetry of TP4 Eq. 5 with
explicit SGD trajectories.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

from flax_models import LinenMLP, LinenTransformer, NnxMLP
from ntk import mup, stax
from ntk.mup.flax import infer_roles

KEY = jax.random.PRNGKey(0)


# ------------------------------------------------------------------ theory


def paper_r(a, b, c):
    """TP4 Def. 3.2 written out: min(a_{L+1}+b_{L+1}, 2a_{L+1}+c) + c - 1 + min_l[2a_l + 1(l=1)]."""
    L = len(a) - 1
    return min(a[L] + b[L], 2 * a[L] + c) + c - 1 + min(2 * a[l] + (l == 0) for l in range(L))


@pytest.mark.parametrize(
    "name, c, depth, r",
    [
        # SP's 1/2 in Table 1 needs a hidden layer (2a_l = 0 enters the min);
        # with L = 1 only the input layer's 2a_1 + 1 = 1 does: r = 1/2 + 1.
        ("sp", 1.0, 1, 1.5),
        ("sp", 1.0, 2, 0.5),
        ("sp", 1.0, 3, 0.5),
        ("ntk", None, 1, 0.5),
        ("ntk", None, 3, 0.5),
        ("mf", None, 1, 0.0),
        ("mup", None, 1, 0.0),
        ("mup", None, 3, 0.0),
    ],
)
def test_r_matches_the_papers_table(name, c, depth, r):
    assert mup.abc(name, depth, c=c).r == pytest.approx(r)


@pytest.mark.parametrize(
    "name, c, regime",
    [
        ("sp", 1.0, "kernel"),
        ("sp", 0.0, "unstable"),
        ("sp", 0.5, "unstable"),
        ("ntk", None, "kernel"),
        ("mf", None, "feature learning"),
        ("mup", None, "feature learning"),
    ],
)
def test_regime_classification_matches_the_paper(name, c, regime):
    depth = 1 if name == "mf" else 2
    p = mup.abc(name, depth, c=c)
    assert p.regime == regime
    assert p.feature_learning == (regime == "feature learning")
    assert p.kernel_regime == (regime == "kernel")


def test_sp_at_fixed_lr_violates_only_training_conditions():
    """TP4 Thm. 4.1: SP is stable at init; c = 0 makes the output blow up."""
    cond = mup.abc("sp", 2, c=0.0).conditions()
    assert cond["a_1 + b_1 = 0"] and cond["a_l + b_l = 1/2 (2 <= l <= L)"]
    assert not cond["2a_{L+1} + c >= 1"]


def test_sp_with_too_small_lr_is_stable_but_trivial():
    p = mup.abc("sp", 2, c=1.5)
    assert p.stable and not p.nontrivial and p.regime == "trivial"


@pytest.mark.parametrize("form", mup.FORMS)
@pytest.mark.parametrize("zero_readout", [False, True])
def test_all_mup_gauges_are_feature_learning(form, zero_readout):
    p = mup.abc("mup", 3, form=form, zero_readout=zero_readout)
    assert p.r == pytest.approx(0.0) and p.feature_learning


@pytest.mark.parametrize("seed", range(20))
def test_r_agrees_with_definition_3_2_on_random_parametrizations(seed):
    rng = np.random.default_rng(seed)
    L = int(rng.integers(1, 4))
    a = tuple(rng.choice([-1, -0.5, 0, 0.5, 1], L + 1))
    b = tuple(rng.choice([0, 0.5, 1], L + 1))
    c = float(rng.choice([-1, 0, 0.5, 1]))
    assert mup.ABC(a, b, c).r == pytest.approx(paper_r(a, b, c))


@pytest.mark.parametrize("theta", [0.3, -0.5, (0.5, -0.25, 0.1)])
@pytest.mark.parametrize("name", ["sp", "ntk", "mup"])
def test_symmetry_shift_keeps_r_and_regime(name, theta):
    p = mup.abc(name, 2, c=1.0 if name == "sp" else None)
    q = p.shift(theta)
    assert q.r == pytest.approx(p.r) and q.regime == p.regime


def test_predicted_feature_slopes_are_minus_r():
    assert mup.abc("ntk", 2).predicted_slopes()["dh^2"] == pytest.approx(-0.5)
    assert mup.abc("mup", 2).predicted_slopes()["dh^2"] == pytest.approx(0.0)
    assert mup.abc("sp", 2, c=0.0).predicted_slopes()["df"] >= 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(a=(0, 0), b=(0,)), "one entry per layer"),
        (dict(a=(0, 0), b=(0, 0), c=(0, 0, 0)), "per-layer `c`"),
        (dict(a=(0, float("inf")), b=(0, 0)), "only the readout"),
    ],
)
def test_abc_rejects_bad_exponents(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mup.ABC(**kwargs)


def test_mean_field_needs_one_hidden_layer():
    with pytest.raises(ValueError, match="depth=1"):
        mup.abc("mf", 2)


def test_unknown_preset_is_named_in_the_error():
    with pytest.raises(ValueError, match="'foo'"):
        mup.abc("foo")


# ------------------------------------------------------------------ stax


def mlp(n, depth=2, b_std=0.5, parameterization="ntk"):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(n, b_std=b_std, parameterization=parameterization), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, b_std=b_std, parameterization=parameterization))


X = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
Y = jnp.cos(X[:, :1])


@pytest.mark.parametrize("name", ["sp", "ntk", "mup"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_at_the_base_width_every_parametrization_is_the_native_network(name, parameterization):
    model = mlp(32, parameterization=parameterization)
    net = mup.parametrize(model, name, base_width=32)
    w = net.init(KEY, X)
    _, native = model.init_fn(KEY, X.shape)
    np.testing.assert_allclose(net.apply_fn(w, X), model.apply_fn(native, X), rtol=1e-6)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_mup_effective_weight_variances_follow_def_5_1(parameterization):
    """Var W¹ = 1/d, Var W² = 1/n, Var W³ = n₀/n² (σ_w = 1, base n₀)."""
    n, n0, d = 512, 16, 3
    model = mlp(n, b_std=None, parameterization=parameterization)
    net = mup.parametrize(model, "mup", base_width=n0)
    w = net.init(KEY, X)
    native = jax.tree_util.tree_map(
        lambda s, p: p * s.fwd_mult, net.info, w, is_leaf=lambda s: isinstance(s, mup.LeafScale)
    )
    Ws = [native[0][0], native[2][0], native[4][0]]
    if parameterization == "ntk":  # stax multiplies by 1/sqrt(fan_in) in apply
        Ws = [W / math.sqrt(W.shape[0]) for W in Ws]
    expected = [1 / d, 1 / n, n0 / n**2]
    for W, v in zip(Ws, expected):
        # sample variance of m Gaussians: relative sd sqrt(2/m); 5 sd
        tol = 5 * math.sqrt(2 / W.size)
        assert float(jnp.var(W)) == pytest.approx(v, rel=tol)


def test_zero_readout_gives_zero_initial_output():
    net = mup.parametrize(mlp(64, b_std=None), mup.abc("mup", 2, zero_readout=True), base_width=16)
    assert float(jnp.max(jnp.abs(net.apply_fn(net.init(KEY, X), X)))) == 0.0


def sgd_trajectory(net, lr, steps=3):
    w = net.init(KEY, X)
    opt = mup.sgd(lr, net.info)

    @jax.jit
    def run(w):
        def step(carry, _):
            w, state = carry
            g = jax.grad(lambda w: 0.5 * jnp.mean((net.apply_fn(w, X) - Y) ** 2))(w)
            u, state = opt.update(g, state, w)
            return (optax.apply_updates(w, u), state), None

        w = jax.lax.scan(step, (w, opt.init(w)), None, length=steps)[0][0]
        return net.apply_fn(w, X)

    return run(w)


def test_the_three_mup_gauges_train_identically_under_sgd():
    """TP4 Eq. 5: (a+θ, b−θ, c−2θ) leaves every SGD step unchanged."""
    model = mlp(128)
    outs = [
        sgd_trajectory(mup.parametrize(model, mup.abc("mup", 2, form=f), base_width=32), 0.3)
        for f in mup.FORMS
    ]
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(outs[2], outs[0], rtol=1e-8, atol=1e-10)


def grads_of(net, w):
    return jax.jit(jax.grad(lambda w: 0.5 * jnp.mean((net.apply_fn(w, X) - Y) ** 2)))(w)


def test_mup_sgd_is_tp5_table3_per_layer_update():
    """Input & hidden biases: η·fan_out/n₀; hidden: η; readout: η·n₀/fan_in; readout bias: η."""
    n, n0, lr = 256, 32, 0.1
    net = mup.parametrize(mlp(n), mup.abc("mup", 2, form="table3"), base_width=n0)
    w = net.init(KEY, X)
    g = grads_of(net, w)
    u, _ = mup.sgd(lr, net.info).update(g, mup.sgd(lr, net.info).init(w), w)
    m = n / n0
    expected = {(0, 0): m, (0, 1): m, (2, 0): 1.0, (2, 1): m, (4, 0): 1 / m, (4, 1): 1.0}
    for (i, j), mult in expected.items():
        np.testing.assert_allclose(u[i][j], -lr * mult * g[i][j], rtol=1e-12)


def test_mup_adam_is_tp5_table3_per_layer_update():
    """First Adam step is η·mult·g/(|g|+ε); mult 1 (input, biases), n₀/n (hidden, readout)."""
    n, n0, lr, eps = 256, 32, 1e-2, 1e-8
    net = mup.parametrize(mlp(n), mup.abc("mup", 2, form="table3"), base_width=n0)
    w = net.init(KEY, X)
    g = grads_of(net, w)
    opt = mup.adam(lr, net.info, eps=eps)
    u, _ = opt.update(g, opt.init(w), w)
    m = n / n0
    expected = {(0, 0): 1.0, (0, 1): 1.0, (2, 0): 1 / m, (2, 1): 1.0, (4, 0): 1 / m, (4, 1): 1.0}
    for (i, j), mult in expected.items():
        want = -lr * mult * g[i][j] / (jnp.abs(g[i][j]) + eps)
        np.testing.assert_allclose(u[i][j], want, rtol=1e-6, atol=1e-12)


def test_table8_gauge_has_readout_multiplier_and_mup_package_lrs():
    """TP5 Table 8: readout multiplier 1/fan_in, SGD LR η·fan_in, Adam LR η."""
    n, n0 = 256, 32
    net = mup.parametrize(mlp(n), mup.abc("mup", 2, form="table8"), base_width=n0)
    readout = net.info[4][0]
    m = n / n0
    # stax's "ntk" Dense already divides by sqrt(fan_in): the extra factor is m^{-1/2}
    assert readout.fwd_mult == pytest.approx(m**-0.5)
    assert readout.lr_mult == pytest.approx(m)
    assert readout.adam_lr_mult == pytest.approx(1.0)
    assert net.info[2][0].adam_lr_mult == pytest.approx(1 / m)


def test_scale_by_width_composes_inside_an_optax_chain():
    net = mup.parametrize(mlp(64), "mup", base_width=16)
    w = net.init(KEY, X)
    g = grads_of(net, w)
    chain = optax.chain(
        optax.scale_by_adam(),
        mup.scale_by_width(net.info, "adam"),
        optax.scale_by_learning_rate(1e-3),
    )
    u1, _ = chain.update(g, chain.init(w), w)
    ref = mup.adam(1e-3, net.info)
    u2, _ = ref.update(g, ref.init(w), w)
    for a, b in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_parametrize_rejects_a_network_without_a_readout():
    with pytest.raises(ValueError, match="at least 2 Dense"):
        mup.parametrize(stax.serial(stax.Dense(8), stax.Relu()), "mup")


def test_parametrize_rejects_an_abc_of_the_wrong_depth():
    with pytest.raises(ValueError, match="2 hidden layers"):
        mup.parametrize(mlp(8), mup.abc("mup", 3))


def test_parametrize_rejects_unknown_models():
    with pytest.raises(TypeError, match="must be an ntk.stax"):
        mup.parametrize(object(), "mup")


def test_scale_by_width_rejects_non_info_trees():
    with pytest.raises(TypeError, match="LeafScale"):
        mup.sgd(0.1, {"w": 1.0})


# ------------------------------------------------------------------ Flax


EXPECTED_ROLES = {
    "0/kernel": ("input", 4.0),
    "0/bias": ("bias", 4.0),
    "1/kernel": ("hidden", 4.0),
    "1/bias": ("bias", 4.0),
    "2/kernel": ("output", 4.0),
    "2/bias": ("fixed", 1.0),
}


def test_width_inference_on_a_linen_mlp():
    net = mup.parametrize(LinenMLP(128), "mup", base=LinenMLP(32), x=X)
    got = {}
    for path, s in jax.tree_util.tree_flatten_with_path(
        net.info, is_leaf=lambda s: isinstance(s, mup.LeafScale)
    )[0]:
        layer, kind = path[0].key.split("_")[1], path[1].key
        got[f"{layer}/{kind}"] = (s.role, s.width_mult)
    assert got == EXPECTED_ROLES


def test_width_inference_on_an_nnx_mlp():
    net = mup.parametrize(NnxMLP(128, nnx.Rngs(0)), "mup", base=NnxMLP(32, nnx.Rngs(1)))
    names = {"inp": "0", "mid": "1", "out": "2"}
    got = {}
    for path, s in jax.tree_util.tree_flatten_with_path(
        net.info, is_leaf=lambda s: isinstance(s, mup.LeafScale)
    )[0]:
        got[f"{names[path[0].key]}/{path[1].key}"] = (s.role, s.width_mult)
    assert got == EXPECTED_ROLES


def test_delta_model_finds_widths_when_target_equals_base():
    p = lambda m: jax.eval_shape(m.init, KEY, X)["params"]
    roles = infer_roles(p(LinenMLP(32)), p(LinenMLP(32)), delta=p(LinenMLP(64)))
    assert roles["Dense_1/kernel"] == ("hidden", None, 1.0)
    assert roles["Dense_2/kernel"][0] == "output"


def test_model_at_the_base_width_without_delta_is_told_to_pass_delta():
    with pytest.raises(ValueError, match=r"found 0 input and 0 output weights.*pass `delta=`"):
        mup.parametrize(LinenMLP(32), "mup", base=LinenMLP(32), x=X)


def test_annotations_override_inferred_roles():
    p = lambda m: jax.eval_shape(m.init, KEY, X)["params"]
    roles = infer_roles(p(LinenMLP(64)), p(LinenMLP(32)), annotations={"Dense_2/bias": "bias"})
    assert roles["Dense_2/bias"][0] == "bias"


def test_width_inference_rejects_models_with_different_parameters():
    class Other(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(x)

    with pytest.raises(ValueError, match="same parameters"):
        mup.parametrize(LinenMLP(64), "mup", base=Other(), x=X)


def test_linen_mup_readout_variance_is_one_over_fan_in_squared():
    n, n0 = 1024, 32
    net = mup.parametrize(LinenMLP(n), "mup", base=LinenMLP(n0), x=X)
    w = net.init(KEY, X)
    s = net.info["Dense_2"]["kernel"]
    W = w["Dense_2"]["kernel"] * s.fwd_mult
    # Flax's lecun_normal is a truncated normal with variance 1/fan_in
    tol = 5 * math.sqrt(2 / W.size)
    assert float(jnp.var(W)) == pytest.approx(n0 / n**2, rel=tol)


class _LinenEmbedMLP(nn.Module):
    width: int

    @nn.compact
    def __call__(self, tokens):
        return nn.Dense(1)(nn.relu(nn.Embed(16, self.width)(tokens)))


class _NnxEmbedMLP(nnx.Module):
    def __init__(self, width, rngs):
        self.embed = nnx.Embed(16, width, rngs=rngs)
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, tokens):
        return self.out(jax.nn.relu(self.embed(tokens)))


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_flax_embedding_entries_have_width_independent_variance_under_mup(kind):
    # Flax draws Embed with variance 1/width; μP's input weights have
    # Θ(1) entries: variance 1/n0 at every width n (1/n0 at n = n0).
    n, n0 = 1024, 32
    tokens = jnp.arange(16)
    if kind == "linen":
        net = mup.parametrize(_LinenEmbedMLP(n), "mup", base=_LinenEmbedMLP(n0), x=tokens)
        w = net.init(KEY, tokens)["Embed_0"]["embedding"]
        s = net.info["Embed_0"]["embedding"]
    else:
        net = mup.parametrize(
            _NnxEmbedMLP(n, nnx.Rngs(0)), "mup", base=_NnxEmbedMLP(n0, nnx.Rngs(0))
        )
        w, s = net.init_fn()["embed"]["embedding"], net.info["embed"]["embedding"]
    assert s.role == "input"
    W = w * s.fwd_mult
    assert float(jnp.var(W)) == pytest.approx(1 / n0, rel=5 * math.sqrt(2 / W.size))


def test_nnx_training_step_with_mup_adam_changes_every_parameter():
    net = mup.parametrize(NnxMLP(64, nnx.Rngs(0)), "mup", base=NnxMLP(16, nnx.Rngs(1)))
    w = net.init_fn()
    opt = mup.adam(1e-2, net.info)
    g = jax.jit(jax.grad(lambda w: jnp.mean((net.apply_fn(w, X) - Y) ** 2)))(w)
    u, _ = jax.jit(opt.update)(g, opt.init(w), w)
    assert all(float(jnp.max(jnp.abs(x))) > 0 for x in jax.tree_util.tree_leaves(u))


# ------------------------------------------------------------------ validation

_NET = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: mup.ABC(a="00", b=(0, 0)), TypeError, "`a` must be a sequence of numbers"),
        (lambda: mup.ABC(a=(0, 0), b=(0, 0), c=float("nan")), ValueError, "`c`"),
        (lambda: mup.ABC(a=(0, 0), b=(0, 0), name=3), TypeError, "`name` must be a str"),
        (lambda: mup.abc("mup", 1).layer(0), ValueError, r"`l` must be an int in \[1, 2\]"),
        (lambda: mup.abc("mup", 1).shift(float("inf")), ValueError, "`theta`"),
        (lambda: mup.abc("mup", depth=0), ValueError, "`depth` must be an int >= 1"),
        (lambda: mup.abc("mup", depth=1.0), TypeError, "`depth` must be an int"),
        (
            lambda: mup.abc("mup", form="table9"),
            ValueError,
            "`form` must be one of 'tp4', 'table3', 'table8'; got 'table9'",
        ),
        (lambda: mup.abc("sp", c=float("inf")), ValueError, "`c`"),
        (
            lambda: mup.parametrize(_NET, "mup", base_width=float("inf")),
            ValueError,
            "`base_width` must be a number > 0",
        ),
        (lambda: mup.parametrize(_NET, "mup", base_width=True), TypeError, "`base_width`"),
        (lambda: mup.parametrize(_NET, "mup", input_shape=(1, 0)), ValueError, "`input_shape`"),
        (
            lambda: mup.sgd(-0.1, mup.parametrize(_NET, "mup").info),
            ValueError,
            "mup.sgd: `learning_rate` must be a number >= 0; got -0.1",
        ),
        (
            lambda: mup.adam(mup.parametrize(_NET, "mup").info, 1e-3),
            TypeError,
            r"mup.adam: `learning_rate` must be .* got the network's `info` tree "
            r"\(the arguments are mup.adam\(learning_rate, info\)\)",
        ),
        (
            lambda: mup.sgd(0.1, mup.parametrize(_NET, "mup").info, momentum=2.0),
            ValueError,
            r"`momentum` must be a number in \[0, 1\]",
        ),
        (
            lambda: mup.adam(1e-3, mup.parametrize(_NET, "mup").info, b2=1.0),
            ValueError,
            r"`b2` must be a number in \[0, 1\)",
        ),
        (lambda: mup.adam(1e-3, mup.parametrize(_NET, "mup").info, eps=-1.0), ValueError, "`eps`"),
        (
            lambda: mup.multipliers(mup.parametrize(_NET, "mup").info, "lion"),
            ValueError,
            "`rule` must be one of 'sgd', 'adam'; got 'lion'",
        ),
        (lambda: mup.attention_fn(16.0), TypeError, "attention_fn: `base_head_dim` must be an int"),
        (lambda: mup.attention_fn(16, "softmax"), TypeError, "`attention` must be an attention"),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_schedules_are_accepted_as_learning_rates():
    # A callable learning rate is not range-checked; a constant schedule must
    # give the same update as the number (whose values TP5 Table 3 tests fix).
    net = mup.parametrize(_NET, "mup", base_width=4)
    _, w = net.init_fn(KEY, (2, 3))
    g = jax.tree_util.tree_map(jnp.ones_like, w)
    updates = []
    for lr in (optax.constant_schedule(0.1), 0.1):
        opt = mup.sgd(lr, net.info)
        updates.append(opt.update(g, opt.init(w), w)[0])
    for u, v in zip(*(jax.tree_util.tree_leaves(u) for u in updates)):
        np.testing.assert_array_equal(u, v)


def test_infer_roles_rejects_unknown_annotation_roles():
    p = {"Dense_0": {"kernel": jnp.ones((3, 8))}}
    base = {"Dense_0": {"kernel": jnp.ones((3, 4))}}
    with pytest.raises(ValueError, match=r"`annotations\['Dense_0/kernel'\]` must be a role"):
        infer_roles(p, base, annotations={"Dense_0/kernel": "embedding"})
    with pytest.raises(TypeError, match="`annotations` must be a dict"):
        infer_roles(p, base, annotations=[("Dense_0/kernel", "input")])


def test_mup_adam_under_inject_hyperparams_equals_mup_adam_and_accepts_a_warmup_from_zero():
    # inject_hyperparams traces every argument, weight_decay included, and
    # passes a warmup schedule's first value, 0, as the learning rate.
    net = mup.parametrize(_NET, "mup")
    _, w = net.init_fn(jax.random.PRNGKey(1), (8, 3))
    g = jax.tree_util.tree_map(lambda a: jnp.cos(jnp.arange(a.size).reshape(a.shape)), w)
    ref = mup.adam(1e-3, net.info, weight_decay=0.1)
    want, _ = ref.update(g, ref.init(w), w)
    opt = optax.inject_hyperparams(mup.adam)(learning_rate=1e-3, info=net.info, weight_decay=0.1)
    got, _ = jax.jit(opt.update)(g, opt.init(w), w)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    warm = optax.inject_hyperparams(mup.adam)(
        learning_rate=optax.linear_schedule(0.0, 1e-3, 10), info=net.info
    )
    first, _ = jax.jit(warm.update)(g, warm.init(w), w)
    assert all(float(jnp.abs(a).max()) == 0.0 for a in jax.tree_util.tree_leaves(first))


def test_mup_sgd_drives_nnx_optimizer_with_the_per_tensor_learning_rates():
    # nnx.Optimizer hands the transformation plain arrays where `info` holds
    # nnx.Param-wrapped scales; each tensor must still move by -η·m·grad.
    model = NnxMLP(64, nnx.Rngs(0))
    net = mup.parametrize(model, mup.abc("mup", 2, form="table3"), base=NnxMLP(16, nnx.Rngs(1)))
    before = jax.tree_util.tree_map(jnp.array, nnx.state(model, nnx.Param))
    x = jnp.array([[1.0, -2.0, 0.5], [0.3, 0.1, -1.0]])
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    nnx.Optimizer(model, mup.sgd(0.1, net.info), wrt=nnx.Param).update(model, grads)
    after = nnx.state(model, nnx.Param)
    mults = mup.multipliers(net.info, "sgd")
    moved = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda a, b: a - b, after, before))
    want = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda m, g: -0.1 * m * g, mults, grads)
    )
    assert {float(m) for m in jax.tree_util.tree_leaves(mults)} != {1.0}  # not all alike
    for a, b in zip(moved, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


class _NnxTrainMode(nnx.Module):
    """BatchNorm on batch statistics and an active Dropout: state updated per call."""

    def __init__(self, width, rngs):
        self.inp = nnx.Linear(3, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, momentum=0.5, rngs=rngs)
        self.drop = nnx.Dropout(0.25, rngs=rngs)
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(jax.nn.relu(self.bn(self.inp(x)))))


def test_nnx_module_in_training_mode_trains_itself_in_the_table3_gauge():
    model = _NnxTrainMode(64, nnx.Rngs(0))
    net = mup.parametrize(
        model, mup.abc("mup", 1, form="table3"), base=_NnxTrainMode(16, nnx.Rngs(1))
    )
    nnx.update(model, net.init_fn())
    before = jax.tree_util.tree_map(jnp.array, nnx.state(model, nnx.Param))
    stats = jax.tree_util.tree_map(jnp.array, nnx.state(model, nnx.BatchStat))
    x = jax.random.normal(KEY, (8, 3), jnp.float32)  # the module's dtype
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    nnx.Optimizer(model, mup.sgd(0.1, net.info), wrt=nnx.Param).update(model, grads)
    moved = jax.tree_util.tree_map(lambda a, b: a - b, nnx.state(model, nnx.Param), before)
    want = jax.tree_util.tree_map(lambda m, g: -0.1 * m * g, mup.multipliers(net.info), grads)
    for a, b in zip(jax.tree_util.tree_leaves(moved), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    new_stats = nnx.state(model, nnx.BatchStat)
    assert not all(
        np.allclose(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(new_stats), jax.tree_util.tree_leaves(stats))
    )


def test_nnx_apply_fn_of_a_module_in_training_mode_names_the_layers():
    model = _NnxTrainMode(64, nnx.Rngs(0))
    net = mup.parametrize(model, "mup", base=_NnxTrainMode(16, nnx.Rngs(1)))
    with pytest.raises(ValueError, match=r"training mode.*bn \(BatchNorm.*form='table3'"):
        net.apply_fn(net.init_fn(), X)
    model.eval()
    net = mup.parametrize(model, "mup", base=_NnxTrainMode(16, nnx.Rngs(1)))
    assert net.apply_fn(net.init_fn(), X).shape == (6, 1)


def test_frozen_dict_parameters_train_like_plain_dicts():
    # flax.core.freeze: the same tensors in another container type than `info`.
    from flax.core import freeze

    net = mup.parametrize(LinenMLP(128), "mup", base=LinenMLP(32), x=X)
    params = net.init(KEY, X)
    opt = mup.adam(1e-2, net.info)

    def step(p):
        g = jax.grad(lambda p: jnp.sum(net.apply_fn(p, X) ** 2))(p)
        return optax.apply_updates(p, opt.update(g, opt.init(p), p)[0])

    frozen, plain = step(freeze(params)), step(params)
    for a, b in zip(jax.tree_util.tree_leaves(frozen), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_parameters_of_another_network_are_refused_by_path():
    net = mup.parametrize(LinenMLP(128), "mup", base=LinenMLP(32), x=X)
    other = {"Dense_0": {"kernel": jnp.ones((3, 128))}}
    with pytest.raises(ValueError, match=r"mup.scale_by_width: the parameters do not match"):
        mup.scale_by_width(net.info).update(other, optax.EmptyState())


class _BatchNormMLP(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, train: bool = True):
        h = nn.Dense(self.width)(x)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.5)(h)
        return nn.Dense(1)(nn.relu(nn.Dense(self.width)(nn.relu(h))))


def test_linen_batch_statistics_pass_through_as_variables():
    # At the base width every parametrization is the native network: the
    # outputs and the updated batch statistics equal model.apply's.
    model = _BatchNormMLP(32)
    net = mup.parametrize(model, "mup", base=model, delta=_BatchNormMLP(64), x=X)
    variables = model.init(KEY, X)
    stats = {"batch_stats": variables["batch_stats"]}
    got, got_stats = net.apply_fn(variables["params"], X, variables=stats, mutable=["batch_stats"])
    want, want_stats = model.apply(variables, X, mutable=["batch_stats"])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(got_stats), jax.tree_util.tree_leaves(want_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    roles = {
        "/".join(str(k.key) for k in path): s.role
        for path, s in jax.tree_util.tree_flatten_with_path(
            net.info, is_leaf=lambda s: isinstance(s, mup.LeafScale)
        )[0]
    }
    assert roles["BatchNorm_0/scale"] == roles["BatchNorm_0/bias"] == "bias"
    with pytest.raises(ValueError, match=r"`variables` must be a dict .* without 'params'"):
        net.apply_fn(variables["params"], X, variables=variables, mutable=["batch_stats"])


# ------------------------------------------------------------ attention


def transformer_roles(model, base):
    x = jnp.ones((2, 5, 3))
    p = lambda m: jax.eval_shape(m.init, KEY, x)["params"]
    return infer_roles(p(model), p(base))


@pytest.mark.parametrize(
    "grows, make",
    [
        ("head_dim", lambda d: nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=d)),
        ("heads", lambda d: nn.MultiHeadDotProductAttention(num_heads=d // 8, qkv_features=d)),
    ],
)
def test_attention_weights_scale_with_the_width_of_their_fan_in_axes(grows, make):
    # Between fixed 64-dimensional inputs and outputs, the query/key/value
    # kernels (64, heads, head_dim) widen only their fan-out and out (heads,
    # head_dim, 64) only its fan-in: n̄ = 128/32 for each, whichever axis grows.
    x = jnp.ones((2, 5, 64))
    p = lambda d: jax.eval_shape(make(d).init, KEY, x)["params"]
    roles = infer_roles(p(128), p(32))
    for name in ("query", "key", "value"):
        assert roles[f"{name}/kernel"] == ("input", None, 4.0)
    assert roles["out/kernel"] == ("output", None, 4.0)
    for name in ("query", "key", "value"):
        assert roles[f"{name}/bias"] == ("bias", None, 4.0)
    assert roles["out/bias"] == ("fixed", None, 1.0)  # d_out = 64 at both widths


def test_mup_adam_moves_every_attention_weight_by_one_over_fan_in():
    # TP5 Table 3: Adam moves a hidden weight's entries by η/fan_in and a vector's by
    # η (relative to the base width); the entry of W = n̄^{-a}·w moves by
    # fwd_mult · adam_lr_mult, in any gauge of μP.
    net = mup.parametrize(
        LinenTransformer(128), "mup", base=LinenTransformer(32), x=jnp.ones((2, 5, 3))
    )
    seen = 0
    for path, s in jax.tree_util.tree_flatten_with_path(
        net.info, is_leaf=lambda s: isinstance(s, mup.LeafScale)
    )[0]:
        name = "/".join(str(k.key) for k in path)
        if "MultiHeadDotProductAttention" in name:
            want = 1 / 4 if name.endswith("kernel") else 1.0
            assert s.fwd_mult * s.adam_lr_mult == pytest.approx(want), (name, s)
            seen += 1
    assert seen == 2 * 8  # per block: 4 kernels and 4 biases


def test_nnx_attention_weights_scale_with_their_fan_in_axes():
    def make(d):
        return nnx.MultiHeadAttention(num_heads=4, in_features=d, decode=False, rngs=nnx.Rngs(0))

    roles = infer_roles(nnx.state(make(128), nnx.Param), nnx.state(make(32), nnx.Param))
    for name in ("query", "key", "value", "out"):
        assert roles[f"{name}/kernel"] == ("hidden", None, 4.0)
    assert roles["out/bias"] == ("bias", None, 4.0)


class _GeneralNoBias(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.width)(x).reshape(*x.shape[:-1], self.width // 4, 4)
        h = nn.DenseGeneral(self.width, axis=(-2, -1), use_bias=False)(nn.relu(h))
        return nn.Dense(1)(nn.relu(h))  # DenseGeneral_0/kernel: (width/4, 4, width)


def test_a_kernel_of_unknown_layout_asks_for_its_fan_in_axes():
    x = jnp.ones((2, 3))
    p = lambda m: jax.eval_shape(m.init, KEY, x)["params"]
    with pytest.raises(ValueError, match=r"DenseGeneral_0/kernel.*'fan_in': \(0,\)"):
        infer_roles(p(_GeneralNoBias(128)), p(_GeneralNoBias(32)))
    roles = infer_roles(
        p(_GeneralNoBias(128)),
        p(_GeneralNoBias(32)),
        annotations={"DenseGeneral_0/kernel": {"fan_in": (0, 1)}},
    )
    assert roles["DenseGeneral_0/kernel"] == ("hidden", None, 4.0)


def test_annotation_fan_in_axes_are_checked():
    x = jnp.ones((2, 3))
    p = lambda m: jax.eval_shape(m.init, KEY, x)["params"]
    a, b = p(_GeneralNoBias(128)), p(_GeneralNoBias(32))
    with pytest.raises(ValueError, match=r"must name distinct axes of a tensor of shape"):
        infer_roles(a, b, annotations={"DenseGeneral_0/kernel": {"fan_in": (0, 1, 2)}})
    with pytest.raises(TypeError, match=r"\['fan_in'\]` must be a tuple of axes"):
        infer_roles(a, b, annotations={"DenseGeneral_0/kernel": {"fan_in": "0"}})
    with pytest.raises(ValueError, match=r"keys 'role', 'layer', 'fan_in'"):
        infer_roles(a, b, annotations={"DenseGeneral_0/kernel": {"axes": (0,)}})


def test_attention_fn_divides_the_logits_by_the_head_dimension():
    # logits = √d₀ / d · q·k (TP5), checked against softmax written out, with a
    # causal mask (the wrapper must keep the mask linen passes by keyword).
    q, k, v = jax.random.normal(KEY, (3, 2, 6, 4, 32))
    mask = nn.make_causal_mask(jnp.ones((2, 6)))
    got = mup.attention_fn(8)(q, k, v, mask=mask)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * math.sqrt(8) / 32
    w = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
    want = jnp.einsum("bhqk,bkhd->bqhd", w, v)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_attention_fn_is_flax_attention_at_the_base_head_dimension_inside_the_module():
    x = jax.random.normal(KEY, (2, 6, 32))
    mask = nn.make_causal_mask(jnp.ones((2, 6)))
    plain = nn.MultiHeadDotProductAttention(num_heads=4)
    mu = nn.MultiHeadDotProductAttention(num_heads=4, attention_fn=mup.attention_fn(8))
    params = plain.init(KEY, x)
    np.testing.assert_allclose(
        mu.apply(params, x, mask=mask), plain.apply(params, x, mask=mask), rtol=1e-6, atol=1e-6
    )
    smaller = nn.MultiHeadDotProductAttention(num_heads=4, attention_fn=mup.attention_fn(2))
    assert not np.allclose(
        smaller.apply(params, x, mask=mask), plain.apply(params, x, mask=mask), atol=1e-3
    )


def test_attention_fn_is_flax_attention_at_the_base_head_dimension_inside_nnx():
    x = jax.random.normal(KEY, (2, 6, 32))
    mask = nnx.make_causal_mask(jnp.ones((2, 6)))

    def attention(**kw):
        return nnx.MultiHeadAttention(
            num_heads=4, in_features=32, decode=False, rngs=nnx.Rngs(0), **kw
        )

    plain, mu = attention(), attention(attention_fn=mup.attention_fn(8))
    np.testing.assert_allclose(mu(x, mask=mask), plain(x, mask=mask), rtol=1e-6, atol=1e-6)
    smaller = attention(attention_fn=mup.attention_fn(2))  # logits / 2
    assert not np.allclose(smaller(x, mask=mask), plain(x, mask=mask), atol=1e-3)


def test_traced_weight_decay_without_params_says_to_pass_them():
    # Under jit, inject_hyperparams's weight_decay=0.0 is an array: 0 is unknown.
    info = mup.parametrize(_NET, "mup").info
    opt = optax.inject_hyperparams(mup.adam)(learning_rate=1e-3, info=info, weight_decay=0.0)
    g = mup.multipliers(info)
    opt.update(g, opt.init(g))  # eager: a concrete 0 needs no params
    with pytest.raises(ValueError, match=r"weight_decay is traced .* pass params"):
        jax.jit(opt.update)(g, opt.init(g))
