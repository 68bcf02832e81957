r"""The `Kernel` record that flows through every ``kernel_fn``.

For inputs ``x1`` of shape ``(N1, *S, C)`` and ``x2`` of shape ``(N2, *S, C)``
(``S`` the spatial shape, empty for vectors; channels last) a `Kernel` holds the
second moments of the pre-/post-activations of an infinitely wide layer:

* ``nngp[i, j, ...]`` :math:`= \mathbb{E}[z(\mathtt{x1}_i)\, z(\mathtt{x2}_j)]` — the NNGP
  kernel (Neal 1996; Lee et al. 2018), per output channel;
* ``ntk[i, j, ...]`` — the neural tangent kernel :math:`\Theta` (Jacot et al. 2018, eq. 5);
* ``cov1[i, ...]`` :math:`= \mathbb{E}[z(\mathtt{x1}_i)\, z(\mathtt{x1}_i)]` and ``cov2``
  likewise for ``x2`` — the per-input covariances needed by the dual activations
  (``cov2 is None`` when ``x2`` is ``x1``).

Spatial layout. With ``diagonal_spatial=False`` (needed by pooling) every
spatial axis appears twice, interleaved as in neural-tangents:
``nngp.shape == (N1, N2, H, H, W, W)`` and ``cov1.shape == (N1, H, H, W, W)``.
With ``diagonal_spatial=True`` only the same-position covariances are kept:
``nngp.shape == (N1, N2, H, W)``, ``cov1.shape == (N1, H, W)``.

Masks (variable-length sequences, padded graphs; see `ntk.stax.masking`).
``mask1`` (``mask2``) is None or a boolean array of the rank of ``shape1``
(``shape2``) and broadcastable to it, True where an entry of the layer's
output is masked (padding), as in neural-tangents. Masked entries count as
zeros: `Kernel.mask` zeroes every covariance that involves one. ``mask2`` is
None when ``x2`` is ``x1`` (then ``mask1`` serves both arguments).

Known NTKs (work a layer may skip, never a different result). The inputs'
kernel has :math:`\Theta = 0` (no parameters yet), recorded as ``ntk_is_zero``; an affine
layer in the NTK parameterization then gives
:math:`\Theta' = W_\mathrm{std}^2 \cdot 0 + K' = K'`, and stores it as the very array
``nngp`` (``ntk_is_nngp``), so a layer that applies one linear map to both (attention's
:math:`A K A^\top`, `ntk.stax.Aggregate`) computes it once. Neither can go stale:
``ntk_is_nngp`` is array identity, which implies equality, and ``ntk_is_zero`` is reset
by every `Kernel.replace` of ``ntk`` and dropped from the pytree (it does not survive
``jit``, ``tree_map`` or a ``scan`` carry, which may change the arrays).

Chords (vector inputs). Nearly collinear inputs differ in their kernels by
:math:`\sqrt{c_{11} c_{22}} - c_{12}`, a difference of nearly equal numbers: the angle
:math:`\theta` between them, which kinked activations (ReLU, ``Sign``) need
(:math:`K_{\varphi'} = (\pi - \theta)/(2\pi)` for ReLU), has an error of about
:math:`\sqrt{\epsilon}` when taken from ``nngp`` (3e-4 rad in float32), every
bias :math:`\sigma_b^2` added to all three makes it worse, and smooth ones (Erf)
lose :math:`1 - \rho^2` to rounding. So an unmasked kernel of
vectors also carries the chord
:math:`\chi = 2(\sqrt{c_{11} c_{22}} - c_{12}) = 2\sqrt{c_{11} c_{22}}\,(1 - \cos\theta)`
(``chord``; the squared distance of the two inputs' directions, times their
norms), computed from the inputs' directions (wide inputs: from their Gram
matrices, `CHORD_DIRECT_MAX_FEATURES`) and pushed through the layers that
know it, without cancellation but for ``Sin``/``Cos``'s outputs: an affine layer
adds the bias's pull (`ntk.stax.linear`), ReLU's family, the step, ``Sign``, ``Sin``/``Cos`` and
``Rbf`` map it in closed form (``ntk.stax.duals``), ``Erf``, ``Gaussian``,
``Gabor`` and ``ExpNormalized`` read it and pass on
:math:`2(\sqrt{K_{11} K_{22}} - K_{12})` (exactly 0 between identical inputs),
``Gelu`` reads it and passes none on,
``LayerNorm`` rescales it, ``FanInSum`` and ``FanInConcat`` add it (weighted by
channels, with the branches' norms' mixing term), and ``FanInProd`` multiplies it
through. Unlike the squared distance
:math:`c_{11} + c_{22} - 2c_{12} = \chi + (\sqrt{c_{11}} - \sqrt{c_{22}})^2`, it keeps
the angle of inputs that differ mostly in norm. Any other layer drops it
(`Kernel.replace` of ``nngp``, ``cov1`` or ``cov2`` without ``chord`` sets it to None),
and the layers after it take the angle from ``nngp`` as before.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import string
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk._autodiff import snap

Array = jax.Array

GET_NAMES = ("nngp", "ntk", "cov1", "cov2")
#: What else an analytic ``kernel_fn`` returns by name (NT's ``get``): the
#: finite network's output shapes for ``x1`` and ``x2``, as ``init_fn`` gives them.
SHAPE_NAMES = ("shape1", "shape2")


@dataclasses.dataclass(frozen=True)
class Kernel:
    r"""Second moments of a layer's outputs over two batches of inputs.

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
      mask1, mask2: None (nothing masked) or boolean arrays broadcastable to
        ``shape1`` / ``shape2``, True at masked (padding) entries; see the
        module docstring.
      ntk_is_zero: whether ``ntk`` is known to be exactly 0 (set by
        `inputs_to_kernel`; reset by `replace` when ``ntk`` changes, and not
        part of the pytree, so lost through ``jit`` or ``tree_map``).
      chord: ``(N1, N2)`` :math:`2(\sqrt{c_{11} c_{22}} - c_{12})`, carried apart
        from ``nngp`` so nearly collinear inputs keep their angle (module
        docstring), or None; reset by `replace` when ``nngp``, ``cov1`` or
        ``cov2`` changes without it.
      norm1, norm2: ``(N1,)``, ``(N2,)`` :math:`\sqrt{c_{ii}}` of the input
        kernel of vectors, from the inputs themselves (None elsewhere; reset
        by `replace` with ``cov1``/``cov2``): the first affine layer's chord
        depends on them, and through them its gradient in the inputs stays
        bounded at tiny inputs, where the derivative of
        :math:`\sqrt{c_{ii}}` in :math:`c_{ii}` is not (float32 overflowed).

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.kernel import Kernel
      >>> k = Kernel(nngp=jnp.eye(2), ntk=None, cov1=jnp.ones(2), cov2=None,
      ...            shape1=(2, 4), shape2=(2, 4))          # two inputs, 4 channels
      >>> k.spatial_ndim, k.x1_is_x2, k.var1().shape
      (0, True, (2,))
      >>> k2 = k.replace(ntk=2 * k.nngp)
      >>> float(k2.ntk[0, 0]), k2.ntk_is_nngp
      (2.0, False)
    """

    nngp: Array
    ntk: Optional[Array]
    cov1: Array
    cov2: Optional[Array]
    shape1: tuple
    shape2: tuple
    diagonal_spatial: bool = False
    is_gaussian: bool = False
    mask1: Optional[Array] = None
    mask2: Optional[Array] = None
    ntk_is_zero: bool = False
    chord: Optional[Array] = None
    norm1: Optional[Array] = None
    norm2: Optional[Array] = None

    def replace(self, **changes) -> "Kernel":
        """A copy with the given fields replaced (`dataclasses.replace`).

        A new ``ntk`` resets ``ntk_is_zero`` to False unless ``ntk_is_zero``
        is passed too, and a new ``nngp``, ``cov1`` or ``cov2`` resets ``chord``
        to None unless ``chord`` is passed too, so a layer that knows nothing
        of them cannot carry them onto kernels it changed.
        """
        if "ntk" in changes and "ntk_is_zero" not in changes:
            changes["ntk_is_zero"] = False
        if "chord" not in changes and not changes.keys().isdisjoint(("nngp", "cov1", "cov2")):
            changes["chord"] = None
        for norm, cov in (("norm1", "cov1"), ("norm2", "cov2")):
            if cov in changes and norm not in changes:
                changes[norm] = None
        return dataclasses.replace(self, **changes)

    @property
    def ntk_is_nngp(self) -> bool:
        r"""Whether ``ntk`` is the very array ``nngp`` (so :math:`\Theta = K` exactly).

        Set by the affine layers (NTK parameterization) over an input kernel
        whose NTK is zero (``ntk_is_zero``); any layer that computes ``ntk``
        and ``nngp`` apart ends it, and identity cannot hold for unequal
        arrays, so a layer may read it to compute one product for both.
        """
        return self.ntk is not None and self.ntk is self.nngp

    def map_nngp_ntk(self, fn) -> tuple:
        r"""``(fn(nngp), fn(ntk))`` for a map a layer applies alike to both.

        ``ntk`` None stays None. When :math:`\Theta = K` (`ntk_is_nngp`) ``fn`` runs once
        and its result serves as both, so :math:`\Theta = K` still holds after the map.
        """
        nngp = fn(self.nngp)
        if self.ntk is None:
            return nngp, None
        return nngp, nngp if self.ntk_is_nngp else fn(self.ntk)

    @property
    def x1_is_x2(self) -> bool:
        """Whether the kernel is of ``x1`` with itself (then ``cov2`` is None)."""
        return self.cov2 is None

    @property
    def spatial_ndim(self) -> int:
        """The number of spatial axes of the inputs (0 for vectors, 2 for NHWC images)."""
        return len(self.shape1) - 2

    def var1(self) -> Array:
        r"""Variances :math:`\mathbb{E}[z(\mathtt{x1}_i, s)^2]` of shape ``(N1, *S)``."""
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
        out12 = (
            _expand(v1, d, diag, first=True, batch_pair=True),
            _expand(v2, d, diag, first=False, batch_pair=True),
        )
        out11 = (
            _expand(v1, d, diag, first=True, batch_pair=False),
            _expand(v1, d, diag, first=False, batch_pair=False),
        )
        out22 = None
        if self.cov2 is not None:
            out22 = (
                _expand(v2, d, diag, first=True, batch_pair=False),
                _expand(v2, d, diag, first=False, batch_pair=False),
            )
        return out12, out11, out22

    def map_covariances(self, fn) -> "Kernel":
        """Apply ``fn`` to ``nngp``, ``cov1`` and ``cov2`` (not the NTK)."""
        return self.replace(
            nngp=fn(self.nngp),
            cov1=fn(self.cov1),
            cov2=None if self.cov2 is None else fn(self.cov2),
        )

    @property
    def is_masked(self) -> bool:
        """Whether either input carries a mask (`ntk.stax.MaskedArray`, ``mask_constant``)."""
        return self.mask1 is not None or self.mask2 is not None

    def position_masks(self):
        """``(m1, m2)``: masks of shape ``(N1, *S)`` and ``(N2, *S)``, True at
        masked positions, or ``(None, None)`` when nothing is masked.

        A position counts as masked when all its channels are (a channel-wise
        mask has no meaning for covariances, which average over channels).
        ``m2`` is ``m1`` when ``x2`` is ``x1``.
        """
        if not self.is_masked:
            return None, None

        def spatial(mask, shape):
            if mask is None:
                return jnp.zeros(shape[:-1], bool)
            mask = jnp.all(mask, axis=-1)
            return jnp.broadcast_to(mask, shape[:-1])

        m1 = spatial(self.mask1, self.shape1)
        m2 = m1 if self.cov2 is None else spatial(self.mask2, self.shape2)
        return m1, m2

    def mask_products(self):
        """``(m12, m11, m22)``: True where a covariance in ``nngp``/``ntk``,
        ``cov1`` and ``cov2`` involves a masked position (either argument);
        each broadcastable to its array. ``(None, None, None)`` if unmasked."""
        m1, m2 = self.position_masks()
        if m1 is None:
            return None, None, None
        d, diag = self.spatial_ndim, self.diagonal_spatial
        m12 = _expand(m1, d, diag, first=True, batch_pair=True) | _expand(
            m2, d, diag, first=False, batch_pair=True
        )
        m11 = _expand(m1, d, diag, first=True, batch_pair=False) | _expand(
            m1, d, diag, first=False, batch_pair=False
        )
        m22 = None
        if self.cov2 is not None:
            m22 = _expand(m2, d, diag, first=True, batch_pair=False) | _expand(
                m2, d, diag, first=False, batch_pair=False
            )
        return m12, m11, m22

    def mask(self, mask1: Optional[Array], mask2: Optional[Array]) -> "Kernel":
        """Set the masks and zero every covariance involving a masked position.

        ``nngp[i, j, s, t]`` (and ``ntk``) becomes 0 where position ``s`` of
        ``x1_i`` or ``t`` of ``x2_j`` is masked, ``cov1[i, s, t]`` where ``s`` or
        ``t`` of ``x1_i`` is (neural-tangents' ``Kernel.mask``).
        """
        k = self.replace(mask1=mask1, mask2=mask2)
        m12, m11, m22 = k.mask_products()
        if m12 is None:
            return k

        def zero(a, m):
            return None if a is None else jnp.where(m, jnp.zeros((), a.dtype), a)

        nngp, ntk = k.map_nngp_ntk(lambda a: zero(a, m12))
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=zero(k.cov1, m11),
            cov2=zero(k.cov2, m22),
        )


# ``ntk_is_zero`` is dropped, not static: ``tree_map``, ``jit`` and ``scan``
# rebuild the Kernel around arrays they may have changed, so every rebuilt
# Kernel starts from the safe False.
jax.tree_util.register_dataclass(
    Kernel,
    data_fields=["nngp", "ntk", "cov1", "cov2", "mask1", "mask2", "chord", "norm1", "norm2"],
    meta_fields=["shape1", "shape2", "diagonal_spatial", "is_gaussian"],
    drop_fields=["ntk_is_zero"],
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


def inputs_to_kernel(
    x1: Array,
    x2: Optional[Array],
    *,
    diagonal_spatial: bool,
    compute_ntk: bool,
    mask_constant=None,
    mask1: Optional[Array] = None,
    mask2: Optional[Array] = None,
) -> Kernel:
    r"""The kernel of the inputs themselves:
    :math:`\langle \mathtt{x1}_i(s), \mathtt{x2}_j(s') \rangle / C`.

    Dividing by the channel count :math:`C` makes a following ``Dense(W_std)`` in
    NTK parameterization give :math:`W_\mathrm{std}^2 \langle x, x' \rangle / C + b_\mathrm{std}^2`.

    Masks: entries equal to ``mask_constant`` (NaN matches NaN), or True in the
    given boolean ``mask1``/``mask2`` (broadcastable to ``x1``/``x2``), are
    masked: they are replaced by zeros before the Gram matrices are taken and
    the Kernel carries the (elementwise) masks. With no mask at all the Kernel
    is exactly the unmasked one (``mask1 = mask2 = None``).

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.kernel import inputs_to_kernel
      >>> x = jnp.array([[1., 2.], [3., -1.], [0., 1.]])             # (N, C)
      >>> k = inputs_to_kernel(x, None, diagonal_spatial=True, compute_ntk=False)
      >>> bool(jnp.allclose(k.nngp, x @ x.T / 2)), k.cov1.shape, k.ntk
      (True, (3,), None)
    """
    if mask_constant is not None or mask1 is not None or mask2 is not None:
        x1, mask1 = _masked_input(x1, mask1, mask_constant)
        if x2 is not None:
            x2, mask2 = _masked_input(x2, mask2, mask_constant)
            # One argument masked and the other not: give the other an
            # all-False mask, so both are None or both arrays.
            if mask1 is None:
                mask1 = jnp.zeros(x1.shape, bool)
            if mask2 is None:
                mask2 = jnp.zeros(x2.shape, bool)
        else:
            mask2 = None
    d = x1.ndim - 2
    letters = string.ascii_letters
    sp1 = letters[:d]
    sp2 = letters[d : 2 * d] if not diagonal_spatial else sp1
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
    # A zero XLA cannot see through: constant-folding the first layers over a
    # known zero NTK took minutes for a Conv stack on (N, N, H, W). The barrier
    # sits on a scalar, so the zeros are broadcast inside each consumer's loop
    # rather than written out at the size of the NNGP.
    zero = jax.lax.optimization_barrier(jnp.zeros((), nngp.dtype))
    ntk = jnp.broadcast_to(zero, nngp.shape) if compute_ntk else None
    masked = mask1 is not None or mask2 is not None
    chord = norm1 = norm2 = None
    if not (d or masked):
        # √c_ii from the inputs, so gradients stay finite at zero inputs.
        u1, n1 = _direction(x1)
        u2, n2 = (u1, n1) if x2 is None else _direction(x2)
        r1, r2 = n1 / math.sqrt(c), n2 / math.sqrt(c)
        chord = _chord(u1, u2, r1, r2, nngp)
        norm1, norm2 = r1, None if x2 is None else r2
    return Kernel(
        nngp=nngp,
        ntk=ntk,
        cov1=cov1,
        cov2=cov2,
        shape1=tuple(x1.shape),
        shape2=tuple((x1 if x2 is None else x2).shape),
        diagonal_spatial=diagonal_spatial,
        is_gaussian=False,
        mask1=mask1,
        mask2=mask2,
        ntk_is_zero=compute_ntk,
        chord=chord,
        norm1=norm1,
        norm2=norm2,
    )


#: Inputs with at most this many features get their chords from their
#: directions' differences (`input_chord`), right to rounding (identical
#: inputs, and inputs along one ray: exactly 0) at ``N1·N2·C`` elementwise
#: work; wider inputs from their Gram matrices, ``2(√(c11 c22) − c12)`` at no
#: cost, whose rounding (that of a sum of ``C`` products) leaves relative
#: chords below ``CHORD_SNAP·√C·ε`` unresolved: they are taken as 0, so
#: duplicated inputs keep equal kernels.
CHORD_DIRECT_MAX_FEATURES = 16
CHORD_SNAP = 8.0


def _direction(x):
    """``(x / |x|, |x|)`` per row (zeros for a zero row)."""
    # Scaled by the largest entry, so the squares neither overflow nor
    # underflow; written with selects, so a zero row has zero gradients. The
    # direction and the norm are exactly invariant to the scale, so it takes
    # no gradient (whose terms, ~x/top², would overflow).
    top = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=-1, keepdims=True))
    nonzero = top > 0
    y = x / jnp.where(nonzero, top, 1)
    length = jnp.sqrt(jnp.where(nonzero, jnp.sum(jnp.square(y), axis=-1, keepdims=True), 1))
    return jnp.where(nonzero, y / length, 0), jnp.where(nonzero, top * length, 0)[:, 0]


def input_chord(x1: Array, x2: Optional[Array]) -> Array:
    r"""``(N1, N2)`` chords :math:`2(\sqrt{c_{11} c_{22}} - c_{12})` of the input
    kernel :math:`c = \mathtt{x1} \cdot \mathtt{x2} / C` of vector inputs:
    :math:`\lVert \mathtt{x1}_i \rVert \lVert \mathtt{x2}_j \rVert / C` times the squared
    distance of their directions, from those directions' differences (0 for
    a zero input).

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.kernel import input_chord
      >>> input_chord(jnp.array([[1., 0.], [2., 0.]]), jnp.array([[0., 3.], [5., 0.]])).tolist()
      [[3.0, 0.0], [6.0, 0.0]]
    """
    (u1, n1), (u2, n2) = _direction(x1), _direction(x1 if x2 is None else x2)
    return n1[:, None] * n2[None, :] / x1.shape[-1] * _directions_sqdist(u1, u2)


def _directions_sqdist(u1, u2) -> Array:
    """``(N1, N2)`` squared distances of the rows of ``u1`` and ``u2``."""
    c = u1.shape[-1]
    if c > CHORD_DIRECT_MAX_FEATURES:  # one reduction, rather than C terms in the program
        return jnp.sum(jnp.square(u1[:, None, :] - u2[None, :, :]), axis=-1)
    # A sum of C pairwise terms is one vectorised loop (the reduction over a
    # broadcast (N1, N2, C) difference is 5x slower on CPU).
    return functools.reduce(
        jnp.add, (jnp.square(u1[:, None, z] - u2[None, :, z]) for z in range(c))
    )


def _chord(u1, u2, r1, r2, nngp) -> Array:
    """The inputs' ``chord`` from their directions ``u`` and ``r = √c_ii``
    (see `CHORD_DIRECT_MAX_FEATURES`)."""
    c = u1.shape[-1]
    p = r1[:, None] * r2[None, :]
    if c <= CHORD_DIRECT_MAX_FEATURES:
        return p * _directions_sqdist(u1, u2)
    smooth = 2 * (p - nngp)
    tol = CHORD_SNAP * math.sqrt(c) * jnp.finfo(smooth.dtype).eps
    return snap(smooth, smooth <= tol * 2 * p)


def constant_mask(x: Array, mask_constant) -> Array:
    """``x == mask_constant`` elementwise, with NaN matching NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.kernel import constant_mask
      >>> constant_mask(jnp.array([1., jnp.nan, 0.]), jnp.nan).tolist()
      [False, True, False]
    """
    if isinstance(mask_constant, (int, float, np.integer, np.floating)):
        if np.isnan(mask_constant):
            return jnp.isnan(x)
        return x == mask_constant
    c = jnp.asarray(mask_constant)
    return jnp.where(jnp.isnan(c), jnp.isnan(x), x == c)


def _masked_input(x: Array, mask: Optional[Array], mask_constant):
    """``(x with masked entries zeroed, boolean mask or None)``."""
    if mask_constant is not None:
        by_value = constant_mask(x, mask_constant)
        mask = by_value if mask is None else (jnp.asarray(mask, bool) | by_value)
    if mask is None:
        return x, None
    mask = jnp.broadcast_to(jnp.asarray(mask, bool), x.shape)
    return jnp.where(mask, jnp.zeros((), x.dtype), x), mask


def select(k: Kernel, get):
    """Return what ``get`` asks for: the `Kernel`, one array, or a namedtuple
    (a list of them for a list of Kernels, as NT returns for branches).

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.kernel import inputs_to_kernel, select
      >>> k = inputs_to_kernel(jnp.ones((2, 3)), None, diagonal_spatial=True, compute_ntk=True)
      >>> select(k, None) is k, select(k, "nngp") is k.nngp
      (True, True)
      >>> select(k, ("nngp", "cov1"))._fields
      ('nngp', 'cov1')
    """
    if get is None:
        return k
    if isinstance(k, (list, tuple)):  # branches of a network ending in FanOut
        return [select(b, get) for b in k]
    if isinstance(get, str):
        return getattr(k, get)
    return record_type("Kernel", tuple(get))(*(getattr(k, g) for g in get))


def is_input_pair(value) -> bool:
    """Whether a ``kernel_fn`` keyword value is given per input, NT's
    ``(for x1, for x2)`` pair of arrays (``for x2`` None: the same as for
    ``x1``, as with ``x2=None``), such as `ntk.stax.Aggregate`'s ``pattern``.

    Example:
      >>> import numpy as np
      >>> from ntk.kernel import is_input_pair
      >>> a = np.ones((3, 4, 4))
      >>> is_input_pair((a, a)), is_input_pair((a, None)), is_input_pair(a), is_input_pair((1, 2))
      (True, True, False, False)
    """
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and hasattr(value[0], "shape")
        and (value[1] is None or hasattr(value[1], "shape"))
    )


def none_if_no_leaves(x2):
    """``x2``, or None when it is a container of Nones only: NT's spelling of
    "``x2 = x1``" for several inputs, ``x2 = (None, None)`` beside ``x1 = (a, b)``.

    Example:
      >>> import numpy as np
      >>> from ntk.kernel import none_if_no_leaves
      >>> none_if_no_leaves((None, [None])), none_if_no_leaves((np.ones(1), None))[1]
      (None, None)
    """
    if x2 is not None and isinstance(x2, (tuple, list, dict)) and not jax.tree_util.tree_leaves(x2):
        return None
    return x2


def input_pairs_symmetric(kwargs: dict) -> bool:
    """Whether every per-input keyword pair (`is_input_pair`) gives ``x2``'s
    side what it gives ``x1``'s (None, or the very same object), so that the
    kernel of ``x2=None`` is symmetric and its tiles below the diagonal are
    the transposes of those above. ``rng`` is a key, never a pair.

    Example:
      >>> import numpy as np
      >>> from ntk.kernel import input_pairs_symmetric
      >>> a, b = np.ones((3, 4, 4)), np.zeros((3, 4, 4))
      >>> input_pairs_symmetric({"pattern": (a, None)}), input_pairs_symmetric({"pattern": (a, a)})
      (True, True)
      >>> input_pairs_symmetric({"pattern": (a, b)})
      False
    """
    return not any(
        is_input_pair(v) and v[1] is not None and v[1] is not v[0]
        for k, v in kwargs.items()
        if k != "rng"
    )


@functools.lru_cache(maxsize=None)
def record_type(typename: str, fields: tuple) -> type:
    """The namedtuple class of ``fields``, one per ``(typename, fields)`` as NT
    keeps them: results of separate calls or traces have one pytree type, so
    ``jax.tree.map`` can concatenate them.

    Example:
      >>> from ntk.kernel import record_type
      >>> record_type("Kernel", ("nngp", "ntk")) is record_type("Kernel", ("nngp", "ntk"))
      True
    """
    return collections.namedtuple(typename, fields)  # type: ignore[misc]


def validate_get(get) -> Optional[tuple]:
    """Check ``get`` and return the tuple of names it asks for (None = all).

    Example:
      >>> from ntk.kernel import validate_get
      >>> validate_get("ntk"), validate_get(["nngp", "ntk"]), validate_get(None)
      (('ntk',), ('nngp', 'ntk'), None)
      >>> validate_get("cov")
      Traceback (most recent call last):
      ...
      ValueError: kernel_fn: unknown `get` name 'cov'; expected one of ...
    """
    if get is None:
        return None
    names: Sequence = (get,) if isinstance(get, str) else get
    if not isinstance(names, (tuple, list)) or not names:
        raise ValueError(
            f"kernel_fn: `get` must be None, a name or a non-empty "
            f"tuple of names from {GET_NAMES}; got {get!r}."
        )
    for g in names:
        if g not in GET_NAMES + SHAPE_NAMES:
            raise ValueError(
                f"kernel_fn: unknown `get` name {g!r}; expected one "
                f"of {GET_NAMES + SHAPE_NAMES} (or a tuple of them)."
            )
    return tuple(names)
