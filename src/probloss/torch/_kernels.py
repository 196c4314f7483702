"""Chunked softmax cross-entropy for torch: custom autograd Functions.

The per-row loss of a softmax cross-entropy needs one log-sum-exp per row, and its
gradient is ``softmax - target``.  ``torch.nn.functional.cross_entropy`` instead keeps
the whole ``N x K`` log-softmax for backward and builds the gradient through two more
``N x K`` buffers (four in flight at its peak, counting the logits).  The Functions here
keep only what the gradient needs:

* forward: one float32 log-sum-exp per row (and, with soft targets, ``sum(t)`` per row),
  computed in row chunks, so the only ``N x K``-sized temporary is one chunk;
* backward: the gradient is written into **one** buffer of the logits' shape, chunk by
  chunk (``exp(x - lse)``, scaled, minus the target term), with each chunk's passes
  running while it is still in cache.  With ``inplace=True`` that buffer is the logits
  tensor itself, which is then overwritten.

Layout: ``x`` is ``(A, K)`` (class axis last) or ``(A, K, B)`` (class axis in the middle,
as torch's ``(N, C, d1, ...)``); chunks run over ``A``.  Half-precision logits are
reduced in float32 per chunk, and the gradient is returned in the logits' dtype with
the ``-1`` of the target applied in float32 before rounding.

Nothing here branches on tensor values, but the chunk loops are Python loops over
shapes; under ``torch.compile`` callers wrap these Functions with
:func:`torch.compiler.disable` (a graph break, then eager kernels).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = ["SoftTargetCE", "SparseCE", "chunk_rows", "soft_target_ce", "sparse_ce"]

# Elements per chunk: small enough that a chunk (and its float32 temporaries) stays in
# the CPU's cache between the passes over it; on a GPU, large enough to fill the device.
_CPU_CHUNK_ELEMS = 1 << 18
_GPU_CHUNK_ELEMS = 1 << 26


def chunk_rows(x: torch.Tensor, chunk_size: int | None = None) -> int:
    """Rows (along dim 0) per chunk: ``chunk_size`` if given, else a device default."""
    if chunk_size is not None:
        return max(1, int(chunk_size))
    per_row = max(1, x[0].numel()) if x.shape[0] else 1
    target = _CPU_CHUNK_ELEMS if x.device.type == "cpu" else _GPU_CHUNK_ELEMS
    return max(1, target // per_row)


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _stat_dtype(x: torch.Tensor) -> torch.dtype:
    """Row statistics are float32 for half inputs, else the input's dtype."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _lse_rows(x: torch.Tensor, rows: int, weight: torch.Tensor | None, smooth: bool):
    """Per-row log-sum-exp over dim 1 and, when ``smooth``, ``sum_c w_c (lse - x_c)``.

    The smoothing sum is taken over ``lse - x`` (not ``W lse - sum(w x)``), so it keeps
    the precision of a log-softmax even when the logits are large.
    """
    a = x.shape[0]
    stat_shape = (a,) + tuple(x.shape[2:])
    dt = _stat_dtype(x)
    lse = torch.empty(stat_shape, dtype=dt, device=x.device)
    smoothing = torch.empty(stat_shape, dtype=dt, device=x.device) if smooth else None
    for s in range(0, a, rows):
        xc = _f32(x[s : s + rows])
        lc = lse[s : s + rows]
        torch.logsumexp(xc, 1, out=lc)
        if smooth:
            d = torch.sub(lc.unsqueeze(1), xc)
            if weight is None:
                torch.sum(d, 1, out=smoothing[s : s + rows])
            elif d.ndim == 2:
                torch.mv(d, weight, out=smoothing[s : s + rows])
            else:
                smoothing[s : s + rows].copy_(torch.einsum("akb,k->ab", d, weight))
    return lse, smoothing


def _gather_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _f32(torch.gather(x, 1, y.unsqueeze(1)).squeeze(1))


