"""The compiled kernels of ``probloss._backends.numba``, called directly.

Their float32 ``log``/``exp``/``log1p`` are measured in ulps against float64 NumPy; each
row kernel's losses against a float64 NumPy formula written from Keras's definitions,
and the bits it returns against the exact range test.  How the NumPy backend uses them
(sizes, checks, error messages) is tested in ``test_numpy.py``.  Skipped without numba.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("numba")

from probloss._backends import numba as K  # noqa: E402

EPS = np.float32(1e-7)
LO, HI = np.float32(1e-7), np.float32(1 - 1e-7)


def _ulps(got, ref):
    """Distance in float32 ulps (of the float64 reference rounded to float32)."""
    return np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)


# ------------------------------------------------------------------- log, exp, log1p


def test_log_is_within_one_ulp_of_float64():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.random(1 << 18, dtype=np.float32),
            np.geomspace(1e-7, 1.0, 1 << 18).astype(np.float32),
            (rng.random(1 << 16) * 1e30).astype(np.float32),
            np.float32(1.0) + np.arange(-500, 500, dtype=np.float32) * np.float32(2**-23),  # around 1, where log ~ 0
            np.array([1e-40, 1e-45, 3e-39, 1.1754942e-38], np.float32),  # subnormals, largest subnormal
            np.array([np.finfo(np.float32).max, 2.0, 0.5, 10.0], np.float32),
        ]
    )
    got = np.empty_like(x)
    K.log_array(x, got)
    ref = np.log(x.astype(np.float64))
    near_one = np.abs(ref) < 1e-30  # log(1) = 0 exactly
    assert np.all(got[near_one] == 0.0)
    assert _ulps(got[~near_one], ref[~near_one]).max() <= 1.0


def test_log_special_values_match_numpy():
    x = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan, 1.0], np.float32)
    got = np.empty_like(x)
    K.log_array(x, got)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(got, np.log(x))


def test_exp_and_log1p_are_within_about_one_ulp_of_float64():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-104, 89, 1 << 18), rng.uniform(-1, 1, 1 << 16)]).astype(np.float32)
    got = np.empty_like(x)
    K.exp_array(x, got)
    ref = np.exp(x.astype(np.float64))
    normal = (ref > np.finfo(np.float32).tiny) & (ref < np.finfo(np.float32).max)
    assert _ulps(got[normal], ref[normal]).max() <= 1.0
    assert np.abs(got[~normal & (ref < 1)] - ref[~normal & (ref < 1)]).max() <= 2.0**-149  # subnormal results
    special = np.array([np.inf, -np.inf, np.nan, 89.0, -105.0, 0.0], np.float32)
    got = np.empty_like(special)
    K.exp_array(special, got)
    np.testing.assert_array_equal(got, [np.inf, 0.0, np.nan, np.inf, 0.0, 1.0])

    e = np.concatenate([rng.random(1 << 18), np.geomspace(1e-30, 1, 1 << 14)]).astype(np.float32)
    got = np.empty_like(e)
    K.log1p_array(e, got)
    assert _ulps(got, np.log1p(e.astype(np.float64))).max() <= 1.5


# ------------------------------------------------------------------------- row_sums_bits


def _probs(shape, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(shape) ** 2
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def _row_sums(x):
    sums = np.empty(x.shape[0], np.float64)
    bits = K.row_sums_bits(x, sums)
    return sums, int(bits)


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 300), (3, 1000)], ids=str)
def test_row_sums_match_float64_and_the_bits_hold_the_range(shape):
    p = _probs(shape)
    sums, bits = _row_sums(p)
    np.testing.assert_allclose(sums, p.astype(np.float64).sum(axis=-1), rtol=1e-7)
    assert K.within(bits, 1.0) and K.within(bits, None)
    assert bits == int(p.view(np.uint32).max())  # the largest element's bits, exactly
    q = p.copy()
    q.flat[q.size // 2] = 1.5
    assert not K.within(_row_sums(q)[1], 1.0)
    assert K.within(_row_sums(q)[1], None)


@pytest.mark.parametrize("peaked", [False, True], ids=["uniform", "softmax"])
@pytest.mark.parametrize("width", [255, 256, 257, 32000])  # around the float32 block, and a vocabulary
def test_float32_block_sums_of_wide_rows_stay_within_float32_rounding(width, peaked):
    rng = np.random.default_rng(width)
    if peaked:
        z = np.exp(3 * rng.normal(size=(16, width)))
        p = (z / z.sum(-1, keepdims=True)).astype(np.float32)
    else:
        p = _probs((16, width), seed=width)
    sums, bits = _row_sums(p)
    exact = p.astype(np.float64).sum(axis=-1)
    assert K.within(bits, 1.0)
    np.testing.assert_allclose(sums, exact, rtol=3e-7)  # a few float32 ulps, as torch.sum
    p[5, width - 1] = np.nan
    assert not K.within(_row_sums(p)[1], 1.0)


@pytest.mark.parametrize("row", range(0, 19, 3))
def test_a_bad_element_in_any_row_is_found_and_the_sums_stay_right(row):
    p = _probs((19, 37), seed=row)
    p[row, 36 - row] = -0.5
    sums, bits = _row_sums(p)
    assert not K.within(bits, 1.0) and not K.within(bits, None)
    np.testing.assert_allclose(sums, p.astype(np.float64).sum(axis=-1), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("size", [1, 255, 256, 257, 3 * 256 + 17])  # tails around the block size
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("bad", [-1e-30, 1.0000001, math.nan, math.inf, -math.inf])
def test_one_bad_element_anywhere_in_a_row_fails_the_bits(size, where, bad):
    x = np.full((1, size), 0.5, np.float32)
    assert K.within(_row_sums(x)[1], 1.0)
    x[0, {"first": 0, "middle": size // 2, "last": size - 1}[where]] = bad
    assert K.within(_row_sums(x)[1], 1.0) is bool(0.0 <= np.float32(bad) <= 1.0)


@pytest.mark.parametrize("hi", [1.0, None], ids=["[0,1]", "[0,inf]"])
@pytest.mark.parametrize("bad", [-0.5, -np.float32(1e-45), np.nan, -np.nan, 2.0, np.inf])
def test_the_bit_test_for_nonnegative_bounds_is_exact(hi, bad):
    x = _probs((9, 300), seed=2)
    assert K.within(_row_sums(x)[1], hi)
    x[4, 1] = -0.0  # equal to 0, so inside: row_sums_bits adds +0, which makes it +0.0
    assert K.within(_row_sums(x)[1], hi)
    x[8, 299] = bad
    x64 = x.astype(np.float64)
    expected = bool(np.all((x64 >= 0) & (x64 <= (np.inf if hi is None else hi))))
    assert K.within(_row_sums(x)[1], hi) is expected


def test_within_reads_negative_zero_as_outside_so_the_exact_check_runs():
    # the row kernels take the bits of x itself: -0.0 has the sign bit set
    assert not K.within(int(np.float32(-0.0).view(np.uint32)), 1.0)
    assert K.within(int(np.float32(1.0).view(np.uint32)), 1.0)
    assert not K.within(int(np.float32(np.nextafter(np.float32(1), np.float32(2))).view(np.uint32)), 1.0)
    assert K.within(int(np.float32(np.inf).view(np.uint32)), None)
    assert not K.within(int(np.float32(np.nan).view(np.uint32)), None)


# ------------------------------------------------------------------------ row kernels


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _reference(kind, t, p):
    """Keras's per-row loss in float64 (the clipping bounds are the float32 ones)."""
    t, p = t.astype(np.float64), p.astype(np.float64)
    lo, hi = float(LO), float(HI)
    if kind == "binary":
        q = np.clip(p, lo, hi)
        return -(t * np.log(q) + (1 - t) * np.log(1 - q)).mean(-1)
    if kind == "binary_logits":
        return (t * _softplus(-p) + (1 - t) * _softplus(p)).mean(-1)
    if kind == "kl":
        u, q = np.clip(t, lo, 1), np.clip(p, lo, 1)
        return (u * np.log(u / q)).sum(-1)
    if kind == "poisson":
        return (p - t * np.log(p + lo)).mean(-1)
    if kind == "cat_probs":
        return -(t * np.log(np.clip(p / p.sum(-1, keepdims=True), lo, hi))).sum(-1)
    m = p.max(-1, keepdims=True)  # soft_ce: sum_c t_c (lse(x) - x_c)
    lse = m + np.log(np.exp(p - m).sum(-1, keepdims=True))
    return (t * (lse - p)).sum(-1)


