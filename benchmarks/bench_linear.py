"""Fused linear + cross-entropy (an LM head's loss): time and peak memory of forward+backward.

    python benchmarks/bench_linear.py [--repeats 5] [--no-memory] [--skip-jax] [--big]

At N=4096 tokens, D=1024, V=32000, float32 (torch on its default threads), interleaved
run by run (``_harness.measure_interleaved``; the median and the best of ``--repeats``
runs after one warm-up; on a shared machine the best is the steadier of the two):

* ``probloss``: ``probloss.torch.linear_cross_entropy(x, w, y).backward()`` (gradients
  in the forward: three matrix products), and ``recompute=True`` (four);
* ``eager``: ``F.cross_entropy(F.linear(x, w), y).backward()``;
* ``torch.linear_cross_entropy``: torch's own chunked op with
  ``LinearCrossEntropyOptions()`` (where this torch has it);
* ``3 matmuls``: ``X_c W^T``, ``G_c W`` and ``dW += G_c^T X_c`` alone, by chunks of 1,024
  rows into reused buffers: the compute floor of any exact fused implementation.

Peak memory: each variant once more in a fresh process forked from a clean server
(``_harness.forked_peak``: peak RSS minus the RSS before the inputs).  "extra" is that
peak minus the inputs and the gradients (``dX``, ``dW``) the call leaves behind; the
floor it is compared with is the size of ``dX + dW`` (an implementation that computes
them needs that much anyway).

JAX: ``jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))`` of
``probloss.jax.linear_cross_entropy`` against
``optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y).mean()``, same shape, and
a "floor": a jitted function of the same inputs whose outputs have the size of ``dX`` and
``dW`` (the JAX runtime alone takes about 140 MiB of RSS).  The JAX peaks are whole
process growth; "extra" there is the peak above the floor's.

``--big`` adds N=8192, D=2048, V=128256 (float32) for probloss alone, one run in a child
process that reports its time and peak RSS: the eager path would need about 4 GiB per
copy of the logits (three or more copies), too much for this 24 GiB shared machine.

Writes ``results/linear.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import fmt_bytes, forked_peak, load_avg, measure_interleaved, ratio, write_results  # noqa: E402

from probloss.torch import linear_cross_entropy  # noqa: E402

SHAPE = (4096, 1024, 32000)
BIG = (8192, 2048, 128256)
FLOOR_CHUNK = 1024
JAX_FLOOR = "floor: jit returning dX, dW-sized outputs"
TARGETS = {
    "time vs 3 matmuls": 1.10,
    "time vs eager": 0.8,
    "time vs torch.linear_cross_entropy": 0.8,
    "extra memory vs dX+dW floor": 2.0,
    "extra memory vs eager": 0.15,
    "jax time vs optax": 1.0,
    "jax peak memory vs optax": 0.3,
    "jax extra memory (above the jit floor) vs optax": 0.3,
}


# ------------------------------------------------------------------------------- torch


def torch_inputs(n, d, v, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g).requires_grad_()
    w = (torch.randn(v, d, generator=g) * 0.02).requires_grad_()
    y = torch.randint(0, v, (n,), generator=g)
    return x, w, y


def _has_torch_lce():
    return hasattr(F, "linear_cross_entropy")


def torch_variants(x, w, y):
    """``{name: callable}``: one forward+backward each (gradients land in ``.grad``)."""
    n, d = x.shape
    v = w.shape[0]

    def probloss():
        linear_cross_entropy(x, w, y).backward()

    def probloss_recompute():
        linear_cross_entropy(x, w, y, recompute=True).backward()

    def eager():
        F.cross_entropy(F.linear(x, w), y).backward()

    state = {}

    def matmuls():
        # the three products of a fused implementation, nothing else (G = the logits buffer)
        if "buf" not in state:
            state["buf"] = torch.empty(FLOOR_CHUNK, v)
        buf = state["buf"]
        xd, wd = x.detach(), w.detach()
        dx = torch.empty(n, d)
        dw = torch.zeros(v, d)
        for s in range(0, n, FLOOR_CHUNK):
            xc = xd[s : s + FLOOR_CHUNK]
            z = buf[: xc.shape[0]]
            torch.mm(xc, wd.t(), out=z)
            torch.mm(z, wd, out=dx[s : s + FLOOR_CHUNK])
            dw.addmm_(z.t(), xc)
        state["out"] = (dx, dw)

    out = {"probloss": probloss, "probloss recompute=True": probloss_recompute, "eager F.cross_entropy(F.linear)": eager}
    if _has_torch_lce():
        opts = torch.nn.LinearCrossEntropyOptions() if hasattr(torch.nn, "LinearCrossEntropyOptions") else None

        def torch_lce():
            F.linear_cross_entropy(x, w, y, options=opts).backward()

        out["torch.linear_cross_entropy(options=auto)"] = torch_lce
    out["3 matmuls (floor)"] = matmuls
    return out


def _torch_memory_task(name, shape):
    """Runs in a forked child: inputs, then the call whose peak is measured."""
    x, w, y = torch_inputs(*shape)
    return torch_variants(x, w, y)[name]


def _time_torch(repeats):
    x, w, y = torch_inputs(*SHAPE)
    fns = torch_variants(x, w, y)

    def clear():
        x.grad = None
        w.grad = None

    return measure_interleaved(fns, warmup=1, repeats=repeats, setups={k: clear for k in fns})


def run_torch(args, rows):
    n, d, v = SHAPE
    load = load_avg()
    t0 = time.time()
    times = _time_torch(args.repeats)
    print(f"torch: timed in {time.time() - t0:.0f} s (load {load:.1f}, {torch.get_num_threads()} threads)", flush=True)
    inputs = (n * d + v * d) * 4 + n * 8
    floor = (n * d + v * d) * 4  # dX + dW
    mems = {}
    for name in times:
        peak = float("nan") if args.no_memory else forked_peak(_torch_memory_task, name, SHAPE)
        mems[name] = peak
    for name, t in times.items():
        extra = mems[name] - inputs - floor
        rows.append({"suite": "linear", "framework": "torch", "shape": list(SHAPE), "dtype": "float32", "impl": name,
                     "time": t, "peak_bytes": mems[name], "extra_bytes": extra, "input_bytes": inputs,
                     "floor_bytes": floor, "load": load})
    return times, mems, inputs, floor


# --------------------------------------------------------------------------------- JAX


def jax_inputs(n, d, v, seed=0):
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, d), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((v, d), dtype=np.float32) * 0.02)
    y = jnp.asarray(rng.integers(0, v, n).astype(np.int32))
    return x, w, y


def jax_variants(x, w, y, chunk=None):
    import jax
    import optax

    from probloss.jax import linear_cross_entropy as jax_lce

    def ours(x, w, y):
        return jax_lce(x, w, y, chunk_size=chunk)

    def peer(x, w, y):
        return optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y).mean()

    out = {}
    for name, loss in (("probloss.jax", ours), ("optax (x @ w.T)", peer)):
        f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        out[name] = (lambda f=f: jax.block_until_ready(f(x, w, y)))
    # the memory floor of any jitted gradient: the same inputs, outputs of dX's and dW's
    # size, and the JAX runtime itself (about 140 MiB of RSS on the CPU)
    trivial = jax.jit(lambda x, w, y: (x.sum(), (x * 2.0, w * 2.0)))
    out[JAX_FLOOR] = lambda: jax.block_until_ready(trivial(x, w, y))
    return out


def _jax_memory_task(name, shape):
    fn = jax_variants(*jax_inputs(*shape))[name]
    fn()  # compile (and one run) before the measured call
    return fn


def run_jax(args, rows):
    n, d, v = SHAPE
    x, w, y = jax_inputs(n, d, v)
    fns = jax_variants(x, w, y)
    load = load_avg()
    t0 = time.time()
    times = measure_interleaved(fns, warmup=1, repeats=args.repeats)
    print(f"jax: timed in {time.time() - t0:.0f} s (load {load:.1f})", flush=True)
    del fns, x, w, y
    inputs = (n * d + v * d) * 4 + n * 4
    mems = {name: (float("nan") if args.no_memory else forked_peak(_jax_memory_task, name, SHAPE)) for name in times}
    for name, t in times.items():
        rows.append({"suite": "linear", "framework": "jax", "shape": list(SHAPE), "dtype": "float32", "impl": name,
                     "time": t, "peak_bytes": mems[name], "extra_bytes": mems[name] - mems[JAX_FLOOR],
                     "input_bytes": inputs, "floor_bytes": mems[JAX_FLOOR], "load": load})
    return times, mems


# --------------------------------------------------------------------------------- big


def _kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def big_child():
    """``--child-big``: one forward+backward of probloss at BIG; prints time and peak as JSON."""
    n, d, v = BIG
    base = _kib("VmRSS")
    x, w, y = torch_inputs(n, d, v)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    t0 = time.perf_counter()
    linear_cross_entropy(x, w, y).backward()
    elapsed = time.perf_counter() - t0
    print(json.dumps({"time": elapsed, "peak": _kib("VmHWM") - base}))


def run_big(rows):
    n, d, v = BIG
    out = subprocess.run([sys.executable, __file__, "--child-big"], capture_output=True, text=True, timeout=900, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    inputs = (n * d + v * d) * 4 + n * 8
    floor = (n * d + v * d) * 4
    extra = res["peak"] - inputs - floor
    gflop = 6 * n * d * v / 1e9
    print(f"\nN={n}, D={d}, V={v}, float32, probloss only (eager would need >= 3 x {fmt_bytes(n * v * 4)} of logits):")
    print(f"   one forward+backward {res['time']:.1f} s ({gflop / res['time']:.0f} GFLOP/s on 6NDV), "
          f"peak {fmt_bytes(res['peak'])}, extra {fmt_bytes(extra)} = {ratio(extra, floor):.2f}x the dX+dW floor "
          f"({fmt_bytes(floor)})")
    rows.append({"suite": "linear", "framework": "torch", "shape": list(BIG), "dtype": "float32", "impl": "probloss",
                 "time": {"median": res["time"], "runs": [res["time"]]}, "peak_bytes": res["peak"], "extra_bytes": extra,
                 "input_bytes": inputs, "floor_bytes": floor, "load": load_avg()})


# -------------------------------------------------------------------------------- main


def _table(title, times, mems, extra_of, floor, ref_names):
    print(f"\n{title}")
    head = f"   {'implementation':42s} {'median s':>9s} {'best s':>7s} {'peak':>11s} {'extra':>11s}"
    for label, _ in ref_names:
        head += f"  {'t/' + label:>9s}"
    head += f"  {'extra/floor':>11s}"
    print(head)
    for name, t in times.items():
        extra = extra_of(name)
        line = (f"   {name:42s} {t['median']:9.2f} {t['min']:7.2f}"
                f" {fmt_bytes(mems[name]):>11s} {fmt_bytes(extra):>11s}")
        for _, ref in ref_names:
            line += f"  {ratio(t['median'], times[ref]['median']) if ref in times else float('nan'):9.2f}"
        line += f"  {ratio(extra, floor):11.2f}"
        print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--skip-jax", action="store_true")
    parser.add_argument("--big", action="store_true", help=f"also N, D, V = {BIG} (probloss only, one run)")
    parser.add_argument("--child-big", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_big:
        big_child()
        return
    rows = []
    checks = {}
    times, mems, inputs, floor = run_torch(args, rows)
    n, d, v = SHAPE
    print(f"\nN={n}, D={d}, V={v}, float32; inputs {fmt_bytes(inputs)}, dX+dW floor {fmt_bytes(floor)}, "
          f"one N x V logits buffer {fmt_bytes(n * v * 4)}")
    refs = [("mm", "3 matmuls (floor)"), ("eager", "eager F.cross_entropy(F.linear)")]
    lce_name = "torch.linear_cross_entropy(options=auto)"
    if lce_name in times:
        refs.append(("t.lce", lce_name))
    _table("torch (forward+backward); extra = peak - inputs - dX - dW; floor = dX + dW", times, mems,
           lambda k: mems[k] - inputs - floor, floor, refs)
    ours = times["probloss"]["median"]
    ours_extra = mems["probloss"] - inputs - floor
    checks["time vs 3 matmuls"] = ratio(ours, times["3 matmuls (floor)"]["median"])
    checks["best time vs best 3 matmuls"] = ratio(times["probloss"]["min"], times["3 matmuls (floor)"]["min"])
    checks["time vs eager"] = ratio(ours, times["eager F.cross_entropy(F.linear)"]["median"])
    checks["best time vs best eager"] = ratio(times["probloss"]["min"], times["eager F.cross_entropy(F.linear)"]["min"])
    checks["3 matmuls alone vs eager"] = ratio(times["3 matmuls (floor)"]["median"], times["eager F.cross_entropy(F.linear)"]["median"])
    if lce_name in times:
        checks["time vs torch.linear_cross_entropy"] = ratio(ours, times[lce_name]["median"])
        checks["best time vs best torch.linear_cross_entropy"] = ratio(times["probloss"]["min"], times[lce_name]["min"])
    checks["extra memory vs dX+dW floor"] = ratio(ours_extra, floor)
    checks["extra memory vs eager"] = ratio(ours_extra, mems["eager F.cross_entropy(F.linear)"] - inputs - floor)
    if not args.skip_jax:
        jt, jm = run_jax(args, rows)
        _table("JAX (jit(value_and_grad), forward+backward); extra = peak - the floor row's peak", jt, jm,
               lambda k: jm[k] - jm[JAX_FLOOR], (n * d + v * d) * 4, [("optax", "optax (x @ w.T)")])
        checks["jax time vs optax"] = ratio(jt["probloss.jax"]["median"], jt["optax (x @ w.T)"]["median"])
        checks["jax peak memory vs optax"] = ratio(jm["probloss.jax"], jm["optax (x @ w.T)"])
        checks["jax extra memory (above the jit floor) vs optax"] = ratio(jm["probloss.jax"] - jm[JAX_FLOOR],
                                                                          jm["optax (x @ w.T)"] - jm[JAX_FLOOR])
    if args.big:
        run_big(rows)
    print("\ntargets (probloss, median time; peak memory in a fresh process):")
    for key, value in checks.items():
        target = TARGETS.get(key)
        verdict = "" if target is None else ("met" if value <= target else "MISSED")
        print(f"   {key:48s} {value:6.2f}x" + (f"   target <= {target:.2f}x  {verdict}" if target else "   (for information)"))
    path = write_results("linear", rows, checks=checks, targets=TARGETS)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
