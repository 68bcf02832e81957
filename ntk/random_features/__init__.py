r"""Random-feature regression and the eigenframework (Simon et al. 2024).

- `features`: random features of any `ntk.stax` network (last hidden layer, NTK
  gradients), classic families (ReLU arc-cosine, random Fourier, Gaussian) and
  Gaussian features of any kernel matrix.
- `ridge`: RF ridge regression, exact primal/dual solves for many ridges at once.
- `eigen`: the kernel's eigensystem, eigenvalues :math:`\lambda_i`, target coefficients
  :math:`v_i`, exponents :math:`(\alpha, \beta)`, the eigenmode power spread of features.
- `theory`: the eigenframework — :math:`\kappa`, :math:`\gamma`, :math:`\mathcal{E}_0` and
  test/train MSE of KRR and RF, the fitting ratio :math:`E_{tr}/E_{te}` against the ridge and
  its optimum.
- `krr`: exact KRR simulations (Gaussian model, pool kernels) beside its theory, and
  the optimal-ridge table against label noise.

    >>> import jax.numpy as jnp
    >>> from ntk import random_features as rf
    >>> lam = jnp.arange(1, 2001.) ** -1.5
    >>> out = rf.rf_risk(lam, lam ** 0.5, n=256, k=256, ridge=1e-2, noise_var=0.5)
    >>> bool(out.test_mse > 0.5 > out.train_mse)    # noisy labels: test above σ², train below
    True
"""

from ntk.random_features.eigen import (
    KernelExponents,
    eigendecompose,
    exponents_from_sizes,
    fit_alpha,
    fit_beta,
    inverse_trace_kappa,
    kernel_eigensystem,
    kernel_exponents,
    log_binned_means,
    power_law_fit,
    mode_power_cv,
    ridgeless_krr_mse,
)
from ntk.random_features.features import (
    fourier_features,
    gaussian_features,
    kernel_feature_sampler,
    network_features,
    ntk_features,
    relu_features,
)
from ntk.random_features.ridge import mse, optimal_ridge, rf_ridge_mse, rf_ridge_weights
from ntk.random_features.theory import (
    FittingCurve,
    KRRTheory,
    RFTheory,
    krr_fitting_curve,
    krr_kappa,
    krr_risk,
    learnabilities,
    optimal_fitting_ratio,
    rf_kappa_gamma,
    rf_risk,
)
from ntk.random_features.krr import gaussian_krr_mse, krr_pool_mse, krr_ridge_table

__all__ = [
    "eigendecompose",
    "kernel_eigensystem",
    "exponents_from_sizes",
    "fit_alpha",
    "fit_beta",
    "inverse_trace_kappa",
    "log_binned_means",
    "KernelExponents",
    "kernel_exponents",
    "power_law_fit",
    "ridgeless_krr_mse",
    "mode_power_cv",
    "fourier_features",
    "gaussian_features",
    "kernel_feature_sampler",
    "network_features",
    "ntk_features",
    "relu_features",
    "mse",
    "optimal_ridge",
    "rf_ridge_mse",
    "rf_ridge_weights",
    "KRRTheory",
    "RFTheory",
    "FittingCurve",
    "krr_fitting_curve",
    "krr_kappa",
    "krr_risk",
    "learnabilities",
    "rf_kappa_gamma",
    "rf_risk",
    "optimal_fitting_ratio",
    "gaussian_krr_mse",
    "krr_pool_mse",
    "krr_ridge_table",
]
