"""Monte Carlo kernels of finite networks, the oracle for analytic kernels.

For a network with ``O`` output channels, one draw of the parameters gives
``f(x1) f(x2)ᵀ / O`` (an NNGP estimate averaged over channels) and
``⟨∂_θ vᵀf(x1), ∂_θ vᵀf(x2)⟩`` with ``v`` uniform on the unit sphere of R^O
(an unbiased estimate of the channel-averaged empirical NTK, since
E[v vᵀ] = I / O). Averaging over draws gives the mean and its standard error;
by the CLT the estimate lies within a few standard errors of the infinite-width
kernel plus a finite-width bias of order 1 / width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def optimised(fn, *args):
    """``fn`` compiled for ``args`` with XLA's optimised code generation.

    The suite compiles at LLVM level 0 (conftest) because most of its programs
    run once; a program run many times (Monte Carlo draws, simulation trials)
    is worth optimising: float64 convolutions run about 20x faster for about a
    second more of compiling, with the same results up to float rounding
    (neither level uses fast-math).
    """
    return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 3})


def mc_kernels(
    init_fn, apply_fn, x1, x2, key, n_samples: int, *, compute_ntk: bool = True, apply_kwargs=None
):
    """Return ``(nngp_mean, nngp_sem, ntk_mean, ntk_sem)``, each ``(N1, N2)``.

    ``apply_fn`` must map ``(N, ...)`` inputs to ``(N, O)`` outputs. If
    ``apply_kwargs`` is a callable it receives a PRNG key and returns the
    keyword arguments of ``apply_fn`` (e.g. ``{"rng": key}`` for Dropout).
    """
    x2 = x1 if x2 is None else x2

    def one(key):
        k_init, k_v, k_apply = jax.random.split(key, 3)
        _, params = init_fn(k_init, x1.shape)
        kw = apply_kwargs(k_apply) if callable(apply_kwargs) else {}
        f1, f2 = apply_fn(params, x1, **kw), apply_fn(params, x2, **kw)
        nngp = f1 @ f2.T / f1.shape[-1]
        if not compute_ntk:
            return nngp, jnp.zeros_like(nngp)
        v = jax.random.normal(k_v, (f1.shape[-1],), f1.dtype)
        v = v / jnp.linalg.norm(v)
        j1 = jax.jacrev(lambda p: apply_fn(p, x1, **kw) @ v)(params)
        j2 = jax.jacrev(lambda p: apply_fn(p, x2, **kw) @ v)(params)
        ntk = sum(
            jnp.tensordot(a, b, axes=(tuple(range(1, a.ndim)),) * 2)
            for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2))
        )
        return nngp, ntk

    compiled = optimised(one, key)  # one program, n_samples runs
    draws = [compiled(k) for k in jax.random.split(key, n_samples)]
    nngp = np.stack([np.asarray(d[0]) for d in draws])
    ntk = np.stack([np.asarray(d[1]) for d in draws])
    sem = lambda a: a.std(0, ddof=1) / np.sqrt(len(a))
    return nngp.mean(0), sem(nngp), ntk.mean(0), sem(ntk)


def assert_within_mc(
    analytic, mean, sem, *, n_sigma: float = 5.0, bias: float = 0.0, what: str = "kernel"
):
    """``|analytic - mean| <= n_sigma·sem + bias·max|analytic|``, elementwise.

    ``bias`` covers the O(1/width) finite-width bias of the estimate.
    """
    analytic, mean, sem = map(np.asarray, (analytic, mean, sem))
    err = np.abs(analytic - mean)
    bound = n_sigma * sem + bias * np.abs(analytic).max()
    worst = np.argmax(err - bound)
    assert np.all(err <= bound), (
        f"{what}: Monte Carlo disagrees: at {np.unravel_index(worst, err.shape)} "
        f"analytic {analytic.flat[worst]:.6g} vs MC {mean.flat[worst]:.6g} ± "
        f"{sem.flat[worst]:.3g} (bound {bound.flat[worst]:.3g})"
    )
