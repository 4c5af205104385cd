"""The ``qgen`` command line: count, verify and explain equivariant maps of a weight space."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from qgen.errors import QgenError, UsageError
from qgen.solver.basis import WeightSpaceBasis, solve
from qgen.spec import load_spec
from qgen.version import __version__

__all__ = ["main"]

#: verify refuses runs above this many map entries to solve (measured on the 2-core
#: machine: 775k entries, mlp_relu up to size 16, in 34 s of CPU)
DEFAULT_MAX_WORK = 2_000_000
#: verify checks every size 1..--up-to, each a pass over every block: a bound on that list
MAX_UP_TO = 1000

_DESCRIPTION = """\
qgen solves for the equivariant linear maps of a neural network's weight space
under its symmetry group (permutations, sign flips, positive scalings, GL, O(n))
declared in a YAML spec, and checks the counts numerically.

example:
  qgen count examples/mlp_relu.yaml
  qgen count examples/mlp_relu.yaml --sizes h1=1 --json
  qgen verify examples/mlp_relu.yaml
  qgen explain examples/mlp_relu.yaml --block W2:W2
  qgen build examples/mlp_relu.yaml -o generated --tests
"""


def _parse_sizes(tokens: Sequence[str] | None, basis: WeightSpaceBasis) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for token in tokens or ():
        name, sep, value = token.partition("=")
        if not sep:
            raise UsageError(f"--sizes takes TYPE=N pairs, got {token!r}")
        if name not in basis.spec.types:
            raise UsageError(
                f"--sizes: {basis.spec.source} declares no type {name!r} "
                f"(types: {', '.join(basis.spec.types)})"
            )
        decl = basis.spec.types[name]
        if decl.fixed:
            raise UsageError(
                f"--sizes: {name} is a fixed type of size {decl.size} in {basis.spec.source}; "
                "--sizes sets group types only (edit the spec to change a fixed size)"
            )
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"--sizes: size of {name} must be a positive integer, got {value!r}")
        sizes[name] = n
    return sizes


def _cmd_count(args: argparse.Namespace) -> int:
    from qgen.cli.cost import cost_lines
    from qgen.cli.report import commutant_lines, count_json, count_table, threshold_lines

    basis = solve(load_spec(args.spec))
    sizes = _parse_sizes(args.sizes, basis)
    if args.json:
        print(json.dumps(count_json(basis, sizes), indent=2))
        return 0
    full = True if args.full else None
    print("\n".join(count_table(basis, sizes, full)))
    print()
    if lines := commutant_lines(basis):
        print("\n".join(lines))
        print()
    print("\n".join(threshold_lines(basis, sizes, full)))
    print()
    print("\n".join(cost_lines(basis, sizes, args.budget)))
    return 0


#: torch intra-op threads for the commands that compute with torch (``verify``), unless
#: ``--threads`` or ``$QGEN_THREADS`` says otherwise: its solves are small dense problems
#: (thousands of entries), which a second thread barely speeds up on a quiet machine and,
#: on a loaded one, slows down many times over (spinning threads wait for a core: a solve
#: took 66 s instead of 0.28 s on a shared 2-core machine)
DEFAULT_THREADS = 1


def torch_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count for this process and return it: ``requested``,
    else ``$QGEN_THREADS``, else :data:`DEFAULT_THREADS`."""
    value = requested
    if value is None:
        env = os.environ.get("QGEN_THREADS", "").strip()
        if env:
            try:
                value = int(env)
            except ValueError:
                raise UsageError(
                    f"QGEN_THREADS must be a positive integer, got {env[:20]!r}"
                ) from None
    value = DEFAULT_THREADS if value is None else value
    if value < 1:
        raise UsageError(f"the thread count must be a positive integer, got {value}")
    import torch

    torch.set_num_threads(value)
    return value


def _cmd_verify(args: argparse.Namespace) -> int:
    from qgen.cli.report import verify_lines
    from qgen.solver.verify import size_levels, verify, work_estimate

    if args.up_to is not None and args.up_to < 1:
        raise UsageError(f"--up-to must be a positive size, got {args.up_to}")
    if args.up_to is not None and args.up_to > MAX_UP_TO:
        raise UsageError(
            f"--up-to {args.up_to:,} is past the limit of {MAX_UP_TO:,} size settings (each "
            "one checks every block); fix sizes with --sizes to check one large size"
        )
    torch_threads(args.threads)
    basis = solve(load_spec(args.spec))
    sizes = _parse_sizes(args.sizes, basis)
    levels = size_levels(basis, sizes, up_to=args.up_to)
    entries = work_estimate(basis, levels, args.max_entries)
    if entries > args.max_work:
        raise UsageError(
            f"verify: {entries:,} map entries over {len(levels)} size settings is more than "
            f"--max-work {args.max_work:,} (minutes of CPU); lower --up-to, fix sizes with "
            "--sizes, or raise --max-work"
        )

    print(
        f"verifying {basis.spec.name} ({basis.spec.source}) at {len(levels)} size setting(s), "
        f"{len(levels) * len(list(basis.all_blocks()))} block checks, "
        f"{entries:,} map entries to solve:",
        flush=True,
    )

    def progress(done: int, level: dict[str, int]) -> None:
        label = " ".join(f"{k}={v}" for k, v in level.items())
        print(f"  [{done}/{len(levels)}] {label}", file=sys.stderr, flush=True)

    shown = progress if sys.stderr.isatty() else None
    report = verify(basis, levels, max_entries=args.max_entries, progress=shown)
    print("\n".join(verify_lines(report)))
    return 0 if report.ok else 1


