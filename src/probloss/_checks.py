"""Input validation.

Static checks (shapes, dtypes, arguments) always run.  Value checks (label ranges,
probability ranges, NaN) read the numbers: eagerly they run at once; inside a JAX
trace or while ``torch.compile`` traces they are staged into the program and run when
it runs (:func:`verify`); they are skipped for meta tensors and ``torch.jit.trace``, and
can be switched off with :func:`set_value_checks`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
import warnings

import numpy as np

from . import _deferred
from ._compat import _NUMPY, dtype_kind, is_jax_tracer, is_numpy, is_staged, is_torch, is_traced
from ._errors import (
    ArgumentError,
    LabelFormatError,
    LabelValueError,
    PredictionValueError,
    ProblossTypeError,
    ProblossWarning,
    ShapeError,
)

__all__ = ["set_value_checks", "value_checks_enabled"]

_state = threading.local()


def value_checks_enabled() -> bool:
    """Whether eager value checks (label range, NaN, probability range) are on."""
    return getattr(_state, "enabled", True)


class set_value_checks(contextlib.ContextDecorator):  # noqa: N801 - reads as a function
    """Turn eager value checks on or off.

    Call it plainly to set the mode for the current thread, or use it as a context
    manager to set it for a block and restore the previous mode afterwards.

    Examples
    --------
    >>> import probloss as pl
    >>> with pl.set_value_checks(False):
    ...     pl.value_checks_enabled()
    False
    >>> pl.value_checks_enabled()
    True
    """

    def __init__(self, enabled: bool = True):
        if not isinstance(enabled, bool):
            msg = f"`enabled` must be True or False; got {enabled!r}."
            raise ArgumentError(msg)
        self._previous = value_checks_enabled()
        _state.enabled = enabled

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False


def eager(*arrays) -> bool:
    """True when value checks should run on these arrays.

    They run on concrete arrays, and on staged ones (JAX tracers inside ``jit``, ``grad``,
    ``vmap``; torch tensors while ``torch.compile`` traces), whose checks :func:`verify`
    puts into the program.  They are skipped for meta tensors and under
    ``torch.jit.trace``, and when switched off for this thread.
    """
    if not getattr(_state, "enabled", True):
        return False
    for a in arrays:  # (a loop, not any(): this runs several times per loss call)
        if a is not None and is_traced(a) and not is_staged(a):
            return False
    return True


def concrete(*arrays) -> bool:
    """True when value checks are on and every array has values now (no trace at all)."""
    if not getattr(_state, "enabled", True):
        return False
    return not any(a is not None and is_traced(a) for a in arrays)


def verify(xp, bad, report, arrays, **params):
    """Call ``report(xp, *arrays, **params)``, which raises the error naming the element,
    if the 0-d boolean ``bad`` is True.

    ``report`` is one of this module's ``_report_*`` functions and ``params`` are plain
    Python values (names, bounds, counts), so that a compiled program can carry them.
    When the arrays are staged (:func:`probloss._compat.is_staged`), ``bad`` has no
    value yet and the test goes into the program:

    * JAX: a ``lax.cond`` whose failing branch is a host callback running ``report`` on
      the arrays' values, so a clean step moves nothing to the host.  Under ``jit`` JAX
      delivers the error as a ``JaxRuntimeError`` whose message ends with ours; under
      ``grad`` or ``vmap`` alone it is our exception itself.
    * torch: a custom operator that runs ``report`` when ``bad`` is True, our exception
      raised from the compiled function (``probloss._backends.torch_compile``).
    """
    if any(is_staged(a) for a in arrays) or is_staged(bad):  # (under jax.grad, bad may be concrete)
        if is_jax_tracer(bad) or is_jax_tracer(arrays[0]):
            _jax_at_run_time(bad, report, arrays, params)
        else:
            from ._backends.torch_compile import verify_at_run_time

            verify_at_run_time(bad, report, arrays, params)
    elif truth(bad, False):
        report(xp, *arrays, **params)


def _jax_at_run_time(bad, report, arrays, params):
    """Stage the test into the JAX program being traced.

    A ``lax.cond`` whose failing branch is a ``jax.pure_callback`` running ``report`` on
    the host; the branch's result is a 0-d zero (a *token*) that :func:`attach_checks`
    multiplies into the loss, so the compiler keeps the test.  A pure callback, unlike
    ``jax.debug.callback``, gives the program no side effect, which would make every
    call of it wait for the previous one (tens of microseconds per step on the CPU).
    """
    import jax
    import jax.numpy as jnp
    from jax.extend.core import get_opaque_trace_state

    def run(*values):
        report(_NUMPY, *[np.asarray(v) for v in values], **params)
        return np.zeros((), np.float32)

    def failing(a):
        return jax.pure_callback(run, jax.ShapeDtypeStruct((), jnp.float32), *a, vmap_method="sequential")

    token = jax.lax.cond(bad, failing, lambda a: jnp.zeros((), jnp.float32), jax.lax.stop_gradient(arrays))
    pending = _tokens.__dict__.setdefault("pending", [])
    pending.append((get_opaque_trace_state(), token))


_tokens = threading.local()  # .pending: [(JAX trace state, token)] staged by this thread


def attach_checks(values):
    """``values`` with the tests staged in the current JAX trace attached (multiplied by
    one plus their zero tokens), so that they stay in the program; the identity elsewhere.

    Every loss passes its result through here.  Tokens of another trace are from a call
    that raised before its end, and are dropped.
    """
    pending = getattr(_tokens, "pending", None)
    if not pending or not is_jax_tracer(values):
        return values
    from jax.extend.core import get_opaque_trace_state

    state = get_opaque_trace_state()
    mine = [token for s, token in pending if s == state]
    pending.clear()
    for token in mine:
        # x * (1 + 0) is x exactly, and so is its gradient g * (1 + 0): the token is then
        # read by the forward and by the backward, so neither a value nor a gradient
        # alone (jax.grad) lets the compiler drop the test.
        values = values * (1 + token).astype(values.dtype)
    return values


# --------------------------------------------------------------------------- arguments


def check_float_in(name: str, value, lo: float, hi: float, hint: str = ""):
    """``value`` is a real number in the closed interval ``[lo, hi]``."""
    if type(value) is float and lo <= value <= hi:  # the usual case, without the ABC tests below
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not lo <= float(value) <= hi:
        msg = f"`{name}` must be a number in [{lo:g}, {hi:g}]; got {value!r}.{(' ' + hint) if hint else ''}"
        raise ArgumentError(msg)
    return float(value)


def check_nonnegative(name: str, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= 0 or math.isinf(value):
        msg = f"`{name}` must be a finite number >= 0; got {value!r}."
        raise ArgumentError(msg)
    return float(value)


def check_epsilon(value):
    return check_float_in("epsilon", value, 0.0, 0.5, "The Keras default is 1e-7.")


def check_bool(name: str, value):
    if not isinstance(value, bool):
        msg = f"`{name}` must be True or False; got {value!r}."
        raise ArgumentError(msg)
    return value


def check_axis(axis, ndim: int, name: str = "axis", what: str = "y_pred"):
    """``axis`` is an integer in ``[-ndim, ndim)``; returns it non-negative."""
    if type(axis) is int and -ndim <= axis < ndim:  # the usual case, without the ABC tests below
        return axis % ndim
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        msg = f"`{name}` must be an integer; got {axis!r}."
        raise ArgumentError(msg)
    if ndim == 0:
        msg = f"`{what}` is a scalar (0 dimensions); a loss needs at least one axis, e.g. a batch of one: [[...]]."
        raise ShapeError(msg)
    if not -ndim <= axis < ndim:
        msg = (
            f"`{name}`={axis} is out of range for `{what}` with {ndim} dimension(s); "
            f"use a value in [{-ndim}, {ndim - 1}] (-1 is the last axis)."
        )
        raise ArgumentError(msg)
    return int(axis) % ndim


def check_ignore_class(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return int(value)
        msg = f"`ignore_class` must be an integer (e.g. -1 or 255) or None; got {value!r}."
        raise ArgumentError(msg)
    return int(value)


# --------------------------------------------------------------------------- shapes


def check_prediction_dtype(xp, y_pred, name: str = "y_pred"):
    kind = dtype_kind(xp, y_pred.dtype)
    if kind == "real floating":
        return
    if kind == "other":  # e.g. ml_dtypes' bfloat16 in a NumPy array
        why = f"{xp.__name__} does not compute in {y_pred.dtype}"
    else:
        why = "integer predictions are almost always a bug"
    msg = (
        f"`{name}` must be floating point (probabilities or logits); got dtype {y_pred.dtype}. "
        f"Cast it first, e.g. `{name}.astype('float32')`: {why}."
    )
    raise ProblossTypeError(msg)


def check_not_empty(x, name: str):
    """Refuse empty inputs: a mean over nothing is NaN, a sum over nothing hides a bug."""
    if math.prod(x.shape) == 0:
        msg = (
            f"`{name}` is empty (shape {tuple(x.shape)}); there is no sample to compute a loss on. "
            "Check the batch (e.g. a filter that removed every row) before calling the loss."
        )
        raise ShapeError(msg)


def check_same_shape(y_true, y_pred, loss: str, *, hint: str = ""):
    if tuple(y_true.shape) != tuple(y_pred.shape):
        msg = (
            f"{loss}: `y_true` of shape {tuple(y_true.shape)} and `y_pred` of shape "
            f"{tuple(y_pred.shape)} must have the same shape.{(' ' + hint) if hint else ''}"
        )
        raise ShapeError(msg)


# --------------------------------------------------------------------------- values


def _first_bad(xp, bad):
    """Index (tuple) of the first True element of the boolean array ``bad`` (a small one)."""
    pos = np.argwhere(_to_host(bad))
    return tuple(int(i) for i in pos[0]) if len(pos) else None


_FIND_ELEMENTS = 1 << 20  # elements per block when an error locates the bad element


def _find(xp, x, bad_of):
    """``(index, value)`` of the first element of ``x`` where ``bad_of`` holds, or ``None``.

    ``x`` is read a block of rows (about a million elements) at a time and the search
    stops at the first block with a bad element, so locating it for an error message
    takes a few MB however big ``x`` is, not a boolean copy of it.
    """
    if x.ndim == 0:
        return ((), _value_at(x, ())) if _any(xp, bad_of(x)) else None
    rows = max(1, _FIND_ELEMENTS // max(1, math.prod(x.shape[1:])))
    for start in range(0, x.shape[0], rows):
        bad = bad_of(x[start : min(start + rows, x.shape[0])])
        if _any(xp, bad):
            pos = _first_bad(xp, bad)
            pos = (pos[0] + start,) + pos[1:]
            return pos, _value_at(x, pos)
    return None


def _to_host(x) -> np.ndarray:
    """A NumPy copy of ``x`` (torch: detached and moved to the CPU; CuPy: ``.get()``)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    elif type(x).__module__.startswith("cupy"):
        x = x.get()
    try:
        return np.asarray(x)
    except (TypeError, RuntimeError, ValueError):
        return np.from_dlpack(x)


