"""Value checks inside a ``torch.compile`` graph.

While ``torch.compile`` traces a loss its tensors have no values, so a check cannot read
them then.  Instead the check becomes one operator of the compiled graph,
``probloss::verify``: the graph computes the 0-d boolean ``bad`` (a label out of range,
a probability outside [0, 1], ...) as part of the program, and the operator runs the
same report as the eager check, on the real tensors, when ``bad`` is True, so the
compiled function raises our :class:`probloss.ProblossError` naming the element.  A
clean call costs the reduction behind ``bad`` and one operator call; nothing breaks the
graph.

The operator is declared to write to a token tensor (it never does): an operator with
no output and no effect would be dropped from the graph as dead code.
"""

from __future__ import annotations

import torch

from .. import _checks
from .._compat import namespace

__all__ = ["verify_at_run_time"]

# The reports a compiled check may run, by name, with the parameters each one takes.
_REPORTS = {
    f.__name__: (f, params)
    for f, params in (
        (_checks._raise_nonfinite, ("name",)),
        (_checks._report_nonfinite_values, ("name",)),
        (_checks._raise_out_of_range, ("name", "lo", "hi", "why")),
        (_checks._report_sparse_labels, ("name", "num_classes", "ignore_class")),
        (_checks._report_not_integer, ("name",)),
    )
}

_TOKEN = torch.zeros(())

# Defined with the low-level ``torch.library.Library`` and a plain kernel: per call that
# costs about a quarter of ``torch.library.custom_op``'s layers (autograd wrapper, default
# filling), which matters on small batches.  The inputs are detached, so no autograd
# kernel is needed.
_LIBRARY = torch.library.Library("probloss", "DEF")
_LIBRARY.define(
    "verify(Tensor(a!) token, Tensor bad, Tensor[] arrays, str report, str name, float? lo, float? hi, "
    "str why, int? num_classes, int? ignore_class) -> ()"
)


def _verify(token, bad, arrays, report, name, lo, hi, why, num_classes, ignore_class):
    if bool(bad):
        function, wanted = _REPORTS[report]
        given = {"name": name, "lo": lo, "hi": hi, "why": why, "num_classes": num_classes, "ignore_class": ignore_class}
        function(namespace(arrays[0]), *arrays, **{k: given[k] for k in wanted})


_LIBRARY.impl("verify", _verify, "CompositeExplicitAutograd")


@torch.library.register_fake("probloss::verify")
def _(token, bad, arrays, report, name, lo, hi, why, num_classes, ignore_class):
    return None


def verify_at_run_time(bad, report, arrays, params):
    """Stage ``report(xp, *arrays, **params)`` into the graph being compiled, to run when
    ``bad`` is True (see :func:`probloss._checks.verify`)."""
    get = params.get
    torch.ops.probloss.verify(
        _TOKEN,
        bad,
        [a.detach() for a in arrays],
        report.__name__,
        get("name", ""),
        get("lo"),
        get("hi"),
        get("why", ""),
        get("num_classes"),
        get("ignore_class"),
    )
