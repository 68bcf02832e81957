"""The architectures of the neural-tangents golden fixture, for either library.

``architectures(stax)`` builds every network from the ``stax`` module it is
given — ``neural_tangents.stax`` (in the NT reference environment, by
``scripts/nt_golden.py``) or ``ntk.stax`` (in the tests). The two share layer
names and arguments, so one definition serves both and the fixture cannot
describe a different network from the one the test builds. This module imports
neither library.

Each entry is ``name -> (layer, input_shape)`` with ``input_shape`` the shape of
one input (no batch axis): ``(C,)`` for vectors, ``(W, C)`` / ``(H, W, C)`` for
1-D / 2-D images, channels last. `build` makes a single architecture (so one
missing layer type fails only the architectures that use it) and `names` lists
them without building anything. `draw_inputs` draws ``x1`` of shape
``(N1, *input_shape)`` and ``x2`` of shape ``(N2, *input_shape)`` from a seed
that depends only on the name. Every architecture is evaluated with that
``x2``; those in `X2_NONE` also with ``x2=None`` (the kernel of ``x1`` with
itself: the diagonal sits at correlation 1, where arc-cosine kernels are
delicate, and train-mode Dropout adds its noise only there). Only a subset,
because every call compiles a kernel and the test must stay fast.

Conventions chosen so that both libraries' kernels are well defined and small:

* every network ends in a vector output (Flatten, global pooling or Dense on
  vectors), so the output layout ``(N1, N2)`` does not depend on how a library
  stores spatial covariances;
* activations follow an affine layer (Dense/Conv), as NT requires — also after
  ``FanInConcat``, whose output NT treats as non-Gaussian; Hermite
  follows ``LayerNorm`` over channels because NT's Hermite kernel is
  ``c12^n``, exact only for unit-variance inputs;
* weight/bias standard deviations are non-default, inputs are few and small.
"""

from __future__ import annotations

import zlib

import jax.numpy as jnp
import jax.scipy.special
import numpy as np

N1 = 4  # rows of x1
N2 = 3  # rows of x2 (differs from N1, so no library can mistake x2 for x1)

VEC = (5,)
IMG1D = (6, 3)
IMG2D = (5, 5, 2)
IMG2D_LARGE = (6, 6, 2)


X2_NONE = frozenset(
    {
        "relu",
        "sign",
        "gelu",
        "erf_abc",
        "monomial_3",
        "hermite_3_layernorm",
        "numerical_tanh",
        "fanin_prod",
        "dropout_test",
        "dropout_train",
        "layernorm_vector",
        "conv2d_valid_flatten",
        "avgpool2d_same_normalize_edges",
        "layernorm_spatial_channels_gap",
        "dropout_train_image",
        "sign_then_pool",
    }
)