def _value_at(x, pos):
    """The element of ``x`` at ``pos`` as a Python number (indexed before any copy)."""
    return _to_host(x[pos]).item()


def truth(x, default: bool) -> bool:
    """A 0-d boolean array as a Python bool, or ``default`` when it has no single value.

    That is the case inside ``jax.jit`` (even concrete arrays become tracers there, so
    the reduced result is tested, not only the inputs) and under ``torch.func.vmap``
    (one value per batch element, which torch refuses to read out).  The checks are
    skipped there, as they are while ``torch.compile`` traces.
    """
    if is_traced(x):
        return default
    try:
        return bool(x)
    except RuntimeError as exc:
        if "vmap" in str(exc):
            return default
        raise


def _any(xp, cond) -> bool:
    """``any(cond)`` as a Python bool; False when it is abstract (see :func:`truth`)."""
    return truth(xp.any(cond), False)


def _holds(scalar) -> bool:
    """A 0-d boolean array as a Python bool; True (nothing to report) when abstract."""
    return truth(scalar, True)


def _error_for(name: str):
    return LabelValueError if name in ("y_true", "labels", "targets", "sample_weight") else PredictionValueError


def _raise_nonfinite(xp, x, name: str):
    found = _find(xp, x, lambda block: ~xp.isfinite(block))
    if found is not None:
        pos, value = found
        msg = (
            f"`{name}` contains {value} at index {pos}; losses need finite inputs. "
            "Find where the NaN/inf first appears upstream (a division by zero, log(0), an overflow)."
        )
        raise _error_for(name)(msg)


