"""Ruled-out classes: softmax cross-entropies from logits where some logits are ``-inf``.

The rules (``probloss.functional._logits``): a class whose logit is ``-inf`` contributes
nothing when its target weight is 0 and gets a zero gradient; label smoothing spreads over
the allowed classes; a target on a ruled-out class gives ``inf`` or an error
(``ruled_out_target``); NaN and ``+inf`` logits stay errors.

They are checked on every path: the generic formula, NumPy (one expression, row chunks,
the few-class loop, the numba kernel), torch (``F.cross_entropy`` or the exact small
formula; ``SoftTargetCE`` / ``SparseCE`` in several chunks), JAX eager and jitted.  The
references: torch's ``F.cross_entropy`` run live on each row's allowed classes only (what
ruling a class out means), value and gradient, and a float64 formula written from the
math for the big shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl
from probloss._dispatch import generic_only
from tests import reference as ref
from tests.conftest import _make

torch = pytest.importorskip("torch")
F = torch.nn.functional
jax = pytest.importorskip("jax")
jnp = jax.numpy

INF = np.inf
# (6, 5): the small paths; (2000, 40): NumPy's few-class loop (float64) or numba kernel
# (float32), torch's chunked Functions; (300, 300): NumPy's row chunks (float64)
SHAPES = [(6, 5), (2000, 40), (300, 300)]


@pytest.fixture(autouse=True)
def small_torch_chunks(monkeypatch):
    from probloss._backends import torch as tb

    monkeypatch.setattr(tb, "_CPU_CHUNK_ELEMS", 10_000)  # several uneven chunks of the big inputs


def _data(shape, seed=0, *, sparse=False, all_ruled_row=True):
    """Logits with about a third of the classes ruled out, soft targets (or labels) on the others."""
    rng = np.random.default_rng(seed)
    n, k = shape
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    ruled = rng.random(shape) < 0.35
    ruled[:, 0] = False  # at least one allowed class per row
    y = np.array([rng.choice(np.flatnonzero(~r)) for r in ruled])
    if all_ruled_row:
        ruled[1] = True  # nothing allowed (padding, a terminal state): zero targets give 0
    x[ruled] = -INF
    t = (rng.random(shape) ** 2).astype(np.float32)
    t[ruled] = 0
    t /= np.maximum(t.sum(-1, keepdims=True), 1e-30)
    return (y if sparse else t), x


def soft_ref(t, x, a=0.0, w=None):
    """Float64 ``sum_c w_c q_c (lse - x_c)`` over the allowed classes, ``q`` smoothed over
    them, and its gradient (0 on ruled-out classes)."""
    t, x = np.asarray(t, np.float64), np.asarray(x, np.float64)
    allowed = np.isfinite(x)
    k = np.maximum(allowed.sum(-1, keepdims=True), 1)
    q = np.where(allowed, t * (1 - a) + a / k, 0.0)
    u = q if w is None else q * np.asarray(w, np.float64)
    xs = np.where(allowed, x, -1e300)
    m = np.max(xs, -1, keepdims=True)
    e = np.where(allowed, np.exp(xs - m), 0.0)
    s = e.sum(-1, keepdims=True)
    lse = m + np.log(np.where(s > 0, s, 1.0))
    value = np.where(allowed, u * (lse - np.where(allowed, x, 0.0)), 0.0).sum(-1)
    grad = u.sum(-1, keepdims=True) * e / np.where(s > 0, s, 1.0) - u
    return value, np.where(allowed, grad, 0.0)


def _value_and_grad(name, fn, target, x):
    """``fn(target, x)`` and its gradient with respect to ``x`` (None on NumPy), as float64."""
    be = _make(name)
    if name == "torch":
        xt = torch.tensor(x, requires_grad=True)
        out = fn(torch.as_tensor(target), xt)
        out.sum().backward()
        return be.to_numpy(out).astype(np.float64), xt.grad.numpy().astype(np.float64)
    if name.startswith("jax"):
        tj, xj = jnp.asarray(target), jnp.asarray(x)
        value = be.call(fn, tj, xj)
        grad = jax.grad(lambda z: fn(tj, z).sum())
        grad = jax.jit(grad) if be.jit else grad
        return np.asarray(value, np.float64), np.asarray(grad(xj), np.float64)
    return np.asarray(fn(be.asarray(target), be.asarray(x)), np.float64), None


def _check(value, grad, want_value, want_grad, x, rtol=2e-5):
    np.testing.assert_allclose(value, want_value, rtol=rtol, atol=2e-5)
    if grad is not None:
        assert np.all(np.isfinite(grad))
        assert np.all(grad[~np.isfinite(x)] == 0)  # ruled-out classes: exactly zero
        np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- against torch, row by row


def _torch_on_allowed(t, x, *, sparse=False, a=0.0, w=None):
    """``F.cross_entropy`` live on each row's allowed classes: per-row values and the
    gradient scattered back (0 on ruled-out classes)."""
    values, grad = [], np.zeros(x.shape)
    for i in range(x.shape[0]):
        allowed = np.flatnonzero(np.isfinite(x[i]))
        xi = torch.tensor(x[i, allowed][None].astype(np.float64), requires_grad=True)
        if sparse:
            target = torch.tensor([int(np.flatnonzero(allowed == t[i])[0])])
        else:
            target = torch.tensor(t[i, allowed][None].astype(np.float64))
        wi = None if w is None else torch.tensor(np.asarray(w, np.float64)[allowed])
        loss = F.cross_entropy(xi, target, weight=wi, label_smoothing=a, reduction="none")
        loss.sum().backward()
        values.append(loss.item())
        grad[i, allowed] = xi.grad.numpy()[0]
    return np.array(values), grad


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "jax-jit"])
@pytest.mark.parametrize("a", [0.0, 0.1])
def test_categorical_matches_torch_on_the_allowed_classes(name, a):
    t, x = _data((6, 5), all_ruled_row=False)
    w = [0.5, 1.0, 2.0, 1.5, 3.0]
    loss = pl.CategoricalCrossentropy(from_logits=True, label_smoothing=a, class_weight=w, reduction=None)
    value, grad = _value_and_grad(name, loss, t, x)
    _check(value, grad, *_torch_on_allowed(t, x, a=a, w=w), x)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "jax-jit"])
@pytest.mark.parametrize("a", [0.0, 0.1])
def test_sparse_matches_torch_on_the_allowed_classes(name, a):
    y, x = _data((6, 5), sparse=True, all_ruled_row=False)
    w = [0.5, 1.0, 2.0, 1.5, 3.0]
    loss = pl.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=a, class_weight=w, reduction=None)
    value, grad = _value_and_grad(name, loss, y, x)
    _check(value, grad, *_torch_on_allowed(y, x, sparse=True, a=a, w=w), x)


# ------------------------------------------------------------- every path, float64 formula


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("a", [0.0, 0.2])
def test_categorical_on_every_path(name, shape, a):
    t, x = _data(shape)
    value, grad = _value_and_grad(name, lambda t, x: pl.categorical_crossentropy(t, x, from_logits=True, label_smoothing=a), t, x)
    _check(value, grad, *soft_ref(t, x, a), x)
    assert value[1] == 0  # the row with nothing allowed and no target weight


@pytest.mark.parametrize("shape", SHAPES[1:], ids=lambda s: "x".join(map(str, s)))
def test_numpy_float64_takes_the_row_chunks(shape):
    t, x = _data(shape)
    got = pl.categorical_crossentropy(t.astype(np.float64), x.astype(np.float64), from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(got, soft_ref(t, x, 0.1)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "torch", "jax"])
@pytest.mark.parametrize("a", [0.0, 0.2])
def test_the_generic_formulas(name, a):
    t, x = _data((6, 5))
    y, xs = _data((6, 5), sparse=True, all_ruled_row=False)
    with generic_only():
        value, grad = _value_and_grad(name, lambda t, x: pl.categorical_crossentropy(t, x, from_logits=True, label_smoothing=a), t, x)
        _check(value, grad, *soft_ref(t, x, a), x)
        value, grad = _value_and_grad(name, lambda y, x: pl.sparse_categorical_crossentropy(y, x, from_logits=True, label_smoothing=a), y, xs)
        _check(value, grad, *soft_ref(np.eye(5)[y], xs, a), xs)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sparse_with_smoothing_and_weights_on_every_path(name, shape):
    y, x = _data(shape, sparse=True, all_ruled_row=False)
    w = np.linspace(0.5, 2.0, shape[1])
    loss = pl.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.2, class_weight=w, reduction=None)
    value, grad = _value_and_grad(name, loss, y, x)
    _check(value, grad, *soft_ref(np.eye(shape[1])[y], x, 0.2, w), x, rtol=5e-5)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("shape", [(4, 5, 3), (40, 50, 40)], ids=["small", "big"])
def test_a_middle_class_axis(name, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    x[:, 1] = -INF  # class 1 ruled out everywhere
    t = rng.random(shape).astype(np.float32)
    t[:, 1] = 0
    value, grad = _value_and_grad(name, lambda t, x: pl.categorical_crossentropy(t, x, from_logits=True, axis=1, label_smoothing=0.1), t, x)
    want, want_grad = soft_ref(np.moveaxis(t, 1, -1), np.moveaxis(x, 1, -1), 0.1)
    _check(value, None if grad is None else np.moveaxis(grad, 1, -1), want, want_grad, np.moveaxis(x, 1, -1))


def test_a_row_of_minus_inf_only_has_a_zero_gradient_on_torch_big_path():
    t, x = _data((2000, 40))
    xt = torch.tensor(x, requires_grad=True)
    loss = pl.CategoricalCrossentropy(from_logits=True)(torch.as_tensor(t), xt)
    loss.backward()
    assert torch.all(xt.grad[1] == 0) and torch.isfinite(xt.grad).all()


def test_the_tf_nn_form_follows_the_same_rules():
    t, x = _data((6, 5))
    np.testing.assert_allclose(pl.softmax_cross_entropy_with_logits(labels=t, logits=x), soft_ref(t, x)[0], rtol=2e-5, atol=1e-6)
    y, x = _data((6, 5), sparse=True, all_ruled_row=False)
    want = soft_ref(np.eye(5)[y], x)[0]
    np.testing.assert_allclose(pl.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x), want, rtol=2e-5)


# ------------------------------------------------------------- a target on a ruled-out class

BAD_T = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], np.float32)
BAD_X = np.array([[0.0, -INF, 1.0], [1.0, -INF, 2.0]], np.float32)  # row 0's target is ruled out


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("a", [0.0, 0.1])
def test_a_target_on_a_ruled_out_class_raises_by_default(name, a):
    be = _make(name)
    with pytest.raises(pl.PredictionValueError, match=r"(?s)weight 1 on class 1 at index \(0, 1\).*-inf.*ruled_out_target='inf'"):
        pl.categorical_crossentropy(be.asarray(BAD_T), be.asarray(BAD_X), from_logits=True, label_smoothing=a)
    with pytest.raises(pl.PredictionValueError, match=r"(?s)holds class 1 at index \(0,\).*-inf at index \(0, 1\)"):
        pl.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=a)(be.asarray(np.array([1, 0])), be.asarray(BAD_X))


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "jax-jit"])
@pytest.mark.parametrize("shape", [(2, 3), (30000, 3)], ids=["small", "big"])
def test_a_target_on_a_ruled_out_class_gives_inf_on_request(name, shape):
    be = _make(name)
    reps = shape[0] // 2
    t, x = np.tile(BAD_T, (reps, 1)), np.tile(BAD_X, (reps, 1))
    y = np.tile(np.array([1, 2]), reps)
    dense = be.call(lambda t, x: pl.categorical_crossentropy(t, x, from_logits=True, ruled_out_target="inf"), be.asarray(t), be.asarray(x))
    sparse = be.call(lambda y, x: pl.sparse_categorical_crossentropy(y, x, from_logits=True, ruled_out_target="inf"), be.asarray(y), be.asarray(x))
    for out in (dense, sparse):
        out = be.to_numpy(out)
        assert np.all(out[0::2] == INF) and np.all(np.isfinite(out[1::2]))
    np.testing.assert_allclose(be.to_numpy(dense)[1], soft_ref(BAD_T[1:], BAD_X[1:])[0][0], rtol=1e-6)


def test_under_jit_the_error_is_raised_when_the_program_runs():
    f = jax.jit(lambda t, x: pl.categorical_crossentropy(t, x, from_logits=True))
    with pytest.raises(Exception, match=r"the loss of sample 0 is inf: .* a class whose logit is -inf there \(a ruled-out class"):
        jax.block_until_ready(f(jnp.asarray(BAD_T), jnp.asarray(BAD_X)))
    np.testing.assert_allclose(f(jnp.asarray(BAD_T[1:]), jnp.asarray(BAD_X[1:])), soft_ref(BAD_T[1:], BAD_X[1:])[0], rtol=1e-6)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_with_value_checks_off_the_loss_is_inf(name):
    be = _make(name)
    with pl.set_value_checks(False):
        out = pl.categorical_crossentropy(be.asarray(BAD_T), be.asarray(BAD_X), from_logits=True)
    assert be.to_numpy(out)[0] == INF


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("bad", [np.nan, INF])
@pytest.mark.parametrize("ruled_out_target", ["raise", "inf"])
def test_nan_and_plus_inf_logits_are_still_errors(name, bad, ruled_out_target):
    be = _make(name)
    x = BAD_X.copy()
    x[1, 0] = bad
    with pytest.raises(pl.PredictionValueError, match=r"`y_pred` contains (nan|inf) at index \(1, 0\)"):
        pl.categorical_crossentropy(be.asarray(BAD_T[::-1].copy()), be.asarray(x), from_logits=True, ruled_out_target=ruled_out_target)
    with pytest.raises(pl.PredictionValueError, match=r"`y_pred` contains (nan|inf) at index \(1, 0\)"):
        pl.sparse_categorical_crossentropy(be.asarray(np.array([0, 2])), be.asarray(x), from_logits=True, ruled_out_target=ruled_out_target)


def test_ruled_out_target_is_validated():
    with pytest.raises(pl.ArgumentError, match="`ruled_out_target` must be 'raise'.*or 'inf'.*got 'nan'"):
        pl.CategoricalCrossentropy(ruled_out_target="nan")
    with pytest.raises(pl.ArgumentError, match="ruled_out_target"):
        pl.sparse_categorical_crossentropy([0], [[0.0, 1.0]], ruled_out_target=True)


def test_torch_itself_returns_nan_or_inf_there():
    """The peer's behaviour that probloss's rules replace (stated in the docs)."""
    x = torch.tensor([[-INF, 1.0, 2.0]])
    t = torch.tensor([[0.0, 0.0, 1.0]])
    assert torch.isnan(F.cross_entropy(x, t))  # 0 * log(0) with probability targets
    assert F.cross_entropy(x, torch.tensor([2]), label_smoothing=0.1) == INF  # smoothing over every class
    ours = pl.categorical_crossentropy(t, x, from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(ours.numpy(), soft_ref(t.numpy(), x.numpy(), 0.1)[0], rtol=1e-6)


# ----------------------------------------------------------------------- the focal form


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_categorical_focal_from_logits_rules_classes_out(name):
    t, x = _data((6, 5), all_ruled_row=False)
    value, grad = _value_and_grad(name, lambda t, x: pl.categorical_focal_crossentropy(t, x, from_logits=True), t, x)
    want = [ref.cfce(t[i][np.isfinite(x[i])][None], x[i][np.isfinite(x[i])][None], from_logits=True)[0] for i in range(6)]
    np.testing.assert_allclose(value, want, rtol=2e-5, atol=1e-7)
    if grad is not None:
        assert np.all(np.isfinite(grad)) and np.all(grad[~np.isfinite(x)] == 0)
