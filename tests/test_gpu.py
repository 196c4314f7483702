"""Every loss on a GPU (torch CUDA, JAX GPU): same numbers, same device. Skipped without one."""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl
from tests.test_backends import CASES

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu


def _jax_gpu():
    try:
        import jax

        return jax.devices("gpu")[0]
    except (ImportError, RuntimeError):
        return None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", list(CASES))
def test_every_loss_on_cuda(case):
    fn, y_true, y_pred, kwargs, expected = CASES[case]
    t = torch.as_tensor(np.asarray(y_true)).cuda()
    p = torch.as_tensor(y_pred).cuda().requires_grad_()
    out = fn(t, p, **kwargs)
    assert out.device.type == "cuda"
    assert out.dtype == p.dtype
    rtol = 1e-4 if case.startswith("bfce") else 2e-5
    np.testing.assert_allclose(out.detach().cpu().numpy(), expected(), rtol=rtol, atol=2e-6)
    (g,) = torch.autograd.grad(out.sum(), p)
    assert g.device.type == "cuda" and torch.isfinite(g).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_classes_and_errors_on_cuda():
    logits = torch.randn(64, 10, device="cuda")
    labels = torch.randint(0, 10, (64,), device="cuda")
    weights = torch.rand(64, device="cuda")
    out = pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3)(labels, logits, sample_weight=weights)
    assert out.device.type == "cuda"
    x, y, w = logits.cpu().double().numpy(), labels.cpu().numpy(), weights.cpu().double().numpy()
    lse = np.log(np.exp(x).sum(1)) - x[np.arange(64), y]
    valid = y != 3
    expected = (lse * w * valid).sum() / valid.sum()
    np.testing.assert_allclose(float(out), expected, rtol=1e-5)
    bad = labels.clone()
    bad[5] = 10
    with pytest.raises(pl.LabelValueError, match=r"class index 10 at index \(5,\)"):
        pl.sparse_categorical_crossentropy(bad, logits, from_logits=True)


@pytest.mark.skipif(_jax_gpu() is None, reason="needs JAX with a GPU")
@pytest.mark.parametrize("case", ["scce_logits", "cce_logits_ls", "bce_probs", "poisson", "kld"])
def test_losses_on_jax_gpu(case):
    import jax
    import jax.numpy as jnp

    fn, y_true, y_pred, kwargs, expected = CASES[case]
    dev = _jax_gpu()
    t = jax.device_put(jnp.asarray(y_true), dev)
    p = jax.device_put(jnp.asarray(y_pred), dev)
    out = jax.jit(lambda a, b: fn(a, b, **kwargs))(t, p)
    assert list(out.devices())[0].platform == "gpu"
    np.testing.assert_allclose(np.asarray(out), expected(), rtol=2e-5, atol=2e-6)
