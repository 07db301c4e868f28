"""How the guest boots: BIOS and/or UEFI, and the kernel command lines its boot loader passes.

Read with ``facts.guest.derive(read_boot)``. What makes each mode work was learned from:

* **BIOS**, GRUB 2 (``grub-mkimage -O i386-pc`` and ``grub-bios-setup`` output inspected, and
  the GRUB manual's "BIOS installation"): sector 0 holds ``boot.img`` (its strings
  ``GRUB \\0Geom\\0Hard Disk\\0Read\\0 Error`` near 0x180, the LBA of ``core.img`` as a u64 at
  0x5C). ``core.img`` begins with ``diskboot.img``, whose sector carries the strings
  ``loading``, ``Geom`` and ``Read`` and whose code starts ``52 56 BE`` (push dx; push si;
  mov si). On GPT, ``grub-install`` embeds ``core.img`` in the BIOS boot partition; on MBR in
  the gap after sector 0 (before the first partition).
* **BIOS**, GRUB Legacy: ``stage1`` carries version 3.2 at 0x3E and the sector of stage 1.5 or
  stage 2 as a u32 at 0x44 (the GRUB Legacy manual, "Stage1 and Stage2 on the disk").
* **BIOS**, SYSLINUX's and other generic MBRs chain to the *active* partition's boot sector,
  which must end in ``55 AA``.
* **UEFI**, the UEFI Specification 2.10 §3.5 ("Boot Option Defaults", the removable-media path
  ``\\EFI\\BOOT\\BOOT{X64,AA64}.EFI``) and §13.3 (the EFI system partition is FAT): an ESP
  (GPT type C12A7328-..., MBR type 0xEF) whose FAT holds that fallback loader, or a
  distribution's ``grubx64.efi``/``shimx64.efi`` (booted through an NVRAM entry). A loader is
  a PE image (starts with ``MZ``).

Kernel command lines come from the configuration files in :mod:`imageport.guest.boot.bootloader`.
Reads are bounded: configuration files up to :data:`MAX_CONFIG_BYTES`, at most
:data:`MAX_DIR_SCAN` names per directory looked at, :data:`MAX_BLS_ENTRIES` BLS entries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.boot.bootloader import (
    KernelLine,
    LoaderConfig,
    ShellSetting,
    parse_bls_entry,
    parse_grub_cfg,
    parse_grubenv,
    parse_menu_lst,
    parse_shell_settings,
    parse_syslinux_cfg,
)
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import Filesystem, FileType
from imageport.guest.fs.detect import open_filesystem
from imageport.guest.volumes.blockdev import BlockDevice
from imageport.guest.volumes.discover import Volume
from imageport.guest.volumes.partitions import SECTOR, Partition, PartitionTable

#: Bytes of one boot loader configuration file read.
MAX_CONFIG_BYTES = 1 << 20
#: Names looked at in one directory (EFI/, /boot, loader/entries).
MAX_DIR_SCAN = 1000
#: Boot Loader Specification entries read.
MAX_BLS_ENTRIES = 256
#: Directories under the ESP's EFI/ examined.
MAX_EFI_VENDORS = 64
#: The MBR gap: GRUB embeds core.img in sectors 1..2047 before the first partition.
MBR_GAP_END = 2048

_GRUB_LEGACY_VERSION = b"\x03\x02"
_GRUB_LEGACY_VERSION_OFFSET = 0x3E
_GRUB_LEGACY_STAGE2 = struct.Struct("<I")
_GRUB_LEGACY_STAGE2_OFFSET = 0x44
_DISKBOOT_START = b"RV\xbe"
_DISKBOOT_STRINGS = (b"loading\0", b"Geom\0", b"Read\0")
_PE_MAGIC = b"MZ"
_FALLBACK_LOADERS = ("BOOTX64.EFI", "BOOTAA64.EFI")
_VENDOR_LOADERS = frozenset({"grubx64.efi", "shimx64.efi", "grubaa64.efi", "shimaa64.efi"})

GRUB_CFG_PATHS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
GRUBENV_PATHS = ("/boot/grub2/grubenv", "/boot/grub/grubenv")
SYSLINUX_PATHS = (
    "/boot/extlinux/extlinux.conf",
    "/boot/extlinux.conf",
    "/extlinux.conf",
    "/boot/syslinux/syslinux.cfg",
    "/boot/syslinux.cfg",
    "/syslinux/syslinux.cfg",
)
MENU_LST_PATHS = ("/boot/grub/menu.lst", "/boot/grub/grub.conf")
DEFAULT_GRUB = "/etc/default/grub"
BLS_DIR = "/boot/loader/entries"
KERNEL_PREFIXES = ("vmlinuz", "vmlinux", "bzImage", "zImage", "Image", "uImage", "kernel-")


@dataclass(frozen=True, slots=True)
class ModeEvidence:
    """Whether the image boots in one firmware mode, and what was found either way."""

    supported: bool
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BootFacts:
    """The guest's boot modes, boot loader configuration and kernel command lines."""

    bios: ModeEvidence
    uefi: ModeEvidence
    #: Every configuration file with kernel entries, in the order the loader would prefer.
    configs: tuple[LoaderConfig, ...]
    #: The entry booted by default, from the configuration the installed loader reads.
    default: KernelLine | None
    #: ``GRUB_CMDLINE_LINUX`` and ``GRUB_CMDLINE_LINUX_DEFAULT`` from /etc/default/grub.
    grub_defaults: tuple[ShellSetting, ...]
    #: Whether a kernel file lies in the guest's /boot (as mounted).
    kernel_in_boot: bool
    #: Configuration paths looked at (for "nothing found" evidence).
    looked_at: tuple[str, ...]
    problems: tuple[str, ...]
    #: boot loader configuration files that exist but cannot be read (``path: why``): a
    #: dangling symbolic link, a loop, a directory, too large; the loader fails on them too
    unreadable: tuple[str, ...] = ()

    @property
    def modes(self) -> tuple[str, ...]:
        """``("bios", "uefi")``, one of them, or ``()``."""
        return tuple(m for m, e in (("bios", self.bios), ("uefi", self.uefi)) if e.supported)


