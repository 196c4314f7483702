"""Masks and weights against the peers that define them, run live.

* ``where=`` on the functions: Optax's ``softmax_cross_entropy``,
  ``softmax_cross_entropy_with_integer_labels`` and ``kl_divergence`` (value and
  gradient); the binary cross-entropy's per-entry mean against a float64 formula.  What
  lies outside the mask (NaN, inf, values out of range) must reach neither the value nor
  the gradient, eagerly and under ``jax.jit``.
* ``class_weight=`` on the categorical classes: ``torch.nn.functional.cross_entropy
  (weight=)`` with its reductions, ``label_smoothing`` and ``ignore_index``; from
  probabilities a float64 formula.
* ``pos_weight=`` on ``BinaryCrossentropy``: ``F.binary_cross_entropy_with_logits
  (pos_weight=)``; from probabilities a float64 formula.
* ``label_smoothing=`` for integer labels: ``F.cross_entropy(label_smoothing=)`` and
  Keras's ``categorical_crossentropy`` on one-hot labels.
* The messages of bad masks and bad weights.

numpy and torch compute in float64 (tolerance 1e-10) and float32 (2e-5), JAX eagerly in
float32 and under ``jax.jit`` in float64 (``jax.enable_x64``); the references are float64.
The gradients are torch's autograd and ``jax.grad``.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

import probloss as pl
from tests.conftest import _make

torch = pytest.importorskip("torch")
F = torch.nn.functional
jax = pytest.importorskip("jax")
jnp = jax.numpy
optax = pytest.importorskip("optax")

N, K = 7, 5
# (backend, dtype): JAX eagerly in float32 (its default), jitted in float64 (jax.enable_x64)
CASES = [
    pytest.param(name, dtype, id=f"{name}-{np.dtype(dtype).name}")
    for name, dtype in [
        ("numpy", np.float64),
        ("numpy", np.float32),
        ("torch", np.float64),
        ("torch", np.float32),
        ("jax", np.float32),
        ("jax-jit", np.float64),
    ]
]
W = [0.5, 1.0, 2.0, 1.5, 3.0]  # class weights, one per class


def _tol(dtype):
    return {"rtol": 1e-10, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-5, "atol": 2e-6}


def _f32(a):
    """Values exactly representable in float32, so both dtypes see the same inputs."""
    return np.asarray(a, np.float32).astype(np.float64)


def _logits(seed=0, shape=(N, K)):
    return _f32(np.random.default_rng(seed).standard_normal(shape) * 2)


def _soft(seed=1, shape=(N, K)):
    t = np.random.default_rng(seed).random(shape) ** 2
    return _f32(t / t.sum(-1, keepdims=True))


def _probs(seed=2, shape=(N, K)):
    x = np.random.default_rng(seed).standard_normal(shape)
    e = np.exp(x - x.max(-1, keepdims=True))
    return _f32(e / e.sum(-1, keepdims=True))


LABELS = np.array([0, 3, 1, 4, 2, 3, 1])
ONE_HOT = np.eye(K)[LABELS]


def _run(name, fn, args, *, dtype=np.float64, wrt=1):
    """``fn(*args)`` on backend ``name`` in ``dtype`` (integer and boolean arrays keep their
    dtype): the value and the gradient of its sum with respect to ``args[wrt]`` (None on
    NumPy), both as float64 NumPy arrays."""
    be = _make(name)
    args = [np.asarray(a, dtype) if np.asarray(a).dtype.kind == "f" else np.asarray(a) for a in args]
    if name == "torch":
        ts = [torch.as_tensor(a) for a in args]
        ts[wrt].requires_grad_(True)
        out = fn(*ts)
        assert out.dtype == getattr(torch, np.dtype(dtype).name)
        out.sum().backward()
        return out.detach().numpy().astype(np.float64), ts[wrt].grad.numpy().astype(np.float64)
    if name.startswith("jax"):
        with jax.enable_x64(dtype == np.float64):
            js = [jnp.asarray(a) for a in args]

            def total(z):
                out = fn(*js[:wrt], z, *js[wrt + 1 :])
                return jnp.sum(out), out

            vg = jax.value_and_grad(total, has_aux=True)
            (_, value), grad = (jax.jit(vg) if be.jit else vg)(js[wrt])
            assert value.dtype == np.dtype(dtype)
            return np.asarray(value, np.float64), np.asarray(grad, np.float64)
    out = fn(*args)
    assert out.dtype == dtype
    return np.asarray(out, np.float64), None


def _close(got, want, dtype, case=""):
    value, grad = got
    want_value, want_grad = want
    np.testing.assert_allclose(value, want_value, **_tol(dtype), err_msg=f"value {case}")
    if grad is not None:
        assert np.all(np.isfinite(grad)), case
        np.testing.assert_allclose(grad, want_grad, **_tol(dtype), err_msg=f"gradient {case}")


def _optax(fn, *args, wrt=0):
    """An Optax loss in float64: the value and the gradient of its sum w.r.t. ``args[wrt]``."""
    with jax.enable_x64(True):
        js = [jnp.asarray(a) for a in args]

        def f(z):
            return fn(*js[:wrt], z, *js[wrt + 1 :])

        value = f(js[wrt])
        grad = jax.grad(lambda z: jnp.sum(f(z)))(js[wrt])
        return np.asarray(value, np.float64), np.asarray(grad, np.float64)


# ================================================================ where= (Optax's masks)

# one flag per entry: row 2 has none, every other row at least two
ENTRY_MASK = np.random.default_rng(5).random((N, K)) < 0.6
ENTRY_MASK[:, :2] = True
ENTRY_MASK[2] = False
SAMPLE_MASK = np.array([True, False, True, True, False, True, True])


def _poison(a, outside, values=(np.nan, np.inf, -np.inf)):
    """``a`` with NaN, +inf and -inf in turn at the positions of ``outside``."""
    a = np.array(a, np.float64)
    idx = np.argwhere(outside)
    for i, pos in enumerate(idx):
        a[tuple(pos)] = values[i % len(values)]
    return a


def _outside(mask):
    return ~mask if mask.ndim == 2 else np.broadcast_to(~mask[:, None], (N, K))


@pytest.mark.parametrize("kind", ["entries", "samples"])
@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_categorical_where_matches_optax(name, kind, dtype):
    mask = ENTRY_MASK if kind == "entries" else SAMPLE_MASK
    t, x = _soft(), _logits()
    want = _optax(lambda x, t, m: optax.softmax_cross_entropy(x, t, where=m), x, t, mask)
    bad_t, bad_x = _poison(t, _outside(mask), (np.nan,)), _poison(x, _outside(mask))

    def fn(t, x, m):
        return pl.categorical_crossentropy(t, x, from_logits=True, where=m)

    got = _run(name, fn, (bad_t, bad_x, mask), dtype=dtype)
    _close(got, want, dtype)
    outside = [2] if kind == "entries" else [1, 4]  # samples with nothing inside: 0 (Optax: 0 too)
    assert np.all(got[0][outside] == 0)
    if got[1] is not None:
        assert np.all(got[1][_outside(mask)] == 0)

    def tf_form(t, x, m):
        return pl.softmax_cross_entropy_with_logits(labels=t, logits=x, where=m)

    _close(_run(name, tf_form, (bad_t, bad_x, mask), dtype=dtype), want, dtype)


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_sparse_where_per_sample_matches_optax(name, dtype):
    x = _logits()
    want = _optax(lambda x, y, m: optax.softmax_cross_entropy_with_integer_labels(x, y, where=m), x, LABELS, SAMPLE_MASK)
    bad_x = _poison(x, _outside(SAMPLE_MASK))
    for fn in (
        lambda y, x, m: pl.sparse_categorical_crossentropy(y, x, from_logits=True, where=m),
        lambda y, x, m: pl.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x, where=m),
    ):
        got = _run(name, fn, (LABELS, bad_x, SAMPLE_MASK), dtype=dtype)
        _close(got, want, dtype)
        assert np.all(got[0][~SAMPLE_MASK] == 0)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_sparse_where_ignores_the_labels_of_masked_samples(name):
    """Padding positions often hold a label out of range (-100, a pad id): masked out with
    ``where``, they should give 0 as in Optax."""
    be = _make(name)
    x = _logits()
    labels = LABELS.copy()
    labels[~SAMPLE_MASK] = [99, -3]
    want, _ = _optax(lambda x, y, m: optax.softmax_cross_entropy_with_integer_labels(x, y, where=m), x, labels, SAMPLE_MASK)
    with jax.enable_x64(True):
        got = pl.sparse_categorical_crossentropy(be.asarray(labels), be.asarray(x), from_logits=True, where=be.asarray(SAMPLE_MASK))
        np.testing.assert_allclose(be.to_numpy(got), want, rtol=1e-10)
        if name == "jax":  # the same inside a compiled program, whose staged label test must not fire
            step = jax.jit(lambda y, x, m: pl.sparse_categorical_crossentropy(y, x, from_logits=True, where=m))
            got = step(jnp.asarray(labels), jnp.asarray(x), jnp.asarray(SAMPLE_MASK))
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_sparse_where_per_entry_matches_optax_where_the_label_is_inside(name, dtype):
    """An entry outside leaves the softmax.  Where the label itself is outside, probloss
    gives 0 (its docstring) and Optax the log-normaliser of the others minus the label's
    logit: those samples are compared with 0, the others with Optax."""
    x = _logits()
    label_inside = ENTRY_MASK[np.arange(N), LABELS]
    assert label_inside.sum() >= 3 and (~label_inside).sum() >= 2  # both cases occur
    want_value, want_grad = _optax(
        lambda x, y, m: optax.softmax_cross_entropy_with_integer_labels(x, y, where=m), x, LABELS, ENTRY_MASK
    )
    got_value, got_grad = _run(
        name,
        lambda y, x, m: pl.sparse_categorical_crossentropy(y, x, from_logits=True, where=m),
        (LABELS, _poison(x, ~ENTRY_MASK), ENTRY_MASK),
        dtype=dtype,
    )
    tol = _tol(dtype)
    np.testing.assert_allclose(got_value[label_inside], want_value[label_inside], **tol)
    assert np.all(got_value[~label_inside] == 0)
    assert np.all(want_value[~label_inside & ENTRY_MASK.any(-1)] > 0)  # (Optax's value there is not 0)
    if got_grad is not None:
        assert np.all(np.isfinite(got_grad))
        np.testing.assert_allclose(got_grad[label_inside], want_grad[label_inside], **tol)
        assert np.all(got_grad[~label_inside] == 0) and np.all(got_grad[~ENTRY_MASK] == 0)


def _binary_ref(t, z, m, from_logits):
    """Float64 ``sum_k m e / sum_k m`` (0 for a row with no entry inside) and its gradient
    with respect to the logits (or probabilities, away from the clipping bounds)."""
    n = m.sum(-1, keepdims=True)
    d = np.where(n > 0, n, 1.0)
    zs = np.where(m, z, 0.5)
    ts = np.where(m, t, 0.0)
    if from_logits:
        e = ts * np.logaddexp(0, -zs) + (1 - ts) * np.logaddexp(0, zs)
        g = 1 / (1 + np.exp(-zs)) - ts
    else:
        e = -(ts * np.log(zs) + (1 - ts) * np.log(1 - zs))
        g = -ts / zs + (1 - ts) / (1 - zs)
    return np.where(m, e, 0).sum(-1) / d[:, 0], np.where(m, g, 0) / d


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("kind", ["entries", "samples"])
@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_binary_where_is_the_mean_over_the_mask(name, kind, from_logits, dtype):
    mask = ENTRY_MASK if kind == "entries" else SAMPLE_MASK
    full = mask if kind == "entries" else np.broadcast_to(mask[:, None], (N, K))
    t = _f32(np.random.default_rng(7).random((N, K)) < 0.4)
    t[0, 0] = 0.25  # a soft target
    z = _logits(3) if from_logits else _f32(np.clip(np.random.default_rng(3).random((N, K)), 0.05, 0.95))
    # outside: NaN, inf, and (from probabilities) values out of [0, 1] that would be errors inside
    bad_z = _poison(z, ~full, (np.nan, np.inf, -np.inf) if from_logits else (np.nan, 2.0, -1.0))
    bad_t = _poison(t, ~full, (np.nan, 7.0))

    def fn(t, z, m):
        return pl.binary_crossentropy(t, z, from_logits=from_logits, where=m)

    got = _run(name, fn, (bad_t, bad_z, mask), dtype=dtype)
    _close(got, _binary_ref(t, z, full, from_logits), dtype)
    assert np.all(got[0][~full.any(-1)] == 0)
    if got[1] is not None:
        assert np.all(got[1][~full] == 0)


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_kl_divergence_where_matches_optax(name, dtype):
    t, p = _f32(np.random.default_rng(8).uniform(0.05, 1, (N, K))), _f32(np.random.default_rng(9).uniform(0.05, 1, (N, K)))
    want = _optax(lambda p, t, m: optax.kl_divergence(jnp.log(p), t, where=m), p, t, ENTRY_MASK)
    got = _run(
        name,
        lambda t, p, m: pl.kl_divergence(t, p, where=m),
        (_poison(t, ~ENTRY_MASK, (np.nan, 3.0)), _poison(p, ~ENTRY_MASK, (np.nan, -1.0)), ENTRY_MASK),
        dtype=dtype,
    )
    _close(got, want, dtype)
    assert got[0][2] == 0


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_where_from_probabilities_takes_one_flag_per_sample(name):
    """From probabilities a masked sample gives 0, whatever it holds (NaN, values out of
    [0, 1]), and the others Keras's float64 formula ``-log(clip(p_y / sum(p)))``."""
    be = _make(name)
    p = _probs()
    p_bad = _poison(p, _outside(SAMPLE_MASK), (np.nan, 5.0))
    keras_formula = -np.log(np.clip(p[np.arange(N), LABELS] / p.sum(-1), 1e-7, 1 - 1e-7))
    with jax.enable_x64(True):
        got = pl.categorical_crossentropy(be.asarray(ONE_HOT), be.asarray(p_bad), where=be.asarray(SAMPLE_MASK))
        np.testing.assert_allclose(be.to_numpy(got), np.where(SAMPLE_MASK, keras_formula, 0), rtol=1e-10)
        got = pl.sparse_categorical_crossentropy(be.asarray(LABELS), be.asarray(p_bad), where=be.asarray(SAMPLE_MASK))
        np.testing.assert_allclose(be.to_numpy(got), np.where(SAMPLE_MASK, keras_formula, 0), rtol=1e-10)


