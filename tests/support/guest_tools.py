"""Host-side primitives for building guest disks: commands, partition tables, loop devices,
mounts, LVM without device-mapper, GRUB installed like grub-bios-setup, and the QEMU boot check.

Used by ``guest_images.py`` (which builds the layouts) and by its tests. Everything here calls
the ordinary Linux tools and fails with :class:`GuestImageError` naming the command (or the
Debian package to install when the command is missing). GRUB's boot sector offsets come from
GRUB's ``include/grub/i386/pc/boot.h``, as ``docs/test-images.md`` describes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512

#: Debian package that provides each host command used here.
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "sfdisk": "fdisk",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.xfs": "xfsprogs",
    "mkfs.btrfs": "btrfs-progs",
    "mkfs.vfat": "dosfstools",
    "mmd": "mtools",
    "mcopy": "mtools",
    "pvcreate": "lvm2",
    "losetup": "mount",
    "mount": "mount",
    "cpio": "cpio",
    "zstd": "zstd",
    "openssl": "openssl",
    "tar": "tar",
    "chroot": "coreutils",
    "mkswap": "util-linux",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "debugfs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "blkid": "util-linux",
    "xfs_db": "xfsprogs",
    "btrfs": "btrfs-progs",
    "mdir": "mtools",
    "mtype": "mtools",
    "file": "file",
    "pvs": "lvm2",
    "vgs": "lvm2",
    "lvs": "lvm2",
    "dd": "coreutils",
    "grub-mkimage": "grub-common",
    "cp": "coreutils",
}

#: GPT partition type GUIDs.
GPT_BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
GPT_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

#: GRUB modules built into the images (nothing is loaded from disk at boot).
GRUB_COMMON_MODULES = (
    "normal",
    "linux",
    "configfile",
    "serial",
    "terminal",
    "search",
    "search_fs_uuid",
    "echo",
    "test",
    "ext2",
    "xfs",
    "btrfs",
    "fat",
)


class GuestImageError(RuntimeError):
    """A guest image could not be built; the message names the step or the missing tool."""


def log(msg: str) -> None:
    print(f"[guest-images {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def require(*tools: str) -> None:
    """Fail with the Debian package to install when a host command is missing."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise GuestImageError(
                f"{tool} is not installed: apt-get install {TOOLS.get(tool, tool)}"
            )


