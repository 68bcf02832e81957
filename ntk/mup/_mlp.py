"""The μP MLP shared by `ntk.mup.dmft`, `ntk.mup.finite` and `ntk.mup.ntk_limit`:
its activations and the checks of its data and training settings (internal).

The network (width ``N``, depth ``L``, all weights ``N(0, 1)``) is
``h¹ = W⁰x/√D``, ``h^{ℓ+1} = W^ℓφ(h^ℓ)/√N``, ``f = w·φ(h^L)/(γ₀N)``, trained
by full-batch gradient descent on ``Σ_μ(f_μ − y_μ)²/(2P)``
(`ntk.mup.dmft` module doc).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ntk import _checks

__all__ = ["ACTIVATIONS", "activation", "check_data", "check_common"]

#: Activations by name. ``linear`` is the check case (the limit is then free
#: of Monte Carlo error); ``erf`` has a closed-form dual in ``ntk.stax``.
ACTIVATIONS: dict[str, Callable] = {
    "linear": lambda h: h,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
}


def activation(name, fn):
    r""":math:`(\varphi, \varphi')` of the activation ``name``; ValueError naming ``fn``
    otherwise."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{fn}: `activation` must be one of {sorted(ACTIVATIONS)}; got {name!r}.")
    act = ACTIVATIONS[name]

    def dact(h):
        # elementwise φ'(h), itself differentiable (φ'' enters the responses)
        return jax.jvp(act, (h,), (jnp.ones_like(h),))[1]

    return act, dact


def check_data(x_train, y_train, x_test, fn):
    """``x_train (P, D)``, ``y_train`` as ``(P,)`` and ``x_test (Q, D)`` or None."""
    x_train = _checks.as_array(x_train, "x_train", fn, ndim=2, what="(P, D)")
    if x_train.shape[0] == 0 or x_train.shape[1] == 0:
        raise ValueError(
            f"{fn}: `x_train` must have shape (P, D) with P, D >= 1; got {x_train.shape}."
        )
    y_train = _checks.as_array(y_train, "y_train", fn)
    if y_train.ndim == 2 and y_train.shape[1] == 1:
        y_train = y_train[:, 0]
    if y_train.shape != (x_train.shape[0],):
        raise ValueError(
            f"{fn}: `y_train` must have shape (P,) or (P, 1) with "
            f"P = {x_train.shape[0]}; got {y_train.shape}."
        )
    if x_test is not None:
        x_test = _checks.as_array(x_test, "x_test", fn)
        if x_test.ndim != 2 or x_test.shape[1] != x_train.shape[1]:
            raise ValueError(
                f"{fn}: `x_test` must have shape (Q, {x_train.shape[1]}); got {x_test.shape}."
            )
    return x_train, y_train, x_test


def check_common(depth, gamma0, learning_rate, steps, fn):
    r"""Depth, :math:`\gamma_0`, learning rate and steps of a μP MLP run."""
    _checks.require_int(depth, "depth", fn)
    _checks.require_positive(gamma0, "gamma0", fn)
    _checks.require_positive(learning_rate, "learning_rate", fn)
    _checks.require_int(steps, "steps", fn)
