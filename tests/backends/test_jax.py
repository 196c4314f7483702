"""The JAX implementations (``probloss._backends.jax``) of the softmax cross-entropies from
logits agree with the generic formula (``generic_only()``) and with Optax run live, in
value and gradient, eagerly and under ``jax.jit``; and they check the labels eagerly
(JAX itself clamps an index out of range silently).
"""

from __future__ import annotations

import contextlib
import math
import re

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

import probloss as pl  # noqa: E402
from probloss._backends import jax as jb  # noqa: E402
from probloss._dispatch import generic_only, implementation  # noqa: E402
from tests.reference import data as _data  # noqa: E402


def _routes(native: bool):
    return contextlib.nullcontext() if native else generic_only()


def _vjp(f, *args, jit=True, seed=0):
    """Value and the cotangents of every argument, for a random upstream gradient; with
    ``jit`` the whole computation is one compiled program (eager JAX compiles every
    operation of every shape on its own, which is slower)."""
    shape, dtype = jax.eval_shape(f, *args).shape, jax.eval_shape(f, *args).dtype
    go = jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=dtype)

    def run(*a):
        out, vjp = jax.vjp(f, *a)
        return out, vjp(go)

    return jax.jit(run)(*args) if jit else run(*args)


def test_the_table_serves_jax_arrays_from_this_module():
    assert implementation("sparse", jnp) is jb.sparse
    assert implementation("categorical", jnp) is jb.categorical
    with generic_only():
        assert implementation("sparse", jnp) is not jb.sparse


# class axis last, in the middle, first; a 1-D input; a big one.  (Each new shape costs a
# compilation, most of a test's time.)
CASES = [((6, 5), -1), ((3, 5, 4), 1), ((4, 3, 2), 0), ((7,), 0), ((256, 300), -1)]
EAGER = [((6, 5), -1), ((3, 5, 4), 1)]  # eager JAX compiles every operation per shape: fewer
RUNS = [pytest.param(s, a, True, id=f"jit-{s}-{a}") for s, a in CASES] + [
    pytest.param(s, a, False, id=f"eager-{s}-{a}") for s, a in EAGER
]


@pytest.mark.parametrize(("shape", "axis", "jit"), RUNS)
def test_sparse_native_equals_generic_equals_optax(shape, axis, jit):
    x, y, _ = _data(shape, axis, seed=10)
    xj, yj = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y)
    ref = _vjp(lambda a: optax.softmax_cross_entropy_with_integer_labels(a, yj, axis=axis), xj)
    for native in (True, False):
        with _routes(native):  # (under jit the table is read while tracing, inside the block)
            got = _vjp(lambda a: pl.sparse_categorical_crossentropy(yj, a, from_logits=True, axis=axis), xj, jit=jit)
        assert got[0].dtype == jnp.float32 and got[0].shape == ref[0].shape
        np.testing.assert_allclose(got[0], ref[0], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(got[1][0], ref[1][0], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize(
    ("shape", "axis", "jit", "label_smoothing"),
    [
        pytest.param(*r.values, ls, id=f"{r.id}-ls{ls}")
        for i, r in enumerate(RUNS)
        for ls in ((0.0, 0.2) if i % 3 == 0 else (0.2,))
    ],
)
def test_categorical_native_equals_generic_equals_optax(shape, axis, jit, label_smoothing):
    x, _, t = _data(shape, axis, seed=11)
    xj, tj = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(t, dtype=jnp.float32)
    k = shape[axis]

    def peer(a, b):
        # Keras smooths t(1-a) + a/K along the class axis, as optax.smooth_labels does on the last
        return optax.softmax_cross_entropy(a, b * (1 - label_smoothing) + label_smoothing / k, axis=axis)

    ref = _vjp(peer, xj, tj)
    for native in (True, False):
        with _routes(native):
            got = _vjp(
                lambda a, b: pl.categorical_crossentropy(b, a, from_logits=True, axis=axis, label_smoothing=label_smoothing),
                xj,
                tj,
                jit=jit,
            )
        np.testing.assert_allclose(got[0], ref[0], rtol=2e-5, atol=2e-6)
        # optax takes (logits, labels): its cotangents are (dx, dt); ours are (dx, dt) too.
        np.testing.assert_allclose(got[1][0], ref[1][0], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(got[1][1], ref[1][1], rtol=2e-5, atol=2e-6)


def test_default_path_matches_optax_under_jit_value_and_grad():
    x, y, _ = _data((9, 6), -1, seed=12)
    xj, yj = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y)
    got = jax.jit(jax.value_and_grad(lambda a: pl.sparse_categorical_crossentropy(yj, a, from_logits=True).mean()))(xj)
    ref = jax.value_and_grad(lambda a: optax.softmax_cross_entropy_with_integer_labels(a, yj).mean())(xj)
    np.testing.assert_allclose(got[0], ref[0], rtol=2e-6)
    np.testing.assert_allclose(got[1], ref[1], rtol=2e-5, atol=1e-7)


def test_loss_classes_with_ignore_class_match_optax():
    x, y, t = _data((12, 7), -1, seed=13)
    y[::4] = 2
    xj, yj, tj = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y), jnp.asarray(t, dtype=jnp.float32)
    keep = jnp.asarray(y != 2)

    def ours(a):
        return pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2)(yj, a)

    def peer(a):
        per = optax.softmax_cross_entropy_with_integer_labels(a, jnp.where(keep, yj, 0))
        return jnp.sum(jnp.where(keep, per, 0.0)) / jnp.sum(keep)

    for f in (ours, jax.jit(ours)):
        got, ref = jax.value_and_grad(f)(xj), jax.jit(jax.value_and_grad(peer))(xj)
        np.testing.assert_allclose(got[0], ref[0], rtol=2e-6)
        np.testing.assert_allclose(got[1], ref[1], rtol=2e-5, atol=1e-7)
    got = pl.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(tj, xj)
    np.testing.assert_allclose(got, optax.softmax_cross_entropy(xj, optax.smooth_labels(tj, 0.1)).mean(), rtol=2e-6)


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_half_logits_are_computed_in_float32(dtype):
    x, y, t = _data((16, 50), -1, seed=14)
    xj = jnp.asarray(x, dtype=getattr(jnp, dtype))
    x32 = xj.astype(jnp.float32)  # the same values, exactly
    sparse = pl.sparse_categorical_crossentropy(jnp.asarray(y), xj, from_logits=True)
    soft = pl.categorical_crossentropy(jnp.asarray(t, dtype=xj.dtype), xj, from_logits=True)
    assert sparse.dtype == xj.dtype and soft.dtype == xj.dtype
    ref_s = optax.softmax_cross_entropy_with_integer_labels(x32, jnp.asarray(y)).astype(xj.dtype)
    ref_c = optax.softmax_cross_entropy(x32, jnp.asarray(t, dtype=xj.dtype).astype(jnp.float32)).astype(xj.dtype)
    np.testing.assert_array_equal(np.asarray(sparse, np.float32), np.asarray(ref_s, np.float32))
    np.testing.assert_allclose(np.asarray(soft, np.float32), np.asarray(ref_c, np.float32), rtol=1e-2)


