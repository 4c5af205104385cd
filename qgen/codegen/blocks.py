"""Build-time tables for the metanetwork building blocks (:mod:`qgen.runtime.blocks`).

Each kind declares what it permits (:class:`~qgen.kinds.base.GroupKind`: ``pointwise``,
``entry_factor``, ``norm_invariant``, ``may_centre``, ``action``); a
tensor whose axes carry several kinds must satisfy every rule at once. A group element
acts on one entry ``W[i, j, ...]`` (a vector over channels) by

* moving it (permutation-like kinds, ``action == "monomial"``) and multiplying it by the
  product of its axes' factors: positive (``q_i`` or ``1 / q_j``) for scaled axes, signs
  for signed ones, so the entry's *character* is a nonzero real number;
* or mixing it with others along an axis (``action == "matrix"``: GL, O(n), escnn).

Hence, per tensor:

* nonlinearity: pointwise ``f`` commutes with a character ``c`` iff ``f(c x) = c f(x)``:
  any ``f`` for ``c = 1``, positively homogeneous ``f`` (ReLU) for ``c > 0``, odd ``f``
  (tanh) for ``c = +-1``; ``c`` of both kinds leaves only linear ``f``, and a mixing axis
  none, so those tensors are *gated*: ``(W v) * sigmoid(s(u))`` with ``u`` an invariant of
  the entry (its norm over axes with orthogonal actions, divided by its channel norm for
  positive factors, made even for signs) or, if an axis is GL, whole-space invariants;
* channel normalization: the RMS over channels and axes is invariant iff every kind keeps
  norms (not scaled, not GL), else the tensor is left alone;
* input centring: subtracting a constant commutes iff every group axis only permutes;
* degree-2 products ``A (x) B -> C``: for each type, a partition of the axes of ``A``,
  ``B`` (inputs, variances negated) and ``C`` into parts with at most one axis from each,
  taken from the kind's own basis terms (:meth:`GroupKind.terms` on those variances, as
  for a linear block): a part ``{a, b}`` contracts, ``{a, b, c}`` shares an index,
  ``{a, c}`` passes an axis through, ``{a}`` pools it; at least one part joins ``A`` and
  ``B``. For scaled types only balanced parts survive (``W2[i, j] b1[j] -> b2[i]``: the
  edge character ``q_i / q_j`` times the node's ``q_j``); for GL only plain-dual
  contractions (``Wq_h Wk_h^T`` summed over heads: the Transformer-NFN invariants).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from functools import cache

from qgen.kinds import GroupKind, PairingKind, PartitionKind, kind_of
from qgen.kinds.base import ChargeRule
from qgen.kinds.partitions import Partition, PartRule, ruled_count, ruled_partitions
from qgen.spec import Spec

__all__ = [
    "AxisKind",
    "axis_kinds",
    "block_tables",
    "canonicalization",
    "gram",
    "nonlinear_head",
    "products",
]

_LETTERS = "ijklmnopqrstuvwxyzadefghABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class AxisKind:
    """One axis of a tensor with the kind acting on it (a grid's kind on its tied axes)."""

    type: str
    dual: bool
    kind: GroupKind
    group: bool  # whether the axis size is free (a group type) rather than fixed
    tied: bool = False  # acted on jointly with another axis (an escnn grid)


def axis_kinds(spec: Spec) -> dict[str, tuple[AxisKind, ...]]:
    """Per tensor, the kind acting on each axis."""
    grid_of = {}
    for decl in spec.types.values():
        if decl.tie is not None:
            for t in decl.tie:
                grid_of[t] = kind_of(decl)
    out = {}
    for tensor in spec.tensors:
        axes = []
        for a in tensor.axes:
            decl = spec.types[a.type]
            kind = grid_of.get(a.type) or kind_of(decl)
            axes.append(AxisKind(a.type, a.dual, kind, not decl.fixed, a.type in grid_of))
        out[tensor.name] = tuple(axes)
    return out


def _meet(classes: list[str | None]) -> str | None:
    """The pointwise class allowed by all: "any" is the top, distinct others meet in None."""
    if None in classes:
        return None
    rest = set(classes) - {"any"}
    return "any" if not rest else rest.pop() if len(rest) == 1 else None


def _mixes(a: AxisKind) -> bool:
    return a.kind.action == "matrix"


def _tensor_rules(axes: tuple[AxisKind, ...], sizes: dict[str, int]) -> dict:
    dims = range(2, 2 + len(axes))
    pointwise = _meet([a.kind.pointwise for a in axes])
    factors = {a.kind.entry_factor for a in axes if a.kind.action == "monomial"}
    norm_dims = tuple(d for d, a in zip(dims, axes, strict=True) if _mixes(a))
    invariant_only = any(_mixes(a) and not a.kind.norm_invariant for a in axes)
    entry = (norm_dims, "positive" in factors, "sign" in factors, invariant_only)
    group_dims = tuple(d for d, a in zip(dims, axes, strict=True) if a.group)
    centre = group_dims if all(a.kind.may_centre for a in axes) else None
    norm = (1, *dims) if all(a.kind.norm_invariant for a in axes) else None
    pool = None
    if not invariant_only:
        pooled = tuple(d for d, a in zip(dims, axes, strict=True) if a.kind.action == "monomial")
        kept = [a for d, a in zip(dims, axes, strict=True) if d not in pooled + norm_dims]
        pool = (pooled, math.prod(_size(a, sizes) for a in kept))
    return {
        "activation": pointwise or "gate",
        "entry": entry,
        "norm": norm,
        "centre": centre,
        "pool": pool,
    }


def _size(a: AxisKind, sizes: dict[str, int]) -> int:
    return 1 if a.group else sizes[a.type]


# --------------------------------------------------------------------------------------
# Degree-2 products

#: spaces with more tensors get no degree-2 table: the products of a residual stream
#: shared by every tensor grow quadratically (a 12-block transformer has 20,234)
DEGREE2_MAX_TENSORS = 32
#: the most degree-2 products a table holds: past it (counted before the equations are
#: written) the space gets no table, with the count in ``products_problem`` (a perm
#: space of five tensors with 1-4 axes of one type has 101,154)
DEGREE2_MAX_PRODUCTS = 20_000
#: the most patterns (per-type partitions combined over the types) the search tries
#: before it gives up the same way: the work of the table, bounded before it is spent
DEGREE2_MAX_PATTERNS = 5 * DEGREE2_MAX_PRODUCTS


class _TooManyProducts(Exception):
    """The degree-2 table would pass :data:`DEGREE2_MAX_PRODUCTS` (its count so far)."""

    def __init__(self, where: str, count: int) -> None:
        super().__init__(where)
        self.where, self.count = where, count


@cache
def _options(
    kind: GroupKind, roles: tuple[int, ...], variances: tuple[int, ...], pools: bool
) -> tuple[Partition, ...]:
    """Partitions of one type's axes of ``A``, ``B`` (roles 0, 1) and a target ``C``
    (role 2) into parts with at most one axis of each role, each holding an axis of
    ``A`` or ``B``, a singleton only when ``pools``, under the kind's rule (its basis
    terms on these variances; any partition where no group acts). Built under the rule
    (:func:`~qgen.kinds.partitions.ruled_partitions`), at most
    :data:`DEGREE2_MAX_PRODUCTS` of them."""
    if kind.action is None:
        charges, rule = (0,) * len(variances), PartRule()
    else:
        assert isinstance(kind, ChargeRule)
        charges, rule = kind.part_rule(variances)
    rule = dataclasses.replace(
        rule, min_size=max(rule.min_size, 1 if pools else 2), needs=frozenset({0, 1})
    )
    points = tuple(zip(roles, charges, strict=True))
    total = sum(ruled_count(points, rule))
    if total > DEGREE2_MAX_PRODUCTS:
        raise _TooManyProducts(f"{len(variances)} axes of one {kind.name} type", total)
    return ruled_partitions(points, rule)


def _multiplicable(axes: tuple[AxisKind, ...]) -> bool:
    return all(
        not a.tied and (a.kind.action is None or isinstance(a.kind, PartitionKind | PairingKind))
        for a in axes
    )


def products(spec: Spec) -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
    """Every degree-2 product ``(a, b, equation, targets)`` of the space (module docstring):
    ``einsum(equation, A, B)`` over ``[batch, channels, *axes]`` transforms as each tensor
    in ``targets`` (empty: invariant). One per unordered pair and pattern, in spec order;
    a group axis is pooled (a singleton part) only in invariants."""
    kinds = axis_kinds(spec)
    names = [t.name for t in spec.tensors if _multiplicable(kinds[t.name])]
    order = {n: i for i, n in enumerate(names)}
    types = {n: {a.type for a in kinds[n]} for n in names}
    holding: dict[str, list[str]] = {}  # type -> tensors with an axis of it
    for n in names:
        for t in sorted(types[n]):
            holding.setdefault(t, []).append(n)
    found: dict[tuple[str, str, str], list[str]] = {}
    spent = [0]  # patterns tried so far (bounded by DEGREE2_MAX_PATTERNS)
    for a in names:
        # B shares a type with A (some part joins them); a target's types all come from A, B
        partners = sorted({b for t in types[a] for b in holding[t] if order[b] >= order[a]})
        for b in sorted(partners, key=order.get):
            union = types[a] | types[b]
            targets = [n for n in names if types[n] <= union]
            for target in [*targets, None]:
                for eq in _patterns(spec, kinds, a, b, target, spent):
                    if a == b:  # A (x) A: the pattern and its mirror are one product
                        ins, out = eq.split("->")
                        left, right = ins.split(",")
                        eq = min(eq, f"{right},{left}->{out}")
                    targets = found.setdefault((a, b, eq), [])
                    if target is not None and target not in targets:
                        targets.append(target)
                if len(found) > DEGREE2_MAX_PRODUCTS:
                    raise _TooManyProducts(f"{a} x {b}", len(found))
    return tuple((a, b, eq, tuple(t)) for (a, b, eq), t in found.items())


def _patterns(spec: Spec, kinds, a: str, b: str, target: str | None, spent: list[int]) -> list[str]:
    roles = [kinds[a], kinds[b], kinds[target] if target is not None else ()]
    types = list(dict.fromkeys(ax.type for axes in roles for ax in axes))
    # per type: its positions (role, axis index) and the allowed sparse partitions of them
    per_type = []
    for t in types:
        positions = [
            (r, k) for r, axes in enumerate(roles) for k, ax in enumerate(axes) if ax.type == t
        ]
        variances = tuple(
            (1 if not roles[r][k].dual else -1) * (1 if r == 2 else -1) for r, k in positions
        )
        kind = roles[positions[0][0]][positions[0][1]].kind
        # pooling a group axis is left to the invariants (it would multiply the terms)
        pools = target is None or not roles[positions[0][0]][positions[0][1]].group
        roles_t = tuple(r for r, _ in positions)
        options = [
            [tuple(positions[i] for i in part) for part in p]
            for p in _options(kind, roles_t, variances, pools)
        ]
        if not options:
            return []
        per_type.append((t, options))
    spent[0] += math.prod(len(opts) for _, opts in per_type)
    if spent[0] > DEGREE2_MAX_PATTERNS:
        raise _TooManyProducts(f"{a} x {b}", spent[0])
    out = []
    for combo in itertools.product(*(opts for _, opts in per_type)):
        chosen = dict(zip(types, combo, strict=True))
        if not any({0, 1} <= {r for r, _ in part} for parts in combo for part in parts):
            continue
        if not _nesting_ok(spec, roles, chosen):
            continue
        out.append(_equation(roles, chosen))
    return out


def _nesting_ok(spec: Spec, roles, chosen) -> bool:
    """A nested type's element depends on its outer index: a part joining two tensors on
    an inner axis needs their outer axes in one part too."""
    for t, parts in chosen.items():
        outer = spec.types[t].within
        if outer is None:
            continue
        where = {pos: n for n, part in enumerate(chosen.get(outer, [])) for pos in part}
        for part in parts:
            owners = set()
            for r, _ in part:
                k = next(k for k, ax in enumerate(roles[r]) if ax.type == outer)
                owners.add(where.get((r, k)))
            if len(part) > 1 and (len(owners) != 1 or None in owners):
                return False
    return True


def _equation(roles, chosen) -> str:
    letter = {}
    letters = iter(_LETTERS)
    for parts in chosen.values():
        for part in parts:
            x = next(letters)
            for pos in part:
                letter[pos] = x
    subs = ["bc" + "".join(letter[r, k] for k in range(len(axes))) for r, axes in enumerate(roles)]
    return f"{subs[0]},{subs[1]}->{subs[2]}"


# --------------------------------------------------------------------------------------
# Canonicalization


def canonicalization(spec: Spec) -> tuple[tuple | None, str]:
    """The steps of :func:`qgen.runtime.blocks.canonicalize_with`, or None and why not.

    Types whose kind multiplies entries by a factor per index are canonicalized in an order
    where each one's incoming tensors (where it is a plain axis) involve only types already
    done or without factors; positive factors need norms over the other axes invariant (no
    GL axis there), signs an incoming tensor whose other axes only move entries (an odd,
    invariant function of a vector that a rotation such as ``-I`` can flip is zero).
    """
    kinds = axis_kinds(spec)
    todo = [
        t
        for t, d in spec.types.items()
        if not d.fixed and kind_of(d).action == "monomial" and kind_of(d).entry_factor
    ]
    steps, done = [], set()
    problems: dict[str, str] = {}
    while todo:
        progress = False
        for t in list(todo):
            step, problem = _canon_step(spec, kinds, t, done)
            if problem is None:
                steps.append(step)
                done.add(t)
                todo.remove(t)
                progress = True
            else:
                problems[t] = problem
        if not progress:
            why = "; ".join(f"{t}: {problems[t]}" for t in todo)
            return None, f"no canonicalization for this weight space ({why})"
    return tuple(steps), ""


def _canon_step(spec: Spec, kinds, t: str, done: set[str]):
    factor = kind_of(spec.types[t]).entry_factor
    if spec.types[t].within is not None:
        return None, f"nested in {spec.types[t].within} (one factor per outer index)"
    incoming, outgoing, sources = [], [], []
    for name, axes in kinds.items():
        mine = [k for k, a in enumerate(axes) if a.type == t]
        if not mine:
            continue
        if len(mine) > 1 and any(not axes[k].dual for k in mine):
            return None, f"{name} has {len(mine)} axes of {t}"
        if axes[mine[0]].dual:
            outgoing += [(name, 2 + k) for k in mine]
            continue
        others = [a for k, a in enumerate(axes) if k != mine[0]]
        waiting = [a.type for a in others if a.kind.entry_factor and a.type not in done]
        if waiting:
            return None, f"{name} needs {waiting[0]} canonicalized first"
        if factor == "positive" and any(_mixes(a) and not a.kind.norm_invariant for a in others):
            return None, f"{name} has an axis whose norm is not invariant"
        incoming.append((name, 2 + mine[0]))
        if not any(_mixes(a) for a in others):
            sources.append((name, 2 + mine[0]))
    if not incoming:
        return None, f"no tensor has {t} as a plain axis"
    if factor == "sign" and not sources:
        return None, f"every tensor into {t} has a mixing axis (no odd invariant fixes a sign)"
    return (t, factor, tuple(incoming), tuple(outgoing), tuple(sources)), None


# --------------------------------------------------------------------------------------
# Gram invariants: pairs of tensors contracted over every axis that has no entry invariant


#: Gram tensors keep at most this many axes (their entries are pooled, so a product with
#: many free axes would cost the product of their sizes for little)
GRAM_MAX_AXES = 4
#: and are products of at most this many tensors (``A3 A2 A1`` of a linear chain)
GRAM_MAX_TENSORS = 3


def _contracted(a: AxisKind) -> bool:
    """An axis that a matrix action mixes with no invariant norm (GL): no function of one
    entry is invariant, but a plain axis paired with a dual one of its type is."""
    return _mixes(a) and not a.kind.norm_invariant


def gram(spec: Spec) -> tuple[tuple, ...]:
    """Per set of two or three tensors whose contracted axes (:func:`_contracted`) pair up,
    the *Gram tensor* ``einsum(equation, A, B, ...)``: every contracted type of the set has
    exactly two axes in it, in two tensors, that its kind pairs (``GL``: a plain with a
    dual axis, so ``sum_r A[.., r, ..] B[.., r, ..]`` with ``A -> g A`` and ``B -> g^-T B``
    is unchanged); a type nested in another shares the outer index (one per head); the
    other axes stay free; the tensors are connected by the contractions. The result has
    no contracted axis: its entries are moved and multiplied by a factor, or mixed by
    norm-keeping actions, as a tensor's entries are, so the entry pooling of the
    invariant head applies to it (``Wq_h^T Wk_h`` per head of attention, ``W_out W_in``
    of a residual stream, ``A3 A2 A1`` of a linear chain). Sets of three only where no
    two of them close (a pair that closes is listed as a pair).

    Returns ``(tensors, equation, entry, pool)`` with ``entry`` and ``pool`` the rules of
    the result (as ``block_tables`` gives them for a tensor)."""
    kinds = axis_kinds(spec)
    sizes = {n: d.size for n, d in spec.types.items() if d.fixed}
    names = [t.name for t in spec.tensors if any(_contracted(a) for a in kinds[t.name])]
    out, closed = [], set()
    for group in _gram_candidates(names, kinds):
        if any(sub in closed for sub in itertools.combinations(group, len(group) - 1)):
            continue
        found = _gram_product(spec, [kinds[n] for n in group])
        if found is None:
            continue
        closed.add(group)
        equation, rest = found
        rules = _tensor_rules(rest, sizes)
        out.append((group, equation, rules["entry"], rules["pool"]))
    return tuple(out)


def _gram_candidates(
    names: list[str], kinds: dict[str, tuple[AxisKind, ...]]
) -> list[tuple[str, ...]]:
    """The sets of two or three tensors that may close, in ``itertools.combinations``
    order (sizes ascending, then by position in ``names``). Every contracted type must
    appear exactly twice in a set, in two different tensors, so a set holds a pair that
    shares a type, and a third tensor must hold a type the pair leaves open (once) and
    none the pair already has twice. Near-linear in the sharing pairs, where trying
    every combination was cubic in the tensors (a 24-block transformer has 200 tensors
    with GL axes)."""
    from collections import Counter

    axes = [Counter(a.type for a in kinds[n] if _contracted(a)) for n in names]
    holders: dict[str, list[int]] = {}
    for i, counts in enumerate(axes):
        for t in counts:
            holders.setdefault(t, []).append(i)
    pairs = {(i, j) for members in holders.values() for i in members for j in members if i < j}
    found: set[tuple[int, ...]] = set(pairs)
    if GRAM_MAX_TENSORS >= 3:
        for i, j in pairs:
            both = axes[i] + axes[j]
            if max(both.values()) > 2:
                continue
            for t in (t for t, n in both.items() if n == 1):
                for k in holders[t]:
                    if k not in (i, j) and all(both[s] < 2 for s in axes[k]):
                        found.add(tuple(sorted((i, j, k))))
    return [tuple(names[i] for i in g) for g in sorted(found, key=lambda g: (len(g), g))]


def _gram_product(spec: Spec, operands: list[tuple[AxisKind, ...]]):
    """The equation and the free axes of the Gram tensor of ``operands``, or None."""
    contracted = {ax.type for axes in operands for ax in axes if _contracted(ax)}
    where: dict[str, list[tuple[int, int]]] = {}
    for i, axes in enumerate(operands):
        for k, ax in enumerate(axes):
            where.setdefault(ax.type, []).append((i, k))
    letters = iter(_LETTERS)
    subs = [[None] * len(axes) for axes in operands]
    parent = list(range(len(operands)))  # connectivity of the operands

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for t in sorted(contracted):
        places = where[t]
        if len(places) != 2 or places[0][0] == places[1][0]:
            return None
        (i, k), (j, m) = places
        a, b = operands[i][k], operands[j][m]
        va = 1 if a.dual else -1  # inputs: plain -1, dual +1
        vb = 1 if b.dual else -1
        if not isinstance(a.kind, PairingKind) or not a.kind.allows_pair(va, vb):
            return None
        subs[i][k] = subs[j][m] = next(letters)
        parent[root(i)] = root(j)
        outer = spec.types[t].within
        if outer is not None:  # one element per outer index: share it
            oi = [n for n, ax in enumerate(operands[i]) if ax.type == outer]
            oj = [n for n, ax in enumerate(operands[j]) if ax.type == outer]
            if len(oi) != 1 or len(oj) != 1 or outer in contracted:
                return None
            x = subs[i][oi[0]] or subs[j][oj[0]] or next(letters)
            if subs[i][oi[0]] not in (None, x) or subs[j][oj[0]] not in (None, x):
                return None
            subs[i][oi[0]] = subs[j][oj[0]] = x
    if len({root(i) for i in range(len(operands))}) != 1:
        return None
    summed = {subs[i][k] for t in contracted for i, k in where[t]}
    rest, out = [], []
    for axes, sub in zip(operands, subs, strict=True):
        for k, ax in enumerate(axes):
            if sub[k] is None:
                sub[k] = next(letters)
            if sub[k] not in summed and sub[k] not in out:  # a shared outer axis once
                out.append(sub[k])
                rest.append(ax)
    if len(rest) > GRAM_MAX_AXES or any(a.tied for a in rest):
        return None
    inputs = ",".join("bc" + "".join(sub) for sub in subs)
    return f"{inputs}->bc{''.join(out)}", tuple(rest)


# --------------------------------------------------------------------------------------


def nonlinear_head(spec: Spec) -> bool:
    """Whether the weight space gets a nonlinear invariant head (per-entry
    canonicalization, templates/heads/nonlinear_invariant.py.j2): every type's kind
    supports it (:attr:`GroupKind.nonlinear_head`: entries are only moved and multiplied
    by a factor) and some kind multiplies entries by a factor (a scale or a sign), where a
    linear invariant head sees little."""
    kinds = [kind_of(d) for d in spec.types.values()]
    return all(k.nonlinear_head for k in kinds) and any(k.entry_factor for k in kinds)


def block_tables(spec: Spec) -> dict:
    """Every table of :mod:`qgen.runtime.blocks` for ``spec`` (plain Python data)."""
    sizes = {n: d.size for n, d in spec.types.items() if d.fixed}
    kinds = axis_kinds(spec)
    rules = {name: _tensor_rules(axes, sizes) for name, axes in kinds.items()}
    canon, problem = canonicalization(spec)
    tables = {key: {n: r[key] for n, r in rules.items()} for key in next(iter(rules.values()))}
    tables["shapes"] = {name: tuple(_size(a, sizes) for a in axes) for name, axes in kinds.items()}
    too_many = None
    if len(spec.tensors) <= DEGREE2_MAX_TENSORS:
        try:
            tables["products"] = products(spec)
        except _TooManyProducts as exc:
            too_many = exc
    if too_many is not None:
        tables["products"] = ()
        tables["products_problem"] = (
            f"{too_many.count:,} degree-2 products or patterns at {too_many.where} already; "
            f"tables are built for at most {DEGREE2_MAX_PRODUCTS:,} products and "
            f"{DEGREE2_MAX_PATTERNS:,} patterns"
        )
    elif len(spec.tensors) <= DEGREE2_MAX_TENSORS:
        tables["products_problem"] = "" if tables["products"] else "no pair of tensors balances"
    else:
        tables["products"] = ()
        tables["products_problem"] = (
            f"{len(spec.tensors)} tensors; degree-2 products are enumerated for at most "
            f"{DEGREE2_MAX_TENSORS} (their number grows with the square of the tensors that "
            "share a type)"
        )
    tables["canon"] = canon
    tables["canon_problem"] = problem
    tables["gram"] = gram(spec)
    return tables


#: what each activation rule means, for the generated docstrings
RULE_TEXT = {
    "any": "pointwise (the chosen activation)",
    "homogeneous": "ReLU (positive factors: positively homogeneous)",
    "odd": "tanh (sign factors: odd)",
    "gate": "gated, ScaleEq",
}


def template_context(spec: Spec, linear_invariants: int) -> dict:
    """What templates/blocks.py.j2 needs: the tables as ruff-formatted literal text and
    per-tensor summaries for docstrings; ``linear_invariants`` is the number of invariant
    linear functionals (what ``InvariantHead`` pools)."""
    from qgen.codegen.pytext import literal

    tables = block_tables(spec)
    return {
        "tables_text": "BLOCK_TABLES: dict = " + literal(tables),
        "rules": {
            t: _gate_text(spec, t, tables["entry"][t]) if r == "gate" else RULE_TEXT[r]
            for t, r in tables["activation"].items()
        },
        "n_products": sum(bool(p[3]) for p in tables["products"]),
        "n_invariant_products": sum(not p[3] for p in tables["products"]),
        "has_invariant": linear_invariants > 0
        or any(r is not None for r in tables["pool"].values())
        or bool(tables["gram"]),
        "n_gram": len(tables["gram"]),
        "canon": tables["canon"],
        "canon_problem": tables["canon_problem"],
        "norms": [t for t, d in tables["norm"].items() if d is not None],
        "centres": [t for t, d in tables["centre"].items() if d is not None],
    }


def _gate_text(spec: Spec, tensor: str, entry: tuple) -> str:
    """How a gated tensor's gate reads an invariant, in words (for docstrings)."""
    norm_dims, divide, absolute, invariant_only = entry
    if invariant_only:
        return "gated by the whole space's degree-2 invariants (a GL axis: no entry invariant)"
    axes = spec.tensor(tensor).axes
    parts = []
    if norm_dims:
        parts.append("norm over " + ", ".join(str(axes[d - 2]) for d in norm_dims))
    if divide:
        parts.append("divided by its channel norm")
    if absolute:
        parts.append("even in sign")
    return "gated (ScaleEq) by the entry's " + ", ".join(parts)
