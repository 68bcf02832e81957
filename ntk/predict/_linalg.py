"""Regularised kernel decompositions with clear failures, and spectral filters.

``_Regularised`` holds ``K + diag_reg·I`` with cached Cholesky and eigh;
``_expm1`` / ``_expm1_over`` are the filters ``expm1(-λτ)`` and
``expm1(-λτ)/λ`` applied to its eigenvalues (0 on untrained directions).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ntk.predict._checks import _concrete_value

_HP = jax.lax.Precision.HIGHEST


def _dot(a, b):
    return jnp.matmul(a, b, precision=_HP)


def _expm1(evals, tau):
    """``expm1(-λ τ)`` ``(T, P)``; 0 for ``λ ≤ 0`` (untrained directions)."""
    pos = evals > 0
    lam = jnp.where(pos, evals, 1.)
    return jnp.where(pos, jnp.expm1(-lam * tau[:, None]), 0.)


def _expm1_over(evals, tau):
    """``expm1(-λ τ) / λ``; 0 for ``λ ≤ 0`` (pseudo-inverse convention)."""
    pos = evals > 0
    lam = jnp.where(pos, evals, 1.)
    return jnp.where(pos, jnp.expm1(-lam * tau[:, None]) / lam, 0.)


class _Regularised:
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

    def _reg_matrix(self):
        k = self.k
        n = k.shape[0]
        scale = 1. if self.absolute else jnp.trace(k) / n
        return k + (self.diag_reg * scale) * jnp.eye(n, dtype=k.dtype)

    def cho_solve(self, b):
        cho = self._cho
        if cho is None:
            with jax.ensure_compile_time_eval():
                cho = jsl.cho_factor(self._reg_matrix(), lower=True)
            c = _concrete_value(cho[0])
            if c is not None:
                if not np.all(np.isfinite(c)):
                    raise self._error("its Cholesky factorisation failed")
                self._cho = cho
        return jsl.cho_solve(cho, b)

    def eigh(self):
        eig = self._eig
        if eig is None:
            with jax.ensure_compile_time_eval():
                evals, evecs = jnp.linalg.eigh(self._reg_matrix())
            c = _concrete_value(evals)
            if c is not None:
                eps = np.finfo(c.dtype).eps
                tol = 10 * max(c.shape[0], 10) * eps * max(np.abs(c).max(), 1e-300)
                if not np.all(np.isfinite(c)) or c[0] < -tol:
                    raise self._error("it has a clearly negative eigenvalue")
                eig = (evals, evecs)
                self._eig = eig
            else:
                eig = (evals, evecs)
        return eig

    def _error(self, what):
        k = np.asarray(self.k, dtype=np.float64)
        n = k.shape[0]
        if not np.all(np.isfinite(k)):
            return ValueError(f"{self.name}: `{self.arg}` has non-finite entries "
                              f"({int((~np.isfinite(k)).sum())} of {k.size}).")
        ev = np.linalg.eigvalsh((k + k.T) / 2)
        mean_diag = float(np.trace(k)) / n
        reg_abs = float(self.diag_reg) * (1. if self.absolute else mean_diag)
        eps = np.finfo(np.asarray(self.k).dtype).eps
        # Lift the smallest eigenvalue well above the round-off of a
        # factorisation in the kernel's precision (condition number <= 1/√eps).
        floor = max(100 * n * eps, np.sqrt(eps))
        need = max(-ev[0], 0.) + floor * max(abs(ev[-1]), 1e-300)
        suggest_abs = 10. ** math.ceil(math.log10(need))
        if self.absolute:
            hint = (f"diag_reg={suggest_abs:.0e} (absolute, as "
                    f"diag_reg_absolute_scale=True)")
        else:
            rel = 10. ** math.ceil(math.log10(suggest_abs / max(abs(mean_diag),
                                                                 1e-300)))
            hint = (f"diag_reg={rel:.0e} (relative to the mean diagonal "
                    f"{mean_diag:.3g}; diag_reg_absolute_scale=False)")
        return ValueError(
            f"{self.name}: the kernel `{self.arg}` plus diag_reg={self.diag_reg} "
            f"is not positive definite ({what}): its smallest eigenvalue is "
            f"{ev[0] + reg_abs:.3g} (largest {ev[-1] + reg_abs:.3g}). Duplicate "
            f"or nearly collinear inputs make kernels singular; add diagonal "
            f"regularisation, e.g. {hint}.")
