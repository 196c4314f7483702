"""Benchmark harness: warm-up, repeated timing, peak memory in a fresh process, JSON out.

Every benchmark script builds a list of cases, each timing probloss and its peer in the
same process, and prints ``probloss/peer`` ratios.  Peak memory is measured by running
one case in a fresh subprocess (``python script.py --memory CASE``) and reading the
process's maximum resident set size, so earlier cases cannot inflate it.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def measure_time(fn, *, warmup: int = 2, repeats: int = 5, sync=None) -> dict:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called after each run so that
    asynchronous devices are timed to completion.  Returns median, 20th and 80th
    percentiles and the raw runs, in seconds.
    """
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        runs.append(time.perf_counter() - t0)
    runs.sort()
    q = statistics.quantiles(runs, n=5) if len(runs) >= 2 else [runs[0]] * 4
    return {"median": statistics.median(runs), "p20": q[0], "p80": q[3], "runs": runs}


def peak_rss_bytes() -> int:
    """Maximum resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory_in_subprocess(script: str, case: str, *extra: str, timeout: float = 600) -> int:
    """Run ``script --memory case`` in a fresh interpreter; it must print the peak in bytes last."""
    out = subprocess.run(
        [sys.executable, script, "--memory", case, *extra],
        capture_output=True, text=True, timeout=timeout, check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def machine_facts() -> dict:
    """Library versions and machine facts stored with every result file."""
    facts = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for mod in ("numpy", "torch", "jax", "optax", "keras", "probloss"):
        if mod in sys.modules:
            facts[mod] = getattr(sys.modules[mod], "__version__", "?")
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        facts["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name()
    return facts


def write_results(name: str, cases: list[dict], **extra) -> Path:
    """Write ``results/<name>.json`` with the cases and the machine facts (and ``extra`` keys)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    if "command" in extra:  # (a script run without arguments leaves a trailing space)
        extra["command"] = extra["command"].strip()
    path.write_text(json.dumps({"machine": machine_facts(), "cases": cases, **extra}, indent=2))
    return path


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# ----------------------------------------------------------------------------------------
# Comparison suites: probloss against a peer, interleaved, with memory in a fresh process.


def measure_interleaved(fns: dict, *, warmup: int = 1, repeats: int = 5, setups: dict | None = None, sync=None) -> dict:
    """Time several implementations of one case, interleaved run by run.

    Each round runs every function once (the order rotates from round to round), so a
    change in machine load hits all of them alike and their ratio stays meaningful on a
    shared machine.  ``setups[name]`` (untimed) runs before each call of ``fns[name]``.
    Returns ``{name: {"median", "p20", "p80", "min", "runs"}}`` in seconds.
    """
    setups = setups or {}
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            if name in setups:
                setups[name]()
            fns[name]()
            if sync:
                sync()
    runs = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if name in setups:
                setups[name]()
            if sync:
                sync()
            t0 = time.perf_counter()
            fns[name]()
            if sync:
                sync()
            runs[name].append(time.perf_counter() - t0)
    return {name: summarize(v) for name, v in runs.items()}


def summarize(runs: list) -> dict:
    runs = sorted(runs)
    q = statistics.quantiles(runs, n=5, method="inclusive") if len(runs) >= 2 else [runs[0]] * 4
    return {"median": statistics.median(runs), "p20": q[0], "p80": q[3], "min": runs[0], "runs": runs}


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(build, *, sync=None) -> None:
    """Body of a ``--memory`` child: print the peak resident memory of one call.

    The baseline is this process's RSS after its imports (an idle interpreter with the
    same libraries), before ``build()`` creates the inputs.  The peak RSS is then reset
    (``/proc/self/clear_refs``), so that temporaries of building the inputs do not
    count, and one call runs.  The last line printed is ``peak - baseline`` in bytes:
    the inputs, every temporary and the outputs (e.g. the gradient) of the call.  Where
    the peak cannot be reset, the process's whole ``ru_maxrss`` is used instead.
    """
    import gc

    gc.collect()
    base_kib = _status_kib("VmRSS")
    base = base_kib * 1024 if base_kib is not None else peak_rss_bytes()
    fn = build()
    gc.collect()
    if _reset_peak_rss() and _status_kib("VmHWM") is not None:
        fn()
        if sync:
            sync()
        print(_status_kib("VmHWM") * 1024 - base)
    else:
        fn()
        if sync:
            sync()
        print(peak_rss_bytes() - base)


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def fmt_bytes(n: float) -> str:
    if n != n:  # NaN
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


