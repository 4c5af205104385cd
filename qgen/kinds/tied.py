"""``tied``: a fixed axis whose maps are shared across its indices, with no symmetry claimed.

For large fixed axes (a vocabulary, token positions, image pixels, a classifier's inputs
and outputs) a dense map between every pair of indices costs ``size ** axes`` maps per
block: 1,229,312 for the first layer of a 784-input MLP alone. A ``tied`` axis keeps its
order in the data, and the weight-space group acts on it by the identity (generated
``sample_group_element`` draws the identity there, so ``act`` and data augmentation
never move its indices); but the layer's maps on it are restricted to those that commute
with every permutation of its indices: the partition diagrams of ``perm`` (identity,
diagonals, pooling, broadcast), so a block with ``m`` axes of the type has the ``perm``
count, Bell(m) at sizes ``n >= m``. Precisely, the layers span

    Hom_{G x S_n}(V_in, V_out)   with S_n permuting the tied axis and G, the declared
                                 group, acting on it trivially,

which is a subspace of ``Hom_G`` (the dense ``fixed`` axis) and equal to what declaring
the axis ``perm`` gives; the difference from ``perm`` is what is claimed: ``perm`` says
permuting the axis is a symmetry of the networks (``act`` permutes it), ``tied`` only
shares parameters across its indices. A tied layer is equivariant to G and, as a
property of its parameter sharing, also commutes with permutations of the tied axis; it
cannot tell two indices apart except through the data it reads. Counting and ``qgen
verify`` use the permutations as the constraints the maps satisfy (:meth:`Tied.generators`).

>>> Tied().count((1, -1), 784), Tied().count((1, -1, 1, -1), None)
(2, 15)
"""

from __future__ import annotations

from qgen.decls import TypeDecl
from qgen.kinds.base import DeclEntry, Generator, PartitionKind, Variances

__all__ = ["Tied"]


class Tied(PartitionKind):
    name = "tied"
    summary = (
        "a fixed axis whose maps are shared across its indices (permutation-equivariant "
        "maps; the group acts on it by the identity); needs a size"
    )
    action = "monomial"
    #: the identity: the weight-space group does not move a tied axis
    sampler = "_sample_identity"
    pointwise = "any"
    norm_invariant = True
    may_centre = True
    self_dual = True
    nonlinear_head = True

    def allows(self, part_variances: Variances) -> bool:
        return True

    def generators(self, n: int) -> list[Generator]:
        # not elements of the weight-space group: the constraints the layer's maps obey
        return self.permutation_generators(n)

    def parse_decl(self, entry: DeclEntry) -> TypeDecl:
        size = entry.size()
        if size is None:
            entry.fail("a tied type keeps its order in the data and needs a size, e.g. {size: 784}")
        return TypeDecl(entry.name, self.name, size)
