"""The verdicts of an image's boot tests, kept in its check report, and their screenshots.

A boot test of a stored image (the ``imsBootTestJob`` job, or the boot phase of its import)
boots the image's file under one or two firmwares; what each boot showed joins the image's
check report (``images.report``, ``imageport.check/1``) as its ``boot`` member, in the shape
of ``imageport boot --json``'s document (``imageport.boot/1``)::

    "boot": {"schema": "imageport.boot/1",
             "claimed_firmware": ["bios", "uefi"],      # what the check found the image claims
             "passed": true,                            # every firmware in boots reached login
             "boots": [{"firmware": "bios", "passed": true, "outcome": "login",
                        "summary": "...", "stages": [...], "why": [...], ...,
                        "screenshot": "/v1/cloudimages/<id>/boot-test/screenshot?firmware=bios",
                        "timeout": 300, "tested_at": "...", "job_id": "..."}]}

A later test of one firmware replaces that firmware's entry and keeps the other's, so the
report holds the latest verdict of each firmware, each saying when and by which job it was
made. The document is bounded: two entries, each with the boot document's own caps (two
evidence lines a stage, 16 explaining lines, 15 console lines of at most 300 characters).

**Screenshots.** The display of each boot, a PNG taken by QEMU when the boot ended, is kept as
``<data dir>/boot-screens/<image id>.<firmware>.png`` (names made of ids only, never of
anything a client or an image chose), replaced by the next test of that firmware, and removed
with the image; ``GET /v1/cloudimages/{image_id}/boot-test/screenshot?firmware=bios`` serves it
to whoever may read the image's report.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from imageport.reports.boot_report import SCHEMA as BOOT_SCHEMA
from imageport.reports.boot_report import firmware_boot_document
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import NotFound, RequestInvalid
from imageport.service.images.members import visible_row
from imageport.service.tables import images
from imageport.service.tools.boot_test import FIRMWARES, FirmwareBoot
from imageport.settings import Settings

#: Stored formats QEMU reads: what images are stored in (``stored_format``). A quick import's
#: ZVHD2 and an ISO image are not booted (the message says why).
BOOTABLE_FORMATS = ("qcow2", "raw")
#: The largest screenshot served (QEMU's PNG of a 1280x800 screen is about 10 KiB).
MAX_SCREENSHOT_BYTES = 16 << 20
_ID = re.compile(r"[0-9a-f-]{1,64}")


def claimed_firmwares(report: object) -> tuple[str, ...]:
    """The firmwares a check report found the image's boot code claims (its
    ``guest.boot_modes``), in the order bios, uefi; ``()`` when it found none or has no guest."""
    guest = report.get("guest") if isinstance(report, Mapping) else None
    modes = guest.get("boot_modes") if isinstance(guest, Mapping) else None
    found = modes if isinstance(modes, list) else []
    return tuple(fw for fw in FIRMWARES if fw in found)


def console_hint(report: object) -> str | None:
    """Why a boot's serial console may stay silent, when the check found it: its IMG-CONSOLE
    warning (the default kernel command line has no ``console=ttyS0``)."""
    findings = report.get("findings") if isinstance(report, Mapping) else None
    for finding in findings if isinstance(findings, list) else ():
        if isinstance(finding, Mapping) and finding.get("rule_id") == "IMG-CONSOLE":
            return "the check found no console=ttyS0 on the default kernel command line"
    return None


def screenshot_path(settings: Settings, image_id: str, firmware: str) -> Path:
    """Where the screenshot of ``image_id``'s last boot under ``firmware`` is kept."""
    if not _ID.fullmatch(image_id) or firmware not in FIRMWARES:
        raise ValueError(f"no screenshot name for {image_id[:64]!r} and {firmware[:16]!r}")
    return settings.boot_screens_dir / f"{image_id}.{firmware}.png"


def screenshot_route(image_id: str, firmware: str) -> str:
    """The route that serves that screenshot."""
    return f"/v1/cloudimages/{image_id}/boot-test/screenshot?firmware={firmware}"


def boot_entries(
    boots: Sequence[FirmwareBoot],
    *,
    image_id: str,
    job_id: str,
    tested_at: str,
    timeout: float,
) -> list[dict[str, Any]]:
    """The report entries of ``boots``: each boot's document, its screenshot's route when it
    has one, the timeout it had, when and by which job."""
    return [
        {
            **firmware_boot_document(
                boot, screenshot_route(image_id, boot.firmware) if boot.run.screenshot else None
            ),
            "timeout": timeout,
            "tested_at": tested_at,
            "job_id": job_id,
        }
        for boot in boots
    ]


