"""probloss.torch.linear_cross_entropy and linear_log_probs_and_entropy on their Triton
path (the chunk kernels ``linear_ce_chunk`` and ``linear_lpe_chunk``) against float64
formulas written from the math in this file.

Without a GPU the kernel runs on CPU tensors in Triton's interpreter (``tests/conftest.py``
sets ``TRITON_INTERPRET=1``; ``_dispatch.triton_on_cpu()`` sends CPU tensors to the CUDA
path); with CUDA the ``cuda`` parameters (marked ``gpu``) run it compiled.  Every case
checks that the kernel ran.  Sizes are small and odd (N=37 rows, chunks of 16, V=131
classes), and the interpreter's tiles are shrunk to 4 rows x 32 classes so that a row
takes several blocks of classes (the online max is rescaled between them) and the last
chunk and the last block are partial.
"""

from __future__ import annotations

import contextlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")  # (conftest.py sets TRITON_INTERPRET=1 on a machine without a GPU)

from probloss import _dispatch  # noqa: E402
from probloss._backends import triton as tb  # noqa: E402
from probloss._backends import triton_kernels as tk  # noqa: E402
from probloss.torch import linear_cross_entropy  # noqa: E402

DEVICES = [
    pytest.param("cpu", id="interpreter", marks=pytest.mark.skipif(not tb.INTERPRETED, reason="Triton kernels compiled for a GPU")),
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]),
]
N, D, V, CHUNK = 37, 24, 131, 16
IGNORE = -100


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny inputs: torch's thread pool only adds latency on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the chunk kernel's launches, and shrinks the interpreter's tiles."""
    calls = []
    launch = tb.linear_ce_chunk

    def spy(*args, **kwargs):
        calls.append(args[0].shape[0])
        return launch(*args, **kwargs)

    monkeypatch.setattr(tb, "linear_ce_chunk", spy)
    if tb.INTERPRETED:
        monkeypatch.setattr(tk, "tile", lambda k, rows, interpreted: (4, 32, 4))
    return calls


def _kernels(device):
    return _dispatch.triton_on_cpu() if device == "cpu" else contextlib.nullcontext()


