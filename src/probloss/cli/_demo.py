"""``probloss demo``: the worked examples of the guide, computed with probloss and checked.

Each example's expected value is either *stated* (a number as printed, compared at the
precision it is printed with) or given by a *formula*, evaluated here in float64 with
:mod:`math` and compared to 1e-5 relative.

Examples
--------
>>> check(1.17694, "1.177", "stated"), check(1.1764, "1.177", "stated")
(True, False)
"""

from __future__ import annotations

import math
import sys

import numpy as np

from ._output import EXIT_FAILED, EXIT_OK, fmt, fmt_array, print_json

TOPICS = {
    1: "sparse and categorical cross-entropy",
    2: "binary cross-entropy, Poisson and KL divergence (Keras 3's probabilistic losses)",
    3: "softmax, sigmoid and cross-entropy from information theory",
}


def examples() -> list[tuple]:
    """``(topic, example, computed value, expected value, "stated" or "formula")`` for every example."""
    import probloss as pl
    from probloss import info

    ln = math.log
    p_classic = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    ex = [
        (1, "CategoricalCrossentropy()([[0,1,0],[0,0,1]], [[.05,.95,0],[.1,.8,.1]])",
         pl.CategoricalCrossentropy()([[0, 1, 0], [0, 0, 1]], p_classic), "1.177", "stated"),
        (1, "SparseCategoricalCrossentropy()([1, 2], same predictions)",
         pl.SparseCategoricalCrossentropy()([1, 2], p_classic), "1.177", "stated"),
    ]
    bce = -(ln(0.9) + ln(0.9) + ln(0.8) + ln(0.8)) / 4
    ex.append((2, "BinaryCrossentropy()([0,1,1,0], [0.1,0.9,0.8,0.2]): mean of -y log p - (1-y) log(1-p)",
               pl.BinaryCrossentropy()([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.2]), bce, "formula"))
    pmf = 5**3 * math.exp(-5) / math.factorial(3)
    poisson_loss = np.asarray(pl.Poisson()([3.0], [5.0]), dtype=np.float64)
    ex.append((2, "P(X=3 | lambda=5) = exp(-(Poisson()([3], [5]) + log 3!)): the Poisson loss is the NLL minus log k!",
               np.exp(-(poisson_loss + math.lgamma(4))), pmf, "formula"))
    kl = 0.4 * ln(0.4 / 0.3) + 0.6 * ln(0.6 / 0.7)
    P, Q = np.array([0.4, 0.6]), np.array([0.3, 0.7])
    ex.append((2, "info.kl_divergence(P=[0.4, 0.6], Q=[0.3, 0.7]) = sum P log(P/Q)", info.kl_divergence(P, Q), kl, "formula"))
    ex.append((2, "KLDivergence()(P, Q), the Keras-style loss (clips at 1e-7)", pl.KLDivergence()(P, Q), kl, "formula"))
    # softmax(x)_i = exp(-cross-entropy of class i against logits x)
    x = np.array([[1.0, 2.0, 3.0]] * 3)
    softmax = np.exp(-np.asarray(pl.sparse_softmax_cross_entropy_with_logits(labels=[0, 1, 2], logits=x)))
    ex.append((3, "softmax([1, 2, 3]) = exp(-sparse_softmax_cross_entropy_with_logits) per class",
               softmax, ["0.09", "0.24", "0.67"], "stated"))
    y5 = [[0, 0, 0, 1, 0]]
    ex.append((3, "categorical_crossentropy(y=[0,0,0,1,0], p=[.1,.15,.05,.6,.1]) = -log 0.6",
               pl.categorical_crossentropy(y5, [[0.1, 0.15, 0.05, 0.6, 0.1]])[0], -ln(0.6), "formula"))
    ex.append((3, "categorical_crossentropy(y=[0,0,0,1,0], p=[.15,.2,.4,.1,.15]) = -log 0.1",
               pl.categorical_crossentropy(y5, [[0.15, 0.2, 0.4, 0.1, 0.15]])[0], -ln(0.1), "formula"))
    half = (-ln(0.8) - ln(0.6)) / 2
    y2, p2 = [[1, 0], [0, 1]], [[0.8, 0.2], [0.4, 0.6]]
    ex.append((3, "two-sample batch, softmax form: CategoricalCrossentropy()([[1,0],[0,1]], [[.8,.2],[.4,.6]])",
               pl.CategoricalCrossentropy()(y2, p2), half, "formula"))
    ex.append((3, "same, softmax_cross_entropy_with_logits on logits log(p), averaged",
               np.mean(pl.softmax_cross_entropy_with_logits(labels=y2, logits=np.log(np.array(p2)))), half, "formula"))
    ex.append((3, "same, sigmoid form: BinaryCrossentropy()([0, 1], [0.2, 0.6])",
               pl.BinaryCrossentropy()([0, 1], [0.2, 0.6]), half, "formula"))
    logits = [[0.5, 0.7, 0.3], [0.8, 0.2, 0.9]]
    ex.append((3, "sigmoid_cross_entropy_with_logits(labels=ones, logits=[[.5,.7,.3],[.8,.2,.9]])",
               pl.sigmoid_cross_entropy_with_logits(labels=np.ones((2, 3)), logits=logits),
               [["0.47407699", "0.40318602", "0.5543552"], ["0.37110069", "0.59813887", "0.34115386"]], "stated"))
    ex.append((3, "sigmoid_cross_entropy_with_logits(labels=zeros, same logits)",
               pl.sigmoid_cross_entropy_with_logits(labels=np.zeros((2, 3)), logits=logits),
               [["0.97407699", "1.10318601", "0.85435522"], ["1.17110074", "0.79813886", "1.24115384"]], "stated"))
    p_true, q_model = np.array([1.0, 0.0, 0.0]), np.array([0.7, 0.2, 0.1])
    ex.append((3, "KL(p||q) = H(p, q) - H(p) = -log 0.7 for p=[1,0,0], q=[.7,.2,.1]: info.cross_entropy - info.entropy",
               info.cross_entropy(p_true, q_model) - info.entropy(p_true), -ln(0.7), "formula"))
    return ex


