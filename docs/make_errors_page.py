"""Write docs/errors.md: every kind of bad input, the call that shows it, and our message.

Run ``python docs/make_errors_page.py``; tests/test_errors_page.py checks the page is
current.  Each example is executed, so the messages shown are the real ones.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

EXAMPLES = [
    ("Label format", [
        ("One-hot labels given to a sparse loss", "pl.sparse_categorical_crossentropy([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])"),
        ("Integer class labels given to a categorical loss", "pl.categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])"),
        ("(N,) binary targets against (N, K) predictions", "pl.binary_crossentropy([1.0, 0.0], [[0.6, 0.4], [0.3, 0.7]])"),
        ("Class indices of the wrong shape (transposed)", "pl.sparse_categorical_crossentropy([[1, 2]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])"),
        ("Fractional float labels used as class indices", "pl.sparse_categorical_crossentropy([1.5, 2.0], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])"),
    ]),
    ("Label values", [
        ("Class index >= number of classes", "pl.sparse_categorical_crossentropy([1, 5], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])"),
        ("Negative class index that is not `ignore_class`", "pl.SparseCategoricalCrossentropy(ignore_class=255)([-1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])"),
        ("Binary targets outside [0, 1]", "pl.binary_crossentropy([[2.0, 0.0]], [[0.5, 0.5]])"),
        ("Soft labels with a negative entry", "pl.categorical_crossentropy([[1.2, -0.2, 0.0]], [[0.5, 0.3, 0.2]])"),
        ("NaN in the labels", "pl.categorical_crossentropy([[float('nan'), 1.0, 0.0]], [[0.5, 0.3, 0.2]])"),
    ]),
    ("Predictions", [
        ("Logits passed with `from_logits=False`", "pl.categorical_crossentropy([[0, 1, 0]], [[2.0, -1.0, 0.5]])"),
        ("Probabilities whose rows do not sum to 1 (a warning: Keras renormalises)", "pl.categorical_crossentropy([[0.0, 1.0]], [[0.2, 0.4]])"),
        ("NaN or inf in the predictions", "pl.sparse_categorical_crossentropy([0, 1], [[float('inf'), 0.0], [0.0, 1.0]], from_logits=True)"),
        ("Negative Poisson rates", "pl.poisson([[1.0, 2.0]], [[-1.0, 2.0]])"),
        ("KL inputs outside [0, 1]", "pl.kl_divergence([[0.5, 0.5]], [[2.0, -1.0]])"),
    ]),
    ("Shapes", [
        ("Batch sizes that differ", "pl.sparse_categorical_crossentropy([0, 1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])"),
        ("Class counts that differ", "pl.categorical_crossentropy([[1, 0, 0, 0]], [[0.2, 0.3, 0.5]])"),
        ("An (N,) weight that Keras would apply per timestep", "pl.CategoricalCrossentropy()(np.eye(3)[None].repeat(3, 0), np.full((3, 3, 3), 1 / 3), sample_weight=[1, 2, 3])"),
        ("`axis` out of range", "pl.categorical_crossentropy([[0, 1]], [[0.3, 0.7]], axis=2)"),
        ("Empty inputs", "pl.categorical_crossentropy(np.zeros((0, 3)), np.zeros((0, 3)))"),
        ("A `sample_weight` that cannot broadcast", "pl.CategoricalCrossentropy()([[0, 1], [1, 0]], [[0.3, 0.7], [0.6, 0.4]], sample_weight=[1, 2, 3])"),
    ]),
    ("Arguments", [
        ("Unknown `reduction`", "pl.CategoricalCrossentropy(reduction='auto')"),
        ("`label_smoothing` outside [0, 1]", "pl.BinaryCrossentropy(label_smoothing=1.5)"),
        ("`gamma` < 0", "pl.BinaryFocalCrossentropy(gamma=-1.0)"),
        ("`alpha` outside [0, 1]", "pl.BinaryFocalCrossentropy(alpha=1.2)"),
        ("`ignore_class` that is not an integer", "pl.SparseCategoricalCrossentropy(ignore_class='pad')"),
        ("Unknown name in `get()`", "pl.get('sparse_crossentropy')"),
        ("A config naming another module", "pl.deserialize({'module': 'os', 'class_name': 'system', 'config': {}})"),
    ]),
    ("Types", [
        ("A string instead of an array", "pl.categorical_crossentropy('cat', [[0.5, 0.5]])"),
        ("An arbitrary object", "pl.SparseCategoricalCrossentropy()([1, 2], object())"),
        ("Arrays from two libraries in one call", "pl.categorical_crossentropy(jnp.eye(2), torch.eye(2))"),
        ("Integer predictions", "pl.binary_crossentropy([[1.0, 0.0]], np.array([[1, 0]]))"),
    ]),
]

HEADER = """# Errors: what probloss says about bad input

Every mistake below raises a subclass of `probloss.ProblossError` (itself a
`ValueError`; wrong types raise `ProblossTypeError`, also a `TypeError`), in the functions,
the classes and the `tf.nn` primitives alike. The message names the argument, says what
was received and what was expected, and how to fix it.

| exception | raised for |
|---|---|
| `LabelFormatError` | labels in the wrong format for the loss (one-hot vs class indices, fractional indices) |
| `LabelValueError` | label values out of range (class index, binary target, negative counts, NaN) |
| `PredictionValueError` | predictions out of range (logits as probabilities, NaN/inf, negative rates) |
| `ShapeError` | shapes of `y_true`, `y_pred`, `sample_weight` that do not fit, empty inputs |
| `ArgumentError` | options out of their domain (`reduction`, `label_smoothing`, `gamma`, names, configs) |
| `ProblossTypeError` | strings, objects, mixed array libraries, integer predictions |
| `ProblossWarning` (a warning) | valid but suspicious input, e.g. probability rows not summing to 1 |

