r"""Eigenstructure of a kernel on a dataset and its power-law exponents :math:`(\alpha, \beta)`.

Source: Simon, Karkada, Ghosh & Belkin 2024, Sec. 5 and App. (the eigenframework
needs the kernel eigenvalues :math:`\lambda_i` and the target's eigencoefficients :math:`v_i`
under the data measure). On a pool of :math:`N` points the data measure is the empirical one:

.. math::

    K_N = U \operatorname{diag}(N \lambda)\, U^\top, \qquad
    \lambda_i = \operatorname{eig}_i(K_N) / N \ \text{(descending)}, \qquad
    v = U^\top y / \sqrt{N},

so :math:`K(x, x') = \sum \lambda_i \phi_i(x)\phi_i(x')` with
:math:`\phi_i(x_a) = \sqrt{N} U_{ai}` orthonormal in the empirical measure and
:math:`\sum_i v_i^2 = \operatorname{mean} y^2`.

`eigendecompose` is traceable JAX (it runs inside ``jit``);
`kernel_eigensystem` is the same symmetric eigendecomposition on the host in
float64, the one factorisation `kernel_feature_sampler` and `mode_power_cv`
share (``eig=``).

Power laws (paper Sec. 5): :math:`\lambda_i \sim i^{-\alpha}` and :math:`v_i^2 \sim i^{-\beta}`,
fitted by the one log–log least-squares fit of `ntk.power_law`. Direct fits are noisy for
single :math:`v_i^2`, so :math:`\beta` is fitted to :math:`v_i^2` averaged in logarithmic bins
(`log_binned_means`). The paper's size-based proxies use only Gram matrices of
growing subsets:

.. math::

    \kappa(n) &\approx \big(\operatorname{Tr} K_n^{-1}\big)^{-1} \sim n^{-\alpha}
    \qquad \text{(ridgeless KRR, Simon et al. 2021)}, \\
    \text{ridgeless test MSE}(n) &\sim n^{1-\beta} \qquad \text{(paper Sec. 5)}.

`kernel_exponents` gives both kinds of estimate for one kernel on a pool.

    >>> import numpy as np
    >>> from ntk.random_features import eigendecompose, fit_alpha
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1000, 100)) * np.arange(1, 101) ** -0.75   # Cov = diag(i^-1.5)
    >>> lam, v = eigendecompose(x @ x.T, x[:, 0])
    >>> round(fit_alpha(lam, 2, 30), 1)                                 # the covariance's α
    1.5
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks
from ntk.power_law import loglog_fit, loglog_slope_se
from ntk.random_features import _eigensystem as _eig

__all__ = [
    "eigendecompose",
    "kernel_eigensystem",
    "power_law_fit",
    "log_binned_means",
    "fit_alpha",
    "fit_beta",
    "inverse_trace_kappa",
    "exponents_from_sizes",
    "ridgeless_krr_mse",
    "KernelExponents",
    "kernel_exponents",
    "mode_power_cv",
]


def eigendecompose(kernel, y):
    r""":math:`(\lambda, v)`: eigenvalues (N,) descending and target coefficients (N,) / (N, T).

    ``kernel`` (N, N) is a PSD kernel matrix on a pool of :math:`N` points, ``y`` (N,)
    or (N, T) the targets on it; :math:`\lambda = \operatorname{eig}(K)/N` (clipped at 0),
    :math:`v = U^\top y/\sqrt{N}`.

        >>> import numpy as np
        >>> from ntk.random_features import eigendecompose
        >>> lam, v = eigendecompose(np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([1.0, -1.0]))
        >>> lam.tolist(), round(float((v ** 2).sum()), 6)     # eig(K)/N; Σ v_i² = mean y²
        ([1.5, 0.5], 1.0)
    """
    k = _square(kernel, "kernel", "eigendecompose")
    y = _targets(y, k, "eigendecompose")
    n = k.shape[0]
    evals, u = _eig.descending_eigh(k, jnp)
    lam = evals / n
    v = jnp.tensordot(u.T, y, axes=1) / jnp.sqrt(n)
    return lam, v


def kernel_eigensystem(kernel):
    r""":math:`(\mu, U)`: eigenvalues (N,), descending, and eigenvectors (N, N) of a kernel matrix.

    For a PSD kernel matrix :math:`K` (N, N) on a pool of :math:`N` points,

    .. math::

        K = U \operatorname{diag}(\mu)\, U^\top, \qquad U^\top U = I, \qquad
        \mu_1 \ge \mu_2 \ge \ldots \ge \mu_N \ge 0,

    column :math:`i` of :math:`U` the eigenvector of :math:`\mu_i`. Computed on the host in
    float64 by ``numpy.linalg.eigh`` of the symmetric part :math:`(K + K^\top)/2`
    (``eigh`` reads one triangle only, so round-off asymmetry would otherwise
    count on one side), with the eigenvalues clipped at 0: a PSD kernel's
    smallest eigenvalues come out slightly negative in floating point, where
    a square root (`kernel_feature_sampler`) is undefined. It is the factorisation
    that `kernel_feature_sampler` and `mode_power_cv` accept as ``eig=``, so
    one decomposition can serve both. `eigendecompose` is its traceable JAX
    counterpart in the empirical measure (:math:`\lambda = \mu/N`, :math:`v = U^\top y/\sqrt{N}`).

        >>> import numpy as np
        >>> from ntk.random_features import kernel_eigensystem
        >>> a = np.random.default_rng(0).normal(size=(4, 2))
        >>> mu, u = kernel_eigensystem(a @ a.T)          # rank 2: two zero eigenvalues
        >>> bool(np.all(np.diff(mu) <= 0)), bool(np.allclose((u * mu) @ u.T, a @ a.T))
        (True, True)
        >>> mu[2:].round(12).tolist()                     # ≥ 0: round-off clipped
        [0.0, 0.0]
    """
    name = "kernel_eigensystem"
    k = _eig.square_numpy(kernel, "kernel", name)
    return _eig.descending_eigh(k, np)


def _square(kernel, arg, name):
    """A finite, symmetric, non-empty ``(N, N)`` kernel matrix (floating)."""
    k = _checks.as_array(kernel, arg, name, ndim=2, floating=True, what="(N, N)", nonempty=True)
    if k.shape[0] != k.shape[1]:
        raise ValueError(f"{name}: `{arg}` must be square (N, N); got {k.shape}.")
    return _checks.require_symmetric(k, arg, name)


def _targets(y, k, name):
    y = _checks.as_array(y, "y", name).astype(k.dtype)
    if y.ndim not in (1, 2) or y.shape[0] != k.shape[0]:
        raise ValueError(
            f"{name}: `y` must have shape (N,) or (N, T) with "
            f"N = {k.shape[0]} (the kernel's size); got {y.shape}."
        )
    return y


def power_law_fit(x, values):
    r"""Least-squares fit of :math:`\mathtt{values} \approx c \cdot x^{-p}` in log–log: returns
    (p, c).

    ``x`` and ``values`` are 1-D of equal length; points with ``x <= 0``,
    ``values <= 0`` or non-finite values are left out of the fit. The decay
    exponent :math:`p` is minus the slope of `ntk.power_law.loglog_fit`.

        >>> import numpy as np
        >>> from ntk.random_features import power_law_fit
        >>> x = np.array([1.0, 2.0, 4.0, 8.0])
        >>> p, c = power_law_fit(x, 3 * x ** -2.0)
        >>> round(p, 4), round(c, 4)
        (2.0, 3.0)
    """
    slope, prefactor = loglog_fit(x, values, invalid="drop")
    return -slope, prefactor


def _index_range(m, i_min, i_max, name):
    i_min = _checks.require_int(i_min, "i_min", name)
    i_max = m if i_max is None else _checks.require_int(i_max, "i_max", name)
    if not 1 <= i_min < i_max <= m:
        raise ValueError(
            f"{name}: need 1 ≤ i_min < i_max ≤ {m} (the number of "
            f"modes); got i_min={i_min}, i_max={i_max}."
        )
    return np.arange(i_min, i_max + 1)


def fit_alpha(eigvals, i_min: int = 1, i_max: int | None = None) -> float:
    r""":math:`\alpha` from :math:`\lambda_i \sim i^{-\alpha}` over modes ``i_min`` … ``i_max``
    (1-based, :math:`\lambda` descending).

    >>> import numpy as np
    >>> from ntk.random_features import fit_alpha
    >>> round(fit_alpha(np.arange(1, 11.0) ** -1.5, i_min=2), 4)
    1.5
    """
    lam = _checks.as_numpy(eigvals, "eigvals", "fit_alpha", ndim=1, what="(M,)", dtype=np.float64)
    lam = np.sort(lam)[::-1]
    idx = _index_range(lam.shape[0], i_min, i_max, "fit_alpha")
    return power_law_fit(idx, lam[idx - 1])[0]


def fit_beta(
    target_coeffs, i_min: int = 1, i_max: int | None = None, bins_per_decade: float = 5.0
) -> float:
    r""":math:`\beta` from :math:`v_i^2 \sim i^{-\beta}` over modes ``i_min`` … ``i_max``
    (:math:`v` in descending-:math:`\lambda` order).

    Single coefficients scatter (a sample's :math:`v_i` carries a random sign and
    :math:`\chi^2`-like size), so :math:`v_i^2` is averaged over logarithmic bins
    (``bins_per_decade``, at least 3 bins) before
    the log–log fit (bin mean against the bin's geometric-mean index); for an
    exact power law every bin's mean is the same multiple of its centre's value,
    so the slope is unbiased. Summed over outputs for (M, T) coefficients.

        >>> import numpy as np
        >>> from ntk.random_features import fit_beta
        >>> v = np.arange(1, 101.0) ** -1.0 * np.where(np.arange(100) % 2, 1, -1)   # v_i² = i⁻²
        >>> round(fit_beta(v), 2)
        1.99
    """
    v = _checks.as_numpy(
        target_coeffs,
        "target_coeffs",
        "fit_beta",
        ndim=(1, 2),
        what="(M,) or (M, T)",
        dtype=np.float64,
    )
    _checks.require_positive(bins_per_decade, "bins_per_decade", "fit_beta")
    v2 = v**2 if v.ndim == 1 else (v**2).sum(1)
    idx = _index_range(v2.shape[0], i_min, i_max, "fit_beta")
    bins = max(3, int(round(bins_per_decade * np.log10((idx[-1] + 1) / idx[0]))))
    return power_law_fit(*_binned(v2, idx[0], idx[-1], bins))[0]


def log_binned_means(values, i_min: int = 1, i_max: int | None = None, bins: int = 20):
    r"""Means of :math:`\mathtt{values}[i-1]` over logarithmic bins of the 1-based index
    :math:`i`: (centres, means).

    The indices ``i_min`` … ``i_max`` are cut at the edges
    ``round(geomspace(i_min, i_max + 1, bins + 1))`` (repeated edges merged, so
    small indices may give fewer bins); bin :math:`[a, b)` gives the mean of
    :math:`\mathtt{values}[a-1 \ldots b-2]` at the geometric mean of its indices,
    :math:`\exp(\operatorname{mean}(\log i))`. For a power law
    :math:`\mathtt{values}_i = c \cdot i^{-p}` each bin's mean is close to
    :math:`c \cdot \mathrm{centre}^{-p}`, so a log–log fit of the bins recovers :math:`p`
    while averaging out the scatter of single values (`fit_beta` fits
    :math:`v_i^2` this way).

        >>> import numpy as np
        >>> from ntk.random_features import log_binned_means
        >>> centres, means = log_binned_means(np.arange(1, 101.0), 1, 100, bins=2)
        >>> centres.round(2).tolist(), means.tolist()     # bins [1, 10) and [10, 101)
        ([4.15, 47.3], [5.0, 55.0])
    """
    name = "log_binned_means"
    values = _checks.as_numpy(values, "values", name, ndim=1, what="(M,)", dtype=np.float64)
    idx = _index_range(values.shape[0], i_min, i_max, name)
    bins = _checks.require_int(bins, "bins", name)
    return _binned(values, idx[0], idx[-1], bins)


def _binned(values, i_min, i_max, bins):
    edges = np.unique(np.round(np.geomspace(i_min, i_max + 1, bins + 1)).astype(int))
    centres, means = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        centres.append(np.exp(np.mean(np.log(np.arange(a, b)))))
        means.append(values[a - 1 : b - 1].mean())
    return np.asarray(centres), np.asarray(means)


def inverse_trace_kappa(kernel_n, ridge=0.0):
    r""":math:`(\operatorname{Tr} (K_n + \delta I)^{-1})^{-1}`, the data-only estimate of
    :math:`\kappa` at :math:`n = \operatorname{len}(K_n)`.

    >>> import numpy as np
    >>> from ntk.random_features import inverse_trace_kappa
    >>> float(inverse_trace_kappa(np.eye(2))), float(inverse_trace_kappa(np.eye(2), ridge=1.0))
    (0.5, 1.0)
    """
    k = _square(kernel_n, "kernel_n", "inverse_trace_kappa")
    _checks.require_nonnegative(ridge, "ridge", "inverse_trace_kappa")
    xp, k = _float64(kernel_n, k)
    evals = xp.linalg.eigvalsh(0.5 * (k + k.T)) + ridge
    evals = xp.maximum(evals, xp.finfo(k.dtype).eps * xp.max(evals))
    return 1.0 / xp.sum(1.0 / evals)


def _float64(given, k):
    """``(array module, k)`` computing in float64: jax.numpy for a float64 array,
    NumPy on the host otherwise (JAX without x64 has no float64), from the
    ``given`` array itself when it is a float64 NumPy array (``k``, checked, is
    then float32). These estimates clamp eigenvalues at ``eps·λ_max`` and cut
    singular values at ``N·eps``: dtype-relative floors which, in float32, sit
    above a steep spectrum's tail and set its exponents (α 1.75 instead of 3.49
    at λ_i = i^-3.5)."""
    if jnp.result_type(k) == jnp.float64 or not _checks.is_concrete(k):
        return jnp, k
    if isinstance(given, np.ndarray) and given.dtype == np.float64:
        return np, given
    return np, np.asarray(k, np.float64)


def ridgeless_krr_mse(kernel, y, train_idx, test_idx):
    """Test MSE of ridgeless KRR trained on ``train_idx`` of a pool kernel.

    ``kernel (N, N)`` on the pool, ``y (N,)`` or ``(N, T)``; ``train_idx`` and
    ``test_idx`` 1-D integer indices into the pool (``-N <= i < N``).

        >>> import numpy as np
        >>> from ntk.random_features import ridgeless_krr_mse
        >>> x = np.random.default_rng(0).normal(size=(10, 2)); y = x @ np.array([1.0, -1.0])
        >>> mse = ridgeless_krr_mse(x @ x.T, y, np.arange(5), np.arange(5, 10))
        >>> round(float(mse), 6)                    # a linear target, a linear kernel: exact
        0.0
    """
    name = "ridgeless_krr_mse"
    k = _square(kernel, "kernel", name)
    y_given, y = y, _targets(y, k, name)
    train_idx = _checks.require_indices(train_idx, k.shape[0], "train_idx", name)
    test_idx = _checks.require_indices(test_idx, k.shape[0], "test_idx", name)
    xp, k = _float64(kernel, k)
    y = _float64(y_given, y)[1] if xp is np else y
    ktt = k[train_idx][:, train_idx]
    sol = xp.linalg.lstsq(ktt, y[train_idx], rcond=None)[0]
    pred = k[test_idx][:, train_idx] @ sol
    err = (pred - y[test_idx]) ** 2
    return err.mean() if err.ndim == 1 else err.sum(-1).mean()


def exponents_from_sizes(kernel, y, sizes, key, trials: int = 3, n_test: int | None = None):
    r"""The paper's proxies on random subsets of a pool kernel: (:math:`\alpha`, :math:`\beta`,
    table).

    For each :math:`n` in ``sizes`` (and ``trials`` random subsets):
    :math:`\hat\kappa(n) = (\operatorname{Tr} K_n^{-1})^{-1}` and the ridgeless KRR test MSE on
    ``n_test`` held-out pool points. Fits :math:`\hat\kappa \sim n^{-\alpha}` and
    :math:`\mathrm{MSE} \sim n^{1-\beta}` to the per-size means. Returns :math:`\alpha`,
    :math:`\beta` and a dict of the per-size means (``{"sizes", "kappa", "test_mse"}``, one
    entry per size) with the exponents' standard errors over the subset draws
    (``"alpha_se"``, ``"beta_se"``; NaN with one trial). They follow from the delta method:
    the log of a mean of ``trials`` draws with standard deviation :math:`s_j` around
    :math:`m_j` has variance :math:`s_j^2 / (\mathtt{trials}\, m_j^2)`, and the least-squares
    slope is :math:`\sum_j w_j \log m_j` with :math:`w_j = (\ell_j - \bar\ell)/\sum_i
    (\ell_i - \bar\ell)^2`, :math:`\ell_j = \log n_j`, so its variance is
    :math:`\sum_j w_j^2 s_j^2 / (\mathtt{trials}\, m_j^2)`. They measure the subsets' noise
    given the pool, not how far a power law fitted over these sizes is from one fitted over
    others.

    A run is `kernel_exponents`'s example (every subset size compiles its own
    solves); the pool must hold the largest subset and the test points:

        >>> import jax, numpy as np
        >>> from ntk.random_features import exponents_from_sizes
        >>> exponents_from_sizes(np.eye(10), np.ones(10), [4, 8], jax.random.PRNGKey(0),
        ...                      n_test=5)
        Traceback (most recent call last):
          ...
        ValueError: exponents_from_sizes: max(sizes) + n_test = 13 exceeds the pool of 10 points.
    """
    name = "exponents_from_sizes"
    k = _square(kernel, "kernel", name)
    y = _targets(y, k, name)
    pool = k.shape[0]
    sizes = [_checks.require_int(s, "sizes", name) for s in np.atleast_1d(np.asarray(sizes))]
    if len(sizes) < 2:
        raise ValueError(
            f"{name}: `sizes` must hold at least 2 subset sizes (a "
            f"power-law fit needs 2 points); got {len(sizes)}."
        )
    trials = _checks.require_int(trials, "trials", name)
    n_test = (
        max(pool - max(sizes), 1) if n_test is None else _checks.require_int(n_test, "n_test", name)
    )
    _checks.require_key(key, name, "it draws the subsets")
    if max(sizes) + n_test > pool:
        raise ValueError(
            f"exponents_from_sizes: max(sizes) + n_test = "
            f"{max(sizes) + n_test} exceeds the pool of {pool} points."
        )
    draws = np.empty((2, len(sizes), trials))
    for j, n in enumerate(sizes):
        for t in range(trials):
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1000 * n + t), pool))
            tr, te = perm[:n], perm[n : n + n_test]
            draws[0, j, t] = float(inverse_trace_kappa(k[tr][:, tr]))
            draws[1, j, t] = float(ridgeless_krr_mse(k, y, tr, te))
    kappas, mses = draws.mean(-1).tolist()
    alpha, _ = power_law_fit(sizes, kappas)
    p, _ = power_law_fit(sizes, mses)
    table = {"sizes": sizes, "kappa": kappas, "test_mse": mses}
    table["alpha_se"], table["beta_se"] = (loglog_slope_se(sizes, d) for d in draws)
    return alpha, 1.0 + p, table


class KernelExponents(NamedTuple):
    """The power-law exponents of a kernel and target on a pool (`kernel_exponents`).

    >>> from ntk.random_features import KernelExponents
    >>> KernelExponents._fields[:4]     # spectrum fits, then the size proxies
    ('alpha', 'beta', 'alpha_proxy', 'beta_proxy')
    """

    alpha: float  # λ_i ~ i^(−α), fitted to the spectrum over fit_range
    beta: float  # v_i² ~ i^(−β), fitted to log-binned v_i²
    alpha_proxy: float  # (Tr K_n⁻¹)⁻¹ ~ n^(−α)
    beta_proxy: float  # ridgeless test MSE ~ n^(1−β)
    eigvals: np.ndarray  # (N,) λ, descending (`eigendecompose`)
    target_coeffs: np.ndarray  # (N,) or (N, T) v
    fit_range: tuple[int, int]  # 1-based modes (i_min, i_max) of the α fit
    proxy: dict  # `exponents_from_sizes`' table: sizes, kappa, test_mse, alpha_se, beta_se


def kernel_exponents(kernel, y, key, fit_range=None, sizes=None, trials: int = 2):
    r""":math:`(\alpha, \beta)` of a kernel and target on a pool, from the spectrum and from the
    size proxies.

    Simon et al. 2024 (Sec. 5) describe a task by :math:`\lambda_i \sim i^{-\alpha}` and
    :math:`v_i^2 \sim i^{-\beta}`. On a pool of :math:`N` points (`eigendecompose`:
    :math:`\lambda = \operatorname{eig}(K)/N`, :math:`v = U^\top y/\sqrt{N}`) this fits

    - :math:`\alpha`: `fit_alpha`, :math:`\log \lambda_i` against :math:`\log i` over
      ``fit_range = (i_min, i_max)``, by default ``(max(2, N//100), max(N//5, 4))``: it
      leaves out the first modes, which often sit off the power law (the
      kernel's mean, the data's coarsest structure), and the tail, where an
      :math:`N`-point spectrum departs from the population's;
    - :math:`\beta`: `fit_beta`, log-binned :math:`v_i^2` over ``i_min`` … ``max(N//2, i_max)``;
    - the paper's proxies (`exponents_from_sizes`, ``trials`` random subsets
      per size): :math:`(\operatorname{Tr} K_n^{-1})^{-1} \sim n^{-\alpha}` and ridgeless test
      MSE :math:`\sim n^{1-\beta}` on the pool points left out, for :math:`n` in ``sizes``, by
      default six sizes log-spaced over ``max(8, N//40)`` … ``N//2``
      (:math:`N - \max(\mathtt{sizes})` test points).

    Args:
      kernel: ``(N, N)`` symmetric PSD kernel matrix on the pool, :math:`N \ge 18` with
        the default sizes (two distinct sizes :math:`\ge 8` up to :math:`N/2`).
      y: ``(N,)`` or ``(N, T)`` targets on the pool.
      key: PRNG key drawing the proxies' subsets.
      fit_range: 1-based modes ``(i_min, i_max)`` of the :math:`\alpha` fit (:math:`\beta`'s
        starts at ``i_min``), :math:`1 \le \mathtt{i\_min} < \mathtt{i\_max} \le N` (default
        above).
      sizes: subset sizes of the proxies, at least two, each :math:`< N` (default
        above); trials: subsets per size.

    Returns:
      `KernelExponents`.

        >>> import jax, numpy as np
        >>> from ntk.random_features import kernel_exponents
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 400)) * np.arange(1, 401) ** -0.75   # Cov = diag(i^-1.5)
        >>> out = kernel_exponents(x @ x.T, x[:, 0], jax.random.PRNGKey(0), sizes=[50, 100])
        >>> round(out.alpha, 1), out.fit_range
        (1.5, (2, 40))
    """
    name = "kernel_exponents"
    k = _square(kernel, "kernel", name)
    y = _targets(y, k, name)
    _checks.require_key(key, name, "it draws the subsets")
    lam, v = eigendecompose(k, y)
    lam, v = np.asarray(lam), np.asarray(v)
    n = lam.shape[0]
    if fit_range is None:
        fit_range = (max(2, n // 100), max(n // 5, 4))
    try:
        lo, hi = (operator.index(i) for i in fit_range)
    except (TypeError, ValueError):
        lo = hi = 0
    if not 1 <= lo < hi <= n:
        raise ValueError(
            f"{name}: `fit_range` must be a pair of ints (i_min, i_max) with "
            f"1 ≤ i_min < i_max ≤ {n} (the number of modes); got {fit_range!r}."
        )
    if sizes is None:
        if n < 18:
            raise ValueError(
                f"{name}: `kernel` must cover at least 18 points for the default "
                f"`sizes` (two subset sizes from 8 to N/2); got N = {n}."
            )
        sizes = np.unique(np.round(np.geomspace(max(8, n // 40), n // 2, 6)).astype(int))
    sizes = np.atleast_1d(np.asarray(sizes))
    if sizes.size and (not np.issubdtype(sizes.dtype, np.integer) or sizes.max() >= n):
        raise ValueError(
            f"{name}: `sizes` must be ints below N = {n} (the rest of the pool is "
            f"the proxies' test set); got {sizes.tolist()}."
        )
    alpha = fit_alpha(lam, lo, hi)
    beta = fit_beta(v, lo, max(n // 2, hi))
    a_proxy, b_proxy, table = exponents_from_sizes(
        k, y, sizes, key, trials=trials, n_test=n - int(sizes.max())
    )
    return KernelExponents(alpha, beta, a_proxy, b_proxy, lam, v, (lo, hi), table)


def mode_power_cv(phi, kernel, modes: int, eig=None) -> float:
    r"""Spread across random features of their power in the kernel's top eigenmodes.

    With :math:`\mu_i, u_i` the top ``modes`` eigenpairs of the pool kernel :math:`K`
    (N, N) and :math:`\phi_j` column :math:`j` of the features :math:`\Phi` (N, k) with
    :math:`\mathbb{E}[\Phi\Phi^\top] = K`, the normalised power
    :math:`q_j = (1/m) \sum_{i \le m} (u_i^\top \phi_j)^2 / \mu_i` has the
    same mean over features for any such family; this returns its
    coefficient of variation over the :math:`k` features (scale-free, so normalised
    and unnormalised features give the same value). Gaussian features
    (`kernel_feature_sampler`) have :math:`q \propto \chi^2_m` and CV :math:`\sqrt{2/m}`; a larger
    CV means features that put their power into the eigenmodes unequally,
    which the Gaussian eigenframework of Simon et al. 2024 does not model.

        >>> import jax, numpy as np
        >>> from ntk.random_features import kernel_feature_sampler, mode_power_cv
        >>> a = np.random.default_rng(0).normal(size=(30, 30))
        >>> K = a @ a.T
        >>> phi = kernel_feature_sampler(K)(jax.random.PRNGKey(0), 20000)
        >>> round(mode_power_cv(phi, K, 8) / float(np.sqrt(2 / 8)), 1)   # χ²₈/8
        1.0

    ``eig``: ``kernel_eigensystem(K)``, if already computed.
    """
    name = "mode_power_cv"
    kernel = _eig.square_numpy(kernel, "kernel", name)
    phi = _checks.as_numpy(phi, "phi", name, ndim=2, dtype=np.float64, what="(N, k)")
    if phi.shape[0] != kernel.shape[0]:
        raise ValueError(
            f"{name}: `phi` must have one row per pool point ({kernel.shape[0]}); "
            f"got shape {phi.shape}."
        )
    modes = _checks.require_int(modes, "modes", name, maximum=kernel.shape[0])
    evals, evecs = _eig.eigensystem_arg(eig, kernel, name)
    # numerical rank as numpy.linalg.matrix_rank counts it: eigenvalues below
    # N·eps·μ_max are round-off, and each mode's power is divided by its μ_i
    rank = int(np.sum(evals > evals[0] * kernel.shape[0] * np.finfo(np.float64).eps))
    if modes > rank:
        raise ValueError(
            f"{name}: `modes` must be at most the kernel's numerical rank ({rank}: "
            f"eigenvalues above N·eps·max), each mode's power is divided by its "
            f"eigenvalue; got {modes}."
        )
    mu, u = evals[:modes], evecs[:, :modes]
    q = np.mean((u.T @ phi) ** 2 / mu[:, None], axis=0)
    return float(q.std() / q.mean())
