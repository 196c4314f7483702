"""JAX implementations: the softmax cross-entropies from logits, and CTC's time loop.

XLA fuses the generic formula well once a caller's step is jitted; eagerly, each
``xp.*`` call of the generic formula is a dispatch of its own.  These are the same
formulas (``jax.nn.logsumexp`` / ``jax.nn.log_softmax`` and a gather, as Optax writes
them) compiled once per axis, so an eager call is one dispatch, and inside a caller's
``jit`` they inline.

Each function has the dispatch signature ``(xp, y_true, y_pred, axis, options)`` and runs
its loss's value checks (eagerly; under tracing they are skipped).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .. import _checks as C
from ..functional import crossentropy as ce
from ..functional.ctc import ctc_generic, from_loglik, loglik

__all__ = ["categorical", "ctc", "sparse"]


@functools.partial(jax.jit, static_argnums=2)
def _sparse_from_logits(labels, x, axis):
    target = jnp.take_along_axis(x, jnp.expand_dims(labels, axis), axis=axis)
    return jax.nn.logsumexp(x, axis=axis) - jnp.squeeze(target, axis)


@functools.partial(jax.jit, static_argnums=2)
def _soft_from_logits(t, x, axis):
    return -jnp.sum(t * jax.nn.log_softmax(x, axis=axis), axis=axis)


def sparse(xp, labels, x, axis, o):
    """``logsumexp(x) - x[y]``; from probabilities, the generic formula."""
    if not o.from_logits:
        return ce.sparse_generic(xp, labels, x, axis, o)
    if C.eager(labels, x):  # JAX clamps an index out of range silently
        C.check_sparse_labels(xp, labels, x.shape[axis], None)
    return _sparse_from_logits(labels, x, axis)


def categorical(xp, t, x, axis, o, name="y_true"):
    """``-sum(t log_softmax(x))``; from probabilities, the generic formula."""
    if not o.from_logits:
        return ce.categorical_generic(xp, t, x, axis, o, name)
    if C.eager(t, x):
        ce.check_soft_labels(xp, t, name)
    return _soft_from_logits(ce.smooth_categorical(t, o.label_smoothing, x.shape[axis]), x, axis)


@functools.partial(jax.jit, static_argnums=4)
def _ctc_loglik(lp, labels, input_lengths, label_lengths, blank):
    return loglik(jnp, lp, labels, input_lengths, label_lengths, blank, jax.lax.scan)


def ctc(xp, targets, lp, axis, o):
    """CTC's recursion with the time loop as a ``jax.lax.scan``, compiled once per shape."""
    if lp.shape[1] == 0:  # no frames: nothing to scan
        return ctc_generic(xp, targets, lp, axis, o)
    ll = _ctc_loglik(lp, targets.labels, targets.input_lengths, targets.label_lengths, o.blank)
    return from_loglik(xp, ll, o.zero_infinity)