# ------------------------------------------------------------------------- bad masks


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_bad_masks_are_refused_with_a_message(name):
    be = _make(name)
    t, x, y = be.asarray(_soft()), be.asarray(_logits()), be.asarray(LABELS)
    cce = pl.categorical_crossentropy
    with pytest.raises(pl.ShapeError, match=r"`where` of shape \(7, 3\) fits neither `y_pred` of shape \(7, 5\).*\(7,\)"):
        cce(t, x, from_logits=True, where=be.asarray(ENTRY_MASK[:, :3]))
    with pytest.raises(pl.ShapeError, match=r"sparse_categorical_crossentropy: `where` of shape \(5,\)"):
        pl.sparse_categorical_crossentropy(y, x, from_logits=True, where=be.asarray(np.ones(5, bool)))
    with pytest.raises(pl.ProblossTypeError, match=r"`where` must be a boolean mask.*dtype.*int.*mask == 1"):
        cce(t, x, from_logits=True, where=be.asarray(ENTRY_MASK.astype(np.int32)))
    with pytest.raises(pl.ProblossTypeError, match=r"binary_crossentropy: `where` must be a boolean mask.*float"):
        pl.binary_crossentropy(t, x, from_logits=True, where=be.asarray(ENTRY_MASK.astype(np.float32)))
    with pytest.raises(pl.ArgumentError, match=r"masks single classes, which takes `from_logits=True`.*one flag per\s+sample"):
        cce(be.asarray(ONE_HOT), be.asarray(_probs()), where=be.asarray(ENTRY_MASK))
    other = torch.as_tensor(ENTRY_MASK) if name != "torch" else jnp.asarray(ENTRY_MASK)
    with pytest.raises(pl.ProblossTypeError, match=r"`where` must be an array of the same library as `y_pred`|different array libraries \(`where` is"):
        cce(t, x, from_logits=True, where=other)


