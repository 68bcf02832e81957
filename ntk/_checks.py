"""Argument checks shared by the public entry points (internal; not public API).

Every check raises a ``ValueError`` (a bad value) or a ``TypeError`` (the
wrong kind of object) whose message names the public function (``where``),
the argument, what was expected and what arrived::

    where: `arg` must be <expected>; got <what arrived>.

Checks on array *values* (finiteness, ranges, symmetry) run only on concrete
values: under ``jax.jit``, ``jax.grad`` or ``jax.vmap`` the value is a tracer,
`concrete` returns None and the check is skipped (a traced function cannot
raise on data). Checks on shapes, dtypes and Python settings always run.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

# The errors JAX raises when a traced value is used as a concrete one.
TRACED = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
)


def concrete(x):
    """``x`` as a NumPy array, or None when it is traced (inside jit/grad/vmap)."""
    try:
        return np.asarray(x)
    except TRACED:
        return None


def is_concrete(tree) -> bool:
    """Whether every array leaf of ``tree`` holds values (reads one entry each,
    so large device arrays are not copied to the host)."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if hasattr(leaf, "shape") and leaf.size:
            leaf = leaf[(0,) * leaf.ndim]
        if concrete(leaf) is None:
            return False
    return True


def _got(x) -> str:
    """What arrived, briefly: the repr of small values, shape and dtype of arrays."""
    if hasattr(x, "shape") and hasattr(x, "dtype") and np.ndim(x) > 0:
        return f"an array of shape {tuple(x.shape)} and dtype {x.dtype}"
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def as_array(
    x,
    arg: str,
    where: str,
    *,
    ndim=None,
    floating: bool = False,
    finite: bool = True,
    nonempty: bool = False,
    what: str = "",
):
    """``x`` as a real numeric ``jnp`` array.

    ``ndim``: required rank (an int or a tuple of allowed ranks); ``what``
    describes the expected shape in the message (e.g. ``"(n, d)"``);
    ``floating``: cast integer/bool arrays to the default float type;
    ``finite``: reject NaN/inf (when concrete); ``nonempty``: reject size 0.
    """
    x = _numeric(x, arg, where, what)
    x = jnp.asarray(x)
    _check_rank(x, arg, where, ndim, nonempty, what)
    if floating and not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    if finite:
        require_finite(x, arg, where)
    return x


def as_numpy(
    x,
    arg: str,
    where: str,
    *,
    ndim=None,
    dtype=None,
    finite: bool = True,
    nonempty: bool = False,
    what: str = "",
):
    """Like `as_array` but a NumPy array (``dtype`` if given): for host-side
    code, which must not round float64 data to JAX's default float32."""
    x = _numeric(x, arg, where, what)
    c = concrete(x)
    if c is None:
        raise TypeError(f"{where}: `{arg}` must be a concrete array (not traced).")
    x = c if dtype is None else c.astype(dtype)
    _check_rank(x, arg, where, ndim, nonempty, what)
    if finite and jnp.issubdtype(x.dtype, jnp.inexact) and not np.all(np.isfinite(x)):
        bad = int(x.size - np.sum(np.isfinite(x)))
        raise ValueError(f"{where}: `{arg}` must be finite; got {bad} NaN/inf entries of {x.size}.")
    return x


def _numeric(x, arg, where, what):
    """``x`` with a real numeric (or bool) dtype; TypeError otherwise."""
    if x is None:
        raise TypeError(f"{where}: `{arg}` must be an array{_shape_hint(what)}; got None.")
    if not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"{where}: `{arg}` must be an array{_shape_hint(what)}; "
                f"got {type(x).__name__} ({e})."
            ) from None
    dtype = np.dtype(x.dtype)
    # jnp's issubdtype knows bfloat16 (an ml_dtypes type numpy does not count as a number)
    if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
        raise TypeError(
            f"{where}: `{arg}` must be a numeric array; got dtype {dtype} ({type(x).__name__})."
        )
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{where}: `{arg}` must be real; got dtype {dtype}.")
    return x


def _check_rank(x, arg, where, ndim, nonempty, what):
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            raise ValueError(
                f"{where}: `{arg}` must have shape "
                f"{what or _ranks(allowed)}; got shape {tuple(x.shape)}."
            )
    if nonempty and x.size == 0:
        raise ValueError(f"{where}: `{arg}` must not be empty; got shape {tuple(x.shape)}.")


def _shape_hint(what):
    return f" of shape {what}" if what else ""


def _ranks(allowed):
    return " or ".join(f"rank {r}" for r in allowed)


