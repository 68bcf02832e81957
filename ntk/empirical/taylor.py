r"""Taylor expansions of a function in its parameters (neural-tangents' API).

``taylor_expand(f, θ0, k)`` is the degree-:math:`k` polynomial in
:math:`\Delta = \theta - \theta_0`

.. math::

    f_k(\theta, x) = \sum_{j=0}^{k} (1/j!)\, D^j f(\theta_0, x)[\Delta, \ldots, \Delta],

built from nested forward-mode derivatives along :math:`\Delta` (never a Hessian).
``linearize`` is degree 1, :math:`f(\theta_0, x) + J(x) \Delta`: the model whose gradient-
descent dynamics the NTK describes exactly (Lee et al. 2019, eq. 6).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ntk import stax
  >>> from ntk.empirical import linearize
  >>> x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
  >>> init_fn, apply_fn, _ = stax.serial(stax.Dense(64), stax.Relu(), stax.Dense(1))
  >>> _, params = init_fn(jax.random.PRNGKey(1), x.shape)
  >>> f_lin = linearize(apply_fn, params)
  >>> step = jax.tree_util.tree_map(lambda p: 1e-3 * jnp.ones_like(p), params)
  >>> new_params = jax.tree_util.tree_map(jnp.add, params, step)
  >>> _, jvp = jax.jvp(lambda p: apply_fn(p, x), (params,), (step,))
  >>> bool(jnp.allclose(f_lin(new_params, x), apply_fn(params, x) + jvp))   # f + J Δ
  True
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

tree_map = jax.tree_util.tree_map


def _check_f(f, name):
    if not callable(f):
        raise TypeError(
            f"{name}: `f` must be callable as f(params, *args, **kwargs); got {type(f).__name__}."
        )


def _delta(name, new, old):
    s_new, s_old = jax.tree_util.tree_structure(new), jax.tree_util.tree_structure(old)
    if s_new != s_old:  # type: ignore[operator]
        raise ValueError(
            f"{name}: the new parameters must have the structure of "
            f"the expansion point; got {s_new} and {s_old}."
        )
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(new), jax.tree_util.tree_leaves(old)
    ):
        if np.shape(a) != np.shape(b):
            raise ValueError(
                f"{name}: the new parameters must have the shapes of the expansion "
                f"point (the same network, e.g. the same width); at "
                f"{jax.tree_util.keystr(path)} got {np.shape(a)} against {np.shape(b)}."
            )
    return tree_map(lambda a, b: a - b, new, old)


def linearize(f: Callable, params) -> Callable:
    r"""``f_lin(p, *args, **kw)`` :math:`= f(\mathrm{params}, \ldots)
    + \partial f/\partial\theta(\mathrm{params}, \ldots) \cdot (p - \mathrm{params})`.

    Args:
      f: ``f(params, *args, **kwargs)`` returning a pytree.
      params: the expansion point :math:`\theta_0` (any pytree).

    Returns:
      ``f_lin`` with the signature of ``f``; exact at ``p = params``, linear in p.

    Example:
      :math:`\sin(\theta x)` around :math:`\theta_0 = 0` is :math:`\theta x`:

      >>> import jax.numpy as jnp
      >>> from ntk.empirical import linearize
      >>> f_lin = linearize(lambda theta, x: jnp.sin(theta * x), 0.)
      >>> round(float(f_lin(0.5, 2.)), 4)                           # 0 + 2 · 0.5
      1.0
    """
    _check_f(f, "linearize")

    def f_lin(p, *args, **kwargs):
        delta = _delta("linearize", p, params)
        y, dy = jax.jvp(lambda q: f(q, *args, **kwargs), (params,), (delta,))
        return tree_map(lambda a, b: a + b, y, dy)

    return f_lin


def taylor_expand(f: Callable, params, degree: int) -> Callable:
    r"""Degree-``degree`` Taylor polynomial of ``f`` in its parameters around ``params``.

    ``f_tayl(p, *args, **kw)`` :math:`= \sum_{j \le \mathrm{degree}}
    D^j f(\mathrm{params})[p - \mathrm{params}]^{\otimes j} / j!`.
    Degree 0 is the constant ``f(params, ...)``; degree 1 equals `linearize`.
    Exact for functions that are polynomials of at most that degree in :math:`\theta`.

    Example:
      :math:`\exp(\theta x)` to degree 2 around :math:`\theta_0 = 0` is
      :math:`1 + \theta x + (\theta x)^2/2`:

      >>> import jax.numpy as jnp
      >>> from ntk.empirical import taylor_expand
      >>> f2 = taylor_expand(lambda theta, x: jnp.exp(theta * x), 0., 2)
      >>> round(float(f2(0.5, 2.)), 4)                              # 1 + 1 + 1/2
      2.5
    """
    _check_f(f, "taylor_expand")
    if not (isinstance(degree, int) and not isinstance(degree, bool) and degree >= 0):
        raise ValueError(f"taylor_expand: `degree` must be a non-negative int; got {degree!r}.")

    def f_tayl(p, *args, **kwargs):
        delta = _delta("taylor_expand", p, params)
        g = lambda q: f(q, *args, **kwargs)

        # Horner form: f + D(f + D(f + …)/3)/2 …, where D is the directional
        # derivative along delta; each level adds one nested jvp.
        def expand(fn, j):
            if j == degree:
                return fn(params)

            def along(q):
                return jax.jvp(fn, (q,), (delta,))[1]

            inner = expand(along, j + 1)
            return tree_map(lambda a, b: a + b / (j + 1), fn(params), inner)

        return expand(g, 0)

    return f_tayl
