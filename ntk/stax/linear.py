r"""Dense layers, reshapes, normalisation and dropout (the affine rule they share).

Parameterizations (Jacot et al. 2018 §2; Sohl-Dickstein et al. 2020, "On the
infinite width limit of neural networks with a standard parameterization"),
for a layer with :math:`n` inputs per output (fan-in) and weights
:math:`W_{ij} \sim \mathcal{N}(0, 1)`:

* ``"ntk"``: :math:`y = \mathrm{W\_std} / \sqrt{n} \cdot x W + \mathrm{b\_std} \cdot b`
* ``"standard"``: :math:`y = x W + b` with
  :math:`W_{ij} \sim \mathcal{N}(0, \mathrm{W\_std}^2 / n)`,
  :math:`b \sim \mathcal{N}(0, \mathrm{b\_std}^2)`.

Both give the same NNGP; the NTK picks up each parameter's gradient Gram
(Jacot et al. 2018, Theorem 1; Sohl-Dickstein et al. 2020, §3):

.. math::

    K' = \sigma_w^2 K + \sigma_b^2, \qquad
    \Theta' = \begin{cases}
        \sigma_w^2\, \Theta + K' & \text{"ntk"}, \\
        \sigma_w^2\, \Theta + n K + \mathbb{1}[\sigma_b \neq 0] & \text{"standard"},
    \end{cases}

with :math:`\sigma_w = \mathrm{W\_std}`, :math:`\sigma_b = \mathrm{b\_std}` and
:math:`n` the finite fan-in (the width a finite network would have).

Convolutions are in `ntk.stax.conv`, pooling in `ntk.stax.pooling`, their
spatial geometry in `ntk.stax.spatial`.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.kernel import Kernel
from ntk.stax import spec as specs
from ntk.stax._internal import norm_gap, safe_sqrt
from ntk.stax.layer import Layer, check_std, make_layer
from ntk.stax.masking import flatten_mask, masked_mean, position_mask

_PARAMETERIZATIONS = ("ntk", "standard")


def check_parameterization(parameterization: str, name: str) -> str:
    p = str(parameterization).lower()
    if p not in _PARAMETERIZATIONS:
        raise ValueError(
            f"{name}: `parameterization` must be one of "
            f"{_PARAMETERIZATIONS}; got {parameterization!r}."
        )
    return p


def check_affine_args(W_std, b_std, parameterization, name: str) -> str:
    """Check an affine layer's standard deviations; the checked ``parameterization``."""
    check_std(W_std, "W_std", name)
    check_std(b_std, "b_std", name, allow_none=True)
    return check_parameterization(parameterization, name)


def affine_init(W_std, b_std, parameterization: str, s):
    r"""``draw(key, W_shape, b_shape, fan_in) -> (W, b)``: a finite affine layer's
    parameters (``b`` None when ``b_std`` is).

    Under ``"ntk"`` both are standard normal (`affine_output` applies the
    scales); under ``"standard"`` the scales are in the parameters:
    :math:`W \sim \mathcal{N}(0, \mathrm{W\_std}^2 s[0] / \mathrm{fan\_in})`,
    :math:`b \sim \mathcal{N}(0, \mathrm{b\_std}^2)` (Sohl-Dickstein et al. 2020;
    neural-tangents' ``s``). Shared by `Dense` and the convolutions so their
    finite networks draw alike.
    """

    def draw(key, W_shape, b_shape, fan_in):
        kw, kb = jax.random.split(key)
        W = jax.random.normal(kw, W_shape)
        b = None if b_std is None else jax.random.normal(kb, b_shape)
        if parameterization == "standard":
            W = W * (W_std / (fan_in / s[0]) ** 0.5)
            b = None if b is None else b * b_std
        return W, b

    return draw


def check_channel_axis(channel_axis: int, batch_axis: int, name: str):
    if channel_axis not in (-1,) or batch_axis != 0:
        raise ValueError(
            f"{name}: only batch_axis=0 and channel_axis=-1 "
            f"(NHWC / (N, features)) are supported; got "
            f"batch_axis={batch_axis}, channel_axis={channel_axis}."
        )


