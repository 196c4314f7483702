"""The CUDA backend (``probloss._backends.triton``): its Triton kernels agree with float64
formulas written from the math (``tests/reference.py``; gradients by central differences
of those formulas) and with probloss's generic path (``generic_only()``), in value and
gradient, for every loss and option, on odd sizes, any class axis and half precision; its
value checks are deferred and name the call.

Without a GPU the kernels run on CPU tensors in Triton's interpreter: ``tests/conftest.py``
sets ``TRITON_INTERPRET=1`` before anything imports Triton (torch does, with
``torch._dynamo``), and ``_dispatch.triton_on_cpu()`` sends CPU tensors to the ``cuda``
column.  On a machine with
CUDA the same tests run on the GPU (the ``cuda`` parameters, marked ``gpu``) and the
interpreter ones are skipped.  Sizes are small: the interpreter runs a tile as NumPy
operations.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
from typing import NamedTuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")  # (conftest.py sets TRITON_INTERPRET=1 on a machine without a GPU)
F = torch.nn.functional

import array_api_compat.torch as xp  # noqa: E402

import probloss as pl  # noqa: E402
import probloss.torch as pt  # noqa: E402
from probloss import _deferred, _dispatch  # noqa: E402
from probloss._backends import triton as tb  # noqa: E402
from probloss._backends import triton_kernels as tk  # noqa: E402
from probloss._dispatch import generic_only  # noqa: E402
from probloss.functional._common import Options  # noqa: E402
from tests import reference as R  # noqa: E402

DEVICES = [
    pytest.param("cpu", id="interpreter", marks=pytest.mark.skipif(not tb.INTERPRETED, reason="Triton kernels compiled for a GPU")),
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]),
]
FUNCTIONS = {"SparseSoftmaxCEBackward", "SoftSoftmaxCEBackward", "ElementwiseLossBackward", "NormalizedLossBackward"}


@pytest.fixture(autouse=True)
def no_pending_checks():
    _deferred.clear()
    yield
    _deferred.clear()


def _kernels(device):
    """The block in which ``device``'s torch tensors take the cuda column."""
    return _dispatch.triton_on_cpu() if device == "cpu" else contextlib.nullcontext()


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 2 rows x 8 classes: every row takes several blocks of classes (the online
    max is rescaled between them) and programs hold several rows."""
    monkeypatch.setattr(tk, "tile", lambda k, rows, interpreted: (2, 8, 4))


def _graph(out) -> set[str]:
    names, todo, seen = set(), [out.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(n for n, _ in node.next_functions)
    return names


def _on_kernels(out) -> bool:
    return bool(_graph(out) & FUNCTIONS)


# ----------------------------------------------------------------------- references


def _numeric_grad(f, x, go, axis, h=1e-6):
    """Central differences, in float64, of ``sum(go * f(x))`` with ``f`` per-sample losses
    reduced over ``axis``: one class index at a time for every sample at once (a sample's
    loss depends on its own row only)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for k in range(x.shape[axis]):
        idx = [slice(None)] * x.ndim
        idx[axis] = k
        idx = tuple(idx)
        up, down = x.copy(), x.copy()
        step = h * np.maximum(1.0, np.abs(x[idx]))
        up[idx] += step
        down[idx] -= step
        grad[idx] = go * (f(up) - f(down)) / (2 * step)
    return grad


def _logits(shape, seed=0):
    return np.float32(np.random.default_rng(seed).standard_normal(shape) * 2.0).astype(np.float64)


def _probs(shape, axis, seed=1):
    p = np.random.default_rng(seed).random(shape) + 0.05
    return np.float32(p / p.sum(axis=axis, keepdims=True)).astype(np.float64)


def _unit(shape, seed=2):
    return np.float32(np.random.default_rng(seed).uniform(0.02, 0.98, shape)).astype(np.float64)


def _labels(shape, axis, seed=3):
    lshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    return np.random.default_rng(seed).integers(0, shape[axis], lshape)


