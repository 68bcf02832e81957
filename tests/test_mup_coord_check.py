"""Coordinate checks across widths 64 … 4096 (TP4 §3, TP5 §D.1).

Width exponents measured on finite MLPs after 3 SGD steps are compared with
the theory: μP keeps preactivations and their updates Θ(1), SP at a fixed
learning rate lets the output's update grow (like n), NTK's feature updates
vanish like n^{-1/2} (r = 1/2). Full-batch on 16 points in 4 dimensions; two
initialisations per width; float32 for speed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flax_models import VOCAB, LinenMLP, LinenTiedLM, LinenTransformer
from ntk import mup, stax

WIDTHS = (64, 256, 1024, 4096)
X = jax.random.normal(jax.random.PRNGKey(3), (16, 4))
Y = 3 * jnp.sin(2 * X[:, :1])


def stax_mlp(depth):
    def build(n):
        layers = []
        for _ in range(depth):
            layers += [stax.Dense(n), stax.Relu()]
        return stax.serial(*layers, stax.Dense(1))

    return build


def check(parametrization, lr, depth, widths=WIDTHS):
    build = stax_mlp(depth)
    return mup.coord_check(
        lambda n: mup.parametrize(build(n), parametrization, base_width=64),
        widths,
        X,
        Y,
        optimizer=lambda info: mup.sgd(lr, info),
        steps=3,
        seeds=2,
        dtype=jnp.float32,
    )


@pytest.fixture(scope="module")
def mup_check():
    # Zero readout (TP5 §4): f₀ = 0 at every width, so the first steps do not
    # carry the O(n^{-1/2}) finite-width bias of a random initial output.
    return check(mup.abc("mup", 2, zero_readout=True), 0.05, 2)


def test_mup_preactivations_stay_order_one(mup_check):
    for layer in ("h^1", "h^2"):
        assert abs(mup_check.slope(layer, 3, "size")) <= 0.1


def test_mup_updates_stay_order_one_in_every_layer(mup_check):
    slopes = mup_check.slopes(3, "delta")
    assert set(slopes) == {"h^1", "h^2", "f"}
    assert all(abs(s) <= 0.1 for s in slopes.values()), slopes


def test_sp_output_update_grows_with_width_at_fixed_lr():
    cc = check(mup.abc("sp", 1, c=0.0), 0.005, 1)
    assert cc.slope("f", 3, "delta") >= 0.4


def test_ntk_feature_updates_vanish_like_inverse_sqrt_width():
    cc = check("ntk", 0.3, 2)
    for layer in ("h^1", "h^2"):
        assert cc.slope(layer, 3, "delta") == pytest.approx(-0.5, abs=0.1)


def test_coord_check_plot_has_a_panel_per_step_and_quantity(mup_check):
    fig = mup_check.plot()
    assert len(fig.axes) == 2 * 3
    import matplotlib.pyplot as plt

    plt.close(fig)


# Width 64 next to base 32 is noisy with few seeds; the rate shows from 128.
FLAX_WIDTHS = (128, 512, 2048)


def linen_check(parametrization, optimizer):
    def make(n):
        return mup.parametrize(LinenMLP(n), parametrization, base=LinenMLP(32), x=X)

    return mup.coord_check(
        make, FLAX_WIDTHS, X, Y, optimizer=optimizer, steps=3, seeds=3, dtype=jnp.float32
    )


def test_flax_mup_with_optax_keeps_every_update_order_one():
    cc = linen_check(mup.abc("mup", 2, zero_readout=True), lambda info: mup.sgd(0.05, info))
    slopes = cc.slopes(3, "delta")
    assert all(abs(s) <= 0.1 for s in slopes.values()), slopes


def test_flax_sp_with_plain_optax_sgd_has_growing_output_update():
    cc = linen_check("sp", lambda info: optax.sgd(0.005))
    assert cc.slope("f", 3, "delta") >= 0.4


SEQ = jax.random.normal(jax.random.PRNGKey(4), (16, 8, 4))
SEQ_Y = jnp.sin(SEQ[:, 0, :1] + SEQ[:, 3, 1:2])


def transformer_check(mu: bool):
    # 4 heads whose dimension grows (16 at the base width 64). μP: zero readout,
    # 1/d_head attention logits and μP Adam; SP: the module as written, plain Adam.
    # 2 blocks of (q, k, v, out, 2 MLP) kernels: 12 hidden layers.
    def make(n):
        if mu:
            model = LinenTransformer(n, mup.attention_fn(base_head_dim=16))
            p = mup.abc("mup", 13, zero_readout=True)
        else:
            model, p = LinenTransformer(n), "sp"
        return mup.parametrize(
            model, p, base=LinenTransformer(64), delta=LinenTransformer(128), x=SEQ
        )

    opt = (lambda info: mup.adam(2e-3, info)) if mu else (lambda info: optax.adam(2e-3))
    return mup.coord_check(
        make, (64, 128, 256), SEQ, SEQ_Y, optimizer=opt, steps=4, seeds=2, dtype=jnp.float32
    )


def test_flax_mup_transformer_keeps_every_update_order_one():
    slopes = transformer_check(mu=True).slopes(4, "delta")
    assert len(slopes) == 19  # embedding; per block attention (and q, k, v, out), 2 LayerNorms
    # and 2 MLP layers; the readout
    assert all(abs(s) <= 0.15 for s in slopes.values()), slopes


def test_flax_sp_transformer_attention_updates_grow_with_width_under_adam():
    # Adam moves every SP weight entry by Θ(η): hidden updates add up over n inputs.
    slopes = transformer_check(mu=False).slopes(4, "delta")
    attention = [s for k, s in slopes.items() if k.startswith("MultiHead") and "/" not in k]
    assert len(attention) == 2 and min(attention) >= 0.4, slopes


TOKENS = jax.random.randint(jax.random.PRNGKey(5), (16, 8), 0, VOCAB)
NEXT = jax.nn.one_hot(jnp.roll(TOKENS, -1, axis=1), VOCAB)


def tied_check(readout_mult):
    # An embedding that is also the readout; μP with Adam, the readout
    # multiplied by readout_mult(n) in the module.
    def make(n):
        model = LinenTiedLM(n, readout_mult(n), mup.attention_fn(base_head_dim=16))
        return mup.parametrize(
            model,
            "mup",
            base=LinenTiedLM(64),
            delta=LinenTiedLM(128),
            x=TOKENS,
            annotations={"Embed_0/embedding": "tied"},
        )

    return mup.coord_check(
        make,
        (64, 128, 256),
        TOKENS,
        NEXT,
        optimizer=lambda info: mup.adam(1e-2, info),
        steps=4,
        seeds=2,
        dtype=jnp.float32,
    )


def test_flax_mup_tied_embedding_keeps_every_coordinate_order_one():
    cc = tied_check(lambda n: 64 / n)
    init, trained, moved = cc.slopes(0, "size"), cc.slopes(4, "size"), cc.slopes(4, "delta")
    # Flax draws Embed with variance 1/width; μP's embedding entries are Θ(1).
    assert abs(init["Embed_0"]) <= 0.05, init
    # μP's readout starts at n^{-1/2} (its weight is W/n̄) and learns a Θ(1) output.
    assert -0.6 <= init["f"] <= -0.4, init
    assert abs(trained["f"]) <= 0.2, trained
    hidden = {k: s for k, s in moved.items() if k != "f"}
    # Measured -0.19 ... -0.05 at widths 64-256 (-0.12 ... -0.03 at 64-512);
    # SP's grow like n^0.4 or faster (transformer test above).
    assert len(hidden) == 10 and all(abs(s) <= 0.25 for s in hidden.values()), moved


def test_flax_tied_readout_without_the_width_division_grows_with_width():
    # ⟨h, e_v⟩ sums n correlated terms: without 1/n̄ the logits grow.
    trained = tied_check(lambda n: 1.0).slopes(4, "size")
    assert trained["f"] >= 0.4, trained


def test_coord_check_rejects_a_single_width():
    with pytest.raises(ValueError, match="at least 2 widths"):
        mup.coord_check(lambda n: None, (64,), X, Y, optimizer=optax.sgd)


def _tiny_check():
    layers = ("h^1", "f")
    size = {l: np.ones((2, 3)) for l in layers}
    return mup.CoordCheck((64, 256), 2, layers, size, size)


def _make(n):
    return mup.parametrize(
        stax.serial(stax.Dense(n), stax.Relu(), stax.Dense(1)), "mup", base_width=64
    )


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (
            lambda: mup.coord_check(_make, (64, 64), X, Y, optimizer=lambda i: mup.sgd(0.1, i)),
            ValueError,
            "`widths` must be distinct",
        ),
        (
            lambda: mup.coord_check(_make, (64, 128.5), X, Y, optimizer=lambda i: mup.sgd(0.1, i)),
            TypeError,
            "`widths` must be an int",
        ),
        (
            lambda: mup.coord_check(
                _make, (64, 128), X, Y, optimizer=lambda i: mup.sgd(0.1, i), steps=0
            ),
            ValueError,
            "`steps` must be an int >= 1",
        ),
        (
            lambda: mup.coord_check(64, (64, 128), X, Y, optimizer=lambda i: mup.sgd(0.1, i)),
            TypeError,
            "`make` must be a function",
        ),
        (
            lambda: mup.coord_check(
                _make, (64, 128), X * jnp.nan, Y, optimizer=lambda i: mup.sgd(0.1, i)
            ),
            ValueError,
            "`x` must be finite",
        ),
        (
            lambda: _tiny_check().slope("f", step=3),
            ValueError,
            r"`step` must be an int in \[-3, 2\]",
        ),
        (
            # (N,) targets against (N, 1) outputs used to broadcast to (N, N)
            lambda: mup.coord_check(_make, (64, 128), X, Y[:, 0], optimizer=optax.sgd),
            ValueError,
            r"loss='mse' `y` must have the outputs' shape \(16, 1\); got \(16,\)",
        ),
        (
            lambda: mup.coord_check(_make, (64, 128), X, Y, optimizer=optax.sgd, loss="xent"),
            ValueError,
            r"loss='xent' `y` must be integer labels of shape \(16,\); got float",
        ),
        (
            lambda: mup.coord_check(
                _make, (64, 128), X, jnp.full(16, 3), optimizer=optax.sgd, loss="xent"
            ),
            ValueError,
            r"labels `y` must lie in \[0, 1\)",
        ),
        (
            lambda: mup.coord_check(lambda n: stax.Dense(n), (64, 128), X, Y, optimizer=optax.sgd),
            TypeError,
            r"`make\(width\)` must return a parametrized model .*got Layer",
        ),
        (lambda: _tiny_check().slope("f", what="mean"), ValueError, "`what` must be one of"),
        (lambda: mup.rms(jnp.ones(0)), ValueError, "`v` must not be empty"),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
