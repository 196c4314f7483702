"""Native fast paths for the softmax cross-entropies, per backend.

The generic code in :mod:`probloss.functional` is written with ``xp.*`` calls only.  For
the two hot loops of cross-entropy from logits, per-sample

* sparse:  ``lse(x) - x[y]``            (:func:`sparse_from_logits`)
* soft:    ``sum_c t_c (lse(x) - x_c)`` (:func:`soft_from_logits`)

this module offers a backend-specific kernel with the same value and gradient:

* **torch**: the chunked autograd Functions of :mod:`probloss.torch._kernels`.  They save
  no ``N x K`` tensor of their own for backward (``F.cross_entropy`` saves the whole
  log-softmax) and build the gradient in a single buffer, about half of
  ``F.cross_entropy``'s peak memory.  The same module has chunked kernels for Keras's
  binary cross-entropy, KL divergence and Poisson (:func:`elementwise`).
* **NumPy**: a forward in row chunks, so the ``exp`` temporaries stay in cache and no
  ``N x K`` temporary is allocated.
* **JAX**: XLA already fuses the generic formula into one pass; a ``jax.custom_vjp``
  variant exists (:func:`jax_sparse_ce`) but is only used when :data:`JAX_CUSTOM_VJP` is
  set, because it did not beat the generic path in our benchmarks and it gives up
  forward-mode differentiation (``jax.jvp``, ``jax.hessian``).

Each function returns ``None`` when no fast path applies (another backend, fast paths
switched off), and the caller then runs the generic code.  ``with fast_paths(False):``
forces the generic code, which is how the tests compare both.

Torch and JAX are imported lazily, and only when the input already is one of their
arrays, so ``import probloss`` imports neither.
"""

from __future__ import annotations

import math
import threading

from . import _fused
from ._checks import run_checks
from ._compat import is_jax, is_numpy, is_torch

__all__ = [
    "JAX_CUSTOM_VJP",
    "categorical_from_probs",
    "elementwise",
    "fast_paths",
    "fast_paths_enabled",
    "row_sums_in_range",
    "soft_from_logits",
    "sparse_from_logits",
]

JAX_CUSTOM_VJP = False
"""Use :func:`jax_sparse_ce` / :func:`jax_soft_ce` for JAX inputs (off: see the module doc)."""

_state = threading.local()

# NumPy rows per chunk are chosen so that a chunk holds about this many elements.
_NP_CHUNK_ELEMS = 1 << 16


def fast_paths_enabled() -> bool:
    """Whether the native fast paths are used (default True)."""
    return getattr(_state, "enabled", True)


class fast_paths:  # noqa: N801 - reads as a function
    """Switch the native fast paths on or off for this thread (also a context manager).

    Examples
    --------
    >>> from probloss._fast import fast_paths, fast_paths_enabled
    >>> with fast_paths(False):
    ...     fast_paths_enabled()
    False
    >>> fast_paths_enabled()
    True
    """

    def __init__(self, enabled: bool = True):
        self._previous = fast_paths_enabled()
        _state.enabled = bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False


