"""Rules about the guest's kernel: paravirtual drivers at boot, full virtualization, and udev
rules that pin network names to the old machine's MAC addresses.

Facts come from :func:`imageport.guest.boot.kernels.read_kernels` (shared by the three rules) and
:func:`imageport.guest.boot.kernels.read_net_rules`. Fixes follow the vendor's checklist per
distribution family (its IMS user guide, "Optimizing a Linux Private Image": delete the
persistent-net rules, put the virtio drivers in the initrd).
"""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.guest.boot.kernels import (
    BOOT_DRIVERS,
    IDE_DRIVERS,
    WATCHED_DRIVERS,
    Kernel,
    KernelFacts,
    NetRulesFile,
    read_kernels,
    read_net_rules,
)
from imageport.rules.base import ImageFacts, Rule

#: Without these the root disk is not found and the server does not boot.
STORAGE_DRIVERS = ("virtio", "virtio_ring", "virtio_pci", "virtio_blk", "virtio_scsi")
#: Xen PV front ends, needed only on the platform's Xen-based flavours.
XEN_DRIVERS = ("xen_blkfront", "xen_netfront")
FULL_VIRT_ARCHES = ("x86_64", "aarch64")
#: The name a finding gives the missing IDE support (either of :data:`IDE_DRIVERS` would do;
#: this is the one to add).
IDE_DRIVER = "ata_piix"
#: virtio entered the kernel in 2.6.24.
MIN_VIRTIO_RELEASE = (2, 6, 24)


def rebuild_command(family: str) -> str:
    """How to rebuild every initrd on ``family``."""
    if family == "debian":
        return "`update-initramfs -u -k all`"
    if family == "rhel":
        return (
            "`dracut -f --regenerate-all` (RHEL/CentOS 6: `dracut -f "
            "/boot/initramfs-<version>.img <version>` for each kernel)"
        )
    if family == "suse":
        return "`dracut -f --regenerate-all` (SLES 11: `mkinitrd`)"
    return "your distribution's initrd tool (`dracut -f`, `update-initramfs -u` or `mkinitrd`)"


def driver_fix(family: str, modules: list[str], release: str = "") -> str:
    """How to put ``modules`` into the initrds on ``family`` (``release``: VERSION_ID)."""
    names = " ".join(modules)
    if family == "rhel" and release.split(".")[0] == "5":
        withs = " ".join(f"--with={m}" for m in modules)
        return (
            f"RHEL/CentOS 5 uses mkinitrd: `mkinitrd -f {withs} /boot/initrd-<version>.img "
            f"<version>` for the default kernel."
        )
    dracut = (
        f"`echo 'add_drivers+=\" {names} \"' > /etc/dracut.conf.d/virtio.conf`, then "
        f"{rebuild_command('rhel')}"
    )
    if family == "debian":
        return (
            f"Add the modules to /etc/initramfs-tools/modules (`printf '%s\\n' {names} >> "
            f"/etc/initramfs-tools/modules`), then run {rebuild_command('debian')}."
        )
    if family == "rhel":
        return f"Add the drivers to dracut: {dracut}."
    if family == "suse":
        return (
            f"SLES 12 and later (dracut): `echo 'add_drivers+=\" {names} \"' > "
            f"/etc/dracut.conf.d/virtio.conf`, then `dracut -f --regenerate-all`; SLES 11: "
            f"add them to INITRD_MODULES in /etc/sysconfig/kernel, then run `mkinitrd`."
        )
    return (
        f'Rebuild the initrd with {names} included (dracut: add_drivers+=" {names} " in '
        f"/etc/dracut.conf.d/virtio.conf; initramfs-tools: /etc/initramfs-tools/modules), "
        f"then {rebuild_command(family)}."
    )


