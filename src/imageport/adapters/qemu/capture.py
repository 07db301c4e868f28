"""A console captured from QEMU, kept in bounded memory: its first :attr:`ConsoleBuffer.head`
bytes and its last :attr:`ConsoleBuffer.tail` bytes.

A guest can write to its serial port as fast as the host lets it; keeping only a head and a
tail bounds what a boot costs whatever the guest does. The head keeps the early lines that
matter (firmware, boot loader, the kernel's version), the tail how the boot ended."""

from __future__ import annotations

#: Bytes kept of the serial console (head, tail) and of the firmware's debug log.
SERIAL_HEAD = 64 * 1024
SERIAL_TAIL = 192 * 1024
FIRMWARE_HEAD = 16 * 1024
FIRMWARE_TAIL = 48 * 1024


class ConsoleBuffer:
    """The first ``head`` and the last ``tail`` bytes appended, and the total count."""

    def __init__(self, head: int, tail: int) -> None:
        self.head = head
        self.tail = tail
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def append(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        if len(self._tail) > self.tail:
            del self._tail[: len(self._tail) - self.tail]

    @property
    def data(self) -> bytes:
        """What was kept; a line saying how much was left out between head and tail."""
        left_out = self.total - len(self._head) - len(self._tail)
        gap = f"\n[... {left_out} bytes left out ...]\n".encode() if left_out else b""
        return bytes(self._head) + gap + bytes(self._tail)
