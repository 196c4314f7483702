"""Reading a ``.csv`` file of numbers without ever changing them silently.

The first line is a header or data by one rule (``--header``):

* ``auto``: a line of names is a header; a line of numbers is data, except
  ``0,1,...,k-1`` (k >= 2), the column names pandas writes, which is ambiguous and refused;
  a line mixing names and numbers is refused;
* ``yes``: the first line is a header, whatever it holds;
* ``no``: the first line is data.

Every other line must hold as many numbers as the first data line.  Blank lines and lines
starting with ``#`` are skipped.  Errors name the file and the line, never its contents.

Examples
--------
>>> read_csv(b"c0,c1\\n0.25,0.75\\n1,0\\n", "'p.csv'", "auto").tolist()
[[0.25, 0.75], [1.0, 0.0]]
>>> read_csv(b"0\\n1\\n2\\n", "'y.csv'", "auto").tolist()
[0, 1, 2]
"""

from __future__ import annotations

import numpy as np

from ._output import CliError


def read_csv(raw: bytes, source: str, header: str = "auto") -> np.ndarray:
    """The numbers of a CSV file's contents ``raw``; ``source`` names the file in errors."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CliError(f"{source} is not UTF-8 text (byte {exc.start})") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise CliError(f"{source} holds no data rows")
    first_no, first = lines[0]
    kind = _line_kind(first)
    if header == "yes":
        lines = lines[1:]
    elif header == "no":
        if kind != "numbers":
            raise CliError(f"line {first_no} of {source} is not all numbers, and --header no reads it as data")
    elif kind == "mixed":
        raise CliError(
            f"line {first_no} of {source} mixes numbers and names: a header must be all names and a data row all "
            "numbers; fix the line, or pass --header yes if it is a header"
        )
    elif kind == "names":
        lines = lines[1:]
    elif _is_pandas_header(first) and len(lines) > 1:
        raise CliError(
            f"line {first_no} of {source} looks like pandas' default column names (0, 1, ..., k-1) but could be a row "
            "of data; "
            "pass --header yes to skip it or --header no to read it as data"
        )
    if not lines:
        raise CliError(f"{source} holds a header but no data rows")
    arr = _parse(lines, source)
    if arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.size and np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**53):
        return arr.astype(np.int64)
    return arr


def _fields(line: str) -> list[str]:
    return [f.strip() for f in line.split(",")]


def _is_number(field: str) -> bool:
    if not field or "_" in field:  # float() accepts 1_000; a CSV reader does not
        return False
    try:
        float(field)
    except ValueError:
        return False
    return True


def _line_kind(line: str) -> str:
    """``"numbers"``, ``"names"`` (no field is a number) or ``"mixed"``."""
    numeric = [_is_number(f) for f in _fields(line)]
    if all(numeric):
        return "numbers"
    return "mixed" if any(numeric) else "names"


def _is_pandas_header(line: str) -> bool:
    fields = _fields(line)
    return len(fields) >= 2 and fields == [str(i) for i in range(len(fields))]


def _parse(lines: list[tuple[int, str]], source: str) -> np.ndarray:
    """The numbers of the data ``lines``; the first faulty line is named if any."""
    try:
        return np.loadtxt([line for _, line in lines], delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        pass  # find the faulty line ourselves: NumPy's message quotes the contents
    width = len(_fields(lines[0][1]))
    for n, line in lines:
        fields = _fields(line)
        if len(fields) != width:
            raise CliError(f"line {n} of {source} has {len(fields)} fields, but line {lines[0][0]} has {width}")
        for col, field in enumerate(fields, 1):
            if not _is_number(field):
                raise CliError(f"line {n}, field {col} of {source} is not a number")
    raise CliError(f"{source} is not a CSV file of numbers")
