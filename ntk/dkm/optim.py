r"""L-BFGS for DKMs, preconditioned by a metric on the Gram matrices.

Why. At the NNGP the Grams' natural coordinates are well scaled, but at the
optimum they spread over two or more decades (on 400 digits the first
layer's :math:`\tilde{K}^{-1} G` has eigenvalues 0.012 … 2.3), and the curvature of the
objective spreads over the same range. Plain L-BFGS needs ~75 iterations per
decade of objective gap there. Measuring steps with a metric that follows
the Grams as they move removes most of that.

Kronecker metric (``kronecker_lbfgs``, what `FullDKM.fit` uses for a Gaussian
likelihood). Parametrise :math:`G_l = C_l C_l^\top` (:math:`C_l` lower triangular). The
two terms of the objective that depend on :math:`G_l` most directly are its own
KL, :math:`-\nu_l/2 \log|G_l| + \ldots`, and the Gaussian above it — the next layer's
KL, a Gaussian with covariance :math:`\tilde{K}(G_l)`, weight :math:`w_l = \nu_{l+1}`, or
the likelihood, :math:`C` Gaussians with covariance
:math:`Q_L = \tilde{K}(G_L) + \sigma^2 I`. Their Fisher informations
(:math:`\tfrac{1}{2} \operatorname{tr}\big((\Sigma^{-1} \delta\Sigma)^2\big)` for a
Gaussian covariance, Amari 1998), with the kernel's Jacobian taken as the identity,
give

.. math::

    M_l(\delta G) = \frac{\nu_l}{2} \operatorname{tr}\big((G^{-1} \delta G)^2\big)
    + \frac{w_l}{2} \operatorname{tr}\big((Q_l^{-1} \delta G)^2\big),

a sum of two Kronecker products. In :math:`D = C^{-1} \delta G\, C^{-\top}` and the
eigenbasis :math:`S = C^\top Q^{-1} C = U \Lambda U^\top` it is
:math:`\tfrac{1}{2} \sum_{ij} (\nu + w \lambda_i \lambda_j)\, \hat{D}_{ij}^2`. We use the
separable upper bound
:math:`\nu + w \lambda_i \lambda_j \le \sqrt{(\nu + w \lambda_i^2)(\nu + w \lambda_j^2)}`
(equality on the diagonal :math:`i = j`), whose inverse costs two products
instead of four rotations:

.. math::

    D = A H A, \qquad A = (\nu I + w S^2)^{-1/2}, \qquad
    H = C^\top \partial G\, C \quad (\text{the gradient in } D),

and :math:`\delta C = C\, \Phi(D)` (:math:`\Phi`: lower triangle, diagonal halved;
:math:`\delta G = \delta C\, C^\top + C\, \delta C^\top` maps lower-triangular
:math:`C^{-1} \delta C` one-to-one onto symmetric :math:`D`). :math:`A` needs an
``eigh`` per layer and is refreshed every few steps. The layers decouple only in
Cholesky coordinates: with whitened ones (:math:`G_l = L_l A_l A_l^\top L_l^\top`,
:math:`L_l = \operatorname{chol} \tilde{K}(G_{l-1})`) moving a lower layer moves every
Gram above it.

Fisher metric of the KL alone (``lbfgs``, used for the whitened parameters of
a categorical `FullDKM`). For
:math:`\nu\, \mathrm{KL}\big(\mathcal{N}(0, L A A^\top L^\top) \,\big\|\,
\mathcal{N}(0, L L^\top)\big)`
the Fisher information is
:math:`F(\delta A, \delta A) = \frac{\nu}{2} \operatorname{tr}\big((B^{-1} \delta B)^2\big)`,
:math:`B = A A^\top`; in :math:`X = A^{-1} \delta A` it is
:math:`\nu \big(\lVert X_\mathrm{strict} \rVert^2 + 2 \lVert \operatorname{diag} X \rVert^2\big)`,
so the natural direction is
:math:`\delta A = A\, \Phi_\nu(\operatorname{tril}(A^\top g))` (strict lower part /
:math:`\nu`, diagonal / :math:`2\nu`). A variational output layer has KL weight
:math:`C` for its factor and an identity metric for its whitened mean.

For both, diagonals stored as ``log_diag`` (:math:`A_{ii} = \exp(d_i)`) are handled
by the chain rule, which keeps the map an exact inverse metric in the stored
coordinates.

Optimiser. L-BFGS (Nocedal & Wright 2006, Algorithm 7.4) whose initial
inverse Hessian is :math:`\gamma_k M_k^{-1}` instead of :math:`\gamma_k I`:
:math:`\gamma_k = 1` for the Kronecker metric (already in the loss's units),
:math:`\gamma_k = s^\top y / y^\top M_k^{-1} y` from the newest pair for the KL Fisher;
pairs with :math:`s^\top y \le 0` are skipped so that every direction is a descent
direction. Chained with optax's zoom line search (strong Wolfe), as `optax.lbfgs` is.

Measured (``experiments.benchmarks.dkm`` workload: digits, :math:`L = 3`,
:math:`\nu = 1`, :math:`C = 10`), iterations to a relative objective change below 1e-6 /
final objective: :math:`P = 400`, float64: plain `optax.lbfgs` on the whitened
parameters 165, KL Fisher (whitened) 99 / 419.992, Kronecker 42 / 420.0024 (a fit to
1e-10 ends at 420.0029; the objective has several local optima, and the KL Fisher
run stops near a lower one); :math:`P = 1000`, float32: KL Fisher 280 / 1479.13,
Kronecker 51–59 / 1479.28–1479.29.

Example:
  >>> from ntk.dkm import optim
  >>> opt = optim.lbfgs(nu=(1.0, 1.0, 1.0))   # an optax transformation
  >>> callable(opt.init) and callable(opt.update)
  True

``FullDKM.fit(method="lbfgs")`` builds ``kronecker_lbfgs`` from the model.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import optax

from ntk import _checks
from ntk._linalg import dot, phi
from ntk.dkm.objective import lower_factor

Array = jax.Array


def _factor_gradient(g_raw, g_log_diag, e):
    """The gradient with respect to a factor ``lower_factor(raw, log_diag)``
    from those with respect to ``raw`` and ``log_diag`` (``e`` = its diagonal)."""
    return jnp.tril(g_raw, -1) + jnp.diag(g_log_diag / e)


def _factor_step(d, e):
    """A factor's change ``d`` as changes of ``(raw, log_diag)`` (chain rule)."""
    return jnp.tril(d, -1), jnp.diagonal(d) / e


