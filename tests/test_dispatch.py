"""The dispatch table (``probloss._dispatch``): every entry resolves, ``generic_only``
switches every loss to its generic formula and back, and importing probloss imports no
framework.

The numbers of each native implementation are tested against independent references in
``tests/backends/``.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest

import probloss as pl
from probloss import _dispatch
from probloss._compat import backend_name
from probloss._dispatch import TABLE, generic_only, implementation
from probloss.functional._common import Options

ENTRIES = [(loss, backend) for loss, row in TABLE.items() for backend in row]
SIGNATURE = ["xp", "y_true", "y_pred", "axis", "options"]


def _resolve(entry: str):
    module, name = entry.split(":")
    return getattr(importlib.import_module(module), name)


def test_the_table_has_a_generic_formula_for_every_loss_and_only_known_backends():
    assert {"binary", "categorical", "sparse", "kl_divergence", "poisson"} <= set(TABLE)
    for loss, row in TABLE.items():
        assert "generic" in row, loss
        assert set(row) <= {"generic", "numpy", "torch", "jax", "cuda"}, loss
        assert row["generic"].startswith("probloss.functional."), loss
        for backend, entry in row.items():
            if backend != "generic":
                module = "triton" if backend == "cuda" else backend  # the cuda column: Triton kernels
                assert entry.startswith(f"probloss._backends.{module}:"), (loss, backend)


@pytest.mark.parametrize(("loss", "backend"), ENTRIES, ids=lambda v: str(v))
def test_every_entry_resolves_to_a_callable_with_the_dispatch_signature(loss, backend):
    if backend in ("torch", "jax"):
        pytest.importorskip(backend)
    if backend == "cuda":
        pytest.importorskip("triton")
    if backend == "numpy":
        pytest.importorskip("numpy")
    fn = _resolve(TABLE[loss][backend])
    assert callable(fn)
    params = list(inspect.signature(fn).parameters.values())
    # the five positional parameters, by position; anything after them has a default
    assert len(params) >= 5
    assert all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params[:5])
    assert all(p.default is p.empty for p in params[:5])
    assert all(p.default is not p.empty for p in params[5:]), [p.name for p in params[5:]]
    names = [p.name for p in params[:5]]
    # y_true may be named for what it holds (labels, t), y_pred likewise (p, x); the rest
    # are fixed, so that the functional modules may pass them by keyword in future.
    assert names[0] == "xp" and names[3] == "axis", names


def _namespaces():
    out = [("numpy", np)]
    for name, module in (("torch", "torch"), ("jax", "jax.numpy"), ("generic", "array_api_strict")):
        try:
            out.append((name, importlib.import_module(module)))
        except ImportError:  # pragma: no cover - CI installs them all
            pass
    return out


def _served(impl):
    """What serves CPU arrays: a loss with a cuda column resolves, for torch, to a switch on
    the device whose CPU side is the torch entry."""
    return getattr(impl, "torch_impl", impl)


@pytest.mark.parametrize("loss", list(TABLE))
def test_implementation_picks_the_backends_entry_or_the_generic_formula(loss):
    for backend, xp in _namespaces():
        want = _resolve(TABLE[loss].get(backend, TABLE[loss]["generic"]))
        assert _served(implementation(loss, xp)) is want, (loss, backend)
        if backend == "torch" and "cuda" in TABLE[loss]:
            assert implementation(loss, xp).loss == loss
        with generic_only():
            assert implementation(loss, xp) is _resolve(TABLE[loss]["generic"]), (loss, backend)
        assert _served(implementation(loss, xp)) is want, (loss, backend)  # the cache does not stick


def test_an_unknown_loss_is_a_key_error():
    with pytest.raises(KeyError):
        implementation("hinge", np)


def test_generic_only_restores_the_previous_state_when_nested_and_on_errors():
    native = implementation("sparse", np)
    generic = _resolve(TABLE["sparse"]["generic"])
    assert native is not generic
    with generic_only():
        assert implementation("sparse", np) is generic
        with generic_only():
            assert implementation("sparse", np) is generic
        assert implementation("sparse", np) is generic  # the inner block restored "generic", not "native"
    assert implementation("sparse", np) is native
    with pytest.raises(RuntimeError, match="inside"):
        with generic_only():
            raise RuntimeError("inside")
    assert implementation("sparse", np) is native


def test_the_looked_up_entry_is_what_runs(monkeypatch):
    """A loss calls what the table names, once, with the dispatch signature."""
    calls = []
    native = _resolve(TABLE["sparse"]["numpy"])

    def spy(xp, labels, p, axis, options):
        calls.append((xp, labels.shape, p.shape, axis, options))
        return native(xp, labels, p, axis, options)

    monkeypatch.setattr(_dispatch, "_resolved", {})
    monkeypatch.setitem(TABLE["sparse"], "numpy", f"{__name__}:_SPY")
    monkeypatch.setattr(sys.modules[__name__], "_SPY", spy, raising=False)
    x = np.random.default_rng(0).standard_normal((4, 3))
    y = np.array([0, 2, 1, 2])
    got = pl.sparse_categorical_crossentropy(y, x, from_logits=True, axis=-1)
    assert len(calls) == 1
    xp, lshape, pshape, axis, options = calls[0]
    assert backend_name(xp) == "numpy" and lshape == (4,) and pshape == (4, 3) and axis == 1  # axis made non-negative
    assert isinstance(options, Options) and options.from_logits is True
    with generic_only():
        ref = pl.sparse_categorical_crossentropy(y, x, from_logits=True)
    assert len(calls) == 1  # the generic formula ran, not the entry
    # float64 reference: logsumexp(x) - x[y]
    m = x.max(-1)
    want = m + np.log(np.exp(x - m[:, None]).sum(-1)) - x[np.arange(4), y]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(ref, want, rtol=1e-12)


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout


def test_importing_probloss_imports_no_framework():
    code = (
        "import sys, probloss, probloss._dispatch, probloss.functional, probloss.losses\n"
        "print(*(m in sys.modules for m in ('torch', 'jax', 'numba', 'probloss._backends.numpy')))"
    )
    assert _run(code).split() == ["False", "False", "False", "False"]


def test_small_numpy_losses_import_no_framework_and_no_numba():
    code = (
        "import sys, numpy as np, probloss as pl\n"
        "x = np.random.default_rng(0).random((8, 5), dtype=np.float32)\n"
        "p = x / x.sum(-1, keepdims=True)\n"
        "pl.sparse_categorical_crossentropy(np.arange(8) % 5, x, from_logits=True)\n"
        "pl.categorical_crossentropy(p, x, from_logits=True)\n"
        "pl.categorical_crossentropy(p, p)\n"
        "pl.binary_crossentropy(p, p)\n"
        "pl.kl_divergence(p, p)\n"
        "pl.poisson(p, x)\n"
        "print(*(m in sys.modules for m in ('torch', 'jax', 'numba', 'probloss._backends.numpy')))"
    )
    # the numpy module is imported (it serves these), numba is not (too small for it)
    assert _run(code).split() == ["False", "False", "False", "True"]
