"""Vocabulary-parallel cross-entropy on 4 gloo processes: bytes sent, peak memory per rank, time.

    python benchmarks/bench_distributed.py [--n 4096] [--v 128256] [--world 4] [--gather-n 1024]
                                           [--repeats 5] [--quick] [--no-memory]

Each rank holds ``N x V / P`` float32 logits (its slice of the classes) and the same
``N`` labels; one step is the loss and its backward (the gradient of this rank's slice).
Three implementations of ``F.cross_entropy(logits, y)`` (mean over the tokens):

* ``probloss``: ``probloss.torch.distributed.sparse_categorical_crossentropy(y, shard,
  from_logits=True, reduction="mean", vocab_start=..., vocab_size=V)``;
* ``loss_parallel``: torch's ``loss_parallel()`` + ``F.cross_entropy`` on a DTensor
  ``Shard(1)`` of the same shards;
* ``gather``: all-gather the shards into ``N x V`` logits, ``F.cross_entropy``, and the
  gradient's slice back (what a framework without a vocabulary-parallel loss does).

**Bytes** per rank and step: every collective is counted by the size of its result (an
all-reduce of ``N`` floats counts ``4N``; gathering the logits counts ``4 N V``), by
wrapping ``torch.distributed``'s functions (``dist.all_reduce``, ``dist.all_gather``)
and ``torch.distributed._functional_collectives``' functions (DTensor's collectives,
``loss_parallel()``'s among them).

**Peak memory** per rank: each implementation in its own group of ``P`` fresh processes;
on each rank, the resident set after the imports and ``init_process_group`` is the
baseline, the inputs are built, the peak is reset (``/proc/self/clear_refs``), one step
runs, and ``VmHWM - baseline`` is that rank's peak (it counts the rank's logits, the
gradient, every temporary and the collectives' buffers; torch's CPU allocator returns
big blocks to the system, so the resident set follows the tensors).  The table gives the
largest of the ranks.  Gathering the ``N x V`` logits on every rank does not fit four
processes at ``N = 4096`` on this 24 GiB machine (about 8 GiB per rank), so ``gather``
is measured at ``--gather-n`` tokens, where ``probloss`` is measured too; every
implementation's memory grows linearly in ``N``.

**Time** per step: the implementations interleaved in one group, round by round (the
order rotating), each step between two barriers, timed on rank 0; median of
``--repeats`` rounds after one warm-up.  Torch runs one thread per process (four
processes share this machine's cores).

Writes ``results/distributed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import _reset_peak_rss, _status_kib, fmt_bytes, load_avg, write_results  # noqa: E402

IMPLS = ("probloss", "loss_parallel", "gather")
TARGETS = {"forward bytes per rank <= 3 N x 4": 1.0, "peak memory vs gather": 0.3, "time vs loss_parallel": 1.0}


# ---------------------------------------------------------------------------- counting


class Counter:
    """Bytes of every collective's result, forward and backward apart."""

    def __init__(self):
        self.bytes = 0
        self.calls = 0
        self._saved = {}

    def add(self, t):
        self.bytes += t.numel() * t.element_size()
        self.calls += 1

    def __enter__(self):
        import torch.distributed._functional_collectives as funcol

        def wrap(module, name, result_of):
            original = getattr(module, name, None)
            if original is None:
                return
            self._saved[(module, name)] = original

            def counted(*args, **kwargs):
                out = original(*args, **kwargs)
                self.add(result_of(out, *args))
                return out

            setattr(module, name, counted)

        wrap(dist, "all_reduce", lambda out, t, *a: t)
        wrap(dist, "all_gather", lambda out, outs, t, *a: torch.cat([o.reshape(-1) for o in outs]))
        wrap(dist, "all_gather_into_tensor", lambda out, o, t, *a: o)
        # DTensor's collectives (loss_parallel's among them) are functional ones returning their result
        for name in ("all_reduce", "all_gather_single", "all_gather_tensor", "reduce_scatter_single", "reduce_scatter_tensor",
                     "all_to_all_single"):
            wrap(funcol, name, lambda out, *a: out)
        return self

    def __exit__(self, *exc):
        for (module, name), fn in self._saved.items():
            setattr(module, name, fn)
        return False


# --------------------------------------------------------------------- implementations


class _GatherClasses(torch.autograd.Function):
    """All-gather class shards into the whole logits; the backward keeps this rank's slice."""

    @staticmethod
    def forward(ctx, shard, sizes, start):
        ctx.start, ctx.size = start, shard.shape[1]
        parts = [torch.empty(shard.shape[0], s, dtype=shard.dtype) for s in sizes]
        dist.all_gather(parts, shard.contiguous())
        return torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx, g):
        return g[:, ctx.start: ctx.start + ctx.size].contiguous(), None, None


