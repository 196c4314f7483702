"""Vocabulary-parallel sparse, categorical and focal cross-entropy over a process group.

Each rank holds the logits (or probabilities) of a contiguous slice of the classes,
``z_r`` of shape ``(N, V_r)``; the loss of every token needs statistics of its whole row.
A row's log-sum-exp is assembled from per-rank pieces::

    m   = max_r max_c z_rc                      all-reduce MAX   (N floats)
    S   = sum_r sum_c exp(z_rc - m)             all-reduce SUM   (N floats)
    TZ  = sum_r sum_c t'_rc (z_rc - m)          (same all-reduce, N floats)
    loss = T' log S - TZ                        = sum_c t'_c (lse - z_c)

with ``t' = (1 - a) t + a / V`` the (smoothed) target and ``T' = sum_c t'_c`` (1 for
integer labels, one more N-vector for dense ones).  For integer labels the target term
is the one rank's ``z_y`` (0 elsewhere), so the forward sends three N-vectors with or
without label smoothing.  The gradient ``dL/dz_rc = g (T' exp(z_rc - lse) - t'_rc)`` needs
only ``lse`` (kept from the forward): the backward sends nothing.

Probabilities (``from_logits=False``) take Keras's path: ``q = clip(p / sum p, eps,
1 - eps)``, ``L = -sum_c t'_c log q_c``; the focal loss weights each term by
``alpha_c (1 - q_c)^gamma``.  Their gradients need one global sum per row besides the
loss (``sum_c G_c r_c`` with ``G = dL/dq`` masked by the clip), which the forward
computes in the same all-reduce as the loss, so the backward stays local here too.

Every pass runs over chunks of rows (:data:`CHUNK_ELEMENTS` per chunk): besides the
input and its gradient, one chunk-sized float32 buffer exists at a time.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.distributed as dist

from ... import _checks as C
from ..._compat import namespace
from ..._errors import ArgumentError, LabelValueError, PredictionValueError, ProblossError, ProblossTypeError, ShapeError
from ..._reduction import reduce_values, validate_reduction
from ...functional._common import EPSILON
from ._group import as_replicated, check_tensor, is_dtensor, local_of, replicated_local, resolve_group, shard_of

__all__ = ["CHUNK_ELEMENTS", "categorical_crossentropy", "categorical_focal_crossentropy", "sparse_categorical_crossentropy"]

CHUNK_ELEMENTS = 1 << 22
"""Elements of one chunk of rows (16 MiB of float32): the only workspace of a pass."""

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None, "global_mean")


def _fail(cls, fn, msg):
    raise cls(f"{fn}: {msg}")


def _st(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunks(n, vr):
    rows = max(1, CHUNK_ELEMENTS // max(vr, 1))
    return [(s, min(s + rows, n)) for s in range(0, n, rows)]


def _row_max(z, st):
    if z.shape[1] == 0:  # a rank without classes (more ranks than classes)
        return torch.full((z.shape[0],), -math.inf, dtype=st, device=z.device)
    return z.amax(1).to(st)


def _global_max(z, st, group):
    m = _row_max(z, st)
    dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # a row of -inf gives lse = -inf, not NaN


def _no_second_order(fn):
    _fail(ArgumentError, fn, "gradients of gradients (`create_graph=True`, `torch.func.grad` of a gradient) are not "
                             "supported by the vocabulary-parallel losses: their backward would need collectives of its own.")


def _no_vmap(fn):
    _fail(ArgumentError, fn, "torch.func.vmap is not supported by the vocabulary-parallel losses (collectives have no "
                             "batching rule): call them on the flattened batch.")


def _target_chunk(work, t, y, hit, a, vocab, s, e):
    """The smoothed target ``t'`` of rows ``s:e`` into ``work`` (one-hot built for labels)."""
    if t is not None:
        return torch.mul(t[s:e], 1.0 - a, out=work).add_(a / vocab) if a else work.copy_(t[s:e])
    work.fill_(a / vocab)
    if work.shape[1]:
        work.scatter_add_(1, y[s:e, None], ((1.0 - a) * hit[s:e]).to(work.dtype)[:, None])
    return work


# --------------------------------------------------------------------- logits, plain CE


