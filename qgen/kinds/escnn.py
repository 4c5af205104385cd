"""``escnn``: a compact group from escnn acting on a fixed axis through a representation.

A type ``{size: d, group: {escnn: dihedral, N: 4}, rep: standard}`` is a fixed-size
axis on which a group ``G`` acts by an orthogonal representation ``rho`` (so plain and
dual axes transform alike). A block whose axes of the type carry ``p`` variance +1
and ``q`` variance -1 axes has the commutant ``Hom_G(rho^{(x)q}, rho^{(x)p})``. By
Schur's lemma on the isotypic decompositions (escnn's irreps and change of basis
``rho = Q D Q^-1``) its dimension is ``sum_psi m_out(psi) m_in(psi) dim End(psi)``
with ``dim End`` 1, 2 or 4 for real, complex or quaternionic irreps, and a basis
is ``Q_out M Q_in^-1`` for ``M`` an endomorphism of one irrep placed at one pair of
equal irreps.

``rep: {grid: [kx, ky]}`` ties two fixed types of equal size ``k``: the group
(cyclic or dihedral with ``N`` in 1, 2, 4) permutes the ``k x k`` cells by
rotating and reflecting the square about its centre. For a permutation
representation the commutant of ``m`` such axis pairs has the orbit basis
(indicator of each orbit of ``G`` on ``m``-tuples of cells); its dimension is
``(1/|G|) sum_g fix(g)^m`` (Burnside), exact and cheap, so escnn is not needed for it.

escnn is imported lazily: counting grids and generated modules never need it.
Schur decompositions are cached on disk (``$QGEN_CACHE`` or ``~/.cache/qgen``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import numpy as np

from qgen.decls import Axis, TypeDecl
from qgen.errors import SpecError
from qgen.kinds.base import DeclEntry, Generator, Variances
from qgen.kinds.escnn_backend import EscnnMissing, load_escnn
from qgen.kinds.fixed import Fixed, FixedAxisKind

__all__ = [
    "FAMILIES",
    "EscnnKind",
    "EscnnRep",
    "cache_dir",
    "grid_permutation",
]

#: family -> (escnn factory, finite, takes N)
FAMILIES: dict[str, tuple[str, bool]] = {
    "cyclic": ("cyclic_group", True),
    "dihedral": ("dihedral_group", True),
    "so2": ("so2_group", False),
    "o2": ("o2_group", False),
    "so3": ("so3_group", False),
    "o3": ("o3_group", False),
}
#: rotation orders N whose rotations map a square grid of cells onto itself
GRID_ORDERS = (1, 2, 4)
#: what a spec may ask of escnn (checked while parsing, before escnn builds anything):
#: the rotation order N of a finite group; the summands of a direct sum; the largest
#: irrep id (frequency); the dimension of a representation (a block's commutant lives in
#: the tensor product of its axes' representations: dim^axes); the side k of a grid (a
#: block between two grid tensors has a basis of about k^8 / |G| entries: 0.8 million
#: for k = 9 under D4, 320 million for k = 15)
MAX_N = 64
MAX_SUMMANDS = 16
MAX_IRREP = 32
MAX_REP_DIM = 128
MAX_GRID_SIDE = 9
_SNAP_TOL = 1e-11


@dataclass(frozen=True)
class EscnnRep:
    """A group from escnn and a representation of it, as plain data.

    ``summands`` is a direct sum of ``("standard",)``, ``("regular",)``,
    ``("trivial",)`` and ``("irrep", id)``; or ``grid`` is the side ``k`` of a
    ``k x k`` kernel grid that the group permutes (``summands`` empty).
    """

    family: str
    N: int | None = None
    summands: tuple[tuple, ...] = ()
    grid: int | None = None

    @property
    def finite(self) -> bool:
        return FAMILIES[self.family][1]

    def describe(self) -> str:
        group = {"cyclic": f"C{self.N}", "dihedral": f"D{self.N}"}.get(self.family)
        group = group or {"so2": "SO(2)", "o2": "O(2)", "so3": "SO(3)", "o3": "O(3)"}[self.family]
        if self.grid is not None:
            return f"{group} on a {self.grid}x{self.grid} grid"
        parts = [s[0] if s[0] != "irrep" else f"irrep{list(s[1])}" for s in self.summands]
        return f"{group} {' + '.join(parts)}"

    def key(self) -> str:
        return json.dumps(
            [self.family, self.N, [list(map(_jsonable, s)) for s in self.summands], self.grid]
        )


def _jsonable(x):
    return list(x) if isinstance(x, tuple) else x


# --------------------------------------------------------------------------- #
# escnn objects (lazy)


def _escnn_group(rep: EscnnRep, band: int = 1):
    """The escnn group; continuous groups with band limit ``band`` (max frequency)."""
    factory = getattr(load_escnn(), FAMILIES[rep.family][0])
    return factory(rep.N) if rep.finite else factory(max(band, 1))


def _summand_rep(group, rep: EscnnRep, summand: tuple):
    what = summand[0]
    if what == "standard":
        if rep.family == "cyclic":
            return group.irrep(1)
        if rep.family == "dihedral":
            return group.irrep(1, 1)
        return group.standard_representation()
    if what == "regular":
        return group.regular_representation
    if what == "trivial":
        return group.trivial_representation
    return group.irrep(*summand[1])


def max_frequency(rep: EscnnRep) -> int:
    """The largest frequency (SO(2), O(2)) or degree (SO(3), O(3)) in the rep."""
    top = 1
    for s in rep.summands:
        if s[0] == "irrep":
            top = max(top, int(s[1][-1]))
    return top


def escnn_representation(rep: EscnnRep, band: int = 1):
    """The escnn representation of ``rep`` (not for grids)."""
    eg = load_escnn()
    group = _escnn_group(rep, band)
    reps = [_summand_rep(group, rep, s) for s in rep.summands]
    return reps[0] if len(reps) == 1 else eg.directsum(reps)


# --------------------------------------------------------------------------- #
# Grids: the permutation action of rotations and reflections on k x k cells


def _plane_matrix(family: str, N: int, value) -> np.ndarray:
    """escnn's frequency-1 action on the plane: ``R(2 pi k / N) F^f``, F = diag(1, -1)."""
    f, k = (0, value) if family == "cyclic" else value
    theta = 2 * math.pi * k / N
    c, s = round(math.cos(theta)), round(math.sin(theta))
    r = np.array([[c, -s], [s, c]], dtype=np.int64)
    return r @ np.diag([1, -1]) if f else r


