"""The cost of value checks inside a jitted JAX step.

    python benchmarks/bench_jit_checks.py [--repeats 7]

``jax.jit(jax.value_and_grad(loss))`` of ``SparseCategoricalCrossentropy(from_logits=True)``
(the labels' range and the result's finiteness are tested inside the program, and a host
callback runs only if one fails) against the same step compiled with
``probloss.set_value_checks(False)``, interleaved run by run, at 32 x 10 (many steps per
run) and 8192 x 32000, float32.  Also the probabilities form, whose range test reads the
whole input.  Writes ``results/jit_checks.json``; the target is at most 1.10x.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from _harness import measure_interleaved, ratio, write_results  # noqa: E402

import probloss as pl  # noqa: E402

CASES = [("sparse, logits", True, (32, 10), 500), ("sparse, logits", True, (8192, 32000), 1),
         ("sparse, probabilities", False, (32, 10), 500), ("sparse, probabilities", False, (8192, 32000), 1)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--deadline", type=float, default=None)
    args = parser.parse_args(argv)
    rows = []
    print(f"{'case':<24} {'shape':>12} {'checks on ms':>13} {'off ms':>9} {'on/off':>7}")
    for name, logits, shape, steps in CASES:
        n, k = (max(1, shape[0] // 16), shape[1]) if args.quick else shape
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, k), dtype=np.float32)
        x = jnp.asarray(x if logits else np.exp(x) / np.exp(x).sum(1, keepdims=True))
        y = jnp.asarray(rng.integers(0, k, n))
        loss = pl.SparseCategoricalCrossentropy(from_logits=logits)
        on = jax.jit(jax.value_and_grad(lambda z, loss=loss, y=y: loss(y, z)))
        with pl.set_value_checks(False):  # traced now, without the checks
            off = jax.jit(jax.value_and_grad(lambda z, loss=loss, y=y: loss(y, z)))
            jax.block_until_ready(off(x))

        def run(step, x=x, steps=steps):
            def go():  # each step waits for its result, as a training step whose next input depends on it
                for _ in range(steps):
                    jax.block_until_ready(step(x))

            return go

        times = measure_interleaved({"on": run(on), "off": run(off)}, repeats=args.repeats, warmup=2)
        t_on, t_off = times["on"]["median"] / steps, times["off"]["median"] / steps
        r = ratio(t_on, t_off)
        print(f"{name:<24} {f'{n}x{k}':>12} {t_on * 1e3:13.4f} {t_off * 1e3:9.4f} {r:7.3f}")
        rows.append({"case": name, "shape": [n, k], "on_ms": t_on * 1e3, "off_ms": t_off * 1e3, "ratio": r,
                     "ratio_fastest": ratio(times["on"]["min"], times["off"]["min"])})
    write_results("jit_checks_quick" if args.quick else "jit_checks", rows,
                  command="python benchmarks/bench_jit_checks.py " + " ".join(argv or sys.argv[1:]))


if __name__ == "__main__":
    main()
