r"""The task and the network of Giapitzakis, Back de Luca & Fountoulakis (2025).

Task. A fixed permutation :math:`\pi` of :math:`\{0, \ldots, k-1\}` acts on binary vectors by
its permutation matrix :math:`P_\pi`, :math:`P_\pi e_i = e_{\pi(i)}`, i.e.
:math:`(P_\pi x)_{\pi(i)} = x_i`. The network is trained only on the :math:`k` standard
basis vectors, :math:`X = I_k` with targets :math:`Y_i = (P_\pi e_i)^\top = e_{\pi(i)}^\top`,
and tested on all :math:`2^k - 1` nonzero binary inputs.

Network (the paper's two-layer fully connected network; the choices the text
we could consult leaves open are fixed here and stated): NTK parameterisation,
ReLU, :math:`k` outputs and, by default (``b_std=None``), no biases,

.. math::

    f(x) = (\sigma_w/\sqrt{n})\, W_2^\top
    \operatorname{relu}\big((\sigma_w/\sqrt{k})\, W_1^\top x\big),

all parameters i.i.d. :math:`\mathcal{N}(0, 1)`, default :math:`\sigma_w = 1`; trained by full
batch gradient descent on :math:`\tfrac{1}{2}\lVert f(X) - Y \rVert^2`. Passing
:math:`\mathtt{b\_std} = \sigma_b` adds a bias to both layers,
:math:`f(x) = (\sigma_w/\sqrt{n})\, W_2^\top \operatorname{relu}\big((\sigma_w/\sqrt{k})\,
W_1^\top x + \sigma_b b_1\big) + \sigma_b b_2`.
The infinite-width limit is ``stax.serial(Dense(n, σ_w, b_std), Relu(),
Dense(k, σ_w, b_std))``.

Rounding. The ensemble average :math:`\bar{f}(x)` is rounded coordinatewise by its
sign, :math:`\hat{y}_j = \mathbf{1}[\bar{f}_j(x) > \tau]` with :math:`\tau` = ``TIE = 1e-6``:
the :math:`t = \infty` GP mean is positive exactly on the coordinates of :math:`P_\pi x` and
:math:`\le 0` off them (the paper's "sign-based features", derived in
`ntk.permutations.gp`); on the training inputs the off-coordinates are exactly 0 with zero
variance, and the tiny positive :math:`\tau` keeps floating-point zeros from being read as
ones.

Example:
    >>> perm = random_permutation(jax.random.PRNGKey(0), 5)
    >>> x_train, y_train = training_set(perm)          # (5, 5), (5, 5)
    >>> x = binary_inputs(5)                            # (31, 5)
    >>> bool(jnp.all(round_outputs(apply_permutation(perm, x)) == apply_permutation(perm, x)))
    True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks, stax

TIE = 1e-6
MAX_ENUM_K = 20


def check_k(k, name, max_k=None) -> int:
    """The input dimension ``k``: an int ``>= 1`` (``<= max_k`` when all
    :math:`2^k - 1` inputs are enumerated); returns it as an int."""
    k = _checks.require_int(k, "k", name)
    if max_k is not None and k > max_k:
        raise ValueError(
            f"{name}: `k` must be <= {max_k} to enumerate all "
            f"2^k - 1 inputs; got k={k}. Use sample_binary_inputs."
        )
    return k


def check_stds(W_std, b_std, name):
    r""":math:`\sigma_w > 0` and :math:`\sigma_b` None (no biases) or ``>= 0``, as Python
    floats (they are static arguments of compiled functions)."""
    W_std = float(_checks.require_positive(W_std, "W_std", name))
    if b_std is not None:
        b_std = float(_checks.require_nonnegative(b_std, "b_std", name))
    return W_std, b_std


def check_threshold(threshold, name):
    r"""The rounding threshold :math:`\tau`: a finite real number."""
    return float(_checks.require_real(threshold, "threshold", name))


def check_binary(x, k, arg, name):
    """Binary inputs ``x (N, k)`` (entries 0 or 1, checked when concrete)."""
    x = _checks.as_array(x, arg, name, ndim=2, what=f"(N, {k})")
    if x.shape[1] != k:
        raise ValueError(f"{name}: `{arg}` must have shape (N, {k}); got {tuple(x.shape)}.")
    c = _checks.concrete(x)
    if c is not None and not np.all((c == 0) | (c == 1)):
        bad = c[(c != 0) & (c != 1)]
        raise ValueError(
            f"{name}: `{arg}` must be binary (entries 0 or 1); got {bad[:5].tolist()}."
        )
    return x


def check_counts(name, k, **counts):
    """Concrete counts of ones (``s``, ``n1``…) must be whole numbers in ``[0, k]``."""
    for arg, v in counts.items():
        c = _checks.concrete(v)
        if c is None:
            continue
        if c.dtype == object or not np.issubdtype(c.dtype, np.number):
            raise TypeError(f"{name}: `{arg}` must be a number of ones (0..{k}); got {v!r}.")
        # Counts of ones in binary inputs: whole numbers, even in a float array.
        ok = np.isfinite(c) & (c >= 0) & (c <= k) & (c == np.floor(c))
        if not np.all(ok):
            bad = np.asarray(c)[~ok]
            raise ValueError(
                f"{name}: `{arg}` must be whole numbers of ones in [0, {k}] "
                f"(k = {k}); got {bad.ravel()[:5].tolist()}."
            )


def check_perm(perm, name="permutation"):
    r"""Validate a permutation vector ``perm`` (:math:`\pi(i) = \mathtt{perm}[i]`); return it."""
    p = _checks.concrete(perm)
    if p is None:
        raise TypeError(
            f"{name}: `perm` must be a concrete integer array (it fixes "
            f"shapes); got a traced value."
        )
    if p.ndim != 1 or p.size == 0 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(
            f"{name}: `perm` must be a 1-D integer array; got dtype {p.dtype} and shape {p.shape}."
        )
    if not np.array_equal(np.sort(p), np.arange(p.size)):
        raise ValueError(
            f"{name}: `perm` must be a permutation of 0..{p.size - 1}; got {p.tolist()}."
        )
    return jnp.asarray(p, jnp.int32)


def random_permutation(key, k: int):
    r"""Uniformly random permutation vector of length ``k`` (:math:`\pi(i) = \mathtt{perm}[i]`).

    Example:
        >>> from ntk import permutations as perms
        >>> perm = perms.random_permutation(jax.random.PRNGKey(0), 5)
        >>> perm.dtype, sorted(perm.tolist())
        (dtype('int32'), [0, 1, 2, 3, 4])
    """
    k = check_k(k, "random_permutation")
    return jax.random.permutation(key, k).astype(jnp.int32)


def permutation_matrix(perm, dtype=jnp.float32):
    r""":math:`P_\pi` with :math:`P_\pi e_i = e_{\pi(i)}`: :math:`P[\pi(i), i] = 1`. Shape
    ``(k, k)``.

    Example:
        >>> from ntk import permutations as perms
        >>> perms.permutation_matrix(jnp.array([1, 2, 0])).astype(int).tolist()
        [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    """
    perm = check_perm(perm, "permutation_matrix")
    return jax.nn.one_hot(perm, perm.size, dtype=dtype).T


def apply_permutation(perm, x):
    r""":math:`P_\pi x` row-wise for ``x`` of shape ``(N, k)``: :math:`(P_\pi x)_{\pi(i)} = x_i`.

    Example:
        >>> from ntk import permutations as perms
        >>> x = jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
        >>> perms.apply_permutation(jnp.array([1, 2, 0]), x).tolist()   # x_0 → 1, x_1 → 2
        [[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    """
    perm = check_perm(perm, "apply_permutation")
    x = _checks.as_array(x, "x", "apply_permutation")
    if x.ndim != 2 or x.shape[-1] != perm.size:
        raise ValueError(f"apply_permutation: `x` must have shape (N, {perm.size}); got {x.shape}.")
    return jnp.zeros_like(x).at[:, perm].set(x)


def training_set(perm, dtype=jnp.float32):
    r"""The paper's training set: :math:`X = I_k` and :math:`Y_i = e_{\pi(i)}`, both ``(k, k)``.

    Example:
        >>> from ntk import permutations as perms
        >>> x, y = perms.training_set(jnp.array([1, 2, 0]))
        >>> x.shape, y.tolist()
        ((3, 3), [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    """
    perm = check_perm(perm, "training_set")
    x = jnp.eye(perm.size, dtype=dtype)
    return x, apply_permutation(perm, x)


def binary_inputs(k: int, dtype=jnp.float32):
    """All :math:`2^k - 1` nonzero binary vectors, row :math:`n - 1` the bits of :math:`n`.

    Bit :math:`i` of the integer :math:`n` is coordinate :math:`i`. Shape ``(2^k − 1, k)``;
    ``k <= 20``.

    Example:
        >>> from ntk import permutations as perms
        >>> perms.binary_inputs(2).tolist()          # n = 1, 2, 3
        [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    """
    k = check_k(k, "binary_inputs", MAX_ENUM_K)
    n = np.arange(1, 2**k, dtype=np.int64)
    bits = (n[:, None] >> np.arange(k)[None, :]) & 1
    return jnp.asarray(bits, dtype)


def sample_binary_inputs(key, k: int, n: int, dtype=jnp.float32):
    """``n`` i.i.d. uniform nonzero binary vectors of length ``k`` (any ``k``).

    Uniform bits, and an all-zero row (probability :math:`2^{-k}`) is replaced by a
    uniformly random basis vector — exact uniformity over nonzero inputs up to
    that :math:`2^{-k}` event. Shape ``(n, k)``.

    Example:
        >>> from ntk import permutations as perms
        >>> x = perms.sample_binary_inputs(jax.random.PRNGKey(0), 40, 3)
        >>> x.shape, bool(jnp.all(x.sum(1) > 0))     # never the zero vector
        ((3, 40), True)
    """
    k = check_k(k, "sample_binary_inputs")
    n = _checks.require_int(n, "n", "sample_binary_inputs")
    kb, ke = jax.random.split(key)
    x = jax.random.bernoulli(kb, 0.5, (n, k)).astype(dtype)
    e = jax.nn.one_hot(jax.random.randint(ke, (n,), 0, k), k, dtype=dtype)
    return jnp.where(jnp.any(x > 0, axis=1, keepdims=True), x, e)


def round_outputs(f, threshold: float = TIE):
    r"""The rounding step :math:`\hat{y} = \mathbf{1}[f > \mathtt{threshold}]` (elementwise,
    float 0/1).

    Example:
        >>> from ntk import permutations as perms
        >>> perms.round_outputs(jnp.array([0.7, 1e-9, -0.2])).tolist()   # τ = 1e-6
        [1.0, 0.0, 0.0]
    """
    threshold = check_threshold(threshold, "round_outputs")
    f = _checks.as_array(f, "f", "round_outputs", floating=True)
    return (f > threshold).astype(f.dtype)


def network(k: int, width: int = 1024, W_std: float = 1.0, b_std=None):
    """``(init_fn, apply_fn, kernel_fn)`` of the paper's two-layer ReLU network.

    ``Dense(width, σ_w, σ_b) → Relu → Dense(k, σ_w, σ_b)``, NTK
    parameterisation; ``kernel_fn`` is its infinite-width NNGP/NTK.

    Example:
        >>> from ntk import permutations as perms
        >>> init_fn, apply_fn, kernel_fn = perms.network(3, width=16)
        >>> kernel_fn
        KernelFn(serial(Dense(16), Relu, Dense(3)))
    """
    k = check_k(k, "network")
    width = _checks.require_int(width, "width", "network")
    W_std, b_std = check_stds(W_std, b_std, "network")
    return stax.serial(
        stax.Dense(width, W_std=W_std, b_std=b_std),
        stax.Relu(),
        stax.Dense(k, W_std=W_std, b_std=b_std),
    )
