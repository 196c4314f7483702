"""The NumPy implementations (``probloss._backends.numpy``) agree with the generic formula
(``generic_only()``) and with float64 NumPy formulas written here from Keras's
definitions.

Two routes: the chunked softmax cross-entropy from logits (any size, any class axis),
and the compiled numba kernels, which serve C-contiguous float32 arrays of at least
``NUMBA_MIN_ELEMENTS`` elements with the class axis last: the tests of that route use
arrays that big and check, with a spy on the kernels, that the kernel did run.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import warnings

import numpy as np
import pytest

import probloss as pl
from probloss._backends import numpy as npb
from probloss._dispatch import generic_only
from tests.reference import data as _data
from tests.reference import soft64 as _soft64
from tests.reference import sparse64 as _sparse64

EPS = 1e-7
UPPER = float(np.float32(1 - 1e-7))
BIG = npb.NUMBA_MIN_ELEMENTS
assert BIG == 1 << 16


# ------------------------------------------------------- softmax cross-entropy, chunked

# (6, 5) and (5, 40): few classes (the column loop); (5, 60): row reductions by chunks;
# then class axes that are not last, and one 1-D input
CASES = [((6, 5), -1), ((5, 40), -1), ((5, 60), -1), ((3, 5, 4), 1), ((2, 3, 4, 5), 2), ((4, 3, 2), 0), ((7,), 0)]


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_softmax_ce_equals_generic_equals_formula(shape, axis, dtype, monkeypatch):
    monkeypatch.setattr(npb, "_CHUNK_ELEMS", 7)  # several uneven chunks
    x, y, t = _data(shape, axis)
    x, t = x.astype(dtype), t.astype(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    out = {}
    for native in (True, False):
        with contextlib.nullcontext() if native else generic_only():
            out[native] = (
                pl.sparse_categorical_crossentropy(y, x, from_logits=True, axis=axis),
                pl.categorical_crossentropy(t, x, from_logits=True, axis=axis),
                pl.categorical_crossentropy(t, x, from_logits=True, axis=axis, label_smoothing=0.2),
            )
    k = shape[axis]
    for native in (True, False):
        sparse, soft, smoothed = out[native]
        assert sparse.dtype == dtype and soft.dtype == dtype and smoothed.dtype == dtype
        np.testing.assert_allclose(sparse, _sparse64(x, y, axis), **tol)
        np.testing.assert_allclose(soft, _soft64(x, t, axis), **tol)
        np.testing.assert_allclose(smoothed, _soft64(x, 0.8 * t.astype(np.float64) + 0.2 / k, axis), **tol)


@pytest.mark.parametrize("ignore_class", [1, -1])
def test_sparse_from_logits_with_ignore_class(ignore_class):
    x, y, _ = _data((3, 5, 4), 1, seed=12)
    y.reshape(-1)[::3] = ignore_class
    got = pl.sparse_categorical_crossentropy(y, x, from_logits=True, axis=1, ignore_class=ignore_class)
    with generic_only():
        generic = pl.sparse_categorical_crossentropy(y, x, from_logits=True, axis=1, ignore_class=ignore_class)
    keep = y != ignore_class
    ref = np.where(keep, _sparse64(x, np.where(keep, y, 0), 1), 0.0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(generic, ref, rtol=1e-12, atol=1e-12)
    # the loss class averages over the kept positions only, as Keras does
    mean = pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class, axis=1)(y, x)
    np.testing.assert_allclose(mean, ref[keep].mean(), rtol=1e-12)


def test_chunked_softmax_ce_keeps_precision_for_large_logits():
    x, y, t = _data((64, 300), -1, seed=1)
    x = (x + 1000.0).astype(np.float32)
    np.testing.assert_allclose(
        pl.sparse_categorical_crossentropy(y, x, from_logits=True), _sparse64(x, y, -1), rtol=2e-5, atol=2e-4
    )
    np.testing.assert_allclose(pl.categorical_crossentropy(t, x, from_logits=True), _soft64(x, t, -1), rtol=2e-5, atol=2e-4)


@pytest.mark.parametrize("label", [-1, 5, 10**6])
@pytest.mark.parametrize("shape", [(6, 5), (300, 400)], ids=str)
def test_sparse_labels_out_of_range_raise_and_name_the_index(label, shape):
    x, y, _ = _data(shape, -1, seed=2)
    k = shape[-1]
    y[3] = label if label != 5 else k
    for from_logits in (True, False):
        p = x if from_logits else np.abs(x).astype(np.float32)
        with pytest.raises(pl.LabelValueError, match=re.escape(f"class index {y[3]} at index (3,)")):
            pl.sparse_categorical_crossentropy(y, p, from_logits=from_logits)


# -------------------------------------------------- sparse from logits, small 2-D arrays
# Below one chunk, a 2-D array with the class axis last takes the formula on the whole
# array; rows whose max is not finite (NaN, +inf, only -inf) go to the chunked code.


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8, np.bool_, np.float32])
@pytest.mark.parametrize("shape", [(9, 2), (40, 47), (20, 48), (300, 200)], ids=str)  # transposed below 48 classes
def test_small_sparse_from_logits_matches_float64_for_every_label_dtype(shape, label_dtype):
    x, y, _ = _data(shape, -1, seed=4)
    if label_dtype is np.bool_:
        y = y % 2
    x, y = x.astype(np.float32), y.astype(label_dtype)
    got = pl.sparse_categorical_crossentropy(y, x, from_logits=True)
    np.testing.assert_allclose(got, _sparse64(x, y.astype(np.int64), -1), rtol=2e-6, atol=1e-6)


def test_small_sparse_rows_with_minus_inf_follow_the_ruled_out_rules():
    x = np.array([[1.0, -np.inf, 0.5], [-np.inf, -np.inf, -np.inf], [0.0, 2.0, -np.inf]], np.float32)
    y = np.array([0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing from NumPy's floating-point flags
        got = pl.sparse_categorical_crossentropy(y, x, from_logits=True, ruled_out_target="inf")
    first = math.log(math.exp(1.0) + math.exp(0.5)) - 1.0  # the -inf class leaves the softmax
    np.testing.assert_allclose(got, [first, math.inf, math.inf], rtol=1e-6)
    with pytest.raises(pl.PredictionValueError, match="-inf"):
        pl.sparse_categorical_crossentropy(y, x, from_logits=True)


@pytest.mark.parametrize(("value", "words"), [(math.nan, "nan"), (math.inf, "inf")])
def test_small_sparse_nan_or_inf_logits_raise_naming_the_element(value, words):
    x, y, _ = _data((8, 6), -1, seed=5)
    x = x.astype(np.float32)
    x[5, 2] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(pl.PredictionValueError, match=re.escape("(5, 2)")) as info:
            pl.sparse_categorical_crossentropy(y, x, from_logits=True)
    assert words in str(info.value)


def test_small_sparse_checks_labels_even_with_checks_off():
    """NumPy would read a negative index from the row's end: never a silent number."""
    x, y, _ = _data((6, 5), -1, seed=6)
    y[2] = -1
    with pl.set_value_checks(False), pytest.raises(pl.LabelValueError, match=re.escape("index (2,)")):
        pl.sparse_categorical_crossentropy(y, x, from_logits=True)


