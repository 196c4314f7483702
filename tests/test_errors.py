"""Bad input raises a ProblossError that names the argument and says how to fix it.

Each kind of mistake is checked on NumPy, torch and JAX (eager), through the functions,
the classes and the tf.nn primitives where it applies.
"""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl

P = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
LOGITS = [[2.0, -1.0, 0.5], [0.3, 0.1, -2.0]]
ONEHOT = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


@pytest.fixture(params=["numpy", "torch", "jax"])
def be(request):
    from tests.conftest import _make

    return _make(request.param)


def f32(be, x):
    return be.asarray(np.asarray(x, dtype=np.float32))


def ints(be, x):
    return be.asarray(np.asarray(x, dtype=np.int64 if be.name == "torch" else np.int32))


def raises(exc, *words):
    """pytest.raises on ``exc`` whose message contains every word (case-insensitive)."""
    return pytest.raises(exc, match="(?is)" + "".join(f"(?=.*{w})" for w in words))


# ------------------------------------------------------------------ 1. label format


def test_one_hot_labels_to_sparse_loss(be):
    for call in (
        lambda: pl.sparse_categorical_crossentropy(f32(be, ONEHOT), f32(be, P)),
        lambda: pl.SparseCategoricalCrossentropy()(f32(be, ONEHOT), f32(be, P)),
        lambda: pl.sparse_softmax_cross_entropy_with_logits(labels=f32(be, ONEHOT), logits=f32(be, LOGITS)),
    ):
        with raises(pl.LabelFormatError, "one-hot", "categorical_crossentropy", "argmax", r"\(2, 3\)"):
            call()


def test_integer_labels_to_categorical_loss(be):
    for labels in ([1, 2], [[1], [2]]):
        for call in (
            lambda labels=labels: pl.categorical_crossentropy(ints(be, labels), f32(be, P)),
            lambda labels=labels: pl.CategoricalFocalCrossentropy()(ints(be, labels), f32(be, P)),
            lambda labels=labels: pl.softmax_cross_entropy_with_logits(labels=ints(be, labels), logits=f32(be, LOGITS)),
        ):
            with raises(pl.LabelFormatError, "class labels", "sparse_categorical_crossentropy"):
                call()


def test_n_by_1_labels_are_accepted_where_keras_accepts_them(be):
    # (N, 1) class indices for the sparse loss, (N,) targets against (N, 1) binary predictions
    a = pl.sparse_categorical_crossentropy(ints(be, [[1], [2]]), f32(be, P))
    b = pl.sparse_categorical_crossentropy(ints(be, [1, 2]), f32(be, P))
    np.testing.assert_allclose(be.to_numpy(a), be.to_numpy(b))
    c = pl.BinaryCrossentropy(reduction=None)(f32(be, [1.0, 0.0]), f32(be, [[0.8], [0.4]]))
    np.testing.assert_allclose(be.to_numpy(c), [-np.log(0.8), -np.log(0.6)], rtol=1e-6)


def test_binary_targets_of_the_wrong_shape_are_refused(be):
    with raises(pl.ShapeError, "y_true", r"\(2,\)", r"\(2, 3\)", "same shape"):
        pl.binary_crossentropy(f32(be, [1.0, 0.0]), f32(be, P))


def test_transposed_sparse_labels_are_refused(be):
    with raises(pl.ShapeError, r"\(1, 2\)", r"\(2,\)"):
        pl.sparse_categorical_crossentropy(ints(be, [[1, 2]]), f32(be, P))


def test_fractional_float_labels_to_sparse_loss(be):
    with raises(pl.LabelFormatError, "1.5", "whole numbers", "categorical_crossentropy"):
        pl.sparse_categorical_crossentropy(f32(be, [1.5, 2.0]), f32(be, P))
    # whole-valued floats are fine (Keras casts them)
    out = pl.sparse_categorical_crossentropy(f32(be, [1.0, 2.0]), f32(be, P))
    np.testing.assert_allclose(be.to_numpy(out), [-np.log(0.95), -np.log(0.1)], rtol=1e-5)


# ------------------------------------------------------------------ 2. label values


def test_class_index_too_large(be):
    for call in (
        lambda: pl.sparse_categorical_crossentropy(ints(be, [1, 5]), f32(be, P)),
        lambda: pl.SparseCategoricalCrossentropy(from_logits=True)(ints(be, [1, 5]), f32(be, LOGITS)),
        lambda: pl.sparse_softmax_cross_entropy_with_logits(labels=ints(be, [1, 5]), logits=f32(be, LOGITS)),
    ):
        with raises(pl.LabelValueError, "class index 5", r"\(1,\)", "3 classes", r"\[0, 2\]"):
            call()


