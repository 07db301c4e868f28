"""Rules about how the system is stored: LVM root, encrypted volumes, OEM-licensed systems."""

from __future__ import annotations

from collections.abc import Iterator

from imageport.errors import ImageportError
from imageport.findings import Finding, Severity
from imageport.rules.base import ImageFacts, Rule

#: Bytes of /etc/crypttab read.
_MAX_CRYPTTAB = 64 << 10
#: Files whose presence marks a system preinstalled under an OEM licence.
_OEM_MARKERS = ("/etc/oem-release", "/etc/oem/oem-release")


class LvmInjectionRule(Rule):
    """What it checks: whether the root filesystem is on an LVM logical volume.

    Why it matters: the platform cannot inject files (such as a password or SSH key file) into
    a system disk whose root is an LVM volume when it creates a server; only cloud-init (which
    runs inside the guest) can configure such a server.

    How to fix: nothing needs fixing if cloud-init is installed and configured; otherwise put
    the root filesystem on a plain partition, or rely on cloud-init for passwords and keys.

    Example: a Debian image with ``/`` on ``vg0/root`` is reported as a warning.
    """

    id = "IMG-LVM-INJECTION"
    severity = Severity.WARNING
    title = "With an LVM root, file injection at server creation is not supported"
    advice = "Install and configure cloud-init so passwords and keys are set from inside."
    title_zh = "根文件系统在 LVM 上时，不支持创建云服务器时注入文件"
    advice_zh = "安装并配置 cloud-init，由系统内部设置密码和密钥。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.guest
        if guest is None or guest.layout.root is None:
            return
        volume = guest.layout.root.volume
        if volume.volume_group is not None:
            yield self.found(
                f"The root filesystem is on the LVM logical volume {volume.name}; the platform "
                "cannot inject files into it when it creates a server.",
                f"root: {volume.name} ({volume.kind})",
            )


class DiskEncryptionRule(Rule):
    """What it checks: no volume of the disk is encrypted (LUKS, dm-crypt), and
    ``/etc/crypttab`` opens no encrypted device at boot.

    Why it matters: an encrypted volume asks for a passphrase at boot that nobody can type on
    a cloud server, or holds data the platform cannot check; servers may not become usable.

    How to fix: decrypt the volume before exporting the image (copy its contents to a plain
    filesystem), remove its line from ``/etc/crypttab`` and ``/etc/fstab``, and rebuild the
    initrd.

    Example: a LUKS2 partition, or ``cryptdata UUID=... none luks`` in ``/etc/crypttab``.
    """

    id = "IMG-DISK-ENCRYPTION"
    severity = Severity.WARNING
    title = "Encrypted disks or partitions may make servers unusable"
    advice = "Decrypt the volume before exporting, and remove it from /etc/crypttab and fstab."
    title_zh = "加密的磁盘或分区可能导致云服务器无法使用"
    advice_zh = "导出前先解密该卷，并将其从 /etc/crypttab 和 fstab 中删除。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.guest
        if guest is None:
            return
        for volume in guest.layout.storage.volumes:
            if volume.kind == "luks":
                version = volume.signature.version if volume.signature else None
                ident = volume.signature.uuid if volume.signature else None
                yield self.found(
                    f"{volume.name} is an encrypted {version or 'LUKS'} volume.",
                    f"{volume.name}: {volume.kind} UUID={ident or 'unknown'}",
                )
        if guest.layout.root is None:
            return
        try:
            text = guest.files.read_text("/etc/crypttab", _MAX_CRYPTTAB)
        except ImageportError:
            text = None
        for no, line in enumerate((text or "").splitlines(), start=1):
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and "noauto" not in (fields[3] if len(fields) > 3 else ""):
                yield self.found(
                    f"/etc/crypttab line {no} opens the encrypted device {fields[1]} as "
                    f"{fields[0]} at boot.",
                    f"/etc/crypttab:{no}: {line.strip()}",
                )


class OemRule(Rule):
    """What it checks: the system is not an OEM-licensed installation (an OEM release file, or
    an ``os-release`` variant that says OEM).

    Why it matters: OEM licences are tied to the machine they were sold with and do not allow
    running the system on the platform.

    How to fix: import an image of the distribution under a licence that allows cloud use (for
    example a retail or bring-your-own subscription), not the system preinstalled on a machine.

    Example: ``/etc/oem-release`` present, or ``VARIANT="OEM"`` in ``/etc/os-release``.
    """

    id = "IMG-OEM"
    severity = Severity.ERROR
    title = "OEM-licensed operating systems are not supported"
    advice = "Use an image of the OS under a licence that allows cloud use."
    title_zh = "不支持 OEM 授权的操作系统"
    advice_zh = "使用许可允许在云上使用的操作系统镜像。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.guest
        if guest is None or guest.layout.root is None:
            return
        files = guest.files
        for path in _OEM_MARKERS:
            try:
                found = files.exists(path)
            except ImageportError:
                found = False
            if found:
                yield self.found(f"{path} marks an OEM-licensed installation.", f"file: {path}")
        variant = guest.os.variant if guest.os else ""
        if "oem" in variant.lower().split():
            yield self.found(
                f"{guest.os.source if guest.os else 'os-release'} names the OEM variant "
                f"{variant!r}.",
                f"VARIANT={variant}",
            )
