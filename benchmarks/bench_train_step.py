"""A whole training step with a small batch: probloss's losses against ``F.cross_entropy``.

    python benchmarks/bench_train_step.py [--repeats 7] [--steps 200]

An MLP (64 -> 128 -> 10, ReLU) on 8 x 8 images of ten classes (generated: one template per
class plus noise, the size of scikit-learn's digits), batch 32, SGD with momentum, torch
on one thread.  One step is forward, loss, backward and the optimizer update.  The
variants, interleaved run by run, differ only in the loss:

* ``F.cross_entropy`` (the peer);
* ``probloss.torch.cross_entropy`` (the drop-in);
* ``SparseCategoricalCrossentropy(from_logits=True)`` (the Keras-style class, value checks on).

Each run times ``--steps`` steps; the table gives the median time per step and the ratio
to the peer (target for the class: at most 1.2x).  Writes ``results/train_step.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import measure_interleaved, ratio, write_results  # noqa: E402

import probloss as pl  # noqa: E402
from probloss.torch import cross_entropy  # noqa: E402


def make_digits(n=1797, seed=0):
    """``n`` 8 x 8 images (flattened, in [0, 16]) of ten classes and their labels."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 16, (10, 64))
    labels = rng.integers(0, 10, n)
    images = np.clip(templates[labels] + rng.normal(0, 4, (n, 64)), 0, 16)
    return torch.tensor(images / 16, dtype=torch.float32), torch.tensor(labels)


def make_step(loss_fn, x, y, batch=32, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    state = {"i": 0}

    def step():
        i = state["i"]
        state["i"] = (i + batch) % (x.shape[0] - batch)
        xb, yb = x[i : i + batch], y[i : i + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--deadline", type=float, default=None, help="(from run_all.py; this suite is short)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 20
    torch.set_num_threads(1)
    x, y = make_digits()
    scce = pl.SparseCategoricalCrossentropy(from_logits=True)
    variants = {
        "F.cross_entropy": lambda logits, labels: F.cross_entropy(logits, labels),
        "probloss.torch": lambda logits, labels: cross_entropy(logits, labels),
        "probloss class": lambda logits, labels: scce(labels, logits),
    }
    steps = {name: make_step(fn, x, y) for name, fn in variants.items()}

    def looped(step):
        def run():
            for _ in range(args.steps):
                step()

        return run

    times = measure_interleaved({name: looped(s) for name, s in steps.items()}, repeats=args.repeats)
    base = times["F.cross_entropy"]["median"] / args.steps
    cases = []
    print(f"{'implementation':<18} {'us/step':>9} {'ratio':>6}")
    for name, t in times.items():
        per_step = t["median"] / args.steps
        r = ratio(per_step, base)
        print(f"{name:<18} {per_step * 1e6:9.1f} {r:6.2f}")
        cases.append({"impl": name, "us_per_step": per_step * 1e6, "p20_us": t["p20"] / args.steps * 1e6,
                      "p80_us": t["p80"] / args.steps * 1e6, "ratio": r, "target": 1.2 if name == "probloss class" else None})
    write_results("train_step_quick" if args.quick else "train_step", cases,
                  command="python benchmarks/bench_train_step.py " + " ".join(argv or sys.argv[1:]))


if __name__ == "__main__":
    main()
