"""The `probloss` command, run as a subprocess on good and bad input.

Numbers are checked against the seed documents' values and float64 formulas written here.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

from probloss import cli

P_CLASSIC = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
SEED_SIGMOID_ONES = [[0.47407699, 0.40318602, 0.5543552], [0.37110069, 0.59813887, 0.34115386]]
HEAVY = ("torch", "jax", "jaxlib", "scipy", "matplotlib", "keras", "tensorflow", "optax", "cupy")


def run(*args, cwd=None):
    proc = subprocess.run(
        [sys.executable, "-m", "probloss", *map(str, args)], capture_output=True, text=True, encoding="utf-8", cwd=cwd,
        timeout=120,
    )
    return proc


def run_json(*args):
    proc = run(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_bad_input(proc, *fragments):
    """Exit status 2 and exactly one line `probloss: error: ...` on stderr, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("probloss: error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def keras_sparse(labels, probs):
    """Keras's probability path in float64: renormalise, clip to [1e-7, 1 - 1e-7], -log p[y]."""
    p = np.asarray(probs, dtype=np.float64)
    p = np.clip(p / p.sum(-1, keepdims=True), 1e-7, 1 - 1e-7)
    return -np.log(np.take_along_axis(p, np.asarray(labels)[..., None], -1)[..., 0])


def lse_minus_true(labels, logits):
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]
    return lse - np.take_along_axis(x, np.asarray(labels)[..., None], -1)[..., 0]


# ------------------------------------------------------------------------- help, entry


@pytest.mark.parametrize("command", [[], ["compute"], ["explain"], ["list"], ["demo"]])
def test_help_on_every_subcommand(command):
    proc = run(*command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: probloss")
    assert "--json" in proc.stdout or not command


def test_version_and_no_command():
    assert run("--version").stdout.startswith("probloss ")
    proc = run()
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_console_script_entry_point():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "probloss"]
    assert ep.value == "probloss.cli:main"


def test_startup_imports_numpy_and_probloss_only():
    code = "import sys, probloss.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    mods = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.replace("'", '"')))
    assert not mods & set(HEAVY), mods & set(HEAVY)


# ------------------------------------------------------------------------------ compute


def test_compute_seed_example():
    proc = run("compute", "sparse_categorical_crossentropy", "--y-true", "[1, 2]", "--y-pred", json.dumps(P_CLASSIC))
    assert proc.returncode == 0, proc.stderr
    assert "1.17694" in proc.stdout  # the Stack Overflow thread's 1.177
    for name in ("CategoricalCrossentropy", "cce"):  # the thread's own abbreviation works too
        out = run_json("compute", name, "--y-true", "[[0,1,0],[0,0,1]]", "--y-pred", json.dumps(P_CLASSIC))
        assert out["loss"] == "categorical_crossentropy"
        assert out["value"] == pytest.approx(keras_sparse([1, 2], P_CLASSIC).mean(), rel=1e-12)
        assert out["value"] == pytest.approx(1.177, abs=5e-4)


def test_compute_reduction_none_and_tf_nn_form():
    out = run_json(
        "compute", "sigmoid_cross_entropy_with_logits", "--reduction", "none",
        "--y-true", "[[1,1,1],[1,1,1]]", "--y-pred", "[[0.5, 0.7, 0.3], [0.8, 0.2, 0.9]]",
    )
    assert out["shape"] == [2, 3]
    np.testing.assert_allclose(out["value"], SEED_SIGMOID_ONES, rtol=1e-7)


