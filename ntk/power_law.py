r"""Power-law fits in log–log coordinates: the one fit that every module uses.

A power law :math:`v \approx c \cdot x^p` is a straight line in log–log coordinates,
:math:`\log v = p \log x + \log c`; `loglog_fit` returns the least-squares line
(``numpy.polyfit`` of degree 1 on :math:`(\log x, \log v)`, in float64), i.e. the
exponent :math:`p` (the log–log slope) and the prefactor :math:`c`. Convergence
rates in width (:math:`p = -1/2` for Monte Carlo fluctuations), spectral decay
exponents (:math:`\lambda_i \sim i^{-\alpha}`: :math:`p = -\alpha`) and coordinate-size
exponents are all such fits.

Points with :math:`x \le 0`, :math:`v \le 0` or a non-finite value have no logarithm.
``invalid`` says what to do with them: ``"raise"`` (a ValueError naming
them; the default), ``"drop"`` (leave them out; at least two points must
remain) or ``"nan"`` (return NaN for :math:`p` and :math:`c`: no rate can be read
off, e.g. an error that reached exactly zero).

When each value is the mean of random draws (initialisations, subsets),
`loglog_slope_se` gives the slope's standard error over those draws, the
tolerance a measured rate is held to.

    >>> import numpy as np
    >>> from ntk.power_law import loglog_fit, loglog_slope
    >>> x = np.array([64, 128, 256, 512])
    >>> fit = loglog_fit(x, 3 * x ** -0.5)
    >>> round(float(fit.exponent), 6), round(float(fit.prefactor), 6)
    (-0.5, 3.0)
    >>> round(float(loglog_slope(x, 3 * x ** -0.5)), 6)
    -0.5
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ntk import _checks

__all__ = ["PowerLaw", "loglog_fit", "loglog_slope", "loglog_slope_se"]

_INVALID = ("raise", "drop", "nan")


class PowerLaw(NamedTuple):
    r""":math:`\mathtt{values} \approx \mathtt{prefactor} \cdot x^{\mathtt{exponent}}`;
    ``exponent`` is the log–log slope.

    Example:
      >>> import numpy as np
      >>> from ntk.power_law import loglog_fit
      >>> x = np.array([1., 2., 4., 8.])
      >>> exponent, prefactor = loglog_fit(x, 5 / x)        # a PowerLaw
      >>> round(exponent, 4), round(prefactor, 4)
      (-1.0, 5.0)
    """

    exponent: float
    prefactor: float


def loglog_fit(x, values, invalid: str = "raise") -> PowerLaw:
    r"""Least-squares power law :math:`\mathtt{values} \approx c \cdot x^p` in log–log
    coordinates.

    Args:
      x: ``(m,)`` positive abscissae (widths, sizes, mode indices).
      values: ``(m,)`` positive values.
      invalid: ``"raise"``, ``"drop"`` or ``"nan"`` for points without a
        logarithm (module doc).

    Returns:
      `PowerLaw` (``exponent`` :math:`p`, ``prefactor`` :math:`c`), floats.

    Example:
      >>> import numpy as np
      >>> from ntk.power_law import loglog_fit
      >>> x = np.array([1., 2., 4., 8.])
      >>> fit = loglog_fit(x, 2 * x ** 1.5)
      >>> round(fit.exponent, 4), round(fit.prefactor, 4)
      (1.5, 2.0)
      >>> fit = loglog_fit(np.array([0., 1., 2.]), np.array([1., 2., 8.]), invalid="drop")
      >>> round(fit.exponent, 4)                                # x = 0 left out
      2.0
    """
    name = "loglog_fit"
    _checks.require_one_of(invalid, _INVALID, "invalid", name)
    x = _checks.as_numpy(x, "x", name, ndim=1, what="(m,)", dtype=np.float64, finite=False)
    values = _checks.as_numpy(
        values, "values", name, ndim=1, what="(m,)", dtype=np.float64, finite=False
    )
    if x.shape != values.shape:
        raise ValueError(
            f"{name}: `x` and `values` must have the same shape; got {x.shape} and {values.shape}."
        )
    ok = (x > 0) & np.isfinite(x) & (values > 0) & np.isfinite(values)
    if not ok.all():
        if invalid == "nan":
            return PowerLaw(float("nan"), float("nan"))
        if invalid == "raise":
            bad = np.nonzero(~ok)[0]
            raise ValueError(
                f"{name}: `x` and `values` must be positive and finite "
                f"(a power law has a logarithm); got x={x[bad][:5].tolist()}, "
                f"values={values[bad][:5].tolist()} at indices "
                f"{bad[:5].tolist()}; pass invalid='drop' to leave them out."
            )
        x, values = x[ok], values[ok]
    if x.size < 2:
        raise ValueError(f"{name}: need ≥ 2 positive finite points; got {x.size}.")
    _require_distinct(x, name)
    slope, intercept = np.polyfit(np.log(x), np.log(values), 1)
    return PowerLaw(float(slope), float(np.exp(intercept)))


def _require_distinct(x: np.ndarray, name: str) -> None:
    # A line through points of one abscissa has no slope; polyfit would only warn.
    if np.all(x == x[0]):
        raise ValueError(
            f"{name}: `x` must hold ≥ 2 distinct values (a slope needs two abscissae); "
            f"got all {x.size} equal to {x[0]:g}."
        )


def loglog_slope(x, values, invalid: str = "raise") -> float:
    """The exponent :math:`p` of `loglog_fit` (the log–log slope), a float.

    Example:
      >>> import numpy as np
      >>> from ntk.power_law import loglog_slope
      >>> x = np.array([10., 100., 1000.])
      >>> round(loglog_slope(x, 3 / np.sqrt(x)), 4)
      -0.5
      >>> loglog_slope(x, np.array([1., 0., 2.]), invalid="nan")   # no logarithm of 0
      nan
    """
    return loglog_fit(x, values, invalid).exponent


def loglog_slope_se(x, draws) -> float:
    r"""Standard error of `loglog_slope` of the means of random draws, over the draws.

    With ``draws[j]`` the :math:`R` draws at :math:`x_j`, of mean :math:`m_j` and standard
    deviation :math:`s_j`, the log of the mean has variance :math:`s_j^2 / (R\, m_j^2)` (delta
    method), and the least-squares slope is :math:`\sum_j w_j \log m_j` with
    :math:`w_j = (\ell_j - \bar\ell) / \sum_i (\ell_i - \bar\ell)^2`,
    :math:`\ell_j = \log x_j`, so

    .. math:: \operatorname{se}^2 = \sum_j w_j^2\, s_j^2 / (R\, m_j^2).

    It is the slope's spread from the draws' noise alone (independent draws at each
    :math:`x`), not the misfit of a power law to the means. Points without a logarithm
    (:math:`x \le 0`, a mean :math:`\le 0` or non-finite) are left out, as
    ``loglog_fit(..., invalid="drop")`` leaves them out; one draw per point gives NaN. The
    slope of a root-mean-square :math:`\sqrt{\overline{q}}` is half that of
    :math:`\overline{q}`: pass the squares and halve the error.

    Args:
      x: ``(m,)`` abscissae.
      draws: ``(m, R)`` draws at each abscissa.

    Example:
      >>> import numpy as np
      >>> from ntk.power_law import loglog_slope_se
      >>> x = np.array([1., 10.])
      >>> draws = np.array([[0.9, 1.1], [0.09, 0.11]])    # var(log m_j) = 0.02/2 at both
      >>> round(loglog_slope_se(x, draws), 4)             # √(2 · 0.01) / log 10
      0.0614
    """
    name = "loglog_slope_se"
    x = _checks.as_numpy(x, "x", name, ndim=1, what="(m,)", dtype=np.float64, finite=False)
    draws = _checks.as_numpy(
        draws, "draws", name, ndim=2, what="(m, R)", dtype=np.float64, finite=False
    )
    if draws.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}: `draws` must have one row per abscissa, shape ({x.shape[0]}, R); "
            f"got {draws.shape}."
        )
    trials = draws.shape[1]
    if trials < 2:
        return float("nan")
    m = draws.mean(1)
    keep = (x > 0) & np.isfinite(x) & np.isfinite(m) & (m > 0)
    if keep.sum() < 2:
        raise ValueError(f"{name}: need ≥ 2 positive finite points; got {int(keep.sum())}.")
    _require_distinct(x[keep], name)
    ell = np.log(x[keep])
    w = (ell - ell.mean()) / np.sum((ell - ell.mean()) ** 2)
    var_log_mean = draws[keep].var(1, ddof=1) / (trials * m[keep] ** 2)
    return float(np.sqrt(np.sum(w**2 * var_log_mean)))
