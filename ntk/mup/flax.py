r"""abc-parametrizations and μP for Flax modules (linen and nnx).

Which dimensions of a parameter grow with width is found the way the `mup`
package's ``set_base_shapes`` finds it: instantiate the same architecture at a
base width :math:`n_0` (and optionally a third, ``delta``, width), and compare
shapes. An axis whose size differs is width-like; its multiplier is
:math:`\bar{n} = \mathrm{size} / \text{base size}`. For a kernel of shape ``(..., fan_in, fan_out)``
(Dense ``(in, out)``, Conv ``HWIO``, Embed ``(vocab, features)``) the last two
axes give the role (`ntk.mup.parametrize` table); a vector is a bias if it is
width-sized; anything else is fixed. An explicit per-parameter annotation
``{"path/to/param": "input" | "hidden" | "output" | "bias" | "fixed"}``
(or ``(role, layer_index)``) overrides the inference.

The module's own initialisation is taken to be SP (variance
:math:`\propto 1/\mathrm{fan\_in}`, Flax's default ``lecun_normal``; biases zero), i.e.
native exponents :math:`a^\circ = 0`, :math:`b^\circ = k_\mathrm{in}/2`.

Example (linen):

    >>> import jax, jax.numpy as jnp
    >>> from flax import linen as nn
    >>> from ntk import mup
    >>> class MLP(nn.Module):
    ...     width: int
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         h = nn.relu(nn.Dense(self.width)(x))
    ...         h = nn.relu(nn.Dense(self.width)(h))
    ...         return nn.Dense(1)(h)
    >>> x = jnp.ones((4, 3))
    >>> model, base = MLP(width=256), MLP(width=64)
    >>> net = mup.parametrize(model, "mup", base=base, x=x)
    >>> params = net.init_fn(jax.random.PRNGKey(0), x)
    >>> y = net.apply_fn(params, x)
    >>> y.shape
    (4, 1)
    >>> opt = mup.adam(1e-3, net.info)

Example (nnx): ``net = mup.parametrize(MLP(1024, rngs=nnx.Rngs(0)), "mup",
base=MLP(64, rngs=nnx.Rngs(0)))``; ``params = net.init_fn()``;
``net.apply_fn(params, x)``.
"""

from __future__ import annotations

from typing import Mapping, Optional

import jax
import numpy as np

from ntk import _checks
from ntk.empirical.adapters import require_no_state_updates
from ntk.mup.abc import as_abc
from ntk.mup.parametrize import ROLES, LeafScale, Parametrized, leaf_scale, scale_tree