def test_compute_from_logits_weights_and_options():
    logits = [[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [1.2, 0.2, 3.0], [-0.3, 0.8, 0.0]]
    labels = [0, 1, 2, 1]
    out = run_json("compute", "sparse-categorical-crossentropy", "--from-logits", "--y-true", labels, "--y-pred", json.dumps(logits))
    assert out["value"] == pytest.approx(0.337976, abs=1e-6)  # studied reference value (L2)
    w = [1.0, 2.0, 0.5, 0.0]
    out = run_json(
        "compute", "sparse_categorical_crossentropy", "--from-logits", "--y-true", labels, "--y-pred", json.dumps(logits),
        "--sample-weight", json.dumps(w),
    )
    assert out["value"] == pytest.approx(np.sum(np.array(w) * lse_minus_true(labels, logits)) / 4, rel=1e-12)
    out = run_json("compute", "bce", "--y-true", "[0, 1]", "--y-pred", "[0.2, 0.6]", "--set", "label_smoothing=0.2")
    t = np.array([0, 1]) * 0.8 + 0.1
    p = np.array([0.2, 0.6])
    assert out["value"] == pytest.approx(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))), rel=1e-12)
    assert out["options"] == {"label_smoothing": 0.2}


def test_compute_inf_is_valid_json():
    out = run_json("compute", "sigmoid_cross_entropy_with_logits", "--y-true", "[1]", "--y-pred", "[1e308]", "--reduction", "sum")
    assert out["value"] == pytest.approx(0.0)


@pytest.fixture
def files(tmp_path):
    y = np.array([1, 2])
    p = np.array(P_CLASSIC)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "p.npy", p)
    np.savez(tmp_path / "one.npz", p)
    np.savez(tmp_path / "both.npz", y_true=y, y_pred=p)
    np.savez(tmp_path / "other.npz", a=y, b=p)
    (tmp_path / "p.csv").write_text("c0,c1,c2\n0.05,0.95,0\n0.1,0.8,0.1\n")
    (tmp_path / "y.csv").write_text("1\n2\n")
    (tmp_path / "p.json").write_text(json.dumps(P_CLASSIC))
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp_path / "evil.npy").write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "bad.json").write_text("[[0.1, 0.9],")
    (tmp_path / "data.txt").write_text("1 2\n")
    return tmp_path


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [("y.npy", "p.npy"), ("y.csv", "p.csv"), ("both.npz:y_true", "both.npz:y_pred"), ("both.npz", "both.npz"), ("y.npy", "one.npz"), ("y.npy", "p.json")],
)
def test_compute_from_files(files, y_true, y_pred):
    out = run_json("compute", "sparse_categorical_crossentropy", "--y-true", files / y_true, "--y-pred", files / y_pred)
    assert out["value"] == pytest.approx(keras_sparse([1, 2], P_CLASSIC).mean(), rel=1e-12)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--y-true", "[1, 2", "--y-pred", "[[0.5, 0.5]]"], ["`--y-true`", "valid JSON"]),
        (["--y-true", '{"a": 1}', "--y-pred", "[[0.5, 0.5]]"], ["`--y-true`", "object"]),
        (["--y-true", "[[1, 2], [3]]", "--y-pred", "[[0.5, 0.5]]"], ["ragged"]),
        (["--y-true", '["a", "b"]', "--y-pred", "[[0.5, 0.5]]"], ["numbers"]),
        (["--y-true", "missing.npy", "--y-pred", "[[0.5, 0.5]]"], ["not found"]),
        (["--y-true", "[1, 2]", "--y-pred", "[[0.5, 0.5, 0], [0.2, 0.8, 0], [0.1, 0.1, 0.8]]"], ["`y_true`", "shape"]),
        (["--y-true", "[1, 5]", "--y-pred", json.dumps(P_CLASSIC)], ["class index 5"]),
        (["--y-true", "[[0, 1, 0], [0, 0, 1]]", "--y-pred", "[[0.5, 0.5], [0.2, 0.8]]"], ["y_true"]),
    ],
)
def test_compute_bad_input(args, fragments):
    assert_bad_input(run("compute", "sparse_categorical_crossentropy", *args), *fragments)


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("pickled.npy", ["pickled", "allow_pickle=False"]),
        ("evil.npy", ["`--y-pred`"]),
        ("bad.json", ["not valid JSON"]),
        ("data.txt", ["unsupported file type"]),
        ("other.npz", ["2 arrays", "a, b"]),
        ("both.npz:nope", ["no array named 'nope'"]),
    ],
)
def test_bad_files(files, name, fragments):
    proc = run("compute", "sparse_categorical_crossentropy", "--y-true", files / "y.npy", "--y-pred", files / name)
    assert_bad_input(proc, *fragments)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["spares_categorical"], ["unknown loss", "sparse_categorical_crossentropy"]),
        (["bce", "--set", "gama=2"], ["`--set gama`", "label_smoothing"]),
        (["bce", "--set", "nokey"], ["KEY=VALUE"]),
        (["bce", "--set", "from_logits=true"], ["--from-logits"]),
        (["bce", "--set", "label_smoothing=2"], ["`label_smoothing`"]),
        (["bce", "--reduction", "auto"], ["--reduction", "invalid choice"]),
        (["poisson", "--from-logits"], ["does not apply"]),
        (["bce", "--chunk-size", "0"], ["--chunk-size"]),
        (["weighted_cross_entropy_with_logits"], ["--set pos_weight=VALUE"]),
    ],
)
def test_compute_bad_usage(args, fragments):
    proc = run("compute", *args[:1], "--y-true", "[0, 1]", "--y-pred", "[0.2, 0.6]", *args[1:])
    assert_bad_input(proc, *fragments)


