"""IMG-FSTAB-DATA-DISK and IMG-FSTAB-UUID: fstab mounts only this disk's filesystems, named by
UUID, and the kernel is told its root by UUID.

Data-disk lines are the ones the rule reports (an automatic mount of a device that is not in
the image); each is commented out with the original kept after a marker,
``# imageport IMG-FSTAB-DATA-DISK: <the line>``, so that it can be put back by hand. Lines
that mount ``/``, ``/boot`` or ``/boot/efi`` from elsewhere are the system's own filesystems
on another disk (IMG-BOOT-SAME-DISK): commenting them out would not make the image boot, so
they are only noted.

Device names are the ones IMG-FSTAB-UUID reports (``/dev/sda1``, ``/dev/xvda2``,
``/dev/nvme0n1p3`` ...; LVM names, LABEL= and /dev/disk/by-* are accepted and left alone).
Each is replaced by ``UUID=`` of the volume the checker resolved it to, as blkid prints it;
only the device field changes, the rest of the line keeps its spacing. ``root=`` is changed
the same way in every kernel command line (:mod:`.cmdline`) when it names the root volume.
"""

from __future__ import annotations

import re

from imageport.configure.edits import Edits
from imageport.configure.fixes.cmdline import (
    argument_values,
    edit_command_lines,
    replace_argument,
    unreachable_configs,
)
from imageport.guest.boot.modes import read_boot
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.files.fstab import FstabEntry, find_volume, parse_fstab
from imageport.guest.files.mounts import MAX_FSTAB_BYTES
from imageport.guest.volumes.discover import Volume
from imageport.rules.layout import FstabDataDiskRule, StableNamesRule, is_unstable_device

FSTAB = "/etc/fstab"
DATA_DISK = FstabDataDiskRule.id
STABLE_NAMES = StableNamesRule.id
#: Mount points of the system itself: not data disks, whatever disk fstab names for them.
SYSTEM_MOUNTS = ("/", "/boot", "/boot/efi")
#: How a commented-out line begins.
MARKER = f"# imageport {DATA_DISK}: "
_FIRST_FIELD = re.compile(r"^(?P<indent>\s*)(?P<spec>\S+)")


def comment_out(text: str, line_nos: set[int]) -> str:
    """``text`` with the lines numbered ``line_nos`` (1-based) turned into comments that keep
    the original line after :data:`MARKER`; every other byte is kept."""
    lines = text.splitlines(keepends=True)
    for no in line_nos:
        if 0 < no <= len(lines):
            line = lines[no - 1]
            body = line.rstrip("\r\n")
            lines[no - 1] = MARKER + body.strip() + line[len(body) :]
    return "".join(lines)


def replace_specs(text: str, specs: dict[int, tuple[str, str]]) -> str:
    """``text`` with the device field of line ``n`` changed from ``old`` to ``new`` for each
    ``n: (old, new)`` of ``specs``; a line whose first field is not ``old`` is left alone."""
    lines = text.splitlines(keepends=True)
    for no, (old, new) in specs.items():
        if not 0 < no <= len(lines):
            continue
        m = _FIRST_FIELD.match(lines[no - 1])
        if m is not None and m["spec"] == old:
            lines[no - 1] = m["indent"] + new + lines[no - 1][m.end() :]
    return "".join(lines)


def _read_fstab(edits: Edits) -> str | None:
    return edits.read_text(FSTAB, MAX_FSTAB_BYTES)


