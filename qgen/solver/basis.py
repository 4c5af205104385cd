"""The exact solver: basis terms and dimension counts of equivariant linear maps.

An equivariant affine map of a weight space ``V = (+)_t V_t`` is

* a block ``Hom_G(V_t, V_s)`` for every ordered pair of tensors (output ``s``,
  input ``t``),
* an equivariant bias ``Hom_G(R, V_s)`` per tensor (the empty input side), and
* invariant functionals ``Hom_G(V_t, R)`` per tensor (the empty output side).

``G`` is the direct product of the types' groups and each acts on its own
axes, so ``Hom_G`` of a block is the tensor product over types of the
per-type commutants: its basis is the product of the per-type terms that the
type's :class:`~qgen.kinds.GroupKind` enumerates, and its dimension the
product of the per-type counts. Fixed axes contribute a dense factor.

Every count here is the length of (a size-filtered view of) the same term
enumeration that layers are built from.

Known counts. An MLP with widths [2, 3, 4, 3, 2] whose input and output neurons keep
their order (examples/mlp_relu.yaml): with permutations of the hidden neurons, the
symmetry of DWSNets (Navon et al. 2023, "Equivariant architectures for learning in
deep weight spaces") and of NFN's HNP layers (Zhou et al. 2023, "Permutation
equivariant neural functionals"), 164 equivariant linear maps; with positive scalings
too (ReLU) 21, with sign flips (tanh) 25:

>>> from qgen.spec import parse_spec
>>> def maps(group, io="fixed", widths=(2, 3, 4, 3, 2)):
...     text = f"{{name: m, arch: mlp, widths: {list(widths)}, group: {group}, io: {io}}}"
...     return solve(parse_spec(text)).counts()["total"]["equivariant"]
>>> maps("perm"), maps("scaled"), maps("signed")
(164, 21, 25)

With the input and output neurons permuted too (NFN's NP setting), each of the ``L``
layers' types distinct: every ordered pair of the ``2L`` tensors has one map (a constant
broadcast of a pooled input), and the pairs that share a type have more, ``10L - 4`` in
all, so ``4L^2 + 10L - 4``:

>>> [maps("perm", "perm", range(2, L + 3)) for L in range(1, 6)]
[10, 32, 62, 100, 146]
>>> [4 * L**2 + 10 * L - 4 for L in range(1, 6)]
[10, 32, 62, 100, 146]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

from qgen.decls import Spec, TensorDecl
from qgen.kinds import GroupKind, get_kind
from qgen.kinds.partitions import Partition, TooLarge

__all__ = [
    "Block",
    "BlockAxis",
    "NestedFactor",
    "MAX_BLOCK_TERMS",
    "Term",
    "TypeFactor",
    "WeightSpaceBasis",
    "solve",
]

OUT, IN = "out", "in"
#: the most generic basis terms one block may have in a build (each term is code and a
#: parameter per channel pair); a spec past it is refused with the block and its count
MAX_BLOCK_TERMS = 50_000


@dataclass(frozen=True)
class BlockAxis:
    """An axis of a block: which side, which axis of that side's tensor."""

    side: str  # "out" or "in"
    tensor: str
    position: int
    type: str
    dual: bool

    @property
    def variance(self) -> int:
        """+1 for output plain and input dual axes, -1 for the other two."""
        plain = 1 if not self.dual else -1
        return plain if self.side == OUT else -plain


@dataclass(frozen=True)
class TypeFactor:
    """The axes of one type in a block, and the kind that acts on them."""

    type: str
    kind: GroupKind
    axes: tuple[BlockAxis, ...]
    default_size: int | None = None  # the declared size of a fixed type

    @property
    def variances(self) -> tuple[int, ...]:
        return tuple(a.variance for a in self.axes)

    @property
    def terms(self) -> tuple[Partition, ...]:
        """The kind's terms, over positions into :attr:`axes`."""
        return self.kind.terms(self.variances)

    def count(self, sizes: Mapping[str, int]) -> int:
        """Exact dimension at ``sizes`` (this type absent: generic)."""
        return self.kind.count(self.variances, sizes.get(self.type) or self.default_size)

    def thresholds(self) -> dict[str, int]:
        return {self.type: self.kind.threshold(self.variances)}


