r"""The eigenframework: closed-form test and train risk of KRR and RF regression.

Source: Simon, Karkada, Ghosh & Belkin, "More is Better in Modern Machine
Learning" (ICLR 2024), Sec. 3 (KRR, the "omniscient risk estimate" of
Simon et al. 2021 / Bordelon et al. 2020) and Sec. 4 (random features).

A task is described by the kernel's eigenvalues :math:`\lambda_i` (w.r.t. the data
measure, :math:`K(x, x') = \sum \lambda_i \phi_i(x) \phi_i(x')`) and the target's coefficients
:math:`v_i` in that eigenbasis (:math:`f^*(x) = \sum v_i \phi_i(x)`) plus label noise of
variance :math:`\sigma^2`. Training uses :math:`n` samples and ridge :math:`\delta` on the kernel
matrix (:math:`\hat{f} = K(x, X)(K(X, X) + \delta I)^{-1} y`).

KRR (paper Sec. 3):

.. math::

    \sum_i \frac{\lambda_i}{\lambda_i + \kappa} + \frac{\delta}{\kappa} = n, \qquad
    \mathcal{L}_i = \frac{\lambda_i}{\lambda_i + \kappa}, \qquad
    \mathcal{E}_0 = \frac{n}{n - \sum_i \mathcal{L}_i^2},

    E_{te} = \mathcal{E}_0 \Big(\sum_i (1 - \mathcal{L}_i)^2 v_i^2 + \sigma^2\Big), \qquad
    E_{tr} = \Big(\frac{\delta}{n\kappa}\Big)^2 E_{te}.

RF regression with :math:`k` features, i.e. KRR with the rank-:math:`k` Monte Carlo kernel
:math:`\hat{K} = (1/k) \sum_j g_j g_j^\top` (paper Sec. 4):

.. math::

    n = \sum_i \mathcal{L}_i + \frac{\delta}{\kappa}, \qquad
    k = \sum_i \mathcal{L}_i + \frac{k\kappa}{\gamma}, \qquad
    \mathcal{L}_i = \frac{\lambda_i}{\lambda_i + \gamma},

    z = \sum_i \mathcal{L}_i, \quad q = \sum_i \mathcal{L}_i^2, \quad
    x = \frac{q(k - 2z) + z^2}{n(k - q)}, \quad \mathcal{E}_0 = \frac{1}{1 - x},

    E_{te} = \mathcal{E}_0 \Big(\sum_i \Big[(1 - \mathcal{L}_i)
    - \frac{k}{k - q} \frac{\kappa \mathcal{L}_i}{\lambda_i + \gamma}\Big] v_i^2 + \sigma^2\Big),
    \qquad E_{tr} = \Big(\frac{\delta}{n\kappa}\Big)^2 E_{te}.

As :math:`k \to \infty`, :math:`k\kappa/\gamma \to k - z` forces :math:`\gamma \to \kappa` and
every RF quantity tends to its KRR counterpart; ``k = jnp.inf`` is accepted and gives KRR
exactly.

Solving. Eliminating :math:`\kappa = \gamma(1 - z(\gamma)/k)` leaves one equation in
:math:`\gamma`,

.. math::

    F(\gamma) = z(\gamma) + \delta k / \big(\gamma (k - z(\gamma))\big) - n = 0,

whose left side decreases monotonically on :math:`\{\gamma : z(\gamma) < k\}` (and is
:math:`+\infty` at its lower end). We bracket :math:`\log \gamma` between
:math:`\min(\log(\delta/(2n)), \log\lambda_{\min} - 40)` (only the second when :math:`\delta = 0`;
far below the smallest positive eigenvalue every :math:`\mathcal{L}_i` rounds to 1) and
:math:`\log(\max(2\sum\lambda/\min(n,k), 4\delta/n)) + 1` and bisect on the sign of :math:`F` —
robust for eigenvalues spanning any number of decades. Ridgeless cases whose root sits at the
boundary (:math:`\delta = 0` with :math:`n \ge k`, or :math:`n \ge` the number of nonzero
eigenvalues) converge to the correct limit. The bisection output is then passed through one
"zero Newton step"
:math:`u - (F(u; \theta) - \operatorname{sg} F(u; \theta))/\operatorname{sg} \partial_u F`
whose value is :math:`u` and whose derivative is the implicit-function-theorem derivative
:math:`-\partial_\theta F/\partial_u F`, so everything is differentiable in
:math:`\lambda, v, n, k, \delta` and :math:`\sigma^2`, and jit/vmap-able.

    >>> import jax.numpy as jnp
    >>> from ntk.random_features import krr_risk, rf_risk
    >>> lam = jnp.arange(1, 1001.) ** -1.5
    >>> few = rf_risk(lam, jnp.sqrt(lam), n=256, k=128, ridge=1e-3, noise_var=0.5)
    >>> many = rf_risk(lam, jnp.sqrt(lam), n=256, k=10**7, ridge=1e-3, noise_var=0.5)
    >>> limit = krr_risk(lam, jnp.sqrt(lam), n=256, ridge=1e-3, noise_var=0.5)
    >>> bool(jnp.isclose(many.test_mse, limit.test_mse, rtol=1e-4))   # k → ∞ is KRR
    True
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk import _checks

__all__ = [
    "KRRTheory",
    "RFTheory",
    "krr_kappa",
    "krr_risk",
    "rf_kappa_gamma",
    "rf_risk",
    "learnabilities",
    "FittingCurve",
    "krr_fitting_curve",
    "optimal_fitting_ratio",
]

_BISECTION_STEPS = 96


class KRRTheory(NamedTuple):
    r"""Eigenframework predictions for KRR (paper Sec. 3).

    kappa: effective regularisation :math:`\kappa`; e0: overfitting coefficient
    :math:`\mathcal{E}_0`; test_mse / train_mse: predicted :math:`E_{te}` / :math:`E_{tr}` (noisy
    labels, summed over outputs); learnability:
    :math:`\sum_i \mathcal{L}_i v_i^2 / \sum_i v_i^2` (the fraction of the target's power
    learned).

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import krr_risk
        >>> lam = jnp.arange(1, 2001.) ** -1.5
        >>> th = krr_risk(lam, lam ** 0.5, n=256, ridge=1e-3)          # a KRRTheory
        >>> bool(jnp.isclose(th.train_mse, (1e-3 / (256 * th.kappa)) ** 2 * th.test_mse))
        True
        >>> bool(0 < th.learnability < 1 < th.e0)
        True
    """

    kappa: jnp.ndarray
    e0: jnp.ndarray
    test_mse: jnp.ndarray
    train_mse: jnp.ndarray
    learnability: jnp.ndarray


class RFTheory(NamedTuple):
    r"""Eigenframework predictions for RF regression (paper Sec. 4).

    kappa, gamma: the two effective regularisations (:math:`\gamma \ge \kappa`, equal as
    :math:`k \to \infty`); e0: :math:`\mathcal{E}_0 = 1/(1 - x)`; test_mse / train_mse:
    :math:`E_{te}` / :math:`E_{tr}`; :math:`z = \sum \mathcal{L}_i` and
    :math:`q = \sum \mathcal{L}_i^2` with :math:`\mathcal{L}_i = \lambda_i/(\lambda_i + \gamma)`.

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import rf_risk
        >>> lam = jnp.arange(1, 2001.) ** -1.5
        >>> th = rf_risk(lam, lam ** 0.5, n=256, k=128, ridge=1e-3)     # an RFTheory
        >>> bool(th.gamma > th.kappa), bool(th.q < th.z < 128)          # z < k always
        (True, True)
    """

    kappa: jnp.ndarray
    gamma: jnp.ndarray
    e0: jnp.ndarray
    test_mse: jnp.ndarray
    train_mse: jnp.ndarray
    z: jnp.ndarray
    q: jnp.ndarray


def _check_spectrum(eigvals, name):
    if not hasattr(eigvals, "shape") and not isinstance(eigvals, (list, tuple)):
        raise TypeError(
            f"{name}: `eigvals` must be an array of shape (M,); got {type(eigvals).__name__}."
        )
    lam = _checks.as_array(eigvals, "eigvals", name, floating=True)
    if lam.ndim != 1 or lam.shape[0] == 0:
        raise ValueError(
            f"{name}: `eigvals` must have shape (M,) with M ≥ 1; got shape {lam.shape}."
        )
    c = _checks.concrete(lam)
    if c is not None and np.any(c < 0):
        raise ValueError(
            f"{name}: `eigvals` must be >= 0 (a kernel spectrum); got {c[c < 0][:5].tolist()}."
        )
    return lam


def _target_power(coeffs, m, name):
    """``Σ_t v_{i,t}²`` of shape (M,) from v of shape (M,) or (M, T)."""
    v = _checks.as_array(coeffs, "target_coeffs", name)
    if v.ndim not in (1, 2) or v.shape[0] != m:
        raise ValueError(
            f"{name}: `target_coeffs` must have shape (M,) or (M, T) with "
            f"M = {m} (the number of eigenvalues); got shape {v.shape}."
        )
    v2 = v**2
    return v2 if v2.ndim == 1 else v2.sum(axis=1)


def learnabilities(eigvals, gamma):
    r""":math:`\mathcal{L}_i = \lambda_i/(\lambda_i + \gamma)` (:math:`\lambda_i \ge 0`,
    :math:`\gamma > 0`), shape (M,).

    >>> import jax.numpy as jnp
    >>> from ntk.random_features import learnabilities
    >>> learnabilities(jnp.array([3.0, 1.0, 0.0]), 1.0).tolist()
    [0.75, 0.5, 0.0]
    """
    lam = _check_spectrum(eigvals, "learnabilities")
    _checks.require_positive(_scalar(gamma, "learnabilities", "gamma"), "gamma", "learnabilities")
    return lam / (lam + gamma)


def _f_terms(u, lam, n, inv_k, ridge):
    """``(F(e^u), 1 − z/k)`` with F = z + δ/(e^u (1 − z/k)) − n, finite also
    outside its domain z < k (there the slack is ≤ 0), so the unselected branch
    of a ``where`` has finite derivatives."""
    gamma = jnp.exp(u)
    z = jnp.sum(lam / (lam + gamma))
    slack = 1.0 - z * inv_k  # κ/γ
    return z + ridge / (gamma * jnp.where(slack > 0, slack, 1.0)) - n, slack


def _f(u, lam, n, inv_k, ridge):
    """F(e^u); +inf where z ≥ k (outside the domain), for the bisection's sign."""
    val, slack = _f_terms(u, lam, n, inv_k, ridge)
    return jnp.where(slack > 0, val, jnp.inf)


