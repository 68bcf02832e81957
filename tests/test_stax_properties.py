"""Properties every kernel must have, over a small space of architectures.

Hypothesis draws a network ``[Dense(width, W_std_l, b_std_l) -> φ] × depth ->
Dense(1)`` (activation, depth, parameterization, width, bias, standard
deviations; in some, φ is preceded by LayerNorm or merged with a second
branch by FanInProd, FanInConcat or a residual FanInSum) and inputs, and
checks: symmetry, positive semi-definiteness, block consistency of
``kernel_fn(x1, x2)`` with ``kernel_fn(concat(x1, x2))``, finiteness (values
and input gradients) at identical inputs, zero inputs and depth 100,
agreement of ``jax.jit(kernel_fn)`` with ``kernel_fn``, and gradients w.r.t.
inputs and hyperparameters against central differences.

To keep the file fast the kernel of each drawn structure is compiled once with
the standard deviations as traced arguments (which is itself the
kernel-learning use case) and the input shapes fixed; Hypothesis then varies
the values.
"""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntk import stax
from ntk.kernel import inputs_to_kernel

ACTS = {
    "Relu": stax.Relu,
    "Abs": stax.Abs,
    "LeakyRelu": lambda: stax.LeakyRelu(0.2),
    "Erf": stax.Erf,
    "Gelu": stax.Gelu,
    "Sin": lambda: stax.Sin(b=1.3, c=0.2),
    "Rbf": stax.Rbf,
    "Sign": stax.Sign,
    "Gaussian": stax.Gaussian,
    "Gabor": stax.Gabor,
    "RectifiedMonomial": lambda: stax.RectifiedMonomial(2),
    "ExpNormalized": lambda: stax.ExpNormalized(1.5, -0.7),
}
N1, N2, D = 4, 3, 3

