"""CTC: ``ctc`` / ``CTC`` (Keras 3 form) and the general ``ctc_loss``.

Every number is checked against an independent reference: PyTorch's
``F.ctc_loss`` and ``optax.ctc_loss`` run live, Keras 3 run live (JAX backend), the
Keras reference values R54-R61 of the shared Keras notes (Keras 3.15.1, JAX, float32),
and a closed form computed in float64 NumPy (input length equal to label length
without repeats: a single path).  The native fast paths (PyTorch's kernel, JAX's
``lax.scan``) are compared with the generic array-API recursion.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import probloss as pl
from probloss.functional.ctc import ctc_loss

torch = pytest.importorskip("torch")
F = torch.nn.functional

# ----------------------------------------------------------------------------- data

# Keras notes, fixture T1: logits (arange(24).reshape(2, 4, 3) - 12) / 100.
T1 = ((np.arange(24, dtype=np.float32).reshape(2, 4, 3) - 12) / 100).astype(np.float32)


def _repeats(row, n):
    return int(np.sum(row[: n - 1] == row[1:n])) if n > 1 else 0


def make_batch(seed, B=6, T=12, C=6, S=5, blank=0, pad_value=-1):
    """Seeded random batch with varying lengths, a repeated label pair, an empty label.

    Every sequence is alignable (input length >= labels + repeats).  Returns
    ``(logits, labels_padded_with_pad_value, clean_labels, input_lengths, label_lengths)``.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(B, T, C)).astype(np.float32)
    classes = np.array([c for c in range(C) if c != blank])
    labels = classes[rng.integers(0, len(classes), size=(B, S))]
    ll = rng.integers(0, S + 1, size=B)
    ll[0], ll[1] = S, 0  # a full-width label and an empty one
    ll[2] = max(ll[2], 3)
    labels[2, 1] = labels[2, 0]  # a repeat: needs a blank in between
    need = np.array([ll[b] + _repeats(labels[b], ll[b]) for b in range(B)])
    il = np.array([rng.integers(need[b], T + 1) for b in range(B)])
    il[0] = T
    inside = np.arange(S)[None, :] < ll[:, None]
    clean = np.where(inside, labels, classes[0])
    padded = np.where(inside, labels, pad_value)
    return logits, padded, clean, il, ll


