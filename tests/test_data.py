"""Argument validation of `ntk.data` (loaders, splits, few-shot and word tasks).

The datasets' contents are exercised by the experiments that use them
(tests/test_mup_limits.py for the word and few-shot tasks); here every bad
argument must end in an error that names it.
"""

import numpy as np
import pytest

from ntk import data
from ntk.data import fewshot, text

_X = np.arange(12.0).reshape(6, 2)
_Y = np.arange(6.0)
_RNG = np.random.default_rng(0)
_NAN = _X.copy()
_NAN[0, 0] = np.nan


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (lambda: data.flatten(3.0), ValueError, "`x` must be an array of n examples"),
        (lambda: data.standardize(_X, _NAN), ValueError, r"`others\[0\]` must be finite"),
        (lambda: data.standardize(np.zeros((0, 3))), ValueError, "`x_train` must have a leading"),
        (
            lambda: data.split(_X, _Y, test_fraction=1.0),
            ValueError,
            r"`test_fraction` must be a number in \(0, 1\); got 1.0",
        ),
        (lambda: data.split(_X, _Y, test_fraction="half"), TypeError, "`test_fraction`"),
        (lambda: data.split(_X, _Y[:5]), ValueError, "same number of rows; got 6 and 5"),
        (lambda: data.split(_X, _X), ValueError, r"`y` must have shape \(n,\)"),
        (lambda: data.split(_X[:1], _Y[:1]), ValueError, "at least 2 rows"),
        (lambda: data.split(_NAN, _Y), ValueError, "`x` must be finite"),
        (lambda: data.split(_X, _Y, seed=-1), ValueError, "`seed` must be an int >= 0"),
        (
            lambda: data.standardised_split(_X, _Y, np.array([], int), [0]),
            ValueError,
            "`train` must hold",
        ),
        (lambda: data.standardised_split(_X, _Y, [0], [6]), ValueError, "`test` must index"),
        (lambda: data.standardised_split(_X, _Y[:5], [0], [1]), ValueError, "same number"),
        (lambda: data.uci("housing"), ValueError, "`name` must be one of 'boston'"),
        (lambda: data.uci("concrete", data_dir=3), TypeError, "`data_dir` must be a path"),
        (
            lambda: data.cifar10("/nonexistent", split="val"),
            ValueError,
            "`split` must be one of 'train', 'test'; got 'val'",
        ),
        (lambda: fewshot.normalize_rows(_NAN), ValueError, "`x` must be finite"),
        (
            lambda: fewshot.fewshot_dataset(source="omniglot"),
            ValueError,
            "`source` must be one of 'glyphs', 'digits', 'mnist_5k'",
        ),
        (lambda: fewshot.fewshot_dataset(per_class=0), ValueError, "`per_class`"),
        (lambda: fewshot.fewshot_dataset(distractors=-1), ValueError, "`distractors`"),
        (
            lambda: fewshot.sample_tasks(_X, _Y, 2, n_way=7, rng=_RNG),
            ValueError,
            "`n_way`=7 needs at least that many classes",
        ),
        (
            lambda: fewshot.sample_tasks(_X, _Y, 2, n_way=2, rng=0),
            TypeError,
            "`rng` must be a numpy.random.Generator",
        ),
        (
            lambda: fewshot.sample_tasks(_X, _Y[:5], 2, n_way=2, rng=_RNG),
            ValueError,
            "same number of rows",
        ),
        (lambda: fewshot.sample_tasks(_X, _Y, 0, n_way=2, rng=_RNG), ValueError, "`n_tasks`"),
        (
            lambda: text.planted_analogy_corpus(n_topics=1),
            ValueError,
            "`n_topics` must be an int >= 2; got 1",
        ),
        (
            lambda: text.planted_analogy_corpus(filler_prob=1.0),
            ValueError,
            r"`filler_prob` must be a number in \[0, 1\)",
        ),
        (lambda: text.planted_analogy_corpus(zipf=-1.0), ValueError, "`zipf`"),
        (
            lambda: text.planted_analogy_corpus(n_tokens=10.0),
            TypeError,
            "`n_tokens` must be an int",
        ),
        (
            lambda: text.analogy_accuracy(np.eye(4), np.array([[0, 1, 2, 4]])),
            ValueError,
            r"`questions` must index rows 0\.\.3",
        ),
        (
            lambda: text.analogy_accuracy(np.eye(4), np.array([[0, 1, 2, -1]])),
            ValueError,
            r"word ids in \[0, 4\)",
        ),
        (
            lambda: text.analogy_accuracy(np.triu(np.ones((4, 4))), np.array([[0, 1, 2, 3]])),
            ValueError,
            "`gram` must be symmetric",
        ),
        (lambda: text.unigram_table(np.array([1.0, -1.0])), ValueError, "`counts` must be >= 0"),
        (lambda: text.unigram_table(np.zeros(3)), ValueError, "at least one positive"),
        (
            lambda: text.cbow_batches(np.arange(5), 1, 6, 2, np.full(5, 0.2), _RNG),
            ValueError,
            r"`batch_size` must be an int in \[1, 5\]",
        ),
        (
            lambda: text.cbow_batches(np.arange(5), 1, 2, 2, np.full(5, 0.3), _RNG),
            ValueError,
            "`noise` must be a probability vector",
        ),
        (
            lambda: text.cbow_batches(np.arange(6), 1, 2, 2, np.full(5, 0.2), _RNG),
            ValueError,
            r"`tokens` must be word ids in \[0, 5\)",
        ),
        (
            lambda: text.cbow_batches(np.arange(5.0), 1, 2, 2, np.full(5, 0.2), _RNG),
            TypeError,
            "`tokens` must be integer word ids",
        ),
        (
            lambda: text.read_analogy_questions("q.txt", ["a", "b"]),
            TypeError,
            "`word_to_id` must be a dict",
        ),
        (lambda: text.text8("/nonexistent", max_vocab=0), ValueError, "`max_vocab`"),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_split_keeps_a_training_row_however_large_the_test_fraction():
    # round(0.9 · 3) = 3 test rows would leave no training data (NaN statistics).
    x_tr, y_tr, x_te, y_te, _ = data.split(_X[:3], _Y[:3], test_fraction=0.9)
    assert len(x_tr) == 1 and len(x_te) == 2
    assert np.all(np.isfinite(x_te)) and np.all(np.isfinite(y_te))


