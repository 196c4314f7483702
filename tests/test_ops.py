"""The numerically stable primitives of ``probloss._ops`` against SciPy / NumPy in float64.

Each primitive runs on every eager backend (NumPy, array-api-strict, torch, JAX) through
the array-api-compat namespace probloss itself uses, on ordinary values, on huge logits
(where the naive formula overflows) and on rows holding ``+inf`` / ``-inf``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from probloss import _ops
from probloss._compat import namespace

RNG = np.random.default_rng(11)
ORDINARY = RNG.normal(scale=3, size=(4, 5))
HUGE = np.array([[1e4, -1e4, 0.0, 5e3], [-3e4, -3e4, -3e4 + 1, -3e4], [700.0, 710.0, 720.0, -720.0]])
# a row with -inf entries, a row of -inf only, a row with +inf, a row of +inf and -inf
INF = np.array(
    [[-np.inf, 0.0, 1.0, -np.inf], [-np.inf, -np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0, 2.0], [np.inf, -np.inf, 0.0, 0.0]]
)
INPUTS = {"ordinary": ORDINARY, "huge": HUGE, "inf": INF}


def _run(backend, fn, *arrays, **kwargs):
    xs = [backend.asarray(a) for a in arrays]
    xp = namespace(*xs)
    with np.errstate(all="ignore"):  # log(0) = -inf is part of some expected answers
        return backend.to_numpy(fn(*xs, xp, **kwargs))


def _close(got, expected, *inputs, equal_nan=False):
    """float64 results to 1e-12; float32 ones (JAX's default) to float32 rounding of the inputs."""
    if got.dtype == np.float64:
        rtol, atol = 1e-12, 1e-12
    else:  # x - logsumexp(x) cancels: the error is about eps32 * |x|
        finite = [np.abs(a[np.isfinite(a)]).max(initial=1.0) for a in inputs]
        rtol, atol = 2e-6, 2e-7 * max(finite, default=1.0)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, equal_nan=equal_nan)


@pytest.mark.parametrize("data", list(INPUTS), ids=list(INPUTS))
@pytest.mark.parametrize("keepdims", [False, True], ids=["dropdims", "keepdims"])
def test_logsumexp_matches_scipy(eager_backend, data, keepdims):
    x = INPUTS[data]
    got = _run(eager_backend, _ops.logsumexp, x, axis=-1, keepdims=keepdims)
    _close(got, special.logsumexp(x, axis=-1, keepdims=keepdims), x)


def test_logsumexp_of_a_row_of_minus_inf_is_minus_inf_not_nan(eager_backend):
    got = _run(eager_backend, _ops.logsumexp, np.full((2, 3), -np.inf), axis=-1)
    assert np.all(got == -np.inf)


def test_logsumexp_along_axis0():
    x = ORDINARY
    _close(_ops.logsumexp(x, namespace(x), axis=0), special.logsumexp(x, axis=0), x)


@pytest.mark.parametrize("data", ["ordinary", "huge"])
def test_log_softmax_and_softmax_match_scipy(eager_backend, data):
    x = INPUTS[data]
    _close(_run(eager_backend, _ops.log_softmax, x, axis=-1), special.log_softmax(x, axis=-1), x)
    _close(_run(eager_backend, _ops.softmax, x, axis=-1), special.softmax(x, axis=-1), x)
    _close(_run(eager_backend, _ops.softmax, x, axis=0), special.softmax(x, axis=0), x)


def test_log_softmax_and_softmax_with_minus_inf_entries(eager_backend):
    x = INF[:1]  # [-inf, 0, 1, -inf]: probability 0 where the logit is -inf
    _close(_run(eager_backend, _ops.log_softmax, x), special.log_softmax(x, axis=-1), x)
    _close(_run(eager_backend, _ops.softmax, x), special.softmax(x, axis=-1), x)


def test_log_softmax_and_softmax_of_plus_inf_rows_follow_scipy(eager_backend):
    """A +inf logit (or a row of -inf) has no finite softmax: NaN where SciPy gives NaN, -inf elsewhere."""
    x = np.concatenate([INF[2:], np.full((1, 4), -np.inf)])
    with np.errstate(invalid="ignore"):
        log_q, q = special.log_softmax(x, axis=-1), special.softmax(x, axis=-1)
    _close(_run(eager_backend, _ops.log_softmax, x), log_q, x, equal_nan=True)
    _close(_run(eager_backend, _ops.softmax, x), q, x, equal_nan=True)


