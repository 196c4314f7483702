"""``import probloss`` must not import a framework the caller did not import."""

from __future__ import annotations

import subprocess
import sys

import probloss as pl

FRAMEWORKS = ("torch", "jax", "cupy", "keras", "tensorflow", "optax")


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(filter(None, out.stdout.strip().split(",")))


def test_import_probloss_loads_no_framework():
    code = "import probloss as pl\npl.SparseCategoricalCrossentropy()([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])"
    assert _loaded_after(code) == set()


def test_probloss_keras_loads_keras_only_when_imported():
    # import probloss never imports probloss.keras (nor Keras); importing probloss.keras does
    code = "import probloss\nassert 'probloss.keras' not in sys.modules"
    assert _loaded_after(code) == set()
    assert "keras" in _loaded_after("import probloss.keras")


def test_the_check_can_fail():
    # the same probe sees torch when the caller imports it, so the test above can fail
    assert "torch" in _loaded_after("import torch\nimport probloss")


def test_public_api_is_complete():
    public = {n for n in dir(pl) if not n.startswith("_") and n not in {"functional", "losses"}}
    modules = {n for n in public if type(getattr(pl, n)).__name__ == "module"}
    assert public - modules <= set(pl.__all__)
    for name in pl.__all__:
        assert hasattr(pl, name), name
