r"""Ensembles of trained networks: average, round, check, and ensemble complexity.

An ensemble of :math:`M` independently trained infinite-width networks averages
:math:`M` i.i.d. draws of the :math:`t = \infty` GP, so for every fixed :math:`M`

.. math::

    \bar{f}_M(x) = \mu(x) + z(x) / \sqrt{M} \quad \text{in distribution}, \qquad
    z \sim \mathcal{GP}(0, \Sigma \otimes I_k).

Rounding (:math:`\hat{y}_c = \mathbf{1}[\bar{f}_c > \tau]`) is correct at :math:`(x, c)` iff
:math:`z_c(x)` does not push :math:`\mu_c(x)` across :math:`\tau`: with the margin
:math:`m_c(x) = |\mu_c(x) - \tau|` and :math:`r_c(x) = z_c(x)/m_c(x)` signed towards the
threshold, the ensemble is exact at :math:`(x, c)` iff :math:`M > \max(r_c(x), 0)^2`. One draw
of :math:`z` therefore yields the smallest ensemble size
:math:`M_{\min} = \lfloor \max r^2 \rfloor + 1` that recovers an input (max over :math:`c`) or
all inputs (max over :math:`x, c`); its CDF over draws is the probability of exact recovery as
a function of :math:`M` (exactly, for each :math:`M`), and its :math:`1 - \delta` quantile the
empirical ensemble complexity.

Per input the coordinates are independent with the same variance :math:`\sigma^2(s)`,
so the success probability is exact in closed form,

.. math::

    P_s(M) = \Phi\big(\sqrt{M}\, (\alpha - \tau) / \sigma\big)^s \cdot
    \Phi\big(\sqrt{M}\, (\tau - \beta) / \sigma\big)^{k-s},

and the union bound :math:`\sum_s \binom{k}{s} (1 - P_s(M)) \le \delta` bounds the all-input
complexity. As :math:`(\tau - \beta(2))^2/\sigma^2(2) \propto 1/k` (no biases), these give the
paper's scalings: :math:`M \propto k \log(k/\delta)` per input and
:math:`M \propto k \cdot \log(2^k k/\delta) \propto k^2` for all inputs at once.

Example:
    >>> m = per_input_complexity(16, delta=0.1)     # worst case over s
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import log_ndtr

from ntk import _checks
from ntk.permutations.gp import closed_form_mean, margins
from ntk.permutations.sampling import gp_sampler
from ntk.permutations.setting import (
    TIE,
    apply_permutation,
    binary_inputs,
    check_binary,
    check_counts,
    check_k,
    check_perm,
    check_stds,
    check_threshold,
    round_outputs,
)


def _check_delta(delta, name):
    return float(
        _checks.require_real(delta, "delta", name, low=0, high=1, low_open=True, high_open=True)
    )


def _sampler(sampler, k, W_std, b_std, name):
    """``sampler`` (a function ``(key, n) -> (n, 2^k − 1)``) or `gp_sampler`."""
    if sampler is None:
        return gp_sampler(k, W_std, b_std)
    _checks.require_callable(sampler, "sampler", name, "a function sample(key, n) or None")
    shape = tuple(jax.eval_shape(lambda key: sampler(key, 1), jax.random.PRNGKey(0)).shape)
    if shape != (1, 2**k - 1):
        raise ValueError(
            f"{name}: `sampler(key, n)` must return (n, 2^k − 1) = (n, {2**k - 1}) draws "
            f"for this permutation's k = {k}; got shape {shape} for n = 1 (a sampler "
            "made for another k?)."
        )
    return sampler


def _check_sizes(min_sizes, name):
    m = _checks.as_numpy(min_sizes, "min_sizes", name, nonempty=True)
    if m.ndim == 0:
        raise ValueError(f"{name}: `min_sizes` must have a leading axis of trials; got a scalar.")
    if np.any(m < 1):
        raise ValueError(
            f"{name}: `min_sizes` must be ensemble sizes >= 1; got {m[m < 1][:5].tolist()}."
        )
    return m


def _members(name, perm, n_members, sampler, W_std, b_std):
    """Checked arguments of the member draws: the closed-form mean μ on all
    nonzero inputs ``(2^k−1, k)``, the sampler of z, ``k`` and ``M``."""
    perm = check_perm(perm, name)
    k = perm.size
    n_members = _checks.require_int(n_members, "n_members", name)
    W_std, b_std = check_stds(W_std, b_std, name)
    sampler = _sampler(sampler, k, W_std, b_std, name)
    mean = closed_form_mean(perm, binary_inputs(k, jnp.result_type(float)), W_std, b_std)
    return mean, sampler, k, n_members


def draw_members(key, perm, n_members: int, sampler=None, W_std: float = 1.0, b_std=None):
    r""":math:`M` members of the :math:`t = \infty` ensemble on all nonzero inputs:
    ``(M, 2^k−1, k)``.

    Each member is :math:`\mu + z` with :math:`k` independent joint GP draws (one per output
    coordinate) from ``sampler`` (default `gp_sampler`).

    Example:
        >>> from ntk import permutations as perms
        >>> perms.draw_members(jax.random.PRNGKey(0), jnp.array([1, 2, 0]), 4).shape
        (4, 7, 3)
    """
    mean, sampler, k, n_members = _members("draw_members", perm, n_members, sampler, W_std, b_std)
    z = sampler(key, n_members * k).reshape(n_members, k, -1).transpose(0, 2, 1)
    return mean[None] + z


def draw_ensemble_average(key, perm, n_members: int, sampler=None, W_std: float = 1.0, b_std=None):
    r"""The average of :math:`M` members on all nonzero inputs, ``(2^k−1, k)``, drawn
    directly as :math:`\mu + z/\sqrt{M}` (equal in distribution to averaging `draw_members`,
    at the cost of one member).

    Example:
        >>> from ntk import permutations as perms
        >>> perm, x = jnp.array([1, 2, 0]), perms.binary_inputs(3)
        >>> f_bar = perms.draw_ensemble_average(jax.random.PRNGKey(0), perm, 10**6)
        >>> f_bar.shape, bool(perms.recovered(f_bar, perm, x).all())   # M → ∞: exact
        ((7, 3), True)
    """
    mean, sampler, k, n_members = _members(
        "draw_ensemble_average", perm, n_members, sampler, W_std, b_std
    )
    return mean + sampler(key, k).T / math.sqrt(n_members)


def recovered(f_bar, perm, x, threshold: float = TIE):
    r"""Per input: does rounding :math:`\bar{f}` (``(..., N, k)``) give exactly :math:`P_\pi x`?

    Returns booleans ``(..., N)``.

    Example:
        >>> from ntk import permutations as perms
        >>> perm, x = jnp.array([1, 2, 0]), perms.binary_inputs(3)
        >>> perms.recovered(perms.closed_form_mean(perm, x), perm, x).tolist()   # the GP mean
        [True, True, True, True, True, True, True]
    """
    name = "recovered"
    perm = check_perm(perm, name)
    x = check_binary(x, perm.size, "x", name)
    f_bar = _checks.as_array(f_bar, "f_bar", name)
    if f_bar.ndim < 2 or tuple(f_bar.shape[-2:]) != tuple(x.shape):
        raise ValueError(
            f"{name}: `f_bar` must have shape (..., {x.shape[0]}, "
            f"{x.shape[1]}) (outputs on the inputs x); got "
            f"{tuple(f_bar.shape)}."
        )
    return jnp.all(round_outputs(f_bar, threshold) == apply_permutation(perm, x), -1)


def min_ensemble_sizes(z, mean, target, threshold: float = TIE):
    r"""Smallest :math:`M` with :math:`\mu + z/\sqrt{M}` rounding to ``target`` (per leading
    index).

    ``z, mean, target`` broadcast to ``(..., k)``; returns ``(...)`` floats
    :math:`\lfloor \max_c r_c^2 \rfloor + 1` (module docstring). ``mean`` must lie strictly on
    the side of ``threshold`` that ``target`` asks for (checked when
    concrete): otherwise no ensemble size recovers the target.

    Example:
        >>> from ntk import permutations as perms
        >>> m = perms.min_ensemble_sizes(jnp.array([-1.0, 0.1]), jnp.array([0.5, -0.2]),
        ...                              jnp.array([1.0, 0.0]))
        >>> float(m)                     # 0.5 − 1/√M > τ needs M > 4
        5.0
    """
    name = "min_ensemble_sizes"
    threshold = check_threshold(threshold, name)
    z = _checks.as_array(z, "z", name, floating=True)
    mean = _checks.as_array(mean, "mean", name, floating=True)
    target = _checks.as_array(target, "target", name)
    try:
        np.broadcast_shapes(z.shape, mean.shape, target.shape)
    except ValueError:
        raise ValueError(
            f"{name}: `z`, `mean` and `target` must broadcast to "
            f"(..., k); got {tuple(z.shape)}, {tuple(mean.shape)} and "
            f"{tuple(target.shape)}."
        ) from None
    c_t, c_m = _checks.concrete(target), _checks.concrete(mean)
    if c_t is not None and not np.all((c_t == 0) | (c_t == 1)):
        raise ValueError(
            f"{name}: `target` must be binary (entries 0 or 1); got "
            f"{c_t[(c_t != 0) & (c_t != 1)][:5].tolist()}."
        )
    if c_t is not None and c_m is not None:
        wrong = np.where(c_t > 0.5, c_m <= threshold, c_m > threshold)
        if np.any(wrong):
            raise ValueError(
                f"{name}: `mean` must be > threshold={threshold:g} where "
                f"`target` is 1 and <= it where `target` is 0; "
                f"{int(np.sum(wrong))} entries are on the wrong side, so "
                f"no ensemble size recovers the target."
            )
    # the documented NumPy broadcasting, spelled out so it holds under strict rank promotion
    rank = max(z.ndim, mean.ndim, target.ndim)
    z, mean, target = (jax.lax.broadcast_to_rank(a, rank) for a in (z, mean, target))
    margin = jnp.where(target > 0.5, mean - threshold, threshold - mean)
    toward = jnp.where(target > 0.5, -z, z)
    r = jnp.where(toward > 0, toward / margin, 0.0)
    return jnp.floor(jnp.max(r * r, axis=-1)) + 1.0


def all_input_min_sizes(
    key,
    perm,
    n_trials: int,
    sampler=None,
    batch: int = 8,
    W_std: float = 1.0,
    b_std=None,
    threshold: float = TIE,
):
    r"""Per trial: :math:`M_{\min}` for every nonzero input ``(T, 2^k−1)``, one joint draw
    of all :math:`k` coordinate processes per trial (:math:`k \le 20`).

    Example:
        >>> from ntk import permutations as perms
        >>> m = perms.all_input_min_sizes(jax.random.PRNGKey(0), jnp.array([1, 2, 0]), 4)
        >>> m.shape, bool((m[:, [0, 1, 3]] == 1).all())   # training inputs e_i: M = 1
        ((4, 7), True)
    """
    name = "all_input_min_sizes"
    perm = check_perm(perm, name)
    k = perm.size
    n_trials = _checks.require_int(n_trials, "n_trials", name)
    batch = _checks.require_int(batch, "batch", name)
    W_std, b_std = check_stds(W_std, b_std, name)
    threshold = check_threshold(threshold, name)
    sampler = _sampler(sampler, k, W_std, b_std, name)
    x = binary_inputs(k, jnp.result_type(float))
    mean = closed_form_mean(perm, x, W_std, b_std)
    target = apply_permutation(perm, x)
    f = jax.jit(lambda z: min_ensemble_sizes(z, mean, target, threshold))
    out = []
    for i, kk in enumerate(jax.random.split(key, -(-n_trials // batch))):
        nb = min(batch, n_trials - i * batch)
        z = sampler(kk, nb * k).reshape(nb, k, -1).transpose(0, 2, 1)
        out.append(np.asarray(f(z)))
    return np.concatenate(out)


def sampled_input_min_sizes(
    key, perm, x, n_trials: int, W_std: float = 1.0, b_std=None, threshold: float = TIE
):
    r""":math:`M_{\min}` per trial for given inputs ``x`` ``(N, k)``, any :math:`k`: draws the
    :math:`k` coordinates of each input independently, :math:`\mathcal{N}(0, \sigma^2(|x|))`
    (the per input law; inputs are not joint). Returns ``(T, N)``.

    Example:
        >>> from ntk import permutations as perms
        >>> perm, x = jnp.array([1, 2, 0]), perms.binary_inputs(3)
        >>> m = perms.sampled_input_min_sizes(jax.random.PRNGKey(0), perm, x, 5)
        >>> m.shape, bool((m[:, [0, 1, 3]] == 1).all())   # training inputs e_i: M = 1
        ((5, 7), True)
    """
    name = "sampled_input_min_sizes"
    perm = check_perm(perm, name)
    x = check_binary(x, perm.size, "x", name)
    n_trials = _checks.require_int(n_trials, "n_trials", name)
    W_std, b_std = check_stds(W_std, b_std, name)
    threshold = check_threshold(threshold, name)
    mean = closed_form_mean(perm, x, W_std, b_std)
    _, _, sd = margins(perm.size, np.asarray(x.sum(-1)), W_std, b_std, threshold)
    z = (
        jax.random.normal(key, (n_trials,) + x.shape, mean.dtype)
        * jnp.asarray(sd, mean.dtype)[None, :, None]
    )
    return np.asarray(min_ensemble_sizes(z, mean, apply_permutation(perm, x), threshold))


def success_probability(
    k: int, s, n_members, W_std: float = 1.0, b_std=None, threshold: float = TIE
):
    """Exact :math:`P_s(M)`: an :math:`M`-member ensemble recovers an input with ``s`` ones.

    Example:
        >>> from ntk import permutations as perms
        >>> perms.success_probability(8, 3, [1, 10, 100]).round(3).tolist()
        [0.072, 0.265, 0.948]
        >>> float(perms.success_probability(8, 1, 1))      # a training input: always
        1.0
    """
    return np.exp(log_success_probability(k, s, n_members, W_std, b_std, threshold))


def log_success_probability(k, s, n_members, W_std=1.0, b_std=None, threshold=TIE):
    r""":math:`\log P_s(M)` (module docstring), stable far into the tails."""
    name = "success_probability"
    k = check_k(k, name)
    check_counts(name, k, s=s)
    W_std, b_std = check_stds(W_std, b_std, name)
    m = _checks.concrete(n_members)
    if m is None or m.dtype == object or not np.issubdtype(m.dtype, np.number):
        raise TypeError(
            f"{name}: `n_members` must be ensemble sizes (numbers >= 1); got {n_members!r}."
        )
    if not np.all(np.isfinite(m) & (m >= 1)):
        raise ValueError(
            f"{name}: `n_members` must be ensemble sizes >= 1; got "
            f"{np.asarray(m)[~(np.isfinite(m) & (m >= 1))].ravel()[:5].tolist()}."
        )
    s = np.asarray(s, np.float64)
    m1, m0, sd = margins(k, s, W_std, b_std, threshold)
    root = np.sqrt(np.asarray(n_members, np.float64))
    safe = np.where(sd > 0, sd, 1.0)
    on = np.where(sd > 0, log_ndtr(root * m1 / safe), 0.0)
    off = np.where(sd > 0, log_ndtr(root * m0 / safe), 0.0)
    return s * on + (k - s) * off


def _smallest_m(ok, start: int = 1):
    """Smallest integer ``M >= start`` with ``ok(M)`` (``ok`` monotone)."""
    hi = start
    while not ok(hi):
        hi *= 2
    lo = max(start, hi // 2)
    if ok(lo):
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def per_input_complexity(
    k: int, delta: float = 0.1, s=None, W_std: float = 1.0, b_std=None, threshold: float = TIE
):
    r"""Smallest :math:`M` with :math:`P_s(M) \ge 1 - \delta` — exact. ``s`` None: the worst
    case over :math:`s = 1 \ldots k` (an int); otherwise one value per ``s``.

    Example:
        >>> from ntk import permutations as perms
        >>> perms.per_input_complexity(8, delta=0.1, s=[1, 2, 3]).tolist()
        [1, 284, 79]
        >>> perms.per_input_complexity(8, delta=0.1)          # worst case: s = 2
        284
    """
    name = "per_input_complexity"
    delta = _check_delta(delta, name)
    k = check_k(k, name)
    check_counts(name, k, s=s if s is not None else 1)
    W_std, b_std = check_stds(W_std, b_std, name)
    ss = np.arange(1, k + 1) if s is None else np.atleast_1d(s)
    ms = np.array(
        [
            _smallest_m(
                lambda m, si=si: (
                    log_success_probability(k, si, m, W_std, b_std, threshold) >= math.log1p(-delta)
                )
            )
            for si in ss
        ]
    )
    return int(ms.max()) if s is None else ms


def union_bound_complexity(
    k: int, delta: float = 0.1, W_std: float = 1.0, b_std=None, threshold: float = TIE
):
    r"""Smallest :math:`M` with :math:`\sum_s \binom{k}{s} (1 - P_s(M)) \le \delta`: an upper
    bound on the ensemble size that recovers all :math:`2^k - 1` inputs with probability
    :math:`1 - \delta`.

    Example:
        >>> from ntk import permutations as perms
        >>> perms.union_bound_complexity(8, delta=0.1)     # ≥ per_input_complexity(8) = 284
        670
    """
    name = "union_bound_complexity"
    delta = _check_delta(delta, name)
    k = check_k(k, name)
    W_std, b_std = check_stds(W_std, b_std, name)
    ss = np.arange(1, k + 1)
    log_binom = np.array(
        [math.lgamma(k + 1) - math.lgamma(s + 1) - math.lgamma(k - s + 1) for s in ss]
    )

    def ok(m):
        lp = log_success_probability(k, ss, m, W_std, b_std, threshold)
        fail = -np.expm1(lp)
        return float(np.sum(np.exp(log_binom) * fail)) <= delta

    return _smallest_m(ok)


def empirical_complexity(min_sizes, delta: float = 0.1):
    r""":math:`1 - \delta` quantile of :math:`M_{\min}` over trials (axis 0): the smallest
    :math:`M` whose empirical recovery probability is :math:`\ge 1 - \delta`.

    Example:
        >>> from ntk import permutations as perms
        >>> int(perms.empirical_complexity(np.arange(1, 11), delta=0.1))   # 9 of 10 trials
        9
    """
    delta = _check_delta(delta, "empirical_complexity")
    m = np.sort(_check_sizes(min_sizes, "empirical_complexity"), axis=0)
    idx = int(math.ceil((1 - delta) * m.shape[0])) - 1
    return m[max(idx, 0)]


def recovery_curve(min_sizes, ensemble_sizes):
    r"""Empirical probability of exact recovery :math:`P(M_{\min} \le M)` for each :math:`M`.

    Example:
        >>> from ntk import permutations as perms
        >>> perms.recovery_curve(np.array([1, 2, 2, 5]), [1, 2, 4, 8]).tolist()
        [0.25, 0.75, 0.75, 1.0]
    """
    m = _check_sizes(min_sizes, "recovery_curve")
    sizes = _checks.as_numpy(
        ensemble_sizes, "ensemble_sizes", "recovery_curve", ndim=1, what="(E,)"
    )
    return np.array([(m <= e).mean(0) for e in sizes])
