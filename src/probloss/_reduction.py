"""Keras 3's reduction of per-sample losses, with sample weights and masks.

The algorithm (Keras ``Loss.__call__``, kept exactly so results match to the last digit):

1. A mask ``M`` (from ``ignore_class``) becomes weights: under ``"sum_over_batch_size"``
   / ``"mean"`` it is ``where(M, size(M) / count(M), 0)`` (so the mean divides by the
   number of valid elements; all-masked gives 0), otherwise ``float(M)``.  It multiplies
   ``sample_weight`` when both are given.
2. Weights are rank-aligned with the values (:func:`align_ranks`) and multiplied in,
   with NumPy broadcasting.
3. ``"none"`` / ``None``, or values of shape ``()`` or ``(0,)``, are returned as they are.
4. ``"sum"`` returns ``sum(V)``; the means return ``sum(V) / D`` where ``D`` is the
   number of elements of ``V``, or for ``"mean_with_sample_weight"`` the sum of the
   (aligned, not broadcast) weights.  A zero divisor gives 0, not NaN.

A loss with class weights (``class_weight=``) passes ``target_weight``, each position's
``W = w[y]`` (or ``sum_c w_c y_c`` for soft labels), its values being ``W l``.  Its means
follow torch's ``reduction="mean"`` with ``weight=``: ``sum(s W l) / sum(W)`` over the
positions the mask keeps, ``s`` the sample weights (which, as in Keras, scale the sum
only); ``"mean_with_sample_weight"`` divides by ``sum(s W)``.
"""

from __future__ import annotations

import math

from ._errors import ArgumentError, ShapeError

__all__ = ["REDUCTIONS", "align_ranks", "reduce_values", "validate_reduction"]

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def validate_reduction(reduction):
    """Return ``reduction`` if it is one of :data:`REDUCTIONS`, else raise."""
    if reduction not in REDUCTIONS:
        hint = ' (Keras 2\'s "auto" is "sum_over_batch_size" in Keras 3)' if reduction == "auto" else ""
        msg = (
            f"`reduction` must be one of {', '.join(repr(r) for r in REDUCTIONS)}; "
            f"got {reduction!r}{hint}."
        )
        raise ArgumentError(msg)
    return reduction


def align_ranks(a, b, xp):
    """Keras's ``squeeze_or_expand_to_same_rank``: fix a rank difference of one.

    When one array has exactly one more axis than the other and that last axis has
    size 1, it is squeezed, except that a rank-1 partner is expanded to ``(..., 1)``
    instead.  Any other difference is left to broadcasting.
    """
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        if b.ndim == 1:
            return a, xp.expand_dims(b, axis=-1)
        return xp.squeeze(a, axis=-1), b
    if b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        if a.ndim == 1:
            return xp.expand_dims(a, axis=-1), b
        return a, xp.squeeze(b, axis=-1)
    return a, b


def _safe_divide(num, den, xp):
    """``num / den``, and 0 where ``den == 0`` (``num`` may be a Python number)."""
    zero = den == 0
    quotient = num / xp.where(zero, xp.ones_like(den), den)
    return xp.where(zero, xp.zeros_like(quotient), quotient)


def _broadcast_shape(a, b, what: str):
    try:
        return tuple(_broadcast_pair(a.shape, b.shape))
    except ValueError:
        msg = (
            f"`sample_weight` of shape {tuple(b.shape)} cannot broadcast against the "
            f"per-sample losses of shape {tuple(a.shape)} ({what}). Give one weight per "
            f"sample, shape {tuple(a.shape[:1])} or {tuple(a.shape[:1]) + (1,) * (a.ndim - 1)}, "
            f"or one per element, shape {tuple(a.shape)}."
        )
        raise ShapeError(msg) from None


def _broadcast_pair(s1, s2):
    out = []
    for d1, d2 in zip((1,) * (len(s2) - len(s1)) + tuple(s1), (1,) * (len(s1) - len(s2)) + tuple(s2)):
        if d1 != d2 and 1 not in (d1, d2):
            raise ValueError
        out.append(max(d1, d2) if 0 not in (d1, d2) else 0)
    return out


def reduce_values(values, xp, *, reduction="sum_over_batch_size", sample_weight=None, mask=None, target_weight=None):
    """Reduce per-sample ``values`` the way Keras 3 does (see the module docstring)."""
    if target_weight is not None:
        return _reduce_class_weighted(values, xp, reduction, sample_weight, mask, target_weight)
    weights = None
    if mask is not None:
        if reduction in ("sum_over_batch_size", "mean"):
            count = xp.sum(xp.astype(mask, values.dtype))
            scale = _safe_divide(float(math.prod(mask.shape)), count, xp)
            weights = xp.where(mask, scale, xp.zeros_like(scale))
        else:
            weights = xp.astype(mask, values.dtype)
    if sample_weight is not None:
        if weights is None:
            weights = sample_weight
        else:
            weights, sample_weight = align_ranks(weights, sample_weight, xp)
            _broadcast_shape(weights, sample_weight, "with the ignore_class mask")
            weights = weights * sample_weight
    if weights is not None:
        values, weights = align_ranks(values, weights, xp)
        _broadcast_shape(values, weights, "after Keras's rank alignment")
        values = values * weights
    if reduction in (None, "none") or values.shape in ((), (0,)):
        return values
    count = math.prod(values.shape)
    if weights is None and reduction != "sum" and count:
        return xp.mean(values)  # sum / N: one operation (and one autograd node) instead of two
    total = xp.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weights is not None:
        return _safe_divide(total, xp.sum(weights), xp)
    return total / count if count else total  # an empty batch (after broadcasting) sums to 0


def _reduce_class_weighted(values, xp, reduction, sample_weight, mask, target_weight):
    """The reduction of class-weighted losses ``values = W l`` (see the module docstring)."""
    den = target_weight
    if mask is not None:
        values = xp.where(mask, values, xp.zeros_like(values))
        den = xp.where(mask, den, xp.zeros_like(den))
    if sample_weight is not None:
        values, weights = align_ranks(values, sample_weight, xp)
        _broadcast_shape(values, weights, "after Keras's rank alignment")
        values = values * weights
        if reduction == "mean_with_sample_weight":
            den, weights = align_ranks(den, sample_weight, xp)
            den = den * weights
    if reduction in (None, "none") or values.shape in ((), (0,)):
        return values
    total = xp.sum(values)
    if reduction == "sum":
        return total
    return _safe_divide(total, xp.sum(den), xp)
