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


def _pre_ln_block(h, width, attention_fn):
    """``h`` plus attention (4 heads), then plus a 2·width GELU MLP, each on a
    LayerNorm of its input; called inside a compact ``__call__``."""
    kw = {} if attention_fn is None else {"attention_fn": attention_fn}
    h = h + nn.MultiHeadDotProductAttention(num_heads=4, **kw)(nn.LayerNorm()(h))
    return h + nn.Dense(width)(nn.gelu(nn.Dense(2 * width)(nn.LayerNorm()(h))))


class LinenTransformer(nn.Module):
    """Embedding, two pre-LayerNorm blocks (attention with 4 heads, a 2·width
    GELU MLP) and a readout of the mean over positions; the head dimension
    grows with ``width`` (``width // 4``)."""

    width: int
    attention_fn: object = None

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.width)(x)
        for _ in range(2):
            h = _pre_ln_block(h, self.width, self.attention_fn)
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
        embed = nn.Embed(VOCAB, self.width)
        h = _pre_ln_block(embed(tokens), self.width, self.attention_fn)
        return embed.attend(nn.LayerNorm()(h)) * self.readout_mult
