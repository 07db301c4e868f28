"""The image worker: qemu-img for conversion, imageport's checker for inspection, both run as
limited worker processes (:mod:`imageport.worker.sandbox`).

Conversion runs ``qemu-img convert -p -f DRIVER -O FORMAT json:{...} TARGET`` where the source
is a ``json:`` block-device description with ``"backing": null``: the format is pinned and qemu
never opens a backing file, even one named inside the image (the safety check has refused such
images already; this is defence in depth). ``qemu-img convert`` opens its source read-only; no
writable option is ever passed. Progress comes from ``-p`` (``(12.34/100%)``).

Formats qemu-img cannot read (``zvhd``, ``zvhd2``) are first written as raw by imageport's own
readers (:mod:`imageport.worker.to_raw`, also a limited worker), then converted from raw.

Export (:meth:`SubprocessImageWorker.export`, for :mod:`imageport.service.jobs.export_job`) writes
the formats clouds import, with the same discipline: qcow2 and raw as above; VHD as qemu's ``vpc``
``subformat=dynamic,force_size=on`` (the footer keeps the exact virtual size instead of rounding it
to a CHS geometry); VMDK as ``subformat=streamOptimized`` (the single-file, compressed variant
clouds and OVF tools import); ZVHD and ZVHD2 by imageport's own writer in a limited worker
(:mod:`imageport.worker.to_zvhd`), which also pins the source format.

Flattening (:meth:`SubprocessImageWorker.flatten`, for
:mod:`imageport.service.jobs.server_image_job`) turns a point-in-time copy of a server's system
disk, a qcow2 overlay on the stored image, into one standalone image of the stored format. The
overlay is first probed by imageport's own reader in a worker: it must be an intact,
unencrypted qcow2 file whose only hazard is the backing file it names (an external data file, for
one, would make qemu open a file named inside it). Then ``qemu-img measure`` (the bound, known
before anything is written) and ``qemu-img convert`` read it through an explicit block graph::

    {"driver": "qcow2", "file": <the overlay>,
     "backing": {"driver": <the stored format>, "file": <the stored image>, "backing": null}}

so both formats are pinned, the backing file is the one the service names (the name inside the
overlay is never read) and the stored image has no backing of its own.

Planning automatic configuration (:meth:`SubprocessImageWorker.plan_configuration`, for the
import job's ``configure`` phase) reads a raw copy of a checked disk in a worker of its own
(:mod:`imageport.worker.plan_config`); the plan's file contents come back as files in a scratch
directory, checked against the document (:mod:`imageport.worker.plan_document`).

The caller gives a target path in scratch space and moves the finished file into place.

:class:`QemuImgQcow2Writer` serves the local ``imageport convert -O qcow2`` tool instead: it
runs ``qemu-img convert -q -f raw -O qcow2`` directly (no worker, no limits: the tool runs as
the user who asked), always from raw bytes that imageport's own reader produced or a file
probed as raw, and always with ``-f raw``, so qemu-img interprets no container.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from imageport.configure.plan import Plan
from imageport.durable import fsync_file
from imageport.errors import ImageportError
from imageport.rules.base import CheckOptions
from imageport.service.ports import DiskCopy, ImageInspection, WorkerError
from imageport.settings import Settings
from imageport.worker.document import header_inspection_from_document, inspection_from_document
from imageport.worker.plan_document import plan_from_document
from imageport.worker.sandbox import WorkerLimits, python_command, run_limited

#: Our format names -> qemu's block driver names, for the formats qemu-img reads itself.
QEMU_DRIVERS = {
    "qcow2": "qcow2",
    "qcow": "qcow",
    "vmdk": "vmdk",
    "vhd": "vpc",
    "vhdx": "vhdx",
    "vdi": "vdi",
    "qed": "qed",
    "raw": "raw",
}
#: Formats read by imageport's own readers (converted to raw in a worker first).
OWN_READER_FORMATS = ("zvhd", "zvhd2")
#: Formats qemu-img writes for us.
TARGET_FORMATS = ("qcow2", "raw")
#: Export formats qemu-img writes: our name -> (its driver, its creation options).
EXPORT_TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "qcow2": ("qcow2", ()),
    "raw": ("raw", ()),
    "vhd": ("vpc", ("-o", "subformat=dynamic,force_size=on")),
    "vmdk": ("vmdk", ("-o", "subformat=streamOptimized")),
}
#: Export formats imageport's own writer produces.
OWN_WRITER_FORMATS = ("zvhd", "zvhd2")
_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")
#: How the checker's probe names a qcow2 backing file among a file's hazards (``kind: detail``).
_BACKING_HAZARD = "backing-file:"


def _json_of(stdout: bytes) -> object:
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise WorkerError("the image checker answered something that is not JSON") from exc


def _node(path: Path, driver: str, backing: dict[str, object] | None) -> dict[str, object]:
    """A block node reading ``path`` with ``driver``, over ``backing`` (None: no backing)."""
    return {
        "driver": driver,
        "file": {"driver": "file", "filename": str(path.resolve())},
        "backing": backing,
    }


def source_spec(path: Path, driver: str) -> str:
    """The ``json:`` source naming ``path`` with ``driver`` and no backing file."""
    return "json:" + json.dumps(_node(path, driver, None), separators=(",", ":"))


def overlay_spec(copy: DiskCopy) -> str:
    """The ``json:`` source of a disk copy: the qcow2 overlay ``copy.top`` over the stored
    image ``copy.base`` (its format pinned, no backing of its own); the backing file named
    inside the overlay is never opened."""
    if copy.base_format not in QEMU_DRIVERS:
        raise WorkerError(f"a server's disk cannot be on a {copy.base_format!r} image")
    base = _node(copy.base, QEMU_DRIVERS[copy.base_format], None)
    return "json:" + json.dumps(_node(copy.top, "qcow2", base), separators=(",", ":"))


class _ProgressParser:
    """Feeds ``(12.34/100%)`` readings from qemu-img's stdout to a callback."""

    def __init__(self, progress: Callable[[float], None]) -> None:
        self.progress = progress
        self.pending = b""

    def __call__(self, chunk: bytes) -> None:
        self.pending = (self.pending + chunk)[-256:]
        found = _PROGRESS.findall(self.pending)
        if found:
            self.progress(min(100.0, float(found[-1])))
            self.pending = self.pending[self.pending.rfind(b")") + 1 :]


