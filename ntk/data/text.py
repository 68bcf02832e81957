r"""Word2Vec data: text8 from a ``data_dir``, or a corpus with planted analogies.

text8 (Mahoney's first :math:`10^8` bytes of cleaned Wikipedia, the corpus of TP4
Fig. 1) is read from ``data_dir/text8``; the analogy questions from
``data_dir/questions-words.txt`` (Mikolov et al. 2013). Nothing downloads.

Offline, `planted_analogy_corpus` generates a corpus whose analogy structure
is known: the analogy words are attribute pairs :math:`w(a, b)` (a "topic" :math:`a`
and a "modifier" :math:`b`, like king = (royalty, male)), and each occurrence of
:math:`w(a, b)` sits among context words drawn from topic-:math:`a` words and
modifier-:math:`b` words. A model that learns features from co-occurrence puts
:math:`w(a, b) - w(a, b') + w(a', b')` nearest to :math:`w(a', b)`; the questions are
all such quadruples.

Analogies are scored from a Gram matrix of word vectors (`analogy_accuracy`),
which is what an infinite-width limit provides.

    >>> corpus = planted_analogy_corpus(n_tokens=20_000, seed=0)
    >>> corpus.tokens.shape, len(corpus.vocab), corpus.questions.shape[1]
    ((20000,), 140, 4)
"""

from __future__ import annotations

import collections
import os
from typing import NamedTuple

import numpy as np

from ntk import _checks
from ntk.data.images import check_data_dir

__all__ = [
    "Corpus",
    "planted_analogy_corpus",
    "text8",
    "read_analogy_questions",
    "analogy_accuracy",
    "cbow_batches",
    "unigram_table",
]


class Corpus(NamedTuple):
    """Token ids ``(T,)`` int32, ``vocab`` (list of words, id order = frequency
    order for text8), ``counts`` ``(V,)`` and analogy ``questions`` ``(Q, 4)``:
    rows :math:`(a, b, c, d)` meaning :math:`a : b :: c : d`, as word ids. ``name`` says
    which corpus it is."""

    tokens: np.ndarray
    vocab: list
    counts: np.ndarray
    questions: np.ndarray
    name: str


