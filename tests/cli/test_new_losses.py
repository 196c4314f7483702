"""``probloss compute`` with the Gaussian NLL (``--var``) and the distillation losses, against
PyTorch run live (``F.gaussian_nll_loss``, ``F.kl_div``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import assert_bad_input

torch = pytest.importorskip("torch")
F = torch.nn.functional

Y = [[1.0, 2.0, -0.5], [0.0, 0.5, 3.0]]
MEAN = [[1.5, 2.0, 0.0], [0.2, -0.5, 2.5]]
VAR = [[1.0, 4.0, 0.3], [0.5, 0.5, 2.0]]


def torch_nll(var, full=False):
    v = torch.tensor(var, dtype=torch.float64)
    if v.ndim == 0:
        v = v.expand(2, 3)
    return F.gaussian_nll_loss(torch.tensor(MEAN, dtype=torch.float64), torch.tensor(Y, dtype=torch.float64), v,
                               full=full, reduction="none").mean(-1).numpy()


def test_gaussian_nll_with_var_inline_file_and_number(cli, tmp_path):
    base = ("compute", "gaussian_nll", "--y-true", json.dumps(Y), "--y-pred", json.dumps(MEAN))
    out = cli(*base, "--var", json.dumps(VAR), "--reduction", "none", "--json").json()
    np.testing.assert_allclose(out["value"], torch_nll(VAR), rtol=1e-12)
    assert out["loss"] == "gaussian_nll" and "log(2 pi)" in out["notes"][0]
    path = tmp_path / "var.npy"
    np.save(path, np.array(VAR)[:, 0])  # one variance per sample
    out = cli(*base, "--var", str(path), "--set", "full=true", "--json").json()
    expected = torch_nll(np.repeat(np.array(VAR)[:, :1], 3, axis=1), full=True).mean()
    assert out["value"] == pytest.approx(expected, rel=1e-12) and out["notes"] == []
    text = cli("compute", "GaussianNLL", "--y-true", json.dumps(Y), "--y-pred", json.dumps(MEAN), "--var", "2").out
    assert text.startswith('gaussian_nll (reduction="sum_over_batch_size"): ')
    assert float(text.split(": ")[1].split()[0]) == pytest.approx(torch_nll(2.0).mean(), rel=1e-5)


def test_gaussian_nll_errors(cli):
    base = ("compute", "gaussian_nll", "--y-true", json.dumps(Y), "--y-pred", json.dumps(MEAN))
    assert_bad_input(cli(*base), "gaussian_nll needs the predicted variance", "--var")
    assert_bad_input(cli(*base, "--set", "var=1"), "--set var", "--var option")
    assert_bad_input(cli("compute", "bce", "--y-true", "[1]", "--y-pred", "[0.5]", "--var", "1"), "--var", "gaussian_nll only")
    result = cli(*base, "--var", json.dumps([[1.0, -4.0, 0.3], [0.5, 0.5, 2.0]]))
    assert result.status != 0 and "var" in result.err and "negative" in result.err


def test_compute_distillation_kl_with_temperature(cli):
    t, s = np.array([[2.0, 1.0, 0.1], [0.3, -1.0, 2.2]]), np.array([[1.5, 1.2, 0.3], [0.0, 0.5, 1.0]])
    out = cli("compute", "distillation-kl", "--y-true", json.dumps(t.tolist()), "--y-pred", json.dumps(s.tolist()),
              "--set", "temperature=2", "--reduction", "none", "--json").json()
    ts, ss = torch.tensor(t / 2), torch.tensor(s / 2)
    expected = F.kl_div(ss.log_softmax(-1), ts.log_softmax(-1), log_target=True, reduction="none").sum(-1) * 4
    np.testing.assert_allclose(out["value"], expected.numpy(), rtol=1e-12)


def test_list_shows_the_new_losses(cli):
    names = {r["name"]: r["class"] for r in cli("list", "--json").json()["losses"]}
    assert names["gaussian_nll"] == "GaussianNLL" and names["distillation_kl"] == "DistillationKL"
    assert names["distillation_cross_entropy"] == "DistillationCrossEntropy" and names["js_divergence_loss"] == "JSDivergence"