def test_large_logits_keep_their_precision():
    x, y, t = _data((64, 300), -1, seed=15)
    x32 = (x + 1000.0).astype(np.float32)
    x64 = x32.astype(np.float64)
    m = x64.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(x64 - m).sum(-1, keepdims=True)))[:, 0]
    got_s = pl.sparse_categorical_crossentropy(jnp.asarray(y), jnp.asarray(x32), from_logits=True)
    got_c = pl.categorical_crossentropy(jnp.asarray(t, dtype=jnp.float32), jnp.asarray(x32), from_logits=True)
    np.testing.assert_allclose(got_s, lse - x64[np.arange(64), y], rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(got_c, (t.astype(np.float32) * (lse[:, None] - x64)).sum(-1), rtol=2e-5, atol=2e-4)


@pytest.mark.parametrize(("shape", "axis", "pos"), [((6, 5), -1, (4,)), ((3, 5, 4), 1, (1, 2))], ids=str)
@pytest.mark.parametrize("bad", ["K", -1])
def test_bad_labels_raise_eagerly_and_name_the_index(shape, axis, pos, bad):
    x, y, _ = _data(shape, axis, seed=16)
    bad = shape[axis] if bad == "K" else bad
    y[pos] = bad
    with pytest.raises(pl.LabelValueError, match=re.escape(f"class index {bad} at index {pos}")):
        pl.sparse_categorical_crossentropy(jnp.asarray(y), jnp.asarray(x, dtype=jnp.float32), from_logits=True, axis=axis)


@pytest.mark.parametrize("bad", [-0.1, math.nan])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_bad_soft_labels_raise_eagerly_and_name_the_index(bad, label_smoothing):
    x, _, t = _data((6, 5), -1, seed=17)
    t[2, 3] = bad
    with pytest.raises(pl.LabelValueError, match=re.escape("at index (2, 3)")):
        pl.categorical_crossentropy(
            jnp.asarray(t, dtype=jnp.float32),
            jnp.asarray(x, dtype=jnp.float32),
            from_logits=True,
            label_smoothing=label_smoothing,
        )


def test_negative_zero_labels_pass_the_check():
    x, _, t = _data((6, 5), -1, seed=18)
    t[2, 3] = 0.0
    t[2] /= t[2].sum()
    t[2, 3] = -0.0
    got = pl.categorical_crossentropy(jnp.asarray(t, dtype=jnp.float32), jnp.asarray(x, dtype=jnp.float32), from_logits=True)
    np.testing.assert_allclose(
        got, optax.softmax_cross_entropy(jnp.asarray(x, dtype=jnp.float32), jnp.asarray(t, dtype=jnp.float32)), rtol=2e-6
    )


def test_from_probabilities_the_generic_formula_runs():
    rng = np.random.default_rng(19)
    p = rng.random((8, 6)) + 0.1
    p = p / p.sum(-1, keepdims=True)
    y = rng.integers(0, 6, 8)
    t = np.eye(6)[y]
    pj = jnp.asarray(p, dtype=jnp.float32)
    want = -np.log(p[np.arange(8), y])
    np.testing.assert_allclose(pl.sparse_categorical_crossentropy(jnp.asarray(y), pj), want, rtol=2e-6)
    np.testing.assert_allclose(pl.categorical_crossentropy(jnp.asarray(t, dtype=jnp.float32), pj), want, rtol=2e-6)
    half = p.copy()
    half[1] *= 0.5
    with pytest.warns(pl.ProblossWarning, match=r"index \(1,\) sums to 0\.5"):
        pl.sparse_categorical_crossentropy(jnp.asarray(y), jnp.asarray(half, dtype=jnp.float32))


# ------------------------------------------------------------- value checks under tracing

_LOGITS = np.array([[2.0, -1.0, 0.5], [0.3, 0.1, -2.0], [1.5, 1.0, 0.0], [-0.5, 2.5, 1.0]], np.float32)
_LABELS = np.array([0, 2, 1, 2])


def _mistakes():
    jnp = jax.numpy
    x = jnp.asarray(_LOGITS)
    bad_labels = jnp.array([0, 5, 1, 2])
    nan_logits = x.at[1, 1].set(jnp.nan)
    scce = pl.SparseCategoricalCrossentropy(from_logits=True)
    return {
        "label out of range": (lambda z: scce(bad_labels, z), x, r"`y_true` holds class index 5 at index \(1,\)"),
        "logits as probabilities": (
            lambda z: pl.SparseCategoricalCrossentropy()(jnp.asarray(_LABELS), z), x, r"`y_pred` holds .* must be \[0, 1\]"),
        "logits as binary probabilities": (
            lambda z: pl.BinaryCrossentropy()(jnp.ones_like(z), z), x, r"pass `from_logits=True`"),
        "NaN in the logits": (lambda z: scce(jnp.asarray(_LABELS), z), nan_logits, r"`y_pred` holds NaN or \+?inf there"),
    }


_MODES = {
    "jit": lambda f: jax.jit(f),
    "grad": lambda f: jax.grad(f),
    "jit of grad": lambda f: jax.jit(jax.grad(f)),
    "vmap": lambda f: jax.vmap(f),
}


@pytest.mark.parametrize("mode", list(_MODES))
@pytest.mark.parametrize("mistake", ["label out of range", "logits as probabilities", "logits as binary probabilities", "NaN in the logits"])
def test_classic_mistakes_raise_under_every_transform(mistake, mode):
    f, x, message = _mistakes()[mistake]
    if mode == "vmap":
        x = jax.numpy.stack([x, x])
    # Under jit JAX wraps our error in its JaxRuntimeError, whose message ends with ours.
    with pytest.raises(Exception, match=message):
        jax.block_until_ready(_MODES[mode](f)(x))


@pytest.mark.parametrize("mode", ["jit", "grad", "jit of grad"])
def test_a_clean_input_gives_the_eager_value_and_gradient_under_transforms(mode):
    jnp = jax.numpy
    x, y = jnp.asarray(_LOGITS), jnp.asarray(_LABELS)
    scce = pl.SparseCategoricalCrossentropy(from_logits=True)
    f = lambda z: scce(y, z)  # noqa: E731
    reference = optax.softmax_cross_entropy_with_integer_labels(x, y).mean()
    ref_grad = jax.grad(lambda z: optax.softmax_cross_entropy_with_integer_labels(z, y).mean())(x)
    got = _MODES[mode](f)(x)
    expected = ref_grad if "grad" in mode else reference
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-7)


def test_value_checks_off_leave_the_traced_program_alone():
    jnp = jax.numpy
    f = jax.jit(lambda z: pl.SparseCategoricalCrossentropy(from_logits=True)(jnp.array([0, 5, 1, 2]), z))
    with pl.set_value_checks(False):
        out = f(jnp.asarray(_LOGITS))
    assert np.isnan(float(out))  # JAX reads NaN for the index out of range: nothing checked it
