"""Every loss on every backend (NumPy, array-api-strict, torch, JAX eager and jitted).

Values are compared with the float64 formulas in tests/reference.py; the result must
come back in the caller's array library, on its device, in its dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl
from tests import reference as ref

RNG = np.random.default_rng(1234)
N, K = 6, 5
LOGITS = RNG.normal(scale=3, size=(N, K)).astype(np.float32)
PROBS = np.exp(ref.log_softmax(LOGITS)).astype(np.float32)
LABELS = RNG.integers(0, K, size=N)
ONEHOT = np.eye(K, dtype=np.float32)[LABELS]
BIN_T = (RNG.random((N, K)) < 0.5).astype(np.float32)
BIN_P = RNG.uniform(0.02, 0.98, size=(N, K)).astype(np.float32)
COUNTS = RNG.poisson(2.0, size=(N, K)).astype(np.float32)
RATES = RNG.uniform(0.1, 5, size=(N, K)).astype(np.float32)
RANK3 = RNG.normal(size=(3, K, 4)).astype(np.float32)
RANK3_LABELS = RNG.integers(0, K, size=(3, 4))

CASES = {
    "bce_probs": (pl.binary_crossentropy, BIN_T, BIN_P, {}, lambda: ref.bce(BIN_T, BIN_P)),
    "bce_logits_ls": (
        pl.binary_crossentropy, BIN_T, LOGITS, dict(from_logits=True, label_smoothing=0.1),
        lambda: ref.bce(BIN_T, LOGITS, from_logits=True, label_smoothing=0.1),
    ),
    "bce_axis0": (pl.binary_crossentropy, BIN_T, BIN_P, dict(axis=0), lambda: ref.bce(BIN_T, BIN_P, axis=0)),
    "bfce_logits": (
        pl.binary_focal_crossentropy, BIN_T, LOGITS, dict(from_logits=True, apply_class_balancing=True, gamma=1.5),
        lambda: ref.bfce(BIN_T, LOGITS, from_logits=True, apply_class_balancing=True, gamma=1.5),
    ),
    "cce_probs": (pl.categorical_crossentropy, ONEHOT, PROBS, {}, lambda: ref.cce(ONEHOT, PROBS)),
    "cce_logits_ls": (
        pl.categorical_crossentropy, ONEHOT, LOGITS, dict(from_logits=True, label_smoothing=0.2),
        lambda: ref.cce(ONEHOT, LOGITS, from_logits=True, label_smoothing=0.2),
    ),
    "cce_axis1_rank3": (
        pl.categorical_crossentropy, ref.one_hot(RANK3_LABELS, K, axis=1), RANK3, dict(from_logits=True, axis=1, label_smoothing=0.1),
        lambda: ref.cce(ref.one_hot(RANK3_LABELS, K, axis=1), RANK3, from_logits=True, axis=1, label_smoothing=0.1),
    ),
    "cfce_probs_alpha_list": (
        pl.categorical_focal_crossentropy, ONEHOT, PROBS, dict(alpha=[0.1, 0.2, 0.3, 0.2, 0.2], gamma=1.0),
        lambda: ref.cfce(ONEHOT, PROBS, alpha=[0.1, 0.2, 0.3, 0.2, 0.2], gamma=1.0),
    ),
    "cfce_axis1_alpha_list": (
        pl.categorical_focal_crossentropy, ref.one_hot(RANK3_LABELS, K, axis=1), RANK3,
        dict(alpha=[0.1, 0.2, 0.3, 0.2, 0.2], from_logits=True, axis=1),
        lambda: ref.cfce(ref.one_hot(RANK3_LABELS, K, axis=1), RANK3, alpha=[0.1, 0.2, 0.3, 0.2, 0.2], from_logits=True, axis=1),
    ),
    "scce_logits": (
        pl.sparse_categorical_crossentropy, LABELS, LOGITS, dict(from_logits=True),
        lambda: ref.scce(LABELS, LOGITS, from_logits=True)[0],
    ),
    "scce_probs_ignore": (
        pl.sparse_categorical_crossentropy, np.where(LABELS == 0, -1, LABELS), PROBS, dict(ignore_class=-1),
        lambda: ref.scce(np.where(LABELS == 0, -1, LABELS), PROBS, ignore_class=-1)[0],
    ),
    "scce_axis1_rank3": (
        pl.sparse_categorical_crossentropy, RANK3_LABELS, RANK3, dict(from_logits=True, axis=1),
        lambda: ref.scce(RANK3_LABELS, RANK3, from_logits=True, axis=1)[0],
    ),
    "poisson": (pl.poisson, COUNTS, RATES, {}, lambda: ref.poisson(COUNTS, RATES)),
    "kld": (pl.kl_divergence, PROBS[::-1].copy(), PROBS, {}, lambda: ref.kld(PROBS[::-1], PROBS)),
}


def _label_dtype(backend, y):
    return None if np.asarray(y).dtype.kind == "f" else ("int64" if backend.name == "torch" else "int32")


@pytest.mark.parametrize("case", list(CASES))
def test_every_loss_on_every_backend(backend, case):
    fn, y_true, y_pred, kwargs, expected = CASES[case]
    t = backend.asarray(y_true, dtype=_label_dtype(backend, y_true))
    p = backend.asarray(y_pred)
    out = backend.call(fn, t, p, **kwargs)
    assert type(out).__module__.split(".")[0] == type(p).__module__.split(".")[0]
    assert out.dtype == p.dtype
    # Focal BCE from logits goes sigmoid -> 1 - p in float32 (as Keras does), which loses
    # ~1e-4 relative against float64 once |logit| > 8 (keras_semantics.md §3.2).
    rtol = 1e-4 if case.startswith("bfce") else 2e-5
    np.testing.assert_allclose(backend.to_numpy(out), expected(), rtol=rtol, atol=2e-6)


@pytest.mark.parametrize(
    "loss",
    [
        pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        pl.CategoricalCrossentropy(from_logits=True, reduction="sum"),
        pl.BinaryCrossentropy(reduction="mean_with_sample_weight"),
    ],
    ids=["scce_ignore", "cce_sum", "bce_mwsw"],
)
def test_classes_on_every_backend(backend, loss):
    if isinstance(loss, pl.SparseCategoricalCrossentropy):
        y_true, y_pred = LABELS, LOGITS
        values, mask = ref.scce(LABELS, LOGITS, from_logits=True, ignore_class=0)
        expected = ref.reduce(values, loss.reduction, RATES[:, 0], mask)
    elif isinstance(loss, pl.CategoricalCrossentropy):
        y_true, y_pred = ONEHOT, LOGITS
        expected = ref.reduce(ref.cce(ONEHOT, LOGITS, from_logits=True), "sum", RATES[:, 0])
    else:
        y_true, y_pred = BIN_T, BIN_P
        expected = ref.reduce(ref.bce(BIN_T, BIN_P), "mean_with_sample_weight", RATES[:, 0])
    t = backend.asarray(y_true, dtype=_label_dtype(backend, y_true))
    out = backend.call(loss, t, backend.asarray(y_pred), sample_weight=backend.asarray(RATES[:, 0]))
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=2e-5, atol=2e-6)


def test_python_lists_give_numpy_float32():
    out = pl.sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32


def test_float64_stays_float64():
    out = pl.categorical_crossentropy(ONEHOT.astype(np.float64), PROBS.astype(np.float64))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref.cce(ONEHOT, PROBS), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_half_precision_accumulates_in_float32(name, dtype):
    from tests.conftest import _make

    backend = _make(name)
    xp = backend.xp
    big = RNG.normal(scale=4, size=(4, 2000)).astype(np.float32)
    labels = RNG.integers(0, 2000, size=4)
    logits = xp.asarray(big).to(getattr(xp, dtype)) if name == "torch" else xp.asarray(big, dtype=getattr(xp, dtype))
    out = pl.sparse_categorical_crossentropy(backend.asarray(labels), logits, from_logits=True)
    assert out.dtype == logits.dtype
    # reference: the same half-precision logits, upcast, in float64
    half_as_f64 = backend.to_numpy(logits.float() if name == "torch" else logits.astype(xp.float32)).astype(np.float64)
    expected = ref.scce(labels, half_as_f64, from_logits=True)[0]
    tol = 1e-2 if dtype == "bfloat16" else 2e-3
    np.testing.assert_allclose(backend.to_numpy(out.float() if name == "torch" else out.astype(xp.float32)), expected, rtol=tol)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_extreme_logits_stay_finite_torch(dtype):
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]]).to(getattr(torch, dtype)).requires_grad_()
    for loss in (
        pl.sparse_categorical_crossentropy(torch.tensor([1, 0]), x, from_logits=True),
        pl.categorical_crossentropy(torch.eye(3)[:2].to(x.dtype), x, from_logits=True, label_smoothing=0.1),
        pl.binary_crossentropy(torch.tensor([[1.0, 0, 1], [0, 1, 0]]).to(x.dtype), x, from_logits=True),
    ):
        assert torch.isfinite(loss).all()
        (g,) = torch.autograd.grad(loss.sum(), x)
        assert torch.isfinite(g).all()
