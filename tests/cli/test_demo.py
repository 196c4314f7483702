"""``probloss demo`` (probloss.cli._demo): every worked example checks, without frameworks."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import probloss.cli._demo as demo

HEAVY = ("torch", "jax", "jaxlib", "scipy", "matplotlib", "keras", "tensorflow", "optax", "cupy")


def test_demo_matches_fast_and_without_frameworks():
    code = (
        "import sys, time; t = time.perf_counter(); from probloss.cli import main; rc = main(['demo']); "
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})); "
        "sys.stderr.write(f'RC={rc} HEAVY={heavy} T={time.perf_counter() - t:.2f}')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert "RC=0 HEAVY=[]" in proc.stderr, proc.stderr
    assert float(proc.stderr.rsplit("T=", 1)[1]) < 5
    assert "1.177" in proc.stdout and "0.47407699" in proc.stdout and "[0.09, 0.24, 0.67]" in proc.stdout
    assert "15 of 15 examples match" in proc.stdout
    assert "✗" not in proc.stdout and proc.stdout.count("✓") == 15


def test_demo_json_against_independent_values(cli):
    out = cli("demo", "--json").json()
    assert out["all_ok"] is True and len(out["examples"]) == 15
    by_start = {r["example"].split("(")[0]: r for r in out["examples"]}
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(by_start["softmax"]["computed"], np.exp(x) / np.exp(x).sum(), rtol=1e-12)
    assert by_start["info.kl_divergence"]["expected"] == pytest.approx(0.4 * math.log(4 / 3) + 0.6 * math.log(6 / 7))
    sparse = by_start["SparseCategoricalCrossentropy"]
    assert sparse["computed"] == pytest.approx(-(math.log(0.95) + math.log(0.1)) / 2, rel=1e-6)  # float32 lists
    assert sparse["expected"] == "1.177" and sparse["expected_from"] == "stated"


def test_demo_exits_1_on_a_mismatch(cli, monkeypatch):
    good = demo.examples

    def with_a_wrong_number():
        examples = good()
        topic, text, computed, _, how = examples[0]
        return [(topic, text, computed, "1.200", how), *examples[1:]]

    monkeypatch.setattr(demo, "examples", with_a_wrong_number)
    result = cli("demo")
    assert result.status == 1
    assert "14 of 15" in result.out and ("✗" in result.out or "MISMATCH" in result.out)


def test_stated_values_are_compared_at_their_printed_precision():
    assert demo.check(1.17694, "1.177", "stated")
    assert not demo.check(1.1764, "1.177", "stated")
    assert demo.check([0.090031, 0.244728, 0.665241], ["0.09", "0.24", "0.67"], "stated")
    assert not demo.check([0.090031, 0.244728], ["0.09", "0.24", "0.67"], "stated")
