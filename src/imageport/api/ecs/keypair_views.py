"""Key pair routes (Nova ``os-keypairs``, as the vendor's SDK sends them): each view checks the
path's project, calls one function of :mod:`imageport.service.servers.keypairs` and renders
Nova's document."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from imageport.api.ims.incoming import Call
from imageport.service.context import Services
from imageport.service.servers import keypairs
from imageport.service.servers.ecs_requests import require_own_project
from imageport.service.servers.keypairs import KeyPair


def _own(call: Call) -> Call:
    """``call``, once its path's ``{project_id}`` is known to be the caller's (``Ecs.0023``)."""
    require_own_project(call.project_id, call.path_params["project_id"])
    return call


def summary_document(keypair: KeyPair) -> dict[str, object]:
    """A key pair as Nova lists it."""
    return {
        "name": keypair.name,
        "public_key": keypair.public_key,
        "fingerprint": keypair.fingerprint,
        "type": keypair.key_type,
    }


def create_keypair(services: Services, call: Call) -> Response:
    """Create a key pair ``{"keypair": {"name", "public_key"?, "type": "ssh"?}}``: without
    ``public_key`` an Ed25519 pair is made and its ``private_key`` (OpenSSH format) is in this
    answer only; with one, the key is imported (ed25519, RSA of 2048 bits or more, ECDSA).
    ``{"keypair": {"name", "fingerprint", "public_key", "user_id", "type"}}``."""
    created = keypairs.create_keypair(services, _own(call).project_id, call.body)
    doc = {**summary_document(created.keypair), "user_id": created.keypair.user_id}
    if created.private_key is not None:
        doc["private_key"] = created.private_key
    return JSONResponse({"keypair": doc})


def list_keypairs(services: Services, call: Call) -> Response:
    """The project's key pairs by name, ``limit``/``marker`` paging:
    ``{"keypairs": [{"keypair": {"name", "fingerprint", "public_key", "type"}}]}``."""
    found = keypairs.list_keypairs(services, _own(call).project_id, call.query)
    return JSONResponse({"keypairs": [{"keypair": summary_document(k)} for k in found]})


def show_keypair(services: Services, call: Call) -> Response:
    """One key pair: ``{"keypair": {"name", "public_key", "fingerprint", "type", "user_id",
    "created_at", "updated_at", "deleted", "deleted_at"}}`` (404 ``Ecs.0314``)."""
    keypair = keypairs.show_keypair(
        services, _own(call).project_id, call.path_params["keypair_name"], call.query
    )
    return JSONResponse(
        {
            "keypair": {
                **summary_document(keypair),
                "user_id": keypair.user_id,
                "created_at": keypair.created_at,
                "updated_at": None,
                "deleted": False,
                "deleted_at": None,
            }
        }
    )


def delete_keypair(services: Services, call: Call) -> Response:
    """Delete a key pair: 204, no body (404 ``Ecs.0314``). Servers made with it keep the
    key."""
    keypairs.delete_keypair(
        services, _own(call).project_id, call.path_params["keypair_name"], call.query
    )
    return Response(status_code=204)