def affine_output(y, b, fan_in, W_std, b_std, parameterization: str, s=(1, 1)):
    r"""The finite layer's output from :math:`y = x \cdot W` (or the convolution of
    :math:`x` with :math:`W`).

    NTK parameterization (:math:`W, b \sim \mathcal{N}(0, 1)` as drawn):
    :math:`(\sigma_w/\sqrt{\mathrm{fan\_in}}) \cdot y + \sigma_b \cdot b`;
    standard (the scales already in :math:`W` and :math:`b`, set by ``init_fn``):
    :math:`y/\sqrt{s[0]} + b`, with ``s = (s_in, s_out)`` the width scale of the
    standard parameterization of Sohl-Dickstein et al. 2020 (neural-tangents' ``s``).
    ``b`` may be None.
    """
    if b is not None:
        # Leading axes made explicit: correct under jax_numpy_rank_promotion="raise".
        b = jax.lax.broadcast_to_rank(b, jnp.ndim(y))
    if parameterization == "ntk":
        y = y * (W_std / fan_in**0.5)
        return y if b is None else y + b_std * b
    y = y / s[0] ** 0.5
    return y if b is None else y + b


def affine_kernel(k: Kernel, W_std, b_std, parameterization: str, fan_in_width: float) -> Kernel:
    r"""Kernel of :math:`W x + b` for a Gaussian :math:`(W, b)`; see the module docstring.

    ``fan_in_width`` multiplies the input NNGP in the standard-parameterization
    NTK (unused under ``"ntk"``): the finite fan-in over ``s[0]``, i.e. the
    channel count for ``Dense`` and channels × filter size for ``Conv``, whose
    ``k.nngp`` arrives here already averaged over the filter window.
    """

    def fc(m):
        if m is None:
            return None
        m = W_std**2 * m
        return m if b_std is None else m + b_std**2

    nngp = fc(k.nngp)
    ntk = k.ntk
    if ntk is not None:
        # Over the inputs' zero NTK the W_std² Θ term drops; under "ntk" that
        # leaves Θ' = K', kept as the same array (`Kernel.ntk_is_nngp`).
        if parameterization == "ntk":
            ntk = nngp if k.ntk_is_zero else nngp + W_std**2 * ntk
        else:
            ntk = fan_in_width * k.nngp
            if not k.ntk_is_zero:
                ntk = ntk + W_std**2 * k.ntk
            if b_std is not None:
                ntk = ntk + 1.0
    chord = None if k.chord is None else _affine_chord(k, W_std, b_std)
    return k.replace(
        nngp=nngp, ntk=ntk, cov1=fc(k.cov1), cov2=fc(k.cov2), is_gaussian=True, chord=chord
    )


def _affine_chord(k: Kernel, W_std, b_std):
    r"""The chord :math:`\chi' = 2(\sqrt{c'_{11} c'_{22}} - c'_{12})` of
    :math:`c' = \sigma_w^2 c + \sigma_b^2`, from :math:`\chi` (`Kernel.chord`):

    .. math::

        \chi' = \sigma_w^2 \chi + \frac{2 \sigma_w^2 \sigma_b^2 (r_1 - r_2)^2}
        {r'_1 r'_2 + \sigma_w^2 r_1 r_2 + \sigma_b^2},

    with :math:`r_i = \sqrt{c_{ii}}`, :math:`r'_i = \sqrt{c'_{ii}}` (from
    :math:`c'_{11} c'_{22} - (\sigma_w^2 r_1 r_2 + \sigma_b^2)^2
    = \sigma_w^2 \sigma_b^2 (r_1 - r_2)^2`): a sum of non-negative terms, so the
    bias, which pulls inputs of different norms together, leaves their angle
    right to rounding.
    """
    chord = W_std**2 * k.chord
    if b_std is None:
        return chord
    if k.norm1 is not None:  # the input kernel: norms from the inputs (`Kernel.norm1`)
        r1 = k.norm1[:, None]
        r2 = (k.norm1 if k.norm2 is None else k.norm2)[None, :]
    else:
        (v1, v2), _, _ = k.outer_vars()
        r1, r2 = safe_sqrt(v1), safe_sqrt(v2)
    o1, o2 = safe_sqrt(W_std**2 * r1 * r1 + b_std**2), safe_sqrt(W_std**2 * r2 * r2 + b_std**2)
    gap = norm_gap(r1, r2)
    den = o1 * o2 + W_std**2 * (r1 * r2) + b_std**2
    # gap · (gap / den), the ratio O(1/σ_b): a product gap² · (1/den) would
    # form gap² times the cotangent in reverse mode, which overflows float32
    # at the variances (~1e34) of deep networks' far-apart inputs.
    return chord + 2 * W_std**2 * b_std**2 * gap * (gap / jnp.where(den > 0, den, 1))


