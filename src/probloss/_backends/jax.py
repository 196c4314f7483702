"""JAX implementations: the softmax cross-entropies from logits, and CTC's time loop.

XLA fuses the generic formula well once a caller's step is jitted; eagerly, each
``xp.*`` call of the generic formula is a dispatch of its own.  These are the generic
formulas of :mod:`probloss.functional._logits` (a log-sum-exp and a gather, with the
rules for ``-inf`` logits) compiled once per axis, label smoothing and class weights
(static arguments), so an eager call is one dispatch, and inside a caller's ``jit``
they inline.

Each function has the dispatch signature ``(xp, y_true, y_pred, axis, options)`` and runs
its loss's value checks (eagerly; under tracing they are skipped).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .. import _checks as C
from ..functional import _logits as L
from ..functional import crossentropy as ce
from ..functional.ctc import ctc_generic, from_loglik, loglik

__all__ = ["categorical", "ctc", "sparse"]


def _shifted(x, axis):
    """:func:`probloss.functional._logits.shifted` with the row max outside the gradient
    (as ``jax.nn.logsumexp`` takes it): the same values, a shorter backward."""
    m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    d = x - jnp.where(jnp.isfinite(m), m, 0.0)
    s = jnp.sum(jnp.exp(d), axis=axis, keepdims=True)
    return d, jnp.log(jnp.where(s == 0, 1.0, s))


def _weights(w, x):
    return None if w is None else jnp.asarray(w, dtype=x.dtype)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _sparse_from_logits(labels, x, axis, smoothing, weights):
    return L.sparse_logits(jnp, labels, x, axis, smoothing, _weights(weights, x), shift=_shifted(x, axis))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _soft_from_logits(t, x, axis, smoothing, weights):
    w = _weights(weights, x)
    w = None if w is None else jnp.reshape(w, (w.shape[0],) + (1,) * (x.ndim - 1 - axis))
    return L.soft_logits(jnp, t, x, axis, smoothing, w, shift=_shifted(x, axis))


def sparse(xp, labels, x, axis, o):
    """``(1 - a) w_y (lse(x) - x_y) + a (smoothing term)``; from probabilities, the generic formula."""
    if not o.from_logits:
        return ce.sparse_generic(xp, labels, x, axis, o)
    if C.eager(labels, x):  # JAX clamps an index out of range silently
        labels = C.check_sparse_labels(xp, labels, x.shape[axis], None)
    return _sparse_from_logits(labels, x, axis, o.label_smoothing, o.class_weight)


def categorical(xp, t, x, axis, o, name="y_true"):
    """``sum_c w_c q_c (lse(x) - x_c)`` (``-inf`` logits rule classes out); from
    probabilities, the generic formula."""
    if not o.from_logits:
        return ce.categorical_generic(xp, t, x, axis, o, name)
    if C.eager(t, x):
        ce.check_soft_labels(xp, t, name)
    return _soft_from_logits(t, x, axis, o.label_smoothing, o.class_weight)


@functools.partial(jax.jit, static_argnums=4)
def _ctc_loglik(lp, labels, input_lengths, label_lengths, blank):
    return loglik(jnp, lp, labels, input_lengths, label_lengths, blank, jax.lax.scan)


def ctc(xp, targets, lp, axis, o):
    """CTC's recursion with the time loop as a ``jax.lax.scan``, compiled once per shape."""
    if lp.shape[1] == 0:  # no frames: nothing to scan
        return ctc_generic(xp, targets, lp, axis, o)
    ll = _ctc_loglik(lp, targets.labels, targets.input_lengths, targets.label_lengths, o.blank)
    return from_loglik(xp, ll, o.zero_infinity)