def _natural_factor(raw, log_diag, g_raw, g_log_diag, weight):
    """``F⁻¹ g`` for one whitened factor (``weight`` = its KL weight)."""
    e = jnp.exp(log_diag)
    A = lower_factor(raw, log_diag)
    X = phi(dot(A.T, _factor_gradient(g_raw, g_log_diag, e))) / weight
    return _factor_step(dot(A, X), e)


def fisher_inverse(params: dict, grads: dict, nu: Sequence[float]) -> dict:
    r""":math:`F^{-1} g`: the natural direction of ``grads`` at ``params`` (module doc).

    ``params``/``grads``: a `FullDKM` parameter tree (``"layers"``: list of
    ``{"raw" (P, P), "log_diag" (P,)}``, optionally ``"output"`` with a
    ``"mean" (P, C)`` too); ``nu``: the KL weights of the layers. Leaves that
    are not factors (e.g. a noise variance) keep their gradient. The map is
    symmetric positive definite in the parameters, as an L-BFGS initial
    matrix must be.
    """
    out = dict(grads)
    layers = []
    for lay, g, w in zip(params["layers"], grads["layers"], nu):
        r, d = _natural_factor(lay["raw"], lay["log_diag"], g["raw"], g["log_diag"], w)
        layers.append({**g, "raw": r, "log_diag": d})
    out["layers"] = layers
    if "output" in params:
        p, g = params["output"], grads["output"]
        r, d = _natural_factor(p["raw"], p["log_diag"], g["raw"], g["log_diag"], p["mean"].shape[1])
        out["output"] = {**g, "raw": r, "log_diag": d}
    return out


def kronecker_factor(C: Array, Q: Array, nu, weight) -> Array:
    r""":math:`A = (\nu I + w S^2)^{-1/2}` with :math:`S = C^\top Q^{-1} C`: the factor of
    the Kronecker metric of a Cholesky-parametrised Gram :math:`G = C C^\top` (module doc,
    "Kronecker metric"). ``C (P, P)`` lower triangular, ``Q (P, P)`` PD (the
    covariance the next layer or the likelihood puts on :math:`G`), ``nu`` the
    layer's KL weight, ``weight`` that of the next term. One Cholesky, one
    triangular solve, two products and one ``eigh``."""
    R = jsl.solve_triangular(jnp.linalg.cholesky(Q), C, lower=True)  # RᵀR = CᵀQ⁻¹C
    lam, U = jnp.linalg.eigh(dot(R.T, R))
    return dot(U * (1.0 / jnp.sqrt(nu + weight * lam**2))[None, :], U.T)


