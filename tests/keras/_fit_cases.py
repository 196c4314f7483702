"""Training runs with probloss.keras and with keras.losses, on whatever backend Keras runs.

Imported by the tests for the in-process backend (JAX in the test run), and run as a
script for another one: ``KERAS_BACKEND=torch python tests/keras/_fit_cases.py TMPDIR``
prints ``RESULT {json}`` with every case's two histories and the save/load checks.

Each case builds its model once, keeps the initial weights, and trains twice from them
(same data order, same optimizer): once with the keras.losses class, once with the
probloss.keras one.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

import probloss.keras as plk  # noqa: E402

EPOCHS = 3
BATCH = 16


def _histories(model, make_loss, fit_kwargs, x, y):
    """Train from the same initial weights with each loss; the two ``history.history`` dicts."""
    initial = _weights(model)
    out = {}
    calls = []
    for which in ("keras", "probloss"):
        loss = make_loss(which)
        if which == "probloss":  # count the calls, so that a run that bypassed probloss shows
            inner = loss.probloss_loss
            per_sample = inner.per_sample
            inner.per_sample = lambda *args, _f=per_sample: calls.append(1) or _f(*args)
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=loss)
        hist = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0, **fit_kwargs)
        out[which] = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    model.set_weights(initial)
    out["probloss_calls"] = len(calls)
    return out


def _weights(model):
    """``model.get_weights()``, read without ``Variable.numpy()`` (which warns under NumPy 2 in Keras 3.15)."""
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights]


def _mlp(n_in, n_out, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(n_out)])


def case_class_weight():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.choice(3, size=64, p=[0.7, 0.2, 0.1]).astype("int32")
    model = _mlp(6, 3, seed=1)

    def make_loss(which):
        mod = keras.losses if which == "keras" else plk
        return mod.SparseCategoricalCrossentropy(from_logits=True)

    fit_kwargs = {"class_weight": {0: 1.0, 1: 5.0, 2: 10.0}, "validation_data": (x[:16], y[:16])}
    return _histories(model, make_loss, fit_kwargs, x, y)


def case_sample_weight():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, size=64)]
    w = rng.uniform(0.0, 4.0, size=64).astype("float32")
    model = _mlp(6, 4, seed=2)

    def make_loss(which):
        mod = keras.losses if which == "keras" else plk
        return mod.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)

    return _histories(model, make_loss, {"sample_weight": w}, x, y)


def case_sample_weight_binary():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (rng.random((64, 2)) < 0.3).astype("float32")
    w = rng.uniform(0.0, 4.0, size=64).astype("float32")
    model = _mlp(6, 2, seed=3)

    def make_loss(which):
        mod = keras.losses if which == "keras" else plk
        return mod.BinaryFocalCrossentropy(from_logits=True, apply_class_balancing=True, gamma=1.5)

    return _histories(model, make_loss, {"sample_weight": w}, x, y)


def _sequences(seed, n=32, t=7, vocab=20, k=4):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, t + 1, size=n)
    x = rng.integers(1, vocab, size=(n, t)).astype("int32")
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0  # right padding: token 0
    y = rng.integers(0, k, size=(n, t)).astype("int32")
    return x, y


def _sequence_model(seed, vocab=20, k=4):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((None,), dtype="int32"), keras.layers.Embedding(vocab, 8, mask_zero=True), keras.layers.Dense(k)]
    )


def case_masked_sequence():
    x, y = _sequences(4)
    model = _sequence_model(4)

    def make_loss(which):
        mod = keras.losses if which == "keras" else plk
        return mod.SparseCategoricalCrossentropy(from_logits=True)

    return _histories(model, make_loss, {}, x, y)


def case_masked_sequence_ignore_class():
    x, y = _sequences(5)
    y[:, 1] = -1  # an ignored label in every row, on top of the padding mask
    model = _sequence_model(5)

    def make_loss(which):
        mod = keras.losses if which == "keras" else plk
        return mod.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)

    return _histories(model, make_loss, {}, x, y)


CASES = {
    "class_weight": case_class_weight,
    "sample_weight": case_sample_weight,
    "sample_weight_binary": case_sample_weight_binary,
    "masked_sequence": case_masked_sequence,
    "masked_sequence_ignore_class": case_masked_sequence_ignore_class,
}


def save_load(tmpdir):
    """Compile with a probloss.keras loss, train, save, load with no custom_objects."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 3, size=32).astype("int32")
    y[::5] = -1
    model = _mlp(6, 3, seed=6)
    loss = plk.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, name="scce")
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)
    path = os.path.join(tmpdir, f"model-{keras.backend.backend()}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    return {
        "path": path,
        "loss_class": f"{type(loaded.loss).__module__}.{type(loaded.loss).__qualname__}",
        "config": loaded.loss.get_config(),
        "config_saved": loss.get_config(),
        "evaluate": float(loaded.evaluate(x, y, verbose=0)),
        "evaluate_saved": float(model.evaluate(x, y, verbose=0)),
        "predict_diff": float(np.max(np.abs(loaded.predict(x, verbose=0) - model.predict(x, verbose=0)))),
        "weights_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(_weights(loaded), _weights(model), strict=True)),
    }


def max_diff(histories) -> float:
    """Largest absolute difference between the two histories of a case."""
    a, b = histories["keras"], histories["probloss"]
    assert a.keys() == b.keys(), (a.keys(), b.keys())
    return max(abs(u - v) for key in a for u, v in zip(a[key], b[key], strict=True))


def main(argv):
    result = {"backend": keras.backend.backend(), "cases": {name: fn() for name, fn in CASES.items()}}
    if len(argv) > 1:
        result["save_load"] = save_load(argv[1])
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
