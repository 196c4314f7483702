"""The torch implementations (``probloss._backends.torch``) agree with the generic formula
(``generic_only()``) and with ``torch.nn.functional`` run live, in value, gradient and
second derivative.

Two routes: below ``SMALL_ELEMENTS`` elements the softmax cross-entropies call
``F.cross_entropy`` (and the other losses their generic formula); from that size up the
chunked autograd Functions (``SparseCE``, ``SoftTargetCE``, ``RowReduce``) run.  Every
test runs on sizes on both sides of the threshold, and checks in the autograd graph which
route ran.  The chunk size is lowered so that the big inputs are taken in several uneven
chunks.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import probloss as pl  # noqa: E402
from probloss._backends import torch as tb  # noqa: E402
from probloss._dispatch import generic_only  # noqa: E402
from tests.reference import data as _data  # noqa: E402
from tests.reference import lse64 as _lse64  # noqa: E402
from tests.reference import soft64 as _soft64  # noqa: E402
from tests.reference import sparse64 as _sparse64  # noqa: E402

SMALL = tb.SMALL_ELEMENTS
assert SMALL == 1 << 16
EPS = 1e-7


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(tb, "_CPU_CHUNK_ELEMS", 10_000)  # several uneven chunks of the big inputs


def _routes(native: bool):
    return contextlib.nullcontext() if native else generic_only()


def _graph_names(out) -> set[str]:
    """The names of every node in ``out``'s autograd graph."""
    names, todo, seen = set(), [out.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(n for n, _ in node.next_functions)
    return names


def _chunked(out) -> bool:
    """Whether one of the chunked Functions computed ``out``."""
    return any(n.startswith(("SparseCE", "SoftTargetCE", "RowReduce")) for n in _graph_names(out))


def _run(fn, x, *extra, go_seed=3):
    """Value, gradients (w.r.t. every input) under a random upstream gradient, and the graph."""
    leaves = [torch.as_tensor(a).clone().requires_grad_() for a in (x, *extra)]
    out = fn(*leaves)
    go = torch.as_tensor(np.random.default_rng(go_seed).standard_normal(tuple(out.shape))).to(out.dtype)
    grads = torch.autograd.grad(out, leaves, go)
    return out.detach(), grads, _chunked(out)


SMALL_CASES = [((6, 5), -1), ((5, 40), -1), ((5, 60), -1), ((3, 5, 4), 1), ((2, 3, 4, 5), 2), ((4, 3, 2), 0), ((7,), 0)]
# at least SMALL_ELEMENTS: few classes (the logsumexp kernels), many, class axis 1 (torch's
# layout), in the middle of four, first
BIG_CASES = [((14000, 5), -1), ((600, 120), -1), ((64, 50, 24), 1), ((16, 8, 40, 16), 2), ((40, 1700), 0)]
CASES = [pytest.param(s, a, id=f"small{s}-{a}") for s, a in SMALL_CASES] + [
    pytest.param(s, a, id=f"big{s}-{a}") for s, a in BIG_CASES
]


def _is_big(shape) -> bool:
    return math.prod(shape) >= SMALL and len(shape) >= 2


def _to_class_dim_1(a, axis):
    return torch.movedim(a, axis, 1) if a.ndim > 1 else a


# -------------------------------------------------------------- sparse, from logits


@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("ignore_class", [None, 1])
def test_sparse_native_equals_generic_equals_torch(shape, axis, dtype, ignore_class):
    x, y, _ = _data(shape, axis, seed=2)
    if ignore_class is not None:
        y.reshape(-1)[::3] = ignore_class
    xt = torch.as_tensor(x).to(getattr(torch, dtype))
    yt = torch.as_tensor(y)

    def ours(a):
        return pl.sparse_categorical_crossentropy(yt, a, from_logits=True, axis=axis, ignore_class=ignore_class)

    def peer(a):
        kw = {"ignore_index": ignore_class} if ignore_class is not None else {}
        if dtype == "bfloat16":  # ours computes half inputs in float32: so does the reference
            return F.cross_entropy(_to_class_dim_1(a.float(), axis), yt, reduction="none", **kw).to(a.dtype)
        return F.cross_entropy(_to_class_dim_1(a, axis), yt, reduction="none", **kw)

    with _routes(True):
        native = _run(ours, xt)
    with _routes(False):
        generic = _run(ours, xt)
    ref = _run(peer, xt)
    assert native[2] is _is_big(shape) and generic[2] is False
    tol = {"float64": 1e-12, "float32": 2e-5, "bfloat16": 2e-2}[dtype]
    for got in (native, generic):
        assert got[0].dtype == xt.dtype and got[1][0].dtype == xt.dtype
        torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
        torch.testing.assert_close(got[1][0], ref[1][0], rtol=tol, atol=tol)
    if dtype == "float64":  # and the float64 NumPy formula
        want = _sparse64(x, np.where(y == ignore_class, 0, y), axis)
        if ignore_class is not None:
            want = np.where(y == ignore_class, 0.0, want)
        np.testing.assert_allclose(native[0].numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(12, 7), (300, 400)], ids=str)
