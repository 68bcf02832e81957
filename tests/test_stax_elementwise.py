"""Activations: each dual kernel against oracles that can disagree with it.

Three oracles, from strongest to broadest:

* **Numerical integration** of ``E[φ(u)φ(v)]`` and ``E[φ'(u)φ'(v)]`` for
  ``(u, v) ~ N(0, [[c11, c12], [c12, c22]])`` over a grid of covariances that
  includes correlation exactly ±1 and tiny variances. φ and φ' are written
  here independently (numpy/scipy), not taken from `ntk`. The integral is a
  tensor Gauss–Legendre rule in whitened coordinates ``u = √c11 z1``,
  ``v = √c22 (ρ z1 + r z2)`` on ``[-12, 12]²`` (the Gaussian mass outside is
  < 1e-32), split at every kink of φ so each piece is analytic and the rule
  converges exponentially; next to a kink the outer axis is split geometrically
  so the boundary layer of width ``r`` near correlation ±1 is resolved too.
  Accuracy ~1e-14 (checked against the closed-form arc-cosine kernel in
  ``test_oracle_reproduces_arccos_kernel``).
* **Monte Carlo** from wide finite networks ``Dense -> φ -> Dense`` built by
  the layers' own ``apply_fn`` (checks that ``fn`` and the dual describe the
  same network, and the NTK bookkeeping).
* **Gauss–Hermite quadrature** (``ElementwiseNumerical``) converging to the
  closed forms, and autodiff of a user dual (``Elementwise``).
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from ntk import Kernel, stax
from ntk.stax.duals import CHORD_FROM_KERNELS
from mc import assert_within_mc, mc_kernels

# ------------------------------------------------------------- the oracle

_L = 12.0
_GL_X, _GL_W = np.polynomial.legendre.leggauss(128)
_GRADE = _L * 2.0 ** -np.arange(1, 50)


def _gl_nodes(edges):
    """Gauss–Legendre nodes/weights on consecutive intervals ``edges[..., :]``."""
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    x = 0.5 * (b - a) * _GL_X + 0.5 * (a + b)
    w = 0.5 * (b - a) * _GL_W
    return x.reshape(x.shape[:-2] + (-1,)), w.reshape(w.shape[:-2] + (-1,))


def _normal_pdf(z):
    return np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def gauss_expect(g, c12, c11, c22, kinks=()):
    """``E[g(u) g(v)]`` for centred Gaussian (u, v) with the given covariance.

    ``kinks``: points where ``g`` is not analytic (0 for ReLU-like functions).
    """
    s1, s2 = math.sqrt(c11), math.sqrt(c22)
    prod = c11 * c22
    # r from the determinant, not from 1 - ρ², so an exactly singular
    # covariance (correlation ±1) is integrated as a 1-D integral.
    # A zero variance makes its argument the constant 0, independent of the other.
    rho = 0.0 if prod == 0 else float(np.clip(c12 / math.sqrt(prod), -1, 1))
    r = 1.0 if prod == 0 else math.sqrt(max(prod - c12**2, 0.0) / prod)
    outer_breaks = [0.0] + [k / s1 for k in kinks if s1 > 0]
    if s2 > 0 and rho != 0:
        outer_breaks += [k / (s2 * rho) for k in kinks]
    if kinks:
        outer_breaks = [
            p + d for p in outer_breaks for d in np.concatenate([[0.0], _GRADE, -_GRADE])
        ]
    z1, w1 = _gl_nodes(np.unique(np.clip([-_L, _L] + outer_breaks, -_L, _L)))
    if r == 0:
        inner = g(s2 * rho * z1)
    else:
        cols = [np.full_like(z1, -_L), np.full_like(z1, 0.0), np.full_like(z1, _L)]
        cols += [(k / s2 - rho * z1) / r for k in kinks if s2 > 0]
        z2, w2 = _gl_nodes(np.sort(np.clip(np.stack(cols, -1), -_L, _L), axis=-1))
        inner = np.sum(w2 * _normal_pdf(z2) * g(s2 * (rho * z1[:, None] + r * z2)), -1)
    return float(np.sum(w1 * _normal_pdf(z1) * g(s1 * z1) * inner))


# ------------------------------------------- activations written independently


class Case:
    """A layer of `ntk.stax` and the same activation φ, φ' in numpy."""

    def __init__(self, name, layer, phi, dphi, kinks=(), smooth=True):
        self.name, self.layer, self.phi, self.dphi = name, layer, phi, dphi
        self.kinks, self.smooth = tuple(kinks), smooth

    def __repr__(self):
        return self.name


def _abrelu(name, layer, a, b):
    return Case(
        name,
        layer,
        lambda x: a * np.minimum(x, 0) + b * np.maximum(x, 0),
        lambda x: np.where(x > 0, b, a),
        kinks=(0.0,),
        smooth=False,
    )


def _erf(name, layer, a=1.0, b=1.0, c=0.0):
    return Case(
        name,
        layer,
        lambda x: a * special.erf(b * x) + c,
        lambda x: a * b * 2 / math.sqrt(math.pi) * np.exp(-((b * x) ** 2)),
    )


def _sin(name, layer, a=1.0, b=1.0, c=0.0):
    return Case(name, layer, lambda x: a * np.sin(b * x + c), lambda x: a * b * np.cos(b * x + c))


def _poly(name, layer, coef):
    p = np.polynomial.Polynomial(coef)
    return Case(name, layer, p, p.deriv())


def _rectified(n):
    """``(x >= 0)·x^n`` and its derivative (n·x^(n-1) for x > 0), in numpy."""
    return Case(
        f"RectifiedMonomial({n})",
        stax.RectifiedMonomial(n),
        lambda x: np.where(x >= 0, x**n, 0.0),
        lambda x: np.where(x > 0, n * x ** max(n - 1, 0), 0.0),
        kinks=(0.0,),
        smooth=False,
    )


def _gabor(x):
    return np.exp(-x * x) * np.sin(x)


def _d_gabor(x):
    return np.exp(-x * x) * (np.cos(x) - 2 * x * np.sin(x))


def _ndtr(x):
    return 0.5 * (1 + special.erf(x / math.sqrt(2)))


def _erf_nngp(c12, c11, c22):
    """Williams (1997) arcsine kernel of erf, written out for the user API."""
    return 2 / jnp.pi * jnp.arcsin(2 * c12 / jnp.sqrt((1 + 2 * c11) * (1 + 2 * c22)))


