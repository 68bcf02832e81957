"""Regularised kernel decompositions with clear failures, and spectral filters.

`Regularised` holds ``K + diag_reg·I`` (the regularisation of `ntk._linalg`:
relative to the mean diagonal unless ``diag_reg_absolute_scale``) with cached
Cholesky and eigh; `expm1_filter` / `expm1_over_filter` are the filters
``expm1(-λτ)`` and ``expm1(-λτ)/λ`` of gradient flow and `steps_filter` the
gradient-descent counterpart ``(1 - ηλ/n)^t - 1`` of the first, applied to
its eigenvalues (0 on untrained directions); `spectral_apply` applies such a
filter to a traced kernel with a derivative that holds where eigenvalues repeat.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ntk._checks import concrete, is_concrete
from ntk._linalg import HP, add_jitter, check_factor, dot, not_positive_definite

__all__ = [
    "HP",
    "dot",
    "Regularised",
    "expm1_filter",
    "expm1_over_filter",
    "steps_filter",
    "spectral_apply",
]


def _rows(evals):
    """``(λ > 0, λ or 1)`` as ``(1, P)`` rows of a filter's ``(T, P)`` table
    (explicit, so the filters run under ``jax_numpy_rank_promotion="raise"``)."""
    pos = evals[None, :] > 0
    return pos, jnp.where(pos, evals[None, :], 1.0)


def expm1_filter(evals, tau):
    """``expm1(-λ τ)`` ``(T, P)``; 0 for ``λ ≤ 0`` (untrained directions)."""
    pos, lam = _rows(evals)
    return jnp.where(pos, jnp.expm1(-lam * tau[:, None]), 0.0)


def expm1_over_filter(evals, tau):
    """``expm1(-λ τ) / λ``; 0 for ``λ ≤ 0`` (pseudo-inverse convention)."""
    pos, lam = _rows(evals)
    return jnp.where(pos, jnp.expm1(-lam * tau[:, None]) / lam, 0.0)


def steps_filter(evals, learning_rate, n, steps):
    """``(1 - ηλ/n)^t - 1`` ``(T, P)`` for integer steps ``t``; 0 for ``λ ≤ 0``."""
    pos, lam = _rows(evals)
    # integer powers (repeated squaring): defined for any sign of 1 - ηλ/n
    return jnp.where(pos, (1 - learning_rate * lam / n) ** steps[:, None] - 1, 0.0)


def over_lambda(g):
    """The filter ``g(λ; θ) / λ``, 0 for ``λ ≤ 0`` (pseudo-inverse convention)."""

    def filt(evals, theta):
        pos, lam = _rows(evals)
        return jnp.where(pos, g(evals, theta) / lam, 0.0)

    return filt


def _apply(evecs, filt, r):
    """``[V diag(filt_t) Vᵀ r]_t`` ``(T, P, C)``."""
    return jnp.einsum("pi,ti,ic->tpc", evecs, filt, dot(evecs.T, r), precision=HP)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def spectral_apply(g, k, theta, r):
    r"""``[V g(Λ; θ)_t Vᵀ r]_t`` ``(T, P, C)`` for ``k = V Λ Vᵀ`` and a filter
    ``g(evals, theta) -> (T, P)`` acting elementwise on the eigenvalues.

    Differentiable in ``k`` also where eigenvalues repeat (one-hot or repeated
    training inputs), which the eigenvectors' derivative is not: the tangent is
    the Daleckii–Krein formula :math:`d\,g(K) = V (F \circ V^\top dK\, V) V^\top`,
    :math:`F_{ij} = (g(\lambda_i) - g(\lambda_j)) / (\lambda_i - \lambda_j)` and, for
    :math:`|\lambda_i - \lambda_j| \le \sqrt{\epsilon} \max|\lambda|` (where that
    quotient is round-off), the mean of :math:`g'(\lambda_i)` and :math:`g'(\lambda_j)`.
    """
    evals, evecs = jnp.linalg.eigh(k)
    return _apply(evecs, g(evals, theta), r)


@spectral_apply.defjvp
def _spectral_apply_jvp(g, primals, tangents):
    k, theta, r = primals
    dk, dtheta, dr = tangents
    evals, evecs = jnp.linalg.eigh(k)
    filt, dfilt = jax.jvp(lambda th: g(evals, th), (theta,), (dtheta,))
    slope = jax.jvp(lambda e: g(e, theta), (evals,), (jnp.ones_like(evals),))[1]
    gap = (evals[:, None] - evals[None, :])[None]  # (1, P, P), as the (T, P, P) tables
    tol = jnp.sqrt(jnp.finfo(evals.dtype).eps) * jnp.max(jnp.abs(evals))
    near = jnp.abs(gap) <= tol
    quotient = (filt[:, :, None] - filt[:, None, :]) / jnp.where(near, 1.0, gap)
    f = jnp.where(near, (slope[:, :, None] + slope[:, None, :]) / 2, quotient)  # (T, P, P)
    x = dot(evecs.T, dot((dk + dk.T) / 2, evecs))
    vr = dot(evecs.T, r)
    inner = (
        jnp.einsum("tij,jc->tic", f * x[None], vr, precision=HP)
        + dfilt[:, :, None] * vr[None]
        + filt[:, :, None] * dot(evecs.T, dr)[None]
    )
    out = jnp.einsum("pi,ti,ic->tpc", evecs, filt, vr, precision=HP)
    return out, jnp.einsum("pi,tic->tpc", evecs, inner, precision=HP)


class Regularised:
    """``K + diag_reg·I`` with its cached Cholesky factor and eigendecomposition.

    Decompositions are computed outside any surrounding trace when ``K`` is
    concrete (``jax.ensure_compile_time_eval``) and then cached; a traced ``K``
    (e.g. under ``jax.grad`` over kernel hyperparameters) is decomposed anew in
    each call and cannot be checked for definiteness.
    """

    def __init__(self, k, diag_reg, absolute, name, arg):
        self.k, self.diag_reg, self.absolute = k, diag_reg, absolute
        self.name, self.arg = name, arg
        self._cho = self._eig = None

    def _message(self) -> dict:
        """`not_positive_definite`'s naming keywords: this call's argument
        names and ``diag_reg``'s scale."""
        return dict(
            relative=not self.absolute,
            where=self.name,
            arg=self.arg,
            param="diag_reg",
            scale_flag="diag_reg_absolute_scale",
        )

    def _reg_matrix(self):
        return add_jitter(self.k, self.diag_reg, relative=not self.absolute)[0]

    def _factor(self):
        cho = self._cho
        if cho is None:
            with jax.ensure_compile_time_eval():
                cho = jsl.cho_factor(self._reg_matrix(), lower=True)
            if concrete(cho[0]) is not None:
                check_factor(cho[0], self.k, self.diag_reg, **self._message())
                self._cho = cho
        return cho

    def cho_solve(self, b):
        return jsl.cho_solve(self._factor(), b)

    def check_definite(self):
        """Raise `cho_solve`'s error if ``K + diag_reg·I`` has no Cholesky
        factor: ``t = ∞`` computed by eigenvalues must fail exactly where
        ``t = None`` does, instead of dividing by round-off eigenvalues."""
        self._factor()

    def apply(self, g, theta, r=None, left=None):
        """``[L V g(Λ; θ)_t Vᵀ r]_t`` ``(T, Q, C)`` for ``K + diag_reg·I = V Λ Vᵀ``
        (``L = left``, ``r``: default ``I``, so ``apply(g, θ)`` is the matrix
        ``g(K)``): the cached eigendecomposition for a concrete ``K``,
        `spectral_apply` (whose derivative holds where eigenvalues repeat)
        for a traced one."""
        if is_concrete((self.k, self.diag_reg)):
            evals, evecs = self.eigh()
            lv = evecs if left is None else dot(left, evecs)
            vr = evecs.T if r is None else dot(evecs.T, r)
            return jnp.einsum("qi,ti,ic->tqc", lv, g(evals, theta), vr, precision=HP)
        if r is None:
            r = jnp.eye(self.k.shape[0], dtype=self.k.dtype)
        out = spectral_apply(g, self._reg_matrix(), theta, r)
        return out if left is None else jnp.einsum("qp,tpc->tqc", left, out, precision=HP)

    def eigh(self):
        eig = self._eig
        if eig is None:
            with jax.ensure_compile_time_eval():
                evals, evecs = jnp.linalg.eigh(self._reg_matrix())
            c = concrete(evals)
            if c is not None:
                eps = np.finfo(c.dtype).eps
                tol = 10 * max(c.shape[0], 10) * eps * max(np.abs(c).max(), 1e-300)
                if not np.all(np.isfinite(c)) or c[0] < -tol:
                    raise not_positive_definite(
                        self.k,
                        self.diag_reg,
                        what="it has a clearly negative eigenvalue",
                        **self._message(),
                    )
                eig = (evals, evecs)
                self._eig = eig
            else:
                eig = (evals, evecs)
        return eig
