"""`ntk.random_features.krr` simulations and `optimal_fitting_ratio`, checked
against the KRR eigenframework (`krr_risk`) and against direct linear solves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import random_features as rf


def _power_law(m, a=1.5, b=1.5):
    i = jnp.arange(1, m + 1, dtype=jnp.float64)
    return i**-a, jnp.sqrt(i**-b)


def test_noise_free_power_law_optimum_is_at_zero_training_error():
    ratio, ridge = rf.optimal_fitting_ratio(1.5, 1.5, 128, 0.0, modes=4000)
    total = float(np.sum(np.arange(1, 4001.0) ** -1.5))
    assert ratio < 1e-3 and ridge <= 1e-4 * total


def test_label_noise_moves_the_optimum_away_from_interpolation():
    # with noise the optimal ridge is positive and the training error no longer 0:
    # E_tr/E_te = ((n − z)/n)² > 0 at δ* > 0
    ratio, ridge = rf.optimal_fitting_ratio(1.5, 1.5, 128, 0.5, modes=4000)
    assert ridge > 0 and ratio > 0.01


def test_synthetic_krr_simulation_matches_krr_theory():
    lam, v = _power_law(800)
    ridges = jnp.array([1e-2, 1e-1])
    train, test = rf.gaussian_krr_mse(
        lam, v, 0.5, 128, ridges, jax.random.split(jax.random.PRNGKey(0), 16)
    )
    th = jax.vmap(lambda d: rf.krr_risk(lam, v, 128, d, 0.5))(ridges)
    # 16 trials; the theory is exact for the Gaussian model up to O(1/n). Per trial the
    # test MSE spreads by ~5% and the train MSE by ~20% (measured), so the 16-trial
    # means are uncertain by ~1.3% and ~5%: the tolerances are ≥ 2 standard errors.
    np.testing.assert_allclose(np.asarray(test).mean(0), th.test_mse, rtol=0.05)
    np.testing.assert_allclose(np.asarray(train).mean(0), th.train_mse, rtol=0.1)


def test_pool_krr_is_the_direct_solve_on_the_drawn_training_set():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    k = np.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1))
    y = np.sin(x[:, 0])
    ridges = np.array([1e-3, 1e-1, 1.0])
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    train, test = rf.krr_pool_mse(k, y, 12, ridges, keys)
    for t, key in enumerate(keys):
        idx = np.asarray(jax.random.permutation(key, 30))[:12]
        for r, d in enumerate(ridges):
            # (K_tt + δI)⁻¹ y by a dense solve: independent of the eigh route
            alpha = np.linalg.solve(k[np.ix_(idx, idx)] + d * np.eye(12), y[idx])
            pred = k[:, idx] @ alpha
            np.testing.assert_allclose(test[t, r], np.mean((pred - y) ** 2), rtol=1e-8)
            np.testing.assert_allclose(
                train[t, r], np.mean((pred[idx] - y[idx]) ** 2), rtol=1e-6, atol=1e-12
            )


def test_ridge_table_matches_a_direct_solve_per_ridge():
    # the eigendecomposition shortcut against np.linalg.solve for each ridge on
    # a random PSD kernel, with the same splits and noise draws
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 8))
    kernel = a @ a.T / 8 + 0.05 * np.eye(30)
    y = np.sign(rng.standard_normal(30))
    ridges = np.logspace(-3, 1, 5)
    out = rf.krr_ridge_table(kernel, y, (0.0, 2.0), ridges, trials=2, n_test=10, seed=3)

    draw = np.random.default_rng(3)
    splits = [draw.permutation(30) for _ in range(2)]
    noises = [(draw.standard_normal(20), draw.standard_normal(10)) for _ in range(2)]

    def curves(noise_var):
        test, train = np.zeros(5), np.zeros(5)
        for order, (e_tr, e_te) in zip(splits, noises):
            tr, te = order[10:], order[:10]
            s = np.sqrt(1 + noise_var)
            y_tr = (y[tr] + np.sqrt(noise_var) * e_tr) / s
            y_te = (y[te] + np.sqrt(noise_var) * e_te) / s
            for j, r in enumerate(ridges):
                w = np.linalg.solve(kernel[np.ix_(tr, tr)] + r * np.eye(20), y_tr)
                test[j] += np.mean((kernel[np.ix_(te, tr)] @ w - y_te) ** 2) / 2
                train[j] += np.mean((kernel[np.ix_(tr, tr)] @ w - y_tr) ** 2) / 2
        return test, train

    e0 = curves(0.0)[0][0]
    assert out["n_train"] == 20 and np.isclose(out["noiseless_mse"], e0, rtol=1e-10)
    test, train = curves(2.0 * e0)
    j = int(np.argmin(test))
    np.testing.assert_allclose(
        out["rows"][2.0], (ridges[j], test[j], train[j] / test[j], test[0]), rtol=1e-8
    )


@pytest.mark.parametrize(
    "call,exc,message",
    [
        (
            lambda: rf.krr_pool_mse(
                np.eye(3), np.ones(3), 4, [0.1], jax.random.split(jax.random.PRNGKey(0), 2)
            ),
            ValueError,
            r"`n` must be an int in \[1, 3\]",
        ),
        (
            lambda: rf.krr_pool_mse(
                np.eye(3), np.ones(2), 2, [0.1], jax.random.split(jax.random.PRNGKey(0), 2)
            ),
            ValueError,
            r"`y` must have shape \(3,\)",
        ),
        (
            lambda: rf.gaussian_krr_mse(
                np.ones(3), np.ones(3), 0.1, 4, [-1.0], jax.random.split(jax.random.PRNGKey(0), 2)
            ),
            ValueError,
            "`ridges` must be >= 0",
        ),
        (
            lambda: rf.gaussian_krr_mse(
                np.ones(3), np.ones(2), 0.1, 4, [1.0], jax.random.split(jax.random.PRNGKey(0), 2)
            ),
            ValueError,
            "`target_coeffs` must have shape",
        ),
        (
            lambda: rf.optimal_fitting_ratio(1.5, -1.0, 16, 0.0),
            ValueError,
            "`beta` must be a number > 0",
        ),
        (
            lambda: rf.krr_ridge_table(np.eye(4), np.ones(4), (0.0,), [1.0, 0.1], 1, 2, 0),
            ValueError,
            "`ridges` must be >= 0 and increasing",
        ),
        (
            lambda: rf.krr_ridge_table(np.eye(4), np.ones(4), (0.0,), [0.1], 1, 4, 0),
            ValueError,
            r"`n_test` must be an int in \[1, 3\]",
        ),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
