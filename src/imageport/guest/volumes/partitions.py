"""Partition tables: MBR (primary, extended and logical partitions) and GPT, read-only.

Layouts learned from the UEFI Specification 2.10, chapter 5 ("GUID Partition Table (GPT) Disk
Layout"), from the classic IBM PC MBR description, and from how Linux's ``block/partitions``
(``msdos.c``, ``efi.c``) and util-linux's ``sfdisk``/``blkid`` number and name partitions (read,
not copied).

* **MBR** (sector 0, signature ``55 AA`` at 510): boot code in bytes 0..439, the disk signature
  (u32) at 440, four 16-byte entries at 446. An entry of type 0x05, 0x0F or 0x85 is an
  *extended* partition: its first sector holds an EBR, whose first data entry is a logical
  partition (start relative to that EBR) and whose first extended entry links to the next EBR
  (start relative to the extended partition). Linux numbers primaries by slot (1-4) and
  logicals from 5 in chain order; blkid's PARTUUID is ``<signature>-<number>`` in hex.
* **GPT**: a protective MBR (one entry of type 0xEE), the header at LBA 1 (``EFI PART``, CRC32
  over ``header_size`` bytes with the CRC field zeroed), the entries array (CRC32 in the
  header), and a backup header at the last LBA whose entries lie just before it. Entries with
  a zero type GUID are unused; Linux numbers partitions by slot. GUIDs are stored mixed-endian.
* **Hybrid MBR**: an 0xEE entry next to real entries (old Macs, some installers): the GPT is
  used and the hybrid is noted, as Linux does.

Every number from the image is capped before it bounds a loop or sizes a read: EBR hops
(:data:`MAX_LOGICAL`, with a visited set against loops), GPT entry count
(:data:`MAX_GPT_ENTRIES`) and entry size (128..4096, a multiple of 8). Partitions reaching past
the end of the disk are clipped to it and named in ``problems``.
"""

from __future__ import annotations

import itertools
import struct
import uuid
import zlib
from dataclasses import dataclass, field

from imageport.errors import ImageportError
from imageport.guest.volumes.blockdev import BlockDevice, SliceDevice, read_exact_dev

__all__ = [
    "GptHeader",
    "MbrEntry",
    "Partition",
    "PartitionTable",
    "classify_boot_code",
    "read_partitions",
]

SECTOR = 512
MBR_SIGNATURE = b"\x55\xaa"
GPT_SIGNATURE = b"EFI PART"
#: Logical partitions (EBRs) followed in one extended partition; Linux's own cap is near this.
MAX_LOGICAL = 128
#: GPT entries read (the UEFI minimum array is 128 entries; tools rarely write more).
MAX_GPT_ENTRIES = 1024
MIN_GPT_ENTRY_SIZE = 128
MAX_GPT_ENTRY_SIZE = 4096
#: Sector sizes at which a GPT header is looked for.
GPT_SECTOR_SIZES = (512, 4096)

EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
PROTECTIVE_TYPE = 0xEE

#: Where GRUB's ``boot.img`` keeps its message strings, and where the LBA of ``core.img`` is.
_GRUB_STRINGS = slice(0x170, 0x1B8)
_GRUB_KERNEL_SECTOR = struct.Struct("<Q")
_GRUB_KERNEL_SECTOR_OFFSET = 0x5C
_BOOT_CODE_BYTES = 440

MBR_TYPE_NAMES: dict[int, str] = {
    0x01: "fat12",
    0x04: "fat16",
    0x05: "extended",
    0x06: "fat16",
    0x07: "ntfs",
    0x0B: "fat32",
    0x0C: "fat32",
    0x0E: "fat16",
    0x0F: "extended",
    0x11: "fat12-hidden",
    0x12: "compaq-diagnostics",
    0x14: "fat16-hidden",
    0x16: "fat16-hidden",
    0x17: "ntfs-hidden",
    0x1B: "fat32-hidden",
    0x1C: "fat32-hidden",
    0x1E: "fat16-hidden",
    0x27: "windows-recovery",
    0x42: "windows-ldm",
    0x82: "swap",
    0x83: "linux",
    0x85: "extended",
    0x8E: "linux-lvm",
    0x96: "iso9660",
    0xA5: "freebsd",
    0xA6: "openbsd",
    0xA8: "apple-ufs",
    0xA9: "netbsd",
    0xAF: "apple-hfs",
    0xDA: "non-fs-data",
    0xDE: "dell-utility",
    0xEE: "gpt-protective",
    0xEF: "efi-system",
    0xFB: "vmware-vmfs",
    0xFC: "vmware-vmkcore",
    0xFD: "linux-raid",
}

