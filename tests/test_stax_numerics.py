"""Activation kernels at every input scale: finite and right, or a clear error.

Every activation with a closed-form dual, and ``ElementwiseNumerical(tanh)``,
is run in the network ``[Dense(64, W_std=1.5, b_std=0.05) -> φ]^L -> Dense(1)``
(depth L = 1, 8, 64, through `stax.repeat`; a few combinations are left out
for time, see ``PARAMS``) on ONE
batch of 24 inputs: three random 5-d directions at each of the scales
1e-30, 1e-12, 1e-6, 1e-2, 1, 1e2, 1e3, 1e6 (so one kernel call covers all
scales; the 3x3 diagonal blocks are per-scale kernels, the rest are cross
terms between scales). In float64 and in float32 (float32 inputs; the float64
reference run uses the same float32-rounded inputs, so only the kernel
arithmetic differs) the tests check:

* the diagonal ``K(x, x)``, ``Θ(x, x)`` against an independent recursion of
  the variances ``q -> W² E[φ(u)²] + b²``, ``Θ -> W² E[φ'(u)²] Θ + q``
  (u ~ N(0, q)) in 80-bit extended precision, with the one-dimensional
  moments written out here from their closed forms (or, for GELU and tanh,
  integrated by a graded Gauss–Legendre rule) — so also correctness, not only
  finiteness. The same recursion decides which inputs have a kernel beyond
  the dtype's range: those must raise `FloatingPointError` (Exp, polynomials
  and Gaussian(b > 0) at depth or scale), all others must be finite, with
  finite input gradients;
* symmetry, positive semi-definiteness, and independence of how the kernel
  is asked for: ``get="ntk"``, ``("nngp", "ntk")``, ``None`` and ``x2 = x1``
  given explicitly;
* float32 against float64 for the scales ≤ 1e3.

Not swept: ``Elementwise(fn, nngp_fn)``. Its kernel is the caller's
``nngp_fn`` (given only ``fn`` it has no kernel; ``ElementwiseNumerical`` is
the fn-only mode, swept above), so its accuracy at extreme scales is that of
the caller's formula.

Off-diagonal correctness at unit scale is the business of
``tests/test_stax_elementwise.py`` (numerical integration, Monte Carlo); at
extreme variances it is checked below against the textbook closed forms
evaluated in 80-bit precision.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from ntk import Kernel, stax
from ntk.kernel import inputs_to_kernel
from ntk.stax import combinators

LD = np.longdouble  # 80-bit on x86: eps 1e-19, max 1e4932
W_STD, B_STD, WIDTH, DIM = 1.5, 0.05, 64, 5
SCALES = (1e-30, 1e-12, 1e-6, 1e-2, 1.0, 1e2, 1e3, 1e6)
PER_SCALE = 3
DEPTHS = (1, 8, 64)


def _inputs():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((len(SCALES) * PER_SCALE, DIM))
    return x * np.repeat(np.asarray(SCALES), PER_SCALE)[:, None]


X64 = _inputs()
X32 = X64.astype(np.float32)
SCALE_OF = np.repeat(np.asarray(SCALES), PER_SCALE)


# ------------------------------------------------ 1-D moments E[g(u)], u ~ N(0, q)

# Gauss–Legendre on panels [12·2^-(k+1), 12·2^-k] (k < 48), [0, 12·2^-48] and
# their mirror images: graded towards 0, where g(sqrt(q) z) has its features at scale
# 1/sqrt(q), so any q up to ~1e25 is resolved; 24 nodes per panel integrate
# the analytic pieces to rounding. The Gaussian mass beyond 12 is < 1e-32.
_EDGES = np.append(12.0 * 2.0 ** -np.arange(49.0), 0.0)
_GX, _GW = np.polynomial.legendre.leggauss(24)
_A, _B = _EDGES[1:, None], _EDGES[:-1, None]
_Z = (0.5 * (_B - _A) * _GX + 0.5 * (_A + _B)).ravel()
_ZW = (0.5 * (_B - _A) * _GW).ravel() * np.exp(-(_Z**2) / 2) / math.sqrt(2 * math.pi)


def _expect(g, q):
    """E[g(u)] for u ~ N(0, q), vectorised over ``q`` (float64)."""
    s = np.sqrt(np.asarray(q, dtype=np.float64))[:, None]
    return np.sum(_ZW * (g(s * _Z) + g(-s * _Z)), axis=-1)


def _ncdf(x):
    return 0.5 * special.erfc(-x / math.sqrt(2))


def _gelu_moments(q):
    phi = lambda x: x * _ncdf(x)
    dphi = lambda x: _ncdf(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    return (
        _expect(lambda x: phi(x) ** 2, q).astype(LD),
        _expect(lambda x: dphi(x) ** 2, q).astype(LD),
    )


def _tanh_moments(q):
    return (
        _expect(lambda x: np.tanh(x) ** 2, q).astype(LD),
        _expect(lambda x: np.cosh(x) ** -4.0, q).astype(LD),
    )


def _abrelu_moments(a, b):
    return lambda q: ((a * a + b * b) / 2 * q, np.full_like(q, (a * a + b * b) / 2))


def _erf_moments(a, b, c):
    def m(q):
        return (
            a * a * 2 / np.pi * np.arcsin(2 * b * b * q / (1 + 2 * b * b * q)) + c * c,
            a * a * b * b * 4 / np.pi / np.sqrt(1 + 4 * b * b * q),
        )

    return m


def _sin_moments(a, b, c):
    def m(q):
        damp = np.exp(-2 * b * b * q) * math.cos(2 * c)
        return a * a / 2 * (1 - damp), a * a * b * b / 2 * (1 + damp)

    return m


def _exp_moments(a, b):
    def m(q):
        with np.errstate(over="ignore"):
            e = np.exp(2 * b * b * q)
        return a * a * e, a * a * b * b * e

    return m


def _gaussian_moments(a, b):
    def m(q):
        d = 1 - 4 * b * q
        ok = d > 0
        d = np.where(ok, d, 1)
        return (
            np.where(ok, a * a / np.sqrt(d), np.inf),
            np.where(ok, 4 * a * a * b * b * q / d**1.5, np.inf),
        )

    return m


def _double_factorial(n):
    return 1 if n <= 0 else n * _double_factorial(n - 2)


def _poly_moments(coef):
    coef = [float(c) for c in coef]

    def gaussian_moment(k, q):  # E[u^k] = (k-1)!! q^(k/2)
        return _double_factorial(k - 1) * q ** (k // 2) if k % 2 == 0 else 0 * q

    def m(q):
        e2 = sum(
            ci * cj * gaussian_moment(i + j, q)
            for i, ci in enumerate(coef)
            for j, cj in enumerate(coef)
        )
        d2 = sum(
            i * j * ci * cj * gaussian_moment(i + j - 2, q)
            for i, ci in enumerate(coef)
            for j, cj in enumerate(coef)
            if i and j
        )
        return e2 + 0 * q, d2 + 0 * q

    return m


def _gabor_moments(q):
    """φ = e^{-x²} sin x. With v ~ N(0, σ²), σ² = q/(1 + 4q) (the Gaussian
    weight e^{-2u²} absorbed into the density, factor (1 + 4q)^{-1/2}):
    E[φ²] = (1 - e^{-2σ²})/2 and, from (cos v - 2v sin v)² and
    E[cos 2v] = e^{-2σ²}, E[v sin 2v] = 2σ² e^{-2σ²}, E[v² cos 2v] = (σ² - 4σ⁴)
    e^{-2σ²}: E[φ'²] = 1/2 + 2σ² + e^{-2σ²}(1/2 - 6σ² + 8σ⁴)."""
    q = np.asarray(q, dtype=LD)
    s2 = q / (1 + 4 * q)
    damp, root = np.exp(-2 * s2), np.sqrt(1 + 4 * q)
    return (
        -np.expm1(-2 * s2) / 2 / root,
        (LD(0.5) + 2 * s2 + damp * (LD(0.5) - 6 * s2 + 8 * s2 * s2)) / root,
    )


def _exp_normalized_moments(gamma, shift):
    def m(q):
        e = np.exp(LD(gamma) * (1 + LD(shift)))
        return np.asarray(q, dtype=LD) * e, LD(gamma) * e + 0 * np.asarray(q, dtype=LD)

    return m


def _rectified_moments(n):
    """E[max(u, 0)^2n] = (2n-1)!!/2·q^n, E[φ'²] = n²(2n-3)!!/2·q^(n-1)."""

    def m(q):
        q = np.asarray(q, dtype=LD)
        d2 = n * n * _double_factorial(2 * n - 3) / LD(2) * q ** (n - 1) if n else 0 * q
        return _double_factorial(2 * n - 1) / LD(2) * q**n, d2

    return m


def _hermite_coef(n):
    return np.polynomial.hermite_e.herme2poly([0] * n + [1]) / math.sqrt(math.factorial(n))


class Case:
    """A layer and its 1-D moments ``q -> (E[φ(u)²], E[φ'(u)²])``."""

    def __init__(self, name, layer, moments):
        self.name, self.layer, self.moments = name, layer, moments

    def __repr__(self):
        return self.name


CASES = [
    Case("Relu", stax.Relu, _abrelu_moments(0.0, 1.0)),
    Case("LeakyRelu(0.1)", lambda: stax.LeakyRelu(0.1), _abrelu_moments(0.1, 1.0)),
    Case("ABRelu(-0.4,1.3)", lambda: stax.ABRelu(-0.4, 1.3), _abrelu_moments(-0.4, 1.3)),
    Case("Abs", stax.Abs, _abrelu_moments(-1.0, 1.0)),
    Case("Erf", stax.Erf, _erf_moments(1.0, 1.0, 0.0)),
    Case("Sigmoid_like", stax.Sigmoid_like, _erf_moments(0.5, 1 / 2.4020563531719796, 0.5)),
    Case("Gelu", stax.Gelu, _gelu_moments),
    Case("Sin", stax.Sin, _sin_moments(1.0, 1.0, 0.0)),
    Case(
        "Cos(0.8,1.5,-0.2)",
        lambda: stax.Cos(0.8, 1.5, -0.2),
        _sin_moments(0.8, 1.5, -0.2 + math.pi / 2),
    ),
    Case("Rbf(0.3)", lambda: stax.Rbf(0.3), lambda q: (1 + 0 * q, 0.6 + 0 * q)),
    Case("Sign", stax.Sign, lambda q: (1 + 0 * q, 0 * q)),
    Case("Gaussian", stax.Gaussian, _gaussian_moments(1.0, -1.0)),
    Case("Gaussian(1,0.01)", lambda: stax.Gaussian(1.0, 0.01), _gaussian_moments(1.0, 0.01)),
    Case("Exp(0.7,-0.5)", lambda: stax.Exp(0.7, -0.5), _exp_moments(0.7, -0.5)),
    Case("Monomial(2)", lambda: stax.Monomial(2), _poly_moments([0, 0, 1])),
    Case(
        "Polynomial",
        lambda: stax.Polynomial([0.3, -1.0, 0.5, 0.2]),
        _poly_moments([0.3, -1.0, 0.5, 0.2]),
    ),
    Case("Hermite(3)", lambda: stax.Hermite(3), _poly_moments(_hermite_coef(3))),
    Case("ElementwiseNumerical(tanh)", lambda: stax.ElementwiseNumerical(jnp.tanh), _tanh_moments),
    Case("Gabor", stax.Gabor, _gabor_moments),
    # Kernel only (no φ): its "moments" are the diagonal K(q) = q e^{γ(1+shift)},
    # K'(q) = γ e^{γ(1+shift)} of its definition.
    Case(
        "ExpNormalized(1.5,-0.7)",
        lambda: stax.ExpNormalized(1.5, -0.7),
        _exp_normalized_moments(1.5, -0.7),
    ),
    Case("RectifiedMonomial(0)", lambda: stax.RectifiedMonomial(0), _rectified_moments(0)),
    Case("RectifiedMonomial(2)", lambda: stax.RectifiedMonomial(2), _rectified_moments(2)),
    Case("RectifiedMonomial(3)", lambda: stax.RectifiedMonomial(3), _rectified_moments(3)),
]


def _network(case, depth):
    """``[Dense -> φ]^depth -> Dense(1)``: `stax.repeat` compiles the block once."""
    block = stax.serial(stax.Dense(WIDTH, W_std=W_STD, b_std=B_STD), case.layer())
    return stax.serial(stax.repeat(block, depth), stax.Dense(1))


def _reference_diagonal(case, depth, x):
    """``(K(x_i, x_i), Θ(x_i, x_i))`` per input, by the variance recursion in
    80-bit precision (inf where it leaves even that range)."""
    x = np.asarray(x, dtype=np.float64).astype(LD)
    w2, b2 = LD(W_STD) ** 2, LD(B_STD) ** 2
    q = w2 * np.sum(x * x, axis=1) / DIM + b2
    theta = q.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in range(depth):
            k, kd = (np.asarray(v, dtype=LD) for v in case.moments(q))
            theta = kd * theta
            if layer < depth - 1:
                q = w2 * k + b2
                theta = w2 * theta + q
        ntk = theta + k
    return k, ntk


def _representable(case, depth, x, dtype):
    """Masks of the inputs whose kernel is representable in ``dtype`` with a
    margin of 1e3, and of those whose kernel exceeds its range (between the
    two, either outcome is accepted). The diagonal is the largest entry of a
    PSD kernel, so it decides for the whole row."""
    k, ntk = _reference_diagonal(case, depth, x)
    big = np.maximum(np.abs(k), np.abs(ntk))
    big = np.where(np.isnan(big), LD(np.inf), big)
    fmax = LD(np.finfo(dtype).max)
    return big < fmax / 1e3, big > fmax


# ----------------------------------------------------------------- the sweep

# For time (each configuration compiles 3-5 programs): LeakyRelu and
# Sigmoid_like run ABRelu's and Erf's duals with other constants, depth 1 is
# enough for them; the unbounded activations overflow at depth 8 already
# (depth 64 adds nothing); the quadrature costs 129² evaluations per entry
# and layer: depths 1 and 8.
# RectifiedMonomial(3) and (0) run (2)'s code with other polynomials.
SHALLOW_ONLY = ("LeakyRelu(0.1)", "Sigmoid_like", "RectifiedMonomial(3)", "RectifiedMonomial(0)")
NOT_64 = (
    "ElementwiseNumerical(tanh)",
    "Gaussian(1,0.01)",
    "Exp(0.7,-0.5)",
    "Monomial(2)",
    "Polynomial",
    "Hermite(3)",
    "RectifiedMonomial(2)",
    "ExpNormalized(1.5,-0.7)",
)
PARAMS = [
    pytest.param(c, d, id=f"{c.name}-depth{d}")
    for c in CASES
    for d in DEPTHS
    if not (c.name in NOT_64 and d == 64) and not (c.name in SHALLOW_ONLY and d > 1)
]
EPS32 = float(np.finfo(np.float32).eps)


def _requests(kernel_fn, x, dtype):
    """The kernel asked for three ways, as one compiled program (a third of
    the compile time of three calls): ``get=None`` (the `Kernel`, as a dict
    of nngp, ntk, cov1), ``x2 = x1`` given explicitly with
    ``get=("nngp", "ntk")`` (dict of nngp, ntk), and ``get="ntk"`` alone.
    Each request is its own `jax.jit`-compiled kernel_fn inside; all float64
    NumPy arrays."""

    def run(x):
        return kernel_fn(x, None), kernel_fn(x, x, ("nngp", "ntk")), kernel_fn(x, None, "ntk")

    k, explicit, only = jax.jit(run)(jnp.asarray(x, dtype))
    f64 = lambda v: np.asarray(v, dtype=np.float64)
    out = {f: f64(getattr(k, f)) for f in ("nngp", "ntk", "cov1")}
    return out, {n: f64(getattr(explicit, n)) for n in ("nngp", "ntk")}, f64(only)


def _scale_blocks(scales):
    """Index arrays of the per-scale diagonal blocks."""
    return {s: np.flatnonzero(scales == s) for s in SCALES if np.any(scales == s)}


def _check_finite_symmetric_psd(out, dtype, depth, scales, what):
    eps = np.finfo(dtype).eps
    for name in ("nngp", "ntk"):
        m = out[name]
        top = np.max(np.abs(m))
        assert np.all(np.isfinite(m)), f"{what}: {name} has inf/NaN entries"
        # The duals combine the two inputs only commutatively, so a symmetric
        # input covariance gives a symmetric kernel; but XLA's vectorised and
        # scalar loops may round an entry and its transpose differently
        # (fused multiply-add or not), an ulp per layer, which polynomials
        # amplify most (Hermite(3): 60 eps at depth 8).
        asym = np.max(np.abs(m - m.T))
        assert asym <= 16 * depth * eps * top, (
            f"{what}: {name} asymmetric by {asym:.3g} (max {top:.3g})"
        )
        # PSD (a Gram matrix of features): the whole matrix, and each scale's
        # block against its own size; tolerance ~ rounding of the entries.
        tol = 1e-8 if dtype == np.float64 else 1e-5
        for idx in [np.arange(len(m))] + list(_scale_blocks(scales).values()):
            ev = np.linalg.eigvalsh(m[np.ix_(idx, idx)])
            assert ev[0] >= -tol * max(ev[-1], 0), (
                f"{what}: {name} block at scale {scales[idx[0]]:g} not PSD: min "
                f"eigenvalue {ev[0]:.3g}, max {ev[-1]:.3g}"
            )
    # cov1 and the diagonal come from different einsums of the inputs and
    # different fused loops (last bits may differ, an ulp or so per layer, as
    # for the symmetry above; Hermite(3): 48 eps at depth 8 with XLA's
    # legacy CPU emitters); the layers must not amplify that further.
    np.testing.assert_allclose(
        np.diag(out["nngp"]),
        out["cov1"],
        rtol=16 * depth * eps,
        err_msg=f"{what}: diag(nngp) != cov1",
    )


def _check_against_reference(out, case, depth, x, dtype, what):
    """The diagonal against the 80-bit variance recursion."""
    k_ref, ntk_ref = (v.astype(np.float64) for v in _reference_diagonal(case, depth, x))
    numerical = case.name.startswith("ElementwiseNumerical")
    # float64: the closed forms are exact to rounding (observed ≤ 5e-14 up to
    # depth 64); the quadrature has its documented ~1e-6 (observed 8e-7).
    # float32: rounding, ~eps32 per layer (observed ≤ 8e-6 at depth 64).
    rtol = (5e-6 if numerical else 1e-12) if dtype == np.float64 else 2e-5
    for name, ref in (("nngp", k_ref), ("ntk", ntk_ref)):
        got = np.diag(out[name])
        err = np.abs(got - ref) / np.abs(ref)
        i = int(np.argmax(err))
        assert err[i] <= rtol, (
            f"{what}: diagonal {name} of input {i} off the reference by "
            f"{err[i]:.3g} (got {got[i]!r}, reference {ref[i]!r})"
        )


@pytest.mark.parametrize("case, depth", PARAMS)
def test_kernel_is_finite_and_right_or_raises_at_every_scale(case, depth):
    """The sweep of the module docstring for one activation and depth.

    float64 runs on the float32-rounded inputs, so the float32 comparison
    sees only the kernels' arithmetic.
    """
    kernel_fn = _network(case, depth).kernel_fn
    x_all = X32.astype(np.float64)
    full = {}
    for dtype in (np.float64, np.float32):
        what = f"{case.name} depth {depth} {np.dtype(dtype).name}"
        ok, bad = _representable(case, depth, x_all, dtype)
        if np.any(bad):
            with pytest.raises(FloatingPointError, match="inf/NaN"):
                kernel_fn(jnp.asarray(x_all[bad], dtype), None, get="ntk")
        if not np.any(ok):
            continue
        x = x_all[ok]
        out, explicit, only = _requests(kernel_fn, x, dtype)
        _check_finite_symmetric_psd(out, dtype, depth, SCALE_OF[ok], what)
        _check_against_reference(out, case, depth, x, dtype, what)
        eps = np.finfo(dtype).eps
        top = {n: np.max(np.abs(out[n])) for n in ("nngp", "ntk")}
        # How the kernel is asked for must not change it (each request is
        # traced separately, so XLA may fuse and round it differently; a few
        # roundings apart at most): x2 = x1 given explicitly with
        # get=("nngp", "ntk"), and get="ntk" alone, against get=None.
        for n in ("nngp", "ntk"):
            diff = np.max(np.abs(explicit[n] - out[n]))
            assert diff <= 16 * eps * top[n], f"{what}: {n} with x2=x1 off x2=None by {diff:.3g}"
        diff = np.max(np.abs(only - out["ntk"]))
        assert diff <= 16 * eps * top["ntk"], f"{what}: get='ntk' off get=None by {diff:.3g}"
        full[dtype] = (out, ok)
    if len(full) == 2:
        _check_float32_against_float64(kernel_fn, full, x_all, f"{case.name} depth {depth}")


def _check_float32_against_float64(kernel_fn, full, x_all, what):
    """float32 vs float64 per scale <= 1e3, where both are finite and the
    kernel is well-conditioned at float32 precision.

    Conditioning: scaling the off-diagonal pre-activation covariances of the
    first layer, W²·x·x'/d + b², by 1 ± 1.2e-7 (float32 rounding; either sign,
    since a pair may be pushed to collinearity or away from it) must move the
    float64 kernel by less than 1e-4. Otherwise no float32 computation can
    be accurate: e.g. at input scale 1e-6 the three inputs' covariances differ
    by 1e-12 next to the bias b² = 2.5e-3, below float32's resolution, and a
    chaotic map (sign, or sin at depth 64) blows that difference up to O(1).
    """
    (out32, ok32), (out64, ok64) = full[np.float32], full[np.float64]
    both = ok32 & ok64
    k = inputs_to_kernel(jnp.asarray(x_all[ok64]), None, diagonal_spatial=True, compute_ntk=True)
    # The input Gram g enters the first layer as W² g + b²; shifting g by
    # ±eps·(g + b²/W²) moves that by ±eps relative.
    shift = EPS32 * (k.nngp + B_STD**2 / W_STD**2) * (1 - np.eye(len(k.nngp)))
    run = jax.jit(lambda k: kernel_fn(k))  # one compilation for both
    perturbed = [run(k.replace(nngp=k.nngp + sign * shift)) for sign in (1, -1)]
    in64, in32 = both[ok64], both[ok32]
    scales = SCALE_OF[both]
    for n in ("nngp", "ntk"):
        m64 = out64[n][np.ix_(in64, in64)]
        mps = [np.asarray(getattr(p, n))[np.ix_(in64, in64)] for p in perturbed]
        m32 = out32[n][np.ix_(in32, in32)]
        for s, idx in _scale_blocks(scales).items():
            if s > 1e3:
                continue
            b64, b32 = m64[np.ix_(idx, idx)], m32[np.ix_(idx, idx)]
            size = np.max(np.abs(b64))
            if max(np.max(np.abs(mp[np.ix_(idx, idx)] - b64)) for mp in mps) > 1e-4 * size:
                continue
            err = np.max(np.abs(b32 - b64)) / size
            assert err <= 1e-3, f"{what}: float32 {n} at scale {s:g} is {err:.3g} off float64"


# One activation per dual (LeakyRelu, Relu, Abs share ABRelu's; Sigmoid_like
# Erf's; Monomial, Hermite the polynomial one; RectifiedMonomial(3)
# RectifiedMonomial(2)'s), for time.
GRAD_PARAMS = [
    pytest.param(c, 1, id=f"{c.name}-depth1")
    for c in CASES
    if c.name
    not in (
        "Relu",
        "LeakyRelu(0.1)",
        "Abs",
        "Sigmoid_like",
        "Monomial(2)",
        "Hermite(3)",
        "RectifiedMonomial(3)",
    )
] + [
    pytest.param(c, 64, id=f"{c.name}-depth64")
    for c in CASES
    if c.name in ("ABRelu(-0.4,1.3)", "Abs")
]


@pytest.mark.parametrize("case, depth", GRAD_PARAMS)
def test_input_gradients_are_finite_at_every_scale(case, depth):
    """Reverse-mode gradients of the NTK, in float64 and float32, wherever the
    kernel is representable in that dtype (inputs: the float32-rounded
    sweep). float64 has the zero variances and exact correlations ±1 where
    derivatives can be 0·inf; float32 adds overflow of intermediate
    products. At depth 64 the activations with gain > 2 per layer reach
    kernels ~1e34. Both gradients are one compiled program (`jax.jit` of
    `jax.grad`), for time."""
    kernel_fn = _network(case, depth).kernel_fn
    x_all = X32.astype(np.float64)
    oks = [_representable(case, depth, x_all, dtype)[0] for dtype in (np.float64, np.float32)]

    def grads(x64, x32):
        g = jax.grad(lambda x: jnp.sum(kernel_fn(x, None, get="ntk")))
        return g(x64), g(x32)

    xs = [jnp.asarray(x_all[ok], dtype) for ok, dtype in zip(oks, (np.float64, np.float32))]
    for grad, ok, dtype in zip(jax.jit(grads)(*xs), oks, ("float64", "float32")):
        bad = ~np.all(np.isfinite(np.asarray(grad)), axis=1)
        assert not np.any(bad), (
            f"{case.name} depth {depth} {dtype}: gradient not finite at scales "
            f"{sorted(set(SCALE_OF[ok][bad]))}"
        )


# ------------------------------------- off-diagonal entries at extreme variances


def _layer_duals(layer, c12, c11, c22):
    """``(K_φ, K_φ')`` of ``layer`` at the triples ``(c12, c11, c22)``: the i-th
    triple sits at ``nngp[i, i]`` of a Gaussian input `Kernel` whose NTK is 1."""
    n = len(c12)
    k = Kernel(
        nngp=jnp.diag(jnp.asarray(c12)),
        ntk=jnp.ones((n, n)),
        cov1=jnp.asarray(c11),
        cov2=jnp.asarray(c22),
        shape1=(n, 1),
        shape2=(n, 1),
        diagonal_spatial=True,
        is_gaussian=True,
    )
    out = layer.kernel_fn(k)
    return np.diag(np.asarray(out.nngp)), np.diag(np.asarray(out.ntk))


def _textbook(name, rho, c11, c22):
    """The closed forms as printed (Cho & Saul; Williams; Tsuchida et al.; the
    sine and Gaussian integrals), in 80-bit arithmetic from the exact ρ."""
    n = np.sqrt(c11 * c22)
    c12 = rho * n
    one_minus = np.where(np.abs(rho) == 1, LD(0), 1 - rho * rho)
    if name == "Relu":
        theta = np.arccos(rho)
        return (n * np.sqrt(one_minus) + (np.pi - theta) * c12) / (2 * np.pi), (np.pi - theta) / (
            2 * np.pi
        )
    if name == "Erf":  # a = b = 1, c = 0
        p = (1 + 2 * c11) * (1 + 2 * c22)
        rad = 1 + 2 * (c11 + c22) + 4 * c11 * c22 * one_minus  # = p - 4 c12², exactly
        return 2 / np.pi * np.arcsin(2 * c12 / np.sqrt(p)), 4 / np.pi / np.sqrt(rad)
    if name == "Gelu":
        p = (1 + c11) * (1 + c22)
        d2 = 1 + c11 + c22 + c11 * c22 * one_minus  # = p - c12², exactly
        d = np.sqrt(d2)
        beta = np.pi / 2 + np.arcsin(c12 / np.sqrt(p))
        k = (c12 * beta + (c12 * c12 + c11 * c22 * d2) / (p * d)) / (2 * np.pi)
        kd = (beta + c12 * (d2 * (3 + c11 + c22) + c12 * c12) / (p * d * d2)) / (2 * np.pi)
        return k, kd
    if name == "Sin":  # a = b = 1, c = 0
        # e^{-s/2}·sinh(c12), cosh(c12) at small c12; the difference of
        # exponentials (no cancellation then) where sinh would overflow.
        s = (c11 + c22) / 2
        small = np.abs(c12) < 30
        c = np.where(small, c12, 0)
        hi, lo = np.exp(-(s - c12)), np.exp(-(s + c12))
        return (
            np.where(small, np.exp(-s) * np.sinh(c), (hi - lo) / 2),
            np.where(small, np.exp(-s) * np.cosh(c), (hi + lo) / 2),
        )
    if name == "Gaussian":  # a = 1, b = -1
        dd = 1 + 2 * (c11 + c22) + 4 * c11 * c22 * one_minus  # = D, exactly
        return 1 / np.sqrt(dd), 4 * c12 / dd**1.5
    if name == "Gabor":  # neural-tangents 0.6.5's formulas
        s = c11 + c22
        dd = 1 + 2 * s + 4 * c11 * c22 * one_minus  # det(I + 2C)
        lo = np.exp(-(s + 4 * c11 * c22 * one_minus - 2 * c12) / (2 * dd))
        hi = lo * np.exp(-2 * c12 / dd)
        # e^{-A-} - e^{-A+} by expm1: the plain difference keeps only ~7
        # digits of 80-bit precision at variance 1e-12.
        k = -lo * np.expm1(-2 * c12 / dd) / (2 * np.sqrt(dd))
        g = 4 * c12 * (dd + s + 1)
        kd = (lo * (dd + 8 * c12 * c12 + g) + hi * (dd + 8 * c12 * c12 - g)) / (2 * dd**2.5)
        return k, kd
    if name == "RectifiedMonomial(2)":  # Cho & Saul's J_2 and J_1
        theta, sine = np.arccos(rho), np.sqrt(one_minus)
        j2 = 3 * sine * rho + (np.pi - theta) * (1 + 2 * rho * rho)
        j1 = sine + (np.pi - theta) * rho
        return n * n * j2 / (2 * np.pi), 4 * n * j1 / (2 * np.pi)
    if name == "ExpNormalized":  # γ = 1, shift = -1
        e = np.exp(rho - 1)
        return n * e, e
    raise KeyError(name)


# Variances 1e-12 … 1e6 (where 80-bit arithmetic is exact enough for the
# textbook forms), two variance ratios, correlations from -1 to 1.
_RHOS = (-1.0, -0.999999, -0.6, 0.0, 0.3, 0.999999, 1.0)
_TRIPLES = [(r, c, c * k) for c in (1e-12, 1e-4, 1.0, 1e3, 1e6) for k in (1.0, 7.0) for r in _RHOS]
_LAYERS = {
    "Relu": stax.Relu,
    "Erf": stax.Erf,
    "Gelu": stax.Gelu,
    "Sin": stax.Sin,
    "Gaussian": stax.Gaussian,
    "Gabor": stax.Gabor,
    "RectifiedMonomial(2)": lambda: stax.RectifiedMonomial(2),
    "ExpNormalized": stax.ExpNormalized,
}


@pytest.mark.parametrize("name", sorted(_LAYERS))
def test_duals_match_textbook_forms_in_extended_precision(name):
    """Every pair (not just the diagonal) at small and large variances and
    correlations up to ±1, against the textbook formulas in 80-bit precision
    at the correlation actually given (ρ of the float64 c12; exactly ±1 where
    intended). Error relative to the Cauchy–Schwarz bound sqrt(K(x,x)
    K(x',x')), within 64 eps times the condition number 1 + 1/(1 − ρ²) of
    the duals in ρ (float64 rounding of ρ alone moves them by that much)."""
    rho, c11, c22 = (np.array(v, dtype=LD) for v in zip(*_TRIPLES))
    c12 = (rho * np.sqrt(c11 * c22)).astype(np.float64)
    got = _layer_duals(_LAYERS[name](), c12, c11.astype(np.float64), c22.astype(np.float64))
    given = np.where(np.abs(rho) == 1, rho, c12.astype(LD) / np.sqrt(c11 * c22))
    ref = _textbook(name, given, c11, c22)
    cond = 1 + 1 / np.maximum(1 - rho.astype(np.float64) ** 2, 1e-300)
    tol = np.where(np.abs(rho) == 1, 64, 64 * cond) * np.finfo(np.float64).eps
    ref1 = _textbook(name, np.ones_like(rho), c11, c11)
    ref2 = _textbook(name, np.ones_like(rho), c22, c22)
    for i, what in ((0, "K"), (1, "K'")):
        scale = np.sqrt(np.abs(ref1[i] * ref2[i])).astype(np.float64)
        err = np.abs(got[i] - ref[i].astype(np.float64)) / np.maximum(scale, 1e-300)
        j = int(np.argmax(err / tol))
        assert err[j] <= tol[j], (
            f"{name} {what} at (ρ, c11, c22) = {_TRIPLES[j]}: got "
            f"{got[i][j]!r}, textbook {float(ref[i][j])!r} "
            f"(relative error {err[j]:.3g} > {tol[j]:.3g})"
        )


@pytest.mark.parametrize("name", ["Relu", "Erf", "Gelu", "Sign"])
def test_duals_reach_their_limits_at_variance_1e150(name):
    """At variance 1e150 (inputs of norm 1e75; the products c11·c22 overflow
    float64) the duals must be finite and equal their limits: ReLU is
    positively homogeneous (K(λc) = λK(c), K' unchanged); erf(bx) tends to
    sign(x), whose K = (2/π) arcsin ρ, K' → 0; GELU tends to ReLU."""
    rho = np.array([r for r in _RHOS for _ in (1.0, 7.0)])
    ratio = np.array([k for _ in _RHOS for k in (1.0, 7.0)])
    big, unit = 1e150, 1.0
    c11, c22 = np.full_like(rho, big), big * ratio
    c12 = rho * np.sqrt(c11) * np.sqrt(c22)
    k, kd = _layer_duals(
        {"Relu": stax.Relu, "Erf": stax.Erf, "Gelu": stax.Gelu, "Sign": stax.Sign}[name](),
        c12,
        c11,
        c22,
    )
    assert np.all(np.isfinite(k)) and np.all(np.isfinite(kd)), name
    scale = np.sqrt(c11 * (c22 / c11)) * np.sqrt(c11)  # sqrt(c11 c22) without overflow
    if name in ("Relu", "Gelu"):
        # The ReLU kernel at unit scale, scaled: GELU differs by O(1/sqrt(c)).
        ref_k, ref_kd = (
            np.asarray(v, dtype=np.float64)
            for v in _textbook(
                "Relu", rho.astype(LD), np.full_like(rho, unit, dtype=LD), ratio.astype(LD)
            )
        )
        np.testing.assert_allclose(k / scale, ref_k / np.sqrt(ratio), rtol=0, atol=1e-12)
        np.testing.assert_allclose(kd, ref_kd, rtol=0, atol=1e-12)
    else:
        np.testing.assert_allclose(k, 2 / np.pi * np.arcsin(rho), rtol=0, atol=1e-12)
        np.testing.assert_allclose(kd, 0.0, atol=1e-12)


# ------------------------------------------- nearly collinear inputs in float32

# 1-D inputs with a small bias: every pair of positive inputs is nearly
# collinear (x = 1 and 1.001 are 3e-5 rad apart after Dense(1.5, 0.05)), the
# setting of 1-D regression demos. Their correlation rounds to 1 - O(eps) in
# float32, so an angle taken from the NNGP is resolved to ~sqrt(eps) = 3e-4
# rad only, and the NTK, whose K_φ' is linear in θ, was off by 1e3-1e4 eps.
# The chords the vector kernel carries resolve it.
COLLINEAR_X = np.array([1, 1.001, 1.01, 1.1, 2, 2.002, 3.0])


def _arccos_ld(a, b):
    """Cho & Saul's arc-cosine kernels of ABRelu(a, b), θ = arccos ρ (1 - ρ
    ≥ 5e-10 here, resolved to 1e-9 relative)."""
    f, half = LD((a - b) ** 2) / (2 * np.pi), LD(a * a + b * b) / 2

    def dual(k, v):
        p = np.sqrt(np.outer(v, v))
        theta = np.arccos(np.clip(k / p, -1, 1))
        np.fill_diagonal(theta, 0)
        dot = half - f * theta
        return f * p * np.sin(theta) + dot * k, dot

    return dual


def _step_ld(k, v):
    """The step (x >= 0): K = (π - θ)/(2π), K' = 0."""
    theta = np.arccos(np.clip(k / np.sqrt(np.outer(v, v)), -1, 1))
    np.fill_diagonal(theta, 0)
    return (np.pi - theta) / (2 * np.pi), np.zeros_like(k)


def _erf_ld(k, v):
    """Williams' arcsine kernel (its derivative kernel has no 1 - ρ to resolve)."""
    big_p = np.outer(1 + 2 * v, 1 + 2 * v)
    return 2 / LD(np.pi) * np.arcsin(2 * k / np.sqrt(big_p)), 4 / LD(np.pi) / np.sqrt(
        big_p - 4 * k * k
    )


def _sin_ld(a, b, c):
    """E[sin(bu + c) sin(bv + c)] = [e^{-b²(s/2 - k)} - e^{-b²(s/2 + k)} cos 2c]/2."""

    def dual(k, v):
        s = np.add.outer(v, v)
        near, far = np.exp(-LD(b * b) * (s / 2 - k)), np.exp(-LD(b * b) * (s / 2 + k))
        cos_2c = np.cos(2 * LD(c))
        return LD(a * a) / 2 * (near - far * cos_2c), LD(a * a * b * b) / 2 * (near + far * cos_2c)

    return dual


def _rbf_ld(gamma):
    def dual(k, v):
        nngp = np.exp(-LD(gamma) * (np.add.outer(v, v) - 2 * k))
        return nngp, 2 * LD(gamma) * nngp

    return dual


def _gaussian_ld(a, b):
    """E[a e^{bu²} a e^{bv²}] = a²/sqrt(D), D = (1 - 2b c11)(1 - 2b c22) - 4b²c12²."""

    def dual(k, v):
        big_d = np.outer(1 - 2 * LD(b) * v, 1 - 2 * LD(b) * v) - 4 * LD(b * b) * k * k
        return LD(a * a) / np.sqrt(big_d), 4 * LD(a * a * b * b) * k / big_d**1.5

    return dual


def _gabor_ld(k, v):
    """neural-tangents' Gabor kernel, as written in `ntk.stax.duals.gabor`."""
    s, delta = np.add.outer(v, v), np.outer(v, v) - k * k
    big_d = 1 + 2 * s + 4 * delta
    a_minus, a_plus = (s + 4 * delta - 2 * k) / (2 * big_d), (s + 4 * delta + 2 * k) / (2 * big_d)
    nngp = (np.exp(-a_minus) - np.exp(-a_plus)) / (2 * np.sqrt(big_d))
    cross = 4 * k * (big_d + s + 1)
    dot = np.exp(-a_minus) * (big_d + 8 * k * k + cross) + np.exp(-a_plus) * (
        big_d + 8 * k * k - cross
    )
    return nngp, dot / (2 * big_d**2.5)


def _exp_normalized_ld(gamma, shift):
    def dual(k, v):
        p = np.sqrt(np.outer(v, v))
        e = np.exp(LD(gamma) * (k / p + LD(shift)))
        return p * e, LD(gamma) * e

    return dual


def _recursion_in_extended_precision(dual, depth, w, bias, normalise=False, x=COLLINEAR_X):
    """NNGP and NTK of ``Dense, [activation, Dense] * depth`` on the 1-D
    inputs ``x`` (rounded to float32, as the network sees them) in 80-bit
    arithmetic, from the textbook closed forms ``dual(k, variances) -> (K_φ,
    K_φ')``; ``normalise``: LayerNorm before the activation (k / sqrt(v_i
    v_j), eps 1e-12)."""
    x = np.asarray(x).astype(np.float32).astype(LD)
    k = LD(w) ** 2 * np.outer(x, x) + LD(bias) ** 2
    ntk = k.copy()
    for _ in range(depth):
        if normalise:
            norm = np.sqrt(np.outer(np.diag(k), np.diag(k)) + LD(1e-12))
            k, ntk = k / norm, ntk / norm
        phi, dot = dual(k, np.diag(k).copy())
        k = LD(w) ** 2 * phi + LD(bias) ** 2
        ntk = LD(w) ** 2 * dot * ntk + k
    return k, ntk


# name: (layer, 80-bit dual, depths[, eps per layer]). Measured NTK errors
# at depth 1 and 10 (eps, relative to sqrt(K_ii K_jj)): ReLU's family, the
# step, LayerNorm + Relu 0.7-4, Erf 1-31, Sin/Cos 1-5, Gaussian 3-25, Gabor
# 4-54, ExpNormalized 1-13. Without the chords (the squared distances
# c11 + c22 - 2c12 instead, which lose the angle of inputs that differ
# mostly in norm) ReLU's family took 7-90, the step 2,300 at depth 3; without
# either, 3,600-35,000. Rbf is the exception: a function of the squared
# distance χ + (√c11 - √c22)², whose second term the float32 variances give
# to ~eps √c |√c11 - √c22| only (1,000 eps of it for x = 1 and 1.001), and
# its layers stretch nearby pairs apart (d' ≈ 4.5 d), so the error grows with
# depth: 1 eps at depth 1, 12 at depth 5, 192 at depth 10.
COLLINEAR_CASES = {
    "relu": (stax.Relu(), _arccos_ld(0.0, 1.0), (1, 10)),
    "leaky": (stax.LeakyRelu(0.1), _arccos_ld(0.1, 1.0), (1, 10)),
    "abs": (stax.Abs(), _arccos_ld(-1.0, 1.0), (1, 10)),
    "rectified_monomial_1": (stax.RectifiedMonomial(1), _arccos_ld(0.0, 1.0), (1, 10)),
    "step": (stax.RectifiedMonomial(0), _step_ld, (1, 10)),
    "layernorm_relu": (stax.serial(stax.LayerNorm(), stax.Relu()), _arccos_ld(0.0, 1.0), (1, 10)),
    "erf": (stax.Erf(), _erf_ld, (1, 10)),
    "sin": (stax.Sin(), _sin_ld(1.0, 1.0, 0.0), (1, 10)),
    "cos": (stax.Cos(0.8, 1.5, -0.2), _sin_ld(0.8, 1.5, -0.2 + np.pi / 2), (1, 10)),
    "rbf": (stax.Rbf(), _rbf_ld(1.0), (1, 10), 24),
    "gaussian": (stax.Gaussian(), _gaussian_ld(1.0, -1.0), (1, 10)),
    "gabor": (stax.Gabor(), _gabor_ld, (1, 10)),
    "exp_normalized": (stax.ExpNormalized(), _exp_normalized_ld(1.0, -1.0), (1, 10)),
}


@pytest.mark.parametrize(
    "name,depth", [(name, d) for name, case in sorted(COLLINEAR_CASES.items()) for d in case[2]]
)
def test_float32_kernels_of_nearly_collinear_inputs_are_right_to_rounding(name, depth):
    """Within 16 eps per layer (Rbf: 24) of the extended-precision recursion,
    relative to sqrt(K_ii K_jj) (the kernels of an odd φ pass through 0).
    Depth 10 runs through serial's loop, whose carry rebuilds the NNGP from
    the chords."""
    w, bias = 1.5, 0.05
    layer, dual, _, *per_layer = COLLINEAR_CASES[name]
    hidden = [layer, stax.Dense(512, W_std=w, b_std=bias)] * depth
    _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=w, b_std=bias), *hidden)
    out = kernel_fn(jnp.asarray(COLLINEAR_X[:, None], jnp.float32), None, ("nngp", "ntk"))
    ref = _recursion_in_extended_precision(dual, depth, w, bias, normalise="layernorm" in name)
    _assert_within_eps(out, ref, (per_layer or [16])[0] * (depth + 1))


