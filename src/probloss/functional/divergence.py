"""Kullback-Leibler divergence, with Keras 3's clipping."""

from __future__ import annotations

from .. import _checks as C
from .._dispatch import implementation
from .._ops import clip
from ._common import EPSILON, Options, finish, prepare_pair
from ._where import where_mask

__all__ = ["kl_divergence"]


def kl_divergence(y_true, y_pred, *, epsilon=EPSILON, where=None):
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
    where : array_like of bool, optional
        As ``optax.kl_divergence``'s ``where``: the entries to include, of the shape of
        ``y_pred``, or one flag per sample (``y_pred``'s shape without the last axis).
        The sum runs over the entries inside; those outside contribute nothing and get a
        zero gradient, whatever they hold.

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
    xp, t, p, out_dtype, axis = prepare_pair(y_true, y_pred, "kl_divergence")
    o = Options(epsilon=C.check_epsilon(epsilon))
    if where is not None:  # outside the mask: 1 log(1 / 1) = 0, with a zero gradient
        m, per_entry = where_mask(xp, where, p, axis, "kl_divergence")
        m = m if per_entry else xp.expand_dims(m, axis=axis)
        t = xp.where(m, t, xp.ones_like(t))
        p = xp.where(m, p, xp.ones_like(p))
    return finish(xp, implementation("kl_divergence", xp)(xp, t, p, axis, o), out_dtype)


KL_HINT = "both inputs of kl_divergence are probabilities (Keras would clip silently). For logits apply softmax first."


def kl_generic(xp, t, p, axis, o: Options):
    """``sum(u log(u / q), axis)`` with ``u``, ``q`` the inputs clipped to ``[epsilon, 1]``."""
    if C.eager(t, p):
        C.check_range(xp, t, "y_true", 0.0, 1.0, why=KL_HINT)
        C.check_range(xp, p, "y_pred", 0.0, 1.0, why=KL_HINT)
    t = clip(t, xp, o.epsilon, 1.0)
    p = clip(p, xp, o.epsilon, 1.0)
    return xp.sum(t * xp.log(t / p), axis=axis)
