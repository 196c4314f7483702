"""Keras 3.15.1 reference values R1-R53, R62-R72 (shared/reference/keras_semantics.md §13).

Each number was produced by running Keras (JAX backend, float32); we compare within
float32 tolerance.  The fixtures B1..W1 are those of that table (tests/cases.py).  The
cases of the shared table built on them carry Keras's per-sample output too: there both
probloss and the float64 formula of tests/reference.py must give it.
"""

import numpy as np
import pytest

import probloss as pl
from tests import cases
from tests.cases import B1, B2, B3, B4, B5, B6, B7, C1, C2, C3, C4, C5, K1, P1, S1, S2, W1

f32 = np.float32


def a(x):
    return np.asarray(x, dtype=f32)


CASES = [
    ("R1", lambda: pl.BinaryCrossentropy()(*B1), 0.8149245),
    ("R2", lambda: pl.BinaryCrossentropy(reduction=None)(*B1), [0.9162908, 0.7135582]),
    ("R3", lambda: pl.BinaryCrossentropy(from_logits=True)(*B2), 0.865458),
    ("R4", lambda: pl.BinaryCrossentropy(from_logits=True)(*B3, sample_weight=[0.8, 0.2]), 0.2436386),
    ("R5", lambda: pl.BinaryCrossentropy(from_logits=True, reduction="sum")(*B3), 1.730916),
    ("R6", lambda: pl.BinaryCrossentropy(label_smoothing=0.2)(*B4), 0.4398161),
    ("R7", lambda: pl.BinaryCrossentropy(from_logits=True, label_smoothing=0.1)(*B5), 3.500045),
    ("R8", lambda: pl.binary_crossentropy([[1, 0]], [[0, 1]]), [16.03024]),
    ("R9", lambda: pl.binary_crossentropy([[1, 0]], [[-100, 100]], from_logits=True), [100.0]),
    ("R10", lambda: pl.BinaryCrossentropy(axis=1, reduction=None)(*B6), [[0.2729035, 0.5500866]]),
    ("R11", lambda: pl.BinaryCrossentropy()([1, 0, 1], [0.8, 0.3, 0.6], sample_weight=[1, 0, 0]), 0.1211827),
    ("R12", lambda: pl.BinaryFocalCrossentropy(gamma=2, from_logits=True)(*B2), 0.6912119),
    ("R13", lambda: pl.BinaryFocalCrossentropy(gamma=2, from_logits=True, apply_class_balancing=True)(*B2), 0.5101331),
    ("R14", lambda: pl.BinaryFocalCrossentropy(gamma=3, from_logits=True)(*B3, sample_weight=[0.8, 0.2]), 0.133125),
    ("R15", lambda: pl.BinaryFocalCrossentropy(reduction=None)(*B1), [0.3298647, 0.2057984]),
    (
        "R16",
        lambda: pl.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=0.4, gamma=2, label_smoothing=0.1, reduction=None
        )(*B7),
        [0.01294061, 0.02720169],
    ),
    ("R17", lambda: pl.binary_focal_crossentropy([[1, 0]], [[-100, 100]], from_logits=True), [16.03024]),
    ("R18", lambda: pl.CategoricalCrossentropy()(*C1), 1.176939),
    ("R19", lambda: pl.CategoricalCrossentropy(reduction=None)(*C1), [0.05129331, 2.302585]),
    ("R20", lambda: pl.CategoricalCrossentropy()(*C1, sample_weight=[0.3, 0.7]), 0.8135988),
    ("R21", lambda: pl.CategoricalCrossentropy(reduction=None)(C2[0], a(C2[1])), [0.1053605, 0.8046684, 0.06187541]),
    ("R22", lambda: pl.CategoricalCrossentropy(from_logits=True, reduction=None)(C3[0], a(C3[1])), [0.001822003, 0.0004587313, 0.169846]),
    ("R23", lambda: pl.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)([[1, 0, 0]], [[100, -100, -100]]), 13.33333),
    ("R24", lambda: pl.CategoricalCrossentropy(label_smoothing=0.2, reduction=None)(*C1), [1.318709, 2.163956]),
    # R25: Keras 3.16 (master) counts classes on `axis` for smoothing; 3.15.1 gave 0.4422449.
    ("R25", lambda: pl.CategoricalCrossentropy(axis=1, label_smoothing=0.1)(*C4), 0.361773),
    ("R28", lambda: pl.CategoricalFocalCrossentropy()(*C1), 0.2331528),
    ("R29", lambda: pl.CategoricalFocalCrossentropy(reduction=None)(*C1), [3.205833e-05, 0.4662735]),
    ("R30", lambda: pl.CategoricalFocalCrossentropy()(*C1, sample_weight=[0.3, 0.7]), 0.1632005),
    (
        "R31",
        lambda: pl.CategoricalFocalCrossentropy(from_logits=True, label_smoothing=0.1)([[1, 0, 0]], [[4.9, -0.5, 2.05]]),
        0.06685146,
    ),
    ("R32", lambda: pl.CategoricalFocalCrossentropy(alpha=[0.1, 0.5, 0.4], gamma=1, reduction=None)(*C5), [0.1732868, 0.3371124]),
    ("R33", lambda: pl.CategoricalFocalCrossentropy(from_logits=True, reduction=None)(C3[0], a(C3[1])), [1.509622e-09, 2.413655e-11, 0.001036062]),
    ("R34", lambda: pl.SparseCategoricalCrossentropy()([1, 2], C1[1]), 1.176939),
    ("R35", lambda: pl.SparseCategoricalCrossentropy(reduction=None)([[1], [2]], C1[1]), [0.05129331, 2.302585]),
    (
        "R36",
        lambda: pl.SparseCategoricalCrossentropy(from_logits=True)([0, 1, 2], a(C3[1]), sample_weight=[[1.2], [3.4], [5.6]]),
        0.3182946,
    ),
    ("R37", lambda: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=None)(*S2), [[0, 1.480129]]),
    ("R38", lambda: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)(*S2), 1.480129),
    ("R39", lambda: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255, reduction=None)(*S1), [0.4076059, 0, 0.1096015, 1.407606, 0]),
    ("R40", lambda: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255, reduction="sum")(*S1), 1.924813),
    ("R41", lambda: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)(*S1), 0.6416044),
    ("R42", lambda: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)(*S1, sample_weight=[1, 2, 3, 4, 5]), 2.122278),
    (
        "R43",
        lambda: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255, reduction="mean_with_sample_weight")(
            *S1, sample_weight=[1, 2, 3, 4, 5]
        ),
        0.7958542,
    ),
    ("R44", lambda: pl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)([255, 255], [[1.0, 2], [3, 4]]), 0.0),
    ("R46", lambda: pl.Poisson()(*P1), -3.306582),
    ("R47", lambda: pl.Poisson(reduction=None)(*P1), [-4.631855, -1.98131]),
    ("R48", lambda: pl.poisson([[1, 0]], [[0, 0]]), [8.059048]),
    ("R49", lambda: pl.KLDivergence()(*K1), 0.5960739),
    ("R50", lambda: pl.KLDivergence(reduction=None)(*K1), [0.0173454, 1.174802]),
    ("R51", lambda: pl.KLDivergence()(*K1, sample_weight=[[1.2], [3.4]]), 2.007571),
    ("R52", lambda: pl.kl_divergence([[0, 1]], [[0.3, 0.7]]), [0.3566735]),
    ("R62", lambda: pl.CategoricalCrossentropy(reduction=None)(*W1), [[0.356675, 0.5108256, 0.1053605], [0.2231435, 0.6931472, 0.9162907]]),
    ("R63", lambda: pl.CategoricalCrossentropy()(*W1, sample_weight=[[1], [2]]), 0.773004),
    ("R64", lambda: pl.CategoricalCrossentropy()(*W1, sample_weight=[[1, 2, 3], [4, 5, 6]]), 1.925077),
    ("R66", lambda: pl.CategoricalCrossentropy()(*W1, sample_weight=[1, 2, 3]), 1.008786),
    ("R67", lambda: pl.CategoricalCrossentropy(reduction="sum")(*W1, sample_weight=[[1], [2]]), 4.638024),
    ("R68", lambda: pl.CategoricalCrossentropy(reduction="mean_with_sample_weight")(*W1, sample_weight=[[1], [2]]), 1.546008),
    ("R69", lambda: pl.CategoricalCrossentropy(reduction="mean_with_sample_weight")(*W1, sample_weight=[[1, 2, 3], [4, 5, 6]]), 0.550022),
    ("R70", lambda: pl.CategoricalCrossentropy(reduction="mean_with_sample_weight")(*W1, sample_weight=2.0), 2.805443),
    ("R71", lambda: pl.CategoricalCrossentropy(reduction="mean_with_sample_weight")(*W1), 0.4675738),
    ("R72", lambda: pl.CategoricalCrossentropy()(*W1, sample_weight=[[0], [0]]), 0.0),
]


