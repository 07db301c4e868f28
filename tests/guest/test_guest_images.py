"""The Debian 12 guest images hold what docs/test-images.md says, checked with the real tools.

Only external tools look at the images here (sfdisk, blkid, debugfs, e2fsck, xfs_db, LVM's
reporting commands, btrfs-progs, mtools, qemu-img): these tests prove the fixtures, so they must
not depend on imageport's own guest readers. The images are built when missing (the first run
takes several minutes: mmdebstrap plus four layouts) and reused from the test cache afterwards.
Needs root (read-only loop devices, a read-only mount for XFS).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import guest_images as gi
from support import guest_tools as gt

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

GiB = 1 << 30


def sh(*args: str | Path, data: bytes | None = None) -> str:
    return gt.run(*args, input_bytes=data)


def sh_bytes(*args: str | Path) -> bytes:
    gt.require(str(args[0]))
    proc = subprocess.run([str(a) for a in args], capture_output=True, check=False)
    assert proc.returncode == 0, f"{args} failed: {proc.stderr.decode(errors='replace')}"
    return proc.stdout


class Disk:
    """A raw guest disk as sfdisk and blkid see it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = json.loads(sh("sfdisk", "--json", path))["partitiontable"]
        self.parts = [gt.Part(int(p["start"]), int(p["size"])) for p in self.table["partitions"]]

    def blkid(self, offset: int, size: int | None = None) -> dict[str, str]:
        """``blkid -p`` of what lies at ``offset`` (low-level probe, no cache)."""
        args: list[str | Path] = ["blkid", "-p", "-o", "export", "-O", str(offset)]
        if size is not None:
            args += ["-S", str(size)]
        proc = subprocess.run(
            [str(a) for a in [*args, self.path]], capture_output=True, text=True, check=False
        )
        return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)

    def part_blkid(self, n: int) -> dict[str, str]:
        p = self.parts[n - 1]
        return self.blkid(p.offset, p.nbytes)

    @contextlib.contextmanager
    def loop(self, offset: int, size: int) -> Iterator[str]:
        with gt.loop_device(self.path, offset, size, read_only=True) as dev:
            yield dev

    def part_loop(self, n: int) -> contextlib.AbstractContextManager[str]:
        p = self.parts[n - 1]
        return self.loop(p.offset, p.nbytes)


def debugfs_cat(dev: str, path: str) -> str:
    return sh("debugfs", "-R", f"cat {path}", dev)


