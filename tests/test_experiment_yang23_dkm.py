"""The yang23_dkm experiment: its --tiny run.

The tiny run is checked for the paper's claims, each of which can fail: a deep
GP's posterior Gram approaches the DKM optimum as width grows, at about the
N^{-1/2} rate; the NNGP Gram does not; ν → ∞ gives the NNGP Grams; small ν
aligns the top Gram with YYᵀ; every UCI model beats predicting the mean.
The library pieces it orchestrates are tested beside the library
(tests/test_dkm_sampling.py, test_dkm_deep_gp.py, test_dkm_sweep.py,
test_dkm_regression.py).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from tiny_runs import tiny_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run("yang23_dkm", tmp_path_factory)


def test_tiny_run_writes_its_figures_and_table(tiny):
    directory, payload = tiny
    assert payload["figures"] == [
        "fig1_grams.png",
        "fig2_convergence.png",
        "fig3_nu_sweep.png",
        "fig4_uci.png",
    ]
    for name in payload["figures"]:
        assert (directory / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(payload["paper_vs_ours"]) >= 6
    assert "Boston" in payload["metrics"]["data"]


def test_tiny_posterior_gram_approaches_the_dkm_optimum_with_width(tiny):
    m = tiny[1]["metrics"]
    d = np.asarray(m["sample_rel_distance"])  # (widths, layers)
    assert np.all(d[-1] < 0.5 * d[0]), d


def test_tiny_sampler_acceptance_was_adapted(tiny):
    acc = np.asarray(tiny[1]["metrics"]["acceptance"])
    assert np.all((acc > 0.35) & (acc < 0.85)), acc


def test_tiny_distance_slope_is_near_minus_one_half(tiny):
    for slope in tiny[1]["metrics"]["sample_distance_slopes"]:
        assert -0.8 < slope < -0.3, slope


def test_tiny_nngp_gram_stays_away_from_the_posterior(tiny):
    m = tiny[1]["metrics"]
    nngp, d = np.asarray(m["nngp_rel_distance"]), np.asarray(m["sample_rel_distance"])
    assert np.all(nngp[-1] > 0.6 * nngp[0])  # does not shrink with width
    assert np.all(nngp[-1] > d[-1])  # the optimum, not the prior, is the limit


def test_tiny_large_nu_gives_the_nngp_gram(tiny):
    m = tiny[1]["metrics"]
    assert max(m["sweep_rel_distance_to_nngp"][-1]) < 1e-3


def test_tiny_small_nu_aligns_top_gram_with_targets(tiny):
    m = tiny[1]["metrics"]
    align = m["sweep_alignment_with_yyT"]
    assert align[0] > m["nngp_alignment_with_yyT"] + 0.1
    assert align[0] > align[-1]


def test_tiny_uci_models_beat_predicting_the_mean(tiny):
    m = tiny[1]["metrics"]
    boston = m["uci"]["boston"]
    y_std = 9.2  # Boston MEDV standard deviation (thousands of dollars)
    assert "DGP (2 layers, DSVI)" in boston and len(boston) == 4
    for model, scores in boston.items():
        rmse, ll = scores["rmse"][0], scores["ll"][0]
        assert math.isfinite(ll), model
        assert rmse < 0.8 * y_std, (model, rmse)


# ------------------------------------------------------------------ standard UCI splits


def _write_split(folder, i, train, test):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"index_train_{i}.txt").write_text("\n".join(map(str, train)) + "\n")
    (folder / f"index_test_{i}.txt").write_text("\n".join(map(str, test)) + "\n")


def test_standard_split_files_are_read_in_order_from_either_layout(tmp_path):
    from ntk.data.uci import uci_split_indices

    assert uci_split_indices("boston", tmp_path) == []  # no files: no splits
    _write_split(tmp_path / "boston" / "data", 0, [0, 2, 3], [1])
    _write_split(tmp_path / "boston" / "data", 1, [1, 2], [0, 3])
    splits = uci_split_indices("boston", tmp_path, n_rows=4)
    assert [(s[0].tolist(), s[1].tolist()) for s in splits] == [([0, 2, 3], [1]), ([1, 2], [0, 3])]
    _write_split(tmp_path / "concrete", 0, [4], [5])
    assert uci_split_indices("concrete", tmp_path)[0][1].tolist() == [5]


@pytest.mark.parametrize(
    "train, test, message",
    [
        ([0, 1], [1], "in both train and test"),
        ([0, 9], [1], "indexes rows 0…9; the data has 4 rows"),
        (["0.5"], [1], "integer row indices"),
    ],
)
def test_bad_split_files_are_a_value_error_naming_the_file(tmp_path, train, test, message):
    from ntk.data.uci import uci_split_indices

    _write_split(tmp_path / "yacht", 0, train, test)
    with pytest.raises(ValueError, match=message):
        uci_split_indices("yacht", tmp_path, n_rows=4)


def test_tiny_uci_rows_give_mean_and_the_number_of_splits(tiny):
    _, payload = tiny
    rows = [r for r in payload["paper_vs_ours"] if r["quantity"].startswith("boston:")]
    boston = payload["metrics"]["uci"]["boston"]
    dkm = next(r for r in rows if r["quantity"].startswith("boston: sparse DKM test RMSE"))
    assert dkm["ours"].startswith(f"{boston['sparse DKM']['rmse'][0]:.3f}")
    assert "1 split(s) (fewer than the paper's 20" in dkm["note"]
    paired = [r for r in rows if "paired over splits" in r["quantity"]]
    assert len(paired) == 2 and all(r["mark"] in ("agree", "differs") for r in paired)
    for r in paired:
        base = r["quantity"].split(" − ")[1].split(", test RMSE")[0]
        d = boston["sparse DKM"]["rmse"][0] - boston[base]["rmse"][0]
        assert r["mark"] == ("agree" if d <= 0 else "differs")
        assert r["rule"] == "difference ≤ 0 (one split: no standard error)"


@pytest.mark.parametrize("z,mark", [(2.5, "agree"), (3.0, "differs"), (-1.0, "agree")])
def test_paired_uci_row_uses_students_t_for_five_splits(z, mark):
    # five splits: the s.e. comes from 4 degrees of freedom, so the one-sided
    # 97.7% level is t = 2.87 (scipy), not a normal's 2: a DKM 2.5 s.e. worse
    # than a baseline matches it, 3.0 s.e. worse does not
    from experiments import registry, yang23_dkm  # noqa: F401  (registers its parts first)
    from experiments import _yang23_uci

    config = dataclasses.replace(registry.get("yang23_dkm").config("quick"), uci_splits=5)
    base = np.array([3.0, 2.5, 2.8, 3.2, 2.6])
    spread = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])  # mean 0, sd √2.5
    se = math.sqrt(2.5 / 5)
    dkm = base + z * se + spread
    row_for = lambda rmse: {
        "rmse": (float(rmse.mean()), 0.1),
        "ll": (-2.0, 0.1),
        "rmse_per_split": rmse.tolist(),
    }
    models = {
        "sparse DKM": row_for(dkm),
        _yang23_uci._dgp_name(config): row_for(base),
        "NNGP": row_for(base),
    }
    rows = _yang23_uci.uci_table(config, {"boston": models}, {"boston": "offline"})
    paired = [r for r in rows if "paired over splits" in r["quantity"]]
    assert len(paired) == 2 and all(r["mark"] == mark for r in paired)
    t = stats.t.ppf(stats.norm.cdf(2.0), 4)
    assert t == pytest.approx(2.869, abs=1e-3) and f"{t:.2f} s.e." in paired[0]["rule"]


def test_a_skipped_uci_set_has_no_ours_and_the_report_marks_it_not_comparable(tmp_path):
    # a dataset missing from data_dir (and no stand-in) is skipped: its row has
    # ours None (nothing was computed), says why in its note and is rendered
    # "not comparable" by the report
    import dataclasses

    from experiments import registry, report

    cfg = dataclasses.replace(
        registry.get("yang23_dkm").config("tiny"),
        uci_datasets=("yacht",),
        data_dir=str(tmp_path),
        uci_stand_in=False,
    )
    from experiments import _yang23_uci  # after yang23_dkm, which registers it

    uci_rows, notes = _yang23_uci._uci(cfg, None, None, lambda it, _desc: it)
    assert uci_rows == {} and notes["yacht"].startswith("skipped")
    (row,) = _yang23_uci.uci_table(cfg, uci_rows, notes)
    assert row["quantity"] == "yacht: test RMSE / LL" and row["ours"] is None
    assert row["mark"] == "not comparable" and "ours was not computed" in row["rule"]
    assert row["note"].startswith("not computed: skipped")
    payload = {
        "experiment": "yang23_dkm",
        "size": "tiny",
        "run_id": "test",
        "wall_time_s": 0.0,
        "paper_vs_ours": [row],
    }
    md = report.markdown({"yang23_dkm": payload}, tmp_path)
    (line,) = [ln for ln in md.splitlines() if "yacht: test RMSE / LL" in ln]
    assert line.startswith("| – not comparable |") and "not computed: skipped" in line
    assert "None" not in line  # an uncomputed "ours" shows as a dash
    page = report.html_page({"yang23_dkm": payload}, tmp_path)
    assert '<tr class="not-comparable"><td>– not comparable</td><td>yacht' in page
