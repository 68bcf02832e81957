"""ntk: infinite-width neural network theory in JAX.

`ntk.stax` builds networks with analytic NNGP/NTK kernels (neural-tangents'
API); `ntk.Kernel` is the record those kernels travel in. `ntk.empirical`
(finite-width kernels), `ntk.predict` (function-space training dynamics) and
`ntk.parallel` (tiled, sharded kernel evaluation) build on it; `ntk.mup`
(μP and feature-learning limits), `ntk.dkm` (deep kernel machines),
`ntk.random_features` (random-feature regression and its eigenframework) and
`ntk.permutations` (NTK permutation ensembles) implement the papers;
`ntk.data` holds the offline datasets and `ntk.power_law` the log-log fits
every paper uses to measure exponents. NT's top-level functions (``batch``,
``empirical_ntk_fn``, ``linearize``, ...) are importable from ``ntk`` too.
"""

from ntk import stax
from ntk.kernel import Kernel

# Submodules importable as attributes (`ntk.predict`), as in neural-tangents.
from ntk import empirical, parallel, power_law, predict  # noqa: E402

# The papers' modules, built on the three above.
from ntk import data, dkm, mup, permutations, random_features  # noqa: E402

# neural-tangents' top-level names (`nt.batch`, `nt.empirical_ntk_fn`, ...),
# so that `import ntk as nt` runs NT code unchanged.
from ntk.empirical import (  # noqa: E402
    NtkImplementation,
    empirical_kernel_fn,
    empirical_nngp_fn,
    empirical_ntk_fn,
    empirical_ntk_vp_fn,
    linearize,
    monte_carlo_kernel_fn,
    taylor_expand,
)
from ntk.parallel import batch  # noqa: E402

__all__ = [
    "Kernel",
    "NtkImplementation",
    "batch",
    "empirical_kernel_fn",
    "empirical_nngp_fn",
    "empirical_ntk_fn",
    "empirical_ntk_vp_fn",
    "linearize",
    "monte_carlo_kernel_fn",
    "taylor_expand",
    "data",
    "dkm",
    "empirical",
    "mup",
    "parallel",
    "permutations",
    "power_law",
    "predict",
    "random_features",
    "stax",
]

__version__ = "0.1.0"
