"""One-pass scans of big CPU arrays for the value checks (optional; needs numba).

A value check reads every element of an ``N x K`` input.  On a memory-bound loss that
second read costs as much as the loss itself: sparse cross-entropy from probabilities
reads ``y_pred`` once (the row sums Keras renormalises by), and a separate ``min``
doubles its time.  NumPy and eager torch cannot fuse two reductions into one pass, so
this module compiles, with numba, one loop that does both:

* :func:`row_sums_in_range`: per-row sums (blocks in float32, then float64; see
  :func:`_compiled`) *and* the test ``lo <= x <= hi`` over every element, in the same pass;
* :func:`in_range`: the test alone, ``lo <= x <= hi`` (NaN fails it), in one pass where
  NumPy needs two (``min`` and ``max``).

Both share the rows out between a few threads (the compiled loop releases the GIL; see
:func:`split_rows`); threads are started per call, so a fork (a data-loader worker) never
inherits a half-dead pool.

Every function returns ``None`` when it does not apply, and the caller then runs its
generic ``xp`` code: numba is not installed (``pip install probloss[fast]``), the array
is small (below :data:`MIN_ELEMENTS`, where compiling and threads are not worth it), not
on the CPU, not C-contiguous, or not float32/float64.  The first call compiles the loop
(about a second) and caches it on disk.
"""

from __future__ import annotations

import _thread
import importlib.util
import math
import os
import threading

import numpy as np

from . import _team

__all__ = [
    "MIN_ELEMENTS",
    "as_numpy",
    "available",
    "in_range",
    "load_kernels",
    "row_sums_in_range",
    "split_rows",
    "try_import",
]

MIN_ELEMENTS = 1 << 20
"""Arrays smaller than this are checked with plain ``xp`` reductions."""

_BLOCK = 1 << 12  # in_range views a flat array as rows of this many elements
# split_rows hands out rows in chunks of about 1/8 of a thread's share, within these bounds
# (in elements): small enough that a thread paused for a few ms leaves little undone, big
# enough that handing one out (a lock and a call into numba: a few us) is noise.
_CHUNK_MIN, _CHUNK_MAX = 1 << 18, 1 << 22
_kernels = None
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


_SUM_BLOCK = 256  # elements added in the array's own precision before going into float64


def _compiled():
    """The numba kernels ``(compare, bits)``, compiled on first use (cached on disk by numba).

    Both add each row in blocks of :data:`_SUM_BLOCK` elements in the array's own dtype
    (LLVM spreads a block over vector lanes, 4 elements per lane for float32), then add
    the block sums in float64: on rows of 32,000 float32 values, within 2e-8 (uniform
    rows) to 1.5e-7 (peaked softmax rows) relative of the exact sums, where torch's
    ``sum`` is within 1.8e-7 to 2.8e-7, at the speed of a float32 sum.  Accumulating every
    element in float64 instead cost a conversion per element and ran 30% slower than
    torch's ``sum`` once the data was in cache.

    * ``compare(x, lo, hi, zero, sums, start, stop)`` tests ``lo <= x <= hi`` (NaN fails)
      and returns True if all pass; ``lo``, ``hi`` and ``zero`` have ``x``'s dtype.
    * ``bits(x, zero, sums, start, stop)``, float32 only, returns the largest bits of
      ``x + 0`` read as ``uint32``: at most those of ``hi`` exactly when every element
      lies in ``[0, hi]`` (negative numbers and NaN have larger bits; adding +0 turns -0.0
      into +0.0).  One integer ``max`` per element, where the comparisons take four
      operations, so this is the test for the usual bounds ``[0, 1]`` and ``[0, inf]``.

    Both take rows ``start:stop`` of the 2-D ``x`` and write their sums into ``sums``.  The
    loop is written out in each on purpose, as in :mod:`probloss._fused_kernels`: numba
    cannot cache a kernel built by a factory (a closure over the test).
    """
    global _kernels
    if _kernels is None:
        import numba

        from ._fused_kernels import _ubits

        block = _SUM_BLOCK
        # ``reassoc`` lets LLVM split the sums over vector lanes (it reorders additions, as
        # a pairwise sum does); comparisons keep their NaN semantics, and ``v + 0`` is not
        # folded away (that would need ``nsz``).
        jit = numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc"})

        @jit
        def compare(x, lo, hi, zero, sums, start, stop):
            ok = True
            n = x.shape[1]
            whole = n - n % block
            for i in range(start, stop):
                row = x[i]
                s = 0.0
                for j0 in range(0, whole, block):
                    b = zero
                    for j in range(j0, j0 + block):
                        v = row[j]
                        b += v
                        ok &= (v >= lo) & (v <= hi)
                    s += b
                for j in range(whole, n):
                    v = row[j]
                    s += v
                    ok &= (v >= lo) & (v <= hi)
                sums[i] = s
            return ok

        @jit
        def bits(x, zero, sums, start, stop):
            m = np.uint32(0)
            n = x.shape[1]
            whole = n - n % block
            for i in range(start, stop):
                row = x[i]
                s = 0.0
                for j0 in range(0, whole, block):
                    b = zero
                    for j in range(j0, j0 + block):
                        v = row[j]
                        b += v
                        m = max(m, _ubits(v + zero))
                    s += b
                for j in range(whole, n):
                    v = row[j]
                    s += v
                    m = max(m, _ubits(v + zero))
                sums[i] = s
            return m

        _kernels = compare, bits
    return _kernels


