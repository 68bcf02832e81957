"""`max_learning_rate`: the stability bound of (momentum) GD on the MSE loss."""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

from ntk import _checks
from ntk.predict._checks import plain_kernel
from ntk.predict._layout import make_2d


def max_learning_rate(
    ntk_train_train, y_train_size: Optional[int] = None, momentum: float = 0.0, eps: float = 1e-12
):
    r"""The largest stable learning rate of (momentum) GD on the MSE loss.

    Full-batch gradient descent on :math:`\lVert f(X) - Y \rVert^2 / (2n)` of a
    linearised network iterates :math:`r \leftarrow (I - \eta \Theta / n) r` on the
    residual; it converges iff :math:`\eta \lambda_{\max}(\Theta) / n < 2`. Heavy-ball
    momentum :math:`\beta` (:math:`v \leftarrow \beta v - \eta g`) converges iff
    :math:`\eta \lambda_{\max} / n < 2 (1 + \beta)` (Goh 2017, "Why momentum really
    works"). Hence

    .. math::

        \eta_{\max} = 2 (1 + \beta)\, n / (\lambda_{\max}(\Theta) + \mathrm{eps}).

    Args:
      ntk_train_train: ``(N, N)`` NTK on the training inputs (or an
        interleaved ``(N, N, K, K, ...)`` kernel).
      y_train_size: ``n = y_train.size``, the loss normalisation; default the
        side of the (flattened) kernel, right for ``trace_axes=()``. With the
        default ``trace_axes=(-1,)`` and ``K`` outputs pass :math:`N \cdot K`.
      momentum: :math:`\beta \in [0, 1]`.
      eps: ``>= 0``, guards against a zero kernel.

    Returns:
      :math:`\eta_{\max}` (a Python float for concrete input, else a scalar array).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk import predict, stax
      >>> x_train = jax.random.normal(jax.random.PRNGKey(0), (8, 3))   # N = 8 targets
      >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
      >>> k = kernel_fn(x_train, None, "ntk")
      >>> lr = predict.max_learning_rate(k, y_train_size=8)
      >>> round(float(lr * jnp.linalg.eigvalsh(k).max() / 8), 6)   # 2 N / λ_max
      2.0
    """
    name = "max_learning_rate"
    k = plain_kernel(ntk_train_train, "ntk_train_train", name)
    if k.ndim == 0 or k.ndim % 2:
        raise ValueError(
            f"{name}: `ntk_train_train` must be a square (N, N) "
            f"kernel (or interleaved (N, N, K, K, ...)); got shape "
            f"{tuple(k.shape)}."
        )
    k2 = make_2d(k)
    if k2.shape[0] != k2.shape[1]:
        raise ValueError(f"{name}: `ntk_train_train` must be square; got shape {tuple(k.shape)}.")
    _checks.require_symmetric(k2, "ntk_train_train", name)
    if y_train_size is None:
        factor = k2.shape[0]
    else:
        factor = _checks.require_int(y_train_size, "y_train_size", name)
    _checks.require_real(momentum, "momentum", name, low=0, high=1)
    _checks.require_nonnegative(eps, "eps", name)
    lam_max = jnp.linalg.eigvalsh(k2)[-1]
    lr = 2 * (1 + momentum) * factor / (lam_max + eps)
    return float(lr) if _checks.is_concrete(lr) else lr
