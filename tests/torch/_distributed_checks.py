"""The checks of ``probloss.torch.distributed``, run by every rank of a gloo process group.

``python -m tests.torch._distributed_checks WORLD`` spawns ``WORLD`` processes
(``torch.multiprocessing``, gloo on the loopback, a free port); each runs every check of
:data:`CHECKS` against the single-process loss computed on the whole tensors (each rank
builds them from the same seed), and rank 0 prints ``RESULT {name: "ok" or the
failure}``.  ``tests/torch/test_distributed.py`` runs it in a subprocess with a timeout,
so a hang fails the world size's tests instead of the test run.

A check makes the same distributed calls on every rank whatever its comparisons find,
so that a failed comparison on one rank does not leave the others waiting.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import tempfile
import traceback

import torch
import torch.distributed as dist
import torch.nn.functional as F

V = 37  # divides by neither 2 nor 4
N = 24
D = 8
RTOL, ATOL = 2e-5, 2e-6
SPLITS = {2: [30, 7], 4: [5, 20, 1, 11]}  # uneven shards with explicit offsets


def _rank_world():
    return dist.get_rank(), dist.get_world_size()


def close(name, got, want, rtol=RTOL, atol=ATOL):
    got = got.full_tensor() if hasattr(got, "full_tensor") else got
    got, want = got.detach().double(), want.detach().double()
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}")
    if not torch.allclose(got, want, rtol=rtol, atol=atol):
        diff = (got - want).abs().max().item()
        raise AssertionError(f"{name}: max abs difference {diff:.3g}\n got {got.flatten()[:6].tolist()}\nwant {want.flatten()[:6].tolist()}")


def data(seed=0, n=N, v=V, ignore=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, v, generator=g) * 2.0
    y = torch.randint(0, v, (n,), generator=g)
    if ignore:
        y[::5] = -1
    p = torch.softmax(torch.randn(n, v, generator=g), dim=1)
    t = torch.softmax(torch.randn(n, v, generator=g) * 3, dim=1)
    w = torch.rand(n, generator=g) + 0.5
    return x, y, p, t, w


def shards(kind):
    """``(start, size)`` of this rank: the even split, or the uneven one of :data:`SPLITS`."""
    rank, world = _rank_world()
    if kind == "even":
        from probloss.torch.distributed import vocab_shard

        s = vocab_shard(V)
        return s.start, s.stop - s.start
    sizes = SPLITS[world]
    return sum(sizes[:rank]), sizes[rank]


def local(full, start, size, dim=-1):
    return full.narrow(dim, start, size).detach().clone().requires_grad_()


def backward(loss):
    """Backpropagate ``sum(loss * arange)`` (per-token losses get different upstream gradients)."""
    if hasattr(loss, "to_local"):
        loss = loss.to_local()
    (loss * torch.arange(loss.numel()).reshape(loss.shape) if loss.ndim else loss).sum().backward()


def one_hot(y, v=V):
    return F.one_hot(torch.where(y < 0, 0, y), v).float()


# ------------------------------------------------------------------------------ checks


def check_sparse_logits():
    import probloss
    from probloss.torch import distributed as pdist

    x, y, *_ = data()
    for kind in ("even", "uneven"):
        start, size = shards(kind)
        offsets = {} if kind == "even" else {"vocab_start": start, "vocab_size": V}
        for reduction in ("none", "sum", "mean", "sum_over_batch_size"):
            xl = local(x, start, size)
            got = pdist.sparse_categorical_crossentropy(y, xl, from_logits=True, ignore_class=-1, reduction=reduction, **offsets)
            got.sum().backward()
            xr = x.clone().requires_grad_()
            want = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=reduction)(y, xr)
            want.sum().backward()
            close(f"{kind} {reduction} value", got, want)
            close(f"{kind} {reduction} grad", xl.grad, xr.grad[:, start:start + size])


def check_label_smoothing_logits():
    """Sparse labels with smoothing = categorical with one-hot labels (Keras's smoothing)."""
    import probloss
    from probloss.torch import distributed as pdist

    x, y, *_ = data(1)
    start, size = shards("uneven")
    xl = local(x, start, size)
    got = pdist.sparse_categorical_crossentropy(y, xl, from_logits=True, ignore_class=-1, label_smoothing=0.1,
                                                reduction="mean", vocab_start=start, vocab_size=V)
    got.backward()
    xr = x.clone().requires_grad_()
    valid = y != -1
    per = probloss.categorical_crossentropy(one_hot(y), xr, from_logits=True, label_smoothing=0.1)
    want = (per * valid).sum() / valid.sum()
    want.backward()
    close("value", got, want)
    close("grad", xl.grad, xr.grad[:, start:start + size])


def check_sparse_probabilities():
    import probloss
    from probloss.torch import distributed as pdist

    _, y, p, *_ = data(2)
    start, size = shards("uneven")
    for a in (0.0, 0.2):
        pl_ = local(p, start, size)
        got = pdist.sparse_categorical_crossentropy(y, pl_, ignore_class=-1, label_smoothing=a, vocab_start=start, vocab_size=V)
        (got * torch.arange(N)).sum().backward()
        pr = p.clone().requires_grad_()
        want = probloss.categorical_crossentropy(one_hot(y), pr, label_smoothing=a) * (y != -1)
        (want * torch.arange(N)).sum().backward()
        close(f"smoothing {a} value", got, want)
        close(f"smoothing {a} grad", pl_.grad, pr.grad[:, start:start + size])


def check_categorical():
    import probloss
    from probloss.torch import distributed as pdist

    x, _, p, t, _ = data(3)
    start, size = shards("uneven")
    for from_logits, pred in ((True, x), (False, p)):
        for a in (0.0, 0.1):
            xl, tl = local(pred, start, size), local(t, start, size)
            got = pdist.categorical_crossentropy(tl, xl, from_logits=from_logits, label_smoothing=a, reduction="sum",
                                                 vocab_start=start, vocab_size=V)
            got.backward()
            xr, tr = pred.clone().requires_grad_(), t.clone().requires_grad_()
            want = probloss.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=a, reduction="sum")(tr, xr)
            want.backward()
            close(f"logits={from_logits} a={a} value", got, want)
            close(f"logits={from_logits} a={a} grad", xl.grad, xr.grad[:, start:start + size])
            close(f"logits={from_logits} a={a} label grad", tl.grad, tr.grad[:, start:start + size])
    # the whole labels are sliced by the function itself
    got = pdist.categorical_crossentropy(t, local(x, start, size), from_logits=True, vocab_start=start, vocab_size=V)
    close("whole labels", got, probloss.categorical_crossentropy(t, x, from_logits=True))


