"""Console bytes as clean text lines: terminal escape sequences, carriage returns and other
control characters removed, each line cut to :data:`MAX_LINE` characters.

Firmware (OVMF) and boot loaders (GRUB) draw their screens on the serial console with ANSI
escape sequences (cursor moves, colours, clear screen); the kernel and systemd write plain lines
ending in ``\\r\\n``. A cursor move to column 1 starts a new line here, so that OVMF's countdowns
and GRUB's menu become separate lines instead of one long one; so does a kernel timestamp
(``[  101.2] ``) that follows other text on a line, as when a message is written after a prompt.
"""

from __future__ import annotations

import re

#: Characters kept of one console line (longer lines are cut; the evidence quotes them).
MAX_LINE = 300

# CSI sequences (ESC [ ... final byte), with a cursor position "ESC [ row ; col H" handled first
_CURSOR_HOME = re.compile(r"\x1b\[\d*(?:;\d*)?[Hf]")
_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_OTHER_ESCAPE = re.compile(r"\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# a kernel message written after a prompt on the same line ("host login: [  101.2] ...")
_KERNEL_STAMP = re.compile(r"(?<=\S)(?= ?\[ *\d+\.\d+\] )")


def clean_lines(raw: bytes | str) -> list[str]:
    """The non-blank lines of console output ``raw``, escape sequences and controls removed,
    trailing spaces stripped, each cut to :data:`MAX_LINE` characters."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = _CURSOR_HOME.sub("\n", text)
    text = _CSI.sub("", text)
    text = _OTHER_ESCAPE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _KERNEL_STAMP.sub("\n", text)
    lines = (line.rstrip()[:MAX_LINE] for line in text.split("\n"))
    return [line for line in lines if line.strip()]
