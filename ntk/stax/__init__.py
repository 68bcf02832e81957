"""Architectures with analytic infinite-width kernels, in neural-tangents' API.

    >>> from ntk import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    >>> kernel_fn(x1, x2, get="ntk")      # (N1, N2) infinite-width NTK

See `ntk.stax.layer` for the layer record, `combinators`, `linear` and
`elementwise` for the layers.
"""

from ntk.stax.combinators import (FanInConcat, FanInProd, FanInSum, FanOut,
                                  parallel, repeat, serial)
from ntk.stax.elementwise import (ACTIVATIONS, ABRelu, Abs, Activation, Cos,
                                  Elementwise, ElementwiseNumerical, Erf, Exp,
                                  Gaussian, Gelu, Hermite, LeakyRelu, Monomial,
                                  Polynomial, Rbf, Relu, Sigmoid_like, Sign, Sin)
from ntk.stax.layer import KernelFn, Layer, make_layer
from ntk.stax.linear import (AvgPool, Conv, Dense, Dropout, Flatten,
                              GlobalAvgPool, GlobalSumPool, Identity,
                              LayerNorm, SumPool)

