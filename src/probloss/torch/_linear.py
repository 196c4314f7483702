"""``probloss.torch.linear_cross_entropy``: the last layer of a language model and its
cross-entropy, fused, without the ``N x V`` logits.

For hidden states ``X`` (``N x D``), a classifier ``W`` (``V x D``) and a bias ``b``, the
loss is ``CE(X W^T + b, y)``.  The logits ``N x V`` are the biggest tensor of a language
model's training step (and ``F.cross_entropy`` keeps about three such buffers alive);
here at most **one chunk of rows** of them exists at a time, in one reused float32
buffer:

* **gradients in the forward** (the default when a backward will follow, ``"mean"`` and
  ``"sum"``): per chunk ``Z_c = X_c W^T``, the softmax and ``G_c = dL/dZ_c`` in place,
  then ``dX_c = G_c W`` and ``dW += G_c^T X_c`` (float32): three matrix products in all,
  no recomputation.  The forward keeps ``dX`` and ``dW``; the backward multiplies them by
  the upstream gradient (in place when autograd frees the graph after it).
* **recomputation** (``recompute=True``, and always for ``reduction="none"``, whose
  per-token upstream gradients are known only in the backward): the forward keeps one
  float32 log-sum-exp per token, the backward computes the logits again (four products,
  ``dX`` and ``dW`` do not live between forward and backward).

Ignored tokens are dropped (their rows gathered out) before any matrix product.  Plain
torch operations on chunks run on any device.  For float32/float16/bfloat16 CUDA tensors,
when Triton imports, the work on a chunk between the matrix products (which stay
torch's, cuBLAS) is one Triton kernel instead
(:func:`probloss._backends.triton_kernels.linear_ce_chunk`): bias and softcap applied as
the product is read, one pass for the log-sum-exp, target logit and smoothing sum, and
a second pass writing ``dL/dZ_c`` in place (:func:`_triton_module` chooses, once per
call); ``linear_log_probs_and_entropy`` likewise
(:func:`~probloss._backends.triton_kernels.linear_lpe_chunk`).  See ``docs/linear.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .. import _checks as C
from .. import _dispatch
from .._errors import ArgumentError, LabelValueError, ProblossTypeError, ShapeError

__all__ = [
    "CPU_MEMORY_BUDGET",
    "GPU_MEMORY_BUDGET",
    "LinearCrossEntropy",
    "LogProbsEntropy",
    "auto_chunk_rows",
    "linear_cross_entropy",
    "linear_log_probs_and_entropy",
]

CPU_MEMORY_BUDGET = 128 << 20
"""Bytes of chunk workspace (float32 logits, softcap derivative, half-precision copy)
that the automatic chunk size aims at on the CPU: 1,024 rows at V=32,000 (where the
matrix products run at full speed; see ``benchmarks/bench_linear.py``)."""

GPU_MEMORY_BUDGET = 512 << 20
"""The same on an accelerator (CUDA): 4,160 rows at V=32,000 in float32, 640 at V=128,256 in bfloat16."""

_REDUCTIONS = ("mean", "sum", "none")
_HALF = (torch.float16, torch.bfloat16)
_MIXED_ADDMM = [True]  # whether CUDA's addmm with out_dtype=float32 works here (tried once)


def auto_chunk_rows(n: int, num_classes: int, dtype: torch.dtype, device, *, softcap: bool = False,
                    budget: int | None = None, buffers: int = 1) -> int:
    """Rows per chunk when ``chunk_size`` is not given.

    The chunk's workspace is ``rows x V`` float32 logits (float64 for float64 inputs),
    plus a float32 softcap derivative with ``softcap`` (``buffers`` counts the float32
    buffers besides it), plus a half-precision copy for float16/bfloat16 inputs.  ``rows`` is the most that fits ``budget`` bytes
    (:data:`CPU_MEMORY_BUDGET` or :data:`GPU_MEMORY_BUDGET` by default), rounded down to
    a multiple of 64 from 128 rows up, at least 1 and at most ``n``.

    >>> import torch
    >>> auto_chunk_rows(4096, 32000, torch.float32, "cpu")
    1024
    """
    device = torch.device(device)
    stat = 8 if dtype == torch.float64 else 4
    per_row = max(1, num_classes) * (stat * (buffers + softcap) + (2 if dtype in _HALF else 0))
    if budget is None:
        budget = CPU_MEMORY_BUDGET if device.type == "cpu" else GPU_MEMORY_BUDGET
    rows = max(1, int(budget) // per_row)
    if rows >= 128:
        rows -= rows % 64
    return max(1, min(rows, n))


# ------------------------------------------------------------------------------ kernels


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class _Work:
    """The chunk workspace, allocated once per call and reused by every chunk."""

    def __init__(self, rows, v, dtype, device, *, deriv, probs=False, logits=True):
        self.st = _stat_dtype(dtype)
        # (``logits=False``: no float32 logits, when a kernel reads the half-precision product)
        self.z = torch.empty((rows, v), dtype=self.st, device=device) if logits or dtype not in _HALF else None
        self.half = torch.empty((rows, v), dtype=dtype, device=device) if dtype in _HALF else None
        self.deriv = torch.empty((rows, v), dtype=self.st, device=device) if deriv else None
        self.p = torch.empty((rows, v), dtype=self.st, device=device) if probs else None


def _product(xc, w, work):
    """``xc W^T`` into the workspace: the half-precision buffer for float16/bfloat16
    inputs (the product in the inputs' precision, on tensor cores), else ``z``."""
    buf = work.z[: xc.shape[0]] if work.half is None else work.half[: xc.shape[0]]
    return torch.mm(xc, w.t(), out=buf)


def _logits(xc, w, b, cap, work):
    """``cap tanh((xc W^T + b) / cap)`` (or without the cap) into the float32 workspace."""
    z = work.z[: xc.shape[0]]
    h = _product(xc, w, work)
    if h is not z:  # the softmax in float32
        z.copy_(h)
    if b is not None:
        z.add_(b)
    if cap is not None:
        z.div_(cap).tanh_().mul_(cap)
    return z


def _softcap_derivative(z, cap, work):
    """``1 - tanh^2 = 1 - (z / cap)^2`` of the capped logits ``z``, into the workspace."""
    d = work.deriv[: z.shape[0]]
    torch.mul(z, z, out=d)
    return d.mul_(-1.0 / (cap * cap)).add_(1.0)


class _Grads:
    """Gradient buffers of ``hidden`` (``dx``), ``weight`` (``dw``, float32) and ``bias`` (``db``)."""

    def __init__(self, x, w, b, needs, st):
        nx, nw, nb = needs
        self.dx = torch.empty_like(x, memory_format=torch.contiguous_format) if nx else None
        self.dw = torch.zeros(w.shape, dtype=st, device=w.device) if nw else None
        self.db = torch.zeros(w.shape[0], dtype=st, device=w.device) if nb and b is not None else None

    def add(self, g, xc, w, s, e, work):
        """``dx[s:e] = G W``, ``dw += G^T xc`` (float32), ``db += sum(G)`` for the chunk's ``G``."""
        gh = g
        if work.half is not None and (self.dx is not None or (self.dw is not None and g.is_cuda)):
            gh = work.half[: g.shape[0]].copy_(g)
        if self.dx is not None:
            torch.mm(gh, w, out=self.dx[s:e])
        if self.dw is not None:
            if work.half is None:
                self.dw.addmm_(g.t(), xc)
            elif g.is_cuda and _MIXED_ADDMM[0]:
                try:  # half operands, float32 accumulation, no V x D temporary
                    torch.ops.aten.addmm.dtype_out(self.dw, gh.t(), xc, self.dw.dtype, out=self.dw)
                except RuntimeError:  # a torch or GPU without the mixed-precision product
                    _MIXED_ADDMM[0] = False
                    self.dw.addmm_(g.t(), xc.to(self.dw.dtype))
            else:  # no mixed-precision product (the CPU): the (small) chunk of X in float32
                self.dw.addmm_(g.t(), xc.to(self.dw.dtype))
        if self.db is not None:
            self.db.add_(g.sum(0))

    def finish(self, w, b):
        dw = None if self.dw is None else self.dw.to(w.dtype)
        db = None if self.db is None else self.db.to(b.dtype)
        return self.dx, dw, db


def _loss_gradient(p, y, a, beta, gam, lse, cw, total_w, deriv):
    """Turn the softmax ``p`` (in place) into ``dL/dZ`` of ``a nll + beta smooth + gam lse^2``.

    ``nll = lse - z_y`` and ``smooth = sum_c w_c (lse - z_c)``, so with ``W = sum_c w_c``::

        dL/dz_c = p_c (a + beta W + 2 gam lse) - a [c == y] - beta w_c

    times ``1 - tanh^2`` under a softcap.  ``a``, ``beta``, ``gam`` are per row (or None).
    """
    coef = a
    if beta is not None:
        coef = coef + beta * total_w
    if gam is not None:
        coef = coef + 2.0 * gam * lse
    p.mul_(coef.unsqueeze(1))
    p.scatter_add_(1, y.unsqueeze(1), (-a).unsqueeze(1))
    if beta is not None:
        p.sub_(beta.unsqueeze(1) if cw is None else torch.outer(beta, cw))
    if deriv is not None:
        p.mul_(deriv)
    return p


def _rows(n, chunk):
    return range(0, n, chunk)


class _ChunkKernel:
    """The Triton kernel that does a chunk's work after ``X_c W^T``, for one call.

    :func:`_chunk_kernel` makes one when the call's tensors are CUDA tensors (or CPU
    tensors under ``probloss._dispatch.triton_on_cpu()``, in Triton's interpreter) and
    Triton imports; the matrix products stay torch's (cuBLAS).  The per-call vectors are
    made contiguous once here.
    """

    def __init__(self, module, b, y, a, beta, gam, cw, total_w, cap):
        self.module, self.cap = module, cap
        self.b = None if b is None else b.detach().contiguous()
        self.y, self.a = y.contiguous(), a.contiguous()
        self.beta = None if beta is None else beta.contiguous()
        self.gam = None if gam is None else gam.contiguous()
        self.cw = None if cw is None else cw.contiguous()
        self.wsum = None
        if beta is not None:
            self.wsum = torch.as_tensor(total_w, dtype=torch.float32, device=a.device).reshape(1).contiguous()

    def run(self, src, out, s, e, lse, zy=None, zw=None):
        """Rows ``s:e``: ``lse``, ``zy``, ``zw`` (with ``zy`` given; else ``lse`` is read) and,
        with ``out``, ``dL/dZ_c`` written there (float32; ``out`` may be ``src``)."""
        self.module.linear_ce_chunk(src, out, self.b, self.y[s:e], self.a[s:e], _part(self.beta, s, e),
                                    _part(self.gam, s, e), self.cw, self.wsum, self.cap, lse, zy, zw)


def _triton_module(x):
    """The CUDA backend's module (:mod:`probloss._backends.triton`) when its chunk kernels
    serve this call (float32/float16/bfloat16 CUDA tensors, or CPU tensors under
    ``triton_on_cpu()``, and Triton imports), else ``None``: the chunks then take torch
    operations.  Asked once per call."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return None
    return _dispatch.cuda_module(x)


def _chunk_kernel(x, b, y, a, beta, gam, cw, total_w, cap):
    """A :class:`_ChunkKernel` for this cross-entropy call, or ``None`` (torch operations)."""
    module = _triton_module(x)
    return None if module is None else _ChunkKernel(module, b, y, a, beta, gam, cw, total_w, cap)


def _ce_forward(x, w, b, y, a, beta, gam, cw, cap, chunk, needs):
    """Per-token loss ``a nll + beta smooth + gam lse^2`` and the float32 log-sum-exp; with
    ``needs`` (hidden, weight, bias) the gradients of ``sum(loss)`` too, chunk by chunk."""
    n, v = x.shape[0], w.shape[0]
    st = _stat_dtype(x.dtype)
    grads = _Grads(x, w, b, needs, st) if any(needs) else None
    total_w = float(v) if cw is None else cw.sum()
    kernel = _chunk_kernel(x, b, y, a, beta, gam, cw, total_w, cap)
    work = _Work(min(chunk, max(n, 1)), v, x.dtype, x.device,
                 deriv=grads is not None and cap is not None and kernel is None,
                 logits=grads is not None or kernel is None)
    lse = torch.empty(n, dtype=st, device=x.device)
    zy = torch.empty(n, dtype=st, device=x.device)
    zw = torch.empty(n, dtype=st, device=x.device) if beta is not None else None
    for s in _rows(n, chunk):
        e = min(s + chunk, n)
        xc, yc = x[s:e], y[s:e]
        if kernel is not None:  # one kernel: statistics, and the gradient in place
            g = work.z[: e - s] if grads is not None else None
            kernel.run(_product(xc, w, work), g, s, e, lse[s:e], zy[s:e], _part(zw, s, e))
            if grads is not None:
                grads.add(g, xc, w, s, e, work)
            continue
        z = _logits(xc, w, b, cap, work)
        torch.gather(z, 1, yc.unsqueeze(1), out=zy[s:e].unsqueeze(1))
        if zw is not None:
            if cw is None:
                torch.sum(z, 1, out=zw[s:e])
            else:
                torch.mv(z, cw, out=zw[s:e])
        deriv = _softcap_derivative(z, cap, work) if work.deriv is not None else None
        m = z.amax(1)
        m.masked_fill_(torch.isinf(m), 0.0)  # a row of -inf logits gives lse = -inf, not NaN
        z.sub_(m.unsqueeze(1)).exp_()
        ssum = z.sum(1)
        torch.add(m, ssum.log(), out=lse[s:e])
        if grads is not None:
            z.div_(ssum.unsqueeze(1))
            g = _loss_gradient(z, yc, a[s:e], _part(beta, s, e), _part(gam, s, e), lse[s:e], cw, total_w, deriv)
            grads.add(g, xc, w, s, e, work)
    loss = (lse - zy).mul_(a)
    if beta is not None:
        loss.add_(beta * (lse * total_w - zw))
    if gam is not None:
        loss.add_(gam * lse * lse)
    return loss, lse, grads


def _part(t, s, e):
    return None if t is None else t[s:e]


def _ce_backward(x, w, b, y, a, beta, gam, cw, cap, chunk, lse, needs):
    """Gradients of ``sum(a nll + beta smooth + gam lse^2)``, the logits recomputed by chunks."""
    n, v = x.shape[0], w.shape[0]
    st = _stat_dtype(x.dtype)
    grads = _Grads(x, w, b, needs, st)
    total_w = float(v) if cw is None else cw.sum()
    kernel = _chunk_kernel(x, b, y, a, beta, gam, cw, total_w, cap)
    work = _Work(min(chunk, max(n, 1)), v, x.dtype, x.device, deriv=cap is not None and kernel is None)
    for s in _rows(n, chunk):
        e = min(s + chunk, n)
        xc = x[s:e]
        if kernel is not None:  # one kernel: the gradient from the saved lse
            g = work.z[: e - s]
            kernel.run(_product(xc, w, work), g, s, e, lse[s:e])
            grads.add(g, xc, w, s, e, work)
            continue
        z = _logits(xc, w, b, cap, work)
        deriv = _softcap_derivative(z, cap, work) if cap is not None else None
        p = z.sub_(lse[s:e].unsqueeze(1)).exp_()
        g = _loss_gradient(p, y[s:e], a[s:e], _part(beta, s, e), _part(gam, s, e), lse[s:e], cw, total_w, deriv)
        grads.add(g, xc, w, s, e, work)
    return grads.finish(w, b)


def _formula_ce(x, w, b, y, a, beta, gam, cw, cap):
    """The per-token loss with differentiable torch operations (all logits at once)."""
    st = _stat_dtype(x.dtype)
    z = x.to(st) @ w.to(st).t()
    if b is not None:
        z = z + b.to(st)
    if cap is not None:
        z = cap * torch.tanh(z / cap)
    lse = torch.logsumexp(z, 1)
    loss = a * (lse - z.gather(1, y.unsqueeze(1)).squeeze(1))
    if beta is not None:
        total_w = float(w.shape[0]) if cw is None else cw.sum()
        loss = loss + beta * (lse * total_w - (z.sum(1) if cw is None else z @ cw))
    if gam is not None:
        loss = loss + gam * lse * lse
    return loss


def _second_order(formula, inputs, needs, upstream):
    """Gradients of ``sum(upstream * formula(*inputs))`` with a graph (``create_graph=True``)."""
    wanted = [t for t, n in zip(inputs, needs) if n]
    with torch.enable_grad():
        out = formula(*inputs)
        pairs = [(o, u) for o, u in zip(out, upstream) if u is not None]
        got = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [u.to(o.dtype).expand_as(o) for o, u in pairs],
                                       create_graph=True, allow_unused=True))
    return [next(got) if n else None for n in needs]


def _vmap_refused(name):
    msg = (
        f"{name} does not support torch.func.vmap (its chunked autograd Function has no batching rule): "
        "call it on the flattened batch instead; any leading shape of `hidden` is accepted."
    )
    raise ArgumentError(msg)


class _FusedCE(torch.autograd.Function):
    """``sum(loss)`` with the gradients of hidden, weight and bias computed in the forward.

    Outputs ``(total, dx, dw, db)``; the last three are non-differentiable and saved, so
    that the backward only scales them by the upstream gradient.
    """

    @staticmethod
    def forward(x, w, b, y, a, beta, gam, cw, cap, chunk, needs):
        loss, _, grads = _ce_forward(x, w, b, y, a, beta, gam, cw, cap, chunk, needs)
        dx, dw, db = grads.finish(w, b)
        return loss.sum(), *(x.new_empty(0) if t is None else t for t in (dx, dw, db))

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, y, a, beta, gam, cw, cap, chunk, needs = inputs
        _, dx, dw, db = output
        ctx.mark_non_differentiable(dx, dw, db)
        ctx.set_materialize_grads(False)  # no zero "gradients" of dx, dw, db (a dW-sized buffer)
        ctx.save_for_backward(x, w, b, y, a, beta, gam, cw, dx, dw, db)
        ctx.cap, ctx.needs = cap, needs

    @staticmethod
    def vmap(info, in_dims, *args):
        _vmap_refused("linear_cross_entropy")

    @staticmethod
    def backward(ctx, g, *_):
        x, w, b, y, a, beta, gam, cw, dx, dw, db = ctx.saved_tensors
        needs = tuple(n and r for n, r in zip(ctx.needs, ctx.needs_input_grad[:3]))
        if g is None:
            return (None,) * 11
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula
            def formula(x, w, b):
                return (_formula_ce(x, w, b, y, a, beta, gam, cw, ctx.cap),)

            grads = _second_order(formula, (x, w, b), needs, (g,))
        else:
            # When autograd frees the graph after this call (no retain_graph), the saved
            # buffers are scaled in place and handed over: no copy of dW.
            in_place = not torch._C._autograd._get_current_graph_task_keep_graph()
            grads = [(t.mul_(g) if in_place else t * g) if n else None for t, n in zip((dx, dw, db), needs)]
        return (*grads, None, None, None, None, None, None, None, None)


class _TokenCE(torch.autograd.Function):
    """Per-token loss; the backward recomputes the logits by chunks (four products)."""

    @staticmethod
    def forward(x, w, b, y, a, beta, gam, cw, cap, chunk):
        loss, lse, _ = _ce_forward(x, w, b, y, a, beta, gam, cw, cap, chunk, (False, False, False))
        return loss, lse

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, y, a, beta, gam, cw, cap, chunk = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, w, b, y, a, beta, gam, cw, output[1])
        ctx.cap, ctx.chunk = cap, chunk

    @staticmethod
    def vmap(info, in_dims, *args):
        _vmap_refused("linear_cross_entropy")

    @staticmethod
    def backward(ctx, g, _):
        x, w, b, y, a, beta, gam, cw, lse = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        if g is None:
            return (None,) * 10
        if torch.is_grad_enabled():
            def formula(x, w, b):
                return (_formula_ce(x, w, b, y, a, beta, gam, cw, ctx.cap),)

            grads = _second_order(formula, (x, w, b), needs, (g,))
        else:
            g = g.to(lse.dtype)
            grads = _ce_backward(x, w, b, y, a * g, None if beta is None else beta * g, None if gam is None else gam * g,
                                 cw, ctx.cap, ctx.chunk, lse, needs)
        return (*grads, None, None, None, None, None, None, None)


# ---------------------------------------------------------------- log-probs and entropy


def _lpe_forward(x, w, b, y, cap, chunk):
    """Per-token ``log p_y``, entropy ``H = lse - sum_c p_c z_c`` and ``lse``, by chunks."""
    n, v = x.shape[0], w.shape[0]
    st = _stat_dtype(x.dtype)
    tb = _triton_module(x)
    work = _Work(min(chunk, max(n, 1)), v, x.dtype, x.device, deriv=False, probs=tb is None, logits=tb is None)
    lse = torch.empty(n, dtype=st, device=x.device)
    zy = torch.empty(n, dtype=st, device=x.device)
    ent = torch.empty(n, dtype=st, device=x.device)
    if tb is not None:  # one kernel per chunk: lse, z_y and the entropy in one pass
        bc, y = None if b is None else b.detach().contiguous(), y.contiguous()
        for s in _rows(n, chunk):
            e = min(s + chunk, n)
            tb.linear_lpe_chunk(_product(x[s:e], w, work), None, bc, y[s:e], cap, lse[s:e], ent[s:e], zy=zy[s:e])
        return zy.sub_(lse), ent, lse
    for s in _rows(n, chunk):
        e = min(s + chunk, n)
        z = _logits(x[s:e], w, b, cap, work)
        torch.gather(z, 1, y[s:e].unsqueeze(1), out=zy[s:e].unsqueeze(1))
        m = z.amax(1)
        m.masked_fill_(torch.isinf(m), 0.0)
        ez = torch.sub(z, m.unsqueeze(1), out=work.p[: e - s]).exp_()
        ssum = ez.sum(1)
        torch.add(m, ssum.log(), out=lse[s:e])
        ez_dot_z = z.mul_(ez).nan_to_num_(0.0).sum(1)  # 0 * -inf = 0 for impossible classes
        torch.sub(lse[s:e], ez_dot_z.div_(ssum), out=ent[s:e])
    return zy.sub_(lse), ent, lse


def _lpe_backward(x, w, b, y, cap, chunk, lse, ent, gl, gh, needs):
    """``dz_c = gl ([c == y] - p_c) - gh p_c (log p_c + H)``, the logits recomputed by chunks."""
    n, v = x.shape[0], w.shape[0]
    st = _stat_dtype(x.dtype)
    grads = _Grads(x, w, b, needs, st)
    tb = _triton_module(x)
    work = _Work(min(chunk, max(n, 1)), v, x.dtype, x.device, deriv=cap is not None and tb is None, probs=tb is None)
    if tb is not None:  # one kernel per chunk: the gradient from the saved lse and entropy
        bc, y = None if b is None else b.detach().contiguous(), y.contiguous()
        gl = None if gl is None else gl.contiguous()
        gh = None if gh is None else gh.contiguous()
        for s in _rows(n, chunk):
            e = min(s + chunk, n)
            g = work.z[: e - s]
            tb.linear_lpe_chunk(_product(x[s:e], w, work), g, bc, y[s:e], cap, lse[s:e], ent[s:e],
                                gl=_part(gl, s, e), gh=_part(gh, s, e))
            grads.add(g, x[s:e], w, s, e, work)
        return grads.finish(w, b)
    for s in _rows(n, chunk):
        e = min(s + chunk, n)
        xc = x[s:e]
        z = _logits(xc, w, b, cap, work)
        deriv = _softcap_derivative(z, cap, work) if cap is not None else None
        logp = z.sub_(lse[s:e].unsqueeze(1))
        p = torch.exp(logp, out=work.p[: e - s])
        if gh is not None:
            g = logp.add_(ent[s:e].unsqueeze(1)).mul_(gh[s:e].unsqueeze(1))  # gh (log p + H)
            if gl is not None:
                g.add_(gl[s:e].unsqueeze(1))
            g.mul_(p).neg_().nan_to_num_(0.0, 0.0, 0.0)  # p = 0 where log p = -inf
        else:
            g = logp.copy_(p).mul_((-gl[s:e]).unsqueeze(1))
        if gl is not None:
            g.scatter_add_(1, y[s:e].unsqueeze(1), gl[s:e].unsqueeze(1))
        if deriv is not None:
            g.mul_(deriv)
        grads.add(g, xc, w, s, e, work)
    return grads.finish(w, b)


def _formula_lpe(x, w, b, y, cap):
    st = _stat_dtype(x.dtype)
    z = x.to(st) @ w.to(st).t()
    if b is not None:
        z = z + b.to(st)
    if cap is not None:
        z = cap * torch.tanh(z / cap)
    logp = torch.log_softmax(z, 1)
    return logp.gather(1, y.unsqueeze(1)).squeeze(1), -(logp.exp() * logp).sum(1)


class _LogProbsEntropy(torch.autograd.Function):
    @staticmethod
    def forward(x, w, b, y, cap, chunk):
        return _lpe_forward(x, w, b, y, cap, chunk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, y, cap, chunk = inputs
        logp, ent, lse = output
        ctx.mark_non_differentiable(lse)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, w, b, y, lse, ent)
        ctx.cap, ctx.chunk = cap, chunk

    @staticmethod
    def vmap(info, in_dims, *args):
        _vmap_refused("linear_log_probs_and_entropy")

    @staticmethod
    def backward(ctx, gl, gh, _):
        x, w, b, y, lse, ent = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        if gl is None and gh is None:
            return (None,) * 6
        if torch.is_grad_enabled():
            def formula(x, w, b):
                return _formula_lpe(x, w, b, y, ctx.cap)

            grads = _second_order(formula, (x, w, b), needs, (gl, gh))
        else:
            st = lse.dtype
            grads = _lpe_backward(x, w, b, y, ctx.cap, ctx.chunk, lse, ent,
                                  None if gl is None else gl.to(st), None if gh is None else gh.to(st), needs)
        return (*grads, None, None, None)


# ------------------------------------------------------------------------- validation


def _fail(cls, fn, msg):
    raise cls(f"{fn}: {msg}")


def _validate_tensors(fn, hidden, weight, target, bias):
    """Static checks of the four tensors; returns ``(x (N, D), y (N,), lead shape, V)``."""
    for name, t in (("hidden", hidden), ("weight", weight), ("target", target)):
        if not isinstance(t, torch.Tensor):
            _fail(ProblossTypeError, fn, f"`{name}` must be a torch tensor; got {type(t).__name__}.")
    if bias is not None and not isinstance(bias, torch.Tensor):
        _fail(ProblossTypeError, fn, f"`bias` must be a torch tensor or None; got {type(bias).__name__}.")
    for name, t in (("hidden", hidden), ("weight", weight), ("target", target), ("bias", bias)):
        if t is not None and t.layout is not torch.strided:
            _fail(ProblossTypeError, fn, f"`{name}` is a {t.layout} tensor; pass `{name}.to_dense()`.")
    if not hidden.is_floating_point():
        _fail(ProblossTypeError, fn, f"`hidden` must be floating point (float32, float16, bfloat16 or float64); got {hidden.dtype}.")
    if hidden.ndim < 1:
        _fail(ShapeError, fn, "`hidden` must have shape (..., D), the hidden size last; got a 0-d tensor.")
    d = hidden.shape[-1]
    if weight.ndim != 2 or weight.shape[1] != d:
        _fail(ShapeError, fn, f"`weight` must have shape (V, D) = (vocabulary, {d}) to match `hidden`'s last axis "
                              f"(as nn.Linear(D, V).weight); got {tuple(weight.shape)}.")
    v = weight.shape[0]
    if v == 0:
        _fail(ShapeError, fn, "`weight` has 0 rows: the vocabulary needs at least one class.")
    if weight.dtype != hidden.dtype:
        _fail(ProblossTypeError, fn, f"`weight` is {weight.dtype} but `hidden` is {hidden.dtype}; "
                                     f"cast one of them, e.g. `weight.to({hidden.dtype})`.")
    if bias is not None:
        if tuple(bias.shape) != (v,):
            _fail(ShapeError, fn, f"`bias` must have shape ({v},), one value per row of `weight`; got {tuple(bias.shape)}.")
        if bias.dtype != hidden.dtype:
            _fail(ProblossTypeError, fn, f"`bias` is {bias.dtype} but `hidden` is {hidden.dtype}; cast it with `bias.to({hidden.dtype})`.")
    for name, t in (("weight", weight), ("target", target), ("bias", bias)):
        if t is not None and t.device != hidden.device:
            _fail(ArgumentError, fn, f"`{name}` is on {t.device} but `hidden` is on {hidden.device}; "
                                     f"move it with `{name}.to(hidden.device)`.")
    lead = tuple(hidden.shape[:-1])
    if tuple(target.shape) != lead:
        _fail(ShapeError, fn, f"`target` must have `hidden`'s shape without its last axis, {lead}, one class index per "
                              f"token; got {tuple(target.shape)}.")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        _fail(ProblossTypeError, fn, f"`target` must hold integer class indices; got {target.dtype}. Cast it with `.long()`.")
    return hidden.reshape(-1, d), target.reshape(-1).long(), lead, v


def _check_labels(fn, y, v, ignore_index):
    """Eager value check: every target in ``[0, V)`` or equal to ``ignore_index``."""
    if not C.eager(y):
        return
    bad = (y < 0) | (y >= v)
    if ignore_index is not None:
        bad &= y != ignore_index
    if C.truth(bad.any(), False):
        pos = int(bad.nonzero()[0, 0])
        value = int(y[pos])
        allowed = f" or equal `ignore_index`={ignore_index}" if ignore_index is not None else ""
        _fail(LabelValueError, fn, f"`target` holds class index {value} at flat position {pos}, but `weight` has "
                                   f"{v} rows (classes), so targets must be in [0, {v - 1}]{allowed}.")


def _check_cap(fn, softcap):
    if softcap is None:
        return None
    if isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or not math.isfinite(softcap) or softcap <= 0:
        _fail(ArgumentError, fn, f"`softcap` must be None or a finite number > 0 (Gemma 2 uses 30.0); got {softcap!r}.")
    return float(softcap)


def _check_chunk(fn, chunk_size):
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        _fail(ArgumentError, fn, f"`chunk_size` must be None (automatic) or an integer >= 1 (rows per chunk); got {chunk_size!r}.")
    return chunk_size


def _check_options(fn, ignore_index, label_smoothing, z_loss, reduction, recompute):
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        _fail(ArgumentError, fn, f"`ignore_index` must be an integer (default -100); got {ignore_index!r}.")
    if reduction not in _REDUCTIONS:
        _fail(ArgumentError, fn, f"`reduction` must be one of 'mean', 'sum', 'none'; got {reduction!r}.")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing <= 1.0:
        _fail(ArgumentError, fn, f"`label_smoothing` must be a number in [0, 1]; got {label_smoothing!r}.")
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or not math.isfinite(z_loss) or z_loss < 0:
        _fail(ArgumentError, fn, f"`z_loss` must be a finite number >= 0 (PaLM uses 1e-4); got {z_loss!r}.")
    if not isinstance(recompute, bool):
        _fail(ArgumentError, fn, f"`recompute` must be True or False; got {recompute!r}.")
    return float(label_smoothing), float(z_loss)


def _check_class_weight(fn, class_weight, v, device):
    if class_weight is None:
        return None
    if not isinstance(class_weight, torch.Tensor) or not class_weight.is_floating_point() or tuple(class_weight.shape) != (v,):
        got = f"{class_weight.dtype} of shape {tuple(class_weight.shape)}" if isinstance(class_weight, torch.Tensor) else type(class_weight).__name__
        _fail(ShapeError, fn, f"`class_weight` must be a floating tensor of shape ({v},), one weight per class; got {got}.")
    return class_weight.detach().to(device)


# ---------------------------------------------------------------------------- the API


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    class_weight: torch.Tensor | None = None,
    chunk_size: int | None = None,
    recompute: bool = False,
) -> torch.Tensor:
    """``F.cross_entropy(F.linear(hidden, weight, bias), target)`` without the logits.

    For each token ``n`` with target ``y`` (not ``ignore_index``), logits
    ``z = cap tanh((x_n W^T + b) / cap)`` (``z = x_n W^T + b`` without ``softcap``),
    ``lse = logsumexp(z)``, class weights ``w`` (ones by default), ``V`` classes and
    smoothing ``e``::

        l_n = (1 - e) w_y (lse - z_y) + (e / V) sum_c w_c (lse - z_c) + z_loss lse^2

    as ``F.cross_entropy`` (with ``label_smoothing`` and ``weight``) plus PaLM's z-loss.
    ``"mean"`` is ``sum_n CE_n / sum_n w_{y_n} + z_loss mean_n(lse_n^2)`` over the
    non-ignored tokens (``F.cross_entropy``'s normalisation; no class weight on the
    z-loss) and is 0 when every token is ignored; ``"sum"`` sums ``l_n``; ``"none"``
    returns ``l_n`` with ``hidden``'s leading shape (0 at ignored tokens).

    Parameters
    ----------
    hidden : Tensor (..., D)
        Hidden states, float32, float16, bfloat16 or float64; any leading shape.
    weight : Tensor (V, D)
        The classifier (``lm_head.weight``), ``hidden``'s dtype and device.
    target : Tensor (...)
        Integer class indices, ``hidden``'s leading shape.
    bias : Tensor (V,), optional
    ignore_index : int, default -100
        Tokens with this target are dropped before any matrix product.
    label_smoothing : float in [0, 1], default 0.0
    z_loss : float >= 0, default 0.0
        Coefficient of ``lse^2`` (PaLM uses 1e-4).
    softcap : float > 0, optional
        Gemma 2's logit cap ``c``: ``c tanh(z / c)`` before the softmax.
    reduction : {"mean", "sum", "none"}, default "mean"
    class_weight : Tensor (V,), optional
        Per-class weights, as ``F.cross_entropy``'s ``weight`` (no gradient flows to it).
    chunk_size : int, optional
        Rows (tokens) per chunk; by default :func:`auto_chunk_rows` (a memory budget).
    recompute : bool, default False
        Recompute the logits in the backward (four matrix products) instead of computing
        the gradients in the forward (three): ``dX`` and ``dW`` then do not live from the
        forward to the backward.  ``reduction="none"`` always recomputes.

    Returns
    -------
    Tensor
        float32 (float64 for float64 inputs): a scalar, or ``hidden``'s leading shape
        for ``"none"``.

    Notes
    -----
    The log-sum-exp, the softmax and ``dW`` are computed in float32 for float16/bfloat16
    inputs; the products ``X W^T`` and ``G W`` run in the inputs' dtype.  One chunk of
    ``rows x V`` float32 logits is alive at a time.  Counting the non-ignored tokens is
    one host synchronisation.  Gradients of every order are exact: under
    ``create_graph=True`` the backward differentiates the formula with all logits at
    once.  ``torch.func.grad`` works; ``torch.func.vmap`` raises an
    :class:`~probloss.ArgumentError`.  Under ``torch.compile`` the chunk loop runs eagerly.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from probloss.torch import linear_cross_entropy
    >>> g = torch.Generator().manual_seed(0)
    >>> x, w = torch.randn(2, 5, 8, generator=g), torch.randn(11, 8, generator=g)
    >>> y = torch.randint(0, 11, (2, 5), generator=g)
    >>> ours = linear_cross_entropy(x, w, y, chunk_size=3)
    >>> torch.allclose(ours, F.cross_entropy(F.linear(x, w).flatten(0, 1), y.flatten()))
    True
    """
    fn = "linear_cross_entropy"
    x, y, lead, v = _validate_tensors(fn, hidden, weight, target, bias)
    eps, zl = _check_options(fn, ignore_index, label_smoothing, z_loss, reduction, recompute)
    cap, chunk = _check_cap(fn, softcap), _check_chunk(fn, chunk_size)
    cw = _check_class_weight(fn, class_weight, v, x.device)
    _check_labels(fn, y, v, ignore_index)
    return _linear_ce(x, weight, y, bias, lead, ignore_index, eps, zl, cap, reduction, cw, chunk, recompute)


@torch.compiler.disable
def _linear_ce(x, weight, y, bias, lead, ignore_index, eps, zl, cap, reduction, cw, chunk, recompute):
    n, v = x.shape[0], weight.shape[0]
    st = _stat_dtype(x.dtype)
    valid = y != ignore_index
    n_valid = int(valid.sum())  # the one host synchronisation
    idx = None
    if n_valid < n:
        idx = valid.nonzero().squeeze(1)
        x, y = x.index_select(0, idx), y.index_select(0, idx)
    if chunk is None:
        chunk = auto_chunk_rows(x.shape[0], v, x.dtype, x.device, softcap=cap is not None)
    cw = None if cw is None else cw.to(st)
    b = bias
    wy = None if cw is None else cw[y]
    a = torch.full((n_valid,), 1.0 - eps, dtype=st, device=x.device) if wy is None else wy * (1.0 - eps)
    beta = torch.full((n_valid,), eps / v, dtype=st, device=x.device) if eps else None
    gam = torch.full((n_valid,), zl, dtype=st, device=x.device) if zl else None
    if reduction == "mean":
        denom = wy.sum() if wy is not None else torch.tensor(float(n_valid), dtype=st, device=x.device)
        denom = torch.where(denom == 0, torch.ones_like(denom), denom)  # every token ignored: 0, not NaN
        a = a / denom
        beta = None if beta is None else beta / denom
        gam = None if gam is None else gam / max(n_valid, 1)
    tensors = (x, weight, b)
    needs = tuple(t is not None and t.requires_grad for t in tensors)
    fused = reduction != "none" and not recompute and torch.is_grad_enabled() and any(needs)
    if fused:
        return _FusedCE.apply(x, weight, b, y, a, beta, gam, cw, cap, chunk, needs)[0]
    per_token = _TokenCE.apply(x, weight, b, y, a, beta, gam, cw, cap, chunk)[0]
    if reduction != "none":
        return per_token.sum()
    if idx is not None:
        per_token = torch.zeros(n, dtype=per_token.dtype, device=per_token.device).index_copy(0, idx, per_token)
    return per_token.reshape(lead)


class LogProbsEntropy(NamedTuple):
    """Per-token outputs of :func:`linear_log_probs_and_entropy` (float32, ``hidden``'s leading shape)."""

    log_probs: torch.Tensor
    """``log softmax(z)[target]``: the log-probability of each token's target."""
    entropy: torch.Tensor
    """``-sum_c p_c log p_c`` of each token's softmax."""


def linear_log_probs_and_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> LogProbsEntropy:
    """Per-token ``log p(target)`` and softmax entropy of ``hidden @ weight.T + bias``, fused.

    For RL (policy-gradient, PPO, GRPO) and distillation: both come from one pass over
    chunks of the logits, which never exist whole, and both are differentiable (the
    backward recomputes the logits by chunks: four matrix products in all).  With
    ``softcap``, ``z = c tanh((x W^T + b) / c)``.  Every target must be in ``[0, V)``
    (mask padded positions with a valid class and ignore their outputs).

    Returns
    -------
    LogProbsEntropy
        ``(log_probs, entropy)``, float32 (float64 for float64 inputs), each of
        ``hidden``'s leading shape.

    Examples
    --------
    >>> import torch
    >>> from probloss.torch import linear_log_probs_and_entropy
    >>> x, w = torch.zeros(3, 4), torch.zeros(8, 4)   # uniform over 8 classes
    >>> out = linear_log_probs_and_entropy(x, w, torch.tensor([0, 5, 7]))
    >>> [round(float(v), 4) for v in out.log_probs], round(float(out.entropy[0]), 4)
    ([-2.0794, -2.0794, -2.0794], 2.0794)
    """
    fn = "linear_log_probs_and_entropy"
    x, y, lead, v = _validate_tensors(fn, hidden, weight, target, bias)
    cap, chunk = _check_cap(fn, softcap), _check_chunk(fn, chunk_size)
    _check_labels(fn, y, v, None)
    return _linear_lpe(x, weight, y, bias, lead, cap, chunk)


@torch.compiler.disable
def _linear_lpe(x, weight, y, bias, lead, cap, chunk):
    if chunk is None:
        chunk = auto_chunk_rows(x.shape[0], weight.shape[0], x.dtype, x.device, softcap=cap is not None, buffers=2)
    logp, ent, _ = _LogProbsEntropy.apply(x, weight, bias, y, cap, chunk)
    return LogProbsEntropy(logp.reshape(lead), ent.reshape(lead))


class LinearCrossEntropy(torch.nn.Module):
    """:func:`linear_cross_entropy` as a module: ``forward(hidden, weight, target, bias=None)``.

    Holds the options (``class_weight`` as a buffer); the classifier weight and bias are
    passed to ``forward``, so the module can sit next to a model's own ``lm_head``:
    ``loss = LinearCrossEntropy()(h, model.lm_head.weight, labels)``.

    Examples
    --------
    >>> import torch
    >>> from probloss.torch import LinearCrossEntropy
    >>> loss = LinearCrossEntropy(z_loss=1e-4)
    >>> float(loss(torch.zeros(2, 3, 4), torch.zeros(6, 4), torch.zeros(2, 3, dtype=torch.long))) > 0
    True
    """

    def __init__(
        self,
        *,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        softcap: float | None = None,
        reduction: str = "mean",
        class_weight: torch.Tensor | None = None,
        chunk_size: int | None = None,
        recompute: bool = False,
    ):
        super().__init__()
        fn = "LinearCrossEntropy"
        _check_options(fn, ignore_index, label_smoothing, z_loss, reduction, recompute)
        _check_cap(fn, softcap)
        _check_chunk(fn, chunk_size)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.reduction = reduction
        self.register_buffer("class_weight", class_weight)
        self.chunk_size = chunk_size
        self.recompute = recompute

    def forward(self, hidden, weight, target, bias=None):
        return linear_cross_entropy(
            hidden, weight, target, bias,
            ignore_index=self.ignore_index, label_smoothing=self.label_smoothing, z_loss=self.z_loss,
            softcap=self.softcap, reduction=self.reduction, class_weight=self.class_weight,
            chunk_size=self.chunk_size, recompute=self.recompute,
        )

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, z_loss={self.z_loss}, "
            f"softcap={self.softcap}, reduction={self.reduction!r}, chunk_size={self.chunk_size}, recompute={self.recompute}"
        )
