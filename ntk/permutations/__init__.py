r"""NTK permutation ensembles (Giapitzakis, Back de Luca & Fountoulakis 2025).

"Exact Learning of Permutations for Nonzero Binary Inputs with Logarithmic
Training Size and Quadratic Ensemble Complexity" (arXiv:2502.16763v1): a
two-layer ReLU network trained to convergence in the NTK regime on only the
:math:`k` basis vectors :math:`e_i \mapsto P_\pi e_i` is a Gaussian process whose mean is
positive exactly on the coordinates of :math:`P_\pi x`; averaging :math:`M` such
networks and rounding recovers :math:`P_\pi x` for every nonzero binary :math:`x` with
high probability, :math:`M \propto k \log k` per input and :math:`M \propto k^2` for all
inputs.

Modules:

- ``setting``: the task, training set, network, rounding rule (choices stated)
- ``gp``: the :math:`t = \infty` GP via ``ntk.predict``, and its closed form
  (:math:`\mu(x) = \alpha(s) P_\pi x + \beta(s)(1 - P_\pi x)`, :math:`\Sigma(s, s', x \cdot x')`)
- ``sampling``: exact joint GP draws over all :math:`2^k - 1` inputs (dense;
  :math:`S_k`-block)
- ``ensembles``: ensemble draws, rounding checks, :math:`M_{\min}`, ensemble complexity
- ``finite``: finite-width networks trained by gradient descent (validation)

Example:
    >>> from ntk import permutations as perms
    >>> perm = perms.random_permutation(jax.random.PRNGKey(0), 6)
    >>> x = perms.binary_inputs(6)
    >>> members = perms.draw_members(jax.random.PRNGKey(1), perm, 512)
    >>> bool(perms.recovered(members.mean(0), perm, x).all())
    True
"""

from ntk.permutations.ensembles import (
    all_input_min_sizes,
    draw_ensemble_average,
    draw_members,
    empirical_complexity,
    min_ensemble_sizes,
    per_input_complexity,
    recovered,
    recovery_curve,
    sampled_input_min_sizes,
    success_probability,
    union_bound_complexity,
)
from ntk.permutations.finite import train_finite_ensemble
from ntk.permutations.gp import (
    closed_form_covariance,
    closed_form_mean,
    closed_form_variance,
    covariance_fn,
    margins,
    mean_structure,
    relu_kernels,
    trained_gp,
)
from ntk.permutations.sampling import dense_sampler, gp_sampler, structured_sampler
from ntk.permutations.setting import (
    TIE,
    apply_permutation,
    binary_inputs,
    network,
    permutation_matrix,
    random_permutation,
    round_outputs,
    sample_binary_inputs,
    training_set,
)

__all__ = [
    "TIE",
    "all_input_min_sizes",
    "apply_permutation",
    "binary_inputs",
    "closed_form_covariance",
    "closed_form_mean",
    "closed_form_variance",
    "covariance_fn",
    "dense_sampler",
    "draw_ensemble_average",
    "draw_members",
    "empirical_complexity",
    "gp_sampler",
    "margins",
    "mean_structure",
    "min_ensemble_sizes",
    "network",
    "per_input_complexity",
    "permutation_matrix",
    "random_permutation",
    "recovered",
    "recovery_curve",
    "relu_kernels",
    "round_outputs",
    "sample_binary_inputs",
    "sampled_input_min_sizes",
    "structured_sampler",
    "success_probability",
    "train_finite_ensemble",
    "trained_gp",
    "training_set",
    "union_bound_complexity",
]