def _fan_in_block(fan_in, second):
    relu = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu())
    return stax.serial(
        stax.FanOut(2),
        stax.parallel(relu, second),
        fan_in,
        stax.Dense(512, W_std=1.3, b_std=0.1),
        stax.Relu(),
    )


FAN_IN_BLOCKS = {
    "product of Relu branches": _fan_in_block(
        stax.FanInProd(), stax.serial(stax.Dense(512, W_std=1.2, b_std=0.3), stax.Relu())
    ),
    "product with an affine branch": _fan_in_block(
        stax.FanInProd(), stax.Dense(512, W_std=1.2, b_std=0.3)
    ),
    "concatenation": _fan_in_block(
        stax.FanInConcat(), stax.serial(stax.Dense(256, W_std=1.2, b_std=0.3), stax.Relu())
    ),
}


@pytest.mark.parametrize("name", sorted(FAN_IN_BLOCKS))
def test_float32_kernels_through_products_and_concatenations_are_right_to_rounding(name):
    """Three blocks of two branches merged by FanInProd / FanInConcat and
    followed by Dense, Relu, on the nearly collinear inputs above: within 16
    eps per block of the same network in float64 on the same (float32)
    inputs, relative to sqrt(K_ii K_jj). The ReLU after the merge takes its
    angle from the merged chord; from the merged NNGP (chords dropped at the
    merge) the NTK was 8,000-15,000 eps off (measured; now 2-9)."""
    depth = 3
    _, _, kernel_fn = stax.serial(
        stax.Dense(512, W_std=1.5, b_std=0.05), *[FAN_IN_BLOCKS[name]] * depth
    )
    x = jnp.asarray(COLLINEAR_X[:, None], jnp.float32)
    out = kernel_fn(x, None, ("nngp", "ntk"))
    ref = kernel_fn(x.astype(jnp.float64), None, ("nngp", "ntk"))
    _assert_within_eps(out, [np.asarray(r, LD) for r in ref], 16 * depth)