class Case(NamedTuple):
    id: str
    call: object  # (t, p) -> per-sample losses, the public function
    reference: object  # (t, p) float64 -> per-sample losses
    y_true: object  # (shape, axis) -> targets
    y_pred: object  # (shape, axis) -> predictions
    last_axis_only: bool = False


def _axis_case(name, fn, ref, t, p, **kw):
    return Case(name, lambda tt, pp, axis: fn(tt, pp, axis=axis, **kw), lambda tt, pp, axis: ref(tt, pp, axis=axis, **kw), t, p)


ALPHAS = tuple(np.linspace(0.2, 0.8, 37))
CASES = [
    Case(
        "sparse-logits",
        lambda y, x, axis: pl.sparse_categorical_crossentropy(y, x, from_logits=True, axis=axis),
        lambda y, x, axis: R.scce(y, x, from_logits=True, axis=axis)[0],
        _labels, lambda s, a: _logits(s),
    ),
    Case(
        "sparse-probs",
        lambda y, p, axis: pl.sparse_categorical_crossentropy(y, p, axis=axis),
        lambda y, p, axis: R.scce(y, p, axis=axis)[0],
        _labels, _probs,
    ),
    _axis_case("categorical-logits-smoothing", pl.categorical_crossentropy, R.cce, _probs, lambda s, a: _logits(s), from_logits=True, label_smoothing=0.1),
    _axis_case("categorical-probs-smoothing", pl.categorical_crossentropy, R.cce, lambda s, a: _probs(s, a, seed=5), _probs, label_smoothing=0.2),
    _axis_case("binary-probs-smoothing", pl.binary_crossentropy, R.bce, lambda s, a: _unit(s, 4), lambda s, a: _unit(s), label_smoothing=0.1),
    _axis_case("binary-logits", pl.binary_crossentropy, R.bce, lambda s, a: _unit(s, 4), lambda s, a: _logits(s), from_logits=True),
    _axis_case(
        "binary-focal-logits-balanced", pl.binary_focal_crossentropy, R.bfce, lambda s, a: _unit(s, 4), lambda s, a: _logits(s),
        from_logits=True, apply_class_balancing=True, alpha=0.3, gamma=0.5, label_smoothing=0.1,
    ),
    _axis_case("binary-focal-probs", pl.binary_focal_crossentropy, R.bfce, lambda s, a: _unit(s, 4), lambda s, a: _unit(s)),
    _axis_case("categorical-focal-probs", pl.categorical_focal_crossentropy, R.cfce, _probs, lambda s, a: _probs(s, a, seed=6), gamma=1.5),
    Case(
        "categorical-focal-logits-alpha",
        lambda t, x, axis: pl.categorical_focal_crossentropy(t, x, alpha=ALPHAS[: x.shape[axis]], from_logits=True, label_smoothing=0.1, axis=axis),
        lambda t, x, axis: R.cfce(t, x, alpha=ALPHAS[: x.shape[axis]], from_logits=True, label_smoothing=0.1, axis=axis),
        _probs, lambda s, a: _logits(s),
    ),
    Case("kl", lambda t, p, axis: pl.kl_divergence(t, p), lambda t, p, axis: R.kld(t, p), lambda s, a: _probs(s, a, 7), _probs, True),
    Case("poisson", lambda t, p, axis: pl.poisson(t, p), lambda t, p, axis: R.poisson(t, p), lambda s, a: 3 * _unit(s, 8), lambda s, a: 2 * _unit(s), True),
]
SHAPES = [((7, 37), -1), ((2, 5, 3), 1)]


