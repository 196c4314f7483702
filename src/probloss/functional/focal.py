"""Focal cross-entropy (Lin et al., 2017), binary and categorical, with Keras 3's numbers.

Focal losses scale each term by ``(1 - p_t)^gamma`` so that well-classified examples
count less.  With ``from_logits=True`` Keras applies sigmoid / softmax and then takes
the probability path (clipping at ``epsilon``); we do the same so the numbers match, which
means a saturated logit costs at most ``-log(epsilon)`` here, unlike in
:func:`~probloss.binary_crossentropy`.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

from .. import _checks as C
from .._compat import as_array
from .._dispatch import implementation
from .._errors import ArgumentError
from .._ops import sigmoid, softmax
from . import crossentropy as ce
from ._common import EPSILON, finish

__all__ = ["FocalOptions", "binary_focal_crossentropy", "categorical_focal_crossentropy"]


class FocalOptions(NamedTuple):
    """The focal losses' options, validated once: the ``options`` of their dispatch entries
    (``"binary_focal"``, ``"categorical_focal"``).  ``alpha`` is a number, or a tuple of one
    weight per class (categorical only)."""

    from_logits: bool = False
    label_smoothing: float = 0.0
    epsilon: float = EPSILON
    alpha: float | tuple[float, ...] = 0.25
    gamma: float = 2.0
    apply_class_balancing: bool = False


def binary_focal_crossentropy(
    y_true,
    y_pred,
    apply_class_balancing=False,
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    *,
    epsilon=EPSILON,
):
    """Binary focal cross-entropy.

    .. math::

        \\ell = \\operatorname{mean}_{axis}\\big[w\\,(1 - p_t)^{\\gamma}\\,
        \\operatorname{bce}(t, p)\\big], \\qquad p_t = t p + (1 - t)(1 - p)

    where ``t`` is the (smoothed) target, ``p`` the probability (``sigmoid(y_pred)`` with
    ``from_logits``), ``bce`` the clipped binary cross-entropy, and ``w = t alpha +
    (1 - t)(1 - alpha)`` only when ``apply_class_balancing`` (Keras ignores ``alpha``
    otherwise).  ``gamma=0`` without balancing is :func:`binary_crossentropy`.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (..., K)
        As in :func:`~probloss.binary_crossentropy`.
    apply_class_balancing : bool, default False
    alpha : float in [0, 1], default 0.25
    gamma : float >= 0, default 2
    from_logits : bool, default False
    label_smoothing : float in [0, 1], default 0
    axis : int, default -1
    epsilon : float, default 1e-7

    Returns
    -------
    array, shape of ``y_pred`` without ``axis``

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.binary_focal_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]), 4)
    array([0.3299, 0.2058], dtype=float32)
    """
    C.check_bool("apply_class_balancing", apply_class_balancing)
    alpha = C.check_float_in("alpha", alpha, 0.0, 1.0)
    gamma = C.check_nonnegative("gamma", gamma)
    o = ce.options(from_logits, label_smoothing, epsilon)
    o = FocalOptions(o.from_logits, o.label_smoothing, o.epsilon, alpha, gamma, apply_class_balancing)
    xp, t, p, out_dtype, axis = ce.prepare_binary(y_true, y_pred, axis, "binary_focal_crossentropy")
    values = implementation("binary_focal", xp)(xp, t, p, axis, o)
    return finish(xp, values, out_dtype, y_true=t, y_pred=p)


def binary_focal_generic(xp, t, p, axis, o: FocalOptions):
    """``mean(w (1 - p_t)^gamma bce(t, p), axis)`` (see :func:`binary_focal_crossentropy`)."""
    ce.check_binary(xp, t, p, o)
    alpha, gamma, from_logits, apply_class_balancing = o.alpha, o.gamma, o.from_logits, o.apply_class_balancing
    t = ce.smooth_binary(t, o.label_smoothing)
    if from_logits:
        p = sigmoid(p, xp)
    bce = ce._binary_elementwise(xp, t, p, False, o.epsilon)
    p_t = t * p + (1.0 - t) * (1.0 - p)
    focal = _power(1.0 - p_t, gamma, xp) * bce
    if apply_class_balancing:
        focal = (t * alpha + (1.0 - t) * (1.0 - alpha)) * focal
    return xp.mean(focal, axis=axis)


def _power(base, gamma: float, xp):
    """``base ** gamma`` for ``base >= 0`` whose gradient is 0, not NaN, where ``base == 0``.

    A confident, correct prediction (a probability of exactly 1, or a logit of 17 or more,
    whose float32 sigmoid rounds to 1) gives ``base = 0``; for ``gamma < 1`` the derivative
    of ``base ** gamma`` is infinite there and autodiff would multiply it by 0.  The loss
    itself is 0 there to first order, so its true gradient is 0: the power is taken of a
    positive stand-in and the value at 0 is put back with ``where``.
    """
    zero = base <= 0
    safe = xp.where(zero, xp.ones_like(base), base)
    return xp.where(zero, xp.zeros_like(base) if gamma > 0 else xp.ones_like(base), safe**gamma)


def _alpha_array(alpha, xp, like, axis: int):
    """A scalar alpha, or one alpha per class laid along ``axis`` (Keras: last axis only)."""
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        return C.check_float_in("alpha", alpha, 0.0, 1.0)
    a = as_array(alpha, xp, like=like, dtype=like.dtype, name="alpha")  # (not via float32)
    num_classes = like.shape[axis]
    if a.ndim != 1 or a.shape[0] != num_classes:
        msg = f"`alpha` must be a number or a list of one weight per class ({num_classes}); got shape {tuple(a.shape)}."
        raise ArgumentError(msg)
    a = xp.astype(a, like.dtype)
    return xp.reshape(a, (num_classes,) + (1,) * (like.ndim - 1 - axis))


def categorical_focal_crossentropy(
    y_true,
    y_pred,
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    *,
    epsilon=EPSILON,
):
    """Categorical focal cross-entropy.

    .. math::

        \\ell = \\sum_c \\alpha_c (1 - q_c)^{\\gamma} \\big(-t_c \\log q_c\\big),
        \\qquad q = \\operatorname{clip}(p / \\textstyle\\sum p, \\epsilon, 1 - \\epsilon)

    with ``p = softmax(y_pred)`` when ``from_logits``.  ``alpha`` is a number or one
    weight per class; it always applies.  ``alpha=1, gamma=0`` is
    :func:`categorical_crossentropy` on probabilities.

    Parameters
    ----------
    y_true, y_pred : array_like, same shape
    alpha : float or sequence of float, default 0.25
        A per-class list is laid along ``axis`` (Keras only supports the last axis).
    gamma : float >= 0, default 2
    from_logits : bool, default False
    label_smoothing : float in [0, 1], default 0
    axis : int, default -1
    epsilon : float, default 1e-7

    Returns
    -------
    array, shape of ``y_pred`` without ``axis``

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> y_true = [[0, 1, 0], [0, 0, 1]]
    >>> y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    >>> np.round(pl.categorical_focal_crossentropy(y_true, y_pred), 4)
    array([0.    , 0.4663], dtype=float32)
    """
    gamma = C.check_nonnegative("gamma", gamma)
    o = ce.options(from_logits, label_smoothing, epsilon)
    xp, t, p, out_dtype, axis = ce.prepare_categorical(y_true, y_pred, axis, "categorical_focal_crossentropy")
    o = FocalOptions(o.from_logits, o.label_smoothing, o.epsilon, _alpha_option(alpha, p.shape[axis]), gamma)
    values = implementation("categorical_focal", xp)(xp, t, p, axis, o)
    return finish(xp, values, out_dtype, y_true=t, y_pred=p)


def _alpha_option(alpha, num_classes: int):
    """A number in [0, 1], or a tuple of one weight per class (from a list or a 1-D array)."""
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        return C.check_float_in("alpha", alpha, 0.0, 1.0)
    items = alpha.tolist() if hasattr(alpha, "tolist") else alpha
    if not isinstance(items, (list, tuple)) or not all(isinstance(a, numbers.Real) and not isinstance(a, bool) for a in items):
        shape = tuple(getattr(alpha, "shape", ()))
        msg = f"`alpha` must be a number or a list of one weight per class ({num_classes}); got {f'shape {shape}' if shape else repr(alpha)[:60]}."
        raise ArgumentError(msg)
    if len(items) != num_classes:
        msg = f"`alpha` must be a number or a list of one weight per class ({num_classes}); got shape ({len(items)},)."
        raise ArgumentError(msg)
    return tuple(float(a) for a in items)


def categorical_focal_generic(xp, t, p, axis, o: FocalOptions):
    """``sum(alpha (1 - q)^gamma (-t log q), axis)`` (see :func:`categorical_focal_crossentropy`)."""
    alpha, gamma, from_logits = o.alpha, o.gamma, o.from_logits
    if C.eager(t):
        ce.check_soft_labels(xp, t)
    t = ce.smooth_categorical(t, o.label_smoothing, p.shape[axis])
    a = _alpha_array(alpha, xp, p, axis)
    if from_logits:
        p = softmax(p, xp, axis=axis)
    q = ce.normalized_clipped(xp, p, axis, o.epsilon, check=not from_logits)
    focal = a * (1.0 - q) ** gamma * (-t * xp.log(q))
    return xp.sum(focal, axis=axis)


