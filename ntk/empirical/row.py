r"""Products with the empirical NTK that never form the Jacobian: one row
(`empirical_ntk_row`) and NT's NTK-vector product (`empirical_ntk_vp_fn`).

For a function :math:`f(\theta, x)` with one output the empirical NTK between one
point :math:`x_0` and a batch :math:`X` is

.. math::

    \hat\Theta(x_0, X) = \langle \partial_\theta f(\theta, x_0),
    \partial_\theta f(\theta, X) \rangle = J(X)\, g_0, \qquad g_0 = \partial_\theta f(\theta, x_0),

a Jacobian-vector product of :math:`f(\theta, X)` along the gradient at :math:`x_0`:
one reverse pass and one forward pass, never the ``(N, |θ|)`` Jacobian. This is
the row that Jacot et al. 2018 (Fig. 1) plot, :math:`\hat\Theta(x_0, x(\gamma))`
along a circle of inputs; `ntk.empirical.empirical_ntk_fn` gives the whole matrix.
The product with any cotangent :math:`v` shaped like :math:`f(X_2)`,
:math:`\hat\Theta(X_1, X_2)\, v = J(X_1)\,(J(X_2)^\top v)`, is one VJP and one
JVP the same way (`empirical_ntk_vp_fn`, what NT's ``empirical_ntk_vp_fn``
computes): kernel regression by conjugate gradients, or power iterations on
:math:`\hat\Theta`, without its ``(N1·K, N2·K)`` matrix.

    >>> import jax, jax.numpy as jnp
    >>> from ntk import stax
    >>> from ntk.empirical import empirical_ntk_fn, empirical_ntk_row
    >>> x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    >>> init_fn, apply_fn, _ = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
    >>> _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    >>> row = empirical_ntk_row(apply_fn, params, x[0], x)      # (N,) = Θ̂(x[0], x)
    >>> full = empirical_ntk_fn(apply_fn)(x, None, params)      # (N, N)
    >>> row.shape, bool(jnp.allclose(row, full[0]))
    ((5,), True)
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.empirical.batching import split_kwargs

__all__ = ["empirical_ntk_row", "empirical_ntk_vp_fn"]


def empirical_ntk_row(f: Callable, params, x0, x, output: int = 0):
    r""":math:`\hat\Theta(x_0, X)`, shape ``(N,)``, of output ``output`` of ``f(params, inputs)``.

    Args:
      f: ``f(params, inputs)`` mapping a batch ``(B, ...)`` to outputs ``(B,)``
        or ``(B, K)`` (e.g. a stax ``apply_fn``).
      params: the parameters :math:`\theta` (any pytree).
      x0: one input, shaped like a row of ``x`` (without the batch axis).
      x: ``(N, ...)`` inputs.
      output: the output unit :math:`k` for ``(B, K)`` outputs: the row is the NTK
        of :math:`f_k` with itself (no trace over outputs; with :math:`K = 1` it is
        the NTK).

    Returns:
      .. math::

          \hat\Theta(x_0, x_n) = \langle \partial_\theta f_k(\theta, x_0),
          \partial_\theta f_k(\theta, x_n) \rangle

      for :math:`n = 1, \ldots, N`.
      Usable under ``jit`` (shapes are checked at trace time).

    Example:
      A linear model :math:`x \cdot w` has :math:`\hat\Theta(x_0, x) = x_0 \cdot x`:

      >>> import numpy as np
      >>> from ntk.empirical import empirical_ntk_row
      >>> x = np.array([[1., 2.], [3., -1.], [0., 1.]])
      >>> empirical_ntk_row(lambda w, x: x @ w, np.ones(2), x[0], x).tolist()
      [5.0, 1.0, 2.0]
    """
    name = "empirical_ntk_row"
    _checks.require_callable(f, "f", name, "a function f(params, inputs)")
    if np.shape(x0) != np.shape(x)[1:]:
        raise ValueError(
            f"{name}: `x0` must be one input of shape {np.shape(x)[1:]} "
            f"(a row of `x`); got shape {np.shape(x0)}."
        )
    shape = jax.eval_shape(f, params, x).shape
    if len(shape) not in (1, 2) or shape[0] != np.shape(x)[0]:
        raise ValueError(
            f"{name}: `f` must map the {np.shape(x)[0]} inputs to outputs "
            f"of shape ({np.shape(x)[0]},) or ({np.shape(x)[0]}, K); got "
            f"{shape}."
        )
    units = 1 if len(shape) == 1 else shape[1]
    output = _checks.require_int(output, "output", name, minimum=0, maximum=units - 1)

    def unit(p, inputs):
        out = f(p, inputs)
        return out if out.ndim == 1 else out[:, output]

    g0 = jax.grad(lambda p: unit(p, x0[None])[0])(params)
    return jax.jvp(lambda p: unit(p, x), (params,), (g0,))[1]


def empirical_ntk_vp_fn(f: Callable, x1, x2, params, **apply_fn_kwargs) -> Callable:
    r"""``ntk_vp(v)``: the product :math:`\hat\Theta(x_1, x_2)\, v = J(x_1)\,(J(x_2)^\top v)`
    of the empirical NTK with cotangents ``v`` (NT's ``empirical_ntk_vp_fn``).

    :math:`J(x) = \partial_\theta f(\theta, x)`. The product is one VJP at
    ``x2`` and one JVP at ``x1``: the cost of two passes through ``f``, never
    the Jacobian or the ``(N1·K, N2·K)`` kernel, summed over every output axis
    (no trace and no diagonal: ``Θ`` in the layout of
    ``empirical_ntk_fn(f, trace_axes=())`` contracted with ``v``).

    Args:
      f: ``f(params, x, **kwargs)`` returning an array or a pytree of arrays.
      x1, x2: inputs (``x2=None`` means ``x1``).
      params: the parameters :math:`\theta` (any pytree).
      **apply_fn_kwargs: keyword arguments of ``f``, split between ``x1`` and
        ``x2`` as in `ntk.empirical.empirical_ntk_fn` (a pair ``(a, b)`` gives
        ``a`` to ``x1`` and ``b`` to ``x2``; ``rng`` folded for ``x2``).

    Returns:
      ``ntk_vp(v)``: ``v`` shaped like ``f(params, x2)``, the result like
      ``f(params, x1)``. Usable under ``jit``.

    Example:
      A linear model :math:`x W` has :math:`\hat\Theta = (x_1 \cdot x_2)\, I`, so
      :math:`\hat\Theta v = (x_1 x_2^\top)\, v`:

      >>> import numpy as np
      >>> from ntk.empirical import empirical_ntk_vp_fn
      >>> x1, x2 = np.array([[1., 2.]]), np.array([[3., 0.], [0., 1.]])
      >>> v = np.array([[1., 0., 0.], [0., 0., 2.]])                  # f(x2): (2, 3)
      >>> empirical_ntk_vp_fn(lambda W, x: x @ W, x1, x2, np.zeros((2, 3)))(v).tolist()
      [[3.0, 0.0, 4.0]]
    """
    name = "empirical_ntk_vp_fn"
    _checks.require_callable(f, "f", name, "a function f(params, x, **kwargs)")
    kw1, kw2 = split_kwargs(apply_fn_kwargs, x1, x2)
    x2 = x1 if x2 is None else x2
    out2, pullback = jax.vjp(lambda p: f(p, x2, **kw2), params)
    want = jax.tree_util.tree_map(jnp.shape, out2)

    def ntk_vp(cotangents):
        # shapes as trees of tuples: equal only if structure and shapes are
        got = jax.tree_util.tree_map(np.shape, cotangents)
        if got != want:
            raise ValueError(
                f"{name}: the cotangents must be shaped like f(params, x2), {want}; got {got}."
            )
        cotangents = jax.tree_util.tree_map(lambda v, o: jnp.asarray(v, o.dtype), cotangents, out2)
        (direction,) = pullback(cotangents)
        return jax.jvp(lambda p: f(p, x1, **kw1), (params,), (direction,))[1]

    return ntk_vp
