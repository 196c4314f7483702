"""Loading arrays (probloss.cli._files): every format, named arrays, and hostile input.

Hostile inputs are built small in the test and met with a lowered ``--max-bytes``; the
loader must refuse them from their headers, before reading data, with exit status 2.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from .conftest import P_CLASSIC, assert_bad_input, keras_sparse

SCCE = ("compute", "sparse_categorical_crossentropy")
EXPECTED = float(keras_sparse([1, 2], P_CLASSIC).mean())


@pytest.fixture
def files(tmp_path):
    y, p = np.array([1, 2]), np.array(P_CLASSIC)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "p_fortran.npy", np.asfortranarray(p))
    np.save(tmp_path / "p_bigendian.npy", p.astype(">f8"))
    np.savez(tmp_path / "one.npz", p)
    np.savez_compressed(tmp_path / "both.npz", y_true=y, y_pred=p)
    np.savez(tmp_path / "other.npz", a=y, b=p)
    (tmp_path / "p.csv").write_text("c0,c1,c2\n0.05,0.95,0\n0.1,0.8,0.1\n")
    (tmp_path / "y.csv").write_text("1\n2\n")
    (tmp_path / "p.json").write_text(json.dumps(P_CLASSIC))
    (tmp_path / "named.json").write_text(json.dumps({"labels": [1, 2], "probs": P_CLASSIC}))
    (tmp_path / "both.json").write_text(json.dumps({"y_true": [1, 2], "y_pred": P_CLASSIC}))
    return tmp_path


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        ("y.npy", "p.npy"),
        ("y.npy", "p_fortran.npy"),
        ("y.npy", "p_bigendian.npy"),
        ("y.csv", "p.csv"),
        ("both.npz:y_true", "both.npz:y_pred"),
        ("both.npz", "both.npz"),
        ("y.npy", "one.npz"),
        ("y.npy", "p.json"),
        ("named.json:labels", "named.json:probs"),
        ("both.json", "both.json"),
    ],
    ids=lambda s: s,
)
def test_every_file_form_gives_the_keras_value(cli, files, y_true, y_pred):
    out = cli(*SCCE, "--y-true", files / y_true, "--y-pred", files / y_pred, "--json").json()
    assert out["value"] == pytest.approx(EXPECTED, rel=1e-12)


def test_inline_json_object_of_named_arrays(cli):
    out = cli(*SCCE, "--y-true", '{"labels": [1, 2]}', "--y-pred", json.dumps({"y_pred": P_CLASSIC, "x": [1]}), "--json").json()
    assert out["value"] == pytest.approx(EXPECTED, rel=1e-12)
    err = assert_bad_input(cli(*SCCE, "--y-true", '{"a": [1], "b": [2]}', "--y-pred", json.dumps(P_CLASSIC)))
    assert "2 named arrays ('a', 'b')" in err and "FILE:NAME" in err


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("other.npz", ["2 arrays ('a', 'b')", "FILE:NAME"]),
        ("both.npz:nope", ["no array named 'nope'", "'y_true', 'y_pred'"]),
        ("named.json:nope", ["no array named 'nope'", "'labels', 'probs'"]),
        ("p.json:probs", ["no JSON object"]),
        ("p.npy:x", ["not found"]),
    ],
    ids=lambda s: s if isinstance(s, str) else None,
)
def test_named_array_errors(cli, files, name, fragments):
    assert_bad_input(cli(*SCCE, "--y-true", "[1, 2]", "--y-pred", files / name), *fragments)


@pytest.fixture
def bad_files(tmp_path):
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp_path / "evil.npy").write_bytes(pickle.dumps([1, 2, 3]))
    np.save(tmp_path / "complex.npy", np.array([1 + 2j, 3j]))
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    np.save(tmp_path / "dates.npy", np.array(["2024-01-01"], dtype="datetime64[D]"))
    np.save(tmp_path / "float128.npy", np.zeros(2, dtype=np.longdouble))
    np.save(tmp_path / "truncated.npy", np.zeros(100))
    with open(tmp_path / "truncated.npy", "r+b") as fh:
        fh.truncate(200)
    (tmp_path / "bad.json").write_text("[[0.1, 0.9],")
    (tmp_path / "latin1.json").write_bytes(b"[0.5, \xe9]")
    (tmp_path / "strings.json").write_text('["a", "b"]')
    (tmp_path / "huge_int.json").write_text("[1, 100000000000000000000000]")
    (tmp_path / "data.txt").write_text("1 2\n")
    (tmp_path / "notzip.npz").write_text("not a zip")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("pickled.npy", ["pickled", "allow_pickle=False"]),
        ("evil.npy", ["`--y-pred` file", "not a .npy file"]),
        ("complex.npy", ["complex numbers"]),
        ("text.npy", ["text"]),
        ("dates.npy", ["dates"]),
        ("float128.npy", ["real numbers only"]),
        ("truncated.npy", ["truncated"]),
        ("bad.json", ["not valid JSON", "line 1 column 13"]),
        ("latin1.json", ["not UTF-8"]),
        ("strings.json", ["real numbers only", "text"]),
        ("huge_int.json", ["integers too large"]),
        ("data.txt", ["unsupported file type '.txt'"]),
        ("notzip.npz", ["not a readable .npz"]),
    ],
    ids=lambda s: s if isinstance(s, str) else None,
)
def test_bad_files_exit_2(cli, bad_files, name, fragments):
    assert_bad_input(cli(*SCCE, "--y-true", "[1, 2]", "--y-pred", bad_files / name), *fragments)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[1, 2", ["`--y-true`", "valid JSON"]),
        ('"a string"', ["a string"]),
        ("null", ["null"]),
        ("[[1, 2], [3]]", ["not a rectangular array"]),
        ('["a", "b"]', ["real numbers only"]),
        ("[1, null]", ["real numbers only"]),
        ("missing.npy", ["`--y-true` file 'missing.npy' not found"]),
        ("sub/dir/missing", ["not found"]),
    ],
)
def test_bad_inline_json_exit_2(cli, text, fragments):
    assert_bad_input(cli(*SCCE, "--y-true", text, "--y-pred", json.dumps(P_CLASSIC)), *fragments)


# ------------------------------------------------------------------------- size limits


def test_npz_zip_bomb_is_refused_from_the_member_size(cli, tmp_path):
    # 8 MB of zeros compress to ~8 KB; with --max-bytes 1M the member's uncompressed size refuses it
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, y_pred=np.zeros((1_000_000,)))
    assert bomb.stat().st_size < 100_000
    err = assert_bad_input(cli(*SCCE, "--y-true", "[0]", "--y-pred", bomb, "--max-bytes", "1M"), "--max-bytes")
    assert "8,000,128 bytes" in err and "1,048,576 allowed" in err


def test_npz_member_lying_about_its_size_is_refused_from_the_npy_header(cli, tmp_path):
    # the zip directory says the member is small, the .npy header inside announces 8 MB
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (1_000_000,)
    member = tmp_path / "m.npy"
    with open(member, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)
    with zipfile.ZipFile(tmp_path / "liar.npz", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(member, "y_pred.npy")
    assert_bad_input(cli(*SCCE, "--y-true", "[0]", "--y-pred", tmp_path / "liar.npz", "--max-bytes", "1M"),
                     "8,000,000 bytes", "--max-bytes")


def test_npy_header_claiming_10_to_the_12_elements_is_refused_before_reading(cli, tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
        fh.write(b"\0" * 80)
    assert_bad_input(cli(*SCCE, "--y-true", "[0]", "--y-pred", path), "8,000,000,000,000 bytes", "--max-bytes")


def test_max_bytes_can_be_raised(cli, tmp_path):
    p = np.full((300, 4), 0.25)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", np.zeros(300, dtype=np.int64))
    args = (*SCCE, "--y-true", tmp_path / "y.npy", "--y-pred", tmp_path / "p.npy")
    assert_bad_input(cli(*args, "--max-bytes", "9000"), "9,600 bytes", "9,000 allowed", "--max-bytes")
    out = cli(*args, "--max-bytes", "10K", "--json").json()
    assert out["value"] == pytest.approx(np.log(4.0), rel=1e-12)


def test_text_input_over_the_limit_is_refused(cli, tmp_path):
    big = json.dumps([0.5] * 1000)  # 5,000 characters; 1/16 of 64K is 4,096
    assert_bad_input(cli("compute", "bce", "--y-true", json.dumps([1] * 1000), "--y-pred", big, "--max-bytes", "64K"),
                     "inline JSON of `--y-pred`", "4,096 allowed", "--max-bytes")
    (tmp_path / "p.csv").write_text("\n".join(["0.5"] * 1000))
    assert_bad_input(cli("compute", "bce", "--y-true", "[1]", "--y-pred", tmp_path / "p.csv", "--max-bytes", "16K"),
                     "1,024 allowed")


@pytest.mark.parametrize("where", ["inline", "file"])
def test_100k_deep_json_is_bad_input_not_an_internal_error(cli, tmp_path, where):
    deep = "[" * 100_000 + "]" * 100_000
    if where == "file":
        (tmp_path / "deep.json").write_text(deep)
        deep = tmp_path / "deep.json"
    assert_bad_input(cli(*SCCE, "--y-true", "[0]", "--y-pred", deep), "nested too deeply")


def test_json_deeper_than_numpy_allows_is_bad_input(cli):
    deep = "[" * 70 + "0.5" + "]" * 70
    assert_bad_input(cli("compute", "bce", "--y-true", "[1]", "--y-pred", deep), "more dimensions than NumPy allows")


# ------------------------------------------------------------------- not regular files


def test_directory_and_dangling_symlink_have_their_own_messages(cli, tmp_path):
    (tmp_path / "d.npy").mkdir()
    os.symlink(tmp_path / "nowhere.npy", tmp_path / "dangling.npy")
    assert_bad_input(cli(*SCCE, "--y-true", "[0]", "--y-pred", tmp_path / "d.npy"), "is a directory")
    err = assert_bad_input(cli(*SCCE, "--y-true", "[0]", "--y-pred", tmp_path / "dangling.npy"),
                           "symbolic link to a file that does not exist")
    assert "not found" not in err


@pytest.mark.parametrize("ext", [".csv", ".npy", ".json", ".npz"])
def test_symlink_to_a_secret_text_file_never_shows_its_contents(cli, tmp_path, ext):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET\n0.5\nhunter2\n")
    link = tmp_path / f"link{ext}"
    os.symlink(secret, link)
    result = cli(*SCCE, "--y-true", "[0]", "--y-pred", link)
    assert_bad_input(result, f"link{ext}")
    assert "TOPSECRET" not in result.err and "hunter2" not in result.err


def test_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    # a subprocess with a timeout: opening the FIFO for reading would block forever
    proc = subprocess.run(
        [sys.executable, "-m", "probloss", *SCCE, "--y-true", "[0]", "--y-pred", str(fifo)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "is a named pipe (FIFO)" in proc.stderr and "not found" not in proc.stderr
