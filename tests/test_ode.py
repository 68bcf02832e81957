"""Argument validation of `ntk.ode.odeint` (its numerics are tested in
tests/test_predict.py, next to the training dynamics that use it)."""

import jax.numpy as jnp
import numpy as np
import pytest

from ntk.ode import odeint


def _decay(y, t):
    return -y


_Y0, _TS = np.ones(2), np.array([0.0, 1.0])


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(func=3), TypeError, "`func` must be a function"),
        (dict(rtol=0.0), ValueError, "`rtol` must be a number > 0; got 0.0"),
        (dict(atol=-1e-9), ValueError, "`atol` must be a number > 0"),
        (dict(max_steps=0), ValueError, "`max_steps` must be an int >= 1; got 0"),
        (dict(max_steps=10.5), TypeError, "`max_steps` must be an int"),
        (dict(ts=np.zeros((2, 2))), ValueError, r"`ts` must have shape \(T,\)"),
        (dict(ts=np.zeros(0)), ValueError, "`ts` must be a non-empty 1-D array"),
        (dict(ts=np.array([0.0, np.nan])), ValueError, "`ts` must be finite"),
        (dict(ts=np.array([0.0, 2.0, 1.0])), ValueError, "`ts` must be non-decreasing"),
        (dict(ts=["0", "1"]), TypeError, "`ts` must be a numeric array"),
        (dict(y0=np.ones(2, np.int32)), TypeError, "`y0` must hold floating-point"),
        (dict(y0=np.array([1.0, np.inf])), ValueError, "`y0` must be finite; got 1 NaN/inf"),
    ],
)
def test_bad_arguments_are_rejected_by_name(kwargs, exc, message):
    args = dict(func=_decay, y0=_Y0, ts=_TS)
    args.update(kwargs)
    func, y0, ts = args.pop("func"), args.pop("y0"), args.pop("ts")
    with pytest.raises(exc, match=message):
        odeint(func, y0, ts, **args)


def test_valid_pytree_state_still_solves_exactly():
    # The checks must not change valid calls: y' = -y from a dict state.
    ys = odeint(lambda y, t: {"a": -y["a"]}, {"a": jnp.ones(2)}, _TS, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ys["a"][1], np.exp(-1.0) * np.ones(2), rtol=1e-8)


def test_func_returning_another_shape_than_y0_is_named():
    # It used to fail inside the solver with a broadcasting TypeError.
    with pytest.raises(
        ValueError,
        match=r"odeint: `func\(y, t, \*args\)` must return dy/dt .*\[\(3,\)\]; got \[\(2,\)\]",
    ):
        odeint(lambda y, t: jnp.ones(2), jnp.ones(3), jnp.array([0.0, 1.0]))