def test_bad_masks_are_refused_under_jit():
    t, x = jnp.asarray(_soft(), jnp.float32), jnp.asarray(_logits(), jnp.float32)
    with pytest.raises(pl.ShapeError, match=r"`where` of shape \(7, 4\) fits neither"):
        jax.jit(lambda t, x, m: pl.categorical_crossentropy(t, x, from_logits=True, where=m))(t, x, jnp.ones((N, 4), bool))
    with pytest.raises(pl.ProblossTypeError, match=r"`where` must be a boolean mask"):
        jax.jit(lambda t, x, m: pl.binary_crossentropy(t, x, from_logits=True, where=m))(t, x, jnp.ones((N, K), jnp.int32))


# ============================================== class_weight= (torch's weighted mean)

REDUCTIONS = [("sum_over_batch_size", "mean"), ("sum", "sum"), ("none", "none")]
IGNORED = np.array([0, -1, 1, 4, -1, 3, 1])  # two positions ignored (ignore_class=-1)


def _torch_ce(x, y, *, reduction, weight=None, a=0.0, ignore_index=-100):
    """``F.cross_entropy`` in float64 on (N, K) logits and class indices: value and the
    gradient of its sum w.r.t. the logits."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    out = F.cross_entropy(xt, torch.as_tensor(y), weight=w, reduction=reduction, label_smoothing=a, ignore_index=ignore_index)
    out.sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


def _options():
    """(probloss reduction, torch reduction, label smoothing): every pair the tests run."""
    return [(r, tr, a) for r, tr in REDUCTIONS for a in (0.0, 0.15)]


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_sparse_class_weight_matches_torch(name, dtype):
    x = _logits(11)
    for reduction, torch_reduction, a in _options():
        loss = pl.SparseCategoricalCrossentropy(from_logits=True, class_weight=W, label_smoothing=a, reduction=reduction)
        want = _torch_ce(x, LABELS, reduction=torch_reduction, weight=W, a=a)
        _close(_run(name, loss, (LABELS, x), dtype=dtype), want, dtype, f"{reduction}, a={a}")


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_sparse_class_weight_with_ignore_class_matches_ignore_index(name, dtype):
    x = _logits(12)
    for reduction, torch_reduction, a in _options():
        loss = pl.SparseCategoricalCrossentropy(
            from_logits=True, class_weight=W, label_smoothing=a, ignore_class=-1, reduction=reduction
        )
        want = _torch_ce(x, IGNORED, reduction=torch_reduction, weight=W, a=a, ignore_index=-1)
        got = _run(name, loss, (IGNORED, x), dtype=dtype)
        _close(got, want, dtype, f"{reduction}, a={a}")
        if got[1] is not None:
            assert np.all(got[1][IGNORED == -1] == 0)


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_categorical_class_weight_on_one_hot_labels_matches_torch(name, dtype):
    """One-hot labels: the normaliser ``sum_c w_c y_c`` is torch's ``w[y]`` for class indices."""
    x = _logits(13)
    for reduction, torch_reduction, a in _options():
        loss = pl.CategoricalCrossentropy(from_logits=True, class_weight=W, label_smoothing=a, reduction=reduction)
        want = _torch_ce(x, LABELS, reduction=torch_reduction, weight=W, a=a)
        _close(_run(name, loss, (ONE_HOT, x), dtype=dtype), want, dtype, f"{reduction}, a={a}")