class _LogitsCE(torch.autograd.Function):
    """Per-row ``sum_c t'_c (lse - z_c)`` of class-sharded logits (sparse or dense targets)."""

    @staticmethod
    def forward(z, t, y, hit, a, vocab, group):
        n, vr = z.shape
        st = _st(z.dtype)
        m = _global_max(z, st, group)
        dense = t is not None
        stats = torch.zeros((3 if dense else 2, n), dtype=st, device=z.device)
        rows = _chunks(n, vr)
        work = torch.empty((min(n, rows[0][1]) if rows else 0, vr), dtype=st, device=z.device)
        for s, e in rows:
            w = work[: e - s]
            zc = z[s:e]
            mc = m[s:e, None]
            torch.sub(zc, mc, out=w)
            if dense:  # TZ = sum t' (z - m), T' = sum t'
                tc = t[s:e]
                stats[1, s:e] = (w * tc).sum(1).mul_(1.0 - a)
                stats[2, s:e] = tc.sum(1, dtype=st).mul_(1.0 - a).add_(a * vr / vocab)
                if a:
                    stats[1, s:e] += w.sum(1).mul_(a / vocab)
            elif a:
                stats[1, s:e] = w.sum(1).mul_(a / vocab)
            stats[0, s:e] = w.exp_().sum(1)
        if not dense and vr:  # TZ += (1 - a)(z_y - m) on the rank holding the target
            zy = z.gather(1, y[:, None])[:, 0].to(st)
            stats[1] += torch.where(hit, zy - m, torch.zeros_like(m)) * (1.0 - a)
        dist.all_reduce(stats, group=group)
        log_s = stats[0].log()
        lse = m + log_s
        loss = (stats[2] * log_s if dense else log_s) - stats[1]
        return loss, lse, (stats[2] if dense else lse.new_empty(0))

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, t, y, hit, a, vocab, group = inputs
        _, lse, tsum = output
        ctx.mark_non_differentiable(lse, tsum)
        ctx.save_for_backward(z, t, y, hit, lse, tsum)
        ctx.a, ctx.vocab = a, vocab

    @staticmethod
    def vmap(info, in_dims, *args):
        _no_vmap("vocabulary-parallel cross-entropy")

    @staticmethod
    def backward(ctx, g, *_):
        if torch.is_grad_enabled():
            _no_second_order("vocabulary-parallel cross-entropy")
        z, t, y, hit, lse, tsum = ctx.saved_tensors
        a, vocab = ctx.a, ctx.vocab
        n, vr = z.shape
        st = lse.dtype
        g = g.to(st)
        need_z, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dz = torch.empty_like(z) if need_z else None
        dt = torch.empty_like(t) if need_t else None
        rows = _chunks(n, vr)
        work = torch.empty((min(n, rows[0][1]) if rows else 0, vr), dtype=st, device=z.device)
        for s, e in rows:
            w = work[: e - s]
            zc, gc, lc = z[s:e], g[s:e, None], lse[s:e, None]
            if need_t:  # dL/dt_c = g (1 - a)(lse - z_c)
                torch.sub(lc, zc, out=w)
                dt[s:e] = w.mul_(gc * (1.0 - a))
            if not need_z:
                continue
            torch.sub(zc, lc, out=w).exp_()  # p
            if t is not None:  # g (T' p - t')
                w.mul_(tsum[s:e, None]).sub_(t[s:e] * (1.0 - a))
            if a:
                w.sub_(a / vocab)
            if t is None and vr:
                w.scatter_add_(1, y[s:e, None], -(1.0 - a) * hit[s:e, None].to(st))
            dz[s:e] = w.mul_(gc)
        return dz, dt, None, None, None, None, None


# -------------------------------------------------------- clipped probabilities, focal


