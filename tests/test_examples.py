"""The scripts in examples/ run, and print probloss losses equal to the native ones.

Each script trains the same model with probloss and with its framework's own loss;
run for a few steps in a subprocess (with a timeout), its ``--json`` output must show
the two histories agreeing to 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5

EXAMPLES = {
    "torch_loop.py": ("torch",),
    "keras_fit.py": ("keras", "jax"),
    "jax_optax.py": ("jax", "optax"),
}


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_matches_the_native_loss(script):
    for module in EXAMPLES[script]:
        pytest.importorskip(module)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "KERAS_BACKEND": "jax"}
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / script), "--steps", "3", "--json"],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"examples/{script} did not finish within 180 s")
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    native = result["native"]
    assert len(native) == 3
    for name, history in result["probloss"].items():
        assert len(history) == len(native), name
        diff = max(abs(a - b) for a, b in zip(history, native))
        assert diff <= TOL, f"{script} {name}: {history} vs native {native}"
    if "evaluate" in result:  # the model saved and loaded back evaluates the same
        before, after = result["evaluate"]
        assert after == pytest.approx(before, rel=1e-6)
