"""The yang21_mup experiment at tiny size: files written and the dichotomy's sign.

Even at widths 32…128 and 4 steps, μP's feature movement must fall off with
width much more slowly than NTK's (theory: slopes 0 and −1/2, TP4 Def. 3.2).
"""

from __future__ import annotations

import json

import pytest

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
    assert rows["feature movement slope, NTK"]["paper"].startswith("-0.5")
    assert rows["feature movement slope, muP"]["paper"].startswith("-0.0")


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
