"""Declared choices for large fixed axes: ``fixed_axes:`` in a spec.

A fixed axis (a type with a size and no group) keeps its order, and every linear map
between its indices is equivariant: a block with ``m`` fixed axes of size ``n`` holds
``n ** m`` maps per term of the other types. For a vocabulary, token positions, image
pixels or a classifier's inputs and outputs that is most of a layer (1,229,312 of the
1,269,190 maps of a 784-32-32-10 MLP are ``W1 <- W1``). A spec says what to do with
such an axis, per type, in a top-level mapping::

    name: mnist
    arch: mlp
    widths: [784, 32, 32, 10]
    activation: gelu
    fixed_axes: {x: tied}      # x: the preset's input type

Each choice rewrites the type (or the tensors) in the spec stage, so every later stage
sees a plain spec, and ``qgen expand`` prints the result:

``dense`` (the default)
    the axis keeps its order and is not acted on; every map between its indices
    (``n ** m`` per term). Symmetry kept: the declared group, and nothing on the axis.
``set``
    the axis becomes a ``perm`` type of the same size: permuting its indices is declared
    a symmetry of the networks (``act`` permutes it, augmentation draws permutations).
    Maps: the partition diagrams, Bell(m) per term at ``n >= m``. For axes that really
    are sets (NFN's NP setting, where inputs and outputs are permuted too).
``tied``
    the axis becomes a ``tied`` type (:mod:`qgen.kinds.tied`): it keeps its order in the
    data and the group acts on it by the identity, while the layer's maps on it are
    shared across its indices (those commuting with permutations of the axis). Same
    count as ``set``; symmetry kept: the declared group, with parameter sharing over the
    axis as a property of the layer, not a claimed symmetry of the networks.
``drop``
    every tensor with an axis of the type is left out of the weight space (an embedding
    table, a classifier head the metanetwork should not read); the type goes with them.
    Maps: those of the remaining tensors; symmetry: the declared group restricted to
    them. The layer neither reads nor writes the dropped tensors.

Only plain fixed types (no group, no escnn representation, not a grid's axis) take a
choice. The counts of every choice for a spec are
:func:`qgen.solver.cost.fixed_axis_options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from qgen.decls import FIXED, Spec, TypeDecl

__all__ = ["CHOICES", "apply_fixed_axes", "choice_problem", "choosable"]

#: the choices for a fixed axis, with what each keeps (for messages and help)
CHOICES: dict[str, str] = {
    "dense": "every map between its indices (no symmetry on it)",
    "set": "a perm type: permuting it is a symmetry of the networks",
    "tied": "maps shared across its indices; the group does not move it",
    "drop": "tensors with this axis left out of the weight space",
}


def choosable(decl: TypeDecl) -> bool:
    """Whether ``decl`` is a plain fixed axis (what ``fixed_axes:`` may name)."""
    return decl.kind == FIXED and decl.rep is None and decl.tie is None


def choice_problem(spec: Spec, name: object, choice: object) -> str | None:
    """Why ``name: choice`` is not a valid entry of ``fixed_axes:`` for ``spec``, or None."""
    if not isinstance(name, str) or name not in spec.types:
        return f"{name!r} is not a declared type"
    decl = spec.types[name]
    tied_by = [d.name for d in spec.types.values() if d.tie and name in d.tie]
    if not choosable(decl) or tied_by:
        what = f"an axis of grid {tied_by[0]!r}" if tied_by else f"a {decl.kind} type"
        return f"{name} is {what}; only plain fixed types (a size, no group) take a choice"
    if choice not in CHOICES:
        return f"{name}: unknown choice {choice!r}; choose one of: {', '.join(CHOICES)}"
    return None


def apply_fixed_axes(spec: Spec, choices: Mapping[str, str]) -> Spec:
    """``spec`` with each named fixed type treated as its choice says (see the module
    docstring); raises ``ValueError`` with a one-line message for a bad entry."""
    for name, choice in choices.items():
        if problem := choice_problem(spec, name, choice):
            raise ValueError(f"fixed_axes: {problem}")
    types = dict(spec.types)
    tensors = spec.tensors
    for name, choice in choices.items():
        decl = types[name]
        if choice == "set":
            types[name] = replace(decl, kind="perm")
        elif choice == "tied":
            types[name] = replace(decl, kind="tied")
        elif choice == "drop":
            tensors = tuple(t for t in tensors if all(a.type != name for a in t.axes))
            del types[name]
    if not tensors:
        dropped = ", ".join(n for n, c in choices.items() if c == "drop")
        raise ValueError(f"fixed_axes: dropping {dropped} leaves no tensor in the weight space")
    used = {a.type for t in tensors for a in t.axes}
    used |= {types[u].within for u in used if types[u].within}
    # types only the dropped tensors used go too (an orphan type is no axis of anything)
    grids = {t for d in types.values() if d.tie for t in d.tie}
    orphans = [n for n in _dropped_types(spec, tensors) if n in types and n not in used | grids]
    for n in orphans:
        del types[n]
    return replace(spec, types=types, tensors=tensors)


def _dropped_types(spec: Spec, kept: tuple) -> set[str]:
    """Types that some tensor of ``spec`` used and no kept tensor uses."""
    before = {a.type for t in spec.tensors for a in t.axes}
    after = {a.type for t in kept for a in t.axes}
    return before - after
