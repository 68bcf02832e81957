"""Simon, Karkada, Ghosh & Belkin 2024: the paper's tables beside ours.

A part of the ``simon24_rf`` experiment (registered there as ``ridge_table``,
after ``conv_ntk``, whose convolutional NTK and (α, β) it reuses from
``run.state``): kernel ridge regression with that kernel on the same images,
label noise σ² = σ²_rel × the noiseless ridgeless test MSE, and per σ²_rel the
optimal ridge, the test MSE there, the fitting ratio E_tr/E_te there and the
test MSE at ridge 1e-6 (`ntk.random_features.krr_ridge_table`) — beside the paper's table (`PAPER_RIDGE_TABLE`) and
the eigenframework's optimal fitting ratio at our (α, β)
(`ntk.random_features.optimal_fitting_ratio`). `paper_rf_vs_k_rows` puts the
paper's random-feature table (best-ridge test MSE against k) beside the
``image`` part's envelope, k by k.
"""

from __future__ import annotations

import numpy as np

from experiments import results
from experiments.registry import Result, Run
from ntk import random_features as rf

#: The paper's optimal-ridge table (Myrtle-10 CNTK, 5 trials, 50 ridges
#: log-spaced 1e-6…1e4, 8,000 test points, train size not recorded): per
#: dataset, the noiseless ridgeless test MSE and, per relative noise σ²_rel
#: (σ² = σ²_rel × that MSE, targets renormalised after noise), (optimal ridge,
#: test MSE there, fitting ratio E_tr/E_te there, test MSE at ridge 1e-6).
#: MNIST's optimal ridge "≤ 1e-6" (the grid's edge) and fitting ratio "≈ 0.001"
#: are bounds: stored as 1e-6 and 0.001.
PAPER_RIDGE_TABLE = {
    "cifar10": {
        "noiseless_mse": 0.4814,
        "rows": {
            0: (4.1e-6, 0.478, 0.030, 0.479),
            1: (1.7e-5, 0.668, 0.176, 0.682),
            5: (1.8e-4, 0.881, 0.718, 0.940),
            50: (2.9e-3, 0.989, 0.968, 1.107),
        },
    },
    "svhn": {
        "noiseless_mse": 0.4412,
        "rows": {
            0: (4.1e-6, 0.398, 0.053, 0.401),
            1: (1.7e-5, 0.606, 0.230, 0.624),
            5: (1.1e-4, 0.856, 0.652, 0.927),
            50: (1.8e-3, 0.990, 0.954, 1.131),
        },
    },
    "mnist": {
        "noiseless_mse": 0.0404,
        "rows": {
            0: (1e-6, 0.0386, 0.001, 0.0386),
            1: (1e-6, 0.0765, 0.001, 0.0765),
            5: (4.3e-5, 0.206, 0.159, 0.209),
            50: (7.2e-4, 0.702, 0.796, 0.756),
        },
    },
}
#: The paper's RF regression on binarised CIFAR-10 at n = 256: best-ridge test
#: MSE against the number of features k (45 trials).
PAPER_RF_VS_K = {
    10: 0.906,
    31: 0.834,
    100: 0.789,
    316: 0.757,
    1000: 0.738,
    3162: 0.730,
    10000: 0.727,
}


def _at_k(sweep: np.ndarray, values: np.ndarray, k: float) -> tuple[float, str]:
    """``values`` (one per swept k) at ``k``: the swept value when k is swept,
    else linear interpolation in log k between its two neighbours; NaN outside
    the sweep. Returns the value and how it was read."""
    if k < sweep[0] or k > sweep[-1]:
        return float("nan"), f"outside our sweep {int(sweep[0])}…{int(sweep[-1])}"
    j = int(np.searchsorted(sweep, k))
    if sweep[j] == k:
        return float(values[j]), f"swept k = {k}"
    lo, hi = j - 1, j
    t = (np.log(k) - np.log(sweep[lo])) / (np.log(sweep[hi]) - np.log(sweep[lo]))
    value = float((1 - t) * values[lo] + t * values[hi])
    return value, f"interpolated in log k between k = {int(sweep[lo])} and {int(sweep[hi])}"