def _g(u, lam, n, inv_k, ridge):
    """G(e^u) = z/k + δ/(e^u (n − z)) − 1: the k-equation with κ = δ/(n − z) from
    the n-equation (κ eliminated the other way than in `_f`); well conditioned
    where z is close to k (the ridgeless limit with k < n: z = k)."""
    gamma = jnp.exp(u)
    z = jnp.sum(lam / (lam + gamma))
    room = n - z
    return z * inv_k + ridge / (gamma * jnp.where(room > 0, room, 1.0)) - 1.0


@jax.custom_jvp
def _solve_log_gamma(lam, n, inv_k, ridge):
    """u = log γ solving F = 0 (`_f`), by bisection on the sign of F; its
    derivatives (of any order) by implicit differentiation (custom JVP)."""
    dtype = lam.dtype
    tiny = jnp.finfo(dtype).tiny
    total = jnp.sum(lam)
    pos_min = jnp.min(jnp.where(lam > 0, lam, jnp.inf))
    pos_min = jnp.where(jnp.isfinite(pos_min), pos_min, 1.0)
    m_eff = jnp.minimum(n, jnp.where(inv_k > 0, 1.0 / jnp.where(inv_k > 0, inv_k, 1.0), n))
    hi = jnp.log(jnp.maximum(jnp.maximum(2 * total / m_eff, 4 * ridge / n), tiny)) + 1.0
    # Far below the smallest eigenvalue every L_i rounds to 1: the ridgeless limit.
    lo_lam = jnp.log(pos_min) - 40.0
    lo_ridge = jnp.log(jnp.maximum(ridge / (2 * n), tiny))
    lo = jnp.where(ridge > 0, jnp.minimum(lo_ridge, lo_lam), lo_lam)
    lo = jnp.minimum(lo, hi - 1.0)

    def step(_, bracket):
        a, b = bracket
        mid = 0.5 * (a + b)
        positive = _f(mid, lam, n, inv_k, ridge) > 0
        return jnp.where(positive, mid, a), jnp.where(positive, b, mid)

    a, b = jax.lax.fori_loop(0, _BISECTION_STEPS, step, (lo, hi))
    return 0.5 * (a + b)