def test_missing_arguments_is_usage_error():
    assert_bad_input(run("compute", "bce"), "required", "--y-true")
    assert_bad_input(run("explain", "--y-true", "[1]"), "--y-pred")
    assert_bad_input(run("frobnicate"), "invalid choice")


# ---------------------------------------------------------------------- chunking, bar


def test_chunked_path_gives_the_same_numbers():
    import probloss as pl

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(53, 7))
    labels = rng.integers(0, 7, size=53)
    labels[::5] = -1  # ignored positions: the mean divides by the valid count
    w = rng.random(53)
    for reduction in ("sum_over_batch_size", "sum", "none", "mean_with_sample_weight"):
        for sw in (None, w):
            _, loss = cli.build_loss("sparse_categorical_crossentropy", from_logits=True, reduction=reduction,
                                     options={"ignore_class": -1})
            whole = np.asarray(loss(labels, logits, sample_weight=sw))
            chunked = cli.evaluate(loss, labels, logits, sw, chunk_rows=6, progress=cli.Progress(53, enabled=False))
            np.testing.assert_allclose(chunked, whole, rtol=1e-13, atol=1e-15)
    valid = labels != -1
    per = np.where(valid, lse_minus_true(np.where(valid, labels, 0), logits), 0.0)
    _, loss = cli.build_loss("sparse_categorical_crossentropy", from_logits=True, options={"ignore_class": -1})
    assert float(cli.evaluate(loss, labels, logits, chunk_rows=10)) == pytest.approx(per.sum() / valid.sum(), rel=1e-12)
    bce_t = (rng.random((40, 3)) > 0.5).astype(float)
    bce_p = rng.random((40, 3)) * 0.98 + 0.01
    _, loss = cli.build_loss("binary_crossentropy", reduction="none")
    np.testing.assert_allclose(cli.evaluate(loss, bce_t, bce_p, chunk_rows=7), loss(bce_t, bce_p), rtol=1e-13)


def test_large_file_is_chunked_and_silent_without_a_terminal(tmp_path):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(200_001, 5))  # > 1e6 elements
    labels = rng.integers(0, 5, size=200_001)
    np.save(tmp_path / "x.npy", logits)
    np.save(tmp_path / "y.npy", labels)
    proc = run("compute", "sparse_categorical_crossentropy", "--from-logits", "--y-true", tmp_path / "y.npy",
               "--y-pred", tmp_path / "x.npy", "--json")
    assert proc.returncode == 0 and proc.stderr == ""  # no progress bar when stderr is not a terminal
    assert json.loads(proc.stdout)["value"] == pytest.approx(lse_minus_true(labels, logits).mean(), rel=1e-10)


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = cli.Progress(200, label="computing", stream=stream, width=10)
    bar.update(50)
    bar.update(200)
    bar.close()
    out = stream.getvalue()
    assert "\rcomputing [##........]  25% 50/200 rows" in out
    assert "[##########] 100% 200/200 rows" in out and out.endswith("\n")
    quiet = io.StringIO()
    cli.Progress(10, stream=quiet).update(5)
    assert quiet.getvalue() == ""


