"""CUDA backend: the Triton kernels of :mod:`probloss._backends.triton_kernels` as autograd
Functions, and the dispatch table's ``cuda`` column.

:mod:`probloss._dispatch` imports this module when the first CUDA torch tensor reaches a
loss that has a ``cuda`` entry, and only if Triton imports (it ships with PyTorch's CUDA
builds); otherwise CUDA tensors take the ``torch`` column.

**What runs.**  Every loss reads its inputs once in the forward and writes nothing of
size ``N x K`` but, in the backward, the gradient:

* softmax cross-entropy from logits (sparse and categorical, label smoothing, class
  weights, any class axis): one pass over the logits, an online max and sum of
  exponentials; the per-row log-sum-exp is saved; the backward is one pass writing
  ``softmax * c - target``, into a new buffer or, with ``inplace``, into the logits;
* Keras's losses on probabilities (sparse and categorical cross-entropy with
  renormalised, clipped rows; categorical focal, also from logits): the row sum, then
  the loss and one per-row statistic that makes the backward a single pass;
* elementwise losses reduced over the class axis: binary cross-entropy (probabilities
  and logits), binary focal, KL divergence, Poisson.
* one chunk of :func:`probloss.torch.linear_cross_entropy` (:func:`linear_ce_chunk`)
  and of :func:`~probloss.torch.linear_log_probs_and_entropy` (:func:`linear_lpe_chunk`),
  called by those functions directly: the statistics of the chunk's logits and their
  gradient, between torch's matrix products.

*Why the gradient is written in the backward, not stored by the forward* (as
Liger-Kernel does): the loss functions here return per-sample values that a reduction,
sample weights or a mask scale afterwards, so a stored gradient would need one more
pass in the backward to apply the upstream gradient, 2 reads and 2 writes of ``N x K``
in all; recomputing the softmax from the saved log-sum-exp costs 2 reads and 1 write,
keeps no ``N x K`` buffer between forward and backward, and needs no host
synchronisation to learn that the upstream gradient is 1.

**Value checks** run inside the kernels (class indices in range, probabilities and
targets in range, a finite loss, rows of probabilities summing to 1) and are read later
without stopping the device (:mod:`probloss._deferred`); their errors say which call they
come from.  An index out of range gives a NaN loss and gradient for its row.

**What goes to the torch column instead**, by a direct call of
:mod:`probloss._backends.torch` (named where it happens): float64 inputs (the kernels
compute in float32), targets that need a gradient (the kernels differentiate the
predictions only), and any option the kernels do not implement, which :func:`_fits`
tells from a short explicit list of known option fields per loss, so that an option
added to :class:`~probloss.functional._common.Options` later never runs wrong here.

**Autodiff.**  First-order gradients come from the kernels; under ``create_graph=True``
the backward differentiates the same loss written with torch operations, so higher
derivatives are exact.  Each Function has a ``vmap`` rule (the batch becomes more rows)
and ``setup_context``, so ``torch.func`` transforms work.  Under ``torch.compile`` the
entries run eagerly (a graph break).
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import torch
import triton

from .. import _checks as C
from .. import _deferred
from .._errors import LabelValueError, PredictionValueError
from . import torch as torch_backend
from . import triton_kernels as tk

__all__ = [
    "ElementwiseLoss",
    "NormalizedLoss",
    "SoftSoftmaxCE",
    "SparseSoftmaxCE",
    "binary",
    "binary_focal",
    "categorical",
    "categorical_focal",
    "cross_entropy_indices",
    "cross_entropy_probabilities",
    "kl_divergence",
    "linear_ce_chunk",
    "linear_lpe_chunk",
    "poisson",
    "sparse",
    "sparse_mean",
]

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
"""Triton's interpreter runs the kernels (on CPU tensors too); read once, as Triton does."""

_F32 = torch.float32
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _launch(kernel, x, rows: int, num_classes: int, *args, **meta):
    """Launch ``kernel`` over ``rows`` rows of ``num_classes`` classes, on ``x``'s device."""
    per, block, warps = tk.tile(num_classes, rows, interpreted=INTERPRETED)
    grid = (triton.cdiv(rows, per),)
    if INTERPRETED:
        # The interpreter runs the kernel as NumPy operations, which would warn where the
        # device computes NaN or inf silently (a row of -inf logits, a NaN input).
        with np.errstate(all="ignore"):
            kernel[grid](*args, ROWS=per, BLOCK_K=block, **meta)
    elif x.device.index is not None and x.device.index != torch.cuda.current_device():
        with torch.cuda.device(x.device.index):
            kernel[grid](*args, ROWS=per, BLOCK_K=block, num_warps=warps, **meta)
    else:
        kernel[grid](*args, ROWS=per, BLOCK_K=block, num_warps=warps, **meta)


# ---------------------------------------------------------------------------- layout


