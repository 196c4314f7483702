"""docs/guide.md: every code block runs, and the figures it shows exist and can be redrawn.

```python blocks run as doctests (or plain code without `>>>`); ```console blocks run each
`$ probloss ...` / `$ python ...` command and check that every output line shown appears
in the real output.
"""

from __future__ import annotations

import doctest
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks():
    text = GUIDE.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        lineno = text.count("\n", 0, m.start()) + 1
        out.append((m.group(1), m.group(2), lineno))
    return out


BLOCKS = _blocks()
PYTHON = [(code, line) for lang, code, line in BLOCKS if lang == "python"]
CONSOLE = [(code, line) for lang, code, line in BLOCKS if lang == "console"]


def test_every_block_is_checked():
    langs = {lang for lang, _, _ in BLOCKS}
    assert langs <= {"python", "console"}, f"unchecked code blocks: {langs - {'python', 'console'}}"
    assert len(PYTHON) >= 10 and len(CONSOLE) >= 3


@pytest.mark.parametrize(("code", "line"), PYTHON, ids=[f"line{line}" for _, line in PYTHON])
def test_python_block(code, line):
    if ">>>" not in code:
        exec(compile(code, f"{GUIDE.name}:{line}", "exec"), {})
        return
    parser = doctest.DocTestParser()
    test = parser.get_doctest(code, {}, f"guide.md:{line}", str(GUIDE), line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def _commands(block):
    """(argv, expected output lines) for each `$ ` line of a console block."""
    cmds = []
    for raw in block.splitlines():
        if raw.startswith("$ "):
            argv = shlex.split(raw[2:])
            if argv[0] == "probloss":
                argv = [sys.executable, "-m", "probloss", *argv[1:]]
            elif argv[0] == "python":
                argv = [sys.executable, *argv[1:]]
            else:
                raise AssertionError(f"unknown command in the guide: {raw}")
            cmds.append((argv, []))
        elif raw.strip():
            cmds[-1][1].append(raw.strip())
    return cmds


@pytest.mark.parametrize(("code", "line"), CONSOLE, ids=[f"line{line}" for _, line in CONSOLE])
def test_console_block(code, line):
    for argv, expected in _commands(code):
        proc = subprocess.run(argv, capture_output=True, text=True, encoding="utf-8", cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        got = {ln.strip() for ln in proc.stdout.splitlines()}
        for want in expected:
            assert want in got, f"guide.md:{line}: {want!r} not in the output of {argv[2:]}:\n{proc.stdout}"


def test_figures_exist_and_are_small_pngs():
    text = GUIDE.read_text(encoding="utf-8")
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    assert len(figures) >= 3
    for rel in figures:
        path = GUIDE.parent / rel
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", rel
        assert len(data) < 250_000, rel


def test_make_figures_redraws_them(tmp_path):
    pytest.importorskip("matplotlib")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_figures.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    made = sorted(p.name for p in tmp_path.glob("*.png"))
    committed = {p.name for p in (ROOT / "docs" / "figures").glob("*.png")}
    assert made and set(made) <= committed  # benchmarks.png comes from benchmarks/report.py
    for name in made:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
