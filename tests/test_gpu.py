"""Every loss on a GPU (torch CUDA, JAX GPU): same numbers, same device. Skipped without one."""

from __future__ import annotations

import numpy as np
import pytest

import probloss as pl
from tests import cases

torch = pytest.importorskip("torch")
import probloss.torch  # noqa: E402

pytestmark = pytest.mark.gpu


def _jax_gpu():
    try:
        import jax

        return jax.devices("gpu")[0]
    except (ImportError, RuntimeError):
        return None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", cases.CASES, ids=[c.id for c in cases.CASES])
def test_every_loss_on_cuda(case):
    t = torch.as_tensor(case.y_true if case.y_true.dtype.kind in "iu" else case.y_true.astype(np.float32)).cuda()
    p = torch.as_tensor(case.y_pred.astype(np.float32)).cuda().requires_grad_()
    out = case.call(t, p)
    assert out.device.type == "cuda"
    assert out.dtype == p.dtype
    np.testing.assert_allclose(out.detach().cpu().numpy(), case.reference(), rtol=case.rtol, atol=2e-6)
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
    # with the Triton kernels the error is read after the call returns, without stopping the
    # device (at the next call, or here); on torch's column it is raised by the call itself
    with pytest.raises(pl.LabelValueError, match=r"class index 10 at index \(5,\)"):
        pl.sparse_categorical_crossentropy(bad, logits, from_logits=True)
        probloss.torch.check_pending()


@pytest.mark.skipif(_jax_gpu() is None, reason="needs JAX with a GPU")
@pytest.mark.parametrize("case", ["sparse-logits", "categorical-logits-smoothing0.2", "binary-probs", "poisson", "kl-divergence"])
def test_losses_on_jax_gpu(case):
    import jax
    import jax.numpy as jnp

    case = cases.BY_ID[case]
    dev = _jax_gpu()
    t = jax.device_put(jnp.asarray(case.y_true if case.y_true.dtype.kind in "iu" else case.y_true.astype(np.float32)), dev)
    p = jax.device_put(jnp.asarray(case.y_pred.astype(np.float32)), dev)
    out = jax.jit(case.call)(t, p)
    assert list(out.devices())[0].platform == "gpu"
    np.testing.assert_allclose(np.asarray(out), case.reference(), rtol=case.rtol, atol=2e-6)
