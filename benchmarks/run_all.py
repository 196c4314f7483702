"""Run every comparison benchmark, then write ``docs/benchmarks.md`` and its plot.

    python benchmarks/run_all.py [--budget-min 18] [--quick] [--skip torch,jax,numpy]

This is ``make bench``.  The suites run one after another (never two heavy benchmarks at
once), each in its own process: torch against ``torch.nn.functional``, JAX against
Optax, NumPy against Keras 3 and a plain formula.  Each suite gets a deadline inside the
overall budget (default 18 minutes) and starts no new case after it; cases left out are
listed in the results and in ``docs/benchmarks.md``.  The CUDA suite (``bench_cuda.py``:
the Triton kernels against ``F.cross_entropy`` and Liger-Kernel) runs last and only on a
machine with a GPU; ``results/cuda.json``, when present, becomes the report's CUDA section
(``benchmarks/gpu_check.sh`` runs it with the GPU tests).  The older CUDA run of the
chunked torch kernels (``bench_torch.py --device cuda``, ``results/torch_cuda.json``) is
also included when present.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import RESULTS, load_avg  # noqa: E402

# (suite, script, share of the budget at which its deadline falls, extra arguments)
SUITES = [
    ("overhead", "bench_overhead.py", 0.08, []),
    ("train_step", "bench_train_step.py", 0.12, []),
    ("jit_checks", "bench_jit_checks.py", 0.18, []),
    ("compile_checks", "bench_compile_checks.py", 0.22, []),
    ("torch", "bench_torch.py", 0.55, []),
    ("jax", "bench_jax.py", 0.78, []),
    ("numpy", "bench_numpy.py", 0.97, []),
    # the CUDA suite: exits at once without a GPU (its last results stay in the report)
    ("cuda", "bench_cuda.py", 1.0, []),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=18.0, help="overall time budget in minutes")
    parser.add_argument("--quick", action="store_true", help="smoke test: N / 16 in every shape")
    parser.add_argument("--skip", default="", help="comma-separated suites to leave out (their old results stay)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    start = time.time()
    budget = args.budget_min * 60
    log = {"command": "make bench  (python benchmarks/run_all.py" + (" " + " ".join(argv or sys.argv[1:]) if (argv or sys.argv[1:]) else "") + ")",
           "repeats": args.repeats, "load_at_start": load_avg(), "suites": {}, "skipped": [], "notes": []}
    for suite, script, share, extra in SUITES:
        if suite in skip:
            log["suites"][suite] = "skipped (--skip)"
            continue
        deadline = start + share * budget
        if time.time() > deadline:
            log["skipped"].append(f"the whole {suite} suite")
            continue
        cmd = [sys.executable, str(HERE / script), "--repeats", str(args.repeats), "--deadline", f"{deadline:.0f}", *extra]
        if args.quick:
            cmd.append("--quick")
        t0 = time.time()
        print(f"== {suite}: {' '.join(cmd[1:])}", flush=True)
        # A case already running when the deadline passes still finishes; the hard stop
        # only guards against a hang.
        try:
            proc = subprocess.run(cmd, timeout=max(60.0, deadline - time.time() + 240), check=False)
            status = f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = "stopped at the hard time limit"
        log["suites"][suite] = f"{status}, {time.time() - t0:.0f} s"
        name = suite + ("_quick" if args.quick else "")
        path = RESULTS / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            log["skipped"] += [f"{suite} {c}" for c in data.get("skipped", [])]
    log["wall_s"] = time.time() - start
    log["load_at_end"] = load_avg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("run_all" + ("_quick" if args.quick else "") + ".json")).write_text(json.dumps(log, indent=2))
    if args.quick:
        print(f"quick run done in {log['wall_s']:.0f} s; docs/benchmarks.md is only written by a full run")
        return
    env = dict(os.environ)
    subprocess.run([sys.executable, str(HERE / "report.py")], check=True, env=env)
    print(f"done in {log['wall_s'] / 60:.1f} minutes")


if __name__ == "__main__":
    main()
