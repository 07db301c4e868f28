"""Upload a local file into a bucket: one PUT when small, else a parallel, resumable multipart
upload.

Plan: parts of ``part_size`` bytes (default 64 MiB, at least 5 MiB, at most 5 GiB, raised so
that no more than 10,000 parts are needed). A file smaller than one part goes up in one PUT.

Resume: before starting a multipart upload the uploader looks for an unfinished one of the same
key (ListMultipartUploads with ``prefix=key``, exact key match, newest first) and lists its
parts. Each local part is read (``os.preadv`` into its own buffer: memory stays at most
``parallel x part_size``) and its MD5 compared with the stored part's ETag; only missing or
different parts are sent, then the upload is completed. When the stored parts show another part
size than requested and that size explains every stored part, the stored size is used, so a
rerun with different flags still resumes.

Integrity: every body is sent with a signed ``Content-MD5`` (and ``UNSIGNED-PAYLOAD``, see
:mod:`imageport.client.signing`); the ETag the server returns must equal the local MD5, and the
final multipart ETag must equal ``md5(part digests)-N``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TextIO

from imageport.client.errors import ClientError
from imageport.client.s3 import MAX_PART_NUMBER, PartEntry, S3Client
from imageport.client.signing import content_md5

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
DEFAULT_PART_SIZE = 64 * MiB
DEFAULT_PARALLEL = 4
MAX_PARALLEL = 64
CHUNK = 1 * MiB
"""Bytes handed to the HTTP client at a time (the granularity of the progress bar)."""


@dataclass(frozen=True, slots=True)
class Part:
    """One planned part: 1-based ``number``, its ``offset`` and ``size`` in the file."""

    number: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What an upload did: ``parts_sent`` of ``parts_total`` went over the wire (0 of 1 for a
    single PUT means never); ``resumed`` is the upload id taken over, if any."""

    bucket: str
    key: str
    size: int
    etag: str
    part_size: int
    parts_total: int
    parts_sent: int
    bytes_sent: int
    resumed: str | None