def _inputs(device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    w = torch.randn(V, D, generator=g, dtype=torch.float64) * 0.6
    b = torch.randn(V, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, (N,), generator=g)
    y[::6] = IGNORE
    cw = torch.rand(V, generator=g, dtype=torch.float64) + 0.25
    up = torch.rand(N, generator=g, dtype=torch.float64) + 0.5  # upstream gradient of "none"
    leaves = [t.to(device=device, dtype=dtype).requires_grad_() for t in (x, w, b)]
    return (*leaves, y.to(device), cw.to(device), up.to(device))


def reference(x, w, b, y, *, label_smoothing=0.0, z_loss=0.0, softcap=None, reduction="mean", class_weight=None):
    """The loss in float64, from ``log_softmax`` of the logits (written from the math).

    ``l_n = (1 - e) w_y (-log p_y) + (e / V) sum_c w_c (-log p_c) + z_loss lse^2`` over the
    tokens whose target is not ``IGNORE``; "mean" divides the cross-entropy by ``sum_n w_{y_n}``
    and the z-loss by the number of those tokens.
    """
    z = x.double() @ w.double().t() + b.double()
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    logp = torch.log_softmax(z, 1)
    lse = torch.logsumexp(z, 1)
    valid = y != IGNORE
    ys = torch.where(valid, y, 0)
    cw = torch.ones(z.shape[1], dtype=torch.float64, device=z.device) if class_weight is None else class_weight.double()
    wy = cw[ys] * valid
    nll = -logp.gather(1, ys[:, None])[:, 0]
    smooth = -(logp * cw).sum(1)
    e = label_smoothing
    ce = torch.where(valid, (1 - e) * cw[ys] * nll + (e / z.shape[1]) * smooth, 0.0)
    zl = torch.where(valid, z_loss * lse**2, 0.0)
    if reduction == "none":
        return ce + zl
    if reduction == "sum":
        return (ce + zl).sum()
    return ce.sum() / wy.sum() + zl.sum() / valid.sum()


OPTIONS = {
    "plain": {},
    "smoothing": {"label_smoothing": 0.15},
    "weighted_smoothing_zloss": {"label_smoothing": 0.1, "z_loss": 1e-2, "class_weight": True},
    "softcap": {"softcap": 2.5},
    "all": {"label_smoothing": 0.2, "z_loss": 2e-2, "softcap": 3.0, "class_weight": True},
}


def _check(device, dtype, options, reduction, recompute, calls, bias=True):
    x, w, b, y, cw, up = _inputs(device, dtype)
    kw = dict(options)
    if kw.pop("class_weight", False):
        kw["class_weight"] = cw.to(dtype)
    b_arg = b if bias else None
    with _kernels(device):
        got = linear_cross_entropy(x, w, y, b_arg, chunk_size=CHUNK, reduction=reduction, recompute=recompute, **kw)
        total = (got * up.to(got.dtype)).sum() if reduction == "none" else got
        leaves = (x, w, b) if bias else (x, w)
        grads = torch.autograd.grad(total, leaves)
    assert calls, "the Triton chunk kernel did not run"
    assert max(calls) <= CHUNK and sum(calls) >= (y != IGNORE).sum().item()

    ref_kw = dict(kw)
    if "class_weight" in ref_kw:
        ref_kw["class_weight"] = ref_kw["class_weight"].double()
    leaves64 = [t.detach().double().requires_grad_() for t in (x, w, b)]
    b64 = leaves64[2] if bias else torch.zeros(V, dtype=torch.float64, device=x.device)
    want = reference(leaves64[0], leaves64[1], b64, y, reduction=reduction, **ref_kw)
    want_total = (want * up).sum() if reduction == "none" else want
    want_grads = torch.autograd.grad(want_total, leaves64[: len(grads)])

    tol = {torch.bfloat16: 2e-2, torch.float16: 3e-3}.get(dtype, 2e-5)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want.detach(), rtol=tol, atol=tol)
    for name, gg, gw in zip("xwb", grads, want_grads):
        assert gg.dtype == dtype, name
        scale = gw.abs().max().item()
        torch.testing.assert_close(gg.double(), gw, rtol=tol, atol=tol * scale, msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("recompute", [False, True], ids=["grad_in_forward", "recompute"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_value_and_gradients(device, dtype, recompute, options, kernel_calls):
    _check(device, dtype, options, "mean", recompute, kernel_calls)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("recompute", [False, True], ids=["grad_in_forward", "recompute"])
def test_float16(device, recompute, kernel_calls):
    _check(device, torch.float16, OPTIONS["all"], "mean", recompute, kernel_calls)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("options", [OPTIONS["plain"], OPTIONS["all"]], ids=["plain", "all"])
def test_reductions(device, reduction, options, kernel_calls):
    _check(device, torch.float32, options, reduction, False, kernel_calls)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("recompute", [False, True], ids=["grad_in_forward", "recompute"])
def test_without_bias(device, recompute, kernel_calls):
    _check(device, torch.float32, OPTIONS["all"], "mean", recompute, kernel_calls, bias=False)


@pytest.mark.parametrize("device", DEVICES)
def test_forward_without_gradients(device, kernel_calls):
    """No gradient wanted: the kernel only writes the row statistics (bfloat16 products are
    read in place, no float32 logits)."""
    x, w, b, y, cw, _ = _inputs(device, torch.bfloat16)
    opts = {"label_smoothing": 0.1, "z_loss": 1e-2, "softcap": 3.0}
    with torch.no_grad(), _kernels(device):
        got = linear_cross_entropy(x, w, y, b, chunk_size=CHUNK, class_weight=cw, **opts)
    assert kernel_calls
    want = reference(x.detach(), w.detach(), b.detach(), y, class_weight=cw, **opts)
    torch.testing.assert_close(got.double(), want, rtol=2e-2, atol=2e-2)


def test_float64_and_plain_cpu_take_torch_operations(kernel_calls):
    """float64 (the kernel computes in float32) and CPU tensors outside ``triton_on_cpu()``
    keep the chunked torch operations, with the same results."""
    for dtype, ctx in ((torch.float64, _kernels("cpu") if tb.INTERPRETED else contextlib.nullcontext()),
                       (torch.float32, contextlib.nullcontext())):
        x, w, b, y, cw, _ = _inputs("cpu", dtype)
        with ctx:
            got = linear_cross_entropy(x, w, y, b, chunk_size=CHUNK, label_smoothing=0.1)
        want = reference(x.detach(), w.detach(), b.detach(), y, label_smoothing=0.1)
        torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=2e-5)
    assert not kernel_calls


# ---------------------------------------------------- linear_log_probs_and_entropy


@pytest.fixture
def lpe_kernel_calls(monkeypatch):
    calls = []
    launch = tb.linear_lpe_chunk

    def spy(*args, **kwargs):
        calls.append("backward" if args[1] is not None else "forward")
        return launch(*args, **kwargs)

    monkeypatch.setattr(tb, "linear_lpe_chunk", spy)
    if tb.INTERPRETED:
        monkeypatch.setattr(tk, "tile", lambda k, rows, interpreted: (4, 32, 4))
    return calls


def lpe_reference(x, w, b, y, softcap=None):
    """``log p_y`` and ``H = -sum_c p_c log p_c`` of ``softmax(cap tanh((x W^T + b) / cap))`` in float64."""
    z = x.double() @ w.double().t()
    if b is not None:
        z = z + b.double()
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    logp = torch.log_softmax(z, 1)
    return logp.gather(1, y[:, None])[:, 0], -(logp.exp() * logp).sum(1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("uses", ["both", "log_probs", "entropy"])
@pytest.mark.parametrize(("dtype", "softcap", "bias"), [(torch.float32, None, True), (torch.float32, 2.5, False),
                                                        (torch.bfloat16, 3.0, True)], ids=["float32", "softcap_no_bias", "bfloat16_softcap"])
def test_log_probs_and_entropy(device, uses, dtype, softcap, bias, lpe_kernel_calls):
    from probloss.torch import linear_log_probs_and_entropy

    x, w, b, y, _, up = _inputs(device, dtype)
    y = torch.where(y == IGNORE, 0, y)  # every target is a class here
    up2 = up.flip(0) - 0.75  # upstream gradients of both signs for the entropy
    b_arg = b if bias else None
    leaves = (x, w, b) if bias else (x, w)
    with _kernels(device):
        out = linear_log_probs_and_entropy(x, w, y, b_arg, softcap=softcap, chunk_size=CHUNK)
        total = {"both": (out.log_probs * up).sum() + (out.entropy * up2).sum(),
                 "log_probs": (out.log_probs * up).sum(), "entropy": (out.entropy * up2).sum()}[uses]
        grads = torch.autograd.grad(total, leaves)
    assert lpe_kernel_calls.count("forward") == 3 and lpe_kernel_calls.count("backward") == 3

    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    lp, ent = lpe_reference(leaves64[0], leaves64[1], leaves64[2] if bias else None, y, softcap)
    want_total = {"both": (lp * up).sum() + (ent * up2).sum(), "log_probs": (lp * up).sum(), "entropy": (ent * up2).sum()}[uses]
    want_grads = torch.autograd.grad(want_total, leaves64)

    tol = 2e-2 if dtype == torch.bfloat16 else 2e-5
    torch.testing.assert_close(out.log_probs.double(), lp.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(out.entropy.double(), ent.detach(), rtol=tol, atol=tol)
    for name, gg, gw in zip("xwb", grads, want_grads):
        scale = gw.abs().max().item()
        torch.testing.assert_close(gg.double(), gw, rtol=tol, atol=tol * scale, msg=lambda m, n=name: f"d{n}: {m}")