def fstab_entries(text: str) -> dict[str, tuple[str, str, str]]:
    """mount point -> (spec, type, options) of the non-comment lines."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if f and not f[0].startswith("#"):
            out[f[1]] = (f[0], f[2], f[3])
    return out


def initrd_names(dev: str, tmp: Path) -> list[str]:
    """Names in the (zstd-compressed) initrd of the ext4 root on ``dev``."""
    ls = sh("debugfs", "-R", "ls -l /boot", dev)
    name = re.search(r"(initrd\.img-\S+)", ls)
    assert name, ls
    out = tmp / "initrd"
    sh("debugfs", "-R", f"dump /boot/{name.group(1)} {out}", dev)
    blob = out.read_bytes()
    assert blob[:4] == b"\x28\xb5\x2f\xfd", "expected a zstd initrd without an early cpio"
    cpio = gt.run_bytes(["zstd", "-dc"], blob)
    return gt.run_bytes(["cpio", "-t", "--quiet"], cpio).decode().split()


@pytest.fixture(scope="module")
def ext4_disk() -> Disk:
    return Disk(gi.guest_raw("gpt-bios-esp-ext4"))


@pytest.fixture(scope="module")
def defects_disk() -> Disk:
    return Disk(gi.guest_raw("gpt-bios-esp-ext4-defects"))


@pytest.fixture(scope="module")
def lvm_disk() -> Disk:
    return Disk(gi.guest_raw("mbr-boot-lvm-xfs"))


@pytest.fixture(scope="module")
def btrfs_disk() -> Disk:
    return Disk(gi.guest_raw("gpt-esp-btrfs"))


# ------------------------------------------------------------------ (a) GPT, BIOS+UEFI, ext4


def check_gpt_bios_esp_ext4(disk: Disk) -> tuple[str, dict[str, tuple[str, str, str]]]:
    assert disk.path.stat().st_size == 3 * GiB
    assert disk.table["label"] == "gpt"
    types = [p["type"] for p in disk.table["partitions"]]
    assert types == [gt.GPT_BIOS_BOOT, gt.GPT_ESP, gt.GPT_LINUX]
    esp, root = disk.part_blkid(2), disk.part_blkid(3)
    assert esp["TYPE"] == "vfat" and esp["VERSION"] == "FAT32"
    assert root["TYPE"] == "ext4"
    with disk.part_loop(3) as dev:
        sh("e2fsck", "-fn", dev)  # exit 0: clean
        fstab = fstab_entries(debugfs_cat(dev, "/etc/fstab"))
        grub = debugfs_cat(dev, "/boot/grub/grub.cfg")
    assert fstab["/"] == (f"UUID={root['UUID']}", "ext4", "errors=remount-ro")
    assert fstab["/boot/efi"][:2] == (f"UUID={esp['UUID']}", "vfat")
    assert f"search --no-floppy --fs-uuid --set=root {root['UUID']}" in grub
    assert f"root=UUID={root['UUID']}" in grub
    return grub, fstab


def test_layout_a_partitions_filesystems_and_fstab(ext4_disk: Disk) -> None:
    grub, fstab = check_gpt_bios_esp_ext4(ext4_disk)
    assert "console=ttyS0" in grub
    assert set(fstab) == {"/", "/boot/efi"}


def test_layout_a_bios_boot_code(ext4_disk: Disk) -> None:
    """boot.img in sector 0 points at core.img in the BIOS boot partition, whose first sector's
    block list covers the rest of core.img (what grub-bios-setup would have written)."""
    bios = ext4_disk.parts[0]
    with open(ext4_disk.path, "rb") as f:
        mbr = f.read(512)
        f.seek(bios.offset)
        core = f.read(512)
    assert mbr[510:] == b"\x55\xaa" and mbr[0x1C2] == 0xEE  # protective MBR kept
    assert int.from_bytes(mbr[0x5C:0x64], "little") == bios.start
    assert mbr[0x64] == 0xFF
    assert int.from_bytes(core[500:508], "little") == bios.start + 1
    assert int.from_bytes(core[510:512], "little") == 0x820
    assert 0 < int.from_bytes(core[508:510], "little") < bios.size


def test_layout_a_esp_holds_grub_efi(ext4_disk: Disk) -> None:
    esp = ext4_disk.parts[1]
    image = f"{ext4_disk.path}@@{esp.offset}"
    listing = sh("mdir", "-b", "-i", image, "::/EFI/BOOT")
    assert "BOOTX64.EFI" in listing.upper()
    efi = sh_bytes("mtype", "-i", image, "::/EFI/BOOT/BOOTX64.EFI")
    described = sh("file", "-b", "-", data=efi)
    assert "PE32+" in described and "EFI application" in described and "x86-64" in described


def test_layout_a_good_configuration(ext4_disk: Disk, tmp_path: Path) -> None:
    with ext4_disk.part_loop(3) as dev:
        cloud = debugfs_cat(dev, "/etc/cloud/cloud.cfg.d/99-imageport-datasource.cfg")
        interfaces = debugfs_cat(dev, "/etc/network/interfaces")
        shadow = debugfs_cat(dev, "/etc/shadow")
        hostname = debugfs_cat(dev, "/etc/hostname")
        ssh = sh("debugfs", "-R", "ls /etc/ssh", dev)
        names = initrd_names(dev, tmp_path)
    assert "datasource_list: [ OpenStack ]" in cloud
    assert "iface eth0 inet dhcp" in interfaces and "hwaddress" not in interfaces
    root_hash = next(line.split(":")[1] for line in shadow.splitlines() if line.startswith("root:"))
    assert root_hash.startswith("$6$") and not is_weak(root_hash)
    assert hostname.strip() == gi.HOSTNAME
    assert "ssh_host_" not in ssh  # cloud-init makes the host keys on first boot
    assert any(n.endswith("/virtio_blk.ko") for n in names)
    assert any(n.endswith("/virtio_net.ko") for n in names)


def is_weak(crypted: str) -> bool:
    salt = crypted.split("$")[2]
    again = sh(
        "openssl", "passwd", "-6", "-salt", salt, "-stdin", data=gi.WEAK_PASSWORD.encode()
    ).strip()
    return again == crypted


# --------------------------------------------------------------------------- (d) defects


def test_defects_seeded(defects_disk: Disk, ext4_disk: Disk, tmp_path: Path) -> None:
    grub, fstab = check_gpt_bios_esp_ext4(defects_disk)
    assert "console=ttyS0" not in grub
    spec, fstype, options = fstab["/data"]
    assert fstype == "ext4" and options == "defaults" and spec.startswith("UUID=")
    # The /data filesystem exists on no partition of the disk.
    uuids = {defects_disk.part_blkid(n).get("UUID") for n in (1, 2, 3)}
    assert spec.removeprefix("UUID=") not in uuids
    with defects_disk.part_loop(3) as dev:
        rules = debugfs_cat(dev, "/etc/udev/rules.d/70-persistent-net.rules")
        interfaces = debugfs_cat(dev, "/etc/network/interfaces")
        shadow = debugfs_cat(dev, "/etc/shadow")
        cloud_d = sh("debugfs", "-R", "ls /etc/cloud/cloud.cfg.d", dev)
        cloud_cfg = debugfs_cat(dev, "/etc/cloud/cloud.cfg")
        ssh = sh("debugfs", "-R", "ls /etc/ssh", dev)
        names = initrd_names(dev, tmp_path)
    assert gi.DEFECT_MAC in rules
    assert "ssh_host_ed25519_key" in ssh  # baked-in host keys
    assert "inet static" in interfaces and f"hwaddress ether {gi.DEFECT_MAC}" in interfaces
    assert "90_dpkg.cfg" not in cloud_d and "99-imageport" not in cloud_d
    assert not re.search(r"^\s*datasource_list\s*:", cloud_cfg, re.M)  # only a comment mentions it
    root_hash = next(line.split(":")[1] for line in shadow.splitlines() if line.startswith("root:"))
    assert is_weak(root_hash)
    assert not [n for n in names if "virtio" in n.rsplit("/", 1)[-1] and ".ko" in n]
    assert any(n.endswith(".ko") for n in names)  # the other modules are still there


# --------------------------------------------------------------------------- (b) MBR + LVM + XFS


def lvm_extents(disk: Disk) -> dict[str, tuple[int, int]]:
    """LV name -> (offset on disk, size), from pvs/vgs/lvs on a read-only loop of the PV."""
    pv = disk.parts[1]
    with disk.part_loop(2) as dev:
        a = gt.lvm_args(dev)
        vg = sh("vgs", *a, "--noheadings", "-o", "vg_name,pv_count,lv_count").split()
        assert vg == ["vg0", "1", "2"]
        pe_start = int(
            sh("pvs", *a, "--noheadings", "--nosuffix", "--units", "b", "-o", "pe_start", dev)
        )
        extent = int(
            sh(
                "vgs",
                *a,
                "--noheadings",
                "--nosuffix",
                "--units",
                "b",
                "-o",
                "vg_extent_size",
                "vg0",
            )
        )
        rows = sh("lvs", *a, "--noheadings", "--segments", "-o", "lv_name,seg_pe_ranges", "vg0")
    out = {}
    for row in rows.strip().splitlines():
        name, ranges = row.split()
        m = re.fullmatch(r"\S+:(\d+)-(\d+)", ranges)
        assert m, ranges
        first, last = int(m.group(1)), int(m.group(2))
        out[name] = (pv.offset + pe_start + first * extent, (last - first + 1) * extent)
    return out


def test_layout_b_partitions_lvm_and_filesystems(lvm_disk: Disk) -> None:
    assert lvm_disk.path.stat().st_size == 3 * GiB
    assert lvm_disk.table["label"] == "dos"
    parts = lvm_disk.table["partitions"]
    assert [p["type"] for p in parts] == ["83", "8e"]
    assert parts[0].get("bootable") is True
    boot = lvm_disk.part_blkid(1)
    assert boot["TYPE"] == "ext4"
    assert lvm_disk.part_blkid(2)["TYPE"] == "LVM2_member"
    lvs = lvm_extents(lvm_disk)
    assert set(lvs) == {"root", "swap"}
    assert lvs["root"][0] > lvs["swap"][0]  # root does not start at the first extent
    assert lvm_disk.blkid(*lvs["swap"])["TYPE"] == "swap"
    root = lvm_disk.blkid(*lvs["root"])
    assert root["TYPE"] == "xfs"
    with lvm_disk.loop(*lvs["root"]) as dev:
        sb = sh("xfs_db", "-r", "-c", "sb 0", "-c", "print uuid", "-c", "print fname", dev)
        assert f"uuid = {root['UUID']}" in sb and '"root' in sb
        with gt.mounted(dev, "xfs", "ro,norecovery") as mnt:
            fstab = fstab_entries((mnt / "etc/fstab").read_text())
            assert (mnt / "usr/bin/bash").exists()
            assert not list((mnt / "boot").iterdir())  # /boot is the ext4 partition
    assert fstab["/"][:2] == ("/dev/mapper/vg0-root", "xfs")
    assert fstab["/boot"][:2] == (f"UUID={boot['UUID']}", "ext4")
    assert fstab["none"][:2] == ("/dev/mapper/vg0-swap", "swap")
    with lvm_disk.part_loop(1) as dev:
        sh("e2fsck", "-fn", dev)
        listing = sh("debugfs", "-R", "ls /", dev)
        grub = debugfs_cat(dev, "/grub/grub.cfg")
    assert "vmlinuz-" in listing and "initrd.img-" in listing
    assert f"--set=root {boot['UUID']}" in grub and "root=/dev/mapper/vg0-root" in grub
    with open(lvm_disk.path, "rb") as f:
        mbr = f.read(512)
    assert int.from_bytes(mbr[0x5C:0x64], "little") == 1  # core.img in the MBR gap


# --------------------------------------------------------------------------- (c) GPT + ESP + Btrfs


def test_layout_c_uefi_only_btrfs(btrfs_disk: Disk, tmp_path: Path) -> None:
    assert btrfs_disk.table["label"] == "gpt"
    assert [p["type"] for p in btrfs_disk.table["partitions"]] == [gt.GPT_ESP, gt.GPT_LINUX]
    esp, root = btrfs_disk.part_blkid(1), btrfs_disk.part_blkid(2)
    assert esp["TYPE"] == "vfat" and root["TYPE"] == "btrfs"
    with btrfs_disk.part_loop(2) as dev:
        sb = sh("btrfs", "inspect-internal", "dump-super", dev)
        sh(
            "btrfs",
            "restore",
            "--path-regex",
            "^/(|etc(|/fstab)|boot(|/grub(|/grub.cfg)))$",
            dev,
            tmp_path,
        )
    assert re.search(rf"^fsid\s+{root['UUID']}$", sb, re.M)
    assert re.search(r"^label\s+root$", sb, re.M)
    fstab = fstab_entries((tmp_path / "etc/fstab").read_text())
    assert fstab["/"][:2] == (f"UUID={root['UUID']}", "btrfs")
    assert fstab["/boot/efi"][:2] == (f"UUID={esp['UUID']}", "vfat")
    assert f"--set=root {root['UUID']}" in (tmp_path / "boot/grub/grub.cfg").read_text()
    with open(btrfs_disk.path, "rb") as f:
        mbr = f.read(512)
    assert mbr[:440] == bytes(440)  # no BIOS boot code: UEFI only, on purpose
    listing = sh(
        "mdir", "-b", "-i", f"{btrfs_disk.path}@@{btrfs_disk.parts[0].offset}", "::/EFI/BOOT"
    )
    assert "BOOTX64.EFI" in listing.upper()


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vpc", "vhdx", "vdi", "qed"])
def test_conversions_hold_the_same_disk(fmt: str) -> None:
    # the defects layout, which tests/guest/test_debian_images.py checks in every format too, so a
    # test run converts one layout (each conversion is ~0.9 GB of disk)
    raw = gi.guest_raw("gpt-bios-esp-ext4-defects")
    image = gi.guest_image("gpt-bios-esp-ext4-defects", fmt)
    qfmt = gi.FORMATS[fmt][0]
    info = json.loads(sh("qemu-img", "info", "-f", qfmt, "--output=json", image))
    assert info["format"] == qfmt and info["virtual-size"] == 3 * GiB
    assert "backing-filename" not in info
    sh("qemu-img", "compare", "-f", "raw", "-F", qfmt, raw, image)


# --------------------------------------------------------------------------- boot (opt-in)


@pytest.mark.skipif(not gt.boot_tests_enabled(), reason="set IMAGEPORT_BOOT_TESTS=1 (1.5 min each)")
@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_layout_a_boots_to_login(firmware: str) -> None:
    seconds = gt.boot_to_login(gi.guest_raw("gpt-bios-esp-ext4"), firmware)
    print(f"{firmware}: login: after {seconds:.0f} s")
