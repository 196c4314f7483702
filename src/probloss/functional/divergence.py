"""Kullback-Leibler divergence, with Keras 3's clipping."""

from __future__ import annotations

from .. import _checks as C
from .. import _fast
from .._ops import clip
from .._reduction import align_ranks
from ._common import finish, prepare

__all__ = ["kl_divergence"]

EPSILON = 1e-7


def kl_divergence(y_true, y_pred, *, epsilon=EPSILON):
    """Keras's KL divergence ``KL(y_true || y_pred)`` summed over the last axis.

    .. math:: \\ell = \\sum_{-1} t \\log(t / p), \\qquad t, p \\text{ clipped to } [\\epsilon, 1]

    Both inputs are clipped (so a zero in ``y_true`` contributes a tiny
    ``epsilon log(epsilon/p)``) and neither is renormalised.  For the exact
    divergence with ``0 log 0 = 0`` and ``base=``, see :mod:`probloss.info`.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (..., K)
        Probabilities in [0, 1].
    epsilon : float, default 1e-7

    Returns
    -------
    array, shape (...)

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.kl_divergence([[0.5, 0.8, 0.12], [0.7, 0.43, 0.8]],
    ...                           [[0.4, 0.9, 0.12], [0.36, 0.3, 0.4]]), 4)
    array([0.0173, 1.1748], dtype=float32)
    """
    epsilon = C.check_epsilon(epsilon)
    xp, t, p, out_dtype = prepare(y_true, y_pred)
    t, p = align_ranks(t, p, xp)
    C.check_same_shape(t, p, "kl_divergence")
    C.check_axis(-1, p.ndim)
    checks = []
    if C.eager(t, p):
        why = "both inputs of kl_divergence are probabilities (Keras would clip silently). For logits apply softmax first."
        checks = [C.RangeCheck(t, "y_true", 0.0, 1.0, why=why), C.RangeCheck(p, "y_pred", 0.0, 1.0, why=why)]
    fast = _fast.elementwise(xp, "kl", t, p, epsilon, -1, mean=False, checks=checks)  # native kernel, or None
    if fast is not None:
        return finish(xp, fast, out_dtype)
    C.run_checks(xp, checks)
    t = clip(t, xp, epsilon, 1.0)
    p = clip(p, xp, epsilon, 1.0)
    return finish(xp, xp.sum(t * xp.log(t / p), axis=-1), out_dtype)
