"""Gaussian negative log-likelihood with a predicted variance (PyTorch's ``gaussian_nll_loss``)."""

from __future__ import annotations

import math
import numbers

from .. import _checks as C
from .._compat import as_array, dtype_kind, is_jax, is_torch, namespace
from .._errors import ArgumentError, ProblossTypeError, ShapeError
from .._reduction import align_ranks
from ._common import finish, prepare

__all__ = ["gaussian_nll"]

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

VAR_HINT = (
    "a variance cannot be negative. If the model outputs a log-variance, pass exp(log_var); "
    "an unconstrained output is usually made positive with softplus."
)


def gaussian_nll(y_true, y_pred, var, *, full=False, eps=1e-6, axis=-1):
    """Gaussian negative log-likelihood of ``y_true`` under ``N(y_pred, var)``, averaged over ``axis``.

    .. math::

        \\ell = \\operatorname{mean}_{\\mathrm{axis}} \\tfrac12 \\Big[\\log v +
        \\frac{(\\hat y - y)^2}{v}\\Big] \\;\\big[+\\, \\tfrac12 \\log 2\\pi\\big],
        \\qquad v = \\max(\\mathrm{var}, \\epsilon)

    PyTorch's ``F.gaussian_nll_loss(y_pred, y_true, var, full=full, eps=eps,
    reduction="none").mean(axis)``, elementwise term for term, reduced over ``axis`` by
    its mean like Keras's other elementwise losses (``poisson``, ``binary_crossentropy``);
    the class :class:`~probloss.GaussianNLL` then reduces the per-sample values.  At a
    fixed variance it is the mean squared error up to a scale and a constant: with
    ``var=1``, ``0.5 * mse`` (``+ 0.5 log 2 pi`` with ``full=True``).

    Like PyTorch, the variance is clamped at ``eps`` for the value only: below ``eps``
    the gradient with respect to ``var`` is the derivative at ``eps``, passed through
    unchanged (PyTorch clamps in place under ``no_grad``), so a variance that fell under
    ``eps`` is still pushed back up.  The gradient with respect to ``y_pred`` uses the
    clamped variance.

    Parameters
    ----------
    y_true : array_like, shape (..., D)
        Observed real-valued targets.
    y_pred : array_like, shape (..., D)
        Predicted means.  Ranks are aligned with ``y_true`` as Keras does (a trailing
        axis of size 1), then the shapes must match.
    var : array_like or float
        Predicted variances (``>= 0``), shaped as PyTorch accepts: the shape of
        ``y_pred`` (heteroscedastic); that shape without its last axis, or with one
        axis of size 1 (homoscedastic over that axis); or a number (or 0-d array) for all.
    full : bool, default False
        Add the constant ``0.5 log(2 pi)``, giving the exact negative log-density.
    eps : float, default 1e-6
        Lower clamp of the variance (PyTorch's default).
    axis : int, default -1
        The axis averaged over.

    Returns
    -------
    array, shape of ``y_pred`` without ``axis``

    Raises
    ------
    PredictionValueError
        A negative or NaN variance (eager mode, as PyTorch's ``ValueError``).
    ShapeError
        ``var`` of a shape PyTorch refuses.

    Examples
    --------
    >>> import numpy as np
    >>> import probloss as pl
    >>> np.round(pl.gaussian_nll([[1.0, 2.0], [0.0, 0.5]], [[1.5, 2.0], [0.0, -0.5]], [[1.0, 4.0], [0.5, 0.5]]), 5)
    array([0.40907, 0.15343], dtype=float32)
    """
    full = C.check_bool("full", full)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < float(eps) < math.inf:
        msg = f"`eps` must be a finite number > 0 (the variance's lower clamp); got {eps!r}."
        raise ArgumentError(msg)
    xp = namespace(y_true, y_pred, var, names=("y_true", "y_pred", "var"))
    xp, t, p, out_dtype = prepare(y_true, y_pred, xp=xp)
    t, p = align_ranks(t, p, xp)
    C.check_same_shape(t, p, "gaussian_nll")
    axis = C.check_axis(axis, p.ndim)
    v = _variance(xp, var, p)
    if C.eager(v):
        C.check_nonnegative_values(xp, v, "var", VAR_HINT)
    clamped = xp.maximum(v, xp.full_like(v, float(eps)))
    # torch's clamp changes the value only: the gradient passes through as at var >= eps.
    v = v + _stop_gradient(xp, clamped - v)
    loss = 0.5 * (xp.log(v) + (p - t) ** 2 / v)
    if full:
        loss = loss + HALF_LOG_2PI
    return finish(xp, xp.mean(loss, axis=axis), out_dtype, y_true=t, y_pred=p, var=v)


def _variance(xp, var, p):
    """``var`` as an array of ``p``'s dtype that broadcasts against ``p``, by PyTorch's rules."""
    if isinstance(var, numbers.Real) and not isinstance(var, bool):
        return xp.full_like(p, float(var))
    v = as_array(var, xp, like=p, name="var")
    if dtype_kind(xp, v.dtype) in ("complex floating", "bool"):
        msg = f"`var` must hold real numbers; got dtype {v.dtype}."
        raise ProblossTypeError(msg)
    if v.dtype != p.dtype:
        v = xp.astype(v, p.dtype)
    if tuple(v.shape) == tuple(p.shape) or v.ndim == 0:  # (0-d: one variance for all, as a number)
        return v
    if tuple(v.shape) == tuple(p.shape[:-1]):  # one axis short: one variance per row
        return xp.expand_dims(v, axis=-1)
    if v.ndim == p.ndim and sum(b for a, b in zip(p.shape, v.shape) if a != b) == 1:
        return v  # one axis of size 1 (PyTorch's test, word for word)
    msg = (
        f"gaussian_nll: `var` of shape {tuple(v.shape)} does not fit `y_pred` of shape {tuple(p.shape)}; "
        "as in PyTorch it must have the shape of `y_pred`, that shape without the last axis, or that shape "
        "with one axis of size 1 (one variance shared along it)."
    )
    raise ShapeError(msg)


def _stop_gradient(xp, x):
    """``x`` as a constant for autodiff (torch, JAX); the other namespaces have no autodiff."""
    if is_torch(xp):
        return x.detach()
    if is_jax(xp):
        import jax

        return jax.lax.stop_gradient(x)
    return x