def _sizes(v, world):
    """Every rank's number of classes under the even split (``vocab_shard``'s)."""
    full = -(-v // world)
    return [max(0, min(full, v - r * full)) for r in range(world)]


class _Step:
    """One rank's inputs and one implementation: ``forward()`` gives an object with
    ``backward()``; ``run()`` is the whole step (the gradient lands in ``shard.grad``)."""

    def __init__(self, impl, n, v, world, rank, seed=0):
        from probloss.torch.distributed import sparse_categorical_crossentropy, vocab_shard

        s = vocab_shard(v)
        self.impl, self.start, self.v = impl, s.start, v
        g = torch.Generator().manual_seed(seed + rank)
        self.shard = (torch.randn(n, s.stop - s.start, generator=g) * 2).requires_grad_()
        self.y = torch.randint(0, v, (n,), generator=torch.Generator().manual_seed(seed))
        self.sizes = _sizes(v, world)
        self.loss = sparse_categorical_crossentropy
        if impl == "loss_parallel":
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.tensor import DTensor, Replicate

            self.mesh = init_device_mesh("cpu", (world,))
            self.yd = DTensor.from_local(self.y, self.mesh, [Replicate()], run_check=False)

    def forward(self):
        self.shard.grad = None
        if self.impl == "probloss":
            return self.loss(self.y, self.shard, from_logits=True, reduction="mean", vocab_start=self.start, vocab_size=self.v)
        if self.impl == "loss_parallel":
            from torch.distributed.tensor import DTensor, Shard
            from torch.distributed.tensor.parallel import loss_parallel

            with loss_parallel():
                return _InLossParallel(F.cross_entropy(DTensor.from_local(self.shard, self.mesh, [Shard(1)], run_check=False), self.yd))
        return F.cross_entropy(_GatherClasses.apply(self.shard, self.sizes, self.start), self.y)

    def run(self):
        loss = self.forward()
        loss.backward()
        return loss


class _InLossParallel:
    """``loss_parallel()``'s backward must run inside the context manager too."""

    def __init__(self, loss):
        self.loss = loss

    def backward(self):
        from torch.distributed.tensor.parallel import loss_parallel

        with loss_parallel():
            self.loss.backward()

    def value(self):
        return self.loss.to_local().detach()


def _value(loss):
    return loss.value() if isinstance(loss, _InLossParallel) else loss.detach()


# ------------------------------------------------------------------------- the ranks


def _init(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def _memory_rank(rank, world, port, impl, n, v, out_dir):
    import gc

    _init(rank, world, port)
    _Step(impl, 8, v, world, rank).run()  # imports, caches and communication buffers: not the step's memory
    gc.collect()
    base = _status_kib("VmRSS") * 1024
    step = _Step(impl, n, v, world, rank)
    gc.collect()
    dist.barrier()
    _reset_peak_rss()
    step.run()
    peak = _status_kib("VmHWM") * 1024 - base
    everyone = [None] * world
    dist.all_gather_object(everyone, peak)
    if rank == 0:
        Path(out_dir, "memory.json").write_text(json.dumps(everyone))
    dist.destroy_process_group()


def _time_rank(rank, world, port, shapes, repeats, out_dir):
    _init(rank, world, port)
    results = []
    for n, v, impls in shapes:
        steps = {impl: _Step(impl, n, v, world, rank) for impl in impls}
        sent, values, grads = {}, {}, {}
        for impl, step in steps.items():
            step.run()  # warm-up
            with Counter() as fwd:  # the bytes of one step, forward and backward apart
                loss = step.forward()
            with Counter() as bwd:
                loss.backward()
            sent[impl] = {"forward_bytes": fwd.bytes, "backward_bytes": bwd.bytes, "forward_calls": fwd.calls,
                          "backward_calls": bwd.calls}
            values[impl], grads[impl] = _value(loss), step.shard.grad.clone()
        ref = impls[0]
        diffs = {impl: {"loss": float((values[impl] - values[ref]).abs()), "grad": float((grads[impl] - grads[ref]).abs().max())}
                 for impl in impls}
        del grads
        runs = {impl: [] for impl in impls}
        for r in range(repeats):
            order = list(impls[r % len(impls):]) + list(impls[: r % len(impls)])
            for impl in order:
                dist.barrier()
                t0 = time.perf_counter()
                steps[impl].run()
                dist.barrier()
                runs[impl].append(time.perf_counter() - t0)
        diffs_all = [None] * world
        dist.all_gather_object(diffs_all, diffs)
        worst = {impl: {k: max(d[impl][k] for d in diffs_all) for k in ("loss", "grad")} for impl in impls}
        results.append({"n": n, "v": v, "sent": sent, "runs": runs, "max_diff_vs_probloss": worst})
        del steps
    if rank == 0:
        Path(out_dir, "time.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, world, *args, timeout=900):
    """Run ``fn(rank, world, port, *args, out_dir)`` in ``world`` fresh processes; return out_dir's files."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out_dir:
        ctx = mp.start_processes(fn, args=(world, _free_port(), *args, out_dir), nprocs=world, join=False,
                                 start_method="spawn")
        deadline = time.time() + timeout
        while not ctx.join(timeout=5):
            if time.time() > deadline:
                for p in ctx.processes:
                    p.kill()
                raise TimeoutError(f"{fn.__name__} did not finish in {timeout} s")
        return {p.stem: json.loads(p.read_text()) for p in Path(out_dir).glob("*.json")}


# ------------------------------------------------------------------------------ report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--v", type=int, default=128256)
    parser.add_argument("--world", type=int, default=4)
    parser.add_argument("--gather-n", type=int, default=1024, help="tokens where the gathering implementation runs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="N / 16 (a smoke test)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--deadline", type=float, default=0.0, help="(from run_all.py) no memory phase starts after it")
    args = parser.parse_args(argv)
    n, gn = (args.n // 16, args.gather_n // 16) if args.quick else (args.n, args.gather_n)
    v, world = args.v, args.world
    print(f"{world} gloo processes, V={v} (V/P={-(-v // world)}), N={n} (gather at N={gn}); load {load_avg():.1f}", flush=True)
    t0 = time.time()
    shapes = [(gn, v, list(IMPLS)), (n, v, ["probloss", "loss_parallel"])]
    timed = _spawn(_time_rank, world, shapes, args.repeats)["time"]
    memory = {}
    if not args.no_memory:
        for impl, size in (("probloss", n), ("loss_parallel", n), ("probloss", gn), ("gather", gn), ("loss_parallel", gn)):
            if args.deadline and time.time() > args.deadline:
                print(f"deadline reached: memory of {impl} at N={size} not measured", flush=True)
                continue
            memory[f"{impl}|{size}"] = _spawn(_memory_rank, world, impl, size, v)["memory"]
    cases = []
    for entry in timed:
        size = entry["n"]
        med = {impl: statistics.median(r) for impl, r in entry["runs"].items()}
        for impl, runs in entry["runs"].items():
            mem = memory.get(f"{impl}|{size}")
            cases.append({
                "impl": impl, "n": size, "v": v, "world": world, "time": {"median": med[impl], "min": min(runs), "runs": runs},
                "peak_bytes_per_rank": max(mem) if mem else None, "peak_bytes_ranks": mem,
                **entry["sent"][impl], "max_diff_vs_probloss": entry["max_diff_vs_probloss"][impl],
            })
    summary = _summary(cases, n, gn, v)
    command = "python benchmarks/bench_distributed.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    path = write_results("distributed" + ("_quick" if args.quick else ""), cases, summary=summary, command=command,
                         wall_s=time.time() - t0)
    _print(cases, summary)
    print(f"wrote {path} ({time.time() - t0:.0f} s)")


def _find(cases, impl, n):
    return next((c for c in cases if c["impl"] == impl and c["n"] == n), None)


def _summary(cases, n, gn, v):
    out = {}
    p = _find(cases, "probloss", n)
    out["forward bytes per rank / (3 N x 4)"] = p["forward_bytes"] / (3 * n * 4)
    out["forward bytes per rank / (N V x 4) (gathering the logits)"] = p["forward_bytes"] / (n * v * 4)
    g, pg = _find(cases, "gather", gn), _find(cases, "probloss", gn)
    if g and pg and g["peak_bytes_per_rank"] and pg["peak_bytes_per_rank"]:
        out[f"peak memory per rank vs gather (N={gn})"] = pg["peak_bytes_per_rank"] / g["peak_bytes_per_rank"]
        if p["peak_bytes_per_rank"]:
            out[f"peak memory per rank vs gather (N={n}; gather extrapolated linearly from N={gn})"] = (
                p["peak_bytes_per_rank"] / (g["peak_bytes_per_rank"] * n / gn))
    lp = _find(cases, "loss_parallel", n)
    if p["peak_bytes_per_rank"] and lp["peak_bytes_per_rank"]:
        out[f"peak memory per rank vs loss_parallel (N={n})"] = p["peak_bytes_per_rank"] / lp["peak_bytes_per_rank"]
    for size in (gn, n):
        a, b = _find(cases, "probloss", size), _find(cases, "loss_parallel", size)
        out[f"time vs loss_parallel (N={size})"] = a["time"]["median"] / b["time"]["median"]
    if g:
        out[f"time vs gather (N={gn})"] = pg["time"]["median"] / g["time"]["median"]
    return out


def _print(cases, summary):
    print(f"{'implementation':15s} {'N':>6s} {'s/step':>9s} {'fwd bytes':>12s} {'bwd bytes':>12s} {'peak/rank':>11s} "
          f"{'|dloss|':>9s} {'|dgrad|':>9s}")
    for c in cases:
        peak = fmt_bytes(c["peak_bytes_per_rank"]) if c["peak_bytes_per_rank"] else "-"
        d = c["max_diff_vs_probloss"]
        print(f"{c['impl']:15s} {c['n']:6d} {c['time']['median']:9.3f} {c['forward_bytes']:12,d} {c['backward_bytes']:12,d} "
              f"{peak:>11s} {d['loss']:9.2e} {d['grad']:9.2e}")
    for k, val in summary.items():
        print(f"  {k}: {val:.3f}")


if __name__ == "__main__":
    main()
