"""Python threads: value checks are per thread, and concurrent big NumPy losses are right.

The old code kept one global switch for the value checks (set by one thread, seen by
all) and shared its worker threads and scratch buffers between callers: two threads
computing big losses at once could get each other's rows, or crash.  Now the switch is
thread-local, and each call computes on its own thread with its own buffers.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import probloss as pl
from tests.faults import _child


def _in_thread(fn, timeout=30):
    """Run ``fn`` in a new thread; return what it returned, re-raise what it raised."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the thread did not finish"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _bad_label():
    return pl.sparse_categorical_crossentropy([0, 5], [[0.5, 0.5], [0.5, 0.5]])


def test_value_checks_switch_is_per_thread():
    off, go_on, done = threading.Event(), threading.Event(), threading.Event()

    def switch_off():
        pl.set_value_checks(False)
        off.set()
        assert go_on.wait(30)
        try:
            return pl.value_checks_enabled()
        finally:
            pl.set_value_checks(True)
            done.set()

    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("enabled", switch_off()), daemon=True)
    thread.start()
    try:
        assert off.wait(30)
        # checks are off in the other thread, on here and in a third thread
        assert pl.value_checks_enabled()
        with pytest.raises(pl.LabelValueError):
            _bad_label()
        with pytest.raises(pl.LabelValueError):
            _in_thread(_bad_label)
        assert _in_thread(pl.value_checks_enabled) is True
    finally:
        go_on.set()
        thread.join(30)
    assert not thread.is_alive() and done.is_set()
    assert box["enabled"] is False


def test_checks_off_in_a_thread_do_not_leak_out():
    def unchecked():
        with pl.set_value_checks(False):
            return pl.value_checks_enabled()

    assert _in_thread(unchecked) is False
    assert pl.value_checks_enabled()
    with pytest.raises(pl.LabelValueError):
        _bad_label()


def test_two_threads_compute_big_numpy_losses_concurrently():
    pytest.importorskip("numba")
    code = """
import threading
import numpy as np
from tests.faults import _child

B = _child.BIG
inputs = {seed: (_child.probs(seed, B, 0.0, 1.0), _child.probs(seed + 1, B), _child.logits(seed + 2, B),
                 _child.soft_targets(seed + 3, B)) for seed in (10, 20)}
barrier = threading.Barrier(2)
results, errors = {}, []


def work(seed):
    try:
        import probloss  # first import and first kernel load race between the threads

        t, p, x, s = inputs[seed]
        barrier.wait(30)
        out = []
        for _ in range(5):
            out.append([
                float(np.mean(probloss.binary_crossentropy(t, p), dtype=np.float64)),
                float(np.mean(probloss.kl_divergence(t, p), dtype=np.float64)),
                float(np.mean(probloss.poisson(t, p), dtype=np.float64)),
                float(np.mean(probloss.categorical_crossentropy(s, x, from_logits=True), dtype=np.float64)),
            ])
        results[seed] = out
    except BaseException as exc:
        errors.append(repr(exc))


threads = [threading.Thread(target=work, args=(seed,)) for seed in (10, 20)]
for th in threads:
    th.start()
for th in threads:
    th.join(60)
import sys
backend = sys.modules.get("probloss._backends.numpy")
_child.report({"results": {str(k): v for k, v in results.items()}, "errors": errors,
               "alive": [th.is_alive() for th in threads], "numba_used": bool(getattr(backend, "_numba", None))})
"""
    out, _ = _child.run(code, timeout=90)
    assert out["errors"] == [] and out["alive"] == [False, False]
    for seed in (10, 20):
        t, p, x, s = (_child.probs(seed, _child.BIG, 0.0, 1.0), _child.probs(seed + 1, _child.BIG),
                      _child.logits(seed + 2, _child.BIG), _child.soft_targets(seed + 3, _child.BIG))
        expected = [_child.ref_binary(t, p), _child.ref_kl(t, p), _child.ref_poisson(t, p), _child.ref_soft_ce(s, x)]
        for rep in out["results"][str(seed)]:
            for name, got, want in zip(("binary", "kl", "poisson", "soft_ce"), rep, expected):
                _child.assert_close(got, want, f"{name}, thread {seed}")
    # the two threads' inputs differ: a swapped row block would show
    assert not np.isclose(out["results"]["10"][0][0], out["results"]["20"][0][0], rtol=1e-9)
    assert out["numba_used"]  # the kernels, not the generic code, computed these
