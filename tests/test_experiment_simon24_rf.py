"""The simon24_rf experiment: its building blocks and its --tiny run.

The tiny run's numbers are not meaningful, but its structure is checked, and the
claims that hold at any size are checked on it: the theory's optimal-ridge
envelope decreases in k and n ("more is better"). The library pieces it
orchestrates are tested in tests/test_random_features_krr.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import _simon24_features as rffeat
from experiments import _simon24_sim as rfsim
from experiments import simon24_rf
import tiny_runs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return tiny_runs.tiny_run("simon24_rf", tmp_path_factory)[0]


def test_tiny_run_writes_metrics_and_every_figure(tiny_run):
    payload = json.loads((tiny_run / "metrics.json").read_text())
    for name in (
        "test_mse_vs_k_n.png",
        "train_mse_vs_k_n.png",
        "heatmaps_k_n.png",
        "conv_ntk_eigenstructure.png",
        "obligatory_overfitting.png",
    ):
        assert (tiny_run / name).stat().st_size > 1000
    assert "MNIST-5k" in payload["metrics"]["image_dataset"]  # the offline fallback is named


def test_tiny_run_theory_envelopes_decrease_in_k_and_n(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())["metrics"]
    for tag in ("synthetic", "image"):
        for axis in ("k", "n"):
            env = np.asarray(m[f"{tag}_envelope_vs_{axis}_theory"])
            assert np.all(np.diff(env) <= 1e-4 * env[:-1]), (tag, axis, env)


def test_cifar10_without_data_dir_is_a_clear_error():
    with pytest.raises(ValueError, match="data_dir"):
        rfsim.load_images(simon24_rf.Config(dataset="cifar10"))


def test_tiny_run_puts_the_papers_ridge_table_beside_ours(tiny_run):
    payload = json.loads((tiny_run / "metrics.json").read_text())
    rows = {r["quantity"]: r for r in payload["paper_vs_ours"]}
    noiseless = rows["σ²_rel = 5: optimal ridge, test MSE, fitting ratio, MSE at ridge 1e-6"]
    # the offline data is MNIST: the paper's MNIST row, beside ours and the theory's
    assert noiseless["paper"].startswith("ridge 4.3e-05, MSE 0.206, E_tr/E_te 0.159")
    assert noiseless["theory"].startswith("E_tr/E_te")
    ours = payload["metrics"]["ridge_table"]["rows"]["5.0"]
    assert noiseless["ours"].startswith(f"ridge {ours[0]:.2g}, MSE {ours[1]:.3g}")
    alpha = rows[
        "conv NTK α on MNIST-5k (offline fallback for CIFAR-10), size proxy (Tr K_n⁻¹)⁻¹ ∝ n^−α"
    ]
    assert alpha["paper"] == 1.12
    assert alpha["ours"] == payload["metrics"]["conv_ntk_alpha_proxy"]


def test_tiny_run_shows_relu_vs_gaussian_features(tiny_run):
    payload = json.loads((tiny_run / "metrics.json").read_text())
    assert (tiny_run / "relu_vs_gaussian_features.png").stat().st_size > 1000
    m = payload["metrics"]
    assert m["features_ridge_threshold"] == rffeat.RIDGE_THRESHOLD
    assert len(m["features_max_rel_dev_relu_per_ridge"]) == len(m["features_ridges_rel"])
    rows = {r["quantity"]: r for r in payload["paper_vs_ours"]}
    cv = rows["per-feature power in the top 10 eigenmodes, CV (ReLU vs Gaussian)"]
    assert cv["ours"] == (
        f"ReLU {m['features_power_cv_relu']:.2f}, Gaussian {m['features_power_cv_gaussian']:.2f}"
    )
    assert cv["mark"] == "agree"
