r"""Apply an abc-parametrization to a finite network: per-parameter scales.

Every trainable tensor (a "leaf") gets a role from which of its dimensions grow
with width :math:`n` (TP5 §4 / Table 3; the `mup` package's "infshape"):

=========  =========================  ==========================================
role       width-like dims            examples
=========  =========================  ==========================================
input      fan-out only               first Dense kernel, embedding tables
hidden     fan-in and fan-out         Dense(n) → Dense(n) kernels, conv I→O
output     fan-in only                readout kernel
bias       a width-sized vector       biases and norm scales of hidden layers
fixed      none                       readout bias, scalars
=========  =========================  ==========================================

**The rule.** Write :math:`\bar{n} = n / n_0` for the leaf's width multiplier relative
to a base width :math:`n_0` (``base_width=1`` is TP4's literal :math:`n`; a larger base
only changes width-independent constants, so :math:`r`, stability and the regime are
the same, and at :math:`n = n_0` every parametrization coincides with the
network's native one — the property μTransfer tunes at). A leaf of role
``input``/``bias`` takes the exponents :math:`(a_1, b_1, c_1)` of layer 1 (TP4:
biases are input weights), ``hidden`` those of its layer, ``output``
:math:`(a_{L+1}, b_{L+1}, c_{L+1})`, ``fixed`` none. With the network's own
(native) exponents :math:`(a^\circ, b^\circ)` — SP for Flax modules,
:math:`(k_\mathrm{in}/2, 0)` for a ``stax.Dense(parameterization="ntk")`` — the
trainable parameter :math:`w` enters the native code as

.. math::

    \mathrm{native} = \bar{n}^{a^\circ - a} \cdot w, \qquad
    w_0 = \bar{n}^{b^\circ - b} \cdot \mathrm{native}_0,

so :math:`W = \bar{n}^{-a} w` and :math:`w \sim \mathcal{N}(0, \bar{n}^{-2b})` up to the
native constants (:math:`\sigma_w^2 / \mathrm{fan\_in}(n_0)`), exactly TP4 Def. 3.1 in
units of :math:`\bar{n}`. SGD then uses the learning rate :math:`\eta \bar{n}^{-c_l}`
(`LeafScale.lr_mult`) and Adam :math:`\eta \bar{n}^{-c_\mathrm{adam}}` with
:math:`c_\mathrm{adam} = c_l + a_l + g_l`, :math:`g_l = \omega` for :math:`l \le L` and
0 for the readout: Adam's step has :math:`\Theta(1)` entries whatever the gradient's
size, so this is the exponent that gives :math:`\Delta W` the per-entry size SGD gives
it (for μP it reproduces TP5 Table 3's Adam column: :math:`1`,
:math:`1/\mathrm{fan\_in}`, :math:`1/\mathrm{fan\_in}`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from ntk import _checks
from ntk.mup.abc import ABC, as_abc

ROLES = ("input", "hidden", "output", "bias", "fixed")


@dataclasses.dataclass(frozen=True)
class LeafScale:
    r"""How one parameter tensor scales with width.

    Attributes:
      role: one of ``ROLES``.
      layer: the abc layer index ``l`` whose exponents it uses (None: fixed).
      width_mult: :math:`\bar{n} = n / n_0` of its width-like dimension (1 if none).
      a, b, c: its abc exponents (:math:`b = \infty`: zero init).
      c_adam: learning-rate exponent for Adam (module docstring).
      a_native, b_native: the exponents the network's own code implements.

    Example:
      >>> from ntk import mup
      >>> s = mup.LeafScale("output", layer=3, width_mult=4.0, a=0.5, b=0.5, c=0.0,
      ...                   c_adam=0.5, a_native=0.5, b_native=0.0)   # μP readout, n̄ = 4
      >>> s.fwd_mult, s.init_mult, s.lr_mult, s.adam_lr_mult   # n̄^{a°−a}, n̄^{b°−b}, ...
      (1.0, 0.5, 1.0, 0.5)
    """

    role: str
    layer: Optional[int]
    width_mult: float
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    c_adam: float = 0.0
    a_native: float = 0.0
    b_native: float = 0.0

    @property
    def fwd_mult(self) -> float:
        r""":math:`\bar{n}^{a^\circ - a}`:
        :math:`\text{native parameter} = \mathrm{fwd\_mult} \cdot w`."""
        return self.width_mult ** (self.a_native - self.a)

    @property
    def init_mult(self) -> float:
        r""":math:`\bar{n}^{b^\circ - b}`: :math:`w_0 = \mathrm{init\_mult} \cdot \mathrm{native}_0`
        (0 for a zero-init readout)."""
        return 0.0 if math.isinf(self.b) else self.width_mult ** (self.b_native - self.b)

    @property
    def lr_mult(self) -> float:
        r"""SGD learning-rate multiplier :math:`\bar{n}^{-c}`."""
        return self.width_mult ** (-self.c)

    @property
    def adam_lr_mult(self) -> float:
        r"""Adam learning-rate multiplier :math:`\bar{n}^{-c_\mathrm{adam}}`."""
        return self.width_mult ** (-self.c_adam)


class Parametrized(NamedTuple):
    """A network in an abc-parametrization.

    Attributes:
      init_fn: draws the trainable parameters ``w`` (same signature as the
        wrapped network's init: stax ``(key, input_shape) -> (shape, w)``,
        linen ``(key, *args) -> variables``, nnx ``() -> state``).
      apply_fn: ``(w, x, **kwargs) -> outputs``.
      info: pytree of `LeafScale`, the structure of ``w``; what `mup.sgd` and
        `mup.adam` read.
      abc: the `ABC`.
      features_fn: ``(w, x) -> {name: array}`` of preactivations :math:`h^l` and the
        output :math:`f` (used by `coord_check`), or None.
      kind: ``"stax"``, ``"linen"`` or ``"nnx"`` (how `init` calls ``init_fn``).

    Example (init and apply, as ``ntk.mup.parametrize.parametrize_stax`` builds them):
      >>> import jax
      >>> from ntk import mup, stax
      >>> net = mup.parametrize(stax.serial(stax.Dense(256), stax.Relu(), stax.Dense(1)),
      ...                       "mup", base_width=64)
      >>> net.kind, net.abc.regime, [s.role for s in jax.tree_util.tree_leaves(net.info)]
      ('stax', 'feature learning', ['input', 'output'])
    """

    init_fn: Callable
    apply_fn: Callable
    info: Any
    abc: ABC
    features_fn: Optional[Callable] = None
    kind: str = "stax"

    def init(self, key, x):
        """Trainable parameters for inputs like ``x``, whatever the framework."""
        if self.kind == "stax":
            return self.init_fn(key, tuple(x.shape))[1]
        if self.kind == "linen":
            return self.init_fn(key, x)
        return self.init_fn()


def is_leaf_scale(x) -> bool:
    return isinstance(x, LeafScale)


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


def like(spec, tree):
    """``spec``'s leaves in ``tree``'s structure, matched by path: the same
    parameters in another container (a ``FrozenDict``; the ``nnx.State`` of
    Params that ``nnx.Optimizer`` passes as plain arrays). A ValueError when
    the paths differ."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    nnx = sys.modules.get("flax.nnx")
    wrapped = (lambda v: isinstance(v, nnx.Variable)) if nnx is not None else (lambda v: False)
    flat = jax.tree_util.tree_flatten_with_path(spec, is_leaf=wrapped)[0]
    by_path = {path_str(p): (v.get_value() if wrapped(v) else v) for p, v in flat}
    names = [path_str(p) for p, _ in leaves]
    if sorted(names) != sorted(by_path):
        missing = sorted(set(names) ^ set(by_path))[:4]
        raise ValueError(
            f"the parameters do not match `info` (was it made for these parameters?): "
            f"{len(names)} tensors against {len(by_path)}; these differ: {missing}."
        )
    return jax.tree_util.tree_unflatten(treedef, [by_path[n] for n in names])


