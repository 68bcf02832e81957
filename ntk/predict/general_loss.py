"""`gradient_descent`: function-space gradient flow on any loss (+ momentum).

The flow is integrated numerically by `ntk.ode.odeint`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from ntk.ode import odeint
from ntk import _checks
from ntk.predict._checks import (
    broadcast,
    check_requests,
    check_solved,
    check_times,
    initial_outputs,
    plain_kernel,
    train_problem,
)
from ntk.predict._layout import Layout
from ntk.predict._linalg import dot
from ntk.predict.results import ODEState, pack


def gradient_descent(
    loss: Callable,
    k_train_train,
    y_train,
    learning_rate: float = 1.0,
    momentum: Optional[float] = None,
    trace_axes: Sequence[int] = (-1,),
    *,
    rtol: float = 1.4e-8,
    atol: float = 1.4e-8,
    max_steps: int = 100_000,
):
    r"""Function-space gradient flow on any loss, integrated numerically.

    Without momentum (Lee et al. 2019, eq. 6), with time in units of steps of
    size :math:`\eta` (:math:`s = \eta t`):

    .. math::

        \frac{d f(X)}{ds} = -\Theta(X, X)\, \nabla_f L(f(X), Y), \qquad
        \frac{d f(x)}{ds} = -\Theta(x, X)\, \nabla_f L(f(X), Y).

    With momentum :math:`\beta` (heavy ball
    :math:`v \leftarrow \beta v - \eta g;\ f \leftarrow f + v`) the continuous limit
    keeps :math:`m = (\beta - 1)/\sqrt{\eta}` fixed and runs in :math:`s = \sqrt{\eta}\, t`:

    .. math::

        \frac{d f}{ds} = q, \qquad \frac{d q}{ds} = -\Theta\, \nabla_f L + m q,

    (so :math:`\eta` and ``t`` are no longer interchangeable; the ``ODEState``
    carries :math:`q`). The ODE is solved by `ntk.ode.odeint` (adaptive
    Dormand–Prince 5(4) with tolerances ``rtol``, ``atol``). For the MSE loss
    :math:`L = \lVert f - Y \rVert^2 / (2n)` this reproduces `gradient_descent_mse`.

    Args:
      loss: ``loss(fx_train, y_train) -> scalar``; e.g. cross-entropy
        ``lambda f, y: -jnp.mean(jax.nn.log_softmax(f) * y)``.
      k_train_train: ``(N, N)`` NTK on the training inputs (see
        `gradient_descent_mse` for other ``trace_axes``).
      y_train: ``(N, K)`` targets.
      learning_rate: :math:`\eta > 0`.
      momentum: :math:`\beta \in [0, 1]` or None for plain gradient descent.
      trace_axes: output axes along which the kernel is :math:`\otimes I`.
      rtol, atol, max_steps: ODE solver settings (keyword only; not in NT).

    Returns:
      ``predict_fn(t, fx_train_or_state_0=0., fx_test_0=None,
      k_test_train=None)``: ``t`` non-negative finite time(s) of any shape and
      order (``t = None``, i.e. :math:`\infty`, is refused: a general loss need not have
      a finite minimiser); the second argument is ``fx_train_0`` or a full
      `ODEState` (then an `ODEState` is returned). Returns ``fx_train_t``,
      ``fx_test_t`` or both, with ``t.shape`` as leading axes.

    Example:
      Two classes under the cross-entropy, which has no finite minimiser: the
      training loss keeps falling as ``t`` grows.

      >>> import jax, jax.numpy as jnp
      >>> from ntk import predict, stax
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
      >>> y_onehot = jax.nn.one_hot((x[:, 0] > 0).astype(int), 2)    # (N, K) = (8, 2)
      >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
      >>> cross_entropy = lambda f, y: -jnp.mean(jax.nn.log_softmax(f) * y)
      >>> predict_fn = predict.gradient_descent(cross_entropy, kernel_fn(x, None, "ntk"), y_onehot)
      >>> fx_train_t = predict_fn(jnp.array([1., 10., 100.]), jnp.zeros_like(y_onehot))
      >>> fx_train_t.shape                                          # (times, N, K)
      (3, 8, 2)
      >>> losses = [float(cross_entropy(f, y_onehot)) for f in fx_train_t]
      >>> losses[0] > losses[1] > losses[2]
      True
    """
    name = "gradient_descent"
    _checks.require_callable(loss, "loss", name, "a function loss(fx, y)")
    y_train, lay, k_dd = train_problem(k_train_train, y_train, trace_axes, name)
    _checks.require_positive(learning_rate, "learning_rate", name)
    _checks.require_positive(rtol, "rtol", name)
    _checks.require_positive(atol, "atol", name)
    max_steps = _checks.require_int(max_steps, "max_steps", name)
    dtype = jnp.result_type(k_dd.dtype, y_train.dtype)
    _check_scalar_loss(loss, y_train, dtype, name)
    time_scale, m = learning_rate, None
    if momentum is not None:
        _checks.require_real(momentum, "momentum", name, low=0, high=1)
        time_scale = learning_rate**0.5
        m = (momentum - 1.0) / time_scale
    dstate_dt = _gd_dynamics(loss, y_train.shape, lay.trace, m is not None)
    m_arg = jnp.asarray(0.0 if m is None else m, dtype)

    def predict_fn(t=None, fx_train_or_state_0=0.0, fx_test_0=None, k_test_train=None):
        as_state = isinstance(fx_train_or_state_0, ODEState)
        if as_state:
            if fx_test_0 is not None:
                raise ValueError(
                    f"{name}: `fx_test_0` must be None when an "
                    f"ODEState is passed (it holds fx_test)."
                )
            s0 = fx_train_or_state_0
            fx_train_0, fx_test_0 = s0.fx_train, s0.fx_test
            q_train_0, q_test_0 = s0.qx_train, s0.qx_test
        else:
            fx_train_0, q_train_0, q_test_0 = fx_train_or_state_0, None, None
        check_requests(fx_train_0, fx_test_0, k_test_train, name)
        if t is None:
            raise ValueError(
                f"{name}: `t` must be a finite time or array of "
                f"times; got None (t = ∞). A general loss may have "
                f"no finite minimiser; for the MSE loss use "
                f"`gradient_descent_mse`, which solves t = ∞ "
                f"exactly."
            )
        t, _ = check_times(t, name, finite=True)
        k_td, test_shape = None, None
        if k_test_train is not None:
            k_test_train = plain_kernel(k_test_train, "k_test_train", name)
            k_td, test_shape = lay.test_kernel_2d(k_test_train, "k_test_train")
        f0, g0 = initial_outputs(fx_train_0, fx_test_0, y_train.shape, test_shape, dtype, name)
        if m is None:
            if q_train_0 is not None or q_test_0 is not None:
                raise ValueError(
                    f"{name}: the ODEState has momentum variables "
                    f"(qx_train/qx_test) but `momentum` is None."
                )
            state0 = ODEState(f0, g0)
        else:
            qd = (
                jnp.zeros_like(f0)
                if q_train_0 is None
                else broadcast(q_train_0, y_train.shape, "qx_train", name).astype(dtype)
            )
            qt = None
            if g0 is not None:
                qt = (
                    jnp.zeros_like(g0)
                    if q_test_0 is None
                    else broadcast(q_test_0, test_shape, "qx_test", name).astype(dtype)
                )
            state0 = ODEState(f0, g0, qd, qt)

        flat_t = (t.reshape(-1) * time_scale).astype(dtype)
        order = jnp.argsort(flat_t)
        ts = jnp.concatenate([jnp.zeros((1,), dtype), flat_t[order]])
        states = odeint(
            dstate_dt,
            state0,
            ts,
            k_dd.astype(dtype),
            None if k_td is None else k_td.astype(dtype),
            y_train,
            m_arg,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
        )
        inverse = jnp.argsort(order)
        states = jax.tree_util.tree_map(
            lambda x: x[1:][inverse].reshape(t.shape + x.shape[1:]), states
        )
        check_solved(states, name, max_steps)
        if as_state:
            return states
        return pack(
            None if fx_train_0 is None else states.fx_train,
            None if fx_test_0 is None else states.fx_test,
        )

    return predict_fn


def _check_scalar_loss(loss, y_train, dtype, name):
    """The ODE follows ``-∇ loss``: ``loss`` must return one number, not
    one per example (e.g. ``optax.l2_loss`` before its mean)."""
    try:
        out = jax.eval_shape(loss, jax.ShapeDtypeStruct(y_train.shape, dtype), y_train)
    except Exception:  # noqa: BLE001 - the loss's own error surfaces when it runs
        return
    shapes = [o.shape for o in jax.tree_util.tree_leaves(out)]
    if shapes != [()]:
        raise TypeError(
            f"{name}: `loss(fx_train, y_train)` must return a scalar (e.g. the "
            f"mean over examples); got outputs of shape {shapes[0] if len(shapes) == 1 else shapes} "
            f"for fx_train of shape {tuple(y_train.shape)}."
        )


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
    lay = Layout(y_shape, trace, "gradient_descent")
    grad_loss = jax.grad(loss)

    def dstate_dt(state: ODEState, _, k_dd, k_td, y_train, m):
        g = lay.flatten(grad_loss(state.fx_train, y_train))
        df_train = lay.unflatten(-dot(k_dd, g), lay.nt_shape)
        df_test = None
        if state.fx_test is not None:
            df_test = lay.unflatten(-dot(k_td, g), lay.test_nt(state.fx_test.shape))
        if not momentum:
            return ODEState(df_train, df_test)
        dq_train = df_train + m * state.qx_train
        dq_test = None if df_test is None else df_test + m * state.qx_test
        return ODEState(state.qx_train, state.qx_test, dq_train, dq_test)

    return dstate_dt
