r"""The μP (feature-learning) infinite-width limit of a deep MLP by DMFT.

Bordelon & Pehlevan 2022, "Self-Consistent Dynamical Field Theory of Kernel
Evolution in Wide Neural Networks" (NeurIPS 2022), write the infinite-width
limit of a deep network trained in the mean-field/μP parametrization as a
*single-site* stochastic process whose statistics are fixed by a few
deterministic order parameters — the feature kernels :math:`\Phi^\ell(t, s)`, the
gradient kernels :math:`G^\ell(t, s)` and the response functions
:math:`A^\ell, B^\ell` — and solve the self-consistency by Monte Carlo over that
process and a fixed-point iteration (their §4 and App. "Numerical solution"). This
module is that solver for **full-batch gradient descent in discrete time**; the
equations below were derived for discrete steps with the Tensor-Programs ZDot rule
(Yang & Hu 2021, TP4), which is the same limit as B&P's path integral.

**The network** (width :math:`N`, depth :math:`L` hidden layers, inputs
:math:`x \in \mathbb{R}^D`, all weights :math:`\mathcal{N}(0, 1)`; B&P eq. 1 with
:math:`\gamma = \gamma_0 \sqrt{N}`):

.. math::

    h^1 = W^0 x / \sqrt{D}, \qquad h^{\ell+1} = W^\ell \varphi(h^\ell) / \sqrt{N}, \qquad
    f = w \cdot \varphi(h^L) / (\gamma_0 N),

trained on :math:`L(f) = \sum_\mu (f_\mu - y_\mu)^2 / (2P)` by gradient descent with
learning rate :math:`\eta \gamma_0^2 N` on every weight (`ntk.mup.finite`). This is μP:
the features move by :math:`\Theta(\gamma_0)` per step at every width;
:math:`\gamma_0 \to 0` is the lazy (NTK) regime, whose kernel is exactly
``ntk.stax``'s NTK of the network
``[Dense(W_std=1), φ] × L + Dense(W_std=1)`` (no biases).

**The limit** (:math:`\Delta_\nu(s) = (y_\nu - f_\nu(s))/P` on training points, 0 on
test points; sums over :math:`\nu` run over all points, :math:`g = \varphi'(h) z`):

.. math::

    h^\ell_\mu(t) &= u^\ell_\mu(t) + \sum_{s<t} \sum_\nu \big[A^{\ell-1}_{\mu\nu}(t,s)
        + \eta\gamma_0\, \Phi^{\ell-1}_{\mu\nu}(t,s)\, \Delta_\nu(s)\big]\, g^\ell_\nu(s), \\
    z^\ell_\mu(t) &= r^\ell_\mu(t) + \sum_{s \le t} \sum_\nu B^\ell_{\mu\nu}(t,s)\,
        \varphi(h^\ell_\nu(s)) \\
        &\qquad + \sum_{s<t} \sum_\nu \eta\gamma_0\, G^{\ell+1}_{\mu\nu}(t,s)\, \Delta_\nu(s)\,
        \varphi(h^\ell_\nu(s)), \\
    z^L(t) &= r^L + \eta\gamma_0 \sum_{s<t} \sum_\nu \Delta_\nu(s)\, \varphi(h^L_\nu(s))
        \qquad \text{(the readout } w(t)\text{)}, \\
    u^\ell &\sim \mathcal{GP}(0, \Phi^{\ell-1}), \quad r^\ell \sim \mathcal{GP}(0, G^{\ell+1}),
        \quad u^1 \sim \mathcal{N}(0, \Phi^0 = x x^\top / D), \quad r^L \sim \mathcal{N}(0, 1), \\
    \Phi^\ell &= \langle \varphi(h^\ell)\, \varphi(h^\ell) \rangle, \quad
        G^\ell = \langle g^\ell g^\ell \rangle, \\
    A^\ell &= \big\langle \partial \varphi(h^\ell) / \partial r^\ell \big\rangle, \quad
        B^\ell = \big\langle \partial g^{\ell+1} / \partial u^{\ell+1} \big\rangle
        \quad (A^0 = 0), \\
    f_\mu(t) &= \gamma_0^{-1} \big\langle \partial \varphi(h^L_\mu(t)) / \partial r^L \big\rangle
        + \eta \sum_{s<t} \sum_\nu \Phi^L_{\mu\nu}(t,s)\, \Delta_\nu(s).

B&P's continuous-time equations (their eqs. 9–11, with :math:`\gamma_0 \int ds` for
:math:`\eta\gamma_0 \sum_s`) are the :math:`\eta \to 0` limit; in discrete time the
response :math:`B` keeps its equal-time term :math:`s = t` (the ZDot rule's
:math:`W^{0\top} \varphi'(W^0 \varphi)` correlation), and :math:`f` is written exactly
instead of through :math:`df = K \Delta\, dt`. The responses are B&P's
:math:`\gamma_0^{-1}`-scaled ones times :math:`\gamma_0`. They are computed
here by forward-mode autodiff of the sampled process (exact per sample,
causal by construction) rather than by Stein's lemma with an inverse
covariance, which amplifies Monte Carlo noise when the fields barely move.

**Monte Carlo and the fixed point.** The Gaussian sources are drawn once
(``n_samples``; whitened and antithetic in :math:`r` so that second moments are
exact and odd-in-:math:`r` averages vanish), coloured each iteration by a causal
(time-ordered) Cholesky factor of the current kernels, pushed through the
process, and the new order parameters are mixed in with ``damping``. Because
every quantity at time :math:`t` depends only on quantities at times :math:`\le t`, the
iteration with ``damping=1`` converges in at most :math:`(T+1)(2L+1)` sweeps to
the exact fixed point of the sampled problem. The Monte Carlo error of the
limit itself is :math:`O(\mathrm{n\_samples}^{-1/2})` in the kernels and
:math:`O(\mathrm{n\_jac\_samples}^{-1/2})` through the response functions, which
dominate the error of the outputs :math:`f`: measured on a two-layer tanh network, that
error is about a finite network's at width :math:`\approx 10 \cdot \mathrm{n\_jac\_samples}`.
It is zero for ``activation="linear"`` (the process is linear in the sources and the
whitening makes second moments exact).

`dmft_solve` has an example.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk._linalg import add_jitter
from ntk.mup import _mlp
from ntk.mup._mlp import ACTIVATIONS

__all__ = ["ACTIVATIONS", "DMFTResult", "dmft_solve", "dmft_solver", "ntk_of_kernels"]


# ----------------------------------------------------------------- the limit


class DMFTResult(NamedTuple):
    r"""The DMFT limit of a trained μP MLP.

    Attributes:
      f: ``(T+1, P)`` training predictions :math:`f_t` (:math:`f_0 = 0`).
      f_test: ``(T+1, Q)`` test predictions, or None.
      phi: ``(L, T+1, M, T+1, M)`` feature kernels :math:`\Phi^\ell(t,\mu; s,\nu)` over
        the :math:`M = P + Q` points (train first).
      g: ``(L, T+1, M, T+1, M)`` gradient kernels :math:`G^\ell`.
      a: ``(L−1, T+1, M, T+1, M)`` response functions :math:`A^\ell`.
      b: ``(L−1, T+1, M, T+1, M)`` response functions :math:`B^\ell`.
      ntk: ``(T+1, M, M)`` the limit's tangent kernel along training,
        :math:`K_t = \sum_{\ell=0}^{L} G^{\ell+1}(t,t) \odot \Phi^\ell(t,t)`
        (`ntk_of_kernels`).
      loss: ``(T+1,)`` training loss :math:`\sum (f-y)^2/(2P)`.
      residuals: ``(iterations,)`` max relative change of the order parameters
        per fixed-point sweep (the convergence diagnostic).
      converged: whether the last residual is below ``tol``.
    """

    f: jnp.ndarray
    f_test: Optional[jnp.ndarray]
    phi: jnp.ndarray
    g: jnp.ndarray
    a: jnp.ndarray
    b: jnp.ndarray
    ntk: jnp.ndarray
    loss: jnp.ndarray
    residuals: np.ndarray
    converged: bool


def ntk_of_kernels(phi_tt, g_tt, kx):
    r"""Tangent kernel :math:`K = \sum_{\ell=0}^{L} G^{\ell+1} \odot \Phi^\ell` with
    :math:`\Phi^0 = x x^\top / D`, :math:`G^{L+1} = 1`.

    B&P eq. 3 (the NTK of the mean-field network with learning rate :math:`\gamma^2`).
    ``phi_tt, g_tt``: ``(L, ..., M, M)`` equal-time kernels; ``kx``: ``(M, M)``.
    """
    shapes = (jnp.shape(phi_tt), jnp.shape(g_tt), jnp.shape(kx))
    if (
        shapes[0] != shapes[1]
        or len(shapes[0]) < 3
        or len(shapes[2]) != 2
        or shapes[0][-2:] != shapes[2]
    ):
        raise ValueError(
            f"ntk_of_kernels: `phi_tt` and `g_tt` must have one shape "
            f"(L, ..., M, M) and `kx` (M, M); got {shapes[0]}, "
            f"{shapes[1]} and {shapes[2]}."
        )
    out = g_tt[0] * jax.lax.broadcast_to_rank(kx, g_tt.ndim - 1)
    for l in range(phi_tt.shape[0]):
        out = out + (g_tt[l + 1] if l + 1 < phi_tt.shape[0] else 1.0) * phi_tt[l]
    return out


def _causal_factor(cov, jitter):
    """Lower Cholesky factor of a (t, μ)-flattened covariance, time-major.

    Row ``(t, μ)`` depends only on entries at times ``≤ t``, which is what
    makes the fixed-point iteration converge sweep by sweep in time. Should
    the (jittered) factorisation still fail in low precision, the symmetric
    square root with clipped eigenvalues is used instead (not causal, but a
    valid factor: the sweeps then converge by contraction only).
    """
    cov = 0.5 * (cov + cov.T)
    # ``jitter`` relative to the mean diagonal (`ntk._linalg`), floored so that
    # an all-zero covariance still gets a (tiny) positive jitter
    scale = jnp.maximum(jnp.mean(jnp.diag(cov)), 1e-30)
    chol = jnp.linalg.cholesky(add_jitter(cov, jitter * scale, relative=False)[0])
    evals, evecs = jnp.linalg.eigh(cov)
    sqrt = (evecs * jnp.sqrt(jnp.clip(evals, 0.0))[None, :]) @ evecs.T
    return jnp.where(jnp.all(jnp.isfinite(chol)), chol, sqrt)


def _whiten(eps):
    """Rows' second moment made exactly the identity: ``epsᵀeps / S = I``."""
    s = eps.shape[0]
    c = eps.T @ eps / s
    evals, evecs = jnp.linalg.eigh(c)
    return eps @ (evecs / jnp.sqrt(evals)[None, :]) @ evecs.T


