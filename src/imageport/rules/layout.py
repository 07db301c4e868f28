"""Rules about the guest's disk layout: a system on the disk, fstab mounting only that disk."""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.rules.base import ImageFacts, Rule


class SystemDiskRule(Rule):
    """What it checks: the disk holds an installed Linux system: a partition table (or a bare
    filesystem) with a root filesystem that has ``/etc`` and an OS identity.

    Why it matters: the platform boots servers from the image's system disk; a data disk, an
    empty disk or an unreadable one gives servers that never start.

    How to fix: export the machine's *system* disk (the one with ``/``), not a data disk; if
    the root filesystem is encrypted or on an unsupported volume type, export it decrypted or
    on a plain partition or LVM linear volume.

    Example: a disk with one empty partition reports "no installed Linux root filesystem".
    """

    id = "IMG-SYSTEM-DISK"
    severity = Severity.ERROR
    title = "The image must contain an installed Linux system disk"
    advice = "Export the machine's system disk (the one holding /) as the image."

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.guest
        if guest is None or guest.layout.root is not None:
            return
        storage = guest.layout.storage
        found = ", ".join(f"{v.name}: {v.kind}" for v in storage.volumes) or "nothing"
        yield self.found(
            "No installed Linux root filesystem was found on the disk.",
            f"partition table: {storage.table.scheme}",
            f"volumes: {found}",
            *(f"problem: {p}" for p in guest.layout.problems),
        )


class FstabDataDiskRule(Rule):
    """What it checks: every filesystem that ``/etc/fstab`` mounts automatically at boot is on
    this disk; a line that names another disk (``/dev/vdb1``, or a UUID not in the image) must
    be ``noauto``.

    Why it matters: servers created from the image get only the system disk. A boot-time mount
    of a missing data disk stops the boot in emergency mode (or, with ``nofail``, waits and
    mounts nothing), and the server cannot be logged in to.

    How to fix: remove the line from ``/etc/fstab`` or add ``noauto`` (and ``nofail``) to its
    options before exporting the image; attach and mount data disks after the server starts.

    Example: ``/dev/vdb1 /data ext4 defaults 0 2`` is reported, quoting the line.
    """

    id = "IMG-FSTAB-DATA-DISK"
    severity = Severity.ERROR
    title = "fstab must not auto-mount disks other than the system disk"
    advice = "Remove the line from /etc/fstab or add `noauto,nofail` to its options."

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        if facts.guest is None:
            return
        for item in facts.guest.layout.unresolved:
            entry = item.entry
            if not entry.auto:
                continue
            yield self.found(
                f"/etc/fstab line {entry.line_no} mounts {entry.mountpoint} at boot from "
                f"{entry.spec}, which is not on this disk ({item.reason}).",
                f"/etc/fstab:{entry.line_no}: {entry.line}",
                severity=Severity.WARNING if entry.nofail else None,
            )
