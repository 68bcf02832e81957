r"""Deep kernel machines (Yang et al. 2023, ICML; Milsom et al. 2023).

A DKM learns one Gram matrix per layer by maximising

.. math::

    L(G_1, \ldots, G_L) = \log P(Y \mid G_L)
    - \sum_l \nu_l\, \mathrm{KL}\big(\mathcal{N}(0, G_l) \,\big\|\, \mathcal{N}(0, K(G_{l-1}))\big),

the infinite-width (Bayesian representation-learning) limit of a deep GP's
posterior. `kernels` holds the maps :math:`G \mapsto K(G)`, `objective` the
objective and its linear algebra, `full` the full DKM (cubic in the number of
points), `sparse` the inducing-point DKM (linear in it, minibatch training),
`optim` their preconditioned L-BFGS, `sweep` full-DKM optima along a
:math:`\nu` sweep and `alignment` the centred kernel alignment. Beside the
limit, the finite objects it is the limit of and is compared with: `sampling`
samples the posterior of wide, finite deep GPs (MALA), `deep_gp` is the doubly
stochastic variational deep GP of Salimbeni & Deisenroth 2017, and
`regression` the exact-GP baselines of the paper's UCI comparison (the NNGP,
i.e. the :math:`\nu \to \infty` DKM, and a shallow SE-ARD GP).

    >>> import numpy as np
    >>> from ntk import dkm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 3)); Y = np.sin(X[:, :1]); X_test = X[:5] + 0.1
    >>> model = dkm.FullDKM(dkm.relu(), num_layers=2, nu=1.0, noise_var=0.1)
    >>> params = model.init(X)                         # the NNGP; then model.fit(...)
    >>> pred = model.predict(params, X, Y, X_test)     # .mean, .variance
    >>> pred.mean.shape, pred.variance.shape
    ((5, 1), (5,))
"""

from ntk.dkm.kernels import (
    GramKernel,
    elementwise_kernel,
    from_stax,
    linear,
    normalised_gaussian,
    relu,
    sqexp,
)
from ntk.dkm.objective import (
    dkm_objective,
    gaussian_kl,
    gaussian_log_marginal,
    input_gram,
    nngp_grams,
)
from ntk.dkm.full import FitInfo, FullDKM, Prediction
from ntk.dkm.sparse import SparseDKM
from ntk.dkm.sweep import NuFit, make_nu_fitter
from ntk.dkm.alignment import centred_alignment
from ntk.dkm.sampling import SamplerOutput, dgp_log_posterior, grams_from_whitened, make_dgp_sampler
from ntk.dkm.regression import (
    NNGPRegression,
    SqExpARDRegression,
    gaussian_log_predictive,
    nngp_regression,
    sqexp_ard_regression,
)
from ntk.dkm import deep_gp

__all__ = [
    "GramKernel",
    "elementwise_kernel",
    "from_stax",
    "linear",
    "normalised_gaussian",
    "relu",
    "sqexp",
    "dkm_objective",
    "gaussian_kl",
    "gaussian_log_marginal",
    "input_gram",
    "nngp_grams",
    "FitInfo",
    "FullDKM",
    "Prediction",
    "SparseDKM",
    "NuFit",
    "make_nu_fitter",
    "centred_alignment",
    "SamplerOutput",
    "dgp_log_posterior",
    "grams_from_whitened",
    "make_dgp_sampler",
    "NNGPRegression",
    "SqExpARDRegression",
    "gaussian_log_predictive",
    "nngp_regression",
    "sqexp_ard_regression",
    "deep_gp",
]
