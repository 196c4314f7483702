"""probloss.jax.linear_cross_entropy / linear_log_probs_and_entropy against independent references.

References: ``optax.softmax_cross_entropy_with_integer_labels`` on the full logits for the
plain loss, and a float64 ``jnp`` formula (torch's label smoothing with class weights,
the softcap ``c tanh(z / c)``, PaLM's z-loss ``z * lse^2``) for the options.  Every case
is a ``jit(value_and_grad)`` compilation, so the cases are few and combine options (the
torch tests, which compile nothing, take each option alone).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")

import probloss  # noqa: E402
from probloss.jax import LogProbsEntropy, auto_chunk_rows, linear_cross_entropy, linear_log_probs_and_entropy  # noqa: E402

N, D, V = 37, 19, 101  # N no multiple of the chunk, V no multiple of anything
CHUNK = 8


def _inputs(dtype=np.float64, lead=(N,), ignore_every=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lead + (D,)).astype(dtype)
    w = (rng.standard_normal((V, D)) * 0.5).astype(dtype)
    b = rng.standard_normal(V).astype(dtype)
    y = rng.integers(0, V, lead).astype(np.int32)
    if ignore_every:
        y.reshape(-1)[::ignore_every] = -100
    cw = (rng.random(V) + 0.25).astype(dtype)
    return x, w, b, y, cw


def reference(x, w, b, y, *, label_smoothing=0.0, z_loss=0.0, softcap=None, reduction="mean", class_weight=None,
              ignore_index=-100):
    """The loss from the full logits, written out (float64 under x64)."""
    lead = y.shape
    x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1)
    z = x @ w.T + (0.0 if b is None else b)
    if softcap is not None:
        z = softcap * jnp.tanh(z / softcap)
    valid = y != ignore_index
    ys = jnp.where(valid, y, 0)
    if class_weight is None and not label_smoothing:
        ce = optax.softmax_cross_entropy_with_integer_labels(z, ys) * valid
        wy = valid.astype(z.dtype)
    else:
        cw = jnp.ones(V, z.dtype) if class_weight is None else class_weight
        logp = jax.nn.log_softmax(z, axis=-1)
        wy = cw[ys] * valid
        nll = -jnp.take_along_axis(logp, ys[:, None], axis=1)[:, 0]
        ce = (1 - label_smoothing) * wy * nll + (label_smoothing / V) * valid * -(logp * cw).sum(1)
    lse2 = jnp.where(valid, jax.nn.logsumexp(z, axis=1) ** 2, 0.0)
    if reduction == "none":
        return (ce + z_loss * lse2).reshape(lead)
    if reduction == "sum":
        return ce.sum() + z_loss * lse2.sum()
    return ce.sum() / wy.sum() + z_loss * lse2.sum() / valid.sum()


def _value_and_grads(fn, x, w, b, reduction, *, jit=True):
    """``(output, gradients)`` of ``fn`` (of a weighted sum of the per-token losses for "none"),
    as one jitted call."""
    def scalar(x, w, b):
        out = fn(x, w, b)
        total = out
        if reduction == "none":
            total = (out * jnp.linspace(-1.0, 2.0, out.size, dtype=out.dtype).reshape(out.shape)).sum()
        return total, out

    vg = jax.value_and_grad(scalar, argnums=(0, 1, 2), has_aux=True)
    (_, out), grads = (jax.jit(vg) if jit else vg)(x, w, b)
    return out, grads


def _close(got, want, rtol, atol):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol)


CASES = {
    "plain-mean": ({}, "mean", False),
    "z_loss-sum": ({"z_loss": 1e-2}, "sum", False),
    "class_weight-mean-recompute": ({"class_weight": True}, "mean", True),
    "everything-mean": ({"label_smoothing": 0.2, "z_loss": 0.1, "softcap": 3.0, "class_weight": True}, "mean", False),
    "everything-sum-recompute": ({"label_smoothing": 0.2, "z_loss": 0.1, "softcap": 3.0, "class_weight": True}, "sum", True),
    "everything-none": ({"label_smoothing": 0.2, "z_loss": 0.1, "softcap": 3.0, "class_weight": True}, "none", False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_value_and_gradients_match_float64_reference(case):
    opts, reduction, recompute = CASES[case]
    with jax.enable_x64(True):
        x, w, b, y, cw = (jnp.asarray(a) for a in _inputs(lead=(N,) if reduction != "none" else (3, 11)))
        kw = {k: (cw if k == "class_weight" else v) for k, v in opts.items()}
        got_v, got_g = _value_and_grads(
            lambda x, w, b: linear_cross_entropy(x, w, y, b, reduction=reduction, chunk_size=CHUNK, recompute=recompute, **kw),
            x, w, b, reduction)
        want_v, want_g = _value_and_grads(lambda x, w, b: reference(x, w, b, y, reduction=reduction, **kw), x, w, b,
                                          reduction)
        assert got_v.dtype == jnp.float64 and got_v.shape == want_v.shape
        _close(got_v, want_v, 1e-12, 1e-12)
        for g, r in zip(got_g, want_g):
            assert g.shape == r.shape
            _close(g, r, 1e-10, 1e-12)
        if reduction == "none":
            assert bool(jnp.all(got_v[y == -100] == 0))


def test_float32_against_float64_reference_without_bias():
    x, w, _, y, _ = _inputs()
    x32, w32 = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
    got_v, got_g = _value_and_grads(lambda x, w, b: linear_cross_entropy(x, w, y, z_loss=1e-3), x32, w32, None, "mean")
    assert got_v.dtype == jnp.float32 and got_g[2] is None
    with jax.enable_x64(True):
        want_v, want_g = _value_and_grads(lambda x, w, b: reference(x, w, None, jnp.asarray(y), z_loss=1e-3),
                                          jnp.asarray(x32, jnp.float64), jnp.asarray(w32, jnp.float64), None, "mean")
    _close(got_v, want_v, 1e-5, 1e-5)
    for g, r in zip(got_g[:2], want_g[:2]):
        _close(g, r, 1e-4, 1e-6)


def test_bfloat16_within_tolerance():
    x, w, b, y, _ = _inputs()
    xb, wb, bb = (jnp.asarray(a, jnp.bfloat16) for a in (x, w, b))
    got_v, got_g = _value_and_grads(lambda x, w, b: linear_cross_entropy(x, w, y, b, softcap=4.0, chunk_size=CHUNK),
                                    xb, wb, bb, "mean")
    assert got_v.dtype == jnp.float32 and all(g.dtype == jnp.bfloat16 for g in got_g)
    up = [jnp.asarray(a, jnp.float32) for a in (xb, wb, bb)]
    want_v, want_g = _value_and_grads(lambda x, w, b: reference(x, w, b, jnp.asarray(y), softcap=4.0), *up, "mean")
    _close(got_v, want_v, 2e-2, 2e-2)
    for g, r in zip(got_g, want_g):
        scale = float(jnp.abs(r).max())
        _close(np.asarray(g, np.float32) / scale, np.asarray(r) / scale, 2e-2, 2e-2)


def test_every_token_ignored_gives_zero_not_nan():
    x, w, b, y, cw = (jnp.asarray(a, jnp.float32) if a.dtype.kind == "f" else jnp.asarray(a) for a in _inputs())
    y = jnp.full_like(y, -100)
    value, grads = _value_and_grads(
        lambda x, w, b: linear_cross_entropy(x, w, y, b, class_weight=cw, z_loss=0.1, label_smoothing=0.1), x, w, b, "mean")
    assert float(value) == 0.0
    assert all(bool(jnp.all(g == 0)) for g in grads)


def test_log_probs_and_entropy():
    softcap = 2.0
    with jax.enable_x64(True):
        x, w, b, _, _ = (jnp.asarray(a) for a in _inputs(lead=(4, 9)))
        y = jnp.asarray(np.random.default_rng(3).integers(0, V, (4, 9)))
        cl, ch = jnp.linspace(-1.0, 1.0, 36).reshape(4, 9), jnp.linspace(2.0, -1.0, 36).reshape(4, 9)

        def ref(x, w, b):
            z = x @ w.T + b
            z = softcap * jnp.tanh(z / softcap)
            logp = jax.nn.log_softmax(z, axis=-1)
            return jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0], -(jnp.exp(logp) * logp).sum(-1)

        def ours(x, w, b):
            out = linear_log_probs_and_entropy(x, w, y, b, softcap=softcap, chunk_size=5)
            assert isinstance(out, LogProbsEntropy)
            return tuple(out)

        def weighted(f, jit):
            def scalar(x, w, b):
                lp, h = f(x, w, b)
                return (lp * cl).sum() + (h * ch).sum(), (lp, h)
            vg = jax.value_and_grad(scalar, argnums=(0, 1, 2), has_aux=True)
            return (jax.jit(vg) if jit else vg)(x, w, b)

        (_, (lp, h)), grads = weighted(ours, True)
        (_, (want_lp, want_h)), want_grads = weighted(ref, True)
        assert lp.shape == h.shape == (4, 9)
        _close(lp, want_lp, 1e-12, 1e-12)
        _close(h, want_h, 1e-12, 1e-12)
        for g, r in zip(grads, want_grads):
            _close(g, r, 1e-10, 1e-12)


def test_peak_memory_of_the_compiled_gradient_is_a_chunk_not_the_logits():
    """XLA's own account of the jitted gradient (N=4096, V=32000, float32): its temporaries
    are a fraction of one N x V buffer, where optax's formula needs several."""
    n, d, v = 4096, 16, 32000
    x = jax.ShapeDtypeStruct((n, d), jnp.float32)
    w = jax.ShapeDtypeStruct((v, d), jnp.float32)
    y = jax.ShapeDtypeStruct((n,), jnp.int32)

    def temp_bytes(loss):
        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w, y).compile()
        stats = compiled.memory_analysis()
        if stats is None:
            pytest.skip("this XLA backend reports no memory analysis")
        return stats.temp_size_in_bytes

    nv = n * v * 4
    ours = temp_bytes(lambda x, w, y: linear_cross_entropy(x, w, y))  # automatic chunk: 512 rows
    optax_path = temp_bytes(lambda x, w, y: optax.softmax_cross_entropy_with_integer_labels(x @ w.T, y).mean())
    assert optax_path > nv  # the check can fail: the full logits show up
    assert ours < 0.3 * nv  # two 512-row chunks of float32 logits (a quarter of N x V) and small change


