"""The interface every group kind implements, and the two families that share code.

A *kind* is the group that acts on the axes of one index type, the same
element on every axis of that type. For a block ``V_in -> V_out`` the solver
hands a kind the *variances* of the block's axes of its type, one of ``+1``
or ``-1`` per axis, output axes first::

    output plain axis  +1      output dual axis  -1
    input  plain axis  -1      input  dual axis  +1

(an input axis enters ``Hom(V_in, V_out) = V_out (x) V_in^*`` dualised). With
this convention every rule below is a statement about the variances alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, ClassVar, NoReturn, Protocol

from qgen.decls import Axis, TypeDecl
from qgen.kinds.partitions import (
    Partition,
    PartRule,
    Point,
    gram_rank,
    ruled_count,
    ruled_partitions,
)

if TYPE_CHECKING:  # torch is imported lazily: counting does not need it
    import torch

Variances = tuple[int, ...]

__all__ = [
    "MAX_TERMS",
    "ChargeRule",
    "DeclEntry",
    "Generator",
    "GroupKind",
    "PairingKind",
    "PartitionKind",
    "Variances",
]


class DeclEntry(Protocol):
    """A type's entry in a spec as the parser (:mod:`qgen.spec`) hands it to a kind's
    :meth:`GroupKind.parse_decl`: plain data, and a ``fail`` that names the file, line
    and place (``file:line: types.<name>[.key[.sub]]: message``)."""

    #: the type's name (validated)
    name: str
    #: the ``group:`` value as plain data: a kind name, a mapping (a family's
    #: configuration), or None (no ``group:``, a plain fixed axis)
    group: object

    def has(self, key: str) -> bool:
        """Whether the entry has ``key``."""

    def data(self, key: str) -> object:
        """The value of ``key`` as plain data (YAML tags refused)."""

    def size(self) -> int | None:
        """The ``size:`` value, checked to be a positive integer; None when absent."""

    def fail(self, message: str, key: str | None = None, sub: str | None = None) -> NoReturn:
        """Report ``message`` at the entry (``key`` None) or at the value of ``key``
        (its path extended by ``.sub`` when given)."""


@dataclass(frozen=True, eq=False)
class Generator:
    """A generator of a kind's group at a concrete size, for the numeric solver.

    ``matrix`` acts on a plain (variance +1) axis. With ``infinitesimal=False``
    it is a group element ``g``: it acts on a variance -1 axis by ``g^{-T}``
    and the constraint is ``g . L = L``. With ``infinitesimal=True`` it is a
    Lie-algebra element ``X``: it acts on a variance -1 axis by ``-X^T`` and
    the constraint is ``X . L = 0`` (sum of its action on each axis).
    """

    matrix: torch.Tensor
    infinitesimal: bool = False
    #: for a nested type: the index of the outer type (head) whose element this is;
    #: it acts only on entries whose owning outer axis has that index
    outer: int | None = None

    def on_axis(self, variance: int) -> torch.Tensor:
        if variance > 0:
            return self.matrix
        if self.infinitesimal:
            return -self.matrix.T
        import torch

        return torch.linalg.inv(self.matrix).T


class GroupKind(ABC):
    """A group acting on the axes of one index type."""

    #: the name used in specs (``group: <name>``)
    name: ClassVar[str]
    #: one line for help texts and docs
    summary: ClassVar[str]
    #: whether the group has a continuous part (what quasi-equivariance relaxes)
    continuous: ClassVar[bool] = False
    #: whether the type's size is part of the group (fixed types) rather than free
    needs_size: ClassVar[bool] = False
    #: whether the group acts trivially (every linear map between its axes commutes with
    #: it): a block's constraints are then the same on every slice of those axes, so the
    #: block's solution space is the one on a single slice tensored with all maps between
    #: the slices (what ``qgen verify`` uses to check blocks too large to solve densely)
    trivial_action: ClassVar[bool] = False
    #: how generated code stores an element and acts with it: "monomial" (an index
    #: permutation and a scale per index: ``(g.x)[i] = scale[i] * x[index[i]]``, with
    #: ``1 / scale`` on dual axes) or "matrix" (``A`` on plain axes, ``A^{-T}`` on dual)
    action: ClassVar[str | None] = None
    #: the runtime function ``(n, generator) -> element`` drawing a random element (a
    #: top-level definition of a module in ``runtime``, copied into generated modules)
    sampler: ClassVar[str | None] = None
    #: for continuous kinds: the runtime ``nn.Module`` class that maps per-index features
    #: ``[batch, n, features]`` and ``eps`` to a batched element of the identity component
    #: (quasi-equivariant layers)
    relax_class: ClassVar[str | None] = None
    #: modules holding the kind's runtime definitions (sampler, relaxation), searched
    #: after qgen's own (:data:`qgen.runtime.source.RUNTIME_MODULES`)
    runtime: ClassVar[tuple[str, ...]] = ()

    # What the kind permits between layers (read by :mod:`qgen.codegen.blocks`, which turns it
    # into per-tensor tables; a tensor with axes of several kinds obeys all of them).
    #: the pointwise functions that commute with the action on one entry: "any" (the
    #: element only moves entries), "homogeneous" (it also multiplies them by positive
    #: numbers: ReLU, LeakyReLU), "odd" (by signs: tanh), or None (it mixes entries:
    #: no pointwise function is equivariant)
    pointwise: ClassVar[str | None] = None
    #: for a kind that moves entries and multiplies each by one number: which numbers,
    #: "positive" or "sign" (None when it only moves them or mixes them); canonicalization
    #: divides out positive factors and fixes signs
    entry_factor: ClassVar[str | None] = None
    #: whether the Euclidean norm over an axis of the type is invariant (orthogonal actions)
    norm_invariant: ClassVar[bool] = False
    #: whether subtracting a constant from every entry of a tensor whose group axes are all
    #: of kinds that allow it commutes with the action (pure permutations)
    may_centre: ClassVar[bool] = False

    # How specs declare a type of the kind (read by the parser, :mod:`qgen.spec`).
    #: whether the kind is a family configured by the type's entry, written
    #: ``group: {<name>: MEMBER, ...}`` (a mapping) with the keys in :attr:`entry_keys`,
    #: rather than ``group: <name>``
    family: ClassVar[bool] = False
    #: keys of a type entry, besides group, size and within, that the kind reads; each with
    #: the message for an entry of another kind that uses it
    entry_keys: ClassVar[Mapping[str, str]] = {}
    #: whether types may be nested ``within:`` a type of the kind (the outer factor of a
    #: wreath product: blocks of the inner types permuted as wholes)
    holds_nested: ClassVar[bool] = False

    # What other parts of qgen ask of a kind, declared here instead of tested by name.
    #: for the model reader (:mod:`qgen.frommodel.reader`): the other kinds this group contains
    #: (its place in the subgroup lattice through which an operation restricts a type to
    #: the largest group it commutes with); None: not a kind the reader infers
    subgroups: ClassVar[frozenset[str] | None] = None
    #: whether every element satisfies ``A^-T = A`` (plain and dual axes transform alike):
    #: what remains of a group on features tied to their own dual (attention's keys and
    #: queries in one type)
    self_dual: ClassVar[bool] = False
    #: whether the nonlinear invariant head (per-entry canonicalization: moves entries and
    #: multiplies each by a positive number or a sign) handles axes of the kind
    nonlinear_head: ClassVar[bool] = False

    @abstractmethod
    def terms(self, variances: Variances) -> tuple[Partition, ...]:
        """The basis terms for axes with these variances (diagrams over positions)."""

    @abstractmethod
    def count(self, variances: Variances, n: int | None) -> int:
        """Exact dimension of the commutant at size ``n`` (``None``: generic size)."""

    @abstractmethod
    def threshold(self, variances: Variances) -> int:
        """Smallest size from which :meth:`count` equals the generic count."""

    @abstractmethod
    def generators(self, n: int) -> list[Generator]:
        """Generators of the group at size ``n`` (topological generators for Lie groups)."""

    # -- declarations ----------------------------------------------------------------

    def parse_decl(self, entry: DeclEntry) -> TypeDecl:
        """The declaration of a type of this kind from its spec entry (``within:`` is
        read by the parser). The default: a group of any size, ``size:`` optional."""
        return TypeDecl(entry.name, self.name, entry.size())

    def link_decl(
        self, decl: TypeDecl, entry: DeclEntry, types: Mapping[str, TypeDecl]
    ) -> TypeDecl:
        """``decl`` completed once every type of the spec section is parsed (a kind that
        refers to other types checks them here)."""
        return decl

    def axes_problem(self, decl: TypeDecl, axes: tuple[Axis, ...]) -> str | None:
        """Why a tensor with ``axes`` cannot have axes of ``decl`` as declared, or None."""
        return None

    def for_decl(self, decl: TypeDecl) -> GroupKind:
        """The kind acting on the axes of ``decl`` (a family: configured by its entry)."""
        return self

    def describe(self) -> str:
        """The group in words (for ``qgen explain``)."""
        return self.name

    #: the heading under which ``qgen count`` lists :meth:`count_note` lines
    count_heading: ClassVar[str] = ""

    def count_note(self, decl: TypeDecl) -> str | None:
        """How the commutant on a type of the kind is computed, for ``qgen count``
        (None: nothing to say beyond the counts)."""
        return None

    def __repr__(self) -> str:
        return f"<group kind {self.name}>"


#: the most basis terms one type's factor of a block may have: past it the spec is
#: refused with the factor and its count (Bell(9) = 21,147 is the largest full
#: partition table under it; a build writes a few lines of code per term)
MAX_TERMS = 50_000


class ChargeRule:
    """The rule on parts as a charge: every axis gets an integer :meth:`charge` from its
    variance, and a part is allowed when its charges sum to zero modulo
    :attr:`charge_modulus` (0: in the integers, 1: always). This is what lets
    :func:`qgen.kinds.partitions.ruled_partitions` build only allowed partitions: a new
    kind states its rule here and every enumeration (basis terms, degree-2 products)
    applies it while parts are formed."""

    #: the modulus of the charge sum (0: the integers; 1: every part allowed)
    charge_modulus: ClassVar[int] = 1
    #: the number of axes a part has (0: any number); pairings have 2
    part_size: ClassVar[int] = 0

    def charge(self, variance: int) -> int:
        """The charge of an axis with this variance (default: 0)."""
        return 0

    def _custom_rule(self) -> bool:
        """Whether the kind overrides the charge-defined test of a part (its rule is then
        checked on each closed part, after the charges pruned the search)."""
        return False

    def _accepts(self, variances: Variances) -> Callable[[tuple[int, ...]], bool] | None:
        return None

    def part_rule(self, variances: Variances) -> tuple[tuple[int, ...], PartRule]:
        """The charge of each axis and the rule its parts obey, for the enumerator."""
        charges = tuple(self.charge(v) for v in variances)
        size = self.part_size
        rule = PartRule(
            modulus=self.charge_modulus,
            min_size=size or 1,
            max_size=size,
            accept=self._accepts(variances),
        )
        return charges, rule

    def _charges_balance(self, variances: Variances) -> bool:
        total = sum(self.charge(v) for v in variances)
        return total == 0 if self.charge_modulus == 0 else total % self.charge_modulus == 0


def _points(kind: ChargeRule, variances: Variances) -> tuple[tuple[Point, ...], PartRule]:
    """Points with distinct labels (one per axis), the kind's charges, and its rule."""
    charges, rule = kind.part_rule(variances)
    return tuple(enumerate(charges)), rule


