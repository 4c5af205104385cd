"""Stage 3 of the pipeline: a standalone PyTorch module from a solved basis.

Takes a :class:`~qgen.decls.Spec` and gives Python source (a module and its tests) that
imports torch alone. The data flows one way:

* :mod:`qgen.codegen.plan`: basis terms -> a layer plan (groups of terms computed as
  reduce -> mix -> place, never as dense matrices);
* :mod:`qgen.codegen.program`: the plan lowered to a small frozen IR;
* :mod:`qgen.codegen.passes`: ``Program -> Program`` rewrites that keep the function;
* :mod:`qgen.codegen.emit`: the program as straight-line Python;
* :mod:`qgen.codegen.commutant`: fixed-axis symmetries (escnn) baked in as exact bases;
* :mod:`qgen.codegen.blocks`: build-time tables of the metanetwork building blocks;
* :mod:`qgen.codegen.rendering`: the jinja2 templates (``templates/``) filled in, with the
  runtime (:mod:`qgen.runtime`) copied in and the layout by ``ruff format``;
* :mod:`qgen.codegen.pytext`: the only way names from a spec reach generated text;
* :mod:`qgen.codegen.output`: writing the files atomically, or compiling in memory.
"""

from qgen.codegen.output import build, compile_spec
from qgen.codegen.rendering import Rendered, render, render_module, render_tests

__all__ = ["Rendered", "build", "compile_spec", "render", "render_module", "render_tests"]