def paper_rf_vs_k_rows(config, m, img_name, setting) -> list:
    """The paper's best-ridge RF test MSE vs k (binarised CIFAR-10, n = 256)
    beside ours and the theory's (the image part's optimal-ridge envelopes).

    On CIFAR-10 in the paper's setting at n = 256, one row per k of the paper's
    table: ours and the theory's at that k (interpolated in log k when our
    sweep does not hold it), checked within 5% of the paper's. Otherwise one
    row with the whole table, not comparable, that says why.
    """
    sweep = np.asarray(config.sweep, float)
    env = np.asarray(m["image_envelope_vs_k_experiment"])
    env_th = np.asarray(m["image_envelope_vs_k_theory"])
    paper = ", ".join(f"k={k}: {v}" for k, v in PAPER_RF_VS_K.items())
    ours_setting = (
        f"ours in {setting.describe()}, optimal ridge over its grid, n = {config.fixed}, "
        "test MSE on the whole pool (the theory's measure; the paper: held-out points)"
    )
    comparable = img_name == "CIFAR-10" and setting.name == "paper" and config.fixed == 256
    if not comparable:
        at = [(k, _at_k(sweep, env, k), _at_k(sweep, env_th, k)[0]) for k in PAPER_RF_VS_K]
        inside = [(k, v, th) for k, (v, _), th in at if np.isfinite(v)]
        why = (
            f"the paper's numbers are for binarised CIFAR-10 in its RF setting at n = 256; "
            f"ours are on {img_name} in "
            + (
                "its setting"
                if setting.name == "paper"
                else "our setting (the offline default keeps it; rf_setting='paper' "
                "selects the paper's)"
            )
            + f" at n = {config.fixed}"
        )
        return [
            results.comparison(
                f"best-ridge RF test MSE vs k at n = {config.fixed}",
                paper,
                ", ".join(f"k={k}: {v:.3f}" for k, v, _ in inside) or "no k in our sweep",
                "paper: 45 trials, 31 ridges 1e-3…1e2 (absolute); " + ours_setting,
                theory=", ".join(f"k={k}: {th:.3f}" for k, _, th in inside) or None,
                not_comparable=why,
            )
        ]
    rows = []
    for k, v in PAPER_RF_VS_K.items():
        ours, how = _at_k(sweep, env, k)
        theory, _ = _at_k(sweep, env_th, k)
        quantity = f"best-ridge RF test MSE, binarised CIFAR-10, n = 256, k = {k}"
        note = f"{how}; {ours_setting}"
        if not np.isfinite(ours):
            rows.append(
                results.comparison(quantity, v, "—", note, not_comparable=f"k = {k} is {how}")
            )
            continue
        # 5%: the paper's 45-trial means against ours, on a pool of
        # config.pool images rather than its held-out test set
        rows.append(
            results.comparison(quantity, v, round(ours, 4), note, theory=round(theory, 4), rel=0.05)
        )
    return rows


METRICS = {
    "ridge_table": {
        "noiseless_mse": "ridgeless noiseless test MSE E₀",
        "n_train": "training points",
        "rows": "per σ²_rel: (optimal ridge, test MSE there, E_tr/E_te there, test MSE at "
        "ridge 1e-6)",
        "theory_fit_ratio": "per σ²_rel: the eigenframework's optimal E_tr/E_te at our (α, β)",
        "dataset": "the paper's row we compare with",
    }
}


def ridge_table_part(run: Run) -> Result:
    """The paper's optimal-ridge table on our convolutional NTK of the same images."""
    config, st = run.config, run.state
    out, theory, n_test = _ridge_table_compute(run)
    table = _ridge_table_rows(config, st.paper_ds, out, theory, n_test)
    metrics = {
        "ridge_table": {
            "noiseless_mse": out["noiseless_mse"],
            "n_train": out["n_train"],
            "rows": {str(k): v for k, v in out["rows"].items()},
            "theory_fit_ratio": {str(k): v for k, v in theory.items()},
            "dataset": st.paper_ds,
        }
    }
    return Result(metrics=metrics, rows=table, data=f"images: {st.img_name}")


