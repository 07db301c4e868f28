"""The guest's kernels: versions, initrds and the drivers each can load at boot.

Where kernels live, per distribution family (from the Debian ``linux-image`` and
``initramfs-tools`` file lists, dracut's and kernel-install's documentation, SUSE's
``mkinitrd``):

- ``/boot/vmlinuz-<v>`` (also ``vmlinux-<v>``, ``kernel-<v>``); newer Fedora/RHEL also ship
  the image as ``/usr/lib/modules/<v>/vmlinuz``;
- the initrd as ``/boot/initrd.img-<v>`` (Debian, Ubuntu), ``/boot/initramfs-<v>.img``
  (RHEL, Fedora, openEuler), ``/boot/initrd-<v>`` (SUSE) or ``/boot/initrd-<v>.img`` (RHEL 5);
- the build configuration as ``/boot/config-<v>`` (or ``/lib/modules/<v>/config``) and the
  list of drivers built into the image as ``/lib/modules/<v>/modules.builtin``.

A driver can load at boot when it is built in (``CONFIG_X=y`` or listed in modules.builtin)
or its module is inside the initrd for that kernel version. Initrds are streamed through the
guest filesystem (:class:`GuestFileDevice`) with :func:`imageport.guest.boot.initrd.read_initrd`
and its caps (its unpacked-bytes cap is shared by all the initrds of one guest); only
:data:`MAX_INITRDS_READ` of them are read (the default kernel's first,
never a rescue kernel's unless it is the default: those are large generic initrds).

The default kernel is the one GRUB's ``saved_entry`` in ``grubenv`` names when it names one
(RHEL/Fedora's BLS entries and ``grub2-set-default`` write it); otherwise the newest version
by version sort, which is what ``GRUB_DEFAULT=0`` boots since ``grub-mkconfig`` lists kernels
newest first. Parsing ``grub.cfg`` menus would be more exact for custom setups; it is not done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imageport.errors import ImageportError, LimitExceededError
from imageport.guest.boot.initrd import (
    MAX_UNPACKED_BYTES,
    KeptFile,
    module_name,
    parse_kernel_config,
    parse_modules_builtin,
    read_initrd,
)
from imageport.guest.facts.elf import Architecture, read_architecture
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import Filesystem, FileType
from imageport.guest.volumes.blockdev import clipped_end

#: Kernels kept (newest first by version sort).
MAX_KERNELS = 32
#: Initrds streamed in one check (each one may take a second or more).
MAX_INITRDS_READ = 4
#: Directory entries looked at in one directory (``/boot``, ``/lib/modules`` ...).
MAX_DIR_SCAN = 1000
#: Bytes of a config, modules.builtin or grubenv file read.
MAX_TEXT_BYTES = 1 << 20

_IMAGE_PREFIXES = ("vmlinuz-", "vmlinux-", "kernel-")
_IMAGE_SUFFIXES = (".efi.signed", ".signed", ".gz", ".xz")
_VERSION = re.compile(r"\d+\.\d+")
#: udev rules that pin interface names to MAC addresses (70-persistent-net.rules,
#: 30-net_persistent_names.rules); the generator itself is not such a file.
_PERSISTENT_NET = re.compile(r"(persistent.*net|net.*persistent)", re.IGNORECASE)
INITRD_UDEV_RULES = ("etc/udev/rules.d/*persistent*",)

#: Drivers the platform's virtual hardware needs, and the Kconfig symbol that builds each.
WATCHED_DRIVERS: dict[str, str] = {
    "virtio": "CONFIG_VIRTIO",
    "virtio_ring": "CONFIG_VIRTIO",  # drivers/virtio/Makefile builds both from CONFIG_VIRTIO
    "virtio_pci": "CONFIG_VIRTIO_PCI",
    "virtio_blk": "CONFIG_VIRTIO_BLK",
    "virtio_scsi": "CONFIG_SCSI_VIRTIO",
    "virtio_net": "CONFIG_VIRTIO_NET",
    "xen_blkfront": "CONFIG_XEN_BLKDEV_FRONTEND",
    "xen_netfront": "CONFIG_XEN_NETDEV_FRONTEND",
}
#: Drivers for the emulated PIIX IDE controller that Xen HVM flavours boot from, and their
#: Kconfig symbols: libata's ``ata_piix``, or the legacy IDE layer's ``piix`` (kernels before
#: libata took over IDE). Either one is enough. ``ata_generic`` is not among them: it does not
#: claim Intel PIIX controllers unless booted with ``ata_generic.all_generic_ide=1``.
IDE_DRIVERS: dict[str, str] = {
    "ata_piix": "CONFIG_ATA_PIIX",
    "piix": "CONFIG_BLK_DEV_PIIX",
}
#: Every driver whose presence a :class:`Kernel` records.
BOOT_DRIVERS: dict[str, str] = {**WATCHED_DRIVERS, **IDE_DRIVERS}
#: Where each recorded driver's module lies under /lib/modules/<v>/kernel/.
_MODULE_DIRS = (
    "drivers/block",
    "drivers/net",
    "drivers/scsi",
    "drivers/virtio",
    "drivers/ata",
    "drivers/ide",
    "drivers/ide/pci",
)
#: Kconfig symbols set only in the classic (non-pvops) Xen kernels, which run only as Xen PV.
_XEN_PV_SYMBOLS = ("CONFIG_X86_XEN", "CONFIG_X86_64_XEN")


@dataclass(frozen=True, slots=True)
class InitrdInfo:
    """What one kernel's initrd holds."""

    path: str
    size: int
    read: bool  #: False when it was not read (over :data:`MAX_INITRDS_READ`, a rescue
    #: kernel's) or unreadable
    error: str | None  #: why it could not be read
    modules: frozenset[str]  #: module names for this kernel's version
    module_count: int  #: modules of all versions inside
    versions: tuple[str, ...]  #: kernel versions with a ``lib/modules/<v>`` inside
    builtin: frozenset[str]  #: ``modules.builtin`` inside, for this version
    net_rules: tuple[KeptFile, ...]  #: udev persistent-net rules inside
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Kernel:
    """One installed kernel."""

    version: str
    image: str  #: guest path of the kernel image
    initrd: InitrdInfo | None
    config_path: str | None
    builtin_path: str | None  #: modules.builtin read
    #: :data:`BOOT_DRIVERS` built into the image (from the config ``=y`` or modules.builtin).
    builtin: frozenset[str]
    #: :data:`BOOT_DRIVERS` whose module file is on the root filesystem under /lib/modules/<v>.
    on_disk: frozenset[str]
    xen_pv_only: bool
    xen_reason: str
    problems: tuple[str, ...]

    @property
    def rescue(self) -> bool:
        """A dracut rescue kernel (``vmlinuz-0-rescue-<machine-id>``)."""
        return self.version.startswith("0-rescue")

    def available(self, driver: str) -> bool:
        """Whether ``driver`` loads at boot: built in, or its module is in the initrd."""
        if driver in self.builtin:
            return True
        initrd = self.initrd
        return initrd is not None and (driver in initrd.modules or driver in initrd.builtin)

    @property
    def ide_available(self) -> bool:
        """Whether a driver for the emulated IDE controller (:data:`IDE_DRIVERS`) loads at boot."""
        return any(self.available(d) for d in IDE_DRIVERS)

    def release(self) -> tuple[int, ...] | None:
        """The numeric release (``(2, 6, 32)`` for ``2.6.32-754.el6.x86_64``), if any."""
        m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", self.version)
        return tuple(int(g) for g in m.groups() if g is not None) if m else None