def _weighted_probs_ref(p, y, w, a, reduction):
    """Float64 from probabilities: ``l_n = -sum_c w_c q_c log(clip(p_c / S))``, ``q`` the
    smoothed one-hot labels; the mean divides by ``sum_n w[y_n]``.  Returns the value and
    the gradient of its sum w.r.t. ``p`` (rows sum to 1 and no clipping is active)."""
    w = np.asarray(w, np.float64)
    q = np.eye(p.shape[1])[y] * (1 - a) + a / p.shape[1]
    u = q * w
    s = p.sum(-1, keepdims=True)
    values = -(u * np.log(np.clip(p / s, 1e-7, 1 - 1e-7))).sum(-1)
    grad = -u / p + u.sum(-1, keepdims=True) / s
    if reduction == "none":
        return values, grad
    den = 1.0 if reduction == "sum" else w[y].sum()
    return values.sum() / den, grad / den


@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_class_weight_from_probabilities(name, dtype):
    p = _probs(14)
    for reduction, _, a in _options():
        want = _weighted_probs_ref(p, LABELS, W, a, reduction)
        sparse = pl.SparseCategoricalCrossentropy(class_weight=W, label_smoothing=a, reduction=reduction)
        _close(_run(name, sparse, (LABELS, p), dtype=dtype), want, dtype, f"sparse, {reduction}, a={a}")
        dense = pl.CategoricalCrossentropy(class_weight=W, label_smoothing=a, reduction=reduction)
        _close(_run(name, dense, (ONE_HOT, p), dtype=dtype), want, dtype, f"categorical, {reduction}, a={a}")


