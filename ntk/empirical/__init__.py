r"""Finite-width kernels of any network; Monte Carlo kernels; Taylor expansions.

The empirical NNGP :math:`f(x_1) \otimes f(x_2)` and NTK :math:`J(x_1) J(x_2)^\top` of a function
``f(params, x)`` at given parameters, in neural-tangents' API and output-shape
conventions (``trace_axes``, ``diagonal_axes``, ``vmap_axes``):

    >>> import jax
    >>> from ntk import stax
    >>> from ntk.empirical import empirical_ntk_fn, monte_carlo_kernel_fn
    >>> x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    >>> x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
    >>> net = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(10))
    >>> _, params = net.init_fn(jax.random.PRNGKey(2), x1.shape)
    >>> empirical_ntk_fn(net, trace_axes=())(x1, x2, params).shape   # (N1, N2, 10, 10)
    (3, 2, 10, 10)

Pass the stax network itself (the `ntk.stax.Layer`) to get the structured method;
any other ``f(params, x)`` — including a stax ``apply_fn`` on its own, Flax
linen (``lambda p, x: model.apply(p, x)`` or `from_linen`) and nnx modules
(`from_nnx`) — uses Jacobian contraction or NTK-vector products. The returned
kernel functions are jitted (array keyword arguments traced, others static).

Modules: `kernels` (the kernel functions and the three NTK implementations),
`structured` (layer-wise NTK of `ntk.stax` networks), `cost` (the rule behind
``implementation=AUTO``), `axes` (output-shape conventions), `monte_carlo`,
`taylor` (`linearize`, `taylor_expand`), `row` (`empirical_ntk_row`: one row
:math:`\hat\Theta(x_0, X)` by a gradient and a JVP), `spectrum`
(`empirical_ntk_top_eigenvalues`: the top of :math:`\hat\Theta`'s spectrum by subspace
iteration), `adapters` (Flax linen and nnx).
"""

from ntk.empirical.adapters import from_linen, from_nnx
from ntk.empirical.kernels import (
    DEFAULT_NTK_IMPLEMENTATION,
    NtkImplementation,
    auto_implementation,
    empirical_kernel_fn,
    empirical_nngp_fn,
    empirical_ntk_fn,
)
from ntk.empirical.monte_carlo import monte_carlo_kernel_fn
from ntk.empirical.row import empirical_ntk_row, empirical_ntk_vp_fn
from ntk.empirical.spectrum import empirical_ntk_top_eigenvalues
from ntk.empirical.taylor import linearize, taylor_expand

__all__ = [
    "NtkImplementation",
    "DEFAULT_NTK_IMPLEMENTATION",
    "auto_implementation",
    "empirical_ntk_fn",
    "empirical_nngp_fn",
    "empirical_kernel_fn",
    "monte_carlo_kernel_fn",
    "empirical_ntk_row",
    "empirical_ntk_vp_fn",
    "empirical_ntk_top_eigenvalues",
    "linearize",
    "taylor_expand",
    "from_nnx",
    "from_linen",
]
