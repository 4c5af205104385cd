"""Stage 1 of the pipeline: a weight space as data.

Takes a YAML spec (a file, a string, or ``arch:`` with a preset's options) and gives a
validated :class:`~qgen.decls.Spec`: index types (each with a group kind from
:mod:`qgen.kinds`, a size where the axis is fixed) and the tensors whose axes they index.

* :mod:`qgen.spec.parse`: the spec format (v1), safe YAML loading, validation with the
  file, the place and what to fix in every error;
* :mod:`qgen.spec.presets`: architectures (``mlp``, ``cnn``, ``resnet``, ``transformer``)
  expanded into explicit types and tensors.

The plain data classes themselves live in :mod:`qgen.decls` (below the group kinds, which
read them) and are re-exported here.
"""

from qgen.spec.parse import (
    FIXED,
    Axis,
    Spec,
    TensorDecl,
    TypeDecl,
    dump_spec,
    identifier_problem,
    load_spec,
    nesting_problem,
    parse_spec,
)

__all__ = [
    "FIXED",
    "Axis",
    "Spec",
    "TensorDecl",
    "TypeDecl",
    "dump_spec",
    "identifier_problem",
    "load_spec",
    "nesting_problem",
    "parse_spec",
]
