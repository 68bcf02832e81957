"""Elementwise nonlinearities and their dual kernels.

For a pre-activation ``(u, v) ~ N(0, [[c11, c12], [c12, c22]])`` an activation
φ has the *dual kernel* (Cho & Saul 2009; Daniely et al. 2016)

    K_φ(c12, c11, c22) = E[φ(u) φ(v)]

and the *derivative kernel* K_φ' = E[φ'(u) φ'(v)], which by Price's theorem
equals ∂K_φ/∂c12. Through an activation the NNGP becomes K_φ and the NTK
becomes Θ' = K_φ' ⊙ Θ (Jacot et al. 2018, Theorem 1; Lee et al. 2019, eq. 7).

Every activation here is an `Activation(fn, dual)` record in the table
``ACTIVATIONS`` (name -> factory); ``dual(c12, c11, c22)`` returns
``(K_φ, K_φ')`` elementwise. The table is what other modules (e.g. deep kernel
machines) use to get an activation's dual; the layers below wrap it.

Numerics: square roots and angles use custom derivatives that stay finite at
correlation ±1 and at zero variance (identical or zero inputs), where the
exact derivative of the arc-cosine is infinite but multiplies a zero tangent.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk.kernel import Kernel
from ntk.stax.layer import Layer, make_layer

PI = math.pi


class Activation(NamedTuple):
    """An activation φ and its dual: ``dual(c12, c11, c22) -> (K_φ, K_φ')``."""

    fn: Optional[Callable]
    dual: Callable


# ---------------------------------------------------------------- numerics


@jax.custom_jvp
def safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose derivative is 0 (not inf) at 0."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = safe_sqrt(x)
    pos = x > 0
    return y, jnp.where(pos, t / (2 * jnp.where(pos, y, 1.0)), 0.0)


# atan(w) = w + w·t·P(t), t = w², on |w| ≤ tan(π/8): a degree-10 Chebyshev
# fit of (atan(w)/w − 1)/t (relative error 2e-16, i.e. float64-exact). XLA's
# atan2 is a scalar libm call on CPU (~35 ns); this is ~12 fused multiply-adds
# that vectorise, which makes arc-cosine kernels ~50x cheaper.
_ATAN_COEF = (-0.3333333333333335, 0.1999999999999635, -0.14285714284944914,
              0.11111111041531378, -0.09090905730334234, 0.07692211093816727,
              -0.06664914021181749, 0.05861695262057322, -0.05104154057103348,
              0.03977414681194997, -0.019842141537042956)
_TAN_PI_8 = math.tan(PI / 8)


def atan2(y, x):
    """``arctan2(y, x)`` (same values as `jnp.arctan2`, ~1 ulp) by octant
    reduction and a polynomial; ``atan2(0, 0) = 0``."""
    ax, ay = jnp.abs(x), jnp.abs(y)
    hi, lo = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
    z = jnp.where(hi > 0, lo / jnp.where(hi > 0, hi, 1.0), 0.0)     # in [0, 1]
    big = z > _TAN_PI_8
    w = jnp.where(big, (z - 1) / (z + 1), z)                         # |w| ≤ tan(π/8)
    t = w * w
    poly = jnp.zeros_like(t) + _ATAN_COEF[-1]
    for c in _ATAN_COEF[-2::-1]:
        poly = poly * t + c
    r = w + w * t * poly + jnp.where(big, PI / 4, 0.0)
    r = jnp.where(ay > ax, PI / 2 - r, r)
    r = jnp.where(x < 0, PI - r, r)
    return jnp.where(y < 0, -r, r)


@jax.custom_jvp
def angle(s, c):
    """``arctan2(s, c)`` with the value π/2 and finite derivatives at (0, 0).

    With ``s = sqrt(c11 c22 - c12²)`` and ``c = c12`` this is the angle θ
    between the two inputs; at (0, 0) (a zero-variance input) the inputs are
    uncorrelated, θ = π/2.
    """
    both_zero = (s == 0) & (c == 0)
    return jnp.where(both_zero, PI / 2, atan2(s, c))


@angle.defjvp
def _angle_jvp(primals, tangents):
    (s, c), (ds, dc) = primals, tangents
    denom = jnp.maximum(s * s + c * c, jnp.finfo(jnp.result_type(s)).tiny)
    return angle(s, c), (ds * c - dc * s) / denom


def sin_angle_term(c12, c11, c22):
    """``sqrt(c11 c22 - c12²)`` = sqrt(c11 c22)·sin θ, with rounding noise removed.

    At correlation 1 (identical inputs) the radicand is zero, but rounding in
    c12 versus c11, c22 leaves ~eps·c11c22 and the square root magnifies it to
    ~sqrt(eps): 1e-8 in float64. Values within a few eps of zero are therefore
    taken as zero, which makes the kernel of x with itself independent of how
    it was computed (e.g. tiled or not) and changes genuine values by less
    than their rounding error.
    """
    prod = c11 * c22
    radicand = prod - c12 ** 2
    eps = jnp.finfo(jnp.result_type(radicand)).eps
    return safe_sqrt(jnp.where(radicand <= 8 * eps * prod, 0.0, radicand))


def _dot_by_autodiff(nngp_fn: Callable) -> Callable:
    """K_φ' = ∂K_φ/∂c12 (Price's theorem), by forward-mode autodiff."""
    def dual(c12, c11, c22):
        nngp, dot = jax.jvp(lambda c: nngp_fn(c, c11, c22), (c12,),
                            (jnp.ones_like(c12),))
        return nngp, dot
    return dual


# ------------------------------------------------------- the dual kernels


def abrelu(a: float, b: float) -> Activation:
    """φ(x) = a·min(x, 0) + b·max(x, 0). With θ the angle between inputs,
    K_φ = (a-b)²/(2π)·sqrt(c11 c22 - c12²) + K_φ'·c12 and
    K_φ' = (a² + b²)/2 - (a-b)²θ/(2π)  (Cho & Saul 2009, n = 1; ReLU: a=0, b=1).
    """
    f = (a - b) ** 2 / (2 * PI)

    def dual(c12, c11, c22):
        root = sin_angle_term(c12, c11, c22)
        dot = (a ** 2 + b ** 2) / 2 - f * angle(root, c12)
        return f * root + dot * c12, dot

    return Activation(lambda x: a * jnp.minimum(x, 0) + b * jnp.maximum(x, 0), dual)


def erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Activation:
    """φ(x) = a·erf(b x) + c (Williams 1997):
    K_φ = a²·(2/π)·arcsin(2b²c12 / sqrt((1+2b²c11)(1+2b²c22))) + c²,
    K_φ' = a²b²·(4/π) / sqrt((1+2b²c11)(1+2b²c22) - 4b⁴c12²).
    """
    def dual(c12, c11, c22):
        b2 = b ** 2
        root = safe_sqrt((1 + 2 * b2 * c11) * (1 + 2 * b2 * c22) - 4 * b2 ** 2 * c12 ** 2)
        nngp = a ** 2 * (2 / PI) * atan2(2 * b2 * c12, root) + c ** 2
        return nngp, a ** 2 * b2 * (4 / PI) / root

    return Activation(lambda x: a * jax.scipy.special.erf(b * x) + c, dual)


def gelu(approximate: bool = False) -> Activation:
    """φ(x) = x Φ(x) (Hendrycks & Gimpel 2016); closed form of K_φ from
    Tsuchida et al. 2021 (arXiv:2002.08517): with P = (1+c11)(1+c22) and
    Δ = sqrt(P - c12²),
    K_φ = c12/4 + [c12·arctan(c12/Δ) + (c12² + c11 c22 Δ²)/(P Δ)] / (2π).
    ``approximate`` only changes the finite network (tanh form).
    """
    def nngp_fn(c12, c11, c22):
        p = (1 + c11) * (1 + c22)
        delta = safe_sqrt(p - c12 ** 2)
        inner = c12 * atan2(c12, delta) + (c12 ** 2 + c11 * c22 * delta ** 2) / (p * delta)
        return c12 / 4 + inner / (2 * PI)

    return Activation(lambda x: jax.nn.gelu(x, approximate=approximate),
                      _dot_by_autodiff(nngp_fn))


def sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Activation:
    """φ(x) = a·sin(b x + c): with s = c11 + c22,
    K_φ = a²/2·[e^{-b²(s/2 - c12)} - e^{-b²(s/2 + c12)} cos 2c],
    K_φ' = a²b²/2·[e^{-b²(s/2 - c12)} + e^{-b²(s/2 + c12)} cos 2c].
    """
    # Written as cos²c·sinh x + sin²c·cosh x (and the same with sinh ↔ cosh),
    # x = b² c12: no difference of near-equal exponentials at small covariances.
    cos2, sin2 = math.cos(c) ** 2, math.sin(c) ** 2

    def dual(c12, c11, c22):
        x = b ** 2 * c12
        scale = a ** 2 * jnp.exp(-b ** 2 * (c11 + c22) / 2)
        sh, ch = jnp.sinh(x), jnp.cosh(x)
        return scale * (cos2 * sh + sin2 * ch), b ** 2 * scale * (cos2 * ch + sin2 * sh)

    return Activation(lambda x: a * jnp.sin(b * x + c), dual)


def rbf(gamma: float = 1.0) -> Activation:
    """φ(x) = √2·sin(sqrt(2γ) x + π/4), whose dual is the RBF kernel
    K_φ = exp(-γ (c11 + c22 - 2 c12)),  K_φ' = 2γ K_φ.
    """
    def dual(c12, c11, c22):
        nngp = jnp.exp(-gamma * (c11 + c22 - 2 * c12))
        return nngp, 2 * gamma * nngp

    return Activation(lambda x: math.sqrt(2) * jnp.sin(math.sqrt(2 * gamma) * x + PI / 4),
                      dual)


def sign() -> Activation:
    """φ(x) = sign(x): K_φ = 1 - 2θ/π (θ the angle between inputs).
    φ' = 0 almost everywhere, so K_φ' = 0, as in neural-tangents.
    """
    def dual(c12, c11, c22):
        theta = angle(sin_angle_term(c12, c11, c22), c12)
        return 1 - 2 * theta / PI, jnp.zeros_like(c12)

    return Activation(jnp.sign, dual)


def exp(a: float = 1.0, b: float = 1.0) -> Activation:
    """φ(x) = a·e^{b x}: K_φ = a²·exp(b²(c11 + c22)/2 + b² c12), K_φ' = b² K_φ."""
    def dual(c12, c11, c22):
        nngp = a ** 2 * jnp.exp(b ** 2 * ((c11 + c22) / 2 + c12))
        return nngp, b ** 2 * nngp

    return Activation(lambda x: a * jnp.exp(b * x), dual)


def gaussian(a: float = 1.0, b: float = -1.0) -> Activation:
    """φ(x) = a·e^{b x²}: with D = (1-2b c11)(1-2b c22) - 4b² c12²,
    K_φ = a² / sqrt(D),  K_φ' = 4a²b² c12 / D^{3/2}.
    """
    def dual(c12, c11, c22):
        det = safe_sqrt((1 - 2 * b * c11) * (1 - 2 * b * c22) - 4 * b ** 2 * c12 ** 2)
        return a ** 2 / det, 4 * a ** 2 * b ** 2 * c12 / det ** 3

    return Activation(lambda x: a * jnp.exp(b * x ** 2), dual)


def _double_factorial(n: int) -> int:
    return 1 if n <= 0 else n * _double_factorial(n - 2)


def gaussian_moment(i: int, j: int, c12, c11, c22):
    """E[u^i v^j] for centred jointly Gaussian (u, v) (Isserlis' theorem):
    Σ_k C(i,k) C(j,k) k! (i-k-1)!! (j-k-1)!! c12^k c11^{(i-k)/2} c22^{(j-k)/2},
    over k ≤ min(i, j) with i - k and j - k even (k cross pairings).
    """
    total = jnp.zeros_like(c12)
    for k in range(min(i, j) + 1):
        if (i - k) % 2 or (j - k) % 2:
            continue
        coef = (math.comb(i, k) * math.comb(j, k) * math.factorial(k)
                * _double_factorial(i - k - 1) * _double_factorial(j - k - 1))
        total = total + coef * c12 ** k * c11 ** ((i - k) // 2) * c22 ** ((j - k) // 2)
    return total


def polynomial(coef: Sequence[float]) -> Activation:
    """φ(x) = Σ_i coef[i] x^i: K_φ = Σ_ij coef_i coef_j E[u^i v^j] and
    K_φ' = Σ_ij i j coef_i coef_j E[u^{i-1} v^{j-1}] (exact, any variance).
    """
    coef = [float(c) for c in coef]

    def dual(c12, c11, c22):
        nngp = jnp.zeros_like(c12)
        dot = jnp.zeros_like(c12)
        for i, ci in enumerate(coef):
            for j, cj in enumerate(coef):
                if ci == 0 or cj == 0:
                    continue
                nngp = nngp + ci * cj * gaussian_moment(i, j, c12, c11, c22)
                if i and j:
                    dot = dot + i * j * ci * cj * gaussian_moment(i - 1, j - 1, c12, c11, c22)
        return nngp, dot

    def fn(x):
        return sum(c * x ** i for i, c in enumerate(coef) if c != 0) + 0 * x

    return Activation(fn, dual)


def monomial(degree: int) -> Activation:
    """φ(x) = x^degree (see `polynomial`)."""
    return polynomial([0.0] * degree + [1.0])


def hermite(degree: int) -> Activation:
    """φ = He_n / sqrt(n!), the probabilists' Hermite polynomial normalised to
    unit norm under N(0, 1). For unit-variance inputs K_φ = c12^n (Daniely et
    al. 2016); the dual here is exact for any variance.
    """
    coef = np.polynomial.hermite_e.herme2poly([0] * degree + [1]) / math.sqrt(
        math.factorial(degree))
    return polynomial(coef)


ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    "abrelu": abrelu,
    "relu": lambda: abrelu(0.0, 1.0),
    "leaky_relu": lambda alpha: abrelu(alpha, 1.0),
    "abs": lambda: abrelu(-1.0, 1.0),
    "erf": erf,
    "gelu": gelu,
    "sin": sin,
    "cos": lambda a=1.0, b=1.0, c=0.0: sin(a, b, c + PI / 2),
    "rbf": rbf,
    "sign": sign,
    "exp": exp,
    "gaussian": gaussian,
    "monomial": monomial,
    "polynomial": polynomial,
    "hermite": hermite,
}


# ---------------------------------------------------------------- layers


def apply_dual(k: Kernel, dual: Callable, name: str = "activation") -> Kernel:
    """Push a Gaussian `Kernel` through an activation with dual ``dual``."""
    if not k.is_gaussian:
        raise ValueError(f"{name}: the input of an activation must be Gaussian, "
                         f"i.e. come from an affine layer (Dense, Conv); got a "
                         f"kernel that is not (e.g. two activations in a row, or "
                         f"raw inputs). Put a Dense/Conv before {name}.")
    (a12, b12), (a11, b11), out22 = k.outer_vars()
    nngp, dot = dual(k.nngp, a12, b12)
    ntk = None if k.ntk is None else k.ntk * dot
    cov1 = dual(k.cov1, a11, b11)[0]
    cov2 = None if out22 is None else dual(k.cov2, *out22)[0]
    return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)


