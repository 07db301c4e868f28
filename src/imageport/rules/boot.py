"""Rules about how the guest boots: firmware mode, boot files on this disk, serial console."""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.guest.boot.bootloader import KernelLine
from imageport.guest.boot.modes import BootFacts, read_boot
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.files.fstab import find_volume
from imageport.rules.base import ImageFacts, Rule

#: Consoles that reach the platform's serial log: x86 UART, Xen/virtio console, Arm PL011.
SERIAL_CONSOLES = ("ttyS0", "hvc0", "ttyAMA0")
#: root= values that name no block device of the image on purpose (network, live, ZFS ...).
_NON_DEVICE_ROOTS = (
    "ZFS=",
    "zfs:",
    "live:",
    "nfs:",
    "/dev/nfs",
    "cifs",
    "iscsi:",
    "nbd:",
    "tmpfs",
    "fstab",
    "gpt-auto",
)


def _bios_advice(family: str, *, uefi_found: bool = True) -> str:
    install = {
        "debian": "`apt-get install grub-pc-bin && grub-install --target=i386-pc /dev/vda && "
        "update-grub`",
        "rhel": "`dnf install grub2-pc grub2-pc-modules && grub2-install --target=i386-pc "
        "/dev/vda && grub2-mkconfig -o /boot/grub2/grub.cfg`",
        "suse": "`zypper install grub2-i386-pc && grub2-install --target=i386-pc /dev/vda && "
        "grub2-mkconfig -o /boot/grub2/grub.cfg`",
    }.get(family, "`grub-install --target=i386-pc /dev/vda` (or grub2-install)")
    where = "next to the UEFI one" if uefi_found else "on the system disk"
    text = (
        f"Install the BIOS boot loader {where}: {install} (a GPT disk needs a 1 MiB BIOS "
        "boot partition, type ef02, for GRUB's core.img)."
    )
    if uefi_found:
        text += (
            " Or, if the platform is configured for UEFI, check with `--uefi` and register "
            "the image with UEFI firmware."
        )
    return text


class BootModeRule(Rule):
    """What it checks: how the image boots. BIOS: sector 0 holds boot code (GRUB's boot.img
    whose core.img is really where it points, in the BIOS boot partition or the MBR gap;
    GRUB Legacy; or an MBR that chain-loads an active partition). UEFI: an EFI system
    partition with a FAT filesystem holding ``EFI/BOOT/BOOTX64.EFI`` (``BOOTAA64.EFI`` on Arm)
    or a distribution's ``grubx64.efi``/``shimx64.efi``. BIOS or both pass; UEFI only passes
    with ``--uefi``; neither fails.

    Why it matters: the platform starts servers with BIOS firmware unless the image is
    registered for UEFI; a UEFI-only image then stops at "No bootable device", and an image
    with no boot loader never starts at all.

    How to fix: install GRUB for BIOS as well (``grub-install --target=i386-pc`` on the
    distribution, with a BIOS boot partition on GPT), or, when the platform supports UEFI,
    check with ``--uefi`` and register the image with UEFI firmware.

    A boot loader configuration file (``grub.cfg``, ``menu.lst``, ``extlinux.conf``...) that
    exists but cannot be read (a dangling symbolic link, a loop, a directory, too large) fails
    too: the loader stops at its prompt.

    Example: "The image boots only with UEFI", with evidence "ESP part2: EFI/BOOT/BOOTX64.EFI"
    and "sector 0: no boot code".
    """

    id = "IMG-BOOT-MODE"
    severity = Severity.ERROR
    title = "The image must boot with BIOS (UEFI only with --uefi)"
    advice = "Install GRUB for BIOS (grub-install --target=i386-pc), or check with --uefi."
    title_zh = "镜像必须能以 BIOS 启动（使用 --uefi 检查时可为 UEFI）"
    advice_zh = (
        "安装 BIOS 版 GRUB（grub-install --target=i386-pc），"
        "或以 UEFI 启动方式（--uefi）检查并注册镜像。"
    )

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        boot = guest.derive(read_boot)
        uefi_allowed = facts.options.uefi
        evidence = (
            *(f"BIOS: {e}" for e in boot.bios.evidence),
            *(f"UEFI: {e}" for e in boot.uefi.evidence),
            *(f"problem: {p}" for p in boot.problems),
        )
        if boot.unreadable:
            yield self.found(
                "The boot loader's configuration exists but cannot be read: the loader "
                "cannot read it either and stops at its prompt instead of starting the system.",
                *boot.unreadable,
                *evidence,
                advice="Make the boot loader configuration (grub.cfg ...) a regular file on "
                "the system disk (a symbolic link must point at an existing file), e.g. with "
                "`update-grub` or `grub2-mkconfig -o /boot/grub2/grub.cfg`, then export the "
                "image again.",
            )
            return
        if boot.bios.supported or (boot.uefi.supported and uefi_allowed):
            return
        if boot.uefi.supported:
            yield self.found(
                "The image boots only with UEFI; the platform boots it with BIOS "
                "unless it is registered for UEFI.",
                *evidence,
                advice=_bios_advice(guest.family),
            )
            return
        yield self.found(
            "No boot loader was found for BIOS or UEFI: servers from this image will not start.",
            *evidence,
            advice=_bios_advice(guest.family, uefi_found=False),
        )


