"""The exception tree drawn in :mod:`imageport.errors` is the tree the code defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import textwrap

import imageport
from imageport import errors
from imageport.errors import ImageportError

#: One line of the drawing: the tree's glyphs, the class name, its module under ``imageport``.
LINE = re.compile(
    r"(?P<glyphs>(?:[│ ]   )*(?:[├└]── )?)(?P<name>[A-Z]\w*) +(?P<module>[a-z_][\w.]*)(?: |$)"
)


def drawn_tree() -> dict[tuple[str, str], str | None]:
    """(module, class) → the drawn parent's name (None for the root), read from the docstring."""
    doc = inspect.getdoc(errors) or ""
    block = textwrap.dedent(doc.split("::\n\n", 1)[1].split("\n\n", 1)[0])
    tree: dict[tuple[str, str], str | None] = {}
    parents: list[str] = []
    for line in block.splitlines():
        found = LINE.match(line)
        assert found, f"not a line of the drawing: {line!r}"
        depth = len(found["glyphs"]) // 4
        del parents[depth:]
        key = (f"imageport.{found['module']}", found["name"])
        assert key not in tree, f"drawn twice: {key}"
        tree[key] = parents[-1] if parents else None
        parents.append(found["name"])
    return tree


def defined_exceptions() -> dict[tuple[str, str], type[BaseException]]:
    """Every public exception class a module of imageport defines."""
    found: dict[tuple[str, str], type[BaseException]] = {}
    for info in pkgutil.walk_packages(imageport.__path__, "imageport."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[(module.__name__, name)] = value
    return found


def test_every_exception_is_drawn_once_under_its_parent() -> None:
    tree = drawn_tree()
    classes = defined_exceptions()
    assert sorted(set(classes) - set(tree)) == [], "defined, but not drawn in imageport.errors"
    assert sorted(set(tree) - set(classes)) == [], "drawn, but not defined there"
    for (module, name), parent in tree.items():
        cls = classes[(module, name)]
        bases = [base.__name__ for base in cls.__bases__]
        assert bases == [parent or "Exception"], f"{module}.{name} derives from {bases}"


def test_every_exception_is_an_imageport_error() -> None:
    outside = [
        key for key, cls in defined_exceptions().items() if not issubclass(cls, ImageportError)
    ]
    assert outside == []