def torch_ref(logits, clean, il, ll, *, blank=0, reduction="none", zero_infinity=False, weights=None):
    """PyTorch's CTC in float64 on log_softmax(logits), time-major: value and gradient."""
    x = torch.tensor(np.asarray(logits, np.float64), requires_grad=True)
    args = (torch.tensor(clean, dtype=torch.int64), torch.tensor(il), torch.tensor(ll))
    lp = x.log_softmax(-1).transpose(0, 1)
    value = F.ctc_loss(lp, *args, blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    # The gradient of finite rows only (PyTorch's gradient of an infinite row is NaN).
    per = F.ctc_loss(lp, *args, blank=blank, reduction="none", zero_infinity=True)
    w = torch.ones(len(il), dtype=torch.float64) if weights is None else torch.tensor(weights)
    (per * w).sum().backward()
    return value.detach().numpy(), x.grad.numpy()


def _arr(backend, a, dtype=None):
    if dtype is None and np.asarray(a).dtype.kind in "iu":
        dtype = np.int64 if backend.name == "torch" else np.int32
    return backend.asarray(a, dtype=dtype)


TORCH = SimpleNamespace(name="torch", jit=False)


def _grad(backend, fn, x, weights):
    """Gradient of ``sum(weights * fn(x))`` with the backend's autodiff."""
    if backend.name == "torch":
        xt = torch.tensor(np.asarray(x), requires_grad=True)
        (fn(xt) * torch.tensor(weights, dtype=xt.dtype)).sum().backward()
        return xt.grad.numpy()
    import jax
    import jax.numpy as jnp

    g = jax.grad(lambda a: jnp.sum(fn(a) * jnp.asarray(weights, dtype=a.dtype)))
    if backend.jit:
        g = jax.jit(g)
    return np.asarray(g(jnp.asarray(x)))


# --------------------------------------------------------- Keras reference values R54-R61

Y_T1 = np.array([[1, 2, 1, 0], [1, 2, 0, 2]])


def test_keras_reference_values_r54_to_r58():
    # Keras 3.15.1, JAX backend, float32 (shared Keras notes, section 13).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pl.ProblossWarning)  # row 2 has an inner 0, on purpose
        np.testing.assert_allclose(pl.CTC()(Y_T1, T1), 2.448646, rtol=1e-6)  # R54
        np.testing.assert_allclose(pl.CTC(reduction=None)(Y_T1, T1), [2.442931, 2.45436], rtol=1e-6)  # R55
        np.testing.assert_allclose(pl.CTC()(Y_T1, T1, sample_weight=[1, 3]), 4.903005, rtol=1e-6)  # R56
    np.testing.assert_allclose(pl.ctc([[1, 2, 1, 0], [1, 2, 2, 0]], T1), [2.442931, 4.384582], rtol=1e-6)  # R57
    np.testing.assert_allclose(pl.ctc([[0, 0, 0, 0]], T1[:1]), [4.434582], rtol=1e-6)  # R58


def test_keras_reference_values_r59_to_r61(backend):
    x = _arr(backend, T1)

    def run(labels, il, ll, **kw):
        fn = lambda a, b, c, d: ctc_loss(a, b, c, d, **kw)  # noqa: E731
        return backend.to_numpy(backend.call(fn, x[: len(il), ...], _arr(backend, labels), _arr(backend, il), _arr(backend, ll)))

    # R59: ops.ctc_loss(target=[[1,2,0,0],[1,0,0,0]], output=T1, target_length=[2,1], output_length=[3,4])
    np.testing.assert_allclose(run([[1, 2, 0, 0], [1, 0, 0, 0]], [3, 4], [2, 1]), [1.680467, 2.111947], rtol=1e-6)
    # R60: the same with mask_index=2 (the blank)
    np.testing.assert_allclose(run([[1, 0, 1, 2], [0, 1, 2, 2]], [4, 3], [3, 2], blank=2), [2.45436, 1.692467], rtol=1e-6)
    # R61: [1,1,1,1] in 4 frames needs 7: Keras/JAX gives 100001, PyTorch/TF inf; we choose inf.
    assert np.isposinf(run([[1, 1, 1, 1]], [4], [4])).all()
    assert run([[1, 1, 1, 1]], [4], [4], zero_infinity=True).tolist() == [0.0]


def test_keras_inner_zero_is_read_like_keras_but_warns():
    with pytest.warns(pl.ProblossWarning, match="followed by nonzero labels"):
        out = pl.ctc(Y_T1, T1)
    np.testing.assert_allclose(out, [2.442931, 2.45436], rtol=1e-6)  # R55
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pl.ctc([[1, 2, 1, 0], [1, 2, 2, 0]], T1)  # trailing padding only: no warning


# ----------------------------------------------------------------------- PyTorch live


@pytest.mark.parametrize("native", [True, False])
def test_values_match_torch_on_every_backend(backend, native):
    logits, padded, clean, il, ll = make_batch(0)
    expected, _ = torch_ref(logits, clean, il, ll)
    fn = lambda a, b, c, d: ctc_loss(a, b, c, d, native=native)  # noqa: E731
    out = backend.call(fn, _arr(backend, logits), _arr(backend, padded), _arr(backend, il), _arr(backend, ll))
    assert type(out).__module__.split(".")[0] == type(_arr(backend, logits)).__module__.split(".")[0]
    assert out.shape == (6,)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=2e-6, atol=1e-5)


