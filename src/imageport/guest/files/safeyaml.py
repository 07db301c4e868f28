"""YAML from the guest (cloud-init, netplan), loaded safely and with the line of each key.

Only PyYAML's *safe* loader is used (plain data: mappings, lists, strings, numbers, booleans;
no Python objects). Anchors and aliases (``&name`` / ``*name``) are allowed, as cloud-init's
own ``05_logging.cfg`` uses them, but bounded: an alias shares a node, and a few of them nest
into exponentially many paths ("billion laughs") that any code walking the data would follow.
So before the data is built, the size the document would have with every alias expanded is
computed on the node graph (each node once, memoised) and a document above
:data:`MAX_EXPANDED_NODES`, or with an alias cycle, is refused. libyaml (when PyYAML has it)
also caps nesting at 1000 levels; the pure-Python fallback hits Python's recursion limit,
which is caught.

The key lines come from the composed node tree (``start_mark``), so a finding can quote
``file:line``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from imageport.errors import ImageportError

#: Largest YAML file parsed.
MAX_YAML_BYTES = 1 << 20
#: Nodes a document may have once its aliases are expanded.
MAX_EXPANDED_NODES = 200_000
#: Depth of mapping keys whose lines are recorded.
MAX_KEY_DEPTH = 6
#: Key paths whose lines are recorded per document.
MAX_KEY_LINES = 10_000

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlRefused(ImageportError):
    """The text is not a YAML document we accept (syntax error, alias, too deep, ...)."""


@dataclass(frozen=True, slots=True)
class YamlDoc:
    """A loaded document and the 1-based line of each mapping key, by key path."""

    data: Any
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def line(self, *path: str) -> int:
        """The line of the key at ``path`` (0 when unknown)."""
        return self.lines.get(path, 0)


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def _refuse_alias_bombs(root: yaml.Node) -> None:
    """Raise when the document, aliases expanded, has more than :data:`MAX_EXPANDED_NODES`
    nodes, or when an alias refers to a node that contains it (a cycle)."""
    size: dict[int, int] = {}  # finished nodes: expanded size
    open_: set[int] = set()  # nodes whose children are being sized
    todo: list[tuple[yaml.Node, bool]] = [(root, False)]
    while todo:
        node, children_done = todo.pop()
        key = id(node)
        if children_done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_EXPANDED_NODES:
                raise YamlRefused(
                    f"expands to more than {MAX_EXPANDED_NODES} nodes through "
                    "its anchors and aliases"
                )
            continue
        if key in size:
            continue
        if key in open_:
            raise YamlRefused("has an alias inside the node it refers to (a cycle)")
        open_.add(key)
        todo.append((node, True))
        todo.extend((c, False) for c in _children(node) if id(c) not in size)


def _key_lines(root: yaml.Node) -> dict[tuple[str, ...], int]:
    lines: dict[tuple[str, ...], int] = {}
    todo: list[tuple[tuple[str, ...], yaml.Node]] = [((), root)]
    while todo and len(lines) < MAX_KEY_LINES:
        path, node = todo.pop()
        if not isinstance(node, yaml.MappingNode) or len(path) >= MAX_KEY_DEPTH:
            continue
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                sub = (*path, str(key.value))
                lines.setdefault(sub, key.start_mark.line + 1)
                todo.append((sub, value))
    return lines


def load_yaml(text: str) -> YamlDoc:
    """The first document of ``text``; :class:`YamlRefused` when it is not acceptable.

    An empty document loads as ``None``.
    """
    if len(text) > MAX_YAML_BYTES:
        raise YamlRefused(f"is {len(text)} characters, more than {MAX_YAML_BYTES}")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(None)
        _refuse_alias_bombs(node)
        data = loader.construct_document(node)
        return YamlDoc(data, _key_lines(node))
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()
        raise YamlRefused(f"is not valid YAML ({' '.join(first[:3])})") from exc
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise YamlRefused(f"cannot be loaded ({type(exc).__name__}: {exc})") from exc
    finally:
        loader.dispose()
