"""Index types found while reading a model, and the spec they assemble into.

A :class:`TypeGraph` is a union-find over types with, per class, a size, a group kind
(the largest group every operation on it commutes with), a parity (a type can be tied
to the *dual* of another: attention's keys transform by ``M^-T`` when its queries
transform by ``M``; a type tied to its own dual keeps only ``A = A^-T``, i.e. the
orthogonal part of its group) and optionally a *split*: the features come in ``G``
contiguous blocks of equal size that may be permuted as wholes, and each block has its
own element of the type's group (``feature = block * m + i``). A split type becomes a
nested type ``within`` a perm type of size ``G`` (the wreath product), as attention
heads and the groups of a grouped convolution need.

Tensors are recorded with axes that name a whole type, or only the outer (block) or
inner (within-block) part of a split one; :meth:`TypeGraph.spec` expands them, names
the types, and computes where each tensor sits in the state_dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qgen.data.adapters import Source, WeightSpace
from qgen.decls import FIXED, MAX_AXES
from qgen.errors import QgenError
from qgen.kinds import lattice_top, self_dual_part
from qgen.kinds import meet as _lattice_meet
from qgen.spec import Axis, Spec, TensorDecl, TypeDecl, dump_spec, nesting_problem, parse_spec

__all__ = ["Ax", "TypeGraph", "UnsupportedModel", "meet"]


def meet(a: str, b: str) -> str:
    """The largest group in both kinds; ``fixed`` (the trivial group) is below all."""
    return FIXED if FIXED in (a, b) else _lattice_meet(a, b)


def _self_dual(kind: str) -> str:
    return FIXED if kind == FIXED else self_dual_part(kind)


class UnsupportedModel(QgenError):
    """The model uses something qgen cannot map to a weight-space symmetry."""


@dataclass(frozen=True)
class Ax:
    """A tensor axis: ``part`` is "full" (the whole type), "outer" (the block index of a
    split type), "inner" (the index within a block) or "fixed" (``t`` names a fixed
    size ``k<n>``)."""

    t: str
    dual: bool = False
    part: str = "full"


@dataclass
class _Tensor:
    name: str
    axes: list[Ax]
    key: str
    rows: tuple[int, int] | None
    where: str
    index: tuple = ()


@dataclass
class TypeGraph:
    parent: dict[str, tuple[str, bool]] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)
    #: root -> (outer type, number of blocks)
    split: dict[str, tuple[str, int]] = field(default_factory=dict)
    prefix: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, int] = field(default_factory=dict)
    tensors: list[_Tensor] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    #: root -> the graph node (operation) that made its kind fixed, for messages
    fixed_at: dict[str, object] = field(default_factory=dict)
    #: fixed roots whose every fixing reached only the inside of their blocks (a rotary
    #: table shared by all heads fixes the index inside a head): their blocks may still
    #: move. A fixed root not listed was fixed as a whole (a constant, an input, an
    #: output along the whole axis), and so is the outer type of its blocks.
    fixed_inside: set[str] = field(default_factory=set)
    #: the node being read (the walk sets it); spec type name -> root (after weight_space)
    here: object = None
    spec_names: dict[str, str] = field(default_factory=dict)

    def new(
        self, name: str, kind: str | None = None, size: int | None = None, prefix: str = "h"
    ) -> str:
        """A new type, of ``kind`` or else the largest kind (operations restrict it)."""
        self.parent[name] = (name, False)
        self.kind[name] = kind or lattice_top()
        if kind == FIXED:
            self.fixed_at[name] = self.here
        self.prefix[name] = prefix
        self.order.append(name)
        if size is not None:
            self.size[name] = size
        return name

    def fixed_axis(self, n: int) -> Ax:
        self.fixed[f"k{n}"] = n
        return Ax(f"k{n}", part="fixed")

    def find(self, t: str) -> tuple[str, bool]:
        """The root of ``t`` and whether ``t`` is the root's dual."""
        path = []
        while (p := self.parent[t])[0] != t:
            path.append((t, p[1]))
            t = p[0]
        parity = False
        for node, step in reversed(path):  # path compression: each points at the root
            parity ^= step
            self.parent[node] = (t, parity)
        return t, parity

    def root(self, t: str) -> str:
        return self.find(t)[0]

    def tie(self, a: str, b: str, where: str, dual: bool = False) -> str:
        """Make ``a`` the same type as ``b`` (its dual when ``dual``)."""
        (ra, pa), (rb, pb) = self.find(a), self.find(b)
        rel = pa ^ pb ^ dual
        if ra == rb:
            if rel:  # A = A^-T
                self.kind[ra] = _self_dual(self.kind[ra])
            return ra
        if ra in self.size and rb in self.size and self.size[ra] != self.size[rb]:
            raise UnsupportedModel(
                f"{where}: combines features of sizes {self.size[ra]} and {self.size[rb]}"
            )
        keep, drop = (ra, rb) if self.order.index(ra) < self.order.index(rb) else (rb, ra)
        self.parent[drop] = (keep, rel)
        fixed = [r for r in (ra, rb) if self.kind[r] == FIXED]
        inside = bool(fixed) and all(r in self.fixed_inside for r in fixed)
        self.fixed_inside.discard(drop)
        if inside:
            self.fixed_inside.add(keep)
        else:
            self.fixed_inside.discard(keep)
        self.kind[keep] = meet(self.kind[ra], self.kind[rb])
        if len(fixed) == 1:  # this tie fixes a type: where its fixed partner was made,
            made = self.fixed_at.get(fixed[0])  # or this operation (a constant's input)
            if made is None or getattr(made, "op", None) == "placeholder":
                made = self.here
            self.fixed_at[keep] = made
        elif fixed and keep not in self.fixed_at:
            self.fixed_at[keep] = self.fixed_at.get(drop, self.here)
        if drop in self.size:
            self.size.setdefault(keep, self.size[drop])
        if drop in self.split:
            outer, blocks = self.split.pop(drop)
            if keep in self.split:
                self._tie_splits(keep, outer, blocks, where)
            else:
                self.split[keep] = (outer, blocks)
        return keep

    def _tie_splits(self, r: str, outer: str, blocks: int, where: str) -> None:
        mine, n = self.split[r]
        if n != blocks:
            raise UnsupportedModel(
                f"{where}: the same features are split into {n} and into {blocks} blocks "
                "(groups or heads); only one block structure per feature type is supported"
            )
        self.tie(mine, outer, where)

    def restrict(self, t: str, kind: str, inside: bool = False) -> None:
        """Restrict ``t``'s group to ``kind``; ``inside``: a fixing that reaches only the
        index inside ``t``'s blocks (see :attr:`fixed_inside`)."""
        r = self.root(t)
        if meet(self.kind[r], kind) == FIXED:
            if inside and self.kind[r] != FIXED:
                self.fixed_inside.add(r)
            elif not inside:
                self.fixed_inside.discard(r)
        self.kind[r] = meet(self.kind[r], kind)
        if self.kind[r] == FIXED and r not in self.fixed_at:
            self.fixed_at[r] = self.here

    def set_size(self, t: str, n: int, where: str) -> None:
        r = self.root(t)
        if self.size.setdefault(r, n) != n:
            raise UnsupportedModel(f"{where}: expects {n} features, its input has {self.size[r]}")

    def split_into(self, t: str, blocks: int, where: str, prefix: str = "g") -> str:
        """Split ``t`` into ``blocks`` contiguous blocks; returns the outer type."""
        r = self.root(t)
        if r in self.split:
            outer, n = self.split[r]
            if n != blocks:
                self._tie_splits(r, outer, blocks, where)
            return outer
        size = self.size.get(r)
        if size is None or size % blocks:
            raise UnsupportedModel(f"{where}: {size} features do not split into {blocks} blocks")
        outer = self.new(f"_outer{len(self.order)}", "perm", blocks, prefix)
        self.split[r] = (outer, blocks)
        return outer

    def add_tensor(
        self, name: str, axes: list[Ax], key: str, where: str, rows=None, index=()
    ) -> None:
        self.tensors.append(_Tensor(name, axes, key, rows, where, tuple(index)))

    # -- assembling the spec -------------------------------------------------------------

    def weight_space(
        self, name: str, inputs: list[str], outputs: list[str], io: str, source: str
    ) -> WeightSpace:
        """The spec (inputs/outputs fixed, or perm with ``io="perm"``) with its sources."""
        kinds = {r: self.kind[r] for r in self.parent if self.root(r) == r}
        ends = {self.root(t) for t in inputs + outputs}
        for r in ends if io is not None else ():  # io None: the kinds as they are
            kinds[r] = FIXED if io == FIXED else "perm"
        splits = {r: s for r, s in self.split.items() if self.root(r) == r}
        # a fixed type split by a fixed outer: its blocks do not move, so it is fixed as a
        # whole, and so is every type split by the same outer
        frozen = {
            self.root(o)
            for r, (o, _) in splits.items()
            if kinds[r] == FIXED and kinds.get(self.root(o)) == FIXED
        }
        # a fixed type split by a permuted outer (rotary embeddings fix the index inside a
        # head; the heads still move as wholes): the blocks are permuted by the outer's
        # element and nothing acts inside them, so its axes are [outer, k<block size>]
        self._fixed_inner: dict[str, int] = {}
        for r, (o, blocks) in splits.items():
            if kinds[r] == FIXED and self.root(o) not in frozen:
                self._fixed_inner[r] = self.size[r] // blocks
                self.fixed_axis(self.size[r] // blocks)
        self._frozen: dict[str, int] = {}
        for r, (o, blocks) in list(splits.items()):
            if self.root(o) in frozen:
                kinds[r] = FIXED
                self._frozen[r] = blocks
                self.fixed_axis(blocks), self.fixed_axis(self.size[r] // blocks)
                del splits[r]
        names: dict[str, str] = {}
        for i, t in enumerate(dict.fromkeys(self.root(t) for t in inputs)):
            names[t] = "x" if i == 0 else f"x{i + 1}"
        for i, t in enumerate(dict.fromkeys(self.root(t) for t in outputs)):
            names.setdefault(t, "y" if i == 0 else f"y{i + 1}")
        counters: dict[str, int] = {}
        used = {self.root(a.t) for t in self.tensors for a in t.axes if a.part != "fixed"}
        used |= {self.root(splits[r][0]) for r in used if r in splits}
        for t in self.order:
            r = self.root(t)
            if r in names or r not in used:
                continue
            p = self.prefix[r]
            counters[p] = counters.get(p, 0) + 1
            names[r] = f"{p}{counters[p]}"
        self.spec_names = {n: r for r, n in names.items()}
        decls: dict[str, TypeDecl] = {}
        for r, n in names.items():
            if r not in self.size:
                raise UnsupportedModel(f"cannot tell the size of the features {n}")
            if r in self._fixed_inner:
                continue  # its axes are its outer type and a fixed k<n>
            if r in splits:
                outer, blocks = splits[r]
                on = names[self.root(outer)]
                decls[n] = TypeDecl(n, kinds[r], self.size[r] // blocks, on)
            else:
                decls[n] = TypeDecl(n, kinds.get(r, "perm"), self.size[r])
        for k, size in sorted(self.fixed.items()):
            decls[k] = TypeDecl(k, FIXED, size)
        # outer types first, so that `within:` names a type declared above it
        decls = dict(sorted(decls.items(), key=lambda kv: kv[1].within is not None))

        tensors, sources = [], {}
        for t in self.tensors:
            axes, shape = [], []
            for a in t.axes:
                for ax, n in self._expand(a, names, splits):
                    axes.append(ax)
                    shape.append(n)
            if problem := nesting_problem(tuple(axes), decls):
                raise UnsupportedModel(
                    f"{t.where}: {t.key} mixes the blocks (groups or heads) of its features "
                    f"({problem})"
                )
            if len(axes) > MAX_AXES:
                axes, shape = self._merge_fixed(axes, shape, decls)
            tensors.append(TensorDecl(t.name, tuple(axes)))
            sources[t.name] = Source(t.key, t.rows, tuple(shape), t.index)
        spec = Spec(name=name, types=decls, tensors=tuple(tensors), source="<module>")
        try:
            spec = parse_spec(dump_spec(spec), source=source)  # validates
        except QgenError as exc:  # a bug here: say so without the internal text's lines
            message = str(exc).splitlines()[0]
            raise UnsupportedModel(f"the spec read from {source} is invalid: {message}") from exc
        return WeightSpace(spec, sources)

    def _merge_fixed(self, axes: list, shape: list, decls: dict) -> tuple[list, list]:
        """Runs of adjacent fixed axes as one fixed axis of their product (Hiera's
        position embedding reads as 10 axes, most of them positions; a spec tensor has at
        most ``MAX_AXES``). No group acts on a fixed axis, so its index may be cut or
        joined freely; the source reads the state_dict tensor with the joined shape."""

        def fixed(ax: Axis) -> bool:
            decl = decls.get(ax.type)
            return decl is not None and decl.kind == FIXED and decl.within is None

        out_axes, out_shape = [], []
        for ax, n in zip(axes, shape, strict=True):
            if out_axes and fixed(ax) and fixed(out_axes[-1]) and not ax.dual:
                m = out_shape[-1] * n
                k = f"k{m}"
                self.fixed[k] = m
                decls.setdefault(k, TypeDecl(k, FIXED, m))
                out_axes[-1], out_shape[-1] = Axis(k, False), m
            else:
                out_axes.append(ax)
                out_shape.append(n)
        return out_axes, out_shape

    def _expand(self, a: Ax, names, splits) -> list[tuple[Axis, int]]:
        if a.part == "fixed":
            return [(Axis(a.t, False), self.fixed[a.t])]
        r, parity = self.find(a.t)
        dual = a.dual ^ parity
        if r not in splits:
            if a.part != "full":  # a frozen block structure: fixed axes of the block sizes
                blocks = self._frozen[r]
                n = blocks if a.part == "outer" else self.size[r] // blocks
                return [(Axis(f"k{n}", False), n)]
            return [(Axis(names[r], dual), self.size[r])]
        outer, blocks = splits[r]
        o = (Axis(names[self.root(outer)], dual), blocks)  # perm: dual acts the same
        i = (Axis(names[r], dual), self.size[r] // blocks)
        if r in self._fixed_inner:
            n = self._fixed_inner[r]
            i = (Axis(f"k{n}", False), n)
        return {"full": [o, i], "outer": [o], "inner": [i]}[a.part]
