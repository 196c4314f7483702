"""``probloss.functional.crossentropy``: the generic formulas, called directly.

``binary_generic``, ``categorical_generic``, ``sparse_generic`` and
``sparse_mean_generic`` are what backends without a native kernel run, and what the
native kernels are tested against; here they are checked against the float64 formulas
of tests/reference.py on NumPy, array-api-strict and torch for every option and class axis, and on JAX for
one case each.
(The public functions are covered through the shared table, tests/cases.py.)
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import probloss as pl
from probloss._compat import namespace
from probloss.functional import crossentropy as ce
from probloss.functional._common import Options
from tests import reference as ref
from tests.conftest import _make

RNG = np.random.default_rng(21)
SHAPES = {"NxK": ((6, 5), (0,)), "NxKxT": ((3, 5, 4), (1,))}  # shape, class axes tested besides the last


@pytest.fixture(params=["numpy", "array_api_strict", "torch"])
def eager_backend(request):
    """The float64-capable eager backends; JAX (float32, slow eager dispatch) runs test_generic_formulas_on_jax."""
    return _make(request.param)


def _dtype_tol(out):
    return (1e-12, 1e-14) if out.dtype == np.float64 else (2e-5, 2e-6)


def _axes():
    for sid, (shape, extra) in SHAPES.items():
        for axis in (len(shape) - 1, *extra):
            yield sid, shape, axis


def _params(flags):
    for (sid, shape, axis), opts in itertools.product(_axes(), flags):
        opt_id = "logits" if opts["from_logits"] else "probs"
        if opts.get("label_smoothing"):
            opt_id += f"-smoothing{opts['label_smoothing']}"
        yield pytest.param(shape, axis, opts, id=f"{sid}-axis{axis}-{opt_id}")


def _probs(shape, axis):
    x = RNG.normal(size=shape)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32).astype(np.float64)


def _pred(shape, axis, from_logits):
    return RNG.normal(scale=2, size=shape).astype(np.float32).astype(np.float64) if from_logits else _probs(shape, axis)


def _labels(shape, axis):
    return RNG.integers(0, shape[axis], size=tuple(s for i, s in enumerate(shape) if i != axis))


def _call(backend, fn, t, p, axis, o, label_dtype=None):
    tt = backend.asarray(t, dtype=label_dtype)
    pp = backend.asarray(p)
    return backend.to_numpy(fn(namespace(tt, pp), tt, pp, axis, o))


def _int(backend):
    return "int64" if backend.name == "torch" else "int32"


BINARY = [dict(from_logits=f, label_smoothing=ls) for f, ls in itertools.product([False, True], [0.0, 0.2])]


@pytest.mark.parametrize(("shape", "axis", "opts"), list(_params(BINARY)))
def test_binary_generic(eager_backend, shape, axis, opts):
    t = (RNG.random(shape) < 0.5).astype(np.float64)
    p = RNG.normal(scale=3, size=shape) if opts["from_logits"] else RNG.uniform(0.01, 0.99, size=shape)
    p = p.astype(np.float32).astype(np.float64)
    got = _call(eager_backend, ce.binary_generic, t, p, axis, Options(**opts))
    rtol, atol = _dtype_tol(got)
    np.testing.assert_allclose(got, ref.bce(t, p, axis=axis, **opts), rtol=rtol, atol=atol)


CATEGORICAL = [dict(from_logits=f, label_smoothing=ls) for f, ls in itertools.product([False, True], [0.0, 0.1])]


@pytest.mark.parametrize(("shape", "axis", "opts"), list(_params(CATEGORICAL)))
def test_categorical_generic(eager_backend, shape, axis, opts):
    t = ref.one_hot(_labels(shape, axis), shape[axis], axis=axis)
    p = _pred(shape, axis, opts["from_logits"])
    got = _call(eager_backend, ce.categorical_generic, t, p, axis, Options(**opts))
    rtol, atol = _dtype_tol(got)
    np.testing.assert_allclose(got, ref.cce(t, p, axis=axis, **opts), rtol=rtol, atol=atol)


def test_categorical_generic_with_soft_labels():
    t = RNG.dirichlet(np.ones(5), size=6)
    p = RNG.normal(size=(6, 5))
    got = ce.categorical_generic(namespace(p), t, p, 1, Options(from_logits=True, label_smoothing=0.3))
    np.testing.assert_allclose(got, ref.cce(t, p, from_logits=True, label_smoothing=0.3), rtol=1e-12)


SPARSE = [dict(from_logits=False), dict(from_logits=True)]


@pytest.mark.parametrize(("shape", "axis", "opts"), list(_params(SPARSE)))
def test_sparse_generic(eager_backend, shape, axis, opts):
    y = _labels(shape, axis)
    p = _pred(shape, axis, opts["from_logits"])
    got = _call(eager_backend, ce.sparse_generic, y, p, axis, Options(**opts), _int(eager_backend))
    rtol, atol = _dtype_tol(got)
    np.testing.assert_allclose(got, ref.scce(y, p, axis=axis, **opts)[0], rtol=rtol, atol=atol)


@pytest.mark.parametrize(("shape", "axis", "opts"), list(_params(SPARSE)))
def test_sparse_mean_generic_is_the_mean(eager_backend, shape, axis, opts):
    y = _labels(shape, axis)
    p = _pred(shape, axis, opts["from_logits"])
    got = _call(eager_backend, ce.sparse_mean_generic, y, p, axis, Options(**opts), _int(eager_backend))
    assert got.shape == ()
    rtol, atol = _dtype_tol(got)
    np.testing.assert_allclose(got, ref.scce(y, p, axis=axis, **opts)[0].mean(), rtol=rtol, atol=atol)


def test_sparse_generic_probabilities_at_the_clip():
    """A zero probability costs -log(eps); a certain one -log(float32(1 - eps)) in float32."""
    p = np.array([[0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    got = ce.sparse_generic(namespace(p), np.array([0, 1]), p, 1, Options())
    np.testing.assert_allclose(got, [-np.log(1e-7), np.log(2.0)], rtol=1e-6)


def test_sparse_generic_refuses_labels_out_of_range():
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(pl.LabelValueError, match="3"):
        ce.sparse_generic(namespace(p), np.array([0, 3]), p, 1, Options())


def test_binary_generic_refuses_targets_outside_0_1():
    p = np.full((1, 2), 0.5)
    with pytest.raises(pl.ProblossError, match="y_true"):
        ce.binary_generic(namespace(p), np.array([[0.0, 1.5]]), p, 1, Options())


def test_smoothing_helpers():
    t = np.array([[0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(ce.smooth_binary(t, 0.2), [[0.1, 0.9, 0.1, 0.1]], rtol=1e-15)
    np.testing.assert_allclose(ce.smooth_categorical(t, 0.2, 4), [[0.05, 0.85, 0.05, 0.05]], rtol=1e-15)
    assert ce.smooth_binary(t, 0.0) is t and ce.smooth_categorical(t, 0.0, 4) is t


def test_generic_formulas_on_jax():
    jax = _make("jax")
    shape, axis = (6, 5), 1
    t = (RNG.random(shape) < 0.5).astype(np.float64)
    x = _pred(shape, axis, True)
    y = _labels(shape, axis)
    o = Options(from_logits=True, label_smoothing=0.1)
    sparse = Options(from_logits=True)
    checks = [
        (_call(jax, ce.binary_generic, t, x, axis, o), ref.bce(t, x, from_logits=True, label_smoothing=0.1)),
        (_call(jax, ce.categorical_generic, ref.one_hot(y, 5), x, axis, o), ref.cce(ref.one_hot(y, 5), x, from_logits=True, label_smoothing=0.1)),
        (_call(jax, ce.sparse_generic, y, x, axis, sparse, "int32"), ref.scce(y, x, from_logits=True)[0]),
        (_call(jax, ce.sparse_mean_generic, y, x, axis, sparse, "int32"), ref.scce(y, x, from_logits=True)[0].mean()),
    ]
    for got, expected in checks:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)
