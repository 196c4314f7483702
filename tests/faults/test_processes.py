"""Losses in forked, spawned and DataLoader worker processes.

The old code ran numba kernels on probloss's own worker threads and on torch's OpenMP
team (libgomp's ``GOMP_parallel`` through ctypes).  A process forked after the parent had
used torch's OpenMP team inherited libgomp's state without its threads, and a loss call
in the child waited forever.  Now probloss starts no threads: each child computes both
big losses (NumPy float32 binary cross-entropy on the numba path, torch sparse
cross-entropy on the chunked path) and gets the float64 formula's numbers.

A forked worker computes the NumPy loss with torch's threads as the fork left them, then
sets torch to one thread for the torch loss: after the parent has used torch's OpenMP
team, torch's own parallel kernels (a plain ``F.cross_entropy``, no probloss involved)
never return in a forked child, since GNU libgomp is not fork-safe.  torch's DataLoader
sets one thread in its workers for the same reason.
"""

from __future__ import annotations

import pytest

from tests.faults import _child

pytest.importorskip("torch")
pytest.importorskip("numba")

SEEDS = [11, 12]

# The parent runs a parallel torch op first, so torch's OpenMP team exists when it forks.
_PARENT_TORCH = """
import sys
import torch
torch.randn(2000, 2000) @ torch.randn(2000, 2000)
"""


def _pool(method: str, import_first: bool) -> str:
    return (
        _PARENT_TORCH
        + f"""
import functools
import multiprocessing as mp
from tests.faults import _child
{"import probloss; _child.numpy_bce(0)  # numba kernels loaded before the fork" if import_first else ""}
parent_imported = "probloss" in sys.modules
if __name__ == "__main__":
    with mp.get_context({method!r}).Pool(2) as pool:
        results = pool.map(functools.partial(_child.worker, forked={method == "fork"}), {SEEDS!r}, chunksize=1)
    _child.report({{"parent_imported": parent_imported, "workers": results}})
"""
    )


def _check(out, *, parent_imported: bool, child_imported: bool | None):
    assert out["parent_imported"] is parent_imported
    _child.check_workers(out["workers"], SEEDS)
    assert len({r["pid"] for r in out["workers"]}) >= 1
    if child_imported is not None:
        # with fork, each worker's first task finds probloss (un)imported as the parent left it
        assert any(r["probloss_was_imported"] is child_imported for r in out["workers"])


def test_fork_after_parallel_torch_op_first_import_in_child():
    out, _ = _child.run(_pool("fork", import_first=False), timeout=60)
    _check(out, parent_imported=False, child_imported=False)


def test_fork_after_parallel_torch_op_probloss_imported_in_parent():
    out, _ = _child.run(_pool("fork", import_first=True), timeout=60)
    _check(out, parent_imported=True, child_imported=True)


def test_spawn_after_parallel_torch_op():
    out, _ = _child.run(_pool("spawn", import_first=True), timeout=90)
    _check(out, parent_imported=True, child_imported=None)


def test_dataloader_workers_compute_losses():
    code = (
        _PARENT_TORCH
        + f"""
import torch.utils.data
from tests.faults import _child


class Losses(torch.utils.data.Dataset):
    def __len__(self):
        return {len(SEEDS)}

    def __getitem__(self, i):
        seed = {SEEDS!r}[i]
        return torch.tensor([seed, _child.numpy_bce(seed), _child.torch_sparse(seed)], dtype=torch.float64)


if __name__ == "__main__":
    loader = torch.utils.data.DataLoader(Losses(), batch_size=None, num_workers=2, timeout=60)
    rows = [item.tolist() for item in loader]
    _child.report([{{"seed": int(s), "numpy_bce": b, "torch_sparse": c}} for s, b, c in rows])
"""
    )
    out, _ = _child.run(code, timeout=90)
    _child.check_workers(out, SEEDS)
