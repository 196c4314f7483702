"""Reading the arrays given on the command line: inline JSON or a .npy/.npz/.csv/.json file.

Nothing here trusts the input.  Sizes are checked before data are read (a ``.npy``
header's shape and dtype, an ``.npz`` member's uncompressed size, a text file's length),
only regular files are opened, nothing is unpickled, and error messages name the file
and a position in it but never quote its contents.

Examples
--------
>>> load_array("[[0.05, 0.95, 0], [0.1, 0.8, 0.1]]", "--y-pred").shape
(2, 3)
>>> load_array('{"labels": [1, 2]}', "--y-true").tolist()
[1, 2]
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from ._output import CliError

DEFAULT_MAX_BYTES = 1 << 30
TEXT_FRACTION = 16
"""Text input (JSON, CSV) may be at most ``max_bytes / TEXT_FRACTION`` characters."""
FILE_TYPES = (".npy", ".npz", ".csv", ".json")
_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_SLACK = 1 << 16  # an .npz member is its .npy header (< 64 KiB) plus the data
_MAX_NAMES_SHOWN = 20


@dataclass(frozen=True)
class Limits:
    """How much may be loaded, and how a CSV file's first line is read."""

    max_bytes: int = DEFAULT_MAX_BYTES
    header: str = "auto"

    def check_array(self, nbytes: int, source: str) -> None:
        """Refuse an array of ``nbytes`` bytes above the limit."""
        if nbytes > self.max_bytes:
            raise CliError(
                f"{source} holds an array of {nbytes:,} bytes, more than the {self.max_bytes:,} allowed; "
                "pass --max-bytes N (e.g. --max-bytes 4G) to allow more"
            )

    def check_text(self, chars: int, source: str) -> None:
        """Refuse text input whose parsing could take far more memory than the limit."""
        allowed = self.max_bytes // TEXT_FRACTION
        if chars > allowed:
            raise CliError(
                f"{source} is {chars:,} characters of text, more than the {allowed:,} allowed (1/{TEXT_FRACTION} "
                "of --max-bytes); save large arrays as .npy, or raise --max-bytes"
            )


def load_array(spec: str, what: str, limits: Limits = Limits()) -> np.ndarray:
    """Read the array given to the option ``what`` (``"--y-true"``) as inline JSON or a file path.

    Raises :class:`CliError` with a one-line explanation for anything unreadable.
    """
    text = spec.strip()
    path, name = _split_name(text)
    if os.path.lexists(path):
        return _load_file(path, name, what, limits)
    ext = os.path.splitext(path)[1].lower()
    looks_like_path = ext in FILE_TYPES or os.sep in text or bool(os.altsep and os.altsep in text)
    if looks_like_path and not text.startswith(("[", "{")):
        raise CliError(f"`{what}` file {path!r} not found")
    limits.check_text(len(text), f"the inline JSON of `{what}`")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"`{what}` is neither an existing file nor valid JSON ({exc.msg} at character {exc.pos}); "
            "pass inline JSON such as '[[0.1, 0.9], [0.8, 0.2]]' or a .npy, .npz, .csv or .json file"
        ) from None
    except RecursionError:
        raise CliError(f"the inline JSON of `{what}` is nested too deeply to be an array") from None
    return from_json(obj, what, None, f"the inline JSON of `{what}`", limits)


def load_inputs(args, *, weights: bool = False):
    """``(y_true, y_pred, sample_weight)`` from the parsed arguments; integer predictions become float64."""
    limits = Limits(max_bytes=args.max_bytes, header=args.header)
    y_true = load_array(args.y_true, "--y-true", limits)
    y_pred = load_array(args.y_pred, "--y-pred", limits)
    if y_pred.dtype.kind in "iu":
        y_pred = y_pred.astype(np.float64)
    sw = None
    if weights and getattr(args, "sample_weight", None) is not None:
        sw = load_array(args.sample_weight, "--sample-weight", limits).astype(np.float64)
    return y_true, y_pred, sw


