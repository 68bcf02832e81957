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

import dataclasses
from typing import Any, Callable, Iterable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk._autodiff import snap
from ntk.stax._blocks import blockwise
from ntk.stax._internal import identical, safe_sqrt, split_static_kwargs
from ntk.kernel import (
    SHAPE_NAMES,
    Kernel,
    constant_mask,
    inputs_to_kernel,
    select,
    validate_get,
)
from ntk.stax.masking import MaskedArray, check_mask_shape, masked_apply, masked_transform
from ntk.stax.spec import Opaque, Spec


class KernelFn:
    """``kernel_fn(x1, x2=None, get=None)`` of a layer.

    Call arguments:
      x1: ``(N1, *S, C)`` inputs — vectors ``(N1, C)`` or images NHWC — or a
        `Kernel` / list of Kernels to transform; a `MaskedArray` is masked
        by its mask (`ntk.stax.masking`).
      x2: ``(N2, *S, C)`` inputs or None (then ``x2 = x1``).
      get: None (return the `Kernel`), one of ``"nngp"``, ``"ntk"``,
        ``"cov1"``, ``"cov2"`` (return that array), ``"shape1"``,
        ``"shape2"`` (the finite network's output shapes, as NT returns
        them), or a tuple of them (return a namedtuple).
      mask_constant: input entries equal to it (NaN matches NaN) are masked
        (padding, `ntk.stax.masking`); None: nothing is masked.
      diagonal_spatial: NT's layout request. None (default): spatial
        covariances are kept in full only when a layer needs them (see the
        README's porting notes); False: always in full, NT's default layout
        ``(N1, N2, H, H, W, W)``; True: only same-position covariances
        ``(N1, N2, H, W)``, a ValueError for a network whose layers need the
        full ones (pooling, attention, flattening).
      diagonal_batch, batch_axis, channel_axis: NT's requirement keywords,
        accepted with the one layout this library has (``cov1`` per input,
        batch first, channels last); other values raise a ValueError.
      **kwargs: passed to every layer's transform, e.g. ``pattern=(A1, A2)``
        of `Aggregate`; array values are traced (one compilation per shape),
        the others are compile-time constants. A keyword that no layer of the
        network reads (``keywords``) is a TypeError, not silently dropped.

    Attributes:
      transform: ``Kernel -> Kernel`` (or lists of them for branching layers).
      name: the layer's name, used in error messages.
      needs_full_spatial: whether some layer in it (pooling) needs covariances
        between different spatial positions; otherwise only same-position
        covariances are computed, which is much cheaper for images.
      spec: the typed record of what the layer is (`ntk.stax.spec`): a
        combinator with its sub-layers, an affine layer with its
        hyperparameters, a parameterless layer, or `Opaque` (unknown). Tools
        that walk networks (structured empirical NTK, μP) read only this.
      children: the sub-layers of a combinator (``spec.children``).
      keywords: the keyword arguments its layers' transforms read (besides
        ``mask_constant`` and ``rng``), or None when some layer was made
        without a ``spec`` and may read any.
      pairwise: whether the kernel of each pair ``(x1[i], x2[j])`` depends on
        that pair only — not on the other inputs, nor on whether ``x2`` is
        ``x1`` (`Dropout`'s is not). Large spatial kernels of such networks
        are then evaluated block by block of pairs: the same values,
        about 2x faster on CPU than one pass over all pairs.

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1)).kernel_fn
      >>> x1, x2 = jnp.ones((3, 4)), jnp.zeros((2, 4))
      >>> k = kernel_fn(x1, x2, ("nngp", "ntk"))                   # a namedtuple
      >>> k.nngp.shape, k.ntk.shape, kernel_fn.needs_full_spatial
      ((3, 2), (3, 2), False)
    """

    def __init__(
        self,
        transform: Callable,
        name: str,
        *,
        needs_full_spatial: bool = False,
        spec: Optional[Spec] = None,
        pairwise: bool = False,
        keywords: Iterable[str] = (),
    ):
        if spec is not None and not isinstance(spec, Spec):
            raise TypeError(
                f"{name}: `spec` must be an ntk.stax.spec.Spec record; got {type(spec).__name__}."
            )
        self.transform = transform
        self.spec = Opaque() if spec is None else spec
        self.name = name
        self.keywords = _declared_keywords(self.spec, keywords)
        self.needs_full_spatial = needs_full_spatial
        self.pairwise = bool(pairwise)
        self._jitted = jax.jit(self._from_arrays_packed, static_argnames=("get", "compute_ntk"))
        # With keyword arguments (graph patterns, mask constants, PRNG keys):
        # arrays are traced, other values are compile-time constants.
        self._jitted_kw = jax.jit(
            self._from_arrays_kw, static_argnames=("get", "compute_ntk", "static")
        )

    def __repr__(self):
        return f"KernelFn({self.name})"

    @property
    def __name__(self) -> str:
        """The constructor's name without arguments (``'Dense'`` for
        ``Dense(8)``), as NT names its kernel functions."""
        return self.name.split("(", 1)[0]

    @property
    def children(self) -> tuple:
        """The sub-layers of a combinator (``spec.children``; empty for leaves)."""
        return self.spec.children

    @property
    def known_pairwise(self) -> Optional[bool]:
        """``pairwise`` when every layer has a typed ``spec``; None when some
        layer was made without one (then it is unknown, and ``pairwise`` is
        False only to be safe)."""
        return None if self.keywords is None else self.pairwise

    def _from_arrays(
        self, x1, x2, get, compute_ntk, mask_constant=None, masks=(None, None), **kwargs
    ):
        # `full_spatial`: diagonal_spatial=False asked for NT's full layout.
        full_spatial = kwargs.pop("full_spatial", False) or self.needs_full_spatial
        if self.pairwise and full_spatial:
            out = blockwise(
                self._one_block,
                x1,
                x2,
                get,
                masks,
                kwargs,
                compute_ntk=compute_ntk,
                mask_constant=mask_constant,
                full_spatial=full_spatial,
            )
            if out is not None:
                return out
        return self._one_block(
            x1, x2, get, compute_ntk, mask_constant, masks, full_spatial=full_spatial, **kwargs
        )

    def _from_lists(self, x1, x2, get, compute_ntk, mask_constant, kwargs):
        """Several inputs, as a network starting with `parallel` takes them
        (NT's multi-input networks): one input kernel per branch, nested as
        the inputs are (``([a, b], c)`` for ``parallel(parallel(A, B), C)``)."""
        leaves1, tree = flatten_inputs(x1)
        if not leaves1:
            raise ValueError(f"{self.name}: `x1` is an empty list; give one input per branch.")
        inputs2: list = [None] * len(leaves1)
        if x2 is not None:
            leaves2, tree2 = flatten_inputs(x2)
            if tree2 is None or tree2 != tree:
                got = _describe(x2) if tree2 is None else _nesting(tree2)
                raise ValueError(
                    f"{self.name}: with several inputs `x1`, `x2` must be None or "
                    f"inputs nested as `x1` is, {_nesting(tree)}; got {got}."
                )
            inputs2 = [b for _, b in leaves2]
        pairs = []
        for (path, a), b in zip(leaves1, inputs2):
            where = jax.tree_util.keystr(path)
            (a, ma), (b, mb) = (
                _unpack_masked(a, f"x1{where}", self.name),
                _unpack_masked(b, f"x2{where}", self.name),
            )
            a, b = check_inputs(a, b, self.name, mask_constant=mask_constant, masks=(ma, mb))
            pairs.append((a, b, ma, mb))
        full_spatial = _layout_request(kwargs, self, pairs[0][0].ndim) or self.needs_full_spatial
        kernels = [
            inputs_to_kernel(
                a,
                b,
                diagonal_spatial=not full_spatial,
                compute_ntk=compute_ntk,
                mask_constant=mask_constant,
                mask1=ma,
                mask2=mb,
            )
            for a, b, ma, mb in pairs
        ]
        return select(self.transform(jax.tree_util.tree_unflatten(tree, kernels), **kwargs), get)

    def _one_block(
        self,
        x1,
        x2,
        get,
        compute_ntk,
        mask_constant=None,
        masks=(None, None),
        full_spatial=False,
        **kwargs,
    ):
        full_spatial = full_spatial or self.needs_full_spatial
        k = inputs_to_kernel(
            x1,
            x2,
            diagonal_spatial=not full_spatial,
            compute_ntk=compute_ntk,
            mask_constant=mask_constant,
            mask1=masks[0],
            mask2=masks[1],
        )
        return select(self.transform(k, **kwargs), get)

    def _from_arrays_packed(self, x1, x2, get, compute_ntk):
        return pack_nngp_ntk(self._from_arrays(x1, x2, get, compute_ntk))

    def _from_arrays_kw(self, x1, x2, traced, get, compute_ntk, static):
        out = self._from_arrays(x1, x2, get, compute_ntk, **traced, **dict(static))
        return pack_nngp_ntk(out)

    def __call__(self, x1, x2=None, get=None, **kwargs):
        """Kernel of ``x1`` and ``x2`` (see the class docstring)."""
        if isinstance(x1, Kernel) or _first_input_is_kernel(x1):
            if x2 is not None:
                hint = f" (to select it pass get={x2!r})" if isinstance(x2, str) else ""
                raise TypeError(
                    f"{self.name}: `x2` must be None when `x1` is a Kernel (it "
                    f"holds both inputs' covariances); got {_describe(x2)}{hint}."
                )
            validate_get(get)
            kwargs.pop("mask_constant", None)  # only meaningful on arrays
            return select(self.transform(x1, **kwargs), get)
        if isinstance(x2, str):
            raise TypeError(
                f"{self.name}: `x2` must be an array or None; got {x2!r} (to "
                f"select a kernel pass it as `get`: kernel_fn(x1, None, {x2!r}))."
            )
        names = validate_get(get)
        get = names[0] if names is not None and isinstance(get, str) else names
        if names is not None and set(names) & set(SHAPE_NAMES):
            # Shapes are static fields of the whole Kernel, not arrays a
            # compiled kernel function can return.
            return select(self(x1, x2, None, **kwargs), get)
        compute_ntk = names is None or "ntk" in names
        mask_constant = kwargs.pop("mask_constant", None)
        if isinstance(x1, (list, tuple)):
            out = self._from_lists(x1, x2, get, compute_ntk, mask_constant, kwargs)
            check_finite_output(out, self.name, get)
            return out
        (x1, m1), (x2, m2) = (
            _unpack_masked(x1, "x1", self.name),
            _unpack_masked(x2, "x2", self.name),
        )
        x1, x2 = check_inputs(x1, x2, self.name, mask_constant=mask_constant, masks=(m1, m2))
        full_spatial = _layout_request(kwargs, self, x1.ndim)
        if m1 is None and m2 is None and set(kwargs) <= _ALWAYS and _same_inputs(x1, x2):
            # NT's convention: x2 equal to x1 is x1 itself, so Dropout draws
            # one mask for both (and cov2 is not computed twice).
            x2 = None
        if m1 is not None or m2 is not None:
            kwargs["masks"] = (m1, m2)
        if mask_constant is not None:
            kwargs["mask_constant"] = mask_constant
        if full_spatial and not self.needs_full_spatial:
            kwargs["full_spatial"] = True
        if not kwargs:
            out = unpack_nngp_ntk(*self._jitted(x1, x2, get=get, compute_ntk=compute_ntk))
        else:
            traced, static = split_static_kwargs(kwargs)
            if static is None:  # unhashable options: run op by op
                out = self._from_arrays(x1, x2, get, compute_ntk, **kwargs)
            else:
                out = unpack_nngp_ntk(
                    *self._jitted_kw(
                        x1, x2, traced, get=get, compute_ntk=compute_ntk, static=static
                    )
                )
        check_finite_output(out, self.name, get)
        return out


