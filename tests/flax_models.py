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