@_solve_log_gamma.defjvp
def _solve_log_gamma_jvp(primals, tangents):
    # du = −∂_θH dθ / ∂_uH for H = F or G, whichever is well conditioned at the
    # root (as in `_kappa_from`): F divides by the k-slack 1 − z/k, G by the
    # n-slack 1 − z/n. At δ = 0 and k < n the root is z = k, where F ≠ 0 (its
    # sign change is the edge of its domain) but G = 0. The root is recomputed
    # through this function, so second derivatives are exact too.
    lam, n, inv_k, ridge = primals
    u = _solve_log_gamma(lam, n, inv_k, ridge)
    z = jnp.sum(lam / (lam + jnp.exp(u)))
    use_f = (1.0 - z * inv_k) >= (n - z) / n

    def h(u, *theta):
        return jnp.where(use_f, _f_terms(u, *theta)[0], _g(u, *theta))

    dh_du = jax.jvp(lambda u: h(u, *primals), (u,), (jnp.ones_like(u),))[1]
    dh = jax.jvp(lambda *theta: h(u, *theta), primals, tangents)[1]
    ok = jnp.isfinite(dh_du) & (dh_du != 0)
    return u, jnp.where(ok, -dh / jnp.where(ok, dh_du, 1.0), 0.0)


def _scalar(x, name, arg):
    x = _checks.as_array(x, arg, name, finite=False)
    if x.ndim != 0:
        raise ValueError(f"{name}: `{arg}` must be a scalar (vmap for grids); got shape {x.shape}.")
    return x


