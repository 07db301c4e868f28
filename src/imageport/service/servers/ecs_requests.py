"""What every request of the server API is checked for before its use case reads it, answered
with the server API's own codes (``Ecs.xxxx``) rather than the image API's.

* :func:`json_body`: the body, parsed by the image API's strict JSON reader (no duplicate
  fields, bounded depth and size), its refusals re-coded ``Ecs.0000`` (a malformed request);
* :func:`require_own_project`: the ``{project_id}`` in the path must be the caller's
  (``Ecs.0023``, 400): a signature is made for one project, and an answer naming another would
  be read as that project's.
"""

from __future__ import annotations

from imageport.service import codes
from imageport.service.errors import RequestInvalid
from imageport.service.images.validation import parse_json_body


def json_body(raw: bytes) -> object:
    """The JSON document of a request body; ``Ecs.0000`` when it is empty or not JSON."""
    try:
        return parse_json_body(raw, required=True)
    except RequestInvalid as exc:
        raise RequestInvalid(codes.ECS_BAD_REQUEST, exc.message, status=exc.status) from exc


def require_own_project(project_id: str, path_project_id: str) -> None:
    """Refuse a path whose ``{project_id}`` is not the caller's project (``Ecs.0023``)."""
    if path_project_id != project_id:
        raise RequestInvalid(
            codes.ECS_PROJECT_MISMATCH,
            f"the project id in the path ({path_project_id[:64]!r}) is not the project of the "
            "credentials",
        )


__all__ = ["json_body", "require_own_project"]
