"""NumPy implementations: row chunks for the softmax cross-entropies, compiled loops for the rest.

* Sparse cross-entropy from logits on a small 2-D array: the formula on the whole array
  (transposed below 48 classes), with the fewest NumPy calls; a training step's batch
  pays little more than the plain formula.
* Softmax cross-entropy from logits (sparse, and soft targets of any size): the rows are
  taken a chunk at a time (about 64k elements), so the ``exp`` temporaries stay in cache
  and no ``N x K`` temporary is allocated; below 48 classes each chunk is reduced as a
  transposed copy, since NumPy reduces a short last axis slowly.
* Big C-contiguous float32 arrays with numba installed (:mod:`probloss._backends.numba`):
  binary cross-entropy, KL divergence, Poisson and categorical cross-entropy in one
  compiled pass that also tests the inputs' ranges.  Below :data:`NUMBA_MIN_ELEMENTS`
  calling into numba costs more than it saves, and the generic formula runs.

Each function has the dispatch signature ``(xp, y_true, y_pred, axis, options)`` and runs
the value checks of its loss.
"""

from __future__ import annotations

import importlib.util
import math
import warnings

import numpy as np

from .. import _checks as C
from .._errors import ProblossWarning
from ..functional import _logits as L
from ..functional import crossentropy as ce
from ..functional import divergence
from ..functional.poisson import COUNTS_HINT, RATES_HINT, poisson_generic

__all__ = ["binary", "categorical", "kl_divergence", "poisson", "sparse"]

NUMBA_MIN_ELEMENTS = 1 << 16
"""Arrays smaller than this take the NumPy code (a numba call costs about 20 us)."""

_CHUNK_ELEMS = 1 << 16  # elements per row chunk of the softmax cross-entropy
_FEW_CLASSES = 48  # below this, NumPy reduces rows slowly: reduce a transposed copy instead

_numba = None  # the kernels module once imported, False when numba is missing or broken


def _kernels():
    """:mod:`probloss._backends.numba`, or ``None`` when numba is not usable.

    A numba that is installed but fails to import (say, built for another NumPy) or whose
    JIT is switched off (``NUMBA_DISABLE_JIT=1``, its debugging switch, under which the
    kernels' low-level intrinsics cannot run) gives one warning, and the generic formula
    serves: same numbers, slower.
    """
    global _numba
    if _numba is None:
        loaded = False  # kept in a local: an interrupt while loading leaves _numba unset
        if importlib.util.find_spec("numba") is not None:
            try:
                from . import numba as kernels

                kernels.load_kernels()
                loaded = kernels
            except Exception as exc:  # noqa: BLE001 - any failure means: use the generic code
                warnings.warn(
                    f"probloss: numba is installed but its kernels could not be loaded ({exc!r:.200}); "
                    "big arrays take the slower generic code.",
                    ProblossWarning,
                    stacklevel=4,
                )
        _numba = loaded
    return _numba or None


def _rows2d(t, p, axis):
    """``(t, p)`` as 2-D C-contiguous float32 views for the compiled loops, or ``None``."""
    if axis != p.ndim - 1 or p.dtype != np.float32 or t.dtype != np.float32 or p.size < NUMBA_MIN_ELEMENTS:
        return None
    if not (p.flags.c_contiguous and t.flags.c_contiguous) or t.shape != p.shape:
        return None
    if _kernels() is None:
        return None
    k = p.shape[-1]
    return t.reshape(-1, k), p.reshape(-1, k)


def _range_check(xp, x, bits, name, hi, why):
    """Run the exact check (which names the element) only when the kernel's bits failed."""
    if not _numba.within(bits, hi):
        C.check_range(xp, x, name, 0.0, hi, why=why)


def _row_loss(kind, t2, p2, eps, check, shape, *, mean):
    lo, hi = np.float32(eps), np.float32(1.0 - eps)  # float32 bounds, as torch and Keras clip with
    out = np.empty(p2.shape[0], np.float64)
    t_bits, p_bits = _numba.KERNELS[kind](t2, p2, lo, hi, check, out)
    if mean:
        out /= p2.shape[1]
    return out.astype(np.float32).reshape(shape), int(t_bits), int(p_bits)


