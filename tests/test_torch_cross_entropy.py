"""``probloss.torch.cross_entropy`` against ``torch.nn.functional.cross_entropy``, run live.

Every option (class-index and probability targets, class weights, ignore_index, label
smoothing, reductions, N-d inputs, half precision, in-place backward, chunk sizes) is
checked in value and in gradient, with a random upstream gradient so that per-position
gradients are exercised too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import probloss as pl  # noqa: E402
from probloss.torch import CrossEntropyLoss, LossModule, cross_entropy  # noqa: E402

SHAPES = [(5,), (7, 5), (6, 40), (4, 5, 3), (2, 5, 2, 3)]  # (6, 40): the fused-kernel path (K >= 32)
OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"weight": True},
    {"label_smoothing": 0.2},
    {"weight": True, "label_smoothing": 0.3},
    {"weight": True, "ignore_index": 1, "label_smoothing": 0.1, "reduction": "none"},
    {"weight": True, "ignore_index": 0},
    {"ignore_index": 2, "label_smoothing": 0.25, "reduction": "sum"},
]
TOL = {torch.float64: (1e-10, 1e-12), torch.float32: (2e-5, 2e-6), torch.bfloat16: (3e-2, 3e-2), torch.float16: (5e-3, 5e-3)}


def _index_target(shape, gen, ignore_index=None):
    c = shape[1] if len(shape) > 1 else shape[0]
    tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    t = torch.randint(0, c, tshape, generator=gen)
    if ignore_index is not None and t.ndim:
        t.view(-1)[::3] = ignore_index
    return t


def _prob_target(shape, gen, dtype):
    axis = 1 if len(shape) > 1 else 0
    return torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64) * 2, dim=axis).to(dtype)


def _kwargs(opts, c, dtype):
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = torch.linspace(0.3, 1.7, c, dtype=torch.float64).to(dtype)
    return kw


def _compare(x, target, kw, dtype, *, inplace=False, chunk_size=None):
    """Value and gradient of probloss vs torch, with a random upstream gradient."""
    gen = torch.Generator().manual_seed(7)
    xr = x.detach().clone().requires_grad_()
    ref = F.cross_entropy(xr, target, **kw)
    go = torch.randn(ref.shape, generator=gen, dtype=torch.float64).to(ref.dtype)
    (g_ref,) = torch.autograd.grad(ref, xr, go)
    xo = x.detach().clone().requires_grad_()
    out = cross_entropy(xo, target, **kw, inplace_backward=inplace, chunk_size=chunk_size)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    (g_out,) = torch.autograd.grad(out, xo, go)
    assert g_out.dtype == g_ref.dtype and g_out.shape == g_ref.shape
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(out.detach().double().numpy(), ref.detach().double().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(g_out.double().numpy(), g_ref.double().numpy(), rtol=rtol, atol=atol)
    return xo, g_out


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("opts", OPTIONS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_class_index_targets_match_torch(shape, opts, dtype):
    gen = torch.Generator().manual_seed(0)
    c = shape[1] if len(shape) > 1 else shape[0]
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).to(dtype)
    kw = _kwargs(opts, c, dtype)
    target = _index_target(shape, gen, kw.get("ignore_index"))
    _compare(x, target, kw, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("opts", [o for o in OPTIONS if "ignore_index" not in o], ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_probability_targets_match_torch(shape, opts, dtype):
    gen = torch.Generator().manual_seed(1)
    c = shape[1] if len(shape) > 1 else shape[0]
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).to(dtype)
    kw = _kwargs(opts, c, dtype)
    _compare(x, _prob_target(shape, gen, dtype), kw, dtype)


def test_unnormalised_probability_targets_and_their_gradient():
    # torch's gradient is sum(q) softmax - q, and targets get a gradient too.
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    t = torch.rand(6, 4, generator=gen, dtype=torch.float64) * 2
    w = torch.rand(4, generator=gen, dtype=torch.float64)
    for kw in ({}, {"weight": w, "label_smoothing": 0.15}):
        xr, tr = x.clone().requires_grad_(), t.clone().requires_grad_()
        xo, to = x.clone().requires_grad_(), t.clone().requires_grad_()
        ref = F.cross_entropy(xr, tr, reduction="none", **kw)
        out = cross_entropy(xo, to, reduction="none", **kw)
        go = torch.randn(6, generator=gen, dtype=torch.float64)
        g_ref = torch.autograd.grad(ref, (xr, tr), go)
        g_out = torch.autograd.grad(out, (xo, to), go)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for a, b in zip(g_out, g_ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("prob", [False, True])
def test_half_precision(dtype, prob):
    gen = torch.Generator().manual_seed(3)
    shape = (16, 11)
    x = torch.randn(shape, generator=gen).to(dtype)
    target = _prob_target(shape, gen, dtype) if prob else _index_target(shape, gen)
    kw = {"label_smoothing": 0.1} if prob else {"weight": torch.rand(11, generator=gen).to(dtype), "ignore_index": 3}
    if not prob:
        target[::4] = 3
    _compare(x, target, kw, dtype)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 100])
@pytest.mark.parametrize("prob", [False, True])
def test_chunk_sizes_agree(chunk_size, prob):
    gen = torch.Generator().manual_seed(4)
    shape = (10, 6, 3)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    target = _prob_target(shape, gen, torch.float64) if prob else _index_target(shape, gen, -100)
    _compare(x, target, {"label_smoothing": 0.1, "reduction": "none"}, torch.float64, chunk_size=chunk_size)


@pytest.mark.parametrize("prob", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inplace_backward_overwrites_logits_with_the_gradient(prob, dtype):
    gen = torch.Generator().manual_seed(5)
    shape = (9, 7)
    base = torch.randn(shape, generator=gen).to(dtype)
    target = _prob_target(shape, gen, dtype) if prob else _index_target(shape, gen)
    # A non-leaf logits tensor, as the output of a layer: the gradient reaches the leaf.
    leaf = base.clone().requires_grad_()
    logits = leaf * 1.0
    out = cross_entropy(logits, target, inplace_backward=True, label_smoothing=0.1)
    ref_leaf = base.clone().requires_grad_()
    ref = F.cross_entropy(ref_leaf * 1.0, target, label_smoothing=0.1)
    out.backward()
    ref.backward()
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, rtol=rtol, atol=atol)
    # ... and the logits buffer now holds that gradient.
    torch.testing.assert_close(logits.detach(), ref_leaf.grad, rtol=rtol, atol=atol)


def test_inplace_backward_on_a_leaf_shares_memory_and_values():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(5, 4, generator=gen, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    expected = torch.autograd.grad(F.cross_entropy(x, y), x)[0]
    cross_entropy(x, y, inplace_backward=True).backward()
    torch.testing.assert_close(x.grad, expected)
    assert x.grad.data_ptr() == x.data_ptr()


def test_inplace_backward_is_refused_when_another_node_saved_the_logits():
    x = torch.randn(4, 3, requires_grad=True)
    logits = torch.exp(x)  # exp saves its output for backward
    loss = cross_entropy(logits, torch.tensor([0, 1, 2, 0]), inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_all_ignored_and_empty_batches_follow_torch():
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.full((3,), -100)
    assert math.isnan(float(cross_entropy(x, y).detach())) and math.isnan(float(F.cross_entropy(x, y).detach()))
    assert float(cross_entropy(x, y, reduction="sum").detach()) == 0.0
    cross_entropy(x, y, reduction="sum").backward()
    assert torch.count_nonzero(x.grad) == 0
    empty = torch.randn(0, 4)
    assert math.isnan(float(cross_entropy(empty, torch.zeros(0, dtype=torch.long))))
    assert cross_entropy(empty, torch.zeros(0, dtype=torch.long), reduction="none").shape == (0,)


def test_int32_and_uint8_targets_are_accepted():
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    ref = F.cross_entropy(x, y)
    for dt in (torch.int32, torch.uint8):
        torch.testing.assert_close(cross_entropy(x, y.to(dt)), ref)


def test_errors():
    x = torch.randn(4, 3)
    with pytest.raises(pl.LabelValueError, match="class index 3"):
        cross_entropy(x, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(pl.LabelValueError, match="class index -1"):
        cross_entropy(x, torch.tensor([0, 1, -1, 0]))
    with pytest.raises(pl.ArgumentError, match="reduction"):
        cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="batchmean")
    with pytest.raises(pl.ArgumentError, match="label_smoothing"):
        cross_entropy(x, torch.tensor([0, 1, 2, 0]), label_smoothing=1.5)
    with pytest.raises(pl.ArgumentError, match="ignore_index"):
        cross_entropy(x, torch.rand(4, 3), ignore_index=0)
    with pytest.raises(pl.ProblossTypeError, match="integer"):
        cross_entropy(x, torch.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(pl.ShapeError, match="class indices need shape"):
        cross_entropy(x, torch.tensor([0, 1]))
    with pytest.raises(pl.ShapeError, match="weight"):
        cross_entropy(x, torch.tensor([0, 1, 2, 0]), weight=torch.ones(4))
    with pytest.raises(pl.ProblossTypeError, match="floating"):
        cross_entropy(torch.ones(4, 3, dtype=torch.long), torch.tensor([0, 1, 2, 0]))
    with pl.set_value_checks(False):  # unchecked: torch itself refuses the index
        with pytest.raises((IndexError, RuntimeError)):
            cross_entropy(x, torch.tensor([0, 1, 3, 0]))


def test_module_matches_nn_cross_entropy_loss():
    gen = torch.Generator().manual_seed(8)
    w = torch.rand(5, generator=gen)
    ours = CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.1)
    ref = torch.nn.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.1)
    x = torch.randn(6, 5, 2, generator=gen)
    y = torch.randint(0, 5, (6, 2), generator=gen)
    torch.testing.assert_close(ours(x, y), ref(x, y))
    assert "weight" in dict(ours.named_buffers())
    assert "inplace_backward=False" in repr(ours)


def test_loss_module_wraps_keras_style_losses():
    y_true = torch.tensor([1, 2])
    y_pred = torch.tensor([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])
    for spec in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", pl.SparseCategoricalCrossentropy()):
        assert float(LossModule(spec)(y_true, y_pred)) == pytest.approx(1.17694, abs=1e-5)


def test_torch_compile_runs_with_a_graph_break():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (8,), generator=gen)
    torch._dynamo.reset()

    def step(logits):
        return cross_entropy(logits * 2.0, y, label_smoothing=0.1)

    compiled = torch.compile(step, backend="aot_eager")
    xc, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = compiled(xc)
    ref = F.cross_entropy(xr * 2.0, y, label_smoothing=0.1)
    out.backward()
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xc.grad, xr.grad)


def test_nothing_of_size_n_by_c_is_saved_for_backward():
    x = torch.randn(128, 600, requires_grad=True)  # above SMALL_ELEMENTS: the chunked kernel
    loss = cross_entropy(x, torch.randint(0, 600, (128,)), label_smoothing=0.1)
    node = loss.grad_fn
    seen = []
    stack = [node]
    while stack:  # walk the graph: every saved tensor is an input (shared storage) or O(N)
        n = stack.pop()
        if n is None:
            continue
        for name in dir(n):
            if name.startswith("_saved_") or name == "saved_tensors":
                val = getattr(n, name)
                for t in val if isinstance(val, tuple) else (val,):
                    if isinstance(t, torch.Tensor):
                        seen.append(t)
        stack.extend(f for f, _ in n.next_functions)
    big = [t for t in seen if t.numel() >= x.numel() and t.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()]
    assert not big, [tuple(t.shape) for t in big]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prob", [False, True])
def test_cuda_matches_torch(dtype, prob):
    gen = torch.Generator().manual_seed(10)
    shape = (64, 1000)
    x = torch.randn(shape, generator=gen).to(dtype).cuda()
    target = (_prob_target(shape, gen, dtype) if prob else _index_target(shape, gen, -100)).cuda()
    w = torch.rand(1000, generator=gen).to(dtype).cuda()
    for kw in ({}, {"weight": w, "label_smoothing": 0.1}):
        xr = x.clone().requires_grad_()
        xo = x.clone().requires_grad_()
        ref = F.cross_entropy(xr, target, **kw)
        out = cross_entropy(xo, target, **kw)
        ref.backward()
        out.backward()
        rtol, atol = TOL[dtype]
        torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
        torch.testing.assert_close(xo.grad, xr.grad, rtol=rtol, atol=atol)
        assert xo.grad.device == x.device


@pytest.mark.parametrize(
    ("call", "torch_error"),
    [
        (lambda x: cross_entropy(x, torch.tensor([0, 1, 3, 0])), IndexError),  # a class index out of range
        (lambda x: cross_entropy(x, torch.tensor([0, 1])), ValueError),  # batch sizes differ
        (lambda x: cross_entropy(x, torch.tensor([0, 1, 2, 0]), weight=torch.ones(4)), RuntimeError),
        (lambda x: cross_entropy(x, torch.tensor([0, 1, 2, 0]), label_smoothing=2.0), RuntimeError),
        (lambda x: cross_entropy(x, torch.rand(4, 3), ignore_index=1), RuntimeError),
        (lambda x: cross_entropy(x, torch.zeros(4, 3, dtype=torch.long)), RuntimeError),
        (lambda x: cross_entropy(torch.ones(4, 3, dtype=torch.long), torch.tensor([0, 1, 2, 0])), RuntimeError),
    ],
    ids=["index-out-of-range", "batch-size", "weight-shape", "smoothing-range", "ignore-index-with-probabilities",
         "integer-probabilities", "integer-logits"],
)
def test_errors_are_also_what_torch_raises(call, torch_error):
    # Code written against F.cross_entropy catches these; ours still say what to do.
    x = torch.randn(4, 3)
    with pytest.raises(pl.ProblossError) as info:
        call(x)
    assert isinstance(info.value, torch_error), type(info.value).__mro__
