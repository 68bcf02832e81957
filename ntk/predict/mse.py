"""`gradient_descent_mse`: closed-form MSE gradient flow (or descent) of one network."""

from __future__ import annotations

import warnings
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk._linalg import require_scale_flag
from ntk.predict._checks import (
    check_requests,
    check_times,
    initial_outputs,
    plain_kernel,
    train_problem,
)
from ntk.predict._linalg import (
    Regularised,
    dot,
    expm1_filter,
    over_lambda,
    steps_filter,
)
from ntk.predict.results import pack


def gradient_descent_mse(
    k_train_train,
    y_train,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: Sequence[int] = (-1,),
    *,
    discrete_time: bool = False,
):
    r"""Closed-form outputs of gradient flow on the MSE loss, at any time.

    For :math:`L(f) = \lVert f(X) - Y \rVert^2 / (2 n)`, ``n = y_train.size``,
    learning rate :math:`\eta` and :math:`\tau = \eta t / n` (Lee et al. 2019,
    eqs. 8-9; Jacot et al. 2018 §5):

    .. math::

        f_t(X) &= f_\infty(X) + e^{-\Theta \tau} \big(f_0(X) - f_\infty(X)\big),
        \qquad f_\infty(X) = Y, \\
        f_t(x) &= f_0(x) + \Theta(x, X)\, \Theta^{-1} \big(e^{-\Theta \tau} - I\big)
        \big(f_0(X) - Y\big),

    with :math:`\Theta = \mathrm{k\_train\_train}\ (+\ \mathrm{diag\_reg})` and
    :math:`\Theta(x, X) = \mathrm{k\_test\_train}`. Finite ``t`` uses
    :math:`\Theta = V \operatorname{diag}(\lambda) V^\top` (``eigh``),
    :math:`e^{-\Theta\tau} = V e^{-\lambda\tau} V^\top` and
    :math:`\Theta^{-1}(e^{-\Theta\tau} - I)
    = V \operatorname{diag}(\operatorname{expm1}(-\lambda\tau)/\lambda) V^\top`;
    eigenvalues :math:`\le 0` (round-off) are treated as untrained directions (a
    pseudo-inverse). ``t = None`` (:math:`\infty`) solves
    :math:`\Theta \alpha = Y - f_0(X)` by Cholesky; it, and an array ``t`` with
    ``inf`` entries, raise the same error when :math:`\Theta` has no Cholesky factor
    (checked when :math:`\Theta`, and an array ``t``, are concrete; also when only
    training outputs are requested, though :math:`f_\infty(X) = Y` needs no solve).

    Discrete time (``discrete_time=True``, an extension of neural-tangents'
    API): ``t`` counts steps of full-batch gradient descent
    :math:`f_{s+1}(X) = f_s(X) - (\eta/n) \Theta (f_s(X) - Y)`, whose closed form
    replaces :math:`e^{-\Theta\tau}` by :math:`(I - \eta\Theta/n)^t` (Lee et al. 2019
    §2.2, discrete version):

    .. math::

        f_t(X) &= Y + (I - \eta \Theta / n)^t \big(f_0(X) - Y\big), \\
        f_t(x) &= f_0(x) + \Theta(x, X)\, \Theta^{-1} \big((I - \eta \Theta / n)^t - I\big)
        \big(f_0(X) - Y\big).

    Here :math:`\eta` matters by itself (the steps diverge unless
    :math:`\eta \lambda_{\max} < 2n`),
    ``t`` must be whole numbers and ``t = None`` is the fixed point, kernel
    regression, which convergent steps approach.

    Args:
      k_train_train: ``(N, N)`` kernel on the training inputs (NTK for a
        network trained end to end; NNGP for a trained readout), or the
        interleaved shape for other ``trace_axes`` (module docstring).
      y_train: ``(N, K)`` targets.
      learning_rate: :math:`\eta > 0`; only :math:`\eta t` matters.
      diag_reg: regularisation added to the diagonal of ``k_train_train``.
      diag_reg_absolute_scale: if False (default) ``diag_reg`` is relative to
        the mean diagonal entry of ``k_train_train``.
      trace_axes: output axes along which the kernel is :math:`\otimes I`.
      discrete_time: ``t`` counts gradient-descent steps (above) instead of
        continuous time.

    Returns:
      ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)``:
      ``t`` a non-negative scalar or array of times (outputs get ``t.shape``
      as leading axes), None for :math:`\infty`; ``fx_train_0`` the outputs at
      ``t = 0`` on the training set (``(N, K)`` or broadcastable; None to skip
      training predictions, then :math:`f_0(X) = 0` is used); ``fx_test_0`` the test outputs
      at ``t = 0`` (``(M, K)`` or broadcastable); ``k_test_train`` the
      ``(M, N)`` kernel between test and training inputs. It returns
      ``fx_train_t``, ``fx_test_t`` or ``(fx_train_t, fx_test_t)``.

    Raises:
      ValueError: for shape mismatches (a ``y_train`` whose length differs
        from the kernel's is named), NaN/inf entries, an asymmetric
        ``k_train_train``, a negative or NaN ``t`` and a kernel that is not
        positive definite (the message suggests a ``diag_reg``).
      TypeError: for non-numeric arrays.

    Example:
      Any positive-definite kernel will do: a Gaussian one on 1-D inputs,
      targets :math:`y = x^2`. At :math:`t = \infty` the training outputs reach the targets
      and the test output is kernel regression:

      >>> import jax.numpy as jnp
      >>> from ntk import predict
      >>> kernel = lambda a, b: jnp.exp(-((a - b.T) ** 2))   # (M, 1), (N, 1) -> (M, N)
      >>> x_train = jnp.linspace(-1., 1., 5)[:, None]
      >>> y_train = x_train**2
      >>> predict_fn = predict.gradient_descent_mse(kernel(x_train, x_train), y_train)
      >>> t = jnp.array([0., 10., jnp.inf])
      >>> k_td = kernel(jnp.array([[0.25]]), x_train)
      >>> fx_train_t, fx_test_t = predict_fn(t, 0., 0., k_td)
      >>> fx_test_t.shape          # (times, N_test, K)
      (3, 1, 1)
      >>> bool(jnp.allclose(fx_train_t[-1], y_train, atol=1e-5))
      True
    """
    name = "gradient_descent_mse"
    y_train, lay, k_dd = train_problem(k_train_train, y_train, trace_axes, name)
    _checks.require_positive(learning_rate, "learning_rate", name)
    _checks.require_nonnegative(diag_reg, "diag_reg", name)
    require_scale_flag(diag_reg_absolute_scale, "diag_reg_absolute_scale", name)
    _checks.require_bool(discrete_time, "discrete_time", name)
    dtype = jnp.result_type(k_dd.dtype, y_train.dtype)
    n = y_train.size
    y_flat = lay.flatten(y_train).astype(dtype)
    reg = Regularised(k_dd, diag_reg, diag_reg_absolute_scale, name, "k_train_train")

    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        check_requests(fx_train_0, fx_test_0, k_test_train, name)
        k_td, test_shape = None, None
        if k_test_train is not None:
            k_test_train = plain_kernel(k_test_train, "k_test_train", name)
            k_td, test_shape = lay.test_kernel_2d(k_test_train, "k_test_train")
        f0, g0 = initial_outputs(fx_train_0, fx_test_0, y_train.shape, test_shape, dtype, name)
        f0 = lay.flatten(f0)
        g0 = None if g0 is None else lay.flatten(g0)

        if t is None:
            # f_∞(X) = Y needs no solve, but exists only for a definite Θ:
            # fail as t = inf does rather than return Y for a singular kernel.
            reg.check_definite()
            fx_train = y_flat if fx_train_0 is not None else None
            fx_test = None
            if g0 is not None:
                fx_test = g0 + dot(k_td, reg.cho_solve(y_flat - f0))
            lead = ()
        else:
            t, has_inf = check_times(t, name, finite=discrete_time)
            if has_inf:
                reg.check_definite()
            lead = t.shape
            if discrete_time:
                steps = _whole_steps(t, name)
                _warn_if_unstable(reg, learning_rate, n, name)
                filt = lambda ev, th: steps_filter(ev, th[0], n, th[1])  # noqa: E731
                theta = (learning_rate, steps)
            else:
                filt, theta = expm1_filter, (learning_rate * t.reshape(-1) / n).astype(dtype)
            fx_train = fx_test = None
            if fx_train_0 is not None:
                fx_train = f0[None] + reg.apply(filt, theta, f0 - y_flat)
            if g0 is not None:
                fx_test = g0[None] + reg.apply(over_lambda(filt), theta, f0 - y_flat, left=k_td)
        out_train = None if fx_train is None else lay.unflatten(fx_train, lay.nt_shape, lead)
        out_test = (
            None if fx_test is None else lay.unflatten(fx_test, lay.test_nt(test_shape), lead)
        )
        return pack(out_train, out_test)

    return predict_fn