def load_kernels() -> None:
    """Compile (or load from the disk cache) the kernels for every dtype they serve."""
    compare, bits = _compiled()
    sums = np.empty(1, np.float64)
    for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
        one, zero = np.ones((1, 1), dtype), dtype.type(0)
        compare(one, zero, dtype.type(1), zero, sums, 0, 1)
    bits(np.ones((1, 1), np.float32), np.float32(0), sums, 0, 1)


def _bound(value: float, dtype, *, up: bool):
    """``value`` as ``dtype``, rounded so that the test keeps its meaning.

    For an element ``v`` of ``dtype``, ``v >= lo`` holds exactly when ``v >= lo'`` with
    ``lo'`` the smallest ``dtype`` value not below ``lo`` (``up=True``); likewise
    ``v <= hi`` with the largest not above it.
    """
    b = dtype.type(value)
    if up and b < value:
        b = np.nextafter(b, dtype.type(np.inf))
    elif not up and b > value:
        b = np.nextafter(b, dtype.type(-np.inf))
    return b


def _scan(a2, lo: float, hi: float, sums) -> bool:
    """Sums of the rows of ``a2`` into ``sums``, split over threads; True if all lie in
    ``[lo, hi]``."""
    compare, bits = _compiled()
    dtype = a2.dtype
    zero = dtype.type(0)
    lo_, hi_ = _bound(lo, dtype, up=True), _bound(hi, dtype, up=False)
    if dtype == np.float32 and lo == 0 and hi_ >= 0:
        largest = max(split_rows(bits, a2.shape, a2, zero, sums))
        return largest <= int(hi_.view(np.uint32))
    return all(split_rows(compare, a2.shape, a2, lo_, hi_, zero, sums))


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


def _own_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 8)


def split_rows(kernel, shape: tuple[int, int], *args) -> list:
    """``kernel(*args, start, stop)`` over the rows of a ``(rows, K)`` array, shared between
    threads; the results.

    The kernels are compiled with ``nogil=True``, so the threads run in parallel.  The rows
    go out in chunks (see :data:`_CHUNK_MIN`); each thread takes the next chunk when done
    with one, so a thread that starts late, or is paused, leaves its share to the others.

    The threads are torch's own OpenMP team where torch is loaded (see
    :mod:`probloss._team`: its workers are then awake, and would otherwise compete with
    ours), else threads started for this call (a new thread may take a few ms to be
    scheduled: the calling thread does not wait for it, it starts on the chunks at once).
    We keep no pool of our own, so a fork never inherits one.  The results come in the
    order the chunks finished (callers combine them with ``all`` or ``max``).
    """
    rows, row_elements = shape
    team = _team.size()
    workers = max(1, min(team or _own_threads(), rows))
    chunk = min(max(rows * row_elements // (8 * workers), _CHUNK_MIN), _CHUNK_MAX)
    step = max(1, chunk // max(1, row_elements))  # rows per chunk
    if workers == 1 or step >= rows:
        return [kernel(*args, 0, rows)]
    lock = threading.Lock()
    idle = threading.Condition(lock)
    state = {"next": 0, "busy": 0}
    results, errors = [], []

    def take():
        with lock:
            start = state["next"]
            if start >= rows or errors:
                return None
            state["next"] = start + step
            state["busy"] += 1
            return start

    def work():
        # Nothing may escape: on torch's threads ctypes would print and drop it (a Ctrl-C
        # on the calling thread included), so every error is re-raised by the caller.
        try:
            while (start := take()) is not None:
                try:
                    results.append(kernel(*args, start, min(start + step, rows)))  # list.append is atomic
                finally:
                    with lock:
                        state["busy"] -= 1
                        idle.notify_all()
        except BaseException as exc:
            errors.append(exc)

    if team:
        _team.run(work, workers)
    else:
        for _ in range(workers - 1):
            # Not threading.Thread: its start() blocks until the new thread runs.
            _thread.start_new_thread(work, ())
        work()
        with lock:
            while state["busy"]:  # chunks still running on the helpers
                idle.wait()
    if errors:
        raise errors[0]
    return results


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
    tail = flat[body:].astype(np.float64)  # exact; NumPy would round a Python-float bound to float32
    return ok and bool(np.all((tail >= lo) & (tail <= hi)))
