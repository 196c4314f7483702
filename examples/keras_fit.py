"""Keras 3 compile/fit/save/load with probloss.keras, next to keras.losses.

Both runs train the same model from the same initial weights on the same full batches,
with ``fit(class_weight=...)``; only the loss differs:

* ``keras``:    ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``
* ``probloss``: ``probloss.keras.SparseCategoricalCrossentropy(from_logits=True)``

Then the probloss-trained model is saved and loaded back with ``keras.models.load_model``,
with no ``custom_objects``: ``import probloss.keras`` registers the classes.  The backend
is Keras's (``KERAS_BACKEND=jax`` or ``torch``; JAX if unset).

    KERAS_BACKEND=torch python examples/keras_fit.py --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

import probloss.keras as plk  # noqa: E402

# Keras 3.15 reads its variables with np.array(), which NumPy 2 warns about (Variable.__array__ takes no `copy`).
warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy keyword", DeprecationWarning)

CLASS_WEIGHT = {0: 1.0, 1: 4.0, 2: 8.0}  # the rare classes count more


def make_data(n=256, features=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=n), [0.8, 1.6]).astype("int32")  # mostly class 0
    return x, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps, one full batch each (default 10)")
    parser.add_argument("--json", action="store_true", help="print the loss histories as one JSON object")
    args = parser.parse_args(argv)

    x, y = make_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    initial = model.get_weights()

    histories = {}
    for name, loss in (
        ("keras", keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
        ("probloss", plk.SparseCategoricalCrossentropy(from_logits=True)),
    ):
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=loss)
        fit = model.fit(x, y, epochs=args.steps, batch_size=len(x), class_weight=CLASS_WEIGHT, verbose=0)
        histories[name] = [float(v) for v in fit.history["loss"]]

    # The model was last trained with probloss's loss: save it and load it back.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)  # no custom_objects
    before, after = model.evaluate(x, y, verbose=0), loaded.evaluate(x, y, verbose=0)

    if args.json:
        print(
            json.dumps(
                {"native": histories["keras"], "probloss": {"keras-class": histories["probloss"]}, "evaluate": [before, after]}
            )
        )
        return
    print(f"backend: {keras.backend.backend()}; class_weight={CLASS_WEIGHT}")
    print(f"{'step':>4}  {'keras':>10}  {'probloss':>10}")
    for i in range(args.steps):
        print(f"{i:>4}  {histories['keras'][i]:10.6f}  {histories['probloss'][i]:10.6f}")
    diff = max(abs(a - b) for a, b in zip(histories["keras"], histories["probloss"]))
    print(f"largest difference from keras.losses over {args.steps} steps: {diff:.2e}")
    print(
        f"loaded back as {type(loaded.loss).__module__.split('._')[0]}.{type(loaded.loss).__name__}: "
        f"evaluate {after:.6f} (saved model: {before:.6f})"
    )


if __name__ == "__main__":
    main()