def scale_like(mults, tree):
    """Each leaf of ``tree`` times its multiplier in ``mults`` (a tree of numbers
    over the same parameters, matched by path when the containers differ:
    `like`)."""

    def f(m, p):
        return p if m == 1.0 else p * jnp.asarray(m, p.dtype)

    try:
        return jax.tree_util.tree_map(f, mults, tree)
    except ValueError:
        return jax.tree_util.tree_map(f, like(mults, tree), tree)


def scale_tree(info, params, attr: str):
    """Multiply each leaf of ``params`` by ``getattr(info_leaf, attr)``."""
    mults = jax.tree_util.tree_map(lambda s: getattr(s, attr), info, is_leaf=is_leaf_scale)
    return scale_like(mults, params)


def leaf_scale(
    role: str,
    layer_index: Optional[int],
    width_mult: float,
    p: ABC,
    a_native: float = 0.0,
    b_native: float = 0.0,
) -> LeafScale:
    """The `LeafScale` of a tensor of ``role`` in parametrization ``p``."""
    _checks.require_one_of(role, ROLES, "role", "leaf_scale")
    if not isinstance(p, ABC):
        raise TypeError(f"leaf_scale: `p` must be an ABC; got {type(p).__name__}.")
    _checks.require_positive(width_mult, "width_mult", "leaf_scale")
    if role == "fixed":
        return LeafScale(
            "fixed", None, 1.0, a_native=a_native, b_native=b_native, a=a_native, b=b_native
        )
    l = {"input": 1, "bias": 1, "output": p.depth + 1}.get(role, layer_index)
    if l is None or not 1 <= l <= p.depth + 1:
        raise ValueError(
            f"leaf_scale: a {role} tensor needs `layer_index` in "
            f"1..{p.depth + 1}; got {layer_index!r}."
        )
    a, b, c = p.layer(l)
    if role == "bias" and math.isinf(b):
        b = 0.0
    g = 0.0 if l == p.depth + 1 else p.omega
    return LeafScale(role, l, float(width_mult), a, b, c, c + a + g, a_native, b_native)


