"""Real, bootable Debian 12 guest disk images for the tests and benchmarks, built and cached.

One root filesystem tree is made once with ``mmdebstrap`` from the Debian mirror this machine is
configured for, and kept as a tarball. Each *layout* unpacks it, writes the guest's own
configuration (fstab with the UUIDs of the filesystems made here, hostname, network, cloud-init,
root password, GRUB) and lays it out on a sparse 3 GiB raw disk with the ordinary tools:
``sfdisk``, ``mkfs.ext4 -d``, ``mkfs.btrfs --rootdir``, ``mkfs.xfs`` + a loop mount, ``mkfs.vfat``
+ mtools, LVM written through a loop device with activation off (there is no device-mapper here),
and GRUB's ``core.img``/``boot.img``/``BOOTX64.EFI`` made with ``grub-mkimage`` inside the tree and
installed the way ``grub-bios-setup`` does it. Other formats come from ``qemu-img convert`` on
request. How each step works, what the layouts hold and which defects are seeded:
``docs/test-images.md``.

Usable from tests (``guest_images.guest_image("gpt-bios-esp-ext4", "qcow2")``) and from the shell::

    scripts/build-guest-images [--layout NAME ...] [--formats qcow2 vmdk ...] [--boot-test]

The host-side primitives (commands, partitions, loop devices, GRUB, QEMU) are in
``guest_tools.py``. Every artefact is written under a temporary name and published with
``os.replace``; a lock file serialises builders running in parallel; loop devices and mounts are
released in ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # run as a script: tests/ on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import builders
from support.guest_tools import (
    GPT_BIOS_BOOT,
    GPT_ESP,
    GPT_LINUX,
    SECTOR,
    GuestImageError,
    Part,
    boot_to_login,
    grub_mkimage,
    install_bios_grub,
    log,
    loop_device,
    lvm_args,
    mounted,
    partition,
    put_file,
    require,
    run,
    run_bytes,
    sparse_file,
)

#: Bump to rebuild the root filesystem tarball (package list or mmdebstrap options changed).
ROOTFS_VERSION = "1"
#: Bump to rebuild every layout (anything in the layout code changed).
LAYOUT_VERSION = "3"

GiB = 1 << 30
MiB = 1 << 20
DISK_SIZE = 3 * GiB
SUITE = "bookworm"
HOSTNAME = "imageport-guest"

#: Packages of the guest; grub-*-bin give grub-mkimage its modules inside the tree, lvm2 puts
#: the LVM hook into the initrd (layout b boots from an LV), xfsprogs/btrfs-progs are what a real
#: image of those layouts carries, zstd lets the tree unpack its own initrd; e2fsprogs and
#: dosfstools give the boot its fsck and cloud-init its resize2fs, dbus lets logind run (none of
#: them is Essential, so the apt variant leaves them out).
PACKAGES = (
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "ifupdown",
    "isc-dhcp-client",
    "cloud-init",
    "openssh-server",
    "netbase",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "lvm2",
    "xfsprogs",
    "btrfs-progs",
    "zstd",
    "e2fsprogs",
    "dosfstools",
    "dbus",
)

#: The seeded weak root password of the defects variant (and its sha512-crypt hash is made with
#: ``openssl passwd -6``).
WEAK_PASSWORD = "123456"  # noqa: S105 - a defect on purpose
#: MAC address and static address seeded in the defects variant.
DEFECT_MAC = "52:54:00:12:34:56"
DEFECT_ADDRESS = "192.168.10.23/24"

LAYOUTS = (
    "gpt-bios-esp-ext4",
    "mbr-boot-lvm-xfs",
    "gpt-esp-btrfs",
    "gpt-bios-esp-ext4-defects",
    "gpt-bios-esp-ext4-fixable",
)

#: qemu-img output format and options for each format name this module offers.
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "raw": ("raw", ()),
    "qcow2": ("qcow2", ()),
    "vmdk": ("vmdk", ()),
    "vmdk-stream": ("vmdk", ("-o", "subformat=streamOptimized")),
    "vpc": ("vpc", ("-o", "subformat=dynamic,force_size=on")),  # exactly 3 GiB, not CHS-rounded
    "vhdx": ("vhdx", ()),
    "vdi": ("vdi", ()),
    "qed": ("qed", ()),
}


ESP_SIZE = 100 * MiB
BOOT_SIZE = 256 * MiB
SWAP_LV_SIZE = 128 * MiB


# --------------------------------------------------------------------------- cache


def guest_dir() -> Path:
    d = builders.cache_dir() / "guest"
    d.mkdir(parents=True, exist_ok=True)
    return d


def apt_sources() -> Path:
    """The host's Debian mirror configuration, handed to mmdebstrap as it is."""
    for p in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if p.exists() and p.stat().st_size > 0:
            return p
    raise GuestImageError("no Debian mirror configured (/etc/apt/sources.list.d/debian.sources)")


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


