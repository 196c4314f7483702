"""The native fast paths agree with the generic path and with the peers, in value and gradient.

``probloss._fast.fast_paths(False)`` forces the generic ``xp.*`` code; each test runs
both and compares them with an independent reference: ``torch.nn.functional`` or Optax
run live, or a float64 NumPy formula.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import probloss as pl
from probloss import _fast
from probloss._fast import fast_paths


def _lse64(x, axis):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _sparse64(x, y, axis):
    x64 = np.asarray(x, dtype=np.float64)
    tgt = np.squeeze(np.take_along_axis(x64, np.expand_dims(y, axis), axis=axis), axis)
    return _lse64(x64, axis) - tgt


def _soft64(x, t, axis):
    x64, t64 = np.asarray(x, dtype=np.float64), np.asarray(t, dtype=np.float64)
    return np.sum(t64 * (np.expand_dims(_lse64(x64, axis), axis) - x64), axis=axis)


# (6, 5) and (5, 40): few classes (NumPy's column loop, torch's logsumexp path below 32);
# (5, 60): the row-reduction paths of both
CASES = [((6, 5), -1), ((5, 40), -1), ((5, 60), -1), ((3, 5, 4), 1), ((2, 3, 4, 5), 2), ((4, 3, 2), 0), ((7,), 0)]


def _data(shape, axis, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    k = shape[axis]
    lshape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    y = rng.integers(0, k, lshape)
    t = rng.random(shape) ** 3
    t = t / t.sum(axis=axis, keepdims=True)
    return x, y, t


# ------------------------------------------------------------------------------- numpy


@pytest.mark.parametrize(("shape", "axis"), CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_fast_equals_generic_equals_formula(shape, axis, dtype, monkeypatch):
    monkeypatch.setattr(_fast, "_NP_CHUNK_ELEMS", 7)  # several uneven chunks
    monkeypatch.setattr(_fast, "_NP_FEW_ROWS", 2)
    x, y, t = _data(shape, axis)
    x, t = x.astype(dtype), t.astype(dtype)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    out = {}
    for on in (True, False):
        with fast_paths(on):
            out[on] = (
                pl.sparse_categorical_crossentropy(y, x, from_logits=True, axis=axis),
                pl.categorical_crossentropy(t, x, from_logits=True, axis=axis),
            )
    for on in (True, False):
        assert out[on][0].dtype == dtype and out[on][1].dtype == dtype
        np.testing.assert_allclose(out[on][0], _sparse64(x, y, axis), **tol)
        np.testing.assert_allclose(out[on][1], _soft64(x, t, axis), **tol)


def test_numpy_fast_path_keeps_precision_for_large_logits():
    x, y, t = _data((64, 300), -1, seed=1)
    x = (x + 1000.0).astype(np.float32)
    np.testing.assert_allclose(pl.sparse_categorical_crossentropy(y, x, from_logits=True), _sparse64(x, y, -1), rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(pl.categorical_crossentropy(t, x, from_logits=True), _soft64(x, t, -1), rtol=2e-5, atol=2e-4)


def test_numpy_fast_path_is_used():
    x, y, _ = _data((4, 3), -1)
    calls = []
    original = _fast._np_sparse
    try:
        _fast._np_sparse = lambda *a: calls.append(1) or original(*a)
        pl.sparse_categorical_crossentropy(y, x, from_logits=True)
        with fast_paths(False):
            pl.sparse_categorical_crossentropy(y, x, from_logits=True)
    finally:
        _fast._np_sparse = original
    assert calls == [1]


# ------------------------------------------------------------------------------- torch


torch_cases = pytest.mark.parametrize(("shape", "axis"), CASES, ids=str)


def _torch():
    return pytest.importorskip("torch")


def _run_torch(fn, x, *extra, go_seed=3):
    """Value and gradients (w.r.t. every float input) under a random upstream gradient."""
    torch = _torch()
    leaves = [torch.as_tensor(a).clone().requires_grad_() for a in (x, *extra)]
    out = fn(*leaves)
    go = torch.as_tensor(np.random.default_rng(go_seed).standard_normal(tuple(out.shape))).to(out.dtype)
    grads = torch.autograd.grad(out, leaves, go)
    return out.detach(), grads


@torch_cases
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("ignore_class", [None, 1])
def test_torch_sparse_fast_equals_generic_equals_torch(shape, axis, dtype, ignore_class):
    torch = _torch()
    F = torch.nn.functional
    x, y, _ = _data(shape, axis, seed=2)
    if ignore_class is not None:
        y.reshape(-1)[::3] = ignore_class
    xt = torch.as_tensor(x).to(getattr(torch, dtype))
    yt = torch.as_tensor(y)

    def ours(a):
        return pl.sparse_categorical_crossentropy(yt, a, from_logits=True, axis=axis, ignore_class=ignore_class)

    def peer(a):
        # torch's class axis is 1: move ours there (a 1-D input has its classes on axis 0).
        moved = torch.movedim(a, axis, 1) if a.ndim > 1 else a
        kw = {"ignore_index": ignore_class} if ignore_class is not None else {}
        return F.cross_entropy(moved, yt, reduction="none", **kw)

    with fast_paths(True):
        fast = _run_torch(ours, xt)
    with fast_paths(False):
        generic = _run_torch(ours, xt)
    ref = _run_torch(peer, xt)
    tol = {"float64": 1e-12, "float32": 2e-5, "bfloat16": 2e-2}[dtype]
    for got in (fast, generic):
        assert got[0].dtype == xt.dtype and got[1][0].dtype == xt.dtype
        torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
        torch.testing.assert_close(got[1][0], ref[1][0], rtol=tol, atol=tol)


@torch_cases
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_torch_categorical_fast_equals_generic_equals_torch(shape, axis, dtype, label_smoothing):
    torch = _torch()
    F = torch.nn.functional
    x, _, t = _data(shape, axis, seed=4)
    xt = torch.as_tensor(x).to(getattr(torch, dtype))
    tt = torch.as_tensor(t).to(getattr(torch, dtype))

    def ours(a, b):
        return pl.categorical_crossentropy(b, a, from_logits=True, axis=axis, label_smoothing=label_smoothing)

    def peer(a, b):
        # Keras smooths t(1-a) + a/K, the same formula as torch's probability-target smoothing.
        if a.ndim == 1:
            return F.cross_entropy(a, b, label_smoothing=label_smoothing, reduction="none")
        return F.cross_entropy(torch.movedim(a, axis, 1), torch.movedim(b, axis, 1), label_smoothing=label_smoothing, reduction="none")

    with fast_paths(True):
        fast = _run_torch(ours, xt, tt)
    with fast_paths(False):
        generic = _run_torch(ours, xt, tt)
    ref = _run_torch(peer, xt, tt)
    tol = 1e-12 if dtype == "float64" else 2e-5
    for got in (fast, generic):
        torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
        for g, r in zip(got[1], ref[1]):  # gradients w.r.t. logits and targets
            torch.testing.assert_close(g, r, rtol=tol, atol=tol)


def test_torch_loss_classes_fast_equals_generic():
    torch = _torch()
    x, y, t = _data((12, 7), -1, seed=5)
    y[::4] = 2
    sw = np.linspace(0.5, 1.5, 12)
    results = {}
    for on in (True, False):
        with fast_paths(on):
            xs = torch.as_tensor(x).requires_grad_()
            a = pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2)(torch.as_tensor(y), xs, sample_weight=torch.as_tensor(sw))
            b = pl.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(torch.as_tensor(t), xs)
            results[on] = (a.detach(), b.detach(), *torch.autograd.grad(a + 2 * b, xs))
    for f, g in zip(results[True], results[False]):
        torch.testing.assert_close(f, g, rtol=1e-12, atol=1e-12)


def test_torch_fast_path_keeps_precision_for_large_logits():
    torch = _torch()
    x, y, t = _data((64, 300), -1, seed=6)
    x32 = (x + 1000.0).astype(np.float32)
    xt = torch.as_tensor(x32)
    sparse = pl.sparse_categorical_crossentropy(torch.as_tensor(y), xt, from_logits=True)
    soft = pl.categorical_crossentropy(torch.as_tensor(t.astype(np.float32)), xt, from_logits=True)
    np.testing.assert_allclose(sparse.numpy(), _sparse64(x32, y, -1), rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(soft.numpy(), _soft64(x32, t.astype(np.float32), -1), rtol=2e-5, atol=2e-4)


@pytest.mark.parametrize("chunk", [1, 2, 5, None])
@pytest.mark.parametrize("layout", ["2d", "3d"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("k", [5, 40])  # 40: the fused-kernel path on CPU
def test_torch_kernels_with_weights_smoothing_chunks_and_inplace(chunk, layout, inplace, k):
    """Kernel level: nll and the weighted smoothing term against float64 formulas."""
    torch = _torch()
    from probloss.torch._kernels import soft_target_ce, sparse_ce

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
    nll, sm = sparse_ce(xin, torch.as_tensor(y), torch.as_tensor(w), True, inplace, chunk)
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
    out = soft_target_ce(xt * 1.0, tt, torch.as_tensor(w), e, inplace, chunk)
    np.testing.assert_allclose(out.detach().numpy(), loss_ref, rtol=1e-12)
    out.backward(torch.as_tensor(g1))
    np.testing.assert_allclose(xt.grad.numpy(), dx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tt.grad.numpy(), dt_ref, rtol=1e-10, atol=1e-12)


def test_torch_fast_path_saves_no_n_by_k_tensor():
    torch = _torch()
    x = torch.randn(64, 50, requires_grad=True)
    t = torch.softmax(torch.randn(64, 50), 1)
    inputs = {x.untyped_storage().data_ptr(), t.untyped_storage().data_ptr()}
    for loss in (
        pl.sparse_categorical_crossentropy(torch.randint(0, 50, (64,)), x, from_logits=True),
        # the dispatcher itself: the Keras-style function receives y_true already converted
        _fast.soft_from_logits(torch, t, x, 1),
    ):
        node = loss.grad_fn
        while node is not None and "CE" not in type(node).__name__:
            node = node.next_functions[0][0]
        assert node is not None, "the custom Function is not in the graph"
        saved = [s for s in node.saved_tensors if s is not None]
        big = [s for s in saved if s.numel() >= x.numel()]
        # only the inputs themselves (logits, targets), never a new N x K buffer
        assert big and all(s.untyped_storage().data_ptr() in inputs for s in big)
        assert all(s.numel() <= 64 for s in saved if s.numel() < x.numel())


@pytest.mark.filterwarnings("ignore:Dynamo detected a call:UserWarning")
def test_torch_compile_with_the_fast_path():
    torch = _torch()
    torch._dynamo.reset()
    x, y, _ = _data((8, 6), -1, seed=8)
    yt = torch.as_tensor(y)

    def f(a):
        return pl.sparse_categorical_crossentropy(yt, a * 2.0, from_logits=True).mean()

    xc, xr = torch.as_tensor(x).requires_grad_(), torch.as_tensor(x).requires_grad_()
    out = torch.compile(f, backend="aot_eager")(xc)
    ref = torch.nn.functional.cross_entropy(xr * 2.0, yt)
    out.backward()
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xc.grad, xr.grad)


@pytest.mark.gpu
def test_torch_cuda_fast_equals_generic():
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    x, y, t = _data((256, 1000), -1, seed=9)
    xt = torch.as_tensor(x, dtype=torch.float32).cuda()
    out = {}
    for on in (True, False):
        with fast_paths(on):
            a = xt.clone().requires_grad_()
            s = pl.sparse_categorical_crossentropy(torch.as_tensor(y).cuda(), a, from_logits=True)
            c = pl.categorical_crossentropy(torch.as_tensor(t, dtype=torch.float32).cuda(), a, from_logits=True)
            (s.sum() + c.sum()).backward()
            out[on] = (s.detach(), c.detach(), a.grad)
    for f, g in zip(out[True], out[False]):
        assert f.device.type == "cuda"
        torch.testing.assert_close(f, g, rtol=2e-5, atol=2e-5)


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


def _elementwise_peer(kind, p, t, F, torch, label_smoothing=0.0):
    """``torch.nn.functional`` written to Keras's definitions (clip, mean or sum over -1)."""
    eps = 1e-7
    if kind in ("bce", "bce_logits") and label_smoothing:
        t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    if kind == "bce":
        return F.binary_cross_entropy(torch.clamp(p, eps, 1 - eps), t, reduction="none").mean(-1)
    if kind == "bce_logits":
        return F.binary_cross_entropy_with_logits(p, t, reduction="none").mean(-1)
    if kind == "kl":
        return F.kl_div(torch.log(torch.clamp(p, eps, 1)), torch.clamp(t, eps, 1), reduction="none").sum(-1)
    return F.poisson_nll_loss(p, t, log_input=False, eps=eps, reduction="none").mean(-1)


