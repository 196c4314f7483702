"""Array-namespace, device and dtype helpers: the only importer of array_api_compat.

Everything else in probloss receives an ``xp`` namespace from here and writes
``xp.*`` calls only.  Python lists and scalars become NumPy arrays; arrays keep
their own library, device and dtype.
"""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat
import numpy as np

from ._errors import ProblossTypeError

__all__ = [
    "as_array",
    "backend_name",
    "dtype_kind",
    "device_of",
    "is_floating",
    "is_integer",
    "is_jax",
    "is_jax_tracer",
    "is_numpy",
    "is_staged",
    "is_torch",
    "is_traced",
    "namespace",
]

_HALF_NAMES = ("float16", "bfloat16")
_NUMPY = array_api_compat.array_namespace(np.empty(0))
_BY_TYPE: dict[type, Any] = {}  # array type -> its namespace, learned on first sight


def _is_array(x: Any) -> bool:
    if type(x) in _BY_TYPE:  # an array type seen before (also keeps torch.compile off
        return True  # array_api_compat's cached helpers, which Dynamo warns about)
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, (bool, int, float))


def namespace(*args: Any, names: tuple[str, ...] = ()):
    """Return the array namespace shared by the array arguments.

    ``None``, Python scalars and (nested) lists do not vote, nor do NumPy arrays next to
    arrays of another library (labels kept in NumPy, the usual JAX idiom); when no
    argument is an array the namespace is NumPy's.  Arrays from two other libraries (torch
    and JAX, say) raise :class:`ProblossTypeError`.  Arguments all of one array type (the usual call) are
    answered from a cache by type: a loss call asks several times.
    """
    if len(args) == 2 and type(args[0]) is type(args[1]):  # the usual pair (y_true, y_pred)
        xp = _BY_TYPE.get(type(args[0]))
        if xp is not None:
            return xp
    kinds = {type(a) for a in args if a is not None}
    if len(kinds) == 1:
        kind = next(iter(kinds))
        xp = _BY_TYPE.get(kind)
        if xp is not None:
            return xp
        if kind.__module__.startswith("torch") and issubclass(kind, sys.modules["torch"].Tensor):
            # Named directly: the first call may come while torch.compile traces, where
            # array_api_compat's cached helpers would make Dynamo warn.
            import array_api_compat.torch as xp

            _BY_TYPE[kind] = xp
            return xp
    arrays = [a for a in args if a is not None and _is_array(a)]
    if not arrays:
        return _NUMPY
    others = [a for a in arrays if not isinstance(a, (np.ndarray, np.generic))]
    if others and len(others) < len(arrays):
        # NumPy arrays (labels, weights) next to another library's arrays follow that
        # library: as_array converts them, as it converts lists.
        arrays = others
    try:
        xp = array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({f"{type(a).__module__}.{type(a).__name__}" for a in arrays})
        named = [f"`{n}` is {type(a).__module__}.{type(a).__name__}" for n, a in zip(names, args) if a is not None and _is_array(a)]
        which = f" ({'; '.join(named)})" if named else f" ({', '.join(kinds)})"
        msg = (
            f"the arrays of this call come from different array libraries{which}; "
            "probloss needs all arrays of one call in one library. Convert them first, "
            "e.g. torch.as_tensor(np_array) or np.asarray(tensor.cpu())."
        )
        raise ProblossTypeError(msg) from exc
    if len(kinds) == 1 and len({type(a) for a in arrays}) == 1:
        _BY_TYPE[type(arrays[0])] = xp
    return xp


def device_of(x: Any):
    """The device of ``x`` (``None`` for non-arrays)."""
    return array_api_compat.device(x) if _is_array(x) else None


_BACKENDS = {"array_api_compat.numpy": "numpy", "array_api_compat.torch": "torch", "jax.numpy": "jax"}


def backend_name(xp) -> str:
    """``"numpy"``, ``"torch"`` or ``"jax"`` for those namespaces, else the namespace's name."""
    name = xp.__name__
    return _BACKENDS.get(name, name)


# (by name, not array_api_compat's cached helpers, which Dynamo warns about when it
# traces a check under torch.compile)
def is_numpy(xp) -> bool:
    return xp.__name__ in ("array_api_compat.numpy", "numpy")


def is_torch(xp) -> bool:
    return xp.__name__ in ("array_api_compat.torch", "torch")


def is_jax(xp) -> bool:
    return xp.__name__ == "jax.numpy"


_KINDS = ("bool", "integral", "real floating", "complex floating")
_KIND_OF: dict = {}  # dtype -> its kind, learned on first sight (a loss call asks several times)


