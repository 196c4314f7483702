"""``probloss.functional.focal``: binary and categorical focal cross-entropy.

Values against the float64 formulas of tests/reference.py (written from
keras_semantics.md §3.2 and §4.2) over every option, plus the identities the formulas
imply (``gamma=0`` is cross-entropy; ``alpha`` only counts with class balancing).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import probloss as pl
from tests import cases
from tests import reference as ref

BIN_T, BIN_P, LOGITS = cases.BIN_T, cases.BIN_P, cases.LOGITS
ONEHOT, SOFT, ROWS = cases.ONEHOT, cases.SOFT, cases.ROWS

BINARY_OPTIONS = [
    dict(from_logits=f, gamma=g, apply_class_balancing=b, alpha=0.3, label_smoothing=ls)
    for f, g, b, ls in itertools.product([False, True], [0.0, 1.5, 3.0], [False, True], [0.0, 0.2])
]


def _id(opts):
    parts = ["logits" if opts["from_logits"] else "probs", f"gamma{opts['gamma']}"]
    if opts.get("apply_class_balancing"):
        parts.append("balanced")
    if opts.get("label_smoothing"):
        parts.append(f"smoothing{opts['label_smoothing']}")
    if "alpha" in opts and not isinstance(opts["alpha"], float):
        parts.append("alpha-list")
    return "-".join(parts)


@pytest.mark.parametrize("opts", BINARY_OPTIONS, ids=_id)
def test_binary_focal_matches_the_float64_formula(opts):
    p = LOGITS if opts["from_logits"] else BIN_P
    got = pl.binary_focal_crossentropy(BIN_T, p, **opts)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref.bfce(BIN_T, p, **opts), rtol=1e-12, atol=1e-15)


def test_binary_focal_with_gamma_zero_is_binary_crossentropy():
    np.testing.assert_allclose(pl.binary_focal_crossentropy(BIN_T, BIN_P, gamma=0.0), ref.bce(BIN_T, BIN_P), rtol=1e-12)


def test_binary_focal_ignores_alpha_without_class_balancing():
    a = pl.binary_focal_crossentropy(BIN_T, BIN_P, alpha=0.1)
    b = pl.binary_focal_crossentropy(BIN_T, BIN_P, alpha=0.9)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, ref.bfce(BIN_T, BIN_P), rtol=1e-12)


def test_binary_focal_from_logits_saturates_at_the_clip_like_keras():
    """sigmoid then clip: -log(eps) and -log(1 - float32(1 - eps)), averaged (R17)."""
    got = pl.binary_focal_crossentropy([[1.0, 0.0]], [[-100.0, 100.0]], from_logits=True)
    expected = (-np.log(1e-7) - np.log(1 - np.float64(np.float32(1 - 1e-7)))) / 2
    np.testing.assert_allclose(got, [expected], rtol=1e-6)


def test_binary_focal_by_hand():
    """One element: t = 1, p = 0.8, gamma = 2, balanced alpha 0.25: 0.25 * 0.2^2 * -log 0.8."""
    got = pl.binary_focal_crossentropy([[1.0]], [[0.8]], apply_class_balancing=True, alpha=0.25, gamma=2.0)
    np.testing.assert_allclose(got, [0.25 * 0.04 * -np.log(0.8)], rtol=1e-6)


CATEGORICAL_OPTIONS = [
    dict(from_logits=f, gamma=g, alpha=a, label_smoothing=ls)
    for f, g, a, ls in itertools.product([False, True], [0.0, 2.0], [0.25, cases.ALPHAS], [0.0, 0.1])
]


@pytest.mark.parametrize("opts", CATEGORICAL_OPTIONS, ids=_id)
@pytest.mark.parametrize("labels", ["onehot", "soft"])
def test_categorical_focal_matches_the_float64_formula(opts, labels):
    t = ONEHOT if labels == "onehot" else SOFT
    p = LOGITS if opts["from_logits"] else ROWS
    got = pl.categorical_focal_crossentropy(t, p, **opts)
    # a per-class alpha list is read in float32 (test_alpha_list_keeps_float64_precision)
    rtol = 1e-12
    np.testing.assert_allclose(got, ref.cfce(t, p, **opts), rtol=rtol, atol=1e-15)


def test_categorical_focal_alpha_one_gamma_zero_is_categorical_crossentropy():
    np.testing.assert_allclose(
        pl.categorical_focal_crossentropy(ONEHOT, ROWS, alpha=1.0, gamma=0.0), ref.cce(ONEHOT, ROWS), rtol=1e-12
    )


def test_categorical_focal_alpha_list_along_axis1():
    t, x = cases.RANK3_ONEHOT, cases.RANK3
    got = pl.categorical_focal_crossentropy(t, x, alpha=cases.ALPHAS, from_logits=True, axis=1)
    np.testing.assert_allclose(got, ref.cfce(t, x, alpha=cases.ALPHAS, from_logits=True, axis=1), rtol=1e-7)


def test_alpha_list_keeps_float64_precision():
    t, p = ONEHOT, ROWS
    same = [0.1] * 5
    np.testing.assert_allclose(
        pl.categorical_focal_crossentropy(t, p, alpha=same), pl.categorical_focal_crossentropy(t, p, alpha=0.1), rtol=1e-13
    )


def test_categorical_focal_by_hand():
    """One-hot label on class 1, p = (0.2, 0.5, 0.3), gamma 2, alpha 0.25: 0.25 * 0.5^2 * -log 0.5."""
    got = pl.categorical_focal_crossentropy([[0.0, 1.0, 0.0]], [[0.2, 0.5, 0.3]])
    np.testing.assert_allclose(got, [0.25 * 0.25 * np.log(2)], rtol=1e-6)


@pytest.mark.parametrize("alpha", [[0.5, 0.5], [[0.2] * 5], [0.2] * 6], ids=["too-few", "rank2", "too-many"])
def test_alpha_list_must_have_one_weight_per_class(alpha):
    with pytest.raises(pl.ArgumentError, match="one weight per class"):
        pl.categorical_focal_crossentropy(ONEHOT, ROWS, alpha=alpha)


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (pl.binary_focal_crossentropy, dict(gamma=-1.0), "gamma"),
        (pl.binary_focal_crossentropy, dict(alpha=1.5), "alpha"),
        (pl.binary_focal_crossentropy, dict(apply_class_balancing=1), "apply_class_balancing"),
        (pl.categorical_focal_crossentropy, dict(gamma=-0.5), "gamma"),
        (pl.categorical_focal_crossentropy, dict(alpha=-0.1), "alpha"),
    ],
)
def test_options_are_validated(fn, kwargs, match):
    t, p = (BIN_T, BIN_P) if fn is pl.binary_focal_crossentropy else (ONEHOT, ROWS)
    with pytest.raises(pl.ArgumentError, match=match):
        fn(t, p, **kwargs)


def test_binary_focal_gradient_is_finite_for_confident_correct_predictions_with_gamma_below_one():
    torch = pytest.importorskip("torch")
    # float32 sigmoid rounds to exactly 1 from |logit| >= 17; (1 - p_t) ** 0.5 then has an
    # infinite derivative at 0, which must not turn the gradient into NaN.
    x = torch.tensor([100.0, -100.0, 75.0, -75.0, 50.0, -50.0], requires_grad=True)
    t = torch.tensor([0.9, 0.1, 0.8, 0.2, 1.0, 0.0])
    pl.binary_focal_crossentropy(t, x, from_logits=True, gamma=0.5).backward()
    assert torch.isfinite(x.grad).all(), x.grad
    # Against autodiff of the formula in float64, where sigmoid(+-30) is not yet 1.
    x64 = torch.tensor([30.0, -30.0, 20.0, -20.0, 10.0, -10.0], dtype=torch.float64, requires_grad=True)
    t64 = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.9, 0.1], dtype=torch.float64)
    p = torch.sigmoid(x64)
    q = p.clamp(1e-7, 1 - 1e-7)
    p_t = t64 * p + (1 - t64) * (1 - p)
    ((1 - p_t) ** 0.5 * -(t64 * torch.log(q) + (1 - t64) * torch.log(1 - q))).mean().backward()
    x32 = x64.detach().float().requires_grad_()
    pl.binary_focal_crossentropy(t64.float(), x32, from_logits=True, gamma=0.5).backward()
    # (float32 holds 1 - sigmoid(10) = 4.5e-5 to about 1e-3 relative)
    torch.testing.assert_close(x32.grad.double(), x64.grad, rtol=2e-3, atol=1e-9)


def test_binary_focal_gradient_is_finite_at_a_probability_of_one():
    torch = pytest.importorskip("torch")
    p = torch.tensor([1.0, 0.0, 0.5], requires_grad=True)
    pl.binary_focal_crossentropy(torch.tensor([1.0, 0.0, 1.0]), p, gamma=0.5).backward()
    assert torch.isfinite(p.grad).all(), p.grad