def check_focal():
    import probloss
    from probloss.torch import distributed as pdist

    x, _, p, t, _ = data(4)
    start, size = shards("uneven")
    alphas = torch.linspace(0.1, 0.9, V)
    for from_logits, pred in ((True, x), (False, p)):
        for alpha, gamma, a in ((0.25, 2.0, 0.0), (alphas.tolist(), 0.5, 0.1)):
            xl, tl = local(pred, start, size), local(t, start, size)
            got = pdist.categorical_focal_crossentropy(tl, xl, alpha=alpha, gamma=gamma, from_logits=from_logits,
                                                       label_smoothing=a, vocab_start=start, vocab_size=V)
            (got * torch.arange(N)).sum().backward()
            xr, tr = pred.clone().requires_grad_(), t.clone().requires_grad_()
            want = probloss.categorical_focal_crossentropy(tr, xr, alpha=alpha, gamma=gamma, from_logits=from_logits,
                                                           label_smoothing=a)
            (want * torch.arange(N)).sum().backward()
            name = f"logits={from_logits} gamma={gamma}"
            close(f"{name} value", got, want)
            close(f"{name} grad", xl.grad, xr.grad[:, start:start + size], rtol=1e-4, atol=1e-5)
            close(f"{name} label grad", tl.grad, tr.grad[:, start:start + size], rtol=1e-4, atol=1e-5)