# ----------------------------------------------------------------------------- binary


def binary(xp, t, p, axis, o):
    """Binary cross-entropy: one compiled pass over big float32 arrays (checks included);
    with ``pos_weight``, the generic formula."""
    views = None if o.pos_weight is not None else _rows2d(t, p, axis)
    if views is None:
        return ce.binary_generic(xp, t, p, axis, o)
    check = C.eager(t, p)
    if o.label_smoothing:  # smoothing can move a bad target into [0, 1]: check it first
        if check:
            C.check_binary_targets(xp, t)
        views = (np.ascontiguousarray(ce.smooth_binary(views[0], o.label_smoothing), dtype=np.float32), views[1])
    kind = "binary_logits" if o.from_logits else "binary"
    values, t_bits, p_bits = _row_loss(kind, *views, o.epsilon, check, p.shape[:-1], mean=True)
    if check:
        _range_check(xp, t, t_bits, "y_true", 1.0, C.BINARY_TARGETS_HINT)
        if not o.from_logits:
            _range_check(xp, p, p_bits, "y_pred", 1.0, C.LOGITS_HINT)
    return values


def kl_divergence(xp, t, p, axis, o):
    """KL divergence: one compiled pass over big float32 arrays (checks included)."""
    views = _rows2d(t, p, axis)
    if views is None:
        return divergence.kl_generic(xp, t, p, axis, o)
    check = C.eager(t, p)
    values, t_bits, p_bits = _row_loss("kl", *views, o.epsilon, check, p.shape[:-1], mean=False)
    if check:
        _range_check(xp, t, t_bits, "y_true", 1.0, divergence.KL_HINT)
        _range_check(xp, p, p_bits, "y_pred", 1.0, divergence.KL_HINT)
    return values


def poisson(xp, t, p, axis, o):
    """Poisson: one compiled pass over big float32 arrays (checks included)."""
    views = _rows2d(t, p, axis)
    if views is None:
        return poisson_generic(xp, t, p, axis, o)
    check = C.eager(t, p)
    values, t_bits, p_bits = _row_loss("poisson", *views, o.epsilon, check, p.shape[:-1], mean=True)
    if check:
        _range_check(xp, t, t_bits, "y_true", None, COUNTS_HINT)
        _range_check(xp, p, p_bits, "y_pred", None, RATES_HINT)
    return values


# ------------------------------------------------------------------------ categorical


# NaN and inf inputs are reported by the loss's result check, which names the element;
# NumPy's own floating-point warnings about them would only repeat it, less clearly.
_QUIET = np.errstate(invalid="ignore", over="ignore", divide="ignore")


@_QUIET
def categorical(xp, t, p, axis, o, name="y_true"):
    """Categorical cross-entropy: compiled for big float32 arrays, else chunked (logits).

    Label smoothing (from logits: over the classes whose logit is not -inf) and class
    weights are folded into the targets first, ``u = w q``; the loops compute
    ``sum_c u_c (lse - x_c)`` with ``0 * inf = 0``.
    """
    check = C.eager(t, p)
    folded = bool(o.label_smoothing) or o.class_weight is not None
    if folded:  # smoothing can move a bad label into [0, inf), a weight of 0 hide it: check it first
        if check:
            ce.check_soft_labels(xp, t, name)
        if o.from_logits:
            t = L.smooth_allowed(np, t, p, axis, o.label_smoothing)
        else:
            t = ce.smooth_categorical(t, o.label_smoothing, p.shape[axis])
        if o.class_weight is not None:
            t = t * L.class_weights(np, o.class_weight, p, axis)
    views = _rows2d(t, p, axis)
    if views is None:
        if not o.from_logits:
            return ce.categorical_generic(xp, t, p, axis, o._replace(label_smoothing=0.0, class_weight=None), name)
        if check and not folded:
            ce.check_soft_labels(xp, t, name)
        return _chunked_soft(t, p, axis)
    shape = p.shape[:-1]
    t2, p2 = views
    if o.from_logits:
        loss, t_sum = np.empty(p2.shape[0], np.float64), np.empty(p2.shape[0], np.float64)
        t_bits = _numba.soft_ce_rows(t2, p2, check, loss, t_sum)
    else:
        lo, hi = np.float32(o.epsilon), np.float32(1.0 - o.epsilon)
        loss, sums = np.empty(p2.shape[0], np.float64), np.empty(p2.shape[0], np.float64)
        t_bits, p_bits = _numba.cat_probs_rows(t2, p2, lo, hi, check, loss, sums)
    if check:
        if not folded:
            _range_check(xp, t, int(t_bits), name, None, "labels are probabilities and cannot be negative.")
        if not o.from_logits:
            _range_check(xp, p, int(p_bits), "y_pred", 1.0, C.LOGITS_HINT)
            if p.shape[axis] > 1:
                C.warn_unnormalized(xp, np.expand_dims(sums.reshape(shape), -1), axis)
    return loss.astype(np.float32).reshape(shape)


