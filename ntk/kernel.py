"""The `Kernel` record that flows through every `kernel_fn`.

For inputs ``x1`` of shape ``(N1, *S, C)`` and ``x2`` of shape ``(N2, *S, C)``
(``S`` the spatial shape, empty for vectors; channels last) a `Kernel` holds the
second moments of the pre-/post-activations of an infinitely wide layer:

* ``nngp[i, j, ...] = E[z(x1_i) z(x2_j)]``  — the NNGP kernel (Neal 1996; Lee et
  al. 2018), per output channel;
* ``ntk[i, j, ...]`` — the neural tangent kernel Θ (Jacot et al. 2018, eq. 5);
* ``cov1[i, ...] = E[z(x1_i) z(x1_i)]`` and ``cov2`` likewise for ``x2`` — the
  per-input covariances needed by the dual activations (``cov2 is None`` when
  ``x2`` is ``x1``).

Spatial layout. With ``diagonal_spatial=False`` (needed by pooling) every
spatial axis appears twice, interleaved as in neural-tangents:
``nngp.shape == (N1, N2, H, H, W, W)`` and ``cov1.shape == (N1, H, H, W, W)``.
With ``diagonal_spatial=True`` only the same-position covariances are kept:
``nngp.shape == (N1, N2, H, W)``, ``cov1.shape == (N1, H, W)``.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

GET_NAMES = ("nngp", "ntk", "cov1", "cov2")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """Second moments of a layer's outputs over two batches of inputs.

    Attributes:
      nngp: ``(N1, N2, *spatial)`` NNGP covariance.
      ntk: same shape as ``nngp``, or ``None`` when the NTK was not requested.
      cov1: ``(N1, *spatial)`` covariance of each ``x1`` with itself.
      cov2: ``(N2, *spatial)`` for ``x2``; ``None`` when ``x2`` is ``x1``.
      shape1, shape2: shapes ``(N, *S, C)`` of the (finite-width) activations;
        ``C`` is the width a finite network would have (used by the standard
        parameterization, never by the NTK parameterization).
      diagonal_spatial: whether spatial axes are stored once (see module doc).
      is_gaussian: whether the outputs are Gaussian (after an affine layer);
        nonlinearities require it, as in neural-tangents.
    """

    nngp: Array
    ntk: Optional[Array]
    cov1: Array
    cov2: Optional[Array]
    shape1: tuple
    shape2: tuple
    diagonal_spatial: bool = False
    is_gaussian: bool = False

    def replace(self, **changes) -> "Kernel":
        return dataclasses.replace(self, **changes)

    @property
    def x1_is_x2(self) -> bool:
        return self.cov2 is None

    @property
    def spatial_ndim(self) -> int:
        return len(self.shape1) - 2

    def var1(self) -> Array:
        """Variances ``E[z(x1_i, s)^2]`` of shape ``(N1, *S)``."""
        return _diag_of_cov(self.cov1, self.diagonal_spatial)

    def var2(self) -> Array:
        """Variances for ``x2`` (those of ``x1`` when ``x2`` is ``x1``)."""
        cov = self.cov1 if self.cov2 is None else self.cov2
        return _diag_of_cov(cov, self.diagonal_spatial)

    def outer_vars(self):
        """Variances broadcast against ``nngp``, ``cov1`` and ``cov2``.

        Returns ``((a12, b12), (a11, b11), (a22, b22))`` such that, e.g.,
        ``nngp[i, j, h1, h2] `` pairs with variances ``a12[i, ., h1, .]`` and
        ``b12[., j, ., h2]`` of its two arguments.
        """
        v1, v2 = self.var1(), self.var2()
        d, diag = self.spatial_ndim, self.diagonal_spatial
        out12 = (_expand(v1, d, diag, first=True, batch_pair=True),
                 _expand(v2, d, diag, first=False, batch_pair=True))
        out11 = (_expand(v1, d, diag, first=True, batch_pair=False),
                 _expand(v1, d, diag, first=False, batch_pair=False))
        out22 = None
        if self.cov2 is not None:
            out22 = (_expand(v2, d, diag, first=True, batch_pair=False),
                     _expand(v2, d, diag, first=False, batch_pair=False))
        return out12, out11, out22

    def map_covariances(self, fn) -> "Kernel":
        """Apply ``fn`` to ``nngp``, ``cov1`` and ``cov2`` (not the NTK)."""
        return self.replace(nngp=fn(self.nngp), cov1=fn(self.cov1),
                            cov2=None if self.cov2 is None else fn(self.cov2))


jax.tree_util.register_dataclass(
    Kernel,
    data_fields=["nngp", "ntk", "cov1", "cov2"],
    meta_fields=["shape1", "shape2", "diagonal_spatial", "is_gaussian"],
)


def _diag_of_cov(cov: Array, diagonal_spatial: bool) -> Array:
    """``(N, S1, S1, S2, S2, ...) -> (N, S1, S2, ...)`` same-position entries."""
    if diagonal_spatial:
        return cov
    d = (cov.ndim - 1) // 2
    for _ in range(d):
        # Each pass takes the diagonal of the first pair of spatial axes and
        # moves it to the end, so after d passes the order is restored.
        cov = jnp.diagonal(cov, axis1=1, axis2=2)
    return cov


def _expand(v: Array, d: int, diag: bool, first: bool, batch_pair: bool) -> Array:
    """Insert singleton axes into variances ``(N, *S)`` to match a layout."""
    n = v.shape[0]
    spatial = v.shape[1:]
    shape = []
    if batch_pair:
        shape += [n, 1] if first else [1, n]
    else:
        shape += [n]
    for s in spatial:
        if diag:
            shape += [s]
        else:
            shape += [s, 1] if first else [1, s]
    return v.reshape(shape)


def inputs_to_kernel(x1: Array, x2: Optional[Array], *, diagonal_spatial: bool,
                     compute_ntk: bool) -> Kernel:
    """The kernel of the inputs themselves: ``<x1_i(s), x2_j(s')> / C``.

    Dividing by the channel count ``C`` makes a following ``Dense(W_std)`` in
    NTK parameterization give ``W_std^2 <x, x'> / C + b_std^2``.
    """
    d = x1.ndim - 2
    letters = string.ascii_letters
    sp1 = letters[:d]
    sp2 = letters[d:2 * d] if not diagonal_spatial else sp1
    c = x1.shape[-1]
    if diagonal_spatial:
        pair = "".join(sp1)
        cov_out = "i" + pair
        nngp_out = "ij" + pair
    else:
        pair = "".join(a + b for a, b in zip(sp1, sp2))
        cov_out = "i" + pair
        nngp_out = "ij" + pair
    in1 = "i" + sp1 + "Z"
    in2_cov = "i" + sp2 + "Z"
    in2 = "j" + sp2 + "Z"
    hp = jax.lax.Precision.HIGHEST

    def gram(a, b):
        return jnp.einsum(f"{in1},{in2}->{nngp_out}", a, b, precision=hp) / c

    def cov(a):
        return jnp.einsum(f"{in1},{in2_cov}->{cov_out}", a, a, precision=hp) / c

    nngp = gram(x1, x1 if x2 is None else x2)
    cov1 = cov(x1)
    cov2 = None if x2 is None else cov(x2)
    # The barrier keeps XLA from constant-folding the first layers over a known
    # zero NTK: for a Conv stack on (N, N, H, W) that folding took minutes.
    ntk = jax.lax.optimization_barrier(jnp.zeros_like(nngp)) if compute_ntk else None
    return Kernel(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2,
                  shape1=tuple(x1.shape),
                  shape2=tuple((x1 if x2 is None else x2).shape),
                  diagonal_spatial=diagonal_spatial, is_gaussian=False)


def select(k: Kernel, get):
    """Return what ``get`` asks for: the `Kernel`, one array, or a namedtuple."""
    if get is None:
        return k
    if isinstance(get, str):
        return getattr(k, get)
    from collections import namedtuple
    record = namedtuple("Kernel", tuple(get))
    return record(*(getattr(k, g) for g in get))


def validate_get(get) -> Optional[tuple]:
    """Check ``get`` and return the tuple of names it asks for (None = all)."""
    if get is None:
        return None
    names: Sequence = (get,) if isinstance(get, str) else get
    if not isinstance(names, (tuple, list)) or not names:
        raise ValueError(f"kernel_fn: `get` must be None, a name or a non-empty "
                         f"tuple of names from {GET_NAMES}; got {get!r}.")
    for g in names:
        if g not in GET_NAMES:
            raise ValueError(f"kernel_fn: unknown `get` name {g!r}; expected one "
                             f"of {GET_NAMES} (or a tuple of them).")
    return tuple(names)
