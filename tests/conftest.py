"""Shared fixtures: the ``backend`` fixture runs a test on every installed array library.

``PROBLOSS_TEST_BACKENDS=numpy,torch,jax,array_api_strict`` makes a missing backend an
error instead of a skip (CI sets it through ``make test``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
# Without an NVIDIA GPU the Triton kernels of the CUDA backend run on CPU tensors in Triton's
# interpreter (tests/backends/test_triton.py).  Triton reads this when it is imported (torch
# imports it with torch._dynamo) and when a kernel runs, so it is set for the whole session;
# nothing else in the suite runs Triton kernels.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

_REQUIRED = {b for b in os.environ.get("PROBLOSS_TEST_BACKENDS", "").split(",") if b}


@dataclass
class Backend:
    """One array library as seen by the tests."""

    name: str
    xp: Any
    asarray: Callable[..., Any]
    jit: bool = False

    def to_numpy(self, x) -> np.ndarray:
        if self.name == "torch":
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def call(self, fn, *args, **kwargs):
        """Call ``fn`` on the arrays, under ``jax.jit`` for the jitted JAX backend."""
        if not self.jit:
            return fn(*args, **kwargs)
        import jax

        return jax.jit(lambda *a: fn(*a, **kwargs))(*args)


def _make(name: str) -> Backend:
    try:
        if name == "numpy":
            return Backend("numpy", np, np.asarray)
        if name == "torch":
            torch = importlib.import_module("torch")
            return Backend("torch", torch, lambda a, dtype=None: torch.as_tensor(np.asarray(a, dtype=dtype)))
        if name in ("jax", "jax-jit"):
            jnp = importlib.import_module("jax.numpy")
            return Backend(name, jnp, lambda a, dtype=None: jnp.asarray(np.asarray(a, dtype=dtype)), jit=name == "jax-jit")
        if name == "array_api_strict":
            s = importlib.import_module("array_api_strict")
            return Backend(name, s, lambda a, dtype=None: s.asarray(np.asarray(a, dtype=dtype)))
    except ImportError:
        base = name.split("-")[0]
        if base in _REQUIRED:
            raise
        pytest.skip(f"{name} is not installed")
    raise ValueError(name)


BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "jax-jit"]
EAGER_BACKENDS = ["numpy", "array_api_strict", "torch", "jax"]


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    return _make(request.param)


@pytest.fixture(params=EAGER_BACKENDS)
def eager_backend(request) -> Backend:
    return _make(request.param)


@pytest.fixture(params=["torch", "jax"])
def autodiff_backend(request) -> Backend:
    return _make(request.param)


def pytest_terminal_summary(terminalreporter):
    """Print the Keras parity summary: cases run and largest relative error, per loss."""
    import sys

    mod = sys.modules.get("tests.parity.test_keras_live") or sys.modules.get("parity.test_keras_live")
    errors = getattr(mod, "PARITY_ERRORS", None)
    if not errors:
        return
    terminalreporter.section("parity with Keras 3 (live)")
    total = 0
    for loss, errs in sorted(errors.items()):
        total += len(errs)
        terminalreporter.write_line(f"{loss:32s} cases={len(errs):4d}  max relative error={max(errs):.2e}")
    terminalreporter.write_line(f"{'total':32s} cases={total:4d}")
