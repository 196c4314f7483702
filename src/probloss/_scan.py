"""One-pass scans of big CPU arrays for the value checks (optional; needs numba).

A value check reads every element of an ``N x K`` input.  On a memory-bound loss that
second read costs as much as the loss itself: sparse cross-entropy from probabilities
reads ``y_pred`` once (the row sums Keras renormalises by), and a separate ``min``
doubles its time.  NumPy and eager torch cannot fuse two reductions into one pass, so
this module compiles, with numba, one loop that does both:

* :func:`row_sums_in_range`: per-row sums (accumulated in float64) *and* the test
  ``lo <= x <= hi`` over every element, in the same pass;
* :func:`in_range`: the test alone, ``lo <= x <= hi`` (NaN fails it), in one pass where
  NumPy needs two (``min`` and ``max``).

Both split the rows over a few threads (the compiled loop releases the GIL); threads are
started per call, so a fork (a data-loader worker) never inherits a half-dead pool.

Every function returns ``None`` when it does not apply, and the caller then runs its
generic ``xp`` code: numba is not installed (``pip install probloss[fast]``), the array
is small (below :data:`MIN_ELEMENTS`, where compiling and threads are not worth it), not
on the CPU, not C-contiguous, or not float32/float64.  The first call compiles the loop
(about a second) and caches it on disk.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading

import numpy as np

__all__ = ["MIN_ELEMENTS", "as_numpy", "available", "in_range", "row_sums_in_range", "split_rows", "try_import"]

MIN_ELEMENTS = 1 << 20
"""Arrays smaller than this are checked with plain ``xp`` reductions."""

_BLOCK = 1 << 12  # in_range views a flat array as rows of this many elements
_kernel = None
_numba_usable = None


def available() -> bool:
    """Whether numba is installed and imports (tried on the first big array, then cached).

    A numba that is installed but fails to import (say, built for another NumPy) gives
    one warning, and the checks and losses take their ``xp`` code: same numbers, slower.
    """
    global _numba_usable
    if _numba_usable is None:
        _numba_usable = importlib.util.find_spec("numba") is not None and try_import("numba")
    return _numba_usable


def try_import(module: str) -> bool:
    """Import ``module``; on failure warn once and return False."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure means: use the xp code
        import warnings

        from ._errors import ProblossWarning

        warnings.warn(
            f"probloss: {module} is installed but failed to import ({exc!r}); big arrays take the "
            "slower generic code. Reinstall it (`pip install -U numba`) to get the compiled one.",
            ProblossWarning,
            stacklevel=3,
        )
        return False
    return True


def _compiled():
    """The numba kernel, compiled on first use (and cached on disk by numba)."""
    global _kernel
    if _kernel is None:
        import numba

        # ``reassoc`` lets LLVM split the float64 sum over vector lanes (it reorders the
        # additions, as a pairwise sum does); comparisons keep their NaN semantics.
        @numba.njit(nogil=True, cache=True, fastmath={"reassoc"})
        def scan_rows(x, lo, hi, sums, start, stop):
            """Rows ``start:stop`` of the 2-D ``x``: sums into ``sums``; True if all in range.

            Eight rows at a time: one row's sum is a chain of dependent additions, and
            eight independent chains keep the vector units busy (about 25% faster over
            1 GB, near the speed of memory); each row is still added in the same order.
            """
            ok = True
            n = x.shape[1]
            i = start
            while i + 8 <= stop:
                s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
                for j in range(n):
                    v0, v1, v2, v3 = x[i, j], x[i + 1, j], x[i + 2, j], x[i + 3, j]
                    v4, v5, v6, v7 = x[i + 4, j], x[i + 5, j], x[i + 6, j], x[i + 7, j]
                    s0, s1, s2, s3 = s0 + v0, s1 + v1, s2 + v2, s3 + v3
                    s4, s5, s6, s7 = s4 + v4, s5 + v5, s6 + v6, s7 + v7
                    ok &= (v0 >= lo) & (v0 <= hi) & (v1 >= lo) & (v1 <= hi) & (v2 >= lo) & (v2 <= hi)
                    ok &= (v3 >= lo) & (v3 <= hi) & (v4 >= lo) & (v4 <= hi) & (v5 >= lo) & (v5 <= hi)
                    ok &= (v6 >= lo) & (v6 <= hi) & (v7 >= lo) & (v7 <= hi)
                sums[i : i + 8] = (s0, s1, s2, s3, s4, s5, s6, s7)
                i += 8
            for r in range(i, stop):
                s = 0.0
                for j in range(n):
                    v = x[r, j]
                    s += v
                    ok &= (v >= lo) & (v <= hi)
                sums[r] = s
            return ok

        _kernel = scan_rows
    return _kernel


def as_numpy(x):
    """A zero-copy NumPy view of a big C-contiguous float32/64 CPU array, else ``None``."""
    if math.prod(x.shape) < MIN_ELEMENTS or not available():
        return None
    if isinstance(x, np.ndarray):
        a = x
    elif type(x).__module__.startswith("torch"):
        if x.device.type != "cpu" or x.is_conj() or x.is_neg() or not x.is_contiguous():
            return None
        a = x.detach().numpy()
    else:
        return None
    if a.dtype not in (np.float32, np.float64) or not a.flags.c_contiguous:
        return None
    return a


def _threads(rows: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8, rows))


def split_rows(kernel, rows: int, *args) -> list:
    """``kernel(*args, start, stop)`` over ``rows`` rows split between threads; the results.

    The kernels are compiled with ``nogil=True``, so the threads run in parallel.  They are
    started per call (a few tens of microseconds, nothing next to a scan of a million
    elements), so a fork never inherits a pool.
    """
    workers = _threads(rows)
    bounds = [rows * i // workers for i in range(workers + 1)]
    results = [None] * workers

    def work(i):
        results[i] = kernel(*args, bounds[i], bounds[i + 1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, workers)]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    return results


def _scan(a2, lo: float, hi: float, sums) -> bool:
    """Run the kernel over the rows of ``a2``, split over threads; True if all in range."""
    return all(split_rows(_compiled(), a2.shape[0], a2, lo, hi, sums))


def row_sums_in_range(x, lo: float, hi: float):
    """``(sums, ok)`` for the last axis of ``x`` in one pass, or ``None``.

    ``sums`` is a float64 NumPy array of shape ``x.shape[:-1]``; ``ok`` is True when every
    element satisfies ``lo <= x <= hi`` (so False for NaN).
    """
    a = as_numpy(x)
    if a is None or a.ndim == 0:
        return None
    a2 = a.reshape(-1, a.shape[-1])
    sums = np.empty(a2.shape[0], np.float64)
    ok = _scan(a2, float(lo), float(hi), sums)
    return sums.reshape(a.shape[:-1]), ok


def in_range(x, lo: float | None, hi: float | None):
    """True when every element satisfies ``lo <= x <= hi`` (NaN fails), or ``None``.

    ``lo`` or ``hi`` may be ``None`` for a one-sided test.
    """
    a = as_numpy(x)
    if a is None:
        return None
    lo = -math.inf if lo is None else float(lo)
    hi = math.inf if hi is None else float(hi)
    flat = a.reshape(-1)
    body = flat.size - flat.size % _BLOCK
    a2 = flat[:body].reshape(-1, _BLOCK)
    ok = _scan(a2, lo, hi, np.empty(a2.shape[0], np.float64))
    tail = flat[body:]
    return ok and bool(np.all((tail >= lo) & (tail <= hi)))
