"""``probloss.jax.linear_cross_entropy``: ``CE(X W^T + b, y)`` by chunks of tokens.

The tokens are split into chunks of ``c`` rows and a ``lax.scan`` runs over them, so
XLA holds the logits of one chunk (``c x V``) at a time, never ``N x V``:

* :func:`linear_cross_entropy` with ``"mean"`` or ``"sum"`` is a ``jax.custom_vjp``
  whose forward rule computes, per chunk, the logits, the softmax, ``G = dL/dZ`` and
  ``dX_c = G W``, ``dW += G^T X_c`` (float32): three matrix products; the backward rule
  scales ``dX``, ``dW`` and ``db`` by the upstream gradient.  Evaluated without a
  gradient (the primal rule), it computes the loss only.
* ``reduction="none"`` and ``recompute=True`` keep one float32 log-sum-exp per token and
  recompute the logits by chunks in the backward (four products).
* :func:`linear_log_probs_and_entropy` is a ``custom_vjp`` of the same recomputing kind.

JAX needs static shapes, so ignored tokens are **masked** (their coefficient is 0), not
gathered out as in the torch version: they still cost their share of the products.
``N`` is padded to a multiple of the chunk with masked rows.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks as C
from .._errors import ArgumentError, LabelValueError, ProblossTypeError, ShapeError

__all__ = ["CPU_MEMORY_BUDGET", "GPU_MEMORY_BUDGET", "LogProbsEntropy", "auto_chunk_rows", "linear_cross_entropy",
           "linear_log_probs_and_entropy"]

CPU_MEMORY_BUDGET = 64 << 20
"""Bytes of one float32 ``rows x V`` logits chunk that the automatic chunk size aims at on
the CPU (512 rows at V=32,000).  XLA keeps two or three chunk-sized temporaries alive
(logits, softmax, gradient), so the workspace is a few times this."""

GPU_MEMORY_BUDGET = 256 << 20
"""The same on an accelerator."""

_REDUCTIONS = ("mean", "sum", "none")


def auto_chunk_rows(n: int, num_classes: int, dtype, *, platform: str | None = None, budget: int | None = None) -> int:
    """Rows per chunk when ``chunk_size`` is not given: the most whose ``rows x V`` float32
    logits fit ``budget`` bytes, a multiple of 64 from 128 rows up, in ``[1, n]``.

    >>> auto_chunk_rows(4096, 32000, "float32", platform="cpu")
    512
    """
    stat = 8 if np.dtype(dtype) == np.float64 else 4
    if budget is None:
        platform = platform or jax.default_backend()
        budget = CPU_MEMORY_BUDGET if platform == "cpu" else GPU_MEMORY_BUDGET
    rows = max(1, int(budget) // (max(1, num_classes) * stat))
    if rows >= 128:
        rows -= rows % 64
    return max(1, min(rows, n))


class _Cfg(NamedTuple):
    """The static configuration of one call (hashable: a ``custom_vjp`` non-diff argument)."""

    cap: float | None
    chunk: int
    has_bias: bool
    has_cw: bool
    smooth: bool
    zloss: bool


def _stat(dtype):
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def _logits(cfg, xc, w, b, st):
    """``cap tanh((xc W^T + b) / cap)``, the product in the inputs' dtype, accumulated in ``st``."""
    z = jax.lax.dot_general(xc, w, (((1,), (1,)), ((), ())), preferred_element_type=st)
    if cfg.has_bias:
        z = z + b.astype(st)
    if cfg.cap is not None:
        z = cfg.cap * jnp.tanh(z / cfg.cap)
    return z


