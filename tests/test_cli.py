"""The qgen command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qgen.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mlp_relu.yaml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qgen", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_count_json_is_one_object_with_the_documented_keys(capsys):
    assert main(["count", str(EXAMPLE), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"name", "sizes", "equivariant", "bias", "invariant", "total"}
    assert data["name"] == "mlp_relu" and data["sizes"] == {}
    assert data["total"] == {"equivariant": 21, "bias": 2, "invariant": 2}
    assert data["equivariant"]["W1"]["b1"] == 2
    assert list(data["equivariant"]) == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"]


def test_count_with_sizes(capsys, tmp_path):
    spec = tmp_path / "perm.yaml"
    spec.write_text(EXAMPLE.read_text().replace("scaled", "perm"))
    assert main(["count", str(spec), "--json"]) == 0
    generic = json.loads(capsys.readouterr().out)
    assert main(["count", str(spec), "--json", "--sizes", "h2=1"]) == 0
    small = json.loads(capsys.readouterr().out)
    assert generic["total"]["equivariant"] == 164
    assert small["sizes"] == {"h2": 1}
    assert small["equivariant"]["W2"]["W2"] == 2 < generic["equivariant"]["W2"]["W2"] == 4


def test_count_table_and_thresholds(capsys, tmp_path):
    spec = tmp_path / "perm.yaml"
    spec.write_text(EXAMPLE.read_text().replace("scaled", "perm"))
    assert main(["count", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "total: 164 equivariant, 11 bias, 11 invariant" in out
    assert "W2 <- W2: 4 for h1 >= 2, h2 >= 2 (h1=1: 2; h2=1: 2)" in out


def test_verify_passes_and_says_what_it_checked():
    result = run("verify", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK:" in result.stdout and " s" in result.stdout
    assert "h1=2 h2=2 h3=2: 80 blocks checked: all agree" in result.stdout


def test_explain_one_block(capsys):
    assert main(["explain", str(EXAMPLE), "--block", "W1:b1"]) == 0
    out = capsys.readouterr().out
    assert "W1[a, A] += w[A] * b1[a]" in out
    assert "b1 axis 0 -> W1 axis 0" in out


def test_explain_invariants_and_bias(capsys):
    assert main(["explain", str(EXAMPLE), "--block", "R:b4"]) == 0
    assert "R += sum_{A} w[A] * b4[A]" in capsys.readouterr().out
    assert main(["explain", str(EXAMPLE), "--block", "b4:R"]) == 0
    assert "b4[A] += w[A]" in capsys.readouterr().out


def test_explain_says_why_a_block_is_empty(capsys):
    assert main(["explain", str(EXAMPLE), "--block", "W2:W1"]) == 0
    assert "allows no term" in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["count"], ["verify"], ["explain"]])
def test_help_has_an_example(command):
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout


def test_bad_spec_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntypes:\n  h: {group: perm}\ntensors:\n  W: [h, k]\n")
    result = run("count", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"qgen: error: {bad}:5: tensors.W[1]: axis 'k' names undeclared type 'k'; declared types: h"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["count", "SPEC", "--sizes", "h1"], "TYPE=N"),
        (["count", "SPEC", "--sizes", "zz=2"], "no type 'zz'"),
        (["count", "SPEC", "--sizes", "h1=0"], "positive integer"),
        (["explain", "SPEC", "--block", "W1"], "OUT:IN"),
        (["explain", "SPEC", "--block", "W1:Q"], "no tensor 'Q'"),
        (["count", "missing.yaml"], "no such file"),
    ],
)
def test_usage_errors_exit_2(args, fragment, capsys):
    args = [str(EXAMPLE) if a == "SPEC" else a for a in args]
    assert main(args) == 2
    assert fragment in capsys.readouterr().err


def test_count_refuses_to_override_a_declared_fixed_size(capsys):
    """--sizes x=3 on a fixed type of size 2 once changed the count silently (21 -> 28)."""
    assert main(["count", str(EXAMPLE), "--sizes", "x=3"]) == 2
    err = capsys.readouterr().err
    assert "x is a fixed type of size 2" in err and err.count("\n") == 1


@pytest.mark.parametrize("up_to", ["0", "-3"])
def test_verify_refuses_an_empty_size_range(up_to, capsys):
    assert main(["verify", str(EXAMPLE), "--up-to", up_to]) == 2
    assert "--up-to must be a positive size" in capsys.readouterr().err


def test_verify_bounds_its_work_up_front(capsys):
    """--up-to 50 once ran for minutes with no output: the cost is said and refused at once."""
    assert main(["verify", str(EXAMPLE), "--up-to", "50"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "map entries over 50 size settings is more than --max-work" in captured.err
    assert main(["verify", str(EXAMPLE), "--up-to", "4"]) == 0
    assert "map entries to solve" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(
    "command",
    ["qgen count SPEC | head -1", "qgen explain SPEC | head -2", "qgen expand SPEC | head -1"],
)
def test_closed_pipe_ends_quietly(command):
    qgen = f"{sys.executable} -m qgen"
    script = "set -o pipefail; " + command.replace("qgen", qgen, 1).replace("SPEC", str(EXAMPLE))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == ""


def test_build_reports_maps_not_terms(tmp_path):
    result = run("build", str(EXAMPLE), "-o", str(tmp_path))
    assert result.returncode == 0
    assert "mlp_relu: 21 equivariant linear maps, 2 bias maps, 2 invariant" in result.stdout
    assert "terms" not in result.stdout


def test_usage_errors_escape_the_users_text(capsys):
    assert main(["count", str(EXAMPLE), "--sizes", "\x1b[2J\u202eh1\r\n=2", "h" * 10_000]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qgen: error: --sizes")
    assert "\x1b" not in err and "\u202e" not in err and "\r" not in err
    assert "no type '\\x1b[2J\\u202eh1\\r\\n'" in err and len(err) <= 420


def test_build_into_a_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    target = tmp_path / "not_a_folder"
    target.write_text("mine\n")
    assert main(["build", str(EXAMPLE), "-o", str(target), "--tests"]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"qgen: error: cannot write -o {target}: it is a file; name a folder (it is "
        "created when missing); nothing was written\n"
    )
    assert target.read_text() == "mine\n" and sorted(os.listdir(tmp_path)) == ["not_a_folder"]


def test_verify_refuses_a_huge_size_range_before_listing_it(capsys):
    assert main(["verify", str(EXAMPLE), "--up-to", "1000000000"]) == 2
    assert "past the limit of 1,000 size settings" in capsys.readouterr().err