GPT_TYPE_NAMES: dict[str, str] = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "efi-system",
    "21686148-6449-6e6f-744e-656564454649": "bios-boot",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "linux",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "linux-lvm",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "swap",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "linux-raid",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "linux-root-x86-64",
    "44479540-f297-41b2-9af7-d131d5f0458a": "linux-root-x86",
    "b921b045-1df0-41c3-af44-4c6f280d3fae": "linux-root-arm64",
    "69dad710-2ce4-4e3c-b16c-21a1d49abed3": "linux-root-arm",
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "linux-home",
    "3b8f8425-20e0-4f3b-907f-1a25a76f98e8": "linux-srv",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "linux-extended-boot",
    "ca7d7ccb-63ed-4c53-861c-1742536059cc": "linux-luks",
    "7ffec5c9-2d00-49b7-8941-3ea10a5586b7": "linux-dm-crypt",
    "8da63339-0007-60c0-c436-083ac8230908": "linux-reserved",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "microsoft-basic-data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "microsoft-reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "windows-recovery",
    "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3": "windows-ldm-metadata",
    "af9b60a0-1431-4f62-bc68-3311714a69ad": "windows-ldm-data",
    "516e7cb4-6ecf-11d6-8ff8-00022d09712b": "freebsd",
    "516e7cb6-6ecf-11d6-8ff8-00022d09712b": "freebsd-ufs",
    "516e7cba-6ecf-11d6-8ff8-00022d09712b": "freebsd-zfs",
    "83bd6b9d-7f41-11dc-be0b-001560b84f0f": "freebsd-boot",
    "6a898cc3-1dd2-11b2-99a6-080020736631": "zfs",
    "48465300-0000-11aa-aa11-00306543ecac": "apple-hfs",
    "7c3457ef-0000-11aa-aa11-00306543ecac": "apple-apfs",
}

_NO_SIGNATURE = "has no EFI PART signature"
_ENTRY = struct.Struct("<B3sB3sII")  # status, CHS first, type, CHS last, LBA start, sectors
_GPT_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_GPT_ENTRY = struct.Struct("<16s16sQQQ72s")


@dataclass(frozen=True, slots=True)
class MbrEntry:
    """One 16-byte MBR/EBR entry."""

    status: int
    type: int
    lba_start: int
    sectors: int

    @classmethod
    def from_bytes(cls, data: bytes) -> MbrEntry:
        status, _chs1, ptype, _chs2, start, count = _ENTRY.unpack(data)
        return cls(status, ptype, start, count)

    @property
    def empty(self) -> bool:
        return self.type == 0 or self.sectors == 0


def mbr_entries(sector: bytes) -> tuple[MbrEntry, ...]:
    """The four entries of an MBR or EBR sector."""
    return tuple(MbrEntry.from_bytes(sector[446 + 16 * i : 462 + 16 * i]) for i in range(4))


@dataclass(frozen=True, slots=True)
class GptHeader:
    """The fields of a GPT header that this reader uses."""

    revision: int
    header_size: int
    header_crc: int
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_guid: str
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int

    @classmethod
    def from_bytes(cls, data: bytes) -> GptHeader:
        (_sig, rev, hsize, hcrc, _res, my, alt, first, last, guid, elba, count, esize, ecrc) = (
            _GPT_HEADER.unpack_from(data)
        )
        return cls(rev, hsize, hcrc, my, alt, first, last, _guid(guid), elba, count, esize, ecrc)


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition, MBR or GPT alike, with offsets in bytes."""

    number: int  #: as Linux numbers it: MBR 1-4 primary, 5+ logical; GPT slot + 1
    start: int
    size: int
    type: str  #: MBR: the type byte as two hex digits (``83``); GPT: the lowercase type GUID
    type_name: str  #: ``linux``, ``linux-lvm``, ``efi-system``, ``bios-boot``, ``unknown`` ...
    partuuid: str | None  #: as blkid prints PARTUUID
    name: str = ""  #: GPT partition name
    bootable: bool = False  #: MBR active flag, or GPT "legacy BIOS bootable" attribute
    logical: bool = False
    attributes: int = 0  #: GPT attribute bits
    disk: BlockDevice | None = field(default=None, repr=False, compare=False)

    def device(self) -> SliceDevice:
        """The partition's bytes as a device of its own."""
        if self.disk is None:
            raise ImageportError(f"partition {self.number} has no disk attached")
        return SliceDevice(self.disk, self.start, self.size, name=f"partition {self.number}")


