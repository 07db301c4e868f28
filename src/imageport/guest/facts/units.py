"""Which services the guest starts at boot: systemd enablement links and SysV rc links.

``systemctl enable`` records a unit as a symlink in a ``<target>.wants/`` (or ``.requires/``)
directory under ``/etc/systemd/system``; units a package enables unconditionally have the same
links under ``/usr/lib/systemd/system`` (``/lib/systemd/system`` on older systems). A unit
linked to ``/dev/null`` in ``/etc/systemd/system`` is masked and never starts. SysV init
starts the scripts linked as ``S<NN><name>`` in ``/etc/rc<N>.d`` (``/etc/rc.d/rc<N>.d`` on
Red Hat systems, reached through the ``/etc/rc<N>.d`` symlinks). Learned from systemd.unit(5),
systemctl(1) and systemd-sysv-generator(8).

Names are unit names: ``ssh.service``, ``cloud-init.target``. A SysV script ``S20ssh`` counts
as ``ssh.service``, the name systemd-sysv-generator gives it, so callers ask one way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.files.configfiles import list_dir
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import FileType

#: Directories whose ``*.wants`` / ``*.requires`` subdirectories enable units.
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
#: SysV runlevel directories whose ``S*`` links start services at boot.
SYSV_DIRS = ("/etc/rcS.d", "/etc/rc2.d", "/etc/rc3.d", "/etc/rc4.d", "/etc/rc5.d")
#: ``.wants`` directories read per unit directory.
MAX_WANTS_DIRS = 200
_SYSV_START = re.compile(r"^S\d{2}(?P<name>[A-Za-z0-9@._+-]{1,200})$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9@:._\\-]{1,255}\.(service|socket|target|timer|path|mount)$")


@dataclass(frozen=True, slots=True)
class UnitFacts:
    """The units started at boot, where each was found, and the masked ones."""

    enabled: frozenset[str]
    masked: frozenset[str]
    #: unit -> the first link that enables it (for evidence)
    links: dict[str, str]
    problems: tuple[str, ...]

    def is_enabled(self, unit: str) -> bool:
        return unit in self.enabled and unit not in self.masked


def _is_masked(files: GuestFiles, path: str) -> bool:
    try:
        fs, ino, _ = files.locate(path, follow=False)
        if fs.stat_ino(ino).type is not FileType.SYMLINK:
            return False
        return fs.readlink_ino(ino) == "/dev/null"
    except ImageportError:
        return False


def read_units(guest: GuestFacts) -> UnitFacts:
    """Read the enablement links. Never raises; unreadable directories become problems."""
    files = guest.files
    problems: list[str] = []
    links: dict[str, str] = {}
    masked: set[str] = set()
    for base in UNIT_DIRS:
        names = list_dir(files, base, problems)
        wants = [n for n, _ in names if n.endswith((".wants", ".requires"))]
        for sub in wants[:MAX_WANTS_DIRS]:
            for unit, _ in list_dir(files, f"{base}/{sub}", problems):
                if _UNIT_NAME.match(unit):
                    links.setdefault(unit, f"{base}/{sub}/{unit}")
        if base == "/etc/systemd/system":
            for unit, kind in names:
                if (
                    kind in (FileType.SYMLINK, None)
                    and _UNIT_NAME.match(unit)
                    and _is_masked(files, f"{base}/{unit}")
                ):
                    masked.add(unit)
    for rc in SYSV_DIRS:
        for name, _ in list_dir(files, rc, problems):
            m = _SYSV_START.match(name)
            if m:
                links.setdefault(m["name"] + ".service", f"{rc}/{name}")
    enabled = frozenset(u for u in links if u not in masked)
    return UnitFacts(enabled, frozenset(masked), links, tuple(problems))


def enabled_units(guest: GuestFacts) -> frozenset[str]:
    """The unit names the guest starts at boot (masked units excluded)."""
    return guest.derive(read_units).enabled
