"""Float64 NumPy reference formulas, written from the math (not from probloss's code).

They follow the Keras 3 definitions in shared/reference/keras_semantics.md: clip to
[eps, 1 - eps], renormalise categorical probabilities, mean over the last axis for the
binary losses and Poisson, sum for the categorical ones and KL.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7
UPPER = float(np.float32(1 - 1e-7))


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def log_softmax(x, axis=-1):
    x = _f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-_f64(x)))


def bce(t, p, from_logits=False, label_smoothing=0.0, axis=-1, upper=UPPER):
    t, p = _f64(t), _f64(p)
    t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        # log(sigmoid(x)) = -log(1 + exp(-x)), via logaddexp for stability
        e = t * np.logaddexp(0, -p) + (1 - t) * np.logaddexp(0, p)
    else:
        p = np.clip(p, EPS, upper)
        e = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    return e.mean(axis=axis)


def bfce(t, p, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    t, p = _f64(t), _f64(p)
    t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        p = sigmoid(p)
    pc = np.clip(p, EPS, UPPER)
    ce = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    pt = t * p + (1 - t) * (1 - p)
    f = (1 - pt) ** gamma * ce
    if apply_class_balancing:
        f = (t * alpha + (1 - t) * (1 - alpha)) * f
    return f.mean(axis=axis)


def cce(t, p, from_logits=False, label_smoothing=0.0, axis=-1):
    t, p = _f64(t), _f64(p)
    k = p.shape[axis]
    t = t * (1 - label_smoothing) + label_smoothing / k
    if from_logits:
        logq = log_softmax(p, axis)
    else:
        logq = np.log(np.clip(p / p.sum(axis=axis, keepdims=True), EPS, UPPER))
    return -(t * logq).sum(axis=axis)


def cfce(t, p, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    t, p = _f64(t), _f64(p)
    k = p.shape[axis]
    t = t * (1 - label_smoothing) + label_smoothing / k
    if from_logits:
        p = np.exp(log_softmax(p, axis))
    q = np.clip(p / p.sum(axis=axis, keepdims=True), EPS, UPPER)
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape((k,) + (1,) * (p.ndim - 1 - (axis % p.ndim)))
    return (a * (1 - q) ** gamma * (-t * np.log(q))).sum(axis=axis)


def one_hot(labels, k, axis=-1):
    labels = np.asarray(labels)
    out = (labels[..., None] == np.arange(k)).astype(np.float64)
    return np.moveaxis(out, -1, axis)


def scce(y, p, from_logits=False, ignore_class=None, axis=-1):
    y = np.asarray(y)
    p = _f64(p)
    axis = axis % p.ndim
    if y.ndim == p.ndim:
        y = np.squeeze(y, axis=axis)
    valid = np.ones(y.shape, bool) if ignore_class is None else y != ignore_class
    y = np.where(valid, y, 0).astype(np.int64)
    out = cce(one_hot(y, p.shape[axis], axis), p, from_logits=from_logits, axis=axis)
    return np.where(valid, out, 0.0), valid


def poisson(t, p):
    t, p = _f64(t), _f64(p)
    return (p - t * np.log(p + EPS)).mean(axis=-1)


def kld(t, p):
    t, p = np.clip(_f64(t), EPS, 1), np.clip(_f64(p), EPS, 1)
    return (t * np.log(t / p)).sum(axis=-1)


def reduce(values, reduction="sum_over_batch_size", sample_weight=None, mask=None):
    """Keras 3's reduction (keras_semantics.md §2.1), float64."""
    v = _f64(values)
    w = None
    if mask is not None:
        m = np.asarray(mask, dtype=np.float64)
        if reduction in ("sum_over_batch_size", "mean"):
            n = m.sum()
            m = m * (m.size / n) if n else m * 0
        w = m
    if sample_weight is not None:
        sw = _f64(sample_weight)
        if w is None:
            w = sw
        else:
            w, sw = _align(w, sw)
            w = w * sw
    if w is not None:
        v, w = _align(v, w)
        v = v * w
    if reduction in (None, "none") or v.shape in ((), (0,)):
        return v
    s = v.sum()
    if reduction == "sum":
        return s
    d = w.sum() if (reduction == "mean_with_sample_weight" and w is not None) else v.size
    return s / d if d else 0.0


def _align(a, b):
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        return (a, b[..., None]) if b.ndim == 1 else (a[..., 0], b)
    if b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        return (a[..., None], b) if a.ndim == 1 else (a, b[..., 0])
    return a, b


def weighted_xent(z, x, pos_weight=1.0):
    """``tf.nn.weighted_cross_entropy_with_logits``: ``-q z log σ(x) - (1 - z) log(1 - σ(x))``."""
    z, x = _f64(z), _f64(x)
    return pos_weight * z * np.logaddexp(0, -x) + (1 - z) * np.logaddexp(0, x)


# Float64 references and random data shared by the backend tests


def lse64(x, axis):
    """Log-sum-exp along ``axis`` in float64."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def sparse64(x, y, axis):
    """Sparse softmax cross-entropy from logits, in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    tgt = np.squeeze(np.take_along_axis(x64, np.expand_dims(y, axis), axis=axis), axis)
    return lse64(x64, axis) - tgt


def soft64(x, t, axis):
    """Soft-target softmax cross-entropy from logits, in float64."""
    x64, t64 = np.asarray(x, dtype=np.float64), np.asarray(t, dtype=np.float64)
    return np.sum(t64 * (np.expand_dims(lse64(x64, axis), axis) - x64), axis=axis)


def data(shape, axis, seed=0, scale=3.0):
    """Logits ``x``, class indices ``y`` and soft targets ``t`` for a class axis ``axis``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    k = shape[axis]
    lshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    y = rng.integers(0, k, lshape)
    t = rng.random(shape) ** 3
    t = t / t.sum(axis=axis, keepdims=True)
    return x, y, t
