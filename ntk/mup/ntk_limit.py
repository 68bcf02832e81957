r"""The lazy (NTK) and NNGP limits of the μP MLP of `ntk.mup.dmft`.

As :math:`\gamma_0 \to 0` the μP MLP of `ntk.mup.dmft` / `ntk.mup.finite` trains in the
kernel regime: its tangent kernel stays at the NTK of the network
``[Dense(W_std=1), φ] × L + Dense(1, W_std=1)`` (no biases) of ``ntk.stax``
(`ntk_limit_network`), and its outputs follow discrete-time gradient descent
in function space (`ntk_limit_trajectory`, by `ntk.predict.gradient_descent_mse`
with ``discrete_time=True``). Training only the readout gives the same with
the NNGP kernel.

    >>> import jax, jax.numpy as jnp
    >>> from ntk.mup.ntk_limit import ntk_limit_network, ntk_limit_trajectory
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (5, 3)); y = jnp.sin(x[:, 0])
    >>> _, _, kernel_fn = ntk_limit_network(2, "tanh")
    >>> k = kernel_fn(x, x, ("nngp", "ntk"))
    >>> f, _ = ntk_limit_trajectory(k.ntk, y, learning_rate=1.0, steps=10)
    >>> f.shape                                     # (T+1, P)
    (11, 5)
"""

from __future__ import annotations

import jax.numpy as jnp

from ntk import _checks, predict
from ntk.mup import _mlp

__all__ = ["ntk_limit_network", "ntk_limit_trajectory"]


def ntk_limit_network(depth: int, activation: str):
    r"""``ntk.stax`` triple of the same MLP: ``[Dense(W_std=1), φ] × L + Dense(1)``.

    Its ``kernel_fn(x, x, ("nngp", "ntk"))`` is the :math:`\gamma_0 \to 0` limit: NNGP =
    :math:`\Phi^L` at initialisation (the readout's input kernel times 1), NTK =
    :math:`\sum_\ell G^{\ell+1} \odot \Phi^\ell`. ``tanh`` uses 64-point Gauss–Hermite
    quadrature.
    """
    from ntk import stax

    _mlp.activation(activation, "ntk_limit_network")
    _checks.require_int(depth, "depth", "ntk_limit_network")
    layer = {
        "linear": stax.Identity,
        "relu": stax.Relu,
        "erf": stax.Erf,
        "tanh": lambda: stax.ElementwiseNumerical(jnp.tanh, deg=64),
    }[activation]
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=1.0), layer()]
    return stax.serial(*layers, stax.Dense(1, W_std=1.0))


def ntk_limit_trajectory(ntk_train, y_train, learning_rate: float, steps: int, ntk_test_train=None):
    r"""Discrete-time GD in the NTK limit:
    :math:`f_{t+1} = f_t + (\eta/P)\, \Theta (y - f_t)`, :math:`f_0 = 0`.

    Closed form :math:`f_t = (I - (I - \eta\Theta/P)^t)\, y` on train and
    :math:`f_t(x) = \Theta_{xd} \Theta^{-1} (I - (I - \eta\Theta/P)^t)\, y` on test (Lee et
    al. 2019 §2.2, discrete version), i.e. `ntk.predict.gradient_descent_mse` with
    ``discrete_time=True`` at :math:`t = 0 \ldots T`. Returns ``(T+1, P)`` and
    ``(T+1, Q)`` or None.
    """
    name = "ntk_limit_trajectory"
    ntk_train = _checks.as_array(ntk_train, "ntk_train", name, ndim=2, floating=True, what="(P, P)")
    P = ntk_train.shape[0]
    if ntk_train.shape != (P, P):
        raise ValueError(f"{name}: `ntk_train` must be square (P, P); got {ntk_train.shape}.")
    _checks.require_symmetric(ntk_train, "ntk_train", name)
    y = _checks.as_array(y_train, "y_train", name)
    if y.shape not in ((P,), (P, 1)):
        raise ValueError(f"{name}: `y_train` must have shape ({P},) or ({P}, 1); got {y.shape}.")
    y = y.reshape(-1)
    _checks.require_positive(learning_rate, "learning_rate", name)
    steps = _checks.require_int(steps, "steps", name, minimum=0)
    if ntk_test_train is not None:
        ntk_test_train = _checks.as_array(ntk_test_train, "ntk_test_train", name)
        if ntk_test_train.ndim != 2 or ntk_test_train.shape[1] != P:
            raise ValueError(
                f"{name}: `ntk_test_train` must have shape (Q, {P}); got {ntk_test_train.shape}."
            )
    predict_fn = predict.gradient_descent_mse(
        ntk_train, y[:, None], learning_rate, discrete_time=True
    )
    t = jnp.arange(steps + 1)
    if ntk_test_train is None:
        return predict_fn(t, 0.0)[..., 0], None
    f, f_test = predict_fn(t, 0.0, 0.0, ntk_test_train)
    return f[..., 0], f_test[..., 0]
