"""Test configuration: float64 everywhere (correctness tests), 4 fake CPU devices,
and XLA's CPU code generated quickly (no LLVM optimisation, legacy emitters,
one codegen part)."""

import os

# The suite compiles thousands of small programs whose run time is negligible
# (XLA's backend compilation is ~60% of its time), so two XLA CPU flags that
# compile faster pay:
# - LLVM optimisation level 0: about a fifth less CPU time (315
#   stax/dkm/mup/empirical/predict tests: 299 -> 233 CPU-s);
# - XLA's legacy elementwise emitters instead of the MLIR fusion emitters:
#   another 30% (the whole suite: 2,593 -> 1,807 CPU-s; test_stax_properties
#   alone 92 -> 65 s). Other flags (expensive LLVM passes, the scheduler,
#   the thunk runtime) changed nothing measurable.
# Together those two miscompile when XLA splits a program's LLVM module into
# parts compiled in parallel (its default): jit(grad) of two Erf kernel
# layers came out O(1) wrong, as did a 30-line jax-only program of the same
# shape, while eager, either flag alone, or both with one part were right.
# So a third flag, which is also cheaper for programs this small:
# - one codegen part (no split): 205 -> 174 CPU-s on 205 stax/kernel/predict
#   tests; tests/test_kernel.py's compiled Erf gradients fail without it.
# None uses fast-math, so results agree to float rounding (yang21_mup's
# tiny metrics: ~1e-7 relative in float32); a few bit-exact comparisons of
# two differently compiled programs became ulp-tolerant. jax is pinned below
# 0.11 (pyproject), where the flags exist; XLA aborts on an unknown flag, so
# a jaxlib that drops one fails the whole suite at start-up, visibly. Outside
# the tests (experiments, benchmarks, a user's notebook) XLA's defaults apply.
# What a user's shell passes to a subprocess, before the suite's flags below:
# a run that must behave as a user's (the full-size smoke runs) gets this.
USER_ENV = dict(os.environ)
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
    " --xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1",
)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import functools  # noqa: E402
import gc  # noqa: E402

import pytest  # noqa: E402


def _quiet(callback):
    """``callback`` with a ``KeyboardInterrupt`` raised inside it dropped.

    An exception in a ``gc.callbacks`` entry never reaches the code that
    triggered the collection: Python prints it as an ignored-exception
    traceback and carries on. When an xdist worker shuts down, the controller
    interrupts it; landing in a collection, the interrupt hits a callback
    (Hypothesis's collection timer, JAX's ``_xla_gc_callback``) and prints a
    ``KeyboardInterrupt`` traceback after an otherwise passing run.
    """
    if getattr(callback, "_quiet", False):
        return callback

    @functools.wraps(callback)  # keeps its __module__ (read below)
    def quiet(phase, info):
        try:
            callback(phase, info)
        except KeyboardInterrupt:
            pass

    quiet._quiet = True  # type: ignore[attr-defined]
    return quiet


def _quiet_gc_callbacks():
    # Callbacks are registered lazily (Hypothesis on first use), hence the
    # repeated, idempotent wrapping below.
    gc.callbacks[:] = [_quiet(cb) for cb in gc.callbacks]


def pytest_sessionstart(session):
    _quiet_gc_callbacks()


def pytest_runtest_teardown(item, nextitem):
    _quiet_gc_callbacks()


def pytest_sessionfinish(session, exitstatus):
    """Drop Hypothesis's garbage-collection timer before the interpreter exits
    (the others stay wrapped by `_quiet`)."""
    _quiet_gc_callbacks()
    gc.callbacks[:] = [
        cb for cb in gc.callbacks if not getattr(cb, "__module__", "").startswith("hypothesis")
    ]


@pytest.fixture
def user_env():
    """The environment the suite started with, without its XLA flags (4 fake
    devices, LLVM level 0): for a subprocess that must run as a user's run does."""
    return dict(USER_ENV)


#: Test modules of the NT-compatible engine (`ntk.kernel`, `ntk.stax`,
#: `ntk.empirical`, `ntk.predict`, `ntk.parallel`) and of the paper modules:
#: they run under ``jax_numpy_rank_promotion="raise"``, the setting of NT's own
#: tests, which NT users keep in theirs; every broadcast in `ntk` is explicit.
STRICT_RANK_MODULES = (
    "test_stax",
    "test_kernel",
    "test_empirical",
    "test_predict",
    "test_parallel",
    "test_dkm",
    "test_mup",
    "test_random_features",
    "test_permutations",
    "test_data",
    "test_ode",
    "test_power_law",
    "test_linalg",
    "test_checks",
)


@pytest.fixture(autouse=True)
def _strict_rank_promotion(request):
    name = request.node.module.__name__.rpartition(".")[2] if request.node.module else ""
    if not name.startswith(STRICT_RANK_MODULES):
        yield
        return
    with jax.numpy_rank_promotion("raise"):
        yield
