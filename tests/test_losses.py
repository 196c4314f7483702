"""The loss classes of ``probloss.losses`` as objects: ``per_sample``, ``dtype``, configs,
``__repr__`` and user subclasses.  Numbers are checked against the float64 formulas of
tests/reference.py (the registry and serialisation are tests/test_registry.py's).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import probloss as pl
from tests import cases
from tests import reference as ref

LOGITS, LABELS, ROWS, BIN_T, BIN_P = cases.LOGITS, cases.LABELS, cases.ROWS, cases.BIN_T, cases.BIN_P
F32 = {k: v.astype(np.float32) for k, v in dict(LOGITS=LOGITS, ROWS=ROWS, BIN_T=BIN_T, BIN_P=BIN_P).items()}


# ------------------------------------------------------------------ per_sample


def test_per_sample_returns_the_values_and_the_ignore_class_mask():
    labels = np.where(LABELS == LABELS[0], 7, LABELS)
    values, mask = pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=7).per_sample(labels, F32["LOGITS"])
    want, valid = ref.scce(labels, LOGITS, from_logits=True, ignore_class=7)
    np.testing.assert_array_equal(mask, valid)
    assert mask.dtype == np.bool_ and not mask[0]
    np.testing.assert_allclose(values, want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("loss", "y_true", "y_pred", "reference"),
    [
        (pl.BinaryCrossentropy(label_smoothing=0.1), BIN_T, BIN_P, lambda: ref.bce(BIN_T, BIN_P, label_smoothing=0.1)),
        (pl.CategoricalCrossentropy(from_logits=True), cases.ONEHOT, LOGITS, lambda: ref.cce(cases.ONEHOT, LOGITS, from_logits=True)),
        (pl.SparseCategoricalCrossentropy(), LABELS, ROWS, lambda: ref.scce(LABELS, ROWS)[0]),
        (pl.Poisson(), cases.COUNTS, cases.RATES, lambda: ref.poisson(cases.COUNTS, cases.RATES)),
        (pl.KLDivergence(), cases.SOFT, ROWS, lambda: ref.kld(cases.SOFT, ROWS)),
    ],
    ids=["binary", "categorical", "sparse", "poisson", "kl-divergence"],
)
def test_per_sample_without_a_mask_and_the_call_reduces_exactly_those(loss, y_true, y_pred, reference):
    p = y_pred.astype(np.float32)
    t = y_true.astype(np.float32) if y_true.dtype.kind == "f" else y_true
    values, mask = loss.per_sample(t, p)
    assert mask is None
    np.testing.assert_allclose(values, reference(), rtol=2e-5, atol=1e-6)
    w = cases.RATES[:, 0].astype(np.float32)
    np.testing.assert_allclose(loss(t, p, sample_weight=w), ref.reduce(reference(), loss.reduction, w), rtol=2e-5)


# ---------------------------------------------------------------------- dtype


def test_dtype_float64_computes_in_float64():
    loss = pl.CategoricalCrossentropy(from_logits=True, dtype="float64")
    assert loss.dtype == "float64"
    out = loss(cases.ONEHOT.astype(np.float32), F32["LOGITS"])
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref.cce(cases.ONEHOT, F32["LOGITS"], from_logits=True).mean(), rtol=1e-12)


def test_dtype_float16_outputs_float16():
    loss = pl.BinaryCrossentropy(dtype="float16")
    values, _ = loss.per_sample(F32["BIN_T"], F32["BIN_P"])
    assert values.dtype == np.float16
    out = loss(F32["BIN_T"], F32["BIN_P"])
    assert out.dtype == np.float16
    np.testing.assert_allclose(float(out), ref.bce(BIN_T, BIN_P.astype(np.float16)).mean(), rtol=2e-3)


def test_dtype_none_follows_the_prediction():
    loss = pl.Poisson()
    assert loss.dtype is None
    assert loss(cases.COUNTS, cases.RATES).dtype == np.float64
    assert loss(cases.COUNTS, F32["ROWS"]).dtype == np.float32
    assert loss([[1, 2]], [[1, 2]]).dtype == np.float32  # integers and lists: float32, as Keras's floatx


def test_bfloat16_on_numpy_says_numpy_has_none():
    with pytest.raises(pl.ProblossTypeError, match="no bfloat16"):
        pl.BinaryCrossentropy(dtype="bfloat16")(F32["BIN_T"], F32["BIN_P"])


@pytest.mark.parametrize(("kwargs", "match"), [({"dtype": "int32"}, "dtype"), ({"name": 3}, "name"), ({"reduction": "avg"}, "reduction")])
def test_constructor_arguments_are_validated(kwargs, match):
    with pytest.raises(pl.ArgumentError, match=match):
        pl.Poisson(**kwargs)


# ----------------------------------------------------------- configs and repr

EVERY_CLASS = [
    pl.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, reduction="sum", name="b"),
    pl.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4, gamma=3.0, label_smoothing=0.05),
    pl.CategoricalCrossentropy(label_smoothing=0.2, reduction=None, axis=-1),
    pl.CategoricalFocalCrossentropy(alpha=[0.1, 0.2, 0.3, 0.2, 0.2], gamma=1.0),
    pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2, reduction="mean_with_sample_weight"),
    pl.Poisson(reduction="sum"),
    pl.KLDivergence(name="kl", epsilon=1e-6),
]
INPUTS = {
    "BinaryCrossentropy": (BIN_T, LOGITS),
    "BinaryFocalCrossentropy": (BIN_T, BIN_P),
    "CategoricalCrossentropy": (cases.ONEHOT, ROWS),
    "CategoricalFocalCrossentropy": (cases.ONEHOT, ROWS),
    "SparseCategoricalCrossentropy": (LABELS, LOGITS),
    "Poisson": (cases.COUNTS, cases.RATES),
    "KLDivergence": (cases.SOFT, ROWS),
}
REFERENCE = {
    "BinaryCrossentropy": lambda t, p: ref.reduce(ref.bce(t, p, from_logits=True, label_smoothing=0.1), "sum"),
    "BinaryFocalCrossentropy": lambda t, p: ref.bfce(t, p, apply_class_balancing=True, alpha=0.4, gamma=3.0, label_smoothing=0.05).mean(),
    "CategoricalCrossentropy": lambda t, p: ref.cce(t, p, label_smoothing=0.2),
    "CategoricalFocalCrossentropy": lambda t, p: ref.cfce(t, p, alpha=[0.1, 0.2, 0.3, 0.2, 0.2], gamma=1.0).mean(),
    "SparseCategoricalCrossentropy": lambda t, p: _sparse_masked_mean(t, p),
    "Poisson": lambda t, p: ref.poisson(t, p).sum(),
    "KLDivergence": lambda t, p: _kl_eps(t, p, 1e-6).mean(),
}


def _sparse_masked_mean(t, p):
    values, valid = ref.scce(t, p, from_logits=True, ignore_class=2)
    return ref.reduce(values, "mean_with_sample_weight", mask=valid)


def _kl_eps(t, p, eps):
    """KL with Keras's clip to [eps, 1], for an epsilon other than reference.py's."""
    t, p = np.clip(t, eps, 1), np.clip(p, eps, 1)
    return (t * np.log(t / p)).sum(axis=-1)


@pytest.mark.parametrize("loss", EVERY_CLASS, ids=lambda c: type(c).__name__)
def test_get_config_from_config_round_trip_gives_the_same_loss(loss):
    config = json.loads(json.dumps(loss.get_config()))  # JSON-safe
    clone = type(loss).from_config(config)
    assert clone.get_config() == loss.get_config()
    assert clone.reduction == loss.reduction and clone.name == loss.name
    t, p = INPUTS[type(loss).__name__]
    expected = REFERENCE[type(loss).__name__](t, p)
    # float64 inputs; 1e-7 as a per-class alpha list is read in float32 (see test_focal.py)
    np.testing.assert_allclose(loss(t, p), expected, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(clone(t, p), expected, rtol=1e-7, atol=1e-12)


def test_repr_lists_the_config():
    loss = pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction="sum", name="seg")
    assert repr(loss) == (
        "SparseCategoricalCrossentropy(name='seg', reduction='sum', from_logits=True, ignore_class=-1, axis=-1, epsilon=1e-07)"
    )
    assert repr(pl.Poisson()) == "Poisson(name='poisson', reduction='sum_over_batch_size', epsilon=1e-07)"
    assert repr(pl.CTC(reduction=None)) == "CTC(name='ctc', reduction=None)"


def test_default_names_are_keras_snake_case():
    names = {type(c).__name__: type(c)().name for c in EVERY_CLASS}
    assert names == {
        "BinaryCrossentropy": "binary_crossentropy",
        "BinaryFocalCrossentropy": "binary_focal_crossentropy",
        "CategoricalCrossentropy": "categorical_crossentropy",
        "CategoricalFocalCrossentropy": "categorical_focal_crossentropy",
        "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
        "Poisson": "poisson",
        "KLDivergence": "kl_divergence",
    }


# ---------------------------------------------------------------- subclasses


class SquaredError(pl.Loss):
    """A Keras-style subclass: ``call`` returns per-sample losses."""

    seen: list = []

    def call(self, y_true, y_pred):
        SquaredError.seen.append((y_true.dtype, y_pred.dtype))
        return ((y_true - y_pred) ** 2).mean(axis=-1)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None])
def test_user_subclass_with_call_is_reduced_like_keras(reduction):
    t = np.array([[1, 0, 2], [0, 0, 1]])  # integers: reach call as the prediction's dtype
    p = np.array([[0.5, 0.5, 1.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    w = np.array([2.0, 0.5], dtype=np.float32)
    loss = SquaredError(reduction=reduction)
    assert loss.name == "squared_error"
    SquaredError.seen.clear()
    out = loss(t, p, sample_weight=w)
    assert SquaredError.seen == [(np.float32, np.float32)]
    expected = ref.reduce(((t - p.astype(np.float64)) ** 2).mean(axis=-1), reduction, w)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_user_subclass_per_sample_has_no_mask_and_honours_dtype():
    values, mask = SquaredError(dtype="float64").per_sample([[1.0, 0.0]], [[0.25, 0.5]])
    assert mask is None
    assert values.dtype == np.float64
    np.testing.assert_allclose(values, [(0.75**2 + 0.5**2) / 2], rtol=1e-15)


def test_loss_without_call_says_to_implement_it():
    with pytest.raises(NotImplementedError, match="call"):
        pl.Loss()([1.0], [1.0])


def test_loss_function_wrapper_passes_its_options_and_reports_them():
    from probloss.losses import LossFunctionWrapper

    loss = LossFunctionWrapper(pl.binary_crossentropy, reduction="sum", from_logits=True)
    assert loss.name == "binary_crossentropy"
    assert loss.get_config() == {"name": "binary_crossentropy", "reduction": "sum", "from_logits": True}
    np.testing.assert_allclose(loss(BIN_T, LOGITS), ref.bce(BIN_T, LOGITS, from_logits=True).sum(), rtol=1e-12)


def test_user_subclass_gets_both_inputs_in_the_compute_dtype():
    seen = {}

    class Squared(pl.Loss):
        def call(self, y_true, y_pred):
            seen["dtypes"] = (y_true.dtype, y_pred.dtype)
            return ((y_true - y_pred) ** 2).mean(axis=-1)

    t, p = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    out = Squared(dtype="float16")(t, p)
    assert out.dtype == np.float16 and seen["dtypes"] == (np.float16, np.float16)
    out = Squared()(np.ones((2, 3), np.int32), p)  # int32 labels are cast to float32, not promoted
    assert out.dtype == np.float32 and seen["dtypes"] == (np.float32, np.float32)
    assert float(out) == 1.0
