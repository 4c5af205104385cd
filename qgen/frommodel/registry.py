"""The table of operation rules: aten operation name -> the rule that reads it.

Each rule module (:mod:`~qgen.frommodel.rules_shape`, :mod:`~qgen.frommodel.rules_pointwise`,
:mod:`~qgen.frommodel.rules_linear`, :mod:`~qgen.frommodel.rules_norm`) registers its
rules here with :func:`rule`; a rule takes the walk, the node and the node's arguments
bound by name (``{"input": TV, "weight": TV, "bias": None}``) and gives the value of the
node, restricting and tying index types on the way.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["RULES", "rule"]

RULES: dict[str, Callable] = {}


def rule(*names: str):
    """Register the decorated function as the rule of the aten operations ``names``."""

    def register(fn):
        for n in names:
            RULES[n] = fn
        return fn

    return register
