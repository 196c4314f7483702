"""The entry point (probloss.cli.main, ``python -m probloss``, the console script): exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import probloss.cli._main as cli_main
from probloss.cli import main

from .conftest import P_CLASSIC

HEAVY = ("torch", "jax", "jaxlib", "scipy", "matplotlib", "keras", "tensorflow", "optax", "cupy")


def test_version_and_no_command(cli):
    assert cli("--version").out.startswith("probloss ")
    result = cli()
    assert result.status == 2 and "usage:" in result.err


def test_console_script_entry_point_is_unchanged():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "probloss"]
    assert ep.value == "probloss.cli:main"
    assert ep.load() is main


def test_python_m_probloss_runs_without_frameworks():
    code = (
        f"import runpy, sys; sys.argv = ['probloss', 'compute', 'scce', '--y-true', '[1, 2]', '--y-pred', {json.dumps(P_CLASSIC)!r}];"
        "\ntry:\n    runpy.run_module('probloss', run_name='__main__')\nexcept SystemExit as e:\n    rc = e.code"
        f"\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})), rc, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip() == "[] 0", proc.stderr
    assert "1.17694" in proc.stdout


def test_an_unexpected_exception_is_exit_1_without_traceback(cli, monkeypatch):
    def broken(args):
        raise KeyError("boom")

    monkeypatch.setitem(cli_main.HANDLERS, "list", broken)
    result = cli("list")
    assert result.status == 1
    assert result.err.startswith("probloss: error: internal error (KeyError") and "Traceback" not in result.err


def test_memory_and_recursion_errors_are_bad_input(cli, monkeypatch):
    for exc, fragment in ((MemoryError(), "--max-bytes"), (RecursionError(), "nested too deeply")):
        def raising(args, exc=exc):
            raise exc

        monkeypatch.setitem(cli_main.HANDLERS, "list", raising)
        result = cli("list")
        assert result.status == 2 and fragment in result.err


def test_warnings_inside_the_command_do_not_escape_as_exceptions(cli, monkeypatch):
    import warnings

    def warns(args):
        warnings.warn("careful with\n `y_pred`", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setitem(cli_main.HANDLERS, "list", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as under pytest -W error
        result = cli("list")
    assert result.status == 0
    assert result.err == "probloss: warning: careful with `--y-pred`\n"


@pytest.mark.parametrize("command", ["compute", "explain"])
def test_every_bad_input_is_exit_2(cli, command):
    extra = ["bce"] if command == "compute" else []
    for y_pred in ('["x"]', "[1+2j]", "[[0.5], [0.5, 0.5]]", '{"a": [1], "b": [2]}'):
        result = cli(command, *extra, "--y-true", "[1]", "--y-pred", y_pred)
        assert result.status == 2, (y_pred, result.err)
