"""`ntk.empirical.empirical_ntk_row`: one row Θ̂(x₀, X) of the empirical NTK,
checked against a closed form (a linear model) and a brute-force Jacobian;
`empirical_ntk_vp_fn`: Θ̂(X1, X2)·v against the full kernel contracted with v."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from ntk.empirical import empirical_ntk_fn, empirical_ntk_row, empirical_ntk_vp_fn


@pytest.mark.parametrize("W_std,b_std", [(1.0, None), (1.7, 0.3)])
def test_row_of_a_linear_model_is_its_closed_form(W_std, b_std):
    # f(x) = W_std <w, x> / sqrt(d) + b_std b  =>  Θ(x0, x) = W_std² <x0, x>/d + b_std²
    init_fn, apply_fn, _ = stax.Dense(1, W_std=W_std, b_std=b_std)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    expected = W_std**2 * x @ x[0] / 3 + (b_std or 0.0) ** 2
    # float64 sums of 3 products: agreement to round-off
    np.testing.assert_allclose(empirical_ntk_row(apply_fn, params, x[0], x), expected, rtol=1e-10)


def test_row_of_one_output_matches_a_brute_force_jacobian():
    # two outputs: the row must use the chosen output's gradients only
    init_fn, apply_fn, _ = stax.serial(
        stax.Dense(6, b_std=0.1), stax.Relu(), stax.Dense(2, b_std=0.1)
    )
    g = jnp.linspace(0.0, 3.0, 5)
    x = jnp.stack([jnp.cos(g), jnp.sin(g)], axis=1)
    params = jax.jit(lambda k: init_fn(k, x.shape)[1])(jax.random.PRNGKey(2))

    @jax.jit
    def brute_and_row(p):
        out = []
        for k in (0, 1):
            jac = jax.jacrev(lambda q: apply_fn(q, x)[:, k])(p)  # noqa: B023
            flat = jnp.concatenate(
                [j.reshape(x.shape[0], -1) for j in jax.tree_util.tree_leaves(jac)], axis=1
            )
            out.append((flat @ flat[2], empirical_ntk_row(apply_fn, p, x[2], x, output=k)))
        return out

    for brute, row in brute_and_row(params):
        # float64: the two contractions differ only by summation order
        np.testing.assert_allclose(row, brute, rtol=1e-10)


def test_row_is_the_row_of_the_full_empirical_ntk_under_jit():
    init_fn, apply_fn, _ = stax.serial(stax.Dense(16), stax.Erf(), stax.Dense(1))
    x = jax.random.normal(jax.random.PRNGKey(3), (7, 4))
    _, params = init_fn(jax.random.PRNGKey(4), x.shape)
    full = empirical_ntk_fn(apply_fn)(x, None, params)
    row = jax.jit(lambda p: empirical_ntk_row(apply_fn, p, x[3], x))(params)
    np.testing.assert_allclose(row, full[3], rtol=1e-10)


@pytest.mark.parametrize(
    "call,exc,message",
    [
        (lambda f, p, x: empirical_ntk_row(3, p, x[0], x), TypeError, "`f` must be a function"),
        (lambda f, p, x: empirical_ntk_row(f, p, x[:2], x), ValueError, "`x0` must be one input"),
        (
            lambda f, p, x: empirical_ntk_row(f, p, x[0], x, output=1),
            ValueError,
            r"`output` must be an int in \[0, 0\]",
        ),
        (
            lambda f, p, x: empirical_ntk_row(lambda q, z: f(q, z)[None], p, x[0], x),
            ValueError,
            "`f` must map the 4 inputs",
        ),
    ],
)
def test_bad_arguments_are_rejected_by_name(call, exc, message):
    init_fn, apply_fn, _ = stax.Dense(1)
    x = jnp.ones((4, 3))
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(exc, match=message):
        call(apply_fn, params, x)


def _two_headed(params, x, scale=1.0):
    """A pytree output (two heads) with a keyword argument, as NT's apply_fns take."""
    h = jnp.tanh(x @ params["W"]) * scale
    return {"a": h @ params["A"], "b": jnp.sin(h @ params["B"])}


@pytest.mark.parametrize("same", [True, False], ids=["x2_none", "x2"])
def test_ntk_vector_product_is_the_full_kernel_contracted_with_the_cotangents(same):
    keys = jax.random.split(jax.random.PRNGKey(0), 7)
    params = {
        "W": jax.random.normal(keys[0], (5, 8)),
        "A": jax.random.normal(keys[1], (8, 3)),
        "B": jax.random.normal(keys[2], (8, 2)),
    }
    x1 = jax.random.normal(keys[3], (4, 5))
    x2 = None if same else jax.random.normal(keys[4], (6, 5))
    n2 = 4 if same else 6
    v = {"a": jax.random.normal(keys[5], (n2, 3)), "b": jax.random.normal(keys[6], (n2, 2))}
    kw = {"scale": 0.7}
    k = empirical_ntk_fn(_two_headed, trace_axes=())(x1, x2, params, **kw)
    got = jax.jit(lambda v: empirical_ntk_vp_fn(_two_headed, x1, x2, params, **kw)(v))(v)
    # The NTK of the pytree output is per head (the heads' cross blocks are
    # not returned), so Θ̂v of a head sums its own block and the cross term,
    # the latter from the Jacobians directly.
    j1 = jax.jacobian(lambda p: _two_headed(p, x1, **kw))(params)
    j2 = jax.jacobian(lambda p: _two_headed(p, x1 if same else x2, **kw))(params)

    def block(h1, h2):
        return sum(jnp.einsum("ia...,jb...->ijab", j1[h1][name], j2[h2][name]) for name in params)

    for head in ("a", "b"):
        want = sum(jnp.einsum("ijab,jb->ia", block(head, h2), v[h2]) for h2 in ("a", "b"))
        np.testing.assert_allclose(got[head], want, rtol=1e-10, atol=1e-12)
        # its own block is the kernel empirical_ntk_fn returns
        np.testing.assert_allclose(block(head, head), k[head], rtol=1e-10, atol=1e-12)


def test_ntk_vector_product_rejects_misshaped_cotangents_by_name():
    f = lambda W, x: x @ W  # noqa: E731
    vp = empirical_ntk_vp_fn(f, np.ones((2, 3)), None, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"empirical_ntk_vp_fn: the cotangents must be shaped"):
        vp(np.ones((2, 5)))