def _clipped_terms(w, tgt, eps, gamma, alpha):
    """From ``r`` (in ``w``, overwritten) and the smoothed target: per-row loss, and
    ``G = dL/dq`` where the clip passes the gradient (in ``w``).

    ``L = -sum_c t'_c log q_c``, or with ``gamma`` the focal
    ``L = sum_c alpha_c (1 - q_c)^gamma (-t'_c log q_c)``, ``q = clip(r, eps, 1 - eps)``.
    """
    inside = (w >= eps) & (w <= 1.0 - eps)  # where torch.clamp passes the gradient
    q = w.clamp_(eps, 1.0 - eps)
    logq = q.log()
    if gamma is None:
        loss = -(tgt * logq).sum(1)
        grad = tgt.div(q).neg_()
    else:
        one_minus = 1.0 - q
        power = one_minus**gamma
        if alpha is not None:
            power = power * alpha
        loss = -(power * tgt * logq).sum(1)
        # d/dq [-alpha (1-q)^g t log q] = alpha t (g (1-q)^(g-1) log q - (1-q)^g / q)
        grad = (power / one_minus * gamma * logq - power / q) * tgt
    return loss, grad.mul_(inside)


class _ClippedCE(torch.autograd.Function):
    """Keras's clipped cross-entropy (and focal) of class-sharded probabilities or logits."""

    @staticmethod
    def forward(x, t, y, hit, a, vocab, eps, gamma, alpha, from_logits, group):
        n, vr = x.shape
        st = _st(x.dtype)
        rows = _chunks(n, vr)
        work = torch.empty((min(n, rows[0][1]) if rows else 0, vr), dtype=st, device=x.device)
        tbuf = torch.empty_like(work)
        if from_logits:  # p = softmax(x); Keras's renormalisation p / sum(p) is the identity here
            m = _global_max(x, st, group)
            s_ = torch.zeros(n, dtype=st, device=x.device)
            for s, e in rows:
                s_[s:e] = torch.sub(x[s:e], m[s:e, None], out=work[: e - s]).exp_().sum(1)
        else:
            m = None
            s_ = x.sum(1, dtype=st)
        dist.all_reduce(s_, group=group)
        out = torch.empty((2, n), dtype=st, device=x.device)  # the loss and sum_c G_c r_c
        for s, e in rows:
            w = _ratio(x, m, s_, s, e, work)
            r = w.clone()
            tgt = _target_chunk(tbuf[: e - s], t, y, hit, a, vocab, s, e)
            out[0, s:e], grad = _clipped_terms(w, tgt, eps, gamma, alpha)
            out[1, s:e] = (grad * r).sum(1)
        dist.all_reduce(out, group=group)
        if not from_logits and C.eager(s_):  # the same sums on every rank: all of them warn alike
            C.warn_unnormalized(namespace(s_), s_[:, None], 1, "y_pred")
        return out[0], s_, out[1], (x.new_empty(0) if m is None else m)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, t, y, hit, a, vocab, eps, gamma, alpha, from_logits, group = inputs
        _, s_, b, m = output
        ctx.mark_non_differentiable(s_, b, m)
        ctx.save_for_backward(x, t, y, hit, s_, b, m, alpha)
        ctx.opts = (a, vocab, eps, gamma, from_logits)

    @staticmethod
    def vmap(info, in_dims, *args):
        _no_vmap("vocabulary-parallel cross-entropy")

    @staticmethod
    def backward(ctx, g, *_):
        if torch.is_grad_enabled():
            _no_second_order("vocabulary-parallel cross-entropy")
        x, t, y, hit, s_, b, m, alpha = ctx.saved_tensors
        a, vocab, eps, gamma, from_logits = ctx.opts
        n, vr = x.shape
        st = s_.dtype
        g = g.to(st)
        need_x, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx = torch.empty_like(x) if need_x else None
        dt = torch.empty_like(t) if need_t else None
        rows = _chunks(n, vr)
        work = torch.empty((min(n, rows[0][1]) if rows else 0, vr), dtype=st, device=x.device)
        tbuf = torch.empty_like(work)
        for s, e in rows:
            w = _ratio(x, m if from_logits else None, s_, s, e, work)
            r = w.clone()
            gc = g[s:e, None]
            if need_t:  # dL/dt'_c (1 - a): -log q_c, times alpha (1 - q)^gamma for focal
                q = r.clamp(eps, 1.0 - eps)
                d = q.log().neg_()
                if gamma is not None:
                    d.mul_((1.0 - q) ** gamma)
                    if alpha.numel():
                        d.mul_(alpha)
                dt[s:e] = d.mul_(gc * (1.0 - a))
            if not need_x:
                continue
            tgt = _target_chunk(tbuf[: e - s], t, y, hit, a, vocab, s, e)
            _, grad = _clipped_terms(w, tgt, eps, gamma, alpha if alpha.numel() else None)
            grad.sub_(b[s:e, None])
            if from_logits:  # through the softmax: p_j (G_j - sum_c p_c G_c)
                dx[s:e] = grad.mul_(r).mul_(gc)
            else:  # through r = p / S: (G_j - sum_c G_c r_c) / S
                dx[s:e] = grad.mul_(gc / s_[s:e, None])
        return dx, dt, None, None, None, None, None, None, None, None, None