# ---------------------------------------------------------------------------- explain

EXPLAIN_CASES = {
    # name: (y_true, y_pred, label kind, prediction kind, loss, from_logits, expected value)
    "sparse + softmax (seed)": (
        [1, 2], P_CLASSIC, "class_indices", "probabilities", "sparse_categorical_crossentropy", False,
        keras_sparse([1, 2], P_CLASSIC).mean(),
    ),
    "one-hot + softmax (seed)": (
        [[0, 1, 0], [0, 0, 1]], P_CLASSIC, "one_hot", "probabilities", "categorical_crossentropy", False,
        keras_sparse([1, 2], P_CLASSIC).mean(),
    ),
    "sparse + logits": (
        [0, 1, 2, 1], [[2, 1, 0.1], [0.5, 2.5, -1], [1.2, 0.2, 3], [-0.3, 0.8, 0]], "class_indices", "logits",
        "sparse_categorical_crossentropy", True, 0.337976,
    ),
    "one-hot + logits": (
        [[1, 0, 0], [0, 1, 0]], [[2.0, -1.0, 0.5], [0.1, 3.0, -2.0]], "one_hot", "logits", "categorical_crossentropy",
        True, lse_minus_true([0, 1], [[2.0, -1.0, 0.5], [0.1, 3.0, -2.0]]).mean(),
    ),
    "multi-hot + sigmoid": (
        [[1, 0, 1], [0, 1, 1]], [[0.9, 0.2, 0.7], [0.3, 0.6, 0.8]], "multi_hot", "independent_probabilities",
        "binary_crossentropy", False,
        np.mean(-np.log([0.9, 0.8, 0.7, 0.7, 0.6, 0.8])),
    ),
    "multi-hot + logits": (
        [[1, 0, 1], [0, 1, 0]], [[1, -2, 0.5], [0, 3, -1]], "multi_hot", "logits", "binary_crossentropy", True,
        0.32821,  # studied reference (torch multilabel_soft_margin_loss = BCE with logits, mean)
    ),
    "binary batch (seed, sigmoid form)": (
        [0, 1], [0.2, 0.6], "binary", "independent_probabilities", "binary_crossentropy", False,
        (-math.log(0.8) - math.log(0.6)) / 2,
    ),
    "binary + logits": (
        [[1], [0], [1]], [[2.0], [-1.0], [0.0]], "binary", "logits", "binary_crossentropy", True,
        np.mean([math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)), math.log(2.0)]),
    ),
    "soft labels + softmax": (
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], "distributions", "probabilities",
        "categorical_crossentropy", False,
        np.mean([-(0.7 * math.log(0.6) + 0.2 * math.log(0.3) + 0.1 * math.log(0.1)),
                 -(0.1 * math.log(0.2) + 0.8 * math.log(0.7) + 0.1 * math.log(0.1))]),
    ),
    "counts + rates": (
        [[4, 8, 12], [8, 1, 3]], [[1, 9, 2], [5, 2, 6]], "counts", "rates", "poisson", None,
        np.mean(np.array([[1, 9, 2], [5, 2, 6]]) - np.array([[4, 8, 12], [8, 1, 3]]) * np.log(np.array([[1, 9, 2], [5, 2, 6]]) + 1e-7)),
    ),
    "counts + log-rates": (
        [2, 0, 5, 1], [0.5, -1, 2, 0], "counts", "log_rates", "log_poisson_loss", None,
        np.mean([0.648721, 0.367879, -2.61094, 1]),  # studied reference (P1)
    ),
}