@dataclass(frozen=True, slots=True)
class PartitionTable:
    """What the start (and end) of a disk says about its partitions."""

    scheme: str  #: ``gpt``, ``mbr`` or ``none``
    partitions: tuple[Partition, ...]
    sector_size: int = SECTOR
    disk_id: str | None = None  #: GPT disk GUID, or the MBR signature as 8 hex digits
    #: ``none``, ``grub``, ``syslinux`` or ``other``: what the first 440 bytes of sector 0 hold.
    mbr_boot_code: str = "none"
    #: For GRUB's boot.img, the LBA it loads core.img from (offset 0x5C).
    grub_core_lba: int | None = None
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def boot_code_present(self) -> bool:
        return self.mbr_boot_code != "none"

    def by_number(self, number: int) -> Partition | None:
        return next((p for p in self.partitions if p.number == number), None)


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def _read(dev: BlockDevice, offset: int, length: int, what: str) -> bytes | None:
    try:
        return read_exact_dev(dev, offset, length, what)
    except ImageportError:
        return None


def classify_boot_code(sector0: bytes) -> tuple[str, int | None]:
    """(``none``/``grub``/``syslinux``/``other``, GRUB core.img LBA) from sector 0's boot code."""
    code = sector0[:_BOOT_CODE_BYTES]
    if len(code) < _BOOT_CODE_BYTES or not any(code):
        return "none", None
    if b"GRUB " in code[_GRUB_STRINGS]:
        (lba,) = _GRUB_KERNEL_SECTOR.unpack_from(code, _GRUB_KERNEL_SECTOR_OFFSET)
        return "grub", lba
    if b"Operating system load error" in code or (
        b"Missing OS" in code and b"Multiple active partitions" in code
    ):
        return "syslinux", None
    return "other", None


class _Builder:
    """Collects partitions and problems while one table is read."""

    def __init__(self, dev: BlockDevice, sector_size: int) -> None:
        self.dev = dev
        self.sector_size = sector_size
        self.parts: list[Partition] = []
        self.notes: list[str] = []
        self.problems: list[str] = []

    def add(
        self,
        number: int,
        first_lba: int,
        sectors: int,
        *,
        type: str,
        type_name: str,
        partuuid: str | None,
        name: str = "",
        bootable: bool = False,
        logical: bool = False,
        attributes: int = 0,
    ) -> None:
        start = first_lba * self.sector_size
        size = sectors * self.sector_size
        if start >= self.dev.size:
            self.problems.append(
                f"partition {number} starts at byte {start}, beyond the end of the disk"
            )
            start, size = self.dev.size, 0
        elif start + size > self.dev.size:
            self.problems.append(
                f"partition {number} ends {start + size - self.dev.size} bytes beyond the end "
                "of the disk; clipped"
            )
            size = self.dev.size - start
        self.parts.append(
            Partition(
                number,
                start,
                size,
                type,
                type_name,
                partuuid,
                name,
                bootable,
                logical,
                attributes,
                disk=self.dev,
            )
        )

    def check_overlaps(self) -> None:
        data = sorted(
            (p for p in self.parts if p.type_name != "extended" and p.size), key=lambda p: p.start
        )
        for a, b in itertools.pairwise(data):
            if b.start < a.start + a.size:
                self.problems.append(f"partitions {a.number} and {b.number} overlap")


def _mbr_partition(
    b: _Builder, number: int, e: MbrEntry, lba: int, sig: int, *, logical: bool = False
) -> None:
    b.add(
        number,
        lba,
        e.sectors,
        type=f"{e.type:02x}",
        type_name=MBR_TYPE_NAMES.get(e.type, "unknown"),
        partuuid=f"{sig:08x}-{number:02x}",
        bootable=e.status == 0x80,
        logical=logical,
    )


