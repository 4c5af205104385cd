"""The committed ``generated/`` files are exactly what this checkout renders.

Byte for byte: code generation is deterministic, so any change to the templates, the
runtime or the planner that changes generated code shows up here, and a refactor that
must not change it (a package moved, a pass rewritten) is checked to be one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qgen import load_spec
from qgen.codegen import render

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    (ROOT / "examples" / "presets").glob("*.yaml")
)


def _by_name() -> dict[str, Path]:
    return {load_spec(p).name: p for p in SPECS}


def test_every_generated_module_has_its_spec():
    names = {p.stem for p in (ROOT / "generated").glob("*.py") if not p.stem.startswith("test_")}
    assert names and names <= set(_by_name())


@pytest.mark.parametrize("name", sorted(_by_name()))
def test_generated_files_are_current(name):
    spec = load_spec(_by_name()[name])
    rendered = render(spec)
    module = ROOT / "generated" / f"{name}.py"
    tests = ROOT / "generated" / f"test_{name}.py"
    hint = f"regenerate with: python -m qgen build {_by_name()[name].relative_to(ROOT)} --tests"
    assert module.read_text() == rendered.module, hint
    assert tests.read_text() == rendered.tests, hint
