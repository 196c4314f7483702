"""Input preparation and options shared by every loss function."""

from __future__ import annotations

from typing import NamedTuple

from .._checks import (
    attach_checks,
    check_axis,
    check_not_empty,
    check_prediction_dtype,
    check_result_finite,
    check_same_shape,
    eager,
    known_finite,
)
from .._compat import _is_array, as_array, dtype_kind, is_half, namespace
from .._errors import ProblossTypeError

__all__ = ["EPSILON", "Options", "finish", "prepare", "prepare_pair"]

EPSILON = 1e-7
"""Keras's ``backend.epsilon()``: the clipping bound for probabilities."""


class Options(NamedTuple):
    """A loss's options, validated once: when a class is built, or a function is called.

    Every implementation in the dispatch table takes ``(xp, y_true, y_pred, axis, options)``
    with ``axis`` already non-negative; each loss reads the fields it has.  Every field is
    hashable (numbers, strings, tuples), so an implementation may pass options to a
    compiled function as static arguments.

    ``ruled_out_target`` ("raise" or "inf") says what a softmax cross-entropy from logits
    does with target weight on a class whose logit is ``-inf``; ``class_weight`` (a tuple,
    one weight per class) scales each class's term as ``F.cross_entropy(weight=)`` does;
    ``pos_weight`` (a number, or a tuple with one per entry of the last axis) scales the
    positive term of the binary cross-entropy.
    """

    from_logits: bool = False
    label_smoothing: float = 0.0
    epsilon: float = EPSILON
    ignore_class: int | None = None
    ruled_out_target: str = "raise"
    class_weight: tuple[float, ...] | None = None
    pos_weight: float | tuple[float, ...] | None = None


def prepare(y_true, y_pred, *, dense_labels: bool = True, names=("y_true", "y_pred"), xp=None):
    """Convert the inputs of a loss to one namespace and a compute dtype.

    Returns ``(xp, y_true, y_pred, out_dtype)``.  ``y_pred`` must be floating point
    (Python lists of numbers become float32, as in Keras); float16 and bfloat16 are
    computed in float32 and the result is cast back to ``out_dtype``.  ``y_true`` is cast
    to the compute dtype when ``dense_labels`` (Keras casts labels to the prediction's
    dtype); sparse labels keep their integer dtype.  ``xp`` is the namespace when the
    caller already knows it.
    """
    true_name, pred_name = names
    if xp is None:
        xp = namespace(y_true, y_pred, names=names)
    from_list = not _is_array(y_pred)
    y_pred = as_array(y_pred, xp, name=pred_name)
    if from_list and dtype_kind(xp, y_pred.dtype) != "real floating":
        y_pred = xp.astype(y_pred, xp.float32)
    check_prediction_dtype(xp, y_pred, pred_name)
    out_dtype = y_pred.dtype
    if is_half(out_dtype):
        y_pred = xp.astype(y_pred, xp.float32)
    check_not_empty(y_pred, pred_name)
    y_true = as_array(y_true, xp, like=y_pred, name=true_name)
    if dense_labels:
        if dtype_kind(xp, y_true.dtype) == "complex floating":
            msg = f"`{true_name}` must be real; got dtype {y_true.dtype}."
            raise ProblossTypeError(msg)
        if y_true.dtype != y_pred.dtype:  # no N x K copy when already that dtype
            y_true = xp.astype(y_true, y_pred.dtype)
    return xp, y_true, y_pred, out_dtype


def prepare_pair(y_true, y_pred, loss):
    """``(xp, t, p, out_dtype, axis)`` for an elementwise loss over the last axis.

    The ranks are aligned as Keras does, then both must have the same shape.
    """
    from .._reduction import align_ranks

    xp, t, p, out_dtype = prepare(y_true, y_pred)
    t, p = align_ranks(t, p, xp)
    check_same_shape(t, p, loss)
    return xp, t, p, out_dtype, check_axis(-1, p.ndim)


def finish(xp, values, out_dtype, **inputs):
    """Check the per-sample losses are finite, then cast back to the input dtype.

    ``inputs`` (name=array) are scanned only when a loss is NaN or inf, to name the
    element responsible; half-precision inputs were computed in float32 and the result
    is cast back to ``out_dtype``.
    """
    if inputs and not known_finite(values) and eager(values):
        check_result_finite(xp, values, **inputs)
    values = attach_checks(values)
    return values if values.dtype == out_dtype else xp.astype(values, out_dtype)