@pytest.mark.parametrize("scale", [30.0, 1000.0])
def test_float32_gelu_kernels_take_their_angle_from_the_chord(scale):
    """Dense(1, 1), Gelu, Dense on the inputs above times 30 or 1000
    (variances 1e3-1e7, where Gelu is nearly ReLU and its derivative kernel
    turns on 1 - rho^2): within 16 eps of the same network in float64 on the
    same (float32) inputs, relative to sqrt(K_ii K_jj). With 1 - rho^2 from
    the NNGP the NTK was 300-530 eps off (measured; now about 1)."""
    _, _, kernel_fn = stax.serial(
        stax.Dense(512, W_std=1.0, b_std=1.0), stax.Gelu(), stax.Dense(512, W_std=1.0, b_std=1.0)
    )
    x = jnp.asarray(scale * COLLINEAR_X[:, None], jnp.float32)
    out = kernel_fn(x, None, ("nngp", "ntk"))
    ref = kernel_fn(x.astype(jnp.float64), None, ("nngp", "ntk"))
    _assert_within_eps(out, [np.asarray(r, LD) for r in ref], 16)


def _assert_within_eps(out, ref, bound):
    """``(nngp, ntk)`` within ``bound`` float32 eps of ``ref`` (an 80-bit
    recursion, or float64 on the same inputs), relative to sqrt(K_ii K_jj)."""
    eps = np.finfo(np.float32).eps
    for kind, value, r in zip(("nngp", "ntk"), out, ref):
        scale = np.sqrt(np.outer(np.diag(r), np.diag(r)))
        err = np.max(np.abs(np.asarray(value, LD) - r) / scale) / eps
        assert err <= bound, f"{kind}: {float(err):.0f} eps"


