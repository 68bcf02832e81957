"""Architectures with analytic infinite-width kernels, in neural-tangents' API.

    >>> from ntk import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    >>> kernel_fn(x1, x2, get="ntk")      # (N1, N2) infinite-width NTK

See `ntk.stax.layer` for the layer record, `ntk.stax.spec` for the typed
description every layer carries (what `ntk.empirical` and `ntk.mup` read),
and `combinators`, `linear`, `conv`, `pooling` and `elementwise` for the
layers.
"""

from ntk.stax.combinators import (FanInConcat, FanInProd, FanInSum, FanOut,
                                  parallel, repeat, serial)
from ntk.stax.elementwise import (ACTIVATIONS, ABRelu, Abs, Activation, Cos,
                                  Elementwise, ElementwiseNumerical, Erf, Exp,
                                  Gaussian, Gelu, Hermite, LeakyRelu, Monomial,
                                  Polynomial, Rbf, Relu, Sigmoid_like, Sign, Sin)
from ntk.stax import spec
from ntk.stax.layer import KernelFn, Layer, make_layer
from ntk.stax.conv import Conv, ConvLocal, ConvTranspose
from ntk.stax.resize import ImageResize
from ntk.stax.spatial import Padding
from ntk.stax.linear import Dense, Dropout, Flatten, Identity, LayerNorm
from ntk.stax.pooling import AvgPool, GlobalAvgPool, GlobalSumPool, SumPool
from ntk.stax.indexing import DotGeneral, Index, Slice
from ntk.stax.attention import (AttentionMechanism, GlobalSelfAttention,
                                PositionalEmbedding)
from ntk.stax.graph import Aggregate, AggregateImplementation
from ntk.stax.masking import MaskedArray, unmask_fn
from ntk.stax.myrtle import Myrtle


__all__ = [
    # combinators
    "serial", "parallel", "repeat", "FanOut", "FanInSum", "FanInProd",
    "FanInConcat",
    # linear, pooling, reshaping, normalisation, regularisation
    "Dense", "Conv", "AvgPool", "SumPool", "GlobalAvgPool", "GlobalSumPool",
    "Flatten", "Identity", "LayerNorm", "Dropout",
    # transposed and unshared convolutions, resizing, the padding enum
    "ConvTranspose", "ConvLocal", "ImageResize", "Padding",
    # fixed linear maps of positions: dot with a constant, indexing
    "DotGeneral", "Index", "Slice",
    # activations
    "Relu", "LeakyRelu", "ABRelu", "Abs", "Erf", "Sigmoid_like", "Gelu", "Sin",
    "Cos", "Rbf", "Sign", "Exp", "Gaussian", "Monomial", "Hermite",
    "Polynomial", "Elementwise", "ElementwiseNumerical",
    # attention (and its option enums)
    "GlobalSelfAttention", "AttentionMechanism", "PositionalEmbedding",
    # graph networks; masked (padded) inputs
    "Aggregate", "AggregateImplementation", "MaskedArray", "unmask_fn",
    # whole networks: the Myrtle CNNs of Shankar et al. 2020 (fused kernel)
    "Myrtle",
    # the activation table and the layer record
    "ACTIVATIONS", "Activation", "Layer", "KernelFn", "make_layer", "spec",
]
