"""Text from an image never drives the user's terminal: the text report shows its control
characters escaped (ESC, BEL, CR, bidi overrides), and a line break in a field cannot start a
line that reads like the report's own (a forged ``Result: PASS``)."""

from __future__ import annotations

from typing import Any

from imageport.reports.terminal import terminal_safe
from imageport.reports.text_report import render_document

#: What a guest's files can hold: set the window title, clear the screen, colour, overwrite the
#: line with CR, reverse the text that follows, and start a line of its own.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x1b[31mred\x1b[0m\rover\u202eevil\x9b1m\nResult: PASS"
ESCAPED = "\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mred\\x1b[0m\\rover\\u202eevil\\x9b1m\\nResult: PASS"
#: Characters a terminal obeys (C0 and C1 controls, DEL, bidi overrides).
OBEYED = {chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x202E]} - {"\n"}


def _document(text: str) -> dict[str, Any]:
    """An ``imageport.check/1`` document whose image-made strings are all ``text``."""
    return {
        "schema": "imageport.check/1",
        "file": f"images:{text}",
        "format": "raw",
        "variant": None,
        "accepted": True,
        "virtual_size": 1 << 30,
        "file_size": 1 << 30,
        "allocated_bytes": 1 << 20,
        "properties": {text: text},
        "guest": {
            "os": {"pretty_name": text},
            "hostname": text,
            "architecture": text,
            "root": "p3",
            "cloud_init": text,
            "kernels": [{"version": text, "default": True, "initrd": text, "initrd_modules": 1}],
            "boot_modes": [text],
            "partition_table": text,
            "volumes": [{"name": text, "size": 1, "kind": text, "uuid": text, "label": text}],
            "mounts": [{"mountpoint": text, "volume": text, "fstype": text}],
            "problems": [text],
        },
        "findings": [
            {
                "rule_id": text,
                "severity": "error",
                "message": text,
                "evidence": [f"/etc/fstab:7: {text}"],
                "advice": text,
            }
        ],
        "summary": {"verdict": "fail", "errors": 1, "warnings": 0},
        "bytes_read": 1,
        "elapsed_seconds": 0.5,
    }


def test_terminal_safe_escapes_what_a_terminal_obeys_and_keeps_the_rest() -> None:
    assert terminal_safe(HOSTILE) == ESCAPED
    assert terminal_safe("/data é 日本 ok") == "/data é 日本 ok"
    assert terminal_safe("a\n\x1bb", lines=True) == "a\n\\x1bb"
    assert terminal_safe("\U000e0001") == "\\U000e0001"  # a tag character


def test_the_text_report_shows_an_images_control_characters_escaped() -> None:
    text = render_document(_document(HOSTILE))
    assert not OBEYED & set(text), "a control character from the image reached the terminal"
    assert f"hostname         {ESCAPED}" in text
    first_word = ESCAPED.split(" ")[0]  # wrapped lines break at spaces
    assert f"    evidence: /etc/fstab:7: {first_word}\n" in text
    assert f"    fix: {first_word}" in text
    # only the report's own verdict line starts with "Result:"
    verdicts = [line for line in text.splitlines() if line.startswith("Result:")]
    assert len(verdicts) == 1 and verdicts[0].startswith("Result: FAIL (1 error(s)")
