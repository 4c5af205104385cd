"""Model import: the spec of a real torch model's weight space (``--from-model``).

Takes an ``nn.Module`` and an example input and gives a :class:`~qgen.decls.Spec` with
the largest symmetry group every operation of the exported graph commutes with, plus
where each tensor lives in the model's ``state_dict``. Operations it cannot follow are
refused in one line with the user's file and line, the operation, and what to do.

* :mod:`qgen.frommodel.reader`: the public entry points;
* :mod:`qgen.frommodel.capture`: ``torch.export`` on the example input;
* :mod:`qgen.frommodel.walk`: runs the graph abstractly, one rule per operation, from
  :mod:`~qgen.frommodel.registry`: :mod:`~qgen.frommodel.rules_shape` (move, cut and
  join axes), :mod:`~qgen.frommodel.rules_pointwise` (elementwise, reductions,
  softmax), :mod:`~qgen.frommodel.rules_linear` (linear, matmul, convolution,
  embedding, attention), :mod:`~qgen.frommodel.rules_norm` (normalisations, pooling);
* :mod:`qgen.frommodel.axes`: the index types of tensor axes (products, pending splits,
  sums) on :mod:`qgen.frommodel.typegraph`'s union-find;
* :mod:`qgen.frommodel.values`: the values the walk carries;
* :mod:`qgen.frommodel.assemble`: the spec and its state_dict sources;
* :mod:`qgen.frommodel.declare`: the ``fixed_axes:`` the spec declares (by default,
  large fixed axes ``tied`` when the layer is over the build budget, with the counts);
* :mod:`qgen.frommodel.messages`: refusals in the user's words.
"""

from qgen.frommodel.reader import (
    UnsupportedModel,
    model_from_factory,
    spec_from_module,
    weight_space_from_module,
)

__all__ = ["UnsupportedModel", "model_from_factory", "spec_from_module", "weight_space_from_module"]