def _erf_d_nngp(c12, c11, c22):
    return 4 / jnp.pi / jnp.sqrt((1 + 2 * c11) * (1 + 2 * c22) - 4 * c12**2)


def _hermite_coef(n):
    return np.polynomial.hermite_e.herme2poly([0] * n + [1]) / math.sqrt(math.factorial(n))


SIGMOID_SCALE = 2.4020563531719796

CASES = [
    _abrelu("Relu", stax.Relu(), 0.0, 1.0),
    _abrelu("LeakyRelu(0.1)", stax.LeakyRelu(0.1), 0.1, 1.0),
    _abrelu("LeakyRelu(-0.3)", stax.LeakyRelu(-0.3), -0.3, 1.0),
    _abrelu("ABRelu(-0.4,1.3)", stax.ABRelu(-0.4, 1.3), -0.4, 1.3),
    _abrelu("ABRelu(0.5,-2)", stax.ABRelu(0.5, -2.0), 0.5, -2.0),
    _abrelu("Abs", stax.Abs(), -1.0, 1.0),
    _erf("Erf", stax.Erf()),
    _erf("Erf(1.7,0.6,-0.3)", stax.Erf(a=1.7, b=0.6, c=-0.3), 1.7, 0.6, -0.3),
    _erf("Sigmoid_like", stax.Sigmoid_like(), 0.5, 1 / SIGMOID_SCALE, 0.5),
    Case("Gelu", stax.Gelu(), lambda x: x * _ndtr(x), lambda x: _ndtr(x) + x * _normal_pdf(x)),
    _sin("Sin", stax.Sin()),
    _sin("Sin(1.3,0.7,0.4)", stax.Sin(a=1.3, b=0.7, c=0.4), 1.3, 0.7, 0.4),
    _sin("Cos", stax.Cos(), 1.0, 1.0, math.pi / 2),
    _sin("Cos(0.8,1.5,-0.2)", stax.Cos(a=0.8, b=1.5, c=-0.2), 0.8, 1.5, -0.2 + math.pi / 2),
    _sin("Rbf", stax.Rbf(), math.sqrt(2), math.sqrt(2), math.pi / 4),
    _sin("Rbf(0.3)", stax.Rbf(gamma=0.3), math.sqrt(2), math.sqrt(0.6), math.pi / 4),
    Case("Exp", stax.Exp(), np.exp, np.exp),
    Case(
        "Exp(0.7,-0.5)",
        stax.Exp(a=0.7, b=-0.5),
        lambda x: 0.7 * np.exp(-0.5 * x),
        lambda x: -0.35 * np.exp(-0.5 * x),
    ),
    Case("Gaussian", stax.Gaussian(), lambda x: np.exp(-x * x), lambda x: -2 * x * np.exp(-x * x)),
    Case(
        "Gaussian(1.2,-0.35)",
        stax.Gaussian(a=1.2, b=-0.35),
        lambda x: 1.2 * np.exp(-0.35 * x * x),
        lambda x: -0.84 * x * np.exp(-0.35 * x * x),
    ),
    *[_poly(f"Monomial({n})", stax.Monomial(n), [0.0] * n + [1.0]) for n in range(5)],
    _poly("Polynomial", stax.Polynomial([0.3, -1.0, 0.5, 0.2]), [0.3, -1.0, 0.5, 0.2]),
    *[_poly(f"Hermite({n})", stax.Hermite(n), _hermite_coef(n)) for n in range(1, 5)],
    Case("Gabor", stax.Gabor(), _gabor, _d_gabor),
    # K_n is the arc-cosine polynomial pair (P_n, Q_n) and K_n' uses
    # (P_{n-1}, Q_{n-1}): degree 3 exercises two of them here (for time; the
    # others: Monte Carlo of degree 2 below, the closed-form diagonals and
    # the neural-tangents golden fixture of degrees 0-3).
    _rectified(3),
    _erf("Elementwise(erf, nngp_fn)", stax.Elementwise(jax.scipy.special.erf, _erf_nngp)),
    _erf(
        "Elementwise(erf, nngp_fn, d_nngp_fn)",
        stax.Elementwise(jax.scipy.special.erf, _erf_nngp, _erf_d_nngp),
    ),
]
SIGN = Case("Sign", stax.Sign(), np.sign, None, kinks=(0.0,), smooth=False)
BY_NAME = {c.name: c for c in CASES}

# (c12, c11, c22): generic, correlation exactly +1 and -1 (also one whose
# c12² rounds to either side of c11·c22), tiny variances, one zero variance.
R21 = math.sqrt(0.21)
GRID = [
    (0.3, 1.0, 1.0),
    (-0.5, 1.0, 2.0),
    (0.0, 0.7, 1.3),
    (2.0, 3.0, 4.0),
    (1.0, 0.25, 4.0),
    (0.5, 0.5, 0.5),
    (R21, 0.3, 0.7),
    (-1.0, 0.25, 4.0),
    (-0.5, 0.5, 0.5),
    (-R21, 0.3, 0.7),
    (3e-7, 1e-6, 1e-6),
    (1e-5, 1e-8, 2.0),
    (1e-8, 1e-8, 1e-8),
    (-1e-8, 1e-8, 1e-8),
]
# A zero-variance argument: φ'(0) is a convention for kinked φ, so only smooth.
GRID_SMOOTH_ONLY = [(0.0, 0.0, 1.0), (0.0, 0.0, 0.0)]


def _layer_duals(layer, grid, chord=False):
    """Push a batch of Gaussian (c12, c11, c22) through ``layer.kernel_fn``.

    The i-th triple sits at ``nngp[i, i]`` with ``cov1[i] = c11``, ``cov2[i] =
    c22``; off-diagonal entries are 0 (always a valid covariance). The input
    NTK is 1, so the output NTK is the derivative kernel K_φ'. With
    ``chord`` the Kernel also carries its chords ``2(sqrt(c11 c22) - c12)``
    and the output's diagonal ones are returned too.
    """
    c12, c11, c22 = (np.array(t, dtype=np.float64) for t in zip(*grid))
    n = len(grid)

    @jax.jit  # one compilation instead of hundreds of eager dispatches
    def duals(c12, c11, c22):
        nngp = jnp.diag(c12)
        k = Kernel(
            nngp=nngp,
            ntk=jnp.ones((n, n), c12.dtype),
            cov1=c11,
            cov2=c22,
            shape1=(n, 7),
            shape2=(n, 7),
            diagonal_spatial=True,
            is_gaussian=True,
            chord=2 * (jnp.sqrt(c11[:, None] * c22[None, :]) - nngp) if chord else None,
        )
        out = layer.kernel_fn(k)
        d = () if not chord else (None if out.chord is None else jnp.diag(out.chord),)
        return (jnp.diag(out.nngp), jnp.diag(out.ntk), out.cov1, out.cov2) + d

    return tuple(None if a is None else np.asarray(a) for a in duals(c12, c11, c22))


