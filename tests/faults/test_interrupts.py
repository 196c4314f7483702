"""A loss loop interrupted by a timer (Ctrl-C), then one more call.

In the old code a KeyboardInterrupt that arrived while probloss's worker threads or
torch's OpenMP team ran a kernel left them waiting: the next loss call hung, and the
interpreter printed "Exception ignored" at exit.  Now every kernel runs on the caller's
thread: the interrupt surfaces as a KeyboardInterrupt, and the next call gives the right
number.
"""

from __future__ import annotations

import pytest

from tests.faults import _child

pytest.importorskip("numba")

_SHAPE = (4096, 4096)  # 16M float32 elements: each call takes tens of milliseconds

_PRELUDE = f"""
import signal, sys, time
import numpy as np
from tests.faults import _child

def on_alarm(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGALRM, on_alarm)
SHAPE = {_SHAPE!r}


def interrupted(step, calls=30):
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    done = 0
    try:
        for _ in range(calls):
            step()
            done += 1
    except KeyboardInterrupt:
        return done
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None  # never interrupted
"""


def test_numpy_numba_path_interrupted():
    code = (
        _PRELUDE
        + """
import probloss
t, p = _child.probs(1, SHAPE, 0.0, 1.0), _child.probs(2, SHAPE)
x, s = _child.logits(3, SHAPE), _child.soft_targets(4, SHAPE)
probloss.binary_crossentropy(t[:64], p[:64])  # numba loaded before the timer starts
done = {
    "binary": interrupted(lambda: probloss.binary_crossentropy(t, p)),
    "soft_ce": interrupted(lambda: probloss.categorical_crossentropy(s, x, from_logits=True)),
}
small = (slice(0, 256), slice(None))  # still above the numba threshold: 1M elements
_child.report({
    "done": done,
    "binary": float(np.mean(probloss.binary_crossentropy(t[small], p[small]), dtype=np.float64)),
    "soft_ce": float(np.mean(probloss.categorical_crossentropy(s[small], x[small], from_logits=True), dtype=np.float64)),
})
"""
    )
    out, _ = _child.run(code, timeout=60)
    for kind, done in out["done"].items():
        assert done is not None and done < 30, f"{kind}: the timer did not interrupt the loop ({done})"
    t, p = _child.probs(1, _SHAPE, 0.0, 1.0)[:256], _child.probs(2, _SHAPE)[:256]
    x, s = _child.logits(3, _SHAPE)[:256], _child.soft_targets(4, _SHAPE)[:256]
    _child.assert_close(out["binary"], _child.ref_binary(t, p), "binary CE after the interrupt")
    _child.assert_close(out["soft_ce"], _child.ref_soft_ce(s, x), "soft-target CE after the interrupt")


def test_torch_chunked_path_interrupted():
    pytest.importorskip("torch")
    code = (
        _PRELUDE
        + """
import torch
import probloss
x = torch.from_numpy(_child.logits(5, SHAPE)).requires_grad_()
y = torch.from_numpy(_child.labels(6, SHAPE[0], SHAPE[1]))
p = torch.from_numpy(_child.probs(7, SHAPE))
t = torch.from_numpy(_child.probs(8, SHAPE, 0.0, 1.0))
sparse = probloss.SparseCategoricalCrossentropy(from_logits=True)
bce = probloss.BinaryCrossentropy()
sparse(y[:64], x[:64])  # torch's lazy imports done before the timer starts


def forward_backward():
    sparse(y, x).backward()


done = {
    "sparse_forward": interrupted(lambda: sparse(y, x.detach())),
    "sparse_backward": interrupted(forward_backward),
    "binary": interrupted(lambda: bce(t, p)),
}
rows = slice(0, 256)  # 1M elements: the chunked path
xs = x.detach()[rows].clone().requires_grad_()
value = sparse(y[rows], xs)
value.backward()
_child.report({
    "done": done,
    "sparse": float(value.detach()),
    "grad_sum": float(xs.grad.double().abs().sum()),
    "binary": float(bce(t[rows], p[rows])),
})
"""
    )
    out, _ = _child.run(code, timeout=90)
    for kind, done in out["done"].items():
        assert done is not None and done < 30, f"{kind}: the timer did not interrupt the loop ({done})"
    import numpy as np

    x, y = _child.logits(5, _SHAPE)[:256], _child.labels(6, _SHAPE[0], _SHAPE[1])[:256]
    _child.assert_close(out["sparse"], _child.ref_sparse_ce(y, x), "torch sparse CE after the interrupt")
    x64 = x.astype(np.float64)
    soft = np.exp(x64 - x64.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    soft[np.arange(256), y] -= 1.0
    _child.assert_close(out["grad_sum"], float(np.abs(soft / 256).sum()), "torch sparse CE gradient after the interrupt")
    t, p = _child.probs(8, _SHAPE, 0.0, 1.0)[:256], _child.probs(7, _SHAPE)[:256]
    _child.assert_close(out["binary"], _child.ref_binary(t, p), "torch binary CE after the interrupt")
