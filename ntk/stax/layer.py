"""A layer is a record of three functions, as in neural-tangents and `jax.example_libraries.stax`.

``init_fn(key, input_shape) -> (output_shape, params)`` draws the parameters of
the finite network, ``apply_fn(params, x, **kwargs) -> y`` evaluates it, and
``kernel_fn`` maps the infinite-width `Kernel` of the layer's inputs to that of
its outputs. `Layer` unpacks like NT's triple::

    init_fn, apply_fn, kernel_fn = stax.serial(stax.Dense(512), stax.Relu())

The public ``kernel_fn`` is a `KernelFn`: called on arrays it builds the input
kernel, applies the layer's transform and returns what ``get`` names; called on
a `Kernel` (or a list, between ``FanOut`` and ``FanIn*``) it returns the
transformed `Kernel`, which is how combinators compose layers.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from ntk.kernel import Kernel, inputs_to_kernel, select, validate_get


class KernelFn:
    """``kernel_fn(x1, x2=None, get=None)`` of a layer.

    Args (of a call):
      x1: ``(N1, *S, C)`` inputs — vectors ``(N1, C)`` or images NHWC — or a
        `Kernel` / list of Kernels to transform.
      x2: ``(N2, *S, C)`` inputs or None (then ``x2 = x1``).
      get: None (return the `Kernel`), one of ``"nngp"``, ``"ntk"``,
        ``"cov1"``, ``"cov2"`` (return that array), or a tuple of them (return
        a namedtuple).

    Attributes:
      transform: ``Kernel -> Kernel`` (or lists of them for branching layers).
      name: the layer's name, used in error messages.
      needs_full_spatial: whether some layer in it (pooling) needs covariances
        between different spatial positions; otherwise only same-position
        covariances are computed, which is much cheaper for images.
      children: the sub-layers of a combinator, for tools that walk networks.
      spec: what a tool needs to know of a leaf layer's math beyond its
        functions, e.g. ``{"kind": "Dense", "W_std": 1.0, "b_std": None,
        "parameterization": "ntk", "s": (1, 1)}`` (used by structured
        empirical-NTK evaluation); None for layers without parameters.
    """

    def __init__(self, transform: Callable, name: str, *,
                 needs_full_spatial: bool = False,
                 children: Sequence["Layer"] = (), spec: Optional[dict] = None):
        self.transform = transform
        self.spec = spec
        self.name = name
        self.needs_full_spatial = needs_full_spatial
        self.children = tuple(children)
        self._jitted = jax.jit(self._from_arrays,
                               static_argnames=("get", "compute_ntk"))

    def __repr__(self):
        return f"KernelFn({self.name})"

    def _from_arrays(self, x1, x2, get, compute_ntk, **kwargs):
        k = inputs_to_kernel(x1, x2, diagonal_spatial=not self.needs_full_spatial,
                             compute_ntk=compute_ntk)
        return select(self.transform(k, **kwargs), get)

    def __call__(self, x1, x2=None, get=None, **kwargs):
        if isinstance(x1, Kernel) or (isinstance(x1, (list, tuple)) and x1
                                      and isinstance(x1[0], Kernel)):
            validate_get(get)
            out = self.transform(x1, **kwargs)
            if get is None:
                return out
            if isinstance(out, list):
                return [select(o, get) for o in out]
            return select(out, get)
        names = validate_get(get)
        get = names[0] if isinstance(get, str) else names
        x1, x2 = check_inputs(x1, x2, self.name)
        compute_ntk = names is None or "ntk" in names
        if kwargs:
            return self._from_arrays(x1, x2, get, compute_ntk, **kwargs)
        return self._jitted(x1, x2, get=get, compute_ntk=compute_ntk)


class Layer(NamedTuple):
    """``(init_fn, apply_fn, kernel_fn)``; unpacks like neural-tangents' triple."""

    init_fn: Callable
    apply_fn: Callable
    kernel_fn: KernelFn

    @property
    def name(self) -> str:
        return self.kernel_fn.name