@dataclass(frozen=True, slots=True)
class KernelFacts:
    """The guest's kernels, the default one, and its userland architecture."""

    kernels: tuple[Kernel, ...]  #: newest first
    default: Kernel | None
    default_reason: str  #: how the default was chosen
    arch: Architecture | None
    problems: tuple[str, ...]


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """A sort key like ``sort -V``: digit runs compare as numbers, other runs as text."""
    return tuple(
        (1, int(p), "") if p.isdigit() else (0, 0, p) for p in re.split(r"(\d+)", version) if p
    )


class GuestFileDevice:
    """A regular file of the guest as a read-only device, read in ranges (never whole)."""

    def __init__(self, fs: Filesystem, ino: int, size: int) -> None:
        self._fs, self._ino, self._size = fs, ino, size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        end = clipped_end(offset, length, self._size)
        if offset >= end:
            return b""
        return self._fs.read_ino(self._ino, offset, end - offset)


def _names(files: GuestFiles, path: str, problems: list[str]) -> list[str]:
    """Up to :data:`MAX_DIR_SCAN` names in directory ``path`` (none when it is absent)."""
    try:
        entries = files.listdir(path)
    except ImageportError:
        return []
    if len(entries) > MAX_DIR_SCAN:
        problems.append(f"{path} has {len(entries)} entries; only {MAX_DIR_SCAN} were looked at")
    return sorted(e.name for e in entries[:MAX_DIR_SCAN])


