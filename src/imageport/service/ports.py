"""The interfaces (ports) the service layer works through, and the records they exchange.

The service never names an adapter: :mod:`imageport.wiring` picks one implementation of each
port from the settings. Today that is the local object store (files + the database), a thread
job queue in the ``serve`` process, and qemu-img run as a limited subprocess; an S3-backed store
or remote workers plug in here without touching ``service/``.

The database is the one thing the service uses without a port, on purpose: the use cases query
the tables of :mod:`imageport.service.tables` with SQLAlchemy Core (see :mod:`imageport.service`
for why); :mod:`imageport.adapters.db` only opens the database and migrates it.

* :class:`ObjectStore`: buckets, objects and multipart uploads (the S3 API's backend, and where
  the import job reads uploaded files from).
* :class:`JobQueue`: runs queued jobs somewhere, at most ``workers`` at a time.
* :class:`ImageWorker`: inspects, probes and converts image files in limited worker processes
  (qemu-img and imageport's own checker), and flattens copies of servers' disks
  (:class:`DiskCopy`) into standalone images, with the records it answers
  (:class:`ImageInspection`), plans automatic configuration of a raw disk (a
  :class:`~imageport.configure.plan.Plan`), and the errors it raises (:class:`WorkerError`,
  :class:`WorkerCancelledError`).
* :class:`Qcow2Writer`: lays raw bytes out as qcow2 for the local ``convert`` tool (qemu-img).
* :class:`GuestEditor`: applies automatic configuration's file operations to a raw disk inside
  an isolated appliance (libguestfs), raising :class:`GuestEditError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from imageport.configure.edits import FileOp
from imageport.configure.mounts import ApplianceMount
from imageport.configure.plan import Plan
from imageport.errors import ImageportError
from imageport.rules.base import CheckOptions


@dataclass(frozen=True, slots=True)
class BucketInfo:
    name: str
    project_id: str
    storage_class: str
    location: str
    created_at: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    #: quoted S3 ETag: ``"<md5 hex>"``, or ``"<md5 of part md5s>-N"`` for multipart objects
    etag: str
    sha256: str
    content_type: str
    storage_class: str
    created_at: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UploadInfo:
    upload_id: str
    bucket: str
    key: str
    content_type: str
    storage_class: str
    created_at: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartInfo:
    number: int
    size: int
    etag: str
    created_at: str


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A file written completely (and fsynced) into the store's scratch space, with its digests.

    The API layer streams a request body into :meth:`ObjectStore.staging_path` (or a part's
    :class:`PartTarget`), computing the digests as it goes, then hands the result to
    :meth:`ObjectStore.commit_object` or :meth:`ObjectStore.commit_part`, which move it into
    place atomically.
    """

    path: Path
    size: int
    md5_hex: str
    sha256_hex: str
    #: None: ``path`` holds exactly these bytes. Otherwise they were written in place at this
    #: offset of ``path``, the :class:`PartTarget` the store handed out for a part.
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class PartTarget:
    """Where the body of one UploadPart goes, as :meth:`ObjectStore.part_target` decided.

    ``in_place=False``: a fresh staged file at ``path`` (created exclusively, like any body).
    ``in_place=True``: the upload's assembly file ``path``, written from ``offset`` on (opened
    without truncating; at most ``capacity`` bytes), so that completing the upload needs no
    copy. Either way the result goes to :meth:`ObjectStore.commit_part` and the target is then
    given back with :meth:`ObjectStore.release_part_target`, whatever happened.
    """

    upload_id: str
    number: int
    path: Path
    offset: int = 0
    in_place: bool = False
    capacity: int = 0