# ------------------------------------------------------------------- stax


def _affine_layers(layer, path=(), stacked=False, out=None, unknown=None):
    """``[(path, spec, stacked)]`` of affine layers (`ntk.stax.spec.Affine`:
    Dense, Conv, …) in traversal order, and ``[(path, name)]`` of the leaves
    whose parameters' width scaling is unknown (neither affine nor
    parameterless)."""
    from ntk.stax import spec as specs

    out = [] if out is None else out
    unknown = [] if unknown is None else unknown
    spec = layer.kernel_fn.spec
    if isinstance(spec, specs.Affine):
        out.append((path, spec, stacked))
    elif isinstance(spec, specs.Repeat):
        _affine_layers(spec.layer, path, True, out, unknown)
    elif isinstance(spec, (specs.Serial, specs.Parallel)):
        for i, child in enumerate(spec.layers):
            _affine_layers(child, path + (i,), stacked, out, unknown)
    elif not isinstance(spec, specs.Parameterless):
        unknown.append((path, layer.name))
    return out, unknown


def _get(tree, path):
    for i in path:
        tree = tree[i]
    return tree


def _set(tree, path, value):
    if not path:
        return value
    items = list(tree)
    items[path[0]] = _set(items[path[0]], path[1:], value)
    return tuple(items) if isinstance(tree, tuple) else items


