"""Torch implementations: the backend's own fused loss for small inputs, chunked autograd
Functions for big ones.

**Small inputs** (fewer than :data:`SMALL_ELEMENTS` elements): a training step's loss
call should cost what ``F.cross_entropy`` costs.  The softmax cross-entropies call
``F.cross_entropy(reduction="none")``, whose semantics match Keras's from logits, and
let it test the class indices (on the CPU it raises for one out of range; only then is
our check run, to name the element).  The other losses run their generic formula.

**Big inputs**: the per-row loss of a softmax cross-entropy needs only row statistics of
the logits, and its gradient is ``softmax - target``.  ``F.cross_entropy`` instead keeps
the whole ``N x K`` log-softmax for backward and builds the gradient through two more
``N x K`` buffers.  The Functions here keep nothing of size ``N x K`` except the caller's
own tensors:

* forward: the log-softmax of one chunk of rows at a time, in a small reused scratch
  buffer, reduced at once to the per-row loss; the Function saves the logits and
  targets (references to the caller's tensors, not copies) and ``O(N)`` statistics;
* backward: the gradient is written into **one** buffer of the logits' shape, chunk by
  chunk: ``softmax(x)`` (torch's fused kernel, recomputing the row max and sum while
  the chunk is in cache), scaled per row, minus the target term.  With
  ``inplace=True`` that buffer is the logits tensor itself, which is overwritten.

Keras's binary cross-entropy, KL divergence, Poisson and categorical cross-entropy
from probabilities get the same treatment (:class:`RowReduce`).

**Second order.**  Under ``create_graph=True`` (a Hessian-vector product, say) the
backward of each Function recomputes its forward with differentiable torch operations
and differentiates that, so higher derivatives are exact; the chunked backward serves
the usual first-order case.

Layout: ``x`` is ``(A, K)`` (class axis last) or ``(A, K, B)`` (class axis in the middle,
as torch's ``(N, C, d1, ...)``); chunks run over ``A``.  Half-precision logits are
converted to float32 one chunk at a time, the loss is float32, and the gradient is
returned in the logits' dtype.  Everything runs on the caller's thread, with torch's own
intra-op parallelism.  The chunk loops are Python loops: under ``torch.compile`` the
Functions run eagerly (:func:`torch.compiler.disable`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _checks as C
from .._compat import namespace
from ..functional import _logits as L
from ..functional import crossentropy as ce
from ..functional import divergence
from ..functional.ctc import LOG_ZERO, ctc_generic
from ..functional.poisson import check_poisson, poisson_generic

__all__ = [
    "SMALL_ELEMENTS",
    "RowReduce",
    "SoftTargetCE",
    "SparseCE",
    "binary",
    "categorical",
    "chunk_rows",
    "ctc",
    "kl_divergence",
    "poisson",
    "row_reduce",
    "soft_target_ce",
    "sparse",
    "sparse_ce",
    "sparse_mean",
]

SMALL_ELEMENTS = 1 << 16
"""Below this many elements the torch implementations call torch's fused losses
(measured by ``benchmarks/bench_overhead.py``: the chunked Functions win from about
64k elements up, and cost two to five times more per call below)."""

# Elements per chunk: on CPU small enough that a chunk (and its float32 scratch) stays in
# cache between the passes over it; on a GPU large enough to fill the device.
_CPU_CHUNK_ELEMS = 1 << 18
_GPU_CHUNK_ELEMS = 1 << 24

_SMALL_K = 32  # below this, torch's CPU (log_)softmax kernels along the last dim are slow


def _log_softmax_small(x, dim, half_to_float, *, out):
    """``x - logsumexp(x)`` into ``out``: faster than the fused kernel for a few classes."""
    return torch.sub(x, torch.logsumexp(x, dim, keepdim=True), out=out)


def _softmax_small(x, dim, half_to_float, *, out):
    return _log_softmax_small(x, dim, half_to_float, out=out).exp_()


_FUSED = (torch.ops.aten._log_softmax.out, torch.ops.aten._softmax.out)


def _kernels(x: torch.Tensor):
    """``(log_softmax_out, softmax_out)`` suited to ``x``'s device and layout."""
    if x.device.type == "cpu" and x.ndim == 2 and x.shape[1] < _SMALL_K:
        return _log_softmax_small, _softmax_small
    return torch.ops.aten._log_softmax.out, torch.ops.aten._softmax.out


