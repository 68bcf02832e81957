r"""Word2Vec (CBOW with negative sampling) in any parametrization, by SGD.

TP4 §7 (Yang & Hu 2021) trains Word2Vec's CBOW model in the exact μP limit
and at finite widths: with input and output embeddings ``e_in, e_out (V, n)``
and a context ``ctx`` of word ids, the score of word :math:`w` is

.. math::

    s(\mathrm{ctx}, w) = \mathrm{scale} \cdot e_\mathrm{out}[w] \cdot
    \operatorname{mean}_{c \in \mathrm{ctx}} e_\mathrm{in}[c],

and the negative-sampling loss of a target :math:`t` with :math:`k` noise words
:math:`w_1 \ldots w_k` (Mikolov et al. 2013) is

.. math::

    \ell = -\log \sigma(s(\mathrm{ctx}, t)) - \sum_j \log \sigma(-s(\mathrm{ctx}, w_j)).

The parametrization enters only through ``scale`` and the learning rate:
μP at width :math:`n` is :math:`\mathrm{scale} = 1/n` with rate :math:`\eta n`; its limit
(`ntk.mup.limits.init_limit` in the compact basis) is :math:`\mathrm{scale} = 1`, rate
:math:`\eta`; the NTK parametrization is :math:`\mathrm{scale} = 1/\sqrt{n}`, rate
:math:`\eta`. The batches
come from `ntk.data.text.cbow_batches`; the learning rate decays linearly
to 0 over training, as in word2vec.

**Subsampling and weight decay** (both off by default; TP4 uses :math:`t = 10^{-4}`
and :math:`\lambda = 10^{-3}`). Subsampling of frequent words (`keep_probability`,
`subsample_tokens`) drops each token independently before the context
windows are formed, afresh every epoch. Weight decay is word2vec's, as in
TP4's fork of ``word2vec.c``: L2 added to the gradient (coupled to the rate,
:math:`p \leftarrow p - \mathrm{lr}\,(g + \lambda p)`, the form of PyTorch SGD's
``weight_decay``), but applied per use: word2vec multiplies a row by
:math:`1 - \alpha \lambda` each time an example reads it (a context word's row of
``e_in``; the target's and each negative's row of ``e_out``), so `cbow_step` adds
:math:`\lambda u_r / B \cdot p_r` to the gradient of row :math:`r`, :math:`u_r` its uses
in the batch of :math:`B` — the gradient of
:math:`\lambda/2 \sum_{\text{rows used}} \lVert \mathrm{row} \rVert^2` averaged over the
batch. Rarely seen words decay rarely; a dense decay of every row at every step would
instead shrink each row by :math:`\exp(-\alpha \lambda T)` per pass over :math:`T`
tokens. The decay is coupled to the rate it is given, so in μP at width :math:`n`
(rate :math:`\eta n`) pass :math:`\lambda/n`: each use then shrinks a row by the
width-independent :math:`1 - \eta \lambda / B`, as in the μP limit (rate :math:`\eta`,
:math:`\lambda`), whose compact-basis rows are linear in the finite rows, so the same
per-row shrinking applies to them exactly.

**The NTK and GP limits** of the NTK parametrization (``e_in, e_out`` all
:math:`\mathcal{N}(0, 1)`, :math:`\mathrm{scale} = 1/\sqrt{n}`) are trained by
`train_kernel_limit`. With :math:`a_\mathrm{ctx} \in \mathbb{R}^V` the masked mean of the
context's one-hot vectors, the score is
:math:`s(\mathrm{ctx}, w) = S[w] \cdot a_\mathrm{ctx}` with
:math:`S = e_\mathrm{out} e_\mathrm{in}^\top / \sqrt{n}` ``(V, V)``. As
:math:`n \to \infty`, :math:`S_0` is a Gaussian matrix :math:`Z` with i.i.d.
:math:`\mathcal{N}(0, 1)` entries (the NNGP
:math:`\mathbb{E}[s s'] = \delta_{ww'}\, a_\mathrm{ctx} \cdot a_\mathrm{ctx}'`) and the
tangent kernel is constant,
:math:`\Theta = 2 \delta_{ww'}\, a_\mathrm{ctx} \cdot a_\mathrm{ctx}'` (one half from
``e_out``, one from ``e_in``, whose features never move). Kernel gradient descent with
:math:`\Theta` and rate :math:`\eta` is exactly SGD on :math:`S` with rate :math:`2\eta`
from :math:`S_0 = Z`: CBOW with :math:`e_\mathrm{in} = I` frozen,
:math:`e_\mathrm{out} = Z`, :math:`\mathrm{scale} = 1`, rate :math:`2\eta` on ``e_out``
only. The GP limit (readout trained, ``e_in`` frozen at initialisation even at finite
width) has :math:`\Theta = \delta_{ww'}\, a_\mathrm{ctx} \cdot a_\mathrm{ctx}'`: the same
with rate :math:`\eta`. In both the word vectors (rows of ``e_in``) keep their initial
Gram :math:`I`, whatever the scores learn.

    >>> import numpy as np
    >>> from ntk.data.text import planted_analogy_corpus
    >>> from ntk.mup.word2vec import train_cbow
    >>> corpus = planted_analogy_corpus(n_topics=3, n_modifiers=2, n_tokens=2000)
    >>> rng = np.random.default_rng(0)
    >>> V, n = len(corpus.counts), 16
    >>> e_in, e_out = rng.normal(size=(V, n)), np.zeros((V, n))
    >>> (e_in, e_out), loss = train_cbow((e_in, e_out), corpus, scale=1 / n,
    ...                                  learning_rate=15.0 * n, seed=0)
    >>> e_in.shape
    (..., 16)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.data import text

__all__ = [
    "cbow_loss",
    "cbow_step",
    "keep_probability",
    "subsample_tokens",
    "train_cbow",
    "train_kernel_limit",
    "KERNEL_LIMIT_RATE",
]


def cbow_loss(params, ctx, mask, target, negatives, scale):
    """Mean negative-sampling loss (module doc) of a batch.

    ``params = (e_in, e_out)``, each ``(V, n)``; ``ctx, mask (B, 2w)`` context
    ids and their validity; ``target (B,)``; ``negatives (B, k)``.
    """
    e_in, e_out = params
    h = (e_in[ctx] * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1, keepdims=True), 1)
    pos = scale * jnp.sum(e_out[target] * h, -1)
    neg = scale * jnp.einsum("bkn,bn->bk", e_out[negatives], h)
    return -jnp.mean(jax.nn.log_sigmoid(pos) + jax.nn.log_sigmoid(-neg).sum(-1))


def _decay_gradients(params, ctx, mask, target, negatives):
    """Per-use L2 gradients (module doc): ``u_r / B · p_r`` for each row ``r``."""
    e_in, e_out = params
    b = target.shape[0]
    uses_in = (
        jnp.zeros(e_in.shape[0], e_in.dtype)
        .at[ctx.reshape(-1)]
        .add(mask.reshape(-1).astype(e_in.dtype))
    )
    uses_out = (
        jnp.zeros(e_out.shape[0], e_out.dtype)
        .at[target]
        .add(1.0)
        .at[negatives.reshape(-1)]
        .add(1.0)
    )
    return uses_in[:, None] * e_in / b, uses_out[:, None] * e_out / b


@functools.partial(jax.jit, static_argnames=("weight_decay",))
def cbow_step(
    params, ctx, mask, target, negatives, scale, lr, input_lr=None, weight_decay: float = 0.0
):
    r"""One SGD step
    :math:`\mathrm{params} - \mathrm{lr}\,(\nabla \mathrm{cbow\_loss} + \mathrm{decay})`;
    returns ``(params, loss)``.

    ``input_lr``: the rate of ``e_in`` (default ``lr``; 0 freezes it, decay
    included). ``weight_decay``: word2vec's L2 coefficient :math:`\lambda` (a Python
    float, static: 0 compiles the plain step), applied per use (module doc):
    row :math:`r` of either embedding gets :math:`\lambda u_r / B \cdot p_r` added to its
    gradient, :math:`u_r` the number of times the batch of :math:`B` reads it (as a
    masked-in context word for ``e_in``; as a target or a negative for
    ``e_out``). The returned loss is the data loss, without the penalty.
    """
    loss, (g_in, g_out) = jax.value_and_grad(cbow_loss)(params, ctx, mask, target, negatives, scale)
    e_in, e_out = params
    if weight_decay:
        d_in, d_out = _decay_gradients(params, ctx, mask, target, negatives)
        g_in = g_in + weight_decay * d_in
        g_out = g_out + weight_decay * d_out
    return (e_in - (lr if input_lr is None else input_lr) * g_in, e_out - lr * g_out), loss


def keep_probability(counts, threshold) -> np.ndarray:
    r"""word2vec's subsampling of frequent words: each word's keep probability.

    A token of word :math:`w` with corpus frequency
    :math:`f(w) = \mathrm{count}_w / \sum \mathrm{count}` is kept with probability
    :math:`\min(1, \sqrt{t/f(w)} + t/f(w))`, :math:`t` the threshold. This is the form of
    word2vec's C implementation (Mikolov et al. 2013's ``word2vec.c``, unchanged in
    TP4's fork: keep if a uniform draw is :math:`\le (\sqrt{f/t} + 1) \cdot t/f`), not
    the paper's discard probability :math:`1 - \sqrt{t/f}`. Words with
    :math:`f \le \varphi^2 t \approx 2.62\, t` (:math:`\varphi` the golden ratio) are
    always kept, and so are words of count 0.

    Args:
      counts: ``(V,)`` word counts (>= 0, one positive at least).
      threshold: :math:`t > 0` (TP4: 1e-4).

    Returns:
      ``(V,)`` probabilities in :math:`(0, 1]`.

    Example:
      >>> keep_probability(np.array([99, 1]), 0.01).round(4)
      array([0.1106, 1.    ])
    """
    name = "keep_probability"
    counts = _checks.require_counts(counts, "counts", name)
    _checks.require_positive(threshold, "threshold", name)
    freq = counts / counts.sum()
    ratio = float(threshold) / np.where(freq > 0, freq, 1.0)
    return np.where(freq > 0, np.minimum(1.0, np.sqrt(ratio) + ratio), 1.0)


def subsample_tokens(tokens, counts, threshold, rng: np.random.Generator) -> np.ndarray:
    """The tokens left after word2vec's subsampling (`keep_probability`).

    Each token is kept independently with its word's probability (one
    uniform draw per token from ``rng``); the kept ones stay in order.

    Example:
      >>> tokens = np.array([0, 0, 0, 1, 0, 2])
      >>> keep_probability(np.bincount(tokens), 0.2).round(3)  # f = 4/6, 1/6, 1/6
      array([0.848, 1.   , 1.   ])
      >>> out = subsample_tokens(tokens, np.bincount(tokens), 0.2, np.random.default_rng(0))
      >>> bool(set(out.tolist()) >= {1, 2})  # the rare words are always kept
      True
    """
    tokens = _checks.as_numpy(tokens, "tokens", "subsample_tokens", ndim=1, what="(T,)")
    keep = keep_probability(counts, threshold)
    return tokens[rng.random(len(tokens)) < keep[tokens]]


def _schedule_batches(tokens, counts, window, batch_size, negatives, noise, rng, epochs, subsample):
    """``(fraction of training done, batch)`` of each SGD step.

    Without subsampling: ``i / n_batches`` over `ntk.data.text.cbow_batches`'
    epochs. With it: each epoch subsamples afresh and batch ``j`` of the
    epoch's ``B_e`` is at ``(e + j / B_e) / epochs`` (word2vec's rate follows
    the words read, kept or dropped).
    """
    if subsample is None:
        n_batches = epochs * (len(tokens) // batch_size)
        batches = text.cbow_batches(tokens, window, batch_size, negatives, noise, rng, epochs)
        for i, batch in enumerate(batches):
            yield i / n_batches, batch
        return
    for e in range(epochs):
        kept = subsample_tokens(tokens, counts, subsample, rng)
        if len(kept) < batch_size:
            raise ValueError(
                f"train_cbow: subsampling with threshold {subsample:g} kept {len(kept)} "
                f"of {len(tokens)} tokens in epoch {e}, fewer than batch_size={batch_size}."
            )
        n_e = len(kept) // batch_size
        for j, batch in enumerate(
            text.cbow_batches(kept, window, batch_size, negatives, noise, rng)
        ):
            yield (e + j / n_e) / epochs, batch


def train_cbow(
    params,
    corpus,
    *,
    scale,
    learning_rate,
    seed,
    window: int = 2,
    batch_size: int = 128,
    negatives: int = 5,
    epochs: int = 1,
    progress: str = "",
    input_lr_factor: float = 1.0,
    max_steps: int | None = None,
    subsample: float | None = None,
    weight_decay: float = 0.0,
):
    r"""SGD on the CBOW negative-sampling loss over ``epochs`` passes of ``corpus``.

    Args:
      params: ``(e_in, e_out)``, each ``(V, n)``.
      corpus: a `ntk.data.text` corpus (``tokens``, ``counts``).
      scale, learning_rate: the parametrization (module doc); the rate decays
        linearly,
        :math:`\mathrm{lr}_i = \mathrm{learning\_rate} \cdot \max(1 - i/\mathrm{steps}, 10^{-4})`.
      seed: NumPy seed of the batches, negatives and subsampling.
      window, batch_size, negatives, epochs: word2vec's settings.
      progress: a label for a tqdm progress bar (empty: none).
      input_lr_factor: ``e_in``'s rate relative to ``e_out``'s (0 freezes the
        input embedding: the GP parametrization / the kernel limits).
      max_steps: stop after this many SGD steps (None: all ``epochs``); the
        rate still decays over the full schedule, so a cut run takes the first
        steps of the full one (a smoke test of a long run, or a time budget).
      subsample: word2vec's subsampling threshold :math:`t` (`keep_probability`;
        TP4: 1e-4); None: off, the token stream untouched. Each epoch keeps a
        fresh subsample of ``corpus.tokens`` (`subsample_tokens`, drawn from
        the ``seed``'s generator before the epoch's batches) and forms
        contexts and batches on it, as word2vec drops words before forming
        windows; the negatives' distribution stays the full corpus's. The
        number of steps then varies by epoch, and the rate decays with the
        fraction of epochs done:
        :math:`\mathrm{learning\_rate} \cdot \max(1 - (e + j/B_e)/\mathrm{epochs}, 10^{-4})`
        at batch :math:`j` of the :math:`B_e` of epoch :math:`e`.
      weight_decay: word2vec's L2 weight decay :math:`\lambda` (TP4: 1e-3), added to the
        gradient per use of a row and scaled by the step's rate (`cbow_step`,
        module doc; pass :math:`\lambda/n` at μP width :math:`n`). 0: none (the plain
        step, bit for bit).

    Returns:
      ``(params, loss of the last batch)``.
    """
    name = "train_cbow"
    _checks.require_positive(scale, "scale", name)
    _checks.require_positive(learning_rate, "learning_rate", name)
    batch_size = _checks.require_int(batch_size, "batch_size", name)
    epochs = _checks.require_int(epochs, "epochs", name)
    _checks.require_nonnegative(input_lr_factor, "input_lr_factor", name)
    if max_steps is not None:
        max_steps = _checks.require_int(max_steps, "max_steps", name, minimum=1)
    if subsample is not None:
        _checks.require_positive(subsample, "subsample", name)
    weight_decay = float(_checks.require_nonnegative(weight_decay, "weight_decay", name))
    rng = np.random.default_rng(seed)
    noise = text.unigram_table(corpus.counts)
    tokens = np.asarray(corpus.tokens)
    batches = _schedule_batches(
        tokens, corpus.counts, window, batch_size, negatives, noise, rng, epochs, subsample
    )
    if progress:
        from tqdm.auto import tqdm

        kept = len(tokens)
        if subsample is not None:  # the expected number kept
            kept = int(keep_probability(corpus.counts, subsample)[tokens].sum())
        n_batches = epochs * (kept // batch_size)
        total = n_batches if max_steps is None else min(n_batches, max_steps)
        batches = tqdm(batches, total=total, desc=progress, leave=False)
    loss = jnp.nan
    for i, (done, (ctx, mask, tgt, neg)) in enumerate(batches):
        if max_steps is not None and i >= max_steps:
            break
        step_lr = learning_rate * max(1.0 - done, 1e-4)
        params, loss = cbow_step(
            params,
            ctx,
            mask,
            tgt,
            neg,
            scale,
            step_lr,
            step_lr * input_lr_factor,
            weight_decay=weight_decay,
        )
    return params, float(loss)


#: The rate of the score matrix in the kernel limits, in units of :math:`\eta`
#: (module doc): both embeddings feed the NTK, only ``e_out`` the NNGP.
KERNEL_LIMIT_RATE = {"ntk": 2.0, "gp": 1.0}


def train_kernel_limit(corpus, *, kernel: str, key, learning_rate, seed, **kwargs):
    r"""Train the NTK or GP limit of NTK-parametrized CBOW (module doc).

    The limit of :math:`\mathrm{scale} = 1/\sqrt{n}`, :math:`\mathcal{N}(0, 1)` embeddings
    and rate :math:`\eta` as :math:`n \to \infty`: :math:`e_\mathrm{in} = I` (frozen),
    :math:`e_\mathrm{out} = Z` with :math:`Z_{wc} \sim \mathcal{N}(0, 1)` (the initial
    scores, an NNGP sample), :math:`\mathrm{scale} = 1` and rate
    ``KERNEL_LIMIT_RATE[kernel]`` :math:`\cdot\, \eta` on ``e_out`` — kernel gradient
    descent with the limit's constant tangent kernel (``"ntk"``: both embeddings
    trained; ``"gp"``: the readout ``e_out`` only).

    Args:
      corpus: a `ntk.data.text` corpus.
      kernel: ``"ntk"`` or ``"gp"``.
      key: PRNG key of :math:`Z`.
      learning_rate, seed, ``**kwargs``: as `train_cbow` (the finite network's
        :math:`\eta`); ``subsample`` applies as there. ``weight_decay`` must be 0:
        decay shrinks both embeddings by :math:`O(1)` factors, so the finite
        network's tangent kernel (built from :math:`e_\mathrm{in} e_\mathrm{in}^\top / n`
        and :math:`e_\mathrm{out} e_\mathrm{out}^\top / n`) shrinks with them instead of
        staying constant, and its per-use decay of ``e_in``'s rows (columns of the
        scores) has no counterpart with :math:`e_\mathrm{in} = I` frozen: kernel gradient
        descent with this constant kernel is not that network's limit.

    Returns:
      ``((e_in, e_out), loss of the last batch)``; ``e_in`` is :math:`I`.

    Example:
      >>> import jax
      >>> from ntk.data.text import planted_analogy_corpus
      >>> corpus = planted_analogy_corpus(n_topics=3, n_modifiers=2, n_tokens=2000)
      >>> (e_in, e_out), loss = train_kernel_limit(corpus, kernel="ntk",
      ...     key=jax.random.PRNGKey(0), learning_rate=1.0, seed=0)
      >>> bool((e_in == jax.numpy.eye(len(corpus.counts))).all())
      True
    """
    name = "train_kernel_limit"
    _checks.require_one_of(kernel, tuple(KERNEL_LIMIT_RATE), "kernel", name)
    _checks.require_positive(learning_rate, "learning_rate", name)
    if kwargs.get("weight_decay", 0.0):
        raise ValueError(
            f"{name}: weight decay has no kernel limit here (it shrinks the "
            f"tangent kernel with the embeddings; see the docstring); got "
            f"weight_decay={kwargs['weight_decay']!r}, expected 0."
        )
    v = len(corpus.counts)
    params = (jnp.eye(v), jax.random.normal(key, (v, v)))
    return train_cbow(
        params,
        corpus,
        scale=1.0,
        learning_rate=KERNEL_LIMIT_RATE[kernel] * learning_rate,
        seed=seed,
        input_lr_factor=0.0,
        **kwargs,
    )
