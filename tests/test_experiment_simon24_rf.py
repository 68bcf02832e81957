"""The simon24_rf experiment: its building blocks and its --tiny run.

The tiny run's numbers are not meaningful, but its structure is checked, and the
claims that hold at any size are checked on it: the theory's optimal-ridge
envelope decreases in k and n ("more is better"), and the obligatory-overfitting
optimum of the noise-free synthetic task sits at (near) zero training error.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import simon24_rf
from experiments.__main__ import main
from ntk import random_features as rf


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("simon24_rf")
    assert main(["run", "simon24_rf", "--tiny", "--out", str(out)]) == 0
    return out / "simon24_rf"


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


def test_noise_free_power_law_optimum_is_at_zero_training_error():
    ratio, ridge = simon24_rf.optimal_fitting_ratio(1.5, 1.5, 128, 0.0, modes=4000)
    total = float(np.sum(np.arange(1, 4001.0) ** -1.5))
    assert ratio < 1e-3 and ridge <= 1e-4 * total


def test_synthetic_krr_simulation_matches_krr_theory():
    config = simon24_rf.Config(m_modes=800)
    lam, v = simon24_rf.synthetic_task(config)
    lam, v = lam.astype(jnp.float64), v.astype(jnp.float64)
    ridges = jnp.array([1e-2, 1e-1])
    _, test = simon24_rf._krr_synthetic(lam, v, 0.5, 128, ridges,
                                        jax.random.split(jax.random.PRNGKey(0), 16))
    th = jax.vmap(lambda d: rf.krr_risk(lam, v, 128, d, 0.5).test_mse)(ridges)
    np.testing.assert_allclose(np.asarray(test).mean(0), th, rtol=0.05)


def test_cifar10_without_data_dir_is_a_clear_error():
    with pytest.raises(ValueError, match="data_dir"):
        simon24_rf.load_images(simon24_rf.Config(dataset="cifar10"))
