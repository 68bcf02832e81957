r"""The deep kernel machine objective and the linear algebra it needs.

Yang et al. 2023 ("A theory of representation learning gives a deep
generalisation of kernel methods", ICML), eq. 14 / §4: in the Bayesian
representation-learning limit the posterior Gram matrices of a deep Gaussian
process maximise

.. math::

    L(G_1, \dots, G_L) = \log P(Y \mid G_L)
    - \sum_l \nu_l\, \mathrm{KL}\big(\mathcal{N}(0, G_l) \,\big\|\, \mathcal{N}(0, K(G_{l-1}))\big),
    \qquad G_0 = X X^\top / N_0,

with, for a Gaussian likelihood,
:math:`\log P(Y \mid G_L) = \sum_c \log \mathcal{N}(y_c; 0, K(G_L) + \sigma^2 I)` over the
output channels :math:`c` (columns of :math:`Y`) and, for :math:`P \times P` matrices,

.. math::

    \mathrm{KL}\big(\mathcal{N}(0, G) \,\big\|\, \mathcal{N}(0, K)\big)
    = \tfrac{1}{2} \big[\operatorname{tr}(K^{-1} G) - P + \log|K| - \log|G|\big].

:math:`\nu_l = N_l / N` is the width of layer :math:`l` relative to the output;
:math:`\nu \to \infty` pins :math:`G_l = K(G_{l-1})` (the NNGP), :math:`\nu \to 0` leaves
only the likelihood.

Jitter. Every kernel matrix is used as :math:`\tilde{K} = K + j I` with the explicit,
relative jitter :math:`j = \mathtt{jitter} \cdot \operatorname{mean}(\operatorname{diag} K)`
(``add_jitter`` of ``ntk._linalg``), the library's one convention: a regulariser of a
kernel matrix is relative to its mean diagonal unless its ``*_absolute_scale`` flag is
set (``diag_reg`` in `ntk.predict`; here there is no flag). The same :math:`j` is added
to the diagonal of test points. The objective is that of :math:`\tilde{K}`.

Parametrisation used by `ntk.dkm.full` and `ntk.dkm.sparse` ("whitened"):
:math:`G_l = L_l A_l A_l^\top L_l^\top` with
:math:`L_l = \operatorname{chol}(\tilde{K}(G_{l-1}))` and :math:`A_l` lower triangular with
a positive (exp-parametrised) diagonal. Then :math:`G_l` is positive definite for every
parameter value, :math:`A_l = I` is the NNGP, and the KL term needs no solve:
:math:`\mathrm{KL} = \tfrac{1}{2} \big[\lVert A_l \rVert_F^2 - P
- 2 \sum \log \operatorname{diag} A_l\big]`
(``whitened_kl``). `FullDKM.fit` optimises in Cholesky coordinates
:math:`G_l = C_l C_l^\top` (``cholesky_kl``).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ntk import _checks
from ntk._linalg import add_jitter, check_factor, cholesky_fast_vjp, dot
from ntk.dkm.kernels import GramKernel

Array = jax.Array
LOG_2PI = math.log(2 * math.pi)


def input_gram(X: Array) -> Array:
    r""":math:`G_0 = X X^\top / N_0` for inputs ``X (P, N_0)``.

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> dkm.input_gram(np.array([[1.0, 0.0], [1.0, 1.0]])).tolist()
      [[0.5, 0.5], [0.5, 1.0]]
    """
    X = _checks.as_array(X, "X", "input_gram", ndim=2, what="(P, N_0)")
    if X.shape[1] == 0:
        raise ValueError(
            f"input_gram: `X` must have at least one feature "
            f"(N_0 >= 1); got shape {tuple(X.shape)}."
        )
    return dot(X, X.T) / X.shape[1]


@jax.custom_vjp
def gram(F: Array) -> Array:
    r""":math:`F F^\top`. Its reverse-mode derivative :math:`(\bar{G} + \bar{G}^\top) F` is
    one product, where differentiating the generic product would take two."""
    return dot(F, F.T)


def _gram_fwd(F):
    return dot(F, F.T), F


def _gram_bwd(F, G_bar):
    return (dot(G_bar + G_bar.T, F),)


gram.defvjp(_gram_fwd, _gram_bwd)


def cholesky(A: Array, arg: str = "K", name: str = "dkm") -> Array:
    """Lower Cholesky factor of a symmetric (already jittered) ``A``, with
    Murray's reverse-mode derivative (`ntk._linalg.cholesky_fast_vjp`, the
    bulk of a DKM gradient); a clear error if ``A`` is concrete and not PD."""
    return check_factor(cholesky_fast_vjp(A), A, where=name, arg=arg, param="jitter")


def check_finite(out, name: str):
    """Raise a clear error when a concrete result is not finite (a kernel
    matrix lost positive definiteness inside a compiled computation)."""
    for leaf in jax.tree_util.tree_leaves(out):
        c = _checks.concrete(leaf)
        if c is None:
            return out
        if np.issubdtype(c.dtype, np.floating) and not np.all(np.isfinite(c)):
            raise ValueError(
                f"{name}: the result is not finite — a kernel matrix K(G) (plus "
                f"jitter) is numerically not positive definite. Increase `jitter` "
                f"(relative to the mean diagonal; e.g. 1e-4 in float32), use "
                f"float64, or remove duplicate inputs."
            )
    return out


def lower_factor(raw: Array, log_diag: Array) -> Array:
    r""":math:`A = \operatorname{tril}(\mathtt{raw}, -1)
    + \operatorname{diag}(\exp(\mathtt{log\_diag}))`: lower triangular with a positive
    diagonal, so :math:`A A^\top` is PD for every parameter value."""
    return jnp.tril(raw, -1) + jnp.diag(jnp.exp(log_diag))


def whitened_kl(raw: Array, log_diag: Array) -> Array:
    r""":math:`\mathrm{KL}\big(\mathcal{N}(0, L A A^\top L^\top) \,\big\|\,
    \mathcal{N}(0, L L^\top)\big)
    = \tfrac{1}{2} \big[\lVert A \rVert_F^2 - P - 2 \sum \log \operatorname{diag} A\big]`
    for ``A = lower_factor(raw, log_diag)``."""
    off = jnp.tril(raw, -1)
    fro = jnp.sum(off**2) + jnp.sum(jnp.exp(2 * log_diag))
    return 0.5 * (fro - log_diag.shape[0] - 2 * jnp.sum(log_diag))


def gaussian_kl(G: Array, K: Array) -> Array:
    r""":math:`\mathrm{KL}\big(\mathcal{N}(0, G) \,\big\|\, \mathcal{N}(0, K)\big)
    = \tfrac{1}{2} \big[\operatorname{tr}(K^{-1} G) - P + \log|K| - \log|G|\big]` for
    ``(P, P)`` PD matrices, via Cholesky factors (stable logdets).

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> K = np.array([[2.0, 0.5], [0.5, 1.0]])
      >>> abs(float(dkm.gaussian_kl(K, K))) < 1e-6
      True
      >>> round(float(dkm.gaussian_kl(np.eye(2), 2 * np.eye(2))), 4)   # log 2 − ½
      0.1931
    """
    G = _check_gram(G, "G", "gaussian_kl")
    K = _check_gram(K, "K", "gaussian_kl", G.shape[0])
    Lk = cholesky(K, "K", "gaussian_kl")
    Lg = cholesky(G, "G", "gaussian_kl")
    M = jsl.solve_triangular(Lk, Lg, lower=True)  # tr(K⁻¹G) = ‖Lk⁻¹ Lg‖²
    logdet_k = 2 * jnp.sum(jnp.log(jnp.diagonal(Lk)))
    logdet_g = 2 * jnp.sum(jnp.log(jnp.diagonal(Lg)))
    return 0.5 * (jnp.sum(M**2) - G.shape[0] + logdet_k - logdet_g)


def _tri_inverse(L):
    return jsl.solve_triangular(L, jnp.eye(L.shape[0], dtype=L.dtype), lower=True)


# The two terms below carry hand-written reverse-mode derivatives. Autodiff
# through a Cholesky and triangular solves costs ~3x the forward pass and is
# the bulk of a DKM gradient; with ``L⁻¹`` formed once (one solve), forward
# and backward are products (matmuls run at twice the speed of a triangular
# solve on CPU).


@jax.custom_vjp
def _trace_logdet(K, F):
    """``½ tr(K⁻¹ F Fᵀ) + ½ log|K|``."""
    return _trace_logdet_fwd(K, F)[0]


def _trace_logdet_fwd(K, F):
    L = jnp.linalg.cholesky(K)
    Li = _tri_inverse(L)
    M = dot(Li, F)
    return 0.5 * jnp.sum(M**2) + jnp.sum(jnp.log(jnp.diagonal(L))), (Li, M)


def _trace_logdet_bwd(res, g):
    Li, M = res
    B = dot(Li.T, M)  # K⁻¹ F
    return 0.5 * g * (dot(Li.T, Li) - dot(B, B.T)), g * B


_trace_logdet.defvjp(_trace_logdet_fwd, _trace_logdet_bwd)


@jax.custom_vjp
def _quad_logdet(S, Y):
    """``½ tr(Yᵀ S⁻¹ Y) + C/2 log|S|`` for ``Y (P, C)``."""
    return _quad_logdet_fwd(S, Y)[0]


def _quad_logdet_fwd(S, Y):
    L = jnp.linalg.cholesky(S)
    a = jsl.solve_triangular(L, Y, lower=True)
    value = 0.5 * jnp.sum(a**2) + Y.shape[1] * jnp.sum(jnp.log(jnp.diagonal(L)))
    return value, (L, a)


def _quad_logdet_bwd(res, g):
    L, a = res
    alpha = jsl.solve_triangular(L, a, lower=True, trans=1)  # S⁻¹ Y
    Li = _tri_inverse(L)
    S_bar = 0.5 * g * (a.shape[1] * dot(Li.T, Li) - dot(alpha, alpha.T))
    return S_bar, g * alpha


_quad_logdet.defvjp(_quad_logdet_fwd, _quad_logdet_bwd)


def _checked(value, A, arg, name):
    """``value``; if it is concrete and not finite, the error of `cholesky`
    for ``A``."""
    c = _checks.concrete(value)
    if c is not None and not np.all(np.isfinite(c)):
        cholesky(A, arg, name)
    return value


def cholesky_kl(K: Array, raw: Array, log_diag: Array) -> Array:
    r""":math:`\mathrm{KL}\big(\mathcal{N}(0, C C^\top) \,\big\|\, \mathcal{N}(0, K)\big)` for
    ``C = lower_factor(raw, log_diag)``:
    :math:`\tfrac{1}{2} \big[\lVert L^{-1} C \rVert^2 - P + 2 \sum \log \operatorname{diag} L
    - 2 \sum \log \operatorname{diag} C\big]`, :math:`L = \operatorname{chol} K`
    (the Cholesky parametrisation that `ntk.dkm.full` optimises in)."""
    value = _trace_logdet(K, lower_factor(raw, log_diag)) - 0.5 * K.shape[0] - jnp.sum(log_diag)
    return _checked(value, K, "K(G)", "cholesky_kl")


def gaussian_log_marginal(Y: Array, K: Array, noise_var) -> Array:
    r""":math:`\sum_c \log \mathcal{N}(y_c; 0, K + \sigma^2 I)` for ``Y (P, C)``, ``K (P, P)``.

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> Y = np.array([[1.0], [0.0]])
      >>> v = dkm.gaussian_log_marginal(Y, np.zeros((2, 2)), noise_var=1.0)
      >>> round(float(v), 4)                  # log N(y; 0, I) = −½ − log 2π
      -2.3379
    """
    name = "gaussian_log_marginal"
    Y = _checks.as_array(Y, "Y", name, ndim=2, floating=True, what="(P, C)")
    K = _check_gram(K, "K", name, Y.shape[0])
    _checks.require_nonnegative(noise_var, "noise_var", name)
    P, C = Y.shape
    S = K + noise_var * jnp.eye(P, dtype=K.dtype)
    value = -_quad_logdet(S, Y) - 0.5 * P * C * LOG_2PI
    return _checked(value, S, "K + noise_var·I", "gaussian_log_marginal")


def _check_gram(G, arg, name, size=None):
    """A square, finite, symmetric ``(P, P)`` matrix (``P = size`` if given)."""
    G = _checks.as_array(G, arg, name, ndim=2, floating=True, what="(P, P)")
    if G.shape[0] != G.shape[1] or (size is not None and G.shape[0] != size):
        want = "(P, P)" if size is None else f"({size}, {size})"
        raise ValueError(
            f"{name}: `{arg}` must be a square matrix {want}; got shape {tuple(G.shape)}."
        )
    return _checks.require_symmetric(G, arg, name)


def check_nu(nu, num_layers: int, name: str = "dkm") -> tuple:
    """``nu`` as a tuple of ``num_layers`` positive floats."""
    want = f"a positive number or a sequence of {num_layers} positive numbers (one per layer)"
    if isinstance(nu, (str, bytes)) or nu is None:
        raise TypeError(f"{name}: `nu` must be {want}; got {nu!r}.")
    if not _checks.is_concrete(nu):  # traced: a gradient in nu, checked by shape only
        traced = jnp.asarray(nu)
        if traced.ndim > 1 or traced.size not in (1, num_layers):
            raise ValueError(f"{name}: `nu` must be {want}; got shape {traced.shape}.")
        return tuple(jnp.broadcast_to(traced, (num_layers,)))
    try:
        values = np.asarray(nu, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: `nu` must be {want}; got {nu!r}.") from None
    if values.ndim == 0:
        values = np.full(num_layers, float(values))
    if (
        values.ndim != 1
        or len(values) != num_layers
        or not np.all(np.isfinite(values) & (values > 0))
    ):
        raise ValueError(f"{name}: `nu` must be {want}; got {nu!r}.")
    return tuple(float(v) for v in values)


def check_model(model, name: str) -> tuple:
    """Validate the settings a full and a sparse DKM share; returns ``nu`` as a tuple.

    ``model`` has ``kernel``, ``num_layers``, ``nu``, ``likelihood``,
    ``noise_var``, ``num_classes``, ``num_samples`` and ``jitter`` attributes.
    """
    if not isinstance(model.kernel, GramKernel):
        raise TypeError(
            f"{name}: `kernel` must be an ntk.dkm GramKernel (e.g. "
            f"dkm.relu()); got {type(model.kernel).__name__}."
        )
    _checks.require_int(model.num_layers, "num_layers", name)
    nu = check_nu(model.nu, model.num_layers, name)
    _checks.require_one_of(model.likelihood, ("gaussian", "categorical"), "likelihood", name)
    if model.likelihood == "gaussian":
        _checks.require_positive(model.noise_var, "noise_var", name)
    else:
        if model.num_classes is None:
            raise ValueError(
                f"{name}: a categorical likelihood needs `num_classes` >= 2; got None."
            )
        _checks.require_int(model.num_classes, "num_classes", name, minimum=2)
    _checks.require_int(model.num_samples, "num_samples", name)
    _checks.require_nonnegative(model.jitter, "jitter", name)
    return nu


def check_data(X, Y, likelihood: str, name: str, num_classes=None):
    r"""Inputs ``X (P, N_0)`` and targets for a likelihood: ``Y (P, C)`` floats
    (Gaussian) or integer labels ``(P,)`` in :math:`[0, \mathtt{num\_classes})`
    (categorical)."""
    if likelihood == "categorical":
        X, _ = check_xy(X, None, name, need_y=False)
        Y = _checks.as_array(Y, "Y", name)
        if Y.shape != (X.shape[0],) or not jnp.issubdtype(Y.dtype, jnp.integer):
            raise ValueError(
                f"{name}: categorical `Y` must be integer labels of "
                f"shape ({X.shape[0]},); got {Y.dtype} {Y.shape}."
            )
        c = _checks.concrete(Y)
        if (
            c is not None
            and num_classes is not None
            and c.size
            and (c.min() < 0 or c.max() >= num_classes)
        ):
            bad = c[(c < 0) | (c >= num_classes)]
            raise ValueError(
                f"{name}: categorical `Y` must be labels in "
                f"[0, {num_classes}) (num_classes={num_classes}); got "
                f"{bad[:5].tolist()}."
            )
        return X, Y
    X, Y = check_xy(X, Y, name)
    return X, Y.astype(jnp.result_type(X.dtype, float))


def check_xy(X, Y, name: str, need_y: bool = True):
    """Inputs ``X (P, N_0)`` and targets ``Y (P, C)`` (1-D Y becomes (P, 1)),
    both finite (when concrete)."""
    X = _checks.as_array(X, "X", name, ndim=2, what="(P, N_0)")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name}: `X` must have shape (P, N_0) with P, N_0 >= 1; got {X.shape}.")
    if not need_y and Y is None:
        return X, None
    Y = _checks.as_array(Y, "Y", name, ndim=(1, 2), what="(P, C)")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.shape[0] != X.shape[0] or Y.shape[1] < 1:
        raise ValueError(
            f"{name}: `Y` must have shape (P, C) with P = "
            f"{X.shape[0]} rows like X and C >= 1; got {Y.shape}."
        )
    return X, Y


def nngp_grams(X: Array, kernel: GramKernel, num_layers: int, jitter: float = 0.0) -> list:
    r"""NNGP Grams :math:`G_l = \tilde{K}(G_{l-1})`, :math:`l = 1, \ldots, L` — the
    :math:`\nu \to \infty` optimum.

    Returns a list of :math:`L` matrices ``(P, P)`` for ``X (P, N_0)``.

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> X = np.array([[1.0, 0.0], [1.0, 1.0]])
      >>> Gs = dkm.nngp_grams(X, dkm.linear(weight_var=2.0), num_layers=2)
      >>> len(Gs), Gs[-1].tolist()                   # 2² · X Xᵀ / 2
      (2, [[2.0, 2.0], [2.0, 4.0]])
    """
    name = "nngp_grams"
    X, _ = check_xy(X, None, name, need_y=False)
    _check_kernel(kernel, name)
    _checks.require_int(num_layers, "num_layers", name)
    _checks.require_nonnegative(jitter, "jitter", name)
    G = input_gram(X)
    out = []
    for _ in range(num_layers):
        G = add_jitter(kernel(G), jitter)[0]
        out.append(G)
    return out


def dkm_objective(
    Gs: Sequence[Array],
    X: Array,
    Y: Array,
    kernel: GramKernel,
    nu: Union[float, Sequence[float]],
    noise_var: float,
    jitter: float = 0.0,
    return_terms: bool = False,
):
    r"""The DKM objective (Gaussian likelihood) at explicit Grams ``Gs``.

    .. math::

        L = \sum_c \log \mathcal{N}\big(y_c; 0, \tilde{K}(G_L) + \sigma^2 I\big)
        - \sum_l \nu_l\, \mathrm{KL}\big(\mathcal{N}(0, G_l) \,\big\|\,
        \mathcal{N}(0, \tilde{K}(G_{l-1}))\big)

    with :math:`G_0 = X X^\top / N_0` (Yang et al. 2023, eq. 14).

    Args:
      Gs: :math:`L` PD Gram matrices ``(P, P)``.
      X: ``(P, N_0)`` inputs; Y: ``(P, C)`` targets.
      kernel: a `GramKernel`; nu: :math:`\nu` (scalar or one per layer);
      noise_var: :math:`\sigma^2`; jitter: relative jitter of every :math:`K` (module doc).
      return_terms: also return ``(log_likelihood, [KL_l])``.

    Example:
      >>> import numpy as np
      >>> from ntk import dkm
      >>> rng = np.random.default_rng(0)
      >>> X = rng.normal(size=(20, 3)); Y = np.sin(X[:, :1])
      >>> Gs = dkm.nngp_grams(X, dkm.relu(), 2)
      >>> value, (log_lik, kls) = dkm.dkm_objective(Gs, X, Y, dkm.relu(), nu=1.0,
      ...                                           noise_var=0.1, return_terms=True)
      >>> [round(float(kl), 9) for kl in kls]   # at the NNGP every KL term vanishes
      [0.0, 0.0]
    """
    name = "dkm_objective"
    X, Y = check_xy(X, Y, name)
    _check_kernel(kernel, name)
    if isinstance(Gs, (str, bytes)) or not hasattr(Gs, "__len__"):
        raise TypeError(
            f"{name}: `Gs` must be a sequence of (P, P) Gram matrices "
            f"(one per layer); got {type(Gs).__name__}."
        )
    Gs = [_check_gram(G, f"Gs[{l}]", name, X.shape[0]) for l, G in enumerate(Gs)]
    nu = check_nu(nu, len(Gs), name)
    _checks.require_positive(noise_var, "noise_var", name)
    _checks.require_nonnegative(jitter, "jitter", name)
    G_prev = input_gram(X)
    kls = []
    for G in Gs:
        K = add_jitter(kernel(G_prev), jitter)[0]
        kls.append(gaussian_kl(G, K))
        G_prev = G
    K = add_jitter(kernel(G_prev), jitter)[0]
    ll = gaussian_log_marginal(Y, K, noise_var)
    value = ll - sum(n * kl for n, kl in zip(nu, kls))
    return (value, (ll, kls)) if return_terms else value


def _check_kernel(kernel, name):
    if not isinstance(kernel, GramKernel):
        raise TypeError(
            f"{name}: `kernel` must be an ntk.dkm GramKernel (e.g. "
            f"dkm.relu()); got {type(kernel).__name__}."
        )


# ------------------------------------------------------ conditional Gram blocks


def condition_layer(
    kernel: GramKernel, G_ii: Array, raw: Array, log_diag: Array, jitter: float, G_ti=None, g_t=None
):
    r"""One whitened layer: the next Gram on points :math:`i` and its extension to :math:`t`.

    With :math:`\tilde{K} = \tilde{K}(G_{ii})`, :math:`L = \operatorname{chol}(\tilde{K})`,
    ``A = lower_factor(raw, log_diag)``:

    .. math::

        G'_{ii} &= L A A^\top L^\top, \\
        G'_{ti} &= K_{ti} \tilde{K}^{-1} G'_{ii} = W A A^\top L^\top, \\
        g'_t &= k_t - \operatorname{diag}(K_{ti} \tilde{K}^{-1} K_{it})
        + \operatorname{diag}(K_{ti} \tilde{K}^{-1} G'_{ii} \tilde{K}^{-1} K_{it}) \\
        &= k_t - \lVert W_t \rVert^2 + \lVert (W A)_t \rVert^2,
        \qquad W = K_{ti} L^{-\top},

    the conditional Gaussian of the features at :math:`t` given those at :math:`i`
    (Yang et al. 2023, §5 "sparse DKM"; the inducing points are :math:`i`).
    :math:`(G_{ti}, g_t)` are the previous layer's blocks (optional); the cost is
    :math:`O(P^3 + T P^2)` — linear in the number :math:`T` of points :math:`t`.

    Returns :math:`(G'_{ii}, G'_{ti}, g'_t, \mathrm{KL})` (``None`` for the t-blocks when
    not given),
    :math:`\mathrm{KL} = \mathrm{KL}\big(\mathcal{N}(0, G'_{ii}) \,\big\|\,
    \mathcal{N}(0, \tilde{K})\big)`.
    """
    K, j = add_jitter(kernel(G_ii), jitter)
    L = cholesky(K, "K(G)", "dkm layer")
    A = lower_factor(raw, log_diag)
    LA = dot(L, A)
    G_new = gram(LA)
    kl = whitened_kl(raw, log_diag)
    if G_ti is None:
        return G_new, None, None, kl
    K_ti, k_t, _ = kernel.cross(G_ti, g_t, jnp.diagonal(G_ii))
    W = jsl.solve_triangular(L, K_ti.T, lower=True).T
    WA = dot(W, A)
    G_ti_new = dot(WA, LA.T)
    g_t_new = k_t + j - jnp.sum(W**2, axis=1) + jnp.sum(WA**2, axis=1)
    # Exact value is >= j > 0; rounding can only bring it near zero, not below.
    return G_new, G_ti_new, jnp.maximum(g_t_new, 0.0), kl


def output_blocks(kernel: GramKernel, G_ii: Array, jitter: float, G_ti=None, g_t=None):
    r"""Top-layer kernel blocks:
    :math:`(\tilde{K}_{ii}, L = \operatorname{chol} \tilde{K}_{ii}, K_{ti}, k_t + j)`."""
    K, j = add_jitter(kernel(G_ii), jitter)
    L = cholesky(K, "K(G_L)", "dkm output")
    if G_ti is None:
        return K, L, None, None
    K_ti, k_t, _ = kernel.cross(G_ti, g_t, jnp.diagonal(G_ii))
    return K, L, K_ti, k_t + j


# ------------------------------------------------------ variational output layer


def output_moments(L: Array, K_ti: Array, k_t: Array, mean: Array, raw: Array, log_diag: Array):
    r"""Marginals of :math:`f_t` under the whitened variational output layer.

    :math:`q(f_{i,c}) = \mathcal{N}(L m_c, L B B^\top L^\top)` per output channel :math:`c`
    (:math:`B` shared by the channels, as in Milsom et al. 2023's output layer). Then, with
    :math:`W = K_{ti} L^{-\top}`: :math:`\mathbb{E} f_t = W m`,
    :math:`\operatorname{Var} f_t = k_t - \lVert W_t \rVert^2 + \lVert (W B)_t \rVert^2`.
    Returns ``(mean (T, C), variance (T,))``.
    """
    W = jsl.solve_triangular(L, K_ti.T, lower=True).T
    WB = dot(W, lower_factor(raw, log_diag))
    var = k_t - jnp.sum(W**2, axis=1) + jnp.sum(WB**2, axis=1)
    return dot(W, mean), jnp.maximum(var, 0.0)


def output_kl(mean: Array, raw: Array, log_diag: Array) -> Array:
    r""":math:`\sum_c \mathrm{KL}\big(\mathcal{N}(m_c, B B^\top) \,\big\|\, \mathcal{N}(0, I)\big)`
    (whitened, so it equals the KL of :math:`q(f_i)` from the prior
    :math:`\mathcal{N}(0, \tilde{K}_{ii})`)."""
    C = mean.shape[1]
    return C * whitened_kl(raw, log_diag) + 0.5 * jnp.sum(mean**2)


def gaussian_expected_loglik(Y: Array, mean: Array, var: Array, noise_var) -> Array:
    r""":math:`\sum_{t,c} \mathbb{E}_{f \sim \mathcal{N}(\mathtt{mean}, \mathtt{var})}
    \log \mathcal{N}(y_{tc}; f, \sigma^2)` (closed form)."""
    resid = jnp.sum((Y - mean) ** 2) + Y.shape[1] * jnp.sum(var)
    return -0.5 * (Y.size * (LOG_2PI + jnp.log(noise_var)) + resid / noise_var)


def categorical_expected_loglik(
    labels: Array, mean: Array, var: Array, key, num_samples: int
) -> Array:
    r""":math:`\sum_t \mathbb{E}_{f \sim \mathcal{N}(\mathtt{mean}_t, \mathtt{var}_t I)}
    \log \operatorname{softmax}(f)_{y_t}` by Monte Carlo (``num_samples`` reparametrised
    draws from ``key``)."""
    eps = jax.random.normal(key, (num_samples,) + mean.shape, mean.dtype)
    f = mean[None] + jnp.sqrt(var)[None, :, None] * eps
    logp = jax.nn.log_softmax(f, axis=-1)
    picked = jnp.take_along_axis(logp, labels[None, :, None], axis=-1)
    return jnp.sum(jnp.mean(picked, axis=0))


def categorical_predictive(mean: Array, var: Array, key, num_samples: int) -> Array:
    r"""Class probabilities :math:`\mathbb{E} \operatorname{softmax}(f)` by Monte Carlo,
    ``(T, C)``."""
    eps = jax.random.normal(key, (num_samples,) + mean.shape, mean.dtype)
    return jnp.mean(jax.nn.softmax(mean[None] + jnp.sqrt(var)[None, :, None] * eps, axis=-1), 0)
