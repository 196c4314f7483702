"""probloss.keras's classes are keras.losses.Loss subclasses with Keras's arguments, configs and numbers."""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl

keras = pytest.importorskip("keras")
plk = pytest.importorskip("probloss.keras")

from keras.src.backend import set_keras_mask  # noqa: E402  (what Embedding(mask_zero=True) sets)

NAMES = [
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "SparseCategoricalCrossentropy",
    "Poisson",
    "KLDivergence",
    "CTC",
]

# Options that change the per-sample values, per class (beyond the defaults).
OPTIONS = {
    "BinaryCrossentropy": {"from_logits": True, "label_smoothing": 0.1},
    "BinaryFocalCrossentropy": {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5},
    "CategoricalCrossentropy": {"from_logits": True, "label_smoothing": 0.2},
    "CategoricalFocalCrossentropy": {"alpha": 0.3, "gamma": 1.0},
    "SparseCategoricalCrossentropy": {"from_logits": True, "ignore_class": -1},
    "Poisson": {},
    "KLDivergence": {},
    "CTC": {},
}
REDUCTIONS = ["sum_over_batch_size", "mean_with_sample_weight", None]


def _inputs(name, rng, n=6, t=5, k=4):
    """Sequence-shaped inputs (N, T, ...) so that a (N, T) input mask applies (CTC: (N, T, K) logits)."""
    if name in ("BinaryCrossentropy", "BinaryFocalCrossentropy"):
        return (rng.random((n, t, k)) < 0.4).astype("float32"), rng.uniform(0.05, 0.95, (n, t, k)).astype("float32")
    if name in ("CategoricalCrossentropy", "CategoricalFocalCrossentropy"):
        p = rng.dirichlet(np.ones(k), size=(n, t)).astype("float32")
        return np.eye(k, dtype="float32")[rng.integers(0, k, (n, t))], p
    if name == "SparseCategoricalCrossentropy":
        y = rng.integers(0, k, (n, t)).astype("int32")
        y[rng.random((n, t)) < 0.25] = -1
        return y, rng.normal(size=(n, t, k)).astype("float32")
    if name == "Poisson":
        return rng.poisson(2.0, (n, t, k)).astype("float32"), rng.uniform(0.2, 4.0, (n, t, k)).astype("float32")
    if name == "KLDivergence":
        return rng.dirichlet(np.ones(k), size=(n, t)).astype("float32"), rng.dirichlet(np.ones(k), size=(n, t)).astype("float32")
    labels = np.zeros((n, 3), dtype="int32")
    labels[:, :2] = rng.integers(1, k, (n, 2))
    return labels, rng.normal(size=(n, t, k)).astype("float32")


def _per_sample_rank(name):
    return 1 if name == "CTC" else 2


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_same_numbers_as_keras_with_weights_and_masks(name, reduction):
    rng = np.random.default_rng(NAMES.index(name))
    y_true, y_pred = _inputs(name, rng)
    rank = _per_sample_rank(name)
    weight = rng.uniform(0, 3, (6, 1) if rank == 2 else (6,)).astype("float32")
    ours = getattr(plk, name)(reduction=reduction, **OPTIONS[name])
    theirs = getattr(keras.losses, name)(reduction=reduction, **OPTIONS[name])
    for sample_weight in (None, weight):
        a = keras.ops.convert_to_numpy(ours(y_true, y_pred, sample_weight=sample_weight))
        b = keras.ops.convert_to_numpy(theirs(y_true, y_pred, sample_weight=sample_weight))
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)
    if rank == 2:  # an input mask, as Embedding(mask_zero=True) leaves on y_pred
        mask = rng.random((6, 5)) < 0.7
        results = []
        for loss in (ours, theirs):
            p = keras.ops.convert_to_tensor(y_pred)
            set_keras_mask(p, keras.ops.convert_to_tensor(mask))
            results.append(keras.ops.convert_to_numpy(loss(y_true, p, sample_weight=weight)))
        np.testing.assert_allclose(results[0], results[1], rtol=2e-6, atol=1e-6)
        if reduction == "sum_over_batch_size":  # and the mask did change the number
            assert abs(float(results[0]) - float(ours(y_true, y_pred, sample_weight=weight))) > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_class_config_and_serialization(name):
    ours = getattr(plk, name)(**OPTIONS[name])
    theirs = getattr(keras.losses, name)(**OPTIONS[name])
    assert isinstance(ours, keras.losses.Loss)
    mine, keras_config = ours.get_config(), theirs.get_config()
    assert {k: mine[k] for k in keras_config} == keras_config  # Keras's keys and values, plus epsilon / axis
    assert set(mine) - set(keras_config) <= {"epsilon", "axis"}
    blob = keras.saving.serialize_keras_object(ours)
    assert blob["registered_name"] == f"probloss>{name}"
    clone = keras.saving.deserialize_keras_object(blob)
    assert type(clone) is type(ours) and clone.get_config() == mine
    assert keras.losses.get(blob).get_config() == mine


@pytest.mark.parametrize("name", NAMES)
def test_from_probloss_keeps_the_options(name):
    plain = getattr(pl, name)(reduction="sum", **OPTIONS[name])
    converted = plk.from_probloss(plain)
    assert type(converted) is getattr(plk, name)
    assert converted.reduction == "sum"
    for key, value in OPTIONS[name].items():
        assert getattr(converted, key) == value
    assert plk.from_probloss(converted) is converted


def test_from_probloss_refuses_what_has_no_keras_class():
    class Mine(pl.SparseCategoricalCrossentropy):
        pass

    with pytest.raises(pl.ProblossTypeError, match="SparseCategoricalCrossentropy"):
        plk.from_probloss(Mine())
    with pytest.raises(pl.ProblossTypeError):
        plk.from_probloss(keras.losses.Poisson())


def test_dtype_takes_a_keras_policy():
    loss = plk.CategoricalCrossentropy(dtype=keras.DTypePolicy("mixed_float16"))
    assert loss.dtype == "float16"
    assert loss.get_config()["dtype"] == "mixed_float16"
    out = loss([[0.0, 1.0]], np.array([[0.3, 0.7]], dtype="float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    keras_out = float(keras.losses.CategoricalCrossentropy(dtype="mixed_float16")([[0.0, 1.0]], [[0.3, 0.7]]))
    assert float(out) == pytest.approx(keras_out, rel=2e-3)  # float16: one or two units in the last place
    assert type(plk.CategoricalCrossentropy.from_config(loss.get_config())).__name__ == "CategoricalCrossentropy"
    assert "dtype" not in plk.CategoricalCrossentropy().get_config()  # as Keras, when none was given


def test_options_are_checked_at_construction():
    with pytest.raises(pl.ArgumentError, match="label_smoothing"):
        plk.BinaryCrossentropy(label_smoothing=2.0)
    with pytest.raises(ValueError, match="reduction"):
        plk.Poisson(reduction="median")


def test_probloss_errors_reach_the_caller():
    # one-hot labels given to the sparse loss: probloss's error, not a wrong number
    with pytest.raises(pl.LabelFormatError, match="one-hot"):
        plk.SparseCategoricalCrossentropy()(np.eye(3, dtype="float32"), np.full((3, 3), 1 / 3, dtype="float32"))
