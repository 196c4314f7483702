"""JAX losses on a four-device mesh sharded on the vocabulary: the same numbers as on one
device, and no logits-sized collective in the compiled programs.

JAX fixes its device count when it starts and this test run has started it already, so
``tests/jax/_sharding_checks.py`` runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and a timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300
_RUN: list = []

# The names of the checks, read without importing the module (importing it starts JAX with four devices).
CHECK_NAMES = re.findall(r"^def check_(\w+)\(", (ROOT / "tests" / "jax" / "_sharding_checks.py").read_text(), re.M)


def _run():
    if not _RUN:
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        try:
            proc = subprocess.run([sys.executable, "-m", "tests.jax._sharding_checks"], capture_output=True, text=True,
                                  timeout=TIMEOUT, cwd=ROOT, env=env)
        except subprocess.TimeoutExpired:
            _RUN.append(f"the checks did not finish within {TIMEOUT} s")
            return _RUN[0]
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            _RUN.append(f"exit code {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
        else:
            _RUN.append(json.loads(lines[-1][len("RESULT "):]))
    return _RUN[0]


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_vocabulary_sharded(check):
    results = _run()
    assert isinstance(results, dict), results
    assert results[check] == "ok", results[check]
