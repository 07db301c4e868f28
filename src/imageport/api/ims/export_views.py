"""Export route: ``POST /v1/cloudimages/{image_id}/file`` (the vendor's ExportImage)."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.jobs import export_request as exports


def export_image(services: Services, call: Call) -> Response:
    """POST /v1/cloudimages/{image_id}/file ``{"bucket_url", "file_format",
    "is_quick_export"}``: ``{"job_id"}`` (the job writes the object)."""
    return JSONResponse(
        {
            "job_id": exports.export_image(
                services, call.project_id, call.path_params["image_id"], call.json()
            )
        }
    )
