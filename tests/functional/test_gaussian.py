"""``probloss.gaussian_nll`` and ``GaussianNLL``: against PyTorch's ``F.gaussian_nll_loss`` run
live (values and gradients, every accepted shape of ``var``, ``full``, ``eps``) on NumPy,
array-api-strict, torch and JAX, and against a float64 formula written from the density
(SciPy's ``norm.logpdf`` for ``full=True``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import probloss as pl

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(7)
N, D = 5, 4
Y = RNG.normal(size=(N, D))
MEAN = Y + RNG.normal(scale=0.7, size=(N, D))
VAR = RNG.uniform(0.05, 3.0, size=(N, D))
VAR[0, 1] = 1e-8  # below eps: clamped
VAR[2, 3] = 0.0

# var shapes PyTorch accepts for an (N, D) mean: same, one axis short, last axis 1, first axis 1
VAR_SHAPES = {
    "same": VAR,
    "per_row": VAR[:, 0],
    "last_axis_1": VAR[:, :1],
    "first_axis_1": VAR[:1, :],
}


def torch_nll(y, mean, var, **kw):
    """PyTorch's per-element loss averaged over the last axis, and its gradients (float64)."""
    m = torch.tensor(mean, requires_grad=True)
    v = torch.tensor(var, requires_grad=True) if not isinstance(var, float) else var
    y = torch.tensor(y, requires_grad=True)
    out = F.gaussian_nll_loss(m, y, v, reduction="none", **kw).mean(-1)
    grads = torch.autograd.grad(out.sum(), [m, y] + ([v] if not isinstance(var, float) else []))
    return out.detach().numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("shape", sorted(VAR_SHAPES))
@pytest.mark.parametrize("full", [False, True])
def test_matches_torch_on_every_backend(eager_backend, shape, full):
    var = VAR_SHAPES[shape]
    expected, _ = torch_nll(Y, MEAN, var, full=full)
    b = eager_backend
    got = b.to_numpy(pl.gaussian_nll(b.asarray(Y), b.asarray(MEAN), b.asarray(var), full=full))
    tol = 1e-12 if got.dtype == np.float64 else 2e-6  # (JAX without x64 makes float32 arrays)
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    got32 = pl.gaussian_nll(b.asarray(Y, np.float32), b.asarray(MEAN, np.float32), b.asarray(var, np.float32), full=full)
    assert b.to_numpy(got32).dtype == np.float32
    np.testing.assert_allclose(b.to_numpy(got32), expected, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("eps", [1e-6, 0.3])
@pytest.mark.parametrize("shape", ["same", "per_row"])
def test_gradients_match_torch_including_below_eps(shape, eps):
    """torch clamps var in place under no_grad: below eps the gradient is the one at eps."""
    var = VAR_SHAPES[shape]
    value, (g_mean, g_y, g_var) = torch_nll(Y, MEAN, var, eps=eps)
    m, y, v = (torch.tensor(a, requires_grad=True) for a in (MEAN, Y, var))
    out = pl.gaussian_nll(y, m, v, eps=eps)
    np.testing.assert_allclose(out.detach().numpy(), value, rtol=1e-12)
    got = torch.autograd.grad(out.sum(), [m, y, v])
    for a, b in zip(got, (g_mean, g_y, g_var)):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-10, atol=1e-12)
    if shape == "same":
        assert got[2][0, 1] != 0  # below eps: not zero, as in torch

    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        import jax.numpy as jnp

        f = jax.jit(lambda m, y, v: pl.gaussian_nll(y, m, v, eps=eps).sum())
        jg = jax.grad(f, argnums=(0, 1, 2))(jnp.asarray(MEAN), jnp.asarray(Y), jnp.asarray(var))
        for a, b in zip(jg, (g_mean, g_y, g_var)):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10, atol=1e-12)


def test_float_var_and_rank3_middle_axis_like_torch():
    x = RNG.normal(size=(2, 3, 4))
    y = RNG.normal(size=(2, 3, 4))
    var = RNG.uniform(0.5, 2, size=(2, 1, 4))  # one axis of size 1 that is not the last
    np.testing.assert_allclose(pl.gaussian_nll(y, x, var), torch_nll(y, x, var)[0], rtol=1e-12)
    np.testing.assert_allclose(pl.gaussian_nll(y, x, 0.7), torch_nll(y, x, 0.7)[0], rtol=1e-12)