def run(*args: str | Path, cwd: Path | None = None, input_bytes: bytes | None = None) -> str:
    """Run a command; return its stdout, raise with its stderr when it fails."""
    argv = [str(a) for a in args]
    require(argv[0])
    proc = subprocess.run(argv, capture_output=True, input=input_bytes, cwd=cwd, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise GuestImageError(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return proc.stdout.decode(errors="replace")


def run_bytes(argv: list[str], data: bytes) -> bytes:
    """Run a command with ``data`` on stdin; return its stdout as bytes."""
    require(argv[0])
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise GuestImageError(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def sha512_crypt(password: str, salt: str) -> str:
    """``password`` hashed as ``/etc/shadow`` keeps it (``$6$<salt>$...``), by openssl."""
    line = (password + "\n").encode()
    return run("openssl", "passwd", "-6", "-salt", salt, "-stdin", input_bytes=line).strip()


@dataclass(frozen=True, slots=True)
class Part:
    """A partition as sfdisk reports it (sectors)."""

    start: int
    size: int

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def nbytes(self) -> int:
        return self.size * SECTOR


def partition(disk: Path, script: str) -> list[Part]:
    require("sfdisk")
    run("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk, input_bytes=script.encode())
    table = json.loads(run("sfdisk", "--json", disk))["partitiontable"]
    return [Part(int(p["start"]), int(p["size"])) for p in table["partitions"]]


def put_file(disk: Path, src: Path, offset: int) -> None:
    """Copy ``src`` into ``disk`` at ``offset``, keeping holes (dd conv=notrunc,sparse)."""
    run(
        "dd",
        f"if={src}",
        f"of={disk}",
        "bs=1M",
        "conv=notrunc,sparse",
        f"seek={offset}",
        "oflag=seek_bytes",
        "status=none",
    )


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def grub_mkimage(tree: Path, target: str, prefix: str, extra: tuple[str, ...]) -> Path:
    """``grub-mkimage`` run inside the tree (its grub-*-bin packages hold the modules)."""
    require("chroot")
    out = tree / f"tmp/grub-{target}.img"
    run(
        "chroot",
        tree,
        "grub-mkimage",
        "-O",
        target,
        "-o",
        f"/tmp/{out.name}",
        "-p",
        prefix,
        *extra,
        *GRUB_COMMON_MODULES,
    )
    return out


def install_bios_grub(
    disk: Path, tree: Path, core_lba: int, room_sectors: int, prefix: str, extra: tuple[str, ...]
) -> None:
    """What grub-bios-setup does, with the tree's GRUB: see :func:`place_bios_grub`."""
    core = grub_mkimage(tree, "i386-pc", prefix, ("biosdisk", *extra)).read_bytes()
    boot = (tree / "usr/lib/grub/i386-pc/boot.img").read_bytes()
    place_bios_grub(disk, core, boot, core_lba, room_sectors)


def place_bios_grub(
    disk: Path, core_img: bytes, boot_img: bytes, core_lba: int, room_sectors: int
) -> None:
    """What grub-bios-setup does: ``core_img`` at ``core_lba`` with its block list patched,
    ``boot_img``'s code in sector 0 pointing at it (offsets from GRUB's
    include/grub/i386/pc/boot.h)."""
    core = bytearray(core_img)
    sectors = -(-len(core) // SECTOR)
    if sectors > room_sectors:
        raise GuestImageError(f"core.img needs {sectors} sectors, only {room_sectors} reserved")
    # The first block-list entry sits in the last 12 bytes of core.img's first sector:
    # start LBA (u64), sector count (u16), load segment (u16).
    core[SECTOR - 12 : SECTOR] = (
        (core_lba + 1).to_bytes(8, "little")
        + (sectors - 1).to_bytes(2, "little")
        + (0x820).to_bytes(2, "little")
    )
    with open(disk, "r+b") as f:
        mbr = bytearray(f.read(SECTOR))
        mbr[:440] = boot_img[:440]  # code only: keep disk signature and partition table
        mbr[0x5C:0x64] = core_lba.to_bytes(8, "little")  # kernel_sector
        mbr[0x64] = 0xFF  # boot_drive: use the drive the BIOS booted from
        mbr[0x66:0x68] = b"\x90\x90"  # NOP out the floppy/drive check
        f.seek(0)
        f.write(mbr)
        f.seek(core_lba * SECTOR)
        f.write(core)


@contextlib.contextmanager
def loop_device(
    path: Path, offset: int = 0, size: int = 0, read_only: bool = False
) -> Iterator[str]:
    require("losetup")
    args = ["losetup", "--find", "--show", f"--offset={offset}"]
    if size:
        args.append(f"--sizelimit={size}")
    if read_only:
        args.append("--read-only")
    dev = run(*args, path).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


@contextlib.contextmanager
def mounted(dev_or_file: str | Path, fstype: str, options: str = "") -> Iterator[Path]:
    require("mount")
    mnt = Path(tempfile.mkdtemp(prefix="imageport-mnt-"))
    try:
        run("mount", "-t", fstype, *(["-o", options] if options else []), dev_or_file, mnt)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", mnt], check=False, capture_output=True)
    finally:
        with contextlib.suppress(OSError):
            mnt.rmdir()


def lvm_args(dev: str) -> list[str]:
    """Options that make an LVM command see only ``dev`` and never touch the host's state."""
    return [
        "--devices",
        dev,
        "--config",
        "global { activation = 0 } backup { backup = 0 archive = 0 }",
    ]


def boot_tests_enabled() -> bool:
    """Booting under TCG takes about a minute per firmware: opt in with IMAGEPORT_BOOT_TESTS=1."""
    return os.environ.get("IMAGEPORT_BOOT_TESTS") == "1"


def boot_to_login(
    image: Path, firmware: str = "bios", timeout: float = 300.0, console_log: Path | None = None
) -> float:
    """Boot ``image`` (raw) under QEMU/TCG; return the seconds until ``login:`` on ttyS0.

    The disk is attached with ``snapshot=on`` so the cached image is never written; the serial
    console is copied to ``console_log`` when given, each line stamped with the seconds since start.
    """
    require("qemu-system-x86_64")
    argv = [
        "qemu-system-x86_64",
        "-machine",
        "accel=tcg",
        "-m",
        "1024",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",  # never the host's metadata service
        "-drive",
        f"file={image},format=raw,if=virtio,snapshot=on",
    ]
    with tempfile.TemporaryDirectory(prefix="imageport-boot-") as tmpd:
        if firmware == "uefi":
            code = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
            if not code.exists():
                raise GuestImageError("OVMF is not installed: apt-get install ovmf")
            varsf = Path(tmpd) / "vars.fd"
            shutil.copyfile("/usr/share/OVMF/OVMF_VARS_4M.fd", varsf)
            argv[2] = "q35,accel=tcg"
            argv += [
                "-drive",
                f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive",
                f"if=pflash,format=raw,unit=1,file={varsf}",
            ]
        t0 = time.monotonic()
        seen = b""
        with subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as proc:
            console = proc.stdout
            if console is None:  # pragma: no cover - stdout=PIPE always gives one
                raise GuestImageError("qemu-system-x86_64 gave no console pipe")
            try:
                while time.monotonic() - t0 < timeout:
                    if not select.select([console], [], [], 1.0)[0]:
                        continue
                    chunk = os.read(console.fileno(), 65536)
                    if not chunk:
                        break
                    seen = (seen + chunk)[-200_000:]
                    if console_log is not None:
                        stamp = f"[{time.monotonic() - t0:6.1f}] ".encode()
                        with open(console_log, "ab") as logf:
                            logf.write(chunk.replace(b"\n", b"\n" + stamp))
                    if b"login:" in seen:
                        return time.monotonic() - t0
            finally:
                proc.kill()
        tail = seen[-3000:].decode(errors="replace")
        raise GuestImageError(
            f"{image.name} ({firmware}) did not reach login: in "
            f"{timeout:.0f} s; console tail:\n{tail}"
        )
