"""Key/value image tags on SQLite and PostgreSQL: one image's tags, batches, caps, the project's
tags, and filtering or counting images by tag."""

from __future__ import annotations

import pytest

from imageport.service.access.projects import create_project
from imageport.service.context import Services
from imageport.service.errors import ServiceError
from imageport.service.images import queries as image_queries
from imageport.service.images import tags as t
from imageport.service.images.lifecycle import create_glance_image
from imageport.service.images.tags import Tag

World = tuple[Services, str, str]


@pytest.fixture
def world(backend_services: Services) -> World:
    services = backend_services
    return services, create_project(services, "mine").id, create_project(services, "other").id


def image(services: Services, project_id: str, name: str, tags: list[str]) -> str:
    return create_glance_image(services, project_id, {"name": name, "tags": tags}).id


def code_of(call: object) -> tuple[int, str]:
    with pytest.raises(ServiceError) as info:
        call()  # type: ignore[operator]
    return info.value.status, info.value.code


def test_add_replace_list_and_delete(world: World) -> None:
    services, mine, _ = world
    image_id = image(services, mine, "web", ["glance-only", "env=dev"])
    # a Glance tag without "=" is the key with an empty value
    assert t.list_tags(services, mine, mine, image_id) == [
        Tag("glance-only", ""),
        Tag("env", "dev"),
    ]
    t.add_tag(services, mine, mine, image_id, {"tag": {"key": "env", "value": "prod"}})
    t.add_tag(services, mine, mine, image_id, {"tag": {"key": "team", "value": ""}})
    t.add_tag(services, mine, mine, image_id, {"tag": {"key": "glance-only", "value": "x"}})
    assert t.list_tags(services, mine, mine, image_id) == [
        Tag("glance-only", "x"),
        Tag("env", "prod"),
        Tag("team", ""),
    ]
    # stored as the "k=v" strings every image document shows (and tag=k=v filters on)
    assert image_queries.get_image(services, mine, image_id).tags == [
        "glance-only=x",
        "env=prod",
        "team=",
    ]
    listed = image_queries.list_images(services, mine, [("tag", "env=prod")]).images
    assert [i.id for i in listed] == [image_id]

    t.delete_tag(services, mine, mine, image_id, "env")
    assert [tag.key for tag in t.list_tags(services, mine, mine, image_id)] == [
        "glance-only",
        "team",
    ]
    assert code_of(lambda: t.delete_tag(services, mine, mine, image_id, "env")) == (
        404,
        "IMG.NOT_FOUND",
    )


def test_batch_create_and_delete(world: World) -> None:
    services, mine, _ = world
    image_id = image(services, mine, "web", ["a=1"])
    t.batch_tags(
        services,
        mine,
        mine,
        image_id,
        {
            "action": "create",
            "tags": [
                {"key": "a", "value": "2"},
                {"key": "b", "value": "3"},
                {"key": "c", "value": ""},
            ],
        },
    )
    assert image_queries.get_image(services, mine, image_id).tags == ["a=2", "b=3", "c="]
    # delete is by key; a key the image lacks is no error (as the vendor documents)
    t.batch_tags(
        services,
        mine,
        mine,
        image_id,
        {
            "action": "delete",
            "tags": [{"key": "a", "value": "whatever"}, {"key": "missing", "value": ""}],
        },
    )
    assert image_queries.get_image(services, mine, image_id).tags == ["b=3", "c="]
    for body in (
        {"action": "update", "tags": [{"key": "a", "value": "1"}]},
        {"action": "create", "tags": []},
        {"action": "create", "tags": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]},
        {"action": "create", "tags": [{"key": "a b", "value": "1"}]},
        {"action": "create", "tags": [{"value": "1"}]},
    ):
        assert code_of(lambda body=body: t.batch_tags(services, mine, mine, image_id, body)) == (
            400,
            "IMG.0001",
        ), body
    assert image_queries.get_image(services, mine, image_id).tags == ["b=3", "c="]