def chunk_rows(x: torch.Tensor, chunk_size: int | None = None) -> int:
    """Rows (along dim 0) per chunk: ``chunk_size`` if given, else a device default."""
    if chunk_size is not None:
        return max(1, int(chunk_size))
    per_row = max(1, x[0].numel()) if x.shape[0] else 1
    target = _CPU_CHUNK_ELEMS if x.device.type == "cpu" else _GPU_CHUNK_ELEMS
    return max(1, target // per_row)


def _stat_dtype(x: torch.Tensor) -> torch.dtype:
    """Row statistics and scratch are float32 for half inputs, else the input's dtype."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _Scratch:
    """Reused chunk-sized buffers in the statistics dtype (one per role)."""

    def __init__(self, x: torch.Tensor, rows: int, dtype: torch.dtype):
        self.shape = (min(rows, x.shape[0]),) + tuple(x.shape[1:])
        self.dtype, self.device = dtype, x.device
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, role: str, n: int) -> torch.Tensor:
        buf = self._bufs.get(role)
        if buf is None:
            buf = self._bufs[role] = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        return buf[:n]


def _apply(kernel, xc: torch.Tensor, out: torch.Tensor, scratch: _Scratch) -> torch.Tensor:
    """``kernel`` (log-softmax or softmax over dim 1) of the chunk ``xc`` into ``out``.

    ``out`` is float32/float64; half inputs are converted first (float16 on CUDA by the
    kernel itself; otherwise through a scratch buffer, since torch's CPU kernels, and
    its CUDA kernels for bfloat16, cannot convert).
    """
    if xc.dtype == out.dtype:
        kernel(xc, 1, False, out=out)
    elif xc.device.type == "cuda" and xc.dtype == torch.float16 and out.dtype == torch.float32 and kernel in _FUSED:
        kernel(xc, 1, True, out=out)  # CUDA converts float16 (only) inside the kernel
    else:
        tmp = scratch.get("convert", xc.shape[0])
        tmp.copy_(xc)
        kernel(tmp, 1, False, out=out)
    return out


def _wview(weight: torch.Tensor, ndim: int) -> torch.Tensor:
    """Class weights shaped to broadcast along dim 1 of an ``ndim``-dimensional chunk."""
    return weight.view((1, -1) + (1,) * (ndim - 2))


def _stat(x: torch.Tensor, dtype) -> torch.Tensor:
    return torch.empty((x.shape[0],) + tuple(x.shape[2:]), dtype=dtype, device=x.device)


SMOOTH_ALL = 1
"""``SparseCE``'s smoothing term over every class (torch's ``label_smoothing``)."""
SMOOTH_ALLOWED = 2
"""``SparseCE``'s smoothing term over the classes whose logit is not ``-inf``, divided by their number."""


class SparseCE(torch.autograd.Function):
    """Per-position ``nll = -log_softmax(x)[y]`` and, with ``smooth``, a smoothing term.

    Inputs: ``x`` ``(A, K[, B])`` floating; ``y`` int64 ``(A[, B])`` with every index in
    ``[0, K)`` (callers map ignored positions to a valid class and zero their loss
    outside); ``weight`` ``(K,)`` or ``None`` (ones; used by the smoothing term only);
    ``smooth`` 0 / False (none), :data:`SMOOTH_ALL` / True (``-sum_c w_c log_softmax(x)_c``,
    torch's) or :data:`SMOOTH_ALLOWED` (``-(1 / K_r) sum_{c allowed} w_c log_softmax(x)_c``
    over the ``K_r`` classes whose logit is not ``-inf``: probloss's, for ruled-out
    classes); ``inplace`` bool; ``chunk`` rows or ``None``.

    Returns ``nll`` (float32, or float64 for float64 input), and the smoothing term when
    ``smooth`` is set.  Backward, for upstream ``g1`` (of nll) and ``g2`` (of the
    smoothing term)::

        dx = softmax(x) (g1 + W g2) - g1 onehot(y) - g2 w,     W = sum(w)

    (with :data:`SMOOTH_ALLOWED`, ``w`` is 0 on ruled-out classes and both ``W`` and
    ``w`` are divided by ``K_r``), written into one buffer (the logits themselves when
    ``inplace``).
    """

    @staticmethod
    def forward(x, y, weight, smooth, inplace, chunk):
        rows = chunk_rows(x, chunk)
        dt = _stat_dtype(x)
        if weight is not None:
            weight = weight.to(device=x.device, dtype=dt)
        scratch = _Scratch(x, rows, dt)
        log_softmax_out = _kernels(x)[0]
        nll = _stat(x, dt)
        smoothing = _stat(x, dt) if smooth else None
        idx = y.unsqueeze(1)
        for s in range(0, x.shape[0], rows):
            e = s + rows
            xc = x[s:e]
            logp = _apply(log_softmax_out, xc, scratch.get("logp", xc.shape[0]), scratch)
            torch.gather(logp, 1, idx[s:e], out=nll[s:e].unsqueeze(1))
            if smooth == SMOOTH_ALLOWED:
                smoothing[s:e].copy_(_allowed_smoothing(xc, logp, weight))
            elif smooth:
                if weight is None:
                    torch.sum(logp, 1, out=smoothing[s:e])
                elif logp.ndim == 2:
                    torch.mv(logp, weight, out=smoothing[s:e])
                else:
                    smoothing[s:e].copy_(torch.einsum("akb,k->ab", logp, weight))
        nll.neg_()
        if smooth and smooth != SMOOTH_ALLOWED:  # (the allowed-classes term comes out negated)
            smoothing.neg_()
        return (nll, smoothing) if smooth else nll

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y, weight, smooth, inplace, chunk = inputs
        if weight is not None:
            weight = weight.to(device=x.device, dtype=_stat_dtype(x))
        ctx.save_for_backward(x, y, weight)
        ctx.rows, ctx.smooth, ctx.inplace = chunk_rows(x, chunk), smooth, inplace

    @staticmethod
    def vmap(info, in_dims, x, y, weight, smooth, inplace, chunk):
        _refuse_batched(in_dims[2:], inplace)
        x, y = _rows_of_batches(info.batch_size, (x, in_dims[0]), (y, in_dims[1]))
        out = SparseCE.apply(x, y, weight, smooth, False, chunk)
        return _split_batches(info.batch_size, out), (0, 0) if smooth else 0

    @staticmethod
    def backward(ctx, g1, *rest):
        x, y, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate a differentiable forward
            def forward(x):
                logp = torch.log_softmax(x.to(_stat_dtype(x)), 1)
                nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1)
                if not ctx.smooth:
                    return (nll,)
                if ctx.smooth == SMOOTH_ALLOWED:
                    return nll, _allowed_smoothing(x, logp, weight)
                w = 1.0 if weight is None else _wview(weight, x.ndim)
                return nll, -(logp * w).sum(1)

            return (_second_order(forward, x, (g1, *rest)), None, None, None, None, None)
        g2 = rest[0] if ctx.smooth else None
        dt = _stat_dtype(x)
        g1 = g1.to(dt)
        coef = g1
        w = None
        if g2 is not None:
            g2 = g2.to(dt)
            total_w = weight.sum() if weight is not None else x.shape[1]
            coef = g1 + g2 * total_w
            w = None if weight is None else _wview(weight, x.ndim)
        neg_g1 = (-g1).unsqueeze(1)
        idx = y.unsqueeze(1)
        allowed_only = ctx.smooth == SMOOTH_ALLOWED

        def finish(buf, s, e):
            if allowed_only:  # per row: w_c allowed_c / K_r, and their sum W_r / K_r
                wa = _allowed_weights(x[s:e], w, dt)
                buf.mul_((g1[s:e] + g2[s:e] * wa.sum(1)).unsqueeze(1))
                buf.sub_(wa.mul_(g2[s:e].unsqueeze(1)))
            else:
                buf.mul_(coef[s:e].unsqueeze(1))
                if g2 is not None:
                    g2c = g2[s:e].unsqueeze(1)
                    buf.sub_(g2c if w is None else g2c * w)
            buf.scatter_add_(1, idx[s:e], neg_g1[s:e])

        return _grad_by_chunks(x, ctx.rows, ctx.inplace, finish), None, None, None, None, None


