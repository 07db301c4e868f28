"""Conformance on real files made by other tools (:data:`builders.CORPUS`, beside the checkout).

Every corpus file is decompressed (``.gz``/``.bz2``; anything else as-is) into the test cache and
probed. For each file the test prints the verdict, checks that probing never raises and always
gives a Container, checks the expectations in :data:`EXPECT`, and, when we accept the file as
readable and ``qemu-img info -f FMT`` opens it too, compares our reads with
``qemu-img convert -f FMT -O raw``: the whole disk when it is under 256 MiB, else 1 MiB windows at
the start, the end, inside our data extents and at pseudo-random offsets.

Without the corpus (``$IMAGEPORT_CORPUS``, by default ``../shared/corpus``: a checkout on its own
has none) the tests are skipped, naming the folder and the variable.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imageport.adapters.image_worker import QEMU_DRIVERS
from imageport.disk.base import ExtentState, VirtualDisk
from imageport.formats import registry
from imageport.formats.base import Container
from imageport.source import FileSource
from support import builders

REPO = builders.REPO
CORPUS = builders.CORPUS
MiB = 1 << 20
WHOLE_DISK_LIMIT = 256 * MiB
SAMPLE = MiB  # qemu's raw window needs 512-byte multiples; odd reads are cut from it
CHUNK = 4 * MiB
NOT_IMAGES = (".copyright", ".md", ".upstream")


@dataclass(frozen=True)
class Expect:
    """What a corpus file must probe as. ``None`` fields are not checked.

    ``hazards`` lists the hazard kinds that must all be present (an empty tuple: none at all);
    ``unreadable`` means the file must not be readable (damage, hazards, unsupported feature).
    """

    format: str
    accepted: bool | None = None
    readable: bool | None = None
    hazards: tuple[str, ...] | None = None
    variant: str | None = None
    encryption: str | None = None


_ISO = Expect("iso9660", accepted=False, readable=False, variant="iso9660 (bootable)")
_PARALLELS = Expect("parallels", accepted=False, readable=False)
_BUNDLE = Expect("parallels", accepted=False, readable=False, hazards=("external-extent",))


def _ok(fmt: str, variant: str | None = None) -> Expect:
    """An accepted, readable file without hazards (its reads are compared with qemu's)."""
    return Expect(fmt, accepted=True, readable=True, hazards=(), variant=variant)


#: Keyed by the path under the corpus without the compression suffix.
EXPECT: dict[str, Expect] = {
    "debian/grub-rescue-cdrom.iso": _ISO,
    "debian/grub-rescue-floppy.img": _ISO,  # grub-mkrescue makes a hybrid ISO here too
    "debian/ipxe.iso": _ISO,
    "debian/memtest86+x64.iso": _ISO,
    "dfvfs/ext2.E01": Expect("ewf", accepted=False, readable=False, variant="ewf (E01)"),
    "dfvfs/ext2.qcow2": _ok("qcow2"),
    "dfvfs/ext2.vhd": _ok("vhd"),
    "dfvfs/ext2.vmdk": _ok("vmdk"),
    "dfvfs/fat-differential.vhd": Expect("vhd", readable=False, hazards=("parent-locator",)),
    "dfvfs/hfsplus.hdd/DiskDescriptor.xml": _BUNDLE,
    "dfvfs/hfsplus_zlib.dmg": Expect("dmg", accepted=False, readable=False, variant="udif"),
    "dfvfs/image-differential.vhd": Expect("vhd", readable=False),  # bad checksum (qemu too)
    "dfvfs/image.vhd": Expect("vhd", readable=False),  # bad checksum (qemu refuses it too)
    "dfvfs/iso9660.raw": Expect("iso9660", accepted=False, readable=False, variant="iso9660"),
    "dfvfs/mbr.raw-99021eae": _ok("raw"),
    "dfvfs/windows_volume.qcow2": _ok("qcow2"),
    "dissect/asif/basic.asif": Expect("asif", accepted=False, readable=False),
    "dissect/hdd/expanding.hdd/DiskDescriptor.xml": _BUNDLE,
    "dissect/hdd/expanding.hdd/expanding.hdd.0.{5fbaabe3-6958-40ff-92a7-860e329aab41}.hds": (
        _PARALLELS
    ),
    "dissect/hdd/plain.hdd/DiskDescriptor.xml": _BUNDLE,
    # a "plain" Parallels image file is raw data, and is read as raw
    "dissect/hdd/plain.hdd/plain.hdd.0.{5fbaabe3-6958-40ff-92a7-860e329aab41}.hds": _ok("raw"),
    "dissect/hdd/split.hdd/DiskDescriptor.xml": _BUNDLE,
    **{
        f"dissect/hdd/split.hdd/split.hdd.{i}.{{5fbaabe3-6958-40ff-92a7-860e329aab41}}.hds": (
            _PARALLELS
        )
        for i in range(6)
    },
    # backing-chain-1 -> 2 -> 3: the first two name a backing file, 3 is the base
    "dissect/qcow2/backing-chain-1.qcow2": Expect(
        "qcow2", readable=False, hazards=("backing-file",)
    ),
    "dissect/qcow2/backing-chain-2.qcow2": Expect(
        "qcow2", readable=False, hazards=("backing-file",)
    ),
    "dissect/qcow2/backing-chain-3.qcow2": _ok("qcow2"),
    "dissect/qcow2/basic-zstd.qcow2": _ok("qcow2"),
    "dissect/qcow2/basic.qcow2": _ok("qcow2"),
    "dissect/qcow2/data-file.bin": _ok("raw"),
    "dissect/qcow2/data-file.qcow2": Expect("qcow2", readable=False, hazards=("data-file",)),
    "dissect/qcow2/snapshot.qcow2": _ok("qcow2"),
    "dissect/vhd/dynamic.vhd": _ok("vhd", "dynamic"),
    "dissect/vhd/fixed.vhd": _ok("vhd", "fixed"),
    "dissect/vhdx/differencing.avhdx": Expect("vhdx", readable=False, hazards=("parent-locator",)),
    "dissect/vhdx/dynamic.vhdx": _ok("vhdx"),
    "dissect/vhdx/fixed.vhdx": _ok("vhdx"),
    "dissect/vmdk/sesparse.vmdk": Expect("vmdk", readable=False),
    "libguestfs/mbr-ext2-empty.img": _ok("raw", "mbr"),
    "libyal/libyal_libqcow_tests_data_file_header.1": Expect("qcow2", readable=False),
    "libyal/libyal_libvmdk_tests_data_descriptor_file.1": Expect(
        "vmdk", readable=False, hazards=("external-extent",)
    ),
    "qemu/afl5.img": Expect("vhd", readable=False),
    "qemu/afl9.vmdk": Expect("vmdk", readable=False),
    "qemu/d2v-zerofilled.vhd": _ok("vhd"),
    "qemu/empty.bochs": Expect("bochs", accepted=False, readable=False),
    "qemu/grub_mbr.raw": _ok("raw", "mbr"),
    "qemu/hyperv2012r2-dynamic.vhd": _ok("vhd"),
    "qemu/iotest-dirtylog-10G-4M.vhdx": Expect("vhdx", readable=False, hazards=("log-replay",)),
    "qemu/iotest-dynamic-1G.vhdx": _ok("vhdx"),
    "qemu/iotest-version3.vmdk": _ok("vmdk", "streamOptimized"),
    "qemu/parallels-v1": Expect("parallels", accepted=False, variant="v1 (WithoutFreeSpace)"),
    "qemu/parallels-v2": Expect("parallels", accepted=False, variant="v2 (ext)"),
    "qemu/parallels-with-bitmap": Expect("parallels", accepted=False, variant="v2 (ext)"),
    "qemu/simple-dmg.dmg": Expect("dmg", accepted=False, readable=False, variant="udif"),
    "qemu/simple-pattern.cloop": Expect("cloop", accepted=False, readable=False, variant="v2.0"),
    "qemu/test-disk2vhd.vhdx": _ok("vhdx"),
    "qemu/virtualpc-dynamic.vhd": _ok("vhd"),
}


def _corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    found = []
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and not path.name.endswith(NOT_IMAGES) and path.name != "README.md":
            found.append(path.relative_to(CORPUS).as_posix())
    return found


def _key(rel: str) -> str:
    for suffix in (".gz", ".bz2"):
        if rel.endswith(suffix):
            return rel[: -len(suffix)]
    return rel


def _open_compressed(path: Path) -> io.BufferedIOBase:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def decompressed(rel: str) -> Path:
    """The corpus file ``rel`` decompressed into the test cache (sparse; reused when fresh)."""
    source = CORPUS / rel
    target = builders.cache_dir() / "corpus" / _key(rel)
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    zero = bytes(MiB)
    with _open_compressed(source) as src, open(tmp, "wb") as out:
        size = 0
        while chunk := src.read(MiB):
            if chunk == zero[: len(chunk)]:
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
            size += len(chunk)
        out.truncate(size)
    os.replace(tmp, target)
    return target


def _qemu_info(path: Path, driver: str) -> dict[str, object] | None:
    proc = subprocess.run(
        [builders.qemu_img_path(), "info", "-f", driver, "--output=json", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        return None
    info: dict[str, object] = json.loads(proc.stdout)
    return info


def _qemu_window(path: Path, driver: str, offset: int, length: int, out: Path) -> bytes:
    """``length`` bytes of the disk at ``offset`` as qemu reads them (raw driver window)."""
    name = str(path).replace(",", ",,")
    spec = (f"driver=raw,offset={offset},size={length},file.driver={driver},"
            f"file.file.driver=file,file.file.filename={name}")  # fmt: skip
    builders.qemu_img("convert", "--image-opts", spec, "-O", "raw", str(out))
    return out.read_bytes()


def _sample_offsets(disk: VirtualDisk) -> Iterator[int]:
    size = disk.virtual_size
    data = [e for e in disk.allocation() if e.state is ExtentState.DATA]
    candidates = [0, size - SAMPLE]
    for extent in data[:6] + data[-2:]:
        candidates += [extent.start, extent.start + extent.length - SAMPLE // 2]
    rng = random.Random(size)
    candidates += [rng.randrange(size) for _ in range(6)]
    for off in candidates:
        yield min(max(0, off), size - SAMPLE) // 512 * 512


def compare_with_qemu(disk: VirtualDisk, path: Path, driver: str, work: Path) -> str:
    """Assert our reads equal qemu's; return a short note of what was compared."""
    size = disk.virtual_size
    if size <= WHOLE_DISK_LIMIT:
        ref = work / "ref.raw"
        builders.qemu_img("convert", "-f", driver, "-O", "raw", str(path), str(ref))
        with open(ref, "rb") as f:  # only our size: qemu's disk may be longer (see the caller)
            for off in range(0, size, CHUNK):
                want = f.read(min(CHUNK, size - off))  # qemu rounds raw files up to 512
                assert disk.read(off, CHUNK) == want, f"read at {off} differs from qemu"
        ref.unlink()
        return "whole disk"
    offsets = sorted(set(_sample_offsets(disk)))
    for off in offsets:
        length = min(SAMPLE, size - off)
        want = _qemu_window(path, driver, off, length, work / "window.raw")
        assert disk.read(off, length) == want, f"read({off}, {length}) differs from qemu"
        lo, hi = 17, max(17, length - 4099)  # an unaligned read inside the same window
        got = disk.read(off + lo, hi - lo)
        assert got == want[lo:hi], f"read({off + lo}, {hi - lo}) differs from qemu"
    return f"{len(offsets)} sampled windows"


def _verdict(rel: str, c: Container) -> str:
    hazards = "; ".join(f"{h.kind}: {h.detail}" for h in c.hazards) or "-"
    return (
        f"[corpus] {_key(rel)}: format={c.format} variant={c.variant!r} accepted={c.accepted} "
        f"readable={c.readable} virtual={c.virtual_size} encryption={c.encryption} "
        f"damage={c.damage!r} hazards={hazards}"
    )


def _check_expectation(rel: str, c: Container) -> None:
    expect = EXPECT.get(_key(rel))
    if expect is None:
        return
    assert c.format == expect.format, f"{rel}: format {c.format!r}, expected {expect.format!r}"
    if expect.accepted is not None:
        assert c.accepted == expect.accepted, f"{rel}: accepted={c.accepted}"
    if expect.readable is not None:
        assert c.readable == expect.readable, (
            f"{rel}: readable={c.readable} (damage={c.damage!r}, hazards={c.hazards})"
        )
    if expect.variant is not None:
        assert c.variant == expect.variant, f"{rel}: variant {c.variant!r}"
    if expect.encryption is not None:
        assert c.encryption == expect.encryption, f"{rel}: encryption {c.encryption!r}"
    if expect.hazards is not None:
        kinds = {h.kind for h in c.hazards}
        if expect.hazards:
            missing = set(expect.hazards) - kinds
            assert not missing, f"{rel}: hazards {sorted(kinds)} lack {sorted(missing)}"
        else:
            assert not c.hazards, f"{rel}: unexpected hazards {c.hazards}"


FILES = _corpus_files()


@builders.needs_corpus
def test_corpus_is_present() -> None:
    assert set(EXPECT) <= {_key(rel) for rel in FILES}, "EXPECT names files not in the corpus"


@pytest.mark.parametrize("rel", FILES or builders.without_corpus())
def test_corpus_file(rel: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = decompressed(rel)
    with FileSource(path) as src:
        container = registry.probe(src)  # raises nothing but SourceError by contract
        assert isinstance(container, Container)
        with capsys.disabled():
            print("\n" + _verdict(rel, container))
        _check_expectation(rel, container)
        driver = QEMU_DRIVERS.get(container.format)
        if not container.readable or container.opener is None or driver is None:
            return
        info = _qemu_info(path, driver)
        if info is None:
            with capsys.disabled():
                print(f"[corpus] {_key(rel)}: qemu-img cannot read it as {driver}; not compared")
            return
        disk = container.opener(src)
        qemu_size = info["virtual-size"]
        assert disk.virtual_size == container.virtual_size
        assert isinstance(qemu_size, int)
        note = ""
        if qemu_size != disk.virtual_size:
            note = f" (virtual size differs: qemu {qemu_size}, ours {disk.virtual_size})"
            # the one difference we accept: qemu rounds a raw file up to whole sectors
            rounded = -(-disk.virtual_size // 512) * 512
            if not (container.format == "raw" and qemu_size == rounded):
                pytest.fail(f"{rel}: virtual size disagrees with qemu-img info{note}")
        compared = compare_with_qemu(disk, path, driver, tmp_path)
        with capsys.disabled():
            print(f"[corpus] {_key(rel)}: reads match qemu-img ({compared}){note}")
