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


# ------------------------------------------------------------ malformed configs


def _nested(depth, leaf=1):
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def _poisson_config(**fields):
    return {"module": "probloss", "class_name": "Poisson", "config": {}, "registered_name": None, **fields}


BAD_CONFIGS = {
    "list_class_name": _poisson_config(class_name=["Poisson"]),
    "dict_class_name": _poisson_config(class_name={"a": 1}),
    "number_class_name": _poisson_config(class_name=3),
    "list_registered_name": _poisson_config(registered_name=["Poisson"]),
    "list_function_name": {"module": "builtins", "class_name": "function", "config": ["poisson"]},
    "string_config": _poisson_config(config="reduction=sum"),
    "number_config": _poisson_config(config=5),
    "list_config": _poisson_config(config=[["reduction", "sum"]]),
    "empty_list_config": _poisson_config(config=[]),
    "nested_config_1000": _poisson_config(config={"name": _nested(1000)}),
    "nested_config_100000": _poisson_config(config={"name": _nested(100_000)}),
    "nested_top_level_1000": {"x": _nested(1000), **_poisson_config()},
    "non_string_key": _poisson_config(config={1: "sum"}),
    "non_string_top_key": {("class_name",): "Poisson", **_poisson_config()},
    "nan_in_config": _poisson_config(config={"epsilon": float("nan")}),
    "bad_reduction_type": _poisson_config(config={"reduction": ["sum"]}),
    "bad_name_type": _poisson_config(config={"name": {"a": 1}}),
    "bad_epsilon_type": _poisson_config(config={"epsilon": "small"}),
    "bad_bool_type": {"module": "probloss", "class_name": "BinaryCrossentropy", "config": {"from_logits": [1]}},
    "module_list": _poisson_config(module=["probloss"]),
}