def _make_process(depth, n_t, m, act, dact):
    """The single-site process, batched over samples (leading axis ``S``).

    Sources ``(u¹ (S, M), u (S, L−1, T+1, M), r (S, L−1, T+1, M), r^L (S,))``;
    history coefficients from `_coefficients`. Returns ``φ, g``: ``(L, S, (T+1)M)``
    with the time-major flattening ``(t, μ)``.
    """
    L, nf = depth, n_t * m

    def process(src, coef):
        u1, u, r, rL = src
        cf, cb, cl = coef  # (L, n_t, m, nf), (L−1, n_t, m, nf), (n_t, nf)
        s = u1.shape[0]
        dtype = u1.dtype
        h = jnp.zeros((L, s, nf), dtype)
        phi = jnp.zeros((L, s, nf), dtype)
        g = jnp.zeros((L, s, nf), dtype)

        def put(arr, l, t, val):
            return jax.lax.dynamic_update_slice(arr, val[None], (l, 0, t * m))

        def step(t, carry):
            h, phi, g = carry
            # forward: g at times ≥ t is still zero, so the full-history
            # product only sees the causal past
            for l in range(L):
                base = u1 if l == 0 else jax.lax.dynamic_index_in_dim(u[:, l - 1], t, 1, False)
                h_t = base + g[l] @ jax.lax.dynamic_index_in_dim(cf[l], t, 0, False).T
                h = put(h, l, t, h_t)
                phi = put(phi, l, t, act(h_t))
            # backward: readout first, then down the layers (B has s = t)
            z_t = rL + phi[L - 1] @ jax.lax.dynamic_index_in_dim(cl, t, 0, False)
            h_last = jax.lax.dynamic_slice_in_dim(h[L - 1], t * m, m, 1)
            g = put(g, L - 1, t, dact(h_last) * z_t[:, None])
            for l in range(L - 2, -1, -1):
                z_t = (
                    jax.lax.dynamic_index_in_dim(r[:, l], t, 1, False)
                    + phi[l] @ jax.lax.dynamic_index_in_dim(cb[l], t, 0, False).T
                )
                h_l = jax.lax.dynamic_slice_in_dim(h[l], t * m, m, 1)
                g = put(g, l, t, dact(h_l) * z_t)
            return h, phi, g

        h, phi, g = jax.lax.fori_loop(0, n_t, step, (h, phi, g))
        return phi, g

    return process


