"""Plans of simon24_rf's parts: the steps a run jits, for `python -m experiments plan`.

Each function gives one part's jitted steps with abstract arguments and call
counts (`experiments.plan`); `python -m experiments plan simon24_rf` prints them.
Registered on the experiment when `experiments.simon24_rf` is imported.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from experiments import _simon24_sim as rfsim
from experiments.simon24_rf import (
    EXPERIMENT,
    MYRTLE_TILE,
)
from ntk import random_features as rf
from ntk import stax

# Each simulated trial maps its (n, k) pairs with lax.map, whose body XLA's
# cost analysis counts once: the plans split a trial into its setup (data,
# features; once per trial) and one masked ridge solve at (n_max, k_max)
# (once per trial and pair).


def _plan_sweeps(config, setup, solve, theory, tag, trials_per_point):
    from experiments.plan import Step

    fixed, sweep, grid = (config.fixed,), tuple(config.sweep), tuple(config.grid)
    steps = []
    for name, ns, ks, trials in (
        ("vs k", fixed, sweep, trials_per_point),
        ("vs n", sweep, fixed, trials_per_point),
        ("(k, n) grid", grid, grid, config.grid_trials),
    ):
        nmax, kmax = max(ns), max(ks)
        fn, args = setup(nmax, kmax)
        steps.append(Step(f"{tag} {name}: trial setup", fn, args, count=trials))
        fn, args = solve(nmax, kmax)
        steps.append(Step(f"{tag} {name}: ridge solve", fn, args, count=trials * len(ns) * len(ks)))
        fn, args = theory(ns, ks)
        steps.append(Step(f"{tag} {name}: theory", fn, args))
    return steps


def _ridge_count(config) -> int:
    """Ridges of the synthetic task's grid (`rfsim.ridge_grid`)."""
    return len(rfsim.ridge_grid(config, 1.0)[0])


def _image_ridge_count(config) -> int:
    """Ridges of the image task's grid in its RF setting (`rfsim.image_rf_setting`)."""
    return len(rfsim.image_rf_setting(config).ridges)


def _theory_step(config, m, r):
    from experiments.plan import shaped

    def theory(ns, ks):
        fn = jax.vmap(
            jax.vmap(
                jax.vmap(
                    lambda lam, v, n, k, r: rf.rf_risk(lam, v, n, k, r, config.noise_var)[3:5],
                    (None, None, None, None, 0),
                ),
                (None, None, None, 0, None),
            ),
            (None, None, 0, None, None),
        )
        return fn, (
            shaped((m,)),
            shaped((m,)),
            shaped((len(ns),)),
            shaped((len(ks),)),
            shaped((r,)),
        )

    return theory


@EXPERIMENT.plan("synthetic", not_covered="host-side reshaping and the envelope (numpy)")
def synthetic_plan(config) -> list:
    from experiments.plan import KEY, shaped

    m, r = config.m_modes, _ridge_count(config)

    def setup(nmax, kmax):
        def fn(key, lam, v):
            kx, kw, ke = jax.random.split(key, 3)
            x = jax.random.normal(kx, (nmax, m))
            proj = jax.random.normal(kw, (kmax, m)) * jnp.sqrt(lam)
            return x @ proj.T, x @ v + jax.random.normal(ke, (nmax,))

        return fn, (KEY, shaped((m,)), shaped((m,)))

    def solve(nmax, kmax):
        def fn(g, y, proj, v, n, k, ridges):
            w, cols, train = rfsim.masked_fit(g, y, n, k, ridges)
            return train, jnp.sum(((w * cols) @ proj / jnp.sqrt(k) - v) ** 2, axis=1)

        return fn, (
            shaped((nmax, kmax)),
            shaped((nmax,)),
            shaped((kmax, m)),
            shaped((m,)),
            shaped(()),
            shaped(()),
            shaped((r,)),
        )

    return _plan_sweeps(
        config, setup, solve, _theory_step(config, m, r), "synthetic", config.trials
    )


def _image_shape(config):
    """(pool, d) of the image task: MNIST-5k (28×28) offline, CIFAR-10 (32×32×3)
    from data_dir."""
    return config.pool, (32 * 32 * 3 if rfsim.uses_cifar10(config) else 28 * 28)


@EXPERIMENT.plan("image", not_covered="loading the images, the ±1 labels (numpy) and plotting")
def image_plan(config) -> list:
    from experiments.plan import KEY, Step, shaped

    pool, d = _image_shape(config)
    setting = rfsim.image_rf_setting(config)
    r = len(setting.ridges)
    nngp = stax.serial(stax.Dense(1, W_std=setting.w_std), stax.Relu())[2]

    def setup(nmax, kmax):
        def fn(key, x):
            kp, kf = jax.random.split(key)
            idx = jax.random.permutation(kp, pool)[:nmax]
            return idx, rf.relu_features(kf, x, kmax, W_std=setting.w_std) * math.sqrt(kmax)

        return fn, (KEY, shaped((pool, d)))

    def solve(nmax, kmax):
        def fn(g_pool, idx, y, n, k, ridges):
            w, cols, train = rfsim.masked_fit(g_pool[idx], y[idx], n, k, ridges)
            return train, jnp.mean(((w * cols) @ g_pool.T / jnp.sqrt(k) - y) ** 2, axis=1)

        return fn, (
            shaped((pool, kmax)),
            shaped((nmax,), jnp.int32),
            shaped((pool,)),
            shaped(()),
            shaped(()),
            shaped((r,)),
        )

    return [
        Step("NNGP kernel of the pool", lambda x: nngp(x, x, "nngp"), (shaped((pool, d)),)),
        Step(
            "eigendecomposition of the pool kernel",
            rf.eigendecompose,
            (shaped((pool, pool)), shaped((pool,))),
        ),
    ] + _plan_sweeps(config, setup, solve, _theory_step(config, pool, r), "image", setting.trials)


