"""Boot-test a stored image (ours): the request, checked synchronously.

:func:`boot_test_image` serves ``POST /v1/cloudimages/{image_id}/boot-test`` with an optional
body ``{"firmware": "bios" | "uefi" | "both", "timeout": 300}``: it checks the request, then
inserts an ``imsBootTestJob`` job (:mod:`.boot_job` boots the image) and submits it. Without
``firmware`` the image is booted under each firmware its check report found it claims (its
boot code: ``guest.boot_modes``), under BIOS when it claims neither; ``timeout`` is in seconds
per firmware, 10 to ``settings.boot_test_max_seconds`` (default
``settings.boot_test_timeout_seconds``). Checks, in order:

============= ====== ==================================================================
code          status raised when
============= ====== ==================================================================
IMG.0001      400    the body is not an object, has other fields, ``firmware`` is not one
                     of bios, uefi, both, or ``timeout`` is not a whole number in range
IMG.BOOT      400    boot tests are not offered here (``boot_test_concurrency`` 0, no
                     boot runner), or a firmware cannot be booted here (QEMU or OVMF is
                     missing: the message says what to install), or the image is a data
                     disk or an ISO (nothing to boot)
IMG.NOT_FOUND 404    no such image in the caller's project (a member of a shared image:
                     403 ``IMG.0092``: the verdict is written to the owner's report)
IMG.STATE     409    the image is not ``active``, or has no check report to join
IMG.0072      400    the stored file is of a format QEMU does not read (a quick import's
                     ZVHD2): export it as qcow2 and import that
IMG.0090      400    the image already has a boot test waiting or running
IMG.0194      400    the project has as many unfinished jobs as it may (as every job)
============= ====== ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from imageport.service import codes
from imageport.service.clock import time_text
from imageport.service.context import Services
from imageport.service.errors import Conflict, RequestInvalid
from imageport.service.images import validation as v
from imageport.service.images.boot_results import BOOTABLE_FORMATS, claimed_firmwares
from imageport.service.images.import_request import DATA_IMAGE_TYPE
from imageport.service.images.records import image_row
from imageport.service.jobs.manage import insert_job
from imageport.service.ports import BootError
from imageport.service.statuses import UNFINISHED_JOB, ImageStatus
from imageport.service.tables import images, jobs
from imageport.service.tools.boot_test import FIRMWARES, MIN_TIMEOUT

BOOT_TEST_JOB = "imsBootTestJob"
#: ``firmware`` values: one firmware, or both whatever the image claims.
FIRMWARE_CHOICES = ("bios", "uefi", "both")
_FIELDS = frozenset({"firmware", "timeout"})


@dataclass(frozen=True, slots=True)
class BootTestParams:
    """The boot-test job's ``params`` document, read defensively."""

    #: the firmwares to boot, in order
    firmwares: tuple[str, ...]
    #: what the image's check report found it claims
    claimed: tuple[str, ...]
    #: the request's ``firmware`` (None: what the image claims)
    forced: str | None
    #: seconds per firmware
    timeout: int

    @classmethod
    def from_document(cls, doc: object) -> BootTestParams:
        d: Mapping[str, Any] = doc if isinstance(doc, dict) else {}

        def firmwares(name: str) -> tuple[str, ...]:
            value = d.get(name)
            found = value if isinstance(value, list) else []
            return tuple(fw for fw in FIRMWARES if fw in found)

        forced = d.get("forced")
        timeout = d.get("timeout")
        return cls(
            firmwares=firmwares("firmwares"),
            claimed=firmwares("claimed"),
            forced=forced if forced in FIRMWARE_CHOICES else None,
            timeout=timeout if isinstance(timeout, int) and not isinstance(timeout, bool) else 0,
        )

    def document(self) -> dict[str, object]:
        return {
            "firmwares": list(self.firmwares),
            "claimed": list(self.claimed),
            "forced": self.forced,
            "timeout": self.timeout,
        }


def check_boot_offered(
    services: Services, firmwares: tuple[str, ...], *, field: str | None = None
) -> None:
    """``IMG.BOOT`` unless this server boot-tests images and can boot each of ``firmwares``;
    ``field``: the request field that asked for the boot test (a registration's ``boot_test``)."""
    runner = services.boot
    if runner is None or services.settings.boot_test_concurrency == 0:
        raise RequestInvalid(
            codes.BOOT_NOT_OFFERED,
            "boot tests are not offered by this server (boot_test_concurrency is 0)",
            field=field,
        )
    for firmware in firmwares:
        try:
            runner.ready(firmware)
        except BootError as exc:
            raise RequestInvalid(
                codes.BOOT_NOT_OFFERED,
                f"this server cannot boot {firmware.upper()}: {exc}",
                field=field,
            ) from exc