def _chunked_soft(t, x, axis):
    x3, t3, shape = _as_rows(x, axis), _as_rows(t, axis), x.shape[:axis] + x.shape[axis + 1 :]
    if x3.ndim == 2 and x3.shape[1] < _FEW_CLASSES:
        return _soft_few(x3, t3).reshape(shape)
    rows = _chunk_rows(x3)
    out = np.empty((x3.shape[0],) + x3.shape[2:], dtype=x3.dtype)
    scratch = np.empty((min(rows, x3.shape[0]),) + x3.shape[1:], dtype=x3.dtype)
    for s in range(0, x3.shape[0], rows):
        xc, tc = x3[s : s + rows], t3[s : s + rows]
        buf = scratch[: xc.shape[0]]
        lse = np.expand_dims(_lse_chunk(xc, buf), 1)
        # sum_c t_c (lse - x_c), elementwise first: the precision of a log-softmax.
        np.subtract(lse, xc, out=buf)
        np.multiply(buf, tc, out=buf)
        out[s : s + rows] = np.sum(buf, axis=1)
        if np.isnan(out[s : s + rows]).any():  # a -inf logit without target weight: 0 * inf counts as 0
            out[s : s + rows] = np.sum(_masked_product(lse - xc, tc), axis=1)
    return out.reshape(shape)


def _masked_product(nlp, t):
    """``t * nlp`` with 0 where ``t`` is 0 (``nlp = lse - x`` is +inf for a ruled-out class)."""
    return np.where(t == 0, np.zeros((), nlp.dtype), nlp * t)


def _soft_few(x, t):
    """``sum_c t_c (lse - x_c)`` for ``(N, K)`` arrays with few classes, by chunks of rows
    transposed (see :func:`_lse_few`)."""
    out = np.empty(x.shape[0], dtype=x.dtype)
    rows = _chunk_rows(x)
    for s in range(0, x.shape[0], rows):
        xt = x[s : s + rows].T.copy()  # (a copy even when the view is contiguous: it is overwritten)
        lse = _lse_few(xt, np.empty_like(xt))
        nlp = np.subtract(lse, xt, out=xt)  # lse - x_c, elementwise first: the precision of a log-softmax
        tt = np.ascontiguousarray(t[s : s + rows].T)
        acc = np.add.reduce(nlp * tt, axis=0)
        if np.isnan(acc).any():  # a -inf logit without target weight: 0 * inf counts as 0
            acc = np.add.reduce(_masked_product(nlp, tt), axis=0)
        out[s : s + rows] = acc
    return out


# ---------------------------------------------------------------------------- sparse


def sparse(xp, labels, p, axis, o):
    """Sparse cross-entropy: from logits, the formula itself on small 2-D arrays and row
    chunks on the others; from probabilities, compiled row sums.

    Class weights and the label-smoothing term (over the classes whose logit is not
    -inf) are added to the negative log-likelihood by the generic formulas.
    """
    if not o.from_logits:
        return _sparse_probs(xp, labels, p, axis, o)
    if p.ndim == 2 and axis == 1 and p.size <= _CHUNK_ELEMS:
        nll = _sparse_nll_small(xp, labels, p)
    else:
        nll = _sparse_nll_checked(xp, labels, p, axis)
    if o.class_weight is None and not o.label_smoothing:
        return nll
    return _weigh_and_smooth(nll, labels, p, axis, o)


