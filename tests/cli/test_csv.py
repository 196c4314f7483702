"""CSV files (probloss.cli._csv): the first line is a header or data by one rule, never silently."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import assert_bad_input

BCE = ("compute", "binary_crossentropy", "--reduction", "none", "--json")


def bce(t, p):
    t, p = np.asarray(t, dtype=np.float64), np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


@pytest.fixture
def write(tmp_path):
    def write(text, name="p.csv"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def test_a_line_of_names_is_a_header(cli, write):
    path = write("a,b\n0.2,0.6\n0.9,0.3\n")
    out = cli(*BCE, "--y-true", "[[0, 1], [1, 0]]", "--y-pred", path).json()
    np.testing.assert_allclose(out["value"], bce([[0, 1], [1, 0]], [[0.2, 0.6], [0.9, 0.3]]).mean(-1), rtol=1e-12)


def test_a_line_of_numbers_is_data(cli, write):
    path = write("0.2,0.6\n0.9,0.3\n")
    out = cli(*BCE, "--y-true", "[[0, 1], [1, 0]]", "--y-pred", path).json()
    assert out["shape"] == [2]


@pytest.mark.parametrize("header", ["auto", "no"])
def test_pandas_numeric_header_is_refused_unless_told(cli, write, header):
    # pandas DataFrame(arr).to_csv(index=False) writes the column names 0,1 as the first line
    path = write("0,1\n0.2,0.6\n0.9,0.3\n")
    args = (*BCE, "--y-true", "[[0, 1], [1, 0]]", "--y-pred", path, "--header", header)
    if header == "auto":
        assert_bad_input(cli(*args), "line 1 of `--y-pred` file", "pandas", "--header yes", "--header no")
    else:  # read as data: 3 rows against 2 labels is then a shape error, not a silent extra row
        assert_bad_input(cli(*args), "--y-true")


def test_header_yes_skips_a_numeric_header(cli, write):
    path = write("0,1\n0.2,0.6\n0.9,0.3\n")
    out = cli(*BCE, "--y-true", "[[0, 1], [1, 0]]", "--y-pred", path, "--header", "yes").json()
    np.testing.assert_allclose(out["value"], bce([[0, 1], [1, 0]], [[0.2, 0.6], [0.9, 0.3]]).mean(-1), rtol=1e-12)


def test_malformed_first_row_is_an_error_not_a_header(cli, write):
    # the old reader took a first line it could not parse for a header and dropped it
    path = write("0.2,0.6x\n0.9,0.3\n")
    assert_bad_input(cli(*BCE, "--y-true", "[[1, 0]]", "--y-pred", path), "line 1", "p.csv", "mixes numbers and names")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("a,b\n0.2,0.6\n0.9,oops\n", ["line 3, field 2", "not a number"]),
        ("a,b\n0.2,0.6\n0.9\n", ["line 3 of", "has 1 fields, but line 2 has 2"]),
        ("0.2,0.6\n\n# comment\n0.9,,0.1\n", ["line 4 of", "has 3 fields"]),
        ("0.2,0.6\n0.9,\n", ["line 2, field 2"]),
        ("a,b\n", ["a header but no data rows"]),
        ("\n# only a comment\n", ["no data rows"]),
        ("x\n0.5\n", []),  # fine: shown below as a valid single column
    ],
)
def test_malformed_lines_are_named(cli, write, text, fragments):
    result = cli("compute", "bce", "--y-true", "[1]", "--y-pred", write(text))
    if fragments:
        err = assert_bad_input(result, "`--y-pred` file", *fragments)
        assert "oops" not in err
    else:
        assert result.status == 0, result.err


def test_header_no_refuses_a_line_of_names(cli, write):
    assert_bad_input(cli("compute", "bce", "--y-true", "[1]", "--y-pred", write("p\n0.5\n"), "--header", "no"),
                     "line 1", "--header no")


def test_single_column_is_a_vector_and_whole_numbers_are_integers(cli, write):
    labels = write("label\n1\n2\n0\n", "y.csv")
    probs = write("0.2,0.5,0.3\n0.1,0.1,0.8\n0.6,0.2,0.2\n")
    out = cli("compute", "scce", "--y-true", labels, "--y-pred", probs, "--json").json()
    assert out["value"] == pytest.approx(-np.log([0.5, 0.8, 0.6]).mean(), rel=1e-12)