def plan_data_disk(guest: GuestFacts, edits: Edits) -> None:
    """Comment out the fstab lines that mount another disk's filesystem at boot."""
    layout = guest.layout
    if layout.fstab_error is not None:
        edits.note(DATA_DISK, f"{FSTAB} cannot be read ({layout.fstab_error}); not changed")
        return
    text = _read_fstab(edits)
    if text is None:
        if any(item.entry.auto for item in layout.unresolved):
            edits.note(DATA_DISK, f"{FSTAB} is a symbolic link: not edited; edit its target")
        return
    current = {e.line_no: e for e in parse_fstab(text)}
    chosen: dict[int, FstabEntry] = {}
    for item in layout.unresolved:
        entry = item.entry
        if not entry.auto:
            continue
        if entry.mountpoint in SYSTEM_MOUNTS:
            edits.note(
                DATA_DISK,
                f"{FSTAB} line {entry.line_no} mounts {entry.mountpoint} from {entry.spec}, "
                f"which is not on this disk: that is the system's own filesystem, not a data "
                "disk, so the line is left as it is (see IMG-BOOT-SAME-DISK)",
            )
            continue
        if current.get(entry.line_no) != entry:
            edits.note(DATA_DISK, f"{FSTAB} line {entry.line_no} changed before this fix")
            continue
        if not item.reason.startswith("the device is not in this image"):
            edits.note(
                DATA_DISK,
                f"{FSTAB} line {entry.line_no} mounts {entry.mountpoint} from {entry.spec}, "
                f"which is in the image but {item.reason}; the line is left as it is",
            )
            continue
        chosen[entry.line_no] = entry
    if not chosen:
        return
    mounts = ", ".join(f"{e.mountpoint} ({e.spec}, line {n})" for n, e in sorted(chosen.items()))
    edits.write(
        FSTAB,
        comment_out(text, set(chosen)),
        rule=DATA_DISK,
        why=f"commented out the automatic mount of {mounts}: the device is not on this disk; "
        f"each original line is kept after '{MARKER.strip()}'",
    )


def _uuid_of(volume: Volume | None) -> str | None:
    sig = volume.signature if volume is not None else None
    return sig.uuid if sig is not None and sig.uuid else None


def plan_stable_names(guest: GuestFacts, edits: Edits) -> None:
    """Name by UUID what fstab and the kernel command line name by device."""
    volumes = guest.layout.storage.volumes
    text = _read_fstab(edits)
    if text is not None:
        specs: dict[int, tuple[str, str]] = {}
        for entry in parse_fstab(text):
            if not (entry.auto and is_unstable_device(entry.spec)):
                continue
            uuid = _uuid_of(find_volume(entry.spec, volumes))
            if uuid is None:
                edits.note(
                    STABLE_NAMES,
                    f"{FSTAB} line {entry.line_no}: {entry.spec} names no filesystem with a "
                    "UUID in the image; left as it is",
                )
                continue
            specs[entry.line_no] = (entry.spec, f"UUID={uuid}")
        if specs:
            changed = ", ".join(f"{old} -> {new}" for old, new in specs.values())
            edits.write(
                FSTAB,
                replace_specs(text, specs),
                rule=STABLE_NAMES,
                why=f"named filesystems by UUID instead of device name: {changed}",
            )
    _plan_root_argument(guest, edits)


def _plan_root_argument(guest: GuestFacts, edits: Edits) -> None:
    root = guest.layout.root
    uuid = _uuid_of(root.volume if root is not None else None)
    if root is None or uuid is None:
        return
    volumes = guest.layout.storage.volumes
    renamed: set[str] = set()
    refused: set[str] = set()

    def by_uuid(args: str) -> str:
        for value in argument_values(args, "root"):
            if not is_unstable_device(value):
                continue
            volume = find_volume(value, volumes)
            if volume is None or volume.name != root.volume.name:
                refused.add(value)
                continue
            renamed.add(value)
            args = replace_argument(args, "root", value, f"UUID={uuid}")
        return args

    edit_command_lines(
        guest,
        edits,
        by_uuid,
        rule=STABLE_NAMES,
        what=f"named the root filesystem by UUID on the kernel command line (root=UUID={uuid})",
    )
    default = guest.derive(read_boot).default
    unreachable = unreachable_configs(guest)
    if unreachable and default is not None and is_unstable_device(default.root or ""):
        edits.note(
            STABLE_NAMES,
            "root= not changed (write root=UUID=... there by hand): " + ", ".join(unreachable),
        )
    for value in sorted(refused):
        edits.note(
            STABLE_NAMES,
            f"root={value} does not name the root filesystem ({root.volume.name}); left as "
            "it is (see IMG-BOOT-SAME-DISK)",
        )
    if renamed:
        default_grub = edits.read_text("/etc/default/grub") or ""
        if re.search(r"^\s*GRUB_DISABLE_LINUX_UUID=[\"']?true", default_grub, re.MULTILINE):
            edits.note(
                STABLE_NAMES,
                "/etc/default/grub sets GRUB_DISABLE_LINUX_UUID=true: the next update-grub or "
                "grub-mkconfig writes root= by device name again; remove that setting",
            )
