"""Hostile and extreme input, as an attacker and a careless user would write it.

Whatever the input, qgen answers as the docs promise (``docs/guide/spec.md``,
``commands.md``): a spec it cannot use is a :class:`SpecError` (the CLI: exit 2, one line
naming the file and what to fix, no traceback), nothing is written, and the work is
bounded before it can grow (input bytes, YAML nesting and alias expansion, counts of
tensors, types and axes, preset parameters, escnn sizes). Generated code never carries
the user's text except through escaping, and building into a folder is all or nothing.
"""

from __future__ import annotations

import ast
import errno
import fcntl
import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qgen.codegen.output as output
from qgen.codegen.pytext import doc_text
from qgen.decls import MAX_AXES, MAX_AXES_OF_A_TYPE, MAX_SIZE, MAX_TENSORS, MAX_TYPES
from qgen.errors import MAX_MESSAGE, OutputError, SpecError, one_line
from qgen.spec import Spec, load_spec, parse_spec
from qgen.spec import parse as parse_module
from qgen.spec.parse import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES, reserved_module_names

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mlp_relu.yaml"
SMALL = "name: small\ntypes:\n  h: {group: perm}\n  x: {size: 2}\ntensors:\n  W: [h, x*]\n"


def sane(text: str) -> bool:
    """One line, short, nothing that a terminal would interpret or hide."""
    return (
        len(text) <= MAX_MESSAGE
        and "\n" not in text
        and "\r" not in text
        and all(
            ch == " " or (ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp"))
            for ch in text
        )
    )


def refused(text: str, fragment: str, seconds: float = 3.0) -> SpecError:
    """``text`` is refused with a sane one-line error mentioning ``fragment``, quickly."""
    start = time.process_time()
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="hostile.yaml")
    took = time.process_time() - start
    message = str(info.value)
    assert fragment in message, message
    assert sane(message), message
    assert message.startswith("hostile.yaml"), message
    assert took < seconds, f"{took:.1f} s of CPU to refuse: {message}"
    return info.value


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "qgen", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qgen: error: ")
    assert sane(lines[0][len("qgen: error: ") :]), lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------
# The YAML itself: size, nesting, aliases, YAML 1.1 surprises


