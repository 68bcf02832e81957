"""`ntk.power_law`: the library's one log–log power-law fit."""

from __future__ import annotations

import numpy as np
import pytest

from ntk import random_features as rf
from ntk.power_law import loglog_fit, loglog_slope


def test_exact_power_law_is_recovered():
    x = np.array([16.0, 64.0, 256.0, 1024.0])
    fit = loglog_fit(x, 3.0 * x**-0.5)
    # an exact line in log–log: only float64 round-off of the least squares
    assert fit.exponent == pytest.approx(-0.5, abs=1e-12)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-12)
    assert loglog_slope(x, 2.0 * x**2) == pytest.approx(2.0, abs=1e-12)


def test_noisy_slope_is_the_least_squares_line():
    rng = np.random.default_rng(0)
    x = np.geomspace(10, 1e4, 12)
    v = 5 * x**-1.2 * np.exp(0.1 * rng.normal(size=12))
    # normal equations of the line log v = p log x + c, solved independently
    a = np.stack([np.log(x), np.ones(12)], 1)
    p, c = np.linalg.solve(a.T @ a, a.T @ np.log(v))
    fit = loglog_fit(x, v)
    assert fit.exponent == pytest.approx(p, rel=1e-10)
    assert fit.prefactor == pytest.approx(np.exp(c), rel=1e-10)


def test_invalid_points_raise_drop_or_give_nan():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    v = np.array([1.0, 0.5, 0.0, 0.125])  # a zero has no logarithm
    with pytest.raises(ValueError, match=r"positive and finite.*indices \[2\]"):
        loglog_fit(x, v)
    assert loglog_slope(x, v, invalid="drop") == pytest.approx(-1.0, abs=1e-12)
    assert np.isnan(loglog_slope(x, v, invalid="nan"))
    with pytest.raises(ValueError, match="need ≥ 2 positive finite points; got 1"):
        loglog_fit(x, [1.0, -1.0, 0.0, np.nan], invalid="drop")


def test_random_features_power_law_fit_is_the_decay_exponent():
    x = np.arange(1, 50.0)
    p, c = rf.power_law_fit(x, 2.0 * x**-1.5)
    fit = loglog_fit(x, 2.0 * x**-1.5)
    assert (p, c) == (-fit.exponent, fit.prefactor)
    assert p == pytest.approx(1.5, abs=1e-12)


@pytest.mark.parametrize(
    "call,exc,message",
    [
        (lambda: loglog_fit([1.0, 2.0], [1.0]), ValueError, "same shape"),
        (
            lambda: loglog_fit([1.0, 2.0], [1.0, 2.0], invalid="skip"),
            ValueError,
            "`invalid` must be one of 'raise', 'drop', 'nan'",
        ),
        (lambda: loglog_fit(np.ones((2, 2)), np.ones((2, 2))), ValueError, r"shape \(m,\)"),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