def _elementwise_ours(kind, t, p, label_smoothing=0.0):
    if kind == "bce":
        return pl.binary_crossentropy(t, p, label_smoothing=label_smoothing)
    if kind == "bce_logits":
        return pl.binary_crossentropy(t, p, from_logits=True, label_smoothing=label_smoothing)
    if kind == "kl":
        return pl.kl_divergence(t, p)
    return pl.poisson(t, p)


@pytest.mark.parametrize("kind", ["bce", "bce_logits", "kl", "poisson"])
@pytest.mark.parametrize("shape", [(6, 40), (3, 4, 7), (9,)], ids=str)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_elementwise_fast_equals_generic_equals_torch(kind, shape, dtype, monkeypatch):
    torch = _torch()
    F = torch.nn.functional
    from probloss.torch import _kernels

    monkeypatch.setattr(_kernels, "_CPU_CHUNK_ELEMS", 50)  # several uneven chunks
    p, t = _elementwise_inputs(kind, shape, seed=12)
    pt = torch.as_tensor(p).to(getattr(torch, dtype))
    tt = torch.as_tensor(t).to(getattr(torch, dtype))
    smoothing = 0.1 if kind.startswith("bce") else 0.0
    with fast_paths(True):
        fast = _run_torch(lambda a: _elementwise_ours(kind, tt, a, smoothing), pt)
    with fast_paths(False):
        generic = _run_torch(lambda a: _elementwise_ours(kind, tt, a, smoothing), pt)
    ref = _run_torch(lambda a: _elementwise_peer(kind, a, tt, F, torch, smoothing), pt)
    tol = 1e-10 if dtype == "float64" else 3e-5
    for got in (fast, generic):
        assert got[0].dtype == pt.dtype and got[0].shape == ref[0].shape
        torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
        torch.testing.assert_close(got[1][0], ref[1][0], rtol=tol, atol=tol)