@pytest.mark.parametrize(("rid", "call", "expected"), CASES, ids=[c[0] for c in CASES])
def test_keras_reference_value(rid, call, expected):
    if rid == "R21":  # C2's rows do not sum to 1: Keras renormalises silently, we warn
        with pytest.warns(pl.ProblossWarning, match="renormalised"):
            out = np.asarray(call())
    else:
        out = np.asarray(call())
    np.testing.assert_allclose(out, np.asarray(expected, dtype=np.float64), rtol=2e-5, atol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.parametrize("case", cases.KERAS_CASES, ids=[f"{c.rid}-{c.id}" for c in cases.KERAS_CASES])
def test_case_matches_keras_recorded_output(case):
    expected = np.asarray(case.keras, dtype=np.float64)
    out = np.asarray(case.call(case.y_true.tolist(), case.y_pred.tolist()))  # lists, as in the table
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=1e-6)
    # the float64 formula is independent of probloss: it must give Keras's number as well
    np.testing.assert_allclose(case.reference(), expected, rtol=2e-5, atol=1e-6)


def test_r65_per_sample_weight_against_timesteps_is_a_shape_error():
    # Keras raises too: an (N,) weight aligns with the last (time) axis of (N, T) losses.
    with pytest.raises(pl.ShapeError, match="sample_weight"):
        pl.CategoricalCrossentropy()(*W1, sample_weight=[1, 2])


def test_r53_kl_clips_to_one_but_we_reject_values_above_one():
    # Keras clips y_true=2 to 1 and returns 0 (R53); we say it is not a probability.
    with pytest.raises(pl.ProblossError, match=r"\[0, 1\]"):
        pl.kl_divergence([[2, 0.5]], [[3, 0.5]])
    with pl.set_value_checks(False):
        np.testing.assert_allclose(pl.kl_divergence([[2, 0.5]], [[3, 0.5]]), [0.0], atol=1e-7)


def test_r27_single_class_warns():
    with pytest.warns(pl.ProblossWarning, match="single class"):
        out = pl.categorical_crossentropy([[1], [1]], [[0.5], [0.3]])
    np.testing.assert_allclose(out, [1.192093e-07, 1.192093e-07], rtol=1e-5)