@pytest.mark.parametrize("case", list(EXPLAIN_CASES))
def test_explain_recommends(case):
    y_true, y_pred, label_kind, pred_kind, loss, from_logits, value = EXPLAIN_CASES[case]
    out = run_json("explain", "--y-true", json.dumps(y_true), "--y-pred", json.dumps(y_pred))
    assert out["labels"]["kind"] == label_kind
    assert out["predictions"]["kind"] == pred_kind
    assert out["fits"] is True
    assert out["recommendation"]["loss"] == loss
    if from_logits is not None:
        assert out["recommendation"]["options"] == {"from_logits": from_logits}
    assert out["value"] == pytest.approx(value, rel=1e-5)
    assert set(out["equivalents"]) == {"probloss", "keras", "pytorch", "tensorflow", "optax"}
    if from_logits:
        assert "logits" in out["equivalents"]["pytorch"]


def test_explain_human_output_and_memory():
    proc = run("explain", "--y-true", "[1, 2]", "--y-pred", json.dumps(P_CLASSIC))
    assert proc.returncode == 0
    text = proc.stdout
    for fragment in ("class indices", "sparse_categorical_crossentropy", "Keras:", "PyTorch:", "TensorFlow:", "Optax:",
                     "Memory:", "8 B (int32", "24 B", "3x more", "Value: 1.17694"):
        assert fragment in text, fragment
    labels = list(range(10)) * 6000  # 60,000 Fashion-MNIST-sized labels, 10 classes
    out = cli.explain(np.array(labels), np.full((60000, 10), 0.1))
    assert out["memory"]["int32_bytes"] == 60000 * 4
    assert out["memory"]["one_hot_float32_bytes"] == 60000 * 10 * 4
    assert out["memory"]["ratio"] == 10
    assert out["value"] == pytest.approx(-math.log(0.1), rel=1e-6)


def test_explain_regression_says_these_losses_do_not_fit():
    proc = run("explain", "--y-true", "[1.5, -0.3, 2.2, 0.7]", "--y-pred", "[1.4, 0.1, 2.0, 0.5]")
    assert proc.returncode == 0
    assert "do not fit" in proc.stdout and "mean squared error" in proc.stdout and "Gaussian" in proc.stdout
    out = run_json("explain", "--y-true", "[1.5, -0.3, 2.2, 0.7]", "--y-pred", "[1.4, 0.1, 2.0, 0.5]")
    assert out["fits"] is False
    assert out["value"] == pytest.approx(np.mean((np.array([1.5, -0.3, 2.2, 0.7]) - [1.4, 0.1, 2.0, 0.5]) ** 2))
    out = run_json("explain", "--y-true", "[1.5, 0.3, 2.25]", "--y-pred", "[1.4, 0.1, 2.0]")
    assert out["fits"] is False and any("Poisson" in n for n in out["notes"])


def test_explain_warns_about_mismatched_heads_and_imbalance():
    out = run_json("explain", "--y-true", "[[1, 0, 1], [0, 1, 1]]", "--y-pred", "[[0.5, 0.2, 0.3], [0.1, 0.6, 0.3]]")
    assert out["recommendation"]["loss"] == "binary_crossentropy"
    assert any("sigmoid" in n for n in out["notes"])  # softmax outputs for multi-label targets
    out = run_json("explain", "--y-true", "[0, 1, 2]", "--y-pred", "[[0.9, 0.5, 0.1], [0.2, 0.7, 0.4], [0.1, 0.1, 0.3]]")
    assert out["predictions"]["kind"] == "independent_probabilities"
    assert any("softmax" in n for n in out["notes"])
    labels = [1] + [0] * 39
    out = run_json("explain", "--y-true", json.dumps(labels), "--y-pred", json.dumps([0.3] * 40))
    assert any("binary_focal_crossentropy" in n for n in out["notes"])
    out = run_json("explain", "--y-true", "[1, 0]", "--y-pred", "[[0.2, 0.8], [0.6, 0.4]]", "--from-logits")
    assert out["recommendation"]["options"] == {"from_logits": True}


