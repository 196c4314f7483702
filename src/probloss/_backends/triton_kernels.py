"""The Triton kernels of the CUDA backend (called from :mod:`probloss._backends.triton` only).

Every kernel sees its tensors through one layout: a tensor whose class axis has ``K``
entries is read as ``(A, K, B)`` (``A`` the product of the axes before the class axis,
``B`` of those after it) with arbitrary strides, so any class axis and any strided view
work without a copy.  A *row* is one position ``r = a * B + b`` (one sample); its loss
is a reduction over the ``K`` classes.

One program handles ``ROWS`` rows and walks their classes ``BLOCK_K`` at a time: a tile of
``ROWS x BLOCK_K`` elements.  The host picks the tile shape (:func:`tile`): for many
classes one row per program and big blocks of classes (contiguous along the class axis),
for few classes many rows per program (contiguous along the rows when the class axis is
not the last).  Arithmetic is float32 whatever the input dtype; gradients are stored in
the dtype of their buffer.

Softmax cross-entropy makes **one pass** over the logits in the forward: an online max
and sum of exponentials (the running max rescales the sum whenever it grows), the logit
of the label, and the weighted sums the smoothing or soft-target terms need.  It saves
one log-sum-exp per row; the backward makes one more pass, reading the logits and writing
``softmax * c - target`` straight into the gradient buffer (which may be the logits'
own).  The losses on probabilities need the row sum before anything else, so they read
a row twice in the forward (the second read of a row of up to a few thousand classes
comes from cache).

:func:`linear_ce_chunk` serves :func:`probloss.torch.linear_cross_entropy`: it reads one
chunk of the products ``X_c W^T`` (rows of a contiguous buffer, not the ``(A, K, B)``
layout), applies the bias and softcap as it reads, makes the same one-pass online
log-sum-exp (plus the target logit and the smoothing sum), and writes the gradient with
respect to the products in a second pass, in place when the buffer is float32.  Its
targets were checked and its ignored rows dropped by the caller.

**Value checks** run in the same pass when ``CHECK`` is set.  Each check owns one slot of
an int64 buffer ``keys`` and records the *first* offending element there with
``atomic_min`` of a key ``(flat index << 32) | bits of the value`` (the value's float32 or
int32 bits), so the smallest key names the first element in row-major order and carries
its value.  ``WITH_VALUE=False`` (tensors of 2**31 elements or more) keeps the index only.
A clean slot keeps :data:`NO_KEY`.  The host reads the buffer later, without stopping the
device (:mod:`probloss._deferred`).  Rows whose class index is out of range read no memory
outside the tensor: they use class 0 and their loss and gradient are NaN.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "BCE",
    "BCE_LOGITS",
    "BINARY_FOCAL",
    "KL",
    "NO_KEY",
    "POISSON",
    "elementwise_backward",
    "elementwise_forward",
    "linear_ce_chunk",
    "linear_lpe_chunk",
    "normalized_backward",
    "normalized_forward",
    "softmax_ce_backward",
    "softmax_ce_forward",
    "tile",
]

NO_KEY = 2**63 - 1
"""The value of a clean check slot (int64 max)."""

_NO_KEY = tl.constexpr(NO_KEY)
_INF = tl.constexpr(float("inf"))

# Kinds of elementwise losses (a constexpr of elementwise_forward / elementwise_backward)
BCE, BCE_LOGITS, KL, POISSON, BINARY_FOCAL = 0, 1, 2, 3, 4


def tile(num_classes: int, rows: int, *, interpreted: bool) -> tuple[int, int, int]:
    """``(ROWS, BLOCK_K, num_warps)`` for ``rows`` rows of ``num_classes`` classes.

    About 4096 elements per tile on a GPU (16 per thread with 8 warps); the interpreter
    runs a tile as NumPy operations, so bigger tiles are faster there.
    """
    elements = 1 << 14 if interpreted else 1 << 12
    block_k = min(triton.next_power_of_2(max(num_classes, 1)), elements)
    per_program = max(1, min(elements // block_k, triton.next_power_of_2(max(rows, 1)), 1024))
    warps = 8 if block_k * per_program >= 2048 else 4
    return per_program, block_k, warps


# ----------------------------------------------------------------------------- helpers


@triton.jit
def _rows(ROWS: tl.constexpr, R, B):
    """This program's rows ``r``, their ``(a, b)`` coordinates, and which exist."""
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    a = r // B
    return r, a, r - a * B, r < R


@triton.jit
def _key(bad, flat, bits, WITH_VALUE: tl.constexpr):
    """The check key of each element: ``(flat << 32) | bits`` where ``bad``, else NO_KEY."""
    if WITH_VALUE:
        key = (flat << 32) | (bits.to(tl.int64) & 0xFFFFFFFF)
    else:
        key = flat
    return tl.where(bad, key, _NO_KEY)


@triton.jit
def _float_bits(v):
    return v.to(tl.float32).to(tl.int32, bitcast=True)


@triton.jit
def _int_bits(v):
    return tl.minimum(tl.maximum(v, -2147483648), 2147483647).to(tl.int32)


@triton.jit
def _first(best, key2d):
    """Fold a tile's keys (``ROWS x BLOCK_K``) into the running per-row minimum."""
    return tl.minimum(best, tl.min(key2d, 1))


@triton.jit
def _flat(a, b, kk, K, B):
    """Row-major flat index of element ``(a, k, b)`` of an ``(A, K, B)`` tensor (2-D tile)."""
    return (a[:, None] * K + kk[None, :].to(tl.int64)) * B + b[:, None]