@pytest.mark.parametrize("native, seed", [(True, 1), (False, 2)])
def test_gradients_match_torch(autodiff_backend, native, seed):
    logits, padded, clean, il, ll = make_batch(seed)
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, size=6)
    _, expected = torch_ref(logits, clean, il, ll, weights=weights)
    b = autodiff_backend
    args = (_arr(b, padded), _arr(b, il), _arr(b, ll))
    got = _grad(b, lambda x: ctc_loss(x, *args, native=native), logits, weights)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # Frames beyond each input length get exactly zero gradient.
    for row, n in enumerate(il):
        assert np.all(got[row, n:] == 0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("native", [True, False])
def test_torch_convention_time_major_log_probs(reduction, native):
    # PyTorch's own call: time-major log-probabilities, its "mean" divides by label length.
    logits, padded, clean, il, ll = make_batch(3)
    expected, _ = torch_ref(logits, clean, il, ll, reduction=reduction)
    lp = torch.tensor(logits).log_softmax(-1).transpose(0, 1)
    out = ctc_loss(lp, torch.tensor(padded), torch.tensor(il), torch.tensor(ll), from_logits=False, time_major=True, reduction=reduction, native=native)
    np.testing.assert_allclose(out.numpy(), expected, rtol=2e-6, atol=1e-5)


def test_mean_clamps_empty_label_length_to_one():
    # Peers notes, case CTC3: an empty target is divided by max(0, 1) = 1 in torch's mean.
    logits, padded, clean, il, ll = make_batch(4)
    assert 0 in ll
    expected, _ = torch_ref(logits, clean, il, ll, reduction="mean")
    np.testing.assert_allclose(ctc_loss(logits, padded, il, ll, reduction="mean"), expected, rtol=2e-6)
    per, _ = torch_ref(logits, clean, il, ll)
    np.testing.assert_allclose(ctc_loss(logits, padded, il, ll, reduction="sum_over_batch_size"), per.mean(), rtol=2e-6)


@pytest.mark.parametrize("blank", [-1, 3, 5])
def test_other_blanks_match_torch(blank):
    logits, padded, clean, il, ll = make_batch(5, C=6, blank=blank % 6)
    expected, grad = torch_ref(logits, clean, il, ll, blank=blank % 6)
    np.testing.assert_allclose(ctc_loss(logits, padded, il, ll, blank=blank), expected, rtol=2e-6, atol=1e-5)
    got = _grad(TORCH, lambda x: ctc_loss(x, torch.tensor(padded), torch.tensor(il), torch.tensor(ll), blank=blank, native=False), logits, np.ones(6))
    np.testing.assert_allclose(got, grad, atol=2e-5)


# ------------------------------------------------------------------------- Optax live


def test_value_and_gradient_match_optax():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    jnp = jax.numpy
    logits, padded, clean, il, ll = make_batch(6)
    B, T, _ = logits.shape
    S = padded.shape[1]
    logit_pad = (np.arange(T)[None, :] >= il[:, None]).astype(np.float32)
    label_pad = (np.arange(S)[None, :] >= ll[:, None]).astype(np.float32)
    w = jnp.asarray(np.linspace(0.5, 1.5, B), dtype=jnp.float32)

    def ours(x, native=True):
        return ctc_loss(x, jnp.asarray(padded), jnp.asarray(T - logit_pad.sum(1), dtype=jnp.int32), jnp.asarray(S - label_pad.sum(1), dtype=jnp.int32), native=native)

    def theirs(x):
        return optax.ctc_loss(x, jnp.asarray(logit_pad), jnp.asarray(clean), jnp.asarray(label_pad))

    x = jnp.asarray(logits)
    # Optax's recursion uses a matrix product; on a GPU its default precision is reduced
    # (TF32), which moves the loss by ~1e-4: ask for full float32 for the reference.
    with jax.default_matmul_precision("float32"):
        expected = np.asarray(theirs(x))
        g_theirs = jax.jit(jax.grad(lambda a: jnp.sum(w * theirs(a))))(x)
    np.testing.assert_allclose(np.asarray(ours(x)), expected, rtol=2e-6, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours(x, native=False)), expected, rtol=2e-6, atol=1e-5)
    g_ours = jax.grad(lambda a: jnp.sum(w * ours(a)))(x)
    np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_theirs), atol=2e-5)


