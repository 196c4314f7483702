"""Value checks under ``torch.compile``: staged into the graph, no graph break.

Each classic mistake raises our error from the compiled function (``fullgraph=True``
proves that nothing broke the graph); a clean input gives eager's value and gradient,
which are compared with ``F.cross_entropy`` / a float64 formula.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import probloss as pl  # noqa: E402

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.1, -2.0], [0.0, 1.0, -1.0]])
LABELS = torch.tensor([0, 2, 1])


def _compiled(fn, backend="aot_eager"):
    torch._dynamo.reset()
    return torch.compile(fn, backend=backend, fullgraph=True)


CLEAN = {
    "sparse function, logits": (lambda y, x: pl.sparse_categorical_crossentropy(y, x, from_logits=True), "sparse"),
    "sparse class, logits": (lambda y, x: pl.SparseCategoricalCrossentropy(from_logits=True)(y, x), "sparse mean"),
    "sparse class, probabilities": (lambda y, x: pl.SparseCategoricalCrossentropy()(y, x.softmax(-1)), "sparse mean"),
    "categorical class, logits": (lambda y, x: pl.CategoricalCrossentropy(from_logits=True)(F.one_hot(y, 3).float(), x), "sparse mean"),
    "categorical function, probabilities": (
        lambda y, x: pl.categorical_crossentropy(F.one_hot(y, 3).float(), x.softmax(-1)),
        "sparse",
    ),
}


@pytest.mark.parametrize("case", list(CLEAN), ids=str)
def test_clean_input_gives_eager_value_and_gradient(case):
    fn, kind = CLEAN[case]
    xc = LOGITS.clone().requires_grad_()
    out = _compiled(fn)(LABELS, xc)
    out.sum().backward()
    x64 = LOGITS.double().requires_grad_()
    ref = F.cross_entropy(x64, LABELS, reduction="none" if kind == "sparse" else "mean")
    ref.sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(xc.grad.numpy(), x64.grad.numpy(), rtol=1e-5, atol=1e-7)


MISTAKES = {
    "label out of range": (
        lambda x: pl.sparse_categorical_crossentropy(torch.tensor([0, 5, 1]), x, from_logits=True),
        pl.LabelValueError,
        r"`y_true` holds class index 5 at index \(1,\), but `y_pred` has 3 classes",
    ),
    "negative label, class": (
        lambda x: pl.SparseCategoricalCrossentropy(from_logits=True)(torch.tensor([0, -1, 1]), x),
        pl.LabelValueError,
        r"class index -1 at index \(1,\).*only allowed as `ignore_class`",
    ),
    "label out of range, probabilities": (
        lambda x: pl.sparse_categorical_crossentropy(torch.tensor([3, 0, 1]), x.softmax(-1)),
        pl.LabelValueError,
        r"class index 3 at index \(0,\)",
    ),
    "float labels not whole": (
        lambda x: pl.sparse_categorical_crossentropy(torch.tensor([0.0, 1.5, 1.0]), x, from_logits=True),
        pl.LabelFormatError,
        r"`y_true` holds 1.5 at index \(1,\); class indices must be whole numbers",
    ),
    "logits as probabilities": (
        lambda x: pl.CategoricalCrossentropy()(F.one_hot(LABELS, 3).float(), x),
        pl.PredictionValueError,
        r"`y_pred` holds 2 at index \(0, 0\), but it must be \[0, 1\].*from_logits=True",
    ),
    "logits as probabilities, binary": (
        lambda x: pl.binary_crossentropy(torch.ones(3, 3), x),
        pl.PredictionValueError,
        r"`y_pred` holds 2 at index \(0, 0\).*from_logits=True",
    ),
    "NaN in the logits": (
        lambda x: pl.sparse_categorical_crossentropy(LABELS, x * torch.tensor([1.0, float("nan"), 1.0]), from_logits=True),
        pl.PredictionValueError,
        r"the loss of sample \(0,\) is nan: `y_pred` holds NaN or inf there",
    ),
    "soft labels below 0": (
        lambda x: pl.categorical_crossentropy(torch.tensor([[1.5, -0.5, 0.0]] * 3), x, from_logits=True),
        pl.LabelValueError,
        r"`y_true` holds -0.5 at index \(0, 1\)",
    ),
}


@pytest.mark.parametrize("case", list(MISTAKES), ids=str)
def test_each_mistake_raises_our_error_from_the_compiled_graph(case):
    fn, error, message = MISTAKES[case]
    compiled = _compiled(fn)
    with pytest.raises(error, match=message):
        compiled(LOGITS)


def test_the_switch_is_followed_by_the_compiled_function():
    # torch.compile guards on the switch: a call with the checks off runs a graph without them
    def fn(x):
        return pl.categorical_crossentropy(F.one_hot(LABELS, 3).float(), x)

    compiled = _compiled(fn)
    with pl.set_value_checks(False):
        out = compiled(LOGITS)
    # Keras renormalises the rows, then clips to [1e-7, 1 - 1e-7]: row 0 is [2, -1, 0.5] / 1.5
    assert float(out[0]) == pytest.approx(-np.log(np.clip(2.0 / 1.5, 1e-7, 1 - 1e-7)), abs=2e-7)
    with pytest.raises(pl.PredictionValueError, match="from_logits=True"):
        compiled(LOGITS)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, importing its compiler
def test_inductor_raises_our_error_before_its_bounds_assertion():
    # Inductor's generated code asserts on an index out of range; the labels it indexes
    # with are made safe in the graph, so our error (naming the element) is what arrives.
    compiled = _compiled(lambda y, x: pl.SparseCategoricalCrossentropy(from_logits=True)(y, x), backend="inductor")
    xc = LOGITS.clone().requires_grad_()
    out = compiled(LABELS, xc)
    out.backward()
    x64 = LOGITS.double().requires_grad_()
    F.cross_entropy(x64, LABELS).backward()
    assert float(out.detach()) == pytest.approx(float(F.cross_entropy(x64.detach(), LABELS)), rel=1e-5)
    np.testing.assert_allclose(xc.grad.numpy(), x64.grad.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(pl.LabelValueError, match=r"class index 7 at index \(2,\)"):
        compiled(torch.tensor([0, 1, 7]), LOGITS)