def check_sample_weight_reductions():
    import probloss
    from probloss.torch import distributed as pdist

    x, y, _, _, w = data(5)
    start, size = shards("even")
    for reduction in ("sum", "sum_over_batch_size", "mean_with_sample_weight"):
        xl = local(x, start, size)
        got = pdist.sparse_categorical_crossentropy(y, xl, from_logits=True, ignore_class=-1, reduction=reduction, sample_weight=w)
        got.backward()
        xr = x.clone().requires_grad_()
        want = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=reduction)(y, xr, sample_weight=w)
        want.backward()
        close(f"{reduction} value", got, want)
        close(f"{reduction} grad", xl.grad, xr.grad[:, start:start + size])


def check_class_axis_1():
    import probloss
    from probloss.torch import distributed as pdist

    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, V, 5, generator=g)
    y = torch.randint(0, V, (3, 5), generator=g)
    start, size = shards("uneven")
    xl = local(x, start, size, dim=1)
    got = pdist.sparse_categorical_crossentropy(y, xl, from_logits=True, axis=1, reduction="mean", vocab_start=start, vocab_size=V)
    got.backward()
    xr = x.clone().requires_grad_()
    want = probloss.SparseCategoricalCrossentropy(from_logits=True, axis=1)(y, xr)
    want.backward()
    close("value", got, want)
    close("grad", xl.grad, xr.grad[:, start:start + size])


def check_all_ignored_and_absent_targets():
    """Every token ignored: 0 and no NaN; targets all on rank 0's classes: other ranks' grads still right."""
    import probloss
    from probloss.torch import distributed as pdist

    x, *_ = data(7)
    start, size = shards("uneven")
    y = torch.full((N,), -1)
    xl = local(x, start, size)
    got = pdist.sparse_categorical_crossentropy(y, xl, from_logits=True, ignore_class=-1, reduction="mean",
                                                vocab_start=start, vocab_size=V)
    got.backward()
    close("all ignored value", got, torch.tensor(0.0))
    close("all ignored grad", xl.grad, torch.zeros_like(xl))
    y = torch.arange(N) % SPLITS[dist.get_world_size()][0]  # every target in rank 0's slice
    xl = local(x, start, size)
    got = pdist.sparse_categorical_crossentropy(y, xl, from_logits=True, reduction="sum", vocab_start=start, vocab_size=V)
    got.backward()
    xr = x.clone().requires_grad_()
    want = probloss.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(y, xr)
    want.backward()
    close("absent targets value", got, want)
    close("absent targets grad", xl.grad, xr.grad[:, start:start + size])


def check_rank_without_classes():
    """The last rank holds no class (more ranks than a split gives classes to): still the same numbers."""
    import probloss
    from probloss.torch import distributed as pdist
    from probloss.torch import linear_cross_entropy as unsharded

    rank, world = _rank_world()
    sizes = SPLITS[world][:-1] + [0]
    sizes[0] += SPLITS[world][-1]
    start, size = sum(sizes[:rank]), sizes[rank]
    x, y, p, *_ = data(14)
    for from_logits, pred in ((True, x), (False, p)):
        xl = local(pred, start, size)
        got = pdist.sparse_categorical_crossentropy(y, xl, from_logits=from_logits, ignore_class=-1, label_smoothing=0.1,
                                                    reduction="sum", vocab_start=start, vocab_size=V)
        got.backward()
        xr = pred.clone().requires_grad_()
        want = (probloss.categorical_crossentropy(one_hot(y), xr, from_logits=from_logits, label_smoothing=0.1) * (y != -1)).sum()
        want.backward()
        close(f"from_logits={from_logits} value", got, want)
        close(f"from_logits={from_logits} grad", xl.grad, xr.grad[:, start:start + size])
    g = torch.Generator().manual_seed(15)
    h, w = torch.randn(N, D, generator=g), torch.randn(V, D, generator=g)
    yy = torch.where(y < 0, -100, y)
    hl, wl = h.clone().requires_grad_(), local(w, start, size, dim=0)
    got = pdist.linear_cross_entropy(hl, wl, yy, vocab_start=start, vocab_size=V, label_smoothing=0.1)
    got.backward()
    hr, wr = h.clone().requires_grad_(), w.clone().requires_grad_()
    want = unsharded(hr, wr, yy, label_smoothing=0.1)
    want.backward()
    close("linear value", got, want)
    close("linear hidden grad", hl.grad, hr.grad)
    close("linear weight grad", wl.grad, wr.grad[start:start + size])