SETTINGS = settings(
    deadline=None,
    max_examples=10,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Arch(NamedTuple):
    act: str
    depth: int
    parameterization: str
    width: int
    has_bias: bool
    block: str = "plain"  # what follows each hidden Dense: `_hidden`


def _hidden(arch: Arch, W_std, b_std):
    """The layers after a hidden Dense: the activation alone ("plain"), after
    LayerNorm, or merged with a second branch (the branches' own Dense layers
    take the layer's standard deviations, scaled)."""
    act = ACTS[arch.act]

    def dense(scale):
        b = b_std if arch.has_bias else None
        return stax.Dense(arch.width, scale * W_std, b, parameterization=arch.parameterization)

    return {
        "plain": lambda: [act()],
        "layernorm": lambda: [stax.LayerNorm(), act()],
        "residual": lambda: [
            act(),
            stax.FanOut(2),
            stax.parallel(dense(0.8), stax.Identity()),
            stax.FanInSum(),
        ],
        "product": lambda: [
            stax.FanOut(2),
            stax.parallel(stax.serial(dense(0.9), act()), stax.serial(dense(1.1), act())),
            stax.FanInProd(),
        ],
        "concat": lambda: [
            stax.FanOut(2),
            stax.parallel(act(), stax.serial(dense(0.7), act())),
            stax.FanInConcat(),
        ],
    }[arch.block]()


def build(arch: Arch, W_stds, b_stds):
    """The network of ``arch`` with (possibly traced) standard deviations."""
    layers = []
    for i in range(arch.depth + 1):
        out = 1 if i == arch.depth else arch.width
        layers.append(
            stax.Dense(
                out,
                W_std=W_stds[i],
                b_std=b_stds[i] if arch.has_bias else None,
                parameterization=arch.parameterization,
            )
        )
        if i < arch.depth:
            layers.extend(_hidden(arch, W_stds[i], b_stds[i]))
    return stax.serial(*layers)


GET = ("nngp", "ntk", "cov1", "cov2")


@functools.lru_cache(maxsize=None)
def compiled_kernel(arch: Arch):
    """``(x1, x2, W_stds, b_stds) -> (nngp, ntk, cov1, cov2)``, jitted once."""

    @jax.jit
    def kernel(x1, x2, W_stds, b_stds):
        return tuple(build(arch, W_stds, b_stds).kernel_fn(x1, x2, get=GET))

    return kernel


# A small space of architectures: every activation once, with depths 1–3,
# both parameterizations, two widths, with and without bias, and the merges
# (product, concatenation, residual sum) and LayerNorm after some. Drawing
# from a fixed list (rather than the full product) lets the compiled kernels be
# reused across examples and tests; Hypothesis varies everything else.
ARCHS = [
    Arch("Relu", 3, "ntk", 8, True),
    Arch("Abs", 2, "standard", 64, False),
    Arch("LeakyRelu", 1, "ntk", 8, True),
    Arch("Erf", 2, "ntk", 8, False),
    Arch("Gelu", 1, "standard", 4, True),
    Arch("Sin", 2, "ntk", 8, True),
    Arch("Rbf", 1, "ntk", 8, False),
    Arch("Sign", 2, "standard", 64, True),
    Arch("Gaussian", 2, "ntk", 8, True),
    Arch("Relu", 1, "standard", 4, False),
    Arch("Gabor", 2, "ntk", 8, True),
    Arch("RectifiedMonomial", 1, "standard", 4, False),
    Arch("ExpNormalized", 2, "ntk", 8, True),
    Arch("Relu", 2, "ntk", 8, True, "product"),
    Arch("Rbf", 1, "standard", 8, True, "product"),
    Arch("Erf", 2, "standard", 8, True, "concat"),
    Arch("Abs", 2, "ntk", 8, False, "concat"),
    Arch("Gelu", 2, "ntk", 8, True, "residual"),
    Arch("Sign", 2, "ntk", 8, True, "layernorm"),
]


@st.composite
def nets(draw):
    arch = draw(st.sampled_from(ARCHS))
    n = arch.depth + 1
    W = draw(st.lists(st.floats(0.3, 2.0), min_size=n, max_size=n))
    b = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    return arch, jnp.asarray(W), jnp.asarray(b)


def inputs(n):
    """Inputs on a coarse grid, so zeros and repeated rows occur."""
    cell = st.integers(-20, 20).map(lambda i: i / 10)
    return st.lists(st.lists(cell, min_size=D, max_size=D), min_size=n, max_size=n).map(
        lambda rows: jnp.asarray(rows, dtype=jnp.float64)
    )


def _kernel(net, x1, x2=None):
    arch, W, b = net
    return compiled_kernel(arch)(x1, x2, W, b)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ------------------------------------------------------------- structure


@SETTINGS
@given(net=nets(), x1=inputs(N1))
def test_kernels_are_symmetric_when_x2_is_none(net, x1):
    nngp, ntk, _, cov2 = _kernel(net, x1)
    assert cov2 is None
    for name, k in (("nngp", nngp), ("ntk", ntk)):
        k = np.asarray(k)
        assert np.max(np.abs(k - k.T)) <= 1e-13 * np.max(np.abs(k)), name


@SETTINGS
@given(net=nets(), x1=inputs(N1 + N2))
def test_kernels_are_positive_semidefinite(net, x1):
    nngp, ntk, _, _ = _kernel(net, x1)
    for name, k in (("nngp", nngp), ("ntk", ntk)):
        k = np.asarray(k)
        eig = np.linalg.eigvalsh((k + k.T) / 2)
        assert eig[0] >= -1e-10 * max(eig[-1], 0.0), (name, eig)


@SETTINGS
@given(net=nets(), x1=inputs(N1), x2=inputs(N2))
def test_cross_kernel_is_off_diagonal_block_of_joint_kernel(net, x1, x2):
    """``K(x1, x2) = K([x1; x2])[:N1, N1:]``; ``cov1``/``cov2`` are the
    diagonals of the two diagonal blocks."""
    nngp, ntk, cov1, cov2 = _kernel(net, x1, x2)
    joint_nngp, joint_ntk, _, _ = _kernel(net, jnp.concatenate([x1, x2]))
    tol = 1e-12
    assert _rel(nngp, joint_nngp[:N1, N1:]) <= tol
    assert _rel(ntk, joint_ntk[:N1, N1:]) <= tol
    assert _rel(cov1, np.diag(joint_nngp)[:N1]) <= tol
    assert _rel(cov2, np.diag(joint_nngp)[N1:]) <= tol


@SETTINGS
@given(net=nets(), x1=inputs(N1), x2=inputs(N2))
def test_kernel_of_x1_alone_is_diagonal_block_of_joint_kernel(net, x1, x2):
    nngp, ntk, cov1, _ = _kernel(net, x1)
    joint_nngp, joint_ntk, _, _ = _kernel(net, jnp.concatenate([x1, x2]))
    assert _rel(nngp, joint_nngp[:N1, :N1]) <= 1e-12
    assert _rel(ntk, joint_ntk[:N1, :N1]) <= 1e-12
    assert _rel(cov1, np.diag(joint_nngp)[:N1]) <= 1e-12


@SETTINGS
@given(net=nets(), x1=inputs(N1))
def test_explicit_x2_equal_to_x1_gives_the_same_kernel(net, x1):
    nngp, ntk, cov1, _ = _kernel(net, x1)
    nngp2, ntk2, cov1b, cov2 = _kernel(net, x1, x1)
    assert _rel(nngp2, nngp) <= 1e-12 and _rel(ntk2, ntk) <= 1e-12
    assert _rel(cov2, cov1) <= 1e-12 and _rel(cov1b, cov1) <= 1e-12


# ---------------------------------------------------------- finiteness


def _objective(arch, x1, x2, W, b, w):
    """Σ w⊙(K + Θ): a scalar that depends on every kernel entry."""
    nngp, ntk, _, _ = compiled_kernel(arch)(x1, x2, W, b)
    return jnp.sum(w * (nngp + ntk))


@functools.lru_cache(maxsize=None)
def compiled_input_grad(arch: Arch):
    """``∂ objective / ∂(x1, x2)`` (x2 may be None), jitted once per arch."""
    return jax.jit(jax.grad(functools.partial(_objective, arch), argnums=(0, 1)))


def _weights(n1, n2):
    return jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, (n1, n2)))


