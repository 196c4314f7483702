"""The grammar and help (probloss.cli._parser): options, exit status 2 for bad usage, plain words."""

from __future__ import annotations

import re

import pytest

from probloss.cli._parser import parse_size

from .conftest import assert_bad_input


@pytest.mark.parametrize(("text", "size"), [("1000", 1000), ("64K", 65536), ("512m", 512 << 20), ("2G", 2 << 30),
                                            ("2GiB", 2 << 30), ("1T", 1 << 40), ("10B", 10)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "-1", "2X", "1.5G", "", "G"])
def test_bad_max_bytes_is_a_usage_error(cli, text):
    assert_bad_input(cli("compute", "bce", "--y-true", "[1]", "--y-pred", "[0.5]", "--max-bytes", text),
                     "--max-bytes", "byte count")


@pytest.mark.parametrize("command", [[], ["compute"], ["explain"], ["list"], ["demo"]], ids=lambda c: c[0] if c else "top")
def test_help_on_every_subcommand(cli, command):
    result = cli(*command, "--help")
    assert result.status == 0
    assert result.out.startswith("usage: probloss")
    assert "--json" in result.out or not command


@pytest.mark.parametrize("command", [[], ["compute"], ["explain"]], ids=lambda c: c[0] if c else "top")
def test_help_documents_file_forms_header_and_limits(cli, command):
    text = cli(*command, "--help").out
    for fragment in ("FILE.npz:NAME", "FILE.json:NAME", "--header", "pandas", "--max-bytes", "exit status"):
        assert fragment in text, fragment


@pytest.mark.parametrize("command", [["--help"], ["compute", "--help"], ["explain", "--help"], ["demo", "--help"],
                                     ["demo"], ["list"]], ids=" ".join)
def test_user_facing_text_has_no_internal_words(cli, command):
    text = cli(*command).out
    assert not re.search(r"\bseed|\bR[0-9]+\b|\bissue", text, flags=re.IGNORECASE), text


def test_chunk_size_is_gone(cli):
    assert_bad_input(cli("compute", "bce", "--y-true", "[1]", "--y-pred", "[0.5]", "--chunk-size", "1"),
                     "unrecognized arguments: --chunk-size")


def test_missing_arguments_and_unknown_commands(cli):
    assert_bad_input(cli("compute", "bce"), "required", "--y-true")
    assert_bad_input(cli("explain", "--y-true", "[1]"), "--y-pred")
    assert_bad_input(cli("frobnicate"), "invalid choice")
    assert_bad_input(cli("compute", "bce", "--y-true", "[1]", "--y-pred", "[0.5]", "--header", "maybe"), "--header")
    assert_bad_input(cli("compute", "bce", "--y-true", "[1]", "--y-pred", "[0.5]", "--reduction", "auto"),
                     "--reduction", "invalid choice")
