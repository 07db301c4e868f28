"""The servers area: the project's servers, their actions, and the create form.

Each view calls the service functions the server API's views call
(:mod:`imageport.api.ecs.server_views`, :mod:`~imageport.api.ecs.flavor_views`,
:mod:`~imageport.api.ecs.keypair_views`) and shows the same document
(:func:`imageport.api.ecs.render.server_document`), so a page can do and show nothing the API
would not. A server's own page, its consoles and "create image" are :mod:`.server_page`.

* ``/servers``: the list, with start, stop, reboot and delete (each a form posting to
  ``/servers/{id}/action``; delete asks first). A small script reads ``/servers/states`` every
  two seconds while a server is in transition, and updates its status and buttons in place.
* ``/servers/new`` (``?image=ID`` picks the image): the create form. The body it sends to the
  create use case is the one the vendor's SDK sends; a refused field is shown at the field, with
  the vendor's code. The password is passed on to the service (which keeps it in memory only
  until the server's first start) and never put back into a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from starlette.responses import JSONResponse, Response

from imageport.api.ecs.render import SSH_KEY, server_document, servers_document
from imageport.api.ims.render import images_document
from imageport.console.fields import only_fields
from imageport.console.i18n import Language
from imageport.console.pages import PageCall, PageRoute, redirect, render, segment, url
from imageport.numbers import whole_number
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid, ServiceError
from imageport.service.images import queries as image_queries
from imageport.service.images.import_request import DATA_IMAGE_TYPE, ISO_IMAGE_TYPE
from imageport.service.servers import actions, create, keypairs, queries
from imageport.service.servers.create_request import MAX_DISK_GIB, MIN_DISK_GIB
from imageport.service.servers.flavors import list_flavors
from imageport.service.servers.network import NETWORK_ID, SUBNET_ID

PAGE_SIZE = 50
"""Servers on one page of the list."""
MAX_PAGE = 10_000
VOLUME_TYPE = "SSD"
"""The system disk's type in a create request (every type is the same local disk here)."""
MAX_KEYPAIRS = 1000
MAX_IMAGES = 1000
#: statuses a server passes through on its way to another (the page watches them)
TRANSITIONAL = frozenset({"BUILD", "REBOOT", "HARD_REBOOT"})
#: the console's name of an action -> the server API's
ACTIONS: Mapping[str, str] = {
    "start": "os-start",
    "stop": "os-stop",
    "reboot": "reboot",
    "delete": "delete",
}
CONFIRM = "adminPass_confirm"
"""What the form calls its second password in a refusal (the request has no such field)."""
#: a field of a create request -> the create form's field that holds it
FORM_FIELDS: Mapping[str, str] = {
    "imageRef": "image",
    "flavorRef": "flavor",
    "name": "name",
    "description": "description",
    "root_volume.size": "disk",
    "root_volume": "disk",
    "key_name": "keypair",
    "adminPass": "password",
    CONFIRM: "password_confirm",
}
#: error codes that always concern one field of the create form
CODE_FIELDS: Mapping[str, str] = {
    codes.ECS_IMAGE_UNKNOWN: "image",
    codes.ECS_IMAGE_NOT_ACTIVE: "image",
    codes.ECS_FLAVOR_UNKNOWN: "flavor",
    codes.ECS_KEYPAIR_UNKNOWN: "keypair",
    codes.ECS_PASSWORD: "password",
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """A refusal shown on a form: at ``field`` (None: above the form), with its code."""

    field: str | None
    code: str
    message: str


def field_error(error: ServiceError) -> FieldError:
    """Where the create form shows ``error``: at the field its message names first
    (``"root_volume.size: must be ..."``, ``"adminPass must be ..."``), else at the field its
    code always concerns, else above the form."""
    named = error.message.split(":", 1)[0].split(" ", 1)[0]
    field = FORM_FIELDS.get(named) or CODE_FIELDS.get(error.code)
    return FieldError(field, error.code, error.message)


# -- what the pages show of a server -------------------------------------------------------------


def busy(status: str, task_state: str | None) -> bool:
    """Whether a server is on its way to another status (its page and the list watch it)."""
    return status in TRANSITIONAL or task_state is not None


def status_label(t: Language, status: str, task_state: str | None) -> str:
    """The status as the page says it: the vendor's status in words, and the task under way
    (:mod:`~imageport.console.messages.servers` has a text for every status and task)."""
    label = t(f"servers.status.{status}")
    return label + (" · " + t(f"servers.task.{task_state}") if task_state else "")


def server_state(t: Language, doc: Mapping[str, Any]) -> dict[str, object]:
    """What the list and the server page update in place: status, its words, whether it is
    changing, the actions (console names) its buttons may offer now, and the properties that
    change with a start (when it started, its SSH forward)."""
    status = str(doc["status"])
    task = doc.get("OS-EXT-STS:task_state")
    task_state = str(task) if task else None
    offered = actions.allowed_actions(str(doc.get("OS-EXT-STS:vm_state", "")), task_state)
    return {
        "id": doc["id"],
        "name": doc["name"],
        "status": status,
        "task_state": task_state,
        "label": status_label(t, status, task_state),
        "busy": busy(status, task_state),
        "actions": [name for name, api in ACTIONS.items() if api in offered],
        "launched": doc.get("OS-SRV-USG:launched_at"),
        "ssh": doc.get(SSH_KEY),
    }


def image_names(services: Services, project_id: str) -> dict[str, str]:
    """The names of the project's images by id (a server shows its image's name)."""
    page = image_queries.list_images(services, project_id, [("limit", str(MAX_IMAGES))])
    return {str(i["id"]): str(i["name"]) for i in _documents(images_document(page), "images")}


def _documents(document: Mapping[str, object], key: str) -> list[dict[str, Any]]:
    """The list of documents under ``key`` of a rendered API document."""
    return cast(list[dict[str, Any]], document[key])


def _page_number(call: PageCall) -> int:
    number = whole_number(call.arg("page", "1")) or 1
    return min(max(number, 1), MAX_PAGE)


def _list_page(services: Services, call: PageCall) -> tuple[list[dict[str, Any]], int, int]:
    """The servers of the list's page (their documents), how many there are, the page."""
    number = _page_number(call)
    found = queries.list_servers(
        services, call.project_id, [("limit", str(PAGE_SIZE)), ("offset", str(number))]
    )
    return _documents(servers_document(found), "servers"), found.count, number


# -- the list and the actions ------------------------------------------------------------------


def list_servers(services: Services, call: PageCall) -> Response:
    """The project's servers: status, flavor, image, created; start, stop, reboot, delete."""
    servers, count, number = _list_page(services, call)
    names = image_names(services, call.project_id)
    done = call.arg("done")
    return render(
        call,
        "servers_list.html",
        servers=[_row(call.lang, doc, names) for doc in servers],
        count=count,
        page=number,
        pages=max(1, -(-count // PAGE_SIZE)),
        done=done if done in ACTIONS else "",
        done_name=call.arg("name")[:64],
    )


def _row(t: Language, doc: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """A server's line in the list: its document, its state, its image's name (None: the image
    is gone or another project's)."""
    return {**doc, "state": server_state(t, doc), "image_name": names.get(doc["image"]["id"])}


def server_states(services: Services, call: PageCall) -> Response:
    """JSON for the list's script: the status of each server of the page (``?page=``)."""
    servers, _, _ = _list_page(services, call)
    return JSONResponse({"servers": [server_state(call.lang, doc) for doc in servers]})


def server_action(services: Services, call: PageCall) -> Response:
    """Start, stop (soft), reboot (soft) or delete a server (the form's ``action``), then
    back to the list or the server's page (``back``)."""
    server_id = call.path_params["server_id"]
    name = queries.show_server(services, call.project_id, server_id).name
    only_fields(call.form, ("csrf", "action", "back"))
    action = call.field("action")
    if action not in ACTIONS:
        raise RequestInvalid(codes.ECS_INVALID, "action: must be start, stop, reboot or delete")
    servers = [{"id": server_id}]
    if action == "delete":
        actions.delete_servers(services, call.project_id, {"servers": servers})
    elif action == "start":
        actions.server_action(services, call.project_id, {"os-start": {"servers": servers}})
    else:
        body = {"servers": servers, "type": "SOFT"}
        actions.server_action(services, call.project_id, {ACTIONS[action]: body})
    if call.field("back") == "server" and action != "delete":
        return redirect(url(f"/servers/{segment(server_id)}", done=action))
    return redirect(url("/servers", done=action, name=name))


# -- the create form ---------------------------------------------------------------------------


def _bootable(image: Mapping[str, Any]) -> bool:
    return image.get("virtual_env_type") not in (DATA_IMAGE_TYPE, ISO_IMAGE_TYPE)


def _form_choices(services: Services, call: PageCall) -> dict[str, object]:
    """The create form's choices: the project's active system images, the offered flavors and
    the project's key pairs."""
    page = image_queries.list_images(
        services,
        call.project_id,
        [("status", "active"), ("__imagetype", "private"), ("limit", str(MAX_IMAGES))],
    )
    return {
        "images": [i for i in _documents(images_document(page), "images") if _bootable(i)],
        "flavors": list_flavors(services.settings, []),
        "keypairs": keypairs.list_keypairs(
            services, call.project_id, [("limit", str(MAX_KEYPAIRS))]
        ),
        "min_disk": MIN_DISK_GIB,
        "max_disk": MAX_DISK_GIB,
    }


def _form_page(
    services: Services,
    call: PageCall,
    values: Mapping[str, str],
    error: FieldError | None = None,
    status: int = 200,
) -> Response:
    return render(
        call,
        "servers_new.html",
        status=status,
        values=values,
        error=error,
        **_form_choices(services, call),
    )


def new_server_form(services: Services, call: PageCall) -> Response:
    """The create form (``?image=`` picks the image)."""
    values = dict.fromkeys(KEPT_FIELDS, "")
    values["image"] = call.arg("image")[:64]
    return _form_page(services, call, values)


#: the create form's fields that are shown again after a refusal (never the passwords)
KEPT_FIELDS = ("image", "name", "flavor", "disk", "login", "keypair", "description")
#: the create form's ways to log in (its ``login`` radio)
LOGINS = ("keypair", "password")
#: every field the create form sends (any other is refused, not dropped)
CREATE_FIELDS = ("csrf", *KEPT_FIELDS, "password", "password_confirm")


def create_body(call: PageCall) -> dict[str, object]:
    """The create request (``POST /v1/{project_id}/cloudservers``) the form asks for; refuses
    (as a :class:`RequestInvalid` naming the field) what the form's own fields get wrong: a disk
    size that is not a number, no way to log in, two passwords that differ, a field the form
    does not have."""
    only_fields(call.form, CREATE_FIELDS)
    server: dict[str, object] = {
        "imageRef": call.field("image"),
        "flavorRef": call.field("flavor"),
        "name": call.field("name"),
        "vpcid": NETWORK_ID,
        "nics": [{"subnet_id": SUBNET_ID}],
        "root_volume": {"volumetype": VOLUME_TYPE},
    }
    disk = call.field("disk").strip()
    if disk:
        size = whole_number(disk)
        if size is None:
            raise RequestInvalid(codes.ECS_INVALID, "root_volume.size: must be a whole number")
        server["root_volume"] = {"volumetype": VOLUME_TYPE, "size": min(size, MAX_DISK_GIB + 1)}
    if call.field("description"):
        server["description"] = call.field("description")
    login = call.field("login", "keypair")
    if login not in LOGINS:
        raise RequestInvalid(
            codes.ECS_INVALID, f"login: must be keypair or password, not {login[:20]!r}"
        )
    if login == "password":
        if call.field("password") != call.field("password_confirm"):
            raise RequestInvalid(codes.ECS_PASSWORD, f"{CONFIRM}: the two passwords differ")
        server["adminPass"] = call.field("password")
    elif call.field("keypair"):
        server["key_name"] = call.field("keypair")
    else:
        raise RequestInvalid(
            codes.ECS_INVALID, "key_name: choose a key pair, or log in with a password"
        )
    return {"server": server}


def create_server(services: Services, call: PageCall) -> Response:
    """Create a server from the form; its page, or the form again with the refused field."""
    values = {name: call.field(name)[:256] for name in KEPT_FIELDS}
    try:
        created = create.create_servers(services, call.project_id, create_body(call), version="v1")
    except RequestInvalid as refused:
        return _form_page(services, call, values, field_error(refused), status=400)
    (server_id,) = created.server_ids
    return redirect(url(f"/servers/{segment(server_id)}"))


def server_state_of(services: Services, call: PageCall) -> Response:
    """JSON for the server page's script: the server's status (404 once it is gone)."""
    server = queries.show_server(services, call.project_id, call.path_params["server_id"])
    return JSONResponse(server_state(call.lang, server_document(server)))


PAGES = [
    PageRoute("/servers", list_servers),
    PageRoute("/servers/states", server_states, as_json=True),
    PageRoute("/servers/new", new_server_form),
    PageRoute("/servers/new", create_server, ("POST",)),
    PageRoute("/servers/{server_id}/state", server_state_of, as_json=True),
    PageRoute("/servers/{server_id}/action", server_action, ("POST",)),
]