def _inputs(kind, shape, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(shape, dtype=np.float32)
    t = rng.random(shape, dtype=np.float32)
    if kind == "binary":
        t = np.round(t)
        p.flat[::7] = 0.0  # clipped at both ends
        p.flat[3::7] = 1.0
    elif kind == "binary_logits":
        p = (p - 0.5) * 40  # some far enough out that exp(-|x|) is tiny
        p.flat[::11] = 0.0
    elif kind == "soft_ce":
        p = (p - 0.5) * 30
        t.flat[::3] = 0.0
        t = t / np.maximum(t.sum(-1, keepdims=True), 1e-3)
    elif kind == "cat_probs":
        p[..., 1::4] = 0.0  # clipped to epsilon (never a whole row)
        p = p / p.sum(-1, keepdims=True)
        t = np.round(t) / np.maximum(np.round(t).sum(-1, keepdims=True), 1)
    elif kind == "kl":
        t.flat[::5] = 0.0
    else:  # poisson
        t = np.floor(t * 6)
        p = p * 5
    return np.ascontiguousarray(t, np.float32), np.ascontiguousarray(p, np.float32)


def _call(kind, t, p, check=True):
    """``(per-row loss (float64), t_bits, p_bits, extra)`` from the kernel of ``kind``."""
    n = p.shape[0]
    out = np.empty(n, np.float64)
    if kind == "soft_ce":
        t_sum = np.empty(n, np.float64)
        t_bits = K.KERNELS[kind](t, p, check, out, t_sum)
        return out, int(t_bits), None, t_sum
    if kind == "cat_probs":
        sums = np.empty(n, np.float64)
        t_bits, p_bits = K.KERNELS[kind](t, p, LO, HI, check, out, sums)
        return out, int(t_bits), int(p_bits), sums
    t_bits, p_bits = K.KERNELS[kind](t, p, LO, HI, check, out)
    if kind in ("binary", "binary_logits", "poisson"):
        out = out / p.shape[1]  # the kernels sum; the caller divides for a mean
    return out, int(t_bits), int(p_bits), None


def _term_scale(kind, t, p):
    """Largest row magnitude of the terms a row adds up (the scale of float32 rounding)."""
    t64, p64 = t.astype(np.float64), p.astype(np.float64)
    if kind == "poisson":
        terms = np.abs(p64) + np.abs(t64 * np.log(p64 + float(LO)))
        return float(terms.mean(-1).max())
    return float(np.abs(_reference(kind, t, p)).max()) + 1.0


KINDS = ["binary", "binary_logits", "kl", "poisson", "cat_probs", "soft_ce"]


def test_the_kernels_table_names_every_row_kernel():
    assert set(K.KERNELS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 300), (3, 1000)], ids=str)