def check(computed, expected, how: str) -> bool:
    """Whether ``computed`` matches ``expected``: at its printed precision if stated, else to 1e-5."""
    c = np.asarray(computed, dtype=np.float64)
    if how == "stated":
        d = np.asarray(expected, dtype=object)
        decimals = np.vectorize(lambda s: len(s.split(".")[1]) if "." in s else 0)(d).astype(np.float64)
        values = np.vectorize(float)(d).astype(np.float64)
        tol = 0.5 * 10.0**-decimals + 1e-6
        return bool(c.shape == values.shape and np.all(np.abs(c - values) <= tol))
    d = np.asarray(expected, dtype=np.float64)
    return bool(c.shape == d.shape and np.allclose(c, d, rtol=1e-5, atol=1e-7))


def _show(value, how=None) -> str:
    if how == "stated":
        a = np.asarray(value, dtype=object)
        return str(a.tolist()).replace("'", "") if a.ndim else str(value)
    a = np.asarray(value, dtype=np.float64)
    return fmt(a) if a.ndim == 0 else fmt_array(a)


def _marks() -> tuple[str, str]:
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓✗".encode(enc)
    except (UnicodeEncodeError, LookupError):
        return "ok", "MISMATCH"
    return "✓", "✗"


def run_demo(args) -> int:
    """Run ``probloss demo``; exit status 1 if any example does not match."""
    results = [
        {
            "topic": topic,
            "example": text,
            "computed": np.asarray(computed, dtype=np.float64),
            "expected": expected if how == "stated" else float(expected),
            "expected_from": how,
            "ok": check(computed, expected, how),
        }
        for topic, text, computed, expected, how in examples()
    ]
    failed = sum(not r["ok"] for r in results)
    status = EXIT_FAILED if failed else EXIT_OK
    if args.json:
        print_json({"examples": results, "all_ok": failed == 0, "topics": TOPICS})
        return status
    good, bad = _marks()
    print("probloss demo: the worked examples of the guide, computed with probloss")
    print('("expected" is the number the example states, or the value of the formula it gives)')
    for topic in sorted(TOPICS):
        print(f"\n{TOPICS[topic][0].upper()}{TOPICS[topic][1:]}:")
        for i, r in enumerate(results, 1):
            if r["topic"] != topic:
                continue
            exp = _show(r["expected"], r["expected_from"])
            exp = exp if r["expected_from"] == "stated" else f"{exp} (formula)"
            print(f"{i:3d}. {r['example']}")
            comp = _show(r["computed"])
            sep = "\n" + " " * 16 if "\n" in comp or len(comp) + len(exp) > 70 else "   "
            comp = comp.replace("\n", "\n" + " " * 16)
            print(f"     probloss:  {comp}{sep}expected: {exp}   {good if r['ok'] else bad}")
    print(
        "\nNote: sparse labels store b class indices where one-hot stores b*k numbers; for "
        "Fashion-MNIST's 60,000 labels and 10 classes that is 60,000 vs 600,000 values."
    )
    print(f"\n{len(results) - failed} of {len(results)} examples match their expected values.")
    return status