def _assert_close_cs(value, oracle, scale, rtol, what):
    """``|value - oracle| <= rtol · scale`` with ``scale`` a Cauchy–Schwarz bound.

    ``|E[φ(u)φ(v)]| <= sqrt(E[φ(u)²] E[φ(v)²])``, so the error is measured
    relative to the size the kernel can have at these variances — meaningful
    also where the kernel itself is 0 (odd φ, c12 = 0).
    """
    value, oracle, scale = map(np.asarray, (value, oracle, scale))
    # The floor keeps ~1e-33 quadrature noise at a zero-size kernel from
    # counting as a relative error of 1.
    err = np.abs(value - oracle) / np.maximum(scale, 1e-20)
    i = int(np.argmax(err))
    assert np.all(err <= rtol), (
        f"{what}: at grid point {i} ({(GRID + GRID_SMOOTH_ONLY)[i]}) "
        f"got {value[i]!r}, oracle {oracle[i]!r} "
        f"(relative error {err[i]:.3g} > {rtol:g})"
    )


def _grid_for(case):
    return GRID + (GRID_SMOOTH_ONLY if case.smooth else [])


# (id(g), grid, kinks) -> (g, integrals): the plain and the chord duals'
# tests integrate the same φ on the same grid (g is kept, so its id stays its).
_ORACLE_CACHE: dict = {}


def _oracle(g, grid, kinks):
    key = (id(g), tuple(grid), tuple(kinks))
    if key not in _ORACLE_CACHE:
        pair = np.array([gauss_expect(g, *t, kinks=kinks) for t in grid])
        v1 = np.array([gauss_expect(g, t[1], t[1], t[1], kinks=kinks) for t in grid])
        v2 = np.array([gauss_expect(g, t[2], t[2], t[2], kinks=kinks) for t in grid])
        for a in (pair, v1, v2):
            a.flags.writeable = False
        _ORACLE_CACHE[key] = (g, (pair, v1, v2))
    return _ORACLE_CACHE[key][1]


RTOL = 1e-11


def test_oracle_reproduces_arccos_kernel():
    """The integrator against Cho & Saul's closed forms (ReLU and step)."""
    for c12, c11, c22 in GRID:
        theta = math.acos(float(np.clip(c12 / math.sqrt(c11 * c22), -1, 1)))
        relu = (
            math.sqrt(c11 * c22)
            / (2 * math.pi)
            * (math.sin(theta) + (math.pi - theta) * math.cos(theta))
        )
        step = (math.pi - theta) / (2 * math.pi)
        got_relu = gauss_expect(lambda x: np.maximum(x, 0), c12, c11, c22, (0.0,))
        got_step = gauss_expect(lambda x: (x > 0) * 1.0, c12, c11, c22, (0.0,))
        assert abs(got_relu - relu) <= 1e-13 * math.sqrt(c11 * c22)
        assert abs(got_step - step) <= 1e-13


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_nngp_dual_matches_numerical_integration(case):
    grid = _grid_for(case)
    nngp, _, cov1, cov2 = _layer_duals(case.layer, grid)
    pair, v1, v2 = _oracle(case.phi, grid, case.kinks)
    scale = np.sqrt(v1 * v2)
    _assert_close_cs(nngp, pair, scale, RTOL, f"{case.name} nngp")
    _assert_close_cs(cov1, v1, v1, RTOL, f"{case.name} cov1")
    _assert_close_cs(cov2, v2, v2, RTOL, f"{case.name} cov2")


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_ntk_dual_matches_numerical_integration(case):
    grid = _grid_for(case)
    _, dot, _, _ = _layer_duals(case.layer, grid)
    pair, v1, v2 = _oracle(case.dphi, grid, case.kinks)
    # Monomial(0): φ' = 0, scale 0 -> compare absolutely.
    scale = np.where(np.sqrt(v1 * v2) > 0, np.sqrt(v1 * v2), 1.0)
    _assert_close_cs(dot, pair, scale, RTOL, f"{case.name} ntk (E[φ'φ'])")


def test_sign_nngp_matches_integration_and_ntk_is_zero():
    """Sign: K = E[sign u sign v] = 1 - 2θ/π; φ' = 0 a.e., so its NTK term is 0."""
    nngp, dot, cov1, _ = _layer_duals(SIGN.layer, GRID)
    pair, v1, v2 = _oracle(SIGN.phi, GRID, SIGN.kinks)
    _assert_close_cs(nngp, pair, np.ones_like(pair), RTOL, "Sign nngp")
    _assert_close_cs(cov1, v1, np.ones_like(v1), RTOL, "Sign cov1")
    assert np.all(dot == 0.0)


# A Kernel that carries chords (vector inputs) goes through the `chord_dual`
# of the activations that have one: the same kernels, the angle taken from the
# chord, and the outputs' chords 2(sqrt(E φ(u)² E φ(v)²) - E φ(u)φ(v)) (none
# for Gelu).
WITH_CHORDS = [
    c
    for c in CASES
    if c.name.startswith(
        ("Relu", "LeakyRelu", "ABRelu", "Abs", "Erf", "Sigmoid", "Sin", "Cos", "Rbf", "Gaussian")
    )
    or c.name in ("Gabor", "Gelu")
] + [SIGN, _rectified(0), _rectified(1)]