# ----------------------------------------------------------------- the numba kernels


@pytest.fixture
def kernel_calls(monkeypatch):
    """The names of the numba kernels called, in order (they still run)."""
    pytest.importorskip("numba")
    from probloss._backends import numba as K

    assert npb._kernels() is K  # loaded (load_kernels runs them once) before the spies go in
    calls = []

    def spy(name, fn):
        @functools.wraps(fn)
        def wrapped(*args):
            calls.append(name)
            return fn(*args)

        return wrapped

    for kind, fn in list(K.KERNELS.items()):
        monkeypatch.setitem(K.KERNELS, kind, spy(kind, fn))
    monkeypatch.setattr(K, "cat_probs_rows", spy("cat_probs", K.cat_probs_rows))
    monkeypatch.setattr(K, "soft_ce_rows", spy("soft_ce", K.soft_ce_rows))
    monkeypatch.setattr(K, "row_sums_bits", spy("row_sums", K.row_sums_bits))
    return calls


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _reference_terms(kind, t, p):
    # Keras clips to [eps, 1 - eps] computed in the input's dtype
    upper = 1 - EPS if p.dtype == np.float64 else UPPER
    t, p = t.astype(np.float64), p.astype(np.float64)
    if kind == "cat_probs":
        return -t * np.log(np.clip(p / p.sum(-1, keepdims=True), EPS, upper))
    if kind == "soft_ce":
        m = p.max(-1, keepdims=True)
        lse = m + np.log(np.exp(p - m).sum(-1, keepdims=True))
        return t * (lse - p)
    if kind == "bce_logits":
        return t * _softplus(-p) + (1 - t) * _softplus(p)
    if kind == "bce":
        q = np.clip(p, EPS, upper)
        return -(t * np.log(q) + (1 - t) * np.log(1 - q))
    if kind == "kl":
        u, q = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return u * np.log(u / q)
    return p - t * np.log(p + EPS)  # poisson