def _finite_with_grads(net, x1, x2):
    """Values and ∂(Σ w⊙(K + Θ))/∂(x1, x2) are finite."""
    arch, W, b = net
    values = compiled_kernel(arch)(x1, x2, W, b)
    for name, v in zip(GET, values):
        assert v is None or np.all(np.isfinite(v)), (name, v)
    w = _weights(x1.shape[0], (x1 if x2 is None else x2).shape[0])
    g1, g2 = compiled_input_grad(arch)(x1, x2, W, b, w)
    assert np.all(np.isfinite(g1)), g1
    assert g2 is None or np.all(np.isfinite(g2)), g2


@SETTINGS
@given(net=nets(), x1=inputs(N1))
def test_finite_values_and_input_gradients_when_x2_equals_x1(net, x1):
    """Every pair (x1_i, x2_i) has correlation exactly 1."""
    _finite_with_grads(net, x1, x1)


@SETTINGS
@given(net=nets(), x1=inputs(N1), dup=st.integers(0, N1 - 1))
def test_finite_values_and_input_gradients_with_duplicated_rows(net, x1, dup):
    x1 = x1.at[(dup + 1) % N1].set(x1[dup])
    _finite_with_grads(net, x1, None)


@pytest.mark.parametrize(
    "act",
    [
        "Relu",
        "Abs",
        "Erf",
        "Gelu",
        "Sign",
        "Gaussian",
        "Gabor",
        "RectifiedMonomial",
        "ExpNormalized",
    ],
)
@pytest.mark.parametrize("has_bias", [False, True])
def test_finite_values_and_input_gradients_at_zero_inputs(act, has_bias):
    """Zero inputs: without bias their variances are exactly 0 at every layer
    (angle 0/0, sqrt at 0). Pairs zero–zero, zero–nonzero and nonzero–nonzero
    all occur between x1 (two zero rows) and x2 (zeros)."""
    arch = Arch(act, 2, "ntk", 8, has_bias)
    net = (arch, jnp.asarray([1.5, 1.2, 0.9]), jnp.asarray([0.3, 0.2, 0.1]))
    x1 = jnp.zeros((N1, D)).at[0].set(jnp.asarray([0.5, -1.0, 2.0])).at[1].set(0.3)
    _finite_with_grads(net, x1, jnp.zeros((N2, D)))


def _deep(act, W_std, b_std, depth, via):
    block = stax.serial(ACTS[act](), stax.Dense(16, W_std=W_std, b_std=b_std))
    head = stax.Dense(16, W_std=W_std, b_std=b_std)
    if via == "repeat":
        return stax.serial(head, stax.repeat(block, depth - 1))
    return stax.serial(head, *[block] * (depth - 1))


DEEP = [("Relu", math.sqrt(2), 0.0), ("Erf", 2.5, 0.2), ("Gelu", 1.0, 0.0), ("Abs", 1.0, 0.1)]


