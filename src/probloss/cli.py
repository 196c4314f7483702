"""The ``probloss`` command (also ``python -m probloss``).

Subcommands::

    probloss compute LOSS --y-true A --y-pred B [--from-logits] [--reduction R]
                          [--sample-weight W] [--set KEY=VALUE ...]
    probloss explain --y-true A --y-pred B      which loss fits these labels and predictions, and why
    probloss list                               every loss with a one-line description
    probloss demo                               the seed documents' worked examples, checked

Arrays (``A``, ``B``, ``W``) are inline JSON (``'[[0.05, 0.95, 0], [0.1, 0.8, 0.1]]'``) or a
file: ``.npy`` (read with ``allow_pickle=False``), ``.npz`` (a single array, or
``FILE.npz:KEY``), ``.csv`` (one sample per row; a single column is read as a vector; a
header line is skipped) or ``.json``.  Integers are read as int64 and other numbers as
float64; integer predictions and weights are converted to float64.

Every subcommand has ``--help`` and ``--json`` (machine-readable output on stdout; non-finite
numbers are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``).  Exit status: 0 on
success, 1 when a check fails (a ``demo`` mismatch) or on an internal error, 2 on bad usage
or bad input, with a one-line ``probloss: error: ...`` on stderr and no traceback.

Inputs larger than a million elements are computed in chunks of rows (the numbers are the
same), with a progress bar on stderr when stderr is a terminal.

Only NumPy and probloss are imported at start-up; nothing here imports a deep-learning
framework.

Examples
--------
>>> from probloss.cli import main
>>> main(["compute", "sparse_categorical_crossentropy",
...       "--y-true", "[1, 2]", "--y-pred", "[[0.05, 0.95, 0], [0.1, 0.8, 0.1]]"])
sparse_categorical_crossentropy (reduction="sum_over_batch_size"): 1.17694
0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

import probloss
from probloss._errors import ProblossError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CHUNK_THRESHOLD = 1_000_000
"""Inputs with more elements than this are computed in chunks of rows."""
_CHUNK_ELEMENTS = 1 << 18

_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none")
_FILE_TYPES = (".npy", ".npz", ".csv", ".json")

# tf.nn-style primitives: name -> (keyword for y_true, keyword for y_pred)
_TF_NN = {
    "softmax_cross_entropy_with_logits": ("labels", "logits"),
    "sparse_softmax_cross_entropy_with_logits": ("labels", "logits"),
    "sigmoid_cross_entropy_with_logits": ("labels", "logits"),
    "weighted_cross_entropy_with_logits": ("labels", "logits"),
    "log_poisson_loss": ("targets", "log_input"),
}


# Short names used in the seed Stack Overflow thread, accepted by the command line only.
_CLI_ALIASES = {"cce": "categorical_crossentropy", "scce": "sparse_categorical_crossentropy"}


class CliError(Exception):
    """Bad usage or bad input: reported as one line, exit status 2."""


class _UsageError(CliError):
    pass


# ------------------------------------------------------------------------------ parser


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and raises instead of exiting."""

    def error(self, message):
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="probloss",
        description="Probabilistic losses from the command line: compute a loss, find out which one fits "
        "your labels and predictions, list them, or run the seed documents' worked examples.",
        epilog="Arrays are inline JSON or a .npy / .npz / .csv / .json file. Exit status: 0 success, "
        "1 failed check, 2 bad usage or input.",
    )
    parser.add_argument("--version", action="version", version=f"probloss {probloss.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    json_parent = _Parser(add_help=False)
    json_parent.add_argument("--json", action="store_true", help="write machine-readable JSON to stdout")
    data_parent = _Parser(add_help=False)
    data_parent.add_argument("--y-true", required=True, metavar="A", help="labels: inline JSON or a .npy/.npz/.csv/.json file")
    data_parent.add_argument("--y-pred", required=True, metavar="B", help="predictions: inline JSON or a .npy/.npz/.csv/.json file")
    data_parent.add_argument(
        "--chunk-size",
        type=_positive_int,
        metavar="ROWS",
        help=f"compute in chunks of ROWS rows (default: automatic above {CHUNK_THRESHOLD:,} elements)",
    )

    p = sub.add_parser(
        "compute",
        parents=[data_parent, json_parent],
        help="compute a loss",
        description="Compute LOSS(y_true, y_pred) with Keras 3's semantics and print the value(s).",
        epilog="Example: probloss compute sparse_categorical_crossentropy --y-true '[1, 2]' "
        "--y-pred '[[0.05, 0.95, 0], [0.1, 0.8, 0.1]]'",
    )
    p.add_argument("loss", metavar="LOSS", help="a loss name, class name or alias (see `probloss list`)")
    p.add_argument("--from-logits", action="store_true", help="y_pred holds logits, not probabilities")
    p.add_argument(
        "--reduction",
        default="sum_over_batch_size",
        choices=_REDUCTIONS,
        help="how per-sample losses are combined (default: sum_over_batch_size, the mean); none prints them all",
    )
    p.add_argument("--sample-weight", metavar="W", help="sample weights: inline JSON or a file")
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another option of the loss, VALUE as JSON (e.g. --set gamma=2 --set label_smoothing=0.1)",
    )
    p.set_defaults(handler=_cmd_compute)

    p = sub.add_parser(
        "explain",
        parents=[data_parent, json_parent],
        help="which loss fits these labels and predictions, and why",
        description="Inspect the labels and the predictions, recommend a loss with its options, give the "
        "equivalent call in Keras, PyTorch, TensorFlow and Optax, the memory sparse labels save, and the "
        "loss's value.",
    )
    p.add_argument(
        "--from-logits", action="store_true", help="treat y_pred as logits even if its values lie in [0, 1]"
    )
    p.set_defaults(handler=_cmd_explain)

    p = sub.add_parser(
        "list", parents=[json_parent], help="every loss with a one-line description", description="List the losses."
    )
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser(
        "demo",
        parents=[json_parent],
        help="the seed documents' worked examples, computed and checked",
        description="Compute the worked examples of the three seed documents with probloss and print them "
        "next to the numbers the documents state. Exits with status 1 on any mismatch.",
    )
    p.set_defaults(handler=_cmd_demo)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# -------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``probloss`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except CliError as exc:
        return _fail(exc)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    import warnings

    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return args.handler(args)
    except (CliError, ProblossError) as exc:
        return _fail(exc)
    except BrokenPipeError:  # e.g. `probloss list | head -1`
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write("\nprobloss: interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug must still not print a traceback at the user
        return _fail(f"internal error ({type(exc).__name__}: {exc}); please report it", status=EXIT_FAILED)
    finally:
        warnings.showwarning = previous


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _fail(message, status: int = EXIT_USAGE) -> int:
    sys.stderr.write(f"probloss: error: {_one_line(message)}\n")
    return status


def _show_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(f"probloss: warning: {_one_line(message)}\n")


def _silence_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def _jsonable(obj):
    """Numbers, arrays and containers to strict JSON (non-finite floats become strings)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


# ------------------------------------------------------------------------- array input


def load_array(spec: str, what: str) -> np.ndarray:
    """Read an array given on the command line as inline JSON or as a file path.

    ``what`` names the option (``"--y-true"``) in error messages.  Raises
    :class:`CliError` with a one-line explanation for anything unreadable.
    """
    text = spec.strip()
    path, key = _split_npz_key(text)
    if os.path.isfile(path):
        return _load_file(path, key, what)
    ext = os.path.splitext(path)[1].lower()
    looks_like_path = ext in _FILE_TYPES or os.sep in text or (os.altsep and os.altsep in text)
    if looks_like_path and not text.startswith(("[", "{")):
        if os.path.isdir(path):
            raise CliError(f"`{what}`: {path!r} is a directory; give a .npy, .npz, .csv or .json file")
        raise CliError(f"`{what}`: file {path!r} not found")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"`{what}` is neither an existing file nor valid JSON ({exc.msg} at character {exc.pos}); "
            "pass inline JSON such as '[[0.1, 0.9], [0.8, 0.2]]' or a .npy, .npz, .csv or .json file"
        ) from None
    return _from_json(obj, what)


def _split_npz_key(text: str) -> tuple[str, str | None]:
    lower = text.lower()
    idx = lower.rfind(".npz:")
    if idx >= 0 and not os.path.isfile(text):
        return text[: idx + 4], text[idx + 5 :]
    return text, None


def _from_json(obj, what: str) -> np.ndarray:
    if isinstance(obj, (dict, str)) or obj is None:
        kind = {dict: "an object", str: "a string"}.get(type(obj), "null")
        raise CliError(f"`{what}` must be a number or a (nested) list of numbers; got {kind} in the JSON")
    try:
        arr = np.asarray(obj)
    except ValueError:
        raise CliError(
            f"`{what}` is a ragged list (rows of different lengths); every row must have the same length"
        ) from None
    return _check_numeric(arr, what)


def _check_numeric(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise CliError(
            f"`{what}` must hold numbers only; got values of dtype {arr.dtype} "
            "(strings, nulls or nested objects are not arrays of numbers)"
        )
    return arr


def _load_file(path: str, key: str | None, what: str) -> np.ndarray:
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            arr = _load_npz(path, key, what)
        elif ext == ".csv":
            arr = _load_csv(path, what)
        elif ext == ".json":
            with open(path, encoding="utf-8") as fh:
                try:
                    obj = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise CliError(f"`{what}`: {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
            return _from_json(obj, what)
        else:
            raise CliError(f"`{what}`: unsupported file type {ext or '(none)'!r} for {path}; use .npy, .npz, .csv or .json")
    except CliError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise CliError(
                f"`{what}`: {path} holds pickled Python objects, which probloss never loads "
                "(allow_pickle=False); save a numeric array instead, e.g. np.save(path, np.asarray(a, dtype=float))"
            ) from None
        raise CliError(f"`{what}`: cannot read {path}: {_one_line(exc)}") from None
    except OSError as exc:
        raise CliError(f"`{what}`: cannot read {path}: {exc.strerror or _one_line(exc)}") from None
    return _check_numeric(np.asarray(arr), what)


def _load_npz(path: str, key: str | None, what: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        names = list(data.files)
        if key is None:
            default = what.lstrip("-").replace("-", "_")
            if len(names) == 1:
                key = names[0]
            elif default in names:
                key = default
            else:
                raise CliError(
                    f"`{what}`: {path} holds {len(names)} arrays ({', '.join(names)}); choose one with "
                    f"{path}:NAME"
                )
        if key not in names:
            raise CliError(f"`{what}`: {path} has no array named {key!r}; it holds {', '.join(names) or 'none'}")
        return data[key]


def _load_csv(path: str, what: str) -> np.ndarray:
    kwargs = {"delimiter": ",", "ndmin": 2, "comments": "#", "dtype": np.float64}
    try:
        arr = np.loadtxt(path, **kwargs)
    except ValueError:
        try:
            arr = np.loadtxt(path, skiprows=1, **kwargs)  # a header line
        except ValueError as exc:
            raise CliError(f"`{what}`: {path} is not a CSV of numbers ({_one_line(exc)})") from None
    if arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.size and np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**53):
        return arr.astype(np.int64)
    return arr


def _load_inputs(args, *, weights: bool = False):
    y_true = load_array(args.y_true, "--y-true")
    y_pred = load_array(args.y_pred, "--y-pred")
    if y_pred.dtype.kind in "iu":
        y_pred = y_pred.astype(np.float64)
    sw = None
    if weights and getattr(args, "sample_weight", None) is not None:
        sw = load_array(args.sample_weight, "--sample-weight").astype(np.float64)
    return y_true, y_pred, sw


# ---------------------------------------------------------------------------- registry


def _registry():
    """(function name -> function, function name -> class) from probloss's loss registry."""
    from probloss import losses

    functions = dict(getattr(losses, "_FUNCTIONS", {}))
    classes = {}
    import inspect

    for cls in getattr(losses, "_CLASSES", {}).values():
        try:
            default = inspect.signature(cls).parameters["name"].default
        except (KeyError, ValueError, TypeError):
            continue
        if isinstance(default, str):
            classes[default] = cls
    return functions, classes


def _tf_nn_wrapper(name: str):
    fn = getattr(probloss, name)
    true_kw, pred_kw = _TF_NN[name]

    def call(y_true, y_pred, **kwargs):
        return fn(**{true_kw: y_true, pred_kw: y_pred}, **kwargs)

    call.__name__ = name
    return fn, call


def _parse_options(items: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CliError(f"`--set` expects KEY=VALUE (e.g. --set gamma=2); got {item!r}")
        if key in ("reduction", "from_logits"):
            raise CliError(f"`--set {key}`: use the --{key.replace('_', '-')} option instead")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def build_loss(name: str, *, from_logits: bool = False, reduction: str = "sum_over_batch_size", options=None):
    """A :class:`probloss.Loss` for the loss called ``name`` on the command line.

    ``name`` may be a Keras function name, a class name, an alias (``bce``, ``kld``) or a
    ``tf.nn``-style primitive; hyphens count as underscores.  Returns ``(canonical name, loss)``.
    """
    import inspect

    from probloss.losses import LossFunctionWrapper

    options = dict(options or {})
    key = name.strip().replace("-", "_")
    key = _CLI_ALIASES.get(key.lower(), key)
    functions, classes = _registry()
    if key in _TF_NN:
        fn, call = _tf_nn_wrapper(key)
        params = inspect.signature(fn).parameters
        allowed = [p for p in params if p not in _TF_NN[key]]
        _check_options(key, options, allowed)
        for p in allowed:
            if params[p].default is inspect.Parameter.empty and p not in options:
                raise CliError(f"{key} needs `--set {p}=VALUE` (e.g. --set {p}=2)")
        if from_logits and key == "log_poisson_loss":
            raise CliError("`--from-logits` does not apply to log_poisson_loss: it takes log-rates (`--y-pred`)")
        return key, LossFunctionWrapper(call, reduction=reduction, name=key, **options)
    try:
        found = probloss.get(key)
    except ProblossError:
        import difflib

        known = sorted(set(functions) | set(_TF_NN) | {c.__name__ for c in classes.values()})
        close = difflib.get_close_matches(key, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CliError(f"unknown loss {name!r}{hint} (`probloss list` shows them all)") from None
    canonical = getattr(found, "name", None) or getattr(found, "__name__", key)
    cls = type(found) if isinstance(found, probloss.Loss) else classes.get(canonical)
    if cls is None:
        raise CliError(f"loss {name!r} cannot be computed from the command line")
    params = inspect.signature(cls).parameters
    allowed = [p for p in params if p not in ("name", "reduction", "from_logits", "dtype")] + ["dtype"]
    _check_options(canonical, options, allowed)
    if from_logits:
        if "from_logits" not in params:
            raise CliError(f"`--from-logits` does not apply to {canonical}: it takes probabilities or rates, not logits")
        options["from_logits"] = True
    return canonical, cls(reduction=reduction, **options)


def _check_options(name, options, allowed):
    for key in options:
        if key not in allowed:
            shown = ", ".join(allowed) or "none"
            raise CliError(f"`--set {key}`: {name} has no option {key!r}; its options are: {shown}")


# --------------------------------------------------------------------------- computing


class Progress:
    """A small progress bar on a terminal; silent when the stream is not a TTY.

    Examples
    --------
    >>> import io
    >>> bar = Progress(4, stream=io.StringIO())  # not a terminal: nothing is written
    >>> bar.update(2); bar.close()
    >>> bar.stream.getvalue()
    ''
    """

    def __init__(self, total: int, label: str = "computing", stream=None, enabled: bool | None = None, width: int = 30):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.width = width
        self._shown = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        frac = min(max(done / self.total, 0.0), 1.0)
        filled = int(round(self.width * frac))
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {frac:4.0%} {done:,}/{self.total:,} rows")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\n")
            self.stream.flush()


def evaluate(loss, y_true, y_pred, sample_weight=None, *, chunk_rows: int | None = None, progress=None):
    """``loss(y_true, y_pred, sample_weight)``, computed in chunks of rows for large inputs.

    Chunking applies when ``y_pred`` has more than :data:`CHUNK_THRESHOLD` elements (or
    ``chunk_rows`` is given), at least two dimensions, the class axis is not the first,
    and ``y_true`` has as many rows.  Each chunk gives per-sample losses (and the
    ``ignore_class`` mask); they are joined and reduced once, exactly as the loss's own
    ``__call__`` reduces, so the number does not depend on the chunk size.
    """
    rows = y_pred.shape[0] if y_pred.ndim else 0
    axis = getattr(loss, "_fn_kwargs", {}).get("axis", -1)
    chunkable = (
        y_pred.ndim >= 2
        and isinstance(axis, int)
        and axis % y_pred.ndim != 0
        and y_true.ndim >= 1
        and y_true.shape[0] == rows
        and getattr(loss, "dtype", None) is None
    )
    if chunk_rows is None and y_pred.size > CHUNK_THRESHOLD:
        chunk_rows = max(1, _CHUNK_ELEMENTS // max(1, y_pred.size // max(rows, 1)))
    if not chunkable or chunk_rows is None or chunk_rows >= rows:
        return np.asarray(loss(y_true, y_pred, sample_weight=sample_weight))
    from probloss._reduction import reduce_values

    bar = progress if progress is not None else Progress(rows)
    values, masks = [], []
    try:
        for start in range(0, rows, chunk_rows):
            stop = min(start + chunk_rows, rows)
            v, m = _values_and_mask(loss, y_true[start:stop], y_pred[start:stop])
            values.append(np.asarray(v))
            masks.append(None if m is None else np.asarray(m))
            bar.update(stop)
    finally:
        bar.close()
    values = np.concatenate(values, axis=0)
    mask = None if masks[0] is None else np.concatenate(masks, axis=0)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=values.dtype)
        if not np.all(np.isfinite(sample_weight)):
            raise CliError("`--sample-weight` contains NaN or inf")
    return np.asarray(reduce_values(values, np, reduction=loss.reduction, sample_weight=sample_weight, mask=mask))


def _values_and_mask(loss, y_true, y_pred):
    """Per-sample losses and the ``ignore_class`` mask (or None), as ``loss.__call__`` gets them."""
    from probloss._compat import namespace

    inner = getattr(loss, "_values_and_mask", None)
    if inner is not None:
        return inner(y_true, y_pred, namespace(y_true, y_pred))
    out = loss.call(y_true, y_pred)
    return out if isinstance(out, tuple) else (out, None)


def _fmt(x) -> str:
    return f"{float(x):.6g}"


def _fmt_array(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _fmt(a)
    return np.array2string(np.asarray(a, dtype=np.float64), precision=6, separator=", ", max_line_width=100, threshold=200)


# ----------------------------------------------------------------------------- compute


def _cmd_compute(args) -> int:
    options = _parse_options(args.options)
    name, loss = build_loss(args.loss, from_logits=args.from_logits, reduction=args.reduction, options=options)
    y_true, y_pred, sw = _load_inputs(args, weights=True)
    value = evaluate(loss, y_true, y_pred, sw, chunk_rows=args.chunk_size)
    if args.json:
        _print_json(
            {
                "loss": name,
                "reduction": args.reduction,
                "from_logits": bool(args.from_logits),
                "options": options,
                "shape": list(value.shape),
                "value": value,
            }
        )
    elif value.ndim == 0:
        print(f'{name} (reduction="{args.reduction}"): {_fmt(value)}')
    else:
        print(f'{name} (reduction="{args.reduction}"), shape {tuple(value.shape)}:')
        print(_fmt_array(value))
    return EXIT_OK


# -------------------------------------------------------------------------------- list


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].replace("``", "").strip() if doc else ""


def _cmd_list(args) -> int:
    functions, classes = _registry()
    rows = []
    for name, fn in sorted(functions.items()):
        cls = classes.get(name)
        rows.append({"name": name, "class": cls.__name__ if cls else None, "kind": "keras", "description": _first_line(fn)})
    for name in _TF_NN:
        rows.append({"name": name, "class": None, "kind": "tf.nn", "description": _first_line(getattr(probloss, name))})
    from probloss import info

    info_rows = [{"name": f"info.{n}", "description": _first_line(getattr(info, n))} for n in info.__all__]
    aliases = {**dict(getattr(probloss.losses, "_ALIASES", {})), **_CLI_ALIASES}
    if args.json:
        _print_json({"losses": rows, "aliases": aliases, "info": info_rows})
        return EXIT_OK
    print("Losses (use with `probloss compute NAME` or the class name):")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        cls = f"  [{r['class']}]" if r["class"] else ""
        print(f"  {r['name']:<{width}}  {r['description']}{cls}")
    if aliases:
        print("Aliases: " + ", ".join(f"{k} = {v}" for k, v in sorted(aliases.items())))
    print("\nInformation theory (probloss.info, Python API):")
    width = max(len(r["name"]) for r in info_rows)
    for r in info_rows:
        print(f"  {r['name']:<{width}}  {r['description']}")
    return EXIT_OK


# ----------------------------------------------------------------------------- explain

_PROBS_TOL = 1e-2  # rows "sum to 1" within this (printed probabilities are often rounded)

_LABEL_TEXT = {
    "class_indices": "class indices (one integer per sample: sparse labels)",
    "one_hot": "one-hot rows (exactly one 1 per sample)",
    "multi_hot": "multi-hot rows (0/1, any number of 1s per sample: multi-label)",
    "binary": "binary 0/1 labels (one per output)",
    "distributions": "probability distributions (soft labels, rows sum to 1)",
    "soft_binary": "soft binary targets (each value in [0, 1], rows do not sum to 1)",
    "counts": "counts (whole numbers >= 0, some above 1)",
    "regression": "real-valued regression targets",
}
_PRED_TEXT = {
    "probabilities": "probabilities summing to 1 along the last axis (a softmax output)",
    "independent_probabilities": "independent probabilities in [0, 1] (sigmoid outputs; rows do not sum to 1)",
    "logits": "logits (unnormalised real scores; values outside [0, 1])",
    "rates": "rates (non-negative predicted means)",
    "log_rates": "log-rates (real values, some negative)",
    "values": "real values",
}


def _whole(a: np.ndarray) -> bool:
    return bool(np.all(a == np.floor(a)))


def inspect_inputs(y_true: np.ndarray, y_pred: np.ndarray, *, force_logits: bool = False) -> dict:
    """Classify the label format and the prediction format (see ``probloss explain``).

    Returns a dict with ``labels`` (kind, classes, samples) and ``predictions`` (kind).
    Raises :class:`CliError` for inputs that fit no format (with the reason).
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.size == 0 or p.size == 0:
        raise CliError("`--y-true` and `--y-pred` must not be empty")
    if p.ndim == 0:
        raise CliError("`--y-pred` is a single number; give a list with one prediction per label, e.g. '[0.5]'")
    for what, a in (("--y-true", t), ("--y-pred", p)):
        if not np.all(np.isfinite(a)):
            raise CliError(f"`{what}` contains NaN or inf; find where it first appears upstream")
    sparse_shape = p.ndim >= 1 and p.shape[-1] >= 2 and t.shape in (p.shape[:-1], p.shape[:-1] + (1,))
    if sparse_shape and t.shape != p.shape:
        k = p.shape[-1]
        if not _whole(t):
            bad = t[t != np.floor(t)].flat[0]
            raise CliError(
                f"`--y-true` has one value per sample (shape {t.shape}) for {k} classes, so it should hold class "
                f"indices, but it holds {bad:g}; class indices are whole numbers in [0, {k - 1}]"
            )
        if t.min() < 0 or t.max() >= k:
            bad = t.max() if t.max() >= k else t.min()
            raise CliError(
                f"`--y-true` holds class index {bad:g} but `--y-pred` has {k} classes (last axis), so indices "
                f"must be in [0, {k - 1}]; check the label encoding or the size of the model's output"
            )
        labels = {"kind": "class_indices", "classes": k, "samples": int(t.size)}
    else:
        if t.shape == p.shape:
            tt = t
        elif t.shape + (1,) == p.shape:
            tt, p = t, p[..., 0]
        elif p.shape + (1,) == t.shape:
            tt = t[..., 0]
        else:
            want = f"{p.shape[:-1]} (class indices)" if p.ndim >= 1 else "()"
            raise CliError(
                f"`--y-true` of shape {t.shape} does not fit `--y-pred` of shape {p.shape}: labels must have the "
                f"shape of the predictions (one-hot, multi-hot, binary, soft labels, counts) or {want}"
            )
        k = tt.shape[-1] if tt.ndim >= 2 else 1
        samples = int(tt.size // k) if tt.ndim >= 2 else int(tt.size)
        binary01 = bool(np.all((tt == 0) | (tt == 1)))
        in01 = bool(tt.min() >= 0 and tt.max() <= 1)
        if binary01 and k >= 2:
            kind = "one_hot" if bool(np.all(tt.sum(axis=-1) == 1)) else "multi_hot"
        elif binary01:
            kind = "binary"
        elif in01 and k >= 2 and bool(np.all(np.abs(tt.sum(axis=-1) - 1) <= _PROBS_TOL)):
            kind = "distributions"
        elif in01:
            kind = "soft_binary"
        elif _whole(tt) and tt.min() >= 0:
            kind = "counts"
        else:
            kind = "regression"
        labels = {"kind": kind, "classes": k, "samples": samples}
    kind = labels["kind"]
    if kind == "counts":
        pkind = "log_rates" if p.min() < 0 else "rates"
    elif kind == "regression":
        pkind = "values"
    elif force_logits or p.min() < 0 or p.max() > 1:
        pkind = "logits"
    elif kind not in ("binary", "soft_binary") and p.ndim >= 1 and p.shape[-1] >= 2 and bool(
        np.all(np.abs(p.sum(axis=-1) - 1) <= _PROBS_TOL)
    ):
        pkind = "probabilities"
    else:
        pkind = "independent_probabilities"
    return {"labels": labels, "predictions": {"kind": pkind}}


def _equivalents(loss: str, logits: bool, labels_kind: str) -> dict[str, str]:
    """The same loss in probloss, Keras, PyTorch, TensorFlow and Optax (mean over the batch)."""
    fl = "from_logits=True" if logits else ""
    if loss == "sparse_categorical_crossentropy":
        return {
            "probloss": f"probloss.SparseCategoricalCrossentropy({fl})(y_true, y_pred)",
            "keras": f"keras.losses.SparseCategoricalCrossentropy({fl})(y_true, y_pred)",
            "pytorch": "torch.nn.functional.cross_entropy(logits, y_true)  # y_true int64, class axis 1"
            if logits
            else "torch.nn.functional.nll_loss(torch.log(y_pred), y_true)  # y_true int64, class axis 1",
            "tensorflow": "tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_true, logits=logits))"
            if logits
            else "tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred))",
            "optax": "optax.softmax_cross_entropy_with_integer_labels(logits, y_true).mean()"
            if logits
            else "optax.softmax_cross_entropy_with_integer_labels(jnp.log(y_pred), y_true).mean()",
        }
    if loss == "categorical_crossentropy":
        if logits:
            torch_call = "torch.nn.functional.cross_entropy(logits, y_true)  # probability targets, class axis 1"
        elif labels_kind == "one_hot":
            torch_call = "torch.nn.functional.nll_loss(torch.log(y_pred), y_true.argmax(dim=1))"
        else:
            torch_call = "-torch.special.xlogy(y_true, y_pred).sum(dim=1).mean()"
        return {
            "probloss": f"probloss.CategoricalCrossentropy({fl})(y_true, y_pred)",
            "keras": f"keras.losses.CategoricalCrossentropy({fl})(y_true, y_pred)",
            "pytorch": torch_call,
            "tensorflow": "tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_true, logits=logits))"
            if logits
            else "tf.reduce_mean(tf.keras.losses.categorical_crossentropy(y_true, y_pred))",
            "optax": "optax.softmax_cross_entropy(logits, y_true).mean()"
            if logits
            else "optax.safe_softmax_cross_entropy(jnp.log(y_pred), y_true).mean()",
        }
    if loss == "binary_crossentropy":
        return {
            "probloss": f"probloss.BinaryCrossentropy({fl})(y_true, y_pred)",
            "keras": f"keras.losses.BinaryCrossentropy({fl})(y_true, y_pred)",
            "pytorch": "torch.nn.functional.binary_cross_entropy_with_logits(logits, y_true)  # float targets"
            if logits
            else "torch.nn.functional.binary_cross_entropy(y_pred, y_true)  # float targets",
            "tensorflow": "tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits))"
            if logits
            else "tf.reduce_mean(tf.keras.losses.binary_crossentropy(y_true, y_pred))",
            "optax": "optax.sigmoid_binary_cross_entropy(logits, y_true).mean()"
            if logits
            else "optax.sigmoid_binary_cross_entropy(jax.scipy.special.logit(y_pred), y_true).mean()",
        }
    if loss == "poisson":
        return {
            "probloss": "probloss.Poisson()(y_true, y_pred)",
            "keras": "keras.losses.Poisson()(y_true, y_pred)",
            "pytorch": "torch.nn.functional.poisson_nll_loss(y_pred, y_true, log_input=False, eps=1e-7)",
            "tensorflow": "tf.reduce_mean(tf.keras.losses.poisson(y_true, y_pred))",
            "optax": "jnp.mean(y_pred - y_true * jnp.log(y_pred + 1e-7))  # Optax has no Poisson loss",
        }
    if loss == "log_poisson_loss":
        return {
            "probloss": "probloss.log_poisson_loss(targets=y_true, log_input=y_pred).mean()",
            "keras": "keras.losses.Poisson()(y_true, keras.ops.exp(y_pred))",
            "pytorch": "torch.nn.functional.poisson_nll_loss(y_pred, y_true, log_input=True)",
            "tensorflow": "tf.reduce_mean(tf.nn.log_poisson_loss(targets=y_true, log_input=y_pred))",
            "optax": "jnp.mean(jnp.exp(y_pred) - y_true * y_pred)  # Optax has no Poisson loss",
        }
    # regression
    return {
        "probloss": "(none: probloss has probabilistic losses only)",
        "keras": "keras.losses.MeanSquaredError()(y_true, y_pred)",
        "pytorch": "torch.nn.functional.mse_loss(y_pred, y_true)  # or gaussian_nll_loss(mean, y_true, var)",
        "tensorflow": "tf.keras.losses.MeanSquaredError()(y_true, y_pred)",
        "optax": "optax.squared_error(y_pred, y_true).mean()",
    }


def _nbytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _memory(samples: int, classes: int) -> dict:
    return {
        "samples": samples,
        "classes": classes,
        "int32_bytes": 4 * samples,
        "int64_bytes": 8 * samples,
        "one_hot_float32_bytes": 4 * samples * classes,
        "ratio": classes,
        "per_million_samples": {"int32_bytes": 4_000_000, "one_hot_float32_bytes": 4_000_000 * classes},
    }


def _imbalance_note(y_true: np.ndarray, kind: str, classes: int) -> str | None:
    t = np.asarray(y_true, dtype=np.float64)
    if kind == "class_indices":
        freq = np.bincount(t.astype(np.int64).ravel(), minlength=classes) / t.size
    elif kind == "one_hot":
        freq = t.reshape(-1, classes).mean(axis=0)
    elif kind in ("binary", "multi_hot"):
        pos = t.reshape(-1, classes).mean(axis=0) if kind == "multi_hot" else np.array([t.mean()])
        freq = np.minimum(pos, 1 - pos)
    else:
        return None
    if t.size < 10 or freq.min() >= 0.1:
        return None
    focal = "categorical_focal_crossentropy" if kind in ("class_indices", "one_hot") else "binary_focal_crossentropy"
    return (
        f"class imbalance: the rarest class makes up {freq.min():.1%} of the labels; if the model ignores it, "
        f"try {focal} (gamma=2 down-weights easy examples) or sample weights"
    )


def explain(y_true: np.ndarray, y_pred: np.ndarray, *, force_logits: bool = False, chunk_rows=None) -> dict:
    """Recommend a loss for these labels and predictions; returns the report as a dict."""
    found = inspect_inputs(y_true, y_pred, force_logits=force_logits)
    lk, pk = found["labels"]["kind"], found["predictions"]["kind"]
    k, n = found["labels"]["classes"], found["labels"]["samples"]
    logits = pk == "logits"
    notes: list[str] = []
    memory = None
    fits = True
    options: dict[str, Any] = {}
    softmax_or_logits = "logits (softmax is applied inside the loss)" if logits else "softmax probabilities"
    if lk == "class_indices":
        loss = "sparse_categorical_crossentropy"
        why = (
            f"each sample has one integer class out of {k} mutually exclusive classes, and the predictions are "
            f"{softmax_or_logits}; the sparse loss reads the index directly, no one-hot needed"
        )
        memory = _memory(n, k)
    elif lk == "one_hot":
        loss = "categorical_crossentropy"
        why = (
            f"each row is one-hot over {k} mutually exclusive classes and the predictions are {softmax_or_logits}. "
            "sparse_categorical_crossentropy on argmax(y_true) gives the same value with less memory"
        )
        memory = _memory(n, k)
    elif lk == "distributions":
        loss = "categorical_crossentropy"
        why = (
            "the labels are soft distributions over classes (e.g. label smoothing or distillation targets); "
            "categorical cross-entropy accepts soft labels, the sparse form cannot represent them. "
            "kl_divergence gives the same gradients with respect to y_pred (it differs by the constant entropy of y_true)"
        )
        notes.append("sparse labels cannot hold soft distributions, so there is no memory saving to be had")
    elif lk in ("multi_hot", "binary", "soft_binary"):
        loss = "binary_crossentropy"
        if lk == "multi_hot":
            why = (
                f"several of the {k} classes can be true at once (multi-label), so each class is its own yes/no "
                "question: a sigmoid per class and binary cross-entropy, not softmax"
            )
            notes.append("sparse labels cannot hold several classes per sample, so there is no memory saving to be had")
        elif lk == "binary":
            why = "each target is a single yes/no label, so binary cross-entropy on a sigmoid output fits"
        else:
            why = "each target is a probability of its own (soft binary targets), which binary cross-entropy accepts"
        if logits:
            why += "; the predictions are logits, so pass from_logits=True (more stable than applying sigmoid first)"
    elif lk == "counts":
        if pk == "log_rates":
            loss = "log_poisson_loss"
            why = (
                "the targets are counts and the predictions have negative values, so they look like log-rates: "
                "the Poisson negative log-likelihood on log-rates (tf.nn.log_poisson_loss) fits"
            )
        else:
            loss = "poisson"
            why = (
                "the targets are counts (events per interval) and the predictions are non-negative rates: the "
                "Poisson negative log-likelihood fits (up to the constant log(y!))"
            )
    else:
        fits = False
        loss = "mean_squared_error"
        why = (
            "the targets are real-valued, so this is regression: probabilistic losses (cross-entropy, focal, KL) "
            "compare probabilities and do not fit. Use mean squared error, or the Gaussian negative log-likelihood "
            "if the model also predicts a variance"
        )
        if np.all(np.asarray(y_true) >= 0):
            notes.append("if the targets are counts or non-negative rates, the Poisson loss fits instead")
    loss_takes_logits = lk not in ("counts", "regression")
    if loss_takes_logits:
        options["from_logits"] = logits
    # warnings about mismatched heads
    if lk in ("class_indices", "one_hot", "distributions") and pk == "independent_probabilities":
        notes.append(
            "the prediction rows do not sum to 1: Keras (and probloss) renormalise them, but if the classes are "
            "mutually exclusive the model should end in softmax; if several classes can be true at once, use "
            "binary_crossentropy with multi-hot labels instead"
        )
    if lk == "multi_hot" and pk == "probabilities":
        notes.append(
            "the prediction rows sum to 1 (softmax), which makes classes compete: for multi-label targets end the "
            "model in a sigmoid per class"
        )
    p_arr = np.asarray(y_pred, dtype=np.float64)
    if loss_takes_logits and not logits and bool(np.any((p_arr < 1e-7) | (p_arr > 1 - 1e-7))):
        notes.append(
            "some predicted probabilities are 0 or 1: Keras and probloss clip them to [1e-7, 1 - 1e-7], PyTorch and "
            "Optax do not (a 0 on a true class gives inf there), so the libraries can disagree. Passing logits "
            "with from_logits=True avoids the problem"
        )
    imbalance = _imbalance_note(y_true, lk, k) if lk in ("class_indices", "one_hot", "binary", "multi_hot") else None
    if imbalance:
        notes.append(imbalance)

    if fits:
        _, loss_obj = build_loss(loss, **({"from_logits": True} if logits and loss != "log_poisson_loss" else {}))
        value = float(evaluate(loss_obj, np.asarray(y_true), np.asarray(y_pred, dtype=np.float64), chunk_rows=chunk_rows))
        value_text = f"mean {loss} over the batch"
    else:
        value = float(np.mean((np.asarray(y_true, dtype=np.float64) - _aligned(y_pred, y_true)) ** 2))
        value_text = "mean squared error"
    return {
        "labels": {
            "kind": lk,
            "description": _LABEL_TEXT[lk],
            "shape": list(np.shape(y_true)),
            "dtype": str(np.asarray(y_true).dtype),
            "samples": n,
            "classes": k,
        },
        "predictions": {
            "kind": pk,
            "description": _PRED_TEXT[pk],
            "shape": list(np.shape(y_pred)),
            "dtype": str(np.asarray(y_pred).dtype),
        },
        "fits": fits,
        "recommendation": {"loss": loss, "options": options, "why": why},
        "equivalents": _equivalents(loss, logits, lk),
        "memory": memory,
        "value": value,
        "value_description": value_text,
        "notes": notes,
    }


def _aligned(y_pred, y_true):
    p = np.asarray(y_pred, dtype=np.float64)
    t = np.asarray(y_true)
    if p.shape == t.shape + (1,):
        return p[..., 0]
    if t.shape == p.shape + (1,):
        return p[..., None]
    return p


def _cmd_explain(args) -> int:
    y_true, y_pred, _ = _load_inputs(args)
    report = explain(y_true, y_pred, force_logits=args.from_logits, chunk_rows=args.chunk_size)
    if args.json:
        _print_json(report)
        return EXIT_OK
    lab, pred, rec = report["labels"], report["predictions"], report["recommendation"]
    print(f"Labels (y_true):      {lab['description']}; shape {tuple(lab['shape'])}, {lab['dtype']}")
    print(f"Predictions (y_pred): {pred['description']}; shape {tuple(pred['shape'])}")
    print()
    opts = ", ".join(f"{k}={v!r}" for k, v in rec["options"].items())
    if report["fits"]:
        print(f"Use: {rec['loss']}" + (f" with {opts}" if opts else ""))
    else:
        print("These probabilistic losses do not fit: this is regression.")
        print(f"Use instead: {rec['loss']} (or a Gaussian negative log-likelihood)")
    print(f"Why: {rec['why']}.")
    print()
    print("Equivalent calls:")
    for lib, label in (("probloss", "probloss"), ("keras", "Keras"), ("pytorch", "PyTorch"), ("tensorflow", "TensorFlow"), ("optax", "Optax")):
        print(f"  {label + ':':<12} {report['equivalents'][lib]}")
    mem = report["memory"]
    if mem:
        print()
        print(
            f"Memory: as class indices, {mem['samples']:,} label{'s' if mem['samples'] != 1 else ''} take "
            f"{_nbytes(mem['int32_bytes'])} (int32; "
            f"{_nbytes(mem['int64_bytes'])} as the int64 PyTorch wants); one-hot float32 takes "
            f"{_nbytes(mem['one_hot_float32_bytes'])}, {mem['ratio']}x more (one float per class). Per million "
            f"samples: {_nbytes(mem['per_million_samples']['int32_bytes'])} vs "
            f"{_nbytes(mem['per_million_samples']['one_hot_float32_bytes'])}."
        )
    print()
    print(f"Value: {_fmt(report['value'])} ({report['value_description']})")
    if report["notes"]:
        print()
        print("Notes:")
        for note in report["notes"]:
            print(f"  - {note}")
    return EXIT_OK


# -------------------------------------------------------------------------------- demo

SEEDS = {
    1: "Stack Overflow thread: sparse vs categorical cross-entropy",
    2: "Keras 3 probabilistic losses walkthrough",
    3: "article: softmax / sigmoid / binary cross-entropy and information theory",
}


def _demo_examples():
    """(seed, example, computed value, document's value, how the document gives it).

    ``how`` is ``"stated"`` when the document prints the number (compared at the
    precision it is printed with) or ``"formula"`` when it gives the formula, which is
    evaluated here in float64 with ``math`` (compared to 1e-5 relative).
    """
    import probloss as pl
    from probloss import info
    from probloss._ops import softmax

    ln = math.log
    p_classic = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    ex = []
    ex.append((1, "CategoricalCrossentropy()([[0,1,0],[0,0,1]], [[.05,.95,0],[.1,.8,.1]])",
               pl.CategoricalCrossentropy()([[0, 1, 0], [0, 0, 1]], p_classic), "1.177", "stated"))
    ex.append((1, "SparseCategoricalCrossentropy()([1, 2], same predictions)",
               pl.SparseCategoricalCrossentropy()([1, 2], p_classic), "1.177", "stated"))
    bce = -(ln(0.9) + ln(0.9) + ln(0.8) + ln(0.8)) / 4
    ex.append((2, "BinaryCrossentropy()([0,1,1,0], [0.1,0.9,0.8,0.2]): mean of -y log p - (1-y) log(1-p)",
               pl.BinaryCrossentropy()([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.2]), bce, "formula"))
    pmf = 5**3 * math.exp(-5) / math.factorial(3)
    poisson_loss = pl.Poisson()([3.0], [5.0])
    ex.append((2, "P(X=3 | lambda=5) = exp(-(Poisson()([3], [5]) + log 3!)): the Poisson loss is the NLL minus log k!",
               np.exp(-(np.asarray(poisson_loss, dtype=np.float64) + math.lgamma(4))), pmf, "formula"))
    kl = 0.4 * ln(0.4 / 0.3) + 0.6 * ln(0.6 / 0.7)
    P, Q = np.array([0.4, 0.6]), np.array([0.3, 0.7])
    ex.append((2, "info.kl_divergence(P=[0.4, 0.6], Q=[0.3, 0.7]) = sum P log(P/Q)", info.kl_divergence(P, Q), kl, "formula"))
    ex.append((2, "KLDivergence()(P, Q), the Keras-style loss (clips at 1e-7)", pl.KLDivergence()(P, Q), kl, "formula"))
    ex.append((3, "softmax([1, 2, 3])", softmax(np.array([1.0, 2.0, 3.0]), np), ["0.09", "0.24", "0.67"], "stated"))
    y5 = [[0, 0, 0, 1, 0]]
    ex.append((3, "categorical_crossentropy(y=[0,0,0,1,0], p=[.1,.15,.05,.6,.1]) = -log 0.6",
               pl.categorical_crossentropy(y5, [[0.1, 0.15, 0.05, 0.6, 0.1]])[0], -ln(0.6), "formula"))
    ex.append((3, "categorical_crossentropy(y=[0,0,0,1,0], p=[.15,.2,.4,.1,.15]) = -log 0.1",
               pl.categorical_crossentropy(y5, [[0.15, 0.2, 0.4, 0.1, 0.15]])[0], -ln(0.1), "formula"))
    half = (-ln(0.8) - ln(0.6)) / 2
    y2, p2 = [[1, 0], [0, 1]], [[0.8, 0.2], [0.4, 0.6]]
    ex.append((3, "two-sample batch, softmax form: CategoricalCrossentropy()([[1,0],[0,1]], [[.8,.2],[.4,.6]])",
               pl.CategoricalCrossentropy()(y2, p2), half, "formula"))
    ex.append((3, "same, softmax_cross_entropy_with_logits on logits log(p), averaged",
               np.mean(pl.softmax_cross_entropy_with_logits(labels=y2, logits=np.log(np.array(p2))) ), half, "formula"))
    ex.append((3, "same, sigmoid form: BinaryCrossentropy()([0, 1], [0.2, 0.6])",
               pl.BinaryCrossentropy()([0, 1], [0.2, 0.6]), half, "formula"))
    logits = [[0.5, 0.7, 0.3], [0.8, 0.2, 0.9]]
    ex.append((3, "sigmoid_cross_entropy_with_logits(labels=ones, logits=[[.5,.7,.3],[.8,.2,.9]])",
               pl.sigmoid_cross_entropy_with_logits(labels=np.ones((2, 3)), logits=logits),
               [["0.47407699", "0.40318602", "0.5543552"], ["0.37110069", "0.59813887", "0.34115386"]], "stated"))
    ex.append((3, "sigmoid_cross_entropy_with_logits(labels=zeros, same logits)",
               pl.sigmoid_cross_entropy_with_logits(labels=np.zeros((2, 3)), logits=logits),
               [["0.97407699", "1.10318601", "0.85435522"], ["1.17110074", "0.79813886", "1.24115384"]], "stated"))
    p_true, q_model = np.array([1.0, 0.0, 0.0]), np.array([0.7, 0.2, 0.1])
    ex.append((3, "KL(p||q) = H(p, q) - H(p) = -log 0.7 for p=[1,0,0], q=[.7,.2,.1]: info.cross_entropy - info.entropy",
               info.cross_entropy(p_true, q_model) - info.entropy(p_true), -ln(0.7), "formula"))
    return ex


def _check(computed, document, how) -> bool:
    c = np.asarray(computed, dtype=np.float64)
    if how == "stated":
        d = np.asarray(document, dtype=object)
        decimals = np.vectorize(lambda s: len(s.split(".")[1]) if "." in s else 0)(d).astype(np.float64)
        values = np.vectorize(float)(d).astype(np.float64)
        tol = 0.5 * 10.0**-decimals + 1e-6
        return bool(c.shape == values.shape and np.all(np.abs(c - values) <= tol))
    d = np.asarray(document, dtype=np.float64)
    return bool(c.shape == d.shape and np.allclose(c, d, rtol=1e-5, atol=1e-7))


def _show(value, how=None) -> str:
    if how == "stated":
        a = np.asarray(value, dtype=object)
        return str(a.tolist()).replace("'", "") if a.ndim else str(value)
    a = np.asarray(value, dtype=np.float64)
    return _fmt(a) if a.ndim == 0 else _fmt_array(a)


def _marks() -> tuple[str, str]:
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓✗".encode(enc)
    except (UnicodeEncodeError, LookupError):
        return "ok", "MISMATCH"
    return "✓", "✗"


def _cmd_demo(args) -> int:
    examples = _demo_examples()
    results = []
    for seed, text, computed, document, how in examples:
        results.append(
            {
                "seed": seed,
                "example": text,
                "computed": np.asarray(computed, dtype=np.float64),
                "document": document if how == "stated" else float(document),
                "document_gives": how,
                "ok": _check(computed, document, how),
            }
        )
    failed = sum(not r["ok"] for r in results)
    if args.json:
        _print_json({"examples": results, "all_ok": failed == 0, "seeds": SEEDS})
        return EXIT_FAILED if failed else EXIT_OK
    good, bad = _marks()
    print("probloss demo: the seed documents' worked examples, computed with probloss")
    print('("document" is the number the document prints, or the value of the formula it gives)')
    for seed in sorted(SEEDS):
        print(f"\nSeed {seed}: {SEEDS[seed]}")
        for i, r in enumerate(results, 1):
            if r["seed"] != seed:
                continue
            doc = _show(r["document"], r["document_gives"])
            doc = doc if r["document_gives"] == "stated" else f"{doc} (formula)"
            print(f"{i:3d}. {r['example']}")
            comp = _show(r["computed"])
            sep = "\n" + " " * 16 if "\n" in comp or len(comp) + len(doc) > 70 else "   "
            comp = comp.replace("\n", "\n" + " " * 16)
            print(f"     probloss:  {comp}{sep}document: {doc}   {good if r['ok'] else bad}")
    print(
        "\nNote (seed 1): sparse labels store b class indices where one-hot stores b*k numbers; for "
        "Fashion-MNIST's 60,000 labels and 10 classes that is 60,000 vs 600,000 values."
    )
    print(f"\n{len(results) - failed} of {len(results)} examples match the documents.")
    return EXIT_FAILED if failed else EXIT_OK