def _prep(eigvals, n, k, ridge, name):
    lam = _check_spectrum(eigvals, name)
    n = _checks.require_positive(_scalar(n, name, "n"), "n", name).astype(lam.dtype)
    ridge = _checks.require_nonnegative(_scalar(ridge, name, "ridge"), "ridge", name).astype(
        lam.dtype
    )
    inv_k = None
    if k is not None:
        k = _checks.require_positive(_scalar(k, name, "k"), "k", name, allow_inf=True).astype(
            lam.dtype
        )
        inv_k = 1.0 / k  # k = inf → 0 (the KRR limit)
    return lam, n, inv_k, ridge


def _noise(noise_var, name, dtype):
    return _checks.require_nonnegative(
        _scalar(noise_var, name, "noise_var"), "noise_var", name
    ).astype(dtype)


def rf_kappa_gamma(eigvals, n, k, ridge):
    r"""Solve the RF eigenframework's two equations for :math:`(\kappa, \gamma)` (paper Sec. 4).

    :math:`n = \sum \mathcal{L}_i + \delta/\kappa` and
    :math:`k = \sum \mathcal{L}_i + k\kappa/\gamma` with
    :math:`\mathcal{L}_i = \lambda_i/(\lambda_i + \gamma)`.
    Args: eigvals (M,); scalars n, k (``jnp.inf`` allowed), ridge :math:`\delta \ge 0`.
    Returns ``(kappa, gamma)`` scalars.

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import rf_kappa_gamma
        >>> lam = jnp.arange(1, 2001.) ** -1.5
        >>> kappa, gamma = rf_kappa_gamma(lam, 256, 128, 1e-3)
        >>> z = jnp.sum(lam / (lam + gamma))
        >>> round(float(z + 1e-3 / kappa), 4), round(float(z + 128 * kappa / gamma), 4)   # n, k
        (256.0, 128.0)
    """
    lam, n, inv_k, ridge = _prep(eigvals, n, k, ridge, "rf_kappa_gamma")
    th = _rf_core(lam, jnp.zeros_like(lam), n, inv_k, ridge, jnp.zeros((), lam.dtype))
    return th.kappa, th.gamma