@pytest.mark.parametrize("scale", [30.0, 1000.0])
@pytest.mark.parametrize(
    "name", ["relu", "abs", "step", "layernorm_relu", "erf", "gaussian", "gabor"]
)
def test_float32_kernels_of_inputs_that_differ_mostly_in_norm_are_right_to_rounding(name, scale):
    """The inputs above times 30 or 1000 (x = 30 and 90 are 7e-4 rad apart
    after Dense(1.5, 0.05), and the angle makes 3e-3 of their squared
    distance): within 16 eps per layer at depth 3. Through the squared
    distance the angle was lost (1,000-1e6 eps); the chord keeps it
    (measured 0.5-16 eps)."""
    w, bias, depth = 1.5, 0.05, 3
    layer, dual, *_ = COLLINEAR_CASES[name]
    x = scale * COLLINEAR_X
    hidden = [layer, stax.Dense(512, W_std=w, b_std=bias)] * depth
    _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=w, b_std=bias), *hidden)
    out = kernel_fn(jnp.asarray(x[:, None], jnp.float32), None, ("nngp", "ntk"))
    ref = _recursion_in_extended_precision(dual, depth, w, bias, "layernorm" in name, x)
    _assert_within_eps(out, ref, 16 * (depth + 1))


_SMOOTH = (stax.Erf(), stax.Gelu(), stax.Sin(), stax.Sigmoid_like(), stax.Rbf(0.5), stax.Gaussian())


