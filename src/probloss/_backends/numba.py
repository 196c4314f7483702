"""Compiled loops for big float32 NumPy arrays (numba; the optional ``fast`` extra).

Keras's binary cross-entropy (from probabilities or logits), KL divergence, Poisson and
categorical cross-entropy (from probabilities, or soft targets from logits) read two
``N x K`` inputs and do a few flops per element.  NumPy allocates an ``N x K`` temporary
for each step of the formula, and a value check reads both inputs once more.  Each
kernel here computes the per-row loss of one loss over a 2-D C-contiguous float32 array
in one pass and, when its ``check`` argument is true, in the same pass the largest bit
pattern of each input read as ``uint32``, from which :func:`within` tests
``0 <= x <= hi``.  The loops run on the caller's thread: probloss starts no threads.

Only :mod:`probloss._backends.numpy` calls these kernels, for NumPy arrays; torch tensors
are served by torch code.

Vectorising needs three things that plain numba code lacks:

* ``log`` as straight-line float32 code (:func:`logf`): numba calls libm's scalar
  ``logf`` otherwise, which LLVM cannot vectorise, and the loop ran 4x slower than
  torch's vectorised ``log``;
* ``error_model="numpy"``: Python semantics put a zero-division test before every
  ``/``, which stops vectorisation;
* sums with the ``reassoc`` flag, so LLVM may split them over vector lanes.  That flag is
  kept out of the elementwise code (it could reorder the ``log`` polynomial): each row's
  values go to a scratch row first, then :func:`_sum64` adds them in float64.

The loop around the formula is written out in each kernel on purpose: numba cannot cache
a kernel made by a factory function (a closure over the formula), so every process would
compile them again (4 s), and one kernel that branches on the loss (a literal argument)
ran 3-4x slower, no longer vectorised.

Numbers: each row is added in float64 (torch and Keras add float32), and the kernels'
own float32 ``log`` and ``exp`` are within one ulp of the exact values, as torch's are;
so results agree with torch's to about 1e-7 relative, not bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

F32 = np.float32


@intrinsic
def _float_bits(typingctx, x):
    """The IEEE bits of a float32, as an int32 (no conversion, a bit cast)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, i):
    """The float32 whose IEEE bits are the int32 ``i``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


# Natural log in float32 after the classic fdlibm/FreeBSD ``logf``: write x = 2^k m with
# m in [sqrt(2)/2, sqrt(2)), f = m - 1, s = f / (2 + f); then
# log(m) = f - f^2/2 + s (f^2/2 + R(s^2)), R a degree-4 polynomial in s^2, and
# log(x) = k ln2_hi + (k ln2_lo + log(m)) with ln2 split so that k ln2_hi is exact.
# Measured against float64 NumPy: at most 0.81 ulp (torch's log: 0.88 ulp).
_LG1, _LG2, _LG3, _LG4 = F32(0.66666662693), F32(0.40000972152), F32(0.28498786688), F32(0.24279078841)
_LN2_HI, _LN2_LO = F32(6.9313812256e-01), F32(9.0580006145e-06)
_TINY = F32(1.17549435e-38)  # smallest normal float32; below it x is scaled by 2^25
_TWO25 = F32(33554432.0)
_NAN, _INF = F32(np.nan), F32(np.inf)

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@numba.njit(inline="always", **_JIT)
def logf(x):
    """``log(x)`` for a float32 ``x``, branch-free; NaN below 0, -inf at 0, inf at inf."""
    sub = x < _TINY
    xs = x * _TWO25 if sub else x
    ix = _float_bits(xs)
    k = (ix >> 23) - (152 if sub else 127)
    m = ix & 0x007FFFFF
    # Pick the exponent that puts the mantissa in [sqrt(2)/2, sqrt(2)): 0x95f64 << 3 is the
    # mantissa of sqrt(2)/2 rounded, so adding it carries into bit 23 exactly when m is large.
    carry = (m + (0x95F64 << 3)) & 0x800000
    f = _bits_float(np.int32(m | (carry ^ 0x3F800000))) - F32(1.0)
    k = k + (carry >> 23)
    s = f / (F32(2.0) + f)
    z = s * s
    w = z * z
    r = z * (_LG1 + w * _LG3) + w * (_LG2 + w * _LG4)
    half_f2 = F32(0.5) * f * f
    dk = F32(k)
    y = s * (half_f2 + r) + dk * _LN2_LO - half_f2 + f + dk * _LN2_HI
    y = _NAN if (x < F32(0.0)) | (x != x) else y
    y = -_INF if x == F32(0.0) else y
    return x if x == _INF else y


# exp in float32 after Cephes ``expf``: n = round(x / ln2), r = x - n ln2 (ln2 split in two
# so that n * C1 is exact), exp(r) = 1 + r + r^2 P(r) with P of degree 5, then times 2^n,
# applied as 2^(n//2) 2^(n - n//2) so that results near overflow and subnormal ones are
# rounded once, like libm's.
_LOG2E = F32(1.44269504088896341)
_C1, _C2 = F32(0.693359375), F32(-2.12194440e-4)
_P0, _P1, _P2 = F32(1.9875691500e-4), F32(1.3981999507e-3), F32(8.3334519073e-3)
_P3, _P4, _P5 = F32(4.1665795894e-2), F32(1.6666665459e-1), F32(5.0000001201e-1)


@numba.njit(inline="always", **_JIT)
def _pow2(n):
    """2^n as a float32 for an integer n in [-126, 127] (built from its exponent bits)."""
    return _bits_float(np.int32((n + 127) << 23))


@numba.njit(inline="always", **_JIT)
def expf(x):
    """``exp(x)`` for a float32 ``x``, branch-free; 0 below -104, inf above 88.7, NaN kept."""
    nan = x != x
    x = F32(0.0) if nan else min(max(x, F32(-104.0)), F32(89.0))
    z = np.floor(_LOG2E * x + F32(0.5))
    r = x - z * _C1
    r = r - z * _C2
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    y = p * (r * r) + r + F32(1.0)
    n = np.int32(z)
    half = n >> 1
    y = y * _pow2(half) * _pow2(n - half)
    return _NAN if nan else y


@numba.njit(inline="always", **_JIT)
def log1pf(e):
    """``log(1 + e)`` for ``e >= 0``: ``log(u)`` with ``u = 1 + e`` rounded, corrected by
    the rounding error ``(u - 1) - e`` to first order."""
    u = F32(1.0) + e
    return logf(u) - ((u - F32(1.0)) - e) / u


@numba.njit(inline="always", **_JIT)
def _clip(x, lo, hi):
    """``clip`` that keeps NaN (as Keras's and torch's do): comparisons with NaN are false."""
    x = lo if x < lo else x
    return hi if x > hi else x


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def _sum64(values):
    # An indexed loop: numba's array iterator (``for v in values``) vectorises 10x worse.
    s = 0.0
    for j in range(values.shape[0]):
        s += values[j]
    return s


@numba.njit(inline="always", **_JIT)
def _ubits(x):
    """The bits of a float32 as a uint32: they grow with x >= 0, and exceed those of
    every bound in [0, inf] for a negative x or a NaN."""
    return np.uint32(_float_bits(x))


@numba.njit(inline="always", **_JIT)
def _order_key(i):
    """An int32 that orders like the float32 with bits ``i`` (its own inverse).

    Non-negative floats already order like their bits; negative ones order in reverse,
    so their 31 low bits are flipped.  LLVM vectorises integer ``max`` loops, not float
    ones (whose NaN rules forbid reordering).
    """
    return i ^ ((i >> 31) & np.int32(0x7FFFFFFF))


@numba.njit(**_JIT)
def _row_max(bits):
    """``max`` of a float32 row given as int32 bits; a (positive) NaN wins, as in torch."""
    m = np.int32(-(2**31))
    for j in range(bits.shape[0]):
        m = max(m, np.int32(_order_key(bits[j])))
    return _bits_float(np.int32(_order_key(m)))


@numba.njit(**_JIT)
def soft_ce_rows(t, x, check, loss, t_sum):
    """Softmax cross-entropy with soft targets, ``sum_c t_c (lse(x) - x_c)`` per row.

    Computed as ``T log(s) - sum_c t_c d_c`` with ``d = x - max(x)`` (the float32
    differences torch's log-softmax starts from), ``s = sum_c exp(d_c)`` and
    ``T = sum_c t_c`` (also returned, in ``t_sum``: the backward needs it).  For
    ``t >= 0`` both terms are >= 0, so nothing cancels; the sums are float64.

    A logit of ``-inf`` (a ruled-out class) with ``t_c = 0`` contributes 0, not
    ``0 * -inf``; with ``t_c > 0`` the loss is ``+inf``.  A row of ``-inf`` logits only
    takes ``max = 0`` and ``log(s) = 0``, so it gives 0 (no target weight) or ``+inf``.
    """
    xi = x.view(np.int32)
    e = np.empty(x.shape[1], np.float32)
    td = np.empty(x.shape[1], np.float32)
    t_bits = np.uint32(0)
    for i in range(t.shape[0]):
        m = _row_max(xi[i])
        m = F32(0.0) if m == -_INF else m
        for j in range(x.shape[1]):
            d = x[i, j] - m
            e[j] = expf(d)
            td[j] = F32(0.0) if t[i, j] == F32(0.0) else t[i, j] * d
            if check:  # (indexing t again here vectorised 7x better than a named tv)
                t_bits = max(t_bits, _ubits(t[i, j]))
        total = _sum64(t[i])
        s = _sum64(e)
        loss[i] = (0.0 if s == 0.0 else total * np.log(s)) - _sum64(td)
        t_sum[i] = total
    return t_bits


@numba.njit(**_JIT)
def bce_rows(t, p, lo, hi, check, out):
    """Binary cross-entropy, Keras's formula: ``-(t log q + (1 - t) log(1 - q))``, ``q = clip(p, lo, hi)``."""
    row = np.empty(p.shape[1], np.float32)
    t_bits = p_bits = np.uint32(0)
    for i in range(t.shape[0]):
        for j in range(p.shape[1]):
            tv, pv = t[i, j], p[i, j]
            q = _clip(pv, lo, hi)
            row[j] = -(tv * logf(q) + (F32(1.0) - tv) * logf(F32(1.0) - q))
            if check:
                t_bits, p_bits = max(t_bits, _ubits(tv)), max(p_bits, _ubits(pv))
        out[i] = _sum64(row)
    return t_bits, p_bits


@numba.njit(**_JIT)
def kl_rows(t, p, lo, hi, check, out):
    """KL divergence, Keras's formula: ``u log(u / q)``, ``u = clip(t, lo, 1)``, ``q = clip(p, lo, 1)``."""
    row = np.empty(p.shape[1], np.float32)
    t_bits = p_bits = np.uint32(0)
    for i in range(t.shape[0]):
        for j in range(p.shape[1]):
            tv, pv = t[i, j], p[i, j]
            u, q = _clip(tv, lo, F32(1.0)), _clip(pv, lo, F32(1.0))
            row[j] = u * logf(u / q)
            if check:
                t_bits, p_bits = max(t_bits, _ubits(tv)), max(p_bits, _ubits(pv))
        out[i] = _sum64(row)
    return t_bits, p_bits


@numba.njit(**_JIT)
def poisson_rows(t, p, lo, hi, check, out):
    """Poisson, Keras's formula: ``p - t log(p + lo)``."""
    row = np.empty(p.shape[1], np.float32)
    t_bits = p_bits = np.uint32(0)
    for i in range(t.shape[0]):
        for j in range(p.shape[1]):
            tv, pv = t[i, j], p[i, j]
            row[j] = pv - tv * logf(pv + lo)
            if check:
                t_bits, p_bits = max(t_bits, _ubits(tv)), max(p_bits, _ubits(pv))
        out[i] = _sum64(row)
    return t_bits, p_bits


@numba.njit(**_JIT)
def bce_logits_rows(t, x, lo, hi, check, out):
    """Binary cross-entropy from logits: ``t softplus(-x) + (1 - t) softplus(x)``, where
    ``softplus(x) = max(x, 0) + log1p(exp(-|x|))`` never overflows."""
    row = np.empty(x.shape[1], np.float32)
    t_bits = x_bits = np.uint32(0)
    for i in range(t.shape[0]):
        for j in range(x.shape[1]):
            tv, xv = t[i, j], x[i, j]
            tail = log1pf(expf(-abs(xv)))
            pos = (xv if xv > F32(0.0) else F32(0.0)) + tail
            neg = (-xv if xv < F32(0.0) else F32(0.0)) + tail
            row[j] = tv * neg + (F32(1.0) - tv) * pos
            if check:
                t_bits, x_bits = max(t_bits, _ubits(tv)), max(x_bits, _ubits(xv))
        out[i] = _sum64(row)
    return t_bits, x_bits


@numba.njit(**_JIT)
def cat_probs_rows(t, p, lo, hi, check, out, sums):
    """Categorical cross-entropy from probabilities, Keras's formula:
    ``-sum_c t_c log(clip(p_c / s, lo, hi))`` with ``s = sum_c p_c`` (Keras renormalises
    each row); ``s`` also goes to ``sums``, for the caller's warning on unnormalised rows.
    """
    row = np.empty(p.shape[1], np.float32)
    t_bits = p_bits = np.uint32(0)
    for i in range(t.shape[0]):
        total = _sum64(p[i])
        s = F32(total)
        for j in range(p.shape[1]):
            q = _clip(p[i, j] / s, lo, hi)
            row[j] = t[i, j] * logf(q)
            if check:
                t_bits, p_bits = max(t_bits, _ubits(t[i, j])), max(p_bits, _ubits(p[i, j]))
        out[i] = -_sum64(row)
        sums[i] = total
    return t_bits, p_bits


_SUM_BLOCK = 256  # elements added in float32 before going into float64


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def row_sums_bits(x, sums):
    """Row sums of a 2-D float32 ``x`` into ``sums`` and the largest bits of ``x + 0``.

    Each row is added in float32 blocks of 256 elements (LLVM spreads a block over vector
    lanes), then the block sums in float64: within 2e-8 (uniform rows) to 1.5e-7 (peaked
    softmax rows) relative of the exact sums, where torch's ``sum`` is within 1.8e-7 to
    2.8e-7.  Adding +0 turns -0.0 into +0.0, so the bits test ``0 <= x <= hi`` exactly.
    """
    m = np.uint32(0)
    n = x.shape[1]
    whole = n - n % _SUM_BLOCK
    zero = F32(0.0)
    for i in range(x.shape[0]):
        row = x[i]
        s = 0.0
        for j0 in range(0, whole, _SUM_BLOCK):
            b = zero
            for j in range(j0, j0 + _SUM_BLOCK):
                v = row[j]
                b += v
                m = max(m, _ubits(v + zero))
            s += b
        for j in range(whole, n):
            v = row[j]
            s += v
            m = max(m, _ubits(v + zero))
        sums[i] = s
    return m


KERNELS = {
    "binary": bce_rows,
    "binary_logits": bce_logits_rows,
    "kl": kl_rows,
    "poisson": poisson_rows,
    "cat_probs": cat_probs_rows,
    "soft_ce": soft_ce_rows,
}
"""The row kernels by loss."""


def within(bits: int, hi: float | None) -> bool:
    """True when an input whose largest bit pattern is ``bits`` surely lies in ``[0, hi]``.

    The bits of a float32 ``x >= 0``, read as ``uint32``, grow with ``x``; a negative
    number (sign bit set) or a NaN reads larger than the bits of any bound in
    ``[0, inf]``.  A ``-0.0`` also reads large: a False here means "run the exact check",
    which names the offending element (or, for ``-0.0``, passes).
    """
    bound = np.float32(np.inf if hi is None else hi)
    return bits <= int(bound.view(np.uint32))


def load_kernels() -> None:
    """Compile, or load from numba's disk cache, every kernel now.

    Otherwise each kernel is loaded on the first big array that needs it (about 4 s to
    compile the first time, then 0.5 s from the cache, most of it importing numba).  The
    benchmarks call this before measuring memory, so that numba counts as loaded library
    code, as torch's and JAX's own kernels do.
    """
    one = np.ones((1, 1), np.float32)
    out = np.empty(1, np.float64)
    lo, hi = np.float32(0.0), np.float32(1.0)
    for kind in ("binary", "binary_logits", "kl", "poisson"):
        KERNELS[kind](one, one, lo, hi, True, out)
    cat_probs_rows(one, one, lo, hi, True, out, out.copy())
    soft_ce_rows(one, one, True, out, out.copy())
    row_sums_bits(one, out)


@numba.njit(**_JIT)
def log_array(x, out):
    """``out[:] = logf(x)`` for 1-D float32 arrays (the tests measure :func:`logf` with it)."""
    for j in range(x.shape[0]):
        out[j] = logf(x[j])


@numba.njit(**_JIT)
def exp_array(x, out):
    """``out[:] = expf(x)`` (for the tests)."""
    for j in range(x.shape[0]):
        out[j] = expf(x[j])


@numba.njit(**_JIT)
def log1p_array(x, out):
    """``out[:] = log1pf(x)`` (for the tests)."""
    for j in range(x.shape[0]):
        out[j] = log1pf(x[j])
