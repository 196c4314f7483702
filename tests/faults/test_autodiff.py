"""Second-order autodiff and torch.func transforms through probloss's torch losses.

The old code computed big torch losses with numba kernels outside autograd's view (its
backward was a hand-written first derivative): a Hessian-vector product through it was
silently zero or wrong.  Now torch tensors are served by torch code whose backward, under
``create_graph=True``, differentiates a differentiable forward.  Checked at a small size
(torch's fused losses) and above 65536 elements (probloss's chunked Functions), in
float64, against torch's own losses or the written-out formula.
"""

from __future__ import annotations

import pytest

import probloss as pl

torch = pytest.importorskip("torch")
F = torch.nn.functional
pl_torch = pytest.importorskip("probloss.torch")

SHAPES = {"small": (32, 10), "big": (300, 400)}  # 320 and 120000 elements (chunked from 65536)
EPS = 1e-7


def _inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, k = shape
    x = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, k, (n,), generator=g)
    soft = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    p = torch.rand(n, k, generator=g, dtype=torch.float64) * 0.9 + 0.05  # (0.05, 0.95): no clipping
    t = torch.rand(n, k, generator=g, dtype=torch.float64)
    q = torch.rand(n, k, generator=g, dtype=torch.float64) * 0.9 + 0.05  # KL targets in (0.05, 0.95)
    v = torch.randn(n, k, generator=g, dtype=torch.float64)
    return x, y, soft, p, t, q, v


# name -> (probloss loss of the variable, the reference of the variable); the variable is
# the logits x or the probabilities p.
def _cases(x, y, soft, p, t, q):
    return {
        "SparseCategoricalCrossentropy(from_logits)": (
            x, lambda z: pl.SparseCategoricalCrossentropy(from_logits=True)(y, z), lambda z: F.cross_entropy(z, y)),
        "CategoricalCrossentropy(from_logits)": (
            x, lambda z: pl.CategoricalCrossentropy(from_logits=True)(soft, z), lambda z: F.cross_entropy(z, soft)),
        "BinaryCrossentropy(from_logits)": (
            x, lambda z: pl.BinaryCrossentropy(from_logits=True)(t, z), lambda z: F.binary_cross_entropy_with_logits(z, t)),
        "BinaryCrossentropy(probabilities)": (
            p, lambda z: pl.BinaryCrossentropy()(t, z), lambda z: -(t * torch.log(z) + (1 - t) * torch.log1p(-z)).mean()),
        "KLDivergence": (
            p, lambda z: pl.KLDivergence()(q, z), lambda z: (q * torch.log(q / z)).sum(1).mean()),
        "Poisson": (
            p, lambda z: pl.Poisson()(t, z), lambda z: (z - t * torch.log(z + EPS)).mean()),
        "probloss.torch.cross_entropy": (
            x, lambda z: pl_torch.cross_entropy(z, y), lambda z: F.cross_entropy(z, y)),
    }


CASE_NAMES = list(_cases(*[None] * 6))


def _hvp(fn, z0, v):
    z = z0.detach().clone().requires_grad_()
    value = fn(z)
    (grad,) = torch.autograd.grad(value, z, create_graph=True)
    (hv,) = torch.autograd.grad((grad * v).sum(), z, create_graph=True)
    (hv2,) = torch.autograd.grad((hv * v).sum(), z)  # third order: d/dz (v^T H v)
    return value.detach(), grad.detach(), hv.detach(), hv2.detach()


def _assert_close(got, want, what):
    scale = float(want.abs().max()) or 1.0
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * scale, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("size", SHAPES)
@pytest.mark.parametrize("case", CASE_NAMES)
def test_hessian_vector_products_match_torch(case, size):
    x, y, soft, p, t, q, v = _inputs(SHAPES[size])
    z, ours, reference = _cases(x, y, soft, p, t, q)[case]
    got, want = _hvp(ours, z, v), _hvp(reference, z, v)
    assert got[2].abs().max() > 0  # a Hessian-vector product that is not silently zero
    for name, a, b in zip(("value", "gradient", "Hessian-vector product", "third derivative"), got, want):
        _assert_close(a, b, f"{case} at {size}: {name}")


# torch.func: equal to the same transform over F.cross_entropy, or a ProblossError that
# names the transform.  Anything else (a RuntimeError from deep inside torch) is a bug.


def _func_outcome(run_ours, run_reference, transform):
    try:
        got = run_ours()
    except pl.ProblossError as exc:
        assert transform in str(exc), f"the error does not name {transform}: {exc}"
        return "refused"
    torch.testing.assert_close(got, run_reference(), rtol=1e-9, atol=1e-12)
    return "equal"


@pytest.mark.parametrize("size", SHAPES)
def test_torch_func_grad(size):
    x, y, *_ = _inputs(SHAPES[size])
    loss = pl.SparseCategoricalCrossentropy(from_logits=True)
    outcome = _func_outcome(
        lambda: torch.func.grad(lambda z: loss(y, z))(x),
        lambda: torch.func.grad(lambda z: F.cross_entropy(z, y))(x),
        "grad",
    )
    assert outcome in ("equal", "refused")


@pytest.mark.parametrize("size", SHAPES)
def test_torch_func_vmap(size):
    n, k = SHAPES[size]
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(3, n, k, generator=g, dtype=torch.float64)
    ys = torch.randint(0, k, (3, n), generator=g)
    loss = pl.SparseCategoricalCrossentropy(from_logits=True)
    outcome = _func_outcome(
        lambda: torch.func.vmap(lambda z, yy: loss(yy, z))(xs, ys),
        lambda: torch.func.vmap(lambda z, yy: F.cross_entropy(z, yy))(xs, ys),
        "vmap",
    )
    assert outcome in ("equal", "refused")
