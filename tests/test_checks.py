"""probloss._checks: value checks and their error paths."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import probloss as pl

_PEAK = textwrap.dedent(
    """
    import numpy as np, probloss as pl, torch

    def rss_kib(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1])

    n = 1 << 25  # 32M float32 elements: 128 MiB per input
    lib = "{lib}"
    rng = np.random.default_rng(0)
    t = (rng.random(n, dtype=np.float32) < 0.5).astype(np.float32).reshape(4096, -1)
    p = rng.standard_normal(n, dtype=np.float32).reshape(4096, -1)  # logits given as probabilities
    if lib == "torch":
        t, p = torch.from_numpy(t), torch.from_numpy(p)
    try:  # the same error once on the first rows: libraries load (numba, torch's kernels) now
        pl.binary_crossentropy(t[:64], p[:64])
    except pl.PredictionValueError:
        pass
    open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here
    before = rss_kib("VmRSS")
    try:
        pl.binary_crossentropy(t, p)
    except pl.PredictionValueError as exc:
        assert "from_logits=True" in str(exc), exc
    print((rss_kib("VmHWM") - before) // 1024)
    """
)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_the_error_for_logits_as_probabilities_takes_bounded_memory(lib):
    # Locating the first bad element reads a block of rows at a time: a few MiB, where a
    # boolean mask of every element and an argwhere over them took 1.2 GB for two such inputs.
    out = subprocess.run([sys.executable, "-c", _PEAK.format(lib=lib)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    extra_mib = int(out.stdout.split()[-1])
    assert extra_mib < 48, f"the error path took {extra_mib} MiB beyond two 128 MiB inputs"


@pytest.mark.parametrize("where", [(0, 0), (2047, 4095), (4095, 8191)], ids=str)
def test_the_first_bad_element_is_named_wherever_it_is(where):
    p = np.full((4096, 8192), 0.5, np.float32)
    p[where] = 3.5
    if where != (4095, 8191):
        p[4095, 8191] = 7.0  # a later bad element is not the one reported
    with pytest.raises(pl.PredictionValueError, match=rf"holds 3.5 at index \({where[0]}, {where[1]}\)"):
        pl.binary_crossentropy(np.zeros_like(p), p)


def test_a_nan_is_named_before_a_value_out_of_range():
    p = np.full((300, 5000), 0.5, np.float32)
    p[10, 3] = 2.0
    p[200, 7] = np.nan
    with pytest.raises(pl.PredictionValueError, match=r"contains nan at index \(200, 7\)"):
        pl.binary_crossentropy(np.zeros_like(p), p)
