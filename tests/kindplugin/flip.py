"""A group kind in one module outside qgen: the solver's view (a ``PartitionKind``), the
sampler generated code copies (a plain torch function here, named by ``runtime``), and
the registration. Mathematically it is ``signed`` again (signed permutations), so its
counts and layers can be checked against the built-in kind."""

from __future__ import annotations

import torch

from qgen.kinds import register
from qgen.kinds.signed import Signed

Monomial = tuple[torch.Tensor, torch.Tensor]


class Flip(Signed):
    name = "flip"
    summary = "signed permutations, defined by a plugin module"
    sampler = "_sample_flip"
    runtime = ("kindplugin.flip",)
    subgroups = None  # not offered to the model reader's lattice


def _sample_flip(n: int, generator: torch.Generator | None) -> Monomial:
    """A uniformly random signed permutation (the plugin's own sampler)."""
    signs = torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1
    return torch.randperm(n, generator=generator), signs


KIND = Flip()


def install() -> None:
    """Register the kind (once)."""
    from qgen.kinds import kind_names

    if KIND.name not in kind_names():
        register(KIND)
