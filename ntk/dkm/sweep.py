r"""Full-DKM optima along a sweep of :math:`\nu`, compiled once.

The DKM objective :math:`L_\nu = \log P(Y \mid G_L) - \nu \sum_l \mathrm{KL}_l` depends on
:math:`\nu` only through the weight of its KL terms
(``FullDKM.objective(..., return_terms=True)`` returns both), so :math:`\nu` can be a
traced argument: `make_nu_fitter` compiles the objective and its gradient once and
maximises it for every :math:`\nu` of a sweep (Yang et al. 2023, the :math:`\nu` sweep:
:math:`\nu \to \infty` gives the NNGP Grams, :math:`\nu \to 0` moves the top Gram towards
:math:`Y Y^\top`).

The maximiser is scipy's L-BFGS-B on the model's whitened parameters,
started at the NNGP (:math:`A_l = I`), minimising :math:`-L_\nu / P` to
``ftol = 1e-12``, ``gtol = 1e-7`` (at most 5000 iterations). It needs scipy
(installed with ``ntk[data]``, through scikit-learn).

    >>> import numpy as np
    >>> from ntk import dkm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 3)); Y = np.sin(X[:, :1]); X_test = X[:5] + 0.1
    >>> model = dkm.FullDKM(dkm.sqexp(), num_layers=2, noise_var=0.1, jitter=1e-5)
    >>> fit = dkm.make_nu_fitter(model, X, Y)
    >>> grams, objective, grad_norm = fit(1e8)          # grams: (L, P, P)
    >>> nngp = dkm.nngp_grams(X, dkm.sqexp(), 2, jitter=1e-5)
    >>> bool(np.allclose(grams, np.stack(nngp), atol=1e-4))   # ν → ∞: the NNGP
    True
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ntk import _checks
from ntk.dkm import objective as obj
from ntk.dkm.full import FullDKM

__all__ = ["NuFit", "make_nu_fitter"]


class NuFit(NamedTuple):
    r"""One optimum of the sweep: ``grams (L, P, P)`` (float64 NumPy), the
    ``objective`` :math:`L_\nu` there, and the ``grad_norm`` of :math:`-L_\nu / P` (the
    stopping diagnostic).

    >>> import numpy as np
    >>> from ntk import dkm
    >>> opt = dkm.NuFit(grams=np.stack([np.eye(3), 2 * np.eye(3)]), objective=-4.2,
    ...                 grad_norm=1e-8)                 # as make_nu_fitter's fit(nu)
    >>> opt.grams.shape, opt.grad_norm < 1e-6             # (L, P, P); at a stationary point
    ((2, 3, 3), True)
    """

    grams: np.ndarray
    objective: float
    grad_norm: float


def make_nu_fitter(model: FullDKM, X, Y) -> Callable[[float], NuFit]:
    r"""``fit(nu) -> NuFit``: the optimum of ``model``'s objective at :math:`\nu` (module
    doc).

    Args:
      model: a Gaussian-likelihood `FullDKM`; its kernel, depth, ``noise_var``
        and ``jitter`` are used, its own ``nu`` is not (:math:`\nu` is ``fit``'s
        argument, one value for every layer).
      X: ``(P, N_0)`` inputs; Y: ``(P, C)`` targets (``(P,)`` allowed).

    Returns:
      ``fit(nu)`` for :math:`\nu > 0`; every call reuses one compilation.

    A fit at :math:`\nu \to \infty` (the NNGP) is the module docstring's example; the sweep
    needs a Gaussian likelihood:

    >>> import numpy as np
    >>> from ntk import dkm
    >>> X, y = np.zeros((4, 2)), np.zeros(4)
    >>> model = dkm.FullDKM(dkm.relu(), likelihood="categorical", num_classes=2)
    >>> dkm.make_nu_fitter(model, X, y)
    Traceback (most recent call last):
      ...
    ValueError: make_nu_fitter: `model` must have a Gaussian likelihood ...
    """
    name = "make_nu_fitter"
    if not isinstance(model, FullDKM):
        raise TypeError(f"{name}: `model` must be an ntk.dkm.FullDKM; got {type(model).__name__}.")
    if model.likelihood != "gaussian":
        raise ValueError(
            f"{name}: `model` must have a Gaussian likelihood (the KL "
            f"weights are swept against log P(Y | G_L)); got "
            f"likelihood={model.likelihood!r}."
        )
    X, Y = obj.check_data(X, Y, "gaussian", name)
    scipy_optimize = _checks.optional_import("scipy.optimize")
    flat0, unravel = ravel_pytree(model.init(X))
    scale = float(X.shape[0])

    @jax.jit
    def loss(flat, nu):
        _, (ll, kls) = model.objective(unravel(flat), X, Y, return_terms=True)
        return -(ll - nu * sum(kls)) / scale

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    grams = jax.jit(lambda flat: jnp.stack(model.grams(unravel(flat), X)))

    def fit(nu: float) -> NuFit:
        _checks.require_positive(nu, "nu", "make_nu_fitter: fit")
        nu_arr = jnp.asarray(nu, flat0.dtype)

        def fun(v):
            f, g = value_and_grad(jnp.asarray(v, flat0.dtype), nu_arr)
            return float(f), np.asarray(g, np.float64)

        res = scipy_optimize.minimize(
            fun,
            np.asarray(flat0, np.float64),
            jac=True,
            method="L-BFGS-B",
            options=dict(maxiter=5000, ftol=1e-12, gtol=1e-7),
        )
        flat = jnp.asarray(res.x, flat0.dtype)
        return NuFit(
            np.asarray(grams(flat), np.float64),
            -float(res.fun) * scale,
            float(np.linalg.norm(res.jac)),
        )

    return fit
