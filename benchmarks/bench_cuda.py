"""The CUDA suite: probloss's Triton kernels against ``F.cross_entropy`` and Liger-Kernel.

    python benchmarks/bench_cuda.py [--quick] [--repeats 10] [--warmup 3] [--only TEXT] [--time-limit 420]

Without a CUDA device it prints so and exits with status 0 (nothing is written).

**Cross-entropy, forward + backward**, at 8192 x 32000 and 1024 x 128256, float32 and
bfloat16, sparse labels (and soft targets at 8192 x 32000 float32), mean reduction.  The
implementations run interleaved, run by run, in one process (median of ``--repeats``
runs after ``--warmup``; each run ends with ``torch.cuda.synchronize``):

* ``F.cross_entropy`` (the peer);
* ``probloss.torch``: the drop-in ``probloss.torch.cross_entropy``; ``... inplace`` adds
  ``inplace_backward=True`` (the gradient overwrites the logits);
* ``probloss``: the Keras-style class ``SparseCategoricalCrossentropy(from_logits=True)``
  (``CategoricalCrossentropy`` for soft targets), value checks on (deferred), and
  ``probloss checks off`` under ``probloss.set_value_checks(False)``;
* ``liger``: Liger-Kernel's ``LigerCrossEntropyLoss`` when it is installed (it writes the
  gradient into the logits during the forward).

Peak memory *beyond the inputs*: ``torch.cuda.max_memory_allocated`` during one
forward + backward, minus what was allocated before it (the logits and the labels), so it
counts the gradient, every temporary and what the forward keeps for the backward.
In-place variants get a fresh copy of the logits before each run (not timed).

**A training step** on CUDA: an MLP (64 -> 128 -> 10), batch 32, SGD with momentum; each
run times ``--steps`` steps with no synchronisation between them (the asynchrony of a
training loop), the variants differing only in the loss: ``F.cross_entropy``, the
drop-in, the Keras-style class with its checks on (deferred) and off, and the class on
torch's column (its checks read on the host at every call, as before the Triton backend).

Writes ``results/cuda.json``; ``benchmarks/report.py`` turns it into the CUDA section of
``docs/benchmarks.md``.  Targets: time <= 0.9x and memory beyond the inputs <= 0.55x
``F.cross_entropy`` for the drop-in and the class; time <= 1.0x Liger-Kernel; the
training step with checks on <= 1.1x the one with ``F.cross_entropy``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import measure_interleaved, ratio, write_results  # noqa: E402

import probloss as pl  # noqa: E402
import probloss.torch as pt  # noqa: E402
from probloss import _dispatch  # noqa: E402

SHAPES = [(8192, 32000), (1024, 128256)]
DTYPES = ["float32", "bfloat16"]
TARGETS = {"time": 0.9, "memory": 0.55, "liger": 1.0, "step": 1.1}


def _liger():
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except ImportError:
        return None
    return LigerCrossEntropyLoss()


def cases(quick: bool):
    out = []
    for shape in SHAPES:
        for dtype in DTYPES:
            out.append(("sparse", shape, dtype))
    out.append(("soft", SHAPES[0], "float32"))
    if quick:
        out = [(loss, (max(64, shape[0] // 16), shape[1]), dtype) for loss, shape, dtype in out]
    return out


def make_inputs(loss, shape, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(shape, device="cuda", generator=g, dtype=torch.float32).mul_(3).to(getattr(torch, dtype))
    if loss == "sparse":
        y = torch.randint(0, shape[1], (shape[0],), device="cuda", generator=g)
    else:
        y = torch.softmax(torch.randn(shape, device="cuda", generator=g), dim=1).to(x.dtype)
    return x, y


def implementations(loss, liger):
    scce = pl.SparseCategoricalCrossentropy(from_logits=True)
    cce = pl.CategoricalCrossentropy(from_logits=True)
    keras = (lambda x, y: scce(y, x)) if loss == "sparse" else (lambda x, y: cce(y, x))

    def checks_off(x, y):
        with pl.set_value_checks(False):
            return keras(x, y)

    impls = {
        "peer: F.cross_entropy": (lambda x, y: F.cross_entropy(x, y), False),
        "probloss.torch": (lambda x, y: pt.cross_entropy(x, y), False),
        "probloss.torch inplace": (lambda x, y: pt.cross_entropy(x, y, inplace_backward=True), True),
        "probloss": (keras, False),
        "probloss checks off": (checks_off, False),
    }
    if liger is not None and loss == "sparse":
        impls["liger"] = (lambda x, y: liger(x, y), True)
    return impls


def run_case(loss, shape, dtype, args, liger):
    x0, y = make_inputs(loss, shape, dtype)
    impls = implementations(loss, liger)
    fns, setups = {}, {}
    for name, (fn, inplace) in impls.items():
        leaf = x0.clone().requires_grad_()

        def run(fn=fn, leaf=leaf):
            fn(leaf, y).backward()
            leaf.grad = None

        def restore(leaf=leaf):  # an in-place variant overwrote the logits with their gradient
            with torch.no_grad():
                leaf.copy_(x0)

        fns[name] = run
        setups[name] = restore if inplace else (lambda: None)
    # the numbers first: every implementation's loss against torch's
    errors = {}
    ref = F.cross_entropy(x0.float(), y.float() if loss == "soft" else y).item()
    for name, (fn, _) in impls.items():
        errors[name] = abs(fn(x0.clone().requires_grad_(), y).item() - ref) / abs(ref)
    pt.check_pending()
    times = measure_interleaved(fns, warmup=args.warmup, repeats=args.repeats, setups=setups, sync=torch.cuda.synchronize)
    in_bytes = x0.numel() * x0.element_size() + y.numel() * y.element_size()
    rows = []
    for name in impls:
        rows.append({
            "loss": loss, "shape": list(shape), "shape_key": f"{shape[0]}x{shape[1]}", "dtype": dtype, "mode": "fwd+bwd",
            "impl": name, "role": "peer" if name.startswith("peer") else ("other" if name == "liger" else "probloss"),
            "time": times[name], "extra_bytes": _peak_beyond_inputs(fns[name], setups[name]), "input_bytes": in_bytes,
            "relative_error": errors[name],
        })
    del fns, setups
    torch.cuda.empty_cache()
    return rows


def _peak_beyond_inputs(fn, setup):
    setup()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


# ---------------------------------------------------------------------- training step


@contextlib.contextmanager
def torch_column():
    """Losses on CUDA tensors take torch's column inside the block (its checks read on the host)."""
    saved = dict(_dispatch._resolved)
    for loss, row in _dispatch.TABLE.items():
        if "cuda" in row:
            _dispatch._resolved[(loss, "cuda")] = _dispatch._UNAVAILABLE
    try:
        yield
    finally:
        _dispatch._resolved.clear()
        _dispatch._resolved.update(saved)