# -------------------------------------------------------------------------- Keras live


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def _keras_batch(seed, B=5, T=10, C=6, S=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(B, T, C)).astype(np.float32)
    labels = rng.integers(1, C, size=(B, S))
    ll = rng.integers(0, S + 1, size=B)
    ll[0], ll[1] = S, 0
    labels[0, 1] = labels[0, 0]  # repeated label
    y_true = np.where(np.arange(S)[None, :] < ll[:, None], labels, 0).astype(np.int32)
    return y_true, logits


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None])
@pytest.mark.parametrize("weighted", [False, True])
def test_ctc_class_matches_keras_live(keras, reduction, weighted):
    y_true, logits = _keras_batch(7)
    sw = np.array([0.5, 1.0, 2.0, 0.0, 1.5], dtype=np.float32) if weighted else None
    expected = np.asarray(keras.losses.CTC(reduction=reduction)(y_true, logits, sample_weight=sw))
    got = pl.CTC(reduction=reduction)(y_true, logits, sample_weight=sw)
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6)


def test_ctc_function_value_and_gradient_match_keras_live(keras, eager_backend):
    import jax
    import jax.numpy as jnp

    y_true, logits = _keras_batch(8)
    expected = np.asarray(keras.losses.ctc(y_true, logits))
    out = pl.ctc(_arr(eager_backend, y_true), _arr(eager_backend, logits))
    np.testing.assert_allclose(eager_backend.to_numpy(out), expected, rtol=2e-6)
    if eager_backend.name == "jax":
        g_keras = jax.grad(lambda x: jnp.sum(keras.losses.ctc(jnp.asarray(y_true), x)))(jnp.asarray(logits))
        g_ours = jax.grad(lambda x: jnp.sum(pl.ctc(jnp.asarray(y_true), x)))(jnp.asarray(logits))
        np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_keras), atol=2e-6)


def test_ctc_loss_matches_keras_ops_ctc_loss_live(keras):
    logits, padded, clean, il, ll = make_batch(9, blank=2)
    expected = np.asarray(keras.ops.ctc_loss(clean, logits, ll, il, mask_index=2))
    np.testing.assert_allclose(ctc_loss(logits, padded, il, ll, blank=2), expected, rtol=2e-6)


# ------------------------------------------------------------------------- closed form


@pytest.mark.parametrize("native", [True, False])
def test_closed_form_single_path(autodiff_backend, native):
    # Input length == label length, no repeats: the only path is the labels themselves, so
    # loss = -sum_t log softmax(x_t)[l_t] and d loss / d x_t = softmax(x_t) - onehot(l_t).
    if autodiff_backend.name == "jax" and not native:
        pytest.skip("JAX's generic path: covered by the gradient and scan-vs-loop tests (saves compile time)")
    rng = np.random.default_rng(10)
    B, T, C = 3, 7, 5
    x = rng.normal(scale=3.0, size=(B, T, C))
    labels = np.stack([rng.permutation(np.arange(1, C)).tolist() + [1, 2, 3] for _ in range(B)])  # no repeats
    il = np.array([7, 5, 2])
    ll = il.copy()
    lsm = x - x.max(-1, keepdims=True)
    lsm = lsm - np.log(np.exp(lsm).sum(-1, keepdims=True))
    frame = np.arange(T)[None, :] < il[:, None]
    picked = np.take_along_axis(lsm, labels[:, :, None], axis=2)[..., 0]
    expected = -(picked * frame).sum(1)
    expected_grad = (np.exp(lsm) - np.eye(C)[labels]) * frame[..., None]
    b = autodiff_backend
    dtype = np.float64 if b.name == "torch" else np.float32
    args = (_arr(b, labels), _arr(b, il), _arr(b, ll))
    fn = lambda a: ctc_loss(a, *args, native=native)  # noqa: E731
    out = b.to_numpy(fn(b.asarray(x, dtype=dtype)))
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(out, expected, rtol=rtol)
    got = _grad(b, fn, x.astype(dtype), np.ones(B))
    np.testing.assert_allclose(got, expected_grad, atol=1e-12 if dtype == np.float64 else 2e-6)


