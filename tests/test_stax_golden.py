"""`ntk.stax` kernels agree with neural-tangents 0.6.5 on the golden architectures.

The fixture ``tests/golden/nt_golden.npz`` holds NT's NNGP and NTK for every
architecture of ``tests/golden/architectures.py`` (built there from NT's stax by
``scripts/nt_golden.py`` in the pinned NT environment), on stored float64
inputs, with ``x2`` given and, for a subset, with ``x2=None``. Here the same
architecture is built from ``ntk.stax`` and evaluated on the same inputs.
Agreement is measured relative to the largest entry of the golden array,

    max |ours - NT| / max |NT|  <=  1e-6.

Typical agreement is ~1e-16. The largest gaps, ~1e-8, are NT's own: with
``x2=None`` the diagonal sits at correlation 1, where NT's angle
``arctan2(sqrt(c11 c22 - c12²), c12)`` takes the square root of round-off
(sqrt(1e-16) = 1e-8), whereas ours is exact there. Any formula difference (a
wrong constant, a missed bias, an edge normalisation) shows up at 1e-3 or more.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ntk import stax

GOLDEN_DIR = Path(__file__).parent / "golden"
FIXTURE = GOLDEN_DIR / "nt_golden.npz"
RTOL = 1e-6


def _load_architectures():
    # tests/ is not a package, so the shared definition is imported by path.
    spec = importlib.util.spec_from_file_location(
        "golden_architectures", GOLDEN_DIR / "architectures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARCH = _load_architectures()
GOLDEN = dict(np.load(FIXTURE))
FIXTURE_NAMES = [str(n) for n in GOLDEN["meta/names"]]
FIXTURE_X2_NONE = [str(n) for n in GOLDEN["meta/x2_none"]]
PREFIX = {"x2": "", "x2_none": "self_"}  # mode -> prefix of the golden keys
CASES = ([(name, "x2") for name in FIXTURE_NAMES]
         + [(name, "x2_none") for name in FIXTURE_X2_NONE])


def relative_error(ours, golden) -> float:
    ours = np.asarray(ours, dtype=np.float64)
    if ours.shape != golden.shape:
        raise AssertionError(f"shape {ours.shape} != golden {golden.shape}")
    return float(np.max(np.abs(ours - golden)) / np.max(np.abs(golden)))


@pytest.mark.parametrize("name, mode", CASES)
def test_kernels_match_neural_tangents(name, mode):
    layer, _ = ARCH.build(stax, name)
    x1 = GOLDEN[f"{name}/x1"]
    x2 = GOLDEN[f"{name}/x2"] if mode == "x2" else None
    nngp, ntk = layer.kernel_fn(x1, x2, get=("nngp", "ntk"))
    prefix = PREFIX[mode]
    errors = {g: relative_error(ours, GOLDEN[f"{name}/{prefix}{g}"])
              for g, ours in (("nngp", nngp), ("ntk", ntk))}
    assert max(errors.values()) <= RTOL, (
        f"{name} ({mode}): relative errors {errors} exceed {RTOL}")


def test_fixture_covers_every_architecture():
    assert sorted(FIXTURE_NAMES) == sorted(ARCH.names()), (
        "tests/golden/nt_golden.npz is out of date with architectures.py; "
        "regenerate it with scripts/nt_golden.py (see its header).")


def test_fixture_has_the_x2_none_cases_of_architectures():
    assert sorted(FIXTURE_X2_NONE) == sorted(ARCH.X2_NONE), (
        "regenerate tests/golden/nt_golden.npz with scripts/nt_golden.py.")


def test_fixture_inputs_are_the_seeded_draws():
    # Guards against editing an input shape or seed without regenerating.
    for name in FIXTURE_NAMES:
        x1, x2 = ARCH.draw_inputs(name, ARCH.input_shape(name))
        np.testing.assert_array_equal(GOLDEN[f"{name}/x1"], x1, err_msg=name)
        np.testing.assert_array_equal(GOLDEN[f"{name}/x2"], x2, err_msg=name)


def test_fixture_comes_from_neural_tangents_0_6_5():
    assert str(GOLDEN["meta/neural_tangents"]) == "0.6.5"