def _root_spec_ok(spec: str) -> bool:
    """Whether a root= value is one this rule judges (a block device spec, no variables)."""
    return "$" not in spec and not spec.startswith(_NON_DEVICE_ROOTS)


class BootSameDiskRule(Rule):
    """What it checks: ``/boot`` and the root filesystem are on this disk: ``/etc/fstab``
    mounts ``/`` and ``/boot`` (and ``/boot/efi``) from devices in the image; without a
    ``/boot`` mount the root's ``/boot`` holds the kernels; and the default kernel command
    line's ``root=`` (``UUID=``, ``LABEL=``, ``PARTUUID=`` or a device) names the root volume.

    Why it matters: a server created from the image has only this disk. If the boot loader's
    files or the kernel live on another disk, or the kernel is told to mount its root from
    one, the server stops in the boot loader or the initrd's emergency shell.

    How to fix: copy ``/boot`` onto the system disk (or include the disk that holds it in the
    export as the system disk), fix ``/etc/fstab``, and regenerate the boot loader
    configuration so that ``root=UUID=<the root filesystem's UUID>``.

    Example: ``linux /vmlinuz-6.1.0-13-amd64 root=/dev/vdb1 ro`` in ``/boot/grub/grub.cfg``
    is reported: "/dev/vdb1 is not on this disk".
    """

    id = "IMG-BOOT-SAME-DISK"
    severity = Severity.ERROR
    title = "/boot and the root filesystem must be on the system disk"
    advice = (
        "Keep /boot and / on the system disk and make the boot loader name the root by "
        "UUID (root=UUID=...)."
    )
    title_zh = "/boot 和根文件系统必须位于系统盘上"
    advice_zh = "将 /boot 和 / 放在系统盘上，并让引导程序用 UUID 指定根文件系统（root=UUID=...）。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        boot = guest.derive(read_boot)
        boot_mounts = [
            u
            for u in guest.layout.unresolved
            if u.entry.mountpoint in ("/", "/boot", "/boot/efi") and u.entry.auto
        ]
        for item in boot_mounts:
            e = item.entry
            yield self.found(
                f"/etc/fstab mounts {e.mountpoint} from {e.spec}, which is not on "
                f"this disk ({item.reason}).",
                f"/etc/fstab:{e.line_no}: {e.line}",
            )
        has_boot_mount = any(m.mountpoint == "/boot" for m in guest.layout.mounts)
        if not boot.kernel_in_boot and not has_boot_mount and not boot_mounts:
            yield self.found(
                "/boot holds no kernel and /etc/fstab mounts no /boot: the boot "
                "partition is probably on another disk.",
                "/boot: no vmlinuz-* or other kernel file",
                advice="Copy /boot (kernels, initrds, boot loader files) onto "
                "the system disk, or export the disk that holds it.",
            )
        if boot.default is not None:
            yield from self._check_root_arg(guest, boot.default)

    def _check_root_arg(self, guest: GuestFacts, entry: KernelLine) -> Iterator[Finding]:
        spec = entry.root
        root = guest.layout.root
        if spec is None or root is None or not _root_spec_ok(spec):
            return
        volume = find_volume(spec, guest.layout.storage.volumes)
        if volume is None:
            yield self.found(
                f"The default kernel command line mounts the root from {spec}, "
                "which is not on this disk.",
                entry.where,
            )
        elif volume.name != root.volume.name:
            yield self.found(
                f"The default kernel command line's root={spec} names "
                f"{volume.name} ({volume.kind}), but the system is on "
                f"{root.volume.name}.",
                entry.where,
            )


