r"""abc-parametrizations and their infinite-width theory (Yang & Hu 2021, TP4 §3).

**Definition (TP4 Def. 3.1).** An :math:`L`-hidden-layer MLP of width :math:`n` with
input :math:`\xi \in \mathbb{R}^d` and output :math:`f \in \mathbb{R}`,

.. math::

    h^1 = W^1 \xi, \quad x^l = \varphi(h^l), \quad h^{l+1} = W^{l+1} x^l, \quad f = W^{L+1} x^L,

is in the abc-parametrization :math:`\{a_l, b_l\}_{l \le L+1} \cup \{c\}` when each
weight is a width-scaled multiple of a trainable parameter :math:`w^l`,

.. math::

    W^l = n^{-a_l} w^l, \qquad w^l_{\alpha\beta} \sim \mathcal{N}(0, n^{-2 b_l}),

and SGD trains :math:`w` with learning rate :math:`\eta n^{-c}`. Biases are treated as
input weights (they map the constant 1 to :math:`n` coordinates) and take the
exponents of layer 1. The symmetry
:math:`(a_l, b_l, c) \to (a_l + \theta, b_l - \theta, c - 2\theta)` (TP4 Eq. 5) leaves
:math:`W^l` and its SGD updates unchanged, so per-layer learning rates :math:`c_l` are
allowed here: they are abc-parametrizations written in another gauge.

**The exponent r (TP4 Def. 3.2).**

.. math::

    r = \min(a_{L+1} + b_{L+1},\ 2a_{L+1} + c) + c - 1
        + \min_{l=1,\dots,L} \big[2a_l + \mathbb{1}(l = 1)\big].

Why: the readout's coordinates have size :math:`n^{-\omega}`,
:math:`\omega = \min(a_{L+1} + b_{L+1}, 2a_{L+1} + c)` (initial value vs accumulated
update), so every backpropagated gradient :math:`dh^l` has coordinates
:math:`n^{-\omega}`. One SGD step changes :math:`W^l` by
:math:`\eta n^{-c-2a_l}\, dh^l\, x^{l-1 \top}`; applied to the correlated :math:`x^{l-1}`
(:math:`n` coordinates for a hidden layer, :math:`d = O(1)` for the input layer) it moves
:math:`h^l` by :math:`\Theta(n^{-r_l})` with

.. math::

    r_l = \omega + c_l - 1 + 2a_l + \mathbb{1}(l = 1), \qquad r = \min_l r_l.

Features move by :math:`\Delta x^L = \Theta(n^{-r})` (TP4 §3, ":math:`r` ... is the
exponent such that :math:`\Delta x_t^L = \Theta(n^{-r})`").

**Stability (TP4 Thm. 3.3).** Stable iff (1) at init :math:`a_1 + b_1 = 0`,
:math:`a_l + b_l = 1/2` for :math:`2 \le l \le L`, :math:`a_{L+1} + b_{L+1} \ge 1/2`;
(2) no feature blows up: :math:`r \ge 0`; (3) the output does not blow up:
:math:`2a_{L+1} + c \ge 1` and :math:`a_{L+1} + b_{L+1} + r \ge 1`.
**Nontrivial (TP4 Thm. 3.4):** :math:`a_{L+1} + b_{L+1} + r = 1` or
:math:`2a_{L+1} + c = 1`. **Dynamical dichotomy (TP4 Cor. 3.9):** a stable
nontrivial parametrization learns features iff :math:`r = 0` (Thm. 3.6) and is in
the kernel regime iff :math:`r > 0` (Thm. 3.8) — never both.

The paper's table (TP4 Table 1):

=====  ============================================  =============  ==========  ==========
name   :math:`a_l` (:math:`l = 1, 2..L, L+1`)        :math:`b_l`    :math:`c`   :math:`r`
=====  ============================================  =============  ==========  ==========
SP     0, 0, 0                                       0, 1/2, 1/2    1*          1/2
NTK    0, 1/2, 1/2                                   0, 0, 0        0           1/2
MF     0, –, 1   (:math:`L = 1`)                     0, –, 0        −1          0
μP     −1/2, 0, 1/2                                  1/2, 1/2, 1/2  0           0
=====  ============================================  =============  ==========  ==========

(*) SP is stable only with :math:`c \ge 1` (TP4 Thm. 4.1); ``abc("sp")`` uses the
fixed learning rate :math:`c = 0` practitioners use, which is unstable.

Example:
    >>> from ntk import mup
    >>> p = mup.abc("mup", depth=2)
    >>> p.r, p.regime
    (0.0, 'feature learning')
    >>> mup.abc("ntk", depth=2).regime
    'kernel'
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

from ntk import _checks

_TOL = 1e-9
PRESETS = ("sp", "ntk", "mf", "mup")
FORMS = ("tp4", "table3", "table8")


def _tuple(values, name: str, arg: str) -> tuple:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name}: `{arg}` must be a sequence of numbers; got {values!r}.")
    try:
        t = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: `{arg}` must be a sequence of numbers; got {values!r}.") from None
    if any(math.isnan(v) for v in t):
        raise ValueError(f"{name}: `{arg}` must not contain NaN; got {values!r}.")
    return t


@dataclasses.dataclass(frozen=True)
class ABC:
    r"""An abc-parametrization of an :math:`L`-hidden-layer MLP (TP4 Def. 3.1).

    Attributes:
      a: :math:`(a_1, \ldots, a_{L+1})`, multiplier exponents :math:`W^l = n^{-a_l} w^l`.
      b: :math:`(b_1, \ldots, b_{L+1})`, init exponents
        :math:`w^l \sim \mathcal{N}(0, n^{-2 b_l})`; :math:`b_{L+1} = \infty` means a
        zero-initialised readout.
      c: learning-rate exponent :math:`\eta n^{-c}`; a number, or one per layer
        (:math:`(c_1, \ldots, c_{L+1})`, the per-layer gauge of TP5's tables).
      name: a label.

    Example:
        >>> from ntk import mup
        >>> p = mup.ABC(a=(0, 0.5, 0.5), b=(0, 0, 0), c=0, name="ntk")   # L = 2
        >>> p.r, p.stable, p.regime
        (0.5, True, 'kernel')
        >>> p.shift(0.5).r                   # the symmetry (a + θ, b − θ, c − 2θ)
        0.5
    """

    a: tuple
    b: tuple
    c: Union[float, tuple] = 0.0
    name: str = "custom"

    def __post_init__(self):
        a = _tuple(self.a, "ABC", "a")
        b = _tuple(self.b, "ABC", "b")
        if len(a) < 2 or len(a) != len(b):
            raise ValueError(
                f"ABC: `a` and `b` need one entry per layer "
                f"(L + 1 >= 2 entries, equal lengths); got len(a)="
                f"{len(a)}, len(b)={len(b)}."
            )
        if any(math.isinf(v) for v in a) or any(math.isinf(v) for v in b[:-1]):
            raise ValueError(
                f"ABC: only the readout's b_{{L+1}} may be inf (zero init); got a={a}, b={b}."
            )
        if not isinstance(self.name, str):
            raise TypeError(f"ABC: `name` must be a str; got {type(self.name).__name__}.")
        c: float | tuple
        if isinstance(self.c, (int, float)) and not isinstance(self.c, bool):
            c = float(_checks.require_real(self.c, "c", "ABC"))
        else:
            c = _tuple(self.c, "ABC", "c")
            if len(c) != len(a):
                raise ValueError(
                    f"ABC: per-layer `c` needs {len(a)} entries (one per layer); got {len(c)}."
                )
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)

    # ----------------------------------------------------------- structure
    @property
    def depth(self) -> int:
        """:math:`L`, the number of hidden layers."""
        return len(self.a) - 1

    @property
    def c_l(self) -> tuple:
        r"""Per-layer learning-rate exponents :math:`(c_1, \ldots, c_{L+1})`."""
        return self.c if isinstance(self.c, tuple) else (self.c,) * len(self.a)

    def layer(self, l: int) -> tuple:
        r""":math:`(a_l, b_l, c_l)` of layer ``l`` (1-based, :math:`1 \le l \le L+1`)."""
        l = _checks.require_int(l, "l", "ABC.layer", minimum=1, maximum=len(self.a))
        return self.a[l - 1], self.b[l - 1], self.c_l[l - 1]

    def shift(self, theta) -> "ABC":
        r"""The symmetry
        :math:`(a_l, b_l, c_l) \to (a_l + \theta_l, b_l - \theta_l, c_l - 2\theta_l)`.

        TP4 Eq. (5): the weights :math:`W^l` and their SGD updates are unchanged,
        exactly at every width. ``theta`` is a number or one per layer.
        """
        th = (
            (float(_checks.require_real(theta, "theta", "ABC.shift")),) * len(self.a)
            if isinstance(theta, (int, float))
            else _tuple(theta, "ABC.shift", "theta")
        )
        if len(th) != len(self.a):
            raise ValueError(f"ABC.shift: `theta` needs {len(self.a)} entries; got {len(th)}.")
        c = tuple(cl - 2 * t for cl, t in zip(self.c_l, th))
        if len(set(c)) == 1:
            c = c[0]
        return ABC(
            tuple(x + t for x, t in zip(self.a, th)),
            tuple(x - t for x, t in zip(self.b, th)),
            c,
            self.name,
        )

    # -------------------------------------------------------------- theory
    @property
    def omega(self) -> float:
        r"""Readout coordinate exponent
        :math:`\omega = \min(a_{L+1}+b_{L+1}, 2a_{L+1}+c_{L+1})`."""
        return min(self.a[-1] + self.b[-1], 2 * self.a[-1] + self.c_l[-1])

    @property
    def r_l(self) -> tuple:
        r""":math:`(r_1, \ldots, r_L)`: layer :math:`l`'s own update moves :math:`h^l` by
        :math:`\Theta(n^{-r_l})`."""
        return tuple(
            self.omega + self.c_l[i] - 1 + 2 * self.a[i] + (i == 0) for i in range(self.depth)
        )

    @property
    def r(self) -> float:
        r"""The exponent in :math:`\Delta x^L = \Theta(n^{-r})` (TP4 Def. 3.2)."""
        return min(self.r_l)

    def conditions(self) -> dict:
        """The inequalities of TP4 Thm. 3.3 and Thm. 3.4, each True/False."""
        a, b, L = self.a, self.b, self.depth
        ab = [x + y for x, y in zip(a, b)]
        out_c = 2 * a[-1] + self.c_l[-1]
        return {
            "a_1 + b_1 = 0": abs(ab[0]) < _TOL,
            "a_l + b_l = 1/2 (2 <= l <= L)": all(abs(ab[i] - 0.5) < _TOL for i in range(1, L)),
            "a_{L+1} + b_{L+1} >= 1/2": ab[-1] >= 0.5 - _TOL,
            "r >= 0": self.r >= -_TOL,
            "2a_{L+1} + c >= 1": out_c >= 1 - _TOL,
            "a_{L+1} + b_{L+1} + r >= 1": ab[-1] + self.r >= 1 - _TOL,
        }

    @property
    def stable(self) -> bool:
        """Whether all of `conditions` hold (stability, TP4 Thm. 3.3)."""
        return all(self.conditions().values())

    @property
    def nontrivial(self) -> bool:
        """Whether :math:`a_{L+1}+b_{L+1}+r = 1` or :math:`2a_{L+1}+c = 1` (TP4 Thm. 3.4)."""
        return (
            abs(self.a[-1] + self.b[-1] + self.r - 1) < _TOL
            or abs(2 * self.a[-1] + self.c_l[-1] - 1) < _TOL
        )

    @property
    def feature_learning(self) -> bool:
        """Stable, nontrivial and :math:`r = 0` (TP4 Thm. 3.6)."""
        return self.stable and self.nontrivial and abs(self.r) < _TOL

    @property
    def kernel_regime(self) -> bool:
        """Stable, nontrivial and :math:`r > 0` (TP4 Thm. 3.8)."""
        return self.stable and self.nontrivial and self.r > _TOL

    @property
    def regime(self) -> str:
        """``"unstable"``, ``"trivial"``, ``"feature learning"`` or ``"kernel"``."""
        if not self.stable:
            return "unstable"
        if not self.nontrivial:
            return "trivial"
        return "feature learning" if abs(self.r) < _TOL else "kernel"

    def predicted_slopes(self) -> dict:
        r"""Width exponents (log-log slopes vs :math:`n`) of coordinate sizes after a few steps.

        ``"h^l"``: preactivations at init (0 in a stable parametrization;
        computed for a linear chain);
        ``"dh^l"``: their change, :math:`-\min_{m \le l} r_m` (TP4 §3, the change of
        layer :math:`l` is the sum of its own update and its input's change);
        ``"f"``: the output at init (:math:`1/2 - (a_{L+1} + b_{L+1})` when stable);
        ``"df"``: the output's change,
        :math:`\max(1 - 2a_{L+1} - c, 1 - a_{L+1} - b_{L+1} - r)` (the readout's update
        vs the features' change seen through the initial readout). Exponents of an
        unstable parametrization describe the first step only.
        """
        out = {}
        run = math.inf
        ab = [x + y for x, y in zip(self.a, self.b)]
        size = -ab[0]  # h¹ = W¹ξ sums d = O(1) terms of size n^{-(a_1+b_1)}
        for l in range(1, self.depth + 1):
            if l > 1:  # n independent terms: a factor n^{1/2}
                size = size + 0.5 - ab[l - 1]
            run = min(run, self.r_l[l - 1])
            out[f"h^{l}"] = size
            out[f"dh^{l}"] = -run
        out["f"] = size + 0.5 - ab[-1]
        out["df"] = max(1 - 2 * self.a[-1] - self.c_l[-1], 1 - ab[-1] - self.r)
        return out

    def summary(self) -> str:
        """One line: name, exponents, r and regime."""
        return f"{self.name}: a={self.a} b={self.b} c={self.c} r={self.r:g} -> {self.regime}"


def abc(
    name: Union[str, ABC],
    depth: int = 1,
    *,
    c: Optional[float] = None,
    form: str = "tp4",
    zero_readout: bool = False,
) -> ABC:
    r"""A named abc-parametrization of an ``depth``-hidden-layer MLP (TP4 Table 1).

    Args:
      name: ``"sp"``, ``"ntk"``, ``"mf"`` (depth 1 only, as in the paper) or
        ``"mup"``; an `ABC` is returned as is (after the zero-readout option).
      depth: :math:`L`, the number of hidden layers.
      c: learning-rate exponent; defaults: SP 0 (fixed LR; the paper's stable
        SP uses :math:`c = 1`), NTK 0, MF −1, μP 0.
      form: the gauge of μP (all three are the same parametrization under the
        symmetry of TP4 Eq. 5, exactly equal SGD trajectories):
        ``"tp4"`` — TP4 Def. 5.1: :math:`a = (-1/2, 0\ldots, 1/2)`, :math:`b = 1/2`,
        :math:`c = 0`;
        ``"table3"`` — TP5 Table 3: no multipliers, readout init variance
        :math:`\propto 1/\mathrm{fan\_in}^2`, per-layer learning rates
        :math:`\mathrm{fan\_out}` (input, biases), :math:`1` (hidden),
        :math:`1/\mathrm{fan\_in}` (readout);
        ``"table8"`` — TP5 Table 8 / the `mup` package: readout multiplier
        :math:`1/\mathrm{fan\_in}`, learning rates :math:`\mathrm{fan\_out}`, :math:`1`,
        :math:`\mathrm{fan\_in}`.
      zero_readout: initialise the readout at zero (:math:`b_{L+1} = \infty`; TP5 §4
        recommends it for μP; stability and :math:`r` are unchanged for μP).

    Example:
      >>> abc("sp", depth=2, c=1).regime
      'kernel'
    """
    if isinstance(name, ABC):
        p = name
    else:
        if not isinstance(name, str) or name.lower() not in PRESETS:
            raise ValueError(f"abc: `name` must be one of {PRESETS} or an ABC; got {name!r}.")
        _checks.require_int(depth, "depth", "abc")
        _checks.require_one_of(form, FORMS, "form", "abc")
        if c is not None:
            c = float(_checks.require_real(c, "c", "abc"))
        key, L = name.lower(), depth
        if key == "sp":
            p = ABC((0.0,) * (L + 1), (0.0,) + (0.5,) * L, 0.0 if c is None else c, "SP")
        elif key == "ntk":
            p = ABC((0.0,) + (0.5,) * L, (0.0,) * (L + 1), 0.0 if c is None else c, "NTK")
        elif key == "mf":
            if L != 1:
                raise ValueError(
                    "abc: the mean-field parametrization is defined "
                    "for one hidden layer (TP4 Table 1, depth=1); got "
                    f"depth={L}. Deeper MLPs: use 'mup', which equals "
                    "MF at depth 1 up to the symmetry of TP4 Eq. 5."
                )
            p = ABC((0.0, 1.0), (0.0, 0.0), -1.0 if c is None else c, "MF")
        else:
            p = ABC(
                (-0.5,) + (0.0,) * (L - 1) + (0.5,),
                (0.5,) * (L + 1),
                0.0 if c is None else c,
                "muP",
            )
            if form == "table3":
                p = p.shift((0.5,) + (0.0,) * (L - 1) + (-0.5,))
            elif form == "table8":
                p = p.shift((0.5,) + (0.0,) * (L - 1) + (0.5,))
            p = dataclasses.replace(p, name="muP" if form == "tp4" else f"muP[{form}]")
    if zero_readout:
        p = dataclasses.replace(p, b=p.b[:-1] + (math.inf,))
    return p


def as_abc(parametrization, depth: int) -> ABC:
    """An `ABC` from a preset name or an `ABC` (whose depth must be ``depth``)."""
    if isinstance(parametrization, ABC):
        if parametrization.depth != depth:
            raise ValueError(
                f"parametrize: the network has {depth} hidden layers but the "
                f"ABC has depth {parametrization.depth} "
                f"({len(parametrization.a)} entries in `a`)."
            )
        return parametrization
    if isinstance(parametrization, str):
        return abc(parametrization, depth)
    raise TypeError(
        f"parametrize: `parametrization` must be a preset name {PRESETS} "
        f"or an ABC; got {type(parametrization).__name__}."
    )
