r"""An adaptive Dormand–Prince (RK5(4)) ODE integrator in pure, public JAX.

`odeint` solves :math:`dy/dt` = ``func(y, t, *args)`` for a pytree ``y`` and returns
the solution at the requested times. It is what `ntk.predict.gradient_descent`
uses for function-space training with losses that have no closed form (e.g.
cross-entropy), so it is kept small and dependency-free
(``jax.experimental.ode`` is off-limits by the project's rules).

Method. The explicit embedded Runge–Kutta pair of Dormand & Prince (1980),
"A family of embedded Runge-Kutta formulae", J. Comp. Appl. Math. 6(1): a
5th-order solution is propagated, the difference to the embedded 4th-order one
estimates the local error, and the step :math:`h` is accepted when

.. math::

    \mathrm{err} = \operatorname{rms}_i\Big(e_i \,/\, \big(\mathtt{atol}
    + \mathtt{rtol} \cdot \max(|y_i|, |y_{\mathrm{new},i}|)\big)\Big) \le 1,

then rescaled by :math:`\operatorname{clip}(0.9 \cdot \mathrm{err}^{-1/5}, 0.2, 10)`
(Hairer, Nørsett & Wanner, "Solving ODEs I", §II.4). The last stage is the
derivative at the new point ("first same as last"), so an accepted step costs six
evaluations of ``func``.
Output times are hit exactly by shortening the step that would overshoot them;
no interpolation is involved.

Differentiation. Reverse mode (``jax.grad``) uses the adjoint method
(Pontryagin; Chen et al. 2018, "Neural ordinary differential equations"): the
cotangent :math:`a(t) = \partial L / \partial y(t)` obeys
:math:`da/dt = -a^\top \partial \mathtt{func} / \partial y` and
:math:`\partial L / \partial \mathtt{args} = \int a^\top \partial \mathtt{func} /
\partial \mathtt{args}\, dt`; both are integrated backwards in time
together with :math:`y`, restarting :math:`y` from the stored solution at every output
time. Forward mode (``jax.jvp``) is not supported, as for any
``jax.custom_vjp`` function.

Everything runs inside ``jax.lax.while_loop``/``scan``: ``odeint`` works under
``jax.jit`` and ``jax.vmap``; compiled solvers are cached per ``func`` object.

Example:
    >>> import jax.numpy as jnp
    >>> from ntk.ode import odeint
    >>> ys = odeint(lambda y, t, k: -k * y, jnp.ones(2), jnp.array([0., 1.]), 2.)
    >>> # ys[1] ≈ exp(-2)
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ntk import _checks

__all__ = ["odeint"]

# Dormand–Prince 5(4) tableau: nodes C, stage matrix A (row i builds stage i+1),
# 5th-order weights B5 (also the last row of A: FSAL) and error weights E = B5 - B4.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4))


def odeint(
    func: Callable,
    y0,
    ts,
    *args,
    rtol: float = 1.4e-8,
    atol: float = 1.4e-8,
    max_steps: int = 100_000,
):
    r"""Solve :math:`dy/dt` = ``func(y, t, *args)`` from ``y(ts[0]) = y0``.

    Args:
      func: ``func(y, t, *args) -> dy/dt`` with the pytree structure of ``y``.
        It may close over arrays (also traced ones); they are differentiated
        through like ``args``.
      y0: initial state, any pytree of float arrays.
      ts: ``(T,)`` non-decreasing, finite times; ``y0`` is the state at
        ``ts[0]``.
      *args: extra arguments of ``func`` (pytrees of arrays), differentiable.
      rtol, atol: relative and absolute local error tolerances.
      max_steps: maximal number of attempted steps over the whole run. If it
        is exceeded the remaining outputs are NaN (a traced function cannot
        raise); callers that see concrete values should check.

    Returns:
      The solution at ``ts``: ``y0``'s pytree with a leading axis of length
      ``T`` (``ys[0] == y0``).

    Raises:
      ValueError: if ``ts`` is not 1-D, or (when concrete) not finite and
        non-decreasing; if ``y0`` (when concrete) is not finite; if
        ``rtol``/``atol`` are not positive or ``max_steps`` is below 1.
      TypeError: if ``func`` is not callable, ``y0`` is not floating point or
        ``ts`` not numeric.

    Example:
      :math:`dy/dt = -k y` from :math:`y(0) = 1` is :math:`e^{-k t}`:

      >>> import jax.numpy as jnp, numpy as np
      >>> from ntk.ode import odeint
      >>> ys = odeint(lambda y, t, k: -k * y, jnp.ones(2), jnp.array([0., 0.5, 1.]), 2.)
      >>> ys.shape, round(float(ys[2, 0]), 4), round(float(np.exp(-2)), 4)   # (T, 2)
      ((3, 2), 0.1353, 0.1353)
    """
    name = "odeint"
    _checks.require_callable(func, "func", name, "a function func(y, t, *args)")
    _checks.require_positive(rtol, "rtol", name)
    _checks.require_positive(atol, "atol", name)
    max_steps = _checks.require_int(max_steps, "max_steps", name)
    ts = _checks.as_array(
        ts, "ts", name, ndim=1, finite=False, what="(T,), a non-empty 1-D array of times"
    )
    if ts.shape[0] < 1:
        raise ValueError(
            f"{name}: `ts` must be a non-empty 1-D array of times; got shape {tuple(ts.shape)}."
        )
    ts_np = _checks.concrete(ts)  # traced times: the caller answers for their order
    if ts_np is not None:
        if not np.all(np.isfinite(ts_np)):
            raise ValueError(f"{name}: `ts` must be finite; got {ts_np}.")
        if np.any(np.diff(ts_np) < 0):
            raise ValueError(f"{name}: `ts` must be non-decreasing; got {ts_np}.")
    y0_flat, unravel = ravel_pytree(y0)
    if not jnp.issubdtype(y0_flat.dtype, jnp.floating):
        raise TypeError(f"{name}: `y0` must hold floating-point arrays; got dtype {y0_flat.dtype}.")
    _checks.require_finite(y0_flat, "y0", name)
    ts = ts.astype(y0_flat.dtype)
    spec = (
        jax.tree_util.tree_structure(y0),
        tuple((jnp.shape(x), jnp.result_type(x)) for x in jax.tree_util.tree_leaves(y0)),
    )
    out = jax.eval_shape(func, y0, ts[0], *args)
    want = [shape for shape, _ in spec[1]]
    got = [o.shape for o in jax.tree_util.tree_leaves(out)]
    if jax.tree_util.tree_structure(out) != spec[0] or got != want:  # type: ignore[operator]
        raise ValueError(
            f"{name}: `func(y, t, *args)` must return dy/dt with the structure and "
            f"shapes of `y0`, {want}; got {got}."
        )
    flat_func = _flat_func(func, spec, unravel)

    # Hoist arrays that `func` closes over into explicit arguments so that the
    # custom VJP differentiates with respect to them too.
    converted, consts = jax.closure_convert(flat_func, y0_flat, ts[0], *args)
    ys = _odeint_jit(
        converted, float(rtol), float(atol), int(max_steps), y0_flat, ts, *args, *consts
    )
    return jax.vmap(unravel)(ys)


_FLAT_FUNCS: dict = {}


def _flat_func(func, spec, unravel):
    """``func`` on flat vectors; one object per (func, state layout), so that
    `jax.closure_convert` and the jit cache recognise repeated calls."""
    key = (func, spec)
    if key not in _FLAT_FUNCS:
        if len(_FLAT_FUNCS) > 256:
            _FLAT_FUNCS.clear()

        def flat_func(y, t, *a):
            return ravel_pytree(func(unravel(y), t, *a))[0]

        _FLAT_FUNCS[key] = flat_func
    return _FLAT_FUNCS[key]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _odeint_jit(func, rtol, atol, max_steps, y0, ts, *args):
    return _odeint(func, rtol, atol, max_steps, y0, ts, *args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _odeint(func, rtol, atol, max_steps, y0, ts, *args):
    return _solve(lambda y, t: func(y, t, *args), y0, ts, rtol, atol, max_steps)


def _odeint_fwd(func, rtol, atol, max_steps, y0, ts, *args):
    ys = _odeint(func, rtol, atol, max_steps, y0, ts, *args)
    return ys, (ys, ts, args)


def _odeint_bwd(func, rtol, atol, max_steps, res, g):
    ys, ts, args = res
    n_y = ys.shape[1]
    args_flat, unravel_args = ravel_pytree(args)

    def f_flat_args(y, t, a_flat):
        return func(y, t, *unravel_args(a_flat))

    # Backward integration in reversed time s = -t of z = (y, a, a_args):
    # dy/ds = -f, da/ds = aᵀ ∂f/∂y, da_args/ds = aᵀ ∂f/∂args.
    def aug(z, s):
        y, a = z[:n_y], z[n_y : 2 * n_y]
        dy, vjp = jax.vjp(lambda y_, p_: f_flat_args(y_, -s, p_), y, args_flat)
        a_y, a_p = vjp(a)
        return jnp.concatenate([-dy, a_y, a_p])

    def interval(carry, i):
        a, a_p, failed = carry
        a = a + g[i]
        z0 = jnp.concatenate([ys[i], a, a_p])
        z1 = _solve(aug, z0, jnp.stack([-ts[i], -ts[i - 1]]), rtol, atol, max_steps)[1]
        failed = failed | ~jnp.all(jnp.isfinite(z1))
        return (z1[n_y : 2 * n_y], z1[2 * n_y :], failed), None

    a0 = jnp.zeros_like(ys[0])
    ap0 = jnp.zeros_like(args_flat)
    idx = jnp.arange(ys.shape[0] - 1, 0, -1)
    (a, a_p, failed), _ = jax.lax.scan(interval, (a0, ap0, False), idx)
    # An output time moves its own sample along the trajectory; the start time
    # moves the whole trajectory (∂y(t)/∂t0 = -∂y(t)/∂y0 · f(y0, t0)).
    fs = jax.vmap(lambda y, t: func(y, t, *args))(ys, ts)
    g_ts = jnp.sum(g * fs, axis=1)
    g_ts = g_ts.at[0].set(-jnp.dot(a, fs[0]))
    nan_if = lambda x: jnp.where(failed, jnp.nan, x)
    return (nan_if(a + g[0]), nan_if(g_ts), *jax.tree_util.tree_map(nan_if, unravel_args(a_p)))


_odeint.defvjp(_odeint_fwd, _odeint_bwd)


def _rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def _initial_step(f, y0, t0, f0, rtol, atol):
    """A first step whose Euler error is about the tolerance (Hairer §II.4)."""
    scale = atol + rtol * jnp.abs(y0)
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    f1 = f(y0 + h0 * f0, t0 + h0)
    d2 = _rms((f1 - f0) / scale) / h0
    big = jnp.maximum(d1, d2)
    h1 = jnp.where(big <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / big) ** 0.2)
    return jnp.minimum(100 * h0, h1)


def _dopri_step(f, y, t, h, k1):
    """One Dormand–Prince step: (y_new, f(y_new), local error estimate)."""
    ks = [k1]
    for c, row in zip(_C[1:], _A):
        yi = y + h * sum(a * k for a, k in zip(row, ks))
        ks.append(f(yi, t + c * h))
    y_new = y + h * sum(b * k for b, k in zip(_B5, ks) if b != 0.0)
    k7 = f(y_new, t + h)
    ks.append(k7)
    err = h * sum(e * k for e, k in zip(_E, ks) if e != 0.0)
    return y_new, k7, err


def _solve(f, y0, ts, rtol, atol, max_steps):
    """Integrate flat ``dy/dt = f(y, t)``; returns ``(T, D)`` with ``ys[0] = y0``."""
    dtype = y0.dtype
    f0 = f(y0, ts[0])
    h0 = _initial_step(f, y0, ts[0], f0, rtol, atol)

    def to_next(carry, t_end):
        y, fy, t, h, n = carry

        def cond(c):
            y, fy, t, h, n = c
            # A non-finite state drives h to 0 or NaN: stop instead of looping.
            return (t < t_end) & (n < max_steps) & (h > 0)

        def body(c):
            y, fy, t, h, n = c
            remaining = t_end - t
            clamped = h >= remaining
            h_eff = jnp.where(clamped, remaining, h)
            y_new, f_new, err = _dopri_step(f, y, t, h_eff, fy)
            scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new))
            ratio = _rms(err / scale)
            ok = ratio <= 1.0
            factor = jnp.where(ratio == 0.0, 10.0, jnp.clip(0.9 * ratio**-0.2, 0.2, 10.0))
            factor = jnp.where(ok, factor, jnp.minimum(factor, 1.0))
            factor = jnp.where(jnp.isfinite(ratio), factor, 0.2)
            h_next = h_eff * factor
            # A step shortened only to land on t_end says nothing about the
            # natural step size: keep the larger one for the next interval.
            h_next = jnp.where(ok & clamped, jnp.maximum(h_next, h), h_next)
            t_new = jnp.where(clamped, t_end, t + h_eff)
            y, fy, t = jax.tree_util.tree_map(
                lambda new, old: jnp.where(ok, new, old), (y_new, f_new, t_new), (y, fy, t)
            )
            return y, fy, t, h_next.astype(dtype), n + 1

        y, fy, t, h, n = jax.lax.while_loop(cond, body, (y, fy, t, h, n))
        out = jnp.where(t < t_end, jnp.full_like(y, jnp.nan), y)
        return (y, fy, t, h, n), out

    carry = (y0, f0, ts[0], h0.astype(dtype), jnp.asarray(0, jnp.int32))
    _, ys = jax.lax.scan(to_next, carry, ts[1:])
    return jnp.concatenate([y0[None], ys], axis=0)