def rootfs_key() -> str:
    return _key(ROOTFS_VERSION, SUITE, *PACKAGES)


def layout_key() -> str:
    return _key(LAYOUT_VERSION, rootfs_key())


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Serialise builders across processes (tests, benchmarks and the CLI share the cache)."""
    with open(guest_dir() / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prune(pattern: str, keep: Path) -> None:
    """Remove cache entries of older builder versions (they are large)."""
    for p in guest_dir().glob(pattern):
        if p != keep:
            log(f"removing stale {p.name}")
            shutil.rmtree(p) if p.is_dir() else p.unlink()


# --------------------------------------------------------------------------- root tree


def rootfs_tarball() -> Path:
    """The mmdebstrap'd Debian 12 tree as a tarball, built once (about 2 minutes)."""
    final = guest_dir() / f"rootfs-{rootfs_key()}.tar"
    if final.exists():
        return final
    with build_lock():
        if final.exists():
            return final
        require("mmdebstrap")
        tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")  # mmdebstrap wants ".tar"
        log(f"mmdebstrap {SUITE} ({len(PACKAGES)} packages) -> {final.name}, about 2 minutes")
        t0 = time.monotonic()
        try:
            run(
                "mmdebstrap",
                "--variant=apt",
                "--mode=root",
                "--quiet",
                "--include=" + ",".join(PACKAGES),
                # Let the tree's own apt state be small; nothing is installed later.
                '--aptopt=Acquire::Languages "none"',
                SUITE,
                tmp,
                apt_sources(),
            )
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        log(f"rootfs ready in {time.monotonic() - t0:.0f} s ({final.stat().st_size >> 20} MiB)")
        _prune("rootfs-*.tar", final)
    return final


def unpack_tree(dest: Path) -> None:
    dest.mkdir(parents=True)
    require("tar")
    run(
        "tar",
        "-C",
        dest,
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "-xpf",
        rootfs_tarball(),
    )


def kernel_version(tree: Path) -> str:
    found = sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))
    if not found:
        raise GuestImageError(f"no kernel in {tree}/boot")
    return found[-1]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class Ids:
    """Identifiers of the filesystems of one layout, chosen before they are made."""

    root_uuid: str
    boot_uuid: str  # the separate ext4 /boot of layout b (unused elsewhere)
    esp_id: str  # FAT volume id, 8 hex digits (blkid shows it as XXXX-XXXX)
    swap_uuid: str

    @property
    def esp_uuid(self) -> str:
        return f"{self.esp_id[:4]}-{self.esp_id[4:]}".upper()

    @classmethod
    def fresh(cls) -> Ids:
        return cls(str(uuid.uuid4()), str(uuid.uuid4()), secrets.token_hex(4), str(uuid.uuid4()))


def password_hash(password: str) -> str:
    require("openssl")
    return run("openssl", "passwd", "-6", "-stdin", input_bytes=password.encode()).strip()


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def set_root_password(tree: Path, crypted: str) -> None:
    shadow = tree / "etc/shadow"
    lines = shadow.read_text().splitlines()
    out = []
    for line in lines:
        fields = line.split(":")
        if fields[0] == "root":
            fields[1] = crypted
        out.append(":".join(fields))
    shadow.write_text("\n".join(out) + "\n")
    shadow.chmod(0o640)


