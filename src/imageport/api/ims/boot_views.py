"""Boot-test routes (ours): boot a stored image in throw-away machines, and the screenshot of
its last boot under a firmware."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.images import boot_results
from imageport.service.jobs import boot_request


def boot_test_image(services: Services, call: Call) -> Response:
    """Boot-test an active image ``{"firmware"?: "bios"|"uefi"|"both", "timeout"?: seconds}``
    (no body: each firmware the image claims, the default timeout): ``{"job_id"}`` of an
    ``imsBootTestJob`` job, whose verdicts join the image's report (``boot``); 400
    ``IMG.BOOT`` where boot tests are not offered or a firmware cannot be booted."""
    return JSONResponse(
        {
            "job_id": boot_request.boot_test_image(
                services,
                call.project_id,
                call.path_params["image_id"],
                call.json(required=False),
            )
        }
    )


def boot_screenshot(services: Services, call: Call) -> Response:
    """The display of the image's last boot under ``?firmware=bios`` (or ``uefi``) when the
    boot ended, as ``image/png``; 404 ``IMG.NO_REPORT`` when no boot test of that firmware
    has run."""
    data = boot_results.read_screenshot(
        services, call.project_id, call.path_params["image_id"], call.query
    )
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})
