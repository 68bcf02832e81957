"""Golden architectures of the ``masking`` family: masked (padded) inputs.

Same interface as ``architectures.py`` (read its docstring): ``architectures(stax)``
builds every network from ``neural_tangents.stax`` or ``ntk.stax``, ``names``,
``input_shape``, ``build``, ``draw_inputs``, ``X2_NONE``, plus
``kernel_kwargs(name, x1, x2)``: the ``mask_constant`` that marks padding.
Regenerate the fixture with ``scripts/nt_golden.py --family masking``.

Inputs are standard normal with padding set to ``MASK``: sequences of
different lengths (every channel of the positions past each length),
images padded along their width, and, in the ``partial_*`` architectures,
single masked entries (one channel of a position), which only the raw-input
layers see as such (a Dense collapses the channel axis: a position is
padding when all its channels are). One architecture pads with NaN.

Coverage: masked inputs through Dense (both parameterizations), Conv (SAME,
VALID with strides, CIRCULAR; 1-D and 2-D), ConvTranspose, ConvLocal,
AvgPool/SumPool, GlobalAvgPool (the mean over unmasked positions),
GlobalSumPool, Flatten (also of the raw input), LayerNorm over channels and
over positions and channels, ImageResize (linear up, nearest down),
DotGeneral contracting the positions, Index, FanInConcat (also with a
raw-input branch), FanInSum, FanInProd and repeat. Activations
here are ones with φ(0) = 0 (Relu, Erf with c = 0); both libraries remask
after every activation, and the masked draws of the ``random`` family cover
the others (φ(0) ≠ 0: Cos, Exp, Gaussian, Erf with c ≠ 0, ...).

Not here: masked 2-D images through a Conv and then ImageResize, where
neural-tangents 0.6.5 fails (its mask is not transposed with the kernel's
reversed spatial axes: "Incompatible shapes for broadcasting"); and a channel-wise mask (raw input with partially masked positions)
straight into a layer that remasks or pools (Conv, AvgPool, GlobalAvgPool,
LayerNorm): neural-tangents raises NotImplementedError there, ``ntk``
collapses the channel axis first (tested in ``tests/test_stax_masking.py``).
"""

from __future__ import annotations

import numpy as np
from _family import accessors, normal_inputs

N1 = 4
N2 = 3

SEQ = (7, 3)  # 7 positions, 3 channels
IMG = (4, 5, 2)  # 4 x 5 images, 2 channels, padded along the width

MASK = -100.0

# Unpadded lengths (sequences) / widths (images) of the rows of x1 and x2.
_LEN_1 = (7, 5, 2, 4)
_LEN_2 = (3, 7, 6)
_WIDTH_1 = (5, 3, 4, 2)
_WIDTH_2 = (4, 5, 1)

X2_NONE = frozenset(
    {
        "seq_dense_relu_gap",
        "seq_conv_same_gap",
        "seq_layernorm_positions",
        "seq_fanin_concat",
        "img_conv2d_same_gap",
        "seq_nan_mask_flatten",
    }
)


