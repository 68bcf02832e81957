"""Output and kernel layouts for ``trace_axes`` (shared by all predict functions)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ntk import _checks


class Layout:
    """Maps outputs and kernels with ``trace_axes`` to 2-D matrices.

    Outputs ``y`` (any rank) become ``(P, C)``: ``P`` the product of the
    non-trace axes, ``C`` of the trace axes. A kernel with the interleaved
    shape ``(A0, B0, A1, B1, ...)`` over the non-trace axes becomes
    ``(A0·A1·..., B0·B1·...)``.
    """

    def __init__(self, y_shape, trace_axes, name):
        y_shape = tuple(y_shape)
        d = len(y_shape)
        if d < 1:
            raise ValueError(f"{name}: `y_train` must have a batch axis; got a scalar.")
        try:
            axes = tuple(sorted({int(a) % d for a in trace_axes}))
            bad = [a for a in trace_axes if not -d <= int(a) < d]
        except TypeError:
            raise ValueError(
                f"{name}: `trace_axes` must be a tuple of ints; got {trace_axes!r}."
            ) from None
        if bad or len(axes) != len(tuple(trace_axes)):
            raise ValueError(
                f"{name}: `trace_axes` must be distinct axes of "
                f"`y_train` (ndim {d}); got {tuple(trace_axes)}."
            )
        if d == 1 and axes == (0,):
            raise ValueError(
                f"{name}: `y_train` must have shape (N, K) (one "
                f"column per output; y_train[:, None] for a single "
                f"output) with trace_axes={tuple(trace_axes)}; got "
                f"shape {y_shape}."
            )
        if 0 in axes:
            raise ValueError(
                f"{name}: `trace_axes` cannot contain the batch axis "
                f"0 of `y_train`; got {tuple(trace_axes)}."
            )
        if 0 in y_shape:
            raise ValueError(
                f"{name}: `y_train` must hold at least one training point and "
                f"output; got shape {y_shape}."
            )
        self.name, self.ndim, self.trace = name, d, axes
        self.y_shape = y_shape
        self.non_trace = tuple(a for a in range(d) if a not in axes)
        self.nt_shape = tuple(y_shape[a] for a in self.non_trace)
        self.tr_shape = tuple(y_shape[a] for a in axes)
        self.n_tr = int(np.prod(self.tr_shape, dtype=int))

    def flatten(self, y):
        """``y``-like ``(.., *nt, .., *tr)`` -> ``(P, C)``."""
        d = self.ndim
        y = jnp.moveaxis(y, self.trace, tuple(range(d - len(self.trace), d)))
        return y.reshape((-1, self.n_tr))

    def unflatten(self, flat, nt_shape, lead=()):
        """``(*lead, P, C)`` -> ``(*lead, y-like)`` with non-trace shape ``nt_shape``."""
        L = len(lead)
        x = flat.reshape(tuple(lead) + tuple(nt_shape) + self.tr_shape)
        src = tuple(L + len(nt_shape) + i for i in range(len(self.trace)))
        dst = tuple(L + a for a in self.trace)
        return jnp.moveaxis(x, src, dst)

    def unflatten_cov(self, cov, nt_shape, lead=()):
        """``(*lead, P, P)`` -> ``(*lead, A0, A0, A1, A1, ...)``."""
        L, n = len(lead), len(nt_shape)
        x = cov.reshape(tuple(lead) + tuple(nt_shape) * 2)
        perm = tuple(range(L)) + tuple(L + i + j * n for i in range(n) for j in range(2))
        return jnp.transpose(x, perm)

    def test_nt(self, test_shape):
        """Non-trace part of a test-output shape."""
        return tuple(test_shape[a] for a in self.non_trace)

    def kernel_2d(self, k, arg, rows, cols):
        k = jnp.asarray(k)
        want = tuple(x for pair in zip(rows, cols) for x in pair)
        if tuple(k.shape) != want:
            raise ValueError(
                f"{self.name}: `{arg}` must have shape {want} (the kernel over "
                f"the non-trace output axes, interleaved, trace_axes="
                f"{self.trace}); got {tuple(k.shape)}."
            )
        return make_2d(k)

    def train_kernel_2d(self, k, arg):
        """Check a train-train kernel against ``y_train``; return it 2-D.

        A kernel that fits ``y_train`` in everything but the number of
        training points blames ``y_train`` (the kernel says how many points
        there are); a 2-D result must be symmetric.
        """
        k = jnp.asarray(k)
        want = tuple(x for s in self.nt_shape for x in (s, s))
        if (
            tuple(k.shape) != want
            and k.ndim == len(want)
            and k.shape[0] == k.shape[1]
            and tuple(k.shape[2:]) == want[2:]
        ):
            raise ValueError(
                f"{self.name}: `y_train` must have {k.shape[0]} rows, one per "
                f"training point of `{arg}` (shape {tuple(k.shape)}); got "
                f"shape {self.y_shape}."
            )
        return _checks.require_symmetric(
            self.kernel_2d(k, arg, self.nt_shape, self.nt_shape), arg, self.name
        )

    def test_kernel_2d(self, k, arg):
        """Check a test-train kernel; return it 2-D and the test-output shape."""
        k = jnp.asarray(k)
        n = len(self.nt_shape)
        if k.ndim != 2 * n or tuple(k.shape[1::2]) != self.nt_shape:
            want = (
                "(N_test, "
                + ", ".join(
                    [str(self.nt_shape[0])]
                    + [f"T{i}, {s}" for i, s in enumerate(self.nt_shape[1:], 1)]
                )
                + ")"
            )
            raise ValueError(
                f"{self.name}: `{arg}` must have shape {want}, i.e. test axes "
                f"interleaved with the training-kernel axes {self.nt_shape} "
                f"(trace_axes={self.trace}); got {tuple(k.shape)}."
            )
        test_nt = tuple(k.shape[0::2])
        shape = [0] * self.ndim
        for a, s in zip(self.non_trace, test_nt):
            shape[a] = s
        for a, s in zip(self.trace, self.tr_shape):
            shape[a] = s
        return make_2d(k), tuple(shape)


def make_2d(k):
    """Interleaved ``(A0, B0, A1, B1, ...)`` -> ``(A0·A1·…, B0·B1·…)``."""
    n = k.ndim // 2
    perm = tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2))
    k = jnp.transpose(k, perm)
    rows = int(np.prod(k.shape[:n], dtype=int))
    return k.reshape(rows, -1)