# --------------------------------------------------------------- impossible alignments


@pytest.mark.parametrize("native", [True, False])
def test_impossible_alignment_inf_or_zero_with_zero_gradient(autodiff_backend, native):
    # Row 0 ([2, 2, 3] in 3 frames) needs 4 frames; row 1 is fine.  PyTorch: inf / 0.
    if autodiff_backend.name == "jax" and not native:
        pytest.skip("JAX's generic path: covered by the gradient and scan-vs-loop tests (saves compile time)")
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    labels, il, ll = np.array([[2, 2, 3], [1, 3, 0]]), np.array([3, 5]), np.array([3, 2])
    ref_inf, _ = torch_ref(x, np.where(labels > 0, labels, 1), il, ll)
    ref_zero, ref_grad = torch_ref(x, np.where(labels > 0, labels, 1), il, ll, zero_infinity=True)
    assert np.isposinf(ref_inf[0]) and ref_zero[0] == 0
    b = autodiff_backend
    args = (_arr(b, labels), _arr(b, il), _arr(b, ll))
    for zero_infinity, expected in ((False, ref_inf), (True, ref_zero)):
        fn = lambda a, z=zero_infinity: ctc_loss(a, *args, zero_infinity=z, native=native)  # noqa: E731
        np.testing.assert_allclose(b.to_numpy(fn(b.asarray(x))), expected, rtol=2e-6)
        grad = _grad(b, fn, x, np.ones(2))
        assert np.all(grad[0] == 0)
        np.testing.assert_allclose(grad, ref_grad, atol=2e-6)
    # Keras's JAX backend gives ~1e5 here (R61); ours is inf by design.
    assert np.isposinf(b.to_numpy(pl.ctc(_arr(b, [[2, 2, 3, 3, 3]]), b.asarray(x[:1]))))[0]


def test_labels_longer_than_input_under_jit_give_inf():
    jax = pytest.importorskip("jax")
    # Eager mode refuses this input; traced code cannot check values and returns inf / 0.
    x = jax.numpy.asarray(np.zeros((1, 4, 3), np.float32))
    f = jax.jit(lambda a, z: ctc_loss(a, jax.numpy.asarray([[1, 2, 1]]), z, jax.numpy.asarray([3])))
    assert np.isposinf(np.asarray(f(x, jax.numpy.asarray([2]))))[0]
    with pytest.raises(pl.ShapeError, match="only 2 frames"):
        ctc_loss(np.zeros((1, 4, 3), np.float32), [[1, 2, 1]], [2], [3])
    assert ctc_loss(np.zeros((1, 4, 3), np.float32), [[1, 2, 1]], [2], [3], zero_infinity=True).tolist() == [0.0]


def test_input_length_zero():
    x = np.random.default_rng(12).normal(size=(2, 3, 4)).astype(np.float32)
    # torch: empty labels in 0 frames cost 0 (probability 1)
    expected, _ = torch_ref(x, np.array([[1], [1]]), np.array([0, 3]), np.array([0, 1]))
    for native in (True, False):
        np.testing.assert_allclose(ctc_loss(torch.tensor(x), [[1], [1]], [0, 3], [0, 1], native=native).numpy(), expected, rtol=2e-6)
    np.testing.assert_allclose(ctc_loss(x, [[1], [1]], [0, 3], [0, 1]), expected, rtol=2e-6)


