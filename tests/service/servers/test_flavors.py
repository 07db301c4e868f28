"""The flavor catalogue: what is offered on a host, and the list's filters."""

from __future__ import annotations

import pytest

from imageport.service.errors import RequestInvalid
from imageport.service.servers.flavors import list_flavors, offered
from imageport.settings import load_settings


def ids(**settings: object) -> list[str]:
    return [f.id for f in offered(load_settings({}, **settings))]


def test_the_catalogue_is_cut_to_the_host() -> None:
    assert ids() == ["s1.small.1", "s1.medium.2", "s1.large.1"]
    assert ids(server_max_memory_mib=1024) == ["s1.small.1"]
    assert ids(server_host_vcpus=1) == ["s1.small.1", "s1.medium.2"]
    assert ids(server_host_memory_mib=1536) == ["s1.small.1"]


def test_the_list_filters() -> None:
    settings = load_settings({})

    def listed(*query: tuple[str, str]) -> list[str]:
        return [f.id for f in list_flavors(settings, list(query))]

    assert listed(("availability_zone", "local-1a")) == ["s1.small.1", "s1.medium.2", "s1.large.1"]
    assert listed(("availability_zone", "az1")) == []
    assert listed(("flavor_id", "s1.large.1")) == ["s1.large.1"]
    assert listed(("limit", "1")) == ["s1.small.1"]
    assert listed(("marker", "s1.small.1"), ("limit", "1")) == ["s1.medium.2"]
    for query in ([("limit", "0")], [("marker", "s6.large.2")], [("sort", "id")]):
        with pytest.raises(RequestInvalid) as info:
            list_flavors(settings, query)
        assert info.value.code == "Ecs.0005"
