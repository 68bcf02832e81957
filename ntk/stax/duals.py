r"""Dual kernels of activations: the table ``ACTIVATIONS``.

For a pre-activation
:math:`(u, v) \sim \mathcal{N}\left(0, \begin{pmatrix} c_{11} & c_{12} \\ c_{12} & c_{22}
\end{pmatrix}\right)` an activation :math:`\varphi` has the *dual kernel* (Cho & Saul
2009; Daniely et al. 2016)

.. math::

    K_\varphi(c_{12}, c_{11}, c_{22}) = \mathbb{E}\,[\varphi(u)\, \varphi(v)]

and the *derivative kernel*, which by Price's theorem is its derivative in
the covariance,

.. math::

    K_{\varphi'}(c_{12}, c_{11}, c_{22}) = \mathbb{E}\,[\varphi'(u)\, \varphi'(v)]
    = \frac{\partial K_\varphi}{\partial c_{12}}.

Through an activation the NNGP becomes :math:`K_\varphi` and the NTK becomes
:math:`\Theta' = K_{\varphi'} \odot \Theta` (Jacot et al. 2018, Theorem 1; Lee et al.
2019, eq. 7). For ReLU both are arc-cosine kernels (Cho & Saul 2009): with
:math:`\cos\theta = c_{12} / \sqrt{c_{11} c_{22}}`,

.. math::

    K_\varphi = \frac{\sqrt{c_{11} c_{22}}}{2\pi} \big(\sin\theta + (\pi - \theta)\cos\theta\big),
    \qquad K_{\varphi'} = \frac{\pi - \theta}{2\pi}.

Every activation here is an `Activation` record ``(fn, dual, chord_dual)`` in
the table ``ACTIVATIONS`` (name -> factory); ``dual(c12, c11, c22)`` returns
:math:`(K_\varphi, K_{\varphi'})` elementwise. Most also read the inputs'
chord :math:`\chi = 2(\sqrt{c_{11} c_{22}} - c_{12})` (``chord_dual``;
`ntk.kernel.Kernel.chord`), which resolves nearly collinear inputs in float32:
the kinked ones (ABRelu's family, the step and ReLU of ``rectified_monomial``,
Sign) take the angle from it and map it, Sin/Cos and Rbf the squared distance
:math:`\chi + (\sqrt{c_{11}} - \sqrt{c_{22}})^2`, and Erf, Gelu, Gaussian, Gabor and
ExpNormalized take :math:`1 - \rho` from it. The table is what other modules (e.g.
deep kernel machines) use to get an activation's dual; the layers of
`ntk.stax.elementwise` wrap it, and `ntk.stax.numerical` integrates the dual
of any other :math:`\varphi`.

Numerics: every closed-form dual is evaluated from normalised quantities
(correlations, per-input factors like :math:`1/(1 + 2b^2 c)`; see the numerics of
``ntk.stax._internal``), so it is accurate to rounding for any representable
variance, float32 included; where the true kernel exceeds the dtype's range
(Exp, polynomials, Gaussian with :math:`b > 0`) it comes out inf, which the layer
reports as an error. Kernels are symmetric to the last bit.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, NamedTuple, Optional, Sequence, cast

import jax
import jax.numpy as jnp
import numpy as np

from ntk._autodiff import snap
from ntk._checks import as_numpy, require_bool, require_real
from ntk.stax._internal import (
    PI,
    angle,
    angle_from_chord,
    atan2,
    correlation,
    correlation_from_chord,
    gap,
    inv,
    inv_sqrt,
    pair_sqrt,
    norm_gap,
    pairwise,
    safe_sqrt,
    sqdist_from_chord,
)


class Activation(NamedTuple):
    r"""An activation :math:`\varphi` and its dual: ``dual(c12, c11, c22)``
    :math:`\to (K_\varphi, K_{\varphi'})`.

    Example:
      ReLU's record: ``fn`` acts on arrays, ``dual`` on covariances; orthogonal
      unit-variance inputs give :math:`K_\varphi = 1/(2\pi)` and
      :math:`K_{\varphi'} = 1/4`:

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
    #: ``chord_dual(chord, c12, c11, c22)`` :math:`\to (K_\varphi, K_{\varphi'}, \chi')`
    #: with :math:`1 - \rho` (or the squared distance) taken from the chord
    #: :math:`\chi = 2(\sqrt{c_{11} c_{22}} - c_{12})` (``angle_from_chord``)
    #: and the outputs' chord :math:`\chi' = 2(\sqrt{K_\varphi(c_{11}) K_\varphi(c_{22})}
    #: - K_\varphi(c_{12}))` in closed form;
    #: ``ntk.stax.duals.CHORD_FROM_KERNELS`` where the layer is to take it from
    #: the output kernels (the smooth Erf, Gaussian, Gabor, ExpNormalized), or
    #: None where the outputs carry none (Gelu: at large variance it is
    #: ReLU-like, and the next layer's angle from a chord taken from its
    #: kernels, error ε K, came out worse than from its NNGP, measured). None
    #: as a whole for Exp, polynomials and rectified monomials of degree ≥ 2
    #: (no :math:`1 - \rho` to lose).
    chord_dual: Optional[Callable] = None