def configure(tree: Path, layout: str, ids: Ids) -> str:
    """Write the guest's configuration; return the kernel command line (without root=)."""
    defects = layout.endswith("-defects")
    write(tree / "etc/hostname", HOSTNAME + "\n")
    write(
        tree / "etc/hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    write(tree / "etc/fstab", fstab(layout, ids))
    if layout != "mbr-boot-lvm-xfs":  # the layouts with an ESP mount it at /boot/efi
        (tree / "boot/efi").mkdir(parents=True, exist_ok=True)
    cloud_d = tree / "etc/cloud/cloud.cfg.d"
    if defects:
        # No datasource configuration at all (not even the package's debconf default).
        (cloud_d / "90_dpkg.cfg").unlink(missing_ok=True)
        write(
            tree / "etc/network/interfaces",
            "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
            f"auto eth0\niface eth0 inet static\n    address {DEFECT_ADDRESS}\n"
            f"    gateway 192.168.10.1\n    hwaddress ether {DEFECT_MAC}\n",
        )
        write(
            tree / "etc/udev/rules.d/70-persistent-net.rules",
            "# This file was automatically generated by the udev persistent-net generator.\n"
            'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", '
            f'ATTR{{address}}=="{DEFECT_MAC}", ATTR{{dev_id}}=="0x0", ATTR{{type}}=="1", '
            'KERNEL=="eth*", NAME="eth0"\n',
        )
        set_root_password(tree, password_hash(WEAK_PASSWORD))
        strip_virtio_from_initrd(tree)
        return "ro quiet"
    write(cloud_d / "99-imageport-datasource.cfg", "datasource_list: [ OpenStack ]\n")
    if layout.endswith("-fixable"):
        # Two defects that still let a server boot, log in and be fixed over SSH: udev rules
        # naming a NIC by a MAC no server has (the server's NIC stays eth0), and a data disk
        # mounted "nofail" without "noauto" (see fstab()).
        write(
            tree / "etc/udev/rules.d/70-persistent-net.rules",
            "# This file was automatically generated by the udev persistent-net generator.\n"
            'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", '
            f'ATTR{{address}}=="{DEFECT_MAC}", ATTR{{dev_id}}=="0x0", ATTR{{type}}=="1", '
            'KERNEL=="eth*", NAME="eth0"\n',
        )
    for key in (tree / "etc/ssh").glob("ssh_host_*"):  # cloud-init makes them on first boot
        key.unlink()
    write(
        tree / "etc/network/interfaces",
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
        "allow-hotplug eth0\niface eth0 inet dhcp\n",
    )
    set_root_password(tree, password_hash(secrets.token_urlsafe(24)))
    return "ro net.ifnames=0 console=tty0 console=ttyS0,115200"


def fstab(layout: str, ids: Ids) -> str:
    head = "# /etc/fstab: static file system information.\n"
    esp = f"UUID={ids.esp_uuid}\t/boot/efi\tvfat\tumask=0077\t0\t1\n"
    if layout.startswith("gpt-bios-esp-ext4"):
        text = head + f"UUID={ids.root_uuid}\t/\text4\terrors=remount-ro\t0\t1\n" + esp
        if layout.endswith("-defects"):
            text += f"UUID={uuid.uuid4()}\t/data\text4\tdefaults\t0\t2\n"
        if layout.endswith("-fixable"):
            text += f"UUID={uuid.uuid4()}\t/data\text4\tdefaults,nofail\t0\t2\n"
        return text
    if layout == "mbr-boot-lvm-xfs":
        return head + (
            "/dev/mapper/vg0-root\t/\txfs\tdefaults\t0\t0\n"
            f"UUID={ids.boot_uuid}\t/boot\text4\tdefaults\t0\t2\n"
            "/dev/mapper/vg0-swap\tnone\tswap\tsw\t0\t0\n"
        )
    if layout == "gpt-esp-btrfs":
        return head + f"UUID={ids.root_uuid}\t/\tbtrfs\tdefaults\t0\t0\n" + esp
    raise GuestImageError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")


def grub_cfg(tree: Path, boot_path: str, boot_uuid: str, cmdline: str) -> str:
    """grub.cfg as Debian's update-grub would roughly write it; ``boot_path`` is where the
    kernel lives inside the filesystem GRUB searches (``/boot`` or ``""`` for a /boot fs)."""
    kver = kernel_version(tree)
    return (
        "# written by imageport's tests/support/guest_images.py\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial console\nterminal_output serial console\n"
        "set timeout=1\nset default=0\n\n"
        "menuentry 'Debian GNU/Linux 12' {\n"
        f"\tsearch --no-floppy --fs-uuid --set=root {boot_uuid}\n"
        f"\tlinux\t{boot_path}/vmlinuz-{kver} {cmdline}\n"
        f"\tinitrd\t{boot_path}/initrd.img-{kver}\n"
        "}\n"
    )


def strip_virtio_from_initrd(tree: Path) -> None:
    """Rebuild the initrd without any virtio module (the image cannot find a virtio disk).

    The tree's own ``unmkinitramfs`` unpacks it, the modules are deleted, the tree's ``depmod``
    rewrites modules.dep, and the host's cpio + zstd pack it again as mkinitramfs does.
    """
    require("chroot", "cpio", "zstd")
    kver = kernel_version(tree)
    initrd = tree / f"boot/initrd.img-{kver}"
    work = tree / "tmp/initrd-work"
    run("chroot", tree, "unmkinitramfs", f"/boot/initrd.img-{kver}", "/tmp/initrd-work")
    parts = [work / "early", work / "main"] if (work / "main").exists() else [work]
    main = parts[-1]
    removed = [
        p
        for p in main.rglob("*")
        if p.name.startswith("virtio") and p.suffix in (".ko", ".xz", ".zst")
    ]
    if not removed:
        raise GuestImageError("initrd has no virtio module to remove")
    for p in removed:
        p.unlink()
    rel = main.relative_to(tree)
    run("chroot", tree, "depmod", "-b", f"/{rel}", kver)
    blobs = []
    for part in parts[:-1]:
        blobs.append(_cpio(part))
    blobs.append(run_bytes(["zstd", "-q", "-3", "-c"], _cpio(main)))
    initrd.write_bytes(b"".join(blobs))
    shutil.rmtree(work)
    log(f"defects: removed from the initrd: {' '.join(sorted(p.name for p in removed))}")


def _cpio(root: Path) -> bytes:
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = ("\n".join([".", *names]) + "\n").encode()
    proc = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
        cwd=root,
        input=listing,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise GuestImageError(f"cpio failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


# --------------------------------------------------------------------------- filesystems


def make_ext4(path: Path, size: int, src: Path, fs_uuid: str, label: str) -> None:
    require("mkfs.ext4")
    sparse_file(path, size)
    run("mkfs.ext4", "-q", "-F", "-U", fs_uuid, "-L", label, "-d", src, path)


def make_esp(work: Path, tree: Path, ids: Ids, prefix: str) -> Path:
    """A FAT32 EFI system partition holding GRUB as EFI/BOOT/BOOTX64.EFI (and EFI/debian)."""
    require("mkfs.vfat", "mmd", "mcopy")
    efi = grub_mkimage(tree, "x86_64-efi", prefix, ("part_gpt", "part_msdos"))
    esp = sparse_file(work / "esp.img", ESP_SIZE)
    run("mkfs.vfat", "-F", "32", "-i", ids.esp_id, "-n", "EFI", esp)
    run("mmd", "-i", esp, "::/EFI", "::/EFI/BOOT", "::/EFI/debian")
    run("mcopy", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI")
    run("mcopy", "-i", esp, efi, "::/EFI/debian/grubx64.efi")
    return esp


# --------------------------------------------------------------------------- layouts


def build_gpt_bios_esp_ext4(disk: Path, work: Path, tree: Path, layout: str) -> None:
    ids = Ids.fresh()
    cmdline = configure(tree, layout, ids)
    write(
        tree / "boot/grub/grub.cfg",
        grub_cfg(tree, "/boot", ids.root_uuid, f"root=UUID={ids.root_uuid} {cmdline}"),
    )
    parts = partition(
        disk,
        "label: gpt\nunit: sectors\n"
        f'start=2048, size=2048, type={GPT_BIOS_BOOT}, name="BIOS boot"\n'
        f'start=4096, size={ESP_SIZE // SECTOR}, type={GPT_ESP}, name="EFI"\n'
        f'type={GPT_LINUX}, name="root"\n',
    )
    bios, esp_part, root_part = parts
    prefix = "(hd0,gpt3)/boot/grub"
    put_file(disk, make_esp(work, tree, ids, prefix), esp_part.offset)
    install_bios_grub(disk, tree, bios.start, bios.size, prefix, ("part_gpt",))
    clean_tmp(tree)
    log(f"{layout}: mkfs.ext4 -d (root {root_part.nbytes >> 20} MiB)")
    make_ext4(work / "root.img", root_part.nbytes, tree, ids.root_uuid, "root")
    put_file(disk, work / "root.img", root_part.offset)


def build_gpt_esp_btrfs(disk: Path, work: Path, tree: Path, layout: str) -> None:
    require("mkfs.btrfs")
    ids = Ids.fresh()
    cmdline = configure(tree, layout, ids)
    write(
        tree / "boot/grub/grub.cfg",
        grub_cfg(tree, "/boot", ids.root_uuid, f"root=UUID={ids.root_uuid} {cmdline}"),
    )
    parts = partition(
        disk,
        "label: gpt\nunit: sectors\n"
        f'start=2048, size={ESP_SIZE // SECTOR}, type={GPT_ESP}, name="EFI"\n'
        f'type={GPT_LINUX}, name="root"\n',
    )
    esp_part, root_part = parts
    put_file(disk, make_esp(work, tree, ids, "(hd0,gpt2)/boot/grub"), esp_part.offset)
    clean_tmp(tree)
    log(f"{layout}: mkfs.btrfs --rootdir (root {root_part.nbytes >> 20} MiB)")
    root = sparse_file(work / "root.img", root_part.nbytes)
    run("mkfs.btrfs", "-q", "-f", "-U", ids.root_uuid, "-L", "root", "--rootdir", tree, root)
    put_file(disk, root, root_part.offset)


def build_mbr_boot_lvm_xfs(disk: Path, work: Path, tree: Path, layout: str) -> None:
    require("mkfs.xfs", "pvcreate", "mkswap")
    ids = Ids.fresh()
    cmdline = configure(tree, layout, ids)
    write(
        tree / "boot/grub/grub.cfg",
        grub_cfg(tree, "", ids.boot_uuid, f"root=/dev/mapper/vg0-root {cmdline}"),
    )
    parts = partition(
        disk,
        "label: dos\nunit: sectors\n"
        f"start=2048, size={BOOT_SIZE // SECTOR}, type=83, bootable\n"
        "type=8e\n",
    )
    boot_part, pv_part = parts
    install_bios_grub(disk, tree, 1, 2047, "(hd0,msdos1)/grub", ("part_msdos",))
    clean_tmp(tree)
    make_ext4(work / "boot.img", boot_part.nbytes, tree / "boot", ids.boot_uuid, "boot")
    put_file(disk, work / "boot.img", boot_part.offset)

    extents = lvm_layout(disk, pv_part)
    log(f"{layout}: LVM vg0 {extents}; mkfs.xfs + loop mount + cp -a")
    root_off, root_size = extents["root"]
    root = sparse_file(work / "root.img", root_size)
    run("mkfs.xfs", "-q", "-f", "-m", f"uuid={ids.root_uuid}", "-L", "root", root)
    with loop_device(root) as dev, mounted(dev, "xfs") as mnt:
        for entry in tree.iterdir():
            if entry.name != "boot":
                run("cp", "-a", entry, mnt)
        (mnt / "boot").mkdir(mode=0o755)
    put_file(disk, root, pv_part.offset + root_off)
    swap_off, swap_size = extents["swap"]
    swap = sparse_file(work / "swap.img", swap_size)
    run("mkswap", "-U", ids.swap_uuid, "-L", "swap", swap)
    put_file(disk, swap, pv_part.offset + swap_off)


def lvm_layout(disk: Path, pv_part: Part) -> dict[str, tuple[int, int]]:
    """Write PV/VG/LV metadata into the partition; return each LV's (offset in PV, size).

    "swap" is made first so that "root" does not start at the first extent.
    """
    out: dict[str, tuple[int, int]] = {}
    with loop_device(disk, pv_part.offset, pv_part.nbytes) as dev:
        a = lvm_args(dev)
        run("pvcreate", "-q", *a, dev)
        run("vgcreate", "-q", *a, "vg0", dev)
        run("lvcreate", "-q", *a, "-an", "-Zn", "-L", f"{SWAP_LV_SIZE}b", "-n", "swap", "vg0")
        run("lvcreate", "-q", *a, "-an", "-Zn", "-l", "100%FREE", "-n", "root", "vg0")
        pe_start = int(
            run(
                "pvs", *a, "--noheadings", "--nosuffix", "--units", "b", "-o", "pe_start", dev
            ).split()[0]
        )
        extent = int(
            run(
                "vgs",
                *a,
                "--noheadings",
                "--nosuffix",
                "--units",
                "b",
                "-o",
                "vg_extent_size",
                "vg0",
            ).split()[0]
        )
        rows = run(
            "lvs", *a, "--noheadings", "--segments", "-o", "lv_name,seg_pe_ranges", "vg0"
        ).split("\n")
    for row in rows:
        if not row.strip():
            continue
        name, ranges = row.split()
        m = re.fullmatch(r"\S+:(\d+)-(\d+)", ranges)
        if m is None or name in out:
            raise GuestImageError(f"LV {name} is not one linear segment: {ranges}")
        first, last = int(m.group(1)), int(m.group(2))
        out[name] = (pe_start + first * extent, (last - first + 1) * extent)
    return out


def clean_tmp(tree: Path) -> None:
    for p in (tree / "tmp").iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


BUILDERS = {
    "gpt-bios-esp-ext4": build_gpt_bios_esp_ext4,
    "gpt-bios-esp-ext4-defects": build_gpt_bios_esp_ext4,
    "gpt-bios-esp-ext4-fixable": build_gpt_bios_esp_ext4,
    "mbr-boot-lvm-xfs": build_mbr_boot_lvm_xfs,
    "gpt-esp-btrfs": build_gpt_esp_btrfs,
}


def images_dir() -> Path:
    d = guest_dir() / f"images-{layout_key()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def guest_raw(layout: str) -> Path:
    """The sparse 3 GiB raw disk of ``layout``, built when missing."""
    if layout not in BUILDERS:
        raise GuestImageError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    final = images_dir() / f"{layout}.raw"
    if final.exists():
        return final
    rootfs_tarball()
    with build_lock():
        if final.exists():
            return final
        _prune("images-*", images_dir())
        t0 = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".work-{layout}-", dir=guest_dir()))
        try:
            log(f"{layout}: unpacking the tree")
            tree = work / "tree"
            unpack_tree(tree)
            disk = sparse_file(work / "disk.raw", DISK_SIZE)
            BUILDERS[layout](disk, work, tree, layout)
            os.replace(disk, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"{layout}: built in {time.monotonic() - t0:.0f} s -> {final}")
    return final


def guest_image(layout: str, fmt: str = "raw") -> Path:
    """``layout`` as a disk image of ``fmt`` (a key of :data:`FORMATS`), cached."""
    if fmt not in FORMATS:
        raise GuestImageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    raw = guest_raw(layout)
    if fmt == "raw":
        return raw
    qfmt, opts = FORMATS[fmt]
    final = raw.with_name(f"{layout}.{fmt}")
    if final.exists():
        return final
    with build_lock():
        if final.exists():
            return final
        require("qemu-img")
        tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
        t0 = time.monotonic()
        try:
            run("qemu-img", "convert", "-f", "raw", "-O", qfmt, *opts, raw, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        log(f"{layout}.{fmt}: converted in {time.monotonic() - t0:.1f} s")
    return final


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--layout",
        action="append",
        choices=LAYOUTS,
        help="layout to build (repeatable; default: all)",
    )
    ap.add_argument(
        "--formats",
        nargs="*",
        default=[],
        choices=list(FORMATS),
        help="also convert to these formats",
    )
    ap.add_argument(
        "--boot-test",
        action="store_true",
        help="boot gpt-bios-esp-ext4 under QEMU (BIOS and UEFI) to login:",
    )
    args = ap.parse_args(argv)
    try:
        for layout in args.layout or LAYOUTS:
            for fmt in ["raw", *args.formats]:
                print(guest_image(layout, fmt))
        if args.boot_test:
            image = guest_raw("gpt-bios-esp-ext4")
            for fw in ("bios", "uefi"):
                log(f"boot test ({fw}): {boot_to_login(image, fw):.0f} s to login:")
    except GuestImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
