"""Input validation.

Static checks (shapes, dtypes, arguments) always run.  Value checks (label ranges,
probability ranges, NaN) need concrete numbers: they run in eager mode only, are
skipped while JAX traces or ``torch.compile`` compiles, and can be switched off with
:func:`set_value_checks`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
import warnings

import numpy as np

from ._compat import is_floating, is_traced
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
    """True when value checks should run on these arrays now."""
    return value_checks_enabled() and not any(is_traced(a) for a in arrays if a is not None)


# --------------------------------------------------------------------------- arguments


def check_float_in(name: str, value, lo: float, hi: float, hint: str = ""):
    """``value`` is a real number in the closed interval ``[lo, hi]``."""
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
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        msg = f"`{name}` must be an integer; got {axis!r}."
        raise ArgumentError(msg)
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
    if not is_floating(xp, y_pred.dtype):
        msg = (
            f"`{name}` must be floating point (probabilities or logits); got dtype {y_pred.dtype}. "
            f"Cast it first, e.g. `{name}.astype('float32')`; integer predictions are almost always a bug."
        )
        raise ProblossTypeError(msg)


def check_not_empty(x, name: str):
    if math.prod(x.shape) == 0 and x.ndim > 0 and x.shape[0] != 0:
        msg = f"`{name}` has shape {tuple(x.shape)} with an empty axis other than the batch axis; there is nothing to compute."
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
    """Index (tuple) of the first True element of the boolean array ``bad``."""
    pos = np.argwhere(_to_host(bad))
    return tuple(int(i) for i in pos[0]) if len(pos) else None


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
    return _to_host(x)[pos].item()


def _any(xp, cond) -> bool:
    """``any(cond)`` as a Python bool; False when it is abstract (inside a JAX trace).

    Even concrete arrays become tracers inside ``jax.jit`` (every op is staged), so the
    check looks at the reduced result rather than only at the inputs.
    """
    result = xp.any(cond)
    if is_traced(result):
        return False
    return bool(result)


def check_finite(xp, x, name: str):
    if not _any(xp, ~xp.isfinite(x)):
        return
    pos = _first_bad(xp, ~xp.isfinite(x))
    msg = f"`{name}` contains {_value_at(x, pos)} at index {pos}; losses need finite inputs. Find where the NaN/inf first appears (e.g. a division by zero or an overflow upstream)."
    raise (LabelValueError if "true" in name or "label" in name else PredictionValueError)(msg)


def check_probabilities(xp, y_pred, name: str = "y_pred"):
    """Values must lie in [0, 1]; outside that they are almost surely logits."""
    check_finite(xp, y_pred, name)
    bad = (y_pred < 0) | (y_pred > 1)
    if _any(xp, bad):
        pos = _first_bad(xp, bad)
        msg = (
            f"`{name}` holds {_value_at(y_pred, pos):g} at index {pos}, outside [0, 1], but "
            "`from_logits=False` expects probabilities. These look like logits: pass "
            "`from_logits=True` (or apply softmax/sigmoid first)."
        )
        raise PredictionValueError(msg)


def warn_unnormalized(xp, y_pred, axis: int, name: str = "y_pred"):
    sums = xp.sum(xp.astype(y_pred, xp.float32) if y_pred.dtype != xp.float64 else y_pred, axis=axis)
    bad = xp.abs(sums - 1.0) > 1e-3
    if _any(xp, bad):
        pos = _first_bad(xp, bad)
        warnings.warn(
            f"`{name}` rows along axis {axis} should sum to 1 but the one at index {pos} sums to "
            f"{_value_at(sums, pos):.6g}; it is renormalised (as Keras does). If these are not "
            "probabilities, pass `from_logits=True`.",
            ProblossWarning,
            stacklevel=4,
        )


def check_sparse_labels(xp, labels, num_classes: int, ignore_class, name: str = "y_true"):
    """Class indices lie in ``[0, num_classes)`` except those equal to ``ignore_class``."""
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_class is not None:
        bad = bad & (labels != ignore_class)
    if _any(xp, bad):
        pos = _first_bad(xp, bad)
        value = _value_at(labels, pos)
        extra = " Negative labels are only allowed as `ignore_class`." if value < 0 else ""
        msg = (
            f"`{name}` holds class index {value} at index {pos}, but `y_pred` has {num_classes} "
            f"classes, so indices must be in [0, {num_classes - 1}].{extra} Check the label "
            "encoding, or the size of the model's output layer."
        )
        raise LabelValueError(msg)


def check_integer_valued(xp, labels, name: str = "y_true"):
    bad = xp.floor(labels) != labels
    if _any(xp, bad):
        pos = _first_bad(xp, bad)
        msg = (
            f"`{name}` holds {_value_at(labels, pos)} at index {pos}; class indices must be whole "
            "numbers. If these are probabilities (soft labels), use `categorical_crossentropy`."
        )
        raise LabelFormatError(msg)


def check_binary_targets(xp, y_true, name: str = "y_true"):
    check_finite(xp, y_true, name)
    bad = (y_true < 0) | (y_true > 1)
    if _any(xp, bad):
        pos = _first_bad(xp, bad)
        msg = (
            f"`{name}` holds {_value_at(y_true, pos):g} at index {pos}; binary targets must lie in "
            "[0, 1]. For class indices use `sparse_categorical_crossentropy`; for counts, `poisson`."
        )
        raise LabelValueError(msg)


def check_nonnegative_values(xp, x, name: str, hint: str):
    check_finite(xp, x, name)
    bad = x < 0
    if _any(xp, bad):
        pos = _first_bad(xp, bad)
        msg = f"`{name}` holds {_value_at(x, pos):g} at index {pos}; {hint}"
        raise (LabelValueError if "true" in name or "label" in name else PredictionValueError)(msg)


def warn(message: str):
    warnings.warn(message, ProblossWarning, stacklevel=4)


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
