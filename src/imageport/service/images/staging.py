"""Image data received on the Glance data routes, staged under ``data_dir/staged/`` until the
import job that reads it ends.

Learned from Glance's interoperable import (its ``glance-direct`` method keeps staged data in a
service-owned staging area, one file per image id, and deletes it when the import task ends);
here the same area also takes the bodies of ``PUT /v2/images/{id}/file``, since both run the
same import job:

* a body is streamed to ``staged/.<image id>.<random>.part`` (:func:`part_path`) and fsynced,
  then hard-linked to ``staged/<image id>`` (:func:`claim`). The link fails when the image
  already has staged data, so of two uploads to one image exactly one wins; the part file is
  removed either way;
* a job's params name its staged file by the image id (``params.staged``). :func:`staged_path`
  accepts only a lower-case UUID, so the path opened is always one this module made, never one
  a request named;
* the job removes the file when it ends (:func:`remove`), and so does deleting the image;
* start-up recovery calls :func:`remove_orphans`: every part file goes (no upload survives a
  restart) and so does every staged file whose image is not ``queued`` or ``saving`` (no job
  will ever read it).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select

from imageport.durable import fsync_dir
from imageport.service import codes
from imageport.service.clock import new_id
from imageport.service.context import Services
from imageport.service.errors import Conflict
from imageport.service.statuses import IMAGE_IN_PROGRESS
from imageport.service.tables import images
from imageport.settings import Settings

_NAME = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def staged_path(settings: Settings, name: str) -> Path:
    """``staged/<name>`` for an image id ``name``; ValueError for anything else."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"not a staged upload name: {str(name)[:64]!r}")
    return settings.staged_dir / name


def has_staged(settings: Settings, image_id: str) -> bool:
    """Whether the image has staged data waiting (or being read by its job)."""
    try:
        return staged_path(settings, image_id).is_file()
    except ValueError:
        return False


def staged_bytes(settings: Settings, image_ids: Iterable[str]) -> int:
    """Disk the staged data (and bodies being received) of ``image_ids`` take."""
    folder = settings.staged_dir
    names = set(image_ids)
    if not names or not folder.is_dir():
        return 0
    total = 0
    for entry in folder.iterdir():
        owner = entry.name.lstrip(".").split(".", 1)[0]  # "<id>" or ".<id>.<n>.part"
        if owner in names:
            try:
                total += entry.stat().st_blocks * 512
            except FileNotFoundError:  # claimed or removed meanwhile
                continue
    return total


def part_path(settings: Settings, image_id: str) -> Path:
    """A new file name for a body being received for ``image_id`` (the folder is created)."""
    folder = settings.staged_dir
    folder.mkdir(parents=True, exist_ok=True)
    staged_path(settings, image_id)  # validates the id
    return folder / f".{image_id}.{new_id()}.part"


def claim(settings: Settings, part: Path, image_id: str) -> Path:
    """Make the complete, fsynced ``part`` the image's staged data (a hard link, made durable);
    :class:`Conflict` (409) when the image already has staged data."""
    target = staged_path(settings, image_id)
    try:
        os.link(part, target)
    except FileExistsError:
        raise Conflict(
            codes.STATE, f"image {image_id} already has data; import it or delete the image"
        ) from None
    fsync_dir(settings.staged_dir)
    return target


def remove(settings: Settings, name: str | None) -> None:
    """Delete staged file ``name`` if there is one (a bad name is ignored)."""
    if not name:
        return
    with contextlib.suppress(ValueError, OSError):
        staged_path(settings, name).unlink(missing_ok=True)


def remove_orphans(services: Services) -> int:
    """Start-up clean-up (see the module docstring); the number of files removed."""
    folder = services.settings.staged_dir
    if not folder.is_dir():
        return 0
    with services.db.connect() as conn:  # images whose staged data a job may still read
        waiting = {
            image_id
            for (image_id,) in conn.execute(
                select(images.c.id).where(images.c.status.in_(IMAGE_IN_PROGRESS))
            )
        }
    removed = 0
    for entry in folder.iterdir():
        keep = (
            entry.name in waiting
            and _NAME.fullmatch(entry.name) is not None
            and entry.is_file()
            and not entry.is_symlink()
        )
        if not keep:
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
    return removed