def _initrd_evidence(kernel: Kernel) -> str:
    initrd = kernel.initrd
    if initrd is None:
        return (
            f"initrd: none found for {kernel.version} (looked for /boot/initrd.img-<v>, "
            f"/boot/initramfs-<v>.img, /boot/initrd-<v>)"
        )
    if initrd.error is not None:
        return f"initrd: {initrd.path} cannot be read: {initrd.error}"
    if not initrd.read:
        return f"initrd: {initrd.path} (not read: too many initrds)"
    text = (
        f"initrd: {initrd.path}: {initrd.module_count} modules, {len(initrd.modules)} of them "
        f"for {kernel.version}"
    )
    others = [v for v in initrd.versions if v != kernel.version]
    if others and not initrd.modules:
        text += f" (it holds modules for {', '.join(others[:4])} instead)"
    if initrd.problems:
        text += f"; read stopped early: {initrd.problems[0]}"
    return text


def _builtin_evidence(kernel: Kernel) -> str:
    sources = [p for p in (kernel.config_path, kernel.builtin_path) if p]
    if not sources:
        return (
            f"built in: unknown (no /boot/config-{kernel.version} or "
            f"/lib/modules/{kernel.version}/modules.builtin)"
        )
    built = [f"{d} ({BOOT_DRIVERS[d]}=y)" for d in BOOT_DRIVERS if d in kernel.builtin]
    return f"built in ({', '.join(sources)}): {', '.join(built) or 'none of the drivers checked'}"


def missing_drivers(kernel: Kernel) -> list[str]:
    """The drivers ``kernel`` cannot load at boot; the IDE support counts as one, named
    :data:`IDE_DRIVER`, missing when no driver of :data:`IDE_DRIVERS` loads."""
    missing = [d for d in WATCHED_DRIVERS if not kernel.available(d)]
    if not kernel.ide_available:
        missing.append(IDE_DRIVER)
    return missing


def judged_kernels(kf: KernelFacts) -> Iterator[tuple[Kernel, list[str]]]:
    """The kernels IMG-DRIVERS reports, each with the drivers it misses: the default kernel
    when it misses any, and every other non-rescue kernel whose initrd was read when it
    misses a storage driver (the driver fix repairs exactly these). The default comes first."""
    for kernel in sorted(kf.kernels, key=lambda k: k is not kf.default):
        default = kernel is kf.default
        if not default and (kernel.rescue or kernel.initrd is None or not kernel.initrd.read):
            continue
        missing = missing_drivers(kernel)
        if missing and (default or any(d in STORAGE_DRIVERS for d in missing)):
            yield kernel, missing


def _installed(kernel: Kernel, driver: str) -> bool:
    """Whether ``driver``'s module is on the root filesystem (for IDE: any IDE driver's)."""
    if driver == IDE_DRIVER:
        return any(d in kernel.on_disk for d in IDE_DRIVERS)
    return driver in kernel.on_disk


