"""`ntk.data.glyphs`: the generated few-shot characters and their rasteriser.

The rasteriser is checked against the analytic distance to a straight
stroke, the benchmark's structure against what it promises: disjoint
meta-train / meta-test characters, determinism, drawings of one character
closer than drawings of different ones, and a paper background that a fixed
linear map removes (so learned features help and pixel kernels are misled).
"""

import numpy as np
import pytest

from ntk.data import fewshot, glyphs

_NO_JITTER = {k: 0.0 for k in glyphs.DEFAULT_JITTER}


def _cosines(x):
    x = fewshot.normalize_rows(x)
    return x @ x.T


def test_glyphs_have_the_documented_shapes_dtypes_and_class_counts():
    x_tr, y_tr, x_te, y_te = glyphs.glyphs(30, 4, seed=0)
    assert x_tr.shape == (80, 28, 28) and x_te.shape == (40, 28, 28)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert np.array_equal(np.unique(y_tr), np.arange(20))
    assert np.array_equal(np.unique(y_te), np.arange(20, 30))
    assert np.all(np.bincount(y_tr) == 4) and np.isfinite(x_tr).all()
    points, used, width = glyphs.glyph_characters(1200)
    assert points.shape == (1200, 4, 4, 2) and used.shape == (1200, 4)
    assert set(used.sum(1)) == {2, 3, 4} and ((width >= 1.2) & (width <= 2.4)).all()


def test_meta_train_and_meta_test_characters_are_disjoint():
    x_tr, y_tr, x_te, y_te = glyphs.glyphs(60, 2, jitter=_NO_JITTER, seed=1)
    assert not set(y_tr) & set(y_te)
    # Without jitter every drawing is its character: no meta-test character
    # may coincide with a meta-train one (cosine 1 up to float32 rounding).
    cross = fewshot.normalize_rows(x_te) @ fewshot.normalize_rows(x_tr).T
    assert cross.max() < 0.99


def test_same_seed_gives_the_same_glyphs_and_another_seed_does_not():
    a = glyphs.glyphs(12, 3, seed=5)
    b = glyphs.glyphs(12, 3, seed=5)
    c = glyphs.glyphs(12, 3, seed=6)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.allclose(a[0], c[0])


def test_without_jitter_every_drawing_of_a_character_is_identical():
    x, y, _, _ = glyphs.glyphs(6, 3, jitter=_NO_JITTER, seed=2)
    for k in np.unique(y):
        assert np.array_equal(x[y == k][0], x[y == k][1])


def test_a_straight_stroke_is_inked_along_its_analytic_centre_line():
    # One straight stroke from (6, 9) to (21, 17) (collinear control points),
    # pen width 2.0, no jitter: pixels on the segment must be inked, pixels
    # farther than 3 pen widths from it blank. The line density is deposited
    # bilinearly, so the centre line reaches ≥ 0.9 rather than exactly 1 (the
    # tanh saturation is ≈ 0.97 for an infinite line).
    a, b = np.array([6.0, 9.0]), np.array([21.0, 17.0])
    pts = np.stack([a + t * (b - a) for t in (0, 1 / 3, 2 / 3, 1)])[None, None]
    img = glyphs.render_glyphs(
        pts,
        np.array([[True]]),
        np.array([2.0]),
        np.array([0]),
        jitter=_NO_JITTER,
        rng=np.random.default_rng(0),
    )[0]
    yy, xx = np.mgrid[0:28, 0:28]
    p = np.stack([xx, yy], -1).astype(float)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    dist = np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1)
    inner = (dist < 0.35) & (t > 0.1) & (t < 0.9)
    assert inner.sum() >= 8 and img[inner].min() > 0.9
    assert np.abs(img[dist > 6.0]).max() < 1e-3