def _text(files: GuestFiles, path: str, problems: list[str]) -> str | None:
    try:
        return files.read_text(path, MAX_TEXT_BYTES)
    except ImageportError as exc:
        problems.append(f"{path} cannot be read: {exc}")
        return None


def _exists(files: GuestFiles, path: str) -> bool:
    try:
        return files.exists(path)
    except ImageportError:
        return False


def _is_file(files: GuestFiles, path: str) -> bool:
    try:
        return files.stat(path).type is FileType.REGULAR
    except ImageportError:
        return False


def _boot_kernels(files: GuestFiles, problems: list[str]) -> dict[str, str]:
    """version -> image path, from /boot and /usr/lib/modules/<v>/vmlinuz."""
    found: dict[str, str] = {}
    for name in _names(files, "/boot", problems):
        prefix = next((p for p in _IMAGE_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            continue
        tag = name[len(prefix) :]
        for suffix in _IMAGE_SUFFIXES:
            tag = tag.removesuffix(suffix)
        if not (tag.startswith("0-rescue") or _VERSION.match(tag)):
            continue
        path = f"/boot/{name}"
        if (tag not in found or prefix == "vmlinuz-") and _is_file(files, path):
            found[tag] = path
    for top in ("/usr/lib/modules", "/lib/modules"):
        for version in _names(files, top, problems):
            path = f"{top}/{version}/vmlinuz"
            if version not in found and _VERSION.match(version) and _is_file(files, path):
                found[version] = path
    return found


def _initrd_path(files: GuestFiles, version: str) -> str | None:
    for name in (
        f"initrd.img-{version}",
        f"initramfs-{version}.img",
        f"initrd-{version}",
        f"initrd-{version}.img",
    ):
        if _is_file(files, f"/boot/{name}"):
            return f"/boot/{name}"
    for top in ("/usr/lib/modules", "/lib/modules"):
        if _is_file(files, f"{top}/{version}/initrd"):
            return f"{top}/{version}/initrd"
    return None


def _read_initrd(
    files: GuestFiles, path: str, version: str, max_unpacked: int
) -> tuple[InitrdInfo, int]:
    """The initrd's facts and the bytes it unpacked to."""
    try:
        fs, ino, resolved = files.locate(path)
        size = fs.stat_ino(ino).size
        contents = read_initrd(
            GuestFileDevice(fs, ino, size), keep=INITRD_UDEV_RULES, max_unpacked=max_unpacked
        )
    except ImageportError as exc:
        spent = max_unpacked if isinstance(exc, LimitExceededError) else 0
        return InitrdInfo(path, 0, False, str(exc), frozenset(), 0, (), frozenset(), (), ()), spent
    mine = contents.modules_by_version.get(version, frozenset())
    builtin: frozenset[str] = frozenset()
    for kept_path, kept in contents.kept.items():
        if kept_path.endswith(f"/{version}/modules.builtin"):
            builtin = parse_modules_builtin(kept.data.decode("utf-8", "replace"))
    rules = tuple(
        k
        for p, k in sorted(contents.kept.items())
        if p.startswith("etc/udev/rules.d/") and _is_net_rules_name(p.rsplit("/")[-1])
    )
    count = sum(len(m) for m in contents.modules_by_version.values())
    return InitrdInfo(
        resolved,
        size,
        True,
        None,
        mine,
        count,
        contents.kernel_versions,
        builtin,
        rules,
        contents.problems,
    ), contents.unpacked_bytes


def _is_net_rules_name(name: str) -> bool:
    return bool(_PERSISTENT_NET.search(name)) and "generator" not in name


def _builtin(
    files: GuestFiles, version: str, problems: list[str]
) -> tuple[frozenset[str], str | None, str | None, dict[str, str]]:
    """:data:`BOOT_DRIVERS` built in, the config and modules.builtin paths read, the config."""
    config: dict[str, str] = {}
    config_path = None
    for path in (f"/boot/config-{version}", f"/lib/modules/{version}/config"):
        if _exists(files, path):
            text = _text(files, path, problems)
            if text is not None:
                config, config_path = parse_kernel_config(text), path
                break
    names = {d for d, sym in BOOT_DRIVERS.items() if config.get(sym) == "y"}
    builtin_path = None
    path = f"/lib/modules/{version}/modules.builtin"
    if _exists(files, path):
        text = _text(files, path, problems)
        if text is not None:
            builtin_path = path
            names |= parse_modules_builtin(text) & set(BOOT_DRIVERS)
    return frozenset(names), config_path, builtin_path, config


def _on_disk(files: GuestFiles, version: str, problems: list[str]) -> frozenset[str]:
    found = set()
    for sub in _MODULE_DIRS:
        for name in _names(files, f"/lib/modules/{version}/kernel/{sub}", problems):
            mod = module_name(name)
            if mod in BOOT_DRIVERS and ".ko" in name:
                found.add(mod)
    return frozenset(found)


def _xen_pv_only(version: str, config: dict[str, str]) -> tuple[bool, str]:
    """Whether the kernel is a classic Xen kernel that cannot boot as an HVM/KVM guest."""
    for sym in _XEN_PV_SYMBOLS:
        if config.get(sym) == "y":
            return True, f"its config sets {sym}=y (a classic Xen PV kernel)"
    if re.search(r"xen(?:u)?$", version, re.IGNORECASE):
        return True, f"its flavour is Xen ({version}: kernel-xen, which runs only as Xen PV)"
    return False, ""


def _grub_saved_entry(files: GuestFiles, problems: list[str]) -> tuple[str, str] | None:
    for path in ("/boot/grub2/grubenv", "/boot/grub/grubenv"):
        if not _exists(files, path):
            continue
        text = _text(files, path, problems) or ""
        for line in text.splitlines()[:200]:
            if line.startswith("saved_entry=") and line[12:].strip():
                return path, line[12:].strip()
    return None


def _choose_default(
    files: GuestFiles, kernels: list[Kernel], problems: list[str]
) -> tuple[Kernel | None, str]:
    if not kernels:
        return None, "no kernel found"
    saved = _grub_saved_entry(files, problems)
    if saved is not None:
        path, entry = saved
        named = [k for k in kernels if k.version in entry]
        if named:
            best = max(named, key=lambda k: len(k.version))
            return best, f"{path}: saved_entry={entry}"
    normal = [k for k in kernels if not k.rescue] or kernels
    return normal[0], "the newest version, which GRUB_DEFAULT=0 boots"


def read_kernels(guest: GuestFacts) -> KernelFacts:
    """The installed kernels with their initrds and built-in drivers (a :meth:`derive` reader)."""
    if guest.layout.root is None:
        return KernelFacts((), None, "no root filesystem", None, ())
    files = guest.files
    problems: list[str] = []
    images = _boot_kernels(files, problems)
    versions = sorted(images, key=version_key, reverse=True)
    if len(versions) > MAX_KERNELS:
        problems.append(f"{len(versions)} kernels found; only the newest {MAX_KERNELS} are read")
        versions = versions[:MAX_KERNELS]
    bare: list[Kernel] = []
    initrds: dict[str, str | None] = {}
    for version in versions:
        kproblems: list[str] = []
        builtin, config_path, builtin_path, config = _builtin(files, version, kproblems)
        xen, why = _xen_pv_only(version, config)
        initrds[version] = _initrd_path(files, version)
        bare.append(
            Kernel(
                version,
                images[version],
                None,
                config_path,
                builtin_path,
                builtin,
                _on_disk(files, version, kproblems),
                xen,
                why,
                tuple(kproblems),
            )
        )
    default, reason = _choose_default(files, bare, problems)
    order = sorted(bare, key=lambda k: k is not default)  # the default's initrd first
    read_budget = MAX_INITRDS_READ
    unpack_budget = MAX_UNPACKED_BYTES  # for all initrds together: a check stays bounded
    with_initrd: dict[str, InitrdInfo | None] = {}
    for kernel in order:
        path = initrds[kernel.version]
        if path is None:
            with_initrd[kernel.version] = None
        elif read_budget > 0 and unpack_budget > 0 and (kernel is default or not kernel.rescue):
            read_budget -= 1
            info, used = _read_initrd(files, path, kernel.version, unpack_budget)
            unpack_budget -= used
            with_initrd[kernel.version] = info
        else:
            with_initrd[kernel.version] = InitrdInfo(
                path, 0, False, None, frozenset(), 0, (), frozenset(), (), ()
            )
    kernels = tuple(_with(k, with_initrd[k.version]) for k in bare)
    chosen = next(
        (k for k in kernels if default is not None and k.version == default.version), None
    )
    return KernelFacts(kernels, chosen, reason, read_architecture(files), tuple(problems))


def _with(kernel: Kernel, initrd: InitrdInfo | None) -> Kernel:
    return Kernel(
        kernel.version,
        kernel.image,
        initrd,
        kernel.config_path,
        kernel.builtin_path,
        kernel.builtin,
        kernel.on_disk,
        kernel.xen_pv_only,
        kernel.xen_reason,
        kernel.problems,
    )


@dataclass(frozen=True, slots=True)
class NetRulesFile:
    """A udev rules file that pins interface names, on disk or inside an initrd."""

    path: str  #: guest path, or ``<initrd>:etc/udev/rules.d/...``
    line_no: int  #: the quoted line (1-based); 0 when the file has no active line
    line: str  #: a line binding a MAC address when there is one, else the first active line
    in_initrd: str | None  #: the initrd's guest path when the file is inside one


def quote_net_rules(path: str, text: str, in_initrd: str | None = None) -> NetRulesFile | None:
    """The file as a finding, or None when it has no active rule (empty or comments only)."""
    first: tuple[int, str] | None = None
    for no, raw in enumerate(text.splitlines()[:10_000], start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if first is None:
            first = (no, line[:300])
        if re.search(r"(ATTRS?|SYSFS)\{address\}\s*==", line):
            return NetRulesFile(path, no, line[:300], in_initrd)
    return NetRulesFile(path, first[0], first[1], in_initrd) if first else None


def read_net_rules(guest: GuestFacts) -> tuple[NetRulesFile, ...]:
    """udev persistent-net rules in ``/etc/udev/rules.d`` and inside the kernels' initrds."""
    if guest.layout.root is None:
        return ()
    files = guest.files
    found: list[NetRulesFile] = []
    problems: list[str] = []
    for name in _names(files, "/etc/udev/rules.d", problems):
        if not _is_net_rules_name(name):
            continue
        text = _text(files, f"/etc/udev/rules.d/{name}", problems)
        item = quote_net_rules(f"/etc/udev/rules.d/{name}", text or "")
        if item is not None:
            found.append(item)
    for kernel in guest.derive(read_kernels).kernels:
        if kernel.initrd is None:
            continue
        for kept in kernel.initrd.net_rules:
            item = quote_net_rules(
                f"{kernel.initrd.path}:{kept.path}",
                kept.data.decode("utf-8", "replace"),
                kernel.initrd.path,
            )
            if item is not None:
                found.append(item)
    return tuple(found)
