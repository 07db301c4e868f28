"""A machine's system disk: a qcow2 overlay on an image, and the block graph QEMU gets for it.

Shared by the boot test (:mod:`.boot_runner`) and the servers (:mod:`.server_host`). The image
is never written and never trusted: its format is pinned (``backing_fmt``) from imageport's own
probe, and QEMU is given the whole graph with ``-blockdev`` (the image node read-only, with an
explicit ``backing: null`` where its driver knows backing files), so QEMU never guesses a format
or follows a file name found inside the image. Each function raises the error class its caller
gives (:class:`~imageport.service.ports.BootError` for a boot,
:class:`~imageport.service.ports.MachineError` for a server).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from imageport.errors import ImageportError

#: Block drivers that know a backing file (so the image node gets an explicit "none").
HAS_BACKING = frozenset({"qcow2", "qcow", "qed", "vmdk"})
#: Seconds a qemu-img call may take (create and info are instant; a hung NFS is not).
TOOL_SECONDS = 120
#: Bytes copied per call when a disk is copied.
_COPY_CHUNK = 8 << 20


def opt(value: str) -> str:
    """``value`` quoted for QEMU's ``key=value,...`` option syntax (commas doubled)."""
    return value.replace(",", ",,")


def run_tool(argv: list[str], what: str, error: type[ImageportError]) -> str:
    """Run ``argv`` (an argument list, never a shell); its output, or ``error`` with the
    tool's own message."""
    try:
        proc = subprocess.run(  # noqa: S603 - argument list built here, no shell
            argv, capture_output=True, check=False, timeout=TOOL_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{what} failed: {exc}") from exc
    if proc.returncode != 0:
        raise error(f"{what} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    return proc.stdout.decode(errors="replace")


def image_node(image: Path, driver: str) -> dict[str, Any]:
    """The read-only block node of ``image`` read with ``driver``, with no backing file."""
    node: dict[str, Any] = {
        "driver": driver,
        "read-only": True,
        "file": {"driver": "file", "filename": str(image), "read-only": True},
    }
    if driver in HAS_BACKING:
        node["backing"] = None
    return node


def virtual_size(qemu_img: str, image: Path, driver: str, error: type[ImageportError]) -> int:
    """The virtual size of ``image`` as ``driver`` reads it (no backing file followed)."""
    spec = {"driver": driver, "file": {"driver": "file", "filename": str(image)}}
    if driver in HAS_BACKING:
        spec["backing"] = None  # type: ignore[assignment]
    out = run_tool(
        [qemu_img, "info", "--output=json", "json:" + json.dumps(spec)], "qemu-img info", error
    )
    size = json.loads(out).get("virtual-size")
    if not isinstance(size, int) or size <= 0:
        raise error(f"qemu-img info gave no virtual size for {image}")
    return size


def create_overlay(
    qemu_img: str,
    overlay: Path,
    image: Path,
    driver: str,
    size: int,
    error: type[ImageportError],
) -> None:
    """Make ``overlay``, a qcow2 of ``size`` bytes whose backing file is ``image`` (absolute,
    format pinned to ``driver``); ``-u``: qemu-img opens neither file to check them."""
    backing = f"backing_file={opt(str(image))},backing_fmt={driver}"
    cmd = [qemu_img, "create", "-q", "-f", "qcow2", "-u", "-o", backing]
    run_tool([*cmd, str(overlay), str(size)], "qemu-img create", error)


def overlay_blockdev(overlay: Path, image: Path, driver: str, node_name: str) -> str:
    """The ``-blockdev`` value of the writable overlay on the read-only image node."""
    top = {
        "driver": "qcow2",
        "node-name": node_name,
        "file": {"driver": "file", "filename": str(overlay)},
        "backing": image_node(image, driver),
    }
    return json.dumps(top)


def copy_sparse(source: Path, target: Path) -> None:
    """Copy ``source`` to a new file ``target`` (mode 0600), leaving its holes holes: only the
    ranges the file system says hold data are copied (``SEEK_DATA``/``SEEK_HOLE``), with
    ``copy_file_range`` (which may share extents on file systems that can)."""
    src = os.open(source, os.O_RDONLY)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            size = os.fstat(src).st_size
            offset = 0
            while offset < size:
                try:
                    offset = os.lseek(src, offset, os.SEEK_DATA)
                except OSError:  # ENXIO: no data after offset
                    break
                end = os.lseek(src, offset, os.SEEK_HOLE)
                _copy_range(src, dst, offset, end)
                offset = end
            os.ftruncate(dst, size)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    offset = start
    while offset < end:
        count = min(_COPY_CHUNK, end - offset)
        try:
            done = os.copy_file_range(src, dst, count, offset, offset)
        except OSError:
            data = os.pread(src, count, offset)
            done = os.pwrite(dst, data, offset)
        if done <= 0:
            raise OSError(f"the copy stopped at byte {offset}")
        offset += done
