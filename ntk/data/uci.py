"""Offline tabular regression data: UCI Boston housing (ships with mlxtend),
scikit-learn's diabetes, and the other UCI regression sets from ``data_dir``.

Loaders return ``(x, y)``: ``x`` float64 of shape (n, d), ``y`` float64 of
shape (n,). `split` makes the usual random train/test split and standardises
features and targets with the training statistics (`standardised_split` does
the same for given row indices); ``uci_split_indices`` reads the benchmarks'
standard split files when ``data_dir`` has them.
"""

from __future__ import annotations

import os

import numpy as np

from ntk import _checks
from ntk.data.images import check_data_dir

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
    """UCI Boston housing as bundled with mlxtend: x (506, 13), y (506,) (MEDV).

    Example:
      >>> from ntk.data import boston
      >>> x, y = boston()                      # offline: ships with mlxtend
      >>> x.shape, y.shape, x.dtype
      ((506, 13), (506,), dtype('float64'))
    """
    data = _checks.optional_import("mlxtend.data")
    x, y = data.boston_housing_data()
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes regression set: x (442, 10), y (442,).

    Example:
      >>> from ntk.data import diabetes
      >>> x, y = diabetes()                    # offline: ships with scikit-learn
      >>> x.shape, y.shape
      ((442, 10), (442,))
    """
    datasets = _checks.optional_import("sklearn.datasets")
    bunch = datasets.load_diabetes()
    return np.asarray(bunch.data, np.float64), np.asarray(bunch.target, np.float64)


def uci(name: str, data_dir: os.PathLike | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A UCI regression set by name.

    Boston comes offline from mlxtend when ``data_dir`` is None; the others
    need ``data_dir/<file>`` as listed in `ntk.data.UCI_FILES` (target in the last column).

    Example:
      >>> from ntk.data import uci
      >>> [a.shape for a in uci("boston")]
      [(506, 13), (506,)]
      >>> uci("yacht")                         # not shipped: needs data_dir/yacht.data
      Traceback (most recent call last):
        ...
      FileNotFoundError: data_dir: UCI 'yacht' is not shipped; pass data_dir containing ...
    """
    _checks.require_one_of(name, sorted(UCI_FILES), "name", "uci")
    if data_dir is None:
        if name == "boston":
            return boston()
        raise FileNotFoundError(
            f"data_dir: UCI {name!r} is not shipped; pass data_dir containing "
            f"{UCI_FILES[name]} (nothing is downloaded at run time)"
        )
    path = check_data_dir(data_dir, "uci") / UCI_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"data_dir: expected {path} for UCI {name!r}; it is missing")
    text = path.read_text().replace(",", " ")
    table = np.loadtxt(text.splitlines(), dtype=np.float64, ndmin=2)
    if table.shape[1] < 2 or not np.all(np.isfinite(table)):
        raise ValueError(
            f"uci: {path} must hold a finite numeric table with at "
            f"least one feature column and the target last; got shape "
            f"{table.shape} with {int(np.sum(~np.isfinite(table)))} "
            f"non-finite entries."
        )
    return table[:, :-1], table[:, -1]


