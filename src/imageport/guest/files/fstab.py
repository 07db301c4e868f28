"""Parse ``/etc/fstab`` and say which volume each line's device names.

Device specs understood: ``UUID=``, ``LABEL=``, ``PARTUUID=``, ``PARTLABEL=`` (quotes allowed),
``/dev/disk/by-uuid|by-label|by-partuuid|by-partlabel/...``, ``/dev/mapper/VG-LV`` (with
``--`` for a dash inside a name), ``/dev/VG/LV``, and plain device names of the first disk
(``/dev/sda2``, ``/dev/vda2``, ``/dev/xvda2``, ``/dev/hda2``, ``/dev/nvme0n1p2``,
``/dev/mmcblk0p2``).
A plain name of another disk (``/dev/sdb1``) matches nothing in the image, which is exactly what
IMG-FSTAB-DATA-DISK looks for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from imageport.guest.volumes.discover import Volume

#: Lines of fstab considered.
MAX_FSTAB_LINES = 4096

_FIRST_DISK_PARTITION = re.compile(
    r"^/dev/(?:(?:[shv]|xv)da(?P<n1>\d+)|nvme0n1p(?P<n2>\d+)|mmcblk0p(?P<n3>\d+))$"
)
_FIRST_DISK_WHOLE = re.compile(r"^/dev/(?:(?:[shv]|xv)da|nvme0n1|mmcblk0)$")
_BY_DIR = {
    "by-uuid": "UUID",
    "by-label": "LABEL",
    "by-partuuid": "PARTUUID",
    "by-partlabel": "PARTLABEL",
}
_PSEUDO_TYPES = frozenset(
    {
        "proc",
        "sysfs",
        "tmpfs",
        "devpts",
        "devtmpfs",
        "swap",
        "none",
        "cgroup",
        "cgroup2",
        "securityfs",
        "debugfs",
        "nfs",
        "nfs4",
        "cifs",
        "smbfs",
        "fuse",
        "9p",
        "virtiofs",
        "efivarfs",
        "hugetlbfs",
        "mqueue",
    }
)


@dataclass(frozen=True, slots=True)
class FstabEntry:
    """One line of fstab."""

    line_no: int
    line: str  #: the line as written (for evidence)
    spec: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]
    passno: int

    @property
    def auto(self) -> bool:
        """Whether the entry is mounted at boot (no ``noauto``)."""
        return "noauto" not in self.options

    @property
    def nofail(self) -> bool:
        return "nofail" in self.options

    @property
    def is_block_device(self) -> bool:
        """Whether it names a block device (not proc, tmpfs, a network share, a bind mount)."""
        if self.fstype in _PSEUDO_TYPES or "bind" in self.options:
            return False
        return self.spec.startswith(("/dev/", "UUID=", "LABEL=", "PARTUUID=", "PARTLABEL="))


def _unescape(field: str) -> str:
    """fstab's octal escapes (``\\040`` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_fstab(text: str) -> tuple[FstabEntry, ...]:
    """The entries of an fstab file; malformed lines are skipped."""
    entries = []
    for no, line in enumerate(text.splitlines()[:MAX_FSTAB_LINES], start=1):
        stripped = line.split("#", 1)[0].strip()
        fields = stripped.split()
        if len(fields) < 2:
            continue
        fstype = fields[2] if len(fields) > 2 else "auto"
        options = tuple(fields[3].split(",")) if len(fields) > 3 else ("defaults",)
        passno = int(fields[5]) if len(fields) > 5 and fields[5].isdigit() else 0
        entries.append(
            FstabEntry(
                no,
                line.strip(),
                _unescape(fields[0]),
                _unescape(fields[1]),
                fstype,
                options,
                passno,
            )
        )
    return tuple(entries)


def _tag(spec: str) -> tuple[str, str] | None:
    """``("UUID", value)`` for tag specs and /dev/disk/by-* paths."""
    if "=" in spec and not spec.startswith("/"):
        key, _, value = spec.partition("=")
        return key.upper(), value.strip('"')
    parts = spec.split("/")
    if len(parts) == 5 and parts[:3] == ["", "dev", "disk"] and parts[3] in _BY_DIR:
        return _BY_DIR[parts[3]], _unescape(parts[4].replace("\\x2d", "-"))
    return None


def _mapper_name(vg: str, lv: str) -> str:
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


def find_volume(spec: str, volumes: Sequence[Volume]) -> Volume | None:
    """The volume that ``spec`` (an fstab device field) names, or None."""
    tag = _tag(spec)
    if tag is not None:
        key, value = tag
        for v in volumes:
            sig, part = v.signature, v.partition
            if key == "UUID" and sig and sig.uuid and sig.uuid.lower() == value.lower():
                return v
            if key == "LABEL" and sig and sig.label == value:
                return v
            if (
                key == "PARTUUID"
                and part
                and part.partuuid
                and part.partuuid.lower() == value.lower()
            ):
                return v
            if key == "PARTLABEL" and part and part.name == value:
                return v
        return None
    m = _FIRST_DISK_PARTITION.match(spec)
    if m:
        number = int(m.group("n1") or m.group("n2") or m.group("n3"))
        return next((v for v in volumes if v.partition and v.partition.number == number), None)
    if _FIRST_DISK_WHOLE.match(spec):
        return next((v for v in volumes if v.name == "disk"), None)
    for v in volumes:
        if v.volume_group and v.logical_volume:
            vg, lv = v.volume_group, v.logical_volume
            if spec in (f"/dev/mapper/{_mapper_name(vg, lv)}", f"/dev/{vg}/{lv}"):
                return v
    return None
