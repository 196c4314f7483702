"""Random malformed input: every call returns a finite, correct value or raises our error.

Nothing else may escape: no IndexError from a gather, no NaN returned silently, no
framework exception.  Successful calls are compared with the float64 formulas.
"""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import probloss as pl
from tests import reference as ref

VALUES = st.one_of(
    st.floats(-3, 3, allow_nan=False, width=32),
    st.floats(0, 1, width=32),
    st.sampled_from([0.0, 1.0, 2.0, -1.0, 0.5, 255.0, np.nan, np.inf, -np.inf, 1e4]),
)


@st.composite
def arrays_of_any_kind(draw):
    shape = draw(st.sampled_from([(3, 4), (3,), (3, 1), (4, 4), (2, 4), (3, 3), (0, 4), (1, 4, 2)]))
    kind = draw(st.sampled_from(["float32", "float64", "int", "bool", "list"]))
    data = draw(arrays(np.float64, shape, elements=VALUES))
    if kind == "int":
        return np.nan_to_num(data, nan=0, posinf=9, neginf=-9).astype(np.int64)
    if kind == "bool":
        return data > 0.5
    if kind == "list":
        return data.tolist()
    return data.astype(kind)


LOSSES = {
    # Probabilities are clipped to 1 - 1e-7 rounded to their own dtype (float32 unless float64 given).
    "binary_crossentropy": (lambda t, p, kw: ref.bce(t, p, **kw, upper=_upper(p)), ["from_logits", "label_smoothing"]),
    "categorical_crossentropy": (lambda t, p, kw: ref.cce(t, p, **kw), ["from_logits", "label_smoothing"]),
    "sparse_categorical_crossentropy": (lambda t, p, kw: ref.scce(t, p, **kw)[0], ["from_logits", "ignore_class"]),
    "poisson": (lambda t, p, kw: ref.poisson(t, p), []),
    "kl_divergence": (lambda t, p, kw: ref.kld(t, p), []),
}

def _upper(p):
    return 1 - 1e-7 if p.dtype == np.float64 else ref.UPPER


OPTION_VALUES = {
    "from_logits": st.sampled_from([False, True, 1, "yes"]),
    "label_smoothing": st.sampled_from([0.0, 0.1, 1.0, -0.5, 2.0, "x"]),
    "ignore_class": st.sampled_from([None, -1, 255, 1.5, "pad"]),
}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(LOSSES)), arrays_of_any_kind(), arrays_of_any_kind(), st.data())
def test_malformed_input_raises_our_error_or_gives_the_right_number(name, y_true, y_pred, data):
    reference, option_names = LOSSES[name]
    kwargs = {o: data.draw(OPTION_VALUES[o], label=o) for o in option_names if data.draw(st.booleans(), label=f"use {o}")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unnormalised rows warn; that is allowed here
        try:
            out = getattr(pl, name)(y_true, y_pred, **kwargs)
        except (pl.ProblossError, pl.ProblossTypeError) as exc:
            event(f"raised {type(exc).__name__}")
            return
        event("returned a value")
        out = np.asarray(out, dtype=np.float64)
        assert np.all(np.isfinite(out)), (name, y_true, y_pred, kwargs, out)
        t = np.asarray(y_true)
        p = np.asarray(y_pred)
        p = p.astype(np.float64 if p.dtype == np.float64 else np.float32)
        if name != "sparse_categorical_crossentropy":
            t, p = ref._align(t, p)  # Keras's rank alignment
        expected = reference(t if name == "sparse_categorical_crossentropy" else t.astype(np.float64), p, kwargs)
    np.testing.assert_allclose(out, expected, rtol=2e-4, atol=2e-5)


@settings(max_examples=150, deadline=None)
@given(arrays_of_any_kind(), st.sampled_from(["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"]), arrays_of_any_kind())
def test_malformed_sample_weights(sample_weight, reduction, y_pred):
    p = np.abs(np.nan_to_num(np.asarray(y_pred, dtype=np.float64), nan=0.5, posinf=1.0, neginf=0.0)) % 1.0
    assume(p.ndim >= 2 and p.size > 0)  # a batch of rows
    t = (p > 0.5).astype(np.float64)
    try:
        out = pl.BinaryCrossentropy(reduction=reduction)(t, p, sample_weight=sample_weight)
    except (pl.ProblossError, pl.ProblossTypeError):
        return
    expected = ref.reduce(ref.bce(t, p), reduction, np.asarray(sample_weight, dtype=np.float64))
    np.testing.assert_allclose(np.asarray(out, dtype=np.float64), expected, rtol=2e-4, atol=2e-5)
