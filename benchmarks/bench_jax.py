"""probloss on JAX arrays against Optax: jitted ``value_and_grad``, time and peak memory.

Every case times ``jax.jit(jax.value_and_grad(loss))`` of probloss's Keras-style class
(default reduction) and of the peer, interleaved in one process (median of
``--repeats`` runs after a compiling warm-up), then measures each once more in a fresh
process for its peak memory.  Where Optax has no such loss (probability inputs,
Poisson), the peer is the plain ``jax.numpy`` formula.

    python benchmarks/bench_jax.py [--quick] [--only TEXT] [--repeats 5]
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _harness import SHAPES, build_for_memory, common_args, run_suite  # noqa: E402
from _harness import make_inputs as harness_make_inputs  # noqa: E402

import probloss as pl  # noqa: E402

EPS = 1e-7


def make_inputs(loss: str, shape, dtype: str):
    """The shared inputs as JAX arrays (labels int32, JAX's default integer)."""
    return harness_make_inputs(loss, shape, dtype, to_array=jnp.asarray, label_dtype=np.int32)


def _pl(cls, **kw):
    def build(d):
        obj = cls(**kw)
        key = "labels" if cls is pl.SparseCategoricalCrossentropy else "target"
        return lambda p: obj(d[key], p)

    return build


LOSSES = {
    "sparse_logits": {
        "peer": ("optax.softmax_cross_entropy_with_integer_labels",
                 lambda d: lambda p: optax.softmax_cross_entropy_with_integer_labels(p, d["labels"], axis=1).mean()),
        "probloss": {
            "probloss": _pl(pl.SparseCategoricalCrossentropy, from_logits=True, axis=1),
        },
    },
    "cat_logits": {
        "peer": ("optax.softmax_cross_entropy", lambda d: lambda p: optax.softmax_cross_entropy(p, d["target"], axis=1).mean()),
        "probloss": {
            "probloss": _pl(pl.CategoricalCrossentropy, from_logits=True, axis=1),
        },
    },
    "sparse_probs": {
        "peer": ("jnp: -log(take(p, y)).mean()",
                 lambda d: lambda p: -jnp.log(jnp.take_along_axis(p, jnp.expand_dims(d["labels"], 1), axis=1)).mean()),
        "probloss": {"probloss": _pl(pl.SparseCategoricalCrossentropy, axis=1)},
    },
    "cat_probs": {
        "peer": ("jnp: -(t * log p).sum(1).mean()", lambda d: lambda p: -(d["target"] * jnp.log(p)).sum(1).mean()),
        "probloss": {"probloss": _pl(pl.CategoricalCrossentropy, axis=1)},
    },
    "bce": {
        "peer": ("jnp: -(t log p + (1-t) log(1-p)).mean()",
                 lambda d: lambda p: -(d["target"] * jnp.log(p) + (1 - d["target"]) * jnp.log(1 - p)).mean()),
        "probloss": {"probloss": _pl(pl.BinaryCrossentropy)},
    },
    "bce_logits": {
        "peer": ("optax.sigmoid_binary_cross_entropy", lambda d: lambda p: optax.sigmoid_binary_cross_entropy(p, d["target"]).mean()),
        "probloss": {"probloss": _pl(pl.BinaryCrossentropy, from_logits=True)},
    },
    "kl": {
        "peer": ("optax.kl_divergence(log p, t)", lambda d: lambda p: optax.kl_divergence(jnp.log(p), d["target"]).mean()),
        "probloss": {"probloss": _pl(pl.KLDivergence)},
    },
    "poisson": {
        "peer": ("jnp: (p - t log(p + eps)).mean()", lambda d: lambda p: (p - d["target"] * jnp.log(p + EPS)).mean()),
        "probloss": {"probloss": _pl(pl.Poisson)},
    },
}

# Most important first (a run with a deadline drops the tail).  Categorical targets at
# (8192, 32000) are left out: Optax's value_and_grad peaks at 12.7 GiB there, more than
# a benchmark may take on this shared machine; (1024, 128256) has the same class count
# scale.  bfloat16 is left out: XLA on CPU emulates it, which says little about either.
PLAN = (
    [("sparse_logits", "8192x32000", "float32", ("value_and_grad",)), ("cat_logits", "1024x128256", "float32", ("value_and_grad",)),
     ("sparse_logits", "1024x128256", "float32", ("value_and_grad",))]
    + [(loss, s, "float32", ("value_and_grad",)) for s in ("65536x10", "256x8x4096") for loss in ("sparse_logits", "cat_logits")]
    + [(loss, "256x8x4096", "float32", ("value_and_grad",)) for loss in ("sparse_probs", "cat_probs", "bce", "bce_logits", "kl", "poisson")]
)


def impls_for(loss, shape_key, dtype, mode):
    spec = LOSSES[loss]
    name, peer = spec["peer"]
    return {"peer: " + name: peer, **spec["probloss"]}


def make_runner(d, builder, mode, name):
    """``jit(value_and_grad)`` w.r.t. the predictions; labels and targets are arguments too.

    (Closing over them instead would make them constants of the compiled program, which
    XLA then folds at compile time: not how a training step sees its batch.)
    """
    aux = {k: v for k, v in d.items() if k != "pred"}

    def loss(p, a):
        return builder({"pred": p, **a})(p)

    f = jax.jit(jax.value_and_grad(loss))
    p = d["pred"]
    return (lambda: jax.block_until_ready(f(p, aux))), None


def main():
    args = common_args(__doc__).parse_args()
    run_suite(
        "jax",
        PLAN,
        args,
        shapes=SHAPES,
        make_inputs=make_inputs,
        impls_for=impls_for,
        make_runner=make_runner,
        memory_task=functools.partial(build_for_memory, make_inputs=make_inputs, impls_for=impls_for, make_runner=make_runner),
        nbytes=lambda d: sum(a.size * a.dtype.itemsize for a in d.values()),
    )


if __name__ == "__main__":
    main()