def require_finite(x, arg: str, where: str):
    """Reject NaN/inf entries of a concrete array (any pytree of arrays)."""
    for leaf in jax.tree_util.tree_leaves(x):
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        # Reduced on the device: one boolean crosses to the host.
        ok = concrete(jnp.all(jnp.isfinite(leaf)))
        if ok is not None and not bool(ok):
            bad = int(np.size(leaf) - np.sum(np.isfinite(np.asarray(leaf))))
            raise ValueError(
                f"{where}: `{arg}` must be finite; got {bad} NaN/inf entries of {np.size(leaf)}."
            )
    return x


def require_shape(x, shape, arg: str, where: str, what: str = ""):
    """``x.shape`` must equal ``shape`` (``None`` entries match any size)."""
    got = tuple(np.shape(x))
    want = tuple(shape)
    if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
        shown = (
            "("
            + ", ".join("·" if w is None else str(w) for w in want)
            + ("," if len(want) == 1 else "")
            + ")"
        )
        raise ValueError(
            f"{where}: `{arg}` must have shape {shown}"
            f"{' (' + what + ')' if what else ''}; got {got}."
        )
    return x


def require_real(
    value,
    arg: str,
    where: str,
    *,
    low=None,
    high=None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
):
    """A real scalar in an interval (checked when concrete); returns ``value``.

    ``low``/``high``: bounds (None: unbounded), excluded when ``*_open``;
    ``allow_inf``: accept ``+inf`` (e.g. infinitely many features).
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(
            f"{where}: `{arg}` must be {_interval(low, high, low_open, high_open)}; got {value!r}."
        )
    c = concrete(value)
    if c is None:
        return value  # traced
    if c.dtype == object or not np.issubdtype(c.dtype, np.number):
        raise TypeError(
            f"{where}: `{arg}` must be {_interval(low, high, low_open, high_open)}; "
            f"got {_got(value)}."
        )
    if c.ndim != 0:
        raise ValueError(f"{where}: `{arg}` must be a scalar; got shape {c.shape}.")
    if np.iscomplexobj(c):
        raise TypeError(f"{where}: `{arg}` must be real; got {value!r}.")
    v = float(c)
    ok = not np.isnan(v) and (allow_inf and v == np.inf or np.isfinite(v))
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        raise ValueError(
            f"{where}: `{arg}` must be "
            f"{_interval(low, high, low_open, high_open, allow_inf)}; "
            f"got {v!r}."
        )
    return value


def _interval(low, high, low_open, high_open, allow_inf=False):
    inf = " (or inf)" if allow_inf else ""
    if low is None and high is None:
        return "a finite real number" + inf
    if high is None:
        return f"a number {'>' if low_open else '>='} {low:g}" + inf
    if low is None:
        return f"a number {'<' if high_open else '<='} {high:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def require_positive(value, arg: str, where: str, allow_inf: bool = False):
    """``value > 0`` and finite (or ``+inf`` with ``allow_inf``)."""
    return require_real(value, arg, where, low=0, low_open=True, allow_inf=allow_inf)


def require_nonnegative(value, arg: str, where: str):
    """``value >= 0`` and finite."""
    return require_real(value, arg, where, low=0)


def require_int(value, arg: str, where: str, minimum=1, maximum=None) -> int:
    """A Python/NumPy integer (not a bool) in ``[minimum, maximum]``; returns an int."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: `{arg}` must be an int; got {_got(value)}.") from None
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if maximum is None:
            want = f"an int >= {minimum}"
        elif minimum is None:
            want = f"an int <= {maximum}"
        else:
            want = f"an int in [{minimum}, {maximum}]"
        raise ValueError(f"{where}: `{arg}` must be {want}; got {v}.")
    return int(v)


def require_key(key, where: str, purpose: str, arg: str = "key"):
    """A PRNG key (``jax.random.PRNGKey(0)`` or ``jax.random.key(0)``), not None
    or a seed; ``purpose`` says what it draws, for the message."""
    if key is None or isinstance(key, (bool, int, float, np.integer, np.floating)):
        raise TypeError(
            f"{where}: `{arg}` must be a PRNG key ({purpose}), e.g. "
            f"jax.random.PRNGKey(0); got {_got(key)}."
        )
    return key


