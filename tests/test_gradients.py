"""Gradients through torch autograd and jax.grad agree with float64 finite differences.

``torch.autograd.gradcheck`` and ``jax.test_util.check_grads`` compare the analytic
gradient with central differences of the same function in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl

RNG = np.random.default_rng(7)
N, K = 4, 5
LABELS = RNG.integers(0, K, size=N)
ONEHOT = np.eye(K)[LABELS]
SOFT = RNG.dirichlet(np.ones(K), size=N)
BIN = (RNG.random((N, K)) < 0.5).astype(np.float64)
LOGITS = RNG.normal(scale=2, size=(N, K))
PROBS = RNG.uniform(0.05, 0.95, size=(N, K))
ROWS = RNG.dirichlet(np.ones(K) * 3, size=N)  # rows that sum to 1
COUNTS = RNG.poisson(2.0, size=(N, K)).astype(np.float64)
RATES = RNG.uniform(0.3, 4.0, size=(N, K))


def _kl_pred():
    return RNG.dirichlet(np.ones(K), size=N)


# (name, loss(y_pred) closure builder taking (y_true_array), y_true numpy, y_pred numpy)
CASES = [
    ("scce_logits", lambda t, p: pl.sparse_categorical_crossentropy(t, p, from_logits=True), LABELS, LOGITS),
    ("scce_logits_ignore", lambda t, p: pl.sparse_categorical_crossentropy(t, p, from_logits=True, ignore_class=0), LABELS, LOGITS),
    ("scce_probs", lambda t, p: pl.sparse_categorical_crossentropy(t, p), LABELS, ROWS),
    ("cce_logits_soft_ls", lambda t, p: pl.categorical_crossentropy(t, p, from_logits=True, label_smoothing=0.1), SOFT, LOGITS),
    ("cce_probs", lambda t, p: pl.categorical_crossentropy(t, p), ONEHOT, ROWS),
    ("bce_logits", lambda t, p: pl.binary_crossentropy(t, p, from_logits=True), BIN, LOGITS),
    ("bce_probs", lambda t, p: pl.binary_crossentropy(t, p, label_smoothing=0.2), BIN, PROBS),
    ("bfce_logits", lambda t, p: pl.binary_focal_crossentropy(t, p, from_logits=True, apply_class_balancing=True), BIN, LOGITS),
    ("cfce_logits", lambda t, p: pl.categorical_focal_crossentropy(t, p, from_logits=True, gamma=1.5), ONEHOT, LOGITS),
    ("poisson", lambda t, p: pl.poisson(t, p), COUNTS, RATES),
    ("kld", lambda t, p: pl.kl_divergence(t, p), SOFT, _kl_pred()),
    ("class_scce_mean", lambda t, p: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1)(t, p), LABELS, LOGITS),
    ("tf_softmax_xent", lambda t, p: pl.softmax_cross_entropy_with_logits(labels=t, logits=p), SOFT, LOGITS),
    ("tf_weighted_xent", lambda t, p: pl.weighted_cross_entropy_with_logits(labels=t, logits=p, pos_weight=2.5), BIN, LOGITS),
]


@pytest.mark.parametrize(("name", "fn", "y_true", "y_pred"), CASES, ids=[c[0] for c in CASES])
def test_torch_gradcheck(name, fn, y_true, y_pred):
    torch = pytest.importorskip("torch")
    t = torch.as_tensor(y_true)
    p = torch.tensor(y_pred, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: fn(t, x), (p,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "fn", "y_true", "y_pred"), CASES, ids=[c[0] for c in CASES])
def test_jax_check_grads(name, fn, y_true, y_pred):
    jax = pytest.importorskip("jax")
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        import jax.numpy as jnp

        t = jnp.asarray(y_true)
        f = jax.jit(lambda x: fn(t, x))
        check_grads(f, (jnp.asarray(y_pred, dtype=jnp.float64),), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradient_of_sparse_is_softmax_minus_onehot():
    """d/dx of -log_softmax(x)[y] is softmax(x) - onehot(y), written from the math."""
    torch = pytest.importorskip("torch")
    x = torch.tensor(LOGITS, requires_grad=True)
    pl.sparse_categorical_crossentropy(torch.as_tensor(LABELS), x, from_logits=True).sum().backward()
    soft = np.exp(LOGITS - LOGITS.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), soft - ONEHOT, atol=1e-12)