def test_torch_elementwise_falls_back_when_targets_need_a_gradient_or_axis_is_not_last():
    torch = _torch()
    p, t = _elementwise_inputs("bce", (5, 6), seed=13)
    pt, tt = torch.as_tensor(p), torch.as_tensor(t)
    with fast_paths(False):
        ref = _run_torch(lambda a, b: pl.binary_crossentropy(b, a, axis=0), pt, tt)
        ref_t = _run_torch(lambda a, b: pl.binary_crossentropy(b, a), pt, tt)
    got = _run_torch(lambda a, b: pl.binary_crossentropy(b, a, axis=0), pt, tt)
    got_t = _run_torch(lambda a, b: pl.binary_crossentropy(b, a), pt, tt)
    for a, b in ((got, ref), (got_t, ref_t)):
        torch.testing.assert_close(a[0], b[0])
        for ga, gb in zip(a[1], b[1]):
            torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize(("shape", "axis"), [((6, 40), -1), ((3, 5, 4), 1), ((9,), 0)], ids=str)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_torch_categorical_from_probabilities_fast_equals_generic_equals_formula(shape, axis, dtype, label_smoothing, monkeypatch):
    torch = _torch()
    from probloss.torch import _kernels

    monkeypatch.setattr(_kernels, "_CPU_CHUNK_ELEMS", 30)  # several uneven chunks
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
        q = torch.clamp(a / a.sum(dim=axis, keepdim=True), 1e-7, 1 - 1e-7)
        ts = tt * (1 - label_smoothing) + label_smoothing / k
        return -(ts * torch.log(q)).sum(dim=axis)

    with fast_paths(True):
        fast = _run_torch(ours, pt)
    with fast_paths(False):
        generic = _run_torch(ours, pt)
    ref = _run_torch(formula, pt)
    tol = 1e-10 if dtype == "float64" else 3e-5
    for got in (fast, generic):
        torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol)
        torch.testing.assert_close(got[1][0], ref[1][0], rtol=tol, atol=tol)


