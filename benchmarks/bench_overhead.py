"""Fixed cost per call: probloss against the native loss at the sizes people train on.

    python benchmarks/bench_overhead.py [--repeats 7] [--calls 200]

torch on one thread, float32, interleaved run by run; each run times ``--calls`` calls
and the table gives the median time per call.  Cases, at 32 x 10, 256 x 100 and
1024 x 1000 (sparse cross-entropy from logits):

* torch forward + backward: ``F.cross_entropy`` against ``probloss.torch.cross_entropy``
  (the drop-in) and ``SparseCategoricalCrossentropy(from_logits=True)`` (the Keras-style
  class, value checks on);
* NumPy forward: a plain NumPy formula against ``sparse_categorical_crossentropy``;
* JAX eager forward: ``optax.softmax_cross_entropy_with_integer_labels(...).mean()``
  against the class.

Writes ``results/overhead.json`` and prints probloss / peer ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import measure_interleaved, ratio, write_results  # noqa: E402

SHAPES = [(32, 10), (256, 100), (1024, 1000)]
TARGETS = {"probloss.torch": 1.3, "probloss class": 2.0, "numpy": 1.5, "jax": 1.5}


def _looped(fn, calls):
    def run():
        for _ in range(calls):
            fn()

    return run


def _inputs(n, k, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)).astype(np.float32), rng.integers(0, k, n)


def torch_cases(n, k, calls, repeats):
    import torch
    import torch.nn.functional as F

    import probloss as pl
    from probloss.torch import cross_entropy

    x_np, y_np = _inputs(n, k)
    x = torch.tensor(x_np, requires_grad=True)
    y = torch.tensor(y_np)
    scce = pl.SparseCategoricalCrossentropy(from_logits=True)

    def step(loss_fn):
        def run():
            loss_fn().backward()
            x.grad = None

        return run

    fns = {
        "F.cross_entropy": step(lambda: F.cross_entropy(x, y)),
        "probloss.torch": step(lambda: cross_entropy(x, y)),
        "probloss class": step(lambda: scce(y, x)),
    }
    times = measure_interleaved({k_: _looped(f, calls) for k_, f in fns.items()}, repeats=repeats)
    return "torch fwd+bwd", "F.cross_entropy", times


def numpy_cases(n, k, calls, repeats):
    import probloss as pl

    x, y = _inputs(n, k)

    def plain():
        m = x.max(axis=1, keepdims=True)
        lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
        return lse - np.take_along_axis(x, y[:, None], axis=1)[:, 0]

    fns = {"numpy formula": plain, "numpy": lambda: pl.sparse_categorical_crossentropy(y, x, from_logits=True)}
    times = measure_interleaved({k_: _looped(f, calls) for k_, f in fns.items()}, repeats=repeats)
    return "numpy fwd", "numpy formula", times


def jax_cases(n, k, calls, repeats):
    import jax.numpy as jnp
    import optax

    import probloss as pl

    x_np, y_np = _inputs(n, k)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    scce = pl.SparseCategoricalCrossentropy(from_logits=True)
    fns = {
        "optax": lambda: optax.softmax_cross_entropy_with_integer_labels(x, y).mean().block_until_ready(),
        "jax": lambda: scce(y, x).block_until_ready(),
    }
    times = measure_interleaved({k_: _looped(f, calls) for k_, f in fns.items()}, repeats=repeats)
    return "jax eager fwd", "optax", times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="calls per timed run (fewer for big shapes)")
    parser.add_argument("--only", default="torch,numpy,jax")
    parser.add_argument("--quick", action="store_true", help="smoke test: 10 calls per run")
    parser.add_argument("--deadline", type=float, default=None, help="(from run_all.py; this suite is short)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls = 10
    import torch

    torch.set_num_threads(1)
    suites = {"torch": torch_cases, "numpy": numpy_cases, "jax": jax_cases}
    cases = []
    print(f"{'case':<16} {'shape':>10} {'implementation':<16} {'us/call':>9} {'ratio':>6} {'target':>6}")
    for name in args.only.split(","):
        for n, k in SHAPES:
            calls = max(5, args.calls * 10_000 // max(10_000, n * k))
            mode, peer, times = suites[name](n, k, calls, args.repeats)
            base = times[peer]["median"] / calls
            for impl, t in times.items():
                per_call = t["median"] / calls
                r = ratio(per_call, base)
                target = TARGETS.get(impl)
                met = "" if target is None else ("ok" if r <= target else "MISS")
                print(f"{mode:<16} {f'{n}x{k}':>10} {impl:<16} {per_call * 1e6:9.1f} {r:6.2f} {target or '':>6} {met}")
                cases.append({"mode": mode, "shape": [n, k], "impl": impl, "peer": peer, "us_per_call": per_call * 1e6,
                              "p20_us": t["p20"] / calls * 1e6, "p80_us": t["p80"] / calls * 1e6, "ratio": r, "target": target})
    write_results("overhead_quick" if args.quick else "overhead", cases, command="python benchmarks/bench_overhead.py " + " ".join(argv or sys.argv[1:]))


if __name__ == "__main__":
    main()
