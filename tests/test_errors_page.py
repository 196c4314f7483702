"""docs/errors.md is current, and every example on it raises our error (or warning)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
spec = importlib.util.spec_from_file_location("make_errors_page", DOCS / "make_errors_page.py")
page = importlib.util.module_from_spec(spec)
spec.loader.exec_module(page)

ALLOWED = {
    "LabelFormatError", "LabelValueError", "PredictionValueError", "ShapeError", "ArgumentError",
    "ProblossTypeError", "ProblossWarning",
}


@pytest.mark.parametrize(("title", "code"), [e for _, examples in page.EXAMPLES for e in examples])
def test_every_example_raises_our_error(title, code):
    kind, message = page.run_example(code)
    assert kind in ALLOWED, (title, kind, message)
    assert "`" in message  # the message names an argument or a function


def test_page_is_current():
    assert (DOCS / "errors.md").read_text() == page.render(), "run: python docs/make_errors_page.py"