def test_loss_classes_native_equals_generic(shape):
    x, y, t = _data(shape, -1, seed=5)
    y[::4] = 2
    sw = np.linspace(0.5, 1.5, shape[0])
    results = {}
    for native in (True, False):
        with _routes(native):
            xs = torch.as_tensor(x).requires_grad_()
            a = pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2)(
                torch.as_tensor(y), xs, sample_weight=torch.as_tensor(sw)
            )
            b = pl.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(torch.as_tensor(t), xs)
            assert _chunked(a) is _chunked(b) is (native and _is_big(shape))
            results[native] = (a.detach(), b.detach(), *torch.autograd.grad(a + 2 * b, xs))
    for f, g in zip(results[True], results[False]):
        torch.testing.assert_close(f, g, rtol=1e-12, atol=1e-12)
    # float64 reference of the first: ignored positions leave the mean, weights stay
    keep = y != 2
    per = _sparse64(x, np.where(keep, y, 0), -1)
    want = np.sum(np.where(keep, per * sw, 0.0)) / keep.sum()
    np.testing.assert_allclose(results[True][0].numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("shape", [(64, 300), (640, 300)], ids=str)
def test_native_keeps_precision_for_large_logits(shape):
    x, y, t = _data(shape, -1, seed=6)
    x32 = (x + 1000.0).astype(np.float32)
    t32 = t.astype(np.float32)
    xt = torch.as_tensor(x32)
    sparse = pl.sparse_categorical_crossentropy(torch.as_tensor(y), xt, from_logits=True)
    soft = pl.categorical_crossentropy(torch.as_tensor(t32), xt, from_logits=True)
    np.testing.assert_allclose(sparse.numpy(), _sparse64(x32, y, -1), rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(soft.numpy(), _soft64(x32, t32, -1), rtol=2e-5, atol=2e-4)


# (shape, axis, position of the bad label)
BAD_LABEL_CASES = [((6, 5), -1, (4,)), ((3, 5, 4), 1, (1, 2)), ((300, 400), -1, (17,)), ((64, 50, 24), 1, (3, 7))]


@pytest.mark.parametrize(("shape", "axis", "pos"), BAD_LABEL_CASES, ids=str)
@pytest.mark.parametrize("bad", ["K", -1, 10**6])
@pytest.mark.parametrize("ignore_class", [None, -5])
def test_sparse_bad_labels_raise_and_name_the_index_on_both_routes(shape, axis, pos, bad, ignore_class):
    x, y, _ = _data(shape, axis, seed=7)
    bad = shape[axis] if bad == "K" else bad
    y[pos] = bad
    if ignore_class is not None:
        y.reshape(-1)[1::5] = ignore_class  # ignored positions are fine
        y[pos] = bad
    with pytest.raises(pl.LabelValueError, match=re.escape(f"class index {bad} at index {pos}")):
        pl.sparse_categorical_crossentropy(
            torch.as_tensor(y), torch.as_tensor(x), from_logits=True, axis=axis, ignore_class=ignore_class
        )


@pytest.mark.parametrize("shape", [(12, 7), (300, 400)], ids=str)
def test_sparse_from_probabilities_value_and_gradient(shape):
    """From probabilities torch runs the generic formula at every size."""
    rng = np.random.default_rng(3)
    p = rng.random(shape) ** 2 + 0.01
    p = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    n, k = shape
    y = rng.integers(0, k, n)
    tp = torch.tensor(p, requires_grad=True)
    loss = pl.sparse_categorical_crossentropy(torch.tensor(y), tp)
    assert not _chunked(loss)
    (g,) = torch.autograd.grad(loss.sum(), tp)
    # float64 reference: d/dp_j of -log(p_y / s) = 1/s - [j == y] / p_y
    p64 = p.astype(np.float64)
    ref = np.repeat(1 / p64.sum(-1, keepdims=True), k, axis=1)
    ref[np.arange(n), y] -= 1 / p64[np.arange(n), y]
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-4)
    np.testing.assert_allclose(loss.detach().numpy(), -np.log(p64[np.arange(n), y] / p64.sum(-1)), rtol=1e-5)


# ---------------------------------------------------------- categorical, from logits


@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_categorical_native_equals_generic_equals_torch(shape, axis, dtype, label_smoothing):
    x, _, t = _data(shape, axis, seed=4)
    xt = torch.as_tensor(x).to(getattr(torch, dtype))
    tt = torch.as_tensor(t).to(getattr(torch, dtype))

    def ours(a):
        return pl.categorical_crossentropy(tt, a, from_logits=True, axis=axis, label_smoothing=label_smoothing)

    def peer(a):
        # Keras smooths t(1-a) + a/K, the same formula as torch's probability-target smoothing.
        b = tt
        if dtype == "bfloat16":  # ours computes half inputs in float32: so does the reference
            a, b = a.float(), b.float()
        out = F.cross_entropy(
            _to_class_dim_1(a, axis), _to_class_dim_1(b, axis), label_smoothing=label_smoothing, reduction="none"
        )
        return out.to(xt.dtype)

    with _routes(True):
        native = _run(ours, xt)
    with _routes(False):
        generic = _run(ours, xt)
    ref = _run(peer, xt)
    assert native[2] is _is_big(shape) and generic[2] is False
    tol = {"float64": 1e-12, "float32": 2e-5, "bfloat16": 2e-2}[dtype]
    for got in (native, generic):
        assert got[0].dtype == xt.dtype and got[1][0].dtype == xt.dtype
        torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
        torch.testing.assert_close(got[1][0], ref[1][0], rtol=tol, atol=tol)
    if dtype == "float64":
        k = shape[axis]
        want = _soft64(x, t * (1 - label_smoothing) + label_smoothing / k, axis)
        np.testing.assert_allclose(native[0].numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "axis"), [((6, 5), -1), ((300, 400), -1), ((64, 50, 24), 1)], ids=str)