def _coefficients(state, delta, kx, eta_gamma, masks):
    """Per-layer kernels of the forward/backward history sums (see module doc)."""
    phi, g, a, b = state["phi"], state["g"], state["a"], state["b"]
    lt, le = masks
    L = phi.shape[0]
    d = delta[None, None, :, :]  # Δ_ν(s) on (t, μ, s, ν)
    lt4 = lt[:, None, :, None]
    cf = jnp.stack(
        [eta_gamma * kx[None, :, None, :] * d * lt4]
        + [(a[l - 1] + eta_gamma * phi[l - 1] * d) * lt4 for l in range(1, L)]
    )
    le4 = le[:, None, :, None]
    cb = (
        jnp.stack([b[l] * le4 + eta_gamma * g[l + 1] * d * lt4 for l in range(L - 1)])
        if L > 1
        else jnp.zeros((0,) + phi.shape[1:], phi.dtype)
    )
    cl = eta_gamma * delta[None, :, :] * lt[:, :, None]  # (t, s, ν)
    n_t, m = delta.shape
    return (
        cf.reshape(L, n_t, m, n_t * m),
        cb.reshape(L - 1, n_t, m, n_t * m),
        cl.reshape(n_t, n_t * m),
    )


def dmft_solve(
    x_train,
    y_train,
    *,
    depth: int,
    activation: str,
    gamma0: float,
    learning_rate: float,
    steps: int,
    n_samples: int = 4096,
    key=None,
    x_test=None,
    n_jac_samples: Optional[int] = None,
    damping: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-6,
    jitter: Optional[float] = None,
    jac_batch: int = 32,
    verbose: bool = False,
) -> DMFTResult:
    r"""Solve the discrete-time DMFT of a deep μP MLP trained by full-batch GD.

    Bordelon & Pehlevan 2022 (§3–4, App. on the numerical solution), in
    discrete time; the equations are in the module docstring. The network and
    its training are exactly those of `ntk.mup.finite.finite_mlp_train`, whose outputs and
    kernels converge to these as the width :math:`N \to \infty` (error
    :math:`O(N^{-1/2})` per network).

    Args:
      x_train: ``(P, D)`` training inputs; ``y_train``: ``(P,)`` or ``(P, 1)``.
      depth: number of hidden layers :math:`L \ge 1`.
      activation: ``"linear"``, ``"relu"``, ``"tanh"`` or ``"erf"``.
      gamma0: feature-learning strength :math:`\gamma_0 > 0` (:math:`\to 0`: the NTK
        limit).
      learning_rate: :math:`\eta` (the network's weights use :math:`\eta \gamma_0^2 N`).
      steps: number :math:`T` of gradient-descent steps.
      n_samples: Monte Carlo samples :math:`S` of the single-site process (even).
      key: PRNG key of the samples.
      x_test: optional ``(Q, D)`` test inputs.
      n_jac_samples: samples used for the response functions (default all).
      damping: mixing weight of the new order parameters per sweep.
      max_iter, tol: fixed-point sweeps and stopping tolerance (max relative
        change of :math:`\Phi, G, f`).
      jitter: relative diagonal jitter of the Cholesky factors (default 1e-10
        in float64, 1e-5 in float32).
      jac_batch: tangent directions per batch in the response Jacobians.

    Cost per sweep: :math:`O(\mathrm{n\_samples} \cdot L \cdot ((T+1)M)^2 M)` for the
    kernels and :math:`O(\mathrm{n\_jac\_samples} \cdot L^2 \cdot ((T+1)M)^3 M)` for the
    responses (one tangent per source coordinate), :math:`M = P + Q`; :math:`L = 1`
    needs no responses (only :math:`\langle \partial\varphi / \partial r^L \rangle`).
    Memory :math:`O(\mathrm{n\_samples} \cdot L \cdot (T+1)M)`.

    Returns:
      `DMFTResult`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk.mup.dmft import dmft_solve
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
      >>> out = dmft_solve(x, jnp.sin(x[:, 0]), depth=2, activation="tanh",
      ...                  gamma0=1.0, learning_rate=1.0, steps=3, n_samples=256)
      >>> out.f.shape, out.phi.shape, bool(out.residuals[-1] < 1e-4)
      ((4, 4), (2, 4, 4, 4, 4), True)
    """
    fn = "dmft_solve"
    x_train, y_train, x_test = _mlp.check_data(x_train, y_train, x_test, fn)
    _mlp.check_common(depth, gamma0, learning_rate, steps, fn)
    _mlp.activation(activation, fn)
    n_samples = _checks.require_int(n_samples, "n_samples", fn, minimum=4)
    if n_samples % 2:
        raise ValueError(
            f"{fn}: `n_samples` must be an even int ≥ 4 (antithetic pairs); got {n_samples!r}."
        )
    _checks.require_real(damping, "damping", fn, low=0, high=1, low_open=True)
    n_jac = (
        n_samples
        if n_jac_samples is None
        else _checks.require_int(n_jac_samples, "n_jac_samples", fn, minimum=2, maximum=n_samples)
    )
    if n_jac % 2:
        raise ValueError(
            f"{fn}: `n_jac_samples` must be even and in [2, n_samples]; got {n_jac_samples!r}."
        )
    _checks.require_int(max_iter, "max_iter", fn, maximum=_MAX_SWEEPS)
    _checks.require_nonnegative(tol, "tol", fn)
    if jitter is not None:
        _checks.require_nonnegative(jitter, "jitter", fn)
    jac_batch = _checks.require_int(jac_batch, "jac_batch", fn)
    if key is None:
        key = jax.random.PRNGKey(0)
    P = x_train.shape[0]
    x_all = x_train if x_test is None else jnp.concatenate([x_train, x_test])
    dtype = jnp.result_type(x_all.dtype, jnp.float32)
    if jitter is None:
        jitter = 1e-10 if dtype == jnp.float64 else 1e-5
    solve = dmft_solver(
        int(depth),
        int(steps) + 1,
        x_all.shape[0],
        P,
        activation,
        int(n_samples),
        n_jac,
        int(jac_batch),
        float(damping),
        float(jitter),
        jnp.dtype(dtype).name,
    )
    out = solve(
        key,
        x_all.astype(dtype),
        y_train.astype(dtype),
        jnp.asarray(gamma0, dtype),
        jnp.asarray(learning_rate, dtype),
        jnp.asarray(tol, dtype),
        jnp.asarray(max_iter),
    )
    state, residuals, ntk_t, loss = out
    residuals = np.asarray(residuals)
    residuals = residuals[np.isfinite(residuals)]
    if verbose:
        print(f"dmft_solve: {len(residuals)} sweeps, last residual {residuals[-1]:.3e}")
    f_all = state["f"]
    return DMFTResult(
        f=f_all[:, :P],
        f_test=None if x_test is None else f_all[:, P:],
        phi=state["phi"],
        g=state["g"],
        a=state["a"],
        b=state["b"],
        ntk=ntk_t,
        loss=loss,
        residuals=residuals,
        converged=bool(residuals[-1] < tol),
    )