def bomb(levels: int = 9, width: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\nname: bomb\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (bomb(), f"more than {MAX_NODES:,} values"),
        ("name: x\ntypes: &a [*a]\n", "recursive alias"),
        ("name: x\ntypes: &a {h: *a}\n", "recursive alias"),
        ("name: x\ntypes: " + "[" * 100_000 + "]" * 100_000, f"more than {MAX_DEPTH} deep"),
        ("name: x\ntypes: " + "{a: " * 20_000 + "1" + "}" * 20_000, f"more than {MAX_DEPTH}"),
        ("name: x\ntypes:\n  " + "- " * 5000 + "x\n", "deep"),
        ("name: x\ntypes: *nowhere\n", "names no anchor"),
        ("name: a\n---\nname: b\n", "one YAML document"),
        ("name: x\ntypes: !!python/object:os.system {}\ntensors: {}\n", "not allowed"),
        ("name: x\ntypes: !custom {}\ntensors: {}\n", "not allowed"),
        ("name: x\x00\n", "characters are not allowed (U+0000)"),
        ("name: x\nb: \ud800\n", "U+D800"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
    ids=[
        "alias-bomb",
        "recursive-list",
        "recursive-map",
        "deep-flow-lists",
        "deep-flow-maps",
        "deep-block-lists",
        "undefined-alias",
        "two-documents",
        "python-tag",
        "custom-tag",
        "nul",
        "surrogate",
        "unclosed",
    ],
)
@pytest.mark.parametrize("events", ["libyaml", "pure"])
def test_yaml_that_would_grow_or_deceive_is_refused_at_once(text, fragment, events, monkeypatch):
    if events == "pure":  # PyYAML without LibYAML: its own (slower) event parser
        monkeypatch.setattr(parse_module, "_EVENTS", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML without LibYAML here")
    refused(text, fragment, seconds=3.0 if events == "libyaml" else 10.0)


def test_aliases_within_bounds_still_work():
    text = (
        "name: aliased\ntypes:\n  h1: &hidden {group: scaled}\n  h2: *hidden\n"
        "  x: {size: 2}\ntensors:\n  W1: &pair [h1, x*]\n  W2: [h2, h1*]\n  W3: [h2]\n"
    )
    spec = parse_spec(text)
    assert spec.types["h2"].kind == "scaled"
    assert [str(a) for a in spec.tensor("W1").axes] == ["h1", "x*"]


def test_a_spec_read_from_dev_zero_is_refused_by_its_size():
    start = time.process_time()
    with pytest.raises(SpecError, match="larger than"):
        load_spec("/dev/zero")
    assert time.process_time() - start < 2


def test_a_huge_file_is_refused_before_parsing(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(SMALL + "#" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(SpecError, match=f"larger than {MAX_SPEC_BYTES:,} bytes"):
        load_spec(big)
    with pytest.raises(SpecError, match="larger than"):
        parse_spec(big.read_text())


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("DIR", "cannot read the file (Is a directory)"),
        ("missing.yaml", "no such file"),
        ("nul\x00.yaml", "NUL character"),
        ("x" * 5000 + ".yaml", "File name too long"),
    ],
)
def test_unreadable_paths(tmp_path, path, fragment):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path if path == "DIR" else tmp_path / path)
    assert fragment in str(info.value) and sane(str(info.value))


def test_bytes_that_are_not_utf8(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(SMALL.replace("small", "sm\xe4ll").encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(bad)


@pytest.mark.parametrize(
    ("value", "read_as"),
    [("010", "8"), ("0_10", "8"), ("1:30", "90"), ("1_000", "1000"), ("0b11", "3")],
)
def test_yaml_1_1_numbers_are_refused_with_a_word(value, read_as):
    error = refused(SMALL.replace("size: 2", f"size: {value}"), f"read by YAML 1.1 as {read_as}")
    assert error.where == "types.x.size" and error.line == 4


def test_yaml_1_1_sexagesimal_float_and_words():
    refused(SMALL.replace("size: 2", "size: 1:30.5"), "read by YAML 1.1 as 90.5")
    text = "name: p\narch: mlp\nwidths: [2, 3, 1]\nbias: yes\n"
    refused(text, "'yes' is read by YAML as True; write true or false")
    assert parse_spec(text.replace("yes", "false")).tensors[-1].name == "W2"


def test_quoted_and_plain_numbers_read_as_written():
    assert parse_spec(SMALL.replace("size: 2", "size: 10")).types["x"].size == 10
    refused(SMALL.replace("size: 2", "size: '010'"), "positive integer, got '010'")


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "null", "true"])
def test_names_that_yaml_reads_as_booleans_are_names(word):
    spec = parse_spec(SMALL.replace("h", word))
    assert word in spec.types and spec.tensor("W").axes[0].type == word


def test_an_integer_of_thousands_of_digits():
    refused(SMALL.replace("size: 2", "size: " + "9" * 6000), "6,000 characters")


def test_a_preset_kernel_of_booleans_is_refused():
    text = "name: c\narch: cnn\nchannels: [1, 2, 2]\nclasses: 3\nkernel: [true, true]\n"
    refused(text, "'kernel' must be a positive integer")
    assert parse_spec(text.replace("[true, true]", "[3, 1]")).types["k1"].size == 1


# --------------------------------------------------------------------------------------
# Work bounded up front: counts of tensors, types and axes; sizes; presets; escnn


def axes_spec(kind: str, n: int) -> str:
    return f"name: t\ntypes:\n  q: {{group: {kind}}}\ntensors:\n  T: [{', '.join(['q'] * n)}]\n"


@pytest.mark.parametrize(
    ("kind", "n", "fragment"),
    [
        ("perm", 12, f"the limit is {MAX_AXES} per tensor"),
        ("perm", 40, f"the limit is {MAX_AXES} per tensor"),
        ("gl", 30, f"the limit is {MAX_AXES} per tensor"),
        ("orthogonal", 24, f"the limit is {MAX_AXES} per tensor"),
        ("scaled", MAX_AXES_OF_A_TYPE + 1, f"the limit is {MAX_AXES_OF_A_TYPE} per tensor"),
    ],
)
def test_tensors_with_too_many_axes(kind, n, fragment):
    refused(axes_spec(kind, n), fragment)


def test_the_limits_themselves_are_allowed():
    assert len(parse_spec(axes_spec("scaled", MAX_AXES_OF_A_TYPE)).tensor("T").axes) == 4
    fixed = "name: f\ntypes:\n  k: {size: 3}\ntensors:\n  K: [" + ", ".join(["k"] * MAX_AXES) + "]"
    assert len(parse_spec(fixed).tensor("K").axes) == MAX_AXES


def many(tensors: int, types: int = 1) -> str:
    lines = ["name: many", "types:"] + [f"  h{i}: {{group: perm}}" for i in range(types)]
    lines += ["tensors:"] + [f"  T{i}: [h{i % types}]" for i in range(tensors)]
    return "\n".join(lines) + "\n"


def test_too_many_tensors_or_types():
    refused(many(2000), f"2,000 tensors; the limit is {MAX_TENSORS:,}")
    refused(many(10, MAX_TYPES + 1), f"types; the limit is {MAX_TYPES:,}")
    assert len(parse_spec(many(MAX_TENSORS)).tensors) == MAX_TENSORS


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (SMALL.replace("size: 2", "size: 1000001"), f"past the limit of {MAX_SIZE:,}"),
        (SMALL.replace("size: 2", "size: 10000000000000000000000"), "past the limit"),
        (
            "name: t\narch: transformer\nd_model: 4\nheads: 2\nd_head: 2\nmlp: 4\n"
            "depth: 1000000000\n",
            "'depth' is 1,000,000,000, past the limit of 74 (so the spec stays within 1,200",
        ),
        (
            "name: t\narch: transformer\nd_model: 4\nheads: 2\nd_head: 2\nmlp: 4\ndepth: 75\n",
            "past the limit of 74",
        ),
        ("name: m\narch: mlp\nwidths: [" + ", ".join(["3"] * 5001) + "]\n", "5,001 entries"),
        ("name: m\narch: mlp\nwidths: [3, 100000000, 1]\n", "past the limit of 1,000,000"),
        (
            "name: r\narch: resnet\nin_channels: 3\nwidth: 4\nblocks: 1000000000\nclasses: 2\n",
            "'blocks' is 1,000,000,000, past the limit",
        ),
        (
            "name: c\narch: cnn\nchannels: [1, 2]\nclasses: 3\nkernel: 100000000\n",
            "'kernel' must be a positive integer (at most 1,000,000)",
        ),
        ("name: c\narch: cnn\nchannels: [" + ", ".join(["2"] * 700) + "]\nclasses: 3\n", "700"),
    ],
    ids=[
        "fixed-size",
        "fixed-size-huge",
        "transformer-depth-1e9",
        "transformer-depth-75",
        "mlp-depth-5000",
        "mlp-width",
        "resnet-blocks",
        "cnn-kernel",
        "cnn-layers",
    ],
)
def test_sizes_and_preset_parameters_past_their_limits(text, fragment):
    refused(text, fragment)