@pytest.mark.parametrize("native", [True, False])
def test_edge_shapes(eager_backend, native):
    b = eager_backend
    zeros = lambda *shape: b.asarray(np.zeros(shape, np.float32))  # noqa: E731
    # Empty batch: per-sequence (0,), the reductions 0.
    empty = ctc_loss(zeros(0, 4, 3), _arr(b, np.zeros((0, 2), np.int64)), _arr(b, np.zeros(0, np.int64)), _arr(b, np.zeros(0, np.int64)), native=native)
    assert tuple(empty.shape) == (0,)
    assert float(ctc_loss(zeros(0, 4, 3), _arr(b, np.zeros((0, 2), np.int64)), [], [], reduction="mean", native=native)) == 0.0
    # Labels of width 0 (all empty): PyTorch gives -log P(all blanks).
    expected, _ = torch_ref(np.zeros((2, 4, 3)), np.zeros((2, 0), np.int64), np.array([4, 2]), np.array([0, 0]))
    got = ctc_loss(zeros(2, 4, 3), _arr(b, np.zeros((2, 0), np.int64)), [4, 2], [0, 0], native=native)
    np.testing.assert_allclose(b.to_numpy(got), expected, rtol=1e-6)
    # No frames at all: an empty label sequence costs 0, a nonempty one is impossible.
    got = ctc_loss(zeros(2, 0, 3), _arr(b, np.ones((2, 1), np.int64)), [0, 0], [0, 1], zero_infinity=True, native=native)
    assert b.to_numpy(got).tolist() == [0.0, 0.0]


# ------------------------------------------------------------------ fast paths vs generic


def test_torch_native_path_agrees_with_generic_for_free_log_probs():
    # from_logits=False with arbitrary (unnormalised, partly -inf) log-probabilities as the
    # leaf: PyTorch's kernel gradient is softmax - posterior; ours must be -posterior.
    logits, padded, clean, il, ll = make_batch(13)
    lp = logits - 1.3
    lp[:, :, 4] = -np.inf  # an impossible class, never used as a label below
    padded = np.where(padded == 4, 1, padded)
    results = []
    for native in (True, False):
        leaf = torch.tensor(lp.astype(np.float64), requires_grad=True)
        out = ctc_loss(leaf, torch.tensor(padded), torch.tensor(il), torch.tensor(ll), from_logits=False, native=native)
        (out * torch.arange(1.0, 7.0, dtype=torch.float64)).sum().backward()
        assert torch.isfinite(leaf.grad).all()
        results.append((out.detach().numpy(), leaf.grad.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-12)


def test_jax_scan_agrees_with_python_loop_and_jit():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    logits, padded, clean, il, ll = make_batch(14, T=7, S=3)
    args = (jnp.asarray(padded), jnp.asarray(il), jnp.asarray(ll))

    def fn(a, native):
        return jnp.sum(ctc_loss(a, *args, native=native) * jnp.arange(1.0, 7.0))

    scan_value, scan_grad = jax.value_and_grad(fn)(jnp.asarray(logits), True)  # eager, lax.scan
    loop_value, loop_grad = jax.jit(jax.value_and_grad(fn), static_argnums=1)(jnp.asarray(logits), False)
    np.testing.assert_allclose(np.asarray(loop_value), np.asarray(scan_value), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(loop_grad), np.asarray(scan_grad), atol=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torch_compile():
    # The generic path traces as one graph; PyTorch's kernel has a data-dependent output
    # shape (its own F.ctc_loss cannot be compiled with fullgraph either): a graph break.
    logits, padded, clean, il, ll = make_batch(17, T=6)
    expected, expected_grad = torch_ref(logits, clean, il, ll, reduction="mean")
    args = (torch.tensor(padded), torch.tensor(il), torch.tensor(ll))
    for native, fullgraph in ((False, True), (True, False)):
        fn = torch.compile(lambda a, n=native: ctc_loss(a, *args, reduction="mean", native=n), backend="eager", fullgraph=fullgraph)
        x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        out = fn(x)
        out.backward()
        np.testing.assert_allclose(out.item(), expected, rtol=1e-10)
        np.testing.assert_allclose(x.grad.numpy(), expected_grad / len(il) / np.maximum(ll, 1)[:, None, None], atol=1e-10)


def test_extreme_logits_keep_gradients_finite():
    logits, padded, clean, il, ll = make_batch(15)
    logits = logits * 300.0
    expected, expected_grad = torch_ref(logits, clean, il, ll, zero_infinity=True)
    for native in (True, False):
        x = torch.tensor(logits.astype(np.float64), requires_grad=True)
        out = ctc_loss(x, torch.tensor(padded), torch.tensor(il), torch.tensor(ll), native=native)
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
        finite = np.isfinite(expected)
        np.testing.assert_allclose(out.detach().numpy()[finite], expected[finite], rtol=1e-9)
        np.testing.assert_allclose(x.grad.numpy(), expected_grad, atol=1e-9)


# -------------------------------------------------------------------- dtypes and types


def test_dtypes_and_lists():
    logits, padded, clean, il, ll = make_batch(16)
    ref32 = ctc_loss(logits, padded, il, ll)
    half = ctc_loss(logits.astype(np.float16), padded, il, ll)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), ref32, rtol=2e-3)
    tb = ctc_loss(torch.tensor(logits, dtype=torch.bfloat16), torch.tensor(padded), il.tolist(), ll.tolist())
    assert tb.dtype == torch.bfloat16
    f64 = ctc_loss(logits.astype(np.float64), padded, il, ll)
    assert f64.dtype == np.float64
    lists = ctc_loss(logits.tolist(), padded.tolist(), il.tolist(), ll.tolist())
    assert isinstance(lists, np.ndarray) and lists.dtype == np.float32
    np.testing.assert_allclose(lists, ref32)
    # Lengths as Python lists next to torch scores; whole-valued float lengths.
    out = ctc_loss(torch.tensor(logits), torch.tensor(padded), il.tolist(), torch.tensor(ll, dtype=torch.float32))
    np.testing.assert_allclose(out.numpy(), ref32, rtol=1e-6)
    # None lengths: all frames, full label width
    full = ctc_loss(logits[:1], clean[:1], None, None)
    np.testing.assert_allclose(full, ctc_loss(logits[:1], clean[:1], [12], [5]), rtol=1e-6)


