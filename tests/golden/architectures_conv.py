"""Golden architectures of the ``conv`` family: ConvTranspose, ConvLocal, ImageResize.

Same interface as ``architectures.py`` (see its docstring): built from either
``neural_tangents.stax`` or ``ntk.stax``, every network ends in a vector
output. Coverage:

* ``ConvTranspose`` and ``ConvLocal`` with each padding (VALID, SAME,
  CIRCULAR, also given as the ``stax.Padding`` enum), strides 1 and 2 (and
  mixed per axis), 1-D and 2-D, both parameterizations (``s`` included), with
  and without bias; some followed by Flatten (the diagonal spatial layout),
  others by pooling (the full layout, where CIRCULAR folds both axes of a
  covariance pair and ConvLocal zeroes the off-diagonal).
* ``ImageResize`` with every method neural-tangents' kernel supports
  ("linear" and its aliases, "nearest"), up- and down-sampling, with and
  without antialiasing, ``-1`` entries on some spatial axes. (A
  ``jax.image.ResizeMethod`` enum crashes NT's kernel_fn, an unbound local,
  so the fixture uses names; ``tests/test_stax_conv.py`` checks the enum.)

Spatial shapes are non-square so that a swapped axis changes the result.
"""

from __future__ import annotations

import numpy as np
from _family import accessors, normal_inputs

N1 = 4
N2 = 3

IMG1D = (7, 3)
IMG2D = (5, 4, 2)
IMG2D_LARGE = (7, 6, 2)

X2_NONE = frozenset(
    {
        "convtranspose1d_same_s2_gap",
        "convtranspose2d_circular_s2_flatten",
        "convlocal2d_valid_avgpool",
        "resize_bilinear_down_gap",
        "resize_nearest_up_flatten",
    }
)