#: Length of the residual history buffer (the cap on ``max_iter``).
_MAX_SWEEPS = 256


@functools.lru_cache(maxsize=32)
def dmft_solver(L, n_t, m, P, activation, n_samples, n_jac, jac_batch, damping, jitter, dtype_name):
    """The jitted solver behind `dmft_solve`, one per static configuration
    (cached: compiled once, reused).

    `dmft_solve` checks its arguments, calls this and wraps the output in a
    `DMFTResult`; call it directly to trace or cost a solve with abstract
    arguments (its fixed-point sweeps are a ``jax.lax.while_loop``).

    Args (static, positional):
      L: depth; n_t: time points :math:`T + 1`; m: points :math:`M = P + Q` (train
      first); P: training points; activation: a name in `ACTIVATIONS`;
      n_samples, n_jac: Monte Carlo samples (even, ``n_jac ≤ n_samples``);
      jac_batch, damping, jitter: as in `dmft_solve` (jitter not None);
      dtype_name: ``"float32"`` or ``"float64"``.

    Returns:
      ``solve(key, x_all, y, gamma0, learning_rate, tol, max_iter) ->
      (state, residuals, ntk, loss)`` with ``x_all (M, D)``, ``y (P,)``, scalars
      and ``max_iter ≤ 256`` an int: ``state`` the dict of ``phi, g
      (L, T+1, M, T+1, M)``, ``a, b (L−1, T+1, M, T+1, M)`` and ``f (T+1, M)``;
      ``residuals (256,)`` (NaN after the last sweep); ``ntk (T+1, M, M)``;
      ``loss (T+1,)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk.mup.dmft import dmft_solver
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
      >>> solve = dmft_solver(1, 3, 4, 4, "tanh", 64, 64, 32, 1.0, 1e-10, "float64")
      >>> state, residuals, ntk, loss = solve(jax.random.PRNGKey(1), x, jnp.sin(x[:, 0]),
      ...                                     1.0, 1.0, 1e-6, 100)
      >>> state["f"].shape, ntk.shape, loss.shape
      ((3, 4), (3, 4, 4), (3,))
    """
    act, dact = _mlp.activation(activation, "dmft_solve")
    dtype = jnp.dtype(dtype_name)
    nf = n_t * m
    tt = jnp.arange(n_t)
    masks = ((tt[None, :] < tt[:, None]).astype(dtype), (tt[None, :] <= tt[:, None]).astype(dtype))
    train_mask = jnp.arange(m) < P
    half = n_samples // 2
    d_u = m + (L - 1) * nf
    d_r = (L - 1) * nf + 1
    # antithetic pairs stay together in the Jacobian subset
    jac_idx = jnp.concatenate([jnp.arange(n_jac // 2), half + jnp.arange(n_jac // 2)])
    process = _make_process(L, n_t, m, act, dact)
    n_dir = 2 * (L - 1) * nf + 1
    jac_batch = max(1, min(jac_batch, n_dir))
    n_batch = -(-n_dir // jac_batch)
    # the basis padded to whole batches: one compiled loop body, no remainder
    basis = jnp.eye(n_batch * jac_batch, n_dir, dtype=dtype).reshape(n_batch, jac_batch, n_dir)
    zero = (
        jnp.zeros((L - 1, n_t, m), dtype),
        jnp.zeros((L - 1, n_t, m), dtype),
        jnp.zeros((), dtype),
    )

    def unflat(v):
        return (
            v[: (L - 1) * nf].reshape(L - 1, n_t, m),
            v[(L - 1) * nf : 2 * (L - 1) * nf].reshape(L - 1, n_t, m),
            v[-1],
        )

    def sources(state, kx, eu, er):
        s = eu.shape[0]
        u1 = eu[:, :m] @ _causal_factor(kx, jitter).T
        if L == 1:
            empty = jnp.zeros((s, 0, n_t, m), dtype)
            return u1, empty, empty, er[:, -1]
        u = jnp.stack(
            [
                eu[:, m + l * nf : m + (l + 1) * nf]
                @ _causal_factor(state["phi"][l].reshape(nf, nf), jitter).T
                for l in range(L - 1)
            ]
        )
        r = jnp.stack(
            [
                er[:, l * nf : (l + 1) * nf]
                @ _causal_factor(state["g"][l + 1].reshape(nf, nf), jitter).T
                for l in range(L - 1)
            ]
        )
        return (
            u1,
            u.reshape(L - 1, s, n_t, m).swapaxes(0, 1),
            r.reshape(L - 1, s, n_t, m).swapaxes(0, 1),
            er[:, -1],
        )

    def sweep(state, data):
        kx, y, eps_u, eps_r, gamma0, eta = data
        delta = (
            jnp.where(train_mask[None, :], jnp.pad(y, (0, m - P))[None, :] - state["f"], 0.0) / P
        )
        coef = _coefficients(state, delta, kx, eta * gamma0, masks)
        src = sources(state, kx, eps_u, eps_r)
        phi_s, g_s = process(src, coef)  # (L, S, nf)
        new_phi = jnp.einsum("lsi,lsj->lij", phi_s, phi_s) / n_samples
        new_g = jnp.einsum("lsi,lsj->lij", g_s, g_s) / n_samples

        # responses: d/dδ of the sample mean under a shift δ shared by all
        # samples = the sample mean of the per-sample Jacobians
        src_j = jax.tree.map(lambda v: v[jac_idx], src)

        def mean_out(shift):
            du, dr, drl = shift
            u1, u, r, rl = src_j
            p, gg = process((u1, u + du[None], r + dr[None], rl + drl), coef)
            return (jnp.mean(p, 1).reshape(L, n_t, m), jnp.mean(gg, 1).reshape(L, n_t, m))

        def directions(vs):
            return jax.vmap(lambda v: jax.jvp(mean_out, (zero,), (unflat(v),))[1])(vs)

        dphi, dg = jax.lax.map(directions, basis)
        dphi = dphi.reshape(-1, L, n_t, m)[:n_dir]  # (n_dir, L, n_t, m)
        dg = dg.reshape(-1, L, n_t, m)[:n_dir]
        k = (L - 1) * nf
        # A^ℓ[(t,μ),(s,ν)] = ⟨∂φ^ℓ(t,μ)/∂r^ℓ(s,ν)⟩ ; B^ℓ = ⟨∂g^{ℓ+1}/∂u^{ℓ+1}⟩
        new_a = (
            jnp.stack(
                [dphi[k + l * nf : k + (l + 1) * nf, l].reshape(nf, nf).T for l in range(L - 1)]
            )
            if L > 1
            else state["a"]
        )
        new_b = (
            jnp.stack([dg[l * nf : (l + 1) * nf, l + 1].reshape(nf, nf).T for l in range(L - 1)])
            if L > 1
            else state["b"]
        )
        f_r = dphi[-1, L - 1]  # ⟨∂φ^L/∂r^L⟩
        phi_L = new_phi[L - 1].reshape(n_t, m, n_t, m) * masks[0][:, None, :, None]
        new_f = f_r / gamma0 + eta * jnp.einsum("tksn,sn->tk", phi_L, delta)
        shape5 = (-1, n_t, m, n_t, m)
        new = dict(
            phi=new_phi.reshape(shape5),
            g=new_g.reshape(shape5),
            a=new_a.reshape(shape5),
            b=new_b.reshape(shape5),
            f=new_f,
        )

        def rel(x_new, x_old):
            return jnp.max(jnp.abs(x_new - x_old)) / (jnp.max(jnp.abs(x_new)) + 1e-30)

        res = jnp.max(
            jnp.stack(
                [
                    rel(new["phi"], state["phi"]),
                    rel(new["g"], state["g"]),
                    jnp.max(jnp.abs(new["f"] - state["f"])) / (jnp.max(jnp.abs(y)) + 1e-30),
                ]
            )
        )
        mixed = jax.tree.map(lambda n_, o: damping * n_ + (1 - damping) * o, new, state)
        return mixed, res

    @jax.jit
    def solve(key, x_all, y, gamma0, eta, tol, max_iter):
        kx = x_all @ x_all.T / x_all.shape[1]
        # the fixed Gaussian draws: whitened, antithetic in r
        ku, kr = jax.random.split(key)
        eps_u = jax.random.normal(ku, (half, d_u), dtype)
        eps_r = jax.random.normal(kr, (half, d_r), dtype)
        if half > d_u:
            eps_u = _whiten(eps_u)
        if half > d_r:
            eps_r = _whiten(eps_r)
        data = (
            kx,
            y,
            jnp.concatenate([eps_u, eps_u]),
            jnp.concatenate([eps_r, -eps_r]),
            gamma0,
            eta,
        )
        # initial guess: static kernels of x (the sweeps carry them up the layers)
        state = dict(
            phi=jnp.broadcast_to(kx[None, None, :, None, :], (L, n_t, m, n_t, m)),
            g=jnp.ones((L, n_t, m, n_t, m), dtype),
            a=jnp.zeros((L - 1, n_t, m, n_t, m), dtype),
            b=jnp.zeros((L - 1, n_t, m, n_t, m), dtype),
            f=jnp.zeros((n_t, m), dtype),
        )
        res0 = jnp.full((_MAX_SWEEPS,), jnp.nan, dtype)

        def cond(c):
            i, _, res = c
            return (i < max_iter) & ((i == 0) | (res[jnp.maximum(i - 1, 0)] >= tol))

        def body(c):
            i, st, res = c
            st, r = sweep(st, data)
            return i + 1, st, res.at[i].set(r)

        _, state, res = jax.lax.while_loop(cond, body, (0, state, res0))
        idx = jnp.arange(n_t)
        diag_phi = state["phi"][:, idx, :, idx, :].swapaxes(0, 1)  # (L, n_t, m, m)
        diag_g = state["g"][:, idx, :, idx, :].swapaxes(0, 1)
        ntk_t = ntk_of_kernels(diag_phi, diag_g, kx)
        loss = jnp.sum((state["f"][:, :P] - y[None]) ** 2, 1) / (2 * P)
        return state, res, ntk_t, loss

    return solve
