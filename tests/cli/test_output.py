"""Messages and JSON (probloss.cli._output): the library's argument names become the command's flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probloss.cli._output import cli_message, jsonable

from .conftest import P_CLASSIC, assert_bad_input


@pytest.mark.parametrize(
    ("library", "command"),
    [
        ("`y_true` holds 2", "`--y-true` holds 2"),
        ("`y_pred` of shape (2,)", "`--y-pred` of shape (2,)"),
        ("`sample_weight` of shape (3,) is ambiguous", "`--sample-weight` of shape (3,) is ambiguous"),
        ("pass `from_logits=True`.", "pass `--from-logits`."),
        ("`from_logits=False` expects probabilities", "the loss without `--from-logits` expects probabilities"),
        ("`labels` and `logits` differ", "`--y-true` and `--y-pred` differ"),
        ("`targets` and `log_input`", "`--y-true` and `--y-pred`"),
        ("my_y_true and y_true_2 stay", "my_y_true and y_true_2 stay"),
        ("two\n  lines", "two lines"),
    ],
)
def test_flag_names_replace_argument_names(library, command):
    assert cli_message(library) == command


def test_library_errors_reach_the_user_with_flag_names(cli):
    err = assert_bad_input(cli("compute", "bce", "--y-true", "[0, 1]", "--y-pred", "[0.5, 3.0]"))
    assert "`--y-pred`" in err and "`--from-logits`" in err
    assert "y_pred" not in err and "from_logits" not in err
    err = assert_bad_input(cli("compute", "scce", "--y-true", "[1, 5]", "--y-pred", json.dumps(P_CLASSIC)))
    assert "`--y-true`" in err and "y_true" not in err


def test_library_warnings_are_one_line_with_flag_names(cli):
    result = cli("compute", "scce", "--y-true", "[0]", "--y-pred", "[[0.5, 0.8]]")
    assert result.status == 0
    (line,) = result.err.strip().splitlines()
    assert line.startswith("probloss: warning: `--y-pred` rows") and "--from-logits" in line


def test_jsonable_writes_non_finite_numbers_as_strings():
    obj = jsonable({"v": np.array([1.0, np.inf, -np.inf, np.nan]), "n": np.int64(3)})
    assert json.dumps(obj, allow_nan=False) == '{"v": [1.0, "inf", "-inf", "nan"], "n": 3}'
