"""The one table of loss cases, shared by the backend, gradient and reference-value tests.

Each :class:`Case` names a loss call (``case.call(y_true, y_pred)``), its inputs and the
float64 NumPy reference of tests/reference.py.  Inputs are float64 arrays whose values
are exactly representable in float32, so the same reference holds when a test casts
them down.  A case built on a fixture of shared/reference/keras_semantics.md §13 also
carries Keras 3's recorded output (``case.keras``).

Users: tests/test_backends.py (every case on every backend, float32),
tests/test_gradients.py (cases with ``grad=True``: torch gradcheck and jax check_grads in
float64), tests/test_reference_values.py (cases with ``keras``: the reference formula and
probloss against Keras's recorded numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

import probloss as pl
from tests import reference as ref


def _f32(x):
    """float64 values that float32 represents exactly."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


RNG = np.random.default_rng(1234)
N, K = 6, 5
LOGITS = _f32(RNG.normal(scale=3, size=(N, K)))
ROWS = _f32(RNG.dirichlet(np.ones(K) * 3, size=N))  # rows summing to 1, entries well inside (0, 1)
SOFT = _f32(RNG.dirichlet(np.ones(K), size=N))  # soft labels
LABELS = RNG.integers(0, K, size=N)
ONEHOT = np.eye(K)[LABELS]
BIN_T = (RNG.random((N, K)) < 0.5).astype(np.float64)
BIN_P = _f32(RNG.uniform(0.02, 0.98, size=(N, K)))
COUNTS = RNG.poisson(2.0, size=(N, K)).astype(np.float64)
RATES = _f32(RNG.uniform(0.1, 5, size=(N, K)))
RANK3 = _f32(RNG.normal(size=(3, K, 4)))  # class axis 1
RANK3_LABELS = RNG.integers(0, K, size=(3, 4))
RANK3_ONEHOT = ref.one_hot(RANK3_LABELS, K, axis=1)
ALPHAS = [0.1, 0.2, 0.3, 0.2, 0.2]
IGNORED = np.where(LABELS == LABELS[0], -1, LABELS)  # at least one position ignored

