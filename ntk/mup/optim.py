r"""μP optimizers as optax transformations (Yang et al. 2022, TP5 §4, Table 3).

The width dependence of μP's learning rates is a per-tensor multiplier, so it
is one optax transformation, `scale_by_width`, that can sit anywhere after the
gradient statistics of an optax chain. `sgd` and `adam` are the usual chains
with it inserted. The multipliers come from the `LeafScale` tree of a
parametrized network (``mup.parametrize(...).info``), relative to its base width
:math:`n_0` (:math:`\bar{n} = n / n_0`):

.. list-table::
   :header-rows: 1

   * - tensor
     - TP5 Table 3 SGD LR
     - Adam LR
     - readout mult.
   * - input weights, biases
     - :math:`\eta \cdot \mathrm{fan\_out}`
     - :math:`\eta`
     - –
   * - hidden weights
     - :math:`\eta`
     - :math:`\eta / \mathrm{fan\_in}`
     - –
   * - output weights
     - :math:`\eta / \mathrm{fan\_in}`
     - :math:`\eta / \mathrm{fan\_in}`
     - 1 (Table 3) or :math:`1/\mathrm{fan\_in}`

(with the readout multiplier :math:`1/\mathrm{fan\_in}` of Table 8 / the `mup` package,
the readout's learning rates become :math:`\eta \cdot \mathrm{fan\_in}` (SGD) and
:math:`\eta` (Adam)). Which
row a tensor is in, and its exponents, are in its `LeafScale`; these functions
only multiply.

Example:
    >>> import optax
    >>> from ntk import mup, stax
    >>> model = stax.serial(stax.Dense(256), stax.Relu(), stax.Dense(1))
    >>> net = mup.parametrize(model, "mup", base_width=64)
    >>> opt = mup.adam(1e-3, net.info)          # or any chain:
    >>> opt = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(),
    ...                   mup.scale_by_width(net.info, "adam"),
    ...                   optax.scale_by_learning_rate(1e-3))
"""

from __future__ import annotations

from typing import Optional

import jax
import optax

from ntk import _checks
from ntk.mup.parametrize import LeafScale, is_leaf_scale, scale_like

_RULES = {"sgd": "lr_mult", "adam": "adam_lr_mult"}


def multipliers(info, rule: str = "sgd"):
    r"""The learning-rate multiplier of every tensor: :math:`\bar{n}^{-c}` (SGD) or
    :math:`\bar{n}^{-c_\mathrm{adam}}`.

    Returns a tree of floats with ``info``'s structure.

    Example:
      >>> import jax
      >>> from ntk import mup, stax
      >>> net = mup.parametrize(stax.serial(stax.Dense(256), stax.Relu(), stax.Dense(1)),
      ...                       "mup", base_width=64)                     # n̄ = 256/64 = 4
      >>> jax.tree_util.tree_leaves(mup.multipliers(net.info, "sgd"))
      [1.0, 1.0]
      >>> jax.tree_util.tree_leaves(mup.multipliers(net.info, "adam"))   # 4^{-1/2}
      [0.5, 0.5]
    """
    _checks.require_one_of(rule, tuple(_RULES), "rule", "mup.multipliers")
    leaves = jax.tree_util.tree_leaves(info, is_leaf=is_leaf_scale)
    if not leaves or not all(isinstance(s, LeafScale) for s in leaves):
        raise TypeError(
            "mup: `info` must be the LeafScale tree of a parametrized "
            "network (mup.parametrize(...).info); got "
            f"{type(info).__name__}."
        )
    return jax.tree_util.tree_map(lambda s: getattr(s, _RULES[rule]), info, is_leaf=is_leaf_scale)


def scale_by_width(info, rule: str = "sgd") -> optax.GradientTransformation:
    r"""Multiply each tensor's update by its μP learning-rate multiplier.

    Args:
      info: `LeafScale` tree (structure of the parameters).
      rule: ``"sgd"`` (:math:`\bar{n}^{-c_l}`) or ``"adam"``
        (:math:`\bar{n}^{-c_\mathrm{adam}}`; use after a scale-invariant statistic such
        as ``optax.scale_by_adam``).

    Stateless; ``update(updates, state, params=None)`` returns
    :math:`m \odot \mathrm{updates}` with :math:`m` from `multipliers`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk import mup, stax
      >>> net = mup.parametrize(stax.serial(stax.Dense(256), stax.Relu(), stax.Dense(1)),
      ...                       "mup", base_width=64)                     # n̄ = 256/64 = 4
      >>> ones = jax.tree_util.tree_map(lambda m: jnp.ones(2), mup.multipliers(net.info))
      >>> t = mup.scale_by_width(net.info, "adam")
      >>> u, _ = t.update(ones, t.init(ones))
      >>> [leaf.tolist() for leaf in jax.tree_util.tree_leaves(u)]
      [[0.5, 0.5], [0.5, 0.5]]
    """
    mults = multipliers(info, rule)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        try:
            return scale_like(mults, updates), state
        except ValueError as e:
            raise ValueError(f"mup.scale_by_width: {e}") from None

    return optax.GradientTransformation(init_fn, update_fn)