@pytest.mark.parametrize(
    ("y_true", "y_pred", "fragment"),
    [
        ("[0, 3]", json.dumps(P_CLASSIC), "class index 3"),
        ("[0.5, 1]", json.dumps(P_CLASSIC), "whole numbers"),
        ("[[1, 0]]", json.dumps(P_CLASSIC), "does not fit"),
        ("[1, 2]", "[[0.1, NaN, 0.9], [0.2, 0.3, 0.5]]", "NaN"),
        ("[]", "[]", "empty"),
        ("1", "0.5", "single number"),
    ],
)
def test_explain_bad_input(y_true, y_pred, fragment):
    assert_bad_input(run("explain", "--y-true", y_true, "--y-pred", y_pred), fragment)


# ------------------------------------------------------------------------------- list


def test_list():
    proc = run("list")
    assert proc.returncode == 0
    for name in ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "poisson",
                 "kl_divergence", "binary_focal_crossentropy", "sigmoid_cross_entropy_with_logits", "info.entropy"):
        assert name in proc.stdout
    out = run_json("list")
    names = {r["name"] for r in out["losses"]}
    assert "SparseCategoricalCrossentropy" in {r["class"] for r in out["losses"]}
    assert all(r["description"] for r in out["losses"])
    import probloss as pl

    for name in names:  # everything listed can be built
        options = {"pos_weight": 2.0} if name == "weighted_cross_entropy_with_logits" else {}
        assert cli.build_loss(name, options=options)[0] == name
        assert callable(getattr(pl, name))


# ------------------------------------------------------------------------------- demo


def test_demo_matches_the_documents_fast_and_without_frameworks():
    code = (
        "import sys, time; t = time.perf_counter(); from probloss.cli import main; rc = main(['demo']); "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r)); "
        "sys.stderr.write(f'RC={rc} HEAVY={heavy} T={time.perf_counter() - t:.2f}')" % (HEAVY,)
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert "RC=0 HEAVY=[]" in proc.stderr, proc.stderr
    assert float(proc.stderr.rsplit("T=", 1)[1]) < 5
    assert "1.177" in proc.stdout and "0.47407699" in proc.stdout and "[0.09, 0.24, 0.67]" in proc.stdout
    assert "15 of 15 examples match" in proc.stdout
    assert "✗" not in proc.stdout and proc.stdout.count("✓") == 15


def test_demo_json_and_document_values():
    out = run_json("demo")
    assert out["all_ok"] is True
    by_text = {r["example"]: r for r in out["examples"]}
    assert len(by_text) == 15
    softmax = next(r for r in out["examples"] if r["example"].startswith("softmax"))
    np.testing.assert_allclose(softmax["computed"], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)
    kl = next(r for r in out["examples"] if r["example"].startswith("info.kl_divergence"))
    assert kl["document"] == pytest.approx(0.4 * math.log(4 / 3) + 0.6 * math.log(6 / 7))


def test_demo_exits_1_on_a_mismatch(monkeypatch, capsys):
    good = cli._demo_examples

    def with_a_wrong_number():
        examples = good()
        seed, text, computed, _, how = examples[0]
        return [(seed, text, computed, "1.200", how), *examples[1:]]

    monkeypatch.setattr(cli, "_demo_examples", with_a_wrong_number)
    assert cli.main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "14 of 15" in out
    assert ("✗" in out) or ("MISMATCH" in out)


def test_stated_values_are_compared_at_their_printed_precision():
    assert cli._check(1.17694, "1.177", "stated")
    assert not cli._check(1.1764, "1.177", "stated")
    assert cli._check([0.090031, 0.244728, 0.665241], ["0.09", "0.24", "0.67"], "stated")
    assert not cli._check([0.090031, 0.244728], ["0.09", "0.24", "0.67"], "stated")
