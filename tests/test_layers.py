"""The layers keep to their side of the ports: the service never imports an adapter, and the
entry points (API views, CLI, workers, server start-up) never query the tables themselves nor
probe an adapter for methods its port lacks. Read from the source, so a new module is covered
at once."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import imageport

SRC = Path(imageport.__file__).parent
ENTRY_POINTS = [
    *SRC.glob("api/**/*.py"),
    *SRC.glob("cli/**/*.py"),
    *SRC.glob("worker/**/*.py"),
    *SRC.glob("console/**/*.py"),
    SRC / "server.py",
]
#: What querying the database looks like: the tables, and SQLAlchemy's statement builders.
QUERYING = {"imageport.service.tables", "sqlalchemy.select", "sqlalchemy.insert"} | {
    f"sqlalchemy.{name}" for name in ("update", "delete", "func", "text", "and_", "or_")
}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of every module and name ``path`` imports."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(SRC.parent)}:{line}"


def test_the_service_never_imports_an_adapter() -> None:
    found = [
        f"{_where(path, line)} imports {name}"
        for path in SRC.glob("service/**/*.py")
        for line, name in _imports(path)
        if name == "imageport.adapters" or name.startswith("imageport.adapters.")
    ]
    assert found == []


def test_entry_points_leave_the_tables_to_the_service() -> None:
    found = [
        f"{_where(path, line)} imports {name}"
        for path in ENTRY_POINTS
        for line, name in _imports(path)
        if name in QUERYING
    ]
    assert found == []


def test_no_module_probes_the_store_or_the_worker_for_methods() -> None:
    """``getattr(services.store, "...")`` would hide a capability that is not on the port."""
    found = []
    for path in SRC.glob("**/*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "isinstance")
                and node.args
            ):
                continue
            probed = ast.unparse(node.args[0])
            if probed.split(".")[-1] in ("store", "worker", "queue", "converter"):
                found.append(f"{_where(path, node.lineno)}: {ast.unparse(node)}")
    assert found == []
