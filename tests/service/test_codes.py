"""The image and server APIs' error codes are named once, in :mod:`imageport.service.codes`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import imageport
from imageport.service import codes

SRC = Path(imageport.__file__).parent
CODES = Path(codes.__file__)
#: A string that is a vendor or imageport code (``IMG.xxxx``, ``Ecs.xxxx``), or the start of one
#: built in an f-string (not a rule ID such as IMG-SAFE, with a dash). Prose that names a code
#: to explain it (docstrings, help texts, setting descriptions) is documentation, not a second
#: definition.
CODE = re.compile(r"(IMG|Ecs)\.[A-Z0-9_]*")


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of ``tree`` (they may name codes: they explain them)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_no_code_is_spelled_outside_the_codes_module() -> None:
    spelled = []
    for path in sorted(SRC.rglob("*.py")):
        if path == CODES:
            continue
        tree = ast.parse(path.read_text(), str(path))
        skip = docstrings(tree)
        spelled += [
            f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip
            and CODE.fullmatch(node.value)
        ]
    assert spelled == []


def test_each_code_has_one_name() -> None:
    named = {
        name: value
        for name, value in vars(codes).items()
        if name.isupper() and isinstance(value, str)
    }
    assert len(named) >= 30
    assert len(set(named.values())) == len(named)
    assert all(
        re.fullmatch(r"IMG\.[A-Z0-9_]+|Ecs\.([0-9]{4}|[A-Z_]+)", value) for value in named.values()
    )
