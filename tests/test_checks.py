"""The shared argument checks (`ntk._checks`): messages, tolerances, tracing.

Every check must name the function and the argument, say what was expected
and what arrived, and skip value checks on traced values (a jitted function
cannot raise on data) while still checking concrete ones.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import _checks


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (
            lambda: _checks.require_positive(0.0, "lr", "f"),
            ValueError,
            r"f: `lr` must be a number > 0; got 0\.0",
        ),
        (lambda: _checks.require_positive(float("nan"), "lr", "f"), ValueError, "`lr`.*nan"),
        (lambda: _checks.require_positive(float("inf"), "lr", "f"), ValueError, "`lr`.*inf"),
        (lambda: _checks.require_positive("a", "lr", "f"), TypeError, "`lr`.*'a'"),
        (lambda: _checks.require_positive(True, "lr", "f"), TypeError, "`lr`.*True"),
        (
            lambda: _checks.require_positive(np.ones(2), "lr", "f"),
            ValueError,
            "`lr` must be a scalar",
        ),
        (
            lambda: _checks.require_real(1.0, "d", "f", low=0, high=1, high_open=True),
            ValueError,
            r"`d` must be a number in \[0, 1\)",
        ),
        (lambda: _checks.require_int(True, "k", "f"), TypeError, "`k` must be an int"),
        (lambda: _checks.require_int(2.0, "k", "f"), TypeError, "`k` must be an int"),
        (lambda: _checks.require_int(0, "k", "f"), ValueError, "`k` must be an int >= 1; got 0"),
        (
            lambda: _checks.require_one_of("x", ("a", "b"), "m", "f"),
            ValueError,
            "`m` must be one of 'a', 'b'; got 'x'",
        ),
        (lambda: _checks.as_array("abc", "x", "f"), TypeError, "`x` must be a numeric"),
        (lambda: _checks.as_array(np.ones(3, complex), "x", "f"), TypeError, "real"),
        (
            lambda: _checks.as_array(np.array([1.0, np.nan]), "x", "f"),
            ValueError,
            "`x` must be finite; got 1 NaN/inf entries of 2",
        ),
        (
            lambda: _checks.as_array(np.ones(3), "x", "f", ndim=2, what="(n, d)"),
            ValueError,
            r"`x` must have shape \(n, d\); got shape \(3,\)",
        ),
        (
            lambda: _checks.require_indices(np.array([0, 5]), 5, "idx", "f"),
            ValueError,
            r"`idx` must index rows 0\.\.4; got out-of-range entries \[5\]",
        ),
        (
            lambda: _checks.require_indices(np.array([0.0]), 5, "idx", "f"),
            TypeError,
            "integer indices",
        ),
        (lambda: _checks.require_callable(3, "fn", "f"), TypeError, "`fn` must be a function"),
        (
            lambda: _checks.require_key(0, "f", "it draws x"),
            TypeError,
            r"f: `key` must be a PRNG key \(it draws x\), e\.g\. jax\.random\.PRNGKey\(0\); got 0",
        ),
        (lambda: _checks.require_key(None, "f", "it draws x"), TypeError, "got None"),
    ],
)
def test_each_check_names_function_argument_and_value(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_symmetry_tolerance_is_relative_to_the_kernel_scale():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    k = 1e6 * (a @ a.T)  # large scale: the tolerance must scale with max|K|
    noisy = k.copy()
    noisy[0, 1] += 1e-9 * np.abs(k).max()  # round-off-sized asymmetry: accepted
    _checks.require_symmetric(noisy, "k", "f")
    wrong = k.copy()
    wrong[0, 1] += 1e-3 * np.abs(k).max()  # a real asymmetry: rejected
    with pytest.raises(ValueError, match=r"f: `k` must be symmetric.*entry \((0, 1|1, 0)\)"):
        _checks.require_symmetric(wrong, "k", "f")


def test_value_checks_skip_traced_values_and_run_on_concrete_ones():
    def f(lr, x):
        _checks.require_positive(lr, "lr", "f")
        _checks.require_finite(x, "x", "f")
        _checks.require_symmetric(x, "x", "f")
        return lr * x

    bad_x = jnp.array([[1.0, 2.0], [0.0, jnp.nan]])
    # Under jit the values are tracers: no error, the NaN flows through.
    out = jax.jit(f)(-1.0, bad_x)
    assert np.isnan(out[1, 1])
    with pytest.raises(ValueError, match="`lr` must be a number > 0"):
        f(-1.0, bad_x)
    with pytest.raises(ValueError, match="`x` must be finite"):
        f(1.0, bad_x)
    assert _checks.concrete(jnp.ones(2)) is not None
    assert jax.jit(lambda x: jnp.asarray(_checks.concrete(x) is None))(1.0)
