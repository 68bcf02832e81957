"""The simon24_rf experiment: its building blocks and its --tiny run.

The tiny run's numbers are not meaningful, but its structure is checked, and the
claims that hold at any size are checked on it: the theory's optimal-ridge
envelope decreases in k and n ("more is better"). The library pieces it
orchestrates are tested in tests/test_random_features_krr.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import _simon24_features as rffeat
from experiments import _simon24_ridge as ridge
from experiments import _simon24_sim as rfsim
from experiments import simon24_rf
import tiny_runs

PAPER_CURVE_RIDGES = [4.64e-3, 2.15e-2, 0.1, 2.15, 21.5]


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
    # the tiny pool's train sizes (up to 60) stop far below the paper's top decade
    assert alpha["mark"] == "not comparable"
    assert f"± {payload['metrics']['conv_ntk_alpha_proxy_se']:.2f}" in alpha["note"]


@pytest.mark.parametrize(
    "sizes, marks",
    [([100, 3000], ("agree", "differs")), ([8, 32], ("not comparable", "not comparable"))],
)
def test_conv_ntk_proxies_meet_the_paper_within_3_se_only_from_its_top_decade(sizes, marks):
    # α 0.05 from the paper's 1.12 with s.e. 0.02 (≤ 0.06: agree), β 0.2 from
    # 1.36 with s.e. 0.05 (> 0.15: differs); proxies stopping at n = 32 are
    # slopes over other sizes than the paper's 2,900–29,000 and are not compared.
    eig = dict(
        alpha=1.0,
        beta=1.0,
        alpha_proxy=1.17,
        beta_proxy=1.56,
        proxy={"sizes": sizes, "alpha_se": 0.02, "beta_se": 0.05},
    )
    rows = simon24_rf._conv_ntk_rows(
        simon24_rf.Config(), eig, "MNIST", (1.12, 1.36), (0.01, 0.0), (0.01, 0.0)
    )
    assert (rows[0]["mark"], rows[1]["mark"]) == marks
    if marks[0] == "not comparable":
        assert "8–32" in rows[0]["rule"]


@pytest.mark.parametrize(
    "ratio, at_ours, excess, mark",
    [
        (0.054, 0.058, 0.004, "agree"),  # a neighbouring ridge the trials cannot tell apart
        (0.054, 0.058, 0.040, "differs"),  # an optimum the theory says is 4 s.e. worse
        (0.150, 0.058, 0.004, "differs"),  # the ratio itself off by 0.09
        (0.010, 0.010, 0.000, "agree"),
    ],
)
def test_optimal_fitting_ratio_row_compares_with_the_theory_at_our_optimal_ridge(
    ratio, at_ours, excess, mark
):
    # the theory column keeps the theory's own optimum; the check uses its ratio at ours
    c = dict(
        sim_opt_ratio=ratio,
        th_grid_ratio_at_sim_opt=at_ours,
        th_grid_test_excess_at_sim_opt=excess,
        sim_opt_test_se=0.01,
        th_grid_opt_ratio=0.0103,
        th_opt_ratio=0.0103,
    )
    row = simon24_rf._overfitting_row(simon24_rf.Config(), "ReLU NNGP", c)
    assert row["mark"] == mark
    assert row["theory"] == 0.0103


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


def _fake_cifar10(root, per_batch=60, seed=0):
    """CIFAR-10's python-pickle batches (`ntk.data.cifar10`'s format) with random
    uint8 images: 5 × ``per_batch`` training images and a test batch."""
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, per_batch).tolist(),
        }
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_resolves_to_the_papers_rf_setting_at_every_size(tmp_path):
    _fake_cifar10(tmp_path, per_batch=2)
    exp = simon24_rf.EXPERIMENT
    for size, smoke, trials in (("quick", False, 45), ("full", False, 45), ("full", True, 1)):
        setting = rfsim.image_rf_setting(exp.config(size, data_dir=str(tmp_path), smoke=smoke))
        assert (setting.name, setting.trials) == ("paper", trials), (size, smoke)
        assert (setting.relative, setting.inputs) == (False, "global")
        assert setting.w_std == pytest.approx(math.sqrt(2))  # W ~ N(0, 2/d)
        np.testing.assert_allclose(setting.ridges, np.logspace(-3, 2, 31))
        ridges, where = setting.grid(7.0)  # absolute: Tr K/N = 7 leaves them as they are
        np.testing.assert_allclose(ridges, np.logspace(-3, 2, 31))
        np.testing.assert_allclose(ridges[where], PAPER_CURVE_RIDGES, rtol=3e-3)
    # the offline MNIST default keeps our setting
    quick = exp.config("quick")
    ours = rfsim.image_rf_setting(quick)
    assert (ours.name, ours.trials, ours.w_std, ours.relative) == ("ours", quick.trials, 1.0, True)
    with pytest.raises(ValueError, match="rf_setting"):
        rfsim.image_rf_setting(dataclasses.replace(quick, rf_setting="both"))


def test_cifar10_image_part_simulates_in_the_papers_setting(tmp_path, monkeypatch):
    """The image part on a fake CIFAR-10 (80 random images), its sweeps cut to one
    simulation at n = 16, k = 8, traced, not compiled (the tiny run executes
    the same code): ReLU features with W_std √2 on globally standardised
    pixels, the paper's 31 absolute ridges, the tiny cut of its 45 trials."""
    _fake_cifar10(tmp_path, per_batch=16)
    tiny = simon24_rf.EXPERIMENT.config("tiny", data_dir=str(tmp_path))
    config = dataclasses.replace(tiny, pool=80)

    def one_simulation(config_, key, task, simulate, setting):
        ridges, _ = setting.grid(float(np.sum(task[0])))
        keys = jax.random.split(key, setting.trials)
        r = jnp.asarray(ridges, jnp.float32)
        return jax.eval_shape(lambda k: simulate((16,), (8,), r, k), keys)

    monkeypatch.setattr(rfsim, "sweeps", one_simulation)
    seen = []
    relu = rfsim.rf.relu_features
    monkeypatch.setattr(
        rfsim.rf, "relu_features", lambda *a, **kw: seen.append(kw.get("W_std")) or relu(*a, **kw)
    )
    setting, task, (train, test) = simon24_rf.image_sweeps(config, simon24_rf._keys(config))
    x, _, kernel, _, _, name = task
    assert (name, setting.name, setting.trials) == ("CIFAR-10", "paper", tiny.paper_trials)
    assert seen and all(w == pytest.approx(math.sqrt(2)) for w in seen)
    assert train.shape == test.shape == (tiny.paper_trials, 1, 1, 31)  # trials, n, k, ridges
    # the pool is the whole fake set: globally standardised to mean 0, std 1
    x = np.asarray(x, np.float64)
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-4
    # the NNGP of relu(√2·ω·x/√d): diagonal W_std²‖x‖²/(2d) = ‖x‖²/d
    np.testing.assert_allclose(np.diag(kernel), np.sum(x**2, 1) / x.shape[1], rtol=1e-4)