def _check_lr(learning_rate, name):
    """A learning rate: a number >= 0 (0 at a warmup's start, as
    ``optax.inject_hyperparams`` passes schedules' values) or an optax schedule."""
    if callable(learning_rate):
        return
    leaves = jax.tree_util.tree_leaves(learning_rate, is_leaf=is_leaf_scale)
    if any(isinstance(s, LeafScale) for s in leaves):
        raise TypeError(
            f"{name}: `learning_rate` must be a number or an optax schedule; got "
            f"the network's `info` tree (the arguments are {name}(learning_rate, info))."
        )
    _checks.require_nonnegative(learning_rate, "learning_rate", name)


def sgd(
    learning_rate, info, momentum: Optional[float] = None, nesterov: bool = False
) -> optax.GradientTransformation:
    r"""SGD with μP per-tensor learning rates :math:`\eta \bar{n}^{-c_l}` (TP4 Def. 3.1,
    TP5 Table 3).

    ``learning_rate`` may be a number or an optax schedule. With momentum the
    multiplier is applied to the (linear) momentum update, which is the same.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from ntk import mup, stax
      >>> net = mup.parametrize(stax.serial(stax.Dense(128), stax.Relu(), stax.Dense(1)),
      ...                       "mup", base_width=64)
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (8, 3)); y = jnp.sin(x[:, :1])
      >>> _, w = net.init_fn(jax.random.PRNGKey(1), x.shape)
      >>> loss = lambda w: jnp.mean((net.apply_fn(w, x) - y) ** 2)
      >>> opt = mup.sgd(0.1, net.info); state = opt.init(w)
      >>> grads = jax.grad(loss)(w)
      >>> updates, state = opt.update(grads, state); w_new = optax.apply_updates(w, updates)
      >>> bool(loss(w_new) < loss(w))
      True
    """
    _check_lr(learning_rate, "mup.sgd")
    if momentum is not None:
        _checks.require_real(momentum, "momentum", "mup.sgd", low=0, high=1)
    return optax.chain(
        optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov), scale_by_width(info, "sgd")
    )


def adam(
    learning_rate,
    info,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    r"""Adam with μP per-tensor learning rates :math:`\eta \bar{n}^{-c_\mathrm{adam}}`
    (TP5 Table 3, Adam row).

    ``weight_decay`` is decoupled (AdamW) and *not* width-scaled: the decay per
    step is :math:`\eta \cdot \mathrm{weight\_decay} \cdot w` for every tensor, as the
    `mup` package does with ``decoupled_wd=True``.

    Example:
      >>> import jax
      >>> from ntk import mup, stax
      >>> net = mup.parametrize(stax.serial(stax.Dense(256), stax.Relu(), stax.Dense(1)),
      ...                       "mup", base_width=64)                     # n̄ = 256/64 = 4
      >>> opt = mup.adam(1e-3, net.info)
      >>> g = mup.multipliers(net.info)        # stand-in gradients: one scalar per tensor
      >>> u, _ = opt.update(g, opt.init(g))
      >>> [round(float(leaf), 6) for leaf in jax.tree_util.tree_leaves(u)]   # −η n̄^{-1/2}
      [-0.0005, -0.0005]
    """
    name = "mup.adam"
    _check_lr(learning_rate, name)
    for arg, v in (("b1", b1), ("b2", b2)):
        _checks.require_real(v, arg, name, low=0, high=1, high_open=True)
    _checks.require_nonnegative(eps, "eps", name)
    _checks.require_nonnegative(weight_decay, "weight_decay", name)
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        scale_by_width(info, "adam"),
        _decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


def _decayed_weights(weight_decay) -> optax.GradientTransformation:
    """``updates + weight_decay · params``, a stage even at ``weight_decay = 0``
    (under ``optax.inject_hyperparams`` the chain's stages must not depend on a
    traced value), which then needs no ``params``."""

    def update_fn(updates, state, params=None):
        if params is None:
            wd = _checks.concrete(weight_decay)
            if wd is not None and float(wd) == 0.0:
                return updates, state
            raise ValueError(
                "mup.adam: with weight_decay, `update(updates, state, params)` needs "
                "the current parameters; got params=None."
                + (
                    " Here weight_decay is traced (optax.inject_hyperparams passes it as "
                    "an array inside jit), so even 0 cannot be told apart: pass params, "
                    "as optax.adamw always needs them."
                    if wd is None
                    else ""
                )
            )
        return jax.tree_util.tree_map(lambda u, p: u + weight_decay * p, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