def check_finite(xp, x, name: str):
    """Every element of ``x`` is finite (one full pass: use it on small arrays)."""
    if is_staged(x):
        verify(xp, ~xp.all(xp.isfinite(x)), _raise_nonfinite, (x,), name=name)
    elif _deferred.applies(x):  # CUDA: read later, without stopping the device
        _deferred.finite(x, name)
    else:
        _raise_nonfinite(xp, x, name)


def known_finite(values) -> bool:
    """True for a NumPy array whose values are all finite; False for anything else.

    The common case of a result check answered by one reduction, before the general test
    (which handles tracing, deferral and torch's 0-d results at a few microseconds more).
    """
    return type(values) is np.ndarray and bool(np.logical_and.reduce(np.isfinite(values), axis=None))


def check_result_finite(xp, values, **inputs):
    """The loss came out finite; if not, find the input element that made it so.

    Cheap for the common case: it inspects the per-sample losses (N values), not the
    N x K inputs.  A NaN or inf anywhere in a row's inputs reaches that row's loss
    (log-sum-exp, sums and products all propagate it), so only a failing call pays
    for scanning the inputs to name the culprit.  ``values`` are concrete (the caller
    tested :func:`eager`).
    """
    if is_staged(values) or any(is_staged(x) for x in inputs.values()):
        # In a compiled program only the per-sample values are tested (the inputs would be
        # copied into the program's branch), so the message names the sample, not the element.
        names = " or ".join(f"`{n}`" for n in inputs)
        verify(xp, ~xp.all(xp.isfinite(values)), _report_nonfinite_values, (values,), name=names)
        return
    if _deferred.applies(values):  # CUDA: read later, without stopping the device
        _deferred.result(values, tuple(inputs))
        return
    if values.ndim == 0 and hasattr(values, "detach"):
        # A torch 0-d result (a fused mean) is read as a Python float: a tensor op and a
        # read of its result cost several times more inside a training step.
        try:
            if math.isfinite(values.detach().item()):
                return
        except RuntimeError as exc:  # torch.func.vmap: no single value to read
            if "vmap" in str(exc):
                return
            raise
    elif truth(xp.all(xp.isfinite(values)), True):
        return
    _report_nonfinite(xp, inputs)