def check_half_precision():
    """bfloat16 logits are reduced in float32: the float32 loss of the same (rounded) values."""
    import probloss
    from probloss.torch import distributed as pdist

    x, y, *_ = data(16)
    xb = x.to(torch.bfloat16)
    start, size = shards("uneven")
    xl = local(xb, start, size)
    got = pdist.sparse_categorical_crossentropy(y, xl, from_logits=True, ignore_class=-1, reduction="none",
                                                vocab_start=start, vocab_size=V)
    if got.dtype != torch.bfloat16:
        raise AssertionError(f"result dtype {got.dtype}")
    backward(got)
    xr = xb.float().requires_grad_()
    want = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction="none")(y, xr)
    backward(want)
    close("value", got, want.to(torch.bfloat16).float(), rtol=1e-2, atol=1e-2)
    close("grad", xl.grad.float(), xr.grad[:, start:start + size].to(torch.bfloat16).float(), rtol=1e-2, atol=1e-2)


def check_global_token_normalisation():
    """Data parallelism: each rank holds other tokens (some ranks none valid); the global
    mean over every rank equals the single-process mean of the whole batch."""
    import probloss
    from probloss.torch import distributed as pdist

    rank, world = _rank_world()
    x, y, *_ = data(8, n=4 * world)
    y[: 4 * (world // 2)] = -1  # the first half of the ranks: every token ignored
    mine = slice(4 * rank, 4 * rank + 4)
    micro = [y[mine][:2], y[mine][2:]]
    n = pdist.count_valid_tokens(micro, ignore_index=-1)
    if int(n) != int((y != -1).sum()):
        raise AssertionError(f"count {int(n)} != {int((y != -1).sum())}")
    xl = x[mine].clone().requires_grad_()
    total = torch.zeros(())
    for k in (slice(0, 2), slice(2, 4)):  # gradient accumulation over two micro-batches
        loss = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction="sum")(y[mine][k], xl[k]) / n
        loss.backward()
        total = total + loss.detach()
    dist.all_reduce(total)
    xr = x.clone().requires_grad_()
    want = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)(y, xr)
    want.backward()
    close("global mean", total, want)
    close("grad", xl.grad, xr.grad[mine])
    # the same through reduction="global_mean" of the vocabulary-parallel loss, over a group of one rank each
    groups = [dist.new_group([r]) for r in range(world)]
    xl2 = x[mine].clone().requires_grad_()
    loss = pdist.sparse_categorical_crossentropy(y[mine], xl2, from_logits=True, ignore_class=-1, reduction="global_mean",
                                                 num_tokens=n, group=groups[rank])
    loss.backward()
    close("global_mean grad", xl2.grad, xr.grad[mine])


def check_dtensor_and_loss_parallel():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    from torch.distributed.tensor.parallel import loss_parallel

    import probloss
    from probloss.torch import distributed as pdist

    _, world = _rank_world()
    mesh = init_device_mesh("cpu", (world,))
    x, y, _, t, _ = data(9)
    y = torch.where(y < 0, -100, y)
    yd = distribute_tensor(y, mesh, [Replicate()])
    # loss_parallel() takes no label smoothing (torch 2.13 raises in an in-place masked_fill_ on a Partial DTensor)
    for reduction in ("mean", "sum", "none"):
        dx = distribute_tensor(x.clone(), mesh, [Shard(1)]).requires_grad_()
        ours = pdist.sparse_categorical_crossentropy(yd, dx, from_logits=True, ignore_class=-100,
                                                     reduction="mean" if reduction == "mean" else reduction)
        backward(ours)
        dl = distribute_tensor(x.clone(), mesh, [Shard(1)]).requires_grad_()
        with loss_parallel():
            theirs = F.cross_entropy(dl, yd, ignore_index=-100, reduction=reduction)
            backward(theirs)
        close(f"{reduction} vs loss_parallel value", ours, theirs.full_tensor())
        close(f"{reduction} vs loss_parallel grad", dx.grad, dl.grad.full_tensor())
    xr = x.clone().requires_grad_()
    want = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100, reduction="none")(y, xr)
    (want * torch.arange(N)).sum().backward()
    close("vs probloss value", ours, want)
    close("vs probloss grad", dx.grad, xr.grad)
    # a dense DTensor label sharded like the logits, and the focal loss from probabilities
    dt = distribute_tensor(t.clone(), mesh, [Shard(1)])
    dp = distribute_tensor(torch.softmax(x, 1), mesh, [Shard(1)]).requires_grad_()
    got = pdist.categorical_focal_crossentropy(dt, dp, reduction="sum")
    got.backward()
    pr = torch.softmax(x, 1).requires_grad_()
    want = probloss.CategoricalFocalCrossentropy(reduction="sum")(t, pr)
    want.backward()
    close("focal DTensor value", got, want)
    close("focal DTensor grad", dp.grad, pr.grad, rtol=1e-4, atol=1e-5)


