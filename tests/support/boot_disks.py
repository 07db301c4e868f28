"""Disks that end a boot in each way the boot test tells apart, built and cached for its tests.

The Debian test images (``guest_images.py``) cover a good boot and the failures the tests seed
into copies of them (``tests/cli/test_boot_cli.py``). This module adds the rest:

* :func:`grub_disk` ``"no-config"``: a 32 MiB disk whose GRUB (the host's, installed as
  ``grub-bios-setup`` does) finds its modules but no ``grub.cfg``: it starts, then stops at its
  bare command line (``grub>``). ``"rescue"``: GRUB's prefix names a partition that does not
  exist, so it cannot even load its normal mode and stops at ``grub rescue>``. Both write to the
  serial console (an early configuration built into ``core.img`` turns it on, as a cloud image's
  ``grub.cfg`` does) and boot in seconds: the default test run boots them.
* :func:`debian_variant` ``"waits-for-disk"``: the Debian image whose ``/etc/fstab`` requires a
  data disk that is not attached, with no time limit (``x-systemd.device-timeout=0``): systemd
  waits for it for ever, showing ``Job dev-disk-by\x2dlabel-gone.device/start running``.
  ``"cloud-init"``: the Debian image whose cloud-init is told to use no datasource
  (``datasource_list: [ None ]``): it runs all its stages without a network and prints
  ``Cloud-init v. ... finished``. Each is a sparse copy of the cached Debian image with one small
  file changed in place (same length, in its data block: ext4 keeps no checksum of file data);
  they boot in minutes under TCG, behind ``IMAGEPORT_BOOT_TESTS=1``.

Everything is cached in the test cache (``$IMAGEPORT_TEST_CACHE``), written under a temporary
name and published with ``os.replace``, under the guest images' build lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from support import builders
from support import guest_images as gi
from support.guest_tools import (
    GuestImageError,
    log,
    partition,
    place_bios_grub,
    put_file,
    require,
    run,
    sparse_file,
)

#: Bump to rebuild every disk of this module.
BOOT_DISKS_VERSION = "2"
MiB = 1 << 20
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
DISK_SIZE = 32 * MiB
#: Built into core.img: what a cloud image's grub.cfg does first.
EARLY_CONFIG = (
    "serial --unit=0 --speed=115200\n"
    "terminal_input serial console\n"
    "terminal_output serial console\n"
)
GRUB_DISKS = {
    # name: the prefix GRUB looks for its modules and grub.cfg in
    "no-config": "(hd0,msdos1)/boot/grub",
    "rescue": "(hd0,msdos9)/boot/grub",
}
#: The label of the data disk the waits-for-disk variant requires (no disk has it; short, so
#: that systemd's status line names the whole unit within the console's 80 columns).
MISSING_LABEL = "gone"
#: The fstab of that variant: the root filesystem, then the missing disk, without ``nofail``.
WAITS_FSTAB = (
    "UUID={root}\t/\text4\terrors=remount-ro\t0\t1\n"
    f"LABEL={MISSING_LABEL}\t/data\text4\tx-systemd.device-timeout=0\t0\t2\n"
)
DEBIAN_VARIANTS = ("waits-for-disk", "cloud-init")


def _grub_version() -> str:
    require("grub-mkimage")
    return run("grub-mkimage", "--version").strip()


def _cache() -> Path:
    key = hashlib.sha256(f"{BOOT_DISKS_VERSION}\0{_grub_version()}".encode()).hexdigest()[:10]
    folder = builders.cache_dir() / f"boot-disks-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def _publishing(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final``, renamed to it when the block succeeds."""
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def grub_disk(name: str) -> Path:
    """The cached raw disk ``name`` (a key of :data:`GRUB_DISKS`), built when missing."""
    if name not in GRUB_DISKS:
        raise GuestImageError(f"unknown GRUB disk {name!r}; known: {', '.join(GRUB_DISKS)}")
    final = _cache() / f"grub-{name}.raw"
    if final.exists():
        return final
    with gi.build_lock():
        if final.exists():
            return final
        with tempfile.TemporaryDirectory(prefix="imageport-grub-") as work_dir:
            work = Path(work_dir)
            with _publishing(final) as disk:
                _build_grub_disk(disk, work, GRUB_DISKS[name], with_modules=name == "no-config")
        log(f"grub-{name}.raw built")
    return final


