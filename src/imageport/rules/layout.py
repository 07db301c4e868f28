"""Rules about the guest's disk layout: a system on the disk, fstab mounting only that disk."""

from __future__ import annotations

import re
from collections.abc import Iterator

from imageport.errors import ImageportError
from imageport.findings import Finding, Severity
from imageport.guest.boot.modes import read_boot
from imageport.rules.base import ImageFacts, Rule


class SystemDiskRule(Rule):
    """What it checks: the disk holds an installed Linux system: a partition table (or a bare
    filesystem) with a root filesystem that has ``/etc`` and an OS identity.

    Why it matters: the platform boots servers from the image's system disk; a data disk, an
    empty disk or an unreadable one gives servers that never start.

    How to fix: export the machine's *system* disk (the one with ``/``), not a data disk; if
    the root filesystem is encrypted or on an unsupported volume type, export it decrypted or
    on a plain partition or LVM linear volume.

    Its identity is read from ``/etc/os-release`` (then ``/usr/lib/os-release``,
    ``/etc/lsb-release`` and the older release files); a release file that exists but cannot
    be read (a dangling symbolic link, a loop, a directory) is an error when no other one
    identifies the system, a warning when another one does.

    Example: a disk with one empty partition reports "no installed Linux root filesystem";
    ``/etc/os-release`` linked to a missing file reports "identity cannot be read".
    """

    id = "IMG-SYSTEM-DISK"
    severity = Severity.ERROR
    title = "The image must contain an installed Linux system disk"
    advice = "Export the machine's system disk (the one holding /) as the image."
    title_zh = "镜像必须包含已安装 Linux 的系统盘"
    advice_zh = "将虚拟机的系统盘（包含 / 的磁盘）导出为镜像。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.guest
        if guest is not None and guest.layout.root is not None:
            if guest.os_problems:
                identified = guest.os is not None
                yield self.found(
                    (
                        "A release file of the system cannot be read; the system was identified "
                        f"from {guest.os.source}."
                        if guest.os is not None
                        else "The installed system's identity cannot be read: its release file "
                        "exists but cannot be read, so nothing tells which system it is."
                    ),
                    *guest.os_problems,
                    severity=Severity.WARNING if identified else Severity.ERROR,
                    advice="Make /etc/os-release a regular file or a symbolic link to an "
                    "existing file inside the guest (usually ../usr/lib/os-release), then "
                    "export the image again.",
                )
            return
        if guest is None:
            return
        storage = guest.layout.storage
        found = ", ".join(f"{v.name}: {v.kind}" for v in storage.volumes) or "nothing"
        yield self.found(
            "No installed Linux root filesystem was found on the disk.",
            f"partition table: {storage.table.scheme}",
            f"volumes: {found}",
            *(f"problem: {p}" for p in guest.layout.problems),
        )


#: Why a data-disk line with ``nofail`` but without ``noauto`` is still an error.
_NOFAIL_IS_NOT_ENOUGH = (
    "nofail is not enough: the line still mounts automatically at boot, so when the user "
    "attaches a different disk, the wrong disk is mounted at that path; only noauto stops "
    "the automatic mount"
)


class FstabDataDiskRule(Rule):
    """What it checks: every filesystem that ``/etc/fstab`` mounts automatically at boot is on
    this disk; a line that names another disk (``/dev/vdb1``, or a UUID not in the image) must
    be ``noauto``. ``nofail`` alone does not make such a line acceptable: it is an error too.

    Why it matters: the platform requires that ``/etc/fstab`` does not mount user data disks
    automatically. Servers created from the image get only the system disk. A boot-time mount
    of a missing data disk stops the boot in emergency mode, and the server cannot be logged
    in to. ``nofail`` only lets the boot go on (after waiting for the disk) when it is
    missing: the line still mounts automatically, so when the user attaches a different disk,
    that wrong disk is mounted at the line's path (a device name such as ``/dev/vdb1`` names
    whichever disk is attached second).

    How to fix: remove the line from ``/etc/fstab`` or add ``noauto`` (and ``nofail``) to its
    options before exporting the image; attach and mount data disks after the server starts.

    An ``/etc/fstab`` that exists but cannot be read (a dangling symbolic link, a loop, a
    directory, over 1 MiB) is reported too: the guest cannot read it either, and nothing here
    can be checked. (No fstab at all is fine: only the root is mounted.)

    Example: ``/dev/vdb1 /data ext4 defaults 0 2`` is reported, quoting the line;
    ``/dev/vdb1 /data ext4 defaults,nofail 0 2`` is reported the same way, with a line saying
    why ``nofail`` is not enough; ``/dev/vdb1 /data ext4 noauto,nofail 0 2`` is not reported.
    """

    id = "IMG-FSTAB-DATA-DISK"
    severity = Severity.ERROR
    title = "fstab must not auto-mount disks other than the system disk"
    advice = "Remove the line from /etc/fstab or add `noauto,nofail` to its options."
    title_zh = "fstab 不能开机自动挂载系统盘以外的磁盘"
    advice_zh = "从 /etc/fstab 删除该行，或在其选项中加上 `noauto,nofail`。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        if facts.guest is None:
            return
        error = facts.guest.layout.fstab_error
        if error is not None and facts.guest.layout.root is not None:
            yield self.found(
                "/etc/fstab exists but cannot be read: the system cannot mount its "
                "filesystems at boot as intended, and what it would mount cannot be checked.",
                f"/etc/fstab: {error}",
                advice="Make /etc/fstab a regular file (a symbolic link must point at an "
                "existing file inside the guest), then export the image again.",
            )
        for item in facts.guest.layout.unresolved:
            entry = item.entry
            if not entry.auto:
                continue
            yield self.found(
                f"/etc/fstab line {entry.line_no} mounts {entry.mountpoint} at boot from "
                f"{entry.spec}, which is not on this disk ({item.reason}).",
                f"/etc/fstab:{entry.line_no}: {entry.line}",
                *((_NOFAIL_IS_NOT_ENOUGH,) if entry.nofail else ()),
                advice=(
                    "Add `noauto` to the line's options (nofail alone still mounts it at "
                    "boot), or remove the line from /etc/fstab."
                    if entry.nofail
                    else None
                ),
            )