@pytest.mark.parametrize("case", WITH_CHORDS, ids=repr)
def test_duals_from_chords_match_numerical_integration(case):
    grid = _grid_for(case)
    nngp, dot, cov1, _, chord = _layer_duals(case.layer, grid, chord=True)
    pair, v1, v2 = _oracle(case.phi, grid, case.kinks)
    _assert_close_cs(nngp, pair, np.sqrt(v1 * v2), RTOL, f"{case.name} nngp")
    _assert_close_cs(cov1, v1, v1, RTOL, f"{case.name} cov1")
    # At most 4 sqrt(v1 v2) in size; 1e-11 of v1 + v2 (the squared
    # distance's size, from which Sin/Cos take theirs), as above.
    chord_ref = 2 * (np.sqrt(v1 * v2) - pair)
    if chord is None:  # Gelu reads the chord; its outputs carry none
        assert case.name == "Gelu"
    else:
        _assert_close_cs(chord, chord_ref, v1 + v2, RTOL, f"{case.name} chord")
    if case.dphi is None:
        assert np.all(dot == 0.0)
    else:
        dpair, dv1, dv2 = _oracle(case.dphi, grid, case.kinks)
        _assert_close_cs(dot, dpair, np.sqrt(dv1 * dv2), RTOL, f"{case.name} ntk")


# (c12, c11, c22) with a zero variance, and the outputs' chord there:
# 2(sqrt(φ(0)² E φ(v)²) - φ(0) E φ(v)), 0 where φ(0) = 0 or both are zero.
ZERO_VARIANCE = [(0.0, 0.0, 1.7), (0.0, 0.6, 0.0), (0.0, 0.0, 0.0)]
ZERO_VARIANCE_CHORD = {
    # φ(0) = 1, E φ(v)² = E φ(v) = 1/2: 2(sqrt(1/2) - 1/2).
    "RectifiedMonomial(0)": (("rectified_monomial", 0), [math.sqrt(2) - 1] * 2 + [0.0]),
    "RectifiedMonomial(1)": (("rectified_monomial", 1), [0.0, 0.0, 0.0]),
    "Sign": (("sign",), [0.0, 0.0, 0.0]),  # sign 0 = 0
    "ExpNormalized": (("exp_normalized", 0.8, -0.5), None),  # from the kernels
}


@pytest.mark.parametrize("name", sorted(ZERO_VARIANCE_CHORD))
def test_duals_from_chords_keep_the_zero_variance_conventions(name):
    """The kinked φ's conventions at a zero variance (φ(0), φ'(0); see
    `rectified_monomial`, `sign`, `exp_normalized`), which the integration
    oracle above does not reach: the kernels from the chord are those of
    the plain dual, and the outputs' chords are exact."""
    from ntk.stax.duals import ACTIVATIONS

    (key, *args), want = ZERO_VARIANCE_CHORD[name]
    record = ACTIVATIONS[key](*args)
    c12, c11, c22 = (np.array(v) for v in zip(*ZERO_VARIANCE))
    *kernels, chord_out = record.chord_dual(2 * (np.sqrt(c11 * c22) - c12), c12, c11, c22)
    for got, plain in zip(kernels, record.dual(c12, c11, c22)):
        np.testing.assert_array_equal(got, plain)
    if want is None:
        assert chord_out is CHORD_FROM_KERNELS
    else:
        np.testing.assert_allclose(chord_out, want, rtol=1e-15)


def _arccos_in_extended_precision(theta, s, a, b):
    """ABRelu(a, b)'s kernels at c11 = 1, c22 = s², c12 = s cos θ, and the
    outputs' chord, in 80-bit arithmetic from θ itself (Cho & Saul 2009):
    the reference for angles float64 cannot tell from 0."""
    ld = np.longdouble
    theta, s = np.asarray(theta, ld), np.asarray(s, ld)
    f = ld((a - b) ** 2) / (2 * np.pi)
    dot = ld(a * a + b * b) / 2 - f * theta
    k12 = f * s * np.sin(theta) + dot * s * np.cos(theta)
    # sin θ − θ cos θ by its series: θ ≤ 1e-2, ten terms are exact in 80 bits.
    h = sum(
        (-1) ** (n + 1) * 2 * n * theta ** (2 * n + 1) / ld(math.factorial(2 * n + 1))
        for n in range(1, 11)
    )
    # 2(sqrt(K11 K22) - K12), K_ii = (a² + b²)/2 c_ii, with the O(1) terms
    # cancelled by hand: (a² + b²) s (1 - cos θ) - 2 f s h(θ).
    chord_out = ld(a * a + b * b) * 2 * s * np.sin(theta / 2) ** 2 - 2 * f * s * h
    return k12, dot, chord_out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "a,b", [(0.0, 1.0), (-0.3, 1.0), (-1.0, 1.0)], ids=["relu", "leaky", "abs"]
)
def test_kinked_duals_resolve_angles_below_the_dtypes_square_root_eps(dtype, a, b):
    """Two inputs at angle θ = 1e-7..1e-2 rad, of norms 1 and s = 1 + kθ
    (k = 0, 1, 10: nearby inputs differ in norm as much as in direction) or
    s = 3 (they differ mostly in norm). Their correlation rounds to
    1 - O(eps), so the θ-term of K_φ' = (a²+b²)/2 - (a-b)²θ/(2π) taken from
    c12 is off by ~sqrt(eps) (3e-4 rad in float32). From the chord
    χ = 2s(1 - cos θ), rounded to the dtype, 1 - ρ = χ/(2s) is right to a few
    eps relative, so θ is too, whatever s (from the squared distance
    χ + (1 - s)² it was not, at s = 3). The reference is the closed form in
    80-bit arithmetic."""
    from ntk.stax.duals import abrelu

    ld = np.longdouble
    theta = np.array([ld(t) for t in np.geomspace(1e-7, 1e-2, 11) for _ in range(4)])
    k = np.array([k for _ in range(11) for k in (0, 1, 10, 0)])
    s = np.where(np.arange(44) % 4 == 3, ld(3), 1 + k * theta)
    chord = 4 * s * np.sin(theta / 2) ** 2  # 2s(1 - cos θ), without cancelling
    args = [np.array(v, dtype=dtype) for v in (chord, s * np.cos(theta), np.ones(44), s * s)]
    nngp, dot, chord_out = (np.asarray(v, ld) for v in jax.jit(abrelu(a, b).chord_dual)(*args))
    k12, dot_ref, chord_ref = _arccos_in_extended_precision(theta, s, a, b)
    eps = np.finfo(dtype).eps
    d_theta = 8 * eps * theta
    f = (a - b) ** 2 / (2 * np.pi)
    _assert_all_within(dot, dot_ref, 4 * eps * np.abs(dot_ref) + f * d_theta, "K_φ'")
    _assert_all_within(nngp, k12, 8 * eps * np.abs(k12) + f * s * d_theta, "K_φ")
    tol = 16 * eps * chord + 2 * f * s * theta**2 * d_theta
    _assert_all_within(chord_out, chord_ref, tol, "χ'")
    # Taken from c12 (the plain dual), θ is not resolved: the check can fail.
    plain_dot = np.asarray(jax.jit(abrelu(a, b).dual)(*args[1:])[1], ld)
    assert np.max(np.abs(plain_dot - dot_ref) / (f * theta)) > 0.5