def test_negative_label_other_than_ignore_class(be):
    with raises(pl.LabelValueError, "-1", "ignore_class"):
        pl.sparse_categorical_crossentropy(ints(be, [-1, 2]), f32(be, P))
    with raises(pl.LabelValueError, "-2"):
        pl.SparseCategoricalCrossentropy(ignore_class=-1)(ints(be, [-2, 2]), f32(be, P))
    # the ignored value itself is fine
    out = pl.SparseCategoricalCrossentropy(ignore_class=-1)(ints(be, [-1, 2]), f32(be, P))
    np.testing.assert_allclose(float(be.to_numpy(out)), -np.log(0.1), rtol=1e-5)


def test_binary_targets_outside_unit_interval(be):
    for call in (
        lambda: pl.binary_crossentropy(f32(be, [[2.0, 0.0]]), f32(be, [[0.5, 0.5]])),
        lambda: pl.BinaryFocalCrossentropy()(f32(be, [[2.0, 0.0]]), f32(be, [[0.5, 0.5]])),
        lambda: pl.sigmoid_cross_entropy_with_logits(labels=f32(be, [[2.0, 0.0]]), logits=f32(be, [[0.5, 0.5]])),
    ):
        with raises(pl.LabelValueError, "2", r"\[0, 1\]", "sparse_categorical_crossentropy"):
            call()


def test_negative_soft_labels(be):
    with raises(pl.LabelValueError, "-0.2", "probabilities"):
        pl.categorical_crossentropy(f32(be, [[1.2, -0.2, 0.0]]), f32(be, [[0.5, 0.3, 0.2]]))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("bad", [-0.2, np.nan])
def test_bad_soft_labels_with_logits(be, smoothing, bad):
    # without smoothing, torch's kernel checks the labels while it reads them
    labels = f32(be, [[0.0, 1.0, 0.0], [1.0 - bad if bad == bad else 1.0, bad, 0.0]])
    with raises(pl.LabelValueError, "y_true", r"\(1, 1\)"):
        pl.categorical_crossentropy(labels, f32(be, [[2.0, 1.0, 0.1], [0.5, 0.3, 0.2]]), from_logits=True, label_smoothing=smoothing)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_labels(be, bad):
    with raises(pl.LabelValueError, "y_true"):
        pl.categorical_crossentropy(f32(be, [[bad, 1.0, 0.0]]), f32(be, [[0.5, 0.3, 0.2]]))
    with raises(pl.LabelValueError, "y_true"):
        pl.binary_crossentropy(f32(be, [[bad, 1.0]]), f32(be, [[0.5, 0.3]]), from_logits=True)
    with raises(pl.LabelValueError, "y_true"):
        pl.sparse_categorical_crossentropy(f32(be, [bad, 1.0]), f32(be, P))


# ------------------------------------------------------------------ 3. predictions


def test_logits_passed_as_probabilities(be):
    for call in (
        lambda: pl.categorical_crossentropy(f32(be, ONEHOT), f32(be, LOGITS)),
        lambda: pl.SparseCategoricalCrossentropy()(ints(be, [1, 2]), f32(be, LOGITS)),
        lambda: pl.binary_crossentropy(f32(be, ONEHOT), f32(be, LOGITS)),
        lambda: pl.CategoricalFocalCrossentropy()(f32(be, ONEHOT), f32(be, LOGITS)),
    ):
        with raises(pl.PredictionValueError, "y_pred", "logits", "from_logits=True"):
            call()


def test_rows_not_summing_to_one_warn(be):
    with pytest.warns(pl.ProblossWarning, match="sum to 1.*renormalised"):
        out = pl.categorical_crossentropy(f32(be, [[0.0, 1.0]]), f32(be, [[0.2, 0.4]]))
    np.testing.assert_allclose(be.to_numpy(out), [-np.log(2 / 3)], rtol=1e-5)  # Keras renormalises


@pytest.mark.parametrize("bad", [np.nan, np.inf])  # (-inf rules a class out: tests/test_ruled_out_classes.py)
def test_nan_or_inf_in_predictions(be, bad):
    for call in (
        lambda: pl.sparse_categorical_crossentropy(ints(be, [0, 1]), f32(be, [[bad, 0.0, 1.0], [0.0, 1.0, 2.0]]), from_logits=True),
        lambda: pl.CategoricalCrossentropy(from_logits=True)(f32(be, ONEHOT), f32(be, [[bad, 0.0, 1.0], [0.0, 1.0, 2.0]])),
        lambda: pl.binary_crossentropy(f32(be, [[1.0, 0.0]]), f32(be, [[bad, 0.5]])),
        lambda: pl.softmax_cross_entropy_with_logits(labels=f32(be, ONEHOT), logits=f32(be, [[bad, 0.0, 1.0], [0.0, 1.0, 2.0]])),
    ):
        with raises(pl.PredictionValueError, r"\(0, 0\)", "finite"):
            call()


