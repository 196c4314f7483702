"""``probloss compute`` (probloss.cli._compute): values against float64 formulas, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import P_CLASSIC, assert_bad_input, keras_sparse, lse_minus_true

SIGMOID_ONES = [[0.47407699, 0.40318602, 0.5543552], [0.37110069, 0.59813887, 0.34115386]]


def test_doc_example_and_class_name_and_alias(cli):
    result = cli("compute", "sparse_categorical_crossentropy", "--y-true", "[1, 2]", "--y-pred", json.dumps(P_CLASSIC))
    assert result.status == 0 and result.err == ""
    assert result.out == 'sparse_categorical_crossentropy (reduction="sum_over_batch_size"): 1.17694\n'
    for name in ("CategoricalCrossentropy", "cce"):
        out = cli("compute", name, "--y-true", "[[0,1,0],[0,0,1]]", "--y-pred", json.dumps(P_CLASSIC), "--json").json()
        assert out["loss"] == "categorical_crossentropy"
        assert out["value"] == pytest.approx(keras_sparse([1, 2], P_CLASSIC).mean(), rel=1e-12)


def test_reduction_none_and_tf_nn_form(cli):
    logits = np.array([[0.5, 0.7, 0.3], [0.8, 0.2, 0.9]])
    out = cli("compute", "sigmoid_cross_entropy_with_logits", "--reduction", "none", "--y-true", "[[1,1,1],[1,1,1]]",
              "--y-pred", json.dumps(logits.tolist()), "--json").json()
    assert out["shape"] == [2, 3]
    np.testing.assert_allclose(out["value"], np.log1p(np.exp(-logits)), rtol=1e-12)
    np.testing.assert_allclose(out["value"], SIGMOID_ONES, rtol=1e-7)


def test_from_logits_weights_and_options(cli):
    logits = [[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [1.2, 0.2, 3.0], [-0.3, 0.8, 0.0]]
    labels, w = [0, 1, 2, 1], [1.0, 2.0, 0.5, 0.0]
    base = ("compute", "sparse-categorical-crossentropy", "--from-logits", "--y-true", json.dumps(labels),
            "--y-pred", json.dumps(logits))
    assert cli(*base, "--json").json()["value"] == pytest.approx(lse_minus_true(labels, logits).mean(), rel=1e-12)
    out = cli(*base, "--sample-weight", json.dumps(w), "--json").json()
    assert out["value"] == pytest.approx(np.sum(np.array(w) * lse_minus_true(labels, logits)) / 4, rel=1e-12)
    out = cli(*base, "--sample-weight", json.dumps(w), "--reduction", "mean_with_sample_weight", "--json").json()
    assert out["value"] == pytest.approx(np.sum(np.array(w) * lse_minus_true(labels, logits)) / 3.5, rel=1e-12)
    out = cli("compute", "bce", "--y-true", "[0, 1]", "--y-pred", "[0.2, 0.6]", "--set", "label_smoothing=0.2",
              "--json").json()
    t, p = np.array([0, 1]) * 0.8 + 0.1, np.array([0.2, 0.6])
    assert out["value"] == pytest.approx(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))), rel=1e-12)
    assert out["options"] == {"label_smoothing": 0.2}


def test_ignore_class_mean_divides_by_the_valid_count(cli):
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(size=(23, 5)), rng.integers(0, 5, size=23)
    labels[::4] = -1
    valid = labels != -1
    per = np.where(valid, lse_minus_true(np.where(valid, labels, 0), logits), 0.0)
    out = cli("compute", "scce", "--from-logits", "--set", "ignore_class=-1", "--y-true", json.dumps(labels.tolist()),
              "--y-pred", json.dumps(logits.tolist()), "--json").json()
    assert out["value"] == pytest.approx(per.sum() / valid.sum(), rel=1e-12)


def test_infinite_value_is_valid_json(cli):
    out = cli("compute", "sigmoid_cross_entropy_with_logits", "--y-true", "[0]", "--y-pred", "[1e308]",
              "--reduction", "sum", "--json").json()
    assert out["value"] == pytest.approx(1e308)
    out = cli("compute", "bce", "--from-logits", "--y-true", "[0]", "--y-pred", "[1e308]", "--json").json()
    assert out["value"] in ("inf", pytest.approx(1e308))


@pytest.mark.parametrize("rows", [3, 4])
def test_ambiguous_sample_weight_is_refused_on_every_path(cli, tmp_path, rows):
    # (N,) weights for (N, N) per-sample losses: the old chunked path printed a number
    # (2.29067 with --chunk-size 1) where the loss itself refuses; now there is one path.
    y_true = np.zeros((rows, rows), dtype=np.int64)
    y_pred = np.full((rows, rows, 4), 0.25)
    np.save(tmp_path / "p.npy", y_pred)
    w = json.dumps(list(range(1, rows + 1)))
    err = assert_bad_input(cli("compute", "sparse_categorical_crossentropy", "--y-true", json.dumps(y_true.tolist()),
                               "--y-pred", tmp_path / "p.npy", "--sample-weight", w), "ambiguous", "`--sample-weight`")
    assert "sample_weight" not in err
    out = cli("compute", "scce", "--y-true", json.dumps(y_true.tolist()), "--y-pred", tmp_path / "p.npy",
              "--sample-weight", json.dumps([[v] for v in range(1, rows + 1)]), "--json").json()
    assert out["value"] == pytest.approx(np.log(4.0) * np.mean(np.arange(1, rows + 1)), rel=1e-12)


def test_poisson_notes_the_dropped_constant(cli):
    y, mu = np.array([3.0, 4.0, 5.0]), np.array([2.0, 3.0, 4.0])
    expected = np.mean(mu - y * np.log(mu + 1e-7))
    assert expected < 0
    result = cli("compute", "poisson", "--y-true", json.dumps(y.tolist()), "--y-pred", json.dumps(mu.tolist()))
    value_line, note = result.out.strip().splitlines()
    assert float(value_line.rsplit(" ", 1)[1]) == pytest.approx(expected, rel=1e-5)
    assert note.startswith("note: ") and "log(y!)" in note and "negative" in note
    out = cli("compute", "poisson", "--y-true", json.dumps(y.tolist()), "--y-pred", json.dumps(mu.tolist()), "--json").json()
    assert out["value"] == pytest.approx(expected, rel=1e-12)
    assert len(out["notes"]) == 1 and "log(y!)" in out["notes"][0]
    assert "note:" not in cli("compute", "bce", "--y-true", "[1]", "--y-pred", "[0.5]").out


def test_log_poisson_full_loss_has_no_note(cli):
    out = cli("compute", "log_poisson_loss", "--y-true", "[2]", "--y-pred", "[0.5]", "--set", "compute_full_loss=true",
              "--json").json()
    stirling = 2 * np.log(2) - 2 + 0.5 * np.log(2 * np.pi * 2)
    assert out["value"] == pytest.approx(np.exp(0.5) - 2 * 0.5 + stirling, rel=1e-12)
    assert out["notes"] == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["spares_categorical"], ["unknown loss", "sparse_categorical_crossentropy"]),
        (["bce", "--set", "gama=2"], ["`--set gama`", "label_smoothing"]),
        (["bce", "--set", "nokey"], ["KEY=VALUE"]),
        (["bce", "--set", "from_logits=true"], ["--from-logits"]),
        (["bce", "--set", "label_smoothing=2"], ["`label_smoothing`"]),
        (["poisson", "--from-logits"], ["does not apply"]),
        (["log_poisson_loss", "--from-logits"], ["does not apply"]),
        (["weighted_cross_entropy_with_logits"], ["--set pos_weight=VALUE"]),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) and a and a[0] != "unknown loss" else None,
)
def test_bad_usage(cli, args, fragments):
    assert_bad_input(cli("compute", args[0], "--y-true", "[0, 1]", "--y-pred", "[0.2, 0.6]", *args[1:]), *fragments)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "fragments"),
    [
        ("[1, 2]", "[[0.5, 0.5, 0], [0.2, 0.8, 0], [0.1, 0.1, 0.8]]", ["`--y-true`", "shape"]),
        ("[1, 5]", json.dumps(P_CLASSIC), ["class", "5"]),
        ("[[0, 1, 0], [0, 0, 1]]", "[[0.5, 0.5], [0.2, 0.8]]", ["--y-true"]),
    ],
)
def test_library_errors_are_exit_2(cli, y_true, y_pred, fragments):
    assert_bad_input(cli("compute", "sparse_categorical_crossentropy", "--y-true", y_true, "--y-pred", y_pred), *fragments)