def test_categorical_with_targets_that_need_a_gradient(shape, axis):
    """Targets needing a gradient take the generic formula; both gradients match torch's."""
    x, _, t = _data(shape, axis, seed=8)

    def ours(a, b):
        return pl.categorical_crossentropy(b, a, from_logits=True, axis=axis, label_smoothing=0.1)

    def peer(a, b):
        return F.cross_entropy(_to_class_dim_1(a, axis), _to_class_dim_1(b, axis), label_smoothing=0.1, reduction="none")

    got, ref = _run(ours, x, t), _run(peer, x, t)
    assert got[2] is False
    torch.testing.assert_close(got[0], ref[0], rtol=1e-12, atol=1e-12)
    for g, r in zip(got[1], ref[1]):  # w.r.t. logits and targets
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "pos"), [((6, 5), (2, 3)), ((300, 400), (17, 23)), ((300, 400), (299, 399))], ids=str)
@pytest.mark.parametrize("bad", [-0.1, math.nan, -math.inf])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_bad_soft_labels_raise_and_name_the_index_on_both_routes(shape, pos, bad, label_smoothing):
    x, _, t = _data(shape, -1, seed=9)
    t[pos] = bad
    with pytest.raises(pl.LabelValueError, match=re.escape(f"at index {pos}")) as info:
        pl.categorical_crossentropy(torch.as_tensor(t), torch.as_tensor(x), from_logits=True, label_smoothing=label_smoothing)
    assert ("nan" if math.isnan(bad) else "inf" if math.isinf(bad) else "cannot be negative") in str(info.value)


@pytest.mark.parametrize("shape", [(6, 5), (300, 400)], ids=str)
def test_negative_zero_labels_pass_the_checks(shape):
    x, y, t = _data(shape, -1, seed=10)
    t[2, 3] = 0.0
    t[2] /= t[2].sum()
    t[2, 3] = -0.0
    got = pl.categorical_crossentropy(torch.as_tensor(t), torch.as_tensor(x), from_logits=True)
    np.testing.assert_allclose(got.numpy(), _soft64(x, t, -1), rtol=1e-12)


def test_tf_nn_softmax_cross_entropy_big_and_small():
    for shape in ((6, 5), (300, 400)):
        x, _, t = _data(shape, -1, seed=11)
        got = pl.softmax_cross_entropy_with_logits(labels=torch.as_tensor(t), logits=torch.as_tensor(x))
        np.testing.assert_allclose(got.numpy(), _soft64(x, t, -1), rtol=1e-12)
        t[3, 2] = -0.25
        with pytest.raises(pl.LabelValueError, match=r"holds -0.25 at index \(3, 2\)"):
            pl.softmax_cross_entropy_with_logits(labels=torch.as_tensor(t), logits=torch.as_tensor(x))


# -------------------------------------------------------------- the Functions, directly


