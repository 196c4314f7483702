"""The cost of value checks inside a ``torch.compile``d training step.

    python benchmarks/bench_compile_checks.py [--repeats 7]

A forward + backward of ``SparseCategoricalCrossentropy(from_logits=True)`` (the labels'
range and the result's finiteness are tested inside the compiled graph by one operator
each, which raises only if a test fails) compiled by ``torch.compile`` in its default
mode, against the same step run with ``probloss.set_value_checks(False)`` (which
``torch.compile`` guards on: it compiles a graph without the checks) and
against a compiled ``F.cross_entropy``, interleaved run by run, torch on one thread, at
32 x 10 and 256 x 100 (many steps per run), float32.  Also the probabilities form, whose
range test reads the whole input.  Writes ``results/compile_checks.json``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import measure_interleaved, ratio, write_results  # noqa: E402

import probloss as pl  # noqa: E402

CASES = [("sparse, logits", True, (32, 10), 400), ("sparse, logits", True, (256, 100), 200),
         ("sparse, probabilities", False, (32, 10), 400), ("sparse, probabilities", False, (256, 100), 200)]


def _steps(loss, y, logits):
    """Three forward functions with distinct code objects (torch.compile caches per code);
    each step runs one compiled forward and its backward."""

    def on(x):
        return loss(y, x if logits else x.softmax(-1))

    def off(x):
        return loss(y, x if logits else x.softmax(-1))

    def native(x):
        return F.cross_entropy(x, y) if logits else F.nll_loss(x.softmax(-1).clamp(1e-7, 1 - 1e-7).log(), y)

    return on, off, native


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--deadline", type=float, default=None)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # torch's own notices while it compiles
    torch.set_num_threads(1)
    rows = []
    print(f"{'case':<24} {'shape':>9} {'checks on us':>13} {'off us':>8} {'native us':>10} {'on/off':>7} {'on/native':>10}")
    for name, logits, (n, k), steps in CASES:
        steps = max(1, steps // 10) if args.quick else steps
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, k, generator=gen).requires_grad_()
        y = torch.randint(0, k, (n,), generator=gen)
        on, off, native = (torch.compile(f) for f in _steps(pl.SparseCategoricalCrossentropy(from_logits=logits), y, logits))

        def run(step, steps=steps, x=x):
            def go():
                for _ in range(steps):
                    step(x).backward()

            return go

        go_off = run(off)

        def run_off(go=go_off):
            with pl.set_value_checks(False):  # (torch.compile guards on the switch: traced without the checks)
                go()

        times = measure_interleaved({"on": run(on), "off": run_off, "native": run(native)}, repeats=args.repeats, warmup=2)
        t = {key: times[key]["median"] / steps for key in times}
        r, rn = ratio(t["on"], t["off"]), ratio(t["on"], t["native"])
        print(f"{name:<24} {f'{n}x{k}':>9} {t['on'] * 1e6:13.1f} {t['off'] * 1e6:8.1f} {t['native'] * 1e6:10.1f} {r:7.3f} {rn:10.3f}")
        rows.append({"case": name, "shape": [n, k], "on_us": t["on"] * 1e6, "off_us": t["off"] * 1e6,
                     "native_us": t["native"] * 1e6, "ratio": r, "ratio_native": rn,
                     "ratio_fastest": ratio(times["on"]["min"], times["off"]["min"])})
    write_results("compile_checks_quick" if args.quick else "compile_checks", rows,
                  command="python benchmarks/bench_compile_checks.py " + " ".join(argv or sys.argv[1:]))


if __name__ == "__main__":
    main()
