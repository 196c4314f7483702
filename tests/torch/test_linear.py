"""probloss.torch.linear_cross_entropy / linear_log_probs_and_entropy against independent references.

The reference is eager float64 ``F.cross_entropy(F.linear(X, W, b), y, ...)`` (torch's own
label smoothing, class weights and ``ignore_index``), with the softcap ``c tanh(z / c)``
and PaLM's z-loss ``z * lse^2`` written out separately.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import probloss  # noqa: E402
from probloss.torch import (  # noqa: E402
    LinearCrossEntropy,
    LogProbsEntropy,
    _linear,
    linear_cross_entropy,
    linear_log_probs_and_entropy,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These inputs are tiny: torch's thread pool only adds wake-up latency (a lot of it on
    a loaded machine), so the module runs on one thread and restores the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


N, D, V = 37, 19, 101  # odd on purpose: N is no multiple of the chunk, V of anything
CHUNK = 8


def _inputs(dtype=torch.float64, *, bias=True, ignore_every=5, lead=(N,), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, D, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    w = (torch.randn(V, D, generator=g, dtype=torch.float64) * 0.5).to(dtype).requires_grad_()
    b = torch.randn(V, generator=g, dtype=torch.float64).to(dtype).requires_grad_() if bias else None
    y = torch.randint(0, V, lead, generator=g)
    if ignore_every:
        y.view(-1)[::ignore_every] = -100
    cw = torch.rand(V, generator=g, dtype=torch.float64) + 0.25
    return x, w, b, y, cw


def reference(x, w, b, y, *, ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None,
              reduction="mean", class_weight=None):
    """Eager float64: F.linear, the cap, F.cross_entropy, plus the z-loss written out."""
    x, w = x.double().reshape(-1, x.shape[-1]), w.double()
    b = None if b is None else b.double()
    yf = y.reshape(-1)
    z = F.linear(x, w, b)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    cw = None if class_weight is None else class_weight.double()
    ce = F.cross_entropy(z, yf, weight=cw, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)
    valid = yf != ignore_index
    lse2 = torch.logsumexp(z, 1) ** 2
    if reduction == "none":
        return (ce + z_loss * torch.where(valid, lse2, 0.0)).reshape(y.shape)
    if reduction == "sum":
        return ce + z_loss * lse2[valid].sum()
    return ce + z_loss * lse2[valid].mean()


OPTIONS = {
    "plain": {},
    "smoothing": {"label_smoothing": 0.1},
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"softcap": 2.5},
    "class_weight": {"class_weight": True},
    "smoothing+class_weight": {"label_smoothing": 0.2, "class_weight": True},
    "everything": {"label_smoothing": 0.2, "z_loss": 0.1, "softcap": 3.0, "class_weight": True},
}


def _kw(opts, cw):
    return {k: (cw if k == "class_weight" else v) for k, v in opts.items()}


def _grads(out, tensors, reduction):
    """Gradients of the loss (of a weighted sum of the per-token losses for "none")."""
    if reduction == "none":
        out = (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape)).sum()
    want = [t for t in tensors if t is not None]
    return torch.autograd.grad(out, want)


def _assert_close(got, want, rtol, atol):
    torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("mode", ["fused", "recompute"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_value_and_gradients_match_float64_reference(option, bias, reduction, mode):
    x, w, b, y, cw = _inputs(bias=bias)
    kw = _kw(OPTIONS[option], cw)
    want = reference(x, w, b, y, reduction=reduction, **kw)
    got = linear_cross_entropy(x, w, y, b, reduction=reduction, chunk_size=CHUNK, recompute=mode == "recompute", **kw)
    assert got.shape == want.shape and got.dtype == torch.float64
    _assert_close(got, want, 1e-12, 1e-12)
    for g, r in zip(_grads(got, (x, w, b), reduction), _grads(want, (x, w, b), reduction)):
        _assert_close(g, r, 1e-10, 1e-12)


@pytest.mark.parametrize("option", ["plain", "everything"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_float32_against_float64_reference(option, reduction):
    x, w, b, y, cw = _inputs(torch.float32)
    kw = _kw(OPTIONS[option], cw.float())
    got = linear_cross_entropy(x, w, y, b, reduction=reduction, chunk_size=CHUNK, **kw)
    assert got.dtype == torch.float32
    want = reference(x, w, b, y, reduction=reduction, **kw)
    _assert_close(got, want, 1e-5, 1e-5)
    for g, r in zip(_grads(got, (x, w, b), reduction), _grads(want, (x, w, b), reduction)):
        _assert_close(g, r, 1e-4, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("mode", ["fused", "recompute"])
def test_half_precision_within_tolerance(dtype, mode):
    x, w, b, y, cw = _inputs(dtype)
    kw = {"z_loss": 1e-3, "label_smoothing": 0.1, "softcap": 4.0}
    got = linear_cross_entropy(x, w, y, b, chunk_size=CHUNK, recompute=mode == "recompute", **kw)
    assert got.dtype == torch.float32  # the log-sum-exp and the loss stay in float32
    want = reference(x, w, b, y, **kw)  # the same half-precision numbers, upcast
    tol = 2e-2 if dtype == torch.bfloat16 else 3e-3
    _assert_close(got, want, tol, tol)
    for g, r in zip(_grads(got, (x, w, b), "mean"), _grads(want, (x, w, b), "mean")):
        assert g.dtype == dtype
        scale = r.abs().max()
        _assert_close(g / scale, r / scale, tol, tol)


@pytest.mark.parametrize("chunk", [1, 8, 36, 37, 1000, None], ids=lambda c: f"chunk={c}")
def test_any_chunk_size_gives_the_same_numbers(chunk):
    x, w, b, y, cw = _inputs()
    kw = _kw(OPTIONS["everything"], cw)
    got = linear_cross_entropy(x, w, y, b, chunk_size=chunk, **kw)
    want = reference(x, w, b, y, **kw)
    _assert_close(got, want, 1e-12, 1e-12)
    for g, r in zip(_grads(got, (x, w, b), "mean"), _grads(want, (x, w, b), "mean")):
        _assert_close(g, r, 1e-10, 1e-12)


def test_batch_time_hidden_keeps_its_leading_shape():
    x, w, b, y, _ = _inputs(lead=(3, 7))
    none = linear_cross_entropy(x, w, y, b, reduction="none", chunk_size=4)
    assert none.shape == (3, 7)
    assert torch.all(none[y == -100] == 0)
    _assert_close(none, reference(x, w, b, y, reduction="none"), 1e-12, 1e-12)
    got = linear_cross_entropy(x, w, y, b, chunk_size=4)
    _assert_close(got, reference(x, w, b, y), 1e-12, 1e-12)
    gx, gw, gb = _grads(got, (x, w, b), "mean")
    rx, rw, rb = _grads(reference(x, w, b, y), (x, w, b), "mean")
    assert gx.shape == x.shape
    _assert_close(gx, rx, 1e-10, 1e-12)
    _assert_close(gw, rw, 1e-10, 1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("mode", ["fused", "recompute"])
def test_every_token_ignored_gives_zero_not_nan(reduction, mode):
    x, w, b, y, cw = _inputs()
    y = torch.full_like(y, -100)
    got = linear_cross_entropy(x, w, y, b, reduction=reduction, class_weight=cw, z_loss=0.1, label_smoothing=0.1,
                               recompute=mode == "recompute")
    assert torch.all(got == 0)
    for g in _grads(got, (x, w, b), reduction):
        assert torch.all(g == 0)


def test_ignored_rows_are_dropped_before_any_matrix_product(monkeypatch):
    rows = []
    real = _linear._logits

    def spy(xc, *args):
        rows.append(xc.shape[0])
        return real(xc, *args)

    monkeypatch.setattr(_linear, "_logits", spy)
    x, w, b, y, _ = _inputs()  # every 5th of 37 tokens ignored: 29 left
    linear_cross_entropy(x, w, y, b, chunk_size=CHUNK).backward()
    n_valid = int((y != -100).sum())
    assert sum(rows) == n_valid and max(rows) <= CHUNK  # one pass (gradients in the forward), chunk by chunk
    rows.clear()
    linear_cross_entropy(x, w, y, b, chunk_size=CHUNK, recompute=True).backward()
    assert sum(rows) == 2 * n_valid  # forward and recomputing backward


def test_custom_ignore_index_and_negative_targets():
    x, w, b, y, _ = _inputs(ignore_every=0)
    y[::3] = 7  # class 7 ignored
    got = linear_cross_entropy(x, w, y, b, ignore_index=7, chunk_size=CHUNK)
    _assert_close(got, reference(x, w, b, y, ignore_index=7), 1e-12, 1e-12)


def test_upstream_gradient_and_retain_graph():
    """The saved gradients are scaled by the upstream gradient, in place only when the
    graph is freed: a second backward through a retained graph gives the same numbers."""
    x, w, b, y, _ = _inputs()
    ref = _grads(3.0 * reference(x, w, b, y), (x, w, b), "mean")
    loss = 3.0 * linear_cross_entropy(x, w, y, b, chunk_size=CHUNK)
    first = torch.autograd.grad(loss, (x, w, b), retain_graph=True)
    second = torch.autograd.grad(loss, (x, w, b))
    for a, c, r in zip(first, second, ref):
        _assert_close(a, r, 1e-10, 1e-12)
        _assert_close(c, r, 1e-10, 1e-12)


def test_frozen_weight_and_inference():
    x, w, b, y, _ = _inputs()
    w = w.detach()
    loss = linear_cross_entropy(x, w, y, b, chunk_size=CHUNK)
    gx, gb = torch.autograd.grad(loss, (x, b))
    rx, rb = torch.autograd.grad(reference(x, w, b, y), (x, b))
    _assert_close(gx, rx, 1e-10, 1e-12)
    _assert_close(gb, rb, 1e-10, 1e-12)
    with torch.no_grad():
        value = linear_cross_entropy(x, w, y, b)
    assert value.grad_fn is None
    _assert_close(value, reference(x, w, b, y), 1e-12, 1e-12)


@pytest.mark.parametrize("mode", ["fused", "recompute"])
def test_second_order_hessian_vector_product(mode):
    """create_graph=True: the backward differentiates the formula, so HVPs are exact."""
    x, w, b, y, cw = _inputs(bias=True)
    kw = _kw(OPTIONS["everything"], cw)
    vx, vw = torch.randn_like(x), torch.randn_like(w)

    def hvp(loss):
        gx, gw = torch.autograd.grad(loss, (x, w), create_graph=True)
        return torch.autograd.grad((gx * vx).sum() + (gw * vw).sum(), (x, w, b))

    got = hvp(linear_cross_entropy(x, w, y, b, chunk_size=CHUNK, recompute=mode == "recompute", **kw))
    want = hvp(reference(x, w, b, y, **kw))
    for g, r in zip(got, want):
        _assert_close(g, r, 1e-9, 1e-11)


def test_torch_func_grad_and_vmap():
    x, w, b, y, _ = _inputs()
    x0, w0 = x.detach(), w.detach()
    got = torch.func.grad(lambda x, w: linear_cross_entropy(x, w, y, chunk_size=CHUNK), argnums=(0, 1))(x0, w0)
    want = torch.func.grad(lambda x, w: reference(x, w, None, y), argnums=(0, 1))(x0, w0)
    for g, r in zip(got, want):
        _assert_close(g, r, 1e-10, 1e-12)
    with pytest.raises(probloss.ArgumentError, match="torch.func.vmap"):
        torch.func.vmap(lambda x: linear_cross_entropy(x, w0, y[:5]))(x0[:10].reshape(2, 5, D))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("softcap", [None, 2.0], ids=["no-cap", "softcap"])
def test_log_probs_and_entropy(bias, softcap):
    x, w, b, _, _ = _inputs(bias=bias, lead=(4, 9))
    y = torch.randint(0, V, (4, 9), generator=torch.Generator().manual_seed(3))
    out = linear_log_probs_and_entropy(x, w, y, b, softcap=softcap, chunk_size=5)
    assert isinstance(out, LogProbsEntropy) and out.log_probs.shape == out.entropy.shape == (4, 9)
    z = F.linear(x, w, b)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    logp = torch.log_softmax(z, -1)
    want_lp = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    want_h = -(logp.exp() * logp).sum(-1)
    _assert_close(out.log_probs, want_lp, 1e-12, 1e-12)
    _assert_close(out.entropy, want_h, 1e-12, 1e-12)
    cl, ch = torch.randn(4, 9, dtype=torch.float64), torch.randn(4, 9, dtype=torch.float64)
    tensors = [t for t in (x, w, b) if t is not None]
    got = torch.autograd.grad((out.log_probs * cl).sum() + (out.entropy * ch).sum(), tensors)
    want = torch.autograd.grad((want_lp * cl).sum() + (want_h * ch).sum(), tensors, retain_graph=True)
    for g, r in zip(got, want):
        _assert_close(g, r, 1e-10, 1e-12)
    # one output alone (the other gets no gradient)
    lp_only = linear_log_probs_and_entropy(x, w, y, b, softcap=softcap, chunk_size=5).log_probs
    for g, r in zip(torch.autograd.grad(lp_only.sum(), tensors), torch.autograd.grad(want_lp.sum(), tensors)):
        _assert_close(g, r, 1e-10, 1e-12)


def test_log_probs_and_entropy_float32_and_second_order():
    x, w, b, _, _ = _inputs(torch.float32)
    y = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(1))
    out = linear_log_probs_and_entropy(x, w, y, b, chunk_size=CHUNK)
    logp = torch.log_softmax(F.linear(x.double(), w.double(), b.double()), -1)
    _assert_close(out.log_probs, logp.gather(1, y[:, None])[:, 0], 1e-5, 1e-5)
    _assert_close(out.entropy, -(logp.exp() * logp).sum(-1), 1e-5, 1e-5)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()

    def hvp(f):
        (gx,) = torch.autograd.grad(f(x64, w64), (x64,), create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (w64,))[0]

    def formula(x, w):
        lp = torch.log_softmax(x @ w.T, -1)
        return -(lp.exp() * lp).sum()

    _assert_close(hvp(lambda x, w: linear_log_probs_and_entropy(x, w, y, chunk_size=CHUNK).entropy.sum()),
                  hvp(formula), 1e-9, 1e-11)


def test_module_matches_function():
    x, w, b, y, cw = _inputs()
    m = LinearCrossEntropy(label_smoothing=0.1, z_loss=1e-3, softcap=5.0, class_weight=cw, chunk_size=CHUNK)
    assert "softcap=5.0" in repr(m)
    want = linear_cross_entropy(x, w, y, b, label_smoothing=0.1, z_loss=1e-3, softcap=5.0, class_weight=cw)
    _assert_close(m(x, w, y, b), want, 1e-13, 1e-13)
    assert m.state_dict()["class_weight"].shape == (V,)


def test_auto_chunk_rows_follows_the_budget():
    assert _linear.auto_chunk_rows(4096, 32000, torch.float32, "cpu") == 1024
    assert _linear.auto_chunk_rows(8192, 128256, torch.bfloat16, "cpu") == 128
    assert _linear.auto_chunk_rows(8192, 128256, torch.bfloat16, "cuda") == 640
    assert _linear.auto_chunk_rows(10, 32000, torch.float32, "cpu") == 10
    assert _linear.auto_chunk_rows(0, 32000, torch.float32, "cpu") == 1
    assert _linear.auto_chunk_rows(4096, 10**9, torch.float32, "cpu") == 1


# ------------------------------------------------------------------------------- errors


def _bad(**over):
    x, w, b, y, cw = _inputs(torch.float32)
    args = {"hidden": x, "weight": w, "target": y, "bias": b}
    args.update(over)
    return args


BAD = {
    "hidden-not-tensor": (lambda: _bad(hidden=[[1.0]]), probloss.ProblossTypeError, "`hidden` must be a torch tensor"),
    "hidden-int": (lambda: _bad(hidden=torch.ones(N, D, dtype=torch.long)), probloss.ProblossTypeError, "floating point"),
    "weight-wrong-D": (lambda: _bad(weight=torch.ones(V, D + 1)), probloss.ShapeError, r"shape \(V, D\)"),
    "weight-other-dtype": (lambda: _bad(weight=torch.ones(V, D, dtype=torch.float64)), probloss.ProblossTypeError,
                           r"weight.to\(torch.float32\)"),
    "bias-wrong-shape": (lambda: _bad(bias=torch.ones(V + 1)), probloss.ShapeError, r"`bias` must have shape \(101,\)"),
    "target-wrong-shape": (lambda: _bad(target=torch.zeros(N + 1, dtype=torch.long)), probloss.ShapeError,
                           "`target` must have `hidden`'s shape"),
    "target-float": (lambda: _bad(target=torch.zeros(N)), probloss.ProblossTypeError, r"\.long\(\)"),
    "target-out-of-range": (lambda: _bad(target=torch.full((N,), V)), probloss.LabelValueError,
                            r"class index 101 at flat position 0.*\[0, 100\] or equal `ignore_index`=-100"),
    "target-negative": (lambda: _bad(target=torch.full((N,), -1)), probloss.LabelValueError, "class index -1"),
    "reduction": (lambda: _bad(reduction="avg"), probloss.ArgumentError, "one of 'mean', 'sum', 'none'"),
    "label_smoothing": (lambda: _bad(label_smoothing=1.5), probloss.ArgumentError, r"`label_smoothing` must be a number in \[0, 1\]"),
    "z_loss": (lambda: _bad(z_loss=-1.0), probloss.ArgumentError, "`z_loss` must be a finite number >= 0"),
    "softcap": (lambda: _bad(softcap=0.0), probloss.ArgumentError, "`softcap` must be None or a finite number > 0"),
    "chunk_size": (lambda: _bad(chunk_size=0), probloss.ArgumentError, "`chunk_size` must be None"),
    "ignore_index": (lambda: _bad(ignore_index=1.5), probloss.ArgumentError, "`ignore_index` must be an integer"),
    "recompute": (lambda: _bad(recompute="yes"), probloss.ArgumentError, "`recompute` must be True or False"),
    "class_weight-shape": (lambda: _bad(class_weight=torch.ones(3)), probloss.ShapeError, r"`class_weight` must be .* shape \(101,\)"),
    "empty-vocabulary": (lambda: _bad(weight=torch.ones(0, D), bias=None), probloss.ShapeError, "at least one class"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_an_error_that_names_the_argument(case):
    make, cls, pattern = BAD[case]
    args = make()
    with pytest.raises(cls, match=pattern) as info:
        linear_cross_entropy(args.pop("hidden"), args.pop("weight"), args.pop("target"), args.pop("bias"), **args)
    assert str(info.value).startswith("linear_cross_entropy: ")


def test_label_check_names_the_function_and_can_be_switched_off():
    x, w, b, _, _ = _inputs(torch.float32)
    with pytest.raises(probloss.LabelValueError, match="linear_log_probs_and_entropy: .* must be in \\[0, 100\\]\\.$"):
        linear_log_probs_and_entropy(x, w, torch.full((N,), -100), b)
    with probloss.set_value_checks(False), pytest.raises((IndexError, RuntimeError)):
        linear_cross_entropy(x, w, torch.full((N,), V), b)  # torch's own gather error, no check first


def test_module_validates_its_options():
    with pytest.raises(probloss.ArgumentError, match="LinearCrossEntropy: `reduction`"):
        LinearCrossEntropy(reduction="batchmean")


# ------------------------------------------------------------------------------- memory

_MEMORY_CHILD = textwrap.dedent("""
    import json, sys, torch
    import torch.nn.functional as F
    from probloss.torch import linear_cross_entropy
    torch.set_num_threads(1)
    D, V = 16, 32000

    def kib(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    def inputs(n):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, D, generator=g, requires_grad=True)
        w = torch.randn(V, D, generator=g, requires_grad=True)
        return x, w, torch.randint(0, V, (n,), generator=g)

    def peak(step):
        step(*inputs(64))  # warm-up on a few rows: kernels and allocator
        x, w, y = inputs(4096)
        open("/proc/self/clear_refs", "w").write("5")
        base = kib("VmRSS")
        step(x, w, y)
        return kib("VmHWM") - base

    out = {
        "ours": peak(lambda x, w, y: linear_cross_entropy(x, w, y).backward()),
        "eager": peak(lambda x, w, y: F.cross_entropy(F.linear(x, w), y).backward()),
    }
    print(json.dumps(out))