def _reference(kind, t, p):
    terms = _reference_terms(kind, t, p)
    return terms.sum(-1) if kind in ("kl", "soft_ce", "cat_probs") else terms.mean(-1)


def _term_scale(kind, t, p):
    """Largest mean magnitude of the terms a row adds up (the scale of float32 rounding)."""
    t64, p64 = t.astype(np.float64), p.astype(np.float64)
    terms = np.abs(p64) + np.abs(t64 * np.log(p64 + EPS)) if kind == "poisson" else np.abs(_reference_terms(kind, t, p))
    return float(terms.sum(-1).max()) if kind in ("kl", "soft_ce", "cat_probs") else float(terms.mean(-1).max())


LOSSES = {
    "bce": pl.binary_crossentropy,
    "bce_logits": functools.partial(pl.binary_crossentropy, from_logits=True),
    "kl": pl.kl_divergence,
    "poisson": pl.poisson,
    "soft_ce": functools.partial(pl.categorical_crossentropy, from_logits=True),
    "cat_probs": pl.categorical_crossentropy,
}
KERNEL_OF = {
    "bce": "binary",
    "bce_logits": "binary_logits",
    "kl": "kl",
    "poisson": "poisson",
    "soft_ce": "soft_ce",
    "cat_probs": "cat_probs",
}