def _elementwise(name: str, activation: Activation) -> Layer:
    fn, dual = activation

    def apply_fn(params, x, **kwargs):
        if fn is None:
            raise NotImplementedError(f"{name}: no finite-width `fn` was given.")
        return fn(x)

    return make_layer(name, lambda key, shape: (shape, ()), apply_fn,
                      lambda k, **kw: apply_dual(k, dual, name))


def ABRelu(a: float, b: float, do_stabilize: bool = False) -> Layer:
    """``a·min(x, 0) + b·max(x, 0)``; see `abrelu`. (``do_stabilize`` is
    accepted for NT compatibility; the dual here is scale-stable already.)"""
    return _elementwise(f"ABRelu({a}, {b})", abrelu(a, b))


def Relu(do_stabilize: bool = False) -> Layer:
    """ReLU, ``max(x, 0)``: the arc-cosine kernel of degree 1."""
    return _elementwise("Relu", abrelu(0.0, 1.0))


def LeakyRelu(alpha: float, do_stabilize: bool = False) -> Layer:
    """``alpha·min(x, 0) + max(x, 0)``."""
    return _elementwise(f"LeakyRelu({alpha})", abrelu(alpha, 1.0))


def Abs(do_stabilize: bool = False) -> Layer:
    """``|x|``."""
    return _elementwise("Abs", abrelu(-1.0, 1.0))


def Erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a·erf(b x) + c``; see `erf`."""
    return _elementwise(f"Erf({a}, {b}, {c})", erf(a, b, c))


def Sigmoid_like() -> Layer:
    """``0.5·erf(x / 2.4020563531719796) + 0.5``, NT's erf fit of the sigmoid."""
    return Erf(a=0.5, b=1 / 2.4020563531719796, c=0.5)


def Gelu(approximate: bool = False) -> Layer:
    """``x Φ(x)``; see `gelu`."""
    return _elementwise("Gelu", gelu(approximate))


def Sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a·sin(b x + c)``; see `sin`."""
    return _elementwise(f"Sin({a}, {b}, {c})", sin(a, b, c))


def Cos(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a·cos(b x + c) = a·sin(b x + c + π/2)``."""
    return _elementwise(f"Cos({a}, {b}, {c})", sin(a, b, c + PI / 2))


def Rbf(gamma: float = 1.0) -> Layer:
    """``√2·sin(sqrt(2γ) x + π/4)``, whose dual is the RBF kernel; see `rbf`."""
    return _elementwise(f"Rbf({gamma})", rbf(gamma))


def Sign() -> Layer:
    """``sign(x)``; see `sign`."""
    return _elementwise("Sign", sign())


def Exp(a: float = 1.0, b: float = 1.0) -> Layer:
    """``a·exp(b x)``; see `exp`."""
    return _elementwise(f"Exp({a}, {b})", exp(a, b))


