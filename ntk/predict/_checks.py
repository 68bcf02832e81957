"""Argument validation specific to the predict functions.

Every failure is a ValueError or TypeError naming the public function and the
argument, what was expected and what arrived. Generic checks (arrays,
numbers, finiteness, symmetry, concreteness) come from `ntk._checks`; checks
on values run only on concrete arrays (not under a trace).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.predict._layout import Layout


def canonical_get(get, allowed, name, default):
    if get is None:
        return tuple(default), False
    single = isinstance(get, str)
    names = (get,) if single else get
    if not isinstance(names, (tuple, list)) or not names:
        raise ValueError(
            f"{name}: `get` must be None, one of {allowed} or a "
            f"non-empty tuple of them; got {get!r}."
        )
    names = tuple(str(g).lower() for g in names)
    for g in names:
        if g not in allowed:
            raise ValueError(f"{name}: unknown `get` name {g!r}; expected one of {allowed}.")
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: `get` names must be distinct; got {get!r}.")
    return names, single


def as_float_array(x, arg, name, finite=True):
    """A floating array; half precision (float16, bfloat16) comes back as
    float32, since XLA has no 16-bit eigh/Cholesky and a 16-bit solve of a
    kernel would keep about 3 digits."""
    x = _checks.as_array(x, arg, name, floating=True, finite=finite)
    if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)
    return x


def plain_kernel(k, arg, name):
    if k is None:
        raise ValueError(f"{name}: `{arg}` is required; got None.")
    if not hasattr(k, "shape") and (hasattr(k, "ntk") or hasattr(k, "nngp")):
        raise ValueError(
            f"{name}: `{arg}` must be a kernel array; got a "
            f"{type(k).__name__} record — pass its `.ntk` (network "
            f"trained end to end) or `.nngp` (readout only)."
        )
    return as_float_array(k, arg, name)


def train_problem(k_train_train, y_train, trace_axes, name):
    """``(y_train, layout, k_dd)``: the checked targets, their `Layout` and the
    training kernel as a 2-D matrix, what the one-network predictors
    (`gradient_descent_mse`, `gradient_descent`) start from."""
    y_train = as_float_array(y_train, "y_train", name)
    k_train_train = plain_kernel(k_train_train, "k_train_train", name)
    lay = Layout(y_train.shape, trace_axes, name)
    return y_train, lay, lay.train_kernel_2d(k_train_train, "k_train_train")


def initial_outputs(fx_train_0, fx_test_0, y_shape, test_shape, dtype, name):
    """``(f0, g0)``: the outputs at ``t = 0`` on the training and test inputs,
    broadcast to the shapes the targets and ``k_test_train`` imply; ``f0``
    defaults to zeros, ``g0`` to None (no test outputs asked for)."""
    f0 = (
        jnp.zeros(y_shape, dtype)
        if fx_train_0 is None
        else broadcast(fx_train_0, y_shape, "fx_train_0", name).astype(dtype)
    )
    g0 = None
    if fx_test_0 is not None:
        implied = "the test outputs implied by `k_test_train`"
        g0 = broadcast(fx_test_0, test_shape, "fx_test_0", name, implied).astype(dtype)
    return f0, g0


def has_kernel(k, g):
    return not hasattr(k, "shape") and getattr(k, g, None) is not None


def kernel_attr(k, g, arg, name):
    """``k`` itself for arrays, else ``k.<g>`` (Kernel records, namedtuples)."""
    if k is None:
        raise ValueError(f"{name}: `{arg}` is required; got None.")
    if hasattr(k, "shape"):
        return as_float_array(k, arg, name)
    v = getattr(k, g, None)
    if v is None:
        raise ValueError(
            f"{name}: `{arg}` has no `{g}` kernel (got "
            f"{type(k).__name__} with {g}=None or missing); compute "
            f"it with get including {g!r}."
        )
    return as_float_array(v, f"{arg}.{g}", name)


def broadcast(x, shape, arg, name, what=None):
    x = as_float_array(x, arg, name)
    try:
        ok = np.broadcast_shapes(x.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name}: `{arg}` must have shape {tuple(shape)} "
            f"({what or 'the shape of y_train'}) or broadcast to "
            f"it; got {tuple(x.shape)}."
        )
    return jax.numpy.broadcast_to(x, shape)


def check_requests(fx_train_0, fx_test_0, k_test_train, name):
    if fx_train_0 is None and fx_test_0 is None:
        raise ValueError(f"{name}: both `fx_train_0` and `fx_test_0` are None; nothing to predict.")
    if fx_test_0 is not None and k_test_train is None:
        raise ValueError(
            f"{name}: test predictions (`fx_test_0` given) need "
            f"`k_test_train`, the (N_test, N_train) kernel; got None."
        )
    if fx_test_0 is None and k_test_train is not None:
        # NT would return the training predictions only: never what was meant.
        raise ValueError(
            f"{name}: `k_test_train` is given but `fx_test_0` is None, which asks "
            "for no test predictions; pass the test outputs at t = 0 "
            "(fx_test_0=0. for a centred start)."
        )


def check_times(t, name, finite=False):
    """Times ``t >= 0`` (no NaN; no inf when ``finite``); returns ``(t, has_inf)``
    with ``has_inf`` False for traced times."""
    t = as_float_array(t, "t", name, finite=False)
    c = _checks.concrete(t)
    if c is None:
        return t, False
    if np.any(np.isnan(c)) or np.any(c < 0):
        bad = c[np.isnan(c) | (c < 0)].ravel()
        raise ValueError(
            f"{name}: `t` must be >= 0 (training time); got "
            f"{bad[:5].tolist()}{' ...' if bad.size > 5 else ''}."
        )
    has_inf = bool(np.any(np.isinf(c)))
    if finite and has_inf:
        raise ValueError(f"{name}: `t` must be finite; got {c.ravel()[:5]}.")
    return t, has_inf


def check_solved(states, name, max_steps):
    leaves = [_checks.concrete(x) for x in jax.tree_util.tree_leaves(states)]
    if all(v is not None for v in leaves) and not all(np.all(np.isfinite(v)) for v in leaves):
        raise ValueError(
            f"{name}: the ODE solver did not reach the requested "
            f"time(s): the outputs became non-finite or more than "
            f"max_steps={max_steps} steps were needed. Check the loss "
            f"and kernel, lower `t` or raise `max_steps`."
        )
