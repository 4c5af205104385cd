"""Index types of tensor axes: what each axis of each tensor in the graph is.

Takes nothing but the sizes the op rules hand it and gives, for every axis of every
value, a tuple of *atoms*: the index types whose product (row-major) the axis is.
``[batch, tokens, 768]`` after ``view(b, t, 12, 64)`` has the atoms ``(h, "radix",
(12, 64), 0)`` and ``(h, "radix", (12, 64), 1)`` on its last two axes: the features of
``h`` split into 12 blocks of 64, decided lazily:

* when an operation picks blocks of a split axis one by one (``qkv.unbind(0)`` after
  ``reshape(b, t, 3, heads, d)``, ``torch.split``/``chunk`` along a whole type, a slice
  of a parameter's rows), the type becomes a *sum* of independent types, one per
  block (``q``, ``k``, ``v``; the branches of Res2Net): the group acts on each by an
  element of its own, and a tensor with an axis on the sum is read as one tensor per
  block (rows of a packed ``in_proj_weight``);
* when anything else meets it (a contraction, an elementwise tie, the end of the
  graph), it becomes a *nested* type (``TypeGraph.split_into``): the blocks may be
  permuted as wholes, each block has its own element inside (attention heads, the
  groups of a grouped convolution).

A type tied to a product of others (``conv -> flatten(1) -> Linear``: the Linear's
input axis is ``channels x height x width``) is *refined* into those atoms, so the
Linear's weight reads as ``[out, channels, height, width]``. An empty tuple is an axis
without a type: size 1, or broadcast (``expand``) — constant along it.

Alignments that do not fit (two products that factor differently) fall back to the
trivial group on every type involved (:meth:`Axes.fix`): always sound, and recorded
in :attr:`Axes.notes` so the user can see which symmetry was given up and where.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod

from qgen.decls import FIXED
from qgen.frommodel.typegraph import TypeGraph, UnsupportedModel
from qgen.kinds import lattice_top

__all__ = ["At", "Axes", "Dim"]


@dataclass(frozen=True)
class At:
    """One factor of an axis: the type ``t`` (its dual when ``dual``), whole
    (``part="full"``), one digit of a pending split into ``radix`` blocks
    (``part="radix"``), or the outer/inner index of a committed split."""

    t: str
    part: str = "full"
    dual: bool = False
    radix: tuple[int, ...] = ()
    digit: int = 0


Dim = tuple  # tuple[At, ...]


class Axes:
    """The union-find of index types (:class:`TypeGraph`) with sums, refinements and
    pending splits on top."""

    def __init__(self) -> None:
        self.types = TypeGraph()
        self.count = 0
        #: root -> the types of its blocks, in order (a direct sum)
        self.sums: dict[str, list[str]] = {}
        #: root -> the atoms it is the product of
        self.refine: dict[str, Dim] = {}
        #: root -> radices of a pending split
        self.pending: dict[str, tuple[int, ...]] = {}
        #: types read by a weight (contracted with one or made by one)
        self.features: set[str] = set()
        self.notes: list[str] = []
        #: root -> (outer, blocks) of a split undone into a sum at assembly
        self.unnested: dict[str, tuple[str, int]] = {}
        #: root -> (radix, block types) of a pending split cut into its blocks
        self._radix_blocks: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {}

    # -- types ----------------------------------------------------------------------------

    def fresh(self, size: int, kind: str | None = None, prefix: str = "h") -> At:
        self.count += 1
        return At(self.types.new(f"_t{self.count}", kind, size, prefix))

    def dim(self, size: int, kind: str | None = None) -> Dim:
        """A new axis of ``size``: its own type (none when ``size`` is 1)."""
        return () if size == 1 else (self.fresh(size, kind),)

    def size(self, a: At) -> int:
        r = self.types.root(a.t)
        n = self.types.size[r]
        if a.part == "radix":
            return a.radix[a.digit]
        blocks = self.types.split[r][1] if r in self.types.split else None
        if blocks is None and r in self.unnested:
            blocks = self.unnested[r][1]
        if a.part == "outer":
            return blocks
        if a.part == "inner":
            return n // blocks
        return n

    def dim_size(self, d: Dim) -> int:
        return prod(self.size(a) for a in self.norm(d))

    def mark(self, d: Dim) -> None:
        for a in self.norm(d):
            if a.part != "full" or self.types.root(a.t) not in self.sums:
                self.features.add(self.types.root(a.t))
            else:
                self.features.update(self.types.root(s) for s in self.sums[self.types.root(a.t)])

    def is_feature(self, t: str) -> bool:
        if not t:
            return False
        r = self.types.root(t)
        return any(self.types.root(f) == r for f in self.features)

    # -- normal form ---------------------------------------------------------------------

    def norm(self, d: Dim) -> Dim:
        """The atoms of ``d`` after refinements, ties and committed splits."""
        out = []
        for a in d:
            r, parity = self.types.find(a.t)
            dual = a.dual ^ parity
            if a.part == "full" and r in self.refine:
                out += [replace(x, dual=x.dual ^ dual) for x in self.norm(self.refine[r])]
                continue
            if a.part == "radix":
                if self.pending.get(r) == a.radix:
                    out.append(At(r, "radix", dual, a.radix, a.digit))
                    continue
                finer = _regroup(a.radix, self.pending.get(r, ()))
                if finer is not None:  # cut further since: the digits it became
                    new = self.pending[r]
                    out += [At(r, "radix", dual, new, k) for k in finer[a.digit]]
                    continue
                if r in self.types.split and len(a.radix) == 2:
                    out.append(At(r, "outer" if a.digit == 0 else "inner", dual))
                    continue
                if r in self.refine and len(self.refine[r]) == len(a.radix):  # refined split
                    x = self.norm((self.refine[r][a.digit],))
                    out += [replace(y, dual=y.dual ^ dual) for y in x]
                    continue
                out.append(At(r, "radix", dual, a.radix, a.digit))  # broken: fixed below
                continue
            out.append(At(r, a.part, dual))
        return tuple(out)

    def commit(self, d: Dim, where: str) -> Dim:
        """Pending splits in ``d`` become nested types (blocks permuted as wholes)."""
        for a in self.norm(d):
            if a.part != "radix":
                continue
            r = self.types.root(a.t)
            if self.pending.get(r) != a.radix:  # split some other way meanwhile
                self.fix_type(r, where, "is split into blocks in two ways")
                continue
            del self.pending[r]
            if len(a.radix) == 2:
                self.types.split_into(r, a.radix[0], where, prefix="head")
            else:  # several levels of blocks: kept as fixed factors
                parts = tuple(self.fresh(n, FIXED) for n in a.radix)
                self.refine[r] = parts
                self.types.restrict(r, FIXED)
        return self.norm(d)

    # -- restricting ---------------------------------------------------------------------

    def classes(self, d: Dim) -> list[str]:
        """The roots of the types an axis involves (every block of a sum)."""
        out = []
        atoms = self.norm(d)
        if any(a.part == "radix" and a.digit < len(a.radix) - 1 for a in atoms):
            atoms = self.commit(d, "a block index")  # the blocks as such are restricted
        for a in atoms:
            r = self.types.root(a.t)
            if a.part == "outer":
                out.append(self.types.root(self.types.split[r][0]))
            elif a.part == "full" and r in self.sums:
                out += [c for s in self.sums[r] for c in self.classes((At(s),))]
            else:
                out.append(r)
                if a.part == "full" and r in self.types.split:
                    out.append(self.types.root(self.types.split[r][0]))
        return out

    def _inside(self, d: Dim) -> bool:
        """Whether ``d`` is only the inside of blocks (a restriction of it leaves the
        blocks free to move)."""
        atoms = self.norm(d)
        return bool(atoms) and all(
            a.part == "inner" or (a.part == "radix" and a.digit == len(a.radix) - 1) for a in atoms
        )

    def restrict(self, d: Dim, kind: str) -> None:
        inside = self._inside(d)
        for r in self.classes(d):
            self.types.restrict(r, kind, inside)

    def fix(self, d: Dim, where: str, why: str) -> None:
        inside = self._inside(d)
        for r in self.classes(d):
            self.fix_type(r, where, why, inside)

    def fix_type(self, r: str, where: str, why: str, inside: bool = False) -> None:
        r = self.types.root(r)
        if self.types.kind[r] != FIXED and self.types.size.get(r, 0) > 1:
            self.notes.append(f"{where}: {why}; its axis keeps no symmetry")
        self.types.restrict(r, FIXED, inside)

    # -- tying ---------------------------------------------------------------------------

    def tie(self, d1: Dim, d2: Dim, where: str, dual: bool = False) -> None:
        """Axes ``d1`` and ``d2`` meet (added, multiplied elementwise, or contracted when
        ``dual``): the same types, or one the dual of the other."""
        a, b = self.norm(d1), self.norm(d2)
        if not a and not b:
            return
        if len(a) == 1 and len(b) == 1 and self._tie_atoms(a[0], b[0], where, dual):
            return
        # size-1 factors (left by a reshape) carry nothing
        a = tuple(z for z in a if self.size(z) != 1) or a
        b = tuple(z for z in b if self.size(z) != 1) or b
        if len(a) == 1 and len(b) == 1 and self._tie_atoms(a[0], b[0], where, dual):
            return
        for x, y in ((a, b), (b, a)):  # a whole fresh type against a product: refine it
            if len(x) == 1 and x[0].part == "full" and len(y) != 1 and self._refinable(x[0]):
                r = self.types.root(x[0].t)
                if r in {self.types.root(z.t) for z in y}:
                    continue  # a type is no product of itself and others: no refinement
                if self.types.size.get(r) == self.dim_size(y):
                    flip = x[0].dual ^ dual
                    self._refine(r, tuple(replace(z, dual=z.dual ^ flip) for z in y))
                    return
        sa, sb = [self.size(x) for x in a], [self.size(y) for y in b]
        if sa == sb:
            for x, y in zip(a, b, strict=True):
                if not self._tie_atoms(x, y, where, dual):
                    self.fix((x, y), where, "combines axes qgen cannot align")
            return
        a, b = self.commit(a, where), self.commit(b, where)
        if [self.size(x) for x in a] == [self.size(y) for y in b]:
            for x, y in zip(a, b, strict=True):
                if not self._tie_atoms(x, y, where, dual):
                    self.fix((x, y), where, "combines axes qgen cannot align")
            return
        self.fix(a + b, where, "combines axes that factor differently")

    def _refine(self, r: str, atoms: Dim) -> None:
        """Type ``r`` is from now on the product of ``atoms``; the group ``r`` was already
        restricted to restricts each atom: an element of the product acts on ``r``'s axis
        as the Kronecker product of the atoms' elements, and the groups of the lattice
        (fixed, perm, signed, scaled, orthogonal, gl) are closed under Kronecker products,
        so atoms of ``r``'s kind act on ``r`` within its kind. Without it the restriction
        would be lost: a piece of a fixed axis (``chunk`` inside a head, which keeps no
        symmetry) tied to a bias's head block must keep the bias's block fixed too."""
        self.refine[r] = atoms
        kind = self.types.kind[r]
        if kind != lattice_top():
            self.restrict(atoms, kind)

    def _refinable(self, a: At) -> bool:
        r = self.types.root(a.t)
        return r not in self.types.split and r not in self.sums and r not in self.pending

    def _tie_atoms(self, x: At, y: At, where: str, dual: bool) -> bool:
        if self.size(x) != self.size(y):
            raise UnsupportedModel(
                f"{where}: combines axes of sizes {self.size(x)} and {self.size(y)}"
            )
        rx, ry = self.types.root(x.t), self.types.root(y.t)
        d = x.dual ^ y.dual ^ dual
        if x.part == "radix" or y.part == "radix":
            if x.part == y.part == "radix" and (rx, x.radix, x.digit) == (ry, y.radix, y.digit):
                if d and x.digit == len(x.radix) - 1:  # blocks are permuted: no dual
                    self.types.tie(rx, rx, where, dual=True)
                return True
            last = len(x.radix) - 1
            if x.part == y.part == "radix" and x.radix == y.radix and x.digit == y.digit == last:
                # the same block of two split types: tie the types (and their splits)
                # (the split stays pending on whichever root the tie keeps: the type
                # made first, which may be either; BART's k_proj is declared before q_proj)
                self.pending.pop(rx, None)
                self.pending.pop(ry, None)
                self.pending[self.types.tie(rx, ry, where, dual=d)] = x.radix
                return True
            cx, cy = self.commit((x,), where), self.commit((y,), where)
            if len(cx) != 1 or len(cy) != 1 or "radix" in (cx[0].part, cy[0].part):
                self.fix(cx + cy, where, "combines blocks split in different ways")
                return True
            return self._tie_atoms(cx[0], cy[0], where, dual)
        sx, sy = rx in self.sums, ry in self.sums
        if sx or sy:
            if sx and sy and x.part == y.part == "full":
                bx, by = self.sums[rx], self.sums[ry]
                sizes = [[self.types.size[self.types.root(s)] for s in z] for z in (bx, by)]
                if sizes[0] != sizes[1]:
                    return False
                for s, t in zip(bx, by, strict=True):
                    self.tie((At(s, dual=x.dual),), (At(t, dual=y.dual),), where, dual)
                return True
            if x.part == y.part == "full":  # a plain type meets a sum: it becomes that sum
                plain, summed = (y, x) if sx else (x, y)
                if self._refinable(plain):
                    r = self.types.root(plain.t)
                    self._refine(r, (replace(summed, dual=summed.dual ^ plain.dual ^ dual),))
                    return True
            return False
        if x.part == y.part:
            if x.part == "inner" and self.types.size[rx] != self.types.size[ry]:
                # blocks of one size in types split into different numbers of blocks
                # (a rotary table of one head's size multiplies 4 query heads and 2 key
                # heads): no element of the one is an element of the other; the caller
                # fixes both (no symmetry inside their blocks; the blocks still move)
                return False
            if x.part == "outer":
                ox, oy = self.types.split[rx][0], self.types.split[ry][0]
                self.types.tie(ox, oy, where)
            else:
                self.types.tie(rx, ry, where, dual=d)
            return True
        for p, q in ((x, y), (y, x)):  # a whole type that is one part of a split one
            if p.part == "full" and self._refinable(p):
                r = self.types.root(p.t)
                self._refine(r, (replace(q, dual=q.dual ^ p.dual ^ dual),))
                return True
        return False

    # -- splitting -----------------------------------------------------------------------

    def split_dim(self, d: Dim, sizes: list[int], where: str) -> list[Dim] | None:
        """``d`` cut into consecutive pieces of ``sizes``: along factors where the cut
        falls between them, else the type becomes a sum of one type per piece (or, for a
        pending split cut block by block, the sum of its blocks). None when neither fits."""
        atoms = self.norm(d)
        if len(sizes) == 1:
            return [atoms]
        # cuts between the leading factor's values: pieces of the outer digit
        if len(atoms) >= 1:
            head, rest = atoms[0], atoms[1:]
            inner = prod(self.size(a) for a in rest)
            if inner > 0 and all(s % inner == 0 for s in sizes) and len(rest) > 0:
                pieces = self.split_dim((head,), [s // inner for s in sizes], where)
                if pieces is not None:
                    return [p + rest for p in pieces]
        if len(atoms) == 1:
            a = atoms[0]
            r = self.types.root(a.t)
            if a.part == "full" and self._refinable(a):
                blocks = tuple(self.fresh(n).t for n in sizes)
                self.sums[r] = list(blocks)
                for b in blocks:
                    self.types.restrict(b, self.types.kind[r])
                return [(At(b, dual=a.dual),) for b in blocks]
            if a.part == "radix" and a.digit == 0 and self.pending.get(r) == a.radix:
                if all(s == 1 for s in sizes) and len(sizes) == a.radix[0]:
                    rest = a.radix[1:]
                    n = prod(rest)
                    blocks = tuple(self.fresh(n).t for _ in sizes)
                    del self.pending[r]
                    self.sums[r] = list(blocks)
                    self._radix_blocks[r] = (a.radix, blocks)
                    return [() for _ in sizes]
            if a.part == "full" and r in self.sums:
                mine = [self.types.size[self.types.root(s)] for s in self.sums[r]]
                if mine == list(sizes):
                    return [(At(s, dual=a.dual),) for s in self.sums[r]]
        return None

    def block_of(self, dims: tuple, digit0: At, index: int) -> tuple:
        """The axes ``dims`` for block ``index`` of a pending split that was cut into its
        blocks (``q = qkv[0]``): the remaining digits become digits of that block's type."""
        return tuple(self._block_of(d, digit0, index) for d in dims)

    def _block_of(self, d: Dim, digit0: At, index: int) -> Dim:
        r = self.types.root(digit0.t)
        radix, blocks = self._radix_blocks[r]
        b = blocks[index]
        rest = radix[1:]
        out = []
        for a in d:
            if a.part == "radix" and self.types.root(a.t) == r and a.radix == radix:
                if len(rest) == 1:
                    out.append(At(b, dual=a.dual))
                else:
                    self.pending.setdefault(self.types.root(b), rest)
                    out.append(At(b, "radix", a.dual, rest, a.digit - 1))
            else:
                out.append(a)
        return tuple(out)

    # -- reshaping -----------------------------------------------------------------------

    def reshape(self, dims: list[Dim], shape: list[int], where: str) -> list[Dim]:
        """The axes of a tensor with axes ``dims`` viewed as ``shape``: factors regroup
        where they fit; a whole type cut into ``a x b`` gets a pending split; size-1 axes
        have no type; anything else fixes the types it touches."""
        atoms = [a for d in dims for a in self.norm(d)]
        queue = list(atoms)
        out: list[Dim] = []
        for s in shape:
            cur: list[At] = []
            p = 1
            while p < s and queue:
                a = queue[0]
                n = self.size(a)
                if n == 1:
                    queue.pop(0)
                    cur.append(a)
                    continue
                if s % (p * n) == 0:
                    queue.pop(0)
                    cur.append(a)
                    p *= n
                    continue
                need = s // p
                if s % p == 0 and n % need == 0:
                    first, second = self._cut(a, need, where)
                    queue[0:1] = [first, second]
                    cur.append(queue.pop(0))
                    p *= need
                    continue
                self.fix(tuple(atoms), where, "reshapes axes across their factors")
                return [self.dim(n, FIXED) for n in shape]
            if p != s:
                self.fix(tuple(atoms), where, "reshapes axes across their factors")
                return [self.dim(n, FIXED) for n in shape]
            while queue and self.size(queue[0]) == 1 and (s != 1 or not cur):
                cur.append(queue.pop(0))
                if s != 1:
                    break
            out.append(tuple(cur))
        if queue:  # trailing size-1 factors
            if out:
                out[-1] = out[-1] + tuple(queue)
            else:
                self.fix(tuple(queue), where, "drops a size-1 axis")
        return out

    def _cut(self, a: At, first: int, where: str) -> tuple[At, At]:
        """``a`` (of size ``first * m``) as two factors ``first`` and ``m``."""
        r = self.types.root(a.t)
        n = self.size(a)
        radix = (first, n // first)
        if a.part == "full" and self.pending.get(r, (0,))[0] == first:  # cut the same way
            new = self.pending[r]
            if len(new) == 2:
                return At(r, "radix", a.dual, new, 0), At(r, "radix", a.dual, new, 1)
        if a.part == "full" and r in self.types.split and self.types.split[r][1] == first:
            return At(r, "outer", a.dual), At(r, "inner", a.dual)
        if a.part == "full" and self._refinable(a):
            self.pending[r] = radix
            return At(r, "radix", a.dual, radix, 0), At(r, "radix", a.dual, radix, 1)
        if a.part == "radix" and self.pending.get(r) == a.radix:
            # a further cut of one digit: the split gets one more level
            new = a.radix[: a.digit] + radix + a.radix[a.digit + 1 :]
            self.pending[r] = new
            return (
                At(r, "radix", a.dual, new, a.digit),
                At(r, "radix", a.dual, new, a.digit + 1),
            )
        if self.types.kind[r] == FIXED or a.part != "full":
            self.fix((a,), where, "cuts an axis into factors")
            b, c = self.fresh(first, FIXED), self.fresh(n // first, FIXED)
            self.refine.setdefault(r, (b, c)) if a.part == "full" else None
            return b, c
        (x,) = self.commit((a,), where) if a.part == "radix" else (a,)
        self.fix((x,), where, "cuts an axis into factors")
        return self.fresh(first, FIXED), self.fresh(n // first, FIXED)


def _regroup(old: tuple[int, ...], new: tuple[int, ...]) -> list[list[int]] | None:
    """Which digits of ``new`` each digit of ``old`` is made of (``new`` cuts ``old``'s
    digits further), or None."""
    if not new or len(new) <= len(old) or prod(old) != prod(new):
        return None
    groups, k = [], 0
    for n in old:
        group, p = [], 1
        while p < n and k < len(new):
            group.append(k)
            p *= new[k]
            k += 1
        if p != n:
            return None
        groups.append(group)
    return groups
