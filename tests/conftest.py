"""Test configuration: float64 everywhere (correctness tests), 4 fake CPU devices."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import gc  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    """Unhook Hypothesis's garbage-collection timer before the interpreter exits.

    Hypothesis registers a ``gc.callbacks`` entry to time collections. When an
    xdist worker shuts down, the controller interrupts it; if that lands while a
    collection runs, Python prints the callback's ``KeyboardInterrupt`` as an
    ignored-exception traceback after an otherwise passing run.
    """
    gc.callbacks[:] = [
        cb for cb in gc.callbacks if not getattr(cb, "__module__", "").startswith("hypothesis")
    ]
