"""Experiment giapitzakis25 (formerly perm25) at tiny size: files, table, numbers that must hold."""

import json

import numpy as np
import pytest

from experiments import giapitzakis25
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
