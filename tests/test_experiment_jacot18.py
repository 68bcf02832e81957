"""Experiment jacot18: its building blocks against closed forms, and its --tiny run's files.

The tiny run (shared with the other tests of the session, see tests/tiny_runs.py)
is run through the CLI with ``--seed 7``: its numbers are not meaningful, its
files and provenance are checked.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import jacot18, registry
from tiny_runs import tiny_run

FIGURES = [
    "fig1_ntk_convergence.png",
    "fig2_function_dynamics.png",
    "fig3_principal_components.png",
    "fig4_rates.png",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run("jacot18", tmp_path_factory)


@pytest.mark.parametrize("name", FIGURES)
def test_tiny_run_exits_0_and_writes_each_png(tiny, name):
    out_dir, _ = tiny  # tiny_run asserts the CLI exited 0
    png = out_dir / name
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000  # a drawn figure, not an empty canvas


def test_tiny_run_metrics_json_has_provenance_and_table(tiny):
    out_dir, _ = tiny
    payload = json.loads((out_dir / "metrics.json").read_text())
    assert payload["experiment"] == "jacot18"
    assert payload["size"] == "tiny"
    assert payload["seed"] == 7 and payload["config"]["seed"] == 7
    assert payload["config"]["slope_widths"] == list(
        registry.get("jacot18").config("tiny").slope_widths
    )
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "ntk"):
        assert payload["versions"][pkg], f"version of {pkg} missing"
    assert payload["versions"]["jax"] == jax.__version__
    assert payload["device"]["platform"] == jax.devices()[0].platform
    assert payload["device"]["device_count"] == jax.device_count()
    assert payload["device"]["device_kind"]
    assert payload["wall_time_s"] > 0
    assert payload["figures"] == FIGURES
    rows = payload["paper_vs_ours"]
    assert rows and all({"quantity", "paper", "theory", "ours"} <= set(r) for r in rows)
    slope_row = next(r for r in rows if r["quantity"].startswith("slope of ‖Θ̂₀"))
    # the paper states no rate: −0.5 is the theory's, checked against ours
    assert slope_row["theory"] == -0.5 and slope_row["rule"].startswith("|ours − theory|")
    assert math.isclose(slope_row["ours"], payload["metrics"]["ntk_init_error_slope"], abs_tol=1e-3)


def test_tiny_run_puts_the_papers_fig3_eigenvalues_beside_ours_and_the_limits(tiny):
    _, payload = tiny
    rows = [r for r in payload["paper_vs_ours"] if r["quantity"].startswith("NTK eigenvalue")]
    m = payload["metrics"]
    assert [r["paper"] for r in rows] == [0.0457, 0.00108, 0.00078]
    assert [r["ours"] for r in rows] == m["mnist_eigenvalues_empirical"]
    # the theory cell is the limit eigenvalue rounded to 6 decimals
    assert np.allclose([r["theory"] for r in rows], m["mnist_eigenvalues_limit"], rtol=0, atol=6e-7)
    for r in rows:
        ok = abs(r["ours"] / r["paper"] - 1) <= 0.2
        assert r["mark"] == ("agree" if ok else "differs")


def test_tiny_run_records_each_part_its_time_and_the_data(tiny):
    _, payload = tiny
    parts = payload["parts"]
    assert [p["name"] for p in parts] == ["fig1", "fig2", "pc", "mnist_eigen", "rates"]
    assert all(p["seconds"] > 0 for p in parts)
    assert sum(p["seconds"] for p in parts) <= payload["wall_time_s"]
    assert "synthetic" in payload["data_used"]["fig1"]


def test_tiny_run_leaves_no_temporary_files(tiny):
    out_dir, _ = tiny
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(FIGURES + ["metrics.json"])


def test_efold_time_of_an_exact_exponential_is_its_time_constant():
    # log|r| is linear in t, so the interpolation the function does is exact
    steps = np.arange(60)
    for tau in (1.0, 7.3, 25.0):
        assert jacot18._efold_time(steps, 3.0 * np.exp(-steps / tau)) == pytest.approx(
            tau, rel=1e-12
        )
    assert jacot18._efold_time(steps, np.ones(60)) == math.inf


def test_gradient_descent_matches_the_update_rule_on_a_linear_model():
    # f(x) = x·w, loss ‖Xw − y‖²/(2N): w ← w − η Xᵀ(Xw − y)/N, iterated by hand
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    y = jax.random.normal(jax.random.PRNGKey(1), (5, 1))
    w0 = jnp.zeros((3, 1))
    got = jacot18.gradient_descent(lambda w, x: x @ w, w0, x, y, lr=0.3, steps=25)
    w = np.zeros((3, 1))
    xn, yn = np.asarray(x), np.asarray(y)
    for _ in range(25):
        w = w - 0.3 * xn.T @ (xn @ w - yn) / len(xn)
    np.testing.assert_allclose(np.asarray(got), w, rtol=1e-10, atol=1e-12)