def test_a_preset_at_its_limit_expands_quickly():
    start = time.process_time()
    text = "name: t\narch: transformer\nd_model: 4\nheads: 2\nd_head: 2\nmlp: 4\ndepth: 74\n"
    assert len(parse_spec(text).tensors) == 4 + 16 * 74 <= MAX_TENSORS
    assert time.process_time() - start < 3


ESCNN = "name: e\ntypes:\n  c: {{group: {{escnn: {family}{n}}}, rep: {rep}}}\ntensors:\n  W: [c]\n"


@pytest.mark.parametrize(
    ("family", "n", "rep", "fragment"),
    [
        ("cyclic", ", N: 1000000000", "regular", "N = 1,000,000,000 is past the limit of 64"),
        ("so2", "", "{irrep: 1000000}", "past the limits"),
        ("so2", "", "[" + ", ".join(["standard"] * 17) + "]", "direct sum of 17"),
        ("dihedral", ", N: 4", "{irrep: [1, 1, 1]}", "past the limits"),
    ],
)
def test_escnn_parameters_past_their_limits(family, n, rep, fragment):
    refused(ESCNN.format(family=family, n=n, rep=rep), fragment)


def test_a_huge_escnn_grid_is_refused_before_any_allocation():
    text = (
        "name: g\ntypes:\n  c: {group: perm}\n  kx: {size: 1000}\n  ky: {size: 1000}\n"
        "  grid: {group: {escnn: dihedral, N: 4}, rep: {grid: [kx, ky]}}\n"
        "tensors:\n  K: [c, c*, kx, ky]\n"
    )
    refused(text, "a grid of side 1,000 is past the limit of 9")


