"""Writing generated modules to disk (atomically) and compiling them in memory."""

from __future__ import annotations

import linecache
import os
import tempfile
import types
from pathlib import Path

from qgen.codegen.rendering import render, render_module
from qgen.solver.cost import check_budget
from qgen.spec import Spec, load_spec

__all__ = ["build", "compile_spec"]


def _as_spec(spec: Spec | str | os.PathLike) -> Spec:
    return spec if isinstance(spec, Spec) else load_spec(spec)


def build(
    spec: Spec | str | os.PathLike,
    out_dir: str | os.PathLike = "generated",
    tests: bool = False,
    budget: int | float | None = None,
) -> list[Path]:
    """Write ``<name>.py`` (and ``test_<name>.py`` with ``tests``) into ``out_dir``.

    A layer over ``budget`` parameters per channel pair (default
    :data:`qgen.solver.cost.DEFAULT_BUDGET`) is refused first (:class:`BudgetError`: the
    cost and the options), and nothing is written.

    Everything is rendered before anything is written, and each file is written to a
    temporary file in ``out_dir`` then renamed over the target, so a failure leaves no
    partial file and an existing file is only ever replaced by a complete new one.
    """
    spec = _as_spec(spec)
    check_budget(spec, budget)
    rendered = render(spec)  # everything is rendered (and refused) before anything is written
    files = {f"{spec.name}.py": rendered.module}
    if tests:
        files[f"test_{spec.name}.py"] = rendered.tests
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name, text in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
            staged.append((tmp, out / name))
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [target for _, target in staged]


def compile_spec(
    spec: Spec | str | os.PathLike, budget: int | float | None = None
) -> types.ModuleType:
    """The generated module for ``spec``, built in memory (no file is written); refused
    over ``budget`` parameters per channel pair as :func:`build` refuses it.

    The source is registered with :mod:`linecache` so tracebacks show the generated code.
    """
    spec = _as_spec(spec)
    check_budget(spec, budget)
    source = render_module(spec)
    filename = f"<qgen:{spec.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(spec.name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own output
    module.__source__ = source
    return module