def _walk_extended(b: _Builder, ext: MbrEntry, sig: int, next_number: int) -> int:
    """Add the logical partitions of one extended partition; return the next free number."""
    ext_end = ext.lba_start + ext.sectors
    ebr_lba = ext.lba_start
    seen: set[int] = set()
    while True:
        if ebr_lba in seen:
            b.problems.append(f"EBR chain loops back to sector {ebr_lba}; stopped")
            break
        if len(seen) >= MAX_LOGICAL:
            b.problems.append(f"more than {MAX_LOGICAL} logical partitions; the rest ignored")
            break
        seen.add(ebr_lba)
        sector = _read(b.dev, ebr_lba * SECTOR, SECTOR, "EBR")
        if sector is None or sector[510:512] != MBR_SIGNATURE:
            b.problems.append(f"EBR at sector {ebr_lba} is missing or has no 55AA signature")
            break
        entries = mbr_entries(sector)
        for i, e in enumerate(entries):
            if e.empty or e.type in EXTENDED_TYPES:
                continue
            start = ebr_lba + e.lba_start
            if i >= 2 and (start < ext.lba_start or start + e.sectors > ext_end):
                continue  # Linux ignores garbage in the 3rd and 4th EBR slots
            _mbr_partition(b, next_number, e, start, sig, logical=True)
            next_number += 1
        link = next((e for e in entries if not e.empty and e.type in EXTENDED_TYPES), None)
        if link is None:
            break
        ebr_lba = ext.lba_start + link.lba_start
    return next_number


def _read_mbr(b: _Builder, sector0: bytes) -> None:
    sig = int.from_bytes(sector0[440:444], "little")
    next_logical = 5
    for i, e in enumerate(mbr_entries(sector0)):
        if e.empty:
            continue
        _mbr_partition(b, i + 1, e, e.lba_start, sig)
        if e.type in EXTENDED_TYPES:
            next_logical = _walk_extended(b, e, sig, next_logical)


def _gpt_at(dev: BlockDevice, lba: int, ss: int) -> tuple[GptHeader, bytes] | str:
    """The header at ``lba`` and its entries array, or why they are not valid."""
    raw = _read(dev, lba * ss, ss, "GPT header")
    if raw is None:
        return "cannot be read"
    if raw[:8] != GPT_SIGNATURE:
        return _NO_SIGNATURE
    h = GptHeader.from_bytes(raw)
    if not _GPT_HEADER.size <= h.header_size <= ss:
        return f"has a header size of {h.header_size}"
    check = raw[:16] + b"\0\0\0\0" + raw[20 : h.header_size]
    if zlib.crc32(check) != h.header_crc:
        return "fails its CRC32 check"
    if h.my_lba != lba:
        return f"says it is at LBA {h.my_lba}, not {lba}"
    if not 0 < h.entry_count <= MAX_GPT_ENTRIES:
        return f"declares {h.entry_count} entries (cap {MAX_GPT_ENTRIES})"
    if not (MIN_GPT_ENTRY_SIZE <= h.entry_size <= MAX_GPT_ENTRY_SIZE and h.entry_size % 8 == 0):
        return f"declares an entry size of {h.entry_size}"
    last_lba = dev.size // ss - 1
    if not h.first_usable <= h.last_usable <= last_lba:
        return f"has usable LBAs {h.first_usable}..{h.last_usable} outside the disk"
    entries = _read(dev, h.entries_lba * ss, h.entry_count * h.entry_size, "GPT entries")
    if entries is None:
        return "points to an entries array beyond the end of the disk"
    if zlib.crc32(entries) != h.entries_crc:
        return "has an entries array that fails its CRC32 check"
    return h, entries


