"""Check an object already in a bucket before registering it (ours, ``POST
/v1/cloudimages/check``): the same rules, rule IDs and ``imageport.check/1`` document as
``imageport check`` on a local file, and nothing stored.

The check runs in a limited worker process, as an import job's does (the checker's tight CPU,
wall-clock and output limits: a limit reached is an IMG-SAFE answer, as it fails an import). At
most ``settings.workers`` checks run at once in the server, and at most all of them but one in
one project (:func:`project_share`), so that a project checking in a loop leaves a check to the
others; one more is refused at once with ``IMG.0194`` rather than queued, so requests cannot
pile up worker processes. A check whose client went away runs to its end (within the limits)
and then frees its place. The document
names the object as ``bucket:key``, never a path of the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any

from imageport.fastimport.naming import bitmap_key_for
from imageport.rules.base import CheckOptions
from imageport.service import codes
from imageport.service.buckets.objects import head_object
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid, ServiceError
from imageport.service.images import validation as v
from imageport.service.images.import_request import DATA_IMAGE_TYPE, ISO_IMAGE_TYPE, disk_kind_of
from imageport.service.ports import WorkerError

_FIELDS = frozenset(
    {
        "image_url",
        "min_disk",
        "hw_firmware_type",
        "uninitialized",
        "architecture",
        "type",
        "is_quick_import",
    }
)
#: Worker limits whose end means the file is refused (as an import's check would be).
_CHECK_LIMITS = frozenset({"cpu", "wall", "output"})

_running = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}
#: checks running per (Services, project)
_by_project: dict[tuple[int, str], int] = {}


def _slot(services: Services) -> threading.BoundedSemaphore:
    """The semaphore of this server's checks (one per Services: tests run several)."""
    with _running:
        return _slots.setdefault(
            id(services), threading.BoundedSemaphore(max(1, services.settings.workers))
        )


def project_share(services: Services) -> int:
    """The most checks one project runs at once: all the server's but one (one when it has
    one)."""
    return max(1, services.settings.workers - 1)


def _enter(services: Services, project_id: str) -> tuple[int, str]:
    """Take a place for a check of ``project_id``, or refuse it (IMG.0194)."""
    slot, share, key = _slot(services), project_share(services), (id(services), project_id)
    with _running:
        if _by_project.get(key, 0) >= share:
            raise RequestInvalid(
                codes.TOO_MANY_JOBS,
                f"{share} checks of this project are running (the most one project runs at "
                "once); try again when one has ended",
            )
        if not slot.acquire(blocking=False):
            raise RequestInvalid(
                codes.TOO_MANY_JOBS,
                f"{services.settings.workers} checks are running; try again when one has ended",
            )
        _by_project[key] = _by_project.get(key, 0) + 1
    return key


def _leave(services: Services, key: tuple[int, str]) -> None:
    with _running:
        left = _by_project.pop(key) - 1
        if left:
            _by_project[key] = left
    _slot(services).release()


def parse_check_request(body: object) -> tuple[v.ImageUrl, CheckOptions]:
    """``{"image_url": "bucket:key", "min_disk"?, "hw_firmware_type"?, "uninitialized"?,
    "architecture"?, "type"?, "is_quick_import"?}``, checked as a registration checks them;
    any other field is refused (IMG.0001). Without ``architecture`` the guest's is not compared
    with one (IMG-ARCH). ``type`` ``DataImage`` or ``IsoImage`` checks the file as a data disk
    (``min_disk`` 1-2048) or an ISO, with only the rules that judge it (ECS by default).
    ``is_quick_import`` checks it for fast import (IMG-FAST-RAW with the bitmap file beside a
    RAW object, IMG-FAST-ZVHD2), as a quick import's job will (not for an ISO: IMG.0167)."""
    doc = v.require_object(body, _FIELDS)
    url = v.check_image_url(doc.get("image_url"))
    kind = disk_kind_of(v.check_image_type(doc.get("type"), also=(ISO_IMAGE_TYPE, DATA_IMAGE_TYPE)))
    fast = v.check_bool(doc.get("is_quick_import"), "is_quick_import")
    if fast and kind == "iso":
        raise RequestInvalid(
            codes.ISO_FIELD_NOT_ALLOWED,
            "is_quick_import is not allowed for an ISO image: it is stored as it is",
            field="is_quick_import",
        )
    disk_range = (1, v.MAX_DATA_DISK_GIB) if kind == "data" else ()
    given_disk = doc.get("min_disk")
    min_disk = None if given_disk is None else v.check_min_disk(given_disk, *disk_range)
    given = doc.get("architecture")
    architecture = None if given is None else v.check_architecture(given)
    firmware = v.check_firmware(doc.get("hw_firmware_type"), architecture or "x86")
    return url, CheckOptions(
        fast_import=fast,
        min_disk_gib=min_disk,
        uefi=firmware == "uefi",
        uninitialized=v.check_bool(doc.get("uninitialized"), "uninitialized"),
        architecture=architecture,
        disk_kind=kind,
    )


def check_object(services: Services, project_id: str, body: object) -> dict[str, Any]:
    """The check report of the caller's object named by ``image_url``."""
    url, options = parse_check_request(body)
    head_object(services, project_id, url.bucket, url.key)  # the caller's, or 404
    place = _enter(services, project_id)
    try:
        with contextlib.ExitStack() as held:
            path = held.enter_context(services.store.local_path(url.bucket, url.key))
            names = {str(path): f"{url.bucket}:{url.key}"}
            mf_key = bitmap_key_for(url.key) if options.fast_import else None
            if mf_key is not None and services.store.get_object(url.bucket, mf_key) is not None:
                with contextlib.suppress(NotFound):  # deleted meanwhile: as if there was none
                    bitmap = held.enter_context(services.store.local_path(url.bucket, mf_key))
                    options = dataclasses.replace(options, bitmap_path=str(bitmap))
                    names[str(bitmap)] = f"{url.bucket}:{mf_key}"
            try:
                inspection = services.worker.inspect(path, options, cancelled=lambda: False)
            except WorkerError as exc:
                if exc.limit in _CHECK_LIMITS:
                    raise RequestInvalid(
                        "IMG-SAFE",
                        f"IMG-SAFE: {exc.reason}; a well-formed image of any size is checked "
                        "well within these limits, so this file would be refused",
                    ) from exc
                raise ServiceError(codes.INTERNAL, f"the check failed: {exc.reason}") from exc
            report: object = inspection.report
            for server_path, shown in names.items():
                report = _renamed(report, server_path, shown)
    finally:
        _leave(services, place)
    if not isinstance(report, dict):
        raise ServiceError(codes.INTERNAL, "the checker returned no report")
    return report


def _renamed(value: object, path: str, name: str) -> object:
    """``value`` (a JSON document) with the server's ``path`` of the object replaced by
    ``name``."""
    if isinstance(value, str):
        return value.replace(path, name)
    if isinstance(value, list):
        return [_renamed(item, path, name) for item in value]
    if isinstance(value, dict):
        return {key: _renamed(item, path, name) for key, item in value.items()}
    return value


__all__ = ["check_object", "parse_check_request", "project_share"]
