"""Running the compiled scans on torch's OpenMP threads (``probloss._team``).

The speed gain is measured by ``benchmarks/bench_checks.py``; here: the work runs once
on each thread of the team, every row is done once, errors reach the caller, and a
forked process (where libgomp's team is gone) falls back to threads of its own.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading

import numpy as np
import pytest

from probloss import _scan, _team

torch = pytest.importorskip("torch")

needs_team = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "parallel backend: OpenMP" not in torch.__config__.parallel_info(),
    reason="torch's OpenMP team is used on Linux builds with OpenMP",
)


def _count_rows(rows):
    done = np.zeros(rows, np.int64)

    def kernel(out, start, stop):
        out[start:stop] += 1
        return stop - start

    assert sum(_scan.split_rows(kernel, (rows, 1 << 12), done)) == rows
    return done


@needs_team
def test_the_team_is_found_and_runs_work_on_each_of_its_threads(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # a team of 3 even on a small CPU
    assert _team.size() == 3
    seen = []
    lock = threading.Lock()

    def work():
        with lock:
            seen.append(threading.get_ident())

    _team.run(work, 3)
    assert len(seen) == 3 and len(set(seen)) == 3


@needs_team
def test_split_rows_on_the_team_does_every_row_once(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    done = _count_rows(5_001)
    assert np.all(done == 1)


def test_split_rows_on_threads_of_its_own_does_every_row_once(monkeypatch):
    monkeypatch.setattr(_team, "size", lambda: 0)
    monkeypatch.setattr(_scan, "_own_threads", lambda: 3)
    done = _count_rows(5_001)
    assert np.all(done == 1)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
@pytest.mark.parametrize("team", [True, False], ids=["team", "own threads"])
def test_an_error_in_one_chunk_reaches_the_caller(monkeypatch, team, error):
    # On torch's threads a ctypes callback would print and drop an exception (a Ctrl-C
    # among them); split_rows must hand it to its caller.
    if not team:
        monkeypatch.setattr(_team, "size", lambda: 0)
    elif _team.size() == 0:
        pytest.skip("no OpenMP team here")

    def failing(start, stop):
        if start > 0:
            raise error("chunk failed")
        return 0

    with pytest.raises(error, match="chunk failed"):
        _scan.split_rows(failing, (5_001, 1 << 12))


def _in_child(queue):
    done = _count_rows(5_001)
    queue.put((_team.size(), int(done.sum())))


@pytest.mark.skipif(not hasattr(multiprocessing, "get_context") or sys.platform != "linux", reason="fork is Linux's")
def test_a_forked_process_uses_threads_of_its_own():
    # libgomp's team does not survive a fork: torch's own parallel ops hang in such a
    # child once the parent has used them.  The scan must not.
    torch.ones(4096, 4096).sum(-1)  # the parent's team is now running
    _count_rows(5_001)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail("the scan hung in a forked process")
    assert queue.get(timeout=5) == (0, 5_001)
