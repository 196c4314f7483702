"""Vocabulary-parallel fused linear cross-entropy: ``CE(X W^T + b, y)`` with ``W`` split by rows.

Tensor parallelism splits an LM head ``W`` (``V x D``) over the ranks of a group: rank
``r`` holds the rows (classes) ``[s_r, s_r + V_r)`` and the same hidden states ``X``
(``N x D``).  Per chunk of ``c`` tokens each rank computes its logits
``Z_c = X_c W_r^T + b_r`` (one ``c x V_r`` float32 buffer, reused), then::

    m   = max over ranks of the row maxima                  all-reduce MAX of c floats
    S   = sum over ranks of sum_j exp(Z_cj - m)             all-reduce SUM of 2c floats:
    T   = sum over ranks of (a z_y + beta sum_j w_j z_j)    S and the target terms together
    lse = m + log S
    l   = (a + beta W) lse - T + gamma lse^2                (see probloss.torch.linear_cross_entropy)

and, once ``lse`` is known, the chunk's ``G = dL/dZ_c`` (its softmax part needs the
global ``S``), ``dX_c += G W_r`` (this rank's part of the hidden gradient),
``dW_r += G^T X_c`` and ``db_r += sum G``: three matrix products per chunk, no logits
beyond the chunk, nothing of size ``N x V`` gathered.  The forward sends 3 floats per
token; ``dW_r`` and ``db_r`` belong to this rank's shard and are not communicated.

The hidden states are shared by the ranks, so the gradient of ``X`` is the **sum** of
the ranks' parts: the backward all-reduces it (``N x D``) unless
``reduce_hidden_grad=False``, for a framework that does it itself (Megatron's
``copy_to_tensor_model_parallel_region``, whose backward is that all-reduce).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from ..._errors import ArgumentError, LabelValueError, ProblossTypeError, ShapeError
from .. import _linear as L
from ._group import as_replicated, is_dtensor, local_of, replicated_local, resolve_group, shard_of
from ._vocab import _no_second_order, _no_vmap, _token_count

__all__ = ["linear_cross_entropy"]

_REDUCTIONS = ("mean", "sum", "none", "global_mean")
_FN = "linear_cross_entropy"


def _fail(cls, msg):
    raise cls(f"{_FN}: {msg}")


class _Coef:
    """Per-token coefficients: ``a`` of the NLL, ``beta`` of the smoothing term, ``gam``
    of the z-loss (the reduction's divisor folded in), the local class weights ``cw``
    and their global sum ``total_w``."""

    def __init__(self, a, beta, gam, cw, total_w):
        self.a, self.beta, self.gam, self.cw, self.total_w = a, beta, gam, cw, total_w


def _chunk_stats(z, y_loc, hit, co, s, e, group):
    """The chunk's logits ``z`` become ``exp(z - m)`` in place; returns ``(m, S, T)``."""
    c, vr = z.shape
    m = z.amax(1) if vr else torch.full((c,), -math.inf, dtype=z.dtype, device=z.device)
    dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # a row of -inf gives lse = -inf, not NaN
    stats = torch.zeros((2, c), dtype=z.dtype, device=z.device)
    if vr:
        zy = z.gather(1, y_loc[s:e, None])[:, 0]
        stats[1] = torch.where(hit[s:e], zy, torch.zeros_like(zy)) * co.a[s:e]
        if co.beta is not None:
            stats[1] += co.beta[s:e] * (z.sum(1) if co.cw is None else z @ co.cw)
    stats[0] = z.sub_(m[:, None]).exp_().sum(1)
    dist.all_reduce(stats, group=group)
    return m, stats[0], stats[1]


def _chunk_grad(p, y_loc, hit, co, lse, s, e, deriv):
    """``p`` (the softmax, in place) becomes ``dL/dZ`` of the chunk."""
    coef = co.a[s:e]
    if co.beta is not None:
        coef = coef + co.beta[s:e] * co.total_w
    if co.gam is not None:
        coef = coef + 2.0 * co.gam[s:e] * lse
    p.mul_(coef[:, None])
    if p.shape[1]:
        p.scatter_add_(1, y_loc[s:e, None], -(co.a[s:e] * hit[s:e])[:, None])
    if co.beta is not None:
        p.sub_(co.beta[s:e, None] if co.cw is None else torch.outer(co.beta[s:e], co.cw))
    if deriv is not None:
        p.mul_(deriv)
    return p


def _sweep(x, w, b, y_loc, hit, co, cap, chunk, group, needs, lse_in=None, scale=None):
    """One pass over the chunks.  Without ``lse_in``: the forward, returning the per-token
    loss, ``lse`` and (with ``needs``) the gradients.  With ``lse_in``: the backward of
    the recomputing mode (``scale`` the per-token upstream gradient), no collective."""
    n, vr = x.shape[0], w.shape[0]
    st = L._stat_dtype(x.dtype)
    grads = L._Grads(x, w, b, needs, st) if any(needs) else None
    work = L._Work(min(chunk, max(n, 1)), vr, x.dtype, x.device, deriv=grads is not None and cap is not None)
    loss = torch.empty(n, dtype=st, device=x.device)
    lse = torch.empty(n, dtype=st, device=x.device) if lse_in is None else lse_in
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        xc = x[s:e]
        z = L._logits(xc, w, b, cap, work)
        deriv = L._softcap_derivative(z, cap, work) if work.deriv is not None else None
        if lse_in is None:
            m, total, t = _chunk_stats(z, y_loc, hit, co, s, e, group)
            torch.add(m, total.log(), out=lse[s:e])
            lc = lse[s:e]
            loss[s:e] = (co.a[s:e] + (0.0 if co.beta is None else co.beta[s:e] * co.total_w)) * lc - t
            if co.gam is not None:
                loss[s:e] += co.gam[s:e] * lc * lc
            if grads is not None:
                z.div_(total[:, None])  # the softmax
        else:
            lc = lse[s:e]
            z.sub_(lc[:, None]).exp_()
        if grads is not None:
            g = _chunk_grad(z, y_loc, hit, co, lse[s:e], s, e, deriv)
            if scale is not None:
                g.mul_(scale[s:e, None])
            grads.add(g, xc, w, s, e, work)
    return loss, lse, grads


def _reduce_dx(dx, group, reduce_hidden):
    if dx is not None and reduce_hidden:
        dist.all_reduce(dx, group=group)
    return dx


class _FusedVP(torch.autograd.Function):
    """``sum(loss)``; its forward computes this rank's gradients too (three products)."""

    @staticmethod
    def forward(x, w, b, y_loc, hit, co, cap, chunk, group, needs, reduce_hidden):
        loss, _, grads = _sweep(x, w, b, y_loc, hit, co, cap, chunk, group, needs)
        dx, dw, db = grads.finish(w, b)
        return loss.sum(), *(x.new_empty(0) if t is None else t for t in (dx, dw, db))

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, y_loc, hit, co, cap, chunk, group, needs, reduce_hidden = inputs
        _, dx, dw, db = output
        ctx.mark_non_differentiable(dx, dw, db)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(dx, dw, db)
        ctx.needs, ctx.group, ctx.reduce_hidden = needs, group, reduce_hidden

    @staticmethod
    def vmap(info, in_dims, *args):
        _no_vmap(_FN)

    @staticmethod
    def backward(ctx, g, *_):
        if g is None:
            return (None,) * 11
        if torch.is_grad_enabled():
            _no_second_order(_FN)
        needs = tuple(n and r for n, r in zip(ctx.needs, ctx.needs_input_grad[:3]))
        dx, dw, db = (t * g if n else None for t, n in zip(ctx.saved_tensors, needs))
        return (_reduce_dx(dx, ctx.group, ctx.reduce_hidden), dw, db) + (None,) * 8


class _TokenVP(torch.autograd.Function):
    """Per-token loss; the backward recomputes the logits by chunks (no collective but
    the hidden gradient's all-reduce)."""

    @staticmethod
    def forward(x, w, b, y_loc, hit, co, cap, chunk, group, reduce_hidden):
        loss, lse, _ = _sweep(x, w, b, y_loc, hit, co, cap, chunk, group, (False, False, False))
        return loss, lse

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, y_loc, hit, co, cap, chunk, group, reduce_hidden = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, w, b, y_loc, hit, output[1])
        ctx.co, ctx.cap, ctx.chunk, ctx.group, ctx.reduce_hidden = co, cap, chunk, group, reduce_hidden

    @staticmethod
    def vmap(info, in_dims, *args):
        _no_vmap(_FN)

    @staticmethod
    def backward(ctx, g, _):
        if g is None:
            return (None,) * 10
        if torch.is_grad_enabled():
            _no_second_order(_FN)
        x, w, b, y_loc, hit, lse = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        _, _, grads = _sweep(x, w, b, y_loc, hit, ctx.co, ctx.cap, ctx.chunk, ctx.group, needs, lse, g.to(lse.dtype))
        dx, dw, db = grads.finish(w, b) if grads is not None else (None, None, None)
        return (_reduce_dx(dx, ctx.group, ctx.reduce_hidden), dw, db) + (None,) * 7