def _report_nonfinite_values(xp, values, name):
    pos = _first_bad(xp, ~xp.isfinite(values))
    if pos is None:  # (vmap runs this for every batch)
        return
    where = f"the loss of sample {pos} is {_value_at(values, pos)}" if pos else f"the loss is {_value_at(values, pos)}"
    msg = (
        f"{where}: {name} holds NaN or inf there; "
        "losses need finite inputs. Find where the NaN/inf first appears upstream (a division by "
        "zero, log(0), an overflow), or run the step without compiling it to see the element."
    )
    raise PredictionValueError(msg)


def _report_nonfinite(xp, inputs):
    for name, x in inputs.items():
        _raise_nonfinite(xp, x, name)
    msg = "the loss is not finite although every input is; please report this with the inputs."
    raise PredictionValueError(msg)


# NumPy min/max run block by block so that the second reduction reads from cache.
_NP_BLOCK = 1 << 18


def _minmax(xp, x):
    """``(min(x), max(x))`` in about one pass over memory.

    torch has a fused ``aminmax``; NumPy gets the two reductions block by block, so
    each block is read from RAM once; other namespaces do two reductions.
    """
    if is_torch(xp):
        import torch

        return torch.aminmax(x)
    if is_numpy(xp) and x.size > _NP_BLOCK and x.flags.c_contiguous:
        flat = x.reshape(-1)
        lows, highs = [], []
        for start in range(0, flat.size, _NP_BLOCK):
            block = flat[start : start + _NP_BLOCK]
            lows.append(block.min())
            highs.append(block.max())
        return np.min(lows), np.max(highs)
    return xp.min(x), xp.max(x)