def require_bool(value, arg: str, where: str, what: str = "a bool") -> bool:
    """A Python or NumPy bool, returned as ``bool`` (a Python setting, so it is
    checked even under a trace); ``what`` may say what each value means."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: `{arg}` must be {what}; got {_got(value)}.")
    return bool(value)


def require_counts(counts, arg: str, where: str) -> np.ndarray:
    """``counts`` as a float64 ``(V,)`` numpy array of counts: every entry
    ``>= 0`` and one at least positive (word counts, class counts)."""
    counts = as_numpy(counts, arg, where, ndim=1, what="(V,)", dtype=np.float64, nonempty=True)
    if np.any(counts < 0) or not np.any(counts > 0):
        raise ValueError(
            f"{where}: `{arg}` must be >= 0 with at least one positive entry; "
            f"got min {counts.min():g}, max {counts.max():g}."
        )
    return counts


def require_one_of(value, options, arg: str, where: str):
    """``value`` must be one of ``options`` (strings, compared exactly)."""
    try:
        ok = value in options
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{where}: `{arg}` must be one of {', '.join(repr(o) for o in options)}; got {value!r}."
        )
    return value


def require_callable(f, arg: str, where: str, what: str = "a function"):
    if not callable(f):
        raise TypeError(f"{where}: `{arg}` must be {what}; got {type(f).__name__}.")
    return f


def require_traceable(f, arg: str, where: str, n_args: int = 1):
    """``f`` must be callable and run on traced JAX arrays (``jnp.tanh``, not
    ``np.tanh``): probed once with abstract float32 scalars
    (``jax.eval_shape``: no computation), so a NumPy-only function fails here,
    named, rather than deep inside ``jit`` with a tracer-conversion error."""
    require_callable(f, arg, where)
    probe = (jax.ShapeDtypeStruct((), jnp.float32),) * n_args
    try:
        jax.eval_shape(lambda *a: f(*a), *probe)
    except TRACED as e:
        raise TypeError(
            f"{where}: `{arg}` must be a JAX-traceable function (use jax.numpy, e.g. "
            f"jnp.tanh rather than np.tanh); calling it on a traced array raised "
            f"{type(e).__name__}."
        ) from None
    return f


def require_symmetric(k, arg: str, where: str):
    """A concrete square matrix must equal its transpose up to round-off.

    Tolerance ``max|K − Kᵀ| <= tol · max|K|`` with ``tol = max(√eps, 1e-6)``
    of the kernel's dtype: far above the round-off of a kernel computed in
    float32 (also one cast to float64 afterwards), far below any real
    asymmetry (a wrong or transposed matrix). Cholesky and ``eigh`` read one
    triangle only, so an asymmetric matrix would give a silently wrong answer.
    """
    c = concrete(k)
    if c is None or c.ndim != 2 or c.shape[0] != c.shape[1] or c.size == 0:
        return k
    if not np.all(np.isfinite(c)):
        return k  # reported by the finiteness checks
    scale = float(np.max(np.abs(c)))
    eps = float(jnp.finfo(c.dtype).eps) if jnp.issubdtype(c.dtype, jnp.floating) else 0.0
    tol = max(np.sqrt(eps), 1e-6) * scale
    asym = float(np.max(np.abs(c - c.T)))
    if asym > tol:
        i, j = np.unravel_index(np.argmax(np.abs(c - c.T)), c.shape)
        raise ValueError(
            f"{where}: `{arg}` must be symmetric (a kernel or Gram matrix); got "
            f"max|K - Kᵀ| = {asym:.3g} at entry ({i}, {j}) against max|K| = "
            f"{scale:.3g} (tolerance {tol:.2g})."
        )
    return k


def require_indices(idx, size: int, arg: str, where: str, nonempty: bool = True):
    """A 1-D integer index array with entries in ``[-size, size)``.

    JAX clamps out-of-range indices instead of raising, which would silently
    pick other rows; this check restores NumPy's error. Returns a NumPy array
    (indices must be concrete).
    """
    c = concrete(idx)
    if c is None:
        raise TypeError(
            f"{where}: `{arg}` must be concrete indices (not traced): "
            f"they are checked against the {size} rows."
        )
    if c.dtype == object or not np.issubdtype(c.dtype, np.integer) or isinstance(idx, bool):
        raise TypeError(
            f"{where}: `{arg}` must be an array of integer indices; "
            f"got {_got(idx) if c.ndim else repr(idx)} of dtype {c.dtype}."
        )
    if c.ndim != 1:
        raise ValueError(f"{where}: `{arg}` must be a 1-D array of indices; got shape {c.shape}.")
    if nonempty and c.size == 0:
        raise ValueError(f"{where}: `{arg}` must hold at least one index; got none.")
    bad = c[(c < -size) | (c >= size)]
    if bad.size:
        raise ValueError(
            f"{where}: `{arg}` must index rows 0..{size - 1}; got "
            f"out-of-range entries {bad[:5].tolist()}"
            f"{' ...' if bad.size > 5 else ''}."
        )
    return c


def optional_import(module: str, extra: str = "data"):
    """Import an optional dependency or say how to install it."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            f"this function needs {module!r}; install it with `pip install 'ntk[{extra}]'`."
        ) from err