""")


def test_forward_backward_never_allocates_the_logits():
    """Peak RSS growth of one forward+backward (N=4096, V=32000, float32) in a fresh process:
    a fraction of one N x V float32 buffer (500 MiB), while the eager path needs several."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pytest.skip("the peak RSS cannot be reset here (/proc/self/clear_refs)")
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD], capture_output=True, text=True, timeout=120, check=True)
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    nv = 4096 * 32000 * 4
    grads = (32000 + 4096) * 16 * 4  # dW and dX themselves (kept in .grad)
    assert peak["eager"] > nv  # the measurement sees an N x V buffer when there is one
    # the automatic chunk: 1,024 rows of float32 logits (125 MiB, a quarter of N x V) and
    # nothing else of that size
    assert peak["ours"] - grads < 0.35 * nv


# --------------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_cuda_matches_the_reference(dtype):
    x, w, b, y, cw = _inputs(dtype)
    xc, wc, bc = (t.detach().cuda().requires_grad_() for t in (x, w, b))
    kw = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 4.0}
    got = linear_cross_entropy(xc, wc, y.cuda(), bc, class_weight=cw.cuda().to(torch.float32), chunk_size=CHUNK, **kw)
    want = reference(x, w, b, y, class_weight=cw, **kw)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    _assert_close(got.cpu(), want, tol, tol)
    for g, r in zip(_grads(got, (xc, wc, bc), "mean"), _grads(want, (x, w, b), "mean")):
        scale = r.abs().max()
        _assert_close(g.cpu() / scale, r / scale, tol, tol)
