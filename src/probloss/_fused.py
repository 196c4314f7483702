"""Keras's losses and their value checks in one compiled pass (optional; numba).

Binary cross-entropy (from probabilities or logits), KL divergence, Poisson and
categorical cross-entropy (from probabilities, or soft targets from logits) read two
``N x K`` inputs and do a few flops per element.  Eager torch composes them from five
to eight passes (clip, log, multiply, ...) and NumPy allocates an ``N x K`` temporary for
each; a value check then read both inputs once more, 10-30% of the loss's time.  Here one
numba loop per loss (:mod:`probloss._fused_kernels`) computes the per-row loss and, in
the same pass, tests the range of both inputs.  It serves big C-contiguous float32 NumPy
arrays and CPU torch tensors (the backward stays torch's, see
:mod:`probloss.torch._kernels`), whether value checks are on or off; other inputs take
the ``xp`` code or torch's chunked kernels.

The range test is one unsigned integer ``max`` per input.  The bits of a float32
``x >= 0``, read as ``uint32``, grow with ``x``; a negative number (sign bit set) or a
NaN reads larger than the bits of any bound in ``[0, inf]``.  So
``max(bits(x)) <= bits(hi)`` exactly when every ``0 <= x <= hi``, except that ``-0.0``
reads as large: a failed test runs the exact check, which names the offending element
(or, for ``-0.0``, passes).

Numbers: each row is added in float64 (torch and Keras add float32), and the kernels'
own float32 ``log`` and ``exp`` are within one ulp of the exact values, as torch's are;
so results agree with torch's to about 1e-7 relative, not bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from . import _scan
from ._compat import is_traced

__all__ = ["KINDS", "ROW_KINDS", "applies", "cat_probs", "load_kernels", "rows", "soft_ce", "within"]

ROW_KINDS = ("bce", "bce_logits", "kl", "poisson")
"""The elementwise losses of :func:`rows` (``RowReduce`` kinds of :mod:`probloss.torch._kernels`)."""

KINDS = (*ROW_KINDS, "cat_probs", "soft_ce")
"""Every loss with a fused kernel; ``cat_probs`` and ``soft_ce`` have their own function."""

_kernels = None


def _compiled():
    """The kernels by loss (compiled on first call), or ``{}`` if they cannot be imported."""
    global _kernels
    if _kernels is None:
        _kernels = {}
        if _scan.available() and _scan.try_import("probloss._fused_kernels"):
            from . import _fused_kernels

            _kernels = _fused_kernels.KERNELS
    return _kernels


def applies(kind: str, t, p) -> bool:
    """Whether the kernel of loss ``kind`` serves these inputs (without computing anything)."""
    return _views(kind, t, p) is not None


def _views(kind, t, p):
    """2-D float32 NumPy views ``(t, p)`` of big CPU inputs, or ``None``."""
    if kind not in KINDS or tuple(t.shape) != tuple(p.shape) or len(p.shape) == 0 or p.shape[-1] == 0:
        return None
    if math.prod(p.shape) < _scan.MIN_ELEMENTS or is_traced(p):  # a compiled graph cannot call numba
        return None
    a_t, a_p = _scan.as_numpy(t), _scan.as_numpy(p)
    if a_t is None or a_p is None or a_t.dtype != np.float32 or a_p.dtype != np.float32 or not _compiled():
        return None
    k = a_p.shape[-1]
    return a_t.reshape(-1, k), a_p.reshape(-1, k)


def rows(kind: str, t, p, epsilon: float, *, mean: bool, check: bool = True):
    """``(values, t_bits, p_bits)`` for the last axis, or ``None`` where no kernel applies.

    ``values`` (float32 NumPy, shape ``p.shape[:-1]``) is the per-row mean (or sum) of the
    loss ``kind``; ``t_bits`` and ``p_bits`` are the largest bit patterns of ``t`` and
    ``p``, for :func:`within` (0 with ``check=False``, which skips that work).
    """
    views = _views(kind, t, p)
    if views is None or kind not in ROW_KINDS:
        return None
    t2, p2 = views
    kernel = _compiled()[kind]
    lo, hi = np.float32(epsilon), np.float32(1.0 - epsilon)  # float32 bounds, as torch and Keras clip with
    sums = np.empty(p2.shape[0], np.float64)
    results = _scan.split_rows(kernel, p2.shape, t2, p2, lo, hi, bool(check), sums)
    t_bits, p_bits = _max_bits(results)
    if mean:
        sums /= p2.shape[1]
    return sums.astype(np.float32).reshape(tuple(p.shape[:-1])), t_bits, p_bits


def cat_probs(t, p, epsilon: float, *, check: bool = True):
    """``(loss, sums, t_bits, p_bits)`` of Keras's categorical cross-entropy from
    probabilities over the last axis, or ``None``.

    ``loss`` is float32 and ``sums`` (the row sums Keras renormalises by) float64 NumPy,
    both of shape ``p.shape[:-1]``; the bits are for :func:`within`.
    """
    views = _views("cat_probs", t, p)
    if views is None:
        return None
    t2, p2 = views
    lo, hi = np.float32(epsilon), np.float32(1.0 - epsilon)
    loss, sums = np.empty(p2.shape[0], np.float64), np.empty(p2.shape[0], np.float64)
    results = _scan.split_rows(_compiled()["cat_probs"], p2.shape, t2, p2, lo, hi, bool(check), loss, sums)
    shape = tuple(p.shape[:-1])
    t_bits, p_bits = _max_bits(results)
    return loss.astype(np.float32).reshape(shape), sums.reshape(shape), t_bits, p_bits


def soft_ce(t, x, *, check: bool = True):
    """``(loss, t_sum, t_bits)`` of the softmax cross-entropy over the last axis, or ``None``.

    ``loss = sum(t * (logsumexp(x) - x), -1)`` and ``t_sum = sum(t, -1)`` (float32 NumPy,
    shape ``x.shape[:-1]``); ``t_bits`` is the largest bit pattern of ``t``, for
    :func:`within` (0 with ``check=False``).
    """
    views = _views("soft_ce", t, x)
    if views is None:
        return None
    t2, x2 = views
    loss, t_sum = np.empty(x2.shape[0], np.float64), np.empty(x2.shape[0], np.float64)
    results = _scan.split_rows(_compiled()["soft_ce"], x2.shape, t2, x2, bool(check), loss, t_sum)
    shape = tuple(x.shape[:-1])
    return loss.astype(np.float32).reshape(shape), t_sum.astype(np.float32).reshape(shape), max(int(r) for r in results)


def _max_bits(results):
    """``(t_bits, p_bits)``: the largest of each over the threads' ``(t_bits, p_bits)``."""
    return tuple(max(int(r[i]) for r in results) for i in range(2))


