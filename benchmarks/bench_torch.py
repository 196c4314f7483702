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
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import BASE_ROWS, SHAPES, common_args, run_suite  # noqa: E402

import probloss as pl  # noqa: E402
from probloss.torch import cross_entropy  # noqa: E402

EPS = 1e-7
BIG = ("8192x32000", "1024x128256")


def _quick(shape):
    return (max(2, shape[0] // 16),) + tuple(shape[1:])


# ------------------------------------------------------------------------------- inputs




def make_inputs(loss: str, shape, dtype, device):
    """Deterministic inputs of one case; ``pred`` is what the gradient is taken of.

    ``BASE_ROWS`` random rows are generated and tiled along the batch axis (class
    indices are random throughout), which builds a 1 GB input in a fraction of the time
    of drawing every number.
    """
    g = torch.Generator(device="cpu").manual_seed(0)
    k = shape[1]
    label_shape = (shape[0],) + tuple(shape[2:])
    base_shape = (min(shape[0], BASE_ROWS),) + tuple(shape[1:])

    def tiled(base):
        reps = -(-shape[0] // base.shape[0])
        return base.repeat((reps,) + (1,) * (base.ndim - 1))[: shape[0]].to(device=device, dtype=dtype)

    def softmax(a, dim):
        a = a.sub_(a.amax(dim=dim, keepdim=True)).exp_()
        return a.div_(a.sum(dim=dim, keepdim=True))

    def randn():
        return torch.randn(base_shape, generator=g).mul_(2.0)

    def labels():
        return torch.randint(0, k, label_shape, generator=g).to(device)

    if loss in ("sparse_logits", "cat_logits"):
        d = {"pred": tiled(randn()), "labels": labels()}
        if loss == "cat_logits":
            d["target"] = tiled(softmax(randn(), 1))
        return d
    if loss in ("sparse_probs", "cat_probs"):
        d = {"pred": tiled(softmax(randn(), 1)), "labels": labels()}
        if loss == "cat_probs":
            d["target"] = tiled(softmax(randn(), 1))
        return d
    if loss in ("bce", "bce_logits"):
        pred = randn() if loss == "bce_logits" else torch.rand(base_shape, generator=g).clamp_(1e-4, 1 - 1e-4)
        return {"pred": tiled(pred), "target": tiled((torch.rand(base_shape, generator=g) < 0.5).float())}
    if loss == "kl":
        return {"pred": tiled(softmax(randn(), -1)), "target": tiled(softmax(randn(), -1))}
    if loss == "poisson":
        rate = torch.rand(base_shape, generator=g).mul_(5.0).add_(0.1)
        return {"pred": tiled(rate), "target": tiled(torch.poisson(rate, generator=g))}
    raise ValueError(loss)


# ------------------------------------------------------------------------ implementations
# Each builder takes the inputs and returns ``f(pred) -> scalar loss``.


def _axis(d):
    return 1  # torch's class axis; the last axis for 2-D inputs


def _pl_cls(cls, **kw):
    def build(d):
        obj = cls(**kw)
        key = "labels" if cls is pl.SparseCategoricalCrossentropy else "target"
        return lambda p: obj(d[key], p)

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
        },
        "extra": {  # on request only (--extra): slow, and not a probloss variant
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

# (loss, shape key, dtype, modes): the plan of the full run, most important first (a run
# with a deadline drops the tail).  The losses other than cross-entropy from logits run
# on (256, 8, 4096) only: at (8192, 32000) their peers take seconds a call, which the
# 15-minute budget of `make bench` cannot hold.
PLAN = (
    [(loss, s, "float32", ("fwd", "fwd+bwd")) for s in SHAPES for loss in ("sparse_logits", "cat_logits")]
    + [("sparse_logits", "8192x32000", "bfloat16", ("fwd+bwd",)), ("sparse_logits", "1024x128256", "float16", ("fwd+bwd",))]
    + [(loss, "256x8x4096", "float32", ("fwd+bwd",)) for loss in ("bce", "bce_logits", "kl", "poisson", "sparse_probs", "cat_probs")]
)


EXTRA = False  # --extra: also the naive torch formula at (8192, 32000)


def impls_for(loss: str, shape_key: str, dtype: str, mode: str) -> dict:
    spec = LOSSES[loss]
    out = dict(spec["probloss"])
    if shape_key == "8192x32000" and dtype == "float32" and mode == "fwd+bwd":
        out.update(spec.get("big_only", {}))
        if EXTRA:
            out.update(spec.get("extra", {}))
    if mode == "fwd":
        out = {k: v for k, v in out.items() if "inplace" not in k}
    if dtype in ("bfloat16", "float16"):
        out = {k: v for k, v in out.items() if "checks off" not in k}
    peer_name, peer = spec["peer"]
    return {"peer: " + peer_name: peer, **out}


def impls_all(loss):
    spec = LOSSES[loss]
    return {"peer: " + spec["peer"][0]: spec["peer"][1], **spec["probloss"], **spec.get("big_only", {}), **spec.get("extra", {})}


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
    parser.add_argument("--chunk-elems", type=int, default=None, help="elements per chunk of the kernels (tuning; timing only)")
    parser.add_argument("--extra", action="store_true", help="also time the naive torch formula at (8192, 32000)")
    args = parser.parse_args()
    global EXTRA
    EXTRA = args.extra
    device = args.device
    if args.chunk_elems:
        from probloss.torch import _kernels

        _kernels._CPU_CHUNK_ELEMS = _kernels._GPU_CHUNK_ELEMS = args.chunk_elems
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
        # forward-only memory where it tells most (the biggest shape); every backward case
        memory_wanted=lambda loss, shape_key, dtype, mode: mode != "fwd" or shape_key == "8192x32000",
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