def _find_gpt(dev: BlockDevice, b: _Builder) -> tuple[GptHeader, bytes, int] | None:
    """The primary GPT (or the backup if the primary is damaged), noting what was found."""
    failures: list[str] = []
    for ss in GPT_SECTOR_SIZES:
        if dev.size < 3 * ss:
            continue
        primary = _gpt_at(dev, 1, ss)
        if isinstance(primary, tuple):
            backup = _gpt_at(dev, primary[0].alternate_lba, ss)
            if isinstance(backup, str):
                b.notes.append(f"backup GPT header {backup}")
            return primary[0], primary[1], ss
        backup = _gpt_at(dev, dev.size // ss - 1, ss)
        if isinstance(backup, tuple):
            b.problems.append(f"primary GPT header {primary}; backup used")
            return backup[0], backup[1], ss
        if primary != _NO_SIGNATURE or backup != _NO_SIGNATURE:
            failures.append(f"{ss}-byte sectors: primary header {primary}, backup {backup}")
    if failures:
        b.problems.append("no valid GPT (" + "; ".join(failures) + ")")
    return None


def _read_gpt(b: _Builder, header: GptHeader, entries: bytes) -> None:
    last_lba = b.dev.size // b.sector_size - 1
    for i in range(header.entry_count):
        raw = entries[i * header.entry_size : i * header.entry_size + _GPT_ENTRY.size]
        type_raw, uniq, first, last, attrs, name_raw = _GPT_ENTRY.unpack(raw)
        if not any(type_raw):
            continue
        number = i + 1
        if last < first:
            b.problems.append(f"GPT partition {number} ends (LBA {last}) before it starts")
            continue
        if first < header.first_usable or last > min(header.last_usable, last_lba):
            b.problems.append(f"GPT partition {number} lies outside the usable LBAs")
        type_guid = _guid(type_raw)
        name = name_raw.decode("utf-16-le", "replace").split("\0", 1)[0]
        b.add(
            number,
            first,
            last - first + 1,
            type=type_guid,
            type_name=GPT_TYPE_NAMES.get(type_guid, "unknown"),
            partuuid=_guid(uniq),
            name=name,
            bootable=bool(attrs & 4),
            attributes=attrs,
        )


def _valid_mbr(sector0: bytes) -> bool:
    if sector0[510:512] != MBR_SIGNATURE:
        return False
    return all(e.status in (0, 0x80) for e in mbr_entries(sector0) if not e.empty)


def read_partitions(dev: BlockDevice) -> PartitionTable:
    """Read the partition table of ``dev``; a disk without one gives scheme ``none``.

    Never raises for bad tables: what could not be used is named in ``problems``.
    """
    sector0 = _read(dev, 0, SECTOR, "MBR") or b""
    boot_code, grub_lba = classify_boot_code(sector0)
    b = _Builder(dev, SECTOR)
    mbr_ok = len(sector0) == SECTOR and _valid_mbr(sector0)
    entries = [e for e in mbr_entries(sector0) if not e.empty] if mbr_ok else []
    protective = any(e.type == PROTECTIVE_TYPE for e in entries)
    scheme, disk_id = "none", None

    if protective or not mbr_ok:
        if protective and len(entries) > 1:
            b.notes.append("hybrid MBR: GPT used, the MBR's other entries ignored")
        found = _find_gpt(dev, b)
        if found is not None:
            header, gpt_entries, b.sector_size = found
            if not protective:
                b.notes.append("GPT without a protective MBR")
            scheme, disk_id = "gpt", header.disk_guid
            _read_gpt(b, header, gpt_entries)
        elif protective and len(entries) > 1:
            b.problems.append("hybrid MBR without a valid GPT: the MBR entries used")
            protective = False
        elif protective:
            b.problems.append("protective MBR but no valid GPT")
    if mbr_ok and not protective and scheme == "none":
        scheme, disk_id = "mbr", sector0[440:444][::-1].hex()
        if isinstance(_gpt_at(dev, 1, SECTOR), tuple):
            b.notes.append("a GPT header is present but the MBR has no 0xEE entry: MBR used")
        _read_mbr(b, sector0)
    elif not mbr_ok and sector0[510:512] == MBR_SIGNATURE and scheme == "none":
        b.notes.append("sector 0 has the 55AA signature but no valid partition entries")
    b.check_overlaps()
    return PartitionTable(
        scheme=scheme,
        partitions=tuple(sorted(b.parts, key=lambda p: p.number)),
        sector_size=b.sector_size,
        disk_id=disk_id,
        mbr_boot_code=boot_code,
        grub_core_lba=grub_lba,
        notes=tuple(b.notes),
        problems=tuple(b.problems),
    )
