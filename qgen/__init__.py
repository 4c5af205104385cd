"""qgen: exact equivariant (and quasi-equivariant) layers for weight spaces.

Typical use::

    from qgen import load_spec, solve
    basis = solve(load_spec("examples/mlp_relu.yaml"))
    basis.counts()                       # generic counts, block by block
    basis.blocks["W2", "W1"].count({"h1": 1})
    layers = qgen.compile("examples/mlp_relu.yaml")   # generated module, in memory
    layer = layers.EquivariantLayer(1, 16)
"""

from qgen.errors import QgenError, SpecError
from qgen.solver.basis import Block, WeightSpaceBasis, solve
from qgen.spec import Axis, Spec, TensorDecl, TypeDecl, load_spec, parse_spec
from qgen.version import __version__


def compile(spec, budget=None):  # noqa: A001 - the documented name of the in-memory build
    """The generated layer module for ``spec`` (a Spec or a path), built in memory.

    Refused (:class:`qgen.solver.cost.BudgetError`, with the cost and the options) when the
    layer needs more than ``budget`` parameters per channel pair (default 2,000,000,
    :data:`qgen.solver.cost.DEFAULT_BUDGET`; ``float("inf")`` for no limit)."""
    from qgen.codegen.output import compile_spec

    return compile_spec(spec, budget)


def __getattr__(name):  # torch-dependent parts load on first use: counting stays fast
    if name == "WeightSpace":
        from qgen.data.adapters import WeightSpace

        return WeightSpace
    raise AttributeError(f"module 'qgen' has no attribute {name!r}")


def spec_from_module(
    model, name="model", io="fixed", example_input=None, fixed_axes="auto", budget=None
):
    """The spec of a torch model's weight space (captured with ``torch.export`` on
    ``example_input``; see :mod:`qgen.frommodel`). Over the build budget, large fixed
    axes are declared ``tied`` (``fixed_axes="auto"``; ``"none"``: every axis dense; or
    a mapping ``{type: choice}``), written into the spec's text with their counts."""
    from qgen.frommodel.reader import spec_from_module as _from_module

    return _from_module(model, name, io, example_input, fixed_axes, budget)


def build(spec, out_dir="generated", tests=False, budget=None):
    """Write the generated module (and its tests) for ``spec`` into ``out_dir`` (refused
    over ``budget`` parameters per channel pair, as :func:`compile`)."""
    from qgen.codegen.output import build as _build

    return _build(spec, out_dir, tests, budget)


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
    "WeightSpace",
    "build",
    "compile",
    "spec_from_module",
    "load_spec",
    "parse_spec",
    "solve",
]
