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

Entries are ``"module:function"`` strings, imported on the first call for that backend,
so ``import probloss`` imports no framework, and a backend's module is imported only
once the caller has handed over one of its arrays.
"""

from __future__ import annotations

import contextlib
import importlib

from ._compat import backend_name

__all__ = ["TABLE", "generic_only", "implementation"]

_G = "probloss.functional."
_B = "probloss._backends."

TABLE: dict[str, dict[str, str]] = {
    "binary": {
        "generic": _G + "crossentropy:binary_generic",
        "numpy": _B + "numpy:binary",
        "torch": _B + "torch:binary",
    },
    "categorical": {
        "generic": _G + "crossentropy:categorical_generic",
        "numpy": _B + "numpy:categorical",
        "torch": _B + "torch:categorical",
        "jax": _B + "jax:categorical",
    },
    "sparse": {
        "generic": _G + "crossentropy:sparse_generic",
        "numpy": _B + "numpy:sparse",
        "torch": _B + "torch:sparse",
        "jax": _B + "jax:sparse",
    },
    # Keras's default reduction of "sparse" with no weights or mask, which a backend may fuse.
    "sparse_mean": {
        "generic": _G + "crossentropy:sparse_mean_generic",
        "torch": _B + "torch:sparse_mean",
    },
    "kl_divergence": {
        "generic": _G + "divergence:kl_generic",
        "numpy": _B + "numpy:kl_divergence",
        "torch": _B + "torch:kl_divergence",
    },
    "poisson": {
        "generic": _G + "poisson:poisson_generic",
        "numpy": _B + "numpy:poisson",
        "torch": _B + "torch:poisson",
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


def implementation(loss: str, xp):
    """The function that computes ``loss`` for arrays of namespace ``xp``."""
    backend = "generic" if _generic_only else backend_name(xp)
    key = (loss, backend)
    impl = _resolved.get(key)
    if impl is None:
        entries = TABLE[loss]
        module, name = entries.get(backend, entries["generic"]).split(":")
        impl = _resolved[key] = getattr(importlib.import_module(module), name)
    return impl


@contextlib.contextmanager
def generic_only():
    """Run every loss on its generic formula inside the block (for tests and benchmarks)."""
    global _generic_only
    previous, _generic_only = _generic_only, True
    try:
        yield
    finally:
        _generic_only = previous
