r"""N-way K-shot few-shot tasks over disjoint class sets (TP4 §8, MAML).

A task draws :math:`N` classes from a class set, :math:`K` support and :math:`Q` query
images per class, and relabels the classes by a random permutation of
:math:`0, \ldots, N-1` (so nothing can be memorised across tasks). Meta-training uses one
class set, meta-testing a disjoint one (Finn et al. 2017; Omniglot's
background / evaluation alphabets in TP4).

Omniglot is read from ``data_dir`` (``omniglot.npz`` with ``x_train, y_train,
x_test, y_test`` at 28×28, or the original ``images_background`` /
``images_evaluation`` PNG folders, resized to 28×28 with Pillow). Offline the
stand-in is ``source="glyphs"`` — procedurally drawn 28×28 characters
(`ntk.data.glyphs`: random stroke compositions, 1,200 of them by default,
jittered drawings on ruled paper), which like Omniglot need learned features —
or scikit-learn's 8×8 digits (or MNIST-5k) with the ten digits split into two
disjoint halves.

    >>> ds = fewshot_dataset()
    >>> rng = np.random.default_rng(0)
    >>> xs, ys, xq, yq = sample_tasks(ds.x_train, ds.y_train, 4, n_way=5,
    ...                               k_shot=1, q_query=3, rng=rng)
    >>> xs.shape, ys.shape, xq.shape
    ((4, 5, 64), (4, 5), (4, 15, 64))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ntk import _checks
from ntk.data import glyphs as _glyphs
from ntk.data.images import check_data_dir, rows

__all__ = ["FewShotData", "fewshot_dataset", "omniglot", "sample_tasks", "normalize_rows"]


class FewShotData(NamedTuple):
    """Flattened images ``x_* (N, d)`` float32 and labels ``y_*`` over two
    disjoint class sets (meta-train / meta-test); ``name`` of the data."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Center each flattened image and scale it to unit Euclidean norm."""
    x = rows(x, "x", "normalize_rows").reshape(len(x), -1)
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def _omniglot_folder(root: Path):
    from PIL import Image  # only needed for the raw Omniglot folders

    xs, ys, label = [], [], 0
    for alphabet in sorted(p for p in root.iterdir() if p.is_dir()):
        for char in sorted(p for p in alphabet.iterdir() if p.is_dir()):
            for png in sorted(char.glob("*.png")):
                img = Image.open(png).convert("L").resize((28, 28), Image.BILINEAR)  # type: ignore[attr-defined]  # Pillow's stubs name it Resampling.BILINEAR
                xs.append(1.0 - np.asarray(img, np.float32) / 255.0)
                ys.append(label)
            label += 1
    return np.stack(xs), np.asarray(ys, np.int64)


def omniglot(data_dir: os.PathLike | str) -> FewShotData:
    """Omniglot (background alphabets = meta-train, evaluation = meta-test)."""
    root = check_data_dir(data_dir, "omniglot")
    npz = root / "omniglot.npz"
    if npz.exists():
        d = np.load(npz)
        parts = [d["x_train"], d["y_train"], d["x_test"], d["y_test"]]
    elif (root / "images_background").is_dir() and (root / "images_evaluation").is_dir():
        xa, ya = _omniglot_folder(root / "images_background")
        xb, yb = _omniglot_folder(root / "images_evaluation")
        parts = [xa, ya, xb, yb]
    else:
        raise ValueError(
            f"omniglot: expected {npz} or the folders images_background/ "
            f"and images_evaluation/ in data_dir={str(root)!r}."
        )
    return FewShotData(
        normalize_rows(parts[0]),
        np.asarray(parts[1]),
        normalize_rows(parts[2]),
        np.asarray(parts[3]),
        "Omniglot",
    )


