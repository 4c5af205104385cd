"""``orthogonal``: the orthogonal group O(n).

``A^{-T} = A``, so plain and dual axes carry the same action and any two axes
may be paired: the spanning set is the Brauer diagrams (all perfect
matchings of the axes), independent for large enough ``n``. On four axes there are
three (identity, transpose, ``trace(A) I``), dependent at ``n = 1``:

>>> [Orthogonal().count((1, 1, -1, -1), n) for n in (1, 2, 3)]
[1, 3, 3]
"""

from __future__ import annotations

from qgen.kinds.base import Generator, PairingKind


class Orthogonal(PairingKind):
    name = "orthogonal"
    summary = "O(n); plain and dual axes transform alike"
    action = "matrix"
    sampler = "_sample_orthogonal"
    relax_class = "_RelaxOrthogonal"
    norm_invariant = True
    subgroups = frozenset({"signed", "perm"})
    self_dual = True

    # any two axes pair (A^-T = A): the default charge rule allows every pair

    def generators(self, n: int) -> list[Generator]:
        import torch

        gens = []
        for i in range(n):
            for j in range(i + 1, n):
                x = torch.zeros(n, n, dtype=torch.float64)
                x[i, j], x[j, i] = 1.0, -1.0
                gens.append(Generator(x, infinitesimal=True))
        reflection = torch.eye(n, dtype=torch.float64)
        reflection[0, 0] = -1.0
        return [*gens, Generator(reflection)]