def _split_name(text: str) -> tuple[str, str | None]:
    """``FILE.npz:NAME`` or ``FILE.json:NAME`` to ``(FILE, NAME)``; anything else to ``(text, None)``."""
    if os.path.lexists(text):
        return text, None
    lower = text.lower()
    for ext in (".npz:", ".json:"):
        idx = lower.rfind(ext)
        if idx > 0:
            return text[: idx + len(ext) - 1], text[idx + len(ext) :]
    return text, None


# ----------------------------------------------------------------------------- files


def _load_file(path: str, name: str | None, what: str, limits: Limits) -> np.ndarray:
    source = f"`{what}` file {path!r}"
    fd = _open_regular(path, source)
    ext = os.path.splitext(path)[1].lower()
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if name is not None and ext not in (".npz", ".json"):
            raise CliError(f"{source}: only .npz and .json files hold named arrays (FILE.npz:NAME)")
        try:
            if ext == ".npy":
                arr = read_npy(fh, source, limits, size=size)
            elif ext == ".npz":
                arr = _read_npz(fh, name, what, source, limits)
            elif ext == ".csv":
                from ._csv import read_csv

                limits.check_text(size, source)
                arr = read_csv(fh.read(), source, limits.header)
            elif ext == ".json":
                limits.check_text(size, source)
                arr = _read_json(fh.read(), name, what, source, limits)
            else:
                raise CliError(f"{source}: unsupported file type {ext or '(none)'!r}; use .npy, .npz, .csv or .json")
        except OSError as exc:
            raise CliError(f"{source}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    limits.check_array(arr.nbytes, source)
    return check_numeric(arr, source)


def _open_regular(path: str, source: str) -> int:
    """A read-only descriptor for ``path`` if it is a regular file (FIFOs are never opened)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise CliError(f"{source} is a symbolic link to a file that does not exist") from None
        raise CliError(f"{source} not found") from None
    except OSError as exc:
        raise CliError(f"{source}: cannot read it ({exc.strerror})") from None
    _require_regular(st.st_mode, source)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise CliError(f"{source}: cannot open it ({exc.strerror})") from None
    try:
        _require_regular(os.fstat(fd).st_mode, source)  # it may have been swapped since the stat
    except CliError:
        os.close(fd)
        raise
    return fd


def _require_regular(mode: int, source: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise CliError(f"{source} is a directory; give a .npy, .npz, .csv or .json file")
    kind = (
        "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    raise CliError(f"{source} is {kind}; probloss reads regular files only")


def read_npy(fh, source: str, limits: Limits, size: int | None = None) -> np.ndarray:
    """Read one ``.npy`` array from ``fh``, checking its header before any data are read."""
    if fh.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise CliError(f"{source} is not a .npy file (it does not start with NumPy's .npy header)")
    version = tuple(fh.read(2))
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise CliError(f"{source} uses a .npy format version probloss does not read (1.0 and 2.0 are read)")
    try:
        shape, fortran_order, dtype = readers[version](fh)
    except (ValueError, TypeError, SyntaxError, EOFError):
        raise CliError(f"{source} has a malformed .npy header") from None
    if dtype.hasobject:
        raise CliError(
            f"{source} holds pickled Python objects, which probloss never loads (allow_pickle=False); "
            "save a numeric array instead, e.g. np.save(path, np.asarray(a, dtype=float))"
        )
    check_dtype(dtype, source)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    limits.check_array(nbytes, source)
    if size is not None and nbytes > size - fh.tell():
        raise CliError(f"{source} is truncated: its header announces {nbytes:,} bytes of data, the file has fewer")
    buf = bytearray(nbytes)
    view, done = memoryview(buf), 0
    while done < nbytes:
        chunk = fh.readinto(view[done:])
        if not chunk:
            raise CliError(f"{source} is truncated: its header announces {nbytes:,} bytes of data, the file has fewer")
        done += chunk
    arr = np.frombuffer(buf, dtype=dtype, count=count).reshape(shape, order="F" if fortran_order else "C")
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _read_npz(fh, name: str | None, what: str, source: str, limits: Limits) -> np.ndarray:
    try:
        with zipfile.ZipFile(fh) as zf:
            members = {_strip(i.filename): i for i in zf.infolist() if not i.is_dir()}
            key = _choose(list(members), name, what, source, "archive", "arrays")
            info = members[key]
            where = f"{source}:{key}"
            if info.file_size > limits.max_bytes + _NPY_HEADER_SLACK:
                limits.check_array(info.file_size, where)
            with zf.open(info) as member:
                return read_npy(member, where, limits)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError):
        raise CliError(f"{source} is not a readable .npz file (a damaged, encrypted or unsupported zip archive)") from None


def _strip(member: str) -> str:
    return member[:-4] if member.endswith(".npy") else member


def _choose(names: list[str], name: str | None, what: str, source: str, container: str, items: str) -> str:
    """The array to read: ``name``, the only one, or the one named after the option; else a listing."""
    shown = ", ".join(repr(n) for n in names[:_MAX_NAMES_SHOWN]) + (", ..." if len(names) > _MAX_NAMES_SHOWN else "")
    if name is not None:
        if name not in names:
            raise CliError(f"{source} has no array named {name!r}; it holds {shown or 'none'}")
        return name
    default = what.lstrip("-").replace("-", "_")
    if len(names) == 1:
        return names[0]
    if default in names:
        return default
    raise CliError(
        f"{source} holds {len(names)} {items} ({shown or 'none'}); choose one with FILE:NAME"
        if names
        else f"{source} is an empty {container}"
    )


def _read_json(raw: bytes, name: str | None, what: str, source: str, limits: Limits) -> np.ndarray:
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise CliError(f"{source} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{source} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise CliError(f"{source} is nested too deeply to be an array") from None
    return from_json(obj, what, name, source, limits)


# ------------------------------------------------------------------------ JSON values


def from_json(obj, what: str, name: str | None, source: str, limits: Limits) -> np.ndarray:
    """A parsed JSON value (a list of numbers, or an object of them) as a numeric array."""
    if isinstance(obj, dict):
        key = _choose(list(obj), name, what, source, "JSON object", "named arrays")
        obj, source = obj[key], f"{source}:{key}"
    elif name is not None:
        raise CliError(f"{source} holds no JSON object, so it has no array named {name!r}")
    if isinstance(obj, (dict, str)) or obj is None:
        kind = {dict: "an object", str: "a string"}.get(type(obj), "null")
        raise CliError(f"{source} must be a number or a (nested) list of numbers; got {kind} in the JSON")
    try:
        arr = np.asarray(obj)
    except RecursionError:
        raise CliError(f"{source} is nested too deeply to be an array") from None
    except ValueError:
        raise CliError(
            f"{source} is not a rectangular array: rows of different lengths, or more dimensions than NumPy "
            "allows; every row must have the same length"
        ) from None
    limits.check_array(arr.nbytes, source)
    return check_numeric(arr, source)


def check_dtype(dtype: np.dtype, source: str) -> None:
    """Refuse anything but booleans, integers and floats of at most 64 bits."""
    if dtype.kind in "biu" and dtype.itemsize <= 8 or dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return
    what = {
        "c": "complex numbers",
        "U": "text",
        "S": "bytes",
        "O": "mixed values (strings, nulls, nested objects, or integers too large for 64 bits)",
        "M": "dates",
        "m": "time spans",
        "V": "structured records",
    }.get(dtype.kind, f"values of dtype {dtype}")
    raise CliError(f"{source} must hold real numbers only; it holds {what}")


def check_numeric(arr: np.ndarray, source: str) -> np.ndarray:
    """``arr`` if it holds real numbers (booleans become int64); else :class:`CliError`."""
    check_dtype(arr.dtype, source)
    return arr.astype(np.int64) if arr.dtype.kind == "b" else arr
