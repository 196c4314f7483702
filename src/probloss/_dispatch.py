"""The one dispatch table: (loss, backend) -> the implementation that computes it.

Every loss function in :mod:`probloss.functional` validates its options and inputs, then
makes one lookup here and calls what it gets with one signature::

    impl(xp, y_true, y_pred, axis, options) -> per-sample losses

where ``options`` is a :class:`probloss.functional._common.Options` (CTC has its own
``y_true`` and options types).  Each implementation runs its own value checks, so
nothing is passed back and no caller "falls back": what the table names is what runs.

The ``generic`` column is the loss's formula, written with ``xp.*`` calls only, in its
``functional`` module: it serves every backend without an entry (CuPy, array-api-strict,
JAX for the losses below that have none) and is the reference each native
implementation is tested against.  A backend gets an entry only where a benchmark in
``benchmarks/`` shows that it wins at the sizes it serves; the entry itself may hand
small inputs to the backend's own fused loss.

Entries are ``"module:function"`` strings, the module imported (by :func:`_load`) on the
first call for that backend, so ``import probloss`` imports no framework, and a
backend's module is imported only once the caller has handed over one of its arrays.

The ``cuda`` column serves torch tensors on a CUDA device with the Triton kernels of
:mod:`probloss._backends.triton`.  For a loss that has one, the torch namespace resolves
to a small switch on the prediction's device (:func:`_by_device`): CUDA tensors take the
``cuda`` entry, imported on the first CUDA tensor, when Triton imports; every other
torch tensor, and CUDA tensors without Triton, take the ``torch`` entry.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings

from ._compat import backend_name

__all__ = ["TABLE", "generic_only", "implementation", "triton_on_cpu"]

_G = "probloss.functional."
_B = "probloss._backends."

TABLE: dict[str, dict[str, str]] = {
    "binary": {
        "generic": _G + "crossentropy:binary_generic",
        "numpy": _B + "numpy:binary",
        "torch": _B + "torch:binary",
        "cuda": _B + "triton:binary",
    },
    "categorical": {
        "generic": _G + "crossentropy:categorical_generic",
        "numpy": _B + "numpy:categorical",
        "torch": _B + "torch:categorical",
        "jax": _B + "jax:categorical",
        "cuda": _B + "triton:categorical",
    },
    "sparse": {
        "generic": _G + "crossentropy:sparse_generic",
        "numpy": _B + "numpy:sparse",
        "torch": _B + "torch:sparse",
        "jax": _B + "jax:sparse",
        "cuda": _B + "triton:sparse",
    },
    # Keras's default reduction of "sparse" with no weights or mask, which a backend may fuse.
    "sparse_mean": {
        "generic": _G + "crossentropy:sparse_mean_generic",
        "torch": _B + "torch:sparse_mean",
        "cuda": _B + "triton:sparse_mean",
    },
    # the focal losses' options are a FocalOptions (functional/focal.py)
    "binary_focal": {
        "generic": _G + "focal:binary_focal_generic",
        "cuda": _B + "triton:binary_focal",
    },
    "categorical_focal": {
        "generic": _G + "focal:categorical_focal_generic",
        "cuda": _B + "triton:categorical_focal",
    },
    "kl_divergence": {
        "generic": _G + "divergence:kl_generic",
        "numpy": _B + "numpy:kl_divergence",
        "torch": _B + "torch:kl_divergence",
        "cuda": _B + "triton:kl_divergence",
    },
    "poisson": {
        "generic": _G + "poisson:poisson_generic",
        "numpy": _B + "numpy:poisson",
        "torch": _B + "torch:poisson",
        "cuda": _B + "triton:poisson",
    },
    # y_true is a CTCTargets (labels and lengths), options a CTCOptions (see functional/ctc.py)
    "ctc": {
        "generic": _G + "ctc:ctc_generic",
        "torch": _B + "torch:ctc",
        "jax": _B + "jax:ctc",
    },
}

_resolved: dict[tuple[str, str], object] = {}
_generic_only = False
_triton_on_cpu = False
_UNAVAILABLE = object()  # the cuda column when Triton cannot be imported


def implementation(loss: str, xp):
    """The function that computes ``loss`` for arrays of namespace ``xp``."""
    backend = "generic" if _generic_only else backend_name(xp)
    key = (loss, backend)
    impl = _resolved.get(key)
    if impl is None:
        entries = TABLE[loss]
        module, name = entries.get(backend, entries["generic"]).split(":")
        impl = getattr(_load(module), name)
        if backend == "torch" and "cuda" in entries:
            impl = _by_device(loss, impl)
        _resolved[key] = impl
    return impl


def _by_device(loss: str, torch_impl):
    """The torch namespace's implementation of a loss with a ``cuda`` entry: that entry for
    CUDA tensors (when Triton imports), ``torch_impl`` otherwise.  A test of the device,
    not of values, so it is safe under ``torch.compile``."""

    def by_device(xp, y_true, y_pred, axis, options, **kwargs):
        if y_pred.is_cuda or _triton_on_cpu:
            cuda = _cuda_entry(loss)
            if cuda is not None:
                return cuda(xp, y_true, y_pred, axis, options, **kwargs)
        return torch_impl(xp, y_true, y_pred, axis, options, **kwargs)

    by_device.torch_impl = torch_impl
    by_device.loss = loss
    return by_device


def cuda_module(x):
    """The CUDA backend's module (:mod:`probloss._backends.triton`) when it serves the torch
    tensor ``x`` (on a CUDA device, and Triton imports), else ``None``; for code outside
    the table that calls its kernels directly (``probloss.torch.cross_entropy``)."""
    if not (x.is_cuda or _triton_on_cpu) or _cuda_entry("sparse") is None:
        return None
    return sys.modules[_B + "triton"]


def _cuda_entry(loss: str):
    """The ``cuda`` entry of ``loss``, or ``None`` when Triton cannot be imported.

    Triton not installed is a normal setup (CUDA tensors then take the ``torch`` column);
    a Triton that fails to import otherwise gives one warning, then the same.
    """
    key = (loss, "cuda")
    impl = _resolved.get(key)
    if impl is None:
        module, name = TABLE[loss]["cuda"].split(":")
        try:
            impl = getattr(_load(module), name)
        except ImportError:
            impl = _UNAVAILABLE
        except Exception as exc:  # a broken install: say so once, then compute without it
            from ._errors import ProblossWarning

            warnings.warn(
                f"Triton failed to import ({type(exc).__name__}: {exc}); probloss computes CUDA losses with "
                "torch operations instead. Reinstall the triton version that matches your torch to use the "
                "Triton kernels.",
                ProblossWarning,
                stacklevel=3,
            )
            impl = _UNAVAILABLE
        _resolved[key] = impl
    return None if impl is _UNAVAILABLE else impl


def _load(module: str):
    """The module an entry names.  A backend's module is imported by an import statement:
    ``torch.compile`` traces those, where a call of ``importlib`` breaks the graph (of a
    first call made while it compiles)."""
    if module == _B + "numpy":
        from ._backends import numpy as m
    elif module == _B + "torch":
        from ._backends import torch as m
    elif module == _B + "jax":
        from ._backends import jax as m
    elif module == _B + "triton":
        from ._backends import triton as m
    else:  # the functional modules, imported with probloss (and tests' own modules)
        m = sys.modules.get(module) or importlib.import_module(module)
    return m
    if module == _B + "numpy":
        from ._backends import numpy as m
    elif module == _B + "torch":
        from ._backends import torch as m
    elif module == _B + "jax":
        from ._backends import jax as m
    elif module == _B + "triton":
        from ._backends import triton as m
    else:
        m = importlib.import_module(module)
    return m


@contextlib.contextmanager
def generic_only():
    """Run every loss on its generic formula inside the block (for tests and benchmarks)."""
    global _generic_only
    previous, _generic_only = _generic_only, True
    try:
        yield
    finally:
        _generic_only = previous


@contextlib.contextmanager
def triton_on_cpu():
    """Send torch tensors on any device to the ``cuda`` column inside the block, with their
    value checks deferred as on CUDA (for tests on a machine without a GPU).

    The Triton kernels then run in Triton's interpreter, which must have been chosen
    before Triton was imported (``TRITON_INTERPRET=1``).
    """
    import os

    from . import _deferred

    if os.environ.get("TRITON_INTERPRET") != "1":
        msg = "triton_on_cpu() needs Triton's interpreter: set TRITON_INTERPRET=1 before triton is imported."
        raise RuntimeError(msg)
    global _triton_on_cpu
    previous, _triton_on_cpu = _triton_on_cpu, True
    try:
        with _deferred.emulate_on_cpu():
            yield
    finally:
        _triton_on_cpu = previous
