"""Golden architectures of the ``indexing`` family: `DotGeneral` and `Index`/`Slice`.

Same interface as ``architectures.py`` (read its docstring): ``architectures(stax)``
builds every network from ``neural_tangents.stax`` or ``ntk.stax``, ``names``,
``input_shape``, ``build``, ``draw_inputs`` and ``X2_NONE``. Regenerate the
fixture with ``scripts/nt_golden.py --family indexing``.

Coverage: `DotGeneral` with a constant ``rhs`` and ``lhs``, contracting one or
two spatial axes (full spatial layout), a scalar constant, and per-example constants batched with the batch
axis (with and without contraction, an ``lhs`` whose free axis becomes a new
spatial axis, and a diagonal-layout network); `Index` on spatial axes (crops,
strides, negative steps, an int that removes an axis, ``...``) in both
layouts, and on the batch axis. Every network ends in a vector output.

Per-example constants have a batch dimension of size ``N1``, so for those
architectures (`SAME_BATCH`) ``x2`` has ``N1`` rows too (NT, like us, applies
the same constant to ``x1`` and ``x2``).

Not here: ``DotGeneral()`` without a constant, documented by NT as the
identity, for which NT 0.6.5 returns NaN kernels and outputs (it multiplies
by ``jnp.array(None)``, i.e. NaN); ours is the identity, tested in
``tests/test_stax_indexing.py``.
"""

from __future__ import annotations

import zlib

import numpy as np
from _family import accessors, normal_inputs

N1 = 4
N2 = 3

VEC = (5,)
IMG1D = (6, 3)
IMG2D = (5, 5, 2)

SAME_BATCH = frozenset(
    {
        "dot_general_lhs_per_example_new_axis",
        "dot_general_rhs_per_example_diagonal",
        "dot_general_rhs_per_example_contract",
    }
)

X2_NONE = frozenset(
    {
        "dot_general_rhs_scalar_vector",
        "dot_general_rhs_contract_h",
        "dot_general_lhs_per_example_new_axis",
        "dot_general_rhs_per_example_diagonal",
        "index_batch_stride",
        "index_spatial_crop_stride",
    }
)


def _constant(tag: str, shape: tuple) -> np.ndarray:
    """A fixed float64 constant (seeded by ``tag``)."""
    return np.random.default_rng(zlib.crc32(tag.encode())).uniform(-1.5, 1.5, shape)


