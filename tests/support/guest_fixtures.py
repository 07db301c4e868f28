"""Small synthetic guest disks built with the real tools (sfdisk, mkfs.ext4 -d, mkfs.vfat, mtools).

They hold just enough of an installed system for the guest layer and the rules: an os-release
(reached through a symlink, as on Debian), an fstab naming filesystems by UUID, a separate
``/boot`` and an EFI system partition. Built once per cache and reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from support import builders

MiB = 1 << 20
#: GRUB's BIOS images (Debian package grub-pc-bin); core.img is made with grub-mkimage.
GRUB_PC = Path("/usr/lib/grub/i386-pc")
#: The BIOS boot partition's first sector, where core.img goes.
CORE_LBA = 2048
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


@dataclass(frozen=True)
class Symlink:
    """A symlink to put in a fixture tree."""

    target: str


#: A fixture tree: path (relative, no leading slash) -> contents; None removes a default entry.
Tree = Mapping[str, "str | bytes | Symlink | None"]

BASE_ROOT: dict[str, str | bytes | Symlink | None] = {
    "usr/lib/os-release": OS_RELEASE,
    "etc/os-release": Symlink("../usr/lib/os-release"),
    "etc/hostname": "testguest\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "bin": Symlink("usr/bin"),
    "usr/bin/sh": b"\x7fELF" + bytes(60),
    "sbin/.keep": "",
    "home/.keep": "",
}
BASE_BOOT: dict[str, str | bytes | Symlink | None] = {
    "vmlinuz-6.1.0-13-amd64": b"MZ" + bytes(1000),
    # the drivers the platform needs, built in (so the base guest needs no initrd); the IDE
    # driver built in as RHEL's, Fedora's and Ubuntu's kernels have it
    "config-6.1.0-13-amd64": "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_BLK=y\n"
    "CONFIG_SCSI_VIRTIO=y\nCONFIG_VIRTIO_NET=y\nCONFIG_XEN_BLKDEV_FRONTEND=y\n"
    "CONFIG_XEN_NETDEV_FRONTEND=y\nCONFIG_ATA_PIIX=y\n",
}
BASE_ESP: dict[str, str | bytes | Symlink | None] = {
    "EFI/BOOT/BOOTX64.EFI": b"MZ" + bytes(500),
}


def write_tree(top: Path, *layers: Tree) -> None:
    """Materialise ``layers`` (later ones win) as files under ``top``."""
    merged: dict[str, str | bytes | Symlink | None] = {}
    for layer in layers:
        merged.update(layer)
    top.mkdir(parents=True, exist_ok=True)
    for rel, content in sorted(merged.items()):
        if content is None:
            continue
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Symlink):
            path.symlink_to(content.target)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def grub_boot_code(core_lba: int = CORE_LBA) -> bytes:
    """GRUB's boot.img code (440 bytes) loading core.img from ``core_lba`` (u64 at 0x5C), as
    grub-bios-setup writes it."""
    path = GRUB_PC / "boot.img"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install grub-pc-bin (scripts/install --test)")
    code = bytearray(path.read_bytes()[:440])
    code[0x5C:0x64] = core_lba.to_bytes(8, "little")
    return bytes(code)


def grub_core_img(label: str = "gpt") -> bytes:
    """An i386-pc core.img made by grub-mkimage for a ``gpt`` or ``msdos`` disk (cached)."""
    final = builders.cached(f"grub-core-i386-pc-{label}.img")
    if not final.exists():
        tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
        prefix = "(hd0,gpt4)/grub" if label == "gpt" else "(hd0,msdos1)/boot/grub"
        _run(
            "grub-mkimage",
            "-O",
            "i386-pc",
            "-o",
            str(tmp),
            "-p",
            prefix,
            "biosdisk",
            f"part_{label}",
            "ext2",
        )
        os.replace(tmp, final)
    return final.read_bytes()


def _write_part(disk: Path, part: Path, start: int) -> None:
    """Copy ``part`` into ``disk`` at ``start``, leaving zero chunks as holes (the disk file is
    sparse), so that the many cached fixture disks take little room."""
    zeros = bytes(MiB)
    with open(part, "rb") as src, open(disk, "r+b") as dst:
        offset = start
        while chunk := src.read(MiB):
            if chunk != zeros[: len(chunk)]:
                dst.seek(offset)
                dst.write(chunk)
            offset += len(chunk)


def _esp_image(t: Path, files: Tree) -> Path:
    esp = t / "esp.img"
    with open(esp, "wb") as f:
        f.truncate(33 * MiB)
    _run("mkfs.vfat", "-F", "32", "-i", ESP_SERIAL, "-n", "ESP", str(esp))
    src = t / "esp-tree"
    write_tree(src, files)
    for d in sorted({p.parent for p in src.rglob("*") if p.is_file()} - {src}):
        rel = d.relative_to(src)
        for k in range(1, len(rel.parts) + 1):
            target = "::/" + "/".join(rel.parts[:k])
            subprocess.run(
                ["mmd", "-D", "s", "-i", str(esp), target], capture_output=True, check=False
            )
    for file in sorted(p for p in src.rglob("*") if p.is_file()):
        _run("mcopy", "-i", str(esp), str(file), "::/" + str(file.relative_to(src)))
    return esp


def build_guest(
    name: str,
    *,
    root: Tree | None = None,
    boot: Tree | None = None,
    esp: Tree | None = None,
    fstab: str | None = None,
    with_esp: bool = True,
    bios_boot: bool = True,
    boot_code: bytes | None = None,
    part2: bytes | None = None,
    grub_bios: bool = True,
) -> Path:
    """A raw GPT disk with a Debian-like system, customised by the arguments. Cached.

    Partitions: 1 BIOS boot (1 MiB, when ``bios_boot``), 2 ESP (vfat, when ``with_esp``),
    3 root (ext4, the base tree overlaid with ``root``), 4 /boot (ext4, ``boot``). ``fstab``
    replaces the default fstab (which mounts all of them by UUID). ``boot_code`` is written
    into the first 440 bytes of sector 0 (e.g. GRUB's boot.img). ``part2`` (with
    ``with_esp=False``) is written at the start of partition 2 (e.g. a LUKS header). With
    ``bios_boot`` and ``grub_bios`` (the default) GRUB is installed for BIOS as
    grub-bios-setup does: core.img in partition 1 and, unless ``boot_code`` is given, GRUB's
    boot.img in sector 0, so that the disk boots with BIOS and with UEFI.
    """
    spec = repr(
        (
            name,
            sorted((root or {}).items(), key=str),
            sorted((boot or {}).items(), key=str),
            sorted((esp or {}).items(), key=str),
            fstab,
            with_esp,
            bios_boot,
            boot_code,
            part2,
            grub_bios and bios_boot,
            BASE_ROOT,
            BASE_BOOT,
            BASE_ESP,
            GOOD_FSTAB,
        )
    )
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    final = builders.cached(f"guest-{name}-{digest}.raw")
    if final.exists():
        return final
    default_fstab = (
        GOOD_FSTAB
        if with_esp
        else GOOD_FSTAB.replace("UUID=1234-ABCD /boot/efi vfat umask=0077 0 1\n", "")
    )
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        t = Path(tmp)
        write_tree(t / "root", BASE_ROOT, {"etc/fstab": fstab or default_fstab}, root or {})
        write_tree(t / "boot", BASE_BOOT, boot or {})
        env = {**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"}
        _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-U",
            ROOT_UUID,
            "-L",
            "rootfs",
            "-d",
            str(t / "root"),
            str(t / "root.img"),
            "64M",
            env=env,
        )
        _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-U",
            BOOT_UUID,
            "-d",
            str(t / "boot"),
            str(t / "boot.img"),
            "16M",
            env=env,
        )
        disk = t / "disk.raw"
        with open(disk, "wb") as f:
            f.truncate(128 * MiB)
        bios_type = (
            "21686148-6449-6E6F-744E-656564454649"
            if bios_boot
            else "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        )
        esp_type = (
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
            if with_esp
            else "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        )
        layout = (
            "label: gpt\n"
            f"start=2048, size=2048, type={bios_type}\n"
            f"start=4096, size=67584, type={esp_type}\n"
            "start=71680, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
            "start=202752, size=32768, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
        )
        proc = subprocess.run(
            ["sfdisk", "-q", str(disk)], input=layout, text=True, capture_output=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"sfdisk failed: {proc.stderr}")
        if with_esp:
            _write_part(disk, _esp_image(t, {**BASE_ESP, **(esp or {})}), 4096 * 512)
        elif part2 is not None:
            with open(disk, "r+b") as f:
                f.seek(4096 * 512)
                f.write(part2)
        _write_part(disk, t / "root.img", 71680 * 512)
        _write_part(disk, t / "boot.img", 202752 * 512)
        if bios_boot and grub_bios:
            with open(disk, "r+b") as f:
                f.seek(CORE_LBA * 512)
                f.write(grub_core_img())
            boot_code = grub_boot_code() if boot_code is None else boot_code
        if boot_code is not None:
            with open(disk, "r+b") as f:
                f.write(boot_code[:440])
        os.replace(disk, final)
    return final


_STAGES = ("cloud-init-local", "cloud-init", "cloud-config", "cloud-final")

#: What a guest prepared for the cloud has on top of the bare base: root locked, cloud-init
#: installed and enabled with the OpenStack datasource, DHCP on eth0.
CLOUD_READY: dict[str, str | bytes | Symlink | None] = {
    "etc/shadow": "root:*:19700:0:99999:7:::\n",
    "usr/bin/cloud-init": "#!/usr/bin/python3\n",
    "etc/cloud/cloud.cfg": "users:\n  - default\ndisable_root: true\n",
    "etc/cloud/cloud.cfg.d/99_openstack.cfg": (
        "datasource_list: [ OpenStack ]\ndatasource:\n  OpenStack:\n"
        "    metadata_urls: ['http://169.254.169.254']\nnetwork: {config: disabled}\n"
        "manage_etc_hosts: localhost\n"
    ),
    "etc/network/interfaces": "auto lo\niface lo inet loopback\n\nauto eth0\n"
    "iface eth0 inet dhcp\n",
    **{
        f"etc/systemd/system/cloud-init.target.wants/{s}.service": Symlink(
            f"/lib/systemd/system/{s}.service"
        )
        for s in _STAGES
    },
}


#: grub.cfg of the cloud-ready guest (on its /boot partition): root by UUID, serial console.
READY_GRUB_CFG = f"""set default=0
set timeout=1
menuentry 'Debian GNU/Linux' {{
    linux /vmlinuz-6.1.0-13-amd64 root=UUID={ROOT_UUID} ro console=tty0 console=ttyS0,115200
}}
"""


def synthetic_guest(*, data_disk: bool = False, nofail: bool = False) -> Path:
    """A guest ready for the cloud (:data:`CLOUD_READY` on the base, a grub.cfg with a serial
    console); ``data_disk`` adds :data:`DATA_DISK_LINE` to fstab, ``nofail`` adds it with
    ``nofail``."""
    boot = {"grub/grub.cfg": READY_GRUB_CFG}
    if data_disk:
        return build_guest(
            "datadisk", root=CLOUD_READY, boot=boot, fstab=GOOD_FSTAB + DATA_DISK_LINE + "\n"
        )
    if nofail:
        line = DATA_DISK_LINE.replace("defaults", "defaults,nofail")
        return build_guest("nofail", root=CLOUD_READY, boot=boot, fstab=GOOD_FSTAB + line + "\n")
    return build_guest("ready", root=CLOUD_READY, boot=boot)


def empty_disk() -> Path:
    """A 64 MiB raw disk with an MBR and one empty Linux partition: no system on it."""
    final = builders.cached("guest-empty.raw")
    if not final.exists():
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.truncate(64 * MiB)
        proc = subprocess.run(
            ["sfdisk", "-q", str(tmp)],
            input="label: dos\n,,83\n",
            text=True,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"sfdisk failed: {proc.stderr}")
        os.replace(tmp, final)
    return final
