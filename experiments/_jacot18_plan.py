"""Plans of jacot18's parts: the steps a run jits, for `python -m experiments plan`.

Each function gives one part's jitted steps with abstract arguments and call
counts (`experiments.plan`); `python -m experiments plan jacot18` prints them.
Registered on the experiment when `experiments.jacot18` is imported.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp

from experiments.jacot18 import (
    EXPERIMENT,
    RATE_ACTIVATIONS,
    TRAIN_GAMMAS,
    gradient_descent,
    network,
)
from ntk.empirical import empirical_ntk_fn, empirical_ntk_row


def _gd_step(apply_fn, lr):
    """One step of `gradient_descent` (its scan body; the plan counts the steps)."""
    return lambda p, x, y: gradient_descent(apply_fn, p, x, y, lr, 1)


def _gd_steps(config, widths, x, y, grid):
    """Per width: ``(width, apply_fn, abstract params, (label, GD step, args))``."""
    from experiments.plan import abstract_params

    for width in widths:
        init_fn, apply_fn, _ = network(width, config.b_std)
        params = abstract_params(init_fn, grid.shape)
        gd = (f"GD step n={width}", _gd_step(apply_fn, config.learning_rate), (params, x, y))
        yield width, apply_fn, params, gd


@EXPERIMENT.plan(
    "fig1", not_covered="the limit row Θ(x0, ·) (analytic, n_angles entries) and plotting"
)
def fig1_plan(config) -> list:
    from experiments.plan import Step, shaped

    x, y = shaped((config.fig1_points, 2)), shaped((config.fig1_points, 1))
    x0, grid = shaped((2,)), shaped((config.n_angles, 2))
    steps = []
    for width, apply_fn, params, gd in _gd_steps(config, config.fig1_widths, x, y, grid):
        steps += [
            Step(gd[0], gd[1], gd[2], count=config.fig1_inits * config.fig1_steps),
            Step(
                f"NTK row n={width}",
                lambda p, a, b, f=apply_fn: empirical_ntk_row(f, p, a, b),
                (params, x0, grid),
                # before and after training, and once per untrained spread draw
                count=2 * config.fig1_inits + config.fig1_spread_inits,
            ),
        ]
    return steps


@EXPERIMENT.plan(
    "fig2",
    not_covered="the limit's Gaussian process (ntk.predict on 4 training points) and plotting",
)
def fig2_plan(config) -> list:
    from experiments.plan import Step, shaped

    x, y = shaped((len(TRAIN_GAMMAS), 2)), shaped((len(TRAIN_GAMMAS), 1))
    grid = shaped((config.n_angles, 2))
    steps = []
    for width, apply_fn, params, gd in _gd_steps(config, config.fig2_widths, x, y, grid):
        steps += [
            Step(gd[0], gd[1], gd[2], count=config.fig2_inits * config.fig2_steps),
            Step(f"f(grid) n={width}", apply_fn, (params, grid), count=2 * config.fig2_inits),
        ]
    return steps


@EXPERIMENT.plan(
    "pc", not_covered="the eigendecompositions of Θ and Θ̂_0 (numpy, pc_points²) and plotting"
)
def pc_plan(config) -> list:
    from experiments.plan import Step, abstract_params, shaped

    x, y = shaped((config.pc_points, config.pc_dim)), shaped((config.pc_points, 1))
    init_fn, apply_fn, kernel_fn = network(config.pc_width, config.b_std)
    params = abstract_params(init_fn, x.shape)
    # Θ̂_0 runs tiled (`ntk.parallel.batch`, 2 GiB a step); counted as 16 × 16 tiles
    tile = min(16, config.pc_points)
    xt = shaped((tile, config.pc_dim))
    return [
        Step("limit NTK Θ", lambda a: kernel_fn(a, None, "ntk"), (x,)),
        Step(
            f"empirical NTK Θ̂_0, {tile} × {tile} tile, n={config.pc_width}",
            lambda p, a, b: empirical_ntk_fn(apply_fn)(a, b, p),
            (params, xt, xt),
            count=math.ceil(config.pc_points / tile) ** 2,
        ),
        Step(
            f"GD step + f(X) n={config.pc_width}",
            lambda p, a, b: (_gd_step(apply_fn, 1e-3)(p, a, b), apply_fn(p, a)),
            (params, x, y),
            count=config.pc_steps + 1,
        ),
    ]


@EXPERIMENT.plan(
    "mnist_eigen", not_covered="loading MNIST-5k (numpy) and the host-side eigvalsh of the limit Θ"
)
def mnist_eigen_plan(config) -> list:
    from experiments.plan import KEY, Step, abstract_params, shaped

    x = shaped((config.mnist_points, 784))
    init_fn, apply_fn, kernel_fn = network(
        config.mnist_width, config.b_std, config.mnist_hidden_layers
    )
    params = abstract_params(init_fn, x.shape)
    f = lambda p, a: apply_fn(p, a)[:, 0]

    def apply_theta(p, a, q):
        _, vjp = jax.vjp(lambda p_: f(p_, a), p)
        return jax.vmap(lambda v: jax.jvp(lambda p_: f(p_, a), (p,), vjp(v))[1], 1, 1)(q)

    # the block has the outputs' dtype (float64 parameters give float64 f)
    block = shaped((config.mnist_points, 6), jax.eval_shape(f, params, x).dtype)
    # this batch's and the further ones' limits; this network and the further ones
    batches, nets = 1 + config.mnist_spread_batches, 1 + config.mnist_spread_inits
    return [
        Step("limit NTK Θ", lambda a: kernel_fn(a, None, "ntk"), (x,), count=batches),
        Step(f"init n={config.mnist_width}", lambda k: init_fn(k, x.shape)[1], (KEY,), count=nets),
        Step(
            f"Θ̂·Q (VJP + JVPs) n={config.mnist_width}",
            apply_theta,
            (params, x, block),
            count=nets * (config.mnist_iters + 1),
        ),
        Step(
            "QR of the block",
            lambda q: jnp.linalg.qr(q)[0],
            (block,),
            count=nets * (config.mnist_iters + 1),
        ),
    ]


@EXPERIMENT.plan("rates", not_covered="the limit Θ (slope_points²), norms (numpy) and the fits")
def rates_plan(config) -> list:
    from experiments.plan import Step, abstract_params, shaped

    x, y = shaped((config.slope_points, 2)), shaped((config.slope_points, 1))
    steps = []
    for (name, activation), width in itertools.product(
        RATE_ACTIVATIONS.items(), config.slope_widths
    ):
        init_fn, apply_fn, _ = network(width, config.b_std, activation=activation)
        params = abstract_params(init_fn, x.shape)
        steps += [
            Step(
                f"empirical NTK {name} n={width}",
                lambda p, a, f=apply_fn: empirical_ntk_fn(f)(a, None, p),
                (params, x),
                count=2 * config.slope_inits,
            ),
            Step(
                f"GD step {name} n={width}",
                _gd_step(apply_fn, config.learning_rate),
                (params, x, y),
                count=config.slope_inits * config.slope_steps,
            ),
        ]
    return steps