def _build_grub_disk(disk: Path, work: Path, prefix: str, *, with_modules: bool) -> None:
    require("sfdisk", "mkfs.ext4", "grub-mkimage")
    sparse_file(disk, DISK_SIZE)
    (part,) = partition(disk, "label: dos\nunit: sectors\nstart=2048, type=83, bootable\n")
    tree = work / "fs"
    grub = tree / "boot" / "grub"
    grub.mkdir(parents=True)
    if with_modules:  # GRUB's modules where the prefix says; no grub.cfg beside them
        shutil.copytree(
            GRUB_DIR, grub / "i386-pc", ignore=shutil.ignore_patterns("*.img", "*.image")
        )
    fs = sparse_file(work / "fs.img", part.nbytes)
    run("mkfs.ext4", "-q", "-F", "-L", "grub", "-d", tree, fs)
    put_file(disk, fs, part.offset)
    early = work / "early.cfg"
    early.write_text(EARLY_CONFIG)
    core = work / "core.img"
    run(
        "grub-mkimage",
        "-O",
        "i386-pc",
        "-d",
        GRUB_DIR,
        "-o",
        core,
        "-p",
        prefix,
        "-c",
        early,
        "biosdisk",
        "part_msdos",
        "ext2",
        "serial",
        "terminal",
    )
    boot = (GRUB_DIR / "boot.img").read_bytes()
    place_bios_grub(disk, core.read_bytes(), boot, 1, part.start - 1)


def debian_variant(name: str) -> Path:
    """The cached copy of the Debian test image changed as ``name`` (one of
    :data:`DEBIAN_VARIANTS`) says, built when missing (a sparse copy: seconds)."""
    if name not in DEBIAN_VARIANTS:
        raise GuestImageError(f"unknown variant {name!r}; known: {', '.join(DEBIAN_VARIANTS)}")
    base = gi.guest_raw("gpt-bios-esp-ext4")
    final = base.with_name(f"gpt-bios-esp-ext4-{name}-v{BOOT_DISKS_VERSION}.raw")
    if final.exists():
        return final
    with gi.build_lock():
        if final.exists():
            return final
        with _publishing(final) as copy:
            run("cp", "--sparse=always", base, copy)
            if name == "waits-for-disk":
                _patch_file(copy, b"# /etc/fstab: static file system information.\n", _waits)
            else:
                _patch_file(copy, b"datasource_list: [ OpenStack ]\n", _no_datasource)
        log(f"{final.name} built")
    return final


def _waits(fstab: bytes) -> bytes | None:
    """The waits-for-disk fstab, for the guest's fstab (None for another file)."""
    roots = [
        line.split(b"\t")[0].removeprefix(b"UUID=").decode()
        for line in fstab.splitlines()
        if b"\t/\t" in line and line.startswith(b"UUID=")
    ]
    if len(roots) != 1 or b"\t/boot/efi\t" not in fstab:
        return None
    return WAITS_FSTAB.format(root=roots[0]).encode()


def _no_datasource(config: bytes) -> bytes | None:
    """cloud-init told to use no datasource, for the test images' datasource file only."""
    return b"datasource_list: [ None ]\n" if config == b"datasource_list: [ OpenStack ]\n" else None


def _patch_file(disk: Path, head: bytes, change: Callable[[bytes], bytes | None]) -> None:
    """Find the file that starts with ``head`` at the start of a 4 KiB block (its data block,
    ended by zeros) for which ``change(old contents)`` gives new contents (None: not that
    file), and write them over it, padded with spaces before their last newline to the old
    length: ext4 keeps the file's size, so new contents may be shorter, never longer."""
    block = 4096
    chunk = 64 * MiB
    with open(disk, "r+b") as f:
        offset = 0
        while data := f.read(chunk + block):
            at = data.find(head)
            while 0 <= at < chunk:
                end = data.find(b"\0", at)
                new = change(data[at:end]) if (offset + at) % block == 0 and end > 0 else None
                if new is not None:
                    old = data[at:end]
                    if len(new) > len(old):
                        raise GuestImageError(f"the new file is longer than {len(old)} bytes")
                    f.seek(offset + at)
                    f.write(new[:-1] + b" " * (len(old) - len(new)) + new[-1:])
                    return
                at = data.find(head, at + 1)
            offset += chunk
            f.seek(offset)
    raise GuestImageError(f"no file starting with {head[:40]!r} in {disk.name}")


__all__ = ["DEBIAN_VARIANTS", "GRUB_DISKS", "MISSING_LABEL", "debian_variant", "grub_disk"]
