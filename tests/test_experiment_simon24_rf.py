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

from experiments import simon24_rf
import tiny_runs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return tiny_runs.tiny_run("simon24_rf", tmp_path_factory)[0]


def test_tiny_run_writes_metrics_and_every_figure(tiny_run):
    payload = json.loads((tiny_run / "metrics.json").read_text())
    for name in ("test_mse_vs_k_n.png", "train_mse_vs_k_n.png", "heatmaps_k_n.png",
                 "conv_ntk_eigenstructure.png", "obligatory_overfitting.png"):
        assert (tiny_run / name).stat().st_size > 1000
    assert "MNIST-5k" in payload["metrics"]["image_dataset"]   # the offline fallback is named


def test_tiny_run_theory_envelopes_decrease_in_k_and_n(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())["metrics"]
    for tag in ("synthetic", "image"):
        for axis in ("k", "n"):
            env = np.asarray(m[f"{tag}_envelope_vs_{axis}_theory"])
            assert np.all(np.diff(env) <= 1e-4 * env[:-1]), (tag, axis, env)


def test_cifar10_without_data_dir_is_a_clear_error():
    with pytest.raises(ValueError, match="data_dir"):
        simon24_rf.load_images(simon24_rf.Config(dataset="cifar10"))
