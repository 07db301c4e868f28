"""Where the firmware for a boot comes from.

BIOS is SeaBIOS, built into ``qemu-system-x86`` (nothing to find). UEFI is OVMF from Debian's
``ovmf`` package: a read-only code flash and a variable store that each boot gets a fresh copy
of (the guest may write its boot entries there; the package's template stays untouched). The
4 MiB builds come first: they are what Debian 12 installs; the 2 MiB pair is the older layout
of the same package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imageport.service.ports import BootError

#: (code, variable store template) pairs, tried in order.
OVMF_PAIRS: tuple[tuple[str, str], ...] = (
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
)
FIRMWARES = ("bios", "uefi")


@dataclass(frozen=True, slots=True)
class Ovmf:
    code: Path
    vars_template: Path


def find_ovmf(pairs: tuple[tuple[str, str], ...] = OVMF_PAIRS) -> Ovmf:
    """The first OVMF pair installed; :class:`BootError` saying what to install otherwise."""
    for code, template in pairs:
        if Path(code).is_file() and Path(template).is_file():
            return Ovmf(Path(code), Path(template))
    raise BootError(
        "UEFI boot needs OVMF, which is not installed (looked for "
        f"{', '.join(code for code, _ in pairs)}): apt-get install ovmf"
    )