@pytest.mark.parametrize("config", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_malformed_configs_raise_our_errors(config):
    with pytest.raises(Exception) as info:  # noqa: B017,PT011 - the type is asserted below
        pl.deserialize(config)
    assert isinstance(info.value, pl.ProblossError), repr(info.value)
    assert len(str(info.value)) < 2000  # the message does not print the whole value


@pytest.mark.parametrize("config", ["Poisson ", 5, 2.5, None, [1], ("Poisson",), b"Poisson"], ids=repr)
def test_deserialize_of_a_non_dict_raises_our_error(config):
    with pytest.raises(pl.ProblossError):
        pl.deserialize(config)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_check_json_safe_is_not_recursive(depth):
    from probloss.losses import _MAX_DEPTH, _check_json_safe

    with pytest.raises(pl.ArgumentError, match=f"nested more than {_MAX_DEPTH} levels"):
        _check_json_safe(_nested(depth), "config")
    _check_json_safe(_nested(_MAX_DEPTH - 1), "config")  # deep but within the cap is fine


def test_self_referencing_config_is_refused():
    config = {"name": "p"}
    config["self"] = config
    with pytest.raises(pl.ArgumentError, match="nested more than"):
        pl.deserialize(_poisson_config(config=config))
    with pytest.raises(pl.ArgumentError, match="nested more than"):
        pl.Poisson.from_config(config)


def test_from_config_with_malformed_input_raises_our_errors():
    for config in ("x", 5, ["name"], {1: 2}, {"name": _nested(5000)}):
        with pytest.raises(pl.ProblossError):
            pl.Poisson.from_config(config)


def test_config_without_inner_config_gives_defaults():
    assert pl.deserialize({"module": "probloss", "class_name": "Poisson"}).get_config() == pl.Poisson().get_config()
    assert pl.deserialize(_poisson_config(config=None)).get_config() == pl.Poisson().get_config()


@pytest.mark.parametrize("module", ["keras.losses", "keras.src.losses.losses", None])
def test_keras_written_configs_still_load(module):
    config = {"module": module, "class_name": "BinaryCrossentropy", "config": {"from_logits": True}, "registered_name": None}
    assert pl.deserialize(config).get_config()["from_logits"] is True


def test_keras_serialized_loss_loads():
    keras = pytest.importorskip("keras")
    data = json.loads(json.dumps(keras.saving.serialize_keras_object(keras.losses.Poisson(reduction="sum"))))
    data["config"] = {k: v for k, v in data["config"].items() if k in pl.Poisson().get_config()}
    loss = pl.deserialize(data)
    assert type(loss) is pl.Poisson and loss.reduction == "sum"


# ------------------------------------------------------ user classes and register()


@pytest.fixture
def registry():
    """probloss.losses, with every registration a test makes undone afterwards."""
    from probloss import losses

    saved = dict(losses._CLASSES), dict(losses._FUNCTIONS), dict(losses._KEYS)
    yield losses
    for table, old in zip((losses._CLASSES, losses._FUNCTIONS, losses._KEYS), saved):
        table.clear()
        table.update(old)


def _user_poisson():
    class Poisson(pl.Loss):  # the built-in's name, a different loss
        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def call(self, y_true, y_pred):
            return self.scale * (y_pred - y_true * np.log(y_pred)).mean(axis=-1)

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    return Poisson


def test_unregistered_user_class_named_like_a_builtin_is_not_serialized_as_it(registry):
    Poisson = _user_poisson()
    with pytest.raises(pl.ArgumentError, match=r"not registered.*probloss\.losses\.register\(Poisson, package="):
        pl.serialize(Poisson(scale=3.0))


def test_unregistered_subclass_of_a_builtin_is_refused(registry):
    class MyBCE(pl.BinaryCrossentropy):
        pass

    with pytest.raises(pl.ArgumentError, match="register"):
        pl.serialize(MyBCE())


def test_registering_under_a_builtin_name_is_refused(registry):
    Poisson = _user_poisson()
    with pytest.raises(pl.ArgumentError, match="name of a probloss loss.*package="):
        registry.register(Poisson)
    for name in ("Poisson", "poisson", "bce", "KLD", "function"):
        with pytest.raises(pl.ArgumentError):
            registry.register(Poisson, name=name)
    assert registry._CLASSES["Poisson"] is pl.Poisson  # the built-in is untouched
    with pytest.raises(pl.ArgumentError):
        registry.unregister("Poisson")


@pytest.mark.parametrize("how", ["package", "name", "decorator"])
def test_user_class_round_trip(registry, how):
    Poisson = _user_poisson()
    if how == "package":
        assert registry.register(Poisson, package="my_package") is Poisson
        key = "my_package>Poisson"
    elif how == "name":
        registry.register(Poisson, name="MyPoisson")
        key = "MyPoisson"
    else:
        registry.register(package="deco")(Poisson)
        key = "deco>Poisson"
    loss = Poisson(scale=2.0, reduction="sum")
    data = json.loads(json.dumps(pl.serialize(loss)))
    assert data["registered_name"] == key and data["class_name"] == "Poisson" and data["module"] == Poisson.__module__
    clone = pl.deserialize(data)
    assert type(clone) is Poisson and clone.get_config() == loss.get_config()
    y_true, y_pred = np.array([[1.0, 2.0], [0.0, 3.0]]), np.array([[1.5, 2.0], [0.5, 1.0]])
    expected = 2.0 * np.sum(np.mean(y_pred - y_true * np.log(y_pred), axis=-1))
    np.testing.assert_allclose(float(clone(y_true, y_pred)), expected, rtol=1e-6)
    assert type(pl.get(key)) is Poisson
    # probloss's own Poisson still means probloss's
    assert type(pl.deserialize(pl.serialize(pl.Poisson()))) is pl.Poisson
    assert type(pl.get("Poisson")) is pl.Poisson
    # a config naming another module for the user's name is refused
    with pytest.raises(pl.ArgumentError, match="names module"):
        pl.deserialize({**data, "module": "os"})


def test_register_conflicts(registry):
    A, B = _user_poisson(), _user_poisson()
    registry.register(A, name="mine")
    registry.register(A, name="mine")  # idempotent
    with pytest.raises(pl.ArgumentError, match="registered already as 'mine'"):
        registry.register(A, name="other")

    class Other(pl.Loss):
        pass

    with pytest.raises(pl.ArgumentError, match="registered already, for"):
        registry.register(Other, name="mine")
    registry.register(B, name="mine")  # the same class defined again replaces it
    assert pl.deserialize({"class_name": "Poisson", "registered_name": "mine", "module": None}).__class__ is B
    registry.unregister("mine")
    with pytest.raises(pl.ArgumentError, match="not registered"):
        pl.serialize(B())
    with pytest.raises(pl.ArgumentError, match="not registered"):
        registry.unregister("mine")


@pytest.mark.parametrize(
    ("obj", "kwargs"),
    [(int, {}), (3, {}), (None.__class__, {}), (pl.Loss, {"name": ""}), (pl.Loss, {"package": 5}), (lambda a, b: a, {})],
    ids=["int_class", "number", "NoneType", "empty_name", "number_package", "lambda_without_name"],
)
def test_register_refuses_bad_arguments(registry, obj, kwargs):
    with pytest.raises(pl.ProblossTypeError):
        registry.register(obj, **kwargs)


def test_user_function_round_trip(registry):
    def squared_error(y_true, y_pred):
        return ((np.asarray(y_true) - np.asarray(y_pred)) ** 2).mean(axis=-1)

    with pytest.raises(pl.ArgumentError, match="register"):
        pl.serialize(squared_error)
    registry.register(squared_error, package="pkg")
    data = pl.serialize(squared_error)
    assert data["config"] == "pkg>squared_error"
    assert pl.deserialize(json.loads(json.dumps(data))) is squared_error
    assert pl.get("pkg>squared_error") is squared_error


def test_user_config_must_be_json(registry):
    class Holder(pl.Loss):
        def get_config(self):
            return {**super().get_config(), "array": np.zeros(2)}

    registry.register(Holder, package="pkg")
    with pytest.raises(pl.ProblossTypeError, match="JSON"):
        pl.serialize(Holder())