def grid_permutation(family: str, N: int, value, k: int) -> list[int]:
    """``perm`` with ``(rho(g) K)[perm[u]] = K[u]`` over flat cells ``u = i * k + j``.

    Cell ``(i, j)`` (``i`` along the first grid axis) sits at ``(i - c, j - c)``,
    ``c = (k - 1) / 2``, and moves to ``R (i - c, j - c)``.
    """
    r = _plane_matrix(family, N, value)
    perm = []
    for i in range(k):
        for j in range(k):
            u = r @ np.array([2 * i - (k - 1), 2 * j - (k - 1)])
            perm.append(int((u[0] + k - 1) // 2) * k + int((u[1] + k - 1) // 2))
    return perm


def _finite_values(rep: EscnnRep) -> list:
    if rep.family == "cyclic":
        return list(range(rep.N))
    return [(f, k) for f in (0, 1) for k in range(rep.N)]


@cache
def grid_permutations(rep: EscnnRep) -> tuple[tuple[int, ...], ...]:
    """The permutation of cells of every group element, in escnn's element order."""
    return tuple(
        tuple(grid_permutation(rep.family, rep.N, v, rep.grid)) for v in _finite_values(rep)
    )


def _grid_orbits(rep: EscnnRep, m: int) -> np.ndarray:
    """Orbit label of every ``m``-tuple of cells, numbered by first appearance."""
    d = rep.grid**2
    perms = np.array(grid_permutations(rep))
    labels = -np.ones((d,) * m, dtype=np.int64)
    n = 0
    for idx in itertools.product(range(d), repeat=m):
        if labels[idx] >= 0:
            continue
        for p in perms:
            labels[tuple(p[list(idx)])] = n
        n += 1
    return labels


@cache
def grid_count(rep: EscnnRep, m: int) -> int:
    """Burnside: ``(1/|G|) sum_g fix(g)^m`` orbits on ``m``-tuples of cells."""
    perms = np.array(grid_permutations(rep))
    fixed = (perms == np.arange(rep.grid**2)).sum(axis=1)
    total = sum(int(f) ** m for f in fixed)
    assert total % len(perms) == 0
    return total // len(perms)


# --------------------------------------------------------------------------- #
# Schur route for linear representations, cached on disk


def cache_dir() -> Path:
    return Path(os.environ.get("QGEN_CACHE") or Path.home() / ".cache" / "qgen") / "escnn"


def _cached(key: str, compute):
    path = cache_dir() / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
    try:
        return json.loads(path.read_text())["value"]
    except (OSError, ValueError, KeyError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "value": value}))
        tmp.replace(path)
    except OSError:
        pass
    return value