class ObjectStore(Protocol):
    """Buckets, objects and multipart uploads. Project ownership is recorded, not enforced, here:
    the service layer checks that a caller's project owns the bucket before calling."""

    def staging_path(self) -> Path:
        """A fresh path in scratch space on the same filesystem as the objects."""
        ...

    def create_bucket(
        self, name: str, project_id: str, storage_class: str, location: str
    ) -> BucketInfo: ...
    def get_bucket(self, name: str) -> BucketInfo | None: ...
    def list_buckets(self, project_id: str) -> Sequence[BucketInfo]: ...
    def delete_bucket(self, name: str) -> None:
        """Raises :class:`~imageport.service.errors.Conflict` (``BucketNotEmpty``) if not empty."""
        ...

    def commit_object(
        self,
        bucket: str,
        key: str,
        staged: StagedFile,
        *,
        content_type: str,
        storage_class: str,
        metadata: Mapping[str, str],
    ) -> ObjectInfo:
        """Make ``staged`` the object ``bucket/key`` (replacing any), visible only once durable."""
        ...

    def get_object(self, bucket: str, key: str) -> ObjectInfo | None: ...
    def open_object(self, bucket: str, key: str) -> BinaryIO:
        """The object's bytes, opened read-only (seekable)."""
        ...

    def open_object_with_info(self, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """The object's record and its bytes (read-only, seekable), of the same version: a
        record read apart from the file may describe a version replaced meanwhile. Raises
        :class:`~imageport.service.errors.NotFound` (``NoSuchKey``) when there is none."""
        ...

    def local_path(self, bucket: str, key: str) -> AbstractContextManager[Path]:
        """A read-only local file holding the object (the object itself for the local store, a
        downloaded copy for a remote one) for as long as the context lasts."""
        ...

    def delete_object(self, bucket: str, key: str) -> bool: ...
    def project_bytes(self, project_id: str) -> int:
        """Bytes the project's objects and the parts of its unfinished uploads hold."""
        ...

    def delete_object_if(
        self, bucket: str, key: str, check: Callable[[ObjectInfo | None], None]
    ) -> bool:
        """Delete ``bucket/key`` if ``check`` (which raises otherwise) accepts its current
        record (None when there is none), atomically: the version deleted is the one checked.
        False when there was nothing to delete."""
        ...

    def list_objects(
        self, bucket: str, *, prefix: str = "", start_after: str = "", limit: int = 1000
    ) -> Sequence[ObjectInfo]:
        """Objects with keys starting with ``prefix`` and sorting after ``start_after``, in key
        order, at most ``limit``."""
        ...

    def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str,
        storage_class: str,
        metadata: Mapping[str, str],
    ) -> UploadInfo: ...
    def get_upload(self, upload_id: str) -> UploadInfo | None: ...
    def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        limit: int = 1000,
    ) -> Sequence[UploadInfo]:
        """Unfinished uploads with keys starting with ``prefix``, in (key, upload id) order,
        at most ``limit``: those after ``key_marker``, and those of ``key_marker`` itself
        whose id sorts after ``upload_id_marker`` when one is given."""
        ...

    def count_uploads(self, project_id: str) -> int:
        """Unfinished multipart uploads in the buckets of ``project_id``."""
        ...

    def count_parts(self, upload_id: str, *, smaller_than: int, except_number: int) -> int:
        """Parts of the upload under ``smaller_than`` bytes, other than part
        ``except_number``."""
        ...

    def part_target(self, upload_id: str, number: int, declared_length: int | None) -> PartTarget:
        """Where to write the body of part ``number`` (``declared_length`` bytes, None when
        unknown): in place in the upload's assembly file when the client uses one part size,
        else a staged file of its own. An in-place target reserves that part's slot until
        :meth:`release_part_target`."""
        ...

    def release_part_target(self, target: PartTarget) -> None:
        """Give back a target (after :meth:`commit_part` or a failed body); idempotent."""
        ...

    def commit_part(self, upload_id: str, number: int, staged: StagedFile) -> PartInfo:
        """Record ``staged`` (a staged file, or bytes written to an in-place target) as part
        ``number``, replacing any earlier upload of that part."""
        ...

    def list_parts(self, upload_id: str) -> Sequence[PartInfo]: ...
    def complete_upload(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        """Join the named ``(number, etag)`` parts into the object; raises RequestInvalid with
        ``InvalidPart``, ``InvalidPartOrder`` or ``EntityTooSmall`` as S3 does."""
        ...

    def abort_upload(self, upload_id: str) -> None: ...

    def remove_orphans(self) -> int:
        """Remove the data no record points at: what a crash between a staged body's rename and
        its commit, or during an abort, left behind. Called once at start-up, before requests
        are served; the number of files removed."""
        ...


class JobQueue(Protocol):
    """Runs jobs by id; the job's state lives in the database, not in the queue."""

    def submit(self, job_id: str) -> None: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = 10.0) -> None: ...