def test_negative_poisson_rates(be):
    with raises(pl.PredictionValueError, "-1", "rates", "exp"):
        pl.Poisson()(f32(be, [[1.0, 2.0]]), f32(be, [[-1.0, 2.0]]))
    with raises(pl.LabelValueError, "counts"):
        pl.poisson(f32(be, [[-1.0, 2.0]]), f32(be, [[1.0, 2.0]]))


def test_kl_inputs_outside_unit_interval(be):
    with raises(pl.LabelValueError, "y_true", r"\[0, 1\]", "probabilities"):
        pl.kl_divergence(f32(be, [[1.5, -0.5]]), f32(be, [[0.5, 0.5]]))
    with raises(pl.PredictionValueError, "y_pred", "softmax"):
        pl.KLDivergence()(f32(be, [[0.5, 0.5]]), f32(be, [[2.0, -1.0]]))


# ------------------------------------------------------------------ 4. shapes


def test_batch_sizes_differ(be):
    with raises(pl.ShapeError, r"\(3, 3\)", r"\(2, 3\)"):
        pl.categorical_crossentropy(f32(be, np.eye(3)), f32(be, P))
    with raises(pl.ShapeError, r"\(3,\)", r"\(2,\)"):
        pl.sparse_categorical_crossentropy(ints(be, [0, 1, 2]), f32(be, P))


def test_class_counts_differ(be):
    with raises(pl.ShapeError, r"\(2, 4\)", r"\(2, 3\)"):
        pl.CategoricalCrossentropy()(f32(be, np.eye(4)[:2]), f32(be, P))


def test_weight_that_keras_would_broadcast_wrongly(be):
    y = f32(be, np.eye(3)[None].repeat(3, 0))
    p = f32(be, np.full((3, 3, 3), 1 / 3))
    with raises(pl.ShapeError, "ambiguous", r"\(3, 1\)", r"\(1, 3\)"):
        pl.CategoricalCrossentropy()(y, p, sample_weight=f32(be, [1.0, 2.0, 3.0]))


def test_axis_out_of_range(be):
    with raises(pl.ArgumentError, "axis", "5", r"\[-2, 1\]"):
        pl.categorical_crossentropy(f32(be, ONEHOT), f32(be, P), axis=5)
    with raises(pl.ArgumentError, "axis"):
        pl.SparseCategoricalCrossentropy(axis=-3)(ints(be, [1, 2]), f32(be, P))


def test_empty_inputs(be):
    with raises(pl.ShapeError, "empty", r"\(0, 3\)"):
        pl.categorical_crossentropy(f32(be, np.zeros((0, 3))), f32(be, np.zeros((0, 3))))
    with raises(pl.ShapeError, "empty"):
        pl.binary_crossentropy(f32(be, np.zeros((2, 0))), f32(be, np.zeros((2, 0))))


def test_sample_weight_that_cannot_broadcast(be):
    with raises(pl.ShapeError, "sample_weight", r"\(3,\)", r"\(2,\)"):
        pl.CategoricalCrossentropy()(f32(be, ONEHOT), f32(be, P), sample_weight=f32(be, [1.0, 2.0, 3.0]))


# ------------------------------------------------------------------ 5. arguments


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: pl.CategoricalCrossentropy(reduction="avg"), ("reduction", "avg", "sum_over_batch_size")),
        (lambda: pl.BinaryCrossentropy(label_smoothing=1.5), ("label_smoothing", "1.5", r"\[0, 1\]")),
        (lambda: pl.BinaryFocalCrossentropy(gamma=-1.0), ("gamma", "-1", ">= 0")),
        (lambda: pl.BinaryFocalCrossentropy(alpha=1.2), ("alpha", "1.2")),
        (lambda: pl.CategoricalFocalCrossentropy(alpha=[0.5, 1.5]), ("alpha", "1.5")),
        (lambda: pl.SparseCategoricalCrossentropy(ignore_class="pad"), ("ignore_class", "integer", "pad")),
        (lambda: pl.SparseCategoricalCrossentropy(ignore_class=1.5), ("ignore_class", "1.5")),
        (lambda: pl.CategoricalCrossentropy(from_logits="yes"), ("from_logits", "True or False")),
        (lambda: pl.get("sparse_crossentropy"), ("sparse_crossentropy", "Did you mean")),
        (lambda: pl.get(42), ("identifier", "42")),
    ],
)
def test_bad_arguments(make, words):
    with raises(pl.ProblossError, *words):
        make()


