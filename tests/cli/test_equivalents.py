"""The table of peer equivalents (probloss.cli._equivalents): complete, and names only real calls."""

from __future__ import annotations

import pytest

import probloss as pl
from probloss.cli._equivalents import EQUIVALENTS, LIBRARIES, equivalents
from probloss.cli._explain import _recommend


@pytest.mark.parametrize("loss", sorted(EQUIVALENTS))
@pytest.mark.parametrize("logits", [False, True], ids=["probabilities", "logits"])
def test_every_entry_has_every_library(loss, logits):
    table = equivalents(loss, logits=logits)
    assert set(table) == set(LIBRARIES) and all(table.values())


def test_variants():
    assert "from_logits=True" in equivalents("binary_crossentropy", logits=True)["keras"]
    assert "from_logits" not in equivalents("binary_crossentropy")["keras"]
    assert "argmax" in equivalents("categorical_crossentropy", one_hot=True)["pytorch"]
    assert "xlogy" in equivalents("categorical_crossentropy")["pytorch"]


def test_every_probloss_line_names_a_public_function_or_class():
    for variants in EQUIVALENTS.values():
        for variant in variants.values():
            line = variant.get("probloss", "")
            if line.startswith("probloss."):
                assert hasattr(pl, line.split(".")[1].split("(")[0]), line


@pytest.mark.parametrize("label_kind", ["class_indices", "one_hot", "distributions", "multi_hot", "binary",
                                        "soft_binary", "counts", "regression"])
def test_every_recommendation_has_an_entry(label_kind):
    import numpy as np

    possible = {"counts": ("rates", "log_rates"), "regression": ("values",)}
    for pred_kind in possible.get(label_kind, ("probabilities", "independent_probabilities", "logits")):
        loss, _, _ = _recommend(label_kind, pred_kind, 3, np.zeros(3))
        assert loss in EQUIVALENTS
