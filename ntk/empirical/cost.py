"""The cost rule behind ``implementation=AUTO`` (Novak et al. 2022, §3–4).

For a function with ``P`` parameters whose forward pass on the batch ``x1``
(``x2``) costs ``F1`` (``F2``) FLOPs and produces ``S1`` (``S2``) output
entries, of which ``O1 = S1 / N1`` per example when ``vmap_axes`` makes the
examples separable (``O1 = S1`` otherwise), the two generic methods cost about

* Jacobian contraction: ``3·(O1·F1 + O2·F2) + 2·P·E`` FLOPs and
  ``(S1 + S2)·P`` stored numbers — one reverse pass (≈ 3 forward passes) per
  output entry of a slice, then a contraction over the parameters for each of
  the ``E`` entries of the kernel before tracing (``E`` = kernel size × traced
  size; ``F2`` and ``S2`` drop out when ``x2`` is None);
* NTK-vector products: ``3·S2·(F2/N2 + F1)`` FLOPs (``3·S2·(F2 + F1)`` when not
  separable) and ``chunk·P`` stored numbers — for each output entry of ``x2``
  one reverse pass through its slice and one forward-mode pass through ``x1``,
  never storing a Jacobian.

With ``F ≈ 2·N·P`` (a fully connected network, each weight used once per
example) the contraction term ``2·P·N1·N2·O²`` dominates Jacobian contraction
and NTK-vector products win for more than a couple of outputs; when the forward
pass reuses weights many times (convolutions, ``F ≫ 2·N·P``) the Jacobian is
cheap to contract and Jacobian contraction wins. ``AUTO`` takes the method with
fewer FLOPs, unless the two Jacobians would exceed ``JACOBIAN_MEMORY_BUDGET``
bytes, and the structured method for `ntk.stax` networks (one reverse pass per
output entry of a slice plus Gram matrices of width-sized activations, which
is cheaper than both).

``F`` comes from XLA's cost analysis of the lowered forward pass
(``jax.jit(f).lower(...).cost_analysis()``); when that is unavailable (e.g. a
function closing over traced values) ``F = 2·N·P`` is assumed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np

JACOBIAN_MEMORY_BUDGET = 2**31
"""Bytes the two Jacobians may take before AUTO prefers NTK-vector products."""


class Costs(NamedTuple):
    jacobian_flops: float
    jacobian_bytes: float
    vector_products_flops: float


def ntk_costs(
    n_params: int,
    flops1: float,
    flops2: float,
    size1: int,
    size2: int,
    batch1: int,
    batch2: int,
    kernel_entries: int,
    separable: bool,
    same_inputs: bool,
    itemsize: int,
) -> Costs:
    """FLOPs and Jacobian bytes of the two generic methods (module docstring)."""
    o1 = size1 / batch1 if separable else size1
    o2 = size2 / batch2 if separable else size2
    jac = 3 * o1 * flops1 + 2 * n_params * kernel_entries
    jac_bytes = size1 * n_params * itemsize
    if not same_inputs:
        jac += 3 * o2 * flops2
        jac_bytes += size2 * n_params * itemsize
    per_column = flops2 / batch2 if separable else flops2
    vp = 3 * size2 * (per_column + flops1)
    return Costs(float(jac), float(jac_bytes), float(vp))


def prefers_vector_products(c: Costs) -> bool:
    return c.vector_products_flops < c.jacobian_flops or c.jacobian_bytes > JACOBIAN_MEMORY_BUDGET


def _abstract(tree):
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype) if hasattr(a, "dtype") else a, tree
    )


def forward_flops(f, params, x, kwargs: dict, n_params: int, batch: int) -> float:
    """XLA's FLOP count of ``f(params, x, **kwargs)``, else ``2·batch·n_params``."""
    arrays = {k: v for k, v in kwargs.items() if hasattr(v, "dtype")}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    try:
        lowered = jax.jit(lambda p, x, kw: f(p, x, **kw, **static)).lower(
            _abstract(params), _abstract(x), _abstract(arrays)
        )
        analysis = lowered.cost_analysis()
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0]
        flops = float(analysis["flops"])  # type: ignore[index]  # None fails into the except
        if math.isfinite(flops) and flops > 0:
            return flops
    except Exception:  # noqa: BLE001 - any failure means "no estimate"
        pass
    return 2.0 * batch * n_params
