"""Model import: the spec of a real torch model's weight space (``--from-model``).

Takes an ``nn.Module`` (and an example input) and gives a :class:`~qgen.decls.Spec` with
the largest symmetry group every operation of the traced graph commutes with, plus where
each tensor lives in the model's ``state_dict``. Operations it cannot follow are refused
with the user's file and line, the operation, and what to do.

* :mod:`qgen.frommodel.reader`: tracing and the per-operation rules;
* :mod:`qgen.frommodel.typegraph`: the union-find of index types the rules build;
* :mod:`qgen.frommodel.fx_shapes`: tensor ranks from running the graph on a small input;
* :mod:`qgen.frommodel.hf`: Hugging Face ``transformers`` models.
"""

from qgen.frommodel.reader import (
    UnsupportedModel,
    model_from_factory,
    spec_from_module,
    weight_space_from_module,
)

__all__ = ["UnsupportedModel", "model_from_factory", "spec_from_module", "weight_space_from_module"]
