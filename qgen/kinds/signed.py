"""``signed``: signed permutations {+-1}^n x| S_n (tanh and sine networks).

A term's orbit element picks up ``prod_parts s_i ** |part|`` under sign flips
``s``, so a partition is allowed when every part has even size. A block with
an odd number of axes of the type has no map.
"""

from __future__ import annotations

from qgen.kinds.base import Generator, PartitionKind


class Signed(PartitionKind):
    name = "signed"
    summary = "signed permutations: S_n with a sign flip per index (tanh, sin)"
    action = "monomial"
    sampler = "_sample_signed"
    pointwise = "odd"
    entry_factor = "sign"
    norm_invariant = True
    subgroups = frozenset({"perm"})
    self_dual = True
    nonlinear_head = True

    #: a part has an even number of axes
    charge_modulus = 2

    def charge(self, variance: int) -> int:
        return 1

    def generators(self, n: int) -> list[Generator]:
        import torch

        flip = torch.eye(n, dtype=torch.float64)
        flip[0, 0] = -1.0
        return [*self.permutation_generators(n), Generator(flip)]
