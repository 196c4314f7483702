"""Parity with Keras 3 run live (JAX backend): every loss, option, reduction and weight form.

Inputs are seeded random float32 arrays; probabilities are drawn from the interior so the
1e-7 clip is not what decides the answer (the clip itself is pinned by the reference
values in test_reference_values.py).  The largest relative error per loss is collected
and printed at the end of the run (see conftest's terminal summary).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import probloss as pl

keras = pytest.importorskip("keras")

PARITY_ERRORS: dict[str, list[float]] = {}

REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None]


def _probs(rng, shape, axis=-1):
    x = rng.normal(size=shape)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def _inputs(loss, rng, shape, opts):
    axis = opts.get("axis", -1)
    k = shape[axis]
    logits = opts.get("from_logits", False)
    if loss in ("BinaryCrossentropy", "BinaryFocalCrossentropy"):
        y_true = (rng.random(shape) < 0.5).astype(np.float32)
        y_pred = rng.normal(scale=3, size=shape) if logits else rng.uniform(0.02, 0.98, size=shape)
        return y_true, y_pred.astype(np.float32)
    if loss in ("CategoricalCrossentropy", "CategoricalFocalCrossentropy"):
        labels = rng.integers(0, k, size=tuple(s for i, s in enumerate(shape) if i != axis % len(shape)))
        y_true = np.moveaxis(np.eye(k, dtype=np.float32)[labels], -1, axis)
        y_pred = rng.normal(scale=2, size=shape).astype(np.float32) if logits else _probs(rng, shape, axis)
        return y_true, y_pred
    if loss == "SparseCategoricalCrossentropy":
        y_true = rng.integers(0, k, size=shape[:-1]).astype(np.int32)
        if opts.get("ignore_class") is not None:
            y_true = np.where(rng.random(y_true.shape) < 0.3, opts["ignore_class"], y_true).astype(np.int32)
        y_pred = rng.normal(scale=2, size=shape).astype(np.float32) if logits else _probs(rng, shape)
        return y_true, y_pred
    if loss == "Poisson":
        return rng.poisson(3.0, size=shape).astype(np.float32), rng.uniform(0.1, 6.0, size=shape).astype(np.float32)
    if loss == "KLDivergence":
        return _probs(rng, shape), _probs(rng, shape)
    raise ValueError(loss)


def _weights(kind, rng, shape, out_shape):
    n = shape[0]
    if kind is None:
        return None
    if kind == "scalar":
        return np.float32(1.7)
    if kind == "per_sample":
        return rng.uniform(0, 2, size=(n,) if len(shape) == 2 else (n, 1)).astype(np.float32)
    if kind == "per_timestep":  # one weight per element of the per-sample losses
        return rng.uniform(0, 2, size=out_shape).astype(np.float32)
    if kind == "zeros":
        return np.zeros((n,) if len(shape) == 2 else (n, 1), np.float32)
    raise ValueError(kind)


OPTIONS = {
    "BinaryCrossentropy": [
        dict(from_logits=f, label_smoothing=ls) for f, ls in itertools.product([False, True], [0.0, 0.15])
    ]
    + [dict(axis=1)],
    "BinaryFocalCrossentropy": [
        dict(from_logits=f, gamma=g, apply_class_balancing=b, alpha=0.3, label_smoothing=ls)
        for f, g, b, ls in itertools.product([False, True], [0.0, 2.0, 3.5], [False, True], [0.0, 0.1])
    ],
    "CategoricalCrossentropy": [
        dict(from_logits=f, label_smoothing=ls) for f, ls in itertools.product([False, True], [0.0, 0.2])
    ]
    + [dict(axis=1, from_logits=True), dict(axis=1)],
    "CategoricalFocalCrossentropy": [
        dict(from_logits=f, gamma=g, alpha=a, label_smoothing=ls)
        for f, g, a, ls in itertools.product([False, True], [0.0, 2.0], [0.25, 1.0], [0.0, 0.1])
    ],
    "SparseCategoricalCrossentropy": [
        dict(from_logits=f, ignore_class=ic) for f, ic in itertools.product([False, True], [None, -1, 2])
    ],
    "Poisson": [{}],
    "KLDivergence": [{}],
}

SHAPES = [(6, 5), (4, 3, 7)]
WEIGHTS = [None, "scalar", "per_sample", "per_timestep", "zeros"]


def _cases():
    seed = 0
    for loss, opts_list in OPTIONS.items():
        for opts, shape, reduction, weight in itertools.product(opts_list, SHAPES, REDUCTIONS, WEIGHTS):
            if weight == "per_timestep" and len(shape) == 2:
                continue
            if opts.get("axis") == 1 and len(shape) == 2:
                continue
            seed += 1
            yield pytest.param(loss, opts, shape, reduction, weight, seed, id=f"{loss}-{seed}")


@pytest.mark.parametrize(("loss", "opts", "shape", "reduction", "weight", "seed"), list(_cases()))
def test_matches_keras(loss, opts, shape, reduction, weight, seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = _inputs(loss, rng, shape, opts)
    axis = opts.get("axis", -1) % len(shape)
    sw = _weights(weight, rng, shape, shape[:axis] + shape[axis + 1 :])
    expected = np.asarray(getattr(keras.losses, loss)(reduction=reduction, **opts)(y_true, y_pred, sample_weight=sw))
    got = np.asarray(getattr(pl, loss)(reduction=reduction, **opts)(y_true, y_pred, sample_weight=sw))
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    scale = np.maximum(np.abs(expected), 1e-3)
    PARITY_ERRORS.setdefault(loss, []).append(float(np.max(np.abs(got - expected) / scale, initial=0.0)))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


FUNCTIONS = [
    ("binary_crossentropy", "BinaryCrossentropy", dict(from_logits=True, label_smoothing=0.1)),
    ("binary_focal_crossentropy", "BinaryFocalCrossentropy", dict(apply_class_balancing=True, gamma=1.5)),
    ("categorical_crossentropy", "CategoricalCrossentropy", dict(label_smoothing=0.1)),
    ("categorical_focal_crossentropy", "CategoricalFocalCrossentropy", dict(from_logits=True)),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", dict(from_logits=True, ignore_class=-1)),
    ("poisson", "Poisson", {}),
    ("kl_divergence", "KLDivergence", {}),
]


@pytest.mark.parametrize(("fn", "loss", "opts"), FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
@pytest.mark.parametrize("shape", SHAPES)
def test_function_form_matches_keras(fn, loss, opts, shape):
    rng = np.random.default_rng(len(fn) * 7 + len(shape))
    y_true, y_pred = _inputs(loss, rng, shape, opts)
    expected = np.asarray(getattr(keras.losses, fn)(y_true, y_pred, **opts))
    got = np.asarray(getattr(pl, fn)(y_true, y_pred, **opts))
    PARITY_ERRORS.setdefault(loss, []).append(float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-3))))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


def test_sparse_alpha_list_categorical_focal_matches_keras():
    rng = np.random.default_rng(5)
    y_true, y_pred = _inputs("CategoricalCrossentropy", rng, (5, 4), {})
    alpha = [0.1, 0.2, 0.3, 0.4]
    expected = np.asarray(keras.losses.CategoricalFocalCrossentropy(alpha=alpha, reduction=None)(y_true, y_pred))
    got = np.asarray(pl.CategoricalFocalCrossentropy(alpha=alpha, reduction=None)(y_true, y_pred))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)
