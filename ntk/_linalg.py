r"""Jittered positive-definite factorisation shared by the library (internal).

One definition of the diagonal regularisation that every kernel solve in
``ntk`` uses, one Cholesky factorisation with clear failures, and the
matrix product at full precision.

Regularisation. A kernel matrix ``K (n, n)`` is factorised as

    K̃ = K + j I,      j = a · mean(diag K)   (relative, the default),
                      j = a                  (absolute),

for a non-negative amount ``a``. The library calls ``a`` by two names with
this one meaning:

* ``diag_reg`` in `ntk.predict` (neural-tangents' name and API): relative
  unless ``diag_reg_absolute_scale=True``;
* ``jitter`` in `ntk.dkm` (`FullDKM`, `SparseDKM`, `nngp_grams`, the
  sampler and the deep GP) and `ntk.mup.dmft.dmft_solve`: relative, i.e.
  ``jitter`` is ``diag_reg`` with ``diag_reg_absolute_scale=False``, unless
  the function's ``jitter_absolute_scale=True``. The deep-GP sampler
  (`ntk.dkm.sampling`) and the variational deep GP (`ntk.dkm.deep_gp`) take
  that flag and default it to True (absolute, ``relative=False`` here), as
  their papers' code does.

A relative amount is scale free: multiplying ``K`` by ``c`` multiplies ``j``
by ``c`` and leaves the conditioning of ``K̃`` unchanged.

Failures. On a concrete matrix whose (jittered) factorisation is not finite,
`jittered_cholesky` raises a ValueError that reports the smallest and
largest eigenvalues of ``K̃`` and an amount that would make it factorise:
``λ_min(K̃)`` lifted to ``max(100 n eps, √eps) · λ_max`` (condition number at
most ``1/√eps`` in the matrix's precision), rounded up to a power of ten and
expressed in the caller's terms (relative or absolute, under the caller's
argument name). Under a trace (``jit``, ``grad``, ``vmap``) nothing can be
raised: the NaNs of a failed factorisation propagate.

Example:
  >>> import jax.numpy as jnp
  >>> from ntk._linalg import jittered_cholesky
  >>> k = jnp.ones((3, 3))                          # rank one: not definite
  >>> float(jittered_cholesky(k, 1e-6).jitter)     # 1e-6 · mean(diag K)
  1e-06
  >>> jittered_cholesky(k, where="f", arg="k")     # doctest: +ELLIPSIS
  Traceback (most recent call last):
  ValueError: f: the matrix `k` is not positive definite ... e.g. jitter=... (relative to the mean diagonal 1), or use float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ntk._checks import concrete, require_bool

HP = jax.lax.Precision.HIGHEST


def dot(a, b):
    """``a @ b`` at the highest matmul precision (exact float32 on accelerators)."""
    return jnp.matmul(a, b, precision=HP)


def require_scale_flag(value, arg: str, where: str) -> bool:
    """A ``*_absolute_scale`` flag (``diag_reg_absolute_scale``,
    ``jitter_absolute_scale``) as ``bool``; anything else is a TypeError naming
    ``arg`` and what each value means."""
    return require_bool(
        value,
        arg,
        where,
        "a bool (True: the amount is absolute; False: relative to the mean diagonal)",
    )


def jitter_amount(k, jitter, relative: bool = True):
    """The absolute diagonal amount ``j``: ``jitter · mean(diag k)`` or ``jitter``."""
    return jitter * jnp.mean(jnp.diagonal(k)) if relative else jitter


def add_jitter(k, jitter, relative: bool = True):
    """``(k + j I, j)`` with ``j = jitter_amount(k, jitter, relative)``."""
    j = jitter_amount(k, jitter, relative)
    return k + j * jnp.eye(k.shape[0], dtype=k.dtype), j


def phi(m):
    """``Φ(M)``: the lower triangle of ``M`` with its diagonal halved (Murray
    2016), the map between a lower-triangular factor's change and the
    symmetric change of its Gram."""
    return jnp.tril(m) - 0.5 * jnp.diag(jnp.diagonal(m))


@jax.custom_vjp
def cholesky_fast_vjp(a):
    """``jnp.linalg.cholesky(a)`` whose reverse-mode derivative is Murray's.

    Murray 2016 ("Differentiation of the Cholesky decomposition", eq. 10):
    ``Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹)``: two triangular solves and one product,
    about half the cost of differentiating through JAX's Cholesky JVP. Being a
    ``custom_vjp`` it has no forward-mode derivative (``jax.jvp``): use it
    where only gradients are taken.
    """
    return jnp.linalg.cholesky(a)


def _cholesky_fwd(a):
    l = jnp.linalg.cholesky(a)
    return l, l


def _cholesky_bwd(l, l_bar):
    p = phi(dot(l.T, l_bar))
    x = jsl.solve_triangular(l, p, lower=True, trans=1)
    s = jsl.solve_triangular(l, x.T, lower=True, trans=1).T
    return (0.5 * (s + s.T),)


cholesky_fast_vjp.defvjp(_cholesky_fwd, _cholesky_bwd)


class JitteredCholesky(NamedTuple):
    """``factor``: lower ``L`` with ``L Lᵀ = K + jitter · I``; ``jitter``: the
    absolute amount ``j`` that was added (a scalar)."""

    factor: jax.Array
    jitter: jax.Array


def jittered_cholesky(
    k,
    jitter=0.0,
    *,
    relative: bool = True,
    fast_vjp: bool = False,
    where: str = "ntk",
    arg: str = "K",
    param: str = "jitter",
    scale_flag: Optional[str] = None,
) -> JitteredCholesky:
    """Lower Cholesky factor of ``K + j I`` (module doc) with a clear failure.

    Args:
      k: ``(n, n)`` symmetric matrix.
      jitter: the amount ``a ≥ 0``; ``relative`` selects ``j = a · mean(diag K)``
        (True) or ``j = a`` (False).
      fast_vjp: differentiate by `cholesky_fast_vjp` (reverse mode only).
      where, arg, param: the public function, the matrix's and the amount's
        argument names, for the error message; ``scale_flag``: the caller's
        argument that switches relative/absolute (e.g.
        ``"diag_reg_absolute_scale"``), named in the suggestion.

    Returns:
      `JitteredCholesky` ``(factor, jitter)``.
    """
    kj, j = add_jitter(k, jitter, relative)
    factor = (cholesky_fast_vjp if fast_vjp else jnp.linalg.cholesky)(kj)
    check_factor(
        factor,
        k,
        jitter,
        relative=relative,
        where=where,
        arg=arg,
        param=param,
        scale_flag=scale_flag,
    )
    return JitteredCholesky(factor, j)


def check_factor(factor, k, jitter=0.0, **message):
    """Raise `not_positive_definite` if ``factor`` is concrete and not finite
    (``k`` is the matrix before the jitter ``jitter`` was added; ``message``:
    that function's keyword arguments)."""
    c = concrete(factor)
    if c is not None and not np.all(np.isfinite(c)):
        raise not_positive_definite(k, jitter, **message)
    return factor


def _working_jitter(k: np.ndarray, ev: np.ndarray, eps: float, floor: float) -> float:
    """A power of ten ``a`` (absolute) such that ``k + a I`` factorises in
    ``k``'s own precision, with a factor of 10 to spare.

    The eigenvalues bound what is needed from below (``-λ_min``, plus rounding
    of ``ε λ_max``); rounding in the factorisation itself is usually far below
    the worst-case ``n ε λ_max``, so the bound is tried first and raised tenfold
    until LAPACK's Cholesky succeeds. (A duplicated input in float32 makes an
    800-input NTK singular; the worst case would suggest a jitter 10x its mean
    diagonal, which ruins the predictions, where 1e-7 of it factorises; this
    suggests 1e-2, the start's 10 ε λ_max and the spare factor of 10.)
    Falls back to the worst case ``|λ_min| + floor·λ_max`` if no such ``a``
    is found within 12 decades.
    """
    top = max(abs(ev[-1]), 1e-300)
    a = 10.0 ** math.ceil(math.log10(max(-ev[0], 0.0) + 10 * eps * top))
    dtype = np.float64 if k.dtype == np.float64 else np.float32
    work = np.asarray((k + k.T) / 2, dtype=dtype)
    eye = np.eye(work.shape[0], dtype=work.dtype)
    for _ in range(12):
        try:
            np.linalg.cholesky(work + work.dtype.type(a) * eye)
            return 10.0 * a
        except np.linalg.LinAlgError:
            a *= 10.0
    return 10.0 ** math.ceil(math.log10(max(-ev[0], 0.0) + floor * top))


def not_positive_definite(
    k,
    jitter=0.0,
    *,
    relative: bool = True,
    where: str = "ntk",
    arg: str = "K",
    param: str = "jitter",
    scale_flag: Optional[str] = None,
    what: str = "its Cholesky factorisation failed",
) -> ValueError:
    """The ValueError for a matrix ``k`` that ``k + j I`` did not make definite:
    its smallest and largest eigenvalues (with ``j``) and an amount that works."""
    m = np.asarray(k, dtype=np.float64)
    n = m.shape[0]
    if not np.all(np.isfinite(m)):
        return ValueError(
            f"{where}: `{arg}` has non-finite entries ({int((~np.isfinite(m)).sum())} of {m.size})."
        )
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    mean_diag = float(np.trace(m)) / n
    j = float(jitter) * (mean_diag if relative else 1.0)
    eps = np.finfo(np.asarray(k).dtype).eps
    floor = max(100 * n * eps, np.sqrt(eps))
    if not np.any(m):
        # No relative amount helps a zero matrix, and log10(0) below would fail.
        absolute = f"; pass {scale_flag}=True for an absolute {param}" if scale_flag else ""
        return ValueError(
            f"{where}: the matrix `{arg}` is identically zero, so it has no "
            f"Cholesky factor and a {param} relative to its mean diagonal adds "
            f"nothing{absolute if relative else ''}. A network whose readout "
            f"has W_std=0, for example, has a zero NNGP."
        )
    suggest_abs = _working_jitter(np.asarray(k), ev, eps, floor)
    if relative:
        rel = 10.0 ** math.ceil(math.log10(suggest_abs / max(abs(mean_diag), 1e-300)))
        flag = f"; {scale_flag}=False" if scale_flag else ""
        hint = f"{param}={rel:.0e} (relative to the mean diagonal {mean_diag:.3g}{flag})"
    else:
        flag = f", as {scale_flag}=True" if scale_flag else ""
        hint = f"{param}={suggest_abs:.0e} (absolute{flag})"
    plus = f" plus {param}={jitter}" if float(jitter) else ""
    return ValueError(
        f"{where}: the matrix `{arg}`{plus} is not positive definite "
        f"({what}): its smallest eigenvalue is {ev[0] + j:.3g} (largest "
        f"{ev[-1] + j:.3g}). Duplicate or nearly collinear inputs make kernels "
        f"singular; add diagonal regularisation, e.g. {hint}, or use float64."
    )