class DriversRule(Rule):
    """What it checks: the default kernel can load the platform's paravirtual drivers at boot:
    ``virtio``, ``virtio_ring``, ``virtio_pci``, ``virtio_blk``, ``virtio_scsi``,
    ``virtio_net``, ``xen_blkfront`` and ``xen_netfront``, each either built into the kernel
    (``CONFIG_VIRTIO_BLK=y`` in ``/boot/config-<version>``, or listed in
    ``/lib/modules/<version>/modules.builtin``) or present as a module in the kernel's initrd
    for that version. The initrd is read like ``lsinitrd``/``lsinitramfs`` would list it.
    It also checks the IDE support the vendor asks for: a driver for the emulated PIIX IDE
    controller, ``ata_piix`` (``CONFIG_ATA_PIIX``) or, on kernels from before libata, the
    legacy ``piix`` (``CONFIG_BLK_DEV_PIIX``), either one built in or in the initrd, the same
    way. ``ata_generic`` does not count: it leaves Intel PIIX controllers alone unless the
    kernel is booted with ``ata_generic.all_generic_ide=1``. The vendor's "PVOPS" (a kernel
    that runs paravirtualised on the hypervisor) is what the virtio and Xen front-end drivers
    give; a classic Xen kernel that runs only as Xen PV is IMG-FULL-VIRT's. Other
    (non-rescue) kernels that lack the virtio storage drivers are warned about.

    Why it matters: servers see their system disk as a virtio (or Xen) device; an initrd made
    by dracut in host-only mode on VMware or bare metal holds only that machine's drivers, so
    the root filesystem is never found and the server stops in an emergency shell. Severity:
    a missing virtio storage driver is an error (the server will not boot); a missing
    ``virtio_net`` is an error only when its module is not installed either (otherwise udev
    loads it from the root filesystem after boot, so it is a warning); missing Xen front ends
    while virtio is complete are a warning, because only the platform's Xen-based flavours
    need them and KVM flavours boot without them. A missing IDE driver is a warning for the
    same reason: Xen-based flavours start from an emulated IDE disk before the Xen front ends
    take over, KVM flavours boot from virtio (the vendor's automatic configuration adds the
    IDE driver when it is missing, but fast import changes nothing in the image).

    How to fix: add the missing modules to the initrd and rebuild it: on Debian/Ubuntu list
    them in ``/etc/initramfs-tools/modules`` and run ``update-initramfs -u -k all``; on
    RHEL, CentOS, EulerOS and openEuler put ``add_drivers+=" virtio_blk virtio_scsi
    virtio_net virtio_pci "`` in ``/etc/dracut.conf.d/virtio.conf`` and run
    ``dracut -f --regenerate-all``; on SUSE use dracut the same way (SLES 12+), or
    ``INITRD_MODULES`` in ``/etc/sysconfig/kernel`` and ``mkinitrd`` (SLES 11). The IDE
    driver goes in the same way: ``ata_piix`` in the list.

    Example: a CentOS 7 image whose ``/boot/initramfs-3.10.0-1160.el7.x86_64.img`` was built
    on VMware (no virtio modules) reports "Kernel 3.10.0-1160.el7.x86_64 cannot load virtio,
    virtio_ring, virtio_pci, virtio_blk, virtio_scsi ... at boot"; a Debian image whose
    ``/boot/config-<version>`` says ``CONFIG_ATA_PIIX=m`` and whose initrd was made with
    ``MODULES=dep`` on a KVM machine (virtio only) warns "cannot load ata_piix at boot", with
    ``ata_piix (the IDE driver, module installed, not in the initrd)`` as evidence.
    """

    id = "IMG-DRIVERS"
    severity = Severity.ERROR
    title = "The kernel must load virtio, Xen PV and IDE drivers at boot"
    advice = "Add the virtio, Xen PV and IDE drivers to the initrd and rebuild it."
    title_zh = "内核必须在启动时加载 virtio、Xen PV 和 IDE 驱动"
    advice_zh = "将 virtio、Xen PV 和 IDE 驱动加入 initrd 并重新生成 initrd。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        kf = guest.derive(read_kernels)
        family = guest.family
        release = guest.os.version_id if guest.os is not None else ""
        if kf.default is None:
            yield self.found(
                "No Linux kernel was found in the image, so the server cannot boot.",
                "looked for /boot/vmlinuz-*, /boot/vmlinux-*, /boot/kernel-* and "
                "/usr/lib/modules/*/vmlinuz",
                *(f"problem: {p}" for p in kf.problems),
                advice="Install a kernel package (and its initrd) in the image.",
            )
            return
        for kernel, missing in judged_kernels(kf):
            yield self._kernel(kernel, missing, kf, family, release)

    def _kernel(
        self, kernel: Kernel, missing: list[str], kf: KernelFacts, family: str, release: str
    ) -> Finding:
        default = kernel is kf.default
        storage = [d for d in missing if d in STORAGE_DRIVERS]
        net_lost = "virtio_net" in missing and not _installed(kernel, "virtio_net")
        severity = Severity.ERROR if default and (storage or net_lost) else Severity.WARNING
        detail = []
        for d in missing:
            where = (
                "module installed, not in the initrd" if _installed(kernel, d) else "not installed"
            )
            what = "the IDE driver, " if d == IDE_DRIVER else ""
            detail.append(f"{d} ({what}{where})")
        which = f"default: {kf.default_reason}" if default else "not the default kernel"
        consequence = (
            "the server will not find its system disk"
            if storage
            else "the server will have no network"
            if net_lost
            else "servers on Xen-based flavours will not boot"
            + (" (they start from an emulated IDE disk)" if IDE_DRIVER in missing else "")
        )
        fix = driver_fix(family, missing, release)
        if any(not _installed(kernel, d) and d not in kernel.builtin for d in missing):
            fix += (
                f" Drivers marked 'not installed' have no module under /lib/modules/"
                f"{kernel.version}: install the distribution's kernel modules package "
                f"for this kernel, or a newer kernel, first."
            )
        they = "it is" if len(missing) == 1 else "they are"
        if kernel.config_path or kernel.builtin_path:
            why = f"{they} neither built in nor in its initrd"
        else:
            why = (
                f"{they} not in its initrd, and no kernel config or modules.builtin shows "
                f"{'it' if len(missing) == 1 else 'them'} built in"
            )
        return self.found(
            f"Kernel {kernel.version} ({which}) cannot load {', '.join(missing)} at boot: "
            f"{why}, so {consequence}.",
            f"kernel: {kernel.image}",
            _initrd_evidence(kernel),
            _builtin_evidence(kernel),
            "missing: " + ", ".join(detail),
            advice=fix,
            severity=severity,
        )


