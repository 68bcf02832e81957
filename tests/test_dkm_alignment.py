"""`ntk.dkm.centred_alignment` (Cortes, Mohri & Rostamizadeh 2012)."""

from __future__ import annotations

import numpy as np
import pytest

from ntk import dkm


def test_centred_alignment_is_one_for_proportional_and_bounded():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 1))
    assert dkm.centred_alignment(3 * y @ y.T, y @ y.T) == pytest.approx(1.0)
    a = rng.normal(size=(6, 6))
    assert abs(dkm.centred_alignment(a @ a.T, y @ y.T)) <= 1.0


def test_centred_alignment_ignores_constant_offsets_and_matches_the_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    a, b = a @ a.T, b @ b.T
    # centring removes c·11ᵀ: the offset must not change the alignment
    assert dkm.centred_alignment(a + 7.0, b) == pytest.approx(
        dkm.centred_alignment(a, b), rel=1e-12
    )

    # explicit double centring by row/column means (independent of H = I − 11ᵀ/P)
    def centre(m):
        return m - m.mean(0) - m.mean(1)[:, None] + m.mean()

    ca, cb = centre(a), centre(b)
    want = np.sum(ca * cb) / np.sqrt(np.sum(ca**2) * np.sum(cb**2))
    assert dkm.centred_alignment(a, b) == pytest.approx(want, rel=1e-12)


def test_centred_alignment_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="square matrices of one shape"):
        dkm.centred_alignment(np.eye(3), np.eye(4))


@pytest.mark.parametrize("constant", [np.ones((4, 4)), np.zeros((4, 4))], ids=["ones", "zeros"])
def test_centred_alignment_with_a_constant_matrix_is_undefined_and_says_so(constant):
    # Centring leaves round-off (or nothing); it used to return -2.6e-17.
    with pytest.raises(ValueError, match=r"`b` is constant \(a multiple of 11ᵀ\) after centring"):
        dkm.centred_alignment(np.eye(4), constant)
