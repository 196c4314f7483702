"""Distillation losses: ``distillation_kl``, ``distillation_cross_entropy``, ``js_divergence_loss``.

Values and gradients against the peers run live: PyTorch's ``F.kl_div(log q, log p,
log_target=True)`` (and ``log_target=False`` for probability teachers),
``F.cross_entropy`` with probability targets, and Optax's
``losses.kl_divergence_with_log_targets`` / ``softmax_cross_entropy``; the
Jensen-Shannon divergence, which neither has, against SciPy's ``jensenshannon`` (squared)
and a float64 formula.  Every backend is checked against a float64 NumPy formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax, softmax

import probloss as pl

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(11)
N, K = 6, 7
TEACHER = RNG.normal(scale=3.0, size=(N, K))
STUDENT = RNG.normal(scale=3.0, size=(N, K))
LP, LQ = log_softmax(TEACHER, -1), log_softmax(STUDENT, -1)


def ref_kl(t, s, T=1.0, scale=True):
    lp, lq = log_softmax(t / T, -1), log_softmax(s / T, -1)
    return (np.exp(lp) * (lp - lq)).sum(-1) * (T * T if scale else 1.0)


def ref_ce(t, s, T=1.0):
    return -(softmax(t / T, -1) * log_softmax(s / T, -1)).sum(-1) * T * T


def ref_js(t, s, T=1.0):
    p, q = softmax(t / T, -1), softmax(s / T, -1)
    m = (p + q) / 2

    def kl(a):  # sum a log(a / m), with 0 log 0 = 0
        return np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0) / np.where(a > 0, m, 1.0)), 0.0).sum(-1)

    return (0.5 * kl(p) + 0.5 * kl(q)) * T * T


FNS = {"kl": (pl.distillation_kl, ref_kl), "ce": (pl.distillation_cross_entropy, ref_ce), "js": (pl.js_divergence_loss, ref_js)}


@pytest.mark.parametrize("which", sorted(FNS))
@pytest.mark.parametrize("T", [1.0, 3.5])
def test_every_backend_matches_the_float64_formula(eager_backend, which, T):
    fn, ref = FNS[which]
    b = eager_backend
    got = b.to_numpy(fn(b.asarray(TEACHER, np.float32), b.asarray(STUDENT, np.float32), temperature=T))
    assert got.dtype == np.float32 and got.shape == (N,)
    np.testing.assert_allclose(got, ref(TEACHER, STUDENT, T), rtol=2e-5, atol=1e-6)


def _torch_grads(f, *arrays):
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = f(*xs)
    return out.detach().numpy(), [g.numpy() for g in torch.autograd.grad(out.sum(), xs)]


def _jax_grads(f, *arrays):
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        xs = [jnp.asarray(a) for a in arrays]
        value = np.asarray(f(*xs))
        grads = jax.grad(lambda *a: f(*a).sum(), argnums=tuple(range(len(xs))))(*xs)
        return value, [np.asarray(g) for g in grads]


def _close(got, expected, rtol=1e-10):
    value, grads = got
    np.testing.assert_allclose(value, expected[0], rtol=rtol, atol=1e-12)
    for a, b in zip(grads, expected[1]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def test_log_target_kl_is_torch_kl_div_and_optax_value_and_gradient():
    """At T = 1 with log-probabilities on both sides: the two peers' forms, with their gradients
    (log-probabilities are used as given, so the gradient is the peers' -p, not q - p)."""
    optax = pytest.importorskip("optax")
    lp, lq = LP.copy(), LQ.copy()
    lp[0] += 0.3  # not normalised: used as given, as the peers do

    def ours(t, s):
        return pl.distillation_kl(t, s, teacher_from="log_probs", student_from="log_probs")

    expected = _torch_grads(lambda t, s: F.kl_div(s, t, log_target=True, reduction="none").sum(-1), lp, lq)
    _close(_torch_grads(ours, lp, lq), expected)
    _close(_jax_grads(lambda t, s: optax.losses.kl_divergence_with_log_targets(s, t), lp, lq), expected)
    _close(_jax_grads(ours, lp, lq), expected)


@pytest.mark.parametrize("T", [1.0, 2.0, 7.5])
def test_logit_kl_with_temperature_matches_the_peers_recipe(T):
    optax = pytest.importorskip("optax")
    import jax

    expected = _torch_grads(
        lambda t, s: F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="none").sum(-1) * T**2,
        TEACHER, STUDENT,
    )
    _close(_torch_grads(lambda t, s: pl.distillation_kl(t, s, temperature=T), TEACHER, STUDENT), expected)
    optax_form = _jax_grads(
        lambda t, s: optax.losses.kl_divergence_with_log_targets(jax.nn.log_softmax(s / T), jax.nn.log_softmax(t / T)) * T**2,
        TEACHER, STUDENT,
    )
    _close(optax_form, expected)
    _close(_jax_grads(lambda t, s: pl.distillation_kl(t, s, temperature=T), TEACHER, STUDENT), expected)
    unscaled = pl.distillation_kl(TEACHER, STUDENT, temperature=T, scale_by_temperature_squared=False)
    np.testing.assert_allclose(unscaled, expected[0] / T**2, rtol=1e-12)


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_log_prob_inputs_are_tempered_and_renormalised(T):
    got = pl.distillation_kl(LP, LQ, temperature=T, teacher_from="log_probs", student_from="log_probs")
    np.testing.assert_allclose(got, ref_kl(TEACHER, STUDENT, T), rtol=1e-10)  # log_softmax(log p / T) = log_softmax(z / T)