# ------------------------------------------------------------------------- validation


def _validate(hidden, weight, target, bias):
    for name, t in (("hidden", hidden), ("weight", weight), ("target", target), ("bias", bias)):
        if t is None and name == "bias":
            continue
        if not isinstance(t, torch.Tensor):
            _fail(ProblossTypeError, f"`{name}` must be a torch tensor (or a DTensor); got {type(t).__name__}.")
        if t.layout is not torch.strided:
            _fail(ProblossTypeError, f"`{name}` is a {t.layout} tensor; pass `{name}.to_dense()`.")
    if not hidden.is_floating_point():
        _fail(ProblossTypeError, f"`hidden` must be floating point; got {hidden.dtype}.")
    if hidden.ndim < 1:
        _fail(ShapeError, "`hidden` must have shape (..., D), the hidden size last; got a 0-d tensor.")
    d = hidden.shape[-1]
    if weight.ndim != 2 or weight.shape[1] != d:
        _fail(ShapeError, f"`weight` must be this rank's rows of the classifier, shape (V_r, {d}) to match `hidden`'s "
                          f"last axis; got {tuple(weight.shape)}.")
    if weight.dtype != hidden.dtype:
        _fail(ProblossTypeError, f"`weight` is {weight.dtype} but `hidden` is {hidden.dtype}; cast one of them.")
    if bias is not None and (tuple(bias.shape) != (weight.shape[0],) or bias.dtype != hidden.dtype):
        _fail(ShapeError, f"`bias` must be this rank's slice, shape ({weight.shape[0]},) and dtype {hidden.dtype}; "
                          f"got {tuple(bias.shape)} {bias.dtype}.")
    lead = tuple(hidden.shape[:-1])
    if tuple(target.shape) != lead:
        _fail(ShapeError, f"`target` must have `hidden`'s shape without its last axis, {lead}; got {tuple(target.shape)}.")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        _fail(ProblossTypeError, f"`target` must hold integer class indices; got {target.dtype}. Cast it with `.long()`.")
    for name, t in (("weight", weight), ("target", target), ("bias", bias)):
        if t is not None and t.device != hidden.device:
            _fail(ArgumentError, f"`{name}` is on {t.device} but `hidden` is on {hidden.device}.")
    return hidden.reshape(-1, d), target.reshape(-1).long(), lead