def _power(rep: EscnnRep, p: int, band: int):
    base = escnn_representation(rep, band)
    if p == 0:
        return base.group.trivial_representation
    out = base
    for _ in range(p - 1):
        out = out.tensor(base)
    return out


def schur(rep: EscnnRep, p: int, q: int) -> tuple[int, list]:
    """``(dim, basis)`` of ``Hom_G(rho^{(x)q}, rho^{(x)p})``; basis ``(dim, d^p, d^q)``."""

    def compute():
        band = max_frequency(rep) * max(p + q, 1)
        out, inp = _power(rep, p, band), _power(rep, q, band)
        group = out.group
        mults_out, mults_in = Counter(out.irreps), Counter(inp.irreps)
        dim = sum(
            mults_out[i] * mults_in[i] * group.irrep(*i).sum_of_squares_constituents
            for i in mults_out
        )
        mats = []
        offsets_out = _offsets(group, out.irreps)
        offsets_in = _offsets(group, inp.irreps)
        for (i_out, a), (i_in, b) in itertools.product(offsets_out, offsets_in):
            if i_out != i_in:
                continue
            irrep = group.irrep(*i_out)
            for e in irrep.endomorphism_basis():
                m = np.zeros((out.size, inp.size))
                m[a : a + irrep.size, b : b + irrep.size] = e
                mats.append(out.change_of_basis @ m @ inp.change_of_basis_inv)
        assert len(mats) == dim, (len(mats), dim)
        basis = canonical_basis(np.array(mats).reshape(dim, -1)) if mats else np.zeros((0, 1))
        return {"dim": dim, "basis": basis.tolist()}

    value = _cached(json.dumps(["schur", rep.key(), p, q]), compute)
    return value["dim"], value["basis"]


def _offsets(group, irreps) -> list[tuple[tuple, int]]:
    out, a = [], 0
    for i in irreps:
        out.append((tuple(i), a))
        a += group.irrep(*i).size
    return out


def snap(x: float) -> float:
    """``x`` rounded to a nearby fraction with a small denominator, if within 1e-11."""
    f = Fraction(x).limit_denominator(64)
    return float(f) if abs(float(f) - x) <= _SNAP_TOL else float(x)


def canonical_basis(rows: np.ndarray) -> np.ndarray:
    """The reduced row echelon form of ``rows`` (independent), entries snapped.

    Deterministic for a given space, whatever basis escnn returned: the RREF of a
    subspace is unique, and for the commutants here it is rational (0, +-1, 1/2...).
    """
    a = np.array(rows, dtype=np.float64)
    k, n = a.shape
    r = 0
    for c in range(n):
        if r == k:
            break
        pivot = r + int(np.argmax(np.abs(a[r:, c])))
        if abs(a[pivot, c]) < 1e-9:
            continue
        a[[r, pivot]] = a[[pivot, r]]
        a[r] /= a[r, c]
        for i in range(k):
            if i != r:
                a[i] -= a[i, c] * a[r]
        r += 1
    assert r == k, "commutant basis is not independent"
    return np.vectorize(snap)(a)