def draw_inputs(name: str, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``x1 (N1, *input_shape)``, ``x2 (N2, *input_shape)``."""
    return normal_inputs(name, input_shape, N1, N2)


def _ct(stax, out, filt, strides=None, padding="VALID", **kw):
    kw.setdefault("W_std", 1.3)
    kw.setdefault("b_std", 0.2)
    return stax.ConvTranspose(out, filt, strides, padding, **kw)


def _cl(stax, out, filt, strides=None, padding="VALID", **kw):
    kw.setdefault("W_std", 1.4)
    kw.setdefault("b_std", 0.3)
    return stax.ConvLocal(out, filt, strides, padding, **kw)


def _conv(stax, out, filt, **kw):
    kw.setdefault("W_std", 1.2)
    kw.setdefault("b_std", 0.1)
    return stax.Conv(out, filt, **kw)


def _readout(stax):
    return stax.Dense(3, W_std=1.1, b_std=0.1)


def _transpose_1d(s) -> dict:
    return {
        "convtranspose1d_valid_s1_flatten": lambda: s.serial(
            _ct(s, 4, (3,)), s.Relu(), s.Flatten(), _readout(s)
        ),
        "convtranspose1d_same_s2_gap": lambda: s.serial(
            _ct(s, 4, (3,), (2,), "SAME"), s.Erf(), s.GlobalAvgPool(), _readout(s)
        ),
        "convtranspose1d_circular_s2_flatten": lambda: s.serial(
            _ct(s, 4, (4,), (2,), "CIRCULAR"), s.Relu(), s.Flatten(), _readout(s)
        ),
        "convtranspose1d_circular_s1_avgpool": lambda: s.serial(
            _ct(s, 4, (3,), None, s.Padding.CIRCULAR, b_std=None),
            s.Relu(),
            s.AvgPool((2,)),
            s.Flatten(),
            _readout(s),
        ),
        "convtranspose1d_valid_s2_window_below_stride": lambda: s.serial(
            _ct(s, 4, (1,), (2,)), s.Abs(), s.GlobalAvgPool(), _readout(s)
        ),
    }


def _transpose_2d(s) -> dict:
    return {
        "convtranspose2d_valid_s2_avgpool": lambda: s.serial(
            _ct(s, 4, (3, 2), (2, 2)), s.Relu(), s.AvgPool((2, 2), (2, 2)), s.Flatten(), _readout(s)
        ),
        "convtranspose2d_same_standard_s": lambda: s.serial(
            _ct(s, 4, (2, 3), None, "SAME", parameterization="standard", s=(1, 2)),
            s.Relu(),
            _ct(s, 3, (2, 2), (1, 2), "VALID", W_std=0.9, parameterization="standard", s=(2, 1)),
            s.Flatten(),
            s.Dense(3, W_std=1.1, parameterization="standard"),
        ),
        "convtranspose2d_same_strides21_nobias_gap": lambda: s.serial(
            _ct(s, 4, (3, 3), (2, 1), s.Padding.SAME, b_std=None),
            s.Relu(),
            s.GlobalAvgPool(),
            _readout(s),
        ),
        "convtranspose2d_circular_strides12_gap": lambda: s.serial(
            _ct(s, 4, (3, 2), (1, 2), "CIRCULAR"), s.Abs(), s.GlobalAvgPool(), _readout(s)
        ),
        "convtranspose2d_circular_s2_flatten": lambda: s.serial(
            _ct(s, 4, (3, 3), (2, 2), "CIRCULAR", W_std=1.5), s.Relu(), s.Flatten(), _readout(s)
        ),
        "conv_then_convtranspose_sumpool": lambda: s.serial(
            _conv(s, 4, (2, 2), strides=(2, 2), padding="SAME"),
            s.Relu(),
            _ct(s, 4, (2, 2), (2, 2), "SAME"),
            s.Relu(),
            s.SumPool((2, 2), (2, 2)),
            s.Flatten(),
            _readout(s),
        ),
        "conv_circular_enum_then_convtranspose_valid": lambda: s.serial(
            _conv(s, 4, (3, 2), padding=s.Padding.CIRCULAR),
            s.Erf(),
            _ct(s, 4, (2, 2), (2, 2)),
            s.Relu(),
            s.Flatten(),
            _readout(s),
        ),
    }


def _local_1d(s) -> dict:
    return {
        "convlocal1d_valid_flatten": lambda: s.serial(
            _cl(s, 4, (3,)), s.Relu(), s.Flatten(), _readout(s)
        ),
        "convlocal1d_same_s2_gap": lambda: s.serial(
            _cl(s, 4, (3,), (2,), "SAME"), s.Erf(), s.GlobalAvgPool(), _readout(s)
        ),
        "convlocal1d_circular_s2_flatten": lambda: s.serial(
            _cl(s, 4, (4,), (2,), s.Padding.CIRCULAR), s.Relu(), s.Flatten(), _readout(s)
        ),
    }


def _local_2d(s) -> dict:
    return {
        "convlocal2d_valid_avgpool": lambda: s.serial(
            _cl(s, 4, (2, 2)), s.Relu(), s.AvgPool((2, 2), (1, 1)), s.Flatten(), _readout(s)
        ),
        "convlocal2d_same_s2_standard_s": lambda: s.serial(
            _cl(s, 4, (3, 2), (2, 2), "SAME", parameterization="standard", s=(2, 2)),
            s.Relu(),
            _cl(s, 3, (2, 2), None, "VALID", W_std=0.9, parameterization="standard"),
            s.Flatten(),
            s.Dense(3, W_std=1.1, parameterization="standard"),
        ),
        "convlocal2d_circular_strides21_gap": lambda: s.serial(
            _cl(s, 4, (3, 3), (2, 1), "CIRCULAR", b_std=None),
            s.Erf(),
            s.GlobalAvgPool(),
            _readout(s),
        ),
        "convlocal2d_deep_flatten": lambda: s.serial(
            _cl(s, 4, (2, 2), None, "SAME"),
            s.Relu(),
            _cl(s, 4, (3, 2), (1, 2)),
            s.Erf(),
            s.Flatten(),
            _readout(s),
        ),
        "conv_then_convlocal_then_avgpool": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            s.Relu(),
            _cl(s, 4, (2, 2), None, "SAME"),
            s.Relu(),
            s.AvgPool((2, 2), (2, 2), "SAME"),
            s.Flatten(),
            _readout(s),
        ),
        "convtranspose_then_convlocal_gap": lambda: s.serial(
            _ct(s, 4, (2, 2), (2, 2), "SAME"),
            s.Relu(),
            _cl(s, 4, (3, 3), (2, 2), "VALID"),
            s.Relu(),
            s.GlobalAvgPool(),
            _readout(s),
        ),
    }


def _resize(s) -> dict:
    # NT stores the full layout axis-reversed after an odd number of shared
    # convolutions and its ImageResize ignores that (it resizes H by W's
    # target), so here resizing follows a ConvLocal or two Convs; the case NT
    # gets wrong is checked by Monte Carlo in tests/test_stax_conv.py.
    head = lambda: (_cl(s, 4, (2, 2), None, "SAME"), s.Relu())
    two_convs = lambda: (
        _conv(s, 4, (2, 2), padding="SAME"),
        s.Relu(),
        _conv(s, 4, (1, 1)),
        s.Erf(),
    )
    return {
        "resize_linear_up_flatten": lambda: s.serial(
            *head(), s.ImageResize((-1, 9, 7, -1), "linear"), s.Flatten(), _readout(s)
        ),
        "resize_bilinear_down_gap": lambda: s.serial(
            *two_convs(), s.ImageResize((-1, 3, 2, -1), "bilinear"), s.GlobalAvgPool(), _readout(s)
        ),
        "resize_linear_down_no_antialias_flatten": lambda: s.serial(
            *head(),
            s.ImageResize((-1, 4, 3, -1), "linear", antialias=False),
            s.Flatten(),
            _readout(s),
        ),
        "resize_one_axis_then_conv_gap": lambda: s.serial(
            *head(),
            s.ImageResize((-1, -1, 9, -1), "linear"),
            _conv(s, 4, (3, 3), padding="VALID"),
            s.Erf(),
            s.GlobalAvgPool(),
            _readout(s),
        ),
        "resize_nearest_up_flatten": lambda: s.serial(
            *two_convs(), s.ImageResize((-1, 11, 8, -1), "nearest"), s.Flatten(), _readout(s)
        ),
        "resize_nearest_down_avgpool": lambda: s.serial(
            *head(),
            s.ImageResize((-1, 4, 3, -1), "nearest"),
            s.AvgPool((2, 2)),
            s.Flatten(),
            _readout(s),
        ),
        "resize_keep_everything_flatten": lambda: s.serial(
            *head(), s.ImageResize((-1, -1, -1, -1), "linear"), s.Flatten(), _readout(s)
        ),
        "resize_inputs_then_conv_flatten": lambda: s.serial(
            s.ImageResize((-1, 6, 7, -1), "bilinear"),
            _conv(s, 4, (3, 3), strides=(2, 2)),
            s.Relu(),
            s.Flatten(),
            _readout(s),
        ),
    }


def _resize_1d(s) -> dict:
    return {
        "resize1d_triangle_down_gap": lambda: s.serial(
            _conv(s, 4, (2,), padding="SAME"),
            s.Relu(),
            s.ImageResize((-1, 4, -1), "triangle"),
            s.GlobalAvgPool(),
            _readout(s),
        ),
        "resize1d_nearest_up_flatten": lambda: s.serial(
            _conv(s, 4, (2,), padding="SAME"),
            s.Relu(),
            s.ImageResize((-1, 12, -1), "nearest"),
            s.Flatten(),
            _readout(s),
        ),
    }


_LARGE = {
    "resize_bilinear_down_gap",
    "resize_linear_down_no_antialias_flatten",
    "resize_nearest_down_avgpool",
    "convlocal2d_circular_strides21_gap",
    "convlocal2d_same_s2_standard_s",
}


def _builders(stax) -> dict:
    out = {}
    for group, shape in (
        (_transpose_1d, IMG1D),
        (_local_1d, IMG1D),
        (_resize_1d, IMG1D),
        (_transpose_2d, IMG2D),
        (_local_2d, IMG2D),
        (_resize, IMG2D),
    ):
        for name, thunk in group(stax).items():
            out[name] = (thunk, IMG2D_LARGE if name in _LARGE else shape)
    return out


names, input_shape, build, architectures, options = accessors(_builders)