@dataclass(frozen=True)
class GridFactor(TypeFactor):
    """A grid type on a block: its axes are pairs (first grid axis, second grid axis) of
    one tensor, listed pair by pair; the group acts on each pair jointly."""

    @property
    def variances(self) -> tuple[int, ...]:
        return tuple(a.variance for a in self.axes[::2])

    @property
    def pairs(self) -> tuple[tuple[BlockAxis, BlockAxis], ...]:
        return tuple(zip(self.axes[::2], self.axes[1::2], strict=True))


@dataclass(frozen=True)
class NestedFactor:
    """An outer type and the types nested in it (the wreath product), on one block.

    Each nested axis belongs to the outer axis of its own tensor (``owner``). A term is
    a partition of the outer axes (the outer kind's rule) and, for every part and every
    nested type, a term of the nested kind on the nested axes owned by that part: axes
    in different parts see independent group elements. At outer size ``H`` only outer
    partitions with at most ``H`` parts count; the nested counts are exact at theirs.
    """

    type: str
    kind: GroupKind
    axes: tuple[BlockAxis, ...]  # outer axes first, then nested axes
    owner: tuple[int, ...]  # per axis: the position (in axes) of its outer axis
    nested: tuple[tuple[str, GroupKind], ...]

    @property
    def outer(self) -> tuple[int, ...]:
        return tuple(i for i, a in enumerate(self.axes) if a.type == self.type)

    def _pieces(self, partition: Partition) -> list[tuple[str, GroupKind, tuple[int, ...]]]:
        """Per (outer part, nested type): the nested axes owned by that part."""
        outer = self.outer
        pieces = []
        for part in partition:
            owners = {outer[i] for i in part}
            for name, kind in self.nested:
                axes = tuple(
                    i for i, a in enumerate(self.axes) if a.type == name and self.owner[i] in owners
                )
                if axes:
                    pieces.append((name, kind, axes))
        return pieces

    def _variances(self, axes: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.axes[i].variance for i in axes)

    @property
    def terms(self) -> tuple[Partition, ...]:
        outer = self.outer
        out_vars = self._variances(outer)
        result = []
        for partition in self.kind.terms(out_vars):
            outer_parts = [tuple(outer[i] for i in part) for part in partition]
            pieces = self._pieces(partition)
            choices = [kind.terms(self._variances(axes)) for _, kind, axes in pieces]
            for choice in itertools.product(*choices):
                parts = list(outer_parts)
                for (_, _, axes), nested_partition in zip(pieces, choice, strict=True):
                    parts += [tuple(axes[i] for i in p) for p in nested_partition]
                result.append(tuple(sorted(tuple(sorted(p)) for p in parts)))
        return tuple(result)

    def count(self, sizes: Mapping[str, int]) -> int:
        n = sizes.get(self.type)
        total = 0
        for partition in self.kind.terms(self._variances(self.outer)):
            if n is not None and len(partition) > n:
                continue
            total += math.prod(
                kind.count(self._variances(axes), sizes.get(name))
                for name, kind, axes in self._pieces(partition)
            )
        return total

    def thresholds(self) -> dict[str, int]:
        out = {self.type: 1, **{name: 1 for name, _ in self.nested}}
        for partition in self.kind.terms(self._variances(self.outer)):
            pieces = self._pieces(partition)
            if not all(kind.terms(self._variances(axes)) for _, kind, axes in pieces):
                continue
            out[self.type] = max(out[self.type], len(partition))
            for name, kind, axes in pieces:
                out[name] = max(out[name], kind.threshold(self._variances(axes)))
        return out


@dataclass(frozen=True)
class Term:
    """One basis term of a block: a partition of its axes for every group type.

    Fixed types are not listed: a term is a dense map over all fixed axes,
    so it stands for ``prod(fixed sizes)`` basis elements.
    """

    block: Block
    parts: tuple[tuple[TypeFactor | NestedFactor, Partition], ...]

    def diagram(self) -> tuple[tuple[str, tuple[BlockAxis, ...]], ...]:
        """The term's parts as (type, axes) pairs, in type order."""
        return tuple(
            (factor.axes[part[0]].type, tuple(factor.axes[i] for i in part))
            for factor, partition in self.parts
            for part in partition
        )