# --------------------------------------------------------------------------- #


class EscnnKind(FixedAxisKind):
    """A group from escnn acting on a fixed axis (or a pair of grid axes) by ``rep``."""

    name = "escnn"
    summary = "a group from escnn (cyclic, dihedral, so2, o2, so3, o3) through a representation"
    action = "matrix"
    family = True
    entry_keys = {"rep": "'rep' needs an escnn group, e.g. group: {escnn: dihedral, N: 4}"}

    def __init__(self, rep: EscnnRep | None = None) -> None:
        self.rep = rep

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EscnnKind) and other.rep == self.rep

    def __hash__(self) -> int:
        return hash(("escnn", self.rep))

    # Every escnn representation here is orthogonal, so norms over its axes are invariant.
    # A grid permutes cells (pointwise functions commute with that); other representations
    # mix the coordinates of an axis. The kind acts on a fixed axis (or a pair of grid
    # axes) jointly, so it allows neither centring nor pooling one axis on its own.
    norm_invariant = True

    @property
    def pointwise(self) -> str | None:  # type: ignore[override]
        return "any" if self.rep is not None and self.rep.grid is not None else None

    def __repr__(self) -> str:
        return f"<group kind escnn: {self.rep.describe() if self.rep else '-'}>"

    def describe(self) -> str:
        return self.rep.describe() if self.rep is not None else self.name

    count_heading = "escnn types (one dense commutant factor per block):"

    def count_note(self, decl: TypeDecl) -> str | None:
        rep = decl.rep
        if decl.tie is not None:
            how = f"on ({decl.tie[0]}, {decl.tie[1]}): orbit counting (Burnside), exact"
        else:
            how = f"dim {decl.size}: Schur's lemma on escnn's irreps"
            if not rep.finite:
                how += ", band limit (frequency) x (axes in the block)"
        return f"{rep.describe()} {how}"

    def generated_sampler(self, decl: TypeDecl) -> tuple[str, tuple, object] | None:
        """Finite groups: a uniformly random row of the exact element matrices; SO(2)/O(2):
        a uniform angle (and reflection), the matrix of escnn's irreps built in torch;
        SO(3)/O(3): a Haar-random rotation on standard and trivial summands (their other
        irreps would need Wigner matrices, so they are refused)."""
        rep = decl.rep
        if rep.finite:
            return "_sample_table", (), np.array(self.for_decl(decl).elements())
        if rep.family in ("so2", "o2"):
            irreps = [_planar_summand(rep.family, s) for s in rep.summands]
            return "_sample_planar", (irreps, rep.family == "o2"), None
        bad = [s for s in rep.summands if s[0] not in ("standard", "trivial")]
        if bad:
            raise SpecError(
                f"type {decl.name}: generated code samples {rep.describe()} only with "
                "standard and trivial summands (rotation matrices); irreps of SO(3) and "
                "O(3) (Wigner matrices) need escnn, which generated modules never import",
            )
        return "_sample_spatial", ([s[0] for s in rep.summands], rep.family == "so3"), None

    def for_decl(self, decl: TypeDecl) -> EscnnKind:
        return _configured(decl.rep) if decl.rep is not None else self

    # -- declarations: ``group: {escnn: FAMILY, N: n}`` with ``rep:`` ------------------

    def parse_decl(self, entry: DeclEntry) -> TypeDecl:
        if not isinstance(entry.group, dict):
            entry.fail(
                "an escnn group is a mapping, e.g. group: {escnn: dihedral, N: 4}, "
                "with rep: standard",
                "group",
            )
        family, n = parse_group(entry.group, lambda message: entry.fail(message, "group"))
        if not entry.has("rep"):
            entry.fail("an escnn type needs a representation, e.g. rep: standard")
        rep_data = entry.data("rep")
        rep, tie = parse_rep(family, n, rep_data, lambda message: entry.fail(message, "rep"))
        size = entry.size()
        if tie is None:
            dim = rep_size(rep, lambda message: entry.fail(message, "rep"))
            if dim > MAX_REP_DIM:
                entry.fail(
                    f"the representation has dimension {dim:,}, past the limit of {MAX_REP_DIM}",
                    "rep",
                )
            if size is not None and size != dim:
                entry.fail(
                    f"size {size} does not match the representation's dimension {dim}", "size"
                )
            size = dim
        elif size is not None:
            entry.fail("a grid type takes its size from its two axes; drop 'size'", "size")
        group = {"escnn": family, **({"N": n} if n else {})}
        return TypeDecl(
            entry.name, self.name, size, rep=rep, tie=tie, rep_data=rep_data, group_data=group
        )

    def link_decl(
        self, decl: TypeDecl, entry: DeclEntry, types: Mapping[str, TypeDecl]
    ) -> TypeDecl:
        """A grid: its two types declared, fixed, tied to no earlier grid, of equal size."""
        if decl.tie is None:
            return decl

        def fail(message: str):
            entry.fail(message, "rep", "grid")

        for t in decl.tie:
            if t not in types:
                fail(f"grid names undeclared type {t!r}")
            if types[t].kind != Fixed.name:
                fail(f"grid axis type {t!r} must be a fixed type (a size, no group)")
            for other in types.values():
                if other.name == decl.name:
                    break
                if other.tie is not None and t in other.tie:
                    fail(f"type {t!r} is already tied to grid {other.name!r}")
        k0, k1 = (types[t].size for t in decl.tie)
        if max(k0, k1) > MAX_GRID_SIDE:
            fail(
                f"a grid of side {max(k0, k1):,} is past the limit of {MAX_GRID_SIDE} (a block's "
                f"basis on two grids has about side^8 / |G| entries)"
            )
        if k0 != k1:
            fail(
                f"a grid needs a square kernel; {decl.tie[0]} has size {k0}, "
                f"{decl.tie[1]} size {k1}"
            )
        rep = EscnnRep(decl.rep.family, decl.rep.N, grid=k0)
        return dataclasses.replace(decl, size=k0 * k0, rep=rep)

    def axes_problem(self, decl: TypeDecl, axes: tuple[Axis, ...]) -> str | None:
        """A grid acts on pairs of axes: a tensor with an axis of a grid's types has exactly
        one axis of each (two axes when both are the same type); the grid type is no axis."""
        if decl.tie is None:
            return None
        if any(a.type == decl.name for a in axes):
            return (
                f"type {decl.name!r} is a grid over {decl.tie[0]} and {decl.tie[1]}; "
                "use those axes in tensors"
            )
        kx, ky = decl.tie
        nx, ny = (sum(a.type == t for a in axes) for t in decl.tie)
        if (nx or ny) and ((kx != ky and (nx, ny) != (1, 1)) or (kx == ky and nx != 2)):
            return (
                f"grid {decl.name!r} acts on one {kx} axis and one {ky} axis together; "
                f"this tensor has {nx} {kx} and {ny} {ky} axes"
            )
        return None

    @property
    def dim(self) -> int:
        """Dimension of the representation (the axis size; ``k^2`` for a grid)."""
        if self.rep.grid is not None:
            return self.rep.grid**2
        return escnn_representation(self.rep).size

    def count(self, variances: Variances, n: int | None = None) -> int:
        if self.rep.grid is not None:
            return grid_count(self.rep, len(variances))
        p = sum(1 for v in variances if v > 0)
        return schur(self.rep, p, len(variances) - p)[0]

    def basis(self, variances: Variances) -> np.ndarray:
        """The commutant basis as tensors ``(count, d, ..., d)`` over the axes, in order."""
        return _basis(self, tuple(variances))

    def elements(self) -> list[np.ndarray]:
        """Matrices of every element of a finite group (escnn's order)."""
        if self.rep.grid is not None:
            d = self.dim
            return [np.eye(d)[:, list(p)] for p in grid_permutations(self.rep)]
        r = escnn_representation(self.rep)
        return [np.vectorize(snap)(r(r.group.element(v))) for v in _finite_values(self.rep)]

    def generators(self, n: int) -> list[Generator]:
        """Every element for finite groups; for continuous ones a fixed set of elements
        that generates a dense subgroup (irrational rotations, plus a reflection)."""
        import torch

        if self.rep.finite:
            mats = self.elements()
        else:
            r = escnn_representation(self.rep, max_frequency(self.rep))
            group = r.group
            state = np.random.get_state()
            np.random.seed(12345)
            try:
                elements = [group.sample() for _ in range(3)]
            finally:
                np.random.set_state(state)
            if self.rep.family == "so2":
                elements = [group.element(1.0)]
            elif self.rep.family == "o2":
                elements = [group.element((0, 1.0)), group.element((1, 0.0))]
            elif self.rep.family == "o3":
                flip = group.element((1, group.identity.value[1]))
                elements = [*elements, flip]
            mats = [r(e) for e in elements]
        return [Generator(torch.tensor(np.asarray(m), dtype=torch.float64)) for m in mats]