def train_step(args):
    g = torch.Generator().manual_seed(0)
    templates = torch.rand(10, 64, generator=g) * 16
    labels = torch.randint(0, 10, (1792,), generator=g)
    images = ((templates[labels] + torch.randn(1792, 64, generator=g) * 4).clamp(0, 16) / 16).cuda()
    labels = labels.cuda()
    scce = pl.SparseCategoricalCrossentropy(from_logits=True)

    def off(logits, y):
        with pl.set_value_checks(False):
            return scce(y, logits)

    def on_torch_column(logits, y):
        with torch_column():
            return scce(y, logits)

    variants = {
        "F.cross_entropy": lambda logits, y: F.cross_entropy(logits, y),
        "probloss.torch": lambda logits, y: pt.cross_entropy(logits, y),
        "probloss class, checks on": lambda logits, y: scce(y, logits),
        "probloss class, checks off": off,
        "probloss class, torch column": on_torch_column,
    }

    def make(loss_fn):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        state = {"i": 0}

        def steps():
            for _ in range(args.steps):
                i = state["i"]
                state["i"] = (i + 32) % (images.shape[0] - 32)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(images[i : i + 32]), labels[i : i + 32]).backward()
                opt.step()

        return steps

    fns = {name: make(fn) for name, fn in variants.items()}
    times = measure_interleaved(fns, warmup=1, repeats=args.repeats, sync=torch.cuda.synchronize)
    pt.check_pending()
    peer = times["F.cross_entropy"]["median"]
    return [
        {"impl": name, "us_per_step": t["median"] / args.steps * 1e6, "p20_us": t["p20"] / args.steps * 1e6,
         "p80_us": t["p80"] / args.steps * 1e6, "ratio": ratio(t["median"], peer),
         "target": TARGETS["step"] if name == "probloss class, checks on" else None}
        for name, t in times.items()
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--only", default="", help="run the cases whose description contains this text")
    parser.add_argument("--quick", action="store_true", help="N / 16 in every shape, 20 training steps")
    parser.add_argument("--time-limit", type=float, default=None, help="start no new case after this many seconds")
    parser.add_argument("--deadline", type=float, default=None, help="(from run_all.py) start no new case after this time")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_cuda.py: no CUDA device here; nothing to measure (it needs an NVIDIA GPU, torch's CUDA build "
              "and Triton). Nothing was written.")
        return 0
    if args.quick:
        args.steps = 20
    start = time.time()
    deadline = min(d for d in (args.deadline, start + args.time_limit if args.time_limit else None, float("inf")) if d is not None)
    liger = _liger()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; Liger-Kernel: {'yes' if liger else 'not installed'}")
    rows, skipped = [], []
    for loss, shape, dtype in cases(args.quick):
        desc = f"{loss} {shape[0]}x{shape[1]} {dtype}"
        if args.only and args.only not in desc:
            continue
        if time.time() > deadline:
            skipped.append(desc)
            continue
        case_rows = run_case(loss, shape, dtype, args, liger)
        rows += case_rows
        _print_case(desc, case_rows)
    step = []
    if time.time() <= deadline and (not args.only or "step" in args.only):
        step = train_step(args)
        print("training step (batch 32, 10 classes):")
        for r in step:
            print(f"  {r['impl']:32s} {r['us_per_step']:8.1f} us/step  {r['ratio']:.2f}x")
    else:
        skipped.append("training step")
    if skipped:
        print("not run (time limit): " + "; ".join(skipped))
    command = "python benchmarks/bench_cuda.py " + " ".join(argv if argv is not None else sys.argv[1:])
    path = write_results("cuda" + ("_quick" if args.quick else ""), rows, train_step=step, skipped=skipped,
                         command=command.strip(), targets=TARGETS, liger=liger is not None)
    print(f"wrote {path}")
    return 0


def _print_case(desc, rows):
    peer = rows[0]
    liger = next((r for r in rows if r["impl"] == "liger"), None)
    print(desc)
    for r in rows:
        t = r["time"]["median"]
        vs_liger = f"  {ratio(t, liger['time']['median']):.2f}x liger" if liger and r is not liger else ""
        print(f"  {r['impl']:26s} {t * 1e3:8.2f} ms  {ratio(t, peer['time']['median']):.2f}x time  "
              f"{r['extra_bytes'] / 2**20:9.1f} MiB beyond inputs  {ratio(r['extra_bytes'], peer['extra_bytes']):.2f}x memory"
              f"{vs_liger}  (relative error {r['relative_error']:.1e})")


if __name__ == "__main__":
    sys.exit(main())
