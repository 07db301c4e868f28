"""ISO 9660 and UDF: named (never accepted), El Torito and Joliet seen, hostile headers refused."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from imageport.formats import iso, registry
from imageport.formats.base import ProbeWindow
from imageport.source import BytesSource, FileSource

SECTOR = 2048


def _descriptor(vtype: int, ident: bytes = b"CD001") -> bytearray:
    d = bytearray(SECTOR)
    d[0] = vtype
    d[1:6] = ident
    d[6] = 1
    return d


def pvd(volume_blocks: int, block_size: int = 2048, volume_id: bytes = b"TESTVOL") -> bytes:
    """A primary volume descriptor with both-endian sizes (ECMA-119 8.4)."""
    d = _descriptor(1)
    d[40:72] = volume_id.ljust(32, b" ")
    struct.pack_into("<I", d, 80, volume_blocks)
    struct.pack_into(">I", d, 84, volume_blocks)
    struct.pack_into("<H", d, 128, block_size)
    struct.pack_into(">H", d, 130, block_size)
    return bytes(d)


def synthetic_iso(blocks: int = 40, *, extra: tuple[bytes, ...] = ()) -> bytearray:
    """A minimal ISO: system area, PVD, optional descriptors, terminator, padding."""
    image = bytearray(blocks * SECTOR)
    descriptors = [pvd(blocks), *extra, bytes(_descriptor(255))]
    for i, d in enumerate(descriptors):
        image[(16 + i) * SECTOR : (17 + i) * SECTOR] = d
    return image


def test_synthetic_iso_is_named_with_its_volume_size() -> None:
    c = registry.probe(BytesSource(bytes(synthetic_iso(40))))
    assert (c.format, c.variant, c.accepted) == ("iso9660", "iso9660", False)
    assert c.virtual_size == 40 * SECTOR
    assert c.properties["volume id"] == "TESTVOL"
    assert c.properties["hybrid (also boots as a disk)"] == "no"
    assert c.damage is None and not c.readable


def test_udf_recognition_sequence_is_named_udf() -> None:
    image = bytearray(40 * SECTOR)
    for i, ident in enumerate((b"BEA01", b"NSR03", b"TEA01")):
        image[(16 + i) * SECTOR : (17 + i) * SECTOR] = _descriptor(0, ident)
    c = registry.probe(BytesSource(bytes(image)))
    assert (c.format, c.variant, c.accepted) == ("udf", "udf", False)
    assert "2.01" in c.properties["udf revision"]


def test_udf_bridge_matches_only_udf() -> None:
    extra = tuple(bytes(_descriptor(0, i)) for i in (b"BEA01", b"NSR02", b"TEA01"))
    c = registry.probe(BytesSource(bytes(synthetic_iso(40, extra=extra))))
    assert (c.format, c.variant) == ("udf", "udf (iso9660 bridge)")
    assert c.virtual_size == 40 * SECTOR


def test_descriptor_at_later_sector_still_matches() -> None:
    image = synthetic_iso(40)
    image[16 * SECTOR : 17 * SECTOR] = bytes(SECTOR)  # sector 16 blanked, PVD copy at 17
    image[17 * SECTOR : 18 * SECTOR] = pvd(40)
    image[18 * SECTOR : 19 * SECTOR] = _descriptor(255)
    assert iso.ISO_SPEC.matches(ProbeWindow.read(BytesSource(bytes(image))))
    c = registry.probe(BytesSource(bytes(image)))
    assert c.format == "iso9660"
    assert c.damage is not None and "CD001" in c.damage


def test_disagreeing_both_endian_size_is_damage() -> None:
    image = synthetic_iso(40)
    struct.pack_into(">I", image, 16 * SECTOR + 84, 41)
    c = registry.probe(BytesSource(bytes(image)))
    assert c.format == "iso9660" and c.damage is not None and "volume space size" in c.damage


def test_huge_volume_is_refused_by_the_cap() -> None:
    image = synthetic_iso(40)
    image[16 * SECTOR : 17 * SECTOR] = pvd(0xFFFFFFFF, block_size=32768)
    c = registry.probe(BytesSource(bytes(image)))
    assert (
        c.format == "iso9660" and c.damage is not None and "outside the allowed range" in c.damage
    )


def test_truncated_and_unterminated_isos_fail_fast() -> None:
    image = synthetic_iso(40)
    c = registry.probe(BytesSource(bytes(image[: 16 * SECTOR + 100])))
    assert c.format == "iso9660" and c.damage is not None and "beyond the end" in c.damage
    endless = bytearray(200 * SECTOR)
    endless[16 * SECTOR : 17 * SECTOR] = pvd(200)
    for i in range(17, 100):
        endless[i * SECTOR : (i + 1) * SECTOR] = _descriptor(3)
    c = registry.probe(BytesSource(bytes(endless)))
    assert c.damage is not None and "terminator" in c.damage


def test_bad_boot_catalogue_is_damage() -> None:
    boot = _descriptor(0)
    boot[7:30] = b"EL TORITO SPECIFICATION"
    struct.pack_into("<I", boot, 0x47, 30)  # catalogue sector holds zeros: no validation entry
    c = registry.probe(BytesSource(bytes(synthetic_iso(40, extra=(bytes(boot),)))))
    assert c.format == "iso9660" and c.damage is not None and "validation entry" in c.damage


# -- real ISOs made by xorriso ------------------------------------------------------------------


def _xorriso() -> str:
    path = shutil.which("xorriso")
    if path is None:
        pytest.skip("xorriso is not installed (apt-get install xorriso); real-ISO tests skipped")
    return path


def make_iso(tmp: Path, *, boot: bool = False, efi: bool = False, joliet: bool = False) -> Path:
    """An ISO built by xorriso from a small tree, optionally El Torito bootable."""
    tree = tmp / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "hello.txt").write_text("hello from imageport\n")
    (tree / "boot.img").write_bytes(b"\xeb\x3c" + bytes(2046))
    (tree / "efi.img").write_bytes(bytes(64 * 1024))
    out = tmp / f"out-{int(boot)}{int(efi)}{int(joliet)}.iso"
    args = [_xorriso(), "-as", "mkisofs", "-quiet", "-V", "IMAGEPORT"]
    if joliet:
        args.append("-J")
    if boot:
        args += ["-b", "boot.img", "-no-emul-boot", "-c", "boot.cat"]
    if efi:
        args += ["-eltorito-alt-boot", "-e", "efi.img", "-no-emul-boot"]
    subprocess.run([*args, "-o", str(out), str(tree)], check=True, capture_output=True)
    return out


def test_xorriso_iso_plain_and_joliet(tmp_path: Path) -> None:
    for joliet in (False, True):
        path = make_iso(tmp_path, joliet=joliet)
        with FileSource(path) as src:
            c = registry.probe(src)
        assert (c.format, c.variant, c.accepted) == ("iso9660", "iso9660", False)
        assert c.properties["joliet"] == ("yes" if joliet else "no")
        assert c.properties["volume id"] == "IMAGEPORT"
        assert c.virtual_size == path.stat().st_size


def test_xorriso_bootable_iso_names_el_torito_platforms(tmp_path: Path) -> None:
    path = make_iso(tmp_path, boot=True, efi=True)
    with FileSource(path) as src:
        c = registry.probe(src)
    assert (c.format, c.variant) == ("iso9660", "iso9660 (bootable)")
    assert c.properties["el torito boot platforms"] == "x86 BIOS, UEFI"
