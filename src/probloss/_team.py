"""Run a function on torch's own OpenMP threads (Linux, torch built with GNU OpenMP).

Why: after every parallel torch operation, torch's OpenMP worker threads keep spinning
for a few milliseconds (libgomp's default wait policy), ready for the next one.  Threads
of our own, started then, share the cores with those spinners: on a 2-core machine a
20 ms scan of 1 GB lost 4-6 ms to them, and the check that should have been nearly free
cost 25%.  ``GOMP_parallel(fn, data, n, flags)``, the entry point that compiled OpenMP
code calls for ``#pragma omp parallel``, runs ``fn`` on the calling thread and on the
team's workers, the very threads that are spinning, so the work starts at once.

``fn`` here is a ctypes callback.  Each thread takes the GIL only to call into a numba
kernel compiled with ``nogil=True``, so the kernels themselves run in parallel.

:func:`size` is 0, and the caller starts threads of its own, where this does not apply:
torch not imported (we never import it), not on Linux, torch built with another thread
pool, its libgomp not found, or in a process forked after probloss was imported: libgomp's
team does not survive a fork (torch's own parallel operations hang there), threads of our
own do.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["run", "size"]

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_parallel = None  # GOMP_parallel, False once known to be unavailable
_forked = False


def _after_fork_in_child():
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork, nor a team
    os.register_at_fork(after_in_child=_after_fork_in_child)


def size() -> int:
    """Threads in torch's OpenMP team (``torch.get_num_threads()``), or 0 if not usable."""
    torch = sys.modules.get("torch")
    if torch is None or _forked or not _gomp_parallel():
        return 0
    return torch.get_num_threads()


def run(work, threads: int) -> None:
    """Call ``work()`` once on each of ``threads`` threads of torch's team (this one among
    them); returns when all have returned.  ``work`` must not raise: ctypes would print
    the error and drop it."""
    callback = _CALLBACK(lambda _data: work())  # kept alive until GOMP_parallel returns
    _parallel(callback, None, threads, 0)  # ctypes releases the GIL for the call


def _gomp_parallel():
    """Look up ``GOMP_parallel`` in the libgomp torch runs on (once)."""
    global _parallel
    if _parallel is None:
        _parallel = False
        path = _torch_libgomp(sys.modules["torch"])
        if path is not None:
            try:
                fn = ctypes.CDLL(path).GOMP_parallel  # already loaded: the same library
            except (OSError, AttributeError):
                return False
            fn.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            fn.restype = None
            _parallel = fn
    return _parallel


def _torch_libgomp(torch) -> str | None:
    """Path of the libgomp loaded in this process for torch, or ``None``.

    The one under torch's own directory (pip wheels bundle it), else the only one loaded
    (a conda torch uses the environment's).  None where torch's parallel backend is not
    OpenMP, or the choice is not clear.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
            return None
        with open("/proc/self/maps") as maps:
            loaded = {line.split()[-1] for line in maps if "libgomp" in line}
    except (AttributeError, OSError, RuntimeError):
        return None
    loaded = {p for p in loaded if os.path.basename(p).startswith("libgomp")}
    home = os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))  # site-packages
    own = sorted(p for p in loaded if p.startswith(os.path.join(home, "torch")))
    if len(own) == 1:
        return own[0]
    return next(iter(loaded)) if len(loaded) == 1 else None