def test_sweeps_take_the_settings_trials_and_absolute_ridges(monkeypatch):
    config = dataclasses.replace(simon24_rf.Config(), rf_setting="paper", paper_trials=3)
    setting = rfsim.image_rf_setting(config)
    calls = []

    def simulate(ns, ks, ridges, keys):
        calls.append((ns, ks, np.asarray(ridges), keys.shape[0]))
        return (np.zeros((keys.shape[0], len(ns), len(ks), len(ridges))),) * 2

    def theory(lam, v, noise, ns, ks, ridges):
        return (np.ones((len(ns), len(ks), len(ridges))),) * 2

    monkeypatch.setattr(rfsim, "theory_point", theory)
    lam = jnp.ones(4)
    out = rfsim.sweeps(config, jax.random.PRNGKey(0), (lam, lam, 0.0, 7.0), simulate, setting)
    assert [c[3] for c in calls] == [3, 3, config.grid_trials]  # vs k, vs n, (k, n) grid
    for c in calls:  # absolute: Tr K/N = 7 does not scale them
        np.testing.assert_allclose(c[2], np.logspace(-3, 2, 31), rtol=1e-6)
    np.testing.assert_allclose(out["ridges"][out["curve_idx"]], PAPER_CURVE_RIDGES, rtol=3e-3)


def test_tiny_run_offline_keeps_our_rf_setting_and_says_so(tiny_run):
    payload = json.loads((tiny_run / "metrics.json").read_text())
    assert payload["metrics"]["image_rf_setting"]["name"] == "ours"
    (row,) = [r for r in payload["paper_vs_ours"] if r["quantity"].startswith("best-ridge RF")]
    assert row["mark"] == "not comparable" and "our setting" in row["rule"]