@_QUIET
def _weigh_and_smooth(nll, labels, p, axis, o):
    if o.class_weight is not None:
        w = L.class_weights(np, o.class_weight, p)
        nll = nll * w[labels]
    if o.label_smoothing:
        w = None if o.class_weight is None else L.class_weights(np, o.class_weight, p, axis)
        nll = (1.0 - o.label_smoothing) * nll + o.label_smoothing * L.smoothing_term(np, p, axis, w)
    return nll


def _check_labels(xp, labels, num_classes):
    if C.eager(labels) and labels.size and not _labels_in_range(labels, num_classes):
        C.check_sparse_labels(xp, labels, num_classes, None)


def _labels_in_range(labels, num_classes) -> bool:
    """Every label in ``[0, num_classes)``, by one reduction: seen as unsigned, a negative
    label is a huge number (NumPy would wrap a negative index silently)."""
    unsigned = labels.astype(np.intp, copy=False).view(np.uintp)
    return bool(np.maximum.reduce(unsigned, axis=None) < num_classes)


_ROWS = np.arange(1024)  # row indices for the gather below, grown on demand


def _sparse_nll_small(xp, labels, x):
    """``lse(x) - x[y]`` for a small ``(N, K)`` array: the formula on the whole array.

    With fewer than 48 classes it runs on a transposed copy, class axis first: NumPy
    reduces a short last axis several times slower than a long one (1024 x 10: 4x).  The
    shift is ``fmax`` (NaN-ignoring, faster than ``max``): a NaN still reaches the loss
    through ``exp``, quietly, for the result check to report.  With every shift finite,
    nothing here can warn (a ruled-out label's ``-inf`` logit gives ``+inf``, the loss);
    ``+inf`` or a row of ``-inf`` only go to the chunked code, which handles them.

    The labels are tested always (:func:`_labels_in_range`, one reduction): that costs
    less than asking whether checks are on, and NumPy would wrap a negative index silently.
    """
    # (ufunc reductions called directly: the array methods add a Python call each)
    global _ROWS
    n, k = x.shape
    axis = 0 if k < _FEW_CLASSES else 1
    xs = np.ascontiguousarray(x.T) if axis == 0 else x
    m = np.fmax.reduce(xs, axis=axis, keepdims=True)
    if not np.logical_and.reduce(np.isfinite(m), axis=None):
        return _sparse_nll_checked(xp, labels, x, 1)
    if not _labels_in_range(labels, k):
        C.check_sparse_labels(xp, labels, k, None)
    e = xs - m
    np.exp(e, out=e)
    lse = np.log(np.add.reduce(e, axis=axis))
    lse += m.reshape(n)
    if n > _ROWS.shape[0]:
        _ROWS = np.arange(max(n, 2 * _ROWS.shape[0]))
    return lse - x[_ROWS[:n], labels]


@_QUIET
def _sparse_nll_checked(xp, labels, p, axis):
    _check_labels(xp, labels, p.shape[axis])
    nll = _sparse_nll(labels, p, axis)
    if np.isnan(nll).any():  # a row of -inf logits only (its loss is +inf), or NaN input
        nll = L.sparse_logits(np, labels, p, axis)
    return nll


def _sparse_nll(labels, p, axis):
    """``lse(x) - x[y]`` from logits, chunked."""
    if p.size <= _CHUNK_ELEMS:  # one chunk: the formula itself, with no loop around it
        # (a row whose max is not finite gives NaN, which the caller handles)
        m = p.max(axis=axis, keepdims=True)
        lse = np.log(np.exp(p - m).sum(axis=axis, keepdims=True)) + m
        target = np.take_along_axis(p, np.expand_dims(labels, axis), axis=axis)
        return (lse - target).squeeze(axis)
    x3 = _as_rows(p, axis)
    y = labels.reshape(x3.shape[:1] + x3.shape[2:]).astype(np.intp, copy=False)
    if x3.ndim == 2 and x3.shape[1] < _FEW_CLASSES:
        return _sparse_few(x3, y).reshape(labels.shape)
    rows = _chunk_rows(x3)
    out = np.empty((x3.shape[0],) + x3.shape[2:], dtype=x3.dtype)
    scratch = np.empty((min(rows, x3.shape[0]),) + x3.shape[1:], dtype=x3.dtype)
    idx = np.expand_dims(y, 1)
    for s in range(0, x3.shape[0], rows):
        xc = x3[s : s + rows]
        lse = _lse_chunk(xc, scratch[: xc.shape[0]])
        out[s : s + rows] = lse - np.squeeze(np.take_along_axis(xc, idx[s : s + rows], axis=1), axis=1)
    return out.reshape(labels.shape)