def make_layer(name: str, init_fn: Callable, apply_fn: Callable,
               transform: Callable, *, needs_full_spatial: bool = False,
               children: Sequence[Layer] = (), spec: Optional[dict] = None) -> Layer:
    """Build a `Layer` from its finite-width functions and kernel transform."""
    kernel_fn = KernelFn(transform, name, needs_full_spatial=needs_full_spatial,
                         children=children, spec=spec)
    return Layer(init_fn, apply_fn, kernel_fn)


def as_layer(layer: Any) -> Layer:
    """Accept any ``(init_fn, apply_fn, kernel_fn)`` triple (e.g. user-made)."""
    if isinstance(layer, Layer):
        return layer
    if not (isinstance(layer, tuple) and len(layer) in (3, 4)):
        raise TypeError("stax combinators take layers, i.e. (init_fn, apply_fn, "
                        f"kernel_fn) triples; got {type(layer).__name__}.")
    init_fn, apply_fn, kernel_fn = layer[:3]
    if isinstance(kernel_fn, KernelFn):
        return Layer(init_fn, apply_fn, kernel_fn)
    name = getattr(kernel_fn, "__name__", "custom")
    return make_layer(name, init_fn, apply_fn, kernel_fn)


def check_inputs(x1, x2, name: str):
    """Boundary checks for array inputs; clear errors instead of XLA's."""
    x1 = _as_array(x1, "x1", name)
    if x1.ndim < 2:
        raise ValueError(f"{name}: `x1` must have shape (batch, ..., features) "
                         f"with rank >= 2; got shape {tuple(x1.shape)}.")
    if x1.shape[-1] == 0:
        raise ValueError(f"{name}: `x1` must have at least one feature (last "
                         f"axis); got shape {tuple(x1.shape)}.")
    if x2 is not None:
        x2 = _as_array(x2, "x2", name)
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(f"{name}: `x1` and `x2` must agree in all but the "
                             f"batch axis; got x1 {tuple(x1.shape)} and x2 "
                             f"{tuple(x2.shape)}.")
    return x1, x2


def _as_array(x, arg: str, name: str):
    if not hasattr(x, "shape"):
        try:
            x = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise TypeError(f"{name}: `{arg}` must be an array; got "
                            f"{type(x).__name__}.") from e
    if not np.issubdtype(np.dtype(x.dtype), np.number):
        raise TypeError(f"{name}: `{arg}` must be a numeric array; got dtype "
                        f"{x.dtype}.")
    try:
        concrete = np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return x  # traced: finiteness cannot be checked outside the trace
    if not np.all(np.isfinite(concrete)):
        bad = int(np.size(concrete) - np.isfinite(concrete).sum())
        raise ValueError(f"{name}: `{arg}` must be finite; got {bad} NaN/inf "
                         f"entries of {np.size(concrete)}.")
    return x


def check_std(value, arg: str, name: str, allow_none: bool = False):
    """A standard deviation must be a non-negative scalar (checked when concrete)."""
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name}: `{arg}` must be a non-negative number; got None.")
    try:
        v = np.asarray(value)
    except jax.errors.TracerArrayConversionError:
        return  # traced hyperparameter (kernel learning): checked by the caller's math
    if v.ndim != 0 or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{name}: `{arg}` must be a scalar number; got "
                         f"{type(value).__name__} of shape {v.shape}, dtype {v.dtype}.")
    if not float(v) >= 0:
        raise ValueError(f"{name}: `{arg}` must be >= 0; got {float(v)}.")


def split_rng(kwargs: dict, n: int) -> list[dict]:
    """Per-sub-layer kwargs: an ``rng`` is split so dropout masks differ."""
    rng: Optional[jax.Array] = kwargs.get("rng")
    if rng is None:
        return [kwargs] * n
    keys = jax.random.split(rng, n)
    return [{**kwargs, "rng": keys[i]} for i in range(n)]