def _check_labels(y, vocab, ignore_index):
    """The labels are the same on every rank, so every rank raises alike (before any collective)."""
    from ... import _checks as C

    if not C.eager(y):
        return
    bad = ((y < 0) | (y >= vocab)) & (y != ignore_index)
    if C.truth(bad.any(), False):
        pos = int(bad.nonzero()[0, 0])
        _fail(LabelValueError, f"`target` holds class index {int(y[pos])} at flat position {pos}, but the vocabulary has "
                               f"{vocab} classes over all ranks, so targets must be in [0, {vocab - 1}] or equal "
                               f"`ignore_index`={ignore_index}.")


# ---------------------------------------------------------------------------- the API


@torch.compiler.disable
def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    group=None,
    vocab_start: int | None = None,
    vocab_size: int | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    reduction: str = "mean",
    num_tokens=None,
    class_weight: torch.Tensor | None = None,
    chunk_size: int | None = None,
    recompute: bool = False,
    reduce_hidden_grad: bool = True,
) -> torch.Tensor:
    """:func:`probloss.torch.linear_cross_entropy` with the classifier split over a group's ranks.

    Each rank passes the same ``hidden`` (``..., D``) and ``target``, and its rows of the
    classifier: ``weight`` (``V_r x D``, classes ``[vocab_start, vocab_start + V_r)``) and
    ``bias`` (``V_r``).  The result, on every rank, is the unsharded loss of the whole
    classifier::

        l_n = (1 - e) w_y (lse - z_y) + (e / V) sum_c w_c (lse - z_c) + z_loss lse^2

    No rank ever holds more than one chunk of its ``c x V_r`` logits, and no logits are
    gathered: per chunk, the forward all-reduces the row maxima (``c`` floats) and the sums
    of exponentials with the target terms (``2c`` floats), 12 bytes per token in all.

    Parameters
    ----------
    hidden : Tensor (..., D)
        The hidden states, the same on every rank (a plain tensor or a replicated DTensor).
    weight : Tensor (V_r, D) or DTensor
        This rank's rows of the classifier; a DTensor ``Shard(0)`` over one mesh
        dimension brings its own group and offsets.
    target : Tensor (...)
        Class indices of the whole vocabulary (or ``ignore_index``), the same on every rank.
    bias : Tensor (V_r,), optional
        This rank's slice of the bias (a DTensor ``Shard(0)`` with a DTensor weight).
    group : ProcessGroup, optional
        The tensor-parallel group (default: the world).
    vocab_start, vocab_size : int, optional
        This rank's first class and the whole vocabulary; when left out, one all-gather
        of the shard sizes.
    ignore_index, label_smoothing, z_loss, softcap, class_weight, chunk_size, recompute
        As in :func:`probloss.torch.linear_cross_entropy`; ``class_weight`` holds one weight
        per class of the whole vocabulary (each rank reads its slice and the total).
        ``chunk_size`` must be the same on every rank (the chunks' collectives pair up);
        the automatic one is.
    reduction : {"mean", "sum", "none", "global_mean"}, default "mean"
        ``"global_mean"`` divides the sum by ``num_tokens`` (the valid tokens of the whole
        step, from :func:`count_valid_tokens`) instead of this call's token count.
    num_tokens : int or 0-d Tensor, optional
        The divisor of ``"global_mean"``.
    reduce_hidden_grad : bool, default True
        Every rank's backward gives only its classes' part of ``dL/dhidden``; the true
        gradient is their sum.  ``True`` all-reduces it (``N x D`` floats) in the
        backward, so ``hidden.grad`` is complete on every rank.  Pass ``False`` when your
        framework sums it itself (Megatron's ``copy_to_tensor_model_parallel_region``
        before the LM head, or a DTensor input redistributed from ``Partial``).

    Returns
    -------
    Tensor
        float32 (float64 for float64 inputs): a scalar, or ``hidden``'s leading shape for
        ``"none"``; the same on every rank (a replicated DTensor for a DTensor weight).

    Notes
    -----
    Gradients in the forward (three products per chunk) unless ``recompute=True`` or
    ``reduction="none"``, which keep one ``lse`` per token and recompute the logits in
    the backward (four products; no collective there but the hidden gradient's).
    Ignored tokens are dropped before any product (every rank drops the same ones).
    Gradients of gradients and ``torch.func.vmap`` raise an :class:`~probloss.ArgumentError`.

    Examples
    --------
    >>> import torch, torch.distributed as dist
    >>> from probloss.torch import linear_cross_entropy as unsharded
    >>> from probloss.torch.distributed import linear_cross_entropy, vocab_shard
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> g = torch.Generator().manual_seed(0)
    >>> x, w = torch.randn(6, 8, generator=g), torch.randn(11, 8, generator=g)
    >>> y = torch.randint(0, 11, (6,), generator=g)
    >>> rows = vocab_shard(11)
    >>> ours = linear_cross_entropy(x, w[rows], y, vocab_start=rows.start, vocab_size=11)
    >>> bool(torch.allclose(ours, unsharded(x, w, y)))
    True
    >>> dist.destroy_process_group()
    """
    mesh = None
    if is_dtensor(weight):
        if group is not None or vocab_start is not None or vocab_size is not None:
            _fail(ArgumentError, "`group`, `vocab_start` and `vocab_size` come from the DTensor `weight`; leave them out.")
        local = local_of(_FN, "weight", weight, 0)
        w, group, shard, mesh = local.tensor, local.group, local.shard, local.mesh
        b = None if bias is None else local_of(_FN, "bias", bias, 0).tensor if is_dtensor(bias) else bias
        hidden = replicated_local(_FN, "hidden", hidden)
        target = replicated_local(_FN, "target", target)
    else:
        group = resolve_group(_FN, group)
        w, b = weight, bias
        shard = None
    x, y, lead = _validate(hidden, w, target, b)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        _fail(ArgumentError, f"`ignore_index` must be an integer (default -100); got {ignore_index!r}.")
    if reduction not in _REDUCTIONS:
        _fail(ArgumentError, f"`reduction` must be one of 'mean', 'sum', 'none', 'global_mean'; got {reduction!r}.")
    eps, zl = L._check_options(_FN, ignore_index, label_smoothing, z_loss, "mean", recompute)
    cap, chunk = L._check_cap(_FN, softcap), L._check_chunk(_FN, chunk_size)
    if not isinstance(reduce_hidden_grad, bool):
        _fail(ArgumentError, f"`reduce_hidden_grad` must be True or False; got {reduce_hidden_grad!r}.")
    if shard is None:
        shard = shard_of(_FN, w.shape[0], group, vocab_start, vocab_size, x.device)
    vocab = shard.vocab_size
    if vocab == 0:
        _fail(ShapeError, "the classifier has 0 rows over all ranks: the vocabulary needs at least one class.")
    cw = L._check_class_weight(_FN, class_weight, vocab, x.device)
    _check_labels(y, vocab, ignore_index)
    if reduction == "global_mean":
        divisor = _token_count(_FN, num_tokens, torch.empty((), dtype=L._stat_dtype(x.dtype), device=x.device))
    out = _vp_linear_ce(x, w, y, b, lead, ignore_index, eps, zl, cap, reduction, cw, chunk, recompute, group, shard,
                        reduce_hidden_grad, divisor if reduction == "global_mean" else None)
    return as_replicated(out, mesh) if mesh is not None else out


