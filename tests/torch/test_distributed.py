"""probloss.torch.distributed in real process groups: gloo, 2 and 4 processes on this CPU.

Each world size runs every check of ``tests/torch/_distributed_checks.py`` in one group
of spawned processes (starting torch in a process costs seconds), itself in a
subprocess with a timeout, so that a hang fails that world size's tests.  The checks
compare values and gradients with the single-process probloss losses (and with
``loss_parallel()`` + ``F.cross_entropy``), on a vocabulary of 37 classes split evenly
and unevenly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from tests.torch._distributed_checks import CHECKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240
_RUNS: dict = {}


def _run(world: int) -> dict:
    if world not in _RUNS:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "OMP_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        # its own session, so that a hang kills the spawned ranks too, not only their parent
        proc = subprocess.Popen([sys.executable, "-m", "tests.torch._distributed_checks", str(world)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            _RUNS[world] = f"the {world} processes did not finish within {TIMEOUT} s (a hang)"
            return _RUNS[world]
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            _RUNS[world] = f"exit code {proc.returncode}\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
        else:
            _RUNS[world] = json.loads(lines[-1][len("RESULT "):])
    return _RUNS[world]


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_distributed(world, check):
    results = _run(world)
    assert isinstance(results, dict), results
    assert results[check] == "ok", results[check]


def test_importing_probloss_torch_leaves_the_distributed_module_alone():
    # checked in the fresh interpreter of the 2-process run, before it imports the module itself
    results = _run(2)
    assert isinstance(results, dict), results
    assert results["import probloss.torch leaves probloss.torch.distributed alone"] == "ok"


def test_without_a_process_group_the_error_says_what_to_do():
    from probloss import ArgumentError
    from probloss.torch import distributed as pdist

    if dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(ArgumentError, match="init_process_group"):
        pdist.sparse_categorical_crossentropy(torch.tensor([0]), torch.zeros(1, 3), from_logits=True)