# -- the image worker --------------------------------------------------------------------------


class WorkerError(ImageportError):
    """A worker process failed: crashed, hit a limit, or answered nonsense. ``reason`` says
    which, in words for the user (e.g. "the image worker exceeded its memory limit of 2 GiB");
    ``limit`` names the limit it hit, if one (``cpu``, ``memory``, ``wall``, ``file``,
    ``output``, or ``watch``: the caller's own watch stopped it)."""

    def __init__(self, reason: str, *, limit: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


class WorkerCancelledError(ImageportError):
    """The job was cancelled while a worker ran; the worker was killed."""


@dataclass(frozen=True, slots=True)
class GuestOs:
    id: str
    version_id: str
    pretty_name: str


@dataclass(frozen=True, slots=True)
class FailedRule:
    """One error finding of a check report, as a job's ``fail_reason`` tells it: the rule, its
    message, the first of its evidence lines (None when it gave none) and how many more it gave,
    and the fix (``advice``). Strings as the report holds them: not yet capped or cleaned
    (:mod:`imageport.service.jobs.fail_reason` does that)."""

    rule_id: str
    message: str
    evidence: str | None
    more_evidence: int
    advice: str


@dataclass(frozen=True, slots=True)
class ImageInspection:
    """What a worker found in one file."""

    format: str
    variant: str
    file_size: int
    virtual_size: int | None
    #: True when the container is accepted, undamaged, unencrypted and has no hazards.
    readable: bool
    hazards: tuple[str, ...]
    damage: str | None
    encryption: str | None
    allocated_bytes: int | None = None
    #: how many separate extents of the virtual disk hold data (bounds a conversion's output)
    data_extents: int | None = None
    os: GuestOs | None = None
    #: ``uname -m`` name of the guest's userland (``x86_64``, ``aarch64`` ...), when found.
    arch: str | None = None
    bits: int | None = None
    boot_modes: tuple[str, ...] = ()
    #: The check report (``imageport.check/1``), None for a probe without rules.
    report: Mapping[str, Any] | None = None

    @property
    def failed_rules(self) -> tuple[FailedRule, ...]:
        """Every error finding in the report, in report order (the worker wrote the report from
        an untrusted image: any field may be missing or of the wrong type)."""
        if self.report is None:
            return ()
        findings = self.report.get("findings")
        found = []
        for item in findings if isinstance(findings, (list, tuple)) else ():
            if isinstance(item, dict) and item.get("severity") == "error":
                evidence = item.get("evidence")
                lines = evidence if isinstance(evidence, (list, tuple)) else ()
                found.append(
                    FailedRule(
                        rule_id=str(item.get("rule_id", "?")),
                        message=str(item.get("message", "")),
                        evidence=str(lines[0]) if lines else None,
                        more_evidence=max(0, len(lines) - 1),
                        advice=str(item.get("advice") or ""),
                    )
                )
        return tuple(found)

    @property
    def failures(self) -> tuple[tuple[str, str], ...]:
        """``(rule_id, message)`` of every error finding in the report, in report order."""
        return tuple((f.rule_id, f.message) for f in self.failed_rules)


class ImageWorker(Protocol):
    """Everything the jobs ask of the processes that touch image bytes: inspect a file, probe
    one, convert one to the stored format or to an export format, flatten a copy of a server's
    disk into a standalone image. The service never parses an
    image itself; an implementation runs each call in a limited worker process
    (:class:`imageport.adapters.image_worker.SubprocessImageWorker`), cancellable:
    ``cancelled()`` is polled while it runs, and a cancelled call raises
    :class:`WorkerCancelledError`. Any other failure is a :class:`WorkerError`."""

    def inspect(
        self, path: Path, options: CheckOptions, *, cancelled: Callable[[], bool]
    ) -> ImageInspection:
        """Probe, safety-check and guest-check ``path`` with every rule."""
        ...

    def probe(self, path: Path, *, cancelled: Callable[[], bool]) -> ImageInspection:
        """Probe the container of ``path`` only (re-probing a conversion's output)."""
        ...

    def check_header(
        self, window: Path, file_size: int, head_bytes: int, options: CheckOptions
    ) -> ImageInspection | None:
        """Judge a file of ``file_size`` bytes from its header window alone: ``window`` holds
        its first ``head_bytes`` bytes followed by its last ones. The container facts, with
        the error findings of the rules that need only the header as ``report["findings"]``
        (:mod:`imageport.service.tools.header`); None when the header alone does not tell.
        Run at registration, within tight limits of its own."""
        ...

    def disk_needed(self, source_format: str, output_bytes: int) -> int:
        """The disk a conversion from ``source_format`` takes at once when its output may
        take ``output_bytes`` (more where it writes an intermediate file too)."""
        ...

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
        """Write ``target`` in a stored format (qcow2, raw) from ``source``, an image already
        checked (format pinned, no backing file, source read-only). ``progress`` receives
        0..100; a :class:`WorkerError` with ``limit="watch"`` once the output takes more disk
        space than ``max_output_bytes``."""
        ...

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
        """Write ``target`` in an export format (qcow2, raw, vhd, vmdk, zvhd, zvhd2) from a
        stored image ``source``, with the same discipline and the same limit as
        :meth:`convert`."""
        ...

    def flattened_size(
        self, copy: DiskCopy, target_format: str, *, cancelled: Callable[[], bool]
    ) -> int:
        """The disk :meth:`flatten` of ``copy`` to ``target_format`` takes (a bound known
        before anything is written). Raises :class:`WorkerError` when ``copy.top`` is not a
        plain qcow2 overlay."""
        ...

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
        """Write ``target`` in a stored format: the server's disk ``copy`` (the qcow2 overlay
        ``copy.top`` over the stored image ``copy.base``, both formats pinned, the backing file
        named inside the overlay never opened) as one standalone image, with no backing file.
        ``progress`` receives 0..100; a :class:`WorkerError` with ``limit="watch"`` once the
        output takes more disk space than ``max_output_bytes``."""
        ...

    def plan_configuration(
        self, raw: Path, folder: Path, *, when: str, cancelled: Callable[[], bool]
    ) -> Plan:
        """Plan automatic configuration of ``raw`` (a raw copy of a checked image's disk, read
        as raw) in a limited worker: the change record, the notes and the file operations for
        a :class:`GuestEditor`, the guest log stamped ``when``. The bytes of the files the plan
        writes come back through files in ``folder`` (an empty scratch directory the caller
        removes), never through the worker's pipe; their sizes are capped."""
        ...


class Qcow2Writer(Protocol):
    """Writes qcow2 from raw bytes, for the local ``imageport convert -O qcow2`` tool
    (:mod:`imageport.service.tools.convert`): imageport's own readers produce the raw bytes,
    this only lays them out as qcow2."""

    def ready(self) -> None:
        """Raise :class:`~imageport.errors.ImageportError`, saying what to install, when this
        writer cannot run here (asked before any work is done)."""
        ...

    def write_qcow2(self, raw: Path, target: Path, *, compression: str | None) -> None:
        """Write ``target`` (an existing file, overwritten) as qcow2 holding the bytes of the
        file ``raw``, read as raw whatever they look like, and fsync it. ``compression``:
        ``zstd`` or ``zlib`` compressed clusters, None for none. Raises
        :class:`~imageport.errors.ImageportError` when it fails."""
        ...


# -- the boot test --------------------------------------------------------------------------------


class BootError(ImageportError):
    """A virtual machine could not be started at all (QEMU or its firmware missing, QEMU
    refusing its arguments): no verdict about the image. ``str()`` says what to do."""


@dataclass(frozen=True, slots=True)
class BootRun:
    """What one boot of an image in a virtual machine produced."""

    firmware: str  #: ``bios`` or ``uefi``
    accelerator: str  #: ``kvm`` or ``tcg``
    #: The guest's serial console and the firmware's debug log: the last bytes of each, capped.
    serial: bytes
    firmware_log: bytes
    seconds: float
    #: Why the boot was stopped: ``settled`` (the caller's verdict cannot change any more),
    #: ``timeout``, ``guest-stopped`` (the guest powered off or rebooted), ``qemu-exited``.
    ended: str
    #: The PNG of the display taken at the end, when asked and QEMU could take it.
    screenshot: Path | None
    #: Why QEMU exited by itself (its last message), when it did.
    qemu_message: str = ""


class BootRunner(Protocol):
    """Boots a local image file in a throw-away virtual machine (the file is never written):
    no network, no listening port, the serial console and firmware log captured."""

    def ready(self, firmware: str) -> None:
        """Raise :class:`BootError` saying what to install when ``firmware`` (``bios`` or
        ``uefi``) cannot be booted here."""
        ...

    def boot(
        self,
        image: Path,
        image_format: str,
        firmware: str,
        *,
        timeout: float,
        settled: Callable[[bytes, bytes], bool],
        screenshot: Path | None,
    ) -> BootRun:
        """Boot ``image`` (its format ``image_format``, one of imageport's format names, never
        guessed) under ``firmware`` until ``settled(serial, firmware_log)`` answers True, the
        guest stops, or ``timeout`` seconds pass; then save the display to ``screenshot`` (PNG)
        and end the machine. Raises :class:`BootError` when the machine cannot start."""
        ...


# -- servers: virtual machines that keep running ---------------------------------------------------


class MachineError(ImageportError):
    """A server's virtual machine could not be made, started, stopped or copied. ``str()`` says
    what happened (QEMU's own message where it gave one), for a job's ``fail_reason``."""


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """Everything the host needs to make and start one server's machine.

    The service decides every value (sizes already checked against the flavor, the image and
    the limits); the host only carries them out. Nothing in it is read from an image."""

    server_id: str
    #: the stored image the system disk is an overlay on, and its stored format (never guessed)
    image: Path
    image_format: str
    #: the system disk's virtual size (at least the image's), bytes
    disk_bytes: int
    #: ``bios`` or ``uefi``
    firmware: str
    vcpus: int
    memory_mib: int
    #: the guest's NIC's MAC address (``fa:16:3e:..``), also in the metadata's network data
    mac: str
    #: what the guest's metadata service and config drive serve: path below the OpenStack tree
    #: (``openstack/latest/meta_data.json``, ``openstack/latest/user_data`` ...) -> content
    metadata: Mapping[str, bytes]
    #: attach the metadata as a config drive (ISO 9660, label ``config-2``) too
    config_drive: bool = True


@dataclass(frozen=True, slots=True)
class MachineState:
    """A machine as the host finds it."""

    server_id: str
    #: QEMU runs (the guest may be paused for a copy, or halted but not powered off)
    running: bool
    #: the loopback port forwarded to the guest's port 22; None when the machine is off
    ssh_port: int | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class DiskCopy:
    """A point-in-time copy of a server's system disk: the overlay ``top`` (a private copy, the
    caller removes it with :meth:`ServerHost.discard_copy`) on the stored image ``base``."""

    top: Path
    base: Path
    base_format: str
    virtual_size: int


class ConsoleSession(Protocol):
    """An interactive attachment to a running machine's serial console."""

    def read(self, timeout: float) -> bytes:
        """Console output since the last read (b"" after ``timeout`` seconds of silence).
        Raises :class:`MachineError` once the machine is gone."""
        ...

    def write(self, data: bytes) -> None:
        """Type ``data`` on the console."""
        ...

    def close(self) -> None: ...


class ServerHost(Protocol):
    """Runs servers as virtual machines on this machine (:mod:`imageport.adapters.qemu`).

    Machines outlive the service process: a restarted service finds them with
    :meth:`recover`. ``on_stopped`` (given to the implementation by the wiring) is called
    with a server id whenever its machine ends by itself (the guest powered off, QEMU died)."""

    def ready(self) -> None:
        """Raise :class:`MachineError` saying what to install when machines cannot run here."""
        ...

    def create(self, spec: MachineSpec) -> None:
        """Make the machine's system disk (an overlay on ``spec.image``, grown to
        ``spec.disk_bytes``) and its config drive; the machine is off."""
        ...

    def start(self, spec: MachineSpec) -> MachineState:
        """Power the machine on (its disk made by :meth:`create`); returns once QEMU runs."""
        ...

    def state(self, server_id: str) -> MachineState:
        """The machine's state now (``running=False`` when it is off or unknown)."""
        ...

    def stop(self, server_id: str, *, hard: bool, timeout: float) -> None:
        """Power off: ``hard`` pulls the plug at once; otherwise the guest is asked (ACPI) and
        the plug pulled after ``timeout`` seconds. Returns once QEMU has exited."""
        ...

    def reboot(self, server_id: str, *, hard: bool) -> None:
        """Restart the guest: ``hard`` resets the machine; otherwise the guest is asked
        (Ctrl-Alt-Del)."""
        ...

    def destroy(self, server_id: str) -> None:
        """Stop the machine if it runs and remove everything of it (disk, config drive, logs,
        sockets). Idempotent."""
        ...

    def console_output(self, server_id: str, lines: int | None) -> str:
        """The last ``lines`` lines of the serial console's log (None: all that is kept)."""
        ...

    def attach_console(self, server_id: str) -> ConsoleSession:
        """Attach to the running machine's serial console."""
        ...

    def vnc_socket(self, server_id: str) -> Path:
        """The unix socket of the running machine's display (VNC); only the service opens it."""
        ...

    def copy_disk(self, server_id: str, target_dir: Path) -> DiskCopy:
        """A point-in-time copy of the system disk into ``target_dir``: directly when the
        machine is off, else with the guest paused for the copy of its overlay only."""
        ...

    def discard_copy(self, copy: DiskCopy) -> None: ...

    def close(self) -> None:
        """Stop following the machines, which keep running: the service is shutting down, and
        the next one finds them with :meth:`recover`."""
        ...

    def recover(self, known: Sequence[str]) -> dict[str, MachineState]:
        """After a restart: re-attach every living machine of ``known`` and answer its state
        (the others are off); kill machines and remove the files of servers not in ``known``."""
        ...


# -- automatic configuration: editing a guest's files ----------------------------------------------


class GuestEditError(ImageportError):
    """A guest could not be edited: the appliance could not start or failed, or a file was not
    what the plan was made from (then nothing was written). ``str()`` says which."""


@dataclass(frozen=True, slots=True)
class EditRun:
    """What applying a plan took."""

    #: starting the appliance and mounting the guest's filesystems
    launch_seconds: float
    #: launch, checks, writes and the clean shutdown together
    seconds: float
    files_written: int


class GuestEditor(Protocol):
    """Applies a configuration plan's file operations to a raw disk image, inside an isolated
    appliance (the host never mounts the guest's filesystems)."""

    def ready(self) -> None:
        """Raise :class:`GuestEditError` saying what to install when the editor cannot run."""
        ...

    def apply(
        self, disk: Path, mounts: Sequence[ApplianceMount], operations: Sequence[FileOp]
    ) -> EditRun:
        """Mount ``mounts`` (all of them, or fail) of the raw image ``disk`` (the caller's
        copy; written in place) and apply ``operations``. Every operation's ``expect`` is
        checked first; when any file differs nothing is written and :class:`GuestEditError`
        names it."""
        ...
