r"""abc-parametrizations and μP for Flax modules (linen and nnx).

Which dimensions of a parameter grow with width is found the way the `mup`
package's ``set_base_shapes`` finds it: instantiate the same architecture at a
base width :math:`n_0` (and optionally a third, ``delta``, width), and compare
shapes. An axis whose size differs is width-like; its multiplier is
:math:`\bar{n} = \mathrm{size} / \text{base size}`. A weight's role (`ntk.mup.parametrize` table) follows from
which of its fan-in axes (contracted with the layer's input) and fan-out axes
grow: Dense ``(in, out)``, Conv ``HWIO`` and Embed ``(vocab, features)`` contract
the second-to-last axis; a ``DenseGeneral`` kernel with a bias contracts the
axes before the bias's shape; Flax's attention contracts ``d`` in its
query/key/value kernels ``(d, heads, head_dim)`` and ``(heads, head_dim)`` in its
out kernel, whether the heads or the head dimension grow. A vector, or any
tensor named ``bias``, is a bias if it is width-sized; anything else is fixed.
An explicit per-parameter annotation ``{"path/to/param": "input" | "hidden" |
"output" | "bias" | "fixed" | "tied"}`` (or ``(role, layer_index)``, or
``{"fan_in": axes}`` for a kernel of another layout) overrides the inference.

**Tied embeddings.** A language model that reads out through its input
embedding (``logits = embed.attend(h)``) has no output weight of its own, and
one tensor cannot take both the input's and the readout's scaling. Annotate the
embedding ``"tied"``: it is scaled as an input weight (:math:`\Theta(1)`
entries and Adam rate), and the module divides its readout by
:math:`\bar{n} = d / d_0`, ``logits = embed.attend(h) * d_0 / d`` (the `mup`
package's ``MuSharedReadout``). That makes the readout :math:`W/\bar{n}` an
output weight of μP: initial variance :math:`\propto 1/\bar{n}^2`, updates
:math:`\propto 1/\bar{n}`.

Transformers also need μP's attention logits, :math:`q \cdot k / d_\mathrm{head}`
instead of :math:`/\sqrt{d_\mathrm{head}}` (TP5 §4): pass
``attention_fn=mup.attention_fn(base_head_dim)`` to the attention module (see
`attention_fn`).

The module's own initialisation is taken to be SP (variance
:math:`\propto 1/\mathrm{fan\_in}`, Flax's default ``lecun_normal``; biases zero), i.e.
native exponents :math:`a^\circ = 0`, :math:`b^\circ = k_\mathrm{in}/2`; except Flax's
``Embed``, whose default ``embedding_init`` draws its table (a parameter named
``embedding``) with variance :math:`1/\mathrm{features}` (:math:`b^\circ = 1/2`), so
μP's :math:`\Theta(1)` embedding entries are :math:`\sqrt{\bar{n}}` times Flax's.

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

import functools
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.empirical.adapters import require_no_state_updates
from ntk.mup.abc import as_abc
from ntk.mup.parametrize import (
    ROLES,
    LeafScale,
    Parametrized,
    is_leaf_scale,
    leaf_scale,
    path_str,
    scale_tree,
)


def _shapes(tree) -> dict:
    return {
        path_str(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


# "tied": an input embedding that the module also uses as its readout
# (weight tying, ``Embed.attend``); scaled as an input weight (see the module doc).
_ANNOTATED_ROLES = ROLES + ("tied",)


def _annotation(path: str, ann) -> tuple:
    """``(role or None, layer or None, fan_in axes or None)`` of one annotation."""
    if isinstance(ann, str):
        ann = {"role": ann}
    elif isinstance(ann, (tuple, list)) and len(ann) == 2:
        ann = {"role": ann[0], "layer": ann[1]}
    if not isinstance(ann, Mapping) or not ann or set(ann) - {"role", "layer", "fan_in"}:
        raise ValueError(
            f"infer_roles: `annotations[{path!r}]` must be a role in {_ANNOTATED_ROLES}, "
            f"(role, layer index) or a dict with keys 'role', 'layer', 'fan_in'; got {ann!r}."
        )
    role, layer, fan_in = ann.get("role"), ann.get("layer"), ann.get("fan_in")
    if role is not None and role not in _ANNOTATED_ROLES:
        raise ValueError(
            f"infer_roles: `annotations[{path!r}]` must be a role in {_ANNOTATED_ROLES} "
            f"or (role, layer index); got {role!r}."
        )
    if layer is not None:
        _checks.require_int(layer, f"annotations[{path!r}] layer", "infer_roles")
    if fan_in is not None:
        fan_in = (fan_in,) if isinstance(fan_in, int) else fan_in
        if not isinstance(fan_in, (tuple, list)) or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in fan_in
        ):
            raise TypeError(
                f"infer_roles: `annotations[{path!r}]['fan_in']` must be a tuple "
                f"of axes (ints); got {ann['fan_in']!r}."
            )
        fan_in = tuple(fan_in)
    return role, layer, fan_in


# Flax's attention modules (linen's MultiHeadDotProductAttention and
# SelfAttention, nnx's MultiHeadAttention) name their projections so.
_ATTENTION_FAN_IN = {"query": (0,), "key": (0,), "value": (0,), "out": (0, 1)}


def _weight_axes(path: str, shape: tuple, shapes: dict, fan_in) -> tuple:
    """``(fan-in axes, fan-out axes)`` of a weight: the axes contracted with the
    layer's input, and the axes of its output.

    In order: an annotated ``fan_in`` (the rest are fan-out); Flax's layout of
    a kernel with a bias beside it (the bias has the kernel's output-feature
    shape, so the leading axes are contracted: ``DenseGeneral``/``LinearGeneral``,
    Conv's ``HWIO``); a rank-3 kernel of Flax's attention (query/key/value
    ``(d, heads, head_dim)`` contract axis 0, out ``(heads, head_dim, d)`` axes
    0 and 1); otherwise Dense's ``(in, out)`` and Conv's ``(..., in, out)``:
    ``(ndim - 2,)`` and ``(ndim - 1,)``, the window axes neither.
    """
    nd = len(shape)
    if fan_in is not None:
        if not all(-nd <= a < nd for a in fan_in):
            axes: tuple = ()
        else:
            axes = tuple(a % nd for a in fan_in)
        if not axes or len(set(axes)) != len(axes) or len(axes) >= nd:
            raise ValueError(
                f"infer_roles: `annotations[{path!r}]['fan_in']` must name distinct "
                f"axes of a tensor of shape {shape}, leaving at least one output "
                f"axis; got {fan_in!r}."
            )
        ins = tuple(sorted(axes))
    else:
        parts = path.split("/")
        bias = shapes.get("/".join(parts[:-1] + ["bias"])) if parts[-1] == "kernel" else None
        if bias is not None and 1 <= len(bias) < nd and tuple(shape[nd - len(bias) :]) == bias:
            ins = tuple(range(nd - len(bias)))
        elif (
            nd == 3 and parts[-1] == "kernel" and len(parts) >= 2 and parts[-2] in _ATTENTION_FAN_IN
        ):
            ins = _ATTENTION_FAN_IN[parts[-2]]
        else:
            return (nd - 2,), (nd - 1,)
    return ins, tuple(i for i in range(nd) if i not in ins)


def infer_roles(params, base, delta=None, annotations: Optional[Mapping] = None) -> dict:
    r"""``{path: (role, layer_index or None, width_mult)}`` by comparing shapes.

    A weight's axes are its fan-in axes (contracted with the layer's input) and
    its fan-out axes; see ``_weight_axes`` for how they are found. Its
    role follows from which of them grow with width (`ntk.mup.parametrize`'s
    table) and its multiplier :math:`\bar{n}` is the growth of the fan-in axes
    (hidden, output) or of the fan-out axes (input, bias): for attention's
    out kernel ``(heads, head_dim, d)`` that is :math:`d / d_0` whether the heads or
    the head dimension grow. A tensor named ``bias`` of any rank is a bias if
    any of its axes grows, and fixed if none does.

    Args:
      params: parameters (or shapes) of the target-width model.
      base: the same at the base width :math:`n_0` (multipliers are relative to it).
      delta: optionally the same at a third width; width-like axes are then
        those where ``base`` and ``delta`` differ (needed when the target
        width equals the base width).
      annotations: overrides, ``{path: role}``, ``{path: (role, layer)}`` or
        ``{path: {"role": ..., "layer": ..., "fan_in": axes}}`` (any of the
        keys; the role is inferred from ``fan_in`` when not given).

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
    parsed = {path: _annotation(path, ann) for path, ann in dict(annotations or {}).items()}
    unknown = sorted(set(parsed) - set(target))
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
        role, layer, fan_in = parsed.get(path, (None, None, None))
        nd = len(shape)
        wide = {i for i in range(nd) if s0[i] != sr[i]}
        is_bias = nd >= 1 and (nd == 1 or path.split("/")[-1] == "bias") and fan_in is None
        if is_bias:
            ins, outs = (), tuple(range(nd))
        else:
            ins, outs = _weight_axes(path, shape, target, fan_in)
        if role is None:
            extra = sorted(wide - set(ins) - set(outs))
            if extra:
                raise ValueError(
                    f"infer_roles: {path} of shape {shape} has width-like axes "
                    f"{sorted(wide)}, and axes {extra} are neither its fan-in "
                    f"{list(ins)} nor its fan-out {list(outs)} axes. Annotate which "
                    f"axes it contracts with its input: annotations={{{path!r}: "
                    f"{{'fan_in': (0,)}}}} (a DenseGeneral kernel of shape "
                    f"(in..., out...) without a bias)."
                )
            k_in, k_out = bool(wide & set(ins)), bool(wide & set(outs))
            if is_bias:
                role = "bias" if k_out else "fixed"
            else:
                role = {(0, 1): "input", (1, 1): "hidden", (1, 0): "output", (0, 0): "fixed"}[
                    (int(k_in), int(k_out))
                ]
        axes = ins if role in ("hidden", "output") else outs
        mult = float(np.prod([shape[i] / s0[i] for i in axes])) if role != "fixed" else 1.0
        out[path] = (role, layer, mult)
    return out