@EXPERIMENT.plan(
    "conv_ntk",
    not_covered="downsampling the images (numpy), the power-law "
    "fits and the κ̂(n) proxy's solves (≤ N/2 points)",
)
def conv_ntk_plan(config) -> list:
    from experiments.plan import Step, shaped

    n, side, c = config.cntk_points, config.cntk_side, config.cntk_channels
    chans = 3 if _image_shape(config)[1] == 32 * 32 * 3 else 1
    steps = []
    if config.kernel == "conv2":
        net = stax.serial(
            stax.Conv(c, (3, 3), padding="VALID"),
            stax.Relu(),
            stax.Conv(c, (3, 3), padding="VALID"),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(1),
        )
        steps.append(
            Step("conv2 NTK", lambda x: net[2](x, None, "ntk"), (shaped((n, side, side, chans)),))
        )
    else:
        padded = side + (-side % 4)
        kernel_fn = stax.Myrtle(int(config.kernel[len("myrtle") :]))[2]
        tiles = -(-n // MYRTLE_TILE)
        tile = shaped((MYRTLE_TILE, padded, padded, chans))
        steps.append(
            Step(
                f"{config.kernel} NTK tile {MYRTLE_TILE}×{MYRTLE_TILE}",
                lambda a, b: kernel_fn(a, b, "ntk"),
                (tile, tile),
                count=tiles * tiles,
            )
        )
    steps.append(
        Step("eigendecomposition of the kernel", rf.eigendecompose, (shaped((n, n)), shaped((n,))))
    )
    return steps


@EXPERIMENT.plan("overfitting", not_covered="the theory curves' scalar solves (91 ridges)")
def overfitting_plan(config) -> list:
    from experiments.plan import KEY, Step, shaped

    pool = _image_shape(config)[0]
    r = 16
    keys = shaped((config.overfit_trials,) + KEY.shape, KEY.dtype)
    lam = shaped((config.m_modes,))
    return [
        Step(
            "Gaussian KRR trials (σ² > 0)",
            lambda a, b, rr, kk: rf.gaussian_krr_mse(
                a, b, config.noise_var, config.overfit_n, rr, kk
            ),
            (lam, lam, shaped((r,)), keys),
        ),
        Step(
            "Gaussian KRR trials (σ² = 0)",
            lambda a, b, rr, kk: rf.gaussian_krr_mse(a, b, 0.0, config.overfit_n, rr, kk),
            (lam, lam, shaped((r,)), keys),
        ),
        Step(
            "KRR on the image pool",
            lambda kern, y, rr, kk: rf.krr_pool_mse(kern, y, config.overfit_n, rr, kk),
            (shaped((pool, pool)), shaped((pool,)), shaped((r,)), keys),
        ),
    ]


@EXPERIMENT.plan(
    "ridge_table",
    not_covered="all of it: numpy eigendecompositions of the "
    "training kernel, one per trial (ridge_trials × "
    "(cntk_points − ridge_test)³ / 3 FLOPs or so), "
    "on the host; no jitted step",
)
def ridge_table_plan(config) -> list:
    return []


@EXPERIMENT.plan(
    "features",
    not_covered="the factorisation of the pool kernel behind the "
    "Gaussian features, the eigenmode power spread "
    "(POWER_FEATURES features) and plotting",
)
def features_plan(config) -> list:
    """The image (k, n) grid again with Gaussian features of the pool kernel:
    per trial the features ``K^{1/2} G`` (G: pool × k_max normal), then one masked
    ridge solve per trial and (n, k) pair."""
    from experiments.plan import KEY, Step, shaped

    pool = _image_shape(config)[0]
    grid = tuple(config.grid)
    if max(grid) < 64:  # feature_comparison skips the Gaussian runs
        return []
    kmax, r = max(grid), _image_ridge_count(config)

    def setup(key, root):
        return root @ jax.random.normal(key, (pool, kmax))

    def solve(g_pool, idx, y, n, k, ridges):
        w, cols, train = rfsim.masked_fit(g_pool[idx], y[idx], n, k, ridges)
        return train, jnp.mean(((w * cols) @ g_pool.T / jnp.sqrt(k) - y) ** 2, axis=1)

    return [
        Step(
            "Gaussian features of the pool kernel",
            setup,
            (KEY, shaped((pool, pool))),
            count=config.grid_trials,
        ),
        Step(
            "Gaussian (k, n) grid: ridge solve",
            solve,
            (
                shaped((pool, kmax)),
                shaped((kmax,), jnp.int32),
                shaped((pool,)),
                shaped(()),
                shaped(()),
                shaped((r,)),
            ),
            count=config.grid_trials * len(grid) ** 2,
        ),
    ]