def _cmd_explain(args: argparse.Namespace) -> int:
    from qgen.solver.explain import describe_block

    basis = solve(load_spec(args.spec))
    if args.block:
        out, sep, inp = args.block.partition(":")
        names = [t.name for t in basis.spec.tensors]
        if not sep:
            raise UsageError(f"--block takes OUT:IN (e.g. W2:W1), got {args.block!r}")
        for n in (out, inp):
            if n not in (*names, "R"):
                raise UsageError(
                    f"--block: no tensor {n!r} (tensors: {', '.join(names)}; R for scalars)"
                )
        if out == "R" and inp == "R":
            raise UsageError("--block R:R is not a block")
        if out == "R":
            blocks = [basis.invariant[inp]]
        elif inp == "R":
            blocks = [basis.bias[out]]
        else:
            blocks = [basis.blocks[out, inp]]
    else:
        blocks = list(basis.all_blocks())
    for i, block in enumerate(blocks):
        if i:
            print()
        print("\n".join(describe_block(block)))
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from qgen.codegen import plan
    from qgen.codegen.output import build
    from qgen.solver.cost import check_budget

    if args.max_terms is not None and args.max_terms < 0:
        raise UsageError(f"--max-terms must be 0 (no bound) or positive, got {args.max_terms}")
    spec = load_spec(args.spec)
    print(f"cost: {check_budget(spec, args.budget).statement()}", flush=True)
    written = build(
        spec,
        args.output,
        tests=args.tests,
        budget=float("inf"),  # checked above
        max_terms=plan.MAX_LAYER_TERMS if args.max_terms is None else args.max_terms,
    )
    total = solve(spec).counts()["total"]
    for path in written:
        print(f"wrote {path}")
    print(
        f"{spec.name}: {total['equivariant']} equivariant linear maps, {total['bias']} bias "
        f"maps, {total['invariant']} invariant functionals (one channel in and out)"
    )
    return 0


def _cmd_expand(args: argparse.Namespace) -> int:
    from qgen.spec import dump_spec

    print(dump_spec(load_spec(args.spec)), end="")
    return 0


def _cmd_spec(args: argparse.Namespace) -> int:
    import importlib

    from qgen.frommodel.capture import parse_input_shape
    from qgen.frommodel.reader import model_from_factory, weight_space_from_module

    module_name, sep, factory = args.from_model.partition(":")
    if not sep or not module_name or not factory:
        raise UsageError(f"--from-model takes MODULE:FACTORY, got {args.from_model!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--from-model: cannot import {module_name!r}: {exc}") from None
    make = getattr(module, factory, None)
    if not callable(make):
        raise UsageError(f"--from-model: {module_name} has no callable {factory!r}")
    model = model_from_factory(make, args.from_model)
    example = None
    if args.input_shape:
        example = parse_input_shape(args.input_shape, args.input_dtype)
        floating = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        if example.is_floating_point() and floating is not None:
            example = example.to(floating)
    ws = weight_space_from_module(
        model,
        args.name or factory,
        io=args.io,
        example_input=example,
        fixed_axes=args.fixed_axes,
        budget=args.budget,
    )
    for note in getattr(ws, "notes", []):
        print(f"note: {note}", file=sys.stderr)
    if ws.fixed_axes:
        declared = ", ".join(f"{n}: {c}" for n, c in ws.fixed_axes.items())
        print(
            f"note: declared fixed_axes {{{declared}}} to fit the build budget (the spec's "
            "comments give the counts; --fixed-axes none keeps every axis dense)",
            file=sys.stderr,
        )
    print(ws.text, end="")
    return 0