@cache
def _configured(rep: EscnnRep) -> EscnnKind:
    return EscnnKind(rep)


@cache
def _basis(kind: EscnnKind, variances: tuple[int, ...]) -> np.ndarray:
    m = len(variances)
    d = kind.dim
    if kind.rep.grid is not None:
        labels = _grid_orbits(kind.rep, m)
        return np.stack([(labels == i).astype(np.float64) for i in range(int(labels.max()) + 1)])
    plus = [i for i, v in enumerate(variances) if v > 0]
    minus = [i for i, v in enumerate(variances) if v <= 0]
    count, rows = schur(kind.rep, len(plus), len(minus))
    b = np.array(rows, dtype=np.float64).reshape(count, *(d,) * m)
    order = plus + minus  # axis t of b is block axis order[t]
    return np.transpose(b, [0, *(1 + order.index(i) for i in range(m))])


# --------------------------------------------------------------------------- #
# Spec syntax (:meth:`EscnnKind.parse_decl` hands plain data and a ``fail(message)``)


def parse_group(data: object, fail) -> tuple[str, int | None]:
    """``{escnn: FAMILY, N: n}`` -> ``(family, N)``; N only (and required) for finite groups."""
    if not isinstance(data, dict) or "escnn" not in data:
        fail("an escnn group is written {escnn: FAMILY, N: n}, e.g. {escnn: dihedral, N: 4}")
    unknown = [k for k in data if k not in ("escnn", "N")]
    if unknown:
        fail(f"unknown key '{unknown[0]}' in the group; allowed keys: escnn, N")
    family = data["escnn"]
    if family not in FAMILIES:
        fail(f"unknown escnn group {family!r}; choose one of: {', '.join(FAMILIES)}")
    n = data.get("N")
    if FAMILIES[family][1]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            fail(f"{family} needs N, a positive integer (the rotation order), got {n!r}")
        if n > MAX_N:
            fail(f"N = {n:,} is past the limit of {MAX_N} for the rotation order")
    elif n is not None:
        fail(f"{family} is a continuous group and takes no N")
    return family, n