def check_linear():
    from probloss.torch import linear_cross_entropy as unsharded
    from probloss.torch.distributed import linear_cross_entropy

    g = torch.Generator().manual_seed(10)
    x = torch.randn(N, D, generator=g)
    w = torch.randn(V, D, generator=g) * 0.5
    b = torch.randn(V, generator=g)
    y = torch.randint(0, V, (N,), generator=g)
    y[::7] = -100
    cw = torch.rand(V, generator=g) + 0.5
    start, size = shards("uneven")
    cases = {
        "mean": {},
        "sum, bias, smoothing, z-loss": {"reduction": "sum", "label_smoothing": 0.1, "z_loss": 1e-2, "bias": True},
        "softcap, class weights": {"softcap": 3.0, "class_weight": cw, "bias": True},
        "recompute": {"recompute": True, "label_smoothing": 0.2},
        "none": {"reduction": "none", "z_loss": 1e-2, "bias": True},
        "chunked": {"chunk_size": 5, "label_smoothing": 0.1},
    }
    for name, opts in cases.items():
        opts = dict(opts)
        use_bias = opts.pop("bias", False)
        xl = x.clone().requires_grad_()
        wl = local(w, start, size, dim=0)
        bl = local(b, start, size, dim=0) if use_bias else None
        got = linear_cross_entropy(xl, wl, y, bl, vocab_start=start, vocab_size=V, **opts)
        (got * torch.arange(N) if got.ndim else got).sum().backward()
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        br = b.clone().requires_grad_() if use_bias else None
        ref_opts = {k: v for k, v in opts.items() if k != "chunk_size"}
        want = unsharded(xr, wr, y, br, **ref_opts)
        (want * torch.arange(N) if want.ndim else want).sum().backward()
        close(f"{name} value", got, want)
        close(f"{name} hidden grad", xl.grad, xr.grad)
        close(f"{name} weight grad", wl.grad, wr.grad[start:start + size])
        if use_bias:
            close(f"{name} bias grad", bl.grad, br.grad[start:start + size])
    # reduce_hidden_grad=False: each rank's part; their sum is the gradient
    xl = x.clone().requires_grad_()
    linear_cross_entropy(xl, local(w, start, size, dim=0), y, vocab_start=start, vocab_size=V, reduce_hidden_grad=False).backward()
    part = xl.grad.clone()
    dist.all_reduce(part)
    xr = x.clone().requires_grad_()
    unsharded(xr, w, y).backward()
    close("summed parts", part, xr.grad)
    # every token ignored
    xl = x.clone().requires_grad_()
    wl = local(w, start, size, dim=0)
    got = linear_cross_entropy(xl, wl, torch.full((N,), -100), vocab_start=start, vocab_size=V)
    got.backward()
    close("all ignored", got, torch.tensor(0.0))
    close("all ignored grad", wl.grad, torch.zeros_like(wl))


def check_linear_global_mean_and_dtensor():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from probloss.torch import linear_cross_entropy as unsharded
    from probloss.torch.distributed import linear_cross_entropy

    _, world = _rank_world()
    g = torch.Generator().manual_seed(11)
    x = torch.randn(N, D, generator=g)
    w = torch.randn(V, D, generator=g) * 0.5
    y = torch.randint(0, V, (N,), generator=g)
    y[:5] = -100
    mesh = init_device_mesh("cpu", (world,))
    dw = distribute_tensor(w.clone(), mesh, [Shard(0)]).requires_grad_()
    xl = x.clone().requires_grad_()
    got = linear_cross_entropy(xl, dw, y, reduction="global_mean", num_tokens=40)
    got.backward()
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    want = unsharded(xr, wr, y, reduction="sum") / 40
    want.backward()
    close("value", got, want)
    close("hidden grad", xl.grad, xr.grad)
    close("weight grad", dw.grad, wr.grad)