def test_probability_teacher_is_torch_kl_div_without_log_target():
    p = softmax(TEACHER, -1)
    p[1, :3] = 0.0  # zeros: xlogy(0, 0) = 0 in torch, 0 here
    p[1] /= p[1].sum()
    expected = _torch_grads(lambda t, s: F.kl_div(s, t, reduction="none").sum(-1), p, LQ)
    got = _torch_grads(lambda t, s: pl.distillation_kl(t, s, teacher_from="probs", student_from="log_probs"), p, LQ)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-10)
    np.testing.assert_allclose(got[1][1], expected[1][1], rtol=1e-10)  # gradient with respect to the student
    assert np.all(np.isfinite(got[1][0]))  # and a finite one with respect to the zeros of the teacher
    tempered = pl.distillation_kl(p, STUDENT, temperature=3.0, teacher_from="probs")
    with np.errstate(divide="ignore"):
        lp3 = log_softmax(np.log(p) / 3.0, -1)
    lq3 = log_softmax(STUDENT / 3.0, -1)
    p3 = np.exp(lp3)
    np.testing.assert_allclose(tempered, 9.0 * (p3 * np.where(p3 > 0, lp3 - lq3, 0)).sum(-1), rtol=1e-10)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_cross_entropy_matches_torch_and_optax(T):
    optax = pytest.importorskip("optax")
    import jax

    expected = _torch_grads(lambda t, s: F.cross_entropy(s / T, F.softmax(t / T, -1), reduction="none") * T**2, TEACHER, STUDENT)
    _close(_torch_grads(lambda t, s: pl.distillation_cross_entropy(t, s, temperature=T), TEACHER, STUDENT), expected)
    optax_form = _jax_grads(lambda t, s: optax.softmax_cross_entropy(s / T, jax.nn.softmax(t / T)) * T**2, TEACHER, STUDENT)
    _close(optax_form, expected)
    _close(_jax_grads(lambda t, s: pl.distillation_cross_entropy(t, s, temperature=T), TEACHER, STUDENT), expected)
    # the same student gradient as the KL: they differ by the teacher's entropy
    kl = _torch_grads(lambda t, s: pl.distillation_kl(t, s, temperature=T), TEACHER, STUDENT)
    np.testing.assert_allclose(kl[1][1], expected[1][1], rtol=1e-9, atol=1e-12)


def test_js_divergence_is_scipys_jensenshannon_squared_and_symmetric():
    p, q = softmax(TEACHER, -1), softmax(STUDENT, -1)
    got = pl.js_divergence_loss(TEACHER, STUDENT)
    np.testing.assert_allclose(got, jensenshannon(p, q, axis=-1) ** 2, rtol=1e-10)
    np.testing.assert_allclose(pl.js_divergence_loss(STUDENT, TEACHER), got, rtol=1e-12)
    # a class with zero probability on one side only: finite, at most log 2
    lp = LP.copy()
    lp[0, 2] = -np.inf
    lp[0] = lp[0] - np.log(np.exp(lp[0]).sum())
    got = pl.js_divergence_loss(lp, LQ, teacher_from="log_probs", student_from="log_probs")
    np.testing.assert_allclose(got[0], jensenshannon(np.exp(lp[0]), q[0]) ** 2, rtol=1e-10)
    assert np.all(got <= np.log(2))


