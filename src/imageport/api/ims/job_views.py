"""Job routes: show, progress and cancel."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ecs.render import server_job_document
from imageport.api.ims.incoming import Call
from imageport.api.ims.render import job_document
from imageport.service.context import Services
from imageport.service.jobs import manage
from imageport.service.servers.job_types import is_server_job
from imageport.service.servers.jobs import server_job


def show_job(services: Services, call: Call) -> Response:
    """A job: ``status`` INIT/RUNNING/SUCCESS/FAIL, ``error_code``, ``fail_reason``; an image
    job's ``entities.image_id``, a server job's ``entities.server_id``, ``sub_jobs_total`` and
    ``sub_jobs`` (the ECS shape: the SDKs of both APIs share this route); the path's project
    must be the caller's."""
    record = manage.show_job(
        services,
        call.project_id,
        call.path_params["job_id"],
        call.path_params["project_id"],
    )
    if is_server_job(record.job_type):
        return JSONResponse(server_job_document(server_job(services, call.project_id, record.id)))
    return JSONResponse(job_document(record))


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