def Dense(
    out_dim: int,
    W_std: float = 1.0,
    b_std: float | None = None,
    batch_axis: int = 0,
    channel_axis: int = -1,
    parameterization: str = "ntk",
    s: tuple = (1, 1),
) -> Layer:
    r"""Fully connected layer acting on the last (channel) axis.

    Args:
      out_dim: output width of the finite network (ignored by the NTK-
        parameterized kernel, which is its infinite-width limit).
      W_std: weight standard deviation :math:`\sigma_w` (:math:`\ge 0`; may be a traced
        array).
      b_std: bias standard deviation :math:`\sigma_b`, or None for no bias.
      parameterization: ``"ntk"`` or ``"standard"`` (module docstring).
      s: NT's width multipliers for the standard parameterization: the weight
        is ``(in, s[1] · out)`` and the fan-in used is :math:`\mathrm{in} / s[0]`.

    Kernel: :math:`K' = \sigma_w^2 K + \sigma_b^2`,
    :math:`\Theta' = \sigma_w^2 \Theta + K'` (NTK parameterization).

    Example:
      >>> _, _, kernel_fn = Dense(512, W_std=1.5, b_std=0.1)
    """
    name = f"Dense({out_dim})"
    if not (isinstance(out_dim, int) and out_dim >= 1):
        raise ValueError(f"{name}: `out_dim` must be a positive int; got {out_dim!r}.")
    parameterization = check_affine_args(W_std, b_std, parameterization, name)
    check_channel_axis(channel_axis, batch_axis, name)
    # NT widens the finite layer by s[1] only under the standard parameterization.
    out = out_dim * s[1] if parameterization == "standard" else out_dim
    draw = affine_init(W_std, b_std, parameterization, s)

    def init_fn(key, input_shape):
        fan_in = input_shape[-1]
        W, b = draw(key, (fan_in, out), (out,), fan_in)
        return tuple(input_shape[:-1]) + (out,), (W, b)

    def apply_fn(params, x, **kwargs):
        W, b = params
        if x.shape[-1] != W.shape[0]:
            raise ValueError(
                f"{name}: expected inputs with {W.shape[0]} features "
                f"(last axis); got shape {tuple(x.shape)}."
            )
        return affine_output(x @ W, b, x.shape[-1], W_std, b_std, parameterization, s)

    def transform(k: Kernel, **kwargs) -> Kernel:
        k = affine_kernel(k, W_std, b_std, parameterization, k.shape1[-1] / s[0])
        return k.replace(shape1=tuple(k.shape1[:-1]) + (out,), shape2=tuple(k.shape2[:-1]) + (out,))

    # Masks: a position is padding for the output when all its input channels
    # are (neural-tangents' Dense); the bias makes padded outputs non-zero, so
    # their covariances are zeroed (remask).
    return make_layer(
        name,
        init_fn,
        apply_fn,
        transform,
        spec=specs.Dense(W_std, b_std, parameterization, tuple(s)),
        mask_fn=lambda mask, shape: position_mask(mask),
        remask=True,
    )


def Identity() -> Layer:
    """The identity map (e.g. the skip branch of a residual block).

    Example:
      >>> x = jnp.array([[1., 2.], [3., -1.]])
      >>> init_fn, apply_fn, kernel_fn = Identity()
      >>> bool((apply_fn((), x) == x).all())
      True
      >>> bool(jnp.allclose(kernel_fn(x, None, "nngp"), x @ x.T / 2))   # the inputs' kernel
      True
    """
    return make_layer(
        "Identity",
        lambda key, shape: (shape, ()),
        lambda params, x, **kw: x,
        lambda k, **kw: k,
        spec=specs.Parameterless(),
    )


def spatial_mean(m, n_batch: int, diagonal_spatial: bool):
    """Mean over same-position entries: the kernel of a flattened image."""
    if m is None:
        return None
    if not diagonal_spatial:
        d = (m.ndim - n_batch) // 2
        for _ in range(d):
            m = jnp.diagonal(m, axis1=n_batch, axis2=n_batch + 1)
    return jnp.mean(m, axis=tuple(range(n_batch, m.ndim)))


