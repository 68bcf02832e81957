r"""The dual kernel of any activation by numerical integration.

``numerical(fn)`` returns the `Activation` record (see `ntk.stax.duals`) whose
dual :math:`(K_\varphi, K_{\varphi'})
= (\mathbb{E}[\varphi(u)\varphi(v)], \mathbb{E}[\varphi'(u)\varphi'(v)])` is computed
by a graded
quadrature that is accurate at any variance and exactly symmetric in the two
inputs; `ntk.stax.ElementwiseNumerical` is the layer around it.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax._internal import PI, correlation, inv, pair_sqrt, safe_sqrt
from ntk.stax.duals import Activation


# Graded quadrature of `numerical`: offsets y from a centre in (y_min, y_max),
# y = κ·log(1 + e^t) at equispaced t (geometric spacing below κ, uniform
# above). The inner rule is centred at most _QUAD_CLIP from 0 and reaches
# y_max, 9 standard deviations past 0 on the far side; the outer one is
# centred at 0 and cut at _QUAD_OUTER_MAX (N(10) ~ 1e-22). y_min = 1e-8
# resolves features of φ at variances up to ~1e14: the first-layer term
# K_φ'·Θ of the NTK grows like sqrt(variance), so K_φ' must stay accurate
# where it is small. κ and the default degree were tuned on tanh, softplus
# and erf (see `numerical`).
_QUAD_Y_MIN, _QUAD_Y_MAX, _QUAD_KAPPA = 1e-8, 15.0, 3.0
_QUAD_CLIP, _QUAD_OUTER_MAX = 6.0, 10.0
_QUAD_CHUNK = 8  # inner nodes per vectorised step
NUMERICAL_DEG = 64


def _graded_rule(deg: int):
    """Offsets and weights of ``∫ f(z) dz ≈ Σ_k w_k f(z0 + y_k)`` over ℝ.

    On each half-line ``∫_0^∞ f(z0 ± y) dy``: the trapezoid rule in t for
    ``y = κ log(1 + e^t)`` at ``deg`` equispaced nodes (step h) from y_min to
    y_max; its terms below the first node (``t → −∞``, where ``y ≈ κe^t``)
    are summed in closed form as a centre weight ``y_min·h/(e^h − 1)`` on
    ``f(z0)``. Returns ``(y, w)`` of length ``2·deg + 1``, symmetric about 0.
    """
    k = _QUAD_KAPPA
    t0, t1 = math.log(math.expm1(_QUAD_Y_MIN / k)), math.log(math.expm1(_QUAD_Y_MAX / k))
    t = np.linspace(t0, t1, deg)
    h = (t1 - t0) / max(deg - 1, 1)
    y = k * np.log1p(np.exp(t))
    w = h * k / (1 + np.exp(-t))
    centre = 2 * y[0] * h / math.expm1(h)
    return (np.concatenate([-y[::-1], [0.0], y]), np.concatenate([w[::-1], [centre], w]))


def _normal_pdf(z):
    return np.exp(-z * z / 2) / math.sqrt(2 * PI)


def numerical(fn: Callable, deg: int = NUMERICAL_DEG, df: Optional[Callable] = None) -> Activation:
    r"""The dual of any :math:`\varphi` by a graded quadrature that is accurate at any
    variance.

    Writing :math:`u = \sqrt{c_a} \cdot z_1` and
    :math:`v = \sqrt{c_b} \cdot (\rho z_1 + r z_2)` with
    :math:`z_1, z_2 \sim \mathcal{N}(0, 1)` independent, :math:`c_a \ge c_b` the two
    variances (the larger one outside, which makes the result exactly symmetric in
    the two inputs), :math:`\rho` their correlation and :math:`r = \sqrt{1 - \rho^2}`,

    .. math::

        \mathbb{E}[\varphi(u) \varphi(v)]
        = \mathbb{E}_{z_1}\big[ \varphi(u) \cdot \mathbb{E}_{z_2}[\varphi(v)] \big].

    Each integral is split where the argument of :math:`\varphi` is 0 (:math:`z_1 = 0`;
    :math:`z_2 = -\rho z_1/r`, clipped to :math:`\pm 6`), and each half-line is
    integrated by the trapezoid rule in :math:`t` for :math:`y = 3 \log(1 + e^t)`:
    nodes graded geometrically from 1e-8 to ~3 standard deviations, then uniform to
    15 (`_graded_rule`). A kink or jump of :math:`\varphi` at 0 (ReLU, sign)
    therefore sits at a node, and a feature of :math:`\varphi` near 0 is resolved on
    every scale down to 1e-8 standard deviations — e.g. the step that tanh becomes
    at large variance. The weights are normalised, so constants are exact. The same
    rule with :math:`\varphi'` (``df``, default: the derivative of ``fn`` by
    forward-mode autodiff, which assumes ``fn`` acts elementwise) gives
    :math:`K_{\varphi'}`.

    Accuracy (``deg`` nodes per half-line; :math:`(2 \cdot \mathrm{deg} + 1)^2`
    evaluations of :math:`\varphi` and of :math:`\varphi'` per kernel entry), relative
    to :math:`\sqrt{K(x, x)\, K(x', x')}`, worst case over variances 1e-4 … 1e12 and
    correlations in :math:`[-1, 1]` against the closed forms (erf) and a finer rule
    (tanh, softplus):

    ======  ======================  ==================================
    deg     tanh, sigmoid,          erf, GELU (derivatives decaying
            softplus, ReLU          like :math:`e^{-x^2}`: slower in this rule)
    ======  ======================  ==================================
    25      2e-2                    2e-2
    48      2e-4 (2e-5 to 1e9)      3e-4
    64      1e-6 (5e-8 to 1e9)      1e-5   (the default)
    ======  ======================  ==================================

    Features narrower than 1e-8 standard deviations (variances beyond ~1e14
    for :math:`\varphi` that vary on the unit scale) are not resolved. Not for
    :math:`\varphi` that oscillate on the scale of the standard deviation (sin at
    variance :math:`\gg 1`): no fixed rule resolves those.
    """
    offsets, weights = _graded_rule(deg)
    outer = np.abs(offsets) <= _QUAD_OUTER_MAX
    outer_z = offsets[outer]
    outer_w = weights[outer] * _normal_pdf(outer_z)
    outer_w = outer_w / outer_w.sum()
    # Zero-weight padding to whole chunks (offset 0: a finite argument).
    pad = (-len(offsets)) % _QUAD_CHUNK
    inner_y = np.concatenate([offsets, np.zeros(pad)]).reshape(-1, _QUAD_CHUNK)
    inner_w = np.concatenate([weights, np.zeros(pad)]).reshape(-1, _QUAD_CHUNK)

    def values(x):
        """(φ(x), φ'(x)); one forward-mode pass when φ' is not given."""
        if df is None:
            return jax.jvp(fn, (x,), (jnp.ones_like(x),))
        return fn(x), df(x)

    def dual(c12, c11, c22):
        dtype = jnp.result_type(c12, c11, c22)
        shape = jnp.broadcast_shapes(jnp.shape(c12), jnp.shape(c11), jnp.shape(c22))
        ca, cb = jnp.maximum(c11, c22), jnp.minimum(c11, c22)
        rho, one_minus = correlation(c12, c11, c22)
        sa, sb, rho, r = (
            jnp.broadcast_to(v, shape)
            for v in (safe_sqrt(ca), safe_sqrt(cb), rho, pair_sqrt(one_minus))
        )
        inv_r = inv(r)
        zero = jnp.zeros(shape, dtype)

        def outer_step(acc, node):
            z, wz = node
            # Inner rule centred where v's argument vanishes (relative to that
            # centre the argument is exactly sqrt(cb)·r·y), or at ±6.
            zs = -rho * z * inv_r
            z0 = jnp.clip(zs, -_QUAD_CLIP, _QUAD_CLIP)
            base = jnp.where((r > 0) & (z0 == zs), 0.0, rho * z + r * z0)

            def inner_step(sums, chunk):
                y, w = (jax.lax.broadcast_to_rank(a, len(shape) + 1) for a in chunk)
                zi = z0[..., None] + y
                wi = w * jnp.exp(-zi * zi / 2)
                f, d = values(sb[..., None] * (base[..., None] + r[..., None] * y))
                return tuple(
                    s + jnp.sum(v, axis=-1) for s, v in zip(sums, (wi, wi * f, wi * d))
                ), None

            (norm, inner_k, inner_d), _ = jax.lax.scan(
                inner_step,
                (zero, zero, zero),
                (jnp.asarray(inner_y, dtype), jnp.asarray(inner_w, dtype)),
            )
            f, d = values(sa * z)
            wz = wz / norm
            return (acc[0] + wz * f * inner_k, acc[1] + wz * d * inner_d), None

        nodes = (jnp.asarray(outer_z, dtype), jnp.asarray(outer_w, dtype))
        (nngp, dot), _ = jax.lax.scan(outer_step, (zero, zero), nodes)
        return nngp, dot

    return Activation(fn, dual)
