"""Experiment giapitzakis25 (formerly perm25) at tiny size: files, table, numbers that must hold."""

import json

import jax
import numpy as np
import pytest
from scipy import stats

from experiments import _giapitzakis25_finite, giapitzakis25
from tiny_runs import tiny_run


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    return tiny_run("giapitzakis25", tmp_path_factory)


def test_writes_metrics_and_every_figure(payload):
    out, p = payload
    metrics = json.loads((out / "metrics.json").read_text())
    assert "paper_vs_ours" in metrics
    assert len(p["figures"]) == 4
    for name in p["figures"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_input_recovered_once_m_passes_the_union_bound(payload):
    enum = payload[1]["metrics"]["enumerated"]
    assert all(e["exact_at_bound"] for e in enum.values())


@pytest.mark.parametrize("n,failures", [(5, 0), (5, 1), (5, 3), (7, 4), (12, 2)])
def test_failures_tail_is_the_binomial_survival_function(n, failures):
    expected = stats.binom.sf(failures - 1, n, 0.1)
    assert giapitzakis25.failures_tail(n, failures, 0.1) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("failed,mark", [(0, "agree"), (1, "agree"), (3, "agree"), (4, "differs")])
def test_union_bound_row_allows_the_failures_the_bound_allows(failed, mark):
    # five k at δ = 0.1: P(≥ 3 failures) = 0.86%, P(≥ 4) = 0.046% < 0.27%
    config = giapitzakis25.Config()
    exact = {k: i >= failed for i, k in enumerate((4, 6, 8, 10, 12))}
    assert giapitzakis25._union_bound_row(config, exact)["mark"] == mark


def test_recovery_probability_grows_with_m_and_reaches_one(payload):
    for e in payload[1]["metrics"]["enumerated"].values():
        curve = np.asarray(e["curve_all"])
        assert np.all(np.diff(curve) >= 0) and curve[0] < 1 and curve[-1] == 1


def test_noise_to_margin_ratio_tends_to_linear_in_k(payload):
    slopes = payload[1]["metrics"]["noise_margin_ratio"]["local_slopes"]
    assert 0.9 < slopes[-1] < 1.05


def test_fit_constant_recovers_k_log_k_over_delta():
    ks = np.array([4.0, 8.0, 16.0, 32.0])
    c, dev = giapitzakis25.fit_constant(
        ks, 7 * ks * np.log(ks / 0.1), giapitzakis25.k_log_k_over(0.1)
    )
    assert abs(c - 7) < 1e-9 and dev < 1e-12


def test_training_set_row_reports_the_size_the_run_trained_on(payload):
    # the ours column is read from the training set, not written as a literal
    row = next(r for r in payload[1]["paper_vs_ours"] if r["quantity"] == "training set size")
    assert row["ours"] == "k=4: 4 of 15, k=8: 8 of 255"
    assert row["mark"] == "agree" and row["theory"].startswith("k ")


def test_all_input_row_states_the_growth_its_fits_give(payload):
    # the ours column follows from the run's fits: "k log k" only when the
    # c·k log(k/δ) fit of the union bound deviates less than the c·k² fit
    row = next(
        r for r in payload[1]["paper_vs_ours"] if r["quantity"] == "all-input complexity scaling"
    )
    fits = payload[1]["metrics"]["fits"]
    dev_klogk, dev_ksq = fits["union_klogk"][1], fits["union_ksq"][1]
    assert row["paper"].startswith("O(k²)")
    assert row["ours"].startswith("grows like k log k" if dev_klogk < dev_ksq else "grows like k²")
    assert f"{fits['union_slope']:.2f}" in row["ours"]
    assert f"c·k log(k/δ) {dev_klogk:.0%}, of c·k² {dev_ksq:.0%}" in row["ours"]


def _fits_of(ks, union):
    return {
        "union_klogk": giapitzakis25.fit_constant(ks, union, giapitzakis25.k_log_k_over(0.1)),
        "union_ksq": giapitzakis25.fit_constant(ks, union, giapitzakis25.K_SQ),
    }


@pytest.mark.parametrize(
    "shape, says, not_says",
    [
        (lambda k: 3 * k * np.log(k / 0.1), "grows like k log k", "grows like k²"),
        (lambda k: 0.5 * k**2, "grows like k²", "k log k (c·k log"),
        (lambda k: 0.5 * k**2.5, "grows like k²", "grows like k log k"),
    ],
)
def test_growth_statement_names_the_better_fit_only(shape, says, not_says):
    ks = np.array([8.0, 16.0, 32.0, 64.0])
    text = giapitzakis25.growth_statement(_fits_of(ks, shape(ks)))
    assert text.startswith(says) and not_says not in text


def test_growth_statement_names_neither_shape_on_a_tie():
    tie = {"union_klogk": (1.0, 0.2), "union_ksq": (1.0, 0.2)}
    assert "grows like" not in giapitzakis25.growth_statement(tie)


def test_finite_row_range_of_independent_z_values_is_the_normal_approximation():
    # identity covariance: N·k independent z, so RMS² ≈ 1 ± √(2/(Nk)) and the
    # 99.73% range is about 1 ± 3/√(2Nk) = 1 ± 0.106 for N = 100, k = 4
    # (measured 0.895–1.103; 10,000 draws put about ±0.01 on each end)
    (lo, hi), _ = _giapitzakis25_finite.z_null_range(np.eye(100), 16, 4, jax.random.PRNGKey(0))
    half = 3 / np.sqrt(2 * 100 * 4)
    assert lo == pytest.approx(1 - half, abs=0.02) and hi == pytest.approx(1 + half, abs=0.02)


def test_finite_row_range_of_fully_correlated_inputs_is_that_of_k_z_values():
    # every input the same GP value: the N z of one output are one N(0, 1)
    # draw, so RMS z² is χ²_k / k whatever N is (measured 0.169–2.030 against
    # 0.163–2.110: 13 of 10,000 draws decide a 0.135% tail, a few percent)
    (lo, hi), _ = _giapitzakis25_finite.z_null_range(
        np.ones((50, 50)), 16, 4, jax.random.PRNGKey(0)
    )
    q_lo, q_hi = np.sqrt(stats.chi2.ppf([0.00135, 0.99865], 4) / 4)
    assert lo == pytest.approx(q_lo, rel=0.15) and hi == pytest.approx(q_hi, rel=0.05)
    # and far wider than the normal approximation for 50·4 independent z
    assert hi - lo > 10 * 3 / np.sqrt(2 * 50 * 4)


def test_finite_row_checks_against_the_range_it_reports(payload):
    fin = payload[1]["metrics"]["finite"]
    row = next(r for r in payload[1]["paper_vs_ours"] if r["quantity"].startswith("finite width"))
    inside = all(
        lo <= fin[f"z_{s}_rms"] <= hi
        for s, (lo, hi) in (("mean", fin["z_mean_rms_null"]), ("var", fin["z_var_rms_null"]))
    )
    assert row["mark"] == ("agree" if inside else "differs")
    assert f"{fin['z_mean_rms_null'][0]:.2f}–{fin['z_mean_rms_null'][1]:.2f}" in row["theory"]