def _read_sector(disk: BlockDevice, lba: int) -> bytes | None:
    offset = lba * SECTOR
    if lba < 0 or offset + SECTOR > disk.size:
        return None
    try:
        data = disk.read(offset, SECTOR)
    except ImageportError:
        return None
    return data if len(data) == SECTOR else None


def is_grub_core(sector: bytes) -> bool:
    """Whether ``sector`` is the first sector of GRUB 2's core.img (its diskboot.img)."""
    return sector.startswith(_DISKBOOT_START) and all(s in sector for s in _DISKBOOT_STRINGS)


def _containing(table: PartitionTable, lba: int) -> Partition | None:
    offset = lba * SECTOR
    return next((p for p in table.partitions if p.start <= offset < p.start + p.size), None)


def _grub2_bios(table: PartitionTable, disk: BlockDevice) -> ModeEvidence:
    lba = table.grub_core_lba or 0
    sector = _read_sector(disk, lba) if lba else None
    part = _containing(table, lba)
    where = f"partition {part.number} ({part.type_name})" if part else "no partition"
    if table.scheme == "mbr" and part is None and 0 < lba < MBR_GAP_END:
        where = "the MBR gap"
    head = f"sector 0: GRUB boot.img, core.img at LBA {lba} in {where}"
    if sector is None or not is_grub_core(sector):
        return ModeEvidence(False, (f"{head}, but that sector does not hold GRUB's core.img",))
    if table.scheme == "gpt" and (part is None or part.type_name != "bios-boot"):
        return ModeEvidence(
            True,
            (
                f"{head} (not a BIOS boot partition: GRUB was installed "
                "with block lists, which break when files move)",
            ),
        )
    return ModeEvidence(True, (head,))


