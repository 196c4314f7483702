"""The fused numba kernels of Keras's elementwise losses (``probloss._fused``).

They serve big float32 CPU arrays only, so each test lowers ``_scan.MIN_ELEMENTS`` to
reach them with small ones.  Values are compared with float64 NumPy formulas written from
Keras's definitions; the in-kernel range tests with the errors of the exact checks.
Skipped without numba.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest

import probloss as pl
from probloss import _fused, _scan
from probloss._fast import fast_paths

pytest.importorskip("numba")

torch = pytest.importorskip("torch")

EPS = np.float32(1e-7)


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(_scan, "MIN_ELEMENTS", 1)


def _ulps(got, ref):
    """Distance in float32 ulps (of the float64 reference rounded to float32)."""
    return np.abs(got.astype(np.float64) - ref) / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)


def test_log_is_within_one_ulp_of_float64():
    from probloss._fused_kernels import log_array

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
    log_array(x, got)
    ref = np.log(x.astype(np.float64))
    near_one = np.abs(ref) < 1e-30  # log(1) = 0 exactly
    assert np.all(got[near_one] == 0.0)
    assert _ulps(got[~near_one], ref[~near_one]).max() <= 1.0


def test_log_special_values_match_numpy():
    from probloss._fused_kernels import log_array

    x = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan, 1.0], np.float32)
    got = np.empty_like(x)
    log_array(x, got)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(got, np.log(x))


def test_exp_and_log1p_are_within_about_one_ulp_of_float64():
    from probloss._fused_kernels import exp_array, log1p_array

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-104, 89, 1 << 18), rng.uniform(-1, 1, 1 << 16)]).astype(np.float32)
    got = np.empty_like(x)
    exp_array(x, got)
    ref = np.exp(x.astype(np.float64))
    normal = (ref > np.finfo(np.float32).tiny) & (ref < np.finfo(np.float32).max)
    assert _ulps(got[normal], ref[normal]).max() <= 1.0
    assert np.abs(got[~normal & (ref < 1)] - ref[~normal & (ref < 1)]).max() <= 2.0**-149  # subnormal results
    special = np.array([np.inf, -np.inf, np.nan, 89.0, -105.0, 0.0], np.float32)
    got = np.empty_like(special)
    exp_array(special, got)
    np.testing.assert_array_equal(got, [np.inf, 0.0, np.nan, np.inf, 0.0, 1.0])

    e = np.concatenate([rng.random(1 << 18), np.geomspace(1e-30, 1, 1 << 14)]).astype(np.float32)
    got = np.empty_like(e)
    log1p_array(e, got)
    assert _ulps(got, np.log1p(e.astype(np.float64))).max() <= 1.5


def _reference(kind, t, p):
    t, p = t.astype(np.float64), p.astype(np.float64)
    if kind == "bce":
        q = np.clip(p, EPS, np.float32(1 - 1e-7))
        return -(t * np.log(q) + (1 - t) * np.log(1 - q)).mean(-1)
    if kind == "bce_logits":
        return (t * _softplus(-p) + (1 - t) * _softplus(p)).mean(-1)
    if kind == "kl":
        u, q = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return (u * np.log(u / q)).sum(-1)
    if kind in ("soft_ce", "cat_probs"):
        return _reference_terms(kind, t, p).sum(-1)
    return (p - t * np.log(p + EPS)).mean(-1)


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _term_scale(kind, t, p):
    """Largest mean magnitude of the terms a row adds up (the scale of float32 rounding)."""
    t, p = t.astype(np.float64), p.astype(np.float64)
    terms = np.abs(p) + np.abs(t * np.log(p + EPS)) if kind == "poisson" else np.abs(_reference_terms(kind, t, p))
    return float(terms.sum(-1).max()) if kind in ("kl", "soft_ce", "cat_probs") else float(terms.mean(-1).max())


def _reference_terms(kind, t, p):
    if kind == "cat_probs":
        return -t * np.log(np.clip(p / p.sum(-1, keepdims=True), EPS, np.float32(1 - 1e-7)))
    if kind == "soft_ce":
        m = p.max(-1, keepdims=True)
        lse = m + np.log(np.exp(p - m).sum(-1, keepdims=True))
        return t * (lse - p)
    if kind == "bce_logits":
        return t * _softplus(-p) + (1 - t) * _softplus(p)
    if kind == "bce":
        q = np.clip(p, EPS, np.float32(1 - 1e-7))
        return -(t * np.log(q) + (1 - t) * np.log(1 - q))
    u, q = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
    return u * np.log(u / q)


LOSSES = {
    "bce": pl.binary_crossentropy,
    "bce_logits": functools.partial(pl.binary_crossentropy, from_logits=True),
    "kl": pl.kl_divergence,
    "poisson": pl.poisson,
    "soft_ce": functools.partial(pl.categorical_crossentropy, from_logits=True),
    "cat_probs": pl.categorical_crossentropy,
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
    return t, p


@pytest.mark.parametrize("kind", list(LOSSES))
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 300), (3, 4, 50)], ids=str)
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_losses_match_float64_and_the_generic_path(kind, shape, lib):
    t, p = _inputs(kind, shape)
    assert _fused.applies(kind, t, p)
    conv = np.asarray if lib == "numpy" else torch.from_numpy
    got = LOSSES[kind](conv(t), conv(p))
    assert type(got) is type(conv(t)) and got.dtype == conv(t).dtype and tuple(got.shape) == shape[:-1]
    ref = _reference(kind, t, p)
    # float32 elementwise terms can cancel (Poisson's p - t log p): allow a few float32
    # ulps of the terms' size, as any float32 implementation of Keras's formula has.
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-6, atol=4e-7 * _term_scale(kind, t, p))
    with fast_paths(False):
        generic = np.asarray(LOSSES[kind](conv(t), conv(p)))
    np.testing.assert_allclose(np.asarray(got), generic, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_torch_gradient_matches_float64(kind):
    t, p = _inputs(kind, (16, 40), seed=1)
    if kind in ("bce", "kl"):
        p = np.clip(p, 0.01, 0.99)  # away from the clipping bounds
    elif kind == "cat_probs":
        p = (p + 0.1) / (p + 0.1).sum(-1, keepdims=True)
    elif kind == "poisson":
        p = p + 0.1
    tp = torch.tensor(p, requires_grad=True)
    loss = LOSSES[kind](torch.from_numpy(t), tp)
    (g,) = torch.autograd.grad(loss.sum(), tp)
    t64, p64 = t.astype(np.float64), p.astype(np.float64)
    k = p.shape[-1]
    if kind == "bce_logits":
        ref = (1 / (1 + np.exp(-p64)) - t64) / k
    elif kind == "bce":
        ref = (p64 - t64) / (p64 * (1 - p64)) / k
    elif kind == "kl":
        ref = -np.clip(t64, EPS, 1) / p64
    elif kind == "cat_probs":
        ref = -t64 / p64 + t64.sum(-1, keepdims=True) / p64.sum(-1, keepdims=True)
    elif kind == "soft_ce":
        e = np.exp(p64 - p64.max(-1, keepdims=True))
        ref = t64.sum(-1, keepdims=True) * e / e.sum(-1, keepdims=True) - t64
    else:
        ref = (1 - t64 / (p64 + EPS)) / k
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-4, atol=1e-7)


BAD = {
    # loss: (input, bad value, error, words in the message)
    "bce": [("t", 2.0, pl.LabelValueError, "[0, 1]"), ("p", 3.5, pl.PredictionValueError, "from_logits=True"),
            ("p", -0.25, pl.PredictionValueError, "from_logits=True"), ("t", math.nan, pl.LabelValueError, "nan")],
    "bce_logits": [("t", -0.5, pl.LabelValueError, "[0, 1]"), ("t", math.inf, pl.LabelValueError, "inf")],
    "soft_ce": [("t", -0.1, pl.LabelValueError, "cannot be negative"), ("t", math.nan, pl.LabelValueError, "nan"),
                ("t", -math.inf, pl.LabelValueError, "inf")],
    "cat_probs": [("t", -0.1, pl.LabelValueError, "cannot be negative"), ("p", 3.0, pl.PredictionValueError, "from_logits=True"),
                  ("p", math.nan, pl.PredictionValueError, "nan")],
    "kl": [("t", 1.5, pl.LabelValueError, "[0, 1]"), ("p", -1e-30, pl.PredictionValueError, "[0, 1]"),
           ("p", math.inf, pl.PredictionValueError, "inf")],
    "poisson": [("t", -1.0, pl.LabelValueError, "counts"), ("p", -0.5, pl.PredictionValueError, "rates"),
                ("p", math.nan, pl.PredictionValueError, "nan")],
}


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("where", [(0, 0), (17, 23), (29, 39)], ids=str)
@pytest.mark.parametrize(("kind", "case"), [(k, c) for k, cases in BAD.items() for c in cases], ids=str)
def test_a_bad_element_anywhere_raises_and_is_named(kind, case, where, lib):
    which, value, error, words = case
    t, p = _inputs(kind, (30, 40), seed=2)
    (t if which == "t" else p)[where] = value
    conv = np.asarray if lib == "numpy" else torch.from_numpy
    with pytest.raises(error, match=re.escape(str(where))) as info:
        LOSSES[kind](conv(t), conv(p))
    assert words in str(info.value)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_negative_zero_passes_the_checks(kind):
    t, p = _inputs(kind, (10, 20), seed=3)
    t[4, 5] = p[6, 7] = -0.0  # fails the bit test, then passes the exact one
    if kind == "cat_probs":
        p = p / p.sum(-1, keepdims=True)  # keep the rows normalised (no warning)
        p[6, 7] = -0.0
    got = LOSSES[kind](t, p)
    np.testing.assert_allclose(got, _reference(kind, t, p), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_with_checks_off_bad_values_give_nan_as_the_generic_path(kind):
    t, p = _inputs(kind, (6, 9), seed=4)
    t[1, 2] = np.nan
    p[3, 4] = np.nan
    with pl.set_value_checks(False):
        got = LOSSES[kind](t, p)
        with fast_paths(False):
            generic = LOSSES[kind](t, p)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(generic))
    assert np.isnan(got[1]) and np.isnan(got[3])
    np.testing.assert_allclose(got[~np.isnan(got)], generic[~np.isnan(generic)], rtol=1e-5)


def test_label_smoothing_checks_the_labels_before_smoothing():
    t, p = _inputs("bce", (8, 16), seed=5)
    t[2, 3] = -0.05  # inside [0, 1] once smoothed by 0.2, but a bad label
    with pytest.raises(pl.LabelValueError, match=r"\(2, 3\)"):
        pl.binary_crossentropy(t, p, label_smoothing=0.2)
    t[2, 3] = 1.0
    got = pl.binary_crossentropy(t, p, label_smoothing=0.2)
    np.testing.assert_allclose(got, _reference("bce", t * 0.8 + 0.1, p), rtol=1e-6)


def test_other_inputs_take_the_generic_path(monkeypatch):
    t, p = _inputs("kl", (8, 16))
    assert not _fused.applies("kl", t.astype(np.float64), p.astype(np.float64))  # float64
    assert not _fused.applies("kl", t.T, p.T)  # not contiguous
    assert not _fused.applies("cat_probs_logits", t, p)  # no such kernel
    assert not _fused.applies("kl", t, p[:, :8])  # shapes differ
    monkeypatch.setattr(_scan, "MIN_ELEMENTS", 1 << 20)
    assert not _fused.applies("kl", t, p)  # small


def test_torch_compile_does_not_call_the_kernel():
    t, p = _inputs("kl", (8, 16))
    f = torch.compile(lambda a, b: pl.kl_divergence(a, b), backend="aot_eager")
    got = f(torch.from_numpy(t), torch.from_numpy(p))
    np.testing.assert_allclose(got.numpy(), _reference("kl", t, p), rtol=1e-6)



@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_unnormalised_probability_rows_warn_and_are_renormalised(lib):
    t, p = _inputs("cat_probs", (12, 30), seed=6)
    p[5] *= 0.5
    conv = np.asarray if lib == "numpy" else torch.from_numpy
    with pytest.warns(pl.ProblossWarning, match=r"index \(5,\) sums to 0\.5"):
        got = pl.categorical_crossentropy(conv(t), conv(p))
    np.testing.assert_allclose(np.asarray(got), _reference("cat_probs", t, p), rtol=1e-6)


def test_load_kernels_compiles_every_kernel_ahead():
    from probloss import _fused_kernels

    assert _fused.load_kernels() is True
    for kind, kernel in _fused_kernels.KERNELS.items():
        assert kernel.signatures, kind  # compiled (or loaded from the cache) for float32


def test_a_numba_that_fails_to_import_warns_once_and_the_generic_code_runs(monkeypatch):
    import importlib
    import warnings

    monkeypatch.setattr(_scan, "_numba_usable", None)
    monkeypatch.setattr(_fused, "_kernels", None)
    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name == "numba":
            raise ImportError("numba built for another NumPy")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    t, p = _inputs("kl", (20, 30), seed=9)
    with pytest.warns(pl.ProblossWarning, match="failed to import"):
        got = pl.kl_divergence(t, p)
    np.testing.assert_allclose(got, _reference("kl", t, p), rtol=1e-5)
    assert not _fused.applies("kl", t, p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not on every call
        pl.kl_divergence(t, p)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_tf_nn_softmax_cross_entropy_takes_the_fused_kernel_and_checks_labels(lib):
    t, x = _inputs("soft_ce", (16, 50), seed=10)
    conv = np.asarray if lib == "numpy" else torch.from_numpy
    got = pl.softmax_cross_entropy_with_logits(labels=conv(t), logits=conv(x))
    np.testing.assert_allclose(np.asarray(got), _reference("soft_ce", t, x), rtol=1e-6)
    t[3, 7] = -0.25
    with pytest.raises(pl.LabelValueError, match=r"`labels` holds -0.25 at index \(3, 7\)"):
        pl.softmax_cross_entropy_with_logits(labels=conv(t), logits=conv(x))
