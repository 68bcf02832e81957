"""The yang21_mup experiment at tiny size: files written and the dichotomy's sign.

Even at widths 32…128 and 4 steps, μP's feature movement must fall off with
width much more slowly than NTK's (theory: slopes 0 and −1/2, TP4 Def. 3.2).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from experiments import _yang21_limits, registry
from tiny_runs import tiny_run


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    return tiny_run("yang21_mup", tmp_path_factory)


def test_writes_metrics_and_figures(payload):
    out, p = payload
    written = json.loads((out / "metrics.json").read_text())
    assert written["experiment"] == "yang21_mup"
    for name in ("dichotomy.png", "mutransfer.png", "coord_check.png"):
        assert name in p["figures"] and (out / name).stat().st_size > 0


def test_mup_features_move_more_slowly_with_width_than_ntk(payload):
    _, p = payload
    slope = p["metrics"]["dichotomy"]["slope"]
    assert slope["muP"] > slope["NTK"] + 0.25, slope


def test_paper_vs_ours_has_the_theory_beside_each_slope(payload):
    _, p = payload
    rows = {r["quantity"]: r for r in p["paper_vs_ours"]}
    # TP4 Def. 3.2: −r = −1/2 in the kernel regime, 0 with feature learning
    assert rows["feature movement slope, NTK"]["theory"] == -0.5
    assert rows["feature movement slope, muP"]["theory"] == 0.0
    for label in ("NTK", "muP"):
        r = rows[f"feature movement slope, {label}"]
        assert r["ours"] == round(p["metrics"]["dichotomy"]["slope"][label], 3)
        assert r["mark"] == ("agree" if abs(r["ours"] - r["theory"]) <= 0.15 else "differs")


def test_maml_rows_carry_tp4s_published_accuracies(payload):
    _, p = payload
    rows = {r["quantity"]: r for r in p["paper_vs_ours"]}
    assert rows["MAML 5w1s acc, muP limit (%)"]["paper"].startswith("66.42")
    assert rows["MAML 5w1s acc, ReLU NTK (%)"]["paper"].startswith("47.82")
    assert "read from the plot" in rows["MAML 5w1s acc, linear NTK = GP (%)"]["paper"]
    linear = p["metrics"]["limits"]["maml"]["linear"]
    assert rows["MAML 5w1s acc, linear NTK = GP (%)"]["ours"].startswith(
        f"{linear['accuracy']:.2f}")


def test_maml_per_width_settings_follow_the_widths_and_refuse_a_wrong_length():
    cfg = registry.get("yang21_mup").config("full")
    settings = _yang21_limits.maml_width_settings(cfg)
    # TP4's tuned (meta-lr, σ_u, σ_v) per width, as its repo lists them
    assert settings[2] == (0.05, 0.5, 0.5) and settings[32] == (0.4, 1.0, 0.125)
    assert settings[8192] == (0.1, 1.0, 1 / 32)
    assert (cfg.maml_inner_lr, cfg.maml_batch, cfg.maml_steps, cfg.maml_eval_inner_steps) == (
        0.4, 32, 10_000, 20)
    quick = registry.get("yang21_mup").config("quick")
    assert set(_yang21_limits.maml_width_settings(quick).values()) == {
        (quick.maml_outer_lr, quick.maml_sigma_u, quick.maml_sigma_v)}
    bad = dataclasses.replace(quick, maml_width_sigma_vs=(0.5,))
    with pytest.raises(ValueError, match="maml_width_sigma_vs: expected one value per entry"):
        _yang21_limits.maml_width_settings(bad)


# ------------------------------------------------------------------ Word2Vec / MAML parts


def test_word2vec_and_maml_parts_write_figures_and_limit_beats_ntk_on_planted_corpus(payload):
    out, p = payload
    for name in ("yang21_word2vec.png", "yang21_maml.png"):
        assert name in p["figures"] and (out / name).stat().st_size > 1000
    limits = p["metrics"]["limits"]
    json.dumps(limits, default=float)
    w2v = limits["word2vec"]
    assert w2v["ntk_gp"]["accuracy"] == 0.0
    assert w2v["limit"]["accuracy"] > w2v["ntk_gp"]["accuracy"]
    assert {r["quantity"] for r in p["paper_vs_ours"]} >= {
        "word2vec analogy acc, muP limit (%)", "MAML 5w1s acc, muP limit (%)"}