def test_caps(world: World) -> None:
    services, mine, _ = world
    image_id = image(services, mine, "web", [f"k{i}=v" for i in range(9)])
    t.add_tag(services, mine, mine, image_id, {"tag": {"key": "tenth", "value": "v"}})
    refused = {"tag": {"key": "eleventh", "value": "v"}}
    assert code_of(lambda: t.add_tag(services, mine, mine, image_id, refused)) == (400, "IMG.0001")
    # replacing a key of a full image is fine
    t.add_tag(services, mine, mine, image_id, {"tag": {"key": "k0", "value": "new"}})
    assert len(t.list_tags(services, mine, mine, image_id)) == 10
    for tag in (
        {"key": "k" * 37, "value": "v"},
        {"key": "k", "value": "v" * 44},
        {"key": "", "value": "v"},
        {"key": "k", "value": "white space"},
        {"key": "k"},
        {"key": "k", "value": 1},
    ):
        assert code_of(lambda tag=tag: t.add_tag(services, mine, mine, image_id, {"tag": tag})) == (
            400,
            "IMG.0001",
        ), tag
    t.delete_tag(services, mine, mine, image_id, "tenth")
    t.add_tag(services, mine, mine, image_id, {"tag": {"key": "k" * 36, "value": "v" * 43}})
    assert len(t.list_tags(services, mine, mine, image_id)) == 10
    assert code_of(lambda: t.add_tag(services, mine, mine, image_id, {"tags": {}})) == (
        400,
        "IMG.0001",
    )


def test_projects_are_separate(world: World) -> None:
    services, mine, other = world
    image_id = image(services, mine, "web", ["env=dev"])
    body = {"tag": {"key": "x", "value": "y"}}
    # another project's image, and a path naming another project, are not found
    assert code_of(lambda: t.add_tag(services, other, other, image_id, body)) == (
        404,
        "IMG.NOT_FOUND",
    )
    assert code_of(lambda: t.list_tags(services, mine, other, image_id)) == (404, "IMG.NOT_FOUND")
    assert code_of(lambda: t.add_tag(services, mine, other, image_id, body)) == (
        404,
        "IMG.NOT_FOUND",
    )
    assert code_of(lambda: t.project_tags(services, mine, other)) == (404, "IMG.NOT_FOUND")
    assert t.project_tags(services, other, other) == []
    assert t.query_images(services, other, other, {"action": "count"}).total_count == 0


def test_query_and_project_tags(world: World) -> None:
    services, mine, other = world
    web = image(services, mine, "web-1", ["env=prod", "team=a"])
    db = image(services, mine, "db-1", ["env=dev", "team=a"])
    bare = image(services, mine, "scratch", [])
    image(services, other, "theirs", ["env=prod"])

    def ids(body: dict[str, object]) -> set[str]:
        result = t.query_images(services, mine, mine, {"action": "filter", **body})
        assert result.images is not None and result.total_count == len(result.images)
        return {i.id for i in result.images}

    assert ids({}) == {web, db, bare}
    assert ids({"tags": [{"key": "env", "values": ["prod"]}]}) == {web}
    assert ids({"tags": [{"key": "env", "values": []}]}) == {web, db}
    assert ids(
        {"tags": [{"key": "env", "values": ["prod", "dev"]}, {"key": "team", "values": ["a"]}]}
    ) == {web, db}
    assert ids(
        {"tags_any": [{"key": "env", "values": ["dev"]}, {"key": "nothing", "values": []}]}
    ) == {db}
    assert ids({"not_tags": [{"key": "env", "values": ["prod"]}]}) == {db, bare}
    assert ids({"not_tags_any": [{"key": "team", "values": []}]}) == {bare}
    assert ids({"without_any_tag": True, "tags": [{"key": "env", "values": []}]}) == {bare}
    assert ids({"matches": [{"key": "resource_name", "value": "-1"}]}) == {web, db}
    assert ids({"matches": [{"key": "resource_id", "value": db}]}) == {db}

    page = t.query_images(services, mine, mine, {"action": "filter", "limit": "2", "offset": "1"})
    assert page.total_count == 3 and page.images is not None and len(page.images) == 2
    shown = {i.id: i for i in page.images}
    if web in shown:
        assert (shown[web].name, shown[web].status) == ("web-1", "queued")
        assert list(shown[web].tags) == [Tag("env", "prod"), Tag("team", "a")]
    counted = t.query_images(
        services, mine, mine, {"action": "count", "tags": [{"key": "team", "values": ["a"]}]}
    )
    assert (counted.total_count, counted.images) == (2, None)
    for body in (
        {"action": "list"},
        {"action": "filter", "tags": []},
        {"action": "filter", "limit": "0"},
        {"action": "filter", "limit": "1001"},
        {"action": "filter", "offset": "-1"},
        {"action": "filter", "matches": [{"key": "owner", "value": "x"}]},
        {"action": "filter", "tags": [{"key": f"k{i}", "values": []} for i in range(11)]},
    ):
        assert code_of(lambda body=body: t.query_images(services, mine, mine, body)) == (
            400,
            "IMG.0001",
        ), body

    assert t.project_tags(services, mine, mine) == [("env", ["dev", "prod"]), ("team", ["a"])]
