"""IMG-HW-BINDING: the system is not bound to the old machine's hardware (its NICs' MAC
addresses, its disks' serial numbers and bus addresses)."""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.guest.facts.disk_names import DiskNameUse, read_disk_names
from imageport.guest.facts.network import read_network
from imageport.rules.base import ImageFacts, Rule

#: How to remove a MAC binding, by configuration style.
_UNBIND = {
    "ifupdown": "Delete the `hwaddress` line.",
    "ifcfg": "Delete the HWADDR= and MACADDR= lines (the DEVICE= name identifies the NIC).",
    "suse-ifcfg": "Delete the LLADDR= line.",
    "wicked": "Delete the <address>/<permanent-address> element; match the interface by name.",
    "netplan": "Match the interface by `name:` (or `driver:`) instead of `macaddress:`, and "
    "delete any `macaddress:` it sets; then run `netplan generate`.",
    "nm": "Delete mac-address= and cloned-mac-address= from [ethernet] (`nmcli connection "
    "modify <connection> 802-3-ethernet.mac-address ''`); use interface-name= instead.",
    "networkd": "Match by Name= instead of MACAddress=/PermanentMACAddress= in [Match], and "
    "delete MACAddress= from [Link].",
}


#: What each kind of hardware-bound disk name is made from.
_MADE_FROM = {
    "by-id": "the old disk's model and serial number (or WWN)",
    "by-path": "the old disk controller's bus address",
}
#: How the kernel command line is rebuilt, by distribution family.
_MKCONFIG = {
    "debian": "`update-grub`",
    "rhel": "`grub2-mkconfig -o /boot/grub2/grub.cfg` (BLS entries: `grubby --update-kernel=ALL "
    "--args=root=UUID=<uuid>`)",
    "suse": "`grub2-mkconfig -o /boot/grub2/grub.cfg`",
}


def _disk_advice(use: DiskNameUse, family: str) -> str:
    name = use.name
    by = f"`blkid {name}` on the old machine shows it"
    if use.use == "fstab":
        return (
            f"Replace {name} with UUID=<uuid> (or LABEL=<label>) of that filesystem in "
            f"/etc/fstab ({by})."
        )
    if use.use == "crypttab":
        return (
            f"Replace {name} with UUID=<uuid> of the encrypted partition in /etc/crypttab "
            f"({by}), then rebuild the initrd."
        )
    if use.use == "RESUME=":
        return (
            f"Set RESUME=UUID=<uuid of the swap> in {use.where.path} ({by}) or RESUME=none, "
            "then run `update-initramfs -u -k all`."
        )
    param = use.use
    mkconfig = _MKCONFIG.get(family, "your boot loader's configuration tool (`grub2-mkconfig`)")
    if use.source == "grub-defaults":
        return (
            f"In /etc/default/grub write {param}UUID=<uuid> instead of {param}{name} ({by}), "
            f"or drop {param} if the generated configuration sets it; then run {mkconfig}."
        )
    return (
        f"Make the kernel command line say {param}UUID=<uuid> instead of {param}{name} "
        f"({by}): remove the name from GRUB_CMDLINE_LINUX in /etc/default/grub (and "
        f"GRUB_DISABLE_LINUX_UUID=true, if set), then run {mkconfig}."
    )


#: What a name no new server has does, by use.
_CONSEQUENCE = {
    "fstab": "the boot waits for it, then stops in emergency mode",
    "crypttab": "the boot waits for it, then stops in emergency mode",
    "root=": "the kernel never finds its root filesystem and the server does not boot",
    "resume=": "the boot waits for it, and resuming from hibernation cannot work",
    "RESUME=": "the boot waits for it, and resuming from hibernation cannot work",
}


def _disk_message(use: DiskNameUse) -> str:
    what = {
        "fstab": f"mounts a filesystem at boot from {use.name}",
        "crypttab": f"opens an encrypted device at boot from {use.name}",
        "RESUME=": f"resumes from hibernation on {use.name}",
    }.get(use.use, f"gives the kernel {use.use}{use.name}")
    line = f" line {use.where.line}" if use.where.line else ""
    entries = "entry" if use.more == 1 else "entries"
    more = f" (and {use.more} more boot {entries})" if use.more else ""
    return (
        f"{use.where.path}{line}{more} {what}, a {use.kind} name made from "
        f"{_MADE_FROM[use.kind]}; no disk of a new server has that name, so "
        f"{_CONSEQUENCE.get(use.use, 'the boot waits for it')}."
    )


