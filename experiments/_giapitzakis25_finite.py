"""giapitzakis25's finite-width part: ensembles of GD-trained networks against
the infinite-width GP, scored by z-values whose spread is calibrated on exact
GP ensembles (`experiments.giapitzakis25` runs it and writes its row)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ntk import permutations as perms


def finite_vs_gp(config, key) -> dict:
    """``config.finite_members`` networks of width ``config.finite_width``
    trained by GD on ``k = config.finite_k`` basis vectors, against the t = ∞
    GP on every nonzero input: both means and variances, the RMS and max z
    of the ensemble's mean and variance, and the ranges of the RMS z that
    ensembles of exact GP draws give (`z_null_range`)."""
    k = config.finite_k
    kp, kf = jax.random.split(key)
    perm = perms.random_permutation(kp, k)
    x = perms.binary_inputs(k)
    out = np.asarray(
        perms.train_finite_ensemble(
            kf, perm, x, config.finite_members, width=config.finite_width, W_std=config.W_std
        )
    )
    gp = perms.trained_gp(perm, x, W_std=config.W_std)
    mean, cov = np.asarray(gp.mean), np.asarray(gp.covariance)
    var = np.clip(np.diag(cov), 0, None)
    m = config.finite_members
    test = var > 1e-12
    z_mean, z_var = z_scores(out[:, test] - mean[None, test], var[test])
    null = z_null_range(cov[np.ix_(test, test)], m, k, kf)
    return {
        "mean_gp": mean,
        "mean_fin": out.mean(0),
        "var_gp": var,
        "var_fin": ((out - mean[None]) ** 2).mean((0, 2)),
        "z_mean_rms": float(np.sqrt(np.mean(z_mean**2))),
        "z_mean_max": float(np.abs(z_mean).max()),
        "z_var_rms": float(np.sqrt(np.mean(z_var**2))),
        "z_var_max": float(np.abs(z_var).max()),
        "z_mean_rms_null": null[0],
        "z_var_rms_null": null[1],
    }


def z_scores(dev, var):
    """z of the ensemble mean and variance from deviations ``dev`` (M, N, k)
    of the M members' outputs from the GP mean, ``var`` (N,) the GP variance:
    ``mean_m dev / √(var/M)`` and ``(var̂ − var) / (var·√(2/(Mk)))``."""
    xp = jnp if isinstance(dev, jax.Array) else np
    m, _, k = dev.shape
    z_mean = dev.mean(0) / xp.sqrt(var[:, None] / m)
    z_var = ((dev**2).mean((0, 2)) - var) / (var * math.sqrt(2 / (m * k)))
    return z_mean, z_var


#: Exact GP ensembles drawn for `z_null_range`'s quantiles.
NULL_DRAWS = 10_000


def z_null_range(cov, m: int, k: int, key, draws: int = NULL_DRAWS) -> list:
    """Central 99.73% ranges ("3σ") of RMS z of the mean and of the variance
    when the M members are exact draws of the GP (``cov``: its covariance on
    the N test inputs; the k outputs are independent). The N·k z-values are
    correlated through ``cov``, so their RMS spreads far more than
    1/√(2Nk): this Monte Carlo, not that formula, says how far is too far."""
    w, v = np.linalg.eigh(np.asarray(cov, np.float64))
    factor = jnp.asarray(v * np.sqrt(np.clip(w, 0, None)), jnp.float32)
    var = jnp.asarray(np.diag(cov), jnp.float32)
    keys = jax.random.split(jax.random.fold_in(key, 1), draws)
    stats = np.asarray(
        jax.lax.map(lambda kk: gp_ensemble_rms_z(factor, var, kk, m, k), keys, batch_size=100)
    )
    return np.quantile(stats, [0.00135, 0.99865], axis=0).T.round(4).tolist()


def gp_ensemble_rms_z(factor, var, key, m: int, k: int):
    """``[RMS z of the mean, RMS z of the variance]`` of one ensemble of ``m``
    exact GP draws with ``k`` independent outputs: ``factor @ factorᵀ`` is the
    GP covariance on the N inputs, ``var`` its diagonal."""
    dev = factor @ jax.random.normal(key, (factor.shape[1], m * k))
    zs = z_scores(dev.reshape(-1, m, k).transpose(1, 0, 2), var)
    return jnp.stack([jnp.sqrt(jnp.mean(z**2)) for z in zs])