def krr_kappa(eigvals, n, ridge):
    r""":math:`\kappa` solving :math:`\sum_i \lambda_i/(\lambda_i + \kappa) + \delta/\kappa = n`
    (paper Sec. 3); scalar.

    >>> import jax.numpy as jnp
    >>> from ntk.random_features import krr_kappa
    >>> lam = jnp.arange(1, 2001.) ** -1.5
    >>> kappa = krr_kappa(lam, 256, 1e-3)
    >>> round(float(jnp.sum(lam / (lam + kappa)) + 1e-3 / kappa), 4)   # = n
    256.0
    """
    lam, n, _, ridge = _prep(eigvals, n, None, ridge, "krr_kappa")
    return _krr_core(lam, jnp.zeros_like(lam), n, ridge, jnp.zeros((), lam.dtype)).kappa


def rf_risk(eigvals, target_coeffs, n, k, ridge, noise_var=0.0) -> RFTheory:
    r"""Predicted test and train MSE of RF ridge regression (paper Sec. 4).

    Args:
      eigvals: (M,) kernel eigenvalues :math:`\lambda_i \ge 0` (any order).
      target_coeffs: (M,) or (M, T) eigencoefficients :math:`v_i` of the target.
      n: number of training samples (:math:`> 0`); k: number of random features
        (:math:`> 0`; ``jnp.inf`` gives KRR); ridge: :math:`\delta \ge 0`; noise_var:
        :math:`\sigma^2 \ge 0` of the labels.
    All scalars may be traced (vmap over grids, grad in any of them); their
    ranges are checked when they are concrete.

    Returns: `RFTheory`. MSEs are on noisy labels and summed over outputs.

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import rf_risk
        >>> lam = jnp.arange(1, 2001.) ** -1.5
        >>> out = rf_risk(lam, lam ** 0.5, 256, 256, 1e-2, 0.5)
        >>> bool(out.test_mse > 0.5 > out.train_mse)    # noisy labels: test above σ²
        True
    """
    lam, n, inv_k, ridge = _prep(eigvals, n, k, ridge, "rf_risk")
    v2 = _target_power(target_coeffs, lam.shape[0], "rf_risk")
    noise_var = _noise(noise_var, "rf_risk", lam.dtype)
    return _rf_core(lam, v2, n, inv_k, ridge, noise_var)


def _kappa_from(gamma, z, n, inv_k, ridge):
    """κ from whichever equation is well conditioned at the solution.

    κ = δ/(n − z) (from the n-equation) or κ = γ(1 − z/k) (from the
    k-equation); near the ridgeless limit one of n − z, k − z is a small
    difference, so take the other.
    """
    slack_n = (n - z) / n
    slack_k = 1.0 - z * inv_k
    use_n = (ridge > 0) & (slack_n > slack_k)
    return jnp.where(use_n, ridge / jnp.where(use_n, n - z, 1.0), gamma * slack_k)


@jax.jit
def _rf_core(lam, v2, n, inv_k, ridge, noise_var):
    gamma = jnp.exp(_solve_log_gamma(lam, n, inv_k, ridge))
    L = lam / (lam + gamma)
    z, q = jnp.sum(L), jnp.sum(L**2)
    kappa = _kappa_from(gamma, z, n, inv_k, ridge)
    # x = [q(k − 2z) + z²]/[n(k − q)], written with 1/k so that k = ∞ is exact.
    x = (q * (1.0 - 2.0 * z * inv_k) + z**2 * inv_k) / (n * (1.0 - q * inv_k))
    e0 = 1.0 / (1.0 - x)
    bias = (1.0 - L) - kappa * L / (lam + gamma) / (1.0 - q * inv_k)
    # Its two terms cancel where the target is learnt: a round-off below 0.
    test = e0 * (jnp.maximum(jnp.sum(bias * v2), 0.0) + noise_var)
    train = _train_factor(n, z, kappa, ridge) * test
    return RFTheory(kappa, gamma, e0, test, train, z, q)