# The fixtures of keras_semantics.md §13 (also used by tests/test_reference_values.py).
B1 = ([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
B2 = ([0, 1, 0, 0], [-18.6, 0.51, 2.94, -12.8])
B3 = ([[0, 1], [0, 0]], [[-18.6, 0.51], [2.94, -12.8]])
B4 = ([[0, 1], [1, 0]], [[0.1, 0.7], [0.6, 0.3]])
B5 = ([[1, 0, 1]], [[10, -10, -10]])
B6 = ([[[1, 0], [0, 1], [1, 1]]], [[[0.9, 0.2], [0.3, 0.6], [0.7, 0.4]]])
B7 = ([[0, 1], [1, 0]], [[0.2, 0.7], [0.9, 0.4]])
C1 = ([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
C2 = (np.eye(3), [[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]])
C3 = (np.eye(3), [[8, 1, 1], [0, 9, 1], [2, 3, 5]])
C4 = (
    [[[1, 0], [0, 1], [0, 0]], [[0, 1], [1, 0], [0, 0]]],
    [[[0.8, 0.1], [0.1, 0.8], [0.1, 0.1]], [[0.1, 0.8], [0.8, 0.1], [0.1, 0.1]]],
)
C5 = ([[0, 1, 0], [0, 0, 1]], [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]])
S1 = ([0, 255, 2, 1, 255], [[2, 1, 0], [0.5, 0.5, 0.5], [0.1, 0.2, 3], [1, 2, 3], [9, 9, 9]])
S2 = ([[-1, 2]], [[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]])
P1 = ([[4, 8, 12], [8, 1, 3]], [[1, 9, 2], [5, 2, 6]])
K1 = ([[0.5, 0.8, 0.12], [0.7, 0.43, 0.8]], [[0.4, 0.9, 0.12], [0.36, 0.3, 0.4]])
W1 = (
    [[[0, 1], [1, 0], [1, 0]], [[0, 1], [0, 1], [1, 0]]],
    [[[0.3, 0.7], [0.6, 0.4], [0.9, 0.1]], [[0.2, 0.8], [0.5, 0.5], [0.4, 0.6]]],
)


@dataclass(frozen=True)
class Case:
    """One loss call with its inputs and its float64 reference."""

    id: str
    call: Callable[[Any, Any], Any]
    y_true: np.ndarray
    y_pred: np.ndarray
    reference: Callable[[], np.ndarray]
    keras: Any = None  # Keras 3.15.1's recorded output on these inputs (keras_semantics.md §13)
    rid: str = ""  # its row in §13
    grad: bool = True  # differentiable at these inputs, with finite differences of 1e-6
    rtol: float = 2e-5  # float32 result against the float64 reference
    jax: bool = True  # also run on JAX, eager and jitted (each new shape compiles: a second or so)


def _sparse(t, p, **kw):
    return ref.scce(t, p, **kw)[0]


_REF = {
    pl.binary_crossentropy: ref.bce,
    pl.binary_focal_crossentropy: ref.bfce,
    pl.categorical_crossentropy: ref.cce,
    pl.categorical_focal_crossentropy: ref.cfce,
    pl.sparse_categorical_crossentropy: _sparse,
    pl.poisson: ref.poisson,
    pl.kl_divergence: ref.kld,
}


def _case(id, fn, data, *, keras=None, rid="", grad=None, rtol=2e-5, jax=None, **kwargs):
    """A case of a loss function, its reference the formula of tests/reference.py with the same options."""
    t, p = data
    t = np.asarray(t, dtype=np.int64) if fn is pl.sparse_categorical_crossentropy else _f32(t)
    p = _f32(p)
    formula = _REF[fn]
    return Case(
        id,
        partial(fn, **kwargs),
        t,
        p,
        lambda: formula(t, p, **kwargs),
        keras=keras,
        rid=rid,
        grad=keras is None if grad is None else grad,  # the Keras fixtures pin values, often at the clip
        rtol=rtol,
        # the Keras fixtures run on JAX only where they probe an edge (saturation, the clip)
        jax=keras is None if jax is None else jax,
    )


def _scce_class_mean(t, p):
    return pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1)(t, p)


def _scce_class_mean_reference():
    values, valid = ref.scce(LABELS, LOGITS, from_logits=True, ignore_class=1)
    return ref.reduce(values, "sum_over_batch_size", mask=valid)


CASES: list[Case] = [
    # ------------------------------------------------------------------ binary
    _case("binary-probs", pl.binary_crossentropy, (BIN_T, BIN_P)),
    _case("binary-probs-smoothing0.2", pl.binary_crossentropy, (BIN_T, BIN_P), label_smoothing=0.2),
    _case("binary-probs-axis0", pl.binary_crossentropy, (BIN_T, BIN_P), axis=0),
    _case("binary-logits", pl.binary_crossentropy, (BIN_T, LOGITS), from_logits=True),
    _case("binary-logits-smoothing0.1", pl.binary_crossentropy, (BIN_T, LOGITS), from_logits=True, label_smoothing=0.1),
    _case("binary-probs-B1", pl.binary_crossentropy, B1, keras=[0.9162908, 0.7135582], rid="R2"),
    _case("binary-probs-clipped", pl.binary_crossentropy, ([[1, 0]], [[0, 1]]), keras=[16.03024], rid="R8", jax=True),
    _case(
        "binary-logits-saturated",
        pl.binary_crossentropy,
        ([[1, 0]], [[-100, 100]]),
        from_logits=True,
        keras=[100.0],
        rid="R9",
        jax=True,
    ),
    _case("binary-probs-axis1-B6", pl.binary_crossentropy, B6, axis=1, keras=[[0.2729035, 0.5500866]], rid="R10"),
    # ------------------------------------------------------------ binary focal
    # Focal BCE from logits goes sigmoid -> 1 - p in float32 (as Keras does), which loses
    # ~1e-4 relative against float64 once |logit| > 8 (keras_semantics.md §3.2).
    _case(
        "binary-focal-logits-balanced-gamma1.5",
        pl.binary_focal_crossentropy,
        (BIN_T, LOGITS),
        from_logits=True,
        apply_class_balancing=True,
        gamma=1.5,
        rtol=1e-4,
    ),
    _case("binary-focal-probs-smoothing0.1", pl.binary_focal_crossentropy, (BIN_T, BIN_P), label_smoothing=0.1, gamma=3.0),
    _case("binary-focal-probs-B1", pl.binary_focal_crossentropy, B1, keras=[0.3298647, 0.2057984], rid="R15"),
    _case(
        "binary-focal-probs-balanced-alpha0.4-smoothing0.1-B7",
        pl.binary_focal_crossentropy,
        B7,
        apply_class_balancing=True,
        alpha=0.4,
        gamma=2.0,
        label_smoothing=0.1,
        keras=[0.01294061, 0.02720169],
        rid="R16",
    ),
    _case(
        "binary-focal-logits-saturated",
        pl.binary_focal_crossentropy,
        ([[1, 0]], [[-100, 100]]),
        from_logits=True,
        keras=[16.03024],
        rid="R17",
        jax=True,
    ),
    # ------------------------------------------------------------- categorical
    _case("categorical-probs", pl.categorical_crossentropy, (ONEHOT, ROWS)),
    _case("categorical-logits-smoothing0.2", pl.categorical_crossentropy, (ONEHOT, LOGITS), from_logits=True, label_smoothing=0.2),
    _case("categorical-logits-soft-smoothing0.1", pl.categorical_crossentropy, (SOFT, LOGITS), from_logits=True, label_smoothing=0.1),
    _case(
        "categorical-logits-axis1-smoothing0.1",
        pl.categorical_crossentropy,
        (RANK3_ONEHOT, RANK3),
        from_logits=True,
        axis=1,
        label_smoothing=0.1,
    ),
    _case("categorical-probs-C1", pl.categorical_crossentropy, C1, keras=[0.05129331, 2.302585], rid="R19"),
    _case(
        "categorical-logits-C3", pl.categorical_crossentropy, C3, from_logits=True, keras=[0.001822003, 0.0004587313, 0.169846], rid="R22"
    ),
    _case("categorical-probs-smoothing0.2-C1", pl.categorical_crossentropy, C1, label_smoothing=0.2, keras=[1.318709, 2.163956], rid="R24"),
    _case(
        "categorical-probs-rank3-W1",
        pl.categorical_crossentropy,
        W1,
        keras=[[0.356675, 0.5108256, 0.1053605], [0.2231435, 0.6931472, 0.9162907]],
        rid="R62",
    ),
    # ------------------------------------------------------- categorical focal
    _case("categorical-focal-probs-alpha-list-gamma1", pl.categorical_focal_crossentropy, (ONEHOT, ROWS), alpha=ALPHAS, gamma=1.0),
    _case(
        "categorical-focal-logits-axis1-alpha-list",
        pl.categorical_focal_crossentropy,
        (RANK3_ONEHOT, RANK3),
        alpha=ALPHAS,
        from_logits=True,
        axis=1,
    ),
    _case("categorical-focal-logits-gamma1.5", pl.categorical_focal_crossentropy, (ONEHOT, LOGITS), from_logits=True, gamma=1.5),
    _case("categorical-focal-probs-C1", pl.categorical_focal_crossentropy, C1, keras=[3.205833e-05, 0.4662735], rid="R29"),
    _case(
        "categorical-focal-probs-alpha-list-gamma1-C5",
        pl.categorical_focal_crossentropy,
        C5,
        alpha=[0.1, 0.5, 0.4],
        gamma=1.0,
        keras=[0.1732868, 0.3371124],
        rid="R32",
    ),
    _case(
        "categorical-focal-logits-C3",
        pl.categorical_focal_crossentropy,
        C3,
        from_logits=True,
        keras=[1.509622e-09, 2.413655e-11, 0.001036062],
        rid="R33",
    ),
    # ------------------------------------------------------------------ sparse
    _case("sparse-logits", pl.sparse_categorical_crossentropy, (LABELS, LOGITS), from_logits=True),
    _case("sparse-logits-ignore0", pl.sparse_categorical_crossentropy, (LABELS, LOGITS), from_logits=True, ignore_class=0),
    _case("sparse-probs", pl.sparse_categorical_crossentropy, (LABELS, ROWS)),
    _case("sparse-probs-ignore-1", pl.sparse_categorical_crossentropy, (IGNORED, ROWS), ignore_class=-1),
    _case("sparse-logits-axis1", pl.sparse_categorical_crossentropy, (RANK3_LABELS, RANK3), from_logits=True, axis=1),
    _case("sparse-probs-labels-n1-C1", pl.sparse_categorical_crossentropy, ([[1], [2]], C1[1]), keras=[0.05129331, 2.302585], rid="R35"),
    _case(
        "sparse-logits-ignore-1-S2", pl.sparse_categorical_crossentropy, S2, from_logits=True, ignore_class=-1, keras=[[0, 1.480129]], rid="R37"
    ),
    _case(
        "sparse-logits-ignore255-S1",
        pl.sparse_categorical_crossentropy,
        S1,
        from_logits=True,
        ignore_class=255,
        keras=[0.4076059, 0, 0.1096015, 1.407606, 0],
        rid="R39",
    ),
    # ------------------------------------------------------ Poisson, KL divergence
    _case("poisson", pl.poisson, (COUNTS, RATES)),
    _case("poisson-P1", pl.poisson, P1, keras=[-4.631855, -1.98131], rid="R47"),
    _case("poisson-zero-rate", pl.poisson, ([[1, 0]], [[0, 0]]), keras=[8.059048], rid="R48", jax=True),
    _case("kl-divergence", pl.kl_divergence, (SOFT, ROWS)),
    _case("kl-divergence-K1", pl.kl_divergence, K1, keras=[0.0173454, 1.174802], rid="R50"),
    _case("kl-divergence-zero-label", pl.kl_divergence, ([[0, 1]], [[0.3, 0.7]]), keras=[0.3566735], rid="R52"),
    # --------------------------------------------------- a class, the tf.nn forms
    Case(
        "sparse-class-mean-logits-ignore1",
        _scce_class_mean,
        LABELS,
        LOGITS,
        _scce_class_mean_reference,
    ),
    Case(
        "tf-softmax-xent-soft",
        lambda t, p: pl.softmax_cross_entropy_with_logits(labels=t, logits=p),
        SOFT,
        LOGITS,
        lambda: -(SOFT * ref.log_softmax(LOGITS)).sum(axis=-1),
    ),
    Case(
        "tf-weighted-xent-pos2.5",
        lambda t, p: pl.weighted_cross_entropy_with_logits(labels=t, logits=p, pos_weight=2.5),
        BIN_T,
        LOGITS,
        lambda: ref.weighted_xent(BIN_T, LOGITS, 2.5),
    ),
]

BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"

GRAD_CASES = [c for c in CASES if c.grad]
KERAS_CASES = [c for c in CASES if c.keras is not None]
