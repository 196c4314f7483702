"""``probloss.functional.poisson``: Keras's ``poisson`` and ``tf.nn.log_poisson_loss``.

``poisson`` against the float64 formula ``mean(p - t log(p + eps))`` (keras_semantics.md
§5) and against SciPy's Poisson log-pmf (they differ by the constant ``log t!``);
``log_poisson_loss`` against ``exp(c) - z c`` and, with ``compute_full_loss``, the
Stirling term ``z log z - z + log(2 pi z) / 2`` for ``z > 1``, itself checked against
SciPy's exact ``-log pmf``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

import probloss as pl
from tests import cases
from tests import reference as ref

COUNTS, RATES = cases.COUNTS, cases.RATES


def test_poisson_matches_the_float64_formula(eager_backend):
    t = eager_backend.asarray(COUNTS.astype(np.float32))
    p = eager_backend.asarray(RATES.astype(np.float32))
    got = eager_backend.to_numpy(pl.poisson(t, p))
    np.testing.assert_allclose(got, ref.poisson(COUNTS, RATES), rtol=2e-6, atol=1e-6)


def test_poisson_is_the_negative_log_likelihood_up_to_log_factorial():
    """-log pmf(t; p) = p - t log p + log t!, so the loss + mean(log t!) is SciPy's NLL."""
    got = pl.poisson(COUNTS, RATES)
    nll = -stats.poisson.logpmf(COUNTS, RATES)
    np.testing.assert_allclose(got + special.gammaln(COUNTS + 1).mean(axis=-1), nll.mean(axis=-1), rtol=1e-6)


def test_poisson_rank3_and_a_zero_rate():
    t = np.array([[[1.0, 0.0], [3.0, 2.0]]])
    p = np.array([[[0.0, 0.0], [1.5, 2.5]]])
    expected = (p - t * np.log(p + 1e-7)).mean(axis=-1)
    np.testing.assert_allclose(pl.poisson(t, p), expected, rtol=1e-12)


def test_poisson_aligns_a_trailing_one_like_keras():
    t, p = np.array([1.0, 2.0, 0.0]), np.array([[0.5], [2.0], [1.0]])
    np.testing.assert_allclose(pl.poisson(t, p), p[:, 0] - t * np.log(p[:, 0] + 1e-7), rtol=1e-12)


def test_poisson_epsilon_option():
    t, p = np.array([[2.0, 1.0]]), np.array([[0.0, 1.0]])
    np.testing.assert_allclose(pl.poisson(t, p, epsilon=1e-3), (p - t * np.log(p + 1e-3)).mean(axis=-1), rtol=1e-12)


@pytest.mark.parametrize(("y_true", "y_pred", "match"), [([[-1.0, 1.0]], [[1.0, 1.0]], "y_true"), ([[1.0, 1.0]], [[1.0, -0.5]], "y_pred")])
def test_poisson_refuses_negative_counts_or_rates(y_true, y_pred, match):
    with pytest.raises(pl.ProblossError, match=match):
        pl.poisson(y_true, y_pred)


def test_poisson_shape_mismatch_raises():
    with pytest.raises(pl.ShapeError):
        pl.poisson(np.ones((2, 3)), np.ones((2, 4)))


# ------------------------------------------------------------- log_poisson_loss

Z = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 7.0, 30.0, 250.0])
C = np.array([0.3, -1.0, 0.0, 2.0, 0.7, 1.9, 3.4, 5.5])


def _stirling(z):
    return z * np.log(z) - z + 0.5 * np.log(2 * np.pi * z)


def test_log_poisson_loss_is_exp_c_minus_z_c(eager_backend):
    got = pl.log_poisson_loss(targets=eager_backend.asarray(Z.astype(np.float32)), log_input=eager_backend.asarray(C.astype(np.float32)))
    np.testing.assert_allclose(eager_backend.to_numpy(got), np.exp(C) - Z * C, rtol=2e-6, atol=1e-6)


def test_log_poisson_loss_full_adds_stirling_where_z_above_one(eager_backend):
    got = pl.log_poisson_loss(
        targets=eager_backend.asarray(Z.astype(np.float32)),
        log_input=eager_backend.asarray(C.astype(np.float32)),
        compute_full_loss=True,
    )
    big = Z > 1
    expected = np.exp(C) - Z * C + np.where(big, _stirling(np.where(big, Z, 1.0)), 0.0)
    np.testing.assert_allclose(eager_backend.to_numpy(got), expected, rtol=2e-6, atol=1e-5)


def test_log_poisson_full_loss_approximates_the_exact_negative_log_pmf():
    """Stirling's log z! is low by about 1/(12 z): the full loss is SciPy's -log pmf minus that."""
    z = Z[Z > 1]
    c = C[Z > 1]
    got = pl.log_poisson_loss(targets=z, log_input=c, compute_full_loss=True)
    exact = np.exp(c) - z * c + special.gammaln(z + 1)  # -log pmf, with log z! = gammaln(z + 1)
    # the next term of the series is -1/(360 z^3)
    np.testing.assert_allclose(got + 1 / (12 * z), exact, rtol=0, atol=1.1 / (360 * z.min() ** 3))
    integer = z == np.round(z)
    np.testing.assert_allclose(exact[integer], -stats.poisson.logpmf(z[integer], np.exp(c[integer])), rtol=1e-12)


def test_log_poisson_loss_by_hand():
    got = pl.log_poisson_loss(targets=[2.0, 0.0, 3.0], log_input=[0.0, 1.0, math.log(3.0)], compute_full_loss=True)
    expected = [1.0 + _stirling(2.0), math.e, 3.0 - 3.0 * math.log(3.0) + _stirling(3.0)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_log_poisson_loss_refuses_negative_targets_and_other_shapes():
    with pytest.raises(pl.ProblossError, match="targets"):
        pl.log_poisson_loss(targets=[-1.0], log_input=[0.0])
    with pytest.raises(pl.ShapeError):
        pl.log_poisson_loss(targets=[1.0, 2.0], log_input=[0.0])
    with pytest.raises(pl.ArgumentError, match="compute_full_loss"):
        pl.log_poisson_loss(targets=[1.0], log_input=[0.0], compute_full_loss="yes")
