r"""Procedural handwritten-like glyphs: an offline few-shot benchmark like Omniglot.

Each class is a random *character*: a composition of 2–4 pen strokes, every
stroke a cubic Bézier curve whose first control point is uniform in the
central 70 % of the canvas and whose next ones follow by Gaussian steps, and
a pen width per character. An *instance* of a class is one drawing of its
character: every control point is perturbed (the hand does not repeat a
stroke exactly), the drawing is moved by a small random affine map
(rotation, anisotropic scale, shear, translation), the pen width is
rescaled, it is drawn on a sheet — ruled lines (and, on half the sheets,
grid columns) at a random spacing and phase plus a shading ramp, an additive
field :math:`B(r, c) = p(r) + q(c)` — and pixel noise is added. Images are
``size × size`` (28 × 28, Omniglot's size in TP4 and Finn et al. 2017),
rendered with numpy only (see `render_glyphs`). All drawings are generated
in one vectorised pass: the default 1,200 characters × 20 drawings take about
2 s of CPU time.

**Why it needs feature learning.** Classes are independent random stroke
compositions, so there is no fixed pixel template a kernel could have been
built for, and the nuisance of one drawing (a shift of 1–2 pixels, a
rotation, a thinner pen) moves a thin stroke off much of the ink of another
drawing of the same character, while the sheet, different in every drawing
and about as strong as the ink, adds to every pixel inner product. A kernel
that is a function of pixel inner products and norms (the NTK and NNGP of a
network at initialisation, which one-shot kernel regression uses) therefore
compares a query with the one support drawing per class mostly through
nuisance. What transfers from meta-training characters to new ones is the
statistics of drawings: the sheet lives in the :math:`2 \cdot \mathtt{size} - 1`-dimensional
subspace of row-plus-column images, strokes are smooth curves a few pixels
wide, jitter is small. A representation learned on meta-training classes —
for the linear network of TP4's MAML limit, a learned metric
:math:`x^\top W^\top W x'` that can project the sheet out, pool neighbouring pixels and
damp noise — carries over to the disjoint meta-test characters; a frozen
kernel cannot.

Meta-train and meta-test characters are disjoint: they are different draws
of the character generator (class labels :math:`0, \ldots, \mathtt{n\_train} - 1` and
:math:`\mathtt{n\_train}, \ldots, \mathtt{n\_classes} - 1`). Everything is deterministic
given ``seed``.

    >>> x_tr, y_tr, x_te, y_te = glyphs(n_classes=30, per_class=3, seed=0)
    >>> x_tr.shape, x_tr.dtype, x_te.shape, sorted(set(y_tr) & set(y_te))
    ((60, 28, 28), dtype('float32'), (30, 28, 28), [])
"""

from __future__ import annotations

import numpy as np

from ntk import _checks

__all__ = ["DEFAULT_JITTER", "glyph_characters", "render_glyphs", "glyphs"]

#: The default per-instance nuisance, as control-point jitter and translation in
#: pixels (standard deviations), rotation in radians, log-scale / shear /
#: log-pen-width standard deviations, the standard deviation of the additive
#: pixel noise (ink is in :math:`[0, 1]`), the intensity of the sheet's lines and the
#: standard deviation of its shading slope (the sheet, see ``render_glyphs``).
DEFAULT_JITTER = {
    "point": 0.8,
    "shift": 1.5,
    "rotate": 0.15,
    "scale": 0.08,
    "shear": 0.08,
    "width": 0.2,
    "noise": 0.15,
    "lines": 0.6,
    "shade": 0.5,
}


