"""Keyword splitting and ``vmap_axes``: evaluating ``f`` one example at a time.

``vmap_axes`` (neural-tangents' argument) certifies that ``f(params, x, **kw)``
is the concatenation along ``out_axes`` of ``f`` applied to single slices of
``x`` along ``in_axes`` (and of the keyword arguments named in
``kwargs_axes``), i.e. that examples do not interact (no batch norm). It is
either a triple ``(in_axes, out_axes, kwargs_axes)`` or one int used for both
``in_axes`` and ``out_axes``. Each slice is evaluated as a batch of one (the
axis is kept, then squeezed from the output), as in neural-tangents.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

tree_map = jax.tree_util.tree_map


def split_kwargs(kwargs: dict, x1, x2) -> tuple[dict, dict]:
    """Keyword arguments for ``f(x1)`` and ``f(x2)`` (neural-tangents' rules).

    A pair ``(a, b)`` gives ``a`` to ``x1`` and ``b`` to ``x2``. An ``rng`` key
    is shared when ``x2`` is None or equal to ``x1`` (same dropout mask on the
    same inputs) and folded with 1 for ``x2`` otherwise. Anything else is
    shared.
    """
    kw1, kw2 = {}, {}
    for k, v in kwargs.items():
        if k == "rng" and x2 is not None and v is not None and not isinstance(v, tuple):
            kw1[k], kw2[k] = v, _second_key(v, x1, x2)
        elif isinstance(v, tuple) and len(v) == 2:
            kw1[k], kw2[k] = v
        else:
            kw1[k] = kw2[k] = v
    return kw1, kw2


def _second_key(key, x1, x2):
    other = jax.random.fold_in(key, 1)
    l1, t1 = jax.tree_util.tree_flatten(x1)
    l2, t2 = jax.tree_util.tree_flatten(x2)
    if t1 != t2 or any(  # type: ignore[operator]
        np.shape(a) != np.shape(b) for a, b in zip(l1, l2)
    ):
        return other
    same = jnp.all(jnp.array([jnp.all(a == b) for a, b in zip(l1, l2)]))
    return jnp.where(same, key, other)


class Batching(NamedTuple):
    """Canonical ``vmap_axes``: non-negative axes as trees matching the values."""

    x_axis: Any
    fx_axis: Any
    kw_axes: dict


def canonicalize_vmap_axes(vmap_axes, x, fx, kwargs) -> Optional[Batching]:
    """``vmap_axes`` as a `Batching` (or None), checked against the shapes."""
    if vmap_axes is None:
        return None
    if isinstance(vmap_axes, tuple) and len(vmap_axes) == 3:
        x_axis, fx_axis, kw_axes = vmap_axes
    else:
        x_axis, fx_axis, kw_axes = vmap_axes, vmap_axes, {}
    kw_axes = {} if kw_axes is None else kw_axes
    if not isinstance(kw_axes, dict):
        raise ValueError(
            "empirical_ntk_fn: the third entry of `vmap_axes` must "
            f"be a dict {{kwarg name: axis}}; got {kw_axes!r}."
        )
    unknown = set(kw_axes) - set(kwargs)
    if unknown:
        raise ValueError(
            f"empirical_ntk_fn: `vmap_axes` names keyword arguments "
            f"{sorted(unknown)} that were not passed."
        )

    def canon(axes, tree, what):
        if isinstance(axes, int):
            axes = tree_map(lambda _: axes, tree)
        axes = _containers_like(axes, tree)
        try:
            return tree_map(
                lambda a, v: _axis(
                    a, len(np.shape(v) if not hasattr(v, "shape") else v.shape), what
                ),
                axes,
                tree,
            )
        except ValueError as e:
            if "vmap_axes" in str(e):
                raise
            raise ValueError(
                f"empirical_ntk_fn: `vmap_axes` {what} {axes!r} does "
                f"not match the structure of {what}."
            ) from e

    return Batching(
        canon(x_axis, x, "inputs"),
        canon(fx_axis, fx, "outputs"),
        {k: canon(a, kwargs[k], f"kwarg {k}") for k, a in kw_axes.items()},
    )


def _containers_like(axes, tree):
    """``axes`` with lists where ``tree`` has lists and tuples where it has
    tuples: NT reads the two alike (``vmap_axes=(0, 0)`` for the list of
    outputs of a network ending in `parallel`)."""
    if type(axes) in (list, tuple) and type(tree) in (list, tuple) and len(axes) == len(tree):
        return type(tree)(_containers_like(a, t) for a, t in zip(axes, tree))
    return axes


def _axis(a, ndim, what):
    if not (isinstance(a, int) and -ndim <= a < ndim):
        raise ValueError(
            f"empirical_ntk_fn: `vmap_axes` gives axis {a!r} for {what} of rank {ndim}."
        )
    return a % ndim


def single_example_fn(f, b: Batching, kwargs: dict):
    """``(params, x_i, kw_i) -> f(x_i)`` for one slice; kw_i holds the batched kwargs."""
    static = {k: v for k, v in kwargs.items() if k not in b.kw_axes}

    def fn(params, xi, kwi):
        x = tree_map(jnp.expand_dims, xi, b.x_axis)
        kw = {k: tree_map(jnp.expand_dims, v, b.kw_axes[k]) for k, v in kwi.items()}
        fx = f(params, x, **static, **kw)
        return tree_map(lambda y, a: jnp.squeeze(y, a), fx, b.fx_axis)

    return fn


def batched_kwargs(b: Batching, kwargs: dict) -> dict:
    return {k: kwargs[k] for k in b.kw_axes}


def take(tree, axes, i):
    """Slice ``i`` of every leaf along its axis (the axis is dropped)."""
    return tree_map(lambda v, a: jax.lax.dynamic_index_in_dim(v, i, a, keepdims=False), tree, axes)


def batch_size(x, b: Batching) -> int:
    sizes = {
        v.shape[a]
        for v, a in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(b.x_axis))
    }
    if len(sizes) != 1:
        raise ValueError(
            f"empirical_ntk_fn: inputs disagree on the size of the "
            f"`vmap_axes` batch axis: {sorted(sizes)}."
        )
    return sizes.pop()
