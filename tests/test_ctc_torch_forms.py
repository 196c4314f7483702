"""CTC in PyTorch's conventions: 1-D concatenated targets, unbatched ``(T, C)`` input, and
``probloss.torch.CTCLoss`` against ``torch.nn.CTCLoss`` run live (values and gradients,
every reduction), with the values also on NumPy, array-api-strict and JAX (jitted too)."""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl

torch = pytest.importorskip("torch")
F = torch.nn.functional
from probloss.torch import CTCLoss  # noqa: E402

RNG = np.random.default_rng(5)
T, B, C = 9, 4, 6
LOGITS = RNG.normal(scale=2.0, size=(T, B, C))
LOG_PROBS = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
LENGTHS = np.array([3, 0, 4, 2])  # [1, 2, 2] (a repeat), [], [3, 4, 1, 5], [5, 1]
INPUTS = np.array([9, 5, 8, 3])
FLAT = np.array([1, 2, 2, 3, 4, 1, 5, 5, 1])  # sum(LENGTHS) = 9 labels
PADDED = np.zeros((B, 4), np.int64)
for _b, (_s, _n) in enumerate(zip(np.cumsum(LENGTHS) - LENGTHS, LENGTHS)):
    PADDED[_b, :_n] = FLAT[_s : _s + _n]


def torch_ctc(targets, reduction, *, blank=0, zero_infinity=False, log_probs=LOG_PROBS, inputs=INPUTS, lengths=LENGTHS):
    """torch.nn.CTCLoss in float64 on ``log_softmax(x)``: value and gradient with respect to ``x``.

    (Through a log_softmax, because PyTorch's kernel returns the gradient with respect to
    the logits, ``exp(lp) - posterior``, as the gradient with respect to ``lp``; probloss
    returns the true derivative ``-posterior``, and the two agree behind a log_softmax.)
    """
    x = torch.tensor(log_probs, requires_grad=True)
    out = torch.nn.CTCLoss(blank=blank, reduction=reduction, zero_infinity=zero_infinity)(
        x.log_softmax(-1), torch.as_tensor(targets), torch.as_tensor(inputs), torch.as_tensor(lengths)
    )
    (grad,) = torch.autograd.grad(out.sum(), [x])
    return out.detach().numpy(), grad.numpy()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("native", [True, False])
def test_concatenated_targets_match_torch_value_and_gradient(reduction, native):
    expected, expected_grad = torch_ctc(FLAT, reduction)
    np.testing.assert_allclose(torch_ctc(PADDED, reduction)[0], expected, rtol=1e-12)  # torch: both forms agree
    x = torch.tensor(LOG_PROBS, requires_grad=True)
    got = pl.ctc_loss(x.log_softmax(-1), torch.as_tensor(FLAT), torch.as_tensor(INPUTS), torch.as_tensor(LENGTHS), from_logits=False,
                      time_major=True, reduction=reduction, native=native)
    (grad,) = torch.autograd.grad(got.sum(), [x])
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-8, atol=1e-10)


def test_concatenated_targets_on_every_backend(eager_backend):
    b = eager_backend
    index = np.int64 if b.name == "torch" else np.int32
    expected = torch_ctc(FLAT, "none")[0]
    got = pl.ctc_loss(b.asarray(LOGITS), b.asarray(FLAT, index), b.asarray(INPUTS, index), b.asarray(LENGTHS, index),
                      time_major=True)
    got = b.to_numpy(got)
    np.testing.assert_allclose(got, expected, rtol=1e-10 if got.dtype == np.float64 else 2e-5)


