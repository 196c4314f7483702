"""``probloss.functional.divergence``: Keras's KL divergence, with its clipping.

Against SciPy's ``rel_entr`` where the clip does not act, and against the clipped float64
formula of keras_semantics.md §6 where it does (zeros in ``y_true``, zeros in ``y_pred``).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import probloss as pl
from tests import cases
from tests import reference as ref

SOFT, ROWS = cases.SOFT, cases.ROWS


def test_kl_matches_scipy_rel_entr_inside_the_clip(eager_backend):
    t = eager_backend.asarray(SOFT.astype(np.float32))
    p = eager_backend.asarray(ROWS.astype(np.float32))
    got = eager_backend.to_numpy(pl.kl_divergence(t, p))
    np.testing.assert_allclose(got, special.rel_entr(SOFT, ROWS).sum(axis=-1), rtol=2e-5, atol=1e-6)


def test_kl_float64_matches_the_clipped_formula():
    got = pl.kl_divergence(SOFT, ROWS)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref.kld(SOFT, ROWS), rtol=1e-12)


def test_kl_of_a_distribution_with_itself_is_zero():
    np.testing.assert_allclose(pl.kl_divergence(ROWS, ROWS), 0.0, atol=1e-15)


def test_a_zero_in_y_true_contributes_eps_log_eps_over_p():
    """Keras clips y_true to [eps, 1] too: not the exact 0 log 0 = 0 (R52)."""
    got = pl.kl_divergence([[0.0, 1.0]], [[0.3, 0.7]])
    eps = 1e-7
    expected = eps * np.log(eps / 0.3) + np.log(1 / 0.7)
    np.testing.assert_allclose(got, [expected], rtol=1e-6)
    assert abs(float(got[0]) - special.rel_entr([0.0, 1.0], [0.3, 0.7]).sum()) > 1e-6  # differs from the exact divergence


def test_a_zero_in_y_pred_is_clipped_to_eps():
    got = pl.kl_divergence(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(got, [0.5 * np.log(0.5) + 0.5 * np.log(0.5 / 1e-7)], rtol=1e-12)


def test_kl_is_not_renormalised():
    t, p = np.array([[0.2, 0.2]]), np.array([[0.1, 0.1]])  # neither sums to 1
    np.testing.assert_allclose(pl.kl_divergence(t, p), [2 * 0.2 * np.log(2.0)], rtol=1e-12)


def test_kl_rank3_sums_the_last_axis():
    rng = np.random.default_rng(3)
    t, p = rng.dirichlet(np.ones(4), size=(2, 3)), rng.dirichlet(np.ones(4), size=(2, 3))
    got = pl.kl_divergence(t, p)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, special.rel_entr(t, p).sum(axis=-1), rtol=1e-10)


def test_kl_epsilon_option():
    got = pl.kl_divergence([[0.0, 1.0]], [[0.5, 0.5]], epsilon=1e-3)
    np.testing.assert_allclose(got, [1e-3 * np.log(1e-3 / 0.5) + np.log(2.0)], rtol=1e-6)


@pytest.mark.parametrize(("y_true", "y_pred", "match"), [([[2.0, 0.5]], [[0.5, 0.5]], "y_true"), ([[0.5, 0.5]], [[-0.1, 0.5]], "y_pred")])
def test_values_outside_0_1_raise_unless_checks_are_off(y_true, y_pred, match):
    with pytest.raises(pl.ProblossError, match=match):
        pl.kl_divergence(y_true, y_pred)
    with pl.set_value_checks(False):  # then Keras's clip to [eps, 1] applies
        got = pl.kl_divergence(y_true, y_pred)
    t, p = np.clip(np.asarray(y_true, np.float64), 1e-7, 1), np.clip(np.asarray(y_pred, np.float64), 1e-7, 1)
    np.testing.assert_allclose(got, (t * np.log(t / p)).sum(axis=-1), rtol=1e-6)