def boot_section(
    previous: object, entries: Sequence[Mapping[str, Any]], claimed: Sequence[str]
) -> dict[str, Any]:
    """The report's new ``boot`` member: ``previous`` (the member as it was, if any) with the
    entries of the firmwares in ``entries`` replaced."""
    kept: dict[str, Any] = {}
    old = previous.get("boots") if isinstance(previous, Mapping) else None
    for entry in old if isinstance(old, list) else ():
        if isinstance(entry, Mapping) and entry.get("firmware") in FIRMWARES:
            kept[str(entry["firmware"])] = dict(entry)
    for entry in entries:
        kept[str(entry["firmware"])] = dict(entry)
    boots = [kept[fw] for fw in FIRMWARES if fw in kept]
    return {
        "schema": BOOT_SCHEMA,
        "claimed_firmware": list(claimed),
        "passed": bool(boots) and all(b.get("passed") is True for b in boots),
        "boots": boots,
    }


def with_boots(
    report: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], claimed: Sequence[str]
) -> dict[str, Any]:
    """``report`` with ``entries`` joined to its ``boot`` member."""
    return {**report, "boot": boot_section(report.get("boot"), entries, claimed)}


def copied_report(report: object) -> object:
    """The report a copy of the image starts with: the source's, its boot verdicts included
    (they are verdicts on the same bytes), without the routes to the source's screenshots
    (a copy has none of its own until it is boot-tested)."""
    if not isinstance(report, Mapping) or not isinstance(report.get("boot"), Mapping):
        return report
    boot = dict(report["boot"])
    boots = boot.get("boots")
    if isinstance(boots, list):
        boot["boots"] = [
            {**entry, "screenshot": None} if isinstance(entry, Mapping) else entry
            for entry in boots
        ]
    return {**report, "boot": boot}


def record_boots(
    services: Services,
    image_id: str,
    entries: Sequence[Mapping[str, Any]],
    claimed: Sequence[str],
) -> bool:
    """Join ``entries`` to the stored report of ``image_id``, in one transaction; False when
    the image or its report no longer exists."""
    with services.db.begin() as conn:
        report = conn.execute(
            select(images.c.report).where(images.c.id == image_id).with_for_update()
        ).scalar()
        if not isinstance(report, dict):
            return False
        conn.execute(
            update(images)
            .where(images.c.id == image_id)
            .values(report=with_boots(report, entries, claimed))
        )
    return True


def keep_screenshots(settings: Settings, image_id: str, taken: Mapping[str, Path | None]) -> None:
    """Move each firmware's new screenshot (in scratch space) to where the image keeps it; a
    firmware booted without one (None) loses its old one."""
    folder = settings.boot_screens_dir
    folder.mkdir(parents=True, exist_ok=True)
    for firmware, path in taken.items():
        kept = screenshot_path(settings, image_id, firmware)
        if path is not None and path.is_file():
            os.replace(path, kept)
        else:
            kept.unlink(missing_ok=True)


def remove_screenshots(settings: Settings, image_id: str) -> None:
    """Remove the image's screenshots (it is being deleted)."""
    for firmware in FIRMWARES:
        with contextlib.suppress(ValueError):
            screenshot_path(settings, image_id, firmware).unlink(missing_ok=True)


def remove_orphan_screenshots(services: Services) -> int:
    """Remove screenshots whose image no longer exists (start-up recovery); how many."""
    folder = services.settings.boot_screens_dir
    if not folder.is_dir():
        return 0
    with services.db.connect() as conn:
        ids = {image_id for (image_id,) in conn.execute(select(images.c.id))}
    removed = 0
    for entry in folder.iterdir():
        image_id, _, rest = entry.name.partition(".")
        if image_id not in ids or rest not in (f"{fw}.png" for fw in FIRMWARES):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed


def read_screenshot(
    services: Services, project_id: str, image_id: str, query: Sequence[tuple[str, str]]
) -> bytes:
    """The PNG of the last boot of the caller's image ``image_id`` (or of one shared with it)
    under the firmware the query names (``firmware=bios`` or ``uefi``, once, and no other
    parameter: IMG.0001); 404 ``IMG.NO_REPORT`` when it has none."""
    names = {name for name, _ in query}
    firmwares = [value for name, value in query if name == "firmware"]
    if names - {"firmware"} or len(firmwares) != 1 or firmwares[0] not in FIRMWARES:
        raise RequestInvalid(
            codes.BAD_REQUEST, "the query must be firmware=bios or firmware=uefi, alone"
        )
    firmware = firmwares[0]
    with services.db.connect() as conn:
        visible_row(conn, project_id, image_id)  # the caller's or shared with it, or NotFound
    try:
        path = screenshot_path(services.settings, image_id, firmware)
        with open(path, "rb") as f:
            data = f.read(MAX_SCREENSHOT_BYTES + 1)
    except (OSError, ValueError):
        data = b""
    if not data or len(data) > MAX_SCREENSHOT_BYTES:
        raise NotFound(
            codes.NO_REPORT,
            f"image {image_id} has no screenshot of a boot under {firmware}: no boot test "
            "of that firmware has run on it",
        )
    return data


__all__ = [
    "BOOTABLE_FORMATS",
    "boot_entries",
    "boot_section",
    "claimed_firmwares",
    "console_hint",
    "copied_report",
    "keep_screenshots",
    "read_screenshot",
    "record_boots",
    "remove_orphan_screenshots",
    "remove_screenshots",
    "screenshot_path",
    "screenshot_route",
    "with_boots",
]
