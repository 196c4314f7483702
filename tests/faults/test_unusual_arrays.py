"""Arrays that are valid but unusual: other byte order, meta and sparse tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import probloss as pl
from probloss.torch import cross_entropy
from tests import reference as ref


@pytest.mark.parametrize("shape", [(4, 5), (400, 500)], ids=str)  # the generic formula and the compiled loop
def test_big_endian_numpy_arrays_give_the_native_numbers(shape):
    rng = np.random.default_rng(0)
    t = (rng.random(shape) < 0.5).astype(">f4")
    p = rng.random(shape).astype(">f4")
    got = pl.binary_crossentropy(t, p)
    np.testing.assert_allclose(got, ref.bce(t.astype(np.float64), p.astype(np.float64)), rtol=1e-5)
    labels = rng.integers(0, shape[1], shape[0])
    logits = (p * 4 - 2).astype(">f4")
    expected = ref.scce(labels, logits.astype(np.float64), from_logits=True)[0]
    np.testing.assert_allclose(pl.sparse_categorical_crossentropy(labels, logits, from_logits=True), expected, rtol=1e-5)


def test_meta_tensors_give_shapes_without_value_checks():
    x = torch.empty(8, 5, device="meta", requires_grad=True)
    y = torch.empty(8, dtype=torch.long, device="meta")
    for loss in (
        pl.SparseCategoricalCrossentropy(from_logits=True)(y, x),
        pl.CategoricalCrossentropy(from_logits=True)(torch.empty(8, 5, device="meta"), x),
        pl.BinaryCrossentropy()(torch.empty(8, 5, device="meta"), x),
        cross_entropy(x, y),
    ):
        assert loss.device.type == "meta"
        assert loss.shape == F.cross_entropy(x, y).shape


def test_sparse_tensors_are_refused_with_what_to_do():
    x = torch.randn(4, 5).to_sparse()
    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(pl.ProblossTypeError, match=r"to_dense\(\)"):
        pl.SparseCategoricalCrossentropy(from_logits=True)(y, x)
    with pytest.raises(pl.ProblossTypeError, match=r"to_dense\(\)"):
        cross_entropy(x, y)