def pack_nngp_ntk(out):
    r"""``(out, z)``: the NNGP and NTK of a result as one complex array
    :math:`z = K + i\,\Theta`, their fields of ``out`` set to None; or
    ``(out, None)`` when ``out`` does not hold both with one shape and a
    float32/float64 dtype. `unpack_nngp_ntk` inverts it exactly.

    Why: XLA fuses a network's elementwise kernel updates into one loop, but
    does not share a loop between two outputs. Asked for both kernels of a deep
    network, it recomputes the earlier layers inside each later layer's loop,
    so time and compile time grow with the depth squared (a 20-layer ReLU MLP
    on 1,000 inputs, 2 CPU cores: 0.88 s, against 0.05 s packed). One complex
    output is one loop for both. XLA simplifies ``real(complex(a, b))`` back
    to ``a`` wherever packing and unpacking meet in one program, so the
    packing works at the jit boundary of `KernelFn` and in the carry of
    ``serial``'s loops, not between unrolled layers.

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.kernel import record_type
      >>> a, b = jnp.ones((2, 2), jnp.float32), jnp.eye(2, dtype=jnp.float32)
      >>> out = record_type("Kernel", ("nngp", "ntk"))(a, b)
      >>> rest, z = pack_nngp_ntk(out)
      >>> rest.nngp is None, z.dtype, bool((unpack_nngp_ntk(rest, z).ntk == out.ntk).all())
      (True, dtype('complex64'), True)
    """
    nngp, ntk = getattr(out, "nngp", None), getattr(out, "ntk", None)
    if (
        nngp is None
        or ntk is None
        or nngp.shape != ntk.shape
        or nngp.dtype != ntk.dtype
        or nngp.dtype not in _PACKABLE
    ):
        return out, None
    return _replace_nngp_ntk(out, None, None), jax.lax.complex(nngp, ntk)