def Flatten(batch_axis: int = 0, batch_axis_out: int = 0) -> Layer:
    r"""Flatten all but the batch axis: ``(N, *S, C) -> (N, prod(S) C)``.

    A following ``Dense`` then sees every (position, channel) pair as an input,
    so the kernel is the mean over same-position covariances:
    :math:`K'(x, x') = (1/|S|) \sum_s K(x_s, x'_s)`. Masked positions count as zeros
    (the mean stays over all :math:`|S|`, as in neural-tangents); the mask is
    flattened with the input.

    Example:
      The kernel of flattened ``(N, H, W, C)`` images is their dot product over
      :math:`H \cdot W \cdot C`:

      >>> x = jnp.arange(24.).reshape(2, 2, 3, 2) / 10             # NHWC
      >>> Flatten().init_fn(None, x.shape)[0]                       # output shape
      (2, 12)
      >>> k = serial(Flatten(), Dense(1)).kernel_fn(x, None, "nngp")
      >>> flat = x.reshape(2, -1)
      >>> bool(jnp.allclose(k, flat @ flat.T / 12))
      True
    """
    name = "Flatten"
    if batch_axis != 0 or batch_axis_out != 0:
        raise ValueError(
            f"{name}: only batch_axis=0 is supported; got "
            f"batch_axis={batch_axis}, batch_axis_out={batch_axis_out}."
        )

    def flat(shape):
        size = 1
        for d in shape[1:]:
            size *= d
        return (shape[0], size)

    def init_fn(key, input_shape):
        return flat(tuple(input_shape)), ()

    def apply_fn(params, x, **kwargs):
        return x.reshape(x.shape[0], -1)

    def transform(k: Kernel, **kwargs) -> Kernel:
        if k.spatial_ndim == 0:
            return k
        diag = k.diagonal_spatial
        return k.replace(
            nngp=spatial_mean(k.nngp, 2, diag),
            ntk=spatial_mean(k.ntk, 2, diag),
            cov1=spatial_mean(k.cov1, 1, diag),
            cov2=spatial_mean(k.cov2, 1, diag),
            shape1=flat(k.shape1),
            shape2=flat(k.shape2),
            # An entry of the flattened vector is one (position,
            # channel) pair; the averaged kernel is not the
            # covariance of any single entry, so an activation
            # must not follow directly (as in NT).
            diagonal_spatial=False,
            is_gaussian=False,
        )

    return make_layer(
        name, init_fn, apply_fn, transform, spec=specs.Parameterless(), mask_fn=flatten_mask
    )


# ---------------------------------------------------------- normalisation


def _outer(a, b, batch_pair: bool, diagonal_spatial: bool):
    """``a[i, s] · b[j, s']`` laid out like ``nngp`` (``batch_pair``) or ``cov``.

    ``a``, ``b``: per-input arrays ``(N, *S)`` (axes may be 1 after a mean).
    """

    def shaped(v, first):
        shape = list(v.shape[:1])
        if batch_pair:
            shape = shape + [1] if first else [1] + shape
        for size in v.shape[1:]:
            if diagonal_spatial:
                shape.append(size)
            else:
                shape += [size, 1] if first else [1, size]
        return v.reshape(shape)

    return shaped(a, True) * shaped(b, False)