def planted_analogy_corpus(
    n_topics: int = 10,
    n_modifiers: int = 4,
    words_per_attribute: int = 5,
    n_filler: int = 30,
    n_tokens: int = 100_000,
    event_context: int = 4,
    filler_prob: float = 0.2,
    zipf: float = 0.0,
    seed: int = 0,
) -> Corpus:
    r"""A generated corpus with planted :math:`a : b :: c : d` structure.

    Vocabulary: analogy words ``w{a}_{b}`` for :math:`a < \mathtt{n\_topics}`,
    :math:`b < \mathtt{n\_modifiers}`; ``words_per_attribute`` context words per topic
    (``t{a}_{i}``) and per modifier (``m{b}_{i}``); ``n_filler`` filler words.
    The text is a sequence of events: an analogy word :math:`w(a, b)` (drawn with
    probability :math:`\propto \mathrm{rank}^{-\mathtt{zipf}}` over a random ranking, so
    that with ``zipf > 0`` rare words get noisy vectors, as in natural text)
    surrounded by ``event_context`` words, each a topic-:math:`a` word, a
    modifier-:math:`b` word or a filler word with probabilities
    :math:`(1 - p)/2, (1 - p)/2, p` (:math:`p = \mathtt{filler\_prob}`), in random order.
    Questions: every :math:`\big(w(a,b), w(a,b'), w(a',b), w(a',b')\big)` with
    :math:`a \ne a'`, :math:`b \ne b'`.

    Returns a `Corpus` with ``name="planted-analogy (offline)"``.
    """
    where = "planted_analogy_corpus"
    for arg, v, low in (
        ("n_topics", n_topics, 2),
        ("n_modifiers", n_modifiers, 2),
        ("words_per_attribute", words_per_attribute, 1),
        ("n_filler", n_filler, 0),
        ("n_tokens", n_tokens, 1),
        ("event_context", event_context, 1),
        ("seed", seed, 0),
    ):
        _checks.require_int(v, arg, where, minimum=low)
    _checks.require_real(filler_prob, "filler_prob", where, low=0, high=1, high_open=True)
    _checks.require_nonnegative(zipf, "zipf", where)
    rng = np.random.default_rng(seed)
    vocab = [f"w{a}_{b}" for a in range(n_topics) for b in range(n_modifiers)]
    w_id = lambda a, b: a * n_modifiers + b
    t0 = len(vocab)
    vocab += [f"t{a}_{i}" for a in range(n_topics) for i in range(words_per_attribute)]
    m0 = len(vocab)
    vocab += [f"m{b}_{i}" for b in range(n_modifiers) for i in range(words_per_attribute)]
    f0 = len(vocab)
    vocab += [f"filler{i}" for i in range(n_filler)]

    event_len = event_context + 1
    n_events = -(-n_tokens // event_len)
    n_words = n_topics * n_modifiers
    p_word = (1.0 + rng.permutation(n_words)) ** -float(zipf)
    word = rng.choice(n_words, size=n_events, p=p_word / p_word.sum())
    a, b = word // n_modifiers, word % n_modifiers
    kind = rng.choice(
        3,
        size=(n_events, event_context),
        p=[(1 - filler_prob) / 2, (1 - filler_prob) / 2, filler_prob],
    )
    pick = rng.integers(0, words_per_attribute, (n_events, event_context))
    topic_w = t0 + a[:, None] * words_per_attribute + pick
    mod_w = m0 + b[:, None] * words_per_attribute + pick
    fill_w = f0 + rng.integers(0, max(n_filler, 1), (n_events, event_context))
    if n_filler == 0:
        kind = np.where(kind == 2, 0, kind)
    ctx = np.where(kind == 0, topic_w, np.where(kind == 1, mod_w, fill_w))
    events = np.concatenate([(a * n_modifiers + b)[:, None], ctx], axis=1)
    events = rng.permuted(events, axis=1)
    tokens = events.reshape(-1)[:n_tokens].astype(np.int32)

    qs = [
        (w_id(i, j), w_id(i, k), w_id(i2, j), w_id(i2, k))
        for i in range(n_topics)
        for i2 in range(n_topics)
        if i != i2
        for j in range(n_modifiers)
        for k in range(n_modifiers)
        if j != k
    ]
    counts = np.bincount(tokens, minlength=len(vocab))
    return Corpus(tokens, vocab, counts, np.asarray(qs, np.int32), "planted-analogy (offline)")


def read_analogy_questions(path: os.PathLike | str, word_to_id: dict) -> np.ndarray:
    """Parse Mikolov's ``questions-words.txt``; keep questions whose 4 words
    are all in ``word_to_id`` (lower-cased). Returns ``(Q, 4)`` int32."""
    if not isinstance(word_to_id, dict):
        raise TypeError(
            f"read_analogy_questions: `word_to_id` must be a dict "
            f"{{word: id}}; got {type(word_to_id).__name__}."
        )
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(":") or not line.strip():
                continue
            words = line.lower().split()
            if len(words) == 4 and all(w in word_to_id for w in words):
                rows.append([word_to_id[w] for w in words])
    return np.asarray(rows, np.int32).reshape(-1, 4)


def text8(
    data_dir: os.PathLike | str, max_vocab: int = 10_000, max_tokens: int | None = None
) -> Corpus:
    r"""text8 from ``data_dir/text8`` with ``data_dir/questions-words.txt``.

    Keeps the ``max_vocab`` most frequent words (others are dropped from the
    token stream, as word2vec's ``min_count`` does) and the first
    ``max_tokens`` tokens. TP4 used the whole vocabulary (min count 5); the
    limit's state is :math:`V \times V`, hence the cap.
    """
    root = check_data_dir(data_dir, "text8")
    max_vocab = _checks.require_int(max_vocab, "max_vocab", "text8")
    if max_tokens is not None:
        max_tokens = _checks.require_int(max_tokens, "max_tokens", "text8")
    path, qpath = root / "text8", root / "questions-words.txt"
    for p in (path, qpath):
        if not p.exists():
            raise ValueError(
                f"text8: expected {p} (data_dir={str(root)!r}); "
                f"download text8 and questions-words.txt there."
            )
    words = path.read_text(encoding="utf-8").split()
    if max_tokens is not None:
        words = words[:max_tokens]
    freq = collections.Counter(words).most_common(max_vocab)
    vocab = [w for w, _ in freq]
    word_to_id = {w: i for i, w in enumerate(vocab)}
    tokens = np.asarray([word_to_id[w] for w in words if w in word_to_id], np.int32)
    counts = np.bincount(tokens, minlength=len(vocab))
    return Corpus(tokens, vocab, counts, read_analogy_questions(qpath, word_to_id), "text8")


def analogy_accuracy(gram: np.ndarray, questions: np.ndarray) -> float:
    r"""Fraction of analogies :math:`a : b :: c : d` answered by strict cosine argmax.

    With :math:`\hat{e}_w` the unit word vectors (from the Gram
    :math:`G_{ij} = e_i \cdot e_j`, ``(V, V)``), the answer is
    :math:`\operatorname{argmax}_{w \notin \{a,b,c\}} \hat{e}_w \cdot
    (\hat{e}_b - \hat{e}_a + \hat{e}_c)` (Mikolov et al. 2013; word2vec's
    compute-accuracy). A question counts only
    if :math:`d` beats every other candidate *strictly*: when all word vectors are
    orthogonal (frozen one-hot-like embeddings of the NTK/GP limits) every
    candidate scores exactly 0 and nothing is answered. Zero vectors count as
    orthogonal to everything.
    """
    name = "analogy_accuracy"
    gram = _checks.as_numpy(gram, "gram", name, ndim=2, what="(V, V)", dtype=np.float64)
    if gram.shape[0] != gram.shape[1]:
        raise ValueError(f"{name}: `gram` must be square (V, V); got {gram.shape}.")
    _checks.require_symmetric(gram, "gram", name)
    questions = _checks.as_numpy(questions, "questions", name, ndim=2, what="(Q, 4)")
    if questions.shape[1] != 4:
        raise ValueError(f"{name}: `questions` must have shape (Q, 4); got {questions.shape}.")
    if len(questions) == 0:
        return float("nan")
    # Negative ids would silently wrap around to other words.
    _checks.require_indices(questions.ravel(), gram.shape[0], "questions", name)
    if questions.min() < 0:
        raise ValueError(
            f"{name}: `questions` must hold word ids in "
            f"[0, {gram.shape[0]}); got {questions.min()}."
        )
    norms = np.sqrt(np.clip(np.diag(gram), 0, None))
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    cos = gram * inv[:, None] * inv[None, :]
    correct = 0
    for start in range(0, len(questions), 1024):  # (chunk, V) score blocks
        a, b, c, d = questions[start : start + 1024].T
        # Round away float noise so exact symmetry ties stay ties.
        scores = np.round(cos[b] - cos[a] + cos[c], 9)
        rows = np.arange(len(a))
        target = scores[rows, d].copy()
        for col in (a, b, c, d):
            scores[rows, col] = -np.inf
        correct += int(np.sum(target > scores.max(axis=1)))
    return correct / len(questions)


def unigram_table(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    r"""Negative-sampling distribution :math:`p_w \propto \mathrm{count}_w^{3/4}` (word2vec)."""
    name = "unigram_table"
    counts = _checks.require_counts(counts, "counts", name)
    _checks.require_nonnegative(power, "power", name)
    p = counts**power
    return p / p.sum()


def cbow_batches(
    tokens: np.ndarray,
    window: int,
    batch_size: int,
    negatives: int,
    noise: np.ndarray,
    rng: np.random.Generator,
    epochs: int = 1,
):
    """Yield CBOW minibatches ``(context (B, 2w), mask (B, 2w), target (B,),
    negatives (B, k))`` over shuffled positions, ``epochs`` passes.

    Context = the ``window`` tokens on each side (masked at the corpus edges).
    """
    name = "cbow_batches"
    tokens = _checks.as_numpy(tokens, "tokens", name, ndim=1, what="(T,)")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"{name}: `tokens` must be integer word ids; got dtype {tokens.dtype}.")
    window = _checks.require_int(window, "window", name)
    batch_size = _checks.require_int(batch_size, "batch_size", name, maximum=len(tokens))
    negatives = _checks.require_int(negatives, "negatives", name, minimum=0)
    epochs = _checks.require_int(epochs, "epochs", name, minimum=0)
    noise = _checks.as_numpy(
        noise, "noise", name, ndim=1, what="(V,)", dtype=np.float64, nonempty=True
    )
    if np.any(noise < 0) or abs(noise.sum() - 1) > 1e-6:
        raise ValueError(
            f"{name}: `noise` must be a probability vector (>= 0, "
            f"summing to 1, e.g. unigram_table(counts)); got sum "
            f"{noise.sum():g}, min {noise.min():g}."
        )
    if tokens.size and (tokens.min() < 0 or tokens.max() >= len(noise)):
        raise ValueError(
            f"{name}: `tokens` must be word ids in [0, {len(noise)}) "
            f"(the size of `noise`); got range [{tokens.min()}, "
            f"{tokens.max()}]."
        )
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{name}: `rng` must be a numpy.random.Generator; got {type(rng).__name__}."
        )
    return _cbow_batches(tokens, window, batch_size, negatives, noise, rng, epochs)


def _cbow_batches(tokens, window, batch_size, negatives, noise, rng, epochs):
    T = len(tokens)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    for _ in range(epochs):
        order = rng.permutation(T)
        for s in range(0, T - batch_size + 1, batch_size):
            pos = order[s : s + batch_size]
            idx = pos[:, None] + offsets[None, :]
            mask = (idx >= 0) & (idx < T)
            ctx = tokens[np.clip(idx, 0, T - 1)]
            neg = rng.choice(len(noise), size=(batch_size, negatives), p=noise)
            yield ctx, mask.astype(np.float32), tokens[pos], neg.astype(np.int32)
