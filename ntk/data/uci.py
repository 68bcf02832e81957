"""Offline tabular regression data: UCI Boston housing (ships with mlxtend),
scikit-learn's diabetes, and the other UCI regression sets from ``data_dir``.

Loaders return ``(x, y)``: ``x`` float64 of shape (n, d), ``y`` float64 of
shape (n,). `split` makes the usual random train/test split and standardises
features and targets with the training statistics.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ntk.data.images import _require

#: UCI regression sets of the deep-GP/DKM benchmarks and the file each is
#: read from in ``data_dir`` (whitespace- or comma-separated, target last).
UCI_FILES = {
    "boston": "housing.data",
    "concrete": "concrete.data",
    "energy": "energy.data",
    "kin8nm": "kin8nm.data",
    "naval": "naval.data",
    "power": "power.data",
    "protein": "protein.data",
    "wine": "wine.data",
    "yacht": "yacht.data",
}


def boston() -> tuple[np.ndarray, np.ndarray]:
    """UCI Boston housing as bundled with mlxtend: x (506, 13), y (506,) (MEDV)."""
    data = _require("mlxtend.data")
    x, y = data.boston_housing_data()
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes regression set: x (442, 10), y (442,)."""
    datasets = _require("sklearn.datasets")
    bunch = datasets.load_diabetes()
    return np.asarray(bunch.data, np.float64), np.asarray(bunch.target, np.float64)


def uci(name: str, data_dir: os.PathLike | str | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """A UCI regression set by name.

    Boston comes offline from mlxtend when ``data_dir`` is None; the others
    need ``data_dir/<file>`` as listed in `UCI_FILES` (target in the last column).
    """
    if name not in UCI_FILES:
        raise ValueError(f"name: expected one of {sorted(UCI_FILES)}, got {name!r}")
    if data_dir is None:
        if name == "boston":
            return boston()
        raise FileNotFoundError(
            f"data_dir: UCI {name!r} is not shipped; pass data_dir containing "
            f"{UCI_FILES[name]} (nothing is downloaded at run time)")
    path = Path(data_dir) / UCI_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"data_dir: expected {path} for UCI {name!r}; it is missing")
    text = path.read_text().replace(",", " ")
    table = np.loadtxt(text.splitlines(), dtype=np.float64)
    return table[:, :-1], table[:, -1]


def split(x: np.ndarray, y: np.ndarray, *, test_fraction: float = 0.1, seed: int = 0):
    """Random train/test split, standardised with the training statistics.

    Returns ``(x_train, y_train, x_test, y_test, y_scale)``; ``y_scale`` is the
    training target's standard deviation, to report RMSE in original units.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction}")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) != len(y):
        raise ValueError(f"x, y: expected the same number of rows, got {len(x)} and {len(y)}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    test, train = order[:n_test], order[n_test:]
    mx, sx = x[train].mean(0), x[train].std(0)
    sx = np.where(sx > 0, sx, 1.0)
    my, sy = y[train].mean(), y[train].std()
    return ((x[train] - mx) / sx, (y[train] - my) / sy,
            (x[test] - mx) / sx, (y[test] - my) / sy, float(sy))
