"""Cost of the eager value checks (label range, probability range, NaN) on a big batch.

For each loss and backend, times the loss with ``probloss.set_value_checks(True)`` and
``False``, interleaved run by run in the same process, and prints
``checks on / checks off`` for the medians and for the fastest runs.  The target is
under 1.10 at (N, K) = (8192, 32000) float32.
With ``--backward`` the torch cases time forward plus backward (a training step's loss
work) instead of the forward alone.

    python benchmarks/bench_checks.py [--quick] [--backends numpy,torch] [--backward]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import make_inputs, measure_interleaved, write_results  # noqa: E402

import probloss as pl  # noqa: E402

# name -> (input kind of the harness's make_inputs, loss function, label key, keyword arguments)
CASES = {
    "sparse_from_logits": ("sparse_logits", pl.sparse_categorical_crossentropy, "labels", {"from_logits": True}),
    "sparse_from_probs": ("sparse_probs", pl.sparse_categorical_crossentropy, "labels", {}),
    "categorical_from_logits": ("cat_logits", pl.categorical_crossentropy, "target", {"from_logits": True}),
    "categorical_from_probs": ("cat_probs", pl.categorical_crossentropy, "target", {}),
    "binary_from_logits": ("bce_logits", pl.binary_crossentropy, "target", {"from_logits": True}),
    "binary_from_probs": ("bce", pl.binary_crossentropy, "target", {}),
    "kl_divergence": ("kl", pl.kl_divergence, "target", {}),
    "poisson": ("poisson", pl.poisson, "target", {}),
}


def _to_array(backend):
    if backend == "numpy":
        return np.ascontiguousarray
    if backend == "torch":
        import torch

        return lambda a: torch.from_numpy(np.ascontiguousarray(a))
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray
    raise SystemExit(f"unknown backend {backend!r}; use numpy, torch or jax")


def _runner(backend, fn, y, p, kw, backward):
    if backward:
        import torch

        p = p.clone().requires_grad_(True)

        def run():
            p.grad = None
            torch.sum(fn(y, p, **kw)).backward()

        return run

    def run():
        out = fn(y, p, **kw)
        if hasattr(out, "block_until_ready"):
            out.block_until_ready()

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="(1024, 32000) instead of (8192, 32000)")
    parser.add_argument("--backends", default="numpy,torch")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    parser.add_argument("--backward", action="store_true", help="torch: time forward + backward")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    n, k = (1024, 32000) if args.quick else (8192, 32000)
    mode = "forward+backward" if args.backward else "forward"
    rows = []
    print(f"value-check cost at (N, K) = ({n}, {k}) float32, {mode}, median of {args.repeats} interleaved runs")
    print("on/off: ratio of the medians, and of the fastest runs (the least disturbed by the machine)")
    print(f"{'backend':8s} {'loss':26s} {'checks on':>11s} {'checks off':>11s} {'on/off':>7s} {'fastest':>8s}")
    for backend in args.backends.split(","):
        if args.backward and backend != "torch":
            continue
        for name in args.cases.split(","):
            kind, fn, label_key, kw = CASES[name]
            data = make_inputs(kind, (n, k), "float32", to_array=_to_array(backend))
            run = _runner(backend, fn, data[label_key], data["pred"], kw, args.backward)
            timing = measure_interleaved(
                {"on": run, "off": run},
                setups={"on": lambda: pl.set_value_checks(True), "off": lambda: pl.set_value_checks(False)},
                repeats=args.repeats,
            )
            pl.set_value_checks(True)
            on, off = timing["on"], timing["off"]
            ratio, fastest = on["median"] / off["median"], on["min"] / off["min"]
            rows.append({"backend": backend, "loss": name, "mode": mode, "shape": [n, k], "on": on, "off": off,
                         "ratio": ratio, "ratio_fastest": fastest})
            print(f"{backend:8s} {name:26s} {on['median'] * 1e3:9.1f}ms {off['median'] * 1e3:9.1f}ms {ratio:7.3f} {fastest:8.3f}", flush=True)
            del data, run
    suffix = ("_backward" if args.backward else "") + ("_quick" if args.quick else "")
    path = write_results("checks" + suffix, rows)
    print(f"results: {path.relative_to(Path(__file__).resolve().parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
