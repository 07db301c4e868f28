"""An image worker that runs no process (the ``ImageWorker`` port).

What a file *is* comes from a script: :attr:`FakeImageWorker.answer` describes every file the
fake did not write (an upload, say: by default :data:`GOOD_DEBIAN`, a clean Debian 12 qcow2 of
128 MiB; its ``file_size`` is the file's own). A conversion or
export writes a one-line fake container (:func:`fake_container`) naming the format and the
virtual size; probing that file answers exactly that, so a job's verification step passes as
it does after a real conversion. Every call is recorded in :attr:`FakeImageWorker.calls`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from imageport.configure.plan import Plan
from imageport.rules.base import CheckOptions
from imageport.service.ports import (
    DiskCopy,
    GuestOs,
    ImageInspection,
    WorkerCancelledError,
    WorkerError,
)

#: Formats the real worker reads (qemu-img's drivers, and our own readers for ZVHD).
READS = ("qcow2", "qcow", "vmdk", "vhd", "vhdx", "vdi", "qed", "raw", "zvhd", "zvhd2")
#: Formats images are stored in (:meth:`FakeImageWorker.convert`).
STORES = ("qcow2", "raw")
#: Formats images are exported to (:meth:`FakeImageWorker.export`).
EXPORTS = ("qcow2", "raw", "vhd", "vmdk", "zvhd", "zvhd2")

_MAGIC = b"imageport fake container"
_LINE = re.compile(rb"imageport fake container format=(\w+) virtual_size=(\d+)\n")

#: A passing check report (``imageport.check/1``), as the checker writes one.
PASSING_REPORT: Mapping[str, object] = {
    "schema": "imageport.check/1",
    "format": "qcow2",
    "findings": [],
    "summary": {"verdict": "pass", "errors": 0, "warnings": 0, "info": 0},
}

#: What the real checker says of ``import_fixtures.good_image("qcow2")``: a clean Debian 12
#: guest, BIOS and UEFI bootable, on a 128 MiB qcow2 disk.
GOOD_DEBIAN = ImageInspection(
    format="qcow2",
    variant="v3",
    file_size=1835008,
    virtual_size=128 << 20,
    readable=True,
    hazards=(),
    damage=None,
    encryption=None,
    allocated_bytes=1507328,
    data_extents=17,
    os=GuestOs("debian", "12", "Debian GNU/Linux 12 (bookworm)"),
    boot_modes=("bios", "uefi"),
    report=PASSING_REPORT,
)


def fake_container(fmt: str, virtual_size: int) -> bytes:
    """The bytes of a fake ``fmt`` image of ``virtual_size`` bytes (what the fake writes)."""
    return _MAGIC + f" format={fmt} virtual_size={virtual_size}\n".encode()


class FakeImageWorker:
    """The :class:`~imageport.service.ports.ImageWorker` port without processes (see the
    module docstring). ``cancelled()`` is asked once, at the start of each call: a job
    cancelled before the call starts gets :class:`WorkerCancelledError`, as from a real
    worker stopped while it runs."""

    def __init__(self, answer: ImageInspection = GOOD_DEBIAN) -> None:
        self.answer = answer
        self.calls: list[tuple[str, Path]] = []
        #: what :meth:`plan_configuration` answers
        self.plan = Plan((), (), (), ())

    # -- looking --------------------------------------------------------------------------

    def _what(self, path: Path) -> ImageInspection:
        """What ``path`` is: the fake container it wrote, else the scripted answer."""
        try:
            with open(path, "rb") as f:
                head = f.read(len(_MAGIC) + 64)
            size = path.stat().st_size
        except OSError as exc:
            raise WorkerError(f"the image checker cannot read the file: {exc.strerror}") from exc
        found = _LINE.fullmatch(head)
        if found is not None:
            return ImageInspection(
                format=found.group(1).decode(),
                variant="",
                file_size=size,
                virtual_size=int(found.group(2)),
                readable=True,
                hazards=(),
                damage=None,
                encryption=None,
                allocated_bytes=size,
                data_extents=1,
            )
        return dataclasses.replace(self.answer, file_size=size)

    def _start(self, what: str, path: Path, cancelled: Callable[[], bool]) -> None:
        self.calls.append((what, path))
        if cancelled():
            raise WorkerCancelledError(f"the fake {what} was stopped: the job was cancelled")

    def inspect(
        self, path: Path, options: CheckOptions, *, cancelled: Callable[[], bool]
    ) -> ImageInspection:
        self._start("inspect", path, cancelled)
        found = self._what(path)
        return (
            found if found.report is not None else dataclasses.replace(found, report=PASSING_REPORT)
        )

    def probe(self, path: Path, *, cancelled: Callable[[], bool]) -> ImageInspection:
        self._start("probe", path, cancelled)
        return dataclasses.replace(self._what(path), report=None)

    def check_header(
        self, window: Path, file_size: int, head_bytes: int, options: CheckOptions
    ) -> ImageInspection | None:
        """The header alone never tells here: the fake's answers are whole-file answers (the
        real header check is tested with the real worker)."""
        return None

    # -- writing --------------------------------------------------------------------------

    def disk_needed(self, source_format: str, output_bytes: int) -> int:
        return 2 * output_bytes if source_format in ("zvhd", "zvhd2") else output_bytes

    def convert(
        self,
        source: Path,
        source_format: str,
        target: Path,
        target_format: str,
        *,
        progress: Callable[[float], None],
        cancelled: Callable[[], bool],
        max_output_bytes: int | None = None,
    ) -> None:
        if target_format not in STORES:
            raise WorkerError(f"cannot store images as {target_format!r}")
        self._write(
            "convert",
            source,
            source_format,
            target,
            target_format,
            progress,
            cancelled,
            max_output_bytes,
        )

    def export(
        self,
        source: Path,
        source_format: str,
        target: Path,
        target_format: str,
        *,
        progress: Callable[[float], None],
        cancelled: Callable[[], bool],
        max_output_bytes: int | None = None,
    ) -> None:
        if target_format not in EXPORTS:
            raise WorkerError(f"cannot export images as {target_format!r}")
        self._write(
            "export",
            source,
            source_format,
            target,
            target_format,
            progress,
            cancelled,
            max_output_bytes,
        )

    def flattened_size(
        self, copy: DiskCopy, target_format: str, *, cancelled: Callable[[], bool]
    ) -> int:
        self._start("flattened_size", copy.top, cancelled)
        return len(fake_container(target_format, copy.virtual_size))

    def flatten(
        self,
        copy: DiskCopy,
        target: Path,
        target_format: str,
        *,
        progress: Callable[[float], None],
        cancelled: Callable[[], bool],
        max_output_bytes: int | None = None,
    ) -> None:
        """A fake container of the copy's virtual size (the overlay is not read)."""
        if target_format not in STORES:
            raise WorkerError(f"cannot store images as {target_format!r}")
        self._start("flatten", copy.top, cancelled)
        data = fake_container(target_format, copy.virtual_size)
        if max_output_bytes is not None and len(data) > max_output_bytes:
            raise WorkerError("the flattened image outgrew its bound", limit="watch")
        target.write_bytes(data)
        progress(100.0)

    # -- planning ---------------------------------------------------------------------------

    def plan_configuration(
        self, raw: Path, folder: Path, *, when: str, cancelled: Callable[[], bool]
    ) -> Plan:
        """:attr:`plan` (by default nothing to change); the disk is not read."""
        self._start("plan_configuration", raw, cancelled)
        return self.plan

    def _write(
        self,
        what: str,
        source: Path,
        source_format: str,
        target: Path,
        target_format: str,
        progress: Callable[[float], None],
        cancelled: Callable[[], bool],
        max_output_bytes: int | None,
    ) -> None:
        if source_format not in READS:
            raise WorkerError(f"no converter reads the {source_format!r} format")
        self._start(what, source, cancelled)
        virtual = self._what(source).virtual_size or 0
        data = fake_container(target_format, virtual)
        if max_output_bytes is not None and len(data) > max_output_bytes:
            raise WorkerError(
                f"the conversion wrote {len(data)} bytes, more than the {max_output_bytes} "
                "bytes the image's own allocation allows, and was stopped",
                limit="watch",
            )
        progress(50.0)
        target.write_bytes(data)
        progress(100.0)
