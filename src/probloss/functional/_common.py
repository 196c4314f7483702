"""Input preparation shared by every loss function."""

from __future__ import annotations

from .._checks import check_not_empty, check_prediction_dtype, check_result_finite, eager
from .._compat import _is_array, as_array, is_half, namespace

__all__ = ["finish", "prepare"]


def prepare(y_true, y_pred, *, dense_labels: bool = True, names=("y_true", "y_pred")):
    """Convert the inputs of a loss to one namespace and a compute dtype.

    Returns ``(xp, y_true, y_pred, out_dtype)``.  ``y_pred`` must be floating point
    (Python lists of numbers become float32, as in Keras); float16 and bfloat16 are
    computed in float32 and the result is cast back to ``out_dtype``.  ``y_true`` is cast
    to the compute dtype when ``dense_labels`` (Keras casts labels to the prediction's
    dtype); sparse labels keep their integer dtype.
    """
    true_name, pred_name = names
    xp = namespace(y_true, y_pred, names=names)
    from_list = not _is_array(y_pred)
    y_pred = as_array(y_pred, xp, name=pred_name)
    if from_list and not xp.isdtype(y_pred.dtype, "real floating"):
        y_pred = xp.astype(y_pred, xp.float32)
    check_prediction_dtype(xp, y_pred, pred_name)
    out_dtype = y_pred.dtype
    if is_half(out_dtype):
        y_pred = xp.astype(y_pred, xp.float32)
    check_not_empty(y_pred, pred_name)
    y_true = as_array(y_true, xp, like=y_pred, name=true_name)
    if dense_labels:
        if xp.isdtype(y_true.dtype, "complex floating"):
            msg = f"`{true_name}` must be real; got dtype {y_true.dtype}."
            from .._errors import ProblossTypeError

            raise ProblossTypeError(msg)
        y_true = xp.astype(y_true, y_pred.dtype, copy=False)  # no N x K copy when already that dtype
    return xp, y_true, y_pred, out_dtype


def finish(xp, values, out_dtype, **inputs):
    """Check the per-sample losses are finite, then cast back to the input dtype.

    ``inputs`` (name=array) are scanned only when a loss is NaN or inf, to name the
    element responsible; half-precision inputs were computed in float32 and the result
    is cast back to ``out_dtype``.
    """
    if inputs and eager(values):
        check_result_finite(xp, values, **inputs)
    return values if values.dtype == out_dtype else xp.astype(values, out_dtype)