def _train_factor(n, z, kappa, ridge):
    """``E_tr/E_te = (δ/(nκ))²``; the n-equation makes it ``((n − z)/n)²``, finite
    as δ and κ vanish together (δ = 0), but n − z cancels where z ≈ n (a small
    ridge: in float32 the ratio would stop at eps² instead of falling as δ²)."""
    positive = (ridge > 0) & (kappa > 0)
    ratio = jnp.where(positive, ridge / (n * jnp.where(positive, kappa, 1.0)), (n - z) / n)
    return ratio**2


def krr_risk(eigvals, target_coeffs, n, ridge, noise_var=0.0) -> KRRTheory:
    """Predicted test and train MSE of kernel ridge regression (paper Sec. 3).

    Args as `rf_risk` without :math:`k`. Returns `KRRTheory`.

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import krr_risk
        >>> lam = jnp.arange(1, 2001.) ** -1.5
        >>> out = krr_risk(lam, lam ** 0.5, n=256, ridge=0.0, noise_var=0.5)
        >>> round(float(out.train_mse), 6), bool(out.test_mse > 0.5)   # interpolation
        (0.0, True)
    """
    lam, n, _, ridge = _prep(eigvals, n, None, ridge, "krr_risk")
    v2 = _target_power(target_coeffs, lam.shape[0], "krr_risk")
    noise_var = _noise(noise_var, "krr_risk", lam.dtype)
    return _krr_core(lam, v2, n, ridge, noise_var)


@jax.jit
def _krr_core(lam, v2, n, ridge, noise_var):
    kappa = jnp.exp(_solve_log_gamma(lam, n, jnp.zeros((), lam.dtype), ridge))
    L = lam / (lam + kappa)
    z, q = jnp.sum(L), jnp.sum(L**2)
    e0 = n / (n - q)
    test = e0 * (jnp.sum((1.0 - L) ** 2 * v2) + noise_var)
    train = _train_factor(n, z, kappa, ridge) * test
    learn = jnp.sum(L * v2) / jnp.maximum(jnp.sum(v2), jnp.finfo(lam.dtype).tiny)
    return KRRTheory(kappa, e0, test, train, learn)


class FittingCurve(NamedTuple):
    r"""KRR theory along a grid of ridges (`krr_fitting_curve`), each field (R,).

    fitting_ratio: :math:`E_{tr}/E_{te}`; best: the index of the smallest predicted test
    MSE, whose ridge and ratio are `optimal_ridge` and `optimal_ratio`.

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import FittingCurve
        >>> curve = FittingCurve(ridges=jnp.array([0.0, 0.1, 1.0]),
        ...                      test_mse=jnp.array([0.5, 0.3, 0.4]),
        ...                      train_mse=jnp.array([0.0, 0.06, 0.2]),
        ...                      fitting_ratio=jnp.array([0.0, 0.2, 0.5]), best=1)
        >>> # as krr_fitting_curve returns it
        >>> round(curve.optimal_ridge, 6), round(curve.optimal_ratio, 6)
        (0.1, 0.2)
    """

    ridges: jnp.ndarray
    test_mse: jnp.ndarray
    train_mse: jnp.ndarray
    fitting_ratio: jnp.ndarray
    best: int

    @property
    def optimal_ridge(self) -> float:
        """The grid's ridge of least predicted test MSE."""
        return float(self.ridges[self.best])

    @property
    def optimal_ratio(self) -> float:
        """The fitting ratio :math:`E_{tr}/E_{te}` at `optimal_ridge`."""
        return float(self.fitting_ratio[self.best])