class PartitionKind(ChargeRule, GroupKind):
    """Kinds whose commutant has an orbit basis indexed by allowed set partitions.

    Permutations, signed permutations and positive scalings: a partition is
    allowed when each of its parts is (:meth:`allows`, by default the charge rule of
    :class:`ChargeRule`). At size ``n`` the orbit basis elements with at most ``n``
    parts are independent and span the commutant, so the count at ``n`` is the number
    of allowed partitions with at most ``n`` parts, and the generic count holds from
    ``n = max parts`` on. Counts come from the counting programme without building the
    partitions; terms are built under the rule, at most :data:`MAX_TERMS` of them.
    """

    def allows(self, part_variances: Variances) -> bool:
        """Whether a part whose axes have these variances is allowed (default: its
        charges balance)."""
        return self._charges_balance(part_variances)

    def _custom_rule(self) -> bool:
        return type(self).allows is not PartitionKind.allows

    def _accepts(self, variances: Variances) -> Callable[[tuple[int, ...]], bool] | None:
        if not self._custom_rule():
            return None
        return lambda part: self.allows(tuple(variances[i] for i in part))

    def terms(self, variances: Variances) -> tuple[Partition, ...]:
        return _allowed_partitions(self, variances)

    def count(self, variances: Variances, n: int | None) -> int:
        by_parts = _count_by_parts(self, variances)
        return sum(by_parts if n is None else by_parts[: n + 1])

    def threshold(self, variances: Variances) -> int:
        by_parts = _count_by_parts(self, variances)
        return max((k for k, c in enumerate(by_parts) if c), default=1) or 1

    @staticmethod
    def permutation_generators(n: int) -> list[Generator]:
        """A transposition and an n-cycle, which generate S_n."""
        import torch

        gens = []
        if n >= 2:
            swap = torch.eye(n, dtype=torch.float64)[[1, 0, *range(2, n)]]
            gens.append(Generator(swap))
        if n >= 3:
            cycle = torch.eye(n, dtype=torch.float64).roll(1, dims=0)
            gens.append(Generator(cycle))
        return gens


