"""The one-pass numba scans of the value checks (``probloss._scan``).

They replace ``xp`` reductions on big CPU arrays, so each test lowers
``_scan.MIN_ELEMENTS`` to reach them with small arrays and compares with float64 NumPy
(sums) or with the error the generic checks give.  Skipped without numba.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import probloss as pl
from probloss import _scan
from probloss._fast import fast_paths

pytest.importorskip("numba")

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(_scan, "MIN_ELEMENTS", 1)


# Rows are added in float32 blocks, then in float64 (see ``_scan._compiled``): within a
# float32 ulp of the exact sums; float64 arrays are added in float64 throughout.
_SUM_RTOL = {np.dtype(np.float32): 1e-7, np.dtype(np.float64): 1e-12}


def _probs(shape, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    p = rng.random(shape) ** 2
    return (p / p.sum(axis=-1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 300), (3, 4, 50)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_sums_match_float64_and_range_flag(shape, dtype):
    p = _probs(shape, dtype=dtype)
    sums, ok = _scan.row_sums_in_range(p, 0.0, 1.0)
    np.testing.assert_allclose(sums, p.astype(np.float64).sum(axis=-1), rtol=_SUM_RTOL[p.dtype])
    assert ok is True
    q = p.copy()
    q.flat[q.size // 2] = 1.5
    assert _scan.row_sums_in_range(q, 0.0, 1.0)[1] is False


@pytest.mark.parametrize("size", [1, 4095, 4096, 4097, 3 * 4096 + 17])  # tails around the block size
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("bad", [-1e-30, 1.0000001, math.nan, math.inf, -math.inf])
def test_in_range_finds_one_bad_element_anywhere(size, where, bad):
    x = np.full(size, 0.5, np.float32)
    assert _scan.in_range(x, 0.0, 1.0) is True
    x[{"first": 0, "middle": size // 2, "last": size - 1}[where]] = bad
    assert _scan.in_range(x, 0.0, 1.0) is bool(0.0 <= np.float32(bad) <= 1.0)


@pytest.mark.parametrize("row", range(19))
def test_a_bad_element_in_any_row_is_found(row):
    p = _probs((19, 37), seed=row)
    sums, ok = _scan.row_sums_in_range(p, 0.0, 1.0)
    assert ok is True
    np.testing.assert_allclose(sums, p.astype(np.float64).sum(axis=-1), rtol=_SUM_RTOL[p.dtype])
    p[row, 36 - row] = -0.5
    sums, ok = _scan.row_sums_in_range(p, 0.0, 1.0)
    assert ok is False
    np.testing.assert_allclose(sums, p.astype(np.float64).sum(axis=-1), rtol=_SUM_RTOL[p.dtype])


@pytest.mark.parametrize("peaked", [False, True], ids=["uniform", "softmax"])
@pytest.mark.parametrize("width", [255, 256, 257, 32000])  # around the float32 block, and a vocabulary
def test_float32_block_sums_of_wide_rows_stay_within_float32_rounding(width, peaked):
    rng = np.random.default_rng(width)
    if peaked:
        z = np.exp(3 * rng.normal(size=(16, width)))
        p = (z / z.sum(-1, keepdims=True)).astype(np.float32)
    else:
        p = _probs((16, width), seed=width)
    sums, ok = _scan.row_sums_in_range(p, 0.0, 1.0)
    exact = p.astype(np.float64).sum(axis=-1)
    assert ok is True
    np.testing.assert_allclose(sums, exact, rtol=3e-7)  # a few float32 ulps, as torch.sum
    p[5, width - 1] = np.nan
    assert _scan.row_sums_in_range(p, 0.0, 1.0)[1] is False


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.0, None)], ids=["[0,1]", "[0,inf]"])
@pytest.mark.parametrize("bad", [-0.5, -np.float32(1e-45), np.nan, -np.nan, 2.0, np.inf])
def test_the_bit_test_for_nonnegative_bounds_is_exact(bounds, bad):
    x = _probs((9, 300), seed=2)
    lo, hi = bounds
    assert _scan.in_range(x, lo, hi) is True
    x[4, 1] = -0.0  # equal to 0, so inside
    assert _scan.in_range(x, lo, hi) is True
    x[8, 299] = bad
    expected = bool(np.all((x.astype(np.float64) >= lo) & (x.astype(np.float64) <= (np.inf if hi is None else hi))))
    assert _scan.in_range(x, lo, hi) is expected


@pytest.mark.parametrize("seed", range(4))
def test_bounds_that_float32_cannot_hold_keep_their_meaning(seed):
    # A bound a hair past the smallest (or largest) element rounds back onto it in
    # float32; the test must still see that element as outside.
    x = np.random.default_rng(seed).normal(size=(64, 40)).astype(np.float32)
    low, high = float(x.min()), float(x.max())
    hair = 1e-9 * max(abs(low), abs(high))
    assert np.float32(low + hair) == np.float32(low) and np.float32(high - hair) == np.float32(high)
    assert _scan.in_range(x, low, high) is True
    assert _scan.in_range(x, low - hair, high + hair) is True
    assert _scan.in_range(x, low + hair, None) is False
    assert _scan.in_range(x, None, high - hair) is False
    assert _scan.in_range(x, low + hair, high) is False


def test_one_sided_and_nan():
    x = np.linspace(0, 1e6, 10_000, dtype=np.float64)
    assert _scan.in_range(x, 0.0, None) is True
    assert _scan.in_range(x, None, 10.0) is False
    x[77] = np.nan
    assert _scan.in_range(x, None, None) is False  # NaN fails every comparison


def test_not_applicable_returns_none(monkeypatch):
    assert _scan.in_range(np.arange(10), 0, 20) is None  # integers
    assert _scan.in_range(np.ones((4, 4), np.float32).T[:, :3], 0, 2) is None  # not contiguous
    assert _scan.in_range(np.ones(8, np.float16), 0, 2) is None
    monkeypatch.setattr(_scan, "MIN_ELEMENTS", 1 << 20)
    assert _scan.in_range(np.ones(8, np.float32), 0, 2) is None  # small: plain reductions


def test_torch_tensor_view_and_gradient():
    p = _probs((20, 30), seed=3)
    tp = torch.tensor(p, requires_grad=True)
    y = np.random.default_rng(3).integers(0, 30, 20)
    loss = pl.sparse_categorical_crossentropy(torch.tensor(y), tp)
    (g,) = torch.autograd.grad(loss.sum(), tp)
    # float64 reference: d/dp_j of -log(p_y / s) = 1/s - [j == y] / p_y
    p64 = p.astype(np.float64)
    ref = np.repeat(1 / p64.sum(-1, keepdims=True), 30, axis=1)
    ref[np.arange(20), y] -= 1 / p64[np.arange(20), y]
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-4)
    np.testing.assert_allclose(loss.detach().numpy(), -np.log(p64[np.arange(20), y] / p64.sum(-1)), rtol=1e-5)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("loss", ["sparse", "categorical"])
def test_losses_from_probabilities_agree_with_and_without_the_scan(lib, loss):
    p = _probs((40, 70), seed=5)
    y = np.random.default_rng(5).integers(0, 70, 40)
    t = np.eye(70, dtype=np.float32)[y]
    conv = np.asarray if lib == "numpy" else torch.from_numpy
    fn = pl.sparse_categorical_crossentropy if loss == "sparse" else pl.categorical_crossentropy
    labels = conv(y) if loss == "sparse" else conv(t)
    fused = np.asarray(fn(labels, conv(p)))
    with fast_paths(False):
        generic = np.asarray(fn(labels, conv(p)))
    ref = -np.log(p.astype(np.float64)[np.arange(40), y] / p.astype(np.float64).sum(-1))
    np.testing.assert_allclose(fused, ref, rtol=2e-6)
    np.testing.assert_allclose(generic, ref, rtol=2e-6)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("value", "error", "words"),
    [(-0.25, pl.PredictionValueError, "from_logits=True"), (3.0, pl.PredictionValueError, "[0, 1]"), (math.nan, pl.PredictionValueError, "nan")],
)
def test_errors_name_the_element_through_the_scan(lib, value, error, words):
    p = _probs((30, 40), seed=7)
    p[17, 23] = value
    conv = np.asarray if lib == "numpy" else torch.from_numpy
    with pytest.raises(error, match=r"\(17, 23\)") as info:
        pl.sparse_categorical_crossentropy(conv(np.zeros(30, np.int64)), conv(p))
    assert words in str(info.value)


def test_unnormalised_rows_still_warn():
    p = _probs((30, 40), seed=8) * 0.5
    with pytest.warns(pl.ProblossWarning, match="sum to 1"):
        pl.sparse_categorical_crossentropy(np.zeros(30, np.int64), p)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_range_checks_of_other_losses_go_through_the_scan(lib):
    conv = np.asarray if lib == "numpy" else torch.from_numpy
    rate = np.full((50, 60), 2.0, np.float32)
    counts = np.ones((50, 60), np.float32)
    counts[49, 59] = -1.0
    with pytest.raises(pl.LabelValueError, match=r"\(49, 59\)"):
        pl.poisson(conv(counts), conv(rate))
    target = np.zeros((50, 60), np.float32)
    target[3, 4] = 2.0
    with pytest.raises(pl.LabelValueError, match=r"\[0, 1\]"):
        pl.binary_crossentropy(conv(target), conv(rate), from_logits=True)