# Inputs with more than `CHORD_DIRECT_MAX_FEATURES` features take their
# chords from the Gram matrix, with a snap of their own; a repeated block
# runs as a loop whose carry rebuilds the NNGP from the chord (`pack_carry`):
# two activations suffice to check each path.
@pytest.mark.parametrize(
    "activation,features,spatial,looped",
    [(a, 3, spatial, False) for a in _SMOOTH for spatial in (False, True)]
    + [(a, 20, False, False) for a in _SMOOTH[:2]]
    + [(a, 3, False, True) for a in (_SMOOTH[0], _SMOOTH[2])],
    ids=lambda v: v.name if hasattr(v, "name") else str(v),
)
def test_mixed_second_derivative_at_identical_inputs_matches_finite_differences(
    activation, features, spatial, looped
):
    """∂²K(x1, x2)/∂x1∂x2 at x1 = x2, the covariance of the NNGP function's
    gradients: the snapping that keeps a kernel of identical inputs exact must
    not drop it. Central differences with step 1e-4 in float64 are right to
    ~1e-8 relative (O(h²) truncation, round-off 1e-16/h²); an activation
    whose kernel is smooth there must agree to 1e-6 (it was 30% off for Erf)."""
    block = stax.serial(stax.Dense(1, 1.5, 0.1), activation)
    hidden = [stax.repeat(block, 2)] if looped else [block] * 2
    _, _, kernel_fn = stax.serial(*hidden, stax.Dense(1))
    shape = (1, 1, features) if spatial else (1, features)
    x = jnp.asarray(np.resize([0.3, -0.7, 0.5, 0.2], features))

    def k(a, b):
        return kernel_fn(a.reshape(shape), b.reshape(shape), "nngp").reshape(-1)[0]

    mixed = jax.jacfwd(jax.grad(k, 0), 1)(x, x)
    h, eye = 1e-4, np.eye(features)
    fd = np.array(
        [
            [
                (
                    k(x + h * eye[i], x + h * eye[j])
                    - k(x + h * eye[i], x - h * eye[j])
                    - k(x - h * eye[i], x + h * eye[j])
                    + k(x - h * eye[i], x - h * eye[j])
                )
                / (4 * h * h)
                for j in range(3)
            ]
            for i in range(3)
        ]
    )
    assert np.abs(mixed[:3, :3] - fd).max() <= 1e-6 * np.abs(fd).max()


