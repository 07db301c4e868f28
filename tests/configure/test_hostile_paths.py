"""Hostile guests against the plan's paths and mounts: nothing the appliance is told to open
is outside the guest's filesystems, and it mounts only what the checker read through, where
the checker read it (synthetic guests; no appliance launch)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imageport.adapters.guestfs.editor import GuestfishEditor
from imageport.configure.edits import Edits, FileOp, NotEditableError, OpKind, guest_path
from imageport.configure.fixes import Fix
from imageport.configure.mounts import ApplianceMount, appliance_mounts
from imageport.configure.plan import plan_configuration
from imageport.guest.facts.inspect import GuestFacts
from imageport.service.ports import GuestEditError
from support import guest_fixtures as gf
from support.kernel_fixtures import open_guest

BOOT = f"UUID={gf.BOOT_UUID}"


def _motd(_: GuestFacts, edits: Edits) -> None:
    edits.write("/etc/motd", "fixed\n", rule="T", why="test")


@pytest.mark.parametrize("path", ["/dev", "/dev/sda", "/dev/mapper/x"])
def test_paths_under_dev_are_refused(path: str) -> None:
    # libguestfs' daemon opens an upload's path under /dev in the appliance, not the guest:
    # "/dev/sda" would be the raw disk
    with pytest.raises(NotEditableError, match="under /dev"):
        guest_path(path)


def test_a_log_directory_linked_to_dev_gets_no_write_under_dev() -> None:
    path = gf.build_guest(
        "hostile-var-log-dev",
        root={"var/log": gf.Symlink("/dev"), "dev/.keep": "", "etc/motd": "hi\n"},
    )
    with open_guest(path) as guest:
        plan = plan_configuration(guest, fixes=[Fix(("T",), "t", _motd)], when="now")
    assert [op.path for op in plan.operations] == ["/etc/motd"]
    assert any(n.rule == "record" and "under /dev" in n.text for n in plan.notes)


def test_the_editor_refuses_a_path_under_dev_before_starting_anything(tmp_path: Path) -> None:
    editor = GuestfishEditor(guestfish=str(tmp_path / "no-such-guestfish"))
    op = FileOp("/dev/sda", OpKind.WRITE, "absent", b"x")
    with pytest.raises(GuestEditError, match=r"under /dev.*nothing was changed"):
        editor.apply(tmp_path / "disk.raw", (ApplianceMount("/dev/sda3", "/"),), (op,))
    mount = ApplianceMount("/dev/sda4", "/boot\n/etc")
    with pytest.raises(GuestEditError, match="control characters"):
        editor.apply(tmp_path / "disk.raw", (mount,), ())


def test_mounts_the_checker_never_read_through_are_not_mounted() -> None:
    # /lnk is a relative link to etc: the appliance's kernel would mount the /boot partition
    # over the root's /etc/boot, which the plan read from the root filesystem; /dev/x and
    # /boot/../etc are never read through either; /./boot is /boot as the checker reads it
    fstab = (
        gf.GOOD_FSTAB.replace(f"{BOOT} /boot ", f"{BOOT} /./boot ")
        + f"{BOOT} /lnk/boot ext4 defaults 0 2\n"
        + f"{BOOT} /dev/x ext4 defaults 0 2\n"
        + f"{BOOT} /boot/../etc ext4 defaults 0 2\n"
        + f"{BOOT} /gone/boot ext4 defaults 0 2\n"
    )
    path = gf.build_guest(
        "hostile-mountpoints",
        root={"lnk": gf.Symlink("etc"), "etc/boot/.keep": "", "dev/x/.keep": ""},
        fstab=fstab,
    )
    with open_guest(path) as guest:
        points = [m.mountpoint for m in appliance_mounts(guest.layout)]
        assert guest.files.read_text("/lnk/boot/.keep") == ""  # the root's /etc/boot
    assert points == ["/", "/boot", "/boot/efi"]


def test_a_btrfs_root_is_mounted_by_the_subvolume_the_checker_opened(tmp_path: Path) -> None:
    # fstab's own subvol= options are not passed on (the checker and the kernel could read
    # a contradictory pair differently): the subvolume the checker read, by id
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/os-release").write_text(gf.OS_RELEASE)
    uuid = "0b1c2d3e-4f50-4617-8a9b-0c1d2e3f4a5b"
    (tree / "etc/fstab").write_text(f"UUID={uuid} / btrfs subvol=@,subvolid=999 0 0\n")
    disk = tmp_path / "btrfs.raw"
    with disk.open("wb") as f:
        f.truncate(256 << 20)
    subprocess.run(
        ["mkfs.btrfs", "-q", "-f", "-U", uuid, "--rootdir", str(tree), str(disk)], check=True
    )
    with open_guest(disk) as guest:
        (root,) = appliance_mounts(guest.layout)
    assert root == ApplianceMount("/dev/sda", "/", "subvolid=5")