@dataclass(frozen=True)
class Block:
    """``Hom_G(V_in, V_out)``; ``in_`` is None for the bias, ``out`` None for invariants."""

    spec: Spec
    out: TensorDecl | None
    in_: TensorDecl | None

    @property
    def label(self) -> str:
        out = self.out.name if self.out else "R"
        inp = self.in_.name if self.in_ else "R"
        return f"{out} <- {inp}"

    @cached_property
    def axes(self) -> tuple[BlockAxis, ...]:
        axes: list[BlockAxis] = []
        for side, tensor in ((OUT, self.out), (IN, self.in_)):
            if tensor is not None:
                axes += [
                    BlockAxis(side, tensor.name, i, a.type, a.dual)
                    for i, a in enumerate(tensor.axes)
                ]
        return tuple(axes)

    @cached_property
    def factors(self) -> tuple[TypeFactor | NestedFactor, ...]:
        """One factor per type present in the block, in the spec's type order; a type
        nested in another joins its outer type's :class:`NestedFactor`."""
        types = self.spec.types
        by_type: dict[str, list[BlockAxis]] = {}
        for a in self.axes:
            by_type.setdefault(a.type, []).append(a)
        factors: list[TypeFactor | NestedFactor] = []
        tied = {t for d in types.values() if d.tie for t in d.tie}
        for name, decl in types.items():
            if decl.tie is not None:
                pairs = _grid_pairs(self.axes, decl.tie)
                if pairs:
                    factors.append(GridFactor(name, _kind(decl), pairs, decl.size))
                continue
            if name not in by_type or decl.within is not None or name in tied:
                continue
            nested = [(t, _kind(d)) for t, d in types.items() if d.within == name and t in by_type]
            kind = _kind(decl)
            if not nested:
                size = decl.size if kind.needs_size else None
                factors.append(TypeFactor(name, kind, tuple(by_type[name]), size))
                continue
            axes = tuple(by_type[name]) + tuple(a for t, _ in nested for a in by_type[t])
            owner = tuple(self.owner_of(a, axes) for a in axes)
            factors.append(NestedFactor(name, kind, axes, owner, tuple(nested)))
        return tuple(factors)

    def owner_of(self, axis: BlockAxis, axes: tuple[BlockAxis, ...]) -> int:
        """Position in ``axes`` of the outer axis that ``axis`` belongs to."""
        outer = self.spec.types[axis.type].within or axis.type
        return next(
            i
            for i, a in enumerate(axes)
            if a.type == outer and a.side == axis.side and a.tensor == axis.tensor
        )

    @property
    def group_factors(self) -> tuple[TypeFactor | NestedFactor, ...]:
        return tuple(f for f in self.factors if not f.kind.needs_size)

    @property
    def fixed_factors(self) -> tuple[TypeFactor, ...]:
        return tuple(f for f in self.factors if f.kind.needs_size)

    def count(self, sizes: Mapping[str, int] | None = None) -> int:
        """Dimension of the block at ``sizes`` (types not given: generic)."""
        sizes = sizes or {}
        return math.prod(f.count(sizes) for f in self.factors)

    @property
    def fixed_multiplicity(self) -> int:
        """Basis elements per term: the product of the fixed axes' sizes."""
        return math.prod(f.count({}) for f in self.fixed_factors)

    def generic_terms(self) -> int:
        """How many generic basis terms :meth:`terms` yields (none built)."""
        return math.prod(f.count({}) for f in self.group_factors)

    def terms(self) -> Iterator[Term]:
        """The generic basis terms: the product of the per-type terms.

        Their number (the product of the factors' generic counts, known without building
        them) is bounded by :data:`MAX_BLOCK_TERMS`, and each factor's table by
        :data:`qgen.kinds.base.MAX_TERMS`: past either, :class:`TooLarge` names the
        block and its size before any term is built."""
        factors = self.group_factors
        try:
            total = math.prod(f.count({}) for f in factors)
            if total > MAX_BLOCK_TERMS:
                raise TooLarge(
                    f"{total:,} basis terms, more than the {MAX_BLOCK_TERMS:,} a layer is "
                    "built with (fewer axes of one type per tensor, or split the type)"
                )
            tables = [f.terms for f in factors]
        except TooLarge as exc:
            raise TooLarge(f"block {self.label}: {exc}") from None
        for choice in itertools.product(*tables):
            yield Term(self, tuple(zip(factors, choice, strict=True)))

    def thresholds(self) -> dict[str, int]:
        """Per group type, the smallest size from which the generic count holds."""
        return {t: n for f in self.group_factors for t, n in f.thresholds().items()}

    def counts_below_threshold(self) -> dict[str, dict[int, int]]:
        """For each type with threshold > 1: the block's count at each smaller size."""
        out: dict[str, dict[int, int]] = {}
        for name, t in self.thresholds().items():
            if t > 1:
                out[name] = {n: self.count({name: n}) for n in range(1, t)}
        return out


