"""The buckets area's small pieces: sizes and times as pages show them, and the folder path
above a listing."""

from __future__ import annotations

import pytest

from imageport.console.buckets import Crumb, crumbs, human_size, shown_time


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (1536 * 1024, "1.5 MiB"),
        (40 * 1024**3, "40.0 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (3 * 1024**5, "3072.0 TiB"),
    ],
)
def test_sizes_read_as_people_read_them(size: int, text: str) -> None:
    assert human_size(size) == text


def test_times_are_shown_to_the_second_in_utc() -> None:
    assert shown_time("2024-11-06T06:21:08.769Z") == "2024-11-06 06:21:08 UTC"
    assert shown_time("yesterday") == "yesterday"


def test_each_folder_of_a_prefix_opens_its_own_listing() -> None:
    assert crumbs("") == []
    assert crumbs("debian/12/") == [Crumb("debian", "debian/"), Crumb("12", "debian/12/")]
    assert crumbs("a//b") == [Crumb("a", "a/"), Crumb("", "a//")]