def parse_rep(family: str, n: int | None, data: object, fail) -> tuple[EscnnRep, tuple | None]:
    """The ``rep:`` entry: ``standard``, ``regular``, ``trivial``, ``{irrep: id}``, a list
    of those (a direct sum), or ``{grid: [kx, ky]}``. Returns the rep and the grid's types."""
    if isinstance(data, dict) and "grid" in data:
        if len(data) != 1:
            fail("a grid representation is written {grid: [kx, ky]} alone")
        tie = data["grid"]
        if not (isinstance(tie, list) and len(tie) == 2 and all(isinstance(t, str) for t in tie)):
            fail(f"grid takes two fixed type names, e.g. {{grid: [kx, ky]}}; got {tie!r}")
        if family not in ("cyclic", "dihedral") or n not in GRID_ORDERS:
            fail(
                "a square grid is permuted only by cyclic or dihedral groups with N in 1, 2, 4 "
                f"(got {family} N={n}); other rotations do not map cells to cells"
            )
        return EscnnRep(family, n), (tie[0], tie[1])
    items = data if isinstance(data, list) else [data]
    if not items:
        fail("an empty direct sum; list at least one representation")
    if len(items) > MAX_SUMMANDS:
        fail(f"a direct sum of {len(items)} representations; the limit is {MAX_SUMMANDS}")
    summands = []
    for item in items:
        if item in ("standard", "regular", "trivial"):
            if item == "regular" and not FAMILIES[family][1]:
                fail(f"'regular' needs a finite group; {family} is continuous (use irreps)")
            if item == "standard" and family in ("cyclic", "dihedral") and n < 3:
                fail(f"'standard' (rotations of the plane) needs N >= 3; write irreps for N={n}")
            summands.append((item,))
        elif isinstance(item, dict) and set(item) == {"irrep"}:
            ident = item["irrep"]
            ident = tuple(ident) if isinstance(ident, list) else (ident,)
            if not ident or not all(isinstance(i, int) and not isinstance(i, bool) for i in ident):
                fail(f"an irrep id is an integer or a list of integers, got {item['irrep']!r}")
            if len(ident) > 2 or max(abs(i) for i in ident) > MAX_IRREP:
                fail(
                    f"irrep id {item['irrep']!r} is past the limits (at most 2 integers, "
                    f"each at most {MAX_IRREP})"
                )
            summands.append(("irrep", ident))
        else:
            fail(
                f"unknown representation {item!r}; use standard, regular, trivial, "
                "{irrep: ID}, a list of these (direct sum), or {grid: [kx, ky]}"
            )
    return EscnnRep(family, n, tuple(summands)), None