def uci_split_indices(
    name: str, data_dir: os.PathLike | str, n_rows: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    r"""The standard train/test splits of a UCI set, if ``data_dir`` has them.

    The deep-GP benchmarks' split files (Hernández-Lobato & Adams 2015's layout)
    are ``index_train_{i}.txt`` / ``index_test_{i}.txt``, :math:`i = 0, 1, \ldots`, one
    0-based row index per line, in ``data_dir/<name>/`` or
    ``data_dir/<name>/data/``. Returns ``[(train_idx, test_idx), …]`` (int64)
    for :math:`i = 0, 1, \ldots` up to the first missing pair, or ``[]`` when there is
    none.

    Raises ValueError naming the file if an index file is not a list of
    integers, an index is outside :math:`[0, \mathtt{n\_rows})` (when ``n_rows`` is
    given), a split's train and test overlap, or a train file is empty.

        >>> uci_split_indices("boston", "/data/uci")[0][1][:3]     # doctest: +SKIP
        array([ 12,  45, 301])
    """
    _checks.require_one_of(name, sorted(UCI_FILES), "name", "uci_split_indices")
    base = check_data_dir(data_dir, "uci_split_indices")
    folder = next(
        (d for d in (base / name, base / name / "data") if (d / "index_train_0.txt").is_file()),
        None,
    )
    if folder is None:
        return []
    out = []
    i = 0
    while (folder / f"index_train_{i}.txt").is_file():
        pair = []
        for kind in ("train", "test"):
            path = folder / f"index_{kind}_{i}.txt"
            if not path.is_file():
                raise ValueError(
                    f"uci_split_indices: {path} is missing while "
                    f"index_train_{i}.txt exists; a split needs both files."
                )
            try:
                idx = np.loadtxt(path, dtype=np.float64, ndmin=1)
            except ValueError as e:
                raise ValueError(
                    f"uci_split_indices: {path} must hold one integer row index per line ({e})."
                ) from None
            if not np.all(idx == np.round(idx)):
                raise ValueError(
                    f"uci_split_indices: {path} must hold integer row "
                    f"indices; got non-integers such as "
                    f"{idx[idx != np.round(idx)][:3].tolist()}."
                )
            idx = idx.astype(np.int64)
            if n_rows is not None and idx.size and (idx.min() < 0 or idx.max() >= n_rows):
                raise ValueError(
                    f"uci_split_indices: {path} indexes rows "
                    f"{idx.min()}…{idx.max()}; the data has {n_rows} rows "
                    f"(0-based indices expected)."
                )
            pair.append(idx)
        if pair[0].size == 0:
            raise ValueError(f"uci_split_indices: {folder}/index_train_{i}.txt is empty.")
        if np.intersect1d(pair[0], pair[1]).size:
            raise ValueError(
                f"uci_split_indices: split {i} in {folder} has rows in both "
                f"train and test, e.g. "
                f"{np.intersect1d(pair[0], pair[1])[:3].tolist()}."
            )
        out.append((pair[0], pair[1]))
        i += 1
    return out


def split(x: np.ndarray, y: np.ndarray, *, test_fraction: float = 0.1, seed: int = 0):
    """Random train/test split, standardised with the training statistics.

    Returns ``(x_train, y_train, x_test, y_test, y_scale)``; ``y_scale`` is the
    training target's standard deviation, to report RMSE in original units
    (1 when the training targets are constant; constant features and targets
    are only centred). At least one row is kept for training.

    Example:
      >>> import numpy as np
      >>> from ntk.data import split
      >>> x, y = np.arange(20.0).reshape(10, 2), np.arange(10.0)
      >>> x_tr, y_tr, x_te, y_te, y_scale = split(x, y, test_fraction=0.2, seed=0)
      >>> x_tr.shape, x_te.shape, round(float(y_tr.mean()), 6), round(float(y_tr.std()), 6)
      ((8, 2), (2, 2), 0.0, 1.0)
    """
    name = "split"
    _checks.require_real(
        test_fraction, "test_fraction", name, low=0, high=1, low_open=True, high_open=True
    )
    seed = _checks.require_int(seed, "seed", name, minimum=0)
    x, y = _check_xy(x, y, name)
    if len(x) < 2:
        raise ValueError(
            f"{name}: `x` must have at least 2 rows (one to train on, one to test); got {len(x)}."
        )
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = min(max(1, int(round(test_fraction * len(x)))), len(x) - 1)
    return _standardise(x, y, order[n_test:], order[:n_test])


def standardised_split(x: np.ndarray, y: np.ndarray, train, test):
    r"""Rows ``train`` / ``test`` of ``(x, y)``, standardised as `split` does.

    With the training rows' feature means :math:`\mu_x` and standard deviations
    :math:`\sigma_x` (1 for a constant feature) and target mean :math:`\mu_y` and standard
    deviation :math:`\sigma_y` (1 for constant targets): :math:`x \mapsto (x - \mu_x)/\sigma_x`
    and :math:`y \mapsto (y - \mu_y)/\sigma_y` on both sets, so nothing of the test rows
    leaks into the scaling (e.g. for the index files of
    ``ntk.data.uci.uci_split_indices``).

    Args:
      x: ``(n, d)`` features; y: ``(n,)`` targets.
      train, test: 1-D integer row indices (``train`` non-empty).

    Returns ``(x_train, y_train, x_test, y_test, y_scale)`` with
    :math:`\mathtt{y\_scale} = \sigma_y`.

    Example:
      >>> import numpy as np
      >>> from ntk.data import standardised_split
      >>> x, y = np.array([[0.], [2.], [9.]]), np.array([1., 3., 0.])
      >>> x_tr, y_tr, x_te, y_te, y_scale = standardised_split(x, y, [0, 1], [2])
      >>> x_tr[:, 0].tolist(), x_te[:, 0].tolist(), y_scale
      ([-1.0, 1.0], [8.0], 1.0)
    """
    name = "standardised_split"
    x, y = _check_xy(x, y, name)
    train = _checks.require_indices(np.asarray(train), len(x), "train", name)
    test = _checks.require_indices(np.asarray(test), len(x), "test", name, nonempty=False)
    return _standardise(x, y, train, test)


def _check_xy(x, y, name):
    """``(x, y)`` as float64 ``(n, d)`` and ``(n,)`` NumPy arrays."""
    x = _checks.as_numpy(x, "x", name, ndim=2, what="(n, d)", dtype=np.float64)
    y = _checks.as_numpy(y, "y", name, ndim=1, what="(n,)", dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(
            f"{name}: `x` and `y` must have the same number of rows; got {len(x)} and {len(y)}."
        )
    return x, y


def _standardise(x, y, train, test):
    mx, sx = x[train].mean(0), x[train].std(0)
    sx = np.where(sx > 0, sx, 1.0)
    my, sy = y[train].mean(), y[train].std()
    sy = sy if sy > 0 else 1.0  # constant training targets: centred only
    return (
        (x[train] - mx) / sx,
        (y[train] - my) / sy,
        (x[test] - mx) / sx,
        (y[test] - my) / sy,
        float(sy),
    )
