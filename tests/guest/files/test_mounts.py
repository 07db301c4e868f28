"""The guest layer end to end on synthetic disks: volumes, root, fstab mounts, files, OS."""

from __future__ import annotations

import pytest

from imageport.disk.raw import RawDisk
from imageport.guest.facts.inspect import inspect_guest
from imageport.guest.files.fstab import find_volume, parse_fstab
from imageport.guest.files.mounts import assemble
from imageport.guest.fs.base import NoSuchFileError
from imageport.guest.volumes.discover import scan_storage
from imageport.source import FileSource
from support import guest_fixtures as gf


def test_volumes_root_and_mounts_are_found() -> None:
    with FileSource(gf.synthetic_guest()) as src:
        storage = scan_storage(RawDisk(src))
        assert storage.table.scheme == "gpt"
        assert [(v.name, v.kind) for v in storage.volumes] == [
            ("part1", "unknown"),
            ("part2", "vfat"),
            ("part3", "ext4"),
            ("part4", "ext4"),
        ]
        layout = assemble(storage)
        assert layout.root is not None and layout.root.volume.name == "part3"
        assert {m.mountpoint: m.volume.name for m in layout.mounts} == {
            "/": "part3",
            "/boot": "part4",
            "/boot/efi": "part2",
        }
        # the noauto line's device is absent too: reported, the rule decides it is harmless
        assert [u.entry.mountpoint for u in layout.unresolved] == ["/mnt/usb"]
        files = layout.files()
        assert files.exists("/boot/vmlinuz-6.1.0-13-amd64")  # on the /boot partition
        assert files.exists("/boot/efi/EFI/BOOT/BOOTX64.EFI")  # on the ESP, case-insensitive
        assert files.read_text("/etc/hostname") == "testguest\n"
        assert files.exists("/bin/sh")  # /bin -> usr/bin
        with pytest.raises(NoSuchFileError):
            files.read_file("/etc/no-such-file")


def test_os_release_is_read_through_its_symlink() -> None:
    with FileSource(gf.synthetic_guest()) as src:
        facts = inspect_guest(RawDisk(src))
    assert facts.os is not None
    assert (facts.os.id, facts.os.version_id, facts.os.family) == ("debian", "12", "debian")
    assert facts.os.pretty_name == "Debian GNU/Linux 12 (bookworm)"


def test_a_data_disk_line_is_unresolved_and_quoted() -> None:
    with FileSource(gf.synthetic_guest(data_disk=True)) as src:
        layout = assemble(scan_storage(RawDisk(src)))
    (data,) = [u for u in layout.unresolved if u.entry.mountpoint == "/data"]
    assert data.entry.line == gf.DATA_DISK_LINE and data.entry.auto


def test_an_empty_disk_has_no_root() -> None:
    with FileSource(gf.empty_disk()) as src:
        facts = inspect_guest(RawDisk(src))
    assert facts.layout.root is None and facts.os is None


def test_fstab_specs_name_the_right_volumes() -> None:
    with FileSource(gf.synthetic_guest()) as src:
        vols = scan_storage(RawDisk(src)).volumes
        by = {
            spec: (v.name if v else None)
            for spec in (
                f"UUID={gf.ROOT_UUID}",
                f'UUID="{gf.ROOT_UUID.upper()}"',
                "LABEL=rootfs",
                "UUID=1234-ABCD",
                f"/dev/disk/by-uuid/{gf.BOOT_UUID}",
                "/dev/vda3",
                "/dev/sda4",
                "/dev/nvme0n1p2",
                "/dev/vdb1",
                "/dev/sdb3",
                "UUID=nope",
            )
            for v in [find_volume(spec, vols)]
        }
    assert by == {
        f"UUID={gf.ROOT_UUID}": "part3",
        f'UUID="{gf.ROOT_UUID.upper()}"': "part3",
        "LABEL=rootfs": "part3",
        "UUID=1234-ABCD": "part2",
        f"/dev/disk/by-uuid/{gf.BOOT_UUID}": "part4",
        "/dev/vda3": "part3",
        "/dev/sda4": "part4",
        "/dev/nvme0n1p2": "part2",
        "/dev/vdb1": None,
        "/dev/sdb3": None,
        "UUID=nope": None,
    }


def test_parse_fstab_handles_comments_escapes_and_short_lines() -> None:
    entries = parse_fstab(
        "# c\n\nUUID=a / ext4 defaults 0 1 # trailing\n"
        "/dev/sdb1 /mnt/my\\040disk xfs noauto,nofail\nbroken\n"
    )
    assert [(e.spec, e.mountpoint, e.fstype, e.auto, e.nofail, e.passno) for e in entries] == [
        ("UUID=a", "/", "ext4", True, False, 1),
        ("/dev/sdb1", "/mnt/my disk", "xfs", False, True, 0),
    ]
