r"""Typed descriptions of layers: what tools may read of a layer besides its functions.

Every `ntk.stax` layer carries, in ``kernel_fn.spec``, a frozen record of what
it is. Tools that walk a network — the structured empirical NTK
(`ntk.empirical`) and `ntk.mup.parametrize` — read these records and never
the layer's display name, so a layer added later is seen by them as soon as it
declares its record:

=================  ===========================================================
record             meaning, and what the tools do with it
=================  ===========================================================
`Serial`           ``layers`` applied in sequence; params a tuple, one per layer
`Parallel`         ``layers[b]`` applied to branch ``b``; params a tuple
`Repeat`           ``layer`` applied ``n`` times; params stacked on axis 0
`Dense`            :math:`y = \sigma x W + \beta b` on the last axis, ``W: (in, out)``
`Conv`             the same with ``x`` replaced by its ``filter_shape`` patches
`ConvTranspose`    ``jax.lax.conv_transpose`` with ``W: (*filter_shape, in, out)``
`ConvLocal`        unshared conv, ``W: (*out_spatial, in·|filter|, out)``
`Affine`           any other map linear in ``W: (..., in, out)`` plus a bias
                   ``b: (..., out)`` (μP reads fan-in/out from the last two axes)
``GlobalSelf…``    ``GlobalSelfAttention``: params ``(W_Q, W_K, W_V, W_out, b,
                   pos_emb)`` (shapes in its docstring); the structured NTK
                   differentiates it as a whole, μP refuses it (its width
                   scaling is not implemented)
`Parameterless`    no parameters (activations, pooling, reshapes, fan-in/out);
                   ``per_example=False`` if it mixes or reorders examples
`Opaque`           parameters of unknown structure (the default for user
                   layers): the structured NTK differentiates the layer as a
                   whole, per example (exact, only slower); μP refuses it,
                   since how its parameters scale with width is unknown
=================  ===========================================================

:math:`\sigma` and :math:`\beta` are the NTK-parameterization scales
:math:`\mathrm{W\_std} / \sqrt{\mathrm{fan\_in}}` and :math:`\mathrm{b\_std}` (or
:math:`1/\sqrt{s[0]}` and 1 in the standard parameterization; see
`ntk.stax.linear`).

Example:
  >>> from ntk import stax
  >>> layer = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
  >>> layer.kernel_fn.spec
  Serial(layers=(...))
  >>> layer.kernel_fn.spec.layers[0].kernel_fn.spec
  Dense(W_std=1.0, b_std=None, parameterization='ntk', s=(1, 1))
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional


@dataclasses.dataclass(frozen=True, eq=False)
class Spec:
    """Base record; see the module docstring for the subclasses."""

    @property
    def children(self) -> tuple:
        """The sub-layers of a combinator (empty for leaves)."""
        return ()


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Serial(Spec):
    """``serial(*layers)``: params are ``tuple(p_l for l in layers)``."""

    layers: tuple

    @property
    def children(self) -> tuple:
        """``layers``."""
        return self.layers

    def __repr__(self):
        return f"Serial(layers=({', '.join(l.name for l in self.layers)}))"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Parallel(Spec):
    """``parallel(*layers)``: branch ``b`` goes through ``layers[b]``."""

    layers: tuple

    @property
    def children(self) -> tuple:
        """``layers``."""
        return self.layers

    def __repr__(self):
        return f"Parallel(layers=({', '.join(l.name for l in self.layers)}))"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Repeat(Spec):
    """``repeat(layer, n)``: params of the ``n`` copies stacked on axis 0."""

    layer: Any
    n: int

    @property
    def children(self) -> tuple:
        """``(layer,)``: the one repeated layer."""
        return (self.layer,)

    def __repr__(self):
        return f"Repeat(layer={self.layer.name}, n={self.n})"


@dataclasses.dataclass(frozen=True, eq=False)
class Parameterless(Spec):
    """A layer without parameters (its ``init_fn`` returns ``()``).

    Attributes:
      per_example: False if output example ``n`` may depend on other input
        examples than ``n`` (e.g. indexing the batch axis reorders or drops
        examples); the structured empirical NTK needs every layer per-example.
    """

    per_example: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class Opaque(Spec):
    """A layer whose parameters tools know nothing about (user layers).

    ``per_example`` as for `Parameterless`; assumed True (the convention of
    every stax layer) unless the layer says otherwise.
    """

    per_example: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class Affine(Spec):
    r""":math:`y = A_W(x) + b`, linear in a weight ``W: (..., in, out)``, with a bias
    ``b: (..., out)`` or None; params ``(W, b)``.

    Attributes:
      W_std, b_std: the layer's standard deviations (``b_std`` None: no bias).
      parameterization: ``"ntk"`` or ``"standard"``.
      s: NT's width multipliers of the standard parameterization.
    """

    W_std: Any
    b_std: Any
    parameterization: str
    s: tuple = (1, 1)

    def in_channels(self, W) -> int:
        """The input channel count (the width-like fan-in) of a weight ``W``."""
        return W.shape[-2]


@dataclasses.dataclass(frozen=True, eq=False)
class Dense(Affine):
    """``stax.Dense``: ``W: (in, out)`` acting on the last axis."""


@dataclasses.dataclass(frozen=True, eq=False)
class Conv(Affine):
    """``stax.Conv``: ``W: (*filter_shape, in, out)`` shared over positions.

    It has `Affine`'s attributes and these.

    Attributes:
      filter_shape: one int per spatial axis.
      strides: one int per spatial axis.
      padding: ``"VALID"``, ``"SAME"`` or ``"CIRCULAR"`` (`jax.lax` rules).
    """

    filter_shape: tuple = ()
    strides: tuple = ()
    padding: str = "VALID"


@dataclasses.dataclass(frozen=True, eq=False)
class ConvTranspose(Affine):
    """``stax.ConvTranspose``: ``W: (*filter_shape, in, out)`` shared over
    positions, applied as ``jax.lax.conv_transpose``; bias ``(1, …, 1, out)``.

    Not a `Conv`: an output position sees a stride-dependent subset of the
    filter taps, so tools must not treat its inputs as ``filter_shape`` patches.

    It has `Affine`'s attributes and these.

    Attributes:
      filter_shape: one int per spatial axis.
      strides: one int per spatial axis.
      padding: ``"VALID"``, ``"SAME"`` or ``"CIRCULAR"`` (`jax.lax`'s
        transposed-convolution rules; CIRCULAR folds the VALID output).
    """

    filter_shape: tuple = ()
    strides: tuple = ()
    padding: str = "VALID"


@dataclasses.dataclass(frozen=True, eq=False)
class ConvLocal(Affine):
    """``stax.ConvLocal``: a separate weight at every output position,
    ``W: (*out_spatial, in·|filter_shape|, out)`` as
    ``jax.lax.conv_general_dilated_local`` takes it; bias ``(1, *out_spatial, out)``.

    The fan-in axis ``W.shape[-2]`` is the input channels times the filter
    size (channel-major), so it grows with width like a `Conv`'s ``in``;
    `in_channels` divides the filter size out.

    It has `Affine`'s attributes and these.

    Attributes:
      filter_shape: one int per spatial axis.
      strides: one int per spatial axis.
      padding: ``"VALID"``, ``"SAME"`` or ``"CIRCULAR"`` (as `Conv`).
    """

    filter_shape: tuple = ()
    strides: tuple = ()
    padding: str = "VALID"

    def in_channels(self, W) -> int:
        """The input channel count of an unshared weight ``W``, whose fan-in axis
        holds ``prod(filter_shape) · channels`` entries."""
        return W.shape[-2] // math.prod(self.filter_shape)


@dataclasses.dataclass(frozen=True, eq=False)
class GlobalSelfAttention(Spec):
    """``stax.GlobalSelfAttention``: params ``(W_Q, W_K, W_V, W_out, b, pos_emb)``.

    With ``C_k``/``C_v`` the channels of the key/value inputs (the layer's
    inputs, plus ``n_chan_pos_emb`` with CONCAT embeddings) and ``S`` the
    spatial shape, all entries N(0, 1) and scaled in the forward pass:

    * ``W_Q``: ``(n_heads, C_k, n_chan_key)``, or None when ``linear_scaling``
      (queries then use ``W_K``);
    * ``W_K``: ``(n_heads, C_k, n_chan_key)``; ``W_V``: ``(n_heads, C_v, n_chan_val)``;
    * ``W_out``: ``(n_chan_val · n_heads, n_chan_out)``, rows value-major;
    * ``b``: ``(1, …, 1, n_chan_out)`` or None; ``pos_emb``: ``(1, *S, P_e)`` or None.

    Attributes mirror the constructor's arguments (enums as their names).
    """

    n_chan_out: int
    n_chan_key: int
    n_chan_val: int
    n_heads: int
    linear_scaling: bool
    W_key_std: Any
    W_value_std: Any
    W_query_std: Any
    W_out_std: Any
    b_std: Any
    attention_mechanism: str
    pos_emb_type: str
    n_chan_pos_emb: Optional[int]
    W_pos_emb_std: Any
    val_pos_emb: bool


def per_example(layer) -> bool:
    """Whether every example of the network's output depends only on the same
    example of its input (true of all layers except those that index or mix
    the batch axis)."""
    spec = spec_of(layer)
    if spec.children:
        return all(per_example(child) for child in spec.children)
    return getattr(spec, "per_example", True)


def spec_of(layer) -> Spec:
    """The record of a `Layer` (or ``(init_fn, apply_fn, kernel_fn)`` triple);
    `Opaque` for a kernel_fn that has none."""
    spec: Optional[Spec] = getattr(layer[2], "spec", None)
    return spec if isinstance(spec, Spec) else Opaque()
