"""Cost of the eager value checks (label range, probability range, NaN) on a big batch.

For each loss and backend, times the loss with ``probloss.set_value_checks(True)`` and
``False`` in the same process and prints ``checks on / checks off``.  The target is
under 1.10 at (N, K) = (8192, 32000) float32.

    python benchmarks/bench_checks.py [--quick] [--backends numpy,torch]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import measure_time, write_results  # noqa: E402

import probloss as pl  # noqa: E402


def _cases(n, k, rng):
    logits = rng.standard_normal((n, k), dtype=np.float32)
    labels = rng.integers(0, k, size=n)
    e = np.exp(logits[: max(1, n // 8)] - logits[: max(1, n // 8)].max(axis=1, keepdims=True))
    probs = np.tile(e / e.sum(axis=1, keepdims=True), (8, 1))[:n].astype(np.float32)
    onehot = np.zeros((n, k), np.float32)
    onehot[np.arange(n), labels] = 1
    return [
        ("sparse_from_logits", lambda xp: (pl.sparse_categorical_crossentropy, xp(labels), xp(logits), {"from_logits": True})),
        ("categorical_from_logits", lambda xp: (pl.categorical_crossentropy, xp(onehot), xp(logits), {"from_logits": True})),
        ("sparse_from_probs", lambda xp: (pl.sparse_categorical_crossentropy, xp(labels), xp(probs), {})),
        ("binary_from_logits", lambda xp: (pl.binary_crossentropy, xp(onehot), xp(logits), {"from_logits": True})),
    ]


def _converter(backend):
    if backend == "numpy":
        return np.asarray, None
    if backend == "torch":
        import torch

        return torch.from_numpy, None
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return jnp.asarray, lambda: None if jax is None else None
    raise ValueError(backend)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="(1024, 32000) instead of (8192, 32000)")
    parser.add_argument("--backends", default="numpy,torch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n, k = (1024, 32000) if args.quick else (8192, 32000)
    rng = np.random.default_rng(0)
    rows = []
    print(f"value-check cost at (N, K) = ({n}, {k}) float32, median of {args.repeats} runs")
    print(f"{'backend':8s} {'loss':26s} {'checks on':>11s} {'checks off':>11s} {'on/off':>7s}")
    for backend in args.backends.split(","):
        conv, _ = _converter(backend)
        for name, make in _cases(n, k, rng):
            fn, y, p, kw = make(conv)

            def run(fn=fn, y=y, p=p, kw=kw):
                out = fn(y, p, **kw)
                if hasattr(out, "block_until_ready"):
                    out.block_until_ready()

            with pl.set_value_checks(True):
                on = measure_time(run, repeats=args.repeats)
            with pl.set_value_checks(False):
                off = measure_time(run, repeats=args.repeats)
            ratio = on["median"] / off["median"]
            rows.append({"backend": backend, "loss": name, "shape": [n, k], "on": on, "off": off, "ratio": ratio})
            print(f"{backend:8s} {name:26s} {on['median'] * 1e3:9.1f}ms {off['median'] * 1e3:9.1f}ms {ratio:7.3f}", flush=True)
            del y, p
    path = write_results("checks" + ("_quick" if args.quick else ""), rows)
    print(f"results: {path.relative_to(Path(__file__).resolve().parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