def unpack_nngp_ntk(out, z):
    """The inverse of `pack_nngp_ntk`: ``out`` with ``nngp = Re z`` and ``ntk = Im z``."""
    return out if z is None else _replace_nngp_ntk(out, jnp.real(z), jnp.imag(z))


class ChordAndTangent(NamedTuple):
    r"""A carry's :math:`z = \chi + i\,\Theta` (`pack_carry`)."""

    z: jax.Array


class KernelAndChord(NamedTuple):
    r"""A carry's :math:`z = K + i\,\chi` (`pack_carry`)."""

    z: jax.Array


def pack_carry(k):
    r"""``(k, z)`` for a loop's carry: `pack_nngp_ntk`, extended to Kernels
    that carry chords (``Kernel.chord``).

    Three (N, N) arrays are one too many for a complex carry, and a loop
    whose step writes two arrays makes XLA recompute the step's shared terms
    for each (a 10-layer ReLU MLP on 2,000 inputs: 3x slower). With the
    NTK, the carry is :math:`z = \chi + i\,\Theta` and the NNGP is rebuilt from
    the chord, :math:`K = \sqrt{c_{11} c_{22}} - \chi/2` (`unpack_carry`):
    exact to an absolute :math:`\epsilon \sqrt{c_{11} c_{22}}`, the rounding of
    the chord itself, so the angle the chord carries is kept, and the NNGP
    loses relative accuracy only where it is much smaller than the variances,
    an error the next affine layer's rounding makes anyway. Without the NTK
    it is :math:`z = K + i\,\chi`, exact.
    """
    if (
        not isinstance(k, Kernel)
        or k.chord is None
        or k.chord.ndim != 2  # vector kernels only: the NNGP is rebuilt from cov1, cov2
        or k.chord.dtype not in _PACKABLE
    ):
        return pack_nngp_ntk(k)
    # Moved, not changed: dataclasses.replace, as in `_replace_nngp_ntk`; the
    # fields are None only inside a carry.
    moved: Any = k
    rest = dataclasses.replace(moved, nngp=None, ntk=None, chord=None)
    if k.ntk is None:
        return rest, KernelAndChord(jax.lax.complex(k.nngp, k.chord))
    if k.ntk.shape != k.chord.shape or k.ntk.dtype != k.chord.dtype:
        return pack_nngp_ntk(k)
    return rest, ChordAndTangent(jax.lax.complex(k.chord, k.ntk))