def test_import_does_not_pull_frameworks():
    code = (
        "import sys, numpy as np, probloss as pl\n"
        "pl.ctc_loss(np.zeros((1, 3, 3), np.float32), [[1]], [3], [1])\n"
        "pl.ctc([[1]], np.zeros((1, 3, 3), np.float32))\n"
        "assert not {'torch', 'jax'} & set(sys.modules), sorted(set(sys.modules) & {'torch', 'jax'})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------ errors

X = np.zeros((2, 4, 3), np.float32)


def _jax_array(values):
    jnp = pytest.importorskip("jax.numpy")
    return jnp.asarray(values)


def test_numpy_lengths_follow_torch_scores():
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    labels, lengths = torch.tensor([[1], [2]]), torch.tensor([4, 4])
    expected = torch.nn.functional.ctc_loss(x.log_softmax(-1).transpose(0, 1), labels, lengths, torch.tensor([1, 1]), reduction="none")
    got = ctc_loss(x, np.array([[1], [2]]), np.array([4, 4]), [1, 1])
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: ctc_loss(X[0, 0], [[1]], [4], [1]), pl.ShapeError, ["rank 3", "rank 2", "unbatched"]),
        (lambda: ctc_loss(X, [1, 2], [4, 4], None), pl.ShapeError, ["concatenated", "label_lengths"]),
        (lambda: ctc_loss(X, [1, 2], [4, 4], [1, 2]), pl.ShapeError, ["2 labels", "add up to 3"]),
        (lambda: ctc_loss(X[0], [[1], [2]], [4], [1]), pl.ShapeError, ["labels", "unbatched"]),
        (lambda: ctc_loss(X, [[1], [1], [1]], [4, 4], [1, 1]), pl.ShapeError, ["labels", "(2, S)"]),
        (lambda: ctc_loss(X, [[1], [1]], [4, 4, 4], [1, 1]), pl.ShapeError, ["input_lengths", "(2,)"]),
        (lambda: ctc_loss(X, [[1, 2], [1, 1]], [4, 5], [2, 2]), pl.ShapeError, ["input_lengths", "5", "[0, 4]"]),
        (lambda: ctc_loss(X, [[1, 2], [1, 1]], [4, -1], [2, 2]), pl.ShapeError, ["input_lengths", "-1"]),
        (lambda: ctc_loss(X, [[1, 2], [1, 1]], [4, 4], [2, 3]), pl.ShapeError, ["label_lengths", "[0, 2]"]),
        (lambda: ctc_loss(X, [[1, 2, 1], [1, 2, 1]], [4, 2], [3, 3]), pl.ShapeError, ["3 labels", "2 frames", "zero_infinity"]),
        (lambda: ctc_loss(X, [[1, 3], [1, 1]], [4, 4], [2, 2]), pl.LabelValueError, ["class 3", "[0, 2]"]),
        (lambda: ctc_loss(X, [[1, -2], [1, 1]], [4, 4], [2, 2]), pl.LabelValueError, ["class -2"]),
        (lambda: ctc_loss(X, [[1, 0], [1, 1]], [4, 4], [2, 2]), pl.LabelValueError, ["blank index 0", "label_lengths", "blank="]),
        (lambda: ctc_loss(X, [[1, 2], [1, 1]], [4, 4], [2, 2], blank=2), pl.LabelValueError, ["blank index 2"]),
        (lambda: ctc_loss(X, [[1.5, 2], [1, 1]], [4, 4], [2, 2]), pl.LabelFormatError, ["labels", "1.5", "whole"]),
        (lambda: ctc_loss(X, [[1, 2], [1, 1]], [4, 4], [2, 2], blank=3), pl.ArgumentError, ["blank", "[-3, 2]"]),
        (lambda: ctc_loss(X, [[1, 2], [1, 1]], [4, 4], [2, 2], reduction="avg"), pl.ArgumentError, ["reduction", "avg", "mean"]),
        (lambda: ctc_loss(X, [[1, 2], [1, 1]], [4, 4], [2, 2], from_logits=1), pl.ArgumentError, ["from_logits"]),
        (lambda: ctc_loss(X.astype(np.int32), [[1], [1]], [4, 4], [1, 1]), pl.ProblossTypeError, ["floating"]),
        (lambda: ctc_loss(np.full((2, 4, 3), np.nan, np.float32), [[1], [1]], [4, 4], [1, 1]), pl.PredictionValueError, ["nan", "log_probs_or_logits"]),
        (lambda: ctc_loss(torch.zeros(2, 4, 3), [[1], [1]], _jax_array([4, 4]), [1, 1]), pl.ProblossTypeError, ["different array libraries", "input_lengths"]),
        (lambda: pl.ctc([[1, 2]], X[:1, :, :, None]), pl.ShapeError, ["y_pred", "(batch, time, classes)"]),
        (lambda: pl.ctc([1, 2], X[:1]), pl.ShapeError, ["y_true", "(batch, max_label_length)"]),
        (lambda: pl.ctc([[1, 2], [1, 2], [1, 2]], X), pl.ShapeError, ["3 rows", "batch size 2"]),
        (lambda: pl.ctc([[1, 3]], X[:1]), pl.LabelValueError, ["class 3", "[1, 2]"]),
        (lambda: pl.ctc([[1, 2, 1, 2, 1]], X[:1]), pl.ShapeError, ["5 labels", "4 frames"]),
    ],
)
def test_errors(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, pl.ProblossError)
    for word in words:
        assert word.lower() in str(info.value).lower(), (word, str(info.value))


def test_value_checks_can_be_switched_off():
    with pl.set_value_checks(False):
        out = ctc_loss(X, [[1, 2, 1], [1, 2, 1]], [4, 2], [3, 3])
    assert np.isposinf(out[1]) and np.isfinite(out[0])


def test_registry_and_config():
    loss = pl.get("CTC")
    assert isinstance(loss, pl.CTC) and loss.get_config() == {"name": "ctc", "reduction": "sum_over_batch_size"}
    assert pl.get("ctc") is pl.ctc
    again = pl.deserialize(pl.serialize(pl.CTC(reduction="sum", name="my_ctc")))
    assert again.get_config() == {"name": "my_ctc", "reduction": "sum"}
    assert pl.CTC(dtype="float64")([[1, 2, 1, 0]], T1[:1]).dtype == np.float64