def test_is_the_normal_log_density_averaged_over_axis():
    """full=True is -log N(y; mean, var) (SciPy); axis=0 averages the other way."""
    var = np.maximum(VAR, 1e-6)
    logpdf = stats.norm.logpdf(Y, loc=MEAN, scale=np.sqrt(var))
    np.testing.assert_allclose(pl.gaussian_nll(Y, MEAN, VAR, full=True), -logpdf.mean(-1), rtol=1e-12)
    np.testing.assert_allclose(pl.gaussian_nll(Y, MEAN, VAR, full=True, axis=0), -logpdf.mean(0), rtol=1e-12)
    # at var = 1 and full=False: half the mean squared error
    np.testing.assert_allclose(pl.gaussian_nll(Y, MEAN, 1.0), 0.5 * ((Y - MEAN) ** 2).mean(-1), rtol=1e-12)


def test_keras_rank_alignment_and_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    y, m, v = np.array([1.0, 2.0]), np.array([[1.5], [2.5]]), np.array([[0.5], [2.0]])
    expected = 0.5 * (np.log(v[:, 0]) + (m[:, 0] - y) ** 2 / v[:, 0])
    np.testing.assert_allclose(pl.gaussian_nll(y, m, v), expected, rtol=1e-12)
    got = jax.jit(lambda a, b, c: pl.gaussian_nll(a, b, c))(jnp.asarray(Y, jnp.float32), jnp.asarray(MEAN, jnp.float32),
                                                             jnp.asarray(VAR, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), torch_nll(Y, MEAN, VAR)[0], rtol=2e-6)


@pytest.mark.parametrize(
    ("var", "error", "words"),
    [
        (np.where(VAR == VAR[1, 2], -0.5, VAR), pl.PredictionValueError, ["var", "-0.5", "(1, 2)", "negative"]),
        (np.where(VAR == VAR[1, 2], np.nan, VAR), pl.PredictionValueError, ["var", "nan"]),
        (VAR[:, :2], pl.ShapeError, ["var", "(5, 2)", "(5, 4)"]),
        (VAR[:1, :1], pl.ShapeError, ["var"]),
        (-1.0, pl.PredictionValueError, ["var"]),
    ],
)
def test_bad_variances(var, error, words):
    with pytest.raises(error) as info:
        pl.gaussian_nll(Y, MEAN, var)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_bad_options():
    with pytest.raises(pl.ArgumentError, match="eps"):
        pl.gaussian_nll(Y, MEAN, VAR, eps=0)
    with pytest.raises(pl.ArgumentError, match="full"):
        pl.gaussian_nll(Y, MEAN, VAR, full="yes")
    with pytest.raises(pl.ArgumentError, match="eps"):
        pl.GaussianNLL(eps=-1.0)


# ------------------------------------------------------------------------------ the class


def test_class_matches_torch_module_and_takes_var_two_ways():
    expected = torch.nn.GaussianNLLLoss(full=True, eps=1e-3)(torch.tensor(MEAN), torch.tensor(Y), torch.tensor(VAR))
    loss = pl.GaussianNLL(full=True, eps=1e-3)
    assert float(loss(Y, MEAN, var=VAR)) == pytest.approx(float(expected), rel=1e-12)
    assert float(loss(Y, (MEAN, VAR))) == pytest.approx(float(expected), rel=1e-12)
    per, mask = loss.per_sample(Y, MEAN, var=VAR)
    assert mask is None
    np.testing.assert_allclose(per, torch_nll(Y, MEAN, VAR, full=True, eps=1e-3)[0], rtol=1e-12)
    w = np.arange(N, dtype=np.float64)[:, None]
    summed = pl.GaussianNLL(full=True, eps=1e-3, reduction="sum")(Y, MEAN, var=VAR, sample_weight=w)
    assert float(summed) == pytest.approx(float((w[:, 0] * per).sum()), rel=1e-12)
    from probloss.torch import LossModule

    module = LossModule("GaussianNLL")
    got = module(torch.tensor(Y), (torch.tensor(MEAN), torch.tensor(VAR)))
    assert float(got) == pytest.approx(float(torch.nn.GaussianNLLLoss()(torch.tensor(MEAN), torch.tensor(Y), torch.tensor(VAR))), rel=1e-12)


def test_class_without_variance_refuses_and_keeps_no_state():
    loss = pl.GaussianNLL()
    with pytest.raises(pl.ArgumentError, match="var=var"):
        loss(Y, MEAN)
    loss(Y, MEAN, var=VAR)
    with pytest.raises(pl.ArgumentError, match="variance"):
        loss(Y, MEAN)  # the previous call's var was not kept


def test_class_registry_and_config():
    loss = pl.GaussianNLL(full=True, eps=1e-4, reduction="sum", name="nll")
    clone = pl.deserialize(pl.serialize(loss))
    assert type(clone) is pl.GaussianNLL and clone.get_config() == loss.get_config()
    assert clone.get_config() == {"name": "nll", "reduction": "sum", "full": True, "eps": 1e-4}
    assert pl.get("gaussian_nll") is pl.gaussian_nll
    assert type(pl.get("GaussianNLL")) is pl.GaussianNLL
