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

__all__ = ["cbow_loss", "cbow_step", "train_cbow"]


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
def cbow_step(params, ctx, mask, target, negatives, scale, lr):
    """One SGD step ``params − lr ∇ cbow_loss``; returns ``(params, loss)``."""
    loss, grads = jax.value_and_grad(cbow_loss)(params, ctx, mask, target,
                                                negatives, scale)
    return jax.tree.map(lambda p, g: p - lr * g, params, grads), loss


def train_cbow(params, corpus, *, scale, learning_rate, seed, window: int = 2,
               batch_size: int = 128, negatives: int = 5, epochs: int = 1,
               progress: str = ""):
    """SGD on the CBOW negative-sampling loss over ``epochs`` passes of ``corpus``.

    Args:
      params: ``(e_in, e_out)``, each ``(V, n)``.
      corpus: a `ntk.data.text` corpus (``tokens``, ``counts``).
      scale, learning_rate: the parametrization (module doc); the rate decays
        linearly, ``lr_i = learning_rate · max(1 − i/steps, 1e-4)``.
      seed: NumPy seed of the batches and negatives.
      window, batch_size, negatives, epochs: word2vec's settings.
      progress: a label for a tqdm progress bar (empty: none).

    Returns:
      ``(params, loss of the last batch)``.
    """
    name = "train_cbow"
    _checks.require_positive(scale, "scale", name)
    _checks.require_positive(learning_rate, "learning_rate", name)
    batch_size = _checks.require_int(batch_size, "batch_size", name)
    epochs = _checks.require_int(epochs, "epochs", name)
    rng = np.random.default_rng(seed)
    noise = text.unigram_table(corpus.counts)
    n_batches = epochs * (len(corpus.tokens) // batch_size)
    batches = text.cbow_batches(corpus.tokens, window, batch_size, negatives, noise, rng,
                                epochs)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, total=n_batches, desc=progress, leave=False)
    loss = jnp.nan
    for i, (ctx, mask, tgt, neg) in enumerate(batches):
        step_lr = learning_rate * max(1.0 - i / n_batches, 1e-4)
        params, loss = cbow_step(params, ctx, mask, tgt, neg, scale, step_lr)
    return params, float(loss)
