r"""The cost rule behind ``implementation=AUTO`` (Novak et al. 2022, §3–4).

For a function with :math:`P` parameters whose forward pass on the batch ``x1``
(``x2``) costs :math:`F_1` (:math:`F_2`) FLOPs and produces :math:`S_1` (:math:`S_2`)
output entries, of which :math:`O_1 = S_1 / N_1` per example when ``vmap_axes`` makes
the examples separable (:math:`O_1 = S_1` otherwise), the two generic methods cost
about

* Jacobian contraction: :math:`3 \cdot (O_1 \cdot F_1 + O_2 \cdot F_2) + 2 \cdot P \cdot E`
  FLOPs and :math:`(S_1 + S_2) \cdot P` stored numbers — one reverse pass
  (:math:`\approx 3` forward passes) per output entry of a slice, then a contraction
  over the parameters for each of the :math:`E` entries of the kernel before tracing
  (:math:`E` = kernel size :math:`\times` traced size; :math:`F_2` and :math:`S_2`
  drop out when ``x2`` is None);
* NTK-vector products: :math:`3 \cdot S_2 \cdot (F_2/N_2 + F_1)` FLOPs
  (:math:`3 \cdot S_2 \cdot (F_2 + F_1)` when not separable) and
  :math:`\mathrm{chunk} \cdot P` stored numbers — for each output entry of ``x2``
  one reverse pass through its slice and one forward-mode pass through ``x1``,
  never storing a Jacobian.

With :math:`F \approx 2 \cdot N \cdot P` (a fully connected network, each weight used
once per example) the contraction term :math:`2 \cdot P \cdot N_1 \cdot N_2 \cdot O^2`
dominates Jacobian contraction and NTK-vector products win for more than a couple
of outputs; when the forward pass reuses weights many times (convolutions,
:math:`F \gg 2 \cdot N \cdot P`) the Jacobian is cheap to contract and Jacobian
contraction wins. ``AUTO`` takes the method with
fewer FLOPs, unless the two Jacobians would exceed ``JACOBIAN_MEMORY_BUDGET``
bytes, and the structured method for `ntk.stax` networks (one reverse pass per
output entry of a slice plus Gram matrices of width-sized activations, which
is cheaper than both).

:math:`F` comes from XLA's cost analysis of the lowered forward pass
(``jax.jit(f).lower(...).cost_analysis()``); when that is unavailable (e.g. a
function closing over traced values) :math:`F = 2 \cdot N \cdot P` is assumed.
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
    r"""XLA's FLOP count of ``f(params, x, **kwargs)``, else
    :math:`2 \cdot \mathrm{batch} \cdot \mathrm{n\_params}`."""
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
