"""Small synthetic guest disks built with the real tools (sfdisk, mkfs.ext4 -d, mkfs.vfat, mtools).

They hold just enough of an installed system for the guest layer and the rules: an os-release
(reached through a symlink, as on Debian), an fstab naming filesystems by UUID, a separate
``/boot`` and an EFI system partition. Built once per cache and reused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import builders

MiB = 1 << 20
ROOT_UUID = "2f0c6a5e-7f51-4a8e-9a43-1b5e3c9d0a11"
BOOT_UUID = "6b8d2e74-1c3a-4f0e-8b59-0d4c7e2a9f33"
ESP_SERIAL = "1234ABCD"  #: blkid prints it as 1234-ABCD
GOOD_FSTAB = f"""# /etc/fstab: static file system information.
UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1
UUID={BOOT_UUID} /boot ext4 defaults 0 2
UUID=1234-ABCD /boot/efi vfat umask=0077 0 1
proc /proc proc defaults 0 0
UUID=0b4e3f0e-0000-4000-8000-000000000001 /mnt/usb ext4 noauto 0 0
"""
DATA_DISK_LINE = "/dev/vdb1 /data ext4 defaults 0 2"
OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"""


def _run(*cmd: str, env: dict[str, str] | None = None) -> None:
    if shutil.which(cmd[0]) is None:
        raise RuntimeError(f"{cmd[0]} is not installed; run the README's test command")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


def _root_tree(top: Path, fstab: str) -> None:
    for d in ("etc", "usr/lib", "usr/bin", "sbin", "boot", "home", "data"):
        (top / d).mkdir(parents=True, exist_ok=True)
    (top / "usr/lib/os-release").write_text(OS_RELEASE)
    (top / "etc/os-release").symlink_to("../usr/lib/os-release")
    (top / "etc/fstab").write_text(fstab)
    (top / "etc/hostname").write_text("testguest\n")
    (top / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (top / "bin").symlink_to("usr/bin")
    (top / "usr/bin/sh").write_bytes(b"\x7fELF" + bytes(60))


def _write_part(disk: Path, part: Path, start: int) -> None:
    with open(part, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(start)
        shutil.copyfileobj(src, dst, 4 * MiB)


def synthetic_guest(*, data_disk: bool = False, nofail: bool = False) -> Path:
    """A raw GPT disk: bios-boot, ESP (vfat), root (ext4), /boot (ext4). Cached.

    ``data_disk`` adds :data:`DATA_DISK_LINE` to fstab; ``nofail`` adds it with ``nofail``.
    """
    extra = ""
    if data_disk:
        extra = DATA_DISK_LINE + "\n"
    elif nofail:
        extra = DATA_DISK_LINE.replace("defaults", "defaults,nofail") + "\n"
    tag = "-datadisk" if data_disk else "-nofail" if nofail else ""
    final = builders.cached(f"guest-gpt-ext4{tag}.raw")
    if final.exists():
        return final
    fstab = GOOD_FSTAB + extra
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        t = Path(tmp)
        root, boot = t / "root", t / "boot"
        _root_tree(root, fstab)
        boot.mkdir()
        (boot / "vmlinuz-6.1.0-13-amd64").write_bytes(b"MZ" + bytes(1000))
        env = {**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"}
        _run("mkfs.ext4", "-q", "-F", "-U", ROOT_UUID, "-L", "rootfs", "-d", str(root),
             str(t / "root.img"), "64M", env=env)
        _run("mkfs.ext4", "-q", "-F", "-U", BOOT_UUID, "-d", str(boot), str(t / "boot.img"), "16M",
             env=env)
        esp = t / "esp.img"
        with open(esp, "wb") as f:
            f.truncate(33 * MiB)
        _run("mkfs.vfat", "-F", "32", "-i", ESP_SERIAL, "-n", "ESP", str(esp))
        _run("mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT")
        (t / "BOOTX64.EFI").write_bytes(b"MZ" + bytes(500))
        _run("mcopy", "-i", str(esp), str(t / "BOOTX64.EFI"), "::/EFI/BOOT/BOOTX64.EFI")
        disk = t / "disk.raw"
        with open(disk, "wb") as f:
            f.truncate(128 * MiB)
        layout = (
            "label: gpt\n"
            "start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\n"
            "start=4096, size=67584, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
            "start=71680, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
            "start=202752, size=32768, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
        )
        proc = subprocess.run(["sfdisk", "-q", str(disk)], input=layout, text=True,
                              capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"sfdisk failed: {proc.stderr}")
        _write_part(disk, esp, 4096 * 512)
        _write_part(disk, t / "root.img", 71680 * 512)
        _write_part(disk, t / "boot.img", 202752 * 512)
        os.replace(disk, final)
    return final


def empty_disk() -> Path:
    """A 64 MiB raw disk with an MBR and one empty Linux partition: no system on it."""
    final = builders.cached("guest-empty.raw")
    if not final.exists():
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.truncate(64 * MiB)
        proc = subprocess.run(["sfdisk", "-q", str(tmp)], input="label: dos\n,,83\n", text=True,
                              capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"sfdisk failed: {proc.stderr}")
        os.replace(tmp, final)
    return final
