r"""Function-space training dynamics and GP inference with NNGP/NTK kernels.

Neural-tangents' ``predict`` API (names, signatures and conventions), on public
JAX only.

Linearised training (Jacot et al. 2018, "Neural Tangent Kernel", §5; Lee et al.
2019, "Wide neural networks of any depth evolve as linear models under gradient
descent", §2.2). Gradient flow with learning rate :math:`\eta` on a loss
:math:`L(f(X), Y)` moves the outputs of a (linearised or infinitely wide) network
along

.. math::

    \frac{d f_t(x)}{dt} = -\eta\, \Theta(x, X)\, \nabla_f L(f_t(X)),
    \qquad \text{(Lee eq. 6)}

where :math:`\Theta` is the NTK and :math:`X` the training inputs. For the mean
squared error used throughout neural-tangents,

.. math::

    L(f) = \lVert f(X) - Y \rVert^2 / (2 n), \qquad n = \texttt{Y.size},

the flow is linear and solved in closed form (Lee eqs. 8-9): with
:math:`\tau = \eta t / n`,

.. math::

    f_t(X) &= Y + e^{-\Theta \tau} (f_0(X) - Y), \\
    f_t(x) &= f_0(x) - \Theta(x, X)\, \Theta^{-1} (I - e^{-\Theta \tau}) (f_0(X) - Y),

and :math:`t = \infty` gives kernel regression
:math:`f_0(x) + \Theta(x, X)\, \Theta^{-1}(Y - f_0(X))`. Time ``t`` counts
gradient-descent steps of size :math:`\eta` (continuous, may be fractional).

Kernels are arrays ``(N1, N2)`` for outputs ``(N, K)`` with the default
``trace_axes=(-1,)`` (the kernel is :math:`\Theta \otimes I_K`: the same for every
output channel, as infinite-width kernels are). In general the kernel has the
interleaved shape of ``zip(y.shape, y.shape)`` with the ``trace_axes`` pairs
removed, e.g. ``(N, N, K, K)`` for ``trace_axes=()``.

Regularisation. ``diag_reg`` adds :math:`\mathrm{diag\_reg} \cdot I` to the
train-train kernel, scaled by the mean of its diagonal unless
``diag_reg_absolute_scale=True``. Closed forms at finite ``t`` use the
eigendecomposition of the regularised kernel; :math:`t = \infty` uses a Cholesky
solve. A kernel that is not positive definite
(Cholesky) or clearly indefinite (eigenvalues) raises a ValueError reporting
its smallest eigenvalue and a ``diag_reg`` that would fix it. Decompositions are
computed on first use and cached (when the kernel is a concrete array).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from ntk import stax, predict
    >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
    >>> x_train = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    >>> y_train = jnp.sin(x_train[:, :1])
    >>> x_test = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    >>> predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train)
    >>> mean, cov = predict_fn(t=100., x_test=x_test, get="ntk", compute_cov=True)
    >>> mean.shape, cov.shape
    ((4, 1), (4, 4))
"""

# Layout: one concept per module.
#   mse.py            gradient_descent_mse: closed-form MSE gradient flow (or, with
#                     discrete_time=True, gradient-descent steps) of one network
#   ensemble.py       gradient_descent_mse_ensemble: mean/covariance over initialisations
#   gp.py             gp_inference: NNGP / NTK / NTK-GP posteriors (t = ∞)
#   general_loss.py   gradient_descent: any loss (+ momentum), solved by ntk.ode.odeint
#   learning_rate.py  max_learning_rate: stability bound of (momentum) GD on the MSE
#   results.py        Gaussian, ODEState and the shapes of returned values
#   _layout.py        trace_axes: outputs and interleaved kernels <-> 2-D matrices
#   _checks.py        predict-specific argument validation (generic checks: ntk._checks)
#   _linalg.py        regularised Cholesky/eigh (the regularisation of ntk._linalg),
#                     spectral filters

from ntk.predict.ensemble import gradient_descent_mse_ensemble
from ntk.predict.general_loss import gradient_descent
from ntk.predict.gp import gp_inference
from ntk.predict.learning_rate import max_learning_rate
from ntk.predict.mse import gradient_descent_mse
from ntk.predict.results import Gaussian, ODEState

__all__ = [
    "Gaussian",
    "ODEState",
    "gradient_descent_mse",
    "gradient_descent",
    "gp_inference",
    "gradient_descent_mse_ensemble",
    "max_learning_rate",
]