class HardwareBindingRule(Rule):
    """What it checks: the system is not bound to the old machine's hardware.

    NICs: no network configuration binds an interface to a MAC address or sets one:
    ``HWADDR=``/``MACADDR=`` in Red Hat ifcfg files, ``LLADDR=`` in SUSE ifcfg files,
    ``hwaddress`` in ``/etc/network/interfaces``, ``match: macaddress`` or ``macaddress`` in
    netplan, ``mac-address=``/``cloned-mac-address=`` in NetworkManager keyfiles,
    ``MACAddress=``/``PermanentMACAddress=`` in systemd-networkd files, and MAC addresses in
    wicked XML. (Persistent udev NIC naming rules are IMG-NET-RULES.)

    Disks: nothing used at boot names a disk by ``/dev/disk/by-id/...`` (made from the disk's
    model and serial number or WWN) or ``/dev/disk/by-path/...`` (made from its controller's
    bus address): the lines of ``/etc/fstab`` mounted at boot, the device field of
    ``/etc/crypttab``, ``RESUME=`` in ``/etc/initramfs-tools/conf.d/resume``, and ``root=``
    and ``resume=`` on the kernel command lines of the boot loader configurations
    (``grub.cfg``, BLS entries, ``menu.lst``, ``extlinux.conf``) and in
    ``GRUB_CMDLINE_LINUX``/``GRUB_CMDLINE_LINUX_DEFAULT`` of ``/etc/default/grub``. Names by
    UUID, label or partition UUID come with the image and are fine, as are the by-id names
    made from metadata inside the image (``dm-name-``, ``dm-uuid-``, ``md-uuid-``,
    ``md-name-``, ``lvm-pv-uuid-``); kernel names such as ``/dev/sda1`` are IMG-FSTAB-UUID's.
    Only these fixed files are read.

    Why it matters: a server from the image gets new NICs with new MAC addresses. A
    configuration matched to the old MAC no longer applies, so the NIC stays down; one that
    sets a MAC makes the NIC use an address the platform does not expect, and its traffic
    is dropped. Likewise its disks have other serial numbers and sit on another bus, so a
    by-id or by-path name never appears: the boot waits for the device, then stops in an
    emergency shell (root, ``/boot``, an encrypted device) or without swap and resume.

    How to fix: remove the MAC binding and identify the interface by name (``eth0``), e.g.
    delete the ``HWADDR=`` line from ``ifcfg-eth0``. Name disks by ``UUID=`` (or
    ``LABEL=``), as ``blkid`` shows them: in ``/etc/fstab`` and ``/etc/crypttab`` directly
    (then rebuild the initrd), on the kernel command line by removing the name from
    ``/etc/default/grub`` and regenerating ``grub.cfg`` (``update-grub``,
    ``grub2-mkconfig -o /boot/grub2/grub.cfg``), which writes ``root=UUID=...``.

    Example: ``/etc/sysconfig/network-scripts/ifcfg-eth0:5: HWADDR=52:54:00:12:34:56`` is
    reported; so is ``/etc/fstab:3: /dev/disk/by-id/ata-VBOX_HARDDISK_VB3f2a1c9e-part1 /
    ext4 defaults 0 1``, with the advice to write ``UUID=<uuid>`` instead.
    """

    id = "IMG-HW-BINDING"
    severity = Severity.WARNING
    title = "The OS should not be bound to the old machine's hardware"
    advice = "Remove MAC address bindings and by-id/by-path disk names from the configuration."
    title_zh = "操作系统不应绑定原机器的硬件"
    advice_zh = "从配置中删除 MAC 地址绑定和 by-id/by-path 形式的磁盘名。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.installed_guest
        if guest is None:
            return
        net = guest.derive(read_network)
        for cfg in net.interfaces:
            if cfg.mac_bindings:
                yield self.found(
                    f"Interface {cfg.name} is bound to a MAC address in {cfg.where.path}; new "
                    "servers have different NICs.",
                    *(str(q) for q in cfg.mac_bindings),
                    advice=_UNBIND.get(cfg.style, self.advice),
                )
        for use in guest.derive(read_disk_names).uses:
            yield self.found(
                _disk_message(use), str(use.where), advice=_disk_advice(use, guest.family)
            )