def _vp_linear_ce(x, w, y, b, lead, ignore_index, eps, zl, cap, reduction, cw, chunk, recompute, group, shard,
                  reduce_hidden, divisor):
    n, vocab = x.shape[0], shard.vocab_size
    st = L._stat_dtype(x.dtype)
    valid = y != ignore_index
    n_valid = int(valid.sum())  # the one host synchronisation; the same on every rank
    idx = None
    if n_valid < n:
        idx = valid.nonzero().squeeze(1)
        x, y = x.index_select(0, idx), y.index_select(0, idx)
    if chunk is None:  # from the largest shard, so that every rank runs the same chunks
        chunk = L.auto_chunk_rows(x.shape[0], -(-vocab // shard.world_size), x.dtype, x.device, softcap=cap is not None)
    hit = (y >= shard.start) & (y < shard.start + shard.size)
    y_loc = torch.where(hit, y - shard.start, torch.zeros_like(y))
    cw = None if cw is None else cw.to(st)
    wy = None if cw is None else cw[y]
    a = torch.full((n_valid,), 1.0 - eps, dtype=st, device=x.device) if wy is None else wy * (1.0 - eps)
    beta = torch.full((n_valid,), eps / vocab, dtype=st, device=x.device) if eps else None
    gam = torch.full((n_valid,), zl, dtype=st, device=x.device) if zl else None
    if reduction in ("mean", "global_mean"):
        if reduction == "mean":
            denom = wy.sum() if wy is not None else torch.tensor(float(n_valid), dtype=st, device=x.device)
            denom = torch.where(denom == 0, torch.ones_like(denom), denom)  # every token ignored: 0, not NaN
            zdenom = max(n_valid, 1)
        else:
            denom = zdenom = divisor
        a = a / denom
        beta = None if beta is None else beta / denom
        gam = None if gam is None else gam / zdenom
    local_cw = None if cw is None else cw[shard.start: shard.start + shard.size]
    total_w = float(vocab) if cw is None else cw.sum()
    co = _Coef(a, beta, gam, local_cw, total_w)
    needs = tuple(t is not None and t.requires_grad for t in (x, w, b))
    fused = reduction != "none" and not recompute and torch.is_grad_enabled() and any(needs)
    if fused:
        return _FusedVP.apply(x, w, b, y_loc, hit, co, cap, chunk, group, needs, reduce_hidden)[0]
    per_token = _TokenVP.apply(x, w, b, y_loc, hit, co, cap, chunk, group, reduce_hidden)[0]
    if reduction != "none":
        return per_token.sum()
    if idx is not None:
        per_token = torch.zeros(n, dtype=per_token.dtype, device=per_token.device).index_copy(0, idx, per_token)
    return per_token.reshape(lead)