def _inputs(kind, shape, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(shape, dtype=np.float32)
    t = rng.random(shape, dtype=np.float32)
    if kind == "bce":
        t = np.round(t)  # 0/1 labels ...
        p.flat[::7] = 0.0  # ... and clipped predictions at both ends
        p.flat[3::7] = 1.0
    if kind == "bce_logits":
        p = (p - 0.5) * 40  # logits, some far enough out that exp(-|x|) is tiny
        p.flat[::11] = 0.0
    if kind == "soft_ce":
        p = (p - 0.5) * 30  # logits
        t.flat[::3] = 0.0
        t = t / np.maximum(t.sum(-1, keepdims=True), 1e-3)  # soft labels (a row may be all zero)
    if kind == "cat_probs":
        p[..., 1::4] = 0.0  # zeros that Keras clips to epsilon (never a whole row)
        p = p / p.sum(-1, keepdims=True)
        t = np.round(t) / np.maximum(np.round(t).sum(-1, keepdims=True), 1)
    if kind == "kl":
        t.flat[::5] = 0.0  # zeros that Keras clips to epsilon
    if kind == "poisson":
        t = np.floor(t * 6)
        p = p * 5
    return t.astype(np.float32), p.astype(np.float32)


# all at least NUMBA_MIN_ELEMENTS: exactly, odd sizes, many short rows, few long ones, 3-D
BIG_SHAPES = [(256, 256), (331, 199), (16384, 4), (2, 40000), (4, 64, 257)]


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("shape", BIG_SHAPES, ids=str)
def test_kernels_match_float64_and_the_generic_formula(kind, shape, kernel_calls):
    t, p = _inputs(kind, shape)
    assert p.size >= BIG
    got = LOSSES[kind](t, p)
    assert kernel_calls == [KERNEL_OF[kind]]
    assert type(got) is np.ndarray and got.dtype == np.float32 and got.shape == shape[:-1]
    # float32 elementwise terms can cancel (Poisson's p - t log p): allow a few float32
    # ulps of the terms' size, as any float32 implementation of Keras's formula has.
    np.testing.assert_allclose(got, _reference(kind, t, p), rtol=1e-6, atol=4e-7 * _term_scale(kind, t, p))
    with generic_only():
        generic = LOSSES[kind](t, p)
    assert kernel_calls == [KERNEL_OF[kind]]  # not called again
    np.testing.assert_allclose(got, generic, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_below_the_threshold_the_generic_formula_runs(kind, kernel_calls):
    t, p = _inputs(kind, (255, 256))  # one row short of NUMBA_MIN_ELEMENTS
    got = LOSSES[kind](t, p)
    assert kernel_calls == []
    np.testing.assert_allclose(got, _reference(kind, t, p), rtol=1e-5, atol=1e-6 * _term_scale(kind, t, p))


VARIANTS = ["float64", "transposed", "class axis 0", "float32 with float64 labels"]


@pytest.mark.parametrize(
    ("kind", "variant"),
    [(k, v) for k in ("kl", "bce", "cat_probs", "soft_ce") for v in VARIANTS if (k, v) != ("kl", "class axis 0")],
    ids=str,
)
def test_other_big_inputs_take_the_generic_formula(kind, variant, kernel_calls):
    t, p = _inputs(kind, (300, 300))
    axis = -1
    if variant == "float64":
        t, p = t.astype(np.float64), p.astype(np.float64)
    elif variant == "transposed":  # not C-contiguous
        t, p = np.asfortranarray(t), np.asfortranarray(p)
    elif variant == "class axis 0":  # the same rows, laid out along axis 0
        t, p, axis = np.ascontiguousarray(t.T), np.ascontiguousarray(p.T), 0
    else:  # y_true is cast to float32 first: the kernel runs after all
        t = t.astype(np.float64)
    fn = LOSSES[kind] if axis == -1 else functools.partial(LOSSES[kind], axis=axis)
    got = fn(t, p)
    if variant == "float32 with float64 labels":
        assert kernel_calls == [KERNEL_OF[kind]]
    else:
        assert kernel_calls == []
    with generic_only():
        generic = fn(t, p)
    ref = _reference(kind, np.moveaxis(t, axis, -1), np.moveaxis(p, axis, -1))
    tol = {"rtol": 1e-10, "atol": 1e-12} if p.dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(got, ref, **tol)
    np.testing.assert_allclose(generic, ref, **tol)


BAD = {
    # loss: (input, bad value, error, words in the message)
    "bce": [
        ("t", 2.0, pl.LabelValueError, "[0, 1]"),
        ("p", 3.5, pl.PredictionValueError, "from_logits=True"),
        ("p", -0.25, pl.PredictionValueError, "from_logits=True"),
        ("t", math.nan, pl.LabelValueError, "nan"),
    ],
    "bce_logits": [("t", -0.5, pl.LabelValueError, "[0, 1]"), ("t", math.inf, pl.LabelValueError, "inf")],
    "soft_ce": [
        ("t", -0.1, pl.LabelValueError, "cannot be negative"),
        ("t", math.nan, pl.LabelValueError, "nan"),
        ("t", -math.inf, pl.LabelValueError, "inf"),
    ],
    "cat_probs": [
        ("t", -0.1, pl.LabelValueError, "cannot be negative"),
        ("p", 3.0, pl.PredictionValueError, "from_logits=True"),
        ("p", math.nan, pl.PredictionValueError, "nan"),
    ],
    "kl": [
        ("t", 1.5, pl.LabelValueError, "[0, 1]"),
        ("p", -1e-30, pl.PredictionValueError, "[0, 1]"),
        ("p", math.inf, pl.PredictionValueError, "inf"),
    ],
    "poisson": [
        ("t", -1.0, pl.LabelValueError, "counts"),
        ("p", -0.5, pl.PredictionValueError, "rates"),
        ("p", math.nan, pl.PredictionValueError, "nan"),
    ],
}


@pytest.mark.parametrize("where", [(0, 0), (117, 23), (255, 255)], ids=str)
@pytest.mark.parametrize(("kind", "case"), [(k, c) for k, cases in BAD.items() for c in cases], ids=str)
def test_a_bad_element_anywhere_raises_and_is_named(kind, case, where, kernel_calls):
    which, value, error, words = case
    t, p = _inputs(kind, (256, 256), seed=2)
    (t if which == "t" else p)[where] = value
    with pytest.raises(error, match=re.escape(str(where))) as info:
        LOSSES[kind](t, p)
    assert words in str(info.value)
    assert kernel_calls == [KERNEL_OF[kind]]  # found from the kernel's bits, named by the exact check


@pytest.mark.parametrize("kind", list(LOSSES))
def test_negative_zero_passes_the_bits_checks(kind, kernel_calls):
    t, p = _inputs(kind, (256, 256), seed=3)
    t[4, 5] = -0.0  # fails the bit test, then passes the exact one
    p[6, 7] = 0.0
    if kind == "cat_probs":
        p[6] /= p[6].sum()  # keep the row normalised (no warning)
    p[6, 7] = -0.0
    got = LOSSES[kind](t, p)
    assert kernel_calls == [KERNEL_OF[kind]]
    np.testing.assert_allclose(got, _reference(kind, t, p), rtol=1e-6, atol=4e-7 * _term_scale(kind, t, p))


def test_negative_zero_passes_the_row_sums_check(kernel_calls):
    p = _inputs("cat_probs", (256, 256), seed=3)[1]
    p[6, 7] = 0.0
    p[6] /= p[6].sum()  # keep the row normalised (no warning)
    p[6, 7] = -0.0
    y = np.arange(256) % 256
    got = pl.sparse_categorical_crossentropy(y, p)
    assert kernel_calls == ["row_sums"]
    p64 = p.astype(np.float64)
    np.testing.assert_allclose(got, -np.log(np.clip(p64[np.arange(256), y] / p64.sum(-1), EPS, UPPER)), rtol=2e-6)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_with_checks_off_bad_values_give_nan_as_the_generic_formula(kind, kernel_calls):
    t, p = _inputs(kind, (256, 256), seed=4)
    t[1, 2] = np.nan
    p[3, 4] = np.nan
    with pl.set_value_checks(False):
        got = LOSSES[kind](t, p)
        with generic_only():
            generic = LOSSES[kind](t, p)
    assert kernel_calls == [KERNEL_OF[kind]]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(generic))
    assert np.isnan(got[1]) and np.isnan(got[3])
    np.testing.assert_allclose(got[~np.isnan(got)], generic[~np.isnan(generic)], rtol=1e-5, atol=1e-6)


def test_label_smoothing_checks_the_labels_before_smoothing(kernel_calls):
    t, p = _inputs("bce", (256, 256), seed=5)
    t[2, 3] = -0.05  # inside [0, 1] once smoothed by 0.2, but a bad label
    with pytest.raises(pl.LabelValueError, match=r"\(2, 3\)"):
        pl.binary_crossentropy(t, p, label_smoothing=0.2)
    t[2, 3] = 1.0
    got = pl.binary_crossentropy(t, p, label_smoothing=0.2)
    assert kernel_calls == ["binary"]
    np.testing.assert_allclose(got, _reference("bce", t * 0.8 + 0.1, p), rtol=1e-6)
    got = pl.binary_crossentropy(t, (p - 0.5) * 20, from_logits=True, label_smoothing=0.2)
    assert kernel_calls == ["binary", "binary_logits"]
    np.testing.assert_allclose(got, _reference("bce_logits", t * 0.8 + 0.1, (p - 0.5) * 20), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_label_smoothing_on_the_kernels(from_logits, kernel_calls):
    kind = "soft_ce" if from_logits else "cat_probs"
    t, p = _inputs(kind, (256, 256), seed=11)
    got = pl.categorical_crossentropy(t, p, from_logits=from_logits, label_smoothing=0.1)
    assert kernel_calls == [kind]
    ref = _reference(kind, 0.9 * t.astype(np.float64) + 0.1 / 256, p)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=4e-7 * _term_scale(kind, t, p))
    t[9, 9] = -0.01  # smoothing would lift it above 0: still refused
    with pytest.raises(pl.LabelValueError, match=r"\(9, 9\)"):
        pl.categorical_crossentropy(t, p, from_logits=from_logits, label_smoothing=0.1)


@pytest.mark.parametrize("loss", ["sparse", "categorical"])
def test_unnormalised_probability_rows_warn_and_are_renormalised(loss, kernel_calls):
    t, p = _inputs("cat_probs", (256, 256), seed=6)
    p[5] *= 0.5
    y = np.argmax(t, axis=-1)
    with pytest.warns(pl.ProblossWarning, match=r"index \(5,\) sums to 0\.5"):
        if loss == "sparse":
            got = pl.sparse_categorical_crossentropy(y, p)
        else:
            got = pl.categorical_crossentropy(t, p)
    assert kernel_calls == (["row_sums"] if loss == "sparse" else ["cat_probs"])
    p64 = p.astype(np.float64)
    if loss == "sparse":
        ref = -np.log(np.clip(p64[np.arange(256), y] / p64.sum(-1), EPS, UPPER))
    else:
        ref = _reference("cat_probs", t, p)
    np.testing.assert_allclose(got, ref, rtol=2e-6)


@pytest.mark.parametrize("loss", ["sparse", "categorical"])
def test_losses_from_probabilities_agree_with_and_without_the_kernels(loss, kernel_calls):
    rng = np.random.default_rng(5)
    p = rng.random((200, 400)) ** 2
    p = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    y = rng.integers(0, 400, 200)
    t = np.eye(400, dtype=np.float32)[y]
    fn = pl.sparse_categorical_crossentropy if loss == "sparse" else pl.categorical_crossentropy
    labels = y if loss == "sparse" else t
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normalised rows: no warning
        native = fn(labels, p)
    assert kernel_calls == (["row_sums"] if loss == "sparse" else ["cat_probs"])
    with generic_only():
        generic = fn(labels, p)
    p64 = p.astype(np.float64)
    ref = -np.log(np.clip(p64[np.arange(200), y] / p64.sum(-1), EPS, UPPER))
    np.testing.assert_allclose(native, ref, rtol=2e-6)
    np.testing.assert_allclose(generic, ref, rtol=2e-6)


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (-0.25, pl.PredictionValueError, "from_logits=True"),
        (3.0, pl.PredictionValueError, "[0, 1]"),
        (math.nan, pl.PredictionValueError, "nan"),
    ],
)
def test_sparse_from_probabilities_errors_name_the_element(value, error, words, kernel_calls):
    rng = np.random.default_rng(7)
    p = rng.random((256, 300)) ** 2
    p = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    p[170, 23] = value
    with pytest.raises(error, match=r"\(170, 23\)") as info:
        pl.sparse_categorical_crossentropy(np.zeros(256, np.int64), p)
    assert words in str(info.value)
    assert kernel_calls == ["row_sums"]


