"""probloss on NumPy arrays against Keras 3 (NumPy backend) and a plain NumPy formula.

Forward only (NumPy has no autodiff): each case times probloss's Keras-style class,
Keras's own class on its NumPy backend, and the textbook NumPy expression, interleaved
in one process (median of ``--repeats`` runs after a warm-up), then measures each once
more in a fresh process for its peak memory.

    python benchmarks/bench_numpy.py [--quick] [--only TEXT] [--repeats 5]
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "numpy"  # before keras is imported

sys.path.insert(0, str(Path(__file__).resolve().parent))
import keras  # noqa: E402
import numpy as np  # noqa: E402
from _harness import SHAPES, build_for_memory, common_args, run_suite  # noqa: E402
from _harness import make_inputs as harness_make_inputs  # noqa: E402

import probloss as pl  # noqa: E402
from probloss._backends import numpy as _numpy_backend  # noqa: E402

# probloss's compiled (numba) kernels load with the script, as torch's do, so the memory
# of one call, measured in a process forked from this one, does not count numba itself.
_numpy_backend._kernels()  # imports numba and loads every kernel, or None without numba

EPS = 1e-7


make_inputs = harness_make_inputs


def _lse(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _take(p, y, axis):
    return np.squeeze(np.take_along_axis(p, np.expand_dims(y, axis), axis=axis), axis)


FORMULAS = {
    "sparse_logits": ("lse(x) - take(x, y)", lambda d, p: (np.squeeze(_lse(p, 1), 1) - _take(p, d["labels"], 1)).mean()),
    "cat_logits": ("-(t * (x - lse(x))).sum(1)", lambda d, p: -(d["target"] * (p - _lse(p, 1))).sum(1).mean()),
    "sparse_probs": ("-log(take(p, y))", lambda d, p: -np.log(_take(p, d["labels"], 1)).mean()),
    "cat_probs": ("-(t * log p).sum(1)", lambda d, p: -(d["target"] * np.log(p)).sum(1).mean()),
    "bce": ("-(t log p + (1-t) log(1-p))", lambda d, p: -(d["target"] * np.log(p) + (1 - d["target"]) * np.log(1 - p)).mean()),
    "bce_logits": ("max(x,0) - x t + log1p(exp(-|x|))",
                   lambda d, p: (np.maximum(p, 0) - p * d["target"] + np.log1p(np.exp(-np.abs(p)))).mean()),
    "kl": ("(t log(t / p)).sum(-1)", lambda d, p: (d["target"] * np.log(d["target"] / p)).sum(-1).mean()),
    "poisson": ("p - t log(p + eps)", lambda d, p: (p - d["target"] * np.log(p + EPS)).mean()),
}

CLASSES = {  # loss -> (probloss class, Keras class, constructor kwargs)
    "sparse_logits": ("SparseCategoricalCrossentropy", {"from_logits": True, "axis": 1}),
    "cat_logits": ("CategoricalCrossentropy", {"from_logits": True, "axis": 1}),
    "sparse_probs": ("SparseCategoricalCrossentropy", {"axis": 1}),
    "cat_probs": ("CategoricalCrossentropy", {"axis": 1}),
    "bce": ("BinaryCrossentropy", {}),
    "bce_logits": ("BinaryCrossentropy", {"from_logits": True}),
    "kl": ("KLDivergence", {}),
    "poisson": ("Poisson", {}),
}


def _cls_builder(module, loss):
    name, kw = CLASSES[loss]

    def build(d):
        obj = getattr(module, name)(**kw)
        key = "labels" if name.startswith("Sparse") else "target"
        return lambda p: obj(d[key], p)

    return build


PLAN = (
    [(loss, s, "float32", ("fwd",)) for s in SHAPES for loss in ("sparse_logits", "cat_logits")]
    + [(loss, "256x8x4096", "float32", ("fwd",)) for loss in ("sparse_probs", "cat_probs", "bce", "bce_logits", "kl", "poisson")]
)


def impls_for(loss, shape_key, dtype, mode):
    out = {}
    # Keras's NumPy backend supports sparse labels on the last axis only; and its
    # categorical cross-entropy at (8192, 32000) peaks near 10 GiB, more than a benchmark
    # may take on this shared machine (it is timed at (1024, 128256) instead).
    keras_ok = not (loss.startswith("sparse") and len(SHAPES[shape_key]) > 2)
    if loss == "cat_logits" and shape_key == "8192x32000":
        keras_ok = False
    if keras_ok:
        out["peer: keras (numpy backend)"] = _cls_builder(keras.losses, loss)
    label, formula = FORMULAS[loss]
    out["peer: numpy " + label] = lambda d: lambda p: formula(d, p)
    out["probloss"] = _cls_builder(pl, loss)
    if shape_key == "8192x32000" and loss == "sparse_logits":
        plain = _cls_builder(pl, loss)

        def checks_off(d):
            f = plain(d)

            def run(p):
                with pl.set_value_checks(False):
                    return f(p)

            return run

        out["probloss checks off"] = checks_off
    return out


def make_runner(d, builder, mode, name):
    f = builder(d)
    p = d["pred"]
    return (lambda: f(p)), None


def main():
    args = common_args(__doc__).parse_args()
    run_suite(
        "numpy",
        PLAN,
        args,
        shapes=SHAPES,
        make_inputs=make_inputs,
        impls_for=impls_for,
        make_runner=make_runner,
        memory_task=functools.partial(build_for_memory, make_inputs=make_inputs, impls_for=impls_for, make_runner=make_runner),
        nbytes=lambda d: sum(a.nbytes for a in d.values()),
    )


if __name__ == "__main__":
    main()
