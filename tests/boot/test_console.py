"""Console bytes become the lines a person would read on the screen."""

from __future__ import annotations

from imageport.boot.console import MAX_LINE, clean_lines


def test_grub_menu_drawn_with_cursor_moves_becomes_separate_lines() -> None:
    raw = (
        b"\x1b[H\x1b[J\x1b[1;1H\x1b[?25l\x1b[m\x1b[H\x1b[J\x1b[1;1H\x1b[2;24H"
        b"GNU GRUB  version 2.06-13+deb12u2\r\n\x1b[m\x1b[4;2H+----+\x1b[5;2H|"
        b"\x1b[H\x1b[J\x1b[1;1H  Booting `Debian GNU/Linux 12'\r\n"
    )
    lines = clean_lines(raw)
    assert "GNU GRUB  version 2.06-13+deb12u2" in lines
    assert "  Booting `Debian GNU/Linux 12'" in lines
    assert not any("\x1b" in line for line in lines)


def test_systemd_colours_and_carriage_returns_are_removed() -> None:
    raw = b"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mnetwork.target\x1b[0m.\r\r\n"
    assert clean_lines(raw) == ["[  OK  ] Reached target network.target."]


def test_invalid_utf8_and_long_lines_are_bounded() -> None:
    lines = clean_lines(b"\xff\xfe" + b"x" * 5000 + b"\n\x00\x07bell\n")
    assert len(lines[0]) == MAX_LINE and lines[0].startswith("\ufffd")
    assert lines[1] == "bell"