def dtype_kind(xp, dtype) -> str:
    """``"bool"``, ``"integral"``, ``"real floating"``, ``"complex floating"`` or ``"other"``."""
    key = (type(dtype), dtype)  # the type first: some libraries warn when their dtypes meet NumPy's
    kind = _KIND_OF.get(key)
    if kind is None:
        try:
            kind = next((k for k in _KINDS if xp.isdtype(dtype, k)), "other")
        except TypeError:  # a dtype the library does not know, e.g. ml_dtypes' bfloat16 in NumPy
            kind = "other"
        _KIND_OF[key] = kind
    return kind


def is_floating(xp, dtype) -> bool:
    return dtype_kind(xp, dtype) == "real floating"


def is_integer(xp, dtype) -> bool:
    return dtype_kind(xp, dtype) == "integral"


_HALF: dict = {}


def is_half(dtype) -> bool:
    """True for float16 and bfloat16, which probloss reduces in float32."""
    key = (type(dtype), dtype)
    half = _HALF.get(key)
    if half is None:
        half = _HALF[key] = any(name in str(dtype) for name in _HALF_NAMES)
    return half


def is_traced(x: Any) -> bool:
    """True while ``x`` is an abstract value: a JAX tracer, torch under compile, a meta tensor.

    Value checks (label ranges, NaN) need concrete numbers, so they are skipped then.
    """
    module = type(x).__module__
    if module.startswith("torch"):
        torch = sys.modules["torch"]
        return x.is_meta or bool(torch.compiler.is_compiling()) or bool(torch.jit.is_tracing())
    if "jax" in module:
        import jax

        return isinstance(x, jax.core.Tracer)
    return False


def is_staged(x: Any) -> bool:
    """True for an array whose values exist only when a compiled program runs: a JAX
    tracer (``jit``, ``grad``, ``vmap``), or a torch tensor while ``torch.compile`` traces.

    Value checks on such arrays are staged into the program (see ``_checks.verify``).
    """
    module = type(x).__module__
    if module.startswith("torch"):
        return bool(sys.modules["torch"].compiler.is_compiling()) and not x.is_meta
    return is_jax_tracer(x)


def is_jax_tracer(x: Any) -> bool:
    """True for a JAX tracer: an array inside ``jit``, ``grad`` or ``vmap``, with no value yet."""
    if "jax" not in type(x).__module__:
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def as_array(x: Any, xp, *, like: Any = None, dtype=None, name: str = "input"):
    """Convert ``x`` to an array of namespace ``xp``.

    Lists, scalars and NumPy arrays (when ``xp`` is another library's) are converted on
    the device of ``like``.  Strings, dicts and
    other objects raise :class:`ProblossTypeError` naming ``name``, and so do sparse torch
    tensors.  NumPy arrays in the other byte order (``'>f4'`` on this machine) are
    converted to the native one, which NumPy's own functions require.
    """
    if type(x) is np.ndarray and xp is _NUMPY and dtype is None and x.dtype.isnative:
        return x  # the usual NumPy call, answered first
    if isinstance(x, (np.ndarray, np.generic)) and xp is not _NUMPY:
        x = np.asarray(x)  # a NumPy array next to another library's arrays: converted
        x = x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))
        device = device_of(like)
        kwargs = {} if dtype is None else {"dtype": dtype}
        return xp.asarray(x, device=device, **kwargs) if device is not None else xp.asarray(x, **kwargs)
    if _is_array(x):
        if type(x) is np.ndarray and not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
        elif type(x).__module__.startswith("torch") and x.layout is not sys.modules["torch"].strided:
            msg = (
                f"`{name}` is a {x.layout} torch tensor; probloss computes on dense tensors. "
                f"Convert it first with `{name}.to_dense()`."
            )
            raise ProblossTypeError(msg)
        return x if dtype is None or x.dtype == dtype else xp.astype(x, dtype)
    if isinstance(x, (str, bytes, dict, set)) or x is None:
        msg = (
            f"`{name}` must be an array, a number or a nested list of numbers; "
            f"got {type(x).__name__} {x!r:.60}."
        )
        raise ProblossTypeError(msg)
    try:
        host = np.asarray(x)
    except (TypeError, ValueError) as exc:
        msg = f"`{name}` could not be read as an array of numbers ({exc}); pass a rectangular nested list or an array."
        raise ProblossTypeError(msg) from exc
    if host.dtype.kind not in "biuf":
        msg = (
            f"`{name}` must hold numbers; got values of NumPy kind {host.dtype.kind!r} "
            f"(dtype {host.dtype}). Pass numbers, not strings or objects."
        )
        raise ProblossTypeError(msg)
    if host.dtype.kind == "f" and dtype is None:  # Python floats become float32, as Keras's floatx
        host = host.astype(np.float32)
    device = device_of(like)
    if dtype is None:
        return xp.asarray(host, device=device) if device is not None else xp.asarray(host)
    if device is not None:
        return xp.asarray(host, dtype=dtype, device=device)
    return xp.asarray(host, dtype=dtype)
