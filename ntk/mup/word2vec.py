r"""Word2Vec (CBOW with negative sampling) in any parametrization, by SGD.

TP4 §7 (Yang & Hu 2021) trains Word2Vec's CBOW model in the exact μP limit
and at finite widths: with input and output embeddings ``e_in, e_out (V, n)``
and a context ``ctx`` of word ids, the score of word ``w`` is

    s(ctx, w) = scale · e_out[w] · mean_{c ∈ ctx} e_in[c],

and the negative-sampling loss of a target ``t`` with ``k`` noise words
``w_1 … w_k`` (Mikolov et al. 2013) is

    ℓ = −log σ(s(ctx, t)) − Σ_j log σ(−s(ctx, w_j)).

The parametrization enters only through ``scale`` and the learning rate:
μP at width ``n`` is ``scale = 1/n`` with rate ``η n``; its limit
(`ntk.mup.limits.init_limit` in the compact basis) is ``scale = 1``, rate
``η``; the NTK parametrization is ``scale = 1/√n``, rate ``η``. The batches
come from `ntk.data.text.cbow_batches`; the learning rate decays linearly
to 0 over training, as in word2vec.

**The NTK and GP limits** of the NTK parametrization (``e_in, e_out`` all
``N(0, 1)``, ``scale = 1/√n``) are trained by `train_kernel_limit`. With
``a_ctx ∈ R^V`` the masked mean of the context's one-hot vectors, the score is
``s(ctx, w) = S[w] · a_ctx`` with ``S = e_out e_inᵀ/√n (V, V)``. As
``n → ∞``, ``S₀`` is a Gaussian matrix ``Z`` with i.i.d. ``N(0, 1)`` entries
(the NNGP ``E[s s'] = δ_{ww'} a_ctx·a_ctx'``) and the tangent kernel is
constant, ``Θ = 2 δ_{ww'} a_ctx·a_ctx'`` (one half from ``e_out``, one from
``e_in``, whose features never move). Kernel gradient descent with ``Θ`` and
rate ``η`` is exactly SGD on ``S`` with rate ``2η`` from ``S₀ = Z``: CBOW
with ``e_in = I`` frozen, ``e_out = Z``, ``scale = 1``, rate ``2η`` on
``e_out`` only. The GP limit (readout trained, ``e_in`` frozen at
initialisation even at finite width) has ``Θ = δ_{ww'} a_ctx·a_ctx'``: the
same with rate ``η``. In both the word vectors (rows of ``e_in``) keep their
initial Gram ``I``, whatever the scores learn.

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

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.data import text

__all__ = ["cbow_loss", "cbow_step", "train_cbow", "train_kernel_limit", "KERNEL_LIMIT_RATE"]


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


@jax.jit
def cbow_step(params, ctx, mask, target, negatives, scale, lr, input_lr=None):
    """One SGD step ``params − lr ∇ cbow_loss``; returns ``(params, loss)``.

    ``input_lr``: the rate of ``e_in`` (default ``lr``; 0 freezes it).
    """
    loss, (g_in, g_out) = jax.value_and_grad(cbow_loss)(params, ctx, mask, target, negatives, scale)
    e_in, e_out = params
    return (e_in - (lr if input_lr is None else input_lr) * g_in, e_out - lr * g_out), loss


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
):
    """SGD on the CBOW negative-sampling loss over ``epochs`` passes of ``corpus``.

    Args:
      params: ``(e_in, e_out)``, each ``(V, n)``.
      corpus: a `ntk.data.text` corpus (``tokens``, ``counts``).
      scale, learning_rate: the parametrization (module doc); the rate decays
        linearly, ``lr_i = learning_rate · max(1 − i/steps, 1e-4)``.
      seed: NumPy seed of the batches and negatives.
      window, batch_size, negatives, epochs: word2vec's settings.
      progress: a label for a tqdm progress bar (empty: none).
      input_lr_factor: ``e_in``'s rate relative to ``e_out``'s (0 freezes the
        input embedding: the GP parametrization / the kernel limits).
      max_steps: stop after this many SGD steps (None: all ``epochs``); the
        rate still decays over the full schedule, so a cut run takes the first
        steps of the full one (a smoke test of a long run, or a time budget).

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
    rng = np.random.default_rng(seed)
    noise = text.unigram_table(corpus.counts)
    n_batches = epochs * (len(corpus.tokens) // batch_size)
    batches = text.cbow_batches(corpus.tokens, window, batch_size, negatives, noise, rng, epochs)
    if progress:
        from tqdm.auto import tqdm

        total = n_batches if max_steps is None else min(n_batches, max_steps)
        batches = tqdm(batches, total=total, desc=progress, leave=False)
    loss = jnp.nan
    for i, (ctx, mask, tgt, neg) in enumerate(batches):
        if max_steps is not None and i >= max_steps:
            break
        step_lr = learning_rate * max(1.0 - i / n_batches, 1e-4)
        params, loss = cbow_step(
            params, ctx, mask, tgt, neg, scale, step_lr, step_lr * input_lr_factor
        )
    return params, float(loss)


#: The rate of the score matrix in the kernel limits, in units of ``η``
#: (module doc): both embeddings feed the NTK, only ``e_out`` the NNGP.
KERNEL_LIMIT_RATE = {"ntk": 2.0, "gp": 1.0}


def train_kernel_limit(corpus, *, kernel: str, key, learning_rate, seed, **kwargs):
    r"""Train the NTK or GP limit of NTK-parametrized CBOW (module doc).

    The limit of ``scale = 1/√n``, ``N(0, 1)`` embeddings and rate ``η`` as
    ``n → ∞``: ``e_in = I`` (frozen), ``e_out = Z`` with ``Z_{wc} ~ N(0, 1)``
    (the initial scores, an NNGP sample), ``scale = 1`` and rate
    ``KERNEL_LIMIT_RATE[kernel] · η`` on ``e_out`` — kernel gradient descent
    with the limit's constant tangent kernel (``"ntk"``: both embeddings
    trained; ``"gp"``: the readout ``e_out`` only).

    Args:
      corpus: a `ntk.data.text` corpus.
      kernel: ``"ntk"`` or ``"gp"``.
      key: PRNG key of ``Z``.
      learning_rate, seed, ``**kwargs``: as `train_cbow` (the finite network's
        ``η``).

    Returns:
      ``((e_in, e_out), loss of the last batch)``; ``e_in`` is ``I``.

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
