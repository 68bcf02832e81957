r"""Posterior sampling of wide, finite deep Gaussian processes (Yang et al. 2023).

The object the DKM is the limit of: `make_dgp_sampler` samples the posterior
over the features of a deep GP of finite widths, whose Gram matrices
concentrate on the DKM optimum (`FullDKM`) as the widths grow.

The deep GP of the paper (Yang, Robeyns, Milsom, Anson, Schoots & Aitchison,
"A theory of representation learning gives a deep generalisation of kernel
methods", ICML 2023, the deep GP of its §2): features
:math:`F_\ell \in \mathbb{R}^{P \times N_\ell}`, Grams
:math:`G_\ell = F_\ell F_\ell^\top / N_\ell`, :math:`G_0 = X X^\top / N_0`, and for
:math:`\ell = 1, \ldots, L`

.. math::

    f_\lambda^\ell \mid F_{\ell-1} &\sim \mathcal{N}(0, K(G_{\ell-1}))
    \qquad (\text{columns } \lambda = 1, \ldots, N_\ell, \text{ independent}), \\
    y_\lambda \mid F_L &\sim \mathcal{N}(0, K(G_L) + \sigma^2 I)
    \qquad (\text{the output GP marginalised}).

The Bayesian representation-learning limit takes :math:`N_\ell = N \nu_\ell` and
:math:`N` copies of the outputs, :math:`\tilde{Y} = (Y, \ldots, Y)`, and lets
:math:`N \to \infty`. The Wishart prior of :math:`G_\ell \mid G_{\ell-1}` has log density
:math:`-N_\ell\, \mathrm{KL}\big(\mathcal{N}(0, G_\ell) \,\big\|\,
\mathcal{N}(0, K(G_{\ell-1}))\big) - \tfrac{P+1}{2} \log|G_\ell| + \mathrm{const}`
(:math:`P` points), so the log posterior of the Grams
is :math:`N \cdot L(G_1 \ldots G_L) + O(1)` with the DKM objective

.. math::

    L(G) = \log P(Y \mid G_L)
    - \sum_\ell \nu_\ell\, \mathrm{KL}\big(\mathcal{N}(0, G_\ell) \,\big\|\,
    \mathcal{N}(0, K(G_{\ell-1}))\big),

and the posterior concentrates on its maximiser: a posterior sample's Gram
differs from the DKM optimum by :math:`O(N^{-1/2})` (Gaussian fluctuations of a
density :math:`\propto \exp(N L)`), the posterior mean by :math:`O(N^{-1})` (the
:math:`O(1)` terms move the mode).

We sample the features in whitened (non-centred) coordinates,
:math:`F_\ell = \operatorname{chol}(K(G_{\ell-1}))\, Z_\ell` with
:math:`Z_\ell \sim \mathcal{N}(0, I)` a priori, so that the prior is exactly standard
normal and the posterior's curvature is :math:`O(1)` at every width:
one step size serves all widths. The sampler is the Metropolis-adjusted
Langevin algorithm (MALA, Roberts & Tweedie 1996) in JAX: `jax.lax.scan` over
steps, `jax.vmap` over independent chains, step sizes adapted during burn-in
towards an acceptance rate of ~0.6 and then frozen (so the chain after
burn-in is an exact MCMC kernel for the posterior).

Jitter. ``jitter`` means what it means everywhere in the library (relative:
:math:`\operatorname{chol}\big(K(G) + \mathtt{jitter} \cdot
\operatorname{mean}(\operatorname{diag} K(G)) \cdot I\big)`) when
``jitter_absolute_scale=False``; here that flag defaults to True, the sampler's absolute
:math:`\operatorname{chol}(K(G) + \mathtt{jitter} \cdot I)` (the two agree for kernels
with unit diagonal such as `sqexp`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk._linalg import jittered_cholesky, require_scale_flag
from ntk.dkm.objective import gaussian_log_marginal

__all__ = ["SamplerOutput", "grams_from_whitened", "dgp_log_posterior", "make_dgp_sampler"]

#: Any map ``G -> K(G)`` of Gram matrices, e.g. a `ntk.dkm.GramKernel`.
GramFn = Callable[[jnp.ndarray], jnp.ndarray]


# ---------------------------------------------------------------- the DGP posterior


def _chol(k: jnp.ndarray, jitter: float, name: str, absolute: bool = True) -> jnp.ndarray:
    """``chol(k + j · I)``, ``j = jitter`` (``absolute``) or ``jitter · mean(diag k)``;
    a clear error when concrete."""
    return jittered_cholesky(
        k,
        jitter,
        relative=not absolute,
        where=name,
        arg="K(G)",
        scale_flag="jitter_absolute_scale",
    ).factor


def grams_from_whitened(
    zs: Sequence[jnp.ndarray],
    g0: jnp.ndarray,
    kernel: GramFn,
    jitter: float = 1e-6,
    *,
    jitter_absolute_scale: bool = True,
) -> list[jnp.ndarray]:
    r""":math:`G_1 \ldots G_L`, :math:`G_\ell = F_\ell F_\ell^\top / N_\ell`, of
    :math:`F_\ell = \operatorname{chol}(K(G_{\ell-1}) + j \cdot I)\, Z_\ell`.

    ``zs``: the whitened features :math:`Z_\ell`, each (P, N_ℓ); ``g0``: (P, P) input
    Gram :math:`X X^\top / N_0`; :math:`j = \mathtt{jitter}` if ``jitter_absolute_scale``
    (the default), else
    :math:`\mathtt{jitter} \cdot \operatorname{mean}(\operatorname{diag} K(G_{\ell-1}))`
    (module doc).

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> g0 = np.array([[1.0, 0.5], [0.5, 1.0]]); k = dkm.sqexp()
      >>> G1, = dkm.grams_from_whitened([np.sqrt(2.0) * np.eye(2)], g0, k)   # Z Zᵀ/N = I
      >>> bool(np.allclose(G1, k(g0)))          # then G_1 = K(G_0) (+ jitter)
      True
      >>> lin = dkm.linear(); g0 = 2.0 * np.eye(2)   # K(G_0) = 2 I: mean diagonal 2
      >>> [round(float(dkm.grams_from_whitened([np.sqrt(2.0) * np.eye(2)], g0, lin, 0.5,
      ...       jitter_absolute_scale=a)[0][0, 0]), 6) for a in (True, False)]   # 2 + 0.5; 2 + 0.5·2
      [2.5, 3.0]
    """
    name = "grams_from_whitened"
    absolute = require_scale_flag(jitter_absolute_scale, "jitter_absolute_scale", name)
    grams, g = [], g0
    for z in zs:
        f = _chol(kernel(g), jitter, name, absolute) @ z
        g = f @ f.T / z.shape[1]
        grams.append(g)
    return grams


def dgp_log_posterior(
    zs,
    g0,
    y,
    kernel: GramFn,
    noise_var: float,
    copies: float,
    jitter: float = 1e-6,
    *,
    jitter_absolute_scale: bool = True,
):
    r""":math:`\log p(Z \mid X, \tilde{Y})` up to a constant, :math:`\tilde{Y}` = ``copies``
    copies of Y (P, C):

    .. math::

        -\tfrac{1}{2} \sum_\ell \lVert Z_\ell \rVert^2
        + \mathtt{copies} \cdot \sum_c \log \mathcal{N}(y_c; 0, K(G_L) + \sigma^2 I),

    the Grams :math:`G_\ell` by `grams_from_whitened` (``jitter``,
    ``jitter_absolute_scale``).

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> g0 = np.eye(2); y = np.array([[1.0], [0.0]])
      >>> zs = [np.zeros((2, 3))]           # Z = 0: no prior penalty, G_1 = 0, K(G_1) = 0
      >>> lp = dkm.dgp_log_posterior(zs, g0, y, dkm.linear(), noise_var=1.0, copies=2.0)
      >>> round(float(lp), 4)               # 2 · log N(y; 0, I) = 2 (−½ − log 2π)
      -4.6758
    """
    require_scale_flag(jitter_absolute_scale, "jitter_absolute_scale", "dgp_log_posterior")
    grams = grams_from_whitened(zs, g0, kernel, jitter, jitter_absolute_scale=jitter_absolute_scale)
    prior = -0.5 * sum(jnp.sum(z**2) for z in zs)
    return prior + copies * gaussian_log_marginal(y, kernel(grams[-1]), noise_var)


# ---------------------------------------------------------------- MALA


class SamplerOutput(NamedTuple):
    r"""What a sampler from `make_dgp_sampler` returns (leading axis: chains).

    mean_grams: (chains, L, P, P), each chain's posterior mean Gram after burn-in.
    sq_dist: (chains, L), mean over kept samples of
    :math:`\lVert G_\ell - \mathrm{target}_\ell \rVert_F^2`.
    last_grams: (chains, L, P, P), the final sample's Grams.
    acceptance: (chains,), mean acceptance probability after burn-in.
    step_size: (chains,), the step size frozen at the end of burn-in.

    Example (a sampler's run: `make_dgp_sampler`):
      >>> import jax.numpy as jnp
      >>> from ntk import dkm
      >>> out = dkm.SamplerOutput(mean_grams=jnp.zeros((2, 1, 3, 3)), sq_dist=jnp.zeros((2, 1)),
      ...                         last_grams=jnp.zeros((2, 1, 3, 3)),
      ...                         acceptance=jnp.full(2, 0.6), step_size=jnp.full(2, 0.05))
      >>> out.mean_grams.shape[:2], out.acceptance.shape     # (chains, L), (chains,)
      ((2, 1), (2,))
    """

    mean_grams: jnp.ndarray
    sq_dist: jnp.ndarray
    last_grams: jnp.ndarray
    acceptance: jnp.ndarray
    step_size: jnp.ndarray


def make_dgp_sampler(
    kernel: GramFn,
    n_layers: int,
    max_width: int,
    *,
    noise_var: float,
    n_chains: int = 4,
    burn_in: int = 1000,
    n_samples: int = 1000,
    target_accept: float = 0.6,
    jitter: float = 1e-6,
    jitter_absolute_scale: bool = True,
):
    r"""A compiled MALA sampler of the deep GP posterior, reusable for every width
    :math:`\le` ``max_width``.

    The features of all widths live in arrays of ``max_width`` columns;
    columns past a layer's width are held at zero and never proposed (so a
    width-16 chain is exactly a width-16 sampler, and one compilation serves
    all widths). Every :math:`K(G)` is factorised with ``jitter``: absolute if
    ``jitter_absolute_scale`` (the default), else relative to its mean
    diagonal (module doc).

    Returns ``sample(key, g0, y, widths, copies, targets, step_size) -> SamplerOutput``:
      key: PRNG key; g0: (P, P) input Gram :math:`X X^\top / N_0`; y: (P, C) targets;
      widths: (L,) integers :math:`N_1 \ldots N_L` (traced); copies: the number of
      copies of :math:`Y`, i.e. the likelihood's weight (the :math:`N` of the limit);
      targets: (L, P, P) Grams each sample's distance is measured to (the DKM optimum);
      step_size: initial MALA step :math:`h`, adapted during burn-in by
      :math:`\log h \mathrel{+}= 0.05\, (a - \mathtt{target\_accept})`, then frozen.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from ntk import dkm
      >>> rng = np.random.default_rng(0)
      >>> X = rng.normal(size=(6, 2)); Y = np.sin(X[:, :1])
      >>> G_star = jnp.stack(dkm.nngp_grams(X, dkm.sqexp(), 2))   # distances to the NNGP
      >>> sample = dkm.make_dgp_sampler(dkm.sqexp(), 2, 32, noise_var=0.1, n_chains=2,
      ...                               burn_in=20, n_samples=20)
      >>> for n in (16, 32):   # widths N_ℓ = N (ν = 1), Y copied N times
      ...     out = sample(jax.random.PRNGKey(0), X @ X.T / X.shape[1], Y,
      ...                  jnp.array([n, n]), float(n), G_star, 0.05)
      >>> out.mean_grams.shape, out.sq_dist.shape
      ((2, 2, 6, 6), (2, 2))
    """
    name = "make_dgp_sampler"
    _checks.require_callable(kernel, "kernel", name, "a map G -> K(G) (e.g. dkm.sqexp())")
    n_layers = _checks.require_int(n_layers, "n_layers", name)
    max_width = _checks.require_int(max_width, "max_width", name)
    _checks.require_nonnegative(noise_var, "noise_var", name)
    n_chains = _checks.require_int(n_chains, "n_chains", name)
    burn_in = _checks.require_int(burn_in, "burn_in", name, minimum=0)
    n_samples = _checks.require_int(n_samples, "n_samples", name)
    _checks.require_real(
        target_accept, "target_accept", name, low=0, high=1, low_open=True, high_open=True
    )
    _checks.require_nonnegative(jitter, "jitter", name)
    absolute = require_scale_flag(jitter_absolute_scale, "jitter_absolute_scale", name)
    n_steps = burn_in + n_samples

    def sample(key, g0, y, widths, copies, targets, step_size):
        p, dtype = g0.shape[0], g0.dtype
        widths = jnp.asarray(widths)
        masks = (jnp.arange(max_width)[None, :] < widths[:, None]).astype(dtype)  # (L, W)

        def logp(z):  # z: (L, P, W)
            grams, g = [], g0
            for l in range(n_layers):
                f = _chol(kernel(g), jitter, name, absolute) @ (z[l] * masks[l][None, :])
                g = f @ f.T / widths[l].astype(dtype)
                grams.append(g)
            lik = gaussian_log_marginal(y, kernel(g), noise_var)
            return -0.5 * jnp.sum(z**2) + copies * lik, jnp.stack(grams)

        vg = jax.value_and_grad(logp, has_aux=True)

        def step(carry, inputs):
            (z, lp, grad, grams), log_h, sums, sq, acc = carry
            key, t = inputs
            h = jnp.exp(log_h)
            k_noise, k_acc = jax.random.split(key)
            noise = jax.random.normal(k_noise, z.shape, dtype) * masks[:, None, :]
            prop = z + 0.5 * h * grad * masks[:, None, :] + jnp.sqrt(h) * noise
            (lp_new, grams_new), grad_new = vg(prop)
            # log q(z | z') − log q(z' | z) of the Langevin proposal
            back = (z - prop - 0.5 * h * grad_new) * masks[:, None, :]
            log_ratio = lp_new - lp + 0.5 * jnp.sum(noise**2) - jnp.sum(back**2) / (2 * h)
            log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
            a = jnp.exp(jnp.minimum(log_ratio, 0.0))
            accept = jax.random.uniform(k_acc, dtype=dtype) < a
            state = jax.tree_util.tree_map(
                lambda new, old: jnp.where(accept, new, old),
                (prop, lp_new, grad_new, grams_new),
                (z, lp, grad, grams),
            )
            adapting = t < burn_in
            log_h = jnp.where(adapting, log_h + 0.05 * (a - target_accept), log_h)
            keep = (~adapting).astype(dtype)
            sums = sums + keep * state[3]
            sq = sq + keep * jnp.sum((state[3] - targets) ** 2, axis=(1, 2))
            return (state, log_h, sums, sq, acc + keep * a), None

        def chain(key):
            k_init, k_steps = jax.random.split(key)
            z = jax.random.normal(k_init, (n_layers, p, max_width), dtype) * masks[:, None, :]
            (lp, grams), grad = vg(z)
            init = (
                (z, lp, grad, grams),
                jnp.log(jnp.asarray(step_size, dtype)),
                jnp.zeros((n_layers, p, p), dtype),
                jnp.zeros(n_layers, dtype),
                jnp.zeros((), dtype),
            )
            steps = (jax.random.split(k_steps, n_steps), jnp.arange(n_steps))
            (state, log_h, sums, sq, acc), _ = jax.lax.scan(step, init, steps)
            return SamplerOutput(
                sums / n_samples, sq / n_samples, state[3], acc / n_samples, jnp.exp(log_h)
            )

        return jax.vmap(chain)(jax.random.split(key, n_chains))

    compiled = jax.jit(sample)

    def checked(key, g0, y, widths, copies, targets, step_size):
        w = _checks.concrete(widths)
        if w is not None and (np.shape(w) != (n_layers,) or np.any(w < 1) or np.any(w > max_width)):
            raise ValueError(
                f"{name}: `widths` must be {n_layers} integers in "
                f"[1, max_width={max_width}] (one per layer); got "
                f"{np.asarray(w).tolist()}."
            )
        return compiled(key, g0, y, widths, copies, targets, step_size)

    return checked