def kronecker_inverse(factors: Sequence, grads: Sequence) -> list:
    r"""The Kronecker-metric direction of ``grads`` (module doc).

    ``factors``: per layer :math:`(C, A)` (the Cholesky factor at the last
    refresh and its `kronecker_factor`); ``grads``: per layer ``{"raw",
    "log_diag"}`` gradients with respect to ``C = lower_factor(raw,
    log_diag)``. Per layer :math:`H = \Phi_s(C^\top g_C)`, :math:`D = A H A`,
    :math:`\delta C = C\, \Phi(D)` — four ``(P, P)`` products; symmetric positive definite
    in :math:`g`."""
    out = []
    for (C, A), g in zip(factors, grads):
        e = jnp.diagonal(C)
        T = phi(dot(C.T, _factor_gradient(g["raw"], g["log_diag"], e)))
        D = dot(A, dot(0.5 * (T + T.T), A))
        raw, log_diag = _factor_step(dot(C, phi(D)), e)
        out.append({**g, "raw": raw, "log_diag": log_diag})
    return out


class PreconditionedLBFGSState(NamedTuple):
    count: Any
    params: Any
    grads: Any
    s: Any  # parameter differences, stacked (memory, ...)
    y: Any  # gradient differences, stacked
    rho: Any  # 1 / sᵀy, 0 for an empty or skipped slot
    aux: Any  # prepare(params) at the last refresh


def _vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _axpy(a, x, y):
    return jax.tree.map(lambda u, v: a * u + v, x, y)


def scale_by_preconditioned_lbfgs(
    precondition,
    memory_size: int = 20,
    prepare=None,
    refresh_every: int = 1,
    initial_scale: str = "pair",
) -> optax.GradientTransformation:
    r"""The L-BFGS direction :math:`H_k g` with initial matrix :math:`\gamma_k P_k` (module
    doc: :math:`P_k = M_k^{-1}`, the inverse metric). Returns the direction (not yet
    negated), like `optax.scale_by_lbfgs`.

    :math:`P_k g` = ``precondition(aux, g)`` must be symmetric positive definite in
    :math:`g`; ``aux = prepare(params)`` (default: the parameters themselves) is
    computed by ``init`` and recomputed every ``refresh_every`` steps, so an
    expensive factorisation can be lagged. ``initial_scale="pair"``:
    :math:`\gamma_k = s^\top y / y^\top P_k y` from the newest pair (one more application
    of :math:`P_k` per step); ``"none"``: :math:`\gamma_k = 1`, for a :math:`P_k` that
    already approximates the inverse Hessian in scale.
    """
    name = "scale_by_preconditioned_lbfgs"
    _checks.require_callable(
        precondition, "precondition", name, "a function precondition(aux, grads)"
    )
    if prepare is not None:
        _checks.require_callable(prepare, "prepare", name, "a function prepare(params) or None")
    memory_size = _checks.require_int(memory_size, "memory_size", name)
    refresh_every = _checks.require_int(refresh_every, "refresh_every", name)
    _checks.require_one_of(initial_scale, ("pair", "none"), "initial_scale", name)
    prepare = (lambda p: p) if prepare is None else prepare  # noqa: E731

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        stack = jax.tree.map(lambda x: jnp.zeros((memory_size,) + x.shape, x.dtype), params)
        dtype = jax.tree.leaves(params)[0].dtype
        return PreconditionedLBFGSState(
            jnp.asarray(0, jnp.int32),
            zeros,
            zeros,
            stack,
            stack,
            jnp.zeros(memory_size, dtype),
            prepare(params),
        )

    def update(grads, state, params):
        k = state.count
        # Step 0 sees the parameters `init` prepared for: no second refresh.
        aux = jax.lax.cond(
            (k > 0) & (k % refresh_every == 0), lambda: prepare(params), lambda: state.aux
        )
        s_new = _axpy(-1.0, state.params, params)
        y_new = _axpy(-1.0, state.grads, grads)
        sy = _vdot(s_new, y_new)
        # A pair with sᵀy <= 0 would make H_k indefinite: leave its slot empty
        # (rho = 0 makes a zero slot inert). At k = 0 the slot written is the
        # last one, still empty. Writing in place, without a select over the
        # whole (memory, ...) stack, keeps the step free of large copies.
        keep = (k > 0) & (sy > 0)
        slot = (k - 1) % memory_size
        put = lambda stack, v: stack.at[slot].set(  # noqa: E731
            jnp.where(keep, v, jnp.zeros_like(v))
        )
        s = jax.tree.map(put, state.s, s_new)
        y = jax.tree.map(put, state.y, y_new)
        rho = state.rho.at[slot].set(jnp.where(keep, 1.0 / jnp.where(keep, sy, 1.0), 0.0))
        newest_first = (slot - jnp.arange(memory_size)) % memory_size
        pick = lambda stack, i: jax.tree.map(lambda a: a[i], stack)  # noqa: E731

        def first_loop(q, i):
            alpha = rho[i] * _vdot(pick(s, i), q)
            return _axpy(-alpha, pick(y, i), q), alpha

        q, alphas = jax.lax.scan(first_loop, grads, newest_first)
        r = precondition(aux, q)
        if initial_scale == "pair":
            My = precondition(aux, y_new)
            yMy = _vdot(y_new, My)
            gamma = jnp.where(keep & (yMy > 0), sy / jnp.where(yMy > 0, yMy, 1.0), 1.0)
            # First step (no pair yet): at most unit length, as in optax.lbfgs.
            gamma = jnp.where(k > 0, gamma, jnp.minimum(1.0, 1.0 / jnp.sqrt(_vdot(r, r))))
            r = jax.tree.map(lambda a: gamma * a, r)

        def second_loop(r, i_alpha):
            i, alpha = i_alpha
            beta = rho[i] * _vdot(pick(y, i), r)
            return _axpy(alpha - beta, pick(s, i), r), None

        r, _ = jax.lax.scan(second_loop, r, (newest_first[::-1], alphas[::-1]))
        return r, PreconditionedLBFGSState(k + 1, params, grads, s, y, rho, aux)

    return optax.GradientTransformation(init, update)