def Gaussian(a: float = 1.0, b: float = -1.0) -> Layer:
    """``a·exp(b x²)``; see `gaussian`."""
    return _elementwise(f"Gaussian({a}, {b})", gaussian(a, b))


def _check_degree(degree, name):
    if not (isinstance(degree, (int, np.integer)) and degree >= 0):
        raise ValueError(f"{name}: `degree` must be a non-negative int; got {degree!r}.")


def Monomial(degree: int) -> Layer:
    """``x^degree``; see `polynomial`."""
    _check_degree(degree, "Monomial")
    return _elementwise(f"Monomial({degree})", monomial(int(degree)))


def Polynomial(coef: Sequence[float]) -> Layer:
    """``Σ_i coef[i] x^i``; see `polynomial`."""
    return _elementwise(f"Polynomial({list(coef)})", polynomial(coef))


def Hermite(degree: int) -> Layer:
    """Normalised Hermite polynomial He_n(x)/sqrt(n!); see `hermite`."""
    _check_degree(degree, "Hermite")
    return _elementwise(f"Hermite({degree})", hermite(int(degree)))


def Elementwise(fn: Optional[Callable] = None,
                nngp_fn: Optional[Callable] = None,
                d_nngp_fn: Optional[Callable] = None) -> Layer:
    """Any activation ``fn`` given its scalar dual ``nngp_fn(c12, c11, c22)``.

    The derivative kernel is ``d_nngp_fn`` if given, else ∂nngp_fn/∂c12 by
    autodiff (Price's theorem).

    Example (Erf):
      >>> nngp_fn = lambda c12, c11, c22: 2 / jnp.pi * jnp.arcsin(
      ...     2 * c12 / jnp.sqrt((1 + 2 * c11) * (1 + 2 * c22)))
      >>> layer = Elementwise(jax.scipy.special.erf, nngp_fn)
    """
    if fn is None and nngp_fn is None:
        raise ValueError("Elementwise: give `fn` (finite network) and/or "
                         "`nngp_fn` (kernel); got neither.")
    name = f"Elementwise({getattr(fn or nngp_fn, '__name__', 'fn')})"
    if nngp_fn is None:
        def dual(c12, c11, c22):
            raise NotImplementedError(f"{name}: no `nngp_fn`, so no kernel.")
    else:
        nngp_v = jnp.vectorize(nngp_fn)
        if d_nngp_fn is None:
            dual = _dot_by_autodiff(nngp_v)
        else:
            d_v = jnp.vectorize(d_nngp_fn)

            def dual(c12, c11, c22):
                return nngp_v(c12, c11, c22), d_v(c12, c11, c22)
    return _elementwise(name, Activation(fn, dual))


