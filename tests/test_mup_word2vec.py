"""`ntk.mup.word2vec`: CBOW with negative sampling, checked against a NumPy
evaluation of the loss, finite differences and its exact value at zero
output embeddings."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk.data import text
from ntk.mup import word2vec


def _small_corpus(n_tokens):
    """A planted-analogy corpus of 4 topics × 3 modifiers, small enough for tests."""
    return text.planted_analogy_corpus(
        n_topics=4,
        n_modifiers=3,
        words_per_attribute=4,
        n_filler=20,
        n_tokens=n_tokens,
        filler_prob=0.3,
        zipf=1.0,
        seed=0,
    )


def _batch(rng, v=7, n=4, b=5, w=2, k=3):
    params = (jnp.asarray(rng.normal(size=(v, n))), jnp.asarray(rng.normal(size=(v, n))))
    ctx = jnp.asarray(rng.integers(0, v, (b, 2 * w)))
    mask = jnp.asarray((rng.random((b, 2 * w)) > 0.3).astype(np.float64))
    return (
        params,
        ctx,
        mask,
        jnp.asarray(rng.integers(0, v, b)),
        jnp.asarray(rng.integers(0, v, (b, k))),
    )


def test_loss_is_the_negative_sampling_objective():
    rng = np.random.default_rng(0)
    (e_in, e_out), ctx, mask, tgt, neg = _batch(rng)
    scale = 0.3
    e_in, e_out, ctx, mask = map(np.asarray, (e_in, e_out, ctx, mask))
    want = 0.0
    for b in range(len(tgt)):
        h = (e_in[ctx[b]] * mask[b][:, None]).sum(0) / max(mask[b].sum(), 1)
        s_pos = scale * e_out[int(tgt[b])] @ h
        s_neg = scale * e_out[np.asarray(neg[b])] @ h
        want += -(np.log(1 / (1 + np.exp(-s_pos))) + np.log(1 / (1 + np.exp(s_neg))).sum())
    got = word2vec.cbow_loss((jnp.asarray(e_in), jnp.asarray(e_out)), ctx, mask, tgt, neg, scale)
    assert float(got) == pytest.approx(want / len(tgt), rel=1e-12)


def test_step_moves_against_the_finite_difference_gradient():
    rng = np.random.default_rng(1)
    params, ctx, mask, tgt, neg = _batch(rng)
    lr = 0.1
    new, _ = word2vec.cbow_step(params, ctx, mask, tgt, neg, 0.5, lr)
    d = tuple(jnp.asarray(rng.normal(size=p.shape)) for p in params)
    eps = 1e-6

    def at(t):
        return float(
            word2vec.cbow_loss(
                tuple(p + t * q for p, q in zip(params, d)), ctx, mask, tgt, neg, 0.5
            )
        )

    fd = (at(eps) - at(-eps)) / (2 * eps)
    implied = sum(float(jnp.sum((p - q) / lr * r)) for p, q, r in zip(params, new, d))
    # central differences in float64: error O(eps²) plus round-off ~1e-9
    assert implied == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_training_starts_at_the_zero_readout_loss_and_lowers_it():
    corpus = _small_corpus(4000)
    v = len(corpus.vocab)
    params = (jnp.eye(v), jnp.zeros((v, v)))
    k = 5
    # e_out = 0: every score is 0 and the loss is exactly (1 + k) log 2
    batch = next(
        text.cbow_batches(
            corpus.tokens, 2, 64, k, text.unigram_table(corpus.counts), np.random.default_rng(0)
        )
    )
    assert float(word2vec.cbow_loss(params, *batch, 1.0)) == pytest.approx(
        (1 + k) * math.log(2), rel=1e-12
    )
    _, loss = word2vec.train_cbow(
        params, corpus, scale=1.0, learning_rate=5.0, seed=0, negatives=k, batch_size=64, epochs=2
    )
    assert loss < 0.8 * (1 + k) * math.log(2)


def test_max_steps_takes_the_first_steps_of_the_full_schedule():
    """``max_steps=m`` is the first m explicit `cbow_step` calls on the same
    batches with the full run's linearly decayed rates (not a schedule
    compressed into m steps)."""
    corpus = _small_corpus(2000)
    v, b, k, lr, m = len(corpus.vocab), 64, 3, 2.0, 3
    rng = np.random.default_rng(1)
    params = (jnp.asarray(rng.normal(size=(v, 4))), jnp.asarray(rng.normal(size=(v, 4))))
    cut, _ = word2vec.train_cbow(
        params,
        corpus,
        scale=0.5,
        learning_rate=lr,
        seed=7,
        negatives=k,
        batch_size=b,
        epochs=2,
        max_steps=m,
    )
    n_batches = 2 * (len(corpus.tokens) // b)
    batches = text.cbow_batches(
        corpus.tokens, 2, b, k, text.unigram_table(corpus.counts), np.random.default_rng(7), 2
    )
    want = params
    for i, batch in zip(range(m), batches):
        rate = lr * max(1.0 - i / n_batches, 1e-4)
        want, _ = word2vec.cbow_step(want, *batch, 0.5, rate, rate)
    for got, ref in zip(cut, want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="max_steps"):
        word2vec.train_cbow(params, corpus, scale=0.5, learning_rate=lr, seed=0, max_steps=0)


def test_bad_settings_are_rejected_by_name():
    corpus = text.planted_analogy_corpus(
        n_topics=2,
        n_modifiers=2,
        words_per_attribute=2,
        n_filler=5,
        n_tokens=500,
        filler_prob=0.3,
        zipf=1.0,
        seed=0,
    )
    with pytest.raises(ValueError, match="`learning_rate` must be a number > 0"):
        word2vec.train_cbow(None, corpus, scale=1.0, learning_rate=0.0, seed=0)


@pytest.mark.parametrize("kernel", ["ntk", "gp"])
def test_wide_ntk_parametrized_cbow_approaches_its_trained_kernel_limit(kernel):
    # The finite net's score matrix S = e_out e_inᵀ/√n against the limit run
    # from the same S₀ (coupled: Z = S₀) on the same batches. The tangent
    # kernel's fluctuation is O(n^{-1/2}) (its movement, O(1/n) for this
    # smooth model, is smaller), so the gap relative to what the limit learned
    # shrinks ≈ 4× from n = 64 to 1024 (measured 0.68 → 0.17, NTK; 0.95 →
    # 0.23, GP); with the wrong rate (η instead of 2η for the NTK) it would
    # stay O(1). Require 2.5× and < 0.35.
    corpus = _small_corpus(3000)
    v = len(corpus.counts)
    kw = dict(batch_size=64, negatives=5, seed=0)
    errs = []
    for n in (64, 1024):
        rng = np.random.default_rng(n)
        e_in0, e_out0 = (jnp.asarray(rng.normal(size=(v, n))) for _ in range(2))
        (e_in, e_out), _ = word2vec.train_cbow(
            (e_in0, e_out0),
            corpus,
            scale=1 / math.sqrt(n),
            learning_rate=1.0,
            input_lr_factor=1.0 if kernel == "ntk" else 0.0,
            **kw,
        )
        z = e_out0 @ e_in0.T / math.sqrt(n)
        (_, s_lim), _ = word2vec.train_cbow(
            (jnp.eye(v), z),
            corpus,
            scale=1.0,
            learning_rate=word2vec.KERNEL_LIMIT_RATE[kernel],
            input_lr_factor=0.0,
            **kw,
        )
        errs.append(
            float(
                jnp.linalg.norm(e_out @ e_in.T / math.sqrt(n) - s_lim) / jnp.linalg.norm(s_lim - z)
            )
        )
    assert errs[1] < errs[0] / 2.5 and errs[1] < 0.35, errs


def test_kernel_limit_keeps_the_word_vectors_and_lowers_the_loss():
    corpus = _small_corpus(4000)
    v, k = len(corpus.counts), 5
    (e_in, e_out), loss = word2vec.train_kernel_limit(
        corpus,
        kernel="ntk",
        key=jax.random.PRNGKey(0),
        learning_rate=5.0,
        seed=0,
        negatives=k,
        batch_size=64,
        epochs=2,
    )
    assert np.array_equal(np.asarray(e_in), np.eye(v))
    # the loss of one large batch at the limit's start (e_out = Z, the same
    # key) and after training: the scores learn though the word vectors do not
    # (measured 4.26 → 3.51; a 2000-context batch pins each to ≈ 1%)
    batch = next(
        text.cbow_batches(
            corpus.tokens, 2, 2000, k, text.unigram_table(corpus.counts), np.random.default_rng(1)
        )
    )
    z = jax.random.normal(jax.random.PRNGKey(0), (v, v))
    before = float(word2vec.cbow_loss((e_in, z), *batch, 1.0))
    after = float(word2vec.cbow_loss((e_in, e_out), *batch, 1.0))
    assert after < 0.9 * before, (before, after, loss)
    with pytest.raises(ValueError, match="`kernel` must be one of"):
        word2vec.train_kernel_limit(
            corpus, kernel="nngp", key=jax.random.PRNGKey(0), learning_rate=1.0, seed=0
        )


def test_subsampling_keeps_each_word_with_word2vecs_probability():
    # word2vec.c's keep probability min(1, √(t/f) + t/f), written out here: the
    # paper's √(t/f) alone would be 0.02 lower for the most frequent word, ~17σ
    # over these 2.5·10⁵ draws of it.
    freqs, t, T, epochs = np.array([0.5, 0.3, 0.15, 0.04, 0.01]), 1e-2, 100_000, 5
    tokens = np.repeat(np.arange(5), (freqs * T).astype(int))
    counts = np.bincount(tokens)
    want = np.array([min(1.0, math.sqrt(t / f) + t / f) for f in counts / counts.sum()])
    np.testing.assert_allclose(word2vec.keep_probability(counts, t), want, rtol=1e-12)
    rng = np.random.default_rng(0)
    kept = sum(
        np.bincount(word2vec.subsample_tokens(tokens, counts, t, rng), minlength=5)
        for _ in range(epochs)
    )
    n = epochs * counts
    sigma = np.sqrt(n * want * (1 - want))
    assert np.all(np.abs(kept - n * want) <= 5 * sigma), (kept / n, want)
    assert kept[-1] == n[-1]  # f = t: always kept
    with pytest.raises(ValueError, match="`threshold` must be"):
        word2vec.keep_probability(counts, 0.0)


# The tests below share one corpus and batch shape (64 contexts of 2 × 2
# words, 3 negatives, embeddings of width 4), and one decay λ, so that each
# step function is compiled once.
_B, _K, _LAM = 64, 3, 0.1


@jax.jit
def _old_step(params, ctx, mask, target, negatives, scale, lr, input_lr):
    """`cbow_step` as it was before weight decay: the plain SGD step."""
    loss, (g_in, g_out) = jax.value_and_grad(word2vec.cbow_loss)(
        params, ctx, mask, target, negatives, scale
    )
    e_in, e_out = params
    return (e_in - input_lr * g_in, e_out - lr * g_out), loss


def _params(corpus, seed):
    rng = np.random.default_rng(seed)
    v = len(corpus.vocab)
    return (jnp.asarray(rng.normal(size=(v, 4))), jnp.asarray(rng.normal(size=(v, 4))))


def test_defaults_reproduce_the_plain_training_bit_for_bit():
    """subsample=None reads the corpus's token stream untouched (the same
    `cbow_batches` from the same generator) and weight_decay=0 is the plain
    SGD step: equal bit for bit to the loop written out, across an epoch."""
    corpus = _small_corpus(800)
    lr, m = 2.0, 14  # 12 batches per epoch
    params = _params(corpus, 2)
    got, _ = word2vec.train_cbow(
        params,
        corpus,
        scale=0.5,
        learning_rate=lr,
        seed=3,
        negatives=_K,
        batch_size=_B,
        epochs=2,
        max_steps=m,
        subsample=None,
        weight_decay=0.0,
    )
    n_batches = 2 * (len(corpus.tokens) // _B)
    noise = text.unigram_table(corpus.counts)
    batches = text.cbow_batches(corpus.tokens, 2, _B, _K, noise, np.random.default_rng(3), 2)
    want = params
    for i, batch in zip(range(m), batches):
        rate = lr * max(1.0 - i / n_batches, 1e-4)
        want, _ = _old_step(want, *batch, 0.5, rate, rate)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_weight_decay_is_word2vecs_per_use_l2():
    # one step: p − lr (g + λ u_r / B · p_r), u_r the uses of row r in the
    # batch (context slots that are masked in; targets and negatives), each
    # embedding at its own rate; p − lr g is the plain step
    corpus = _small_corpus(800)
    params = _params(corpus, 4)
    noise = text.unigram_table(corpus.counts)
    batch = next(text.cbow_batches(corpus.tokens, 2, _B, _K, noise, np.random.default_rng(4)))
    lr, lr_in, scale = 0.1, 0.05, 0.5
    (plain_in, plain_out), plain_loss = _old_step(params, *batch, scale, lr, lr_in)
    v = len(corpus.vocab)
    u_in, u_out = np.zeros(v), np.zeros(v)
    for row_c, row_m, t, row_n in zip(*batch):
        for c, keep in zip(row_c, row_m):
            u_in[c] += keep
        u_out[t] += 1
        for w in row_n:
            u_out[w] += 1
    assert 0 < np.count_nonzero(u_in) < v  # some rows unused: those do not decay
    e_in, e_out = map(np.asarray, params)
    want_in = np.asarray(plain_in) - lr_in * _LAM * u_in[:, None] / _B * e_in
    want_out = np.asarray(plain_out) - lr * _LAM * u_out[:, None] / _B * e_out
    (new_in, new_out), loss = word2vec.cbow_step(
        params, *batch, scale, lr, lr_in, weight_decay=_LAM
    )
    np.testing.assert_allclose(new_in, want_in, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new_out, want_out, rtol=1e-12, atol=1e-14)
    assert float(loss) == pytest.approx(float(plain_loss), rel=1e-12)  # the data loss only
    # a frozen input embedding is not decayed either
    (frozen, _), _ = word2vec.cbow_step(params, *batch, scale, lr, 0.0, weight_decay=_LAM)
    np.testing.assert_array_equal(frozen, e_in)


def test_subsampling_redraws_each_epoch_from_the_seed():
    """train_cbow(subsample=t) is the loop written out: per epoch, subsample
    with the seed's generator, then that epoch's batches, the rate decayed by
    the fraction of epochs done; with weight decay at every step."""
    corpus = _small_corpus(1500)
    lr, t, epochs = 2.0, 2e-3, 2
    params = _params(corpus, 5)
    gen = np.random.default_rng(6)
    noise = text.unigram_table(corpus.counts)
    want, sizes = params, []
    for e in range(epochs):
        kept = word2vec.subsample_tokens(corpus.tokens, corpus.counts, t, gen)
        sizes.append(len(kept))
        n_e = len(kept) // _B
        for j, batch in enumerate(text.cbow_batches(kept, 2, _B, _K, noise, gen)):
            rate = lr * max(1.0 - (e + j / n_e) / epochs, 1e-4)
            want, _ = word2vec.cbow_step(want, *batch, 0.5, rate, rate, weight_decay=_LAM)
    assert sizes[0] != sizes[1] and max(sizes) < 0.6 * len(corpus.tokens), sizes
    got, _ = word2vec.train_cbow(
        params,
        corpus,
        scale=0.5,
        learning_rate=lr,
        seed=6,
        negatives=_K,
        batch_size=_B,
        epochs=epochs,
        subsample=t,
        weight_decay=_LAM,
    )
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="`subsample` must be"):
        word2vec.train_cbow(params, corpus, scale=0.5, learning_rate=lr, seed=0, subsample=0.0)
    with pytest.raises(ValueError, match="`weight_decay` must be"):
        word2vec.train_cbow(params, corpus, scale=0.5, learning_rate=lr, seed=0, weight_decay=-1)
    with pytest.raises(ValueError, match="no kernel limit"):
        word2vec.train_kernel_limit(
            corpus,
            kernel="ntk",
            key=jax.random.PRNGKey(0),
            learning_rate=1.0,
            seed=0,
            weight_decay=_LAM,
        )