class FullVirtRule(Rule):
    """What it checks: the system can run as a full-virtualization (HVM/KVM) guest: its
    programs are built for ``x86_64`` or ``aarch64`` (read from the ELF header of
    ``/bin/sh``, ``ls`` or ``init``), the default kernel is 2.6.24 or newer (the first with
    virtio), and it is not a classic Xen paravirtual kernel (``kernel-xen`` on SLES 10/11 and
    RHEL 5: ``vmlinuz-*-xen``, ``vmlinuz-*el5xen``, or ``CONFIG_X86_64_XEN=y``).

    Why it matters: the platform runs servers as HVM/KVM guests on x86_64 and Arm64 hosts. A
    Xen PV kernel cannot start without a Xen PV host, a kernel older than 2.6.24 has no
    virtio drivers, and other architectures (32-bit x86 included) are not offered.

    How to fix: install the distribution's standard (non-Xen) kernel and make it the GRUB
    default (``grub2-set-default``, ``grub-set-default`` or ``GRUB_DEFAULT`` then
    ``grub2-mkconfig``/``update-grub``); move 32-bit systems to their x86_64 release.

    Example: a SLES 11 image booting ``/boot/vmlinuz-3.0.101-63-xen`` reports "The default
    kernel 3.0.101-63-xen is a Xen paravirtual kernel".
    """

    id = "IMG-FULL-VIRT"
    severity = Severity.ERROR
    title = "The OS must support full virtualization (HVM/KVM, x86_64 or aarch64)"
    advice = "Install the distribution's standard x86_64 or aarch64 kernel and boot it."
    title_zh = "操作系统必须支持全虚拟化（HVM/KVM，x86_64 或 aarch64）"
    advice_zh = "安装发行版标准的 x86_64 或 aarch64 内核，并用它启动。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        kf = guest.derive(read_kernels)
        arch = kf.arch
        if arch is not None and arch.name not in FULL_VIRT_ARCHES:
            yield self.found(
                f"The system's programs are built for {arch.name} ({arch.bits}-bit); servers "
                f"run x86_64 or aarch64 systems only.",
                f"{arch.path}: ELF {arch.bits}-bit {arch.header.byte_order}-endian, "
                f"e_machine {arch.header.machine} ({arch.name})",
                advice="Build the image from the distribution's x86_64 (or aarch64) release.",
            )
        kernel = kf.default
        if kernel is None:
            return
        release = kernel.release()
        if release is not None and release < MIN_VIRTIO_RELEASE:
            yield self.found(
                f"The default kernel {kernel.version} is older than 2.6.24 and has no virtio "
                f"drivers.",
                f"kernel: {kernel.image} (default: {kf.default_reason})",
                advice="Upgrade to a kernel of 2.6.24 or later (the distribution's current "
                "release kernel).",
            )
        if kernel.xen_pv_only:
            others = [k.version for k in kf.kernels if not k.xen_pv_only and not k.rescue]
            advice = (
                "Make the standard kernel " + others[0] + " the GRUB default "
                "(`grub2-set-default` / `grub-set-default`, or GRUB_DEFAULT) and remove "
                "the Xen kernel."
                if others
                else "Install the distribution's standard kernel (e.g. `kernel-default` on "
                "SUSE, `kernel` on RHEL), make it the GRUB default and remove kernel-xen."
            )
            yield self.found(
                f"The default kernel {kernel.version} is a Xen paravirtual kernel: "
                f"{kernel.xen_reason}; it cannot boot as an HVM/KVM guest.",
                f"kernel: {kernel.image} (default: {kf.default_reason})",
                advice=advice,
            )