def _with_linesearch(direction, max_linesearch_steps):
    return optax.chain(
        direction,
        optax.scale(-1.0),
        optax.scale_by_zoom_linesearch(
            max_linesearch_steps=max_linesearch_steps, initial_guess_strategy="one"
        ),
    )


def lbfgs(
    nu, memory_size: int = 20, max_linesearch_steps: int = 20
) -> optax.GradientTransformationExtraArgs:
    r"""Fisher-preconditioned L-BFGS for whitened DKM parameter trees (module
    doc), with optax's zoom line search: use like `optax.lbfgs` (``update``
    needs ``value``, ``grad`` and ``value_fn``). ``nu``: the layers' KL
    weights, a sequence or an array (it may be traced, so one compiled fit
    serves every :math:`\nu`)."""
    _checks.require_int(max_linesearch_steps, "max_linesearch_steps", "lbfgs")
    c = _checks.concrete(nu) if not isinstance(nu, (str, bytes)) else np.asarray(nu)
    if c is not None and (
        c.dtype.kind not in "iuf" or c.ndim != 1 or not np.all(np.isfinite(c) & (c > 0))
    ):
        raise ValueError(f"lbfgs: `nu` must be positive KL weights, one per layer; got {nu!r}.")
    return _with_linesearch(
        scale_by_preconditioned_lbfgs(lambda p, g: fisher_inverse(p, g, nu), memory_size),
        max_linesearch_steps,
    )


def kronecker_lbfgs(
    factors_fn, memory_size: int = 20, refresh_every: int = 5, max_linesearch_steps: int = 20
) -> optax.GradientTransformationExtraArgs:
    r"""L-BFGS in Cholesky coordinates preconditioned by the Kronecker metric
    (module doc), with optax's zoom line search. ``factors_fn(params)``
    returns the per-layer :math:`(C, A)` of `kronecker_inverse` (built with
    `kronecker_factor`), recomputed every ``refresh_every`` steps; the metric
    is in the loss's units, so :math:`\gamma_k = 1`."""
    _checks.require_callable(
        factors_fn, "factors_fn", "kronecker_lbfgs", "a function factors_fn(params) -> [(C, A)]"
    )
    _checks.require_int(max_linesearch_steps, "max_linesearch_steps", "kronecker_lbfgs")
    return _with_linesearch(
        scale_by_preconditioned_lbfgs(
            kronecker_inverse,
            memory_size,
            prepare=factors_fn,
            refresh_every=refresh_every,
            initial_scale="none",
        ),
        max_linesearch_steps,
    )