def rep_size(rep: EscnnRep, fail) -> int:
    """Dimension of a (non-grid) rep; needs escnn for irreps, says how to get it."""
    try:
        load_escnn()
    except EscnnMissing as exc:
        fail(str(exc))
    try:
        return int(escnn_representation(rep, max_frequency(rep)).size)
    except Exception as exc:  # escnn raises assorted errors for unknown irrep ids
        fail(f"escnn cannot build {rep.describe()}: {type(exc).__name__}: {exc}")
        raise


def escnn_grid_count(rep: EscnnRep, rotations: int | None = None) -> int:
    """``dim Hom_G(rho, rho)`` of a grid from escnn's own (dense, numeric) decomposition of
    the permutation representation, optionally restricted to the rotations of order
    ``rotations``: the cross-check of orbit counting. Cached on disk; costly for large
    grids (about dim^6), so never on the build path."""

    def compute() -> int:
        eg = load_escnn()
        group = _escnn_group(rep)
        d = rep.grid**2
        mats = {
            group.element(v): np.eye(d)[:, list(p)]
            for v, p in zip(_finite_values(rep), grid_permutations(rep), strict=True)
        }
        rho = eg.representation.build_from_discrete_group_representation(
            mats, f"grid{rep.grid}", group, supported_nonlinearities=[]
        )
        if rotations is not None:
            sub = (None, rotations) if rep.family == "dihedral" else rotations
            rho = rho.restrict(sub)
        mult = Counter(rho.irreps)
        return sum(m * m * rho.group.irrep(*i).sum_of_squares_constituents for i, m in mult.items())

    return _cached(json.dumps(["grid-escnn", rep.key(), rotations]), compute)


def _planar_summand(family: str, summand: tuple) -> tuple[int, int]:
    """escnn's O(2) irrep id ``(j, k)`` of a summand; SO(2) irrep ``k`` is O(2)'s
    ``(1, k)`` (``(0, 0)`` for ``k = 0``) at flip 0."""
    if summand[0] == "standard":
        return (1, 1)
    if summand[0] == "trivial":
        return (0, 0)
    ident = summand[1]
    if family == "so2":
        return (0, 0) if ident[0] == 0 else (1, int(ident[0]))
    return (int(ident[0]), int(ident[1]))
