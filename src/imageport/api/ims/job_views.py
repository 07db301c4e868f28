"""Job routes: show, progress and cancel."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.api.ims.render import job_document
from imageport.service.context import Services
from imageport.service.jobs import manage


def show_job(services: Services, call: Call) -> Response:
    """A job: ``status`` INIT/RUNNING/SUCCESS/FAIL, ``error_code``, ``fail_reason``,
    ``entities.image_id``; the path's project must be the caller's."""
    return JSONResponse(
        job_document(
            manage.show_job(
                services,
                call.project_id,
                call.path_params["job_id"],
                call.path_params["project_id"],
            )
        )
    )


def job_progress(services: Services, call: Call) -> Response:
    """A job with its progress: ``entities.process_percent``, ``current_task`` (the phase) and
    bytes."""
    return JSONResponse(
        job_document(
            manage.show_job(services, call.project_id, call.path_params["job_id"]), progress=True
        )
    )


def cancel_job(services: Services, call: Call) -> Response:
    """Cancel a job (ours, not the vendor's): 202 and the job."""
    return JSONResponse(
        job_document(
            manage.cancel_job(services, call.project_id, call.path_params["job_id"]), progress=True
        ),
        status_code=202,
    )
