"""The kernel eigensystem's internals shared by `ntk.random_features.eigen` and
`ntk.random_features.features` (internal: not part of the public API)."""

from __future__ import annotations

import numpy as np

from ntk import _checks


def descending_eigh(k, xp):
    """``eigh`` of the symmetric part of ``k`` with ``xp`` (numpy or jax.numpy):
    eigenvalues descending and clipped at 0, eigenvectors as columns in the
    same order."""
    evals, u = xp.linalg.eigh(0.5 * (k + k.T))
    return xp.maximum(evals[::-1], 0.0), u[:, ::-1]


def square_numpy(kernel, arg, name):
    """A finite, symmetric, non-empty ``(N, N)`` float64 NumPy matrix."""
    k = _checks.as_numpy(kernel, arg, name, ndim=2, dtype=np.float64, what="(N, N)", nonempty=True)
    if k.shape[0] != k.shape[1]:
        raise ValueError(f"{name}: `{arg}` must be square (N, N); got shape {k.shape}.")
    return _checks.require_symmetric(k, arg, name)


def eigensystem_arg(eig, kernel, name):
    """``eig`` checked as `kernel_eigensystem` of ``kernel`` ((N, N), already
    checked by `square_numpy`), or computed when None: ``(μ, U)`` with μ (N,)
    descending and U (N, N)."""
    if eig is None:
        return descending_eigh(kernel, np)
    try:
        mu, u = eig
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: `eig` must be the pair (eigenvalues, eigenvectors) of "
            f"kernel_eigensystem(kernel); got {type(eig).__name__}."
        ) from None
    n = kernel.shape[0]
    mu = _checks.as_numpy(mu, "eig[0]", name, ndim=1, dtype=np.float64, what=f"({n},)")
    u = _checks.as_numpy(u, "eig[1]", name, ndim=2, dtype=np.float64, what=f"({n}, {n})")
    if mu.shape != (n,) or u.shape != (n, n):
        raise ValueError(
            f"{name}: `eig` must hold eigenvalues ({n},) and eigenvectors ({n}, {n}) "
            f"of the ({n}, {n}) kernel; got shapes {mu.shape} and {u.shape}."
        )
    if np.any(np.diff(mu) > 0):
        raise ValueError(
            f"{name}: `eig` must be kernel_eigensystem(kernel), eigenvalues in "
            f"descending order; got them in another order (numpy.linalg.eigh's "
            f"ascending order?): first {mu[:3].tolist()}."
        )
    if mu[-1] < 0:
        raise ValueError(
            f"{name}: `eig` must be kernel_eigensystem(kernel), eigenvalues "
            f"clipped at 0; got a smallest eigenvalue of {mu[-1]:.3g}."
        )
    return mu, u