def test_concatenated_targets_under_jax_jit():
    """Inside jit the lengths have no values: padded to the concatenation's length instead."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    f = jax.jit(lambda x, y, i, n: pl.ctc_loss(x, y, i, n, time_major=True, reduction="mean"))
    args = (jnp.asarray(LOGITS, jnp.float32),) + tuple(jnp.asarray(a, jnp.int32) for a in (FLAT, INPUTS, LENGTHS))
    np.testing.assert_allclose(np.asarray(f(*args)), torch_ctc(FLAT, "mean")[0], rtol=2e-5)
    g = jax.jit(jax.grad(lambda x, *r: pl.ctc_loss(jax.nn.log_softmax(x), *r, from_logits=False, time_major=True).sum()))
    grad = g(jnp.asarray(LOG_PROBS, jnp.float32), *args[1:])
    np.testing.assert_allclose(np.asarray(grad), torch_ctc(FLAT, "sum")[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    "form",
    ["0-d lengths", "1-element lengths", "2-D targets"],
)
def test_unbatched_input_matches_torch(reduction, form):
    lp = LOG_PROBS[:, 2]  # (T, C)
    targets, il, tl = PADDED[2], np.array(8), np.array(4)
    if form == "1-element lengths":
        il, tl = il[None], tl[None]
    if form == "2-D targets":
        targets = targets[None]
    expected, expected_grad = torch_ctc(targets, reduction, log_probs=lp, inputs=il, lengths=tl)
    x = torch.tensor(lp, requires_grad=True)
    got = pl.ctc_loss(x.log_softmax(-1), torch.as_tensor(targets), torch.as_tensor(il), torch.as_tensor(tl), from_logits=False,
                      time_major=True, reduction=reduction)
    assert tuple(got.shape) == ()
    (grad,) = torch.autograd.grad(got, [x])
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-8, atol=1e-10)
    # the same on NumPy, lists for the lengths, batch-major flag irrelevant for (T, C)
    got_np = pl.ctc_loss(lp, targets.tolist(), il.tolist(), tl.tolist(), from_logits=False, reduction=reduction)
    np.testing.assert_allclose(got_np, expected, rtol=1e-10)


@pytest.mark.parametrize("targets", ["padded", "concatenated"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_ctcloss_module_is_torch_nn_ctcloss(targets, reduction):
    y = PADDED if targets == "padded" else FLAT
    expected, expected_grad = torch_ctc(y, reduction)
    x = torch.tensor(LOG_PROBS, requires_grad=True)
    module = CTCLoss(reduction=reduction)
    got = module(x.log_softmax(-1), torch.as_tensor(y), torch.as_tensor(INPUTS), torch.as_tensor(LENGTHS))
    (grad,) = torch.autograd.grad(got.sum(), [x])
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-8, atol=1e-10)
    assert repr(module) == f"CTCLoss(blank=0, reduction='{reduction}', zero_infinity=False)"


def test_ctcloss_module_blank_zero_infinity_and_generic_path():
    lp = LOG_PROBS[..., ::-1].copy()  # blank = C - 1 now holds what class 0 held
    flat = C - 1 - FLAT
    expected = torch_ctc(flat, "mean", blank=C - 1, log_probs=lp)[0]
    got = CTCLoss(blank=C - 1)(torch.tensor(lp), torch.as_tensor(flat), tuple(INPUTS.tolist()), tuple(LENGTHS.tolist()))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    # sequence 0, [1, 2, 2], needs a blank between the 2s: no alignment in 3 frames, so inf,
    # or 0 with zero_infinity (torch: the same)
    short = INPUTS.copy()
    short[0] = 3
    for zi in (False, True):
        want = torch_ctc(FLAT, "none", zero_infinity=zi, inputs=short)[0]
        got = CTCLoss(reduction="none", zero_infinity=zi)(torch.tensor(LOG_PROBS), torch.as_tensor(FLAT),
                                                           torch.as_tensor(short), torch.as_tensor(LENGTHS))
        assert np.isinf(want[0]) != zi and np.isinf(got.numpy()[0]) != zi
        np.testing.assert_array_equal(np.isinf(got.numpy()), np.isinf(want))
        np.testing.assert_allclose(got.numpy()[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-10)
    x = torch.tensor(LOGITS[:, 0], requires_grad=True)
    un = CTCLoss(native=False)(x.log_softmax(-1), torch.as_tensor(PADDED[0, :3]), torch.tensor(9), torch.tensor(3))
    want = torch_ctc(PADDED[0, :3], "mean", log_probs=LOGITS[:, 0], inputs=np.array(9), lengths=np.array(3))
    (g,) = torch.autograd.grad(un, [x])
    np.testing.assert_allclose(un.detach().numpy(), want[0], rtol=1e-10)
    np.testing.assert_allclose(g.numpy(), want[1], rtol=1e-8, atol=1e-10)


def test_ctcloss_module_refuses_a_keras_reduction():
    with pytest.raises(pl.ArgumentError, match="reduction"):
        CTCLoss(reduction="sum_over_batch_size")