def test_row_kernels_match_float64_and_return_the_largest_bits(kind, shape):
    t, p = _inputs(kind, shape)
    got, t_bits, p_bits, extra = _call(kind, t, p)
    np.testing.assert_allclose(got, _reference(kind, t, p), rtol=1e-6, atol=4e-7 * _term_scale(kind, t, p))
    assert t_bits == int(t.view(np.uint32).max())
    if p_bits is not None:
        assert p_bits == int(p.view(np.uint32).max())
    if kind == "soft_ce":
        np.testing.assert_allclose(extra, t.astype(np.float64).sum(-1), rtol=1e-12)
    if kind == "cat_probs":
        np.testing.assert_allclose(extra, p.astype(np.float64).sum(-1), rtol=1e-7)
    # without the check the loss is the same and no bits are gathered
    again, t0, p0, _ = _call(kind, t, p, check=False)
    np.testing.assert_array_equal(again, got)
    assert t0 == 0 and p0 in (0, None)


@pytest.mark.parametrize("kind", KINDS)
def test_row_kernels_keep_nan(kind):
    t, p = _inputs(kind, (6, 9), seed=4)
    p[3, 4] = np.nan
    got = _call(kind, t, p)[0]
    assert np.isnan(got[3]) and not np.isnan(np.delete(got, 3)).any()


def test_load_kernels_compiles_every_kernel_ahead():
    K.load_kernels()
    for kind, kernel in K.KERNELS.items():
        assert kernel.signatures, kind  # compiled (or loaded from the cache) for float32
    assert K.row_sums_bits.signatures
