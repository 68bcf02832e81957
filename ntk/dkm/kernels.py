r"""Kernels that act on Gram matrices: the map :math:`G_{l-1} \mapsto K(G_{l-1})` of a DKM.

In a deep kernel machine (Yang et al. 2023, "A theory of representation
learning gives a deep generalisation of kernel methods", ICML, §3-4) layer
:math:`l` holds the Gram matrix :math:`G_l = F_l F_l^\top / N_l` of its features and the
next layer's features are a priori :math:`\mathcal{N}(0, K(G_l))` per channel.
:math:`K` can only depend on :math:`G` — for every kernel here :math:`K(G)_{ij}` is a
function of the three numbers :math:`(G_{ij}, G_{ii}, G_{jj})`, which is what makes
test/train blocks and the diagonals of sparse DKMs cheap to compute.

A `GramKernel` offers three views of the same map:

* ``k(G)`` — ``(P, P) -> (P, P)``, symmetric, diagonal computed exactly;
* ``k.cross(G12, g1, g2)`` — a block ``G12 (T, P)`` with the diagonals
  ``g1 (T,)`` and ``g2 (P,)`` of its two sides -> ``(K12, k1, k2)``;
* ``k.diag(g)`` — ``(T,) -> (T,)``.

Constructors: `relu` (arc-cosine of degree 1), `sqexp`, `normalised_gaussian`,
`linear`, and `from_stax` (the dual kernel of any `ntk.stax` activation).

Example:
  >>> import numpy as np
  >>> from ntk import dkm
  >>> x = np.random.default_rng(0).normal(size=(6, 3))
  >>> k = dkm.relu(weight_var=2.0, bias_var=0.1)
  >>> K = k(x @ x.T / x.shape[1])
  >>> K.shape
  (6, 6)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Union

import jax
import jax.numpy as jnp
from ntk import _checks
from ntk.kernel import Kernel
from ntk.stax._internal import angle, sin_angle_term
from ntk.stax.elementwise import ACTIVATIONS, Activation
from ntk.stax.layer import KernelFn, Layer

Array = jax.Array
PI = math.pi


@dataclasses.dataclass(frozen=True, eq=False)
class GramKernel:
    """:math:`K(G)` as a function of Gram blocks (see module docstring).

    Attributes:
      block_fn: ``(G12, g1, g2) -> (K12, k1, k2)`` with ``G12 (n1, n2)``,
        ``g1 (n1,)``, ``g2 (n2,)`` or None (``x2 is x1``; then ``k2`` is
        None).
      name: for error messages and reprs.

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> k = dkm.linear(bias_var=1.0); G = np.array([[1.0, 0.5], [0.5, 2.0]])
      >>> K12, k1, k2 = k.cross(G[:1], G.diagonal()[:1], G.diagonal())   # row 0 of K(G)
      >>> bool(np.allclose(K12, k(G)[:1])), k.diag(G.diagonal()).tolist()
      (True, [2.0, 3.0])
    """

    block_fn: Callable
    name: str

    def __post_init__(self):
        _checks.require_callable(
            self.block_fn, "block_fn", "GramKernel", "a function block_fn(G12, g1, g2)"
        )
        if not isinstance(self.name, str):
            raise TypeError(f"GramKernel: `name` must be a str; got {type(self.name).__name__}.")

    def __repr__(self):
        return f"GramKernel({self.name})"

    def __call__(self, G: Array) -> Array:
        """``K(G)`` for a square Gram matrix ``G (P, P)``."""
        G = _check_square(G, "G", self.name)
        return _full_jit(self, G)

    def _full(self, G):
        g = jnp.diagonal(G)
        K, k1, _ = self.block_fn(G, g, None)
        K = 0.5 * (K + K.T)  # exact symmetry: Cholesky and logdet rely on it
        eye = jnp.eye(G.shape[0], dtype=bool)
        return jnp.where(eye, k1[:, None], K)

    def cross(self, G12: Array, g1: Array, g2: Array):
        """``(K12, k1, k2)`` for a block ``G12 (n1, n2)`` with diagonals
        ``g1 (n1,)`` (of the ``x1`` side) and ``g2 (n2,)``."""
        where = f"{self.name}.cross"
        G12 = _checks.as_array(G12, "G12", where)
        g1 = _checks.as_array(g1, "g1", where)
        g2 = _checks.as_array(g2, "g2", where)
        if G12.ndim != 2 or g1.shape != G12.shape[:1] or g2.shape != G12.shape[1:]:
            raise ValueError(
                f"{self.name}.cross: expected G12 (n1, n2), g1 (n1,), g2 (n2,); "
                f"got {G12.shape}, {g1.shape}, {g2.shape}."
            )
        return _cross_jit(self, G12, g1, g2)

    def diag(self, g: Array) -> Array:
        r""":math:`\operatorname{diag} K(G)` from :math:`\operatorname{diag} G` alone,
        ``(n,) -> (n,)``."""
        g = _checks.as_array(g, "g", f"{self.name}.diag")
        if g.ndim != 1:
            raise ValueError(f"{self.name}.diag: `g` must be a vector (n,); got shape {g.shape}.")
        return _diag_jit(self, g)

    def _diag(self, g):
        # k1 depends on g1 alone; a one-column block is the cheapest carrier.
        return self.block_fn(g[:, None], g, g[:1])[1]


# Whole-kernel compilation: op-by-op dispatch of the dual kernels' many small
# operations is ~100x slower than one fused call.
_full_jit = jax.jit(lambda k, G: k._full(G), static_argnums=0)
_cross_jit = jax.jit(lambda k, a, b, c: k.block_fn(a, b, c), static_argnums=0)
_diag_jit = jax.jit(lambda k, g: k._diag(g), static_argnums=0)


def _check_square(G, arg, name):
    G = _checks.as_array(G, arg, name)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(
            f"{name}: `{arg}` must be a square Gram matrix (P, P); got shape {G.shape}."
        )
    # K(G) reads G_ii, G_jj and G_ij only: an asymmetric G would go unnoticed.
    return _checks.require_symmetric(G, arg, name)


def _check_positive(value, arg, name, allow_zero=False):
    if allow_zero:
        return _checks.require_nonnegative(value, arg, name)
    return _checks.require_positive(value, arg, name)


def elementwise_kernel(fn: Callable, name: str) -> GramKernel:
    """A `GramKernel` from an elementwise ``fn(G_ij, G_ii, G_jj) -> K_ij``
    (broadcasting).

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> k = dkm.elementwise_kernel(lambda c12, c11, c22: c12 ** 2, "square")
      >>> k(np.array([[1.0, 0.5], [0.5, 2.0]])).tolist()
      [[1.0, 0.25], [0.25, 4.0]]
    """
    _checks.require_callable(fn, "fn", "elementwise_kernel", "a function fn(G_ij, G_ii, G_jj)")

    def block_fn(G12, g1, g2):
        k1 = fn(g1, g1, g1)
        if g2 is None:
            return fn(G12, g1[:, None], g1[None, :]), k1, None
        return fn(G12, g1[:, None], g2[None, :]), k1, fn(g2, g2, g2)

    return GramKernel(block_fn, name)


def relu(weight_var: float = 2.0, bias_var: float = 0.0) -> GramKernel:
    r"""Arc-cosine kernel of degree 1: a ReLU layer followed by a dense layer.

    :math:`K_{ij} = \sigma_w^2\, \mathbb{E}[\operatorname{relu}(u) \operatorname{relu}(v)]
    + \sigma_b^2` with :math:`(u, v) \sim \mathcal{N}(0, G[\{i,j\}])`:

    .. math::

        K_{ij} &= \frac{\sigma_w^2}{2\pi} \cdot \Big(\sqrt{G_{ii} G_{jj} - G_{ij}^2}
        + (\pi - \theta_{ij})\, G_{ij}\Big) + \sigma_b^2, \\
        \theta_{ij} &= \arccos\big(G_{ij} / \sqrt{G_{ii} G_{jj}}\big)

    (Cho & Saul 2009, :math:`n = 1`). ``weight_var=2`` (He) keeps :math:`K_{ii} = G_{ii}`
    when ``bias_var=0``. Equals ``from_stax(stax.Relu(), weight_var, bias_var)``
    and the kernel of ``stax.serial(stax.Relu(), stax.Dense(1, √σ_w², √σ_b²))``.
    The authors' ``ReluKernel`` uses :math:`1/\pi`, i.e. their weight_var is ours / 2.

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> K = dkm.relu()(np.array([[1.0, 0.5], [0.5, 2.0]]))
      >>> np.diag(K).tolist(), round(float(K[0, 1]), 4)   # He init keeps K_ii = G_ii
      ([1.0, 2.0], 0.7286)
    """
    name = f"relu(weight_var={weight_var}, bias_var={bias_var})"
    _check_positive(weight_var, "weight_var", "relu", allow_zero=True)
    _check_positive(bias_var, "bias_var", "relu", allow_zero=True)

    def fn(c12, c11, c22):
        root = sin_angle_term(c12, c11, c22)  # √(c11 c22) sin θ, stable at ρ = ±1
        theta = angle(root, c12)  # finite derivatives at ρ = ±1
        return weight_var / (2 * PI) * (root + (PI - theta) * c12) + bias_var

    return elementwise_kernel(fn, name)


def sqexp(lengthscale: float = 1.0, variance: float = 1.0) -> GramKernel:
    r"""Squared-exponential kernel of the features behind :math:`G`.

    :math:`K_{ij} = \mathtt{variance} \cdot
    \exp\big(-(G_{ii} + G_{jj} - 2 G_{ij}) / (2 \ell^2)\big)`: the squared distance between features
    :math:`\lVert f_i - f_j \rVert^2 / N = G_{ii} + G_{jj} - 2G_{ij}`
    (Yang et al. 2023, §4; the authors' ``SqExpKernel`` is :math:`\ell = 1`).

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> K = dkm.sqexp()(np.array([[1.0, 0.5], [0.5, 2.0]]))   # d² = 1 + 2 − 1 = 2
      >>> round(float(K[0, 1]), 4) == round(float(np.exp(-1.0)), 4), float(K[1, 1])
      (True, 1.0)
    """
    _check_positive(lengthscale, "lengthscale", "sqexp")
    _check_positive(variance, "variance", "sqexp")
    name = f"sqexp(lengthscale={lengthscale}, variance={variance})"

    def fn(c12, c11, c22):
        d2 = jnp.maximum(c11 + c22 - 2 * c12, 0.0)
        return variance * jnp.exp(-d2 / (2 * lengthscale**2))

    return elementwise_kernel(fn, name)


def normalised_gaussian(lengthscale: float = 1.0, variance: float = 1.0) -> GramKernel:
    r"""Gaussian kernel of the features normalised to the unit sphere.

    With :math:`\rho_{ij} = G_{ij} / \sqrt{G_{ii} G_{jj}}` the squared distance between the
    normalised features :math:`f_i / \lVert f_i \rVert` is :math:`2 - 2\rho_{ij}`, so

    .. math::

        K_{ij} = \mathtt{variance} \cdot \exp\big((\rho_{ij} - 1) / \ell^2\big),
        \qquad K_{ii} = \mathtt{variance}.

    Invariant to the scale of each point's features; PSD because :math:`\exp` of a
    PSD kernel is PSD (Schur product theorem).

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> k = dkm.normalised_gaussian()
      >>> G = np.array([[1.0, 0.5], [0.5, 2.0]])
      >>> bool(np.allclose(k(G), k(4 * G))), round(float(k(G)[0, 1]), 4)   # scale-free
      (True, 0.5239)
    """
    _check_positive(lengthscale, "lengthscale", "normalised_gaussian")
    _check_positive(variance, "variance", "normalised_gaussian")
    name = f"normalised_gaussian(lengthscale={lengthscale}, variance={variance})"

    def fn(c12, c11, c22):
        tiny = jnp.finfo(jnp.result_type(c12, float)).tiny
        rho = c12 * jax.lax.rsqrt(jnp.maximum(c11 * c22, tiny))
        rho = jnp.clip(rho, -1.0, 1.0)
        return variance * jnp.exp((rho - 1.0) / lengthscale**2)

    return elementwise_kernel(fn, name)


def linear(weight_var: float = 1.0, bias_var: float = 0.0) -> GramKernel:
    r""":math:`K(G) = \sigma_w^2 G + \sigma_b^2`: a deep linear (identity-activation) DKM.

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> k = dkm.linear(weight_var=2.0, bias_var=0.5)
      >>> k(np.array([[1.0, 0.5], [0.5, 2.0]])).tolist()
      [[2.5, 1.5], [1.5, 4.5]]
    """
    _check_positive(weight_var, "weight_var", "linear", allow_zero=True)
    _check_positive(bias_var, "bias_var", "linear", allow_zero=True)
    return elementwise_kernel(
        lambda c12, c11, c22: weight_var * c12 + bias_var,
        f"linear(weight_var={weight_var}, bias_var={bias_var})",
    )


def from_stax(
    activation: Union[str, Activation, Layer, KernelFn],
    weight_var: float = 1.0,
    bias_var: float = 0.0,
    **activation_kwargs,
) -> GramKernel:
    r"""The dual kernel of an `ntk.stax` activation as a DKM kernel.

    :math:`K_{ij} = \sigma_w^2\, \mathbb{E}[\phi(u) \phi(v)] + \sigma_b^2`,
    :math:`(u, v) \sim \mathcal{N}(0, G[\{i,j\}])` — a layer :math:`\phi` then
    ``Dense(W_std=σ_w, b_std=σ_b)`` at infinite width.

    Args:
      activation: a name in ``ntk.stax.elementwise.ACTIVATIONS`` (with
        ``activation_kwargs`` for its factory, e.g. ``from_stax("erf")``), an
        ``Activation`` record, or any `ntk.stax` layer / ``kernel_fn`` whose
        kernel transform takes a Gaussian `ntk.Kernel` (e.g. ``stax.Erf()`` or
        ``stax.serial(stax.Gelu(), stax.Dense(1, 1.3, 0.1))``); the layer is
        applied to ``Kernel(nngp=G12, cov1=g1, cov2=g2)``.
      weight_var, bias_var: :math:`\sigma_w^2` and :math:`\sigma_b^2` applied after it.

    Example:
      >>> import numpy as np
      >>> from ntk import dkm, stax
      >>> x = np.random.default_rng(0).normal(size=(6, 3))
      >>> G = x @ x.T / 3
      >>> k = dkm.from_stax(stax.Erf(), weight_var=1.5)
      >>> nngp = stax.serial(stax.Dense(1), stax.Erf(),
      ...                    stax.Dense(1, W_std=1.5 ** 0.5)).kernel_fn(x, None, "nngp")
      >>> bool(np.allclose(k(G), nngp))      # the same as the stax network's NNGP
      True
    """
    name = "from_stax"
    _check_positive(weight_var, "weight_var", name, allow_zero=True)
    _check_positive(bias_var, "bias_var", name, allow_zero=True)
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"{name}: unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}."
            )
        activation = ACTIVATIONS[activation](**activation_kwargs)
    elif activation_kwargs:
        raise TypeError(
            f"{name}: activation_kwargs are only for activation names; "
            f"got {sorted(activation_kwargs)} with "
            f"{type(activation).__name__}."
        )
    if isinstance(activation, Activation):
        dual = activation.dual
        return elementwise_kernel(
            lambda c12, c11, c22: weight_var * dual(c12, c11, c22)[0] + bias_var,
            f"{name}(dual, weight_var={weight_var}, bias_var={bias_var})",
        )
    if isinstance(activation, Layer):
        kernel_fn = activation.kernel_fn
    elif isinstance(activation, (KernelFn,)) or callable(activation):
        kernel_fn = activation
    else:
        raise TypeError(
            f"{name}: `activation` must be a name, an Activation, an "
            f"ntk.stax layer or a kernel_fn; got "
            f"{type(activation).__name__}."
        )
    label = getattr(kernel_fn, "name", "layer")

    def block_fn(G12, g1, g2):
        n1, n2 = G12.shape
        k = Kernel(
            nngp=G12,
            ntk=None,
            cov1=g1,
            cov2=g2,
            shape1=(n1, 1),
            shape2=(n2, 1),
            diagonal_spatial=True,
            is_gaussian=True,
        )
        out = kernel_fn(k)
        if not isinstance(out, Kernel) or out.nngp.shape != G12.shape:
            raise ValueError(
                f"{name}: the layer {label} must map an (n1, n2) "
                f"Kernel to one of the same shape; got "
                f"{getattr(getattr(out, 'nngp', None), 'shape', out)}."
            )
        if out.cov1 is None:
            raise ValueError(f"{name}: the layer {label} dropped the inputs' variances (cov1).")
        k2 = None if g2 is None or out.cov2 is None else weight_var * out.cov2 + bias_var
        return (weight_var * out.nngp + bias_var, weight_var * out.cov1 + bias_var, k2)

    return GramKernel(block_fn, f"{name}({label}, weight_var={weight_var}, bias_var={bias_var})")
