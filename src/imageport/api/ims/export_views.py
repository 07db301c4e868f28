"""Export route: ``POST /v1/cloudimages/{image_id}/file`` (the vendor's ExportImage)."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.jobs import export_request as exports


def export_image(services: Services, call: Call) -> Response:
    """Export an active image to a bucket ``{"bucket_url": "bucket:key", "file_format": "qcow2",
    "is_quick_export": false}``: ``{"job_id"}`` of an ``imsNativeExportImageJob`` job, which writes
    the object."""
    return JSONResponse(
        {
            "job_id": exports.export_image(
                services, call.project_id, call.path_params["image_id"], call.json()
            )
        }
    )