def parametrize_stax(
    model,
    parametrization="mup",
    *,
    base_width: float = 1.0,
    input_shape: Optional[Sequence[int]] = None,
) -> Parametrized:
    r"""An ``ntk.stax`` network in an abc-parametrization (roles by position).

    The first Dense/Conv layer is the input layer, the last the readout, the
    others hidden (``repeat`` blocks included); layers are found through the
    typed records in ``kernel_fn.spec`` (`ntk.stax.spec`); a layer with
    parameters that is not affine (`ntk.stax.spec.Affine`) is refused, since
    how its parameters should scale with width is unknown.

    Args:
      model: ``(init_fn, apply_fn, kernel_fn)`` from ``stax.serial(...)``.
      parametrization: a preset name (see `abc`) or an `ABC` whose depth is
        the number of affine layers minus one.
      base_width: :math:`n_0`; width multipliers are :math:`\mathrm{dim} / n_0`.
      input_shape: an input shape for a dry run of ``init_fn`` (default
        ``(1, 1)``; needed for convolutional networks).

    Example:
      >>> import jax
      >>> from ntk import stax
      >>> from ntk.mup.parametrize import parametrize_stax
      >>> net = parametrize_stax(stax.serial(stax.Dense(256), stax.Relu(),
      ...                                    stax.Dense(1)), "mup", base_width=64)
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
      >>> _, w = net.init_fn(jax.random.PRNGKey(1), (8, 3)); y = net.apply_fn(w, x)
      >>> y.shape
      (8, 1)
    """
    from ntk.stax.layer import KernelFn, as_layer

    if not (isinstance(model, tuple) and len(model) >= 3 and isinstance(model[2], KernelFn)):
        raise TypeError(
            "parametrize: a stax model must be the (init_fn, apply_fn, "
            "kernel_fn) triple of ntk.stax (its kernel_fn records the "
            f"layers); got {type(model).__name__}."
        )
    if isinstance(base_width, bool):
        raise TypeError(f"parametrize: `base_width` must be a positive number; got {base_width!r}.")
    _checks.require_positive(base_width, "base_width", "parametrize")
    base_width = float(base_width)
    if input_shape is not None:
        try:
            input_shape = tuple(
                _checks.require_int(d, "input_shape", "parametrize") for d in input_shape
            )
        except TypeError:
            raise TypeError(
                f"parametrize: `input_shape` must be a tuple of positive "
                f"ints, e.g. (1, H, W, C); got {input_shape!r}."
            ) from None
    model = as_layer(model)
    affine, unknown = _affine_layers(model)
    if len(affine) < 2:
        raise ValueError(
            f"parametrize: the network needs at least 2 Dense/Conv "
            f"layers (input and readout); found {len(affine)} in "
            f"{model.name}."
        )
    for i in (0, len(affine) - 1):
        if affine[i][2]:
            raise ValueError(
                "parametrize: the input and readout layers must not be "
                "inside stax.repeat (their roles differ from hidden)."
            )
    for _, spec, _ in affine:
        if tuple(spec.s) != (1, 1):
            raise ValueError(
                f"parametrize: NT width multipliers s={spec.s} are not supported; use s=(1, 1)."
            )
    p = as_abc(parametrization, len(affine) - 1)
    n_layers = len(affine)

    def build_info(params):
        info = jax.tree_util.tree_map(lambda x: LeafScale("fixed", None, 1.0), params)
        covered = 0
        for idx, (path, spec, _) in enumerate(affine):
            W, bias = _get(params, path)
            k_in, k_out = int(idx > 0), int(idx < n_layers - 1)
            role = ("input", "hidden", "output")[(idx > 0) + (idx == n_layers - 1)]
            mult = (spec.in_channels(W) if k_in else W.shape[-1]) / base_width
            a_nat, b_nat = (k_in / 2, 0.0) if spec.parameterization == "ntk" else (0.0, k_in / 2)
            w_scale = leaf_scale(role, idx + 1, mult, p, a_nat, b_nat)
            b_scale = None
            if bias is not None:
                b_scale = (
                    leaf_scale("bias", None, bias.shape[-1] / base_width, p)
                    if k_out
                    else LeafScale("fixed", None, 1.0)
                )
            info = _set(info, path, (w_scale, b_scale))
            covered += 1 + (bias is not None)
        for path, name in unknown:
            if jax.tree_util.tree_leaves(_get(params, path)):
                raise ValueError(
                    f"parametrize: layer {name} has parameters but is "
                    "not affine (Dense, Conv, …), so how they scale "
                    "with width is unknown; only affine layers may "
                    "carry parameters."
                )
        n_leaves = len(jax.tree_util.tree_leaves(params))
        if n_leaves != covered:
            raise ValueError(
                f"parametrize: {n_leaves - covered} parameter tensors "
                "belong to layers other than Dense/Conv, whose width "
                "scaling is unknown; only Dense/Conv may carry "
                "parameters."
            )
        return info

    cache = {}

    def info_for(params):
        key = tuple((tuple(x.shape)) for x in jax.tree_util.tree_leaves(params))
        if key not in cache:
            cache[key] = build_info(params)
        return cache[key]

    def init_fn(key, in_shape):
        out_shape, native = model.init_fn(key, in_shape)
        return out_shape, scale_tree(info_for(native), native, "init_mult")

    def apply_fn(w, x, **kwargs):
        return model.apply_fn(scale_tree(info_for(w), w, "fwd_mult"), x, **kwargs)

    def features_fn(w, x, **kwargs):
        return _stax_features(model, scale_tree(info_for(w), w, "fwd_mult"), x, affine, **kwargs)

    # `info` does not depend on the input dimension (the input layer's
    # multiplier uses its fan-out), so a dummy vector input fixes it.
    shape = tuple(input_shape) if input_shape is not None else (1, 1)
    try:
        _, native = jax.eval_shape(lambda k: model.init_fn(k, shape), jax.random.PRNGKey(0))
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise ValueError(
            f"parametrize: could not initialise {model.name} on inputs "
            f"of shape {shape}; pass `input_shape` (e.g. (1, H, W, C) "
            f"for images). ({type(e).__name__}: {e})"
        ) from None
    return Parametrized(init_fn, apply_fn, info_for(native), p, features_fn)


def _stax_features(model, native, x, affine, **kwargs) -> dict:
    """Outputs of the top-level serial's affine layers (``h^l``) and ``f``."""
    from ntk.stax import spec as specs
    from ntk.stax._internal import split_rng

    spec = model.kernel_fn.spec
    out = {}
    if not isinstance(spec, specs.Serial) or any(len(p) != 1 for p, _, _ in affine):
        out["f"] = model.apply_fn(native, x, **kwargs)
        return out
    positions = {p[0]: i for i, (p, _, _) in enumerate(affine)}
    children = spec.layers
    for i, (child, prm, kw) in enumerate(zip(children, native, split_rng(kwargs, len(children)))):
        x = child.apply_fn(prm, x, **kw)
        if i in positions and positions[i] < len(affine) - 1:
            out[f"h^{positions[i] + 1}"] = x
    out["f"] = x
    return out