@pytest.mark.parametrize("chunk", [1, 2, 5, None])
@pytest.mark.parametrize("layout", ["2d", "3d"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("k", [5, 40])  # 5: the logsumexp kernels on CPU; 40: the fused ones
def test_functions_with_weights_smoothing_chunks_and_inplace(chunk, layout, inplace, k):
    """nll and the weighted smoothing term, and soft targets, against float64 formulas."""
    rng = np.random.default_rng(7)
    shape = (7, k) if layout == "2d" else (7, k, 3)
    x = rng.standard_normal(shape) * 2
    y = rng.integers(0, k, (shape[0],) + shape[2:])
    w = rng.random(k) + 0.2
    t = rng.random(shape)
    g1 = rng.standard_normal(y.shape)
    g2 = rng.standard_normal(y.shape)
    wb = w.reshape((1, k) + (1,) * (len(shape) - 2))
    lse = _lse64(x, 1)
    logp = x - np.expand_dims(lse, 1)
    p = np.exp(logp)
    hot = np.moveaxis(np.eye(k)[y], -1, 1)
    # sparse: nll = -logp[y], smoothing = -sum_c w_c logp_c
    nll_ref = -np.sum(hot * logp, axis=1)
    sm_ref = -np.sum(wb * logp, axis=1)
    dx_ref = p * np.expand_dims(g1 + g2 * w.sum(), 1) - np.expand_dims(g1, 1) * hot - np.expand_dims(g2, 1) * wb
    xt = torch.as_tensor(x).clone().requires_grad_()
    xin = xt * 1.0  # non-leaf, so that the in-place gradient is allowed to overwrite it
    nll, sm = tb.sparse_ce(xin, torch.as_tensor(y), torch.as_tensor(w), True, inplace, chunk)
    np.testing.assert_allclose(nll.detach().numpy(), nll_ref, rtol=1e-12)
    np.testing.assert_allclose(sm.detach().numpy(), sm_ref, rtol=1e-12)
    torch.autograd.backward([nll, sm], [torch.as_tensor(g1), torch.as_tensor(g2)])
    np.testing.assert_allclose(xt.grad.numpy(), dx_ref, rtol=1e-10, atol=1e-12)
    # soft targets, weighted and smoothed: sum_c w_c q_c (lse - x_c), q = (1 - e) t + e / K
    e = 0.3
    q = (1 - e) * t + e / k
    loss_ref = np.sum(wb * q * (np.expand_dims(lse, 1) - x), axis=1)
    c_ref = np.sum(wb * q, axis=1)
    dx_ref = p * np.expand_dims(g1 * c_ref, 1) - np.expand_dims(g1, 1) * wb * q
    dt_ref = np.expand_dims(g1, 1) * (1 - e) * wb * (np.expand_dims(lse, 1) - x)
    xt = torch.as_tensor(x).clone().requires_grad_()
    tt = torch.as_tensor(t).clone().requires_grad_()
    low = torch.empty((), dtype=tt.dtype)
    out = tb.soft_target_ce(xt * 1.0, tt, torch.as_tensor(w), e, inplace, chunk, low)
    np.testing.assert_allclose(out.detach().numpy(), loss_ref, rtol=1e-12)
    assert low.item() == t.min()
    out.backward(torch.as_tensor(g1))
    np.testing.assert_allclose(xt.grad.numpy(), dx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tt.grad.numpy(), dt_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [5, 40])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_functions_take_half_logits_chunk_by_chunk(k, dtype):
    """Half logits: float32 loss, gradient in the logits' dtype, both as from float32 values."""
    rng = np.random.default_rng(12)
    x = torch.as_tensor(rng.standard_normal((50, k)) * 2).to(getattr(torch, dtype))
    y = torch.as_tensor(rng.integers(0, k, 50))
    t = torch.softmax(torch.as_tensor(rng.standard_normal((50, k))), 1).to(x.dtype)
    g = torch.as_tensor(rng.standard_normal(50))
    for fn, ref in (
        (lambda a: tb.sparse_ce(a, y, chunk=7), lambda a: F.cross_entropy(a, y, reduction="none")),
        (lambda a: tb.soft_target_ce(a, t, chunk=7), lambda a: F.cross_entropy(a, t.float(), reduction="none")),
    ):
        a = x.clone().requires_grad_()
        out = fn(a)
        assert out.dtype == torch.float32
        (gx,) = torch.autograd.grad(out, a, g.float())
        assert gx.dtype == x.dtype
        b = x.float().requires_grad_()
        want = ref(b)
        (gw,) = torch.autograd.grad(want, b, g.float())
        torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(gx, gw.to(x.dtype), rtol=1e-2, atol=1e-3)


def test_big_inputs_save_no_n_by_k_tensor():
    x = torch.randn(300, 400, requires_grad=True)
    t = torch.softmax(torch.randn(300, 400), 1)
    p = torch.softmax(torch.randn(300, 400), 1).requires_grad_()
    inputs = {x.untyped_storage().data_ptr(), t.untyped_storage().data_ptr(), p.untyped_storage().data_ptr()}
    for loss in (
        pl.sparse_categorical_crossentropy(torch.randint(0, 400, (300,)), x, from_logits=True),
        pl.categorical_crossentropy(t, x, from_logits=True),
        pl.binary_crossentropy(t, x, from_logits=True),
        pl.categorical_crossentropy(t, p),
        pl.kl_divergence(t, p),
    ):
        node = loss.grad_fn
        while node is not None and not type(node).__name__.startswith(("SparseCE", "SoftTargetCE", "RowReduce")):
            node = node.next_functions[0][0]
        assert node is not None, "the chunked Function is not in the graph"
        saved = [s for s in node.saved_tensors if s is not None]
        big = [s for s in saved if s.numel() >= x.numel()]
        # only the inputs themselves (logits, targets), never a new N x K buffer
        assert big and all(s.untyped_storage().data_ptr() in inputs for s in big)
        assert all(s.numel() <= 300 for s in saved if s.numel() < x.numel())


# torch's own warnings while dynamo traces (under an "error" filter dynamo fails on the second)
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
@pytest.mark.parametrize("shape", [(8, 6), (300, 400)], ids=str)
def test_torch_compile(shape):
    torch._dynamo.reset()
    x, y, _ = _data(shape, -1, seed=8)
    yt = torch.as_tensor(y)

    def f(a):
        return pl.sparse_categorical_crossentropy(yt, a * 2.0, from_logits=True).mean()

    xc, xr = torch.as_tensor(x).requires_grad_(), torch.as_tensor(x).requires_grad_()
    out = torch.compile(f, backend="aot_eager")(xc)
    ref = F.cross_entropy(xr * 2.0, yt)
    out.backward()
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xc.grad, xr.grad)


_QUIET = """
import sys, warnings
import torch, torch.nn.functional as F
warnings.simplefilter("always")
x = torch.randn(32, 10, requires_grad=True)
y = torch.randint(0, 10, (32,))
t = F.one_hot(y, 10).float()
with warnings.catch_warnings(record=True) as before:  # torch's own notices when it compiles
    torch.compile(lambda x: F.cross_entropy(x, y), backend="aot_eager")(x).backward()
import probloss as pl
from probloss.torch import cross_entropy
losses = [pl.SparseCategoricalCrossentropy(from_logits=True), pl.CategoricalCrossentropy(from_logits=True),
          pl.BinaryCrossentropy(from_logits=True)]
def f(x):
    return losses[0](y, x) + losses[1](t, x) + losses[2](t, x) + cross_entropy(x, y)
with warnings.catch_warnings(record=True) as ours:
    torch.compile(f, backend="aot_eager")(x).backward()
seen = {str(w.message) for w in before}
extra = [f"{w.category.__name__}: {w.message}" for w in ours if str(w.message) not in seen]
print(len(extra))
for message in extra:
    print(message[:500])
"""


def test_torch_compile_is_quiet():
    # The first probloss call of the process happens while torch.compile traces: nothing of
    # ours, or of what we call, may warn beyond torch's own notices for compiling F.cross_entropy.
    out = subprocess.run([sys.executable, "-c", _QUIET], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    count, *messages = out.stdout.splitlines()
    assert count == "0", messages


@pytest.mark.gpu
def test_cuda_native_equals_generic():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    for shape in ((16, 100), (256, 1000)):
        x, y, t = _data(shape, -1, seed=9)
        xt = torch.as_tensor(x, dtype=torch.float32).cuda()
        out = {}
        for native in (True, False):
            with _routes(native):
                a = xt.clone().requires_grad_()
                s = pl.sparse_categorical_crossentropy(torch.as_tensor(y).cuda(), a, from_logits=True)
                c = pl.categorical_crossentropy(torch.as_tensor(t, dtype=torch.float32).cuda(), a, from_logits=True)
                (s.sum() + c.sum()).backward()
                out[native] = (s.detach(), c.detach(), a.grad)
        for f, g in zip(out[True], out[False]):
            assert f.device.type == "cuda"
            torch.testing.assert_close(f, g, rtol=2e-5, atol=2e-5)
        y[1] = shape[1]  # a CUDA kernel would assert: checked first
        with pytest.raises(pl.LabelValueError, match=r"at index \(1,\)"):
            pl.sparse_categorical_crossentropy(torch.as_tensor(y).cuda(), xt, from_logits=True)


# ------------------------------------------------------- elementwise losses: RowReduce


def _elementwise_inputs(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "bce_logits":
        p = rng.standard_normal(shape) * 4
        t = (rng.random(shape) < 0.5).astype(float)
    elif kind == "bce":
        p = rng.random(shape)
        p.reshape(-1)[:3] = [0.0, 1.0, 1e-9]  # clipped: zero gradient there
        t = (rng.random(shape) < 0.5).astype(float)
    elif kind == "kl":
        p = rng.random(shape) ** 2
        p /= p.sum(-1, keepdims=True)
        p.reshape(-1)[:2] = [0.0, 1e-9]
        t = rng.random(shape) ** 2
        t /= t.sum(-1, keepdims=True)
        t.reshape(-1)[2] = 0.0
    else:  # poisson
        p = rng.random(shape) * 5
        t = rng.poisson(2.0, shape).astype(float)
    return p, t


def _elementwise_peer(kind, p, t, label_smoothing=0.0):
    """``torch.nn.functional`` written to Keras's definitions (clip, mean or sum over -1)."""
    if kind in ("bce", "bce_logits") and label_smoothing:
        t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if kind == "bce":
        return F.binary_cross_entropy(torch.clamp(p, EPS, 1 - EPS), t, reduction="none").mean(-1)
    if kind == "bce_logits":
        return F.binary_cross_entropy_with_logits(p, t, reduction="none").mean(-1)
    if kind == "kl":
        return F.kl_div(torch.log(torch.clamp(p, EPS, 1)), torch.clamp(t, EPS, 1), reduction="none").sum(-1)
    return F.poisson_nll_loss(p, t, log_input=False, eps=EPS, reduction="none").mean(-1)


def _elementwise_ours(kind, t, p, label_smoothing=0.0):
    if kind == "bce":
        return pl.binary_crossentropy(t, p, label_smoothing=label_smoothing)
    if kind == "bce_logits":
        return pl.binary_crossentropy(t, p, from_logits=True, label_smoothing=label_smoothing)
    if kind == "kl":
        return pl.kl_divergence(t, p)
    return pl.poisson(t, p)


ELEMENTWISE_SHAPES = [(6, 40), (3, 4, 7), (9,), (200, 400), (3, 100, 250)]


@pytest.mark.parametrize("kind", ["bce", "bce_logits", "kl", "poisson"])
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_elementwise_native_equals_generic_equals_torch(kind, shape, dtype):
    p, t = _elementwise_inputs(kind, shape, seed=12)
    pt = torch.as_tensor(p).to(getattr(torch, dtype))
    tt = torch.as_tensor(t).to(getattr(torch, dtype))
    smoothing = 0.1 if kind.startswith("bce") else 0.0
    with _routes(True):
        native = _run(lambda a: _elementwise_ours(kind, tt, a, smoothing), pt)
    with _routes(False):
        generic = _run(lambda a: _elementwise_ours(kind, tt, a, smoothing), pt)
    ref = _run(lambda a: _elementwise_peer(kind, a, tt, smoothing), pt)
    assert native[2] is _is_big(shape) and generic[2] is False
    tol = 1e-10 if dtype == "float64" else 3e-5
    for got in (native, generic):
        assert got[0].dtype == pt.dtype and got[0].shape == ref[0].shape
        torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
        torch.testing.assert_close(got[1][0], ref[1][0], rtol=tol, atol=tol)


def test_elementwise_takes_the_generic_formula_when_targets_need_a_gradient_or_axis_is_not_last():
    p, t = _elementwise_inputs("bce", (300, 400), seed=13)
    pt, tt = torch.as_tensor(p), torch.as_tensor(t)
    with generic_only():
        ref = _run(lambda a, b: pl.binary_crossentropy(b, a, axis=0), pt, tt)
        ref_t = _run(lambda a, b: pl.binary_crossentropy(b, a), pt, tt)
    got = _run(lambda a, b: pl.binary_crossentropy(b, a, axis=0), pt, tt)
    got_t = _run(lambda a, b: pl.binary_crossentropy(b, a), pt, tt)
    for a, b in ((got, ref), (got_t, ref_t)):
        assert a[2] is False
        torch.testing.assert_close(a[0], b[0])
        for ga, gb in zip(a[1], b[1]):
            torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize(
    ("shape", "axis"), [((6, 40), -1), ((3, 5, 4), 1), ((9,), 0), ((300, 400), -1), ((3, 400, 100), 1)], ids=str
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_from_probabilities_native_equals_generic_equals_formula(shape, axis, dtype, label_smoothing):
    rng = np.random.default_rng(14)
    p = rng.random(shape) ** 3
    p.reshape(-1)[:2] = 0.0  # clipped to epsilon: no gradient through the clip there
    p = p / p.sum(axis=axis, keepdims=True)
    t = rng.random(shape)
    t = t / t.sum(axis=axis, keepdims=True)
    pt = torch.as_tensor(p).to(getattr(torch, dtype))
    tt = torch.as_tensor(t).to(getattr(torch, dtype))
    k = shape[axis]

    def ours(a):
        return pl.categorical_crossentropy(tt, a, axis=axis, label_smoothing=label_smoothing)

    def formula(a):  # Keras's definition written out with torch ops
        q = torch.clamp(a / a.sum(dim=axis, keepdim=True), EPS, 1 - EPS)
        ts = tt * (1 - label_smoothing) + label_smoothing / k
        return -(ts * torch.log(q)).sum(dim=axis)

    with _routes(True):
        native = _run(ours, pt)
    with _routes(False):
        generic = _run(ours, pt)
    ref = _run(formula, pt)
    assert native[2] is _is_big(shape) and generic[2] is False  # the chunked Function, on any class axis
    tol = 1e-10 if dtype == "float64" else 3e-5
    for got in (native, generic):
        torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
        torch.testing.assert_close(got[1][0], ref[1][0], rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(2, 3), (300, 400)], ids=str)
def test_categorical_from_probabilities_keeps_the_checks(shape):
    rng = np.random.default_rng(15)
    p = rng.random(shape) + 0.1
    p /= p.sum(-1, keepdims=True)
    t = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    bad = p.copy()
    bad[1, 2] = 1.5
    with pytest.raises(pl.PredictionValueError, match=r"\(1, 2\)"):
        pl.categorical_crossentropy(torch.as_tensor(t), torch.as_tensor(bad))
    neg = t.copy()
    neg[1, 1] = -0.5
    with pytest.raises(pl.LabelValueError, match=r"\(1, 1\)"):
        pl.categorical_crossentropy(torch.as_tensor(neg), torch.as_tensor(p))
    half = p.copy()
    half[1] *= 0.5
    with pytest.warns(pl.ProblossWarning, match=r"index \(1,\) sums to 0\.5"):
        got = pl.categorical_crossentropy(torch.as_tensor(t), torch.as_tensor(half))
    np.testing.assert_allclose(got.numpy(), -(t * np.log(np.clip(p, EPS, 1 - EPS))).sum(-1), rtol=1e-12)  # renormalised
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normalised rows: quiet
        pl.categorical_crossentropy(torch.as_tensor(t), torch.as_tensor(p))


@pytest.mark.parametrize("shape", [(2, 3), (300, 400)], ids=str)
def test_sparse_from_probabilities_warns_on_unnormalised_rows(shape):
    rng = np.random.default_rng(16)
    p = rng.random(shape) + 0.1
    p /= p.sum(-1, keepdims=True)
    y = rng.integers(0, shape[1], shape[0])
    half = p.copy()
    half[1] *= 0.5
    with pytest.warns(pl.ProblossWarning, match=r"index \(1,\) sums to 0\.5"):
        got = pl.sparse_categorical_crossentropy(torch.as_tensor(y), torch.as_tensor(half))
    np.testing.assert_allclose(got.numpy(), -np.log(p[np.arange(shape[0]), y]), rtol=1e-12)


KINDS = ["bce", "bce_logits", "kl", "poisson", "soft_ce", "cat_probs"]


def _kind_inputs(kind, shape, seed):
    rng = np.random.default_rng(seed)
    p = rng.random(shape, dtype=np.float32)
    t = rng.random(shape, dtype=np.float32)
    if kind in ("bce", "kl"):
        p = np.clip(p, 0.01, 0.99)  # away from the clipping bounds
    if kind == "bce":
        t = np.round(t)
    elif kind == "bce_logits":
        p = (p - 0.5) * 20
    elif kind == "soft_ce":
        p = (p - 0.5) * 30
        t = t / t.sum(-1, keepdims=True)
    elif kind == "cat_probs":
        p = (p + 0.1) / (p + 0.1).sum(-1, keepdims=True)
        t = np.round(t) / np.maximum(np.round(t).sum(-1, keepdims=True), 1)
    elif kind == "poisson":
        t = np.floor(t * 6)
        p = p * 5 + 0.1
    return t, p


def _kind_loss(kind, t, p):
    return {
        "bce": lambda: pl.binary_crossentropy(t, p),
        "bce_logits": lambda: pl.binary_crossentropy(t, p, from_logits=True),
        "kl": lambda: pl.kl_divergence(t, p),
        "poisson": lambda: pl.poisson(t, p),
        "soft_ce": lambda: pl.categorical_crossentropy(t, p, from_logits=True),
        "cat_probs": lambda: pl.categorical_crossentropy(t, p),
    }[kind]()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(16, 40), (300, 400)], ids=str)
def test_float32_gradient_matches_float64(kind, shape):
    t, p = _kind_inputs(kind, shape, seed=1)
    tp = torch.tensor(p, requires_grad=True)
    loss = _kind_loss(kind, torch.from_numpy(t), tp)
    assert _chunked(loss) is _is_big(shape)
    (g,) = torch.autograd.grad(loss.sum(), tp)
    t64, p64 = t.astype(np.float64), p.astype(np.float64)
    k = p.shape[-1]
    if kind == "bce_logits":
        ref = (1 / (1 + np.exp(-p64)) - t64) / k
    elif kind == "bce":
        ref = (p64 - t64) / (p64 * (1 - p64)) / k
    elif kind == "kl":
        ref = -np.clip(t64, EPS, 1) / p64
    elif kind == "cat_probs":
        ref = -t64 / p64 + t64.sum(-1, keepdims=True) / p64.sum(-1, keepdims=True)
    elif kind == "soft_ce":
        e = np.exp(p64 - p64.max(-1, keepdims=True))
        ref = t64.sum(-1, keepdims=True) * e / e.sum(-1, keepdims=True) - t64
    else:
        ref = (1 - t64 / (p64 + EPS)) / k
    # cat_probs: -t/p + T/S cancels; allow float32 rounding of its terms (|t/p| ~ 2)
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-4, atol=1e-6 if kind == "cat_probs" else 1e-7)