_FORK_CTX = None


def forked_peak(task, *args, timeout: float = 600) -> float:
    """Peak memory of one call, in a fresh process forked from a clean server.

    The first call starts a ``multiprocessing`` fork server that imports the calling
    script's modules (torch, jax, ... : an idle interpreter with the same libraries);
    every measurement then forks a new child from it, which is much faster than
    starting and importing a new interpreter each time.  ``task(*args)`` runs in the
    child, builds the inputs and returns the callable to measure (see
    :func:`memory_child` for what is counted).  Returns bytes, or NaN on failure.
    """
    import multiprocessing as mp

    global _FORK_CTX
    if _FORK_CTX is None:
        _FORK_CTX = mp.get_context("forkserver")
        _FORK_CTX.set_forkserver_preload(["__main__"])
    recv, send = _FORK_CTX.Pipe(duplex=False)
    proc = _FORK_CTX.Process(target=_forked_entry, args=(task, args, send))
    proc.start()
    send.close()
    value = float("nan")
    try:
        if recv.poll(timeout):
            value = recv.recv()
    except EOFError:
        pass
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
    return value


def _forked_entry(task, args, conn):
    import gc
    import io
    from contextlib import redirect_stdout

    try:
        gc.collect()
        base = (_status_kib("VmRSS") or 0) * 1024
        fn = task(*args)
        gc.collect()
        reset = _reset_peak_rss()
        with redirect_stdout(io.StringIO()):
            fn()
        peak = (_status_kib("VmHWM") or 0) * 1024 if reset else peak_rss_bytes()
        conn.send(peak - base)
    except Exception as exc:  # report, do not hang the parent
        print(f"memory measurement failed: {exc!r}", file=sys.stderr)
        conn.send(float("nan"))
    finally:
        conn.close()