Value checks (label ranges, probability ranges, NaN) look at the numbers. They run
eagerly; inside `jax.jit`, `jax.grad` and `jax.vmap`, and under `torch.compile`, they
become part of the compiled program and raise when it runs (under `jax.jit` as a
`JaxRuntimeError` whose message ends with ours); they are skipped under `torch.func.vmap`.
`probloss.set_value_checks(False)` (also a context manager) turns them off for the
calling thread. Shape, dtype and argument checks always run.

On CUDA tensors the checks never stop the device: they run there (inside the Triton
kernels, in the same pass as the loss) and their result is read later, at the next probloss
loss call of the thread or by `probloss.torch.check_pending()`. The error is the same, its
message prefixed with the call it comes from (the loss, the call's number on the thread, and
the caller's `file:line`); meanwhile a class index out of range gives a NaN loss there.

The value checks are built to cost next to nothing where the loss reads the inputs anyway:

- on small torch inputs, `F.cross_entropy` tests the class indices itself on the CPU;
  only when it refuses one does probloss look for it, to name it;
- with numba installed (`pip install "probloss[fast]"`), big float32 NumPy arrays of
  binary, categorical, KL and Poisson losses are computed in one compiled loop per loss,
  which tests the range of both inputs as it reads them (one unsigned integer `max` of
  their bits per element); only when that test fails are the inputs scanned again, to
  name the offending element; the probability checks of the sparse loss share one
  compiled pass with the row sums Keras renormalises by;
- elsewhere a range test is min/max reductions (one fused `aminmax` on torch), and
  torch's chunked kernel takes the labels' minimum while it reads them;
- NaN/inf is found from the per-sample result, so only a failing call scans the inputs to
  locate the culprit, a block of rows at a time, stopping at the first.

Their cost is measured by `python benchmarks/bench_checks.py` (add `--backward` for
forward plus backward on torch) at (N, K) = (8192, 32000) float32 on a 2-core CPU: the
time with checks over the time without, interleaved run by run, as the ratio of the
medians (of the fastest runs), and the time without checks. With checks off, the compiled
loops skip the range test too, so these ratios are the checks' whole cost.

CHECK_COST_TABLE

A ratio below 1 is noise, or the scan being faster than the reduction it replaces
(NumPy's row sums). On torch tensors the checks are torch reductions on torch's own
threads (probloss starts none); the forward of the sparse loss from probabilities, little
more than one read of `y_pred`, pays most for them. Where even that matters,
`set_value_checks(False)` removes the cost.

This page is generated by `docs/make_errors_page.py`, which runs every example.
"""


def run_example(code: str) -> tuple[str, str]:
    import jax.numpy as jnp
    import numpy as np
    import torch

    import probloss as pl

    env = {"pl": pl, "np": np, "torch": torch, "jnp": jnp}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            eval(code, env)  # noqa: S307 - our own fixed examples, not user input
        except Exception as exc:  # noqa: BLE001 - we report whatever is raised
            return type(exc).__name__, str(exc)
    for w in caught:
        if issubclass(w.category, pl.ProblossWarning):
            return w.category.__name__, str(w.message)
    return "no error", ""


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
CHECK_LOSSES = {
    "sparse_from_logits": "sparse from logits",
    "sparse_from_probs": "sparse from probabilities",
    "categorical_from_logits": "categorical from logits",
    "categorical_from_probs": "categorical from probabilities",
    "binary_from_logits": "binary from logits",
    "binary_from_probs": "binary from probabilities",
    "kl_divergence": "KL divergence",
    "poisson": "Poisson",
}


def check_cost_table() -> str:
    """The table of check costs, from the JSON files that bench_checks.py writes."""
    cases = {}
    for name in ("checks.json", "checks_backward.json"):
        for case in json.loads((RESULTS / name).read_text())["cases"]:
            cases[case["backend"], case["loss"], case["mode"]] = case

    def cell(key):
        case = cases.get(key)
        if case is None:
            return "-"
        return f"{case['ratio']:.2f} ({case['ratio_fastest']:.2f}) of {case['off']['median'] * 1e3:.0f} ms"

    lines = ["| loss | torch, forward | torch, forward + backward | NumPy, forward |", "|---|---|---|---|"]
    for loss, title in CHECK_LOSSES.items():
        keys = [("torch", loss, "forward"), ("torch", loss, "forward+backward"), ("numpy", loss, "forward")]
        lines.append(f"| {title} | " + " | ".join(cell(k) for k in keys) + " |")
    return "\n".join(lines)


def render() -> str:
    parts = [HEADER.replace("CHECK_COST_TABLE", check_cost_table())]
    count = 0
    for section, examples in EXAMPLES:
        parts.append(f"\n## {section}\n")
        for title, code in examples:
            kind, message = run_example(code)
            count += 1
            parts.append(f"\n### {title}\n\n```python\n{code}\n```\n\n`{kind}`: {message}\n")
    parts.append(f"\n---\n{count} kinds of bad input are listed here.\n")
    return "".join(parts)


if __name__ == "__main__":
    out = Path(__file__).with_name("errors.md")
    out.write_text(render())
    sys.stdout.write(f"wrote {out.name}\n")