def glyph_characters(
    n_classes: int, *, size: int = 28, strokes: tuple[int, int] = (2, 4), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Draw ``n_classes`` random characters.

    Returns ``(points (C, S, 4, 2), used (C, S) bool, width (C,))``: the
    cubic Bézier control points of up to ``S = strokes[1]`` strokes per
    character in pixel coordinates (the first uniform in the central 70 % of
    the canvas, each next one a :math:`\mathcal{N}\big(0, (0.22 \cdot \mathtt{size})^2\big)`
    step from the previous, clipped to that region), which of them are drawn
    (``strokes[0]`` to ``strokes[1]`` strokes, uniformly), and the pen width in pixels
    (uniform in :math:`[1.2, 2.4]`).
    """
    name = "glyph_characters"
    n_classes = _checks.require_int(n_classes, "n_classes", name)
    size = _checks.require_int(size, "size", name, minimum=8)
    seed = _checks.require_int(seed, "seed", name, minimum=0)
    if (
        not isinstance(strokes, tuple)
        or len(strokes) != 2
        or not all(isinstance(s, int) for s in strokes)
        or not 1 <= strokes[0] <= strokes[1]
    ):
        raise ValueError(
            f"{name}: `strokes` must be a tuple (min, max) of ints with "
            f"1 <= min <= max; got {strokes!r}."
        )
    rng = np.random.default_rng([seed, 0x9179])
    s_max = strokes[1]
    lo, hi = 0.15 * (size - 1), 0.85 * (size - 1)
    # Steps from the previous control point rather than four independent
    # points: strokes come out as pen-like arcs, not criss-crossing scribbles.
    start = rng.uniform(lo, hi, (n_classes, s_max, 1, 2))
    steps = rng.normal(0.0, 0.22 * size, (n_classes, s_max, 3, 2))
    points = np.clip(start + np.concatenate([np.zeros_like(start), np.cumsum(steps, 2)], 2), lo, hi)
    n_used = rng.integers(strokes[0], strokes[1] + 1, n_classes)
    used = np.arange(s_max)[None, :] < n_used[:, None]
    width = rng.uniform(1.2, 2.4, n_classes)
    return points, used, width


def _bezier(points: np.ndarray, samples: int) -> np.ndarray:
    """Cubic Bézier ``(..., 4, 2)`` → ``samples`` points along it ``(..., samples, 2)``."""
    t = np.linspace(0.0, 1.0, samples, dtype=points.dtype)[:, None]
    basis = np.concatenate([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3], 1)
    return np.einsum("tk,...kd->...td", basis, points)


def render_glyphs(
    points: np.ndarray,
    used: np.ndarray,
    width: np.ndarray,
    labels: np.ndarray,
    *,
    size: int = 28,
    samples: int = 40,
    jitter: dict | None = None,
    rng: np.random.Generator,
) -> np.ndarray:
    r"""Render one jittered drawing of character ``labels[i]`` per entry.

    Rasterisation: ``samples`` points along each stroke deposit their share
    of the stroke's length bilinearly on the pixel grid (a line density
    :math:`\rho`), which is blurred by a Gaussian pen of standard deviation
    :math:`\sigma = w / 2.5` (separable: :math:`G \rho G^\top` per image) and saturated,
    :math:`\mathrm{ink} = \tanh\big(2 \sqrt{2\pi}\, \sigma \cdot (G \rho G^\top)\big)`
    (:math:`\approx 1` on a stroke's centre line, a soft edge of about the pen width
    :math:`w`).

    Args:
      points, used, width: characters from `glyph_characters`.
      labels: ``(N,)`` character indices.
      jitter: overrides of `DEFAULT_JITTER` (all zero: the character itself).
      rng: the generator all nuisance is drawn from.

    Returns:
      ``(N, size, size)`` float32 images: ink in :math:`[0, 1)` plus the sheet
      (drawn by the private ``_paper``) plus i.i.d.
      :math:`\mathcal{N}(0, \mathtt{noise}^2)` pixel noise.

    Example (one clean drawing of each of three characters):
        >>> chars = glyph_characters(3, seed=0)
        >>> clean = {k: 0.0 for k in DEFAULT_JITTER}
        >>> img = render_glyphs(*chars, np.arange(3), jitter=clean,
        ...                     rng=np.random.default_rng(0))
        >>> img.shape, bool(0.9 < img.max() < 1.0), float(img.min())
        ((3, 28, 28), True, 0.0)
    """
    name = "render_glyphs"
    j = dict(DEFAULT_JITTER)
    if jitter is not None:
        unknown = set(jitter) - set(j)
        if unknown:
            raise ValueError(
                f"{name}: `jitter` keys must be among {sorted(j)}; got unknown {sorted(unknown)}."
            )
        j.update({k: float(v) for k, v in jitter.items()})
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{name}: `rng` must be a numpy.random.Generator; got {type(rng).__name__}."
        )
    labels = np.asarray(labels)
    n = len(labels)
    pts = points[labels] + rng.normal(0.0, j["point"], (n,) + points.shape[1:])
    c = (size - 1) / 2
    ang = rng.normal(0.0, j["rotate"], n)
    sx, sy = np.exp(rng.normal(0.0, j["scale"], (2, n)))
    sh = rng.normal(0.0, j["shear"], n)
    cos, sin = np.cos(ang), np.sin(ang)
    # A = R(ang) · [[sx, sh], [0, sy]], applied about the canvas centre.
    A = np.stack(
        [
            np.stack([cos * sx, cos * sh - sin * sy], -1),
            np.stack([sin * sx, sin * sh + cos * sy], -1),
        ],
        -2,
    )  # (N, 2, 2)
    shift = rng.normal(0.0, j["shift"], (n, 2))
    pts = np.einsum("nij,nskj->nski", A, pts - c) + c + shift[:, None, None, :]
    sigma = width[labels] * np.exp(rng.normal(0.0, j["width"], n)) / 2.5
    line = _bezier(pts.astype(np.float32), samples)  # (N, S, P, 2)
    # each sample carries the length of the curve around it
    seg = np.sqrt((np.diff(line, axis=2) ** 2).sum(-1))
    mass = np.zeros(line.shape[:3], np.float32)
    mass[..., 1:] += 0.5 * seg
    mass[..., :-1] += 0.5 * seg
    mass *= used[labels][:, :, None]
    base = np.floor(line)
    frac = line - base
    cell = base.astype(np.int64)
    img = (np.arange(n) * size * size)[:, None, None]
    idx, wts = [], []
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = cell[..., 0] + dx, cell[..., 1] + dy
        w = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])
        ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
        idx.append((img + yi * size + xi)[ok])
        wts.append((w * mass)[ok])
    rho = np.bincount(np.concatenate(idx), np.concatenate(wts), minlength=n * size * size)
    rho = rho.reshape(n, size, size)
    # Pen widths on a grid of 2 % steps (invisible at 28 px) so that each
    # level is one large matrix product instead of n small ones.
    level = np.round(np.log(sigma) / 0.02).astype(np.int64)
    grid = np.arange(size, dtype=np.float64)
    out = np.empty(rho.shape, np.float64)
    for lv in np.unique(level):
        sel = np.flatnonzero(level == lv)
        s = float(np.exp(0.02 * lv))
        g = np.exp(-((grid[:, None] - grid[None, :]) ** 2) / (2 * s * s)) / (np.sqrt(2 * np.pi) * s)
        blurred = (rho[sel] @ g).transpose(0, 2, 1) @ g  # (G ρ Gᵀ)ᵀ, G symmetric
        out[sel] = np.tanh(2 * np.sqrt(2 * np.pi) * s * blurred.transpose(0, 2, 1))
    out += _paper(n, size, j["lines"], j["shade"], rng)
    out += rng.normal(0.0, j["noise"], out.shape)
    return out.astype(np.float32)


def _paper(n: int, size: int, lines: float, shade: float, rng: np.random.Generator) -> np.ndarray:
    """The sheet each drawing is on: ``B(r, c) = p(r) + q(c)``, ``(n, size, size)``.

    ``p`` holds ruled lines (a 1-px Gaussian profile every 4–8 rows at a
    random phase, intensity ``lines · U(0.5, 1)``) plus a linear shading
    ramp (slope ``N(0, shade²)`` across the sheet); ``q`` the same for
    columns, whose lines are present on half of the sheets (grid paper).
    """
    r = np.arange(size, dtype=np.float64)
    period = rng.uniform(4.0, 8.0, (2, n, 1))
    dist = np.mod(r - rng.uniform(0.0, 1.0, (2, n, 1)) * period, period)
    dist = np.minimum(dist, period - dist)
    amp = lines * rng.uniform(0.5, 1.0, (2, n, 1))
    amp[1] *= rng.random((n, 1)) < 0.5
    ramp = rng.normal(0.0, shade, (2, n, 1)) * (r - (size - 1) / 2) / size
    p, q = amp * np.exp(-0.5 * (dist / 0.6) ** 2) + ramp
    return p[:, :, None] + q[:, None, :]


def glyphs(
    n_classes: int = 1200,
    per_class: int = 20,
    *,
    n_test_classes: int | None = None,
    size: int = 28,
    strokes: tuple[int, int] = (2, 4),
    jitter: dict | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""The glyph benchmark: ``per_class`` drawings of each of ``n_classes`` characters.

    Meta-test gets the last ``n_test_classes`` characters (default: 1/3 of
    them, about Omniglot's 659 of 1,623), meta-train the others; the two
    character sets are disjoint draws. Generation is vectorised: 1,200
    characters × 20 drawings take seconds.

    Returns:
      ``(x_train (N_tr, size, size), y_train (N_tr,), x_test, y_test)``, images
      float32 and labels int64 (train labels :math:`< \mathtt{n\_train} \le` test labels).
    """
    name = "glyphs"
    n_classes = _checks.require_int(n_classes, "n_classes", name, minimum=2)
    per_class = _checks.require_int(per_class, "per_class", name)
    if n_test_classes is None:
        n_test_classes = max(1, n_classes // 3)
    n_test_classes = _checks.require_int(n_test_classes, "n_test_classes", name)
    if n_test_classes >= n_classes:
        raise ValueError(
            f"{name}: `n_test_classes` must leave a meta-train class "
            f"(< n_classes={n_classes}); got {n_test_classes}."
        )
    points, used, width = glyph_characters(n_classes, size=size, strokes=strokes, seed=seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    x = render_glyphs(
        points,
        used,
        width,
        labels,
        size=size,
        jitter=jitter,
        rng=np.random.default_rng([seed, 0x5EED]),
    )
    tr = labels < n_classes - n_test_classes
    return x[tr], labels[tr], x[~tr], labels[~tr]