def _chainload_bios(kind: str, table: PartitionTable, disk: BlockDevice) -> ModeEvidence:
    active = [p for p in table.partitions if p.bootable]
    name = "SYSLINUX MBR" if kind == "syslinux" else "MBR boot code (not GRUB or SYSLINUX)"
    if not active:
        return ModeEvidence(False, (f"sector 0: {name}, but no partition is marked active",))
    part = active[0]
    vbr = _read_sector(disk, part.start // SECTOR)
    if vbr is None or vbr[510:512] != b"\x55\xaa":
        return ModeEvidence(
            False,
            (
                f"sector 0: {name}; active partition {part.number} has no "
                "boot sector (no 55AA signature)",
            ),
        )
    return ModeEvidence(
        True, (f"sector 0: {name}, chain-loads active partition {part.number}'s boot sector",)
    )


def bios_evidence(table: PartitionTable, disk: BlockDevice) -> ModeEvidence:
    """Whether sector 0 and what it loads make the disk boot under BIOS."""
    sector0 = _read_sector(disk, 0)
    if sector0 is None or table.mbr_boot_code == "none":
        return ModeEvidence(False, ("sector 0: no boot code",))
    if (
        sector0[_GRUB_LEGACY_VERSION_OFFSET : _GRUB_LEGACY_VERSION_OFFSET + 2]
        == _GRUB_LEGACY_VERSION
        and table.mbr_boot_code == "grub"
    ):
        (lba,) = _GRUB_LEGACY_STAGE2.unpack_from(sector0, _GRUB_LEGACY_STAGE2_OFFSET)
        stage = _read_sector(disk, lba) if lba else None
        if stage is None or not any(stage):
            return ModeEvidence(
                False,
                (
                    f"sector 0: GRUB Legacy stage1, but its stage 2 sector "
                    f"(LBA {lba}) is empty or beyond the disk",
                ),
            )
        return ModeEvidence(True, (f"sector 0: GRUB Legacy stage1, stage 1.5/2 at LBA {lba}",))
    if table.mbr_boot_code == "grub":
        return _grub2_bios(table, disk)
    return _chainload_bios(table.mbr_boot_code, table, disk)


def _is_esp(volume: Volume) -> bool:
    part = volume.partition
    return part is not None and (part.type_name == "efi-system" or part.type == "ef")


def _find_ci(fs: Filesystem, directory: str, wanted: set[str]) -> list[tuple[str, FileType]]:
    """Names in ``directory`` whose case-folded name is in ``wanted`` (capped scan)."""
    found = []
    for i, entry in enumerate(fs.listdir(directory)):
        if i >= MAX_DIR_SCAN:
            break
        if entry.name.casefold() in wanted:
            found.append((entry.name, entry.type or fs.stat(f"{directory}/{entry.name}").type))
    return found


def _is_pe(fs: Filesystem, path: str) -> bool:
    try:
        ino = fs.resolve(path)
        return fs.read_ino(ino, 0, 2) == _PE_MAGIC
    except ImageportError:
        return False


@dataclass(frozen=True, slots=True)
class _Esp:
    """One EFI system partition opened: its label for the report and its filesystem."""

    label: str  #: ``ESP part2``
    prefix: str  #: where the guest mounts it (``/boot/efi``), "" when it is not mounted
    fs: Filesystem


def _open_esps(guest: GuestFacts, problems: list[str]) -> tuple[list[_Esp], list[str]]:
    esps: list[_Esp] = []
    notes: list[str] = []
    mounted = {id(m.volume): m for m in guest.layout.mounts}
    for volume in guest.layout.storage.volumes:
        if not _is_esp(volume):
            continue
        label = f"ESP {volume.name}"
        mount = mounted.get(id(volume))
        try:
            fs = (
                mount.fs
                if mount
                else (
                    open_filesystem(volume.device, volume.signature) if volume.signature else None
                )
            )
        except ImageportError as exc:
            problems.append(f"{label} cannot be read: {exc}")
            fs = None
        if fs is None or fs.fs_type != "vfat":
            notes.append(f"{label}: holds {volume.kind}, not a FAT filesystem")
            continue
        esps.append(_Esp(label, mount.mountpoint if mount else "", fs))
    return esps, notes


def _esp_loaders(esp: _Esp) -> tuple[list[str], list[str]]:
    """(loaders found, grub.cfg paths in EFI/*/) on one ESP."""
    loaders: list[str] = []
    configs: list[str] = []
    efi = _find_ci(esp.fs, "/", {"efi"})
    if not efi:
        return loaders, configs
    top = "/" + efi[0][0]
    vendors = [name for name, kind in _find_ci_all(esp.fs, top) if kind is FileType.DIRECTORY]
    for vendor in vendors[:MAX_EFI_VENDORS]:
        wanted = {"grub.cfg", *_VENDOR_LOADERS}
        if vendor.casefold() == "boot":
            wanted |= {n.casefold() for n in _FALLBACK_LOADERS}
        for name, kind in _find_ci(esp.fs, f"{top}/{vendor}", wanted):
            path = f"{top}/{vendor}/{name}"
            if kind is not FileType.REGULAR:
                continue
            if name.casefold() == "grub.cfg":
                configs.append(path)
            elif _is_pe(esp.fs, path):
                loaders.append(path.lstrip("/"))
            else:
                loaders.append(path.lstrip("/") + " (not a PE image)")
    return loaders, configs


def _find_ci_all(fs: Filesystem, directory: str) -> list[tuple[str, FileType]]:
    out = []
    for i, entry in enumerate(fs.listdir(directory)):
        if i >= MAX_DIR_SCAN:
            break
        out.append((entry.name, entry.type or fs.stat(f"{directory}/{entry.name}").type))
    return out


def uefi_evidence(
    esps: list[_Esp], notes: list[str], problems: list[str]
) -> tuple[ModeEvidence, list[tuple[_Esp, str]]]:
    """Whether an ESP holds a UEFI loader, and the grub.cfg files found on the ESPs."""
    evidence = list(notes)
    configs: list[tuple[_Esp, str]] = []
    supported = False
    for esp in esps:
        try:
            loaders, cfgs = _esp_loaders(esp)
        except ImageportError as exc:
            problems.append(f"{esp.label} cannot be read: {exc}")
            continue
        configs.extend((esp, c) for c in cfgs)
        good = [x for x in loaders if not x.endswith(")")]
        if good:
            supported = True
            fallback = any(x.split("/")[-1].upper() in _FALLBACK_LOADERS for x in good)
            tail = "" if fallback else " (no EFI/BOOT fallback loader: needs an NVRAM entry)"
            evidence.append(f"{esp.label}: {', '.join(good)}{tail}")
        else:
            evidence.append(
                f"{esp.label}: no UEFI boot loader in EFI/ "
                f"({', '.join(loaders) or 'no BOOTX64.EFI, grubx64.efi or shim'})"
            )
    if not esps and not notes:
        evidence.append("no EFI system partition")
    return ModeEvidence(supported, tuple(evidence)), configs


def _read_text(
    files: GuestFiles, path: str, problems: list[str], unreadable: list[str] | None = None
) -> str | None:
    """``path``'s text, None when absent; one that exists but cannot be read is a problem
    (and goes to ``unreadable`` too, for the loader configuration itself)."""
    try:
        return files.read_text(path, MAX_CONFIG_BYTES)
    except ImageportError as exc:
        problems.append(f"{path} cannot be read: {exc}")
        if unreadable is not None:
            unreadable.append(f"{path}: {exc}")
        return None


def _bls_configs(
    files: GuestFiles, kernelopts: str | None, saved: str | None, problems: list[str]
) -> LoaderConfig | None:
    try:
        names = sorted(
            e.name
            for i, e in enumerate(files.listdir(BLS_DIR))
            if i < MAX_DIR_SCAN and e.name.endswith(".conf")
        )
    except ImageportError:
        return None
    entries: list[KernelLine] = []
    default: KernelLine | None = None
    # blscfg sorts entries newest version first; names end in the version, so reverse order
    for name in reversed(names[-MAX_BLS_ENTRIES:]):
        path = f"{BLS_DIR}/{name}"
        text = _read_text(files, path, problems)
        entry = parse_bls_entry(text, path, kernelopts) if text else None
        if entry is None:
            continue
        entries.append(entry)
        if saved and name.removesuffix(".conf") == saved:
            default = entry
    if not entries:
        return None
    return LoaderConfig(BLS_DIR, "bls", tuple(entries), default or entries[0])


def _kernel_in_boot(files: GuestFiles) -> bool:
    try:
        listing = files.listdir("/boot")
    except ImageportError:
        return False
    return any(e.name.startswith(KERNEL_PREFIXES) for e in listing[:MAX_DIR_SCAN])


def _loader_configs(
    guest: GuestFacts,
    esp_cfgs: list[tuple[_Esp, str]],
    sector0_kind: str,
    looked: list[str],
    problems: list[str],
    unreadable: list[str],
) -> list[LoaderConfig]:
    files = guest.files
    env: dict[str, str] = {}
    for path in GRUBENV_PATHS:
        text = _read_text(files, path, problems)
        if text:
            env = parse_grubenv(text)
            break
    saved = env.get("saved_entry")
    grub: list[LoaderConfig] = []
    for path in GRUB_CFG_PATHS:
        looked.append(path)
        text = _read_text(files, path, problems, unreadable)
        if text is not None:
            grub.append(parse_grub_cfg(text, path, saved))
    for esp, path in esp_cfgs:
        shown = f"{esp.prefix}{path}" if esp.prefix else f"{esp.label}:{path}"
        if esp.prefix and shown in GRUB_CFG_PATHS:
            continue
        try:
            text = esp.fs.read_file(path, MAX_CONFIG_BYTES).decode("utf-8", "replace")
        except ImageportError as exc:
            problems.append(f"{shown} cannot be read: {exc}")
            unreadable.append(f"{shown}: {exc}")
            continue
        grub.append(parse_grub_cfg(text, shown, saved))
    looked.append(BLS_DIR)
    bls = _bls_configs(files, env.get("kernelopts"), saved, problems)
    others: list[LoaderConfig] = []
    for paths, parse in ((MENU_LST_PATHS, parse_menu_lst), (SYSLINUX_PATHS, parse_syslinux_cfg)):
        for path in paths:
            looked.append(path)
            text = _read_text(files, path, problems, unreadable)
            if text is not None:
                others.append(parse(text, path))
                break
    grub_entries = [c for c in grub if c.entries]
    ordered = [*grub_entries, *([bls] if bls else []), *others]
    if sector0_kind == "syslinux":
        ordered.sort(key=lambda c: c.kind != "syslinux")
    return [c for c in ordered if c.entries]


def read_boot(guest: GuestFacts) -> BootFacts:
    """The boot facts of ``guest`` (for ``guest.derive``). Never raises ImageportError."""
    problems: list[str] = []
    table = guest.layout.storage.table
    disk = _disk_of(guest)
    bios = (
        bios_evidence(table, disk)
        if disk is not None
        else ModeEvidence(False, ("the disk itself could not be read",))
    )
    esps, notes = _open_esps(guest, problems)
    uefi, esp_cfgs = uefi_evidence(esps, notes, problems)
    looked: list[str] = []
    configs: list[LoaderConfig] = []
    defaults: tuple[ShellSetting, ...] = ()
    kernel_in_boot = False
    unreadable: list[str] = []
    if guest.layout.root is not None:
        configs = _loader_configs(
            guest, esp_cfgs, table.mbr_boot_code, looked, problems, unreadable
        )
        text = _read_text(guest.files, DEFAULT_GRUB, problems)
        if text:
            defaults = parse_shell_settings(
                text, DEFAULT_GRUB, ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
            )
        kernel_in_boot = _kernel_in_boot(guest.files)
    default = configs[0].default if configs else None
    return BootFacts(
        bios,
        uefi,
        tuple(configs),
        default,
        defaults,
        kernel_in_boot,
        tuple(looked),
        tuple(problems),
        tuple(unreadable),
    )


def _disk_of(guest: GuestFacts) -> BlockDevice | None:
    """The whole disk: what the partitions were cut from, or the bare-filesystem volume."""
    storage = guest.layout.storage
    for part in storage.table.partitions:
        if part.disk is not None:
            return part.disk
    return next((v.device for v in storage.volumes if v.name == "disk"), None)