def fewshot_dataset(
    data_dir: os.PathLike | str | None = None,
    *,
    source: str = "digits",
    rotations: bool = True,
    pairs: bool = False,
    per_class: int = 40,
    distractors: int = 0,
    distractor_norm: float = 1.0,
    classes: int = 1200,
    seed: int = 0,
) -> FewShotData:
    r"""Omniglot if ``data_dir`` holds it, else an offline stand-in.

    ``source``: ``"glyphs"`` (`ntk.data.glyphs.glyphs`: ``classes`` generated
    characters × ``per_class`` drawings at 28×28, :math:`d = 784`, the last third of
    the characters for meta-test; ``rotations``, ``pairs`` and distractors do
    not apply), ``"digits"`` (scikit-learn 8×8, :math:`d = 64`) or ``"mnist_5k"``
    (:math:`d = 784`). With ``rotations`` each (digit, rotation by
    :math:`k \cdot 90^\circ`) is its own class — 40 classes, the augmentation Finn et al.
    2017 use on Omniglot — else the 10 digits. The classes are split into two disjoint
    halves by a permutation drawn from ``seed``. Rows are centered and unit-norm.

    ``pairs=True`` (instead of rotations) makes 100 classes: the ordered digit
    pairs :math:`(i, j)`, each image two digit images side by side, ``per_class``
    images per class. Like Omniglot characters built from shared strokes, new
    classes reuse parts (digits) seen in other classes; meta-train pairs use
    one half of the digit images and meta-test pairs the other half.

    ``distractors > 0`` appends that many nuisance coordinates to every image,
    i.i.d. Gaussian with total expected norm ``distractor_norm`` (fixed per
    image). They carry no class information, so a model that *learns
    features* can discard them on meta-train classes and keep doing so on the
    disjoint meta-test classes, while a fixed kernel cannot (the situation of
    TP4's Omniglot comparison).
    """
    name = "fewshot_dataset"
    _checks.require_one_of(source, ("glyphs", "digits", "mnist_5k"), "source", name)
    per_class = _checks.require_int(per_class, "per_class", name)
    distractors = _checks.require_int(distractors, "distractors", name, minimum=0)
    _checks.require_nonnegative(distractor_norm, "distractor_norm", name)
    seed = _checks.require_int(seed, "seed", name, minimum=0)
    if data_dir is not None:
        check_data_dir(data_dir, name)
        try:
            return omniglot(data_dir)
        except ValueError:
            pass
    if source == "glyphs":
        classes = _checks.require_int(classes, "classes", name, minimum=2)
        x_tr, y_tr, x_te, y_te = _glyphs.glyphs(classes, per_class, seed=seed)
        n_te = len(np.unique(y_te))
        return FewShotData(
            normalize_rows(x_tr),
            y_tr,
            normalize_rows(x_te),
            y_te,
            f"glyphs: {classes} generated stroke characters x {per_class} "
            f"drawings at 28x28, {classes - n_te}/{n_te} disjoint "
            f"meta-train/meta-test (offline stand-in for Omniglot)",
        )
    from ntk import data

    x, y = data.digits() if source == "digits" else data.mnist_5k()
    x = x[..., 0]
    rng = np.random.default_rng(seed)
    if pairs:
        order = rng.permutation(100)
        half = rng.permutation(len(x)) % 2
        parts = []
        for split, cls in ((0, order[:50]), (1, order[50:])):
            pool = {k: np.flatnonzero((y == k) & (half == split)) for k in range(10)}
            xs, ys = [], []
            for c in cls:
                i, j = divmod(int(c), 10)
                a = x[rng.choice(pool[i], per_class)]
                b = x[rng.choice(pool[j], per_class)]
                xs.append(np.concatenate([a, b], axis=2))
                ys.append(np.full(per_class, c))
            xc = normalize_rows(np.concatenate(xs))
            if distractors:
                noise = rng.normal(size=(len(xc), distractors))
                xc = np.concatenate(
                    [xc, (distractor_norm / np.sqrt(distractors)) * noise], axis=1
                ).astype(np.float32)
            parts += [xc, np.concatenate(ys)]
        extra = f" + {distractors} distractor dims" if distractors else ""
        name = (
            f"{source} pairs{extra}: 100 digit-pair classes, 50/50 disjoint "
            f"meta-train/meta-test (offline stand-in for Omniglot)"
        )
        return FewShotData(*parts, name)  # type: ignore[call-arg, arg-type]  # four arrays + name
    if rotations:
        x = np.concatenate([np.rot90(x, k, axes=(1, 2)) for k in range(4)])
        y = np.concatenate([4 * y + k for k in range(4)])
    n_classes = int(y.max()) + 1
    order = np.random.default_rng(seed).permutation(n_classes)
    tr = np.isin(y, order[: n_classes // 2])
    x = normalize_rows(x)
    if distractors:
        noise = np.random.default_rng(seed + 1).normal(size=(len(x), distractors))
        x = np.concatenate([x, (distractor_norm / np.sqrt(distractors)) * noise], axis=1).astype(
            np.float32
        )
    kind = "digit x 4 rotations" if rotations else "digit"
    extra = f" + {distractors} distractor dims" if distractors else ""
    name = (
        f"{source}{extra}: {n_classes} {kind} classes, disjoint halves for "
        f"meta-train/meta-test (offline stand-in for Omniglot)"
    )
    return FewShotData(x[tr], y[tr], x[~tr], y[~tr], name)


def sample_tasks(
    x: np.ndarray,
    y: np.ndarray,
    n_tasks: int,
    *,
    n_way: int = 5,
    k_shot: int = 1,
    q_query: int = 5,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:
    r"""Draw ``n_tasks`` N-way K-shot tasks from the classes present in ``y``.

    Returns ``(x_support (T, N·K, d), y_support (T, N·K), x_query (T, N·Q, d),
    y_query (T, N·Q))``; labels are :math:`0, \ldots, N-1` in a random order per task and
    support and query images are distinct.
    """
    name = "sample_tasks"
    n_tasks = _checks.require_int(n_tasks, "n_tasks", name)
    n_way = _checks.require_int(n_way, "n_way", name)
    k_shot = _checks.require_int(k_shot, "k_shot", name)
    q_query = _checks.require_int(q_query, "q_query", name)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{name}: `rng` must be a numpy.random.Generator (e.g. "
            f"np.random.default_rng(0)); got {type(rng).__name__}."
        )
    x = _checks.as_numpy(x, "x", name, nonempty=True)
    y = _checks.as_numpy(y, "y", name, ndim=1, what="(N,)")
    if len(x) != len(y):
        raise ValueError(
            f"{name}: `x` and `y` must have the same number of rows; got {len(x)} and {len(y)}."
        )
    classes = np.unique(y)
    if len(classes) < n_way:
        raise ValueError(
            f"{name}: `n_way`={n_way} needs at least that many classes in `y`; got {len(classes)}."
        )
    by_class = {c: np.flatnonzero(y == c) for c in classes}
    need = k_shot + q_query
    short = [c for c in classes if len(by_class[c]) < need]
    if short:
        raise ValueError(
            f"{name}: `k_shot` + `q_query` = {need} exceeds the images of class(es) {short[:5]}."
        )
    xs, ys, xq, yq = [], [], [], []
    for _ in range(n_tasks):
        chosen = rng.choice(classes, n_way, replace=False)
        s_idx, q_idx = [], []
        for c in chosen:
            idx = rng.choice(by_class[c], need, replace=False)
            s_idx.append(idx[:k_shot])
            q_idx.append(idx[k_shot:])
        labels = np.arange(n_way)
        xs.append(x[np.concatenate(s_idx)])
        ys.append(np.repeat(labels, k_shot))
        xq.append(x[np.concatenate(q_idx)])
        yq.append(np.repeat(labels, q_query))
    return (
        np.stack(xs),
        np.stack(ys).astype(np.int32),
        np.stack(xq),
        np.stack(yq).astype(np.int32),
    )
