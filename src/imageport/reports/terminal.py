"""Text from an image or a server made safe to print on a terminal.

A check report carries strings read from the guest (a line of its fstab, its hostname, a file
name), and the server's answers carry them on (a job's ``fail_reason``, an error message). A
terminal obeys the control characters in what it prints: ESC starts sequences that clear the
screen, rewrite the window title or move the cursor, CR overwrites the line already shown, and
bidirectional overrides reorder what the user reads. So every character that is not printable
is shown as its Python escape (``\\x1b``, ``\\r``, ``\\u202e``) instead of being sent: the
user sees exactly what the image holds, and the image cannot drive the terminal, nor start a
line of its own that reads like ours (a label ending ``\nResult: PASS``). Only text that is
ours line by line, such as a job's multi-line ``fail_reason``, keeps its line breaks
(``lines=True``).
"""

from __future__ import annotations


def terminal_safe(text: str, *, lines: bool = False) -> str:
    """``text`` with every non-printable character written as its escape (with ``lines``:
    every one but the line break ``\\n``)."""
    if text.isprintable():
        return text
    if lines:
        return "\n".join(terminal_safe(line) for line in text.split("\n"))
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


__all__ = ["terminal_safe"]
