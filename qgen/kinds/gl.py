"""``gl``: the general linear group GL(n), by ``A`` on plain axes and ``A^{-T}`` on dual axes.

By the first fundamental theorem of invariant theory for GL(n), the
equivariant maps are spanned by pairings that match each variance +1 axis
with a variance -1 axis (a contraction or an identity between them). With
``k`` such pairs they are independent exactly when ``n >= k``. A matrix to a matrix
(``V (x) V* -> V (x) V*``) has the identity and ``trace(A) I``, dependent at ``n = 1``:

>>> [GL().count((1, -1, -1, 1), n) for n in (1, 2, 3)]
[1, 2, 2]
"""

from __future__ import annotations

from qgen.kinds.base import Generator, PairingKind


class GL(PairingKind):
    name = "gl"
    summary = "GL(n): A on plain axes, A^-T on dual axes (linear layers, attention heads)"
    action = "matrix"
    sampler = "_sample_gl"
    relax_class = "_RelaxGL"
    # GL mixes coordinates and rescales freely: no pointwise function, no invariant norm,
    # no centring (the defaults); gates read GL invariants (contractions of plain with dual)
    pointwise = None
    subgroups = frozenset({"orthogonal", "scaled", "signed", "perm"})

    #: a pair is a plain and a dual axis: the variances sum to zero
    charge_modulus = 0

    def charge(self, variance: int) -> int:
        return variance

    def generators(self, n: int) -> list[Generator]:
        import torch

        gens = []
        for i in range(n):
            for j in range(n):
                x = torch.zeros(n, n, dtype=torch.float64)
                x[i, j] = 1.0
                gens.append(Generator(x, infinitesimal=True))
        reflection = torch.eye(n, dtype=torch.float64)
        reflection[0, 0] = -1.0
        return [*gens, Generator(reflection)]