def _rows3(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``x`` as ``(A, K, B)``: the axes before ``axis``, the class axis, the axes after
    (a view when the strides allow, which is always the case for contiguous tensors)."""
    a = math.prod(x.shape[:axis])
    b = math.prod(x.shape[axis + 1 :])
    return x.reshape(a, x.shape[axis], b)


def _rows_of(x: torch.Tensor) -> int:
    return x.shape[0] * x.shape[2]


def _vector(g: torch.Tensor, rows: int) -> torch.Tensor:
    """An upstream gradient as ``rows`` contiguous float32 values (it may be expanded)."""
    return g.reshape(rows).to(_F32).contiguous()


def _gradient_buffer(x3: torch.Tensor, inplace: bool) -> torch.Tensor:
    return x3 if inplace else torch.empty(x3.shape, dtype=x3.dtype, device=x3.device)


def _float_weights(weight, device):
    return None if weight is None else weight.to(device=device, dtype=_F32).contiguous()


# ----------------------------------------------------------------- softmax cross-entropy


class SparseSoftmaxCE(torch.autograd.Function):
    """Per-row ``nll = lse(x) - x[y]`` and, with ``smooth``, ``sum_c w_c (lse(x) - x_c)``.

    Inputs: ``x3`` ``(A, K, B)`` logits (float32/16, bfloat16, any strides); ``y`` ``(A *
    B,)`` contiguous integer class indices; ``weight`` ``(K,)`` float32 or ``None``
    (ones; the smoothing term only); ``smooth``; ``ignore_index`` (indices equal to it are
    valid; ``None`` for none); ``inplace`` (the gradient overwrites ``x3``);
    ``ruled_out_inf`` (a ``+inf`` loss is a result, not an error, for the check of the
    loss); ``keys`` (the check buffer, or ``None``: no checks).

    Returns ``(nll, smoothing, lse)`` float32 ``(A * B,)`` (``smoothing`` empty unless
    ``smooth``; ``lse`` is for the backward).  Backward::

        dx = softmax(x) (g1 + W g2) - g1 onehot(y) - g2 w,     W = sum(w)
    """

    @staticmethod
    def forward(x3, y, weight, smooth, ignore_index, inplace, ruled_out_inf, keys):
        _, k, b = x3.shape
        rows = _rows_of(x3)
        nll = torch.empty(rows, dtype=_F32, device=x3.device)
        smoothing = torch.empty(rows if smooth else 0, dtype=_F32, device=x3.device)
        lse = torch.empty(rows, dtype=_F32, device=x3.device)
        _launch(
            tk.softmax_ce_forward, x3, rows, k,
            x3, *x3.stride(), y, x3, 0, 0, 0, weight if weight is not None else x3,
            nll, smoothing if smooth else nll, lse, lse, keys if keys is not None else lse,
            rows, k, b, 0.0, 0 if ignore_index is None else ignore_index,
            SPARSE=True, SMOOTH=smooth, ALLOWED_ONLY=False, WEIGHTED=weight is not None,
            IGNORE=ignore_index is not None, RULED_OUT_INF=ruled_out_inf,
            CHECK=keys is not None, WITH_VALUE=x3.numel() < 2**31,
        )
        return nll, smoothing, lse

    @staticmethod
    def setup_context(ctx, inputs, output):
        x3, y, weight, smooth, ignore_index, inplace, _, _ = inputs
        ctx.mark_non_differentiable(output[2])
        if not smooth:
            ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x3, y, weight, output[2])
        ctx.smooth, ctx.ignore_index, ctx.inplace = smooth, ignore_index, inplace

    @staticmethod
    def vmap(info, in_dims, x3, y, weight, smooth, ignore_index, inplace, ruled_out_inf, keys):
        _refuse_batched(in_dims[2], inplace)
        x3, y = _merge_batch(info.batch_size, (x3, in_dims[0]), (y, in_dims[1]))
        out = SparseSoftmaxCE.apply(x3, y, weight, smooth, ignore_index, False, ruled_out_inf, None)
        return _split_batch(info.batch_size, out), (0, 0, 0)

    @staticmethod
    def backward(ctx, g1, g2, _):
        x3, y, weight, lse = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula
            def forward(x3):
                nll, smoothing = _sparse_formula(x3, y, weight)
                return (nll, smoothing) if ctx.smooth else (nll,)

            grads = (g1, g2) if ctx.smooth else (g1,)
            return torch_backend._second_order(forward, x3, grads), None, None, None, None, None, None, None
        _, k, b = x3.shape
        rows = _rows_of(x3)
        out = _gradient_buffer(x3, ctx.inplace)
        g1 = _vector(g1, rows)
        g2 = _vector(g2, rows) if ctx.smooth else g1
        wsum = weight.sum().reshape(1) if weight is not None else torch.full((1,), float(k), dtype=_F32, device=x3.device)
        _launch(
            tk.softmax_ce_backward, x3, rows, k,
            x3, *x3.stride(), y, x3, 0, 0, 0, weight if weight is not None else x3, wsum,
            lse, lse, lse, g1, g2, out, *out.stride(),
            rows, k, b, 0.0, 0 if ctx.ignore_index is None else ctx.ignore_index,
            SPARSE=True, SMOOTH=ctx.smooth, ALLOWED_ONLY=False, WEIGHTED=weight is not None,
            IGNORE=ctx.ignore_index is not None,
        )
        return (out.detach() if ctx.inplace else out), None, None, None, None, None, None, None


def _sparse_formula(x3, y, weight):
    """:class:`SparseSoftmaxCE`'s outputs written with torch operations (second order)."""
    a, k, b = x3.shape
    y3 = y.reshape(a, 1, b).long()
    keep = (y3 >= 0) & (y3 < k)
    logp = torch.log_softmax(x3.to(_F32), 1)
    nll = -logp.gather(1, torch.where(keep, y3, torch.zeros_like(y3))).reshape(-1)
    w = 1.0 if weight is None else weight.view(1, -1, 1)
    return nll, -(logp * w).sum(1).reshape(-1)


class SoftSoftmaxCE(torch.autograd.Function):
    """Per-row ``sum_c w_c q_c (lse(x) - x_c)`` with ``q = (1 - eps) t + eps / K_r``.

    ``t3`` has ``x3``'s shape ``(A, K, B)`` (any floating dtype and strides); ``weight``
    ``(K,)`` float32 or ``None``; ``eps`` the label smoothing, spread over the ``K_r``
    classes whose logit is not ``-inf`` with ``allowed_only`` (probloss's rule), over all
    ``K`` otherwise (torch's); ``ruled_out_inf`` as in :class:`SparseSoftmaxCE`.
    Returns ``(loss, c, share, lse)`` float32 ``(A * B,)``, with ``c = sum_c w_c q_c``
    and ``share = eps / K_r`` (for the backward).  Backward, for upstream ``g``:
    ``dx = g (softmax(x) c - w q)``.  ``t3`` gets no gradient (callers send targets that
    need one to the torch column).
    """

    @staticmethod
    def forward(x3, t3, weight, eps, allowed_only, inplace, ruled_out_inf, keys):
        _, k, b = x3.shape
        rows = _rows_of(x3)
        loss, coef, share, lse = (torch.empty(rows, dtype=_F32, device=x3.device) for _ in range(4))
        _launch(
            tk.softmax_ce_forward, x3, rows, k,
            x3, *x3.stride(), lse, t3, *t3.stride(), weight if weight is not None else x3,
            loss, coef, lse, share, keys if keys is not None else lse,
            rows, k, b, float(eps), 0,
            SPARSE=False, SMOOTH=eps > 0, ALLOWED_ONLY=allowed_only, WEIGHTED=weight is not None,
            IGNORE=False, RULED_OUT_INF=ruled_out_inf,
            CHECK=keys is not None, WITH_VALUE=x3.numel() < 2**31,
        )
        return loss, coef, share, lse

    @staticmethod
    def setup_context(ctx, inputs, output):
        x3, t3, weight, eps, allowed_only, inplace, _, _ = inputs
        ctx.mark_non_differentiable(output[1], output[2], output[3])
        ctx.save_for_backward(x3, t3, weight, output[1], output[2], output[3])
        ctx.eps, ctx.allowed_only, ctx.inplace = eps, allowed_only, inplace

    @staticmethod
    def vmap(info, in_dims, x3, t3, weight, eps, allowed_only, inplace, ruled_out_inf, keys):
        _refuse_batched(in_dims[2], inplace)
        x3, t3 = _merge_batch(info.batch_size, (x3, in_dims[0]), (t3, in_dims[1]))
        out = SoftSoftmaxCE.apply(x3, t3, weight, eps, allowed_only, False, ruled_out_inf, None)
        return _split_batch(info.batch_size, out), (0, 0, 0, 0)

    @staticmethod
    def backward(ctx, g, _, __, ___):
        x3, t3, weight, coef, share, lse = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula
            def forward(x3):
                return (_soft_formula(x3, t3, weight, ctx.eps, ctx.allowed_only),)

            return torch_backend._second_order(forward, x3, (g,)), None, None, None, None, None, None, None
        _, k, b = x3.shape
        rows = _rows_of(x3)
        out = _gradient_buffer(x3, ctx.inplace)
        _launch(
            tk.softmax_ce_backward, x3, rows, k,
            x3, *x3.stride(), lse, t3, *t3.stride(), weight if weight is not None else x3, lse,
            lse, coef, share, _vector(g, rows), lse, out, *out.stride(),
            rows, k, b, float(ctx.eps), 0,
            SPARSE=False, SMOOTH=ctx.eps > 0, ALLOWED_ONLY=ctx.allowed_only, WEIGHTED=weight is not None,
            IGNORE=False,
        )
        return (out.detach() if ctx.inplace else out), None, None, None, None, None, None, None


def _soft_formula(x3, t3, weight, eps, allowed_only):
    """:class:`SoftSoftmaxCE` written with torch operations (second order; finite logits)."""
    allowed = (x3 != -math.inf).to(_F32) if allowed_only else torch.ones_like(x3, dtype=_F32)
    q = t3.to(_F32) * (1.0 - eps) + allowed * (eps / allowed.sum(1, keepdim=True).clamp(min=1.0))
    u = q if weight is None else q * weight.view(1, -1, 1)
    terms = torch.log_softmax(x3.to(_F32), 1) * u
    return -torch.where(u == 0, torch.zeros_like(terms), terms).sum(1).reshape(-1)


# -------------------------------------------------------------- elementwise losses


class ElementwiseLoss(torch.autograd.Function):
    """Per-row mean (or sum) over the class axis of an elementwise loss ``f(p, t)``.

    ``p3``, ``t3``: ``(A, K, B)``; ``spec`` is ``(kind, logits, balance, mean, lo, hi,
    smoothing, alpha, gamma)`` (see :func:`triton_kernels.elementwise_forward`).  Returns
    float32 ``(A * B,)``; ``t3`` gets no gradient.
    """

    @staticmethod
    def forward(p3, t3, spec, keys):
        kind, logits, balance, mean, lo, hi, smoothing, alpha, gamma = spec
        _, k, b = p3.shape
        rows = _rows_of(p3)
        loss = torch.empty(rows, dtype=_F32, device=p3.device)
        _launch(
            tk.elementwise_forward, p3, rows, k,
            p3, *p3.stride(), t3, *t3.stride(), loss, keys if keys is not None else loss,
            rows, k, b, lo, hi, smoothing, alpha, gamma,
            KIND=kind, LOGITS=logits, BALANCE=balance, MEAN=mean,
            CHECK=keys is not None, WITH_VALUE=p3.numel() < 2**31,
        )
        return loss

    @staticmethod
    def setup_context(ctx, inputs, output):
        p3, t3, spec, _ = inputs
        ctx.save_for_backward(p3, t3)
        ctx.spec = spec

    @staticmethod
    def vmap(info, in_dims, p3, t3, spec, keys):
        p3, t3 = _merge_batch(info.batch_size, (p3, in_dims[0]), (t3, in_dims[1]))
        return _split_batch(info.batch_size, ElementwiseLoss.apply(p3, t3, spec, None)), 0

    @staticmethod
    def backward(ctx, g):
        p3, t3 = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula
            return torch_backend._second_order(lambda p3: (_elementwise_formula(p3, t3, ctx.spec),), p3, (g,)), None, None, None
        kind, logits, balance, mean, lo, hi, smoothing, alpha, gamma = ctx.spec
        _, k, b = p3.shape
        rows = _rows_of(p3)
        out = torch.empty(p3.shape, dtype=p3.dtype, device=p3.device)
        _launch(
            tk.elementwise_backward, p3, rows, k,
            p3, *p3.stride(), t3, *t3.stride(), _vector(g, rows), out, *out.stride(),
            rows, k, b, lo, hi, smoothing, alpha, gamma,
            KIND=kind, LOGITS=logits, BALANCE=balance, MEAN=mean,
        )
        return out, None, None, None


def _elementwise_formula(p3, t3, spec):
    """:class:`ElementwiseLoss` written with torch operations (second order)."""
    kind, logits, balance, mean, lo, hi, smoothing, alpha, gamma = spec
    p, t = p3.to(_F32), t3.to(_F32)
    if kind in (tk.BCE, tk.BCE_LOGITS, tk.BINARY_FOCAL):
        t = t * (1.0 - smoothing) + 0.5 * smoothing
    if kind == tk.BCE_LOGITS:
        f = t * torch.nn.functional.softplus(-p) + (1.0 - t) * torch.nn.functional.softplus(p)
    elif kind == tk.KL:
        u = t.clamp(lo, 1.0)
        f = u * torch.log(u / p.clamp(lo, 1.0))
    elif kind == tk.POISSON:
        f = p - t * torch.log(p + lo)
    else:
        s = torch.sigmoid(p) if logits else p
        q = s.clamp(lo, hi)
        f = -(t * torch.log(q) + (1.0 - t) * torch.log(1.0 - q))
        if kind == tk.BINARY_FOCAL:
            z = 1.0 - (t * s + (1.0 - t) * (1.0 - s))
            safe = torch.where(z > 0, z, torch.ones_like(z))
            f = torch.where(z > 0, safe**gamma, torch.full_like(z, 0.0 if gamma > 0 else 1.0)) * f
            if balance:
                f = (t * alpha + (1.0 - t) * (1.0 - alpha)) * f
    out = f.sum(1).reshape(-1)
    return out / p3.shape[1] if mean else out


# ------------------------------------------------------- losses of renormalised rows


class NormalizedLoss(torch.autograd.Function):
    """Keras's losses of renormalised, clipped probabilities (and the focal loss from
    logits): see :func:`triton_kernels.normalized_forward`.

    ``p3`` ``(A, K, B)``; ``target`` is ``(A * B,)`` class indices (``sparse``) or soft
    targets of ``p3``'s shape; ``alpha_vec`` ``(K,)`` float32 per-class focal weights or
    ``None``; ``spec`` is ``(sparse, focal, logits, lo, hi, smoothing, alpha, gamma)``.
    Returns ``(loss, norm, dot)`` float32 ``(A * B,)``; the last two are for the backward.
    """

    @staticmethod
    def forward(p3, target, alpha_vec, spec, keys):
        sparse, focal, logits, lo, hi, smoothing, alpha, gamma = spec
        _, k, b = p3.shape
        rows = _rows_of(p3)
        loss = torch.empty(rows, dtype=_F32, device=p3.device)
        norm = torch.empty(rows, dtype=_F32, device=p3.device)
        dot = torch.empty(rows, dtype=_F32, device=p3.device)
        y, t3, t_strides = (target, p3, (0, 0, 0)) if sparse else (loss, target, target.stride())
        _launch(
            tk.normalized_forward, p3, rows, k,
            p3, *p3.stride(), y, t3, *t_strides, alpha_vec if alpha_vec is not None else loss,
            loss, norm, dot, keys if keys is not None else loss,
            rows, k, b, lo, hi, smoothing, alpha, gamma,
            SPARSE=sparse, FOCAL=focal, LOGITS=logits, ALPHA_VEC=alpha_vec is not None,
            CHECK=keys is not None, WITH_VALUE=p3.numel() < 2**31,
        )
        return loss, norm, dot

    @staticmethod
    def setup_context(ctx, inputs, output):
        p3, target, alpha_vec, spec, _ = inputs
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.save_for_backward(p3, target, alpha_vec, output[1], output[2])
        ctx.spec = spec

    @staticmethod
    def vmap(info, in_dims, p3, target, alpha_vec, spec, keys):
        _refuse_batched(in_dims[2], False)
        p3, target = _merge_batch(info.batch_size, (p3, in_dims[0]), (target, in_dims[1]))
        return _split_batch(info.batch_size, NormalizedLoss.apply(p3, target, alpha_vec, spec, None)), (0, 0, 0)

    @staticmethod
    def backward(ctx, g, _, __):
        p3, target, alpha_vec, norm, dot = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the formula
            def forward(p3):
                return (_normalized_formula(p3, target, alpha_vec, ctx.spec),)

            return torch_backend._second_order(forward, p3, (g,)), None, None, None, None
        sparse, focal, logits, lo, hi, smoothing, alpha, gamma = ctx.spec
        _, k, b = p3.shape
        rows = _rows_of(p3)
        out = torch.empty(p3.shape, dtype=p3.dtype, device=p3.device)
        y, t3, t_strides = (target, p3, (0, 0, 0)) if sparse else (norm, target, target.stride())
        _launch(
            tk.normalized_backward, p3, rows, k,
            p3, *p3.stride(), y, t3, *t_strides, alpha_vec if alpha_vec is not None else norm,
            norm, dot, _vector(g, rows), out, *out.stride(),
            rows, k, b, lo, hi, smoothing, alpha, gamma,
            SPARSE=sparse, FOCAL=focal, LOGITS=logits, ALPHA_VEC=alpha_vec is not None,
        )
        return out, None, None, None, None


def _normalized_formula(p3, target, alpha_vec, spec):
    """:class:`NormalizedLoss` written with torch operations (second order)."""
    sparse, focal, logits, lo, hi, smoothing, alpha, gamma = spec
    a, k, b = p3.shape
    p = p3.to(_F32)
    u = torch.softmax(p, 1) if logits else p / p.sum(1, keepdim=True)
    q = u.clamp(lo, hi)
    if sparse:
        y3 = target.reshape(a, 1, b).long()
        y3 = torch.where((y3 >= 0) & (y3 < k), y3, torch.zeros_like(y3))
        return -torch.log(q.gather(1, y3)).reshape(-1)
    t = target.to(_F32) * (1.0 - smoothing) + smoothing / k
    f = -t * torch.log(q)
    if focal:
        al = alpha if alpha_vec is None else alpha_vec.view(1, -1, 1)
        f = al * (1.0 - q) ** gamma * f
    return f.sum(1).reshape(-1)


# ------------------------------------------------------------------------ torch.func


def _merge_batch(batch_size, *pairs):
    """Each ``(tensor, batch_dim)`` with its batch merged into its first dimension (more rows)."""
    out = []
    for x, dim in pairs:
        x = x.expand(batch_size, *x.shape) if dim is None else x.movedim(dim, 0)
        out.append(x.reshape((batch_size * x.shape[1],) + tuple(x.shape[2:])))
    return out


def _split_batch(batch_size, out):
    if isinstance(out, tuple):
        return tuple(_split_batch(batch_size, o) for o in out)
    return out.reshape((batch_size, out.shape[0] // batch_size) + tuple(out.shape[1:]))


def _refuse_batched(weight_dim, inplace):
    torch_backend._refuse_batched((weight_dim,), inplace)


# ------------------------------------------------------------------- value checks


def _decode(key: int, shape, with_value: bool, integer: bool):
    """``(position, value)`` of a check key: the index in ``shape`` and the value (or None)."""
    flat = key >> 32 if with_value else key
    pos = tuple(int(i) for i in np.unravel_index(flat, tuple(shape))) if len(shape) else ()
    if not with_value:
        return pos, None
    bits = struct.pack("<I", key & 0xFFFFFFFF)
    return pos, struct.unpack("<i" if integer else "<f", bits)[0]


def _labels_report(shape, num_classes, name="y_true", pred="y_pred"):
    with_value = math.prod(shape) < 2**31

    def report(key):
        pos, value = _decode(key, shape, with_value, True)
        shown = "out of range" if value is None else str(value)
        extra = " Negative labels are only allowed as `ignore_class`." if value is not None and value < 0 else ""
        msg = (
            f"`{name}` holds class index {shown} at index {pos}, but `{pred}` has {num_classes} "
            f"classes, so indices must be in [0, {num_classes - 1}].{extra} Check the label "
            "encoding, or the size of the model's output layer."
        )
        raise LabelValueError(msg)

    return report


def _range_report(name, shape, lo, hi, why):
    """The message of :func:`probloss._checks.check_range`, from a key."""
    with_value = math.prod(shape) < 2**31

    def report(key):
        pos, value = _decode(key, shape, with_value, False)
        if value is not None and not math.isfinite(value):
            msg = (
                f"`{name}` contains {value} at index {pos}; losses need finite inputs. "
                "Find where the NaN/inf first appears upstream (a division by zero, log(0), an overflow)."
            )
        else:
            bounds = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
            shown = "a value" if value is None else f"{value:g}"
            msg = f"`{name}` holds {shown} at index {pos}, but it must be {bounds}: {why}"
        raise C._error_for(name)(msg)

    return report


def _result_report(shape, names=("y_true", "y_pred")):
    with_value = math.prod(shape) < 2**31
    joined = " or ".join(f"`{n}`" for n in names)

    def report(key):
        pos, value = _decode(key, shape, with_value, False)
        msg = (
            f"the loss of sample {pos} is {'not finite' if value is None else value}: {joined} holds NaN or inf "
            "there; losses need finite inputs. Find where the NaN/inf first appears upstream (a division by "
            "zero, log(0), an overflow)."
        )
        raise PredictionValueError(msg)

    return report


def _logits_report(name, shape):
    """NaN or ``+inf`` logits (``-inf`` rules a class out and is allowed)."""
    with_value = math.prod(shape) < 2**31

    def report(key):
        pos, value = _decode(key, shape, with_value, False)
        msg = (
            f"`{name}` contains {'NaN or inf' if value is None else value} at index {pos}; logits must be finite, "
            "or -inf for a class that is ruled out. Find where the NaN/inf first appears upstream (a division "
            "by zero, log(0), an overflow)."
        )
        raise PredictionValueError(msg)

    return report


def _ruled_out_label_report(shape, axis, name="y_true", pred="y_pred"):
    """A class index whose logit is ``-inf`` (``ruled_out_target="raise"``)."""
    with_value = math.prod(shape) < 2**31

    def report(key):
        from ..functional._logits import RULED_OUT_HINT

        pos, label = _decode(key, shape, with_value, True)
        where = "" if label is None else str(list(pos[:axis] + (label,) + pos[axis:]))
        msg = f"`{name}` holds class {label} at index {pos}, but `{pred}`{where} is -inf: {RULED_OUT_HINT}"
        raise PredictionValueError(msg)

    return report


def _ruled_out_weight_report(name, pred, shape, axis):
    """Soft-target weight on a class whose logit is ``-inf`` (``ruled_out_target="raise"``)."""
    with_value = math.prod(shape) < 2**31

    def report(key):
        from ..functional._logits import RULED_OUT_HINT

        pos, value = _decode(key, shape, with_value, False)
        weight = "weight" if value is None else f"weight {value:g}"
        msg = f"`{name}` puts {weight} on class {pos[axis]} at index {pos}, but `{pred}`{list(pos)} is -inf: {RULED_OUT_HINT}"
        raise PredictionValueError(msg)

    return report


def _rows_report(name, axis, shape):
    """The warning of :func:`probloss._checks.warn_unnormalized`, from a key."""
    with_value = math.prod(shape) < 2**31

    def report(key):
        pos, value = _decode(key, shape, with_value, False)
        sums = "" if value is None else f" sums to {value:.6g}"
        return (
            f"`{name}` rows along axis {axis} should sum to 1 but the one at index {pos}{sums}; it is "
            "renormalised (as Keras does). If these are not probabilities, pass `from_logits=True`."
        )

    return report


def _begin(loss, slots, *arrays, standalone=False):
    """The check record of this call, or ``None`` when value checks are off."""
    if not C.eager(*arrays):
        return None
    return _deferred.begin(loss, slots, arrays[-1].device, standalone=standalone)


def _keys(record):
    return None if record is None else record.keys


def _submit(record, reports, result):
    if record is not None:
        _deferred.submit(record, reports, result)


# ------------------------------------------------------------- the dispatch entries
# Each has the signature (xp, y_true, y_pred, axis, options) and runs its value checks
# (deferred); the class axis is any axis.

# The option fields each kernel implements.  ignore_class is applied by the callers
# (labels mapped to a valid class, losses zeroed) for every backend; ruled_out_target only
# changes which results are errors.  Label smoothing of integer labels, class weights and
# pos_weight are not implemented by the kernels (see _fits).
_SPARSE = frozenset({"from_logits", "epsilon", "ignore_class", "ruled_out_target"})
_CATEGORICAL = frozenset({"from_logits", "label_smoothing", "epsilon", "ignore_class", "ruled_out_target"})
_BINARY = _CATEGORICAL
_EPSILON_ONLY = frozenset({"epsilon"})
_MISSING = object()


def _fits(o, known) -> bool:
    """True when every field of the options ``o`` outside ``known`` has its default value.

    A field the kernels do not implement (one added to the options later, say) with any
    other value sends the call to the torch column, so it can never be ignored here.
    """
    defaults = type(o)._field_defaults
    for field in o._fields:
        if field in known:
            continue
        value, default = getattr(o, field), defaults.get(field, _MISSING)
        if value is default:
            continue
        if type(value) is type(default) and isinstance(value, (bool, int, float, str)) and value == default:
            continue
        return False
    return True


def _kernel_input(x) -> bool:
    """The kernels take float32 and half precision; float64 keeps its precision on the torch column."""
    return x.dtype in _KERNEL_DTYPES


def _dense_targets_fit(t, p) -> bool:
    """Targets the kernels read: floating, of ``p``'s shape, needing no gradient."""
    return t.is_floating_point() and not t.requires_grad and t.shape == p.shape


def _per_sample(loss, x, axis):
    """Per-row float32 losses shaped as ``x`` without ``axis``, in ``x``'s dtype."""
    out = loss.reshape(x.shape[:axis] + x.shape[axis + 1 :])
    return out if out.dtype == x.dtype else out.to(x.dtype)


def _ruled_out_inf(o) -> bool:
    return getattr(o, "ruled_out_target", "raise") == "inf"


@torch.compiler.disable
def sparse(xp, labels, x, axis, o):
    """Sparse categorical cross-entropy (Keras), from logits or probabilities.

    To the torch column: float64, and options the kernels do not implement (see
    :func:`_fits`).
    """
    if not (_fits(o, _SPARSE) and _kernel_input(x)):
        return torch_backend.sparse(xp, labels, x, axis, o)
    loss, record, reports = _sparse(labels, x, axis, o)
    _submit(record, reports, loss)
    return loss


@torch.compiler.disable
def sparse_mean(xp, labels, x, axis, o):
    """The mean of :func:`sparse` over every position (Keras's default reduction)."""
    if not (_fits(o, _SPARSE) and _kernel_input(x)):
        return torch_backend.sparse_mean(xp, labels, x, axis, o)
    loss, record, reports = _sparse(labels, x, axis, o)
    mean = loss.mean()
    _submit(record, reports, mean)
    return mean


def _sparse(labels, x, axis, o):
    x3 = _rows3(x, axis)
    k = x3.shape[1]
    y = labels.reshape(-1).contiguous()
    shape = tuple(labels.shape)
    if o.from_logits:
        inf = _ruled_out_inf(o)
        record = _begin("sparse_categorical_crossentropy", 4, labels, x)
        loss = SparseSoftmaxCE.apply(x3, y, None, False, None, False, inf, _keys(record))[0]
        reports = [
            _labels_report(shape, k),
            _logits_report("y_pred", tuple(x.shape)),
            _clean if inf else _ruled_out_label_report(shape, axis),
            _result_report(shape, ("y_pred",)),
        ]
    else:
        record = _begin("sparse_categorical_crossentropy", 4, labels, x)
        spec = (True, False, False, o.epsilon, 1.0 - o.epsilon, 0.0, 0.0, 0.0)
        loss = NormalizedLoss.apply(x3, y, None, spec, _keys(record))[0]
        reports = [
            _labels_report(shape, k),
            _range_report("y_pred", tuple(x.shape), 0.0, 1.0, C.LOGITS_HINT),
            _result_report(shape, ("y_pred",)),
            _rows_report("y_pred", axis, shape),
        ]
    return _per_sample(loss, x, axis), record, reports


@torch.compiler.disable
def categorical(xp, t, x, axis, o, name="y_true"):
    """Categorical cross-entropy (Keras), from logits or probabilities, soft or one-hot targets.

    From logits, label smoothing spreads over the classes whose logit is not ``-inf``.
    To the torch column: float64, targets that need a gradient (the kernels give none),
    and options the kernels do not implement (see :func:`_fits`).
    """
    if not (_fits(o, _CATEGORICAL) and _kernel_input(x) and _dense_targets_fit(t, x)):
        return torch_backend.categorical(xp, t, x, axis, o, name)
    x3, t3 = _rows3(x, axis), _rows3(t, axis)
    pred = "logits" if name == "labels" else "y_pred"
    loss_name = "softmax_cross_entropy_with_logits" if name == "labels" else "categorical_crossentropy"
    shape = tuple(x.shape[:axis] + x.shape[axis + 1 :])
    labels = _range_report(name, tuple(t.shape), 0.0, None, "labels are probabilities and cannot be negative.")
    if o.from_logits:
        inf = _ruled_out_inf(o)
        record = _begin(loss_name, 4, t, x)
        loss = SoftSoftmaxCE.apply(x3, t3, None, o.label_smoothing, True, False, inf, _keys(record))[0]
        reports = [
            labels,
            _logits_report(pred, tuple(x.shape)),
            _clean if inf else _ruled_out_weight_report(name, pred, tuple(x.shape), axis),
            _result_report(shape, (name, pred)),
        ]
    else:
        record = _begin(loss_name, 4, t, x)
        spec = (False, False, False, o.epsilon, 1.0 - o.epsilon, o.label_smoothing, 0.0, 0.0)
        loss = NormalizedLoss.apply(x3, t3, None, spec, _keys(record))[0]
        reports = [
            labels,
            _range_report(pred, tuple(x.shape), 0.0, 1.0, C.LOGITS_HINT),
            _result_report(shape, (name, pred)),
            _rows_report(pred, axis, shape),
        ]
    out = _per_sample(loss, x, axis)
    _submit(record, reports, out)
    return out


def _elementwise(loss_name, t, p, axis, spec, hints):
    """An :class:`ElementwiseLoss` call with its checks: ``hints`` = (targets', predictions')
    ``(lo, hi, why)``, or ``None`` for no check of that input."""
    shape = tuple(p.shape[:axis] + p.shape[axis + 1 :])
    record = _begin(loss_name, 3, t, p)
    loss = ElementwiseLoss.apply(_rows3(p, axis), _rows3(t, axis), spec, _keys(record))
    full = tuple(p.shape)
    reports = [
        _range_report("y_true", full, *hints[0]) if hints[0] else None,
        _range_report("y_pred", full, *hints[1]) if hints[1] else None,
        _result_report(shape),
    ]
    out = _per_sample(loss, p, axis)
    _submit(record, [r if r is not None else _clean for r in reports], out)
    return out


def _clean(key):
    """The report of a slot that is not checked (it stays clean)."""
    return None


_UNIT = (0.0, 1.0)


@torch.compiler.disable
def binary(xp, t, p, axis, o):
    """Binary cross-entropy (Keras), from probabilities or logits, mean over ``axis``.

    To the torch column: float64, targets that need a gradient, and options the kernels
    do not implement (see :func:`_fits`).
    """
    if not (_fits(o, _BINARY) and _kernel_input(p) and _dense_targets_fit(t, p)):
        return torch_backend.binary(xp, t, p, axis, o)
    kind = tk.BCE_LOGITS if o.from_logits else tk.BCE
    spec = (kind, o.from_logits, False, True, o.epsilon, 1.0 - o.epsilon, o.label_smoothing, 0.0, 0.0)
    hints = ((*_UNIT, C.BINARY_TARGETS_HINT), None if o.from_logits else (*_UNIT, C.LOGITS_HINT))
    return _elementwise("binary_crossentropy", t, p, axis, spec, hints)


@torch.compiler.disable
def kl_divergence(xp, t, p, axis, o):
    """Keras's KL divergence, summed over ``axis``.  To the torch column: as :func:`binary`."""
    from ..functional.divergence import KL_HINT

    if not (_fits(o, _EPSILON_ONLY) and _kernel_input(p) and _dense_targets_fit(t, p)):
        return torch_backend.kl_divergence(xp, t, p, axis, o)
    spec = (tk.KL, False, False, False, o.epsilon, 1.0, 0.0, 0.0, 0.0)
    return _elementwise("kl_divergence", t, p, axis, spec, ((*_UNIT, KL_HINT), (*_UNIT, KL_HINT)))


@torch.compiler.disable
def poisson(xp, t, p, axis, o):
    """Keras's Poisson loss, mean over ``axis``.  To the torch column: as :func:`binary`."""
    from ..functional.poisson import COUNTS_HINT, RATES_HINT

    if not (_fits(o, _EPSILON_ONLY) and _kernel_input(p) and _dense_targets_fit(t, p)):
        return torch_backend.poisson(xp, t, p, axis, o)
    spec = (tk.POISSON, False, False, True, o.epsilon, 1.0, 0.0, 0.0, 0.0)
    return _elementwise("poisson", t, p, axis, spec, ((0.0, None, COUNTS_HINT), (0.0, None, RATES_HINT)))


_FOCAL = frozenset({"from_logits", "label_smoothing", "epsilon", "alpha", "gamma", "apply_class_balancing"})


@torch.compiler.disable
def binary_focal(xp, t, p, axis, o):
    """Binary focal cross-entropy (Keras), from probabilities or logits, mean over ``axis``.

    There is no torch column for the focal losses: float64, targets that need a gradient
    and unknown options take the generic formula.
    """
    from ..functional.focal import binary_focal_generic

    if not (_fits(o, _FOCAL) and _kernel_input(p) and _dense_targets_fit(t, p)):
        return binary_focal_generic(xp, t, p, axis, o)
    spec = (tk.BINARY_FOCAL, o.from_logits, o.apply_class_balancing, True, o.epsilon, 1.0 - o.epsilon, o.label_smoothing, o.alpha, o.gamma)
    hints = ((*_UNIT, C.BINARY_TARGETS_HINT), None if o.from_logits else (*_UNIT, C.LOGITS_HINT))
    return _elementwise("binary_focal_crossentropy", t, p, axis, spec, hints)


@torch.compiler.disable
def categorical_focal(xp, t, p, axis, o):
    """Categorical focal cross-entropy (Keras), from probabilities or logits (their softmax),
    a scalar or per-class ``alpha``.  Unsupported cases take the generic formula (as
    :func:`binary_focal`)."""
    from ..functional.focal import categorical_focal_generic

    if not (_fits(o, _FOCAL) and _kernel_input(p) and _dense_targets_fit(t, p)):
        return categorical_focal_generic(xp, t, p, axis, o)
    per_class = isinstance(o.alpha, tuple)
    alpha_vec = _alpha_tensor(o.alpha, p.device) if per_class else None
    spec = (False, True, o.from_logits, o.epsilon, 1.0 - o.epsilon, o.label_smoothing, 0.0 if per_class else o.alpha, o.gamma)
    shape = tuple(p.shape[:axis] + p.shape[axis + 1 :])
    record = _begin("categorical_focal_crossentropy", 4, t, p)
    loss = NormalizedLoss.apply(_rows3(p, axis), _rows3(t, axis), alpha_vec, spec, _keys(record))[0]
    reports = [
        _range_report("y_true", tuple(t.shape), 0.0, None, "labels are probabilities and cannot be negative."),
        _range_report("y_pred", tuple(p.shape), 0.0, 1.0, C.LOGITS_HINT),
        _result_report(shape),
        _rows_report("y_pred", axis, shape),
    ]
    out = _per_sample(loss, p, axis)
    _submit(record, reports, out)
    return out


_ALPHAS: dict = {}


def _alpha_tensor(alpha: tuple, device) -> torch.Tensor:
    """A per-class alpha as a float32 tensor on ``device``, copied there once (a small cache of facts)."""
    key = (alpha, device)
    tensor = _ALPHAS.get(key)
    if tensor is None:
        if len(_ALPHAS) > 64:
            _ALPHAS.clear()
        tensor = _ALPHAS[key] = torch.tensor(alpha, dtype=_F32, device=device)
    return tensor


# -------------------------------------------------------- the F.cross_entropy drop-in


@torch.compiler.disable
def cross_entropy_indices(x3, y, weight, smooth, inplace, ignore_index, on_bad_label, shape):
    """``(nll, smoothing or None)`` of :func:`probloss.torch.cross_entropy`'s class-index
    targets: ``x3`` ``(N, C)`` or ``(N, C, B)``, ``y`` the raw int64 targets ``(N[, B])``
    (indices equal to ``ignore_index`` are valid and use class 0: the caller zeroes them).

    The indices are checked in the kernel (deferred); a bad one is reported through
    ``on_bad_label(value, position)``, which raises the drop-in's own error, with its
    position in ``shape`` (the caller's target's shape).
    """
    x3 = x3 if x3.ndim == 3 else x3.unsqueeze(2)
    record = _begin("cross_entropy", 4, y, x3, standalone=True)
    y_flat = y.reshape(-1).contiguous()
    # torch's semantics: a -inf logit is just a number (no class is "ruled out") and the
    # drop-in checks the indices only, as F.cross_entropy does
    out = SparseSoftmaxCE.apply(x3, y_flat, _float_weights(weight, x3.device), smooth, ignore_index, inplace, True, _keys(record))
    with_value = x3.numel() < 2**31

    def report(key):
        pos, value = _decode(key, shape, with_value, True)
        on_bad_label(value, pos)

    _submit(record, [report, _clean, _clean, _clean], None)
    return out[0].reshape(y.shape), (out[1].reshape(y.shape) if smooth else None)


@torch.compiler.disable
def cross_entropy_probabilities(x3, t3, weight, eps, inplace):
    """The per-row loss of :func:`probloss.torch.cross_entropy`'s probability targets
    (torch checks nothing there, nor does this)."""
    rows = x3.shape[:1] + x3.shape[2:]
    if x3.ndim == 2:
        x3, t3 = x3.unsqueeze(2), t3.unsqueeze(2)
    return SoftSoftmaxCE.apply(x3, t3, _float_weights(weight, x3.device), float(eps), False, inplace, True, None)[0].reshape(rows)


# ------------------------------------------------- fused linear cross-entropy (chunks)


def linear_ce_chunk(src, out, bias, y, a, beta, gam, cw, wsum, cap, lse, zy=None, zw=None):
    """One chunk of :func:`probloss.torch.linear_cross_entropy` (see
    :func:`~probloss._backends.triton_kernels.linear_ce_chunk`).

    ``src`` ``(rows, V)`` holds the products ``X_c W^T`` (float32, float16 or bfloat16,
    unit stride along the classes); ``bias`` ``(V,)`` or ``None``; ``y`` ``(rows,)``
    int64 class indices in ``[0, V)``; ``a``, ``beta``, ``gam`` ``(rows,)`` float32 (the
    last two ``None`` without smoothing / z-loss); ``cw`` ``(V,)`` float32 class weights
    or ``None`` (ones); ``wsum`` a one-element float32 tensor, their sum (used with
    ``beta``); ``cap`` the softcap or ``None``.  Every vector is contiguous.

    With ``zy`` given, ``lse``, ``zy`` (and ``zw`` with ``beta``) receive the row
    statistics; otherwise ``lse`` is read.  With ``out`` (float32 ``(rows, V)``, unit
    class stride, possibly ``src``), the gradient with respect to ``src`` is written there.
    """
    rows, k = src.shape
    out_arg = src if out is None else out
    _launch(
        tk.linear_ce_chunk, src, rows, k,
        src, src.stride(0), out_arg, out_arg.stride(0),
        src if bias is None else bias, y, a, lse if beta is None else beta,
        lse if gam is None else gam, lse if cw is None else cw, lse if wsum is None else wsum,
        lse, lse if zy is None else zy, lse if zw is None else zw,
        rows, k, 1.0 if cap is None else float(cap),
        BIAS=bias is not None, CAP=cap is not None, SMOOTH=beta is not None, ZLOSS=gam is not None,
        WEIGHTED=cw is not None, STATS=zy is not None, GRAD=out is not None,
    )


def linear_lpe_chunk(src, out, bias, y, cap, lse, ent, zy=None, gl=None, gh=None):
    """One chunk of :func:`probloss.torch.linear_log_probs_and_entropy` (see
    :func:`~probloss._backends.triton_kernels.linear_lpe_chunk`), with the inputs of
    :func:`linear_ce_chunk`.  With ``zy`` given (the forward) ``lse``, ``zy`` and ``ent``
    receive the row statistics; otherwise they are read and the gradient of
    ``gl log p_y + gh H`` (``gl``, ``gh`` contiguous float32 ``(rows,)`` or ``None``) is
    written into ``out``.
    """
    rows, k = src.shape
    out_arg = src if out is None else out
    _launch(
        tk.linear_lpe_chunk, src, rows, k,
        src, src.stride(0), out_arg, out_arg.stride(0),
        src if bias is None else bias, y, lse, lse if zy is None else zy, ent,
        lse if gl is None else gl, lse if gh is None else gh,
        rows, k, 1.0 if cap is None else float(cap),
        BIAS=bias is not None, CAP=cap is not None, STATS=zy is not None, GL=gl is not None, GH=gh is not None,
    )
