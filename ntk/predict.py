"""Function-space training dynamics and GP inference with NNGP/NTK kernels.

Neural-tangents' ``predict`` API (names, signatures and conventions), on public
JAX only.

Linearised training (Jacot et al. 2018, "Neural Tangent Kernel", §5; Lee et al.
2019, "Wide neural networks of any depth evolve as linear models under gradient
descent", §2.2). Gradient flow with learning rate η on a loss ``L(f(X), Y)``
moves the outputs of a (linearised or infinitely wide) network along

    df_t(x)/dt = -η Θ(x, X) ∇_f L(f_t(X)),                         (Lee eq. 6)

where ``Θ`` is the NTK and ``X`` the training inputs. For the mean squared error
used throughout neural-tangents,

    L(f) = ||f(X) - Y||² / (2 n),       n = Y.size,

the flow is linear and solved in closed form (Lee eqs. 8-9): with
``τ = η t / n``,

    f_t(X) = Y + e^{-Θ τ} (f_0(X) - Y),
    f_t(x) = f_0(x) - Θ(x, X) Θ^{-1} (I - e^{-Θ τ}) (f_0(X) - Y),

and ``t = ∞`` gives kernel regression ``f_0(x) + Θ(x, X) Θ^{-1}(Y - f_0(X))``.
Time ``t`` counts gradient-descent steps of size η (continuous, may be
fractional).

Kernels are arrays ``(N1, N2)`` for outputs ``(N, K)`` with the default
``trace_axes=(-1,)`` (the kernel is ``Θ ⊗ I_K``: the same for every output
channel, as infinite-width kernels are). In general the kernel has the
interleaved shape of ``zip(y.shape, y.shape)`` with the ``trace_axes`` pairs
removed, e.g. ``(N, N, K, K)`` for ``trace_axes=()``.

Regularisation. ``diag_reg`` adds ``diag_reg · I`` to the train-train kernel,
scaled by the mean of its diagonal unless ``diag_reg_absolute_scale=True``.
Closed forms at finite ``t`` use the eigendecomposition of the regularised
kernel; ``t = ∞`` uses a Cholesky solve. A kernel that is not positive definite
(Cholesky) or clearly indefinite (eigenvalues) raises a ValueError reporting
its smallest eigenvalue and a ``diag_reg`` that would fix it. Decompositions are
computed on first use and cached (when the kernel is a concrete array).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from ntk import stax, predict
    >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
    >>> x_train = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    >>> y_train = jnp.sin(x_train[:, :1])
    >>> x_test = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    >>> predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train)
    >>> mean, cov = predict_fn(t=100., x_test=x_test, get="ntk", compute_cov=True)
    >>> mean.shape, cov.shape
    ((4, 1), (4, 4))
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ntk.ode import odeint

__all__ = ["Gaussian", "ODEState", "gradient_descent_mse", "gradient_descent",
           "gp_inference", "gradient_descent_mse_ensemble", "max_learning_rate"]

_HP = jax.lax.Precision.HIGHEST


class Gaussian(NamedTuple):
    """A Gaussian ``(mean, covariance)``.

    Attributes:
      mean: shape of the outputs, e.g. ``(N_test, K)`` (with leading time axes
        when times were requested).
      covariance: shape of the kernel on the test points, e.g.
        ``(N_test, N_test)``: the covariance of every output channel.
    """

    mean: jax.Array
    covariance: jax.Array


@dataclasses.dataclass
class ODEState:
    """State of the function-space ODE of `gradient_descent`.

    Attributes:
      fx_train: outputs on the training set.
      fx_test: outputs on the test set (or None).
      qx_train: velocity ``df/dt`` on the training set (momentum only).
      qx_test: velocity on the test set (momentum only).
    """

    fx_train: Optional[jax.Array] = None
    fx_test: Optional[jax.Array] = None
    qx_train: Optional[jax.Array] = None
    qx_test: Optional[jax.Array] = None


jax.tree_util.register_dataclass(
    ODEState, data_fields=["fx_train", "fx_test", "qx_train", "qx_test"],
    meta_fields=[])


# ----------------------------------------------------------------------------
# gradient_descent_mse
# ----------------------------------------------------------------------------


def gradient_descent_mse(k_train_train, y_train, learning_rate: float = 1.,
                         diag_reg: float = 0., diag_reg_absolute_scale: bool = False,
                         trace_axes: Sequence[int] = (-1,)):
    r"""Closed-form outputs of gradient flow on the MSE loss, at any time.

    For ``L(f) = ||f(X) - Y||² / (2 n)``, ``n = y_train.size``, learning rate
    η and ``τ = η t / n`` (Lee et al. 2019, eqs. 8-9; Jacot et al. 2018 §5):

        f_t(X) = f_∞(X) + e^{-Θ τ} (f_0(X) - f_∞(X)),      f_∞(X) = Y,
        f_t(x) = f_0(x) + Θ(x, X) Θ^{-1} (e^{-Θ τ} - I) (f_0(X) - Y),

    with ``Θ = k_train_train (+ diag_reg)`` and ``Θ(x, X) = k_test_train``.
    Finite ``t`` uses ``Θ = V diag(λ) Vᵀ`` (``eigh``), ``e^{-Θτ} = V e^{-λτ}
    Vᵀ`` and ``Θ^{-1}(e^{-Θτ} - I) = V diag(expm1(-λτ)/λ) Vᵀ``; eigenvalues
    ``≤ 0`` (round-off) are treated as untrained directions (a pseudo-inverse).
    ``t = None`` (``∞``) solves ``Θ α = Y - f_0(X)`` by Cholesky.

    Args:
      k_train_train: ``(N, N)`` kernel on the training inputs (NTK for a
        network trained end to end; NNGP for a trained readout), or the
        interleaved shape for other ``trace_axes`` (module docstring).
      y_train: ``(N, K)`` targets.
      learning_rate: η > 0; only ``η t`` matters.
      diag_reg: regularisation added to the diagonal of ``k_train_train``.
      diag_reg_absolute_scale: if False (default) ``diag_reg`` is relative to
        the mean diagonal entry of ``k_train_train``.
      trace_axes: output axes along which the kernel is ``⊗ I``.

    Returns:
      ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)``:
      ``t`` a non-negative scalar or array of times (outputs get ``t.shape``
      as leading axes), None for ``∞``; ``fx_train_0`` the outputs at ``t = 0``
      on the training set (``(N, K)`` or broadcastable; None to skip training
      predictions, then ``f_0(X) = 0`` is used); ``fx_test_0`` the test outputs
      at ``t = 0`` (``(M, K)`` or broadcastable); ``k_test_train`` the
      ``(M, N)`` kernel between test and training inputs. It returns
      ``fx_train_t``, ``fx_test_t`` or ``(fx_train_t, fx_test_t)``.

    Raises:
      ValueError: for shape mismatches, a negative ``t`` and a kernel that is
        not positive definite (the message suggests a ``diag_reg``).

    Example:
      >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Erf(), stax.Dense(1))
      >>> k_dd = kernel_fn(x_train, None, "ntk")
      >>> k_td = kernel_fn(x_test, x_train, "ntk")
      >>> predict_fn = predict.gradient_descent_mse(k_dd, y_train, diag_reg=1e-4)
      >>> fx_train_t, fx_test_t = predict_fn(jnp.array([1., 10.]), 0., 0., k_td)
      >>> fx_test_t.shape          # (times, N_test, K)
      (2, 4, 1)
    """
    name = "gradient_descent_mse"
    y_train = _as_float_array(y_train, "y_train", name)
    k_train_train = _plain_kernel(k_train_train, "k_train_train", name)
    lay = _Layout(y_train.shape, trace_axes, name)
    k_dd = lay.train_kernel_2d(k_train_train, "k_train_train")
    _check_positive(learning_rate, "learning_rate", name)
    _check_nonnegative(diag_reg, "diag_reg", name)
    dtype = jnp.result_type(k_dd.dtype, y_train.dtype)
    n = y_train.size
    y_flat = lay.flatten(y_train).astype(dtype)
    reg = _Regularised(k_dd, diag_reg, diag_reg_absolute_scale, name,
                       "k_train_train")

    def predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None):
        _check_requests(fx_train_0, fx_test_0, k_test_train, name)
        k_td, test_shape = None, None
        if k_test_train is not None:
            k_test_train = _plain_kernel(k_test_train, "k_test_train", name)
            k_td, test_shape = lay.test_kernel_2d(k_test_train, "k_test_train")
        f0 = (jnp.zeros_like(y_flat) if fx_train_0 is None else lay.flatten(
            _broadcast(fx_train_0, y_train.shape, "fx_train_0", name)).astype(dtype))
        g0 = None
        if fx_test_0 is not None:
            g0 = lay.flatten(_broadcast(fx_test_0, test_shape, "fx_test_0", name,
                                        "the test outputs implied by "
                                        "`k_test_train`")).astype(dtype)

        if t is None:
            fx_train = y_flat if fx_train_0 is not None else None
            fx_test = None
            if g0 is not None:
                fx_test = g0 + _dot(k_td, reg.cho_solve(y_flat - f0))
            lead = ()
        else:
            t = _check_times(t, name)
            lead = t.shape
            tau = (learning_rate * t.reshape(-1) / n).astype(dtype)
            evals, evecs = reg.eigh()
            proj = _dot(evecs.T, f0 - y_flat)
            fx_train = fx_test = None
            if fx_train_0 is not None:
                fx_train = f0 + jnp.einsum("pi,ti,ic->tpc", evecs,
                                           _expm1(evals, tau), proj, precision=_HP)
            if g0 is not None:
                kv = _dot(k_td, evecs)
                fx_test = g0 + jnp.einsum("qi,ti,ic->tqc", kv,
                                          _expm1_over(evals, tau), proj,
                                          precision=_HP)
        out_train = (None if fx_train is None else
                     lay.unflatten(fx_train, lay.nt_shape, lead))
        out_test = (None if fx_test is None else
                    lay.unflatten(fx_test, lay.test_nt(test_shape), lead))
        return _pack(out_train, out_test)

    return predict_fn


# ----------------------------------------------------------------------------
# gradient_descent (any loss, ODE)
# ----------------------------------------------------------------------------


def gradient_descent(loss: Callable, k_train_train, y_train,
                     learning_rate: float = 1., momentum: Optional[float] = None,
                     trace_axes: Sequence[int] = (-1,), *, rtol: float = 1.4e-8,
                     atol: float = 1.4e-8, max_steps: int = 100_000):
    r"""Function-space gradient flow on any loss, integrated numerically.

    Without momentum (Lee et al. 2019, eq. 6), with time in units of steps of
    size η (``s = η t``):

        d f(X)/ds = -Θ(X, X) ∇_f L(f(X), Y),   d f(x)/ds = -Θ(x, X) ∇_f L(f(X), Y).

    With momentum β (heavy ball ``v ← β v - η g; f ← f + v``) the continuous
    limit keeps ``m = (β - 1)/√η`` fixed and runs in ``s = √η t``:

        d f/ds = q,     d q/ds = -Θ ∇_f L + m q,

    (so ``η`` and ``t`` are no longer interchangeable; the ``ODEState``
    carries ``q``). The ODE is solved by `ntk.ode.odeint` (adaptive
    Dormand–Prince 5(4) with tolerances ``rtol``, ``atol``). For the MSE loss
    ``L = ||f - Y||²/(2n)`` this reproduces `gradient_descent_mse`.

    Args:
      loss: ``loss(fx_train, y_train) -> scalar``; e.g. cross-entropy
        ``lambda f, y: -jnp.mean(jax.nn.log_softmax(f) * y)``.
      k_train_train: ``(N, N)`` NTK on the training inputs (see
        `gradient_descent_mse` for other ``trace_axes``).
      y_train: ``(N, K)`` targets.
      learning_rate: η > 0.
      momentum: β in ``[0, 1]`` or None for plain gradient descent.
      trace_axes: output axes along which the kernel is ``⊗ I``.
      rtol, atol, max_steps: ODE solver settings (keyword only; not in NT).

    Returns:
      ``predict_fn(t, fx_train_or_state_0=0., fx_test_0=None,
      k_test_train=None)``: ``t`` non-negative finite time(s) of any shape and
      order (``t = None``, i.e. ``∞``, is refused: a general loss need not have
      a finite minimiser); the second argument is ``fx_train_0`` or a full
      `ODEState` (then an `ODEState` is returned). Returns ``fx_train_t``,
      ``fx_test_t`` or both, with ``t.shape`` as leading axes.

    Example:
      >>> cross_entropy = lambda f, y: -jnp.mean(jax.nn.log_softmax(f) * y)
      >>> k_dd = kernel_fn(x_train, None, "ntk")
      >>> predict_fn = predict.gradient_descent(cross_entropy, k_dd, y_onehot, 1.)
      >>> fx_train_t = predict_fn(jnp.array([1., 10.]), fx_train_0)
    """
    name = "gradient_descent"
    if not callable(loss):
        raise ValueError(f"{name}: `loss` must be a function loss(fx, y); got "
                         f"{type(loss).__name__}.")
    y_train = _as_float_array(y_train, "y_train", name)
    k_train_train = _plain_kernel(k_train_train, "k_train_train", name)
    lay = _Layout(y_train.shape, trace_axes, name)
    k_dd = lay.train_kernel_2d(k_train_train, "k_train_train")
    _check_positive(learning_rate, "learning_rate", name)
    dtype = jnp.result_type(k_dd.dtype, y_train.dtype)
    time_scale, m = learning_rate, None
    if momentum is not None:
        _check_nonnegative(momentum, "momentum", name)
        time_scale = learning_rate ** 0.5
        m = (momentum - 1.0) / time_scale
    dstate_dt = _gd_dynamics(loss, y_train.shape, lay.trace, m is not None)
    m_arg = jnp.asarray(0. if m is None else m, dtype)

    def predict_fn(t=None, fx_train_or_state_0=0., fx_test_0=None,
                   k_test_train=None):
        as_state = isinstance(fx_train_or_state_0, ODEState)
        if as_state:
            if fx_test_0 is not None:
                raise ValueError(f"{name}: `fx_test_0` must be None when an "
                                 f"ODEState is passed (it holds fx_test).")
            s0 = fx_train_or_state_0
            fx_train_0, fx_test_0 = s0.fx_train, s0.fx_test
            q_train_0, q_test_0 = s0.qx_train, s0.qx_test
        else:
            fx_train_0, q_train_0, q_test_0 = fx_train_or_state_0, None, None
        _check_requests(fx_train_0, fx_test_0, k_test_train, name)
        if t is None:
            raise ValueError(f"{name}: `t` must be a finite time or array of "
                             f"times; got None (t = ∞). A general loss may have "
                             f"no finite minimiser; for the MSE loss use "
                             f"`gradient_descent_mse`, which solves t = ∞ "
                             f"exactly.")
        t = _check_times(t, name, finite=True)
        k_td, test_shape = None, None
        if k_test_train is not None:
            k_test_train = _plain_kernel(k_test_train, "k_test_train", name)
            k_td, test_shape = lay.test_kernel_2d(k_test_train, "k_test_train")
        f0 = (jnp.zeros(y_train.shape, dtype) if fx_train_0 is None else
              _broadcast(fx_train_0, y_train.shape, "fx_train_0", name).astype(dtype))
        g0 = None
        if fx_test_0 is not None:
            g0 = _broadcast(fx_test_0, test_shape, "fx_test_0", name,
                            "the test outputs implied by `k_test_train`").astype(dtype)
        if m is None:
            if q_train_0 is not None or q_test_0 is not None:
                raise ValueError(f"{name}: the ODEState has momentum variables "
                                 f"(qx_train/qx_test) but `momentum` is None.")
            state0 = ODEState(f0, g0)
        else:
            qd = (jnp.zeros_like(f0) if q_train_0 is None else
                  _broadcast(q_train_0, y_train.shape, "qx_train", name).astype(dtype))
            qt = None
            if g0 is not None:
                qt = (jnp.zeros_like(g0) if q_test_0 is None else
                      _broadcast(q_test_0, test_shape, "qx_test", name).astype(dtype))
            state0 = ODEState(f0, g0, qd, qt)

        flat_t = (t.reshape(-1) * time_scale).astype(dtype)
        order = jnp.argsort(flat_t)
        ts = jnp.concatenate([jnp.zeros((1,), dtype), flat_t[order]])
        states = odeint(dstate_dt, state0, ts, k_dd.astype(dtype),
                        None if k_td is None else k_td.astype(dtype),
                        y_train, m_arg, rtol=rtol, atol=atol,
                        max_steps=max_steps)
        inverse = jnp.argsort(order)
        states = jax.tree_util.tree_map(
            lambda x: x[1:][inverse].reshape(t.shape + x.shape[1:]), states)
        _check_solved(states, name, max_steps)
        if as_state:
            return states
        return _pack(None if fx_train_0 is None else states.fx_train,
                     None if fx_test_0 is None else states.fx_test)

    return predict_fn


def _gd_dynamics(loss, y_shape, trace, momentum: bool):
    """The right-hand side of the function-space ODE of `gradient_descent`.

    Cached per (loss, output layout, momentum) so that the compiled ODE solver
    is reused across `gradient_descent` calls with the same loss; kernels,
    targets and the momentum coefficient ``m`` are arguments.
    """
    try:
        key = (loss, tuple(y_shape), tuple(trace), momentum)
        hash(key)
    except TypeError:
        return _make_gd_dynamics(loss, y_shape, trace, momentum)
    if key not in _GD_DYNAMICS:
        if len(_GD_DYNAMICS) > 64:
            _GD_DYNAMICS.clear()
        _GD_DYNAMICS[key] = _make_gd_dynamics(*key)
    return _GD_DYNAMICS[key]


_GD_DYNAMICS: dict = {}


def _make_gd_dynamics(loss, y_shape, trace, momentum):
    lay = _Layout(y_shape, trace, "gradient_descent")
    grad_loss = jax.grad(loss)

    def dstate_dt(state: ODEState, _, k_dd, k_td, y_train, m):
        g = lay.flatten(grad_loss(state.fx_train, y_train))
        df_train = lay.unflatten(-_dot(k_dd, g), lay.nt_shape)
        df_test = None
        if state.fx_test is not None:
            df_test = lay.unflatten(-_dot(k_td, g), lay.test_nt(state.fx_test.shape))
        if not momentum:
            return ODEState(df_train, df_test)
        dq_train = df_train + m * state.qx_train
        dq_test = None if df_test is None else df_test + m * state.qx_test
        return ODEState(state.qx_train, state.qx_test, dq_train, dq_test)

    return dstate_dt


# ----------------------------------------------------------------------------
# gp_inference
# ----------------------------------------------------------------------------


def gp_inference(k_train_train, y_train, diag_reg: float = 0.,
                 diag_reg_absolute_scale: bool = False,
                 trace_axes: Sequence[int] = (-1,)):
    r"""NNGP, NTK and NTK-GP posteriors (infinite time) on test points.

    With ``K`` the NNGP, ``Θ`` the NTK, ``d`` training and ``t`` test inputs,
    ``K_dd`` and ``Θ_dd`` regularised by ``diag_reg``:

    * ``"nngp"`` — the exact posterior of an infinitely wide Bayesian network
      (Lee et al. 2018, "Deep neural networks as Gaussian processes", eq. 3):
      ``μ = K_td K_dd^{-1} Y``, ``Σ = K_tt - K_td K_dd^{-1} K_dt``.
    * ``"ntk"`` — the distribution of an infinite ensemble of infinitely wide
      networks trained to convergence (Lee et al. 2019, eqs. 15-16, t = ∞):
      ``μ = Θ_td Θ_dd^{-1} Y``,
      ``Σ = K_tt + Θ_td Θ_dd^{-1} K_dd Θ_dd^{-1} Θ_dt
      - (Θ_td Θ_dd^{-1} K_dt + h.c.)``.
    * ``"ntkgp"`` — the GP posterior with the NTK as prior covariance (He et
      al. 2020, "Bayesian deep ensembles via the NTK"): ``μ`` as ``"ntk"``,
      ``Σ = Θ_tt - Θ_td Θ_dd^{-1} Θ_dt``.

    Args:
      k_train_train: ``(N, N)`` kernel array, or an object with ``.nngp`` and/or
        ``.ntk`` (an `ntk.Kernel`, or the namedtuple of ``kernel_fn(...,
        get=("nngp", "ntk"))``). An array serves as every kernel asked for.
      y_train: ``(N, K)`` targets.
      diag_reg, diag_reg_absolute_scale, trace_axes: as in
        `gradient_descent_mse`.

    Returns:
      ``predict_fn(get=None, k_test_train=None, k_test_test=None)``: ``get`` is
      ``"nngp"``, ``"ntk"``, ``"ntkgp"`` or a tuple (None = ``("nngp",
      "ntk")``); ``k_test_train`` ``(M, N)`` (None: predictions on the
      training set, ``N(Y, 0)``); ``k_test_test`` ``(M, M)`` to also get
      covariances (any non-None value when ``k_test_train`` is None). Returns
      the mean or a `Gaussian` for one name, a namedtuple ``Gaussians`` over
      the names for a tuple. The NTK covariance needs both ``nngp`` and ``ntk``
      in ``k_train_train`` and ``k_test_train``.

    Example:
      >>> k_dd = kernel_fn(x_train, None, ("nngp", "ntk"))
      >>> k_td = kernel_fn(x_test, x_train, ("nngp", "ntk"))
      >>> k_tt = kernel_fn(x_test, None, "nngp")
      >>> predict_fn = predict.gp_inference(k_dd, y_train, diag_reg=1e-4)
      >>> nngp = predict_fn("nngp", k_td, k_tt)       # Gaussian(mean, covariance)
    """
    name = "gp_inference"
    y_train = _as_float_array(y_train, "y_train", name)
    lay = _Layout(y_train.shape, trace_axes, name)
    _check_nonnegative(diag_reg, "diag_reg", name)
    regs = {}

    def reg_of(g):  # g in {"nngp", "ntk"}
        if g not in regs:
            arg = ("k_train_train" if hasattr(k_train_train, "shape")
                   else f"k_train_train.{g}")
            k = _kernel_attr(k_train_train, g, "k_train_train", name)
            regs[g] = _Regularised(lay.train_kernel_2d(k, arg), diag_reg,
                                   diag_reg_absolute_scale, name, arg)
        return regs[g]

    def predict_fn(get=None, k_test_train=None, k_test_test=None):
        names, single = _canonical_get(get, ("nngp", "ntk", "ntkgp"), name,
                                       default=("nngp", "ntk"))
        out = {}
        for g in names:
            kind = "ntk" if g == "ntkgp" else g
            reg = reg_of(kind)
            dtype = jnp.result_type(reg.k.dtype, y_train.dtype)
            y_flat = lay.flatten(y_train).astype(dtype)
            if k_test_train is None:
                mean = y_train.astype(dtype)
                out[g] = mean if k_test_test is None else Gaussian(
                    mean, lay.unflatten_cov(jnp.zeros_like(reg.k), lay.nt_shape, ()))
                continue
            k_td, test_shape = lay.test_kernel_2d(
                _kernel_attr(k_test_train, kind, "k_test_train", name),
                "k_test_train")
            test_nt = lay.test_nt(test_shape)
            mean = lay.unflatten(_dot(k_td, reg.cho_solve(y_flat)), test_nt)
            if k_test_test is None:
                out[g] = mean
                continue
            prior = "ntk" if g == "ntkgp" else "nngp"
            k_tt = lay.kernel_2d(_kernel_attr(k_test_test, prior, "k_test_test",
                                              name), "k_test_test",
                                 test_nt, test_nt)
            if g in ("nngp", "ntkgp"):
                cov = k_tt - _dot(k_td, reg.cho_solve(k_td.T))
            else:
                if not (_has_kernel(k_train_train, "nngp")
                        and _has_kernel(k_test_train, "nngp")):
                    raise ValueError(
                        f"{name}: the NTK posterior covariance needs both the "
                        f"NNGP and the NTK of `k_train_train` and "
                        f"`k_test_train` (objects with .nngp and .ntk, e.g. "
                        f"kernel_fn(x1, x2, get=('nngp', 'ntk'))); got "
                        f"{type(k_train_train).__name__} and "
                        f"{type(k_test_train).__name__}.")
                nngp_dd = lay.train_kernel_2d(k_train_train.nngp, "k_train_train.nngp")
                nngp_td, _ = lay.test_kernel_2d(k_test_train.nngp, "k_test_train.nngp")
                a = reg.cho_solve(k_td.T)  # Θ_dd^{-1} Θ_dt
                cross = _dot(nngp_td, a)   # K_td Θ_dd^{-1} Θ_dt
                cov = k_tt + _dot(a.T, _dot(nngp_dd, a)) - cross - cross.T
            out[g] = Gaussian(mean, lay.unflatten_cov(cov, test_nt, ()))
        return _named(out, names, single)

    return predict_fn


# ----------------------------------------------------------------------------
# gradient_descent_mse_ensemble
# ----------------------------------------------------------------------------


def gradient_descent_mse_ensemble(kernel_fn, x_train, y_train,
                                  learning_rate: float = 1., diag_reg: float = 0.,
                                  diag_reg_absolute_scale: bool = False,
                                  trace_axes: Sequence[int] = (-1,),
                                  **kernel_fn_train_train_kwargs):
    r"""Mean and covariance over random initialisations of MSE-trained networks.

    The outputs of an infinitely wide network at initialisation are a centred
    GP with the NNGP ``K``; trained by gradient flow on
    ``||f(X) - Y||²/(2n)`` (``n = y_train.size``, ``τ = η t / n``) they stay
    Gaussian. With ``A_t = Θ_dd^{-1}(I - e^{-Θ_dd τ})`` (Lee et al. 2019,
    eqs. 14-16, any ``t``; ``t = ∞`` gives `gp_inference`):

    * ``get="ntk"`` — all layers trained (the NTK regime):
      ``μ_t(x) = Θ_xd A_t Y``, and
      ``Σ_t(x, x') = K_xx' + Θ_xd A_t K_dd A_tᵀ Θ_dx' - (Θ_xd A_t K_dx' + h.c.)``;
      on the training set ``μ_t = (I - e^{-Θτ}) Y``, ``Σ_t = e^{-Θτ} K e^{-Θτ}``.
    * ``get="nngp"`` — only the readout trained, so the kernel is ``K``
      (Bayesian-style: the ``t = ∞`` limit is the NNGP posterior):
      ``μ_t(x) = K_xd K_dd^{-1}(I - e^{-Kτ}) Y``,
      ``Σ_t(x, x') = K_xx' - K_xd K_dd^{-1}(I - e^{-2Kτ}) K_dx'``;
      on the training set ``Σ_t = K e^{-2Kτ}``.

    ``diag_reg`` regularises the kernel that drives the dynamics (``Θ_dd``,
    resp. ``K_dd``), not the prior covariance ``K_dd`` in the NTK formula.

    Args:
      kernel_fn: ``kernel_fn(x1, x2, get, **kwargs)`` returning arrays for one
        name and an object with ``.nngp``/``.ntk`` for a tuple, e.g. the
        ``kernel_fn`` of ``ntk.stax``.
      x_train: training inputs ``(N, ...)``.
      y_train: ``(N, K)`` targets.
      learning_rate, diag_reg, diag_reg_absolute_scale, trace_axes: as in
        `gradient_descent_mse`.
      **kernel_fn_train_train_kwargs: passed to ``kernel_fn`` on the training
        inputs (and, unless overridden, on the test inputs).

    Returns:
      ``predict_fn(t=None, x_test=None, get=None, compute_cov=False,
      **kernel_fn_test_test_kwargs)``: ``t`` non-negative time(s) (leading axes
      of the outputs) or None for ``∞``; ``x_test`` test inputs, None for the
      training set; ``get`` ``"nngp"``, ``"ntk"`` or a tuple (None = both);
      returns means ``(*t.shape, M, K)``, or `Gaussian` ``(mean, covariance)``
      with covariance ``(*t.shape, M, M)`` when ``compute_cov``; a namedtuple
      ``Gaussians`` over the names when ``get`` is a tuple.

    Example:
      >>> _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.1),
      ...                               stax.Erf(), stax.Dense(1, W_std=1.5))
      >>> predict_fn = predict.gradient_descent_mse_ensemble(
      ...     kernel_fn, x_train, y_train, learning_rate=0.5, diag_reg=1e-6)
      >>> out = predict_fn(t=jnp.array([10., 100.]), x_test=x_test,
      ...                  get="ntk", compute_cov=True)
      >>> out.mean.shape, out.covariance.shape
      ((2, 4, 1), (2, 4, 4))
    """
    name = "gradient_descent_mse_ensemble"
    if not callable(kernel_fn):
        raise ValueError(f"{name}: `kernel_fn` must be callable; got "
                         f"{type(kernel_fn).__name__}.")
    y_train = _as_float_array(y_train, "y_train", name)
    lay = _Layout(y_train.shape, trace_axes, name)
    _check_positive(learning_rate, "learning_rate", name)
    _check_nonnegative(diag_reg, "diag_reg", name)
    n = y_train.size
    train_kwargs = dict(kernel_fn_train_train_kwargs)
    k_dd_cache: dict = {}
    regs: dict = {}

    def k_dd(g):
        if g not in k_dd_cache:
            with jax.ensure_compile_time_eval():
                k = _kernel_attr(kernel_fn(x_train, None, g, **train_kwargs), g,
                                 "kernel_fn(x_train, None)", name)
            k = lay.train_kernel_2d(k, f"kernel_fn(x_train, None, {g!r})")
            if _concrete(k):
                k_dd_cache[g] = k
            return k
        return k_dd_cache[g]

    def reg_of(g):
        if g in regs:
            return regs[g]
        r = _Regularised(k_dd(g), diag_reg, diag_reg_absolute_scale, name,
                         f"kernel_fn(x_train, None, {g!r})")
        if g in k_dd_cache:
            regs[g] = r
        return r

    def predict_fn(t=None, x_test=None, get=None, compute_cov=False,
                   **kernel_fn_test_test_kwargs):
        names, single = _canonical_get(get, ("nngp", "ntk"), name,
                                       default=("nngp", "ntk"))
        if t is not None:
            t = _check_times(t, name)
        need = tuple(g for g in ("nngp", "ntk")
                     if g in names or (g == "nngp" and compute_cov))
        dtype = jnp.result_type(*(k_dd(g).dtype for g in need), y_train.dtype)
        y_flat = lay.flatten(y_train).astype(dtype)
        k_td = k_tt = None
        if x_test is not None:
            kw_td, kw_tt = _merge_kwargs(train_kwargs, kernel_fn_test_test_kwargs,
                                         name)
            got = kernel_fn(x_test, x_train, need, **kw_td)
            k_td, test_nt = {}, None
            for g in need:
                k_td[g], test_shape = lay.test_kernel_2d(
                    _kernel_attr(got, g, "kernel_fn(x_test, x_train)", name),
                    f"kernel_fn(x_test, x_train, {g!r})")
                test_nt = lay.test_nt(test_shape)
            if compute_cov:
                k_tt = lay.kernel_2d(
                    _kernel_attr(kernel_fn(x_test, None, "nngp", **kw_tt), "nngp",
                                 "kernel_fn(x_test, None)", name),
                    "kernel_fn(x_test, None, 'nngp')", test_nt, test_nt)
        else:
            test_nt = lay.nt_shape

        out = {}
        for g in names:
            reg = reg_of(g)
            if t is None:
                mean, cov = _ensemble_inf(g, reg, y_flat, k_dd, k_td, k_tt,
                                          compute_cov)
                lead = ()
            else:
                lead = t.shape
                tau = (learning_rate * t.reshape(-1) / n).astype(dtype)
                mean, cov = _ensemble_t(g, reg, tau, y_flat, k_dd, k_td, k_tt,
                                        compute_cov)
            mean = lay.unflatten(mean, test_nt, lead)
            out[g] = (Gaussian(mean, lay.unflatten_cov(cov, test_nt, lead))
                      if compute_cov else mean)
        return _named(out, names, single)

    return predict_fn


def _ensemble_inf(g, reg, y_flat, k_dd, k_td, k_tt, compute_cov):
    """``t = ∞``: train set ``N(Y, 0)``; test set the `gp_inference` posterior."""
    if k_td is None:
        return y_flat, (jnp.zeros_like(reg.k) if compute_cov else None)
    mean = _dot(k_td[g], reg.cho_solve(y_flat))
    if not compute_cov:
        return mean, None
    a = reg.cho_solve(k_td[g].T)
    if g == "nngp":
        return mean, k_tt - _dot(k_td["nngp"], a)
    cross = _dot(k_td["nngp"], a)
    return mean, k_tt + _dot(a.T, _dot(k_dd("nngp"), a)) - cross - cross.T


def _ensemble_t(g, reg, tau, y_flat, k_dd, k_td, k_tt, compute_cov):
    """Finite times ``tau = η t / n`` (flat ``(T,)``) in the eigenbasis."""
    evals, evecs = reg.eigh()
    vy = _dot(evecs.T, y_flat)
    if k_td is None:
        mean = -jnp.einsum("pi,ti,ic->tpc", evecs, _expm1(evals, tau), vy,
                           precision=_HP)
        if not compute_cov:
            return mean, None
        if g == "nngp":
            d = evals * (1. + _expm1(evals, 2 * tau))  # λ e^{-2λτ}, 0 if λ <= 0
            d = jnp.where(evals > 0, d, 0.)
            return mean, jnp.einsum("pi,ti,qi->tpq", evecs, d, evecs, precision=_HP)
        e = jnp.einsum("pi,ti,qi->tpq", evecs, 1. + _expm1(evals, tau), evecs,
                       precision=_HP)
        return mean, jnp.einsum("tpr,rs,tqs->tpq", e, k_dd("nngp"), e, precision=_HP)

    kv = _dot(k_td[g], evecs)
    neg = -_expm1_over(evals, tau)  # diag of Θ^{-1}(I - e^{-Θτ}) in the eigenbasis
    mean = jnp.einsum("qi,ti,ic->tqc", kv, neg, vy, precision=_HP)
    if not compute_cov:
        return mean, None
    if g == "nngp":
        d = -_expm1_over(evals, 2 * tau)
        return mean, k_tt - jnp.einsum("pi,ti,qi->tpq", kv, d, kv, precision=_HP)
    # M_t = A_t Θ_dt, in the eigenbasis: V diag(neg) (Θ_td V)ᵀ.
    m = jnp.einsum("pi,ti,qi->tpq", evecs, neg, kv, precision=_HP)
    cross = jnp.einsum("qp,tpr->tqr", k_td["nngp"], m, precision=_HP)
    quad = jnp.einsum("tpq,pr,trs->tqs", m, k_dd("nngp"), m, precision=_HP)
    return mean, k_tt + quad - cross - jnp.swapaxes(cross, 1, 2)


# ----------------------------------------------------------------------------
# max_learning_rate
# ----------------------------------------------------------------------------


def max_learning_rate(ntk_train_train, y_train_size: Optional[int] = None,
                      momentum: float = 0., eps: float = 1e-12):
    r"""The largest stable learning rate of (momentum) GD on the MSE loss.

    Full-batch gradient descent on ``||f(X) - Y||²/(2n)`` of a linearised
    network iterates ``r ← (I - η Θ / n) r`` on the residual; it converges iff
    ``η λ_max(Θ) / n < 2``. Heavy-ball momentum β (``v ← β v - η g``)
    converges iff ``η λ_max / n < 2 (1 + β)`` (Goh 2017, "Why momentum really
    works"). Hence

        η_max = 2 (1 + β) n / (λ_max(Θ) + eps).

    Args:
      ntk_train_train: ``(N, N)`` NTK on the training inputs (or an
        interleaved ``(N, N, K, K, ...)`` kernel).
      y_train_size: ``n = y_train.size``, the loss normalisation; default the
        side of the (flattened) kernel, right for ``trace_axes=()``. With the
        default ``trace_axes=(-1,)`` and ``K`` outputs pass ``N · K``.
      momentum: β ≥ 0.
      eps: guards against a zero kernel.

    Returns:
      ``η_max`` (a Python float for concrete input, else a scalar array).

    Example:
      >>> lr = predict.max_learning_rate(kernel_fn(x_train, None, "ntk"),
      ...                                y_train_size=y_train.size)
    """
    name = "max_learning_rate"
    k = _plain_kernel(ntk_train_train, "ntk_train_train", name)
    if k.ndim == 0 or k.ndim % 2:
        raise ValueError(f"{name}: `ntk_train_train` must be a square (N, N) "
                         f"kernel (or interleaved (N, N, K, K, ...)); got shape "
                         f"{tuple(k.shape)}.")
    k2 = _make_2d(k)
    if k2.shape[0] != k2.shape[1]:
        raise ValueError(f"{name}: `ntk_train_train` must be square; got shape "
                         f"{tuple(k.shape)}.")
    if y_train_size is None:
        factor = k2.shape[0]
    else:
        if not (isinstance(y_train_size, (int, np.integer)) and y_train_size > 0):
            raise ValueError(f"{name}: `y_train_size` must be a positive int; "
                             f"got {y_train_size!r}.")
        factor = int(y_train_size)
    _check_nonnegative(momentum, "momentum", name)
    lam_max = jnp.linalg.eigvalsh(k2)[-1]
    lr = 2 * (1 + momentum) * factor / (lam_max + eps)
    return float(lr) if _concrete(lr) else lr


# ----------------------------------------------------------------------------
# helpers: shapes and layouts
# ----------------------------------------------------------------------------


class _Layout:
    """Maps outputs and kernels with ``trace_axes`` to 2-D matrices.

    Outputs ``y`` (any rank) become ``(P, C)``: ``P`` the product of the
    non-trace axes, ``C`` of the trace axes. A kernel with the interleaved
    shape ``(A0, B0, A1, B1, ...)`` over the non-trace axes becomes
    ``(A0·A1·..., B0·B1·...)``.
    """

    def __init__(self, y_shape, trace_axes, name):
        y_shape = tuple(y_shape)
        d = len(y_shape)
        if d < 1:
            raise ValueError(f"{name}: `y_train` must have a batch axis; got a "
                             f"scalar.")
        try:
            axes = tuple(sorted({int(a) % d for a in trace_axes}))
            bad = [a for a in trace_axes if not -d <= int(a) < d]
        except TypeError:
            raise ValueError(f"{name}: `trace_axes` must be a tuple of ints; got "
                             f"{trace_axes!r}.") from None
        if bad or len(axes) != len(tuple(trace_axes)):
            raise ValueError(f"{name}: `trace_axes` must be distinct axes of "
                             f"`y_train` (ndim {d}); got {tuple(trace_axes)}.")
        if 0 in axes:
            raise ValueError(f"{name}: `trace_axes` cannot contain the batch axis "
                             f"0 of `y_train`; got {tuple(trace_axes)}.")
        self.name, self.ndim, self.trace = name, d, axes
        self.non_trace = tuple(a for a in range(d) if a not in axes)
        self.nt_shape = tuple(y_shape[a] for a in self.non_trace)
        self.tr_shape = tuple(y_shape[a] for a in axes)
        self.n_tr = int(np.prod(self.tr_shape, dtype=int))

    def flatten(self, y):
        """``y``-like ``(.., *nt, .., *tr)`` -> ``(P, C)``."""
        d = self.ndim
        y = jnp.moveaxis(y, self.trace, tuple(range(d - len(self.trace), d)))
        return y.reshape((-1, self.n_tr))

    def unflatten(self, flat, nt_shape, lead=()):
        """``(*lead, P, C)`` -> ``(*lead, y-like)`` with non-trace shape ``nt_shape``."""
        L = len(lead)
        x = flat.reshape(tuple(lead) + tuple(nt_shape) + self.tr_shape)
        src = tuple(L + len(nt_shape) + i for i in range(len(self.trace)))
        dst = tuple(L + a for a in self.trace)
        return jnp.moveaxis(x, src, dst)

    def unflatten_cov(self, cov, nt_shape, lead=()):
        """``(*lead, P, P)`` -> ``(*lead, A0, A0, A1, A1, ...)``."""
        L, n = len(lead), len(nt_shape)
        x = cov.reshape(tuple(lead) + tuple(nt_shape) * 2)
        perm = tuple(range(L)) + tuple(
            L + i + j * n for i in range(n) for j in range(2))
        return jnp.transpose(x, perm)

    def test_nt(self, test_shape):
        """Non-trace part of a test-output shape."""
        return tuple(test_shape[a] for a in self.non_trace)

    def kernel_2d(self, k, arg, rows, cols):
        k = jnp.asarray(k)
        want = tuple(x for pair in zip(rows, cols) for x in pair)
        if tuple(k.shape) != want:
            raise ValueError(
                f"{self.name}: `{arg}` must have shape {want} (the kernel over "
                f"the non-trace output axes, interleaved, trace_axes="
                f"{self.trace}); got {tuple(k.shape)}.")
        return _make_2d(k)

    def train_kernel_2d(self, k, arg):
        return self.kernel_2d(k, arg, self.nt_shape, self.nt_shape)

    def test_kernel_2d(self, k, arg):
        """Check a test-train kernel; return it 2-D and the test-output shape."""
        k = jnp.asarray(k)
        n = len(self.nt_shape)
        if k.ndim != 2 * n or tuple(k.shape[1::2]) != self.nt_shape:
            want = ("(N_test, " + ", ".join(
                [str(self.nt_shape[0])] + [f"T{i}, {s}" for i, s in
                                           enumerate(self.nt_shape[1:], 1)]) + ")")
            raise ValueError(
                f"{self.name}: `{arg}` must have shape {want}, i.e. test axes "
                f"interleaved with the training-kernel axes {self.nt_shape} "
                f"(trace_axes={self.trace}); got {tuple(k.shape)}.")
        test_nt = tuple(k.shape[0::2])
        shape = [0] * self.ndim
        for a, s in zip(self.non_trace, test_nt):
            shape[a] = s
        for a, s in zip(self.trace, self.tr_shape):
            shape[a] = s
        return _make_2d(k), tuple(shape)


def _make_2d(k):
    """Interleaved ``(A0, B0, A1, B1, ...)`` -> ``(A0·A1·…, B0·B1·…)``."""
    n = k.ndim // 2
    perm = tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2))
    k = jnp.transpose(k, perm)
    rows = int(np.prod(k.shape[:n], dtype=int))
    return k.reshape(rows, -1)


def _dot(a, b):
    return jnp.matmul(a, b, precision=_HP)


def _expm1(evals, tau):
    """``expm1(-λ τ)`` ``(T, P)``; 0 for ``λ ≤ 0`` (untrained directions)."""
    pos = evals > 0
    lam = jnp.where(pos, evals, 1.)
    return jnp.where(pos, jnp.expm1(-lam * tau[:, None]), 0.)


def _expm1_over(evals, tau):
    """``expm1(-λ τ) / λ``; 0 for ``λ ≤ 0`` (pseudo-inverse convention)."""
    pos = evals > 0
    lam = jnp.where(pos, evals, 1.)
    return jnp.where(pos, jnp.expm1(-lam * tau[:, None]) / lam, 0.)


def _pack(train, test):
    if train is not None and test is not None:
        return train, test
    return train if test is None else test


_GAUSSIANS: dict = {}


def _named(out: dict, names: tuple, single: bool):
    if single:
        return out[names[0]]
    if names not in _GAUSSIANS:
        _GAUSSIANS[names] = collections.namedtuple("Gaussians", names)
    return _GAUSSIANS[names](*(out[g] for g in names))


def _canonical_get(get, allowed, name, default):
    if get is None:
        return tuple(default), False
    single = isinstance(get, str)
    names = (get,) if single else get
    if not isinstance(names, (tuple, list)) or not names:
        raise ValueError(f"{name}: `get` must be None, one of {allowed} or a "
                         f"non-empty tuple of them; got {get!r}.")
    names = tuple(str(g).lower() for g in names)
    for g in names:
        if g not in allowed:
            raise ValueError(f"{name}: unknown `get` name {g!r}; expected one of "
                             f"{allowed}.")
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: `get` names must be distinct; got {get!r}.")
    return names, single


def _merge_kwargs(train_kwargs, test_kwargs, name):
    """kwargs of ``kernel_fn`` for (test, train) and (test, test), as NT.

    Test kwargs override train ones for the test-test kernel; for test-train,
    a pair ``(a, b)`` of arrays given for both becomes ``(test[0], train[0])``
    (per-input arrays such as masks); other values must agree.
    """
    kw_td, kw_tt = dict(train_kwargs), dict(train_kwargs)
    for key, v_tt in test_kwargs.items():
        if key in train_kwargs:
            v_dd = train_kwargs[key]
            pair = lambda v: isinstance(v, tuple) and len(v) == 2 and all(
                hasattr(x, "shape") for x in v)
            if pair(v_dd) and pair(v_tt):
                v_td = (v_tt[0], v_dd[0])
            elif hasattr(v_dd, "shape") and hasattr(v_tt, "shape"):
                v_td = v_tt
            elif v_dd is not v_tt and v_dd != v_tt:
                raise ValueError(f"{name}: keyword argument `{key}` of "
                                 f"`kernel_fn` is {v_dd!r} for the training "
                                 f"kernel but {v_tt!r} for the test kernel.")
            else:
                v_td = v_tt
        else:
            v_td = v_tt
        kw_td[key], kw_tt[key] = v_td, v_tt
    return kw_td, kw_tt


# ----------------------------------------------------------------------------
# helpers: checks
# ----------------------------------------------------------------------------


def _as_float_array(x, arg, name):
    if not hasattr(x, "shape"):
        try:
            x = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(f"{name}: `{arg}` must be an array; got "
                             f"{type(x).__name__}.") from e
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.number):
        raise ValueError(f"{name}: `{arg}` must be numeric; got dtype {x.dtype}.")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def _plain_kernel(k, arg, name):
    if k is None:
        raise ValueError(f"{name}: `{arg}` is required; got None.")
    if not hasattr(k, "shape") and (hasattr(k, "ntk") or hasattr(k, "nngp")):
        raise ValueError(f"{name}: `{arg}` must be a kernel array; got a "
                         f"{type(k).__name__} record — pass its `.ntk` (network "
                         f"trained end to end) or `.nngp` (readout only).")
    return _as_float_array(k, arg, name)


def _has_kernel(k, g):
    return not hasattr(k, "shape") and getattr(k, g, None) is not None


def _kernel_attr(k, g, arg, name):
    """``k`` itself for arrays, else ``k.<g>`` (Kernel records, namedtuples)."""
    if k is None:
        raise ValueError(f"{name}: `{arg}` is required; got None.")
    if hasattr(k, "shape"):
        return _as_float_array(k, arg, name)
    v = getattr(k, g, None)
    if v is None:
        raise ValueError(f"{name}: `{arg}` has no `{g}` kernel (got "
                         f"{type(k).__name__} with {g}=None or missing); compute "
                         f"it with get including {g!r}.")
    return _as_float_array(v, f"{arg}.{g}", name)


def _broadcast(x, shape, arg, name, what=None):
    x = _as_float_array(x, arg, name)
    try:
        ok = jnp.broadcast_shapes(x.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: `{arg}` must have shape {tuple(shape)} "
                         f"({what or 'the shape of y_train'}) or broadcast to "
                         f"it; got {tuple(x.shape)}.")
    return jnp.broadcast_to(x, shape)


def _check_requests(fx_train_0, fx_test_0, k_test_train, name):
    if fx_train_0 is None and fx_test_0 is None:
        raise ValueError(f"{name}: both `fx_train_0` and `fx_test_0` are None; "
                         f"nothing to predict.")
    if fx_test_0 is not None and k_test_train is None:
        raise ValueError(f"{name}: test predictions (`fx_test_0` given) need "
                         f"`k_test_train`, the (N_test, N_train) kernel; got None.")


def _concrete_value(x):
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError,
            jax.errors.ConcretizationTypeError):
        return None


def _concrete(x) -> bool:
    """Whether every leaf holds values (is not a tracer); reads one entry."""
    return all(_concrete_value(leaf if leaf.size == 0 else
                               leaf[(0,) * leaf.ndim]) is not None
               for leaf in jax.tree_util.tree_leaves(x))


def _check_positive(v, arg, name):
    c = _concrete_value(v)
    if c is not None and not (c.size == 1 and float(c) > 0):
        raise ValueError(f"{name}: `{arg}` must be a positive number; got {v!r}.")


def _check_nonnegative(v, arg, name):
    c = _concrete_value(v)
    if c is not None and not (c.size == 1 and float(c) >= 0):
        raise ValueError(f"{name}: `{arg}` must be a number >= 0; got {v!r}.")


def _check_times(t, name, finite=False):
    t = _as_float_array(t, "t", name)
    c = _concrete_value(t)
    if c is not None:
        if np.any(np.isnan(c)) or np.any(c < 0):
            bad = c[np.isnan(c) | (c < 0)].ravel()
            raise ValueError(f"{name}: `t` must be >= 0 (training time); got "
                             f"{bad[:5].tolist()}{' ...' if bad.size > 5 else ''}.")
        if finite and not np.all(np.isfinite(c)):
            raise ValueError(f"{name}: `t` must be finite; got {c.ravel()[:5]}.")
    return t


def _check_solved(states, name, max_steps):
    leaves = [_concrete_value(x) for x in jax.tree_util.tree_leaves(states)]
    if all(v is not None for v in leaves) and not all(
            np.all(np.isfinite(v)) for v in leaves):
        raise ValueError(f"{name}: the ODE solver did not reach the requested "
                         f"time(s): the outputs became non-finite or more than "
                         f"max_steps={max_steps} steps were needed. Check the loss "
                         f"and kernel, lower `t` or raise `max_steps`.")


# ----------------------------------------------------------------------------
# helpers: regularised decompositions with clear failures
# ----------------------------------------------------------------------------


class _Regularised:
    """``K + diag_reg·I`` with its cached Cholesky factor and eigendecomposition.

    Decompositions are computed outside any surrounding trace when ``K`` is
    concrete (``jax.ensure_compile_time_eval``) and then cached; a traced ``K``
    (e.g. under ``jax.grad`` over kernel hyperparameters) is decomposed anew in
    each call and cannot be checked for definiteness.
    """

    def __init__(self, k, diag_reg, absolute, name, arg):
        self.k, self.diag_reg, self.absolute = k, diag_reg, absolute
        self.name, self.arg = name, arg
        self._cho = self._eig = None

    def _reg_matrix(self):
        k = self.k
        n = k.shape[0]
        scale = 1. if self.absolute else jnp.trace(k) / n
        return k + (self.diag_reg * scale) * jnp.eye(n, dtype=k.dtype)

    def cho_solve(self, b):
        cho = self._cho
        if cho is None:
            with jax.ensure_compile_time_eval():
                cho = jsl.cho_factor(self._reg_matrix(), lower=True)
            c = _concrete_value(cho[0])
            if c is not None:
                if not np.all(np.isfinite(c)):
                    raise self._error("its Cholesky factorisation failed")
                self._cho = cho
        return jsl.cho_solve(cho, b)

    def eigh(self):
        eig = self._eig
        if eig is None:
            with jax.ensure_compile_time_eval():
                evals, evecs = jnp.linalg.eigh(self._reg_matrix())
            c = _concrete_value(evals)
            if c is not None:
                eps = np.finfo(c.dtype).eps
                tol = 10 * max(c.shape[0], 10) * eps * max(np.abs(c).max(), 1e-300)
                if not np.all(np.isfinite(c)) or c[0] < -tol:
                    raise self._error("it has a clearly negative eigenvalue")
                eig = (evals, evecs)
                self._eig = eig
            else:
                eig = (evals, evecs)
        return eig

    def _error(self, what):
        k = np.asarray(self.k, dtype=np.float64)
        n = k.shape[0]
        if not np.all(np.isfinite(k)):
            return ValueError(f"{self.name}: `{self.arg}` has non-finite entries "
                              f"({int((~np.isfinite(k)).sum())} of {k.size}).")
        ev = np.linalg.eigvalsh((k + k.T) / 2)
        mean_diag = float(np.trace(k)) / n
        reg_abs = float(self.diag_reg) * (1. if self.absolute else mean_diag)
        eps = np.finfo(np.asarray(self.k).dtype).eps
        # Lift the smallest eigenvalue well above the round-off of a
        # factorisation in the kernel's precision (condition number <= 1/√eps).
        floor = max(100 * n * eps, np.sqrt(eps))
        need = max(-ev[0], 0.) + floor * max(abs(ev[-1]), 1e-300)
        suggest_abs = 10. ** math.ceil(math.log10(need))
        if self.absolute:
            hint = (f"diag_reg={suggest_abs:.0e} (absolute, as "
                    f"diag_reg_absolute_scale=True)")
        else:
            rel = 10. ** math.ceil(math.log10(suggest_abs / max(abs(mean_diag),
                                                                 1e-300)))
            hint = (f"diag_reg={rel:.0e} (relative to the mean diagonal "
                    f"{mean_diag:.3g}; diag_reg_absolute_scale=False)")
        return ValueError(
            f"{self.name}: the kernel `{self.arg}` plus diag_reg={self.diag_reg} "
            f"is not positive definite ({what}): its smallest eigenvalue is "
            f"{ev[0] + reg_abs:.3g} (largest {ev[-1] + reg_abs:.3g}). Duplicate "
            f"or nearly collinear inputs make kernels singular; add diagonal "
            f"regularisation, e.g. {hint}.")
