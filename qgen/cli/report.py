"""Plain-text reports for the CLI: the count table, thresholds, verify summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from qgen.kinds import kind_of
from qgen.solver.basis import WeightSpaceBasis

if TYPE_CHECKING:  # verify needs torch; counting should not pay for importing it
    from qgen.solver.verify import VerifyReport

__all__ = ["count_json", "count_table", "threshold_lines", "verify_lines"]


def count_json(basis: WeightSpaceBasis, sizes: Mapping[str, int]) -> dict:
    """The object ``qgen count --json`` prints."""
    return {"name": basis.spec.name, "sizes": dict(sizes), **basis.counts(sizes)}


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return out


#: past this many tensors ``qgen count`` prints a summary (totals, the largest blocks,
#: the thresholds per type) instead of every block; ``--full`` prints them all
SUMMARY_TENSORS = 24
#: how many blocks (or threshold lines) a summary shows
SUMMARY_LINES = 12


def count_table(
    basis: WeightSpaceBasis, sizes: Mapping[str, int], full: bool | None = None
) -> list[str]:
    """The count table (every block), or past :data:`SUMMARY_TENSORS` tensors unless
    ``full``, a summary: the largest blocks by shape and the totals."""
    names = [t.name for t in basis.spec.tensors]
    if full is None:
        full = len(names) <= SUMMARY_TENSORS
    where = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "generic sizes"
    header = f"{basis.spec.name}: equivariant linear maps at {where} (one channel in and out)"
    bias = {n: b.count(sizes) for n, b in basis.bias.items()}
    inv = {n: b.count(sizes) for n, b in basis.invariant.items()}
    if full:
        counts = basis.counts(sizes)
        rows = [["out \\ in", *names, "bias"]]
        for s in names:
            rows.append(
                [s, *(str(counts["equivariant"][s][t]) for t in names), str(counts["bias"][s])]
            )
        rows.append(["invariant", *(str(counts["invariant"][t]) for t in names), ""])
        body = _table(rows)
        total = counts["total"]["equivariant"]
    else:
        shapes = basis.shape_counts(sizes)
        coupled = {pair: count for count, pairs in shapes for pair in pairs}
        total = basis.total(coupled, bias, inv)
        largest = sorted(shapes, key=lambda x: -x[0])[:SUMMARY_LINES]
        body = [
            f"{len(names)} tensors, {len(names) ** 2:,} blocks ({len(coupled):,} coupled, "
            f"{len(shapes)} shapes); the largest blocks, one per shape (--full prints the "
            "table):"
        ]
        rows = [["block", "maps", "blocks of this shape"]]
        rows += [[f"  {p[0][0]} <- {p[0][1]}", str(c), str(len(p))] for c, p in largest]
        body += _table(rows)
    return [
        header,
        "",
        *body,
        "",
        f"total: {total} equivariant, {sum(bias.values())} bias, {sum(inv.values())} invariant",
    ]


def commutant_lines(basis: WeightSpaceBasis) -> list[str]:
    """How the commutant of each type is computed where its kind says (the fixed-axis
    symmetries: escnn groups and grids), under each kind's heading, for ``qgen count``."""
    sections: dict[str, list[str]] = {}
    for t in basis.spec.types.values():
        kind = kind_of(t)
        if (how := kind.count_note(t)) is not None:
            sections.setdefault(kind.count_heading, []).append(f"  {t.name}: {how}")
    return [line for heading, lines in sections.items() for line in (heading, *lines)]


def threshold_lines(
    basis: WeightSpaceBasis, sizes: Mapping[str, int], full: bool | None = None
) -> list[str]:
    """Blocks whose generic count needs sizes above 1, with the counts below that; past
    :data:`SUMMARY_TENSORS` tensors unless ``full``: the size each type needs, how many
    blocks, and the first :data:`SUMMARY_LINES` of them."""
    if full is None:
        full = len(basis.spec.tensors) <= SUMMARY_TENSORS
    total, rows = basis.threshold_rows(sizes, None if full else SUMMARY_LINES)
    lines = []
    for label, count, th, below in rows:
        need = ", ".join(f"{t} >= {th[t]}" for t in below)
        smaller = "; ".join(
            ", ".join(f"{t}={n}: {c}" for n, c in by_n.items()) for t, by_n in below.items()
        )
        lines.append(f"  {label}: {count} for {need} ({smaller})")
    if not lines:
        return ["every generic count holds from size 1 on"]
    head = "generic counts hold from these sizes on (counts below, other types generic):"
    if total <= len(lines):
        return [head, *lines]
    generic = basis.generic_sizes()
    need = ", ".join(f"{t} >= {n}" for t, n in generic.items() if n > 1 and t not in sizes)
    return [
        f"generic counts hold from {need}; {total:,} blocks count less below that "
        f"(the first {len(lines)}, counts below, other types generic; --full lists all):",
        *lines,
    ]


def verify_lines(report: VerifyReport) -> list[str]:
    lines = []
    by_sizes: dict[tuple, list] = {}
    for c in report.checks:
        key = tuple((c.level or c.sizes).items())
        by_sizes.setdefault(key, []).append(c)
    for key, checks in by_sizes.items():
        group = {k: v for k, v in key}
        done = [c for c in checks if c.skipped is None]
        bad = [c for c in done if not c.ok]
        label = " ".join(f"{k}={v}" for k, v in group.items())
        status = "all agree" if not bad else f"{len(bad)} DISAGREE"
        skipped = len(checks) - len(done)
        blockwise = sum(c.solved_at is not None for c in done)
        extra = f" ({blockwise} blockwise over fixed axes)" if blockwise else ""
        extra += f", {skipped} skipped (too large)" if skipped else ""
        lines.append(f"  {label}: {len(done)} blocks checked{extra}: {status}")
        for c in bad:
            lines.append(
                f"    {c.block.label}: enumeration {c.enumerated}, numeric {c.numeric}, "
                f"span of enumerated terms {c.span}, constraint residual {c.residual:.2e}"
            )
    checked = [c for c in report.checks if c.skipped is None]
    generic = {c.block.label for c in checked if c.generic}
    blocks = {c.block.label for c in report.checks}
    largest = max((c.enumerated for c in checked), default=0)
    lines.append(
        f"{'OK' if report.ok else 'FAILED'}: {len(checked)} checks "
        f"(enumeration = numeric nullspace = span of enumerated terms), "
        f"generic sizes reached for {len(generic)} of {len(blocks)} blocks, "
        f"largest block dimension {largest}, {report.seconds:.2f} s"
    )
    return lines
