r"""Global self-attention and its infinite-width NNGP/NTK (channels last).

The layer (Vaswani et al. 2017, multi-head scaled dot-product attention over
all positions of a sequence ``(N, T, C)`` or image ``(N, H, W, C)``, in
neural-tangents' NTK parameterization) computes, per head :math:`h` and with the
:math:`P` positions flattened,

.. math::

    G_h &= \mathrm{QK\_std} / (C_k \cdot d^\alpha) \cdot (X W_{Q,h})(X W_{K,h})^\top
    \qquad (P \times P), \\
    f(X) &= \mathrm{OV\_std} / \sqrt{n_{\mathrm{val}} \cdot H \cdot C_v} \cdot
    [\varphi(G_1) X W_{V,1}, \ldots, \varphi(G_H) X W_{V,H}]\, W_{\mathrm{out}}
    + \mathrm{b\_std} \cdot b

with :math:`\mathrm{QK\_std} = \mathrm{W\_query\_std} \cdot \mathrm{W\_key\_std}`,
:math:`\mathrm{OV\_std} = \mathrm{W\_out\_std} \cdot \mathrm{W\_value\_std}`,
:math:`d = \mathrm{n\_chan\_key}`, :math:`C_k`/:math:`C_v` the channels of the
key/value inputs and :math:`\varphi` the attention mechanism (softmax over key
positions, identity, abs, relu). All weights are i.i.d. :math:`\mathcal{N}(0, 1)`.

Infinite-width kernels (Hron et al. 2020, "Infinite attention: NNGP and NTK for
deep attention networks", ICML; Yang 2019, "Tensor programs I"), for inputs
with spatial covariance :math:`K` (per pair of positions) and NTK :math:`\Theta`:

* ``linear_scaling=True`` (:math:`\alpha = 1`, :math:`W_Q` tied to :math:`W_K`): the
  logits converge to the deterministic :math:`G(x) = \mathrm{QK\_std} \cdot K(x, x)`,
  so with :math:`A(x) = \varphi(G(x))` (a :math:`P \times P` matrix per input)

  .. math::

      K'(x, x') &= \mathrm{OV\_std}^2\, A(x)\, K(x, x')\, A(x')^\top + \mathrm{b\_std}^2, \\
      \Theta'(x, x') &= \mathrm{OV\_std}^2\, A(x) \big[\Theta(x, x') + 2 K(x, x')\big]\,
      A(x')^\top + \mathrm{b\_std}^2

  (the :math:`2 K` are the value and output weights' gradients; the key weights'
  contribution vanishes with the logits' fluctuations).
* ``linear_scaling=False`` (:math:`\alpha = \tfrac{1}{2}`, independent :math:`W_Q`,
  :math:`W_K`): the logits stay Gaussian; only :math:`\varphi = \mathrm{identity}` has
  a closed form (the limit needs :math:`\mathrm{n\_heads} \to \infty` too):

  .. math::

      K'_{ss'} = (\mathrm{QK\_std} \cdot \mathrm{OV\_std})^2\, K_{ss'}
      \sum_{t,t'} K_{tt'} K_{tt'} + \mathrm{b\_std}^2

  and :math:`\Theta'` as in ``_square_root_identity``. Other mechanisms raise
  ``NotImplementedError`` from ``kernel_fn``, as in NT (no Gaussian limit with
  a known closed form).

Positional embeddings (``pos_emb_type``): a trainable ``pos_emb`` of shape
``(1, *S, P_e)``, :math:`\mathcal{N}(0, 1)`, correlated over positions by the
Cholesky factor of :math:`R_{st} = \mathrm{decay}(\sum_a |s_a - t_a|^p)`
(:math:`R = I` without ``pos_emb_decay_fn``), scaled by ``W_pos_emb_std`` and added
to (``"SUM"``) or concatenated with (``"CONCAT"``) the inputs of the keys and
queries (and of the values if ``val_pos_emb``). In the kernel it mixes
:math:`K \leftarrow a K + b R`, :math:`\Theta \leftarrow a \Theta + b R` with
:math:`(a, b) = (1, \mathrm{W\_pos\_emb\_std}^2)` for SUM and
:math:`(C, \mathrm{W\_pos\_emb\_std}^2 P_e) / (C + P_e)` for CONCAT.

Masks (`ntk.stax.masking`: ``mask_constant=`` or `MaskedArray` inputs; the
layer's own ``apply_fn`` receives ``mask=m``, broadcastable to the inputs,
True = masked). A position is masked when all its channels are; masked
positions are excluded as keys (logits -1e20 before a softmax, 0 for the
other mechanisms, as in NT), their positional embeddings are zeroed, and they
stay masked in the output, whose covariances there are zeroed. The kernel
does the same with the input `Kernel`'s masks (``attention_kernel``).

Kernel layout: needs every pair of positions (``needs_full_spatial``); the
kernel is :math:`A X A^\top` per pair of inputs, evaluated as two batched matrix
products (:math:`2 N_1 N_2 P^3` multiply-adds) for the NNGP and, unless the input
NTK is the NNGP itself (`Kernel.ntk_is_nngp`: right after a first affine
layer, where :math:`\Theta = K` and so :math:`A \Theta A^\top = A K A^\top`), again
for the NTK.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, Callable, Optional, overload

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk._checks import require_bool
from ntk.kernel import Kernel
from ntk.stax import spec as specs
from ntk.stax.layer import Layer, check_std, make_layer
from ntk.stax.linear import check_channel_axis
from ntk.stax.masking import position_mask
from ntk.stax.spatial import require_full

# NT's value for the logits of masked keys: finite, so that a query whose
# keys are all masked gets uniform weights instead of 0/0.
_MASKED_LOGIT = -1e20
_HP = jax.lax.Precision.HIGHEST


class AttentionMechanism(enum.Enum):
    r"""The map :math:`\varphi` from logits to attention weights.

    Example:
      >>> import jax.numpy as jnp
      >>> from ntk.stax import AttentionMechanism, GlobalSelfAttention
      >>> phi = AttentionMechanism.SOFTMAX.fn()
      >>> [round(float(w), 4) for w in phi(jnp.array([0., jnp.log(3.)]))]
      [0.25, 0.75]
      >>> AttentionMechanism("RELU").fn()(jnp.array([-1., 2.])).tolist()
      [0.0, 2.0]
      >>> layer = GlobalSelfAttention(8, 8, 8, 1, attention_mechanism=AttentionMechanism.RELU)
    """

    SOFTMAX = "SOFTMAX"  # softmax over the key positions
    IDENTITY = "IDENTITY"
    ABS = "ABS"
    RELU = "RELU"

    def fn(self) -> Callable:
        r""":math:`\varphi` acting on logits whose last axis indexes key positions."""
        return {
            "SOFTMAX": lambda g: jax.nn.softmax(g, axis=-1),
            "IDENTITY": lambda g: g,
            "ABS": jnp.abs,
            "RELU": lambda g: jnp.maximum(g, 0),
        }[self.value]


class PositionalEmbedding(enum.Enum):
    """How positional embeddings enter the keys/queries (and values).

    Example:
      A summed embedding is one parameter of the input's spatial shape:

      >>> import jax
      >>> from ntk.stax import GlobalSelfAttention, PositionalEmbedding
      >>> [p.value for p in PositionalEmbedding]
      ['NONE', 'SUM', 'CONCAT']
      >>> layer = GlobalSelfAttention(4, 4, 4, 1, pos_emb_type=PositionalEmbedding.SUM)
      >>> init = lambda key: layer.init_fn(key, (2, 5, 3))             # (N, T, C)
      >>> _, params = jax.eval_shape(init, jax.random.PRNGKey(0))       # shapes only
      >>> params[-1].shape                                              # pos_emb
      (1, 5, 3)
    """

    NONE = "NONE"
    SUM = "SUM"
    CONCAT = "CONCAT"


def _as_enum(value, cls, arg: str, name: str):
    # Enum members of another library (e.g. NT's) are accepted by name.
    raw = value.name if isinstance(value, enum.Enum) else value
    if isinstance(raw, str) and raw.upper() in cls.__members__:
        return cls[raw.upper()]
    raise ValueError(f"{name}: `{arg}` must be one of {tuple(cls.__members__)}; got {value!r}.")


def _positive_int(value, arg: str, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
        raise ValueError(
            f"{name}: `{arg}` must be a positive int"
            f"{' or None' if allow_none else ''}; got {value!r}."
        )
    return int(value)


@dataclasses.dataclass(frozen=True)
class _Config:
    """The hyperparameters the kernel needs (see ``attention_kernel``)."""

    mechanism: AttentionMechanism
    linear_scaling: bool
    QK_std: object
    OV_std: object
    b_std: object
    pos_emb_type: PositionalEmbedding
    W_pos_emb_std: Any
    n_chan_pos_emb: Optional[int]
    val_pos_emb: bool
    position_cov: Callable  # spatial shape -> (P, P) numpy covariance R


def position_covariance(spatial: tuple, p_norm, decay_fn) -> np.ndarray:
    r""":math:`R[s, t] = \mathrm{decay\_fn}(\sum_a |s_a - t_a|^{\mathrm{p\_norm}})` over
    flattened positions.

    ``decay_fn=None`` gives :math:`R = I` (independent embeddings per position).
    Evaluated at trace time (``jax.ensure_compile_time_eval``): :math:`R` depends
    only on the static spatial shape. ``decay_fn`` must act elementwise.
    """
    size = math.prod(spatial)
    if decay_fn is None:
        return np.eye(size)
    grids = np.indices(spatial).reshape(len(spatial), size).T
    dist = np.sum(np.abs(grids[:, None, :] - grids[None, :, :]) ** p_norm, axis=-1)
    with jax.ensure_compile_time_eval():
        out = decay_fn(jnp.asarray(dist))
    # A traced R: decay_fn closes over a traced value (a gradient in its length scale).
    traced = _checks.concrete(out) is None
    R = out if traced else np.asarray(out, dtype=np.float64)
    if jnp.shape(R) != (size, size) or not (traced or np.all(np.isfinite(R))):
        raise ValueError(
            f"GlobalSelfAttention: `pos_emb_decay_fn` must map the "
            f"array of pairwise distances elementwise to finite "
            f"values; got an array of shape {jnp.shape(R)}."
        )
    return R


# ------------------------------------------------------------ the layer


def GlobalSelfAttention(
    n_chan_out: int,
    n_chan_key: int,
    n_chan_val: int,
    n_heads: int,
    linear_scaling: bool = True,
    W_key_std: float = 1.0,
    W_value_std: float = 1.0,
    W_query_std: float = 1.0,
    W_out_std: float = 1.0,
    b_std: Optional[float] = None,
    attention_mechanism: str = "SOFTMAX",
    pos_emb_type: str = "NONE",
    pos_emb_p_norm: float = 2,
    pos_emb_decay_fn: Optional[Callable] = None,
    n_chan_pos_emb: Optional[int] = None,
    W_pos_emb_std: float = 1.0,
    val_pos_emb: bool = False,
    batch_axis: int = 0,
    channel_axis: int = -1,
) -> Layer:
    r"""Multi-head self-attention over all positions (neural-tangents' layer).

    Formulas, sources and the kernel: see the module docstring.

    Args:
      n_chan_out: output channels of the finite network.
      n_chan_key: channels :math:`d` of keys/queries per head.
      n_chan_val: channels of values per head.
      n_heads: number of heads :math:`H`.
      linear_scaling: True: logits scaled by :math:`1/d` and :math:`W_Q` tied to
        :math:`W_K` (deterministic attention at infinite width); False:
        :math:`1/\sqrt{d}` with independent :math:`W_Q` (kernel only for
        ``"IDENTITY"``).
      W_key_std, W_query_std: enter only as
        :math:`\mathrm{QK\_std} = \mathrm{W\_query\_std} \cdot \mathrm{W\_key\_std}`.
      W_value_std, W_out_std: enter only as
        :math:`\mathrm{OV\_std} = \mathrm{W\_out\_std} \cdot \mathrm{W\_value\_std}`.
      b_std: bias standard deviation (None: no bias).
      attention_mechanism: ``"SOFTMAX"``, ``"IDENTITY"``, ``"ABS"``, ``"RELU"``
        (or an `AttentionMechanism`).
      pos_emb_type: ``"NONE"``, ``"SUM"``, ``"CONCAT"`` (or a
        `PositionalEmbedding`).
      pos_emb_p_norm: :math:`p` of the distance :math:`\sum_a |s_a - t_a|^p`.
      pos_emb_decay_fn: elementwise map from distances to the embeddings'
        covariance :math:`R` (None: :math:`R = I`).
      n_chan_pos_emb: channels :math:`P_e` of the embeddings (None: as the
        inputs; with SUM it must equal the input channels).
      W_pos_emb_std: scale of the embeddings.
      val_pos_emb: also use the embeddings in the values.
      batch_axis, channel_axis: must be 0 and -1.

    Params: ``(W_Q or None, W_K, W_V, W_out, b or None, pos_emb or None)`` with
    ``W_Q, W_K: (H, C_k, d)``, ``W_V: (H, C_v, n_val)``,
    ``W_out: (n_val·H, n_chan_out)`` (rows ordered value channel-major, head
    fastest), ``b: (1, …, 1, n_chan_out)``, ``pos_emb: (1, *S, P_e)`` — NT's
    layout, so NT's parameters can be used as they are (``init_fn`` draws the
    same distribution, not NT's numbers for the same key).

    ``apply_fn(params, x, mask_constant=None)``: ``x`` of shape ``(N, *S, C)``;
    masked inputs as in the module docstring (a keyword ``mask=`` reaches the
    layer directly).

    Example:
      >>> import jax
      >>> from ntk.stax import (Conv, Dense, GlobalAvgPool, GlobalSelfAttention,
      ...                       Relu, serial)
      >>> _, _, kernel_fn = serial(Conv(64, (1,)), GlobalSelfAttention(64, 64, 64, 2),
      ...                          Relu(), GlobalAvgPool(), Dense(1))
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))   # (N, T, C)
      >>> kernel_fn(x, None, "ntk").shape
      (2, 2)
    """
    name = f"GlobalSelfAttention({n_chan_out}, {n_chan_key}, {n_chan_val}, {n_heads})"
    for arg, v in (
        ("n_chan_out", n_chan_out),
        ("n_chan_key", n_chan_key),
        ("n_chan_val", n_chan_val),
        ("n_heads", n_heads),
    ):
        _positive_int(v, arg, name)
    n_chan_pos_emb = _positive_int(n_chan_pos_emb, "n_chan_pos_emb", name, True)
    for arg, v in (("linear_scaling", linear_scaling), ("val_pos_emb", val_pos_emb)):
        require_bool(v, arg, name)
    for arg, std in (
        ("W_key_std", W_key_std),
        ("W_value_std", W_value_std),
        ("W_query_std", W_query_std),
        ("W_out_std", W_out_std),
        ("W_pos_emb_std", W_pos_emb_std),
    ):
        check_std(std, arg, name)
    check_std(b_std, "b_std", name, allow_none=True)
    mechanism = _as_enum(attention_mechanism, AttentionMechanism, "attention_mechanism", name)
    pe_type = _as_enum(pos_emb_type, PositionalEmbedding, "pos_emb_type", name)
    if pos_emb_decay_fn is not None and not callable(pos_emb_decay_fn):
        raise TypeError(
            f"{name}: `pos_emb_decay_fn` must be None or a callable "
            f"of the distance array; got {pos_emb_decay_fn!r}."
        )
    try:
        p_ok = float(pos_emb_p_norm) > 0
    except (TypeError, ValueError):
        p_ok = False
    if not p_ok:
        raise ValueError(
            f"{name}: `pos_emb_p_norm` must be a positive number; got {pos_emb_p_norm!r}."
        )
    check_channel_axis(channel_axis, batch_axis, name)
    linear_scaling, val_pos_emb = bool(linear_scaling), bool(val_pos_emb)
    with_pe = pe_type is not PositionalEmbedding.NONE

    covariances, choleskies = {}, {}

    def position_cov(spatial):
        if spatial not in covariances:
            R = position_covariance(spatial, pos_emb_p_norm, pos_emb_decay_fn)
            if not isinstance(R, np.ndarray):  # traced: valid in this trace only
                return R
            covariances[spatial] = R
        return covariances[spatial]

    def position_cholesky(spatial):
        if spatial not in choleskies:
            R = position_cov(spatial)
            try:
                choleskies[spatial] = np.linalg.cholesky(R)
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"{name}: the finite network draws embeddings with covariance "
                    f"R = pos_emb_decay_fn(distances), which must be positive "
                    f"definite; it is not for spatial shape {spatial}."
                ) from None
        return choleskies[spatial]

    def pe_channels(c: int) -> int:
        if pe_type is PositionalEmbedding.SUM and n_chan_pos_emb not in (None, c):
            raise ValueError(
                f"{name}: with pos_emb_type='SUM' the embeddings are "
                f"added to the inputs, so `n_chan_pos_emb` must be None "
                f"or the input channels ({c}); got {n_chan_pos_emb}."
            )
        return c if n_chan_pos_emb is None else n_chan_pos_emb

    def in_channels(c: int) -> tuple:
        """Channels of the key/query and value inputs."""
        if pe_type is not PositionalEmbedding.CONCAT:
            pe_channels(c)
            return c, c
        ck = c + pe_channels(c)
        return ck, ck if val_pos_emb else c

    def check_shape(shape, what):
        if len(shape) < 2:
            raise ValueError(
                f"{name}: {what} must have shape (batch, ..., channels) "
                f"with rank >= 2; got {tuple(shape)}."
            )

    def init_fn(key, input_shape):
        input_shape = tuple(input_shape)
        check_shape(input_shape, "inputs")
        c = input_shape[-1]
        ck, cv = in_channels(c)
        shapes = [
            None if linear_scaling else (n_heads, ck, n_chan_key),
            (n_heads, ck, n_chan_key),
            (n_heads, cv, n_chan_val),
            (n_chan_val * n_heads, n_chan_out),
            None if b_std is None else (1,) * (len(input_shape) - 1) + (n_chan_out,),
            (1,) + input_shape[1:-1] + (pe_channels(c),) if with_pe else None,
        ]
        # One draw split into the parameters: a single RNG kernel compiles
        # several times faster than one per parameter.
        sizes = [0 if sh is None else math.prod(sh) for sh in shapes]
        z = jax.random.normal(key, (sum(sizes),))
        params, start = [], 0
        for sh, size in zip(shapes, sizes):
            params.append(None if sh is None else z[start : start + size].reshape(sh))
            start += size
        return input_shape[:-1] + (n_chan_out,), tuple(params)

    def apply_fn(params, x, mask=None, **kwargs):
        W_Q, W_K, W_V, W_out, b, pe = params
        check_shape(x.shape, "inputs")
        n, spatial, c = x.shape[0], tuple(x.shape[1:-1]), x.shape[-1]
        ck, cv = in_channels(c)
        if W_K.shape[1] != ck or W_V.shape[1] != cv:
            raise ValueError(
                f"{name}: the parameters were made for other input "
                f"channels; got inputs of shape {tuple(x.shape)}."
            )
        keys_in = vals_in = x
        if with_pe:
            if tuple(pe.shape[1:-1]) != spatial:
                raise ValueError(
                    f"{name}: the positional embeddings were made for "
                    f"spatial shape {tuple(pe.shape[1:-1])}; got inputs "
                    f"of shape {tuple(x.shape)}."
                )
            if pos_emb_decay_fn is not None:
                L = position_cholesky(spatial)
                flat = pe.reshape(-1, pe.shape[-1])
                pe = jnp.matmul(jnp.asarray(L, flat.dtype), flat, precision=_HP).reshape(pe.shape)
            if mask is not None:
                hidden = key_mask(mask, x.shape).reshape(x.shape[:-1] + (1,))
                pe = jnp.where(hidden, jnp.zeros((), pe.dtype), pe)
            pe = pe * W_pos_emb_std
            if pe_type is PositionalEmbedding.SUM:
                keys_in = x + pe
            else:
                pe = jnp.broadcast_to(pe, x.shape[:-1] + (pe.shape[-1],))
                keys_in = jnp.concatenate([x, pe], axis=-1)
            if val_pos_emb:
                vals_in = keys_in
        keys_in = keys_in.reshape(n, -1, ck)
        vals_in = vals_in.reshape(n, -1, cv)
        keys = jnp.einsum("npc,hcd->hnpd", keys_in, W_K, precision=_HP)
        queries = (
            keys if linear_scaling else jnp.einsum("npc,hcd->hnpd", keys_in, W_Q, precision=_HP)
        )
        scale = ck * (n_chan_key if linear_scaling else math.sqrt(n_chan_key))
        logits = jnp.einsum("hnpd,hnqd->hnpq", queries, keys, precision=_HP) * (
            W_query_std * W_key_std / scale
        )
        if mask is not None:
            masked = key_mask(mask, x.shape)[None, :, None, :]
            fill = _MASKED_LOGIT if mechanism is AttentionMechanism.SOFTMAX else 0.0
            logits = jnp.where(masked, jnp.asarray(fill, logits.dtype), logits)
        weights = mechanism.fn()(logits)
        values = jnp.einsum("npc,hcv->hnpv", vals_in, W_V, precision=_HP)
        # (n, P, n_val, H) flattened value-major, as NT orders W_out's rows.
        heads = jnp.einsum("hnpq,hnqv->npvh", weights, values, precision=_HP)
        heads = heads.reshape(n, heads.shape[1], -1)
        out = jnp.matmul(heads, W_out, precision=_HP) * (
            W_out_std * W_value_std / math.sqrt(n_chan_val * n_heads * cv)
        )
        out = out.reshape((n,) + spatial + (n_chan_out,))
        return out if b is None else out + b_std * b

    config = _Config(
        mechanism,
        linear_scaling,
        W_query_std * W_key_std,
        W_out_std * W_value_std,
        b_std,
        pe_type,
        W_pos_emb_std,
        n_chan_pos_emb,
        val_pos_emb,
        position_cov,
    )

    def transform(k: Kernel, **kwargs) -> Kernel:
        if k.spatial_ndim > 0:
            require_full(k, name)
        in_channels(k.shape1[-1])  # SUM needs P_e == C
        if not linear_scaling and mechanism is not AttentionMechanism.IDENTITY:
            raise NotImplementedError(
                f"{name}: with linear_scaling=False the logits stay Gaussian at "
                f"infinite width and the kernel of attention_mechanism="
                f"'{mechanism.value}' has no known closed form (only 'IDENTITY' "
                f"does); use linear_scaling=True."
            )
        k = attention_kernel(k, config, *k.position_masks())
        return k.replace(
            shape1=tuple(k.shape1[:-1]) + (n_chan_out,), shape2=tuple(k.shape2[:-1]) + (n_chan_out,)
        )

    record = specs.GlobalSelfAttention(
        n_chan_out=n_chan_out,
        n_chan_key=n_chan_key,
        n_chan_val=n_chan_val,
        n_heads=n_heads,
        linear_scaling=linear_scaling,
        W_key_std=W_key_std,
        W_value_std=W_value_std,
        W_query_std=W_query_std,
        W_out_std=W_out_std,
        b_std=b_std,
        attention_mechanism=mechanism.value,
        pos_emb_type=pe_type.value,
        n_chan_pos_emb=n_chan_pos_emb,
        W_pos_emb_std=W_pos_emb_std,
        val_pos_emb=val_pos_emb,
    )
    # As in NT: a position stays masked after attention, and the outputs there
    # (bias, attention to other positions) are zeroed in the kernel.
    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        needs_full_spatial=True,
        spec=record,
        mask_fn=lambda mask, shape: position_mask(mask),
        remask=True,
    )


# ------------------------------------------------------------ the kernel


@overload
def key_mask(mask: None, shape) -> None: ...
@overload
def key_mask(mask: Any, shape) -> jax.Array: ...


def key_mask(mask, shape) -> Optional[jax.Array]:
    """``(N, P)`` booleans, True where position ``p`` of an input is masked.

    ``mask`` has the inputs' shape ``(N, *S, C)`` (a position counts as masked
    when all its channels are, as in NT), or ``(N, *S)``; size-1 axes
    broadcast.
    """
    if mask is None:
        return None
    mask = jnp.asarray(mask, dtype=bool)
    batch_spatial = tuple(shape[:-1])
    if mask.ndim == len(shape):
        mask = jnp.all(mask, axis=-1)
    elif mask.ndim != len(batch_spatial):
        raise ValueError(
            f"GlobalSelfAttention: a mask must have shape {tuple(shape)} "
            f"or {batch_spatial} (size-1 axes broadcast); got "
            f"{tuple(mask.shape)}."
        )
    mask = jnp.broadcast_to(mask, batch_spatial)
    return mask.reshape(shape[0], -1)


def _to_positions(m, n_batch: int):
    """``(*B, S1, S1', …, Sd, Sd')`` -> ``(*B, P, P')``, positions flattened."""
    if m is None:
        return None
    d = (m.ndim - n_batch) // 2
    batch = tuple(range(n_batch))
    perm = (
        batch
        + tuple(n_batch + 2 * a for a in range(d))
        + tuple(n_batch + 2 * a + 1 for a in range(d))
    )
    size = math.prod(m.shape[n_batch::2])
    return jnp.transpose(m, perm).reshape(m.shape[:n_batch] + (size, size))


def _from_positions(m, n_batch: int, spatial: tuple):
    """Inverse of `_to_positions` (the interleaved layout of `Kernel`)."""
    if m is None:
        return None
    d = len(spatial)
    m = m.reshape(m.shape[:n_batch] + tuple(spatial) * 2)
    perm = tuple(range(n_batch)) + tuple(
        ax for a in range(d) for ax in (n_batch + a, n_batch + d + a)
    )
    return jnp.transpose(m, perm)


def _sandwich(A1, M, A2):
    """``out[i, j] = A1[i] @ M[i, j] @ A2[j]ᵀ``.

    ``A1: (N1, P, P)``, ``M: (N1, N2, P, P)``, ``A2: (N2, P, P)``. Two batched
    products of ``P × P`` matrices (``2 N1 N2 P³`` multiply-adds), never the
    ``P⁴``-sized outer product of the weights.

    Two broadcasting matmuls rather than one einsum: on CPU the products cost
    less than the transposes XLA places around them, and from this form it
    places cheaper ones (the attention benchmark's kernel 1.3x faster with
    jax 0.10). The right factor goes first: left first is 2x slower.
    """
    r = jnp.matmul(M, jnp.swapaxes(A2, -1, -2)[None], precision=_HP)
    return jnp.matmul(A1[:, None], r, precision=_HP)


def _sandwich_self(A, M):
    """``out[i] = A[i] @ M[i] @ A[i]ᵀ`` for ``A, M: (N, P, P)``."""
    left = jnp.einsum("isp,ipq->isq", A, M, precision=_HP)
    return jnp.einsum("isq,itq->ist", left, A, precision=_HP)


def _affine(m, std, b_std):
    if m is None:
        return None
    m = std**2 * m
    return m if b_std is None else m + b_std**2


def attention_kernel(k: Kernel, cfg: _Config, mask1=None, mask2=None) -> Kernel:
    """The kernel of global self-attention, masked keys excluded.

    Args:
      k: the input `Kernel` in the full spatial layout (or vectors: one
        position).
      cfg: the layer's hyperparameters.
      mask1, mask2: masks of the ``x1``/``x2`` inputs (`key_mask` shapes; True
        = masked) or None; ``mask2`` None with ``x2`` given means unmasked.

    Returns the output `Kernel` (still the input's channel count in
    ``shape1``/``shape2``), Gaussian.
    """
    spatial = tuple(k.shape1[1:-1])
    same = k.cov2 is None
    dtype = k.nngp.dtype
    keep1 = _keep(mask1, k.shape1, dtype)
    keep2 = keep1 if same else _keep(mask2, k.shape2, dtype)
    # Θ = K (after a first affine layer): every step below maps both alike,
    # so the NTK's arrays stay the NNGP's and its sandwich is not recomputed.
    nngp, ntk = k.map_nngp_ntk(lambda m: _to_positions(m, 2))
    cov1, cov2 = _to_positions(k.cov1, 1), _to_positions(k.cov2, 1)

    # Mixing in the positional embeddings' covariance R.
    if cfg.pos_emb_type is PositionalEmbedding.NONE:
        wk, wr, R = 1.0, 0.0, None
    else:
        R = jnp.asarray(cfg.position_cov(spatial), nngp.dtype)
        wk, wr = 1.0, cfg.W_pos_emb_std**2
        if cfg.pos_emb_type is PositionalEmbedding.CONCAT:
            c = k.shape1[-1]
            p = c if cfg.n_chan_pos_emb is None else cfg.n_chan_pos_emb
            wk, wr = c / (c + p), wr * p / (c + p)

    def mixed(m, keep_a, keep_b, pair: bool):
        if m is None or R is None:
            return m
        r = jax.lax.broadcast_to_rank(R, m.ndim)
        if keep_a is not None:
            # Masked positions carry no embedding (zeroed in apply_fn).
            if pair:
                r = r * keep_a[:, None, :, None] * keep_b[None, :, None, :]
            else:
                r = r * keep_a[:, :, None] * keep_a[:, None, :]
        return wk * m + wr * r

    masked = keep1 is not None or keep2 is not None
    if masked:
        n1, n2 = k.shape1[0], k.shape2[0]
        ones = lambda n: jnp.ones((n, math.prod(spatial)), nngp.dtype)
        keep1 = ones(n1) if keep1 is None else keep1
        keep2 = ones(n2) if keep2 is None else keep2
    k11 = mixed(cov1, keep1, None, False)
    k22 = mixed(cov2, keep2, None, False)
    k12 = mixed(nngp, keep1, keep2, True)
    t12 = k12 if ntk is nngp else mixed(ntk, keep1, keep2, True)
    # The values see the embeddings only with val_pos_emb.
    v11, v22, v12, tv12 = (k11, k22, k12, t12) if cfg.val_pos_emb else (cov1, cov2, nngp, ntk)

    if cfg.linear_scaling:
        A1 = _weights(cfg, k11, keep1)
        A2 = A1 if same else _weights(cfg, k22, keep2)
        out11 = _affine(_sandwich_self(A1, v11), cfg.OV_std, cfg.b_std)
        out22 = None if same else _affine(_sandwich_self(A2, v22), cfg.OV_std, cfg.b_std)
        # The NNGP's and the NTK's sandwiches apart: stacked, XLA moves the
        # (2, N1, N2, P, P) stack through slower transposes.
        s12 = _sandwich(A1, v12, A2)
        out12 = _affine(s12, cfg.OV_std, cfg.b_std)
        ntk12 = None
        if tv12 is not None:
            st12 = s12 if tv12 is v12 else _sandwich(A1, tv12, A2)
            ntk12 = _affine(st12 + 2 * s12, cfg.OV_std, cfg.b_std)
    else:
        out11, out22, out12, ntk12 = _square_root_identity(
            cfg, k11, k22, k12, t12, v11, v22, v12, tv12, keep1, keep2
        )

    return k.replace(
        nngp=_from_positions(out12, 2, spatial),
        ntk=_from_positions(ntk12, 2, spatial),
        cov1=_from_positions(out11, 1, spatial),
        cov2=_from_positions(out22, 1, spatial),
        is_gaussian=True,
    )


def _keep(mask, shape, dtype):
    """1 for the positions that take part as keys, 0 for masked ones."""
    m = key_mask(mask, shape)
    return None if m is None else (~m).astype(dtype)


def _weights(cfg: _Config, k_self, keep):
    """``A = φ(QK_std · K(x, x))`` per input, ``(N, P_query, P_key)``."""
    logits = cfg.QK_std * k_self
    if keep is not None:
        fill = _MASKED_LOGIT if cfg.mechanism is AttentionMechanism.SOFTMAX else 0.0
        logits = jnp.where(keep[:, None, :] > 0, logits, jnp.asarray(fill, logits.dtype))
    return cfg.mechanism.fn()(logits)


def _square_root_identity(cfg, k11, k22, k12, t12, v11, v22, v12, tv12, keep1, keep2):
    """Kernels of identity attention with ``1/√d`` logits (Hron et al. 2020).

    With ``k``, ``t`` the NNGP and NTK of the key/query inputs and ``v``,
    ``tv`` those of the value inputs, and sums over pairs of key positions
    that are not masked (``⟨a, b⟩ = Σ_{p,p'} a_{pp'} b_{pp'}``):

        K'  = std² · ⟨k, v⟩ · k + b_std²
        Θ'  = std² · ((⟨k, tv⟩ + ⟨v, t⟩) · k + ⟨k, v⟩ · (t + 4 k)) + b_std²

    with ``std = QK_std · OV_std``: the value and output weights give ``2 k``,
    the query and key weights another ``2 k``, and the inputs' NTK enters
    through the queries (``t``), keys (``⟨v, t⟩``) and values (``⟨k, tv⟩``).
    """
    std = cfg.QK_std * cfg.OV_std

    def dot(a, b, keep_a, keep_b, pair):
        if keep_a is not None:
            w = (
                keep_a[:, None, :, None] * keep_b[None, :, None, :]
                if pair
                else keep_a[:, :, None] * keep_a[:, None, :]
            )
            a = a * w
        return jnp.sum(a * b, axis=(-2, -1), keepdims=True)

    out11 = _affine(dot(k11, v11, keep1, None, False) * k11, std, cfg.b_std)
    out22 = (
        None if k22 is None else _affine(dot(k22, v22, keep2, None, False) * k22, std, cfg.b_std)
    )
    kv12 = dot(k12, v12, keep1, keep2, True)
    out12 = _affine(kv12 * k12, std, cfg.b_std)
    ntk12 = None
    if t12 is not None:
        cross = dot(k12, tv12, keep1, keep2, True) + dot(v12, t12, keep1, keep2, True)
        ntk12 = _affine(cross * k12 + kv12 * (t12 + 4 * k12), std, cfg.b_std)
    return out11, out22, out12, ntk12