@pytest.mark.parametrize(
    "a,b,c", [(1.0, 1.0, 0.0), (1.7, 0.6, -0.3)], ids=["erf", "erf(1.7,0.6,-0.3)"]
)
def test_erf_dual_from_chords_resolves_nearby_inputs(a, b, c):
    """Pairs as above (θ = 1e-5..1e-1, norms 10 and 10 (1 + kθ)), float32.
    K_φ' = a²b²(4/π) q1 q2 / cos α12 needs cos² = 1 - s12² = e1 + e2 - e1 e2
    + (1 - e1)(1 - e2)(1 - ρ²), e_i = 1/(1 + 2b² c_ii), whose last term
    matters at large variance: from the chord it is right to a few eps,
    from c12 (whose 1 - ρ² is set to 0 below 64 eps) not. The reference: the
    rounded χ, c11, c22 (c12 = sqrt(c11 c22) - χ/2) in 80-bit arithmetic."""
    from ntk.stax.duals import erf

    ld = np.longdouble
    theta = np.array([ld(t) for t in np.geomspace(1e-5, 1e-1, 9) for _ in range(3)])
    s = 1 + np.array([k for _ in range(9) for k in (0, 1, 10)]) * theta
    c11, c22 = np.full_like(theta, 100), 100 * s * s
    p = np.sqrt(c11 * c22)
    chord = 4 * p * np.sin(theta / 2) ** 2
    args = [np.array(v, dtype=np.float32) for v in (chord, p * np.cos(theta), c11, c22)]
    nngp, dot, chord_out = jax.jit(erf(a, b, c).chord_dual)(*args)
    assert chord_out is CHORD_FROM_KERNELS  # the layer takes it from the kernels
    chord, c11, c22 = (np.asarray(v, ld) for v in (args[0], args[2], args[3]))
    g = 2 * ld(b) ** 2
    q1, q2 = 1 / np.sqrt(1 + g * c11), 1 / np.sqrt(1 + g * c22)
    s12 = g * (np.sqrt(c11 * c22) - chord / 2) * q1 * q2
    k_ref = 2 * ld(a) ** 2 / np.pi * np.arcsin(s12) + ld(c) ** 2
    dot_ref = 4 / np.pi * ld(a * b) ** 2 * q1 * q2 / np.sqrt(1 - s12 * s12)
    eps = np.finfo(np.float32).eps
    _assert_all_within(np.asarray(nngp, ld), k_ref, 8 * eps * np.abs(k_ref), "K_φ")
    _assert_all_within(np.asarray(dot, ld), dot_ref, 8 * eps * dot_ref, "K_φ'")
    plain = np.asarray(jax.jit(erf(a, b, c).dual)(*args[1:])[1], ld)
    assert np.max(np.abs(plain - dot_ref) / (eps * dot_ref)) > 8


def _assert_all_within(value, ref, tol, what):
    err = np.abs(value - ref) / tol
    i = int(np.argmax(err))
    assert err[i] <= 1, (
        f"{what}: at pair {i} got {value[i]}, reference {ref[i]}, tolerance {tol[i]:.3g}"
    )


# ------------------------------------------------------------ Monte Carlo

# One case per activation (non-default parameters where there are any); the
# other parameter values are covered by the integration tests above.
MC_CASES = [
    BY_NAME[n]
    for n in (
        "Relu",
        "LeakyRelu(-0.3)",
        "ABRelu(0.5,-2)",
        "Abs",
        "Erf(1.7,0.6,-0.3)",
        "Sigmoid_like",
        "Gelu",
        "Sin(1.3,0.7,0.4)",
        "Cos(0.8,1.5,-0.2)",
        "Rbf(0.3)",
        "Exp(0.7,-0.5)",
        "Gaussian(1.2,-0.35)",
        "Monomial(0)",
        "Monomial(1)",
        "Monomial(2)",
        "Monomial(3)",
        "Monomial(4)",
        "Polynomial",
        "Hermite(3)",
        "Gabor",
        "Elementwise(erf, nngp_fn)",
        "Elementwise(erf, nngp_fn, d_nngp_fn)",
    )
] + [
    _rectified(2),
    SIGN,
    Case("ElementwiseNumerical(tanh, 64)", stax.ElementwiseNumerical(jnp.tanh, 64), np.tanh, None),
]
MC_WIDTH, MC_OUT, MC_SAMPLES = 512, 256, 64


def _mc_inputs():
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(4, 3))
    x1[1] *= 0.3  # different norms
    x1[3] = -x1[0]  # correlation -1 with row 0
    x2 = rng.normal(size=(3, 3))
    x2[0] = x1[0]  # correlation +1 across x1 and x2
    return jnp.asarray(x1), jnp.asarray(x2)


@pytest.mark.parametrize("case", MC_CASES, ids=repr)
def test_kernels_match_monte_carlo_of_wide_network(case):
    """NNGP and NTK of ``Dense(w, 1.2, 0.3) -> φ -> Dense(w', 0.9, 0.2)``.

    Bias: with one hidden layer the hidden pre-activations are exactly Gaussian
    at any width (the inputs are fixed), so ``E[f f'ᵀ / O]`` equals the NNGP
    exactly; the NTK estimate splits into the readout term (the same empirical
    post-activation kernel, unbiased) and the first-layer term
    ``W_std² (1/w) Σ_i φ'(h_i) φ'(h'_i) (v·W2_i)² Θ_in``, whose expectation is
    exact too because ``W2`` is independent of ``h`` and ``E(v·W2_i)² = 1``.
    The O(1/width) bias of deeper nets is therefore 0 here, and only the CLT
    term (5 standard errors of 64 draws) is allowed.
    """
    net = stax.serial(
        stax.Dense(MC_WIDTH, W_std=1.2, b_std=0.3),
        case.layer,
        stax.Dense(MC_OUT, W_std=0.9, b_std=0.2),
    )
    x1, x2 = _mc_inputs()
    k = net.kernel_fn(x1, x2)
    nngp, nngp_sem, ntk, ntk_sem = mc_kernels(
        net.init_fn, net.apply_fn, x1, x2, jax.random.PRNGKey(1), MC_SAMPLES
    )
    assert_within_mc(k.nngp, nngp, nngp_sem, what=f"{case.name} nngp")
    assert_within_mc(k.ntk, ntk, ntk_sem, what=f"{case.name} ntk")


