"""Refusals in the user's words: where in their code, which operation, what to do.

Takes an exported graph node and gives ``file:line: code`` of the last frame of the
user's own code that made it (frames inside torch, transformers' internals and qgen
are skipped; the user's file is the deepest frame outside them) and the operation as
the user would write it (``torch.cumsum``, ``x.view(...)``, ``module 'blocks.0.norm'
(LayerNorm)``). :class:`UnsupportedModel` carries one line: no traceback reaches the
user.
"""

from __future__ import annotations

import os
import re

import torch
from torch import fx

from qgen.frommodel.typegraph import UnsupportedModel

__all__ = ["UnsupportedModel", "describe", "first_line", "user_line"]

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n +(.*)')
_TORCH_DIR = os.path.dirname(torch.__file__)
_QGEN_DIR = os.path.dirname(os.path.dirname(__file__))
_LIBRARY = ("/site-packages/torch/", "/site-packages/transformers/", "/site-packages/timm/")

#: aten name -> the function a user writes
_WORDS = {
    "add": "'+'",
    "sub": "'-'",
    "mul": "'*'",
    "div": "'/'",
    "matmul": "'@'",
    "getitem": "indexing",
    "slice": "x[a:b] (slicing)",
    "select": "x[i] (indexing)",
    "index": "x[idx] (indexing)",
    "t": "x.T",
    "numpy_T": "x.T",
    "permute": "x.permute(...)",
    "transpose": "x.transpose(...)",
    "view": "x.view(...)",
    "reshape": "x.reshape(...)",
}


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _frames(node: fx.Node):
    trace = node.meta.get("stack_trace") or ""
    return [
        f
        for f in _FRAME.findall(trace)
        if not f[0].startswith((_TORCH_DIR, _QGEN_DIR))
        and not any(lib in f[0] for lib in _LIBRARY)
        and not f[0].startswith("<")
    ]


def user_line(node: fx.Node) -> str | None:
    """``file:line: code`` of the last frame of the user's code that made ``node``."""
    frames = _frames(node)
    if not frames:  # a library's own model (timm, transformers): its deepest frame
        frames = [
            f
            for f in _FRAME.findall(node.meta.get("stack_trace") or "")
            if not f[0].startswith((_TORCH_DIR, _QGEN_DIR)) and not f[0].startswith("<")
        ]
    if not frames:
        return None
    file, line, _, code = frames[-1]
    rel = os.path.relpath(file)
    return f"{file if rel.startswith('..') else rel}:{line}: {code.strip()}"


def describe(node: fx.Node) -> str:
    """The operation of ``node`` in the user's words (the module that ran it, if any)."""
    target = node.target
    name = getattr(target, "__name__", str(target)).split(".")[0]
    packet = getattr(target, "_opname", name)
    words = _WORDS.get(packet)
    if words is None:
        words = f"torch.{packet}" if hasattr(torch, packet) else f"aten.{packet}"
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, cls = list(stack.values())[-1]
        cls = getattr(cls, "__name__", str(cls)).rsplit(".", 1)[-1]
        if path:
            return f"{words} in module '{_clean(path)}' ({cls})"
    return words


def _clean(path: str) -> str:
    """``L['self'].blocks[0].norm`` -> ``blocks.0.norm``."""
    path = re.sub(r"^L\['self'\]\.?", "", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    path = re.sub(r"\[['\"]([^'\"]+)['\"]\]", r".\1", path)
    return path.strip(".") or "model"


def where(node: fx.Node) -> str:
    """``file:line: code: operation`` for messages."""
    line = user_line(node)
    op = describe(node)
    if line is None:  # a value made lazily: where its input was made
        line = next((user_line(a) for a in node.all_input_nodes if user_line(a)), None)
    return f"{line}: {op}" if line else op