def test_class_weight_differs_from_keras_fit_class_weight():
    """The number docs/semantics.md works out: torch's weighted mean, not Keras's
    ``fit(class_weight=)`` (sample weights ``w[y]``, then divided by the number of samples)."""
    keras = pytest.importorskip("keras")
    x = np.array([[2.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1])
    w = [1.0, 3.0]
    ours = float(pl.SparseCategoricalCrossentropy(from_logits=True, class_weight=w)(y, x))
    torch_mean = float(F.cross_entropy(torch.tensor(x), torch.tensor(y), weight=torch.tensor(w, dtype=torch.float64)))
    np.testing.assert_allclose(ours, torch_mean, rtol=1e-12)
    keras_fit = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, x, sample_weight=np.array(w)[y]))
    per_sample = np.logaddexp.reduce(x, -1) - x[[0, 1], y]
    np.testing.assert_allclose(ours, (1 * per_sample[0] + 3 * per_sample[1]) / 4, rtol=1e-12)
    np.testing.assert_allclose(keras_fit, (1 * per_sample[0] + 3 * per_sample[1]) / 2, rtol=1e-6)
    np.testing.assert_allclose([ours, keras_fit], [0.2667, 0.5334], atol=5e-5)  # the doc's numbers
    # probloss's class without class_weight, given the same sample weights, is Keras's fit
    plain = float(pl.SparseCategoricalCrossentropy(from_logits=True)(y, x, sample_weight=np.array(w)[y]))
    np.testing.assert_allclose(plain, keras_fit, rtol=1e-6)


