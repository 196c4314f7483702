"""What the command writes: one-line errors and warnings, JSON, numbers.

Every message the user sees goes through here, so the library's wording
(``y_true``, ``from_logits=True``) is translated to the command's flags in one place.

Examples
--------
>>> cli_message("`y_pred` holds logits: pass `from_logits=True`.")
'`--y-pred` holds logits: pass `--from-logits`.'
>>> fmt(1.1769442)
'1.17694'
"""

from __future__ import annotations

import json
import math
import os
import re
import sys

import numpy as np

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
"""Exit status: success; a failed check or an internal error; bad usage or bad input."""

# The library names the arguments of its Python API; the command has flags instead.
FLAG_NAMES = {
    "from_logits=True": "--from-logits",
    "`from_logits=False`": "the loss without `--from-logits`",
    "from_logits=False": "the loss without --from-logits",
    "sample_weight": "--sample-weight",
    "y_true": "--y-true",
    "y_pred": "--y-pred",
    # the tf.nn-style forms take --y-true / --y-pred under their own argument names
    "`labels`": "`--y-true`",
    "`logits`": "`--y-pred`",
    "`targets`": "`--y-true`",
    "`log_input`": "`--y-pred`",
}
_FLAG_RE = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(k) for k in sorted(FLAG_NAMES, key=len, reverse=True)) + r")(?![\w])"
)


class CliError(Exception):
    """Bad usage or bad input: reported as one line on stderr, exit status 2."""


def one_line(message) -> str:
    """``message`` as a single line (runs of whitespace, newlines included, become one space)."""
    return " ".join(str(message).split())


def cli_message(message) -> str:
    """A library message with the Python argument names replaced by the command's flags."""
    return _FLAG_RE.sub(lambda m: FLAG_NAMES[m.group(1)], one_line(message))


def fail(message, status: int = EXIT_USAGE) -> int:
    """Write ``probloss: error: MESSAGE`` to stderr and return ``status``."""
    sys.stderr.write(f"probloss: error: {one_line(message)}\n")
    return status


def warn(message) -> None:
    """Write ``probloss: warning: MESSAGE`` to stderr."""
    sys.stderr.write(f"probloss: warning: {cli_message(message)}\n")


def silence_stdout() -> None:
    """Point stdout at the null device (after a broken pipe, so that exit does not fail again)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def print_json(obj) -> None:
    """Write ``obj`` as strict JSON (non-finite numbers as the strings "inf", "-inf", "nan")."""
    sys.stdout.write(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def jsonable(obj):
    """Numbers, arrays and containers as plain JSON values.

    Examples
    --------
    >>> jsonable({"a": np.array([1.0, np.inf]), "b": (np.float32(0.5), float("nan"))})
    {'a': [1.0, 'inf'], 'b': [0.5, 'nan']}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def fmt(x) -> str:
    """A number with 6 significant digits."""
    return f"{float(x):.6g}"


def fmt_array(a) -> str:
    """An array of numbers with 6 significant digits, NumPy's layout."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return fmt(a)
    return np.array2string(a, precision=6, separator=", ", max_line_width=100, threshold=200)


def nbytes(n: float) -> str:
    """A byte count for people: ``"8 B"``, ``"1.5 KiB"``, ``"2.0 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
