"""Whole numbers in request text (imageport.numbers) and the Range header built on them."""

from __future__ import annotations

import pytest

from imageport.api.s3.ranges import RangeNotSatisfiable, parse_range
from imageport.numbers import HUGE, whole_number
from imageport.service.buckets.part_copy import parse_copy_range
from imageport.service.errors import RequestInvalid, ServiceError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("007", 7),
        ("1000", 1000),
        ("9" * 19, int("9" * 19)),
        ("1" + "0" * 19, HUGE),
        ("0" * 40 + "5", 5),
        ("9" * 5000, HUGE),
    ],
)
def test_ascii_digits_are_numbers(text: str, value: int) -> None:
    assert whole_number(text) == value


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        " 5",
        "5 ",
        "+5",
        "-5",
        "1_000",
        "\u0663",
        "\u00b2",
        "5.0",
        "0x10",
        "\uff15",
    ],
)
def test_anything_else_is_not(text: str | None) -> None:
    assert whole_number(text) is None


def test_ranges_past_the_end_are_unsatisfiable_however_large() -> None:
    assert parse_range("bytes=2-5", 10) == (2, 4)
    assert parse_range("bytes=2-18446744073709551615", 10) == (2, 8)
    assert parse_range("bytes=-18446744073709551615", 10) == (0, 10)
    for header in ("bytes=10-", "bytes=18446744073709551615-", "bytes=" + "9" * 400 + "-"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, 10)
    for ignored in (
        "bytes=5-2",
        "bytes=+1-",
        "bytes=1_0-",
        "bytes=\u0663-",
        "items=0-1",
        "bytes=0-1,3-4",
        "bytes=" + "1" * 5000 + "-",
    ):
        assert parse_range(ignored, 10) is None, ignored


def test_copy_source_ranges_read_whole_numbers() -> None:
    assert parse_copy_range("bytes=0-9", 10) == (0, 10)
    with pytest.raises(ServiceError) as exc:
        parse_copy_range("bytes=0-18446744073709551615", 10)
    assert exc.value.status == 416
    for bad in ("bytes=\u0663-5", "bytes=+1-5", "bytes=1-"):
        with pytest.raises(RequestInvalid):
            parse_copy_range(bad, 10)