# The ReLU family's kernels are C² but not smoother at x1 = x2: h(θ) ~ θ³/3
# with θ ~ |x1 − x2| (Cho & Saul's J_1), so central differences of the
# mixed derivative carry an O(h) error, measured 3e-5 to 9e-5 relative at
# h = 1e-4 (2 to 6 layers); 1e-3 is ten times that.
_KINKED = (stax.Relu(), stax.ABRelu(-0.3, 1.0), stax.Abs())


@pytest.mark.parametrize("looped", [False, True], ids=["unrolled", "looped"])
@pytest.mark.parametrize("activation", _KINKED, ids=lambda v: v.name)
def test_mixed_second_derivative_of_relu_family_at_identical_inputs_matches_finite_differences(
    activation, looped
):
    """The NNGP's ∂²K/∂x1∂x2 at x1 = x2 for the ReLU family: finite (sin θ,
    exactly 0 there, is a square root whose derivative is inf; inside a loop
    a `jax.custom_jvp` rule for it is dropped at the second order, which made
    it NaN) and equal to central differences."""
    block = stax.serial(stax.Dense(1, 1.5, 0.1), activation)
    hidden = [stax.repeat(block, 3)] if looped else [block] * 2
    _, _, kernel_fn = stax.serial(*hidden, stax.Dense(1))
    x = jnp.asarray([0.3, -0.7, 0.5])

    def k(a, b):
        return kernel_fn(a[None], b[None], "nngp")[0, 0]

    mixed = jax.jit(jax.jacfwd(jax.grad(k, 0), 1))(x, x)
    grad_1 = jax.jit(jax.grad(k, 0))
    h, eye = 1e-4, np.eye(3)
    fd = np.stack([(grad_1(x, x + h * e) - grad_1(x, x - h * e)) / (2 * h) for e in eye], 1)
    assert np.isfinite(mixed).all()
    assert np.abs(mixed - fd).max() <= 1e-3 * np.abs(fd).max()