@pytest.mark.parametrize("act,W_std,b_std", DEEP)
def test_depth_100_via_repeat_is_finite_with_finite_input_gradients(act, W_std, b_std):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(N1, D))).at[1].set(0.0).at[2].set(rng.normal(size=D))
    x = x.at[3].set(x[2])  # a duplicated row
    kernel_fn = _deep(act, W_std, b_std, 100, "repeat").kernel_fn
    k = kernel_fn(x, get=("nngp", "ntk"))
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    g = jax.grad(lambda x: jnp.sum(kernel_fn(x, x, get="ntk")))(x)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("act,W_std,b_std", DEEP[1:2])
def test_depth_100_via_serial_is_finite_with_finite_input_gradients(act, W_std, b_std):
    """The serial network's transform, applied to the input `Kernel` under one
    `jax.jit` (its periodic layers become a scan), agrees with `repeat` and has
    finite input gradients. (Op-by-op evaluation computes the same values and
    took two minutes; the public kernel_fn's compile time is tested below.)"""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(N1, D))).at[1].set(0.0)
    x = x.at[3].set(x[2])
    net = _deep(act, W_std, b_std, 100, "serial")
    ref = _deep(act, W_std, b_std, 100, "repeat").kernel_fn(x, get="ntk")

    def ntk(x):
        return net.kernel_fn(inputs_to_kernel(x, None, diagonal_spatial=True, compute_ntk=True)).ntk

    values = jax.jit(ntk)(x)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values, ref, rtol=1e-10)
    assert np.all(np.isfinite(jax.jit(jax.grad(lambda x: jnp.sum(ntk(x))))(x)))


def test_depth_100_via_serial_compiles_in_reasonable_time_and_memory():
    """The public (jitted) kernel_fn of a depth-100 serial network must
    compile in well under 30 s and 4 GB (a depth-100 scan takes ~1 s). Run in a child process so a
    regression fails instead of hanging the suite or exhausting memory."""
    code = textwrap.dedent("""
        import resource, jax, numpy as np
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        jax.config.update("jax_enable_x64", True)
        from ntk import stax
        net = stax.serial(*[stax.Dense(16, W_std=1.5, b_std=0.1), stax.Relu()] * 100,
                          stax.Dense(1))
        x = np.random.default_rng(0).normal(size=(4, 3))
        k = net.kernel_fn(x, get="ntk")
        assert np.all(np.isfinite(k)), k
        print("ok")
    """)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    }
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            "kernel_fn of serial([Dense, Relu] * 100) did not compile and "
            "run within 30 s (compile time grows quadratically in depth)"
        )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


# ----------------------------------------------------------------- jit


@SETTINGS
@given(net=nets(), x1=inputs(N1), x2=st.one_of(st.none(), inputs(N2)))
def test_kernel_fn_under_jit_gives_same_values(net, x1, x2):
    arch, W, b = net
    plain = build(arch, [float(w) for w in W], [float(v) for v in b])
    direct = plain.kernel_fn(x1, x2, get=GET)
    jitted = jax.jit(lambda x1, x2: tuple(plain.kernel_fn(x1, x2, get=GET)))(x1, x2)
    for name, a, c in zip(GET, direct, jitted):
        if a is None:
            assert c is None, name
        else:
            np.testing.assert_allclose(c, a, rtol=1e-13, atol=1e-300, err_msg=name)


# ------------------------------------------------------------ gradients


@SETTINGS
@given(net=nets(), seed=st.integers(0, 2**16))
def test_input_gradients_match_central_differences(net, seed):
    """⟨∇_{x1, x2} Σ w⊙(K + Θ), v⟩ vs a central difference along a random v,
    at generic (non-degenerate) inputs where the kernel is smooth."""
    arch, W, b = net
    rng = np.random.default_rng(seed)
    x1, x2 = jnp.asarray(rng.normal(size=(N1, D))), jnp.asarray(rng.normal(size=(N2, D)))
    w = jnp.asarray(rng.uniform(0.5, 1.5, (N1, N2)))
    v1, v2 = jnp.asarray(rng.normal(size=(N1, D))), jnp.asarray(rng.normal(size=(N2, D)))
    g1, g2 = compiled_input_grad(arch)(x1, x2, W, b, w)
    analytic = float(jnp.sum(g1 * v1) + jnp.sum(g2 * v2))
    h = 1e-5
    f = functools.partial(_objective, arch, W=W, b=b, w=w)
    fd = (float(f(x1 + h * v1, x2 + h * v2)) - float(f(x1 - h * v1, x2 - h * v2))) / (2 * h)
    assert abs(analytic - fd) <= 1e-6 * max(abs(fd), 1.0), (analytic, fd)