def _allowed_weights(x, w, dt):
    """``w_c / K_r`` on the classes whose logit is not ``-inf``, 0 elsewhere (``K_r`` per row, 1 if 0)."""
    allowed = (x != -math.inf).to(dt)
    k = allowed.sum(1, keepdim=True).clamp_(min=1.0)
    if w is not None:
        allowed.mul_(w)
    return allowed.div_(k)


def _allowed_smoothing(x, logp, weight):
    """``-(1 / K_r) sum_{c allowed} w_c logp_c`` along dim 1 (:data:`SMOOTH_ALLOWED`)."""
    wa = _allowed_weights(x, None if weight is None else _wview(weight, x.ndim), logp.dtype)
    return -(torch.where(wa > 0, logp, torch.zeros((), dtype=logp.dtype, device=logp.device)) * wa).sum(1)


def _soft_ce_chunks(x, t, weight, eps, rows, t_min):
    """The forward of :class:`SoftTargetCE` by chunks of rows: ``(loss, coef)``.

    ``t_min`` (a 0-d tensor, or None) receives min(t) for the caller's value check, taken
    chunk by chunk while the chunk is in cache: about half a separate pass.
    """
    k = x.shape[1]
    dt = _stat_dtype(x)
    chunk_mins = torch.empty(-(-x.shape[0] // rows), dtype=t.dtype, device=t.device) if t_min is not None else None
    scratch = _Scratch(x, rows, dt)
    coef = _stat(x, dt)
    loss = _stat(x, dt)
    w = None if weight is None else _wview(weight, x.ndim)
    total_w = float(k) if weight is None else weight.sum()
    smooth_part = _stat(x, dt) if eps else None
    log_softmax_out = _kernels(x)[0]
    for i, s in enumerate(range(0, x.shape[0], rows)):
        e = s + rows
        xc, tc = x[s:e], t[s:e]
        if chunk_mins is not None:
            torch.amin(tc, out=chunk_mins[i])
        logp = _apply(log_softmax_out, xc, scratch.get("logp", xc.shape[0]), scratch)
        if w is not None:
            logp.mul_(w)
        if eps:
            torch.sum(logp, 1, out=smooth_part[s:e])
        torch.sum(logp.mul_(tc), 1, out=loss[s:e])
        wt = tc if w is None else scratch.get("wt", xc.shape[0]).copy_(tc).mul_(w)
        torch.sum(wt, 1, dtype=dt, out=coef[s:e])
    if chunk_mins is not None:
        t_min.copy_(chunk_mins.amin())
    loss.neg_()
    if eps:
        loss.mul_(1.0 - eps).sub_(smooth_part.mul_(eps / k))
        coef.mul_(1.0 - eps).add_(eps * total_w / k)
    return loss, coef


def _redo_nan_rows(x, t, weight, eps, loss):
    """Compute again, by the generic formula, the rows where ``loss`` is NaN (a ``-inf``
    logit met a target of 0, or the inputs hold NaN); return the mask of the rows whose
    logits are all ``-inf`` (to get a zero gradient), or an empty tensor.

    Testing for NaN reads one number per call back from the device; it happens once,
    after the chunks, and the common case computes nothing more.
    """
    bad = torch.isnan(loss)
    if not bool(bad.any()):
        return torch.zeros(0, dtype=torch.bool, device=loss.device)
    dt = loss.dtype
    xr, tr = x.movedim(1, -1)[bad].to(dt), t.movedim(1, -1)[bad].to(dt)
    q = tr * (1.0 - eps) + eps / x.shape[1] if eps else tr
    loss[bad] = L.soft_logits(namespace(xr), q, xr, 1, 0.0, weight)
    return bad & (x == -math.inf).all(1)


def _grad_by_chunks(x, rows, inplace, finish):
    """``softmax(x)`` chunk by chunk, completed by ``finish(buf, s, e)``, in one buffer."""
    dt = _stat_dtype(x)
    out = x if inplace else torch.empty_like(x, memory_format=torch.contiguous_format)
    direct = not inplace and x.dtype == dt  # write straight into the gradient buffer
    scratch = _Scratch(x, rows, dt)
    softmax_out = _kernels(x)[1]
    for s in range(0, x.shape[0], rows):
        e = s + rows
        xc = x[s:e]
        buf = out[s:e] if direct else scratch.get("grad", xc.shape[0])
        _apply(softmax_out, xc, buf, scratch)
        finish(buf, s, e)
        if not direct:
            out[s:e].copy_(buf)
    return out.detach() if inplace else out


class SoftTargetCE(torch.autograd.Function):
    """Per-position ``-sum_c w_c q_c log_softmax(x)_c`` with ``q = (1 - eps) t + eps / K``.

    ``t`` (soft or one-hot targets) has the shape of ``x`` (``(A, K[, B])``); ``weight``
    is ``(K,)`` or ``None`` (all ones); ``eps`` is the label smoothing.  Saves ``x`` and
    ``t`` (references, no copies) and one statistic per row,
    ``c = (1 - eps) sum(w t) + eps W / K``.  Backward, for upstream ``g``::

        dx = g (softmax(x) c - (1 - eps) w t - (eps / K) w)
        dt = -g (1 - eps) w log_softmax(x)                     (only if t needs grad)

    A logit of ``-inf`` (a ruled-out class) with ``q_c = 0`` contributes 0, not
    ``0 * -inf``: the rows where the chunked product gave NaN are computed again by the
    generic formula (:func:`probloss.functional._logits.soft_logits`), and the rows whose
    logits are all ``-inf`` get a zero gradient.  The third output marks those rows (an
    empty tensor when there are none).
    """

    @staticmethod
    def forward(x, t, weight, eps, inplace, chunk, t_min):
        rows = chunk_rows(x, chunk)
        if weight is not None:
            weight = weight.to(device=x.device, dtype=_stat_dtype(x))
        loss, coef = _soft_ce_chunks(x, t, weight, eps, rows, t_min)  # c is for backward
        return loss, coef, _redo_nan_rows(x, t, weight, eps, loss)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, t, weight, eps, inplace, chunk, _ = inputs
        if weight is not None:
            weight = weight.to(device=x.device, dtype=_stat_dtype(x))
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.save_for_backward(x, t, output[1], weight)
        ctx.rows, ctx.inplace, ctx.eps = chunk_rows(x, chunk), inplace, eps
        ctx.no_grad_rows = output[2] if output[2].numel() else None  # (a shape test: no device sync)

    @staticmethod
    def vmap(info, in_dims, x, t, weight, eps, inplace, chunk, t_min):
        _refuse_batched(in_dims[2:], inplace)
        x, t = _rows_of_batches(info.batch_size, (x, in_dims[0]), (t, in_dims[1]))
        out = SoftTargetCE.apply(x, t, weight, eps, False, chunk, t_min)
        return _split_batches(info.batch_size, out), (0, 0, 0)

    @staticmethod
    def backward(ctx, g, _, __):
        x, t, coef, weight = ctx.saved_tensors
        rows, eps = ctx.rows, ctx.eps
        if torch.is_grad_enabled():  # create_graph=True: differentiate a differentiable forward
            def forward(x, t):
                q = t * (1.0 - eps) + eps / x.shape[1]
                w = 1.0 if weight is None else _wview(weight, x.ndim)
                logp = torch.log_softmax(x.to(_stat_dtype(x)), 1)
                logp = torch.where(q == 0, torch.zeros((), dtype=logp.dtype, device=logp.device), logp)
                return (-(logp * q * w).sum(1),)

            grads = _second_order(forward, (x, t), (g,), ctx.needs_input_grad[:2])
            return (*grads, None, None, None, None, None)
        k = x.shape[1]
        dt = _stat_dtype(x)
        g = g.to(dt)
        w = None if weight is None else _wview(weight, x.ndim)
        g_all = (g * coef).unsqueeze(1)
        g_t = (g * (1.0 - eps)).unsqueeze(1)
        g_eps = (g * (eps / k)).unsqueeze(1)
        dt_grad = None
        if ctx.needs_input_grad[1]:
            # dt = -g (1 - eps) w log_softmax(x); computed before x may be overwritten.
            dt_grad = torch.empty_like(t, memory_format=torch.contiguous_format)
            scratch = _Scratch(x, rows, dt)
            log_softmax_out = _kernels(x)[0]
            for s in range(0, x.shape[0], rows):
                e = s + rows
                logp = _apply(log_softmax_out, x[s:e], scratch.get("logp", x[s:e].shape[0]), scratch)
                logp.mul_(g_t[s:e]).neg_()
                if w is not None:
                    logp.mul_(w)
                dt_grad[s:e].copy_(logp)
        dx = None
        if ctx.needs_input_grad[0]:

            def finish(buf, s, e):
                buf.mul_(g_all[s:e])
                tc = t[s:e] if w is None else t[s:e] * w
                buf.addcmul_(tc, g_t[s:e], value=-1.0)
                if eps:
                    buf.sub_(g_eps[s:e] if w is None else g_eps[s:e] * w)

            dx = _grad_by_chunks(x, rows, ctx.inplace, finish)
            if ctx.no_grad_rows is not None:  # rows of -inf logits only: softmax gave NaN
                dx.masked_fill_(ctx.no_grad_rows.unsqueeze(1), 0.0)
        return dx, dt_grad, None, None, None, None, None


# ------------------------------------------------------------------ elementwise losses
# Keras's binary cross-entropy, KL divergence and Poisson: an elementwise loss reduced
# over the last axis.  Composed from generic ops they allocate several N x K
# temporaries (clip, log, products) and autograd keeps some of them for backward; here
# each chunk's temporaries stay in cache, nothing but the inputs is saved, and the
# gradient is written into one buffer.


def _bce_value(p, t, eps):
    # -(t log p + (1 - t) log(1 - p)) = -lerp(log(1 - p), log(p), t), with p clipped.
    # (torch's own binary_cross_entropy kernel takes its logs one element at a time,
    # about 3x slower on CPU than the vectorized torch.log.)
    pc = p.clamp(eps, 1.0 - eps)
    log_p = torch.log(pc)
    return torch.lerp(torch.log(pc.neg_().add_(1.0)), log_p, t).neg_()


def _bce_grad(p, t, eps, out):
    pc = p.clamp(eps, 1.0 - eps)
    den = torch.addcmul(pc, pc, pc, value=-1.0)  # p (1 - p)
    torch.sub(pc, t, out=out).div_(den)  # (p - t) / (p (1 - p))
    return out.masked_fill_(pc != p, 0.0)  # clipped elements get no gradient


def _bce_logits_value(x, t, eps):
    return F.binary_cross_entropy_with_logits(x, t, reduction="none")


def _bce_logits_grad(x, t, eps, out):
    return torch.sigmoid(x, out=out).sub_(t)


def _kl_value(p, t, eps):
    tc = t.clamp(eps, 1.0)
    return torch.log(tc / p.clamp(eps, 1.0)).mul_(tc)


def _kl_grad(p, t, eps, out):
    pc = p.clamp(eps, 1.0)
    torch.div(t.clamp(eps, 1.0), pc, out=out).neg_()  # -t / p
    return out.masked_fill_(pc != p, 0.0)  # clipped elements get no gradient


def _poisson_value(p, t, eps):
    return torch.log(p + eps).mul_(t).neg_().add_(p)


def _poisson_grad(p, t, eps, out):
    return torch.div(t, p + eps, out=out).neg_().add_(1.0)  # 1 - t / (p + eps)


def _cat_probs_value(p, t, eps):
    # Keras: q = clip(p / sum(p), eps, 1 - eps) along the class axis (dim 1); -t log q
    q = p.div(p.sum(1, keepdim=True)).clamp_(eps, 1.0 - eps)
    return q.log_().mul_(t).neg_()


def _cat_probs_grad(p, t, eps, out):
    # With s = sum(p), r = p / s, q = clip(r) and G = -t / q (0 where clipped):
    # dL/dp = (G - sum(G r)) / s, the renormalisation's chain rule.
    s = p.sum(1, keepdim=True)
    r = p / s
    q = r.clamp(eps, 1.0 - eps)
    torch.div(t, q, out=out).neg_().masked_fill_(q != r, 0.0)
    dot = torch.mul(out, r).sum(1, keepdim=True)
    return out.sub_(dot).div_(s)


ELEMENTWISE = {
    "cat_probs": (_cat_probs_value, _cat_probs_grad),
    "bce": (_bce_value, _bce_grad),
    "bce_logits": (_bce_logits_value, _bce_logits_grad),
    "kl": (_kl_value, _kl_grad),
    "poisson": (_poisson_value, _poisson_grad),
}


class RowReduce(torch.autograd.Function):
    """Per-row ``mean`` (or ``sum``) over dim 1 of a loss ``f(p, t)`` computed by chunks of rows.

    ``p`` and ``t`` are ``(A, K)`` (or ``(A, K, B)``) of one floating dtype; ``kind``
    names the loss in :data:`ELEMENTWISE` (its value and gradient functions see whole
    rows, so they may renormalise along dim 1); ``eps`` is its clipping constant.  Saves
    ``p`` and ``t`` only (references); the gradient w.r.t. ``p`` is built chunk by chunk
    in one buffer.  ``t`` gets no gradient (callers use the generic path when it needs
    one).
    """

    @staticmethod
    def forward(p, t, kind, eps, mean, chunk):
        rows = chunk_rows(p, chunk)
        value = ELEMENTWISE[kind][0]
        out = torch.empty((p.shape[0],) + tuple(p.shape[2:]), dtype=p.dtype, device=p.device)
        for s in range(0, p.shape[0], rows):
            e = s + rows
            torch.sum(value(p[s:e], t[s:e], eps), 1, out=out[s:e])
        if mean:
            out.div_(p.shape[1])
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        p, t, kind, eps, mean, chunk = inputs
        ctx.save_for_backward(p, t)
        ctx.kind, ctx.eps, ctx.mean, ctx.rows = kind, eps, mean, chunk_rows(p, chunk)

    @staticmethod
    def vmap(info, in_dims, p, t, kind, eps, mean, chunk):
        p, t = _rows_of_batches(info.batch_size, (p, in_dims[0]), (t, in_dims[1]))
        return _split_batches(info.batch_size, RowReduce.apply(p, t, kind, eps, mean, chunk)), 0

    @staticmethod
    def backward(ctx, g):
        p, t = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate a differentiable forward
            def forward(p):
                out = FORMULAS[ctx.kind](p, t, ctx.eps).sum(1)
                return (out / p.shape[1] if ctx.mean else out,)

            return (_second_order(forward, p, (g,)), None, None, None, None, None)
        grad = ELEMENTWISE[ctx.kind][1]
        scale = (g / p.shape[1] if ctx.mean else g).to(p.dtype).unsqueeze(1)  # broadcasts along dim 1
        out = torch.empty_like(p, memory_format=torch.contiguous_format)
        for s in range(0, p.shape[0], ctx.rows):
            e = s + ctx.rows
            grad(p[s:e], t[s:e], ctx.eps, out[s:e]).mul_(scale[s:e])
        return out, None, None, None, None, None


@torch.compiler.disable
def row_reduce(p, t, kind, eps=0.0, mean=True, chunk=None):
    """Apply :class:`RowReduce` (eagerly, also under ``torch.compile``)."""
    return RowReduce.apply(p, t, kind, float(eps), mean, chunk)


@torch.compiler.disable
def sparse_ce(x, y, weight=None, smooth=False, inplace=False, chunk=None):
    """Apply :class:`SparseCE` (eagerly, also under ``torch.compile``)."""
    return SparseCE.apply(x, y, weight, smooth, inplace, chunk)


@torch.compiler.disable
def soft_target_ce(x, t, weight=None, eps=0.0, inplace=False, chunk=None, t_min=None):
    """Apply :class:`SoftTargetCE` (eagerly, also under ``torch.compile``).

    ``t_min``, a 0-d tensor of ``t``'s dtype and device, receives ``min(t)``.
    """
    return SoftTargetCE.apply(x, t, weight, float(eps), inplace, chunk, t_min)[0]


# -------------------------------------------------------------------------------- vmap
# Under torch.func.vmap every Function sees the batch as more rows: the batch dimension
# goes first, batch and rows are flattened into one dimension, and the per-row results
# are split back.


def _rows_of_batches(batch_size, *pairs):
    """Each ``(tensor, batch_dim)`` as ``(batch * A, ...)``: batched along dim 0, merged."""
    out = []
    for x, dim in pairs:
        x = x.expand(batch_size, *x.shape) if dim is None else x.movedim(dim, 0)
        out.append(x.reshape((batch_size * x.shape[1],) + tuple(x.shape[2:])))
    return out


def _split_batches(batch_size, out):
    if isinstance(out, tuple):
        return tuple(_split_batches(batch_size, o) for o in out)
    return out.reshape((batch_size, out.shape[0] // batch_size) + tuple(out.shape[1:]))


def _refuse_batched(dims, inplace):
    from .._errors import ArgumentError

    if any(d is not None for d in dims):
        msg = "torch.func.vmap over class weights is not supported; vmap over the logits and targets only."
        raise ArgumentError(msg)
    if inplace:
        msg = "`inplace_backward=True` cannot be used under torch.func.vmap (the batch is not one buffer); leave it False."
        raise ArgumentError(msg)


# ------------------------------------------------------------------------ second order


def _bce_formula(p, t, eps):
    q = p.clamp(eps, 1.0 - eps)
    return -(t * torch.log(q) + (1.0 - t) * torch.log1p(-q))


def _kl_formula(p, t, eps):
    u = t.clamp(eps, 1.0)
    return u * torch.log(u / p.clamp(eps, 1.0))


def _cat_probs_formula(p, t, eps):
    return -t * torch.log((p / p.sum(1, keepdim=True)).clamp(eps, 1.0 - eps))


FORMULAS = {
    "bce": _bce_formula,
    "bce_logits": _bce_logits_value,
    "kl": _kl_formula,
    "poisson": lambda p, t, eps: p - t * torch.log(p + eps),
    "cat_probs": _cat_probs_formula,
}
"""The losses of :data:`ELEMENTWISE` written with differentiable operations (second order)."""


def _second_order(forward, inputs, grads, needs=None):
    """Gradients of ``forward(*inputs)`` (a tuple of outputs) for upstream ``grads``, with a
    graph: the backward of a Function called with ``create_graph=True``."""
    single = isinstance(inputs, torch.Tensor)
    inputs = (inputs,) if single else tuple(inputs)
    needs = needs or (True,) * len(inputs)
    wanted = [x for x, n in zip(inputs, needs) if n]
    with torch.enable_grad():
        outs = forward(*inputs)
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
    got = iter(
        torch.autograd.grad(
            [o for o, _ in pairs], wanted, [g.to(o.dtype) for o, g in pairs], create_graph=True, allow_unused=True
        )
    )
    result = [next(got) if n else None for n in needs]
    return result[0] if single else tuple(result)


# ------------------------------------------------------------- the dispatch's entries
# Each has the signature (xp, y_true, y_pred, axis, options) and runs its loss's value
# checks; the generic formulas come from probloss.functional.


_NO_IGNORE = -(2**63)  # F.cross_entropy's ignore_index: no int64 label but this one is ignored


def _small(x) -> bool:
    return x.numel() < SMALL_ELEMENTS or x.ndim < 2


def _as_rows(x, axis):
    """``x`` as ``(A, K)`` when ``axis`` is last, else ``(A, K, B)`` (a view when possible)."""
    a = 1
    for n in x.shape[:axis]:
        a *= n
    b = x.numel() // (a * x.shape[axis])
    return x.reshape((a, x.shape[axis]) if b == 1 else (a, x.shape[axis], b))


def _class_dim_1(x, axis):
    """``x`` with its class axis moved to dim 1, as ``F.cross_entropy`` takes it."""
    return x if axis == 1 or x.ndim == 1 else x.movedim(axis, 1)


def sparse(xp, labels, x, axis, o):
    """Sparse categorical cross-entropy: ``F.cross_entropy`` when small, else :class:`SparseCE`.

    Class weights go to ``F.cross_entropy(weight=)``; label smoothing, over the classes
    whose logit is not ``-inf`` (``F.cross_entropy(label_smoothing=)`` would make any row
    with a ``-inf`` logit infinite), is the generic smoothing term (small inputs) or
    :class:`SparseCE`'s :data:`SMOOTH_ALLOWED` term (big ones).
    """
    if not o.from_logits:
        return ce.sparse_generic(xp, labels, x, axis, o)
    a = o.label_smoothing
    w = None if o.class_weight is None else L.class_weights(xp, o.class_weight, x)
    if _small(x):
        loss = _native_sparse(xp, labels, x, axis, "none", w)
        if a:
            wk = None if w is None else L.class_weights(xp, o.class_weight, x, axis)
            loss = (1.0 - a) * loss + a * L.smoothing_term(xp, x, axis, wk)
        return loss
    x3 = _as_rows(x, axis)
    y = labels.reshape(x3.shape[:1] + x3.shape[2:]).long()

    def compute():
        out = sparse_ce(x3, y, w, SMOOTH_ALLOWED if a else False)
        nll, smoothing = out if a else (out, None)
        if w is not None:
            nll = nll * w.to(nll.dtype)[y]
        loss = (1.0 - a) * nll + a * smoothing if a else nll
        return loss.reshape(labels.shape).to(x.dtype)

    return _checked_by_torch(xp, labels, x, axis, compute)


def sparse_mean(xp, labels, x, axis, o):
    """The mean of :func:`sparse` over every position: one fused ``F.cross_entropy`` when small."""
    if o.from_logits and _small(x) and not o.label_smoothing and o.class_weight is None:
        return _native_sparse(xp, labels, x, axis, "mean")
    return sparse(xp, labels, x, axis, o).mean()


def _native_sparse(xp, labels, x, axis, reduction, weight=None):
    """``F.cross_entropy``, which tests the class indices itself on the CPU; only when it
    refuses one is our check run, to name the element and say what to do."""
    if _asserts(x) and C.eager(labels, x):  # check first, for our message
        labels = C.check_sparse_labels(xp, labels, x.shape[axis], None)
    y = labels if labels.dtype == torch.int64 else labels.long()
    try:
        return F.cross_entropy(_class_dim_1(x, axis), y, weight, reduction=reduction, ignore_index=_NO_IGNORE)
    except (IndexError, RuntimeError):
        if C.eager(labels, x):
            C.check_sparse_labels(xp, labels, x.shape[axis], None)
        raise


def _asserts(x) -> bool:
    """True where an index out of range fails an assertion instead of raising an error we
    can catch: in a CUDA kernel (which also poisons the context) and in code compiled by
    ``torch.compile``.  There the class indices are checked before the loss."""
    return not x.is_cpu or torch.compiler.is_compiling()


def _checked_by_torch(xp, labels, x, axis, compute):
    """``compute()``, with the class indices checked by torch itself where it can.

    Eagerly on the CPU torch raises for an index out of range; only then is our check
    run, to name the element and say what to do.  Where an index out of range fails an
    assertion instead (:func:`_asserts`), the indices are checked before.
    """
    if _asserts(x) and C.eager(labels, x):
        C.check_sparse_labels(xp, labels, x.shape[axis], None)
    try:
        return compute()
    except (IndexError, RuntimeError):
        if C.eager(labels, x):
            C.check_sparse_labels(xp, labels, x.shape[axis], None)
        raise


def categorical(xp, t, x, axis, o, name="y_true"):
    """Categorical cross-entropy from logits: ``F.cross_entropy`` (or :func:`_soft_small`
    where a logit may be ``-inf``) when small, else :class:`SoftTargetCE` (which takes
    ``min(t)`` for the check chunk by chunk).

    Label smoothing goes over the classes whose logit is not ``-inf``
    (:func:`probloss.functional._logits.smooth_allowed`); class weights are the
    Function's ``weight``.
    """
    if t.requires_grad or t.dtype != x.dtype:
        return ce.categorical_generic(xp, t, x, axis, o, name)
    if not o.from_logits:
        return _categorical_probs(xp, t, x, axis, o, name)
    check = C.eager(t, x)
    if o.label_smoothing:  # smoothing can move a bad label into [0, inf): check it first
        if check:
            ce.check_soft_labels(xp, t, name)
            check = False
        t = L.smooth_allowed(xp, t, x, axis, o.label_smoothing)
    w = None if o.class_weight is None else L.class_weights(xp, o.class_weight, x)
    if _small(x):
        if check:
            ce.check_soft_labels(xp, t, name)
        if _nothing_ruled_out(x):  # the usual case: torch's fused loss
            return F.cross_entropy(_class_dim_1(x, axis), _class_dim_1(t, axis), w, reduction="none")
        return _soft_small(x, t, axis, w)
    x3, t3 = _as_rows(x, axis), _as_rows(t, axis)
    low = torch.empty((), dtype=t.dtype, device=t.device) if check else None
    loss = soft_target_ce(x3, t3, w, t_min=low).reshape(x.shape[:axis] + x.shape[axis + 1 :]).to(x.dtype)
    if check and not C.truth(low >= 0, True):  # a negative (or NaN) label: name it
        ce.check_soft_labels(xp, t, name)
    return loss


def _nothing_ruled_out(x) -> bool:
    """True when no logit is ``-inf``, read eagerly on the CPU (one reduction, one number).

    ``F.cross_entropy`` with probability targets then computes the loss at a third of
    the cost of :func:`_soft_small`.  On other devices (a read would stop the device),
    under ``torch.compile`` and ``torch.func.vmap`` (no branch on values) the answer is
    False and :func:`_soft_small` runs, whatever the values.
    """
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    return C.truth(x.detach().amin() != -math.inf, False)


def _soft_small(x, t, axis, w):
    """``sum_c w_c t_c (lse(x) - x_c)`` in a few fused torch operations, ``0 * inf = 0``.

    ``F.cross_entropy`` with probability targets returns NaN for a ``-inf`` logit whose
    target is 0; here the log-sum-exp is taken of the logits clamped to the lowest finite
    number (finite for a row of ``-inf`` only; the clamp passes no gradient to ``-inf``)
    and the terms with no target weight are set to 0 before they are multiplied.
    """
    lse = torch.logsumexp(x.clamp(min=torch.finfo(x.dtype).min), axis, keepdim=True)
    u = t if w is None else t * w.view((-1,) + (1,) * (x.ndim - 1 - axis))
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return (u * torch.where(u == 0, zero, lse - x)).sum(axis)


def _categorical_probs(xp, t, p, axis, o, name):
    """Keras's categorical cross-entropy from probabilities: :class:`RowReduce` when big
    (on the ``(A, K[, B])`` layout, so any class axis)."""
    if _small(p):
        return ce.categorical_generic(xp, t, p, axis, o, name)
    if C.eager(t, p):
        ce.check_soft_labels(xp, t, name)
        ce.row_sums(xp, p, axis)  # the probability checks (entries in [0, 1], rows summing to 1)
    t = ce.smooth_categorical(t, o.label_smoothing, p.shape[axis])
    if o.class_weight is not None:
        t = t * L.class_weights(xp, o.class_weight, p, axis)
    out = row_reduce(_as_rows(p, axis), _as_rows(t, axis), "cat_probs", o.epsilon, False)
    return out.reshape(p.shape[:axis] + p.shape[axis + 1 :])


def _row_reduce(kind, xp, t, p, axis, o, generic, mean):
    """:class:`RowReduce` for big inputs over the last axis, else the generic formula."""
    if _small(p) or axis != p.ndim - 1 or t.requires_grad or t.dtype != p.dtype:
        return generic(xp, t, p, axis, o)
    k = p.shape[-1]
    return row_reduce(p.reshape(-1, k), t.reshape(-1, k), kind, o.epsilon, mean).reshape(p.shape[:-1])


def binary(xp, t, p, axis, o):
    """Binary cross-entropy: :class:`RowReduce` for big inputs, else (and with ``pos_weight``)
    the generic formula."""
    if _small(p) or axis != p.ndim - 1 or o.pos_weight is not None:
        return ce.binary_generic(xp, t, p, axis, o)
    ce.check_binary(xp, t, p, o)
    t = ce.smooth_binary(t, o.label_smoothing)
    return _row_reduce("bce_logits" if o.from_logits else "bce", xp, t, p, axis, o, _unchecked_binary, True)


def _unchecked_binary(xp, t, p, axis, o):
    return xp.mean(ce._binary_elementwise(xp, t, p, o.from_logits, o.epsilon), axis=axis)


def kl_divergence(xp, t, p, axis, o):
    """KL divergence: :class:`RowReduce` for big inputs, else the generic formula."""
    if _small(p):
        return divergence.kl_generic(xp, t, p, axis, o)
    if C.eager(t, p):
        C.check_range(xp, t, "y_true", 0.0, 1.0, why=divergence.KL_HINT)
        C.check_range(xp, p, "y_pred", 0.0, 1.0, why=divergence.KL_HINT)
    return _row_reduce("kl", xp, t, p, axis, o, _unchecked(divergence.kl_generic), False)


def poisson(xp, t, p, axis, o):
    """Poisson: :class:`RowReduce` for big inputs, else the generic formula."""
    if _small(p):
        return poisson_generic(xp, t, p, axis, o)
    check_poisson(xp, t, p)
    return _row_reduce("poisson", xp, t, p, axis, o, _unchecked(poisson_generic), True)


def _unchecked(generic):
    """``generic`` with the value checks off (the caller has run them)."""

    def run(xp, t, p, axis, o):
        with C.set_value_checks(False):
            return generic(xp, t, p, axis, o)

    return run


# exp() of log-probabilities is capped in the gradient correction of ``ctc``, so that
# garbage inputs (log-"probabilities" > 60) cannot overflow the value.
_EXP_CAP = 60.0


def ctc(xp, targets, lp, axis, o):
    """PyTorch's CTC kernel, made to match the generic recursion exactly.

    ``torch._ctc_loss(..., zero_infinity=True)`` returns ``inf`` for impossible rows but a
    zero gradient for them, which is the generic path's behaviour.  The kernel's gradient
    with respect to ``lp`` is ``exp(lp) - posterior`` on valid frames (right after a
    ``log_softmax``, whose backward removes the ``exp(lp)`` part); for free
    log-probabilities a term whose value is exactly 0 and whose gradient is ``-exp(lp)``
    on valid frames of possible rows restores the true derivative ``-posterior``.
    """
    labels, input_lengths, label_lengths = targets
    B, T, _ = lp.shape
    if B == 0 or T == 0:  # the kernel refuses empty inputs
        return ctc_generic(xp, targets, lp, axis, o)
    S = labels.shape[1]
    in_label = torch.arange(S, device=lp.device)[None, :] < label_lengths[:, None]
    targets = torch.where(in_label, labels, torch.zeros_like(labels)).long()
    lp = lp.clamp(min=LOG_ZERO)  # the kernel's gradient is NaN at -inf log-probabilities
    nll, _ = torch._ctc_loss(lp.transpose(0, 1), targets, input_lengths.long(), label_lengths.long(), o.blank, True)
    impossible = torch.isinf(nll)
    if o.free_log_probs:
        valid = (torch.arange(T, device=lp.device)[None, :] < input_lengths[:, None])[:, :, None]
        mass = torch.where(valid, lp.clamp(max=_EXP_CAP).exp(), torch.zeros_like(lp)).sum(dim=(1, 2))
        nll = nll - torch.where(impossible, torch.zeros_like(mass), mass - mass.detach())
    if o.zero_infinity:
        nll = torch.where(impossible, torch.zeros_like(nll), nll)
    return nll
