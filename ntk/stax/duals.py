r"""Dual kernels of activations: the table ``ACTIVATIONS``.

For a pre-activation ``(u, v) ~ N(0, [[c11, c12], [c12, c22]])`` an activation
φ has the *dual kernel* (Cho & Saul 2009; Daniely et al. 2016)

.. math::

    K_\varphi(c_{12}, c_{11}, c_{22}) = \mathbb{E}\,[\varphi(u)\, \varphi(v)]

and the *derivative kernel*, which by Price's theorem is its derivative in
the covariance,

.. math::

    K_{\varphi'}(c_{12}, c_{11}, c_{22}) = \mathbb{E}\,[\varphi'(u)\, \varphi'(v)]
    = \frac{\partial K_\varphi}{\partial c_{12}}.

Through an activation the NNGP becomes K_φ and the NTK becomes
Θ' = K_φ' ⊙ Θ (Jacot et al. 2018, Theorem 1; Lee et al. 2019, eq. 7).
For ReLU both are arc-cosine kernels (Cho & Saul 2009): with
``cos θ = c12 / √(c11 c22)``,

.. math::

    K_\varphi = \frac{\sqrt{c_{11} c_{22}}}{2\pi} \big(\sin\theta + (\pi - \theta)\cos\theta\big),
    \qquad K_{\varphi'} = \frac{\pi - \theta}{2\pi}.

Every activation here is an `Activation` record ``(fn, dual)`` in the table
``ACTIVATIONS`` (name -> factory); ``dual(c12, c11, c22)`` returns
``(K_φ, K_φ')`` elementwise. The table is what other modules (e.g. deep kernel
machines) use to get an activation's dual; the layers of
`ntk.stax.elementwise` wrap it, and `ntk.stax.numerical` integrates the dual
of any other φ.

Numerics: every closed-form dual is evaluated from normalised quantities
(correlations, per-input factors like 1/(1 + 2b²c); see the numerics of
``ntk.stax._internal``), so it is accurate to rounding for any representable
variance, float32 included; where the true kernel exceeds the dtype's range
(Exp, polynomials, Gaussian with b > 0) it comes out inf, which the layer
reports as an error. Kernels are symmetric to the last bit.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk._checks import as_numpy, require_bool, require_real
from ntk.stax._internal import PI, angle, atan2, correlation, gap, inv_sqrt, pairwise, safe_sqrt


class Activation(NamedTuple):
    """An activation φ and its dual: ``dual(c12, c11, c22) -> (K_φ, K_φ')``.

    Example:
      ReLU's record: ``fn`` acts on arrays, ``dual`` on covariances; orthogonal
      unit-variance inputs give ``K_φ = 1/(2π)`` and ``K_φ' = 1/4``:

      >>> import jax, jax.numpy as jnp
      >>> relu = ACTIVATIONS["relu"]()
      >>> relu.fn(jnp.array([-1., 2.])).tolist()
      [0.0, 2.0]
      >>> c12, c11, c22 = jnp.zeros(1), jnp.ones(1), jnp.ones(1)
      >>> nngp, dot = jax.jit(relu.dual)(c12, c11, c22)
      >>> round(float(nngp[0]), 4), round(float(dot[0]), 4)
      (0.1592, 0.25)
    """

    fn: Optional[Callable]
    dual: Callable


# ------------------------------------------------------- argument checks


def check_real_args(where: str, **values):
    """Hyperparameters must be finite real scalars (checked when concrete:
    traced values, e.g. in kernel learning, pass)."""
    for arg, value in values.items():
        require_real(value, arg, where)


def check_degree(degree, name):
    if not (isinstance(degree, (int, np.integer)) and degree >= 0):
        raise ValueError(f"{name}: `degree` must be a non-negative int; got {degree!r}.")


# ------------------------------------------- shared normalisation


def _arcsine_factors(c12, c11, c22, g):
    """Shared normalisation of the arcsine-type duals (Erf, Gelu, Gaussian).

    For ``p_i = 1 + g·c_i`` (g = 2b² for erf, 1 for gelu, −2b for the
    Gaussian) the kernels involve ``P = p1 p2`` and ``Δ² = P − g²c12²``.
    Dividing by P gives, with ``e_i = 1/p_i`` and ``t_i = g c_i e_i`` (so
    ``e_i + t_i = 1``),

        Δ²/P = e1 + e2 − e1 e2 + t1 t2 (1 − ρ²),

    a sum of non-negative terms when g ≥ 0 — no cancellation, no overflow.
    Returns ``(e1, e2, q12 = 1/sqrt(P), cos² = Δ²/P, valid)`` (pairwise
    shape); ``valid`` is False where some p_i ≤ 0 (only possible for g < 0).
    """
    q1, q2 = pairwise(c12, inv_sqrt(1 + g * c11), inv_sqrt(1 + g * c22))
    e1, e2 = q1 * q1, q2 * q2
    _, one_minus = correlation(c12, c11, c22)
    e12 = e1 * e2
    # t_i = 1 − e_i: absolute error eps, negligible against cos² ≥ max(e_i)
    # where t_i is small; written so, the (N, N) loop reads only e_i (see
    # `inv_sqrt`).
    cos2 = (e1 + e2 - e12) + ((1 - e1) * (1 - e2)) * one_minus
    return e1, e2, q1 * q2, cos2, (q1 > 0) & (q2 > 0)


# ------------------------------------------------------- the dual kernels


def abrelu(a: float, b: float) -> Activation:
    """φ(x) = a·min(x, 0) + b·max(x, 0). With θ the angle between inputs,
    K_φ = (a-b)²/(2π)·sqrt(c11 c22 - c12²) + K_φ'·c12 and
    K_φ' = (a² + b²)/2 - (a-b)²θ/(2π)  (Cho & Saul 2009, n = 1; ReLU: a=0, b=1).

    Positively homogeneous: evaluated from ρ and the norms sqrt(c_i), so it is
    exact up to rounding for any representable variance.
    """
    check_real_args("abrelu", a=a, b=b)
    f = (a - b) ** 2 / (2 * PI)

    def dual(c12, c11, c22):
        rho, one_minus = correlation(c12, c11, c22)
        sine = safe_sqrt(one_minus)
        dot = (a**2 + b**2) / 2 - f * angle(sine, rho)
        norms = safe_sqrt(c11) * safe_sqrt(c22)
        return f * norms * sine + dot * c12, dot

    return Activation(lambda x: a * jnp.minimum(x, 0) + b * jnp.maximum(x, 0), dual)


def erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Activation:
    """φ(x) = a·erf(b x) + c (Williams 1997): with P = (1+2b²c11)(1+2b²c22),
    K_φ = a²·(2/π)·arcsin(2b²c12 / sqrt(P)) + c²,
    K_φ' = a²b²·(4/π) / sqrt(P - 4b⁴c12²).

    Evaluated as angles on the unit circle: sin = 2b²c12/sqrt(P) and
    cos² = (P − 4b⁴c12²)/P from `_arcsine_factors`, so no term cancels or
    overflows at any variance.
    """
    check_real_args("erf", a=a, b=b, c=c)
    g = 2 * b**2

    def dual(c12, c11, c22):
        _, _, q12, cos2, _ = _arcsine_factors(c12, c11, c22, g)
        cos = jnp.sqrt(cos2)
        nngp = a**2 * (2 / PI) * atan2(g * c12 * q12, cos) + c**2
        return nngp, a**2 * b**2 * (4 / PI) * q12 / cos

    return Activation(lambda x: a * jax.scipy.special.erf(b * x) + c, dual)


def gelu(approximate: bool = False) -> Activation:
    """φ(x) = x Φ(x) (Hendrycks & Gimpel 2016). With P = (1+c11)(1+c22),
    Δ = sqrt(P − c12²), α = arcsin(c12/sqrt(P)) and β = π/2 + α
    (Tsuchida et al. 2021, arXiv:2002.08517, for K_φ; K_φ' = ∂K_φ/∂c12),

    K_φ  = [c12 β + (c12² + c11 c22 Δ²)/(P Δ)] / (2π),
    K_φ' = [β + c12 (Δ²(3 + c11 + c22) + c12²)/(P Δ³)] / (2π).

    Evaluated in the normalised form of `_arcsine_factors` (sin α =
    c12/sqrt(P), cos α = Δ/sqrt(P), β = atan2(cos α, −sin α)), which is
    accurate at every variance. ``approximate`` only changes the finite
    network (tanh form).
    """
    require_bool(approximate, "approximate", "gelu")

    def dual(c12, c11, c22):
        e1, e2, q12, cos2, _ = _arcsine_factors(c12, c11, c22, 1.0)
        cos = jnp.sqrt(cos2)
        sine = c12 * q12
        beta = atan2(cos, -sine)
        # c11 c22/sqrt(P) = m1 m2 with m_i = c_i/sqrt(1 + c_i) ≤ sqrt(c_i).
        m1, m2 = pairwise(c12, c11 / jnp.sqrt(1 + c11), c22 / jnp.sqrt(1 + c22))
        m12 = m1 * m2
        # c12²/(PΔ) = sin·ratio and c12³/(PΔ³) = sin·ratio²/cos: grouped so
        # that no factor (e1 e2, cos³) underflows at variances ~1e150.
        ratio = sine * q12 / cos
        nngp = (c12 * beta + sine * ratio + m12 * cos) / (2 * PI)
        dot = (beta + sine * ((e1 + e2) + e1 * e2) / cos + sine * ratio * ratio / cos) / (2 * PI)
        return nngp, dot

    return Activation(lambda x: jax.nn.gelu(x, approximate=approximate), dual)


def sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Activation:
    """φ(x) = a·sin(b x + c): with s = c11 + c22,
    K_φ = a²/2·[e^{-b²(s/2 - c12)} - e^{-b²(s/2 + c12)} cos 2c],
    K_φ' = a²b²/2·[e^{-b²(s/2 - c12)} + e^{-b²(s/2 + c12)} cos 2c].

    Evaluated as E·(cos²c·tanh(x)·h + sin²c·h), x = b² c12, with
    E = e^{-b²(s/2 − |c12|)} ≤ 1 and h = (1 + e^{-2|x|})/2: every exponent is
    ≤ 0 (no inf·0 at large variance), nothing cancels at small covariance, and
    s/2 − |c12| = (√c11 − √c22)²/2 + √(c11 c22)(1 − |ρ|) is computed without
    cancellation (exactly 0 for an input with itself).
    """
    check_real_args("sin", a=a, b=b, c=c)
    cos2, sin2 = math.cos(c) ** 2, math.sin(c) ** 2

    def dual(c12, c11, c22):
        n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
        rho, _ = correlation(c12, c11, c22)
        b2 = b**2
        x = b2 * c12
        decay = a**2 * jnp.exp(-b2 * ((n1 - n2) ** 2 / 2 + (n1 * n2) * gap(jnp.abs(rho))))
        h = (1 + jnp.exp(-2 * jnp.abs(x))) / 2  # e^{-|x|} cosh x
        sh = jnp.tanh(x) * h  # e^{-|x|} sinh x
        return decay * (cos2 * sh + sin2 * h), b2 * decay * (cos2 * h + sin2 * sh)

    return Activation(lambda x: a * jnp.sin(b * x + c), dual)


def rbf(gamma: float = 1.0) -> Activation:
    """φ(x) = √2·sin(sqrt(2γ) x + π/4), whose dual is the RBF kernel
    K_φ = exp(-γ (c11 + c22 - 2 c12)),  K_φ' = 2γ K_φ.

    The squared distance c11 + c22 − 2c12 = (√c11 − √c22)² + 2√(c11 c22)(1 − ρ)
    is computed without cancellation (exactly 0 for an input with itself).
    """
    require_real(gamma, "gamma", "rbf", low=0)

    def dual(c12, c11, c22):
        n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
        rho, _ = correlation(c12, c11, c22)
        nngp = jnp.exp(-gamma * ((n1 - n2) ** 2 + 2 * (n1 * n2) * gap(rho)))
        return nngp, 2 * gamma * nngp

    return Activation(lambda x: math.sqrt(2) * jnp.sin(math.sqrt(2 * gamma) * x + PI / 4), dual)


def sign() -> Activation:
    """φ(x) = sign(x): K_φ = 1 - 2θ/π (θ the angle between inputs).
    φ' = 0 almost everywhere, so K_φ' = 0, as in neural-tangents.
    """

    def dual(c12, c11, c22):
        rho, one_minus = correlation(c12, c11, c22)
        theta = angle(safe_sqrt(one_minus), rho)
        return 1 - 2 * theta / PI, jnp.zeros_like(theta)

    return Activation(jnp.sign, dual)


def exp(a: float = 1.0, b: float = 1.0) -> Activation:
    """φ(x) = a·e^{b x}: K_φ = a²·exp(b²(c11 + c22)/2 + b² c12), K_φ' = b² K_φ.

    Grows like e^{variance}: beyond the dtype's range it is inf, which the
    layer reports as an error (`ntk.stax.layer.check_finite_output`).
    """
    check_real_args("exp", a=a, b=b)

    def dual(c12, c11, c22):
        nngp = a**2 * jnp.exp(b**2 * ((c11 + c22) / 2 + c12))
        return nngp, b**2 * nngp

    return Activation(lambda x: a * jnp.exp(b * x), dual)


def gaussian(a: float = 1.0, b: float = -1.0) -> Activation:
    """φ(x) = a·e^{b x²}: with D = (1-2b c11)(1-2b c22) - 4b² c12²,
    K_φ = a² / sqrt(D),  K_φ' = 4a²b² c12 / D^{3/2}.

    For b > 0 the expectation is finite only while 1 − 2b c11 > 0,
    1 − 2b c22 > 0 and D > 0; elsewhere the kernel is +inf (reported as an
    error by the layer). Evaluated in the normalised form of
    `_arcsine_factors` (D = P·cos², no cancellation for b ≤ 0).
    """
    check_real_args("gaussian", a=a, b=b)

    def dual(c12, c11, c22):
        _, _, q12, cos2, valid = _arcsine_factors(c12, c11, c22, -2 * b)
        valid = valid & (cos2 > 0)
        inv_cos = 1 / jnp.sqrt(jnp.where(valid, cos2, 1.0))
        nngp = a**2 * q12 * inv_cos
        # D^{-3/2} = q12³/cos³, grouped so that no factor under- or overflows.
        dot = 4 * a**2 * b**2 * (c12 * q12) * (q12 * inv_cos) ** 2 * inv_cos
        return jnp.where(valid, nngp, jnp.inf), jnp.where(valid, dot, jnp.inf)

    return Activation(lambda x: a * jnp.exp(b * x**2), dual)


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
        coef = (
            math.comb(i, k)
            * math.comb(j, k)
            * math.factorial(k)
            * _double_factorial(i - k - 1)
            * _double_factorial(j - k - 1)
        )
        total = total + coef * c12**k * (c11 ** ((i - k) // 2) * c22 ** ((j - k) // 2))
    return total


def polynomial(coef: Sequence[float] | np.ndarray) -> Activation:
    """φ(x) = Σ_i coef[i] x^i: K_φ = Σ_ij coef_i coef_j E[u^i v^j] and
    K_φ' = Σ_ij i j coef_i coef_j E[u^{i-1} v^{j-1}] (exact, any variance).
    """
    coef = [
        float(c)
        for c in as_numpy(
            coef, "coef", "polynomial", ndim=1, dtype=np.float64, what="(degree + 1,)"
        )
    ]

    def pair(i, j, c12, c11, c22):
        # E[u^i v^j] + E[u^j v^i] for i < j, E[u^i v^i] for i = j: a sum that is
        # bitwise symmetric in (c11, c22), so the kernel matrix is symmetric.
        m = gaussian_moment(i, j, c12, c11, c22)
        return m if i == j else m + gaussian_moment(j, i, c12, c11, c22)

    def dual(c12, c11, c22):
        nngp = jnp.zeros_like(c12)
        dot = jnp.zeros_like(c12)
        for i, ci in enumerate(coef):
            for j, cj in enumerate(coef[i:], start=i):
                if ci == 0 or cj == 0:
                    continue
                nngp = nngp + ci * cj * pair(i, j, c12, c11, c22)
                if i:
                    dot = dot + i * j * ci * cj * pair(i - 1, j - 1, c12, c11, c22)
        return nngp, dot

    def fn(x):
        return sum(c * x**i for i, c in enumerate(coef) if c != 0) + 0 * x

    return Activation(fn, dual)


def monomial(degree: int) -> Activation:
    """φ(x) = x^degree (see `polynomial`)."""
    check_degree(degree, "monomial")
    return polynomial([0.0] * degree + [1.0])


def hermite(degree: int) -> Activation:
    """φ = He_n / sqrt(n!), the probabilists' Hermite polynomial normalised to
    unit norm under N(0, 1). For unit-variance inputs K_φ = c12^n (Daniely et
    al. 2016); the dual here is exact for any variance.
    """
    check_degree(degree, "hermite")
    coef = np.polynomial.hermite_e.herme2poly([0] * degree + [1]) / math.sqrt(
        math.factorial(degree)
    )
    return polynomial(coef)


def gabor() -> Activation:
    """φ(x) = e^{−x²} sin x (neural-tangents' Gabor). With s = c11 + c22,
    Δ = c11 c22 − c12² and D = det(I + 2C) = 1 + 2s + 4Δ — from
    sin u sin v = (cos(u − v) − cos(u + v))/2 and the Gaussian integral
    E[e^{−u² − v²} cos(aᵀ(u, v))] = D^{−1/2} exp(−aᵀC(I + 2C)^{−1}a / 2),
    as in neural-tangents 0.6.5 —

        K_φ  = [e^{−A₋} − e^{−A₊}] / (2√D),   A± = (s + 4Δ ± 2c12) / (2D),
        K_φ' = [e^{−A₋}(D + 8c12² + 4c12(D + s + 1))
                + e^{−A₊}(D + 8c12² − 4c12(D + s + 1))] / (2 D^{5/2}).

    Evaluated, like `erf`, from the per-input factors e_i = 1/(1 + 2c_i),
    t_i = 2c_i e_i (D/P = cos² of `_arcsine_factors` with g = 2). With
    x = 2c12/D = A₊ − A₋ and A = min(A₋, A₊) ≥ 0,

        K_φ = e^{−A} tanh(x/2) (1 + e^{−|x|}) / (2√D),
        K_φ' = e^{−A} (1 + e^{−|x|}) [D + 8c12² + 4c12 tanh(x/2)(D + s + 1)]
               / (2 D^{5/2}):

    every exponent is ≤ 0, the difference of exponentials is taken by tanh
    (accurate at small c12, and smooth in c12, so autodiff is right at
    c12 = 0), K_φ' is a sum of non-negative terms, and nothing overflows at
    any variance.
    """

    def dual(c12, c11, c22):
        # q_i = sqrt(e_i), s_i = sqrt(t_i) = sqrt(2 c_i)·q_i, per input.
        q1, q2 = inv_sqrt(1 + 2 * c11), inv_sqrt(1 + 2 * c22)
        q1, q2, s1, s2 = pairwise(c12, q1, q2, safe_sqrt(2 * c11) * q1, safe_sqrt(2 * c22) * q2)
        rho, one_minus = correlation(c12, c11, c22)
        # r1 = sqrt(t1 e2), r2 = sqrt(t2 e1), m = r1 r2 = 2 sqrt(c11 c22)/P.
        e1, e2, q12, r1, r2 = q1 * q1, q2 * q2, q1 * q2, s1 * q2, s2 * q1
        m = r1 * r2
        tt = (s1 * s2) ** 2
        e12 = e1 * e2
        cos2 = (e1 + e2 - e12) + tt * one_minus  # D / P
        # Multiplications by P/D, never divisions by D/P: in reverse mode a
        # division's cotangent is divided by (D/P)² first, which overflows
        # float32 at variances ~1e12 (D/P ~ 1/variance at ρ = 1).
        inv_cos = 1 / jnp.sqrt(cos2)
        inv_cos2 = inv_cos * inv_cos
        x = rho * m * inv_cos2  # 2 c12 / D
        # (s + 4Δ − 2|c12|)/P = (r1 − r2)²/2 + m (1 − |ρ|) + t1 t2 (1 − ρ²)
        a = ((r1 - r2) ** 2 / 2 + m * gap(jnp.abs(rho)) + tt * one_minus) * inv_cos2 / 2
        decay = jnp.exp(-a) * (1 + jnp.exp(-jnp.abs(x)))
        th = jnp.tanh(x / 2)
        nngp = decay * th * q12 * inv_cos / 2
        # (s + 1)/P = (r1² + r2²)/2 + e1 e2
        bracket = (
            e12
            + 2 * (rho * m) * x
            + 2 * rho * m * th * (1 + ((r1 * r1 + r2 * r2) / 2 + e12) * inv_cos2)
        )
        dot = decay * q12 * inv_cos**3 * bracket / 2
        return nngp, dot

    return Activation(lambda x: jnp.exp(-x * x) * jnp.sin(x), dual)


def exp_normalized(gamma: float = 1.0, shift: float = -1.0, do_clip: bool = False) -> Activation:
    """The "Gaussian normalised kernel" (Shankar et al. 2020, "Neural Kernels
    Without Tangents", arXiv:2003.02237, p. 6; neural-tangents' ExpNormalized):
    with ρ = c12 / sqrt(c11 c22),

        K = sqrt(c11 c22)·exp(γ(ρ + shift)),   K' = ∂K/∂c12 = γ·exp(γ(ρ + shift)).

    Not the dual of an elementwise φ (it is that of ``h -> s·ψ(h/s)`` with
    s² = mean of h² over the channels and ψ(z) = exp(sqrt(γ) z +
    γ(shift − 1)/2), as width → ∞), so ``fn`` is None, as in neural-tangents. ``do_clip`` clips ρ to [−1, 1]
    (here ρ is snapped to ±1 within rounding of it, so it is never outside by
    more than a few ulps anyway). A zero-variance input has
    ρ = 0: K = 0, K' = γ e^{γ·shift}. ``gamma`` must be ≥ 0 (neural-tangents
    accepts any): for γ < 0 neither K (e^{γρ} has Taylor coefficients of both
    signs) nor the NTK (K' < 0) is positive semi-definite.
    """
    require_real(gamma, "gamma", "exp_normalized", low=0)
    check_real_args("exp_normalized", shift=shift)
    require_bool(do_clip, "do_clip", "exp_normalized")

    def dual(c12, c11, c22):
        n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
        rho, one_minus = correlation(c12, c11, c22)
        # ρ = ±1 where `correlation` finds it so up to rounding: otherwise
        # the ulp by which c12 and c11 of an input with itself drift apart
        # every layer (see `correlation`) is amplified by 1 + γ per layer.
        rho = jnp.where(one_minus == 0, jnp.sign(rho), rho)
        if do_clip:
            rho = jnp.clip(rho, -1.0, 1.0)
        e = jnp.exp(gamma * (rho + shift))
        return (n1 * n2) * e, gamma * e

    return Activation(None, dual)


def _rectified_coefficients(degree: int) -> list[tuple[list[Fraction], list[Fraction]]]:
    """``[(P_k, Q_k) for k ≤ degree]``: exact coefficients (ascending powers of ρ)
    of ``J_k(ρ) = 2π K_k(ρ) = P_k(ρ)·sqrt(1 − ρ²) + Q_k(ρ)·(π − arccos ρ)``,
    where K_k(ρ) = E[φ_k(u) φ_k(v)] at unit variances, φ_k = max(x, 0)^k.

    K_0 = (π − θ)/(2π) (P_0 = 0, Q_0 = 1), and K_k(ρ) = k² ∫_{−1}^ρ K_{k−1}
    (Price's theorem, dK_k/dρ = E[φ_k' φ_k'] = k² K_{k−1}; K_k(−1) = 0 for
    k ≥ 1). With w = sqrt(1 − t²) and A = π − arccos t = π/2 + arcsin t
    (A' = 1/w): ∫ P w = ∫ P(1 − t²)/w, ∫ Q A = R A − ∫ R/w (R = ∫ Q), and
    ∫ t^j/w = −t^{j−1} w/j + (j−1)/j ∫ t^{j−2}/w, ∫ 1/w = arcsin t,
    ∫ t/w = −w; arcsin t = A − π/2, and the constant −π/2·(…) cancels
    against the value at t = −1 (where w = A = 0).
    """

    def add(a, b):
        n = max(len(a), len(b))
        return [(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(n)]

    def over_w(r):
        """∫ r(t)/w dt = S(t)·w + c·arcsin t, as (S, c)."""
        table = [([Fraction(0)], Fraction(1)), ([Fraction(-1)], Fraction(0))]
        for j in range(2, len(r)):
            s_prev, c_prev = table[j - 2]
            s = [Fraction(0)] * (j - 1) + [Fraction(-1, j)]
            table.append(
                (add(s, [Fraction(j - 1, j) * v for v in s_prev]), Fraction(j - 1, j) * c_prev)
            )
        s_out, c_out = [Fraction(0)], Fraction(0)
        for j, coef in enumerate(r):
            s_out = add(s_out, [coef * v for v in table[j][0]])
            c_out += coef * table[j][1]
        return s_out, c_out

    out = [([Fraction(0)], [Fraction(1)])]
    for k in range(1, degree + 1):
        p, q = out[-1]
        one_minus_t2 = [Fraction(1), Fraction(0), Fraction(-1)]
        pw = [
            sum((p[i] * one_minus_t2[j - i] for i in range(len(p)) if 0 <= j - i < 3), Fraction(0))
            for j in range(len(p) + 2)
        ]
        s1, c1 = over_w(pw)
        r = [Fraction(0)] + [v / (i + 1) for i, v in enumerate(q)]
        s2, c2 = over_w(r)
        p_new = add(s1, [-v for v in s2])
        q_new = add(r, [c1 - c2])
        out.append(([k * k * v for v in p_new], [k * k * v for v in q_new]))
    return out


def _horner(coef, x):
    acc = jnp.zeros_like(x) + coef[-1]
    for c in coef[-2::-1]:
        acc = acc * x + c
    return acc


def rectified_monomial(degree: int) -> Activation:
    """φ(x) = max(x, 0)^n (``(x >= 0)·x^n`` as in neural-tangents): the
    arc-cosine kernel of degree n (Cho & Saul 2009, "Kernel methods for deep
    learning"),

        K_φ  = (c11 c22)^{n/2} J_n(θ) / (2π),
        J_n  = (−1)^n sin^{2n+1}θ (1/sinθ ∂/∂θ)^n ((π − θ)/sinθ),
        K_φ' = n² (c11 c22)^{(n−1)/2} J_{n−1}(θ) / (2π)   (Price's theorem).

    J_n is evaluated in the closed form J_n = P_n(ρ) sin θ + Q_n(ρ)(π − θ)
    with exact rational polynomials P_n, Q_n (`_rectified_coefficients`;
    n = 1: P = 1, Q = ρ, ReLU; n = 2: P = 3ρ, Q = 1 + 2ρ²), accurate at
    correlation ±1, where the θ-derivative form is 0·∞. The norms enter as
    (sqrt(c11) sqrt(c22))^n, so the kernel is finite up to the dtype's range
    and inf beyond it (reported by the layer). At a zero variance, where the
    argument of φ is exactly 0, φ(0) = 0^n is used: K_φ = 0 for n ≥ 1, and
    for n = 0 (the step (x >= 0)) K_φ = 1/2 against a nonzero variance and
    1 against another zero variance; K_φ' follows with φ'(0) = 1 for n = 1.
    """
    check_degree(degree, "rectified_monomial")
    degree = int(degree)
    coefs = [
        ([float(v) for v in p], [float(v) for v in q]) for p, q in _rectified_coefficients(degree)
    ]

    def arccos_j(k, rho, sine, a, zero1, zero2):
        p, q = coefs[k]
        j = (_horner(p, rho) * sine + _horner(q, rho) * a) / (2 * PI)
        if k:
            return j
        # The step at exactly 0 is 1: E[1·1(v ≥ 0)] = 1/2, E[1·1] = 1.
        return jnp.where(zero1 | zero2, jnp.where(zero1 & zero2, 1.0, 0.5), j)

    def dual(c12, c11, c22):
        n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
        rho, one_minus = correlation(c12, c11, c22)
        sine = safe_sqrt(one_minus)
        a = angle(sine, -rho)  # π − θ
        zero1, zero2 = n1 == 0, n2 == 0
        norms = n1 * n2
        nngp = norms**degree * arccos_j(degree, rho, sine, a, zero1, zero2)
        if degree == 0:
            return nngp, jnp.zeros_like(nngp)
        dot = degree**2 * norms ** (degree - 1) * arccos_j(degree - 1, rho, sine, a, zero1, zero2)
        return nngp, dot

    return Activation(lambda x: (x >= 0) * x**degree, dual)


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
    "gabor": gabor,
    "exp_normalized": exp_normalized,
    "rectified_monomial": rectified_monomial,
}
