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


def test_grad_accumulation_example_shows_the_global_normalisation():
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env = {k: v for k, v in env.items() if not k.startswith("MASTER_")}
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "grad_accumulation.py"), "--processes", "2", "--json"],
            capture_output=True, text=True, timeout=180, cwd=ROOT, env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("examples/grad_accumulation.py did not finish within 180 s")
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["real tokens per micro-batch"] == [23, 3, 15, 22]
    # the reference is torch's F.cross_entropy over the whole batch (in the script)
    for name in ("global", "global, 2 processes"):
        assert result[name]["gradient relative error"] < 1e-5, (name, result[name])
        assert result[name]["loss"] == pytest.approx(result["batch mean loss"], rel=1e-5)
    for name in ("per-micro-batch mean", "per-micro-batch mean, 2 processes"):
        assert result[name]["gradient relative error"] > 0.1, (name, result[name])