def test_standardised_split_uses_training_statistics_only():
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0], [100.0, 1.0]])
    y = np.array([1.0, 3.0, 5.0, -50.0])
    xtr, ytr, xte, yte, ys = data.standardised_split(x, y, np.array([0, 1, 2]), np.array([3]))
    # training rows: mean 2, std √(8/3); the constant column is only centred
    assert np.allclose(xtr[:, 0], np.array([-2.0, 0.0, 2.0]) / np.sqrt(8 / 3))
    assert np.allclose(xtr[:, 1], 0) and np.isclose(xte[0, 0], 98 / np.sqrt(8 / 3))
    assert np.isclose(ys, np.sqrt(8 / 3)) and np.isclose(yte[0], -53 / ys)


def test_split_is_the_standardised_split_of_a_seeded_permutation():
    # split's rows: the first round(0.5 · 6) = 3 of default_rng(seed)'s permutation are the test set.
    order = np.random.default_rng(3).permutation(6)
    got = data.split(_X, _Y, test_fraction=0.5, seed=3)
    want = data.standardised_split(_X, _Y, order[3:], order[:3])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_cbow_batches_validate_before_the_first_batch_is_drawn():
    # A generator would raise only on iteration; the call itself must raise.
    with pytest.raises(ValueError, match="`window`"):
        text.cbow_batches(np.arange(5), 0, 2, 2, np.full(5, 0.2), _RNG)
    batches = list(
        text.cbow_batches(np.arange(5), 1, 2, 2, np.full(5, 0.2), np.random.default_rng(0))
    )
    assert len(batches) == 2  # ⌊5 / 2⌋ batches of one epoch
    ctx, mask, target, neg = batches[0]
    assert ctx.shape == (2, 2) and mask.shape == (2, 2) and neg.shape == (2, 2)