#: Device names that change when disks are attached in another order or on another bus.
_UNSTABLE_DEVICE = re.compile(r"^/dev/(?:[shv]d[a-z]+|xvd[a-z]+|nvme\d+n\d+(?:p)?|mmcblk\d+p?)\d*$")


def is_unstable_device(spec: str) -> bool:
    """Whether ``spec`` is a kernel device name this rule reports (``/dev/sda1``, ``/dev/xvda``,
    ``/dev/nvme0n1p2`` ...); UUID=, LABEL=, /dev/disk/by-* and LVM names are stable."""
    return _UNSTABLE_DEVICE.match(spec) is not None


class StableNamesRule(Rule):
    """What it checks: ``/etc/fstab`` and the default kernel command line (``root=``) name
    filesystems by UUID (or LABEL, PARTUUID, LVM names), not by kernel device names such as
    ``/dev/sda1`` or ``/dev/xvda1``.

    Why it matters: device names depend on the disk bus. A disk that was ``/dev/sda`` on VMware
    or ``/dev/xvda`` on Xen is ``/dev/vda`` on a KVM cloud server, so a name-based fstab line or
    ``root=`` makes the boot stop or mount the wrong device.

    How to fix: look up each filesystem's UUID with ``blkid`` and write ``UUID=...`` in
    ``/etc/fstab``; for the kernel command line regenerate the boot loader configuration
    (``update-grub`` on Debian/Ubuntu, ``grub2-mkconfig -o /boot/grub2/grub.cfg`` on RHEL),
    which writes ``root=UUID=...``.

    Example: ``/dev/sda1 / ext4 defaults 0 1`` in ``/etc/fstab``.
    """

    id = "IMG-FSTAB-UUID"
    severity = Severity.WARNING
    title = "fstab and the kernel command line should name filesystems by UUID"
    advice = "Use UUID=... (see `blkid`) instead of /dev/sdX-style device names."
    title_zh = "fstab 和内核命令行应使用 UUID 指定文件系统"
    advice_zh = "使用 UUID=...（见 `blkid`）代替 /dev/sdX 这类设备名。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        for entry in guest.layout.fstab:
            if entry.auto and is_unstable_device(entry.spec):
                yield self.found(
                    f"/etc/fstab line {entry.line_no} mounts {entry.mountpoint} by the device "
                    f"name {entry.spec}, which changes on the platform's virtio disks.",
                    f"/etc/fstab:{entry.line_no}: {entry.line}",
                    advice=f"Replace {entry.spec} with UUID=<uuid> from `blkid {entry.spec}`.",
                )
        try:
            default = guest.derive(read_boot).default
        except ImageportError:
            return
        root = default.root if default is not None else None
        if default is not None and root is not None and is_unstable_device(root):
            yield self.found(
                f"The default kernel command line boots root={root}, a device name that "
                "changes on the platform's virtio disks.",
                f"{default.source}:{default.line_no}: {default.line}",
                advice=_REGENERATE.get(guest.family, _REGENERATE["other"]),
            )


_REGENERATE = {
    "debian": "Run `update-grub` (it writes root=UUID=...) after fixing /etc/fstab.",
    "rhel": "Run `grub2-mkconfig -o /boot/grub2/grub.cfg` (or `grubby --update-kernel=ALL "
    "--args=root=UUID=<uuid>`).",
    "suse": "Run `grub2-mkconfig -o /boot/grub2/grub.cfg` after fixing /etc/fstab.",
    "other": "Regenerate the boot loader configuration so that it says root=UUID=<uuid>.",
}