@triton.jit
def _log1p(u):
    """``log(1 + u)`` for ``u >= 0``, accurate for tiny ``u`` (Triton has no log1p)."""
    return tl.where(u < 1e-4, u * (1.0 - 0.5 * u), tl.log(1.0 + u))


@triton.jit
def _softplus(z):
    return tl.maximum(z, 0.0) + _log1p(tl.exp(-tl.abs(z)))


@triton.jit
def _sigmoid(x):
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def _store_key(key_ptr, slot, best):
    tl.atomic_min(key_ptr + slot, tl.min(best, 0))


# -------------------------------------------------------------- softmax cross-entropy


@triton.jit
def softmax_ce_forward(
    x_ptr, sxa, sxk, sxb,
    y_ptr,
    t_ptr, sta, stk, stb,
    w_ptr,
    loss_ptr, aux_ptr, lse_ptr, share_ptr, key_ptr,
    R, K, B, smoothing, ignore_index,
    SPARSE: tl.constexpr, SMOOTH: tl.constexpr, ALLOWED_ONLY: tl.constexpr, WEIGHTED: tl.constexpr,
    IGNORE: tl.constexpr, RULED_OUT_INF: tl.constexpr,
    CHECK: tl.constexpr, WITH_VALUE: tl.constexpr, ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Per-row softmax cross-entropy from logits, in one pass over the logits.

    ``SPARSE``: class indices ``y``; ``loss = lse - x[y]`` and, with ``SMOOTH``,
    ``aux = sum_c w_c (lse - x_c)`` over every class (torch's smoothing term; ``w`` ones
    unless ``WEIGHTED``).  ``IGNORE``: indices equal to ``ignore_index`` are valid (they
    use class 0; the caller zeroes them).

    Otherwise soft targets ``t``: ``loss = sum_c w_c q_c (lse - x_c)`` and ``aux = sum_c
    w_c q_c`` (the backward's scale), with ``q = (1 - a) t + a / K_r`` (``a`` =
    ``smoothing``, only with ``SMOOTH``) where ``K_r`` counts the classes whose logit is
    not ``-inf`` with ``ALLOWED_ONLY`` (probloss's rule: smoothing spreads over the allowed
    classes, and ``q`` is ``(1 - a) t`` on ruled-out ones), else all ``K`` (torch's).
    ``share`` receives ``a / K_r`` for the backward.

    A logit of ``-inf`` rules its class out: ``0 * (-inf)`` counts as 0, so a class with
    no target weight adds nothing, and a row of ``-inf`` only with zero targets gives 0
    (``log(sum exp)`` is taken as 0 there); target weight on such a class gives ``+inf``.
    The weighted sums are kept relative to the running max, ``acc = sum v (x - m)``,
    shifted when the max grows, so that ``loss = vsum log(s) - acc`` adds two numbers
    >= 0 and nothing cancels.  ``lse`` is saved.

    Check slots: 0 the targets (indices in range; soft targets finite and >= 0), 1 the
    logits (NaN or ``+inf``), 2 target weight on a ruled-out class, 3 the loss (finite;
    ``+inf`` allowed with ``RULED_OUT_INF``).
    """
    r, a, b, live = _rows(ROWS, R, B)
    xrow = a * sxa + b * sxb
    shift = tl.zeros((ROWS,), tl.float32)  # the running max, or 0 while it is -inf
    m = tl.full((ROWS,), float("-inf"), tl.float32)
    s = tl.zeros((ROWS,), tl.float32)  # sum exp(x - shift)
    acc = tl.zeros((ROWS,), tl.float32)  # sum v (x - shift): targets (soft) or smoothing (sparse)
    vsum = tl.zeros((ROWS,), tl.float32)  # sum v
    acc_a = tl.zeros((ROWS,), tl.float32)  # soft targets' smoothing: sum_allowed w (x - shift)
    wsum_a = tl.zeros((ROWS,), tl.float32)  # sum_allowed w
    count = tl.zeros((ROWS,), tl.float32)  # K_r
    tbest = tl.full((ROWS,), _NO_KEY, tl.int64)
    xbest = tl.full((ROWS,), _NO_KEY, tl.int64)
    rbest = tl.full((ROWS,), _NO_KEY, tl.int64)
    if SPARSE:
        y = tl.load(y_ptr + r, mask=live, other=0).to(tl.int64)
        in_range = (y >= 0) & (y < K)
        ok = in_range
        if IGNORE:
            ok = in_range | (y == ignore_index)
        y_safe = tl.where(in_range, y, 0)
        if CHECK:
            tbest = _key(live & ~ok, r, _int_bits(y), WITH_VALUE)
    else:
        trow = a * sta + b * stb
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        msk = live[:, None] & (kk < K)[None, :]
        xt = tl.load(x_ptr + xrow[:, None] + kk[None, :].to(tl.int64) * sxk, mask=msk, other=float("-inf")).to(tl.float32)
        if CHECK:
            flat = _flat(a, b, kk, K, B)
            xbest = _first(xbest, _key(msk & ((xt != xt) | (xt == _INF)), flat, _float_bits(xt), WITH_VALUE))
        m = tl.maximum(m, tl.max(xt, 1))
        new_shift = tl.where(m == float("-inf"), 0.0, m)
        step = shift - new_shift
        s = s * tl.exp(step) + tl.sum(tl.exp(xt - new_shift[:, None]), 1)
        centred = tl.where(msk, xt - new_shift[:, None], 0.0)
        if WEIGHTED:
            w = tl.load(w_ptr + kk, mask=kk < K, other=0.0).to(tl.float32)[None, :]
        else:
            w = 1.0
        if SPARSE:
            if SMOOTH:
                v = tl.where(msk, w, 0.0)
                acc = acc + step * vsum + tl.sum(v * centred, 1)
                vsum = vsum + tl.sum(v, 1)
        else:
            tt = tl.load(t_ptr + trow[:, None] + kk[None, :].to(tl.int64) * stk, mask=msk, other=0.0).to(tl.float32)
            if CHECK:
                tbest = _first(tbest, _key(msk & ~((tt >= 0) & (tt < _INF)), flat, _float_bits(tt), WITH_VALUE))
                rbest = _first(rbest, _key(msk & (tt > 0) & (xt == float("-inf")), flat, _float_bits(tt), WITH_VALUE))
            v = tl.where(msk, w * tt, 0.0)
            if SMOOTH:
                v = v * (1.0 - smoothing)
            # 0 * (-inf) counts as 0: a class without target weight adds nothing
            acc = acc + step * vsum + tl.sum(tl.where(v == 0, 0.0, v * centred), 1)
            vsum = vsum + tl.sum(v, 1)
            if SMOOTH:
                if ALLOWED_ONLY:
                    allowed = msk & (xt != float("-inf"))
                else:
                    allowed = msk
                wa = tl.where(allowed, w, 0.0)
                acc_a = acc_a + step * wsum_a + tl.sum(tl.where(allowed, wa * centred, 0.0), 1)
                wsum_a = wsum_a + tl.sum(wa, 1)
                count = count + tl.sum(allowed.to(tl.float32), 1)
        shift = new_shift
    log_s = tl.log(tl.where(s == 0, 1.0, s))  # a row of -inf only: 0, so that zero targets give 0
    lse = shift + log_s
    if SPARSE:
        xy = tl.load(x_ptr + xrow + y_safe * sxk, mask=live, other=0.0).to(tl.float32)
        loss = tl.where(ok, lse - xy, float("nan"))
        if CHECK:
            rbest = _key(live & in_range & (xy == float("-inf")), r, _int_bits(y), WITH_VALUE)
        if SMOOTH:
            tl.store(aux_ptr + r, tl.where(ok, vsum * log_s - acc, float("nan")), mask=live)
    else:
        loss = vsum * log_s - acc
        coef = vsum
        if SMOOTH:
            share = smoothing / tl.maximum(count, 1.0)
            loss = loss + share * (wsum_a * log_s - acc_a)
            coef = coef + share * wsum_a
            tl.store(share_ptr + r, share, mask=live)
        tl.store(aux_ptr + r, coef, mask=live)
    tl.store(loss_ptr + r, loss, mask=live)
    tl.store(lse_ptr + r, lse, mask=live)
    if CHECK:
        _store_key(key_ptr, 0, tbest)
        _store_key(key_ptr, 1, xbest)
        _store_key(key_ptr, 2, rbest)
        if RULED_OUT_INF:
            bad = (loss != loss) | (loss == -_INF)
        else:
            bad = ~(tl.abs(loss) < _INF)
        _store_key(key_ptr, 3, _key(live & bad, r, _float_bits(loss), WITH_VALUE))


@triton.jit
def softmax_ce_backward(
    x_ptr, sxa, sxk, sxb,
    y_ptr,
    t_ptr, sta, stk, stb,
    w_ptr, wsum_ptr,
    lse_ptr, aux_ptr, share_ptr, g1_ptr, g2_ptr,
    out_ptr, soa, sok, sob,
    R, K, B, smoothing, ignore_index,
    SPARSE: tl.constexpr, SMOOTH: tl.constexpr, ALLOWED_ONLY: tl.constexpr, WEIGHTED: tl.constexpr,
    IGNORE: tl.constexpr, ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The gradient of :func:`softmax_ce_forward`'s outputs, one pass, into ``out``.

    ``SPARSE``: ``dx = softmax (g1 + W g2) - g1 onehot(y) - g2 w`` (``g2`` only with
    ``SMOOTH``; ``W = sum w``).  Soft targets: ``dx = g (softmax aux - w q)``.  A
    ruled-out class (logit ``-inf``) has softmax 0.  ``out`` may be the logits' own
    buffer: each element is read before it is written, by the same program.
    """
    r, a, b, live = _rows(ROWS, R, B)
    xrow = a * sxa + b * sxb
    orow = a * soa + b * sob
    lse = tl.load(lse_ptr + r, mask=live, other=0.0)
    g1 = tl.load(g1_ptr + r, mask=live, other=0.0)
    if SPARSE:
        y = tl.load(y_ptr + r, mask=live, other=0).to(tl.int64)
        in_range = (y >= 0) & (y < K)
        ok = in_range
        if IGNORE:
            ok = in_range | (y == ignore_index)
        y_safe = tl.where(in_range, y, 0)
        coef = g1
        if SMOOTH:
            g2 = tl.load(g2_ptr + r, mask=live, other=0.0)
            coef = g1 + g2 * tl.load(wsum_ptr)
        coef = tl.where(ok, coef, float("nan"))
    else:
        trow = a * sta + b * stb
        coef = g1 * tl.load(aux_ptr + r, mask=live, other=0.0)
        if SMOOTH:
            share = tl.load(share_ptr + r, mask=live, other=0.0)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        msk = live[:, None] & (kk < K)[None, :]
        xt = tl.load(x_ptr + xrow[:, None] + kk[None, :].to(tl.int64) * sxk, mask=msk, other=0.0).to(tl.float32)
        d = tl.exp(xt - lse[:, None]) * coef[:, None]
        if WEIGHTED:
            w = tl.load(w_ptr + kk, mask=kk < K, other=0.0).to(tl.float32)[None, :]
        else:
            w = 1.0
        if SPARSE:
            d = d - tl.where(kk[None, :] == y_safe[:, None], g1[:, None], 0.0)
            if SMOOTH:
                d = d - g2[:, None] * w
        else:
            q = tl.load(t_ptr + trow[:, None] + kk[None, :].to(tl.int64) * stk, mask=msk, other=0.0).to(tl.float32)
            if SMOOTH:
                q = (1.0 - smoothing) * q
                if ALLOWED_ONLY:
                    q = q + tl.where(xt != float("-inf"), share[:, None], 0.0)
                else:
                    q = q + share[:, None]
            d = d - g1[:, None] * w * q
        tl.store(out_ptr + orow[:, None] + kk[None, :].to(tl.int64) * sok, d.to(out_ptr.dtype.element_ty), mask=msk)


# ------------------------------------------------- fused linear cross-entropy (chunks)


@triton.jit
def _tanh(u):
    """``tanh(u)`` in float32 (Triton's portable math has none): a series below 0.05,
    where ``1 - exp(-2|u|)`` would lose relative precision, else from ``exp(-2|u|)``."""
    au = tl.abs(u)
    e = tl.exp(-2.0 * au)
    u2 = au * au
    t = tl.where(au < 0.05, au * (1.0 - u2 * (1.0 / 3.0 - u2 * (2.0 / 15.0))), (1.0 - e) / (1.0 + e))
    return tl.where(u < 0, -t, t)


@triton.jit
def _chunk_logits(src_ptr, srow, b_ptr, kk, msk, K, cap, BIAS: tl.constexpr, CAP: tl.constexpr):
    """A tile of the logits ``z = cap tanh((s + b) / cap)`` (``s + b`` without ``CAP``) of
    the products ``s``, ``-inf`` outside the rows, and ``tanh(.)`` (0 without ``CAP``)."""
    z = tl.load(src_ptr + srow[:, None] + kk[None, :], mask=msk, other=float("-inf")).to(tl.float32)
    if BIAS:
        z = z + tl.load(b_ptr + kk, mask=kk < K, other=0.0).to(tl.float32)[None, :]
    t = tl.zeros_like(z)
    if CAP:
        t = _tanh(z / cap)
        z = tl.where(msk, cap * t, float("-inf"))
    return z, t


@triton.jit
def linear_ce_chunk(
    src_ptr, ss, out_ptr, so,
    b_ptr, y_ptr, a_ptr, beta_ptr, gam_ptr, w_ptr, wsum_ptr,
    lse_ptr, zy_ptr, zw_ptr,
    R, K, cap,
    BIAS: tl.constexpr, CAP: tl.constexpr, SMOOTH: tl.constexpr, ZLOSS: tl.constexpr, WEIGHTED: tl.constexpr,
    STATS: tl.constexpr, GRAD: tl.constexpr, ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One chunk of :func:`probloss.torch.linear_cross_entropy`: ``R`` rows of ``K``
    classes of the products ``s = X_c W^T`` (``src``, row stride ``ss``, unit class
    stride; float32 or half precision, read as float32).

    Each row's logits are ``z = cap tanh((s + b) / cap)`` (``BIAS``, ``CAP``).
    ``STATS``: one pass (online max and sum of exponentials) stores the row's
    ``lse = logsumexp(z)``, ``z_y`` (``y`` the row's class) and, with ``SMOOTH``,
    ``z_w = sum_c w_c z_c`` (``w`` ones unless ``WEIGHTED``); otherwise ``lse`` is read
    (the backward's recomputation).  ``GRAD``: a second pass writes the gradient of
    ``a (lse - z_y) + beta sum_c w_c (lse - z_c) + gam lse^2`` with respect to ``s``::

        (softmax(z) (a + beta W + 2 gam lse) - a [c == y] - beta w_c) (1 - tanh^2)

    (``W = sum_c w_c`` at ``wsum``; ``beta`` with ``SMOOTH``, ``gam`` with ``ZLOSS``; the
    last factor with ``CAP``) in float32 into ``out`` (row stride ``so``), which may be
    ``src`` itself: each element is read before the same program writes it.
    """
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    live = r < R
    srow = r * ss
    y = tl.load(y_ptr + r, mask=live, other=0).to(tl.int64)
    if STATS:
        shift = tl.zeros((ROWS,), tl.float32)  # the running max, or 0 while it is -inf
        m = tl.full((ROWS,), float("-inf"), tl.float32)
        s = tl.zeros((ROWS,), tl.float32)  # sum exp(z - shift)
        zy = tl.zeros((ROWS,), tl.float32)
        zw = tl.zeros((ROWS,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            msk = live[:, None] & (kk < K)[None, :]
            z, t = _chunk_logits(src_ptr, srow, b_ptr, kk, msk, K, cap, BIAS, CAP)
            m = tl.maximum(m, tl.max(z, 1))
            new_shift = tl.where(m == float("-inf"), 0.0, m)
            s = s * tl.exp(shift - new_shift) + tl.sum(tl.exp(z - new_shift[:, None]), 1)
            shift = new_shift
            zy = zy + tl.sum(tl.where(msk & (kk[None, :] == y[:, None]), z, 0.0), 1)
            if SMOOTH:
                if WEIGHTED:
                    w = tl.load(w_ptr + kk, mask=kk < K, other=0.0).to(tl.float32)[None, :]
                    zw = zw + tl.sum(tl.where(msk, w * z, 0.0), 1)
                else:
                    zw = zw + tl.sum(tl.where(msk, z, 0.0), 1)
        lse = shift + tl.log(s)  # a row of -inf only: -inf
        tl.store(lse_ptr + r, lse, mask=live)
        tl.store(zy_ptr + r, zy, mask=live)
        if SMOOTH:
            tl.store(zw_ptr + r, zw, mask=live)
    else:
        lse = tl.load(lse_ptr + r, mask=live, other=0.0)
    if GRAD:
        a = tl.load(a_ptr + r, mask=live, other=0.0)
        coef = a
        if SMOOTH:
            beta = tl.load(beta_ptr + r, mask=live, other=0.0)
            coef = coef + beta * tl.load(wsum_ptr)
        if ZLOSS:
            coef = coef + 2.0 * tl.load(gam_ptr + r, mask=live, other=0.0) * lse
        orow = r * so
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            msk = live[:, None] & (kk < K)[None, :]
            z, t = _chunk_logits(src_ptr, srow, b_ptr, kk, msk, K, cap, BIAS, CAP)
            g = tl.exp(z - lse[:, None]) * coef[:, None] - tl.where(kk[None, :] == y[:, None], a[:, None], 0.0)
            if SMOOTH:
                if WEIGHTED:
                    w = tl.load(w_ptr + kk, mask=kk < K, other=0.0).to(tl.float32)[None, :]
                    g = g - beta[:, None] * w
                else:
                    g = g - beta[:, None]
            if CAP:
                g = g * (1.0 - t * t)
            tl.store(out_ptr + orow[:, None] + kk[None, :], g, mask=msk)


# ------------------------------------------------------------------ elementwise losses


@triton.jit
def _elementwise(p, t, lo, hi, smoothing, alpha, gamma, KIND: tl.constexpr, BALANCE: tl.constexpr):
    """``(value, d value / d p)`` of one elementwise loss (see :func:`elementwise_forward`)."""
    if KIND == 0:  # BCE
        t = t * (1.0 - smoothing) + 0.5 * smoothing
        q = tl.minimum(tl.maximum(p, lo), hi)
        f = -(t * tl.log(q) + (1.0 - t) * tl.log(1.0 - q))
        df = tl.where((p >= lo) & (p <= hi), (1.0 - t) / (1.0 - q) - t / q, 0.0)
    elif KIND == 1:  # BCE_LOGITS
        t = t * (1.0 - smoothing) + 0.5 * smoothing
        f = t * _softplus(-p) + (1.0 - t) * _softplus(p)
        df = _sigmoid(p) - t
    elif KIND == 2:  # KL
        u = tl.minimum(tl.maximum(t, lo), 1.0)
        q = tl.minimum(tl.maximum(p, lo), 1.0)
        f = u * tl.log(u / q)
        df = tl.where((p >= lo) & (p <= 1.0), -u / q, 0.0)
    elif KIND == 3:  # POISSON
        f = p - t * tl.log(p + lo)
        df = 1.0 - t / (p + lo)
    else:  # BINARY_FOCAL on probabilities (the caller applies the sigmoid's chain rule)
        t = t * (1.0 - smoothing) + 0.5 * smoothing
        q = tl.minimum(tl.maximum(p, lo), hi)
        bce = -(t * tl.log(q) + (1.0 - t) * tl.log(1.0 - q))
        dbce = tl.where((p >= lo) & (p <= hi), (1.0 - t) / (1.0 - q) - t / q, 0.0)
        z = 1.0 - (t * p + (1.0 - t) * (1.0 - p))
        positive = z > 0
        log_z = tl.log(tl.where(positive, z, 1.0))
        zpow = tl.where(positive, tl.exp(gamma * log_z), tl.where(gamma > 0, 0.0, 1.0))
        dzpow = tl.where(positive & (gamma != 0), gamma * tl.exp((gamma - 1.0) * log_z), 0.0)
        f = zpow * bce
        df = dzpow * (1.0 - 2.0 * t) * bce + zpow * dbce
        if BALANCE:
            wb = t * alpha + (1.0 - t) * (1.0 - alpha)
            f = wb * f
            df = wb * df
    return f, df


@triton.jit
def elementwise_forward(
    p_ptr, spa, spk, spb,
    t_ptr, sta, stk, stb,
    loss_ptr, key_ptr,
    R, K, B, lo, hi, smoothing, alpha, gamma,
    KIND: tl.constexpr, LOGITS: tl.constexpr, BALANCE: tl.constexpr, MEAN: tl.constexpr,
    CHECK: tl.constexpr, WITH_VALUE: tl.constexpr, ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Per-row mean (``MEAN``) or sum over the classes of an elementwise loss ``f(p, t)``.

    ``KIND``: BCE ``-(t log q + (1 - t) log(1 - q))``, ``q = clip(p, lo, hi)``;
    BCE_LOGITS ``t softplus(-x) + (1 - t) softplus(x)``; KL ``u log(u / q)`` with
    ``u, q`` clipped to ``[lo, 1]``; POISSON ``p - t log(p + lo)``; BINARY_FOCAL
    ``(1 - p_t)^gamma bce`` (times the class balance with ``BALANCE``; ``LOGITS``: of
    ``sigmoid(x)``).  The binary kinds smooth ``t`` towards 1/2 by ``smoothing``.

    Check slots: 0 the targets (in ``[0, 1]``; Poisson ``>= 0``), 1 the predictions
    (probabilities in ``[0, 1]``; Poisson rates ``>= 0``; none for logits), 2 the loss.
    """
    r, a, b, live = _rows(ROWS, R, B)
    prow = a * spa + b * spb
    trow = a * sta + b * stb
    total = tl.zeros((ROWS,), tl.float32)
    tbest = tl.full((ROWS,), _NO_KEY, tl.int64)
    pbest = tl.full((ROWS,), _NO_KEY, tl.int64)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        msk = live[:, None] & (kk < K)[None, :]
        off_k = kk[None, :].to(tl.int64)
        p = tl.load(p_ptr + prow[:, None] + off_k * spk, mask=msk, other=0.5).to(tl.float32)
        t = tl.load(t_ptr + trow[:, None] + off_k * stk, mask=msk, other=0.5).to(tl.float32)
        if CHECK:
            flat = _flat(a, b, kk, K, B)
            if KIND == 3:
                tbad = ~(t >= 0)
                pbad = ~(p >= 0)
            else:
                tbad = ~((t >= 0) & (t <= 1))
                pbad = ~((p >= 0) & (p <= 1))
            tbest = _first(tbest, _key(msk & tbad, flat, _float_bits(t), WITH_VALUE))
            if not LOGITS:
                pbest = _first(pbest, _key(msk & pbad, flat, _float_bits(p), WITH_VALUE))
        if LOGITS and KIND == 4:
            p = _sigmoid(p)
        f, _ = _elementwise(p, t, lo, hi, smoothing, alpha, gamma, KIND, BALANCE)
        total = total + tl.sum(tl.where(msk, f, 0.0), 1)
    if MEAN:
        total = total / K
    tl.store(loss_ptr + r, total, mask=live)
    if CHECK:
        _store_key(key_ptr, 0, tbest)
        _store_key(key_ptr, 1, pbest)
        _store_key(key_ptr, 2, _key(live & ~(tl.abs(total) < _INF), r, _float_bits(total), WITH_VALUE))


@triton.jit
def elementwise_backward(
    p_ptr, spa, spk, spb,
    t_ptr, sta, stk, stb,
    g_ptr, out_ptr, soa, sok, sob,
    R, K, B, lo, hi, smoothing, alpha, gamma,
    KIND: tl.constexpr, LOGITS: tl.constexpr, BALANCE: tl.constexpr, MEAN: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """``d loss_r / d p = g_r f'(p, t)`` (divided by ``K`` with ``MEAN``), into ``out``."""
    r, a, b, live = _rows(ROWS, R, B)
    prow = a * spa + b * spb
    trow = a * sta + b * stb
    orow = a * soa + b * sob
    g = tl.load(g_ptr + r, mask=live, other=0.0)
    if MEAN:
        g = g / K
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        msk = live[:, None] & (kk < K)[None, :]
        off_k = kk[None, :].to(tl.int64)
        p = tl.load(p_ptr + prow[:, None] + off_k * spk, mask=msk, other=0.5).to(tl.float32)
        t = tl.load(t_ptr + trow[:, None] + off_k * stk, mask=msk, other=0.5).to(tl.float32)
        if LOGITS and KIND == 4:
            s = _sigmoid(p)
            _, df = _elementwise(s, t, lo, hi, smoothing, alpha, gamma, KIND, BALANCE)
            df = df * s * (1.0 - s)
        else:
            _, df = _elementwise(p, t, lo, hi, smoothing, alpha, gamma, KIND, BALANCE)
        tl.store(out_ptr + orow[:, None] + off_k * sok, (df * g[:, None]).to(out_ptr.dtype.element_ty), mask=msk)


# ------------------------------------------------------- losses of renormalised rows


@triton.jit
def _normalized_terms(u, t, kk, alpha_ptr, K, lo, hi, smoothing, alpha, gamma, FOCAL: tl.constexpr, ALPHA_VEC: tl.constexpr):
    """``(f, a)``: the loss terms of clipped probabilities ``q = clip(u)`` and ``a = df/du``."""
    q = tl.minimum(tl.maximum(u, lo), hi)
    t = (1.0 - smoothing) * t + smoothing / K
    log_q = tl.log(q)
    inside = (u >= lo) & (u <= hi)
    if FOCAL:
        if ALPHA_VEC:
            al = tl.load(alpha_ptr + kk, mask=kk < K, other=0.0).to(tl.float32)[None, :]
        else:
            al = alpha
        log_z = tl.log(1.0 - q)  # q <= hi < 1
        zpow = tl.exp(gamma * log_z)
        f = al * zpow * (-t * log_q)
        a = al * (gamma * tl.exp((gamma - 1.0) * log_z) * t * log_q - zpow * t / q)
    else:
        f = -t * log_q
        a = -t / q
    return f, tl.where(inside, a, 0.0)


@triton.jit
def normalized_forward(
    p_ptr, spa, spk, spb,
    y_ptr,
    t_ptr, sta, stk, stb,
    alpha_ptr,
    loss_ptr, norm_ptr, dot_ptr, key_ptr,
    R, K, B, lo, hi, smoothing, alpha, gamma,
    SPARSE: tl.constexpr, FOCAL: tl.constexpr, LOGITS: tl.constexpr, ALPHA_VEC: tl.constexpr,
    CHECK: tl.constexpr, WITH_VALUE: tl.constexpr, ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Keras's losses on renormalised, clipped probabilities ``q = clip(p / sum(p), lo, hi)``.

    ``SPARSE``: ``-log q[y]``.  Otherwise ``sum_c f_c`` with ``f = -t log q`` (categorical
    cross-entropy) or, with ``FOCAL``, ``alpha_c (1 - q_c)^gamma (-t_c log q_c)``;
    ``t`` smoothed towards ``1/K``.  ``LOGITS`` (focal only): ``p = softmax(x)`` (then the
    row sum is 1).

    Saves ``norm`` (the row sum, or the log-sum-exp with ``LOGITS``) and ``dot = sum_c a_c
    u_c`` with ``a = df/du``, ``u = p / sum(p)``: the backward is then one pass,
    ``dp = g (a - dot) / sum(p)`` (logits: ``g u (a - dot)``).

    Check slots: 0 the targets (indices in range, or ``t >= 0``), 1 the probabilities (in
    ``[0, 1]``), 2 the loss, 3 rows of probabilities not summing to 1 (within 1e-3; a
    warning: Keras renormalises them).
    """
    r, a, b, live = _rows(ROWS, R, B)
    prow = a * spa + b * spb
    pbest = tl.full((ROWS,), _NO_KEY, tl.int64)
    tbest = tl.full((ROWS,), _NO_KEY, tl.int64)
    if LOGITS:
        shift = tl.zeros((ROWS,), tl.float32)
        m = tl.full((ROWS,), float("-inf"), tl.float32)
        s = tl.zeros((ROWS,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            msk = live[:, None] & (kk < K)[None, :]
            xt = tl.load(p_ptr + prow[:, None] + kk[None, :].to(tl.int64) * spk, mask=msk, other=float("-inf")).to(tl.float32)
            m = tl.maximum(m, tl.max(xt, 1))
            new_shift = tl.where(m == float("-inf"), 0.0, m)
            s = s * tl.exp(shift - new_shift) + tl.sum(tl.exp(xt - new_shift[:, None]), 1)
            shift = new_shift
        norm = shift + tl.log(s)
    else:
        norm = tl.zeros((ROWS,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            msk = live[:, None] & (kk < K)[None, :]
            pt = tl.load(p_ptr + prow[:, None] + kk[None, :].to(tl.int64) * spk, mask=msk, other=0.0).to(tl.float32)
            norm = norm + tl.sum(pt, 1)
            if CHECK:
                pbest = _first(pbest, _key(msk & ~((pt >= 0) & (pt <= 1)), _flat(a, b, kk, K, B), _float_bits(pt), WITH_VALUE))
    dot = tl.zeros((ROWS,), tl.float32)
    if SPARSE:
        y = tl.load(y_ptr + r, mask=live, other=0).to(tl.int64)
        ok = (y >= 0) & (y < K)
        if CHECK:
            tbest = _key(live & ~ok, r, _int_bits(y), WITH_VALUE)
        py = tl.load(p_ptr + prow + tl.where(ok, y, 0) * spk, mask=live, other=1.0).to(tl.float32)
        q = tl.minimum(tl.maximum(py / norm, lo), hi)
        loss = tl.where(ok, -tl.log(q), float("nan"))
    else:
        trow = a * sta + b * stb
        loss = tl.zeros((ROWS,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            msk = live[:, None] & (kk < K)[None, :]
            off_k = kk[None, :].to(tl.int64)
            pt = tl.load(p_ptr + prow[:, None] + off_k * spk, mask=msk, other=0.0).to(tl.float32)
            tt = tl.load(t_ptr + trow[:, None] + off_k * stk, mask=msk, other=0.0).to(tl.float32)
            if CHECK:
                tbest = _first(tbest, _key(msk & ~(tt >= 0), _flat(a, b, kk, K, B), _float_bits(tt), WITH_VALUE))
            if LOGITS:
                u = tl.exp(pt - norm[:, None])
            else:
                u = pt / norm[:, None]
            f, da = _normalized_terms(u, tt, kk, alpha_ptr, K, lo, hi, smoothing, alpha, gamma, FOCAL, ALPHA_VEC)
            loss = loss + tl.sum(tl.where(msk, f, 0.0), 1)
            dot = dot + tl.sum(tl.where(msk, da * u, 0.0), 1)
    tl.store(loss_ptr + r, loss, mask=live)
    tl.store(norm_ptr + r, norm, mask=live)
    tl.store(dot_ptr + r, dot, mask=live)
    if CHECK:
        _store_key(key_ptr, 0, tbest)
        _store_key(key_ptr, 1, pbest)
        _store_key(key_ptr, 2, _key(live & ~(tl.abs(loss) < _INF), r, _float_bits(loss), WITH_VALUE))
        if not LOGITS:
            _store_key(key_ptr, 3, _key(live & ~(tl.abs(norm - 1.0) <= 1e-3), r, _float_bits(norm), WITH_VALUE))


@triton.jit
def normalized_backward(
    p_ptr, spa, spk, spb,
    y_ptr,
    t_ptr, sta, stk, stb,
    alpha_ptr,
    norm_ptr, dot_ptr, g_ptr,
    out_ptr, soa, sok, sob,
    R, K, B, lo, hi, smoothing, alpha, gamma,
    SPARSE: tl.constexpr, FOCAL: tl.constexpr, LOGITS: tl.constexpr, ALPHA_VEC: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The gradient of :func:`normalized_forward`'s loss, one pass, into ``out``."""
    r, a, b, live = _rows(ROWS, R, B)
    prow = a * spa + b * spb
    orow = a * soa + b * sob
    norm = tl.load(norm_ptr + r, mask=live, other=1.0)
    g = tl.load(g_ptr + r, mask=live, other=0.0)
    if SPARSE:
        y = tl.load(y_ptr + r, mask=live, other=0).to(tl.int64)
        ok = (y >= 0) & (y < K)
        y_safe = tl.where(ok, y, 0)
        uy = tl.load(p_ptr + prow + y_safe * spk, mask=live, other=1.0).to(tl.float32) / norm
        qy = tl.minimum(tl.maximum(uy, lo), hi)
        ay = tl.where((uy >= lo) & (uy <= hi), -1.0 / qy, 0.0)
        dot = ay * uy
        g = tl.where(ok, g, float("nan"))
    else:
        trow = a * sta + b * stb
        dot = tl.load(dot_ptr + r, mask=live, other=0.0)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        msk = live[:, None] & (kk < K)[None, :]
        off_k = kk[None, :].to(tl.int64)
        pt = tl.load(p_ptr + prow[:, None] + off_k * spk, mask=msk, other=0.0).to(tl.float32)
        if SPARSE:
            da = tl.where(kk[None, :] == y_safe[:, None], ay[:, None], 0.0)
        else:
            tt = tl.load(t_ptr + trow[:, None] + off_k * stk, mask=msk, other=0.0).to(tl.float32)
            if LOGITS:
                u = tl.exp(pt - norm[:, None])
            else:
                u = pt / norm[:, None]
            _, da = _normalized_terms(u, tt, kk, alpha_ptr, K, lo, hi, smoothing, alpha, gamma, FOCAL, ALPHA_VEC)
        if LOGITS:
            d = g[:, None] * u * (da - dot[:, None])
        else:
            d = g[:, None] * (da - dot[:, None]) / norm[:, None]
        tl.store(out_ptr + orow[:, None] + off_k * sok, d.to(out_ptr.dtype.element_ty), mask=msk)


@triton.jit
def linear_lpe_chunk(
    src_ptr, ss, out_ptr, so,
    b_ptr, y_ptr, lse_ptr, zy_ptr, ent_ptr, gl_ptr, gh_ptr,
    R, K, cap,
    BIAS: tl.constexpr, CAP: tl.constexpr, STATS: tl.constexpr, GL: tl.constexpr, GH: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One chunk of :func:`probloss.torch.linear_log_probs_and_entropy`, as
    :func:`linear_ce_chunk` reads it (products ``src``, bias, softcap).

    ``STATS`` (the forward): one pass stores ``lse``, ``z_y`` and the entropy
    ``H = log s - t / s`` from the online sums ``s = sum exp(z - m)`` and
    ``t = sum exp(z - m) (z - m)`` (``m`` the running max; both are rescaled when it grows,
    ``t`` by ``exp(step) (t + step s)``).  Otherwise (the backward) one pass reads ``lse``
    and ``H`` and writes the gradient with respect to ``src`` of ``gl log p_y + gh H``::

        (gl ([c == y] - p_c) - gh p_c (log p_c + H)) (1 - tanh^2)

    (the ``gl`` term with ``GL``, the ``gh`` term with ``GH``; ``p_c = 0`` adds nothing)
    in float32 into ``out`` (which may be ``src``).
    """
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    live = r < R
    srow = r * ss
    y = tl.load(y_ptr + r, mask=live, other=0).to(tl.int64)
    if STATS:
        shift = tl.zeros((ROWS,), tl.float32)  # the running max, or 0 while it is -inf
        m = tl.full((ROWS,), float("-inf"), tl.float32)
        s = tl.zeros((ROWS,), tl.float32)  # sum exp(z - shift)
        t_acc = tl.zeros((ROWS,), tl.float32)  # sum exp(z - shift) (z - shift)
        zy = tl.zeros((ROWS,), tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            msk = live[:, None] & (kk < K)[None, :]
            z, t = _chunk_logits(src_ptr, srow, b_ptr, kk, msk, K, cap, BIAS, CAP)
            m = tl.maximum(m, tl.max(z, 1))
            new_shift = tl.where(m == float("-inf"), 0.0, m)
            step = shift - new_shift
            scale = tl.exp(step)
            centred = z - new_shift[:, None]
            e = tl.exp(centred)
            t_acc = scale * (t_acc + step * s) + tl.sum(tl.where(z == float("-inf"), 0.0, e * centred), 1)
            s = s * scale + tl.sum(e, 1)
            shift = new_shift
            zy = zy + tl.sum(tl.where(msk & (kk[None, :] == y[:, None]), z, 0.0), 1)
        tl.store(lse_ptr + r, shift + tl.log(s), mask=live)
        tl.store(zy_ptr + r, zy, mask=live)
        tl.store(ent_ptr + r, tl.log(s) - t_acc / s, mask=live)
    else:
        lse = tl.load(lse_ptr + r, mask=live, other=0.0)
        ent = tl.load(ent_ptr + r, mask=live, other=0.0)
        if GL:
            gl = tl.load(gl_ptr + r, mask=live, other=0.0)
        if GH:
            gh = tl.load(gh_ptr + r, mask=live, other=0.0)
        orow = r * so
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            msk = live[:, None] & (kk < K)[None, :]
            z, t = _chunk_logits(src_ptr, srow, b_ptr, kk, msk, K, cap, BIAS, CAP)
            logp = z - lse[:, None]
            p = tl.exp(logp)
            g = tl.zeros_like(z)
            if GH:
                g = -gh[:, None] * tl.where(z == float("-inf"), 0.0, p * (logp + ent[:, None]))
            if GL:
                g = g + gl[:, None] * (tl.where(kk[None, :] == y[:, None], 1.0, 0.0) - p)
            if CAP:
                g = g * (1.0 - t * t)
            tl.store(out_ptr + orow[:, None] + kk[None, :], g, mask=msk)
