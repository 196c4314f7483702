"""``probloss explain`` (probloss.cli._explain): one classification, consistent reports, right values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from probloss.cli._explain import PREDICTION_PHRASE, PREDICTION_TEXT, classify_predictions, explain

from .conftest import P_CLASSIC, assert_bad_input, keras_sparse, lse_minus_true

ROWS_SUM_TO_1_3 = [[0.9, 0.3, 0.1], [0.2, 0.7, 0.4], [0.1, 0.2, 1.0]]
ROWS_SUM_TO_1 = [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]
LOGITS = [[2.0, -1.0, 0.5], [0.1, 3.0, -2.0], [0.0, 0.3, 1.2]]


@pytest.mark.parametrize(
    ("y_pred", "kind"),
    [(ROWS_SUM_TO_1_3, "independent_probabilities"), (ROWS_SUM_TO_1, "probabilities"), (LOGITS, "logits")],
    ids=["rows sum to 1.3", "rows sum to 1", "logits"],
)
@pytest.mark.parametrize("label_kind", ["class_indices", "one_hot", "distributions"])
def test_prediction_kind_is_one_of_exclusive_outcomes(y_pred, kind, label_kind):
    assert classify_predictions(np.array(y_pred), label_kind) == kind


@pytest.mark.parametrize(
    ("y_pred", "kind"),
    [(ROWS_SUM_TO_1_3, "independent_probabilities"), (ROWS_SUM_TO_1, "probabilities"), (LOGITS, "logits")],
    ids=["rows sum to 1.3", "rows sum to 1", "logits"],
)
def test_explain_never_describes_predictions_two_ways(cli, y_pred, kind):
    # rows summing to 1.3 were once called both "independent probabilities" and "softmax probabilities"
    text = cli("explain", "--y-true", "[0, 1, 2]", "--y-pred", json.dumps(y_pred)).out
    for other in set(PREDICTION_TEXT) - {kind}:
        assert PREDICTION_TEXT[other] not in text, other
    for other in set(PREDICTION_PHRASE) - {kind}:
        assert PREDICTION_PHRASE[other] not in text.replace(PREDICTION_PHRASE[kind], ""), other
    assert PREDICTION_TEXT[kind] in text and PREDICTION_PHRASE[kind] in text
    assert ("softmax probabilities" in text) == (kind == "probabilities")


CASES = {
    # name: (y_true, y_pred, label kind, prediction kind, loss, from_logits, expected value)
    "sparse + softmax": ([1, 2], P_CLASSIC, "class_indices", "probabilities", "sparse_categorical_crossentropy", False,
                         keras_sparse([1, 2], P_CLASSIC).mean()),
    "one-hot + softmax": ([[0, 1, 0], [0, 0, 1]], P_CLASSIC, "one_hot", "probabilities", "categorical_crossentropy", False,
                          keras_sparse([1, 2], P_CLASSIC).mean()),
    "sparse + logits": ([0, 1, 2], LOGITS, "class_indices", "logits", "sparse_categorical_crossentropy", True,
                        lse_minus_true([0, 1, 2], LOGITS).mean()),
    "one-hot + logits": ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], LOGITS, "one_hot", "logits", "categorical_crossentropy",
                         True, lse_minus_true([0, 1, 2], LOGITS).mean()),
    "sparse + rows summing to 1.3": ([0, 1, 2], ROWS_SUM_TO_1_3, "class_indices", "independent_probabilities",
                                     "sparse_categorical_crossentropy", False, keras_sparse([0, 1, 2], ROWS_SUM_TO_1_3).mean()),
    "multi-hot + sigmoid": ([[1, 0, 1], [0, 1, 1]], [[0.9, 0.2, 0.7], [0.3, 0.6, 0.8]], "multi_hot",
                            "independent_probabilities", "binary_crossentropy", False,
                            np.mean(-np.log([0.9, 0.8, 0.7, 0.7, 0.6, 0.8]))),
    "multi-hot + logits": ([[1, 0, 1], [0, 1, 0]], [[1, -2, 0.5], [0, 3, -1]], "multi_hot", "logits",
                           "binary_crossentropy", True,
                           np.mean(np.log1p(np.exp(-np.array([1, 2, 0.5, 0, 3, 1.0]))))),
    "binary (sigmoid form)": ([0, 1], [0.2, 0.6], "binary", "independent_probabilities", "binary_crossentropy", False,
                              (-math.log(0.8) - math.log(0.6)) / 2),
    "soft labels + softmax": ([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], "distributions",
                              "probabilities", "categorical_crossentropy", False,
                              np.mean([-(0.7 * math.log(0.6) + 0.2 * math.log(0.3) + 0.1 * math.log(0.1)),
                                       -(0.1 * math.log(0.2) + 0.8 * math.log(0.7) + 0.1 * math.log(0.1))])),
    "counts + rates": ([[4, 8, 12], [8, 1, 3]], [[1, 9, 2], [5, 2, 6]], "counts", "rates", "poisson", None,
                       np.mean(np.array([[1, 9, 2], [5, 2, 6]]) - np.array([[4, 8, 12], [8, 1, 3]])
                               * np.log(np.array([[1, 9, 2], [5, 2, 6]]) + 1e-7))),
    "counts + log-rates": ([2, 0, 5, 1], [0.5, -1, 2, 0], "counts", "log_rates", "log_poisson_loss", None,
                           np.mean(np.exp([0.5, -1, 2, 0]) - np.array([2, 0, 5, 1]) * np.array([0.5, -1, 2, 0]))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_explain_recommends(cli, case):
    y_true, y_pred, label_kind, pred_kind, loss, from_logits, value = CASES[case]
    out = cli("explain", "--y-true", json.dumps(y_true), "--y-pred", json.dumps(y_pred), "--json").json()
    assert (out["labels"]["kind"], out["predictions"]["kind"]) == (label_kind, pred_kind)
    assert out["fits"] is True and out["recommendation"]["loss"] == loss
    if from_logits is not None:
        assert out["recommendation"]["options"] == {"from_logits": from_logits}
    assert out["value"] == pytest.approx(value, rel=1e-10)
    assert set(out["equivalents"]) == {"probloss", "keras", "pytorch", "tensorflow", "optax"}
    if from_logits:
        assert "logits" in out["equivalents"]["pytorch"]


def test_human_output_and_memory(cli):
    text = cli("explain", "--y-true", "[1, 2]", "--y-pred", json.dumps(P_CLASSIC)).out
    for fragment in ("class indices", "sparse_categorical_crossentropy", "Keras:", "PyTorch:", "TensorFlow:", "Optax:",
                     "Memory:", "8 B (int32", "24 B", "3x more", "Value: 1.17694"):
        assert fragment in text, fragment
    out = explain(np.array(list(range(10)) * 6000), np.full((60000, 10), 0.1))
    assert out["memory"]["int32_bytes"] == 60000 * 4 and out["memory"]["one_hot_float32_bytes"] == 60000 * 10 * 4
    assert out["value"] == pytest.approx(-math.log(0.1), rel=1e-6)


def test_regression_recommends_gaussian_nll(cli):
    y, p = [1.5, -0.3, 2.2, 0.7], [1.4, 0.1, 2.0, 0.5]
    text = cli("explain", "--y-true", json.dumps(y), "--y-pred", json.dumps(p)).out
    assert "The classification losses do not fit: this is regression." in text
    assert "Use instead: gaussian_nll, the Gaussian negative log-likelihood (mean squared error at a fixed variance)" in text
    assert "probloss.GaussianNLL()(y_true, y_pred, var=var)" in text and "mean_squared_error" not in text
    out = cli("explain", "--y-true", json.dumps(y), "--y-pred", json.dumps(p), "--json").json()
    assert out["fits"] is False and out["recommendation"]["loss"] == "gaussian_nll"
    assert out["value"] == pytest.approx(np.mean((np.array(y) - p) ** 2), rel=1e-12)
    out = cli("explain", "--y-true", "[1.5, 0.3, 2.25]", "--y-pred", "[1.4, 0.1, 2.0]", "--json").json()
    assert any("Poisson" in n for n in out["notes"])


def test_warns_about_mismatched_heads_and_imbalance(cli):
    out = cli("explain", "--y-true", "[[1, 0, 1], [0, 1, 1]]", "--y-pred", "[[0.5, 0.2, 0.3], [0.1, 0.6, 0.3]]",
              "--json").json()
    assert out["recommendation"]["loss"] == "binary_crossentropy" and any("sigmoid" in n for n in out["notes"])
    out = cli("explain", "--y-true", "[0, 1, 2]", "--y-pred", json.dumps(ROWS_SUM_TO_1_3), "--json").json()
    assert any("do not sum to 1" in n for n in out["notes"])
    out = cli("explain", "--y-true", json.dumps([1] + [0] * 39), "--y-pred", json.dumps([0.3] * 40), "--json").json()
    assert any("binary_focal_crossentropy" in n for n in out["notes"])
    out = cli("explain", "--y-true", "[1, 0]", "--y-pred", "[[0.2, 0.8], [0.6, 0.4]]", "--from-logits", "--json").json()
    assert out["recommendation"]["options"] == {"from_logits": True}
    assert out["value"] == pytest.approx(lse_minus_true([1, 0], [[0.2, 0.8], [0.6, 0.4]]).mean(), rel=1e-12)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "fragment"),
    [
        ("[0, 3]", json.dumps(P_CLASSIC), "class index 3"),
        ("[0.5, 1]", json.dumps(P_CLASSIC), "whole numbers"),
        ("[[1, 0]]", json.dumps(P_CLASSIC), "does not fit"),
        ("[1, 2]", "[[0.1, NaN, 0.9], [0.2, 0.3, 0.5]]", "NaN"),
        ("[]", "[]", "empty"),
        ("1", "0.5", "single number"),
    ],
)
def test_bad_input(cli, y_true, y_pred, fragment):
    assert_bad_input(cli("explain", "--y-true", y_true, "--y-pred", y_pred), fragment)
