r"""Exact GP regression: the shallow baselines a DKM is compared with.

Yang et al. 2023 compare deep kernel machines on UCI regression with two
exact Gaussian processes (one output, :math:`n` training and :math:`T` test points,
Gaussian noise :math:`\sigma^2`). Both predict, for a prior covariance :math:`k`,

.. math::

    \mu_* &= K_{*X} (K_{XX} + \sigma^2 I)^{-1} y, \\
    v_* &= \max\big(k_{**} - K_{*X} (K_{XX} + \sigma^2 I)^{-1} K_{X*}, 10^{-12}\big)
    + \sigma^2,

the predictive marginal :math:`\mathcal{N}(y_*; \mu_*, v_*)` of a noisy test target (the
posterior of :math:`f_*` plus the noise; the floor guards round-off), computed by
`ntk.predict.gp_inference`. They differ in :math:`k` and in how its
hyperparameters are chosen:

* `nngp_regression` — the :math:`\nu \to \infty` DKM. Every Gram is pinned to the NNGP,
  :math:`G_l = K(G_{l-1})` from :math:`G_0 = X X^\top / N_0` (`ntk.dkm.nngp_grams`), and
  the outputs have covariance :math:`K(G_L)`, the DKM likelihood's. :math:`\sigma^2`
  maximises the log marginal likelihood :math:`\log \mathcal{N}(y; 0, K_{XX} + \sigma^2 I)`
  (`ntk.dkm.gaussian_log_marginal`) over a grid.
* `sqexp_ard_regression` — a GP on the inputs with a squared-exponential
  ARD kernel
  :math:`k(a, b) = s^2 \exp\big(-\tfrac{1}{2} \sum_d (a_d - b_d)^2 / \lambda_d^2\big)`
  (`ntk.dkm.deep_gp.sqexp_ard`), :math:`s^2`, :math:`\lambda` and :math:`\sigma^2` by
  type-II maximum likelihood.

`gaussian_log_predictive` scores either: :math:`\log \mathcal{N}(y; \mu, v)` per test
point.

    >>> import numpy as np
    >>> from ntk import dkm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(20, 3)); y = np.sin(x[:, 0]); x_test = x[:5] + 0.1
    >>> pred = dkm.nngp_regression(dkm.relu(), 2, x, y, x_test)
    >>> pred.mean.shape, pred.variance.shape
    ((5,), (5,))
    >>> ll = dkm.gaussian_log_predictive(np.sin(x_test[:, 0]), pred.mean, pred.variance)
    >>> ll.shape
    (5,)
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks, predict
from ntk.dkm import objective as obj
from ntk.dkm.deep_gp import sqexp_ard
from ntk.dkm.kernels import GramKernel

__all__ = [
    "NNGPRegression",
    "SqExpARDRegression",
    "nngp_regression",
    "sqexp_ard_regression",
    "gaussian_log_predictive",
]

#: Floor of the latent posterior variance (round-off can make it ≤ 0).
_MIN_VARIANCE = 1e-12
#: Added to the SE-ARD GP's σ² = exp(θ) + 10⁻⁶, so that K_XX + σ² I stays
#: factorisable in float32 however small exp(θ) gets.
_NOISE_FLOOR = 1e-6


class NNGPRegression(NamedTuple):
    r"""`nngp_regression`'s prediction, float64 NumPy.

    ``mean (T,)`` and ``variance (T,)``: the predictive marginals of :math:`y_*`
    (:math:`\sigma^2` included); ``noise_var``: the selected :math:`\sigma^2`;
    ``noise_grid (G,)``: the :math:`\sigma^2` tried; ``log_marginal (G,)``:
    :math:`\log \mathcal{N}(y; 0, K_{XX} + \sigma^2 I)` at each.

    >>> import numpy as np
    >>> from ntk import dkm
    >>> fit = dkm.NNGPRegression(mean=np.zeros(2), variance=np.ones(2), noise_var=0.1,
    ...                          noise_grid=np.array([0.1, 1.0]),
    ...                          log_marginal=np.array([-2.0, -3.0]))   # as nngp_regression
    >>> bool(fit.noise_var == fit.noise_grid[fit.log_marginal.argmax()])
    True
    """

    mean: np.ndarray
    variance: np.ndarray
    noise_var: float
    noise_grid: np.ndarray
    log_marginal: np.ndarray


class SqExpARDRegression(NamedTuple):
    r"""`sqexp_ard_regression`'s prediction and fitted hyperparameters.

    ``mean (T,)`` and ``variance (T,)``: the predictive marginals of :math:`y_*`
    (:math:`\sigma^2` included), float64 NumPy; ``noise_var`` :math:`\sigma^2`,
    ``amplitude`` :math:`s^2` and ``lengthscales (D,)`` :math:`\lambda` at the fit;
    ``log_marginal``: :math:`\log \mathcal{N}(y; 0, K_{XX} + \sigma^2 I)` there, as the
    optimiser evaluated it (float32).

    >>> import numpy as np
    >>> from ntk import dkm
    >>> fit = dkm.SqExpARDRegression(mean=np.zeros(2), variance=np.full(2, 0.2), noise_var=0.1,
    ...                              amplitude=1.0, lengthscales=np.array([1.5, 3.0]),
    ...                              log_marginal=-2.5)   # as sqexp_ard_regression
    >>> fit.lengthscales.shape, bool(np.all(fit.variance >= fit.noise_var))   # v_* includes σ²
    ((2,), True)
    """

    mean: np.ndarray
    variance: np.ndarray
    noise_var: float
    amplitude: float
    lengthscales: np.ndarray
    log_marginal: float


def _check_regression_data(name, x_train, y_train, x_test):
    """Concrete, finite ``x_train (n, D)``, ``y_train (n,)``, ``x_test (T, D)``."""
    x_train = _checks.as_numpy(x_train, "x_train", name, ndim=2, what="(n, D)", nonempty=True)
    y_train = _checks.as_numpy(y_train, "y_train", name, ndim=1, what="(n,)")
    x_test = _checks.as_numpy(x_test, "x_test", name, ndim=2, what="(T, D)", nonempty=True)
    n, d = x_train.shape
    if len(y_train) != n:
        raise ValueError(
            f"{name}: `y_train` must have shape ({n},), one target per row of x_train; "
            f"got {y_train.shape}."
        )
    if x_test.shape[1] != d:
        raise ValueError(
            f"{name}: `x_test` must have shape (T, {d}), the {d} input columns of "
            f"x_train; got {x_test.shape}."
        )
    return x_train, y_train, x_test


def _predictive(ktt, y, kst, kss, noise_var):
    """``(μ_*, v_*)`` of the module docstring (a `predict.gp_inference` Gaussian)."""
    post = predict.gp_inference(ktt, y[:, None], diag_reg=noise_var, diag_reg_absolute_scale=True)(
        "nngp", kst, kss
    )
    return post.mean[:, 0], jnp.maximum(jnp.diag(post.covariance), _MIN_VARIANCE) + noise_var


@functools.partial(jax.jit, static_argnames=("kernel", "layers", "n"))
def _nngp_fit_predict(kernel, layers, n, x, y, grid):
    k = kernel(obj.nngp_grams(x, kernel, layers)[-1])
    ktt, kst, kss = k[:n, :n], k[n:, :n], k[n:, n:]
    if grid is None:
        grid = jnp.logspace(-3, 0.5, 36, dtype=k.dtype)
    # one σ² at a time: vmapped, all the n × n factorisations would be live at once
    lml = jax.lax.map(lambda s2: obj.gaussian_log_marginal(y[:, None], ktt, s2), grid)
    s2 = grid[jnp.argmax(lml)]
    mean, var = _predictive(ktt, y, kst, kss, s2)
    return mean, var, s2, grid, lml


def nngp_regression(
    kernel: GramKernel,
    layers: int,
    x_train,
    y_train,
    x_test,
    *,
    noise_grid=None,
    dtype=jnp.float32,
) -> NNGPRegression:
    r"""Exact GP regression with the deep NNGP kernel :math:`K(G_L)`: the
    :math:`\nu \to \infty` DKM.

    :math:`G_0 = \bar{X} \bar{X}^\top / D` on the stacked inputs
    :math:`\bar{X} = [\mathtt{x\_train}; \mathtt{x\_test}]`, :math:`G_l = K(G_{l-1})` for
    :math:`l = 1, \ldots, L`, and the covariance of the outputs is :math:`K(G_L)` (the
    likelihood term of the DKM objective, Yang et al. 2023, eq. 14, at its
    :math:`\nu \to \infty` optimum). The noise is

    .. math::

        \hat{\sigma}^2 = \operatorname{argmax}_{\sigma^2 \in \mathtt{noise\_grid}}
        \log \mathcal{N}(y; 0, K_{XX} + \sigma^2 I),

    each :math:`\sigma^2` factorised in turn (``lax.map``: memory of one :math:`n \times n`
    matrix), and the prediction is the module docstring's :math:`(\mu_*, v_*)` at
    :math:`\hat{\sigma}^2`.

    Args:
      kernel: the `GramKernel` :math:`K` (e.g. ``dkm.sqexp()``, ``dkm.relu()``).
      layers: the depth :math:`L \ge 1`.
      x_train: ``(n, D)`` inputs; y_train: ``(n,)`` targets; x_test: ``(T, D)``.
      noise_grid: ``(G,)`` positive :math:`\sigma^2` to choose from; None: 36 values
        log-spaced over :math:`[10^{-3}, 10^{0.5}]` (``jnp.logspace(-3, 0.5, 36)``,
        for standardised targets).
      dtype: of the kernel and its factorisations (float32: exact GPs on
        :math:`\sim 10^4` points fit one accelerator; float64 needs ``jax_enable_x64``).

    Returns:
      `NNGPRegression`: predictive ``mean (T,)``, ``variance (T,)``, the
      selected ``noise_var``, the ``noise_grid`` and ``log_marginal`` over it.

    >>> import numpy as np
    >>> from ntk import dkm
    >>> x = np.linspace(-1, 1, 6)[:, None]; y = x[:, 0]    # y = x: a linear kernel fits it
    >>> fit = dkm.nngp_regression(dkm.linear(bias_var=1.0), 1, x, y, x[:2],
    ...                           noise_grid=[0.01, 0.1, 1.0])
    >>> fit.mean.shape, bool(fit.noise_grid[fit.log_marginal.argmax()] == fit.noise_var)
    ((2,), True)
    """
    name = "nngp_regression"
    if not isinstance(kernel, GramKernel):
        raise TypeError(
            f"{name}: `kernel` must be an ntk.dkm GramKernel (e.g. dkm.sqexp()); "
            f"got {type(kernel).__name__}."
        )
    layers = _checks.require_int(layers, "layers", name)
    x_train, y_train, x_test = _check_regression_data(name, x_train, y_train, x_test)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: `dtype` must be a floating dtype; got {dtype}.")
    if noise_grid is not None:
        grid = _checks.as_numpy(noise_grid, "noise_grid", name, ndim=1, what="(G,)", nonempty=True)
        if not np.all(grid > 0):
            raise ValueError(
                f"{name}: `noise_grid` must hold positive noise variances; "
                f"got minimum {grid.min():g}."
            )
        noise_grid = jnp.asarray(grid, dtype)
    x = jnp.asarray(np.concatenate([x_train, x_test]), dtype)
    mean, var, s2, grid, lml = _nngp_fit_predict(
        kernel, layers, len(x_train), x, jnp.asarray(y_train, dtype), noise_grid
    )
    f64 = lambda a: np.asarray(a, np.float64)
    return NNGPRegression(f64(mean), f64(var), float(s2), f64(grid), f64(lml))


def sqexp_ard_regression(x_train, y_train, x_test, *, maxiter: int = 300) -> SqExpARDRegression:
    r"""Exact GP regression with a squared-exponential ARD kernel fitted by type-II ML.

    :math:`k(a, b) = s^2 \exp\big(-\tfrac{1}{2} \sum_d (a_d - b_d)^2 / \lambda_d^2\big)`;
    :math:`\theta = \big(\log \lambda_1, \ldots, \log \lambda_D, \log s^2,
    \log(\sigma^2 - 10^{-6})\big)` minimises
    :math:`-\log \mathcal{N}(y; 0, K_{XX} + \sigma^2 I)`
    (`ntk.dkm.gaussian_log_marginal`, float32, exact gradients by JAX) with
    scipy's L-BFGS-B from :math:`\lambda_d = \sqrt{D}`, :math:`s^2 = 1`,
    :math:`\sigma^2 = 0.1 + 10^{-6}` (for standardised inputs and targets; the
    :math:`10^{-6}` floor keeps the float32 factorisation positive definite). The
    prediction is the module docstring's :math:`(\mu_*, v_*)` at the fit, solved in
    float64 (its kernel matrices in JAX's default float precision); :math:`k_{**} = s^2`
    (only the diagonal of the posterior covariance is used). Needs scipy (``ntk[data]``).

    Args:
      x_train: ``(n, D)`` inputs; y_train: ``(n,)`` targets; x_test: ``(T, D)``.
      maxiter: L-BFGS-B iterations (at most).

    Returns:
      `SqExpARDRegression`: predictive ``mean (T,)``, ``variance (T,)`` and
      the fitted ``noise_var``, ``amplitude``, ``lengthscales (D,)`` and
      ``log_marginal``.

    >>> import numpy as np
    >>> from ntk import dkm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(20, 2)); y = np.sin(x[:, 0]); x_test = x[:5] + 0.1
    >>> fit = dkm.sqexp_ard_regression(x, y, x_test, maxiter=50)
    >>> fit.mean.shape, fit.variance.shape, fit.lengthscales.shape
    ((5,), (5,), (2,))
    """
    name = "sqexp_ard_regression"
    x_train, y_train, x_test = _check_regression_data(name, x_train, y_train, x_test)
    maxiter = _checks.require_int(maxiter, "maxiter", name)
    scipy_optimize = _checks.optional_import("scipy.optimize")

    xtr64, ytr64 = np.asarray(x_train, np.float64), np.asarray(y_train, np.float64)
    d = x_train.shape[1]

    def parts(theta, a, b):
        return sqexp_ard(a, b, theta[d], theta[:d])

    def nlml(theta, x, y):
        noise = jnp.exp(theta[d + 1]) + _NOISE_FLOOR
        return -obj.gaussian_log_marginal(y[:, None], parts(theta, x, x), noise)

    vg = jax.jit(jax.value_and_grad(nlml))
    xj, yj = jnp.asarray(x_train, jnp.float32), jnp.asarray(y_train, jnp.float32)
    theta0 = np.concatenate([np.full(d, np.log(np.sqrt(d))), [0.0, np.log(0.1)]])
    res = scipy_optimize.minimize(
        lambda t: tuple(np.asarray(v, np.float64) for v in vg(jnp.asarray(t, jnp.float32), xj, yj)),
        theta0,
        jac=True,
        method="L-BFGS-B",
        options=dict(maxiter=maxiter),
    )
    th = jnp.asarray(res.x)
    s2 = float(np.exp(res.x[d + 1])) + _NOISE_FLOOR
    amp = float(np.exp(res.x[d]))
    ktt = np.asarray(parts(th, xtr64, xtr64), np.float64)
    kst = np.asarray(parts(th, np.asarray(x_test, np.float64), xtr64), np.float64)
    # only marginal variances are used: the diagonal prior s²·I gives the diagonal of
    # the posterior covariance exactly
    kss = amp * np.eye(len(kst))
    with jax.enable_x64(True):
        post = predict.gp_inference(ktt, ytr64[:, None], diag_reg=s2, diag_reg_absolute_scale=True)(
            "nngp", kst, kss
        )
        mean, var = np.asarray(post.mean)[:, 0], np.diag(np.asarray(post.covariance))
    return SqExpARDRegression(
        mean,
        np.maximum(var, _MIN_VARIANCE) + s2,
        s2,
        amp,
        np.exp(np.asarray(res.x[:d], np.float64)),
        -float(res.fun),
    )


def gaussian_log_predictive(y, mean, variance) -> np.ndarray:
    r""":math:`\log \mathcal{N}(y; \mu, v)
    = -\tfrac{1}{2} \big[\log(2\pi v) + (y - \mu)^2 / v\big]`, elementwise, float64.

    The test log-likelihood per point of a Gaussian predictive (average it
    over the test set for the UCI benchmarks' "test LL"; subtract
    :math:`\log \mathtt{y\_scale}` for targets standardised by ``y_scale``).

    Args:
      y, mean, variance: arrays of one shape; ``variance > 0``.

    >>> from ntk import dkm
    >>> float(dkm.gaussian_log_predictive(np.array([0.0]), np.array([0.0]), np.array([1.0]))[0])
    -0.918938...
    """
    name = "gaussian_log_predictive"
    y = _checks.as_numpy(y, "y", name, dtype=np.float64)
    mean = _checks.as_numpy(mean, "mean", name, dtype=np.float64)
    variance = _checks.as_numpy(variance, "variance", name, dtype=np.float64)
    for arg, a in (("mean", mean), ("variance", variance)):
        if a.shape != y.shape:
            raise ValueError(f"{name}: `{arg}` must have the shape of y, {y.shape}; got {a.shape}.")
    if variance.size and not np.all(variance > 0):
        raise ValueError(f"{name}: `variance` must be positive; got minimum {variance.min():g}.")
    return -0.5 * (np.log(2 * math.pi * variance) + (y - mean) ** 2 / variance)