def draw_inputs(name: str, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``x1 (N1, *input_shape)``, ``x2 (N2, *input_shape)``.

    The seed is the CRC32 of the name, so inputs do not change when
    architectures are added or reordered.
    """
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x1 = rng.standard_normal((N1,) + tuple(input_shape))
    x2 = rng.standard_normal((N2,) + tuple(input_shape))
    return x1, x2


# --------------------------------------------- user-supplied activations


def erf_nngp(c12, c11, c22):
    """E[erf(u) erf(v)] (Williams 1997), for `Elementwise` with autodiff NTK."""
    return 2 / jnp.pi * jnp.arcsin(2 * c12 / jnp.sqrt((1 + 2 * c11) * (1 + 2 * c22)))


def sin_nngp(c12, c11, c22):
    """E[sin(u) sin(v)] = exp(-(c11 + c22)/2) sinh(c12)."""
    return jnp.exp(-(c11 + c22) / 2) * jnp.sinh(c12)


def sin_d_nngp(c12, c11, c22):
    """E[cos(u) cos(v)] = exp(-(c11 + c22)/2) cosh(c12), the derivative kernel."""
    return jnp.exp(-(c11 + c22) / 2) * jnp.cosh(c12)


def _softplus(x):
    return jnp.logaddexp(x, 0.0)


def _sigmoid(x):
    return 1 / (1 + jnp.exp(-x))


# ------------------------------------------------------ the architectures


def _mlp(stax, activation, W_std=1.4, b_std=0.3):
    """Dense -> activation -> Dense on vectors."""
    return stax.serial(
        stax.Dense(8, W_std=W_std, b_std=b_std), activation, stax.Dense(3, W_std=0.9, b_std=0.2)
    )


def _vector(stax) -> dict:
    s = stax
    return {
        # affine layers
        "dense_ntk_bias": lambda: s.Dense(7, W_std=1.3, b_std=0.4),
        "dense_ntk_nobias_deep": lambda: s.serial(
            s.Dense(8, W_std=1.7), s.Relu(), s.Dense(6, W_std=0.8), s.Erf(), s.Dense(3, W_std=1.2)
        ),
        "dense_standard_bias": lambda: s.serial(
            s.Dense(6, W_std=1.2, b_std=0.3, parameterization="standard"),
            s.Relu(),
            s.Dense(4, W_std=0.8, b_std=0.2, parameterization="standard"),
        ),
        "dense_standard_nobias_s": lambda: s.serial(
            s.Dense(6, W_std=1.1, parameterization="standard", s=(1, 2)),
            s.Erf(),
            s.Dense(4, W_std=1.4, parameterization="standard", s=(2, 1)),
        ),
        "identity": lambda: s.serial(s.Identity(), s.Dense(4, W_std=1.1, b_std=0.5), s.Identity()),
        # activations
        "relu": lambda: _mlp(s, s.Relu()),
        "leaky_relu": lambda: _mlp(s, s.LeakyRelu(0.15)),
        "abrelu": lambda: _mlp(s, s.ABRelu(-0.4, 1.3)),
        "abs": lambda: _mlp(s, s.Abs()),
        "erf_abc": lambda: _mlp(s, s.Erf(a=1.3, b=0.7, c=0.2)),
        "sigmoid_like": lambda: _mlp(s, s.Sigmoid_like()),
        "gelu": lambda: _mlp(s, s.Gelu()),
        "sin_abc": lambda: _mlp(s, s.Sin(a=1.2, b=0.8, c=0.3)),
        "cos_abc": lambda: _mlp(s, s.Cos(a=0.9, b=1.1, c=-0.2)),
        "rbf": lambda: _mlp(s, s.Rbf(gamma=0.6)),
        "sign": lambda: _mlp(s, s.Sign()),
        "exp": lambda: _mlp(s, s.Exp(a=0.8, b=0.5), W_std=0.9, b_std=0.2),
        "gaussian": lambda: _mlp(s, s.Gaussian(a=1.1, b=-0.6)),
        "monomial_3": lambda: _mlp(s, s.Monomial(3), W_std=0.9, b_std=0.2),
        "monomial_5": lambda: _mlp(s, s.Monomial(5), W_std=0.8, b_std=0.1),
        "polynomial": lambda: _mlp(s, s.Polynomial([0.3, -0.5, 0.2, 0.1])),
        "hermite_3_layernorm": lambda: s.serial(
            s.Dense(8, W_std=1.3, b_std=0.4),
            s.LayerNorm(axis=-1),
            s.Hermite(3),
            s.Dense(3, W_std=1.1, b_std=0.2),
        ),
        "elementwise_erf_autodiff": lambda: _mlp(s, s.Elementwise(jax.scipy.special.erf, erf_nngp)),
        "elementwise_sin_d_nngp": lambda: _mlp(s, s.Elementwise(jnp.sin, sin_nngp, sin_d_nngp)),
        "numerical_tanh": lambda: _mlp(s, _numerical(s, jnp.tanh)),
        "numerical_softplus_df": lambda: _mlp(s, _numerical(s, _softplus, df=_sigmoid)),
        # combinators
        "repeat_relu": lambda: s.serial(
            s.Dense(8, W_std=1.4, b_std=0.1),
            s.repeat(s.serial(s.Relu(), s.Dense(8, W_std=1.4, b_std=0.1)), 3),
        ),
        "residual_fanin_sum": lambda: s.serial(
            s.Dense(8, W_std=1.2, b_std=0.2),
            s.FanOut(2),
            s.parallel(s.serial(s.Relu(), s.Dense(8, W_std=1.5, b_std=0.1)), s.Identity()),
            s.FanInSum(),
            s.Relu(),
            s.Dense(3, W_std=0.9),
        ),
        "fanin_prod": lambda: s.serial(
            s.Dense(8, W_std=1.1, b_std=0.3),
            s.FanOut(3),
            s.parallel(
                s.serial(s.Erf(), s.Dense(8, W_std=1.3)),
                s.serial(s.Relu(), s.Dense(8, W_std=0.9, b_std=0.2)),
                s.Identity(),
            ),
            s.FanInProd(),
            s.Dense(3, W_std=1.2, b_std=0.1),
        ),
        "fanin_concat": lambda: s.serial(
            s.Dense(8, W_std=1.1, b_std=0.3),
            s.FanOut(2),
            s.parallel(
                s.serial(s.Relu(), s.Dense(4, W_std=1.3)),
                s.serial(s.Gelu(), s.Dense(9, W_std=0.8, b_std=0.4)),
            ),
            s.FanInConcat(),
            s.Dense(6, W_std=1.4, b_std=0.1),
            s.Relu(),
            s.Dense(3, W_std=1.2),
        ),
        # normalisation and dropout
        "layernorm_vector": lambda: s.serial(
            s.Dense(8, W_std=1.6, b_std=0.5),
            s.Relu(),
            s.Dense(8, W_std=1.2),
            s.LayerNorm(axis=-1),
            s.Relu(),
            s.Dense(3, W_std=1.1),
        ),
        "dropout_test": lambda: s.serial(
            s.Dense(8, W_std=1.3, b_std=0.2),
            s.Relu(),
            s.Dropout(0.7, mode="test"),
            s.Dense(3, W_std=1.1),
        ),
        "dropout_train": lambda: s.serial(
            s.Dense(8, W_std=1.3, b_std=0.2),
            s.Relu(),
            s.Dropout(0.6, mode="train"),
            s.Dense(8, W_std=1.1, b_std=0.1),
            s.Erf(),
            s.Dense(3, W_std=1.2),
        ),
    }


def _conv(stax, out, filt, **kw):
    kw.setdefault("W_std", 1.3)
    kw.setdefault("b_std", 0.2)
    return stax.Conv(out, filt, **kw)


def _images_1d(stax) -> dict:
    s = stax
    return {
        "conv1d_valid_flatten": lambda: s.serial(
            _conv(s, 4, (3,), padding="VALID"), s.Relu(), s.Flatten(), s.Dense(3, W_std=1.1)
        ),
        "conv1d_same_stride_circular": lambda: s.serial(
            _conv(s, 4, (3,), strides=(2,), padding="SAME"),
            s.Erf(),
            _conv(s, 4, (2,), padding="CIRCULAR", W_std=0.9),
            s.Flatten(),
            s.Dense(3, W_std=1.2, b_std=0.1),
        ),
        "conv1d_circular_stride_gap": lambda: s.serial(
            _conv(s, 4, (4,), strides=(2,), padding="CIRCULAR"),
            s.Relu(),
            s.GlobalAvgPool(),
            s.Dense(3, W_std=1.1),
        ),
        "avgpool1d_same_normalize_edges": lambda: s.serial(
            _conv(s, 4, (2,), padding="SAME"),
            s.Abs(),
            s.AvgPool((3,), padding="SAME", normalize_edges=True),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
    }


def _images_2d(stax) -> dict:
    s = stax
    return {
        "conv2d_valid_flatten": lambda: s.serial(
            _conv(s, 4, (3, 3), padding="VALID", W_std=1.5, b_std=0.1),
            s.Relu(),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "conv2d_same_strides_nobias": lambda: s.serial(
            _conv(s, 4, (3, 2), strides=(2, 1), padding="SAME", b_std=None),
            s.Relu(),
            _conv(s, 3, (2, 2), padding="VALID", W_std=0.9),
            s.Flatten(),
            s.Dense(3, W_std=1.2, b_std=0.3),
        ),
        "conv2d_circular_strides_gelu": lambda: s.serial(
            _conv(s, 4, (3, 3), strides=(2, 1), padding="CIRCULAR"),
            s.Gelu(),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "conv2d_standard": lambda: s.serial(
            _conv(s, 4, (2, 3), padding="SAME", parameterization="standard"),
            s.Relu(),
            _conv(
                s, 3, (3, 3), padding="VALID", W_std=0.8, b_std=None, parameterization="standard"
            ),
            s.Flatten(),
            s.Dense(3, W_std=1.1, parameterization="standard"),
        ),
        "conv2d_dense_on_channels": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="VALID"),
            s.Relu(),
            s.Dense(5, W_std=1.2, b_std=0.3),
            s.Erf(),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "avgpool2d_valid_strided": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            s.Relu(),
            s.AvgPool((2, 2), strides=(2, 2)),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "avgpool2d_same_normalize_edges": lambda: s.serial(
            _conv(s, 4, (3, 3), padding="SAME"),
            s.Relu(),
            s.AvgPool((3, 3), padding="SAME", normalize_edges=True),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "avgpool2d_same_window_normalised": lambda: s.serial(
            _conv(s, 4, (3, 3), padding="SAME"),
            s.Relu(),
            s.AvgPool((3, 2), strides=(2, 1), padding="SAME", normalize_edges=False),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "avgpool2d_circular": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="CIRCULAR"),
            s.Erf(),
            s.AvgPool((2, 3), strides=(1, 2), padding="CIRCULAR"),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "sumpool2d_valid": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="VALID"),
            s.Relu(),
            s.SumPool((2, 2), strides=(1, 1)),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "sumpool2d_same_strided": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            s.LeakyRelu(0.2),
            s.SumPool((3, 3), strides=(2, 2), padding="SAME"),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "global_avg_pool": lambda: s.serial(
            _conv(s, 4, (3, 3), padding="SAME"),
            s.Relu(),
            _conv(s, 4, (2, 2), padding="VALID", W_std=1.1),
            s.Relu(),
            s.GlobalAvgPool(),
            s.Dense(3, W_std=1.2, b_std=0.1),
        ),
        "global_sum_pool": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="VALID"), s.Erf(), s.GlobalSumPool(), s.Dense(3, W_std=1.2)
        ),
        "layernorm_channels_image": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="VALID"),
            s.LayerNorm(axis=-1),
            s.Relu(),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "layernorm_spatial_channels_gap": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            s.Relu(),
            _conv(s, 4, (2, 2), padding="VALID", W_std=1.1),
            s.LayerNorm(axis=(1, 2, 3)),
            s.Relu(),
            s.GlobalAvgPool(),
            s.Dense(3, W_std=1.1),
        ),
        "hermite_2_layernorm_image": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="VALID"),
            s.LayerNorm(axis=-1),
            s.Hermite(2),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "resnet_block_image": lambda: s.serial(
            _conv(s, 4, (3, 3), padding="SAME"),
            s.FanOut(2),
            s.parallel(
                s.serial(s.Relu(), _conv(s, 4, (3, 3), padding="SAME", W_std=1.5, b_std=0.1)),
                s.Identity(),
            ),
            s.FanInSum(),
            s.Relu(),
            s.AvgPool((2, 2), strides=(2, 2)),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "fanin_concat_image": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            s.FanOut(2),
            s.parallel(
                s.serial(s.Relu(), _conv(s, 3, (2, 2), padding="SAME")),
                s.serial(s.Erf(), _conv(s, 5, (3, 3), padding="SAME", W_std=0.9)),
            ),
            s.FanInConcat(),
            _conv(s, 4, (2, 2), padding="VALID"),
            s.Relu(),
            s.GlobalAvgPool(),
            s.Dense(3),
        ),
        "dropout_train_image": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="VALID"),
            s.Relu(),
            s.Dropout(0.8, mode="train"),
            _conv(s, 4, (2, 2), padding="VALID"),
            s.Relu(),
            s.GlobalAvgPool(),
            s.Dense(3, W_std=1.1),
        ),
        "sign_then_pool": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="VALID"),
            s.Sign(),
            s.AvgPool((2, 2)),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "monomial_2_then_pool": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME", W_std=0.9),
            s.Monomial(2),
            s.AvgPool((2, 2), strides=(1, 1)),
            s.Dense(4, W_std=1.1),
            s.Relu(),
            s.GlobalAvgPool(),
            s.Dense(3),
        ),
        "numerical_tanh_pool": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            _numerical(s, jnp.tanh),
            s.AvgPool((2, 2)),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
    }


# Input shape of every architecture: vectors, 1-D images, 2-D images (the
# strided ones a little larger so that several positions remain).
_LARGE_2D = {
    "avgpool2d_valid_strided",
    "resnet_block_image",
    "sumpool2d_same_strided",
    "conv2d_circular_strides_gelu",
}


def _builders(stax) -> dict:
    """``name -> (thunk building the layer, input_shape)``; builds nothing."""
    out = {}
    for name, thunk in _vector(stax).items():
        out[name] = (thunk, VEC)
    for name, thunk in _images_1d(stax).items():
        out[name] = (thunk, IMG1D)
    for name, thunk in _images_2d(stax).items():
        out[name] = (thunk, IMG2D_LARGE if name in _LARGE_2D else IMG2D)
    return out


def names() -> list[str]:
    """All architecture names, without building any layer."""
    return list(_builders(None))


def input_shape(name: str) -> tuple:
    """Shape of one input of architecture ``name`` (no batch axis)."""
    return _builders(None)[name][1]


def _numerical(s, fn, **kwargs):
    """``ElementwiseNumerical(fn)``: NT at a converged degree, ntk at its default.

    The two libraries' ``deg`` count nodes of different rules, so no single
    value means the same accuracy in both. NT's Gauss–Hermite rule at
    ``deg=200`` agrees with ``deg=800`` to ~1e-7 relative on these networks,
    so the fixture holds the true kernel to well within `RTOL`, and ntk's
    default rule must reach it.
    """
    if s.__name__.startswith("neural_tangents"):
        return s.ElementwiseNumerical(fn, deg=200, **kwargs)
    return s.ElementwiseNumerical(fn, **kwargs)


def build(stax, name: str) -> tuple:
    """``(layer, input_shape)`` of one architecture, built from ``stax``."""
    thunk, input_shape = _builders(stax)[name]
    return thunk(), input_shape


def architectures(stax) -> dict:
    """``name -> (layer, input_shape)`` for every golden architecture.

    Args:
      stax: ``neural_tangents.stax`` or ``ntk.stax``.
    """
    return {name: (thunk(), shape) for name, (thunk, shape) in _builders(stax).items()}