@dataclass(frozen=True)
class WeightSpaceBasis:
    """All blocks of a spec's weight space."""

    spec: Spec

    @cached_property
    def blocks(self) -> Mapping[tuple[str, str], Block]:
        """``{(out, in): Block}`` for every ordered pair of tensors (built on first use)."""
        return _Blocks(self.spec)

    @cached_property
    def bias(self) -> dict[str, Block]:
        return {s.name: Block(self.spec, s, None) for s in self.spec.tensors}

    @cached_property
    def invariant(self) -> dict[str, Block]:
        return {t.name: Block(self.spec, None, t) for t in self.spec.tensors}

    def coupled(self, out: str, in_: str) -> bool:
        """Whether two tensors share a type with a group (nested types count as their outer).

        An uncoupled block is ``Hom_G(V_in, V_out) = V_out^G (x) (V_in^*)^G``: the group
        acts on the two sides through disjoint factors, so its terms are exactly the
        products of ``out``'s bias terms and ``in_``'s invariant terms, and its count
        their product at every size. Only coupled blocks need solving.
        """
        return not self._group_types[out].isdisjoint(self._group_types[in_])

    @cached_property
    def _group_types(self) -> dict[str, frozenset[str]]:
        types = self.spec.types
        grid = {t: d.name for d in types.values() if d.tie for t in d.tie}
        acting = {
            n: grid.get(n) or (d.within or n if not _kind(d).trivial_action else None)
            for n, d in types.items()
        }
        return {
            t.name: frozenset(acting[a.type] for a in t.axes if acting[a.type] is not None)
            for t in self.spec.tensors
        }

    @cached_property
    def coupled_pairs(self) -> tuple[tuple[str, str], ...]:
        """``(out, in)`` for every coupled block, in spec order (found through the types,
        so a long chain of layers costs its couplings, not all pairs of tensors)."""
        users: dict[str, list[int]] = {}
        for i, t in enumerate(self.spec.tensors):
            for type_ in self._group_types[t.name]:
                users.setdefault(type_, []).append(i)
        partners: dict[int, set[int]] = {}
        for members in users.values():
            for i in members:
                partners.setdefault(i, set()).update(members)
        names = [t.name for t in self.spec.tensors]
        pairs: list[tuple[str, str]] = []
        for i in sorted(partners):  # zip/repeat/map: no Python frame per pair
            pairs += zip(itertools.repeat(names[i]), map(names.__getitem__, sorted(partners[i])))
        return tuple(pairs)

    def coupled_blocks(self) -> Iterator[Block]:
        """The blocks of tensor pairs that share a group type, in spec order."""
        for pair in self.coupled_pairs:
            yield self.blocks[pair]

    def signatures(self, sizes: Mapping[str, int]) -> dict[str, tuple[tuple[str, ...], tuple]]:
        """Per tensor: its type names in order of appearance (outer before nested), and
        what a count depends on with those types renamed to their positions: per type
        its kind, outer position and size; per axis its type position and dual flag."""
        types = self.spec.types
        out = {}
        for tensor in self.spec.tensors:
            names: list[str] = []
            for a in tensor.axes:
                for name in (types[a.type].within, a.type):
                    if name is not None and name not in names:
                        names.append(name)
            rank = {n: i for i, n in enumerate(names)}
            described = tuple(
                (
                    types[n].kind,
                    rank[types[n].within] if types[n].within else None,
                    sizes.get(n) or (types[n].size if types[n].fixed else None),
                    types[n].rep,
                    next((d.rep for d in types.values() if d.tie and n in d.tie), None),
                )
                for n in names
            )
            axes = tuple((rank[a.type], a.dual) for a in tensor.axes)
            out[tensor.name] = (tuple(names), (described, axes))
        return out

    @staticmethod
    def shape_key(sig_out: tuple, sig_in: tuple) -> tuple:
        """What a block's count and thresholds depend on: both tensors' signatures and which
        of their types coincide. Blocks with equal keys are the same up to renaming (e.g.
        the same layer pattern in every transformer block), so they are solved once."""
        (out_names, out_sig), (in_names, in_sig) = sig_out, sig_in
        shared = tuple((i, in_names.index(n)) for i, n in enumerate(out_names) if n in in_names)
        return out_sig, in_sig, shared

    @staticmethod
    def pair_names(sig_out: tuple, sig_in: tuple) -> tuple[str, ...]:
        """The type names of a block (outer before nested, in order of first appearance),
        in the order :meth:`shape_key` numbers them; ``sig_*`` from :meth:`signatures`."""
        out_names, in_names = sig_out[0], sig_in[0]
        return out_names + tuple(n for n in in_names if n not in out_names)

    @cached_property
    def _name_ids(self) -> dict[str, int]:
        """Per tensor, a number for its tuple of type names (equal tuples, equal numbers)."""
        ids: dict[tuple[str, ...], int] = {}
        sigs = self._generic_signatures
        return {n: ids.setdefault(sig[0], len(ids)) for n, sig in sigs.items()}

    @cached_property
    def _generic_signatures(self) -> dict[str, tuple[tuple[str, ...], tuple]]:
        return self.signatures({})

    def block_names(self, out: str, in_: str) -> tuple[str, ...]:
        """:meth:`pair_names` of the block ``out <- in_`` (kept per pair of type-name
        tuples: the tensors of a deep preset have few)."""
        key = (self._name_ids[out], self._name_ids[in_])
        names = self._names_cache.get(key)
        if names is None:
            sigs = self._generic_signatures
            names = self._names_cache[key] = self.pair_names(sigs[out], sigs[in_])
        return names

    @cached_property
    def _names_cache(self) -> dict[tuple[int, int], tuple[str, ...]]:
        return {}

    def shape_index(self, sizes: Mapping[str, int]) -> dict[tuple[str, str], tuple]:
        """Per coupled pair, its :meth:`shape_key` at ``sizes`` (in an interned form: equal
        for blocks that are the same up to renaming their types)."""
        key = tuple(sorted(sizes.items()))
        index = self._index_cache.get(key)
        if index is None:
            index = {pair: shape for shape, pairs in self._shapes(sizes).items() for pair in pairs}
            self._index_cache[key] = index
        return index

    @cached_property
    def _index_cache(self) -> dict[tuple, dict[tuple[str, str], tuple]]:
        return {}

    def _shapes(self, sizes: Mapping[str, int]) -> dict[tuple, list[tuple[str, str]]]:
        """The coupled pairs grouped by :meth:`shape_key` at ``sizes``, in spec order
        (each group's first pair is its representative). The key of a pair is made of
        interned per-tensor signatures and the shared-type positions, so the per-pair work
        is a few dictionary lookups."""
        cached = self._shape_cache.get(tuple(sorted(sizes.items())))
        if cached is not None:
            return cached
        sigs = self.signatures(sizes)
        ids: dict[tuple, int] = {}
        sig_id = {n: ids.setdefault(sig[1], len(ids)) for n, sig in sigs.items()}
        name_id = self._name_ids
        shared_of: dict[tuple[int, int], tuple] = {}  # by the two tensors' type names
        groups: dict[tuple, list[tuple[str, str]]] = {}
        for s, t in self.coupled_pairs:
            names = (name_id[s], name_id[t])
            shared = shared_of.get(names)
            if shared is None:
                in_rank = {n: i for i, n in enumerate(sigs[t][0])}
                shared = tuple((i, in_rank[n]) for i, n in enumerate(sigs[s][0]) if n in in_rank)
                shared_of[names] = shared
            groups.setdefault((sig_id[s], sig_id[t], shared), []).append((s, t))
        self._shape_cache[tuple(sorted(sizes.items()))] = groups
        return groups

    @cached_property
    def _shape_cache(self) -> dict[tuple, dict[tuple, list[tuple[str, str]]]]:
        return {}

    def generic_sizes(self) -> dict[str, int]:
        """Per group type, the size from which every block's count is generic.

        Uncoupled blocks are products of a bias and an invariant block, so the coupled
        blocks, the biases and the invariants decide every threshold; blocks of one shape
        (:meth:`shape_key`) are solved once.
        """
        out = {t: 1 for t in self.spec.group_types}
        for pairs in self._shapes({}).values():
            s, t = pairs[0]
            names = self.block_names(s, t)
            th = self.blocks[s, t].thresholds()
            above = [(k, th[n]) for k, n in enumerate(names) if th.get(n, 1) > 1]
            if not above:
                continue
            for s, t in pairs:
                names = self.block_names(s, t)
                for k, n in above:
                    name = names[k]
                    if name in out and n > out[name]:
                        out[name] = n
        for block in (*self.bias.values(), *self.invariant.values()):
            for name, n in block.thresholds().items():
                if name in out:
                    out[name] = max(out[name], n)
        return out

    def coupled_counts(self, sizes: Mapping[str, int] | None = None) -> dict[tuple[str, str], int]:
        """Dimension of every coupled block at ``sizes`` (blocks of one shape solved once)."""
        sizes = sizes or {}
        out = {}
        for pairs in self._shapes(sizes).values():
            count = self.blocks[pairs[0]].count(sizes)
            out.update(dict.fromkeys(pairs, count))
        return out

    def shape_counts(self, sizes: Mapping[str, int] | None = None) -> list[tuple[int, list]]:
        """Per shape of coupled block: its dimension at ``sizes`` and its pairs (spec
        order), for reports that summarize rather than list every block."""
        sizes = sizes or {}
        return [
            (self.blocks[pairs[0]].count(sizes), pairs) for pairs in self._shapes(sizes).values()
        ]

    def threshold_rows(
        self, sizes: Mapping[str, int] | None = None, limit: int | None = None
    ) -> tuple[int, list[tuple[str, int, dict[str, int], dict[str, dict[int, int]]]]]:
        """The blocks whose generic count needs some type not in ``sizes`` above size 1:
        how many, and (the first ``limit``, in :meth:`all_blocks` order) per block its
        label, count at ``sizes``, those types' thresholds and the block's counts below
        them (that type at each smaller size, the others generic).

        A coupled block's row is worked out once per shape; an uncoupled block is a bias
        block times an invariant block on disjoint group types, so its thresholds are
        theirs and its counts below are theirs times the other side's generic count. The
        number of rows is counted without listing them, so a summary costs the coupled
        pairs and the tensors, not all pairs."""
        sizes = sizes or {}
        names = [t.name for t in self.spec.tensors]
        sigs = self.signatures(sizes)
        order = self._type_order

        def side(block: Block) -> tuple[dict[str, int], dict[str, dict[int, int]]]:
            below = {t: c for t, c in block.counts_below_threshold().items() if t not in sizes}
            th = block.thresholds()
            return {t: th[t] for t in below}, below

        bias = {n: side(b) for n, b in self.bias.items()}
        inv = {n: side(b) for n, b in self.invariant.items()}
        bias_count = {n: b.count(sizes) for n, b in self.bias.items()}
        inv_count = {n: b.count(sizes) for n, b in self.invariant.items()}
        bias_generic = {n: b.count() for n, b in self.bias.items()}
        inv_generic = {n: b.count() for n, b in self.invariant.items()}

        coupled: dict[tuple[str, str], tuple[int, tuple]] = {}
        for pairs in self._shapes(sizes).values():
            s, t = pairs[0]
            block = self.blocks[s, t]
            th_names, below = side(block)
            positions = self.pair_names(sigs[s], sigs[t])
            at = {n: k for k, n in enumerate(positions)}
            info = (block.count(sizes), tuple((at[n], th_names[n], below[n]) for n in below))
            coupled.update(dict.fromkeys(pairs, info))

        def row(s: str, t: str):
            if (s, t) in coupled:
                count, info = coupled[s, t]
                if not info:
                    return None
                positions = self.pair_names(sigs[s], sigs[t])
                found = sorted(
                    ((positions[k], n, by_n) for k, n, by_n in info), key=lambda x: order[x[0]]
                )
                th = {name: n for name, n, _ in found}
                below = {name: by_n for name, _, by_n in found}
                return count, th, below
            (th_s, below_s), (th_t, below_t) = bias[s], inv[t]
            if not below_s and not below_t:
                return None
            below = {k: {n: c * inv_generic[t] for n, c in v.items()} for k, v in below_s.items()}
            below.update(
                {k: {n: c * bias_generic[s] for n, c in v.items()} for k, v in below_t.items()}
            )
            keys = sorted(below, key=order.__getitem__)
            th = {**th_s, **th_t}
            return (
                bias_count[s] * inv_count[t],
                {k: th[k] for k in keys},
                {k: below[k] for k in keys},
            )

        # how many rows: the pairs with a row on either side, corrected on coupled pairs
        has_b = {n for n in names if bias[n][1]}
        has_i = {n for n in names if inv[n][1]}
        total = len(has_b) * len(names) + len(names) * len(has_i) - len(has_b) * len(has_i)
        for (s, t), (_, info) in coupled.items():
            total += bool(info) - (s in has_b or t in has_i)
        total += len(has_b) + len(has_i)

        rows = []
        labels = [(s, t) for s in names for t in names]
        labels += [(s, None) for s in names] + [(None, t) for t in names]
        for s, t in labels:
            if limit is not None and len(rows) >= limit:
                break
            if s is None or t is None:
                block = self.bias[s] if t is None else self.invariant[t]
                th, below = bias[s] if t is None else inv[t]
                if below:
                    rows.append((block.label, block.count(sizes), th, below))
                continue
            found = row(s, t)
            if found is not None:
                rows.append((f"{s} <- {t}", *found))
        return total, rows

    def term_count(self) -> int:
        """How many generic basis terms the layer plans and writes: every coupled block's,
        and the pooled path's inputs and outputs (each tensor's invariant and bias terms
        once: the uncoupled blocks, bias times invariant terms for every pair of tensors,
        are one matmul of the pooled summaries, whose work grows with the tensors, not
        their pairs; their maps are parameters, which the budget bounds). Counted per
        shape without building a term. A block past :data:`MAX_BLOCK_TERMS` is refused
        here already (:class:`TooLarge`, naming it), as :meth:`Block.terms` would."""
        shapes = self._shapes({})
        blocks = [self.blocks[pairs[0]] for pairs in shapes.values()]
        for block in (*blocks, *self.bias.values(), *self.invariant.values()):
            try:
                n = block.generic_terms()
            except TooLarge as exc:  # a nested factor's outer table
                raise TooLarge(f"block {block.label}: {exc}") from None
            if n > MAX_BLOCK_TERMS:
                raise TooLarge(
                    f"block {block.label}: {n:,} basis terms, more than the "
                    f"{MAX_BLOCK_TERMS:,} a layer is built with (fewer axes of one type per "
                    "tensor, or split the type)"
                )
        coupled = sum(
            len(pairs) * self.blocks[pairs[0]].generic_terms() for pairs in shapes.values()
        )
        bias = sum(b.generic_terms() for b in self.bias.values())
        inv = sum(b.generic_terms() for b in self.invariant.values())
        return coupled + bias + inv

    @cached_property
    def _type_order(self) -> dict[str, tuple[int, int]]:
        """The order in which a block lists its types: the spec's, a nested type after
        its outer type (as :attr:`Block.factors` are laid out)."""
        index = {n: i for i, n in enumerate(self.spec.types)}
        return {
            n: (index[d.within], index[n]) if d.within else (index[n], -1)
            for n, d in self.spec.types.items()
        }

    def counts(self, sizes: Mapping[str, int] | None = None) -> dict:
        """The ``qgen count --json`` object (without ``name`` and ``sizes``)."""
        sizes = sizes or {}
        bias = {name: b.count(sizes) for name, b in self.bias.items()}
        inv = {name: b.count(sizes) for name, b in self.invariant.items()}
        coupled = self.coupled_counts(sizes)
        names = [t.name for t in self.spec.tensors]
        eq = {s: {t: coupled.get((s, t), bias[s] * inv[t]) for t in names} for s in names}
        return {
            "equivariant": eq,
            "bias": bias,
            "invariant": inv,
            "total": {
                "equivariant": self.total(coupled, bias, inv),
                "bias": sum(bias.values()),
                "invariant": sum(inv.values()),
            },
        }

    @staticmethod
    def total(
        coupled: Mapping[tuple[str, str], int], bias: Mapping[str, int], inv: Mapping[str, int]
    ) -> int:
        """All blocks' dimensions summed: the coupled ones, plus bias x invariant for the rest."""
        uncoupled = sum(bias.values()) * sum(inv.values())
        uncoupled -= sum(bias[s] * inv[t] for s, t in coupled)
        return sum(coupled.values()) + uncoupled

    def all_blocks(self) -> Iterator[Block]:
        yield from self.blocks.values()
        yield from self.bias.values()
        yield from self.invariant.values()