class _ChordFromKernels:
    # A static pytree node: it passes through `jax.jit` as itself.
    def __repr__(self):
        return "CHORD_FROM_KERNELS"


jax.tree_util.register_static(_ChordFromKernels)

#: What a ``chord_dual`` returns as the outputs' chord for the layer to take it
#: from the output kernels, :math:`2(\sqrt{K_{11} K_{22}} - K_{12})` (exactly 0
#: between identical inputs; right to ε K).
CHORD_FROM_KERNELS = _ChordFromKernels()


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


def _arcsine_factors(c12, c11, c22, g, one_minus=None):
    """Shared normalisation of the arcsine-type duals (Erf, Gelu, Gaussian).

    For ``p_i = 1 + g·c_i`` (g = 2b² for erf, 1 for gelu, −2b for the
    Gaussian) the kernels involve ``P = p1 p2`` and ``Δ² = P − g²c12²``.
    Dividing by P gives, with ``e_i = 1/p_i`` and ``t_i = g c_i e_i`` (so
    ``e_i + t_i = 1``),

        Δ²/P = e1 + e2 − e1 e2 + t1 t2 (1 − ρ²),

    a sum of non-negative terms when g ≥ 0 — no cancellation, no overflow.
    Returns ``(e1, e2, q12 = 1/sqrt(P), cos² = Δ²/P, valid)`` (pairwise
    shape); ``valid`` is False where some p_i ≤ 0 (only possible for g < 0).
    ``one_minus``: :math:`1 - \rho^2` if known better than from c12 (from the
    inputs' chord: Erf's ``chord_dual``).
    """
    q1, q2 = pairwise(c12, inv_sqrt(1 + g * c11), inv_sqrt(1 + g * c22))
    e1, e2 = q1 * q1, q2 * q2
    if one_minus is None:
        _, one_minus = correlation(c12, c11, c22)
    e12 = e1 * e2
    # t_i = 1 − e_i: absolute error eps, negligible against cos² ≥ max(e_i)
    # where t_i is small; written so, the (N, N) loop reads only e_i (see
    # `inv_sqrt`).
    cos2 = (e1 + e2 - e12) + ((1 - e1) * (1 - e2)) * one_minus
    return e1, e2, q1 * q2, cos2, (q1 > 0) & (q2 > 0)


def _one_minus_from_chord(dual, chord_out=CHORD_FROM_KERNELS):
    """A ``chord_dual`` for a smooth activation whose dual takes
    ``1 − ρ²`` as its last argument (``dual(c12, c11, c22, one_minus)``):
    1 − ρ² from the inputs' chord (`correlation_from_chord`), and the
    outputs' chord ``chord_out`` (`CHORD_FROM_KERNELS`, or None: none)."""

    def chord_dual(chord, c12, c11, c22):
        rho, one_minus_rho, _ = correlation_from_chord(chord, c12, c11, c22)
        return (*dual(c12, c11, c22, one_minus_rho * gap(-rho)), chord_out)

    return chord_dual


# ------------------------------------------------------- the dual kernels


def abrelu(a: float, b: float) -> Activation:
    r""":math:`\varphi(x) = a \cdot \min(x, 0) + b \cdot \max(x, 0)`. With
    :math:`\theta` the angle between inputs,
    :math:`K_\varphi = (a-b)^2/(2\pi) \cdot \sqrt{c_{11} c_{22} - c_{12}^2}
    + K_{\varphi'} \cdot c_{12}` and
    :math:`K_{\varphi'} = (a^2 + b^2)/2 - (a-b)^2 \theta/(2\pi)` (Cho & Saul 2009,
    :math:`n = 1`; ReLU: :math:`a = 0`, :math:`b = 1`).

    Positively homogeneous: evaluated from :math:`\rho` and the norms
    :math:`\sqrt{c_i}`, so it is exact up to rounding for any representable variance.
    """
    check_real_args("abrelu", a=a, b=b)
    f = (a - b) ** 2 / (2 * PI)

    def dual(c12, c11, c22):
        rho, one_minus = correlation(c12, c11, c22)
        sine = pair_sqrt(one_minus)
        dot = (a**2 + b**2) / 2 - f * angle(sine, rho)
        norms = safe_sqrt(c11) * safe_sqrt(c22)
        return f * norms * sine + dot * c12, dot

    def chord_dual(chord, c12, c11, c22):
        # χ' = (a² + b²)/2 · χ − (a − b)²/π · p h(θ): the kernel above at c11,
        # c22 and c12 (K_ii = (a² + b²)/2 · c_ii) with the O(1) terms
        # cancelled by hand.
        theta, sine_p, h_p = angle_from_chord(chord, c12, c11, c22)
        dot = (a**2 + b**2) / 2 - f * theta
        chord_out = (a**2 + b**2) / 2 * chord - 2 * f * h_p
        return f * sine_p + dot * c12, dot, snap(chord_out, chord_out < 0)

    return Activation(lambda x: a * jnp.minimum(x, 0) + b * jnp.maximum(x, 0), dual, chord_dual)


def erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Activation:
    r""":math:`\varphi(x) = a \cdot \operatorname{erf}(b x) + c` (Williams 1997): with
    :math:`P = (1+2b^2c_{11})(1+2b^2c_{22})`,

    .. math::

        K_\varphi &= a^2 \cdot (2/\pi) \cdot \arcsin(2b^2c_{12} / \sqrt{P}) + c^2, \\
        K_{\varphi'} &= a^2b^2 \cdot (4/\pi) / \sqrt{P - 4b^4c_{12}^2}.

    Evaluated as angles on the unit circle: :math:`\sin = 2b^2c_{12}/\sqrt{P}` and
    :math:`\cos^2 = (P - 4b^4c_{12}^2)/P` from `_arcsine_factors`, so no term cancels
    or overflows at any variance.
    """
    check_real_args("erf", a=a, b=b, c=c)
    g = 2 * b**2

    def dual(c12, c11, c22, one_minus=None):
        _, _, q12, cos2, _ = _arcsine_factors(c12, c11, c22, g, one_minus)
        cos = jnp.sqrt(cos2)
        nngp = a**2 * (2 / PI) * atan2(g * c12 * q12, cos) + c**2
        return nngp, a**2 * b**2 * (4 / PI) * q12 / cos

    # A closed form of the outputs' distance right to ε d' took the layer
    # twice the time (two more arc tangents per pair); Erf is smooth, so
    # the outputs' chord from the kernels has their error, ε K.
    return Activation(
        lambda x: a * jax.scipy.special.erf(b * x) + c, dual, _one_minus_from_chord(dual)
    )


def gelu(approximate: bool = False) -> Activation:
    r""":math:`\varphi(x) = x \Phi(x)` (Hendrycks & Gimpel 2016). With
    :math:`P = (1+c_{11})(1+c_{22})`, :math:`\Delta = \sqrt{P - c_{12}^2}`,
    :math:`\alpha = \arcsin(c_{12}/\sqrt{P})` and :math:`\beta = \pi/2 + \alpha`
    (Tsuchida et al. 2021, arXiv:2002.08517, for :math:`K_\varphi`;
    :math:`K_{\varphi'} = \partial K_\varphi / \partial c_{12}`),

    .. math::

        K_\varphi &= \big[c_{12} \beta + (c_{12}^2 + c_{11} c_{22} \Delta^2)/(P \Delta)\big]
        / (2\pi), \\
        K_{\varphi'} &= \big[\beta + c_{12} (\Delta^2(3 + c_{11} + c_{22}) + c_{12}^2)
        /(P \Delta^3)\big] / (2\pi).

    Evaluated in the normalised form of `_arcsine_factors`
    (:math:`\sin\alpha = c_{12}/\sqrt{P}`, :math:`\cos\alpha = \Delta/\sqrt{P}`,
    :math:`\beta = \operatorname{atan2}(\cos\alpha, -\sin\alpha)`), which is
    accurate at every variance. ``approximate`` only changes the finite
    network (tanh form).
    """
    require_bool(approximate, "approximate", "gelu")

    def dual(c12, c11, c22, one_minus=None):
        e1, e2, q12, cos2, _ = _arcsine_factors(c12, c11, c22, 1.0, one_minus)
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

    # The inputs' chord gives the layer its 1 − ρ² (from the NNGP the NTK
    # was 300-530 eps off in float32, inputs 1e-3 apart at variances
    # 1e3-1e7); its outputs carry none (see `Activation.chord_dual`).
    return Activation(
        lambda x: jax.nn.gelu(x, approximate=approximate),
        dual,
        _one_minus_from_chord(dual, chord_out=None),
    )


def sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Activation:
    r""":math:`\varphi(x) = a \cdot \sin(b x + c)`: with :math:`s = c_{11} + c_{22}`,

    .. math::

        K_\varphi &= a^2/2 \cdot \big[e^{-b^2(s/2 - c_{12})} - e^{-b^2(s/2 + c_{12})}
        \cos 2c\big], \\
        K_{\varphi'} &= a^2b^2/2 \cdot \big[e^{-b^2(s/2 - c_{12})} + e^{-b^2(s/2 + c_{12})}
        \cos 2c\big].

    Evaluated as :math:`E \cdot (\cos^2 c \cdot \tanh(x) \cdot h + \sin^2 c \cdot h)`,
    :math:`x = b^2 c_{12}`, with :math:`E = e^{-b^2(s/2 - |c_{12}|)} \le 1` and
    :math:`h = (1 + e^{-2|x|})/2`: every exponent is :math:`\le 0` (no inf·0 at large
    variance), nothing cancels at small covariance, and
    :math:`s/2 - |c_{12}| = (\sqrt{c_{11}} - \sqrt{c_{22}})^2/2
    + \sqrt{c_{11} c_{22}}(1 - |\rho|)` is computed without cancellation (exactly 0
    for an input with itself).
    """
    check_real_args("sin", a=a, b=b, c=c)
    cos2, sin2 = jnp.cos(c) ** 2, jnp.sin(c) ** 2  # jnp: c may be traced (a gradient in c)

    b2 = b**2

    def dual(c12, c11, c22, d=None):
        n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
        rho, _ = correlation(c12, c11, c22)
        x = b2 * c12
        exponent = norm_gap(n1, n2) ** 2 / 2 + (n1 * n2) * gap(jnp.abs(rho))
        if d is not None:  # the squared distance, from the chord: s/2 − c12 = d/2 for c12 ≥ 0
            exponent = jnp.where(c12 >= 0, d / 2, exponent)
        decay = a**2 * jnp.exp(-b2 * exponent)
        h = (1 + jnp.exp(-2 * jnp.abs(x))) / 2  # e^{-|x|} cosh x
        sh = jnp.tanh(x) * h  # e^{-|x|} sinh x
        return decay * (cos2 * sh + sin2 * h), b2 * decay * (cos2 * h + sin2 * sh)

    def chord_dual(chord, c12, c11, c22):
        # With d = χ + (n1 − n2)² = s − 2c12, A_i = exp(−b² c_ii) and
        # s⁺ = c11 + c22 + 2c12, the outputs' squared distance K11 + K22 − 2K12
        # is a²/2 · [2(1 − e^{−b²d/2})(1 + cos 2c · e^{−b²s⁺/2}) − cos 2c (A1 − A2)²]:
        # each difference by expm1, so it is right to rounding relative to
        # itself, and nothing overflows (A1 − A2 through the smaller variance).
        # The chord is that less (√K11 − √K22)², with K_ii = a²/2 (1 − cos 2c A_i²):
        # a difference, which loses the angle of inputs that differ mostly in
        # norm, as the squared distance itself does.
        cos_2c = cos2 - sin2
        v1, v2 = pairwise(c12, c11, c22)
        a1, a2 = jnp.exp(-b2 * c11), jnp.exp(-b2 * c22)
        k1, k2, sum_a = pairwise(
            c12, a**2 / 2 * (1 - cos_2c * a1 * a1), a**2 / 2 * (1 - cos_2c * a2 * a2), a1 + a2
        )
        d = sqdist_from_chord(chord, c12, c11, c22)
        far = -jnp.expm1(-b2 * d / 2)
        apart = jnp.exp(-2 * b2 * jnp.minimum(v1, v2)) * jnp.expm1(-b2 * jnp.abs(v1 - v2)) ** 2
        sum_decay = jnp.exp(-b2 * (v1 + v2 + 2 * c12) / 2)
        d_out = a**2 * (far * (1 + cos_2c * sum_decay) - cos_2c * apart / 2)
        # (√K11 − √K22)² = (K11 − K22)²/(√K11 + √K22)², K11 − K22 = a²/2 cos 2c (A2² − A1²).
        norms_apart = (
            (a**2 / 2 * cos_2c) ** 2 * apart * sum_a**2 * inv((safe_sqrt(k1) + safe_sqrt(k2)) ** 2)
        )
        chord_out = d_out - norms_apart
        return (*dual(c12, c11, c22, d), snap(chord_out, chord_out < 0))

    return Activation(lambda x: a * jnp.sin(b * x + c), dual, chord_dual)


