"""``probloss explain``: which loss fits these labels and predictions, and why.

The labels and the predictions are each classified once, by :func:`classify_labels` and
:func:`classify_predictions`, into exactly one kind; every sentence of the report is
derived from those two kinds, so the report cannot describe the same predictions in two
ways.

Examples
--------
>>> import numpy as np
>>> classify_predictions(np.array([[0.2, 0.8], [0.5, 0.5]]), "class_indices")
'probabilities'
>>> classify_predictions(np.array([[0.5, 0.8], [0.5, 0.5]]), "class_indices")
'independent_probabilities'
>>> classify_predictions(np.array([[2.0, -1.0]]), "one_hot")
'logits'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._equivalents import LIBRARIES, equivalents
from ._files import load_inputs
from ._losses import build_loss
from ._output import EXIT_OK, CliError, fmt, nbytes, print_json

PROBS_TOL = 1e-2
"""Rows "sum to 1" within this (printed probabilities are often rounded)."""

LABEL_TEXT = {
    "class_indices": "class indices (one integer per sample: sparse labels)",
    "one_hot": "one-hot rows (exactly one 1 per sample)",
    "multi_hot": "multi-hot rows (0/1, any number of 1s per sample: multi-label)",
    "binary": "binary 0/1 labels (one per output)",
    "distributions": "probability distributions (soft labels, rows sum to 1)",
    "soft_binary": "soft binary targets (each value in [0, 1], rows do not sum to 1)",
    "counts": "counts (whole numbers >= 0, some above 1)",
    "regression": "real-valued regression targets",
}
PREDICTION_TEXT = {
    "probabilities": "probabilities summing to 1 along the last axis (a softmax output)",
    "independent_probabilities": "independent probabilities in [0, 1] (sigmoid outputs; rows do not sum to 1)",
    "logits": "logits (unnormalised real scores; values outside [0, 1])",
    "rates": "rates (non-negative predicted means)",
    "log_rates": "log-rates (real values, some negative)",
    "values": "real values",
}
# how the recommendation's reason names each kind of class predictions
PREDICTION_PHRASE = {
    "probabilities": "softmax probabilities",
    "independent_probabilities": "probabilities whose rows do not sum to 1 (the loss renormalises them)",
    "logits": "logits (softmax is applied inside the loss)",
}
REGRESSION = "gaussian_nll, the Gaussian negative log-likelihood (mean squared error at a fixed variance)"
_TAKES_LOGITS = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")


def _whole(a: np.ndarray) -> bool:
    return bool(np.all(a == np.floor(a)))


def classify_labels(t: np.ndarray, p: np.ndarray) -> dict:
    """The kind of labels ``t`` for predictions ``p`` (float64 arrays): kind, classes, samples.

    Raises :class:`CliError` for labels that fit no format, with the reason.
    """
    if p.ndim >= 1 and p.shape[-1] >= 2 and t.shape in (p.shape[:-1], p.shape[:-1] + (1,)) and t.shape != p.shape:
        k = p.shape[-1]
        if not _whole(t):
            bad = t[t != np.floor(t)].flat[0]
            raise CliError(
                f"`--y-true` has one value per sample (shape {t.shape}) for {k} classes, so it should hold class "
                f"indices, but it holds {bad:g}; class indices are whole numbers in [0, {k - 1}]"
            )
        if t.min() < 0 or t.max() >= k:
            bad = t.max() if t.max() >= k else t.min()
            raise CliError(
                f"`--y-true` holds class index {bad:g} but `--y-pred` has {k} classes (last axis), so indices "
                f"must be in [0, {k - 1}]; check the label encoding or the size of the model's output"
            )
        return {"kind": "class_indices", "classes": k, "samples": int(t.size)}
    if t.shape == p.shape or t.shape + (1,) == p.shape:
        tt = t
    elif p.shape + (1,) == t.shape:
        tt = t[..., 0]
    else:
        want = f"{p.shape[:-1]} (class indices)" if p.ndim >= 1 else "()"
        raise CliError(
            f"`--y-true` of shape {t.shape} does not fit `--y-pred` of shape {p.shape}: labels must have the "
            f"shape of the predictions (one-hot, multi-hot, binary, soft labels, counts) or {want}"
        )
    k = tt.shape[-1] if tt.ndim >= 2 else 1
    samples = int(tt.size // k) if tt.ndim >= 2 else int(tt.size)
    binary01 = bool(np.all((tt == 0) | (tt == 1)))
    in01 = bool(tt.min() >= 0 and tt.max() <= 1)
    if binary01 and k >= 2:
        kind = "one_hot" if bool(np.all(tt.sum(axis=-1) == 1)) else "multi_hot"
    elif binary01:
        kind = "binary"
    elif in01 and k >= 2 and bool(np.all(np.abs(tt.sum(axis=-1) - 1) <= PROBS_TOL)):
        kind = "distributions"
    elif in01:
        kind = "soft_binary"
    elif _whole(tt) and tt.min() >= 0:
        kind = "counts"
    else:
        kind = "regression"
    return {"kind": kind, "classes": k, "samples": samples}


def classify_predictions(p: np.ndarray, label_kind: str, force_logits: bool = False) -> str:
    """The one kind of predictions ``p`` (a key of :data:`PREDICTION_TEXT`) for labels of ``label_kind``.

    For class labels the outcomes exclude each other: ``"logits"`` (values outside
    [0, 1], or ``force_logits``), else ``"probabilities"`` (rows of at least two classes
    summing to 1 within :data:`PROBS_TOL`, for labels over mutually exclusive or multiple
    classes), else ``"independent_probabilities"``.
    """
    if label_kind == "counts":
        return "log_rates" if p.min() < 0 else "rates"
    if label_kind == "regression":
        return "values"
    if force_logits or p.min() < 0 or p.max() > 1:
        return "logits"
    rows_are_distributions = p.ndim >= 1 and p.shape[-1] >= 2 and bool(np.all(np.abs(p.sum(axis=-1) - 1) <= PROBS_TOL))
    if label_kind not in ("binary", "soft_binary") and rows_are_distributions:
        return "probabilities"
    return "independent_probabilities"


def _check_inputs(t: np.ndarray, p: np.ndarray) -> None:
    if t.size == 0 or p.size == 0:
        raise CliError("`--y-true` and `--y-pred` must not be empty")
    if p.ndim == 0:
        raise CliError("`--y-pred` is a single number; give a list with one prediction per label, e.g. '[0.5]'")
    for what, a in (("--y-true", t), ("--y-pred", p)):
        if not np.all(np.isfinite(a)):
            raise CliError(f"`{what}` contains NaN or inf; find where it first appears upstream")


def memory(samples: int, classes: int) -> dict:
    """Bytes taken by ``samples`` labels as class indices and as one-hot float32 rows."""
    return {
        "samples": samples,
        "classes": classes,
        "int32_bytes": 4 * samples,
        "int64_bytes": 8 * samples,
        "one_hot_float32_bytes": 4 * samples * classes,
        "ratio": classes,
        "per_million_samples": {"int32_bytes": 4_000_000, "one_hot_float32_bytes": 4_000_000 * classes},
    }


def _imbalance_note(t: np.ndarray, kind: str, classes: int) -> str | None:
    if kind == "class_indices":
        freq = np.bincount(t.astype(np.int64).ravel(), minlength=classes) / t.size
    elif kind == "one_hot":
        freq = t.reshape(-1, classes).mean(axis=0)
    elif kind in ("binary", "multi_hot"):
        pos = t.reshape(-1, classes).mean(axis=0) if kind == "multi_hot" else np.array([t.mean()])
        freq = np.minimum(pos, 1 - pos)
    else:
        return None
    if t.size < 10 or freq.min() >= 0.1:
        return None
    focal = "categorical_focal_crossentropy" if kind in ("class_indices", "one_hot") else "binary_focal_crossentropy"
    return (
        f"class imbalance: the rarest class makes up {freq.min():.1%} of the labels; if the model ignores it, "
        f"try {focal} (gamma=2 down-weights easy examples) or sample weights"
    )


def _recommend(lk: str, pk: str, k: int, t: np.ndarray) -> tuple[str | None, str, list[str]]:
    """(loss name, the reason, notes) for label kind ``lk`` and prediction kind ``pk``; ``"gaussian_nll"`` for
    regression, which the report marks as not fitting the classification losses (``fits`` False)."""
    notes: list[str] = []
    if lk == "class_indices":
        return "sparse_categorical_crossentropy", (
            f"each sample has one integer class out of {k} mutually exclusive classes, and the predictions are "
            f"{PREDICTION_PHRASE[pk]}; the sparse loss reads the index directly, no one-hot needed"
        ), notes
    if lk == "one_hot":
        return "categorical_crossentropy", (
            f"each row is one-hot over {k} mutually exclusive classes and the predictions are {PREDICTION_PHRASE[pk]}. "
            "sparse_categorical_crossentropy on argmax(y_true) gives the same value with less memory"
        ), notes
    if lk == "distributions":
        notes.append("sparse labels cannot hold soft distributions, so there is no memory saving to be had")
        return "categorical_crossentropy", (
            "the labels are soft distributions over classes (e.g. label smoothing or distillation targets); "
            "categorical cross-entropy accepts soft labels, the sparse form cannot represent them. "
            "kl_divergence gives the same gradients with respect to y_pred (it differs by the constant entropy of y_true)"
        ), notes
    if lk in ("multi_hot", "binary", "soft_binary"):
        if lk == "multi_hot":
            why = (
                f"several of the {k} classes can be true at once (multi-label), so each class is its own yes/no "
                "question: a sigmoid per class and binary cross-entropy, not softmax"
            )
            notes.append("sparse labels cannot hold several classes per sample, so there is no memory saving to be had")
        elif lk == "binary":
            why = "each target is a single yes/no label, so binary cross-entropy on a sigmoid output fits"
        else:
            why = "each target is a probability of its own (soft binary targets), which binary cross-entropy accepts"
        if pk == "logits":
            why += "; the predictions are logits, so pass from_logits=True (more stable than applying sigmoid first)"
        return "binary_crossentropy", why, notes
    if lk == "counts" and pk == "log_rates":
        return "log_poisson_loss", (
            "the targets are counts and the predictions have negative values, so they look like log-rates: "
            "the Poisson negative log-likelihood on log-rates (tf.nn.log_poisson_loss) fits"
        ), notes
    if lk == "counts":
        return "poisson", (
            "the targets are counts (events per interval) and the predictions are non-negative rates: the "
            "Poisson negative log-likelihood fits (up to the constant log(y!), which Keras leaves out)"
        ), notes
    if np.all(t >= 0):
        notes.append("if the targets are counts or non-negative rates, the Poisson loss fits instead")
    return "gaussian_nll", (
        "the targets are real-valued, so this is regression: the classification losses (cross-entropy, focal, KL) "
        "compare probabilities and do not fit. The probabilistic loss for real-valued targets is the Gaussian "
        "negative log-likelihood, gaussian_nll: at a fixed variance it is the mean squared error up to scale and "
        "a constant; if the model also predicts a variance, pass it as var"
    ), notes


def _head_notes(lk: str, pk: str, p: np.ndarray) -> list[str]:
    notes = []
    if lk in ("class_indices", "one_hot", "distributions") and pk == "independent_probabilities":
        notes.append(
            "the prediction rows do not sum to 1: Keras (and probloss) renormalise them, but if the classes are "
            "mutually exclusive the model should end in softmax; if several classes can be true at once, use "
            "binary_crossentropy with multi-hot labels instead"
        )
    if lk == "multi_hot" and pk == "probabilities":
        notes.append(
            "the prediction rows sum to 1 (softmax), which makes classes compete: for multi-label targets end the "
            "model in a sigmoid per class"
        )
    if pk in ("probabilities", "independent_probabilities") and bool(np.any((p < 1e-7) | (p > 1 - 1e-7))):
        notes.append(
            "some predicted probabilities are 0 or 1: Keras and probloss clip them to [1e-7, 1 - 1e-7], PyTorch and "
            "Optax do not (a 0 on a true class gives inf there), so the libraries can disagree. Passing logits "
            "with from_logits=True avoids the problem"
        )
    return notes


def _aligned(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    if p.shape == t.shape + (1,):
        return p[..., 0]
    if t.shape == p.shape + (1,):
        return p[..., None]
    return p


def explain(y_true, y_pred, *, force_logits: bool = False) -> dict:
    """Recommend a loss for these labels and predictions; returns the report as a dict."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    _check_inputs(t, p)
    labels = classify_labels(t, p)
    lk, k, n = labels["kind"], labels["classes"], labels["samples"]
    pk = classify_predictions(p, lk, force_logits)
    logits = pk == "logits"
    loss, why, notes = _recommend(lk, pk, k, t)
    notes += _head_notes(lk, pk, p)
    if lk in ("class_indices", "one_hot", "binary", "multi_hot"):
        note = _imbalance_note(t, lk, k)
        notes += [note] if note else []
    options: dict[str, Any] = {"from_logits": logits} if loss in _TAKES_LOGITS else {}
    regression = loss == "gaussian_nll"
    if regression:  # no variance to evaluate the NLL with: the fixed-variance case, the MSE
        value = float(np.mean((t - _aligned(p, t)) ** 2))
        value_text = "mean squared error"
        table = equivalents(loss)
    else:
        _, loss_obj = build_loss(loss, from_logits=logits and loss in _TAKES_LOGITS)
        value = float(np.asarray(loss_obj(np.asarray(y_true), p)))
        value_text = f"mean {loss} over the batch"
        table = equivalents(loss, logits=logits, one_hot=lk == "one_hot")
    return {
        "labels": {"kind": lk, "description": LABEL_TEXT[lk], "shape": list(t.shape),
                   "dtype": str(np.asarray(y_true).dtype), "samples": n, "classes": k},
        "predictions": {"kind": pk, "description": PREDICTION_TEXT[pk], "shape": list(p.shape),
                        "dtype": str(np.asarray(y_pred).dtype)},
        "fits": not regression,
        "recommendation": {"loss": loss, "description": REGRESSION if regression else loss, "options": options, "why": why},
        "equivalents": table,
        "memory": memory(n, k) if lk in ("class_indices", "one_hot") else None,
        "value": value,
        "value_description": value_text,
        "notes": notes,
    }


