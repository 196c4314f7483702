"""Train a small torch MLP with probloss, three ways, next to torch's own cross-entropy.

Each run starts from the same weights and sees the same batches; only the loss differs:

* ``native``:   ``torch.nn.functional.cross_entropy(logits, y)``
* ``class``:    ``probloss.SparseCategoricalCrossentropy(from_logits=True)(y, logits)``
  (Keras's argument order: labels first)
* ``drop-in``:  ``probloss.torch.cross_entropy(logits, y)``, the same arguments as
  ``F.cross_entropy`` in about half the memory on big batches
* ``module``:   ``probloss.torch.LossModule(...)``, any probloss loss as an ``nn.Module``

    python examples/torch_loop.py --steps 20
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
import torch.nn.functional as F

import probloss as pl
from probloss.torch import LossModule, cross_entropy


def make_data(n=256, features=10, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    teacher = torch.randn(features, classes, generator=g)
    y = (x @ teacher + 0.5 * torch.randn(n, classes, generator=g)).argmax(dim=1)
    return x, y


def train(model, loss_fn, x, y, steps, batch=64):
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    history = []
    for step in range(steps):
        i = (step * batch) % len(x)
        xb, yb = x[i : i + batch], y[i : i + batch]
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--json", action="store_true", help="print the loss histories as one JSON object")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    x, y = make_data()
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 5))

    scce = pl.SparseCategoricalCrossentropy(from_logits=True)
    module = LossModule(pl.SparseCategoricalCrossentropy(from_logits=True))
    losses = {
        "native": lambda logits, labels: F.cross_entropy(logits, labels),
        "class": lambda logits, labels: scce(labels, logits),
        "drop-in": lambda logits, labels: cross_entropy(logits, labels),
        "module": lambda logits, labels: module(labels, logits),
    }
    histories = {name: train(copy.deepcopy(model), fn, x, y, args.steps) for name, fn in losses.items()}

    if args.json:
        print(json.dumps({"native": histories["native"], "probloss": {k: v for k, v in histories.items() if k != "native"}}))
        return
    print(f"{'step':>4}  " + "  ".join(f"{name:>10}" for name in histories))
    for step in range(args.steps):
        print(f"{step:>4}  " + "  ".join(f"{h[step]:10.6f}" for h in histories.values()))
    diff = max(abs(a - b) for name, h in histories.items() if name != "native" for a, b in zip(h, histories["native"]))
    print(f"largest difference from F.cross_entropy over {args.steps} steps: {diff:.2e}")


if __name__ == "__main__":
    main()