def test_drawings_of_one_character_are_closer_than_drawings_of_different_ones():
    x, y, _, _ = glyphs.glyphs(40, 6, n_test_classes=1, seed=3)
    # Remove the paper (see the next test) so the comparison is about ink.
    x = x - x.mean(1, keepdims=True) - x.mean(2, keepdims=True)
    cos = _cosines(x.reshape(len(x), -1))
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    diff = y[:, None] != y[None]
    # Different random characters share almost no ink (mean cosine ≈ 0.01,
    # measured); jittered noisy drawings of one character keep some of theirs
    # (≈ 0.18). 0.08 is half the measured gap and many times its sampling
    # error (40 classes × 15 pairs, pair cosines spread by ≈ 0.1).
    assert cos[same].mean() > cos[diff].mean() + 0.08


def test_the_paper_background_is_rows_plus_columns_a_fixed_linear_map_removes():
    b = glyphs._paper(50, 28, 0.6, 0.5, np.random.default_rng(0))
    centred = (
        b - b.mean(1, keepdims=True) - b.mean(2, keepdims=True) + b.mean((1, 2), keepdims=True)
    )
    assert np.abs(b).max() > 0.3 and np.abs(centred).max() < 1e-12


def test_pixel_cosine_one_shot_accuracy_gains_from_removing_the_paper():
    # The benchmark's premise: a frozen pixel kernel is misled by the
    # background, while a linear map that a learner can find on meta-train
    # characters (here: the double centring of the previous test) transfers
    # to the disjoint meta-test characters. 1-NN on 200 5-way 1-shot tasks
    # with 3 queries per class: each accuracy has a standard error ≈ 1.6
    # points, the measured gain is ≈ 19 points (39 → 57); 10 points leaves
    # four standard errors of the difference on either side.
    _, _, x, y = glyphs.glyphs(90, 4, n_test_classes=60, seed=4)
    flat = lambda z: fewshot.normalize_rows(z.reshape(len(z), -1))
    centred = x - x.mean(1, keepdims=True) - x.mean(2, keepdims=True)
    acc = []
    for z in (flat(x), flat(centred)):
        xs, ys, xq, yq = fewshot.sample_tasks(
            z, y, 200, n_way=5, k_shot=1, q_query=3, rng=np.random.default_rng(0)
        )
        pred = np.einsum("tqd,tsd->tqs", xq, xs).argmax(-1)
        acc.append(100 * (ys[np.arange(len(ys))[:, None], pred] == yq).mean())
    assert acc[1] > acc[0] + 10, acc


def test_fewshot_dataset_serves_normalised_glyph_rows_over_disjoint_classes():
    ds = fewshot.fewshot_dataset(source="glyphs", classes=30, per_class=3, seed=0)
    assert ds.x_train.shape == (60, 784) and ds.x_test.shape == (30, 784)
    assert np.allclose(np.linalg.norm(ds.x_train, axis=1), 1, atol=1e-5)
    assert np.allclose(ds.x_test.mean(1), 0, atol=1e-6)
    assert not set(ds.y_train) & set(ds.y_test) and ds.name.startswith("glyphs")


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (
            lambda: glyphs.glyphs(5, 2, n_test_classes=5),
            ValueError,
            r"`n_test_classes` must leave a meta-train class \(< n_classes=5\); got 5",
        ),
        (lambda: glyphs.glyphs(1), ValueError, "`n_classes` must be an int >= 2"),
        (lambda: glyphs.glyphs(4, 0), ValueError, "`per_class`"),
        (
            lambda: glyphs.glyph_characters(4, strokes=(3, 2)),
            ValueError,
            r"`strokes` must be a tuple \(min, max\)",
        ),
        (
            lambda: glyphs.glyphs(4, 2, jitter={"blur": 1.0}),
            ValueError,
            r"`jitter` keys must be among .* unknown \['blur'\]",
        ),
        (
            lambda: glyphs.render_glyphs(*glyphs.glyph_characters(2), np.zeros(2, int), rng=0),
            TypeError,
            "`rng` must be a numpy.random.Generator",
        ),
        (lambda: fewshot.fewshot_dataset(source="glyphs", classes=1), ValueError, "`classes`"),
    ],
)
def test_bad_glyph_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