BAD = {
    # loss: (input, bad value, error, words in the message)
    "bce": [
        ("t", 2.0, pl.LabelValueError, "[0, 1]"),
        ("p", 3.5, pl.PredictionValueError, "from_logits=True"),
        ("p", -0.25, pl.PredictionValueError, "from_logits=True"),
        ("t", math.nan, pl.LabelValueError, "nan"),
    ],
    "bce_logits": [("t", -0.5, pl.LabelValueError, "[0, 1]"), ("t", math.inf, pl.LabelValueError, "inf")],
    "soft_ce": [("t", -0.1, pl.LabelValueError, "cannot be negative"), ("t", math.nan, pl.LabelValueError, "nan")],
    "cat_probs": [
        ("t", -0.1, pl.LabelValueError, "cannot be negative"),
        ("p", 3.0, pl.PredictionValueError, "from_logits=True"),
        ("p", math.nan, pl.PredictionValueError, "nan"),
    ],
    "kl": [
        ("t", 1.5, pl.LabelValueError, "[0, 1]"),
        ("p", -1e-30, pl.PredictionValueError, "[0, 1]"),
        ("p", math.inf, pl.PredictionValueError, "inf"),
    ],
    "poisson": [
        ("t", -1.0, pl.LabelValueError, "counts"),
        ("p", -0.5, pl.PredictionValueError, "rates"),
        ("p", math.nan, pl.PredictionValueError, "nan"),
    ],
}


