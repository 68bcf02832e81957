r"""μP: abc-parametrizations, μP optimizers and coordinate checks (TP4, TP5).

Yang & Hu 2021, "Feature Learning in Infinite-Width Neural Networks" (TP4)
classify how a network's multipliers, initialisation and learning rate may
scale with width (`abc`, `ABC`: the exponent :math:`r`, stability, the
feature-learning/kernel dichotomy); Yang et al. 2022 (TP5) turn the maximal
update parametrization μP into hyperparameter transfer across width.

    >>> from ntk import mup, stax
    >>> net = mup.parametrize(stax.serial(stax.Dense(1024), stax.Relu(),
    ...                                   stax.Dense(1)), "mup", base_width=64)
    >>> opt = mup.sgd(0.1, net.info)                      # optax
    >>> mup.abc("mup", depth=1).regime
    'feature learning'

`parametrize` accepts ``ntk.stax`` networks and Flax linen/nnx modules
(`ntk.mup.flax`: width found by comparing parameter shapes with a base-width
model, as the `mup` package does; `attention_fn` gives Flax's attention μP's
:math:`1/d_\mathrm{head}` logits); `coord_check` measures coordinate sizes
across widths. The infinite-width μP limits live in the submodules
`ntk.mup.limits` (exact limit of the one-hidden-layer linear network, TP4
§7–8) and `ntk.mup.dmft` (deep nonlinear MLP by dynamical mean-field theory,
Bordelon & Pehlevan 2022), beside the same MLP at finite width
(`ntk.mup.finite`) and in its lazy limit (`ntk.mup.ntk_limit`); `ntk.mup.word2vec`
trains TP4's Word2Vec (CBOW) in any parametrization, and `ntk.mup.maml` scores
few-shot MAML models and their NTK/NNGP kernel-regression baselines.
"""

from ntk.mup.abc import ABC, FORMS, PRESETS, abc
from ntk.mup.parametrize import LeafScale, Parametrized, ROLES
from ntk.mup.optim import adam, multipliers, scale_by_width, sgd
from ntk.mup.api import parametrize
from ntk.mup.coord_check import CoordCheck, coord_check, rms
from ntk.mup import dmft, finite, limits, maml, ntk_limit, word2vec

__all__ = [
    "ABC",
    "FORMS",
    "PRESETS",
    "abc",
    "LeafScale",
    "Parametrized",
    "ROLES",
    "adam",
    "multipliers",
    "scale_by_width",
    "sgd",
    "parametrize",
    "CoordCheck",
    "coord_check",
    "rms",
    "dmft",
    "finite",
    "limits",
    "maml",
    "ntk_limit",
    "word2vec",
    "attention_fn",
]


def __getattr__(name):
    # Flax is imported only by the code that needs it: `import ntk` stays light.
    if name == "attention_fn":
        from ntk.mup.flax import attention_fn

        return attention_fn
    raise AttributeError(f"module 'ntk.mup' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"attention_fn"})