def test_torch_categorical_from_probabilities_keeps_the_checks():
    torch = _torch()
    with pytest.raises(pl.PredictionValueError):
        pl.categorical_crossentropy(torch.tensor([[0.0, 1.0]]), torch.tensor([[-0.5, 1.5]]))
    with pytest.warns(pl.ProblossWarning):
        pl.categorical_crossentropy(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.2, 0.3]]))


# --------------------------------------------------------------------------------- jax


@pytest.mark.parametrize(("shape", "axis"), [((6, 5), -1), ((3, 5, 4), 1)], ids=str)
def test_jax_custom_vjp_kernels_match_optax(shape, axis, monkeypatch):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    optax = pytest.importorskip("optax")
    x, y, t = _data(shape, axis, seed=10)
    xj, yj, tj = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y), jnp.asarray(t, dtype=jnp.float32)
    go = jnp.asarray(np.random.default_rng(0).standard_normal(y.shape), dtype=jnp.float32)

    def vg(f, *args):
        out, vjp = jax.vjp(f, *args)
        return out, vjp(go)

    ref_s = vg(lambda a: optax.softmax_cross_entropy_with_integer_labels(a, yj, axis=axis), xj)
    ref_c = vg(lambda a, b: optax.softmax_cross_entropy(a, b, axis=axis), xj, tj)
    monkeypatch.setattr(_fast, "JAX_CUSTOM_VJP", True)
    for jit in (False, True):
        wrap = jax.jit if jit else (lambda f: f)
        got_s = vg(wrap(lambda a: pl.sparse_categorical_crossentropy(yj, a, from_logits=True, axis=axis)), xj)
        got_c = vg(wrap(lambda a, b: pl.categorical_crossentropy(b, a, from_logits=True, axis=axis)), xj, tj)
        np.testing.assert_allclose(got_s[0], ref_s[0], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(got_s[1][0], ref_s[1][0], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(got_c[0], ref_c[0], rtol=2e-5, atol=2e-6)
        # optax takes (logits, labels): its cotangents are (dx, dt); ours are (dx, dt) too.
        np.testing.assert_allclose(got_c[1][0], ref_c[1][0], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(got_c[1][1], ref_c[1][1], rtol=2e-5, atol=2e-6)


def test_jax_default_path_matches_optax_under_jit():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    x, y, _ = _data((9, 6), -1, seed=11)
    xj, yj = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y)
    got = jax.jit(jax.value_and_grad(lambda a: pl.sparse_categorical_crossentropy(yj, a, from_logits=True).mean()))(xj)
    ref = jax.value_and_grad(lambda a: optax.softmax_cross_entropy_with_integer_labels(a, yj).mean())(xj)
    np.testing.assert_allclose(got[0], ref[0], rtol=2e-6)
    np.testing.assert_allclose(got[1], ref[1], rtol=2e-5, atol=1e-7)


# ----------------------------------------------------------------------------- imports


def test_fast_paths_import_no_framework():
    code = "import sys, probloss, probloss._fast; print('torch' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_fast_paths_switch_restores_previous_state():
    assert _fast.fast_paths_enabled()
    with fast_paths(False):
        assert not _fast.fast_paths_enabled()
        with fast_paths(True):
            assert _fast.fast_paths_enabled()
        assert not _fast.fast_paths_enabled()
    assert _fast.fast_paths_enabled()