def test_the_worked_example_of_the_docs_runs():
    """docs/semantics.md's class-weight example, as a doctest (its numbers are checked
    against torch and Keras above)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "semantics.md").read_text()
    section = text.split("## Masks, class weights and ruled-out classes", 1)[1].split("\n## ", 1)[0]
    section = "\n".join("" if line.startswith("```") else line for line in section.splitlines())  # fences end outputs
    test = doctest.DocTestParser().get_doctest(section, {}, "semantics.md", "docs/semantics.md", 0)
    assert test.examples
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0


# ===================================================== pos_weight= (torch's, tf.nn's)

POS_WEIGHTS = {"scalar": 2.5, "per-class": [0.5, 1.0, 2.0, 4.0, 0.0]}


def _binary_targets(seed=15):
    t = _f32(np.random.default_rng(seed).random((N, K)) < 0.4)
    t[1, 2] = 0.3  # a soft target
    return t


def _torch_bce(x, t, q, a, reduction):
    """``F.binary_cross_entropy_with_logits(pos_weight=q)`` on Keras-smoothed targets,
    float64, read with Keras's reductions (a mean over the class axis first)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor(t * (1 - a) + 0.5 * a, dtype=torch.float64)
    qt = torch.tensor(q, dtype=torch.float64)
    if reduction == "sum_over_batch_size":
        out = F.binary_cross_entropy_with_logits(xt, ts, pos_weight=qt, reduction="mean")
    else:
        out = F.binary_cross_entropy_with_logits(xt, ts, pos_weight=qt, reduction="none").mean(-1)
        out = out.sum() if reduction == "sum" else out
    out.sum().backward()
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("q", POS_WEIGHTS.keys())
@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_pos_weight_matches_torch(name, q, dtype):
    x, t = _logits(16), _binary_targets()
    for reduction in ("sum_over_batch_size", "sum", "none"):
        for a in (0.0, 0.1):
            loss = pl.BinaryCrossentropy(from_logits=True, pos_weight=POS_WEIGHTS[q], label_smoothing=a, reduction=reduction)
            want = _torch_bce(x, t, POS_WEIGHTS[q], a, reduction)
            _close(_run(name, loss, (t, x), dtype=dtype), want, dtype, f"{reduction}, a={a}")


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_weighted_cross_entropy_with_logits_matches_torch(name):
    be = _make(name)
    x, t = _logits(17), _binary_targets()
    q = np.array(POS_WEIGHTS["per-class"])
    want = F.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(t), pos_weight=torch.tensor(q), reduction="none")
    with jax.enable_x64(True):
        got = pl.weighted_cross_entropy_with_logits(labels=be.asarray(t), logits=be.asarray(x), pos_weight=be.asarray(q))
        np.testing.assert_allclose(be.to_numpy(got), want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("q", POS_WEIGHTS.keys())
@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_pos_weight_from_probabilities(name, q, dtype):
    """Float64 ``mean_k[-q t log p - (1 - t) log(1 - p)]`` (``t`` smoothed, ``p`` inside the
    clipping bounds), and its gradient ``(-q t / p + (1 - t) / (1 - p)) / K``."""
    p = _f32(np.random.default_rng(18).uniform(0.02, 0.98, (N, K)))
    t = _binary_targets()
    qv, a = np.asarray(POS_WEIGHTS[q], np.float64), 0.1
    ts = t * (1 - a) + 0.5 * a
    want = (-(qv * ts * np.log(p) + (1 - ts) * np.log(1 - p)).mean(-1), (-qv * ts / p + (1 - ts) / (1 - p)) / K)
    loss = pl.BinaryCrossentropy(pos_weight=POS_WEIGHTS[q], label_smoothing=a, reduction="none")
    _close(_run(name, loss, (t, p), dtype=dtype), want, dtype)


# ============================== label_smoothing= for integer labels (torch's, Keras's)


@pytest.mark.parametrize("a", [0.1, 1.0])
@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_sparse_label_smoothing_matches_torch(name, a, dtype):
    x = _logits(19)
    got = _run(name, lambda y, x: pl.sparse_categorical_crossentropy(y, x, from_logits=True, label_smoothing=a), (LABELS, x), dtype=dtype)
    _close(got, _torch_ce(x, LABELS, reduction="none", a=a), dtype)


@pytest.mark.parametrize("ignore", [None, -1], ids=["plain", "ignore_class"])
@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_sparse_label_smoothing_class_mean_matches_torch(name, ignore, dtype):
    """The class's default mean (the fused path without ``ignore_class``), and with
    ``ignore_class`` torch's ``ignore_index``: ignored positions leave the mean."""
    x, y = _logits(20), (LABELS if ignore is None else IGNORED)
    loss = pl.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.2, ignore_class=ignore)
    want = _torch_ce(x, y, reduction="mean", a=0.2, ignore_index=-100 if ignore is None else ignore)
    _close(_run(name, loss, (y, x), dtype=dtype), want, dtype)


