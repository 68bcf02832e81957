"""Golden architectures of the ``myrtle`` family: ``ntk.stax.Myrtle`` against NT.

Same interface as ``architectures.py`` (see its docstring). neural-tangents
has no Myrtle builder: its README defines ``MyrtleNetwork(depth, W_std,
b_std)`` from its layers, and that is what NT's side builds here —
``[Conv(1, (3, 3), padding="SAME"), Relu] × k1, AvgPool((2, 2), (2, 2)),
× k2, AvgPool, × k3`` and a readout. The README's readout is three more
``AvgPool((2, 2), (2, 2))`` and ``Flatten`` (32×32 images: the 8×8 map is
averaged to 1×1); ``myrtle5_32x32_readme`` is that network verbatim. Smaller
images keep the test fast: NT's side pools the last map to 1×1 with as
many ``AvgPool``s as it takes (square power-of-two maps) or takes
``GlobalAvgPool`` (others), the same average. ``ntk.stax``'s side is
``stax.Myrtle(depth, W_std, b_std)`` itself, which computes the kernel with
its fused program.

Coverage: depths 5, 7 and 10; NT's README hyperparameters (W_std = √2,
b_std = 0) and others with a bias; 1-3 channels; non-square images (a
swapped spatial axis changes the result); with ``x2`` and ``x2=None``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

LAYER_FACTORS = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}

# name -> (depth, W_std, b_std, image shape (H, W, C), NT's readout, N1, N2)
_CASES = {
    "myrtle5_8x8_readme_stds": (5, math.sqrt(2.0), 0.0, (8, 8, 3), "pools", 3, 2),
    "myrtle7_8x12_bias": (7, 1.3, 0.2, (8, 12, 2), "global", 3, 2),
    "myrtle10_16x8_one_channel": (10, 1.5, 0.1, (16, 8, 1), "global", 3, 2),
    "myrtle10_16x16_readme_stds": (10, math.sqrt(2.0), 0.0, (16, 16, 3), "pools", 2, 2),
    "myrtle5_32x32_readme": (5, math.sqrt(2.0), 0.0, (32, 32, 3), "pools", 2, 1),
}

X2_NONE = frozenset({"myrtle5_8x8_readme_stds", "myrtle10_16x8_one_channel"})


def draw_inputs(name: str, input_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``x1 (N1, *input_shape)``, ``x2 (N2, *input_shape)``
    from the CRC32 of the name."""
    n1, n2 = _CASES[name][5:]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return (
        rng.standard_normal((n1,) + tuple(input_shape)),
        rng.standard_normal((n2,) + tuple(input_shape)),
    )


def _readme_network(stax, depth, W_std, b_std, shape, readout):
    """NT's README ``MyrtleNetwork`` from layers; the readout as described above."""
    conv = lambda: stax.Conv(1, (3, 3), padding="SAME", W_std=W_std, b_std=b_std)
    layers = []
    for stage, count in enumerate(LAYER_FACTORS[depth]):
        layers += [conv(), stax.Relu()] * count
        if stage < 2:
            layers.append(stax.AvgPool((2, 2), strides=(2, 2)))
    if readout == "pools":
        side = shape[0] // 4
        layers += [stax.AvgPool((2, 2), strides=(2, 2))] * int(math.log2(side))
        layers.append(stax.Flatten())
    else:
        layers.append(stax.GlobalAvgPool())
    layers.append(stax.Dense(10, W_std, b_std))
    return stax.serial(*layers)


def names() -> list[str]:
    return list(_CASES)


def input_shape(name: str) -> tuple:
    return _CASES[name][3]


def build(stax, name: str) -> tuple:
    depth, W_std, b_std, shape, readout, _, _ = _CASES[name]
    # ntk.stax has the builder under test; neural-tangents only its layers.
    if hasattr(stax, "Myrtle"):
        return stax.Myrtle(depth, W_std=W_std, b_std=b_std, num_classes=10), shape
    return _readme_network(stax, depth, W_std, b_std, shape, readout), shape


def architectures(stax) -> dict:
    return {name: build(stax, name) for name in _CASES}
