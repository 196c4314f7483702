"""Poisson negative log-likelihood (up to the constant ``log(y!)``)."""

from __future__ import annotations

import math

from .. import _checks as C
from .._dispatch import implementation
from ._common import EPSILON, Options, finish, prepare, prepare_pair

__all__ = ["log_poisson_loss", "poisson"]


def poisson(y_true, y_pred, *, epsilon=EPSILON):
    """Keras's Poisson loss: the mean over the last axis of ``rate - y log(rate + eps)``.

    .. math:: \\ell = \\operatorname{mean}_{-1}\\big[\\hat y - y \\log(\\hat y + \\epsilon)\\big]

    ``y_pred`` is the predicted *rate* (not its log).  The constant ``log(y!)`` is left
    out, so the loss can be negative; it is minimal at ``y_pred == y_true``.

    Parameters
    ----------
    y_true : array_like, shape (..., K)
        Observed counts (>= 0).
    y_pred : array_like, shape (..., K)
        Predicted rates (>= 0).
    epsilon : float, default 1e-7

    Returns
    -------
    array, shape (...)

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.poisson([[4, 8, 12], [8, 1, 3]], [[1, 9, 2], [5, 2, 6]]), 4)
    array([-4.6319, -1.9813], dtype=float32)
    """
    xp, t, p, out_dtype, axis = prepare_pair(y_true, y_pred, "poisson")
    o = Options(epsilon=C.check_epsilon(epsilon))
    return finish(xp, implementation("poisson", xp)(xp, t, p, axis, o), out_dtype, y_true=t, y_pred=p)


COUNTS_HINT = "Poisson targets are counts and cannot be negative."
RATES_HINT = (
    "Poisson rates cannot be negative. If the model outputs log-rates, apply exp "
    "(or use `log_poisson_loss(targets=..., log_input=...)`)."
)


def check_poisson(xp, t, p):
    """The value checks of :func:`poisson`: counts and rates are never negative."""
    if C.eager(t, p):
        C.check_nonnegative_values(xp, t, "y_true", COUNTS_HINT)
        C.check_nonnegative_values(xp, p, "y_pred", RATES_HINT)


def poisson_generic(xp, t, p, axis, o: Options):
    """``mean(p - t log(p + epsilon), axis)``."""
    check_poisson(xp, t, p)
    return xp.mean(p - t * xp.log(p + o.epsilon), axis=axis)


def log_poisson_loss(*, targets, log_input, compute_full_loss=False):
    """``tf.nn.log_poisson_loss``: Poisson NLL from a log-rate ``c``, elementwise.

    .. math::

        \\ell = e^{c} - z c \\;\\big[+\\, z \\log z - z + \\tfrac12 \\log(2\\pi z)
        \\text{ where } z > 1\\big]

    The bracketed Stirling term is added with ``compute_full_loss=True``; like
    TensorFlow it is left out where ``0 <= z <= 1``.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.log_poisson_loss(targets=[2.0, 0.0], log_input=[0.0, 1.0]), 4)
    array([1.    , 2.7183], dtype=float32)
    """
    C.check_bool("compute_full_loss", compute_full_loss)
    xp, z, c, out_dtype = prepare(targets, log_input, names=("targets", "log_input"))
    C.check_same_shape(z, c, "log_poisson_loss")
    if C.eager(z, c):
        C.check_nonnegative_values(xp, z, "targets", COUNTS_HINT)
    loss = xp.exp(c) - z * c
    if compute_full_loss:
        big = z > 1
        safe = xp.where(big, z, xp.ones_like(z))
        stirling = safe * xp.log(safe) - safe + 0.5 * (math.log(2 * math.pi) + xp.log(safe))
        loss = loss + xp.where(big, stirling, xp.zeros_like(z))
    return finish(xp, loss, out_dtype, targets=z, log_input=c)