def path_str(path) -> str:
    """``"Dense_0/kernel"`` from a pytree key path (drops nnx's ``value``)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    if parts and parts[-1] == "value":
        parts = parts[:-1]
    return "/".join(parts)


def _shapes(tree) -> dict:
    return {
        path_str(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def infer_roles(params, base, delta=None, annotations: Optional[Mapping] = None) -> dict:
    """``{path: (role, layer_index or None, width_mult)}`` by comparing shapes.

    Args:
      params: parameters (or shapes) of the target-width model.
      base: the same at the base width :math:`n_0` (multipliers are relative to it).
      delta: optionally the same at a third width; width-like axes are then
        those where ``base`` and ``delta`` differ (needed when the target
        width equals the base width).
      annotations: ``{path: role}`` or ``{path: (role, layer)}`` overrides.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import linen as nn
      >>> from ntk.mup.flax import infer_roles
      >>> class MLP(nn.Module):
      ...     width: int
      ...     @nn.compact
      ...     def __call__(self, x):
      ...         h = nn.relu(nn.Dense(self.width)(x))      # Dense_0: input
      ...         h = nn.relu(nn.Dense(self.width)(h))      # Dense_1: hidden
      ...         return nn.Dense(1)(h)                     # Dense_2: output
      >>> x = jnp.ones((1, 3))
      >>> p_1024 = MLP(1024).init(jax.random.PRNGKey(0), x)
      >>> p_64 = MLP(64).init(jax.random.PRNGKey(0), x)
      >>> infer_roles(p_1024, p_64)["params/Dense_1/kernel"]   # n̄ = 1024 / 64
      ('hidden', None, 16.0)
    """
    target, b0 = _shapes(params), _shapes(base)
    ref = _shapes(delta) if delta is not None else target
    if set(target) != set(b0) or set(ref) != set(b0):
        missing = sorted(set(target) ^ set(b0) | set(ref) ^ set(b0))[:5]
        raise ValueError(
            f"infer_roles: the models at the target, base (and delta) "
            f"widths must have the same parameters; these differ: "
            f"{missing}."
        )
    if annotations is not None and not isinstance(annotations, Mapping):
        raise TypeError(
            f"infer_roles: `annotations` must be a dict {{path: role or "
            f"(role, layer)}}; got {type(annotations).__name__}."
        )
    annotations = dict(annotations or {})
    for path, ann in annotations.items():
        role, layer = (
            (ann, None)
            if isinstance(ann, str)
            else (tuple(ann) if isinstance(ann, (tuple, list)) and len(ann) == 2 else (None, None))
        )
        if role not in ROLES:
            raise ValueError(
                f"infer_roles: `annotations[{path!r}]` must be a role "
                f"in {ROLES} or (role, layer index); got {ann!r}."
            )
        if layer is not None:
            _checks.require_int(layer, f"annotations[{path!r}] layer", "infer_roles")
    unknown = sorted(set(annotations) - set(target))
    if unknown:
        raise ValueError(
            f"infer_roles: annotated paths {unknown} are not parameters; "
            f"parameters are e.g. {sorted(target)[:6]}."
        )
    out = {}
    for path, shape in target.items():
        s0, sr = b0[path], ref[path]
        if not (len(shape) == len(s0) == len(sr)):
            raise ValueError(
                f"infer_roles: {path} has ranks {len(shape)}/{len(s0)}/"
                f"{len(sr)} at the target/base/delta widths."
            )
        wide = [i for i in range(len(s0)) if s0[i] != sr[i]]
        nd = len(shape)
        k_in = nd >= 2 and (nd - 2) in wide
        k_out = nd >= 1 and (nd - 1) in wide
        extra = [i for i in wide if i < nd - 2 or (nd == 1 and i != 0)]
        if path in annotations:
            ann = annotations[path]
            role, layer = (ann, None) if isinstance(ann, str) else tuple(ann)
        else:
            if extra:
                raise ValueError(
                    f"infer_roles: {path} has width-like axes {wide} "
                    f"of shape {shape}; only the last two (fan_in, "
                    f"fan_out) may scale. Annotate it explicitly."
                )
            layer = None
            if nd >= 2:
                role = {(0, 1): "input", (1, 1): "hidden", (1, 0): "output", (0, 0): "fixed"}[
                    (int(k_in), int(k_out))
                ]
            else:
                role = "bias" if k_out else "fixed"
        axis = nd - 2 if (role in ("hidden", "output") and nd >= 2) else nd - 1
        mult = shape[axis] / s0[axis] if nd and role != "fixed" else 1.0
        out[path] = (role, layer, float(mult))
    return out


def _info(params, roles: dict, parametrization) -> tuple:
    """`LeafScale` tree and the `ABC` for ``params`` with inferred ``roles``."""
    counts = {r: sum(1 for v in roles.values() if v[0] == r) for r in ("input", "hidden", "output")}
    if counts["input"] < 1 or counts["output"] < 1:
        raise ValueError(
            f"parametrize: found {counts['input']} input and "
            f"{counts['output']} output weights; an abc-parametrization "
            "needs both. Width-like axes are those where the model and `base` "
            "differ: is `base` at another width? At the base width itself "
            "(e.g. a coordinate check starting there) pass `delta=` a model "
            "at a third width."
        )
    depth = max([counts["hidden"] + 1] + [v[1] - 1 for v in roles.values() if v[1] is not None])
    p = as_abc(parametrization, depth)
    hidden = {p.layer(l) for l in range(2, p.depth + 1)}
    if len(hidden) > 1 and any(v[0] == "hidden" and v[1] is None for v in roles.values()):
        raise ValueError(
            "parametrize: the ABC's hidden layers have different "
            "exponents; give each hidden tensor its layer index via "
            "annotations={path: ('hidden', l)}."
        )

    def one(path, x):
        role, layer, mult = roles[path_str(path)]
        if role == "hidden" and layer is None:
            layer = 2
        b_nat = 0.5 if (np.ndim(x) >= 2 and role in ("hidden", "output")) else 0.0
        if role == "fixed":
            return LeafScale("fixed", None, 1.0)
        return leaf_scale(role, layer, mult, p, 0.0, b_nat)

    info = jax.tree_util.tree_map_with_path(one, params)
    return info, p


def parametrize_linen(
    model, parametrization="mup", *, base, x, delta=None, annotations=None, key=None
) -> Parametrized:
    """A linen module in an abc-parametrization (only the ``params`` collection).

    Args:
      model: the module at the target width.
      parametrization: preset name or `ABC`.
      base: the module at the base width :math:`n_0`; ``delta``: optionally at a
        third width (see `infer_roles`).
      x: an example input (shapes only).
      annotations: per-parameter role overrides.

    Returns a `Parametrized` with ``init_fn(key, *args) -> params``,
    ``apply_fn(params, *args, **kw)`` and ``features_fn(params, x)`` (every
    submodule's output via ``capture_intermediates``; the root's is ``"f"``).
    """
    k = jax.random.PRNGKey(0) if key is None else key

    def shapes(m):
        variables = jax.eval_shape(m.init, k, x)
        extra = sorted(set(variables) - {"params"})
        if extra:
            raise ValueError(
                f"parametrize: linen modules with collections other "
                f"than 'params' ({extra}) are not supported."
            )
        return variables["params"]

    target = shapes(model)
    roles = infer_roles(target, shapes(base), None if delta is None else shapes(delta), annotations)
    info, p = _info(target, roles, parametrization)

    def init_fn(key, *args, **kwargs):
        native = model.init(key, *args, **kwargs)["params"]
        return scale_tree(info, native, "init_mult")

    def apply_fn(params, *args, **kwargs):
        return model.apply({"params": scale_tree(info, params, "fwd_mult")}, *args, **kwargs)

    def features_fn(params, x, **kwargs):
        _, state = model.apply(
            {"params": scale_tree(info, params, "fwd_mult")},
            x,
            capture_intermediates=True,
            mutable=["intermediates"],
            **kwargs,
        )
        return _named_outputs(state["intermediates"])

    return Parametrized(init_fn, apply_fn, info, p, features_fn, "linen")


def _named_outputs(tree) -> dict:
    out = {}
    for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = path_str(path)
        # `.../__call__/0` (linen tuple) or `.../__call__/value/0` (nnx)
        parts = [q for q in name.split("/") if q not in ("value",)]
        if "__call__" not in parts:
            continue
        owner = "/".join(parts[: parts.index("__call__")])
        out[owner or "f"] = v
    return out


def parametrize_nnx(
    model, parametrization="mup", *, base, delta=None, annotations=None
) -> Parametrized:
    """An nnx module in an abc-parametrization (its ``nnx.Param`` variables).

    ``init_fn()`` returns the module's current parameters rescaled (build the
    module with other ``nnx.Rngs`` for another draw); ``apply_fn(params, *args)``
    merges them into the module's graph and calls it; ``features_fn(params,
    x)`` captures every submodule's output (``nnx.capture``).
    """
    from flax import nnx

    require_no_state_updates(model, "parametrize")
    graphdef, native, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]  # flax's stub: variadic
    base_params = nnx.state(base, nnx.Param)
    delta_params = None if delta is None else nnx.state(delta, nnx.Param)
    roles = infer_roles(native, base_params, delta_params, annotations)
    info, p = _info(native, roles, parametrization)

    def init_fn(*_):
        return scale_tree(info, native, "init_mult")

    def module(params):
        return nnx.merge(graphdef, scale_tree(info, params, "fwd_mult"), rest)

    def apply_fn(params, *args, **kwargs):
        return module(params)(*args, **kwargs)

    def features_fn(params, x, **kwargs):
        m = module(params)
        y, inter = nnx.capture(m, nnx.Intermediate, method_outputs=nnx.Intermediate)(x, **kwargs)
        return _named_outputs(inter)

    return Parametrized(init_fn, apply_fn, info, p, features_fn, "nnx")