@pytest.mark.parametrize("activation", (*_KINKED, stax.Sign()), ids=lambda v: v.name)
def test_second_derivatives_of_a_loop_equal_those_of_the_unrolled_network(activation, monkeypatch):
    """Three equal blocks run as a `jax.lax.scan` (`SCAN_MIN_REPS`); unrolled
    they must give the same Hessian, between distinct inputs as at identical
    ones: the same arithmetic in another order, so to 1e-12 relative
    (measured ≤ 5e-16). Looped ReLU, ABRelu, Abs and Sign networks gave NaN
    before (reverse mode through the loop drops `jax.custom_jvp` rules at the
    second order: see `ntk.stax._internal.pair_sqrt`)."""
    block = stax.serial(stax.Dense(1, 1.5, 0.1), activation)
    x = jnp.asarray([0.3, -0.7, 0.5])
    y = jnp.asarray([0.1, -0.2, 0.9])
    out = []
    for min_reps in (combinators.SCAN_MIN_REPS, 4):
        monkeypatch.setattr(combinators, "SCAN_MIN_REPS", min_reps)
        _, _, kernel_fn = stax.serial(block, block, block, stax.Dense(1))

        def k(a, b):
            return kernel_fn(a[None], b[None], "nngp")[0, 0]

        mixed = jax.jit(jax.jacfwd(jax.grad(k, 0), 1))
        out.append(np.stack([mixed(x, y), mixed(x, x)]))
        assert ("scan" in str(jax.make_jaxpr(k)(x, y))) == (min_reps == 3)
    looped, unrolled = out
    assert np.isfinite(looped).all() and np.isfinite(unrolled).all()
    np.testing.assert_allclose(looped, unrolled, rtol=0, atol=1e-12 * np.abs(unrolled).max())