@pytest.mark.parametrize(("shape", "where"), [((30, 40), (17, 23)), ((256, 300), (0, 0)), ((256, 300), (255, 299))], ids=str)
@pytest.mark.parametrize(("kind", "case"), [(k, c) for k, cases in BAD.items() for c in cases], ids=str)
def test_a_bad_element_raises_and_is_named_on_both_routes(kind, case, shape, where):
    which, value, error, words = case
    t, p = _kind_inputs(kind, shape, seed=2)
    (t if which == "t" else p)[where] = value
    with pytest.raises(error, match=re.escape(str(where))) as info:
        _kind_loss(kind, torch.from_numpy(t), torch.from_numpy(p))
    assert words in str(info.value)


# --------------------------------------------------------------------- second order


def _hvp(loss_fn, x, v):
    """``H v`` of the scalar ``loss_fn(x)``, and whether a chunked Function computed it."""
    x = x.clone().requires_grad_()
    loss = loss_fn(x)
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    return g.detach(), hv, _chunked(loss)


SECOND_ORDER_SHAPES = [(300, 400), (30, 40)]  # above SMALL_ELEMENTS (the chunked Functions), and below


@pytest.mark.parametrize("shape", SECOND_ORDER_SHAPES, ids=str)
def test_second_order_sparse_from_logits_equals_f_cross_entropy(shape):
    rng = np.random.default_rng(20)
    x = torch.as_tensor(rng.standard_normal(shape) * 2)
    v = torch.as_tensor(rng.standard_normal(shape))
    y = torch.as_tensor(rng.integers(0, shape[1], shape[0]))
    loss = pl.SparseCategoricalCrossentropy(from_logits=True)
    g, hv, chunked = _hvp(lambda a: loss(y, a), x, v)
    g_ref, hv_ref, _ = _hvp(lambda a: F.cross_entropy(a, y), x, v)
    assert chunked is _is_big(shape)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hv, hv_ref, rtol=1e-10, atol=1e-10)
    assert hv.abs().max() > 1e-4  # not trivially zero


