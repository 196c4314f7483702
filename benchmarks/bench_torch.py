"""probloss on torch tensors against ``torch.nn.functional``: time and peak memory.

For each loss, shape, dtype and mode (forward, forward+backward) the probloss variants
and the torch peer run interleaved in one process (median of ``--repeats`` runs after a
warm-up); then each of them runs once more in a fresh process for its peak memory.
Printed ratios are probloss / peer.

    python benchmarks/bench_torch.py [--quick] [--device cpu|cuda] [--only TEXT] [--repeats 5]

probloss variants: ``probloss`` is the Keras-style API (``pl.SparseCategoricalCrossentropy``
and friends, default reduction); ``probloss.torch`` is the ``F.cross_entropy`` drop-in
(``probloss.torch.cross_entropy``); ``... inplace`` adds ``inplace_backward=True``;
``... checks off`` runs under ``probloss.set_value_checks(False)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import common_args, run_suite  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import probloss as pl  # noqa: E402
from probloss.torch import cross_entropy  # noqa: E402

EPS = 1e-7
SHAPES = {"8192x32000": (8192, 32000), "65536x10": (65536, 10), "1024x128256": (1024, 128256), "256x8x4096": (256, 8, 4096)}
BIG = ("8192x32000", "1024x128256")


def _quick(shape):
    return (max(2, shape[0] // 16),) + tuple(shape[1:])


# ------------------------------------------------------------------------------- inputs


def make_inputs(loss: str, shape, dtype, device):
    """Deterministic inputs of one case; ``pred`` is what the gradient is taken of."""
    g = torch.Generator(device="cpu").manual_seed(0)
    k = shape[1]
    label_shape = (shape[0],) + tuple(shape[2:])

    def randn():
        return torch.randn(shape, generator=g).mul_(2.0).to(device=device, dtype=dtype)

    def softmax_rows(a):  # in place, class axis 1, without a second N x K buffer
        a.sub_(a.amax(dim=1, keepdim=True)).exp_()
        return a.div_(a.sum(dim=1, keepdim=True))

    if loss in ("sparse_logits", "cat_logits"):
        d = {"pred": randn(), "labels": torch.randint(0, k, label_shape, generator=g).to(device)}
        if loss == "cat_logits":
            d["target"] = softmax_rows(torch.randn(shape, generator=g)).to(device=device, dtype=dtype)
        return d
    if loss in ("sparse_probs", "cat_probs"):
        d = {"pred": softmax_rows(torch.randn(shape, generator=g)).to(device=device, dtype=dtype)}
        d["labels"] = torch.randint(0, k, label_shape, generator=g).to(device)
        if loss == "cat_probs":
            d["target"] = softmax_rows(torch.randn(shape, generator=g)).to(device=device, dtype=dtype)
        return d
    if loss in ("bce", "bce_logits"):
        pred = randn() if loss == "bce_logits" else torch.rand(shape, generator=g).clamp_(1e-4, 1 - 1e-4).to(device=device, dtype=dtype)
        target = (torch.rand(shape, generator=g) < 0.5).to(device=device, dtype=dtype)
        return {"pred": pred, "target": target}
    if loss == "kl":
        a = torch.randn(shape, generator=g)
        a = a.sub_(a.amax(-1, keepdim=True)).exp_()
        a.div_(a.sum(-1, keepdim=True))
        b = torch.randn(shape, generator=g)
        b = b.sub_(b.amax(-1, keepdim=True)).exp_()
        b.div_(b.sum(-1, keepdim=True))
        return {"pred": a.to(device=device, dtype=dtype), "target": b.to(device=device, dtype=dtype)}
    if loss == "poisson":
        rate = torch.rand(shape, generator=g).mul_(5.0).add_(0.1)
        target = torch.poisson(rate, generator=g)
        return {"pred": rate.to(device=device, dtype=dtype), "target": target.to(device=device, dtype=dtype)}
    raise ValueError(loss)


# ------------------------------------------------------------------------ implementations
# Each builder takes the inputs and returns ``f(pred) -> scalar loss``.


def _axis(d):
    return 1  # torch's class axis; the last axis for 2-D inputs


def _pl_cls(cls, **kw):
    def build(d):
        obj = cls(**kw)
        if "labels" in d:
            return lambda p: obj(d["labels"], p)
        return lambda p: obj(d["target"], p)

    return build


def _checks_off(builder):
    def build(d):
        f = builder(d)

        def run(p):
            with pl.set_value_checks(False):
                return f(p)

        return run

    return build


LOSSES = {
    "sparse_logits": {
        "peer": ("F.cross_entropy", lambda d: lambda p: F.cross_entropy(p, d["labels"])),
        "probloss": {
            "probloss": lambda d: _pl_cls(pl.SparseCategoricalCrossentropy, from_logits=True, axis=_axis(d))(d),
            "probloss.torch": lambda d: lambda p: cross_entropy(p, d["labels"]),
            "probloss.torch inplace": lambda d: lambda p: cross_entropy(p, d["labels"], inplace_backward=True),
        },
        "big_only": {
            "probloss checks off": _checks_off(lambda d: _pl_cls(pl.SparseCategoricalCrossentropy, from_logits=True, axis=_axis(d))(d)),
            "torch naive lse-gather": lambda d: lambda p: (
                torch.logsumexp(p, 1) - torch.gather(p, 1, d["labels"].unsqueeze(1)).squeeze(1)
            ).mean(),
        },
    },
    "cat_logits": {
        "peer": ("F.cross_entropy (prob. targets)", lambda d: lambda p: F.cross_entropy(p, d["target"])),
        "probloss": {
            "probloss": lambda d: _pl_cls(pl.CategoricalCrossentropy, from_logits=True, axis=_axis(d))(d),
            "probloss.torch": lambda d: lambda p: cross_entropy(p, d["target"]),
            "probloss.torch inplace": lambda d: lambda p: cross_entropy(p, d["target"], inplace_backward=True),
        },
        "big_only": {
            "probloss checks off": _checks_off(lambda d: _pl_cls(pl.CategoricalCrossentropy, from_logits=True, axis=_axis(d))(d)),
        },
    },
    "sparse_probs": {
        "peer": ("F.nll_loss(log p)", lambda d: lambda p: F.nll_loss(torch.log(p), d["labels"])),
        "probloss": {"probloss": lambda d: _pl_cls(pl.SparseCategoricalCrossentropy, axis=_axis(d))(d)},
    },
    "cat_probs": {
        "peer": ("-(t * log p).sum(1).mean()", lambda d: lambda p: -(d["target"] * torch.log(p)).sum(1).mean()),
        "probloss": {"probloss": lambda d: _pl_cls(pl.CategoricalCrossentropy, axis=_axis(d))(d)},
    },
    "bce": {
        "peer": ("F.binary_cross_entropy", lambda d: lambda p: F.binary_cross_entropy(p, d["target"])),
        "probloss": {"probloss": _pl_cls(pl.BinaryCrossentropy)},
        "big_only": {"probloss checks off": _checks_off(_pl_cls(pl.BinaryCrossentropy))},
    },
    "bce_logits": {
        "peer": ("F.binary_cross_entropy_with_logits", lambda d: lambda p: F.binary_cross_entropy_with_logits(p, d["target"])),
        "probloss": {"probloss": _pl_cls(pl.BinaryCrossentropy, from_logits=True)},
    },
    "kl": {
        "peer": ("F.kl_div(log p, t, 'batchmean')", lambda d: lambda p: F.kl_div(torch.log(p), d["target"], reduction="batchmean")),
        "probloss": {"probloss": _pl_cls(pl.KLDivergence)},
    },
    "poisson": {
        "peer": ("F.poisson_nll_loss(log_input=False)", lambda d: lambda p: F.poisson_nll_loss(p, d["target"], log_input=False)),
        "probloss": {"probloss": _pl_cls(pl.Poisson)},
    },
}

# (loss, shape key, dtype, modes): the plan of the full run.
PLAN = (
    [(loss, s, "float32", ("fwd", "fwd+bwd")) for loss in ("sparse_logits", "cat_logits") for s in SHAPES]
    + [("sparse_logits", s, dt, ("fwd+bwd",)) for s in BIG for dt in ("bfloat16", "float16")]
    + [(loss, s, "float32", ("fwd+bwd",)) for loss in ("sparse_probs", "cat_probs", "bce", "bce_logits", "kl", "poisson") for s in ("8192x32000", "256x8x4096")]
)


def impls_for(loss: str, shape_key: str, dtype: str, mode: str) -> dict:
    spec = LOSSES[loss]
    out = dict(spec["probloss"])
    if shape_key == "8192x32000" and dtype == "float32" and mode == "fwd+bwd":
        out.update(spec.get("big_only", {}))
    if mode == "fwd":
        out = {k: v for k, v in out.items() if "inplace" not in k}
    if dtype in ("bfloat16", "float16"):
        out = {k: v for k, v in out.items() if "checks off" not in k}
    peer_name, peer = spec["peer"]
    return {"peer: " + peer_name: peer, **out}


def impls_all(loss):
    spec = LOSSES[loss]
    return {"peer: " + spec["peer"][0]: spec["peer"][1], **spec["probloss"], **spec.get("big_only", {})}


def make_runner(d, builder, mode: str, inplace: bool, *, backup=True):
    """``(run, setup)`` for one implementation on the inputs ``d``."""
    f = builder(d)
    if mode == "fwd":
        p = d["pred"]

        def run():
            with torch.no_grad():
                f(p)

        return run, None
    if inplace:
        src = d["pred"]
        p = src.detach().clone().requires_grad_() if backup else src.requires_grad_()

        def setup():
            p.grad = None
            with torch.no_grad():
                p.copy_(src)

        def run():
            f(p).backward()

        return run, (setup if backup else None)
    p = d["pred"].requires_grad_()

    def setup():
        p.grad = None

    def run():
        f(p).backward()

    return run, setup


def parse_case(cid):
    loss, shape_key, dtype, mode = cid.split("|")
    return loss, shape_key, dtype, mode


def _memory_task(cid: str, impl: str, quick: bool, device: str = "cpu"):
    """In a fresh process: build the inputs of one case and return the call to measure."""
    loss, shape_key, dtype, mode = parse_case(cid)
    shape = SHAPES[shape_key] if not quick else _quick(SHAPES[shape_key])
    d = make_inputs(loss, shape, getattr(torch, dtype), device)
    run, setup = make_runner(d, impls_all(loss)[impl], mode, "inplace" in impl, backup=False)
    if setup:
        setup()
    return run


def main():
    parser = common_args(__doc__)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = args.device
    cuda = device.startswith("cuda")
    run_suite(
        "torch" + ("_cuda" if cuda else ""),
        PLAN,
        args,
        shapes=SHAPES,
        make_inputs=lambda loss, shape, dtype: make_inputs(loss, shape, getattr(torch, dtype), device),
        impls_for=impls_for,
        make_runner=lambda d, builder, mode, name: make_runner(d, builder, mode, "inplace" in name),
        memory_task=_memory_task,
        nbytes=lambda d: sum(t.numel() * t.element_size() for t in d.values()),
        sync=torch.cuda.synchronize if cuda else None,
        device=device,
        device_peak=(lambda d, b, mode, name: _cuda_peak(d, b, mode, "inplace" in name)) if cuda else None,
        quick_shape=_quick,
    )


def _cuda_peak(d, builder, mode, inplace):
    """Peak CUDA memory of one call, counting the inputs (like the CPU numbers)."""
    in_bytes = sum(t.numel() * t.element_size() for t in d.values())
    dd = {k: v.detach().clone() for k, v in d.items()}
    run, setup = make_runner(dd, builder, mode, inplace, backup=False)
    if setup:
        setup()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base + in_bytes
    del dd, run, setup
    torch.cuda.empty_cache()
    return peak


if __name__ == "__main__":
    main()