class NetRulesRule(Rule):
    """What it checks: no udev rules pin network interface names to MAC addresses: no file
    named like ``*persistent*net*`` (``70-persistent-net.rules``,
    ``30-net_persistent_names.rules``) with an active rule in ``/etc/udev/rules.d``, nor in
    any kernel's initrd (as ``lsinitrd | grep persistent`` would show). An empty
    ``75-persistent-net-generator.rules`` (CentOS 6's way to disable the generator) is the
    recommended state and is not reported; comment-only files are not reported either.

    Why it matters: the rules name the NIC with the old machine's MAC ``eth0``; a new server's
    NIC has another MAC, becomes ``eth1``, and the network configured for ``eth0`` never
    comes up, so the server cannot be reached.

    How to fix: delete the files, then rebuild the initrd so that no copy stays inside
    (``update-initramfs -u -k all`` on Debian/Ubuntu, ``dracut -f --regenerate-all`` on RHEL,
    EulerOS, openEuler and SUSE, ``mkinitrd`` on SLES 11). On CentOS 6 also create an empty
    ``/etc/udev/rules.d/75-persistent-net-generator.rules`` so the rules are not written again.

    Example: ``/etc/udev/rules.d/70-persistent-net.rules:8: SUBSYSTEM=="net",
    ATTR{address}=="52:54:00:12:34:56", NAME="eth0"``.
    """

    id = "IMG-NET-RULES"
    severity = Severity.WARNING
    title = "udev must not pin network interface names to MAC addresses"
    advice = "Delete the persistent-net rules files and rebuild the initrd."
    title_zh = "udev 不能把网卡名绑定到 MAC 地址"
    advice_zh = "删除 persistent-net 规则文件并重新生成 initrd。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        family = guest.family
        old_rhel = (
            guest.os is not None
            and family == "rhel"
            and guest.os.version_id.split(".")[0] in ("5", "6")
        )
        for item in guest.derive(read_net_rules):
            yield self.found(
                self._message(item),
                self._evidence(item),
                advice=self._advice(item, family, old_rhel),
            )

    @staticmethod
    def _message(item: NetRulesFile) -> str:
        what = "binds" if "address" in item.line else "sets"
        where = (
            f"The initrd {item.in_initrd} contains {item.path.split(':', 1)[1]}"
            if item.in_initrd
            else f"{item.path} exists"
        )
        return (
            f"{where}: it {what} network interface names by MAC address, so a new "
            f"server's NIC gets another name and its network does not come up."
        )

    @staticmethod
    def _evidence(item: NetRulesFile) -> str:
        return f"{item.path}:{item.line_no}: {item.line}"

    @staticmethod
    def _advice(item: NetRulesFile, family: str, old_rhel: bool) -> str:
        if item.in_initrd:
            text = (
                f"Delete the file from /etc/udev/rules.d in the guest, then rebuild the "
                f"initrd: {rebuild_command(family)}."
            )
        else:
            text = (
                f"Delete {item.path}, then rebuild the initrd so no copy stays in it: "
                f"{rebuild_command(family)}."
            )
        if old_rhel:
            text += (
                " On CentOS/RHEL 6 also create an empty "
                "/etc/udev/rules.d/75-persistent-net-generator.rules."
            )
        return text
