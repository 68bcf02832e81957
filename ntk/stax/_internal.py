"""Internal helpers that `ntk.stax` shares with the other packages of `ntk`.

Not public API: names here may change without notice. They live in one place
so that `ntk.empirical`, `ntk.mup` and `ntk.dkm` reuse the layers' own
conventions instead of copying them.
"""

from __future__ import annotations

from typing import Optional

import jax


def split_rng(kwargs: dict, n: int) -> list[dict]:
    """Per-sub-layer kwargs: an ``rng`` is split so dropout masks differ.

    The convention of neural-tangents and ``jax.example_libraries.stax``:
    ``serial``/``parallel`` split the key into one per sub-layer, so the finite
    network, its empirical NTK and its Monte Carlo kernel all draw the same
    masks.
    """
    rng: Optional[jax.Array] = kwargs.get("rng")
    if rng is None:
        return [kwargs] * n
    keys = jax.random.split(rng, n)
    return [{**kwargs, "rng": keys[i]} for i in range(n)]
