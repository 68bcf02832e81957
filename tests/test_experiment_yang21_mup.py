"""The yang21_mup experiment at tiny size: files written and the dichotomy's sign.

Even at widths 32…128 and 4 steps, μP's feature movement must fall off with
width much more slowly than NTK's (theory: slopes 0 and −1/2, TP4 Def. 3.2).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from experiments import _yang21_limits, registry
from ntk.data import fewshot
from ntk.mup import limits, maml
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


def test_deep_limit_mc_error_stays_below_the_widest_networks_error(payload):
    # The N^{-1/2} slope is only measurable while the finite networks' error
    # exceeds the limit's own Monte Carlo error (estimated from two solves);
    # per-network error ≈ a/√N with a ≈ 0.5 and the tiny limit's MC error
    # ≈ 0.5/√(10·256·2) ≈ 0.007 against ≈ 0.03 at N = 256: a factor 2 is safe.
    _, p = payload
    deep = p["metrics"]["deep"]
    assert 0 < deep["limit_mc_error_f"] < deep["error_per_network"][-1] / 2, deep
    assert deep["limit_mc_width"] > 2 * max(deep["widths"])
    rows = {r["quantity"]: r for r in p["paper_vs_ours"]}
    note = rows["deep MLP: per-network |f_N − f_∞| vs width, log-log slope"]["note"]
    assert f"{deep['limit_mc_width']:.2g}" in note


def test_maml_rows_carry_tp4s_published_accuracies(payload):
    _, p = payload
    rows = {r["quantity"]: r for r in p["paper_vs_ours"]}
    assert rows["MAML 5w1s acc, muP limit (%)"]["paper"].startswith("66.42")
    assert rows["MAML 5w1s acc, ReLU NTK (%)"]["paper"].startswith("47.82")
    assert "read from the plot" in rows["MAML 5w1s acc, linear NTK = GP (%)"]["paper"]
    linear = p["metrics"]["limits"]["maml"]["linear"]
    assert rows["MAML 5w1s acc, linear NTK = GP (%)"]["ours"].startswith(
        f"{linear['accuracy']:.2f}"
    )


def test_maml_per_width_settings_follow_the_widths_and_refuse_a_wrong_length():
    cfg = registry.get("yang21_mup").config("full")
    settings = _yang21_limits.maml_width_settings(cfg)
    # TP4's tuned (meta-lr, σ_u, σ_v) per width, as its repo lists them
    assert settings[2] == (0.05, 0.5, 0.5) and settings[32] == (0.4, 1.0, 0.125)
    assert settings[8192] == (0.1, 1.0, 1 / 32)
    assert (cfg.maml_inner_lr, cfg.maml_batch, cfg.maml_steps, cfg.maml_eval_inner_steps) == (
        0.4,
        32,
        10_000,
        20,
    )
    quick = registry.get("yang21_mup").config("quick")
    per = _yang21_limits.maml_width_settings(quick)
    assert list(per) == list(quick.maml_widths)
    assert [v[1] for v in per.values()] == list(quick.maml_width_sigma_us)
    tiny = registry.get("yang21_mup").config("tiny")
    assert set(_yang21_limits.maml_width_settings(tiny).values()) == {
        (tiny.maml_outer_lr, tiny.maml_sigma_u, tiny.maml_sigma_v)
    }
    bad = dataclasses.replace(quick, maml_width_sigma_vs=(0.5,))
    with pytest.raises(ValueError, match="maml_width_sigma_vs: expected one value per entry"):
        _yang21_limits.maml_width_settings(bad)


def test_maml_limit_before_meta_training_is_one_nearest_neighbour_by_inner_product():
    # W₀ᵀC₀ = 0, so one inner step from the limit's f ≡ 0 on the support set
    # gives f_k(x_q) = ε(σ_u² + σ_v²)(x_q·x_{s_k} − mean_s x_q·x_s) exactly (the
    # ε² term is ∝ C₀ᵀW₀ = 0): its argmax is the support image with the largest
    # inner product. Checked against that brute-force 1-NN on glyph tasks.
    ds = fewshot.fewshot_dataset(source="glyphs", classes=40, per_class=4, seed=0)
    tasks = fewshot.sample_tasks(
        ds.x_test, ds.y_test, 30, n_way=5, k_shot=1, q_query=3, rng=np.random.default_rng(0)
    )
    lim = limits.init_limit(784, 5, 1.0, 1.0)
    got = maml.evaluate(limits.limit_maml_adapt, lim, 10.0, tasks)
    xs, ys, xq, yq = tasks
    nearest = np.einsum("tqd,tsd->tqs", xq, xs).argmax(-1)
    want = ys[np.arange(len(ys))[:, None], nearest] == yq
    # evaluate averages in float32: 1e-4 points is ~100 float32 roundings of 46 %
    assert got["accuracy"] == pytest.approx(100 * want.mean(), abs=1e-4)
    assert got["sem"] == pytest.approx(100 * want.mean(1).std(ddof=1) / np.sqrt(30), rel=1e-6)


def test_maml_reports_every_model_before_and_after_meta_training(payload):
    _, p = payload
    maml = p["metrics"]["limits"]["maml"]
    assert maml["data"].startswith("glyphs")
    assert set(maml["finite_init"]) == set(maml["finite"])
    rows = {r["quantity"]: r for r in p["paper_vs_ours"]}
    for n in maml["finite"]:
        r = maml["finite_init"][n]
        assert (
            rows[f"MAML 5w1s acc, width {n} before meta-training (%)"]["ours"]
            == f"{r['accuracy']:.2f} ± {r['sem']:.2f}"
        )
    # Even the tiny run (20 meta-steps) must move the limit well off its
    # starting point (measured gain ≈ 12 points; the bar is 3 standard errors
    # of the difference of two test-task means, ≈ 6.5 points).
    before, after = maml["limit_init"], maml["limit"]
    assert after["accuracy"] > before["accuracy"] + 3 * np.hypot(before["sem"], after["sem"])


# ------------------------------------------------------------------ Word2Vec / MAML parts


def test_word2vec_and_maml_parts_write_figures_and_limit_beats_ntk_on_planted_corpus(payload):
    out, p = payload
    for name in ("yang21_word2vec.png", "yang21_maml.png"):
        assert name in p["figures"] and (out / name).stat().st_size > 1000
    limits = p["metrics"]["limits"]
    json.dumps(limits, default=float)
    w2v = limits["word2vec"]
    # the trained NTK/GP limits: their word vectors stay one-hot (TP4 Cor. 3.9),
    # so every analogy ties; the μP limit's move and answer some
    for kernel in ("ntk", "gp"):
        assert w2v[f"{kernel}_limit"]["accuracy"] == 0.0
        assert np.isfinite(w2v[f"{kernel}_limit"]["loss"])
    assert w2v["ntk_limit"]["score_rate"] == 2 * w2v["gp_limit"]["score_rate"]
    assert w2v["limit"]["accuracy"] > w2v["ntk_limit"]["accuracy"]
    assert {r["quantity"] for r in p["paper_vs_ours"]} >= {
        "word2vec analogy acc, muP limit (%)",
        "MAML 5w1s acc, muP limit (%)",
    }


def test_word2vec_fil9_rows_show_tp4s_numbers_beside_the_runs_closest_setting(payload):
    # the run has no fil9 corpus: each of TP4's fil9 numbers the run has a setting
    # for stands beside that setting's accuracy on the run's corpus, not compared
    _, p = payload
    rows = {r["quantity"]: r for r in p["paper_vs_ours"]}
    w2v = p["metrics"]["limits"]["word2vec"]
    ours = {"limit": ("muP limit", w2v["limit"]["accuracy"])}
    ours |= {int(n): (f"width {n}", r["accuracy"]) for n, r in w2v["finite"].items()}
    shown = [k for k in _yang21_limits.PAPER_W2V_FIL9 if k in ours]
    assert "limit" in shown and len(shown) >= 2
    for key in shown:
        label, acc = ours[key]
        row = rows[f"word2vec analogy acc on fil9, {label} (%)"]
        assert row["paper"] == _yang21_limits.PAPER_W2V_FIL9[key]
        assert row["ours"] == acc == rows[f"word2vec analogy acc, {label} (%)"]["ours"]
        assert row["mark"] == "not comparable" and "fil9" in row["rule"]
        assert "read from the plot" in row["note"] and w2v["corpus"] in row["note"]
    assert sum("on fil9" in q for q in rows) == len(shown)


def test_maml_ordering_row_says_which_paper_numbers_are_read_from_the_plot(payload):
    _, p = payload
    row = next(r for r in p["paper_vs_ours"] if r["quantity"].startswith("MAML ordering"))
    paper = _yang21_limits.PAPER_MAML
    assert row["paper"].startswith(f"{paper['limit']} (TP4 MAML table)")
    assert f"≈ {paper[32]} (widths ≥ 32, TP4 MAML figure, read from the plot)" in row["paper"]
    assert all(paper[n] == paper[32] for n in (128, 512, 2048, 8192))
