"""The header window answers only from the head and tail it holds."""

from __future__ import annotations

import pytest

from imageport.errors import SourceError
from imageport.formats.window import HeaderWindow, OutsideHeader


def test_reads_inside_the_window_and_refuses_the_rest() -> None:
    window = HeaderWindow(1000, b"H" * 100, b"T" * 50)
    assert window.size == 1000
    assert window.read_at(0, 10) == b"H" * 10
    assert window.read_at(990, 100) == b"T" * 10  # short at the end, as a file
    assert window.read_at(1000, 10) == b""
    for offset, length in ((100, 1), (90, 20), (500, 10), (0, 1000)):
        with pytest.raises(OutsideHeader):
            window.read_at(offset, length)
    with pytest.raises(SourceError):
        window.read_at(-1, 1)
    assert window.bytes_read == 20
    with pytest.raises(SourceError):
        HeaderWindow(10, b"x" * 8, b"y" * 8)
