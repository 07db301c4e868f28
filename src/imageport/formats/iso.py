"""Optical-disc file systems: ISO 9660 (with El Torito and Joliet) and UDF. Named, never accepted.

An ISO is a file system image, not a virtual-disk container; the platform does not import it as
a system disk (IMG-FORMAT names it). We still parse enough to say precisely what it is.

Layout, learned from ECMA-119 (ISO 9660), the El Torito bootable CD specification 1.0 and
ECMA-167 / OSTA UDF 2.60 (volume recognition):

* The first 16 sectors of 2048 bytes (32 KiB) are the *system area*, free for anything: a hybrid
  ISO puts an MBR (and maybe a GPT) there so the same file boots from a USB stick.
* From sector 16 on comes a sequence of 2048-byte *volume descriptors*, each starting with a type
  byte, the standard identifier ``CD001`` and version 1, ended by a terminator (type 255):
  type 0 is a boot record (``EL TORITO SPECIFICATION`` names the boot catalogue's sector), type 1
  the primary volume descriptor (PVD: volume space size as a both-endian u32 at 80, logical block
  size as a both-endian u16 at 128), type 2 a supplementary one (Joliet when its escape sequences
  at 88 are ``%/@``, ``%/C`` or ``%/E``).
* UDF uses the same sector-16 area for its *volume recognition sequence*: ``BEA01``, then
  ``NSR02`` (UDF up to 2.00) or ``NSR03`` (2.01 and later), then ``TEA01``. A "UDF bridge" disc
  has both ISO 9660 descriptors and ``NSR0x``; it is named ``udf`` (variant ``iso9660 bridge``) so
  that only one format spec matches it.

Virtual size: ``volume space size * logical block size`` from the PVD (what the file system
claims, which for a hybrid ISO is usually the file size; qemu-img reads the file as raw and
reports the file size instead). A UDF-only disc reports no virtual size (it would need the
anchor volume descriptor pointer and partition maps, which a named-only format does not need).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from imageport import limits
from imageport.errors import CorruptImageError, LimitExceededError
from imageport.formats.base import Container, FormatSpec, ProbeWindow, refused_spec
from imageport.formats.raw import partition_table
from imageport.source import ByteSource, read_exact

SECTOR = 2048
FIRST_DESCRIPTOR = 16 * SECTOR
#: Volume descriptors walked before giving up on a terminator (real discs have a handful).
MAX_DESCRIPTORS = 64
#: Boot catalogue entries read (one 2048-byte sector holds 64 entries of 32 bytes).
CATALOG_ENTRIES = SECTOR // 32

_ISO_ID = b"CD001"
_EL_TORITO = b"EL TORITO SPECIFICATION"
_JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")
_UDF_NSR = (b"NSR02", b"NSR03")
_VRS_IDS = (b"BEA01", b"NSR02", b"NSR03", b"TEA01", b"CD001", b"BOOT2", b"CDW02")

_PLATFORMS = {0x00: "x86 BIOS", 0x01: "PowerPC", 0x02: "Mac", 0xEF: "UEFI"}

# Descriptor offsets probed by ``matches``: sectors 16, 17 and 18.
_MATCH_SECTORS = (16, 17, 18)


@dataclass(frozen=True, slots=True)
class VolumeDescriptorHeader:
    """The 7 bytes that open every ISO 9660 volume descriptor: type, ``CD001``, version."""

    type: int
    identifier: bytes
    version: int

    LAYOUT = struct.Struct("<B5sB")

    @classmethod
    def from_bytes(cls, data: bytes) -> VolumeDescriptorHeader:
        vtype, ident, version = cls.LAYOUT.unpack_from(data, 0)
        return cls(type=vtype, identifier=ident, version=version)

    @property
    def valid(self) -> bool:
        return self.identifier == _ISO_ID and self.version in (1, 2)


@dataclass(frozen=True, slots=True)
class PrimaryVolumeDescriptor:
    """The PVD fields we report (ECMA-119 8.4); both-endian numbers must agree."""

    system_id: str
    volume_id: str
    volume_space_size: int
    logical_block_size: int

    #: Both-endian fields: a little-endian copy immediately followed by a big-endian one.
    SIZE_LE = struct.Struct("<I")  # volume space size at 80 (big-endian copy at 84)
    SIZE_BE = struct.Struct(">I")
    BLOCK_LE = struct.Struct("<H")  # logical block size at 128 (big-endian copy at 130)
    BLOCK_BE = struct.Struct(">H")

    @classmethod
    def from_bytes(cls, data: bytes) -> PrimaryVolumeDescriptor:
        (size_le,) = cls.SIZE_LE.unpack_from(data, 80)
        (size_be,) = cls.SIZE_BE.unpack_from(data, 84)
        (block_le,) = cls.BLOCK_LE.unpack_from(data, 128)
        (block_be,) = cls.BLOCK_BE.unpack_from(data, 130)
        if size_le != size_be:
            raise CorruptImageError(
                f"iso9660: volume space size disagrees with itself ({size_le} vs {size_be})"
            )
        if block_le != block_be:
            raise CorruptImageError(
                f"iso9660: logical block size disagrees with itself ({block_le} vs {block_be})"
            )
        if block_le not in (512, 1024, 2048, 4096, 8192, 16384, 32768):
            raise CorruptImageError(f"iso9660: logical block size {block_le} is not valid")
        return cls(
            system_id=_text(data[8:40]),
            volume_id=_text(data[40:72]),
            volume_space_size=size_le,
            logical_block_size=block_le,
        )


@dataclass(frozen=True, slots=True)
class BootCatalog:
    """What the El Torito boot catalogue says: the platforms with a bootable entry."""

    platforms: tuple[str, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> BootCatalog:
        """Parse a catalogue sector: a validation entry, then default and section entries."""
        validation = data[:32]
        if validation[0] != 1 or validation[30:32] != b"\x55\xaa":
            raise CorruptImageError("iso9660: El Torito boot catalogue has no validation entry")
        if sum(struct.unpack("<16H", validation)) & 0xFFFF:
            raise CorruptImageError("iso9660: El Torito validation entry checksum is wrong")
        platforms: list[str] = []
        current = validation[1]
        for index in range(1, CATALOG_ENTRIES):
            entry = data[index * 32 : (index + 1) * 32]
            kind = entry[0]
            if kind in (0x90, 0x91):  # section header: names the platform of what follows
                current = entry[1]
            elif kind == 0x88:  # bootable initial/default or section entry
                name = _PLATFORMS.get(current, f"platform 0x{current:02x}")
                if name not in platforms:
                    platforms.append(name)
            elif index > 1 and kind == 0 and not any(entry):
                break
        return cls(platforms=tuple(platforms))


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").rstrip(" \0")


def _vrs_ids(window: ProbeWindow) -> list[bytes]:
    """Identifiers of the volume recognition sequence found in the probe window."""
    found: list[bytes] = []
    for k in range(16):
        ident = window.head_at(FIRST_DESCRIPTOR + k * SECTOR + 1, 5)
        if ident not in _VRS_IDS:
            break
        found.append(ident)
    return found


def _is_udf(window: ProbeWindow) -> bool:
    ids = _vrs_ids(window)
    if b"BEA01" not in ids:
        return False
    after_bea = ids[ids.index(b"BEA01") + 1 :]
    return any(i in _UDF_NSR for i in after_bea)


def _has_iso_descriptor(window: ProbeWindow) -> bool:
    for sector in _MATCH_SECTORS:
        start = sector * SECTOR
        header = window.head_at(start, 7)
        if len(header) == 7 and VolumeDescriptorHeader.from_bytes(header).valid:
            return True
    return False


def _matches_iso(window: ProbeWindow) -> bool:
    return _has_iso_descriptor(window) and not _is_udf(window)


def _matches_udf(window: ProbeWindow) -> bool:
    return _is_udf(window)


@dataclass(frozen=True, slots=True)
class IsoVolume:
    """The parsed descriptor set of an ISO 9660 file system."""

    pvd: PrimaryVolumeDescriptor | None
    boot_catalog_sector: int | None
    joliet: bool
    descriptor_types: tuple[int, ...]


def _walk_descriptors(source: ByteSource) -> IsoVolume:
    pvd: PrimaryVolumeDescriptor | None = None
    boot_sector: int | None = None
    joliet = False
    types: list[int] = []
    for index in range(MAX_DESCRIPTORS):
        offset = FIRST_DESCRIPTOR + index * SECTOR
        data = read_exact(source, offset, SECTOR, "iso9660 volume descriptor")
        header = VolumeDescriptorHeader.from_bytes(data)
        if not header.valid:
            if header.identifier in _VRS_IDS:  # UDF recognition entries share the area
                continue
            if pvd is None:
                raise CorruptImageError(
                    f"iso9660: volume descriptor {index} at offset {offset} has no CD001 "
                    "identifier and no primary volume descriptor came before it"
                )
            break  # a missing terminator after a PVD: tolerated, like the kernel does
        types.append(header.type)
        if header.type == 255:
            break
        if header.type == 0 and data[7 : 7 + len(_EL_TORITO)] == _EL_TORITO:
            boot_sector = struct.unpack_from("<I", data, 0x47)[0]
        elif header.type == 1 and pvd is None:
            pvd = PrimaryVolumeDescriptor.from_bytes(data)
        elif header.type == 2 and any(data[88:120].startswith(e) for e in _JOLIET_ESCAPES):
            joliet = True
    else:
        raise LimitExceededError(
            f"iso9660: no volume descriptor terminator within {MAX_DESCRIPTORS} descriptors"
        )
    return IsoVolume(pvd, boot_sector, joliet, tuple(types))


def _boot_platforms(source: ByteSource, volume: IsoVolume) -> str:
    if volume.boot_catalog_sector is None or volume.pvd is None:
        return ""
    block = volume.pvd.logical_block_size
    sector = volume.boot_catalog_sector
    if sector <= 16 or sector >= volume.pvd.volume_space_size:
        raise CorruptImageError(f"iso9660: El Torito boot catalogue sector {sector} is invalid")
    catalog = BootCatalog.from_bytes(
        read_exact(source, sector * block, SECTOR, "iso9660 El Torito boot catalogue")
    )
    return ", ".join(catalog.platforms) or "none"


def _common_properties(window: ProbeWindow) -> dict[str, str]:
    table = partition_table(window.head)
    return {
        "partition table": table,
        "hybrid (also boots as a disk)": "no" if table == "none" else "yes",
    }


def _virtual_size(pvd: PrimaryVolumeDescriptor) -> int:
    return limits.cap(
        pvd.volume_space_size * pvd.logical_block_size,
        limits.MAX_VIRTUAL_SIZE,
        "iso9660 volume size",
    )


def _inspect_iso(source: ByteSource, window: ProbeWindow) -> Container:
    volume = _walk_descriptors(source)
    if volume.pvd is None:
        raise CorruptImageError("iso9660: no primary volume descriptor before the terminator")
    properties = _common_properties(window)
    properties.update(
        {
            "volume id": volume.pvd.volume_id,
            "system id": volume.pvd.system_id,
            "logical block size": str(volume.pvd.logical_block_size),
            "joliet": "yes" if volume.joliet else "no",
        }
    )
    bootable = volume.boot_catalog_sector is not None
    if bootable:
        properties["el torito boot platforms"] = _boot_platforms(source, volume)
    return Container(
        format="iso9660",
        variant="iso9660 (bootable)" if bootable else "iso9660",
        accepted=False,
        file_size=source.size,
        virtual_size=_virtual_size(volume.pvd),
        properties=properties,
    )


def _inspect_udf(source: ByteSource, window: ProbeWindow) -> Container:
    ids = _vrs_ids(window)
    revision = "NSR03 (UDF 2.01 or later)" if b"NSR03" in ids else "NSR02 (UDF 1.02 to 2.00)"
    properties = _common_properties(window)
    properties["udf revision"] = revision
    virtual_size: int | None = None
    variant = "udf"
    if _has_iso_descriptor(window):
        variant = "udf (iso9660 bridge)"
        volume = _walk_descriptors(source)
        if volume.pvd is not None:
            virtual_size = _virtual_size(volume.pvd)
            properties["volume id"] = volume.pvd.volume_id
        if volume.boot_catalog_sector is not None:
            variant = "udf (iso9660 bridge, bootable)"
            properties["el torito boot platforms"] = _boot_platforms(source, volume)
    return Container(
        format="udf",
        variant=variant,
        accepted=False,
        file_size=source.size,
        virtual_size=virtual_size,
        properties=properties,
    )


ISO_SPEC = refused_spec(
    "iso9660", "ISO 9660 optical-disc file system (CD/DVD image)", _matches_iso, _inspect_iso
)

UDF_SPEC = refused_spec(
    "udf", "UDF optical-disc file system (DVD/Blu-ray image)", _matches_udf, _inspect_udf
)

SPECS: tuple[FormatSpec, ...] = (ISO_SPEC, UDF_SPEC)
