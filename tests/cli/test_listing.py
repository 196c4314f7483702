"""``probloss list`` (probloss.cli._listing): every listed loss exists and can be built."""

from __future__ import annotations

import probloss as pl
from probloss.cli._losses import build_loss


def test_list_text(cli):
    result = cli("list")
    assert result.status == 0
    for name in ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "poisson",
                 "kl_divergence", "binary_focal_crossentropy", "sigmoid_cross_entropy_with_logits", "info.entropy",
                 "[SparseCategoricalCrossentropy]", "bce = binary_crossentropy"):
        assert name in result.out, name


def test_everything_listed_can_be_built(cli):
    out = cli("list", "--json").json()
    assert {"name": "poisson", "class": "Poisson", "kind": "keras"}.items() <= out["losses"][
        [r["name"] for r in out["losses"]].index("poisson")].items()
    assert all(r["description"] for r in out["losses"])
    for row in out["losses"]:
        options = {"pos_weight": 2.0} if row["name"] == "weighted_cross_entropy_with_logits" else {}
        assert build_loss(row["name"], options=options)[0] == row["name"]
        assert callable(getattr(pl, row["name"]))
    assert {r["name"] for r in out["info"]} == {f"info.{n}" for n in pl.info.__all__}