def check_range(xp, x, name: str, lo=None, hi=None, *, why: str):
    """``lo <= x <= hi`` everywhere, checked in about one pass and with no temporaries.

    Two bounds take one fused ``aminmax`` (torch) or a blocked min/max (NumPy).  NaN
    makes the comparisons false, so it is caught too; only on failure is the first
    offending element located for the message.
    """
    if (lo is None and hi is None) or math.prod(x.shape) == 0:  # (a shard may hold no class)
        return
    if type(x) is np.ndarray and x.size <= _NP_BLOCK:  # a small NumPy array: its reductions, directly
        if (lo is None or np.minimum.reduce(x, axis=None) >= lo) and (hi is None or np.maximum.reduce(x, axis=None) <= hi):
            return
        _raise_out_of_range(xp, x, name=name, lo=lo, hi=hi, why=why)
        return
    verify(xp, ~_in_range(xp, x, lo, hi), _raise_out_of_range, (x,), name=name, lo=lo, hi=hi, why=why)


def _in_range(xp, x, lo, hi):
    """A 0-d boolean array: every element lies in ``[lo, hi]`` (NaN does not)."""
    if lo is not None and hi is not None:
        low, high = _minmax(xp, x)
        return (low >= lo) & (high <= hi)
    return xp.min(x) >= lo if lo is not None else xp.max(x) <= hi


def _raise_out_of_range(xp, x, name, lo, hi, why):
    _raise_nonfinite(xp, x, name)

    def bad_of(b):
        return (b < lo) if hi is None else ((b > hi) if lo is None else (b < lo) | (b > hi))

    found = _find(xp, x, bad_of)
    if found is None:  # (a batch of vmap whose elements are all in range)
        return
    pos, value = found
    bounds = f"[{lo:g}, {hi:g}]" if lo is not None and hi is not None else (f">= {lo:g}" if lo is not None else f"<= {hi:g}")
    msg = f"`{name}` holds {value:g} at index {pos}, but it must be {bounds}: {why}"
    raise _error_for(name)(msg)


LOGITS_HINT = (
    "`from_logits=False` expects probabilities, and values outside [0, 1] are almost surely "
    "logits: pass `from_logits=True` (or apply softmax/sigmoid first)."
)


def check_probabilities(xp, y_pred, name: str = "y_pred"):
    """Values must lie in [0, 1]; outside that they are almost surely logits."""
    check_range(xp, y_pred, name, 0.0, 1.0, why=LOGITS_HINT)


def check_probability_rows(xp, y_pred, sums, axis: int, name: str = "y_pred", tol: float = 1e-3):
    """Rows of probabilities: entries in [0, 1] (else raise), sums of 1 (else warn).

    Uses the row ``sums`` the loss computes anyway, so it costs one ``min`` pass: with
    every entry >= 0, an entry above 1 makes its row sum exceed 1, and only then is
    ``max`` read to tell logits (raise) from unnormalised rows (warn).
    """
    if is_staged(sums):  # no warning from inside a compiled program: the range test alone
        check_range(xp, y_pred, name, 0.0, 1.0, why=LOGITS_HINT)
        return
    check_range(xp, y_pred, name, 0.0, None, why=LOGITS_HINT)
    if sums.shape[axis] != 1:
        return
    flat = xp.squeeze(sums, axis=axis)
    if _holds(xp.all(xp.abs(flat - 1.0) <= tol)):
        return
    check_range(xp, y_pred, name, None, 1.0, why=LOGITS_HINT)  # only reached on a bad row
    warn_unnormalized(xp, sums, axis, name, tol)