def _firmware(value: object) -> str | None:
    if value is None:
        return None
    if value not in FIRMWARE_CHOICES:
        raise RequestInvalid(codes.BAD_REQUEST, "firmware must be one of bios, uefi, both")
    return str(value)


def boot_test_image(services: Services, project_id: str, image_id: str, body: object) -> str:
    """Check the request (see the module docstring), insert the boot-test job and submit it;
    the job id."""
    doc = {} if body is None or body == {} else v.require_object(body, _FIELDS)
    forced = _firmware(doc.get("firmware"))
    settings = services.settings
    timeout = (
        settings.boot_test_timeout_seconds
        if doc.get("timeout") is None
        else v.check_int(
            doc.get("timeout"),
            "timeout",
            codes.BAD_REQUEST,
            int(MIN_TIMEOUT),
            settings.boot_test_max_seconds,
        )
    )
    check_boot_offered(services, ())
    now = time_text(services.clock())
    with services.db.begin() as conn:
        row = image_row(conn, project_id, image_id)
        props = row.properties or {}
        if row.disk_format == "iso" or props.get("virtual_env_type") == DATA_IMAGE_TYPE:
            raise RequestInvalid(
                codes.BOOT_NOT_OFFERED,
                f"image {image_id} is a {'data disk' if row.disk_format != 'iso' else 'ISO'}: "
                "it has no system of its own to boot",
            )
        if row.status != ImageStatus.ACTIVE or not row.blob or not row.disk_format:
            raise Conflict(
                codes.STATE,
                f"image {image_id} is {row.status}; only an active image can be boot-tested",
            )
        report = conn.execute(select(images.c.report).where(images.c.id == image_id)).scalar()
        if not isinstance(report, dict):
            raise Conflict(
                codes.STATE,
                f"image {image_id} has no check report for the boot test's verdict to join",
            )
        if row.disk_format not in BOOTABLE_FORMATS:
            raise RequestInvalid(
                codes.FORMAT_NOT_SUPPORTED,
                f"image {image_id} is stored as {row.disk_format}, which QEMU does not read: "
                "export it as qcow2, import that, and boot-test the new image",
            )
        busy = conn.execute(
            select(jobs.c.id).where(
                jobs.c.image_id == image_id,
                jobs.c.job_type == BOOT_TEST_JOB,
                jobs.c.status.in_(UNFINISHED_JOB),
            )
        ).first()
        if busy is not None:
            raise RequestInvalid(
                codes.IMAGE_BUSY,
                f"image {image_id} already has a boot test waiting or running ({busy.id}); "
                "wait for it or cancel it",
            )
        claimed = claimed_firmwares(report)
        if forced == "both":
            firmwares: tuple[str, ...] = FIRMWARES
        elif forced is not None:
            firmwares = (forced,)
        else:
            firmwares = claimed or ("bios",)
        check_boot_offered(services, firmwares)
        params = BootTestParams(firmwares, claimed, forced, timeout)
        job_id = insert_job(
            conn,
            settings,
            project_id=project_id,
            job_type=BOOT_TEST_JOB,
            image_id=image_id,
            params=params.document(),
            now=now,
        )
    services.submit_job(job_id)
    return job_id


def boot_entities(params: Mapping[str, object]) -> dict[str, object]:
    """What a boot-test job's ``entities`` add to the image's: ``boot_firmware`` (the firmwares
    it boots, comma-separated), and once it has run ``boot_passed`` and ``boot_outcomes``
    (each firmware's outcome, ``bios:login,uefi:no-bootable-device``)."""
    p = BootTestParams.from_document(dict(params))
    doc: dict[str, object] = {"boot_firmware": ",".join(p.firmwares)}
    result = params.get("result")
    if isinstance(result, dict):
        outcomes = result.get("outcomes")
        if isinstance(outcomes, dict):
            doc["boot_outcomes"] = ",".join(
                f"{fw}:{outcomes[fw]}" for fw in FIRMWARES if isinstance(outcomes.get(fw), str)
            )
        if isinstance(result.get("passed"), bool):
            doc["boot_passed"] = result["passed"]
    return doc