def rbf(gamma: float = 1.0) -> Activation:
    r""":math:`\varphi(x) = \sqrt{2} \cdot \sin(\sqrt{2\gamma}\, x + \pi/4)`, whose dual is
    the RBF kernel :math:`K_\varphi = \exp(-\gamma (c_{11} + c_{22} - 2 c_{12}))`,
    :math:`K_{\varphi'} = 2\gamma K_\varphi`.

    The squared distance :math:`c_{11} + c_{22} - 2c_{12}
    = (\sqrt{c_{11}} - \sqrt{c_{22}})^2 + 2\sqrt{c_{11} c_{22}}(1 - \rho)` is computed
    without cancellation (exactly 0 for an input with itself).
    """
    require_real(gamma, "gamma", "rbf", low=0)

    def dual(c12, c11, c22):
        n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
        rho, _ = correlation(c12, c11, c22)
        nngp = jnp.exp(-gamma * (norm_gap(n1, n2) ** 2 + 2 * (n1 * n2) * gap(rho)))
        return nngp, 2 * gamma * nngp

    def chord_dual(chord, c12, c11, c22):
        # The kernel is a function of the squared distance d = χ + (n1 − n2)²
        # (a sum, nothing cancels); K_ii = 1, so the outputs' chord is
        # 2 − 2 e^{−γ d}, by expm1 right to rounding (deep RBF networks
        # stretch nearby pairs apart, multiplying its relative error).
        d = sqdist_from_chord(chord, c12, c11, c22)
        nngp = jnp.exp(-gamma * d)
        return nngp, 2 * gamma * nngp, -2 * jnp.expm1(-gamma * d)

    return Activation(
        lambda x: math.sqrt(2) * jnp.sin(jnp.sqrt(2 * gamma) * x + PI / 4), dual, chord_dual
    )


def sign() -> Activation:
    r""":math:`\varphi(x) = \operatorname{sign}(x)`: :math:`K_\varphi = 1 - 2\theta/\pi`
    (:math:`\theta` the angle between inputs). :math:`\varphi' = 0` almost everywhere,
    so :math:`K_{\varphi'} = 0`, as in neural-tangents.
    """

    def dual(c12, c11, c22):
        rho, one_minus = correlation(c12, c11, c22)
        theta = angle(pair_sqrt(one_minus), rho)
        return 1 - 2 * theta / PI, jnp.zeros_like(theta)

    def chord_dual(chord, c12, c11, c22):
        # K_ii = 1, so χ' = 2(1 − K12) = 4θ/π; 0 against a zero-variance
        # input (sign(0) = 0: K_ii = 0 and K12 = 0).
        theta = angle_from_chord(chord, c12, c11, c22)[0]
        on1, on2 = pairwise(c12, (c11 > 0).astype(c12.dtype), (c22 > 0).astype(c12.dtype))
        chord_out = jnp.where(on1 * on2 > 0, 4 * theta / PI, 0.0)
        return 1 - 2 * theta / PI, jnp.zeros_like(theta), chord_out

    return Activation(jnp.sign, dual, chord_dual)


def exp(a: float = 1.0, b: float = 1.0) -> Activation:
    r""":math:`\varphi(x) = a \cdot e^{b x}`:
    :math:`K_\varphi = a^2 \cdot \exp(b^2(c_{11} + c_{22})/2 + b^2 c_{12})`,
    :math:`K_{\varphi'} = b^2 K_\varphi`.

    Grows like :math:`e^{\mathrm{variance}}`: beyond the dtype's range it is inf, which the
    layer reports as an error (`ntk.stax.layer.check_finite_output`).
    """
    check_real_args("exp", a=a, b=b)

    def dual(c12, c11, c22):
        nngp = a**2 * jnp.exp(b**2 * ((c11 + c22) / 2 + c12))
        return nngp, b**2 * nngp

    return Activation(lambda x: a * jnp.exp(b * x), dual)


def gaussian(a: float = 1.0, b: float = -1.0) -> Activation:
    r""":math:`\varphi(x) = a \cdot e^{b x^2}`: with
    :math:`D = (1-2b c_{11})(1-2b c_{22}) - 4b^2 c_{12}^2`,
    :math:`K_\varphi = a^2 / \sqrt{D}`, :math:`K_{\varphi'} = 4a^2b^2 c_{12} / D^{3/2}`.

    For :math:`b > 0` the expectation is finite only while :math:`1 - 2b c_{11} > 0`,
    :math:`1 - 2b c_{22} > 0` and :math:`D > 0`; elsewhere the kernel is +inf
    (reported as an error by the layer). Evaluated in the normalised form of
    `_arcsine_factors` (:math:`D = P \cdot \cos^2`, no cancellation for :math:`b \le 0`).
    """
    check_real_args("gaussian", a=a, b=b)

    def dual(c12, c11, c22, one_minus=None):
        _, _, q12, cos2, valid = _arcsine_factors(c12, c11, c22, -2 * b, one_minus)
        valid = valid & (cos2 > 0)
        inv_cos = 1 / jnp.sqrt(jnp.where(valid, cos2, 1.0))
        nngp = a**2 * q12 * inv_cos
        # D^{-3/2} = q12³/cos³, grouped so that no factor under- or overflows.
        dot = 4 * a**2 * b**2 * (c12 * q12) * (q12 * inv_cos) ** 2 * inv_cos
        return jnp.where(valid, nngp, jnp.inf), jnp.where(valid, dot, jnp.inf)

    return Activation(lambda x: a * jnp.exp(b * x**2), dual, _one_minus_from_chord(dual))


