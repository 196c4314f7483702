"""Helpers for the command-line tests: run ``main`` in-process and check its output."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from probloss.cli import main

P_CLASSIC = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]


@dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self):
        assert self.status == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def cli(capsys):
    """``cli(*args)``: run ``probloss ARGS`` in this process; returns status, stdout, stderr."""

    def run(*args) -> Result:
        capsys.readouterr()
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return run


def assert_bad_input(result: Result, *fragments: str) -> str:
    """Exit status 2 and exactly one line ``probloss: error: ...`` on stderr; returns that line."""
    assert result.status == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("probloss: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def keras_sparse(labels, probs):
    """Keras's probability path in float64: renormalise, clip to [1e-7, 1 - 1e-7], -log p[y]."""
    p = np.asarray(probs, dtype=np.float64)
    p = np.clip(p / p.sum(-1, keepdims=True), 1e-7, 1 - 1e-7)
    return -np.log(np.take_along_axis(p, np.asarray(labels)[..., None], -1)[..., 0])


def lse_minus_true(labels, logits):
    """Softmax cross-entropy on logits in float64: logsumexp(x) - x[y]."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]
    return lse - np.take_along_axis(x, np.asarray(labels)[..., None], -1)[..., 0]
