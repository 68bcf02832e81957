"""What every golden family module exposes, made from its table of builders.

A family module (``architectures_NAME.py``) defines ``_builders(stax)``:
``name -> (thunk, input_shape)`` or ``name -> (thunk, input_shape, options)``,
where ``thunk()`` builds the layer from ``stax`` (``None`` while only names
and shapes are read, so nothing is built). `accessors` turns that table into
the functions `scripts/nt_golden.py` and `tests/test_stax_golden.py` call;
`normal_inputs` is the default input draw. The loaders put this directory on
``sys.path`` while importing a family, so a family imports this module as
``from _family import accessors``. This module imports neither library.
"""

from __future__ import annotations

import zlib

import numpy as np


def accessors(builders):
    """``(names, input_shape, build, architectures, options)`` of a family."""

    def names() -> list[str]:
        """All architecture names, without building any layer."""
        return list(builders(None))

    def input_shape(name: str) -> tuple:
        """Shape of one input of architecture ``name`` (no batch axis)."""
        return builders(None)[name][1]

    def build(stax, name: str) -> tuple:
        """``(layer, input_shape)`` of one architecture, built from ``stax``."""
        thunk, shape = builders(stax)[name][:2]
        return thunk(), shape

    def architectures(stax) -> dict:
        """``name -> (layer, input_shape)`` for every architecture of the family."""
        return {name: (entry[0](), entry[1]) for name, entry in builders(stax).items()}

    def options(name: str) -> dict:
        """The architecture's options (the third entry of its row, or none)."""
        entry = builders(None)[name]
        return entry[2] if len(entry) > 2 else {}

    return names, input_shape, build, architectures, options


def normal_inputs(name: str, input_shape: tuple, n1: int, n2: int):
    """Standard normal ``x1 (n1, *input_shape)``, ``x2 (n2, *input_shape)``,
    seeded by the CRC32 of ``name`` (so by nothing but the name)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return (
        rng.standard_normal((n1,) + tuple(input_shape)),
        rng.standard_normal((n2,) + tuple(input_shape)),
    )
