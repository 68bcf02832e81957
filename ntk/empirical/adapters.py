r"""Adapters from Flax models to the ``f(params, x)`` form empirical kernels take.

Linen modules already have it: ``f = lambda p, x: model.apply(p, x)`` with
``p = model.init(key, x)``. `from_linen` only separates the trainable
``"params"`` collection from other state (batch statistics), so kernels
differentiate the parameters alone. nnx modules hold their parameters;
`from_nnx` splits them out with ``nnx.split`` and rebuilds the module in ``f``
with ``nnx.merge`` (pure: the module passed in is not modified).

Example:
  A linear layer :math:`x W + b` has the NTK :math:`(x_1 \cdot x_2 + 1) I`:

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from ntk.empirical import empirical_ntk_fn, from_nnx
  >>> f, params = from_nnx(nnx.Linear(3, 4, rngs=nnx.Rngs(0)))
  >>> x1, x2 = jnp.array([[1., 2., 3.]]), jnp.array([[1., 0., -1.]])
  >>> k = empirical_ntk_fn(f, trace_axes=())(x1, x2, params)      # (1, 1, 4, 4)
  >>> bool(jnp.allclose(k[0, 0], (x1 @ x2.T + 1) * jnp.eye(4)))
  True
"""

from __future__ import annotations

from typing import Any, Callable, Mapping


def from_nnx(module, *, method: str = "__call__") -> tuple[Callable, Any]:
    """``(f, params)`` with ``f(params, x, **kw) = module.<method>(x, **kw)``.

    ``params`` is the ``nnx.State`` of the module's ``nnx.Param`` variables;
    other variables (batch statistics, RNG state) are held fixed, so the
    module must not update them when called: a module in training mode with
    an active ``nnx.Dropout`` or a ``nnx.BatchNorm`` on batch statistics is a
    ValueError (call ``module.eval()`` first: the kernel of the deterministic
    network).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from ntk.empirical import from_nnx
      >>> f, params = from_nnx(nnx.Linear(3, 4, rngs=nnx.Rngs(0)))
      >>> [p.shape for p in jax.tree_util.tree_leaves(params)]        # bias, kernel
      [(4,), (3, 4)]
      >>> f(params, jnp.ones((2, 3))).shape
      (2, 4)
    """
    from flax import nnx

    if not isinstance(module, nnx.Module):
        raise TypeError(f"from_nnx: expected a flax.nnx.Module; got {type(module).__name__}.")
    if not isinstance(method, str) or not callable(getattr(module, method, None)):
        raise ValueError(
            f"from_nnx: `method` must name a method of the module; got "
            f"{method!r} for {type(module).__name__}."
        )
    require_no_state_updates(module, "from_nnx")
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)  # type: ignore[misc]  # flax's stub: variadic

    def f(p, x, **kwargs):
        return getattr(nnx.merge(graphdef, p, rest), method)(x, **kwargs)

    return f, params


def require_no_state_updates(module, where: str, hint: str = "") -> None:
    """Raise if calling the nnx ``module`` would update its own state: an
    active ``nnx.Dropout`` (it draws from its ``Rngs``) or a ``nnx.BatchNorm``
    on batch statistics. Inside a kernel or a gradient such a call fails with
    flax's TraceContextError, which does not say which layer or what to do."""
    from flax import nnx

    active = []
    for path, node in nnx.iter_graph(module):
        name = "/".join(str(p) for p in path) or type(module).__name__
        dropout = getattr(node, "dropout_rate", getattr(node, "rate", 0.0))
        if isinstance(node, (nnx.Dropout, nnx.MultiHeadAttention)) and dropout:
            if getattr(node, "deterministic", True) is False:
                active.append(f"{name} ({type(node).__name__}, draws dropout masks)")
        if isinstance(node, nnx.BatchNorm) and node.use_running_average is False:
            active.append(f"{name} (BatchNorm, updates its batch statistics)")
    if active:
        raise ValueError(
            f"{where}: the module is in training mode and would update its own state "
            f"when called, which a function of the parameters cannot: {', '.join(active)}. "
            "Call module.eval() first, or pass deterministic=True / "
            f"use_running_average=True to those layers.{hint}"
        )


def from_linen(module, variables, *, method=None) -> tuple[Callable, Any]:
    """``(f, params)`` for a linen module and its ``variables = module.init(...)``.

    ``f(params, x, **kw) = module.apply({"params": params, **other}, x, **kw)``
    where ``other`` are the non-trainable collections of ``variables``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from ntk.empirical import from_linen
      >>> model = nn.Dense(4)
      >>> variables = model.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
      >>> f, params = from_linen(model, variables)
      >>> sorted(params), f(params, jnp.ones((2, 3))).shape
      (['bias', 'kernel'], (2, 4))
    """
    if not isinstance(variables, Mapping):
        raise TypeError(
            f"from_linen: `variables` must be the dict of module.init(...); "
            f"got {type(variables).__name__}."
        )
    if "params" not in variables:
        raise ValueError(
            f"from_linen: `variables` must contain a 'params' "
            f"collection; got collections {sorted(variables)}."
        )
    other = {k: v for k, v in variables.items() if k != "params"}

    def f(p, x, **kwargs):
        kw = {} if method is None else {"method": method}
        return module.apply({"params": p, **other}, x, **kw, **kwargs)

    return f, variables["params"]
