"""The logits paths against torch.nn.functional and Optax, run live."""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl

torch = pytest.importorskip("torch")
F = torch.nn.functional
optax = pytest.importorskip("optax")
jnp = pytest.importorskip("jax.numpy")

RNG = np.random.default_rng(99)
N, K = 16, 11
X = RNG.normal(scale=4, size=(N, K)).astype(np.float32)
Y = RNG.integers(0, K, size=N)
Q = RNG.dirichlet(np.ones(K), size=N).astype(np.float32)
Z = (RNG.random((N, K)) < 0.4).astype(np.float32)


def test_sparse_vs_torch_and_optax():
    got = pl.sparse_categorical_crossentropy(Y, X, from_logits=True)
    t = F.cross_entropy(torch.tensor(X), torch.tensor(Y), reduction="none").numpy()
    o = np.asarray(optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(X), jnp.asarray(Y)))
    np.testing.assert_allclose(got, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, o, rtol=1e-5, atol=1e-6)


def test_soft_labels_vs_torch_and_optax():
    got = pl.categorical_crossentropy(Q, X, from_logits=True)
    t = F.cross_entropy(torch.tensor(X), torch.tensor(Q), reduction="none").numpy()
    o = np.asarray(optax.softmax_cross_entropy(jnp.asarray(X), jnp.asarray(Q)))
    np.testing.assert_allclose(got, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, o, rtol=1e-5, atol=1e-6)


def test_label_smoothing_vs_torch_and_optax():
    onehot = np.eye(K, dtype=np.float32)[Y]
    got = pl.categorical_crossentropy(onehot, X, from_logits=True, label_smoothing=0.1)
    t = F.cross_entropy(torch.tensor(X), torch.tensor(Y), reduction="none", label_smoothing=0.1).numpy()
    o = np.asarray(optax.softmax_cross_entropy(jnp.asarray(X), optax.smooth_labels(jnp.asarray(onehot), 0.1)))
    np.testing.assert_allclose(got, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, o, rtol=1e-5, atol=1e-6)


def test_channels_first_vs_torch():
    x = RNG.normal(size=(3, K, 4, 5)).astype(np.float32)
    y = RNG.integers(0, K, size=(3, 4, 5))
    got = pl.sparse_categorical_crossentropy(y, x, from_logits=True, axis=1)
    t = F.cross_entropy(torch.tensor(x), torch.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(got, t, rtol=1e-5, atol=1e-6)


def test_sigmoid_vs_torch_and_optax():
    got = pl.sigmoid_cross_entropy_with_logits(labels=Z, logits=X)
    t = F.binary_cross_entropy_with_logits(torch.tensor(X), torch.tensor(Z), reduction="none").numpy()
    o = np.asarray(optax.sigmoid_binary_cross_entropy(jnp.asarray(X), jnp.asarray(Z)))
    np.testing.assert_allclose(got, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, o, rtol=1e-5, atol=1e-6)
    bce = pl.binary_crossentropy(Z, X, from_logits=True)
    np.testing.assert_allclose(bce, t.mean(axis=-1), rtol=1e-5, atol=1e-6)


def test_weighted_vs_torch_pos_weight():
    pw = RNG.uniform(0.5, 3, size=K).astype(np.float32)
    got = pl.weighted_cross_entropy_with_logits(labels=Z, logits=X, pos_weight=pw)
    t = F.binary_cross_entropy_with_logits(torch.tensor(X), torch.tensor(Z), pos_weight=torch.tensor(pw), reduction="none")
    np.testing.assert_allclose(got, t.numpy(), rtol=1e-5, atol=1e-6)


def test_gradients_match_torch():
    x1 = torch.tensor(X, requires_grad=True)
    x2 = torch.tensor(X, requires_grad=True)
    pl.sparse_categorical_crossentropy(torch.tensor(Y), x1, from_logits=True).mean().backward()
    F.cross_entropy(x2, torch.tensor(Y)).backward()
    np.testing.assert_allclose(x1.grad.numpy(), x2.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_kl_vs_torch_kl_div_batchmean():
    p = Q
    q = RNG.dirichlet(np.ones(K), size=N).astype(np.float32)
    got = pl.KLDivergence()(p, q)  # mean over rows of sum over classes
    t = F.kl_div(torch.tensor(np.log(q)), torch.tensor(p), reduction="batchmean").numpy()
    np.testing.assert_allclose(got, t, rtol=1e-4)


def test_poisson_vs_torch_poisson_nll():
    counts = RNG.poisson(3.0, size=(N, K)).astype(np.float32)
    rates = RNG.uniform(0.5, 5, size=(N, K)).astype(np.float32)
    got = pl.Poisson()(counts, rates)
    t = F.poisson_nll_loss(torch.tensor(rates), torch.tensor(counts), log_input=False, eps=1e-7).numpy()
    np.testing.assert_allclose(got, t, rtol=1e-5)
    log_rates = np.log(rates)
    got2 = pl.log_poisson_loss(targets=counts, log_input=log_rates, compute_full_loss=True)
    t2 = F.poisson_nll_loss(torch.tensor(log_rates), torch.tensor(counts), log_input=True, full=True, reduction="none")
    np.testing.assert_allclose(got2, t2.numpy(), rtol=1e-5, atol=1e-5)
