"""qgen: exact equivariant (and quasi-equivariant) layers for weight spaces.

Typical use::

    from qgen import load_spec, solve
    basis = solve(load_spec("examples/mlp_relu.yaml"))
    basis.counts()                       # generic counts, block by block
    basis.blocks["W2", "W1"].count({"h1": 1})
"""

from qgen.basis import Block, WeightSpaceBasis, solve
from qgen.errors import QgenError, SpecError
from qgen.spec import Axis, Spec, TensorDecl, TypeDecl, load_spec, parse_spec

__version__ = "0.1.0"

__all__ = [
    "Axis",
    "Block",
    "QgenError",
    "Spec",
    "SpecError",
    "TensorDecl",
    "TypeDecl",
    "WeightSpaceBasis",
    "__version__",
    "load_spec",
    "parse_spec",
    "solve",
]