def draw_inputs(name: str, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``x1 (N1, *input_shape)``, ``x2 (N2 or N1, *input_shape)``."""
    return normal_inputs(name, input_shape, N1, N1 if name in SAME_BATCH else N2)


def _conv(stax, out, filt, **kw):
    kw.setdefault("W_std", 1.3)
    kw.setdefault("b_std", 0.2)
    return stax.Conv(out, filt, **kw)


def _vector(stax) -> dict:
    s = stax
    return {
        "dot_general_rhs_scalar_vector": lambda: s.serial(
            s.Dense(6, W_std=1.2, b_std=0.3),
            s.Relu(),
            s.DotGeneral(rhs=-1.7),
            s.Dense(3, W_std=0.9, b_std=0.1),
        ),
        "index_batch_stride": lambda: s.serial(
            s.Dense(6, W_std=1.4, b_std=0.2),
            s.Relu(),
            s.Index(s.Slice[::2]),
            s.Dense(3, W_std=1.1, b_std=0.1),
        ),
    }


def _images_1d(stax) -> dict:
    s = stax
    return {
        "dot_general_lhs_per_example_new_axis": lambda: s.serial(
            _conv(s, 4, (2,)),
            s.Relu(),
            # (N, 5, C) -> (N, 2, C): per example, two weightings of positions.
            s.DotGeneral(
                lhs=_constant("lhs_pe", (N1, 2, 5)), dimension_numbers=(((2,), (1,)), ((0,), (0,)))
            ),
            s.Dense(5, W_std=1.2, b_std=0.1),
            s.Relu(),
            s.GlobalAvgPool(),
            s.Dense(3, W_std=1.1),
        ),
        "dot_general_rhs_per_example_diagonal": lambda: s.serial(
            _conv(s, 4, (2,)),
            s.Relu(),
            # (N, 5, C) times a per-example, per-position factor: no contraction.
            s.DotGeneral(
                rhs=_constant("rhs_pe", (N1, 5)), dimension_numbers=(((), ()), ((0, 1), (0, 1)))
            ),
            _conv(s, 3, (2,), W_std=1.1),
            s.Relu(),
            s.Flatten(),
            s.Dense(3, W_std=1.2),
        ),
        "index_then_dot_general_1d": lambda: s.serial(
            _conv(s, 4, (2,)),
            s.Relu(),
            s.Index(s.Slice[:, 1:]),
            s.DotGeneral(rhs=_constant("rhs_1d", (4,)), dimension_numbers=(((1,), (0,)), ((), ()))),
            s.Dense(3, W_std=1.1, b_std=0.2),
        ),
    }


def _images_2d(stax) -> dict:
    s = stax
    return {
        "dot_general_rhs_contract_h": lambda: s.serial(
            _conv(s, 4, (2, 2)),
            s.Relu(),
            s.DotGeneral(rhs=_constant("rhs_h", (4,)), dimension_numbers=(((1,), (0,)), ((), ()))),
            _conv(s, 3, (2,), W_std=1.1),
            s.Relu(),
            s.Flatten(),
            s.Dense(3, W_std=1.2),
        ),
        "dot_general_rhs_contract_w": lambda: s.serial(
            _conv(s, 4, (2, 2)),
            s.Erf(),
            s.DotGeneral(rhs=_constant("rhs_w", (4,)), dimension_numbers=(((2,), (0,)), ((), ()))),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "dot_general_lhs_contract_hw": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            s.Relu(),
            s.DotGeneral(
                lhs=_constant("lhs_hw", (5, 5)), dimension_numbers=(((0, 1), (1, 2)), ((), ()))
            ),
            s.Dense(3, W_std=1.2, b_std=0.1),
        ),
        "dot_general_rhs_per_example_contract": lambda: s.serial(
            _conv(s, 4, (2, 2)),
            s.Relu(),
            # batch with N and H, contract W: (N, 4, 4, C) -> (N, 4, C).
            s.DotGeneral(
                rhs=_constant("rhs_pe_hw", (N1, 4, 4)),
                dimension_numbers=(((2,), (2,)), ((0, 1), (0, 1))),
            ),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "index_spatial_crop_stride": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            s.Relu(),
            s.Index(s.Slice[:, 1:4, ::2]),
            _conv(s, 3, (2, 2), W_std=1.1),
            s.Relu(),
            s.Flatten(),
            s.Dense(3, W_std=1.2),
        ),
        "index_int_row_ellipsis_gap": lambda: s.serial(
            _conv(s, 4, (2, 2)),
            s.Relu(),
            s.Index(s.Slice[:, 2, ...]),
            _conv(s, 3, (2,), W_std=1.1),
            s.Erf(),
            s.GlobalAvgPool(),
            s.Dense(3, W_std=1.2),
        ),
        "index_negative_steps_pool": lambda: s.serial(
            _conv(s, 4, (2, 2), padding="SAME"),
            s.Relu(),
            s.Index(s.Slice[:, ::-1, -1::-2, :]),
            s.AvgPool((2, 2)),
            s.Flatten(),
            s.Dense(3, W_std=1.1),
        ),
        "index_batch_reverse_image": lambda: s.serial(
            _conv(s, 4, (2, 2)),
            s.Relu(),
            s.Index(s.Slice[::-1, :, 1:]),
            s.Flatten(),
            s.Dense(3, W_std=1.1, b_std=0.2),
        ),
    }


def _builders(stax) -> dict:
    """``name -> (thunk building the layer, input_shape)``; builds nothing."""
    out = {}
    for group, shape in ((_vector, VEC), (_images_1d, IMG1D), (_images_2d, IMG2D)):
        for name, thunk in group(stax).items():
            out[name] = (thunk, shape)
    return out


names, input_shape, build, architectures, options = accessors(_builders)
