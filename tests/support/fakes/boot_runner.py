"""A boot runner that starts no machine (the ``BootRunner`` port).

What a boot *shows* comes from a script: :attr:`FakeBootRunner.consoles` gives, per firmware,
the serial console and the firmware's debug log a machine would have produced (by default
:data:`LOGIN`: GRUB, the kernel, the root filesystem and a login prompt). A boot asks the
caller's ``settled`` about what it has "seen" every :data:`TICK` seconds of real time, as the
QEMU runner asks once a second: it ends ``settled`` as soon as the caller says so, else
``timeout`` after at most :attr:`FakeBootRunner.max_seconds`, so a caller's stop hook (progress,
cancellation) runs as it would. A screenshot asked for is written as a tiny PNG. Every boot is
recorded in :attr:`FakeBootRunner.calls`; :attr:`missing` names firmwares that are not
installed (``ready`` raises :class:`~imageport.service.ports.BootError`, as without OVMF), and
:attr:`fail` makes the next boot raise it (QEMU did not start). Like the real runner, it refuses
a format QEMU does not read and a file that is not there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imageport.service.ports import BootError, BootRun

#: A Debian guest that boots to its login prompt (serial console, firmware log).
LOGIN = (
    b"GNU GRUB  version 2.06\r\n  Booting `Debian GNU/Linux 12'\r\n"
    b"[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\r\n"
    b"[    2.100000] EXT4-fs (vda3): mounted filesystem with ordered data mode.\r\n"
    b"Welcome to Debian GNU/Linux 12 (bookworm)!\r\n\r\nimageport-guest login: ",
    b"SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from Hard Disk...\n"
    b"Booting from 0000:7c00\n",
)
#: A disk with no boot code under SeaBIOS.
NO_BOOTABLE_DEVICE = (
    b"",
    b"SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from Hard Disk...\n"
    b"Boot failed: not a bootable disk\n\nNo bootable device.\n",
)
#: A kernel whose initrd lacks the disk's driver.
KERNEL_PANIC = (
    b"[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\r\n"
    b"[    1.500000] /dev/root: Can't open blockdev\r\n"
    b'[    1.500100] VFS: Cannot open root device "UUID=1234" or unknown-block(0,0): error -6\r\n'
    b'[    1.500200] Please append a correct "root=" boot option; here are the available '
    b"partitions:\r\n"
    b"[    1.500300] Kernel panic - not syncing: VFS: Unable to mount root fs on "
    b"unknown-block(0,0)\r\n",
    b"Booting from 0000:7c00\n",
)
#: A boot still going when the time runs out (nothing settles).
STILL_BOOTING = (b"GNU GRUB  version 2.06\r\n", b"Booting from 0000:7c00\n")
#: The bytes written as a screenshot.
PNG = b"\x89PNG\r\n\x1a\n" + b"fake screen"
#: Seconds between two questions to ``settled``.
TICK = 0.02
#: The formats the QEMU runner reads (its drivers).
READS = ("qcow2", "raw", "vmdk", "vhd", "vhdx", "vdi", "qed", "qcow")


@dataclass(frozen=True, slots=True)
class BootCall:
    image: Path
    image_format: str
    firmware: str
    timeout: float
    screenshot: Path | None


class FakeBootRunner:
    def __init__(
        self,
        consoles: dict[str, tuple[bytes, bytes]] | None = None,
        *,
        missing: frozenset[str] = frozenset(),
        max_seconds: float = 0.5,
    ) -> None:
        #: firmware -> (serial console, firmware log) its boot shows (default :data:`LOGIN`)
        self.consoles = dict(consoles or {})
        self.missing = set(missing)
        self.max_seconds = max_seconds
        self.calls: list[BootCall] = []
        #: the message of a BootError the next boot raises, if any
        self.fail: str | None = None
        #: called once a boot has started (a test cancels or looks at the job then)
        self.on_boot: Callable[[BootCall], None] | None = None
        #: while set, a boot does not end by itself (tests of waiting for a place)
        self.hold = threading.Event()
        self.running = 0

    def ready(self, firmware: str) -> None:
        if firmware in self.missing:
            raise BootError(
                f"{firmware.upper()} firmware is not installed here: apt-get install ovmf"
            )

    def boot(
        self,
        image: Path,
        image_format: str,
        firmware: str,
        *,
        timeout: float,
        settled: Callable[[bytes, bytes], bool],
        screenshot: Path | None,
    ) -> BootRun:
        self.ready(firmware)
        if image_format not in READS:
            raise BootError(f"QEMU does not read the {image_format} format")
        if not image.is_file():
            raise BootError(f"QEMU did not start: cannot open {image}")
        call = BootCall(image, image_format, firmware, timeout, screenshot)
        self.calls.append(call)
        if self.fail is not None:
            message, self.fail = self.fail, None
            raise BootError(message)
        serial, firmware_log = self.consoles.get(firmware, LOGIN)
        self.running += 1
        try:
            if self.on_boot is not None:
                self.on_boot(call)
            started = time.monotonic()
            ended = "timeout"
            while True:
                if settled(serial, firmware_log):
                    ended = "settled"
                    break
                if time.monotonic() - started >= self.max_seconds and not self.hold.is_set():
                    break
                time.sleep(TICK)
        finally:
            self.running -= 1
        shot = None
        if screenshot is not None:
            screenshot.write_bytes(PNG)
            shot = screenshot
        seconds = 1.5 if ended == "settled" else timeout
        return BootRun(firmware, "tcg", serial, firmware_log, seconds, ended, shot)
