"""`ntk.stax` kernels agree with neural-tangents 0.6.5 on the golden architectures.

Each family of layers has a fixture: ``tests/golden/nt_golden.npz`` for the
core ``architectures.py`` and ``nt_golden_FAMILY.npz`` for
``architectures_FAMILY.py``. A fixture holds NT's NNGP and NTK for every
architecture of its module (built there from NT's stax by
``scripts/nt_golden.py`` in the pinned NT environment), on stored float64
inputs (and keyword arguments such as graph patterns or mask constants), with
``x2`` given and, for a subset, with ``x2=None``. Here the same
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

import numpy as np
import pytest

# tests/golden/_loader.py, shared with scripts/nt_golden.py (pytest puts tests/ on sys.path)
from golden._loader import GOLDEN_DIR, family_of, family_paths, load_module

from ntk import stax

RTOL = 1e-6

FAMILIES = {}  # family -> (architectures module, fixture arrays)
for _path in sorted(GOLDEN_DIR.glob("architectures*.py")):
    _fixture = family_paths(family_of(_path))[1]
    FAMILIES[family_of(_path)] = (
        load_module(_path),
        dict(np.load(_fixture)) if _fixture.exists() else None,
    )

PREFIX = {"x2": "", "x2_none": "self_"}  # mode -> prefix of the golden keys
CASES = [
    (family, str(name), mode)
    for family, (_, golden) in FAMILIES.items()
    if golden is not None
    for mode, key in (("x2", "meta/names"), ("x2_none", "meta/x2_none"))
    for name in golden[key]
]


def relative_error(ours, golden) -> float:
    ours = np.asarray(ours, dtype=np.float64)
    if ours.shape != golden.shape:
        raise AssertionError(f"shape {ours.shape} != golden {golden.shape}")
    return float(np.max(np.abs(ours - golden)) / np.max(np.abs(golden)))


def _kwargs(golden, name, prefix):
    """The stored keyword arguments of ``kernel_fn`` (``NAME/kw/KEY``)."""
    head = f"{name}/{prefix}kw/"
    return {k[len(head) :]: v for k, v in golden.items() if k.startswith(head)}


@pytest.mark.parametrize("family, name, mode", CASES)
def test_kernels_match_neural_tangents(family, name, mode):
    arch, golden = FAMILIES[family]
    layer, _ = arch.build(stax, name)
    x1 = golden[f"{name}/x1"]
    x2 = golden[f"{name}/x2"] if mode == "x2" else None
    prefix = PREFIX[mode]
    nngp, ntk = layer.kernel_fn(x1, x2, get=("nngp", "ntk"), **_kwargs(golden, name, prefix))
    errors = {
        g: relative_error(ours, golden[f"{name}/{prefix}{g}"])
        for g, ours in (("nngp", nngp), ("ntk", ntk))
    }
    assert max(errors.values()) <= RTOL, f"{name} ({mode}): relative errors {errors} exceed {RTOL}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fixture_covers_every_architecture(family):
    arch, golden = FAMILIES[family]
    assert golden is not None, f"no fixture for the {family} family"
    assert sorted(str(n) for n in golden["meta/names"]) == sorted(arch.names()), (
        f"the {family} fixture is out of date with its architectures module; "
        "regenerate it with scripts/nt_golden.py (see its header)."
    )
    assert sorted(str(n) for n in golden["meta/x2_none"]) == sorted(arch.X2_NONE), (
        f"regenerate the {family} fixture with scripts/nt_golden.py."
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fixture_inputs_are_the_seeded_draws(family):
    # Guards against editing an input shape or seed without regenerating.
    arch, golden = FAMILIES[family]
    for name in golden["meta/names"]:
        name = str(name)
        x1, x2 = arch.draw_inputs(name, arch.input_shape(name))
        np.testing.assert_array_equal(golden[f"{name}/x1"], x1, err_msg=name)
        np.testing.assert_array_equal(golden[f"{name}/x2"], x2, err_msg=name)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fixture_comes_from_neural_tangents_0_6_5(family):
    assert str(FAMILIES[family][1]["meta/neural_tangents"]) == "0.6.5"