class _Blocks(Mapping[tuple[str, str], Block]):
    """Every ordered pair of tensors as a :class:`Block`, made when first looked up
    (a large architecture has hundreds of thousands of pairs; most are never solved)."""

    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        self._tensors = {t.name: t for t in spec.tensors}
        self._made: dict[tuple[str, str], Block] = {}

    def __getitem__(self, key: tuple[str, str]) -> Block:
        block = self._made.get(key)
        if block is None:
            out, in_ = key
            block = Block(self._spec, self._tensors[out], self._tensors[in_])
            self._made[key] = block
        return block

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((s, t) for s in self._tensors for t in self._tensors)

    def __len__(self) -> int:
        return len(self._tensors) ** 2


def _grid_pairs(axes: tuple[BlockAxis, ...], tie: tuple[str, str]) -> tuple[BlockAxis, ...]:
    """The axes of a grid's two types, (first, second) per tensor side, pair by pair."""
    out: list[BlockAxis] = []
    for side in (OUT, IN):
        mine = [a for a in axes if a.side == side and a.type in tie]
        if not mine:
            continue
        if tie[0] == tie[1]:
            out += mine
        else:
            out += [next(a for a in mine if a.type == t) for t in tie]
    return tuple(out)


def _kind(decl) -> GroupKind:
    """:func:`qgen.kinds.kind_of`, through this module's ``get_kind`` (which tests patch)."""
    return get_kind(decl.kind).for_decl(decl)


#: the last spec solved and its basis: the CLI's build and its summary line, or a render
#: and the counts beside it, share one solve (a spec is immutable; its identity is checked)
_LAST: list[tuple[Spec, WeightSpaceBasis]] = []


def solve(spec: Spec) -> WeightSpaceBasis:
    """The basis of equivariant affine maps of ``spec``'s weight space (the same object
    for the same spec object as the previous call: its caches are shared)."""
    if _LAST and _LAST[0][0] is spec and _LAST[0][1].spec is spec:
        return _LAST[0][1]
    basis = WeightSpaceBasis(spec)
    _LAST[:] = [(spec, basis)]
    return basis