class SparseCE(torch.autograd.Function):
    """Per-position ``nll = lse(x) - x[y]`` and, with ``smooth``, ``sum_c w_c (lse - x_c)``.

    Inputs: ``x`` ``(A, K[, B])`` floating; ``y`` int64 ``(A[, B])`` with every index in
    ``[0, K)`` (callers map ignored positions to 0 and zero their loss outside);
    ``weight`` ``(K,)`` float32 or ``None`` (used by the smoothing term only);
    ``smooth`` bool; ``inplace`` bool; ``chunk`` rows or ``None``.

    Returns ``nll`` (float32, or float64 for float64 input), and ``smoothing`` when
    ``smooth`` is set.  Backward, for upstream ``g1`` (of nll) and ``g2`` (of the
    smoothing term)::

        dx = softmax(x) * (g1 + W g2) - g1 * onehot(y) - g2 * w,   W = sum(w)

    written into one buffer (the logits themselves when ``inplace``).
    """

    @staticmethod
    def forward(ctx, x, y, weight, smooth, inplace, chunk):
        rows = chunk_rows(x, chunk)
        if weight is not None:
            weight = weight.to(device=x.device, dtype=_stat_dtype(x))
        lse, smoothing = _lse_rows(x, rows, weight, smooth)
        nll = lse - _gather_rows(x, y)
        ctx.save_for_backward(x, y, lse, weight)
        ctx.rows, ctx.smooth, ctx.inplace = rows, smooth, inplace
        return (nll, smoothing) if smooth else nll

    @staticmethod
    @once_differentiable
    def backward(ctx, g1, *rest):
        x, y, lse, weight = ctx.saved_tensors
        g2 = rest[0] if ctx.smooth else None
        dx = _softmax_grad(x, y, lse, g1, g2, weight, ctx.rows, ctx.inplace)
        return dx, None, None, None, None, None


def _softmax_grad(x, y, lse, g1, g2, weight, rows, inplace):
    """``softmax(x) * (g1 + W g2) - g1 onehot(y) - g2 w`` into one buffer, by chunks."""
    k = x.shape[1]
    dt = lse.dtype
    g1 = g1.to(dt)
    if g2 is not None:
        g2 = g2.to(dt)
        total_w = weight.sum() if weight is not None else k
        coef = g1 + g2 * total_w
    else:
        coef = g1
    same = x.dtype == dt
    out = x if inplace else torch.empty_like(x, memory_format=torch.contiguous_format)
    neg_g1 = -g1
    for s in range(0, x.shape[0], rows):
        e = s + rows
        xc = x[s:e]
        oc = out[s:e]
        buf = oc if same else None
        if buf is not None:
            torch.sub(xc, lse[s:e].unsqueeze(1), out=buf)
        else:
            buf = xc.float().sub_(lse[s:e].unsqueeze(1))
        buf.exp_()
        buf.mul_(coef[s:e].unsqueeze(1))
        if g2 is not None:
            g2c = g2[s:e].unsqueeze(1)
            buf.sub_(g2c if weight is None else g2c * _wview(weight, xc.ndim))
        buf.scatter_add_(1, y[s:e].unsqueeze(1), neg_g1[s:e].unsqueeze(1))
        if buf is not oc:
            oc.copy_(buf)
    return out.detach() if inplace else out


