"""OpenMP and numba environment variables in the user's environment.

The old code sized its OpenMP team from torch and called ``GOMP_parallel`` itself:
``OMP_THREAD_LIMIT=1`` and ``OMP_DYNAMIC=true`` gave it fewer threads than it had split
the rows for, and rows went missing from the result.  ``NUMBA_DISABLE_JIT=1`` (numba's
debugging switch) made the kernels' low-level intrinsics fail at the first big array.
Now probloss starts no threads, and with the JIT off it warns once and takes its generic
NumPy code: the numbers are the float64 formula's in every case.
"""

from __future__ import annotations

import pytest

from tests.faults import _child

pytest.importorskip("numba")
pytest.importorskip("torch")

_CODE = """
import warnings
import numpy as np
import torch
from tests.faults import _child

B, T = _child.BIG, _child.TORCH_BIG
p, t = _child.probs(1, B), _child.probs(2, B, 0.0, 1.0)
x, s = _child.logits(3, B), _child.soft_targets(4, B)
tx, ty = _child.logits(5, T), _child.labels(6, T[0], T[1])
tp, tt = _child.probs(7, T), _child.probs(8, T, 0.0, 1.0)

with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    import probloss

    def mean(v):
        return float(np.mean(np.asarray(v), dtype=np.float64))

    out = {}
    for rep in range(2):  # a second round: the warning is given once only
        out["binary"] = mean(probloss.binary_crossentropy(t, p))
        out["kl"] = mean(probloss.kl_divergence(t, p))
        out["poisson"] = mean(probloss.poisson(t, p))
        out["categorical_logits"] = mean(probloss.categorical_crossentropy(s, x, from_logits=True))
    out["torch_sparse"] = float(probloss.SparseCategoricalCrossentropy(from_logits=True)(torch.from_numpy(ty), torch.from_numpy(tx)))
    out["torch_binary"] = float(probloss.BinaryCrossentropy()(torch.from_numpy(tt), torch.from_numpy(tp)))
    out["torch_kl"] = float(probloss.KLDivergence()(torch.from_numpy(tt), torch.from_numpy(tp)))
    out["torch_poisson"] = float(probloss.Poisson()(torch.from_numpy(tt), torch.from_numpy(tp)))

import sys

out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in seen]
out["problosswarnings"] = sum(issubclass(w.category, probloss.ProblossWarning) for w in seen)
out["numba_used"] = bool(getattr(sys.modules.get("probloss._backends.numpy"), "_numba", None))  # kernels loaded
_child.report(out)
"""


def _expected():
    B, T = _child.BIG, _child.TORCH_BIG
    p, t = _child.probs(1, B), _child.probs(2, B, 0.0, 1.0)
    x, s = _child.logits(3, B), _child.soft_targets(4, B)
    tp, tt = _child.probs(7, T), _child.probs(8, T, 0.0, 1.0)
    return {
        "binary": _child.ref_binary(t, p),
        "kl": _child.ref_kl(t, p),
        "poisson": _child.ref_poisson(t, p),
        "categorical_logits": _child.ref_soft_ce(s, x),
        "torch_sparse": _child.ref_sparse_ce(_child.labels(6, T[0], T[1]), _child.logits(5, T)),
        "torch_binary": _child.ref_binary(tt, tp),
        "torch_kl": _child.ref_kl(tt, tp),
        "torch_poisson": _child.ref_poisson(tt, tp),
    }


@pytest.mark.parametrize(
    ("env", "jit"),
    [({"OMP_THREAD_LIMIT": "1"}, True), ({"OMP_DYNAMIC": "true"}, True), ({"NUMBA_DISABLE_JIT": "1"}, False)],
    ids=["OMP_THREAD_LIMIT=1", "OMP_DYNAMIC=true", "NUMBA_DISABLE_JIT=1"],
)
def test_losses_under_environment(env, jit):
    out, _ = _child.run(_CODE, env=env, timeout=60)
    for name, expected in _expected().items():
        _child.assert_close(out[name], expected, f"{name} under {env}")
    assert out["numba_used"] is jit
    if jit:
        assert out["warnings"] == []
    else:  # the kernels cannot run: one warning that says so, then the generic code
        assert out["problosswarnings"] == 1, out["warnings"]
        assert len(out["warnings"]) == 1 and "numba" in out["warnings"][0], out["warnings"]