def load_kernels() -> bool:
    """Compile, or load from numba's disk cache, every kernel now; False without numba.

    Otherwise each kernel is loaded on the first big array that needs it (about 4 s to
    compile on a 2-core CPU the very first time, then 0.5 s from the cache, most of it
    importing numba, which stays resident: about 130 MB).  The benchmarks call this
    before measuring memory, so that numba counts as loaded library code, as torch's and
    JAX's own kernels do.
    """
    if not _compiled():
        return False
    one = np.ones((1, 1), np.float32)
    out = np.empty(1, np.float64)
    for kind in ROW_KINDS:
        _compiled()[kind](one, one, np.float32(0.0), np.float32(1.0), True, out, 0, 1)
    _compiled()["cat_probs"](one, one, np.float32(0.0), np.float32(1.0), True, out, out.copy(), 0, 1)
    _compiled()["soft_ce"](one, one, True, out, out.copy(), 0, 1)
    _scan.load_kernels()
    return True


def within(bits: int, lo: float, hi: float | None) -> bool:
    """True when an input whose largest bit pattern is ``bits`` surely lies in ``[lo, hi]``.

    Only ``lo == 0`` can be told from the bits; otherwise (and for ``-0.0``) this is
    False and the caller runs the exact check.
    """
    if lo != 0:
        return False
    bound = np.float32(math.inf if hi is None else hi)
    return bits <= int(bound.view(np.uint32))