class SubprocessImageWorker:
    """Implements the :class:`~imageport.service.ports.ImageWorker` port with limited worker
    processes: imageport's own readers (:mod:`imageport.worker`) and qemu-img, each in a
    process of its own under the limits of :mod:`imageport.worker.sandbox`."""

    def __init__(
        self, settings: Settings, *, qemu_img: str | None = None, rate_limit: int | None = None
    ) -> None:
        """``rate_limit``: bytes per second qemu-img may read (``-r``), to spare the disks;
        by default the ``convert_rate_limit_bytes`` setting (0: none)."""
        self.settings = settings
        self.limits = WorkerLimits.from_settings(settings)
        self.check_limits = WorkerLimits.for_check(settings)
        self._qemu_img = qemu_img
        self.rate_limit = settings.convert_rate_limit_bytes if rate_limit is None else rate_limit

    @property
    def qemu_img(self) -> str:
        """Absolute path of qemu-img (a clear error when it is not installed)."""
        path = self._qemu_img or shutil.which("qemu-img")
        if path is None:
            raise WorkerError("qemu-img is not installed on the server (package qemu-utils)")
        return path

    # -- inspection -------------------------------------------------------------------------

    def inspect(
        self, path: Path, options: CheckOptions, *, cancelled: Callable[[], bool]
    ) -> ImageInspection:
        """Check ``path`` with every rule in a worker process."""
        opts = {
            "fast_import": options.fast_import,
            "min_disk_gib": options.min_disk_gib,
            "uefi": options.uefi,
            "uninitialized": options.uninitialized,
            "bitmap_path": options.bitmap_path,
            "declared_format": options.declared_format,
            "architecture": options.architecture,
            "disk_kind": options.disk_kind,
        }
        return self._inspect(["--options", json.dumps(opts)], path, cancelled)

    def probe(self, path: Path, *, cancelled: Callable[[], bool]) -> ImageInspection:
        """Probe the container of ``path`` in a worker process (no rules)."""
        return self._inspect(["--probe-only"], path, cancelled)

    def check_header(
        self, window: Path, file_size: int, head_bytes: int, options: CheckOptions
    ) -> ImageInspection | None:
        """Judge a header window in a worker process, within the header limits."""
        opts = {
            "fast_import": options.fast_import,
            "min_disk_gib": options.min_disk_gib,
            "disk_kind": options.disk_kind,
        }
        command = python_command(
            "imageport.worker.inspect_image",
            str(window),
            "--header-window",
            f"{file_size},{head_bytes}",
            "--options",
            json.dumps(opts),
        )
        result = run_limited(
            command,
            WorkerLimits.for_header(self.settings),
            name="the header check",
            cancelled=lambda: False,
        )
        return header_inspection_from_document(_json_of(result.stdout))

    def _inspect(
        self, args: list[str], path: Path, cancelled: Callable[[], bool]
    ) -> ImageInspection:
        command = python_command("imageport.worker.inspect_image", str(path), *args)
        result = run_limited(
            command, self.check_limits, name="the image checker", cancelled=cancelled
        )
        return inspection_from_document(_json_of(result.stdout))

    # -- planning automatic configuration -------------------------------------------------------

    def plan_configuration(
        self, raw: Path, folder: Path, *, when: str, cancelled: Callable[[], bool]
    ) -> Plan:
        """Plan the configuration of the raw disk ``raw`` in a worker
        (:mod:`imageport.worker.plan_config`, under :meth:`WorkerLimits.for_plan`); the
        written files' bytes come back through ``folder``."""
        command = python_command(
            "imageport.worker.plan_config", str(raw), str(folder), "--when", when
        )
        result = run_limited(
            command,
            WorkerLimits.for_plan(self.settings),
            name="the configuration planner",
            cancelled=cancelled,
        )
        return plan_from_document(_json_of(result.stdout), folder)

    # -- flattening a server's disk copy -------------------------------------------------------

    def flattened_size(
        self, copy: DiskCopy, target_format: str, *, cancelled: Callable[[], bool]
    ) -> int:
        """Disk the flattened image takes in ``target_format``, once the overlay has been found
        to be a plain qcow2 overlay (:meth:`_check_overlay`): what ``qemu-img measure`` says
        a qcow2 output requires (data clusters and metadata). It bounds a raw output too, whose
        blocks on disk are only those that hold data (qemu-img's own measure of raw is the
        whole virtual size, sparse or not)."""
        if target_format not in TARGET_FORMATS:
            raise WorkerError(f"cannot store images as {target_format!r}")
        self._check_overlay(copy, cancelled)
        command = [self.qemu_img, "measure", "--output=json", "-O", "qcow2", overlay_spec(copy)]
        result = run_limited(command, self.limits, name="qemu-img measure", cancelled=cancelled)
        measured = _json_of(result.stdout)
        required = measured.get("required") if isinstance(measured, dict) else None
        if not isinstance(required, int) or isinstance(required, bool) or required < 0:
            raise WorkerError("qemu-img measure answered no required size")
        return required

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
        """Write ``target`` in ``target_format``: the overlay of ``copy`` and the stored image
        under it as one standalone image (see the module docstring); stopped once it takes more
        than ``max_output_bytes`` of disk."""
        if target_format not in TARGET_FORMATS:
            raise WorkerError(f"cannot store images as {target_format!r}")
        self._check_overlay(copy, cancelled)
        command = [self.qemu_img, "convert", "-p", "-f", "qcow2", "-O", target_format]
        if self.rate_limit:
            command += ["-r", str(self.rate_limit)]
        command += [overlay_spec(copy), str(target)]
        run_limited(
            command,
            self.limits,
            name="qemu-img",
            cancelled=cancelled,
            on_stdout=_ProgressParser(progress),
            watch=output_watch((target,), max_output_bytes),
        )
        progress(100.0)

    def _check_overlay(self, copy: DiskCopy, cancelled: Callable[[], bool]) -> None:
        """Refuse a copy whose overlay is not an intact, unencrypted qcow2 file of the copy's
        virtual size, with no hazard but its backing file (probed in a worker)."""
        found = self.probe(copy.top, cancelled=cancelled)
        others = [h for h in found.hazards if not h.startswith(_BACKING_HAZARD)]
        problems = [
            *([] if found.format == "qcow2" else [f"it is {found.format}, not qcow2"]),
            *([] if found.damage is None else [found.damage]),
            *([] if found.encryption is None else [f"it is encrypted ({found.encryption})"]),
            *others,
        ]
        if found.virtual_size != copy.virtual_size:
            problems.append(
                f"its virtual size {found.virtual_size} is not the disk's {copy.virtual_size}"
            )
        if problems:
            raise WorkerError(
                "the copy of the server's disk is not a plain overlay: " + "; ".join(problems)
            )

    # -- conversion -------------------------------------------------------------------------

    def disk_needed(self, source_format: str, output_bytes: int) -> int:
        """The output, and for a format qemu-img cannot read the raw stage our reader writes
        first (no larger than the output's data)."""
        return 2 * output_bytes if source_format in OWN_READER_FORMATS else output_bytes

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
        """Write ``target`` in ``target_format`` from ``source`` (see the module docstring).
        ``max_output_bytes``: the disk space the output (with its raw stage, if any) may take;
        a conversion that outgrows it is stopped (:func:`output_watch`)."""
        if target_format not in TARGET_FORMATS:
            raise WorkerError(f"cannot store images as {target_format!r}")
        self._convert_from(
            source, source_format, target, target_format, (), progress, cancelled, max_output_bytes
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
        """Write ``target`` in export format ``target_format`` (a key of
        :data:`EXPORT_TARGETS` or one of :data:`OWN_WRITER_FORMATS`) from the stored image
        ``source`` (see the module docstring); stopped once the output (with its raw stage, if
        any) takes more than ``max_output_bytes`` of disk."""
        stage = target.with_name(target.name + ".raw")
        watch = output_watch((target, stage), max_output_bytes)
        if target_format in OWN_WRITER_FORMATS:
            command = python_command(
                "imageport.worker.to_zvhd", str(source), source_format, str(target), target_format
            )
            run_limited(
                command,
                self.limits,
                name=f"the {target_format} writer",
                cancelled=cancelled,
                on_stdout=_progress_lines(progress),
                watch=watch,
            )
            progress(100.0)
            return
        if target_format not in EXPORT_TARGETS:
            raise WorkerError(f"cannot export images as {target_format!r}")
        driver, options = EXPORT_TARGETS[target_format]
        self._convert_from(
            source, source_format, target, driver, options, progress, cancelled, max_output_bytes
        )

    def _convert_from(
        self,
        source: Path,
        source_format: str,
        target: Path,
        driver: str,
        options: Sequence[str],
        progress: Callable[[float], None],
        cancelled: Callable[[], bool],
        max_output_bytes: int | None,
    ) -> None:
        """Write ``target`` with qemu-img's output ``driver`` (and its ``options``) from
        ``source``: directly when qemu-img reads ``source_format``; else through our own
        reader, straight into ``target`` for plain raw, or into a raw stage beside it that
        qemu-img then converts (each half of the progress). The stage is always removed; the
        output and the stage together may take ``max_output_bytes`` of disk."""
        stage = target.with_name(target.name + ".raw")
        watch = output_watch((target, stage), max_output_bytes)
        if source_format in QEMU_DRIVERS:
            qemu_driver = QEMU_DRIVERS[source_format]
            self._qemu_convert(
                source, qemu_driver, target, driver, progress, cancelled, options, watch=watch
            )
            return
        if source_format not in OWN_READER_FORMATS:
            raise WorkerError(f"no converter reads the {source_format!r} format")
        if driver == "raw" and not options:
            self._own_to_raw(source, target, progress, cancelled, watch)
            return
        try:
            self._own_to_raw(source, stage, lambda p: progress(p / 2), cancelled, watch)
            self._qemu_convert(
                stage,
                "raw",
                target,
                driver,
                lambda p: progress(50 + p / 2),
                cancelled,
                options,
                watch=watch,
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                stage.unlink()

    def _qemu_convert(
        self,
        source: Path,
        driver: str,
        target: Path,
        target_format: str,
        progress: Callable[[float], None],
        cancelled: Callable[[], bool],
        options: Sequence[str] = (),
        *,
        watch: Callable[[], str | None] | None = None,
    ) -> None:
        command = [self.qemu_img, "convert", "-p", "-f", driver, "-O", target_format, *options]
        if self.rate_limit:
            command += ["-r", str(self.rate_limit)]
        command += [source_spec(source, driver), str(target)]
        run_limited(
            command,
            self.limits,
            name="qemu-img",
            cancelled=cancelled,
            on_stdout=_ProgressParser(progress),
            watch=watch,
        )
        progress(100.0)

    def _own_to_raw(
        self,
        source: Path,
        target: Path,
        progress: Callable[[float], None],
        cancelled: Callable[[], bool],
        watch: Callable[[], str | None] | None = None,
    ) -> None:
        command = python_command("imageport.worker.to_raw", str(source), str(target))
        run_limited(
            command,
            self.limits,
            name="the raw converter",
            cancelled=cancelled,
            on_stdout=_progress_lines(progress),
            watch=watch,
        )
        progress(100.0)


class QemuImgQcow2Writer:
    """Implements the :class:`~imageport.service.ports.Qcow2Writer` port with qemu-img (see
    the module docstring)."""

    def __init__(self, qemu_img: str | None = None) -> None:
        self._qemu_img = qemu_img

    def ready(self) -> None:
        self._path()

    def _path(self) -> str:
        path = self._qemu_img or shutil.which("qemu-img")
        if path is None:
            raise ImageportError(
                "qcow2 output needs qemu-img (Debian/Ubuntu: apt-get install "
                "qemu-utils); it is not on PATH"
            )
        return path

    def write_qcow2(self, raw: Path, target: Path, *, compression: str | None) -> None:
        """``qemu-img convert -q -f raw -O qcow2 [-c -o compression_type=C] RAW TARGET``,
        then fsync ``target``."""
        args = [self._path(), "convert", "-q", "-f", "raw", "-O", "qcow2"]
        if compression is not None:
            args += ["-c", "-o", f"compression_type={compression}"]
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [*args, str(raw), str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ImageportError(f"qemu-img convert failed: {proc.stderr.strip()}")
        fsync_file(target)


def disk_usage(paths: Sequence[Path]) -> int:
    """Bytes of disk the files at ``paths`` take (allocated blocks; missing files take none)."""
    used = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            used += path.stat().st_blocks * 512
    return used


def output_watch(paths: Sequence[Path], limit: int | None) -> Callable[[], str | None] | None:
    """A :func:`~imageport.worker.sandbox.run_limited` watch that stops a conversion once the
    files at ``paths`` take more than ``limit`` bytes of disk (None: no limit). Allocated
    blocks are measured, not apparent sizes: a raw output is sparse."""
    if limit is None:
        return None

    def watch() -> str | None:
        used = disk_usage(paths)
        if used <= limit:
            return None
        return (
            f"the conversion wrote {used} bytes, more than the {limit} bytes the image's "
            "own allocation allows, and was stopped"
        )

    return watch


def _progress_lines(progress: Callable[[float], None]) -> Callable[[bytes], None]:
    """A stdout reader feeding our workers' ``progress DONE TOTAL`` lines to ``progress``
    (0..100)."""
    pending = b""

    def on_stdout(chunk: bytes) -> None:
        nonlocal pending
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines[-1:]:
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"progress" and int(parts[2]) > 0:
                progress(100.0 * int(parts[1]) / int(parts[2]))

    return on_stdout