@pytest.mark.parametrize("shape", SECOND_ORDER_SHAPES, ids=str)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_second_order_categorical_from_logits_equals_f_cross_entropy(shape, label_smoothing):
    rng = np.random.default_rng(21)
    x = torch.as_tensor(rng.standard_normal(shape) * 2)
    v = torch.as_tensor(rng.standard_normal(shape))
    t = torch.softmax(torch.as_tensor(rng.standard_normal(shape) * 3), 1)
    loss = pl.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    g, hv, chunked = _hvp(lambda a: loss(t, a), x, v)
    g_ref, hv_ref, _ = _hvp(lambda a: F.cross_entropy(a, t, label_smoothing=label_smoothing), x, v)
    assert chunked is _is_big(shape)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hv, hv_ref, rtol=1e-10, atol=1e-10)
    assert hv.abs().max() > 1e-4


@pytest.mark.parametrize("shape", SECOND_ORDER_SHAPES, ids=str)
def test_second_order_binary_from_logits_equals_f_binary_cross_entropy_with_logits(shape):
    rng = np.random.default_rng(22)
    x = torch.as_tensor(rng.standard_normal(shape) * 2)
    v = torch.as_tensor(rng.standard_normal(shape))
    t = torch.as_tensor((rng.random(shape) < 0.3).astype(np.float64))
    loss = pl.BinaryCrossentropy(from_logits=True)

    def keras_mean(a):  # mean over the last axis, then over the batch
        return F.binary_cross_entropy_with_logits(a, t, reduction="none").mean(-1).mean()

    g, hv, chunked = _hvp(lambda a: loss(t, a), x, v)
    g_ref, hv_ref, _ = _hvp(keras_mean, x, v)
    assert chunked is _is_big(shape)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hv, hv_ref, rtol=1e-10, atol=1e-10)
    assert hv.abs().max() > 1e-10


