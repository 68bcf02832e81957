"""Write the neural-tangents golden fixture ``tests/golden/nt_golden.npz``.

Run with the pinned NT reference environment's python, never the dev one (the
``ntk`` package does not and must not import NT). For every architecture of
``tests/golden/architectures.py``, built from ``neural_tangents.stax``, it

1. draws ``x1``, ``x2`` with numpy from the architecture's fixed seed
   (`architectures.draw_inputs`), in float64;
2. evaluates NT's ``kernel_fn(x1, x2, get=("nngp", "ntk"))`` and, for the
   architectures in ``architectures.X2_NONE``, ``kernel_fn(x1, None, ...)``;
3. stores, under the architecture's name, ``NAME/x1``, ``NAME/x2``,
   ``NAME/nngp``, ``NAME/ntk`` (with x2) and ``NAME/self_nngp``,
   ``NAME/self_ntk`` (with ``x2=None``), plus ``meta/names``,
   ``meta/x2_none`` (the names evaluated with ``x2=None``),
   ``meta/neural_tangents``, ``meta/jax``, ``meta/jaxlib``, ``meta/numpy``.

The file is written to a temporary name in the same directory and renamed, so
an interrupted run never leaves a partial fixture behind.

Regenerate (from the repository root):

    scripts/make_nt_env.sh /work/envs/ntref          # once; idempotent
    /work/envs/ntref/bin/python scripts/nt_golden.py  # ~1-2 min, writes the .npz
    /work/envs/dev/bin/python -m pytest -q tests/test_stax_golden.py

Families. Layers are grouped into families so that each can be regenerated
on its own: ``--family NAME`` reads ``tests/golden/architectures_NAME.py`` and
writes ``tests/golden/nt_golden_NAME.npz`` (no ``--family``: the core
``architectures.py`` and ``nt_golden.npz``). A family module has the core
module's interface (``architectures(stax)``, ``draw_inputs``, ``X2_NONE``) and
may add ``kernel_kwargs(name, x1, x2) -> dict`` of NumPy arrays (or scalars)
that both libraries' ``kernel_fn`` receive as keyword arguments (e.g. a graph
``pattern`` or ``mask_constant``); they are stored as ``NAME/kw/KEY``.

Options: ``--out PATH``, ``--only NAME [NAME ...]`` to print the kernels of
some architectures without writing anything (for investigating a mismatch).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax as nt_stax  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The golden loader is shared with tests/test_stax_golden.py; it needs only the
# standard library, so it imports here, where ntk need not.
sys.path.insert(0, str(ROOT / "tests"))
from golden._loader import family_paths, load_module  # noqa: E402

NT_VERSION = "0.6.5"


def load_architectures(family=None):
    """Import a family's architectures module (None: the core one)."""
    return load_module(family_paths(family)[0])


def nt_kernels(kernel_fn, x1, x2, kwargs):
    """NT's ``(nngp, ntk)`` as float64 numpy arrays."""
    out = kernel_fn(x1, x2, get=("nngp", "ntk"), **kwargs)
    nngp, ntk = (np.asarray(a, dtype=np.float64) for a in out)
    if not (np.all(np.isfinite(nngp)) and np.all(np.isfinite(ntk))):
        raise RuntimeError("NT returned non-finite kernels")
    return nngp, ntk


def golden_arrays(arch_module, names=None) -> dict:
    archs = arch_module.architectures(nt_stax)
    arrays = {}
    for name, (layer, input_shape) in archs.items():
        if names and name not in names:
            continue
        kernel_fn = layer[2]
        x1, x2 = arch_module.draw_inputs(name, input_shape)
        make_kwargs = getattr(arch_module, "kernel_kwargs", None)
        kwargs = make_kwargs(name, x1, x2) if make_kwargs else {}
        try:
            nngp, ntk = nt_kernels(kernel_fn, x1, x2, kwargs)
            arrays.update(
                {f"{name}/x1": x1, f"{name}/x2": x2, f"{name}/nngp": nngp, f"{name}/ntk": ntk}
            )
            arrays.update({f"{name}/kw/{k}": np.asarray(v) for k, v in kwargs.items()})
            if name in arch_module.X2_NONE:
                self_kwargs = make_kwargs(name, x1, None) if make_kwargs else {}
                self_nngp, self_ntk = nt_kernels(kernel_fn, x1, None, self_kwargs)
                arrays.update(
                    {f"{name}/self_kw/{k}": np.asarray(v) for k, v in self_kwargs.items()}
                )
                arrays.update({f"{name}/self_nngp": self_nngp, f"{name}/self_ntk": self_ntk})
        except Exception as e:
            raise RuntimeError(f"NT failed on architecture {name!r}") from e
        print(
            f"{name:40s} x {str(x1.shape):14s} nngp {str(nngp.shape):9s} "
            f"max|nngp| {np.abs(nngp).max():9.4g} max|ntk| "
            f"{np.abs(ntk).max():9.4g}"
        )
    return arrays


def versions() -> dict:
    import jaxlib

    return {
        "meta/neural_tangents": np.array(nt.__version__),
        "meta/jax": np.array(jax.__version__),
        "meta/jaxlib": np.array(jaxlib.__version__),
        "meta/numpy": np.array(np.__version__),
    }


def write_atomically(path: Path, arrays: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        # mkstemp makes the file private (0600); a fixture is an ordinary file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--family",
        default=None,
        help="layer family: tests/golden/architectures_FAMILY.py "
        "(default: the core architectures.py)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="fixture path (default: the family's nt_golden*.npz)"
    )
    parser.add_argument("--only", nargs="+", metavar="NAME")
    args = parser.parse_args(argv)

    if nt.__version__ != NT_VERSION:
        sys.exit(
            f"error: expected neural-tangents {NT_VERSION}, found "
            f"{nt.__version__}; use the env from scripts/make_nt_env.sh."
        )
    # NT warns on every Hermite / Elementwise / ElementwiseNumerical layer.
    warnings.filterwarnings("ignore", module="neural_tangents")

    arch_module = load_architectures(args.family)
    out = args.out or family_paths(args.family)[1]
    if args.only:
        np.set_printoptions(precision=6, linewidth=120)
        for key, value in golden_arrays(arch_module, set(args.only)).items():
            print(key, value, sep="\n")
        return
    arrays = golden_arrays(arch_module)
    names = sorted(arch_module.architectures(nt_stax))
    arrays["meta/names"] = np.array(names)
    arrays["meta/x2_none"] = np.array(sorted(arch_module.X2_NONE))
    arrays.update(versions())
    write_atomically(out, arrays)
    print(f"wrote {out} ({len(names)} architectures, {out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
