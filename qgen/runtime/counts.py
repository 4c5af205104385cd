"""What a generated layer computes per block, derived from its term groups (torch-free).

A group of terms pairs every plain fixed position of its inputs with every one of its
outputs, so block ``(s, t)`` gets ``outs[s] * ins[t]`` maps from each group, times the
dimension of the commutant on the block's escnn axes (an escnn group acts on both tensors
with one element, so its factor depends on how many axes of its type the two tensors have
together). The generated module's ``BLOCK_COUNTS`` is this sum; the build checked it
against the solver block by block. Generated modules copy what they use.
"""

from __future__ import annotations


def _commutant_dim(
    s: str, t: str, dims: dict[str, tuple[int, ...]], axes: dict[str, dict[str, int]]
) -> int:
    """Maps of one term of block ``(s, t)`` on its escnn axes: the product over escnn types
    of the commutant's dimension on the block's axes of that type (``dims[type][m]`` for
    ``m`` axes; ``axes[tensor][type]``: how many axes of the type a tensor has)."""
    dim = 1
    for type_, by_axes in dims.items():
        dim *= by_axes[axes[s].get(type_, 0) + axes[t].get(type_, 0)]
    return dim


def _block_counts(
    tensors: dict[str, tuple[str, ...]],
    term_groups: tuple[tuple[dict[str, int], dict[str, int]], ...],
    factor=None,
) -> dict[tuple[str, str], int]:
    """``{(s, t): maps}``: over the term groups ``(ins, outs)`` (fixed positions per
    tensor), ``outs[s] * ins[t]`` times ``factor(s, t) -> int``, the commutant on the
    block's escnn axes (no escnn types: None, a factor of 1)."""
    counts = {(s, t): 0 for s in tensors for t in tensors}
    for ins, outs in term_groups:
        for s, width_out in outs.items():
            for t, width_in in ins.items():
                counts[s, t] += width_out * width_in * (factor(s, t) if factor else 1)
    return counts