class SoftTargetCE(torch.autograd.Function):
    """Per-position ``sum_c w_c q_c (lse(x) - x_c)`` with ``q = (1 - eps) t + eps / K``.

    ``t`` (soft or one-hot targets) has the shape of ``x`` (``(A, K[, B])``); ``weight``
    is ``(K,)`` or ``None`` (all ones); ``eps`` is the label smoothing.  Saves ``x`` and
    ``t`` (references, no copies) and two float32 statistics per row: ``lse`` and
    ``c = (1 - eps) sum(w t) + eps W / K``.  Backward, for upstream ``g``::

        dx = g (softmax(x) c - (1 - eps) w t - (eps / K) w)
        dt = g (1 - eps) w (lse - x)                          (only if t needs grad)
    """

    @staticmethod
    def forward(ctx, x, t, weight, eps, inplace, chunk):
        rows = chunk_rows(x, chunk)
        a, k = x.shape[0], x.shape[1]
        dt = _stat_dtype(x)
        stat_shape = (a,) + tuple(x.shape[2:])
        lse = torch.empty(stat_shape, dtype=dt, device=x.device)
        coef = torch.empty(stat_shape, dtype=dt, device=x.device)
        loss = torch.empty(stat_shape, dtype=dt, device=x.device)
        w = None if weight is None else _wview(weight.to(dt), x.ndim)
        total_w = float(k) if weight is None else weight.to(dt).sum()
        for s in range(0, a, rows):
            e = s + rows
            xc = _f32(x[s:e])
            tc = t[s:e]
            lc = lse[s:e]
            torch.logsumexp(xc, 1, out=lc)
            wt = tc if w is None else tc * w
            torch.sum(wt, 1, dtype=dt, out=coef[s:e])
            # sum_c w_c q_c (lse - x_c), elementwise first: the precision of a log-softmax.
            d = torch.sub(lc.unsqueeze(1), xc)
            if w is not None:
                d.mul_(w)
            smooth_part = d.sum(1).mul_(eps / k) if eps else None
            torch.sum(d.mul_(tc), 1, out=loss[s:e])
            if eps:
                loss[s:e].mul_(1.0 - eps).add_(smooth_part)
        if eps:
            coef.mul_(1.0 - eps).add_(eps * total_w / k)
        ctx.save_for_backward(x, t, lse, coef, weight)
        ctx.rows, ctx.inplace, ctx.eps = rows, inplace, eps
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, t, lse, coef, weight = ctx.saved_tensors
        rows, eps = ctx.rows, ctx.eps
        k = x.shape[1]
        g = g.to(lse.dtype)
        w = None if weight is None else _wview(weight.to(lse.dtype), x.ndim)
        gc_all = g * coef
        g_t = g * (1.0 - eps)
        dt_grad = None
        if ctx.needs_input_grad[1]:
            # dt = g (1 - eps) w (lse - x); computed before x may be overwritten in place.
            dt_grad = torch.empty_like(t, memory_format=torch.contiguous_format)
            for s in range(0, x.shape[0], rows):
                e = s + rows
                d = torch.sub(lse[s:e].unsqueeze(1), _f32(x[s:e])).mul_(g_t[s:e].unsqueeze(1))
                if w is not None:
                    d.mul_(w)
                dt_grad[s:e].copy_(d)
        dx = None
        if ctx.needs_input_grad[0]:
            same = x.dtype == lse.dtype
            out = x if ctx.inplace else torch.empty_like(x, memory_format=torch.contiguous_format)
            for s in range(0, x.shape[0], rows):
                e = s + rows
                oc = out[s:e]
                if same:
                    buf = oc
                    torch.sub(x[s:e], lse[s:e].unsqueeze(1), out=buf)
                else:
                    buf = x[s:e].float().sub_(lse[s:e].unsqueeze(1))
                buf.exp_()
                buf.mul_(gc_all[s:e].unsqueeze(1))
                tc = t[s:e] if w is None else t[s:e] * w
                buf.addcmul_(tc, g_t[s:e].unsqueeze(1), value=-1.0)
                if eps:
                    ge = g[s:e].unsqueeze(1) * (eps / k)
                    buf.sub_(ge if w is None else ge * w)
                if buf is not oc:
                    oc.copy_(buf)
            dx = out.detach() if ctx.inplace else out
        return dx, dt_grad, None, None, None, None


def _wview(weight: torch.Tensor, ndim: int) -> torch.Tensor:
    """Class weights shaped to broadcast along dim 1 of an ``ndim``-dimensional chunk."""
    return weight.view((1, -1) + (1,) * (ndim - 2))


@torch.compiler.disable
def sparse_ce(x, y, weight=None, smooth=False, inplace=False, chunk=None):
    """Apply :class:`SparseCE` (eagerly, also under ``torch.compile``)."""
    return SparseCE.apply(x, y, weight, smooth, inplace, chunk)


@torch.compiler.disable
def soft_target_ce(x, t, weight=None, eps=0.0, inplace=False, chunk=None):
    """Apply :class:`SoftTargetCE` (eagerly, also under ``torch.compile``)."""
    return SoftTargetCE.apply(x, t, weight, float(eps), inplace, chunk)