def _budget_option(p: argparse.ArgumentParser) -> None:
    from qgen.solver.cost import DEFAULT_BUDGET

    p.add_argument(
        "--budget",
        type=_positive_int,
        default=DEFAULT_BUDGET,
        metavar="N",
        help=f"most parameters per channel pair (equivariant maps) a layer may have; build "
        f"refuses a spec over it (default {DEFAULT_BUDGET:,})",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive number of parameters, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qgen", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"qgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=f"{help_}\n\nexample:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("spec", metavar="SPEC", help="weight-space spec (YAML)")
        return p

    sizes_help = "concrete sizes of group types, e.g. h1=3 h2=5 (default: generic sizes)"
    p = add(
        "count",
        "Count equivariant linear maps block by block (output tensor x input tensor), "
        "with the equivariant bias and invariant functionals per tensor.",
        "qgen count examples/mlp_relu.yaml --sizes h1=1 h2=2",
    )
    p.add_argument("--sizes", nargs="+", metavar="TYPE=N", help=sizes_help)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _budget_option(p)
    p.add_argument(
        "--full",
        action="store_true",
        help="print every block and threshold line (default past 24 tensors: a summary)",
    )
    p.set_defaults(func=_cmd_count)

    p = add(
        "build",
        "Write a standalone PyTorch module (imports only torch) with EquivariantLayer, "
        "InvariantHead, sample_group_element and act for the spec's weight space.",
        "qgen build examples/mlp_relu.yaml -o generated --tests",
    )
    p.add_argument(
        "-o",
        "--output",
        default="generated",
        metavar="DIR",
        help="output folder (default: generated)",
    )
    p.add_argument(
        "--tests", action="store_true", help="also write DIR/test_<name>.py (pytest + hypothesis)"
    )
    _budget_option(p)
    p.add_argument(
        "--max-terms",
        type=int,
        default=None,
        metavar="N",
        help="refuse layers with more than N basis terms in all (default 200,000, a few "
        "seconds of CPU; 0: no bound)",
    )
    p.set_defaults(func=_cmd_build)

    p = add(
        "expand",
        "Print the explicit spec (types and tensors) of a spec that uses an arch: preset; "
        "the output is valid input to every command.",
        "qgen expand examples/presets/mlp_np.yaml",
    )
    p.set_defaults(func=_cmd_expand)

    p = sub.add_parser(
        "spec",
        help="Write the spec of a torch model (captured with torch.export).",
        description="Write the spec of a torch model: MODULE:FACTORY names a function "
        "that returns the nn.Module (importable from the current folder); the model runs "
        "once on an example input (--input-shape; without it, one of the size its first "
        "layer reads).\n\nexample:\n"
        "  qgen spec --from-model mymodels:small_mlp > small_mlp.yaml\n"
        "  qgen spec --from-model mymodels:lenet --input-shape 1,1,28,28\n"
        "  qgen spec --from-model mymodels:tiny_gpt --input-shape 1,16 --input-dtype long",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from-model", required=True, metavar="MODULE:FACTORY")
    p.add_argument("--name", help="spec name (default: the factory's name)")
    p.add_argument(
        "--input-shape",
        metavar="N,C,H,W",
        help="shape of the example input the model is run on (e.g. 1,3,32,32)",
    )
    p.add_argument(
        "--input-dtype",
        choices=("float", "double", "long"),
        default="float",
        help="float (default; the model's parameter dtype) or long (token ids)",
    )
    p.add_argument(
        "--io",
        choices=("fixed", "perm"),
        default="fixed",
        help="fixed: input and output features keep their order (default); perm: permuted",
    )
    p.add_argument(
        "--fixed-axes",
        choices=("auto", "none"),
        default="auto",
        help="auto (default): over the budget, declare large fixed axes tied until the layer "
        "fits (written as fixed_axes: with the counts in comments; refused when nothing "
        "fits); none: every fixed axis dense, as imported",
    )
    _budget_option(p)
    p.set_defaults(func=_cmd_spec)

    p = add(
        "verify",
        "Solve every block numerically at concrete small sizes (nullspace of the group "
        "generators' constraints) and compare with the enumeration; exit 1 on any disagreement.",
        "qgen verify examples/mlp_relu.yaml --sizes h1=2",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        metavar="TYPE=N",
        help="hold these types at these sizes; the others run through 1, 2, ... (--up-to)",
    )
    p.add_argument(
        "--up-to",
        type=int,
        default=None,
        metavar="N",
        help="largest size to check (default: the largest generic threshold, at least 3)",
    )
    p.add_argument(
        "--max-entries",
        type=int,
        default=20_000,
        metavar="K",
        help="skip blocks whose map has more than K entries at a size (default 20000)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help=f"torch threads for the solves (default: $QGEN_THREADS, else {DEFAULT_THREADS}; "
        "more threads pay only for large blocks on an idle machine)",
    )
    p.add_argument(
        "--max-work",
        type=int,
        default=DEFAULT_MAX_WORK,
        metavar="E",
        help=f"refuse runs that would solve more than E map entries in all (default "
        f"{DEFAULT_MAX_WORK:,}, about a minute and a half of CPU here)",
    )
    p.set_defaults(func=_cmd_verify)

    p = add(
        "explain",
        "Print each basis term of a block in index notation: which axes are pooled, "
        "taken on a diagonal, carried over or broadcast.",
        "qgen explain examples/mlp_relu.yaml --block W2:W1",
    )
    p.add_argument(
        "--block",
        metavar="OUT:IN",
        help="one block, e.g. W2:W1; R:T for T's invariants, T:R for its bias (default: all)",
    )
    p.set_defaults(func=_cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except QgenError as exc:
        print(f"qgen: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``qgen count ... | head``): stop quietly, as cat does. Point
        # stdout at devnull so the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