def test_an_escnn_representation_of_large_dimension():
    pytest.importorskip("escnn")
    refused(ESCNN.format(family="dihedral", n=", N: 64", rep="[regular, regular]"), "dimension 256")


# --------------------------------------------------------------------------------------
# Error messages: the user's text, escaped and cut, on one line

HOSTILE_TEXT = [
    "\x1b[31mred\x1b[0m",
    "carriage\rreturn",
    "line\nfeed",
    "right\u202eto-left",
    "zero\u200bwidth",
    "isolate\u2066x\u2069",
    "nul\x00byte",
    "separator\u2028line",
    "W" * 1_000_000,
    "\U0001f600" * 10_000,
    "a\\nb",
]


@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=range(len(HOSTILE_TEXT)))
@pytest.mark.parametrize("place", ["type", "tensor", "axis", "name", "arch", "size"])
def test_error_messages_escape_and_cut_the_users_text(text, place):
    quoted = yaml.safe_dump(text, width=10**9).strip().removesuffix("...").strip()
    spec = {
        "type": SMALL.replace("  x: {size", f"  {quoted}: {{group: perm}}\n  x: {{size"),
        "tensor": SMALL + f"  {quoted}: [h]\n",
        "axis": SMALL.replace("[h, x*]", f"[h, {quoted}]"),
        "name": SMALL.replace("name: small", f"name: {quoted}"),
        "arch": f"name: a\narch: {quoted}\n",
        "size": SMALL.replace("size: 2", f"size: {quoted}"),
    }[place]
    with pytest.raises(SpecError) as info:
        parse_spec(spec, source="spec" + text[:300] + ".yaml")
    assert sane(str(info.value)), str(info.value)[:500]


def test_one_line_keeps_the_message_readable():
    assert one_line("types.h1: bad") == "types.h1: bad"
    long = one_line("undeclared type '" + "x" * 5000 + "'; declared types: h")
    assert "\u2026" in long and long.endswith("'; declared types: h") and len(long) < 200
    assert one_line("\x1b[2J\u202e") == "\\x1b[2J\\u202e"


def test_the_cli_prints_one_line_for_a_hostile_name(tmp_path):
    spec = tmp_path / "evil\x1b[31m\u202e.yaml"
    spec.write_text(SMALL.replace("x*]", "\x1b]0;pwned\x07]").replace("name: small", "name: x"))
    line = one_error_line(cli("count", str(spec)))
    assert "\\x1b" in line and "\\u202e" in line


# --------------------------------------------------------------------------------------
# Security: nothing from the spec's file reaches generated code unescaped; no shadowing

INJECTION = 'x"""\nimport os; os.system("touch marker")\n""".yaml'


@pytest.mark.parametrize(
    "filename", [INJECTION, "back\\slash\\N{x}.yaml", "quote'\"`$(id).yaml", "\u202e.yaml"]
)
def test_the_spec_file_name_cannot_inject_code(tmp_path, filename):
    from qgen.codegen import render_module

    spec = parse_spec(EXAMPLE.read_text(), source=str(tmp_path / filename))
    source = render_module(spec)
    tree = ast.parse(source)  # compiles: no stray quote or backslash
    doc = ast.get_docstring(tree, clean=False)
    assert Path(filename).name in doc  # the docstring's value is the name, escaped in source
    first = source.split('"""', 2)[1]
    assert "\n" not in first.split("from ", 1)[1].split(", spec sha256")[0]
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "system"]
    assert not calls
    assert not (tmp_path / "marker").exists()


def test_doc_text_writes_only_safe_characters():
    text = doc_text("".join(map(chr, range(0x2100))))
    assert set(text) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._+-=@,()[]\\."
    )
    assert doc_text("mlp_relu.yaml") == "mlp_relu.yaml"
    assert len(doc_text("a" * 1000)) == 100


@pytest.mark.parametrize(
    "name", ["torch", "pytest", "hypothesis", "importlib", "typing", "math", "os", "sys", "nn"]
)
def test_spec_names_that_would_shadow_a_module_are_refused(name):
    if name == "nn":  # torch.nn is imported as ``from torch import nn``: no module nn.py
        assert parse_spec(SMALL.replace("name: small", "name: nn")).name == "nn"
        return
    refused(SMALL.replace("name: small", f"name: {name}"), "would shadow it")