def test_a_teacher_log_prob_of_minus_inf_adds_zero_where_the_peers_give_nan():
    lp = LP.copy()
    lp[0, 0] = -np.inf
    lp[0] = lp[0] - np.log(np.exp(lp[0]).sum())
    t, s = torch.tensor(lp, requires_grad=True), torch.tensor(LQ, requires_grad=True)
    peer = F.kl_div(s, t, log_target=True, reduction="none").sum(-1)
    assert torch.isnan(peer[0])  # peers_semantics.md, KL2
    ours = pl.distillation_kl(t, s, teacher_from="log_probs", student_from="log_probs")
    p = np.exp(lp[0])
    assert float(ours.detach()[0]) == pytest.approx(float((p[1:] * (lp[0, 1:] - LQ[0, 1:])).sum()), rel=1e-12)
    torch.testing.assert_close(ours.detach()[1:], peer.detach()[1:])
    gt, gs = torch.autograd.grad(ours.sum(), [t, s])
    assert torch.isfinite(gt).all() and torch.isfinite(gs).all()


@pytest.mark.parametrize("which", sorted(FNS))
def test_huge_logits_give_finite_values_and_gradients(which):
    fn, ref = FNS[which]
    t = torch.tensor(TEACHER * 1e4, dtype=torch.float32, requires_grad=True)
    s = torch.tensor(STUDENT * 1e4, dtype=torch.float32, requires_grad=True)
    out = fn(t, s, temperature=0.5)
    grads = torch.autograd.grad(out.sum(), [t, s])
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    np.testing.assert_allclose(out.detach().numpy(), ref(TEACHER * 1e4, STUDENT * 1e4, 0.5), rtol=1e-5)


def test_axis_and_rank3():
    t, s = RNG.normal(size=(2, K, 3)), RNG.normal(size=(2, K, 3))
    got = pl.distillation_kl(t, s, temperature=2.0, axis=1)
    expected = ref_kl(np.moveaxis(t, 1, -1), np.moveaxis(s, 1, -1), 2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"temperature": 0.0}, pl.ArgumentError, ["temperature"]),
        ({"temperature": float("inf")}, pl.ArgumentError, ["temperature"]),
        ({"teacher_from": "softmax"}, pl.ArgumentError, ["teacher_from", "'probs'"]),
        ({"student_from": "probs"}, pl.ArgumentError, ["student_from", "'log_probs'"]),
        ({"student_from": "log_probs"}, pl.PredictionValueError, ["student", "log-probabilities", "student_from='logits'"]),
        ({"teacher_from": "probs"}, pl.PredictionValueError, ["teacher", "[0, 1]"]),
        ({"scale_by_temperature_squared": 1}, pl.ArgumentError, ["scale_by_temperature_squared"]),
    ],
)
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        pl.distillation_kl(TEACHER, STUDENT, **kwargs)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_shapes_must_match():
    with pytest.raises(pl.ShapeError):
        pl.distillation_kl(TEACHER, STUDENT[:, :3])


@pytest.mark.parametrize(
    ("cls", "fn"),
    [(pl.DistillationKL, ref_kl), (pl.DistillationCrossEntropy, ref_ce), (pl.JSDivergence, ref_js)],
)
def test_classes_reduce_and_round_trip(cls, fn):
    loss = cls(temperature=2.0, reduction="sum")
    assert float(loss(TEACHER, STUDENT)) == pytest.approx(fn(TEACHER, STUDENT, 2.0).sum(), rel=1e-12)
    assert float(cls(temperature=2.0)(TEACHER, STUDENT)) == pytest.approx(fn(TEACHER, STUDENT, 2.0).mean(), rel=1e-12)
    clone = pl.deserialize(pl.serialize(loss))
    assert type(clone) is cls and clone.get_config() == loss.get_config()
    assert type(pl.get(cls.__name__)) is cls
    with pytest.raises(pl.ArgumentError, match="temperature"):
        cls(temperature=-1)
