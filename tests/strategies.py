"""Hypothesis strategies for random weight-space specs and sizes.

Specs are drawn as YAML text so the parser is exercised too: several group
types of every kind, fixed types, tensors with 1 to 3 axes, repeated types
within a tensor and dual axes.
"""

from __future__ import annotations

from hypothesis import strategies as st

from qgen.spec import Spec, parse_spec

GROUP_KINDS = ("perm", "signed", "scaled", "gl", "orthogonal")


@st.composite
def spec_texts(draw, max_tensors: int = 3, max_axes: int = 3, nested: bool = False) -> str:
    """With ``nested``, a perm type ``H`` and one or two types nested in it; every tensor
    with a nested axis gets exactly one ``H`` axis (as the spec requires)."""
    n_group = draw(st.integers(1, 3))
    kinds = draw(st.lists(st.sampled_from(GROUP_KINDS), min_size=n_group, max_size=n_group))
    n_fixed = draw(st.integers(0, 2))
    types = {f"h{i}": f"{{group: {k}}}" for i, k in enumerate(kinds)}
    inner: list[str] = []
    if nested:
        types["H"] = "{group: perm}"
        for i in range(draw(st.integers(1, 2))):
            kind = draw(st.sampled_from(GROUP_KINDS))
            types[f"n{i}"] = f"{{group: {kind}, within: H}}"
            inner.append(f"n{i}")
    for i in range(n_fixed):
        types[f"x{i}"] = f"{{size: {draw(st.integers(1, 2))}}}"
    names = [n for n in types if n != "H"]
    n_tensors = draw(st.integers(1, max_tensors))
    tensors = {}
    for i in range(n_tensors):
        n_axes = draw(st.integers(1, max_axes))
        axes = [draw(st.sampled_from(names)) for _ in range(n_axes)]
        if nested and (any(a in inner for a in axes) or draw(st.booleans())):
            axes.insert(draw(st.integers(0, len(axes))), "H")
        axes = [a + ("*" if draw(st.booleans()) else "") for a in axes]
        tensors[f"T{i}"] = "[" + ", ".join(axes) + "]"
    lines = ["name: random_space", "types:"]
    lines += [f"  {k}: {v}" for k, v in types.items()]
    lines += ["tensors:"]
    lines += [f"  {k}: {v}" for k, v in tensors.items()]
    return "\n".join(lines) + "\n"


def specs(**kwargs) -> st.SearchStrategy[Spec]:
    return spec_texts(**kwargs).map(lambda text: parse_spec(text, source="<hypothesis>"))


@st.composite
def sizes_for(draw, spec: Spec, max_size: int = 3) -> dict[str, int]:
    return {t: draw(st.integers(1, max_size)) for t in spec.group_types}
