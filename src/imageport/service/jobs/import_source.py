"""Where an import job's bytes come from: the registered object, or data staged on the Glance
routes.

:func:`fetch` hands the job its source as a local read-only file: the registered bucket object
(which must still be the very object that was registered: same size and ETag, checked before
and after it is held open) with, for quick import, the bitmap ``<base>.mf`` beside it; or the
data a Glance client sent, staged by :mod:`.staging` under the data dir and named only by the
image id (never a path from a request). A source that changed or vanished ends the job with
:class:`~imageport.service.jobs.errors.JobFailedError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from imageport.fastimport.naming import bitmap_key_for
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound
from imageport.service.images import staging
from imageport.service.jobs import state
from imageport.service.jobs.errors import JobFailedError
from imageport.service.ports import ObjectInfo

#: How reasons name data received on the Glance routes (there is no ``bucket:key``).
UPLOADED = "the uploaded image data"


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched:
    """The registered object as a local read-only file, and (quick import) its bitmap's."""

    path: Path
    #: The object's record, as it was when the file was fetched (size, ETag, sha256).
    info: ObjectInfo
    bitmap_path: Path | None = None
    #: Key of the bitmap object in the same bucket, when there is one.
    bitmap_key: str | None = None


@contextlib.contextmanager
def fetch(services: Services, job: state.ClaimedJob, progress: state.Progress) -> Iterator[Fetched]:
    """The uploaded object as a local read-only file, if it is still the registered one; for
    quick import also its bitmap file, when the bucket has one."""
    params = job.params
    progress.phase("fetch", params.object_size)
    if params.staged is not None:
        with fetch_staged(services, params) as fetched:
            progress.phase_done()
            yield fetched
        return
    where = f"{params.bucket}:{params.key}"
    store = services.store
    info = store.get_object(params.bucket, params.key)
    if info is None:
        raise JobFailedError(codes.SOURCE_FILE_UNUSABLE, f"the file {where} no longer exists")
    if info.size != params.object_size or info.etag != params.object_etag:
        raise JobFailedError(
            codes.SOURCE_FILE_UNUSABLE,
            f"the file {where} was replaced after the image was registered",
        )
    with contextlib.ExitStack() as stack:
        path = stack.enter_context(store.local_path(params.bucket, params.key))
        again = store.get_object(params.bucket, params.key)  # still the same, now it is held?
        if (
            path.stat().st_size != params.object_size
            or again is None
            or again.etag != params.object_etag
        ):
            raise JobFailedError(
                codes.SOURCE_FILE_UNUSABLE,
                f"the file {where} was replaced after the image was registered",
            )
        fetched = Fetched(path, info)
        mf_key = bitmap_key_for(params.key) if params.quick_import else None
        if mf_key is not None and store.get_object(params.bucket, mf_key) is not None:
            with contextlib.suppress(NotFound):  # deleted meanwhile: as if there was none
                fetched = Fetched(
                    path, info, stack.enter_context(store.local_path(params.bucket, mf_key)), mf_key
                )
        progress.phase_done()  # held: a local file, fetched all at once
        yield fetched


@contextlib.contextmanager
def fetch_staged(services: Services, params: state.JobParams) -> Iterator[Fetched]:
    """The data staged for the job (a service-owned file, named by the image id), held open so
    that it stays the same file while the job reads it."""
    try:
        path = staging.staged_path(services.settings, params.staged or "")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (ValueError, OSError):
        raise JobFailedError(
            codes.SOURCE_FILE_UNUSABLE,
            "the uploaded data is gone (the server "
            "was restarted before it was stored?); upload it again",
        ) from None
    try:
        size = os.fstat(fd).st_size
        if size != params.object_size:
            raise JobFailedError(
                codes.SOURCE_FILE_UNUSABLE,
                f"the uploaded data is {size} bytes, not the {params.object_size} received",
            )
        yield Fetched(
            path,
            ObjectInfo(
                bucket="",
                key=UPLOADED,
                size=size,
                etag="",
                sha256="",
                content_type="application/octet-stream",
                storage_class="STANDARD",
                created_at="",
            ),
        )
    finally:
        os.close(fd)


def source_name(params: state.JobParams) -> str:
    """How failure reasons name the job's source: ``bucket:key``, or the uploaded data."""
    return UPLOADED if params.staged is not None else f"{params.bucket}:{params.key}"