def test_reserved_names_cover_every_import_of_the_generated_files():
    imported = set()
    for path in (ROOT / "generated").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    assert {"torch", "pytest", "hypothesis", "importlib"} <= imported
    assert imported <= reserved_module_names()
    bundled = {load_spec(p).name for p in (ROOT / "examples").rglob("*.yaml")}
    assert not bundled & reserved_module_names()


# --------------------------------------------------------------------------------------
# The filesystem: `-o` anywhere, failures anywhere; all or nothing


def listing(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: (d / "file").write_text("x") and d / "file", "it is a file; name a folder"),
        (lambda d: (d / "file").write_text("x") and d / "file" / "sub", "no folder can be made"),
        (lambda d: (d / "link").symlink_to(d / "missing") or d / "link", "does not exist"),
        (lambda d: Path("/dev/null"), "not a folder"),
        (lambda d: (d / "small.py").mkdir() or d, "it is a folder; move it away"),
    ],
    ids=["regular-file", "under-a-file", "dangling-symlink", "dev-null", "target-is-folder"],
)
def test_unusable_output_folders_exit_2_with_nothing_written(tmp_path, make, fragment):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL)
    out = make(tmp_path)
    before = listing(tmp_path)
    line = one_error_line(cli("build", str(spec), "-o", str(out), "--tests"))
    assert fragment in line and "nothing was written" in line
    assert listing(tmp_path) == before


def test_odd_output_paths_from_the_library(tmp_path, quick_render):
    with pytest.raises(OutputError, match="NUL character"):
        output.build(quick_render, tmp_path / "a\0b")
    with pytest.raises(OutputError, match="File name too long"):
        output.build(quick_render, tmp_path / ("x" * 5000))
    assert os.listdir(tmp_path) == []


def test_a_read_only_target_is_refused_not_replaced(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL)
    target = tmp_path / "out" / "small.py"
    target.parent.mkdir()
    target.write_text("# mine\n")
    target.chmod(0o444)
    line = one_error_line(cli("build", str(spec), "-o", str(target.parent)))
    assert "read-only" in line and "chmod u+w" in line
    assert target.read_text() == "# mine\n"


