"""Architectures with analytic infinite-width kernels, in neural-tangents' API.

    >>> import jax
    >>> from ntk import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    >>> x1 = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    >>> x2 = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
    >>> kernel_fn(x1, x2, get="ntk").shape      # (N1, N2) infinite-width NTK
    (3, 2)

See `ntk.stax.layer` for the layer record, `ntk.stax.spec` for the typed
description every layer carries (what `ntk.empirical` and `ntk.mup` read),
and for the layers: ``combinators``; ``linear`` (Dense, LayerNorm, Dropout, …),
``conv`` and ``pooling`` with their window geometry in ``spatial``;
``resize``, ``indexing``, ``attention``, ``graph`` and ``masking``;
``elementwise`` (the activation layers) over ``duals`` (their closed-form dual
kernels) and ``numerical`` (quadrature for any activation); ``myrtle`` (the
Myrtle CNNs). ``_internal`` holds the numerics other packages share; it is
not public API.
"""

from ntk.stax.combinators import FanInConcat, FanInProd, FanInSum, FanOut, parallel, repeat, serial
from ntk.stax.elementwise import (
    ACTIVATIONS,
    ABRelu,
    Abs,
    Activation,
    Cos,
    Elementwise,
    ElementwiseNumerical,
    Erf,
    Exp,
    ExpNormalized,
    Gabor,
    Gaussian,
    Gelu,
    Hermite,
    LeakyRelu,
    Monomial,
    Polynomial,
    Rbf,
    RectifiedMonomial,
    Relu,
    Sigmoid_like,
    Sign,
    Sin,
)
from ntk.stax import spec
from ntk.stax.layer import KernelFn, Layer, make_layer
from ntk.stax.conv import Conv, ConvLocal, ConvTranspose
from ntk.stax.resize import ImageResize
from ntk.stax.spatial import Padding
from ntk.stax.linear import Dense, Dropout, Flatten, Identity, LayerNorm
from ntk.stax.pooling import AvgPool, GlobalAvgPool, GlobalSumPool, SumPool
from ntk.stax.indexing import DotGeneral, Index, Slice
from ntk.stax.attention import AttentionMechanism, GlobalSelfAttention, PositionalEmbedding
from ntk.stax.graph import Aggregate, AggregateImplementation
from ntk.stax.masking import MaskedArray, unmask_fn
from ntk.stax.myrtle import Myrtle


__all__ = [
    # combinators
    "serial",
    "parallel",
    "repeat",
    "FanOut",
    "FanInSum",
    "FanInProd",
    "FanInConcat",
    # linear, pooling, reshaping, normalisation, regularisation
    "Dense",
    "Conv",
    "AvgPool",
    "SumPool",
    "GlobalAvgPool",
    "GlobalSumPool",
    "Flatten",
    "Identity",
    "LayerNorm",
    "Dropout",
    # transposed and unshared convolutions, resizing, the padding enum
    "ConvTranspose",
    "ConvLocal",
    "ImageResize",
    "Padding",
    # fixed linear maps of positions: dot with a constant, indexing
    "DotGeneral",
    "Index",
    "Slice",
    # activations
    "Relu",
    "LeakyRelu",
    "ABRelu",
    "Abs",
    "Erf",
    "Sigmoid_like",
    "Gelu",
    "Sin",
    "Cos",
    "Rbf",
    "Sign",
    "Exp",
    "Gaussian",
    "Monomial",
    "Hermite",
    "Polynomial",
    "Gabor",
    "ExpNormalized",
    "RectifiedMonomial",
    "Elementwise",
    "ElementwiseNumerical",
    # attention (and its option enums)
    "GlobalSelfAttention",
    "AttentionMechanism",
    "PositionalEmbedding",
    # graph networks; masked (padded) inputs
    "Aggregate",
    "AggregateImplementation",
    "MaskedArray",
    "unmask_fn",
    # whole networks: the Myrtle CNNs of Shankar et al. 2020 (fused kernel)
    "Myrtle",
    # the activation table and the layer record
    "ACTIVATIONS",
    "Activation",
    "Layer",
    "KernelFn",
    "make_layer",
    "spec",
]