def unpack_carry(k, z):
    """The inverse of `pack_carry`."""
    if isinstance(z, KernelAndChord):
        return dataclasses.replace(k, nngp=jnp.real(z.z), chord=jnp.imag(z.z))
    if isinstance(z, ChordAndTangent):
        chord = jnp.real(z.z)
        v1, v2 = k.outer_vars()[0]
        smooth = safe_sqrt(v1) * safe_sqrt(v2) - chord / 2
        # An input with itself keeps K = c11 to the last bit (√c · √c need not be).
        nngp = snap(smooth, identical(chord, v1, v2), (v1 + v2) / 2)
        return dataclasses.replace(k, nngp=nngp, ntk=jnp.imag(z.z), chord=chord)
    return unpack_nngp_ntk(k, z)


_PACKABLE = (jnp.float32, jnp.float64)


def _replace_nngp_ntk(out, nngp, ntk):
    if isinstance(out, Kernel):
        # dataclasses.replace, not Kernel.replace: ntk_is_zero is not reset by
        # moving arrays (and jit has dropped it already).
        return dataclasses.replace(out, nngp=nngp, ntk=ntk)
    return out._replace(nngp=nngp, ntk=ntk)


class Layer(NamedTuple):
    """``(init_fn, apply_fn, kernel_fn)``; unpacks like neural-tangents' triple.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ntk import stax
      >>> layer = stax.Dense(3)
      >>> init_fn, apply_fn, kernel_fn = layer                     # unpacks like NT
      >>> out_shape, params = init_fn(jax.random.PRNGKey(0), (2, 4))
      >>> out_shape, apply_fn(params, jnp.ones((2, 4))).shape, layer.name
      ((2, 3), (2, 3), 'Dense(3)')
    """

    init_fn: Callable
    apply_fn: Callable
    kernel_fn: KernelFn

    @property
    def name(self) -> str:
        """The layer's name (``kernel_fn.name``), used in error messages."""
        return self.kernel_fn.name


