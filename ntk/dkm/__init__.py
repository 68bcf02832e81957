"""Deep kernel machines (Yang et al. 2023, ICML; Milsom et al. 2023).

A DKM learns one Gram matrix per layer by maximising

    L(G_1..G_L) = log P(Y | G_L) − Σ_l ν_l KL(N(0, G_l) ‖ N(0, K(G_{l−1}))),

the infinite-width (Bayesian representation-learning) limit of a deep GP's
posterior. `kernels` holds the maps ``G -> K(G)``, `objective` the objective
and its linear algebra, `full` the full DKM (cubic in the number of points)
and `sparse` the inducing-point DKM (linear in it, minibatch training).

    >>> from ntk import dkm
    >>> model = dkm.FullDKM(dkm.relu(), num_layers=2, nu=1.0, noise_var=0.1)
    >>> params, info = model.fit(model.init(X), X, Y)
    >>> pred = model.predict(params, X, Y, X_test)     # .mean, .variance
"""

from ntk.dkm.kernels import (GramKernel, elementwise_kernel, from_stax, linear,
                             normalised_gaussian, relu, sqexp)
from ntk.dkm.objective import (dkm_objective, gaussian_kl,
                               gaussian_log_marginal, input_gram, nngp_grams)
from ntk.dkm.full import FitInfo, FullDKM, Prediction
from ntk.dkm.sparse import SparseDKM

__all__ = [
    "GramKernel", "elementwise_kernel", "from_stax", "linear",
    "normalised_gaussian", "relu", "sqexp", "dkm_objective", "gaussian_kl",
    "gaussian_log_marginal", "input_gram", "nngp_grams", "FitInfo", "FullDKM",
    "Prediction", "SparseDKM",
]