def LayerNorm(axis=-1, eps: float = 1e-12, batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    r"""Layer normalisation
    :math:`y = (x - \operatorname{mean}_A x) / \sqrt{\mathrm{eps} + \operatorname{var}_A x}`.

    :math:`A` (``axis``) must contain the channel axis and may add spatial axes (and,
    as in NT, the batch axis). At infinite width the mean over channels is 0 and
    the variance is deterministic:
    :math:`v(x, s) = \mathrm{eps} + \operatorname{mean}_{A} K(x_s, x_s)` (the per-input
    variance averaged over the normalised non-channel axes), so
    :math:`K'(x_s, x'_t) = K(x_s, x'_t) / \sqrt{v(x, s)\, v(x', t)}` and
    :math:`\Theta` alike (neural-tangents' convention). Needs a Gaussian input kernel.
    With masked inputs (`ntk.stax.masking`) the statistics, finite and infinite
    width, are over the unmasked positions only:
    :math:`v = \mathrm{eps} + \operatorname{mean}_{\mathrm{unmasked}} K`.

    Example:
      Every normalised input has unit variance, whatever the scale before:

      >>> x = jnp.array([[1., 2.], [30., -10.]])
      >>> k = serial(Dense(1, W_std=3.), LayerNorm()).kernel_fn(x, None, "nngp")
      >>> bool(jnp.allclose(jnp.diag(k), 1.))
      True
    """
    name = f"LayerNorm(axis={axis})"
    check_channel_axis(channel_axis, batch_axis, name)
    axes_in = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if not axes_in or not all(isinstance(a, (int, np.integer)) for a in axes_in):
        raise ValueError(
            f"{name}: `axis` must be an int or a non-empty tuple of ints; got {axis!r}."
        )
    value = _checks.concrete(eps)  # None when traced: the caller's values
    if value is not None and not (
        value.ndim == 0 and np.issubdtype(value.dtype, np.number) and value >= 0
    ):
        raise ValueError(f"{name}: `eps` must be a number >= 0; got {eps!r}.")

    def canonical(ndim):
        if any(not -ndim <= a < ndim for a in axes_in):
            raise ValueError(f"{name}: `axis` {axis!r} out of range for inputs of rank {ndim}.")
        return sorted({int(a) % ndim for a in axes_in})

    def init_fn(key, input_shape):
        canonical(len(input_shape))
        return tuple(input_shape), ()

    def apply_fn(params, x, mask=None, **kwargs):
        ax = tuple(canonical(x.ndim))
        if mask is None:
            mean = jnp.mean(x, axis=ax, keepdims=True)
            var = jnp.var(x, axis=ax, keepdims=True)
        else:
            # Statistics of the unmasked positions only.
            m = position_mask(mask)
            mean = masked_mean(x, ax, m, keepdims=True)
            var = masked_mean((x - mean) ** 2, ax, m, keepdims=True)
        return (x - mean) / jnp.sqrt(eps + var)

    def transform(k: Kernel, **kwargs) -> Kernel:
        ndim = len(k.shape1)
        ax = canonical(ndim)
        if ndim - 1 not in ax:
            raise ValueError(
                f"{name}: the normalised axes must include the "
                f"channel axis ({ndim - 1} or -1) for the kernel to "
                f"converge at infinite width; got axis={axis!r}."
            )
        if not k.is_gaussian:
            raise ValueError(
                f"{name}: the input kernel must be Gaussian (LayerNorm "
                f"directly after an affine layer such as Dense/Conv); "
                f"got a non-Gaussian one."
            )
        # Axis 0 (batch) and 1..d (spatial) of (N, *S, C) index the variance
        # arrays (N, *S) the same way.
        red = tuple(a for a in ax if a != ndim - 1)
        m1, m2 = k.position_masks()
        if m1 is None or not red:
            v1 = jnp.mean(k.var1() + eps, axis=red, keepdims=True)
            v2 = jnp.mean(k.var2() + eps, axis=red, keepdims=True)
        else:
            # Mean over the unmasked positions only, as apply_fn's statistics.
            v1 = eps + masked_mean(k.var1(), red, m1, keepdims=True)
            v2 = eps + masked_mean(k.var2(), red, m2, keepdims=True)
        diag = k.diagonal_spatial
        norm12 = jnp.sqrt(_outer(v1, v2, True, diag))
        # χ = 2(√(c11 c22) − c12) scales as the covariance of the two inputs.
        chord = None if k.chord is None else k.chord / norm12
        return k.replace(
            nngp=k.nngp / norm12,
            ntk=None if k.ntk is None else k.ntk / norm12,
            cov1=k.cov1 / jnp.sqrt(_outer(v1, v1, False, diag)),
            cov2=None if k.cov2 is None else k.cov2 / jnp.sqrt(_outer(v2, v2, False, diag)),
            chord=chord,
        )

    return make_layer(name, init_fn, apply_fn, transform, spec=specs.Parameterless())


# ---------------------------------------------------------------- dropout


def _same_point_mask(m, n_batch: int, diagonal_spatial: bool, pair_batch: bool):
    """Boolean array, True where both arguments of ``m`` are the same input
    (when ``pair_batch``) at the same position; None if that is every entry."""
    pairs = [(0, 1)] if pair_batch else []
    if not diagonal_spatial:
        pairs += [(a, a + 1) for a in range(n_batch, m.ndim, 2)]
    if not pairs:
        return None
    iota = lambda a: jax.lax.broadcasted_iota(jnp.int32, m.shape, a)
    mask = iota(pairs[0][0]) == iota(pairs[0][1])
    for a, b in pairs[1:]:
        mask = mask & (iota(a) == iota(b))
    return mask


def Dropout(rate: float, mode: str = "train") -> Layer:
    r"""Dropout with KEEP probability ``rate`` (NT's and ``jax.example_libraries``'
    convention: ``rate=1`` keeps everything).

    ``apply_fn(params, x, rng=key)`` returns :math:`x \cdot m / \mathrm{rate}` with
    :math:`m \sim \mathrm{Bernoulli}(\mathrm{rate})` i.i.d. per entry (train) or ``x``
    (test).

    Kernel (train; Srivastava et al. 2014, as in NT):
    :math:`\mathbb{E}[m m'] / \mathrm{rate}^2` is :math:`1 / \mathrm{rate}` for the same
    entry and 1 otherwise, so the second moments of the same input at the same
    position are multiplied by :math:`1 / \mathrm{rate}`: all of
    ``cov1``/``cov2`` in the diagonal layout (their spatial diagonal in the full
    one), and ``nngp``/``ntk`` on their batch diagonal only when ``x2`` is
    ``x1`` (``x2=None``, or outside ``jit`` equal to ``x1``, which NT
    compares too: one mask for both arguments). The output is not Gaussian.
    Test mode: identity. The kernel is not a function of each pair of inputs
    alone, so `ntk.parallel.batch` refuses it.

    Example:
      Keeping half of the entries doubles each input's variance (and only it):

      >>> x = jnp.array([[1., 2.], [3., -1.]])
      >>> k = serial(Dense(1), Dropout(0.5)).kernel_fn(x, None, "nngp")
      >>> bool(jnp.allclose(k, (x @ x.T / 2) * jnp.array([[2., 1.], [1., 2.]])))
      True
    """
    name = f"Dropout({rate})"
    if mode not in ("train", "test"):
        raise ValueError(f"{name}: `mode` must be 'train' or 'test'; got {mode!r}.")
    value = _checks.concrete(rate)  # a traced rate (a gradient in it) is checked by its type
    try:
        rate_ok = value is None or (value.ndim == 0 and 0.0 < float(value) <= 1.0)
    except (TypeError, ValueError):
        rate_ok = False
    if isinstance(rate, (str, bool)) or not rate_ok:
        raise ValueError(f"{name}: `rate` (the keep probability) must be in (0, 1]; got {rate!r}.")

    def apply_fn(params, x, **kwargs):
        if mode == "test":
            return x
        rng = kwargs.get("rng")
        if rng is None:
            raise ValueError(
                f"{name}: apply_fn needs a PRNG key in train mode, "
                f"apply_fn(params, x, rng=key); got rng=None."
            )
        keep = jax.random.bernoulli(rng, rate, x.shape)
        return jnp.where(keep, x / rate, jnp.zeros((), x.dtype))

    def transform(k: Kernel, **kwargs) -> Kernel:
        if mode == "test":
            return k
        extra = 1.0 / rate - 1.0
        diag = k.diagonal_spatial

        def boost(m, n_batch, pair_batch):
            if m is None:
                return None
            mask = _same_point_mask(m, n_batch, diag, pair_batch)
            if mask is None:
                return m * (1.0 + extra)
            return m * (1.0 + extra * mask.astype(m.dtype))

        nngp, ntk = k.nngp, k.ntk
        if k.x1_is_x2:
            nngp, ntk = boost(nngp, 2, True), boost(ntk, 2, True)
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=boost(k.cov1, 1, False),
            cov2=boost(k.cov2, 1, False),
            is_gaussian=False,
        )

    # Not pairwise: the kernel of x with itself differs from that of a copy.
    return make_layer(
        name,
        lambda key, shape: (tuple(shape), ()),
        apply_fn,
        transform,
        spec=specs.Parameterless(),
        pairwise=False,
    )