def _double_factorial(n: int) -> int:
    return 1 if n <= 0 else n * _double_factorial(n - 2)


def gaussian_moment(i: int, j: int, c12, c11, c22):
    r""":math:`\mathbb{E}[u^i v^j]` for centred jointly Gaussian :math:`(u, v)`
    (Isserlis' theorem):

    .. math::

        \sum_k C(i,k)\, C(j,k)\, k!\, (i-k-1)!!\, (j-k-1)!!\, c_{12}^k\,
        c_{11}^{(i-k)/2}\, c_{22}^{(j-k)/2},

    over :math:`k \le \min(i, j)` with :math:`i - k` and :math:`j - k` even
    (:math:`k` cross pairings).
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
    r""":math:`\varphi(x) = \sum_i \mathrm{coef}[i]\, x^i`:
    :math:`K_\varphi = \sum_{ij} \mathrm{coef}_i \mathrm{coef}_j \mathbb{E}[u^i v^j]` and
    :math:`K_{\varphi'} = \sum_{ij} i j\, \mathrm{coef}_i \mathrm{coef}_j
    \mathbb{E}[u^{i-1} v^{j-1}]` (exact, any variance).
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
    r""":math:`\varphi(x) = x^{\mathrm{degree}}` (see `polynomial`)."""
    check_degree(degree, "monomial")
    return polynomial([0.0] * degree + [1.0])


def hermite(degree: int) -> Activation:
    r""":math:`\varphi = \mathrm{He}_n / \sqrt{n!}`, the probabilists' Hermite polynomial
    normalised to unit norm under :math:`\mathcal{N}(0, 1)`. For unit-variance inputs
    :math:`K_\varphi = c_{12}^n` (Daniely et al. 2016); the dual here is exact for any
    variance.
    """
    check_degree(degree, "hermite")
    coef = np.polynomial.hermite_e.herme2poly([0] * degree + [1]) / math.sqrt(
        math.factorial(degree)
    )
    return polynomial(coef)


def gabor() -> Activation:
    r""":math:`\varphi(x) = e^{-x^2} \sin x` (neural-tangents' Gabor). With
    :math:`s = c_{11} + c_{22}`, :math:`\Delta = c_{11} c_{22} - c_{12}^2` and
    :math:`D = \det(I + 2C) = 1 + 2s + 4\Delta` — from
    :math:`\sin u \sin v = (\cos(u - v) - \cos(u + v))/2` and the Gaussian integral
    :math:`\mathbb{E}[e^{-u^2 - v^2} \cos(a^\top(u, v))]
    = D^{-1/2} \exp(-a^\top C(I + 2C)^{-1}a / 2)`, as in neural-tangents 0.6.5 —

    .. math::

        K_\varphi &= \big[e^{-A_-} - e^{-A_+}\big] / (2\sqrt{D}), \qquad
        A_\pm = (s + 4\Delta \pm 2c_{12}) / (2D), \\
        K_{\varphi'} &= \big[e^{-A_-}(D + 8c_{12}^2 + 4c_{12}(D + s + 1))
        + e^{-A_+}(D + 8c_{12}^2 - 4c_{12}(D + s + 1))\big] / (2 D^{5/2}).

    Evaluated, like `erf`, from the per-input factors :math:`e_i = 1/(1 + 2c_i)`,
    :math:`t_i = 2c_i e_i` (:math:`D/P = \cos^2` of `_arcsine_factors` with
    :math:`g = 2`). With :math:`x = 2c_{12}/D = A_+ - A_-` and
    :math:`A = \min(A_-, A_+) \ge 0`,

    .. math::

        K_\varphi &= e^{-A} \tanh(x/2)\, (1 + e^{-|x|}) / (2\sqrt{D}), \\
        K_{\varphi'} &= e^{-A} (1 + e^{-|x|})
        \big[D + 8c_{12}^2 + 4c_{12} \tanh(x/2)(D + s + 1)\big] / (2 D^{5/2}):

    every exponent is :math:`\le 0`, the difference of exponentials is taken by tanh
    (accurate at small :math:`c_{12}`, and smooth in :math:`c_{12}`, so autodiff is
    right at :math:`c_{12} = 0`), :math:`K_{\varphi'}` is a sum of non-negative terms,
    and nothing overflows at any variance.
    """

    def dual(c12, c11, c22, one_minus_rho=None):
        # q_i = sqrt(e_i), s_i = sqrt(t_i) = sqrt(2 c_i)·q_i, per input.
        q1, q2 = inv_sqrt(1 + 2 * c11), inv_sqrt(1 + 2 * c22)
        q1, q2, s1, s2 = pairwise(c12, q1, q2, safe_sqrt(2 * c11) * q1, safe_sqrt(2 * c22) * q2)
        rho, one_minus = correlation(c12, c11, c22)
        gap_abs = gap(jnp.abs(rho))
        if one_minus_rho is not None:  # 1 − ρ from the chord
            one_minus = one_minus_rho * gap(-rho)
            gap_abs = jnp.where(rho >= 0, one_minus_rho, gap_abs)
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
        a = ((r1 - r2) ** 2 / 2 + m * gap_abs + tt * one_minus) * inv_cos2 / 2
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

    def chord_dual(chord, c12, c11, c22):
        one_minus_rho = correlation_from_chord(chord, c12, c11, c22)[1]
        return (*dual(c12, c11, c22, one_minus_rho), CHORD_FROM_KERNELS)

    return Activation(lambda x: jnp.exp(-x * x) * jnp.sin(x), dual, chord_dual)


