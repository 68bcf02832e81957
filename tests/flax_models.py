"""Small Flax MLPs shared by the μP tests (linen and nnx, two hidden layers of
``width`` ReLU units and a scalar readout): the width is their only
width-dependent setting, as `ntk.mup.parametrize` expects of a model family."""

from __future__ import annotations

import jax
from flax import linen as nn
from flax import nnx


class LinenMLP(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width)(x))
        x = nn.relu(nn.Dense(self.width)(x))
        return nn.Dense(1)(x)


class NnxMLP(nnx.Module):
    def __init__(self, width, rngs, d=3):
        self.inp = nnx.Linear(d, width, rngs=rngs)
        self.mid = nnx.Linear(width, width, rngs=rngs)
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.mid(jax.nn.relu(self.inp(x)))))


class LinenTransformer(nn.Module):
    """Embedding, two pre-LayerNorm blocks (attention with 4 heads, a 2·width
    GELU MLP) and a readout of the mean over positions; the head dimension
    grows with ``width`` (``width // 4``)."""

    width: int
    attention_fn: object = None

    @nn.compact
    def __call__(self, x):
        kw = {} if self.attention_fn is None else {"attention_fn": self.attention_fn}
        h = nn.Dense(self.width)(x)
        for _ in range(2):
            h = h + nn.MultiHeadDotProductAttention(num_heads=4, **kw)(nn.LayerNorm()(h))
            h = h + nn.Dense(self.width)(nn.gelu(nn.Dense(2 * self.width)(nn.LayerNorm()(h))))
        return nn.Dense(1)(h.mean(axis=-2))


VOCAB = 32


class LinenTiedLM(nn.Module):
    """Token embedding (vocabulary `VOCAB`), one pre-LayerNorm block (4 heads,
    a 2·width GELU MLP), a final LayerNorm and a readout through the embedding
    (weight tying): ``embed.attend(h) * readout_mult``."""

    width: int
    readout_mult: float = 1.0
    attention_fn: object = None

    @nn.compact
    def __call__(self, tokens):
        kw = {} if self.attention_fn is None else {"attention_fn": self.attention_fn}
        embed = nn.Embed(VOCAB, self.width)
        h = embed(tokens)
        h = h + nn.MultiHeadDotProductAttention(num_heads=4, **kw)(nn.LayerNorm()(h))
        h = h + nn.Dense(self.width)(nn.gelu(nn.Dense(2 * self.width)(nn.LayerNorm()(h))))
        return embed.attend(nn.LayerNorm()(h)) * self.readout_mult
