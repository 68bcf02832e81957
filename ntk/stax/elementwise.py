r"""Elementwise nonlinearities as layers.

Each layer pushes a Gaussian `Kernel` through the dual of its activation
(:math:`K_\varphi` for the NNGP and the covariances,
:math:`\Theta' = K_{\varphi'} \odot \Theta` for the NTK) and applies :math:`\varphi`
in the finite network. The duals are the records of
``ntk.stax.duals.ACTIVATIONS`` (closed forms, with their formulas and
numerics) and ``numerical`` of `ntk.stax.numerical` (graded quadrature for any
:math:`\varphi`); `Elementwise` takes a user's dual.

    >>> init_fn, apply_fn, kernel_fn = serial(Dense(512), Relu(), Dense(512),
    ...                                       Gabor(), Dense(1))
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk._autodiff import snap
from ntk._checks import as_numpy, require_bool, require_real, require_traceable
from ntk.kernel import Kernel
from ntk.stax._internal import PI, fusion_fence, identical, inv, safe_sqrt

# ACTIVATIONS is re-exported: `ntk.dkm` and users read the table from here.
from ntk.stax.duals import ACTIVATIONS  # noqa: F401
from ntk.stax.duals import (
    CHORD_FROM_KERNELS,
    Activation,
    abrelu,
    check_degree,
    check_real_args,
    erf,
    exp,
    exp_normalized,
    gabor,
    gaussian,
    gelu,
    hermite,
    monomial,
    polynomial,
    rbf,
    rectified_monomial,
    sign,
    sin,
)
from ntk.stax.layer import Layer, make_layer
from ntk.stax.numerical import NUMERICAL_DEG, numerical
from ntk.stax.spec import Parameterless

# ---------------------------------------------------------------- layers


def apply_dual(
    k: Kernel, dual: Callable, name: str = "activation", chord_dual: Optional[Callable] = None
) -> Kernel:
    """Push a Gaussian `Kernel` through an activation with dual ``dual``
    (and ``chord_dual`` where ``k`` carries chords: `Activation`)."""
    if not k.is_gaussian:
        raise ValueError(
            f"{name}: the input of an activation must be Gaussian, "
            f"i.e. come from an affine layer (Dense, Conv); got a "
            f"kernel that is not (e.g. two activations in a row, or "
            f"raw inputs). Put a Dense/Conv before {name}."
        )
    (a12, b12), (a11, b11), out22 = k.outer_vars()
    chord, from_kernels = None, False
    if k.chord is not None and chord_dual is not None:
        nngp, dot, chord = chord_dual(k.chord, k.nngp, a12, b12)
        from_kernels = chord is CHORD_FROM_KERNELS
        chord = None if from_kernels else chord
    else:
        nngp, dot = dual(k.nngp, a12, b12)
    ntk = None
    if k.ntk is not None:
        if k.nngp.ndim > 2:
            # Spatial covariances: recompute the derivative kernel in its own
            # loop rather than share the dual's intermediates (`fusion_fence`).
            # Not for (N, N) kernels, whose loops are cheap and share better.
            dot = dual(fusion_fence(k.nngp), a12, b12)[1]
        ntk = k.ntk * dot
    cov1 = dual(k.cov1, a11, b11)[0]
    cov2 = None if out22 is None else dual(k.cov2, *out22)[0]
    if from_kernels:
        # From the kernels, 2(√(K11 K22) − K12), with identical inputs (chord
        # 0, equal variances) kept at exactly 0. Through a division, so XLA
        # reads the variances' kernels once per input instead of recomputing
        # them inside the pairwise loop.
        v1 = inv(inv(cov1))
        v2 = v1 if cov2 is None else inv(inv(cov2))
        r1, r2 = safe_sqrt(v1)[:, None], safe_sqrt(v2)[None, :]
        c = 2 * (r1 * r2 - nngp)
        same = identical(k.chord, v1[:, None], v2[None, :])
        chord = snap(c, same | (c < 0))
    return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False, chord=chord)


def _elementwise(name: str, activation: Activation) -> Layer:
    fn, dual, chord_dual = activation

    def apply_fn(params, x, **kwargs):
        if fn is None:
            raise NotImplementedError(f"{name}: no finite-width `fn` was given.")
        return fn(x)

    # Masked entries are zero before the activation but φ(0) may not be:
    # remasking puts their covariances back to zero, as in neural-tangents.
    return make_layer(
        name,
        lambda key, shape: (shape, ()),
        apply_fn,
        lambda k, **kw: apply_dual(k, dual, name, chord_dual),
        spec=Parameterless(),
        remask=True,
    )


def ABRelu(a: float, b: float, do_stabilize: bool = False) -> Layer:
    r""":math:`a \cdot \min(x, 0) + b \cdot \max(x, 0)`; see ``abrelu`` in `ntk.stax.duals`.
    (``do_stabilize`` is accepted for NT compatibility; the dual here is scale-stable
    already.)

    Example:
      Unit variances: :math:`(a^2 + b^2)/2` for an input with itself,
      :math:`(a - b)^2/(2\pi)` for orthogonal inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), ABRelu(0.5, 2.)).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (2.125, 0.3581)
    """
    check_real_args("ABRelu", a=a, b=b)
    return _elementwise(f"ABRelu({a}, {b})", abrelu(a, b))


def Relu(do_stabilize: bool = False) -> Layer:
    r"""ReLU, :math:`\max(x, 0)`: the arc-cosine kernel of degree 1.

    Example:
      Unit variances: :math:`1/2` for an input with itself, :math:`1/(2\pi)` for
      orthogonal inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Relu()).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (0.5, 0.1592)
    """
    return _elementwise("Relu", abrelu(0.0, 1.0))


def LeakyRelu(alpha: float, do_stabilize: bool = False) -> Layer:
    r""":math:`\alpha \cdot \min(x, 0) + \max(x, 0)`.

    Example:
      Unit variances: :math:`(\alpha^2 + 1)/2` for an input with itself,
      :math:`(1 - \alpha)^2/(2\pi)` for orthogonal inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), LeakyRelu(0.1)).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (0.505, 0.1289)
    """
    check_real_args("LeakyRelu", alpha=alpha)
    return _elementwise(f"LeakyRelu({alpha})", abrelu(alpha, 1.0))


def Abs(do_stabilize: bool = False) -> Layer:
    r""":math:`|x|`.

    Example:
      Unit variances: :math:`\mathbb{E}[u^2] = 1` for an input with itself,
      :math:`2/\pi` for orthogonal inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Abs()).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (1.0, 0.6366)
    """
    return _elementwise("Abs", abrelu(-1.0, 1.0))


def Erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    r""":math:`a \cdot \operatorname{erf}(b x) + c`; see ``erf`` in `ntk.stax.duals`.

    Example:
      Unit variance: :math:`(2/\pi) \cdot \arcsin(2/3)` for an input with itself:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Erf()).kernel_fn(x, None, "nngp")
      >>> bool(np.isclose(k[0, 0], 2 / np.pi * np.arcsin(2 / 3)))
      True
    """
    check_real_args("Erf", a=a, b=b, c=c)
    return _elementwise(f"Erf({a}, {b}, {c})", erf(a, b, c))


def Sigmoid_like() -> Layer:
    r""":math:`0.5 \cdot \operatorname{erf}(x / 2.4020563531719796) + 0.5`, NT's erf fit of
    the sigmoid.

    Example:
      Orthogonal (so independent) inputs: :math:`\mathbb{E}[\varphi]^2 = 1/4`:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Sigmoid_like()).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 1]), 4)
      0.25
    """
    return Erf(a=0.5, b=1 / 2.4020563531719796, c=0.5)


def Gelu(approximate: bool = False) -> Layer:
    r""":math:`x \Phi(x)`; see ``gelu`` in `ntk.stax.duals`.

    Example:
      Orthogonal (so independent) unit-variance inputs:
      :math:`\mathbb{E}[u \Phi(u)]^2 = 1/(4\pi)`:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Gelu()).kernel_fn(x, None, "nngp")
      >>> bool(np.isclose(k[0, 1], 1 / (4 * np.pi)))
      True
    """
    require_bool(approximate, "approximate", "Gelu")
    return _elementwise("Gelu", gelu(approximate))


def Sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    r""":math:`a \cdot \sin(b x + c)`; see ``sin`` in `ntk.stax.duals`.

    Example:
      Unit variance: :math:`(1 - e^{-2})/2` for an input with itself:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Sin()).kernel_fn(x, None, "nngp")
      >>> bool(np.isclose(k[0, 0], (1 - np.exp(-2)) / 2))
      True
    """
    check_real_args("Sin", a=a, b=b, c=c)
    return _elementwise(f"Sin({a}, {b}, {c})", sin(a, b, c))


def Cos(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    r""":math:`a \cdot \cos(b x + c) = a \cdot \sin(b x + c + \pi/2)`.

    Example:
      Unit variances: :math:`(1 + e^{-2})/2` for an input with itself, :math:`e^{-1}`
      for orthogonal inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Cos()).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (0.5677, 0.3679)
    """
    check_real_args("Cos", a=a, b=b, c=c)
    return _elementwise(f"Cos({a}, {b}, {c})", sin(a, b, c + PI / 2))


def Rbf(gamma: float = 1.0) -> Layer:
    r""":math:`\sqrt{2} \cdot \sin(\sqrt{2\gamma}\, x + \pi/4)`, whose dual is the RBF
    kernel; see ``rbf`` in `ntk.stax.duals`.

    Example:
      :math:`\exp(-\gamma |u - v|^2)` in the pre-activations: 1 for an input with
      itself, :math:`e^{-2\gamma}` for orthogonal unit-variance inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Rbf(gamma=0.5)).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (1.0, 0.3679)
    """
    require_real(gamma, "gamma", "Rbf", low=0)
    return _elementwise(f"Rbf({gamma})", rbf(gamma))


def Sign() -> Layer:
    r""":math:`\operatorname{sign}(x)`; see ``sign`` in `ntk.stax.duals`.

    Example:
      :math:`1 - 2\theta/\pi`: 1 for an input with itself, 1/2 at an angle
      :math:`\theta = \pi/4`:

      >>> x = jnp.array([[1., 1.], [1., 0.]])       # at 45°
      >>> k = serial(Dense(1), Sign()).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (1.0, 0.5)
    """
    return _elementwise("Sign", sign())


def Exp(a: float = 1.0, b: float = 1.0) -> Layer:
    r""":math:`a \cdot \exp(b x)`; see ``exp`` in `ntk.stax.duals`.

    Example:
      Unit variances: :math:`e^2` for an input with itself, :math:`e` for orthogonal
      inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Exp()).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (7.3891, 2.7183)
    """
    check_real_args("Exp", a=a, b=b)
    return _elementwise(f"Exp({a}, {b})", exp(a, b))


def Gaussian(a: float = 1.0, b: float = -1.0) -> Layer:
    r""":math:`a \cdot \exp(b x^2)`; see ``gaussian`` in `ntk.stax.duals`. For
    :math:`b > 0` the kernel is infinite once a variance reaches :math:`1/(4b)` (the
    layer then raises `FloatingPointError`).

    Example:
      Unit variances, ``b = -1``: :math:`1/\sqrt{5}` for an input with itself,
      :math:`1/3` for orthogonal inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Gaussian()).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (0.4472, 0.3333)
    """
    check_real_args("Gaussian", a=a, b=b)
    return _elementwise(f"Gaussian({a}, {b})", gaussian(a, b))


def Monomial(degree: int) -> Layer:
    r""":math:`x^{\mathrm{degree}}`; see ``monomial`` in `ntk.stax.duals`.

    Example:
      :math:`x^2`, unit variances: :math:`\mathbb{E}[u^4] = 3` for an input with
      itself, :math:`c_{11} c_{22} = 1` for orthogonal inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Monomial(2)).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (3.0, 1.0)
    """
    check_degree(degree, "Monomial")
    return _elementwise(f"Monomial({degree})", monomial(int(degree)))


def Polynomial(coef: Sequence[float]) -> Layer:
    r""":math:`\sum_i \mathrm{coef}[i]\, x^i`; see ``polynomial`` in `ntk.stax.duals`.

    Example:
      :math:`1 + x^2`, unit variances: :math:`\mathbb{E}[(1 + u^2)^2] = 6` for an input
      with itself, :math:`\mathbb{E}[1 + u^2]^2 = 4` for orthogonal inputs:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Polynomial([1., 0., 1.])).kernel_fn(x, None, "nngp")
      >>> round(float(k[0, 0]), 4), round(float(k[0, 1]), 4)
      (6.0, 4.0)
    """
    as_numpy(coef, "coef", "Polynomial", ndim=1, what="(degree + 1,)")
    return _elementwise(f"Polynomial({list(coef)})", polynomial(coef))


def Hermite(degree: int) -> Layer:
    r"""Normalised Hermite polynomial :math:`\mathrm{He}_n(x)/\sqrt{n!}`; see ``hermite`` in
    `ntk.stax.duals`.

    Example:
      For unit-variance inputs the kernel is :math:`c_{12}^n`:

      >>> x = np.array([[1., 1.], [2 ** 0.5, 0.], [1., -1.]])      # |x|² = 2
      >>> k = serial(Dense(1), Hermite(3)).kernel_fn(x, None, "nngp")
      >>> bool(np.allclose(k, (x @ x.T / 2) ** 3))
      True
    """
    check_degree(degree, "Hermite")
    return _elementwise(f"Hermite({degree})", hermite(int(degree)))


def Gabor() -> Layer:
    r""":math:`\exp(-x^2) \cdot \sin(x)` (neural-tangents' Gabor; no arguments); see
    ``gabor`` in `ntk.stax.duals`.

    Example:
      Unit variance: :math:`(1 - e^{-0.4})/(2\sqrt{5})` for an input with itself:

      >>> x = jnp.array([[1., 1.], [1., -1.]])      # through Dense(1): c = I
      >>> k = serial(Dense(1), Gabor()).kernel_fn(x, None, "nngp")
      >>> bool(np.isclose(k[0, 0], (1 - np.exp(-0.4)) / (2 * np.sqrt(5))))
      True
    """
    return _elementwise("Gabor", gabor())


def ExpNormalized(gamma: float = 1.0, shift: float = -1.0, do_clip: bool = False) -> Layer:
    r"""The "Gaussian normalised kernel" of Shankar et al. 2020 (arXiv:2003.02237):
    :math:`K = \sqrt{c_{11} c_{22}} \cdot \exp(\gamma(\rho + \mathrm{shift}))`, NTK
    :math:`\gamma \cdot \exp(\gamma(\rho + \mathrm{shift})) \cdot \Theta`; see
    ``exp_normalized`` in `ntk.stax.duals`. Kernel only: like neural-tangents,
    ``apply_fn`` raises `NotImplementedError` (the kernel is not that of an
    elementwise :math:`\varphi`).

    Example:
      >>> kernel_fn = serial(Dense(512), ExpNormalized(gamma=2.0), Dense(1)).kernel_fn
    """
    require_real(gamma, "gamma", "ExpNormalized", low=0)
    check_real_args("ExpNormalized", shift=shift)
    require_bool(do_clip, "do_clip", "ExpNormalized")
    return _elementwise(f"ExpNormalized({gamma}, {shift})", exp_normalized(gamma, shift, do_clip))


def RectifiedMonomial(degree: int) -> Layer:
    """``(x >= 0)·x^degree``, the arc-cosine kernel of that degree (Cho & Saul
    2009); see ``rectified_monomial`` in `ntk.stax.duals`. ``degree`` is a non-negative int (0: the
    step function, 1: ReLU).

    Example:
      >>> init_fn, apply_fn, kernel_fn = serial(Dense(512), RectifiedMonomial(2), Dense(1))
    """
    check_degree(degree, "RectifiedMonomial")
    return _elementwise(f"RectifiedMonomial({degree})", rectified_monomial(int(degree)))


def _dot_by_autodiff(nngp_fn: Callable) -> Callable:
    """K_φ' = ∂K_φ/∂c12 (Price's theorem), by forward-mode autodiff."""

    def dual(c12, c11, c22):
        nngp, dot = jax.jvp(lambda c: nngp_fn(c, c11, c22), (c12,), (jnp.ones_like(c12),))
        return nngp, dot

    return dual


def Elementwise(
    fn: Optional[Callable] = None,
    nngp_fn: Optional[Callable] = None,
    d_nngp_fn: Optional[Callable] = None,
) -> Layer:
    r"""Any activation ``fn`` given its scalar dual ``nngp_fn(c12, c11, c22)``.

    The derivative kernel is ``d_nngp_fn`` if given, else
    :math:`\partial\, \mathrm{nngp\_fn} / \partial c_{12}` by autodiff (Price's
    theorem).

    Example (Erf):
      >>> nngp_fn = lambda c12, c11, c22: 2 / jnp.pi * jnp.arcsin(
      ...     2 * c12 / jnp.sqrt((1 + 2 * c11) * (1 + 2 * c22)))
      >>> layer = Elementwise(jax.scipy.special.erf, nngp_fn)
    """
    for arg, f, n_args in (("fn", fn, 1), ("nngp_fn", nngp_fn, 3), ("d_nngp_fn", d_nngp_fn, 3)):
        if f is not None:
            require_traceable(f, arg, "Elementwise", n_args)
    if fn is None and nngp_fn is None:
        raise ValueError(
            "Elementwise: give `fn` (finite network) and/or `nngp_fn` (kernel); got neither."
        )
    name = f"Elementwise({getattr(fn or nngp_fn, '__name__', 'fn')})"
    if nngp_fn is None:

        def dual(c12, c11, c22):
            raise NotImplementedError(f"{name}: no `nngp_fn`, so no kernel.")
    else:
        nngp_v = jnp.vectorize(nngp_fn)
        if d_nngp_fn is None:
            dual = _dot_by_autodiff(nngp_v)
        else:
            d_v = jnp.vectorize(d_nngp_fn)

            def dual(c12, c11, c22):
                return nngp_v(c12, c11, c22), d_v(c12, c11, c22)

    return _elementwise(name, Activation(fn, dual))


def ElementwiseNumerical(
    fn: Callable, deg: int = NUMERICAL_DEG, df: Optional[Callable] = None
) -> Layer:
    r"""Any activation by numerical integration (Tanh, Softplus, Sigmoid, …).

    A graded quadrature that is accurate at any input scale and exactly
    symmetric in the two inputs: ``deg`` nodes per half-line,
    :math:`(2 \cdot \mathrm{deg} + 1)^2` evaluations of ``fn`` and of its derivative
    ``df`` (default: autodiff of ``fn``) per kernel entry. The default ``deg=64``
    gives relative errors ≤ 1e-6 for tanh-like :math:`\varphi` and ≤ 1e-5 for
    :math:`\varphi` with Gaussian factors (erf,
    GELU) at variances up to ~1e12; see `numerical` for the rule, a table of
    accuracy against ``deg`` and the limits. (``deg`` counts nodes of this
    rule, not of neural-tangents' Gauss–Hermite rule: neural-tangents'
    usual ``deg=25`` gives ~2e-2 here, uniformly in the variance, where
    Gauss–Hermite gave ~2e-3 at unit variance and 25% at variance 1e6.)

    Example:
      >>> layer = ElementwiseNumerical(jnp.tanh)
    """
    where = "ElementwiseNumerical"
    require_traceable(fn, "fn", where)
    if df is not None:
        require_traceable(df, "df", where)
    if not (isinstance(deg, (int, np.integer)) and deg >= 1):
        raise ValueError(f"{where}: `deg` must be a positive int; got {deg!r}.")
    if deg < NUMERICAL_DEG:
        # NT code passes deg=25 by habit; here it would silently cost accuracy.
        warnings.warn(
            f"{where}: deg={deg} counts nodes of this library's graded rule, not "
            f"neural-tangents' Gauss–Hermite degree, and is less accurate than the "
            f"default deg={NUMERICAL_DEG} (deg=25: relative errors ~2e-2; "
            f"{NUMERICAL_DEG}: ≤ 1e-6 for tanh-like φ). Leave `deg` unset unless you "
            "mean to trade accuracy for speed.",
            UserWarning,
            stacklevel=2,
        )
    return _elementwise(
        f"ElementwiseNumerical({getattr(fn, '__name__', 'fn')}, {deg})", numerical(fn, deg, df)
    )
