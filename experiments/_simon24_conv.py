"""The convolutional NTK of ``simon24_rf``'s ``conv_ntk`` part, on downsampled images.

`conv_ntk_exponents` prepares the images (a random subset, block-averaged to
side × side, centred and scaled to unit mean square per coordinate, labels
binarised as in the image task), computes the kernel (a two-layer conv NTK or
the paper's Myrtle family, tile by tile with resumable tiles) and fits its
(α, β) with `ntk.random_features.kernel_exponents`.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _simon24_sim as rfsim
from ntk import parallel, stax
from ntk import random_features as rf

# Pairs per Myrtle tile: 64 × 64 images per step keeps a tile's self-pair
# overhead (each tile's images with themselves, for their variances) at 3%.
MYRTLE_TILE = 64
CNTK_KERNELS = ("conv2", "myrtle5", "myrtle10")


def conv_ntk_exponents(config, x_all, labels, key, cache_dir=None):
    """(α, β) of a convolutional NTK (``config.kernel``) on downsampled images,
    two ways. ``cache_dir``: where Myrtle kernel tiles are kept between runs."""
    if config.kernel not in CNTK_KERNELS:
        raise ValueError(
            f"simon24_rf: kernel must be one of {CNTK_KERNELS}; got {config.kernel!r}."
        )
    idx = np.asarray(jax.random.permutation(key, x_all.shape[0]))[: config.cntk_points]
    x = np.asarray(x_all[idx], np.float32)
    f = x.shape[1] // config.cntk_side
    x = x[:, : f * config.cntk_side, : f * config.cntk_side]
    x = x.reshape(x.shape[0], config.cntk_side, f, config.cntk_side, f, -1).mean((2, 4))
    x = x - x.mean(0)
    x = x / np.sqrt(np.mean(np.sum(x**2, (1, 2, 3))) / np.prod(x.shape[1:]))
    y = np.where(np.isin(labels[idx], rfsim.POSITIVE_CLASSES), 1.0, -1.0).astype(np.float32)
    if config.kernel == "conv2":
        net = stax.serial(
            stax.Conv(config.cntk_channels, (3, 3), padding="VALID"),
            stax.Relu(),
            stax.Conv(config.cntk_channels, (3, 3), padding="VALID"),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(1),
        )
        kernel = np.asarray(net[2](jnp.asarray(x), None, "ntk"), np.float64)
    else:
        kernel = myrtle_ntk(x, int(config.kernel[len("myrtle") :]), cache_dir)
    fit = rf.kernel_exponents(kernel, y, key, trials=config.proxy_trials)
    return dict(
        alpha=fit.alpha,
        beta=fit.beta,
        alpha_proxy=fit.alpha_proxy,
        beta_proxy=fit.beta_proxy,
        lam=fit.eigvals,
        v=fit.target_coeffs,
        fit_range=fit.fit_range,
        proxy=fit.proxy,
        kernel=kernel,
        y=y,
    )


def myrtle_ntk(x, depth: int, cache_dir=None) -> np.ndarray:
    """Myrtle-``depth`` NTK of images ``x`` (N, S, S, C), zero-padded to a side
    divisible by 4, through `ntk.parallel.batch` (resumable tiles in
    ``cache_dir`` when given)."""
    side = x.shape[1]
    pad = -side % 4
    x = np.pad(x, [(0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)])
    kernel_fn = stax.Myrtle(depth)[2]
    batched = parallel.batch(
        kernel_fn,
        MYRTLE_TILE,
        progress=True,
        store_on_device=False,
        checkpoint_dir=None if cache_dir is None else Path(cache_dir),
    )
    return np.asarray(batched(x, None, "ntk"), np.float64)
