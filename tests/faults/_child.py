"""Run a scenario in a child interpreter; the float64 references the children are checked against.

Everything here is importable by the children themselves (``tests.faults._child``), so
that workers started with the ``spawn`` method, which import their function by name,
find it.  The module imports neither probloss nor torch at import time: a child decides
when probloss is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RTOL = 1e-5

# --------------------------------------------------------------------------- the child


def run(code: str, *, timeout: float = 60, env: dict | None = None) -> tuple[dict, str]:
    """Run ``code`` in ``python -c``; return (the JSON it printed last, its stderr).

    The child prints its results as one JSON line starting with ``RESULT``.  A child that
    hangs is killed after ``timeout`` seconds and the test fails, naming the scenario.
    Asserts that the child exited with 0 and that nothing was reported as ignored.
    """
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "NUMBA_"))}
    child_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), child_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    child_env.update(env or {})
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=child_env,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise AssertionError(f"the child hung: no exit within {timeout} s\nstderr:\n{err[-3000:]}") from None
    assert proc.returncode == 0, f"child exit code {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the child printed no result\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :]), proc.stderr


def report(result) -> None:
    """In the child: print the result line that :func:`run` reads."""
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------ data and references
# Inputs are made from a seed, so the parent rebuilds what a child computed on.

BIG = (2048, 512)  # 1M float32 elements: above the numba threshold (65536)
TORCH_BIG = (512, 512)  # above torch's chunked threshold (65536)


def probs(seed: int, shape, lo=0.02, hi=0.98, dtype=np.float32):
    """Values in (lo, hi): probabilities that Keras's clipping never touches."""
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, size=shape).astype(dtype)


def logits(seed: int, shape, dtype=np.float32):
    return (np.random.default_rng(seed).standard_normal(shape) * 3).astype(dtype)


def labels(seed: int, n: int, k: int):
    return np.random.default_rng(seed).integers(0, k, size=n)


def soft_targets(seed: int, shape, dtype=np.float32):
    t = np.random.default_rng(seed).uniform(0.0, 1.0, size=shape)
    return (t / t.sum(axis=-1, keepdims=True)).astype(dtype)


def _f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def ref_binary(t, p) -> float:
    t, p = _f64(t, p)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log1p(-p))))


def ref_kl(t, p) -> float:
    t, p = _f64(t, p)
    return float(np.mean(np.sum(t * np.log(t / p), axis=-1)))


def ref_poisson(t, p, eps=1e-7) -> float:
    t, p = _f64(t, p)
    return float(np.mean(p - t * np.log(p + eps)))


def _lse(x):
    m = x.max(axis=-1, keepdims=True)
    return np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]


def ref_soft_ce(t, x) -> float:
    t, x = _f64(t, x)
    return float(np.mean(np.sum(t * (_lse(x)[:, None] - x), axis=-1)))


def ref_sparse_ce(y, x) -> float:
    (x,) = _f64(x)
    return float(np.mean(_lse(x) - x[np.arange(x.shape[0]), y]))


def close(got: float, expected: float, rtol: float = RTOL) -> bool:
    return abs(got - expected) <= rtol * abs(expected)


def assert_close(got: float, expected: float, what: str, rtol: float = RTOL) -> None:
    assert close(got, expected, rtol), f"{what}: child gave {got!r}, float64 formula {expected!r}"


# -------------------------------------------------------------- work done inside children


def numpy_bce(seed: int) -> float:
    """Mean of probloss's NumPy float32 binary cross-entropy on a BIG array (the numba path)."""
    import probloss

    t, p = probs(seed, BIG, 0.0, 1.0), probs(seed + 1, BIG)
    return float(np.mean(probloss.binary_crossentropy(t, p), dtype=np.float64))


def torch_sparse(seed: int) -> float:
    """probloss's torch SparseCategoricalCrossentropy(from_logits=True) on TORCH_BIG (the chunked path)."""
    import torch

    import probloss

    x = torch.from_numpy(logits(seed, TORCH_BIG))
    y = torch.from_numpy(labels(seed + 1, TORCH_BIG[0], TORCH_BIG[1]))
    return float(probloss.SparseCategoricalCrossentropy(from_logits=True)(y, x))


def expected_numpy_bce(seed: int) -> float:
    return ref_binary(probs(seed, BIG, 0.0, 1.0), probs(seed + 1, BIG))


def expected_torch_sparse(seed: int) -> float:
    return ref_sparse_ce(labels(seed + 1, TORCH_BIG[0], TORCH_BIG[1]), logits(seed, TORCH_BIG))


def worker(seed: int, forked: bool = False) -> dict:
    """One pool worker's job: both big losses, and whether probloss was imported before.

    In a *forked* worker, torch's own parallel ops wait forever once the parent has used
    torch's OpenMP team (GNU libgomp is not fork-safe; a plain ``F.cross_entropy`` hangs
    too, probloss or not), so the worker first computes the NumPy loss with torch's
    threads as the fork left them (probloss's NumPy path must not touch OpenMP), then
    sets torch to one thread, as torch's DataLoader does in its workers, for the torch loss.
    """
    imported_before = "probloss" in sys.modules
    out = {"seed": seed, "pid": os.getpid(), "probloss_was_imported": imported_before, "numpy_bce": numpy_bce(seed)}
    if forked:
        import torch

        torch.set_num_threads(1)
    out["torch_sparse"] = torch_sparse(seed)
    return out


def check_workers(results: list, seeds) -> None:
    """In the parent: every worker's numbers against the float64 formulas."""
    assert sorted(r["seed"] for r in results) == sorted(seeds)
    for r in results:
        assert_close(r["numpy_bce"], expected_numpy_bce(r["seed"]), f"numpy BCE, seed {r['seed']}")
        assert_close(r["torch_sparse"], expected_torch_sparse(r["seed"]), f"torch sparse CE, seed {r['seed']}")
