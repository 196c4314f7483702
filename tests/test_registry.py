"""Configs, serialisation and the name registry (Keras names and aliases)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import probloss as pl

CLASSES = [
    pl.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, axis=0, reduction="sum", name="b"),
    pl.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4, gamma=3.0),
    pl.CategoricalCrossentropy(label_smoothing=0.2, reduction=None),
    pl.CategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5], gamma=1.0),
    pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, axis=1),
    pl.Poisson(reduction="mean_with_sample_weight"),
    pl.KLDivergence(name="kl"),
]

KERAS_CONFIG_KEYS = {
    "BinaryCrossentropy": {"name", "reduction", "from_logits", "label_smoothing", "axis"},
    "BinaryFocalCrossentropy": {"name", "reduction", "from_logits", "label_smoothing", "axis", "apply_class_balancing", "alpha", "gamma"},
    "CategoricalCrossentropy": {"name", "reduction", "from_logits", "label_smoothing", "axis"},
    "CategoricalFocalCrossentropy": {"name", "reduction", "from_logits", "label_smoothing", "axis", "alpha", "gamma"},
    "SparseCategoricalCrossentropy": {"name", "reduction", "from_logits", "ignore_class", "axis"},
    "Poisson": {"name", "reduction"},
    "KLDivergence": {"name", "reduction"},
}


@pytest.mark.parametrize("loss", CLASSES, ids=lambda c: type(c).__name__)
def test_config_round_trip_through_json(loss):
    config = json.loads(json.dumps(loss.get_config()))
    clone = type(loss).from_config(config)
    assert clone.get_config() == loss.get_config()
    data = json.loads(json.dumps(pl.serialize(loss)))
    again = pl.deserialize(data)
    assert type(again) is type(loss) and again.get_config() == loss.get_config()
    # Keras's keys are all there (we add `epsilon`)
    assert KERAS_CONFIG_KEYS[type(loss).__name__] <= set(config)


@pytest.mark.parametrize("loss", CLASSES, ids=lambda c: type(c).__name__)
def test_keras_can_read_our_config(loss):
    keras = pytest.importorskip("keras")
    config = {k: v for k, v in loss.get_config().items() if k != "epsilon"}
    keras_loss = getattr(keras.losses, type(loss).__name__).from_config(config)
    for key in ("reduction", "name"):
        assert getattr(keras_loss, key) == config[key]


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("binary_crossentropy", pl.binary_crossentropy),
        ("bce", pl.binary_crossentropy),
        ("BCE", pl.binary_crossentropy),
        ("kld", pl.kl_divergence),
        ("KLD", pl.kl_divergence),
        ("sparse_categorical_crossentropy", pl.sparse_categorical_crossentropy),
        ("poisson", pl.poisson),
    ],
)
def test_get_function_names_and_aliases(identifier, expected):
    assert pl.get(identifier) is expected


def test_get_class_name_gives_default_instance():
    loss = pl.get("SparseCategoricalCrossentropy")
    assert isinstance(loss, pl.SparseCategoricalCrossentropy)
    np.testing.assert_allclose(loss([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]), 1.176939, rtol=1e-6)
    assert pl.get(None) is None
    assert pl.get(pl.Poisson) .__class__ is pl.Poisson
    inst = pl.KLDivergence()
    assert pl.get(inst) is inst


def test_function_serialization():
    data = pl.serialize(pl.poisson)
    assert data == {"module": "builtins", "class_name": "function", "config": "poisson", "registered_name": "function"}
    assert pl.deserialize(data) is pl.poisson


def test_unknown_name_suggests_close_match():
    with pytest.raises(pl.ProblossError, match="Did you mean 'sparse_categorical_crossentropy'"):
        pl.get("sparse_categorical_crossentropi")


@pytest.mark.parametrize(
    "config",
    [
        {"module": "os", "class_name": "system", "config": {"command": "echo hi"}},
        {"module": "probloss", "class_name": "Popen", "config": {}},
        {"module": "builtins", "class_name": "function", "config": "eval"},
        {"module": "probloss", "class_name": "Poisson", "config": {"reduction": "sum", "name": object()}},
        {"module": "probloss", "class_name": "Poisson", "config": {"dtype": "float32", "__class__": "x"}},
    ],
)
def test_configs_naming_other_classes_or_modules_are_refused(config):
    with pytest.raises(pl.ProblossError):
        pl.deserialize(config)


def test_from_config_refuses_unknown_keys():
    with pytest.raises(pl.ArgumentError, match="get_config"):
        pl.Poisson.from_config({"name": "p", "reduction": "sum", "evil": 1})


def test_reduction_validated():
    with pytest.raises(pl.ArgumentError, match='"auto" is "sum_over_batch_size"'):
        pl.CategoricalCrossentropy(reduction="auto")


def test_keras_style_subclass_with_call():
    class MeanAbsolute(pl.Loss):
        def call(self, y_true, y_pred):
            return abs(y_true - y_pred).mean(axis=-1)

    loss = MeanAbsolute(reduction="sum")
    assert loss.name == "mean_absolute"
    np.testing.assert_allclose(loss([[0.0, 1.0], [1.0, 1.0]], [[0.5, 0.5], [1.0, 0.0]]), 0.5 + 0.5, rtol=1e-6)
    with pytest.raises(NotImplementedError, match="call"):
        pl.Loss()([1.0], [1.0])


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_class_dtype_option(dtype):
    torch = pytest.importorskip("torch")
    loss = pl.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
    out = loss(torch.tensor([0, 2]), torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]]))
    assert out.dtype == getattr(torch, dtype)
    x = np.float32([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]]).astype(np.float64)
    expected = np.mean(np.log(np.exp(x).sum(axis=1)) - x[[0, 1], [0, 2]])  # LSE(x) - x_y, float64
    np.testing.assert_allclose(float(out), expected, rtol=1e-2 if "16" in dtype else 1e-6)