def _builders(stax) -> dict:
    """``name -> (thunk, input_shape, options)``; builds nothing."""
    s = stax

    def head(layers):
        return lambda: s.serial(*layers(), s.Dense(2, W_std=0.9, b_std=0.2))

    return {
        # dense layers on sequences
        "seq_dense_relu_gap": (
            head(
                lambda: (
                    s.Dense(6, W_std=1.3, b_std=0.3),
                    s.Relu(),
                    s.Dense(5, W_std=1.1, b_std=0.2),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_dense_standard_flatten": (
            head(
                lambda: (
                    s.Dense(6, W_std=1.2, b_std=0.4, parameterization="standard"),
                    s.Relu(),
                    s.Flatten(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_erf_gsp": (
            head(
                lambda: (
                    s.Dense(6, W_std=1.3, b_std=0.3),
                    s.Erf(),
                    s.Dense(4, b_std=0.1),
                    s.Relu(),
                    s.GlobalSumPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_raw_flatten": (head(lambda: (s.Flatten(),)), SEQ, {}),
        # convolutions and pooling on sequences
        "seq_conv_same_gap": (
            head(
                lambda: (
                    s.Conv(5, (3,), padding="SAME", W_std=1.3, b_std=0.2),
                    s.Relu(),
                    s.Conv(4, (2,), padding="SAME", b_std=0.1),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_conv_valid_strided_flatten": (
            head(
                lambda: (s.Conv(5, (3,), strides=(2,), W_std=1.2, b_std=0.3), s.Relu(), s.Flatten())
            ),
            SEQ,
            {},
        ),
        "seq_conv_circular_gsp": (
            head(
                lambda: (
                    s.Conv(5, (3,), padding="CIRCULAR", b_std=0.2),
                    s.Relu(),
                    s.GlobalSumPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_avgpool_same_strided": (
            head(
                lambda: (
                    s.Dense(5, W_std=1.2, b_std=0.3),
                    s.Relu(),
                    s.AvgPool((2,), (2,), padding="SAME"),
                    s.Dense(4, b_std=0.1),
                    s.Relu(),
                    s.Flatten(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_sumpool_valid": (
            head(lambda: (s.Dense(5, b_std=0.3), s.Relu(), s.SumPool((3,)), s.Flatten())),
            SEQ,
            {},
        ),
        # normalisation
        "seq_layernorm_channels": (
            head(
                lambda: (
                    s.Dense(6, W_std=1.4, b_std=0.5),
                    s.LayerNorm(axis=-1),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_layernorm_positions": (
            head(
                lambda: (
                    s.Dense(6, W_std=1.4, b_std=0.5),
                    s.LayerNorm(axis=(1, 2)),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        # branches
        "seq_fanin_concat": (
            head(
                lambda: (
                    s.FanOut(2),
                    s.parallel(
                        s.Dense(4, W_std=1.2, b_std=0.2),
                        s.serial(s.Dense(3, b_std=0.3), s.Relu(), s.Dense(5)),
                    ),
                    s.FanInConcat(),
                    s.Dense(4, b_std=0.1),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_fanin_concat_raw_branch": (
            head(
                lambda: (
                    s.FanOut(2),
                    s.parallel(s.Identity(), s.Dense(4, b_std=0.3)),
                    s.FanInConcat(),
                    s.Dense(4, W_std=1.2),
                    s.Relu(),
                    s.Flatten(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_residual_sum": (
            head(
                lambda: (
                    s.Dense(5, b_std=0.2),
                    s.FanOut(2),
                    s.parallel(s.serial(s.Relu(), s.Dense(5, W_std=1.3, b_std=0.1)), s.Identity()),
                    s.FanInSum(),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_fanin_prod": (
            head(
                lambda: (
                    s.Dense(5, b_std=0.2),
                    s.FanOut(2),
                    s.parallel(s.Dense(5, W_std=1.2, b_std=0.3), s.Dense(5, W_std=0.8)),
                    s.FanInProd(),
                    s.Dense(4),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_repeat": (
            head(
                lambda: (
                    s.Dense(5, W_std=1.3, b_std=0.1),
                    s.repeat(s.serial(s.Relu(), s.Dense(5, W_std=1.3, b_std=0.1)), 3),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        # images padded along the width
        "img_conv2d_same_gap": (
            head(
                lambda: (
                    s.Conv(4, (3, 2), padding="SAME", W_std=1.3, b_std=0.2),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            IMG,
            {"image": True},
        ),
        "img_conv2d_avgpool_flatten": (
            head(lambda: (s.Conv(4, (2, 2), b_std=0.1), s.Relu(), s.AvgPool((2, 2)), s.Flatten())),
            IMG,
            {"image": True},
        ),
        # transposed and unshared convolutions, resizing, fixed linear maps
        "seq_convtranspose_same_strided": (
            head(
                lambda: (
                    s.Dense(5, b_std=0.3),
                    s.Relu(),
                    s.ConvTranspose(4, (3,), (2,), padding="SAME", W_std=1.2, b_std=0.2),
                    s.Relu(),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_convtranspose_valid_flatten": (
            head(
                lambda: (
                    s.ConvTranspose(4, (2,), padding="VALID", b_std=0.1),
                    s.Relu(),
                    s.Flatten(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_convlocal_same_flatten": (
            head(
                lambda: (
                    s.Dense(5, b_std=0.2),
                    s.Relu(),
                    s.ConvLocal(4, (3,), padding="SAME", W_std=1.3, b_std=0.1),
                    s.Relu(),
                    s.Flatten(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_resize_linear_up_gap": (
            head(
                lambda: (
                    s.Conv(4, (2,), padding="SAME", b_std=0.2),
                    s.Relu(),
                    s.ImageResize((-1, 10, -1), "linear"),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_resize_nearest_down_flatten": (
            head(
                lambda: (
                    s.Dense(5, b_std=0.3),
                    s.Relu(),
                    s.ImageResize((-1, 4, -1), "nearest"),
                    s.Dense(4),
                    s.Relu(),
                    s.Flatten(),
                )
            ),
            SEQ,
            {},
        ),
        "seq_dot_general_contract_positions": (
            head(
                lambda: (
                    s.Dense(5, b_std=0.3),
                    s.Relu(),
                    s.DotGeneral(
                        rhs=np.linspace(-1.0, 1.5, SEQ[0]),
                        dimension_numbers=(((1,), (0,)), ((), ())),
                    ),
                )
            ),
            SEQ,
            {},
        ),
        "seq_index_crop_stride_gap": (
            head(
                lambda: (
                    s.Dense(5, b_std=0.3),
                    s.Relu(),
                    s.Index(s.Slice[:, 1::2]),
                    s.GlobalAvgPool(),
                )
            ),
            SEQ,
            {},
        ),
        # single masked entries, and NaN padding
        "partial_dense_flatten": (
            head(lambda: (s.Dense(5, W_std=1.2, b_std=0.3), s.Relu(), s.Flatten())),
            SEQ,
            {"partial": True},
        ),
        "partial_raw_flatten": (head(lambda: (s.Flatten(),)), SEQ, {"partial": True}),
        "seq_nan_mask_flatten": (
            head(lambda: (s.Dense(5, b_std=0.3), s.Relu(), s.Flatten())),
            SEQ,
            {"nan": True},
        ),
    }


def _constant(name: str) -> float:
    return float("nan") if options(name).get("nan") else MASK


def draw_inputs(name: str, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``x1 (N1, ...)``, ``x2 (N2, ...)`` with their padding set
    to the architecture's mask constant (see the module docstring)."""
    x1, x2 = normal_inputs(name, input_shape, N1, N2)
    opts, c = options(name), _constant(name)
    if opts.get("image"):
        for x, widths in ((x1, _WIDTH_1), (x2, _WIDTH_2)):
            for i, w in enumerate(widths):
                x[i, :, w:] = c
    else:
        for x, lengths in ((x1, _LEN_1), (x2, _LEN_2)):
            for i, n in enumerate(lengths):
                x[i, n:] = c
    if opts.get("partial"):
        # One more masked channel at an unpadded position of each row.
        for x, lengths in ((x1, _LEN_1), (x2, _LEN_2)):
            for i, n in enumerate(lengths):
                x[i, (3 * i) % n, i % x.shape[-1]] = c
    return x1, x2


def kernel_kwargs(name: str, x1: np.ndarray, x2) -> dict:
    """``mask_constant`` of ``kernel_fn``: the value of the padding."""
    return {"mask_constant": _constant(name)}


names, input_shape, build, architectures, options = accessors(_builders)