def _chunked(cfg, *arrays):
    """Each array ``(N, ...)`` as ``(N / chunk, chunk, ...)`` for the scan."""
    return tuple(a.reshape((a.shape[0] // cfg.chunk, cfg.chunk) + a.shape[1:]) for a in arrays)


def _grad_logits(cfg, z, lse, yc, a, beta, gam, cw, total_w):
    """``dL/dz`` of ``a nll + beta smooth + gam lse^2`` (see the torch version)."""
    p = jnp.exp(z - lse[:, None])
    coef = a
    if cfg.smooth:
        coef = coef + beta * total_w
    if cfg.zloss:
        coef = coef + 2.0 * gam * lse
    hit = jnp.arange(z.shape[1])[None, :] == yc[:, None]
    g = p * coef[:, None] - jnp.where(hit, a[:, None], 0.0)
    if cfg.smooth:
        g = g - beta[:, None] * (cw[None, :] if cfg.has_cw else 1.0)
    if cfg.cap is not None:
        g = g * (1.0 - jnp.square(z / cfg.cap))
    return g


def _weights(cfg, w, cw, st):
    return cw.astype(st).sum() if cfg.has_cw else jnp.asarray(float(w.shape[0]), st)


def _ce_sweep(cfg, x, w, b, y, a, beta, gam, cw, grads):
    """Per-token loss and lse; with ``grads`` also dX, dW (float32) and db of ``sum(loss)``."""
    st = _stat(x.dtype)
    total_w = _weights(cfg, w, cw, st)
    cws = cw.astype(st)

    def body(carry, inp):
        xc, yc, ac, bc, gc = inp
        z = _logits(cfg, xc, w, b, st)
        zy = jnp.take_along_axis(z, yc[:, None], axis=1)[:, 0]
        lse = jax.nn.logsumexp(z, axis=1)
        loss = ac * (lse - zy)
        if cfg.smooth:
            zw = z @ cws if cfg.has_cw else z.sum(1)
            loss = loss + bc * (total_w * lse - zw)
        if cfg.zloss:
            loss = loss + gc * lse * lse
        if not grads:
            return carry, (loss, lse)
        dw, db = carry
        g = _grad_logits(cfg, z, lse, yc, ac, bc, gc, cws, total_w)
        gd = g.astype(x.dtype)
        dxc = jnp.dot(gd, w, preferred_element_type=st).astype(x.dtype)
        dw = dw + jax.lax.dot_general(gd, xc, (((0,), (0,)), ((), ())), preferred_element_type=st)
        if cfg.has_bias:
            db = db + g.sum(0)
        return (dw, db), (loss, dxc)

    xs = _chunked(cfg, x, y, a, beta, gam)
    if not grads:
        _, (loss, lse) = jax.lax.scan(body, None, xs)
        return loss.reshape(-1), lse.reshape(-1)
    init = (jnp.zeros(w.shape, st), jnp.zeros(w.shape[:1], st))
    (dw, db), (loss, dx) = jax.lax.scan(body, init, xs)
    return loss.reshape(-1), dx.reshape(x.shape), dw, db


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused_total(cfg, x, w, b, y, a, beta, gam, cw):
    """``sum(loss)``; under differentiation its forward rule computes the gradients too."""
    return _ce_sweep(cfg, x, w, b, y, a, beta, gam, cw, False)[0].sum()


def _fused_fwd(cfg, x, w, b, y, a, beta, gam, cw):
    loss, dx, dw, db = _ce_sweep(cfg, x, w, b, y, a, beta, gam, cw, True)
    return loss.sum(), (dx, dw, db)


def _fused_bwd(cfg, res, g):
    dx, dw, db = res
    dt = dx.dtype
    return ((dx * g).astype(dt), (dw * g).astype(dt), (db * g).astype(dt), None, None, None, None, None)


_fused_total.defvjp(_fused_fwd, _fused_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _token_loss(cfg, x, w, b, y, a, beta, gam, cw):
    """Per-token loss; the backward rule recomputes the logits by chunks."""
    return _ce_sweep(cfg, x, w, b, y, a, beta, gam, cw, False)[0]


def _token_fwd(cfg, x, w, b, y, a, beta, gam, cw):
    loss, lse = _ce_sweep(cfg, x, w, b, y, a, beta, gam, cw, False)
    return loss, (x, w, b, y, a, beta, gam, cw, lse)


def _grad_sweep(cfg, x, w, b, y, lse, grad_of_chunk, rows):
    """dX, dW, db from ``G`` of each chunk, recomputing the logits; ``rows`` are scanned too."""
    st = _stat(x.dtype)

    def body(carry, inp):
        dw, db = carry
        xc, yc, lc, *rc = inp
        z = _logits(cfg, xc, w, b, st)
        g = grad_of_chunk(z, lc, yc, *rc)
        gd = g.astype(x.dtype)
        dxc = jnp.dot(gd, w, preferred_element_type=st).astype(x.dtype)
        dw = dw + jax.lax.dot_general(gd, xc, (((0,), (0,)), ((), ())), preferred_element_type=st)
        if cfg.has_bias:
            db = db + g.sum(0)
        return (dw, db), dxc

    init = (jnp.zeros(w.shape, st), jnp.zeros(w.shape[:1], st))
    (dw, db), dx = jax.lax.scan(body, init, _chunked(cfg, x, y, lse, *rows))
    dt = x.dtype
    return dx.reshape(x.shape), dw.astype(dt), db.astype(dt)


def _token_bwd(cfg, res, g):
    x, w, b, y, a, beta, gam, cw, lse = res
    st = _stat(x.dtype)
    g = g.astype(st)
    total_w = _weights(cfg, w, cw, st)
    cws = cw.astype(st)

    def grad_of_chunk(z, lc, yc, ac, bc, gc):
        return _grad_logits(cfg, z, lc, yc, ac, bc, gc, cws, total_w)

    dx, dw, db = _grad_sweep(cfg, x, w, b, y, lse, grad_of_chunk, (a * g, beta * g, gam * g))
    return dx, dw, db, None, None, None, None, None


_token_loss.defvjp(_token_fwd, _token_bwd)


def _lpe_sweep(cfg, x, w, b, y):
    st = _stat(x.dtype)

    def body(_, inp):
        xc, yc = inp
        z = _logits(cfg, xc, w, b, st)
        lse = jax.nn.logsumexp(z, axis=1)
        logp = z - lse[:, None]
        p = jnp.exp(logp)
        ent = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=1)
        lpy = jnp.take_along_axis(logp, yc[:, None], axis=1)[:, 0]
        return None, (lpy, ent, lse)

    _, out = jax.lax.scan(body, None, _chunked(cfg, x, y))
    return tuple(o.reshape(-1) for o in out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _log_probs_entropy(cfg, x, w, b, y):
    return _lpe_sweep(cfg, x, w, b, y)[:2]


def _lpe_fwd(cfg, x, w, b, y):
    lpy, ent, lse = _lpe_sweep(cfg, x, w, b, y)
    return (lpy, ent), (x, w, b, y, lse, ent)


def _lpe_bwd(cfg, res, cot):
    x, w, b, y, lse, ent = res
    st = _stat(x.dtype)
    gl, gh = (c.astype(st) for c in cot)

    def grad_of_chunk(z, lc, yc, hc, glc, ghc):
        # dz_c = gl ([c == y] - p_c) - gh p_c (log p_c + H)
        logp = z - lc[:, None]
        p = jnp.exp(logp)
        hit = jnp.arange(z.shape[1])[None, :] == yc[:, None]
        g = jnp.where(hit, glc[:, None], 0.0) - jnp.where(p > 0, p * (glc[:, None] + ghc[:, None] * (logp + hc[:, None])), 0.0)
        if cfg.cap is not None:
            g = g * (1.0 - jnp.square(z / cfg.cap))
        return g

    dx, dw, db = _grad_sweep(cfg, x, w, b, y, lse, grad_of_chunk, (ent, gl, gh))
    return dx, dw, db, None


_log_probs_entropy.defvjp(_lpe_fwd, _lpe_bwd)


# ------------------------------------------------------------------------- validation


def _fail(cls, fn, msg):
    raise cls(f"{fn}: {msg}")


def _is_array(a):
    return isinstance(a, (jax.Array, np.ndarray))


def _validate(fn, hidden, weight, target, bias, softcap, chunk_size):
    for name, t in (("hidden", hidden), ("weight", weight), ("target", target)):
        if not _is_array(t):
            _fail(ProblossTypeError, fn, f"`{name}` must be a JAX (or NumPy) array; got {type(t).__name__}.")
    if bias is not None and not _is_array(bias):
        _fail(ProblossTypeError, fn, f"`bias` must be a JAX array or None; got {type(bias).__name__}.")
    if not jnp.issubdtype(hidden.dtype, jnp.floating):
        _fail(ProblossTypeError, fn, f"`hidden` must be floating point (float32, float16, bfloat16 or float64); got {hidden.dtype}.")
    if hidden.ndim < 1:
        _fail(ShapeError, fn, "`hidden` must have shape (..., D), the hidden size last; got a 0-d array.")
    d = hidden.shape[-1]
    if weight.ndim != 2 or weight.shape[1] != d:
        _fail(ShapeError, fn, f"`weight` must have shape (V, D) = (vocabulary, {d}) to match `hidden`'s last axis; "
                              f"got {tuple(weight.shape)}.")
    v = weight.shape[0]
    if v == 0:
        _fail(ShapeError, fn, "`weight` has 0 rows: the vocabulary needs at least one class.")
    if weight.dtype != hidden.dtype:
        _fail(ProblossTypeError, fn, f"`weight` is {weight.dtype} but `hidden` is {hidden.dtype}; "
                                     f"cast one of them, e.g. `weight.astype(hidden.dtype)`.")
    if bias is not None:
        if tuple(bias.shape) != (v,):
            _fail(ShapeError, fn, f"`bias` must have shape ({v},), one value per row of `weight`; got {tuple(bias.shape)}.")
        if bias.dtype != hidden.dtype:
            _fail(ProblossTypeError, fn, f"`bias` is {bias.dtype} but `hidden` is {hidden.dtype}; cast it with `bias.astype(hidden.dtype)`.")
    lead = tuple(hidden.shape[:-1])
    if tuple(target.shape) != lead:
        _fail(ShapeError, fn, f"`target` must have `hidden`'s shape without its last axis, {lead}, one class index per "
                              f"token; got {tuple(target.shape)}.")
    if not jnp.issubdtype(target.dtype, jnp.integer):
        _fail(ProblossTypeError, fn, f"`target` must hold integer class indices; got {target.dtype}. Cast it with `.astype(int)`.")
    if softcap is not None and (isinstance(softcap, bool) or not isinstance(softcap, (int, float))
                                or not math.isfinite(softcap) or softcap <= 0):
        _fail(ArgumentError, fn, f"`softcap` must be None or a finite number > 0 (Gemma 2 uses 30.0); got {softcap!r}.")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        _fail(ArgumentError, fn, f"`chunk_size` must be None (automatic) or an integer >= 1 (rows per chunk); got {chunk_size!r}.")
    x = jnp.asarray(hidden).reshape(-1, d)
    y = jnp.asarray(target).reshape(-1)
    return x, y, lead, v, None if softcap is None else float(softcap)


def _check_labels(fn, y, v, ignore_index):
    if not C.eager(y):
        return
    bad = (y < 0) | (y >= v)
    if ignore_index is not None:
        bad = bad & (y != ignore_index)
    if C.truth(jnp.any(bad), False):
        pos = int(jnp.argmax(bad))
        allowed = f" or equal `ignore_index`={ignore_index}" if ignore_index is not None else ""
        _fail(LabelValueError, fn, f"`target` holds class index {int(y[pos])} at flat position {pos}, but `weight` has "
                                   f"{v} rows (classes), so targets must be in [0, {v - 1}]{allowed}.")


def _padded(n, chunk, *arrays):
    pad = -n % chunk
    if not pad:
        return arrays
    return tuple(jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)) for a in arrays)


# ---------------------------------------------------------------------------- the API


def linear_cross_entropy(
    hidden,
    weight,
    target,
    bias=None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    class_weight=None,
    chunk_size: int | None = None,
    recompute: bool = False,
):
    """``optax.softmax_cross_entropy_with_integer_labels(hidden @ weight.T + bias, target)``
    (reduced) without the ``N x V`` logits, with ``jax.grad`` and under ``jit``.

    Same keywords and numbers as :func:`probloss.torch.linear_cross_entropy`: per token
    ``l_n = (1 - e) w_y (lse - z_y) + (e / V) sum_c w_c (lse - z_c) + z_loss lse^2`` with
    ``z = cap tanh((x_n W^T + b) / cap)``; ``"mean"`` divides the cross-entropy part by
    ``sum_n w_{y_n}`` and the z-loss part by the number of non-ignored tokens (0 when
    every token is ignored); ``"none"`` returns ``hidden``'s leading shape, 0 at ignored
    tokens.  The result is float32 (float64 for float64 inputs).

    Tokens whose target is ``ignore_index`` are masked, not removed (shapes are static
    under ``jit``).  ``"none"`` and ``recompute=True`` recompute the logits in the
    backward; otherwise the gradients are computed in the forward pass of ``jax.grad``
    (three matrix products).  First-order reverse mode only: ``jax.jvp`` and
    ``jax.hessian`` raise JAX's error for ``custom_vjp`` functions.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, optax
    >>> from probloss.jax import linear_cross_entropy
    >>> kx, kw, ky = jax.random.split(jax.random.key(0), 3)
    >>> x, w = jax.random.normal(kx, (2, 5, 8)), jax.random.normal(kw, (11, 8))
    >>> y = jax.random.randint(ky, (2, 5), 0, 11)
    >>> ref = optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y).mean()
    >>> bool(jnp.allclose(linear_cross_entropy(x, w, y, chunk_size=3), ref, rtol=1e-5))
    True
    """
    fn = "linear_cross_entropy"
    x, y, lead, v, cap = _validate(fn, hidden, weight, target, bias, softcap, chunk_size)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        _fail(ArgumentError, fn, f"`ignore_index` must be an integer (default -100); got {ignore_index!r}.")
    if reduction not in _REDUCTIONS:
        _fail(ArgumentError, fn, f"`reduction` must be one of 'mean', 'sum', 'none'; got {reduction!r}.")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing <= 1.0:
        _fail(ArgumentError, fn, f"`label_smoothing` must be a number in [0, 1]; got {label_smoothing!r}.")
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or not math.isfinite(z_loss) or z_loss < 0:
        _fail(ArgumentError, fn, f"`z_loss` must be a finite number >= 0 (PaLM uses 1e-4); got {z_loss!r}.")
    if not isinstance(recompute, bool):
        _fail(ArgumentError, fn, f"`recompute` must be True or False; got {recompute!r}.")
    if class_weight is not None and (not _is_array(class_weight) or tuple(class_weight.shape) != (v,)
                                     or not jnp.issubdtype(class_weight.dtype, jnp.floating)):
        got = f"{class_weight.dtype} of shape {tuple(class_weight.shape)}" if _is_array(class_weight) else type(class_weight).__name__
        _fail(ShapeError, fn, f"`class_weight` must be a floating array of shape ({v},), one weight per class; got {got}.")
    _check_labels(fn, y, v, int(ignore_index))
    n = x.shape[0]
    chunk = chunk_size or auto_chunk_rows(n, v, x.dtype)
    cfg = _Cfg(cap, min(chunk, max(n, 1)), bias is not None, class_weight is not None, label_smoothing > 0, z_loss > 0)
    b = jnp.zeros((0,), x.dtype) if bias is None else bias
    cw = jnp.zeros((0,), x.dtype) if class_weight is None else jax.lax.stop_gradient(class_weight)
    out = _ce(cfg, x, weight, b, y, cw, int(ignore_index), float(label_smoothing), float(z_loss), reduction, recompute)
    return out.reshape(lead) if reduction == "none" else out


@functools.partial(jax.jit, static_argnums=(0, 6, 7, 8, 9, 10))
def _ce(cfg, x, w, b, y, cw, ignore_index, eps, zl, reduction, recompute):
    n, v = x.shape[0], w.shape[0]
    st = _stat(x.dtype)
    valid = y != ignore_index
    ys = jnp.where(valid, y, 0)
    vf = valid.astype(st)
    wy = cw.astype(st)[ys] * vf if cfg.has_cw else vf
    a = wy * (1.0 - eps)
    beta = vf * (eps / v)
    gam = vf * zl
    if reduction == "mean":
        denom = wy.sum()
        denom = jnp.where(denom == 0, 1.0, denom)  # every token ignored: 0, not NaN
        a, beta = a / denom, beta / denom
        gam = gam / jnp.maximum(vf.sum(), 1.0)
    bb = b if cfg.has_bias else jnp.zeros((v,), x.dtype)
    xp, yp, ap, bp, gp = _padded(n, cfg.chunk, x, ys, a, beta, gam)
    cwp = cw if cfg.has_cw else jnp.zeros((v,), st)
    if reduction != "none" and not recompute:
        return _fused_total(cfg, xp, w, bb, yp, ap, bp, gp, cwp)
    per_token = _token_loss(cfg, xp, w, bb, yp, ap, bp, gp, cwp)[:n]
    if reduction != "none":
        return per_token.sum()
    return jnp.where(valid, per_token, 0.0)


class LogProbsEntropy(NamedTuple):
    """Per-token outputs of :func:`linear_log_probs_and_entropy` (float32, ``hidden``'s leading shape)."""

    log_probs: jax.Array
    entropy: jax.Array


def linear_log_probs_and_entropy(hidden, weight, target, bias=None, *, softcap: float | None = None,
                                 chunk_size: int | None = None) -> LogProbsEntropy:
    """Per-token ``log p(target)`` and softmax entropy of ``hidden @ weight.T + bias`` by
    chunks, differentiable (``custom_vjp``; the backward recomputes the logits).

    Every target must be in ``[0, V)``.  See :func:`probloss.torch.linear_log_probs_and_entropy`.

    >>> import jax.numpy as jnp
    >>> from probloss.jax import linear_log_probs_and_entropy
    >>> out = linear_log_probs_and_entropy(jnp.zeros((3, 4)), jnp.zeros((8, 4)), jnp.array([0, 5, 7]))
    >>> [round(float(v), 4) for v in out.log_probs], round(float(out.entropy[0]), 4)
    ([-2.0794, -2.0794, -2.0794], 2.0794)
    """
    fn = "linear_log_probs_and_entropy"
    x, y, lead, v, cap = _validate(fn, hidden, weight, target, bias, softcap, chunk_size)
    _check_labels(fn, y, v, None)
    n = x.shape[0]
    chunk = chunk_size or auto_chunk_rows(n, v, x.dtype)
    cfg = _Cfg(cap, min(chunk, max(n, 1)), bias is not None, False, False, False)
    b = jnp.zeros((0,), x.dtype) if bias is None else bias
    logp, ent = _lpe(cfg, x, weight, b, y)
    return LogProbsEntropy(logp.reshape(lead), ent.reshape(lead))


@functools.partial(jax.jit, static_argnums=0)
def _lpe(cfg, x, w, b, y):
    n = x.shape[0]
    bb = b if cfg.has_bias else jnp.zeros((w.shape[0],), x.dtype)
    xp, yp = _padded(n, cfg.chunk, x, y)
    logp, ent = _log_probs_entropy(cfg, xp, w, bb, yp)
    return logp[:n], ent[:n]
