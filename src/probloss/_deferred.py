"""Value checks that are read later: how a loss on a CUDA tensor checks its inputs without
stopping the device.

Reading a number computed on a GPU (``bool(tensor)``, ``tensor.item()``) waits until the
device has finished everything queued before it, which stalls a training loop whose
Python side normally runs ahead of the device.  So on CUDA a value check does not read
its result at once:

1. the check runs on the device, in the loss's own kernel where it has one (the Triton
   kernels record the first offending element in a small int64 buffer, see
   :mod:`probloss._backends.triton_kernels`), or as a couple of small tensor operations
   (the finiteness of the result, of sample weights);
2. the few bytes of that result are copied to pinned host memory asynchronously, behind
   the loss's kernels in the same stream, and a CUDA event is recorded after the copy;
3. the record joins this thread's queue of pending checks, and the call returns.

The records are read, in order, when their event has completed (a test that never
waits): **at the start of the next probloss loss call on this thread** that runs such
checks, and by :func:`check_pending`, which waits for the device if it must.  An error
names the call it comes from: the loss, the call's number on this thread, and the line of
the caller's code (``file:line in function``).  A bad call's result also shows it: class
indices out of range give NaN losses and gradients (no memory outside the tensors is
read).  At most :data:`MAX_PENDING` records wait; beyond that the oldest is waited for,
so a loop that never syncs still hears of an error within that many calls.

The mechanism is device-agnostic: on the CPU there is no copy and no event, and a record
is ready at once.  Tests use that (:func:`emulate_on_cpu`) to exercise it with the Triton
kernels run by Triton's interpreter.

Thread-local, like the value-check switch (:func:`probloss.set_value_checks`): an error
surfaces in the thread that made the call.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import sys
import threading
import warnings
import weakref

from ._errors import ProblossError, ProblossWarning

__all__ = ["MAX_PENDING", "NO_KEY", "applies", "begin", "check_pending", "emulate_on_cpu", "finite", "result", "submit"]

NO_KEY = 2**63 - 1
"""A clean check slot (what the kernels leave in the key buffer when nothing is wrong)."""

MAX_PENDING = 64
"""Records waiting at most; the oldest is then waited for."""

_local = threading.local()
_emulate = False
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def applies(x) -> bool:
    """Whether the value checks of ``x`` are deferred: a CUDA torch tensor (or, inside
    :func:`emulate_on_cpu`, any torch tensor)."""
    if not type(x).__module__.startswith("torch"):
        return False
    return bool(x.is_cuda) or _emulate


@contextlib.contextmanager
def emulate_on_cpu():
    """Defer the checks of CPU torch tensors too, as on CUDA (for tests of this module)."""
    global _emulate
    previous, _emulate = _emulate, True
    try:
        yield
    finally:
        _emulate = previous


def _pending() -> collections.deque:
    queue = getattr(_local, "pending", None)
    if queue is None:
        queue = _local.pending = collections.deque()
    return queue


def _call_site():
    """``(file, line, function)`` of the first frame outside probloss and torch's own
    wrappers (``torch.compiler.disable``), cheap: no traceback is built."""
    skip = (_PACKAGE, os.path.dirname(sys.modules["torch"].__file__)) if "torch" in sys.modules else (_PACKAGE,)
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame = frame.f_back
    if frame is None:
        return None
    return frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name


class Record:
    """The deferred checks of one loss call.

    ``keys`` is a device tensor with one entry per check; ``reports[i](key)`` is called
    when entry ``i`` differs from ``clean`` and raises a :class:`ProblossError` (re-raised
    naming the call) or returns a warning message (issued as a :class:`ProblossWarning`)
    or ``None`` (a false alarm, e.g. a sum that overflowed).
    """

    __slots__ = ("call", "clean", "event", "host", "keys", "loss", "reports", "site")

    def __init__(self, loss: str, keys, clean, site, call: int):
        self.loss, self.keys, self.clean, self.site, self.call = loss, keys, clean, site, call
        self.host = self.event = self.reports = None

    def ready(self) -> bool:
        return self.event is None or self.event.query()

    def wait(self):
        if self.event is not None:
            self.event.synchronize()

    def where(self) -> str:
        site = ""
        if self.site is not None:
            path, line, func = self.site
            site = f" at {os.path.basename(path)}:{line} in {func}"
        return f"call {self.call} on this thread, {self.loss}{site}"

    def settle(self):
        """Raise (or warn) for the first bad entry, in the order of the checks."""
        for key, report in zip(self.host.tolist(), self.reports):
            if key == self.clean:
                continue
            try:
                message = report(key)
            except ProblossError as exc:
                prefix = f"(value check of an earlier call, read after it returned: {self.where()}) "
                raise type(exc)(prefix + str(exc)) from None
            if message:
                from ._checks import _user_stacklevel

                warnings.warn(f"{message} ({self.where()})", ProblossWarning, stacklevel=_user_stacklevel())


def drain():
    """Settle the records whose results have reached the host, oldest first; when too many
    wait, wait for the oldest."""
    queue = _pending()
    while queue and (len(queue) >= MAX_PENDING or queue[0].ready()):
        record = queue.popleft()
        record.wait()
        record.settle()


def _calls() -> int:
    return getattr(_local, "calls", 0)


def begin(loss: str, slots: int, device, *, standalone: bool = False):
    """A new :class:`Record` with a key buffer of ``slots`` entries on ``device`` (filled
    with :data:`NO_KEY`), after settling the earlier calls' checks that are ready.

    Calls are numbered per thread.  A dispatch entry's record takes the number of the
    call in progress, which its result check (:func:`result`, run when the loss
    function finishes) then counts; ``standalone`` records (a loss with no result check,
    such as the ``F.cross_entropy`` drop-in) count themselves.
    """
    import torch

    drain()
    call = _calls() + 1
    if standalone:
        _local.calls = call
    _local.current = (call, loss)
    keys = torch.full((slots,), NO_KEY, dtype=torch.int64, device=device)
    return Record(loss, keys, NO_KEY, _call_site(), call)


def submit(record: Record, reports, result=None):
    """Queue ``record`` with its ``reports``; its keys travel to the host behind the kernels.

    ``result`` (the loss the call returns) is remembered weakly: the result check of the
    same call (:func:`result`) is then skipped, the kernel having checked every row.
    """
    import torch

    keys = record.keys
    record.reports = reports
    if keys.is_cuda:
        record.host = torch.empty(keys.shape, dtype=keys.dtype, pin_memory=True)
        record.host.copy_(keys, non_blocking=True)
        record.event = torch.cuda.Event()
        record.event.record(torch.cuda.current_stream(keys.device))
    else:
        record.host = keys.detach().clone()  # a plain tensor, also under torch.func transforms
    record.keys = None
    _pending().append(record)
    _local.checked = weakref.ref(result) if result is not None else None


def result(values, names, *, allow_inf: bool = False):
    """The deferred form of :func:`probloss._checks.check_result_finite`.

    Skipped when ``values`` is what a kernel that checked every row just returned;
    otherwise one flag, ``isfinite(sum(values))``, goes to the host.  A flag that is down
    is confirmed on the values themselves (a sum can overflow) and names the sample.
    ``allow_inf``: ``+inf`` is a result, not an error (a target on a ruled-out class with
    ``ruled_out_target="inf"``).
    """
    import torch

    call = _local.calls = _calls() + 1  # the end of a loss function's call
    checked = getattr(_local, "checked", None)
    _local.checked = None
    if checked is not None and checked() is values:
        return
    drain()
    held = values.detach()
    flag = torch.isfinite(held.sum() if held.ndim else held).reshape(1)
    current = getattr(_local, "current", None)
    loss = current[1] if current is not None and current[0] == call else "a loss"
    record = Record(loss, flag, True, _call_site(), call)
    joined = " or ".join(f"`{n}`" for n in names)

    def report(_):
        import numpy as np

        from ._errors import PredictionValueError

        bad = (~torch.isfinite(held) if not allow_inf else torch.isnan(held) | (held == -math.inf)).reshape(-1)
        if not bool(bad.any()):
            return None
        flat = int(bad.to(torch.uint8).argmax())
        pos = tuple(int(i) for i in np.unravel_index(flat, tuple(held.shape)))
        value = held.reshape(-1)[flat].item()
        msg = (
            f"the loss of sample {pos} is {value}: {joined} holds NaN or inf there; losses need finite inputs. "
            "Find where the NaN/inf first appears upstream (a division by zero, log(0), an overflow)."
        )
        raise PredictionValueError(msg)

    submit(record, [report])


def finite(x, name: str):
    """The deferred form of :func:`probloss._checks.check_finite` (e.g. for sample weights)."""
    import torch

    drain()
    held = x.detach()
    flag = torch.isfinite(held.sum()).reshape(1)
    record = Record(f"the check of `{name}`", flag, True, _call_site(), max(_calls(), 1))

    def report(_):
        from ._checks import _raise_nonfinite
        from ._compat import namespace

        _raise_nonfinite(namespace(held), held, name)

    submit(record, [report])


def check_pending():
    """Wait for this thread's deferred value checks and raise the first error they found.

    On CUDA, probloss checks the values of a loss's inputs (class indices in range,
    probabilities in [0, 1], a finite result, ...) without stopping the device: the
    result of a check is read later, at the start of the next probloss loss call on this
    thread, or here.  Call it where a training loop synchronises anyway (the end of an
    epoch, before saving a checkpoint) or in a test, to hear of every error so far.
    The error names the call it came from.  Does nothing when nothing is pending (on the
    CPU every check is immediate).

    Raises
    ------
    ProblossError
        The first error found, e.g. a :class:`LabelValueError` for a class index out of
        range; its message says which earlier call it comes from.

    Examples
    --------
    >>> import probloss.torch
    >>> probloss.torch.check_pending()
    """
    queue = _pending()
    while queue:
        record = queue.popleft()
        record.wait()
        record.settle()


def clear():
    """Forget this thread's pending checks and restart its call numbers (for tests)."""
    _pending().clear()
    _local.checked = _local.current = None
    _local.calls = 0