def make_layer(
    name: str,
    init_fn: Callable,
    apply_fn: Callable,
    transform: Callable,
    *,
    needs_full_spatial: bool = False,
    spec: Optional[Spec] = None,
    mask_fn: Optional[Callable] = None,
    remask: bool = False,
    handles_masks: bool = False,
    pairwise: Optional[bool] = None,
    keywords: Iterable[str] = (),
) -> Layer:
    """Build a `Layer` from its finite-width functions and kernel transform.

    ``spec`` is the layer's typed record (`ntk.stax.spec`); leave it None
    (`Opaque`) for a layer whose parameters tools cannot interpret, or pass
    ``Parameterless()`` for one without parameters.

    Masking (`ntk.stax.masking`): ``apply_fn`` then also accepts
    ``mask_constant=`` and `MaskedArray` inputs; it is called with masked
    entries zeroed and ``mask=`` the input mask (only when something is
    masked), and returns a `MaskedArray`. ``mask_fn(mask, input_shape)`` maps
    the input mask (a list of them for a list input) to the output mask; None
    keeps the mask. ``remask=True`` zeroes, after ``transform``, every
    covariance involving a masked output position — needed when the layer
    maps zero inputs to non-zero outputs (biases, constants of activations)
    or mixes positions. ``handles_masks=True`` is for combinators, whose
    sub-layers do all of this themselves. Without masks none of it runs.

    ``keywords``: the names of the keyword arguments ``transform`` reads
    (as `Aggregate` reads ``pattern``), besides ``mask_constant`` and ``rng``;
    ``kernel_fn`` rejects any other keyword of a network made of typed layers.
    A layer without a ``spec`` may read any.

    ``pairwise`` (`KernelFn`): None means True for a layer with a typed
    ``spec`` and False for an `Opaque` one; pass False for a transform that
    reads other inputs of the batch or ``Kernel.x1_is_x2``.

    Example:
      A parameter-free layer that scales its input by 2, so every kernel by 4:

      >>> import jax.numpy as jnp
      >>> from ntk import stax
      >>> from ntk.stax.spec import Parameterless
      >>> def times4(k, **kw):                  # arrays not computed are None
      ...     f = lambda a: None if a is None else 4 * a
      ...     return k.replace(nngp=f(k.nngp), ntk=f(k.ntk), cov1=f(k.cov1),
      ...                      cov2=f(k.cov2))
      >>> double = stax.make_layer("Double", lambda key, shape: (shape, ()),
      ...                          lambda params, x, **kw: 2 * x, times4,
      ...                          spec=Parameterless())
      >>> x = jnp.array([[1.0, 2.0], [0.5, -1.0]])
      >>> k = stax.serial(stax.Dense(1), double).kernel_fn(x, None, "nngp")
      >>> bool(jnp.allclose(k, 4 * stax.Dense(1).kernel_fn(x, None, "nngp")))
      True
    """
    if mask_fn is not None and not callable(mask_fn):
        raise TypeError(
            f"{name}: `mask_fn` must be a function (mask, input_shape) "
            f"-> mask, or None; got {type(mask_fn).__name__}."
        )
    if pairwise is None:
        pairwise = spec is not None and not isinstance(spec, Opaque)
    kernel_fn = KernelFn(
        masked_transform(transform, mask_fn, bool(remask)) if not handles_masks else transform,
        name,
        needs_full_spatial=needs_full_spatial,
        spec=spec,
        pairwise=pairwise,
        keywords=keywords,
    )
    # NT names all three functions after the layer's constructor ('Dense',
    # 'serial'), and code written for it reads `init_fn.__name__`.
    bare = kernel_fn.__name__
    if not handles_masks:
        apply_fn = masked_apply(apply_fn, mask_fn, bool(remask))
        apply_fn.__name__ = apply_fn.__qualname__ = bare  # a fresh wrapper: ours to name
    return Layer(_named(init_fn, bare), _named(apply_fn, bare), kernel_fn)


