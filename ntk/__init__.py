"""ntk: infinite-width neural network theory in JAX.

`ntk.stax` builds networks with analytic NNGP/NTK kernels (neural-tangents'
API); `ntk.Kernel` is the record those kernels travel in.
"""

from ntk import stax
from ntk.kernel import Kernel

# Submodules importable as attributes (`ntk.predict`), as in neural-tangents.
from ntk import empirical, parallel, predict  # noqa: E402

__version__ = "0.1.0"