def choose_part_size(file_size: int, requested: int = DEFAULT_PART_SIZE) -> int:
    """``requested`` clamped to 5 MiB..5 GiB, raised (to whole MiB) so parts <= 10,000."""
    size = min(max(requested, MIN_PART_SIZE), MAX_PART_SIZE)
    needed = -(-file_size // MAX_PART_NUMBER)
    if needed > size:
        size = -(-needed // MiB) * MiB
    if size > MAX_PART_SIZE:
        raise ClientError(
            f"a file of {file_size} bytes needs more than {MAX_PART_NUMBER} parts "
            f"of {MAX_PART_SIZE} bytes"
        )
    return size


def plan_parts(file_size: int, part_size: int) -> list[Part]:
    """The parts that cover ``file_size`` bytes (one empty part for an empty file)."""
    if file_size == 0:
        return [Part(1, 0, 0)]
    return [
        Part(i + 1, off, min(part_size, file_size - off))
        for i, off in enumerate(range(0, file_size, part_size))
    ]


def multipart_etag(digests: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: ``md5(concatenated part digests)-N``."""
    joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{joined}-{len(digests)}"


def _stored_part_size(stored: dict[int, PartEntry], file_size: int, requested: int) -> int:
    """The stored upload's part size when it explains every stored part, else ``requested``."""
    if not stored:
        return requested
    candidate = max(p.size for p in stored.values())
    if candidate == requested or not MIN_PART_SIZE <= candidate <= MAX_PART_SIZE:
        return requested
    plan = {p.number: p.size for p in plan_parts(file_size, candidate)}
    if len(plan) > MAX_PART_NUMBER or any(plan.get(n) != p.size for n, p in stored.items()):
        return requested
    return candidate


class Progress:
    """Bytes done of a total, drawn on ``stream`` (a ``\\r`` line on a TTY, else one line per
    ``interval`` seconds): size, percent, MB/s of bytes actually sent, and ETA. Thread-safe."""

    def __init__(
        self,
        total: int,
        stream: TextIO | None,
        *,
        tty: bool,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self._stream = stream
        self._tty = tty
        self._interval = interval if tty else max(interval, 1.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._sent = 0
        self._skipped = 0
        self._drawn_at = -1e9

    @property
    def done(self) -> int:
        return self._sent + self._skipped

    def skip(self, n: int) -> None:
        """``n`` bytes that were already on the server (count toward done, not speed)."""
        with self._lock:
            self._skipped += n
            self._draw(force=False)

    def add(self, n: int) -> None:
        """``n`` bytes sent (negative to take back bytes of a failed attempt)."""
        with self._lock:
            self._sent += n
            self._draw(force=False)

    def finish(self) -> None:
        with self._lock:
            self._draw(force=True)
            if self._stream is not None and self._tty:
                self._stream.write("\n")
                self._stream.flush()

    def line(self) -> str:
        """The progress text as it is drawn now."""
        elapsed = max(self._clock() - self._start, 1e-6)
        rate = self._sent / elapsed
        done = self.done
        pct = 100.0 * done / self.total if self.total else 100.0
        left = self.total - done
        if left <= 0:
            eta = "0:00"
        else:
            eta = _clock_text(left / rate) if rate > 0 else "--:--"
        bar = "#" * int(pct / 5)
        return (
            f"[{bar:<20}] {done / MiB:,.1f}/{self.total / MiB:,.1f} MiB {pct:5.1f}% "
            f"{rate / 1e6:7.1f} MB/s ETA {eta}"
        )

    def _draw(self, *, force: bool) -> None:
        if self._stream is None:
            return
        now = self._clock()
        if not force and now - self._drawn_at < self._interval:
            return
        self._drawn_at = now
        text = self.line()
        self._stream.write(f"\r{text}\x1b[K" if self._tty else text + "\n")
        self._stream.flush()


def _clock_text(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def read_part(fd: int, part: Part) -> bytearray:
    """The part's bytes, read with ``os.preadv`` into one buffer (no second copy)."""
    buf = bytearray(part.size)
    view = memoryview(buf)
    got = 0
    while got < part.size:
        n = os.preadv(fd, [view[got:]], part.offset + got)
        if n == 0:
            raise ClientError(f"the file got shorter while uploading (part {part.number})")
        got += n
    return buf


def _chunks(buf: bytearray, progress: Progress) -> Callable[[], Iterator[bytes]]:
    """A factory of the part's chunks that counts what it hands out, and takes it back when
    called again for a retry."""
    counted = 0

    def factory() -> Iterator[bytes]:
        nonlocal counted
        progress.add(-counted)
        counted = 0
        view = memoryview(buf)
        for start in range(0, len(buf), CHUNK):
            piece = bytes(view[start : start + CHUNK])
            counted += len(piece)
            progress.add(len(piece))
            yield piece

    return factory


class Uploader:
    """Uploads one file to ``bucket/key`` through ``s3``; see the module docstring."""

    def __init__(
        self,
        s3: S3Client,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        parallel: int = DEFAULT_PARALLEL,
        progress_stream: TextIO | None = None,
        tty: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not 1 <= parallel <= MAX_PARALLEL:
            raise ClientError(f"--parallel must be 1..{MAX_PARALLEL}")
        self.s3 = s3
        self.part_size = part_size
        self.parallel = parallel
        self._stream = progress_stream
        self._tty = tty
        self._log = log or (lambda _msg: None)

    def upload(self, path: str, bucket: str, key: str) -> UploadResult:
        """Upload ``path`` (resuming an unfinished upload of the same key)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ClientError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            size = os.fstat(fd).st_size
            part_size = choose_part_size(size, self.part_size)
            upload_id: str | None = None
            stored: dict[int, PartEntry] = {}
            if size >= MIN_PART_SIZE:
                upload_id, stored = self._find_upload(bucket, key)
                if upload_id is not None:
                    adopted = _stored_part_size(stored, size, part_size)
                    if adopted != part_size:
                        self._log(f"resuming with the stored upload's part size of {adopted} bytes")
                    part_size = adopted
            if size < part_size:
                return self._single(fd, size, part_size, bucket, key)
            return self._multipart(fd, size, part_size, bucket, key, upload_id, stored)
        finally:
            os.close(fd)

    def _single(self, fd: int, size: int, part_size: int, bucket: str, key: str) -> UploadResult:
        progress = Progress(size, self._stream, tty=self._tty)
        buf = read_part(fd, Part(1, 0, size))
        md5_hex, md5_b64 = content_md5(buf)
        etag = self.s3.put_object(bucket, key, size, md5_b64, _chunks(buf, progress))
        progress.finish()
        if etag and etag != md5_hex:
            raise ClientError(
                f"the server stored {bucket}/{key} with ETag {etag}, "
                f"expected {md5_hex}: the upload was corrupted"
            )
        return UploadResult(bucket, key, size, etag or md5_hex, part_size, 1, 1, size, None)

    def _find_upload(self, bucket: str, key: str) -> tuple[str | None, dict[int, PartEntry]]:
        uploads = [u for u in self.s3.list_multipart_uploads(bucket, key) if u.key == key]
        if not uploads:
            return None, {}
        newest = max(uploads, key=lambda u: u.initiated)
        stored = {p.number: p for p in self.s3.list_parts(bucket, key, newest.upload_id)}
        return newest.upload_id, stored

    def _multipart(
        self,
        fd: int,
        size: int,
        part_size: int,
        bucket: str,
        key: str,
        upload_id: str | None,
        stored: dict[int, PartEntry],
    ) -> UploadResult:
        resumed = upload_id
        if upload_id is None:
            upload_id = self.s3.create_multipart_upload(bucket, key)
        else:
            self._log(f"resuming upload {upload_id}: {len(stored)} part(s) already stored")
        parts = plan_parts(size, part_size)
        progress = Progress(size, self._stream, tty=self._tty)
        digests: dict[int, bytes] = {}
        etags: dict[int, str] = {}
        sent: list[int] = []
        lock = threading.Lock()

        def run(part: Part) -> None:
            buf = read_part(fd, part)
            digest = hashlib.md5(buf, usedforsecurity=False).digest()
            have = stored.get(part.number)
            if have is not None and have.size == part.size and have.etag == digest.hex():
                etag = have.etag
                progress.skip(part.size)
            else:
                etag = self.s3.upload_part(
                    bucket,
                    key,
                    upload_id,
                    part.number,
                    part.size,
                    base64.b64encode(digest).decode("ascii"),
                    _chunks(buf, progress),
                )
                if etag and etag != digest.hex():
                    raise ClientError(
                        f"the server stored part {part.number} with ETag {etag}, "
                        f"expected {digest.hex()}: the upload was corrupted"
                    )
                with lock:
                    sent.append(part.number)
            with lock:
                digests[part.number] = digest
                etags[part.number] = etag or digest.hex()

        self._run_all(run, parts)
        progress.finish()
        ordered = [p.number for p in parts]
        etag = self.s3.complete_multipart_upload(
            bucket, key, upload_id, [(n, etags[n]) for n in ordered]
        )
        expected = multipart_etag([digests[n] for n in ordered])
        if "-" in etag and etag != expected:
            raise ClientError(
                f"the server completed {bucket}/{key} with ETag {etag}, expected {expected}"
            )
        bytes_sent = sum(p.size for p in parts if p.number in set(sent))
        return UploadResult(
            bucket,
            key,
            size,
            etag or expected,
            part_size,
            len(parts),
            len(sent),
            bytes_sent,
            resumed,
        )

    def _run_all(self, run: Callable[[Part], None], parts: list[Part]) -> None:
        """Run ``run`` over ``parts`` on ``parallel`` threads; the first failure stops the rest
        (parts already stored stay, for a later resume) and is raised."""
        pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="upload")
        futures: list[Future[None]] = []
        try:
            futures = [pool.submit(run, p) for p in parts]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