def _split(shape, axis: int):
    """``(A, K, B)``: the sizes before, at and after the class axis."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])


def _view3(x, a: int, k: int, b: int, reshape):
    """``x`` as ``(A, K)`` when the class axis is last, else ``(A, K, B)``."""
    return reshape(x, (a, k) if b == 1 else (a, k, b))


# ------------------------------------------------------------------------------ dispatch


def sparse_from_logits(xp, x, labels, axis: int):
    """Per-sample ``logsumexp(x, axis) - take(x, labels, axis)``, or ``None``.

    ``labels`` must already be in ``[0, K)`` (ignored positions mapped to a valid class);
    the result has ``labels``' shape and ``x``'s (float) dtype.
    """
    if not fast_paths_enabled() or x.ndim == 0:
        return None
    a, k, b = _split(tuple(x.shape), axis)
    if is_torch(xp):
        from .torch._kernels import sparse_ce

        x3 = _view3(x, a, k, b, lambda t, s: t.reshape(s))
        y = labels.reshape((a,) if b == 1 else (a, b)).long()
        loss = sparse_ce(x3, y)
        return loss.reshape(labels.shape).to(x.dtype)
    if is_numpy(xp):
        import numpy as np

        x3 = _view3(np.asarray(x), a, k, b, np.reshape)
        y = np.reshape(labels, (a,) if b == 1 else (a, b))
        return np.reshape(_np_sparse(x3, y), labels.shape)
    if is_jax(xp) and JAX_CUSTOM_VJP:
        return jax_sparse_ce(x, labels, axis)
    return None


def soft_from_logits(xp, t, x, axis: int, *, t_check=None):
    """Per-sample ``sum(t * (logsumexp(x) - x), axis)`` (soft-target CE), or ``None``.

    ``t_check`` is the caller's kept value check on ``t``
    (:class:`probloss._checks.RangeCheck`, or ``None``).  Whenever this returns a value it
    has run the check, inside the kernel's own pass where it can: the fused numba kernel
    tests the bits of ``t`` (:mod:`probloss._fused`), torch's chunked kernel takes
    ``min(t)`` chunk by chunk for a ``t >= 0`` check.  On ``None`` the caller runs it.
    """
    if not fast_paths_enabled() or x.ndim == 0 or tuple(t.shape) != tuple(x.shape):
        return None
    a, k, b = _split(tuple(x.shape), axis)
    out_shape = tuple(x.shape[:axis]) + tuple(x.shape[axis + 1 :])
    fused = _fused_soft(xp, t, x, axis, t_check)
    if fused is not None:
        return fused
    if is_torch(xp):
        import torch

        from .torch._kernels import soft_target_ce

        if t.dtype != x.dtype:
            return None
        x3 = _view3(x, a, k, b, lambda u, s: u.reshape(s))
        t3 = _view3(t, a, k, b, lambda u, s: u.reshape(s))
        fold = t_check is not None and t_check.lo == 0 and t_check.hi is None
        if t_check is not None and not fold:
            t_check.run(xp)
        low = torch.empty((), dtype=t.dtype, device=t.device) if fold else None
        loss = soft_target_ce(x3, t3, t_min=low).reshape(out_shape).to(x.dtype)
        if fold and not low.item() >= 0:  # a negative (or NaN) label: name it
            t_check.run(xp)
        return loss
    if is_numpy(xp):
        import numpy as np

        if t_check is not None:
            t_check.run(xp)
        x3 = _view3(np.asarray(x), a, k, b, np.reshape)
        t3 = _view3(np.asarray(t), a, k, b, np.reshape)
        return np.reshape(_np_soft(x3, t3), out_shape)
    if is_jax(xp) and JAX_CUSTOM_VJP:
        if t_check is not None:
            t_check.run(xp)
        return jax_soft_ce(t, x, axis)
    return None


def _fused_soft(xp, t, x, axis: int, t_check):
    """The fused numba pass of :func:`soft_from_logits` (last axis, float32 CPU), or ``None``."""
    if axis % x.ndim != x.ndim - 1 or not (is_numpy(xp) or (is_torch(xp) and not t.requires_grad)):
        return None
    fused = _fused.soft_ce(t, x, check=t_check is not None)
    if fused is None:
        return None
    loss, t_sum, t_bits = fused
    if t_check is not None and not _fused.within(t_bits, t_check.lo, t_check.hi):
        t_check.run(xp)  # raises, naming the element (a -0.0 passes)
    if is_numpy(xp):
        return loss
    import torch

    from .torch._kernels import soft_target_ce

    k = x.shape[-1]
    given = (torch.from_numpy(loss.reshape(-1)), torch.from_numpy(t_sum.reshape(-1)))
    return soft_target_ce(x.reshape(-1, k), t.reshape(-1, k), given=given).reshape(loss.shape)


def elementwise(xp, kind: str, t, p, epsilon: float, axis: int, *, mean: bool = True, checks=()):
    """Keras's elementwise losses reduced over the last axis, or ``None``.

    ``kind`` is ``"bce"``, ``"bce_logits"``, ``"kl"`` (a sum) or ``"poisson"``; ``t`` and
    ``p`` are the prepared (already smoothed, same dtype and shape) targets and
    predictions.  ``checks`` are the caller's kept value checks
    (:class:`probloss._checks.RangeCheck`) on ``t`` and ``p``: they are run here when a
    kernel applies, and left to the caller when this returns ``None``.

    * big float32 NumPy arrays and CPU tensors: one compiled pass computes the loss and
      tests the checks (:mod:`probloss._fused`, with numba);
    * other torch tensors: the chunked :class:`probloss.torch._kernels.RowReduce`.

    Both only for the last axis and targets that need no gradient.
    """
    if not fast_paths_enabled() or p.ndim == 0 or not (is_torch(xp) or is_numpy(xp)):
        return None
    if axis % p.ndim != p.ndim - 1 or tuple(t.shape) != tuple(p.shape) or t.dtype != p.dtype:
        return None
    if is_torch(xp) and t.requires_grad:
        return None
    fused = _fused.rows(kind, t, p, epsilon, mean=mean, check=bool(checks))  # or None
    if fused is None:
        if not is_torch(xp):
            return None
        run_checks(xp, checks)
        values = None
    else:
        values, t_bits, p_bits = fused
        for check in checks:
            bits = t_bits if check.x is t else p_bits if check.x is p else None
            if bits is None or not _fused.within(bits, check.lo, check.hi):
                check.run(xp)  # raises, naming the element (a -0.0 passes)
        if is_numpy(xp):
            return values
    from .torch._kernels import row_reduce

    k = p.shape[-1]
    out = row_reduce(p.reshape(-1, k), t.reshape(-1, k), kind, epsilon, mean, values=values)
    return out.reshape(tuple(p.shape[:-1]))


def categorical_from_probs(xp, t, p, axis: int, epsilon: float):
    """Keras's categorical cross-entropy from probabilities, per sample, or ``None``.

    ``-sum(t * log(clip(p / sum(p, axis), epsilon, 1 - epsilon)), axis)``: torch only
    (kind ``"cat_probs"`` of :class:`probloss.torch._kernels.RowReduce`), for targets
    that need no gradient.  The caller runs the probability checks itself.
    """
    if not fast_paths_enabled() or not is_torch(xp) or p.ndim == 0:
        return None
    if tuple(t.shape) != tuple(p.shape) or t.dtype != p.dtype or t.requires_grad:
        return None
    from .torch._kernels import row_reduce

    a, k, b = _split(tuple(p.shape), axis)
    shape = (a, k) if b == 1 else (a, k, b)
    out = row_reduce(p.reshape(shape), t.reshape(shape), "cat_probs", epsilon, False)
    return out.reshape(tuple(p.shape[:axis]) + tuple(p.shape[axis + 1 :]))


def fused_categorical_from_probs(xp, t, p, axis: int, epsilon: float, *, check: bool):
    """Keras's categorical cross-entropy from probabilities in one compiled pass, or ``None``.

    ``(loss, sums, t_bits, p_bits)``: the per-sample loss (differentiable for torch), the
    row sums with the class axis kept (for the warning on unnormalised rows) and the bits
    for :func:`probloss._fused.within` (tested only with ``check``).  Big float32 NumPy
    arrays and CPU tensors, last axis, targets that need no gradient.
    """
    if not fast_paths_enabled() or p.ndim == 0 or axis % p.ndim != p.ndim - 1:
        return None
    if not (is_numpy(xp) or (is_torch(xp) and not t.requires_grad)):
        return None
    fused = _fused.cat_probs(t, p, epsilon, check=check)
    if fused is None:
        return None
    loss, sums, t_bits, p_bits = fused
    if is_numpy(xp):
        import numpy as np

        return loss, np.expand_dims(sums, -1), t_bits, p_bits
    import torch

    from .torch._kernels import row_reduce

    k = p.shape[-1]
    out = row_reduce(p.reshape(-1, k), t.reshape(-1, k), "cat_probs", epsilon, False, values=loss.reshape(-1))
    return out.reshape(loss.shape), torch.from_numpy(sums).unsqueeze(-1), t_bits, p_bits


def row_sums_in_range(xp, p, axis: int, lo: float, hi: float):
    """``(sums, ok)`` from one compiled pass over ``p``, or ``None``.

    ``sums`` is ``sum(p, axis, keepdims=True)`` in ``p``'s array type and dtype
    (differentiable for torch), accumulated in float64; ``ok`` tells whether every element
    lies in ``[lo, hi]``.  Only for the last axis of a big NumPy or CPU torch array with
    numba installed (see :mod:`probloss._scan`); the caller otherwise sums with ``xp``
    and checks with separate reductions.
    """
    if not fast_paths_enabled() or p.ndim == 0 or axis % p.ndim != p.ndim - 1:
        return None
    if not (is_numpy(xp) or is_torch(xp)):
        return None
    from . import _scan

    fused = _scan.row_sums_in_range(p, lo, hi)
    if fused is None:
        return None
    sums64, ok = fused
    if is_numpy(xp):
        import numpy as np

        return np.expand_dims(sums64.astype(p.dtype), -1), ok
    import torch

    from .torch._kernels import given_row_sums

    return given_row_sums(p, torch.from_numpy(sums64).to(p.dtype)).unsqueeze(-1), ok


# --------------------------------------------------------------------------------- numpy


def _np_rows(x) -> int:
    per_row = max(1, math.prod(x.shape[1:]))
    return max(1, _NP_CHUNK_ELEMS // per_row)


def _np_lse_chunk(np, xc, buf):
    """Log-sum-exp over axis 1 of the chunk ``xc``, using ``buf`` (same shape) as scratch."""
    m = np.max(xc, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    np.subtract(xc, m, out=buf)
    np.exp(buf, out=buf)
    return np.log(np.sum(buf, axis=1)) + np.squeeze(m, axis=1)


_NP_FEW_CLASSES = 48  # below this, row reductions in NumPy are slow: loop over the classes
_NP_FEW_ROWS = 1 << 16  # rows per chunk in that mode (its temporaries are single columns)


def _np_lse_columns(np, xc):
    """Log-sum-exp over axis 1 of a 2-D chunk with few columns, one column at a time.

    NumPy reduces a short contiguous axis slowly (per-row overhead); ``K`` vector
    operations over the rows are several times faster for ``K`` up to a few dozen.
    """
    cols = xc.T
    m = cols[0].copy()
    for j in range(1, cols.shape[0]):
        np.maximum(m, cols[j], out=m)
    m = np.where(np.isfinite(m), m, 0).astype(xc.dtype, copy=False)
    total = np.zeros_like(m)
    tmp = np.empty_like(m)
    for j in range(cols.shape[0]):
        np.subtract(cols[j], m, out=tmp)
        np.exp(tmp, out=tmp)
        total += tmp
    return np.log(total) + m


def _few_classes(x) -> bool:
    return x.ndim == 2 and x.shape[1] < _NP_FEW_CLASSES


def _np_sparse(x, y):
    import numpy as np

    if _few_classes(x):
        return _np_sparse_few(np, x, y)
    rows = _np_rows(x)
    out = np.empty((x.shape[0],) + x.shape[2:], dtype=x.dtype)
    scratch = np.empty((min(rows, x.shape[0]),) + x.shape[1:], dtype=x.dtype)
    idx = np.expand_dims(y, 1).astype(np.intp, copy=False)
    for s in range(0, x.shape[0], rows):
        xc = x[s : s + rows]
        lse = _np_lse_chunk(np, xc, scratch[: xc.shape[0]])
        out[s : s + rows] = lse - np.squeeze(np.take_along_axis(xc, idx[s : s + rows], axis=1), axis=1)
    return out


def _np_sparse_few(np, x, y):
    rows = _NP_FEW_ROWS
    out = np.empty(x.shape[0], dtype=x.dtype)
    for s in range(0, x.shape[0], rows):
        xc = x[s : s + rows]
        tgt = np.take_along_axis(xc, np.expand_dims(y[s : s + rows], 1).astype(np.intp, copy=False), axis=1)
        out[s : s + rows] = _np_lse_columns(np, xc) - tgt[:, 0]
    return out


def _np_soft_few(np, x, t):
    rows = _NP_FEW_ROWS
    out = np.empty(x.shape[0], dtype=x.dtype)
    for s in range(0, x.shape[0], rows):
        xc, tc = x[s : s + rows], t[s : s + rows]
        lse = _np_lse_columns(np, xc)
        acc = np.zeros_like(lse)
        tmp = np.empty_like(lse)
        for j in range(x.shape[1]):  # sum_c t_c (lse - x_c), one class at a time
            np.subtract(lse, xc[:, j], out=tmp)
            tmp *= tc[:, j]
            acc += tmp
        out[s : s + rows] = acc
    return out


def _np_soft(x, t):
    import numpy as np

    if _few_classes(x):
        return _np_soft_few(np, x, t)
    rows = _np_rows(x)
    out = np.empty((x.shape[0],) + x.shape[2:], dtype=x.dtype)
    scratch = np.empty((min(rows, x.shape[0]),) + x.shape[1:], dtype=x.dtype)
    for s in range(0, x.shape[0], rows):
        xc, tc = x[s : s + rows], t[s : s + rows]
        buf = scratch[: xc.shape[0]]
        lse = np.expand_dims(_np_lse_chunk(np, xc, buf), 1)
        # sum_c t_c (lse - x_c), elementwise first: the precision of a log-softmax.
        np.subtract(lse, xc, out=buf)
        np.multiply(buf, tc, out=buf)
        out[s : s + rows] = np.sum(buf, axis=1)
    return out


# ----------------------------------------------------------------------------------- jax

_JAX_FNS: dict = {}


def _jax_fns():
    """Build (once) the ``jax.custom_vjp`` kernels; imports jax."""
    if _JAX_FNS:
        return _JAX_FNS
    import functools

    import jax
    import jax.numpy as jnp

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
    def sparse(x, y, axis):
        return _sparse_fwd(x, y, axis)[0]

    def _sparse_fwd(x, y, axis):
        lse = jax.nn.logsumexp(x, axis=axis)
        tgt = jnp.squeeze(jnp.take_along_axis(x, jnp.expand_dims(y, axis), axis=axis), axis)
        return lse - tgt, (x, y, lse)

    def _sparse_bwd(axis, res, g):
        x, y, lse = res
        g_ = jnp.expand_dims(g, axis)
        iota = jax.lax.broadcasted_iota(y.dtype, x.shape, axis)
        hot = iota == jnp.expand_dims(y, axis)
        dx = jnp.exp(x - jnp.expand_dims(lse, axis)) * g_ - jnp.where(hot, g_, jnp.zeros_like(g_))
        return dx.astype(x.dtype), None

    sparse.defvjp(_sparse_fwd, _sparse_bwd)

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
    def soft(t, x, axis):
        return _soft_fwd(t, x, axis)[0]

    def _soft_fwd(t, x, axis):
        lse = jax.nn.logsumexp(x, axis=axis)
        ts = jnp.sum(t, axis=axis)
        return jnp.sum(t * (jnp.expand_dims(lse, axis) - x), axis=axis), (t, x, lse, ts)

    def _soft_bwd(axis, res, g):
        t, x, lse, ts = res
        g_ = jnp.expand_dims(g, axis)
        lse_ = jnp.expand_dims(lse, axis)
        dx = jnp.exp(x - lse_) * (g_ * jnp.expand_dims(ts, axis)) - t * g_
        dt = (lse_ - x) * g_
        return dt.astype(t.dtype), dx.astype(x.dtype)

    soft.defvjp(_soft_fwd, _soft_bwd)
    _JAX_FNS.update(sparse=sparse, soft=soft)
    return _JAX_FNS


def jax_sparse_ce(x, labels, axis: int = -1):
    """``logsumexp(x) - x[labels]`` along ``axis`` with a hand-written VJP (JAX only).

    The VJP is ``(softmax(x) - onehot(labels)) * g``, one fused XLA loop.  Reverse mode
    only: ``jax.jvp`` / ``jax.hessian`` raise on ``custom_vjp`` functions.
    """
    return _jax_fns()["sparse"](x, labels, axis % x.ndim)


def jax_soft_ce(t, x, axis: int = -1):
    """``sum(t * (logsumexp(x) - x))`` along ``axis`` with a hand-written VJP (JAX only)."""
    return _jax_fns()["soft"](t, x, axis % x.ndim)
