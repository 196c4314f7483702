"""``probloss._compat``: namespaces, dtype kinds and array conversion.

The namespace answered from the per-type cache must be array_api_compat's own; arrays
from two non-NumPy libraries are refused (NumPy arrays follow the other library); conversion follows NumPy's reading of lists and fixes a
non-native byte order without changing a value.
"""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import probloss as pl
from probloss import _compat
from tests.conftest import _make


def test_namespace_from_the_type_cache_is_array_api_compats(eager_backend):
    a = eager_backend.asarray(np.arange(3.0))
    expected = array_api_compat.array_namespace(a)
    first = _compat.namespace(a)
    second = _compat.namespace(a, eager_backend.asarray(np.ones(3)))  # answered by type
    assert first is expected
    assert second is expected
    assert _compat._BY_TYPE[type(a)] is expected


def test_namespace_ignores_none_scalars_and_lists():
    a = np.ones(2)
    assert _compat.namespace(None, [1, 2], 3.0, a) is array_api_compat.array_namespace(a)
    assert _compat.namespace([1.0], None, 2) is array_api_compat.array_namespace(np.empty(0))


@pytest.mark.parametrize(("one", "other"), [("torch", "jax"), ("torch", "array_api_strict"), ("jax", "array_api_strict")])
def test_arrays_of_two_non_numpy_libraries_raise_and_name_the_arguments(one, other):
    a, b = _make(one), _make(other)
    with pytest.raises(pl.ProblossTypeError, match="different array libraries") as info:
        _compat.namespace(a.asarray(np.ones(2)), b.asarray(np.ones(2)), names=("y_true", "y_pred"))
    assert "`y_true` is" in str(info.value) and "`y_pred` is" in str(info.value)
    with pytest.raises(pl.ProblossTypeError, match="different array libraries"):
        pl.binary_crossentropy(a.asarray(np.ones((2, 2), np.float32)), b.asarray(np.full((2, 2), 0.5, np.float32)))


@pytest.mark.parametrize("other", ["torch", "jax", "array_api_strict"])
def test_numpy_arrays_next_to_another_library_follow_it(other):
    b = _make(other)
    p = b.asarray(np.array([[0.2, 0.8]], np.float32))
    assert _compat.namespace(np.array([[0.0, 1.0]]), p) is array_api_compat.array_namespace(p)
    out = pl.binary_crossentropy(np.array([[0.0, 1.0]], np.float32), p)
    assert type(out) is type(p)
    np.testing.assert_allclose(b.to_numpy(out), [-np.log(0.8)], rtol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "kind"),
    [("bool", "bool"), ("int8", "integral"), ("int64", "integral"), ("uint8", "integral"),
     ("float16", "real floating"), ("float32", "real floating"), ("float64", "real floating"),
     ("complex64", "complex floating")],
)
def test_dtype_kind(eager_backend, dtype, kind):
    xp = _compat.namespace(eager_backend.asarray(np.ones(1)))
    if not hasattr(xp, dtype):
        pytest.skip(f"{eager_backend.name} has no {dtype}")
    assert _compat.dtype_kind(xp, getattr(xp, dtype)) == kind
    assert _compat.is_floating(xp, getattr(xp, dtype)) == (kind == "real floating")
    assert _compat.is_integer(xp, getattr(xp, dtype)) == (kind == "integral")


@pytest.mark.parametrize(("name", "dtype", "half"), [
    ("numpy", "float16", True), ("numpy", "float32", False), ("numpy", "float64", False),
    ("torch", "float16", True), ("torch", "bfloat16", True), ("torch", "float32", False),
    ("jax", "float16", True), ("jax", "bfloat16", True), ("jax", "float32", False),
])
def test_is_half(name, dtype, half):
    xp = _make(name).xp
    assert _compat.is_half(getattr(xp, dtype)) is half


def test_backend_name(eager_backend):
    xp = _compat.namespace(eager_backend.asarray(np.ones(1)))
    expected = {"numpy": "numpy", "torch": "torch", "jax": "jax", "array_api_strict": "array_api_strict"}
    assert _compat.backend_name(xp) == expected[eager_backend.name]


NP = array_api_compat.array_namespace(np.empty(0))


@pytest.mark.parametrize(
    ("value", "dtype"),
    [([1.5, 2.0], np.float32), ([[1, 2], [3, 4]], np.int64), ([True, False], np.bool_), (2.5, np.float32), (7, np.int64)],
    ids=["float-list", "int-list", "bool-list", "float-scalar", "int-scalar"],
)
def test_as_array_reads_lists_as_numpy_does_floats_as_float32(value, dtype):
    out = _compat.as_array(value, NP)
    assert isinstance(out, np.ndarray)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.asarray(value).astype(dtype))


def test_as_array_with_a_dtype_and_like_puts_lists_in_that_library(eager_backend):
    like = eager_backend.asarray(np.ones(2, np.float32))
    xp = _compat.namespace(like)
    out = _compat.as_array([1, 2], xp, like=like, dtype=xp.float32)
    assert type(out) is type(like)
    assert out.dtype == xp.float32
    np.testing.assert_array_equal(eager_backend.to_numpy(out), [1.0, 2.0])


@pytest.mark.parametrize("bad", ["abc", b"abc", {"a": 1}, {1, 2}, None], ids=["str", "bytes", "dict", "set", "None"])
def test_as_array_refuses_strings_and_containers(bad):
    with pytest.raises(pl.ProblossTypeError, match="`y_pred` must be an array"):
        _compat.as_array(bad, NP, name="y_pred")


@pytest.mark.parametrize("bad", [[[1, 2], [3]], ["a", "b"], [object()]], ids=["ragged", "strings", "objects"])
def test_as_array_refuses_what_is_not_a_rectangle_of_numbers(bad):
    with pytest.raises(pl.ProblossTypeError, match="`y_true`"):
        _compat.as_array(bad, NP, name="y_true")


def test_as_array_converts_a_non_native_byte_order_without_changing_values():
    swapped = ">f4" if np.little_endian else "<f4"
    x = np.array([0.25, -1.5, 3.0], dtype=swapped)
    out = _compat.as_array(x, NP)
    assert out.dtype.isnative and out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.25, -1.5, 3.0])
    # and a loss on such arrays gives the numbers of native ones
    t = np.array([[0.0, 1.0, 1.0]], dtype=swapped)
    p = np.array([[0.2, 0.7, 0.9]], dtype=swapped)
    expected = -(np.log(0.8) + np.log(0.7) + np.log(0.9)) / 3
    np.testing.assert_allclose(pl.binary_crossentropy(t, p), [expected], rtol=1e-6)


def test_as_array_keeps_an_array_of_the_right_dtype_as_is():
    x = np.ones(3, np.float32)
    assert _compat.as_array(x, NP) is x
    assert _compat.as_array(x, NP, dtype=np.float32) is x
    assert _compat.as_array(x, NP, dtype=np.float64).dtype == np.float64


def test_device_of_and_is_traced():
    assert _compat.device_of([1, 2]) is None
    assert _compat.device_of(np.ones(1)) == "cpu"
    assert not _compat.is_traced(np.ones(1))
    jax = pytest.importorskip("jax")
    seen = []
    jax.jit(lambda x: seen.append(_compat.is_traced(x)) or x)(jax.numpy.ones(2))
    assert seen == [True]
    assert not _compat.is_traced(jax.numpy.ones(2))