class PairingKind(ChargeRule, GroupKind):
    """Kinds whose invariants are pairings (first fundamental theorem): GL(n), O(n).

    Terms are perfect matchings of the axes whose pairs are allowed
    (:meth:`allows_pair`, by default: the two charges balance). They are independent
    for large ``n`` and can be dependent below; the count at ``n`` is their exact rank
    there, computed from the integer Gram matrix ``n ** loops``.
    """

    continuous = True
    part_size = 2

    def allows_pair(self, a: int, b: int) -> bool:
        """Whether two axes with variances ``a`` and ``b`` may be paired."""
        return self._charges_balance((a, b))

    def _custom_rule(self) -> bool:
        return type(self).allows_pair is not PairingKind.allows_pair

    def _accepts(self, variances: Variances) -> Callable[[tuple[int, ...]], bool] | None:
        if not self._custom_rule():
            return None
        return lambda part: self.allows_pair(*(variances[i] for i in part))

    def terms(self, variances: Variances) -> tuple[Partition, ...]:
        return _allowed_partitions(self, variances)

    def count(self, variances: Variances, n: int | None) -> int:
        if n is None:
            return sum(_count_by_parts(self, variances))
        return _pairing_rank(self, variances, n)

    def threshold(self, variances: Variances) -> int:
        generic = self.count(variances, None)
        n = 1
        while self.count(variances, n) != generic:
            n += 1
        return n


@cache
def _count_by_parts(kind: ChargeRule, variances: Variances) -> tuple[int, ...]:
    """Allowed partitions by number of parts, counted without building them."""
    points, rule = _points(kind, variances)
    return ruled_count(points, rule)


@cache
def _allowed_partitions(kind: ChargeRule, variances: Variances) -> tuple[Partition, ...]:
    points, rule = _points(kind, variances)
    what = f"{len(variances)} axes of a {kind.name} type"  # type: ignore[attr-defined]
    return ruled_partitions(points, rule, MAX_TERMS, what)


@cache
def _pairing_rank(kind: PairingKind, variances: Variances, n: int) -> int:
    return gram_rank(kind.terms(variances), n)
