"""`ntk.empirical.empirical_ntk_top_eigenvalues`: the top of the empirical NTK's
spectrum by matrix-free subspace iteration, checked against ``eigvalsh`` of the
kernel built explicitly (a closed form and a brute-force Jacobian)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ntk import stax
from ntk.empirical import empirical_ntk_top_eigenvalues


def test_top_eigenvalues_of_a_linear_model_are_those_of_its_closed_form_kernel():
    # f(x) = W_std <w, x> / sqrt(d) + b_std b  =>  Θ̂ = W_std² X Xᵀ / d + b_std² 1 1ᵀ;
    # d = 6 inputs give a rank-7 kernel, so a block of 2·3 = 6 leaves a gap
    # λ_7/λ_3 < 1 and 60 float64 iterations resolve the top 3 to round-off
    init_fn, apply_fn, _ = stax.Dense(1, W_std=1.5, b_std=0.5)
    x = jax.random.normal(jax.random.PRNGKey(0), (12, 6))
    _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    xn = np.asarray(x, np.float64)
    theta = 1.5**2 * xn @ xn.T / 6 + 0.5**2
    expected = np.linalg.eigvalsh(theta)[::-1][:3]
    got = empirical_ntk_top_eigenvalues(apply_fn, params, x, 3, 60, jax.random.PRNGKey(2))
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_chosen_output_gives_the_top_eigenvalues_of_its_own_jacobian_kernel():
    # two outputs: Θ̂ must be J_k J_kᵀ of output k only, not of the other or the sum
    init_fn, apply_fn, _ = stax.serial(
        stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(2, b_std=0.1)
    )
    x = jax.random.normal(jax.random.PRNGKey(3), (10, 3))
    _, params = init_fn(jax.random.PRNGKey(4), x.shape)
    jac = jax.jacrev(lambda p: apply_fn(p, x)[:, 1])(params)
    j = np.concatenate([np.asarray(a).reshape(10, -1) for a in jax.tree_util.tree_leaves(jac)], 1)
    expected = np.linalg.eigvalsh(j @ j.T)[::-1][:2]
    got = empirical_ntk_top_eigenvalues(apply_fn, params, x, 2, 60, jax.random.PRNGKey(5), output=1)
    np.testing.assert_allclose(got, expected, rtol=1e-8)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(count=11), r"`count` must be an int in \[1, 10\]"),
        (dict(iters=0), r"`iters` must be an int >= 1"),
        (dict(output=1), r"`output` must be an int in \[0, 0\]"),
    ],
)
def test_bad_arguments_are_rejected_by_name(kwargs, message):
    init_fn, apply_fn, _ = stax.Dense(1)
    x = np.ones((10, 2))
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    args = dict(count=2, iters=5, output=0) | kwargs
    with pytest.raises(ValueError, match=message):
        empirical_ntk_top_eigenvalues(
            apply_fn, params, x, args["count"], args["iters"], jax.random.PRNGKey(1), args["output"]
        )


def test_progress_sees_each_iteration_once_and_leaves_the_eigenvalues_unchanged():
    init_fn, apply_fn, _ = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(1))
    x = jax.random.normal(jax.random.PRNGKey(6), (8, 3))
    _, params = init_fn(jax.random.PRNGKey(7), x.shape)
    seen = []

    def progress(steps):
        for step in steps:
            seen.append(step)
            yield step

    args = (apply_fn, params, x, 2, 7, jax.random.PRNGKey(8))
    got = empirical_ntk_top_eigenvalues(*args, progress=progress)
    assert seen == list(range(1, 8))
    np.testing.assert_array_equal(got, empirical_ntk_top_eigenvalues(*args))


def test_progress_that_is_not_callable_is_rejected_by_name():
    init_fn, apply_fn, _ = stax.Dense(1)
    x = np.ones((4, 2))
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(TypeError, match="`progress` must be None or a wrapper"):
        empirical_ntk_top_eigenvalues(
            apply_fn, params, x, 1, 2, jax.random.PRNGKey(1), progress="tqdm"
        )
