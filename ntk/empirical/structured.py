r"""Structured empirical NTK of `ntk.stax` networks: layer by layer, no Jacobians.

Walk the network's layer tree, as its typed records say (``kernel_fn.spec``:
`ntk.stax.spec.Serial`, ``Parallel``, ``Repeat``); every leaf layer with
parameters is a *site*.
One reverse pass per output entry of a slice gives, at every site, the
cotangent :math:`g = \partial f_r(x_n) / \partial y` of each output entry :math:`r` of
example :math:`n` with respect to the site's output :math:`y` (stax layers act on each
example separately, so one pass with the cotangent :math:`e_r` at *every* example
yields all :math:`n` at once). The empirical NTK is a sum over sites
:math:`\Theta = \sum_{\mathrm{sites}} \sum_{\theta \in \mathrm{site}}
\partial f(x_1)/\partial\theta \otimes \partial f(x_2)/\partial\theta` and each site's
term follows from :math:`g` and the site's input :math:`x`:

* ``Dense`` (:math:`y = \sigma x W + \beta b` on the last axis, positions :math:`s` of
  the other axes sharing :math:`W`):
  :math:`\Theta_W = \sigma^2 \sum_{s,s'} \langle x_{1,s}, x_{2,s'} \rangle
  \langle g_{1,s}, g_{2,s'} \rangle` — for vectors the product of the Gram matrix of
  the inputs and the Gram matrix of the cotangents — and
  :math:`\Theta_b = \beta^2 \langle \sum_s g_{1,s}, \sum_{s'} g_{2,s'} \rangle`;
  :math:`\sigma = \mathrm{W\_std}/\sqrt{\mathrm{fan\_in}},\ \beta = \mathrm{b\_std}` in
  the NTK parameterization and :math:`\sigma = 1/\sqrt{s[0]},\ \beta = 1` in the
  standard one;
* ``Conv``: the same with :math:`x_s` replaced by the patch of inputs that position
  :math:`s` sees (:math:`\sigma = \mathrm{W\_std}/\sqrt{C|F|}`), extracted with the
  record's filter shape,
  strides and padding (or, failing that, by the layer's own ``apply_fn`` with an
  identity filter bank);
* any other layer with parameters (records other than `ntk.stax.spec.Dense`
  and ``Conv``, including `ntk.stax.spec.Opaque` user layers): per-example Jacobians of its
  parameters, contracted over the parameters (Jacobian contraction restricted
  to the layer, through the cotangents :math:`g`) — exact, only slower.

Each term is a single ``einsum`` whose contraction order is chosen by FLOP
count, so for images it computes either the position-pair Grams or the
per-example weight gradients, whichever is cheaper. Neither the network's
Jacobian nor any layer's weight Jacobian is formed for Dense and Conv layers.

Assumptions (true of every `ntk.stax` layer): inputs and outputs have the
batch on axis 0 and examples do not interact.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk.empirical.axes import einsum, kernel_indices, kernel_shape
from ntk.stax import spec as specs
from ntk.stax._internal import split_rng
from ntk.stax.layer import KernelFn, Layer

tree_map = jax.tree_util.tree_map
tree_leaves = jax.tree_util.tree_leaves


def as_stax_layer(f) -> Optional[Layer]:
    """The `Layer` behind ``f`` (a `Layer` or stax triple); None for a plain
    function."""
    if isinstance(f, tuple) and len(f) == 3 and isinstance(f[2], KernelFn):
        return Layer(*f)
    return None


class _Site(NamedTuple):
    layer: Layer
    params: Any
    x: Any
    kwargs: dict


class _Recorder:
    """Collects the sites of one forward pass, adding ``eps[i]`` to output ``i``."""

    def __init__(self, eps=None):
        self.eps = eps
        self.sites: list[_Site] = []
        self.outputs: list = []

    def leaf(self, layer, p, x, kw):
        y = layer.apply_fn(p, x, **kw)
        if self.eps is not None:
            y = tree_map(jnp.add, y, self.eps[len(self.sites)])
        self.sites.append(_Site(layer, p, x, kw))
        self.outputs.append(y)
        return y


def _run(layer: Layer, p, x, kw: dict, rec: _Recorder):
    """``layer.apply_fn(p, x, **kw)``, evaluated layer by layer."""
    spec = layer.kernel_fn.spec
    children = spec.children
    if isinstance(spec, specs.Serial):
        for child, pc, kc in zip(children, p, split_rng(kw, len(children))):
            x = _run(child, pc, x, kc, rec)
        return x
    if isinstance(spec, specs.Parallel):
        return [
            _run(c, pc, xc, kc, rec)
            for c, pc, xc, kc in zip(children, p, x, split_rng(kw, len(children)))
        ]
    if isinstance(spec, specs.Repeat) and tree_leaves(p):
        # repeat stacks the parameters of its n copies on a leading axis.
        for i in range(tree_leaves(p)[0].shape[0]):
            x = _run(children[0], tree_map(lambda a: a[i], p), x, kw, rec)
        return x
    if not tree_leaves(p):
        return layer.apply_fn(p, x, **kw)
    return rec.leaf(layer, p, x, kw)


class _Side(NamedTuple):
    out: Any  # f(x), a pytree
    sites: list  # _Site per parameterised leaf
    cts: list  # per output leaf: per site, cotangents (N, R, *y.shape[1:])


def _side(layer: Layer, params, x, kw: dict) -> _Side:
    def forward(eps):
        rec = _Recorder(eps)
        out = _run(layer, params, x, kw, rec)
        return out, rec

    _, shapes = jax.eval_shape(lambda: (lambda o, r: (o, r.outputs))(*forward(None)))
    eps = tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    box = {}

    def g(eps):
        out, rec = forward(eps)
        box["rec"] = rec
        return out, [s.x for s in rec.sites]

    out, pull, xs = jax.vjp(g, eps, has_aux=True)
    sites = [s._replace(x=xi) for s, xi in zip(box["rec"].sites, xs)]
    leaves, treedef = jax.tree_util.tree_flatten(out)
    cts = []
    for k, o in enumerate(leaves):
        if o.ndim < 1:
            raise ValueError(
                f"{layer.kernel_fn.name}: structured NTK needs outputs "
                f"with a leading batch axis; got a scalar output."
            )
        rest = o.shape[1:]

        def pull_dir(r, k=k, o=o, rest=rest):
            ct = [jnp.zeros_like(l) for l in leaves]
            e = jax.nn.one_hot(r, math.prod(rest), dtype=o.dtype).reshape(rest)
            ct[k] = jnp.broadcast_to(e, o.shape)
            return pull(treedef.unflatten(ct))[0]  # type: ignore[attr-defined]

        # Directions go after the batch axis: per-example contractions then
        # need no transposed copies of the (large) cotangents.
        cts.append(jax.vmap(pull_dir, out_axes=1)(jnp.arange(math.prod(rest))) if sites else [])
    return _Side(out, sites, cts)


def structured_ntk(layer: Layer, params, x1, x2, kw1: dict, kw2: dict, trace_axes, diagonal_axes):
    """Empirical NTK of a stax network, site by site (module docstring)."""
    s1 = _side(layer, params, x1, kw1)
    s2 = s1 if x2 is None else _side(layer, params, x2, kw2)
    out1, treedef = jax.tree_util.tree_flatten(s1.out)
    out2 = treedef.flatten_up_to(s2.out)  # type: ignore[attr-defined]
    result = []
    for k, (o1, o2) in enumerate(zip(out1, out2)):
        idx = kernel_indices(o1.shape, o2.shape, trace_axes, diagonal_axes)
        total = jnp.zeros(
            kernel_shape(o1.shape, o2.shape, idx), jnp.result_type(o1, *tree_leaves(params))
        )
        for site1, site2, g1, g2 in zip(s1.sites, s2.sites, s1.cts[k], s2.cts[k]):
            total = total + _site_term(site1, site2, g1, g2, o1.shape, o2.shape, idx)
        result.append(total / idx.trace_size)
    return treedef.unflatten(result)  # type: ignore[attr-defined]


def _by_output(g, out_shape):
    """Cotangents ``(N, R, ...)`` -> ``(N, *rest, ...)`` with ``rest = out_shape[1:]``."""
    return tree_map(lambda a: a.reshape(a.shape[:1] + tuple(out_shape[1:]) + a.shape[2:]), g)


def _site_term(site1: _Site, site2: _Site, g1, g2, shape1, shape2, idx):
    spec = site1.layer.kernel_fn.spec
    if (
        isinstance(spec, (specs.Dense, specs.Conv))
        and isinstance(site1.params, (tuple, list))
        and len(site1.params) == 2
    ):
        return _affine_term(spec, site1, site2, _by_output(g1, shape1), _by_output(g2, shape2), idx)
    return _generic_term(site1, site2, g1, g2, shape1, shape2, idx)


def _affine_term(spec, site1, site2, g1, g2, idx):
    """Dense/Conv: Σ_{s,s'} ⟨X1_s, X2_s'⟩⟨g1_s, g2_s'⟩ + β²⟨Σ g1, Σ g2⟩."""
    standard = spec.parameterization == "standard"
    W, b = site1.params
    x1, x2 = site1.x, site2.x
    if isinstance(spec, specs.Dense):
        scale = 1 / spec.s[0] ** 0.5 if standard else spec.W_std / x1.shape[-1] ** 0.5
        w_scale2 = scale**2
    else:
        x1, x2 = _patches(site1, x1), _patches(site2, x2)
        w_scale2 = 1.0  # the patches come scaled by the layer itself
    n_rest = len(idx.lhs) - 1
    n_sp = x1.ndim - 2
    sp1 = tuple(next(idx.fresh) for _ in range(n_sp))
    sp2 = tuple(next(idx.fresh) for _ in range(n_sp))
    c, k = next(idx.fresh), next(idx.fresh)
    lab_g1 = idx.lhs + sp1 + (k,)
    lab_g2 = idx.rhs + sp2 + (k,)
    term = w_scale2 * einsum(
        x1,
        (idx.lhs[0],) + sp1 + (c,),
        g1,
        lab_g1,
        x2,
        (idx.rhs[0],) + sp2 + (c,),
        g2,
        lab_g2,
        out=idx.out,
    )
    if b is not None:
        beta = 1.0 if standard else spec.b_std
        axes = tuple(range(n_rest + 1, n_rest + 1 + n_sp))
        term = term + beta**2 * einsum(
            g1.sum(axes), idx.lhs + (k,), g2.sum(axes), idx.rhs + (k,), out=idx.out
        )
    return term


def _patches(site: _Site, x):
    """``σ``-scaled input patches of a Conv, ``(N, *S_out, C·|F|)``.

    From the `ntk.stax.spec.Conv` record (``filter_shape``, ``strides``,
    ``padding`` with `jax.lax`'s SAME rule, zeros for SAME and periodic copies
    for CIRCULAR): one strided slice of the padded input per filter offset. If
    the record disagrees with the weights, or the patch grid with the layer's
    output, the layer itself computes them (slower).
    """
    spec: Any = site.layer.kernel_fn.spec  # a spec.Conv (the caller dispatched on it)
    W, _ = site.params
    filt, cin = tuple(W.shape[:-2]), W.shape[-2]
    if tuple(spec.filter_shape) == filt and spec.padding in ("VALID", "SAME", "CIRCULAR"):
        n = len(filt)
        strides = tuple(spec.strides or (1,) * n)
        pads = [(0, 0)] * n
        if spec.padding != "VALID":
            pads = list(jax.lax.padtype_to_pads(x.shape[1:-1], filt, strides, "SAME"))
        xp = jnp.pad(
            x, [(0, 0)] + pads + [(0, 0)], mode="wrap" if spec.padding == "CIRCULAR" else "constant"
        )
        out = [(size - w) // st + 1 for size, w, st in zip(xp.shape[1:-1], filt, strides)]
        # One strided slice per filter offset: memory traffic only, no FLOPs.
        shifted = [
            xp[
                (slice(None),)
                + tuple(
                    slice(o, o + st * (m - 1) + 1, st) for o, st, m in zip(offset, strides, out)
                )
            ]
            for offset in np.ndindex(*filt)
        ]
        # (N, *S_out, |F|, C): each slice fills contiguous runs of C channels;
        # the order of a patch's entries is irrelevant to the Gram products.
        p = jnp.stack(shifted, axis=-2)
        p = p.reshape(p.shape[:-2] + (cin * math.prod(filt),))
        out_spatial = jax.eval_shape(
            lambda: site.layer.apply_fn(site.params, site.x, **site.kwargs)
        ).shape[1:-1]
        if p.shape[1:-1] == tuple(out_spatial):
            if spec.parameterization == "standard":
                return p / math.sqrt(spec.s[0])
            return p * (spec.W_std / math.sqrt(cin * math.prod(filt)))
    return _patches_by_layer(site, x)


def _patches_by_layer(site: _Site, x):
    """The patches via the layer itself, so its padding and strides apply
    exactly: each input channel ``c`` through the same layer with one input
    channel and the identity filter bank ``W[f, 0, f'] = δ_{ff'}`` gives the
    patches of ``c``. The layer then scales by ``W_std/√|F|`` instead of
    ``W_std/√(C|F|)`` (NTK parameterization), which the factor ``1/√C``
    corrects; the standard parameterization's ``1/√s[0]`` does not depend on C.
    """
    W, b = site.params
    filt, cin = tuple(W.shape[:-2]), W.shape[-2]
    size = math.prod(filt)
    eye = jnp.eye(size, dtype=W.dtype).reshape(filt + (1, size))
    one = lambda xc: site.layer.apply_fn((eye, None), xc[..., None], **site.kwargs)
    p = jax.vmap(one, in_axes=-1, out_axes=-2)(x)  # (N, *S_out, C, |F|)
    if site.layer.kernel_fn.spec.parameterization != "standard":  # type: ignore[attr-defined]
        p = p / math.sqrt(cin)
    return p.reshape(p.shape[:-2] + (cin * size,))


def _generic_term(site1, site2, g1, g2, shape1, shape2, idx):
    j1 = _per_example_jacobian(site1, g1, shape1)
    j2 = j1 if (site2 is site1 and g2 is g1) else _per_example_jacobian(site2, g2, shape2)
    term = 0.0
    for a, b in zip(tree_leaves(j1), tree_leaves(j2)):
        extra = tuple(next(idx.fresh) for _ in range(a.ndim - len(idx.lhs)))
        term = term + einsum(a, idx.lhs + extra, b, idx.rhs + extra, out=idx.out)
    return term


def _per_example_jacobian(site: _Site, g, out_shape):
    """``∂f_r(x_n)/∂θ`` of the site's parameters, shape ``(N, *rest, *θ.shape)``."""

    def one(xn, gn):  # xn: one example (batch of one), gn: (R, 1, ...)
        _, pull = jax.vjp(lambda p: site.layer.apply_fn(p, xn, **site.kwargs), site.params)
        return jax.vmap(lambda c: pull(c)[0])(gn)

    x_b = tree_map(lambda a: a[:, None], site.x)
    g_b = tree_map(lambda a: a[:, :, None], g)
    jac = jax.vmap(one)(x_b, g_b)
    rest = tuple(out_shape[1:])
    return tree_map(lambda a: a.reshape(a.shape[:1] + rest + a.shape[2:]), jac)
