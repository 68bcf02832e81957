r"""The Myrtle convolutional networks (Shankar et al. 2020) and their fast CNTK.

``Myrtle(depth)`` is the network of neural-tangents' README ("Myrtle
network", depths 5, 7 and 10, after David Page's Myrtle ResNet), used by
Shankar et al. 2020, "Neural Kernels Without Tangents", for their CIFAR-10
kernels::

    [Conv(3×3, SAME) + Relu] × k1, AvgPool 2,
    [Conv(3×3, SAME) + Relu] × k2, AvgPool 2,
    [Conv(3×3, SAME) + Relu] × k3, average over all positions, Dense

with ``(k1, k2, k3) = (2, 1, 1), (2, 2, 2), (3, 3, 3)`` for depth 5, 7, 10
(the depth counts the weight layers). On 32×32 images the last average is
NT's three ``AvgPool((2, 2), (2, 2))`` and ``Flatten``; here it is one
`GlobalAvgPool`, the same average for any image size divisible by 4.

Its kernel is exactly the layers' (`serial`), computed by a fused program
instead of layer by layer. Every layer keeps the full spatial covariance
:math:`K(h, w, h', w')` of each pair of images, so the work per pair is
:math:`O(H^2 W^2)` per layer; the program spends it as follows.

* Layout ``(h, w, h', w')`` per pair (NT's is ``(h, h', w, w')``): the first
  convolution of the input Gram is then one matrix product of 3×3 patches,
  :math:`K_1(s, s') = \mathrm{W\_std}^2/(9C)\, \langle P(s), P'(s') \rangle
  + \mathrm{b\_std}^2`, with no transpose.
* A Conv+Relu layer is two loops over the covariance entries, each reading
  the previous layer's :math:`(K, \Theta)` through the nine shift-together taps of
  the 3×3 window (Novak et al. 2019, eq. 8) and writing one array: one
  computes the ReLU NNGP :math:`K_r`, the other the NTK
  :math:`\Theta_r = \Theta \cdot \dot{K}`. XLA on
  CPU fuses a loop only when it has one output, and otherwise materialises
  every shared intermediate (the arccosine, square roots): two single-output
  loops, kept apart by an optimization barrier, are 3x faster than one
  with two outputs.
* Outputs are written into zero-bordered buffers in place, so the next
  layer's taps need no bounds checks (SAME padding is that zero border).
* The ReLU dual is evaluated from the correlation :math:`\rho` with an arcsine
  polynomial (``_pi_minus_angle``) instead of an arctangent: one square root
  and no division per entry for :math:`\dot{K}`.
* Pairs are processed in chunks (`jax.lax.map`), so memory does not grow
  with the number of pairs; with ``x2=None`` only pairs :math:`i \le j` are
  computed. Each image's per-layer variances :math:`K(s, s)` (needed by the ReLU
  dual) come from its pair with itself, computed first.

Derivatives (e.g. with respect to the inputs) are those of the layer-by-layer
kernel: the fused program is the primal of a `jax.custom_jvp` whose tangent
is computed by the layers.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.kernel import Kernel, inputs_to_kernel, select
from ntk.stax.combinators import serial
from ntk.stax.conv import Conv
from ntk.stax.elementwise import Relu
from ntk.stax.layer import KernelFn, Layer, check_std
from ntk.stax.linear import Dense
from ntk.stax.pooling import AvgPool, GlobalAvgPool

LAYER_FACTORS = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}
PI = math.pi
# Bytes of covariance buffers one chunk of pairs may hold. Small chunks stay
# in cache better: at 32×32 one pair per chunk is 1.5x faster than 4, and
# batching only the later, smaller stages over 12 pairs is 1.1-1.5x slower.
_CHUNK_BYTES = 32 * 2**20
# Live (H+2)²(W+2)²-sized buffers per pair in a Conv+Relu step: the two
# inputs, the two outputs and XLA's temporaries.
_BUFFERS_PER_PAIR = 6


def Myrtle(
    depth: int,
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.0,
    width: int = 128,
    num_classes: int = 10,
) -> Layer:
    r"""The Myrtle-5, -7 or -10 network (neural-tangents' README, Shankar et al. 2020).

    ``[Conv(width, (3, 3), padding="SAME", W_std, b_std), Relu] × k1``,
    ``AvgPool((2, 2), (2, 2))``, the same ``× k2``, ``AvgPool``, ``× k3``,
    `GlobalAvgPool`, ``Dense(num_classes, W_std, b_std)``, with
    ``(k1, k2, k3) = (2, 1, 1)``, ``(2, 2, 2)`` or ``(3, 3, 3)`` for
    ``depth = 5, 7, 10`` (NTK parameterization). On 32×32 images this is NT's
    ``MyrtleNetwork(depth, W_std, b_std)`` exactly (its three final
    ``AvgPool`` + ``Flatten`` are the global average of the 8×8 map); the
    global average lets any NHWC image whose height and width are divisible
    by 4 through (e.g. 28×28 MNIST).

    Args:
      depth: 5, 7 or 10 (weight layers: convolutions plus the readout).
      W_std, b_std: weight and bias standard deviations of every layer
        (NT's README: :math:`\sqrt{2}` and 0).
      width: channels of the finite network (the kernel does not depend on it).
      num_classes: outputs of the readout.

    Returns:
      A `Layer` usable like any ``serial`` network: ``init_fn``/``apply_fn``
      for the finite network and ``kernel_fn`` for its NNGP and NTK, whose
      ``spec`` is the `ntk.stax.spec.Serial` record of its layers. On arrays without masks
      ``kernel_fn`` runs the fused program of the module docstring (the same
      kernel as the layers', to rounding); on a `Kernel`, with masks or
      extra keyword arguments it runs the layers.

    Example:
      >>> import jax
      >>> from ntk import stax
      >>> init_fn, apply_fn, kernel_fn = stax.Myrtle(5)
      >>> x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))   # NHWC
      >>> kernel_fn(x, None, "ntk").shape
      (2, 2)
    """
    name = f"Myrtle({depth})"
    if isinstance(depth, bool) or depth not in LAYER_FACTORS:
        raise ValueError(
            f"{name}: `depth` must be one of {sorted(LAYER_FACTORS)} "
            f"(Myrtle-5, -7, -10); got {depth!r}."
        )
    check_std(W_std, "W_std", name)
    check_std(b_std, "b_std", name)
    for arg, value in (("width", width), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: `{arg}` must be a positive int; got {value!r}.")
    factors = LAYER_FACTORS[depth]
    layers = []
    for stage, count in enumerate(factors):
        for _ in range(count):
            layers += [Conv(int(width), (3, 3), padding="SAME", W_std=W_std, b_std=b_std), Relu()]
        layers.append(AvgPool((2, 2), (2, 2)) if stage < 2 else GlobalAvgPool())
    layers.append(Dense(int(num_classes), W_std, b_std))
    net = serial(*layers)

    def init_fn(key, input_shape):
        check_image_shape(tuple(input_shape), name, "input_shape")
        return net.init_fn(key, input_shape)

    def apply_fn(params, x, **kwargs):
        check_image_shape(tuple(jnp.shape(x)), name, "x")
        return net.apply_fn(params, x, **kwargs)

    if _checks.concrete(W_std) is None or _checks.concrete(b_std) is None:
        # Traced standard deviations (a gradient in W_std): the fused program
        # bakes them in at compile time, the layers take them as values.
        return Layer(init_fn, apply_fn, net.kernel_fn)
    plan = _Plan(factors, float(W_std), float(b_std), int(num_classes))
    kernel_fn = _MyrtleKernelFn(net.kernel_fn, plan, name)
    return Layer(init_fn, apply_fn, kernel_fn)


def check_image_shape(shape: tuple, name: str, arg: str):
    """Myrtle networks take NHWC images with H and W divisible by 4."""
    if len(shape) != 4 or shape[1] % 4 or shape[2] % 4 or min(shape[1:]) < 1:
        raise ValueError(
            f"{name}: `{arg}` must be NHWC images (N, H, W, C) whose "
            f"height and width are positive multiples of 4 (two "
            f"stride-2 poolings); got shape {shape}."
        )


class _Plan:
    """Hyperparameters of the fused program (plain floats: compile-time)."""

    def __init__(self, factors, W_std, b_std, num_classes):
        self.factors, self.W_std, self.b_std = factors, W_std, b_std
        self.num_classes = num_classes


class _MyrtleKernelFn(KernelFn):
    """``kernel_fn`` of `Myrtle`: the fused program on plain arrays, the
    layers (``serial``) on Kernels, masked or empty inputs and extra keyword
    arguments."""

    def __init__(self, layers_fn: KernelFn, plan: _Plan, name: str):
        super().__init__(
            layers_fn.transform,
            name,
            needs_full_spatial=True,
            spec=layers_fn.spec,
            pairwise=layers_fn.pairwise,
        )
        self._plan = plan

    def __call__(self, x1, x2=None, get=None, **kwargs):
        for arg, x in (("x1", x1), ("x2", x2)):
            if x is not None and hasattr(x, "shape") and not isinstance(x, Kernel):
                check_image_shape(tuple(x.shape), self.name, arg)
        return super().__call__(x1, x2, get, **kwargs)

    def _from_arrays(
        self, x1, x2, get, compute_ntk, mask_constant=None, masks=(None, None), **kwargs
    ):
        empty = x1.shape[0] == 0 or (x2 is not None and x2.shape[0] == 0)
        if mask_constant is not None or masks != (None, None) or kwargs or empty:
            return super()._from_arrays(x1, x2, get, compute_ntk, mask_constant, masks, **kwargs)
        return select(myrtle_kernel(x1, x2, self._plan, self.transform, compute_ntk), get)


def myrtle_kernel(x1, x2, plan: _Plan, layers_transform, compute_ntk: bool = True) -> Kernel:
    """The output `Kernel` of a Myrtle network on images ``x1``, ``x2`` (or None).

    ``layers_transform`` is the layers' own transform, which supplies the
    derivatives (see the module docstring).
    """
    dtype = jnp.result_type(x1, float) if x2 is None else jnp.result_type(x1, x2, float)
    x1 = jnp.asarray(x1, dtype)
    x2 = None if x2 is None else jnp.asarray(x2, dtype)

    def by_layers(a, b):
        k = layers_transform(inputs_to_kernel(a, b, diagonal_spatial=False, compute_ntk=True))
        return k.nngp, k.ntk, k.cov1, (k.cov1 if k.cov2 is None else k.cov2)

    fast: Callable[..., Any]
    slow: Callable[..., Any]
    args: tuple
    if x2 is None:
        fast, slow, args = (lambda a: _symmetric(a, plan), lambda a: by_layers(a, None), (x1,))
    else:
        fast, slow, args = (lambda a, b: _asymmetric(a, b, plan), by_layers, (x1, x2))
    fused = jax.custom_jvp(fast)
    fused.defjvp(lambda primals, tangents: (fast(*primals), jax.jvp(slow, primals, tangents)[1]))
    nngp, ntk, cov1, cov2 = fused(*args)
    if x2 is None:
        cov2 = None
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    return Kernel(
        nngp=nngp,
        ntk=ntk if compute_ntk else None,
        cov1=cov1,
        cov2=cov2,
        shape1=(x1.shape[0], plan.num_classes),
        shape2=(n2, plan.num_classes),
        diagonal_spatial=False,
        is_gaussian=True,
    )


# ------------------------------------------------------------ pair lists


def _symmetric(x, plan):
    """``(nngp, ntk, cov, cov)`` of ``x`` with itself from the pairs ``i ≤ j``."""
    n = x.shape[0]
    self_nngp, self_ntk, variances = _self_pairs(x, plan)
    rows, cols = np.triu_indices(n, 1)
    nngp = jnp.zeros((n, n), x.dtype).at[np.arange(n), np.arange(n)].set(self_nngp)
    ntk = jnp.zeros((n, n), x.dtype).at[np.arange(n), np.arange(n)].set(self_ntk)
    if rows.size:
        k, t = _cross_pairs(x, x, variances, variances, rows, cols, plan)
        nngp = nngp.at[rows, cols].set(k).at[cols, rows].set(k)
        ntk = ntk.at[rows, cols].set(t).at[cols, rows].set(t)
    return nngp, ntk, self_nngp, self_nngp


def _asymmetric(x1, x2, plan):
    n1, n2 = x1.shape[0], x2.shape[0]
    # One pass (and one compiled loop) over both sets' self-pairs.
    cov, _, var = _self_pairs(jnp.concatenate([x1, x2]), plan)
    cov1, cov2 = cov[:n1], cov[n1:]
    var1, var2 = [v[:n1] for v in var], [v[n1:] for v in var]
    rows, cols = np.divmod(np.arange(n1 * n2), n2)
    k, t = _cross_pairs(x1, x2, var1, var2, rows, cols, plan)
    return k.reshape(n1, n2), t.reshape(n1, n2), cov1, cov2


def _chunk_size(shape: tuple, dtype) -> int:
    """Pairs per chunk: as many as fit ``_CHUNK_BYTES`` at full resolution."""
    _, h, w, _ = shape
    per_pair = _BUFFERS_PER_PAIR * ((h + 2) * (w + 2)) ** 2 * jnp.dtype(dtype).itemsize
    return max(1, _CHUNK_BYTES // per_pair)


def _map_chunks(fn, n: int, chunk: int, *index_arrays):
    """``fn(*[a[chunk] for a in index_arrays])`` over chunks of ``n`` entries,
    concatenated; the last chunk is padded with copies of entry 0."""
    chunk = min(chunk, max(n, 1))
    pad = -n % chunk
    padded = [np.concatenate([a, np.zeros(pad, a.dtype)]).reshape(-1, chunk) for a in index_arrays]
    if len(padded[0]) == 1:
        out = fn(*[jnp.asarray(p[0]) for p in padded])
    else:
        out = jax.lax.map(lambda idx: fn(*idx), tuple(jnp.asarray(p) for p in padded))
        out = jax.tree_util.tree_map(lambda o: o.reshape((-1,) + o.shape[2:]), out)
    return jax.tree_util.tree_map(lambda o: o[:n], out)


def _self_pairs(x, plan):
    """Each image with itself: ``(nngp (N,), ntk (N,), variances per layer)``."""

    def fn(idx):
        xi = x[idx]
        return _pair_program(xi, xi, plan, None, None)

    return _map_chunks(fn, x.shape[0], _chunk_size(x.shape, x.dtype), np.arange(x.shape[0]))


def _cross_pairs(x1, x2, var1, var2, rows, cols, plan):
    def fn(i, j):
        return _pair_program(x1[i], x2[j], plan, [v[i] for v in var1], [v[j] for v in var2])[:2]

    return _map_chunks(fn, len(rows), _chunk_size(x1.shape, x1.dtype), rows, cols)


# ------------------------------------------------------- the pair program


def _pair_program(x1, x2, plan, var1, var2):
    """Kernels of the pairs ``(x1[p], x2[p])``: ``(nngp (P,), ntk (P,), variances)``.

    ``var1``/``var2``: per stage, the variances ``(P, L_s, H_s, W_s)`` of each
    image's pre-activations in the stage's ``L_s`` Conv layers; None for
    pairs of an image with itself, whose variances are read off the diagonal
    and returned. The first stage runs one pair at a time (its buffers are
    the large ones), the others on all P pairs at once.
    """
    own = var1 is None
    h, w = x1.shape[1:3]

    def first_stage(args):
        xa, xb, va, vb = args
        state = _first_layer(plan, xa, xb, None if own else va[:, 0], None if own else vb[:, 0])
        return _stage(plan, 0, state, h, w, None if own else (va, vb))

    args = (x1, x2, None if own else var1[0], None if own else var2[0])
    if x1.shape[0] == 1:
        k_r, theta_r, found = first_stage(args)
    else:
        single = jax.tree_util.tree_map(lambda a: a[:, None], args)
        k_r, theta_r, found = jax.lax.map(first_stage, single)
        k_r, theta_r, found = jax.tree_util.tree_map(lambda a: a[:, 0], (k_r, theta_r, found))
    variances = [found]
    h, w = h // 2, w // 2
    for stage in (1, 2):
        given = None if own else (var1[stage], var2[stage])
        k_r, theta_r, found = _stage(plan, stage, (k_r, theta_r), h, w, given)
        variances.append(found)
        if stage < 2:
            h, w = h // 2, w // 2
    b2 = plan.b_std**2
    # The zero border adds nothing to the sums.
    mean_k = k_r.sum((1, 2, 3, 4)) / (h * w) ** 2
    mean_t = theta_r.sum((1, 2, 3, 4)) / (h * w) ** 2
    scale = plan.W_std**2
    return scale * mean_k + b2, scale * (mean_k + mean_t) + b2, variances


def _relu_pair(k, theta_of, v1, v2):
    """``(K_r, Θ_r)`` zero-bordered, from the pre-activation NNGP ``k()`` and
    ``theta_of() = (K, Θ)``, recomputed for the second loop."""
    s12, r12 = _outer_factors(v1, v2)
    new_k = _relu_nngp(k(), s12, r12)
    # Two loops, kept apart by the barrier (see the module docstring): each
    # recomputes the taps instead of sharing a materialised K.
    r12 = jax.lax.optimization_barrier(r12)
    k_b, theta = theta_of()
    return _embed(new_k), _embed(theta * _relu_derivative(k_b, r12))


def _first_layer(plan, x1, x2, v1, v2):
    """First Conv (one product of 3×3 patches; its NTK equals its NNGP) and
    Relu: ``(K_r, Θ_r, variances)``; ``v1`` None: pairs of an image with itself."""
    c = x1.shape[-1]
    a, b2 = plan.W_std**2 / 9.0, plan.b_std**2
    k1 = (a / c) * jnp.einsum(
        "phwk,pgvk->phwgv", _patches(x1), _patches(x2), precision=jax.lax.Precision.HIGHEST
    ) + b2
    if v1 is None:
        v1 = v2 = _diagonal(k1)
    k_r, theta_r = _relu_pair(lambda: k1, lambda: (k1, k1), v1, v2)
    return k_r, theta_r, v1


def _stage(plan, stage, state, h, w, given):
    """The Conv+Relu layers of one stage at h×w, then its pooling.

    ``state``: the zero-bordered ``(K_r, Θ_r)`` entering the stage, or, for
    stage 0, ``_first_layer``'s output (its first layer done). ``given``:
    None (pairs of an image with itself) or the variances ``(P, L, h, w)``
    of both images. Returns ``(K_r, Θ_r, variances (P, L, h, w))``, pooled
    and bordered again unless it is the last stage. The layers after the
    first are one `jax.lax.scan` body, unrolled: at most three layers a
    stage, and a rolled loop copies its two full-size carries every
    iteration (Myrtle-10: 12.9 -> 8.2 CPU ms per pair of 32×32 images).
    """
    a, b2 = plan.W_std**2 / 9.0, plan.b_std**2
    own = given is None
    first = 1 if stage == 0 else 0
    k_r, theta_r = state[:2]
    count = plan.factors[stage]

    def layer(carry, vs):
        k_prev, theta_prev = carry
        k = a * _taps(k_prev, h, w) + b2
        u1, u2 = (_diagonal(k), None) if own else vs
        u2 = u1 if own else u2
        # The barrier separates the second loop's inputs from the first's.
        again = jax.lax.optimization_barrier((k_prev, theta_prev))

        def pre_again():
            k = a * _taps(again[0], h, w) + b2
            return k, k + a * _taps(again[1], h, w)

        return _relu_pair(lambda: k, pre_again, u1, u2), (u1 if own else None)

    xs = None if own else tuple(jnp.moveaxis(v[:, first:], 1, 0) for v in given)
    found = None
    if count - first:
        (k_r, theta_r), found = jax.lax.scan(
            layer, (k_r, theta_r), xs, length=count - first, unroll=True
        )
    if own:
        found = None if found is None else jnp.moveaxis(found, 0, 1)
        if stage == 0:
            head = state[2][:, None]
            found = head if found is None else jnp.concatenate([head, found], 1)
    else:
        found = given[0]
    if stage < 2:
        k_r, theta_r = (_embed(_pool(_interior(k_r))), _embed(_pool(_interior(theta_r))))
    return k_r, theta_r, found


def _interior(zp):
    return zp[:, 1:-1, 1:-1, 1:-1, 1:-1]


def _patches(x):
    """``(P, H, W, 9C)``: the zero-padded 3×3 neighbourhood of every position."""
    _, h, w, _ = x.shape
    xp = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    return jnp.concatenate(
        [xp[:, dh : dh + h, dw : dw + w, :] for dh in range(3) for dw in range(3)], -1
    )


def _taps(zp, h: int, w: int):
    """``Σ_{dh, dw} Z(h+dh, w+dw, h'+dh, w'+dw)`` of a zero-bordered ``Z``:
    the shift-together 3×3 window sum of a SAME convolution (unscaled)."""
    acc = None
    for dh in range(3):
        for dw in range(3):
            s = zp[:, dh : dh + h, dw : dw + w, dh : dh + h, dw : dw + w]
            acc = s if acc is None else acc + s
    return acc


def _embed(z):
    """``z`` inside a zero border of width 1 on every spatial axis.

    Written in place into zeros the compiler cannot see through: as a
    ``pad`` (which it turns this into otherwise) it becomes a loop over the
    padded array that tests every index, 4-10x slower than the loop it ends.
    """
    p, h, w, _, _ = z.shape
    zeros = jax.lax.optimization_barrier(jnp.zeros((p, h + 2, w + 2, h + 2, w + 2), z.dtype))
    return jax.lax.dynamic_update_slice(zeros, z, (0, 1, 1, 1, 1))


def _pool(z):
    """2×2 average pooling with stride 2 of both arguments (separable)."""
    acc = None
    for a in range(2):
        for b in range(2):
            for a2 in range(2):
                for b2 in range(2):
                    s = z[:, a::2, b::2, a2::2, b2::2]
                    acc = s if acc is None else acc + s
    assert acc is not None
    return acc * (1 / 16)


def _diagonal(k):
    """``K(s, s)``: ``(P, H, W, H, W) -> (P, H, W)``.

    A strided slice of the flattened ``(s, s')`` plane: s = s' every
    ``HW + 1`` entries (an einsum with repeated indices multiplies by an
    identity mask instead, a pass over the whole array).
    """
    p, h, w = k.shape[:3]
    return k.reshape(p, (h * w) ** 2)[:, :: h * w + 1].reshape(p, h, w)


def _outer_factors(v1, v2):
    """``sqrt(v1 v2')`` and ``1/sqrt(v1 v2')`` (0 where a variance is 0)
    laid out against ``(P, H, W, H', W')``."""

    def roots(v):
        s = jnp.sqrt(jnp.maximum(v, 0))
        return s, 1 / jnp.where(s > 0, s, jnp.inf)

    s1, r1 = roots(v1)
    s2, r2 = roots(v2)
    first = lambda u: u[:, :, :, None, None]
    second = lambda u: u[:, None, None, :, :]
    return first(s1) * second(s2), first(r1) * second(r2)


# ------------------------------------------------------------ ReLU dual


def _asin_coefficients(degree: int) -> tuple:
    """``P`` with ``arcsin z = z + z³ P(z²)`` on ``0 ≤ z ≤ 1/2``: a Chebyshev
    fit in ``t = z²`` converted to monomials (well conditioned on [0, 1/4]).

    Degree 5 is accurate to 2e-9 (below float32's rounding), degree 11 to
    2.2e-16 relative (float64's).
    """
    t = np.linspace(0.0, 0.25, 4001)[1:]
    z = np.sqrt(t)
    f = (np.arcsin(z) - z) / (t * z)
    # Near t = 0 the quotient cancels; its Taylor series is exact there.
    small = t < 1e-3
    ts = t[small]
    f[small] = 1 / 6 + 3 / 40 * ts + 5 / 112 * ts**2 + 35 / 1152 * ts**3
    fit = np.polynomial.chebyshev.Chebyshev.fit(t, f, degree, domain=[0, 0.25])
    return tuple(
        float(c)
        for c in fit.convert(kind=np.polynomial.Polynomial, domain=[0, 0.25], window=[0, 0.25]).coef
    )


_ASIN32 = _asin_coefficients(5)
_ASIN64 = _asin_coefficients(11)


def _pi_minus_angle(rho):
    """``(π − arccos ρ, 1 − |ρ|, |ρ|)`` for a correlation ρ.

    ``arccos|ρ| = π/2 − arcsin|ρ|`` for ``|ρ| ≤ 1/2`` and
    ``2 arcsin sqrt((1 − |ρ|)/2)`` above (Cephes' reduction), so the
    polynomial only meets ``z ≤ 1/2``; the angle near ρ = 1 is accurate to
    rounding relative to itself. ``1 − |ρ|`` within 4 eps of 0 is taken as 0
    (identical inputs; the `ntk.stax.elementwise` convention).
    """
    eps = float(jnp.finfo(rho.dtype).eps)
    u = jnp.minimum(jnp.abs(rho), 1.0)
    gap = 1 - u
    gap = jnp.where(gap <= 4 * eps, 0.0, gap)
    big = u > 0.5
    t = jnp.where(big, 0.5 * gap, u * u)
    z = jnp.where(big, jnp.sqrt(t), u)
    coef = _ASIN32 if jnp.finfo(rho.dtype).bits <= 32 else _ASIN64
    p = jnp.full_like(t, coef[-1])
    for c in coef[-2::-1]:
        p = p * t + c
    asin = z + (z * t) * p
    acos_u = jnp.where(big, 2 * asin, PI / 2 - asin)
    return jnp.where(rho < 0, acos_u, PI - acos_u), gap, u


def _relu_nngp(c12, s12, r12):
    """ReLU's dual ``sqrt(c11 c22) (sin θ + (π − θ) cos θ) / (2π)``
    (Cho & Saul 2009), ``cos θ = ρ = c12 / sqrt(c11 c22)``."""
    rho = c12 * r12
    pmt, gap, u = _pi_minus_angle(rho)
    sine = jnp.sqrt(gap * (1 + u))
    return s12 * (sine + pmt * rho) * (1 / (2 * PI))


def _relu_derivative(c12, r12):
    """``E[φ'(u) φ'(v)] = (π − θ) / (2π)`` for ReLU."""
    return _pi_minus_angle(c12 * r12)[0] * (1 / (2 * PI))
