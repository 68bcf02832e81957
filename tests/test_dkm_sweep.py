"""`ntk.dkm.make_nu_fitter`: full-DKM optima along a ν sweep, one compilation.

Checked against the DKM's own limits and objective: at huge ν the optimum is
the NNGP (the KL terms pin every Gram), and at ν = 1 the optimum beats the
NNGP under the independent `dkm_objective` (explicit Grams, not the whitened
parameters the fitter optimises) and reports that objective's value.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from ntk import data, dkm


@pytest.fixture(scope="module")
def fitter():
    # 10 random points of UCI Boston, standardised, in float32 (the experiment's data)
    x, y = data.uci("boston")
    idx = np.random.default_rng(0).permutation(len(x))[:10]
    x, y = x[idx], y[idx]
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    y = (y - y.mean()) / y.std()
    X, Y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)[:, None]
    kernel = dkm.sqexp()
    model = dkm.FullDKM(kernel, num_layers=2, noise_var=0.1, jitter=1e-5)
    return X, Y, kernel, dkm.make_nu_fitter(model, X, Y)


def test_fitter_at_huge_nu_returns_the_nngp_grams(fitter):
    X, Y, kernel, fit = fitter
    grams, _, _ = fit(1e6)
    nngp = np.stack([np.asarray(g, np.float64) for g in dkm.nngp_grams(X, kernel, 2)])
    # ν = 1e6: the optimum sits O(1/ν) from the NNGP; 1e-3 leaves float32 slack
    assert np.max(np.abs(grams - nngp)) / np.max(np.abs(nngp)) < 1e-3


def test_fitter_optimum_beats_nngp_under_the_dkm_objective(fitter):
    X, Y, kernel, fit = fitter
    grams, value, _ = fit(1.0)
    nngp = dkm.nngp_grams(X, kernel, 2)
    at_nngp = float(dkm.dkm_objective(nngp, X, Y, kernel, nu=1.0, noise_var=0.1, jitter=1e-5))
    at_opt = float(
        dkm.dkm_objective(
            [jnp.asarray(g, jnp.float32) for g in grams],
            X,
            Y,
            kernel,
            nu=1.0,
            noise_var=0.1,
            jitter=1e-5,
        )
    )
    assert at_opt > at_nngp + 0.1
    # the two routes to L differ by float32 round-off of P×P Cholesky factors
    assert abs(at_opt - value) < 1e-3 * abs(value) + 1e-3


def test_fitter_rejects_other_models_and_nu_by_name(fitter):
    X, Y, kernel, fit = fitter
    with pytest.raises(ValueError, match="`nu` must be a number > 0"):
        fit(0.0)
    with pytest.raises(TypeError, match="`model` must be an ntk.dkm.FullDKM"):
        dkm.make_nu_fitter(dkm.SparseDKM(kernel), X, Y)
    categorical = dkm.FullDKM(kernel, likelihood="categorical", num_classes=2)
    with pytest.raises(ValueError, match="Gaussian likelihood"):
        dkm.make_nu_fitter(categorical, X, Y)
