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


def write_results(name: str, cases: list[dict]) -> Path:
    """Write ``results/<name>.json`` with the cases and the machine facts."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_facts(), "cases": cases}, indent=2))
    return path


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
