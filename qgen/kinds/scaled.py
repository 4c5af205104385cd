"""``scaled``: permutations with a positive scale per index, (R_{>0})^n x| S_n.

ReLU and other positively homogeneous activations:
``W_i -> (D_i P_i) W_i (D_{i-1} P_{i-1})^{-1}``. An orbit element scales by
``prod_parts q_i ** (sum of the part's variances)``, so a partition is allowed
when every part balances: its variances sum to zero.
"""

from __future__ import annotations

from qgen.kinds.base import Generator, PartitionKind


class Scaled(PartitionKind):
    name = "scaled"
    summary = "permutations with a positive scale per index (ReLU); dual axes scale by 1/q"
    action = "monomial"
    sampler = "_sample_scaled"
    relax_class = "_RelaxScaled"
    continuous = True
    pointwise = "homogeneous"
    entry_factor = "positive"
    subgroups = frozenset({"perm"})
    nonlinear_head = True

    #: a part balances: its variances sum to zero (in the integers)
    charge_modulus = 0

    def charge(self, variance: int) -> int:
        return variance

    def generators(self, n: int) -> list[Generator]:
        import torch

        gens = self.permutation_generators(n)
        for i in range(n):
            x = torch.zeros(n, n, dtype=torch.float64)
            x[i, i] = 1.0
            gens.append(Generator(x, infinitesimal=True))
        return gens
