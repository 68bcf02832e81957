r"""Centred kernel alignment of two Gram matrices.

Cortes, Mohri & Rostamizadeh 2012 ("Algorithms for learning kernels based on
centered alignment", JMLR): with the centring matrix
:math:`H = I - \mathbf{1}\mathbf{1}^\top / P`,

.. math::

    A(K_1, K_2) = \langle H K_1 H, H K_2 H \rangle_F
    \,/\, \big(\lVert H K_1 H \rVert_F\, \lVert H K_2 H \rVert_F\big) \in [-1, 1],

1 when :math:`K_1 \propto K_2` after centring. Yang et al. 2023 use it to show
the top DKM Gram moving towards :math:`Y Y^\top` as :math:`\nu` falls
(`ntk.dkm.sweep`).

    >>> import numpy as np
    >>> from ntk.dkm import centred_alignment
    >>> y = np.array([[1.0], [-1.0], [2.0]])
    >>> round(centred_alignment(3 * y @ y.T, y @ y.T), 6)    # proportional Grams
    1.0
    >>> round(centred_alignment(np.eye(3), y @ y.T), 3)      # white noise vs targets
    0.707
"""

from __future__ import annotations

import numpy as np

from ntk import _checks

__all__ = ["centred_alignment"]


def centred_alignment(a, b) -> float:
    r""":math:`\langle HAH, HBH \rangle_F / (\lVert HAH \rVert\, \lVert HBH \rVert)`,
    :math:`H = I - \mathbf{1}\mathbf{1}^\top / P`, for ``(P, P)`` matrices (computed in
    float64).

    Example:
      >>> import numpy as np
      >>> from ntk.dkm import centred_alignment
      >>> y = np.array([[1.0], [-1.0], [2.0]])
      >>> round(centred_alignment(y @ y.T + 5.0, y @ y.T), 6)   # centring removes the offset
      1.0
    """
    name = "centred_alignment"
    a = _checks.as_numpy(a, "a", name, ndim=2, what="(P, P)", dtype=np.float64)
    b = _checks.as_numpy(b, "b", name, ndim=2, what="(P, P)", dtype=np.float64)
    if a.shape[0] != a.shape[1] or a.shape != b.shape:
        raise ValueError(
            f"{name}: `a` and `b` must be square matrices of one shape "
            f"(P, P); got {a.shape} and {b.shape}."
        )
    h = np.eye(len(a)) - 1.0 / len(a)
    ca, cb = h @ a @ h, h @ b @ h
    norms = {"a": float(np.linalg.norm(ca)), "b": float(np.linalg.norm(cb))}
    for arg, m in (("a", a), ("b", b)):
        # Centring leaves only round-off of a constant matrix c·11ᵀ (or 0):
        # the angle to it is undefined, not the ratio of two round-offs.
        if norms[arg] <= 1e-12 * max(float(np.linalg.norm(m)), 1e-300):
            raise ValueError(
                f"{name}: `{arg}` is constant (a multiple of 11ᵀ) after centring, so "
                "its centred alignment is undefined."
            )
    return float(np.sum(ca * cb) / (norms["a"] * norms["b"]))
