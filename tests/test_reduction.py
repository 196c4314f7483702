"""``probloss._reduction.reduce_values`` against Keras 3's reduction written here in float64.

``keras_reduce`` below restates keras_semantics.md §2.1 (``Loss.__call__`` and
``reduce_weighted_values``) step by step in NumPy; it shares no code with probloss nor
with tests/reference.py.  The matrix runs every reduction x mask x weight form on
per-sample values of shape ``(N,)`` and ``(N, T)``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import probloss as pl
from probloss._compat import namespace
from probloss._reduction import REDUCTIONS, align_ranks, reduce_values, validate_reduction


def _squeeze_or_expand(a, b):
    """Keras's ``squeeze_or_expand_to_same_rank`` (§1.1)."""
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        return (a, b[..., None]) if b.ndim == 1 else (a[..., 0], b)
    if b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        return (a[..., None], b) if a.ndim == 1 else (a, b[..., 0])
    return a, b


def keras_reduce(values, reduction, sample_weight=None, mask=None):
    v = np.asarray(values, dtype=np.float64)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if mask is not None:  # step 1: the mask becomes weights
        m = np.asarray(mask, dtype=bool)
        if reduction in ("sum_over_batch_size", "mean"):
            valid = m.sum()
            f = np.where(m, m.size / valid if valid else 0.0, 0.0)
        else:
            f = m.astype(np.float64)
        if w is None:
            w = f
        else:
            f, w = _squeeze_or_expand(f, w)
            w = w * f
    if w is not None:  # step 2: apply the weights
        v, w = _squeeze_or_expand(v, w)
        v = v * w
    if reduction in (None, "none") or v.shape in ((), (0,)):  # step 3
        return v
    total = v.sum()  # step 4
    if reduction == "sum":
        return total
    divisor = w.sum() if (reduction == "mean_with_sample_weight" and w is not None) else v.size
    return total / divisor if divisor else 0.0


RNG = np.random.default_rng(5)
SHAPES = {"N": (6,), "NxT": (4, 3)}


def _weight(kind, shape):
    n = shape[0]
    return {
        None: None,
        "scalar": np.float64(1.7),
        "per-sample-N": RNG.uniform(0, 2, size=(n,)) if len(shape) == 1 else None,
        "per-sample-Nx1": RNG.uniform(0, 2, size=(n, 1)),
        "per-element": RNG.uniform(0, 2, size=shape),
        "per-timestep-T": RNG.uniform(0, 2, size=shape[-1:]) if len(shape) == 2 else None,
        "zeros": np.zeros((n, 1) if len(shape) == 2 else (n,)),
    }[kind]


WEIGHTS = [None, "scalar", "per-sample-N", "per-sample-Nx1", "per-element", "per-timestep-T", "zeros"]


def _mask(kind, shape):
    if kind is None:
        return None
    if kind == "some":
        m = RNG.random(shape) < 0.6
        m.flat[0], m.flat[-1] = True, False
        return m
    return np.zeros(shape, bool)  # "none-valid"


MASKS = [None, "some", "none-valid"]


def _matrix():
    for (sid, shape), reduction, mask, weight in itertools.product(SHAPES.items(), REDUCTIONS, MASKS, WEIGHTS):
        if _weight(weight, shape) is None and weight is not None:
            continue  # that weight form does not exist for this rank
        yield pytest.param(shape, reduction, mask, weight, id=f"{sid}-{reduction}-mask-{mask}-weight-{weight}")


@pytest.mark.parametrize(("shape", "reduction", "mask", "weight"), list(_matrix()))
def test_reduce_values_matches_keras_algorithm(shape, reduction, mask, weight):
    values = RNG.uniform(0, 3, size=shape)
    sw, m = _weight(weight, shape), _mask(mask, shape)
    xp = namespace(values)
    got = reduce_values(values, xp, reduction=reduction, sample_weight=sw, mask=m)
    expected = keras_reduce(values, reduction, sw, m)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, atol=1e-15)
    assert np.shape(got) == np.shape(expected)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None])
def test_reduce_values_on_every_backend(eager_backend, reduction):
    shape = (4, 3)
    values = RNG.uniform(0, 3, size=shape).astype(np.float32)
    sw = RNG.uniform(0, 2, size=(4, 1)).astype(np.float32)
    m = _mask("some", shape)
    v = eager_backend.asarray(values)
    xp = namespace(v)
    got = reduce_values(v, xp, reduction=reduction, sample_weight=eager_backend.asarray(sw), mask=eager_backend.asarray(m))
    assert got.dtype == v.dtype
    np.testing.assert_allclose(eager_backend.to_numpy(got), keras_reduce(values, reduction, sw, m), rtol=2e-6)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean", "sum", "mean_with_sample_weight"])
def test_empty_after_broadcasting_reduces_to_zero(reduction):
    values = np.ones((0, 3))
    got = reduce_values(values, namespace(values), reduction=reduction, sample_weight=np.ones((0, 1)))
    assert float(got) == keras_reduce(values, reduction, np.ones((0, 1))) == 0.0


def test_a_batch_of_zero_samples_is_returned_as_it_is():
    values = np.ones((0,))
    got = reduce_values(values, namespace(values), reduction="sum_over_batch_size")
    assert got.shape == (0,)


def test_mean_with_sample_weight_and_zero_total_weight_gives_zero_not_nan():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    for sw in (np.zeros(4), np.array([1.0, -1.0, 2.0, -2.0])):  # negative weights may cancel
        got = reduce_values(values, namespace(values), reduction="mean_with_sample_weight", sample_weight=sw)
        assert float(got) == keras_reduce(values, "mean_with_sample_weight", sw) == 0.0


def test_a_scalar_value_is_scaled_but_not_reduced():
    values = np.float64(2.0)
    got = reduce_values(np.asarray(values), namespace(np.ones(1)), reduction="sum", sample_weight=np.asarray(3.0))
    assert float(got) == 6.0


def test_incompatible_weights_raise_a_shape_error_naming_the_shapes():
    values = np.ones((4, 3))
    with pytest.raises(pl.ShapeError, match=r"\(2,\).*\(4, 3\)"):
        reduce_values(values, namespace(values), sample_weight=np.ones(2))
    with pytest.raises(pl.ShapeError, match="ignore_class mask"):
        reduce_values(values, namespace(values), sample_weight=np.ones(2), mask=np.ones((4, 3), bool))


@pytest.mark.parametrize(
    ("a", "b", "shapes"),
    [((4, 1), (4,), ((4, 1), (4, 1))), ((4, 3, 1), (4, 3), ((4, 3), (4, 3))), ((4,), (4, 1), ((4, 1), (4, 1))),
     ((4, 3), (4, 3, 1), ((4, 3), (4, 3))), ((4, 3), (3,), ((4, 3), (3,))), ((4, 3), (), ((4, 3), ()))],
)
def test_align_ranks(a, b, shapes):
    x, y = align_ranks(np.ones(a), np.ones(b), namespace(np.ones(1)))
    assert (x.shape, y.shape) == shapes
    assert (x.shape, y.shape) == tuple(z.shape for z in _squeeze_or_expand(np.ones(a), np.ones(b)))


def test_validate_reduction():
    for r in REDUCTIONS:
        assert validate_reduction(r) == r
    with pytest.raises(pl.ArgumentError, match="sum_over_batch_size"):
        validate_reduction("auto")
    with pytest.raises(pl.ArgumentError, match="got 'average'"):
        validate_reduction("average")