def _named(fn: Callable, name: str) -> Callable:
    """``fn`` under the name ``name``: a wrapper, since ``fn`` may be shared
    (a module-level function several layers use) and must not be renamed."""
    if getattr(fn, "__name__", None) == name:
        return fn

    def named(*args, **kwargs):
        return fn(*args, **kwargs)

    named.__name__ = named.__qualname__ = name
    named.__doc__ = fn.__doc__
    named.__wrapped__ = fn  # type: ignore[attr-defined]
    return named


def as_layer(layer: Any) -> Layer:
    """Accept any ``(init_fn, apply_fn, kernel_fn)`` triple (e.g. user-made)."""
    if isinstance(layer, Layer):
        return layer
    if not (isinstance(layer, tuple) and len(layer) in (3, 4)):
        raise TypeError(
            "stax combinators take layers, i.e. (init_fn, apply_fn, "
            f"kernel_fn) triples; got {type(layer).__name__}."
        )
    init_fn, apply_fn, kernel_fn = layer[:3]
    if isinstance(kernel_fn, KernelFn):
        return Layer(init_fn, apply_fn, kernel_fn)
    name = getattr(kernel_fn, "__name__", "custom")
    return make_layer(name, init_fn, apply_fn, kernel_fn)


def check_finite_output(out, name: str, get=None):
    """Raise instead of returning a kernel with inf/NaN entries.

    The dual kernels are finite for finite inputs, so a non-finite entry means
    the true kernel left the dtype's range (``Exp`` or ``Monomial`` layers
    grow like an exponential or a power of the input scale at every layer):
    returned, it would be a silent wrong answer. Only concrete results are
    checked; inside a caller's ``jit`` or ``grad`` the values are unknown.
    """
    if isinstance(out, list):  # branches, e.g. a network ending in FanOut
        for o in out:
            check_finite_output(o, name, get)
        return
    if isinstance(out, Kernel):
        named = {f: getattr(out, f) for f in ("nngp", "ntk", "cov1", "cov2")}
    elif hasattr(out, "_fields"):
        named = dict(zip(out._fields, out))
    else:
        named = {get if isinstance(get, str) else "kernel": out}
    for field, value in named.items():
        if value is None:
            continue
        if not _checks.is_concrete(value):
            return  # traced
        # Reduced where the kernel lives: only a bool crosses to the host.
        if not bool(jnp.all(jnp.isfinite(value))):
            bad = int(jnp.size(value) - jnp.sum(jnp.isfinite(value)))
            dtype = jnp.result_type(value)
            wider = "" if dtype == jnp.float64 else ", or compute in float64"
            raise FloatingPointError(
                f"{name}: `{field}` has {bad} inf/NaN entries of "
                f"{jnp.size(value)}: the infinite-width kernel overflows {dtype} "
                f"for these inputs (or a user-supplied kernel function, e.g. "
                f"Elementwise's nngp_fn, returned NaN). Rescale the inputs, lower "
                f"W_std or the depth{wider}."
            )


def check_init_args(key, input_shape, name: str) -> None:
    """``init_fn(key, input_shape)`` takes a PRNG key and a shape, not a seed
    or the inputs themselves."""
    _checks.require_key(key, f"{name}: init_fn(key, input_shape)", "it draws the parameters")
    if hasattr(input_shape, "shape") and not isinstance(input_shape, (tuple, list)):
        raise TypeError(
            f"{name}: init_fn(key, input_shape) takes the inputs' shape, a tuple "
            f"of ints such as x.shape; got {_describe(input_shape)} (pass x.shape)."
        )


def check_params(params, n: int, name: str) -> None:
    """``apply_fn(params, x)`` of a combinator of ``n`` layers takes one
    parameter entry per layer, as its ``init_fn`` returns them."""
    if isinstance(params, (tuple, list)) and len(params) == n:
        return
    got = f"{len(params)} entries" if isinstance(params, (tuple, list)) else _describe(params)
    swapped = " (the arguments are apply_fn(params, x))" if hasattr(params, "shape") else ""
    raise TypeError(
        f"{name}: `params` must be the parameters init_fn returned, a tuple of "
        f"{n} entries (one per layer); got {got}{swapped}."
    )