def numerical(fn: Callable, deg: int, df: Optional[Callable] = None) -> Activation:
    """The dual of any φ by ``deg × deg`` Gauss–Hermite quadrature.

    With nodes/weights (x_a, w_a) of ∫ e^{-x²} g(x) dx, writing
    u = sqrt(2 c11) x_a and v = (c12/c11) u + sqrt(2 (c22 - c12²/c11)) x_b,
    E[φ(u) φ(v)] ≈ (1/π) Σ_ab w_a w_b φ(u) φ(v); the same with φ' for K_φ'.
    Exact for polynomials of degree < 2·deg; smooth φ converge fast.
    """
    xs, ws = (np.asarray(t) for t in np.polynomial.hermite.hermgauss(deg))
    dfn = df if df is not None else jnp.vectorize(jax.grad(fn))

    def integrate(g, c12, c11, c22):
        pos = c11 > 0
        sd1 = jnp.sqrt(2 * jnp.maximum(c11, 0.0))
        slope = jnp.where(pos, c12 / jnp.where(pos, c11, 1.0), 0.0)
        resid = safe_sqrt(2 * (c22 - slope * c12))
        shape = jnp.broadcast_shapes(c12.shape, c11.shape, c22.shape)
        nodes = jnp.asarray(xs, c12.dtype)
        weights = jnp.asarray(ws, c12.dtype)

        def step(total, node):
            xa, wa = node
            u = sd1 * xa
            # inner quadrature over x_b vectorised on a trailing axis
            v = (slope * u)[..., None] + resid[..., None] * nodes
            inner = jnp.sum(weights * g(v), axis=-1)
            return total + wa * g(u) * inner, None

        total = jax.lax.scan(step, jnp.zeros(shape, c12.dtype), (nodes, weights))[0]
        return total / PI

    def dual(c12, c11, c22):
        return integrate(fn, c12, c11, c22), integrate(dfn, c12, c11, c22)

    return Activation(fn, dual)


def ElementwiseNumerical(fn: Callable, deg: int, df: Optional[Callable] = None) -> Layer:
    """Any activation by Gauss–Hermite quadrature (Tanh, Softplus, Sigmoid, …);
    see `numerical`. ``deg`` ≈ 25 suits smooth functions.

    Example:
      >>> layer = ElementwiseNumerical(jnp.tanh, deg=25)
    """
    if not (isinstance(deg, int) and deg >= 1):
        raise ValueError(f"ElementwiseNumerical: `deg` must be a positive int; got {deg!r}.")
    return _elementwise(f"ElementwiseNumerical({getattr(fn, '__name__', 'fn')}, {deg})",
                        numerical(fn, deg, df))