def _ratio(x, m, s_, s, e, work):
    """``r`` of rows ``s:e`` into ``work``: ``softmax(x)`` from logits, ``p / sum(p)`` otherwise."""
    w = work[: e - s]
    if m is not None:
        return torch.sub(x[s:e], m[s:e, None], out=w).exp_().div_(s_[s:e, None])
    return torch.div(x[s:e], s_[s:e, None], out=w)


# ------------------------------------------------------------------------- preparation


class _Prepared:
    """The inputs of one call, local and flattened to ``(N, V_r)``."""

    def __init__(self, fn, y_pred, axis, group, vocab_start, vocab_size):
        check_tensor(fn, "y_pred", y_pred)
        self.mesh = None
        if is_dtensor(y_pred):
            if vocab_start is not None or vocab_size is not None:
                _fail(ArgumentError, fn, "`vocab_start` and `vocab_size` come from the DTensor's sharding; leave them out.")
            if group is not None:
                _fail(ArgumentError, fn, "`group` comes from the DTensor's device mesh; leave it out.")
            self.axis = C.check_axis(axis, y_pred.ndim)
            local = local_of(fn, "y_pred", y_pred, self.axis)
            x, self.group, self.shard, self.mesh = local.tensor, local.group, local.shard, local.mesh
        else:
            self.axis = C.check_axis(axis, y_pred.ndim)
            self.group = resolve_group(fn, group)
            x = y_pred
            self.shard = shard_of(fn, x.shape[self.axis], self.group, vocab_start, vocab_size, x.device)
        if not x.is_floating_point():
            _fail(ProblossTypeError, fn, f"`y_pred` must be floating point (probabilities or logits); got {x.dtype}.")
        self.dtype = x.dtype
        self.x_local = x
        moved = x.movedim(self.axis, -1)
        self.lead = tuple(moved.shape[:-1])
        self.x = moved.reshape(math.prod(self.lead), moved.shape[-1])  # (not -1: a rank may hold no class)
        if self.x.dtype in (torch.float16, torch.bfloat16):  # reduce over the classes in float32
            self.x = self.x.float()

    def sparse_labels(self, fn, y_true, ignore_class):
        """``(labels (N,), valid mask or None)``; labels in ``[0, V)`` checked (they are the
        same on every rank, so every rank raises alike, before any collective)."""
        y = replicated_local(fn, "y_true", y_true)
        check_tensor(fn, "y_true", y)
        if y.ndim == self.x_local.ndim and y.shape[self.axis] == 1 and self.shard.vocab_size != 1:
            y = y.squeeze(self.axis)  # Keras: labels with a 1 on the class axis
        if tuple(y.shape) != self.lead:
            if y.ndim == len(self.lead) + 1 and tuple(y.shape[:-1]) == self.lead:
                _fail(ShapeError, fn, f"`y_true` of shape {tuple(y.shape)} looks one-hot; this loss takes integer class "
                                      f"indices of shape {self.lead}. Use `categorical_crossentropy` for one-hot labels.")
            _fail(ShapeError, fn, f"`y_true` must have `y_pred`'s shape without the class axis, {self.lead}; got {tuple(y.shape)}.")
        if y.dtype == torch.bool:
            y = y.long()
        elif y.is_floating_point():
            xp = namespace(y)
            if C.eager(y):
                C.check_finite(xp, y, "y_true")
                C.check_integer_valued(xp, y, "y_true")
            y = y.long()
        elif y.is_complex():
            _fail(ProblossTypeError, fn, f"`y_true` must hold integer class indices; got {y.dtype}.")
        y = y.reshape(-1).to(self.x.device)
        if C.eager(y):
            C.check_sparse_labels(namespace(y), y, self.shard.vocab_size, ignore_class)
        valid = None
        if ignore_class is not None:
            valid = y != ignore_class
            y = torch.where(valid, y, torch.zeros_like(y))
        return y.long(), valid

    def local_targets(self, y):
        """``(index into this rank's classes, whether the target is here)``."""
        start, size = self.shard.start, self.shard.size
        hit = (y >= start) & (y < start + size)
        return torch.where(hit, y - start, torch.zeros_like(y)), hit

    def dense_labels(self, fn, y_true):
        """This rank's slice of one-hot or soft labels, flattened like ``y_pred``."""
        if is_dtensor(y_true):
            local = local_of(fn, "y_true", y_true, self.axis)
            if local.shard != self.shard:
                _fail(ShapeError, fn, "`y_true` and `y_pred` are DTensors sharded differently; shard both the same way.")
            t = local.tensor
        else:
            check_tensor(fn, "y_true", y_true)
            t = y_true
            full = list(self.x_local.shape)
            full[self.axis] = self.shard.vocab_size
            if tuple(t.shape) == tuple(full) and tuple(full) != tuple(self.x_local.shape):
                t = t.narrow(self.axis, self.shard.start, self.shard.size)
            elif tuple(t.shape) != tuple(self.x_local.shape):
                _fail(ShapeError, fn, f"`y_true` must have the shape of this rank's `y_pred`, {tuple(self.x_local.shape)}, "
                                      f"or of the whole vocabulary, {tuple(full)}; got {tuple(t.shape)}. For integer "
                                      "labels use `sparse_categorical_crossentropy`.")
        if t.is_complex():
            _fail(ProblossTypeError, fn, f"`y_true` must be real; got {t.dtype}.")
        t = t.to(self.x.dtype) if t.dtype != self.x.dtype else t
        moved = t.movedim(self.axis, -1)
        return moved.reshape(self.x.shape[0], moved.shape[-1])

    def agree(self, fn, checks):
        """Run the local value ``checks`` (they read this rank's shard only) and raise on
        every rank if one failed anywhere: one all-reduce of one number, so that no rank
        waits forever in the next collective for a rank that raised."""
        error = None
        for check in checks:
            try:
                check()
            except ProblossError as exc:
                error = exc
                break
        flag = torch.tensor([0.0 if error is None else (1.0 if isinstance(error, LabelValueError) else 2.0)],
                            device=self.x.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        if error is not None:
            start, stop = self.shard.start, self.shard.start + self.shard.size
            raise type(error)(f"{error} (rank {dist.get_rank(self.group)} holds classes [{start}, {stop}); a column index "
                              f"j above is class {start} + j)") from None
        if float(flag):
            cls = LabelValueError if float(flag) == 1.0 else PredictionValueError
            raise cls(f"{fn}: another rank found a value out of range in its shard of "
                      f"`{'y_true' if cls is LabelValueError else 'y_pred'}`; its error names the element.")

    def finish(self, values, valid, reduction, sample_weight, num_tokens, fn):
        out = values.reshape(self.lead)
        if self.dtype != out.dtype:
            out = out.to(self.dtype)
        mask = None if valid is None else valid.reshape(self.lead)
        if mask is not None:
            out = torch.where(mask, out, torch.zeros_like(out))
        if sample_weight is not None:
            sample_weight = replicated_local(fn, "sample_weight", sample_weight)
            if not isinstance(sample_weight, torch.Tensor):
                sample_weight = torch.as_tensor(sample_weight, dtype=out.dtype, device=out.device)
        xp = namespace(out)
        if reduction == "global_mean":
            out = reduce_values(out, xp, reduction="sum", sample_weight=sample_weight, mask=mask)
            out = out / _token_count(fn, num_tokens, out)
        else:
            out = reduce_values(out, xp, reduction=reduction, sample_weight=sample_weight, mask=mask)
        return as_replicated(out, self.mesh) if self.mesh is not None else out


def _token_count(fn, num_tokens, like):
    """``num_tokens`` as a divisor (1 where it is 0: every token ignored gives 0)."""
    if num_tokens is None:
        _fail(ArgumentError, fn, "`reduction='global_mean'` divides by `num_tokens`, the valid tokens of the whole step "
                                 "(every micro-batch, every data-parallel rank): count them first with "
                                 "`count_valid_tokens(...)` and pass the result.")
    if isinstance(num_tokens, torch.Tensor):
        n = num_tokens.to(device=like.device, dtype=like.dtype)
    elif isinstance(num_tokens, numbers.Real) and not isinstance(num_tokens, bool) and num_tokens >= 0:
        n = torch.tensor(float(num_tokens), dtype=like.dtype, device=like.device)
    else:
        _fail(ArgumentError, fn, f"`num_tokens` must be a number >= 0 or a 0-d tensor (from `count_valid_tokens`); got {num_tokens!r}.")
    return torch.where(n == 0, torch.ones_like(n), n)


def _options(fn, reduction, label_smoothing, epsilon, from_logits):
    if reduction not in REDUCTIONS:
        try:
            validate_reduction(reduction)
        except ArgumentError as exc:
            raise ArgumentError(f"{fn}: {exc} This function also takes 'global_mean' (see `count_valid_tokens`).") from None
    return (
        C.check_float_in("label_smoothing", label_smoothing, 0.0, 1.0),
        C.check_epsilon(epsilon),
        C.check_bool("from_logits", from_logits),
    )


def _probability_checks(prep, from_logits):
    xp = namespace(prep.x)
    if from_logits or not C.eager(prep.x):
        return []
    return [lambda: C.check_probabilities(xp, prep.x, "y_pred")]


# ---------------------------------------------------------------------------- the API


@torch.compiler.disable
def sparse_categorical_crossentropy(
    y_true,
    y_pred,
    from_logits=False,
    ignore_class=None,
    axis=-1,
    *,
    label_smoothing=0.0,
    epsilon=EPSILON,
    reduction="none",
    sample_weight=None,
    num_tokens=None,
    group=None,
    vocab_start=None,
    vocab_size=None,
):
    """Sparse categorical cross-entropy of predictions sharded on the class axis.

    Each rank of ``group`` passes its slice of the classes of ``y_pred`` (a contiguous
    range; sizes may differ between ranks) and the same integer labels.  The result is
    :func:`probloss.sparse_categorical_crossentropy` of the whole ``y_pred``, on every rank:

    .. math::

        \\ell = \\sum_c t'_c\\,(\\operatorname{LSE}(x) - x_c), \\qquad
        t' = (1 - a)\\,\\mathrm{onehot}(y) + a / V

    from logits, where ``LSE`` and the target logit are assembled from one all-reduce of
    the row maxima and one of two N-vectors (three N-vectors in all, with or without
    label smoothing ``a``), or Keras's ``-sum_c t'_c log clip(p_c / sum p, eps, 1 - eps)``
    from probabilities.  The backward pass is local (no communication).

    Parameters
    ----------
    y_true : Tensor of int (or whole floats), ``y_pred``'s shape without ``axis``
        Class indices in ``[0, V)`` of the whole vocabulary, the same on every rank.
    y_pred : Tensor (..., V_r, ...) or DTensor
        This rank's classes of the logits (``from_logits=True``) or probabilities; a
        DTensor sharded ``Shard(axis)`` over one mesh dimension brings its own group
        and offsets.
    from_logits : bool, default False
    ignore_class : int, optional
        Tokens with this label get loss 0 and are left out of the means.
    axis : int, default -1
        The class axis.
    label_smoothing : float in [0, 1], default 0
        Keras's categorical smoothing applied to the one-hot labels.
    epsilon : float, default 1e-7
        Keras's clip of probabilities.
    reduction : str, default "none"
        Keras's reductions (``"sum_over_batch_size"``/``"mean"`` divide by the number of
        valid tokens, ``"sum"``, ``"mean_with_sample_weight"``, ``"none"``), or
        ``"global_mean"``: the (weighted) sum over this call's tokens divided by
        ``num_tokens``, the valid tokens of the whole step (see ``count_valid_tokens``).
    sample_weight : Tensor, optional
        Keras's per-sample weights (the same on every rank).
    num_tokens : int or 0-d Tensor, optional
        The divisor of ``"global_mean"`` (0 gives a loss of 0).
    group : ProcessGroup, optional
        The ranks that share the vocabulary (default: the world).
    vocab_start, vocab_size : int, optional
        This rank's first class and the whole vocabulary's size; when left out, they
        come from one all-gather of every rank's number of classes.

    Returns
    -------
    Tensor
        Per-token losses (``y_true``'s shape) or the reduced scalar, the same on every
        rank, in ``y_pred``'s dtype; a replicated DTensor for a DTensor ``y_pred``.

    Notes
    -----
    From probabilities the row sums and the loss need two all-reduces of one and two
    N-vectors, plus one number that tells every rank whether a rank found a value
    outside [0, 1] (so all of them raise, and none waits in a collective for one that
    did).  Gradients of gradients and ``torch.func.vmap`` raise an
    :class:`~probloss.ArgumentError`.

    Examples
    --------
    One process holding the whole vocabulary (a world of one) gives probloss's numbers:

    >>> import torch, torch.distributed as dist
    >>> import probloss
    >>> from probloss.torch import distributed as pdist
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    >>> loss = pdist.sparse_categorical_crossentropy(torch.tensor([0, 2]), logits, from_logits=True, reduction="mean")
    >>> bool(torch.isclose(loss, probloss.SparseCategoricalCrossentropy(from_logits=True)(torch.tensor([0, 2]), logits)))
    True
    >>> dist.destroy_process_group()
    """
    fn = "sparse_categorical_crossentropy"
    a, eps, from_logits = _options(fn, reduction, label_smoothing, epsilon, from_logits)
    ignore_class = C.check_ignore_class(ignore_class)
    prep = _Prepared(fn, y_pred, axis, group, vocab_start, vocab_size)
    y, valid = prep.sparse_labels(fn, y_true, ignore_class)
    y_loc, hit = prep.local_targets(y)
    vocab = prep.shard.vocab_size
    if from_logits:
        values = _LogitsCE.apply(prep.x, None, y_loc, hit, a, vocab, prep.group)[0]
    else:
        prep.agree(fn, _probability_checks(prep, from_logits))
        values = _ClippedCE.apply(prep.x, None, y_loc, hit, a, vocab, eps, None, _empty(prep), False, prep.group)[0]
    return prep.finish(values, valid, reduction, sample_weight, num_tokens, fn)


def _empty(prep):
    return prep.x.new_empty(0)


@torch.compiler.disable
def categorical_crossentropy(
    y_true,
    y_pred,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    *,
    epsilon=EPSILON,
    reduction="none",
    sample_weight=None,
    num_tokens=None,
    group=None,
    vocab_start=None,
    vocab_size=None,
):
    """Categorical cross-entropy of predictions and one-hot (or soft) labels, both sharded
    on the class axis.

    :func:`probloss.categorical_crossentropy` of the whole arrays, on every rank:
    ``sum_c t'_c (LSE(x) - x_c)`` with ``t' = (1 - a) t + a / V`` from logits (an
    all-reduce of the row maxima and one of three N-vectors: the sum of exponentials,
    ``sum t' (x - max)`` and ``sum t'``), or ``-sum_c t'_c log clip(p_c / sum p, eps,
    1 - eps)`` from probabilities.  The backward pass is local.

    ``y_true`` is this rank's slice of the labels (``y_pred``'s local shape), the whole
    labels (sliced here), or a DTensor sharded as ``y_pred``.  The other arguments,
    the reductions and the result are those of :func:`sparse_categorical_crossentropy`.
    Labels are checked to be >= 0 on each rank; one number tells every rank whether
    one of them failed, so that all of them raise together.

    Examples
    --------
    >>> import torch, torch.distributed as dist
    >>> import probloss
    >>> from probloss.torch import distributed as pdist
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> t = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.0, 0.8]])
    >>> x = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    >>> ours = pdist.categorical_crossentropy(t, x, from_logits=True, label_smoothing=0.1)
    >>> bool(torch.allclose(ours, probloss.categorical_crossentropy(t, x, from_logits=True, label_smoothing=0.1)))
    True
    >>> dist.destroy_process_group()
    """
    fn = "categorical_crossentropy"
    a, eps, from_logits = _options(fn, reduction, label_smoothing, epsilon, from_logits)
    prep = _Prepared(fn, y_pred, axis, group, vocab_start, vocab_size)
    t = prep.dense_labels(fn, y_true)
    xp = namespace(t)
    checks = [lambda: C.check_nonnegative_values(xp, t, "y_true", "labels are probabilities and cannot be negative.")] if C.eager(t) else []
    prep.agree(fn, checks + _probability_checks(prep, from_logits))
    vocab = prep.shard.vocab_size
    none = torch.empty(0, dtype=torch.long, device=prep.x.device)
    if from_logits:
        values = _LogitsCE.apply(prep.x, t, none, none.bool(), a, vocab, prep.group)[0]
    else:
        values = _ClippedCE.apply(prep.x, t, none, none.bool(), a, vocab, eps, None, _empty(prep), False, prep.group)[0]
    return prep.finish(values, None, reduction, sample_weight, num_tokens, fn)


@torch.compiler.disable
def categorical_focal_crossentropy(
    y_true,
    y_pred,
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    *,
    epsilon=EPSILON,
    reduction="none",
    sample_weight=None,
    num_tokens=None,
    group=None,
    vocab_start=None,
    vocab_size=None,
):
    """Categorical focal cross-entropy of predictions and labels sharded on the class axis.

    :func:`probloss.categorical_focal_crossentropy` of the whole arrays, on every rank:

    .. math::

        \\ell = \\sum_c \\alpha_c (1 - q_c)^{\\gamma} \\big(-t'_c \\log q_c\\big), \\qquad
        q = \\operatorname{clip}(p / \\textstyle\\sum p, \\epsilon, 1 - \\epsilon)

    with ``p = softmax(y_pred)`` from logits.  From logits, Keras's renormalisation of
    the softmax is left out (it divides by 1 up to rounding).  Communication: the row
    maxima and the sums of exponentials (from logits) or the row sums (from
    probabilities), then the loss and the one row sum its gradient needs, in one
    all-reduce of two N-vectors; the backward pass is local.

    ``alpha`` is a number or one weight per class of the whole vocabulary (each rank
    uses its slice).  ``y_true`` and the other arguments are as in
    :func:`categorical_crossentropy`.

    Examples
    --------
    >>> import torch, torch.distributed as dist
    >>> import probloss
    >>> from probloss.torch import distributed as pdist
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> t = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> p = torch.tensor([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])
    >>> bool(torch.allclose(pdist.categorical_focal_crossentropy(t, p), probloss.categorical_focal_crossentropy(t, p)))
    True
    >>> dist.destroy_process_group()
    """
    fn = "categorical_focal_crossentropy"
    a, eps, from_logits = _options(fn, reduction, label_smoothing, epsilon, from_logits)
    gamma = C.check_nonnegative("gamma", gamma)
    prep = _Prepared(fn, y_pred, axis, group, vocab_start, vocab_size)
    alpha_local = _alpha_slice(fn, alpha, prep)
    t = prep.dense_labels(fn, y_true)
    xp = namespace(t)
    checks = [lambda: C.check_nonnegative_values(xp, t, "y_true", "labels are probabilities and cannot be negative.")] if C.eager(t) else []
    prep.agree(fn, checks + _probability_checks(prep, from_logits))
    none = torch.empty(0, dtype=torch.long, device=prep.x.device)
    values = _ClippedCE.apply(prep.x, t, none, none.bool(), a, prep.shard.vocab_size, eps, gamma, alpha_local, from_logits,
                              prep.group)[0]
    return prep.finish(values, None, reduction, sample_weight, num_tokens, fn)


def _alpha_slice(fn, alpha, prep):
    """``alpha`` as a tensor of this rank's classes ``(V_r,)`` (a number: ``(1,)``)."""
    st = prep.x.dtype
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        return torch.tensor([C.check_float_in("alpha", alpha, 0.0, 1.0)], dtype=st, device=prep.x.device)
    a = torch.as_tensor(alpha, dtype=st, device=prep.x.device) if not isinstance(alpha, torch.Tensor) else alpha.to(st)
    if a.ndim != 1 or a.shape[0] != prep.shard.vocab_size:
        _fail(ArgumentError, fn, f"`alpha` must be a number or one weight per class of the whole vocabulary "
                                 f"({prep.shard.vocab_size}); got shape {tuple(a.shape)}.")
    return a[prep.shard.start: prep.shard.start + prep.shard.size].detach()