def check_errors_raise_on_every_rank():
    from probloss import LabelValueError, PredictionValueError
    from probloss.torch import distributed as pdist

    rank, _ = _rank_world()
    x, y, p, *_ = data(12)
    start, size = shards("even")
    bad = y.clone()
    bad[3] = V  # the same labels on every rank: every rank raises before any collective
    try:
        pdist.sparse_categorical_crossentropy(bad, x[:, start:start + size], from_logits=True, ignore_class=-1)
    except LabelValueError as exc:
        if "37" not in str(exc):
            raise AssertionError(f"message does not name the vocabulary: {exc}") from None
    else:
        raise AssertionError("no LabelValueError")
    pl_ = p[:, start:start + size].clone()
    if rank == 1:
        pl_[2, 0] = 1.5  # only rank 1's shard is bad: every rank must raise, none may hang
    try:
        pdist.sparse_categorical_crossentropy(y, pl_, ignore_class=-1)
    except PredictionValueError as exc:
        if rank == 1 and "1.5" not in str(exc):
            raise AssertionError(f"rank 1's message does not name the value: {exc}") from None
    else:
        raise AssertionError("no PredictionValueError")


def check_communication():
    """From logits the forward sends 3 N floats (row maxima, sums of exponentials, target
    logits) and the backward nothing; the fused linear one 3 floats per token too."""
    from probloss.torch import distributed as pdist

    x, y, *_ = data(13, ignore=False)
    start, size = shards("uneven")
    sent = []
    original = dist.all_reduce

    def counting(tensor, *args, **kwargs):
        sent.append(tensor.numel() * tensor.element_size())
        return original(tensor, *args, **kwargs)

    dist.all_reduce = counting
    try:
        xl = local(x, start, size)
        loss = pdist.sparse_categorical_crossentropy(y, xl, from_logits=True, label_smoothing=0.1, reduction="mean",
                                                     vocab_start=start, vocab_size=V)
        forward = sum(sent)
        loss.backward()
        backward = sum(sent) - forward
        sent.clear()
        w = torch.randn(V, D)[start:start + size].requires_grad_()
        pdist.linear_cross_entropy(torch.randn(N, D), w, y, vocab_start=start, vocab_size=V, chunk_size=7).backward()
        linear = sum(sent)
    finally:
        dist.all_reduce = original
    if (forward, backward) != (3 * N * 4, 0):
        raise AssertionError(f"sent {forward} bytes forward and {backward} backward; expected {3 * N * 4} and 0")
    if linear != 3 * N * 4:
        raise AssertionError(f"the fused linear loss sent {linear} bytes; expected {3 * N * 4}")


CHECKS = {name[len("check_"):]: f for name, f in sorted(globals().items()) if name.startswith("check_")}


# ------------------------------------------------------------------------------ processes


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a check that fails on one rank leaves the others in a collective: they give up after
    # a minute with an error (and the run reports the failure) instead of waiting forever
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:
            results[name] = f"rank {rank}: " + traceback.format_exc()[-3000:]
    everyone = [None] * world
    dist.all_gather_object(everyone, results)
    if rank == 0:
        merged = {name: next((r[name] for r in everyone if r[name] != "ok"), "ok") for name in CHECKS}
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump(merged, f)
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(world):
    import torch.multiprocessing as mp

    # this interpreter has imported torch but no probloss yet: probloss.torch must not bring in its distributed module
    import probloss.torch  # noqa: F401

    isolated = "probloss.torch.distributed" not in sys.modules
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(world, _free_port(), out_dir), nprocs=world, join=True)
        with open(os.path.join(out_dir, "result.json")) as f:
            results = json.load(f)
    results["import probloss.torch leaves probloss.torch.distributed alone"] = "ok" if isolated else "imported"
    print("RESULT " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