def _run(case, shape, axis, device, dtype=torch.float32):
    t = case.y_true(shape, axis)
    p = case.y_pred(shape, axis)
    tt = torch.as_tensor(t if t.dtype.kind in "iu" else t.astype(np.float32), device=device)
    pp = torch.as_tensor(p, dtype=dtype, device=device).requires_grad_()
    with _kernels(device):
        out = case.call(tt, pp, axis)
        go = torch.as_tensor(np.random.default_rng(9).standard_normal(tuple(out.shape)), dtype=out.dtype, device=device)
        (grad,) = torch.autograd.grad(out, pp, go)
        pt.check_pending()
    return t, p, tt, pp, out, go, grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("shape", "axis"), SHAPES, ids=["7x37", "2x5x3-axis1"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_value_and_gradient_against_float64_formulas_and_the_generic_path(case, shape, axis, device):
    if case.last_axis_only and axis != -1:
        pytest.skip("the loss reduces the last axis")
    t, p, tt, pp, out, go, grad = _run(case, shape, axis, device)
    assert _on_kernels(out)  # the Triton kernels ran
    ax = axis % len(shape)
    want = case.reference(t, p, axis)
    np.testing.assert_allclose(out.detach().cpu().numpy(), want, rtol=2e-5, atol=2e-6)
    go64 = go.cpu().double().numpy()
    want_grad = _numeric_grad(lambda q: case.reference(t, q, axis), p, go64, ax)
    np.testing.assert_allclose(grad.cpu().numpy(), want_grad, rtol=2e-4, atol=2e-5)
    # the generic formula on the same tensors
    with generic_only():
        ref = case.call(tt, pp, axis)
        (ref_grad,) = torch.autograd.grad(ref, pp, go)
    assert not _on_kernels(ref)
    np.testing.assert_allclose(out.detach().cpu().numpy(), ref.detach().cpu().numpy(), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(grad.cpu().numpy(), ref_grad.cpu().numpy(), rtol=1e-4, atol=1e-6)


LONG_ROWS = [CASES[0], CASES[2], CASES[3], CASES[5]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", LONG_ROWS, ids=[c.id for c in LONG_ROWS])
def test_rows_of_1000_classes_and_several_blocks_per_row(case, device, small_tiles):
    """3 x 1000: with 8-class blocks each row takes 125 of them (the online max grows
    between blocks); the logits' scale makes the row max move far from the first block's."""
    shape = (3, 1000)
    t, p, tt, pp, out, go, grad = _run(case, shape, -1, device)
    assert _on_kernels(out)
    np.testing.assert_allclose(out.detach().cpu().numpy(), case.reference(t, p, -1), rtol=2e-5, atol=2e-6)
    go64 = go.cpu().double().numpy()
    want_grad = _numeric_grad(lambda q: case.reference(t, q, -1), p, go64, 1)
    np.testing.assert_allclose(grad.cpu().numpy(), want_grad, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_small_tiles_on_a_middle_class_axis(device, small_tiles):
    case = CASES[2]  # categorical from logits with smoothing: every accumulator of the one-pass kernel
    t, p, tt, pp, out, go, grad = _run(case, (3, 19, 5), 1, device)
    np.testing.assert_allclose(out.detach().cpu().numpy(), case.reference(t, p, 1), rtol=2e-5, atol=2e-6)
    want_grad = _numeric_grad(lambda q: case.reference(t, q, 1), p, go.cpu().double().numpy(), 1)
    np.testing.assert_allclose(grad.cpu().numpy(), want_grad, rtol=2e-4, atol=2e-5)


def test_the_keras_class_fuses_the_mean():
    x = torch.as_tensor(_logits((6, 11)), dtype=torch.float32).requires_grad_()
    y = torch.as_tensor(_labels((6, 11), -1))
    with _dispatch.triton_on_cpu():
        out = pl.SparseCategoricalCrossentropy(from_logits=True)(y, x)
        (g,) = torch.autograd.grad(out, x)
    assert out.ndim == 0 and _on_kernels(out)
    np.testing.assert_allclose(float(out.detach()), R.sparse64(x.detach().numpy(), y.numpy(), -1).mean(), rtol=1e-6)
    sm = torch.softmax(x.detach().double(), 1).numpy()
    np.testing.assert_allclose(g.numpy(), (sm - R.one_hot(y.numpy(), 11)) / 6, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------- half precision


HALF = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
def test_half_precision_logits_accumulate_in_float32(dtype, device):
    """The entries take half-precision logits as they are (the drop-in passes them so):
    per-sample losses and gradients in that dtype, equal to the float64 formula of the
    rounded inputs within the dtype's rounding."""
    shape, axis = (5, 300), -1
    x = torch.as_tensor(_logits(shape) * 3, dtype=dtype, device=device).requires_grad_()
    y = torch.as_tensor(_labels(shape, axis), device=device)
    t = torch.as_tensor(_probs(shape, axis), dtype=dtype, device=device)
    x64 = x.detach().double().cpu().numpy()
    eps = float(torch.finfo(dtype).eps)
    with _kernels(device):
        sparse = tb.sparse(xp, y, x, 1, Options(from_logits=True))
        soft = tb.categorical(xp, t, x, 1, Options(from_logits=True, label_smoothing=0.1))
        (gs,) = torch.autograd.grad(sparse.sum(), x)
        (gc,) = torch.autograd.grad(soft.sum(), x)
        pt.check_pending()
    assert sparse.dtype == soft.dtype == gs.dtype == gc.dtype == dtype
    np.testing.assert_allclose(sparse.detach().double().cpu().numpy(), R.sparse64(x64, y.cpu().numpy(), -1), rtol=2 * eps)
    t64 = t.double().cpu().numpy()
    np.testing.assert_allclose(soft.detach().double().cpu().numpy(), R.cce(t64, x64, True, 0.1), rtol=2 * eps)
    sm = np.exp(R.log_softmax(x64))
    np.testing.assert_allclose(gs.double().cpu().numpy(), sm - R.one_hot(y.cpu().numpy(), 300), atol=2 * eps)
    q = t64 * 0.9 + 0.1 / 300
    np.testing.assert_allclose(gc.double().cpu().numpy(), sm * q.sum(1, keepdims=True) - q, atol=2 * eps)


@pytest.mark.parametrize("device", DEVICES)
def test_half_precision_probabilities(device):
    shape = (4, 50)
    p = torch.as_tensor(_unit(shape), dtype=torch.bfloat16, device=device).requires_grad_()
    t = torch.as_tensor(_unit(shape, 4), dtype=torch.bfloat16, device=device)
    with _kernels(device):
        out = tb.binary(xp, t, p, 1, Options(label_smoothing=0.1))
        (g,) = torch.autograd.grad(out.sum(), p)
        pt.check_pending()
    t64, p64 = t.double().cpu().numpy(), p.detach().double().cpu().numpy()
    np.testing.assert_allclose(out.detach().double().cpu().numpy(), R.bce(t64, p64, False, 0.1), rtol=1e-2)
    want = _numeric_grad(lambda q: R.bce(t64, q, False, 0.1), p64, np.ones(4), 1)
    np.testing.assert_allclose(g.double().cpu().numpy(), want, rtol=2e-2, atol=1e-4)


# --------------------------------------------------------- classes ruled out (-inf)


@pytest.mark.parametrize("device", DEVICES)
def test_minus_inf_logits_rule_classes_out(device):
    """A ``-inf`` logit gives its class probability 0 and a zero gradient; smoothing spreads
    over the allowed classes only; a row of ``-inf`` with zero targets costs 0."""
    x = _logits((4, 9))
    x[0, [1, 4]] = -np.inf
    x[2, :] = -np.inf
    t = _probs((4, 9), -1)
    t[0, [1, 4]] = 0.0
    t[2, :] = 0.0
    xx = torch.as_tensor(x, dtype=torch.float32, device=device).requires_grad_()
    tt = torch.as_tensor(t, dtype=torch.float32, device=device)
    with _kernels(device):
        out = pl.categorical_crossentropy(tt, xx, from_logits=True, label_smoothing=0.2)
        (g,) = torch.autograd.grad(out.sum(), xx)
        pt.check_pending()
    allowed = np.isfinite(x)
    k_r = np.maximum(allowed.sum(1, keepdims=True), 1)
    q = t * 0.8 + allowed * 0.2 / k_r
    q[2] = 0.0  # a row with nothing allowed: no target, no smoothing mass
    logp = np.where(allowed, x - R.lse64(np.where(allowed, x, -1e30), -1)[:, None], 0.0)
    want = -(q * logp).sum(1)
    np.testing.assert_allclose(out.detach().cpu().numpy(), want, rtol=1e-5, atol=1e-6)
    sm = np.where(allowed, np.exp(logp), 0.0)
    np.testing.assert_allclose(g.cpu().numpy(), sm * q.sum(1, keepdims=True) - q, atol=1e-6)
    assert g[0, 1] == 0 and g[0, 4] == 0 and (g[2] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_a_label_on_a_ruled_out_class_is_an_error_read_later_or_inf_on_request(device):
    x = torch.as_tensor(_logits((3, 5)), dtype=torch.float32, device=device)
    x[1, 2] = -math.inf
    y = torch.tensor([0, 2, 4], device=device)
    y3 = y.reshape(-1).contiguous()
    for inf in (False, True):
        with _kernels(device):
            record = _deferred.begin("sparse", 4, x.device)
            nll = tb.SparseSoftmaxCE.apply(x.unsqueeze(2), y3, None, False, None, False, inf, record.keys)[0]
        keys = record.keys.tolist()
        assert math.isinf(nll[1]) and nll[1] > 0 and math.isfinite(nll[0]) and math.isfinite(nll[2])
        assert keys[2] >> 32 == 1 and (keys[2] & 0xFFFFFFFF) == 2  # sample 1, class 2
        assert keys[3] == (tk.NO_KEY if inf else (1 << 32) | (int(np.float32(np.inf).view(np.uint32))))
        report = tb._ruled_out_label_report((3,), 1)
        with pytest.raises(pl.PredictionValueError, match=r"`y_true` holds class 2 at index \(1,\), but `y_pred`\[1, 2\] is -inf"):
            report(keys[2])


# ------------------------------------------------------------ deferred value checks


@pytest.mark.parametrize("device", DEVICES)
def test_a_bad_class_index_gives_nan_there_and_an_error_naming_the_call(device):
    x = torch.as_tensor(_logits((6, 7)), dtype=torch.float32, device=device).requires_grad_()
    y = torch.as_tensor(_labels((6, 7), -1), device=device)
    bad = y.clone()
    bad[4] = 7
    with _kernels(device):
        out = pl.sparse_categorical_crossentropy(bad, x, from_logits=True)  # returns: nothing read yet
        (g,) = torch.autograd.grad(out.sum(), x)
        line = _line_of("pl.sparse_categorical_crossentropy(bad, x, from_logits=True)  # returns")
        assert torch.isnan(out[4]) and torch.isnan(g[4]).all()
        assert torch.isfinite(out[:4]).all() and torch.isfinite(g[:4]).all()
        with pytest.raises(pl.LabelValueError) as info:
            pt.check_pending()
    msg = str(info.value)
    assert "value check of an earlier call" in msg and "sparse_categorical_crossentropy" in msg
    assert f"test_triton.py:{line} in test_a_bad_class_index" in msg
    assert "`y_true` holds class index 7 at index (4,), but `y_pred` has 7 classes" in msg
    pt.check_pending()  # reported once


def _line_of(text: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if text in line)


@pytest.mark.parametrize("device", DEVICES)
def test_the_error_arrives_at_the_next_call_on_the_thread(device):
    x = torch.as_tensor(_logits((4, 5)), dtype=torch.float32, device=device)
    y = torch.tensor([0, 1, -1, 2], device=device)
    with _kernels(device):
        pl.sparse_categorical_crossentropy(y, x, from_logits=True)
        if device == "cuda":
            torch.cuda.synchronize()  # the record is ready once the device has finished
        with pytest.raises(pl.LabelValueError, match=r"call \d+ on this thread.*class index -1 at index \(2,\).*only allowed as `ignore_class`"):
            pl.sparse_categorical_crossentropy(y.abs(), x, from_logits=True)
        pt.check_pending()  # the second call was clean


@pytest.mark.parametrize("device", DEVICES)
def test_each_input_check_names_the_element(device):
    shape = (5, 6)
    p = torch.as_tensor(_probs(shape, -1), dtype=torch.float32, device=device)
    t = torch.as_tensor(_probs(shape, -1, seed=4), dtype=torch.float32, device=device)
    x = torch.as_tensor(_logits(shape), dtype=torch.float32, device=device)
    cases = [
        (lambda: pl.categorical_crossentropy(t, _put(p, (2, 5), 1.5)), pl.PredictionValueError, r"`y_pred` holds 1.5 at index \(2, 5\), but it must be \[0, 1\]"),
        (lambda: pl.categorical_crossentropy(_put(t, (3, 1), -0.5), x, from_logits=True), pl.LabelValueError, r"`y_true` holds -0.5 at index \(3, 1\), but it must be >= 0"),
        (lambda: pl.sparse_categorical_crossentropy(torch.zeros(5, dtype=torch.int64, device=device), _put(x, (1, 3), math.nan), from_logits=True),
         pl.PredictionValueError, r"`y_pred` contains nan at index \(1, 3\); logits must be finite, or -inf"),
        (lambda: pl.binary_crossentropy(_put(t, (0, 2), 2.0), p), pl.LabelValueError, r"`y_true` holds 2 at index \(0, 2\), but it must be \[0, 1\]"),
        (lambda: pl.kl_divergence(t, _put(p, (4, 0), -0.25)), pl.PredictionValueError, r"`y_pred` holds -0.25 at index \(4, 0\)"),
        (lambda: pl.poisson(t, _put(p, (2, 2), -1.0)), pl.PredictionValueError, r"`y_pred` holds -1 at index \(2, 2\), but it must be >= 0"),
        (lambda: pl.binary_focal_crossentropy(t, _put(p, (1, 1), math.inf)), pl.PredictionValueError, r"`y_pred` contains inf at index \(1, 1\)"),
    ]
    for call, error, pattern in cases:
        with _kernels(device):
            out = call()
            assert _on_kernels(out) or not out.requires_grad
            with pytest.raises(error, match=pattern):
                pt.check_pending()


def _put(a, index, value):
    a = a.clone()
    a[index] = value
    return a


@pytest.mark.parametrize("device", DEVICES)
def test_rows_not_summing_to_one_warn_later_as_keras_renormalises(device):
    p = torch.as_tensor(_probs((3, 4), -1), dtype=torch.float32, device=device) * 1.1
    t = torch.as_tensor(_probs((3, 4), -1, seed=4), dtype=torch.float32, device=device)
    with _kernels(device):
        out = pl.categorical_crossentropy(t, p)
        with pytest.warns(pl.ProblossWarning, match=r"rows along axis 1 should sum to 1 but the one at index \(0,\) sums to 1.1"):
            pt.check_pending()
    np.testing.assert_allclose(out.cpu().numpy(), R.cce(t.cpu().numpy(), p.cpu().numpy()), rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_checks_off_leave_nothing_pending(device):
    x = torch.as_tensor(_logits((3, 4)), dtype=torch.float32, device=device)
    with _kernels(device), pl.set_value_checks(False):
        out = pl.sparse_categorical_crossentropy(torch.tensor([0, 9, 1], device=device), x, from_logits=True)
    assert torch.isnan(out[1])
    assert not _deferred._pending()


@pytest.mark.parametrize("device", DEVICES)
def test_a_nan_sample_weight_is_reported_later(device):
    x = torch.as_tensor(_logits((3, 4)), dtype=torch.float32, device=device)
    y = torch.tensor([0, 3, 1], device=device)
    w = torch.tensor([1.0, math.nan, 2.0], device=device)
    with _kernels(device):
        pl.SparseCategoricalCrossentropy(from_logits=True)(y, x, sample_weight=w)
        with pytest.raises(pl.LabelValueError, match=r"`sample_weight` contains nan at index \(1,\)"):
            pt.check_pending()


def test_pending_checks_belong_to_their_thread():
    x = torch.as_tensor(_logits((3, 4)), dtype=torch.float32)
    seen = {}

    def other():
        with _dispatch.triton_on_cpu():
            pl.sparse_categorical_crossentropy(torch.tensor([0, 4, 1]), x, from_logits=True)
        seen["pending"] = len(_deferred._pending())
        _deferred.clear()

    worker = threading.Thread(target=other)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert seen["pending"] == 1
    pt.check_pending()  # nothing here: the error stayed with its thread


# ---------------------------------------------------------------- what runs where


# The options with a field added after the kernels were written.
_Later = collections.namedtuple(
    "_Later", Options._fields + ("new_option",), defaults=tuple(Options._field_defaults[f] for f in Options._fields) + (None,)
)


def test_options_the_kernels_do_not_know_go_to_the_torch_column():
    assert tb._fits(Options(from_logits=True), tb._SPARSE)
    assert not tb._fits(Options(from_logits=True, label_smoothing=0.1), tb._SPARSE)  # integer labels: no smoothing kernel
    assert tb._fits(Options(label_smoothing=0.1), tb._CATEGORICAL)
    assert tb._fits(_Later(), tb._CATEGORICAL)
    assert not tb._fits(_Later(new_option=(1.0, 2.0)), tb._CATEGORICAL)
    x = torch.as_tensor(_logits((3, 4)), dtype=torch.float32).requires_grad_()
    y = torch.tensor([0, 3, 1])
    with _dispatch.triton_on_cpu():
        unknown = tb.sparse(xp, y, x, 1, _Later(from_logits=True, new_option=(1.0,)))
        known = tb.sparse(xp, y, x, 1, _Later(from_logits=True))
    assert not _on_kernels(unknown) and _on_kernels(known)
    np.testing.assert_allclose(unknown.detach().numpy(), known.detach().numpy(), rtol=1e-6)


def test_float64_and_targets_that_need_a_gradient_go_to_the_torch_column():
    x = torch.as_tensor(_logits((3, 4)), dtype=torch.float64).requires_grad_()
    t = torch.as_tensor(_probs((3, 4), -1), dtype=torch.float32).requires_grad_()
    with _dispatch.triton_on_cpu():
        out64 = pl.sparse_categorical_crossentropy(torch.tensor([0, 3, 1]), x, from_logits=True)
        soft = pl.categorical_crossentropy(t, x.detach().float(), from_logits=True)
    assert out64.dtype == torch.float64 and not _on_kernels(out64)
    assert not _on_kernels(soft) and torch.autograd.grad(soft.sum(), t)[0].abs().sum() > 0
    np.testing.assert_allclose(out64.detach().numpy(), R.sparse64(x.detach().numpy(), [0, 3, 1], -1), rtol=1e-12)


def test_cpu_tensors_take_the_torch_column_outside_the_test_block():
    x = torch.as_tensor(_logits((3, 4)), dtype=torch.float32).requires_grad_()
    out = pl.sparse_categorical_crossentropy(torch.tensor([0, 3, 1]), x, from_logits=True)
    assert not _on_kernels(out)
    assert _dispatch.cuda_module(x) is None


# ------------------------------------------------------------------------- autodiff


@pytest.mark.parametrize("device", DEVICES)
def test_second_derivatives_differentiate_the_formula(device):
    x = torch.as_tensor(_logits((4, 6)), dtype=torch.float32, device=device).requires_grad_()
    t = torch.as_tensor(_probs((4, 6), -1), dtype=torch.float32, device=device)
    v = torch.as_tensor(_logits((4, 6), seed=5), dtype=torch.float32, device=device)
    results = []
    for block in (_kernels(device), generic_only()):
        with block:
            loss = pl.categorical_crossentropy(t, x, from_logits=True, label_smoothing=0.1).sum()
            (g,) = torch.autograd.grad(loss, x, create_graph=True)
            (hv,) = torch.autograd.grad((g * v).sum(), x)
        results.append((g.detach(), hv))
    np.testing.assert_allclose(results[0][0].cpu().numpy(), results[1][0].cpu().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1].cpu().numpy(), results[1][1].cpu().numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_func_grad_and_vmap(device):
    x = torch.as_tensor(_logits((3, 4, 5)), dtype=torch.float32, device=device)
    y = torch.as_tensor(_labels((3, 4, 5), -1), device=device)
    p = torch.as_tensor(_unit((3, 4, 5)), dtype=torch.float32, device=device)

    def sparse(x, y):
        return pl.sparse_categorical_crossentropy(y, x, from_logits=True).sum()

    def binary(p):
        return pl.binary_crossentropy(p.detach() * 0 + 0.5, p)

    got = []
    for block in (_kernels(device), generic_only()):
        with block:
            got.append((torch.func.grad(sparse)(x, y), torch.func.vmap(sparse)(x, y), torch.func.vmap(binary)(p)))
    for a, b in zip(*got):
        np.testing.assert_allclose(a.cpu().numpy(), b.cpu().numpy(), rtol=2e-5, atol=1e-6)


# ---------------------------------------------------------- the F.cross_entropy drop-in


@pytest.mark.parametrize("device", DEVICES)
def test_the_drop_in_matches_torch_live(device):
    """``probloss.torch.cross_entropy`` on the kernels (``chunk_size`` makes CPU tensors
    leave ``F.cross_entropy``'s small-input path) against ``F.cross_entropy`` itself."""
    x = torch.as_tensor(_logits((6, 11, 3)), dtype=torch.float32, device=device).requires_grad_()
    y = torch.as_tensor(_labels((6, 11, 3), 1), device=device)
    y[1, 2] = -100
    w = torch.as_tensor(_unit((11,)), dtype=torch.float32, device=device)
    probs = torch.as_tensor(_probs((6, 11, 3), 1), dtype=torch.float32, device=device)
    variants = [
        (y, {}),
        (y, {"weight": w, "label_smoothing": 0.2}),
        (y, {"weight": w, "reduction": "sum"}),
        (y, {"reduction": "none", "label_smoothing": 0.1}),
        (probs, {"weight": w, "label_smoothing": 0.1}),
    ]
    for target, kw in variants:
        want = F.cross_entropy(x, target, **kw)
        (want_g,) = torch.autograd.grad(want.sum(), x)
        with _kernels(device):
            got = pt.cross_entropy(x, target, chunk_size=5, **kw)
            (got_g,) = torch.autograd.grad(got.sum(), x)
        assert _on_kernels(got), kw
        np.testing.assert_allclose(got.detach().cpu().numpy(), want.detach().cpu().numpy(), rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(got_g.cpu().numpy(), want_g.cpu().numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_the_drop_in_in_bfloat16_and_in_place(device):
    x = torch.as_tensor(_logits((5, 40)), dtype=torch.bfloat16, device=device)
    y = torch.as_tensor(_labels((5, 40), -1), device=device)
    xf = x.float().requires_grad_()
    want = F.cross_entropy(xf, y)  # torch in float32 on the rounded logits
    (want_g,) = torch.autograd.grad(want, xf)
    leaf = x.clone().requires_grad_()
    buffer = leaf * 1  # the logits of a last layer: a non-leaf whose buffer may take the gradient
    with _kernels(device):
        got = pt.cross_entropy(buffer, y, inplace_backward=True, chunk_size=5)
        got.backward()
    assert got.dtype == torch.bfloat16
    np.testing.assert_allclose(float(got.detach()), float(want.detach()), rtol=1e-2)
    np.testing.assert_allclose(leaf.grad.float().cpu().numpy(), want_g.cpu().numpy(), atol=2e-3)
    np.testing.assert_allclose(buffer.detach().float().cpu().numpy(), want_g.cpu().numpy(), atol=2e-3)  # overwritten


@pytest.mark.parametrize("device", DEVICES)
def test_the_drop_in_reports_a_bad_index_with_its_own_error(device):
    x = torch.as_tensor(_logits((4, 3, 2)), dtype=torch.float32, device=device)
    y = torch.as_tensor(_labels((4, 3, 2), 1), device=device)
    y[2, 1] = 3
    with _kernels(device):
        out = pt.cross_entropy(x, y, chunk_size=5)
        assert torch.isnan(out)
        with pytest.raises(IndexError, match=r"cross_entropy: `target` holds class index 3 at index \(2, 1\)"):
            pt.check_pending()