def _same_inputs(x1, x2) -> bool:
    """Whether ``x2`` is ``x1`` or, both being concrete, equal to it."""
    if x2 is None or x2 is x1:
        return x2 is x1
    if x1.shape != x2.shape or x1.dtype != x2.dtype:
        return False
    # is_concrete reads one entry: the inputs are not copied to the host.
    if not (_checks.is_concrete(x1) and _checks.is_concrete(x2)):
        return False
    return bool(jnp.array_equal(x1, x2))


def _describe(x) -> str:
    """What arrived, for an error message: an array's shape or the value's type."""
    if isinstance(x, str):
        return repr(x)
    shape = getattr(x, "shape", None)
    return f"{type(x).__name__} of shape {tuple(shape)}" if shape is not None else type(x).__name__


#: Keywords every ``kernel_fn`` accepts: masking, and dropout's key (read by
#: the combinators that split it, ignored by the analytic transforms).
_ALWAYS = frozenset({"mask_constant", "rng"})


def _declared_keywords(spec: Spec, own: Iterable[str]) -> Optional[frozenset]:
    """A layer's own keywords and its sub-layers'; None if any is unknown."""
    if isinstance(spec, Opaque):
        return None
    found = set(own)
    for child in spec.children:
        sub = as_layer(child).kernel_fn.keywords
        if sub is None:
            return None
        found |= sub
    return frozenset(found)


def _layout_request(kwargs: dict, kernel_fn: "KernelFn", ndim: int) -> bool:
    """Pop NT's layout keywords from ``kwargs``, reject unknown keywords, and
    say whether full spatial covariances were asked for (``diagonal_spatial=False``)."""
    name = kernel_fn.name
    diagonal_spatial = kwargs.pop("diagonal_spatial", None)
    if diagonal_spatial is not None and not isinstance(diagonal_spatial, (bool, np.bool_)):
        raise TypeError(
            f"{name}: `diagonal_spatial` must be True, False or None; got {diagonal_spatial!r}."
        )
    if diagonal_spatial and kernel_fn.needs_full_spatial:
        raise ValueError(
            f"{name}: `diagonal_spatial=True` asks for same-position covariances "
            "only, but a layer of this network (pooling, attention, flattening, "
            "a graph aggregation) needs the covariances between positions; "
            "leave `diagonal_spatial` unset."
        )
    if kwargs.pop("diagonal_batch", True) is not True:
        raise ValueError(
            f"{name}: `diagonal_batch=False` is not supported: `cov1`/`cov2` are "
            "always each input's own covariance, shape (N, ...); for the "
            "covariances between inputs use kernel_fn(x, None, 'nngp')."
        )
    for arg, ok in (("batch_axis", (0, -ndim)), ("channel_axis", (-1, ndim - 1))):
        value = kwargs.pop(arg, ok[0])
        if value not in ok:
            raise ValueError(
                f"{name}: `{arg}` must be {ok[0]} (the batch axis is first and the "
                f"channel axis last; transpose the inputs to (N, ..., C)); got {value!r}."
            )
    if kernel_fn.keywords is not None:
        unknown = sorted(set(kwargs) - _ALWAYS - kernel_fn.keywords)
        if unknown:
            accepted = ", ".join(sorted(_ALWAYS | kernel_fn.keywords))
            raise TypeError(
                f"{name}: got unexpected keyword argument(s) "
                f"{', '.join(f'`{k}`' for k in unknown)}; the layers of this "
                f"network read: {accepted}."
            )
    return diagonal_spatial is False


def _is_input(x) -> bool:
    return not isinstance(x, (list, tuple)) or isinstance(x, MaskedArray)


def flatten_inputs(xs):
    """``([(path, input), ...], treedef)`` of several inputs (nested lists or
    tuples, for a network starting with `parallel`), read as nested lists:
    ``x1`` a list and ``x2`` a tuple nest alike, as in NT. ``([], None)`` for
    anything that is not a list or tuple. `ntk.parallel.batch` reads nesting
    the same way.

    Example:
      >>> import numpy as np
      >>> a = np.ones((2, 3))
      >>> flatten_inputs([a, (a, a)])[1] == flatten_inputs((a, [a, a]))[1]
      True
      >>> flatten_inputs(a)
      ([], None)
    """
    if not isinstance(xs, (list, tuple)):
        return [], None
    return jax.tree_util.tree_flatten_with_path(_as_lists(xs), is_leaf=_is_input)