@pytest.mark.parametrize("kind", ["bce", "kl", "poisson", "cat_probs"])
@pytest.mark.parametrize("shape", SECOND_ORDER_SHAPES, ids=str)
def test_second_order_of_the_other_row_losses(kind, shape):
    """``RowReduce``'s other losses, against their formulas written with torch ops."""
    rng = np.random.default_rng(23)
    p = torch.as_tensor(rng.random(shape) * 0.9 + 0.05)
    if kind in ("kl", "cat_probs"):
        p = p / p.sum(-1, keepdim=True)
    t = torch.as_tensor(rng.random(shape))
    if kind == "bce":
        t = t.round()
    elif kind == "kl":
        t = t / t.sum(-1, keepdim=True)
    elif kind == "cat_probs":
        t = torch.as_tensor(np.eye(shape[1])[rng.integers(0, shape[1], shape[0])])
    v = torch.as_tensor(rng.standard_normal(shape))
    w = torch.as_tensor(rng.random(shape[0]))  # upstream weights per row

    def ours(a):
        return (_kind_loss(kind, t, a) * w).sum()

    def peer(a):
        if kind == "bce":
            per = F.binary_cross_entropy(a.clamp(EPS, 1 - EPS), t, reduction="none").mean(-1)
        elif kind == "kl":
            per = F.kl_div(torch.log(a.clamp(EPS, 1)), t.clamp(EPS, 1), reduction="none").sum(-1)
        elif kind == "poisson":
            per = F.poisson_nll_loss(a, t, log_input=False, eps=EPS, reduction="none").mean(-1)
        else:
            per = -(t * torch.log((a / a.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS))).sum(-1)
        return (per * w).sum()

    g, hv, chunked = _hvp(ours, p, v)
    g_ref, hv_ref, _ = _hvp(peer, p, v)
    assert chunked is _is_big(shape)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hv, hv_ref, rtol=1e-10, atol=1e-10)