def warn_unnormalized(xp, sums, axis: int, name: str = "y_pred", tol: float = 1e-3):
    """Warn when row sums (already computed by the loss) are not 1; Keras renormalises.

    ``sums`` keeps the class axis (size 1), as the loss computed it.
    """
    if sums.shape[axis] != 1 or sums.ndim == 0 or is_staged(sums):
        return
    sums = xp.squeeze(sums, axis=axis)
    if _holds(xp.all(xp.abs(sums - 1.0) <= tol)):
        return
    bad = xp.abs(sums - 1.0) > tol
    pos = _first_bad(xp, bad)
    warnings.warn(
        f"`{name}` rows along axis {axis} should sum to 1 but the one at index {pos} sums to "
        f"{_value_at(sums, pos):.6g}; it is renormalised (as Keras does). If these are not "
        "probabilities, pass `from_logits=True`.",
        ProblossWarning,
        stacklevel=_user_stacklevel(),
    )


def check_sparse_labels(xp, labels, num_classes: int, ignore_class, name: str = "y_true"):
    """Class indices lie in ``[0, num_classes)`` except those equal to ``ignore_class``.

    Returns the labels to index with: ``labels`` itself, except while ``torch.compile``
    traces, where a bad index is replaced by 0 so that the compiled gather never reads
    out of bounds (its own bounds assertion would otherwise fire before our error).
    """
    bad = _bad_labels(labels, num_classes, ignore_class)
    verify(xp, xp.any(bad), _report_sparse_labels, (labels,), name=name, num_classes=num_classes, ignore_class=ignore_class)
    if is_staged(labels) and not is_jax_tracer(labels):
        return xp.where(bad, xp.zeros_like(labels), labels)
    return labels


def _bad_labels(labels, num_classes, ignore_class):
    bad = (labels < 0) | (labels >= num_classes)
    return bad if ignore_class is None else bad & (labels != ignore_class)


def _report_sparse_labels(xp, labels, name, num_classes, ignore_class):
    pos = _first_bad(xp, _bad_labels(labels, num_classes, ignore_class))
    if pos is None:
        return
    value = _value_at(labels, pos)
    extra = " Negative labels are only allowed as `ignore_class`." if value < 0 else ""
    msg = (
        f"`{name}` holds class index {value} at index {pos}, but `y_pred` has {num_classes} "
        f"classes, so indices must be in [0, {num_classes - 1}].{extra} Check the label "
        "encoding, or the size of the model's output layer."
    )
    raise LabelValueError(msg)


def check_integer_valued(xp, labels, name: str = "y_true"):
    verify(xp, xp.any(xp.floor(labels) != labels), _report_not_integer, (labels,), name=name)


def _report_not_integer(xp, labels, name):
    pos = _first_bad(xp, xp.floor(labels) != labels)
    if pos is None:
        return
    msg = (
        f"`{name}` holds {_value_at(labels, pos)} at index {pos}; class indices must be whole "
        "numbers. If these are probabilities (soft labels), use `categorical_crossentropy`."
    )
    raise LabelFormatError(msg)


BINARY_TARGETS_HINT = (
    "binary targets are 0/1 labels or probabilities. For class indices use "
    "`sparse_categorical_crossentropy`; for counts, `poisson`."
)


def check_binary_targets(xp, y_true, name: str = "y_true"):
    check_range(xp, y_true, name, 0.0, 1.0, why=BINARY_TARGETS_HINT)


def check_nonnegative_values(xp, x, name: str, hint: str):
    check_range(xp, x, name, 0.0, None, why=hint)


def warn(message: str):
    warnings.warn(message, ProblossWarning, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The stacklevel of the first caller outside probloss, so warnings point at user code."""
    import os
    import sys

    package_dir = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package_dir):
        frame, level = frame.f_back, level + 1
    return level


__all__ += [
    "LabelFormatError",
    "check_axis",
    "check_bool",
    "check_epsilon",
    "check_float_in",
    "check_ignore_class",
    "check_nonnegative",
    "check_prediction_dtype",
    "check_same_shape",
    "check_sparse_labels",
    "eager",
]