def has_serial_console(consoles: tuple[str, ...]) -> bool:
    """Whether one of ``consoles`` (the values of ``console=``) reaches the serial log."""
    return any(c.split(",", 1)[0] in SERIAL_CONSOLES for c in consoles)


def _console_advice(family: str, boot: BootFacts) -> str:
    arg = "console=ttyS0,115200"
    kind = boot.configs[0].kind if boot.configs else "grub"
    if kind == "syslinux":
        return f"Add `{arg}` to the APPEND line of {boot.configs[0].source}."
    if kind == "grub-legacy":
        return f"Add `{arg}` to the kernel line of {boot.configs[0].source}."
    return {
        "debian": f"Add `{arg}` to GRUB_CMDLINE_LINUX in /etc/default/grub, then run "
        "`update-grub`.",
        "rhel": f'Run `grubby --update-kernel=ALL --args="{arg}"` and add it to '
        "GRUB_CMDLINE_LINUX in /etc/default/grub for future kernels.",
        "suse": f"Add `{arg}` to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub (or use "
        "YaST > Boot Loader), then run `grub2-mkconfig -o /boot/grub2/grub.cfg`.",
    }.get(
        family,
        f"Add `{arg}` to the kernel command line in the boot loader configuration "
        "(GRUB_CMDLINE_LINUX in /etc/default/grub, then regenerate grub.cfg).",
    )


class ConsoleRule(Rule):
    """What it checks: the default kernel command line (from ``grub.cfg``, Boot Loader
    Specification entries, ``menu.lst`` or ``extlinux.conf``) has a serial console:
    ``console=ttyS0`` (any speed), ``hvc0``, or ``ttyAMA0`` on Arm.

    Why it matters: the platform's console log shows the serial port. Without it, a server
    that fails to boot or to get a network address leaves no log to diagnose it with.

    How to fix: add ``console=ttyS0,115200`` (after any ``console=tty0``) to the kernel
    command line: Debian/Ubuntu ``GRUB_CMDLINE_LINUX`` in ``/etc/default/grub`` then
    ``update-grub``; RHEL-like ``grubby --update-kernel=ALL --args="console=ttyS0,115200"``;
    SUSE ``/etc/default/grub`` or YaST then ``grub2-mkconfig``.

    Example: ``/boot/grub/grub.cfg:12: linux /vmlinuz-6.1.0-13-amd64 root=UUID=... ro quiet``
    is reported.
    """

    id = "IMG-CONSOLE"
    severity = Severity.WARNING
    title = "The kernel command line should send the console to the serial port"
    advice = "Add console=ttyS0,115200 to the kernel command line."
    title_zh = "内核命令行应将控制台输出到串口"
    advice_zh = "在内核命令行中加入 console=ttyS0,115200。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        boot = guest.derive(read_boot)
        advice = _console_advice(guest.family, boot)
        entry = boot.default
        if entry is None:
            yield self.found(
                "No kernel command line was found, so a serial console could not be confirmed.",
                "looked at: " + ", ".join(boot.looked_at),
                advice=advice,
            )
            return
        if has_serial_console(entry.consoles):
            return
        evidence = [entry.where]
        found = ", ".join(f"console={c}" for c in entry.consoles)
        evidence.append(f"consoles: {found}" if found else "no console= argument")
        pending = [
            s
            for s in boot.grub_defaults
            if has_serial_console(
                tuple(
                    w.removeprefix("console=") for w in s.value.split() if w.startswith("console=")
                )
            )
        ]
        evidence.extend(f"{s.where} (has it, but grub.cfg was not regenerated)" for s in pending)
        yield self.found(
            f"The default kernel command line ({entry.title or entry.kernel}) has "
            "no serial console (console=ttyS0).",
            *evidence,
            advice=advice,
        )