def common_args(doc: str):
    """The command line shared by the comparison scripts."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N / 16 in every shape (a smoke test)")
    parser.add_argument("--only", default="", help="run the cases whose id contains one of these comma-separated texts")
    parser.add_argument("--shapes", default="", help="comma-separated shape keys (default: the plan's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-min-mib", type=float, default=32.0, help="measure memory only for inputs at least this big")
    parser.add_argument("--out", default=None, help="results name (default: the suite's name)")
    parser.add_argument("--deadline", type=float, default=0.0, help="Unix time after which no new case starts")
    return parser


def build_for_memory(cid, impl, quick, *, make_inputs, impls_for, make_runner):
    """A ``memory_task`` for :func:`run_suite`: the call of ``impl`` for case ``cid``.

    Bind the suite's builders with ``functools.partial`` (it pickles by reference to
    the script's module-level functions, as the fork server needs).
    """
    loss, shape_key, dtype, mode = cid.split("|")
    shape = SHAPES[shape_key]
    if quick:
        shape = (max(2, shape[0] // 16),) + tuple(shape[1:])
    d = make_inputs(loss, shape, dtype)
    run, _ = make_runner(d, impls_for(loss, shape_key, dtype, mode)[impl], mode, impl)
    return run


def case_id(loss, shape_key, dtype, mode) -> str:
    return f"{loss}|{shape_key}|{dtype}|{mode}"


def run_suite(suite: str, plan, args, *, shapes: dict, make_inputs, impls_for, make_runner, memory_task,
              nbytes, sync=None, device: str = "cpu", device_peak=None, quick_shape=None, memory_wanted=None) -> Path:
    """Time (interleaved) and measure every case of ``plan``; print ratios; write JSON.

    ``plan`` holds ``(loss, shape_key, dtype, modes)``.  For each case,
    ``impls_for(loss, shape_key, dtype, mode)`` gives ``{name: builder}`` with the peer
    first (its name starts with ``"peer"``), ``make_runner(d, builder, mode, name)``
    gives ``(run, setup)``, and ``memory_task(case_id, name, quick)`` (a module-level
    function, run in a forked child) builds and returns the call whose peak memory is
    measured; ``device_peak(d, builder, mode, name)`` replaces it on accelerators.
    ``memory_wanted(loss, shape_key, dtype, mode)`` (default: always) narrows the cases
    whose memory is measured, on top of ``--memory-min-mib``.
    """
    only = [o for o in args.only.split(",") if o]
    wanted = [s for s in args.shapes.split(",") if s]
    out_name = (args.out or suite) + ("_quick" if args.quick and not args.out else "")
    deadline = getattr(args, "deadline", 0.0) or 0.0
    skipped: list = []
    rows = []
    for loss, shape_key, dtype, modes in plan:
        if wanted and shape_key not in wanted:
            continue
        todo = [m for m in modes if not only or any(o in case_id(loss, shape_key, dtype, m) for o in only)]
        if not todo:
            continue
        shape = shapes[shape_key] if not args.quick else (quick_shape or _quick_shape)(shapes[shape_key])
        d = make_inputs(loss, shape, dtype)
        in_bytes = nbytes(d)
        for mode in todo:
            cid = case_id(loss, shape_key, dtype, mode)
            impls = impls_for(loss, shape_key, dtype, mode)
            fns, setups = {}, {}
            for name, builder in impls.items():
                fns[name], setup = make_runner(d, builder, mode, name)
                if setup:
                    setups[name] = setup
            load = load_avg()
            times = measure_interleaved(fns, warmup=args.warmup, repeats=args.repeats, setups=setups, sync=sync)
            fns.clear()
            setups.clear()
            mems = {}
            measure_mem = not args.no_memory and in_bytes >= args.memory_min_mib * 2**20
            if memory_wanted is not None and not memory_wanted(loss, shape_key, dtype, mode):
                measure_mem = False
            for name, builder in impls.items():
                if not measure_mem:
                    mems[name] = float("nan")
                elif device_peak is not None:
                    mems[name] = device_peak(d, builder, mode, name)
                else:
                    mems[name] = forked_peak(memory_task, cid, name, args.quick)
            peer = next(n for n in impls if n.startswith("peer"))
            print(f"{cid}  (load {load:.1f}; inputs {fmt_bytes(in_bytes)})")
            for name in impls:
                t, m = times[name], mems[name]
                print(
                    f"   {name:40s} {t['median'] * 1e3:10.2f} ms  [{t['p20'] * 1e3:.2f}-{t['p80'] * 1e3:.2f}]"
                    f"  {fmt_bytes(m):>11s}   time x{ratio(t['median'], times[peer]['median']):.2f}"
                    f"  mem x{ratio(m, mems[peer]):.2f}",
                    flush=True,
                )
                rows.append({
                    "suite": suite, "device": device, "loss": loss, "shape": list(shape), "shape_key": shape_key,
                    "dtype": dtype, "mode": mode, "impl": name, "peer": peer, "role": "peer" if name.startswith("peer") else "probloss",
                    "time": times[name], "peak_bytes": m, "input_bytes": in_bytes, "load": load,
                })
            write_results(out_name, rows)  # after every case: a run cut short keeps what it measured
            if deadline and time.time() > deadline:
                break
        del d
        if deadline and time.time() > deadline:
            skipped = _remaining(plan, loss, shape_key, dtype, only, wanted)
            if skipped:
                print(f"time budget reached; not run: {', '.join(skipped)}", flush=True)
            break
    path = write_results(out_name, rows, skipped=skipped)
    print(f"wrote {path}")
    return path


def _remaining(plan, loss, shape_key, dtype, only, wanted):
    """Case ids of ``plan`` after the entry ``(loss, shape_key, dtype)``, filtered like the run."""
    keys = [(p[0], p[1], p[2]) for p in plan]
    start = keys.index((loss, shape_key, dtype)) + 1
    out = []
    for pl_loss, pl_shape, pl_dtype, modes in plan[start:]:
        if wanted and pl_shape not in wanted:
            continue
        for m in modes:
            cid = case_id(pl_loss, pl_shape, pl_dtype, m)
            if not only or any(o in cid for o in only):
                out.append(cid)
    return out


def _quick_shape(shape):
    return (max(2, shape[0] // 16),) + tuple(shape[1:])


# ------------------------------------------------------------------ shared case data

SHAPES = {"8192x32000": (8192, 32000), "65536x10": (65536, 10), "1024x128256": (1024, 128256), "256x8x4096": (256, 8, 4096)}
"""The issue's shapes, (N, K) or (N, K, T) with the class axis in the middle."""