def _as_lists(x):
    return x if _is_input(x) else [_as_lists(v) for v in x]


def _first_input_is_kernel(xs) -> bool:
    leaves, _ = flatten_inputs(xs)
    return bool(leaves) and isinstance(leaves[0][1], Kernel)


def _nesting(tree) -> str:
    """The nesting of a tree of inputs, as ``[*, *]`` with ``*`` an input."""
    return str(jax.tree_util.tree_unflatten(tree, [_Star()] * tree.num_leaves))


class _Star:
    def __repr__(self):
        return "*"


def _unpack_masked(x, arg: str, name: str):
    """``(values, mask or None)`` of a kernel_fn input (array or MaskedArray)."""
    if not isinstance(x, MaskedArray):
        return x, None
    if x.mask is not None:
        check_mask_shape(x.mask, x.masked_value, f"{name}: `{arg}`")
    return x.masked_value, x.mask


def check_inputs(x1, x2, name: str, mask_constant=None, masks=(None, None)):
    """Boundary checks for array inputs; clear errors instead of XLA's.

    Masked entries (equal to ``mask_constant``, or True in ``masks``) may be
    non-finite: NaN and inf are valid mask constants, as in neural-tangents.
    """
    x1 = _as_array(x1, "x1", name, mask_constant, masks[0])
    if x1.ndim < 2:
        raise ValueError(
            f"{name}: `x1` must have shape (batch, ..., features) "
            f"with rank >= 2; got shape {tuple(x1.shape)}."
        )
    if x1.shape[-1] == 0:
        raise ValueError(
            f"{name}: `x1` must have at least one feature (last axis); got shape {tuple(x1.shape)}."
        )
    if x2 is not None:
        x2 = _as_array(x2, "x2", name, mask_constant, masks[1])
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(
                f"{name}: `x1` and `x2` must agree in all but the "
                f"batch axis; got x1 {tuple(x1.shape)} and x2 "
                f"{tuple(x2.shape)}."
            )
    return x1, x2


def _as_array(x, arg: str, name: str, mask_constant=None, mask=None):
    if not hasattr(x, "shape"):
        try:
            x = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise TypeError(f"{name}: `{arg}` must be an array; got {type(x).__name__}.") from e
    if not jnp.issubdtype(x.dtype, jnp.number):  # bfloat16 included
        raise TypeError(f"{name}: `{arg}` must be a numeric array; got dtype {x.dtype}.")
    if np.issubdtype(np.dtype(x.dtype), np.complexfloating):
        raise TypeError(
            f"{name}: `{arg}` must be real (the kernels are second "
            f"moments of real networks); got dtype {x.dtype}."
        )
    concrete = _checks.concrete(x)
    if concrete is None or (mask is not None and _checks.concrete(mask) is None):
        return x  # traced: finiteness cannot be checked outside the trace
    finite = np.isfinite(concrete)
    if mask_constant is not None:
        finite = finite | np.asarray(constant_mask(concrete, mask_constant))  # type: ignore[arg-type]
    if mask is not None:
        finite = finite | np.asarray(mask, bool)
    if not np.all(finite):
        bad = int(np.size(finite) - finite.sum())
        raise ValueError(
            f"{name}: `{arg}` must be finite; got {bad} NaN/inf entries of {np.size(concrete)}."
        )
    return x


def check_std(value, arg: str, name: str, allow_none: bool = False):
    """A standard deviation must be a non-negative scalar (checked when concrete)."""
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name}: `{arg}` must be a non-negative number; got None.")
    v = _checks.concrete(value)
    if v is None:
        return  # traced hyperparameter (kernel learning): checked by the caller's math
    if v.ndim != 0 or not np.issubdtype(v.dtype, np.number):
        raise ValueError(
            f"{name}: `{arg}` must be a scalar number; got "
            f"{type(value).__name__} of shape {v.shape}, dtype {v.dtype}."
        )
    if not float(v) >= 0:
        raise ValueError(f"{name}: `{arg}` must be >= 0; got {float(v)}.")