# ------------------------------------------- numerical duals and user duals

SMOOTH_CLOSED = ["Erf", "Erf(1.7,0.6,-0.3)", "Gelu", "Sin", "Sin(1.3,0.7,0.4)"]


def _numerical_layer(case, deg):
    fn = {
        "Erf": lambda x: jax.scipy.special.erf(x),
        "Erf(1.7,0.6,-0.3)": lambda x: 1.7 * jax.scipy.special.erf(0.6 * x) - 0.3,
        "Gelu": lambda x: jax.nn.gelu(x, approximate=False),
        "Sin": jnp.sin,
        "Sin(1.3,0.7,0.4)": lambda x: 1.3 * jnp.sin(0.7 * x + 0.4),
    }[case.name]
    with warnings.catch_warnings():  # low degrees on purpose: the convergence study
        warnings.simplefilter("ignore", UserWarning)
        return stax.ElementwiseNumerical(fn, deg)


UNIT_GRID = [t for t in GRID if 0.25 <= min(t[1:]) and max(t[1:]) <= 2.0]


def test_elementwise_numerical_warns_when_deg_is_below_the_default():
    # NT's habitual deg=25 is a Gauss–Hermite degree there, a less accurate
    # node count here: the port must not lose accuracy silently.
    with pytest.warns(UserWarning, match=r"deg=25 counts nodes of this library's graded rule"):
        stax.ElementwiseNumerical(jnp.tanh, deg=25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stax.ElementwiseNumerical(jnp.tanh)


@pytest.mark.parametrize("name", SMOOTH_CLOSED)
def test_elementwise_numerical_converges_to_closed_form(name):
    """The graded rule of ``ElementwiseNumerical`` (the trapezoid rule in a
    log-graded variable) converges exponentially in ``deg`` for analytic φ:
    the error must shrink monotonically from deg 16 to 64 and reach the
    documented 1e-6 at the default."""
    case = BY_NAME[name]
    closed = _layer_duals(case.layer, UNIT_GRID)
    scale_n = np.sqrt(closed[2] * closed[3])
    scale_t = np.abs(closed[1])
    errors = []
    for deg in (16, 32, 64):
        num = _layer_duals(_numerical_layer(case, deg), UNIT_GRID)
        errors.append(
            max(
                np.max(np.abs(num[0] - closed[0]) / scale_n),
                np.max(np.abs(num[1] - closed[1]) / scale_t),
            )
        )
    assert errors[-1] < 1e-6, errors
    assert all(b < a / 10 for a, b in zip(errors, errors[1:])), errors


# Variances from 1e-8 to 1e12 (input scales up to ~1e6), correlations from
# -1 to 1: at large variance erf is a step on the scale of the standard
# deviation, which a quadrature must resolve. Both sides are independent
# computations of the same kernel.
WIDE_GRID = [
    (r * math.sqrt(c * c * k), c, c * k)
    for c in (1e-8, 1e-2, 30.0, 1e6, 1e12)
    for k in (1.0, 3.0)
    for r in (-1.0, -0.999, -0.3, 0.0, 0.7, 0.999, 1.0)
]


@pytest.mark.parametrize("name, rtol", [("Erf", 1e-5), ("Gelu", 1e-5)])
def test_elementwise_numerical_matches_closed_form_at_extreme_variances(name, rtol):
    """Default ``ElementwiseNumerical`` against the closed forms; tolerance:
    the documented accuracy for φ with Gaussian factors (`numerical`)."""
    closed = _layer_duals(BY_NAME[name].layer, WIDE_GRID)
    fn = {"Erf": jax.scipy.special.erf, "Gelu": lambda x: jax.nn.gelu(x, approximate=False)}[name]
    num = _layer_duals(stax.ElementwiseNumerical(fn), WIDE_GRID)
    for i, what in ((0, "nngp"), (1, "ntk (E[φ'φ'])")):
        scale = (
            np.sqrt(closed[2] * closed[3])
            if i == 0
            else np.sqrt(
                _layer_duals(BY_NAME[name].layer, [(t[1], t[1], t[1]) for t in WIDE_GRID])[1]
                * _layer_duals(BY_NAME[name].layer, [(t[2], t[2], t[2]) for t in WIDE_GRID])[1]
            )
        )
        err = np.abs(num[i] - closed[i]) / scale
        j = int(np.argmax(err))
        assert err[j] <= rtol, f"{name} {what} at {WIDE_GRID[j]}: relative error {err[j]:.3g}"


def test_elementwise_numerical_is_exactly_symmetric():
    """On a symmetric input covariance the kernel must be symmetric to the
    last bit: the rule integrates over the input of larger variance outside,
    whichever of the two comes first."""
    x = np.random.default_rng(3).normal(size=(7, 4)) * np.array(
        [[0.1], [1], [3], [10], [1], [0.5], [30]]
    )
    g = x @ x.T / 4
    g = (g + g.T) / 2  # the input Gram itself, exactly symmetric
    k = Kernel(
        nngp=jnp.asarray(g),
        ntk=jnp.ones_like(g),
        cov1=jnp.asarray(np.diag(g)),
        cov2=None,
        shape1=(7, 4),
        shape2=(7, 4),
        diagonal_spatial=True,
        is_gaussian=True,
    )
    out = stax.ElementwiseNumerical(jnp.tanh).kernel_fn(k)
    for m in (np.asarray(out.nngp), np.asarray(out.ntk)):
        np.testing.assert_array_equal(m, m.T)


def test_elementwise_numerical_hyperparameter_gradients_at_zero_bias_and_inputs():
    """∂/∂(W_std, b_std) of Σ(K + Θ) through ``ElementwiseNumerical(tanh)`` at
    b_std = 0 with zero input rows (zero pre-activation variance, where a
    naive rule divides by √0): finite and equal to central differences. The
    objective is even in b_std, so its b-derivative there is 0."""
    x = jnp.asarray(np.random.default_rng(5).normal(size=(4, 3)) * np.array([[0], [1], [0], [2]]))

    def objective(w_std, b_std):
        net = stax.serial(
            stax.Dense(8, W_std=w_std, b_std=b_std),
            stax.ElementwiseNumerical(jnp.tanh),
            stax.Dense(1, W_std=w_std, b_std=b_std),
        )
        k = net[2](x, None, ("nngp", "ntk"))
        return jnp.sum(k.nngp + k.ntk)

    gw, gb = jax.grad(objective, argnums=(0, 1))(1.5, 0.0)
    h = 1e-5
    fd_w = (objective(1.5 + h, 0.0) - objective(1.5 - h, 0.0)) / (2 * h)
    assert np.isfinite(gw) and np.isfinite(gb), (gw, gb)
    # central differences of a smooth function at h = 1e-5 in float64: ~1e-10
    np.testing.assert_allclose(gw, fd_w, rtol=1e-7)
    assert abs(float(gb)) <= 1e-12, gb


def test_elementwise_numerical_tanh_matches_integration():
    """Tanh (no closed form): Gauss–Hermite (deg 100) vs the integrator, at
    unit-scale variances where its poles at ±iπ/2 still allow ~1e-6."""
    grid = [
        (0.3, 1.0, 1.0),
        (-0.5, 1.0, 2.0),
        (0.5, 0.5, 0.5),
        (-0.5, 0.5, 0.5),
        (3e-7, 1e-6, 1e-6),
    ]
    nngp, dot, _, _ = _layer_duals(stax.ElementwiseNumerical(jnp.tanh, 100), grid)
    pair = np.array([gauss_expect(np.tanh, *t) for t in grid])
    dpair = np.array([gauss_expect(lambda x: 1 / np.cosh(x) ** 2, *t) for t in grid])
    np.testing.assert_allclose(nngp, pair, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(dot, dpair, rtol=1e-6, atol=1e-12)


def test_elementwise_autodiff_ntk_equals_erf_closed_form():
    """``Elementwise(erf, nngp_fn)`` derives K' = ∂K/∂c12 by autodiff; it must
    equal Erf's closed-form ``4/π / sqrt((1+2c11)(1+2c22) - 4c12²)``."""
    grid = GRID + GRID_SMOOTH_ONLY
    auto = _layer_duals(BY_NAME["Elementwise(erf, nngp_fn)"].layer, grid)
    closed = _layer_duals(stax.Erf(), grid)
    np.testing.assert_allclose(auto[1], closed[1], rtol=1e-13)
    np.testing.assert_allclose(auto[0], closed[0], rtol=1e-13, atol=1e-300)


# ------------------------- Gabor, ExpNormalized, RectifiedMonomial specifics


@pytest.mark.parametrize(
    "layer, phi",
    [
        (stax.Gabor(), lambda x: jnp.exp(-(x**2)) * jnp.sin(x)),
        *[(stax.RectifiedMonomial(n), lambda x, n=n: (x >= 0) * x**n) for n in range(4)],
    ],
    ids=["Gabor"] + [f"RectifiedMonomial({n})" for n in range(4)],
)
def test_finite_network_applies_neural_tangents_activation(layer, phi):
    """``apply_fn`` is neural-tangents' φ, written out here with jnp: Gabor
    ``exp(-x²)·sin(x)``, RectifiedMonomial ``(x >= 0)·x^n`` (so φ(0) = 0^n,
    i.e. 1 for n = 0), including 0, negative and large arguments."""
    x = jnp.asarray([[-30.0, -2.5, -1e-3, 0.0, 1e-3, 0.7, 2.5, 30.0]])
    np.testing.assert_array_equal(layer.apply_fn((), x), phi(x))


def test_rectified_monomial_zero_variance_uses_phi_at_zero():
    """At a zero variance the argument of φ is exactly 0 and φ(0) = 0^n: for
    the step (n = 0) K = E[1·1(v >= 0)] = 1/2 against a nonzero variance and
    1 against another zero one; n = 1 has K = 0 and K' = E[φ'(0) φ'(v)] with
    the finite network's φ'(0) = 1 (autodiff of ``(x >= 0)·x``), i.e. 1/2 and 1.
    (The arc-cosine formula alone would give the uncorrelated 1/4.)"""
    grid = [(0.0, 0.0, 1.0), (0.0, 0.0, 0.0), (0.0, 2.0, 0.0)]
    k0, d0, _, _ = _layer_duals(stax.RectifiedMonomial(0), grid)
    k1, d1, _, _ = _layer_duals(stax.RectifiedMonomial(1), grid)
    np.testing.assert_array_equal(k0, [0.5, 1.0, 0.5])
    np.testing.assert_array_equal(d0, 0.0)
    np.testing.assert_array_equal(k1, 0.0)
    np.testing.assert_array_equal(d1, [0.5, 1.0, 0.5])
    grad_at_0 = jax.grad(lambda x: stax.RectifiedMonomial(1).apply_fn((), x))(0.0)
    assert grad_at_0 == 1.0


@pytest.mark.parametrize("n", range(4))
def test_rectified_monomial_kernel_with_itself_is_the_closed_form(n):
    """``kernel_fn(x, None)`` of ``Dense(W1, b1) -> RectifiedMonomial(n) ->
    Dense(W2, b2)``: the diagonal is ``W2²·E[max(u,0)^2n] + b2²`` with
    E[max(u,0)^2n] = (2n-1)!!/2·q^n, q = W1²|x|²/d + b1², and the NTK diagonal
    adds ``W2²·n²(2n-3)!!/2·q^(n-1)·q`` (first layer, Θ1 = q). neural-tangents
    0.6.5 returns NaN for this whole kernel (its (π - θ)/sin θ at θ = 0); the
    off-diagonal entries are checked against Monte Carlo above."""
    w1, b1, w2, b2 = 1.3, 0.2, 1.1, 0.1
    net = stax.serial(
        stax.Dense(6, W_std=w1, b_std=b1),
        stax.RectifiedMonomial(n),
        stax.Dense(3, W_std=w2, b_std=b2),
    )
    x = np.random.default_rng(5).normal(size=(4, 5)) * np.array([[1.0], [0.1], [3.0], [30.0]])
    nngp, ntk = net.kernel_fn(x, None, get=("nngp", "ntk"))
    q = w1**2 * np.sum(x * x, axis=1) / 5 + b1**2
    dfact = lambda m: 1 if m <= 0 else m * dfact(m - 2)  # noqa: E731
    k = dfact(2 * n - 1) / 2 * q**n
    kd = n * n * dfact(2 * n - 3) / 2 * q ** (n - 1) if n else 0 * q
    assert np.all(np.isfinite(np.asarray(nngp))) and np.all(np.isfinite(np.asarray(ntk)))
    np.testing.assert_allclose(np.diag(nngp), w2**2 * k + b2**2, rtol=1e-13)
    np.testing.assert_allclose(np.diag(ntk), w2**2 * (kd * q + k) + b2**2, rtol=1e-13)


def test_stacked_rectified_monomials_match_integration_oracle():
    """``[Dense -> RectifiedMonomial(2)]² -> Dense``, where neural-tangents
    0.6.5 is NaN (it computes the variances of the first activation's output
    pairwise, at θ = 0, and the second activation reads them). Reference: the
    layer recursion written out here (q' = W²K + b², Θ' = W²K'Θ + q') with
    every K, K' from the integration oracle, pair by pair."""
    (w1, b1), (w2, b2), (w3, b3) = (1.1, 0.3), (0.8, 0.1), (0.9, 0.2)
    net = stax.serial(
        stax.Dense(6, W_std=w1, b_std=b1),
        stax.RectifiedMonomial(2),
        stax.Dense(6, W_std=w2, b_std=b2),
        stax.RectifiedMonomial(2),
        stax.Dense(3, W_std=w3, b_std=b3),
    )
    x = np.random.default_rng(6).normal(size=(2, 4)) * np.array([[1.0], [0.4]])
    nngp, ntk = (np.asarray(a) for a in net.kernel_fn(x, None, get=("nngp", "ntk")))
    phi = lambda u: np.where(u >= 0, u * u, 0.0)  # noqa: E731
    dphi = lambda u: np.where(u >= 0, 2 * u, 0.0)  # noqa: E731
    q = w1**2 * x @ x.T / 4 + b1**2
    theta = q.copy()
    for w, b in ((w2, b2), (w3, b3)):

        def expect(g):
            return np.array(
                [
                    [gauss_expect(g, q[i, j], q[i, i], q[j, j], kinks=(0.0,)) for j in range(2)]
                    for i in range(2)
                ]
            )

        k, kd = expect(phi), expect(dphi)
        q = w**2 * k + b**2
        theta = w**2 * kd * theta + q
    np.testing.assert_allclose(nngp, q, rtol=1e-11)
    np.testing.assert_allclose(ntk, theta, rtol=1e-11)


EXP_NORMALIZED = [
    ((), (1.0, -1.0, False)),
    ((2.5, -0.3, True), (2.5, -0.3, True)),
    ((0.4, 0.5), (0.4, 0.5, False)),
]


@pytest.mark.parametrize("args, full", EXP_NORMALIZED, ids=["default", "clip", "shift"])
def test_exp_normalized_matches_its_definition(args, full):
    """K = sqrt(c11 c22)·exp(γ(ρ + shift)), K' = γ·exp(γ(ρ + shift)) (Shankar
    et al. 2020; neural-tangents' ExpNormalized, defaults γ = 1, shift = -1),
    on the grid incl. correlation ±1 and tiny variances; a zero variance has
    ρ = 0 (neural-tangents too: its c12/sqrt(max(c11 c22, 1e-30)) is 0)."""
    gamma, shift, _ = full
    grid = GRID + GRID_SMOOTH_ONLY
    nngp, dot, cov1, _ = _layer_duals(stax.ExpNormalized(*args), grid)
    c12, c11, c22 = (np.array(t) for t in zip(*grid))
    norms = np.sqrt(c11 * c22)
    rho = np.clip(np.divide(c12, norms, out=np.zeros_like(c12), where=norms > 0), -1, 1)
    e = np.exp(gamma * (rho + shift))
    np.testing.assert_allclose(nngp, norms * e, rtol=1e-14, atol=0)
    np.testing.assert_allclose(dot, gamma * e, rtol=1e-14)
    np.testing.assert_allclose(cov1, c11 * math.exp(gamma * (1 + shift)), rtol=1e-14)


def _channel_normalized_exp(gamma, shift):
    """The finite network of the normalised kernel: ``s·ψ(h/s)`` with
    ``s² = mean_c h_c²`` the empirical variance over channels and
    ψ(z) = exp(sqrt(γ) z + γ(shift - 1)/2), whose dual at unit variances is
    E[ψ(z)ψ(z')] = exp(γ(ρ + shift)) (the moment generating function)."""

    def fn(h):
        s = jnp.sqrt(jnp.mean(h * h, axis=-1, keepdims=True))
        return s * jnp.exp(math.sqrt(gamma) * h / s + gamma * (shift - 1) / 2)

    return fn


def test_exp_normalized_matches_monte_carlo_of_channel_normalised_network():
    """ExpNormalized has no elementwise φ (and, as in neural-tangents, no
    ``apply_fn``); its kernel is that of the wide network ``Dense(w) ->
    s·ψ(h/s) -> Dense(w')`` with s the channel norm. The empirical s
    fluctuates by O(1/sqrt(w)) around sqrt(q), which biases the estimate by
    O(1/w) (the gradient through s adds an O(1/w) NTK term too); 0.5% of the
    largest entry is allowed for it at w = 512, on top of 5 standard errors
    (it is below what 256 draws resolve: their mean was within one standard
    error, ~0.9% of the kernel). γ = 0.6: ψ = exp(sqrt(γ) z) has heavy
    tails, and at γ = 2 one standard error of 64 draws is already 6% of the
    kernel (1.7% at γ = 0.6).
    """
    gamma, shift = 0.6, 0.3
    d1 = stax.Dense(MC_WIDTH, W_std=1.2, b_std=0.3)
    d2 = stax.Dense(MC_OUT, W_std=0.9, b_std=0.2)
    fn = _channel_normalized_exp(gamma, shift)
    finite = stax.serial(d1, d2)

    def apply_fn(params, x, **kw):
        return d2.apply_fn(params[1], fn(d1.apply_fn(params[0], x)))

    x1, x2 = _mc_inputs()
    k = stax.serial(d1, stax.ExpNormalized(gamma, shift), d2).kernel_fn(x1, x2)
    nngp, nngp_sem, ntk, ntk_sem = mc_kernels(
        finite.init_fn, apply_fn, x1, x2, jax.random.PRNGKey(2), MC_SAMPLES
    )
    assert_within_mc(k.nngp, nngp, nngp_sem, bias=0.005, what="ExpNormalized nngp")
    assert_within_mc(k.ntk, ntk, ntk_sem, bias=0.005, what="ExpNormalized ntk")
