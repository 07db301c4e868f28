"""Where the guest names a disk by the old machine's hardware: ``/dev/disk/by-id/...`` and
``/dev/disk/by-path/...``.

udev makes these links from the disk itself (udev's ``60-persistent-storage.rules``): a
``by-id`` name holds the bus and the disk's model and serial number or WWN
(``ata-VBOX_HARDDISK_VB3f2a…-part1``, ``scsi-36000c29…``, ``wwn-0x5000…``, ``nvme-eui.…``),
a ``by-path`` name the controller's PCI address and the port (``pci-0000:00:10.0-scsi-0:0:0:0``).
Neither exists on a new server: its disks have other serials and sit on other buses. Names
by UUID, label or partition UUID (``by-uuid``, ``by-label``, ``by-partuuid``) come from the
filesystem or the partition table, which the image carries, and are not collected; nor are
the ``by-id`` names made from what the image carries too: device-mapper's (``dm-name-``,
``dm-uuid-``: LVM volumes, LUKS mappings), software RAID's (``md-name-``, ``md-uuid-``) and
LVM physical volumes' (``lvm-pv-uuid-``).

Read from fixed paths only, through the guest's file layer: ``/etc/fstab`` (already parsed
with the layout; lines mounted at boot), ``/etc/crypttab`` (the device field),
``/etc/initramfs-tools/conf.d/resume`` (``RESUME=``), and the kernel command lines
(``root=``, ``resume=``) of the boot loader configurations and of ``GRUB_CMDLINE_LINUX``
and ``GRUB_CMDLINE_LINUX_DEFAULT`` in ``/etc/default/grub``, as
:func:`imageport.guest.boot.modes.read_boot` reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imageport.guest.boot.bootloader import KernelLine
from imageport.guest.boot.modes import read_boot
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.files.configfiles import Quote, quote, read_config

CRYPTTAB = "/etc/crypttab"
RESUME_CONF = "/etc/initramfs-tools/conf.d/resume"
#: Lines of one file looked at.
MAX_LINES = 10_000
#: Uses kept in all (a generated grub.cfg repeats one name in every entry).
MAX_USES = 64
#: Kernel parameters that name a disk.
CMDLINE_KEYS = ("root", "resume")
_HARDWARE_NAME = re.compile(r"^/dev/disk/by-(id|path)/[^/\s]+$")
#: by-id names made from metadata inside the image, not from the hardware.
_IMAGE_IDS = ("dm-name-", "dm-uuid-", "md-name-", "md-uuid-", "lvm-pv-uuid-")
_WORD = re.compile(r"""(?:^|[\s"'])(root|resume)=(/dev/disk/by-(?:id|path)/[^\s"']+)""")


@dataclass(frozen=True, slots=True)
class DiskNameUse:
    """One place that names a disk by the old machine's hardware."""

    where: Quote  #: the file, line and text
    name: str  #: the ``/dev/disk/by-id/...`` or ``/dev/disk/by-path/...`` name
    #: what the name is used for: ``fstab``, ``crypttab``, ``root=``, ``resume=`` or ``RESUME=``
    use: str
    #: ``boot-config`` (a generated boot loader file), ``grub-defaults`` (/etc/default/grub),
    #: or the file's own kind: ``fstab``, ``crypttab``, ``initramfs``
    source: str
    #: how many more boot entries of the same file use the same name (not quoted)
    more: int = 0

    @property
    def kind(self) -> str:
        """``by-id`` or ``by-path``."""
        return "by-id" if self.name.startswith("/dev/disk/by-id/") else "by-path"


@dataclass(frozen=True, slots=True)
class DiskNameFacts:
    uses: tuple[DiskNameUse, ...]
    problems: tuple[str, ...]


def is_hardware_name(name: str) -> bool:
    """Whether ``name`` is a ``/dev/disk/by-id/...`` or ``/dev/disk/by-path/...`` link made from
    the hardware (not one of :data:`_IMAGE_IDS`)."""
    if not _HARDWARE_NAME.match(name):
        return False
    return not name.removeprefix("/dev/disk/by-id/").startswith(_IMAGE_IDS)


def _from_entries(entries: list[KernelLine]) -> list[DiskNameUse]:
    """One use per (file, parameter, name), the first entry quoted, the others counted."""
    seen: dict[tuple[str, str, str], int] = {}
    uses: list[DiskNameUse] = []
    for entry in entries:
        for key in CMDLINE_KEYS:
            for value in entry.values(key):
                if not is_hardware_name(value):
                    continue
                ident = (entry.source, key, value)
                if ident in seen:
                    old = uses[seen[ident]]
                    uses[seen[ident]] = DiskNameUse(
                        old.where, old.name, old.use, old.source, old.more + 1
                    )
                    continue
                seen[ident] = len(uses)
                uses.append(
                    DiskNameUse(
                        quote(entry.source, entry.line_no, entry.line),
                        value,
                        f"{key}=",
                        "boot-config",
                    )
                )
    return uses


def read_disk_names(guest: GuestFacts) -> DiskNameFacts:
    """Every hardware-bound disk name the guest uses at boot (a :meth:`derive` reader)."""
    if guest.layout.root is None:
        return DiskNameFacts((), ())
    files = guest.files
    problems: list[str] = []
    uses: list[DiskNameUse] = []
    for entry in guest.layout.fstab:
        if entry.auto and is_hardware_name(entry.spec):
            uses.append(
                DiskNameUse(
                    quote("/etc/fstab", entry.line_no, entry.line), entry.spec, "fstab", "fstab"
                )
            )
    text = read_config(files, CRYPTTAB, problems) or ""
    for no, line in enumerate(text.splitlines()[:MAX_LINES], start=1):
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and is_hardware_name(fields[1]):
            uses.append(DiskNameUse(quote(CRYPTTAB, no, line), fields[1], "crypttab", "crypttab"))
    text = read_config(files, RESUME_CONF, problems) or ""
    for no, line in enumerate(text.splitlines()[:MAX_LINES], start=1):
        key, sep, value = line.split("#", 1)[0].strip().partition("=")
        value = value.strip().strip("\"'")
        if sep and key.strip() == "RESUME" and is_hardware_name(value):
            uses.append(DiskNameUse(quote(RESUME_CONF, no, line), value, "RESUME=", "initramfs"))
    boot = guest.derive(read_boot)
    uses.extend(_from_entries([e for config in boot.configs for e in config.entries]))
    for setting in boot.grub_defaults:
        for m in _WORD.finditer(setting.value):
            uses.append(
                DiskNameUse(
                    quote(setting.source, setting.line_no, setting.line),
                    m[2],
                    f"{m[1]}=",
                    "grub-defaults",
                )
            )
    if len(uses) > MAX_USES:
        problems.append(f"{len(uses)} hardware-bound disk names found; the first {MAX_USES} kept")
    return DiskNameFacts(tuple(uses[:MAX_USES]), tuple(problems))
