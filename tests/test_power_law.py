"""`ntk.power_law`: the library's one log–log power-law fit."""

from __future__ import annotations

import numpy as np
import pytest

from ntk import random_features as rf
from ntk.power_law import loglog_fit, loglog_slope, loglog_slope_se


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
        (
            lambda: loglog_fit([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]),
            ValueError,
            "`x` must hold ≥ 2 distinct values.*all 3 equal to 2",
        ),
        (
            lambda: loglog_slope_se([2.0, 2.0], [[1.0, 1.1], [2.0, 2.1]]),
            ValueError,
            "`x` must hold ≥ 2 distinct values",
        ),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


@pytest.mark.parametrize("trials", [4, 12])
def test_slope_se_is_the_spread_of_the_slope_over_repeated_draws(trials):
    # 4,000 repetitions of draws with mean ∝ x^-1 and a skewed noise (χ²₄/4,
    # the mean square of four Gaussians: the kind of draw the RMS rows fit).
    # The RMS of the delta-method s.e. should equal the slopes' standard
    # deviation; with 4,000 repetitions that sd is known to ~1.1%, and the
    # delta method, exact only for many draws, was measured 7% low at 4 draws
    # and 2% at 12: allow 12%. An s.e. without the 1/√R of a mean would be off
    # by √R ≥ 2.
    rng = np.random.default_rng(1)
    x = np.array([128.0, 256.0, 512.0, 1024.0, 2048.0])
    draws = x[None, :, None] ** -1.0 * rng.chisquare(4, (4000, 5, trials)) / 4
    slopes = np.log(draws.mean(2)) @ ((np.log(x) - np.log(x).mean()) / np.var(np.log(x)) / 5)
    se = np.array([loglog_slope_se(x, d) for d in draws])
    assert slopes.mean() == pytest.approx(-1.0, abs=4 * slopes.std() / np.sqrt(4000))
    assert np.std(slopes, ddof=1) / np.sqrt(np.mean(se**2)) == pytest.approx(1.0, abs=0.12)


def test_slope_se_needs_two_draws_and_one_row_per_abscissa():
    x = np.array([1.0, 2.0, 4.0])
    assert np.isnan(loglog_slope_se(x, np.ones((3, 1))))
    with pytest.raises(ValueError, match=r"loglog_slope_se: `draws` must have one row per"):
        loglog_slope_se(x, np.ones((2, 5)))
