"""Building losses by name (probloss.cli._losses): names, aliases, options, from the public API."""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl
from probloss.cli._losses import TF_NN, aliases, build_loss, keras_losses, parse_options


def test_keras_losses_come_from_the_public_api():
    found = keras_losses()
    assert found["sparse_categorical_crossentropy"] is pl.SparseCategoricalCrossentropy
    assert found["poisson"] is pl.Poisson
    assert found["kl_divergence"] is pl.KLDivergence
    assert not set(found) & set(TF_NN)


def test_aliases():
    assert aliases() == {"bce": "binary_crossentropy", "kld": "kl_divergence", "cce": "categorical_crossentropy",
                         "scce": "sparse_categorical_crossentropy"}


@pytest.mark.parametrize(
    ("name", "canonical", "cls"),
    [
        ("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", pl.SparseCategoricalCrossentropy),
        ("sparse-categorical-crossentropy", "sparse_categorical_crossentropy", pl.SparseCategoricalCrossentropy),
        ("SCCE", "sparse_categorical_crossentropy", pl.SparseCategoricalCrossentropy),
        ("bce", "binary_crossentropy", pl.BinaryCrossentropy),
        ("kld", "kl_divergence", pl.KLDivergence),
        ("sigmoid_cross_entropy_with_logits", "sigmoid_cross_entropy_with_logits", pl.losses.LossFunctionWrapper),
    ],
)
def test_names_resolve(name, canonical, cls):
    got, loss = build_loss(name)
    assert got == canonical and type(loss) is cls


def test_options_and_from_logits_reach_the_loss():
    _, loss = build_loss("bce", from_logits=True, reduction="sum", options={"label_smoothing": 0.2})
    config = loss.get_config()
    assert config["from_logits"] is True and config["label_smoothing"] == 0.2 and config["reduction"] == "sum"
    _, loss = build_loss("weighted_cross_entropy_with_logits", options={"pos_weight": 2.0})
    x, t = np.array([0.3, -1.2]), np.array([1.0, 0.0])
    sp = np.log1p(np.exp(-x))  # -log sigmoid(x)
    expected = np.mean(2.0 * t * sp + (1 - t) * (x + sp))
    assert float(loss(t, x)) == pytest.approx(expected, rel=1e-12)


def test_parse_options_reads_json_values():
    assert parse_options(["gamma=2", "label_smoothing=0.1", "name=abc", "axis=-1"]) == {
        "gamma": 2, "label_smoothing": 0.1, "name": "abc", "axis": -1}
