"""Stage 2 of the pipeline: the exact basis of equivariant linear maps.

Takes a :class:`~qgen.decls.Spec` and gives a :class:`~qgen.solver.basis.WeightSpaceBasis`:
for every ordered pair of tensors a block ``Hom_G(V_t, V_s)`` as a list of basis terms
(per index type, a set partition or pairing of the block's axes that the type's kind
allows), with exact dimension counts at every size.

* :mod:`qgen.solver.basis`: the enumeration (:func:`~qgen.solver.basis.solve`);
* :mod:`qgen.solver.numeric`: an independent solver (the nullspace of generator
  constraints at concrete sizes);
* :mod:`qgen.solver.verify`: the two cross-checked, with the rank of the enumerated span;
* :mod:`qgen.solver.explain`: basis terms in readable index notation.
"""

from qgen.solver.basis import Block, WeightSpaceBasis, solve

__all__ = ["Block", "WeightSpaceBasis", "solve"]
