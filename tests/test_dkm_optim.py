"""Preconditioned L-BFGS for DKMs (ntk.dkm.optim).

The preconditioners are checked against metrics built independently by
autodiff (the KL's Fisher information J_Bᵀ (B⁻¹ ⊗ B⁻¹) J_B for B = A Aᵀ; the
Kronecker metric as a quadratic form in δG), and the optimiser against plain
optax L-BFGS: same optimum, fewer iterations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ntk import dkm
from ntk.data import digits
from ntk.dkm import optim
from ntk.dkm.objective import lower_factor


def _random_tree(P, num_layers, C=None, seed=0):
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 3 * num_layers + 3))

    def factor():
        return {
            "raw": 0.4 * jax.random.normal(next(keys), (P, P)),
            "log_diag": 0.5 * jax.random.normal(next(keys), (P,)),
        }

    tree = {"layers": [factor() for _ in range(num_layers)]}
    if C is not None:
        tree["output"] = {**factor(), "mean": jax.random.normal(next(keys), (P, C))}
    return tree


def _parameter_mask(tree):
    # Only the strict lower triangle of `raw` is a parameter (lower_factor).
    return (
        ravel_pytree(
            jax.tree.map(
                lambda a: (
                    jnp.tril(jnp.ones_like(a), -1)
                    if a.ndim == 2 and a.shape[0] == a.shape[1]
                    else jnp.ones_like(a)
                ),
                tree,
            )
        )[0]
        > 0
    )


def _fisher_matrix(tree, nu):
    """ν/2 · J_Bᵀ (B⁻¹ ⊗ B⁻¹) J_B per factor (weight C for an output factor),
    identity for a whitened mean: the Fisher information of the KL terms."""
    flat, unravel = ravel_pytree(tree)

    def grams(f):
        t = unravel(f)
        factors = [(l["raw"], l["log_diag"]) for l in t["layers"]]
        if "output" in t:
            factors.append((t["output"]["raw"], t["output"]["log_diag"]))
        return [lower_factor(r, d) @ lower_factor(r, d).T for r, d in factors]

    weights = list(nu) + ([tree["output"]["mean"].shape[1]] if "output" in tree else [])
    F = jnp.zeros((flat.size, flat.size))
    for B, J, w in zip(grams(flat), jax.jacfwd(grams)(flat), weights):
        Bi = jnp.linalg.inv(B)
        J = J.reshape(-1, flat.size)
        F = F + 0.5 * w * J.T @ jnp.kron(Bi, Bi) @ J
    if "output" in tree:
        mean_idx = (
            ravel_pytree(
                jax.tree.map(jnp.zeros_like, tree)
                | {
                    "output": {
                        **jax.tree.map(jnp.zeros_like, tree["output"]),
                        "mean": jnp.ones_like(tree["output"]["mean"]),
                    }
                }
            )[0]
            > 0
        )
        F = F + jnp.diag(mean_idx.astype(F.dtype))
    return F, unravel


@pytest.mark.parametrize("C", [None, 3], ids=["layers", "layers+output"])
def test_fisher_inverse_inverts_the_kl_fisher_information(C):
    nu = (0.5, 2.0)
    tree = _random_tree(P=5, num_layers=2, C=C)
    F, unravel = _fisher_matrix(tree, nu)
    mask = np.asarray(_parameter_mask(tree))
    g = jax.random.normal(jax.random.PRNGKey(7), (mask.size,)) * mask
    x = ravel_pytree(optim.fisher_inverse(tree, unravel(g), nu))[0]
    assert np.all(np.asarray(x)[~mask] == 0)
    np.testing.assert_allclose(
        np.asarray(F @ x)[mask], np.asarray(g)[mask], rtol=1e-9, atol=1e-9 * float(jnp.abs(g).max())
    )


def _kronecker_setup(P=5, seed=0):
    rng = np.random.default_rng(seed)
    raw, log_diag = jnp.asarray(rng.normal(size=(P, P))), jnp.asarray(0.4 * rng.normal(size=P))
    B = rng.normal(size=(P, P + 3))
    Q = jnp.asarray(B @ B.T / (P + 3) + 0.2 * np.eye(P))
    return raw, log_diag, Q


def _metric_matrix(raw, log_diag, quadratic_form):
    """Hessian in the stored coordinates (strict lower ``raw``, ``log_diag``)
    of ``q(δG)`` with ``δG`` the first-order change of ``C Cᵀ``."""
    flat, unravel = ravel_pytree({"raw": raw, "log_diag": log_diag})

    def q(d):
        def gram(f):
            p = unravel(f)
            C = lower_factor(p["raw"], p["log_diag"])
            return C @ C.T

        return quadratic_form(jax.jvp(gram, (flat,), (d,))[1])

    return jax.hessian(q)(jnp.zeros_like(flat)), unravel


def test_kronecker_inverse_inverts_the_separable_kronecker_metric():
    raw, log_diag, Q = _kronecker_setup()
    nu, w = 0.7, 2.5
    C = lower_factor(raw, log_diag)
    A = optim.kronecker_factor(C, Q, nu, w)
    # Module doc: q(δG) = ½ tr(A⁻¹ D A⁻¹ D), D = C⁻¹ δG C⁻ᵀ, A⁻² = ν I + w S².
    S = C.T @ jnp.linalg.solve(Q, C)
    Ai = jnp.linalg.inv(A)
    np.testing.assert_allclose(Ai @ Ai, nu * jnp.eye(5) + w * S @ S, rtol=1e-9, atol=1e-9)

    def q(dG):
        D = jnp.linalg.solve(C, jnp.linalg.solve(C, dG).T)
        return 0.5 * jnp.trace(Ai @ D @ Ai @ D)

    F, unravel = _metric_matrix(raw, log_diag, q)
    mask = np.asarray(_parameter_mask({"raw": raw, "log_diag": log_diag}))
    g = jax.random.normal(jax.random.PRNGKey(3), (mask.size,)) * mask
    gt = unravel(g)
    x = ravel_pytree(optim.kronecker_inverse([(C, A)], [gt])[0])[0]
    assert np.all(np.asarray(x)[~mask] == 0)
    np.testing.assert_allclose(
        np.asarray(F @ x)[mask], np.asarray(g)[mask], rtol=1e-8, atol=1e-8 * float(jnp.abs(g).max())
    )


def test_separable_metric_bounds_the_two_kronecker_fishers_from_above():
    # ν/2 tr((G⁻¹δG)²) + w/2 tr((Q⁻¹δG)²) <= the separable form (module doc),
    # with equality when δG = G (D = I, all weight on the diagonal i = j).
    raw, log_diag, Q = _kronecker_setup(seed=1)
    nu, w = 0.7, 2.5
    C = lower_factor(raw, log_diag)
    G = C @ C.T
    Ai = jnp.linalg.inv(optim.kronecker_factor(C, Q, nu, w))

    def exact(dG):
        a, b = jnp.linalg.solve(G, dG), jnp.linalg.solve(Q, dG)
        return 0.5 * nu * jnp.trace(a @ a) + 0.5 * w * jnp.trace(b @ b)

    def separable(dG):
        D = jnp.linalg.solve(C, jnp.linalg.solve(C, dG).T)
        return 0.5 * jnp.trace(Ai @ D @ Ai @ D)

    rng = np.random.default_rng(2)
    for _ in range(5):
        E = rng.normal(size=(5, 5))
        dG = jnp.asarray(E + E.T)
        assert exact(dG) <= separable(dG) * (1 + 1e-10)
    np.testing.assert_allclose(separable(G), exact(G), rtol=1e-9)


def test_preconditioned_lbfgs_reaches_the_optax_optimum_in_fewer_iterations():
    # 100 digits: each iteration costs O(n³), and the contrast is as clear as
    # at 150 (measured 48 vs 105 iterations at 100, 51 vs 140 at 150, both
    # well below the 0.8 ratio asked for; optima agree to ~4e-9 relative).
    n = 100
    x, labels = digits()
    X = np.asarray(x, np.float64).reshape(len(x), -1)[:n]
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    Y = np.eye(10)[np.asarray(labels)[:n]] - 0.1
    model = dkm.FullDKM(dkm.relu(2.0, 0.1), num_layers=3, nu=1.0, noise_var=0.1)
    runs = {
        m: model.fit(model.init(X), X, Y, method=m, max_iter=1000, tol=1e-9)
        for m in ("lbfgs", "optax-lbfgs")
    }
    (_, ours), (_, plain) = runs["lbfgs"], runs["optax-lbfgs"]
    assert ours.converged and plain.converged
    np.testing.assert_allclose(ours.objective[-1], plain.objective[-1], rtol=1e-7)
    assert ours.iterations < 0.8 * plain.iterations, (ours.iterations, plain.iterations)


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"memory_size": 0}, "memory_size"),
        ({"refresh_every": 0}, "refresh_every"),
        ({"initial_scale": "bb"}, "initial_scale"),
    ],
)
def test_bad_settings_are_rejected_by_name(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        optim.scale_by_preconditioned_lbfgs(lambda p, g: g, **kwargs)


@pytest.mark.parametrize(
    "call, exc, message",
    [
        (
            lambda: optim.scale_by_preconditioned_lbfgs(None),
            TypeError,
            "`precondition` must be a function",
        ),
        (
            lambda: optim.scale_by_preconditioned_lbfgs(lambda p, g: g, memory_size=2.5),
            TypeError,
            "`memory_size` must be an int",
        ),
        (lambda: optim.lbfgs((1.0, -1.0)), ValueError, "`nu` must be positive KL weights"),
        (lambda: optim.lbfgs(1.0), ValueError, "`nu` must be positive KL weights"),
        (
            lambda: optim.lbfgs((1.0,), max_linesearch_steps=0),
            ValueError,
            "`max_linesearch_steps` must be an int >= 1",
        ),
        (lambda: optim.kronecker_lbfgs(3), TypeError, "`factors_fn` must be a function"),
    ],
)
def test_bad_optimizer_arguments_are_rejected_by_name(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
