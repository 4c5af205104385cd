"""Spec parsing: valid specs, and one clear message per kind of bad input."""

from __future__ import annotations

import pytest

from qgen import SpecError, load_spec, parse_spec
from qgen.spec import Axis

GOOD = """\
name: mlp_relu
types:
  x:  {size: 2}
  h1: {group: scaled}
  y:  {size: 1}
tensors:
  W1: [h1, x*]
  b1: [h1]
  W2: [y, h1*]
  b2: [y]
"""


def test_parses_the_documented_example():
    spec = parse_spec(GOOD)
    assert spec.name == "mlp_relu"
    assert [t.name for t in spec.tensors] == ["W1", "b1", "W2", "b2"]
    assert spec.tensor("W1").axes == (Axis("h1"), Axis("x", dual=True))
    assert spec.types["h1"].kind == "scaled" and spec.types["h1"].size is None
    assert spec.types["x"].fixed and spec.types["x"].size == 2
    assert spec.group_types == ("h1",)


def test_round_trips_through_to_dict():
    import yaml

    spec = parse_spec(GOOD)
    again = parse_spec(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    assert again.types == spec.types and again.tensors == spec.tensors


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


BAD = [
    # (spec text, line, fragment of the message)
    ("name: [unclosed\n", 2, "not valid YAML"),
    ("types: {}\n", 1, "missing required key 'name'"),
    (replace("W2: [y, h1*]", "W2: [y, h9*]"), 9, "undeclared type 'h9'"),
    (replace("x:  {size: 2}", "x:  {}"), 3, "needs a size"),
    (replace("h1: {group: scaled}", "h1: {group: scaling}"), 4, "unknown group kind 'scaling'"),
    (replace("name: mlp_relu", "name: 2mlp"), 1, "not a Python identifier"),
    (replace("name: mlp_relu", "name: class"), 1, "Python keyword"),
    (replace("W1: [h1, x*]", "W-1: [h1, x*]"), 7, "not a Python identifier"),
    (replace("h1: {group: scaled}", "h 1: {group: scaled}"), 4, "not a Python identifier"),
    (replace("b1: [h1]", "W1: [h1]"), 8, "duplicate name 'W1'"),
    (replace("y:  {size: 1}", "x:  {size: 1}"), 5, "duplicate name 'x'"),
    ("name: e\ntypes: {h: {group: perm}}\ntensors: {}\n", 3, "tensor list is empty"),
    ("name: e\ntypes: {h: {group: perm}}\ntensors:\n", 3, "expected a mapping"),
    (replace("b1: [h1]", "b1: []"), 8, "at least one axis"),
    (replace("W1: [h1, x*]", "W1: [h1, x**]"), 7, "2 stars"),
    (replace("x:  {size: 2}", "x:  {size: 0}"), 3, "positive integer"),
    (replace("x:  {size: 2}", "x:  {size: two}"), 3, "positive integer"),
    (replace("x:  {size: 2}", "x:  {sise: 2}"), 3, "unknown key 'sise'"),
    (GOOD + "extra: 1\n", 11, "unknown key 'extra'"),
    (replace("b1: [h1]", "b1: h1"), 8, "expected a list of axes"),
    (replace("W1: [h1, x*]", "W1: [h1, 3]"), 7, "axis is a type name"),
    (replace("name: mlp_relu", "name: __import__"), 1, "reserved"),
    ("", None, "empty"),
    ("- a\n- b\n", 1, "expected a mapping"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD)
def test_bad_specs_get_one_clear_message(text, line, fragment):
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="spec.yaml")
    err = info.value
    assert fragment in err.message
    assert err.source == "spec.yaml"
    assert err.line == line
    assert str(err).startswith("spec.yaml")


@pytest.mark.parametrize(
    "value",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        '!!python/object/apply:os.system "touch {marker}"',
        "!!python/name:os.system",
        "!custom thing",
    ],
)
def test_yaml_tags_cannot_run_code(tmp_path, value):
    marker = tmp_path / "pwned"
    text = f"""
name: {value.format(marker=marker)}
types: {{h: {{group: perm}}}}
tensors: {{W: [h]}}
"""
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert "not allowed" in info.value.message
    assert info.value.line == 2
    assert not marker.exists()


@pytest.mark.parametrize(
    "name",
    ["a; import os", "a\nb", "x' + __import__('os').system('id') + '", "é", "a.b", "a" * 65],
)
def test_names_that_could_inject_code_are_rejected(name):
    import json

    text = GOOD.replace("name: mlp_relu", f"name: {json.dumps(name)}")
    with pytest.raises(SpecError):
        parse_spec(text)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")


def test_sha256_identifies_the_text():
    assert parse_spec(GOOD).sha256 == parse_spec(GOOD).sha256
    assert parse_spec(GOOD).sha256 != parse_spec(GOOD + "# comment\n").sha256