@_QUIET
def _sparse_probs(xp, labels, p, axis, o):
    """Keras's ``-log(clip(p[y] / sum(p)))``; big float32 arrays get sums and checks in one pass
    (with label smoothing or class weights, the generic formula)."""
    _check_labels(xp, labels, p.shape[axis])
    views = None if o.label_smoothing or o.class_weight is not None else _rows2d(p, p, axis)
    if views is None:
        return ce.sparse_generic(xp, labels, p, axis, o)
    sums = np.empty(views[1].shape[0], np.float64)
    bits = _numba.row_sums_bits(views[1], sums)
    sums = sums.astype(np.float32).reshape(labels.shape)
    if C.eager(p):
        _range_check(xp, p, int(bits), "y_pred", 1.0, C.LOGITS_HINT)
        if p.shape[axis] > 1:
            C.warn_unnormalized(xp, np.expand_dims(sums, -1), axis)
    q = np.squeeze(np.take_along_axis(p, np.expand_dims(labels, axis).astype(np.intp, copy=False), axis=axis), axis)
    return -np.log(np.clip(q / sums, np.float32(o.epsilon), np.float32(1.0 - o.epsilon)))


def _sparse_few(x, y):
    """``lse(x) - x[y]`` for an ``(N, K)`` array with few classes, by chunks of rows
    transposed (see :func:`_lse_few`); ``y`` holds valid indices."""
    out = np.empty(x.shape[0], dtype=x.dtype)
    rows = _chunk_rows(x)
    for s in range(0, x.shape[0], rows):
        xc = x[s : s + rows]
        xt = xc.T.copy()  # (a copy even when the view is contiguous: it is overwritten)
        tgt = np.take_along_axis(xc, np.expand_dims(y[s : s + rows], 1), axis=1)
        out[s : s + rows] = _lse_few(xt, xt) - tgt[:, 0]
    return out


# --------------------------------------------------------------------------- helpers


def _as_rows(x, axis):
    """``x`` as ``(A, K)`` when the class axis is last, else ``(A, K, B)`` (a view)."""
    a, k, b = math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1 :])
    return np.reshape(x, (a, k) if b == 1 else (a, k, b))


def _chunk_rows(x) -> int:
    return max(1, _CHUNK_ELEMS // max(1, math.prod(x.shape[1:])))


def _lse_chunk(xc, buf):
    """Log-sum-exp over axis 1 of the chunk ``xc``, using ``buf`` (same shape) as scratch."""
    m = np.max(xc, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    np.subtract(xc, m, out=buf)
    np.exp(buf, out=buf)
    return np.log(np.sum(buf, axis=1)) + np.squeeze(m, axis=1)


def _lse_few(xt, buf):
    """Log-sum-exp over axis 0 of ``xt``, a ``(K, R)`` chunk with the class axis first,
    using ``buf`` (same shape, may be ``xt`` itself) as scratch.

    NumPy reduces a short contiguous axis slowly (per-row overhead) and a long one fast:
    with the few classes first, each reduction runs over ``R`` contiguous values.  At
    (1024, 10) that is about 2x faster than ``K`` vector operations over columns, 4x
    faster than reducing the rows.
    """
    m = np.maximum.reduce(xt, axis=0)
    m = np.where(np.isfinite(m), m, 0).astype(xt.dtype, copy=False)
    np.subtract(xt, m, out=buf)
    np.exp(buf, out=buf)
    return np.log(np.add.reduce(buf, axis=0)) + m
