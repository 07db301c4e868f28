"""Report routes (ours, next to the vendor's): the check report of an image or of a job, the
``imageport.check/1`` document that ``imageport check --json`` prints."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.images import object_check, reports


def image_report(services: Services, call: Call) -> Response:
    """The check report an image keeps (every finding with its evidence and fix); 404
    ``IMG.NO_REPORT`` before its file has been checked."""
    return JSONResponse(
        reports.image_report(services, call.project_id, call.path_params["image_id"])
    )


def job_report(services: Services, call: Call) -> Response:
    """The check report of the image a job made (an import's check, or a copy's source report);
    404 ``IMG.NO_REPORT`` for an export or a job that has not checked its file yet."""
    return JSONResponse(reports.job_report(services, call.project_id, call.path_params["job_id"]))


def check_object(services: Services, call: Call) -> Response:
    """Check an object before registering it ``{"image_url": "bucket:key", "min_disk"?,
    "hw_firmware_type"?, "uninitialized"?, "architecture"?, "type"?, "is_quick_import"?}``
    (``is_quick_import``: for fast import, with the ``.mf`` bitmap beside a RAW object): its
    check report, nothing stored; 400 ``IMG.0194`` while as many checks run as there are
    workers, or all of them but one in the caller's project."""
    return JSONResponse(object_check.check_object(services, call.project_id, call.json()))