X1 = np.concatenate([ORDINARY.ravel(), HUGE.ravel(), [-800.0, -40.0, 0.0, 40.0, 800.0, np.inf, -np.inf]])


def test_softplus_matches_logaddexp(eager_backend):
    _close(_run(eager_backend, _ops.softplus, X1), np.logaddexp(0.0, X1), X1)


def test_sigmoid_and_log_sigmoid_match_scipy(eager_backend):
    _close(_run(eager_backend, _ops.sigmoid, X1), special.expit(X1), np.ones(1))
    _close(_run(eager_backend, _ops.log_sigmoid, X1), special.log_expit(X1), X1)


def test_sigmoid_of_huge_float32_logits_is_finite_and_exact(eager_backend):
    x = np.array([-1e4, -100.0, -88.0, 0.0, 88.0, 100.0, 1e4], dtype=np.float32)
    got = _run(eager_backend, _ops.sigmoid, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, special.expit(x.astype(np.float64)), rtol=1e-6, atol=1e-37)  # float32's denormals may flush to 0


XLOGY_X = np.array([0.0, 0.0, 0.0, 2.0, 0.5, 3.0, 1.0])
XLOGY_Y = np.array([0.0, 1.0, np.inf, 3.0, 0.25, 0.0, np.inf])


def test_xlogy_matches_scipy_with_zero_log_zero_zero(eager_backend):
    _close(_run(eager_backend, _ops.xlogy, XLOGY_X, XLOGY_Y), special.xlogy(XLOGY_X, XLOGY_Y), np.ones(1))


@pytest.mark.parametrize("axis", [-1, 0, 1], ids=["axis-1", "axis0", "axis1"])
def test_one_hot_matches_eye_and_zeroes_out_of_range(eager_backend, axis):
    labels = np.array([[0, 2, 3], [1, 4, -1]])  # 4 and -1 are out of range for 4 classes
    xs = eager_backend.asarray(labels, dtype="int64" if eager_backend.name == "torch" else "int32")
    xp = namespace(xs)
    got = eager_backend.to_numpy(_ops.one_hot(xs, 4, xp, xp.float32, axis=axis))
    expected = np.zeros(labels.shape + (4,))
    for idx in np.ndindex(labels.shape):
        if 0 <= labels[idx] < 4:
            expected[idx + (labels[idx],)] = 1.0
    expected = np.moveaxis(expected, -1, axis)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("axis", [-1, 0, 1], ids=["axis-1", "axis0", "axis1"])
def test_take_along_axis_matches_numpy(eager_backend, axis):
    x = RNG.normal(size=(3, 4, 5)).astype(np.float32)  # exact in every backend's default dtype
    shape = list(x.shape)
    size = shape.pop(axis % 3)
    idx = RNG.integers(0, size, size=shape)
    xs = eager_backend.asarray(x)
    ids = eager_backend.asarray(idx, dtype="int64" if eager_backend.name == "torch" else "int32")
    got = eager_backend.to_numpy(_ops.take_along_axis(xs, ids, namespace(xs), axis=axis))
    expected = np.squeeze(np.take_along_axis(x, np.expand_dims(idx, axis), axis=axis), axis=axis)
    np.testing.assert_array_equal(got, expected)


def test_take_along_axis_one_hot_fallback_for_a_namespace_without_the_gather():
    """The fallback (a one-hot dot product) gives the gather's numbers."""

    class NoGather:
        def __init__(self, xp):
            self._xp = xp

        def __getattr__(self, name):
            if name == "take_along_axis":
                raise AttributeError(name)
            return getattr(self._xp, name)

    x = RNG.normal(size=(4, 6))
    idx = RNG.integers(0, 6, size=4)
    xp = NoGather(namespace(x))
    got = _ops.take_along_axis(x, idx, xp, axis=-1)
    np.testing.assert_array_equal(got, x[np.arange(4), idx])


@pytest.mark.parametrize(("axis", "ndim", "expected"), [(-1, 3, 2), (-3, 3, 0), (0, 2, 0), (1, 2, 1)])
def test_normalize_axis(axis, ndim, expected):
    assert _ops.normalize_axis(axis, ndim) == expected


def test_clip_rounds_bounds_to_the_dtype():
    x = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    got = _ops.clip(x, namespace(x), 1e-7, 1 - 1e-7)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([1e-7, 0.5, 1 - 1e-7], dtype=np.float32))
