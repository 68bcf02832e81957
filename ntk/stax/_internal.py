"""Internal helpers that `ntk.stax` shares with the other packages of `ntk`.

Not public API: names here may change without notice. They live in one place
so that `ntk.empirical`, `ntk.mup` and `ntk.dkm` reuse the layers' own
conventions instead of copying them:

* `split_rng`: how combinators hand PRNG keys to their sub-layers;
* `split_static_kwargs`: which keyword arguments of a kernel function are
  traced (arrays) and which are compiled in (flags, numbers, strings), for
  `KernelFn` and `ntk.parallel.batch` alike;
* `fusion_fence`: an identity that steers XLA's fusion on CPU;
* the numerics of dual kernels (`correlation`, `angle`, `atan2`,
  `safe_sqrt`, `sin_angle_term`, ...): square roots, correlations and angles
  that stay accurate at any variance and have finite derivatives at
  correlation ±1 and at zero variance. `ntk.stax.duals` builds every
  closed-form activation kernel from them; `ntk.dkm` its arc-cosine Gram
  kernels.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk._autodiff import snap


def split_rng(kwargs: dict, n: int) -> list[dict]:
    """Per-sub-layer kwargs: an ``rng`` is split so dropout masks differ.

    The convention of neural-tangents and ``jax.example_libraries.stax``:
    ``serial``/``parallel`` split the key into one per sub-layer, so the finite
    network, its empirical NTK and its Monte Carlo kernel all draw the same
    masks.
    """
    rng: Optional[jax.Array] = kwargs.get("rng")
    if rng is None:
        return [kwargs] * n
    keys = jax.random.split(rng, n)
    return [{**kwargs, "rng": keys[i]} for i in range(n)]


PI = math.pi


def fusion_fence(x):
    """``x`` itself (bit for bit), as an operation XLA's CPU compiler keeps.

    A ``reduce_precision`` to the dtype's own exponent and mantissa widths:
    the identity on every value (infinities, NaN and subnormals included),
    which XLA does not remove. It guides fusion on CPU, where two things make
    spatial kernels (``(N, N, *S, *S)`` covariances) several times slower:

    * a reduction (e.g. `GlobalAvgPool`'s mean) becomes a library (YNNPACK)
      fusion that absorbs the cheap tail of its elementwise producer and
      splits the rest into several loops, each writing a full-size
      intermediate; fenced, the producer is one vectorised loop and the
      reduction reads its output;
    * two chains that share expensive intermediates (an activation's NNGP
      and its derivative kernel both need the angle) are materialised
      through them; a fenced copy of the shared input gives the second chain
      operands common-subexpression elimination cannot merge, so each is one
      loop that recomputes what it needs.

    Measured on 2 CPU cores: the softmax-attention NTK of 64 sequences of
    length 32 went from 31 to 22 ms, a 3-layer ReLU CNN with global pooling
    on 64 8×8 images from 480 to 315 ms.
    """
    info = jnp.finfo(jnp.result_type(x))
    return jax.lax.reduce_precision(x, info.nexp, info.nmant)


# ---------------------------------------------------------------- numerics
#
# Every dual of `ntk.stax.duals` is evaluated from normalised quantities —
# correlations ρ = c12/sqrt(c11 c22) and per-input factors such as
# 1/(1 + 2b²c) — instead of products like c11·c22 or (1 + 2b²c11)(1 + 2b²c22) - 4b⁴c12². Those
# products overflow once the variances pass ~1e154 (float64) or ~1e19
# (float32), and their differences cancel catastrophically at large variance
# (in float32, Erf's radicand keeps no correct digit on the diagonal once the
# variance reaches ~1e7). Per-input factors are
# computed on the (N, 1) and (1, N) variance arrays, so they cost O(N), and
# every pairwise combination is built from commutative products/sums of
# them, so a kernel of x with itself is symmetric to the last bit.


@jax.custom_jvp
def safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose derivative is 0 (not inf) at 0, for per-input
    values (variances): ends in the square root, for the reason given in
    `inv_sqrt`. Pairwise quantities that are 0 at identical inputs take
    `pair_sqrt`."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = safe_sqrt(x)
    pos = x > 0
    return y, jnp.where(pos, t / (2 * jnp.where(pos, y, 1.0)), 0.0)


def pair_sqrt(x):
    """``sqrt(max(x, 0))`` whose derivatives of every order are 0 at and
    below 0, written without a `jax.custom_jvp`: for pairwise quantities
    such as sin θ = sqrt(1 − ρ²), which is exactly 0 for an input with
    itself. Reverse mode through `jax.lax.scan` does not keep a custom rule
    at the second order (jax 0.10), and sqrt's own derivative there is inf:
    `safe_sqrt` made the Hessian of every looped ReLU network (`stax.repeat`,
    serial runs of equal blocks) NaN, even between distinct inputs, through
    the kernels of each input with itself. The selects are pairwise anyway,
    so they cost nothing that `safe_sqrt` saves. NaN in, NaN out.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> [float(v) for v in pair_sqrt(jnp.array([4.0, 0.0, -1.0, jnp.nan]))]
      [2.0, 0.0, 0.0, nan]
      >>> float(jax.grad(jax.grad(pair_sqrt))(0.0))
      0.0
    """
    pos = x > 0
    root = jnp.sqrt(jnp.where(pos, x, 1.0))
    return jnp.where(pos, root, jnp.where(jnp.isnan(x), x, 0.0))


def norm_gap(r1, r2):
    """``r1 − r2`` of two inputs' norms, 0 where it is within the rounding
    of the norms themselves (8 eps of their sum). The per-input norms reach
    a pairwise loop computed apart (XLA may fuse the chain that made them
    into each side of the loop, with or without fused multiply-adds), so an
    input and itself can differ there by an ulp: at norms ~1e6 in float32
    that ulp, squared, is a squared distance of 0.01 (RBF kernel 0.997 of
    an input with itself). A genuine gap that small is below what the
    rounded variances resolve anyway. Differentiated as ``r1 − r2``
    (`snap`)."""
    gap = r1 - r2
    return snap(gap, jnp.abs(gap) <= 8 * eps_of(gap) * (r1 + r2))


def identical(chord, v1, v2):
    """Pairs of identical inputs: chord 0 (`ntk.kernel.Kernel.chord`) and
    equal variances; a chord of 0 alone also holds inputs along one ray."""
    return (chord == 0) & (v1 == v2)


def inv_sqrt(c):
    """``1/sqrt(c)`` for ``c > 0`` and 0 otherwise (finite derivatives at 0).

    Written in terms of sqrt(c) only: the pairwise loops must consume
    per-input values only through expensive operations (sqrt, division),
    which XLA computes once per input. A cheap operation on ``c`` itself
    (e.g. ``c > 0``) would be fused into the (N, N) loop together with the
    whole cheap chain that produced ``c`` — the previous layers' duals of the
    variances — and repeated for every pair (which makes a 10-layer ReLU
    network 5x slower).
    """
    s = safe_sqrt(c)
    return 1 / jnp.where(s > 0, s, jnp.inf)


def inv(p):
    """``1/p`` for ``p > 0`` and 0 otherwise (finite derivatives at 0);
    ends in the division for the reason given in `inv_sqrt`."""
    return 1 / jnp.where(p > 0, p, jnp.inf)


def pairwise(c12, *values):
    """Per-input arrays broadcast once to the pairwise shape of ``c12``.

    Reverse-mode autodiff then sums each one's cotangent over the other input
    once, instead of once per operation that uses it (each such sum is a
    reduction that XLA fuses with a recomputation of the whole pairwise
    expression, which makes Erf's gradient compile 3x slower).
    """
    shape = jnp.shape(c12)
    return [jnp.broadcast_to(v, jnp.broadcast_shapes(shape, jnp.shape(v))) for v in values]


def eps_of(x):
    return jnp.finfo(jnp.result_type(x)).eps


@jax.custom_jvp
def correlation(c12, c11, c22):
    """``(ρ, 1 − ρ²)`` for ``ρ = c12 / sqrt(c11 c22)``, with rounding noise removed.

    ρ = 0 where a variance is 0 (a zero-variance input is uncorrelated with
    everything). At correlation ±1 (identical inputs) ``1 − ρ²`` is zero, but
    rounding leaves a few eps: in ρ itself, and in c12 versus c11, c22, which
    a deep network computes separately and which drift apart by an ulp every
    few layers. Square roots magnify that to ~sqrt(eps) (1e-7 in float64,
    3e-3 in float32). Values within 64 eps of zero are therefore taken as
    zero: the kernel of x with itself is exact and independent of how it was
    computed, at the price of an error below sqrt(64 eps) in the angle
    between distinct inputs that are that nearly collinear (1.2e-7 in
    float64, 2.8e-3 in float32).

    The derivative is given in closed form, ``dρ = dc12/sqrt(c11 c22) −
    (ρ/2)(dc11/c11 + dc22/c22)``: the chain rule through c12·(1/sqrt(c11))
    would form c12·∂K/∂ρ, which overflows float32 at variances ~1e19 even
    where the gradient itself is moderate.
    """
    rho = c12 * (inv_sqrt(c11) * inv_sqrt(c22))
    one_minus = (1 - rho) * (1 + rho)
    return rho, jnp.where(one_minus <= 64 * eps_of(one_minus), 0.0, one_minus)


@correlation.defjvp
def _correlation_jvp(primals, tangents):
    (c12, c11, c22), (d12, d11, d22) = primals, tangents
    rho, one_minus = correlation(c12, c11, c22)
    drho = d12 * (inv_sqrt(c11) * inv_sqrt(c22)) - rho * (d11 * inv(c11) + d22 * inv(c22)) / 2
    # d(1 − ρ²) also where 1 − ρ² is snapped to 0 (see `snap`).
    return (rho, one_minus), (drho, -2 * rho * drho)


def gap(rho_signed):
    """``1 − ρ`` with the rounding noise at ρ = 1 removed (see `correlation`);
    differentiated as ``1 − ρ`` everywhere (`snap`)."""
    gap = 1 - rho_signed
    return snap(gap, gap <= 32 * eps_of(gap))


def sin_angle_term(c12, c11, c22):
    """``sqrt(c11 c22 - c12²)`` = sqrt(c11 c22)·sin θ, from the correlation
    (no overflow of c11·c22; rounding noise at θ = 0, π removed as in
    `correlation`)."""
    _, one_minus = correlation(c12, c11, c22)
    return safe_sqrt(c11) * safe_sqrt(c22) * pair_sqrt(one_minus)


# atan(w) = w + w·t·P(t), t = w², on |w| ≤ tan(π/8): a degree-10 Chebyshev
# fit of (atan(w)/w − 1)/t (relative error 2e-16, i.e. float64-exact). XLA's
# atan2 is a scalar libm call on CPU (~35 ns); this is ~12 fused multiply-adds
# that vectorise, which makes arc-cosine kernels ~50x cheaper.
_ATAN_COEF = (
    -0.3333333333333335,
    0.1999999999999635,
    -0.14285714284944914,
    0.11111111041531378,
    -0.09090905730334234,
    0.07692211093816727,
    -0.06664914021181749,
    0.05861695262057322,
    -0.05104154057103348,
    0.03977414681194997,
    -0.019842141537042956,
)
# The same fit of degree 4 for float32 and narrower: relative error 2.5e-9,
# below float32's rounding, for 6 fewer multiply-adds.
_ATAN_COEF_32 = (
    -0.3333333176116625,
    0.1999954048349856,
    -0.14263955595171407,
    0.10743731470795079,
    -0.064519281599026,
)
_TAN_PI_8 = math.tan(PI / 8)


def atan2(y, x):
    """``arctan2(y, x)`` (same values as `jnp.arctan2`, ~1 ulp) by octant
    reduction and a polynomial; ``atan2(0, 0) = 0``; NaN in, NaN out."""
    ax, ay = jnp.abs(x), jnp.abs(y)
    hi, lo = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
    # z = lo/hi ∈ [0, 1] (0 at hi = 0, NaN stays NaN). This exact form —
    # a select after each division — matters for speed: variants that end in
    # the division, or divide selected operands, let XLA fuse the selection
    # into every (N, N) consumer, which makes deep ReLU networks 3x slower.
    z = jnp.where(hi > 0, lo / jnp.where(hi > 0, hi, 1.0), lo)
    big = z > _TAN_PI_8
    w = jnp.where(big, (z - 1) / (z + 1), z)  # |w| ≤ tan(π/8)
    t = w * w
    coef = _ATAN_COEF if jnp.finfo(t.dtype).bits > 32 else _ATAN_COEF_32
    poly = jnp.zeros_like(t) + coef[-1]
    for c in coef[-2::-1]:
        poly = poly * t + c
    r = w + w * t * poly + jnp.where(big, PI / 4, 0.0)
    r = jnp.where(ay > ax, PI / 2 - r, r)
    r = jnp.where(x < 0, PI - r, r)
    return jnp.where(y < 0, -r, r)


@jax.custom_jvp
def angle(s, c):
    """``arctan2(s, c)`` with the value π/2 and finite derivatives at (0, 0).

    With ``s = sqrt(1 − ρ²)`` and ``c = ρ`` (or both times sqrt(c11 c22))
    this is the angle θ between the two inputs; at (0, 0) (a zero-variance
    input) the inputs are uncorrelated, θ = π/2.
    """
    both_zero = (s == 0) & (c == 0)
    return jnp.where(both_zero, PI / 2, atan2(s, c))


@angle.defjvp
def _angle_jvp(primals, tangents):
    (s, c), (ds, dc) = primals, tangents
    denom = jnp.maximum(s * s + c * c, jnp.finfo(jnp.result_type(s)).tiny)
    return angle(s, c), (ds * c - dc * s) / denom


# h(θ)/θ³ = (sin θ − θ cos θ)/θ³ = Σ_{n≥1} (−1)^{n+1} 2n/(2n+1)! θ^{2n−2}, in
# powers of θ², for θ < _H_SERIES_BELOW: five terms reach float64's rounding,
# three float32's. Above it, sin θ − θ cos θ costs ReLU's d' a relative
# ~2ε/θ ≤ 20ε.
_H_COEF = tuple((-1) ** (n + 1) * 2 * n / math.factorial(2 * n + 1) for n in range(1, 6))
_H_SERIES_BELOW = 0.1


def _h_over_cube(t):
    coef = _H_COEF if jnp.finfo(t.dtype).bits > 32 else _H_COEF[:3]
    poly = jnp.zeros_like(t) + coef[-1]
    for c in coef[-2::-1]:
        poly = poly * t + c
    return poly


def angle_from_chord(chord, c12, c11, c22):
    r"""``(θ, p sin θ, p h(θ))`` of two inputs from their chord.

    With :math:`p = \sqrt{c_{11} c_{22}}`, the chord
    :math:`\chi = 2(p - c_{12}) = 2p(1 - \rho)` (`ntk.kernel.Kernel.chord`), carried
    apart from :math:`c_{12}`, gives :math:`1 - \rho` right to rounding however
    small the angle and however different the norms, where :math:`c_{12}` gives it
    to an absolute :math:`\epsilon` (`correlation`). Then

    .. math::

        \sin\theta = \sqrt{(1 - \rho)(1 + \rho)},
        \qquad \theta = \operatorname{atan2}(\sin\theta, \rho),

    and :math:`h(\theta) = \sin\theta - \theta\cos\theta` (the arc-cosine kernels'
    distance term) is summed as its Taylor series :math:`\theta^3/3 - \theta^5/30 + \dots`
    for :math:`\theta < 0.1`, where the difference would cancel. As in `correlation`,
    everything is normalised by :math:`p` (no overflow at any variance), and a
    zero-variance input (:math:`p = 0`) is uncorrelated with everything:
    :math:`\theta = \pi/2`.
    """
    rho, one_minus, p = correlation_from_chord(chord, c12, c11, c22)
    sine = pair_sqrt(one_minus * gap(-rho))
    theta = angle(sine, rho)
    sine_p = p * sine
    t = theta * theta
    h_p = jnp.where(theta < _H_SERIES_BELOW, p * theta * t * _h_over_cube(t), sine_p - theta * c12)
    return theta, sine_p, h_p


def sqdist_from_chord(chord, c12, c11, c22):
    r"""The squared distance :math:`c_{11} + c_{22} - 2c_{12} = \chi
    + (\sqrt{c_{11}} - \sqrt{c_{22}})^2` of two inputs from their chord
    (`angle_from_chord`): a sum, so nothing cancels; the norms' gap is taken
    as 0 within their rounding (`norm_gap`)."""
    n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
    return snap(chord, chord < 0) + norm_gap(n1, n2) ** 2


def correlation_from_chord(chord, c12, c11, c22):
    """``(ρ, 1 − ρ, p)``: ρ from ``c12`` (`correlation`) and ``1 − ρ = χ/(2p)``
    from the chord χ (`angle_from_chord`); ``1 − ρ = 1`` where ``p = 0``."""
    r1, r2, i1, i2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22), inv_sqrt(c11), inv_sqrt(c22))
    p = r1 * r2
    rho, _ = correlation(c12, c11, c22)
    return rho, jnp.where(p > 0, _one_minus_rho(chord, r1, r2, i1, i2), gap(rho)), p


@jax.custom_jvp
def _one_minus_rho(chord, r1, r2, i1, i2):
    """``1 − ρ = χ/(2 r1 r2)``, with ``r_i = sqrt(c_ii)`` and ``i_i = 1/r_i``
    (per input, so the pairwise loop divides by nothing). The derivative is
    given in closed form, in terms of ``χ`` and ``r_i`` alone (``i_i`` are
    functions of them), as in `correlation`: the chain rule through
    ``χ · i1 i2`` forms ``χ · ∂L/∂(i1 i2)``, which overflows float32 at
    variances ~1e19."""
    return jnp.maximum(chord, 0) * (i1 * i2) / 2


@_one_minus_rho.defjvp
def _one_minus_rho_jvp(primals, tangents):
    (chord, r1, r2, i1, i2), (dchord, dr1, dr2, _, _) = primals, tangents
    u = _one_minus_rho(chord, r1, r2, i1, i2)
    # ∂u/∂χ = 1/(2 r1 r2), ∂u/∂r_i = −u/r_i.
    du = dchord * (i1 * i2) / 2 - u * (dr1 * i1 + dr2 * i2)
    return u, du


def _is_traced_kwarg(v) -> bool:
    leaves = jax.tree_util.tree_leaves(v)
    return bool(leaves) and all(isinstance(a, (jax.Array, np.ndarray, np.generic)) for a in leaves)


_NAN = float("nan")


def _canonical(v):
    """One object for every float NaN (``mask_constant=float("nan")``): NaN is
    not equal to itself and hashes by identity, so each call would miss the
    compilation cache."""
    return _NAN if isinstance(v, float) and math.isnan(v) else v


def split_static_kwargs(kwargs: dict):
    """``(traced, static)``: array-valued keyword arguments (traced under jit)
    and the others as a sorted tuple of pairs, to be compiled in (a
    ``diagonal_spatial`` flag must reach the kernel as a bool), or
    ``static=None`` if one of those is unhashable.

    Example:
      >>> import numpy as np
      >>> traced, static = split_static_kwargs({"pattern": np.ones(2), "diagonal_spatial": False})
      >>> list(traced), static
      (['pattern'], (('diagonal_spatial', False),))
    """
    traced = {k: v for k, v in kwargs.items() if _is_traced_kwarg(v)}
    static = tuple(sorted((k, _canonical(v)) for k, v in kwargs.items() if k not in traced))
    try:
        hash(static)
    except TypeError:
        return traced, None
    return traced, static
