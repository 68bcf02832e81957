"""Golden architectures of the ``activations`` family: `Gabor`, `ExpNormalized`,
`RectifiedMonomial`.

Same interface as ``architectures.py`` (read its docstring): ``architectures(stax)``
builds every network from ``neural_tangents.stax`` or ``ntk.stax``, ``names``,
``input_shape``, ``build``, ``draw_inputs`` and ``X2_NONE``. Regenerate the
fixture with ``scripts/nt_golden.py --family activations``.

Coverage: `RectifiedMonomial` of degrees 0-3 after a Dense layer and degree 2
after a convolution (through a flatten); `Gabor` at small and large pre-activation variances
(W_std 0.6 and 3), stacked, and after a convolution pooled globally;
`ExpNormalized` with its defaults, with ``gamma=2.5, shift=-0.3,
do_clip=True``, with ``gamma=0.4, shift=0.5``, and after a convolution (full
spatial layout, where ρ runs over pairs of positions).

With ``x2=None``: every Gabor and ExpNormalized architecture. Not
`RectifiedMonomial`: NT 0.6.5 evaluates J_n(θ) through (π − θ)/sin θ, which is
NaN at θ = 0, i.e. on every variance: the kernel of ``x1`` with itself is NaN
(so is any x2 with a row equal to one of x1), and so are its ``cov1``/``cov2``
whenever it computes them pairwise, which makes every layer after it that
reads the variances NaN (a second activation, e.g.
Dense -> RectifiedMonomial -> Dense -> RectifiedMonomial). Hence only networks
with one RectifiedMonomial whose variances are not read again are here. Ours
is finite there; ``tests/test_stax_elementwise.py`` checks the diagonal
against the closed form (2n-1)!!/2·q^n and a stacked network against Monte
Carlo.
"""

from __future__ import annotations

import numpy as np
from _family import accessors, normal_inputs

N1 = 4
N2 = 3

VEC = (5,)
IMG2D = (5, 5, 2)

X2_NONE = frozenset(
    {
        "gabor_small_variance",
        "gabor_large_variance",
        "gabor_stacked",
        "gabor_conv_gap",
        "exp_normalized_default",
        "exp_normalized_gamma_shift_clip",
        "exp_normalized_positive_shift",
        "exp_normalized_conv_flatten",
    }
)


def draw_inputs(name: str, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``x1 (N1, *input_shape)``, ``x2 (N2, *input_shape)``."""
    return normal_inputs(name, input_shape, N1, N2)


def _vector(stax) -> dict:
    s = stax
    out = {}
    for n in range(4):
        out[f"rectified_monomial_{n}"] = lambda n=n: s.serial(
            s.Dense(6, W_std=1.3, b_std=0.2),
            s.RectifiedMonomial(n),
            s.Dense(3, W_std=1.1, b_std=0.1),
        )
    out.update(
        {
            "gabor_small_variance": lambda: s.serial(
                s.Dense(6, W_std=0.6, b_std=0.1), s.Gabor(), s.Dense(3, W_std=1.2, b_std=0.2)
            ),
            "gabor_large_variance": lambda: s.serial(
                s.Dense(6, W_std=3.0, b_std=0.5), s.Gabor(), s.Dense(3, W_std=1.2)
            ),
            "gabor_stacked": lambda: s.serial(
                s.Dense(6, W_std=1.5, b_std=0.2),
                s.Gabor(),
                s.Dense(6, W_std=2.0, b_std=0.1),
                s.Gabor(),
                s.Dense(3, W_std=1.1),
            ),
            "exp_normalized_default": lambda: s.serial(
                s.Dense(6, W_std=1.3, b_std=0.2),
                s.ExpNormalized(),
                s.Dense(3, W_std=1.1, b_std=0.1),
            ),
            "exp_normalized_gamma_shift_clip": lambda: s.serial(
                s.Dense(6, W_std=1.2, b_std=0.4),
                s.ExpNormalized(gamma=2.5, shift=-0.3, do_clip=True),
                s.Dense(6, W_std=0.9, b_std=0.1),
                s.Relu(),
                s.Dense(3, W_std=1.1),
            ),
            "exp_normalized_positive_shift": lambda: s.serial(
                s.Dense(6, W_std=0.7, b_std=0.05),
                s.ExpNormalized(gamma=0.4, shift=0.5),
                s.Dense(3, W_std=1.4),
            ),
        }
    )
    return out


def _images_2d(stax) -> dict:
    s = stax
    return {
        "rectified_monomial_2_conv_flatten": lambda: s.serial(
            s.Conv(3, (2, 2), W_std=1.2, b_std=0.2),
            s.RectifiedMonomial(2),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "gabor_conv_gap": lambda: s.serial(
            s.Conv(3, (2, 2), padding="SAME", W_std=1.8, b_std=0.1),
            s.Gabor(),
            s.GlobalAvgPool(),
            s.Dense(3, W_std=1.2),
        ),
        "exp_normalized_conv_flatten": lambda: s.serial(
            s.Conv(3, (2, 2), W_std=1.4, b_std=0.3),
            s.ExpNormalized(gamma=1.5),
            s.Conv(2, (2, 2), W_std=1.1),
            s.Relu(),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
    }


def _builders(stax) -> dict:
    """``name -> (thunk building the layer, input_shape)``; builds nothing."""
    out = {}
    for group, shape in ((_vector, VEC), (_images_2d, IMG2D)):
        for name, thunk in group(stax).items():
            out[name] = (thunk, shape)
    return out


names, input_shape, build, architectures, options = accessors(_builders)