def test_a_folder_without_write_permission(tmp_path):
    """Root writes anywhere a mode allows nothing, so as root the folder is made immutable
    (``chattr +i``: no new entries, for root too) and made mutable again afterwards."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL)
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported here, and root ignores file modes")
        unlock = ["chattr", "-i", str(locked)]
    else:
        locked.chmod(0o555)
        unlock = ["chmod", "755", str(locked)]
    try:
        for out in (locked, locked / "sub"):
            line = one_error_line(cli("build", str(spec), "-o", str(out)))
            assert "no permission to write" in line, line
        assert list(locked.iterdir()) == []
    finally:
        subprocess.run(unlock, check=True)


@pytest.fixture
def small_fs():
    """A 64 KiB tmpfs (root only; unmounted afterwards): a filesystem that fills up."""
    mount = Path(f"/tmp/qgen-hostile-{os.getpid()}")
    mount.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


def test_a_full_disk_leaves_nothing_behind(small_fs):
    (small_fs / "filler").write_bytes(b"\0" * 48 * 1024)
    with pytest.raises(OutputError, match="no space left on the device; nothing was written"):
        output.build(EXAMPLE, small_fs / "out", tests=True)
    assert [p.name for p in small_fs.rglob("*")] == ["filler"]


def test_a_read_only_filesystem(small_fs):
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    with pytest.raises(OutputError, match="read-only"):
        output.build(EXAMPLE, small_fs, tests=True)
    with pytest.raises(OutputError, match="read-only"):
        output.build(EXAMPLE, small_fs / "sub", tests=True)


class Rendered:
    module = "# module A\n"
    tests = "# tests A\n"


@pytest.fixture
def quick_render(monkeypatch):
    """``build`` with a stand-in renderer: the filesystem side alone, fast."""
    monkeypatch.setattr(output, "render", lambda spec, *args: Rendered)
    return parse_spec(SMALL)


def test_files_get_the_umask_mode(tmp_path, quick_render):
    old = os.umask(0o027)
    try:
        written = output.build(quick_render, tmp_path / "a", tests=True)
    finally:
        os.umask(old)
    assert [p.name for p in written] == ["small.py", "test_small.py"]
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o640"}
    assert written[0].read_text() == "# module A\n"
    assert sorted(os.listdir(tmp_path / "a")) == ["small.py", "test_small.py"]


@pytest.mark.parametrize("unnamed", [True, False])
def test_a_failure_while_writing_leaves_no_temporary_file(
    tmp_path, quick_render, monkeypatch, unnamed
):
    if not unnamed:  # a filesystem without O_TMPFILE: named temporary files, removed
        monkeypatch.delattr(os, "O_TMPFILE")
    calls = []

    def full(fd, data):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    monkeypatch.setattr(output, "_write_fd" if unnamed else "_write_named", full)
    with pytest.raises(OutputError, match="no space left"):
        output.build(quick_render, tmp_path / "new" / "out", tests=True)
    assert os.listdir(tmp_path) == []


def test_module_and_tests_are_written_together_or_not_at_all(tmp_path, quick_render, monkeypatch):
    (tmp_path / "small.py").write_text("# old module\n")
    (tmp_path / "test_small.py").write_text("# old tests\n")
    real = os.replace
    calls = []

    def second_fails(src, dst, **kw):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst, **kw)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OutputError, match="Input/output error; nothing was written"):
        output.build(quick_render, tmp_path, tests=True)
    monkeypatch.setattr(os, "replace", real)
    assert listing(tmp_path) == {"small.py": b"# old module\n", "test_small.py": b"# old tests\n"}
    calls.clear()
    monkeypatch.setattr(os, "replace", second_fails)
    (tmp_path / "small.py").unlink()  # a first build: no old files to put back
    (tmp_path / "test_small.py").unlink()
    with pytest.raises(OutputError):
        output.build(quick_render, tmp_path, tests=True)
    assert os.listdir(tmp_path) == []


def test_leftovers_of_a_killed_build_are_removed_by_the_next(tmp_path):
    stale = [".small.py.0123456789ab.tmp", ".test_small.py.abcdefabcdef.bak"]
    kept = [".small.py.tmp", ".other.py.0123456789ab.tmp", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    output._write_all(tmp_path, {"small.py": "a\n", "test_small.py": "b\n"})
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["small.py", "test_small.py"])


def test_a_killed_build_leaves_nothing(tmp_path):
    """SIGKILL while the files are written: they are unnamed until the rename."""
    script = (
        "import os, signal, qgen.codegen.output as o\n"
        "real = o._write_fd\n"
        "def die(fd, data):\n"
        "    real(fd, data[:100])\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "o._write_fd = die\n"
        "from pathlib import Path\n"
        f"o._write_all(Path({str(tmp_path)!r}), {{'small.py': 'x' * 10**6}})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert done.returncode == -9, done.stderr
    assert os.listdir(tmp_path) == []


def test_concurrent_builds_never_mix_their_files(tmp_path):
    """Writers of pairs (module, tests) into one folder, and a reader taking the same
    lock: every pair it sees is from one build, and no temporary file stays."""
    stop = threading.Event()
    seen, errors = [], []

    def writer(tag: str) -> None:
        for i in range(40):
            stamp = f"# {tag}{i}\n"
            output._write_all(tmp_path, {"small.py": stamp, "test_small.py": stamp})

    def reader() -> None:
        while not stop.is_set():
            folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(folder, fcntl.LOCK_EX)
                names = sorted(os.listdir(tmp_path))
                if names == ["small.py", "test_small.py"]:
                    pair = {(tmp_path / n).read_text() for n in names}
                    seen.append(pair)
                    if len(pair) != 1:
                        errors.append(pair)
                elif names:
                    errors.append(names)
            finally:
                os.close(folder)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "AB"]
    check = threading.Thread(target=reader)
    check.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    check.join()
    assert not errors and seen
    assert sorted(os.listdir(tmp_path)) == ["small.py", "test_small.py"]


def test_build_writes_nothing_outside_the_folder(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL)
    before = set(os.listdir(tmp_path))
    result = cli("build", str(spec), "-o", str(tmp_path / "out"), "--tests", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert set(os.listdir(tmp_path)) == before | {"out"}
    assert sorted(os.listdir(tmp_path / "out")) == ["small.py", "test_small.py"]
    modes = {oct((tmp_path / "out" / n).stat().st_mode & 0o777) for n in ("small.py",)}
    assert modes == {oct(0o666 & ~_umask())}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------
# The generated module's own arguments


def generated(name: str):
    spec = importlib.util.spec_from_file_location(
        f"hostile_{name}", ROOT / "generated" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        ((-1, 2), ValueError, "in_channels must be a positive integer, got -1"),
        ((1.5, 2), TypeError, "in_channels must be a positive integer, got 1.5"),
        ((2, 0), ValueError, "out_channels must be a positive integer, got 0"),
        ((True, 2), TypeError, "in_channels"),
        (("2", 2), TypeError, "in_channels"),
    ],
)
def test_layer_arguments_are_checked(args, error, fragment):
    space = generated("mlp_relu")
    with pytest.raises(error, match=re.escape(fragment)):
        space.EquivariantLayer(*args)
    with pytest.raises(error, match=re.escape(fragment.replace("out_channels", "out_features"))):
        space.InvariantHead(*args)


def test_act_refuses_an_element_sampled_for_other_sizes():
    import torch

    space = generated("preset_transformer")
    sizes = {t: size or 3 for t, (_, size) in space.TYPES.items()}
    x = {
        n: torch.randn(1, 1, *(sizes[a.rstrip("*")] for a in axes))
        for n, axes in space.TENSORS.items()
    }
    for wrong in ("r", "head1", "dk1"):
        g = space.sample_group_element({**sizes, wrong: 2})
        with pytest.raises(ValueError, match="sample it at the sizes of these weights"):
            space.act(g, x)
    g = space.sample_group_element(space.sizes_of(x))
    assert space.act(g, x).keys() == x.keys()


# --------------------------------------------------------------------------------------
# The fuzzer: any YAML document is a Spec or one sane SpecError

KEYS = st.sampled_from(
    [
        "name", "types", "tensors", "arch", "group", "size", "within", "rep", "escnn", "N",
        "grid", "irrep", "widths", "channels", "kernel", "classes", "depth", "d_model", "heads",
        "d_head", "mlp", "activation", "io", "bias", "blocks", "width", "in_channels", "norm",
        "h", "h1", "x", "W", "W1", "b1", "q", "k", "<<",
    ]
)  # fmt: skip
WORDS = st.sampled_from(
    [
        "perm", "signed", "scaled", "gl", "orthogonal", "fixed", "mlp", "cnn", "resnet",
        "transformer", "dihedral", "cyclic", "so2", "standard", "regular", "trivial", "relu",
        "h", "h*", "h**", "x*", "x", "q", "yes", "on", "null", "010", "1:30", "torch",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    WORDS,
    st.text(max_size=12),
    st.integers(-(10**30), 10**30),
    st.integers(-3, 12),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
)
KEY = st.one_of(KEYS, st.text(max_size=8))
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(KEY, inner, max_size=5)),
    max_leaves=30,
)
TOP = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.just("fuzz"), SCALARS),
        "types": DOCS,
        "tensors": DOCS,
        "arch": st.one_of(WORDS, SCALARS),
        "widths": DOCS,
        "depth": SCALARS,
    },
)


def check_any(text: str) -> None:
    try:
        result = parse_spec(text, source="fuzz.yaml")
    except SpecError as exc:
        assert sane(str(exc)), str(exc)[:500]
        assert str(exc).startswith("fuzz.yaml")
    else:
        assert isinstance(result, Spec)


@settings(
    max_examples=150,
    deadline=2000,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(doc=st.one_of(TOP, DOCS), style=st.sampled_from([None, True, False]), share=st.booleans())
def test_fuzz_yaml_structure(doc, style, share):
    if share and isinstance(doc, dict) and doc:
        first = next(iter(doc))  # the same object twice: safe_dump writes an anchor and alias
        doc = {**doc, "tensors": doc[first], "types": doc[first]}
    text = yaml.safe_dump(doc, default_flow_style=style, allow_unicode=True)
    check_any(text)


@settings(max_examples=150, deadline=2000, derandomize=True)
@given(
    cut=st.integers(0, len(EXAMPLE.read_text())),
    insert=st.text(
        alphabet=st.sampled_from(
            list("[]{}:*&!|>-#'\"\\\n\t ,?%@`\x1b\u202e\x00\x85\ufeff") + ["\u00e9", "\ud800"]
        ),
        max_size=6,
    ),
    drop=st.integers(0, 5),
)
def test_fuzz_yaml_text(cut, insert, drop):
    text = EXAMPLE.read_text()
    check_any(text[:cut] + insert + text[cut + drop :])