def test_papers_k_table_rows_read_our_envelope_at_each_k():
    config = dataclasses.replace(simon24_rf.Config(), sweep=(10, 32, 100, 1000), fixed=256)
    metrics = {
        "image_envelope_vs_k_experiment": [0.9, 0.8, 0.7, 0.6],
        "image_envelope_vs_k_theory": [0.91, 0.81, 0.71, 0.61],
    }
    paper = rfsim.image_rf_setting(dataclasses.replace(config, rf_setting="paper"))
    rows = ridge.paper_rf_vs_k_rows(config, metrics, "CIFAR-10", paper)
    by_k = dict(zip(ridge.PAPER_RF_VS_K, rows))
    assert (by_k[10]["ours"], by_k[10]["theory"], by_k[10]["mark"]) == (0.9, 0.91, "agree")
    assert (by_k[100]["ours"], by_k[100]["mark"]) == (0.7, "differs")  # 11% below 0.789
    t = math.log(31 / 10) / math.log(32 / 10)
    assert by_k[31]["ours"] == round(0.9 - 0.1 * t, 4)
    assert by_k[3162]["mark"] == by_k[10000]["mark"] == "not comparable"
    # MNIST in our setting: one row with the whole table, not comparable, saying so
    ours = rfsim.image_rf_setting(config)
    (row,) = ridge.paper_rf_vs_k_rows(config, metrics, "MNIST-5k", ours)
    assert row["mark"] == "not comparable" and "our setting" in row["rule"]


def test_a_grid_gap_is_beyond_tolerance_only_past_10_percent_and_3_standard_errors():
    # one 2×2 grid (n, k ∈ {64, 128}) at two curve ridges (of three); theory 1, so
    # gaps and standard errors are relative to it
    dev = np.zeros((2, 2, 2))
    se = np.full((2, 2, 2), 0.01)
    dev[0, 0, 0], se[0, 0, 0] = 0.12, 0.05  # 12% but 2.4 SE: trial noise
    dev[1, 1, 1] = -0.08  # 8% (below the theory) at 8 SE: within 10%

    def count(**kw):
        th = np.ones((2, 2, 3))
        sim, sim_se = th.copy(), np.full((2, 2, 3), 0.01)
        sim[..., [0, 2]], sim_se[..., [0, 2]] = 1 + dev, se
        grid = dict(n=[64, 128], k=[64, 128], sim_test=sim, th_test=th, sim_test_se=sim_se)
        beyond, worst = rfsim.beyond_tolerance(grid, [0, 2], [0.01, 0.1, 1.0], **kw)
        return beyond, round(worst, 12)

    assert count() == (0, 0.12)
    dev[0, 1, 1] = 0.11  # 11% at 11 SE: beyond
    assert count() == (1, 0.12)
    # above a ridge threshold only the second curve ridge counts
    assert count(min_ridge=0.5) == (1, 0.11)
    assert count(big=128) == (0, 0.08)


@pytest.mark.parametrize("cells", [1, 45, 200])
def test_max_z_bound_is_exceeded_by_the_largest_of_that_many_normals_0_27_percent_of_the_time(
    cells,
):
    from scipy import stats

    bound = rfsim.max_z_bound(cells)
    # P(max of `cells` independent |z| ≤ bound) = (P(|z| ≤ bound))^cells
    assert (1 - 2 * stats.norm.sf(bound)) ** cells == pytest.approx(1 - 0.0027, abs=1e-9)
    # and a Monte Carlo of it: 20,000 maxima, binomial s.e. of the rate 0.037%
    z = np.abs(np.random.default_rng(cells).standard_normal((20_000, cells)))
    assert abs((z.max(axis=1) > bound).mean() - 0.0027) < 4 * math.sqrt(0.0027 / 20_000)


def test_tiny_run_holds_the_largest_z_to_the_sidak_bound_of_its_cells(tiny_run):
    payload = json.loads((tiny_run / "metrics.json").read_text())
    m = payload["metrics"]
    row = next(
        r
        for r in payload["paper_vs_ours"]
        if r["quantity"].strip().startswith("synthetic, n,k ≥ 64: max |sim")
    )
    bound = rfsim.max_z_bound(max(m["synthetic_cells_n_k_ge_64"], 1))
    assert row["rule"].startswith(f"max |z| ≤ {bound:.2f}")
    assert row["mark"] == ("agree" if m["synthetic_max_abs_z_n_k_ge_64"] <= bound else "differs")
