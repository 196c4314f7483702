"""Property tests (hypothesis) for invariants that hold for any input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import probloss as pl
from tests import reference as ref

settings.register_profile("probloss", max_examples=60, deadline=None)
settings.load_profile("probloss")


@st.composite
def logits_and_labels(draw, max_n=6, max_k=7, scale=30.0):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(2, max_k))
    x = draw(arrays(np.float64, (n, k), elements=st.floats(-scale, scale, allow_nan=False)))
    y = draw(arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return x, y


@given(logits_and_labels())
def test_sparse_equals_categorical_on_one_hot_value_and_gradient(data):
    torch = pytest.importorskip("torch")
    x, y = data
    k = x.shape[1]
    a = torch.tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    la = pl.sparse_categorical_crossentropy(torch.tensor(y), a, from_logits=True)
    lb = pl.categorical_crossentropy(torch.tensor(np.eye(k)[y]), b, from_logits=True)
    np.testing.assert_allclose(la.detach().numpy(), lb.detach().numpy(), rtol=1e-10, atol=1e-10)
    la.sum().backward()
    lb.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)


@given(logits_and_labels(), st.floats(-1e3, 1e3))
def test_shifting_a_row_of_logits_changes_nothing(data, shift):
    x, y = data
    base = pl.sparse_categorical_crossentropy(y, x, from_logits=True)
    moved = pl.sparse_categorical_crossentropy(y, x + shift, from_logits=True)
    np.testing.assert_allclose(moved, base, rtol=1e-9, atol=1e-9)
    soft = np.eye(x.shape[1])[y] * 0.7 + 0.3 / x.shape[1]
    np.testing.assert_allclose(
        pl.categorical_crossentropy(soft, x + shift, from_logits=True),
        pl.categorical_crossentropy(soft, x, from_logits=True),
        rtol=1e-9,
        atol=1e-9,
    )


@given(logits_and_labels(scale=1e4))
def test_extreme_logits_give_finite_losses_and_gradients(data):
    torch = pytest.importorskip("torch")
    x, y = data
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        t = torch.tensor(x, dtype=dtype, requires_grad=True)
        # Per-sample losses (up to 2e4 here) fit in float16; their sum over rows need not.
        sparse = pl.sparse_categorical_crossentropy(torch.tensor(y), t, from_logits=True)
        binary = pl.binary_crossentropy(torch.tensor(np.eye(x.shape[1])[y], dtype=dtype), t, from_logits=True)
        (g,) = torch.autograd.grad((sparse, binary), t, grad_outputs=(torch.ones_like(sparse), torch.ones_like(binary)))
        assert torch.isfinite(sparse).all().item() and torch.isfinite(binary).all().item()
        assert torch.isfinite(g).all().item()


@given(logits_and_labels())
def test_cross_entropy_is_nonnegative_and_matches_float64_formula(data):
    x, y = data
    got = pl.sparse_categorical_crossentropy(y, x, from_logits=True)
    assert (got >= -1e-12).all()
    np.testing.assert_allclose(got, ref.scce(y, x, from_logits=True)[0], rtol=1e-9, atol=1e-9)


@given(
    arrays(np.float64, (3, 4), elements=st.floats(0.01, 0.99)),
    arrays(np.float64, (3, 4), elements=st.floats(0.0, 1.0)),
)
def test_focal_with_gamma_zero_is_bce(p, t):
    np.testing.assert_allclose(pl.binary_focal_crossentropy(t, p, gamma=0.0), pl.binary_crossentropy(t, p), rtol=1e-10)


@given(arrays(np.float64, (2, 5), elements=st.floats(0.05, 1.0)))
def test_kl_of_a_distribution_with_itself_is_zero(p):
    p = p / p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pl.kl_divergence(p, p), 0.0, atol=1e-12)


@given(arrays(np.float64, (4,), elements=st.floats(0.5, 20.0)), st.floats(0.2, 5.0))
def test_poisson_is_minimal_at_the_true_rate(counts, factor):
    assert pl.poisson(counts, counts) <= pl.poisson(counts, counts * factor) + 1e-9