def krr_fitting_curve(eigvals, target_coeffs, n, ridges, noise_var=0.0) -> FittingCurve:
    r"""Predicted test MSE and fitting ratio :math:`E_{tr}/E_{te}` of KRR along a grid of ridges.

    At each ridge :math:`\delta` of ``ridges`` `krr_risk` gives :math:`E_{te}` and
    :math:`E_{tr}`; their ratio (paper Sec. 3, 6)

    .. math::

        E_{tr}/E_{te} = \big(\delta/(n\kappa)\big)^2
        = \Big(\big(n - \sum_i \mathcal{L}_i\big)/n\Big)^2,
        \qquad \mathcal{L}_i = \lambda_i/(\lambda_i + \kappa),

    runs from 0 (:math:`\delta = 0` with :math:`n` below the number of modes: interpolation) to 1
    (:math:`\delta \to \infty`). At a given :math:`\delta` it depends only on the spectrum and
    :math:`n`; the target and the noise decide where along the curve the test MSE is least.
    Simon et al. 2024 (Sec. 6) trace test MSE against this ratio as :math:`\delta` varies: for
    power-law tasks the minimum sits near ratio 0 ("obligatory overfitting"),
    and it moves up with the label noise. Host-level (the optimum is a
    Python index, so not under ``jit``); each ridge's theory is `krr_risk`.

    Args:
      eigvals: ``(M,)`` kernel eigenvalues :math:`\lambda \ge 0`; target_coeffs: ``(M,)`` or
        ``(M, T)`` target coefficients :math:`v`.
      n: training samples (:math:`> 0`); ridges: ``(R,)`` ridges :math:`\delta \ge 0` (on the
        scale of the kernel matrix, as in `krr_risk`); noise_var: label noise
        :math:`\sigma^2 \ge 0`.

    Returns:
      `FittingCurve`: :math:`E_{te}`, :math:`E_{tr}` and :math:`E_{tr}/E_{te}` per ridge and the
      index of the least :math:`E_{te}` (ties: the first).

        >>> import jax.numpy as jnp
        >>> from ntk.random_features import krr_fitting_curve
        >>> lam = jnp.arange(1, 2001.) ** -1.5
        >>> curve = krr_fitting_curve(lam, lam ** 0.5, 256, jnp.logspace(-6, 1, 15))
        >>> bool(curve.fitting_ratio[0] < 0.01 < 0.5 < curve.fitting_ratio[-1] < 1)
        True
    """
    name = "krr_fitting_curve"
    ridges = _checks.as_array(ridges, "ridges", name, ndim=1, what="(R,)", nonempty=True)
    c = _checks.concrete(ridges)
    if c is not None and np.any(c < 0):
        raise ValueError(f"{name}: `ridges` must be >= 0; got {c[c < 0][:5].tolist()}.")
    th = jax.vmap(lambda r: krr_risk(eigvals, target_coeffs, n, r, noise_var))(ridges)
    ratio = th.train_mse / th.test_mse
    return FittingCurve(ridges, th.test_mse, th.train_mse, ratio, int(jnp.argmin(th.test_mse)))


def optimal_fitting_ratio(alpha, beta, n, noise_var, modes: int = 20000):
    r"""KRR theory at the optimal ridge of a power-law task: :math:`(E_{tr}/E_{te}, \delta^*)`.

    The task is :math:`\lambda_i = i^{-\alpha}`, :math:`v_i^2 \propto i^{-\beta}` normalised to
    :math:`\sum v_i^2 = 1`, :math:`i = 1 \ldots \mathtt{modes}`, with label noise ``noise_var``;
    the ridge is chosen on the grid
    :math:`\{0\} \cup \operatorname{logspace}(-8, 2, 121) \cdot \sum\lambda` by the theory's test
    MSE (`krr_fitting_curve`). The fitting ratio :math:`E_{tr}/E_{te}` at that optimum is the
    paper's "obligatory overfitting" measure (Simon et al. 2024, Sec. 6): near 0
    for noise-free power laws (the optimal ridge interpolates). Computed in
    float32, as the paper's figures are.

    Returns:
      ``(ratio, ridge)``: floats.

        >>> optimal_fitting_ratio(1.5, 1.5, n=256, noise_var=0.0)[0] < 1e-3
        True
    """
    name = "optimal_fitting_ratio"
    _checks.require_positive(alpha, "alpha", name)
    _checks.require_positive(beta, "beta", name)
    _checks.require_positive(n, "n", name)
    _checks.require_nonnegative(noise_var, "noise_var", name)
    modes = _checks.require_int(modes, "modes", name, minimum=2)
    i = jnp.arange(1, modes + 1, dtype=jnp.float32)
    lam = i**-alpha
    v = jnp.sqrt(i**-beta / jnp.sum(i**-beta))
    ridges = jnp.concatenate([jnp.zeros(1), jnp.logspace(-8, 2, 121)]) * jnp.sum(lam)
    curve = krr_fitting_curve(lam, v, n, ridges, noise_var)
    return curve.optimal_ratio, curve.optimal_ridge
