"""The yang21_mup experiment at tiny size: files written and the dichotomy's sign.

Even at widths 32…128 and 4 steps, μP's feature movement must fall off with
width much more slowly than NTK's (theory: slopes 0 and −1/2, TP4 Def. 3.2).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from experiments import _yang21_maml, _yang21_word2vec, registry, yang21_mup
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


def test_dichotomy_slopes_are_fitted_on_the_widths_above_the_input_dimension(payload):
    _, p = payload
    assert yang21_mup.fit_widths((64, 128, 256, 512, 1024), 196) == (256, 512, 1024)
    assert yang21_mup.fit_widths((64, 128, 256), 196) == (64, 128, 256)  # one above: all
    d = yang21_mup.mnist_features(1, 0)[0].shape[1]  # 14×14 pooled pixels
    tiny = p["metrics"]["dichotomy"]
    assert tiny["fit_widths"] == list(yang21_mup.fit_widths(tiny["widths"], d))


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


def test_deep_slope_rows_allow_three_standard_errors_of_the_networks_spread(payload):
    _, p = payload
    deep = p["metrics"]["deep"]
    rows = {r["quantity"]: r for r in p["paper_vs_ours"]}
    for quantity, key in (
        ("deep MLP: per-network |f_N − f_∞| vs width, log-log slope", "slope_per_network"),
        ("deep MLP: per-network |Φ^L_T,N − Φ^L_T,∞| slope", "slope_phiL_T"),
    ):
        tol = 3 * deep[f"{key}_se"]
        assert 0 < tol < 1, deep
        assert rows[quantity]["rule"] == f"|ours − theory| ≤ 3 s.e. = {tol:.3f}"
        assert rows[quantity]["mark"] == ("agree" if abs(deep[key] + 0.5) <= tol else "differs")


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
    settings = _yang21_maml.maml_width_settings(cfg)
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
    per = _yang21_maml.maml_width_settings(quick)
    assert list(per) == list(quick.maml_widths)
    assert [v[1] for v in per.values()] == list(quick.maml_width_sigma_us)
    tiny = registry.get("yang21_mup").config("tiny")
    assert set(_yang21_maml.maml_width_settings(tiny).values()) == {
        (tiny.maml_outer_lr, tiny.maml_sigma_u, tiny.maml_sigma_v)
    }
    bad = dataclasses.replace(quick, maml_width_sigma_vs=(0.5,))
    with pytest.raises(ValueError, match="maml_width_sigma_vs: expected one value per entry"):
        _yang21_maml.maml_width_settings(bad)


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
    shown = [k for k in _yang21_word2vec.PAPER_W2V_FIL9 if k in ours]
    assert "limit" in shown and len(shown) >= 2
    for key in shown:
        label, acc = ours[key]
        row = rows[f"word2vec analogy acc on fil9, {label} (%)"]
        assert row["paper"] == _yang21_word2vec.PAPER_W2V_FIL9[key]
        assert row["ours"] == acc == rows[f"word2vec analogy acc, {label} (%)"]["ours"]
        assert row["mark"] == "not comparable" and "fil9" in row["rule"]
        assert "read from the plot" in row["note"] and w2v["corpus"] in row["note"]
    assert sum("on fil9" in q for q in rows) == len(shown)


def test_maml_ordering_row_says_which_paper_numbers_are_read_from_the_plot(payload):
    _, p = payload
    row = next(r for r in p["paper_vs_ours"] if r["quantity"].startswith("MAML ordering"))
    paper = _yang21_maml.PAPER_MAML
    assert row["paper"].startswith(f"{paper['limit']} (TP4 MAML table)")
    assert f"≈ {paper[32]} (widths ≥ 32, TP4 MAML figure, read from the plot)" in row["paper"]
    assert all(paper[n] == paper[32] for n in (128, 512, 2048, 8192))


# ------------------------------------------------------------------ MAML: validation, schedule


def test_maml_validation_classes_are_disjoint_from_meta_train_and_meta_test():
    tiny = registry.get("yang21_mup").config("tiny")
    cfg = dataclasses.replace(tiny, maml_classes=45, maml_per_class=6, maml_val_classes=6)
    ds = _yang21_maml.maml_dataset(cfg)
    x_tr, y_tr, x_val, y_val = _yang21_maml.maml_validation_split(
        ds.x_train, ds.y_train, cfg.maml_val_classes, seed=cfg.seed + 2
    )
    train, val, test = set(y_tr), set(y_val), set(ds.y_test)
    assert len(val) == 6 and len(train) == len(set(ds.y_train)) - 6
    assert not val & train and not val & test and not train & test
    assert len(x_tr) == len(y_tr) and len(x_val) == len(y_val) == 6 * cfg.maml_per_class
    # no hold-out: the meta-train set unchanged (the tiny and full sizes)
    same = _yang21_maml.maml_validation_split(ds.x_train, ds.y_train, 0, seed=0)
    assert same[1] is ds.y_train and len(same[3]) == 0
    with pytest.raises(ValueError, match="maml_val_classes"):
        _yang21_maml.maml_validation_split(ds.x_train, ds.y_train, len(train) + 2, seed=0)


def test_maml_multistep_schedule_gives_the_documented_meta_lr_at_its_milestones():
    lrs = _yang21_maml.maml_outer_lrs(0.1, 10_000, (0.5, 0.75), 0.1)
    assert len(lrs) == 10_000 and lrs[0] == lrs[4999] == 0.1
    assert lrs[5000] == lrs[7499] == pytest.approx(0.01, rel=1e-12)
    assert lrs[7500] == lrs[-1] == pytest.approx(0.001, rel=1e-12)
    assert _yang21_maml.maml_outer_lrs(0.3, 5) == [0.3] * 5  # no milestones: constant
    with pytest.raises(ValueError, match="maml_lr_milestones"):
        _yang21_maml.maml_outer_lrs(0.1, 10, (1.5,))
    full = registry.get("yang21_mup").config("full")
    assert full.maml_lr_milestones == (0.5, 0.75) and full.maml_dtype == "float64"
    quick = registry.get("yang21_mup").config("quick")
    assert quick.maml_lr_milestones == () and quick.maml_dtype == "float32"


def test_maml_meta_step_takes_the_meta_lr_as_an_argument_without_recompiling():
    lim = limits.init_limit(6, 5, 1.0, 0.5)
    rng = np.random.default_rng(0)
    tasks = (rng.normal(size=(2, 5, 6)), np.tile(np.arange(5), (2, 1)))
    tasks = tuple(np.asarray(a, np.float32) if a.dtype.kind == "f" else a for a in tasks * 2)
    step = _yang21_maml._maml_meta_step
    before = step._cache_size()
    out = [step(lim, tasks, lr, inner_lr=0.4, clip=0.5) for lr in (0.2, 0.02)]
    assert step._cache_size() == before + 1
    # the meta-lr is used, not frozen at its first value: the step is η times the
    # (clipped) meta-gradient
    dw = [np.asarray(o.W - lim.W) for o in out]
    assert np.linalg.norm(dw[1]) > 0
    np.testing.assert_allclose(dw[0], 10 * dw[1], rtol=1e-3, atol=1e-6)  # float32 W₀ ± ΔW


def test_tune_maml_picks_the_argmax_of_validation_accuracy():
    quick = registry.get("yang21_mup").config("quick")
    grid = lambda width: [(0.1, 1.0, 0.5), (0.2, 1.0, 0.5), (0.4, 1.0, 0.5)]
    fake = {None: [60.0, 71.0, 65.0], 2: [50.0, 40.0, 50.0], 8: [30.0, 31.0, 45.0]}
    calls = []

    def score(width, setting):  # a stub: no training
        calls.append((width, setting))
        return fake[width][grid(width).index(setting)]

    got = _yang21_maml.tune_maml(quick, (2, 8), grid=grid, score=score, log=lambda s: None)
    assert list(got) == ["limit", 2, 8] and len(calls) == 9
    assert got["limit"]["best"] == (0.2, 1.0, 0.5) and got["limit"]["accuracy"] == 71.0
    assert got[2]["best"] == (0.1, 1.0, 0.5)  # a tie: the first in the grid's order
    assert got[8]["best"] == (0.4, 1.0, 0.5)
    assert [s for _, s in got[8]["scores"]] == fake[8]
    assert list(_yang21_maml.tune_maml(quick, (8,), limit=False, grid=grid, score=score)) == [8]
    # the default grid: TP4's σ_u per width (its "inf" for the limit), 4 η × 4 σ_v
    assert {s[1] for s in _yang21_maml.maml_tune_grid(2)} == {0.5}
    assert {s[1] for s in _yang21_maml.maml_tune_grid(None)} == {1.0}
    assert len(_yang21_maml.maml_tune_grid(512)) == 16


def test_maml_quick_run_reports_validation_only_with_held_out_classes(payload):
    _, p = payload
    maml = p["metrics"]["limits"]["maml"]
    # tiny meta-trains on every meta-train class (as full): no validation split
    assert maml["validation"] is None and maml["dtype"] == "float32"
    assert maml["lr_schedule"] == {"milestones": [], "decay": 0.1}
    quick = registry.get("yang21_mup").config("quick")
    assert quick.maml_val_classes > 0 and quick.maml_val_tasks > 0


def test_meta_batches_are_drawn_lazily_and_identically_on_every_pass():
    x = np.arange(60.0)[:, None] * np.ones((1, 3))
    y = np.repeat(np.arange(12), 5)

    def sample(rng):
        return fewshot.sample_tasks(x, y, 2, n_way=5, k_shot=1, q_query=1, rng=rng)

    batches = _yang21_maml.MetaBatches(sample, 4, seed=7)
    first, second = list(batches), list(batches)
    assert len(batches) == len(first) == 4
    # the same tasks in the same order as one generator drawn eagerly
    rng = np.random.default_rng(7)
    eager = [sample(rng) for _ in range(4)]
    for a, b, c in zip(first, second, eager):
        for u, v, w in zip(a, b, c):
            np.testing.assert_array_equal(u, v)
            np.testing.assert_array_equal(u, w)
    # consecutive batches differ (the generator advances)
    assert not np.array_equal(first[0][0], first[1][0])
