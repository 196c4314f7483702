"""A jitted JAX + Optax training step with probloss, next to Optax's own cross-entropy.

Both runs start from the same parameters and see the same batches; only the loss differs:

* ``optax``:    ``optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()``
* ``probloss``: ``probloss.SparseCategoricalCrossentropy(from_logits=True)(y, logits)``

probloss's value checks read numbers, so they are skipped while ``jax.jit`` traces: the
jitted step costs what Optax's does.

    python examples/jax_optax.py --steps 20
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

import probloss as pl


def make_data(n=256, features=10, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    teacher = rng.normal(size=(features, classes))
    y = (x @ teacher + 0.5 * rng.normal(size=(n, classes))).argmax(axis=1).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def init_params(key, sizes=(10, 32, 5)):
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (n_in, n_out)) / jnp.sqrt(n_in), jnp.zeros(n_out)))
    return params


def forward(params, x):
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = params[-1]
    return x @ w + b


SCCE = pl.SparseCategoricalCrossentropy(from_logits=True)

LOSSES = {
    "optax": lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
    "probloss": lambda logits, y: SCCE(y, logits),
}


def train(name, params, x, y, steps, batch=64):
    loss_of = LOSSES[name]
    opt = optax.sgd(0.2)
    state = opt.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        loss, grads = jax.value_and_grad(lambda p: loss_of(forward(p, xb), yb))(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    history = []
    for i in range(steps):
        j = (i * batch) % len(x)
        params, state, loss = step(params, state, x[j : j + batch], y[j : j + batch])
        history.append(float(loss))
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--json", action="store_true", help="print the loss histories as one JSON object")
    args = parser.parse_args(argv)

    x, y = make_data()
    params = init_params(jax.random.key(0))
    histories = {name: train(name, params, x, y, args.steps) for name in LOSSES}

    if args.json:
        print(json.dumps({"native": histories["optax"], "probloss": {"class": histories["probloss"]}}))
        return
    print(f"{'step':>4}  {'optax':>10}  {'probloss':>10}")
    for i in range(args.steps):
        print(f"{i:>4}  {histories['optax'][i]:10.6f}  {histories['probloss'][i]:10.6f}")
    diff = max(abs(a - b) for a, b in zip(histories["optax"], histories["probloss"]))
    print(f"largest difference from Optax over {args.steps} steps: {diff:.2e}")


if __name__ == "__main__":
    main()
