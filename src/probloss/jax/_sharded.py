"""Vocabulary-parallel cross-entropy for ``jax.shard_map``: the caller owns the collectives.

Inside ``shard_map`` each device holds the logits of a contiguous slice of the classes
(``V_r = V / P`` of them, device ``i`` holding ``[i V_r, (i + 1) V_r)`` along the mesh
axis ``axis_name``).  The row statistics are assembled with the mesh axis's collectives::

    m   = pmax(max_c z_c)                                  (no gradient flows through it)
    S, T = psum(sum_c exp(z_c - m), sum_c t'_c z_c)        one all-reduce of two N-vectors
    loss = T' (m + log S) - T                              T' = sum_c t'_c (1 for labels)

``jax.grad`` differentiates the ``psum``: under ``shard_map`` its transpose moves nothing,
so the backward pass of the logits is local.  A vocabulary padded to a multiple of the
mesh size is handled by ``vocab_size``: the classes at or past it are left out.

Under plain ``jax.jit`` with logits sharded by a ``NamedSharding`` on the class axis, the
ordinary probloss losses already partition this way (``docs/distributed.md``); this
module is for code that writes its own ``shard_map``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from .. import _checks as C
from .._errors import ArgumentError, ProblossTypeError, ShapeError
from . import _linear as L

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

_REDUCTIONS = ("none", "sum", "mean")


def _fail(cls, fn, msg):
    raise cls(f"{fn}: {msg}")


def _shard(fn, axis_name, local_size, vocab_size):
    """``(start, V, real)``: this device's first class, the vocabulary, and a mask of its
    classes below ``vocab_size`` (None when nothing is padding)."""
    world = jax.lax.axis_size(axis_name)
    padded = world * local_size
    if vocab_size is None:
        vocab_size = padded
    elif isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not padded - local_size < vocab_size <= padded:
        _fail(ArgumentError, fn, f"`vocab_size` must be an integer in ({padded - local_size}, {padded}]: the classes left "
                                 f"after padding {padded} = {world} x {local_size} (the last device keeps at least one "
                                 f"class); got {vocab_size!r}.")
    start = jax.lax.axis_index(axis_name) * local_size
    real = None if vocab_size == padded else (start + jnp.arange(local_size)) < vocab_size
    return start, vocab_size, real


def _row_stats(z, axis_name, real):
    """``(m, exp(z - m))`` with ``m`` the global row maximum (padded classes left out)."""
    zm = z if real is None else jnp.where(real, z, -jnp.inf)
    m = jax.lax.pmax(jax.lax.stop_gradient(jnp.max(zm, axis=-1)), axis_name)
    m = jnp.where(jnp.isfinite(m), m, 0.0)  # a row of -inf gives lse = -inf, not NaN
    return m, jnp.exp(zm - m[..., None])


def _real_sum(x, real):
    return jnp.sum(x if real is None else jnp.where(real, x, 0.0), axis=-1)


def vocab_parallel_cross_entropy(
    logits,
    labels,
    *,
    axis_name,
    from_logits: bool = True,
    label_smoothing: float = 0.0,
    ignore_class: int | None = None,
    epsilon: float = 1e-7,
    reduction: str = "none",
    vocab_size: int | None = None,
):
    """Cross-entropy of class-sharded predictions, inside ``jax.shard_map``.

    ``logits`` is this device's slice of the classes (last axis, ``V_r``); ``labels`` are
    integer class indices of the whole vocabulary (``logits``' shape without the last axis,
    the same on every device of ``axis_name``: sparse categorical cross-entropy), or this
    device's slice of one-hot or soft labels (``logits``' shape: categorical).  The result
    equals :func:`probloss.sparse_categorical_crossentropy` /
    :func:`probloss.categorical_crossentropy` of the whole arrays, with Keras's label
    smoothing ``t' = (1 - a) t + a / V`` for both::

        from logits:        sum_c t'_c (lse - z_c)
        from probabilities: -sum_c t'_c log clip(p_c / sum p, eps, 1 - eps)

    Communication: from logits a ``pmax`` and one ``psum`` of two N-vectors (three for
    dense labels); from probabilities a ``psum`` of the row sums, then one of the loss
    terms.  The backward pass of the logits is local.

    Parameters
    ----------
    logits : array (..., V_r)
        Logits (or probabilities with ``from_logits=False``) of this device's classes.
    labels : int array (...) or float array (..., V_r)
    axis_name : hashable
        The mesh axis the classes are split over.
    from_logits : bool, default True
    label_smoothing : float in [0, 1], default 0
    ignore_class : int, optional
        Integer labels equal to it get loss 0 and are left out of ``"mean"``.
    epsilon : float, default 1e-7
        Keras's clip of probabilities.
    reduction : {"none", "sum", "mean"}, default "none"
        Over this call's tokens; ``"mean"`` divides by the valid ones (0 if none).
    vocab_size : int, optional
        The real vocabulary when it was padded to ``P x V_r`` classes (the classes from
        ``vocab_size`` on are left out).  Default: ``P x V_r``.

    Returns
    -------
    array
        Per-token losses (``labels``' shape without a class axis), or a scalar; float32
        (float64 for float64 inputs), the same on every device of ``axis_name``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jax.sharding import Mesh, PartitionSpec as P
    >>> import probloss
    >>> from probloss.jax import vocab_parallel_cross_entropy
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("vocab",))
    >>> logits, labels = jnp.array([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]]), jnp.array([0, 2])
    >>> f = jax.shard_map(lambda z, y: vocab_parallel_cross_entropy(z, y, axis_name="vocab"),
    ...                   mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P())
    >>> bool(jnp.allclose(f(logits, labels), probloss.sparse_categorical_crossentropy(labels, logits, from_logits=True)))
    True
    """
    fn = "vocab_parallel_cross_entropy"
    for name, arr in (("logits", logits), ("labels", labels)):
        if not L._is_array(arr):
            _fail(ProblossTypeError, fn, f"`{name}` must be a JAX array; got {type(arr).__name__}.")
    if not jnp.issubdtype(logits.dtype, jnp.floating) or logits.ndim < 1:
        _fail(ProblossTypeError, fn, f"`logits` must be a floating array with the classes last; got {logits.dtype}, {logits.ndim}-d.")
    a = C.check_float_in("label_smoothing", label_smoothing, 0.0, 1.0)
    eps = C.check_epsilon(epsilon)
    C.check_bool("from_logits", from_logits)
    ignore_class = C.check_ignore_class(ignore_class)
    if reduction not in _REDUCTIONS:
        _fail(ArgumentError, fn, f"`reduction` must be one of 'none', 'sum', 'mean'; got {reduction!r}.")
    st = jnp.float64 if logits.dtype == jnp.float64 else jnp.float32
    z = logits.astype(st)
    vr = z.shape[-1]
    start, vocab, real = _shard(fn, axis_name, vr, vocab_size)
    dense = tuple(labels.shape) == tuple(logits.shape)
    valid = None
    if dense:
        if not jnp.issubdtype(labels.dtype, jnp.floating):
            _fail(ProblossTypeError, fn, f"`labels` of `logits`' shape are one-hot or soft labels and must be floating; got {labels.dtype}.")
        t = labels.astype(st) * (1.0 - a) + a / vocab
        if real is not None:
            t = jnp.where(real, t, 0.0)
    else:
        if tuple(labels.shape) != tuple(logits.shape[:-1]):
            _fail(ShapeError, fn, f"`labels` must be class indices of shape {tuple(logits.shape[:-1])} (`logits` without its "
                                  f"class axis) or soft labels of shape {tuple(logits.shape)}; got {tuple(labels.shape)}.")
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            _fail(ProblossTypeError, fn, f"`labels` must hold integer class indices; got {labels.dtype}.")
        y = labels
        if ignore_class is not None:
            valid = y != ignore_class
            y = jnp.where(valid, y, 0)
        y_loc = y - start
        hit = (y_loc >= 0) & (y_loc < vr)
        y_loc = jnp.clip(y_loc, 0, vr - 1)
    if from_logits:
        m, e = _row_stats(z, axis_name, real)
        if dense:
            total, tz, tsum = jax.lax.psum((jnp.sum(e, -1), jnp.sum(t * z, -1), jnp.sum(t, -1)), axis_name)
        else:
            zy = jnp.where(hit, jnp.take_along_axis(z, y_loc[..., None], axis=-1)[..., 0], 0.0)
            tz = (1.0 - a) * zy + (a / vocab) * _real_sum(z, real) if a else zy
            total, tz = jax.lax.psum((jnp.sum(e, -1), tz), axis_name)
            tsum = 1.0
        loss = tsum * (m + jnp.log(total)) - tz
    else:
        row = jax.lax.psum(_real_sum(z, real), axis_name)
        logq = jnp.log(jnp.clip(z / row[..., None], eps, 1.0 - eps))
        if dense:
            loss = -jax.lax.psum(jnp.sum(t * logq, -1), axis_name)
        else:
            terms = (1.0 - a) * jnp.where(hit, jnp.take_along_axis(logq, y_loc[..., None], axis=-1)[..., 0], 0.0)
            if a:
                terms = terms + (a / vocab) * _real_sum(logq, real)
            loss = -jax.lax.psum(terms, axis_name)
    if valid is not None:
        loss = jnp.where(valid, loss, 0.0)
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        count = loss.size if valid is None else jnp.sum(valid)
        return jnp.sum(loss) / jnp.maximum(count, 1)
    return loss


# ---------------------------------------------------------------------- the fused one

_SAVED = jax.checkpoint_policies.save_only_these_names("vocab_parallel_max", "vocab_parallel_sums")


def _chunk_loss(cfg, axis_name, vocab, start, real, w, b, inp):
    """Per-token loss of one chunk: ``(a + beta V) lse - T + gam lse^2``."""
    xc, yc, ac, bc, gc = inp
    st = L._stat(xc.dtype)
    z = L._logits(cfg, xc, w, b, st)
    vr = z.shape[-1]
    zm = z if real is None else jnp.where(real, z, -jnp.inf)
    m = jax.lax.pmax(jax.lax.stop_gradient(jnp.max(zm, axis=-1)), axis_name)
    m = checkpoint_name(jnp.where(jnp.isfinite(m), m, 0.0), "vocab_parallel_max")
    y_loc = yc - start
    hit = (y_loc >= 0) & (y_loc < vr)
    zy = jnp.where(hit, jnp.take_along_axis(z, jnp.clip(y_loc, 0, vr - 1)[:, None], axis=1)[:, 0], 0.0)
    t = ac * zy
    if cfg.smooth:
        t = t + bc * _real_sum(z, real)
    total, t = jax.lax.psum((jnp.sum(jnp.exp(zm - m[:, None]), -1), t), axis_name)
    total, t = checkpoint_name((total, t), "vocab_parallel_sums")
    lse = m + jnp.log(total)
    loss = (ac + bc * vocab) * lse - t if cfg.smooth else ac * lse - t
    if cfg.zloss:
        loss = loss + gc * lse * lse
    return loss


def vocab_parallel_linear_cross_entropy(
    hidden,
    weight,
    labels,
    bias=None,
    *,
    axis_name,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    vocab_size: int | None = None,
):
    """:func:`probloss.jax.linear_cross_entropy` with the classifier's rows split over a mesh
    axis, inside ``jax.shard_map``.

    ``hidden`` (``N x D``, any leading shape) and ``labels`` are the same on every device
    of ``axis_name``; ``weight`` (``V_r x D``) and ``bias`` (``V_r``) are this device's
    rows.  Chunks of tokens run in a ``lax.scan``: per chunk the device's ``c x V_r``
    logits, a ``pmax`` of ``c`` floats and a ``psum`` of ``2c``, and the loss::

        l_n = (1 - e)(lse - z_y) + (e / V) sum_c (lse - z_c) + z_loss lse^2

    Each chunk is rematerialised in the backward pass with the collectives' results
    kept (``jax.checkpoint`` saving only them), so no more than one chunk of logits
    exists and the backward sends only the hidden gradient's ``psum`` (``N x D``), which
    JAX adds because ``hidden`` is replicated over ``axis_name``.  Four matrix products
    per chunk (the logits twice, ``G W`` and ``G^T X``).

    ``reduction`` is ``"mean"`` (over the non-ignored tokens; 0 when none), ``"sum"`` or
    ``"none"``; ``vocab_size`` as in :func:`vocab_parallel_cross_entropy`.  The result is
    float32 (float64 for float64 inputs).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jax.sharding import Mesh, PartitionSpec as P
    >>> from probloss.jax import linear_cross_entropy, vocab_parallel_linear_cross_entropy
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("vocab",))
    >>> x, w = jax.random.normal(jax.random.key(0), (6, 4)), jax.random.normal(jax.random.key(1), (10, 4))
    >>> y = jnp.array([1, 9, 3, -100, 0, 4])
    >>> f = jax.shard_map(lambda x, w, y: vocab_parallel_linear_cross_entropy(x, w, y, axis_name="vocab"),
    ...                   mesh=mesh, in_specs=(P(), P("vocab"), P()), out_specs=P())
    >>> bool(jnp.allclose(f(x, w, y), linear_cross_entropy(x, w, y)))
    True
    """
    fn = "vocab_parallel_linear_cross_entropy"
    x, y, lead, vr, cap = L._validate(fn, hidden, weight, labels, bias, softcap, chunk_size)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        _fail(ArgumentError, fn, f"`ignore_index` must be an integer (default -100); got {ignore_index!r}.")
    if reduction not in _REDUCTIONS:
        _fail(ArgumentError, fn, f"`reduction` must be one of 'mean', 'sum', 'none'; got {reduction!r}.")
    eps = C.check_float_in("label_smoothing", label_smoothing, 0.0, 1.0)
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or not math.isfinite(z_loss) or z_loss < 0:
        _fail(ArgumentError, fn, f"`z_loss` must be a finite number >= 0 (PaLM uses 1e-4); got {z_loss!r}.")
    start, vocab, real = _shard(fn, axis_name, vr, vocab_size)
    n = x.shape[0]
    chunk = chunk_size or L.auto_chunk_rows(n, vr, x.dtype)
    cfg = L._Cfg(cap, min(chunk, max(n, 1)), bias is not None, False, eps > 0, z_loss > 0)
    st = L._stat(x.dtype)
    valid = y != ignore_index
    vf = valid.astype(st)
    a = vf * (1.0 - eps)
    beta = vf * (eps / vocab)
    gam = vf * float(z_loss)
    if reduction == "mean":
        count = jnp.maximum(vf.sum(), 1.0)
        a, beta, gam = a / count, beta / count, gam / count
    b = jnp.zeros((vr,), x.dtype) if bias is None else bias
    xs = L._chunked(cfg, *L._padded(n, cfg.chunk, x, jnp.where(valid, y, 0), a, beta, gam))
    body = jax.checkpoint(functools.partial(_chunk_loss, cfg, axis_name, vocab, start, real), policy=_SAVED)
    _, loss = jax.lax.scan(lambda carry, inp: (carry, body(weight, b, inp)), None, xs)
    loss = loss.reshape(-1)[:n]
    if reduction == "none":
        return jnp.where(valid, loss, 0.0).reshape(lead)
    return jnp.sum(loss)
