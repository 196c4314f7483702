"""Every loss on every backend (NumPy, array-api-strict, torch, JAX eager and jitted).

Every case of the shared table (tests/cases.py) is run in float32 and compared with its
float64 formula from tests/reference.py (the Keras fixture cases that probe no edge skip
JAX, whose compile per new shape costs a second each); the result must come back in the caller's
array library, on its device, in its dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl
from tests import cases
from tests import reference as ref
from tests.conftest import BACKENDS

RNG = np.random.default_rng(1234)
LABELS, LOGITS, ONEHOT, BIN_T = cases.LABELS, cases.LOGITS, cases.ONEHOT, cases.BIN_T
BIN_P, RATES = cases.BIN_P, cases.RATES
PROBS = cases.ROWS


def _label_dtype(backend, y):
    return np.float32 if np.asarray(y).dtype.kind == "f" else ("int64" if backend.name == "torch" else "int32")


def _backend_cases():
    for case in cases.CASES:
        for name in BACKENDS:
            if case.jax or not name.startswith("jax"):
                yield pytest.param(name, case, id=f"{name}-{case.id}")


@pytest.mark.parametrize(("backend", "case"), list(_backend_cases()), indirect=["backend"])
def test_every_loss_on_every_backend(backend, case):
    t = backend.asarray(case.y_true, dtype=_label_dtype(backend, case.y_true))
    p = backend.asarray(case.y_pred, dtype=np.float32)
    out = backend.call(case.call, t, p)
    assert type(out).__module__.split(".")[0] == type(p).__module__.split(".")[0]
    assert out.dtype == p.dtype
    np.testing.assert_allclose(backend.to_numpy(out), case.reference(), rtol=case.rtol, atol=2e-6)


@pytest.mark.parametrize(
    "loss",
    [
        pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        pl.CategoricalCrossentropy(from_logits=True, reduction="sum"),
        pl.BinaryCrossentropy(reduction="mean_with_sample_weight"),
    ],
    ids=["sparse-logits-ignore0-mean", "categorical-logits-sum", "binary-probs-mean-with-sample-weight"],
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
    p = backend.asarray(y_pred, dtype=np.float32)
    out = backend.call(loss, t, p, sample_weight=backend.asarray(RATES[:, 0], dtype=np.float32))
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=2e-5, atol=2e-6)


def test_python_lists_give_numpy_float32():
    out = pl.sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32


def test_float64_stays_float64():
    out = pl.categorical_crossentropy(ONEHOT, PROBS)
    assert ONEHOT.dtype == PROBS.dtype == np.float64
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
