"""Parity with Keras 3 run live (JAX backend), reduced to what varies.

* every option x shape of every loss, with ``reduction=None`` (the per-sample values);
* one matrix of reductions x sample-weight forms (none, scalar, ``(N,)``, ``(N, 1)``,
  per element, zeros) x masks (``ignore_class`` unset / set) on two losses,
  SparseCategoricalCrossentropy and BinaryCrossentropy: the reduction is shared code,
  so two losses (one with a mask, one without) cover it;
* the function forms, and a per-class ``alpha``.

Inputs are seeded random float32 arrays; probabilities are drawn from the interior so the
1e-7 clip is not what decides the answer (the clip itself is pinned by the reference
values in test_reference_values.py).  The largest relative error per loss is collected
and printed at the end of the run (see conftest's terminal summary).
"""

from __future__ import annotations

import itertools
import zlib

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


def _seed(*parts):
    """A seed fixed by the case (``hash`` of a str changes between processes)."""
    return zlib.crc32(repr(parts).encode())


def _shape_id(shape):
    return "x".join(map(str, shape))


def _opts_id(opts):
    """``logits-smoothing0.1-gamma2.0-balanced``: the options that are set, in short."""
    parts = ["logits" if opts.get("from_logits") else "probs"]
    for key, short in (("label_smoothing", "smoothing"), ("gamma", "gamma"), ("alpha", "alpha"), ("ignore_class", "ignore"), ("axis", "axis")):
        if opts.get(key) not in (None, 0.0) or (key == "gamma" and key in opts):
            parts.append(f"{short}{opts[key]}")
    if opts.get("apply_class_balancing"):
        parts.append("balanced")
    return "-".join(parts)


def _option_cases():
    """Every option set x every shape of every loss (``axis=1`` needs rank 3)."""
    for loss, opts_list in OPTIONS.items():
        for opts, shape in itertools.product(opts_list, SHAPES):
            if opts.get("axis") == 1 and len(shape) == 2:
                continue
            yield pytest.param(loss, opts, shape, id=f"{loss}-{_opts_id(opts)}-{_shape_id(shape)}")


def _record(loss, got, expected):
    scale = np.maximum(np.abs(expected), 1e-3)
    PARITY_ERRORS.setdefault(loss, []).append(float(np.max(np.abs(got - expected) / scale, initial=0.0)))


@pytest.mark.parametrize(("loss", "opts", "shape"), list(_option_cases()))
def test_every_option_and_shape_matches_keras(loss, opts, shape):
    """Per-sample values (``reduction=None``): what the options change, before any reduction."""
    rng = np.random.default_rng(_seed(loss, opts, shape))
    y_true, y_pred = _inputs(loss, rng, shape, opts)
    expected = np.asarray(getattr(keras.losses, loss)(reduction=None, **opts)(y_true, y_pred))
    got = np.asarray(getattr(pl, loss)(reduction=None, **opts)(y_true, y_pred))
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    _record(loss, got, expected)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


# Reductions x sample-weight forms x masks, on two losses.  The weight forms per input
# rank: rank-2 inputs give (N,) per-sample losses, rank-3 inputs (N, T) ones.
WEIGHTS = {
    2: [None, "scalar", "per_sample_n", "per_sample_n1", "zeros"],
    3: [None, "scalar", "per_sample_n1", "per_element", "zeros"],
}
MATRIX_LOSSES = {
    "BinaryCrossentropy": [None],  # no mask
    "SparseCategoricalCrossentropy": [None, -1],  # ignore_class unset / set
}


def _weights(kind, rng, out_shape):
    n = out_shape[0]
    if kind is None:
        return None
    if kind == "scalar":
        return np.float32(1.7)
    if kind == "per_sample_n":
        return rng.uniform(0, 2, size=(n,)).astype(np.float32)
    if kind == "per_sample_n1":
        return rng.uniform(0, 2, size=(n, 1)).astype(np.float32)
    if kind == "per_element":
        return rng.uniform(0, 2, size=out_shape).astype(np.float32)
    if kind == "zeros":
        return np.zeros((n,) if len(out_shape) == 1 else (n, 1), np.float32)
    raise ValueError(kind)


def _matrix_cases():
    for loss, masks in MATRIX_LOSSES.items():
        for ignore_class, shape, reduction in itertools.product(masks, SHAPES, REDUCTIONS):
            for weight in WEIGHTS[len(shape)]:
                mask_id = f"ignore{ignore_class}" if ignore_class is not None else "nomask"
                yield pytest.param(
                    loss,
                    ignore_class,
                    shape,
                    reduction,
                    weight,
                    id=f"{loss}-{mask_id}-{_shape_id(shape)}-{reduction}-weight-{weight}",
                )


@pytest.mark.parametrize(("loss", "ignore_class", "shape", "reduction", "weight"), list(_matrix_cases()))
def test_reduction_weight_mask_matrix_matches_keras(loss, ignore_class, shape, reduction, weight):
    opts = {"from_logits": True}
    if ignore_class is not None:
        opts["ignore_class"] = ignore_class
    rng = np.random.default_rng(_seed(loss, ignore_class, shape, reduction, weight))
    y_true, y_pred = _inputs(loss, rng, shape, opts)
    sw = _weights(weight, rng, shape[:-1])
    expected = np.asarray(getattr(keras.losses, loss)(reduction=reduction, **opts)(y_true, y_pred, sample_weight=sw))
    got = np.asarray(getattr(pl, loss)(reduction=reduction, **opts)(y_true, y_pred, sample_weight=sw))
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    _record(loss, got, expected)
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
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_function_form_matches_keras(fn, loss, opts, shape):
    rng = np.random.default_rng(len(fn) * 7 + len(shape))
    y_true, y_pred = _inputs(loss, rng, shape, opts)
    expected = np.asarray(getattr(keras.losses, fn)(y_true, y_pred, **opts))
    got = np.asarray(getattr(pl, fn)(y_true, y_pred, **opts))
    _record(loss, got, expected)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


def test_sparse_alpha_list_categorical_focal_matches_keras():
    rng = np.random.default_rng(5)
    y_true, y_pred = _inputs("CategoricalCrossentropy", rng, (5, 4), {})
    alpha = [0.1, 0.2, 0.3, 0.4]
    expected = np.asarray(keras.losses.CategoricalFocalCrossentropy(alpha=alpha, reduction=None)(y_true, y_pred))
    got = np.asarray(pl.CategoricalFocalCrossentropy(alpha=alpha, reduction=None)(y_true, y_pred))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)
