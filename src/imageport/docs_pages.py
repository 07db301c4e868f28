"""The pages of ``docs/`` generated from the code, and how they are written.

Whole pages: ``docs/rules.md`` (from the rule units) and ``docs/settings.md`` (from the fields
of :class:`~imageport.settings.Settings`). A generated part of a hand-written page sits between
a ``<!-- generated: NAME -->`` line and a ``<!-- end generated: NAME -->`` line: the route
tables of ``docs/service.md`` (:mod:`imageport.api.route_docs`). ``scripts/docs`` rewrites
them all (:func:`write_pages`); a test fails when a committed page differs from
:func:`expected_pages`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from imageport.api.middleware import RequestContext
from imageport.api.route_docs import console_route_table, ims_route_table, s3_route_table
from imageport.rules.docs import rules_markdown
from imageport.settings import load_settings, settings_markdown

#: Hand-written pages with generated parts, and the parts' names.
PAGES_WITH_PARTS = {
    "docs/service.md": ("ims-routes", "s3-routes"),
    "docs/console.md": ("console-routes",),
}


def image_api_routes() -> list[BaseRoute]:
    """The routes the server's image API application has (``imageport.server.build_apps``),
    built over throwaway services in a temporary data dir."""
    from imageport.server import build_apps
    from imageport.wiring import build_services

    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(load_settings({}, data_dir=tmp))
        try:
            ims, _ = build_apps(services)
        finally:
            services.db.dispose()
    app = ims.app if isinstance(ims, RequestContext) else ims
    if not isinstance(app, Starlette):
        raise TypeError(f"the image API is no longer a Starlette app: {app!r}")
    return list(app.routes)


def generated_parts() -> dict[str, str]:
    """Each generated part of a hand-written page, by name."""
    routes = image_api_routes()
    return {
        "ims-routes": ims_route_table(routes),
        "s3-routes": s3_route_table(),
        "console-routes": console_route_table(routes),
    }


def fill(page: str, parts: Mapping[str, str]) -> str:
    """``page`` with the text between each part's markers replaced by the part."""
    for name, text in parts.items():
        begin, end = f"<!-- generated: {name} -->\n", f"<!-- end generated: {name} -->\n"
        if page.count(begin) != 1 or page.count(end) != 1 or page.index(begin) > page.index(end):
            raise ValueError(f"the markers of the generated part {name!r} are not in the page once")
        head, rest = page.split(begin)
        tail = rest.split(end)[1]
        page = f"{head}{begin}{text}{end}{tail}"
    return page


def expected_pages(repo: Path) -> dict[Path, str]:
    """What every generated page of the checkout at ``repo`` must hold."""
    pages = {
        repo / "docs" / "rules.md": rules_markdown(),
        repo / "docs" / "settings.md": settings_markdown(),
    }
    parts = generated_parts()
    for page, names in PAGES_WITH_PARTS.items():
        path = repo / page
        pages[path] = fill(path.read_text(), {name: parts[name] for name in names})
    return pages


def write_pages(repo: Path) -> list[Path]:
    """Rewrite the generated pages of ``repo`` that differ; the paths rewritten."""
    changed = []
    for path, text in expected_pages(repo).items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    """``python -m imageport.docs_pages REPO``: rewrite the generated pages, naming them."""
    for path in write_pages(Path(argv[0]) if argv else Path.cwd()):
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