def test_range_checks_of_other_losses_go_through_the_kernels(kernel_calls):
    rate = np.full((250, 300), 2.0, np.float32)
    counts = np.ones((250, 300), np.float32)
    counts[249, 299] = -1.0
    with pytest.raises(pl.LabelValueError, match=r"\(249, 299\)"):
        pl.poisson(counts, rate)
    target = np.zeros((250, 300), np.float32)
    target[3, 4] = 2.0
    with pytest.raises(pl.LabelValueError, match=r"\[0, 1\]"):
        pl.binary_crossentropy(target, rate, from_logits=True)
    assert kernel_calls == ["poisson", "binary_logits"]


def test_tf_nn_softmax_cross_entropy_takes_the_kernel_and_checks_labels(kernel_calls):
    t, x = _inputs("soft_ce", (160, 500), seed=10)
    got = pl.softmax_cross_entropy_with_logits(labels=t, logits=x)
    assert kernel_calls == ["soft_ce"]
    np.testing.assert_allclose(got, _reference("soft_ce", t, x), rtol=1e-6, atol=1e-6)
    t[3, 7] = -0.25
    with pytest.raises(pl.LabelValueError, match=r"holds -0.25 at index \(3, 7\)"):
        pl.softmax_cross_entropy_with_logits(labels=t, logits=x)


@pytest.mark.parametrize("shape", [(4, 5), (160, 500)], ids=str)
def test_tf_nn_softmax_cross_entropy_names_the_labels_argument(shape):
    t, x = _inputs("soft_ce", shape, seed=10)
    t[3, 2] = -0.25
    with pytest.raises(pl.LabelValueError, match=r"`labels` holds -0.25 at index \(3, 2\)"):
        pl.softmax_cross_entropy_with_logits(labels=t, logits=x)


def test_a_numba_that_fails_to_load_warns_once_and_the_generic_code_runs(monkeypatch):
    pytest.importorskip("numba")
    from probloss._backends import numba as K

    def broken():
        raise ImportError("numba built for another NumPy")

    monkeypatch.setattr(npb, "_numba", None)  # not yet loaded
    monkeypatch.setattr(K, "load_kernels", broken)
    t, p = _inputs("kl", (256, 256), seed=9)
    with pytest.warns(pl.ProblossWarning, match="could not be loaded"):
        got = pl.kl_divergence(t, p)
    np.testing.assert_allclose(got, _reference("kl", t, p), rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not on every call
        again = pl.kl_divergence(t, p)
    np.testing.assert_array_equal(again, got)