def _info(params, roles: dict, parametrization) -> tuple:
    """`LeafScale` tree and the `ABC` for ``params`` with inferred ``roles``."""
    counts = {
        r: sum(1 for v in roles.values() if v[0] == r)
        for r in ("input", "hidden", "output", "tied")
    }
    if counts["input"] + counts["tied"] < 1 or counts["output"] + counts["tied"] < 1:
        raise ValueError(
            f"parametrize: found {counts['input']} input and "
            f"{counts['output']} output weights; an abc-parametrization "
            "needs both. Width-like axes are those where the model and `base` "
            "differ: is `base` at another width? At the base width itself "
            "(e.g. a coordinate check starting there) pass `delta=` a model "
            "at a third width. An embedding that is also the readout (weight "
            "tying) is annotated {path: 'tied'}."
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
        if role == "tied":
            role = "input"
        if role == "hidden" and layer is None:
            layer = 2
        b_nat = 0.5 if (np.ndim(x) >= 2 and role in ("hidden", "output")) else 0.0
        if role == "input" and path_str(path).split("/")[-1] == "embedding":
            # Flax's Embed (linen and nnx) draws variance 1/features, the
            # width: its entries are n^{-1/2} natively, not Θ(1).
            b_nat = 0.5
        if role == "fixed":
            return LeafScale("fixed", None, 1.0)
        return leaf_scale(role, layer, mult, p, 0.0, b_nat)

    info = jax.tree_util.tree_map_with_path(one, params)
    return info, p


def parametrize_linen(
    model, parametrization="mup", *, base, x, delta=None, annotations=None, key=None
) -> Parametrized:
    """A linen module in an abc-parametrization (its ``params`` collection).

    Args:
      model: the module at the target width.
      parametrization: preset name or `ABC`.
      base: the module at the base width :math:`n_0`; ``delta``: optionally at a
        third width (see `infer_roles`).
      x: an example input (shapes only).
      annotations: per-parameter role overrides.

    Returns a `Parametrized` with ``init_fn(key, *args) -> params``,
    ``apply_fn(params, *args, variables=None, **kw)`` and ``features_fn(params,
    x, variables=None, **kw)`` (every submodule's output via
    ``capture_intermediates``; the root's is ``"f"``). Other collections
    (``batch_stats`` of BatchNorm, a decoding ``cache``) are not trained and do
    not scale: take them from ``model.init`` and pass them as ``variables``,
    with linen's ``mutable=`` to update them, as with ``model.apply``.

    Example (BatchNorm on batch statistics):
      >>> import jax, jax.numpy as jnp
      >>> from flax import linen as nn
      >>> from ntk import mup
      >>> class Net(nn.Module):
      ...     width: int
      ...     @nn.compact
      ...     def __call__(self, x):
      ...         h = nn.BatchNorm(use_running_average=False)(nn.Dense(self.width)(x))
      ...         return nn.Dense(1)(nn.relu(h))
      >>> x = jnp.ones((4, 3))
      >>> net = mup.parametrize(Net(256), "mup", base=Net(64), x=x)
      >>> params = net.init(jax.random.PRNGKey(0), x)
      >>> stats = Net(256).init(jax.random.PRNGKey(0), x)["batch_stats"]
      >>> y, updates = net.apply_fn(params, x, variables={"batch_stats": stats},
      ...                           mutable=["batch_stats"])
      >>> y.shape, sorted(updates)
      ((4, 1), ['batch_stats'])
    """
    k = jax.random.PRNGKey(0) if key is None else key

    def shapes(m):
        variables = jax.eval_shape(m.init, k, x)
        if "params" not in variables:
            raise ValueError(
                f"parametrize: {type(m).__name__} has no 'params' collection "
                f"(its collections: {sorted(variables)}), nothing to parametrize."
            )
        return variables["params"]

    target = shapes(model)
    roles = infer_roles(target, shapes(base), None if delta is None else shapes(delta), annotations)
    info, p = _info(target, roles, parametrization)

    def init_fn(key, *args, **kwargs):
        native = model.init(key, *args, **kwargs)["params"]
        return scale_tree(info, native, "init_mult")

    def all_variables(params, variables):
        if variables is None:
            return {"params": scale_tree(info, params, "fwd_mult")}
        if not isinstance(variables, Mapping) or "params" in variables:
            got = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
            raise ValueError(
                "parametrize: `variables` must be a dict of the module's other "
                f"collections (e.g. {{'batch_stats': ...}}), without 'params'; got {got}."
            )
        return {**variables, "params": scale_tree(info, params, "fwd_mult")}

    def apply_fn(params, *args, variables=None, **kwargs):
        return model.apply(all_variables(params, variables), *args, **kwargs)

    def features_fn(params, x, variables=None, **kwargs):
        _, state = model.apply(
            all_variables(params, variables),
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
    x)`` captures every submodule's output (``nnx.capture``). Both are pure
    functions of the parameters, so the module must not update its own state
    when called (Dropout, BatchNorm on batch statistics: ``module.eval()``).

    **Training the module itself.** In TP5's Table 3 gauge of μP
    (``mup.abc("mup", L, form="table3")``) every forward multiplier is 1: μP is
    the module's own forward pass with rescaled initial weights and per-tensor
    learning rates. So ``nnx.update(model, net.init_fn())`` makes ``model``
    the μP network, and ``nnx.Optimizer(model, mup.adam(lr, net.info),
    wrt=nnx.Param)`` trains it like any nnx module, in training mode with its
    Dropout and BatchNorm.
    """
    from flax import nnx

    graphdef, native, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]  # flax's stub: variadic
    base_params = nnx.state(base, nnx.Param)
    delta_params = None if delta is None else nnx.state(delta, nnx.Param)
    roles = infer_roles(native, base_params, delta_params, annotations)
    info, p = _info(native, roles, parametrization)

    def init_fn(*_):
        return scale_tree(info, native, "init_mult")

    in_place = all(
        s.fwd_mult == 1.0 for s in jax.tree_util.tree_leaves(info, is_leaf=is_leaf_scale)
    )
    hint = (
        " Or train the module itself: nnx.update(model, net.init_fn()) (every forward "
        "multiplier is 1 here)."
        if in_place
        else " Or parametrize in TP5's Table 3 gauge (mup.abc(..., form='table3')), whose "
        "forward multipliers are all 1, and train the module itself."
    )

    def module(params):
        m = nnx.merge(graphdef, scale_tree(info, params, "fwd_mult"), rest)
        require_no_state_updates(m, "parametrize (apply_fn)", hint)
        return m

    def apply_fn(params, *args, **kwargs):
        return module(params)(*args, **kwargs)

    def features_fn(params, x, **kwargs):
        m = module(params)
        y, inter = nnx.capture(m, nnx.Intermediate, method_outputs=nnx.Intermediate)(x, **kwargs)
        return _named_outputs(inter)

    return Parametrized(init_fn, apply_fn, info, p, features_fn, "nnx")


def attention_fn(base_head_dim: int, attention: Optional[Callable] = None) -> Callable:
    r"""μP's attention logits for Flax's attention modules (TP5 §4 and Table 3).

    Standard attention divides the logits by :math:`\sqrt{d_\mathrm{head}}`: right
    at initialisation, when queries and keys are independent and
    :math:`q \cdot k = \Theta(\sqrt{d_\mathrm{head}})`. Training correlates them,
    so under μP :math:`q \cdot k` grows like :math:`d_\mathrm{head}` and the
    logits like :math:`\sqrt{d_\mathrm{head}}`; μP divides by
    :math:`d_\mathrm{head}` instead. Scaled to equal standard attention at the
    base width (where μP is the network's native parametrization):

    .. math::

        \mathrm{logits} = \frac{\sqrt{d_{\mathrm{head},0}}}{d_\mathrm{head}}\, q \cdot k
        = \sqrt{\frac{d_{\mathrm{head},0}}{d_\mathrm{head}}}
          \cdot \frac{q \cdot k}{\sqrt{d_\mathrm{head}}}.

    Args:
      base_head_dim: :math:`d_{\mathrm{head},0}`, the head dimension of the base
        model passed to `mup.parametrize` (``qkv_features // num_heads`` there).
      attention: the attention to rescale; default Flax's
        ``dot_product_attention`` (linen's, or nnx's when ``nnx.MultiHeadAttention``
        calls it).

    Returns:
      a function for the modules' ``attention_fn=`` argument, with the signature of
      ``attention`` (linen passes only the keywords it lists).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import linen as nn
      >>> from ntk import mup
      >>> q = k = v = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 4, 64))
      >>> mu = mup.attention_fn(base_head_dim=16)(q, k, v)        # d_head = 64
      >>> sp = nn.dot_product_attention(q / 2, k, v)              # √(16 / 64) = 1/2
      >>> bool(jnp.allclose(mu, sp))
      True
      >>> attn = nn.MultiHeadDotProductAttention(num_heads=4,
      ...                                        attention_fn=mup.attention_fn(16))
    """
    base_head_dim = _checks.require_int(base_head_dim, "base_head_dim", "attention_fn")
    from flax import linen, nnx

    if attention is not None:
        _checks.require_callable(attention, "attention", "attention_fn", "an attention function")

    def pick(kwargs) -> Callable:
        if attention is not None:
            return attention
        # nnx's module passes its own keywords (is_causal) whatever the signature;
        # linen's passes only those linen's function lists.
        nnx_call = "is_causal" in kwargs or isinstance(kwargs.get("module"), nnx.Module)
        return nnx.dot_product_attention if nnx_call else linen.dot_product_attention

    @functools.wraps(attention if attention is not None else linen.dot_product_attention)
    def scaled(query, *args, **kwargs):
        factor = np.sqrt(base_head_dim / query.shape[-1])
        return pick(kwargs)(query * jnp.asarray(factor, query.dtype), *args, **kwargs)

    return scaled
