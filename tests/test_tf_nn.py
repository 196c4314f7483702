"""The tf.nn primitives against their documented formulas and TensorFlow's own values.

TensorFlow is not installed (too heavy for CI); the TF values come from
shared/reference/peers_semantics.md (TF1, TF2) and the seed article.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import probloss as pl
from tests import reference as ref


def test_softmax_cross_entropy_tf_doc_example():
    got = pl.softmax_cross_entropy_with_logits(labels=[[1.0, 0, 0], [0, 0.8, 0.2]], logits=[[4.0, 2, 1], [0, 5, 1]])
    np.testing.assert_allclose(got, [0.169846, 0.824745], rtol=1e-5)


def test_softmax_cross_entropy_axis0_equals_transposed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    y = rng.dirichlet(np.ones(5), size=3).T.astype(np.float32)
    got = pl.softmax_cross_entropy_with_logits(labels=y, logits=x, axis=0)
    np.testing.assert_allclose(got, -(y * ref.log_softmax(x, axis=0)).sum(axis=0), rtol=1e-5)


def test_sparse_softmax_tf_doc_example():
    logits = [[2, -5, 0.5, -0.1], [0, 0, 1.9, 1.4], [-100, 100, -100, -100]]
    got = pl.sparse_softmax_cross_entropy_with_logits(labels=[0, 3, 1], logits=logits)
    np.testing.assert_allclose(got, [0.297507, 1.14483, 0], rtol=1e-5, atol=1e-7)


def test_sparse_softmax_out_of_range_raises():
    with pytest.raises(pl.LabelValueError, match="class index 4"):
        pl.sparse_softmax_cross_entropy_with_logits(labels=[0, 4], logits=np.zeros((2, 3), np.float32))


def test_sigmoid_cross_entropy_seed_article_values():
    logits = [[0.5, 0.7, 0.3], [0.8, 0.2, 0.9]]
    ones = pl.sigmoid_cross_entropy_with_logits(labels=np.ones((2, 3), np.float32), logits=logits)
    zeros = pl.sigmoid_cross_entropy_with_logits(labels=np.zeros((2, 3), np.float32), logits=logits)
    np.testing.assert_allclose(ones, [[0.47407699, 0.40318602, 0.5543552], [0.37110069, 0.59813887, 0.34115386]], rtol=1e-6)
    np.testing.assert_allclose(zeros, [[0.97407699, 1.10318601, 0.85435522], [1.17110074, 0.79813886, 1.24115384]], rtol=1e-6)


@pytest.mark.parametrize("x", [-1e4, -50.0, -20.0, 0.0, 20.0, 50.0, 1e4])
@pytest.mark.parametrize("z", [0.0, 0.3, 1.0])
def test_sigmoid_formula_extremes(x, z):
    got = pl.sigmoid_cross_entropy_with_logits(labels=np.float64([z]), logits=np.float64([x]))
    expected = max(x, 0) - x * z + math.log1p(math.exp(-abs(x)))
    np.testing.assert_allclose(got, [expected], rtol=1e-12, atol=1e-300)


def test_weighted_cross_entropy_formula():
    rng = np.random.default_rng(3)
    x = rng.normal(scale=5, size=(4, 6))
    z = (rng.random((4, 6)) < 0.5).astype(np.float64)
    q = 3.0
    expected = (1 - z) * x + (1 + (q - 1) * z) * (np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0))
    got = pl.weighted_cross_entropy_with_logits(labels=z, logits=x, pos_weight=q)
    # TF's own form cancels x against softplus(-x); ours does not, so allow its rounding.
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-14)


def test_log_poisson_loss_formula_and_stirling_mask():
    z = np.array([0.0, 0.5, 1.0, 2.0, 7.0])
    c = np.array([0.3, -1.0, 0.0, 1.2, 2.0])
    base = np.exp(c) - z * c
    np.testing.assert_allclose(pl.log_poisson_loss(targets=z, log_input=c), base, rtol=1e-12)
    stirling = np.where(z > 1, z * np.log(np.where(z > 1, z, 1)) - z + 0.5 * np.log(2 * np.pi * np.where(z > 1, z, 1)), 0)
    np.testing.assert_allclose(pl.log_poisson_loss(targets=z, log_input=c, compute_full_loss=True), base + stirling, rtol=1e-12)


def test_primitives_require_keywords():
    with pytest.raises(TypeError):
        pl.softmax_cross_entropy_with_logits([[1.0, 0]], [[0.0, 1]])  # noqa: the TF API is keyword-only
