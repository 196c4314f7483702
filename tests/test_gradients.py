"""Gradients through torch autograd and jax.grad agree with float64 finite differences.

``torch.autograd.gradcheck`` and ``jax.test_util.check_grads`` compare the analytic
gradient with central differences of the same function in float64, for every case of
the shared table (tests/cases.py) that is smooth at its inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl
from tests import cases

GRAD = cases.GRAD_CASES
IDS = [c.id for c in GRAD]


@pytest.mark.parametrize("case", GRAD, ids=IDS)
def test_torch_gradcheck(case):
    torch = pytest.importorskip("torch")
    t = torch.as_tensor(case.y_true)
    p = torch.tensor(case.y_pred, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: case.call(t, x), (p,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", GRAD, ids=IDS)
def test_jax_check_grads(case):
    jax = pytest.importorskip("jax")
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        import jax.numpy as jnp

        t = jnp.asarray(case.y_true)
        f = jax.jit(lambda x: case.call(t, x))
        check_grads(f, (jnp.asarray(case.y_pred, dtype=jnp.float64),), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradient_of_sparse_is_softmax_minus_onehot():
    """d/dx of -log_softmax(x)[y] is softmax(x) - onehot(y), written from the math."""
    torch = pytest.importorskip("torch")
    x = torch.tensor(cases.LOGITS, requires_grad=True)
    pl.sparse_categorical_crossentropy(torch.as_tensor(cases.LABELS), x, from_logits=True).sum().backward()
    soft = np.exp(cases.LOGITS - cases.LOGITS.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), soft - cases.ONEHOT, atol=1e-12)
