"""Numerically stable primitives, generic over an array namespace ``xp``.

Each function is written with ``xp.*`` calls only, so it runs on NumPy, PyTorch, JAX
and CuPy, and traces under ``jax.jit`` and ``torch.compile`` (no branching on values,
no boolean indexing, no item assignment).  Native kernels live in
:mod:`probloss._backends`, chosen by :mod:`probloss._dispatch`.
"""

from __future__ import annotations

from ._compat import is_torch

__all__ = [
    "clip",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "normalize_axis",
    "one_hot",
    "sigmoid",
    "softmax",
    "softplus",
    "take_along_axis",
    "xlogy",
]


def normalize_axis(axis: int, ndim: int) -> int:
    """Map a possibly negative ``axis`` to ``0 <= axis < ndim`` (caller has validated it)."""
    return axis + ndim if axis < 0 else axis


def logsumexp(x, xp, axis: int = -1, keepdims: bool = False):
    """``log(sum(exp(x), axis))`` without overflow.

    Formula: ``m + log(sum(exp(x - m)))`` with ``m = max(x)``; a row whose max is not
    finite (all ``-inf``) uses ``m = 0`` so that it gives ``-inf``, not NaN.
    """
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def log_softmax(x, xp, axis: int = -1):
    """``x - logsumexp(x, axis)``: log-probabilities of a softmax, in log space."""
    return x - logsumexp(x, xp, axis=axis, keepdims=True)


def softmax(x, xp, axis: int = -1):
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``."""
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def softplus(x, xp):
    """``log(1 + exp(x))`` computed as ``max(x, 0) + log1p(exp(-|x|))`` (never overflows)."""
    return xp.maximum(x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))


def log_sigmoid(x, xp):
    """``log(sigmoid(x)) = -softplus(-x)``, finite for every finite ``x``."""
    return -softplus(-x, xp)


def sigmoid(x, xp):
    """``1 / (1 + exp(-x))`` written so that neither branch overflows."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def xlogy(x, y, xp):
    """``x * log(y)`` with the convention ``0 * log(0) = 0`` (and 0 wherever ``x == 0``)."""
    safe_y = xp.where(x == 0, xp.ones_like(y), y)
    return xp.where(x == 0, xp.zeros_like(x), x * xp.log(safe_y))


def clip(x, xp, lo: float, hi: float):
    """Elementwise clip to ``[lo, hi]`` (Python-float bounds, rounded to ``x.dtype``)."""
    return xp.clip(x, lo, hi)


def one_hot(labels, num_classes: int, xp, dtype, axis: int = -1):
    """One-hot encode integer ``labels``; the new class axis is inserted at ``axis``.

    Built by comparison with ``arange`` (no scatter), so it traces under ``jax.jit``.
    An index outside ``[0, num_classes)`` gives an all-zero row.
    """
    classes = xp.arange(num_classes, device=_device(labels))
    out = xp.astype(xp.expand_dims(labels, axis=-1) == classes, dtype)
    if axis == -1 or axis == labels.ndim:
        return out
    return xp.moveaxis(out, -1, axis)


def take_along_axis(x, indices, xp, axis: int = -1):
    """``x[..., indices, ...]`` along ``axis``; ``indices`` has ``x``'s shape minus ``axis``.

    Returns an array of ``indices``' shape.  Uses the native gather where the namespace
    has one; otherwise a one-hot dot product (same values, more memory).
    """
    axis = normalize_axis(axis, x.ndim)
    idx = xp.expand_dims(indices, axis=axis)
    if is_torch(xp):
        import torch

        return torch.gather(x, axis, idx.long()).squeeze(axis)
    if hasattr(xp, "take_along_axis"):
        return xp.squeeze(xp.take_along_axis(x, idx, axis=axis), axis=axis)
    mask = one_hot(indices, x.shape[axis], xp, x.dtype, axis=axis)
    return xp.sum(x * mask, axis=axis)


def _device(x):
    from ._compat import device_of

    return device_of(x)