def exp_normalized(gamma: float = 1.0, shift: float = -1.0, do_clip: bool = False) -> Activation:
    r"""The "Gaussian normalised kernel" (Shankar et al. 2020, "Neural Kernels
    Without Tangents", arXiv:2003.02237, p. 6; neural-tangents' ExpNormalized):
    with :math:`\rho = c_{12} / \sqrt{c_{11} c_{22}}`,

    .. math::

        K = \sqrt{c_{11} c_{22}} \cdot \exp(\gamma(\rho + \mathrm{shift})), \qquad
        K' = \partial K / \partial c_{12} = \gamma \cdot \exp(\gamma(\rho + \mathrm{shift})).

    Not the dual of an elementwise :math:`\varphi` (it is that of
    :math:`h \mapsto s \cdot \psi(h/s)` with :math:`s^2` = mean of :math:`h^2` over the
    channels and :math:`\psi(z) = \exp(\sqrt{\gamma}\, z + \gamma(\mathrm{shift} - 1)/2)`,
    as width :math:`\to \infty`), so ``fn`` is None, as in neural-tangents.
    ``do_clip`` clips :math:`\rho` to :math:`[-1, 1]` (here :math:`\rho` is snapped to
    :math:`\pm 1` within rounding of it, so it is never outside by more than a few ulps
    anyway). A zero-variance input has :math:`\rho = 0`: :math:`K = 0`,
    :math:`K' = \gamma e^{\gamma \cdot \mathrm{shift}}`. ``gamma`` must be
    :math:`\ge 0` (neural-tangents accepts any): for :math:`\gamma < 0` neither
    :math:`K` (:math:`e^{\gamma\rho}` has Taylor coefficients of both signs) nor the NTK
    (:math:`K' < 0`) is positive semi-definite.
    """
    require_real(gamma, "gamma", "exp_normalized", low=0)
    check_real_args("exp_normalized", shift=shift)
    require_bool(do_clip, "do_clip", "exp_normalized")

    def snapped(c12, c11, c22):
        rho, one_minus = correlation(c12, c11, c22)
        # ρ = ±1 where `correlation` finds it so up to rounding: otherwise
        # the ulp by which c12 and c11 of an input with itself drift apart
        # every layer (see `correlation`) is amplified by 1 + γ per layer.
        return jnp.where(one_minus == 0, jnp.sign(rho), rho)

    def dual(c12, c11, c22, rho=None):
        n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
        rho = snapped(c12, c11, c22) if rho is None else rho
        if do_clip:
            rho = jnp.clip(rho, -1.0, 1.0)
        e = jnp.exp(gamma * (rho + shift))
        return (n1 * n2) * e, gamma * e

    def chord_dual(chord, c12, c11, c22):
        # Nearby inputs' ρ = 1 − (1 − ρ) from the chord: no snapping (which
        # merged pairs within ~sqrt(64 eps) rad), and no drift, since an
        # input's chord with itself stays exactly 0. Far ones (ρ < 1/2) keep
        # the snapping, which holds opposite inputs at ρ = −1.
        _, one_minus_rho, p = correlation_from_chord(chord, c12, c11, c22)
        rho = jnp.where((chord <= p) & (p > 0), 1 - one_minus_rho, snapped(c12, c11, c22))
        return (*dual(c12, c11, c22, rho), CHORD_FROM_KERNELS)

    return Activation(None, dual, chord_dual)


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
    r""":math:`\varphi(x) = \max(x, 0)^n` (``(x >= 0)·x^n`` as in neural-tangents): the
    arc-cosine kernel of degree :math:`n` (Cho & Saul 2009, "Kernel methods for deep
    learning"),

    .. math::

        K_\varphi &= (c_{11} c_{22})^{n/2} J_n(\theta) / (2\pi), \\
        J_n &= (-1)^n \sin^{2n+1}\theta \left(\frac{1}{\sin\theta}
        \frac{\partial}{\partial\theta}\right)^n \left(\frac{\pi - \theta}{\sin\theta}\right), \\
        K_{\varphi'} &= n^2 (c_{11} c_{22})^{(n-1)/2} J_{n-1}(\theta) / (2\pi)
        \qquad \text{(Price's theorem)}.

    :math:`J_n` is evaluated in the closed form
    :math:`J_n = P_n(\rho) \sin\theta + Q_n(\rho)(\pi - \theta)` with exact rational
    polynomials :math:`P_n`, :math:`Q_n` (`_rectified_coefficients`; :math:`n = 1`:
    :math:`P = 1`, :math:`Q = \rho`, ReLU; :math:`n = 2`: :math:`P = 3\rho`,
    :math:`Q = 1 + 2\rho^2`), accurate at correlation :math:`\pm 1`, where the
    :math:`\theta`-derivative form is :math:`0 \cdot \infty`. The norms enter as
    :math:`(\sqrt{c_{11}} \sqrt{c_{22}})^n`, so the kernel is finite up to the dtype's
    range and inf beyond it (reported by the layer). At a zero variance, where the
    argument of :math:`\varphi` is exactly 0, :math:`\varphi(0) = 0^n` is used:
    :math:`K_\varphi = 0` for :math:`n \ge 1`, and for :math:`n = 0` (the step
    ``(x >= 0)``) :math:`K_\varphi = 1/2` against a nonzero variance and 1 against
    another zero variance; :math:`K_{\varphi'}` follows with :math:`\varphi'(0) = 1` for
    :math:`n = 1`.
    """
    check_degree(degree, "rectified_monomial")
    degree = int(degree)
    coefs = [
        ([float(v) for v in p], [float(v) for v in q]) for p, q in _rectified_coefficients(degree)
    ]

    def at_zero_variance(zero1, zero2, both, one, value):
        """``value``, but ``both`` where both inputs have zero variance and
        ``one`` where one has (the step's φ(0) = 1)."""
        return jnp.where(zero1 | zero2, jnp.where(zero1 & zero2, both, one), value)

    def arccos_j(k, rho, sine, a, zero1, zero2):
        p, q = coefs[k]
        j = (_horner(p, rho) * sine + _horner(q, rho) * a) / (2 * PI)
        if k:
            return j
        # The step at exactly 0 is 1: E[1·1(v ≥ 0)] = 1/2, E[1·1] = 1.
        return at_zero_variance(zero1, zero2, 1.0, 0.5, j)

    def dual(c12, c11, c22):
        n1, n2 = pairwise(c12, safe_sqrt(c11), safe_sqrt(c22))
        rho, one_minus = correlation(c12, c11, c22)
        sine = pair_sqrt(one_minus)
        a = angle(sine, -rho)  # π − θ
        zero1, zero2 = n1 == 0, n2 == 0
        norms = n1 * n2
        nngp = norms**degree * arccos_j(degree, rho, sine, a, zero1, zero2)
        if degree == 0:
            return nngp, jnp.zeros_like(nngp)
        dot = degree**2 * norms ** (degree - 1) * arccos_j(degree - 1, rho, sine, a, zero1, zero2)
        return nngp, dot

    relu = cast(Callable, abrelu(0.0, 1.0).chord_dual)
    # The step's outputs' chord 2(√(K11 K22) − K12) against a zero-variance
    # input: K = 1 there (φ(0) = 1), 1/2 at the other, K12 = 1/2.
    one_zero_chord = math.sqrt(2) - 1

    def chord_dual(chord, c12, c11, c22):
        # The step's and ReLU's kernels are linear in θ: from the chord
        # (`angle_from_chord`), ReLU's as `abrelu`'s. The step's K_ii = 1/2,
        # so its outputs' chord is 1 − 2K12 = θ/π (the probability that u and
        # v differ in sign).
        v1, v2 = pairwise(c12, c11, c22)
        zero1, zero2 = v1 <= 0, v2 <= 0
        if degree == 1:
            nngp, dot, chord_out = relu(chord, c12, c11, c22)
            return nngp, at_zero_variance(zero1, zero2, 1.0, 0.5, dot), chord_out
        theta = angle_from_chord(chord, c12, c11, c22)[0]
        step = at_zero_variance(zero1, zero2, 1.0, 0.5, (PI - theta) / (2 * PI))
        chord_out = at_zero_variance(zero1, zero2, 0.0, one_zero_chord, theta / PI)
        return step, jnp.zeros_like(step), chord_out

    return Activation(lambda x: (x >= 0) * x**degree, dual, chord_dual if degree <= 1 else None)


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