BASE_ROWS = 128
"""Random rows generated per input, then tiled to N (fast, and just as costly to compute on)."""


def softmax_rows(a, axis):
    """Softmax of the NumPy array ``a`` along ``axis``, in place (used to draw probabilities)."""
    a -= a.max(axis=axis, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=axis, keepdims=True)
    return a


def make_inputs(loss: str, shape, dtype: str, *, to_array=np.ascontiguousarray, label_dtype=np.int64):
    """Deterministic inputs for ``loss``; ``BASE_ROWS`` random rows tiled along the batch axis.

    Returns a dict with ``pred`` and ``labels`` and/or ``target``, each passed through
    ``to_array`` (e.g. ``jnp.asarray``); floating inputs are cast to ``dtype`` (a NumPy
    dtype name), class labels to ``label_dtype``.
    """
    rng = np.random.default_rng(0)
    k = shape[1]
    label_shape = (shape[0],) + tuple(shape[2:])
    base_shape = (min(shape[0], BASE_ROWS),) + tuple(shape[1:])
    dt = np.dtype(dtype)

    def tiled(base):
        reps = -(-shape[0] // base.shape[0])
        return to_array(np.tile(base, (reps,) + (1,) * (base.ndim - 1))[: shape[0]].astype(dt))

    def normal():
        return rng.standard_normal(base_shape, dtype=np.float32) * 2

    def labels():
        return to_array(rng.integers(0, k, label_shape).astype(label_dtype))

    if loss in ("sparse_logits", "cat_logits", "sparse_probs", "cat_probs"):
        d = {"pred": tiled(normal() if loss.endswith("logits") else softmax_rows(normal(), 1)), "labels": labels()}
        if loss.startswith("cat"):
            d["target"] = tiled(softmax_rows(normal(), 1))
        return d
    if loss in ("bce", "bce_logits"):
        pred = normal() if loss == "bce_logits" else np.clip(rng.random(base_shape, dtype=np.float32), 1e-4, 1 - 1e-4)
        return {"pred": tiled(pred), "target": tiled((rng.random(base_shape, dtype=np.float32) < 0.5).astype(np.float32))}
    if loss == "kl":
        return {"pred": tiled(softmax_rows(normal(), -1)), "target": tiled(softmax_rows(normal(), -1))}
    if loss == "poisson":
        rate = rng.random(base_shape, dtype=np.float32) * 5 + 0.1
        return {"pred": tiled(rate), "target": tiled(rng.poisson(rate).astype(np.float32))}
    raise ValueError(loss)