def _warn_if_unstable(reg, learning_rate, n, name):
    """Warn when steps of size ``learning_rate`` diverge: the residual's mode of
    eigenvalue λ is multiplied by ``1 − ηλ/n`` per step, of modulus > 1 beyond
    ``η = 2n / λ_max`` (`max_learning_rate`)."""
    lr = _checks.concrete(learning_rate)
    if lr is None or not _checks.is_concrete(reg.k):
        return
    ev = _checks.concrete(reg.eigh()[0])
    if ev is None or ev.size == 0:
        return
    bound = 2 * n / float(ev.max())
    if float(lr) > bound:
        warnings.warn(
            f"{name}: learning_rate={float(lr):g} exceeds the stable bound "
            f"2n/λ_max = {bound:.3g} of the training kernel; the discrete-time "
            "iterates diverge (to inf, then NaN).",
            RuntimeWarning,
            stacklevel=3,
        )


def _whole_steps(t, name):
    """Step counts ``t`` (flattened) as integers; whole numbers when concrete."""
    c = _checks.concrete(t)
    if c is not None and np.any(c != np.round(c)):
        bad = c[c != np.round(c)].ravel()
        raise ValueError(
            f"{name}: with discrete_time=True `t` must be whole numbers "
            f"of steps; got {bad[:5].tolist()}."
        )
    return t.reshape(-1).astype(jnp.int32)
