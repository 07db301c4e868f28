"""The newc writer, checked by the real cpio (``cpio -t``, ``cpio -i``) and by our initrd reader;
an archive appended to a compressed initrd is found after the original's segment, and its files
replace the earlier ones as the kernel's unpacker does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imageport.configure.cpio_writer import (
    CpioEntry,
    EntryKind,
    append_segment,
    member_path,
    newc_archive,
    with_parents,
)
from imageport.guest.boot.initrd import read_initrd
from imageport.guest.fs.base import FileType

FILES = {
    "usr/lib/modules/6.1.0-1/kernel/drivers/block/virtio_blk.ko": b"\x7fELF"
    + bytes(range(256)) * 3,
    "usr/lib/modules/6.1.0-1/modules.dep": b"kernel/drivers/block/virtio_blk.ko:\n",
    "conf/modules": b"virtio_blk\n",
    "odd": b"x",  # 1 byte: data padding of 3
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; the writer is checked against it")
    return path


def _cpio(args: list[str], data: bytes, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [_tool("cpio"), *args, "--quiet"], input=data, capture_output=True, cwd=cwd, check=True
    )
    return proc.stdout.decode()


def test_real_cpio_lists_and_extracts_every_member(tmp_path: Path) -> None:
    entries = with_parents(FILES, existing={"usr"})
    archive = newc_archive(entries, mtime=1_700_000_000)
    listed = _cpio(["-t"], archive).split()
    assert listed == [e.path for e in entries]
    assert "usr" not in listed  # the earlier archive has it
    assert listed.index("usr/lib/modules/6.1.0-1") < listed.index(
        "usr/lib/modules/6.1.0-1/modules.dep"
    )
    _cpio(["-i", "--make-directories", "--preserve-modification-time"], archive, cwd=tmp_path)
    for path, data in FILES.items():
        assert (tmp_path / path).read_bytes() == data
        assert (tmp_path / path).stat().st_mtime == 1_700_000_000
    assert (tmp_path / "conf").is_dir()


def test_every_header_is_four_byte_aligned_and_the_archive_ends_with_the_trailer() -> None:
    archive = newc_archive(with_parents(FILES, existing=()), mtime=0)
    assert len(archive) % 4 == 0
    assert archive.count(b"070701") == len(with_parents(FILES, existing=())) + 1
    pos = 0
    while True:
        assert archive[pos : pos + 6] == b"070701"
        namesize = int(archive[pos + 94 : pos + 102], 16)
        filesize = int(archive[pos + 54 : pos + 62], 16)
        name = archive[pos + 110 : pos + 110 + namesize - 1]
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + filesize + 3) & ~3
        if name == b"TRAILER!!!":
            break
    assert pos == len(archive)


def test_our_reader_reads_what_we_wrote_with_types_modes_and_links() -> None:
    entries = [
        CpioEntry("bin", EntryKind.DIRECTORY, 0o755),
        CpioEntry("bin/tool", EntryKind.REGULAR, 0o755, b"#!/bin/sh\n"),
        CpioEntry("sbin", EntryKind.SYMLINK, 0o777, b"bin"),
    ]
    contents = read_initrd(newc_archive(entries, mtime=5), keep=("bin/tool",))
    got = {(m.path, m.type, m.mode, m.link_target) for m in contents.members}
    assert got == {
        ("bin", FileType.DIRECTORY, 0o755, None),
        ("bin/tool", FileType.REGULAR, 0o755, None),
        ("sbin", FileType.SYMLINK, 0o777, "bin"),
    }
    assert contents.kept["bin/tool"].data == b"#!/bin/sh\n"


@pytest.mark.parametrize("original_size", [8, 9, 10, 11])
def test_appended_after_a_compressed_initrd_the_segment_is_read_and_its_files_win(
    original_size: int,
) -> None:
    """A zstd initrd of any length: the segment starts on a 4-byte boundary after zero
    padding, our reader finds both segments, and a path in both keeps the later contents
    (a later cpio segment overwrites, as ``init/initramfs.c`` does)."""
    first = newc_archive(
        [
            CpioEntry("conf", EntryKind.DIRECTORY, 0o755),
            CpioEntry("conf/modules", EntryKind.REGULAR, 0o644, b"old\n"),
            CpioEntry("pad", EntryKind.REGULAR, 0o644, b"p" * original_size),
        ],
        mtime=1,
    )
    compressed = subprocess.run(
        [_tool("zstd"), "-q", "-c"], input=first, capture_output=True, check=True
    ).stdout
    compressed += b"\0" * (original_size % 4)  # any tail length before padding
    segment = newc_archive([CpioEntry("conf/modules", EntryKind.REGULAR, 0o644, b"new\n")], mtime=2)
    joined = append_segment(compressed, segment)
    start = len(joined) - len(segment)
    assert start % 4 == 0 and joined[:start].rstrip(b"\0") == compressed.rstrip(b"\0")
    contents = read_initrd(joined, keep=("conf/modules",))
    assert [s.compression for s in contents.segments] == ["zstd", "none"]
    assert contents.kept["conf/modules"].data == b"new\n"
    assert not contents.problems


@pytest.mark.parametrize(
    "bad", ["/abs", "a/../b", "a//b", "./a", "a/", "", "a\nb", "x" * 256, "a/" * 2100 + "b"]
)
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        member_path(bad)
    with pytest.raises(ValueError):
        newc_archive([CpioEntry(bad, EntryKind.REGULAR)], mtime=0)


def test_a_member_before_its_directory_and_a_path_twice_are_refused() -> None:
    with pytest.raises(ValueError, match="before its directory"):
        newc_archive(
            [CpioEntry("d/f", EntryKind.REGULAR), CpioEntry("d", EntryKind.DIRECTORY)], mtime=0
        )
    with pytest.raises(ValueError, match="twice"):
        newc_archive(
            [CpioEntry("f", EntryKind.REGULAR), CpioEntry("f", EntryKind.REGULAR)], mtime=0
        )
    with pytest.raises(ValueError, match="mtime"):
        newc_archive([], mtime=-1)