def test_auto_chunk_rows():
    assert auto_chunk_rows(4096, 32000, "float32", platform="cpu") == 512
    assert auto_chunk_rows(4096, 32000, "float64", platform="cpu") == 256
    assert auto_chunk_rows(100, 32000, "float32", platform="cpu") == 100
    assert auto_chunk_rows(4096, 128256, "bfloat16", platform="gpu") == 512


# ------------------------------------------------------------------------------- errors

BAD = {
    "hidden-list": (dict(hidden=[[1.0]]), probloss.ProblossTypeError, "`hidden` must be a JAX"),
    "hidden-int": (dict(hidden=np.ones((N, D), np.int32)), probloss.ProblossTypeError, "floating point"),
    "weight-wrong-D": (dict(weight=np.ones((V, D + 1), np.float32)), probloss.ShapeError, r"shape \(V, D\)"),
    "weight-other-dtype": (dict(weight=np.ones((V, D), np.float16)), probloss.ProblossTypeError, "astype"),
    "bias-wrong-shape": (dict(bias=np.ones(3, np.float32)), probloss.ShapeError, r"`bias` must have shape \(101,\)"),
    "target-wrong-shape": (dict(target=np.zeros(N + 1, np.int32)), probloss.ShapeError, "`target` must have"),
    "target-float": (dict(target=np.zeros(N, np.float32)), probloss.ProblossTypeError, "integer class indices"),
    "target-out-of-range": (dict(target=np.full(N, V, np.int32)), probloss.LabelValueError,
                            r"class index 101 at flat position 0.*\[0, 100\] or equal `ignore_index`=-100"),
    "reduction": (dict(reduction="avg"), probloss.ArgumentError, "one of 'mean', 'sum', 'none'"),
    "label_smoothing": (dict(label_smoothing=-0.1), probloss.ArgumentError, "`label_smoothing`"),
    "z_loss": (dict(z_loss=float("nan")), probloss.ArgumentError, "`z_loss`"),
    "softcap": (dict(softcap=-1.0), probloss.ArgumentError, "`softcap`"),
    "chunk_size": (dict(chunk_size=2.5), probloss.ArgumentError, "`chunk_size`"),
    "class_weight": (dict(class_weight=np.ones(V, np.int32)), probloss.ShapeError, "`class_weight` must be a floating"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_an_error_that_names_the_argument(case):
    over, cls, pattern = BAD[case]
    x, w, b, y, _ = _inputs(np.float32)
    args = {"hidden": x, "weight": w, "target": y, "bias": b, **over}
    with pytest.raises(cls, match=pattern) as info:
        linear_cross_entropy(args.pop("hidden"), args.pop("weight"), args.pop("target"), args.pop("bias"), **args)
    assert str(info.value).startswith("linear_cross_entropy: ")


def test_label_check_is_eager_only():
    x, w, _, _, _ = _inputs(np.float32)
    bad = np.full(N, V, np.int32)
    with pytest.raises(probloss.LabelValueError, match="linear_log_probs_and_entropy: "):
        linear_log_probs_and_entropy(x, w, bad)
    # under jit the labels are abstract: no check (and no error), as for probloss's other losses
    jax.jit(lambda x, w, y: linear_cross_entropy(x, w, y, chunk_size=CHUNK))(x, w, bad).block_until_ready()