@SETTINGS
@given(net=nets(), seed=st.integers(0, 2**16))
def test_hyperparameter_gradients_match_central_differences(net, seed):
    """∂/∂(W_std, b_std) of Σ w⊙(K + Θ), the network rebuilt from jnp scalars
    inside the differentiated function (kernel learning)."""
    arch, W, b = net
    rng = np.random.default_rng(seed)
    x1, x2 = jnp.asarray(rng.normal(size=(N1, D))), jnp.asarray(rng.normal(size=(N2, D)))
    w = jnp.asarray(rng.uniform(0.5, 1.5, (N1, N2)))
    f, grad = compiled_hyper_objective(arch)
    gW, gb = grad(W, b, x1, x2, w)
    h = 1e-5
    for i in range(len(W)):
        e = jnp.zeros_like(W).at[i].set(1.0)
        fd = (float(f(W + h * e, b, x1, x2, w)) - float(f(W - h * e, b, x1, x2, w))) / (2 * h)
        assert abs(float(gW[i]) - fd) <= 1e-6 * max(abs(fd), 1.0), ("W_std", i, gW[i], fd)
        if arch.has_bias:
            fd = (float(f(W, b + h * e, x1, x2, w)) - float(f(W, b - h * e, x1, x2, w))) / (2 * h)
            assert abs(float(gb[i]) - fd) <= 1e-6 * max(abs(fd), 1.0), ("b_std", i, gb[i], fd)
        else:
            assert float(gb[i]) == 0.0


@functools.lru_cache(maxsize=None)
def compiled_hyper_objective(arch: Arch):
    """``(W_stds, b_stds, x1, x2, w) -> Σ w⊙(K + Θ)`` with the network rebuilt
    from jnp scalars inside the function (kernel learning), and its gradient."""

    def f(W, b, x1, x2, w):
        net = build(arch, [W[i] for i in range(len(W))], [b[i] for i in range(len(b))])
        k = net.kernel_fn(x1, x2, get=("nngp", "ntk"))
        return jnp.sum(w * (k.nngp + k.ntk))

    # One compiled program: the finite differences read the primal values of
    # the reverse-mode program (the same forward computation), so the primal
    # is not compiled a second time on its own.
    value_and_grad = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    return (lambda *args: value_and_grad(*args)[0], lambda *args: value_and_grad(*args)[1])


_SEQ = jax.random.normal(jax.random.PRNGKey(5), (3, 5, 4))
_IMG = jax.random.normal(jax.random.PRNGKey(6), (2, 8, 8, 3))
_VEC = jax.random.normal(jax.random.PRNGKey(7), (4, 5))

# Layer hyperparameters outside the drawn networks, each traced by building the
# layer inside the differentiated function: (builder, value, inputs).
LAYER_HYPERPARAMETERS = {
    "Sin c": (lambda c: stax.serial(stax.Dense(1), stax.Sin(c=c), stax.Dense(1)), 0.3, _VEC),
    "Cos c": (lambda c: stax.serial(stax.Dense(1), stax.Cos(c=c), stax.Dense(1)), 0.3, _VEC),
    "Dropout rate": (
        lambda r: stax.serial(stax.Dense(1), stax.Relu(), stax.Dropout(r), stax.Dense(1)),
        0.8,
        _VEC,
    ),
    "Myrtle W_std": (lambda w: stax.Myrtle(5, W_std=w), 1.3, _IMG),
    "attention positional length scale": (
        lambda ell: stax.serial(
            stax.Dense(3),
            stax.GlobalSelfAttention(
                3,
                3,
                3,
                1,
                pos_emb_type="SUM",
                n_chan_pos_emb=3,
                pos_emb_decay_fn=lambda d: jnp.exp(-d / ell),
            ),
            stax.GlobalAvgPool(),
            stax.Dense(1),
        ),
        2.0,
        _SEQ,
    ),
}


@pytest.mark.parametrize("name", sorted(LAYER_HYPERPARAMETERS))
def test_layer_hyperparameter_gradients_match_central_differences(name):
    build_net, p0, x = LAYER_HYPERPARAMETERS[name]
    f = lambda p: jnp.sum(build_net(p).kernel_fn(x, None, "ntk"))
    h = 1e-5
    fd = (float(f(p0 + h)) - float(f(p0 - h))) / (2 * h)
    assert abs(float(jax.grad(f)(p0)) - fd) <= 1e-6 * max(abs(fd), 1.0)
