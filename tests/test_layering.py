"""The package tree is the pipeline: a stage imports only the stages below it.

spec -> kinds -> basis -> plan -> program -> emitted module, as packages:
``qgen.kinds`` (group kinds) -> ``qgen.spec`` (parsing, presets) -> ``qgen.solver`` (the
basis) -> ``qgen.codegen`` (plan, IR, passes, emitter, templates) -> ``qgen.data`` ->
``qgen.frommodel`` -> ``qgen.cli``; ``qgen.runtime`` is copied into generated modules and
sits at the bottom, importing nothing of qgen.
"""

from __future__ import annotations

import ast
from pathlib import Path

#: the stages, bottom first: a module imports qgen modules of lower stages (and of its own
#: package) only, at import time or inside functions; the top-level ``qgen`` (the public
#: API) and ``qgen.__main__`` stand above them all
LAYERS = (
    ("qgen.runtime",),
    ("qgen.errors", "qgen.registry", "qgen.decls", "qgen.version"),
    ("qgen.kinds",),
    ("qgen.spec",),
    ("qgen.solver",),
    ("qgen.codegen",),
    ("qgen.data",),
    ("qgen.frommodel",),
    ("qgen.cli",),
)
TOP = ("qgen", "qgen.__main__")
ROOT = Path(__file__).resolve().parent.parent


def _layer(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return None


def _imports(tree: ast.AST, root: Path) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "qgen" and not node.level:
            # ``from qgen import kinds`` imports the subpackage qgen.kinds, ``from qgen
            # import compile`` the public API
            for a in node.names:
                sub = root / "qgen" / a.name
                found.append(
                    f"qgen.{a.name}" if sub.is_dir() or sub.with_suffix(".py").is_file() else "qgen"
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


def layer_violations(root: Path) -> tuple[list[str], int]:
    """Every import under ``root/qgen`` that runs back up the stages, and the modules read."""
    problems, checked = [], 0
    for path in sorted((root / "qgen").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mine = _layer(module)
        if mine is None:
            if module not in TOP:
                problems.append(f"{module} belongs to no stage: add its package to LAYERS")
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for target in _imports(ast.parse(path.read_text()), root):
            own = target == package or target.startswith(package + ".")
            if target == "qgen" and module != "qgen":
                problems.append(f"{module} imports the top-level qgen (the public API)")
            elif target.startswith("qgen.") and not own:
                theirs = _layer(target)
                if theirs is None or theirs >= mine:
                    problems.append(f"{module} (stage {mine}) imports {target} (stage {theirs})")
        checked += 1
    return problems, checked


def test_no_import_runs_back_up_the_pipeline():
    problems, checked = layer_violations(ROOT)
    assert not problems, "\n".join(problems)
    assert checked >= 60


def test_the_check_catches_an_import_running_back_up(tmp_path):
    """A kind importing code generation, the runtime importing the solver, a module outside
    every stage and a stage importing the public API are each reported."""
    files = {
        "qgen/__init__.py": "from qgen.codegen.output import build\n",
        "qgen/kinds/__init__.py": "",
        "qgen/kinds/perm.py": "from qgen.decls import Axis\n",
        "qgen/kinds/bad.py": "def f():\n    from qgen.codegen.plan import plan_layer\n",
        "qgen/runtime/mixing.py": "import torch\nimport qgen.solver.basis\n",
        "qgen/stray.py": "",
        "qgen/solver/basis.py": "from qgen import __version__\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems, checked = layer_violations(tmp_path)
    assert checked == 5
    assert sorted(problems) == sorted(
        [
            "qgen.kinds.bad (stage 2) imports qgen.codegen.plan (stage 5)",
            "qgen.runtime.mixing (stage 0) imports qgen.solver.basis (stage 4)",
            "qgen.stray belongs to no stage: add its package to LAYERS",
            "qgen.solver.basis imports the top-level qgen (the public API)",
        ]
    )
