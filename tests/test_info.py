"""probloss.info against SciPy, float64 formulas and the seed documents' numbers, on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

import probloss as pl
from probloss import info

RNG = np.random.default_rng(20240531)


def _dists(shape, zeros=False, rng=RNG):
    x = rng.random(shape) + 0.05
    if zeros:
        x = np.where(rng.random(shape) < 0.3, 0.0, x)
        x[..., 0] += 0.1  # keep every row non-empty
    return x / x.sum(axis=-1, keepdims=True)


P = _dists((5, 4), zeros=True)
Q = _dists((5, 4))

# --------------------------------------------------------------------- hand values


def test_hand_values():
    assert float(info.entropy(np.array([0.5, 0.5]), base=2)) == pytest.approx(1.0)
    assert float(info.entropy(np.full(8, 1 / 8), base=2)) == pytest.approx(3.0)
    assert float(info.entropy(np.full(10, 0.1), base=10)) == pytest.approx(1.0)
    assert float(info.entropy(np.array([1.0, 0.0, 0.0]))) == 0.0
    assert float(info.self_information(np.array(0.25), base=2)) == pytest.approx(2.0)
    assert float(info.self_information(np.array(0.0))) == math.inf
    assert float(info.self_information(np.array(1.0))) == 0.0


def test_seed_numbers():
    # Article on softmax/sigmoid/BCE: a 5-class sample with p = 0.6 on the true class costs -log 0.6.
    y = np.array([0, 0, 0, 1.0, 0])
    assert float(info.cross_entropy(y, np.array([0.1, 0.15, 0.05, 0.6, 0.1]))) == pytest.approx(-math.log(0.6))
    assert float(info.cross_entropy(y, np.array([0.15, 0.2, 0.4, 0.1, 0.15]))) == pytest.approx(-math.log(0.1))
    # Keras walkthrough: KL(P || Q) with P = [0.4, 0.6], Q = [0.3, 0.7] (computed there with scipy.stats.entropy).
    kl = 0.4 * math.log(0.4 / 0.3) + 0.6 * math.log(0.6 / 0.7)
    assert float(info.kl_divergence(np.array([0.4, 0.6]), np.array([0.3, 0.7]))) == pytest.approx(kl, rel=1e-12)
    # Two-sample binary batch: mean cross-entropy (-log 0.8 - log 0.6) / 2.
    ce = info.cross_entropy(np.array([[1.0, 0], [0, 1]]), np.array([[0.8, 0.2], [0.4, 0.6]]))
    assert float(np.mean(ce)) == pytest.approx((-math.log(0.8) - math.log(0.6)) / 2)


def test_peer_reference_values():
    # Studied reference values (scipy and Optax agree): KL per row of Pt against Q; scipy entropy of [1, 2, 3].
    pt, q = np.array([[0.2, 0.5, 0.3], [0.6, 0.4, 0]]), np.array([[0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    np.testing.assert_allclose(info.kl_divergence(pt, q), [0.0474687, 0.530961], rtol=1e-5)
    assert float(info.entropy(np.array([1, 2, 3]), normalize=True)) == pytest.approx(1.0114, abs=1e-4)
    assert float(info.entropy(np.array([1, 2, 3]), normalize=True, base=2)) == pytest.approx(1.45915, abs=1e-5)


# --------------------------------------------------------------------------- SciPy


@pytest.mark.parametrize("base", [None, 2, 10, math.e])
def test_against_scipy(base):
    np.testing.assert_allclose(info.entropy(P, base=base), stats.entropy(P, base=base, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(info.kl_divergence(P, Q, base=base), stats.entropy(P, Q, base=base, axis=-1), rtol=1e-12)
    scale = 1.0 if base is None else math.log(base)
    np.testing.assert_allclose(info.entropy(P, base=base), special.entr(P).sum(-1) / scale, rtol=1e-12)
    np.testing.assert_allclose(info.kl_divergence(P, Q, base=base), special.rel_entr(P, Q).sum(-1) / scale, rtol=1e-12)
    np.testing.assert_allclose(
        info.cross_entropy(P, Q, base=base), -special.xlogy(P, Q).sum(-1) / scale, rtol=1e-12
    )
    np.testing.assert_allclose(
        info.js_divergence(P, Q, base=base), jensenshannon(P, Q, axis=-1, base=base) ** 2, rtol=1e-9, atol=1e-15
    )
    with np.errstate(divide="ignore"):
        want = -np.log(P) / scale
    np.testing.assert_allclose(info.self_information(P, base=base), want, rtol=1e-12)


def test_axis_and_normalize_match_scipy():
    counts = RNG.integers(0, 9, size=(4, 6)).astype(np.float64) + 1
    other = RNG.random((4, 6)) + 0.1
    for axis in (0, 1, -1):
        np.testing.assert_allclose(info.entropy(counts, axis=axis, normalize=True), stats.entropy(counts, axis=axis))
        np.testing.assert_allclose(
            info.kl_divergence(counts, other, axis=axis, normalize=True), stats.entropy(counts, other, axis=axis)
        )


def test_perplexity_definitions():
    np.testing.assert_allclose(info.perplexity(P), np.exp(stats.entropy(P, axis=-1)), rtol=1e-12)
    np.testing.assert_allclose(info.perplexity(P, Q), np.exp(-special.xlogy(P, Q).sum(-1)), rtol=1e-12)
    one_hot = np.eye(4)[[0, 3, 1, 1, 2]]
    np.testing.assert_allclose(info.perplexity(one_hot, Q), 1 / Q[np.arange(5), [0, 3, 1, 1, 2]], rtol=1e-12)
    for base in (2, 10):  # the value does not depend on the base
        np.testing.assert_allclose(info.perplexity(P, base=base), info.perplexity(P), rtol=1e-12)
    assert float(info.perplexity(np.full(7, 1 / 7))) == pytest.approx(7.0)


def test_conventions():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.0, 0.5])
    assert float(info.entropy(p)) == pytest.approx(math.log(2))  # 0 log 0 = 0
    assert float(info.kl_divergence(p, q)) == math.inf  # q = 0 where p > 0
    assert float(info.cross_entropy(p, q)) == math.inf
    assert float(info.kl_divergence(np.array([1.0, 0.0]), np.array([1.0, 0.0]))) == 0.0  # 0 log(0/0) = 0
    assert float(info.js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0]))) == pytest.approx(math.log(2))
    assert float(info.kl_divergence(p, q)) == float(stats.entropy(p, q))


def test_broadcasting():
    q = _dists((3, 4))
    p = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(info.kl_divergence(p, q), special.rel_entr(p, q).sum(-1), rtol=1e-12)


# ------------------------------------------------------------------------ backends


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("entropy", lambda p, q: special.entr(p).sum(-1)),
        ("cross_entropy", lambda p, q: -special.xlogy(p, q).sum(-1)),
        ("kl_divergence", lambda p, q: special.rel_entr(p, q).sum(-1)),
        ("js_divergence", lambda p, q: jensenshannon(p, q, axis=-1) ** 2),
        ("perplexity", lambda p, q: np.exp(-special.xlogy(p, q).sum(-1))),
        ("self_information", lambda p, q: -np.log(p)),
    ],
)
def test_every_backend(backend, name, reference):
    fn = getattr(info, name)
    one = name in ("entropy", "self_information")
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 2e-5)):
        p, q = backend.asarray(P, dtype=dtype), backend.asarray(Q, dtype=dtype)
        out = backend.call(fn, p) if one else backend.call(fn, p, q)
        assert type(out) is type(p)
        if backend.name == "jax" or backend.name == "jax-jit":
            expected_dtype = p.dtype  # float64 becomes float32 when JAX runs without x64
        else:
            expected_dtype = backend.xp.float64 if dtype == np.float64 else backend.xp.float32
        assert out.dtype == expected_dtype
        with np.errstate(divide="ignore"):
            want = reference(P, P if one else Q)
        got = backend.to_numpy(out)
        np.testing.assert_allclose(got, want, rtol=rtol if got.dtype == np.float64 else 2e-5)


def test_half_precision_computes_in_float32():
    p16 = P.astype(np.float16)
    out = info.entropy(p16)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float64), special.entr(p16.astype(np.float64)).sum(-1), rtol=2e-3)


def test_lists_become_float32_numpy():
    out = info.kl_divergence([0.4, 0.6], [0.3, 0.7])
    assert isinstance(out, np.ndarray | np.generic) and out.dtype == np.float32


# ----------------------------------------------------------------------- gradients


def test_gradients_torch():
    torch = pytest.importorskip("torch")
    p = torch.tensor(P)
    q = torch.tensor(Q, requires_grad=True)
    info.kl_divergence(p, q).sum().backward()
    np.testing.assert_allclose(q.grad.numpy(), -P / Q, rtol=1e-12)  # d/dq sum p log(p/q) = -p/q
    q.grad = None
    info.cross_entropy(p, q).sum().backward()
    np.testing.assert_allclose(q.grad.numpy(), -P / Q, rtol=1e-12)
    pp = torch.tensor(P, requires_grad=True)
    info.entropy(pp).sum().backward()
    want = np.where(P > 0, -(np.log(np.where(P > 0, P, 1)) + 1), 0.0)  # 0 log 0 contributes a zero gradient
    np.testing.assert_allclose(pp.grad.numpy(), want, rtol=1e-12)
    pp.grad = None
    info.js_divergence(pp, torch.tensor(Q)).sum().backward()
    assert bool(torch.isfinite(pp.grad).all())


def test_gradients_jax_under_jit():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    p, q = jnp.asarray(P, dtype=jnp.float32), jnp.asarray(Q, dtype=jnp.float32)
    g = jax.jit(jax.grad(lambda q: info.kl_divergence(p, q).sum()))(q)
    np.testing.assert_allclose(np.asarray(g), -P / Q, rtol=1e-5)
    g = jax.jit(jax.grad(lambda p: info.js_divergence(p, q, base=2).sum()))(p)
    assert bool(jnp.all(jnp.isfinite(g)))
    # d/dp of JS in bits: 0.5 log2(p / m), m = (p + q) / 2.  Where p = 0 the p log(p/m) term is
    # held at 0 (so its derivative is 0) and only q log(q/m) moves: -q / (4m ln 2) = -0.5 / ln 2.
    m = (P + Q) / 2
    want = np.where(P > 0, 0.5 * np.log2(np.where(P > 0, P, 1) / m), -0.5 / math.log(2))
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------ property


_row = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_cross_entropy_is_entropy_plus_kl(data):
    raw_p = np.array(data.draw(_row))
    raw_q = np.array(data.draw(st.lists(st.floats(0.01, 1.0), min_size=len(raw_p), max_size=len(raw_p))))
    raw_p[0] += 0.01
    p, q = raw_p / raw_p.sum(), raw_q / raw_q.sum()
    base = data.draw(st.sampled_from([None, 2, 10]))
    h_pq = float(info.cross_entropy(p, q, base=base))
    assert h_pq == pytest.approx(float(info.entropy(p, base=base)) + float(info.kl_divergence(p, q, base=base)), abs=1e-12)
    assert float(info.kl_divergence(p, q)) >= -1e-15
    js = float(info.js_divergence(p, q, base=2))
    assert -1e-15 <= js <= 1 + 1e-12
    assert js == pytest.approx(float(info.js_divergence(q, p, base=2)), abs=1e-14)


# -------------------------------------------------------------------------- errors


def test_unnormalized_rows_raise_and_normalize_fixes():
    bad = np.array([[0.2, 0.3, 0.4], [0.3, 0.3, 0.4]])
    with pytest.raises(pl.ProblossError, match=r"`p`.*index \(0,\) sums to 0\.9.*normalize=True"):
        info.entropy(bad)
    with pytest.raises(pl.PredictionValueError, match="`q`"):
        info.kl_divergence(Q[:2, :3] / Q[:2, :3].sum(-1, keepdims=True), bad)
    np.testing.assert_allclose(info.entropy(bad, normalize=True), stats.entropy(bad, axis=-1))
    with pl.set_value_checks(False):  # checks off: the formula's value, no error
        np.testing.assert_allclose(info.entropy(bad), special.entr(bad).sum(-1))


def test_float32_tolerance():
    p = np.array([0.3, 0.3, 0.4 + 1e-4], dtype=np.float32)  # within sqrt(eps32) of 1
    assert np.isfinite(info.entropy(p))
    with pytest.raises(pl.ProblossError):
        info.entropy(p.astype(np.float64))  # float64's tolerance is 1e-6


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda: info.entropy(np.array([0.5, -0.1, 0.6])), pl.LabelValueError, r"`p` holds -0\.1"),
        (lambda: info.entropy(np.array([0.5, np.nan])), pl.LabelValueError, "finite"),
        (lambda: info.self_information(np.array([0.5, 1.5])), pl.LabelValueError, r"`p` holds 1\.5"),
        (lambda: info.entropy(np.array([0.0, 0.0]), normalize=True), pl.LabelValueError, "all-zero"),
        (lambda: info.entropy(P, base=1), pl.ArgumentError, "`base`"),
        (lambda: info.entropy(P, base=0), pl.ArgumentError, "`base`"),
        (lambda: info.entropy(P, base="2"), pl.ArgumentError, "`base`"),
        (lambda: info.entropy(P, base=True), pl.ArgumentError, "`base`"),
        (lambda: info.perplexity(P, base=-2), pl.ArgumentError, "`base`"),
        (lambda: info.entropy(P, normalize="yes"), pl.ArgumentError, "`normalize`"),
        (lambda: info.entropy(P, axis=2), pl.ArgumentError, "`axis`=2"),
        (lambda: info.entropy(np.array(1.0)), pl.ShapeError, "scalar"),
        (lambda: info.kl_divergence(P, Q[:, :3]), pl.ShapeError, "do not broadcast"),
        (lambda: info.entropy("0.5"), pl.ProblossTypeError, "`p`"),
    ],
)
def test_bad_input(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_jit_skips_value_checks():
    jax = pytest.importorskip("jax")
    bad = jax.numpy.asarray([0.2, 0.3, 0.4])
    out = jax.jit(info.entropy)(bad)  # no error under a trace: the formula's value
    assert float(out) == pytest.approx(float(special.entr(np.array([0.2, 0.3, 0.4])).sum()), rel=1e-6)