def render(report: dict) -> None:
    """Print the report for people."""
    lab, pred, rec = report["labels"], report["predictions"], report["recommendation"]
    print(f"Labels (y_true):      {lab['description']}; shape {tuple(lab['shape'])}, {lab['dtype']}")
    print(f"Predictions (y_pred): {pred['description']}; shape {tuple(pred['shape'])}")
    print()
    if report["fits"]:
        opts = ", ".join(f"{k}={v!r}" for k, v in rec["options"].items())
        print(f"Use: {rec['loss']}" + (f" with {opts}" if opts else ""))
    else:
        print("The classification losses do not fit: this is regression.")
        print(f"Use instead: {rec['description']}")
    print(f"Why: {rec['why']}.")
    print()
    print("Equivalent calls:")
    names = {"probloss": "probloss", "keras": "Keras", "pytorch": "PyTorch", "tensorflow": "TensorFlow", "optax": "Optax"}
    for lib in LIBRARIES:
        print(f"  {names[lib] + ':':<12} {report['equivalents'][lib]}")
    mem = report["memory"]
    if mem:
        s = "s" if mem["samples"] != 1 else ""
        print()
        print(
            f"Memory: as class indices, {mem['samples']:,} label{s} take {nbytes(mem['int32_bytes'])} (int32; "
            f"{nbytes(mem['int64_bytes'])} as the int64 PyTorch wants); one-hot float32 takes "
            f"{nbytes(mem['one_hot_float32_bytes'])}, {mem['ratio']}x more (one float per class). Per million "
            f"samples: {nbytes(mem['per_million_samples']['int32_bytes'])} vs "
            f"{nbytes(mem['per_million_samples']['one_hot_float32_bytes'])}."
        )
    print()
    print(f"Value: {fmt(report['value'])} ({report['value_description']})")
    if report["notes"]:
        print()
        print("Notes:")
        for note in report["notes"]:
            print(f"  - {note}")


def run_explain(args) -> int:
    """Run ``probloss explain`` with the parsed ``args``."""
    y_true, y_pred, _ = load_inputs(args)
    report = explain(y_true, y_pred, force_logits=args.from_logits)
    if args.json:
        print_json(report)
    else:
        render(report)
    return EXIT_OK