def test_bad_arguments_to_functions(be):
    with raises(pl.ArgumentError, "label_smoothing"):
        pl.categorical_crossentropy(f32(be, ONEHOT), f32(be, P), label_smoothing=-0.1)
    with raises(pl.ArgumentError, "gamma"):
        pl.categorical_focal_crossentropy(f32(be, ONEHOT), f32(be, P), gamma=-2)


# ------------------------------------------------------------------ 6. types


@pytest.mark.parametrize("bad", ["cat", {"a": 1}, object(), [["a", "b"]]])
def test_strings_and_objects(bad):
    with pytest.raises(pl.ProblossTypeError) as info:
        pl.categorical_crossentropy(bad, P)
    assert isinstance(info.value, TypeError)
    assert "y_true" in str(info.value)
    with pytest.raises(pl.ProblossTypeError, match="y_pred"):
        pl.SparseCategoricalCrossentropy()([1, 2], bad)


def test_mixed_array_libraries():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    with raises(pl.ProblossTypeError, "different array libraries", "torch", "jax"):
        pl.categorical_crossentropy(jnp.asarray(ONEHOT), torch.tensor(P))


def test_numpy_labels_follow_the_predictions_library():
    torch = pytest.importorskip("torch")
    # NumPy labels (and weights) next to torch predictions are converted, as lists are.
    got = pl.CategoricalCrossentropy()(np.asarray(ONEHOT), torch.tensor(P), sample_weight=np.array([1.0, 3.0]))
    expected = (-np.log(0.95 / 1.0) * 1.0 - np.log(0.1 / 1.0) * 3.0) / 2
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_integer_predictions(be):
    with raises(pl.ProblossTypeError, "y_pred", "floating point", "int"):
        pl.binary_crossentropy(f32(be, [[1.0, 0.0]]), ints(be, [[1, 0]]))


# ---------------------------------------------------------- value checks: eager only


def test_value_checks_can_be_switched_off():
    with pl.set_value_checks(False):
        out = pl.binary_crossentropy([[1.0, 0.0]], [[2.0, -1.0]])  # logits as probabilities: unchecked
    upper = np.float32(1 - 1e-7)  # Keras clips to [1e-7, 1 - 1e-7] in float32: both terms are -log(upper)
    np.testing.assert_allclose(out, [-np.log(upper)], rtol=1e-4)
    pl.set_value_checks(False)
    try:
        assert not pl.value_checks_enabled()
    finally:
        pl.set_value_checks(True)
    with raises(pl.LabelValueError, "class index 5"):
        pl.sparse_categorical_crossentropy([1, 5], P)


def test_value_checks_run_when_a_jitted_program_runs():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f = jax.jit(lambda y, p: pl.sparse_categorical_crossentropy(y, p))
    # The label is a tracer: the check goes into the program and raises when it runs.
    with pytest.raises(Exception, match=r"`y_true` holds class index 5 at index \(1,\)"):
        jax.block_until_ready(f(jnp.array([1, 5]), jnp.asarray(P)))
    with pl.set_value_checks(False):  # the switch still turns them off
        out = jax.jit(lambda y, p: pl.sparse_categorical_crossentropy(y, p))(jnp.array([1, 5]), jnp.asarray(P))
    assert out.shape == (2,)
    # static checks still run under jit
    with raises(pl.LabelFormatError, "one-hot"):
        jax.jit(lambda y, p: pl.sparse_categorical_crossentropy(y, p))(jnp.asarray(ONEHOT), jnp.asarray(P))


def test_clean_input_under_torch_compile_matches_eager():  # (the checks there: tests/torch/test_compile.py)
    torch = pytest.importorskip("torch")
    torch._dynamo.reset()
    f = torch.compile(lambda y, p: pl.sparse_categorical_crossentropy(y, p, from_logits=True), backend="eager", fullgraph=False)
    out = f(torch.tensor([1, 2]), torch.tensor(LOGITS))
    np.testing.assert_allclose(out.numpy(), pl.sparse_categorical_crossentropy(np.array([1, 2]), np.float32(LOGITS), from_logits=True), rtol=1e-6)


def test_every_error_is_a_value_error_or_type_error():
    for cls in (pl.ArgumentError, pl.ShapeError, pl.LabelFormatError, pl.LabelValueError, pl.PredictionValueError):
        assert issubclass(cls, pl.ProblossError) and issubclass(cls, ValueError)
    assert issubclass(pl.ProblossTypeError, TypeError) and issubclass(pl.ProblossTypeError, pl.ProblossError)