def _ridge_table_compute(run: Run) -> tuple[dict, dict, int]:
    """`ntk.random_features.krr_ridge_table` on the conv NTK (ridges relative to
    its mean diagonal) and the eigenframework's optimal fitting ratio per σ²_rel
    at the kernel's (α, β) size proxies: ``(table, {σ²_rel: ratio}, n_test)``."""
    config, eig = run.config, run.state.eig
    kernel, y = eig["kernel"], np.asarray(eig["y"], np.float64)
    scale = float(np.mean(np.diag(kernel)))
    n_test = min(config.ridge_test, len(y) // 2)
    ridges = np.logspace(-6, 4, config.ridge_count)
    out = rf.krr_ridge_table(
        kernel / scale,
        y,
        config.ridge_rel_noises,
        ridges,
        config.ridge_trials,
        n_test,
        config.seed + 7,
    )
    theory = {}
    for rel in run.progress(list(out["rows"]), "σ²_rel"):
        try:
            theory[rel] = rf.optimal_fitting_ratio(
                eig["alpha_proxy"], eig["beta_proxy"], out["n_train"], rel * out["noiseless_mse"]
            )[0]
        except ValueError:  # a proxy exponent that is not positive (tiny sizes)
            theory[rel] = float("nan")
    return out, theory, n_test


def _ridge_table_rows(config, ds: str, out: dict, theory: dict, n_test: int) -> list:
    """The paper's row per σ²_rel beside ours and the theory's, then the trend
    of the fitting ratio with noise and the noiseless optimum's."""
    paper = PAPER_RIDGE_TABLE[ds]
    what = {"conv2": "2-layer conv NTK", "myrtle5": "Myrtle-5 NTK", "myrtle10": "Myrtle-10 NTK"}[
        config.kernel
    ]
    why = (
        f"the paper's train size is not recorded and its Myrtle-10 kernel sees the full "
        f"{ds}; ours: {what} on {config.cntk_side}² images, {out['n_train']} train / "
        f"{n_test} test points, ridges relative to the kernel's mean diagonal"
    )
    fmt = lambda r, le="", approx="": (
        f"ridge {le}{r[0]:.2g}, MSE {r[1]:.3g}, E_tr/E_te {approx}{r[2]:.3g}, MSE(1e-6) {r[3]:.3g}"
    )
    # MNIST's noiseless and σ²_rel = 1 optima sit at the grid's edge: the
    # paper's ridge is a bound (≤ 1e-6) and its fitting ratio approximate
    paper_fmt = lambda r: fmt(r, "≤ ", "≈ ") if ds == "mnist" and r[0] <= 1e-6 else fmt(r)
    table = [
        results.comparison(
            "noiseless ridgeless test MSE E₀",
            paper["noiseless_mse"],
            out["noiseless_mse"],
            f"{config.ridge_trials} trials",
            not_comparable=why,
        )
    ]
    for rel, ours in out["rows"].items():
        ref = paper["rows"].get(int(rel)) if float(rel).is_integer() else None
        table.append(
            results.comparison(
                f"σ²_rel = {rel:g}: optimal ridge, test MSE, fitting ratio, MSE at ridge 1e-6",
                paper_fmt(ref) if ref else "not in the paper's tables",
                fmt(ours),
                f"{config.ridge_count} ridges 1e-6…1e4, {config.ridge_trials} trials",
                theory=f"E_tr/E_te {theory[rel]:.3g} (eigenframework, our (α, β), n = "
                f"{out['n_train']})",
                not_comparable=why,
            )
        )
    return table + _fitting_ratio_rows(ds, out, theory)


def _fitting_ratio_rows(ds: str, out: dict, theory: dict) -> list:
    """The fitting ratio at the optimum rises with noise; without noise it is small."""
    paper = PAPER_RIDGE_TABLE[ds]
    ratios = [out["rows"][r][2] for r in sorted(out["rows"])]
    rising = bool(np.all(np.diff(ratios) >= -0.02))
    noiseless = out["rows"].get(0.0)
    paper_ratios = [paper["rows"][r][2] for r in sorted(paper["rows"])]
    table = [
        results.comparison(
            "fitting ratio at the optimal ridge rises with label noise",
            f"{' → '.join(f'{v:g}' for v in paper_ratios)} (σ²_rel 0, 1, 5, 50; {ds})",
            " → ".join(f"{v:.3g}" for v in ratios),
            "the ratio moves from ≈ 0 towards 1",
            theory=" → ".join(f"{theory[r]:.3g}" for r in sorted(theory)),
            holds=rising,
            rule="non-decreasing in σ²_rel (to 0.02, trial noise)",
        )
    ]
    if noiseless is not None:
        # 0.25, as in the overfitting part: 1 would be no overfitting at all
        table.append(
            results.comparison(
                "noiseless: fitting ratio at the optimal ridge (obligatory overfitting)",
                paper["rows"][0][2],
                noiseless[2],
                "the optimum nearly interpolates",
                theory=theory[0.0],
                holds=bool(noiseless[2] <= 0.25),
                rule="our E_tr/E_te at the optimum ≤ 0.25",
            )
        )
    return table
