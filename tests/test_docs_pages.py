"""The pages of docs/ stand alone and say what the code does.

The generated ones (the rules, the settings, the route tables of service.md) match the code, and
no page, docstring or comment of the package names a document or path outside the repository
(the tests may: the corpus of real images lives beside the checkout).
"""

from __future__ import annotations

import re

import pytest

from imageport.docs_pages import PAGES_WITH_PARTS, expected_pages, fill, generated_parts
from support import builders

REPO = builders.REPO

#: What pointed outside the repository before: notes that only the authors had, and the build
#: machine's paths.
OUTSIDE = re.compile(
    r"CONTRACTS\d|requirements (§|W\d)|ims-reference|ecs-reference|clients\.md|shared/spec|"
    r"\.\./shared/(?!corpus\b)|/work/|vendor notes"
)


def test_every_generated_page_matches_the_code() -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, text in expected_pages(REPO).items()
        if path.read_text() != text
    ]
    assert not stale, f"{', '.join(stale)} differ from the code: run scripts/docs"


@pytest.fixture(scope="module")
def parts() -> dict[str, str]:
    return generated_parts()


def test_the_route_tables_list_every_served_route(parts: dict[str, str]) -> None:
    ims = parts["ims-routes"]
    for request in ("POST /v3/auth/tokens", "GET /health", "GET /metrics", "GET /versions"):
        assert f"`{request}`" in ims
    assert "`POST /v2.1/cloudimages/action`" in ims  # a second path of the same view
    s3 = parts["s3-routes"]
    assert "| `POST /{bucket}/{key}?uploads` | CreateMultipartUpload" in s3


def test_a_page_without_the_markers_of_its_part_is_an_error(parts: dict[str, str]) -> None:
    page = "intro\n<!-- generated: t -->\nold\n<!-- end generated: t -->\nend\n"
    assert fill(page, {"t": "new\n"}) == page.replace("old\n", "new\n")
    with pytest.raises(ValueError, match="'u'"):
        fill(page, {"u": "new\n"})
    assert {name for names in PAGES_WITH_PARTS.values() for name in names} == set(parts)


def test_nothing_refers_to_a_document_outside_the_repository() -> None:
    files = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
    files += sorted((REPO / "src" / "imageport").rglob("*.py"))
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "\n".join(found)


def test_every_picture_a_page_shows_is_in_the_repository() -> None:
    """The README's and docs' screenshots (taken by the console's browser tests) exist."""
    missing = [
        f"{page.relative_to(REPO)}: {target}"
        for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text())
        if not (page.parent / target).is_file()
    ]
    assert missing == []
