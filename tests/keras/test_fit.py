"""``fit`` and ``evaluate`` with probloss.keras losses give keras.losses' numbers.

Class weights, sample weights and masks (``Embedding(mask_zero=True)``, ``ignore_class``)
are applied by Keras's own ``Loss.__call__``; each case trains the same model from the
same initial weights with both losses (see ``_fit_cases.py``), in this process (the
backend of the test run, JAX) and with the torch backend in a subprocess, since the
backend is fixed when Keras is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import probloss as pl

keras = pytest.importorskip("keras")
plk = pytest.importorskip("probloss.keras")
from . import _fit_cases  # noqa: E402

TOL = 1e-6
# Keras 3.15's Variable.__array__ takes no `copy`, so model.save (Variable.numpy()) warns under NumPy 2.
KERAS_SAVE_WARNING = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
ROOT = Path(__file__).resolve().parents[2]


def _check_case(name, histories):
    assert histories["probloss_calls"] > 0, f"{name}: the probloss.keras loss was never called"
    assert histories["keras"].keys() == histories["probloss"].keys()
    diff = _fit_cases.max_diff(histories)
    assert diff <= TOL, (
        f"{name}: histories differ by {diff:.3g}\nkeras:    {histories['keras']}\nprobloss: {histories['probloss']}"
    )


@pytest.mark.parametrize("name", sorted(_fit_cases.CASES))
def test_fit_history_matches_keras_in_process(name):
    _check_case(name, _fit_cases.CASES[name]())


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("keras_torch")
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT / "src")}
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(_fit_cases.__file__)), str(tmp)],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the torch-backend training script did not finish within 240 s")
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result printed\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["backend"] == "torch"
    return result


@pytest.mark.parametrize("name", sorted(_fit_cases.CASES))
def test_fit_history_matches_keras_on_torch(torch_run, name):
    _check_case(name, torch_run["cases"][name])


def _check_save_load(result):
    assert result["loss_class"] == "probloss.keras._losses.SparseCategoricalCrossentropy"
    assert result["config"] == result["config_saved"]
    assert result["evaluate"] == pytest.approx(result["evaluate_saved"], rel=1e-6)
    assert result["predict_diff"] == 0.0
    assert result["weights_diff"] == 0.0


@pytest.mark.filterwarnings(KERAS_SAVE_WARNING)
def test_save_and_load_model_without_custom_objects(tmp_path):
    _check_save_load(_fit_cases.save_load(str(tmp_path)))


def test_save_and_load_model_without_custom_objects_on_torch(torch_run):
    _check_save_load(torch_run["save_load"])


# -- the weighted evaluation that plain probloss classes got wrong through compile ------------------

X8 = np.array(
    [
        [2.0, 0.5, -1.0],
        [0.1, 1.5, 0.3],
        [-0.5, 0.2, 2.2],
        [1.0, 1.0, 1.0],
        [0.3, -1.2, 0.8],
        [2.5, -0.3, 0.1],
        [-1.0, 0.4, 0.6],
        [0.2, 0.9, -0.4],
    ],
    dtype="float32",
)
Y8 = np.array([0, 2, 2, 1, 0, 1, 2, 1], dtype="int32")
W8 = np.array([1.0, 5.0, 10.0, 1.0, 1.0, 5.0, 10.0, 1.0], dtype="float32")


def _softmax_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Activation("softmax")])


def _evaluate(loss):
    model = _softmax_model()
    model.compile(loss=loss)
    return model.evaluate(X8, Y8, sample_weight=W8, batch_size=8, verbose=0)


def test_weighted_evaluate_through_compile_matches_keras():
    expected = float(keras.losses.SparseCategoricalCrossentropy()(Y8, keras.ops.softmax(X8), sample_weight=W8))
    unweighted = float(keras.losses.SparseCategoricalCrossentropy()(Y8, keras.ops.softmax(X8)))
    assert abs(expected - unweighted) > 0.1  # the weights matter here
    assert _evaluate(keras.losses.SparseCategoricalCrossentropy()) == pytest.approx(expected, rel=1e-6)
    assert _evaluate(plk.SparseCategoricalCrossentropy()) == pytest.approx(expected, rel=1e-6)
    assert _evaluate(plk.from_probloss(pl.SparseCategoricalCrossentropy())) == pytest.approx(expected, rel=1e-6)


def test_plain_probloss_class_in_compile_is_refused_or_right():
    expected = float(keras.losses.SparseCategoricalCrossentropy()(Y8, keras.ops.softmax(X8), sample_weight=W8))
    try:
        value = _evaluate(pl.SparseCategoricalCrossentropy())
    except pl.ProblossError as exc:
        assert "probloss.keras" in str(exc)
    else:
        assert value == pytest.approx(expected, rel=1e-6)
