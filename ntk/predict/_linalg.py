"""Regularised kernel decompositions with clear failures, and spectral filters.

`Regularised` holds ``K + diag_reg·I`` (the regularisation of `ntk._linalg`:
relative to the mean diagonal unless ``diag_reg_absolute_scale``) with cached
Cholesky and eigh; `expm1_filter` / `expm1_over_filter` are the filters
``expm1(-λτ)`` and ``expm1(-λτ)/λ`` of gradient flow and `steps_filter` the
gradient-descent counterpart ``(1 - ηλ/n)^t - 1`` of the first, applied to
its eigenvalues (0 on untrained directions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ntk._checks import concrete
from ntk._linalg import HP, add_jitter, check_factor, dot, not_positive_definite

__all__ = ["HP", "dot", "Regularised", "expm1_filter", "expm1_over_filter", "steps_filter"]


def expm1_filter(evals, tau):
    """``expm1(-λ τ)`` ``(T, P)``; 0 for ``λ ≤ 0`` (untrained directions)."""
    pos = evals > 0
    lam = jnp.where(pos, evals, 1.0)
    return jnp.where(pos, jnp.expm1(-lam * tau[:, None]), 0.0)


def expm1_over_filter(evals, tau):
    """``expm1(-λ τ) / λ``; 0 for ``λ ≤ 0`` (pseudo-inverse convention)."""
    pos = evals > 0
    lam = jnp.where(pos, evals, 1.0)
    return jnp.where(pos, jnp.expm1(-lam * tau[:, None]) / lam, 0.0)


def steps_filter(evals, learning_rate, n, steps):
    """``(1 - ηλ/n)^t - 1`` ``(T, P)`` for integer steps ``t``; 0 for ``λ ≤ 0``."""
    pos = evals > 0
    lam = jnp.where(pos, evals, 1.0)
    # integer powers (repeated squaring): defined for any sign of 1 - ηλ/n
    return jnp.where(pos, (1 - learning_rate * lam / n)[None, :] ** steps[:, None] - 1, 0.0)


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