def _keras_cce(y_true, y_pred, from_logits, a):
    """Keras's ``categorical_crossentropy`` (JAX backend) in float64: value and gradient."""
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("the Keras comparison runs on Keras's JAX backend")
    with jax.enable_x64(True):
        t = jnp.asarray(y_true)

        def f(z):
            return keras.losses.categorical_crossentropy(t, z, from_logits=from_logits, label_smoothing=a)

        z = jnp.asarray(y_pred)
        value = f(z)
        assert value.dtype == jnp.float64
        return np.asarray(value), np.asarray(jax.grad(lambda z: jnp.sum(f(z)))(z))


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize(("name", "dtype"), CASES)
def test_sparse_label_smoothing_matches_keras_on_one_hot_labels(name, from_logits, dtype):
    z = _logits(21) if from_logits else _probs(21)
    want = _keras_cce(ONE_HOT, z, from_logits, 0.2)

    def fn(y, z):
        return pl.sparse_categorical_crossentropy(y, z, from_logits=from_logits, label_smoothing=0.2)

    _close(_run(name, fn, (LABELS, z), dtype=dtype), want, dtype)


# ================================================================== argument errors


@pytest.mark.parametrize("cls", [pl.CategoricalCrossentropy, pl.SparseCategoricalCrossentropy])
def test_bad_class_weight_is_refused(cls):
    with pytest.raises(pl.ArgumentError, match=r"`class_weight` must hold finite numbers >= 0, one per class; entry 1 is -1"):
        cls(class_weight=[1.0, -1, 2.0])
    with pytest.raises(pl.ArgumentError, match=r"`class_weight` must hold finite numbers >= 0.*entry 0 is nan"):
        cls(class_weight=np.array([np.nan, 1.0]))
    with pytest.raises(pl.ArgumentError, match=r"`class_weight` is empty"):
        cls(class_weight=[])
    with pytest.raises(pl.ArgumentError, match=r"`class_weight` must be a list of numbers >= 0"):
        cls(class_weight="balanced")
    x = _logits()
    y = ONE_HOT if cls is pl.CategoricalCrossentropy else LABELS
    with pytest.raises(pl.ShapeError, match=r"`class_weight` has 3 weights but `y_pred` has 5 classes; give one weight per class"):
        cls(from_logits=True, class_weight=[1.0, 2.0, 3.0])(y, x)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_bad_pos_weight_is_refused(name):
    be = _make(name)
    t, x = be.asarray(_binary_targets()), be.asarray(_logits())
    with pytest.raises(pl.ShapeError, match=r"`pos_weight` has 3 weights but `y_pred` has 5 classes"):
        pl.BinaryCrossentropy(from_logits=True, pos_weight=[1.0, 2.0, 3.0])(t, x)
    with pytest.raises(pl.ArgumentError, match=r"`pos_weight` must hold finite numbers >= 0"):
        pl.BinaryCrossentropy(pos_weight=np.ones((2, K)))  # two rows: not one weight per class
    with pytest.raises(pl.ArgumentError, match=r"`pos_weight` must be a finite number >= 0.*got -2.0"):
        pl.BinaryCrossentropy(pos_weight=-2.0)
    with pytest.raises(pl.ArgumentError, match=r"`pos_weight` must hold finite numbers >= 0.*entry 4 is inf"):
        pl.BinaryCrossentropy(pos_weight=[1.0, 1.0, 1.0, 1.0, np.inf])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.1"])
def test_label_smoothing_out_of_range_is_refused(bad):
    pattern = r"`label_smoothing` must be a number in \[0, 1\]; got"
    for make in (
        lambda: pl.SparseCategoricalCrossentropy(label_smoothing=bad),
        lambda: pl.CategoricalCrossentropy(label_smoothing=bad),
        lambda: pl.BinaryCrossentropy(label_smoothing=bad),
        lambda: pl.sparse_categorical_crossentropy(LABELS, _logits(), from_logits=True, label_smoothing=bad),
        lambda: pl.categorical_crossentropy(ONE_HOT, _logits(), from_logits=True, label_smoothing=bad),
    ):
        with pytest.raises(pl.ArgumentError, match=pattern):
            make()
