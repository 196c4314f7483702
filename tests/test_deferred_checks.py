"""Value checks read later (``probloss._deferred``), the mechanism CUDA tensors use so that a
loss never waits for the device.

On a CPU the mechanism runs as on CUDA inside ``_deferred.emulate_on_cpu()`` (records are
ready at once: there is no copy and no event); the order of reading, the bound on waiting
records, the call numbers and the messages are tested here with torch's own column (no
Triton).  The Triton kernels' checks are tested in ``tests/backends/test_triton.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import probloss as pl  # noqa: E402
import probloss.torch as pt  # noqa: E402
from probloss import _deferred  # noqa: E402


@pytest.fixture(autouse=True)
def clean_queue():
    _deferred.clear()
    yield
    _deferred.clear()


def test_only_cuda_tensors_defer_outside_the_emulation():
    assert not _deferred.applies(torch.zeros(3))
    assert not _deferred.applies(np.zeros(3))
    with _deferred.emulate_on_cpu():
        assert _deferred.applies(torch.zeros(3))
        assert not _deferred.applies(np.zeros(3))
    assert not _deferred.applies(torch.zeros(3))


def test_a_non_finite_result_is_reported_later_naming_the_sample():
    x = torch.tensor([[0.5, 1.0, -1.0], [math.nan, 0.0, 0.0], [1.0, 2.0, 3.0]])
    with _deferred.emulate_on_cpu():
        out = pl.sparse_categorical_crossentropy(torch.tensor([0, 1, 2]), x, from_logits=True)  # the torch column
        line = _line_of("pl.sparse_categorical_crossentropy(torch.tensor([0, 1, 2]), x, from_logits=True)  # the torch")
        assert torch.isnan(out[1])
        with pytest.raises(pl.PredictionValueError) as info:
            pt.check_pending()
    msg = str(info.value)
    assert "the loss of sample (1,) is nan: `y_pred` holds NaN or inf there" in msg
    assert f"test_deferred_checks.py:{line} in test_a_non_finite_result" in msg
    pt.check_pending()  # reported once


def _line_of(text: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


def test_calls_are_numbered_per_thread_and_the_next_call_raises():
    x = torch.tensor([[0.5, 1.0], [math.inf, 0.0]])
    good = torch.tensor([[0.5, 1.0], [0.0, 0.0]])
    with _deferred.emulate_on_cpu():
        for _ in range(3):
            pl.categorical_crossentropy(torch.ones(2, 2) / 2, good, from_logits=True)
        pl.categorical_crossentropy(torch.ones(2, 2) / 2, x, from_logits=True)  # the 4th call
        with pytest.raises(pl.PredictionValueError, match=r"call 4 on this thread, .* the loss of sample \(1,\) is"):
            pl.categorical_crossentropy(torch.ones(2, 2) / 2, good, from_logits=True)


def test_a_sum_that_overflows_is_not_an_error():
    values = torch.tensor([3e38, 3e38], dtype=torch.float32)  # finite, but their float32 sum is inf
    with _deferred.emulate_on_cpu():
        _deferred.result(values, ("y_pred",))
        pt.check_pending()


def test_plus_inf_may_be_a_result():
    values = torch.tensor([1.0, math.inf])
    with _deferred.emulate_on_cpu():
        _deferred.result(values, ("y_pred",), allow_inf=True)
        pt.check_pending()
        _deferred.result(torch.tensor([1.0, math.nan]), ("y_pred",), allow_inf=True)
        with pytest.raises(pl.PredictionValueError, match=r"sample \(1,\) is nan"):
            pt.check_pending()


class _Event:
    """A stand-in for a CUDA event: not done until waited for."""

    def __init__(self, log, name):
        self.log, self.name, self.done = log, name, False

    def query(self):
        return self.done

    def synchronize(self):
        self.log.append(self.name)
        self.done = True


def _record(log, name, bad=False):
    record = _deferred.Record(name, None, 0, None, 1)
    record.host = torch.tensor([1 if bad else 0])
    record.reports = [lambda key: (_ for _ in ()).throw(pl.LabelValueError(f"{name} is bad"))]
    record.event = _Event(log, name)
    return record


def test_records_are_read_in_order_when_ready_and_the_oldest_is_waited_for_beyond_the_bound():
    log = []
    queue = _deferred._pending()
    for i in range(_deferred.MAX_PENDING - 1):
        queue.append(_record(log, f"r{i}"))
    _deferred.drain()  # nothing is ready, and the queue is under the bound: no wait
    assert log == [] and len(queue) == _deferred.MAX_PENDING - 1
    queue.append(_record(log, "last"))
    _deferred.drain()  # at the bound: the oldest is waited for, then the rest are still not ready
    assert log == ["r0"] and len(queue) == _deferred.MAX_PENDING - 1
    queue[1].event.done = True  # r2 finished but r1 did not: reading stays in order
    _deferred.drain()
    assert len(queue) == _deferred.MAX_PENDING - 1
    queue[0].event.done = True
    _deferred.drain()
    assert len(queue) == _deferred.MAX_PENDING - 3


def test_check_pending_waits_and_raises_the_first_error_with_its_call():
    log = []
    queue = _deferred._pending()
    queue.extend([_record(log, "first"), _record(log, "second", bad=True), _record(log, "third", bad=True)])
    with pytest.raises(pl.LabelValueError, match=r"value check of an earlier call, read after it returned: call 1 on this thread, second\) second is bad"):
        pt.check_pending()
    assert log == ["first", "second"]
    with pytest.raises(pl.LabelValueError, match="third is bad"):
        pt.check_pending()
    pt.check_pending()


def test_checks_off_defer_nothing():
    with _deferred.emulate_on_cpu(), pl.set_value_checks(False):
        pl.sparse_categorical_crossentropy(torch.tensor([0]), torch.tensor([[math.nan, 0.0]]), from_logits=True)
    assert not _deferred._pending()
